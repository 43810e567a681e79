#!/usr/bin/env python3
"""Cluster data-plane benchmarks: one `fleetfn server` on a throwaway PostgreSQL, agents that
joined it, everything on this host (bounded; needs root for the network namespaces).

1. invoke: p50/p99 of a no-op Rust invoke (fleetfn-testfn `echo`, one environment of 64
   concurrent invokes) through the server to an agent in a network namespace of its own (a veth
   on a test bridge, the server listening on the bridge's address) vs to an agent on loopback;
   `fleetfn-bench load` closed loop at c=1, c=8 and c=32, alternating the two, ROUNDS times
   each, with the server's and that agent's CPU per invoke (/proc, the function excluded). The
   client reaches the server at the bridge's address in both, so only the server → agent hop
   differs.
2. join: a version waits for capacity in a zone no agent serves; an agent of that zone starts
   (`fleetfn agent --join`, in a namespace of its own); seconds from its start until it has
   joined (serves), and until the version's environment on it is Ready. JOINS rounds.

Usage: sudo scripts/bench-cluster.py [--bin-dir DIR] [--rounds N] [--joins N]
(default: $CARGO_TARGET_DIR's release build, else the debug one). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fleetfn_testkit import api as h  # noqa: E402
from fleetfn_testkit import netns, postgres  # noqa: E402
from fleetfn_testkit.agents import Agent, create_token  # noqa: E402
from fleetfn_testkit.dataplane import set_scaling  # noqa: E402
from fleetfn_testkit.server import FleetfnServer  # noqa: E402

LIMIT = 60.0  # seconds any one wait may take
SIZE = ["--vcpus", "2", "--memory-mib", "4096"]


def function_on(lam, zone: str, testfn: Path, wait_active: bool = True, concurrency: int = 8) -> str:
    """A capacity provider over `zone` and a fleetfn-testfn function on it, published, one
    environment (`concurrency` invokes at a time); returns its name."""
    cp = h.create_active_cp(lam, h.uniq("bench"), VpcConfig={"SubnetIds": [zone], "SecurityGroupIds": h.SECURITY_GROUPS},
                            InstanceRequirements={"Architectures": ["x86_64"], "AllowedInstanceTypes": ["c7i.large"]})
    name = h.uniq("fn")
    zip_bytes = h.make_zip([("bootstrap", testfn.read_bytes(), 0o755)])
    lam.create_function(**h.function_request(
        name, None, runtime="provided.al2023", zip_bytes=zip_bytes,
        CapacityProviderConfig=h.lmi_config(cp["CapacityProviderArn"], PerExecutionEnvironmentMaxConcurrency=concurrency)))
    h.wait_function_settled(lam, name)
    # As $LATEST.PUBLISHED, the qualifier fleetfn-bench invokes.
    lam.publish_version(FunctionName=name, PublishTo="LATEST_PUBLISHED")
    set_scaling(lam, name, "$LATEST.PUBLISHED", 1, 1)
    if wait_active:
        h.poll(lambda: lam.get_function(FunctionName=name, Qualifier="$LATEST.PUBLISHED")["Configuration"]["State"],
               lambda s: s == "Active", f"{name} Active", timeout=LIMIT)
    return name


def ready_in(endpoint: str, name: str) -> bool:
    doc = h.raw_request(endpoint, "GET", "/fleetfn/v1/environments", timeout=10.0).json()
    return any(e["FunctionName"] == name and e["State"] == "Ready" for e in doc["Environments"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` itself (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(bin_dir: Path, endpoint: str, name: str, concurrency: int, requests: int, pids: tuple[int, int]) -> dict:
    before = [cpu_seconds(p) for p in pids]
    out = subprocess.run(
        [str(bin_dir / "fleetfn-bench"), "load", "--endpoint", endpoint.removeprefix("http://"), "--function", name,
         "--payload", '{"op": "echo"}', "--concurrency", str(concurrency), "--requests", str(requests),
         "--warmup", "200", "--max-seconds", "60"],
        env={**os.environ, "AWS_ACCESS_KEY_ID": h.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": h.SECRET_KEY},
        capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"fleetfn-bench load failed: {out.stderr}")
    doc = json.loads(out.stdout)
    # The warm-up's invokes count too: the CPU is divided by every invoke the server answered.
    served = doc["count"] + 200
    server_us, agent_us = ((cpu_seconds(p) - b) * 1e6 / served for p, b in zip(pids, before))
    doc["server_cpu_us_per_invoke"], doc["agent_cpu_us_per_invoke"] = round(server_us, 1), round(agent_us, 1)
    # Throttles (429, the environment's admission) are counted, anything else is a failure.
    assert set(doc["status_codes"]) <= {"200", "429"}, doc["status_codes"]
    return doc


def main() -> None:
    ap = argparse.ArgumentParser()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/fleetfn-target")
    default = target / "release"
    ap.add_argument("--bin-dir", type=Path, default=default if (default / "fleetfn").exists() else target / "debug")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--joins", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    if why := postgres.missing():
        raise SystemExit(f"needs PostgreSQL: {why}")
    binary, testfn = args.bin_dir / "fleetfn", args.bin_dir / "fleetfn-testfn"
    pg = postgres.TestPostgres()
    net = netns.TestNet()
    agents: list[Agent] = []
    srv = None
    try:
        with tempfile.TemporaryDirectory(prefix="fleetfn-bench-cluster-") as tmp:
            base = Path(tmp)
            srv = FleetfnServer(binary, base / "data", base / "logs", name="a", command="server",
                                store_url=pg.database_for(base / "db"), data_plane=True,
                                extra_args=["--metrics-listen", "off"], host=net.gateway).start()
            _, _, token = create_token(binary, srv, base)
            lam = h.make_client(srv.endpoint)
            agents.append(Agent(binary, srv.endpoint, base / "agent-ns", token, "subnet-ns", SIZE, host=net.host()))
            agents.append(Agent(binary, srv.endpoint, base / "agent-lo", token, "subnet-lo", SIZE))
            for a in agents:
                a.wait_listening()
            names = {"netns": function_on(lam, "subnet-ns", testfn, concurrency=64),
                     "loopback": function_on(lam, "subnet-lo", testfn, concurrency=64)}
            pids = {"netns": (srv.proc.pid, agents[0].proc.pid), "loopback": (srv.proc.pid, agents[1].proc.pid)}
            for name in names.values():
                h.poll(lambda n=name: ready_in(srv.endpoint, n), bool, f"{name} Ready", timeout=LIMIT)
            levels = {"c1": (1, 3000), "c8": (8, 8000), "c32": (32, 30000)}
            runs: dict[str, dict[str, list[dict]]] = {k: {c: [] for c in levels} for k in names}
            for _ in range(args.rounds):
                for where, name in names.items():
                    for c, (concurrency, requests) in levels.items():
                        runs[where][c].append(load(args.bin_dir, srv.endpoint, name, concurrency, requests, pids[where]))
            invoke = {
                where: {
                    c: {"p50_us": [d["p50_us"] for d in docs], "p99_us": [d["p99_us"] for d in docs],
                        "req_per_s": [round(d["throughput_rps"]) for d in docs],
                        "server_cpu_us_per_invoke": [d["server_cpu_us_per_invoke"] for d in docs],
                        "agent_cpu_us_per_invoke": [d["agent_cpu_us_per_invoke"] for d in docs],
                        "throttled": [d["status_codes"].get("429", 0) for d in docs]}
                    for c, docs in by_c.items()}
                for where, by_c in runs.items()}

            joins = []
            for i in range(args.joins):
                zone = f"subnet-join{i}"
                name = function_on(lam, zone, testfn, wait_active=False)
                time.sleep(2)  # the version is waiting: its launches fail for want of an agent
                t0 = time.monotonic()
                agent = Agent(binary, srv.endpoint, base / f"agent-join{i}", token, zone, SIZE, host=net.host())
                agents.append(agent)
                agent.wait_listening()
                joined = time.monotonic() - t0
                while not ready_in(srv.endpoint, name):
                    if time.monotonic() - t0 > LIMIT:
                        raise SystemExit(f"no Ready environment on the joined agent within {LIMIT} s\n{srv.logs(40)}")
                    time.sleep(0.02)
                joins.append({"joined_s": round(joined, 3), "first_ready_s": round(time.monotonic() - t0, 3)})
    finally:
        for a in agents:
            a.stop()
        if srv is not None:
            srv.stop()
        net.close()
        pg.stop()
    print(json.dumps({"bin_dir": str(args.bin_dir), "invoke": invoke, "join_to_first_ready": joins,
                      "join_to_first_ready_median_s": statistics.median(j["first_ready_s"] for j in joins)},
                     indent=2))


if __name__ == "__main__":
    main()
