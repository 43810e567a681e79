"""Control-plane helpers shared by every suite: keys, boto3 clients, SigV4, names, capacity
providers, zips, waiters.

Everything in here is written against the AWS Lambda API as described by the
botocore model (lambda 2015-03-31, incl. the 2025-11-30 capacity-provider
operations) and docs/reference notes on Lambda Managed Instances (LMI).  Nothing
here knows how fleetfn is implemented.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import urllib.parse
import uuid
import zipfile
from typing import Any, Callable, Iterable

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.config import Config
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REGION = "us-east-1"
ACCOUNT = "000000000000"
ACCESS_KEY = "AKIDFLEETFNTEST"
SECRET_KEY = "fleetfn-test-secret-key-5mJ7q2Xv9pL0rT3w"

ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/fleetfn-test-execution-role"
OPERATOR_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/fleetfn-test-operator-role"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
SECURITY_GROUPS = ["sg-0123456789abcdef0"]
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# Bounds for asynchronous state transitions (Pending -> Active, Deleting -> gone).
# AWS reports a capacity provider with no functions Active in ~2 s (lmi-behaviour.md
# §1.1); a local implementation has no excuse to be slower than this.
ASYNC_TIMEOUT = 30.0
POLL_INTERVAL = 0.1

# States a published LMI version may legitimately report from the control plane
# alone: Pending until execution environments are up, Active afterwards
# (lmi-behaviour.md §1.3).  Never ActiveNonInvocable (that is $LATEST only).
PUBLISHED_VERSION_STATES = ("Pending", "Active")


def uniq(prefix: str = "t") -> str:
    """A resource name that is unique per call (max length well below 64)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def cp_arn_for(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:capacity-provider:{name}"


def fn_arn_for(name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


# --------------------------------------------------------------------------------------
# Zips
# --------------------------------------------------------------------------------------

_FIXED_DATE = (2020, 1, 1, 0, 0, 0)


def make_zip(entries: Iterable[tuple[str, bytes | str, int]], compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    """Build a zip in memory from (name, content, unix mode) triples.

    The timestamp is fixed so the same content always yields the same bytes
    (and therefore the same CodeSha256).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.compress_type = compress
            info.external_attr = (0o100000 | mode) << 16
            info.create_system = 3  # unix, so external_attr is honoured
            zf.writestr(info, content)
    return buf.getvalue()


def python_zip(marker: str = "") -> bytes:
    """A python3.x function: app.handler echoes its event.

    `marker` changes the code bytes (and so CodeSha256) without changing behaviour.
    """
    src = "def handler(event, context):\n    return event\n"
    if marker:
        src += f"# {marker}\n"
    return make_zip([("app.py", src, 0o644)])


BOOTSTRAP_SH = """#!/bin/sh
# Minimal custom runtime: echo every event back.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
  HEADERS="$(mktemp)"
  EVENT="$(curl -sS -D "$HEADERS" "$API/next")"
  REQ_ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)"
  curl -sS -X POST "$API/$REQ_ID/response" -d "$EVENT" >/dev/null
  rm -f "$HEADERS"
done
"""


def bootstrap_zip(marker: str = "") -> bytes:
    """A provided.al2023 function: an executable `bootstrap` at the zip root."""
    src = BOOTSTRAP_SH + (f"# {marker}\n" if marker else "")
    return make_zip([("bootstrap", src, 0o755)])


def code_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# --------------------------------------------------------------------------------------
# Error assertions
# --------------------------------------------------------------------------------------


def error_code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def error_status(err: ClientError) -> int:
    return err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def error_message(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Message", "") or ""


def expect_error(
    client,
    fn: Callable[[], Any],
    codes: str | tuple[str, ...],
    status: int | tuple[int, ...],
    mentions: Iterable[str] = (),
) -> ClientError:
    """Call `fn`, which must fail with a ClientError.

    * the error code must be one of `codes`; when the code is a modeled exception
      the boto3 exception class (client.exceptions.X) must match as well;
    * the HTTP status must be one of `status`;
    * the message must be non-empty and (case-insensitively) contain at least one
      of `mentions`, i.e. tell the caller what to fix.
    """
    codes = (codes,) if isinstance(codes, str) else tuple(codes)
    statuses = (status,) if isinstance(status, int) else tuple(status)
    try:
        result = fn()
    except ClientError as err:
        code = error_code(err)
        assert code in codes, (
            f"expected error code {codes}, got {code!r} "
            f"(HTTP {error_status(err)}): {error_message(err)!r}"
        )
        modeled = getattr(client.exceptions, code, None) if client is not None else None
        if modeled is not None:
            assert isinstance(err, modeled), f"{type(err)} is not {modeled}"
        assert error_status(err) in statuses, (
            f"{code}: expected HTTP {statuses}, got {error_status(err)}: {error_message(err)!r}"
        )
        msg = error_message(err)
        assert msg.strip(), f"{code} has an empty message"
        mentions = list(mentions)
        if mentions:
            low = msg.lower()
            assert any(m.lower() in low for m in mentions), (
                f"{code} message {msg!r} mentions none of {mentions}"
            )
        return err
    pytest.fail(f"expected {codes} (HTTP {statuses}) but the call succeeded: {_short(result)}")


def _short(obj: Any, limit: int = 600) -> str:
    try:
        s = json.dumps(obj, default=str)
    except Exception:  # pragma: no cover - best effort only
        s = repr(obj)
    return s if len(s) <= limit else s[:limit] + "..."


def status_of(resp: dict) -> int:
    return resp["ResponseMetadata"]["HTTPStatusCode"]


# --------------------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------------------


def poll(probe: Callable[[], Any], until: Callable[[Any], bool], desc: str, timeout: float = ASYNC_TIMEOUT) -> Any:
    """Call `probe` until `until(result)` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {desc}; last observed: {_short(value)}")
        time.sleep(POLL_INTERVAL)


def gone(call: Callable[[], Any], desc: str, timeout: float = ASYNC_TIMEOUT) -> ClientError:
    """Poll `call` until it raises ResourceNotFoundException; return that error."""

    def probe():
        try:
            return call()
        except ClientError as err:
            if error_code(err) == "ResourceNotFoundException":
                return err
            raise

    return poll(probe, lambda v: isinstance(v, ClientError), f"{desc} to be gone", timeout)


def retry_throttled(call: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Capacity-provider write APIs are limited to 1 rps on AWS (lmi-behaviour.md §7).

    A throttle is a legitimate answer, so honour it (bounded) like any SDK would.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except ClientError as err:
            if error_code(err) != "TooManyRequestsException" or time.monotonic() >= deadline:
                raise
            retry_after = err.response.get("retryAfterSeconds") or 0.5
            try:
                retry_after = float(retry_after)
            except (TypeError, ValueError):
                retry_after = 0.5
            time.sleep(min(max(retry_after, 0.1), 2.0))


# --------------------------------------------------------------------------------------
# Capacity providers
# --------------------------------------------------------------------------------------


def cp_request(name: str, **overrides) -> dict:
    req = {
        "CapacityProviderName": name,
        "VpcConfig": {"SubnetIds": list(SUBNETS), "SecurityGroupIds": list(SECURITY_GROUPS)},
        "PermissionsConfig": {"CapacityProviderOperatorRoleArn": OPERATOR_ROLE_ARN},
    }
    req.update(overrides)
    return req


def create_cp(client, name: str | None = None, **overrides) -> dict:
    """CreateCapacityProvider; returns the full response."""
    name = name or uniq("cp")
    return retry_throttled(lambda: client.create_capacity_provider(**cp_request(name, **overrides)))


def wait_cp_active(client, name: str, timeout: float = ASYNC_TIMEOUT) -> dict:
    def probe():
        return client.get_capacity_provider(CapacityProviderName=name)["CapacityProvider"]

    def until(cp):
        assert cp["State"] in ("Pending", "Active"), f"capacity provider went to {cp['State']}: {cp}"
        return cp["State"] == "Active"

    return poll(probe, until, f"capacity provider {name} to become Active", timeout)


def create_active_cp(client, name: str | None = None, **overrides) -> dict:
    name = name or uniq("cp")
    create_cp(client, name, **overrides)
    return wait_cp_active(client, name)


def delete_cp_when_free(client, name: str, timeout: float = ASYNC_TIMEOUT) -> dict:
    """Delete a CP, retrying ResourceConflictException while its function versions
    finish their asynchronous deletion (as Terraform does, lmi-behaviour.md §8.3)."""

    def probe():
        try:
            return retry_throttled(lambda: client.delete_capacity_provider(CapacityProviderName=name))
        except ClientError as err:
            if error_code(err) == "ResourceConflictException":
                return err
            raise

    return poll(probe, lambda v: not isinstance(v, ClientError), f"capacity provider {name} to become deletable", timeout)


# --------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------


def lmi_config(cp_arn: str, **extra) -> dict:
    inner = {"CapacityProviderArn": cp_arn}
    inner.update(extra)
    return {"LambdaManagedInstancesCapacityProviderConfig": inner}


def function_request(name: str, cp_arn: str | None, runtime: str = "python3.13", zip_bytes: bytes | None = None,
                     memory: int | None = 2048, **overrides) -> dict:
    if zip_bytes is None:
        zip_bytes = bootstrap_zip() if runtime.startswith("provided") else python_zip()
    req = {
        "FunctionName": name,
        "Runtime": runtime,
        "Role": ROLE_ARN,
        "Handler": "bootstrap" if runtime.startswith("provided") else "app.handler",
        "Code": {"ZipFile": zip_bytes},
    }
    if memory is not None:
        req["MemorySize"] = memory
    if cp_arn is not None:
        req["CapacityProviderConfig"] = lmi_config(cp_arn)
    req.update(overrides)
    return req


def wait_function_settled(client, name: str, qualifier: str | None = None, timeout: float = ASYNC_TIMEOUT) -> dict:
    """Wait until a function (version) is no longer being created or updated.

    AWS rejects updates/publishes while State=Pending (for $LATEST) or
    LastUpdateStatus=InProgress with ResourceConflictException, so tests wait
    like any careful client would.
    """
    kwargs = {"FunctionName": name}
    if qualifier:
        kwargs["Qualifier"] = qualifier

    def probe():
        return client.get_function_configuration(**kwargs)

    def until(cfg):
        if cfg.get("LastUpdateStatus") == "InProgress":
            return False
        if (qualifier in (None, "$LATEST")) and cfg.get("State") == "Pending":
            return False
        return True

    return poll(probe, until, f"function {name}:{qualifier or '$LATEST'} to settle", timeout)


def wait_publish_finished(client, name: str, qualifier: str = "$LATEST.PUBLISHED", timeout: float = 60.0) -> dict:
    """Wait until a published version has finished publishing: State no longer Pending and
    no update InProgress. Publishing is asynchronous for LMI (lmi-behaviour.md §1.3: the
    version turns Active once its execution environments are up), and a publish while one
    is in progress is rejected with ResourceConflictException, so careful clients wait."""
    if not server_has_data_plane(client):
        # Without a data plane nothing ever finishes the publish (or races with it).
        return client.get_function_configuration(FunctionName=name, Qualifier=qualifier)
    return poll(lambda: client.get_function_configuration(FunctionName=name, Qualifier=qualifier),
                lambda c: c.get("State") != "Pending" and c.get("LastUpdateStatus") != "InProgress",
                f"{name}:{qualifier} to finish publishing", timeout)


def server_has_data_plane(client) -> bool:
    """`GET /fleetfn/health` says whether the server runs a data plane (`--no-data-plane`)."""
    import json as _json
    import urllib.request
    with urllib.request.urlopen(client.meta.endpoint_url + "/fleetfn/health", timeout=10) as r:
        return bool(_json.loads(r.read()).get("dataPlane"))


def create_function(client, name: str | None = None, cp_arn: str | None = None, **kwargs) -> dict:
    """CreateFunction then wait until $LATEST settles; returns the create response."""
    name = name or uniq("fn")
    resp = client.create_function(**function_request(name, cp_arn, **kwargs))
    wait_function_settled(client, name)
    return resp


def update_config(client, name: str, **kwargs) -> dict:
    resp = client.update_function_configuration(FunctionName=name, **kwargs)
    wait_function_settled(client, name)
    return resp


def update_code(client, name: str, zip_bytes: bytes, **kwargs) -> dict:
    resp = client.update_function_code(FunctionName=name, ZipFile=zip_bytes, **kwargs)
    wait_function_settled(client, name)
    return resp


def paginate(call: Callable[..., dict], items_key: str, max_items: int, max_pages: int = 2000, **kwargs) -> tuple[list, int]:
    """Follow NextMarker manually; returns (all items, number of pages)."""
    items: list = []
    marker = None
    pages = 0
    while True:
        args = dict(kwargs, MaxItems=max_items)
        if marker:
            args["Marker"] = marker
        resp = call(**args)
        page = resp.get(items_key, [])
        assert len(page) <= max_items, f"page of {len(page)} items exceeds MaxItems={max_items}"
        items.extend(page)
        pages += 1
        marker = resp.get("NextMarker")
        if not marker:
            return items, pages
        assert pages < max_pages, "pagination does not terminate"


# --------------------------------------------------------------------------------------
# Raw signed HTTP
# --------------------------------------------------------------------------------------


def raw_request(endpoint: str, method: str, path: str, body: bytes | str | None = None,
                query: dict | None = None, headers: dict | None = None, sign: bool = True,
                access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, timeout: float = 60.0,
                verify: str | bool = True) -> requests.Response:
    """Send an HTTP request, optionally SigV4-signed for service `lambda`; `verify`: the CA
    bundle of an https endpoint."""
    url = endpoint.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    if isinstance(body, str):
        body = body.encode()
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    if sign:
        req = AWSRequest(method=method, url=url, data=body or b"", headers=hdrs)
        SigV4Auth(Credentials(access_key, secret_key), "lambda", REGION).add_auth(req)
        hdrs = dict(req.headers.items())
    return requests.request(method, url, data=body, headers=hdrs, timeout=timeout, verify=verify)


def raw_error_code(resp: requests.Response) -> str:
    """Extract the error code the way botocore's rest-json parser does."""
    header = resp.headers.get("x-amzn-ErrorType", "")
    if header:
        return header.split(":")[0]
    try:
        body = resp.json()
    except ValueError:
        return ""
    code = body.get("__type") or body.get("code") or ""  # "Type" is User/Service, not the code
    return code.split("#")[-1]


def raw_error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text
    return body.get("message") or body.get("Message") or ""


def make_client(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                validate: bool = True, unsigned: bool = False, verify: str | bool | None = None):
    cfg = dict(retries={"max_attempts": 1}, parameter_validation=validate,
               connect_timeout=5, read_timeout=120)
    if unsigned:
        cfg["signature_version"] = UNSIGNED
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(**cfg),
        verify=verify,
    )
