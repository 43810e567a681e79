"""`fleetfn server`: several API servers on one PostgreSQL database, one leader among them.

Real processes on loopback and a real (throwaway) PostgreSQL. Every server answers the Lambda
API; only the leader runs the reconciler (a capacity provider created through any server turns
Active because the leader reconciles it). The leader is killed (-9), stopped (SIGTERM) and frozen
(SIGSTOP): the other server takes over within 5 s, and a frozen leader that wakes up steps down.
The servers share one data dir here (admin key, environment-variable key, code packages); code
packages held in the cluster are a later step (docs/CLUSTER.md).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import shutil
import time
from pathlib import Path

import pytest
import requests

from fleetfn_testkit import api as h
from fleetfn_testkit import postgres
from fleetfn_testkit.server import FleetfnServer, stderr_of, wait_for_line

TAKEOVER_LIMIT = 5.0


_stderr = stderr_of
_wait_for = wait_for_line


def _leader_terms(srv: FleetfnServer) -> list[int]:
    return [int(t) for t in re.findall(r": leader \(term (\d+)\)", _stderr(srv))]


@pytest.fixture
def cluster(fleetfn_binary, tmp_path):
    """Starts servers `a`, `b`, … on one fresh database and a shared data dir; stops them all."""
    pg = postgres.session_server()
    url = pg.database_for(tmp_path / "cluster")
    started: list[FleetfnServer] = []

    def start(name: str, data_dir: Path | None = None) -> FleetfnServer:
        srv = FleetfnServer(fleetfn_binary, data_dir or tmp_path / "data", tmp_path / "logs", name=name,
                            command="server", store_url=url, extra_args=["--metrics-listen", "off"])
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        if srv.proc is not None and srv.proc.poll() is None:
            try:
                srv.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
        srv.stop()


def _provider_turns_active(endpoint: str) -> float:
    """Creates a capacity provider through `endpoint` and returns the seconds until it is Active
    (the leader's reconciler did it, wherever the leader is)."""
    client = h.make_client(endpoint)
    name = h.uniq("cl")
    start = time.monotonic()
    h.create_cp(client, name)
    h.wait_cp_active(client, name, timeout=15)
    return time.monotonic() - start


def test_one_leader_and_every_server_serves_the_api(cluster):
    a = cluster("a")
    _wait_for(a, r": leader \(term 1\)", 10)
    b = cluster("b")
    # Both answer the API on one state: what one creates, the other lists.
    took = _provider_turns_active(b.endpoint)
    names = [p["CapacityProviderArn"] for p in h.make_client(a.endpoint).list_capacity_providers()["CapacityProviders"]]
    assert len(names) == 1, names
    assert took < 5, f"Active after {took:.2f} s"
    assert _leader_terms(a) == [1]
    assert _leader_terms(b) == [], _stderr(b)


def test_killed_leader_is_replaced_within_5_s(cluster):
    a = cluster("a")
    _wait_for(a, r": leader \(term 1\)", 10)
    b = cluster("b")
    _provider_turns_active(b.endpoint)
    a.proc.kill()  # kill -9: no hand-over
    a.proc.wait(timeout=5)
    killed = time.monotonic()
    _wait_for(b, r": leader \(term 2\)", TAKEOVER_LIMIT + 2)
    took = time.monotonic() - killed
    print(f"takeover after kill -9 of the leader: {took:.2f} s")
    assert took < TAKEOVER_LIMIT, f"takeover took {took:.2f} s"
    # The new leader reconciles.
    assert _provider_turns_active(b.endpoint) < 5
    a.proc = None


def test_a_leader_that_stops_hands_over_at_once(cluster):
    a = cluster("a")
    _wait_for(a, r": leader \(term 1\)", 10)
    b = cluster("b")
    assert a.stop() == 0
    # The lease was given up before the process exited: b leads at its next look (0.5 s), not
    # after the 3 s a silent leader's lease takes to expire.
    exited = time.monotonic()
    _wait_for(b, r": leader \(term 2\)", TAKEOVER_LIMIT)
    took = time.monotonic() - exited
    print(f"takeover after SIGTERM of the leader: {took:.2f} s after it exited")
    assert took < 2.0, f"hand-over took {took:.2f} s after the old leader exited"


def test_a_frozen_leader_is_replaced_and_steps_down_when_it_wakes(cluster):
    a = cluster("a")
    _wait_for(a, r": leader \(term 1\)", 10)
    b = cluster("b")
    a.proc.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    _wait_for(b, r": leader \(term 2\)", TAKEOVER_LIMIT + 2)
    assert time.monotonic() - frozen < TAKEOVER_LIMIT
    a.proc.send_signal(signal.SIGCONT)
    _wait_for(a, r"no longer the leader", 5)
    # One leader: b's reconciler serves what is created through a.
    assert _provider_turns_active(a.endpoint) < 5
    assert _leader_terms(a) == [1] and _leader_terms(b) == [2]


def test_code_packages_outlive_the_server_that_took_them(cluster, tmp_path):
    """A package uploaded through one server is handed out by another whose disk never had it,
    after the first server and its whole data dir are gone."""
    a = cluster("a", tmp_path / "data-a")
    b = cluster("b", tmp_path / "data-b")
    zip_bytes = h.python_zip(marker=h.uniq("pkg"))
    name = h.uniq("fn")
    created = h.make_client(a.endpoint).create_function(**h.function_request(name, None, zip_bytes=zip_bytes))
    a.proc.kill()
    a.proc.wait(timeout=5)
    a.proc = None
    shutil.rmtree(tmp_path / "data-a")
    b_disk = list((tmp_path / "data-b").rglob(f"*{hashlib.sha256(zip_bytes).hexdigest()}*"))
    got = h.make_client(b.endpoint).get_function(FunctionName=name)
    assert got["Configuration"]["CodeSha256"] == created["CodeSha256"]
    resp = requests.get(got["Code"]["Location"], timeout=10)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.content == zip_bytes
    assert b_disk == [], "b had the package on disk before it was asked"


def test_server_refuses_a_store_it_cannot_share(fleetfn_binary, tmp_path):
    out = subprocess.run(
        [str(fleetfn_binary), "server", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
         "--store", f"sqlite:{tmp_path / 'state.db'}", "--metrics-listen", "off"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert "needs a store its servers share" in out.stderr and "fleetfn serve" in out.stderr, out.stderr


def test_serve_refuses_a_clusters_database(cluster, fleetfn_binary, tmp_path):
    a = cluster("a")
    _wait_for(a, r": leader \(term 1\)", 10)
    out = subprocess.run(
        [str(fleetfn_binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "solo"),
         "--store", a.store_url, "--no-data-plane", "--metrics-listen", "off"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env=dict(os.environ, FLEETFN_ACCESS_KEY_ID=h.ACCESS_KEY, FLEETFN_SECRET_ACCESS_KEY=h.SECRET_KEY))
    assert out.returncode != 0
    assert "belongs to a cluster" in out.stderr and "second leader" in out.stderr, out.stderr
    assert "fleetfn-test" not in out.stderr, "no password in the message"
