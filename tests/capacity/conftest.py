"""Fixtures for the capacity suite (tests/capacity): instances, placement, throttling with a
reason, autoscaling, failures and rollouts, against a real `fleetfn serve` with its data plane.

The server runs with a shrunken vCPU (`--vcpu-scale 0.25`: a virtual vCPU is a quarter of a
host CPU, so a CPU-bound function saturates its environment without saturating the machine)
and short scale-in timers (`--scale-in-after 3 --idle-instance-after 2`), so scale-in happens in
seconds rather than LMI's minutes. Every test makes its own capacity providers and functions and
deletes them at the end.
"""

from __future__ import annotations

import pytest

from fleetfn_testkit.resources import Resources, dp_client
from fleetfn_testkit.server import FleetfnServer, find_binary

SERVER_ARGS = ["--vcpu-scale", "0.25", "--scale-in-after", "3", "--idle-instance-after", "2",
               "--max-local-vcpus", "512"]


def start_server(tmp_path_factory, name: str, extra: list[str]):
    base = tmp_path_factory.mktemp(f"fleetfn-{name}")
    srv = FleetfnServer(find_binary(), base / "data", base / "logs", name=name,
                        data_plane=True, extra_args=extra)
    return srv.start()


def stop_server(srv):
    srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory, "capacity", SERVER_ARGS)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def endpoint(server) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def lam(endpoint):
    return dp_client(endpoint)


@pytest.fixture
def server_factory(tmp_path_factory):
    """Start extra servers with their own flags; stopped at the end of the test."""
    started = []

    def start(name: str, extra: list[str]):
        srv = start_server(tmp_path_factory, name, extra)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        stop_server(srv)


@pytest.fixture
def res(lam):
    r = Resources(lam)
    yield r
    r.close()
