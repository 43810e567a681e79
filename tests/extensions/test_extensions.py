"""Layers and extensions on a real `fleetfn serve`: real extension clients, unchanged, each in a
layer, under concurrent invokes of Lambda Managed Instances functions.

- The Rust `lambda-extension` crate (crates/fleetfn-testext): its events processor registers
  (SHUTDOWN: LMI delivers no INVOKE events to extensions and refuses to register them), its
  telemetry processor subscribes; with 16 invokes in flight together in one environment, the
  telemetry subscriber gets `platform.start` and `platform.report` for every request id (once),
  `platform.runtimeDone` only with request ids that were invoked (LMI sends none), and every
  line the handler printed as a `function` record.
- A Python extension on the raw HTTP APIs (layers/pyext): the same checks, with LMI's schema
  version 2025-01-29.
- The Lambda Web Adapter (crates.io `lambda_web_adapter`, binary `lambda-adapter`) with its layer
  `bootstrap` as AWS_LAMBDA_EXEC_WRAPPER, serving a small web application through a function URL.
- Powertools for AWS Lambda (Python) from PyPI in a layer: Logger JSON lines with the request id,
  Metrics EMF documents, Tracer disabled, LambdaFunctionUrlResolver routing function-URL
  requests, under concurrent requests in one environment.
- Failures: an extension that exits at init, one that reports an init error and one registering
  for INVOKE fail the publish (State Failed, StateReasonCode FunctionError.ExtensionInitError); one that exits
  later takes its environment down: the invokes in flight get `Extension.Crash`, and the
  environment is replaced.
- Layer contents: read-only at /opt, extracted in order (a later layer wins), /opt/python on
  PYTHONPATH, /opt/bin on PATH, /opt/lib on LD_LIBRARY_PATH.

Extensions run in the sandbox (its init starts them; /opt is a read-only bind), so the suite needs
root.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import extkit
from fleetfn_testkit import api as h
from fleetfn_testkit import dataplane as dp
from fleetfn_testkit import prereq

pytestmark = prereq.needs_root("extensions run inside the sandbox, and layers are bound read-only at /opt")

Q = extkit.QUALIFIER
N = 16
RUST_EVENTS = "fleetfn-testext-events"
RUST_TELEMETRY = "fleetfn-testext-telemetry"
PYEXT = "fleetfn-pyext"


def is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------
# Telemetry for every invoke: the Rust crate's processors and the raw Python extension
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def observed(lam, endpoint, layers, functions):
    """One function with both extension layers (Rust first, then Python), one environment, N
    invokes in flight together, each printing its own marker; then what the extensions recorded
    once every request id's platform.report reached both subscribers."""
    name = functions.active("ext-telemetry", extkit.function_zip("reader"),
                            [layers["rust_extensions"], layers["pyext"]], concurrency=N)
    extkit.wait_full_concurrency(lam, name, N)
    markers = [f"marker-{i}-{uuid.uuid4().hex}" for i in range(N)]
    batch = dp.Batch(lam, name, [{"op": "print_sleep", "text": m, "ms": 1500} for m in markers])
    dp.wait_in_flight(endpoint, name, Q, N, batch)
    results = batch.results(timeout=60)
    for res in results:
        assert not isinstance(res, Exception), res
        assert res.status == 200 and res.function_error is None, res
    rids = [res.json["requestId"] for res in results]
    assert [r.request_id for r in results] == rids, "the API's request ids are the handler's"
    assert len(set(rids)) == N

    def complete(recs):
        return all({extkit.request_id_of(i) for i in extkit.of_type(extkit.telemetry(recs.get(ext, [])),
                                                                      "platform.report")} >= set(rids)
                   for ext in (RUST_TELEMETRY, PYEXT))

    recs = extkit.wait_records(lam, name, complete, f"platform.report of all {N} invokes at both subscribers")
    version = lam.get_function_configuration(FunctionName=name, Qualifier=Q)["Version"]
    return {"name": name, "version": version, "rids": rids, "markers": dict(zip(rids, markers)), "records": recs}


def check_telemetry(observed, ext: str):
    items = extkit.telemetry(observed["records"][ext])
    rids, markers = observed["rids"], observed["markers"]
    types = {i["type"] for i in items}
    print(f"{ext}: {len(items)} telemetry items: {dict(Counter(i['type'] for i in items))}")
    assert "platform.initStart" in types, f"{ext} got no init-phase record (subscribers get the init buffer): {types}"
    for kind in ("platform.start", "platform.report"):
        ids = [extkit.request_id_of(i) for i in extkit.of_type(items, kind)]
        for rid in rids:
            assert ids.count(rid) == 1, f"{ext}: {kind} for {rid} seen {ids.count(rid)} times"
    invoked = set(rids)
    # LMI sends no platform.runtimeDone; if fleetfn does, it names invokes that started.
    started = {extkit.request_id_of(i) for i in extkit.of_type(items, "platform.start")}
    done = [extkit.request_id_of(i) for i in extkit.of_type(items, "platform.runtimeDone")]
    assert set(done) <= started, done
    if done:
        for rid in rids:
            assert done.count(rid) == 1, f"{ext}: platform.runtimeDone for {rid} seen {done.count(rid)} times"
    for rep in extkit.of_type(items, "platform.report"):
        if extkit.request_id_of(rep) in invoked:
            metrics = rep["record"]["metrics"]
            assert isinstance(metrics["durationMs"], (int, float)) and metrics["durationMs"] >= 1000, rep
            assert rep["record"].get("status", "success") == "success", rep
    texts = [extkit.function_text(i) for i in extkit.of_type(items, "function")]
    for rid in rids:
        hits = [t for t in texts if markers[rid] in t]
        assert len(hits) == 1, f"{ext}: the line printed by {rid} arrived {len(hits)} times as a function record"
    # The extensions' own lines (printed while they registered, during init) are `extension`
    # records, never `function` ones.
    ext_texts = [extkit.function_text(i) for i in extkit.of_type(items, "extension")]
    for name in (RUST_EVENTS, RUST_TELEMETRY, PYEXT):
        assert any(t.startswith(f"{name}: registered") for t in ext_texts), \
            f"{ext}: no extension record of {name}'s registration line: {ext_texts[:10]}"
        assert not any(t.startswith(f"{name}: ") for t in texts), \
            f"{ext}: {name}'s lines arrived as function records: {[t for t in texts if t.startswith(name)][:3]}"
    # Time order within each request: start before report.
    for rid in rids:
        start = next(i for i in extkit.of_type(items, "platform.start") if extkit.request_id_of(i) == rid)
        report = next(i for i in extkit.of_type(items, "platform.report") if extkit.request_id_of(i) == rid)
        assert items.index(start) < items.index(report), rid
        assert start["time"] <= report["time"], (start, report)
    return items


def check_registered(observed, ext: str, events: list[str]):
    reg = [r for r in observed["records"][ext] if r.get("kind") == "registered"]
    assert len(reg) == 1, observed["records"][ext][:5]
    reg = reg[0]
    assert is_uuid(reg["extensionId"]), reg
    assert reg["functionName"] == observed["name"], reg
    assert reg["handler"] == "app.handler", reg
    assert reg["functionVersion"] == observed["version"], reg
    assert reg["accountId"] == h.ACCOUNT, reg  # both clients send Lambda-Extension-Accept-Feature: accountId
    assert reg["events"] == events, reg
    return reg


def test_rust_extension_crate_registers_and_its_telemetry_processor_gets_every_invoke(observed):
    check_registered(observed, RUST_EVENTS, ["SHUTDOWN"])
    check_registered(observed, RUST_TELEMETRY, ["SHUTDOWN"])
    items = check_telemetry(observed, RUST_TELEMETRY)
    # The crate parsed every batch (a malformed platform record fails the whole POST with 400).
    batches = [r["items"] for r in observed["records"][RUST_TELEMETRY] if r.get("kind") == "batch"]
    assert sum(batches) == len(items) and all(b >= 1 for b in batches), batches
    # Two extensions registered: platform.extension names both (and the Python one).
    names = {i["record"].get("name") for i in extkit.of_type(items, "platform.extension")}
    assert {RUST_EVENTS, RUST_TELEMETRY, PYEXT} <= names, names


def test_python_raw_extension_gets_telemetry_for_every_invoke(observed):
    check_registered(observed, PYEXT, ["SHUTDOWN"])
    items = check_telemetry(observed, PYEXT)
    subs = [i["record"] for i in extkit.of_type(items, "platform.telemetrySubscription")]
    assert any(s.get("name") == PYEXT and s.get("state") == "Subscribed" for s in subs), subs


def test_extension_stdout_and_shutdown_reach_the_logs(lam, endpoint, observed):
    """Extensions' output goes to the function's logs; a stopping environment sends SHUTDOWN."""
    name = observed["name"]
    extkit.wait_logs(endpoint, name, lambda recs: any(f"{RUST_EVENTS}: registered" in str(r.get("message"))
                                                      for r in recs), "the events extension's registration line")
    dp.set_scaling(lam, name, Q, 0, 0)
    dp.wait_envs(endpoint, name, Q, lambda es: not any(e["State"] in dp.LIVE_STATES for e in es),
                 "the environment to stop", timeout=60)
    exts = (RUST_EVENTS, RUST_TELEMETRY, PYEXT)

    def count(recs, text):
        return {ext: sum(str(r.get("message")).startswith(f"{ext}: {text}") for r in recs) for ext in exts}

    # Every environment that ran (three at first, then one) stopped: each extension that
    # registered in it got SHUTDOWN (reason spindown) and said so before it was stopped.
    recs = extkit.wait_logs(endpoint, name,
                            lambda recs: count(recs, "SHUTDOWN spindown") == count(recs, "registered"),
                            "SHUTDOWN spindown at every extension of every environment")
    registered = count(recs, "registered")
    assert all(n >= 1 for n in registered.values()) and len(set(registered.values())) == 1, registered
    print(f"registrations and SHUTDOWNs per extension: {registered}")


# --------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------


def failed_publish(functions, layers, layer_keys: list[str], variables: dict) -> dict:
    pub = functions.published("ext-fail", extkit.function_zip("reader"), [layers[k] for k in layer_keys],
                              variables=variables)
    cfg = pub.final
    assert cfg["State"] == "Failed", f"expected the publish to fail: {cfg['State']} {cfg.get('StateReason')}"
    assert cfg["StateReasonCode"] == "FunctionError.ExtensionInitError", cfg
    print(f"{variables}: {cfg['StateReasonCode']}: {cfg['StateReason']}")
    return cfg


def test_extension_exiting_at_init_fails_the_publish(functions, layers):
    cfg = failed_publish(functions, layers, ["pyext"], {"FLEETFN_PYEXT_MODE": "exit-at-init"})
    assert "Extension." in cfg["StateReason"], cfg


def test_extension_init_error_fails_the_publish_with_its_error_type(functions, layers):
    cfg = failed_publish(functions, layers, ["pyext"], {"FLEETFN_PYEXT_MODE": "init-error"})
    assert "Extension.FleetfnTestInitError" in cfg["StateReason"], cfg


def test_registering_for_invoke_fails_the_publish(functions, layers):
    """LMI refuses INVOKE registrations; the crate then exits before its init completes."""
    failed_publish(functions, layers, ["rust_extensions"], {"FLEETFN_TESTEXT_EVENTS": "INVOKE,SHUTDOWN"})


def test_extension_exiting_later_fails_in_flight_invokes_and_environment_is_replaced(lam, endpoint, layers, functions):
    name = functions.active("ext-crash", extkit.function_zip("reader"), [layers["pyext"]], concurrency=4,
                            variables={"FLEETFN_PYEXT_MODE": "exit-on-trigger"})
    old = dp.wait_single_ready(endpoint, name, Q)
    # The trigger is the 4th invoke in flight: every Python worker must be up to take it.
    extkit.wait_full_concurrency(lam, name, 4)
    batch = dp.Batch(lam, name, [{"op": "sleep", "ms": 20000}] * 3)
    dp.wait_in_flight(endpoint, name, Q, 3, batch)
    trigger = dp.invoke(lam, name, {"op": "trigger", "ms": 20000})
    for res in [trigger, *batch.results(timeout=40)]:
        assert not isinstance(res, Exception), f"an in-flight invoke got {res!r} instead of a function error"
        dp.assert_lambda_error(res, "Extension.Crash", function_errors=("Unhandled",))
    new = dp.wait_envs(endpoint, name, Q,
                       lambda es: any(e["State"] == "Ready" and e["EnvironmentId"] != old["EnvironmentId"] for e in es),
                       "a replacement environment", timeout=90)
    assert old["EnvironmentId"] not in {e["EnvironmentId"] for e in dp.ready(new)}, dp.describe_envs(new)
    # The replacement has a /tmp of its own (no trigger file) and serves.
    out = dp.invoke_ok_when_capacity(lam, name, {"op": "sleep", "ms": 0})
    assert is_uuid(out["requestId"]), out


# --------------------------------------------------------------------------------------
# Layer contents
# --------------------------------------------------------------------------------------


def test_layers_are_read_only_at_opt_in_order_and_on_the_paths(lam, layers, functions):
    name = functions.active("ext-paths", extkit.function_zip("reader"), [layers["paths"], layers["paths2"]],
                            concurrency=2)
    out = dp.invoke_ok(lam, name, {"op": "opt"})
    assert {"/opt/python/fleetfn_layer_mod.py", "/opt/bin/fleetfn-layer-tool"} <= set(out["listing"]), out["listing"]
    assert out["writable"] is False and out["writeError"], out
    assert out["optMounts"] and all("ro" in opts for opts in out["optMounts"]), f"/opt is not a read-only mount: {out}"
    assert out["module"] == {"answer": 2, "file": "/opt/python/fleetfn_layer_mod.py"}, out["module"]
    assert out["tool"] == "/opt/bin/fleetfn-layer-tool", out
    assert out["toolOutput"] == "fleetfn-layer-tool from /opt/bin/fleetfn-layer-tool", out
    assert "/opt/bin" in out["PATH"].split(":"), out["PATH"]
    assert "/opt/python" in out["PYTHONPATH"].split(":"), out["PYTHONPATH"]
    assert "/opt/python/lib/python3.13/site-packages" in out["PYTHONPATH"].split(":"), out["PYTHONPATH"]
    assert "/opt/lib" in (out["LD_LIBRARY_PATH"] or "").split(":"), out["LD_LIBRARY_PATH"]
    # The function's own code comes first on sys.path, the layers after it (as AWS orders them).
    sys_path = out["sysPath"]
    assert sys_path.index(out["taskRoot"]) < sys_path.index("/opt/python"), (out["taskRoot"], sys_path)


# --------------------------------------------------------------------------------------
# Function URLs: the Lambda Web Adapter and Powertools
# --------------------------------------------------------------------------------------


def public_url(lam, server, name: str) -> str:
    """A public NONE function URL; requests go by fleetfn's path prefix."""
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    lam.add_permission(FunctionName=name, StatementId="FunctionURLAllowPublicAccess", Action="lambda:InvokeFunctionUrl",
                       Principal="*", FunctionUrlAuthType="NONE")
    lam.add_permission(FunctionName=name, StatementId="FunctionURLInvokeAllowPublicAccess",
                       Action="lambda:InvokeFunction", Principal="*", InvokedViaFunctionUrl=True)
    url_id = cfg["FunctionUrl"].split("//", 1)[1].split(".", 1)[0]
    return f"{server.url_endpoint}/_fleetfn/url/{url_id}"


def concurrently(calls: list) -> list:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda c: c(), calls))


def get_when_capacity(url: str, timeout: float = 30.0) -> requests.Response:
    """GET, again after a 429 (LMI throttles instead of queueing, e.g. while an environment's
    workers are still starting to poll), for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(url, timeout=60)
        if r.status_code != 429 or time.monotonic() >= deadline:
            return r
        time.sleep(0.2)


def test_lambda_web_adapter_serves_concurrent_requests(lam, server, layers, functions):
    name = functions.active("ext-lwa", extkit.function_zip("webapp"), [layers["web_adapter"]], handler="run.sh",
                            variables={"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "AWS_LWA_PORT": "8080"})
    base = public_url(lam, server, name)
    answers = concurrently([lambda i=i: get_when_capacity(f"{base}/hello?i={i}&ms=1000") for i in range(N)])
    rids = set()
    for i, r in enumerate(answers):
        assert r.status_code == 200, (i, r.status_code, r.text[:300])
        body = r.json()
        assert body["path"] == "/hello" and body["query"] == {"i": str(i), "ms": "1000"}, body
        assert is_uuid(body["requestId"]), body
        assert r.headers.get("x-amzn-RequestId") == body["requestId"], (r.headers, body)
        rids.add(body["requestId"])
    assert len(rids) == N
    assert len({r.json()["thread"] for r in answers}) > 1, "the requests were served one at a time"
    missing = requests.get(f"{base}/nope", timeout=30)
    assert missing.status_code == 404 and missing.json() == {"message": "not found"}, missing.text


POWERTOOLS_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME": "fleetfn-pt",
    "POWERTOOLS_METRICS_NAMESPACE": "FleetfnTest",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def test_powertools_logger_metrics_tracer_and_url_routing_under_concurrency(lam, server, endpoint, layers, functions):
    name = functions.active("ext-pt", extkit.function_zip("powertools"), [layers["powertools"]], concurrency=N,
                            variables=POWERTOOLS_VARIABLES)
    base = public_url(lam, server, name)
    who = [f"user{i}" for i in range(N)]
    answers = concurrently([lambda w=w: get_when_capacity(f"{base}/hello/{w}?ms=500") for w in who])
    by_rid = {}
    for w, r in zip(who, answers):
        assert r.status_code == 200, (w, r.status_code, r.text[:500])
        body = r.json()
        assert body["hello"] == w and body["tracerDisabled"] is True, body
        assert r.headers.get("x-amzn-RequestId") == body["requestId"], (r.headers, body)
        by_rid[body["requestId"]] = (w, body["pid"])
    assert len(by_rid) == N
    assert len({pid for _, pid in by_rid.values()}) > 1, "the requests did not run concurrently in several workers"

    echo = requests.post(f"{base}/echo", json={"a": [1, 2]}, timeout=30)
    assert echo.status_code == 200 and echo.json()["echo"] == {"a": [1, 2]}, echo.text
    missing = requests.get(f"{base}/nope", timeout=30)
    assert missing.status_code == 404, missing.text

    # Powertools writes its own JSON lines; fleetfn keeps such a line as the record itself, so
    # Logger's fields (function_request_id, who, ...) and the EMF document (_aws) are top-level
    # fields of the records. Which request a line belongs to is what Logger says: with 16
    # workers printing at once, only the line itself knows.
    def documents(recs):
        return [r for r in recs if isinstance(r, dict)]

    def complete(recs):
        docs = documents(recs)
        said = {d.get("function_request_id") for d in docs if d.get("message") == "hello"}
        miss = set(by_rid) - said
        return set(by_rid) <= said and sum("_aws" in d for d in docs) >= N

    merged = []

    def complete_or_merged(recs):
        # A line holding two JSON documents: two workers' writes interleaved on the shared
        # stdout (print() writes the text and its newline separately); those lines are lost
        # for CloudWatch's metric extraction and for request attribution.
        merged[:] = [r for r in recs if isinstance(r.get("message"), str) and "}{" in r["message"]]
        return complete(recs) or bool(merged)

    recs = extkit.wait_logs(endpoint, name, complete_or_merged,
                            f"Logger's hello and an EMF document for all {N} requests")
    assert not merged, (f"{len(merged)} log records hold several JSON lines run together (the runtime's worker "
                        f"processes' writes interleaved): {[r['message'][:300] for r in merged]}")
    docs = documents(recs)
    for rid, (w, _) in by_rid.items():
        hello = [d for d in docs if d.get("message") == "hello" and d.get("function_request_id") == rid]
        assert len(hello) == 1, hello
        assert hello[0]["who"] == w and hello[0]["level"] == "INFO" and hello[0]["service"] == "fleetfn-pt", hello[0]
        assert hello[0]["function_name"] == name and hello[0]["cold_start"] in (True, False), hello[0]
    emf = [d for d in docs if "_aws" in d]
    assert len(emf) == N, f"{len(emf)} EMF documents for {N} requests that added a metric: {emf}"
    for doc in emf:
        cw = doc["_aws"]["CloudWatchMetrics"][0]
        assert cw["Namespace"] == "FleetfnTest" and {"Name": "Hellos", "Unit": "Count"} in cw["Metrics"], doc
        assert doc["Hellos"] in ([1.0], 1.0, [1], 1) and doc["service"] == "fleetfn-pt", doc
        assert isinstance(doc["_aws"]["Timestamp"], int), doc
    # Tracer disabled cleanly: nothing about X-Ray or a missing daemon in the logs.
    noise = [r for r in recs if "xray" in json.dumps(r).lower() or "daemon" in json.dumps(r).lower()]
    assert not noise, noise
