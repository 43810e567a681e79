"""Acceptance point 1: publish -> Active -> Invoke, for the three runtimes; qualifiers.

lmi-behaviour.md §1.3 (three EEs, one per AZ, Ready before the version is Active), §1.4
(unqualified -> $LATEST.PUBLISHED, $LATEST not invocable, NoPublishedVersionException,
aliases as usual).
"""

import json

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp


@pytest.mark.parametrize("runtime", list(dp.RUNTIMES))
def test_publish_pending_then_active_with_three_zones(shared, runtime):
    # Point 1: GetFunction shows Pending -> Active only once three environments in three
    # zones are Ready (checked at the first moment Active was seen).
    pub = shared[runtime]
    assert pub.publish_response["State"] == "Pending", pub.publish_response
    assert pub.publish_response["Version"] == "$LATEST.PUBLISHED"
    assert pub.final["State"] == "Active", (
        f"{runtime}: version went {pub.states} ({pub.final.get('StateReasonCode')}: {pub.final.get('StateReason')})")
    # GetFunction polled from right after the publish: Pending (unless the environments
    # were faster than the first poll), then Active, nothing else.
    assert pub.states in (["Pending", "Active"], ["Active"]), pub.states
    envs = dp.ready(pub.envs_at_final)
    assert len(envs) == dp.DEFAULT_MIN_ENVS, (
        f"when {runtime} first showed Active: {dp.describe_envs(pub.envs_at_final)}")
    assert sorted(e["Zone"] for e in envs) == sorted(dp.ZONES), dp.describe_envs(envs)
    assert all(e["MaxConcurrency"] == dp.CONCURRENCY for e in envs), dp.describe_envs(envs)


@pytest.mark.parametrize("runtime", list(dp.RUNTIMES))
def test_invoke_returns_function_result(lam, shared_active, runtime):
    # Point 1: boto3 invokes the published function and gets its result.
    pub = shared_active(runtime)
    event = {"op": "echo", "n": 42, "s": "héllo", "list": [1, 2, {"x": None}]}
    res = dp.invoke(lam, pub.name, event)
    assert res.status == 200 and res.function_error is None, res
    assert res.json == event
    # Unqualified invoke runs $LATEST.PUBLISHED (X-Amz-Executed-Version).
    assert res.executed_version == "$LATEST.PUBLISHED", res


@pytest.mark.parametrize("runtime", list(dp.RUNTIMES))
def test_invoke_without_payload_hands_the_function_an_empty_object(lam, shared_active, runtime):
    # As `aws lambda invoke --function-name f out.json` does: no Payload at all. AWS hands the
    # function `{}` (an empty body would be an unmarshal error in awslambdaric).
    pub = shared_active(runtime)
    resp = lam.invoke(FunctionName=pub.name)
    body = resp["Payload"].read()
    if runtime == "rust":
        # fleetfn-testfn's event is `{"op": ...}`: `{}` reaches it as an object without an op.
        assert resp.get("FunctionError") == "Unhandled", body
        assert json.loads(body)["errorType"] == "InvalidEvent", body
    else:
        assert "FunctionError" not in resp, body
        assert json.loads(body) == {}


def test_invoke_explicit_latest_published_qualifier(lam, shared_active):
    # Point 1: the $LATEST.PUBLISHED qualifier, and the function ARN as FunctionName.
    pub = shared_active("rust")
    res = dp.invoke(lam, pub.name, {"op": "echo", "q": 1}, Qualifier="$LATEST.PUBLISHED")
    assert (res.status, res.function_error, res.executed_version) == (200, None, "$LATEST.PUBLISHED"), res
    assert res.json == {"op": "echo", "q": 1}
    res = dp.invoke(lam, h.fn_arn_for(pub.name, "$LATEST.PUBLISHED"), {"op": "noop"})
    assert (res.status, res.function_error, res.executed_version) == (200, None, "$LATEST.PUBLISHED"), res


def test_invoke_latest_is_rejected(lam, shared_active):
    # Point 1: $LATEST of a capacity-provider function is never invocable.
    pub = shared_active("rust")
    h.expect_error(lam, lambda: dp.invoke(lam, pub.name, {"op": "noop"}, Qualifier="$LATEST"),
                   "InvalidParameterValueException", 400, mentions=["$LATEST"])


def test_invoke_without_published_version(lam, fn_factory):
    # Point 1: nothing published -> NoPublishedVersionException (HTTP 400).
    name = fn_factory.create("python")
    h.expect_error(lam, lambda: dp.invoke(lam, name, {"op": "echo"}),
                   "NoPublishedVersionException", 400, mentions=["publish"])


@pytest.fixture(scope="module")
def two_versions(lam, endpoint, fn_factory):
    """A Python function with numbered versions 1 (code v1) and 2 (code v2)."""
    name = fn_factory.create("python", zip_bytes=dp.python_zip("v1"), concurrency=2)
    v1 = dp.publish(lam, name, "python", latest_published=False)
    h.update_code(lam, name, dp.python_zip("v2"))
    v2 = dp.publish(lam, name, "python", latest_published=False)
    assert (v1.version, v2.version) == ("1", "2"), (v1.publish_response, v2.publish_response)
    dp.wait_published(lam, endpoint, [v1, v2])
    for v in (v1, v2):
        assert v.final["State"] == "Active", v.final
    return name


def test_invoke_numbered_version(lam, two_versions):
    # Point 1: X-Amz-Executed-Version is the version number.
    for version, code in (("1", "v1"), ("2", "v2")):
        res = dp.invoke(lam, two_versions, {"op": "code"}, Qualifier=version)
        assert (res.status, res.function_error, res.executed_version) == (200, None, version), res
        assert res.json["code"] == code, res


def test_weighted_alias_routes_to_both_versions(lam, two_versions):
    # Point 1: an alias with weights routes invokes to its versions, and the executed
    # version is the one whose code answered.
    lam.create_alias(FunctionName=two_versions, Name="live", FunctionVersion="2",
                     RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    seen = {}
    for _ in range(40):
        res = dp.invoke(lam, two_versions, {"op": "code"}, Qualifier="live")
        assert res.status == 200 and res.function_error is None, res
        assert res.executed_version in ("1", "2"), res
        assert res.json["code"] == {"1": "v1", "2": "v2"}[res.executed_version], res
        seen[res.executed_version] = seen.get(res.executed_version, 0) + 1
    # 40 draws at 50/50: both versions appear unless routing ignores the weights
    # (probability of a false failure 2 * 0.5**40).
    assert set(seen) == {"1", "2"}, f"executed versions over 40 alias invokes: {seen}"

    # An alias without weights runs only its version.
    lam.create_alias(FunctionName=two_versions, Name="stable", FunctionVersion="1")
    for _ in range(5):
        res = dp.invoke(lam, two_versions, {"op": "code"}, Qualifier="stable")
        assert (res.status, res.function_error, res.executed_version) == (200, None, "1"), res
        assert res.json["code"] == "v1"
    # The alias ARN as FunctionName works too.
    res = dp.invoke(lam, h.fn_arn_for(two_versions, "stable"), {"op": "code"})
    assert (res.status, res.executed_version, json.loads(res.raw)["code"]) == (200, "1", "v1"), res
