"""A joined agent fetches a function's layer packages by digest from the servers, exactly like
its code: a layer published through a `fleetfn server` (its zip kept in the store's packages, as
code is), an agent in a network namespace of its own that never saw it, an environment asked
for with the layer, and an invoke whose answer comes from the layer's `bin/` on the runtime's
PATH. Needs root (namespaces); skipped with the reason without (tests/cluster/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import requests

from fleetfn_testkit import api as h
from fleetfn_testkit import postgres
from fleetfn_testkit.agents import Agent, create_token
from fleetfn_testkit.server import FleetfnServer

# A custom runtime answering every event with what the layer's `layer-greeting` prints.
BOOTSTRAP = """#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -D "$HEADERS" "$API/next" >/dev/null
  REQ_ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)"
  curl -sS -X POST "$API/$REQ_ID/response" -d "{\\"greeting\\": \\"$(layer-greeting)\\"}" >/dev/null
  rm -f "$HEADERS"
done
"""


@pytest.fixture
def server(fleetfn_binary, tmp_path, test_net):
    pg = postgres.session_server()
    srv = FleetfnServer(fleetfn_binary, tmp_path / "data", tmp_path / "logs", name="layers", command="server",
                        store_url=pg.database_for(tmp_path / "db"), extra_args=["--metrics-listen", "off"],
                        host=test_net.gateway)
    srv.start()
    yield srv
    srv.stop()


def test_a_joined_agent_fetches_layer_packages_by_digest(fleetfn_binary, server, tmp_path, test_net):
    lam = h.make_client(server.endpoint)
    marker = h.uniq("hello-from-layer")
    layer = h.make_zip([("bin/layer-greeting", f"#!/bin/sh\necho {marker}\n", 0o755)])
    published = lam.publish_layer_version(LayerName=h.uniq("greet"), Content={"ZipFile": layer})
    layer_digest = hashlib.sha256(layer).hexdigest()
    code = h.make_zip([("bootstrap", BOOTSTRAP, 0o755)])
    name = h.uniq("fnlayer")
    made = lam.create_function(**h.function_request(name, None, runtime="provided.al2023", zip_bytes=code,
                                                    Layers=[published["LayerVersionArn"]]))
    assert made["Layers"] == [{"Arn": published["LayerVersionArn"], "CodeSize": len(layer)}]

    _, _, token_file = create_token(fleetfn_binary, server, tmp_path)
    agent = Agent(fleetfn_binary, server.endpoint, tmp_path / "agent1", token_file, host=test_net.host())
    try:
        line = agent.wait_listening()
        agent_url = "http://" + line.strip().rsplit(" ", 1)[-1]
        auth = {"Authorization": f"Bearer {agent.identity()['Credential']}"}
        assert not list((agent.data_dir / "artifacts").rglob(f"*{layer_digest}*")), "the agent had the layer"
        # The environment a leader would ask for (fleetfn-proto EnvironmentRequest), with the layer.
        spec = {
            "function_name": name, "version": "1", "qualified_arn": h.fn_arn_for(name, "1"),
            "runtime": "provided.al2023", "handler": "bootstrap",
            "code_sha256_hex": hashlib.sha256(code).hexdigest(), "code_size": len(code),
            "memory_mb": 2048, "timeout_secs": 10, "max_concurrency": 2, "vcpus": 1.0,
            "ephemeral_storage_mb": 512, "region": h.REGION, "env_vars": {},
            "layers": [{"arn": published["LayerVersionArn"], "sha256_hex": layer_digest, "size": len(layer)}],
        }
        r = requests.put(f"{agent_url}/v1/environments/e-layer1", json=spec, headers=auth, timeout=10)
        assert r.status_code < 300, r.text
        deadline = time.monotonic() + 30
        state = None
        while time.monotonic() < deadline:
            envs = requests.get(f"{agent_url}/v1/environments", headers=auth, timeout=10).json()["environments"]
            state = next((e for e in envs if e["env_id"] == "e-layer1"), None)
            if state and state["state"] in ("Ready", "Failed"):
                break
            time.sleep(0.1)
        assert state and state["state"] == "Ready", (state, agent.stderr()[-3000:])
        assert list((agent.data_dir / "artifacts").rglob(f"*{layer_digest}*")), "the fetched layer is kept"
        r = requests.post(f"{agent_url}/v1/environments/e-layer1/invoke", data=b"{}", headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        assert json.loads(r.content) == {"greeting": marker}
    finally:
        agent.stop()
