#!/usr/bin/env python3
"""Instruction-count guard of the invoke hot path (not a timed test).

Builds `fleetfn-hotpath` (crates/fleetfn-bench/src/bin/hotpath.rs: the real Lambda API router with
SigV4, Invoke parsing and qualifier resolution, sending each invoke with the real agent client over
a Unix socket to a real agent in the same process, whose environment runs `fleetfn-testfn` as a
child process that valgrind does not follow), runs it under `valgrind --tool=callgrind` with two
invoke counts and divides the difference of the instruction counts by the difference of the
counts, so start-up cancels out. The result is compared with the checked-in baseline
(crates/fleetfn-bench/hotpath-baseline.json): more than `tolerance` above it fails.

Usage:
  scripts/bench-hotpath.py            check against the baseline (exit 1 on regression)
  scripts/bench-hotpath.py --update   measure and rewrite the baseline (commit the file)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "crates/fleetfn-bench/hotpath-baseline.json"
SMALL, LARGE = 100, 600


def count(binary: Path, n: int) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/cg.out", str(binary), str(n)],
            capture_output=True, text=True, timeout=300, env={**os.environ, "RUST_BACKTRACE": "0"})
        if out.returncode != 0:
            # The error comes first, valgrind's summary last.
            sys.exit(f"fleetfn-hotpath {n} failed under valgrind:\n{out.stdout}\n{out.stderr[:3000]}\n…\n"
                     f"{out.stderr[-1500:]}")
        m = re.search(r"Collected : (\d+)", out.stderr)
        if not m:
            sys.exit(f"no instruction count in valgrind's output:\n{out.stderr[-4000:]}")
        return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--update", action="store_true", help="rewrite the baseline with this measurement")
    args = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/fleetfn-target"))
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "fleetfn-bench", "--bin", "fleetfn-hotpath",
                    "-p", "fleetfn-testfn", "--bin", "fleetfn-testfn"],
                   cwd=ROOT, check=True)
    binary = target / "release/fleetfn-hotpath"
    small, large = count(binary, SMALL), count(binary, LARGE)
    per_invoke = (large - small) / (LARGE - SMALL)
    base = json.loads(BASELINE.read_text()) if BASELINE.exists() else None
    print(f"invoke hot path: {per_invoke:,.0f} instructions per invoke "
          f"({small:,} for {SMALL}, {large:,} for {LARGE})")
    if args.update or base is None:
        tol = base["tolerance"] if base else 0.10
        BASELINE.write_text(json.dumps({
            "instructions_per_invoke": round(per_invoke),
            "tolerance": tol,
            "measured_with": "valgrind --tool=callgrind, fleetfn-hotpath release build, "
                             f"({SMALL} vs {LARGE} invokes)",
            "update": "scripts/bench-hotpath.py --update, then commit this file with the change that moved it",
        }, indent=2) + "\n")
        print(f"baseline written to {BASELINE.relative_to(ROOT)}")
        return
    want, tol = base["instructions_per_invoke"], base["tolerance"]
    ratio = per_invoke / want
    print(f"baseline {want:,} ± {tol:.0%}: {ratio - 1:+.1%}")
    if ratio > 1 + tol:
        sys.exit(f"REGRESSION: the invoke hot path costs {ratio - 1:+.1%} instructions per invoke "
                 f"(limit +{tol:.0%}). Profile with: valgrind --tool=callgrind {binary} 1000 && "
                 "callgrind_annotate callgrind.out.*; if the increase is intended, run "
                 "scripts/bench-hotpath.py --update and commit the baseline.")
    if ratio < 1 - tol:
        print(f"note: {1 - ratio:.0%} fewer instructions than the baseline; "
              "run scripts/bench-hotpath.py --update to lock the gain in.")


if __name__ == "__main__":
    main()
