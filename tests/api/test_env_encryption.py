"""Function environment variables are encrypted at rest: the store (the SQLite file, or the
PostgreSQL database with FLEETFN_TEST_STORE=postgres) holds sealed values only, the key lives in
`env.key` (mode 0600) beside credentials.json, the API answers the plain values, a restart still
reads them, and a store whose key file is gone refuses to start instead of silently making a new
key."""

from __future__ import annotations

import os
import stat
import subprocess

from fleetfn_testkit import api as h
from fleetfn_testkit import postgres

SECRET = "s3cr3t-9f2c1d7e-never-in-clear"


def _files_containing(root, needle: bytes) -> list[str]:
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                if needle in f.read():
                    hits.append(path)
    return hits


def test_environment_variables_are_encrypted_at_rest(server_factory, fleetfn_binary):
    srv = server_factory.new(name="enc")
    lam = h.make_client(srv.endpoint)
    cp = h.create_active_cp(lam)
    name = h.uniq("enc")
    h.create_function(lam, name, cp["CapacityProviderArn"],
                      Environment={"Variables": {"DB_PASSWORD": SECRET, "PLAIN": "x"}})
    lam.publish_version(FunctionName=name)
    for q in (None, "1"):
        kw = {"Qualifier": q} if q else {}
        env = lam.get_function_configuration(FunctionName=name, **kw)["Environment"]["Variables"]
        assert env == {"DB_PASSWORD": SECRET, "PLAIN": "x"}, (q, env)

    key = srv.data_dir / "env.key"
    assert key.exists(), sorted(p.name for p in srv.data_dir.iterdir())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, oct(key.stat().st_mode)
    assert key.stat().st_size == 32
    # Nothing under the data dir (the SQLite file, its WAL) holds the value in clear, nor does
    # the PostgreSQL database.
    if srv.store_url:
        assert not (srv.data_dir / "state.db").exists()
        rows = postgres.session_server().psql(
            srv.store_url, "SELECT tbl, key, convert_from(value, 'UTF8') FROM records WHERE tbl <> 'packages'")
        assert name in rows, rows  # the function's records are there...
        assert SECRET not in rows  # ...without the value in clear
    else:
        assert (srv.data_dir / "state.db").exists()
    assert _files_containing(srv.data_dir, SECRET.encode()) == []

    # A restart on the same data dir reads the values back.
    srv.stop()
    srv.start()
    lam = h.make_client(srv.endpoint)
    env = lam.get_function_configuration(FunctionName=name, Qualifier="1")["Environment"]["Variables"]
    assert env["DB_PASSWORD"] == SECRET
    srv.stop()

    # Without its key file the store cannot be read: fleetfn says so and does not start.
    key.unlink()
    env_vars = dict(os.environ, FLEETFN_ACCESS_KEY_ID=h.ACCESS_KEY, FLEETFN_SECRET_ACCESS_KEY=h.SECRET_KEY)
    out = subprocess.run(
        [str(fleetfn_binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(srv.data_dir),
         "--no-data-plane", "--metrics-listen", "off"] + (["--store", srv.store_url] if srv.store_url else []),
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env_vars)
    assert out.returncode != 0, out.stderr
    assert "env.key is missing" in out.stderr and "Restore the key file" in out.stderr, out.stderr
    assert not key.exists(), "a new key was made for a store sealed with the old one"
