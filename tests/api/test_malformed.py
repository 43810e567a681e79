"""Malformed requests sent as correctly SigV4-signed raw HTTP.

AWS Lambda answers a body that is not JSON, or that does not deserialize into the
operation's input shape (wrong member type, unknown member), with HTTP 400
`InvalidRequestContentException` ("Could not parse request body into json: ...").
For type/unknown-member problems `ValidationException` (400) is also accepted, since
the model does not pin the code.
"""

import json

import pytest

from fleetfn_testkit import api as h

CONTENT_CODES = ("InvalidRequestContentException", "ValidationException")


def _assert_400(r, codes=CONTENT_CODES):
    assert r.status_code == 400, (r.status_code, r.text[:500])
    code = h.raw_error_code(r)
    assert code in codes, (code, dict(r.headers), r.text[:500])
    assert h.raw_error_message(r).strip(), r.text[:500]


def _fn_body(name, cp_arn, **extra):
    import base64

    body = {
        "FunctionName": name,
        "Runtime": "python3.13",
        "Role": h.ROLE_ARN,
        "Handler": "app.handler",
        "MemorySize": 2048,
        "Code": {"ZipFile": base64.b64encode(h.python_zip()).decode()},
        "CapacityProviderConfig": h.lmi_config(cp_arn),
    }
    body.update(extra)
    return body


@pytest.mark.parametrize("path", ["/2015-03-31/functions", "/2025-11-30/capacity-providers"])
@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00garbage", b'{"FunctionName": '])
def test_invalid_json_body(endpoint, path, body):
    r = h.raw_request(endpoint, "POST", path, body)
    _assert_400(r, ("InvalidRequestContentException",))


@pytest.mark.parametrize("path", ["/2015-03-31/functions", "/2025-11-30/capacity-providers"])
@pytest.mark.parametrize("body", [b"[1, 2, 3]", b'"a string"', b"null"])
def test_json_that_is_not_an_object(endpoint, path, body):
    r = h.raw_request(endpoint, "POST", path, body)
    _assert_400(r)


def test_valid_raw_create_succeeds(endpoint, lam, cp_arn):
    # Control: the same raw path with a well-formed body works, so the 400s above are
    # about the body and not about the raw client.
    name = h.uniq("rawok")
    r = h.raw_request(endpoint, "POST", "/2015-03-31/functions", json.dumps(_fn_body(name, cp_arn)))
    assert r.status_code == 201, r.text
    assert r.json()["FunctionArn"] == h.fn_arn_for(name)
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


@pytest.mark.parametrize("field,value", [
    ("MemorySize", "2048MB"),
    ("MemorySize", "big"),
    ("Timeout", [30]),
    ("Environment", "A=1"),
    ("Publish", "maybe"),
    ("CapacityProviderConfig", "arn:aws:lambda:us-east-1:000000000000:capacity-provider:x"),
])
def test_wrong_member_type(endpoint, lam, cp_arn, field, value):
    name = h.uniq("rawtype")
    r = h.raw_request(endpoint, "POST", "/2015-03-31/functions", json.dumps(_fn_body(name, cp_arn, **{field: value})))
    _assert_400(r)
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_unknown_top_level_member(endpoint, lam, cp_arn):
    name = h.uniq("rawunk")
    r = h.raw_request(endpoint, "POST", "/2015-03-31/functions",
                      json.dumps(_fn_body(name, cp_arn, NotAFieldOfCreateFunction=True)))
    _assert_400(r)
    h.expect_error(lam, lambda: lam.get_function(FunctionName=name), "ResourceNotFoundException", 404)


def test_wrong_type_on_capacity_provider(endpoint, lam):
    name = h.uniq("rawcp")
    body = h.cp_request(name)
    body["VpcConfig"]["SubnetIds"] = "subnet-1"
    r = h.raw_request(endpoint, "POST", "/2025-11-30/capacity-providers", json.dumps(body))
    _assert_400(r)
    h.expect_error(lam, lambda: lam.get_capacity_provider(CapacityProviderName=name), "ResourceNotFoundException", 404)


def test_empty_body_on_create_is_validation_error(endpoint):
    # An empty object is valid JSON; the required members are missing.
    r = h.raw_request(endpoint, "POST", "/2015-03-31/functions", b"{}")
    _assert_400(r, ("ValidationException", "InvalidParameterValueException"))


def test_non_numeric_max_items(endpoint):
    r = h.raw_request(endpoint, "GET", "/2015-03-31/functions/", query={"MaxItems": "lots"})
    _assert_400(r, ("ValidationException", "InvalidParameterValueException", "InvalidRequestContentException"))


def test_oversized_create_body(endpoint):
    # Larger than any valid CreateFunction (base64 of a 50 MiB zip = 69905067 bytes).
    body = b'{"FunctionName":"huge","Code":{"ZipFile":"' + b"A" * 70_000_000 + b'"}}'
    r = h.raw_request(endpoint, "POST", "/2015-03-31/functions", body)
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert h.raw_error_code(r) in ("RequestEntityTooLargeException", "RequestTooLargeException"), r.headers


def test_oversized_invoke_body(endpoint, lam, cp_arn):
    name = h.uniq("rawinv")
    h.create_function(lam, name, cp_arn)
    lam.publish_version(FunctionName=name)
    body = b'"' + b"x" * (6 * 1024 * 1024 + 1) + b'"'
    r = h.raw_request(endpoint, "POST", f"/2015-03-31/functions/{name}/invocations", body, query={"Qualifier": "1"})
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert h.raw_error_code(r) in ("RequestEntityTooLargeException", "RequestTooLargeException"), r.headers


def test_unknown_route_is_not_a_500(endpoint):
    r = h.raw_request(endpoint, "GET", "/2015-03-31/no-such-thing")
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert h.raw_error_code(r), dict(r.headers)
