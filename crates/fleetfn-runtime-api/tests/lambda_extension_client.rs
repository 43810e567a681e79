//! The Rust `lambda-extension` crate, unchanged, as an extension process of this endpoint: it
//! registers (SHUTDOWN only, as Lambda Managed Instances requires), subscribes its telemetry
//! processor during init, receives the records it subscribed to in order, and handles SHUTDOWN.
//!
//! The extension is this test binary run again as a child process (test `child_extension`,
//! inert unless `FLEETFN_EXTENSION_CHILD_PORT` is set): it finds the endpoint through
//! `AWS_LAMBDA_RUNTIME_API` like a real extension, and reports what it received on stdout, one
//! `@@ `-prefixed line per event or record.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use fleetfn_runtime_api::{
    ExtensionContext, InitPhase, InitStart, LogLine, PlatformEvent, Report, ReportMetrics,
    RuntimeApi, RuntimeApiConfig, ShutdownReason, Start, Status, TelemetryRecord,
};
use lambda_extension::{
    Error, Extension, LambdaEvent, LambdaTelemetry, LambdaTelemetryRecord, NextEvent,
    SharedService, service_fn,
};
use tokio::io::{AsyncBufReadExt, BufReader};

const GUARD: Duration = Duration::from_secs(60);
const CHILD_PORT: &str = "FLEETFN_EXTENSION_CHILD_PORT";

async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn report(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@@ {line}");
    let _ = out.flush();
}

/// The extension process (see the module docs).
#[tokio::test]
async fn child_extension() {
    let Some(port) = std::env::var(CHILD_PORT)
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
    else {
        return;
    };
    let on_event = service_fn(|e: LambdaEvent| async move {
        match e.next {
            NextEvent::Shutdown(s) => {
                report(format!("SHUTDOWN {} {}", s.shutdown_reason, s.deadline_ms))
            }
            NextEvent::Invoke(i) => report(format!("INVOKE {}", i.request_id)),
        }
        Ok::<(), Error>(())
    });
    let on_telemetry = SharedService::new(service_fn(|batch: Vec<LambdaTelemetry>| async move {
        for t in batch {
            report(match t.record {
                LambdaTelemetryRecord::PlatformInitStart { .. } => "initStart".to_owned(),
                LambdaTelemetryRecord::PlatformTelemetrySubscription { name, .. } => {
                    format!("subscription {name}")
                }
                LambdaTelemetryRecord::PlatformStart { request_id, .. } => {
                    format!("start {request_id}")
                }
                LambdaTelemetryRecord::Function(line) => line,
                LambdaTelemetryRecord::PlatformReport {
                    request_id,
                    metrics,
                    ..
                } => format!("report {request_id} {}", metrics.memory_size_mb),
                other => format!("{other:?}"),
            });
        }
        Ok::<(), Error>(())
    }));
    let res = Extension::new()
        .with_extension_name("rust-ext")
        .with_events(&["SHUTDOWN"])
        .with_events_processor(on_event)
        .with_telemetry_types(&["platform", "function"])
        .with_telemetry_processor(on_telemetry)
        .with_telemetry_port_number(port)
        .run()
        .await;
    report(format!("EXIT {res:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_extension_crate_registers_subscribes_and_shuts_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = RuntimeApi::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        RuntimeApiConfig::default(),
    )
    .expect("bind");
    run(api, port).await;
}

async fn run(api: RuntimeApi, port: u16) {
    api.set_extension_context(ExtensionContext {
        function_name: "fn".into(),
        function_version: "7".into(),
        handler: "bootstrap".into(),
        account_id: Some("123456789012".into()),
    });
    api.expect_extensions(vec!["rust-ext".into()]);
    api.telemetry()
        .emit(TelemetryRecord::Platform(PlatformEvent::InitStart(
            InitStart {
                phase: InitPhase::Init,
                runtime_version: None,
                runtime_version_arn: None,
                function_name: "fn".into(),
                function_version: "7".into(),
                instance_id: "env".into(),
                instance_max_memory: 1 << 30,
                tracing: None,
            },
        )));

    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_extension",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AWS_LAMBDA_RUNTIME_API", api.local_addr().to_string())
        .env(CHILD_PORT, port.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("extension process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_report = async move || loop {
        let line = guarded("the extension's output", lines.next_line())
            .await
            .unwrap()
            .expect("the extension exited");
        // (libtest's "test child_extension ... " may precede the first one on its line.)
        if let Some(at) = line.find("@@ ") {
            return line[at + 3..].to_owned();
        }
    };

    guarded("extension ready", api.extensions_ready())
        .await
        .expect("ready");
    api.finish_init();
    assert_eq!(api.telemetry().subscribers(), 1);

    let t = api.telemetry();
    for i in 0..16 {
        let id = format!("req-{i}");
        t.emit(TelemetryRecord::Platform(PlatformEvent::Start(Start {
            request_id: id.clone(),
            version: Some("7".into()),
            function_arn: None,
            tracing: None,
        })));
        t.emit(TelemetryRecord::Function(LogLine::Text(format!(
            "hello from {id}"
        ))));
        t.emit(TelemetryRecord::Platform(PlatformEvent::Report(Report {
            request_id: id,
            status: Status::Success,
            error_type: None,
            metrics: ReportMetrics {
                duration_ms: 1.5,
                memory_size_mb: Some(2048),
                ..ReportMetrics::default()
            },
            spans: Vec::new(),
            tracing: None,
        })));
    }

    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("report req-15 2048") {
        got.push(next_report().await);
    }
    // Init events first (it subscribed during init), then every invoke in order.
    let mut expected = vec!["initStart".to_owned(), "subscription rust-ext".to_owned()];
    for i in 0..16 {
        expected.push(format!("start req-{i}"));
        expected.push(format!("hello from req-{i}"));
        expected.push(format!("report req-{i} 2048"));
    }
    assert_eq!(got, expected);

    guarded("flush", api.telemetry().flush()).await;
    api.shutdown_extensions(ShutdownReason::Spindown, 1_900_000_000_000);
    assert_eq!(next_report().await, "SHUTDOWN spindown 1900000000000");
    guarded("extension done", api.extensions_shut_down()).await;
    let _ = child.kill().await;
}
