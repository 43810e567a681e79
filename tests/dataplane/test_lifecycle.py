"""Acceptance point 6: rollout, deletion and deactivation.

lmi-behaviour.md §1.5-1.6: republishing $LATEST.PUBLISHED replaces the version in place
(new environments come up before the old ones drain: no downtime); DeleteFunction stops
the function's environments; Min=Max=0 deactivates a version (no environments, and it does
not scale back up on traffic).
"""

import pytest
from botocore.exceptions import ClientError

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp

QUALIFIER = "$LATEST.PUBLISHED"
NEW_CODE_STREAK = 20


@pytest.fixture(scope="module")
def rollout(lam, endpoint, fn_factory):
    """Publish code v1, then republish $LATEST.PUBLISHED with code v2 under steady
    sequential load. Returns what the load saw and the environments before the rollout."""
    name = fn_factory.create("python", zip_bytes=dp.python_zip("v1"), concurrency=2)
    dp.publish_active(lam, endpoint, name, "python")
    old_envs = dp.ready(dp.environments(endpoint, name, QUALIFIER))

    def streak(load):
        tail = load.outcomes[-NEW_CODE_STREAK:]
        return len(tail) == NEW_CODE_STREAK and all(isinstance(o, dict) and o.get("code") == "v2" for o in tail)

    load = dp.SequentialLoad(lam, name, {"op": "code"}, stop_when=streak, max_seconds=30.0, max_invokes=2000)
    load.start()
    try:
        h.poll(lambda: len(load.outcomes), lambda n: n >= 5 or not load.is_alive(), "the load to get going", 15)
        h.update_code(lam, name, dp.python_zip("v2"))
        republish = lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    except BaseException:
        load.halt.set()
        raise
    finally:
        load.join(timeout=40)
    assert not load.is_alive(), "the load loop did not stop within its bounds"
    return {"name": name, "load": load, "old_envs": old_envs, "republish": republish, "streak": streak(load)}


def test_republish_switches_code_without_failed_invokes(rollout):
    # Point 6: under steady sequential load the republish switches invokes to the new
    # code, and not a single invoke fails during the rollout.
    load = rollout["load"]
    codes = [o.get("code") if isinstance(o, dict) else "ERROR" for o in load.outcomes]
    print(f"rollout: {len(codes)} invokes, {codes.count('v1')} v1, {codes.count('v2')} v2, "
          f"{len(load.failures)} failed")
    assert rollout["republish"]["Version"] == QUALIFIER, rollout["republish"]
    assert load.failures == [], (
        f"{len(load.failures)} of {len(load.outcomes)} invokes failed during the rollout: {load.failures[:5]}")
    assert codes[:5] == ["v1"] * 5, codes[:10]
    assert rollout["streak"], (
        f"the new code did not answer {NEW_CODE_STREAK} times in a row within the bounds "
        f"({len(codes)} invokes; last ones: {codes[-30:]})")


def test_republish_drains_old_environments(lam, endpoint, rollout):
    # Point 6: after the rollout only new environments serve the version (the old ones
    # drain and stop), still three of them, in three zones.
    old_ids = {e["EnvironmentId"] for e in rollout["old_envs"]}
    envs = dp.wait_envs(endpoint, rollout["name"], QUALIFIER,
                        lambda es: not ({e["EnvironmentId"] for e in es if e["State"] in dp.LIVE_STATES} & old_ids)
                        and len(dp.ready(es)) == dp.DEFAULT_MIN_ENVS,
                        "the old environments to be gone and three new ones Ready")
    assert sorted(e["Zone"] for e in dp.ready(envs)) == sorted(dp.ZONES), dp.describe_envs(envs)
    cfg = h.poll(lambda: lam.get_function_configuration(FunctionName=rollout["name"], Qualifier=QUALIFIER),
                 lambda c: c.get("LastUpdateStatus") != "InProgress", "the republish to finish")
    assert cfg["State"] == "Active" and cfg.get("LastUpdateStatus") == "Successful", cfg
    assert dp.invoke_ok(lam, rollout["name"], {"op": "code"})["code"] == "v2"


def test_delete_function_stops_its_environments(lam, endpoint, fn_factory):
    # Point 6: DeleteFunction -> no environment of the function is left.
    pub = fn_factory.published("python", concurrency=2)
    assert len(dp.ready(dp.environments(endpoint, pub.name))) == dp.DEFAULT_MIN_ENVS
    resp = lam.delete_function(FunctionName=pub.name)
    assert h.status_of(resp) in (202, 204), resp
    dp.wait_envs(endpoint, pub.name, None, lambda es: es == [], f"the environments of {pub.name} to be gone",
                 timeout=30)
    h.gone(lambda: lam.get_function(FunctionName=pub.name), f"function {pub.name}")
    h.expect_error(lam, lambda: dp.invoke(lam, pub.name, {"op": "echo"}), "ResourceNotFoundException", 404)


def test_min_max_zero_has_no_environments(lam, endpoint, fn_factory):
    # Point 6: Min=Max=0 on a version -> its environments stop; traffic does not start
    # any (the invoke is refused, never run).
    pub = fn_factory.published("python", concurrency=2)
    dp.set_scaling(lam, pub.name, QUALIFIER, 0, 0)
    dp.wait_envs(endpoint, pub.name, QUALIFIER, lambda es: es == [],
                 f"no environments for {pub.name}:{QUALIFIER} after Min=Max=0", timeout=30)
    try:
        res = dp.invoke(lam, pub.name, {"op": "echo"})
    except ClientError as err:
        assert 400 <= h.error_status(err) < 500, err.response
    else:
        pytest.fail(f"a version scaled to zero environments ran an invoke: {res}")
    assert dp.environments(endpoint, pub.name, QUALIFIER) == [], "an invoke started an environment"
    # An explicit non-zero scaling config brings it back.
    dp.set_scaling(lam, pub.name, QUALIFIER, 1, 1)
    dp.wait_single_ready(endpoint, pub.name, QUALIFIER)
    assert dp.invoke_ok_when_capacity(lam, pub.name, {"op": "echo", "back": 1}) == {"op": "echo", "back": 1}


def _instances(endpoint: str, cp_name: str) -> list[dict]:
    resp = h.raw_request(endpoint, "GET", "/fleetfn/v1/environments", timeout=10.0)
    assert resp.status_code == 200, resp.text[:300]
    return [i for i in resp.json()["Instances"] if i["CapacityProvider"] == cp_name]


def test_instances_follow_the_provider_workload(lam, endpoint):
    # A capacity provider with nothing to run costs nothing (LMI: no instances); publishing
    # brings one instance per zone, deleting the last function takes them away again.
    cp_name = h.uniq("dpcp")
    cp = h.create_active_cp(lam, cp_name)
    assert _instances(endpoint, cp_name) == []
    name = dp.create_lmi_function(lam, cp["CapacityProviderArn"], "rust")
    dp.publish_active(lam, endpoint, name, "rust")
    zones = {i["Zone"] for i in _instances(endpoint, cp_name)}
    assert zones == set(cp["VpcConfig"]["SubnetIds"]), zones
    lam.delete_function(FunctionName=name)
    dp.wait_envs(endpoint, name, None, lambda es: es == [], f"the environments of {name} to be gone", timeout=30)
    h.poll(lambda: _instances(endpoint, cp_name), lambda insts: insts == [],
           f"the instances of {cp_name} to be terminated", 30)
    h.delete_cp_when_free(lam, cp_name)
