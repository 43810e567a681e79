"""InvokeWithResponseStream with boto3 (issue 16): every PayloadChunk and the InvokeComplete
event, for streamed Node (awslambda.streamifyResponse) and Rust (lambda_runtime / lambda_http)
functions, a function error in the middle of a stream, a buffered function answering in one
chunk, and the plain Invoke API on a streaming function returning the whole body.

Timing is checked by order, not by racing the wall clock: a streamed function waits a known
gap (1 s) between its chunks, so the first chunk must reach the client at least that long
before the stream completes; a buffered path would deliver everything at once at the end.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import frameworks as fw

GAP_S = 1.0          # the functions' own pause between chunks
CHUNKS = b"chunk 0\nchunk 1\nchunk 2\n"


@pytest.fixture(scope="module")
def fns(lam, endpoint, cp_arn, fn_factory) -> dict[str, str]:
    names = {
        # Streamified Node handler picking its behaviour from the event's `mode`.
        "node": fw.create_function(lam, cp_arn, "node", fw.node_stream_zip(), "index.handler"),
        # Not streamified: an ordinary buffered answer.
        "node-buffered": fw.create_function(lam, cp_arn, "node", fw.node_stream_zip(), "index.buffered"),
        # lambda_http's run_with_streaming_response_concurrent (crates/fleetfn-httpfn).
        "rust-http": fw.create_function(lam, cp_arn, "rust", fw.httpfn_zip(), "stream"),
        # fleetfn-testfn's `stream` op: lambda_runtime's StreamResponse under run_concurrent.
        "rust": fw.create_function(lam, cp_arn, "rust", dp.rust_zip(), "bootstrap"),
    }
    fn_factory.names.extend(names.values())
    fw.publish_all(lam, endpoint, names)
    return names


def url_event(path: str, query: str = "") -> bytes:
    """A function URL event (payload format 2.0) as lambda_http reads it."""
    return json.dumps({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"host": "example.lambda-url.us-east-1.on.aws"},
        "requestContext": {"accountId": h.ACCOUNT, "apiId": "example", "domainName": "example.lambda-url.us-east-1.on.aws",
                           "domainPrefix": "example", "requestId": "r", "routeKey": "$default", "stage": "$default",
                           "time": "04/Dec/2026:12:00:00 +0000", "timeEpoch": 0,
                           "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "test"}},
        "isBase64Encoded": False,
    }).encode()


def assert_completed_ok(res: fw.StreamedInvoke):
    assert res.complete is not None, f"no InvokeComplete event: {res}"
    assert not res.complete.get("ErrorCode"), f"InvokeComplete reports an error: {res.complete}"
    assert res.other == [], f"unexpected events: {res.other}"
    assert res.response["StatusCode"] == 200, res.response


def assert_streamed(res: fw.StreamedInvoke, first: bytes, later: bytes):
    """`first` arrived before `later` was even written, and at least the function's gap before
    the last chunk."""
    seen, t_first = b"", None
    for t, chunk in res.chunks:
        seen += chunk
        if first in seen:
            t_first = t
            break
    assert t_first is not None, f"{first!r} never arrived: {res.chunks}"
    assert later not in seen, f"{later!r} arrived with {first!r}: {res.chunks}"
    t_last = res.chunks[-1][0]
    assert t_last - t_first >= GAP_S, (
        f"the last chunk arrived {t_last - t_first:.3f}s after {first!r} although the function waited "
        f"{2 * GAP_S}s after writing it: {res.chunks}")


def test_node_chunks_arrive_as_written(lam, fns):
    res = fw.invoke_streamed(lam, fns["node"], json.dumps({"mode": "chunks", "n": 3, "delay_ms": 1000}).encode())
    assert_completed_ok(res)
    assert res.payload == CHUNKS
    assert [c for _, c in res.chunks] == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n"], res.chunks
    assert_streamed(res, b"chunk 0\n", b"chunk 1")
    assert res.response.get("ExecutedVersion"), res.response


def test_concurrent_streams_share_one_node_environment(lam, fns):
    """Four streams at once (LMI multi-concurrency): all are open together, each intact."""
    payload = json.dumps({"mode": "chunks", "n": 3, "delay_ms": 1000}).encode()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: fw.invoke_streamed(lam, fns["node"], payload), range(4)))
    for res in results:
        assert_completed_ok(res)
        assert res.payload == CHUNKS, res.chunks
    first = [r.started + r.chunks[0][0] for r in results]
    last = [r.started + r.chunks[-1][0] for r in results]
    assert max(first) < min(last), f"the streams did not overlap: first chunks {first}, last chunks {last}"


def test_rust_lambda_http_stream(lam, fns):
    res = fw.invoke_streamed(lam, fns["rust-http"], url_event("/chunks", "n=3&delay_ms=1000"))
    assert_completed_ok(res)
    # lambda_http streams the HTTP integration form: a JSON prelude, 8 NUL bytes, the body.
    meta, body = split_prelude(res.payload)
    assert meta["statusCode"] == 201, meta
    assert meta["headers"].get("x-fixture") == "httpfn-stream", meta
    assert "streamed=yes" in meta.get("cookies", []), meta
    assert body == CHUNKS
    assert_streamed(res, b"chunk 0\n", b"chunk 1")


def split_prelude(payload: bytes) -> tuple[dict, bytes]:
    """An HTTP-integration stream: a JSON prelude, 8 NUL bytes, the body."""
    prelude, sep, body = payload.partition(b"\0" * 8)
    assert sep, f"no prelude delimiter in {payload[:300]!r}"
    return json.loads(prelude), body


def test_rust_lambda_runtime_stream(lam, fns):
    res = fw.invoke_streamed(lam, fns["rust"], json.dumps({"op": "stream", "chunks": 3, "ms": 1000}).encode())
    assert_completed_ok(res)
    meta, body = split_prelude(res.payload)
    assert meta.get("statusCode", 200) == 200 and meta["headers"]["content-type"] == "text/plain", meta
    assert body == b"chunk-0\nchunk-1\nchunk-2\n"
    assert_streamed(res, b"chunk-0\n", b"chunk-1")


def test_node_pipeline_of_4_mib(lam, fns):
    size = 4 << 20
    res = fw.invoke_streamed(lam, fns["node"], json.dumps({"mode": "pipe", "bytes": size}).encode())
    assert_completed_ok(res)
    assert len(res.payload) == size and res.payload.count(b"x") == size


def test_error_mid_stream_ends_in_invoke_complete(lam, fns):
    res = fw.invoke_streamed(lam, fns["node"], json.dumps({"mode": "fails", "delay_ms": 1000}).encode())
    assert res.payload == b"before\n", res.chunks
    assert res.complete is not None, f"no InvokeComplete event: {res}"
    assert res.complete.get("ErrorCode") == "StreamBoom", res.complete
    details = json.loads(res.complete["ErrorDetails"])
    assert details["errorType"] == "StreamBoom" and details["errorMessage"] == "failed after the first chunk", details


def test_error_before_first_byte(lam, fns):
    res = fw.invoke_streamed(lam, fns["node"], json.dumps({"mode": "failsEarly"}).encode())
    assert res.payload == b"", res.chunks
    assert res.complete is not None and res.complete.get("ErrorCode") == "EarlyBoom", res.complete
    assert json.loads(res.complete["ErrorDetails"])["errorMessage"] == "failed before writing", res.complete


def test_buffered_function_answers_in_one_chunk(lam, fns):
    res = fw.invoke_streamed(lam, fns["node-buffered"], b"{}")
    assert_completed_ok(res)
    assert [c for _, c in res.chunks] == [b'{"buffered":true}'], res.chunks


def test_invoke_api_on_a_streaming_function_returns_the_whole_body(lam, fns):
    res = dp.invoke(lam, fns["node"], {"mode": "chunks", "n": 3, "delay_ms": 100})
    assert res.status == 200 and res.function_error is None, res
    assert res.raw == CHUNKS, res


def test_invoke_api_on_a_stream_failing_midway_is_a_function_error(lam, fns):
    res = dp.invoke(lam, fns["node"], {"mode": "fails", "delay_ms": 100})
    assert res.status == 200 and res.function_error, res
