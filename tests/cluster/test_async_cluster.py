"""Asynchronous invocation in a cluster: two `fleetfn server`s on one PostgreSQL database share
its durable queue (events claimed under leases with `FOR UPDATE SKIP LOCKED`), with agents that
joined them in network namespaces of the test's own (as tests/cluster/test_dataplane.py's
fleet), and moto's server on loopback as the servers' SQS endpoint for OnSuccess records.

1,000 `InvocationType=Event` invokes go to both servers' endpoints; both servers deliver; then
the leader is killed with SIGKILL while events are in flight, the other keeps running and takes
the dead one's events over once their 5 s leases end (`--async-lease 5`): every event gets its
OnSuccess record (by request id). Delivery is at least once: duplicates are counted and may only
be events that were leased when the server died (typically all of the dead server's: their
records' SendMessage requests had reached moto, which answers slowly under this load, and moto
stores them after the sender is gone). moto also reads slowly (its receive costs grow with the
queue), so the records are read in a thread from before the first event.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import events as ev
from fleetfn_testkit import postgres
from fleetfn_testkit.agents import Agent, create_token
from fleetfn_testkit.moto import Moto
from fleetfn_testkit.server import FleetfnServer, free_port, stderr_of, wait_for_line

ZONES = ["subnet-za", "subnet-zb", "subnet-zc"]
EVENTS = 1000
LEASE = 5  # --async-lease: how long a dead server's events wait for the other one
DELIVERY_TIMEOUT = 180.0


@dataclass
class Fleet:
    a: FleetfnServer
    b: FleetfnServer
    agents: list[Agent]
    store_url: str
    metrics: dict[str, str] = field(default_factory=dict)  # server name → its /metrics URL


@pytest.fixture
def moto(tmp_path):
    m = Moto(tmp_path / "moto.log", None)
    yield m
    m.stop()


@pytest.fixture
def fleet(fleetfn_binary, tmp_path, test_net, moto):
    """make_fleet's cluster (tests/cluster/test_dataplane.py) with the asynchronous-invocation
    options: servers `a` (the leader at first) and `b` on one database, moto as their AWS
    endpoint (with its credentials), retries after 1 s, 5 s leases, and metrics on loopback;
    three agents (one per zone, each a c7i.large) in network namespaces of their own."""
    pg = postgres.session_server()
    url = pg.database_for(tmp_path / "cluster")
    servers: list[FleetfnServer] = []
    agents: list[Agent] = []
    metrics: dict[str, str] = {}

    def server(name: str) -> FleetfnServer:
        port = free_port()
        srv = FleetfnServer(fleetfn_binary, tmp_path / "data", tmp_path / "logs", name=name, command="server",
                            store_url=url, data_plane=True, host=test_net.gateway, extra_env=ev.SERVER_KEYS,
                            extra_args=["--metrics-listen", f"127.0.0.1:{port}", "--aws-endpoint-url", moto.url,
                                        "--async-retry-delay", "1", "--async-lease", str(LEASE)])
        servers.append(srv)
        metrics[name] = f"http://127.0.0.1:{port}/metrics"
        return srv.start()

    try:
        a = server("a")
        wait_for_line(a, r": leader \(term 1\)", 10)
        b = server("b")
        _, _, token_file = create_token(fleetfn_binary, a, tmp_path)
        for i, zone in enumerate(ZONES):
            agents.append(Agent(fleetfn_binary, f"{a.endpoint},{b.endpoint}", tmp_path / f"agent{i}", token_file,
                                zone, extra_args=["--vcpus", "2", "--memory-mib", "4096"], host=test_net.host()))
        for agent in agents:
            agent.wait_listening()
        yield Fleet(a, b, agents, url, metrics)
    finally:
        for agent in agents:
            agent.stop()
        for srv in servers:
            srv.stop()


def _leading(srv: FleetfnServer) -> int | None:
    """The term `srv` leads in, from its stderr (None when it follows)."""
    text = stderr_of(srv)
    terms = [(m.start(), int(m.group(1))) for m in re.finditer(r": leader \(term (\d+)\)", text)]
    if not terms:
        return None
    last_lead, term = terms[-1]
    return None if text.rfind("no longer the leader") > last_lead else term


def _deploy(endpoint: str) -> tuple[str, str]:
    """A capacity provider over the three zones and fleetfn-testfn published on it with three
    environments of 8 concurrent invokes each; (function, version) once Active."""
    lam = h.make_client(endpoint)
    cp = h.create_active_cp(lam, h.uniq("cla"), VpcConfig={"SubnetIds": ZONES, "SecurityGroupIds": h.SECURITY_GROUPS},
                            InstanceRequirements={"Architectures": ["x86_64"], "AllowedInstanceTypes": ["c7i.large"]})
    name = h.uniq("afn")
    lam.create_function(**h.function_request(
        name, None, runtime="provided.al2023", zip_bytes=dp.rust_zip(),
        CapacityProviderConfig=h.lmi_config(cp["CapacityProviderArn"], PerExecutionEnvironmentMaxConcurrency=8)))
    h.wait_function_settled(lam, name)
    version = lam.publish_version(FunctionName=name)["Version"]
    dp.set_scaling(lam, name, version, 3, 3)
    cfg = h.poll(lambda: lam.get_function(FunctionName=name, Qualifier=version)["Configuration"],
                 lambda c: c["State"] != "Pending", f"{name}:{version} to leave Pending", timeout=90)
    assert cfg["State"] == "Active", cfg
    return name, version


def _invocations(metrics_url: str, function: str) -> int:
    """Invokes of `function` that this server's router got to an environment (its dispatcher's,
    as the test sends no synchronous invoke)."""
    text = requests.get(metrics_url, timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("fleetfn_invocations_total{") and f'function="{function}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _leased(pg: postgres.TestPostgres, url: str) -> dict[str, tuple[str, str]]:
    """Events under a lease now: id → (lease token, lease end)."""
    out = pg.psql(url, "SELECT id, token, lease_until_ms FROM queue_items WHERE queue = 'async' AND token IS NOT NULL")
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows}


def _queue(srv: FleetfnServer) -> dict:
    return h.raw_request(srv.endpoint, "GET", "/fleetfn/v1/status", timeout=10.0).json()["AsyncQueue"]


class Records:
    """Reads the OnSuccess queue in a thread of its own from `start` to `stop` (deleting what it
    reads, so the queue stays short for moto): the request id of every record, in order."""

    def __init__(self, sqs, url: str, limit: float):
        self.sqs, self.url, self.limit = sqs, url, limit
        self.ids: list[str] = []
        self.polls = 0
        self.empty_polls = 0  # receives in a row that found nothing
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Records":
        self._thread.start()
        return self

    def _run(self):
        deadline = time.monotonic() + self.limit
        try:
            for _ in range(100_000):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=1).get("Messages", [])
                if msgs:
                    out = self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
                    # An undeleted message would come back after its visibility timeout: a false duplicate.
                    assert not out.get("Failed"), out["Failed"]
                got = [json.loads(m["Body"])["requestContext"]["requestId"] for m in msgs]
                with self._lock:
                    self.ids += got
                    self.polls += 1
                    self.empty_polls = 0 if got else self.empty_polls + 1
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def snapshot(self) -> tuple[list[str], int, int]:
        """(request ids so far, receives so far, receives in a row that found nothing)."""
        with self._lock:
            return list(self.ids), self.polls, self.empty_polls

    def wait(self, until, timeout: float) -> bool:
        """Polls `until(*snapshot())` every 0.2 s for up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if until(*self.snapshot()):
                return True
            time.sleep(0.2)
        return until(*self.snapshot())

    def stop(self, check: bool = True):
        self._stop.set()
        self._thread.join(timeout=30)
        if check:
            assert self.error is None, f"reading the OnSuccess queue failed: {self.error!r}"


def test_two_servers_share_the_queue_and_a_killed_one_loses_no_event(fleet, moto):
    a, b = fleet.a, fleet.b
    pg = postgres.session_server()
    name, version = _deploy(a.endpoint)
    sqs = ev.sqs_client(moto)
    url, arn = ev.new_queue(sqs)
    h.make_client(a.endpoint).put_function_event_invoke_config(
        FunctionName=name, Qualifier=version, DestinationConfig={"OnSuccess": {"Destination": arn}})
    records = Records(sqs, url, DELIVERY_TIMEOUT + 120).start()
    try:
        _send_kill_and_check(fleet, pg, name, version, records)
    finally:
        records.stop(check=False)


def _send_kill_and_check(fleet: Fleet, pg, name: str, version: str, records: Records):
    a, b = fleet.a, fleet.b
    # 1,000 events, alternately through each server's endpoint, 8 at a time.
    clients = [dp.no_retry_client(a.endpoint), dp.no_retry_client(b.endpoint)]
    lock = threading.Lock()
    sent: set[str] = set()

    def send(i: int):
        resp = clients[i % 2].invoke(FunctionName=name, Qualifier=version, InvocationType="Event",
                                     Payload=json.dumps({"op": "sleep", "ms": 20, "i": i}).encode())
        assert resp["StatusCode"] == 202, resp
        with lock:
            sent.add(resp["ResponseMetadata"]["RequestId"])

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(EVENTS)))
    took_send = time.monotonic() - started
    assert len(sent) == EVENTS

    # Kill whichever server leads (`a` unless a starved renewal handed the lease to `b`).
    term = _leading(a)
    victim, survivor = (a, b) if term is not None else (b, a)
    term = term if term is not None else _leading(b)
    role = f"the leader (term {term})" if term is not None else "a server (no leader seen)"
    # Both servers delivered events before the kill: each one's router took invokes of the
    # function, and only their dispatchers invoke it.
    delivered = {srv.name: _invocations(fleet.metrics[srv.name], name) for srv in (a, b)}
    before = _queue(survivor)
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(timeout=10)
    victim.last_returncode = victim.proc.returncode
    victim.proc = None
    killed = time.monotonic()
    # What was leased at the kill (the dead server's events and the survivor's); 2.5 s later
    # (before any dead lease ends, after every live one was renewed or finished) the leases
    # still unchanged are the dead server's.
    at_kill = _leased(pg, fleet.store_url)
    time.sleep(max(0.0, killed + 2.5 - time.monotonic()))
    later = _leased(pg, fleet.store_url)
    orphaned = {i for i, lease in at_kill.items() if later.get(i) == lease}
    print(f"\n{EVENTS} events sent in {took_send:.1f} s; invokes per server before the kill: {delivered}; "
          f"queue then: {before}; killed {victim.name}, {role}: {len(at_kill)} events leased at the kill, "
          f"{len(orphaned)} of them the killed server's")
    assert all(n > 0 for n in delivered.values()), f"a server delivered nothing before the kill: {delivered}"
    assert before["Depth"] > 0, f"the queue was empty at the kill: {before}"

    # Every event's record arrives (the dead server's events once their leases end).
    remaining = max(0.0, killed + DELIVERY_TIMEOUT - time.monotonic())
    records.wait(lambda ids, *_: sent <= set(ids), remaining)
    took_all = time.monotonic() - killed
    missing = sent - set(records.snapshot()[0])
    if not missing:
        # Then the queue empties (a redelivered event is acknowledged after its record is
        # sent), and two receives begun after that find nothing: later records are counted too.
        h.poll(lambda: _queue(survivor), lambda q: q["Depth"] == 0, "the queue to empty", timeout=30)
        after = records.snapshot()[1]
        records.wait(lambda _, polls, empty: polls >= after + 3 and empty >= 2, 30)
    records.stop()
    ids = records.snapshot()[0]
    seen = set(ids)
    dup_ids = {i for i, n in Counter(ids).items() if n > 1}
    dups = len(ids) - len(seen)
    warnings = sum(stderr_of(survivor).count(w) for w in ("lease lost while it ran", "had passed to another server"))
    print(f"all delivered {took_all:.1f} s after the kill: {len(seen & sent)} of {EVENTS} distinct, {dups} duplicates "
          f"({len(dup_ids & orphaned)} of the killed server's leased events, {len(dup_ids - orphaned)} other); "
          f"survivor's lease warnings: {warnings}")
    assert not missing, f"{len(missing)} events lost (no OnSuccess record within {DELIVERY_TIMEOUT:.0f} s)"
    assert not seen - sent, f"records of events never sent: {sorted(seen - sent)[:5]}"
    assert _queue(survivor)["Depth"] == 0
    # At least once: a duplicate is an event leased when the server died (delivered by it, not
    # yet acknowledged, then delivered again by the survivor).
    assert dup_ids <= set(at_kill), f"duplicates of events not leased at the kill: {sorted(dup_ids - set(at_kill))[:5]}"
