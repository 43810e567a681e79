"""A function is an attacker (tests/isolation): Python, Node.js and Rust functions try to reach
what they must not (the host's services, other environments' Runtime APIs, the instance
metadata address), to take or answer another function's invocations, to get kernel powers
(user namespaces, mounts, BPF, ptrace), to read another environment's /tmp and to exhaust
processes and /tmp; and they must still reach "the internet", resolve names and use their own
/tmp. Every refusal is paired with a control showing the target was there to reach.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from isolation_support import INET_ADDR, INET_HOST, METADATA

RUNTIMES = ["python", "node", "rust"]


def invoke(lam, name: str, event: dict, timeout_ok: bool = False) -> dict:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    body = resp["Payload"].read()
    assert "FunctionError" not in resp, f"{name} failed: {body[:600]!r}"
    return json.loads(body)


def listening_ports() -> set[int]:
    """TCP ports the host listens on at 127.0.0.1 or any address (IPv4 and IPv6 tables)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                addr, port = local.split(":")
                if state == "0A" and (set(addr) == {"0"} or addr in ("0100007F", "00000000000000000000000001000000")):
                    ports.add(int(port, 16))
    return ports


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [m.group(1) for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/", out) if not m.group(1).startswith("127.")]


def env_links() -> list[tuple[str, str]]:
    """(host end, environment end) addresses of every environment's veth pair."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "group", str(0x464C)], capture_output=True,
                         text=True, check=True).stdout
    pairs = []
    for m in re.finditer(r"inet (\d+)\.(\d+)\.(\d+)\.(\d+)/30", out):
        a, b, c, d = (int(x) for x in m.groups())
        pairs.append((f"{a}.{b}.{c}.{d}", f"{a}.{b}.{c}.{d + 1}"))
    return pairs


def can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_environments_are_networked_through_the_firewall(hostile):
    links = env_links()
    assert len(links) >= 9, f"expected a veth pair per environment (3 functions x 3), got {links}"
    rules = subprocess.run(["nft", "list", "table", "inet", "fleetfn"], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stderr
    assert "masquerade" in rules.stdout and "169.254.0.0/16" in rules.stdout


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_host_services_other_environments_and_metadata_are_out_of_reach(runtime, lam, server, hostile,
                                                                           host_service, internet):
    links = env_links()
    api_port = int(server.endpoint.rsplit(":", 1)[1])
    # The function URL listener is the host's too: an environment reaches URLs only as any other
    # client would, never on the host's loopback.
    named = [api_port, server.metrics_port, server.url_port, host_service]
    loopback_ports = sorted(set(named) | listening_ports())
    if runtime != "python":  # Python scans every port; the others a representative set.
        loopback_ports = named + [p for p in loopback_ports if p not in named][:6]
    targets = [("127.0.0.1", p) for p in loopback_ports]
    targets += [(addr, host_service) for addr in host_addresses()]            # incl. 198.19.0.1, eth0
    targets += [(host_end, host_service) for host_end, _ in links[: (len(links) if runtime == "python" else 3)]]
    targets += [(host_end, api_port) for host_end, _ in links[:2]]
    targets += [(env_end, 9001) for _, env_end in links[: (len(links) if runtime == "python" else 3)]]
    targets += [(METADATA, 80)]

    # Controls: everything named above is reachable from the host.
    assert can_connect("127.0.0.1", api_port) and can_connect("127.0.0.1", server.metrics_port)
    assert can_connect("127.0.0.1", server.url_port)
    assert can_connect(INET_HOST, host_service) and can_connect("127.0.0.1", host_service)
    with urllib.request.urlopen(f"http://{METADATA}/", timeout=5) as r:
        assert b"secret-role-credentials" in r.read()

    t0 = time.monotonic()
    out = invoke(lam, hostile[runtime], {"op": "probe", "connect": targets,
                                        "http": [[INET_ADDR, 8080, "GET", "/"], [METADATA, 80, "GET", "/"]],
                                        "resolve": ["internet.test"], "tmp_token": f"tok-{runtime}"})
    elapsed = time.monotonic() - t0
    assert out["uid"] and out["uid"] >= 20000, out["uid"]
    reached = {t: r for t, r in out["connect"].items() if r == "connected"}
    assert not reached, f"{runtime} reached {reached}"
    # Loopback is the environment's own: nothing listens there but its Runtime API.
    assert all(r in ("ECONNREFUSED", "ECONNREFUSED: Connection refused") or "refused" in r.lower()
               for t, r in out["connect"].items() if t.startswith("127.0.0.1:")), out["connect"]
    # Blocked destinations fail at once (administratively prohibited), they do not hang.
    assert elapsed < 30, f"the probe took {elapsed:.1f}s"
    metadata = out["http"][f"GET {METADATA}:80/"]
    assert "200" not in metadata[0] and "secret" not in metadata[1], metadata
    # ... and what it may do, it can.
    status, body = out["http"][f"GET {INET_ADDR}:8080/"]
    assert "200" in status and body == "hello from the internet", out["http"]
    assert out["resolve"] == {"internet.test": INET_ADDR}
    assert out["tmp_write"] is True


def _runtime_processes() -> list[tuple[int, int, int, str]]:
    """(pid, uid, network namespace inode, function name) of every function process."""
    procs = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        names = [v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"AWS_LAMBDA_FUNCTION_NAME=")]
        if uid >= 20000 and names:
            try:
                netns = os.stat(f"/proc/{entry}/ns/net").st_ino
            except OSError:
                continue
            procs.append((int(entry), uid, netns, names[0]))
    return procs


def _victim_runtime_pids(victim: str) -> list[int]:
    return [pid for pid, _, _, name in _runtime_processes() if name == victim]


def test_every_environment_has_its_own_uid_and_network(hostile, victim):
    procs = _runtime_processes()
    uids_by_netns: dict[int, set[int]] = {}
    for _, uid, netns, _ in procs:
        uids_by_netns.setdefault(netns, set()).add(uid)
    assert len(uids_by_netns) >= 12, f"expected 4 functions x 3 environments, got {uids_by_netns}"
    assert all(len(u) == 1 for u in uids_by_netns.values()), uids_by_netns
    uids = [next(iter(u)) for u in uids_by_netns.values()]
    assert len(set(uids)) == len(uids), f"two environments share a uid: {sorted(uids)}"
    host_netns = os.stat("/proc/self/ns/net").st_ino
    assert host_netns not in uids_by_netns


def test_no_function_can_take_or_answer_another_functions_invocations(lam, server, hostile, victim):
    links = env_links()
    stop = threading.Event()
    results: list = []

    def drive():
        n = 0
        while not stop.is_set() and n < 400:
            marker = f"victim-{n}"
            resp = lam.invoke(FunctionName=victim, Payload=json.dumps({"op": "echo", "m": marker}).encode())
            results.append((marker, resp.get("FunctionError"), resp["Payload"].read()))
            n += 1

    drivers = [threading.Thread(target=drive) for _ in range(3)]
    for t in drivers:
        t.start()
    try:
        attempts = []
        for _, env_end in links:
            attempts += [[env_end, 9001, "GET", "/2018-06-01/runtime/invocation/next"],
                         [env_end, 9001, "POST", "/2018-06-01/runtime/invocation/forged-id/response"],
                         [env_end, 9001, "POST", "/2018-06-01/runtime/init/error"]]
        out = {}
        for runtime in RUNTIMES:
            out[runtime] = invoke(lam, hostile[runtime], {"op": "probe", "http": attempts})["http"]
    finally:
        stop.set()
        for t in drivers:
            t.join(timeout=120)
    for runtime, answers in out.items():
        got = {k: v for k, v in answers.items() if v[0].startswith("HTTP/")}
        assert not got, f"{runtime} spoke to another environment's Runtime API: {got}"
    assert len(results) >= 3
    for marker, err, body in results:
        assert err is None and json.loads(body) == {"op": "echo", "m": marker}, (marker, err, body[:200])


def test_agent_sockets_are_out_of_reach(lam, server, hostile):
    """With `--agent-transport unix` the agents of `fleetfn serve` take invokes on a Unix socket
    each (their instance directory): no function can connect to one, whether it can see the
    path or not."""
    sockets = sorted(str(p) for p in (server.data_dir / "instances").glob("*/agent.sock"))
    assert sockets, "no agent socket found: this server runs with --agent-transport unix"
    # Controls: the sockets are there and owner-only; another uid on the host is refused too.
    probe = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1]); print('connected')"
    for path in sockets[:3]:
        assert oct(os.stat(path).st_mode & 0o777) == "0o600", path
        ok = subprocess.run(["/usr/bin/python3", "-c", probe, path], capture_output=True, text=True, timeout=20)
        assert ok.stdout.strip() == "connected", ok.stderr
        other = subprocess.run(["setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups",
                                "/usr/bin/python3", "-c", probe, path], capture_output=True, text=True, timeout=20)
        assert "connected" not in other.stdout and "PermissionError" in other.stderr, (other.stdout, other.stderr)
    out = invoke(lam, hostile["python"], {"op": "probe", "connect_unix": sockets})["connect_unix"]
    reached = {p: r for p, r in out.items() if r == "connected"}
    assert not reached, f"a function connected to an agent socket: {reached}"
    assert len(out) == len(sockets), out


NEXT = """
import socket
s = socket.create_connection(("127.0.0.1", 9001), 3)
s.settimeout(3)
try:
    s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    print("answered" if s.recv(4096) else "closed")
except socket.timeout:
    print("parked")
except (ConnectionResetError, BrokenPipeError):
    print("closed")
"""


def test_runtime_api_refuses_a_foreign_process_inside_the_namespace(lam, victim):
    """Defence in depth: a process that got into an environment's network namespace (root on
    the host, or any other uid) still cannot use its Runtime API."""
    pids = _victim_runtime_pids(victim)
    assert pids, "no runtime process of the victim found"
    ns = f"/proc/{pids[0]}/ns/net"
    for prefix in ([], ["setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups"]):
        r = subprocess.run(["nsenter", f"--net={ns}", *prefix, "/usr/bin/python3", "-c", NEXT],
                           capture_output=True, text=True, timeout=20)
        assert r.stdout.strip() == "closed", (prefix, r.stdout, r.stderr)
    # The victim still serves its own invocations.
    resp = lam.invoke(FunctionName=victim, Payload=b'{"op":"echo","after":"intrusion"}')
    assert json.loads(resp["Payload"].read()) == {"op": "echo", "after": "intrusion"}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_kernel_powers_are_refused(runtime, lam, hostile):
    out = invoke(lam, hostile[runtime], {"op": "probe", "syscalls": True})
    calls = out["syscalls"]
    expected = {"userns", "mountns", "netns", "mount"} | ({"ptrace"} if runtime != "node" else set()) \
        | ({"bpf"} if runtime == "python" and os.uname().machine in ("x86_64", "aarch64") else set())
    assert expected <= set(calls), calls
    allowed = {k: v for k, v in calls.items() if v == "ok"}
    assert not allowed, f"{runtime} was allowed {allowed}"


def test_tmp_is_private_to_each_environment(lam, hostile):
    token = h.uniq("secret-tmp")
    assert invoke(lam, hostile["python"], {"op": "probe", "tmp_token": token})["tmp_write"] is True
    for runtime in ("node", "rust"):
        out = invoke(lam, hostile[runtime], {"op": "probe", "read": [f"/tmp/{token}"]})
        assert not out["read"][f"/tmp/{token}"].startswith("read:"), out


def test_processes_and_tmp_are_capped(lam, hostile):
    name = hostile["python"]
    out = invoke(lam, name, {"op": "probe", "pids": 6000})
    assert out["pids"]["error"], out["pids"]
    assert out["pids"]["started"] < 4096, out["pids"]
    out = invoke(lam, name, {"op": "probe", "fill_tmp_mb": 700})
    assert out["fill_tmp"]["error"] == "ENOSPC", out["fill_tmp"]
    assert out["fill_tmp"]["written_mb"] <= 512, out["fill_tmp"]
    # The environment survived both.
    assert invoke(lam, name, {"op": "probe", "tmp_token": "after-caps"})["tmp_write"] is True


SCHED_OTHER, SCHED_BATCH = 0, 3


def _thread_policies(pid: int) -> set[int]:
    """The scheduling policy (field 41 of /proc/PID/task/TID/stat) of each thread of `pid`."""
    policies = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        policies.add(int(fields[41 - 3]))
    return policies


def _children(pid: int) -> list[int]:
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def test_agents_run_sched_batch_and_the_server_and_functions_the_normal_policy(server, hostile):
    # docs/DESIGN.md, "CPU scheduling": the agents' threads SCHED_BATCH, the server's normal.
    agents = [k for k in _children(server.proc.pid)
              if open(f"/proc/{k}/cmdline", "rb").read().split(b"\0")[1:2] == [b"agent"]]
    assert agents, "no agent process under the server"
    for pid in agents:
        assert _thread_policies(pid) == {SCHED_BATCH}, (pid, _thread_policies(pid))
    assert _thread_policies(server.proc.pid) == {SCHED_OTHER}, _thread_policies(server.proc.pid)
    # Every function process (runtimes of three languages), every thread: the normal policy.
    procs = [pid for pid, _, _, name in _runtime_processes() if name in hostile.values()]
    assert len(procs) >= 9, f"expected 3 functions x 3 environments, got {procs}"
    for pid in procs:
        assert _thread_policies(pid) == {SCHED_OTHER}, (pid, _thread_policies(pid))
        # Nor do they inherit a process-wide setting of fleetfn's allocator: transparent huge
        # pages stay as the host configures them (PR_SET_THP_DISABLE would survive the exec).
        with open(f"/proc/{pid}/status") as f:
            assert "THP_enabled:\t1" in f.read(), pid
