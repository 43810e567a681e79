#!/usr/bin/env python3
"""The per-invoke cost of one subscribed Telemetry API extension.

Starts a release `fleetfn serve` (temporary data dir, its own free loopback ports, metrics and
function URL listeners off), one capacity provider and two functions on provided.al2023 running
fleetfn-testfn (`{"op":"noop"}`), each scaled to exactly one execution environment:

- `plain`: no layers;
- `telemetry`: one layer with crates/fleetfn-testext's `fleetfn-testext-telemetry` (the
  `lambda-extension` crate's telemetry processor subscribed to platform, function and extension
  records, buffering 100 ms).

Then, in alternating rounds (default 3 each, after a warm-up), it sends the same number of
invokes at the same client concurrency to one function at a time and measures over each round:

- CPU (utime + stime from /proc/<pid>/stat) of the `fleetfn serve` process and of the `fleetfn
  agent` processes under it (the platform's cost), of the extension processes (what the user's
  extension itself burns), and of the whole tree (runtimes and sandboxes too), each in µs per
  invoke;
- the client-side latency of the Invoke calls (p50 and p99, boto3 over loopback).

It checks that the extension really received a `platform.report` for the invokes (its record file,
read through /proc/<extension pid>/root/tmp). The median round of each function is reported with
the difference. Everything runs on 127.0.0.1; the script ends what it started by PID.

Usage:
  scripts/bench-telemetry.py [--bin-dir DIR] [--invokes 2000] [--concurrency 8] [--rounds 3]
  (DIR: where `fleetfn`, `fleetfn-testfn` and `fleetfn-testext-telemetry` are; default
  $CARGO_TARGET_DIR/release; build them with
  `cargo build --release --locked -p fleetfn-cli -p fleetfn-testfn -p fleetfn-testext`)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

ACCESS_KEY = "AKIAFLEETFNBENCHTELE"
SECRET_KEY = "fleetfn-bench-telemetry-secret-key-00000"
REGION = "us-east-1"
ACCOUNT = "000000000000"
CLK_TCK = os.sysconf("SC_CLK_TCK")
EXTENSION = "fleetfn-testext-telemetry"
QUALIFIER = "$LATEST.PUBLISHED"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# /proc ------------------------------------------------------------------------------------


def stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def cpu_ticks(pid: int) -> int:
    f = stat_fields(pid)
    return int(f[11]) + int(f[12]) if f else 0


def cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = stat_fields(int(d))
            if f:
                children.setdefault(int(f[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def role(pid: int, server: int) -> str:
    if pid == server:
        return "server"
    args = cmdline(pid)
    if args and Path(args[0]).name == "fleetfn" and "agent" in args[1:3]:
        return "agent"
    if args and Path(args[0]).name == EXTENSION:
        return "extension"
    return "other"


class Usage:
    """CPU ticks per role over the server's process tree; processes that appear in between count
    from zero (the environments are up before a round starts, so none should)."""

    def __init__(self, server: int):
        self.server = server

    def sample(self) -> dict[int, tuple[str, int]]:
        return {p: (role(p, self.server), cpu_ticks(p)) for p in tree(self.server)}

    @staticmethod
    def delta(a: dict, b: dict) -> dict[str, float]:
        out = {"server": 0.0, "agent": 0.0, "extension": 0.0, "other": 0.0}
        for p, (r, t) in b.items():
            out[r] += (t - a.get(p, (r, 0))[1]) / CLK_TCK
        out["platform"] = out["server"] + out["agent"]
        out["tree"] = out["platform"] + out["extension"] + out["other"]
        return out


def extension_pids(server: int) -> list[int]:
    return [p for p in tree(server) if role(p, server) == "extension"]


def extension_reports(server: int) -> int:
    """platform.report items the extension recorded (through its own root: its /tmp)."""
    n = 0
    for pid in extension_pids(server):
        path = Path(f"/proc/{pid}/root/tmp/fleetfn-testext/{EXTENSION}.jsonl")
        try:
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("kind") == "telemetry" and rec["item"].get("type") == "platform.report":
                    n += 1
        except OSError:
            pass
    return n


# The server and its functions --------------------------------------------------------------


def zip_of(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


def start_server(fleetfn: Path, base: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETFN_")}
    env.update(FLEETFN_ACCESS_KEY_ID=ACCESS_KEY, FLEETFN_SECRET_ACCESS_KEY=SECRET_KEY,
               FLEETFN_RUNTIME_DIR=str(base / "runtimes"))
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen(
        [str(fleetfn), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(base / "data"),
         "--metrics-listen", "off", "--url-listen", "off"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"fleetfn serve exited with {proc.returncode}:\n{(base / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{endpoint}/fleetfn/health", timeout=2) as r:
                if r.status == 200:
                    return proc, endpoint
        except OSError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    sys.exit("fleetfn serve did not answer /fleetfn/health within 30 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def lambda_client(endpoint: str, pool: int):
    return boto3.client("lambda", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=Config(retries={"max_attempts": 1}, read_timeout=60, max_pool_connections=pool))


def wait_for(what: str, probe, timeout: float = 180.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def environments(endpoint: str, name: str) -> list[dict]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="GET", url=f"{endpoint}/fleetfn/v1/environments")
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "lambda", REGION).add_auth(req)
    r = urllib.request.Request(req.url, headers=dict(req.headers.items()))
    with urllib.request.urlopen(r, timeout=10) as resp:
        envs = json.loads(resp.read())["Environments"]
    return [e for e in envs if e["FunctionName"] == name]


def make_function(lam, endpoint: str, cp_arn: str, name: str, code: bytes, layers: list[str],
                  concurrency: int) -> None:
    lam.create_function(
        FunctionName=name, Role=f"arn:aws:iam::{ACCOUNT}:role/fleetfn-bench", Runtime="provided.al2023",
        Handler="bootstrap", MemorySize=2048, Timeout=30, Code={"ZipFile": code}, Layers=layers,
        CapacityProviderConfig={"LambdaManagedInstancesCapacityProviderConfig": {
            "CapacityProviderArn": cp_arn, "PerExecutionEnvironmentMaxConcurrency": concurrency}})
    wait_for(f"{name} to settle",
             lambda: (lambda c: c.get("State") != "Pending" and c.get("LastUpdateStatus") != "InProgress")(
                 lam.get_function_configuration(FunctionName=name)))
    lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    state = wait_for(f"{name} to leave Pending",
                     lambda: (lambda s: s if s != "Pending" else None)(
                         lam.get_function_configuration(FunctionName=name, Qualifier=QUALIFIER).get("State")))
    if state != "Active":
        cfg = lam.get_function_configuration(FunctionName=name, Qualifier=QUALIFIER)
        sys.exit(f"{name} went to {state}: {cfg.get('StateReasonCode')}: {cfg.get('StateReason')}")
    wait_for(f"{name} to accept a scaling config", lambda: _try_scale(lam, name))
    wait_for(f"exactly one Ready environment of {name}",
             lambda: (lambda es: len([e for e in es if e["State"] == "Ready"]) == 1
                      and not any(e["State"] in ("Starting", "Draining") for e in es))(environments(endpoint, name)))


def _try_scale(lam, name: str) -> bool:
    try:
        lam.put_function_scaling_config(FunctionName=name, Qualifier=QUALIFIER, FunctionScalingConfig={
            "MinExecutionEnvironments": 1, "MaxExecutionEnvironments": 1})
        return True
    except lam.exceptions.ResourceConflictException:
        return False


# The measure ------------------------------------------------------------------------------


def invoke_many(lam, name: str, n: int, concurrency: int) -> list[float]:
    payload = b'{"op":"noop"}'

    def one(_):
        t = time.perf_counter()
        resp = lam.invoke(FunctionName=name, Payload=payload)
        resp["Payload"].read()
        if resp.get("FunctionError") or resp["StatusCode"] != 200:
            raise RuntimeError(f"invoke of {name} failed: {resp}")
        return time.perf_counter() - t

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, range(n)))


def round_of(lam, usage: Usage, name: str, n: int, concurrency: int) -> dict:
    a = usage.sample()
    t0 = time.monotonic()
    lat = invoke_many(lam, name, n, concurrency)
    elapsed = time.monotonic() - t0
    time.sleep(0.5)  # the last telemetry batch (100 ms buffering) is delivered inside the window
    d = Usage.delta(a, usage.sample())
    lat.sort()
    row = {k + "_us": v * 1e6 / n for k, v in d.items()}
    row.update(function=name, invokes=n, seconds=elapsed, rate=n / elapsed,
               p50_ms=lat[len(lat) // 2] * 1000, p99_ms=lat[int(len(lat) * 0.99)] * 1000)
    print(f"  {name:<10} {row['rate']:7.0f}/s  platform {row['platform_us']:7.1f} µs/invoke "
          f"(server {row['server_us']:6.1f}, agent {row['agent_us']:6.1f}), extension {row['extension_us']:6.1f}, "
          f"tree {row['tree_us']:7.1f}; p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms", flush=True)
    return row


def median_row(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    return {k: statistics.median(r[k] for r in rows) for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", type=Path, help="where fleetfn, fleetfn-testfn and fleetfn-testext-telemetry are")
    ap.add_argument("--invokes", type=int, default=2000, help="invokes per round (default 2000)")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads = the functions' per-environment "
                    "concurrency (default 8)")
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds per function (default 3)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    bin_dir = args.bin_dir or Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/fleetfn-target")) / "release"
    fleetfn, testfn, ext = bin_dir / "fleetfn", bin_dir / "fleetfn-testfn", bin_dir / EXTENSION
    for b in (fleetfn, testfn, ext):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} not found: cargo build --release --locked -p fleetfn-cli -p fleetfn-testfn -p fleetfn-testext")

    base = Path(tempfile.mkdtemp(prefix="fleetfn-bench-telemetry-"))
    proc = None
    rows: list[dict] = []
    try:
        proc, endpoint = start_server(fleetfn, base)
        print(f"fleetfn serve pid {proc.pid} at {endpoint} ({fleetfn})", flush=True)
        lam = lambda_client(endpoint, args.concurrency * 2)
        cp = "telemetry-bench"
        lam.create_capacity_provider(
            CapacityProviderName=cp,
            VpcConfig={"SubnetIds": ["subnet-a", "subnet-b", "subnet-c"], "SecurityGroupIds": ["sg-telemetry"]},
            PermissionsConfig={"CapacityProviderOperatorRoleArn": f"arn:aws:iam::{ACCOUNT}:role/fleetfn-operator"})
        wait_for("the capacity provider to be Active",
                 lambda: lam.get_capacity_provider(CapacityProviderName=cp)["CapacityProvider"]["State"] == "Active")
        cp_arn = lam.get_capacity_provider(CapacityProviderName=cp)["CapacityProvider"]["CapacityProviderArn"]
        layer = lam.publish_layer_version(LayerName="telemetry-bench-ext", Content={
            "ZipFile": zip_of([(f"extensions/{EXTENSION}", ext.read_bytes())])})["LayerVersionArn"]
        code = zip_of([("bootstrap", testfn.read_bytes())])
        make_function(lam, endpoint, cp_arn, "plain", code, [], args.concurrency)
        make_function(lam, endpoint, cp_arn, "telemetry", code, [layer], args.concurrency)
        if not extension_pids(proc.pid):
            sys.exit(f"no {EXTENSION} process runs under the server")
        usage = Usage(proc.pid)
        warm = max(100, args.invokes // 10)
        for name in ("plain", "telemetry"):
            invoke_many(lam, name, warm, args.concurrency)
        reports_before = extension_reports(proc.pid)
        print(f"warmed up ({warm} invokes each); measuring {args.rounds} rounds of {args.invokes} invokes "
              f"at concurrency {args.concurrency}", flush=True)
        for i in range(args.rounds):
            for name in (("plain", "telemetry") if i % 2 == 0 else ("telemetry", "plain")):
                rows.append(round_of(lam, usage, name, args.invokes, args.concurrency))
        time.sleep(1.5)
        got = extension_reports(proc.pid) - reports_before
        want = args.invokes * args.rounds
        print(f"the extension recorded {got} platform.report items for the {want} measured invokes", flush=True)
        if got < want:
            sys.exit("the extension did not get a report for every invoke: the measure is not of a working subscriber")
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(base, ignore_errors=True)

    plain = median_row([r for r in rows if r["function"] == "plain"])
    tele = median_row([r for r in rows if r["function"] == "telemetry"])
    print()
    print(f"{'median of rounds':<18} {'platform µs':>12} {'server µs':>10} {'agent µs':>9} {'extension µs':>13} "
          f"{'tree µs':>9} {'p50 ms':>7} {'p99 ms':>7} {'invokes/s':>10}")
    for label, r in (("no extension", plain), ("1 telemetry ext", tele)):
        print(f"{label:<18} {r['platform_us']:12.1f} {r['server_us']:10.1f} {r['agent_us']:9.1f} "
              f"{r['extension_us']:13.1f} {r['tree_us']:9.1f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r['rate']:10.0f}")
    print(f"{'difference':<18} {tele['platform_us'] - plain['platform_us']:+12.1f} "
          f"{tele['server_us'] - plain['server_us']:+10.1f} {tele['agent_us'] - plain['agent_us']:+9.1f} "
          f"{tele['extension_us'] - plain['extension_us']:+13.1f} {tele['tree_us'] - plain['tree_us']:+9.1f} "
          f"{tele['p50_ms'] - plain['p50_ms']:+7.2f} {tele['p99_ms'] - plain['p99_ms']:+7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rounds": rows, "plain": plain, "telemetry": tele}, indent=2) + "\n")


if __name__ == "__main__":
    main()
