#!/usr/bin/env python3
"""The web console's own cost: what open console tabs add to an idle `fleetfn serve`.

Starts a release `fleetfn serve` (temporary data dir, its own free loopback ports, metrics and
function URL listeners off), creates a capacity provider and a function (fleetfn-testfn) and
publishes it; nothing invokes it. Then it measures the server over a fixed window with 0 open
console tabs, then with 1 and with 5 signed-in tabs on the function page
(`/console/#/functions/<name>`: status every 2 s, the one-second series every 1 s, a followed
log stream, the charts), and once more after closing them all:

- CPU: utime + stime from /proc/<pid>/stat over the window, of the `fleetfn serve` process alone
  (where the console's requests are served) and of its whole process tree (plus the `fleetfn
  agent` processes it spawned for the local instances and the function's runtimes under them,
  which the console does not talk to);
- RSS: VmRSS of the serve process at the end of each window, and its growth over the idle
  baseline.

Each tab is its own headless Chromium window of one browser (Debian's /usr/bin/chromium and
/usr/bin/chromedriver through Selenium), signed in through the console's own form; the script
checks that every window is visible (the console stops polling in hidden tabs) and that its
charts draw. The browser's own CPU is not counted. Everything runs on 127.0.0.1 and the script
ends what it started by PID.

Usage:
  scripts/bench-console.py [--bin-dir DIR] [--window 60] [--tabs 1,5]
  (DIR: where `fleetfn` and `fleetfn-testfn` are; default $FLEETFN_BIN's directory, else
  $CARGO_TARGET_DIR/release; build them with
  `cargo build --release --locked -p fleetfn-cli -p fleetfn-testfn`)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
from botocore.config import Config
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ACCESS_KEY = "AKIAFLEETFNBENCHCONS"
SECRET_KEY = "fleetfn-bench-console-secret-key-0000000"
REGION = "us-east-1"
ACCOUNT = "000000000000"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20


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
    # The command name may hold spaces; the fields after it are space-separated.
    return raw[raw.rindex(")") + 2:].split()


def cpu_ticks(pid: int) -> int:
    f = stat_fields(pid)
    # utime and stime: fields 14 and 15 (1-based), 11 and 12 after the name.
    return int(f[11]) + int(f[12]) if f else 0


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree(root: int) -> list[int]:
    """`root` and every process below it (parents from /proc/<pid>/stat)."""
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


class Usage:
    """CPU ticks of the server and of its tree; processes that come and go in between are
    counted from when they are first seen (there are none while idle)."""

    def __init__(self, pid: int):
        self.pid = pid

    def sample(self) -> tuple[int, dict[int, int]]:
        return cpu_ticks(self.pid), {p: cpu_ticks(p) for p in tree(self.pid)}

    @staticmethod
    def delta(a: tuple[int, dict[int, int]], b: tuple[int, dict[int, int]]) -> tuple[float, float]:
        """(server, tree) CPU seconds from sample `a` to sample `b`."""
        server = (b[0] - a[0]) / CLK_TCK
        whole = sum(t - a[1].get(p, 0) for p, t in b[1].items()) / CLK_TCK
        return server, whole


# The server and its fleet -----------------------------------------------------------------


def bootstrap_zip(testfn: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = (0o100755 & 0xFFFF) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, testfn.read_bytes())
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


def lambda_client(endpoint: str):
    return boto3.client("lambda", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=Config(retries={"max_attempts": 1}, read_timeout=60))


def wait_for(what: str, probe, timeout: float = 120.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            sys.exit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def make_fleet(lam, testfn: Path) -> str:
    cp, name = "console-bench", "console-bench-fn"
    lam.create_capacity_provider(
        CapacityProviderName=cp,
        VpcConfig={"SubnetIds": ["subnet-a", "subnet-b", "subnet-c"], "SecurityGroupIds": ["sg-console"]},
        PermissionsConfig={"CapacityProviderOperatorRoleArn": f"arn:aws:iam::{ACCOUNT}:role/fleetfn-operator"})
    wait_for("the capacity provider to be Active",
             lambda: lam.get_capacity_provider(CapacityProviderName=cp)["CapacityProvider"]["State"] == "Active")
    cp_arn = lam.get_capacity_provider(CapacityProviderName=cp)["CapacityProvider"]["CapacityProviderArn"]
    lam.create_function(
        FunctionName=name, Role=f"arn:aws:iam::{ACCOUNT}:role/fleetfn-bench", Runtime="provided.al2023",
        Handler="bootstrap", MemorySize=2048, Timeout=30, Code={"ZipFile": bootstrap_zip(testfn)},
        CapacityProviderConfig={"LambdaManagedInstancesCapacityProviderConfig": {"CapacityProviderArn": cp_arn}})
    # $LATEST of a function on a capacity provider is never invoked: wait until it settles.
    wait_for("the function to settle",
             lambda: (lambda c: c.get("State") != "Pending" and c.get("LastUpdateStatus") != "InProgress")(
                 lam.get_function_configuration(FunctionName=name)))
    version = lam.publish_version(FunctionName=name)["Version"]
    state = wait_for(f"version {version} to leave Pending",
                     lambda: (lam.get_function_configuration(FunctionName=name, Qualifier=version)
                              .get("State") or "Pending") != "Pending" and
                     lam.get_function_configuration(FunctionName=name, Qualifier=version)["State"],
                     timeout=180)
    if state != "Active":
        sys.exit(f"version {version} went to {state}")
    return name


# The browser ------------------------------------------------------------------------------


def browser() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
              "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
              "--disable-backgrounding-occluded-windows"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def sign_in(driver: webdriver.Chrome, endpoint: str) -> None:
    driver.get(f"{endpoint}/console/")
    wait = WebDriverWait(driver, 30)
    wait.until(EC.visibility_of_element_located((By.ID, "signin-key-id"))).send_keys(ACCESS_KEY)
    driver.find_element(By.ID, "signin-secret").send_keys(SECRET_KEY)
    driver.find_element(By.ID, "signin-submit").click()
    wait.until(lambda d: ACCESS_KEY in (d.find_element(By.ID, "whoami").text or ""))


def open_function_page(driver: webdriver.Chrome, endpoint: str, name: str, new_window: bool,
                       follow_logs: bool = True) -> str:
    if new_window:
        driver.switch_to.new_window("window")
    driver.get(f"{endpoint}/console/#/functions/{name}")
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: name in d.find_element(By.ID, "function-title").text)
    # The charts draw from the series: their points count once the ring has samples.
    wait.until(lambda d: int(d.find_element(By.ID, "chart-invocations").get_attribute("data-points") or 0) > 0)
    state = driver.execute_script("return document.visibilityState")
    if state != "visible":
        sys.exit(f"a console window is {state!r}: the console does not poll there, the measure would be wrong")
    if not follow_logs:
        box = driver.find_element(By.ID, "logs-follow")
        if box.is_selected():
            box.click()
    # Room for every request of a window in the resource timing buffer (250 by default).
    driver.execute_script("performance.setResourceTimingBufferSize(1000000)")
    return driver.current_window_handle


def api_requests(driver: webdriver.Chrome, handles: list[str]) -> int:
    """API requests the windows made so far (resource timing entries under the API's paths)."""
    n = 0
    for h in handles:
        driver.switch_to.window(h)
        n += driver.execute_script(
            "return performance.getEntriesByType('resource').filter(e => !e.name.includes('/console/')).length")
    return n


def check_windows(driver: webdriver.Chrome, handles: list[str]) -> None:
    """Every window still shows the function page and polls (its chart's points moved on)."""
    for h in handles:
        driver.switch_to.window(h)
        state = driver.execute_script("return document.visibilityState")
        points = driver.find_element(By.ID, "chart-invocations").get_attribute("data-points")
        if state != "visible" or not points or int(points) == 0:
            sys.exit(f"window {h}: visibility {state}, chart points {points}")


# The measure ------------------------------------------------------------------------------


def measure(usage: Usage, window: float, label: str) -> dict:
    a = usage.sample()
    t0 = time.monotonic()
    peak = rss_bytes(usage.pid)
    while time.monotonic() - t0 < window:
        time.sleep(1.0)
        peak = max(peak, rss_bytes(usage.pid))
    b = usage.sample()
    elapsed = time.monotonic() - t0
    server, whole = Usage.delta(a, b)
    row = {"label": label, "seconds": elapsed, "server_ms_per_s": server * 1000 / elapsed,
           "tree_ms_per_s": whole * 1000 / elapsed, "rss": rss_bytes(usage.pid), "rss_peak": peak}
    load = os.getloadavg()[0]
    row["load1"] = load
    print(f"  {label}: load {load:.2f}, server {row['server_ms_per_s']:.2f} ms/s, tree {row['tree_ms_per_s']:.2f} ms/s, "
          f"RSS {row['rss'] / MIB:.1f} MiB", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", type=Path, help="where fleetfn and fleetfn-testfn are")
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured per step (default 60)")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds waited before each window (default 15)")
    ap.add_argument("--tabs", default="1,5", help="open tab counts after the idle baseline (default 1,5)")
    ap.add_argument("--no-follow", action="store_true",
                    help="turn the function page's log follow off in every tab (to split its cost)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    if args.bin_dir:
        bin_dir = args.bin_dir
    elif os.environ.get("FLEETFN_BIN"):
        bin_dir = Path(os.environ["FLEETFN_BIN"]).parent
    else:
        bin_dir = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/fleetfn-target")) / "release"
    fleetfn, testfn = bin_dir / "fleetfn", bin_dir / "fleetfn-testfn"
    for b in (fleetfn, testfn):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} not found: cargo build --release --locked -p fleetfn-cli -p fleetfn-testfn")
    counts = sorted({int(x) for x in args.tabs.split(",") if x.strip()})
    if not counts or counts[0] < 1 or counts[-1] > 20:
        sys.exit("--tabs: counts from 1 to 20")

    base = Path(tempfile.mkdtemp(prefix="fleetfn-bench-console-"))
    proc = driver = None
    rows: list[dict] = []
    try:
        proc, endpoint = start_server(fleetfn, base)
        print(f"fleetfn serve pid {proc.pid} at {endpoint} ({fleetfn})", flush=True)
        lam = lambda_client(endpoint)
        name = make_fleet(lam, testfn)
        usage = Usage(proc.pid)
        print(f"function {name} published and Active; processes in the tree: {len(tree(proc.pid))}", flush=True)
        time.sleep(args.settle)
        rows.append(measure(usage, args.window, "0 tabs"))
        driver = browser()
        sign_in(driver, endpoint)
        handles: list[str] = []
        for n in counts:
            while len(handles) < n:
                handles.append(open_function_page(driver, endpoint, name, new_window=bool(handles),
                                                  follow_logs=not args.no_follow))
            time.sleep(args.settle)
            check_windows(driver, handles)
            before = api_requests(driver, handles)
            row = measure(usage, args.window, f"{n} tab{'s' if n > 1 else ''}")
            row["tabs"] = n
            row["requests_per_s"] = (api_requests(driver, handles) - before) / row["seconds"]
            rows.append(row)
            check_windows(driver, handles)
        driver.quit()
        driver = None
        time.sleep(args.settle)
        rows.append(measure(usage, args.window, "0 tabs after"))
    finally:
        if driver is not None:
            driver.quit()
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(base, ignore_errors=True)

    idle = rows[0]
    print()
    print(f"{'step':<14} {'serve CPU ms/s':>15} {'per tab':>8} {'tree CPU ms/s':>14} {'per tab':>8} "
          f"{'serve RSS MiB':>14} {'growth':>7} {'API req/s':>10}")
    for r in rows:
        n = r.get("tabs", 0)
        per = lambda k: f"{(r[k] - idle[k]) / n:8.2f}" if n else f"{'':8}"
        print(f"{r['label']:<14} {r['server_ms_per_s']:15.2f} {per('server_ms_per_s')} "
              f"{r['tree_ms_per_s']:14.2f} {per('tree_ms_per_s')} {r['rss'] / MIB:14.1f} "
              f"{(r['rss'] - idle['rss']) / MIB:+7.1f} {r.get('requests_per_s', 0):10.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
