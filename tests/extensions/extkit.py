"""Layers and functions of the extension suite (tests/extensions): building the layer zips from
the fixtures, publishing them, LMI functions with `Layers`, and reading what the test extensions
recorded.

Layers (each zip's paths are relative to /opt):
- rust_extensions: crates/fleetfn-testext's two binaries as extensions/fleetfn-testext-events and
  extensions/fleetfn-testext-telemetry (FLEETFN_TESTEXT_BIN_DIR, else $CARGO_TARGET_DIR/debug;
  `cargo build -p fleetfn-testext`), debug info stripped into a cache copy;
- pyext: layers/pyext (extensions/fleetfn-pyext, Python against the raw HTTP APIs);
- paths, paths2: layers/paths and layers/paths2 (python/, bin/; paths2 overrides a module);
- powertools: `pip install --target python "aws-lambda-powertools[tracer]"` for CPython 3.13,
  cached in FLEETFN_TEST_CACHE (default ~/.cache/fleetfn-test-layers);
- web_adapter: the Lambda Web Adapter (crate lambda_web_adapter, binary lambda-adapter) as
  extensions/lambda-adapter plus the adapter's layer `bootstrap` (layers/lwa/bootstrap, as the
  project ships it), built once by `cargo install --locked` into the cache (FLEETFN_LWA_BIN: a
  prebuilt binary).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from botocore.exceptions import ClientError

from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp

HERE = Path(__file__).resolve().parent
LAYERS = HERE / "layers"
FUNCTIONS = HERE / "functions"
QUALIFIER = "$LATEST.PUBLISHED"

POWERTOOLS_REQUIREMENT = "aws-lambda-powertools[tracer]==3.37.0"
LWA_VERSION = "1.0.0-rc1"     # the first release running concurrently on Lambda Managed Instances
RUNTIME = "python3.13"


def cache_dir() -> Path:
    d = Path(os.environ.get("FLEETFN_TEST_CACHE") or Path.home() / ".cache" / "fleetfn-test-layers")
    d.mkdir(parents=True, exist_ok=True)
    return d


class _Lock:
    """An exclusive lock file in the cache (two sessions never build the same thing at once)."""

    def __init__(self, name: str):
        self.path = cache_dir() / f"{name}.lock"

    def __enter__(self):
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


# --------------------------------------------------------------------------------------
# Layer zips
# --------------------------------------------------------------------------------------


def tree_entries(root: Path, prefix: str = "") -> list[tuple[str, bytes, int]]:
    """Every file under root as make_zip entries (keeping the executable bit)."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            out.append((prefix + path.relative_to(root).as_posix(), path.read_bytes(), mode))
    return out


def _stripped(binary: Path) -> bytes:
    """The binary without debug info (a cached copy), or as is when `strip` is missing."""
    strip = shutil.which("strip")
    if strip is None:
        return binary.read_bytes()
    st = binary.stat()
    out = cache_dir() / f"{binary.name}.{st.st_size}.{int(st.st_mtime)}.stripped"
    if not out.exists():
        for old in cache_dir().glob(f"{binary.name}.*.stripped"):  # copies of earlier builds
            old.unlink(missing_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        subprocess.run([strip, "--strip-debug", "-o", str(tmp), str(binary)], check=True)
        tmp.rename(out)
    return out.read_bytes()


def testext_binary(name: str) -> Path:
    env = os.environ.get("FLEETFN_TESTEXT_BIN_DIR")
    if env:
        d = Path(env)
    else:
        d = Path(os.environ.get("CARGO_TARGET_DIR") or "/root/.cache/fleetfn-target") / "debug"
    p = d / name
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"the test extension {name} was not found at {p} (cargo build -p fleetfn-testext, "
                    "or set FLEETFN_TESTEXT_BIN_DIR)", pytrace=False)
    return p


def rust_extensions_zip() -> bytes:
    return h.make_zip([(f"extensions/{n}", _stripped(testext_binary(n)), 0o755)
                       for n in ("fleetfn-testext-events", "fleetfn-testext-telemetry")])


def dir_zip(name: str) -> bytes:
    return h.make_zip(tree_entries(LAYERS / name))


def powertools_dir() -> Path:
    """`python/` with Powertools installed for CPython 3.13 on x86_64 Linux (wheels only), cached."""
    key = POWERTOOLS_REQUIREMENT.replace("[", "-").replace("]", "").replace("==", "-")
    target = cache_dir() / key
    with _Lock(key):
        if not (target / "python" / "aws_lambda_powertools").is_dir():
            tmp = cache_dir() / f"{key}.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
                   "--target", str(tmp / "python"), "--python-version", "3.13", "--implementation", "cp",
                   "--platform", "manylinux2014_x86_64", "--only-binary=:all:", POWERTOOLS_REQUIREMENT]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                pytest.fail(f"pip could not install {POWERTOOLS_REQUIREMENT} for the Powertools layer "
                            f"({res.returncode}): {res.stderr[-2000:]}", pytrace=False)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
    return target


def powertools_zip() -> bytes:
    return h.make_zip(tree_entries(powertools_dir()))


def lwa_binary() -> Path:
    """The Lambda Web Adapter's `lambda-adapter`, built once from crates.io with its own lock file
    (a dev build without debug info: about a minute of CPU)."""
    env = os.environ.get("FLEETFN_LWA_BIN")
    if env:
        return Path(env)
    root = cache_dir() / f"lambda-web-adapter-{LWA_VERSION}"
    binary = root / "bin" / "lambda-adapter"
    with _Lock(f"lambda-web-adapter-{LWA_VERSION}"):
        if not binary.is_file():
            cargo = shutil.which("cargo")
            if cargo is None:
                pytest.fail("cargo is needed to build the Lambda Web Adapter (or set FLEETFN_LWA_BIN)", pytrace=False)
            env = dict(os.environ, CARGO_TARGET_DIR=str(cache_dir() / "lwa-target"), CARGO_PROFILE_DEV_DEBUG="0")
            res = subprocess.run([cargo, "install", "lambda_web_adapter", "--version", LWA_VERSION, "--locked",
                                  "--debug", "--root", str(root)], env=env, capture_output=True, text=True, timeout=1800)
            if res.returncode != 0:
                pytest.fail(f"cargo install lambda_web_adapter {LWA_VERSION} failed ({res.returncode}): "
                            f"{res.stderr[-3000:]}", pytrace=False)
            shutil.rmtree(env["CARGO_TARGET_DIR"], ignore_errors=True)  # the binary is what is kept
    return binary


def web_adapter_zip() -> bytes:
    return h.make_zip([("extensions/lambda-adapter", _stripped(lwa_binary()), 0o755),
                       ("bootstrap", (LAYERS / "lwa" / "bootstrap").read_bytes(), 0o755)])


def function_zip(name: str) -> bytes:
    return h.make_zip(tree_entries(FUNCTIONS / name))


# --------------------------------------------------------------------------------------
# Layers and functions
# --------------------------------------------------------------------------------------


def publish_layer(lam, name: str, zip_bytes: bytes, description: str = "") -> str:
    resp = lam.publish_layer_version(LayerName=h.uniq(name), Description=description,
                                     Content={"ZipFile": zip_bytes}, CompatibleRuntimes=[RUNTIME],
                                     CompatibleArchitectures=["x86_64"])
    assert resp["Version"] >= 1 and resp["LayerVersionArn"].endswith(f":{resp['Version']}"), resp
    assert resp["Content"]["CodeSize"] == len(zip_bytes), resp["Content"]
    return resp["LayerVersionArn"]


def create_function(lam, cp_arn: str, prefix: str, code: bytes, layers: list[str], handler: str = "app.handler",
                    variables: dict | None = None, concurrency: int = 16, timeout: int = 30,
                    memory: int = 2048) -> str:
    name = h.uniq(prefix)
    req = {
        "FunctionName": name, "Role": h.ROLE_ARN, "Runtime": RUNTIME, "Handler": handler,
        "Code": {"ZipFile": code}, "MemorySize": memory, "Timeout": timeout, "Layers": layers,
        "CapacityProviderConfig": h.lmi_config(cp_arn, PerExecutionEnvironmentMaxConcurrency=concurrency),
    }
    if variables:
        req["Environment"] = {"Variables": dict(variables)}
    resp = lam.create_function(**req)
    assert [l["Arn"] for l in resp.get("Layers", [])] == layers, resp.get("Layers")
    h.wait_function_settled(lam, name)
    return name


def publish(lam, endpoint: str, name: str, timeout: float = 120.0) -> dp.Publication:
    """Publish to $LATEST.PUBLISHED and wait until it leaves Pending (Active or Failed)."""
    return dp.wait_published(lam, endpoint, [dp.publish(lam, name, "python")], timeout=timeout)[0]


def single_environment(lam, endpoint: str, name: str) -> dict:
    """Scale the published version to exactly one environment, so every invoke shares its /tmp."""
    dp.set_scaling(lam, name, QUALIFIER, 1, 1)
    return dp.wait_single_ready(endpoint, name, QUALIFIER, timeout=90)


def wait_full_concurrency(lam, name: str, n: int, timeout: float = 60.0) -> None:
    """Until n short invokes sent together all run: an environment is Ready once its runtime
    polls, and the Python runtime's worker processes come up one by one after that (LMI
    throttles rather than queues meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        results = dp.Batch(lam, name, [{"op": "sleep", "ms": 300}] * n).results(timeout=60)
        failed = [r for r in results if isinstance(r, Exception) or r.status != 200 or r.function_error]
        if not failed:
            return
        if time.monotonic() >= deadline or any(not isinstance(r, ClientError) or h.error_code(r) !=
                                                "TooManyRequestsException" for r in failed):
            pytest.fail(f"{name} did not take {n} invokes together within {timeout:.0f}s: {failed[:3]}")
        time.sleep(0.5)


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


def read_records(lam, name: str) -> dict[str, list[dict]]:
    """What the extensions recorded in the (single) environment: extension name -> records."""
    return dp.invoke_ok(lam, name, {"op": "records"})["records"]


def wait_records(lam, name: str, until: Callable[[dict], bool], desc: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        recs = read_records(lam, name)
        if until(recs):
            return recs
        if time.monotonic() >= deadline:
            summary = {ext: [(r.get("kind"), (r.get("item") or {}).get("type")) for r in rs][-40:]
                       for ext, rs in recs.items()}
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {desc}; recorded: {json.dumps(summary)}")
        time.sleep(0.2)


def telemetry(records: list[dict]) -> list[dict]:
    """The telemetry items ({time, type, record}) one extension received, in order."""
    return [r["item"] for r in records if r.get("kind") == "telemetry"]


def of_type(items: list[dict], kind: str) -> list[dict]:
    return [i for i in items if i.get("type") == kind]


def request_id_of(item: dict) -> str | None:
    rec = item.get("record")
    return rec.get("requestId") if isinstance(rec, dict) else None


def function_text(item: dict) -> str:
    """A `function` record's text: the line itself (text format) or its message (JSON format)."""
    rec = item.get("record")
    if isinstance(rec, str):
        return rec
    if isinstance(rec, dict):
        return str(rec.get("message", ""))
    return ""


# --------------------------------------------------------------------------------------
# Logs (fleetfn's logs API)
# --------------------------------------------------------------------------------------


def logs(endpoint: str, name: str, request_id: str | None = None, since_s: float = 600) -> list[dict]:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - since_s))
    query = {"Since": since}
    if request_id:
        query["RequestId"] = request_id
    resp = h.raw_request(endpoint, "GET", f"/fleetfn/v1/functions/{name}/logs", query=query, timeout=30)
    assert resp.status_code == 200, f"logs of {name}: {resp.status_code} {resp.text[:300]}"
    return [json.loads(line) for line in resp.text.splitlines() if line]


def wait_logs(endpoint: str, name: str, until: Callable[[list[dict]], bool], desc: str,
              request_id: str | None = None, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        recs = logs(endpoint, name, request_id)
        if until(recs):
            return recs
        if time.monotonic() >= deadline:
            unfiltered = ""
            if request_id:
                everything = logs(endpoint, name)
                unfiltered = (f"; the function's last records whatever their request: "
                              f"{[(r.get('requestId'), str(r.get('message', ''))[:160]) for r in everything[-30:]]}")
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {desc}; got {len(recs)} log records: "
                        f"{[str(r.get('message', ''))[:120] for r in recs[-20:]]}{unfiltered}")
        time.sleep(0.2)
