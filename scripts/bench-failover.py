#!/usr/bin/env python3
"""Cluster control-plane benchmarks (loopback and a throwaway PostgreSQL; bounded):

1. start: seconds from starting `fleetfn server` (on a migrated database) until its API answers.
2. kill: two servers; the leader is killed (-9) ROUNDS times (then started again as a follower);
   seconds from the kill until the other prints that it leads.
3. stop: the same with SIGTERM (the leader gives the lease up).

Usage: scripts/bench-failover.py [--binary PATH] [--rounds N]   (default: $CARGO_TARGET_DIR's
release build, else the debug one; 10 rounds). Needs PostgreSQL's server binaries (as
scripts/test installs them). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import requests  # noqa: E402

from fleetfn_testkit import postgres  # noqa: E402
from fleetfn_testkit.server import free_port  # noqa: E402

KEY, SECRET = "AKIDBENCHBENCHBENCH0", "benchsecretbenchsecretbenchsecret0000000"
LIMIT = 15.0  # seconds any one wait may take


class Server:
    def __init__(self, binary: Path, name: str, url: str, base: Path):
        self.name, self.binary, self.url, self.base = name, binary, url, base
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None
        self.starts = 0

    def start(self) -> float:
        """Starts it; returns the seconds until /fleetfn/health answers 200."""
        self.starts += 1
        self.port = free_port()
        self.log = self.base / f"{self.name}-{self.starts}.log"
        env = dict(os.environ, FLEETFN_ACCESS_KEY_ID=KEY, FLEETFN_SECRET_ACCESS_KEY=SECRET)
        t0 = time.monotonic()
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [str(self.binary), "server", "--listen", f"127.0.0.1:{self.port}", "--data-dir",
                 str(self.base / "data"), "--store", self.url, "--server-id", self.name,
                 "--metrics-listen", "off"],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        while time.monotonic() - t0 < LIMIT:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/fleetfn/health", timeout=1).status_code == 200:
                    return time.monotonic() - t0
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        raise SystemExit(f"{self.name} did not start:\n{self.log.read_text(errors='replace')}")

    def terms(self) -> list[int]:
        return [int(t) for t in re.findall(r": leader \(term (\d+)\)", self.log.read_text(errors="replace"))]

    def wait_term(self, term: int) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < LIMIT:
            if term in self.terms():
                return time.monotonic() - t0
            time.sleep(0.005)
        raise SystemExit(f"{self.name} did not lead term {term} within {LIMIT} s")

    def stop(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=LIMIT)
        self.proc = None


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "p50_s": round(statistics.median(xs), 3),
            "p90_s": round(xs[min(len(xs) - 1, int(0.9 * len(xs)))], 3), "max_s": round(xs[-1], 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/fleetfn-target")
    default = target / "release/fleetfn"
    ap.add_argument("--binary", type=Path, default=default if default.exists() else target / "debug/fleetfn")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    why = postgres.missing()
    if why:
        raise SystemExit(f"needs PostgreSQL: {why}")
    pg = postgres.TestPostgres()
    try:
        with tempfile.TemporaryDirectory(prefix="fleetfn-failover-") as tmp:
            base = Path(tmp)
            url = pg.database_for(base / "db")
            a, b = Server(args.binary, "a", url, base), Server(args.binary, "b", url, base)
            a.start()  # migrates the database
            a.wait_term(1)
            startup = [b.start()]
            term = 1
            results: dict[str, list[float]] = {"kill": [], "stop": []}
            for how, sig in (("kill", signal.SIGKILL), ("stop", signal.SIGTERM)):
                for _ in range(args.rounds):
                    leader, follower = (a, b) if term in a.terms() else (b, a)
                    time.sleep(1.0)  # the follower has looked at the heartbeat a few times
                    t0 = time.monotonic()
                    leader.stop(sig)
                    term += 1
                    follower.wait_term(term)
                    results[how].append(time.monotonic() - t0)
                    startup.append(leader.start())
            a.stop(signal.SIGTERM)
            b.stop(signal.SIGTERM)
    finally:
        pg.stop()
    print(json.dumps({"binary": str(args.binary), "server_start_to_api": summary(startup),
                      "takeover_after_kill_9": summary(results["kill"]),
                      "takeover_after_sigterm": summary(results["stop"])}, indent=2))


if __name__ == "__main__":
    main()
