"""`fleetfn serve --store URL` / FLEETFN_STORE: the store is chosen at start, its schema is
migrated, and a store that cannot be opened stops the start with a message saying what to fix
(never a password in it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from fleetfn_testkit import api as h
from fleetfn_testkit import postgres


def _serve(fleetfn_binary, tmp_path, args, env_extra=None, wait_for=None):
    """Runs `fleetfn serve` on a fresh data dir; with `wait_for`, until that text is on stderr
    (then stops it), else until it exits. Returns (exit status, stderr)."""
    env = dict(os.environ, FLEETFN_ACCESS_KEY_ID=h.ACCESS_KEY, FLEETFN_SECRET_ACCESS_KEY=h.SECRET_KEY)
    env.pop("FLEETFN_STORE", None)
    env.update(env_extra or {})
    err_path = tmp_path / "stderr.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [str(fleetfn_binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
             "--no-data-plane", "--metrics-listen", "off"] + args,
            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = err_path.read_text(errors="replace")
            if wait_for is not None and wait_for in text:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=15)
                return proc.returncode, text
            if proc.poll() is not None:
                return proc.returncode, err_path.read_text(errors="replace")
            time.sleep(0.05)
        raise AssertionError(f"fleetfn neither exited nor printed {wait_for!r} in 30 s:\n{text}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unknown_store_scheme_is_refused(fleetfn_binary, tmp_path):
    rc, err = _serve(fleetfn_binary, tmp_path, ["--store", "mysql://u:hunter2@db/x"])
    assert rc != 0
    assert "unknown scheme" in err and "expected postgres://" in err, err
    assert "hunter2" not in err, err


def test_an_unreachable_postgres_is_named(fleetfn_binary, tmp_path):
    port = _closed_port()
    # Through the environment variable this time.
    rc, err = _serve(fleetfn_binary, tmp_path, [],
                     env_extra={"FLEETFN_STORE": f"postgres://fleet:hunter2@127.0.0.1:{port}/state"})
    assert rc != 0
    assert f"cannot reach PostgreSQL at fleet@127.0.0.1:{port}/state" in err, err
    assert "is it running" in err, err
    assert "hunter2" not in err, err
    assert not (tmp_path / "data" / "state.db").exists(), "fell back to SQLite"


def test_a_wrong_password_is_named(fleetfn_binary, tmp_path):
    pg = postgres.session_server()
    url = pg.database_for(tmp_path / "data")
    scheme, rest = url.split("://", 1)
    userinfo, host = rest.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    rc, err = _serve(fleetfn_binary, tmp_path, ["--store", f"{scheme}://{user}:not-the-password@{host}"])
    assert rc != 0
    assert f'refused user "{user}"' in err and "check the user and password" in err, err
    assert "not-the-password" not in err, err


def test_the_store_comes_from_the_environment_and_is_migrated(fleetfn_binary, tmp_path):
    pg = postgres.session_server()
    url = pg.database_for(tmp_path / "data")
    rc, err = _serve(fleetfn_binary, tmp_path, [], env_extra={"FLEETFN_STORE": url},
                     wait_for="serving the Lambda API")
    assert rc in (0, -signal.SIGTERM), err
    assert "store PostgreSQL postgres://" in err and ":***@" in err, err
    # 1: the records table; 2: the queue of asynchronous invokes.
    assert pg.psql(url, "SELECT version FROM schema_migrations ORDER BY version").split() == ["1", "2"]
    assert pg.psql(url, "SELECT to_regclass('records') IS NOT NULL").strip() == "t"
    assert pg.psql(url, "SELECT to_regclass('queue_items') IS NOT NULL").strip() == "t"
    assert not (tmp_path / "data" / "state.db").exists()
