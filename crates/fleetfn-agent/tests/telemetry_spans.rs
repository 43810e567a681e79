//! Telemetry spans and internal extensions end to end, through a real agent API and
//! `AgentClient`, in the sandbox.
//!
//! The function is `provided.al2023`: its `bootstrap` first runs `internal.py`, which registers
//! an *internal* extension (a name not in `/opt/extensions`) with `{"events":[]}` and keeps
//! polling `/event/next` from a forked child, and tries a second internal one with
//! `{"events":["SHUTDOWN"]}` (refused, as LMI refuses it); then it execs the `fleetfn-testfn`
//! fixture. One layer brings `extensions/spans`, a Python extension that subscribes to the
//! Telemetry API (schema from `SPANS_SCHEMA`) and prints every `platform.runtimeDone`,
//! `platform.report` and `platform.extension` event it receives as one `SPANS <json>` line,
//! which the test reads back from the function's log.
//!
//! Needs root with namespaces and cgroups (`#[ignore]`d unless run with `--include-ignored`,
//! as `scripts/test` does).

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use fleetfn_agent::{Agent, RuntimeProvider, RuntimeProviderConfig};
use fleetfn_artifacts::{ArtifactStore, Digest};
use fleetfn_proto::{AgentClient, EnvironmentRequest, InvokeReply, LayerPackage};
use serde_json::{Value, json};

const TOKEN: &str = "test-token";

const BOOTSTRAP: &str = r#"#!/bin/sh
set -e
/usr/bin/python3 ./internal.py
exec ./testfn
"#;

/// Registers internal extensions before the runtime polls; what the API answered goes to
/// `/tmp/internal-good` and `/tmp/internal-bad` for the test to read through the function.
const INTERNAL: &str = r#"import json, os, urllib.error, urllib.request

API = os.environ["AWS_LAMBDA_RUNTIME_API"]


def call(method, path, body, headers):
    req = urllib.request.Request(f"http://{API}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


def register(name, events):
    return call(
        "POST",
        "/2020-01-01/extension/register",
        json.dumps({"events": events}).encode(),
        {"Lambda-Extension-Name": name, "Content-Type": "application/json"},
    )


bad_status, _, bad_body = register("internal-bad", ["SHUTDOWN"])
status, headers, body = register("internal-ext", [])
eid = {k.lower(): v for k, v in headers.items()}.get("lambda-extension-identifier")
# Short lines: the fixture's probe reads at most 64 bytes of a file.
with open("/tmp/internal-good", "w") as f:
    f.write(f"{status} {len(eid or '')} {body.get('functionName')} {body.get('functionVersion')}")
with open("/tmp/internal-bad", "w") as f:
    f.write(f"{bad_status} {bad_body.get('errorType')}")
if status == 200 and os.fork() == 0:
    # The internal extension lives on in the runtime's process tree, polling its events.
    while True:
        call("GET", "/2020-01-01/extension/event/next", None, {"Lambda-Extension-Identifier": eid})
"#;

const EXTENSION: &str = r#"#!/usr/bin/python3
import http.server, json, os, sys, threading, urllib.request

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
NAME = os.path.basename(sys.argv[0])


def call(method, path, body=None, headers=None):
    req = urllib.request.Request(f"http://{API}{path}", data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req) as r:
        return r.headers, r.read()


headers, _ = call(
    "POST",
    "/2020-01-01/extension/register",
    json.dumps({"events": ["SHUTDOWN"]}).encode(),
    {"Lambda-Extension-Name": NAME, "Content-Type": "application/json"},
)
eid = headers.get("Lambda-Extension-Identifier")


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        batch = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        for event in batch:
            if event["type"] in ("platform.runtimeDone", "platform.report", "platform.extension"):
                print("SPANS " + json.dumps(event, separators=(",", ":")), flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 4244), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
call(
    "PUT",
    "/2022-07-01/telemetry",
    json.dumps({
        "schemaVersion": os.environ["SPANS_SCHEMA"],
        "types": ["platform"],
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4244"},
    }).encode(),
    {"Lambda-Extension-Identifier": eid, "Content-Type": "application/json"},
)
while True:
    _, body = call("GET", "/2020-01-01/extension/event/next", None, {"Lambda-Extension-Identifier": eid})
    if json.loads(body)["eventType"] == "SHUTDOWN":
        sys.exit(0)
"#;

fn zip_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data, mode) in files {
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(*mode);
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A sandboxing agent serving its API on loopback, with the code and the layer in its store.
struct Harness {
    _dir: tempfile::TempDir,
    agent: Agent,
    client: AgentClient,
    logs: std::path::PathBuf,
    code: Digest,
    layer: LayerPackage,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let testfn = std::fs::read(testfn_binary()).unwrap();
        let code = store
            .put(&zip_of(&[
                ("bootstrap", BOOTSTRAP.as_bytes(), 0o755),
                ("internal.py", INTERNAL.as_bytes(), 0o644),
                ("testfn", &testfn, 0o755),
            ]))
            .unwrap();
        let d = store
            .put(&zip_of(&[(
                "extensions/spans",
                EXTENSION.as_bytes(),
                0o755,
            )]))
            .unwrap();
        let layer = LayerPackage {
            arn: "arn:aws:lambda:us-east-1:123456789012:layer:spans:1".into(),
            sha256_hex: d.hex(),
            size: d.size(),
        };
        let iso = sandbox::host();
        let isolation = iso.to_string();
        let net = fleetfn_agent::NetworkConfig {
            isolation: fleetfn_sandbox::net::probe(iso.root, false),
            dns: Vec::new(),
            leases: fleetfn_sandbox::LeaseDir::new(fleetfn_sandbox::DEFAULT_LEASE_DIR),
        };
        let provider = RuntimeProvider::detect(RuntimeProviderConfig::new(
            dir.path().join("rt"),
            dir.path().join("envs"),
        ))
        .with_launcher(Arc::new(fleetfn_agent::SandboxLauncher::new(
            sandbox_helper_binary().to_path_buf(),
            iso,
            None,
            net,
        )));
        let logs = dir.path().join("logs");
        let (agent, client, server) = serve_agent(dir.path(), isolation, provider, TOKEN).await;
        Self {
            _dir: dir,
            agent,
            client,
            logs,
            code,
            layer,
            server,
        }
    }

    async fn put(&self, env_id: &str, schema: &str) {
        let req = EnvironmentRequest {
            function_name: "spans".into(),
            version: "1".into(),
            qualified_arn: "arn:aws:lambda:us-east-1:123456789012:function:spans:1".into(),
            runtime: "provided.al2023".into(),
            handler: None,
            code_sha256_hex: self.code.hex(),
            code_size: self.code.size(),
            memory_mb: 512,
            timeout_secs: 10,
            max_concurrency: 2,
            vcpus: 1.0,
            ephemeral_storage_mb: 512,
            region: "us-east-1".into(),
            env_vars: BTreeMap::from([("SPANS_SCHEMA".to_owned(), schema.to_owned())]),
            placement: None,
            credentials: None,
            layers: vec![self.layer.clone()],
        };
        self.client.put_environment(env_id, &req).await.unwrap();
    }

    async fn ready(&self, env_id: &str) {
        wait_env_ready(&self.client, env_id).await;
    }

    async fn invoke(&self, env_id: &str, request_id: &str, event: &Value) -> InvokeReply {
        self.client
            .invoke(
                Duration::from_secs(30),
                env_id,
                request_id,
                Bytes::from(event.to_string()),
                None,
                None,
            )
            .await
            .unwrap()
    }

    /// The `SPANS` events the extension printed, in order.
    fn events(&self) -> Vec<Value> {
        log_records(&self.logs.join("spans").join("1"))
            .iter()
            .filter_map(|r| r["message"].as_str())
            .filter_map(|m| m.trim_end().strip_prefix("SPANS "))
            .map(|j| serde_json::from_str(j).unwrap())
            .collect()
    }

    async fn stop(self) {
        self.agent.stop_all(Duration::from_secs(2)).await;
        self.server.abort();
    }
}

mod sandbox {
    use fleetfn_sandbox::{CgroupLayout, Isolation, LinuxHost, Namespaces};

    /// This host's isolation; the test fails, saying why, when it cannot sandbox.
    pub fn host() -> Isolation {
        let iso = fleetfn_sandbox::probe(&LinuxHost);
        let found = if !iso.root {
            Err(format!("not root ({iso})"))
        } else if iso.namespaces != Namespaces::all() {
            Err(format!("namespaces cannot be unshared ({iso})"))
        } else if !iso.cgroups.as_ref().is_some_and(CgroupLayout::can_limit) {
            Err(format!("no usable memory+cpu cgroups ({iso})"))
        } else {
            Ok(iso)
        };
        fleetfn_testutil::require(fleetfn_testutil::ROOT, found)
    }
}

/// `2006-01-02T15:04:05.000Z` as Unix milliseconds.
fn millis(ts: &Value) -> i64 {
    let s = ts.as_str().unwrap_or_else(|| panic!("a timestamp: {ts}"));
    assert_eq!(s.len(), 24, "RFC 3339 with milliseconds: {s}");
    let t: jiff::Timestamp = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
    t.as_millisecond()
}

/// The record's spans are `responseLatency` then `responseDuration`, back to back, each
/// non-negative, together no longer than the invoke; the latency covers `slept_ms` of
/// handler work.
fn check_spans(event: &Value, slept_ms: f64) {
    let record = &event["record"];
    let spans = record["spans"]
        .as_array()
        .unwrap_or_else(|| panic!("spans: {event}"));
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["responseLatency", "responseDuration"], "{event}");
    let invoke_ms = record["metrics"]["durationMs"].as_f64().unwrap();
    let (latency, duration) = (&spans[0], &spans[1]);
    let latency_ms = latency["durationMs"].as_f64().unwrap();
    let duration_ms = duration["durationMs"].as_f64().unwrap();
    assert!(latency_ms >= 0.0 && duration_ms >= 0.0, "{event}");
    assert!(
        latency_ms + duration_ms <= invoke_ms + 0.002,
        "spans within the invoke's {invoke_ms} ms: {event}"
    );
    assert!(
        latency_ms >= slept_ms,
        "latency covers the handler: {event}"
    );
    // The duration span starts where the latency span ends (to the millisecond of `start`).
    let gap = millis(&duration["start"]) - millis(&latency["start"]);
    assert!(
        (gap as f64 - latency_ms).abs() <= 1.0,
        "back to back: {gap} ms apart, latency {latency_ms} ms: {event}"
    );
    // The invoke ran just now.
    let now = jiff::Timestamp::now().as_millisecond();
    assert!((now - millis(&latency["start"])).abs() < 120_000, "{event}");
}

mod needs_root {
    use super::*;

    /// Every invoke's `platform.runtimeDone` and `platform.report` carry the measured spans,
    /// for a subscriber on LMI's schema and one on the 2022-12-13 schema, for a success and a
    /// function error alike.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    async fn runtime_done_and_report_carry_response_spans() {
        for schema in ["2025-01-29", "2022-12-13"] {
            let h = Harness::start().await;
            let env = format!("spans-{}", &schema[..4]);
            h.put(&env, schema).await;
            h.ready(&env).await;
            let ok = format!("{env}-ok");
            match h
                .invoke(&env, &ok, &json!({"op": "sleep", "ms": 150}))
                .await
            {
                InvokeReply::Done {
                    function_error: None,
                    ..
                } => {}
                other => panic!("{other:?}"),
            }
            let failed = format!("{env}-error");
            match h.invoke(&env, &failed, &json!({"op": "error"})).await {
                InvokeReply::Done {
                    function_error: Some(_),
                    ..
                } => {}
                other => panic!("{other:?}"),
            }
            // Stopping flushes telemetry before the extension's SHUTDOWN.
            h.agent.stop_all(Duration::from_secs(2)).await;
            let events = h.events();
            for (id, slept) in [(&ok, 150.0), (&failed, 0.0)] {
                for kind in ["platform.runtimeDone", "platform.report"] {
                    let event = events
                        .iter()
                        .find(|e| e["type"] == kind && e["record"]["requestId"] == id.as_str())
                        .unwrap_or_else(|| panic!("{schema}: {kind} {id}: {events:?}"));
                    check_spans(event, slept);
                }
            }
            h.stop().await;
        }
    }

    /// An internal extension (registered by the runtime's own bootstrap, under a name that is
    /// not a file in `/opt/extensions`) with no events is accepted and listed in
    /// `platform.extension`; one asking for events is refused with LMI's
    /// `Extension.InvalidEventType`, and the environment still starts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    async fn an_internal_extension_registers_with_no_events() {
        let h = Harness::start().await;
        h.put("internal", "2025-01-29").await;
        h.ready("internal").await;
        let probe = match h
            .invoke(
                "internal",
                "probe-1",
                &json!({"op": "probe", "read": ["/tmp/internal-good", "/tmp/internal-bad"]}),
            )
            .await
        {
            InvokeReply::Done {
                payload,
                function_error: None,
            } => serde_json::from_slice::<Value>(&payload).unwrap(),
            other => panic!("{other:?}"),
        };
        // Accepted as AWS accepts it: 200, an identifier (a UUID), the function's details.
        assert_eq!(
            probe["read"]["/tmp/internal-good"], "read:200 36 spans 1",
            "{probe}"
        );
        // Refused as LMI refuses it.
        assert_eq!(
            probe["read"]["/tmp/internal-bad"], "read:403 Extension.InvalidEventType",
            "{probe}"
        );
        h.agent.stop_all(Duration::from_secs(2)).await;
        let events = h.events();
        let extension = |name: &str| {
            events
                .iter()
                .find(|e| e["type"] == "platform.extension" && e["record"]["name"] == name)
                .unwrap_or_else(|| panic!("platform.extension {name}: {events:?}"))
                .clone()
        };
        let internal = extension("internal-ext");
        assert_eq!(internal["record"]["events"], json!([]), "{internal}");
        assert_eq!(internal["record"]["state"], "Ready", "{internal}");
        let external = extension("spans");
        assert_eq!(
            external["record"]["events"],
            json!(["SHUTDOWN"]),
            "{external}"
        );
        assert!(
            !events
                .iter()
                .any(|e| e["type"] == "platform.extension" && e["record"]["name"] == "internal-bad"),
            "a refused registration is no extension: {events:?}"
        );
        h.stop().await;
    }
}
