"""The data plane of a cluster: two `fleetfn server`s on one PostgreSQL database (on loopback)
and three or four agents that joined them (`fleetfn agent --join`), each in a network namespace
of its own with its own address on a test bridge (fleetfn_testkit.netns), the servers listening
on the bridge's address. All real processes; needs root (namespaces), skipped without.

The leader places a published version's environments on the joined agents (the `static`
provider claims one agent per instance, in the zone of one of the capacity provider's subnets);
both servers route invokes to them (the follower from the agents' own reports). When the leader
is killed the other server adopts what runs: the same environments, none started again, and
invokes through it never fail meanwhile. A partitioned agent (its link down) leaves both
servers' routing within 3 s and is replaced in its zone; after healing, what it still ran is
stopped. Both servers stopped: agents keep everything and are adopted.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
import threading
import time

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import postgres
from fleetfn_testkit.agents import Agent, create_token
from fleetfn_testkit.dataplane import rust_zip, set_scaling
from fleetfn_testkit.server import FleetfnServer, stderr_of, wait_for_line

ZONES = ["subnet-za", "subnet-zb", "subnet-zc"]


_stderr = stderr_of
_wait_for = wait_for_line


def _leading(srv: FleetfnServer) -> int | None:
    """The term `srv` leads in, from its stderr (None when it follows)."""
    text = _stderr(srv)
    terms = [(m.start(), int(m.group(1))) for m in re.finditer(r": leader \(term (\d+)\)", text)]
    if not terms:
        return None
    last_lead, term = terms[-1]
    return None if text.rfind("no longer the leader") > last_lead else term


def _envs(srv: FleetfnServer, function: str) -> list[dict]:
    r = h.raw_request(srv.endpoint, "GET", "/fleetfn/v1/environments", timeout=10.0)
    assert r.status_code == 200, r.text
    return [e for e in r.json()["Environments"] if e["FunctionName"] == function]


def _ready(envs: list[dict]) -> dict[str, tuple[str, str]]:
    """Ready environments: id → (instance, zone)."""
    return {e["EnvironmentId"]: (e["InstanceId"], e["Zone"]) for e in envs if e["State"] == "Ready"}


def _wait_ready(srv: FleetfnServer, function: str, count: int, timeout: float) -> dict[str, tuple[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        envs = _envs(srv, function)
        ready = _ready(envs)
        if len(ready) == count and all(e["State"] == "Ready" for e in envs):
            return ready
        if time.monotonic() > deadline:
            raise AssertionError(f"{srv.name}: wanted {count} Ready environments of {function}, have "
                                 f"{[(e['EnvironmentId'], e['State'], e['Zone']) for e in envs]}\n{srv.logs(60)}")
        time.sleep(0.1)


@pytest.fixture
def make_fleet(fleetfn_binary, tmp_path, test_net):
    """Starts servers `a` (the leader) and `b` on one database and data dir, listening on the
    test bridge's address, and agents that joined them, each in a network namespace of its own,
    in zones `zones` (by default subnet-za, -zb, -zc), each the size of a c7i.large; stops them
    all at the end."""
    pg = postgres.session_server()
    url = pg.database_for(tmp_path / "cluster")
    servers: list[FleetfnServer] = []
    agents: list[Agent] = []

    def server(name: str) -> FleetfnServer:
        srv = FleetfnServer(fleetfn_binary, tmp_path / "data", tmp_path / "logs", name=name, command="server",
                            store_url=url, data_plane=True, extra_args=["--metrics-listen", "off"],
                            host=test_net.gateway)
        servers.append(srv)
        return srv.start()

    def make(agent_args: list[str] | None = None, zones: list[str] = ZONES):
        a = server("a")
        _wait_for(a, r": leader \(term 1\)", 10)
        b = server("b")
        _, _, token_file = create_token(fleetfn_binary, a, tmp_path)
        for i, zone in enumerate(zones):
            agent = Agent(fleetfn_binary, f"{a.endpoint},{b.endpoint}", tmp_path / f"agent{i}", token_file, zone,
                          extra_args=["--vcpus", "2", "--memory-mib", "4096"] + list(agent_args or []),
                          host=test_net.host())
            agents.append(agent)
        for agent in agents:
            agent.wait_listening()
        return a, b, agents

    yield make
    for agent in agents:
        agent.stop()
    for srv in servers:
        srv.stop()


@pytest.fixture
def fleet(make_fleet):
    return make_fleet()


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (the agent's environments and their runtimes)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for k in kids:
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def _first_invoke_after(endpoint: str, name: str, version: str, limit: float) -> float:
    """Seconds until an invoke through `endpoint` succeeds (tried every 50 ms, up to `limit`)."""
    lam = h.make_client(endpoint)
    start = time.monotonic()
    last = None
    while time.monotonic() - start < limit:
        try:
            resp = lam.invoke(FunctionName=name, Qualifier=version, Payload=b'{"op": "echo"}')
            if resp["StatusCode"] == 200 and "FunctionError" not in resp:
                return time.monotonic() - start
            last = resp
        except Exception as e:  # noqa: BLE001 - retried until the limit
            last = e
        time.sleep(0.05)
    raise AssertionError(f"no successful invoke through {endpoint} within {limit} s: {last!r}")


def _deploy(endpoint: str, min_envs: int = 3) -> tuple[str, str]:
    """A capacity provider over the three zones (c7i.large instances) and a function published
    on it (fleetfn-testfn, 8 invokes at a time per environment); returns (function, version) once Active."""
    lam = h.make_client(endpoint)
    cp = h.create_active_cp(lam, h.uniq("cl"), VpcConfig={"SubnetIds": ZONES, "SecurityGroupIds": h.SECURITY_GROUPS},
                            InstanceRequirements={"Architectures": ["x86_64"], "AllowedInstanceTypes": ["c7i.large"]})
    name = h.uniq("fn")
    lam.create_function(**h.function_request(
        name, None, runtime="provided.al2023", zip_bytes=rust_zip(),
        CapacityProviderConfig=h.lmi_config(cp["CapacityProviderArn"], PerExecutionEnvironmentMaxConcurrency=8)))
    h.wait_function_settled(lam, name)
    version = lam.publish_version(FunctionName=name)["Version"]
    set_scaling(lam, name, version, min_envs, min_envs)
    cfg = h.poll(lambda: lam.get_function(FunctionName=name, Qualifier=version)["Configuration"],
                 lambda c: c["State"] != "Pending", f"{name}:{version} to leave Pending", timeout=90)
    assert cfg["State"] == "Active", cfg
    return name, version


def _invoke(endpoint: str, name: str, version: str, event: dict) -> dict:
    lam = h.make_client(endpoint)
    resp = lam.invoke(FunctionName=name, Qualifier=version, Payload=json.dumps(event).encode())
    body = resp["Payload"].read()
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, (resp, body)
    return json.loads(body)


def test_the_leader_places_on_joined_agents_and_both_servers_route(fleet):
    a, b, agents = fleet
    name, version = _deploy(b.endpoint)
    placed = _wait_ready(a, name, 3, 30)
    # One environment per zone, each on an instance of its own (a claimed agent).
    assert sorted(z for _, z in placed.values()) == ZONES, placed
    assert len({i for i, _ in placed.values()}) == 3, placed
    claims = h.raw_request(a.endpoint, "GET", "/fleetfn/v1/agents").json()["Agents"]
    assert sorted(c["Zone"] for c in claims) == ZONES
    # The follower routes to the same environments, from the agents' reports.
    assert _wait_ready(b, name, 3, 5) == placed
    for srv in (a, b):
        for i in range(6):
            event = {"op": "echo", "n": i, "via": srv.name}
            assert _invoke(srv.endpoint, name, version, event) == event


def test_a_killed_leader_is_replaced_without_a_failed_invoke_or_a_second_start(fleet):
    a, b, agents = fleet
    name, version = _deploy(a.endpoint)
    before = _wait_ready(a, name, 3, 30)
    assert _wait_ready(b, name, 3, 5) == before
    # `a` leads unless a starved renewal handed the lease to `b` already: kill whichever leads.
    term = _leading(a)
    leader, survivor = (a, b) if term is not None else (b, a)
    term = term if term is not None else _leading(b)
    assert term is not None, (_stderr(a), _stderr(b))
    adopted_before = _stderr(survivor).count("instance adopted")

    failures: list[str] = []
    done = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def client(k: int):
        lam = h.make_client(survivor.endpoint)
        for i in range(400):
            if stop.is_set():
                return
            try:
                event = {"op": "echo", "k": k, "i": i}
                resp = lam.invoke(FunctionName=name, Qualifier=version, Payload=json.dumps(event).encode())
                body = json.loads(resp["Payload"].read())
                ok = resp["StatusCode"] == 200 and "FunctionError" not in resp and body == event
                with lock:
                    done[0] += 1
                    if not ok:
                        failures.append(f"{resp.get('FunctionError')}: {body}")
            except Exception as e:  # noqa: BLE001 - every failure counts
                with lock:
                    failures.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    leader.proc.kill()
    leader.proc.wait(timeout=5)
    leader.proc = None
    killed = time.monotonic()
    try:
        _wait_for(survivor, rf": leader \(term {term + 1}\)", 7)
    except AssertionError:
        pg = postgres.session_server()
        print(pg.psql(pg.admin_url, "SELECT pid, datname, state, wait_event_type, wait_event, "
                      "now() - xact_start, left(query, 120) FROM pg_stat_activity WHERE datname LIKE 'fleetfn_t%'"))
        raise
    took = time.monotonic() - killed
    # Keep the load on through the takeover and the new leader's first passes.
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    print(f"takeover {took:.2f} s; {done[0]} invokes through the surviving server, {len(failures)} failed")
    assert not failures, failures[:5]
    assert done[0] > 0
    # Adopted, not restarted: the same environments, and no more than desired.
    after = _wait_ready(survivor, name, 3, 5)
    assert after == before, (before, after)
    time.sleep(2)
    assert _ready(_envs(survivor, name)) == before, "the new leader started or stopped environments"
    cfg = h.make_client(survivor.endpoint).get_function(FunctionName=name, Qualifier=version)["Configuration"]
    assert cfg["State"] == "Active", cfg
    assert _stderr(survivor).count("instance adopted") >= adopted_before + 3, "the new leader adopted all three"


def test_agents_keep_serving_while_every_server_is_down_and_are_adopted_after(fleet):
    a, b, agents = fleet
    name, version = _deploy(a.endpoint)
    before = _wait_ready(a, name, 3, 30)
    pids = {ag.proc.pid: _descendants(ag.proc.pid) for ag in agents}
    assert all(pids.values()), pids
    assert b.stop() == 0 and a.stop() == 0
    time.sleep(10)
    # Nothing stopped while no server was there.
    assert {p: _descendants(p) for p in pids} == pids
    a.start()
    took = _first_invoke_after(a.endpoint, name, version, 10)
    print(f"invokes served {took:.2f} s after the restarted server answered its API")
    assert took < 2.0, took
    assert _wait_ready(a, name, 3, 5) == before, "adopted: the same environments"
    assert {p: _descendants(p) for p in pids} == pids, "the same processes"
    cfg = h.make_client(a.endpoint).get_function(FunctionName=name, Qualifier=version)["Configuration"]
    assert cfg["State"] == "Active" and cfg["LastUpdateStatus"] == "Successful", cfg


def test_an_agent_no_server_reaches_stops_its_environments_after_its_grace(make_fleet):
    a, b, agents = make_fleet(["--orphan-grace", "4"])
    name, version = _deploy(a.endpoint)
    _wait_ready(a, name, 3, 30)
    # While servers call, the grace never runs out.
    time.sleep(5)
    assert all(_descendants(ag.proc.pid) for ag in agents)
    assert b.stop() == 0 and a.stop() == 0
    stopped = time.monotonic()
    deadline = stopped + 10
    while any(_descendants(ag.proc.pid) for ag in agents) and time.monotonic() < deadline:
        time.sleep(0.1)
    took = time.monotonic() - stopped
    assert not any(_descendants(ag.proc.pid) for ag in agents), "environments still run"
    # The servers called until they stopped.
    assert took >= 3.0, f"stopped {took:.2f} s after the servers, before the grace"
    assert all(ag.proc.poll() is None for ag in agents), "the agents themselves keep running"
    assert all("--orphan-grace" in ag.stderr() for ag in agents)
    # A server that comes back finds them empty and starts the version again on them.
    a.start()
    _wait_ready(a, name, 3, 30)
    assert _first_invoke_after(a.endpoint, name, version, 10) < 10


def test_a_former_leader_cannot_start_or_stop_anything(fleet, fleetfn_binary):
    """Agents refuse a start or stop from a term older than one they heard from: a frozen leader
    that wakes after its successor took over changes nothing; nor does a caller with an agent's
    credential but no term."""
    import requests

    a, b, agents = fleet
    name, version = _deploy(a.endpoint)
    before = _wait_ready(a, name, 3, 30)
    ident = agents[0].identity()
    address = next(x["Address"] for x in h.raw_request(a.endpoint, "GET", "/fleetfn/v1/agents").json()["Agents"]
                   if x["AgentId"] == ident["AgentId"])
    url = f"http://{address}/v1/environments"
    auth = {"Authorization": f"Bearer {ident['Credential']}"}
    envs = requests.get(url, headers=auth, timeout=10).json()["environments"]
    assert len(envs) == 1 and envs[0]["placement"]["version_key"].startswith(name), envs
    env_id = envs[0]["env_id"]
    for headers, status in (({}, 409), ({"x-fleetfn-term": "0"}, 409), ({"x-fleetfn-term": "x"}, 400)):
        r = requests.delete(f"{url}/{env_id}", headers={**auth, **headers}, timeout=10)
        assert r.status_code == status, (headers, r.status_code, r.text)
    assert "stale leader term 0" in requests.delete(f"{url}/{env_id}", headers=auth, timeout=10).text

    term = _leading(a)
    leader, other = (a, b) if term is not None else (b, a)
    term = term if term is not None else _leading(b)
    leader.proc.send_signal(signal.SIGSTOP)
    try:
        _wait_for(other, rf": leader \(term {term + 1}\)", 8)
        assert _wait_ready(other, name, 3, 5) == before
    finally:
        leader.proc.send_signal(signal.SIGCONT)
    _wait_for(leader, r"no longer the leader", 10)
    time.sleep(2)
    assert _ready(_envs(other, name)) == before, "nothing started or stopped twice"
    assert [e["env_id"] for e in requests.get(url, headers=auth, timeout=10).json()["environments"]] == [env_id]

    # The agent keeps the highest term it heard across a restart: a former leader is still refused.
    old = agents[0]
    old.stop()
    again = Agent(fleetfn_binary, f"{a.endpoint},{b.endpoint}", old.data_dir, None, ZONES[0],
                  extra_args=["--vcpus", "2", "--memory-mib", "4096"], host=old.host)
    agents.append(again)
    again.wait_listening()
    r = requests.delete(f"{url}/{env_id}", headers={**auth, "x-fleetfn-term": str(term)}, timeout=10)
    assert r.status_code == 409 and f"follows term {term + 1}" in r.text, (r.status_code, r.text)


def test_a_rolling_restart_of_both_servers_loses_no_invoke(fleet):
    """Clients that fail over between the servers (on a refused or dropped connection, the
    other one) keep getting answers while first the follower, then the leader restarts."""
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

    a, b, agents = fleet
    name, version = _deploy(a.endpoint)
    before = _wait_ready(a, name, 3, 30)
    assert _wait_ready(b, name, 3, 5) == before
    endpoints = [a.endpoint, b.endpoint]
    lost: list[str] = []
    answered = [0]
    failovers = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def client(k: int):
        clients = [h.make_client(e) for e in endpoints]
        current = k % 2
        for i in range(5000):
            if stop.is_set():
                return
            event = {"op": "echo", "k": k, "i": i}
            last = None
            for _attempt in range(6):
                try:
                    resp = clients[current].invoke(FunctionName=name, Qualifier=version,
                                                   Payload=json.dumps(event).encode())
                    body = json.loads(resp["Payload"].read())
                    if resp["StatusCode"] == 200 and body == event:
                        with lock:
                            answered[0] += 1
                        last = None
                        break
                    last = f"{resp.get('FunctionError')}: {body}"
                    break
                except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as e:
                    last = repr(e)
                    current = 1 - current
                    with lock:
                        failovers[0] += 1
                    time.sleep(0.05)
                except Exception as e:  # noqa: BLE001 - an answer that is an error is a loss
                    last = repr(e)
                    break
            if last is not None:
                with lock:
                    lost.append(last)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        for srv in (b, a):  # the follower first, then the leader
            assert srv.stop() == 0
            time.sleep(0.5)
            srv.start(same_port=True)
            assert _wait_ready(srv, name, 3, 15) == before, f"{srv.name} routes again to the same environments"
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    print(f"rolling restart: {answered[0]} invokes answered, {failovers[0]} fail-overs, {len(lost)} lost")
    assert not lost, lost[:5]
    assert answered[0] > 0
    assert _ready(_envs(b, name)) == before


def _agent_envs(agent: Agent, timeout: float = 5.0) -> list[str]:
    """The environment ids the agent itself reports (asked directly, with its credential)."""
    import requests

    r = requests.get(f"http://{agent.host.address}:9700/v1/environments",
                     headers={"Authorization": f"Bearer {agent.identity()['Credential']}"}, timeout=timeout)
    assert r.status_code == 200, r.text
    return [e["env_id"] for e in r.json()["environments"]]


def test_a_partitioned_agent_leaves_routing_within_3s_and_is_replaced_in_its_zone(make_fleet):
    """One agent's link goes down (its packets dropped, connections hang): both servers stop
    routing to its environment within 3 s, the leader replaces it on the other agent of its
    zone, and once the link is back what the cut-off agent still ran is stopped, leaving exactly
    the desired environments."""
    a, b, agents = make_fleet(zones=ZONES + ["subnet-za"])
    name, version = _deploy(a.endpoint)
    before = _wait_ready(a, name, 3, 30)
    assert _wait_ready(b, name, 3, 5) == before
    za = [ag for ag in agents if ag.data_dir.name in ("agent0", "agent3")]
    running = {ag.data_dir.name: _agent_envs(ag) for ag in za}
    cut, spare = (za[0], za[1]) if running["agent0"] else (za[1], za[0])
    assert len(_agent_envs(cut)) == 1 and _agent_envs(spare) == [], running
    cut_env = _agent_envs(cut)[0]
    assert cut_env in before, (cut_env, before)

    cut.host.partition()
    cut_at = time.monotonic()
    left: dict[str, float] = {}
    while len(left) < 2 and time.monotonic() - cut_at < 10:
        for srv in (a, b):
            if srv.name in left:
                continue
            routed = [e for e in _envs(srv, name) if e["EnvironmentId"] == cut_env and e["Routed"]]
            if not routed:
                left[srv.name] = time.monotonic() - cut_at
        time.sleep(0.05)
    print(f"partitioned agent out of routing after {left} s")
    assert set(left) == {"a", "b"}, left
    assert max(left.values()) < 3.0, left
    # Both servers keep serving from the other zones meanwhile.
    for srv in (a, b):
        assert _invoke(srv.endpoint, name, version, {"op": "echo", "via": srv.name}) == {"op": "echo", "via": srv.name}

    # Replaced in its zone, on the spare agent, and routed from both servers.
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if _agent_envs(spare):
            break
        time.sleep(0.2)
    replaced_at = time.monotonic() - cut_at
    after = _wait_ready(a, name, 3, 30)
    assert sorted(z for _, z in after.values()) == ZONES, after
    assert cut_env not in after
    assert _wait_ready(b, name, 3, 5) == after
    print(f"replaced in its zone {replaced_at:.1f} s after the partition")

    # Healed: the agent it was cut off from is no instance any more; what it ran is stopped.
    cut.host.heal()
    healed = time.monotonic()
    while _agent_envs(cut, timeout=2) and time.monotonic() - healed < 15:
        time.sleep(0.2)
    assert _agent_envs(cut) == [], "the stray environment still runs after healing"
    print(f"stray stopped {time.monotonic() - healed:.1f} s after healing")
    assert not _descendants(cut.proc.pid), "no process of it is left"
    time.sleep(2)
    assert _wait_ready(a, name, 3, 5) == after and _wait_ready(b, name, 3, 5) == after
    assert sum(len(_agent_envs(ag)) for ag in agents) == 3, "exactly the desired environments"
    for srv in (a, b):
        for i in range(4):
            assert _invoke(srv.endpoint, name, version, {"op": "echo", "i": i}) == {"op": "echo", "i": i}
