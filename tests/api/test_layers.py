"""Lambda layers (2018-10-31) with boto3 and the AWS CLI: PublishLayerVersion, GetLayerVersion,
GetLayerVersionByArn, ListLayers, ListLayerVersions, DeleteLayerVersion, the layer version
permissions, and a function's `Layers` (at most 5, existing, once each, code + layers within
262144000 bytes unzipped, snapshotted by published versions). Runs on PostgreSQL too
(FLEETFN_TEST_STORE=postgres)."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
import zlib

import pytest
import requests

from fleetfn_testkit import api as h

MAX_UNZIPPED = 262_144_000


def layer_zip(marker: str = "", runtime_dir: str = "python") -> bytes:
    """A layer as users build them: `python/<module>.py` (on PYTHONPATH under /opt)."""
    return h.make_zip([(f"{runtime_dir}/layer_mod.py", f"VALUE = {marker!r}\n", 0o644)])


def zeros_zip(size: int, name: str = "python/blob.bin") -> bytes:
    """A small zip that unzips to `size` zero bytes (deflated: about 1/1000 of it)."""
    return h.make_zip([(name, b"\0" * size, 0o644)])


def publish(lam, name: str, z: bytes | None = None, **kw) -> dict:
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": z or layer_zip(name)}, **kw)


def unzipped_size(z: bytes) -> int:
    import io
    with zipfile.ZipFile(io.BytesIO(z)) as zf:
        return sum(i.file_size for i in zf.infolist())


def layer_arn(name: str) -> str:
    return f"arn:aws:lambda:{h.REGION}:{h.ACCOUNT}:layer:{name}"


# --------------------------------------------------------------------------------------------
# The operations


def test_publish_get_list_delete(lam):
    name = h.uniq("lay")
    z1 = layer_zip("one")
    v1 = publish(lam, name, z1, Description="first", CompatibleRuntimes=["python3.13", "python3.12"],
                 CompatibleArchitectures=["x86_64", "arm64"], LicenseInfo="MIT")
    assert h.status_of(v1) == 201
    assert v1["Version"] == 1
    assert v1["LayerArn"] == layer_arn(name)
    assert v1["LayerVersionArn"] == f"{layer_arn(name)}:1"
    assert v1["Content"]["CodeSha256"] == h.code_sha256(z1)
    assert v1["Content"]["CodeSize"] == len(z1)
    assert v1["Description"] == "first"
    assert v1["CompatibleRuntimes"] == ["python3.13", "python3.12"]
    assert v1["CompatibleArchitectures"] == ["x86_64", "arm64"]
    assert v1["LicenseInfo"] == "MIT"
    assert v1["CreatedDate"]
    # Content.Location is a presigned download link, like a function's Code.Location.
    got = requests.get(v1["Content"]["Location"], timeout=30)
    assert got.status_code == 200 and got.content == z1

    z2 = layer_zip("two")
    v2 = publish(lam, layer_arn(name), z2, CompatibleRuntimes=["nodejs22.x"])
    assert v2["Version"] == 2
    assert "Description" not in v2 or v2["Description"] == ""

    g = lam.get_layer_version(LayerName=name, VersionNumber=1)
    for k in ("LayerArn", "LayerVersionArn", "Version", "Description", "CompatibleRuntimes",
              "CompatibleArchitectures", "LicenseInfo", "CreatedDate"):
        assert g[k] == v1[k], k
    assert g["Content"]["CodeSha256"] == h.code_sha256(z1)
    by_arn = lam.get_layer_version_by_arn(Arn=v2["LayerVersionArn"])
    assert by_arn["Version"] == 2 and by_arn["Content"]["CodeSha256"] == h.code_sha256(z2)

    versions = lam.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1], "newest first, as AWS lists them"
    assert versions[1]["LicenseInfo"] == "MIT"
    assert "Content" not in versions[0]
    py = lam.list_layer_versions(LayerName=name, CompatibleRuntime="python3.13")["LayerVersions"]
    assert [v["Version"] for v in py] == [1]
    arm = lam.list_layer_versions(LayerName=name, CompatibleArchitecture="arm64")["LayerVersions"]
    assert [v["Version"] for v in arm] == [1]

    mine = [l for l in h.paginate(lam.list_layers, "Layers", 50)[0] if l["LayerName"] == name]
    assert len(mine) == 1
    assert mine[0]["LayerArn"] == layer_arn(name)
    assert mine[0]["LatestMatchingVersion"]["Version"] == 2
    assert mine[0]["LatestMatchingVersion"]["LayerVersionArn"] == v2["LayerVersionArn"]
    mine = [l for l in h.paginate(lam.list_layers, "Layers", 50, CompatibleRuntime="python3.13")[0]
            if l["LayerName"] == name]
    assert [l["LatestMatchingVersion"]["Version"] for l in mine] == [1]
    assert not [l for l in h.paginate(lam.list_layers, "Layers", 50, CompatibleRuntime="java21")[0]
                if l["LayerName"] == name]

    # Delete: 204, idempotent; the number is never reused.
    d = lam.delete_layer_version(LayerName=name, VersionNumber=2)
    assert h.status_of(d) == 204
    assert h.status_of(lam.delete_layer_version(LayerName=name, VersionNumber=2)) == 204
    h.expect_error(lam, lambda: lam.get_layer_version(LayerName=name, VersionNumber=2),
                   "ResourceNotFoundException", 404, mentions=[f"{layer_arn(name)}:2", "does not exist"])
    h.expect_error(lam, lambda: lam.get_layer_version_by_arn(Arn=f"{layer_arn(name)}:2"),
                   "ResourceNotFoundException", 404, mentions=["does not exist"])
    assert publish(lam, name)["Version"] == 3
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=name)["LayerVersions"]] == [3, 1]
    lam.delete_layer_version(LayerName=name, VersionNumber=1)
    lam.delete_layer_version(LayerName=name, VersionNumber=3)
    assert lam.list_layer_versions(LayerName=name)["LayerVersions"] == []
    assert not [l for l in h.paginate(lam.list_layers, "Layers", 50)[0] if l["LayerName"] == name]
    assert publish(lam, name)["Version"] == 4
    # A layer that never existed lists no versions (as on AWS), and deletes are still 204.
    assert lam.list_layer_versions(LayerName=h.uniq("never"))["LayerVersions"] == []
    assert h.status_of(lam.delete_layer_version(LayerName=h.uniq("never"), VersionNumber=1)) == 204


def test_layer_package_is_served_by_digest_like_code(lam, endpoint):
    """Agents fetch packages by sha256 from the server; a layer's zip is one of them."""
    name = h.uniq("laydig")
    z = layer_zip("digest")
    publish(lam, name, z)
    hexdigest = __import__("hashlib").sha256(z).hexdigest()
    r = h.raw_request(endpoint, "GET", f"/fleetfn/v1/code/{hexdigest}")
    assert r.status_code == 200 and r.content == z
    # The joined agents' endpoint answers from the same store, behind an agent credential.
    r = h.raw_request(endpoint, "GET", f"/fleetfn/v1/agent/packages/{hexdigest}", sign=False)
    assert r.status_code in (401, 403), r.text


def test_sigv4_and_body_limit(endpoint):
    """Layer routes are signed like every Lambda route; PublishLayerVersion takes a body as large
    as a code upload's, and no larger."""
    for method, path in [("GET", "/2018-10-31/layers"), ("POST", "/2018-10-31/layers/x/versions"),
                         ("GET", "/2018-10-31/layers/x/versions/1/policy")]:
        r = h.raw_request(endpoint, method, path, body="{}" if method == "POST" else None, sign=False)
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert h.raw_error_code(r) == "MissingAuthenticationTokenException", r.text
    r = h.raw_request(endpoint, "POST", "/2018-10-31/layers/x/versions", body=b"x" * 69_905_068)
    assert r.status_code == 413, r.text
    assert h.raw_error_code(r) == "RequestEntityTooLargeException"
    assert "PublishLayerVersion" in h.raw_error_message(r)
    # Other layer operations keep the control-plane limit (6 MB).
    r = h.raw_request(endpoint, "POST", "/2018-10-31/layers/x/versions/1/policy", body=b"x" * 6_291_457)
    assert r.status_code == 413, r.text


def test_pagination(server_factory):
    """A fresh server: exact pages of ListLayers and ListLayerVersions, and boto3's paginators."""
    srv = server_factory.new(name="layerpages")
    lam = h.make_client(srv.endpoint)
    names = sorted(f"pg-{i:02d}" for i in range(7))
    for n in names:
        publish(lam, n, CompatibleRuntimes=["python3.13"] if n != "pg-03" else ["nodejs22.x"])
    items, pages = h.paginate(lam.list_layers, "Layers", 3)
    assert [l["LayerName"] for l in items] == names
    assert pages == 3
    items, pages = h.paginate(lam.list_layers, "Layers", 2, CompatibleRuntime="python3.13")
    assert [l["LayerName"] for l in items] == [n for n in names if n != "pg-03"]
    assert pages == 3
    paged = [l["LayerName"] for p in lam.get_paginator("list_layers").paginate(
        PaginationConfig={"PageSize": 4}) for l in p["Layers"]]
    assert paged == names

    for _ in range(6):
        publish(lam, "pg-00")
    items, pages = h.paginate(lam.list_layer_versions, "LayerVersions", 2, LayerName="pg-00")
    assert [v["Version"] for v in items] == [7, 6, 5, 4, 3, 2, 1]
    assert pages == 4
    paged = [v["Version"] for p in lam.get_paginator("list_layer_versions").paginate(
        LayerName="pg-00", PaginationConfig={"PageSize": 3}) for v in p["LayerVersions"]]
    assert paged == [7, 6, 5, 4, 3, 2, 1]
    lam_nv = h.make_client(srv.endpoint, validate=False)
    h.expect_error(lam_nv, lambda: lam_nv.list_layers(MaxItems=51), "ValidationException", 400,
                   mentions=["maxItems", "50"])
    h.expect_error(lam_nv, lambda: lam_nv.list_layer_versions(LayerName="pg-00", MaxItems=0),
                   "ValidationException", 400, mentions=["maxItems"])
    h.expect_error(lam_nv, lambda: lam_nv.list_layer_versions(LayerName="pg-00", Marker="x"),
                   "InvalidParameterValueException", 400, mentions=["NextMarker"])


def test_permissions_policy(lam, lam_nv):
    name = h.uniq("layperm")
    v = publish(lam, name)
    arn = v["LayerVersionArn"]
    h.expect_error(lam, lambda: lam.get_layer_version_policy(LayerName=name, VersionNumber=1),
                   "ResourceNotFoundException", 404, mentions=["No policy"])
    a = lam.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="xaccount",
                                         Action="lambda:GetLayerVersion", Principal="210987654321")
    assert h.status_of(a) == 201
    assert json.loads(a["Statement"]) == {
        "Sid": "xaccount", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
        "Action": "lambda:GetLayerVersion", "Resource": arn}
    h.expect_error(lam, lambda: lam.add_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="xaccount", Action="lambda:GetLayerVersion", Principal="*"),
        "ResourceConflictException", 409, mentions=["xaccount", "statement id"])
    h.expect_error(lam, lambda: lam.add_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="org", Action="lambda:GetLayerVersion", Principal="*",
        OrganizationId="o-abcdefghij", RevisionId="stale"),
        "PreconditionFailedException", 412, mentions=["Revision Id"])
    b = lam.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="org",
                                         Action="lambda:GetLayerVersion", Principal="*",
                                         OrganizationId="o-abcdefghij", RevisionId=a["RevisionId"])
    assert json.loads(b["Statement"])["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}
    p = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert p["RevisionId"] == b["RevisionId"]
    doc = json.loads(p["Policy"])
    assert doc["Version"] == "2012-10-17" and doc["Id"] == "default"
    assert [s["Sid"] for s in doc["Statement"]] == ["xaccount", "org"]
    assert doc["Statement"][1]["Principal"] == "*"

    # Hostile or wrong input: what to fix.
    for kw, code, mention in [
        (dict(StatementId="bad id", Principal="*"), "ValidationException", "statementId"),
        (dict(StatementId="s1", Principal="someone"), "ValidationException", "principal"),
        (dict(StatementId="s1", Principal="arn:aws:iam::210987654321:user/u"), "ValidationException", "principal"),
        (dict(StatementId="s1", Principal="*", Action="lambda:InvokeFunction"), "ValidationException", "action"),
        (dict(StatementId="s1", Principal="*", OrganizationId="org"), "ValidationException", "organizationId"),
        (dict(StatementId="s1", Principal="210987654321", OrganizationId="o-abcdefghij"),
         "InvalidParameterValueException", "Principal '*'"),
    ]:
        args = dict(LayerName=name, VersionNumber=1, Action="lambda:GetLayerVersion")
        args.update(kw)
        h.expect_error(lam_nv, lambda: lam_nv.add_layer_version_permission(**args), code, 400, mentions=[mention])
    h.expect_error(lam, lambda: lam.add_layer_version_permission(
        LayerName=name, VersionNumber=9, StatementId="s", Action="lambda:GetLayerVersion", Principal="*"),
        "ResourceNotFoundException", 404, mentions=[f"{name}:9"])

    h.expect_error(lam, lambda: lam.remove_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="org", RevisionId=a["RevisionId"]),
        "PreconditionFailedException", 412, mentions=["Revision Id"])
    r = lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="org",
                                            RevisionId=b["RevisionId"])
    assert h.status_of(r) == 204
    h.expect_error(lam, lambda: lam.remove_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="org"),
        "ResourceNotFoundException", 404, mentions=["org"])
    lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="xaccount")
    h.expect_error(lam, lambda: lam.get_layer_version_policy(LayerName=name, VersionNumber=1),
                   "ResourceNotFoundException", 404, mentions=["No policy"])
    # A version's policy goes with it.
    lam.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="again",
                                     Action="lambda:GetLayerVersion", Principal="*")
    lam.delete_layer_version(LayerName=name, VersionNumber=1)
    h.expect_error(lam, lambda: lam.get_layer_version_policy(LayerName=name, VersionNumber=1),
                   "ResourceNotFoundException", 404, mentions=["does not exist"])


def test_hostile_publish_input(lam, lam_nv):
    name = h.uniq("layhost")
    for bad in ["bad name", "a/b", "x" * 141, "arn:aws:lambda:us-east-1:000000000000:function:f"]:
        h.expect_error(lam_nv, lambda: lam_nv.publish_layer_version(
            LayerName=bad, Content={"ZipFile": layer_zip()}), ("ValidationException",), 400,
            mentions=["layerName"])
    h.expect_error(lam_nv, lambda: lam_nv.get_layer_version_by_arn(Arn=f"{layer_arn(name)}"),
                   "ValidationException", 400, mentions=["regular expression"])
    h.expect_error(lam, lambda: lam.publish_layer_version(LayerName=name, Content={"ZipFile": b"not a zip"}),
                   "InvalidParameterValueException", 400, mentions=["zip"])
    h.expect_error(lam, lambda: lam.publish_layer_version(
        LayerName=name, Content={"S3Bucket": "bucket", "S3Key": "key.zip"}),
        "InvalidParameterValueException", 400, mentions=["ZipFile"])
    h.expect_error(lam, lambda: lam.publish_layer_version(LayerName=name, Content={}),
                   "InvalidParameterValueException", 400, mentions=["ZipFile"])
    h.expect_error(lam_nv, lambda: lam_nv.publish_layer_version(
        LayerName=name, Content={"ZipFile": layer_zip()}, CompatibleRuntimes=["cobol"]),
        "ValidationException", 400, mentions=["compatibleRuntimes"])
    h.expect_error(lam_nv, lambda: lam_nv.publish_layer_version(
        LayerName=name, Content={"ZipFile": layer_zip()}, CompatibleRuntimes=["python3.13"] * 16),
        "ValidationException", 400, mentions=["15"])
    h.expect_error(lam_nv, lambda: lam_nv.publish_layer_version(
        LayerName=name, Content={"ZipFile": layer_zip()}, CompatibleArchitectures=["x86_64", "arm64", "arm64"]),
        "ValidationException", 400, mentions=["2"])
    h.expect_error(lam_nv, lambda: lam_nv.publish_layer_version(
        LayerName=name, Content={"ZipFile": layer_zip()}, Description="d" * 257),
        "ValidationException", 400, mentions=["description"])
    h.expect_error(lam_nv, lambda: lam_nv.publish_layer_version(
        LayerName=name, Content={"ZipFile": layer_zip()}, LicenseInfo="l" * 513),
        "ValidationException", 400, mentions=["licenseInfo"])
    # A zip bomb: 250 MB + 1 byte of zeros in a ~250 KB zip, refused at the unzipped limit.
    h.expect_error(lam, lambda: lam.publish_layer_version(
        LayerName=name, Content={"ZipFile": zeros_zip(MAX_UNZIPPED + 1)}),
        "InvalidParameterValueException", 400, mentions=["262144000"])
    # Over 50 MB zipped (stored, incompressible).
    big = h.make_zip([("python/r.bin", os.urandom(52_500_000), 0o644)], compress=zipfile.ZIP_STORED)
    h.expect_error(lam, lambda: lam.publish_layer_version(LayerName=name, Content={"ZipFile": big}),
                   ("RequestEntityTooLargeException",), 413, mentions=["52428800", "smaller than"])
    # Path members: a version that is not a number.
    r = h.raw_request(lam.meta.endpoint_url, "GET", f"/2018-10-31/layers/{name}/versions/abc")
    assert r.status_code == 400 and h.raw_error_code(r) == "InvalidParameterValueException", r.text
    assert "positive whole number" in h.raw_error_message(r)
    # Nothing was published by any of these.
    assert lam.list_layer_versions(LayerName=name)["LayerVersions"] == []


# --------------------------------------------------------------------------------------------
# A function's Layers


def test_function_layers(lam, lam_nv):
    arns, sizes = [], {}
    for i in range(6):
        z = layer_zip(f"fl{i}")
        v = publish(lam, h.uniq(f"fnlay{i}"), z)
        arns.append(v["LayerVersionArn"])
        sizes[v["LayerVersionArn"]] = len(z)
    fn = h.uniq("fnlayers")
    made = lam.create_function(**h.function_request(fn, None, Layers=arns[:2]))
    want = [{"Arn": a, "CodeSize": sizes[a]} for a in arns[:2]]
    assert made["Layers"] == want
    h.wait_function_settled(lam, fn)
    assert lam.get_function_configuration(FunctionName=fn)["Layers"] == want
    assert lam.get_function(FunctionName=fn)["Configuration"]["Layers"] == want
    listed = [f for f in h.paginate(lam.list_functions, "Functions", 50)[0] if f["FunctionName"] == fn]
    assert listed[0]["Layers"] == want

    v1 = lam.publish_version(FunctionName=fn)
    assert v1["Layers"] == want
    # Order is kept (extraction order), and an update replaces the list.
    upd = h.update_config(lam, fn, Layers=[arns[2], arns[0]])
    assert [l["Arn"] for l in upd["Layers"]] == [arns[2], arns[0]]
    v2 = lam.publish_version(FunctionName=fn)
    assert v2["Version"] == "2" and [l["Arn"] for l in v2["Layers"]] == [arns[2], arns[0]]

    # A deleted layer version keeps running in the versions that use it (AWS keeps serving it).
    name0 = arns[0].split(":")[6]
    lam.delete_layer_version(LayerName=name0, VersionNumber=1)
    assert lam.get_function_configuration(FunctionName=fn, Qualifier="1")["Layers"] == want
    assert lam.get_function_configuration(FunctionName=fn)["Layers"][1]["Arn"] == arns[0]
    # ...but cannot be added anew.
    h.expect_error(lam, lambda: lam.update_function_configuration(FunctionName=fn, Layers=[arns[0]]),
                   "InvalidParameterValueException", 400, mentions=[f"Layer version {arns[0]} does not exist."])

    # Validation: at most 5, existing, once each, well formed.
    h.expect_error(lam, lambda: lam.update_function_configuration(FunctionName=fn, Layers=arns[1:6] + [arns[1]]),
                   "InvalidParameterValueException", 400, mentions=["more than 5 layers"])
    missing = f"{arns[1].rsplit(':', 1)[0]}:99"
    h.expect_error(lam, lambda: lam.update_function_configuration(FunctionName=fn, Layers=[missing]),
                   "InvalidParameterValueException", 400, mentions=[f"Layer version {missing} does not exist."])
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(h.uniq("fnmiss"), None, Layers=[missing])),
                   "InvalidParameterValueException", 400, mentions=["does not exist"])
    h.expect_error(lam, lambda: lam.update_function_configuration(FunctionName=fn, Layers=[arns[1], arns[1]]),
                   "InvalidParameterValueException", 400, mentions=["versions of the same layer"])
    other = publish(lam, arns[1].split(":")[6])["LayerVersionArn"]
    h.expect_error(lam, lambda: lam.update_function_configuration(FunctionName=fn, Layers=[arns[1], other]),
                   "InvalidParameterValueException", 400, mentions=["same layer"])
    h.expect_error(lam_nv, lambda: lam_nv.update_function_configuration(FunctionName=fn, Layers=["not-an-arn"]),
                   "ValidationException", 400, mentions=["regular expression"])
    foreign = f"arn:aws:lambda:eu-west-1:{h.ACCOUNT}:layer:x:1"
    h.expect_error(lam, lambda: lam.update_function_configuration(FunctionName=fn, Layers=[foreign]),
                   "InvalidParameterValueException", 400, mentions=["does not exist"])
    # None of those changed the function.
    assert [l["Arn"] for l in lam.get_function_configuration(FunctionName=fn)["Layers"]] == [arns[2], arns[0]]

    five = h.update_config(lam, fn, Layers=arns[1:6])
    assert len(five["Layers"]) == 5
    none = h.update_config(lam, fn, Layers=[])
    assert "Layers" not in none
    assert "Layers" not in lam.get_function_configuration(FunctionName=fn)
    # A later publish snapshots no layers; the earlier versions keep theirs.
    v3 = lam.publish_version(FunctionName=fn)
    assert "Layers" not in v3
    assert [l["Arn"] for l in lam.get_function_configuration(FunctionName=fn, Qualifier="2")["Layers"]] == [
        arns[2], arns[0]]


def test_function_layers_in_a_capacity_provider_version(lam, cp_arn):
    """LMI functions take layers too; their published versions carry them."""
    v = publish(lam, h.uniq("cplay"))
    fn = h.uniq("fncplay")
    h.create_function(lam, fn, cp_arn, Layers=[v["LayerVersionArn"]])
    pub = lam.publish_version(FunctionName=fn)
    assert pub["Layers"] == [{"Arn": v["LayerVersionArn"], "CodeSize": v["Content"]["CodeSize"]}]
    assert lam.get_function_configuration(FunctionName=fn, Qualifier=pub["Version"])["Layers"] == pub["Layers"]


def test_code_and_layers_unzipped_limit(lam):
    """Code + layers together at most 262144000 bytes unzipped, with AWS's message."""
    half = MAX_UNZIPPED // 2
    a = publish(lam, h.uniq("biga"), zeros_zip(half))
    b = publish(lam, h.uniq("bigb"), zeros_zip(half))
    code = h.python_zip("limit")
    total = unzipped_size(code) + 2 * half
    msg = (f"Function code combined with layers exceeds the maximum allowed size of {MAX_UNZIPPED} bytes. "
           f"The actual size is {total} bytes.")
    e = h.expect_error(lam, lambda: lam.create_function(**h.function_request(
        h.uniq("fnbig"), None, zip_bytes=code, Layers=[a["LayerVersionArn"], b["LayerVersionArn"]])),
        "InvalidParameterValueException", 400)
    assert h.error_message(e) == msg
    fn = h.uniq("fnbig")
    h.create_function(lam, fn, None, zip_bytes=code, Layers=[a["LayerVersionArn"]])
    e = h.expect_error(lam, lambda: lam.update_function_configuration(
        FunctionName=fn, Layers=[a["LayerVersionArn"], b["LayerVersionArn"]]), "InvalidParameterValueException", 400)
    assert h.error_message(e) == msg
    # Growing the code past the limit with the layers in place is refused too.
    bigger = zeros_zip(half + 1, name="blob.bin")
    e = h.expect_error(lam, lambda: lam.update_function_code(FunctionName=fn, ZipFile=bigger),
                       "InvalidParameterValueException", 400)
    assert h.error_message(e) == (
        f"Function code combined with layers exceeds the maximum allowed size of {MAX_UNZIPPED} bytes. "
        f"The actual size is {2 * half + 1} bytes.")


# --------------------------------------------------------------------------------------------
# The AWS CLI


def test_cli_layers(aws_cli, endpoint, cli_env, tmp_path):
    def run(*args, check=True):
        cmd = [aws_cli, "--endpoint-url", endpoint, "--region", h.REGION, "--output", "json", "lambda", *args]
        p = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            pytest.fail(f"`aws lambda {' '.join(args)}` exited {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def js(*args):
        out = run(*args).stdout.strip()
        return json.loads(out) if out else {}

    name = h.uniq("clilay")
    z = layer_zip("cli")
    (tmp_path / "layer.zip").write_bytes(z)
    v = js("publish-layer-version", "--layer-name", name, "--zip-file", f"fileb://{tmp_path / 'layer.zip'}",
           "--compatible-runtimes", "python3.13", "python3.12", "--compatible-architectures", "x86_64",
           "--description", "from the CLI", "--license-info", "Apache-2.0")
    assert v["Version"] == 1 and v["Content"]["CodeSha256"] == h.code_sha256(z)
    arn = v["LayerVersionArn"]
    assert js("get-layer-version", "--layer-name", name, "--version-number", "1")["Description"] == "from the CLI"
    assert js("get-layer-version-by-arn", "--arn", arn)["LayerVersionArn"] == arn
    vs = js("list-layer-versions", "--layer-name", name, "--compatible-runtime", "python3.13")
    assert [x["Version"] for x in vs["LayerVersions"]] == [1]
    # The CLI follows NextMarker itself (page size 1).
    layers = js("list-layers", "--compatible-runtime", "python3.13", "--page-size", "1")
    assert name in {l["LayerName"] for l in layers["Layers"]}

    st = js("add-layer-version-permission", "--layer-name", name, "--version-number", "1",
            "--statement-id", "all", "--action", "lambda:GetLayerVersion", "--principal", "*")
    assert json.loads(st["Statement"])["Principal"] == "*"
    pol = js("get-layer-version-policy", "--layer-name", name, "--version-number", "1")
    assert pol["RevisionId"] == st["RevisionId"]
    dup = run("add-layer-version-permission", "--layer-name", name, "--version-number", "1",
              "--statement-id", "all", "--action", "lambda:GetLayerVersion", "--principal", "*", check=False)
    assert dup.returncode != 0 and "ResourceConflictException" in dup.stderr
    run("remove-layer-version-permission", "--layer-name", name, "--version-number", "1", "--statement-id", "all")

    fn = h.uniq("clilayfn")
    (tmp_path / "fn.zip").write_bytes(h.python_zip(fn))
    made = js("create-function", "--function-name", fn, "--runtime", "python3.13", "--role", h.ROLE_ARN,
              "--handler", "app.handler", "--zip-file", f"fileb://{tmp_path / 'fn.zip'}", "--layers", arn)
    assert made["Layers"] == [{"Arn": arn, "CodeSize": len(z)}]
    h.wait_function_settled(h.make_client(endpoint), fn)
    bad = run("update-function-configuration", "--function-name", fn, "--layers", *([arn] * 6), check=False)
    assert bad.returncode != 0 and "more than 5 layers" in bad.stderr
    cleared = js("update-function-configuration", "--function-name", fn, "--layers", "[]")
    assert "Layers" not in cleared

    run("delete-layer-version", "--layer-name", name, "--version-number", "1")
    gone = run("get-layer-version", "--layer-name", name, "--version-number", "1", check=False)
    assert gone.returncode != 0 and "ResourceNotFoundException" in gone.stderr
