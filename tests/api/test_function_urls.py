"""Function URL configs (Create/Get/Update/Delete/ListFunctionUrlConfig(s)) and resource-based
policies (AddPermission, RemovePermission, GetPolicy) through boto3 and the AWS CLI: shapes,
status codes, AWS's error types and messages, and both going with their alias and function."""

import json
import re
import subprocess

import pytest

from fleetfn_testkit import api as h

URL_RE = re.compile(r"^http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost(:\d+)?/$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def fn(lam, cp_arn):
    """A function with version 1 and alias `live` on it."""
    name = h.uniq("fnurl")
    h.create_function(lam, name, cp_arn)
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    return name


def url_id(cfg: dict) -> str:
    m = URL_RE.match(cfg["FunctionUrl"])
    assert m, cfg["FunctionUrl"]
    return m.group(1)


def test_url_config_crud(lam, fn):
    created = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    assert h.status_of(created) == 201
    uid = url_id(created)
    assert created["FunctionArn"] == h.fn_arn_for(fn)
    assert created["AuthType"] == "NONE"
    assert created["InvokeMode"] == "BUFFERED"
    assert TIME_RE.match(created["CreationTime"]), created["CreationTime"]
    assert "LastModifiedTime" not in created and "Cors" not in created

    got = lam.get_function_url_config(FunctionName=fn)
    assert h.status_of(got) == 200
    for k in ("FunctionUrl", "FunctionArn", "AuthType", "CreationTime", "InvokeMode"):
        assert got[k] == created[k], k
    assert TIME_RE.match(got["LastModifiedTime"])

    h.expect_error(lam, lambda: lam.create_function_url_config(FunctionName=fn, AuthType="AWS_IAM"),
                   "ResourceConflictException", 409, mentions=["FunctionUrlConfig exists for this Lambda function"])

    cors = {"AllowCredentials": True, "AllowHeaders": ["x-custom"], "AllowMethods": ["GET", "POST"],
            "AllowOrigins": ["https://example.com"], "ExposeHeaders": ["x-out"], "MaxAge": 300}
    updated = lam.update_function_url_config(FunctionName=fn, AuthType="AWS_IAM", Cors=cors,
                                             InvokeMode="RESPONSE_STREAM")
    assert h.status_of(updated) == 200
    assert url_id(updated) == uid, "the URL is stable across updates"
    assert updated["CreationTime"] == created["CreationTime"]
    assert updated["LastModifiedTime"] >= got["LastModifiedTime"]
    assert (updated["AuthType"], updated["InvokeMode"], updated["Cors"]) == ("AWS_IAM", "RESPONSE_STREAM", cors)
    # Members left out stay as they are.
    again = lam.update_function_url_config(FunctionName=fn, Cors={"MaxAge": 5})
    assert (again["AuthType"], again["InvokeMode"], again["Cors"]) == ("AWS_IAM", "RESPONSE_STREAM", {"MaxAge": 5})

    # By ARN too.
    assert lam.get_function_url_config(FunctionName=h.fn_arn_for(fn))["FunctionUrl"] == created["FunctionUrl"]

    deleted = lam.delete_function_url_config(FunctionName=fn)
    assert h.status_of(deleted) == 204
    h.expect_error(lam, lambda: lam.get_function_url_config(FunctionName=fn), "ResourceNotFoundException", 404,
                   mentions=["The resource you requested does not exist."])
    h.expect_error(lam, lambda: lam.delete_function_url_config(FunctionName=fn), "ResourceNotFoundException", 404)
    h.expect_error(lam, lambda: lam.update_function_url_config(FunctionName=fn, AuthType="NONE"),
                   "ResourceNotFoundException", 404)
    # A new config gets a new URL.
    assert url_id(lam.create_function_url_config(FunctionName=fn, AuthType="NONE")) != uid


def test_alias_urls_and_listing(lam, lam_nv, fn):
    plain = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    live = lam.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="AWS_IAM")
    assert live["FunctionArn"] == h.fn_arn_for(fn, "live")
    assert url_id(live) != url_id(plain)
    assert lam.get_function_url_config(FunctionName=f"{fn}:live")["FunctionUrl"] == live["FunctionUrl"]
    assert lam.get_function_url_config(FunctionName=fn, Qualifier="live")["AuthType"] == "AWS_IAM"

    listed = lam.list_function_url_configs(FunctionName=fn)
    assert h.status_of(listed) == 200
    assert sorted(c["FunctionArn"] for c in listed["FunctionUrlConfigs"]) == sorted(
        [h.fn_arn_for(fn), h.fn_arn_for(fn, "live")])
    assert all("LastModifiedTime" in c for c in listed["FunctionUrlConfigs"])
    configs, pages = h.paginate(lam.list_function_url_configs, "FunctionUrlConfigs", 1, FunctionName=fn)
    assert len(configs) == 2 and pages == 2

    # The function itself ($LATEST names it too) or an alias: no version.
    assert lam.get_function_url_config(FunctionName=fn, Qualifier="$LATEST")["FunctionUrl"] == plain["FunctionUrl"]
    for q in ("1", "$LATEST.PUBLISHED"):
        h.expect_error(lam, lambda: lam.create_function_url_config(FunctionName=fn, Qualifier=q, AuthType="NONE"),
                       "ValidationException", 400, mentions=["qualifier"])
    h.expect_error(lam, lambda: lam.create_function_url_config(FunctionName=fn, Qualifier="nope", AuthType="NONE"),
                   "ResourceNotFoundException", 404, mentions=[h.fn_arn_for(fn, "nope")])
    h.expect_error(lam, lambda: lam.create_function_url_config(FunctionName=h.uniq("missing"), AuthType="NONE"),
                   "ResourceNotFoundException", 404, mentions=["Function not found"])
    h.expect_error(lam, lambda: lam.list_function_url_configs(FunctionName=h.uniq("missing")),
                   "ResourceNotFoundException", 404, mentions=["Function not found"])
    h.expect_error(lam_nv, lambda: lam_nv.list_function_url_configs(FunctionName=fn, MaxItems=51),
                   "ValidationException", 400, mentions=["maxItems"])


def test_url_config_validation(lam_nv, fn):
    lam = lam_nv

    def create(**kw):
        return lambda: lam.create_function_url_config(FunctionName=fn, **kw)

    h.expect_error(lam, create(AuthType="PUBLIC"), "ValidationException", 400, mentions=["[NONE, AWS_IAM]"])
    h.expect_error(lam, create(AuthType="NONE", InvokeMode="STREAM"), "ValidationException", 400,
                   mentions=["[BUFFERED, RESPONSE_STREAM]"])
    h.expect_error(lam, create(AuthType="NONE", Cors={"MaxAge": 86401}), "ValidationException", 400,
                   mentions=["cors.maxAge"])
    h.expect_error(lam, create(AuthType="NONE", Cors={"AllowOrigins": ["https://a.example"] * 101}),
                   "ValidationException", 400, mentions=["cors.allowOrigins"])
    h.expect_error(lam, create(AuthType="NONE", Cors={"AllowMethods": ["GET"] * 7}),
                   "ValidationException", 400, mentions=["cors.allowMethods"])
    h.expect_error(lam, create(AuthType="NONE", Cors={"AllowHeaders": ["h" * 1025]}),
                   "ValidationException", 400, mentions=["cors.allowHeaders"])
    # Nothing was created by the refused requests; the limits themselves are accepted.
    h.expect_error(lam, lambda: lam.get_function_url_config(FunctionName=fn), "ResourceNotFoundException", 404)
    ok = lam.create_function_url_config(FunctionName=fn, AuthType="NONE",
                                        Cors={"MaxAge": 86400, "AllowOrigins": ["*"] * 100})
    assert ok["Cors"]["MaxAge"] == 86400


def test_policies(lam, lam_nv, fn):
    h.expect_error(lam, lambda: lam.get_policy(FunctionName=fn), "ResourceNotFoundException", 404,
                   mentions=["No policy is associated with the given resource."])
    added = lam.add_permission(FunctionName=fn, StatementId="FunctionURLAllowPublicAccess",
                               Action="lambda:InvokeFunctionUrl", Principal="*", FunctionUrlAuthType="NONE")
    assert h.status_of(added) == 201
    assert json.loads(added["Statement"]) == {
        "Sid": "FunctionURLAllowPublicAccess", "Effect": "Allow", "Principal": "*",
        "Action": "lambda:InvokeFunctionUrl", "Resource": h.fn_arn_for(fn),
        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}},
    }
    via = lam.add_permission(FunctionName=fn, StatementId="FunctionURLInvokeAllowPublicAccess",
                             Action="lambda:InvokeFunction", Principal="*", InvokedViaFunctionUrl=True)
    assert json.loads(via["Statement"])["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
    s3 = lam.add_permission(FunctionName=fn, StatementId="s3", Action="lambda:InvokeFunction",
                            Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::bucket",
                            SourceAccount="111122223333")
    assert json.loads(s3["Statement"])["Principal"] == {"Service": "s3.amazonaws.com"}
    assert json.loads(s3["Statement"])["Condition"] == {
        "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"},
        "StringEquals": {"AWS:SourceAccount": "111122223333"},
    }
    acct = lam.add_permission(FunctionName=fn, StatementId="acct", Action="lambda:GetFunction",
                              Principal="111122223333")
    assert json.loads(acct["Statement"])["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}

    got = lam.get_policy(FunctionName=fn)
    policy = json.loads(got["Policy"])
    assert (policy["Version"], policy["Id"]) == ("2012-10-17", "default")
    assert [s["Sid"] for s in policy["Statement"]] == [
        "FunctionURLAllowPublicAccess", "FunctionURLInvokeAllowPublicAccess", "s3", "acct"]
    assert got["RevisionId"]

    h.expect_error(lam, lambda: lam.add_permission(FunctionName=fn, StatementId="s3", Action="lambda:*",
                                                   Principal="*"),
                   "ResourceConflictException", 409, mentions=["The statement id (sid) provided already exists"])
    h.expect_error(lam, lambda: lam.add_permission(FunctionName=fn, StatementId="x", Action="lambda:*",
                                                   Principal="*", RevisionId="stale"),
                   "PreconditionFailedException", 412, mentions=["Revision Id"])
    h.expect_error(lam, lambda: lam.remove_permission(FunctionName=fn, StatementId="s3", RevisionId="stale"),
                   "PreconditionFailedException", 412, mentions=["Revision Id"])
    h.expect_error(lam_nv, lambda: lam_nv.add_permission(FunctionName=fn, StatementId="x", Action="s3:GetObject",
                                                         Principal="*"),
                   "ValidationException", 400, mentions=["action"])
    h.expect_error(lam, lambda: lam.add_permission(FunctionName=fn, StatementId="x", Action="lambda:*",
                                                   Principal="someone"),
                   "InvalidParameterValueException", 400, mentions=["principal"])
    h.expect_error(lam, lambda: lam.add_permission(FunctionName=fn, StatementId="x", Action="lambda:*",
                                                   Principal="*", Qualifier="$LATEST"),
                   "InvalidParameterValueException", 400, mentions=["$LATEST"])
    h.expect_error(lam, lambda: lam.add_permission(FunctionName=fn, StatementId="x", Action="lambda:*",
                                                   Principal="*", Qualifier="9"),
                   "ResourceNotFoundException", 404, mentions=[h.fn_arn_for(fn, "9")])
    h.expect_error(lam, lambda: lam.add_permission(FunctionName=h.uniq("missing"), StatementId="x",
                                                   Action="lambda:*", Principal="*"),
                   "ResourceNotFoundException", 404, mentions=["Function not found"])

    rev = lam.get_policy(FunctionName=fn)["RevisionId"]
    removed = lam.remove_permission(FunctionName=fn, StatementId="s3", RevisionId=rev)
    assert h.status_of(removed) == 204
    assert lam.get_policy(FunctionName=fn)["RevisionId"] != rev
    h.expect_error(lam, lambda: lam.remove_permission(FunctionName=fn, StatementId="s3"),
                   "ResourceNotFoundException", 404, mentions=["Statement s3 is not found in resource policy."])

    # Versions and aliases have policies of their own.
    h.expect_error(lam, lambda: lam.get_policy(FunctionName=fn, Qualifier="live"), "ResourceNotFoundException", 404)
    lam.add_permission(FunctionName=fn, Qualifier="live", StatementId="s3", Action="lambda:InvokeFunction",
                       Principal="s3.amazonaws.com")
    lam.add_permission(FunctionName=f"{fn}:1", StatementId="v1", Action="lambda:InvokeFunction",
                       Principal="*")
    live = json.loads(lam.get_policy(FunctionName=fn, Qualifier="live")["Policy"])
    assert [(s["Sid"], s["Resource"]) for s in live["Statement"]] == [("s3", h.fn_arn_for(fn, "live"))]
    v1 = json.loads(lam.get_policy(FunctionName=fn, Qualifier="1")["Policy"])
    assert [(s["Sid"], s["Resource"]) for s in v1["Statement"]] == [("v1", h.fn_arn_for(fn, "1"))]

    # The last statement takes the policy with it.
    for sid in ("FunctionURLAllowPublicAccess", "FunctionURLInvokeAllowPublicAccess", "acct"):
        lam.remove_permission(FunctionName=fn, StatementId=sid)
    h.expect_error(lam, lambda: lam.get_policy(FunctionName=fn), "ResourceNotFoundException", 404,
                   mentions=["No policy is associated with the given resource."])
    h.expect_error(lam, lambda: lam.remove_permission(FunctionName=fn, StatementId="acct"),
                   "ResourceNotFoundException", 404, mentions=["No policy is associated with the given resource."])


def test_urls_and_policies_go_with_their_alias_and_function(lam, cp_arn, fn):
    lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    lam.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="NONE")
    lam.add_permission(FunctionName=fn, StatementId="a", Action="lambda:*", Principal="*")
    lam.add_permission(FunctionName=fn, Qualifier="live", StatementId="a", Action="lambda:*", Principal="*")

    lam.delete_alias(FunctionName=fn, Name="live")
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    h.expect_error(lam, lambda: lam.get_function_url_config(FunctionName=fn, Qualifier="live"),
                   "ResourceNotFoundException", 404)
    h.expect_error(lam, lambda: lam.get_policy(FunctionName=fn, Qualifier="live"), "ResourceNotFoundException", 404)
    assert [c["FunctionArn"] for c in lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"]] == [
        h.fn_arn_for(fn)]

    lam.delete_function(FunctionName=fn)
    h.gone(lambda: lam.get_function(FunctionName=fn), f"function {fn}")
    h.create_function(lam, fn, cp_arn)
    h.expect_error(lam, lambda: lam.get_function_url_config(FunctionName=fn), "ResourceNotFoundException", 404)
    h.expect_error(lam, lambda: lam.get_policy(FunctionName=fn), "ResourceNotFoundException", 404)
    assert lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"] == []


def test_url_ids_are_unique(lam, cp_arn):
    ids = set()
    for _ in range(3):
        name = h.uniq("fnuid")
        h.create_function(lam, name, cp_arn)
        ids.add(url_id(lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")))
    assert len(ids) == 3


def test_aws_cli(aws_cli, endpoint, cli_env, fn):
    def run(*args):
        cmd = [aws_cli, "--endpoint-url", endpoint, "--region", h.REGION, "--output", "json", "lambda", *args]
        p = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"`aws lambda {' '.join(args)}` exited {p.returncode}: {p.stderr}"
        return json.loads(p.stdout) if p.stdout.strip() else {}

    created = run("create-function-url-config", "--function-name", fn, "--auth-type", "NONE",
                  "--cors", "AllowOrigins=https://example.com,MaxAge=60")
    url_id(created)
    assert created["Cors"] == {"AllowOrigins": ["https://example.com"], "MaxAge": 60}
    added = run("add-permission", "--function-name", fn, "--statement-id", "FunctionURLAllowPublicAccess",
                "--action", "lambda:InvokeFunctionUrl", "--principal", "*", "--function-url-auth-type", "NONE")
    assert json.loads(added["Statement"])["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
    policy = json.loads(run("get-policy", "--function-name", fn)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["FunctionURLAllowPublicAccess"]
    listed = run("list-function-url-configs", "--function-name", fn)
    assert [c["FunctionUrl"] for c in listed["FunctionUrlConfigs"]] == [created["FunctionUrl"]]
    run("remove-permission", "--function-name", fn, "--statement-id", "FunctionURLAllowPublicAccess")
    run("delete-function-url-config", "--function-name", fn)
    assert run("list-function-url-configs", "--function-name", fn)["FunctionUrlConfigs"] == []
