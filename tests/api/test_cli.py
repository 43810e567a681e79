"""The unmodified AWS CLI against fleetfn via --endpoint-url."""

import json
import subprocess
import time

import pytest

from fleetfn_testkit import api as h


class Cli:
    def __init__(self, exe, endpoint, env):
        self.exe, self.endpoint, self.env = exe, endpoint, env

    def run(self, *args, check=True, timeout=120):
        cmd = [self.exe, "--endpoint-url", self.endpoint, "--region", h.REGION, "--output", "json", "lambda", *args]
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            pytest.fail(f"`aws lambda {' '.join(args)}` exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def json(self, *args):
        out = self.run(*args).stdout.strip()
        return json.loads(out) if out else {}

    def wait(self, desc, args, until, timeout=h.ASYNC_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            p = self.run(*args, check=False)
            if until(p):
                return p
            if time.monotonic() >= deadline:
                pytest.fail(f"timed out waiting for {desc}; last: rc={p.returncode} {p.stdout} {p.stderr}")
            time.sleep(0.2)


@pytest.fixture
def cli(aws_cli, endpoint, cli_env):
    return Cli(aws_cli, endpoint, cli_env)


def test_cli_end_to_end(cli, tmp_path):
    cp_name = h.uniq("clicp")
    created = cli.json(
        "create-capacity-provider", "--capacity-provider-name", cp_name,
        "--vpc-config", json.dumps({"SubnetIds": h.SUBNETS, "SecurityGroupIds": h.SECURITY_GROUPS}),
        "--permissions-config", json.dumps({"CapacityProviderOperatorRoleArn": h.OPERATOR_ROLE_ARN}),
        "--capacity-provider-scaling-config", "MaxVCpuCount=32,ScalingMode=Auto",
    )
    cp_arn = created["CapacityProvider"]["CapacityProviderArn"]
    assert cp_arn == h.cp_arn_for(cp_name)
    assert created["CapacityProvider"]["State"] in ("Pending", "Active")
    cli.wait("capacity provider Active", ["get-capacity-provider", "--capacity-provider-name", cp_name],
             lambda p: p.returncode == 0 and json.loads(p.stdout)["CapacityProvider"]["State"] == "Active")

    listed = cli.json("list-capacity-providers")
    assert cp_arn in {c["CapacityProviderArn"] for c in listed["CapacityProviders"]}

    fn = h.uniq("clifn")
    z = h.python_zip(fn)
    zip_path = tmp_path / "fn.zip"
    zip_path.write_bytes(z)
    made = cli.json(
        "create-function", "--function-name", fn, "--runtime", "python3.13", "--role", h.ROLE_ARN,
        "--handler", "app.handler", "--memory-size", "2048", "--zip-file", f"fileb://{zip_path}",
        "--capacity-provider-config",
        json.dumps({"LambdaManagedInstancesCapacityProviderConfig": {"CapacityProviderArn": cp_arn}}),
    )
    assert made["FunctionArn"] == h.fn_arn_for(fn)
    assert made["CodeSha256"] == h.code_sha256(z)
    cli.wait("function settled", ["get-function-configuration", "--function-name", fn],
             lambda p: p.returncode == 0 and json.loads(p.stdout).get("State") == "ActiveNonInvocable"
             and json.loads(p.stdout).get("LastUpdateStatus") != "InProgress")

    got = cli.json("get-function", "--function-name", fn)
    assert got["Configuration"]["CodeSha256"] == h.code_sha256(z)
    assert got["Configuration"]["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"][
        "CapacityProviderArn"] == cp_arn

    pub = cli.json("publish-version", "--function-name", fn)
    assert pub["Version"] == "1"
    assert pub["State"] in h.PUBLISHED_VERSION_STATES

    by_cp = cli.json("list-function-versions-by-capacity-provider", "--capacity-provider-name", cp_name)
    assert by_cp["CapacityProviderArn"] == cp_arn
    assert h.fn_arn_for(fn, "1") in {v["FunctionArn"] for v in by_cp["FunctionVersions"]}

    put = cli.wait("put-function-scaling-config accepted",
                   ["put-function-scaling-config", "--function-name", fn, "--qualifier", "1",
                    "--function-scaling-config", "MinExecutionEnvironments=3,MaxExecutionEnvironments=6"],
                   lambda p: p.returncode == 0 or "ResourceConflictException" not in p.stderr)
    assert put.returncode == 0, put.stderr
    sc = cli.json("get-function-scaling-config", "--function-name", fn, "--qualifier", "1")
    eff = sc.get("RequestedFunctionScalingConfig") or sc.get("AppliedFunctionScalingConfig")
    assert eff == {"MinExecutionEnvironments": 3, "MaxExecutionEnvironments": 6}

    # Deleting the CP while a version is attached is refused.
    p = cli.run("delete-capacity-provider", "--capacity-provider-name", cp_name, check=False)
    assert p.returncode != 0 and "ResourceConflictException" in p.stderr, (p.returncode, p.stderr)

    cli.run("delete-function", "--function-name", fn)
    cli.wait("function gone", ["get-function", "--function-name", fn],
             lambda p: p.returncode != 0 and "ResourceNotFoundException" in p.stderr)

    p = cli.wait("capacity provider deletable", ["delete-capacity-provider", "--capacity-provider-name", cp_name],
                 lambda p: p.returncode == 0 or "ResourceConflictException" not in p.stderr)
    assert p.returncode == 0, p.stderr
    cli.wait("capacity provider gone", ["get-capacity-provider", "--capacity-provider-name", cp_name],
             lambda p: p.returncode != 0 and "ResourceNotFoundException" in p.stderr)


def test_cli_error_reporting(cli):
    name = h.uniq("clighost")
    p = cli.run("get-function", "--function-name", name, check=False)
    assert p.returncode != 0
    assert "ResourceNotFoundException" in p.stderr, p.stderr
    assert name in p.stderr, p.stderr


def test_cli_list_functions(cli, lam, cp_arn):
    name = h.uniq("clilist")
    h.create_function(lam, name, cp_arn)
    out = cli.json("list-functions")  # the CLI follows NextMarker itself
    assert name in {f["FunctionName"] for f in out["Functions"]}
