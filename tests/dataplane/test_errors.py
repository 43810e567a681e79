"""Acceptance point 3: function error, timeout, environment crash and out-of-memory all reach
the caller in the Lambda error shape (HTTP 200, X-Amz-Function-Error, JSON errorType /
errorMessage), and the version keeps serving afterwards.

lmi-behaviour.md §2.7: a timed-out invoke gets "Task timed out after N seconds" but its code
is not killed and the EE keeps running; a crashed EE is replaced, never repaired.
DESIGN.md: a crashed environment fails its in-flight invokes with Runtime.ExitError.
"""

import re

import pytest
from botocore.exceptions import ClientError

from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import prereq

QUALIFIER = "$LATEST.PUBLISHED"
ERROR_TYPES = {"rust": "TestFnError", "python": "ValueError", "node": "Error"}
TIMEOUT_MESSAGE = re.compile(r"^RequestId: (\S+) Error: Task timed out after 3\.00 seconds$")


@pytest.mark.parametrize("runtime", list(dp.RUNTIMES))
def test_function_error(lam, shared_active, runtime):
    # Point 3: an error raised by the handler.
    pub = shared_active(runtime)
    res = dp.invoke(lam, pub.name, {"op": "error"})
    body = dp.assert_lambda_error(res, ERROR_TYPES[runtime])
    assert "error requested by the event" in body["errorMessage"], body
    assert res.executed_version == QUALIFIER, res
    assert dp.invoke_ok(lam, pub.name, {"op": "echo", "after": "error"}) == {"op": "echo", "after": "error"}


@pytest.mark.parametrize("runtime", list(dp.RUNTIMES))
def test_timeout(lam, endpoint, shared_active, runtime):
    # Point 3: a handler running past the function Timeout (3 s) -> Sandbox.Timedout; the
    # environment is not killed or replaced and serves later invokes.
    pub = shared_active(runtime)
    before = dp.environments(endpoint, pub.name, QUALIFIER)
    res = dp.invoke(lam, pub.name, {"op": "sleep", "ms": (dp.TIMEOUT_S + 2) * 1000})
    body = dp.assert_lambda_error(res, "Sandbox.Timedout", function_errors=("Unhandled",))
    m = TIMEOUT_MESSAGE.match(body["errorMessage"])
    assert m, f"timeout message {body['errorMessage']!r} is not 'RequestId: <id> Error: Task timed out after 3.00 seconds'"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", m.group(1)), m.group(1)

    after = dp.environments(endpoint, pub.name, QUALIFIER)
    assert sorted(e["EnvironmentId"] for e in dp.ready(after)) == sorted(e["EnvironmentId"] for e in dp.ready(before)), (
        f"a timeout must not stop or replace the environment: before {dp.describe_envs(before)}, "
        f"after {dp.describe_envs(after)}")
    assert dp.invoke_ok(lam, pub.name, {"op": "echo", "after": "timeout"}) == {"op": "echo", "after": "timeout"}


@pytest.fixture(scope="module")
def rust_three(fn_factory):
    """A Rust function of its own (three environments) to crash."""
    return fn_factory.published("rust").name


@pytest.fixture(scope="module")
def rust_single(lam, endpoint, fn_factory):
    """A Rust function of its own scaled to exactly one environment; Timeout 30 s so
    that invokes in flight when it crashes cannot time out first."""
    name = fn_factory.published("rust", timeout=30).name
    dp.set_scaling(lam, name, QUALIFIER, 1, 1)
    dp.wait_single_ready(endpoint, name, QUALIFIER)
    return name


def test_crash_other_environments_keep_serving(lam, endpoint, rust_three):
    # Point 3: the runtime process exits -> Runtime.ExitError for the caller; the other
    # environments keep serving at once and the crashed one is replaced.
    before = {e["EnvironmentId"] for e in dp.ready(dp.environments(endpoint, rust_three, QUALIFIER))}
    assert len(before) == dp.DEFAULT_MIN_ENVS
    res = dp.invoke(lam, rust_three, {"op": "crash"})
    dp.assert_lambda_error(res, "Runtime.ExitError")
    for i in range(10):
        try:
            assert dp.invoke_ok(lam, rust_three, {"op": "echo", "i": i}) == {"op": "echo", "i": i}
        except ClientError as err:
            pytest.fail(f"invoke #{i} after the crash failed although other environments were Ready: "
                        f"{err.response.get('Error')} {dp.describe_envs(dp.environments(endpoint, rust_three))}")
    envs = dp.wait_envs(endpoint, rust_three, QUALIFIER,
                        lambda es: len(dp.ready(es)) == dp.DEFAULT_MIN_ENVS
                        and {e["EnvironmentId"] for e in dp.ready(es)} != before,
                        "the crashed environment to be replaced")
    assert len(before - {e["EnvironmentId"] for e in dp.ready(envs)}) == 1, dp.describe_envs(envs)


def test_crash_fails_in_flight_invokes_and_environment_is_replaced(lam, endpoint, rust_single):
    # Point 3: invokes in flight in an environment that crashes get Runtime.ExitError; the
    # environment is replaced and the version serves again.
    old = dp.wait_single_ready(endpoint, rust_single, QUALIFIER)
    batch = dp.Batch(lam, rust_single, [{"op": "sleep", "ms": 20000}] * 3)
    dp.wait_in_flight(endpoint, rust_single, QUALIFIER, 3, batch)
    crash = dp.invoke(lam, rust_single, {"op": "crash"})
    dp.assert_lambda_error(crash, "Runtime.ExitError")
    for res in batch.results(timeout=30):
        assert not isinstance(res, Exception), f"an in-flight invoke got {res!r} instead of a function error"
        dp.assert_lambda_error(res, "Runtime.ExitError")

    new = dp.wait_envs(endpoint, rust_single, QUALIFIER,
                       lambda es: any(e["State"] == "Ready" and e["EnvironmentId"] != old["EnvironmentId"] for e in es),
                       "a replacement environment")
    assert old["EnvironmentId"] not in {e["EnvironmentId"] for e in dp.ready(new)}, dp.describe_envs(new)
    assert dp.invoke_ok_when_capacity(lam, rust_single, {"op": "echo", "x": 1}) == {"op": "echo", "x": 1}


def test_python_process_exit(lam, endpoint, fn_factory):
    # Point 3: os._exit(1) inside a Python handler. awslambdaric runs one worker process
    # per unit of concurrency and does not replace a dead worker; the platform cannot tell
    # which invoke died with it, so the invoke ends as Runtime.ExitError (if the platform
    # notices the exit) or as Sandbox.Timedout (after the function timeout). Either way
    # the caller gets the Lambda error shape, and the version keeps serving.
    name = fn_factory.published("python", concurrency=2).name
    res = dp.invoke(lam, name, {"op": "exit"})
    body = dp.assert_lambda_error(res, ("Runtime.ExitError", "Sandbox.Timedout"), function_errors=("Unhandled",))
    print(f"python os._exit(1) -> {body}")
    assert dp.invoke_ok_when_capacity(lam, name, {"op": "echo", "after": "exit"}) == {"op": "echo", "after": "exit"}


@prereq.needs_root("memory limits are the sandbox's cgroups")
def test_out_of_memory(lam, endpoint, rust_single):
    # Point 3: allocating far beyond MemorySize (2048 MB) must end the invoke with a
    # function error (the environment is killed by its memory limit), and the version
    # serves again afterwards. Without cgroups (not root) the host cannot enforce the limit.
    dp.wait_single_ready(endpoint, rust_single, QUALIFIER)
    mb = dp.MEMORY + 1024
    res = dp.invoke(lam, rust_single, {"op": "alloc", "mb": mb})
    assert not (res.status == 200 and res.function_error is None), (
        f"the function allocated {mb} MiB with MemorySize={dp.MEMORY} and was not killed")
    body = dp.assert_lambda_error(res)
    # The environment's cgroup counted an OOM kill: reported as such, as Lambda does.
    assert body["errorType"] == "Runtime.OutOfMemory", body
    assert dp.invoke_ok_when_capacity(lam, rust_single, {"op": "echo", "after": "oom"}) == {"op": "echo", "after": "oom"}
