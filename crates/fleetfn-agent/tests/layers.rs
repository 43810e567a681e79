//! Layers and external extensions end to end, through a real agent API and `AgentClient`.
//!
//! The function is `provided.al2023`: its `bootstrap` (a shell script) notes whether the
//! extension had registered before it started, runs `tool` from the layers' `bin`, then execs
//! the `fleetfn-testfn` fixture. Two layers: the first has `bin/tool` (v1) and a Python
//! module, the second replaces `bin/tool` (v2) and brings `extensions/pyext`, a Python
//! extension written against the raw Extensions API (`EXT_MODE` picks its behaviour: normal,
//! crash at init, `/extension/init/error`, crash once `/tmp/crash-now` appears).
//!
//! Sandboxed runs need root with namespaces and cgroups (`needs_root`, `#[ignore]`d unless run
//! with `--include-ignored`, as `scripts/test` does); the plain-process run checks what an
//! agent without a sandbox does with layers and extensions.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use fleetfn_agent::{Agent, RuntimeProvider, RuntimeProviderConfig};
use fleetfn_artifacts::{ArtifactStore, Digest};
use fleetfn_proto::{
    AgentClient, EnvState, EnvironmentRequest, EnvironmentStatus, InvokeReply, LayerPackage,
};
use serde_json::{Value, json};

const TOKEN: &str = "test-token";

const BOOTSTRAP: &str = r#"#!/bin/sh
set -e
date +%s%N > /tmp/runtime-start
if [ "$EXT_MODE" = telemetry_lines ]; then echo "bootstrap: a function line"; fi
tool > /tmp/tool-out
exec ./testfn
"#;

/// The bootstrap without a sandbox: no shared private `/tmp`, so it only runs the tool.
const PLAIN_BOOTSTRAP: &str = r#"#!/bin/sh
set -e
tool > "$TMPDIR/tool-out"
exec ./testfn
"#;

const EXTENSION: &str = r#"#!/usr/bin/python3
import json, os, sys, threading, time, urllib.request

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
NAME = os.path.basename(sys.argv[0])
MODE = os.environ.get("EXT_MODE", "normal")


def call(method, path, body=None, headers=None):
    req = urllib.request.Request(
        f"http://{API}{path}", data=body, method=method, headers=headers or {}
    )
    with urllib.request.urlopen(req) as r:
        return r.headers, r.read()


if MODE == "crash_init":
    print(f"{NAME}: crashing at init", flush=True)
    sys.exit(2)
# Late on purpose: the runtime must not start before this extension registered.
time.sleep(1)
with open(f"/tmp/ext-register-sent", "w") as f:
    f.write(str(time.time_ns()))
headers, body = call(
    "POST",
    "/2020-01-01/extension/register",
    json.dumps({"events": ["SHUTDOWN"]}).encode(),
    {"Lambda-Extension-Name": NAME, "Content-Type": "application/json"},
)
eid = headers.get("Lambda-Extension-Identifier")
print(f"{NAME}: registered for {json.loads(body)['functionName']}", flush=True)
if MODE == "init_error":
    call(
        "POST",
        "/2020-01-01/extension/init/error",
        json.dumps({"errorMessage": "bad config", "errorType": "Extension.ConfigInvalid"}).encode(),
        {"Lambda-Extension-Identifier": eid, "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"},
    )
    time.sleep(60)
if MODE in ("telemetry", "telemetry_lines"):
    import http.server

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            batch = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            for event in batch:
                record = event["record"]
                if event["type"] in ("function", "extension"):
                    # What this prints comes back as extension records: not printed again.
                    if not str(record).startswith("TELEMETRY"):
                        print(f"TELEMETRY {event['type']} {record}", flush=True)
                    continue
                rid = record.get("requestId", "") if isinstance(record, dict) else ""
                print(f"TELEMETRY {event['type']} {rid}".rstrip(), flush=True)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 4243), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    call(
        "PUT",
        "/2022-07-01/telemetry",
        json.dumps({
            "schemaVersion": "2025-01-29",
            "types": ["platform", "function", "extension"] if MODE == "telemetry_lines" else ["platform"],
            "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
            "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243"},
        }).encode(),
        {"Lambda-Extension-Identifier": eid, "Content-Type": "application/json"},
    )
# Late too: the environment must not be ready before this extension polls its first event.
time.sleep(0.5)
with open("/tmp/ext-polling", "w") as f:
    f.write("yes")
if MODE == "crash_later":
    def watch():
        while not os.path.exists("/tmp/crash-now"):
            time.sleep(0.02)
        print(f"{NAME}: crashing now", flush=True)
        os._exit(3)
    threading.Thread(target=watch, daemon=True).start()
while True:
    _, body = call(
        "GET", "/2020-01-01/extension/event/next", None, {"Lambda-Extension-Identifier": eid}
    )
    event = json.loads(body)
    print(f"{NAME}: event {event['eventType']} {event.get('shutdownReason', '')}", flush=True)
    if event["eventType"] == "SHUTDOWN":
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

/// An agent serving its API on loopback, with the code and both layers in its store.
struct Harness {
    _dir: tempfile::TempDir,
    agent: Agent,
    client: AgentClient,
    logs: std::path::PathBuf,
    code: Digest,
    plain_code: Digest,
    tools: LayerPackage,
    extension: LayerPackage,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(sandboxed: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let testfn = std::fs::read(testfn_binary()).unwrap();
        let code = store
            .put(&zip_of(&[
                ("bootstrap", BOOTSTRAP.as_bytes(), 0o755),
                ("testfn", &testfn, 0o755),
            ]))
            .unwrap();
        let plain_code = store
            .put(&zip_of(&[
                ("bootstrap", PLAIN_BOOTSTRAP.as_bytes(), 0o755),
                ("testfn", &testfn, 0o755),
            ]))
            .unwrap();
        let layer = |n: u32, bytes: Vec<u8>| {
            let d = store.put(&bytes).unwrap();
            LayerPackage {
                arn: format!("arn:aws:lambda:us-east-1:123456789012:layer:l{n}:1"),
                sha256_hex: d.hex(),
                size: d.size(),
            }
        };
        let tools = layer(
            1,
            zip_of(&[
                ("bin/tool", b"#!/bin/sh\necho tool-v1\n", 0o755),
                ("python/mod.py", b"VALUE = 1\n", 0o644),
            ]),
        );
        let extension = layer(
            2,
            zip_of(&[
                ("bin/tool", b"#!/bin/sh\necho tool-v2\n", 0o755),
                ("extensions/pyext", EXTENSION.as_bytes(), 0o755),
            ]),
        );
        let mut provider = RuntimeProvider::detect(RuntimeProviderConfig::new(
            dir.path().join("rt"),
            dir.path().join("envs"),
        ));
        let mut isolation = "none (plain child processes)".to_owned();
        if sandboxed {
            let iso = sandbox::host();
            isolation = iso.to_string();
            let net = fleetfn_agent::NetworkConfig {
                isolation: fleetfn_sandbox::net::probe(iso.root, false),
                dns: Vec::new(),
                leases: fleetfn_sandbox::LeaseDir::new(fleetfn_sandbox::DEFAULT_LEASE_DIR),
            };
            provider = provider.with_launcher(Arc::new(fleetfn_agent::SandboxLauncher::new(
                sandbox_helper_binary().to_path_buf(),
                iso,
                None,
                net,
            )));
        }
        let logs = dir.path().join("logs");
        let (agent, client, server) = serve_agent(dir.path(), isolation, provider, TOKEN).await;
        Self {
            _dir: dir,
            agent,
            client,
            logs,
            code,
            plain_code,
            tools,
            extension,
            server,
        }
    }

    async fn put(&self, env_id: &str, code: &Digest, layers: Vec<LayerPackage>, mode: &str) {
        let req = EnvironmentRequest {
            function_name: "layered".into(),
            version: "1".into(),
            qualified_arn: "arn:aws:lambda:us-east-1:123456789012:function:layered:1".into(),
            runtime: "provided.al2023".into(),
            handler: None,
            code_sha256_hex: code.hex(),
            code_size: code.size(),
            memory_mb: 512,
            timeout_secs: 10,
            max_concurrency: 4,
            vcpus: 1.0,
            ephemeral_storage_mb: 512,
            region: "us-east-1".into(),
            env_vars: BTreeMap::from([("EXT_MODE".to_owned(), mode.to_owned())]),
            placement: None,
            credentials: None,
            layers,
        };
        self.client.put_environment(env_id, &req).await.unwrap();
    }

    /// Long-polls reports until `pred` holds for the environment.
    async fn wait_for(
        &self,
        env_id: &str,
        what: &str,
        pred: impl Fn(&EnvironmentStatus) -> bool,
    ) -> EnvironmentStatus {
        wait_for_env(&self.client, env_id, what, pred).await
    }

    async fn ready(&self, env_id: &str) {
        wait_env_ready(&self.client, env_id).await;
    }

    async fn failed(&self, env_id: &str) -> fleetfn_proto::Failure {
        let e = self
            .wait_for(env_id, "failed", |e| {
                matches!(e.state, EnvState::Failed | EnvState::Exited)
            })
            .await;
        assert_eq!(e.state, EnvState::Failed, "{e:?}");
        e.failure.expect("a failed environment says why")
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

    /// The function's answer, which must be a success.
    async fn call(&self, env_id: &str, request_id: &str, event: &Value) -> Value {
        match self.invoke(env_id, request_id, event).await {
            InvokeReply::Done {
                payload,
                function_error: None,
            } => serde_json::from_slice(&payload).unwrap(),
            other => panic!("{request_id}: {other:?}"),
        }
    }

    /// The messages of the version's log so far.
    fn log_messages(&self) -> Vec<String> {
        log_records(&self.logs.join("layered").join("1"))
            .iter()
            .filter_map(|r| r["message"].as_str().map(str::to_owned))
            .collect()
    }

    async fn stop(self) {
        self.agent.stop_all(Duration::from_secs(2)).await;
        self.server.abort();
    }
}

/// Without a sandbox the layers are a host directory the paths name; extensions cannot run
/// (no network of their own for their fixed ports), so a function with one fails to start,
/// saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_processes_get_layers_on_their_paths_and_refuse_extensions() {
    let h = Harness::start(false).await;
    h.put("tools", &h.plain_code, vec![h.tools.clone()], "normal")
        .await;
    h.put(
        "with-ext",
        &h.plain_code,
        vec![h.tools.clone(), h.extension.clone()],
        "normal",
    )
    .await;
    h.ready("tools").await;
    let env = h.call("tools", "env-1", &json!({"op": "env"})).await;
    let task_root = env["env"]["LAMBDA_TASK_ROOT"].as_str().unwrap().to_owned();
    assert!(!task_root.starts_with("/var/task"), "{env}");
    let f = h.failed("with-ext").await;
    assert_eq!(f.reason_code, "FunctionError.ExtensionInitError", "{f:?}");
    assert!(f.reason.contains("pyext"), "{f:?}");
    assert!(f.reason.contains("sandbox"), "{f:?}");
    h.stop().await;
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

mod needs_root {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    async fn layers_at_opt_and_an_extension_that_starts_first_and_gets_shutdown() {
        let h = Harness::start(true).await;
        h.put(
            "ext",
            &h.code,
            vec![h.tools.clone(), h.extension.clone()],
            "normal",
        )
        .await;
        h.ready("ext").await;
        let probe = h
            .call(
                "ext",
                "probe-1",
                &json!({
                    "op": "probe",
                    "read": [
                        "/tmp/runtime-start",
                        "/tmp/ext-register-sent",
                        "/tmp/ext-polling",
                        "/tmp/tool-out",
                        "/opt/python/mod.py",
                    ],
                    "resolve": ["sandbox.localdomain", "sandbox"],
                }),
            )
            .await;
        // The runtime started after the extension's (late) registration, and the environment
        // was ready only once the extension polled its first event.
        let ns = |path: &str| -> u128 {
            let v = probe["read"][path].as_str().unwrap_or_default();
            v.strip_prefix("read:")
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("{path}: {probe}"))
        };
        assert!(
            ns("/tmp/runtime-start") > ns("/tmp/ext-register-sent"),
            "{probe}"
        );
        assert_eq!(probe["read"]["/tmp/ext-polling"], "read:yes", "{probe}");
        // The later layer's file replaced the earlier one's; /opt/bin is on PATH.
        assert_eq!(probe["read"]["/tmp/tool-out"], "read:tool-v2\n", "{probe}");
        assert_eq!(
            probe["read"]["/opt/python/mod.py"], "read:VALUE = 1\n",
            "{probe}"
        );
        assert_eq!(probe["resolve"]["sandbox.localdomain"], "127.0.0.1");
        assert_eq!(probe["resolve"]["sandbox"], "127.0.0.1");
        let env = h.call("ext", "env-1", &json!({"op": "env"})).await;
        assert_eq!(env["env"]["LAMBDA_TASK_ROOT"], "/var/task", "{env}");
        assert!(
            !env["env"]["LAMBDA_RUNTIME_DIR"]
                .as_str()
                .unwrap()
                .starts_with("/opt"),
            "{env}"
        );

        // Stop: the extension gets SHUTDOWN (spindown) before the runtime goes.
        h.agent.stop_all(Duration::from_secs(2)).await;
        let messages = h.log_messages();
        assert!(
            messages
                .iter()
                .any(|m| m == "pyext: registered for layered"),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.trim_end() == "pyext: event SHUTDOWN spindown"),
            "{messages:?}"
        );
        h.stop().await;
    }

    /// A Telemetry API subscriber (platform events, over HTTP to `sandbox.localdomain`) gets
    /// the init records kept from before it subscribed and every invoke's records.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    async fn a_telemetry_subscriber_gets_init_and_invoke_records() {
        let h = Harness::start(true).await;
        h.put(
            "tel",
            &h.code,
            vec![h.tools.clone(), h.extension.clone()],
            "telemetry",
        )
        .await;
        h.ready("tel").await;
        let ids: Vec<String> = (0..5).map(|i| format!("tel-{i}")).collect();
        for id in &ids {
            h.call("tel", id, &json!({"op": "echo"})).await;
        }
        // Stopping flushes telemetry before the extension's SHUTDOWN.
        h.agent.stop_all(Duration::from_secs(2)).await;
        let messages = h.log_messages();
        let got = |line: &str| messages.iter().any(|m| m.trim_end() == line);
        for line in [
            "TELEMETRY platform.initStart",
            "TELEMETRY platform.initRuntimeDone",
            "TELEMETRY platform.initReport",
            "TELEMETRY platform.extension",
        ] {
            assert!(got(line), "{line} missing: {messages:?}");
        }
        for id in &ids {
            for kind in ["platform.start", "platform.report"] {
                let line = format!("TELEMETRY {kind} {id}");
                assert!(got(&line), "{line} missing: {messages:?}");
            }
        }
        h.stop().await;
    }

    /// Extensions write on their own pipes: a subscriber to `function` and `extension` gets the
    /// extension's line as an `extension` record and the function's as a `function` one, and
    /// the function's log has the extension's line without a request id.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    async fn extension_lines_are_extension_records_and_function_lines_function_records() {
        let h = Harness::start(true).await;
        h.put(
            "lines",
            &h.code,
            vec![h.tools.clone(), h.extension.clone()],
            "telemetry_lines",
        )
        .await;
        h.ready("lines").await;
        h.call("lines", "lines-0", &json!({"op": "echo"})).await;
        h.agent.stop_all(Duration::from_secs(2)).await;
        let messages = h.log_messages();
        let got = |line: &str| messages.iter().any(|m| m.trim_end() == line);
        for line in [
            "TELEMETRY extension pyext: registered for layered",
            "TELEMETRY function bootstrap: a function line",
        ] {
            assert!(got(line), "{line} missing: {messages:?}");
        }
        for line in [
            "TELEMETRY function pyext: registered for layered",
            "TELEMETRY extension bootstrap: a function line",
        ] {
            assert!(!got(line), "{line} is the other kind: {messages:?}");
        }
        let records = log_records(&h.logs.join("layered").join("1"));
        let line_record = |message: &str| {
            records
                .iter()
                .find(|r| r["message"] == message)
                .unwrap_or_else(|| panic!("no {message:?} record: {records:?}"))
                .clone()
        };
        let ext = line_record("pyext: registered for layered");
        assert_eq!(ext["stream"], "extension", "{ext}");
        assert!(ext.get("requestId").is_none(), "{ext}");
        assert_eq!(
            line_record("bootstrap: a function line")["stream"],
            "stdout"
        );
        h.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    async fn an_extension_that_fails_init_fails_the_environment() {
        let h = Harness::start(true).await;
        let layers = vec![h.tools.clone(), h.extension.clone()];
        h.put("crash", &h.code, layers.clone(), "crash_init").await;
        h.put("init-error", &h.code, layers, "init_error").await;
        let f = h.failed("crash").await;
        assert_eq!(f.reason_code, "FunctionError.ExtensionInitError", "{f:?}");
        assert!(f.reason.starts_with("Extension.Crash: "), "{f:?}");
        assert!(f.reason.contains("pyext"), "{f:?}");
        assert!(f.reason.contains("exit code 2"), "{f:?}");
        let f = h.failed("init-error").await;
        assert_eq!(f.reason_code, "FunctionError.ExtensionInitError", "{f:?}");
        assert!(f.reason.contains("Extension.ConfigInvalid"), "{f:?}");
        assert!(f.reason.contains("bad config"), "{f:?}");
        h.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    async fn an_extension_crash_fails_the_invokes_in_flight_and_ends_the_environment() {
        let h = Arc::new(Harness::start(true).await);
        h.put(
            "later",
            &h.code,
            vec![h.tools.clone(), h.extension.clone()],
            "crash_later",
        )
        .await;
        h.ready("later").await;
        let slow = {
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                h.invoke("later", "slow-1", &json!({"op": "sleep", "ms": 8000}))
                    .await
            })
        };
        // In-flight counts do not move the report's revision: asked until it shows.
        guarded("the slow invoke in flight", async {
            loop {
                let r = h.client.report(None, Duration::ZERO).await.unwrap();
                if r.environments
                    .iter()
                    .any(|e| e.env_id == "later" && e.in_flight >= 1)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        // The function creates the file the extension watches for; the extension exits.
        let _ = h
            .invoke(
                "later",
                "trigger-1",
                &json!({"op": "probe", "tmp_token": "crash-now"}),
            )
            .await;
        match guarded("the slow invoke", slow).await.unwrap() {
            InvokeReply::Done {
                payload,
                function_error: Some(fe),
            } => {
                assert_eq!(fe, "Unhandled");
                let doc: Value = serde_json::from_slice(&payload).unwrap();
                assert_eq!(doc["errorType"], "Extension.Crash", "{doc}");
                let message = doc["errorMessage"].as_str().unwrap();
                assert!(
                    message.starts_with("RequestId: slow-1 Error: Extension pyext exited"),
                    "{doc}"
                );
            }
            other => panic!("the in-flight invoke must fail with the crash: {other:?}"),
        }
        let e = h
            .wait_for("later", "exited", |e| e.state == EnvState::Exited)
            .await;
        let f = e.failure.unwrap();
        assert_eq!(f.reason_code, "Extension.Crash", "{f:?}");
        let h = Arc::into_inner(h).unwrap();
        h.stop().await;
    }
}
