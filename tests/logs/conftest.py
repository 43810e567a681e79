"""Fixtures for the function-logs suite (tests/logs): `fleetfn logs` and
`GET /fleetfn/v1/functions/{name}/logs` against a real `fleetfn serve` with its data plane.

One server for the session with a small log cap (`--log-max-bytes 4MiB --log-segment-bytes
1MiB`, passed on to its agents), one capacity provider over three zones, and two functions
published to $LATEST.PUBLISHED: a Python function that prints what the event asks for
(tests/logs/functions/python/app.py) and the Rust test function. `fleetfn logs` runs as a
subprocess with the server's keys in AWS_* variables and a HOME of its own.

Environment variables: FLEETFN_BIN, FLEETFN_TESTFN_BIN, CARGO_TARGET_DIR (fleetfn_testkit.server).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit.server import FleetfnServer

HERE = Path(__file__).resolve().parent
LOG_CAP = 4 * 1024 * 1024
SEGMENT = 1024 * 1024
SERVER_ARGS = ["--log-max-bytes", str(LOG_CAP), "--log-segment-bytes", str(SEGMENT)]

@pytest.fixture(scope="session")
def server(fleetfn_binary, tmp_path_factory):
    base = tmp_path_factory.mktemp("fleetfn-logs")
    srv = FleetfnServer(fleetfn_binary, base / "data", base / "logs", name="logs",
                        data_plane=True, extra_args=SERVER_ARGS)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def log_cap() -> int:
    return LOG_CAP


@pytest.fixture(scope="session")
def lam(server):
    return dp.no_retry_client(server.endpoint)


@pytest.fixture(scope="session")
def cp_arn(lam):
    name = h.uniq("logscp")
    h.create_active_cp(lam, name, VpcConfig={"SubnetIds": list(dp.ZONES),
                                             "SecurityGroupIds": list(h.SECURITY_GROUPS)})
    yield h.cp_arn_for(name)
    try:
        h.delete_cp_when_free(lam, name)
    except BaseException as err:  # noqa: BLE001 - cleanup must not hide results
        print(f"could not delete capacity provider {name}: {err}")


def printer_zip() -> bytes:
    return h.make_zip([("app.py", (HERE / "functions" / "python" / "app.py").read_text(), 0o644)])


@pytest.fixture(scope="session")
def make_function(lam, server, cp_arn):
    """Creates and publishes a function (python printer or rust) with one environment, Active."""
    made: list[str] = []

    def make(runtime: str = "python", timeout: int = 60) -> str:
        zip_bytes = printer_zip() if runtime == "python" else None
        name = dp.create_lmi_function(lam, cp_arn, runtime, name=h.uniq(f"logs-{runtime}"), zip_bytes=zip_bytes,
                                      timeout=timeout)
        made.append(name)
        dp.publish_active(lam, server.endpoint, name, runtime)
        return name

    yield make
    for name in made:
        dp.delete_function_quietly(lam, name)


@pytest.fixture(scope="session")
def printer(make_function) -> str:
    return make_function("python")


@dataclass
class Cli:
    binary: Path
    home: Path
    endpoint: str

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLEETFN_"))}
        env.update(HOME=str(self.home), NO_COLOR="1", AWS_ACCESS_KEY_ID=h.ACCESS_KEY,
                   AWS_SECRET_ACCESS_KEY=h.SECRET_KEY, AWS_DEFAULT_REGION=h.REGION)
        return env

    def args(self, *args: str) -> list[str]:
        return [str(self.binary), "logs", *args, "--endpoint-url", self.endpoint]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.args(*args), env=self.env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.args(*args), env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, bufsize=1)


@pytest.fixture(scope="session")
def cli(server, fleetfn_binary, tmp_path_factory) -> Cli:
    return Cli(fleetfn_binary, tmp_path_factory.mktemp("logs-home"), server.endpoint)
