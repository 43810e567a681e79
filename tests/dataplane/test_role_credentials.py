"""The runtime-provided AWS SDKs and execution-role credentials (issue 14), against moto's
server as STS and S3:

- `fleetfn serve --assume-roles` with its own AWS credentials (moto's) assumes each function's
  `Role` with STS per environment and serves the credentials at the environment's container
  credentials endpoint; a python3.13 function using boto3 and a nodejs22.x function using
  `@aws-sdk/client-sts` and `@aws-sdk/client-s3` (both from fleetfn's runtime directory) list
  buckets and see themselves as the assumed role;
- credentials live `--role-session-seconds 30` here: during a run longer than that the function
  sees new keys and keeps working;
- a boto3 or SDK client bundled in the function's zip wins over the runtime's;
- a role STS refuses (moto with IAM authorization on, which knows none of our keys) fails the
  publish with `InsufficientRolePermissions` and STS's reason.

moto runs in a network namespace of the test's own when the environments are sandboxed (root:
their firewall refuses the host's own addresses), else on loopback.
"""

from __future__ import annotations

import os
import time

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import netns, prereq
from fleetfn_testkit.moto import Moto
from fleetfn_testkit.server import FleetfnServer

LIFETIME_S = 30
ROLE = "arn:aws:iam::000000000000:role/fleetfn-fn-role"

PY_APP = '''
import boto3, botocore

def handler(event, context):
    session = boto3.session.Session()
    ident = session.client("sts").get_caller_identity()
    s3 = session.client("s3")
    s3.create_bucket(Bucket=event["bucket"])
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    creds = session.get_credentials().get_frozen_credentials()
    return {"arn": ident["Arn"], "buckets": names, "key": creds.access_key,
            "boto3": boto3.__version__, "boto3_file": boto3.__file__}
'''

NODE_APP = '''
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { S3Client, CreateBucketCommand, ListBucketsCommand } from "@aws-sdk/client-s3";
import { createRequire } from "node:module";

export const handler = async (event) => {
  const sts = new STSClient({});
  const ident = await sts.send(new GetCallerIdentityCommand({}));
  const s3 = new S3Client({ forcePathStyle: true });
  await s3.send(new CreateBucketCommand({ Bucket: event.bucket }));
  const listed = await s3.send(new ListBucketsCommand({}));
  const creds = await sts.config.credentials();
  const require = createRequire(import.meta.url);
  return { arn: ident.Arn, buckets: (listed.Buckets || []).map((b) => b.Name), key: creds.accessKeyId,
           sdk: require.resolve("@aws-sdk/client-sts") };
};
'''

# A bundled "SDK" that shadows the runtime's.
PY_BUNDLED = '''
import boto3

def handler(event, context):
    return {"boto3": boto3.__version__, "boto3_file": boto3.__file__}
'''
NODE_BUNDLED = '''
import { STSClient, marker } from "@aws-sdk/client-sts";
export const handler = async () => ({ marker, kind: typeof STSClient });
'''


@pytest.fixture(scope="module")
def network():
    """A test network for moto when environments are sandboxed (root), else None."""
    if prereq.root_missing(("ip",)) is not None or os.environ.get("FLEETFN_SANDBOX") == "off":
        yield None
        return
    net = netns.TestNet()
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def moto(network, tmp_path_factory):
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    m = Moto(log, network.host() if network is not None else None)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def roles_server(moto, tmp_path_factory, fleetfn_binary):
    base = tmp_path_factory.mktemp("fleetfn-roles")
    srv = FleetfnServer(
        fleetfn_binary, base / "data", base / "logs", name="roles", data_plane=True,
        extra_args=["--assume-roles", "--role-session-seconds", str(LIFETIME_S)],
        extra_env={"AWS_ACCESS_KEY_ID": "AKIAFLEETFNSERVER", "AWS_SECRET_ACCESS_KEY": "server-secret",
                   "AWS_ENDPOINT_URL_STS": moto.url})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rlam(roles_server):
    return dp.no_retry_client(roles_server.endpoint)


@pytest.fixture(scope="module")
def rcp(rlam):
    name = h.uniq("rolecp")
    h.create_active_cp(rlam, name, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
    return h.cp_arn_for(name)


def deploy(rlam, endpoint, cp_arn, runtime: str, files: list[tuple[str, str, int]], moto_url: str | None,
           name: str | None = None) -> str:
    variables = {"AWS_ENDPOINT_URL": moto_url} if moto_url else None
    name = dp.create_lmi_function(rlam, cp_arn, runtime, name=name or h.uniq(f"role-{runtime}"),
                                  zip_bytes=h.make_zip(files), concurrency=4, variables=variables)
    rlam.update_function_configuration(FunctionName=name, Role=ROLE)
    h.wait_function_settled(rlam, name)
    dp.publish_active(rlam, endpoint, name, runtime)
    return name


def check_identity(out: dict, name: str, bucket: str):
    # The assumed role, one session per environment: `<function>@<environment id>`.
    prefix = f"arn:aws:sts::000000000000:assumed-role/fleetfn-fn-role/{name}@e-"
    assert out["arn"].startswith(prefix), out
    assert bucket in out["buckets"], out
    assert out["key"].startswith("ASIA"), out


@pytest.mark.parametrize("runtime", ["python", "node"])
def test_functions_call_aws_with_their_role_and_credentials_rotate(runtime, rlam, roles_server, rcp, moto):
    prereq.require(runtime, None)
    files = [("app.py", PY_APP, 0o644)] if runtime == "python" else [("index.mjs", NODE_APP, 0o644)]
    name = deploy(rlam, roles_server.endpoint, rcp, runtime, files, moto.url)
    try:
        bucket = h.uniq(f"b-{runtime}").lower()
        first = dp.invoke_ok(rlam, name, {"bucket": bucket})
        check_identity(first, name, bucket)
        if runtime == "python":
            # boto3 of the runtime directory, not of some host site-packages.
            assert "/site-packages/" not in first["boto3_file"], first
        else:
            assert "/sdk/node_modules/@aws-sdk/client-sts/" in first["sdk"], first
        # Until the first keys' lifetime has passed (bounded): new keys, and calls keep working.
        started = time.monotonic()
        keys = {first["key"]}
        last = first
        while time.monotonic() - started < LIFETIME_S + 15:
            last = dp.invoke_ok(rlam, name, {"bucket": bucket})
            check_identity(last, name, bucket)
            keys.add(last["key"])
            if len(keys) >= 2 and time.monotonic() - started > LIFETIME_S:
                break
            time.sleep(1)
        assert len(keys) >= 2, f"the credentials were not renewed within {LIFETIME_S + 15}s: {keys}"
        assert time.monotonic() - started > LIFETIME_S
    finally:
        dp.delete_function_quietly(rlam, name)


@pytest.mark.parametrize("runtime", ["python", "node"])
def test_a_bundled_sdk_wins_over_the_runtimes(runtime, rlam, roles_server, rcp):
    prereq.require(runtime, None)
    if runtime == "python":
        files = [("app.py", PY_BUNDLED, 0o644), ("boto3/__init__.py", '__version__ = "0.0-bundled"\n', 0o644)]
    else:
        files = [("index.mjs", NODE_BUNDLED, 0o644),
                 ("node_modules/@aws-sdk/client-sts/package.json",
                  '{"name": "@aws-sdk/client-sts", "version": "0.0.0", "main": "index.js"}', 0o644),
                 ("node_modules/@aws-sdk/client-sts/index.js",
                  'exports.marker = "bundled"; exports.STSClient = class {};\n', 0o644)]
    name = deploy(rlam, roles_server.endpoint, rcp, runtime, files, None)
    try:
        out = dp.invoke_ok(rlam, name, {})
        if runtime == "python":
            assert out["boto3"] == "0.0-bundled", out
            assert out["boto3_file"].startswith(("/var/task/", "/")) and "runtimes" not in out["boto3_file"], out
        else:
            assert out == {"marker": "bundled", "kind": "function"}, out
    finally:
        dp.delete_function_quietly(rlam, name)


def test_a_role_sts_refuses_fails_the_publish_with_the_reason(network, tmp_path_factory, fleetfn_binary):
    base = tmp_path_factory.mktemp("fleetfn-roles-refused")
    strict = Moto(base / "moto.log", network.host() if network is not None else None, auth=True)
    srv = FleetfnServer(
        fleetfn_binary, base / "data", base / "logs", name="roles-refused", data_plane=True,
        extra_args=["--assume-roles"],
        extra_env={"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNTOMOTO", "AWS_SECRET_ACCESS_KEY": "nope",
                   "AWS_ENDPOINT_URL_STS": strict.url})
    srv.start()
    try:
        lam = dp.no_retry_client(srv.endpoint)
        cp = h.uniq("refcp")
        h.create_active_cp(lam, cp, VpcConfig={"SubnetIds": list(dp.ZONES), "SecurityGroupIds": list(h.SECURITY_GROUPS)})
        name = dp.create_lmi_function(lam, h.cp_arn_for(cp), "rust", name=h.uniq("role-refused"))
        pub = dp.wait_published(lam, srv.endpoint, [dp.publish(lam, name, "rust")])[0]
        final = pub.final
        assert final["State"] == "Failed", final
        assert final["StateReasonCode"] == "InsufficientRolePermissions", final
        assert "cannot be assumed" in final["StateReason"] and "InvalidClientTokenId" in final["StateReason"], final
    finally:
        srv.stop()
        strict.stop()
