"""Acceptance point 7: the execution environment sandbox (only meaningful as root).

DESIGN.md (agent and environments): code read-only at /var/task, its own /tmp, private
mount/pid/ipc namespaces, an unprivileged user; "when the host allows less ... the agent
says at start-up which isolation is in force" (the `sandbox: ...` log line).

As root the agents must report a sandbox in force (cgroups, namespaces, uid drop); without
root the tests are skipped, saying why (`needs root: ...`).
"""

import os
import uuid

import pytest

from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import prereq

pytestmark = prereq.needs_root("the agent only sandboxes as root")


@pytest.fixture
def sandbox_expected(server, shared):
    """The agents must say which isolation is in force, and as root it must be a real one."""
    reports = dp.isolation_reports(server)
    assert reports, "no agent reported which isolation is in force (`sandbox: ...` log line)"
    assert not any(r.strip().lower().startswith(("none", "off")) for r in reports), reports
    assert all("uid drop" in r and "mount+pid" in r for r in reports), reports
    return reports


def test_cannot_write_task_root(lam, shared_active, sandbox_expected):
    # Point 7: the function's code directory (/var/task, LAMBDA_TASK_ROOT) is read-only.
    pub = shared_active("rust")
    root = dp.invoke_ok(lam, pub.name, {"op": "env"})["env"]["LAMBDA_TASK_ROOT"]
    probe = f"fleetfn-write-probe-{uuid.uuid4().hex}"
    outcomes = {}
    for path in {f"{root.rstrip('/')}/{probe}", f"/var/task/{probe}"}:
        outcomes[path] = dp.invoke_ok(lam, pub.name, {"op": "write", "path": path})
        if outcomes[path]["written"] and os.path.exists(path):  # unsandboxed: clean up on the host
            os.unlink(path)
    assert not any(o["written"] for o in outcomes.values()), f"the function wrote its code directory: {outcomes}"
    assert root == "/var/task", f"LAMBDA_TASK_ROOT is {root!r}"


def test_runs_as_non_root(lam, shared_active, sandbox_expected):
    # Point 7: function code runs as an unprivileged user.
    rust = dp.invoke_ok(lam, shared_active("rust").name, {"op": "env"})
    python = dp.invoke_ok(lam, shared_active("python").name, {"op": "env"})
    ids = {"rust uid": rust["uid"], "rust euid": rust["euid"], "python uid": python["uid"],
           "python euid": python["euid"]}
    assert all(isinstance(v, int) and v != 0 for v in ids.values()), f"function runs as root: {ids}"


def test_sees_only_its_own_processes(lam, server, shared_active, sandbox_expected):
    # Point 7: a private pid namespace: neither the server, nor this test runner, nor the
    # host's other processes are visible in /proc.
    body = dp.invoke_ok(lam, shared_active("rust").name, {"op": "ps"})
    pids = set(body["pids"])
    visible = {"fleetfn server": server.proc.pid in pids, "test runner": os.getpid() in pids}
    assert not any(visible.values()), f"host processes visible to the function: {visible}; {len(pids)} pids in /proc"
    assert len(pids) < 32, f"the function sees {len(pids)} processes: {sorted(pids)[:50]}"


def test_tmp_is_private_to_each_environment(lam, endpoint, shared_active, sandbox_expected):
    # Point 7: each environment has its own /tmp. Every environment's first writer
    # creates /tmp/<name> with a random token; environments that share a /tmp read the
    # same token. Concurrent invokes spread over the version's environments.
    pub = shared_active("python")
    name = f"fleetfn-tmp-probe-{uuid.uuid4().hex}"
    try:
        batch = dp.Batch(lam, pub.name, [{"op": "tmp_token", "name": name, "ms": 1500}] * 9)
        dp.wait_in_flight(endpoint, pub.name, "$LATEST.PUBLISHED", 9, batch)
        envs = dp.environments(endpoint, pub.name, "$LATEST.PUBLISHED")
        busy = [e for e in envs if e["InFlight"] > 0]
        results = batch.results()
    finally:
        for leftover in (f"/tmp/{name}",):  # unsandboxed runs write the host's /tmp
            if os.path.exists(leftover):
                os.unlink(leftover)
    for res in results:
        assert not isinstance(res, Exception) and res.function_error is None, res
    assert len(busy) >= 2, f"the invokes did not spread over several environments: {dp.describe_envs(envs)}"
    by_stream = {}
    for res in results:
        by_stream.setdefault(res.json["stream"], set()).add(res.json["token"])
    tokens = [t for ts in by_stream.values() for t in ts]
    assert all(len(ts) == 1 for ts in by_stream.values()), f"one environment saw different /tmp files: {by_stream}"
    assert len(set(tokens)) == len(busy), (
        f"{len(busy)} environments ran the invokes but only {len(set(tokens))} distinct /tmp token(s) were seen: "
        f"their /tmp is shared ({by_stream})")


def test_memory_limit_and_utilization_come_from_the_environment_cgroup(lam, endpoint, shared_active, sandbox_expected):
    # Each environment has its own cgroup: the agent reports its memory in use and CPU time,
    # and the memory in use stays under the function's MemorySize.
    pub = shared_active("rust")
    dp.invoke_ok(lam, pub.name, {"op": "noop"})

    def reported(envs):
        return [e for e in dp.ready(envs) if e.get("MemoryBytes") and e.get("CpuUsageNs") is not None]

    envs = dp.wait_envs(endpoint, pub.name, None, lambda envs: len(reported(envs)) >= 1,
                        "environments reporting cgroup utilization", 20)
    for e in reported(envs):
        assert 0 < e["MemoryBytes"] < 2048 * 1024 * 1024, e
