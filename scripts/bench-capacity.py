#!/usr/bin/env python3
"""Capacity benchmarks (loopback only, every phase bounded in time):

1. throttle: a version with fixed capacity (Min=Max=1, 4 concurrent 50 ms invokes) driven by
   fleetfn-bench at 2x its capacity (c=8, closed loop): p50/p99 of the 429 answers and of the
   accepted invokes, against the same version unloaded (c=4).
2. doubling: a version (Min=2, Max=20, 4 concurrent 100 ms invokes each) under a steady closed
   loop of 6 clients, then 12: seconds from the doubling until the last throttle, and until the
   new environments serve (Ready count reaches its new level).

Usage: scripts/bench-capacity.py [--release-dir DIR]   (DIR holds fleetfn, fleetfn-bench and
fleetfn-testfn built with --release; default $CARGO_TARGET_DIR/release). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

KEY, SECRET, REGION = "AKIDBENCHBENCHBENCH0", "benchsecretbenchsecretbenchsecret0000000", "us-east-1"
ZONES = ["subnet-a", "subnet-b", "subnet-c"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(endpoint):
    return boto3.client("lambda", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET,
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1},
                                      max_pool_connections=64, read_timeout=60))


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def make_function(lam, testfn: Path, cp_arn: str, concurrency: int) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, testfn.read_bytes())
    name = f"bench-{time.monotonic_ns()}"
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="bootstrap",
                        Role="arn:aws:iam::000000000000:role/fn", Code={"ZipFile": buf.getvalue()},
                        MemorySize=2048, Timeout=10,
                        CapacityProviderConfig={"LambdaManagedInstancesCapacityProviderConfig": {
                            "CapacityProviderArn": cp_arn,
                            "PerExecutionEnvironmentMaxConcurrency": concurrency}})
    wait(lambda: lam.get_function_configuration(FunctionName=name)["State"] != "Pending", 30, "create")
    lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    wait(lambda: lam.get_function_configuration(FunctionName=name, Qualifier="$LATEST.PUBLISHED")["State"] == "Active",
         60, "publish")
    return name


def scale(lam, name, lo, hi):
    lam.put_function_scaling_config(FunctionName=name, Qualifier="$LATEST.PUBLISHED",
                                    FunctionScalingConfig={"MinExecutionEnvironments": lo,
                                                           "MaxExecutionEnvironments": hi})


def status(endpoint):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    import urllib.request
    req = AWSRequest(method="GET", url=f"{endpoint}/fleetfn/v1/status")
    SigV4Auth(Credentials(KEY, SECRET), "lambda", REGION).add_auth(req)
    r = urllib.request.Request(req.url, headers=dict(req.headers))
    return json.load(urllib.request.urlopen(r, timeout=10))


def ready_count(endpoint, name):
    for f in status(endpoint)["Functions"]:
        if f["FunctionName"] == name:
            return sum(1 for e in f["Environments"] if e["State"] == "Ready")
    return 0


def bench(bin_dir, endpoint, name, payload, concurrency, requests, seconds):
    out = subprocess.run(
        [str(bin_dir / "fleetfn-bench"), "load", "--endpoint", endpoint.removeprefix("http://"), "--function", name,
         "--payload", payload, "--concurrency", str(concurrency),
         "--requests", str(requests), "--warmup", "20", "--max-seconds", str(seconds)],
        env={**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET},
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    return json.loads(out.stdout)


def throttle_bench(lam, endpoint, bin_dir, testfn, cp_arn):
    name = make_function(lam, testfn, cp_arn, concurrency=4)
    scale(lam, name, 1, 1)
    wait(lambda: ready_count(endpoint, name) == 1 and len(
        [f for f in status(endpoint)["Functions"] if f["FunctionName"] == name][0]["Environments"]) == 1, 30, "1 env")
    payload = json.dumps({"op": "sleep", "ms": 50})
    unloaded = bench(bin_dir, endpoint, name, payload, 4, 400, 30)
    overload = bench(bin_dir, endpoint, name, payload, 8, 20000, 10)
    return {"unloaded_c4": unloaded, "overload_c8": overload}


def doubling_bench(lam, endpoint, testfn, cp_arn):
    name = make_function(lam, testfn, cp_arn, concurrency=4)
    scale(lam, name, 2, 20)
    wait(lambda: ready_count(endpoint, name) >= 2, 30, "2 envs")
    events = []
    lock = threading.Lock()
    halt = threading.Event()
    deadline = time.monotonic() + 60
    c = client(endpoint)

    def loop():
        while not halt.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            try:
                c.invoke(FunctionName=name, Qualifier="$LATEST.PUBLISHED",
                         Payload=json.dumps({"op": "sleep", "ms": 100}))
                kind = "ok"
            except ClientError as e:
                kind = e.response["Error"]["Code"]
            with lock:
                events.append((t, kind))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(10)  # steady state at 6 clients (75 % of 2 x 4)
    before = ready_count(endpoint, name)
    t0 = time.monotonic()
    more = [threading.Thread(target=loop, daemon=True) for _ in range(6)]
    for t in more:
        t.start()
    ready_at = None
    while time.monotonic() < t0 + 20:
        n = ready_count(endpoint, name)
        if ready_at is None and n >= 4:
            ready_at = time.monotonic() - t0
        time.sleep(0.05)
    halt.set()
    for t in threads + more:
        t.join(timeout=30)
    after = [(t, k) for t, k in events if t >= t0]
    throttles = [t for t, k in after if k == "TooManyRequestsException"]
    return {
        "ready_before": before,
        "ready_after": ready_count(endpoint, name),
        "seconds_to_new_envs_ready": ready_at,
        "seconds_to_last_throttle": (max(throttles) - t0) if throttles else 0.0,
        "throttled_after_doubling": len(throttles),
        "invokes_after_doubling": len(after),
        "errors": sum(1 for _, k in events if k not in ("ok", "TooManyRequestsException")),
    }


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/fleetfn-target"))
    ap.add_argument("--release-dir", default=f"{target}/release")
    args = ap.parse_args()
    bin_dir = Path(args.release_dir)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "FLEETFN_ACCESS_KEY_ID": KEY, "FLEETFN_SECRET_ACCESS_KEY": SECRET, "FLEETFN_LOG": "warn"}
        srv = subprocess.Popen([str(bin_dir / "fleetfn"), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                                "--vcpu-scale", "0.25", "--max-local-vcpus", "256"],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sys.stderr)
        try:
            import urllib.request
            wait(lambda: _ok(urllib.request, f"{endpoint}/fleetfn/health"), 30, "server")
            lam = client(endpoint)
            lam.create_capacity_provider(
                CapacityProviderName="bench", VpcConfig={"SubnetIds": ZONES, "SecurityGroupIds": []},
                PermissionsConfig={"CapacityProviderOperatorRoleArn": "arn:aws:iam::000000000000:role/op"})
            wait(lambda: lam.get_capacity_provider(CapacityProviderName="bench")["CapacityProvider"]["State"] == "Active",
                 30, "provider")
            cp_arn = f"arn:aws:lambda:{REGION}:000000000000:capacity-provider:bench"
            testfn = bin_dir / "fleetfn-testfn"
            out = {"throttle": throttle_bench(lam, endpoint, bin_dir, testfn, cp_arn),
                   "doubling": doubling_bench(lam, endpoint, testfn, cp_arn)}
            print(json.dumps(out, indent=1))
        finally:
            srv.terminate()
            srv.wait(timeout=30)


def _ok(urlreq, url):
    try:
        return urlreq.urlopen(url, timeout=1).status == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
