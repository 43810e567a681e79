"""Fixtures for the tests of fleetfn's own client commands (`fleetfn status`, `fleetfn wait`).

One `fleetfn serve --no-data-plane` for the session (fleetfn_testkit.server's FleetfnServer with
`admin_keys=False`: *without* FLEETFN_ACCESS_KEY_ID / FLEETFN_SECRET_ACCESS_KEY), so that it generates its admin key pair and writes it to
`credentials.json` in its data dir, where the CLI finds it as a last resort. The data dir is
`<tmp>/xdg/fleetfn`, so `XDG_DATA_HOME=<tmp>/xdg` makes it the CLI's default data dir.

The CLI runs with an environment stripped of AWS_* and FLEETFN_* variables and a HOME of its own,
so nothing from the user's configuration leaks in.

Environment variables: FLEETFN_BIN, CARGO_TARGET_DIR (fleetfn_testkit.server).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from fleetfn_testkit import api as h
from fleetfn_testkit.server import FleetfnServer


@dataclass
class Keys:
    access_key_id: str
    secret_access_key: str


@dataclass
class Cli:
    """Runs the fleetfn binary as a client, isolated from the user's AWS configuration."""

    binary: Path
    home: Path

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "FLEETFN_")) and k != "XDG_DATA_HOME"}
        env["HOME"] = str(self.home)
        env["NO_COLOR"] = "1"
        env.update(extra)
        return env

    def run(self, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args], env=env if env is not None else self.env(),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def xdg_data_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xdg")


@pytest.fixture(scope="session")
def server(fleetfn_binary, xdg_data_home, tmp_path_factory):
    logs = tmp_path_factory.mktemp("cli-logs")
    srv = FleetfnServer(fleetfn_binary, xdg_data_home / "fleetfn", logs, name="cli", admin_keys=False)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def keys(server) -> Keys:
    stored = json.loads((server.data_dir / "credentials.json").read_text())
    return Keys(stored["access_key_id"], stored["secret_access_key"])


@pytest.fixture(scope="session")
def cli(fleetfn_binary, tmp_path_factory) -> Cli:
    home = tmp_path_factory.mktemp("cli-home")
    return Cli(fleetfn_binary, home)


@pytest.fixture(scope="session")
def lam(server, keys):
    return boto3.client(
        "lambda", endpoint_url=server.endpoint, region_name=h.REGION,
        aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60),
    )

