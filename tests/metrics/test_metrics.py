"""Metrics (`GET /metrics` on `--metrics-listen`): Prometheus and OpenMetrics text that the
`prometheus_client` parsers read, named after LMI's CloudWatch metrics (docs/METRICS.md), and
counters that hold exactly the invokes, function errors and throttles a test made.

lmi-behaviour.md §5: Invocations, Errors, Throttles and the one-hot ConcurrencyThrottles /
CPUThrottles / MemoryThrottles / DiskThrottles per version; capacity-provider CPU and memory
utilization, vCPU and memory allocated and available per instance type; execution environment
concurrency and its limit.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from fleetfn_testkit import api as h
from fleetfn_testkit import capacity as ch
from fleetfn_testkit import dataplane as dp

Q = ch.QUALIFIER
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
MIB = 1 << 20

# Every family docs/METRICS.md declares, by the name the parsers give it (counters without
# `_total`) and its type.
FAMILIES = {
    "fleetfn_invocations": "counter",
    "fleetfn_errors": "counter",
    "fleetfn_throttles": "counter",
    "fleetfn_concurrency_throttles": "counter",
    "fleetfn_cpu_throttles": "counter",
    "fleetfn_memory_throttles": "counter",
    "fleetfn_disk_throttles": "counter",
    "fleetfn_duration_seconds": "histogram",
    "fleetfn_init_duration_seconds": "histogram",
    "fleetfn_execution_environments": "gauge",
    "fleetfn_execution_environment_concurrency": "gauge",
    "fleetfn_execution_environment_concurrency_limit": "gauge",
    "fleetfn_execution_environment_cpu_utilization": "gauge",
    "fleetfn_execution_environment_memory_utilization": "gauge",
    "fleetfn_execution_environment_cpu_seconds": "counter",
    "fleetfn_execution_environment_network_receive_bytes": "counter",
    "fleetfn_execution_environment_network_transmit_bytes": "counter",
    "fleetfn_execution_environment_memory_max_bytes": "gauge",
    "fleetfn_execution_environment_memory_size_bytes": "gauge",
    "fleetfn_execution_environment_tmp_used_bytes": "gauge",
    "fleetfn_execution_environment_tmp_size_bytes": "gauge",
    "fleetfn_scaler_desired_environments": "gauge",
    "fleetfn_scaler_actual_environments": "gauge",
    "fleetfn_capacity_provider_cpu_utilization": "gauge",
    "fleetfn_capacity_provider_memory_utilization": "gauge",
    "fleetfn_capacity_provider_vcpus_allocated": "gauge",
    "fleetfn_capacity_provider_vcpus_available": "gauge",
    "fleetfn_capacity_provider_memory_allocated_bytes": "gauge",
    "fleetfn_capacity_provider_memory_available_bytes": "gauge",
    "fleetfn_instances": "gauge",
    "fleetfn_scaler_desired_instances": "gauge",
    "fleetfn_scaler_actual_instances": "gauge",
    "fleetfn_router_tries": "counter",
}


class Scrape:
    """One scrape, parsed: samples by name and labels."""

    def __init__(self, families):
        self.families = {f.name: f for f in families}
        self.samples = [s for f in families for s in f.samples]

    def value(self, name: str, **labels) -> float | None:
        """The sample with exactly these labels (`le` aside for buckets); None when absent."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None

    def total(self, name: str, **labels) -> float:
        """Sum of the samples whose labels include these."""
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    def series(self, name: str, **labels) -> list:
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def scrape(url: str, openmetrics: bool = True) -> Scrape:
    """GET /metrics without any credentials, parsed by the matching prometheus_client parser."""
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    resp = requests.get(url, headers=headers, timeout=10)
    assert resp.status_code == 200, f"GET {url} -> {resp.status_code}: {resp.text[:300]}"
    ctype = resp.headers["content-type"]
    if openmetrics:
        assert ctype == OPENMETRICS, ctype
        return Scrape(list(parse_openmetrics(resp.text)))
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return Scrape(list(parse_prometheus(resp.text)))


def wait_scrape(url: str, until, desc: str, timeout: float = 30.0) -> Scrape:
    """Scrape until `until(scrape)` holds (the gauges are refreshed once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        s = scrape(url)
        if until(s):
            return s
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {desc}; last scrape: "
                        + "; ".join(f"{x.name}{x.labels}={x.value}" for x in s.samples
                                    if "bucket" not in x.name)[:4000])
        time.sleep(0.2)


def throttled(lam, name: str) -> ClientError:
    try:
        res = dp.invoke(lam, name, {"op": "noop"})
    except ClientError as err:
        assert h.error_code(err) == "TooManyRequestsException", err.response
        return err
    pytest.fail(f"expected a throttle, got {res}")


def test_counters_hold_exactly_the_invokes_errors_and_throttles_made(lam, endpoint, metrics_url, res):
    cp = res.cp()
    name = res.function(cp, concurrency=2, timeout=30)
    dp.publish_active(lam, endpoint, name, "rust")
    dp.set_scaling(lam, name, Q, 1, 1)
    dp.wait_single_ready(endpoint, name, Q)
    v = {"function": name, "version": Q}

    before = wait_scrape(metrics_url, lambda s: s.value("fleetfn_invocations_total", **v) is not None,
                         f"the series of {name}")
    for counter in ("fleetfn_invocations_total", "fleetfn_errors_total", "fleetfn_throttles_total",
                    "fleetfn_concurrency_throttles_total", "fleetfn_cpu_throttles_total",
                    "fleetfn_memory_throttles_total", "fleetfn_disk_throttles_total",
                    "fleetfn_duration_seconds_count"):
        assert before.value(counter, **v) == 0, counter
    tries_before = {o: before.value("fleetfn_router_tries_total", outcome=o)
                    for o in ("done", "rejected", "gone", "unreachable", "failed", "invalid")}

    # The known sequence: 5 successes, 2 function errors, then both slots held by long invokes
    # while 3 more are throttled for concurrency, then the long invokes complete. The test counts
    # what its client saw: a back-to-back invoke can also be refused by the agent when, at that
    # instant, no runtime worker is parked on /next (a Concurrency throttle after one agent try).
    seen = {"ok": 0, "error": 0, "refused": 0}

    def call(event: dict) -> str:
        try:
            r = dp.invoke(lam, name, event)
        except ClientError as err:
            assert h.error_code(err) == "TooManyRequestsException", err.response
            assert "(Concurrency throttle)" in err.response["Error"]["Message"], err.response
            seen["refused"] += 1
            return "refused"
        if r.function_error:
            dp.assert_lambda_error(r, "TestFnError")
            seen["error"] += 1
            return "error"
        assert r.status == 200, r
        seen["ok"] += 1
        return "ok"

    for kind, event, n in (("ok", {"op": "noop"}, 5), ("error", {"op": "error"}, 2)):
        for _ in range(30):
            if seen[kind] == n:
                break
            call(event)
        assert seen[kind] == n, seen
    hold = dp.Batch(lam, name, [{"op": "sleep", "ms": 3000}] * 2)
    dp.wait_in_flight(endpoint, name, Q, 2, hold)
    for _ in range(3):
        err = throttled(lam, name)
        assert "(Concurrency throttle)" in err.response["Error"]["Message"], err.response
    for held in hold.results():
        assert not isinstance(held, ClientError) and held.status == 200 and held.function_error is None, held
    invocations = seen["ok"] + seen["error"] + 2
    throttles = seen["refused"] + 3
    assert invocations == 9

    after = scrape(metrics_url)
    assert after.value("fleetfn_invocations_total", **v) == invocations
    assert after.value("fleetfn_errors_total", **v) == 2
    assert after.value("fleetfn_throttles_total", **v) == throttles
    assert after.value("fleetfn_concurrency_throttles_total", **v) == throttles
    for reason in ("cpu", "memory", "disk"):
        assert after.value(f"fleetfn_{reason}_throttles_total", **v) == 0, reason
    by_reason = sum(after.value(f"fleetfn_{r}_throttles_total", **v)
                    for r in ("concurrency", "cpu", "memory", "disk"))
    assert after.value("fleetfn_throttles_total", **v) == by_reason
    # One duration observation per invocation; the held invokes took 3 s each.
    assert after.value("fleetfn_duration_seconds_count", **v) == invocations
    assert after.value("fleetfn_duration_seconds_sum", **v) >= 6.0
    assert after.value("fleetfn_duration_seconds_bucket", **v, le="+Inf") == invocations
    assert after.value("fleetfn_duration_seconds_bucket", **v, le="2.5") == invocations - 2
    # Each invocation was one agent round trip, each refusal by the agent one more; a throttle
    # with every slot taken makes none.
    tries = {o: after.value("fleetfn_router_tries_total", outcome=o) - b for o, b in tries_before.items()}
    assert tries == {"done": invocations, "rejected": seen["refused"], "gone": 0, "unreachable": 0,
                     "failed": 0, "invalid": 0}, (tries, seen)
    # Three environments started at publish (LMI's default minimum), each observed once at Ready.
    assert after.value("fleetfn_init_duration_seconds_count", **v) == 3
    assert after.value("fleetfn_init_duration_seconds_sum", **v) > 0
    # The status document counts the same.
    vs = ch.version_status(endpoint, name)
    assert (vs["Invocations"], vs["Errors"], vs["Throttles"]["Total"]) == (invocations, 2, throttles), vs

    # The same text as Prometheus text 0.0.4 (no Accept header), read by the plain parser.
    plain = scrape(metrics_url, openmetrics=False)
    assert plain.value("fleetfn_invocations_total", **v) == invocations
    assert plain.value("fleetfn_throttles_total", **v) == throttles
    assert plain.value("fleetfn_duration_seconds_count", **v) == invocations


def test_gauges_show_the_environment_instance_and_scaler(lam, endpoint, metrics_url, res):
    cp = res.cp()
    name = res.function(cp, concurrency=1, timeout=30)
    dp.publish_active(lam, endpoint, name, "rust")
    dp.set_scaling(lam, name, Q, 1, 1)
    dp.wait_single_ready(endpoint, name, Q)
    v = {"function": name, "version": Q}
    cpl = {"capacity_provider": cp}

    # After the scale-in to one environment, the two emptied instances are terminated
    # (--idle-instance-after 2) and everything settles at one.
    def settled(s: Scrape) -> bool:
        return (s.value("fleetfn_execution_environments", **v, state="Ready") == 1
                and s.total("fleetfn_execution_environments", **v) == 1
                and s.value("fleetfn_scaler_desired_environments", **v) == 1
                and s.value("fleetfn_scaler_actual_environments", **v) == 1
                and s.total("fleetfn_instances", **cpl) == 1
                and s.value("fleetfn_scaler_desired_instances", **cpl) == 1
                and s.value("fleetfn_scaler_actual_instances", **cpl) == 1)

    s = wait_scrape(metrics_url, settled, f"one Ready environment and one instance of {name}", timeout=60)
    for state in ("Starting", "Draining", "Failed", "Exited"):
        assert s.value("fleetfn_execution_environments", **v, state=state) == 0, state
    assert s.value("fleetfn_execution_environment_concurrency_limit", **v) == 1
    assert s.value("fleetfn_execution_environment_concurrency", **v) == 0
    util = s.value("fleetfn_execution_environment_memory_utilization", **v)
    assert util is not None and 0 <= util < 1, util

    # The instance: where the status document says it is.
    prov = ch.provider_status(endpoint, cp)
    assert len(prov["Instances"]) == 1, prov["Instances"]
    inst = prov["Instances"][0]
    assert s.value("fleetfn_instances", capacity_provider=cp, instance_type=inst["InstanceType"],
                   zone=inst["Zone"], state="running") == 1
    # A 2048 MB / 1 vCPU environment on a c7i.large (2 vCPUs and 4 GiB, less the instance's own
    # 1 vCPU and 1 GiB): all its vCPU is allocated, 1 GiB of memory is left.
    t = {"capacity_provider": cp, "instance_type": inst["InstanceType"]}
    assert inst["InstanceType"] == "c7i.large"
    assert s.value("fleetfn_capacity_provider_vcpus_allocated", **t) == 1.0
    assert s.value("fleetfn_capacity_provider_vcpus_available", **t) == 0.0
    assert s.value("fleetfn_capacity_provider_memory_allocated_bytes", **t) == 2048 * MIB
    assert s.value("fleetfn_capacity_provider_memory_available_bytes", **t) == 1024 * MIB
    for g in ("cpu", "memory"):
        u = s.value(f"fleetfn_capacity_provider_{g}_utilization", **t)
        assert u is not None and u >= 0, (g, u)

    # While an invoke holds the one slot, the concurrency gauge shows it.
    hold = dp.Batch(lam, name, [{"op": "sleep", "ms": 3000}])
    dp.wait_in_flight(endpoint, name, Q, 1, hold)
    wait_scrape(metrics_url, lambda x: x.value("fleetfn_execution_environment_concurrency", **v) == 1,
                "the concurrency gauge to show the invoke in flight", timeout=10)
    assert hold.results()[0].status == 200

    # Every declared family is there, with its type; nothing undeclared.
    fams = {n: f.type for n, f in s.families.items() if n.startswith("fleetfn_")}
    assert fams == FAMILIES, set(fams.items()) ^ set(FAMILIES.items())


def test_a_deleted_functions_series_go_away(lam, endpoint, metrics_url, res):
    cp = res.cp()
    name = res.function(cp, concurrency=1)
    dp.publish_active(lam, endpoint, name, "rust")
    dp.invoke_ok(lam, name, {"op": "noop"})
    v = {"function": name, "version": Q}
    assert scrape(metrics_url).value("fleetfn_invocations_total", **v) == 1
    lam.delete_function(FunctionName=name)
    wait_scrape(metrics_url, lambda s: not [x for x in s.samples if x.labels.get("function") == name],
                f"every series of {name} to go away after its deletion")


def test_metrics_need_no_credentials_and_are_not_on_the_api_port(endpoint, metrics_url):
    resp = requests.get(metrics_url, timeout=10)
    assert resp.status_code == 200 and "fleetfn_router_tries_total" in resp.text, resp.status_code
    # The Lambda API keeps requiring SigV4 and has no /metrics.
    assert requests.get(endpoint + "/metrics", timeout=10).status_code != 200
    assert requests.post(metrics_url, timeout=10).status_code == 405


# --------------------------------------------------------------------------------------
# --metrics-listen off / taken
# --------------------------------------------------------------------------------------


def socket_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes matched against /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def start_bare(fleetfn_bin: Path, tmp_path: Path, metrics_listen: str) -> tuple[subprocess.Popen, Path]:
    """`fleetfn serve --no-data-plane` on a free API port with the given --metrics-listen (and no
    function URL listener, so the API is the only other port)."""
    err = tmp_path / "stderr.log"
    env = dict(os.environ, FLEETFN_ACCESS_KEY_ID=h.ACCESS_KEY, FLEETFN_SECRET_ACCESS_KEY=h.SECRET_KEY)
    env.pop("FLEETFN_METRICS_LISTEN", None)
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            [str(fleetfn_bin), "serve", "--listen", "127.0.0.1:0", "--no-data-plane",
             "--data-dir", str(tmp_path / "data"), "--metrics-listen", metrics_listen,
             "--url-listen", "off"],
            stdout=subprocess.DEVNULL, stderr=e, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    return proc, err


def stop_bare(proc: subprocess.Popen):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_log(proc: subprocess.Popen, err: Path, pattern: str, timeout: float = 20.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, err.read_text(errors="replace"))
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"no {pattern!r} in fleetfn's output (exit status {proc.poll()}):\n{err.read_text(errors='replace')}")


def test_metrics_listen_off_serves_nothing(fleetfn_bin, tmp_path):
    proc, err = start_bare(fleetfn_bin, tmp_path, "off")
    try:
        m = wait_log(proc, err, r"serving the Lambda API on http://127\.0\.0\.1:(\d+)")
        api_port = int(m.group(1))
        assert listening_ports(proc.pid) == {api_port}
        assert "serving metrics" not in err.read_text()
    finally:
        stop_bare(proc)


def test_an_explicit_metrics_address_must_be_free(fleetfn_bin, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, err = start_bare(fleetfn_bin, tmp_path, f"127.0.0.1:{port}")
        try:
            rc = proc.wait(timeout=20)
        finally:
            stop_bare(proc)
    assert rc != 0
    assert f"binding the metrics address 127.0.0.1:{port}" in err.read_text(), err.read_text()


def test_the_metrics_address_is_printed_and_serves(fleetfn_bin, tmp_path):
    port = socket_free_port()
    proc, err = start_bare(fleetfn_bin, tmp_path, f"127.0.0.1:{port}")
    try:
        wait_log(proc, err, rf"serving metrics on http://127\.0\.0\.1:{port}/metrics")
        s = scrape(f"http://127.0.0.1:{port}/metrics")
        # No data plane: only the router's outcomes, all at zero.
        assert {x.labels["outcome"] for x in s.series("fleetfn_router_tries_total")} == {
            "done", "rejected", "gone", "unreachable", "failed", "invalid"}
    finally:
        stop_bare(proc)
