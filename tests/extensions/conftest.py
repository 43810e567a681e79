"""Fixtures for the extension suite (tests/extensions): one `fleetfn serve` with its data plane
and function URL endpoint, one capacity provider over three zones, the layers (built and
published once per session, on first use: extkit) and functions deleted at session end.

Environment variables: FLEETFN_BIN, FLEETFN_TESTFN_BIN, CARGO_TARGET_DIR (fleetfn_testkit.server),
FLEETFN_TESTEXT_BIN_DIR, FLEETFN_LWA_BIN, FLEETFN_TEST_CACHE (extkit).
"""

from __future__ import annotations

import pytest

import extkit
from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit.server import FleetfnServer


@pytest.fixture(scope="session")
def server(fleetfn_binary, tmp_path_factory):
    base = tmp_path_factory.mktemp("fleetfn-extensions")
    srv = FleetfnServer(fleetfn_binary, base / "data", base / "logs", name="extensions", data_plane=True)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def endpoint(server) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def lam(endpoint):
    return dp.no_retry_client(endpoint)


@pytest.fixture(scope="session")
def cp_arn(lam):
    name = h.uniq("extcp")
    h.create_active_cp(lam, name, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
    yield h.cp_arn_for(name)
    try:
        h.delete_cp_when_free(lam, name)
    except BaseException as err:  # noqa: BLE001 - cleanup must not hide test results
        print(f"could not delete capacity provider {name}: {err}")


class Layers:
    """Layer version ARNs, each built and published on first use."""

    BUILDERS = {
        "rust_extensions": (extkit.rust_extensions_zip, "fleetfn-testext events and telemetry extensions"),
        "pyext": (lambda: extkit.dir_zip("pyext"), "a Python extension on the raw HTTP APIs"),
        "paths": (lambda: extkit.dir_zip("paths"), "python/ and bin/"),
        "paths2": (lambda: extkit.dir_zip("paths2"), "overrides a module of paths"),
        "powertools": (extkit.powertools_zip, extkit.POWERTOOLS_REQUIREMENT),
        "web_adapter": (extkit.web_adapter_zip, f"Lambda Web Adapter {extkit.LWA_VERSION}"),
    }

    def __init__(self, lam):
        self.lam = lam
        self.arns: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        if key not in self.arns:
            build, description = self.BUILDERS[key]
            self.arns[key] = extkit.publish_layer(self.lam, f"ext-{key.replace('_', '-')}", build(), description)
        return self.arns[key]


@pytest.fixture(scope="session")
def layers(lam) -> Layers:
    return Layers(lam)


class Functions:
    """Creates the suite's functions and deletes them at session end."""

    def __init__(self, lam, endpoint, cp_arn):
        self.lam, self.endpoint, self.cp_arn = lam, endpoint, cp_arn
        self.names: list[str] = []

    def create(self, prefix: str, code: bytes, layers: list[str], **kwargs) -> str:
        name = extkit.create_function(self.lam, self.cp_arn, prefix, code, layers, **kwargs)
        self.names.append(name)
        return name

    def published(self, prefix: str, code: bytes, layers: list[str], **kwargs) -> dp.Publication:
        return extkit.publish(self.lam, self.endpoint, self.create(prefix, code, layers, **kwargs))

    def active(self, prefix: str, code: bytes, layers: list[str], single: bool = True, **kwargs) -> str:
        """Created, published Active, and (single) scaled to one Ready environment."""
        pub = self.published(prefix, code, layers, **kwargs)
        assert pub.final["State"] == "Active", (
            f"{pub.name}:{pub.version} went to {pub.final['State']} "
            f"({pub.final.get('StateReasonCode')}: {pub.final.get('StateReason')})")
        if single:
            extkit.single_environment(self.lam, self.endpoint, pub.name)
        return pub.name

    def close(self):
        for name in self.names:
            dp.delete_function_quietly(self.lam, name)


@pytest.fixture(scope="session")
def functions(lam, endpoint, cp_arn):
    f = Functions(lam, endpoint, cp_arn)
    yield f
    f.close()
