"""Functions bound to a capacity provider (lmi-behaviour.md §1.2, §1.5, §1.6) and
the generic function CRUD they rely on."""

import pytest

from fleetfn_testkit import api as h
from fleetfn_testkit.api import lmi_config


def _cfg(lam, name, **kw):
    return lam.get_function_configuration(FunctionName=name, **kw)


# ------------------------------------------------------------------------------- create


@pytest.mark.parametrize("runtime", ["python3.13", "provided.al2023"])
def test_create_lmi_function(lam, cp_arn, runtime):
    name = h.uniq("fn")
    zip_bytes = h.bootstrap_zip() if runtime.startswith("provided") else h.python_zip()
    resp = lam.create_function(**h.function_request(name, cp_arn, runtime=runtime, zip_bytes=zip_bytes,
                                                    Description="lmi test", Timeout=30))
    assert h.status_of(resp) == 201
    assert resp["FunctionName"] == name
    assert resp["FunctionArn"] == h.fn_arn_for(name)
    assert resp["Version"] == "$LATEST"
    assert resp["Runtime"] == runtime
    assert resp["Role"] == h.ROLE_ARN
    assert resp["MemorySize"] == 2048
    assert resp["Timeout"] == 30
    assert resp["Description"] == "lmi test"
    assert resp.get("PackageType", "Zip") == "Zip"
    assert resp["CodeSha256"] == h.code_sha256(zip_bytes)
    assert resp["CodeSize"] == len(zip_bytes)
    assert resp["RevisionId"]
    assert resp["State"] in ("Pending", "ActiveNonInvocable")
    inner = resp["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    assert inner["CapacityProviderArn"] == cp_arn

    # $LATEST of an LMI function is never invocable (and never plain Active).
    cfg = h.poll(lambda: _cfg(lam, name), lambda c: c["State"] != "Pending", f"{name} to leave Pending")
    assert cfg["State"] == "ActiveNonInvocable"
    cfg = h.wait_function_settled(lam, name)
    assert cfg["LastUpdateStatus"] == "Successful"


def test_lmi_defaults(lam, cp_arn):
    """Defaults filled in on create (lmi-behaviour.md §1.2, §2.2): memory/vCPU ratio 2.0;
    PerExecutionEnvironmentMaxConcurrency defaults per runtime family (exact per-runtime
    value is not verified, so only its presence and range are checked)."""
    name = h.uniq("fndef")
    h.create_function(lam, name, cp_arn)
    inner = _cfg(lam, name)["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    assert inner["CapacityProviderArn"] == cp_arn
    assert inner["ExecutionEnvironmentMemoryGiBPerVCpu"] == 2.0
    conc = inner["PerExecutionEnvironmentMaxConcurrency"]
    assert isinstance(conc, int) and 1 <= conc <= 1600, conc


def test_explicit_lmi_settings_round_trip(lam, cp_arn):
    name = h.uniq("fnexp")
    cfg = lmi_config(cp_arn, ExecutionEnvironmentMemoryGiBPerVCpu=4.0, PerExecutionEnvironmentMaxConcurrency=32)
    resp = lam.create_function(**h.function_request(name, None, memory=8192, CapacityProviderConfig=cfg))
    assert h.status_of(resp) == 201
    got = h.wait_function_settled(lam, name)
    assert got["MemorySize"] == 8192
    inner = got["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    assert inner == {"CapacityProviderArn": cp_arn, "ExecutionEnvironmentMemoryGiBPerVCpu": 4.0,
                     "PerExecutionEnvironmentMaxConcurrency": 32}


@pytest.mark.parametrize("memory", [2048, 4096, 16384, 32768])
def test_memory_sizes_accepted_at_ratio_2(lam, cp_arn, memory):
    name = h.uniq("fnmem")
    resp = lam.create_function(**h.function_request(name, cp_arn, memory=memory))
    assert h.status_of(resp) == 201
    assert resp["MemorySize"] == memory


def test_memory_below_2048_rejected(lam, cp_arn):
    name = h.uniq("fnsmall")
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(name, cp_arn, memory=1024)),
                   "InvalidParameterValueException", 400, mentions=["memory"])
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)


@pytest.mark.parametrize("memory,ratio", [(6144, 4.0), (12288, 8.0), (5120, 2.0)])
def test_memory_not_multiple_of_ratio_rejected(lam, cp_arn, memory, ratio):
    # vCPUs = MemoryGiB / ratio must be a whole number (lmi-behaviour.md §1.2, §2.1).
    name = h.uniq("fnratio")
    req = h.function_request(name, None, memory=memory,
                             CapacityProviderConfig=lmi_config(cp_arn, ExecutionEnvironmentMemoryGiBPerVCpu=ratio))
    h.expect_error(lam, lambda: lam.create_function(**req), "InvalidParameterValueException", 400,
                   mentions=["memory", "ratio", "vcpu"])


def test_unsupported_ratio_rejected(lam, cp_arn):
    # 3.0 is within the model's 2.0..8.0 range but only 2, 4 and 8 are supported.
    name = h.uniq("fnr3")
    req = h.function_request(name, None, memory=6144,
                             CapacityProviderConfig=lmi_config(cp_arn, ExecutionEnvironmentMemoryGiBPerVCpu=3.0))
    h.expect_error(lam, lambda: lam.create_function(**req), "InvalidParameterValueException", 400,
                   mentions=["ratio", "memory", "vcpu", "executionenvironmentmemorygibpervcpu"])


@pytest.mark.parametrize("inner,mentions", [
    ({"PerExecutionEnvironmentMaxConcurrency": 0}, ["concurrency"]),
    ({"PerExecutionEnvironmentMaxConcurrency": 1601}, ["concurrency"]),
    ({"ExecutionEnvironmentMemoryGiBPerVCpu": 1.0}, ["vcpu", "memory"]),
    ({"ExecutionEnvironmentMemoryGiBPerVCpu": 16.0}, ["vcpu", "memory"]),
])
def test_lmi_config_out_of_model_range(lam_nv, cp_arn, inner, mentions):
    name = h.uniq("fnrange")
    req = h.function_request(name, None, CapacityProviderConfig=lmi_config(cp_arn, **inner))
    h.expect_error(lam_nv, lambda: lam_nv.create_function(**req), "ValidationException", 400, mentions=mentions)


def test_missing_inner_config_is_validation_error(lam_nv):
    # lmi-behaviour.md §1.2: "Value null at 'capacityProviderConfig.lambdaManagedInstancesCapacityProviderConfig'
    # failed to satisfy constraint: Member must not be null".
    req = h.function_request(h.uniq("fnnull"), None, CapacityProviderConfig={})
    h.expect_error(lam_nv, lambda: lam_nv.create_function(**req), "ValidationException", 400,
                   mentions=["lambdaManagedInstancesCapacityProviderConfig"])


def test_malformed_capacity_provider_arn_is_validation_error(lam):
    req = h.function_request(h.uniq("fnbadarn"), "not-an-arn")
    h.expect_error(lam, lambda: lam.create_function(**req), "ValidationException", 400,
                   mentions=["capacityproviderarn", "capacity provider", "arn"])


def test_unknown_capacity_provider_not_found(lam):
    missing = h.cp_arn_for(h.uniq("ghostcp"))
    name = h.uniq("fnghost")
    # lmi-behaviour.md §1.2: "Capacity provider not found: <arn>"
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(name, missing)),
                   "ResourceNotFoundException", 404, mentions=[missing.split(":")[-1], "capacity provider"])
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)


@pytest.mark.parametrize("runtime", ["python3.12", "nodejs20.x", "ruby3.3", "java17"])
def test_runtime_without_lmi_support_rejected(lam, cp_arn, runtime):
    # lmi-behaviour.md §1.2: "Runtime Enum <rt> does not support specified feature: Lambda Managed Instances"
    name = h.uniq("fnrt")
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(name, cp_arn, runtime=runtime)),
                   "InvalidParameterValueException", 400, mentions=[runtime])


def test_text_log_format_rejected(lam, cp_arn):
    # LMI is JSON-logging only (lmi-behaviour.md §1.2).
    req = h.function_request(h.uniq("fnlog"), cp_arn, LoggingConfig={"LogFormat": "Text"})
    h.expect_error(lam, lambda: lam.create_function(**req), "InvalidParameterValueException", 400,
                   mentions=["log", "text", "json"])


def test_publish_to_must_be_latest_published(lam_nv, cp_arn):
    # lmi-behaviour.md §1.2: "...Member must satisfy enum value set: [LATEST_PUBLISHED]"
    req = h.function_request(h.uniq("fnpt"), cp_arn, Publish=True, PublishTo="SOMEWHERE")
    h.expect_error(lam_nv, lambda: lam_nv.create_function(**req), "ValidationException", 400,
                   mentions=["LATEST_PUBLISHED", "publishto"])


def test_bad_zip_rejected(lam, cp_arn):
    name = h.uniq("fnzip")
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(name, cp_arn, zip_bytes=b"not a zip file")),
                   "InvalidParameterValueException", 400, mentions=["zip", "unzip"])
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)


@pytest.mark.parametrize("entry", ["../evil.py", "lib/../../evil.py", "/etc/evil.py"])
def test_zip_path_traversal_rejected(lam, cp_arn, entry):
    z = h.make_zip([("app.py", "def handler(e, c):\n    return e\n", 0o644), (entry, "pwned = True\n", 0o644)])
    name = h.uniq("fnslip")
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(name, cp_arn, zip_bytes=z)),
                   "InvalidParameterValueException", 400, mentions=["zip", "path", "entry", "evil", ".."])
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_duplicate_function_conflicts(lam, cp_arn):
    name = h.uniq("fndup")
    h.create_function(lam, name, cp_arn)
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(name, cp_arn)),
                   "ResourceConflictException", 409, mentions=[name, "exist"])


@pytest.mark.parametrize("bad", ["has space", "semi;colon", "x" * 141])
def test_bad_function_name_is_validation_error(lam, cp_arn, bad):
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(bad, cp_arn)), "ValidationException", 400,
                   mentions=["functionname", "function name", "name"])


def test_missing_role_is_validation_error(lam_nv, cp_arn):
    req = h.function_request(h.uniq("fnrole"), cp_arn)
    del req["Role"]
    h.expect_error(lam_nv, lambda: lam_nv.create_function(**req), "ValidationException", 400, mentions=["role"])


# ------------------------------------------------------------------------------- read


def test_get_function_and_configuration(lam, cp_arn):
    name = h.uniq("fnget")
    z = h.python_zip(name)
    created = h.create_function(lam, name, cp_arn, zip_bytes=z, Tags={"owner": "tests"},
                                Environment={"Variables": {"GREETING": "hi"}})
    got = lam.get_function(FunctionName=name)
    assert h.status_of(got) == 200
    cfg = got["Configuration"]
    for key in ("FunctionName", "FunctionArn", "Runtime", "Role", "Handler", "CodeSha256", "CodeSize",
                "MemorySize", "Version", "CapacityProviderConfig"):
        assert cfg[key] == created[key], key
    assert cfg["CodeSha256"] == h.code_sha256(z)
    assert cfg["CodeSize"] == len(z)
    assert cfg["Environment"]["Variables"] == {"GREETING": "hi"}
    assert cfg["State"] == "ActiveNonInvocable"
    assert got["Code"]["Location"], got["Code"]
    assert got.get("Tags") == {"owner": "tests"}

    only = _cfg(lam, name)
    assert only["FunctionArn"] == cfg["FunctionArn"]
    assert only["RevisionId"] == cfg["RevisionId"]
    assert only["CodeSha256"] == cfg["CodeSha256"]

    latest = _cfg(lam, name, Qualifier="$LATEST")
    assert latest["Version"] == "$LATEST"
    assert latest["RevisionId"] == cfg["RevisionId"]


def test_code_location_downloads_the_zip(lam, cp_arn):
    # FunctionCodeLocation.Location: "A presigned URL that you can use to download the deployment package."
    import requests

    name = h.uniq("fnloc")
    z = h.python_zip(name)
    h.create_function(lam, name, cp_arn, zip_bytes=z)
    loc = lam.get_function(FunctionName=name)["Code"]
    r = requests.get(loc["Location"], timeout=30)
    assert r.status_code == 200, (loc["Location"], r.status_code, r.text[:300])
    assert r.content == z


def test_get_unknown_function_not_found(lam):
    name = h.uniq("ghostfn")
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404,
                   mentions=[name])
    h.expect_error(lam, lambda: _cfg(lam, name), "ResourceNotFoundException", 404, mentions=[name])


def test_list_functions_paginates_without_duplicates(lam, cp_arn):
    prefix = h.uniq("fnlist")
    names = [f"{prefix}-{i}" for i in range(3)]
    for n in names:
        h.create_function(lam, n, cp_arn)
    items, pages = h.paginate(lam.list_functions, "Functions", 1)
    arns = [f["FunctionArn"] for f in items]
    assert len(arns) == len(set(arns)), "duplicates across pages"
    mine = [f for f in items if f["FunctionName"] in names]
    assert sorted(f["FunctionName"] for f in mine) == sorted(names)
    assert all(f["Version"] == "$LATEST" for f in mine)
    assert all(f["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]["CapacityProviderArn"]
               == cp_arn for f in mine)
    assert pages >= 3


def test_list_functions_all_versions(lam, cp_arn):
    name = h.uniq("fnall")
    h.create_function(lam, name, cp_arn)
    lam.publish_version(FunctionName=name)
    items, _ = h.paginate(lam.list_functions, "Functions", 50, FunctionVersion="ALL")
    arns = {f["FunctionArn"] for f in items}
    assert h.fn_arn_for(name, "1") in arns
    assert h.fn_arn_for(name) in arns or h.fn_arn_for(name, "$LATEST") in arns
    plain, _ = h.paginate(lam.list_functions, "Functions", 50)
    assert h.fn_arn_for(name, "1") not in {f["FunctionArn"] for f in plain}


# ------------------------------------------------------------------------------- update


def test_update_function_code(lam, cp_arn):
    name = h.uniq("fncode")
    z1, z2 = h.python_zip("one"), h.python_zip("two")
    created = h.create_function(lam, name, cp_arn, zip_bytes=z1)
    assert created["CodeSha256"] == h.code_sha256(z1)
    resp = lam.update_function_code(FunctionName=name, ZipFile=z2)
    assert h.status_of(resp) == 200
    assert resp["CodeSha256"] == h.code_sha256(z2)
    assert resp["CodeSize"] == len(z2)
    assert resp["RevisionId"] != created["RevisionId"]
    cfg = h.wait_function_settled(lam, name)
    assert cfg["CodeSha256"] == h.code_sha256(z2)
    assert cfg["LastUpdateStatus"] == "Successful"
    assert cfg["State"] == "ActiveNonInvocable"


def test_update_function_code_revision_guard(lam, cp_arn):
    name = h.uniq("fnrev")
    h.create_function(lam, name, cp_arn)
    h.expect_error(lam, lambda: lam.update_function_code(FunctionName=name, ZipFile=h.python_zip("x"),
                                                         RevisionId="00000000-0000-0000-0000-000000000000"),
                   "PreconditionFailedException", 412, mentions=["revision"])
    rev = _cfg(lam, name)["RevisionId"]
    ok = lam.update_function_code(FunctionName=name, ZipFile=h.python_zip("y"), RevisionId=rev)
    assert ok["CodeSha256"] == h.code_sha256(h.python_zip("y"))


def test_update_function_code_bad_zip(lam, cp_arn):
    name = h.uniq("fnbadupd")
    z = h.python_zip()
    h.create_function(lam, name, cp_arn, zip_bytes=z)
    h.expect_error(lam, lambda: lam.update_function_code(FunctionName=name, ZipFile=b"PK\x03\x04garbage"),
                   "InvalidParameterValueException", 400, mentions=["zip", "unzip"])
    assert _cfg(lam, name)["CodeSha256"] == h.code_sha256(z)


def test_update_function_configuration_round_trip(lam, cp_arn):
    name = h.uniq("fncfg")
    created = h.create_function(lam, name, cp_arn)
    resp = lam.update_function_configuration(
        FunctionName=name, Timeout=45, MemorySize=4096, Description="updated",
        Environment={"Variables": {"ALPHA": "1", "BETA": "two"}},
        CapacityProviderConfig=lmi_config(cp_arn, PerExecutionEnvironmentMaxConcurrency=8))
    assert h.status_of(resp) == 200
    assert resp["RevisionId"] != created["RevisionId"]
    cfg = h.wait_function_settled(lam, name)
    assert cfg["Timeout"] == 45
    assert cfg["MemorySize"] == 4096
    assert cfg["Description"] == "updated"
    assert cfg["Environment"]["Variables"] == {"ALPHA": "1", "BETA": "two"}
    assert cfg["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"][
        "PerExecutionEnvironmentMaxConcurrency"] == 8
    assert cfg["State"] == "ActiveNonInvocable"
    assert cfg["CodeSha256"] == created["CodeSha256"]


def test_update_configuration_memory_below_minimum(lam, cp_arn):
    name = h.uniq("fncfgmem")
    h.create_function(lam, name, cp_arn)
    h.expect_error(lam, lambda: lam.update_function_configuration(FunctionName=name, MemorySize=1024),
                   "InvalidParameterValueException", 400, mentions=["memory"])
    assert _cfg(lam, name)["MemorySize"] == 2048


def test_update_configuration_revision_guard(lam, cp_arn):
    name = h.uniq("fncfgrev")
    h.create_function(lam, name, cp_arn)
    h.expect_error(lam, lambda: lam.update_function_configuration(FunctionName=name, Timeout=10,
                                                                  RevisionId="wrong-revision"),
                   "PreconditionFailedException", 412, mentions=["revision"])


def test_capacity_provider_cannot_be_added_later(lam, cp_arn):
    # lmi-behaviour.md §1.2: "CapacityProviderConfig isn't supported for Lambda Default functions."
    name = h.uniq("fnplain")
    resp = lam.create_function(**h.function_request(name, None, runtime="python3.13", memory=512))
    assert h.status_of(resp) == 201
    assert "CapacityProviderConfig" not in resp
    h.wait_function_settled(lam, name)
    h.expect_error(lam, lambda: lam.update_function_configuration(FunctionName=name, MemorySize=2048,
                                                                  CapacityProviderConfig=lmi_config(cp_arn)),
                   "InvalidParameterValueException", 400, mentions=["capacityproviderconfig", "capacity provider"])
    assert "CapacityProviderConfig" not in _cfg(lam, name)


def test_capacity_provider_can_be_changed(lam, cp_arn):
    # "it can be modified (e.g. CapacityProviderArn or ratio changed)" (lmi-behaviour.md §1.2)
    other = h.create_active_cp(lam, h.uniq("cpother"))["CapacityProviderArn"]
    name = h.uniq("fnmove")
    h.create_function(lam, name, cp_arn)
    h.update_config(lam, name, CapacityProviderConfig=lmi_config(other))
    inner = _cfg(lam, name)["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    assert inner["CapacityProviderArn"] == other


# ------------------------------------------------------------------------------- delete


def test_delete_lmi_function_is_async(lam, cp_arn):
    name = h.uniq("fndel")
    h.create_function(lam, name, cp_arn)
    lam.publish_version(FunctionName=name)
    resp = lam.delete_function(FunctionName=name)
    assert h.status_of(resp) == 202  # lmi-behaviour.md §1.6
    h.gone(lambda: lam.get_function(FunctionName=name), f"function {name}")
    h.expect_error(lam, lambda: _cfg(lam, name, Qualifier="1"), "ResourceNotFoundException", 404)
    listed, _ = h.paginate(lam.list_functions, "Functions", 50)
    assert name not in {f["FunctionName"] for f in listed}
    # The name can be used again.
    assert h.status_of(lam.create_function(**h.function_request(name, cp_arn))) == 201


def test_delete_latest_qualifier_rejected(lam, cp_arn):
    # lmi-behaviour.md §1.6: "$LATEST version cannot be deleted without deleting the function."
    name = h.uniq("fndellatest")
    h.create_function(lam, name, cp_arn)
    h.expect_error(lam, lambda: lam.delete_function(FunctionName=name, Qualifier="$LATEST"),
                   "InvalidParameterValueException", 400, mentions=["$LATEST"])
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def test_delete_unknown_function_not_found(lam):
    name = h.uniq("ghostdel")
    h.expect_error(lam, lambda: lam.delete_function(FunctionName=name), "ResourceNotFoundException", 404,
                   mentions=[name])


# ------------------------------------------------------------------------------- ARN forms


@pytest.mark.parametrize("form", ["full-arn", "partial-arn"])
def test_function_name_accepts_arn_forms(lam, cp_arn, form):
    name = h.uniq("fnarn")
    h.create_function(lam, name, cp_arn)
    ident = h.fn_arn_for(name) if form == "full-arn" else f"{h.ACCOUNT}:function:{name}"

    assert lam.get_function(FunctionName=ident)["Configuration"]["FunctionName"] == name
    assert _cfg(lam, ident)["FunctionArn"] == h.fn_arn_for(name)
    h.update_config(lam, ident, Timeout=17)
    assert _cfg(lam, name)["Timeout"] == 17
    lam.update_function_code(FunctionName=ident, ZipFile=h.python_zip(form))
    h.wait_function_settled(lam, name)
    v = lam.publish_version(FunctionName=ident)
    assert v["Version"] == "1"
    versions = lam.list_versions_by_function(FunctionName=ident)["Versions"]
    assert {"$LATEST", "1"} <= {x["Version"] for x in versions}
    alias = lam.create_alias(FunctionName=ident, Name="live", FunctionVersion="1")
    assert alias["AliasArn"] == h.fn_arn_for(name, "live")
    assert lam.get_alias(FunctionName=ident, Name="live")["FunctionVersion"] == "1"
    assert lam.list_tags(Resource=h.fn_arn_for(name))["Tags"] == {}
    assert h.status_of(lam.delete_function(FunctionName=ident)) == 202
    h.gone(lambda: lam.get_function(FunctionName=name), f"function {name}")


def test_create_function_with_arn_name(lam, cp_arn):
    name = h.uniq("fncrarn")
    resp = lam.create_function(**h.function_request(h.fn_arn_for(name), cp_arn))
    assert resp["FunctionName"] == name
    assert resp["FunctionArn"] == h.fn_arn_for(name)


def test_qualified_arn_resolves_version(lam, cp_arn):
    name = h.uniq("fnqarn")
    h.create_function(lam, name, cp_arn, zip_bytes=h.python_zip("v1"))
    lam.publish_version(FunctionName=name)
    h.update_code(lam, name, h.python_zip("v2"))
    got = lam.get_function(FunctionName=h.fn_arn_for(name, "1"))["Configuration"]
    assert got["Version"] == "1"
    assert got["CodeSha256"] == h.code_sha256(h.python_zip("v1"))
    assert got["FunctionArn"] == h.fn_arn_for(name, "1")


def test_arn_for_other_account_or_region_rejected(lam, cp_arn):
    name = h.uniq("fnacct")
    h.create_function(lam, name, cp_arn)
    for ident in (f"arn:aws:lambda:{h.REGION}:123456789012:function:{name}",
                  f"arn:aws:lambda:eu-west-1:{h.ACCOUNT}:function:{name}"):
        h.expect_error(lam, lambda: lam.get_function(FunctionName=ident),
                       ("ResourceNotFoundException", "InvalidParameterValueException", "AccessDeniedException"),
                       (400, 403, 404))


def test_capacity_provider_functions_may_time_out_after_90_minutes(lam, lam_nv, cp_arn):
    # LMI: up to 5,400 s for asynchronous and event source mapping invokes (a synchronous caller
    # still gets its answer or the timeout error within 900 s); other functions stop at 900 s.
    name = h.uniq("fn-long")
    resp = lam.create_function(**h.function_request(name, cp_arn, Timeout=5400))
    assert resp["Timeout"] == 5400
    h.wait_function_settled(lam, name)
    h.expect_error(lam_nv, lambda: lam_nv.update_function_configuration(FunctionName=name, Timeout=5401),
                   "ValidationException", 400, mentions=["timeout"])
    h.expect_error(lam_nv, lambda: lam_nv.create_function(**h.function_request(h.uniq("fn-long"), cp_arn, Timeout=5401)),
                   "ValidationException", 400, mentions=["timeout"])
    h.expect_error(lam_nv, lambda: lam_nv.create_function(**h.function_request(h.uniq("fn-plain"), None, memory=None,
                                                                                 Timeout=901)),
                   "ValidationException", 400, mentions=["timeout"])
