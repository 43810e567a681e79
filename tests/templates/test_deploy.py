"""`fleetfn deploy` end to end: a real `fleetfn serve` with its data plane, the real CLI, boto3.

The templates are written the way AWS documents Lambda Managed Instances: a SAM template
(sam_e2e/), the same in plain CloudFormation (cfn/lmi.yaml) and the CDK's own synthesized output
with an asset (cdk/cdk.out, cdk/cdk.out.v2). Each is deployed, invoked through its alias and its
version, updated (a changed environment variable: exactly one new version, the alias moved to it,
nothing else replaced), and deleted (functions, capacity provider and the stack record gone).
Errors: a circular Ref, an unknown parameter, a value the API refuses (attributed to the logical
id, what was created rolled back), a version that fails to publish (the stack back where it was),
and an unknown resource type (skipped with a warning; `--strict` refuses it).

Environment variables: FLEETFN_BIN (fleetfn_testkit.server).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import prereq
from fleetfn_testkit.server import FleetfnServer

HERE = Path(__file__).resolve().parent
SAM = HERE / "sam_e2e" / "template.yaml"
CFN = HERE / "cfn" / "lmi.yaml"
CDK = HERE / "cdk" / "cdk.out" / "LmiStack.template.json"
CDK_V2 = HERE / "cdk" / "cdk.out.v2" / "LmiStack.template.json"
CIRCULAR = HERE / "cfn" / "invalid" / "circular.yaml"
BAD_MEMORY = HERE / "cfn" / "invalid" / "bad_memory.yaml"
WITH_BUCKET = HERE / "cfn" / "with_bucket.yaml"

DEPLOY_TIMEOUT = 120


@pytest.fixture(scope="module")
def server(fleetfn_binary, tmp_path_factory):
    base = tmp_path_factory.mktemp("fleetfn-templates")
    srv = FleetfnServer(fleetfn_binary, base / "data", base / "logs", name="templates", data_plane=True)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lam(server):
    return dp.no_retry_client(server.endpoint)


class Cli:
    """The fleetfn binary as a client of the test server."""

    def __init__(self, binary: Path, endpoint: str, home: Path):
        self.binary, self.endpoint, self.home = binary, endpoint, home

    def run(self, *args: str, timeout: float = DEPLOY_TIMEOUT) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLEETFN_"))}
        env.update(HOME=str(self.home), NO_COLOR="1", AWS_ACCESS_KEY_ID=h.ACCESS_KEY,
                   AWS_SECRET_ACCESS_KEY=h.SECRET_KEY, AWS_DEFAULT_REGION=h.REGION,
                   FLEETFN_ENDPOINT_URL=self.endpoint)
        return subprocess.run([str(self.binary), *args], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def deploy(self, template: Path, stack: str, *extra: str, ok: bool = True) -> subprocess.CompletedProcess:
        p = self.run("deploy", "--template", str(template), "--stack-name", stack, *extra)
        if ok:
            assert p.returncode == 0, f"deploy {template.name} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
        return p


@pytest.fixture
def python_functions():
    """The deployed functions run on python3.13 (FLEETFN_TEST_OPT_OUT=python leaves them out)."""
    prereq.require("python", None)


@pytest.fixture(scope="module")
def cli(fleetfn_binary, server, tmp_path_factory):
    return Cli(fleetfn_binary, server.endpoint, tmp_path_factory.mktemp("clihome"))


def out(p: subprocess.CompletedProcess) -> str:
    return p.stdout + p.stderr


def stack_record(server, name: str) -> dict | None:
    r = h.raw_request(server.endpoint, "GET", f"/fleetfn/v1/stacks/{name}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()


def physical(record: dict, resource_type: str) -> dict[str, str]:
    """Logical id -> physical id of the record's resources of one type."""
    return {lid: r["PhysicalId"] for lid, r in record["Resources"].items() if r["ResourceType"] == resource_type}


def one(record: dict, resource_type: str) -> str:
    ids = list(physical(record, resource_type).values())
    assert len(ids) == 1, f"{resource_type}: {ids}"
    return ids[0]


def function_name(record: dict) -> str:
    return one(record, "AWS::Lambda::Function").split(":")[-1]


def capacity_provider_name(record: dict) -> str:
    return one(record, "AWS::Lambda::CapacityProvider").split(":")[-1]


def versions(lam, fn: str) -> list[str]:
    vs = lam.list_versions_by_function(FunctionName=fn)["Versions"]
    return sorted(v["Version"] for v in vs if v["Version"] != "$LATEST")


def invoke(lam, fn: str, qualifier: str, event: dict | None = None) -> dict:
    return dp.invoke_ok_when_capacity(lam, fn, event or {"from": "test"}, Qualifier=qualifier)


def snapshot(lam, record: dict) -> dict:
    """What an update must not touch, and what it must change."""
    fn = function_name(record)
    cp = lam.get_capacity_provider(CapacityProviderName=capacity_provider_name(record))["CapacityProvider"]
    alias = lam.get_alias(FunctionName=fn, Name="live")
    cfg = lam.get_function_configuration(FunctionName=fn)
    return {"function": fn, "cp": cp, "alias": alias["FunctionVersion"], "versions": versions(lam, fn),
            "env": cfg["Environment"]["Variables"], "code": cfg["CodeSha256"],
            "function_arn": cfg["FunctionArn"], "resources": set(record["Resources"])}


def assert_one_new_version(lam, before: dict, after_record: dict, env_changes: dict) -> str:
    after = snapshot(lam, after_record)
    assert after["function"] == before["function"], "the function was replaced"
    assert after["function_arn"] == before["function_arn"]
    assert after["cp"]["CapacityProviderArn"] == before["cp"]["CapacityProviderArn"], "the capacity provider was replaced"
    assert after["cp"].get("LastModified") == before["cp"].get("LastModified"), "the capacity provider was updated"
    assert after["code"] == before["code"], "the code was updated"
    new = sorted(set(after["versions"]) - set(before["versions"]), key=int)
    assert len(new) == 1, f"versions before {before['versions']}, after {after['versions']}"
    assert int(new[0]) > max(int(v) for v in before["versions"])
    assert after["alias"] == new[0], f"alias live on {after['alias']}, the new version is {new[0]}"
    expected_env = dict(before["env"], **env_changes)
    assert after["env"] == expected_env
    return new[0]


def assert_gone(lam, server, stack: str, record: dict) -> None:
    assert stack_record(server, stack) is None, "the stack record is left"
    for fn in physical(record, "AWS::Lambda::Function").values():
        h.gone(lambda fn=fn: lam.get_function(FunctionName=fn), f"function {fn} deleted")
    for cp in physical(record, "AWS::Lambda::CapacityProvider").values():
        name = cp.split(":")[-1]
        h.gone(lambda name=name: lam.get_capacity_provider(CapacityProviderName=name),
               f"capacity provider {name} deleted")


# --------------------------------------------------------------------------------------
# The three kinds of template
# --------------------------------------------------------------------------------------


def test_sam_template_deploy_invoke_update_delete(cli, server, lam, tmp_path, python_functions):
    stack = h.uniq("sam")
    cli.deploy(SAM, stack)
    rec = stack_record(server, stack)
    assert rec["StackStatus"] == "CREATE_COMPLETE", rec["StackStatus"]
    # SAM's generated resources, under SAM's logical ids.
    assert {"MyCapacityProvider", "MyFunction", "MyFunctionAliaslive", "MyFunctionUrl"} <= set(rec["Resources"])
    fn = function_name(rec)
    first = versions(lam, fn)
    assert len(first) == 1
    for qualifier in ("live", first[0]):
        body = invoke(lam, fn, qualifier)
        assert body["greeting"] == "hello" and body["stage"] == "test", body
        assert body["version"] == first[0]
    url = lam.get_function_url_config(FunctionName=fn, Qualifier="live")
    assert url["AuthType"] == "AWS_IAM"
    assert rec["Outputs"]["FunctionUrl"]["Value"] == url["FunctionUrl"]

    # The template edited as a team would edit it: a variable in Globals changed. With
    # AutoPublishAliasAllProperties the version's logical id hashes the function's properties,
    # so SAM itself makes a new Version resource (and drops the old one, DeletionPolicy Delete).
    edited = tmp_path / "sam_e2e"
    shutil.copytree(SAM.parent, edited)
    text = (edited / "template.yaml").read_text()
    assert "STAGE: test" in text
    (edited / "template.yaml").write_text(text.replace("STAGE: test", "STAGE: staging"))
    before = snapshot(lam, rec)
    p = cli.deploy(edited / "template.yaml", stack)
    rec2 = stack_record(server, stack)
    assert rec2["StackStatus"] == "UPDATE_COMPLETE"
    assert rec2["Revision"] > rec["Revision"]
    new = assert_one_new_version(lam, before, rec2, {"STAGE": "staging"})
    assert invoke(lam, fn, "live")["stage"] == "staging"
    assert invoke(lam, fn, new)["version"] == new
    # The printed plan: the function updated, the new version created and the old one deleted,
    # the alias moved; the capacity provider, the roles and the URL untouched.
    old_version = next(i for i in rec["Resources"] if i.startswith("MyFunctionVersion"))
    new_version = next(i for i in rec2["Resources"] if i.startswith("MyFunctionVersion"))
    assert old_version != new_version
    assert changed_ids(p) == {"MyFunction", old_version, new_version, "MyFunctionAliaslive"}, out(p)

    # Nothing changed: nothing to do, no version.
    published = versions(lam, fn)
    p = cli.deploy(edited / "template.yaml", stack)
    assert versions(lam, fn) == published
    assert changed_ids(p) == set(), out(p)

    # A parameter the function's environment refers to: the function is updated and fleetfn
    # publishes a new version behind the alias (its function changed), here too.
    before = snapshot(lam, rec2)
    p = cli.deploy(edited / "template.yaml", stack, "--parameter-overrides", "Greeting=howdy")
    rec2 = stack_record(server, stack)
    newer = assert_one_new_version(lam, before, rec2, {"GREETING": "howdy"})
    assert invoke(lam, fn, "live") == {"greeting": "howdy", "stage": "staging", "version": newer,
                                       "echo": {"from": "test"}}

    p = cli.run("stacks", "delete", stack)
    assert p.returncode == 0, out(p)
    assert_gone(lam, server, stack, rec2)


PLAN_LINE = re.compile(r"^(?:\+ Create|~ Update|-/\+ Replace|- Delete) (\S+) \(")


def changed_ids(p: subprocess.CompletedProcess) -> set[str]:
    """Logical ids the printed plan (stdout) creates, updates, replaces or deletes."""
    return {m.group(1) for line in p.stdout.splitlines() if (m := PLAN_LINE.match(line))}


def test_cloudformation_template_dry_run_update_failed_publish_delete(cli, server, lam, python_functions):
    stack = h.uniq("cfn")
    # A dry run of a new stack plans every resource and creates nothing.
    token = f"ApiToken=tok-{stack}"  # NoEcho: never printed, never in the record
    p = cli.deploy(CFN, stack, "--dry-run", "--parameter-overrides", token)
    for lid in ("CapacityProvider", "Function", "Version", "LiveAlias"):
        assert lid in out(p), out(p)
    assert stack_record(server, stack) is None

    p = cli.deploy(CFN, stack, "--parameter-overrides", token)
    assert f"tok-{stack}" not in out(p), "a NoEcho parameter's value was printed"
    rec = stack_record(server, stack)
    assert rec["StackStatus"] == "CREATE_COMPLETE"
    assert rec["Parameters"]["ApiToken"] == "****", "a NoEcho parameter was stored"
    fn = function_name(rec)
    [v1] = versions(lam, fn)
    for qualifier in ("live", v1):
        body = invoke(lam, fn, qualifier)
        assert body == {"greeting": "hello", "stage": "test", "version": v1, "echo": {"from": "test"}}, body
    assert rec["Outputs"]["VersionNumber"]["Value"] == v1
    assert rec["Outputs"]["Region"]["Value"] == f"{h.REGION}/subnet-a"
    tags = lam.list_tags(Resource=rec["Outputs"]["FunctionArn"]["Value"])["Tags"]
    assert tags.get("stack") == stack

    before = snapshot(lam, rec)
    # The plan of an update, without applying it.
    p = cli.deploy(CFN, stack, "--parameter-overrides", "Greeting=howdy", token, "--dry-run")
    assert changed_ids(p) == {"Function", "Version", "LiveAlias"}, out(p)
    assert "Dry run" in p.stdout
    assert stack_record(server, stack)["Revision"] == rec["Revision"]
    assert snapshot(lam, rec) == before

    p = cli.deploy(CFN, stack, "--parameter-overrides", "Greeting=howdy", token)
    assert changed_ids(p) == {"Function", "Version", "LiveAlias"}, out(p)
    rec2 = stack_record(server, stack)
    v2 = assert_one_new_version(lam, before, rec2, {"GREETING": "howdy"})
    assert invoke(lam, fn, "live") == {"greeting": "howdy", "stage": "test", "version": v2, "echo": {"from": "test"}}

    # A version that fails to publish (the code raises at import): the deploy fails, names the
    # resource, and the stack is back where it was: the function's configuration, the alias.
    before = snapshot(lam, rec2)
    p = cli.deploy(CFN, stack, "--parameter-overrides", "Greeting=howdy", token, "CrashAtInit=yes", ok=False)
    assert p.returncode == 1, out(p)
    assert "Version" in out(p) and "Failed" in out(p), out(p)
    rec3 = stack_record(server, stack)
    assert rec3["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE", rec3["StackStatus"]
    after = snapshot(lam, rec3)
    assert after["alias"] == v2 and after["env"] == before["env"], after
    assert invoke(lam, fn, "live")["greeting"] == "howdy"

    p = cli.run("stacks", "list")
    assert p.returncode == 0 and stack in p.stdout, out(p)
    p = cli.run("stacks", "describe", stack)
    assert p.returncode == 0 and fn in p.stdout, out(p)
    assert f"tok-{stack}" not in p.stdout, "stacks describe showed a NoEcho value"
    assert f"tok-{stack}" not in json.dumps(stack_record(server, stack)["Parameters"])
    p = cli.run("stacks", "delete", stack)
    assert p.returncode == 0, out(p)
    assert_gone(lam, server, stack, rec3)


def test_cdk_output_with_an_asset_deploy_update_delete(cli, server, lam, python_functions):
    stack = h.uniq("cdk")
    p = cli.deploy(CDK, stack)
    rec = stack_record(server, stack)
    assert rec["StackStatus"] == "CREATE_COMPLETE"
    fn = function_name(rec)
    [v1] = versions(lam, fn)
    body = invoke(lam, fn, "live")
    assert body["greeting"] == "hello from cdk" and body["stage"] == "cdk" and body["version"] == v1, body
    # The code is the asset directory's index.py, zipped.
    assert lam.get_function(FunctionName=fn)["Configuration"]["Handler"] == "index.handler"

    before = snapshot(lam, rec)
    cli.deploy(CDK_V2, stack)
    rec2 = stack_record(server, stack)
    after = snapshot(lam, rec2)
    # The CDK names the version after a hash of the function's configuration: a new logical id,
    # so the old version resource goes (the CDK no longer retains it) and one new one comes.
    new = sorted(set(after["versions"]) - set(before["versions"]), key=int)
    assert len(new) == 1 and after["alias"] == new[0], (before, after)
    assert after["env"]["GREETING"] == "howdy from cdk"
    assert after["cp"]["CapacityProviderArn"] == before["cp"]["CapacityProviderArn"]
    assert invoke(lam, fn, "live")["greeting"] == "howdy from cdk"

    p = cli.run("stacks", "delete", stack)
    assert p.returncode == 0, out(p)
    assert_gone(lam, server, stack, rec2)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_a_circular_ref_is_refused_before_anything_is_created(cli, server, lam):
    stack = h.uniq("circ")
    p = cli.deploy(CIRCULAR, stack, ok=False)
    assert p.returncode == 1, out(p)
    assert "Ping" in p.stderr and "Pong" in p.stderr and "ircular" in p.stderr, out(p)
    assert stack_record(server, stack) is None
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert not [n for n in names if n.startswith(stack)], names


def test_an_unknown_parameter_is_refused(cli, server):
    stack = h.uniq("param")
    p = cli.deploy(CFN, stack, "--parameter-overrides", "Greting=typo", ok=False)
    assert p.returncode == 1, out(p)
    assert "Greting" in p.stderr, out(p)
    assert stack_record(server, stack) is None


def test_a_value_the_api_refuses_names_the_resource_and_rolls_back(cli, server, lam):
    stack = h.uniq("bad")
    p = cli.deploy(BAD_MEMORY, stack, ok=False)
    assert p.returncode == 1, out(p)
    # The API's own error, attributed to the template's logical id.
    assert "TooSmall" in p.stderr and "AWS::Lambda::Function" in p.stderr, out(p)
    assert "ValidationException" in p.stderr and "memorySize" in p.stderr, out(p)
    # The capacity provider created before it is gone again.
    cps = [c["CapacityProviderArn"] for c in lam.list_capacity_providers()["CapacityProviders"]]
    assert not [c for c in cps if f":capacity-provider:{stack}" in c], cps
    rec = stack_record(server, stack)
    assert rec["StackStatus"] == "ROLLBACK_COMPLETE", rec["StackStatus"]
    assert "TooSmall" in rec["StatusReason"], rec["StatusReason"]
    assert not physical(rec, "AWS::Lambda::CapacityProvider"), rec["Resources"]

    # Fixed, the same stack deploys from scratch (a stack that never got created has nothing to
    # update), and goes away again.
    p = cli.deploy(BAD_MEMORY, stack, "--parameter-overrides", "MemorySize=2048")
    rec = stack_record(server, stack)
    assert rec["StackStatus"] == "CREATE_COMPLETE", out(p)
    fn = function_name(rec)
    assert lam.get_function_configuration(FunctionName=fn)["MemorySize"] == 2048
    p = cli.run("stacks", "delete", stack)
    assert p.returncode == 0, out(p)
    assert_gone(lam, server, stack, rec)


def test_an_unknown_resource_type_is_skipped_with_a_warning_and_refused_with_strict(cli, server, lam):
    stack = h.uniq("bucket")
    p = cli.deploy(WITH_BUCKET, stack, "--strict", ok=False)
    assert p.returncode == 1, out(p)
    assert "Artifacts" in p.stderr and "AWS::S3::Bucket" in p.stderr, out(p)
    assert stack_record(server, stack) is None

    p = cli.deploy(WITH_BUCKET, stack)
    assert "Artifacts" in p.stderr and "AWS::S3::Bucket" in p.stderr, out(p)
    rec = stack_record(server, stack)
    fn = function_name(rec)
    lam.get_function(FunctionName=fn)
    assert not physical(rec, "AWS::S3::Bucket").get("Artifacts"), rec["Resources"].get("Artifacts")
    p = cli.run("stacks", "delete", stack)
    assert p.returncode == 0, out(p)
    assert_gone(lam, server, stack, rec)


def test_deploys_of_one_stack_at_once_one_wins_and_nothing_is_left_unrecorded(cli, server, lam):
    stack = h.uniq("race")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLEETFN_"))}
    env.update(HOME=str(cli.home), NO_COLOR="1", AWS_ACCESS_KEY_ID=h.ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=h.SECRET_KEY, AWS_DEFAULT_REGION=h.REGION, FLEETFN_ENDPOINT_URL=cli.endpoint)
    argv = [str(cli.binary), "deploy", "--template", str(WITH_BUCKET), "--stack-name", stack]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for _ in range(3)]
    results = [(p.wait(timeout=DEPLOY_TIMEOUT), *p.communicate()) for p in procs]
    # Three started together: one takes the stack, at least one of the others finds it taken (one
    # that starts after the winner finished is a no-change update, and succeeds).
    codes = sorted(rc for rc, _, _ in results)
    assert codes[0] == 0 and codes[1:] != [0, 0] and set(codes) <= {0, 1}, results
    for rc, _, err in results:
        assert rc == 0 or "another deploy" in err, err
    # The losers stopped before creating anything: the only function of the stack is recorded.
    rec = stack_record(server, stack)
    assert rec["StackStatus"] == "CREATE_COMPLETE", rec["StackStatus"]
    fns = [f["FunctionName"] for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith(f"{stack}-")]
    assert fns == [function_name(rec)], fns

    # A deploy killed midway leaves the record in progress: the next deploy says so, and --force
    # takes the stack over.
    r = h.raw_request(server.endpoint, "PUT", f"/fleetfn/v1/stacks/{stack}",
                      body=json.dumps(dict(rec, StackStatus="UPDATE_IN_PROGRESS")),
                      headers={"X-Fleetfn-Stack-Revision": str(rec["Revision"])})
    assert r.status_code == 200, r.text
    p = cli.deploy(WITH_BUCKET, stack, ok=False)
    assert p.returncode == 1 and "UPDATE_IN_PROGRESS" in p.stderr and "--force" in p.stderr, out(p)
    cli.deploy(WITH_BUCKET, stack, "--force")
    assert stack_record(server, stack)["StackStatus"] in ("UPDATE_COMPLETE", "CREATE_COMPLETE")
    p = cli.run("stacks", "delete", stack)
    assert p.returncode == 0, out(p)
    assert_gone(lam, server, stack, rec)
