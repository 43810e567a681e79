"""Capacity: instances across zones, placement, throttling with a reason, autoscaling, failures
and rollouts (the acceptance points of the capacity issue), with real processes.

lmi-behaviour.md §2-§4: instances of allowed types spread over the provider's zones; environments
bin-packed onto them under MaxVCpuCount; when every environment is busy the invoke is throttled
at once with 429 (never queued); the scaler adds environments (and instances) for CPU and
concurrency and removes them gradually; a lost instance's environments are replaced.
"""

from __future__ import annotations

import time

from fleetfn_testkit import api as h
from fleetfn_testkit import capacity as ch
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import prereq
from fleetfn_testkit.resources import Resources, dp_client

Q = ch.QUALIFIER


def publish(lam, endpoint, name):
    return dp.publish_active(lam, endpoint, name, "rust")


def instance_types(cp: dict) -> set[str]:
    return {i["InstanceType"] for i in cp["Instances"]}


# --------------------------------------------------------------------------------------
# Placement: instance types, zones, MaxVCpuCount
# --------------------------------------------------------------------------------------


def test_default_placement_spreads_three_environments_over_three_zones(lam, endpoint, res):
    cp = res.cp()
    name = res.function(cp)
    publish(lam, endpoint, name)
    vs = ch.version_status(endpoint, name)
    envs = ch.ready_envs(vs)
    assert len(envs) == 3, vs
    assert {e["Zone"] for e in envs} == set(dp.ZONES), envs
    prov = ch.provider_status(endpoint, cp)
    # A 2048 MB / 1 vCPU environment fits the cheapest allowed x86 type after the 1 vCPU +
    # 1 GiB per-instance reservation: c7i.large (2 vCPU, 4 GiB), one per zone.
    assert instance_types(prov) == {"c7i.large"}, prov["Instances"]
    assert sorted(i["Zone"] for i in prov["Instances"]) == sorted(dp.ZONES)
    assert all(i["State"] == "running" for i in prov["Instances"])
    assert prov["VCpus"] == 6 and prov["AllocatedVCpus"] == 3.0, prov
    assert vs["DesiredExecutionEnvironments"] == 3 and vs["State"] == "Active"


def test_allowed_and_excluded_instance_types(lam, endpoint, res):
    allowed = res.cp(InstanceRequirements={"Architectures": ["x86_64"], "AllowedInstanceTypes": ["m7i.*"]})
    excluded = res.cp(InstanceRequirements={"Architectures": ["arm64"], "ExcludedInstanceTypes": ["c7g.*"]})
    f1 = res.function(allowed)
    f2 = res.function(excluded)
    pubs = [dp.publish(lam, f1, "rust"), dp.publish(lam, f2, "rust")]
    dp.wait_published(lam, endpoint, pubs)
    for p in pubs:
        assert p.final["State"] == "Active", p.final
    t1 = instance_types(ch.provider_status(endpoint, allowed))
    t2 = instance_types(ch.provider_status(endpoint, excluded))
    assert t1 and all(t.startswith("m7i.") for t in t1), t1
    # arm64 and not c7g: the cheapest remaining Graviton type.
    assert t2 and all(t.startswith(("m7g.", "r7g.")) for t in t2), t2


def test_no_allowed_type_fits_fails_the_publish(lam, endpoint, res):
    # c7i.large leaves 1 vCPU / 3 GiB after the reservation: a 4096 MB (2 vCPU) environment
    # does not fit, and no other type is allowed.
    cp = res.cp(InstanceRequirements={"Architectures": ["x86_64"], "AllowedInstanceTypes": ["c7i.large"]})
    name = res.function(cp, memory=4096)
    pub = dp.wait_published(lam, endpoint, [dp.publish(lam, name, "rust")])[0]
    assert pub.final["State"] == "Failed", pub.final
    assert pub.final["StateReasonCode"] == "InsufficientCapacity", pub.final
    assert "c7i" not in instance_types(ch.provider_status(endpoint, cp))


def test_max_vcpu_count_too_small_for_the_minimum_fails_with_scaling_limit(lam, endpoint, res):
    # Three c7i.large (2 vCPU each) are needed for three 1-vCPU environments in three zones;
    # MaxVCpuCount=4 fits two.
    cp = res.cp(CapacityProviderScalingConfig={"MaxVCpuCount": 4})
    name = res.function(cp)
    pub = dp.wait_published(lam, endpoint, [dp.publish(lam, name, "rust")])[0]
    assert pub.final["State"] == "Failed", pub.final
    assert pub.final["StateReasonCode"] == "CapacityProviderScalingLimitExceeded", pub.final
    assert "MaxVCpuCount" in pub.final["StateReason"], pub.final
    prov = ch.provider_status(endpoint, cp)
    assert prov["VCpus"] <= 4, prov


def test_environments_of_different_functions_share_instances(lam, endpoint, res):
    # Placement bin-packs within a provider: two 2048 MB functions with min 3 each fill
    # c7i.xlarge-sized room only when there is demand for it; here each zone ends up with
    # environments of both functions on the provider's instances, never on another
    # provider's.
    cp = res.cp()
    other = res.cp()
    f1 = res.function(cp)
    f2 = res.function(cp)
    f3 = res.function(other)
    pubs = [dp.publish(lam, f, "rust") for f in (f1, f2, f3)]
    dp.wait_published(lam, endpoint, pubs)
    doc = ch.status(endpoint)
    own = {i["InstanceId"] for c in doc["CapacityProviders"] if c["Name"] == cp for i in c["Instances"]}
    theirs = {i["InstanceId"] for c in doc["CapacityProviders"] if c["Name"] == other for i in c["Instances"]}
    for f in doc["Functions"]:
        if f["FunctionName"] in (f1, f2):
            assert {e["InstanceId"] for e in f["Environments"]} <= own, f
        if f["FunctionName"] == f3:
            assert {e["InstanceId"] for e in f["Environments"]} <= theirs, f


# --------------------------------------------------------------------------------------
# Throttling
# --------------------------------------------------------------------------------------


def test_overload_is_answered_promptly_with_429_and_a_reason(lam, endpoint, res):
    # Fixed capacity: one environment (Min=Max=1) taking 2 concurrent invokes of a 1 s
    # handler. A bounded burst of 3x that: every request is answered, 200 or 429 with a
    # reason; a 429 comes back without waiting for capacity (well under the 1 s a queued
    # request would wait), accepted requests take about as long as unloaded ones.
    cp = res.cp()
    name = res.function(cp, concurrency=2, timeout=10)
    publish(lam, endpoint, name)
    dp.set_scaling(lam, name, Q, 1, 1)
    dp.wait_single_ready(endpoint, name, Q)
    event = {"op": "sleep", "ms": 1000}
    unloaded = ch.timed_invoke(lam, name, event, Q)
    assert unloaded.kind == "ok", unloaded
    base = ch.version_status(endpoint, name)
    load = ch.ClosedLoad(lam, name, event, threads=6, max_seconds=8, max_invokes=20_000).start()
    time.sleep(3.5)
    outcomes = load.stop()
    ok = [o for o in outcomes if o.kind == "ok"]
    thr = [o for o in outcomes if o.kind == "throttle"]
    bad = [o for o in outcomes if o.kind == "error"]
    print(f"overload: {len(ok)} ok, {len(thr)} throttled, {len(bad)} errors; "
          f"unloaded {unloaded.latency * 1000:.0f} ms; max accepted {max(o.latency for o in ok) * 1000:.0f} ms; "
          f"max 429 {max(o.latency for o in thr) * 1000:.1f} ms")
    assert bad == [], bad[:5]
    # Two slots for ~3.5 s of 1 s invokes: at least 6 accepted, the rest throttled.
    assert len(ok) >= 6 and len(thr) >= 4, (len(ok), len(thr))
    for o in thr:
        assert o.detail["reason"] == "ConcurrentInvocationLimitExceeded", o
        assert "(Concurrency throttle)" in o.detail["message"], o
        assert o.retry_after == "1", o
        assert o.latency < 0.5, f"a 429 took {o.latency:.3f}s: it waited for capacity"
    for o in ok:
        assert o.latency < unloaded.latency + 0.5, f"an accepted invoke took {o.latency:.3f}s (unloaded {unloaded.latency:.3f}s)"
    after = ch.version_status(endpoint, name)
    t0, t1 = base["Throttles"], after["Throttles"]
    assert t1["Concurrency"] - t0["Concurrency"] == len(thr), (t0, t1, len(thr))
    assert t1["Total"] - t0["Total"] == len(thr)
    assert (t1["CPU"], t1["Memory"], t1["Disk"]) == (0, 0, 0), t1
    assert after["Invocations"] - base["Invocations"] == len(ok)
    # The last minute's throttles (refreshed by the next scaler tick) are exactly these.
    h.poll(lambda: ch.version_status(endpoint, name)["ThrottlesLastMinute"], lambda n: n == len(thr),
           "ThrottlesLastMinute to count the burst's throttles", 5)
    # Min=Max=1: the saturation never took it above its maximum.
    assert len(after["Environments"]) == 1, after["Environments"]


@prereq.needs_root("the disk ceiling reads the sandbox's /tmp")
def test_full_tmp_throttles_with_the_disk_reason(lam, endpoint, res):
    cp = res.cp()
    name = res.function(cp, timeout=30)
    publish(lam, endpoint, name)
    dp.set_scaling(lam, name, Q, 1, 1)
    dp.wait_single_ready(endpoint, name, Q)
    base = ch.version_status(endpoint, name)["Throttles"]
    filled = ch.timed_invoke(lam, name, {"op": "fill", "mb": 470}, Q)
    assert filled.kind == "ok", filled
    # Writing 470 MiB takes the environment's whole CPU (a quarter of a host CPU) for a while:
    # until the sampler's next look at /tmp, the first refusals may rightly say CPU (the
    # sampler checks disk before CPU, but may have measured /tmp before the fill ended).
    seen = []

    def probe():
        o = ch.timed_invoke(lam, name, {"op": "noop"}, Q)
        seen.append(o)
        return o

    h.poll(probe, lambda o: o.kind == "throttle" and "(Disk throttle)" in o.detail["message"],
           "the environment to refuse invokes with the disk reason once /tmp is over 90 %", 15)
    # Before it: invokes served (not sampled yet) or refused for the fill's CPU, nothing else.
    others = [o for o in seen[:-1]
              if o.kind != "ok" and not (o.kind == "throttle" and "(CPU throttle)" in o.detail["message"])]
    assert not others, others
    t = ch.version_status(endpoint, name)["Throttles"]
    assert t["Disk"] - base["Disk"] >= 1 and t["Concurrency"] == base["Concurrency"], (base, t)
    assert t["Total"] - base["Total"] == (t["Disk"] - base["Disk"]) + (t["CPU"] - base["CPU"]), (base, t)


@prereq.needs_root("the CPU ceiling is measured on the environment's cgroup")
def test_cpu_saturated_environment_throttles_with_the_cpu_reason(lam, endpoint, res):
    # One environment (a quarter of a host CPU) with room for 4 invokes: two CPU-bound invokes
    # peg its CPU, so the agent refuses a third one to protect them although a worker is idle.
    cp = res.cp()
    name = res.function(cp, concurrency=4, timeout=30)
    publish(lam, endpoint, name)
    dp.set_scaling(lam, name, Q, 1, 1)
    dp.wait_single_ready(endpoint, name, Q)
    base = ch.version_status(endpoint, name)["Throttles"]
    burn = ch.ClosedLoad(lam, name, {"op": "burn", "ms": 6000}, threads=2, max_seconds=8, max_invokes=2).start()
    try:
        seen = h.poll(lambda: ch.timed_invoke(lam, name, {"op": "noop"}, Q), lambda o: o.kind != "ok",
                      "an invoke to be refused while the environment's CPU is saturated", 5)
    finally:
        burned = burn.stop()
    assert seen.kind == "throttle", seen
    assert "(CPU throttle)" in seen.detail["message"], seen
    assert all(o.kind == "ok" for o in burned), burned
    t = ch.version_status(endpoint, name)["Throttles"]
    assert t["CPU"] - base["CPU"] >= 1, (base, t)
    assert t["Total"] - base["Total"] == t["CPU"] - base["CPU"], (base, t)


def test_scaled_to_zero_throttles_and_keeps_no_instances(lam, endpoint, res):
    cp = res.cp()
    name = res.function(cp)
    publish(lam, endpoint, name)
    dp.set_scaling(lam, name, Q, 0, 0)
    h.poll(lambda: ch.provider_status(endpoint, cp)["Instances"], lambda i: i == [],
           "the provider's instances to be terminated after Min=Max=0", 30)
    o = ch.timed_invoke(lam, name, {"op": "noop"}, Q)
    assert o.kind == "throttle", o
    assert "no Ready execution environment" in o.detail["message"], o
    vs = ch.version_status(endpoint, name)
    assert vs["DesiredExecutionEnvironments"] == 0 and vs["Environments"] == [], vs
    # And back.
    dp.set_scaling(lam, name, Q, 1, 2)
    dp.wait_single_ready(endpoint, name, Q)
    assert ch.timed_invoke(lam, name, {"op": "noop"}, Q).kind == "ok"


def test_max_vcpu_count_caps_scale_out_and_throttles_say_so(lam, endpoint, res):
    # MaxVCpuCount=6 holds exactly the three c7i.large of the minimum: the scaler wants more
    # under overload, placement cannot give it, the throttles say why.
    cp = res.cp(CapacityProviderScalingConfig={"MaxVCpuCount": 6})
    name = res.function(cp, concurrency=1, timeout=10)
    publish(lam, endpoint, name)
    load = ch.ClosedLoad(lam, name, {"op": "sleep", "ms": 500}, threads=8, max_seconds=30,
                         max_invokes=20_000).start()
    try:
        h.poll(lambda: load.snapshot(),
               lambda outs: any(o.kind == "throttle" and "MaxVCpuCount" in o.detail["message"] for o in outs),
               "a throttle that names MaxVCpuCount", 25)
    finally:
        outcomes = load.stop()
    assert not [o for o in outcomes if o.kind == "error"], [o for o in outcomes if o.kind == "error"][:3]
    prov = ch.provider_status(endpoint, cp)
    assert prov["VCpus"] <= 6 and len(prov["Instances"]) <= 3, prov
    assert ch.version_status(endpoint, name)["State"] == "Active"


# --------------------------------------------------------------------------------------
# Autoscaling
# --------------------------------------------------------------------------------------


def test_cpu_bound_load_scales_out_then_back_in(lam, endpoint, res):
    # A CPU-bound handler (20 ms of CPU per invoke) on 1-vCPU environments whose vCPU is a
    # quarter of a host CPU: one environment serves ~12 invokes/s at 100 % CPU. The rate rises
    # from 2/s to 24/s over 20 s; the scaler (50 % CPU target) adds environments and instances
    # ahead of it, within [Min=1, Max=6]. After the load stops, the version returns to one
    # environment and the empty instances are terminated, without failed invokes.
    cp = res.cp()
    name = res.function(cp, concurrency=4, timeout=10)
    publish(lam, endpoint, name)
    dp.set_scaling(lam, name, Q, 1, 6)
    dp.wait_single_ready(endpoint, name, Q)
    h.poll(lambda: len(ch.provider_status(endpoint, cp)["Instances"]), lambda n: n == 1,
           "the provider to shrink to one instance", 30)
    peak_envs, peak_instances, over_max = 0, 0, []
    load = ch.OpenLoad(lam, name, {"op": "burn", "ms": 20}, rate=lambda t: 2 + 22 * min(t, 20) / 20,
                       max_seconds=30).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            vs = ch.version_status(endpoint, name)
            n = len([e for e in vs["Environments"] if e["State"] in ("Starting", "Ready")])
            if n > 6:
                over_max.append(n)
            peak_envs = max(peak_envs, len(ch.ready_envs(vs)))
            peak_instances = max(peak_instances, len(ch.provider_status(endpoint, cp)["Instances"]))
            time.sleep(0.5)
    finally:
        outcomes = load.stop()
    ok = [o for o in outcomes if o.kind == "ok"]
    thr = [o for o in outcomes if o.kind == "throttle"]
    bad = [o for o in outcomes if o.kind == "error"]
    print(f"scale-out: {len(outcomes)} invokes, {len(ok)} ok, {len(thr)} throttled, {len(bad)} errors, "
          f"peak {peak_envs} Ready environments on {peak_instances} instances")
    assert bad == [], bad[:5]
    assert over_max == [], f"more than Max=6 environments: {over_max}"
    assert peak_envs >= 3 and peak_instances >= 3, (peak_envs, peak_instances)
    assert len(thr) <= 0.05 * len(outcomes), f"{len(thr)} of {len(outcomes)} throttled while instance room existed"
    # Scale in under a light load (~20 invokes/s): back to the minimum, nothing fails.
    light = ch.ClosedLoad(lam, name, {"op": "noop"}, threads=1, max_seconds=60, max_invokes=100_000,
                          pause=0.05).start()
    try:
        h.poll(lambda: (len(ch.ready_envs(ch.version_status(endpoint, name))),
                        len(ch.provider_status(endpoint, cp)["Instances"])),
               lambda x: x == (1, 1), "the version and its provider to scale back in to 1", 55)
    finally:
        light_out = light.stop()
    failed = [o for o in light_out if o.kind != "ok"]
    assert failed == [], f"{len(failed)} of {len(light_out)} invokes failed during scale-in: {failed[:3]}"


# --------------------------------------------------------------------------------------
# Failures and rollouts
# --------------------------------------------------------------------------------------


def test_killed_agent_under_load_is_replaced_and_the_version_stays_active(lam, endpoint, res):
    cp = res.cp()
    name = res.function(cp, concurrency=4, timeout=10)
    publish(lam, endpoint, name)
    before = ch.provider_status(endpoint, cp)["Instances"]
    assert len(before) == 3, before
    victim = before[0]
    load = ch.ClosedLoad(lam, name, {"op": "sleep", "ms": 100}, threads=6, max_seconds=25, max_invokes=5000).start()
    states = []
    try:
        time.sleep(1.5)
        killed_at = time.monotonic()
        import os
        import signal
        os.kill(ch.agent_pid(victim["InstanceId"]), signal.SIGKILL)

        def replaced():
            cfg = lam.get_function_configuration(FunctionName=name, Qualifier=Q)
            states.append(cfg["State"])
            vs = ch.version_status(endpoint, name)
            envs = ch.ready_envs(vs)
            return envs

        envs = h.poll(replaced, lambda es: len(es) == 3 and victim["InstanceId"] not in {e["InstanceId"] for e in es},
                      "the lost environment to be replaced", 20)
        replaced_after = time.monotonic() - killed_at
        # Keep the load on for a while after the replacement.
        time.sleep(max(0.0, killed_at + 7 - time.monotonic()))
    finally:
        outcomes = load.stop()
    assert {e["Zone"] for e in envs} == set(dp.ZONES), envs
    assert set(states) == {"Active"}, states
    errors = [o for o in outcomes if o.kind == "error"]
    for o in errors:
        # Only invokes in flight on the killed instance may fail, with a clear error, and only
        # around the kill.
        assert "ServiceException" in o.detail and "did not answer" in o.detail, o
        assert killed_at - 0.5 <= o.started + o.latency <= killed_at + 5, o
    late = [o for o in outcomes if o.started >= killed_at + 5]
    assert late and all(o.kind == "ok" for o in late), [o for o in late if o.kind != "ok"][:3]
    print(f"kill -9: {len(outcomes)} invokes, {len(errors)} failed in flight, "
          f"{sum(o.kind == 'throttle' for o in outcomes)} throttled, replaced after {replaced_after:.2f}s")
    after = ch.provider_status(endpoint, cp)["Instances"]
    assert victim["InstanceId"] not in {i["InstanceId"] for i in after}, after


def test_republish_under_concurrent_load_fails_nothing(lam, endpoint, res):
    cp = res.cp()
    name = res.function(cp, concurrency=4, timeout=10, variables={"LAMBDA_GEN": "one"})
    publish(lam, endpoint, name)
    load = ch.ClosedLoad(lam, name, {"op": "env"}, threads=6, max_seconds=40, max_invokes=20000).start()
    try:
        time.sleep(1.0)
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"LAMBDA_GEN": "two"}})
        h.wait_function_settled(lam, name)
        lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")

        def gens():
            outs = load.snapshot()[-12:]
            return [o.detail.get("env", {}).get("LAMBDA_GEN") if o.kind == "ok" and isinstance(o.detail, dict) else o.kind
                    for o in outs]

        h.poll(gens, lambda g: len(g) == 12 and all(x == "two" for x in g), "the new publish to serve", 30)
    finally:
        outcomes = load.stop()
    failed = [o for o in outcomes if o.kind != "ok"]
    print(f"republish under load: {len(outcomes)} invokes, {len(failed)} not ok")
    assert failed == [], failed[:5]


# --------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------


def test_status_document_has_the_documented_shape(lam, endpoint, res):
    cp = res.cp()
    name = res.function(cp)
    publish(lam, endpoint, name)
    doc = ch.status(endpoint)
    assert doc["DataPlane"] is True
    assert set(doc["Host"]) >= {"VCpuScale", "MaxVCpus", "VCpusInUse"}
    assert doc["Host"]["VCpuScale"] == 0.25
    prov = ch.provider_status(endpoint, cp)
    assert set(prov) >= {"Name", "Arn", "State", "Architecture", "Zones", "MaxVCpuCount", "VCpus", "MemoryMiB",
                         "AllocatedVCpus", "AllocatedMemoryMiB", "LaunchError", "Instances"}
    for i in prov["Instances"]:
        assert set(i) >= {"InstanceId", "InstanceType", "Zone", "VCpus", "MemoryMiB", "State", "CpuUtilization",
                          "Environments", "LaunchedAt"}
    vs = ch.version_status(endpoint, name)
    assert set(vs) >= {"FunctionName", "Version", "FunctionArn", "CapacityProvider", "State", "StateReasonCode",
                       "LastUpdateStatus", "MinExecutionEnvironments", "MaxExecutionEnvironments",
                       "DesiredExecutionEnvironments", "CpuUtilization", "ConcurrencySaturation", "Throttles",
                       "Environments"}
    assert set(vs["Throttles"]) == {"Total", "Concurrency", "CPU", "Memory", "Disk"}
    for e in vs["Environments"]:
        assert set(e) >= {"EnvironmentId", "InstanceId", "Zone", "State", "MaxConcurrency", "InFlight",
                          "CpuUtilization", "MemoryBytes"}
    unsigned = h.raw_request(endpoint, "GET", "/fleetfn/v1/status", sign=False)
    assert unsigned.status_code == 403, unsigned.text


def test_host_budget_exhaustion_is_reported_and_retried(server_factory):
    # A host budget of 4 virtual vCPUs holds two c7i.large: the third launch fails with
    # InsufficientInstanceCapacity, the provider reports it, and the publish keeps waiting
    # (retried with backoff) instead of failing.
    srv = server_factory("budget", ["--max-local-vcpus", "4", "--vcpu-scale", "0.25"])
    lam = dp_client(srv.endpoint)
    r = Resources(lam)
    try:
        cp = r.cp()
        name = r.function(cp)
        dp.publish(lam, name, "rust")
        prov = h.poll(lambda: ch.provider_status(srv.endpoint, cp), lambda p: p["LaunchError"] is not None,
                      "the provider to report the failed launch", 30)
        assert "InsufficientInstanceCapacity" in prov["LaunchError"]["Message"], prov
        assert len(prov["Instances"]) == 2, prov
        cfg = lam.get_function_configuration(FunctionName=name, Qualifier=Q)
        assert cfg["State"] == "Pending", cfg
        assert ch.status(srv.endpoint)["Host"]["VCpusInUse"] == 4
    finally:
        r.close()
