"""The web console's sessions against a real server (issue 17): sign-in with the admin key pair
into an HttpOnly SameSite=Strict cookie, the cookie plus the `X-Fleetfn-Csrf` header as the
API's authentication (the very routes boto3 calls), CSRF and cross-origin refusals, sign-out,
the failed sign-in limit, and the embedded page.

Cookies are sent as explicit `Cookie` headers (not a cookie jar) so each request says exactly
what a browser would send.
"""

import base64
import json
import socket
import time

import requests

from fleetfn_testkit import api as h

COOKIE = "fleetfn_console"


def sign_in(endpoint, key=h.ACCESS_KEY, secret=h.SECRET_KEY, origin=None):
    return requests.post(
        f"{endpoint}/console/session",
        json={"AccessKeyId": key, "SecretAccessKey": secret},
        headers={"Origin": origin or endpoint},
        timeout=10,
    )


def session(endpoint):
    """Signs in; (Cookie header value, session document)."""
    r = sign_in(endpoint)
    assert r.status_code == 200, r.text
    pair = r.headers["Set-Cookie"].split(";")[0]
    assert pair.startswith(f"{COOKIE}="), r.headers["Set-Cookie"]
    return pair, r.json()


def console_call(endpoint, method, path, cookie, csrf=None, origin=None, **kw):
    headers = {"Cookie": cookie}
    if csrf is not None:
        headers["X-Fleetfn-Csrf"] = csrf
    if origin is not None:
        headers["Origin"] = origin
    headers.update(kw.pop("headers", {}))
    return requests.request(method, f"{endpoint}{path}", headers=headers, timeout=30, **kw)


def test_sign_in_sets_a_strict_cookie_and_the_api_answers_the_cookie_with_its_csrf_token(endpoint, lam):
    r = sign_in(endpoint)
    assert r.status_code == 200, r.text
    cookie = r.headers["Set-Cookie"]
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    assert attrs == ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=28800"], cookie
    assert r.headers["Cache-Control"] == "no-store"
    doc = r.json()
    assert doc["AccessKeyId"] == h.ACCESS_KEY
    assert len(doc["CsrfToken"]) == 43
    pair = cookie.split(";")[0]

    r = console_call(endpoint, "GET", "/2015-03-31/functions/", pair, doc["CsrfToken"])
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["Functions"], list)
    # The same session document again, for a reloaded page.
    again = console_call(endpoint, "GET", "/console/session", pair)
    assert again.status_code == 200 and again.json() == doc

    for csrf in (None, "wrong", ""):
        r = console_call(endpoint, "GET", "/2015-03-31/functions/", pair, csrf)
        assert r.status_code == 403, r.text
        assert h.raw_error_code(r) == "AccessDeniedException"
        msg = h.raw_error_message(r)
        assert "console session" in msg and "sign in again" in msg, msg
    # Neither cookie nor signature: SigV4's own answer, as before.
    r = requests.get(f"{endpoint}/2015-03-31/functions/", timeout=10)
    assert r.status_code == 403
    assert h.raw_error_code(r) == "MissingAuthenticationTokenException"


def test_a_forged_cross_site_post_creates_nothing_and_the_console_creates_with_its_token(endpoint, lam, cp_arn):
    pair, doc = session(endpoint)
    name = h.uniq("consolefn")
    req = h.function_request(name, cp_arn)
    req["Code"]["ZipFile"] = base64.b64encode(req["Code"]["ZipFile"]).decode()
    body = json.dumps(req)
    evil = "http://127.0.0.1:1"
    # What a form on another site can send: no custom header, its own Origin.
    r = console_call(endpoint, "POST", "/2015-03-31/functions", pair, origin=evil,
                     headers={"Content-Type": "application/x-www-form-urlencoded"},
                     data={"FunctionName": name, "Runtime": "python3.13"})
    assert r.status_code == 403, r.text
    assert h.raw_error_code(r) == "AccessDeniedException"
    # Even a whole CreateFunction body without the token, or with it from a foreign origin.
    r = console_call(endpoint, "POST", "/2015-03-31/functions", pair, origin=evil,
                     headers={"Content-Type": "text/plain"}, data=body)
    assert r.status_code == 403, r.text
    r = console_call(endpoint, "POST", "/2015-03-31/functions", pair, doc["CsrfToken"], origin=evil,
                     headers={"Content-Type": "application/json"}, data=body)
    assert r.status_code == 403, r.text
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)

    # The console's own request (same origin, token) is an ordinary CreateFunction.
    r = console_call(endpoint, "POST", "/2015-03-31/functions", pair, doc["CsrfToken"], origin=endpoint,
                     headers={"Content-Type": "application/json"}, data=body)
    assert r.status_code == 201, r.text
    assert r.json()["FunctionName"] == name
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    # ... and its validation messages come back as the API's.
    r = console_call(endpoint, "POST", "/2015-03-31/functions", pair, doc["CsrfToken"], origin=endpoint,
                     headers={"Content-Type": "application/json"}, data=body)
    assert r.status_code == 409, r.text
    assert h.raw_error_code(r) == "ResourceConflictException"
    h.wait_function_settled(lam, name)
    r = console_call(endpoint, "DELETE", f"/2015-03-31/functions/{name}", pair, doc["CsrfToken"], origin=endpoint)
    # DeleteFunction of a function on a capacity provider is asynchronous (202), as in AWS.
    assert r.status_code == 202, r.text
    h.poll(lambda: console_call(endpoint, "GET", f"/2015-03-31/functions/{name}", pair, doc["CsrfToken"]).status_code,
           lambda status: status == 404, f"function {name} to be deleted")


def test_sign_out_ends_the_session(endpoint):
    pair, doc = session(endpoint)
    # Without its token a sign-out is refused.
    r = console_call(endpoint, "DELETE", "/console/session", pair, "wrong", origin=endpoint)
    assert r.status_code == 403, r.text
    r = console_call(endpoint, "DELETE", "/console/session", pair, doc["CsrfToken"], origin=endpoint)
    assert r.status_code == 204, r.text
    assert "Max-Age=0" in r.headers["Set-Cookie"]
    r = console_call(endpoint, "GET", "/2015-03-31/functions/", pair, doc["CsrfToken"])
    assert r.status_code == 403, r.text
    assert h.raw_error_code(r) == "AccessDeniedException"
    assert "sign in again" in h.raw_error_message(r)
    r = console_call(endpoint, "GET", "/console/session", pair)
    assert r.status_code == 401, r.text
    assert h.raw_error_code(r) == "MissingAuthenticationTokenException"


def test_a_wrong_key_or_a_foreign_origin_is_refused(endpoint):
    r = sign_in(endpoint, secret=h.SECRET_KEY + "x")
    assert r.status_code == 403, r.text
    assert h.raw_error_code(r) == "UnrecognizedClientException"
    assert "Set-Cookie" not in r.headers
    assert "key pair" in h.raw_error_message(r)
    r = sign_in(endpoint, origin="http://127.0.0.1:1")
    assert r.status_code == 403, r.text
    assert "Set-Cookie" not in r.headers


def test_a_foreign_host_name_is_refused_unless_allowed(server_factory):
    """DNS rebinding: a page of another site, under a name of its own that resolves to this
    server, is same-origin with itself; the Host check refuses it unless the operator allowed
    the name with --console-host."""
    srv = server_factory.new(name="consolehost", extra_args=["--console-host", "console.test"])
    body = {"AccessKeyId": h.ACCESS_KEY, "SecretAccessKey": h.SECRET_KEY}
    for host, status in [("evil.example:9600", 403), ("console.test:9600", 200),
                         ("localhost:9600", 200), ("[::1]:9600", 200)]:
        r = requests.post(f"{srv.endpoint}/console/session", json=body, timeout=10,
                          headers={"Host": host, "Origin": f"http://{host}"})
        assert r.status_code == status, (host, r.text)
        if status == 403:
            assert h.raw_error_code(r) == "AccessDeniedException"
            assert "--console-host evil.example" in h.raw_error_message(r)
            assert "Set-Cookie" not in r.headers
    pair, doc = session(srv.endpoint)
    r = console_call(srv.endpoint, "GET", "/2015-03-31/functions/", pair, doc["CsrfToken"],
                     headers={"Host": "evil.example:9600"})
    assert r.status_code == 403, r.text
    r = console_call(srv.endpoint, "GET", "/2015-03-31/functions/", pair, doc["CsrfToken"])
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert r.headers["Vary"] == "Cookie"
    # A bogus cookie sent first (as one tossed by a function URL for a longer path) is skipped.
    r = console_call(srv.endpoint, "GET", "/2015-03-31/functions/",
                     f"{COOKIE}=bogus; {pair}", doc["CsrfToken"])
    assert r.status_code == 200, r.text


def raw_sign_in(endpoint, head_lines, timeout):
    """Sends a sign-in's head (and no body) on a socket of its own; the status line and the
    head of the answer, and the seconds it took."""
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        head = ["POST /console/session HTTP/1.1", f"Host: {host}:{port}",
                "Content-Type: application/json"] + head_lines
        start = time.monotonic()
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer.split(b"\r\n\r\n")[0].decode().lower(), time.monotonic() - start


def test_a_sign_in_without_its_body_does_not_hold_the_connection(endpoint):
    # Chunked (no Content-Length): refused before a byte of body, the connection closed.
    head, took = raw_sign_in(endpoint, ["Transfer-Encoding: chunked"], timeout=5)
    assert head.startswith("http/1.1 411"), head
    assert "connection: close" in head, head
    assert took < 5
    # A declared body that never comes: 408 after 10 seconds, the connection closed.
    head, took = raw_sign_in(endpoint, ["Content-Length: 4096"], timeout=30)
    assert head.startswith("http/1.1 408"), head
    assert "connection: close" in head, head
    assert "x-amzn-errortype: requesttimeoutexception" in head, head
    assert 9 <= took < 20, took


def test_ten_failed_sign_ins_a_minute_then_429(server_factory):
    srv = server_factory.new(name="consolelimit")
    for _ in range(10):
        assert sign_in(srv.endpoint, secret="guess").status_code == 403
    r = sign_in(srv.endpoint)
    assert r.status_code == 429, r.text
    assert h.raw_error_code(r) == "TooManyRequestsException"
    assert int(r.headers["Retry-After"]) <= 60
    assert "Retry in" in h.raw_error_message(r)
    # SigV4 is not affected.
    assert h.raw_request(srv.endpoint, "GET", "/2015-03-31/functions/").status_code == 200


def test_the_page_and_its_files_are_served(endpoint):
    r = requests.get(f"{endpoint}/console", allow_redirects=False, timeout=10)
    assert r.status_code == 308 and r.headers["Location"] == "/console/"
    r = requests.get(f"{endpoint}/console/", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    r = requests.get(f"{endpoint}/console/assets/js/app.js", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"
    etag = r.headers["ETag"]
    r = requests.get(f"{endpoint}/console/assets/js/app.js", headers={"If-None-Match": etag}, timeout=10)
    assert r.status_code == 304
    r = requests.get(f"{endpoint}/console/assets/%2e%2e/%2e%2e/Cargo.toml", timeout=10)
    assert r.status_code == 404
