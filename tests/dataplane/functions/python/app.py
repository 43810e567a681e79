"""Python fixture function for the fleetfn data-plane suite (handler `app.handler`).

The event's `op` picks the behaviour; anything else echoes the event. A function URL's event
(payload format 2.0) goes to `url`, where the query parameter `op` picks the answer. `__CODE__` is
replaced by the suite with a marker so that two builds differ in code (and CodeSha256).
"""

import base64
import os
import time
import uuid

CODE = "__CODE__"


def url(event):
    """A function URL request: `?op=` picks the answer, by default the event itself (a JSON
    object without statusCode, which the URL answers as it is)."""
    q = event.get("queryStringParameters") or {}
    op = q.get("op", "echo")
    if op == "error":
        raise ValueError("error requested by the URL")
    if op == "sleep":
        time.sleep(float(q["ms"]) / 1000.0)
        return {"slept_ms": int(q["ms"])}
    if op == "structured":
        return {
            "statusCode": int(q.get("status", "201")),
            "headers": {"content-type": "text/plain", "x-custom": "custom value",
                        "access-control-allow-origin": "https://function.example"},
            "cookies": ["a=1", "b=2; HttpOnly"],
            "body": "structured " + event["rawPath"],
        }
    if op == "binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if op == "string":
        return "just a string"
    if op == "malformed":
        return {"statusCode": "teapot"}
    return event


def handler(event, context):
    if isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event:
        return url(event)
    op = event.get("op", "echo") if isinstance(event, dict) else "echo"
    if op == "sleep":
        start = time.time()
        time.sleep(event["ms"] / 1000.0)
        return {"start": start, "end": time.time(), "pid": os.getpid()}
    if op == "env":
        cc = context.client_context
        root = os.environ.get("LAMBDA_TASK_ROOT", "")
        return {
            "environ": dict(os.environ),
            "pid": os.getpid(),
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": str(context.memory_limit_in_mb),
            "client_context_custom": getattr(cc, "custom", None) if cc is not None else None,
            "task_root_files": sorted(os.listdir(root)) if root and os.path.isdir(root) else None,
        }
    if op == "exit":
        os._exit(1)
    if op == "error":
        raise ValueError("error requested by the event")
    if op == "big":
        return {"pad": "a" * event["bytes"]}
    if op == "code":
        return {"code": CODE, "pid": os.getpid()}
    if op == "tmp_token":
        # First writer in a /tmp creates the token file atomically (link fails if it
        # exists); everybody sharing that /tmp then reads the same token.
        path = "/tmp/" + event["name"]
        tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex}"
        with open(tmp, "w") as f:
            f.write(uuid.uuid4().hex)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        time.sleep(event.get("ms", 0) / 1000.0)
        with open(path) as f:
            token = f.read()
        return {"token": token, "stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"), "pid": os.getpid()}
    return event
