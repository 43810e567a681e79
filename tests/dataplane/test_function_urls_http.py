"""Function URLs over HTTP: the endpoint (`fleetfn serve --url-listen`) with curl and requests.

What is checked against AWS's documented and observed behaviour (docs "Invoking Lambda function
URLs", and what AWS answers to unknown URLs and failed functions):

- routing by Host `<url-id>.lambda-url.<region>.localhost[:port]` and by the fleetfn path prefix
  `/_fleetfn/url/<url-id>/...` (the function sees the path without it); unknown ids get
  `403 {"Message":null}` (x-amzn-ErrorType AccessDeniedException);
- the payload format 2.0 event: methods, raw and parsed query strings (repeated keys joined by
  `,`), repeated headers joined by `,`, cookies, text vs base64 bodies, requestContext;
- the response mapping: structured responses (status, headers, cookies as Set-Cookie, base64
  bodies), a JSON string as its value, other JSON as it is, malformed answers and function
  errors `502 Internal Server Error`, throttles 429, bodies over 6 MB 413;
- CORS preflights answered without the function, CORS headers on responses;
- AuthType NONE needs the public resource policy; AWS_IAM needs a SigV4 signature (service
  `lambda`) by the server's key;
- InvokeWithResponseStream read by boto3 (botocore's event stream parser checks every prelude
  and message CRC).

The shared Python function answers URL events by `?op=` (tests/dataplane/functions/python/app.py);
the shared Rust test function fails on a URL event whose body is not JSON (a function error).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time
import uuid

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp

URL_RE = re.compile(r"^http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost:(\d+)/$")
PREFIX = "/_fleetfn/url/"
FORBIDDEN = ("Forbidden. For troubleshooting Function URL authorization issues, see: "
             "https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html")
QUALIFIER = "$LATEST.PUBLISHED"


class Url:
    """A function's URL: its id, and requests to it by path prefix or by Host."""

    def __init__(self, server, config: dict):
        m = URL_RE.match(config["FunctionUrl"])
        assert m, config["FunctionUrl"]
        self.id, port = m.group(1), int(m.group(2))
        assert port == server.url_port, (config["FunctionUrl"], server.url_port)
        self.base = server.url_endpoint
        self.host = f"{self.id}.lambda-url.us-east-1.localhost:{port}"

    def prefixed(self, path: str = "/") -> str:
        return f"{self.base}{PREFIX}{self.id}{path}"

    def request(self, method: str, path: str = "/", via_host: bool = False, **kwargs) -> requests.Response:
        if via_host:
            headers = {"Host": self.host, **kwargs.pop("headers", {})}
            return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)
        return requests.request(method, self.prefixed(path), timeout=30, **kwargs)


def make_public(lam, name: str, qualifier: str | None = None):
    q = {"Qualifier": qualifier} if qualifier else {}
    lam.add_permission(FunctionName=name, StatementId="FunctionURLAllowPublicAccess", Action="lambda:InvokeFunctionUrl",
                       Principal="*", FunctionUrlAuthType="NONE", **q)
    lam.add_permission(FunctionName=name, StatementId="FunctionURLInvokeAllowPublicAccess",
                       Action="lambda:InvokeFunction", Principal="*", InvokedViaFunctionUrl=True, **q)


def make_private(lam, name: str):
    for sid in ("FunctionURLAllowPublicAccess", "FunctionURLInvokeAllowPublicAccess"):
        lam.remove_permission(FunctionName=name, StatementId=sid)


def active(shared, runtime: str) -> str:
    pub = shared[runtime]
    assert pub.final["State"] == "Active", pub.final
    return pub.name


@pytest.fixture(scope="module")
def py_url(lam, server, shared):
    """A public NONE URL on the shared Python function (deleted at the end)."""
    name = active(shared, "python")
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    make_public(lam, name)
    yield name, Url(server, cfg)
    try:
        make_private(lam, name)
    except ClientError:
        pass
    lam.delete_function_url_config(FunctionName=name)


@pytest.fixture
def fresh_config(lam, py_url):
    """Restores the Python URL's config (NONE, BUFFERED, no CORS, public) after a test changes it."""
    name, url = py_url
    yield name, url
    lam.update_function_url_config(FunctionName=name, AuthType="NONE", Cors={}, InvokeMode="BUFFERED")
    try:
        sids = {s["Sid"] for s in json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]}
    except ClientError:
        sids = set()
    for sid in sids & {"FunctionURLAllowPublicAccess", "FunctionURLInvokeAllowPublicAccess"}:
        lam.remove_permission(FunctionName=name, StatementId=sid)
    make_public(lam, name)


def request_id_of(resp: requests.Response) -> str:
    rid = resp.headers.get("x-amzn-RequestId")
    assert rid and uuid.UUID(rid), resp.headers
    return rid


# ------------------------------------------------------------------------------------------
# Routing and the unknown URL
# ------------------------------------------------------------------------------------------


def test_unknown_url_ids_get_aws_403_message_null(server):
    for url, headers in [
        (f"{server.url_endpoint}{PREFIX}{'0' * 32}/", {}),
        (f"{server.url_endpoint}/", {"Host": f"{'a' * 32}.lambda-url.us-east-1.localhost"}),
        (f"{server.url_endpoint}/not-a-url", {}),
        # Another region's host is not one of this server's URLs.
        (f"{server.url_endpoint}/", {"Host": f"{'a' * 32}.lambda-url.eu-west-1.localhost"}),
    ]:
        r = requests.get(url, headers=headers, timeout=10)
        assert r.status_code == 403, (url, r.status_code, r.text)
        assert r.text == '{"Message":null}', r.text
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["x-amzn-ErrorType"] == "AccessDeniedException"
        request_id_of(r)


def test_function_url_names_the_endpoint_and_both_routings_reach_the_function(py_url):
    _, url = py_url
    by_prefix = url.request("GET", "/a/b?x=1")
    by_host = url.request("GET", "/a/b?x=1", via_host=True)
    for r in (by_prefix, by_host):
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/json"
        ev = r.json()
        # The prefix is not part of the function's path.
        assert (ev["rawPath"], ev["rawQueryString"]) == ("/a/b", "x=1"), ev
        assert ev["requestContext"]["apiId"] == url.id
        assert ev["requestContext"]["domainPrefix"] == url.id
        assert ev["requestContext"]["domainName"] == f"{url.id}.lambda-url.us-east-1.localhost"
        # The request id of the invoke is the response's x-amzn-RequestId.
        assert ev["requestContext"]["requestId"] == request_id_of(r)
    assert by_host.json()["headers"]["host"] == url.host
    # Under the prefix, the URL's root.
    assert url.request("GET", "").json()["rawPath"] == "/"


# ------------------------------------------------------------------------------------------
# The event
# ------------------------------------------------------------------------------------------


def test_event_has_aws_payload_format_2_0(py_url):
    _, url = py_url
    # curl sends repeated headers as they are (requests would merge them).
    before_ms = int(time.time() * 1000)
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", url.prefixed("/my/path") + "?parameter1=value1&parameter1=value2&parameter2=va%20lue",
         "-H", "Header2: value1", "-H", "Header2: value2", "-H", "X-Upper-Case: Value",
         "-H", "Content-Type: application/json", "-A", "fleetfn-test/1.0",
         "--cookie", "cookie1=one; cookie2=two", "--data-binary", '{"example": "test"}',
         "-D", "-"],
        capture_output=True, timeout=30, check=True)
    head, _, body = out.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), out.stdout
    ev = json.loads(body)
    after_ms = int(time.time() * 1000)
    assert ev["version"] == "2.0" and ev["routeKey"] == "$default"
    assert ev["rawPath"] == "/my/path"
    assert ev["rawQueryString"] == "parameter1=value1&parameter1=value2&parameter2=va%20lue"
    assert ev["queryStringParameters"] == {"parameter1": "value1,value2", "parameter2": "va lue"}
    assert ev["cookies"] == ["cookie1=one", "cookie2=two"]
    headers = ev["headers"]
    assert headers["header2"] == "value1,value2", headers
    assert headers["x-upper-case"] == "Value"
    assert "cookie" not in headers, headers
    assert all(k == k.lower() for k in headers), headers
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"
    assert ev["body"] == '{"example": "test"}' and ev["isBase64Encoded"] is False
    ctx = ev["requestContext"]
    assert ctx["accountId"] == h.ACCOUNT
    assert (ctx["routeKey"], ctx["stage"]) == ("$default", "$default")
    assert ctx["http"] == {"method": "POST", "path": "/my/path", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                           "userAgent": "fleetfn-test/1.0"}
    assert before_ms <= ctx["timeEpoch"] <= after_ms, (before_ms, ctx["timeEpoch"], after_ms)
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", ctx["time"]), ctx["time"]
    assert time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ctx["timeEpoch"] / 1000)) == ctx["time"]
    assert "authorizer" not in ctx, ctx
    assert f"x-amzn-requestid: {ctx['requestId']}" in head.lower()


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_reach_the_function(py_url, method):
    _, url = py_url
    r = url.request(method, "/m")
    assert r.status_code == 200, r.text
    ev = r.json()
    assert ev["requestContext"]["http"]["method"] == method
    # No body, no body field.
    assert "body" not in ev and ev["isBase64Encoded"] is False
    assert "queryStringParameters" not in ev and ev["rawQueryString"] == ""


def test_head_answers_without_a_body(py_url):
    _, url = py_url
    r = url.request("HEAD", "/h")
    assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize("content_type,binary", [
    ("application/octet-stream", True),
    ("image/png", True),
    ("application/x-www-form-urlencoded", True),
    (None, True),
    ("text/plain; charset=utf-8", False),
    ("application/json", False),
    ("application/xml", False),
])
def test_text_bodies_as_they_are_others_in_base64(py_url, content_type, binary):
    _, url = py_url
    body = bytes(range(256)) if binary and content_type not in (None, "application/x-www-form-urlencoded") \
        else b"a=1&b=caf\xc3\xa9"
    headers = {"Content-Type": content_type} if content_type else {}
    r = url.request("POST", "/b", data=body, headers=headers)
    assert r.status_code == 200, r.text
    ev = r.json()
    assert ev["isBase64Encoded"] is binary, ev
    got = base64.b64decode(ev["body"]) if binary else ev["body"].encode()
    assert got == body


# ------------------------------------------------------------------------------------------
# The response
# ------------------------------------------------------------------------------------------


def test_structured_response_sets_status_headers_and_cookies(py_url):
    _, url = py_url
    r = url.request("GET", "/s?op=structured&status=202")
    assert r.status_code == 202, r.text
    assert r.text == "structured /s"
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["x-custom"] == "custom value"
    # Two Set-Cookie headers (urllib3 keeps both).
    assert r.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2; HttpOnly"]
    request_id_of(r)


def test_base64_bodies_are_decoded_and_strings_are_their_value(py_url):
    _, url = py_url
    r = url.request("GET", "/?op=binary")
    assert r.status_code == 200 and r.content == bytes(range(256))
    assert r.headers["Content-Type"] == "application/octet-stream"
    r = url.request("GET", "/?op=string")
    # As AWS: the string without its JSON quotes, typed application/json.
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (200, "just a string", "application/json")


def test_malformed_answers_and_function_errors_are_502(py_url, lam, server, shared_active):
    _, url = py_url
    for op in ("malformed", "error"):
        r = url.request("GET", f"/?op={op}")
        assert (r.status_code, r.text) == (502, "Internal Server Error"), (op, r.status_code, r.text)
        request_id_of(r)
    # The Rust test function fails on a URL event whose body is not a JSON object (its
    # InvalidEvent error).
    rust = shared_active("rust").name
    cfg = lam.create_function_url_config(FunctionName=rust, AuthType="NONE")
    make_public(lam, rust)
    try:
        r = Url(server, cfg).request("POST", "/", data="op=echo", headers={"content-type": "text/plain"})
        assert (r.status_code, r.text) == (502, "Internal Server Error"), (r.status_code, r.text)
    finally:
        make_private(lam, rust)
        lam.delete_function_url_config(FunctionName=rust)


def test_request_over_6_mb_is_413_without_invoking(py_url):
    _, url = py_url
    r = url.request("POST", "/big", data=b"x" * (6 * 1024 * 1024 + 1), headers={"Content-Type": "text/plain"})
    assert r.status_code == 413, r.text
    assert r.headers["x-amzn-ErrorType"] == "RequestTooLargeException"
    assert "6291456" in r.json()["Message"]
    # A body that fits but whose event (base64) does not: 413 as well.
    r = url.request("POST", "/big", data=b"\xff" * (5 * 1024 * 1024), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413, r.text


# ------------------------------------------------------------------------------------------
# CORS
# ------------------------------------------------------------------------------------------


def test_cors_preflight_is_answered_by_the_endpoint_and_responses_get_the_headers(lam, fresh_config):
    name, url = fresh_config
    lam.update_function_url_config(FunctionName=name, Cors={
        "AllowOrigins": ["https://app.example.com"], "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["x-custom-header"], "ExposeHeaders": ["x-custom"], "MaxAge": 300,
        "AllowCredentials": True})
    pre = url.request("OPTIONS", "/x", headers={"Origin": "https://app.example.com",
                                                 "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 200 and pre.content == b"", pre.text  # the function would echo its event
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert pre.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert pre.headers["Access-Control-Allow-Headers"] == "x-custom-header"
    assert pre.headers["Access-Control-Max-Age"] == "300"
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"
    request_id_of(pre)
    # A preflight from another origin: no CORS headers.
    other = url.request("OPTIONS", "/x", headers={"Origin": "https://evil.example.com",
                                                   "Access-Control-Request-Method": "POST"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    # An OPTIONS that is not a preflight goes to the function.
    assert url.request("OPTIONS", "/x").json()["requestContext"]["http"]["method"] == "OPTIONS"
    # A response: the URL's CORS headers replace the function's own.
    r = url.request("GET", "/x?op=structured", headers={"Origin": "https://app.example.com"})
    assert r.status_code == 201
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert r.headers["Access-Control-Expose-Headers"] == "x-custom"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    r = url.request("GET", "/x?op=structured", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in r.headers, r.headers
    # Without CORS config the function's headers stand.
    lam.update_function_url_config(FunctionName=name, Cors={})
    r = url.request("GET", "/x?op=structured", headers={"Origin": "https://evil.example.com"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://function.example"


# ------------------------------------------------------------------------------------------
# Auth
# ------------------------------------------------------------------------------------------


def test_none_needs_the_public_policy(lam, fresh_config):
    name, url = fresh_config
    make_private(lam, name)
    r = url.request("GET", "/")
    assert r.status_code == 403, r.text
    assert r.json() == {"Message": FORBIDDEN}
    assert r.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    # InvokeFunctionUrl alone is not enough (AWS asks for InvokeFunction too).
    lam.add_permission(FunctionName=name, StatementId="FunctionURLAllowPublicAccess",
                       Action="lambda:InvokeFunctionUrl", Principal="*", FunctionUrlAuthType="NONE")
    assert url.request("GET", "/").status_code == 403
    lam.add_permission(FunctionName=name, StatementId="FunctionURLInvokeAllowPublicAccess",
                       Action="lambda:InvokeFunction", Principal="*", InvokedViaFunctionUrl=True)
    assert url.request("GET", "/").status_code == 200


def signed(url: Url, method: str, path: str, body: bytes, secret: str = h.SECRET_KEY) -> requests.Response:
    target = url.prefixed(path)
    req = AWSRequest(method=method, url=target, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(h.ACCESS_KEY, secret), "lambda", h.REGION).add_auth(req)
    return requests.request(method, target, data=body, headers=dict(req.headers.items()), timeout=30)


def test_aws_iam_needs_a_sigv4_signature_by_the_servers_key(lam, fresh_config):
    name, url = fresh_config
    lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    unsigned = url.request("POST", "/iam", data=b"{}")
    assert unsigned.status_code == 403 and unsigned.json() == {"Message": FORBIDDEN}, unsigned.text
    bad = signed(url, "POST", "/iam?q=1", b'{"a": 1}', secret="wrong-secret")
    assert bad.status_code == 403, bad.text
    ok = signed(url, "POST", "/iam?q=1", b'{"a": 1}')
    assert ok.status_code == 200, ok.text
    ev = ok.json()
    assert ev["body"] == '{"a": 1}' and ev["rawPath"] == "/iam"
    iam = ev["requestContext"]["authorizer"]["iam"]
    assert iam["accessKey"] == h.ACCESS_KEY and iam["accountId"] == h.ACCOUNT, iam
    assert iam["userArn"] == f"arn:aws:iam::{h.ACCOUNT}:root"
    # A signed body that was changed on the way.
    target = url.prefixed("/iam")
    req = AWSRequest(method="POST", url=target, data=b"{}", headers={})
    SigV4Auth(Credentials(h.ACCESS_KEY, h.SECRET_KEY), "lambda", h.REGION).add_auth(req)
    tampered = requests.post(target, data=b'{"x": 2}', headers=dict(req.headers.items()), timeout=30)
    assert tampered.status_code == 403, tampered.text


# ------------------------------------------------------------------------------------------
# Modes, throttles
# ------------------------------------------------------------------------------------------


def test_response_stream_mode_with_a_buffered_answer_sends_it_as_it_is(lam, fresh_config):
    # AWS: a function that does not stream, behind a RESPONSE_STREAM URL, is answered
    # verbatim (its structured response is not mapped).
    name, url = fresh_config
    lam.update_function_url_config(FunctionName=name, InvokeMode="RESPONSE_STREAM")
    r = url.request("GET", "/raw?op=structured")
    assert r.status_code == 200, r.text
    assert r.json()["statusCode"] == 201 and r.json()["body"] == "structured /raw"
    r = url.request("GET", "/?op=error")
    assert (r.status_code, r.text) == (502, "Internal Server Error")


@pytest.fixture(scope="module")
def single_python(lam, endpoint, server, fn_factory):
    """A Python function with one environment of concurrency 1, a public URL."""
    name = fn_factory.create("python", concurrency=1)
    dp.publish_active(lam, endpoint, name, "python")
    dp.set_scaling(lam, name, QUALIFIER, 1, 1)
    dp.wait_single_ready(endpoint, name, QUALIFIER)
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    make_public(lam, name)
    return name, Url(server, cfg)


def test_throttled_url_request_is_429(endpoint, single_python):
    name, url = single_python
    slow: dict = {}
    t = threading.Thread(target=lambda: slow.setdefault("r", url.request("GET", "/?op=sleep&ms=2000")))
    t.start()
    try:
        dp.wait_in_flight(endpoint, name, QUALIFIER, 1)
        r = url.request("GET", "/?op=string")
    finally:
        t.join(30)
    assert r.status_code == 429, r.text
    assert r.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    assert r.json()["Message"], r.text
    assert slow["r"].status_code == 200 and slow["r"].json() == {"slept_ms": 2000}


# ------------------------------------------------------------------------------------------
# InvokeWithResponseStream
# ------------------------------------------------------------------------------------------


def read_stream(resp) -> tuple[bytes, dict]:
    chunks, complete = [], None
    for event in resp["EventStream"]:
        if "PayloadChunk" in event:
            assert complete is None, "a chunk after InvokeComplete"
            chunks.append(event["PayloadChunk"]["Payload"])
        elif "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    assert complete is not None, "no InvokeComplete"
    return b"".join(chunks), complete


def test_invoke_with_response_stream_reads_every_event(lam, shared_active):
    py = shared_active("python").name
    resp = lam.invoke_with_response_stream(FunctionName=py, Payload=json.dumps({"op": "echo", "n": 1}))
    assert resp["StatusCode"] == 200 and resp["ExecutedVersion"] == QUALIFIER, resp
    assert resp["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    payload, complete = read_stream(resp)
    assert json.loads(payload) == {"op": "echo", "n": 1}
    assert "ErrorCode" not in complete, complete
    # A function error is reported in InvokeComplete.
    resp = lam.invoke_with_response_stream(FunctionName=py, Payload=json.dumps({"op": "error"}))
    payload, complete = read_stream(resp)
    assert complete["ErrorCode"] == "ValueError", complete
    assert json.loads(complete["ErrorDetails"])["errorMessage"] == "error requested by the event"
    # DryRun, and the invocation types this operation does not have.
    dry = lam.invoke_with_response_stream(FunctionName=py, InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    h.expect_error(lam, lambda: lam.invoke_with_response_stream(FunctionName=py, InvocationType="Event"),
                   "ValidationException", 400, mentions=["[RequestResponse, DryRun]"])


def test_invoke_with_response_stream_of_a_streaming_function(lam, shared_active):
    # fleetfn-testfn's `stream` op writes its chunks through lambda_runtime's streaming
    # response (an HTTP prelude, 8 NUL bytes, then the chunks), which reach the caller as
    # they are.
    rust = shared_active("rust").name
    resp = lam.invoke_with_response_stream(FunctionName=rust, Payload=json.dumps({"op": "stream", "chunks": 3}))
    payload, complete = read_stream(resp)
    assert "ErrorCode" not in complete, complete
    assert payload.endswith(b"\x00" * 8 + b"chunk-0\nchunk-1\nchunk-2\n"), payload
