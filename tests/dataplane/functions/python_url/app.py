"""Python fixture for fleetfn's function URLs (runtime python3.13; handler picks the function).

- `app.structured`: the structured URL response: status 202, headers, cookies, and a body;
  on the path `/binary` the body is the bytes 0..255 base64-encoded with isBase64Encoded true.
- `app.echo`: returns the URL event itself (a dict without statusCode: the URL answers it as
  JSON with status 200).
- `app.text`: returns a plain string (the URL answers it as the body).
"""

import base64


def structured(event, context):
    path = event.get("rawPath", "")
    if path == "/binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": base64.b64encode(bytes(range(256))).decode(),
            "isBase64Encoded": True,
        }
    return {
        "statusCode": 202,
        "headers": {"content-type": "text/plain", "x-fixture": "python-url"},
        "cookies": ["flavour=ginger", "session=xyz; HttpOnly"],
        "body": f"accepted {path}",
        "isBase64Encoded": False,
    }


def echo(event, context):
    return event


def text(event, context):
    return "just a string"
