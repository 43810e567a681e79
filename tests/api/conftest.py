"""Fixtures for the fleetfn black-box API suite.

The server under test is started as a subprocess:

    fleetfn serve --listen 127.0.0.1:PORT --data-dir DIR

with FLEETFN_ACCESS_KEY_ID / FLEETFN_SECRET_ACCESS_KEY in its environment, and is
considered ready when GET /fleetfn/health answers 200.

Binary lookup order: $FLEETFN_BIN, $CARGO_TARGET_DIR/debug/fleetfn (CARGO_TARGET_DIR
defaults to /root/.cache/fleetfn-target), <repo>/target/debug/fleetfn.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

import fleetfn_helpers as h

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

_ALL_SERVERS: list["FleetfnServer"] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes several seconds (still part of the default run)")


# --------------------------------------------------------------------------------------
# Server process management
# --------------------------------------------------------------------------------------


def find_binary() -> Path:
    candidates = []
    env_bin = os.environ.get("FLEETFN_BIN")
    if env_bin:
        candidates.append(Path(env_bin))
    else:
        target = os.environ.get("CARGO_TARGET_DIR") or "/root/.cache/fleetfn-target"
        candidates.append(Path(target) / "debug" / "fleetfn")
        candidates.append(REPO_ROOT / "target" / "debug" / "fleetfn")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail(
        "fleetfn binary not found; looked at: "
        + ", ".join(str(c) for c in candidates)
        + " (build it with `cargo build` or set FLEETFN_BIN)",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FleetfnServer:
    """One fleetfn process; logs go to files under `log_dir`."""

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, name: str = "server",
                 data_plane: bool = False, extra_args: list[str] | None = None):
        self.binary = binary
        self.extra_args = list(extra_args or [])
        # The API suite tests the control plane alone (`--no-data-plane`): published versions
        # stay Pending instead of starting environments for every test's version.
        self.data_plane = data_plane
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0
        self.stdout_path: Path | None = None
        self.stderr_path: Path | None = None
        self.last_returncode: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FleetfnServer":
        assert self.proc is None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.starts += 1
            self.port = _free_port()
            self.stdout_path = self.log_dir / f"{self.name}-{self.starts}.stdout.log"
            self.stderr_path = self.log_dir / f"{self.name}-{self.starts}.stderr.log"
            env = dict(os.environ)
            env["FLEETFN_ACCESS_KEY_ID"] = h.ACCESS_KEY
            env["FLEETFN_SECRET_ACCESS_KEY"] = h.SECRET_KEY
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(
                    [str(self.binary), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)]
                    + ([] if self.data_plane else ["--no-data-plane"]) + self.extra_args,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                )
            _ALL_SERVERS.append(self)
            if self._wait_ready():
                return self
            # Exited during startup: retry only for a port race.
            log = self.logs()
            self.proc = None
            if attempt < 2 and ("in use" in log.lower() or "addrinuse" in log.lower()):
                continue
            pytest.fail(f"fleetfn did not become ready within {READY_TIMEOUT:.0f}s\n{log}", pytrace=False)
        raise AssertionError("unreachable")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        url = f"{self.endpoint}/fleetfn/health"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.last_returncode = rc
                return False
            try:
                if requests.get(url, timeout=1.0).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.05)
        # Not ready in time: stop it and report.
        self._terminate()
        pytest.fail(f"fleetfn did not answer 200 on {url} within {READY_TIMEOUT:.0f}s\n{self.logs()}", pytrace=False)

    def _terminate(self) -> int | None:
        proc = self.proc
        if proc is None:
            return self.last_returncode
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
                self.proc = None
                self.last_returncode = proc.returncode
                raise AssertionError(
                    f"fleetfn did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM (killed)\n{self.logs()}"
                )
        self.proc = None
        self.last_returncode = proc.returncode
        return proc.returncode

    def stop(self) -> int | None:
        """SIGTERM and wait (bounded); returns the exit status."""
        return self._terminate()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self, tail_lines: int = 150) -> str:
        parts = [f"--- fleetfn {self.name} (port {self.port}, data dir {self.data_dir}) ---"]
        if self.last_returncode is not None or (self.proc and self.proc.poll() is not None):
            rc = self.proc.returncode if self.proc else self.last_returncode
            parts.append(f"exit status: {rc}")
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            if path and path.exists():
                lines = path.read_text(errors="replace").splitlines()
                parts.append(f"--- {label} ({path}, last {min(len(lines), tail_lines)} of {len(lines)} lines) ---")
                parts.extend(lines[-tail_lines:])
        return "\n".join(parts)


@atexit.register
def _kill_leftovers():  # only processes this suite started, by their own pid
    for srv in _ALL_SERVERS:
        if srv.proc is not None and srv.proc.poll() is None:
            try:
                srv.proc.kill()
            except OSError:
                pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        seen = set()
        for value in getattr(item, "funcargs", {}).values():
            servers = []
            if isinstance(value, FleetfnServer):
                servers = [value]
            elif isinstance(value, ServerFactory):
                servers = value.servers
            for srv in servers:
                if id(srv) not in seen:
                    seen.add(id(srv))
                    rep.sections.append((f"fleetfn {srv.name} logs", srv.logs()))


# --------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------


# Kept here for the fixtures; tests import it from fleetfn_helpers (a conftest module name is
# shared by every suite's conftest).
make_client = h.make_client


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fleetfn_binary() -> Path:
    return find_binary()


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


class ServerFactory:
    """Start/stop/restart fleetfn processes on a data dir (function scoped)."""

    def __init__(self, binary: Path, base: Path):
        self.binary = binary
        self.base = base
        self.servers: list[FleetfnServer] = []

    def new(self, data_dir: Path | None = None, name: str | None = None,
            extra_args: list[str] | None = None) -> FleetfnServer:
        name = name or f"fresh{len(self.servers) + 1}"
        srv = FleetfnServer(self.binary, data_dir or (self.base / f"{name}-data"), self.base / "logs", name=name,
                            extra_args=extra_args)
        self.servers.append(srv)
        return srv.start()

    def close(self):
        errors = []
        for srv in self.servers:
            try:
                srv.stop()
            except AssertionError as e:  # report, but stop the others first
                errors.append(str(e))
        if errors:
            raise AssertionError("\n".join(errors))


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
