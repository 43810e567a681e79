"""Join tokens and agents that join: `fleetfn token create|list|revoke` against a `fleetfn server`
on PostgreSQL, and `fleetfn agent --join URL --token-file F` as a real process. A wrong, revoked
or missing token is refused; the identity an agent gets is saved (mode 0600) and reused; neither
a join token nor an agent credential opens the admin API. Servers and agents over TLS (certificates
made with openssl): a join, a deploy and invokes over https only, and a wrong CA or plain HTTP
refused. The server listens on a test bridge's address and every agent joins from a network
namespace of its own (tests/cluster/conftest.py; root, skipped with the reason without).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests

from fleetfn_testkit import api as h
from fleetfn_testkit import postgres
from fleetfn_testkit.agents import Agent as JoinedAgent, create_token, token_cli
from fleetfn_testkit.dataplane import rust_zip, set_scaling
from fleetfn_testkit.server import FleetfnServer
from fleetfn_testkit.tls import make_pki


@pytest.fixture
def server(fleetfn_binary, tmp_path, test_net):
    """A `fleetfn server` on the test bridge's address; its agents join from network namespaces."""
    pg = postgres.session_server()
    srv = FleetfnServer(fleetfn_binary, tmp_path / "data", tmp_path / "logs", name="s1", command="server",
                        store_url=pg.database_for(tmp_path / "db"), extra_args=["--metrics-listen", "off"],
                        host=test_net.gateway)
    srv.test_net = test_net
    srv.start()
    yield srv
    srv.stop()


def _cli(fleetfn_binary, server, *args) -> subprocess.CompletedProcess:
    return token_cli(fleetfn_binary, server, *args)


def _create_token(fleetfn_binary, server, tmp_path, name="token") -> tuple[str, str, Path]:
    return create_token(fleetfn_binary, server, tmp_path, name)


def _agents(server) -> list[dict]:
    resp = h.raw_request(server.endpoint, "GET", "/fleetfn/v1/agents", verify=server.verify)
    assert resp.status_code == 200, resp.text
    return resp.json()["Agents"]


def Agent(binary, server, data_dir: Path, token_file: Path | None, zone: str = "zone-a", host=None) -> JoinedAgent:
    """An agent joining `server` from a network namespace of its own (`host`, or a new one),
    listed after a server that does not answer."""
    return JoinedAgent(binary, f"http://127.0.0.1:1,{server.endpoint}", data_dir, token_file, zone,
                       host=host or server.test_net.host())


@pytest.fixture
def agents():
    started: list[Agent] = []
    yield started
    for a in started:
        a.stop()


def test_an_agent_joins_once_and_keeps_its_identity(fleetfn_binary, server, tmp_path, agents):
    token_id, token, token_file = _create_token(fleetfn_binary, server, tmp_path)
    listed = _cli(fleetfn_binary, server, "list")
    assert listed.returncode == 0 and token_id in listed.stdout and "valid" in listed.stdout, listed
    assert token.split(".")[-1] not in listed.stdout, "the secret is never listed"

    a = Agent(fleetfn_binary, server, tmp_path / "agent1", token_file)
    agents.append(a)
    a.wait_listening()
    assert "joined" in a.stderr(), a.stderr()
    cred = a.data_dir / "agent-credential.json"
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    saved = json.loads(cred.read_text())
    joined = _agents(server)
    assert [j["AgentId"] for j in joined] == [saved["AgentId"]]
    assert joined[0]["Zone"] == "zone-a" and joined[0]["TokenId"] == token_id
    assert "provided.al2023" in joined[0]["Runtimes"] and joined[0]["Vcpus"] >= 1
    assert saved["Credential"] not in json.dumps(joined), "credentials are never listed"

    # Restarted without its token: the saved identity, no second registration.
    a.stop()
    token_file.unlink()
    again = Agent(fleetfn_binary, server, tmp_path / "agent1", None, host=a.host)
    agents.append(again)
    again.wait_listening()
    assert "identity from an earlier join" in again.stderr(), again.stderr()
    assert [j["AgentId"] for j in _agents(server)] == [saved["AgentId"]]


def test_plain_http_needs_an_explicit_flag_and_is_logged(fleetfn_binary, server, tmp_path, agents):
    _, _, token_file = _create_token(fleetfn_binary, server, tmp_path)
    base = [str(fleetfn_binary), "agent", "--instance-id", "i-x", "--zone", "zone-a", "--data-dir",
            str(tmp_path / "a"), "--artifacts-dir", str(tmp_path / "a" / "artifacts"), "--token-file", str(token_file)]
    env = {k: v for k, v in os.environ.items() if k != "FLEETFN_AGENT_TOKEN"}
    # http:// servers, and (joining https:// servers) this agent's own API without a certificate.
    for url, words in ((server.endpoint, "--allow-plain-http"), ("https://127.0.0.1:1", "--tls-cert")):
        out = subprocess.run(base + ["--join", url], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL, env=env)
        assert out.returncode != 0 and words in out.stderr, out.stderr
    assert _agents(server) == [], "nothing was sent"
    a = Agent(fleetfn_binary, server, tmp_path / "agent-plain", token_file)
    agents.append(a)
    a.wait_listening()
    assert "plain HTTP (--allow-plain-http)" in a.stderr(), a.stderr()


def test_wrong_revoked_and_careless_tokens_are_refused(fleetfn_binary, server, tmp_path, agents):
    token_id, token, token_file = _create_token(fleetfn_binary, server, tmp_path)
    wrong = tmp_path / "wrong"
    wrong.write_text(token[:-4] + ("0000" if not token.endswith("0000") else "1111"))
    wrong.chmod(0o600)
    a = Agent(fleetfn_binary, server, tmp_path / "agent-wrong", wrong)
    agents.append(a)
    assert a.exit_status() != 0
    assert "refused the join" in a.stderr() and "unknown, expired or revoked" in a.stderr(), a.stderr()

    loose = tmp_path / "loose"
    loose.write_text(token)
    loose.chmod(0o644)
    b = Agent(fleetfn_binary, server, tmp_path / "agent-loose", loose)
    agents.append(b)
    assert b.exit_status() != 0
    assert "chmod 600" in b.stderr(), b.stderr()

    out = _cli(fleetfn_binary, server, "revoke", token_id)
    assert out.returncode == 0, out.stderr
    c = Agent(fleetfn_binary, server, tmp_path / "agent-revoked", token_file)
    agents.append(c)
    assert c.exit_status() != 0
    assert "refused the join" in c.stderr(), c.stderr()
    assert "revoked" in _cli(fleetfn_binary, server, "list").stdout
    assert _agents(server) == []

    # The raw endpoint: no token, a malformed one, a bad offer.
    offer = {"Address": "127.0.0.1:9700", "Zone": "zone-a", "Vcpus": 2, "MemoryMib": 4096,
             "Architecture": "x86_64", "Runtimes": ["provided.al2023"]}
    r = h.raw_request(server.endpoint, "POST", "/fleetfn/v1/agents/join", body=json.dumps(offer), sign=False)
    assert r.status_code == 403 and h.raw_error_code(r) == "AccessDeniedException", r.text
    r = h.raw_request(server.endpoint, "POST", "/fleetfn/v1/agents/join", body=json.dumps(offer), sign=False,
                      headers={"Authorization": "Bearer fj1.nope"})
    assert r.status_code == 403, r.text
    _, good, _ = _create_token(fleetfn_binary, server, tmp_path, "good")
    r = h.raw_request(server.endpoint, "POST", "/fleetfn/v1/agents/join", sign=False,
                      body=json.dumps(dict(offer, Zone="Not A Zone")), headers={"Authorization": f"Bearer {good}"})
    assert r.status_code == 400 and "Zone" in h.raw_error_message(r), r.text
    assert _agents(server) == []


def test_tokens_and_agent_credentials_do_not_open_the_admin_api(fleetfn_binary, server, tmp_path, agents):
    _, token, token_file = _create_token(fleetfn_binary, server, tmp_path)
    a = Agent(fleetfn_binary, server, tmp_path / "agent1", token_file)
    agents.append(a)
    a.wait_listening()
    saved = json.loads((a.data_dir / "agent-credential.json").read_text())
    for bearer in (token, saved["Credential"]):
        r = h.raw_request(server.endpoint, "GET", "/2015-03-31/functions/", sign=False,
                          headers={"Authorization": f"Bearer {bearer}"})
        assert r.status_code == 403, r.text
        r = h.raw_request(server.endpoint, "POST", "/fleetfn/v1/join-tokens", body="{}", sign=False,
                          headers={"Authorization": f"Bearer {bearer}"})
        assert r.status_code == 403, r.text
    # Signed with the agent's id and credential as if they were a key pair.
    r = h.raw_request(server.endpoint, "GET", "/fleetfn/v1/join-tokens", access_key=saved["AgentId"],
                      secret_key=saved["Credential"])
    assert r.status_code == 403 and h.raw_error_code(r) == "UnrecognizedClientException", r.text
    # The admin key still works.
    assert h.raw_request(server.endpoint, "GET", "/fleetfn/v1/join-tokens").status_code == 200


def test_a_joined_agent_fetches_code_by_digest_from_the_servers(fleetfn_binary, server, tmp_path, agents):
    """The agent never saw the package: asked (as a server would ask it) to start an environment
    of a function uploaded through the server, it fetches the package by digest with its
    credential, checks and keeps it, and the environment serves an invoke."""
    import hashlib
    import requests

    zip_bytes = h.bootstrap_zip(marker=h.uniq("pkg"))
    name = h.uniq("fn")
    h.make_client(server.endpoint).create_function(**h.function_request(name, None, runtime="provided.al2023",
                                                                        zip_bytes=zip_bytes))
    digest = hashlib.sha256(zip_bytes).hexdigest()
    _, _, token_file = _create_token(fleetfn_binary, server, tmp_path)
    a = Agent(fleetfn_binary, server, tmp_path / "agent1", token_file)
    agents.append(a)
    line = a.wait_listening()
    agent_url = "http://" + line.strip().rsplit(" ", 1)[-1]
    saved = json.loads((a.data_dir / "agent-credential.json").read_text())
    auth = {"Authorization": f"Bearer {saved['Credential']}"}
    assert not list((a.data_dir / "artifacts").rglob(f"*{digest}*")), "the agent had the package already"

    # The package endpoint wants a joined agent's credential.
    pkg = f"{server.endpoint}/fleetfn/v1/agent/packages/{digest}"
    for bad in ({}, {"Authorization": f"Bearer {saved['AgentId']}.wrong"}, {"Authorization": "Bearer x"}):
        r = requests.get(pkg, headers=bad, timeout=10)
        assert r.status_code == 403 and h.raw_error_code(r) == "AccessDeniedException", r.text

    spec = {
        "function_name": name, "version": "1", "qualified_arn": h.fn_arn_for(name, "1"),
        "runtime": "provided.al2023", "handler": "bootstrap", "code_sha256_hex": digest,
        "code_size": len(zip_bytes), "memory_mb": 2048, "timeout_secs": 10, "max_concurrency": 2,
        "vcpus": 1.0, "ephemeral_storage_mb": 512, "region": h.REGION, "env_vars": {},
    }
    r = requests.put(f"{agent_url}/v1/environments/e-join1", json=spec, headers=auth, timeout=10)
    assert r.status_code < 300, r.text
    deadline = time.monotonic() + 30
    state = None
    while time.monotonic() < deadline:
        envs = requests.get(f"{agent_url}/v1/environments", headers=auth, timeout=10).json()["environments"]
        state = next((e for e in envs if e["env_id"] == "e-join1"), None)
        if state and state["state"] in ("Ready", "Failed"):
            break
        time.sleep(0.1)
    assert state and state["state"] == "Ready", (state, a.stderr()[-3000:])
    assert list((a.data_dir / "artifacts").rglob(f"*{digest}*")), "the fetched package is kept"
    r = requests.post(f"{agent_url}/v1/environments/e-join1/invoke", data=b'{"hello": "cluster"}',
                      headers=auth, timeout=30)
    assert r.status_code == 200 and r.json() == {"hello": "cluster"}, r.text


def test_a_removed_agent_s_credential_opens_nothing(fleetfn_binary, server, tmp_path, agents):
    zip_bytes = h.bootstrap_zip(marker=h.uniq("pkg"))
    h.make_client(server.endpoint).create_function(**h.function_request(h.uniq("fn"), None, runtime="provided.al2023",
                                                                        zip_bytes=zip_bytes))
    import hashlib
    import requests
    digest = hashlib.sha256(zip_bytes).hexdigest()
    _, _, token_file = _create_token(fleetfn_binary, server, tmp_path)
    a = Agent(fleetfn_binary, server, tmp_path / "agent1", token_file)
    agents.append(a)
    a.wait_listening()
    saved = json.loads((a.data_dir / "agent-credential.json").read_text())
    pkg = f"{server.endpoint}/fleetfn/v1/agent/packages/{digest}"
    bearer = {"Authorization": f"Bearer {saved['AgentId']}.{saved['Credential']}"}
    assert requests.get(pkg, headers=bearer, timeout=10).content == zip_bytes
    r = h.raw_request(server.endpoint, "DELETE", f"/fleetfn/v1/agents/{saved['AgentId']}")
    assert r.status_code == 200 and r.json()["AgentId"] == saved["AgentId"], r.text
    assert _agents(server) == []
    r = requests.get(pkg, headers=bearer, timeout=10)
    assert r.status_code == 403, r.text
    r = h.raw_request(server.endpoint, "DELETE", f"/fleetfn/v1/agents/{saved['AgentId']}")
    assert r.status_code == 404 and h.raw_error_code(r) == "ResourceNotFoundException", r.text


TLS_ZONE = "subnet-tls"


def test_servers_and_agents_talk_over_tls_only(fleetfn_binary, tmp_path, agents, test_net):
    """`fleetfn server --tls-cert/--tls-key/--agent-ca` and an agent joining it over https with
    --ca-file and serving its own API with --tls-cert: a function deployed on the agent serves
    invokes; a wrong CA, plain HTTP to either side, and a TLS agent restarted without its
    certificate are refused."""
    agent_host = test_net.host()  # agent1's network namespace: its certificate names its address
    pki = make_pki(tmp_path / "pki", server_ip=test_net.gateway, agent_ip=agent_host.address)
    srv = FleetfnServer(fleetfn_binary, tmp_path / "data", tmp_path / "logs", name="tls", command="server",
                        store_url=postgres.session_server().database_for(tmp_path / "db"), data_plane=True,
                        tls_ca=pki.ca, host=test_net.gateway,
                        extra_args=["--metrics-listen", "off", "--tls-cert", str(pki.server_cert),
                                    "--tls-key", str(pki.server_key), "--agent-ca", str(pki.ca)])
    srv.start()
    try:
        assert srv.endpoint.startswith("https://")
        assert f"serving the Lambda API on {srv.endpoint}" in srv.stderr_path.read_text()
        # The whole listener is TLS: a plain HTTP client gets no answer.
        with pytest.raises(requests.RequestException):
            requests.get(f"http://{srv.host}:{srv.port}/fleetfn/health", timeout=5)
        _, _, token_file = create_token(fleetfn_binary, srv, tmp_path)  # the CLI, over https

        def agent(name: str, ca: Path, tls: bool = True, plain: bool = False, host=None) -> JoinedAgent:
            args = ["--ca-file", str(ca), "--vcpus", "2", "--memory-mib", "4096"]
            if tls:
                args += ["--tls-cert", str(pki.agent_cert), "--tls-key", str(pki.agent_key)]
            a = JoinedAgent(fleetfn_binary, srv.endpoint, tmp_path / name, token_file, TLS_ZONE,
                            extra_args=args, plain_http=plain, host=host or test_net.host())
            agents.append(a)
            return a

        # A CA that did not sign the server's certificate: no join, the reason on stderr.
        wrong = agent("agent-wrong-ca", pki.other_ca)
        assert wrong.exit_status() != 0
        assert "cannot reach" in wrong.stderr() and "certificate" in wrong.stderr(), wrong.stderr()
        assert _agents(srv) == []

        a = agent("agent1", pki.ca, host=agent_host)
        addr = a.wait_listening().strip().rsplit(" ", 1)[-1]
        assert "plain HTTP" not in a.stderr(), a.stderr()
        [joined] = _agents(srv)
        assert joined["Tls"] is True and joined["Address"] == addr, joined
        # The agent's API is TLS only, with the certificate the servers verify.
        with pytest.raises(requests.RequestException):
            requests.get(f"http://{addr}/v1/environments", timeout=5)
        cred = {"Authorization": f"Bearer {a.identity()['Credential']}"}
        r = requests.get(f"https://{addr}/v1/environments", headers=cred, verify=str(pki.ca), timeout=5)
        assert r.status_code == 200, r.text
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://{addr}/v1/environments", headers=cred, verify=str(pki.other_ca), timeout=5)

        # A function on a capacity provider in the agent's zone: placed on it, invoked through
        # the server (server → agent over https, the package fetched over https).
        lam = h.make_client(srv.endpoint, verify=srv.verify)
        cp = h.create_active_cp(lam, h.uniq("tls"),
                                VpcConfig={"SubnetIds": [TLS_ZONE], "SecurityGroupIds": h.SECURITY_GROUPS},
                                InstanceRequirements={"Architectures": ["x86_64"],
                                                      "AllowedInstanceTypes": ["c7i.large"]})
        name = h.uniq("fn")
        lam.create_function(**h.function_request(
            name, None, runtime="provided.al2023", zip_bytes=rust_zip(),
            CapacityProviderConfig=h.lmi_config(cp["CapacityProviderArn"], PerExecutionEnvironmentMaxConcurrency=4)))
        h.wait_function_settled(lam, name)
        version = lam.publish_version(FunctionName=name)["Version"]
        set_scaling(lam, name, version, 1, 1)
        cfg = h.poll(lambda: lam.get_function(FunctionName=name, Qualifier=version)["Configuration"],
                     lambda c: c["State"] != "Pending", f"{name}:{version} to leave Pending", timeout=90)
        assert cfg["State"] == "Active", (cfg, srv.logs(60), a.stderr()[-3000:])
        for i in range(3):
            event = {"op": "echo", "n": i}
            resp = lam.invoke(FunctionName=name, Qualifier=version, Payload=json.dumps(event).encode())
            body = resp["Payload"].read()
            assert resp["StatusCode"] == 200 and "FunctionError" not in resp, (resp, body)
            assert json.loads(body) == event

        # It joined serving TLS: restarted without its certificate it refuses to start.
        a.stop()
        again = agent("agent1", pki.ca, tls=False, plain=True, host=agent_host)
        assert again.exit_status() != 0
        assert "start it with --tls-cert" in again.stderr(), again.stderr()
    finally:
        srv.stop()
