"""The API's edge against abuse: requests without a well-formed SigV4 signature are refused
before their body is read (and their connection closed, not drained), large bodies are buffered
only a few at a time, slow or idle connections are closed, and a request may carry only one
Authorization header.

Raw sockets are used where the client must misbehave (send headers only, never finish a head,
keep sending after the answer)."""

from __future__ import annotations

import http.client
import socket
import threading
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fleetfn_testkit import api as h

BIG = 60 * 1000 * 1000  # under the 69.9 MB code-upload limit
RSS_LIMIT_KB = 100 * 1024


def _addr(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.removeprefix("http://").split(":")
    return host, int(port)


def _signed_headers(endpoint: str, method: str, path: str, body: bytes) -> dict[str, str]:
    req = AWSRequest(method=method, url=endpoint + path, data=body,
                     headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(h.ACCESS_KEY, h.SECRET_KEY), "lambda", h.REGION).add_auth(req)
    return dict(req.headers.items())


def _head(endpoint: str, method: str, path: str, content_length: int,
          headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.removeprefix('http://')}",
             f"Content-Length: {content_length}"]
    for k, v in (headers or {}).items():
        if k.lower() not in ("host", "content-length"):
            lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one response; fails on timeout."""
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        assert time.monotonic() < deadline, f"no response head within {timeout}s: {buf[:200]!r}"
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {buf[:200]!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    first, *hdr_lines = head.decode("latin-1").split("\r\n")
    status = int(first.split(" ")[1])
    hdrs = {}
    for line in hdr_lines:
        k, v = line.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        assert time.monotonic() < deadline, "response body incomplete"
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the response body"
        rest += chunk
    return status, hdrs, rest[:n]


def _error_type(hdrs: dict[str, str]) -> str:
    return hdrs.get("x-amzn-errortype", "").split(":")[0]


def _vm_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def _closed_within(sock: socket.socket, timeout: float) -> float:
    """Seconds until the peer closes `sock` (EOF or reset); fails if it stays open."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return time.monotonic() - start
    except socket.timeout:
        raise AssertionError(f"connection still open after {timeout}s")
    # hyper may answer a timed-out head with 408 before closing.
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
    if data:
        sock.settimeout(max(0.1, timeout - (time.monotonic() - start)))
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
    return time.monotonic() - start


def test_unsigned_upload_is_refused_before_its_body(endpoint):
    # Headers of a 60 MB CreateFunction, no body: the answer must come without it.
    with socket.create_connection(_addr(endpoint), timeout=5) as s:
        s.sendall(_head(endpoint, "POST", "/2015-03-31/functions", BIG,
                        {"Content-Type": "application/json"}))
        status, hdrs, body = _read_response(s, 5.0)
    assert status == 403, body
    assert _error_type(hdrs) == "MissingAuthenticationTokenException", hdrs
    assert hdrs.get("connection", "").lower() == "close", hdrs


def test_malformed_authorization_is_refused_before_the_body(endpoint):
    with socket.create_connection(_addr(endpoint), timeout=5) as s:
        s.sendall(_head(endpoint, "PUT", "/2015-03-31/functions/x/code", BIG,
                        {"Authorization": "AWS4-HMAC-SHA256 Credential=junk",
                         "X-Amz-Date": "20260101T000000Z"}))
        status, hdrs, body = _read_response(s, 5.0)
    assert status == 403, body
    assert _error_type(hdrs) == "IncompleteSignatureException", (hdrs, body)


def test_parallel_unsigned_60mb_posts_keep_rss_low(server_factory):
    srv = server_factory.new(name="rss")
    pid = srv.proc.pid
    before = _vm_rss_kb(pid)
    peak = [before]
    sent = [0] * 8
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _vm_rss_kb(pid))
            time.sleep(0.02)

    def flood(i: int):
        chunk = b"x" * (1 << 20)
        try:
            with socket.create_connection(_addr(srv.endpoint), timeout=10) as s:
                s.sendall(_head(srv.endpoint, "POST", "/2015-03-31/functions", BIG,
                                {"Content-Type": "application/json"}))
                while sent[i] < BIG:
                    s.sendall(chunk[: BIG - sent[i]])
                    sent[i] += min(len(chunk), BIG - sent[i])
        except OSError:
            pass  # the server closed the connection: what we want

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    flooders = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(8)]
    for t in flooders:
        t.start()
    for t in flooders:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in flooders), "a client is still sending after 60 s"
    peak[0] = max(peak[0], _vm_rss_kb(pid))
    done.set()
    sampler.join(timeout=5)
    assert peak[0] < RSS_LIMIT_KB, f"RSS went from {before} kB to {peak[0]} kB"
    # The server closed the connections instead of draining 60 MB from each.
    assert all(n < BIG for n in sent), f"bytes accepted per client: {sent}"
    assert h.raw_request(srv.endpoint, "GET", "/fleetfn/health", sign=False).status_code == 200
    print(f"VmRSS before {before} kB, peak {peak[0]} kB; MB sent per client {[n // 1000000 for n in sent]}")


def test_large_bodies_beyond_the_permits_get_429(server_factory):
    srv = server_factory.new(name="permits", extra_args=["--max-concurrent-uploads", "2"])
    size = 2 << 20
    path = "/2015-03-31/functions"
    holders = []
    try:
        # Two signed uploads that send their head and a little of the body, then stall.
        for _ in range(2):
            s = socket.create_connection(_addr(srv.endpoint), timeout=5)
            s.sendall(_head(srv.endpoint, "POST", path, size, _signed_headers(srv.endpoint, "POST", path, b"{}")))
            s.sendall(b"{" + b" " * 100)
            holders.append(s)
        # A third is refused at once with 429, once the server has given both permits away
        # (bounded: a try that gets no answer was given a permit; it is closed and retried).
        refused = None
        for _ in range(20):
            with socket.create_connection(_addr(srv.endpoint), timeout=5) as s:
                s.sendall(_head(srv.endpoint, "POST", path, size,
                                _signed_headers(srv.endpoint, "POST", path, b"{}")))
                try:
                    refused = _read_response(s, 0.5)
                    break
                except (socket.timeout, TimeoutError):
                    continue
        assert refused is not None, "the third large upload was never refused"
        status, hdrs, body = refused
        assert status == 429, body
        assert _error_type(hdrs) == "TooManyRequestsException", hdrs
        assert b"retry" in body.lower(), body
        assert hdrs.get("retry-after") == "1", hdrs
        # Small requests are not held up by large ones.
        lam = h.make_client(srv.endpoint)
        assert "Functions" in lam.list_functions()
    finally:
        for s in holders:
            s.close()
    # With the holders gone, a large body is read again (and judged on its content).
    for _ in range(50):
        r = h.raw_request(srv.endpoint, "POST", path, body=b"{" + b" " * size + b"}")
        if r.status_code != 429:
            break
        time.sleep(0.1)
    assert r.status_code == 400, (r.status_code, r.text)
    assert h.raw_error_code(r) in ("InvalidParameterValueException", "ValidationException",
                                   "InvalidRequestContentException"), r.text


def test_half_sent_head_is_closed_after_the_header_timeout(server_factory):
    srv = server_factory.new(name="slowloris", extra_args=["--header-read-timeout", "1"])
    with socket.create_connection(_addr(srv.endpoint), timeout=5) as s:
        s.sendall(b"GET /fleetfn/health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")  # never finished
        took = _closed_within(s, 6.0)
    assert 0.5 < took < 4.0, took


def test_idle_keep_alive_connection_is_closed(server_factory):
    srv = server_factory.new(name="idle", extra_args=["--header-read-timeout", "1"])
    with socket.create_connection(_addr(srv.endpoint), timeout=5) as s:
        s.sendall(b"GET /fleetfn/health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, hdrs, _ = _read_response(s, 5.0)
        assert status == 200
        assert hdrs.get("connection", "").lower() != "close"
        took = _closed_within(s, 6.0)
    assert took < 4.0, took


def test_default_header_timeout_keeps_a_briefly_idle_connection(endpoint):
    # The default (10 s) does not cut a client that pauses a little between requests.
    conn = http.client.HTTPConnection(*_addr(endpoint), timeout=5)
    try:
        for _ in range(2):
            conn.request("GET", "/fleetfn/health")
            r = conn.getresponse()
            r.read()
            assert r.status == 200
            sock = conn.sock
            time.sleep(1.5)
        assert conn.sock is sock, "the connection was reopened"
    finally:
        conn.close()


def test_two_authorization_headers_are_refused(endpoint):
    path = "/2015-03-31/functions"
    hdrs = _signed_headers(endpoint, "GET", path, b"")
    conn = http.client.HTTPConnection(*_addr(endpoint), timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", endpoint.removeprefix("http://"))
        for k, v in hdrs.items():
            if k.lower() not in ("host", "content-type"):
                conn.putheader(k, v)
        # A second, different Authorization after the valid one (which used to win).
        conn.putheader("Authorization", "AWS4-HMAC-SHA256 Credential=other/20260101/us-east-1/lambda/aws4_request, "
                                        "SignedHeaders=host, Signature=00")
        conn.endheaders()
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 403, body
    assert r.getheader("x-amzn-ErrorType", "").split(":")[0] == "IncompleteSignatureException", body
    assert b"only one Authorization header is allowed" in body, body


def test_function_name_is_at_most_64_characters(lam, cp_arn):
    n65 = "f" * 65
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(n65, cp_arn)),
                   "ValidationException", 400, mentions=["64"])
    n64 = h.uniq("n").ljust(64, "x")[:64]
    h.create_function(lam, n64, cp_arn)
    try:
        # An ARN is longer than 64 characters and names the same function.
        arn = h.fn_arn_for(n64)
        assert len(arn) > 64
        assert lam.get_function_configuration(FunctionName=arn)["FunctionName"] == n64
        # Raw signed requests (no client-side validation): a 65-character name in an ARN too.
        r = h.raw_request(lam.meta.endpoint_url, "GET", f"/2015-03-31/functions/{h.fn_arn_for(n65)}/configuration")
        assert r.status_code == 400 and h.raw_error_code(r) == "ValidationException", r.text
    finally:
        lam.delete_function(FunctionName=n64)
