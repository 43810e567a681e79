"""Fixtures for the fleetfn black-box data-plane suite (tests/dataplane).

One `fleetfn serve` for the whole data-plane session (fleetfn_testkit.server), one capacity provider with
three subnets (= three zones), and three shared functions published to $LATEST.PUBLISHED:
the Rust test function (lambda_runtime `run_concurrent`), a Python function (awslambdaric)
and a Node.js function, each with PerExecutionEnvironmentMaxConcurrency=8, MemorySize=2048,
Timeout=3 s. Modules create further functions through `fn_factory`, which deletes them at
module teardown so their environments stop.

Environment variables: FLEETFN_BIN (server binary), FLEETFN_TESTFN_BIN (Rust test function),
FLEETFN_HTTPFN_BIN (the lambda_http test application, crates/fleetfn-httpfn),
CARGO_TARGET_DIR (default /root/.cache/fleetfn-target).
"""

from __future__ import annotations

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit.server import FleetfnServer

make_client = dp.no_retry_client


@pytest.fixture(scope="session")
def server(fleetfn_binary, tmp_path_factory):
    base = tmp_path_factory.mktemp("fleetfn-dataplane")
    srv = FleetfnServer(fleetfn_binary, base / "data", base / "logs", name="dataplane", data_plane=True)
    srv.start()
    yield srv
    rc = srv.stop()
    print(f"\nfleetfn data-plane server exited with {rc}; logs in {base / 'logs'}")


@pytest.fixture(scope="session")
def endpoint(server) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def lam(endpoint):
    return make_client(endpoint)


@pytest.fixture(scope="session")
def cp_arn(lam):
    name = h.uniq("dpcp")
    h.create_active_cp(lam, name, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
    yield h.cp_arn_for(name)
    # Best effort: the functions are deleted by their fixtures before this runs.
    try:
        h.delete_cp_when_free(lam, name)
    except BaseException as err:  # noqa: BLE001 - cleanup must not hide test results
        print(f"could not delete capacity provider {name}: {err}")


@pytest.fixture(scope="session")
def shared(lam, endpoint, cp_arn) -> dict:
    """The three shared functions, published to $LATEST.PUBLISHED at the same time.

    Returns runtime -> dp.Publication (with the GetFunction states seen and the
    environments listed at the moment the version first left Pending). The fixture does
    not assert that they became Active: test_invoke.py checks that (point 1) and the
    tests that need a working function use `shared_active`.
    """
    names = {rt: dp.create_lmi_function(lam, cp_arn, rt, name=h.uniq(f"dp-shared-{rt}"), variables=dp.SHARED_VARIABLES)
             for rt in dp.RUNTIMES}
    pubs = [dp.publish(lam, names[rt], rt) for rt in dp.RUNTIMES]
    dp.wait_published(lam, endpoint, pubs)
    yield {p.runtime: p for p in pubs}
    for name in names.values():
        dp.delete_function_quietly(lam, name)


@pytest.fixture
def shared_active(shared):
    def get(runtime: str) -> dp.Publication:
        pub = shared[runtime]
        if pub.final["State"] != "Active":
            pytest.fail(f"the shared {runtime} function did not become Active: {pub.final.get('State')} "
                        f"({pub.final.get('StateReasonCode')}: {pub.final.get('StateReason')})")
        return pub
    return get


class FunctionFactory:
    """Creates LMI functions for one module and deletes them at module teardown."""

    def __init__(self, lam, endpoint, cp_arn):
        self.lam, self.endpoint, self.cp_arn = lam, endpoint, cp_arn
        self.names: list[str] = []

    def create(self, runtime: str, **kwargs) -> str:
        name = dp.create_lmi_function(self.lam, self.cp_arn, runtime, **kwargs)
        self.names.append(name)
        return name

    def published(self, runtime: str, **kwargs) -> dp.Publication:
        """Create and publish to $LATEST.PUBLISHED; wait until Active."""
        return dp.publish_active(self.lam, self.endpoint, self.create(runtime, **kwargs), runtime)

    def close(self):
        for name in self.names:
            dp.delete_function_quietly(self.lam, name)


@pytest.fixture(scope="module")
def fn_factory(lam, endpoint, cp_arn):
    factory = FunctionFactory(lam, endpoint, cp_arn)
    yield factory
    factory.close()
