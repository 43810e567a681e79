"""Throwaway certificates for the TLS tests, made with the `openssl` CLI as docs/CLUSTER.md
("Making the certificates") tells an operator to: a CA, a server certificate and an agent
certificate it signed (EC P-256, subjectAltName the IP each is reached at), and an unrelated CA."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    agent_cert: Path
    agent_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"openssl {' '.join(args)}: {out.stderr}"


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d: Path, name: str, sans: str, ca: str = "ca") -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)


def make_pki(d: Path, server_ip: str = "127.0.0.1", agent_ip: str = "127.0.0.1") -> Pki:
    """A CA, a server certificate for `server_ip` (and localhost), an agent certificate for
    `agent_ip`, and an unrelated CA."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    _leaf(d, "server", f"IP:{server_ip},DNS:localhost")
    _leaf(d, "agent", f"IP:{agent_ip}")
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return Pki(ca=d / "ca.pem", server_cert=d / "server.pem", server_key=d / "server.key",
               agent_cert=d / "agent.pem", agent_key=d / "agent.key", other_ca=d / "other-ca.pem")
