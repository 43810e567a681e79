"""Function URLs in front of functions written on real frameworks (issue 16): a Rust `lambda_http`
application (crates/fleetfn-httpfn, payload format 2.0 types unchanged), Python handlers returning
the structured URL response or the event itself, and streamed responses through `RESPONSE_STREAM`
URLs from Node (awslambda.streamifyResponse / HttpResponseStream) and Rust (lambda_http's
run_with_streaming_response).

URLs are reached on the data-plane server's URL endpoint (`--url-listen`) by its path prefix
(`/_fleetfn/url/<url-id>/…`), with a plain HTTP client (requests), as a browser would.
A streamed answer must reach the client while the function still runs: each streaming function
waits a known gap (1 s) between chunks, so the first chunk has to arrive at least that long
before the body ends; a buffered path would deliver it all at once at the end.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests
import urllib3

from fleetfn_testkit import frameworks as fw

GAP_S = 1.0
CHUNKS = b"chunk 0\nchunk 1\nchunk 2\n"


@pytest.fixture(scope="module")
def urls(lam, endpoint, server, cp_arn, fn_factory) -> dict[str, str]:
    """Every fixture function behind a public URL: key -> URL base on the path prefix."""
    specs = {
        # key: (runtime, zip, handler, invoke mode)
        "rust-http": ("rust", fw.httpfn_zip(), "buffered", "BUFFERED"),
        "rust-http-stream": ("rust", fw.httpfn_zip(), "stream", "RESPONSE_STREAM"),
        "python-structured": ("python", fw.python_url_zip(), "app.structured", "BUFFERED"),
        "python-echo": ("python", fw.python_url_zip(), "app.echo", "BUFFERED"),
        "node-stream": ("node", fw.node_stream_zip(), "index.handler", "RESPONSE_STREAM"),
    }
    names = {key: fw.create_function(lam, cp_arn, rt, zip_bytes, handler)
             for key, (rt, zip_bytes, handler, _) in specs.items()}
    fn_factory.names.extend(names.values())
    fw.publish_all(lam, endpoint, names)
    return {key: fw.url_on(server.url_endpoint, fw.public_url(lam, names[key], specs[key][3]), "") for key in specs}


def assert_streamed(res: fw.Timed, first: bytes, later: bytes):
    """`first` arrived before `later` was even written (the function's gap lies between them)."""
    t_first = res.first_arrival_of(first)
    assert later not in res.received_before(t_first), f"{later!r} arrived with {first!r}: {res.pieces}"
    assert res.end - t_first >= GAP_S, (
        f"the body ended {res.end - t_first:.3f}s after {first!r} arrived although the function waited "
        f"{2 * GAP_S}s after writing it: {res.pieces}")


# --------------------------------------------------------------------------------------
# lambda_http (buffered)
# --------------------------------------------------------------------------------------


def test_lambda_http_echo(urls):
    resp = fw.get_when_ready(f"{urls['rust-http']}/some/path?x=1&x=2&y=z", method="POST", data=b"hello",
                             headers={"X-Custom": "v", "Cookie": "a=1; b=2", "Content-Type": "text/plain"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    doc = resp.json()
    assert doc["method"] == "POST"
    assert doc["rawPath"] == "/some/path" and doc["path"] == "/some/path", doc
    assert doc["query"] == {"x": ["1", "2"], "y": ["z"]}, doc
    assert doc["rawQuery"] == "x=1&x=2&y=z", doc
    assert doc["headers"]["x-custom"] == "v", doc["headers"]
    assert doc["cookies"] == ["a=1", "b=2"], doc
    assert doc["body"] == "hello" and doc["isBinary"] is False, doc
    assert doc["requestId"], doc


def test_lambda_http_binary_both_ways(urls):
    data = bytes(range(256))
    resp = fw.get_when_ready(f"{urls['rust-http']}/upload", method="PUT", data=data,
                             headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert base64.b64decode(doc["bodyBase64"]) == data and doc["method"] == "PUT", doc

    resp = fw.get_when_ready(f"{urls['rust-http']}/binary")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.content == data


def test_lambda_http_cookies_headers_and_status(urls):
    resp = fw.get_when_ready(f"{urls['rust-http']}/cookie")
    assert resp.status_code == 200 and resp.text == "cookie set"
    assert resp.headers["x-fixture"] == "httpfn"
    assert sorted(resp.raw.headers.getlist("Set-Cookie")) == ["flavour=oatmeal", "session=abc; HttpOnly; Path=/"]
    assert resp.cookies.get("flavour") == "oatmeal"

    resp = fw.get_when_ready(f"{urls['rust-http']}/status/418")
    assert resp.status_code == 418 and resp.text == "status 418"


# --------------------------------------------------------------------------------------
# Python: the structured response, and the event itself
# --------------------------------------------------------------------------------------


def test_python_structured_response(urls):
    resp = fw.get_when_ready(f"{urls['python-structured']}/anything")
    assert resp.status_code == 202, resp.text
    assert resp.headers["content-type"] == "text/plain"
    assert resp.headers["x-fixture"] == "python-url"
    assert sorted(resp.raw.headers.getlist("Set-Cookie")) == ["flavour=ginger", "session=xyz; HttpOnly"]
    assert resp.text == "accepted /anything"

    resp = fw.get_when_ready(f"{urls['python-structured']}/binary")
    assert resp.status_code == 200
    assert resp.content == bytes(range(256))


def test_python_sees_the_payload_2_0_event(urls):
    resp = fw.get_when_ready(f"{urls['python-echo']}/p/q?a=1&a=2&b=", method="POST", data=b'{"k": 1}',
                             headers={"Content-Type": "application/json", "Cookie": "c1=x; c2=y", "X-Multi": "m"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    ev = resp.json()
    assert ev["version"] == "2.0" and ev["routeKey"] == "$default", ev
    assert ev["rawPath"] == "/p/q" and ev["rawQueryString"] == "a=1&a=2&b=", ev
    assert ev["queryStringParameters"]["a"] == "1,2", ev
    assert ev["cookies"] == ["c1=x", "c2=y"], ev
    assert "cookie" not in ev["headers"] and ev["headers"]["x-multi"] == "m", ev["headers"]
    assert ev["body"] == '{"k": 1}' and ev["isBase64Encoded"] is False, ev
    ctx = ev["requestContext"]
    assert ctx["http"]["method"] == "POST" and ctx["http"]["path"] == "/p/q", ctx
    assert ctx["stage"] == "$default" and ctx["apiId"] == ctx["domainPrefix"], ctx
    assert ctx["accountId"] and ctx["requestId"] and isinstance(ctx["timeEpoch"], int), ctx


# --------------------------------------------------------------------------------------
# RESPONSE_STREAM URLs
# --------------------------------------------------------------------------------------


def test_lambda_http_streamed_first_chunk_before_the_end(urls):
    fw.get_when_ready(f"{urls['rust-http-stream']}/status/204")  # warm: an environment is Ready
    res = fw.timed_request("GET", f"{urls['rust-http-stream']}/chunks?n=3&delay_ms=1000")
    assert res.status == 201, res
    assert res.headers.get("x-fixture") == "httpfn-stream", res.headers
    assert res.headers.get("content-type") == "text/plain", res.headers
    assert res.cookies == ["streamed=yes"], res.cookies
    assert res.body == CHUNKS
    assert_streamed(res, b"chunk 0\n", b"chunk 1")


def test_lambda_http_streamed_whole_answers(urls):
    resp = fw.get_when_ready(f"{urls['rust-http-stream']}/binary")
    assert resp.status_code == 200 and resp.content == bytes(range(256))
    resp = fw.get_when_ready(f"{urls['rust-http-stream']}/cookie")
    assert resp.status_code == 200 and resp.text == "cookie set"
    assert sorted(resp.raw.headers.getlist("Set-Cookie")) == ["flavour=oatmeal", "session=abc; HttpOnly; Path=/"]


def test_node_http_response_stream_prelude(urls):
    fw.get_when_ready(f"{urls['node-stream']}/chunks?n=1")
    res = fw.timed_request("GET", f"{urls['node-stream']}/http?n=3&delay_ms=1000")
    assert res.status == 201, res
    assert res.headers.get("x-fixture") == "node-stream", res.headers
    assert res.headers.get("content-type") == "text/plain", res.headers
    assert sorted(res.cookies) == ["a=1", "b=2; Path=/"], res.cookies
    assert res.body == CHUNKS, "the prelude and its delimiter are not part of the body"
    assert_streamed(res, b"chunk 0\n", b"chunk 1")


def test_node_plain_stream(urls):
    res = fw.timed_request("GET", f"{urls['node-stream']}/chunks?n=3&delay_ms=1000")
    assert res.status == 200, res
    assert res.headers.get("content-type") == "text/plain", res.headers
    assert res.body == CHUNKS
    assert_streamed(res, b"chunk 0\n", b"chunk 1")


def test_node_prelude_without_a_write(urls):
    """HttpResponseStream.from followed by end(chunk) or end() alone still sends its prelude."""
    resp = fw.get_when_ready(f"{urls['node-stream']}/notFound")
    assert resp.status_code == 404 and resp.text == "Not Found", (resp.status_code, resp.text)
    assert resp.headers.get("x-fixture") == "not-found", resp.headers
    resp = fw.get_when_ready(f"{urls['node-stream']}/empty")
    assert resp.status_code == 204 and resp.content == b"", (resp.status_code, resp.content)
    assert resp.headers.get("x-fixture") == "empty", resp.headers


def test_node_errors_behind_a_stream_url(urls):
    """After the first byte a function error can only cut the body short (the client sees an
    incomplete chunked body, not a clean end); before it the URL answers 502."""
    fw.get_when_ready(f"{urls['node-stream']}/chunks?n=1")
    got: list[bytes] = []
    with pytest.raises((requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)):
        with requests.get(f"{urls['node-stream']}/fails?delay_ms=1000", stream=True, timeout=30) as resp:
            assert resp.status_code == 200
            for piece in resp.raw.stream(amt=None, decode_content=False):
                got.append(piece)
    assert b"".join(got) == b"before\n", got

    resp = fw.get_when_ready(f"{urls['node-stream']}/failsEarly")
    assert resp.status_code == 502 and resp.text == "Internal Server Error", (resp.status_code, resp.text)
