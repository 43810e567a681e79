#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/seed-*.

Run from anywhere: `python3 fuzz/make_seeds.py`. Deterministic; only the `seed-*` files are
rewritten, so crash inputs kept in the corpora (`crash-*`) stay. Keep seeds small.
"""

import io
import json
import stat
import zipfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def clear(target):
    d = CORPUS / target
    if d.exists():
        for p in d.glob("seed-*"):
            p.unlink()


# ----- sigv4_verify: the signed-request fixtures of fleetfn-sigv4 as raw HTTP requests -----
def sigv4():
    clear("sigv4_verify")
    for f in sorted((ROOT / "crates/fleetfn-sigv4/tests/fixtures").glob("*.json")):
        fx = json.loads(f.read_text())
        head = f"{fx['method']} {fx['target']} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in fx["headers"])
        write("sigv4_verify", f.stem, head.encode() + b"\r\n" + bytes.fromhex(fx["body_hex"]))


# ----- api_parse: one request per operation -----
ARN = "arn:aws:lambda:us-east-1:000000000000"
API = {
    "create-capacity-provider": (
        "CreateCapacityProvider",
        {
            "CapacityProviderName": "demo",
            "VpcConfig": {"SubnetIds": ["subnet-a", "subnet-b"], "SecurityGroupIds": []},
            "PermissionsConfig": {
                "CapacityProviderOperatorRoleArn": "arn:aws:iam::000000000000:role/operator"
            },
            "InstanceRequirements": {"Architectures": ["x86_64"], "AllowedInstanceTypes": ["c7i.large"]},
            "CapacityProviderScalingConfig": {
                "MaxVCpuCount": 64,
                "ScalingMode": "Manual",
                "ScalingPolicies": [
                    {"PredefinedMetricType": "LambdaCapacityProviderAverageCPUUtilization", "TargetValue": 50.0}
                ],
            },
            "Tags": {"team": "a"},
        },
    ),
    "list-capacity-providers": ("ListCapacityProviders ?State=Active&MaxItems=10&Marker=abc", None),
    "get-capacity-provider-arn": (f"GetCapacityProvider {ARN}%3Acapacity-provider%3Ademo", None),
    "update-capacity-provider": (
        "UpdateCapacityProvider demo",
        {"CapacityProviderScalingConfig": {"MaxVCpuCount": 32, "ScalingMode": "Auto"}},
    ),
    "list-versions-by-cp": ("ListFunctionVersionsByCapacityProvider demo ?MaxItems=2", None),
    "put-scaling-config": (
        "PutFunctionScalingConfig hello ?Qualifier=%24LATEST.PUBLISHED",
        {"FunctionScalingConfig": {"MinExecutionEnvironments": 1, "MaxExecutionEnvironments": 3}},
    ),
    "get-scaling-config": ("GetFunctionScalingConfig hello%3A%24LATEST.PUBLISHED", None),
    "create-function": (
        "CreateFunction",
        {
            "FunctionName": "hello",
            "Runtime": "python3.13",
            "Handler": "app.handler",
            "Role": "arn:aws:iam::000000000000:role/fn",
            "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
            "MemorySize": 2048,
            "Timeout": 30,
            "Environment": {"Variables": {"A": "1"}},
            "EphemeralStorage": {"Size": 512},
            "LoggingConfig": {"LogFormat": "JSON"},
            "CapacityProviderConfig": {
                "LambdaManagedInstancesCapacityProviderConfig": {
                    "CapacityProviderArn": f"{ARN}:capacity-provider:demo",
                    "PerExecutionEnvironmentMaxConcurrency": 10,
                    "ExecutionEnvironmentMemoryGiBPerVCpu": 2.0,
                }
            },
            "Architectures": ["arm64"],
            "Tags": {"k": "v"},
            "Publish": True,
            "PublishTo": "LATEST_PUBLISHED",
        },
    ),
    "list-functions": ("ListFunctions ?FunctionVersion=ALL&MaxItems=50", None),
    "get-function-partial-arn": ("GetFunction 000000000000%3Afunction%3Ahello%3Aprod", None),
    "delete-function": ("DeleteFunction hello ?Qualifier=3", None),
    "get-configuration-arn": (
        f"GetFunctionConfiguration {ARN}%3Afunction%3Ahello ?Qualifier=%24LATEST",
        None,
    ),
    "update-configuration": (
        "UpdateFunctionConfiguration hello",
        {"MemorySize": 4096, "Timeout": 60, "Description": "d\u00e9j\u00e0", "RevisionId": "r"},
    ),
    "update-code": ("UpdateFunctionCode hello", {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==", "Publish": True}),
    "publish-version": ("PublishVersion hello", {"PublishTo": "LATEST_PUBLISHED", "Description": "v"}),
    "list-versions": ("ListVersionsByFunction hello ?Marker=1&MaxItems=1", None),
    "create-alias": (
        "CreateAlias hello",
        {
            "Name": "prod",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1}},
        },
    ),
    "list-aliases": ("ListAliases hello ?FunctionVersion=1", None),
    "get-alias": ("GetAlias hello prod", None),
    "update-alias": ("UpdateAlias hello prod", {"FunctionVersion": "2", "RevisionId": "x"}),
    "delete-alias": ("DeleteAlias hello prod", None),
    "tag-resource": (f"TagResource {ARN}%3Afunction%3Ahello", {"Tags": {"a": "b"}}),
    "untag-resource": (f"UntagResource {ARN}%3Acapacity-provider%3Ademo ?tagKeys=a&tagKeys=b", None),
    "list-tags": (f"ListTags {ARN}%3Afunction%3Ahello", None),
    "download-code": ("DownloadCode " + "ab" * 32, None),
    "logs": ("GetLogs hello ?Qualifier=prod&Since=2026-01-02T03:04:05Z&Limit=10&Follow=true&Wait=5", None),
    "cost": ("Cost ?Since=24h", None),
}


def api():
    clear("api_parse")
    for name, (line, body) in API.items():
        text = line + "\n"
        if body is not None:
            text += "\n" + json.dumps(body)
        write("api_parse", name, text)
    write(
        "api_parse",
        "invoke",
        "Invoke hello%3Aprod ?Qualifier=prod\nx-amz-invocation-type: DryRun\n"
        "x-amz-log-type: None\nx-amz-client-context: e30=\n\n{\"name\": \"fleetfn\"}",
    )


# ----- zip_extract: small packages, good and bad -----
def zip_bytes(entries, comment=b""):
    """entries: (name, data, unix_mode or None)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.create_system = 3
                info.external_attr = mode << 16
                if stat.S_ISDIR(mode):
                    info.external_attr |= 0x10
            z.writestr(info, data)
        z.comment = comment
    return buf.getvalue()


def zips():
    clear("zip_extract")
    import warnings

    warnings.simplefilter("ignore")
    write("zip_extract", "python", zip_bytes([("app.py", b"def handler(e, c):\n    return e\n", 0o100644)]))
    write(
        "zip_extract",
        "bootstrap-tree",
        zip_bytes(
            [
                ("bootstrap", b"#!/bin/sh\nexec ./app\n", 0o100755),
                ("lib/", b"", 0o40755),
                ("lib/libfoo.so.1", b"\x7fELF", 0o100644),
                ("lib/libfoo.so", b"libfoo.so.1", stat.S_IFLNK | 0o777),
                ("node_modules/.bin/tool", b"../tool/cli.js", stat.S_IFLNK | 0o777),
                ("node_modules/tool/cli.js", b"console.log(1)\n", 0o104755),
            ]
        ),
    )
    write("zip_extract", "duplicate", zip_bytes([("a.txt", b"one", 0o100644), ("a.txt", b"two", 0o100644)]))
    write("zip_extract", "traversal", zip_bytes([("ok.txt", b"x", None), ("../evil.txt", b"x", None)]))
    write("zip_extract", "traversal-backslash", zip_bytes([("..\\evil.txt", b"x", None)]))
    write("zip_extract", "absolute", zip_bytes([("/tmp/evil.txt", b"x", None)]))
    write(
        "zip_extract",
        "symlink-escape",
        zip_bytes([("link", b"../../etc/passwd", stat.S_IFLNK | 0o777)]),
    )
    write(
        "zip_extract",
        "symlink-then-write-through",
        zip_bytes([("d", b".", stat.S_IFLNK | 0o777), ("d/x", b"x", 0o100644)]),
    )
    write("zip_extract", "file-below-file", zip_bytes([("a", b"x", None), ("a/b", b"y", None)]))
    write("zip_extract", "empty", zip_bytes([]))
    # A header that declares fewer bytes than the entry inflates to.
    lying = bytearray(zip_bytes([("big.txt", b"A" * 4096, 0o100644)]))
    i = lying.find(b"PK\x01\x02")
    lying[i + 24 : i + 28] = (16).to_bytes(4, "little")
    write("zip_extract", "lying-size", bytes(lying))


# ----- runtime_api: raw Runtime API requests -----
RID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"


def runtime():
    clear("runtime_api")
    P = "/2018-06-01/runtime"
    H = "Host: 127.0.0.1:9001\r\nUser-Agent: aws-lambda-rust/1\r\n"

    def req(method, path, body=b"", extra=""):
        return (
            f"{method} {path} HTTP/1.1\r\n{H}{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )

    write("runtime_api", "next", req("GET", f"{P}/invocation/next"))
    write("runtime_api", "response", req("POST", f"{P}/invocation/{RID}/response", b'{"ok":true}'))
    write(
        "runtime_api",
        "error",
        req(
            "POST",
            f"{P}/invocation/{RID}/error",
            b'{"errorMessage":"boom","errorType":"ValueError","stackTrace":[]}',
            "Lambda-Runtime-Function-Error-Type: ValueError\r\n",
        ),
    )
    write(
        "runtime_api",
        "init-error",
        req("POST", f"{P}/init/error", b'{"errorMessage":"no","errorType":"Init"}',
            "Lambda-Runtime-Function-Error-Type: Runtime.ImportModuleError\r\n"),
    )
    write("runtime_api", "unknown-id", req("POST", f"{P}/invocation/other/response", b"{}"))
    write("runtime_api", "wrong-method", req("PUT", f"{P}/invocation/next", b"x"))
    write("runtime_api", "too-large", req("POST", f"{P}/invocation/{RID}/response", b"x" * 1500))
    chunked = (
        f"POST {P}/invocation/{RID}/response HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    write("runtime_api", "chunked", chunked)
    write(
        "runtime_api",
        "pipelined",
        req("POST", f"{P}/invocation/{RID}/response", b"1")
        + req("POST", f"{P}/invocation/{RID}/error", b"2")
        + req("GET", f"{P}/invocation/next"),
    )
    write("runtime_api", "truncated-body", f"POST {P}/invocation/{RID}/response HTTP/1.1\r\n{H}Content-Length: 100\r\n\r\nabc")
    # Extensions / Telemetry / Logs APIs, as fuzzing::EXTENSION_ID (registered) and others.
    XID = "0f4f3a2e-6c1b-4d7e-9a55-3b0d4b2f6a10"
    X = f"Lambda-Extension-Identifier: {XID}\r\n"
    E = "/2020-01-01/extension"
    write("runtime_api", "ext-register", req("POST", f"{E}/register", b'{"events":["SHUTDOWN"]}',
          "Lambda-Extension-Name: other-ext\r\nLambda-Extension-Accept-Feature: accountId\r\n"))
    write("runtime_api", "ext-register-internal", req("POST", f"{E}/register", b'{"events":[]}',
          "Lambda-Extension-Name: internal\r\n"))
    write("runtime_api", "ext-next", req("GET", f"{E}/event/next", extra=X))
    write("runtime_api", "ext-init-error", req("POST", f"{E}/init/error", b'{"errorMessage":"x","errorType":"Extension.Bad"}',
          X + "Lambda-Extension-Function-Error-Type: Extension.Bad\r\n"))
    write("runtime_api", "ext-exit-error", req("POST", f"{E}/exit/error", b"", X + "Lambda-Extension-Function-Error-Type: x\r\n"))
    sub = json.dumps({
        "schemaVersion": "2025-01-29",
        "types": ["platform", "function", "extension"],
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:8080/t"},
    }).encode()
    write("runtime_api", "telemetry-subscribe", req("PUT", "/2022-07-01/telemetry", sub, X))
    write("runtime_api", "telemetry-tcp", req("PUT", "/2022-07-01/telemetry",
          b'{"schemaVersion":"2022-07-01","types":["function"],"destination":{"protocol":"TCP","port":9}}', X))
    write("runtime_api", "logs-api", req("PUT", "/2020-08-15/logs", b'{"schemaVersion":"2021-03-18"}', X))


if __name__ == "__main__":
    sigv4()
    api()
    zips()
    runtime()
