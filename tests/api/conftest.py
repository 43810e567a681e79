"""Fixtures of the control-plane suite (tests/api): one `fleetfn serve --no-data-plane` for the
session (published versions stay Pending instead of starting environments for every test's
version), fresh servers on demand (`server_factory`), boto3 clients and the AWS CLI. The server
itself is fleetfn_testkit.server's.
"""

from __future__ import annotations

import os

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit.server import FleetfnServer, ServerFactory

make_client = h.make_client


@pytest.fixture(scope="session")
def server(fleetfn_binary, tmp_path_factory) -> FleetfnServer:
    """One server for the whole session; tests use unique resource names."""
    base = tmp_path_factory.mktemp("fleetfn-session")
    srv = FleetfnServer(fleetfn_binary, base / "data", base / "logs", name="session")
    srv.start()
    yield srv
    rc = srv.stop()
    print(f"\nfleetfn session server exited with {rc}; logs in {base / 'logs'}")


@pytest.fixture(scope="session")
def endpoint(server) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def lam(endpoint):
    """Normal boto3 client (client-side parameter validation on)."""
    return make_client(endpoint)


@pytest.fixture(scope="session")
def lam_nv(endpoint):
    """Client with client-side parameter validation off, so out-of-range values
    reach the server (botocore only checks `min`, never `max` or patterns)."""
    return make_client(endpoint, validate=False)


@pytest.fixture(scope="module")
def cp(lam) -> dict:
    """An Active capacity provider private to one test module."""
    return h.create_active_cp(lam, h.uniq("modcp"))


@pytest.fixture(scope="module")
def cp_arn(cp) -> str:
    return cp["CapacityProviderArn"]


@pytest.fixture
def server_factory(fleetfn_binary, tmp_path) -> ServerFactory:
    factory = ServerFactory(fleetfn_binary, tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def aws_cli() -> str:
    import shutil
    import sys

    exe = shutil.which("aws", path=os.path.dirname(sys.executable)) or shutil.which("aws")
    if not exe:
        pytest.fail("the `aws` CLI was not found next to the Python interpreter or on PATH "
                    "(pip install -r tests/requirements.txt)", pytrace=False)
    return exe


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory) -> dict:
    """Environment for `aws` subprocesses, isolated from any user configuration."""
    d = tmp_path_factory.mktemp("awscli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": h.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": h.SECRET_KEY,
        "AWS_DEFAULT_REGION": h.REGION,
        "AWS_CONFIG_FILE": str(d / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(d / "credentials"),
        "AWS_PAGER": "",
    })
    return env
