"""Fixtures for the metrics suite (tests/metrics): a real `fleetfn serve` with its data plane and
`--metrics-listen` on a free loopback port, scraped with the `prometheus_client` parsers.

The server runs with `--idle-instance-after 2`, so instances emptied by a scale-in go away in
seconds and the instance gauges settle quickly. Every test makes its own capacity providers and
functions (fleetfn_testkit.resources) and deletes them at the end.
"""

from __future__ import annotations

import pytest

from fleetfn_testkit.resources import Resources, dp_client
from fleetfn_testkit.server import FleetfnServer, find_binary, free_port


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("fleetfn-metrics")
    port = free_port()
    srv = FleetfnServer(find_binary(), base / "data", base / "logs", name="metrics",
                        data_plane=True,
                        extra_args=["--metrics-listen", f"127.0.0.1:{port}", "--idle-instance-after", "2"])
    srv.start()
    srv.metrics_url = f"http://127.0.0.1:{port}/metrics"
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def fleetfn_bin(fleetfn_binary):
    return fleetfn_binary


@pytest.fixture(scope="session")
def endpoint(server) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def metrics_url(server) -> str:
    return server.metrics_url


@pytest.fixture(scope="session")
def lam(endpoint):
    return dp_client(endpoint)


@pytest.fixture
def res(lam):
    r = Resources(lam)
    yield r
    r.close()
