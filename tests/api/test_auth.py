"""SigV4 authentication, as AWS Lambda does it.

Error codes are the ones AWS's front end returns (they are not modeled in the
Lambda service model, so boto3 surfaces them as plain ClientError):
  wrong secret                -> InvalidSignatureException            403
  unknown access key id       -> UnrecognizedClientException          403
  no Authorization at all     -> MissingAuthenticationTokenException  403
"""

import datetime
import json
from unittest import mock

import botocore.auth
import requests

from fleetfn_testkit import api as h
from fleetfn_testkit.api import make_client


def test_health_needs_no_auth(endpoint):
    r = requests.get(f"{endpoint}/fleetfn/health", timeout=5)
    assert r.status_code == 200


def test_correctly_signed_request_succeeds(lam):
    resp = lam.list_functions()
    assert h.status_of(resp) == 200
    assert isinstance(resp["Functions"], list)


def test_raw_signed_request_succeeds(endpoint):
    # Sanity check of the raw signer used by the malformed-input tests.
    r = h.raw_request(endpoint, "GET", "/2015-03-31/functions/")
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["Functions"], list)


def test_wrong_secret_is_invalid_signature(endpoint):
    bad = make_client(endpoint, secret_key=h.SECRET_KEY + "x")
    h.expect_error(bad, bad.list_functions, "InvalidSignatureException", 403, mentions=["signature"])


def test_wrong_secret_on_write_creates_nothing(endpoint, lam):
    bad = make_client(endpoint, secret_key="not-the-secret")
    name = h.uniq("authfn")
    h.expect_error(
        bad,
        lambda: bad.create_function(**h.function_request(name, None, runtime="python3.13", memory=128)),
        "InvalidSignatureException",
        403,
        mentions=["signature"],
    )
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_unknown_access_key_is_unrecognized_client(endpoint):
    bad = make_client(endpoint, access_key="AKIDUNKNOWNUNKNOWN00")
    h.expect_error(bad, bad.list_functions, "UnrecognizedClientException", 403,
                   mentions=["security token", "access key", "credential", "invalid"])


def test_unsigned_boto3_request_is_missing_token(endpoint):
    anon = make_client(endpoint, unsigned=True)
    h.expect_error(anon, anon.list_functions, "MissingAuthenticationTokenException", 403,
                   mentions=["authentication", "token"])
    h.expect_error(anon, anon.list_capacity_providers, "MissingAuthenticationTokenException", 403,
                   mentions=["authentication", "token"])


def test_raw_unsigned_get_is_403_with_error_type_header(endpoint):
    r = requests.get(f"{endpoint}/2015-03-31/functions", timeout=10)
    assert r.status_code == 403, r.text
    assert "x-amzn-ErrorType" in r.headers, dict(r.headers)
    assert r.headers["x-amzn-ErrorType"].split(":")[0] == "MissingAuthenticationTokenException"


def test_tampered_body_fails_signature(endpoint, lam):
    """The payload hash is part of the SigV4 canonical request: changing the body
    after signing must be rejected, and nothing must be created."""
    name = h.uniq("tamper")
    req = h.cp_request(name)
    body = json.dumps(req).encode()
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    aws_req = AWSRequest(method="POST", url=f"{endpoint}/2025-11-30/capacity-providers", data=body,
                         headers={"Content-Type": "application/json"})
    botocore.auth.SigV4Auth(Credentials(h.ACCESS_KEY, h.SECRET_KEY), "lambda", h.REGION).add_auth(aws_req)
    evil = h.cp_request(name + "x")
    r = requests.post(aws_req.url, data=json.dumps(evil).encode(), headers=dict(aws_req.headers.items()), timeout=10)
    assert r.status_code == 403, r.text
    assert h.raw_error_code(r) == "InvalidSignatureException", (r.headers, r.text)
    for n in (name, name + "x"):
        h.expect_error(lam, lambda: lam.get_capacity_provider(CapacityProviderName=n), "ResourceNotFoundException", 404)


def test_stale_signature_is_rejected(endpoint):
    """AWS rejects signatures whose X-Amz-Date is more than 15 minutes off
    ("Signature expired"), which bounds replay of captured requests."""
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    client = make_client(endpoint)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=old):
        h.expect_error(client, client.list_functions, "InvalidSignatureException", 403,
                       mentions=["expired", "date", "time"])


def test_signature_for_other_service_is_rejected(endpoint):
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    aws_req = AWSRequest(method="GET", url=f"{endpoint}/2015-03-31/functions/", data=b"")
    botocore.auth.SigV4Auth(Credentials(h.ACCESS_KEY, h.SECRET_KEY), "s3", h.REGION).add_auth(aws_req)
    r = requests.get(aws_req.url, headers=dict(aws_req.headers.items()), timeout=10)
    assert r.status_code == 403, r.text
    assert h.raw_error_code(r) in ("InvalidSignatureException", "IncompleteSignatureException"), (r.headers, r.text)
