"""Agents own only their own cgroups (tests/isolation): with two fleetfn servers on one host, an
agent's start-up sweep leaves alone another live instance's slice, even one created an instant
ago and still empty (its owner holds its lease in /run/fleetfn), and removes it once its owner
is gone."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit.server import FleetfnServer

CGROUP_ROOT = Path("/sys/fs/cgroup")
LEASES = Path("/run/fleetfn/cgroups")


def slice_dirs(name: str) -> list[Path]:
    """`fleetfn/<name>` in every hierarchy that has the agents' slice (v1 or v2)."""
    tops = [d / "fleetfn" for d in CGROUP_ROOT.iterdir() if (d / "fleetfn").is_dir()]
    if (CGROUP_ROOT / "fleetfn").is_dir():
        tops.append(CGROUP_ROOT / "fleetfn")
    return [t / name for t in tops]


def start_instances(lam, endpoint: str, tag: str) -> str:
    """A capacity provider of its own and a published function on it: new instances, so new
    agents start (and sweep)."""
    cp = h.uniq(f"sweep-{tag}")
    h.create_active_cp(lam, cp, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
    name = dp.create_lmi_function(lam, h.cp_arn_for(cp), "rust", name=h.uniq(f"sweep-{tag}"))
    dp.publish_active(lam, endpoint, name, "rust")
    return name


def test_sweep_spares_live_owners_and_removes_dead_ones(server, lam, tmp_path, fleetfn_binary):
    fake = f"i-fake{os.getpid()}"
    dirs = slice_dirs(fake)
    assert dirs, "no fleetfn cgroup slice on this host (is the data plane running as root?)"
    LEASES.mkdir(parents=True, exist_ok=True)
    lease = open(LEASES / fake, "a+")
    fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
    other = None
    try:
        start_instances(lam, server.endpoint, "a0")  # the first server has running instances
        for d in dirs:
            d.mkdir()
        # A second server on the same host starts agents of its own, which sweep at start.
        other = FleetfnServer(fleetfn_binary, tmp_path / "b-data", tmp_path / "b-logs",
                              name="second", data_plane=True, extra_args=["--metrics-listen", "off"])
        other.start()
        lam_b = dp.no_retry_client(other.endpoint)
        start_instances(lam_b, other.endpoint, "b")
        still = [d for d in dirs if d.is_dir()]
        assert still == dirs, f"a live instance's empty slice was swept: {set(dirs) - set(still)}"
        # The first server's own instances are untouched too.
        status = h.raw_request(server.endpoint, "GET", "/fleetfn/v1/status", timeout=10.0).json()
        ids = [i["InstanceId"] for p in status["CapacityProviders"] for i in p["Instances"]
               if i["State"] == "running"]
        assert ids and all(any(d.is_dir() for d in slice_dirs(i)) for i in ids), ids

        # Its owner goes: the next agent to start removes it.
        fcntl.flock(lease, fcntl.LOCK_UN)
        lease.close()
        lease = None
        start_instances(lam, server.endpoint, "a")
        left = [d for d in dirs if d.is_dir()]
        assert not left, f"a dead instance's slice was left: {left}"
    finally:
        if lease is not None:
            lease.close()
        for d in dirs:
            if d.is_dir():
                d.rmdir()
        if other is not None:
            other.stop()
