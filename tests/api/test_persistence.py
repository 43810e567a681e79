"""State survives a graceful restart on the same --data-dir."""

import signal

from fleetfn_testkit import api as h
from fleetfn_testkit.api import make_client


def _stop_cleanly(srv):
    rc = srv.stop()
    # Graceful shutdown on SIGTERM: exit 0, or terminated by the signal itself; never a
    # panic/abort status.
    assert rc in (0, -signal.SIGTERM), f"fleetfn exited with {rc} after SIGTERM\n{srv.logs()}"


def _snapshot(lam, cp_name, fn, fn_plain):
    cp = lam.get_capacity_provider(CapacityProviderName=cp_name)["CapacityProvider"]
    latest = lam.get_function(FunctionName=fn)
    v1 = lam.get_function_configuration(FunctionName=fn, Qualifier="1")
    v2 = lam.get_function_configuration(FunctionName=fn, Qualifier="2")
    lp = lam.get_function_configuration(FunctionName=fn, Qualifier="$LATEST.PUBLISHED")
    alias = lam.get_alias(FunctionName=fn, Name="live")
    scaling = lam.get_function_scaling_config(FunctionName=fn, Qualifier="1")
    versions = lam.list_versions_by_function(FunctionName=fn)["Versions"]
    by_cp = lam.list_function_versions_by_capacity_provider(CapacityProviderName=cp_name)["FunctionVersions"]
    plain = lam.get_function_configuration(FunctionName=fn_plain)
    return {
        "cp": {k: cp.get(k) for k in ("CapacityProviderArn", "VpcConfig", "PermissionsConfig", "InstanceRequirements",
                                       "CapacityProviderScalingConfig", "KmsKeyArn")},
        "cp_tags": lam.list_tags(Resource=cp["CapacityProviderArn"])["Tags"],
        "latest": {k: latest["Configuration"].get(k) for k in (
            "FunctionArn", "RevisionId", "CodeSha256", "CodeSize", "MemorySize", "Timeout", "Runtime", "Handler",
            "Role", "Environment", "CapacityProviderConfig", "Description")},
        "fn_tags": latest.get("Tags"),
        "v1": {k: v1.get(k) for k in ("FunctionArn", "Version", "RevisionId", "CodeSha256", "CodeSize", "Description")},
        "v2": {k: v2.get(k) for k in ("FunctionArn", "Version", "RevisionId", "CodeSha256", "CodeSize", "Environment")},
        "lp": {k: lp.get(k) for k in ("FunctionArn", "CodeSha256")},
        "alias": {k: alias.get(k) for k in ("AliasArn", "FunctionVersion", "RevisionId", "RoutingConfig", "Description")},
        "scaling": scaling.get("RequestedFunctionScalingConfig") or scaling.get("AppliedFunctionScalingConfig"),
        "versions": sorted(v["Version"] for v in versions),
        "by_cp": sorted(v["FunctionArn"] for v in by_cp),
        "plain": {k: plain.get(k) for k in ("FunctionArn", "RevisionId", "CodeSha256")},
    }


def test_state_survives_restart(server_factory):
    srv = server_factory.new(name="persist")
    data_dir = srv.data_dir
    lam = make_client(srv.endpoint)

    cp_name = h.uniq("pcp")
    h.create_active_cp(lam, cp_name, Tags={"k": "v"}, KmsKeyArn=h.KMS_KEY_ARN,
                       InstanceRequirements={"Architectures": ["arm64"], "AllowedInstanceTypes": ["m7g.large"]},
                       CapacityProviderScalingConfig={"MaxVCpuCount": 96, "ScalingMode": "Auto"})
    cp_arn = h.cp_arn_for(cp_name)
    fn = h.uniq("pfn")
    h.create_function(lam, fn, cp_arn, zip_bytes=h.python_zip("p1"), Tags={"app": "persist"},
                      Architectures=["arm64"], Description="persisted", Timeout=33)
    assert lam.publish_version(FunctionName=fn, Description="one")["Version"] == "1"
    h.update_code(lam, fn, h.python_zip("p2"))
    h.update_config(lam, fn, Environment={"Variables": {"STAGE": "two"}})
    assert lam.publish_version(FunctionName=fn)["Version"] == "2"
    lam.publish_version(FunctionName=fn, PublishTo="LATEST_PUBLISHED")
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="2", Description="prod",
                     RoutingConfig={"AdditionalVersionWeights": {"1": 0.1}})
    h.poll(lambda: _try_put_scaling(lam, fn), lambda ok: ok, "PutFunctionScalingConfig to be accepted")
    fn_plain = h.uniq("pplain")
    lam.create_function(**h.function_request(fn_plain, None, memory=256))
    h.wait_function_settled(lam, fn_plain)
    gone_fn = h.uniq("pgone")
    h.create_function(lam, gone_fn, cp_arn)
    assert h.status_of(lam.delete_function(FunctionName=gone_fn)) == 202
    h.gone(lambda: lam.get_function(FunctionName=gone_fn), f"function {gone_fn}")

    before = _snapshot(lam, cp_name, fn, fn_plain)
    assert before["scaling"] == {"MinExecutionEnvironments": 4, "MaxExecutionEnvironments": 9}
    _stop_cleanly(srv)

    srv2 = server_factory.new(data_dir=data_dir, name="persist-restarted")
    lam2 = make_client(srv2.endpoint)
    after = _snapshot(lam2, cp_name, fn, fn_plain)
    for key in before:
        assert after[key] == before[key], f"{key} changed across restart:\nbefore={before[key]}\nafter={after[key]}"
    assert lam2.get_capacity_provider(CapacityProviderName=cp_name)["CapacityProvider"]["State"] == "Active"
    assert lam2.get_function_configuration(FunctionName=fn)["State"] == "ActiveNonInvocable"
    h.expect_error(lam2, lambda: lam2.get_function(FunctionName=gone_fn), "ResourceNotFoundException", 404)

    # Counters survive too: the next publish is 3, not 1 or 2; names stay taken.
    h.update_config(lam2, fn, Description="after restart")
    assert lam2.publish_version(FunctionName=fn)["Version"] == "3"
    h.expect_error(lam2, lambda: lam2.create_function(**h.function_request(fn, cp_arn)), "ResourceConflictException", 409)
    h.expect_error(lam2, lambda: h.create_cp(lam2, cp_name), "ResourceConflictException", 409)

    # And writes after the restart persist across another restart.
    _stop_cleanly(srv2)
    srv3 = server_factory.new(data_dir=data_dir, name="persist-restarted-2")
    lam3 = make_client(srv3.endpoint)
    assert lam3.get_function_configuration(FunctionName=fn, Qualifier="3")["Version"] == "3"
    assert lam3.get_function_configuration(FunctionName=fn)["Description"] == "after restart"


def _try_put_scaling(lam, fn):
    from botocore.exceptions import ClientError

    try:
        lam.put_function_scaling_config(FunctionName=fn, Qualifier="1",
                                        FunctionScalingConfig={"MinExecutionEnvironments": 4,
                                                               "MaxExecutionEnvironments": 9})
        return True
    except ClientError as err:
        if h.error_code(err) == "ResourceConflictException":
            return False
        raise


def test_fresh_data_dir_starts_empty(server_factory):
    a = server_factory.new(name="iso-a")
    lam_a = make_client(a.endpoint)
    name = h.uniq("isofn")
    lam_a.create_function(**h.function_request(name, None, memory=256))
    b = server_factory.new(name="iso-b")
    lam_b = make_client(b.endpoint)
    h.expect_error(lam_b, lambda: lam_b.get_function(FunctionName=name), "ResourceNotFoundException", 404)
    assert lam_a.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def test_sigterm_is_graceful(server_factory):
    srv = server_factory.new(name="sigterm")
    lam = make_client(srv.endpoint)
    assert h.status_of(lam.list_functions()) == 200
    _stop_cleanly(srv)
    assert not srv.running()
