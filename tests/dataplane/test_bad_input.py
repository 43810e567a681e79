"""Acceptance point 5: bad input to Invoke and to publishing.

AWS Lambda Invoke: the payload is passed to the runtime as bytes (the runtime, not the API,
rejects non-JSON: Runtime.UnmarshalError); request payloads are limited to 6 MB (413
RequestTooLargeException); unknown qualifiers -> ResourceNotFoundException; a version
whose initialisation failed is Failed with a FunctionError.* reason code
(lmi-behaviour.md §1.3) and cannot be invoked; DryRun -> 204; LogType=Tail is rejected
for capacity-provider functions (§1.4); asynchronous invokes are not supported by fleetfn
yet and must say so.
"""

import json

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # 6,291,456 bytes
MALFORMED = b'{"op": "echo", oops'


def test_malformed_json_reaches_rust_runtime(lam, shared_active):
    # Point 5: the bytes reach lambda_runtime, whose deserializer rejects them: a
    # function error from the runtime, not an API 400.
    pub = shared_active("rust")
    res = dp.invoke(lam, pub.name, raw=MALFORMED)
    body = dp.assert_lambda_error(res)
    assert "deserializ" in (body["errorType"] + body["errorMessage"]).lower(), body
    assert dp.invoke_ok(lam, pub.name, {"op": "noop"}) == {}


@pytest.mark.parametrize("runtime", ["python", "node"])
def test_malformed_json_is_runtime_unmarshal_error(lam, shared_active, runtime):
    # Point 5: awslambdaric / the Node runtime answer Runtime.UnmarshalError.
    pub = shared_active(runtime)
    res = dp.invoke(lam, pub.name, raw=MALFORMED)
    dp.assert_lambda_error(res, "Runtime.UnmarshalError")
    assert dp.invoke_ok(lam, pub.name, {"op": "echo"}) == {"op": "echo"}


def test_payload_over_six_mb_rejected(lam, shared_active):
    # Point 5: request payload over 6 MB -> 413 RequestTooLargeException.
    pub = shared_active("rust")
    payload = json.dumps({"op": "noop", "pad": "a" * SYNC_PAYLOAD_LIMIT}).encode()
    h.expect_error(lam, lambda: dp.invoke(lam, pub.name, raw=payload),
                   "RequestTooLargeException", 413, mentions=["6291456", "6 MB", "size", "large"])


def test_payload_just_under_six_mb_accepted(lam, shared_active):
    # Point 5 (other side of the limit): a payload of exactly 6,291,456 bytes is invoked.
    pub = shared_active("rust")
    head = b'{"op": "noop", "pad": "'
    payload = head + b"a" * (SYNC_PAYLOAD_LIMIT - len(head) - 2) + b'"}'
    assert len(payload) == SYNC_PAYLOAD_LIMIT
    assert dp.invoke_ok(lam, pub.name, raw=payload) == {}


def test_large_response_returned(lam, shared_active):
    # Point 5 (payload limits, response side): a 5 MB result comes back whole.
    pub = shared_active("python")
    body = dp.invoke_ok(lam, pub.name, {"op": "big", "bytes": 5_000_000})
    assert body == {"pad": "a" * 5_000_000}


def test_response_over_six_mb_is_function_error(lam, shared_active):
    # Point 5 (payload limits, response side): AWS answers a result over 6 MB with
    # 200 + Function.ResponseSizeTooLarge; the version keeps serving.
    pub = shared_active("python")
    res = dp.invoke(lam, pub.name, {"op": "big", "bytes": SYNC_PAYLOAD_LIMIT + 1000})
    dp.assert_lambda_error(res, "Function.ResponseSizeTooLarge")
    assert dp.invoke_ok(lam, pub.name, {"op": "echo"}) == {"op": "echo"}


@pytest.mark.parametrize("qualifier", ["42", "no-such-alias"])
def test_unknown_qualifier_not_found(lam, shared_active, qualifier):
    # Point 5: a version or alias that does not exist.
    pub = shared_active("rust")
    h.expect_error(lam, lambda: dp.invoke(lam, pub.name, {"op": "noop"}, Qualifier=qualifier),
                   "ResourceNotFoundException", 404, mentions=[pub.name, qualifier])


def test_unknown_function_not_found(lam):
    # Point 5: a function that does not exist.
    name = h.uniq("dp-missing")
    h.expect_error(lam, lambda: dp.invoke(lam, name, {"op": "noop"}), "ResourceNotFoundException", 404,
                   mentions=[name])


@pytest.fixture(scope="module")
def failed_versions(lam, endpoint, fn_factory):
    """A provided.al2023 zip without `bootstrap` and a Python zip without the handler's
    module, both published; returns {case: Publication} once they left Pending."""
    no_bootstrap = fn_factory.create("rust", zip_bytes=h.make_zip([("not-bootstrap", "#!/bin/sh\n", 0o755)]))
    no_module = fn_factory.create("python", zip_bytes=h.make_zip([("other.py", "def handler(e, c):\n    return e\n",
                                                                       0o644)]))
    pubs = [dp.publish(lam, no_bootstrap, "rust", latest_published=False),
            dp.publish(lam, no_module, "python")]
    dp.wait_published(lam, endpoint, pubs)
    return {"no_bootstrap": pubs[0], "no_module": pubs[1]}


@pytest.mark.parametrize("case,reason_code", [
    ("no_bootstrap", "FunctionError.InvalidEntryPoint"),
    ("no_module", "FunctionError.RuntimeInitError"),
])
def test_failed_publish_reports_reason(failed_versions, case, reason_code):
    # Point 5: zip without bootstrap / missing handler file -> version Failed with the reason.
    pub = failed_versions[case]
    cfg = pub.final
    assert cfg["State"] == "Failed", f"{case}: states {pub.states}, final {cfg}"
    assert cfg.get("StateReasonCode") == reason_code, cfg
    assert cfg.get("StateReason"), cfg


@pytest.mark.parametrize("case", ["no_bootstrap", "no_module"])
def test_invoking_failed_version_is_an_error(lam, endpoint, failed_versions, case):
    # Point 5: invoking a Failed version -> ResourceConflictException naming the state,
    # and no environment of it is left running.
    pub = failed_versions[case]
    h.expect_error(lam, lambda: dp.invoke(lam, pub.name, {"op": "echo"}, Qualifier=pub.version),
                   "ResourceConflictException", 409, mentions=["Failed"])
    dp.wait_envs(endpoint, pub.name, pub.version,
                 lambda es: not any(e["State"] in dp.LIVE_STATES for e in es),
                 f"no live environment for the Failed version {pub.name}:{pub.version}", timeout=15)


def test_dry_run(lam, endpoint, shared_active):
    # Point 5: InvocationType=DryRun -> 204, and the function does not run: had the
    # `crash` event run, one environment would have exited and been replaced.
    pub = shared_active("rust")
    before = sorted(e["EnvironmentId"] for e in dp.ready(dp.environments(endpoint, pub.name, "$LATEST.PUBLISHED")))
    resp = lam.invoke(FunctionName=pub.name, InvocationType="DryRun", Payload=b'{"op": "crash"}')
    assert resp["StatusCode"] == 204, resp
    assert resp["Payload"].read() == b""
    for _ in range(3):
        assert dp.invoke_ok(lam, pub.name, {"op": "noop"}) == {}
    after = dp.environments(endpoint, pub.name, "$LATEST.PUBLISHED")
    assert sorted(e["EnvironmentId"] for e in dp.ready(after)) == before, (
        f"an environment changed after a DryRun: before {before}, after {dp.describe_envs(after)}")


def test_log_type_tail_rejected(lam, shared_active):
    # Point 5: LogType=Tail on a capacity-provider function.
    pub = shared_active("rust")
    h.expect_error(lam, lambda: dp.invoke(lam, pub.name, {"op": "noop"}, LogType="Tail"),
                   "InvalidParameterValueException", 400, mentions=["Tail"])
