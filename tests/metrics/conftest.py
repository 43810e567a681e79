"""Fixtures for the metrics suite (tests/metrics): a real `fleetfn serve` with its data plane and
`--metrics-listen` on a free loopback port, scraped with the `prometheus_client` parsers.

The server runs with `--idle-instance-after 2`, so instances emptied by a scale-in go away in
seconds and the instance gauges settle quickly. Every test makes its own capacity providers and
functions (tests/capacity/conftest_support.py) and deletes them at the end.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for sub in ("api", "dataplane", "capacity"):
    p = str(ROOT / sub)
    if p not in sys.path:
        sys.path.insert(0, p)

import fleetfn_helpers as h  # noqa: E402,F401

_spec = importlib.util.spec_from_file_location("fleetfn_api_conftest_metrics", ROOT / "api" / "conftest.py")
api_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api_conftest)
FleetfnServer = api_conftest.FleetfnServer
free_port = api_conftest._free_port  # noqa: SLF001 - the API suite's free-port helper

from conftest_support import Resources, dp_client  # noqa: E402

_SERVERS: list = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in _SERVERS:
            rep.sections.append((f"fleetfn {srv.name} logs", srv.logs(tail_lines=80)))


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("fleetfn-metrics")
    port = free_port()
    srv = FleetfnServer(api_conftest.find_binary(), base / "data", base / "logs", name="metrics",
                        data_plane=True,
                        extra_args=["--metrics-listen", f"127.0.0.1:{port}", "--idle-instance-after", "2"])
    srv.start()
    srv.metrics_url = f"http://127.0.0.1:{port}/metrics"
    _SERVERS.append(srv)
    yield srv
    _SERVERS.remove(srv)
    srv.stop()


@pytest.fixture(scope="session")
def fleetfn_bin():
    return api_conftest.find_binary()


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
