"""The Lambda Insights metrics on fleetfn's own `/metrics` (docs/METRICS.md, "Lambda Insights"):
CPU time by mode, peak memory, network bytes and `/tmp` of a version's environments, measured
by the agents once a second, with sane values after invokes that burn CPU, write to `/tmp` and
talk to the Runtime API.
"""

from __future__ import annotations

import time

import pytest

from fleetfn_testkit import capacity as ch
from fleetfn_testkit import dataplane as dp
from test_metrics import MIB, Scrape, scrape, wait_scrape

Q = ch.QUALIFIER


def cpu(s: Scrape, v: dict, mode: str) -> float:
    value = s.value("fleetfn_execution_environment_cpu_seconds_total", **v, mode=mode)
    assert value is not None, f"no {mode} CPU series"
    return value


def net(s: Scrape, v: dict) -> tuple[float, float]:
    return (s.value("fleetfn_execution_environment_network_receive_bytes_total", **v),
            s.value("fleetfn_execution_environment_network_transmit_bytes_total", **v))


def own_network_namespaces(server) -> bool:
    """Whether the agents gave every environment its own network namespace (as root with
    `ip`; the report line says "own namespace per environment")."""
    return any("own namespace per environment" in r for r in dp.isolation_reports(server))


def test_insights_series_follow_what_the_function_does(lam, endpoint, metrics_url, res, server):
    cp = res.cp()
    name = res.function(cp, concurrency=2, timeout=30)
    dp.publish_active(lam, endpoint, name, "rust")
    dp.set_scaling(lam, name, Q, 1, 1)
    dp.wait_single_ready(endpoint, name, Q)
    v = {"function": name, "version": Q}

    # Once the one environment is left and has been sampled, every series is there.
    def sampled(s: Scrape) -> bool:
        return (s.value("fleetfn_execution_environments", **v, state="Ready") == 1
                and s.total("fleetfn_execution_environments", **v) == 1
                and s.value("fleetfn_execution_environment_memory_max_bytes", **v) is not None
                and s.value("fleetfn_execution_environment_tmp_used_bytes", **v) is not None
                and cpu(s, v, "user") + cpu(s, v, "system") >= 0)

    before = wait_scrape(metrics_url, sampled, f"the Insights series of {name}", timeout=60)
    # The sizes are the function's configuration: MemorySize and EphemeralStorage (512 MB).
    assert before.value("fleetfn_execution_environment_memory_size_bytes", **v) == dp.MEMORY * MIB
    assert before.value("fleetfn_execution_environment_tmp_size_bytes", **v) == 512 * MIB
    peak = before.value("fleetfn_execution_environment_memory_max_bytes", **v)
    assert 1 * MIB < peak < dp.MEMORY * MIB, peak
    tmp_before = before.value("fleetfn_execution_environment_tmp_used_bytes", **v)
    assert 0 <= tmp_before < 512 * MIB, tmp_before

    # CPU: two invokes that each spin for 700 ms of wall time. What CPU they get depends on the
    # host's load (the burn is bounded by time, not work), so the counters must grow by a
    # visible part of it, mostly in user mode, and by no more than the wall time plus the
    # runtime's own work. Counters never go down.
    user0, system0 = cpu(before, v, "user"), cpu(before, v, "system")
    for _ in range(2):
        dp.invoke_ok(lam, name, {"op": "burn", "ms": 700})
    after = wait_scrape(
        metrics_url,
        lambda s: cpu(s, v, "user") + cpu(s, v, "system") >= user0 + system0 + 0.1,
        "the burned CPU time to be counted", timeout=15)
    time.sleep(2.5)  # two more samples: whatever the burn got is in
    after = scrape(metrics_url)
    user1, system1 = cpu(after, v, "user"), cpu(after, v, "system")
    assert user1 >= user0 and system1 >= system0, (user0, user1, system0, system1)
    assert user1 - user0 > system1 - system0, (user0, user1, system0, system1)
    burned = (user1 + system1) - (user0 + system0)
    assert 0.1 <= burned < 1.4 + 1.0, burned

    # /tmp: a 24 MB file shows up in the gauge within a few samples.
    out = dp.invoke_ok(lam, name, {"op": "fill", "mb": 24})
    assert out["mb"] == 24, out
    s = wait_scrape(
        metrics_url,
        lambda s: s.value("fleetfn_execution_environment_tmp_used_bytes", **v) >= tmp_before + 24 * MIB,
        "the file in /tmp to be counted", timeout=15)
    assert s.value("fleetfn_execution_environment_tmp_used_bytes", **v) < 512 * MIB

    # Memory: touching 64 MB raises the peak, which never falls.
    dp.invoke_ok(lam, name, {"op": "alloc", "mb": 64})
    s = wait_scrape(
        metrics_url,
        lambda s: s.value("fleetfn_execution_environment_memory_max_bytes", **v) >= 64 * MIB,
        "the allocation to raise the peak memory", timeout=15)
    assert s.value("fleetfn_execution_environment_memory_max_bytes", **v) >= peak

    # Network: every invoke is a Runtime API exchange on the environment's loopback (its /next
    # answer in, its response out), counted when the environment has its own namespace; an
    # environment sharing the host's network is not measured and its counters stay at zero.
    rx0, tx0 = net(s, v)
    for i in range(5):
        dp.invoke_ok(lam, name, {"op": "echo", "pad": "x" * 2000, "i": i})
    if own_network_namespaces(server):
        s = wait_scrape(metrics_url, lambda s: net(s, v)[0] >= rx0 + 5 * 2000
                        and net(s, v)[1] >= tx0 + 5 * 2000,
                        "the invokes' Runtime API bytes to be counted", timeout=15)
        rx, tx = net(s, v)
        assert rx > 0 and tx > 0, (rx, tx)
    else:
        time.sleep(2.5)
        assert net(scrape(metrics_url), v) == (0, 0), dp.isolation_reports(server)
        pytest.skip("environments share the host's network here: network bytes are not measured")
