"""Fixtures for the tests of fleetfn's own client commands (`fleetfn status`, `fleetfn wait`).

One `fleetfn serve --no-data-plane` for the session, started like the API suite's servers (the
FleetfnServer class of tests/api/conftest.py) but *without* FLEETFN_ACCESS_KEY_ID /
FLEETFN_SECRET_ACCESS_KEY, so that it generates its admin key pair and writes it to
`credentials.json` in its data dir, where the CLI finds it as a last resort. The data dir is
`<tmp>/xdg/fleetfn`, so `XDG_DATA_HOME=<tmp>/xdg` makes it the CLI's default data dir.

The CLI runs with an environment stripped of AWS_* and FLEETFN_* variables and a HOME of its own,
so nothing from the user's configuration leaks in.

Environment variables: FLEETFN_BIN, CARGO_TARGET_DIR (as in tests/api/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

API_DIR = Path(__file__).resolve().parents[1] / "api"
if str(API_DIR) not in sys.path:
    sys.path.insert(0, str(API_DIR))

import fleetfn_helpers as h  # noqa: E402  (tests/api/fleetfn_helpers.py)

# The server process management of the API suite, under its own module name so it does not
# collide with this conftest.
_spec = importlib.util.spec_from_file_location("fleetfn_api_conftest_cli", API_DIR / "conftest.py")
api_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api_conftest)


class GeneratedKeyServer(api_conftest.FleetfnServer):
    """A FleetfnServer that is not given admin keys: it generates them into credentials.json."""

    def start(self) -> "GeneratedKeyServer":
        assert self.proc is None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.starts += 1
            self.port = api_conftest._free_port()
            self.stdout_path = self.log_dir / f"{self.name}-{self.starts}.stdout.log"
            self.stderr_path = self.log_dir / f"{self.name}-{self.starts}.stderr.log"
            env = {k: v for k, v in os.environ.items()
                   if k not in ("FLEETFN_ACCESS_KEY_ID", "FLEETFN_SECRET_ACCESS_KEY")}
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(
                    [str(self.binary), "serve", "--listen", f"127.0.0.1:{self.port}",
                     "--data-dir", str(self.data_dir), "--no-data-plane"]
                    + list(getattr(self, "extra_args", [])),
                    stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                    start_new_session=True,
                )
            api_conftest._ALL_SERVERS.append(self)
            if self._wait_ready():
                return self
            log = self.logs()
            self.proc = None
            if attempt < 2 and ("in use" in log.lower() or "addrinuse" in log.lower()):
                continue
            pytest.fail(f"fleetfn did not become ready\n{log}", pytrace=False)
        raise AssertionError("unreachable")


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
def fleetfn_binary() -> Path:
    return api_conftest.find_binary()


@pytest.fixture(scope="session")
def xdg_data_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xdg")


@pytest.fixture(scope="session")
def server(fleetfn_binary, xdg_data_home, tmp_path_factory):
    logs = tmp_path_factory.mktemp("cli-logs")
    srv = GeneratedKeyServer(fleetfn_binary, xdg_data_home / "fleetfn", logs, name="cli")
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
        if isinstance(srv, api_conftest.FleetfnServer):
            rep.sections.append((f"fleetfn {srv.name} logs", srv.logs()))
