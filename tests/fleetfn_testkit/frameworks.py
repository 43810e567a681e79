"""Fixture functions written on real frameworks for function URLs and response streaming
(tests/dataplane/test_url_frameworks.py, test_response_stream.py), and the client side of both:
public URLs, streamed reads that time every piece, event-stream invokes.

- `fleetfn-httpfn` (crates/fleetfn-httpfn, lambda_http): FLEETFN_HTTPFN_BIN, else
  `$CARGO_TARGET_DIR/debug/fleetfn-httpfn` (`cargo build -p fleetfn-httpfn`);
- tests/dataplane/functions/node_stream (streamified Node handlers) and python_url (structured
  URL responses).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from . import api as h
from . import dataplane as dp
from .dataplane import FUNCTIONS


def httpfn_path() -> Path:
    env = os.environ.get("FLEETFN_HTTPFN_BIN")
    if env:
        p = Path(env)
    else:
        target = os.environ.get("CARGO_TARGET_DIR") or "/root/.cache/fleetfn-target"
        p = Path(target) / "debug" / "fleetfn-httpfn"
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"the lambda_http test function was not found at {p} (cargo build -p fleetfn-httpfn, "
                    "or set FLEETFN_HTTPFN_BIN)", pytrace=False)
    return p


@functools.lru_cache(maxsize=None)
def httpfn_zip() -> bytes:
    """fleetfn-httpfn as `bootstrap` (provided.al2023; Handler `stream` streams)."""
    return h.make_zip([("bootstrap", httpfn_path().read_bytes(), 0o755)])


@functools.lru_cache(maxsize=None)
def node_stream_zip() -> bytes:
    return h.make_zip([("index.mjs", (FUNCTIONS / "node_stream" / "index.mjs").read_text(), 0o644)])


@functools.lru_cache(maxsize=None)
def python_url_zip() -> bytes:
    return h.make_zip([("app.py", (FUNCTIONS / "python_url" / "app.py").read_text(), 0o644)])


# --------------------------------------------------------------------------------------
# Function URLs
# --------------------------------------------------------------------------------------


def public_url(lam, name: str, mode: str = "BUFFERED") -> str:
    """A function URL with AuthType NONE and the two statements AWS asks for (InvokeFunctionUrl
    with FunctionUrlAuthType NONE, InvokeFunction via function URLs); returns its URL id."""
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode=mode)
    lam.add_permission(FunctionName=name, StatementId="url", Action="lambda:InvokeFunctionUrl",
                       Principal="*", FunctionUrlAuthType="NONE")
    lam.add_permission(FunctionName=name, StatementId="invoke", Action="lambda:InvokeFunction",
                       Principal="*", InvokedViaFunctionUrl=True)
    return url_id_of(cfg["FunctionUrl"])


def url_id_of(function_url: str) -> str:
    """The URL id: the first label of the URL's host (`<url-id>.lambda-url.<region>.…`)."""
    host = urlsplit(function_url).hostname or ""
    assert ".lambda-url." in host, f"not a function URL: {function_url}"
    return host.split(".", 1)[0]


def url_on(url_endpoint: str, url_id: str, path: str = "/") -> str:
    """The URL on the endpoint's path prefix (no DNS needed): <url_endpoint>/_fleetfn/url/<id><path>
    (`path` "" gives the base to append paths to)."""
    assert path == "" or path.startswith("/"), path
    return f"{url_endpoint}/_fleetfn/url/{url_id}{path}"


def get_when_ready(url: str, timeout: float = 30.0, **kwargs) -> requests.Response:
    """GET until the answer is not a 429 (no environment Ready yet) or a 403 (a permission
    statement not yet visible to the endpoint's cache), bounded."""
    method = kwargs.pop("method", "GET")
    deadline = time.monotonic() + timeout
    while True:
        resp = requests.request(method, url, timeout=30, **kwargs)
        if resp.status_code not in (429, 403) or time.monotonic() >= deadline:
            return resp
        time.sleep(0.2)


# --------------------------------------------------------------------------------------
# Streamed reads
# --------------------------------------------------------------------------------------


@dataclass
class Timed:
    """The pieces of a body as they arrived: (seconds since the request was sent, bytes)."""

    status: int = 0
    headers: dict = field(default_factory=dict)
    cookies: list = field(default_factory=list)
    pieces: list = field(default_factory=list)
    end: float = 0.0

    @property
    def body(self) -> bytes:
        return b"".join(p for _, p in self.pieces)

    def first_arrival_of(self, needle: bytes) -> float:
        """When the piece completing the first occurrence of `needle` arrived."""
        seen = b""
        for t, p in self.pieces:
            seen += p
            if needle in seen:
                return t
        raise AssertionError(f"{needle!r} never arrived in {self.body[:300]!r}")

    def received_before(self, t: float) -> bytes:
        return b"".join(p for at, p in self.pieces if at <= t)


def timed_request(method: str, url: str, **kwargs) -> Timed:
    """An HTTP request whose body is read piece by piece as it arrives (chunked encoding's
    chunks as urllib3 hands them over), each piece timed."""
    start = time.monotonic()
    with requests.request(method, url, stream=True, timeout=60, **kwargs) as resp:
        out = Timed(status=resp.status_code, headers=dict(resp.headers),
                    cookies=resp.raw.headers.getlist("Set-Cookie"))
        for piece in resp.raw.stream(amt=None, decode_content=False) if resp.raw.chunked else \
                resp.iter_content(chunk_size=None):
            if piece:
                out.pieces.append((time.monotonic() - start, piece))
        out.end = time.monotonic() - start
    return out


@dataclass
class StreamedInvoke:
    """An InvokeWithResponseStream answer: the PayloadChunks with their arrival times and
    the InvokeComplete event."""

    response: dict
    started: float = 0.0                           # time.monotonic() when the call was made
    chunks: list = field(default_factory=list)     # (seconds since the call, bytes)
    complete: dict | None = None
    other: list = field(default_factory=list)      # events of any other kind

    @property
    def payload(self) -> bytes:
        return b"".join(c for _, c in self.chunks)


def invoke_streamed(lam, name: str, payload: bytes, **kwargs) -> StreamedInvoke:
    start = time.monotonic()
    resp = lam.invoke_with_response_stream(FunctionName=name, Payload=payload, **kwargs)
    out = StreamedInvoke(response={k: v for k, v in resp.items() if k != "EventStream"}, started=start)
    for event in resp["EventStream"]:
        if "PayloadChunk" in event:
            out.chunks.append((time.monotonic() - start, event["PayloadChunk"]["Payload"]))
        elif "InvokeComplete" in event:
            assert out.complete is None, f"two InvokeComplete events: {out.complete}, {event}"
            out.complete = event["InvokeComplete"]
        else:
            out.other.append(event)
    return out


# --------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------


def create_function(lam, cp_arn: str, runtime: str, zip_bytes: bytes, handler: str, name: str | None = None,
                    concurrency: int = dp.CONCURRENCY, timeout: int = 10) -> str:
    """An LMI function of `runtime` (a key of dp.RUNTIMES) with its own handler setting."""
    name = name or h.uniq(f"fw-{runtime}")
    lam.create_function(
        FunctionName=name, Role=h.ROLE_ARN, Code={"ZipFile": zip_bytes}, MemorySize=dp.MEMORY, Timeout=timeout,
        CapacityProviderConfig=h.lmi_config(cp_arn, PerExecutionEnvironmentMaxConcurrency=concurrency),
        Runtime=dp.RUNTIMES[runtime]["Runtime"], Handler=handler)
    h.wait_function_settled(lam, name)
    return name


def publish_all(lam, endpoint: str, names: dict[str, str]) -> None:
    """Publish every function to $LATEST.PUBLISHED at once and wait until all are Active."""
    pubs = [dp.publish(lam, name, key) for key, name in names.items()]
    dp.wait_published(lam, endpoint, pubs)
    for pub in pubs:
        assert pub.final["State"] == "Active", (
            f"{pub.runtime} ({pub.name}) went to {pub.final['State']}: "
            f"{pub.final.get('StateReasonCode')}: {pub.final.get('StateReason')}")
