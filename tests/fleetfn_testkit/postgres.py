"""The store the suites' servers use: SQLite in each data dir (the default), or PostgreSQL with
FLEETFN_TEST_STORE=postgres, as crates/fleetfn-testutil's Rust helper does it:

- a throwaway cluster, started once per session: `initdb` into a temporary directory and
  `postgres` on a free 127.0.0.1 port (password auth over TCP, fsync off), as `nobody` when root
  (PostgreSQL refuses root). A small `sh` supervisor stops it and removes the directory when its
  stdin closes: at the end of the session, or when pytest dies however it dies;
- or the server at FLEETFN_TEST_POSTGRES_URL (an admin URL whose user may CREATE DATABASE).

Each data dir a server starts on gets its own database (created on first use), so a restart on
the same data dir finds its state and a fresh data dir starts empty, as with SQLite.
Without PostgreSQL the tests skip with `needs postgres: …` (FLEETFN_TEST_OPT_OUT=postgres).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from . import prereq

STORE_VAR = "FLEETFN_TEST_STORE"
URL_VAR = "FLEETFN_TEST_POSTGRES_URL"
USER = "fleetfn"
PASSWORD = "fleetfn-test"
READY_TIMEOUT = 60.0

_SUPERVISOR = r'''base="$1"; log="$2"; shift 2
"$@" >"$log" 2>&1 &
pid=$!
cat >/dev/null
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$base"'''


def store_kind() -> str:
    """`sqlite` (default) or `postgres`, from FLEETFN_TEST_STORE."""
    kind = os.environ.get(STORE_VAR, "").strip().lower() or "sqlite"
    if kind not in ("sqlite", "postgres"):
        raise pytest.UsageError(f"{STORE_VAR}={kind!r}: expected sqlite or postgres")
    return kind


def bindir() -> Path | None:
    """The directory of initdb/postgres/psql: PATH's, else Debian's newest."""
    found = shutil.which("initdb")
    # Resolved: `initdb` on PATH may be a link into the server's directory.
    if found and (Path(found).resolve().parent / "pg_isready").is_file():
        return Path(found).resolve().parent
    root = Path("/usr/lib/postgresql")
    majors = sorted((int(p.name), p / "bin") for p in root.iterdir()
                    if p.name.isdigit() and (p / "bin" / "initdb").is_file()) if root.is_dir() else []
    return majors[-1][1] if majors else None


def _psql() -> str | None:
    b = bindir()
    if b and (b / "psql").is_file():
        return str(b / "psql")
    return shutil.which("psql")


def missing() -> str | None:
    """Why this host cannot give the suites a PostgreSQL server, or None."""
    if _psql() is None:
        return "no `psql` (apt-get install postgresql)"
    if os.environ.get(URL_VAR):
        return None
    if bindir() is None:
        return ("no PostgreSQL server binaries: no `initdb` on PATH or under /usr/lib/postgresql "
                f"(apt-get install postgresql), and {URL_VAR} is not set")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "no `setpriv` (util-linux) to run PostgreSQL as nobody"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_database(url: str, database: str) -> str:
    scheme, _, rest = url.partition("://")
    cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    query = tail[tail.find("?"):] if "?" in tail else ""
    return f"{scheme}://{authority}/{database}{query}"


class TestPostgres:
    """A PostgreSQL server for the session: a throwaway cluster, or URL_VAR's."""

    def __init__(self):
        self.supervisor: subprocess.Popen | None = None
        self.base: Path | None = None
        self._dbs: dict[str, str] = {}
        url = os.environ.get(URL_VAR)
        self.admin_url = url if url else self._start()

    def _start(self) -> str:
        for _ in range(3):
            url = self._start_once()
            if url:
                return url
        pytest.fail("postgres found no free port in 3 attempts", pytrace=False)

    def _start_once(self) -> str | None:
        """A new cluster's admin URL, or None when its port was taken meanwhile."""
        b = bindir()
        base = Path(tempfile.mkdtemp(prefix="fleetfn-pg-"))
        self.base = base
        prefix: list[str] = []
        pwfile = base / "pw"
        pwfile.write_text(PASSWORD)
        if os.geteuid() == 0:
            import pwd
            nobody = pwd.getpwnam("nobody")
            for p in (base, pwfile):
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
            prefix = [shutil.which("setpriv"), f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                      "--clear-groups", "--"]
        data = base / "data"
        out = subprocess.run(prefix + [str(b / "initdb"), "-D", str(data), "-U", USER, "-E", "UTF8",
                                       "--locale=C", "--no-sync", "--auth-local=trust",
                                       "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            pytest.fail(f"initdb failed ({out.returncode}):\n{out.stdout}{out.stderr}", pytrace=False)
        log = base / "postgres.log"
        port = _free_port()
        self.supervisor = subprocess.Popen(
            ["sh", "-c", _SUPERVISOR, "fleetfn-test-postgres", str(base), str(log)] + prefix
            + [str(b / "postgres"), "-D", str(data), "-k", str(base), "-h", "127.0.0.1", "-p", str(port),
               "-F", "-c", "max_connections=300"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        text = ""
        while time.monotonic() < deadline:
            ready = subprocess.run([str(b / "pg_isready"), "-q", "-h", str(base), "-p", str(port), "-U", USER],
                                   stdin=subprocess.DEVNULL).returncode == 0
            if ready:
                return f"postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres"
            text = log.read_text(errors="replace") if log.exists() else ""
            # pg_isready's own attempts log "FATAL: the database system is starting up".
            if any("FATAL" in line and "starting up" not in line for line in text.splitlines()):
                break
            time.sleep(0.05)
        self.stop()  # the supervisor removes the directory
        if "could not bind" in text or "could not create any TCP/IP sockets" in text:
            return None
        pytest.fail(f"postgres did not start on 127.0.0.1:{port}:\n{text}", pytrace=False)

    def stop(self):
        """Closes the supervisor's stdin: it stops postgres and removes the directory."""
        sup = self.supervisor
        if sup is None:
            return
        self.supervisor = None
        if sup.stdin:
            sup.stdin.close()
        try:
            sup.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait(timeout=5)

    def psql(self, url: str, sql: str) -> str:
        """Runs `sql` on `url`, returning psql's unaligned, tuples-only output."""
        out = subprocess.run([_psql(), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        if out.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed ({out.returncode}): {out.stderr}")
        return out.stdout

    def database_for(self, data_dir: Path) -> str:
        """The URL of the database of `data_dir`'s server, created on first use."""
        key = str(Path(data_dir).resolve())
        if key not in self._dbs:
            name = f"fleetfn_t_{os.getpid()}_{len(self._dbs) + 1}"
            self.psql(self.admin_url, f"CREATE DATABASE {name}")
            self._dbs[key] = with_database(self.admin_url, name)
        return self._dbs[key]


_SESSION: TestPostgres | None = None


def session_server() -> TestPostgres:
    """The session's PostgreSQL (started on first use); skips with `needs postgres: …` when this
    host has none or FLEETFN_TEST_OPT_OUT names postgres."""
    global _SESSION
    prereq.require("postgres", missing())
    if _SESSION is None:
        _SESSION = TestPostgres()
        atexit.register(_SESSION.stop)
    return _SESSION


def store_args(data_dir: Path) -> list[str]:
    """`fleetfn serve` arguments selecting the session's store for a server on `data_dir`:
    none for SQLite (the default file in the data dir), `--store URL` for PostgreSQL."""
    if store_kind() != "postgres":
        return []
    return ["--store", session_server().database_for(data_dir)]
