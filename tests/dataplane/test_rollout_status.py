"""A `$LATEST.PUBLISHED` republish reports `LastUpdateStatus: InProgress` until the new publish's
environments serve, and only then `Successful` (lmi-behaviour.md §1.5: the version stays Active
on its old environments while the new ones start)."""

import threading
import time

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp

QUALIFIER = "$LATEST.PUBLISHED"
MARK = "LAMBDA_ROLLOUT_MARK"  # the Rust test function reports AWS_*/LAMBDA_* variables


def _mark(lam, name) -> str:
    return dp.invoke_ok(lam, name, {"op": "env"})["env"].get(MARK)


def _republish_and_watch(lam, endpoint, name, old_ids, need: int) -> list:
    """Republish with a new mark; until the status is Successful it must say InProgress, and
    when it says Successful at least `need` environments of the new publish are Ready."""
    h.update_config(lam, name, Environment={"Variables": {MARK: "v2"}})
    resp = lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    assert resp["State"] == "Active" and resp["LastUpdateStatus"] == "InProgress", resp
    seen = []
    deadline = time.monotonic() + dp.ENV_TIMEOUT
    while True:
        cfg = lam.get_function_configuration(FunctionName=name, Qualifier=QUALIFIER)
        # Listed after the configuration was read: what serves now served at least as much then.
        envs = dp.environments(endpoint, name, QUALIFIER)
        new_ready = [e for e in dp.ready(envs) if e["EnvironmentId"] not in old_ids]
        status = cfg.get("LastUpdateStatus")
        seen.append((status, len(new_ready)))
        assert cfg["State"] == "Active", cfg
        assert cfg["Environment"]["Variables"][MARK] == "v2", cfg
        if status == "Successful":
            assert len(new_ready) >= need, (
                f"Successful while the new publish has {len(new_ready)} Ready environments: "
                f"{dp.describe_envs(envs)}; seen {seen[-10:]}")
            break
        assert status == "InProgress", cfg
        assert cfg.get("LastUpdateStatusReason"), cfg
        assert time.monotonic() < deadline, f"the republish did not finish; seen {seen[-10:]}"
        time.sleep(0.05)
    # The new publish serves.
    assert _mark(lam, name) == "v2"
    print(f"{len(seen)} observations (LastUpdateStatus, new Ready environments), first {seen[:2]}, last {seen[-1]}")
    return seen


def _first_publish(lam, endpoint, fn_factory) -> tuple[str, set]:
    name = fn_factory.create("rust", variables={MARK: "v1"})
    dp.publish_active(lam, endpoint, name, "rust")
    old = dp.wait_envs(endpoint, name, QUALIFIER, lambda es: len(dp.ready(es)) == dp.DEFAULT_MIN_ENVS,
                       "the first publish's environments")
    assert _mark(lam, name) == "v1"
    return name, {e["EnvironmentId"] for e in dp.ready(old)}


def test_republish_is_in_progress_until_the_new_environments_serve(lam, endpoint, fn_factory):
    name, old_ids = _first_publish(lam, endpoint, fn_factory)
    _republish_and_watch(lam, endpoint, name, old_ids, need=dp.DEFAULT_MIN_ENVS)


def test_republish_with_minimum_zero_under_load_keeps_serving(lam, endpoint, fn_factory):
    # Min 0 under steady load: the old publish's environments serve the traffic. The republish
    # must not report Successful, nor drain them, before an environment of its own is Ready; no
    # invoke may fail on the way.
    name, old_ids = _first_publish(lam, endpoint, fn_factory)
    done = threading.Event()
    load = dp.SequentialLoad(lam, name, {"op": "env"}, stop_when=lambda _: done.is_set(),
                             max_seconds=90.0, max_invokes=20000)
    load.start()
    try:
        h.poll(lambda: len(load.outcomes), lambda n: n >= 5 or not load.is_alive(), "the load to get going", 15)
        dp.set_scaling(lam, name, QUALIFIER, 0, 3)
        # The scaler keeps what the load needs (at least one Ready environment) for a while.
        time.sleep(1.5)
        envs = dp.environments(endpoint, name, QUALIFIER)
        still = [e for e in dp.ready(envs) if e["EnvironmentId"] in old_ids]
        assert still, f"with Min 0 under load the old environments were all stopped: {dp.describe_envs(envs)}"
        _republish_and_watch(lam, endpoint, name, old_ids, need=1)
    finally:
        done.set()
        load.join(timeout=30)
    assert not load.is_alive(), "the load loop did not stop within its bounds"
    marks = [o.get("env", {}).get(MARK) if isinstance(o, dict) else "ERROR" for o in load.outcomes]
    print(f"load: {len(marks)} invokes, {marks.count('v1')} v1, {marks.count('v2')} v2, {len(load.failures)} failed")
    assert load.failures == [], load.failures[:5]
