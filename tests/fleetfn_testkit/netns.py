"""A test network of the suite's own: a Linux bridge on the host with an address of a private
/24, and network namespaces ("hosts") each on a veth pair to it with an address of their own
(tests/cluster runs every agent in one). A host is partitioned by taking its link down, and
healed by bringing it back up.

Names carry the creating process's pid (`ffc<pid>b`, `ffc<pid>v<k>`, `ffc<pid>h<k>`), so what a
killed run left behind is recognised and removed by the next one (`sweep_stale`). Needs root
and `ip` (iproute2).
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess

PREFIX = "ffc"
# 10.231.K.0/24, K chosen free on this host.
_NET = "10.231.{k}.0/24"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Removes the links and namespaces of test networks whose creating process is gone."""
    removed = []
    pattern = re.compile(rf"^{PREFIX}(\d+)[bvh]\d*$")
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        m = re.match(r"^\d+:\s+([^:@]+)", line)
        if m and (p := pattern.match(m.group(1))) and not _alive(int(p.group(1))):
            _ip("link", "del", m.group(1), check=False)
            removed.append(m.group(1))
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if (p := pattern.match(name)) and not _alive(int(p.group(1))):
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    used = _ip("-o", "-4", "addr", "show", check=False).stdout + _ip("-4", "route", "show", check=False).stdout
    start = os.getpid() % 250
    for i in range(250):
        net = ipaddress.ip_network(_NET.format(k=(start + i) % 250 + 1))
        if f"{str(net.network_address).rsplit('.', 1)[0]}." not in used:
            return net
    raise RuntimeError("no free 10.231.K.0/24 for a test network")


class Host:
    """A network namespace on the test bridge."""

    def __init__(self, net: "TestNet", k: int):
        self.net = net
        self.k = k
        self.ns = f"{PREFIX}{os.getpid()}h{k}"
        self.link = f"{PREFIX}{os.getpid()}v{k}"
        self.address = str(net.subnet.network_address + 10 + k)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host's namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def partition(self):
        """Its link down: packets to and from it are dropped (connections hang, not refused)."""
        _ip("link", "set", self.link, "down")

    def heal(self):
        _ip("link", "set", self.link, "up")


class TestNet:
    """The bridge and its hosts; `close` removes everything it made."""

    def __init__(self):
        sweep_stale()
        self.subnet = _free_subnet()
        self.bridge = f"{PREFIX}{os.getpid()}b"
        self.gateway = str(self.subnet.network_address + 1)
        self.hosts: list[Host] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except Exception:
            self.close()
            raise

    def host(self) -> Host:
        h = Host(self, len(self.hosts))
        self.hosts.append(h)
        _ip("netns", "add", h.ns)
        _ip("link", "add", h.link, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
        _ip("link", "set", h.link, "master", self.bridge)
        _ip("link", "set", h.link, "up")
        for cmd in (["link", "set", "lo", "up"], ["addr", "add", f"{h.address}/24", "dev", "eth0"],
                    ["link", "set", "eth0", "up"]):
            _ip("-n", h.ns, *cmd)
        return h

    def close(self):
        for h in self.hosts:
            _ip("link", "del", h.link, check=False)
            _ip("netns", "del", h.ns, check=False)
        _ip("link", "del", self.bridge, check=False)
