"""Agents on other hosts, as processes: `fleetfn agent --join URL[,URL] --token-file F` and the
`fleetfn token` CLI that makes their join tokens (tests/cluster)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from fleetfn_testkit import api as h
from fleetfn_testkit.server import process_env


def token_cli(fleetfn_binary, server, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=h.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=h.SECRET_KEY,
               AWS_DEFAULT_REGION=h.REGION)
    env.pop("AWS_PROFILE", None)
    if getattr(server, "tls_ca", None):
        env["AWS_CA_BUNDLE"] = str(server.tls_ca)
    return subprocess.run([str(fleetfn_binary), "token", *args, "--endpoint-url", server.endpoint],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)


def create_token(fleetfn_binary, server, tmp_path: Path, name: str = "token") -> tuple[str, str, Path]:
    """(token id, token, a 0600 file holding it)."""
    out = token_cli(fleetfn_binary, server, "create", "--ttl", "1h", "--description", "rack 3", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    path = tmp_path / name
    path.write_text(doc["Token"] + "\n")
    path.chmod(0o600)
    return doc["TokenId"], doc["Token"], path


class Agent:
    """`fleetfn agent --join …` as a process (sandbox off: these test membership and placement,
    not isolation)."""

    def __init__(self, binary, join: str, data_dir: Path, token_file: Path | None, zone: str = "zone-a",
                 extra_args: list[str] | None = None, plain_http: bool = True, host=None):
        """`host`: a `fleetfn_testkit.netns.Host` to run in (its own network namespace and
        address, listening on port 9700 there); None: on loopback, on a free port."""
        self.data_dir = data_dir
        self.host = host
        self.stderr_path = data_dir.parent / f"{data_dir.name}.stderr"
        data_dir.mkdir(parents=True, exist_ok=True)
        # `plain_http=False`: no --allow-plain-http (https servers, and --tls-cert in extra_args).
        args = [str(binary), "agent", "--join", join] + (["--allow-plain-http"] if plain_http else []) + [
                "--instance-id", f"i-{data_dir.name}", "--zone", zone, "--data-dir", str(data_dir),
                "--artifacts-dir", str(data_dir / "artifacts"),
                "--listen", f"{host.address}:9700" if host is not None else "127.0.0.1:0",
                "--exit-on-stdin-eof"] + list(extra_args or [])
        if token_file is not None:
            args += ["--token-file", str(token_file)]
        env = {k: v for k, v in process_env().items() if k != "FLEETFN_AGENT_TOKEN"}
        env["FLEETFN_SANDBOX"] = "off"
        if host is not None:
            args = host.command(args)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         env=env, start_new_session=True)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 30) -> str:
        """The stdout line once it serves (after a successful join); fails if it exits first."""
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline().decode()
        assert "listening on" in line, f"agent exited ({self.proc.poll()}):\n{self.stderr()}"
        assert time.monotonic() < deadline
        return line

    def identity(self) -> dict:
        return json.loads((self.data_dir / "agent-credential.json").read_text())

    def exit_status(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=5)
