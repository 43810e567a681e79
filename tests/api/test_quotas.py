"""Size and count quotas.

* Direct-upload deployment package: 50 MB zipped. AWS enforces this on the request
  body (base64 of 50 MiB = 69905067 bytes) and answers HTTP 413 with
  `RequestEntityTooLargeException` ("Request must be smaller than 69905067 bytes for
  the CreateFunction operation"). That code is not in the service model; the model's
  only 413 for request size is `RequestTooLargeException` (documented for Invoke).
  Both names are accepted, the 413 status is not negotiable.
* Unzipped package: 250 MB (262144000 bytes) -> InvalidParameterValueException.
* Invoke request payload: 6 MB (6291456 bytes) -> 413 (same two names accepted).
* Function versions per capacity provider: 100 published versions, hard limit
  (lmi-behaviour.md §1.6, §7) -> FunctionVersionsPerCapacityProviderLimitExceededException.
"""

import io
import os
import zipfile

import pytest

from fleetfn_testkit import api as h

TOO_LARGE_CODES = ("RequestEntityTooLargeException", "RequestTooLargeException")


@pytest.mark.slow
def test_zip_over_50mb_direct_upload_rejected(lam, cp_arn):
    payload = os.urandom(50 * 1024 * 1024 + 64 * 1024)  # incompressible
    z = h.make_zip([("app.py", "def handler(e, c):\n    return e\n", 0o644), ("blob.bin", payload, 0o644)],
                   compress=zipfile.ZIP_STORED)
    assert len(z) > 50 * 1024 * 1024
    name = h.uniq("fnbig")
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(name, cp_arn, zip_bytes=z)),
                   TOO_LARGE_CODES, 413, mentions=["size", "large", "bytes", "smaller", "limit"])
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)

    # Same limit for UpdateFunctionCode; the function keeps its old code.
    small = h.python_zip()
    h.create_function(lam, name, cp_arn, zip_bytes=small)
    h.expect_error(lam, lambda: lam.update_function_code(FunctionName=name, ZipFile=z),
                   TOO_LARGE_CODES, 413, mentions=["size", "large", "bytes", "smaller", "limit"])
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == h.code_sha256(small)


@pytest.mark.slow
def test_unzipped_size_over_250mb_rejected(lam, cp_arn):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app.py", "def handler(e, c):\n    return e\n")
        chunk = bytes(1024 * 1024)
        info = zipfile.ZipInfo("zeros.bin", date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            for _ in range(251):
                f.write(chunk)
    z = buf.getvalue()
    assert len(z) < 5 * 1024 * 1024  # small on the wire, 251 MiB unzipped
    name = h.uniq("fnbomb")
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(name, cp_arn, zip_bytes=z)),
                   "InvalidParameterValueException", 400, mentions=["unzipped", "size", "262144000"])
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_invoke_payload_over_6mb_rejected(lam, cp_arn):
    name = h.uniq("fninv")
    h.create_function(lam, name, cp_arn)
    lam.publish_version(FunctionName=name)
    payload = b'{"data":"' + b"x" * (6 * 1024 * 1024) + b'"}'
    h.expect_error(lam, lambda: lam.invoke(FunctionName=name, Qualifier="1", Payload=payload),
                   TOO_LARGE_CODES, 413, mentions=["size", "large", "bytes", "smaller", "limit"])


@pytest.mark.slow
def test_function_versions_per_capacity_provider_limit(lam):
    cp = h.create_active_cp(lam, h.uniq("cpquota"))
    cp_arn = cp["CapacityProviderArn"]
    name = h.uniq("fnquota")
    # Every published version starts its minimum execution environments (three), so 100
    # versions are 300 environments: use the tiny shell-bootstrap function (one sh + curl
    # per environment) rather than Python (one awslambdaric worker process per unit of
    # concurrency, 16 by default: ~4800 processes, enough to exhaust a small host).
    h.create_function(lam, name, cp_arn, runtime="provided.al2023")
    for i in range(1, 101):
        h.update_config(lam, name, Environment={"Variables": {"NUM": str(i)}})
        v = lam.publish_version(FunctionName=name)
        assert v["Version"] == str(i), v["Version"]

    h.update_config(lam, name, Environment={"Variables": {"NUM": "101"}})
    h.expect_error(lam, lambda: lam.publish_version(FunctionName=name),
                   "FunctionVersionsPerCapacityProviderLimitExceededException", 400,
                   mentions=["100", "version", "capacity provider"])
    # The limit is per capacity provider, so another function cannot publish on it either.
    other = h.uniq("fnquota2")
    h.expect_error(lam, lambda: lam.create_function(**h.function_request(other, cp_arn, Publish=True)),
                   "FunctionVersionsPerCapacityProviderLimitExceededException", 400,
                   mentions=["100", "version", "capacity provider"])

    versions, _ = h.paginate(lam.list_function_versions_by_capacity_provider, "FunctionVersions", 50,
                             CapacityProviderName=cp_arn)
    numbered = {v["FunctionArn"] for v in versions if v["FunctionArn"].rsplit(":", 1)[-1].isdigit()}
    assert len(numbered) == 100

    # Deleting a version frees a slot; version numbers are not reused.
    assert h.status_of(lam.delete_function(FunctionName=name, Qualifier="1")) == 202
    h.gone(lambda: lam.get_function_configuration(FunctionName=name, Qualifier="1"), f"{name}:1")
    assert lam.publish_version(FunctionName=name)["Version"] == "101"
