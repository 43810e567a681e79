"""Data-plane helpers shared by the suites: LMI functions from the fixture functions in
tests/dataplane/functions, publishing and waiting, invokes, the environments endpoint.

Written against AWS Lambda behaviour (the Invoke API as modelled by botocore, and
reference/lmi-behaviour.md §1.3-1.6, §2, §3) plus one fleetfn extension used only to
observe execution environments: `GET /fleetfn/v1/environments` (SigV4, service `lambda`).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError

from . import api as h

# The fixture functions (also read by fleetfn-bench's scenarios).
FUNCTIONS = Path(__file__).resolve().parents[1] / "dataplane" / "functions"

# Three subnets = three zones (DESIGN.md: a capacity provider's subnets name its zones).
ZONES = ["subnet-a", "subnet-b", "subnet-c"]

MEMORY = 2048
CONCURRENCY = 8          # PerExecutionEnvironmentMaxConcurrency of the shared functions
TIMEOUT_S = 3            # function Timeout of the shared functions
DEFAULT_MIN_ENVS = 3     # lmi-behaviour.md §1.3: three EEs (one per AZ) before Active

# Publishing starts processes; the first Python publish also installs awslambdaric.
ACTIVE_TIMEOUT = 90.0
ENV_TIMEOUT = 60.0
LIVE_STATES = ("Starting", "Ready", "Draining")

# The shared functions' own variables (the Rust test function reports only AWS_*/LAMBDA_*).
SHARED_VARIABLES = {"USER_VAR_PLAIN": "plain-value", "LAMBDA_USER_VAR": "lambda-value"}

RUNTIMES = {
    "rust": {"Runtime": "provided.al2023", "Handler": "bootstrap"},
    "python": {"Runtime": "python3.13", "Handler": "app.handler"},
    "node": {"Runtime": "nodejs22.x", "Handler": "index.handler"},
}


# --------------------------------------------------------------------------------------
# Function code
# --------------------------------------------------------------------------------------


def no_retry_client(endpoint: str):
    """boto3 Lambda client that never retries an answer (a throttle or an error must reach the
    test as is) and can hold enough connections for the concurrency tests. It does retry a
    request whose pooled keep-alive connection the server closed as it was sent (see
    `_retry_closed_connection`), as every SDK does."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name=h.REGION,
        aws_access_key_id=h.ACCESS_KEY,
        aws_secret_access_key=h.SECRET_KEY,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5,
                      read_timeout=60, max_pool_connections=64),
    )
    client.meta.events.register("needs-retry.lambda", _retry_closed_connection)
    return client


CLOSED_CONNECTION_ATTEMPTS = 3


def _retry_closed_connection(attempts: int, caught_exception=None, **_):
    """Retry (at once, at most twice) a request that failed with ConnectionClosedError: no
    answer at all because the connection was closed or reset. The server closes a keep-alive
    connection idle for its header-read timeout (10 s); a client that takes that connection
    from its pool in the same instant sends its request into the closing socket. HTTP/1.1
    leaves this race to the client (RFC 9112 §9.3.1), and botocore's own retry modes retry it;
    without this, a test that did nothing wrong fails on it. Answers (throttles, errors) and
    timeouts are never retried."""
    from botocore.exceptions import ConnectionClosedError

    if isinstance(caught_exception, ConnectionClosedError) and attempts < CLOSED_CONNECTION_ATTEMPTS:
        return 0
    return None


def testfn_path() -> Path:
    env = os.environ.get("FLEETFN_TESTFN_BIN")
    if env:
        p = Path(env)
    else:
        target = os.environ.get("CARGO_TARGET_DIR") or "/root/.cache/fleetfn-target"
        p = Path(target) / "debug" / "fleetfn-testfn"
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"the Rust test function was not found at {p} (cargo build -p fleetfn-testfn, "
                    "or set FLEETFN_TESTFN_BIN)", pytrace=False)
    return p


@functools.lru_cache(maxsize=None)
def rust_zip() -> bytes:
    """fleetfn-testfn as `bootstrap` (mode 0755), deflated; built once per session."""
    return h.make_zip([("bootstrap", testfn_path().read_bytes(), 0o755)])


@functools.lru_cache(maxsize=None)
def python_zip(code: str = "v1") -> bytes:
    src = (FUNCTIONS / "python" / "app.py").read_text().replace("__CODE__", code)
    return h.make_zip([("app.py", src, 0o644)])


@functools.lru_cache(maxsize=None)
def node_zip() -> bytes:
    return h.make_zip([("index.mjs", (FUNCTIONS / "node" / "index.mjs").read_text(), 0o644)])


def zip_for(runtime: str) -> bytes:
    return {"rust": rust_zip, "python": python_zip, "node": node_zip}[runtime]()


# --------------------------------------------------------------------------------------
# Functions and versions
# --------------------------------------------------------------------------------------


def create_lmi_function(lam, cp_arn: str, runtime: str, name: str | None = None, zip_bytes: bytes | None = None,
                        concurrency: int = CONCURRENCY, timeout: int = TIMEOUT_S, memory: int = MEMORY,
                        variables: dict | None = None) -> str:
    name = name or h.uniq(f"dp-{runtime}")
    req = {
        "FunctionName": name,
        "Role": h.ROLE_ARN,
        "Code": {"ZipFile": zip_bytes if zip_bytes is not None else zip_for(runtime)},
        "MemorySize": memory,
        "Timeout": timeout,
        "CapacityProviderConfig": h.lmi_config(cp_arn, PerExecutionEnvironmentMaxConcurrency=concurrency),
        **RUNTIMES[runtime],
    }
    if variables:
        req["Environment"] = {"Variables": dict(variables)}
    lam.create_function(**req)
    h.wait_function_settled(lam, name)
    return name


@dataclass
class Publication:
    """What was observed while a version went from publish to a final state."""

    name: str
    runtime: str
    version: str
    publish_response: dict
    states: list = field(default_factory=list)       # GetFunction states seen, in order (deduplicated)
    final: dict | None = None                         # GetFunction Configuration at the first non-Pending state
    envs_at_final: list | None = None                 # environments listed right after that GetFunction


def publish(lam, name: str, runtime: str = "?", latest_published: bool = True) -> Publication:
    kwargs = {"FunctionName": name}
    if latest_published:
        kwargs["PublishTo"] = "LATEST_PUBLISHED"
    resp = lam.publish_version(**kwargs)
    return Publication(name=name, runtime=runtime, version=resp["Version"], publish_response=resp)


def wait_published(lam, endpoint: str, pubs: list[Publication], timeout: float = ACTIVE_TIMEOUT) -> list[Publication]:
    """Poll GetFunction for every publication until it leaves Pending; at that moment
    (the very next request) snapshot the environments endpoint."""
    deadline = time.monotonic() + timeout
    pending = list(pubs)
    while pending:
        for pub in list(pending):
            cfg = lam.get_function(FunctionName=pub.name, Qualifier=pub.version)["Configuration"]
            state = cfg.get("State")
            if not pub.states or pub.states[-1] != state:
                pub.states.append(state)
            if state != "Pending":
                pub.envs_at_final = environments(endpoint, pub.name, pub.version)
                pub.final = cfg
                pending.remove(pub)
        if pending and time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for "
                        + ", ".join(f"{p.name}:{p.version} (states {p.states})" for p in pending)
                        + " to leave Pending")
        if pending:
            time.sleep(0.1)
    return pubs


def publish_active(lam, endpoint: str, name: str, runtime: str = "?", latest_published: bool = True) -> Publication:
    pub = wait_published(lam, endpoint, [publish(lam, name, runtime, latest_published)])[0]
    assert pub.final["State"] == "Active", (
        f"{name}:{pub.version} went to {pub.final['State']} "
        f"({pub.final.get('StateReasonCode')}: {pub.final.get('StateReason')})")
    return pub


def delete_function_quietly(lam, name: str) -> None:
    try:
        lam.delete_function(FunctionName=name)
    except ClientError:
        pass


# --------------------------------------------------------------------------------------
# Environments (fleetfn extension)
# --------------------------------------------------------------------------------------


def environments(endpoint: str, function: str | None = None, version: str | None = None) -> list[dict]:
    resp = h.raw_request(endpoint, "GET", "/fleetfn/v1/environments", timeout=10.0)
    assert resp.status_code == 200, f"GET /fleetfn/v1/environments -> {resp.status_code}: {resp.text[:300]}"
    envs = resp.json()["Environments"]
    if function is not None:
        envs = [e for e in envs if e["FunctionName"] == function]
    if version is not None:
        envs = [e for e in envs if e["Version"] == version]
    return envs


def ready(envs: list[dict]) -> list[dict]:
    return [e for e in envs if e["State"] == "Ready"]


def describe_envs(envs: list[dict]) -> list:
    return [(e["EnvironmentId"], e["Version"], e["Zone"], e["State"], e["InFlight"], e.get("Failure")) for e in envs]


def wait_envs(endpoint: str, function: str, version: str | None, until: Callable[[list[dict]], bool], desc: str,
              timeout: float = ENV_TIMEOUT) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        envs = environments(endpoint, function, version)
        if until(envs):
            return envs
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {desc}; environments of "
                        f"{function}:{version}: {describe_envs(envs)}")
        time.sleep(0.1)


def wait_single_ready(endpoint: str, function: str, version: str, timeout: float = ENV_TIMEOUT) -> dict:
    """Exactly one Ready environment and nothing starting (e.g. after Min=Max=1)."""
    envs = wait_envs(endpoint, function, version,
                     lambda es: len(ready(es)) == 1 and not any(e["State"] == "Starting" for e in es),
                     f"exactly one Ready environment of {function}:{version}", timeout)
    return ready(envs)[0]


def set_scaling(lam, name: str, qualifier: str, minimum: int, maximum: int) -> dict:
    return h.poll(lambda: _try_put_scaling(lam, name, qualifier, minimum, maximum),
                  lambda v: not isinstance(v, ClientError), f"PutFunctionScalingConfig on {name}:{qualifier}")


def _try_put_scaling(lam, name, qualifier, minimum, maximum):
    try:
        return lam.put_function_scaling_config(
            FunctionName=name, Qualifier=qualifier,
            FunctionScalingConfig={"MinExecutionEnvironments": minimum, "MaxExecutionEnvironments": maximum})
    except ClientError as err:
        if h.error_code(err) == "ResourceConflictException":
            return err
        raise


# --------------------------------------------------------------------------------------
# Invoke
# --------------------------------------------------------------------------------------


@dataclass
class Result:
    status: int
    function_error: str | None
    executed_version: str | None
    raw: bytes
    request_id: str
    headers: dict

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.raw)
        except ValueError:
            pytest.fail(f"invoke payload is not JSON: {self.raw[:300]!r}")

    def __repr__(self) -> str:
        return (f"Result(status={self.status}, function_error={self.function_error!r}, "
                f"executed_version={self.executed_version!r}, payload={self.raw[:400]!r})")


def invoke(lam, name: str, event: Any = None, raw: bytes | None = None, **kwargs) -> Result:
    """Synchronous Invoke; ClientErrors propagate. `event` is JSON-encoded, `raw` sent as is."""
    payload = raw if raw is not None else json.dumps(event if event is not None else {}).encode()
    resp = lam.invoke(FunctionName=name, Payload=payload, **kwargs)
    body = resp["Payload"].read() if "Payload" in resp else b""
    meta = resp["ResponseMetadata"]
    return Result(status=resp["StatusCode"], function_error=resp.get("FunctionError"),
                  executed_version=resp.get("ExecutedVersion"), raw=body,
                  request_id=meta.get("RequestId", ""), headers=meta.get("HTTPHeaders", {}))


def invoke_ok(lam, name: str, event: Any = None, **kwargs) -> Any:
    res = invoke(lam, name, event, **kwargs)
    assert res.status == 200 and res.function_error is None, f"invoke of {name} with {event} failed: {res}"
    return res.json


def invoke_ok_when_capacity(lam, name: str, event: Any, timeout: float = ENV_TIMEOUT, **kwargs) -> Any:
    """Invoke until it is not throttled (bounded): a 429 is a legitimate answer while
    no environment is Ready (LMI never starts one in the request path)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return invoke_ok(lam, name, event, **kwargs)
        except ClientError as err:
            if h.error_code(err) != "TooManyRequestsException" or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def assert_lambda_error(res: Result, error_types: tuple[str, ...] | str | None = None,
                        function_errors: tuple[str, ...] = ("Unhandled", "Handled")) -> dict:
    """The Lambda function-error shape: HTTP 200, X-Amz-Function-Error, and a JSON
    body with string errorType and errorMessage."""
    assert res.status == 200, f"a function error is delivered with HTTP 200, got {res}"
    assert res.function_error in function_errors, f"X-Amz-Function-Error should be one of {function_errors}: {res}"
    body = res.json
    assert isinstance(body, dict), f"error payload is not an object: {res}"
    assert isinstance(body.get("errorType"), str) and body["errorType"], f"no errorType: {res}"
    assert isinstance(body.get("errorMessage"), str), f"no errorMessage: {res}"
    if error_types is not None:
        types = (error_types,) if isinstance(error_types, str) else tuple(error_types)
        assert body["errorType"] in types, f"errorType {body['errorType']!r} not in {types}: {res}"
    return body


def client_context(custom: dict) -> str:
    # Only `custom`: lambda_runtime 1.5 cannot parse a partial `client` object (its fields
    # are required), and then never answers the invoke.
    return base64.b64encode(json.dumps({"custom": custom}).encode()).decode()


# --------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------


class Batch:
    """N invokes started at once on their own threads."""

    def __init__(self, lam, name: str, events: list, **kwargs):
        self.pool = ThreadPoolExecutor(max_workers=len(events))
        self.futures = [self.pool.submit(invoke, lam, name, ev, **kwargs) for ev in events]

    def any_done(self) -> bool:
        return any(f.done() for f in self.futures)

    def results(self, timeout: float = 60.0) -> list:
        """Results in submission order; a ClientError is returned, not raised."""
        out = []
        for f in self.futures:
            try:
                out.append(f.result(timeout=timeout))
            except ClientError as err:
                out.append(err)
        self.pool.shutdown(wait=False)
        return out


def wait_in_flight(endpoint: str, function: str, version: str, n: int, batch: Batch | None = None,
                   timeout: float = 20.0) -> list[dict]:
    """Poll until the version's environments report `n` invokes in flight in total.
    Fails early if an invoke of `batch` finished before that (it cannot all be in flight)."""
    deadline = time.monotonic() + timeout
    envs: list[dict] = []
    while time.monotonic() < deadline:
        envs = environments(endpoint, function, version)
        if sum(e["InFlight"] for e in envs) >= n:
            return envs
        if batch is not None and batch.any_done():
            done = [f.result() if f.exception() is None else f.exception() for f in batch.futures if f.done()]
            pytest.fail(f"an invoke finished before {n} were in flight together "
                        f"(environments: {describe_envs(envs)}); finished: {done}")
        time.sleep(0.01)
    pytest.fail(f"never saw {n} invokes in flight on {function}:{version} within {timeout:.0f}s: "
                f"{describe_envs(envs)}")


def intervals_overlap(results: list[dict]) -> bool:
    """All [start, end] intervals share a common instant."""
    return max(r["start"] for r in results) < min(r["end"] for r in results)


class SequentialLoad(threading.Thread):
    """Invoke `event` in a loop on one thread and record every outcome."""

    def __init__(self, lam, name: str, event: Any, stop_when: Callable[["SequentialLoad"], bool],
                 max_seconds: float = 30.0, max_invokes: int = 2000):
        super().__init__(daemon=True)
        self.lam, self.name, self.event = lam, name, event
        self.stop_when = stop_when
        self.max_seconds, self.max_invokes = max_seconds, max_invokes
        self.outcomes: list = []        # payload dicts, or ("error", description)
        self.failures: list = []
        self.halt = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        while len(self.outcomes) < self.max_invokes and time.monotonic() < deadline and not self.halt.is_set():
            try:
                res = invoke(self.lam, self.name, self.event)
                if res.status != 200 or res.function_error:
                    raise AssertionError(repr(res))
                self.outcomes.append(res.json)
            except Exception as err:  # every kind of failure counts
                self.failures.append(f"invoke #{len(self.outcomes) + len(self.failures)}: {err!r}"[:500])
                self.outcomes.append(("error", repr(err)[:200]))
            if self.stop_when(self):
                return


# --------------------------------------------------------------------------------------
# Sandbox
# --------------------------------------------------------------------------------------


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def isolation_reports(server) -> list[str]:
    """What the agents said about the isolation in force ("sandbox: ..." log lines)."""
    text = ""
    for path in (server.stdout_path, server.stderr_path):
        if path and path.exists():
            text += _ANSI.sub("", path.read_text(errors="replace"))
    # Not the helper's own error lines, which start with "fleetfn-sandbox: ".
    return re.findall(r"(?<![\w-])sandbox: ([^\n]*)", text)
