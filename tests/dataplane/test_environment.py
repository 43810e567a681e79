"""Acceptance point 4: what a function sees of its environment.

lmi-behaviour.md §2.4 (AWS_LAMBDA_MAX_CONCURRENCY, AWS_LAMBDA_LOG_FORMAT=JSON, the standard
variables), §2.2; AWS Lambda's reserved variables (AWS_LAMBDA_FUNCTION_NAME, ..._VERSION,
..._MEMORY_SIZE, AWS_REGION, LAMBDA_TASK_ROOT, _HANDLER) and the function's own variables.
fleetfn's own configuration (FLEETFN_* in the server's environment, notably the admin
credentials) must not reach function code.
"""

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp

QUALIFIER = "$LATEST.PUBLISHED"


def _expected(pub):
    return {
        "AWS_LAMBDA_FUNCTION_NAME": pub.name,
        "AWS_LAMBDA_FUNCTION_VERSION": QUALIFIER,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(dp.MEMORY),
        "AWS_REGION": h.REGION,
        "AWS_LAMBDA_MAX_CONCURRENCY": str(dp.CONCURRENCY),
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
    }


def test_rust_function_environment_variables(lam, shared_active):
    # Point 4: the Lambda variables inside the Rust function (lambda_runtime `env` op).
    pub = shared_active("rust")
    body = dp.invoke_ok(lam, pub.name, {"op": "env"})
    env = body["env"]
    for key, value in _expected(pub).items():
        assert env.get(key) == value, f"{key}={env.get(key)!r}, expected {value!r}; got {sorted(env)}"
    assert env.get("LAMBDA_TASK_ROOT"), f"LAMBDA_TASK_ROOT missing: {sorted(env)}"
    assert env.get("_HANDLER") == "bootstrap", env.get("_HANDLER")
    assert env.get("AWS_LAMBDA_RUNTIME_API"), "AWS_LAMBDA_RUNTIME_API missing"
    # The function's own variable (the test function reports only AWS_*/LAMBDA_* names).
    assert env.get("LAMBDA_USER_VAR") == dp.SHARED_VARIABLES["LAMBDA_USER_VAR"], sorted(env)
    assert not [k for k in env if k.startswith("FLEETFN_")], sorted(env)
    assert not [k for k, v in env.items() if h.SECRET_KEY in v], "the fleetfn admin secret reached the function"


def test_python_function_sees_own_variables_and_no_fleetfn_configuration(lam, shared_active):
    # Point 4: the whole process environment of a Python function: the function's own
    # variables are there, the Lambda variables too, and nothing of fleetfn's own
    # configuration (FLEETFN_ACCESS_KEY_ID / FLEETFN_SECRET_ACCESS_KEY were set when the
    # server started).
    pub = shared_active("python")
    body = dp.invoke_ok(lam, pub.name, {"op": "env"})
    environ = body["environ"]
    for key, value in dp.SHARED_VARIABLES.items():
        assert environ.get(key) == value, f"{key}={environ.get(key)!r}"
    for key, value in _expected(pub).items():
        assert environ.get(key) == value, f"{key}={environ.get(key)!r}, expected {value!r}"
    assert environ.get("_HANDLER") == "app.handler"
    leaked = sorted(k for k in environ if k.startswith("FLEETFN_"))
    assert not leaked, f"fleetfn variables visible to the function: {leaked}"
    holders = sorted(k for k, v in environ.items() if h.SECRET_KEY in v or h.ACCESS_KEY in v)
    assert not holders, f"the fleetfn admin credentials are visible to the function in {holders}"
    # LAMBDA_TASK_ROOT is where the function's code is.
    assert environ.get("LAMBDA_TASK_ROOT") and "app.py" in (body["task_root_files"] or []), body["task_root_files"]
    # The context agrees with the variables.
    assert body["function_name"] == pub.name
    assert body["function_version"] == QUALIFIER
    assert body["memory_limit_in_mb"] == str(dp.MEMORY)


@pytest.mark.parametrize("runtime", ["rust", "python"])
def test_client_context_passed_through(lam, shared_active, runtime):
    # Point 4: ClientContext (base64 JSON) reaches the handler's context.
    pub = shared_active(runtime)
    custom = {"tenant": "acme", "trace": "t-123"}
    body = dp.invoke_ok(lam, pub.name, {"op": "env"}, ClientContext=dp.client_context(custom))
    if runtime == "rust":
        cc = body["context"]["client_context"]
        assert cc is not None and cc.get("custom") == custom, body["context"]
    else:
        assert body["client_context_custom"] == custom, body


@pytest.mark.parametrize("runtime", ["rust", "python"])
def test_request_id_matches_context(lam, shared_active, runtime):
    # Point 4 (context): the invoke's x-amzn-RequestId is the request id the function
    # sees in its context (AWS: the same id appears in START/END/REPORT and the response).
    pub = shared_active(runtime)
    res = dp.invoke(lam, pub.name, {"op": "env"})
    assert res.status == 200 and res.function_error is None, res
    body = res.json
    seen = body["context"]["request_id"] if runtime == "rust" else body["request_id"]
    assert seen and seen == res.request_id, (
        f"function saw request id {seen!r}, the caller got x-amzn-RequestId {res.request_id!r}")


def test_function_memory_and_concurrency_follow_the_configuration(lam, fn_factory):
    # Point 4: AWS_LAMBDA_MAX_CONCURRENCY = PerExecutionEnvironmentMaxConcurrency and
    # AWS_LAMBDA_FUNCTION_MEMORY_SIZE = MemorySize for a non-default configuration, on a
    # numbered version (AWS_LAMBDA_FUNCTION_VERSION = "1").
    name = fn_factory.create("rust", concurrency=3, memory=4096, variables={"LAMBDA_OTHER": "x=1,y=2"})
    pub = dp.publish_active(lam, fn_factory.endpoint, name, "rust", latest_published=False)
    assert pub.version == "1"
    res = dp.invoke(lam, name, {"op": "env"}, Qualifier="1")
    assert (res.status, res.function_error, res.executed_version) == (200, None, "1"), res
    env = res.json["env"]
    assert env.get("AWS_LAMBDA_MAX_CONCURRENCY") == "3", env
    assert env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") == "4096", env
    assert env.get("AWS_LAMBDA_FUNCTION_VERSION") == "1", env
    assert env.get("LAMBDA_OTHER") == "x=1,y=2", env
