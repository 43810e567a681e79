"""Acceptance point 2: multi-concurrency inside one execution environment, and throttling.

lmi-behaviour.md §2.2-2.5 (one EE serves up to PerExecutionEnvironmentMaxConcurrency invokes
at once; Python = that many worker processes), §3.1-3.2 and §2.6 ("If all runtime workers
are busy processing invocations, new invocation requests are rejected": HTTP 429, never
queued). Each function here is scaled to Min=Max=1 environment with max concurrency 8.
Concurrency is proven by in-flight counts on the environments endpoint and, for Python and
Node, by the handlers' own start/end timestamps overlapping -- never by wall-clock time.
"""

import pytest
from botocore.exceptions import ClientError

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp

QUALIFIER = "$LATEST.PUBLISHED"
SLEEP_MS = 1000


@pytest.fixture(scope="module")
def single_env_functions(lam, endpoint, fn_factory):
    """runtime -> function name, each Active and converged to exactly one Ready environment."""
    names = {rt: fn_factory.create(rt) for rt in dp.RUNTIMES}
    pubs = dp.wait_published(lam, endpoint, [dp.publish(lam, names[rt], rt) for rt in dp.RUNTIMES])
    for pub in pubs:
        assert pub.final["State"] == "Active", pub.final
        dp.set_scaling(lam, pub.name, QUALIFIER, 1, 1)
    for name in names.values():
        dp.wait_single_ready(endpoint, name, QUALIFIER)
    return names


@pytest.mark.parametrize("runtime", list(dp.RUNTIMES))
def test_eight_concurrent_invokes_in_one_environment_and_ninth_throttled(lam, endpoint, single_env_functions,
                                                                          runtime):
    # Point 2: with Min=Max=1 and max concurrency 8, eight concurrent 1 s invokes are all
    # in flight at once in the single environment and all succeed; a ninth, sent while
    # those eight are in flight, is throttled at once (429), not queued.
    name = single_env_functions[runtime]
    env = dp.wait_single_ready(endpoint, name, QUALIFIER)
    assert env["MaxConcurrency"] == dp.CONCURRENCY, env

    batch = dp.Batch(lam, name, [{"op": "sleep", "ms": SLEEP_MS}] * dp.CONCURRENCY)
    envs = dp.wait_in_flight(endpoint, name, QUALIFIER, dp.CONCURRENCY, batch)
    busy = [e for e in envs if e["InFlight"] > 0]
    assert len(busy) == 1 and busy[0]["InFlight"] == dp.CONCURRENCY, (
        f"the eight invokes should all be in the one environment: {dp.describe_envs(envs)}")

    try:
        ninth = dp.invoke(lam, name, {"op": "noop"})
        ninth_err = None
    except ClientError as err:
        ninth, ninth_err = None, err

    results = batch.results()
    for res in results:
        assert not isinstance(res, Exception), f"one of the eight concurrent invokes failed: {res!r}"
        assert res.status == 200 and res.function_error is None, res

    if runtime == "rust":
        assert [r.json for r in results] == [{"slept_ms": SLEEP_MS}] * dp.CONCURRENCY
    else:
        bodies = [r.json for r in results]
        assert dp.intervals_overlap(bodies), (
            "the eight execution intervals do not share a common instant: "
            + str(sorted((b["start"], b["end"]) for b in bodies)))
        if runtime == "python":
            # Python multi-concurrency = one worker process per concurrent invoke.
            assert len({b["pid"] for b in bodies}) == dp.CONCURRENCY, bodies

    assert ninth_err is not None, (
        f"the ninth invoke, sent while 8 were in flight in the only environment, was not throttled: {ninth}")
    assert h.error_code(ninth_err) == "TooManyRequestsException", ninth_err.response
    assert h.error_status(ninth_err) == 429, ninth_err.response
    assert ninth_err.response.get("Reason") == "ConcurrentInvocationLimitExceeded", ninth_err.response
    retry_after = ninth_err.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after")
    assert retry_after is not None and retry_after.strip().isdigit(), (
        f"429 without a usable Retry-After header: {ninth_err.response['ResponseMetadata']['HTTPHeaders']}")
    assert h.error_message(ninth_err).strip(), ninth_err.response

    # Capacity is back once the eight are done.
    assert dp.invoke_ok(lam, name, {"op": "echo", "after": True}) == {"op": "echo", "after": True}
