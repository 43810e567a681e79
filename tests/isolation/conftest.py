"""Fixtures for the hostile-tenant suite (tests/isolation): a `fleetfn serve` whose functions
are attackers, and the network around it that they must or must not reach.

- `internet`: a network namespace of the test's own (veth to the host, 198.19.0.0/30) standing in
  for the internet: an HTTP server and a DNS server (`internet.test`) at 198.19.0.2, and a fake
  instance metadata service at 169.254.169.254 (the host routes that address into the namespace,
  so the host itself reaches it: an environment failing to is the firewall's doing).
- `host_service`: a TCP service of the host listening on 0.0.0.0 (so on loopback, the host's
  addresses and the environments' gateways alike).
- `server`: `fleetfn serve` with FLEETFN_ENV_DNS pointing the environments at the test's DNS.

Needs root (network namespaces, nftables); without it every test is skipped with the reason
(`needs root: ...`, `needs nft: ...`; fleetfn_testkit.prereq).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import prereq
from fleetfn_testkit.server import FleetfnServer, free_port
from isolation_support import HERE, INET_ADDR, INET_HOST, METADATA


@pytest.fixture(scope="session", autouse=True)
def _root_only():
    """Network namespaces, nftables, per-environment uids: root and its tools, or a skip."""
    prereq.require("root", prereq.root_missing(("ip", "nsenter", "setpriv")))
    prereq.require("nft", prereq.root_missing(("nft",)))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=10)


@pytest.fixture(scope="session")
def internet():
    ns = f"ffinet{os.getpid()}"
    host_if = f"ffi{os.getpid() % 1000000}h"
    _ip("netns", "add", ns)
    proc = None
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("addr", "add", f"{INET_HOST}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for cmd in (["link", "set", "lo", "up"], ["addr", "add", f"{INET_ADDR}/30", "dev", "eth0"],
                    ["link", "set", "eth0", "up"], ["addr", "add", f"{METADATA}/32", "dev", "lo"],
                    ["route", "add", "default", "via", INET_HOST]):
            _ip("-n", ns, *cmd)
        _ip("route", "add", f"{METADATA}/32", "via", INET_ADDR)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(HERE / "netserver.py"), INET_ADDR],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline().strip()
        assert line == "ready", f"the internet stand-in did not start: {line!r}"
        yield {"ns": ns, "addr": INET_ADDR, "host": INET_HOST}
    finally:
        if proc is not None:
            proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        _ip("route", "del", f"{METADATA}/32", check=False)
        _ip("link", "del", host_if, check=False)
        _ip("netns", "del", ns, check=False)


@pytest.fixture(scope="session")
def host_service():
    """A host TCP service on 0.0.0.0:<port> that answers every connection with a secret."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.sendall(b"host-secret\n")
                except OSError:
                    pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(timeout=5)
    srv.close()


@pytest.fixture(scope="session")
def server(internet, fleetfn_binary, tmp_path_factory):
    base = tmp_path_factory.mktemp("fleetfn-isolation")
    metrics_port = free_port()
    old = os.environ.get("FLEETFN_ENV_DNS")
    os.environ["FLEETFN_ENV_DNS"] = internet["addr"]
    try:
        srv = FleetfnServer(fleetfn_binary, base / "data", base / "logs", name="isolation",
                            data_plane=True,
                            extra_args=["--metrics-listen", f"127.0.0.1:{metrics_port}", "--max-local-vcpus", "512",
                                            # Agents on Unix sockets: test_agent_sockets_are_out_of_reach.
                                            "--agent-transport", "unix"])
        srv.start()
    finally:
        if old is None:
            os.environ.pop("FLEETFN_ENV_DNS", None)
        else:
            os.environ["FLEETFN_ENV_DNS"] = old
    srv.metrics_port = metrics_port
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def lam(server):
    return dp.no_retry_client(server.endpoint)


@pytest.fixture(scope="session")
def cp_arn(lam):
    name = h.uniq("isocp")
    h.create_active_cp(lam, name, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
    return h.cp_arn_for(name)


def _hostile_zip(runtime: str) -> bytes:
    if runtime == "python":
        return h.make_zip([("app.py", (HERE / "functions" / "python" / "app.py").read_text(), 0o644)])
    if runtime == "node":
        return h.make_zip([("index.mjs", (HERE / "functions" / "node" / "index.mjs").read_text(), 0o644)])
    return dp.rust_zip()


@pytest.fixture(scope="session")
def hostile(lam, server, cp_arn):
    """One published hostile function per runtime (2 GiB, 512 MiB /tmp, three environments)."""
    names = {}
    for runtime in ("python", "node", "rust"):
        name = dp.create_lmi_function(lam, cp_arn, runtime, name=h.uniq(f"evil-{runtime}"),
                                      zip_bytes=_hostile_zip(runtime), concurrency=4, timeout=60, memory=2048)
        names[runtime] = name
    pubs = [dp.publish(lam, n, r) for r, n in names.items()]
    dp.wait_published(lam, server.endpoint, pubs)
    for pub in pubs:
        assert pub.final["State"] == "Active", pub.final
    yield names
    for name in names.values():
        dp.delete_function_quietly(lam, name)


@pytest.fixture(scope="session")
def victim(lam, server, cp_arn):
    """An ordinary Python function whose invocations the attackers must not see or answer."""
    name = dp.create_lmi_function(lam, cp_arn, "python", name=h.uniq("victim"), concurrency=8,
                                  variables={"VICTIM_SECRET": "victim-secret-value"})
    dp.publish_active(lam, server.endpoint, name, "python")
    yield name
    dp.delete_function_quietly(lam, name)
