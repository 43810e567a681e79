"""`fleetfn serve` as a subprocess, for every suite.

    fleetfn serve --listen 127.0.0.1:PORT --data-dir DIR [--store URL] [--no-data-plane] [extra args]

(`--store` with FLEETFN_TEST_STORE=postgres: a database of the session's PostgreSQL per data dir,
fleetfn_testkit.postgres) with FLEETFN_ACCESS_KEY_ID / FLEETFN_SECRET_ACCESS_KEY in its environment (unless
`admin_keys=False`), considered ready when GET /fleetfn/health answers 200. Logs go to files;
tests/conftest.py attaches the tail of every server a failing test used or left running.

Binary lookup order: $FLEETFN_BIN, $CARGO_TARGET_DIR/debug/fleetfn (CARGO_TARGET_DIR
defaults to /root/.cache/fleetfn-target), <repo>/target/debug/fleetfn.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import re
import time
from pathlib import Path

import pytest
import requests

from . import api as h
from . import postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

_ALL_SERVERS: list["FleetfnServer"] = []
_RUNTIME_DIR: Path | None = None


def session_runtime_dir() -> Path:
    """One runtime directory (`FLEETFN_RUNTIME_DIR`: awslambdaric, boto3, the JavaScript SDK)
    for every fleetfn this test session starts, so each runtime is installed once per session
    rather than once per data dir; removed at exit. Readable by the environments' own uids."""
    global _RUNTIME_DIR
    if _RUNTIME_DIR is None:
        import shutil
        import tempfile
        _RUNTIME_DIR = Path(tempfile.mkdtemp(prefix="fleetfn-test-runtimes-"))
        _RUNTIME_DIR.chmod(0o755)
        atexit.register(shutil.rmtree, _RUNTIME_DIR, True)
    return _RUNTIME_DIR


def process_env(**overrides: str) -> dict[str, str]:
    """The environment of a fleetfn process: ours, with the session's runtime dir unless set."""
    env = dict(os.environ)
    env.setdefault("FLEETFN_RUNTIME_DIR", str(session_runtime_dir()))
    env.update(overrides)
    return env


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class FleetfnServer:
    """One fleetfn process; logs go to files under `log_dir`."""

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, name: str = "server",
                 data_plane: bool = False, extra_args: list[str] | None = None,
                 admin_keys: bool = True, command: str = "serve", store_url: str | None = None,
                 tls_ca: Path | None = None, host: str = "127.0.0.1", extra_env: dict | None = None):
        self.binary = binary
        # Variables added to the process's environment (AWS credentials, STS endpoints).
        self.extra_env = dict(extra_env or {})
        # With `tls_ca` (the CA of the certificate in its --tls-cert) it serves https.
        self.tls_ca = tls_ca
        # The address it listens on (a test network's bridge address for agents in network
        # namespaces; tests/cluster).
        self.host = host
        # `serve` (everything on one machine) or `server` (one of several API servers on the
        # PostgreSQL store `store_url`, named `name` in the leader lease).
        assert command in ("serve", "server"), command
        # FLEETFN_TEST_COMMAND=server runs the control-plane suites on `fleetfn server` (one API
        # server of a cluster, on the session's PostgreSQL) instead of `fleetfn serve`.
        if command == "serve" and not data_plane and os.environ.get("FLEETFN_TEST_COMMAND") == "server":
            command = "server"
            store_url = store_url or postgres.session_server().database_for(Path(data_dir))
        assert command == "serve" or store_url, "fleetfn server needs a store_url"
        self.command = command
        self.fixed_store_url = store_url
        # Without admin keys in its environment the server generates a pair into
        # `credentials.json` in its data dir (tests/cli reads them from there).
        self.admin_keys = admin_keys
        self.extra_args = list(extra_args or [])
        # The API suite tests the control plane alone (`--no-data-plane`): published versions
        # stay Pending instead of starting environments for every test's version.
        self.data_plane = data_plane
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        # The function URL endpoint's port (`--url-listen`, a free one at each start unless
        # the extra args name one): FunctionUrls carry it.
        self.url_port: int | None = None
        self.starts = 0
        self.stdout_path: Path | None = None
        self.stderr_path: Path | None = None
        self.last_returncode: int | None = None
        # The store's `--store URL` (PostgreSQL), or None: SQLite in the data dir.
        self.store_url: str | None = None

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls_ca else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def url_endpoint(self) -> str:
        """The function URL endpoint (plain HTTP): `{url_endpoint}/_fleetfn/url/<url-id>/...`."""
        return f"http://{self.host}:{self.url_port}"

    @property
    def verify(self) -> str | bool:
        """`verify=` for requests and boto3: the CA of an https server."""
        return str(self.tls_ca) if self.tls_ca else True

    def start(self, same_port: bool = False) -> "FleetfnServer":
        """Starts the process; `same_port` reuses the port of its last start (a restart that
        clients reach at the same address)."""
        assert self.proc is None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.fixed_store_url:
            store = ["--store", self.fixed_store_url]
        else:
            store = postgres.store_args(self.data_dir)
        self.store_url = store[1] if store else None
        for attempt in range(3):
            self.starts += 1
            if not (same_port and self.port and attempt == 0):
                self.port = free_port(self.host)
            self.stdout_path = self.log_dir / f"{self.name}-{self.starts}.stdout.log"
            self.stderr_path = self.log_dir / f"{self.name}-{self.starts}.stderr.log"
            env = {k: v for k, v in process_env().items()
                   if k not in ("FLEETFN_ACCESS_KEY_ID", "FLEETFN_SECRET_ACCESS_KEY")}
            env.update(self.extra_env)
            if self.admin_keys:
                env["FLEETFN_ACCESS_KEY_ID"] = h.ACCESS_KEY
                env["FLEETFN_SECRET_ACCESS_KEY"] = h.SECRET_KEY
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                mode = [] if self.data_plane else ["--no-data-plane"]
                if self.command == "server":
                    mode += ["--server-id", self.name]
                if "--url-listen" not in self.extra_args:
                    if not (same_port and self.url_port and attempt == 0):
                        self.url_port = free_port(self.host)
                    mode += ["--url-listen", f"{self.host}:{self.url_port}"]
                self.proc = subprocess.Popen(
                    [str(self.binary), self.command, "--listen", f"{self.host}:{self.port}",
                     "--data-dir", str(self.data_dir)] + store + mode + self.extra_args,
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
                if requests.get(url, timeout=1.0, verify=self.verify).status_code == 200:
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
        store = "PostgreSQL" if self.store_url else "SQLite"
        parts = [f"--- fleetfn {self.name} (port {self.port}, data dir {self.data_dir}, {store} store) ---"]
        if self.last_returncode is not None or (self.proc and self.proc.poll() is not None):
            rc = self.proc.returncode if self.proc else self.last_returncode
            parts.append(f"exit status: {rc}")
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            if path and path.exists():
                lines = path.read_text(errors="replace").splitlines()
                parts.append(f"--- {label} ({path}, last {min(len(lines), tail_lines)} of {len(lines)} lines) ---")
                parts.extend(lines[-tail_lines:])
        return "\n".join(parts)


def started_servers() -> list["FleetfnServer"]:
    """Every server this session started (running or stopped), oldest first."""
    return list(_ALL_SERVERS)


@atexit.register
def _kill_leftovers():  # only processes this suite started, by their own pid
    for srv in _ALL_SERVERS:
        if srv.proc is not None and srv.proc.poll() is None:
            try:
                srv.proc.kill()
            except OSError:
                pass


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


def stderr_of(srv: FleetfnServer) -> str:
    """What the server's current (or last) process wrote on stderr."""
    return srv.stderr_path.read_text(errors="replace") if srv.stderr_path else ""


def wait_for_line(srv: FleetfnServer, pattern: str, timeout: float) -> float:
    """Seconds until `pattern` (a regex) appears in the server's stderr; fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if re.search(pattern, stderr_of(srv)):
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{srv.name} did not print {pattern!r} within {timeout} s:\n{srv.logs(60)}")
