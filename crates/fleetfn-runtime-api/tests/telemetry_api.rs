//! The Telemetry API over real loopback HTTP: subscription validation, the init-phase buffer,
//! batching, ordering, bounded memory for slow subscribers, HTTP and TCP destinations, and the
//! records as the unchanged `lambda-extension` crate parses them.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fleetfn_runtime_api::{
    ExtensionContext, HDR_EXTENSION_ID, InitPhase, InitStart, LogLine, PlatformEvent, Report,
    ReportMetrics, RuntimeApi, RuntimeApiConfig, RuntimeDone, RuntimeDoneMetrics, Span, Start,
    Status, TelemetryRecord, TraceContext,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

/// Safety net only (virtual time under a paused clock, hence long).
const GUARD: Duration = Duration::from_secs(300);

async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// One delivered event, its record kept as the free-form JSON it is.
#[derive(Debug, Deserialize)]
struct Event {
    time: String,
    #[serde(rename = "type")]
    kind: String,
    record: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorDoc {
    error_message: String,
    error_type: String,
}

struct Env {
    api: RuntimeApi,
    client: Client<HttpConnector, Full<Bytes>>,
    id: String,
}

impl Env {
    /// An endpoint with one registered external extension `ext`.
    async fn start() -> Env {
        let api = RuntimeApi::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            RuntimeApiConfig::default(),
        )
        .expect("bind");
        api.set_extension_context(ExtensionContext {
            function_name: "f".into(),
            function_version: "1".into(),
            handler: "h".into(),
            account_id: None,
        });
        api.expect_extensions(vec!["ext".into()]);
        let client = Client::builder(TokioExecutor::new()).build_http();
        let mut env = Env {
            api,
            client,
            id: String::new(),
        };
        let (status, headers, _) = env
            .request(
                Method::POST,
                "/2020-01-01/extension/register",
                &[("Lambda-Extension-Name", "ext")],
                r#"{"events":["SHUTDOWN"]}"#.to_owned(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        env.id = headers[HDR_EXTENSION_ID].to_str().unwrap().to_owned();
        env
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.api.local_addr()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("HTTP request");
        let status = resp.status();
        let headers = resp.headers().clone();
        (
            status,
            headers,
            resp.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    async fn subscribe(&self, body: String) -> (StatusCode, Bytes) {
        let (status, _, body) = self
            .request(
                Method::PUT,
                "/2022-07-01/telemetry",
                &[
                    ("Lambda-Extension-Identifier", &self.id),
                    ("Content-Type", "application/json"),
                ],
                body,
            )
            .await;
        (status, body)
    }

    async fn subscribe_ok(&self, body: String) {
        let (status, body) = self.subscribe(body).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(&body[..], b"\"OK\"");
    }

    fn line(&self, text: &str) {
        self.api
            .telemetry()
            .emit(TelemetryRecord::Function(LogLine::Text(text.to_owned())));
    }
}

fn subscription(version: &str, types: &[&str], buffering: &str, uri: &str) -> String {
    let types = serde_json::to_string(types).unwrap();
    format!(
        r#"{{"schemaVersion":"{version}","types":{types},"buffering":{buffering},"destination":{{"protocol":"HTTP","URI":"{uri}"}}}}"#
    )
}

/// One POST the sink received.
struct Batch {
    path: String,
    host: String,
    body: Bytes,
}

impl Batch {
    fn events(&self) -> Vec<Event> {
        serde_json::from_slice(&self.body).expect("a JSON array of events")
    }
}

/// An HTTP telemetry listener. With `gate`, each answer waits for a permit.
struct Sink {
    port: u16,
    rx: mpsc::UnboundedReceiver<Batch>,
    gate: Option<Arc<Semaphore>>,
}

impl Sink {
    async fn start(gated: bool) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        let gate = gated.then(|| Arc::new(Semaphore::new(0)));
        let g = gate.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let g = g.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        let g = g.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let host = req
                                .headers()
                                .get(http::header::HOST)
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let _ = tx.send(Batch { path, host, body });
                            if let Some(g) = g {
                                g.acquire().await.unwrap().forget();
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Sink { port, rx, gate }
    }

    fn uri(&self) -> String {
        format!("http://sandbox.localdomain:{}/telemetry", self.port)
    }

    async fn batch(&mut self) -> Batch {
        guarded("a telemetry batch", self.rx.recv())
            .await
            .expect("sink alive")
    }

    /// Receives until `n` events arrived; returns them in arrival order.
    async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut all = Vec::new();
        while all.len() < n {
            all.extend(self.batch().await.events());
        }
        assert_eq!(all.len(), n, "more events than expected");
        all
    }
}

fn function_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == "function")
        .map(|e| e.record.as_str().expect("a text line").to_owned())
        .collect()
}

fn init_start() -> TelemetryRecord {
    TelemetryRecord::Platform(PlatformEvent::InitStart(InitStart {
        phase: InitPhase::Init,
        runtime_version: Some("python:3.13.v1".into()),
        runtime_version_arn: None,
        function_name: "f".into(),
        function_version: "1".into(),
        instance_id: "env-1".into(),
        instance_max_memory: 2048 * 1024 * 1024,
        tracing: None,
    }))
}

#[tokio::test]
async fn subscriptions_are_validated_like_aws() {
    let env = Env::start().await;
    let valid = subscription(
        "2025-01-29",
        &["platform"],
        r#"{"timeoutMs":100}"#,
        "http://sandbox.localdomain:8080",
    );

    // Identity first.
    let (status, _, body) = env
        .request(Method::PUT, "/2022-07-01/telemetry", &[], valid.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let doc: ErrorDoc = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc.error_type, "Extension.MissingExtensionIdentifier");
    let other = uuid::Uuid::new_v4().to_string();
    let (status, _, body) = env
        .request(
            Method::PUT,
            "/2022-07-01/telemetry",
            &[("Lambda-Extension-Identifier", &other)],
            valid.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let doc: ErrorDoc = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc.error_type, "Extension.UnknownExtensionIdentifier");

    let cases: &[(&str, &[&str])] = &[
        ("{", &["Invalid JSON"]),
        (
            "{}",
            &[
                "schemaVersion is required",
                "types should not be empty",
                "destination is required",
            ],
        ),
        (
            r#"{"schemaVersion":"2021-03-18","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}"#,
            &["schemaVersion \"2021-03-18\" is not supported"],
        ),
        (
            r#"{"schemaVersion":"2025-01-29","types":["logs"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}"#,
            &["\"logs\" is not a telemetry type"],
        ),
        (
            r#"{"schemaVersion":"2025-01-29","types":["platform"],"buffering":{"maxItems":10,"maxBytes":1,"timeoutMs":24},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}"#,
            &[
                "buffering.maxItems must be between 1000 and 10000 (got 10)",
                "buffering.maxBytes must be between 262144 and 1048576 (got 1)",
                "buffering.timeoutMs must be between 25 and 30000 (got 24)",
            ],
        ),
        (
            r#"{"schemaVersion":"2025-01-29","types":["platform"],"buffering":{"maxItems":10001,"maxBytes":1048577,"timeoutMs":30001},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1"}}"#,
            &["(got 10001)", "(got 1048577)", "(got 30001)"],
        ),
        (
            r#"{"schemaVersion":"2025-01-29","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://example.com:8080"}}"#,
            &["host must be sandbox.localdomain"],
        ),
        (
            r#"{"schemaVersion":"2025-01-29","types":[],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain"}}"#,
            &["URI port is not provided", "types should not be empty"],
        ),
        (
            r#"{"schemaVersion":"2025-01-29","types":["platform"],"destination":{"protocol":"UDP","port":9}}"#,
            &["destination.protocol \"UDP\" is not supported"],
        ),
        (
            r#"{"schemaVersion":"2025-01-29","types":["platform"],"destination":{"protocol":"TCP"}}"#,
            &["destination.port is required"],
        ),
        (
            r#"{"schemaVersion":"2025-01-29","types":["platform"],"destination":{"protocol":"TCP","port":70000}}"#,
            &["destination.port must be between 1 and 65535"],
        ),
    ];
    for (body, expected) in cases {
        let (status, reply) = env.subscribe((*body).to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let doc: ErrorDoc = serde_json::from_slice(&reply).unwrap();
        assert_eq!(doc.error_type, "ValidationError");
        for e in *expected {
            assert!(
                doc.error_message.contains(e),
                "{body}: {}",
                doc.error_message
            );
        }
    }

    env.subscribe_ok(valid.clone()).await;
    // Subscribing again replaces the subscription.
    env.subscribe_ok(valid.clone()).await;
    assert_eq!(env.api.telemetry().subscribers(), 1);
    assert_eq!(env.api.telemetry().subscriptions()[0].name, "ext");

    env.api.finish_init();
    let (status, reply) = env.subscribe(valid).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let doc: ErrorDoc = serde_json::from_slice(&reply).unwrap();
    assert_eq!(doc.error_type, "Telemetry.SubscriptionClosed");
}

#[tokio::test]
async fn emit_is_inert_once_init_ended_without_subscribers() {
    let env = Env::start().await;
    // During init everything is kept for late subscribers.
    assert!(env.api.telemetry().is_active());
    env.api.finish_init();
    assert!(!env.api.telemetry().is_active());
    env.line("nobody listens");
}

#[tokio::test]
async fn a_subscriber_during_init_gets_the_init_events_first_then_live_events_in_order() {
    let env = Env::start().await;
    let mut sink = Sink::start(false).await;
    env.api.telemetry().emit(init_start());
    env.line("init line");
    env.api.telemetry().emit(TelemetryRecord::Extension {
        name: "other".into(),
        line: LogLine::Text("extension line".into()),
    });

    env.subscribe_ok(subscription(
        "2025-01-29",
        &["platform", "function"],
        r#"{"timeoutMs":25}"#,
        &sink.uri(),
    ))
    .await;
    let first = sink.events(3).await;
    let kinds: Vec<_> = first.iter().map(|e| e.kind.as_str()).collect();
    // The extension line is not of a subscribed type.
    assert_eq!(
        kinds,
        [
            "platform.initStart",
            "function",
            "platform.telemetrySubscription"
        ]
    );
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InitStartRecord {
        initialization_type: String,
        phase: String,
        function_name: String,
        instance_max_memory: u64,
    }
    let rec: InitStartRecord = serde_json::from_value(first[0].record.clone()).unwrap();
    assert_eq!(rec.initialization_type, "lambda-managed-instances");
    assert_eq!(rec.phase, "init");
    assert_eq!(rec.function_name, "f");
    assert_eq!(rec.instance_max_memory, 2048 * 1024 * 1024);
    assert_eq!(first[0].time.len(), "2026-12-04T19:22:06.123Z".len());
    assert!(first[0].time.ends_with('Z'));
    #[derive(Deserialize)]
    struct SubscriptionRecord {
        name: String,
        state: String,
        types: Vec<String>,
    }
    let rec: SubscriptionRecord = serde_json::from_value(first[2].record.clone()).unwrap();
    assert_eq!(
        (rec.name.as_str(), rec.state.as_str(), rec.types),
        (
            "ext",
            "Subscribed",
            vec!["platform".to_owned(), "function".to_owned()]
        )
    );

    for i in 0..500 {
        env.line(&format!("line {i}"));
    }
    let lines = function_lines(&sink.events(500).await);
    let expected: Vec<_> = (0..500).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected);

    // Init over: still delivered to the subscriber; later subscriptions are refused.
    env.api.finish_init();
    assert!(env.api.telemetry().is_active());
    env.line("after init");
    assert_eq!(function_lines(&sink.events(1).await), ["after init"]);
}

#[tokio::test(start_paused = true)]
async fn batches_go_out_at_max_items_or_after_timeout_ms() {
    let env = Env::start().await;
    let mut sink = Sink::start(false).await;
    env.subscribe_ok(subscription(
        "2025-01-29",
        &["function"],
        r#"{"maxItems":1000,"maxBytes":1048576,"timeoutMs":30000}"#,
        &sink.uri(),
    ))
    .await;
    let start = tokio::time::Instant::now();
    // (Emitted in steps: a burst beyond two full batches before the delivery task runs would be
    // dropped, see the slow-subscriber test.)
    for i in 0..1000 {
        env.line(&format!("l{i}"));
    }
    let b1 = sink.batch().await;
    for i in 1000..2500 {
        env.line(&format!("l{i}"));
    }
    let b2 = sink.batch().await;
    assert_eq!((b1.events().len(), b2.events().len()), (1000, 1000));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "full batches go at once"
    );
    assert_eq!(b1.path, "/telemetry");
    assert_eq!(b1.host, format!("sandbox.localdomain:{}", sink.port));
    let b3 = sink.batch().await;
    assert_eq!(b3.events().len(), 500);
    assert!(
        start.elapsed() >= Duration::from_secs(30),
        "a partial batch waits for timeoutMs ({:?})",
        start.elapsed()
    );
    let all: Vec<_> = [b1, b2, b3].iter().flat_map(|b| b.events()).collect();
    let expected: Vec<_> = (0..2500).map(|i| format!("l{i}")).collect();
    assert_eq!(function_lines(&all), expected);
}

#[tokio::test(start_paused = true)]
async fn batches_go_out_at_max_bytes() {
    let env = Env::start().await;
    let mut sink = Sink::start(false).await;
    env.subscribe_ok(subscription(
        "2025-01-29",
        &["function"],
        r#"{"maxItems":10000,"maxBytes":262144,"timeoutMs":30000}"#,
        &sink.uri(),
    ))
    .await;
    let start = tokio::time::Instant::now();
    let big = "x".repeat(10 * 1024);
    for _ in 0..30 {
        env.line(&big);
    }
    let b1 = sink.batch().await;
    assert!(start.elapsed() < Duration::from_secs(30));
    // Events of ~10 KiB: the batch closes with the event that reaches 256 KiB.
    assert_eq!(b1.events().len(), 26);
    assert_eq!(sink.batch().await.events().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn flush_sends_a_partial_batch_now() {
    let env = Env::start().await;
    let mut sink = Sink::start(false).await;
    env.subscribe_ok(subscription(
        "2025-01-29",
        &["function"],
        r#"{"timeoutMs":30000}"#,
        &sink.uri(),
    ))
    .await;
    let start = tokio::time::Instant::now();
    env.line("a");
    env.line("b");
    guarded("flush", env.api.telemetry().flush()).await;
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(function_lines(&sink.batch().await.events()), ["a", "b"]);
}

#[tokio::test]
async fn a_slow_subscriber_costs_bounded_memory_and_is_told_what_it_lost() {
    let env = Env::start().await;
    let mut sink = Sink::start(true).await;
    env.subscribe_ok(subscription(
        "2025-01-29",
        &["platform", "function"],
        r#"{"maxItems":1000,"timeoutMs":25}"#,
        &sink.uri(),
    ))
    .await;
    let gate = sink.gate.clone().unwrap();
    // The subscription record goes out alone and is held by the sink.
    assert_eq!(
        sink.batch().await.events()[0].kind,
        "platform.telemetrySubscription"
    );
    // One batch in flight (held), then room for two full batches; the rest is dropped.
    for i in 0..5000 {
        env.line(&format!("l{i}"));
    }
    gate.add_permits(1000);
    let mut lines = Vec::new();
    let mut dropped = None;
    while dropped.is_none() {
        for e in sink.batch().await.events() {
            match e.kind.as_str() {
                "function" => lines.push(e.record.as_str().unwrap().to_owned()),
                "platform.logsDropped" => {
                    #[derive(Deserialize)]
                    #[serde(rename_all = "camelCase")]
                    struct Dropped {
                        reason: String,
                        dropped_records: u64,
                        dropped_bytes: u64,
                    }
                    let d: Dropped = serde_json::from_value(e.record).unwrap();
                    assert!(d.reason.contains("slower"), "{}", d.reason);
                    assert!(d.dropped_bytes > 0);
                    dropped = Some(d.dropped_records);
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(lines.len(), 2000);
    let expected: Vec<_> = (0..2000).map(|i| format!("l{i}")).collect();
    assert_eq!(lines, expected, "kept in order, newest dropped");
    assert_eq!(dropped, Some(3000));
}

#[tokio::test]
async fn a_failed_delivery_is_reported_and_the_next_batch_still_goes() {
    let env = Env::start().await;
    // Nothing listens on this port yet.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    env.subscribe_ok(subscription(
        "2025-01-29",
        &["platform", "function"],
        r#"{"timeoutMs":25}"#,
        &format!("http://sandbox:{port}/"),
    ))
    .await;
    env.line("lost");
    guarded("flush", env.api.telemetry().flush()).await;
    // Now listen there: the drop report and the next line arrive.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut sink = Sink::from_listener(listener);
    env.line("kept");
    let mut kinds = Vec::new();
    while !kinds.iter().any(|k: &String| k == "function") {
        for e in sink.batch().await.events() {
            if e.kind == "platform.logsDropped" {
                #[derive(Deserialize)]
                struct Dropped {
                    reason: String,
                }
                let d: Dropped = serde_json::from_value(e.record.clone()).unwrap();
                assert!(
                    d.reason.starts_with("could not send events"),
                    "{}",
                    d.reason
                );
            }
            if e.kind == "function" {
                assert_eq!(e.record.as_str(), Some("kept"));
            }
            kinds.push(e.kind);
        }
    }
    assert!(
        kinds.iter().any(|k| k == "platform.logsDropped"),
        "{kinds:?}"
    );
}

impl Sink {
    fn from_listener(listener: TcpListener) -> Sink {
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let _ = tx.send(Batch {
                                path,
                                host: String::new(),
                                body,
                            });
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Sink {
            port,
            rx,
            gate: None,
        }
    }
}

#[tokio::test]
async fn tcp_destinations_get_one_event_per_line() {
    let env = Env::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    env.subscribe_ok(format!(
        r#"{{"schemaVersion":"2025-01-29","types":["function"],"buffering":{{"timeoutMs":25}},"destination":{{"protocol":"TCP","port":{port}}}}}"#
    ))
    .await;
    env.line("one");
    env.line("two");
    let (stream, _) = guarded("connection", listener.accept()).await.unwrap();
    let mut lines = tokio::io::BufReader::new(stream).lines();
    let mut got = Vec::new();
    while got.len() < 2 {
        let line = guarded("line", lines.next_line()).await.unwrap().unwrap();
        let e: Event = serde_json::from_str(&line).unwrap();
        got.push(e.record.as_str().unwrap().to_owned());
    }
    assert_eq!(got, ["one", "two"]);
}

/// Every kind of record, emitted before a subscription of `version`; returns the events.
async fn all_records(version: &str) -> Vec<Bytes> {
    let env = Env::start().await;
    let mut sink = Sink::start(false).await;
    let t = env.api.telemetry();
    let trace = TraceContext::new("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1");
    t.emit(init_start());
    t.emit(TelemetryRecord::Platform(PlatformEvent::Start(Start {
        request_id: "r1".into(),
        version: Some("1".into()),
        function_arn: None,
        tracing: Some(trace.clone()),
    })));
    t.emit(TelemetryRecord::Function(LogLine::json(
        r#"{"level":"INFO","message":"hi"}"#.to_owned(),
    )));
    t.emit(TelemetryRecord::Function(LogLine::json(
        "plain text".to_owned(),
    )));
    t.emit(TelemetryRecord::Extension {
        name: "ext".into(),
        line: LogLine::Text("extension says".into()),
    });
    t.emit(TelemetryRecord::Platform(PlatformEvent::RuntimeDone(
        RuntimeDone {
            request_id: "r1".into(),
            status: Status::Success,
            error_type: None,
            metrics: Some(RuntimeDoneMetrics {
                duration_ms: 12.5,
                produced_bytes: 42,
            }),
            spans: vec![Span {
                name: "responseLatency".into(),
                start: SystemTime::now(),
                duration_ms: 3.0,
            }],
            tracing: Some(trace.clone()),
        },
    )));
    t.emit(TelemetryRecord::Platform(PlatformEvent::Report(Report {
        request_id: "r1".into(),
        status: Status::Error,
        error_type: Some("Unhandled".into()),
        metrics: ReportMetrics {
            duration_ms: 12.25,
            ..ReportMetrics::default()
        },
        spans: Vec::new(),
        tracing: Some(trace),
    })));
    t.emit(TelemetryRecord::Platform(PlatformEvent::Extension(
        fleetfn_runtime_api::ExtensionRecord {
            name: "ext".into(),
            state: "Ready".into(),
            events: vec!["SHUTDOWN".into()],
            error_type: None,
        },
    )));
    env.subscribe_ok(subscription(
        version,
        &["platform", "function", "extension"],
        r#"{"timeoutMs":25}"#,
        &sink.uri(),
    ))
    .await;
    let mut bodies = Vec::new();
    let mut n = 0;
    while n < 9 {
        let b = sink.batch().await;
        n += b.events().len();
        bodies.push(b.body);
    }
    assert_eq!(n, 9);
    bodies
}

#[tokio::test]
async fn legacy_schema_records_parse_with_the_lambda_extension_crate() {
    use lambda_extension::{InitType, LambdaTelemetry, LambdaTelemetryRecord};
    let mut records = Vec::new();
    for body in all_records("2022-07-01").await {
        let batch: Vec<LambdaTelemetry> = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        records.extend(batch.into_iter().map(|t| t.record));
    }
    assert!(matches!(
        &records[0],
        LambdaTelemetryRecord::PlatformInitStart {
            initialization_type: InitType::OnDemand,
            ..
        }
    ));
    assert!(
        matches!(&records[1], LambdaTelemetryRecord::PlatformStart { request_id, .. } if request_id == "r1")
    );
    // JSON log lines are text for them.
    assert!(
        matches!(&records[2], LambdaTelemetryRecord::Function(l) if l == r#"{"level":"INFO","message":"hi"}"#)
    );
    assert!(matches!(&records[3], LambdaTelemetryRecord::Function(l) if l == "plain text"));
    assert!(matches!(&records[4], LambdaTelemetryRecord::Extension(l) if l == "extension says"));
    match &records[5] {
        LambdaTelemetryRecord::PlatformRuntimeDone {
            request_id,
            metrics,
            spans,
            ..
        } => {
            assert_eq!(request_id, "r1");
            assert_eq!(metrics.as_ref().unwrap().produced_bytes, Some(42));
            assert_eq!(spans[0].name, "responseLatency");
        }
        other => panic!("{other:?}"),
    }
    match &records[6] {
        LambdaTelemetryRecord::PlatformReport {
            request_id,
            metrics,
            error_type,
            ..
        } => {
            assert_eq!(request_id, "r1");
            assert_eq!(error_type.as_deref(), Some("Unhandled"));
            assert_eq!(metrics.billed_duration_ms, 13);
            assert_eq!(metrics.duration_ms, 12.25);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&records[7], LambdaTelemetryRecord::PlatformExtension { name, .. } if name == "ext")
    );
    assert!(matches!(
        &records[8],
        LambdaTelemetryRecord::PlatformTelemetrySubscription { .. }
    ));
}

#[tokio::test]
async fn lmi_schema_records_carry_lmi_shapes() {
    let mut events = Vec::new();
    for body in all_records("2025-01-29").await {
        let batch: Vec<Event> = serde_json::from_slice(&body).unwrap();
        events.extend(batch);
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Init {
        initialization_type: String,
    }
    let init: Init = serde_json::from_value(events[0].record.clone()).unwrap();
    assert_eq!(init.initialization_type, "lambda-managed-instances");
    // A JSON log line is delivered as the object.
    #[derive(Deserialize)]
    struct Structured {
        level: String,
        message: String,
    }
    let s: Structured = serde_json::from_value(events[2].record.clone()).unwrap();
    assert_eq!((s.level.as_str(), s.message.as_str()), ("INFO", "hi"));
    assert_eq!(events[3].record.as_str(), Some("plain text"));
    // platform.report carries only what is known.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Metrics {
        duration_ms: f64,
    }
    #[derive(Deserialize)]
    struct ReportRecord {
        metrics: Metrics,
    }
    assert_eq!(events[6].kind, "platform.report");
    let r: ReportRecord = serde_json::from_value(events[6].record.clone()).unwrap();
    assert_eq!(r.metrics.duration_ms, 12.25);
}

/// Cost of the records of one invoke (`platform.start`, one function line, `platform.report`)
/// with one subscriber, and of `emit` with none. A measurement, not a check: run with
/// `cargo test --release -p fleetfn-runtime-api --test telemetry_api -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn emit_cost() {
    const INVOKES: u32 = 20_000;
    let records = |i: u32| {
        let id = format!("8476a536-e9f4-11e8-9739-{i:012}");
        [
            TelemetryRecord::Platform(PlatformEvent::Start(Start {
                request_id: id.clone(),
                version: Some("1".into()),
                function_arn: None,
                tracing: None,
            })),
            TelemetryRecord::Function(LogLine::Text(format!(
                "START handling {id} with a typical log line"
            ))),
            TelemetryRecord::Platform(PlatformEvent::Report(Report {
                request_id: id,
                status: Status::Success,
                error_type: None,
                metrics: ReportMetrics {
                    duration_ms: 1.234,
                    ..ReportMetrics::default()
                },
                spans: Vec::new(),
                tracing: None,
            })),
        ]
    };

    let idle = Env::start().await;
    idle.api.finish_init();
    let t0 = std::time::Instant::now();
    for i in 0..INVOKES {
        if idle.api.telemetry().is_active() {
            for r in records(i) {
                idle.api.telemetry().emit(r);
            }
        }
    }
    let per_idle = t0.elapsed() / INVOKES;

    let env = Env::start().await;
    let mut sink = Sink::start(false).await;
    env.subscribe_ok(subscription(
        "2025-01-29",
        &["platform", "function"],
        r#"{"timeoutMs":25}"#,
        &sink.uri(),
    ))
    .await;
    env.api.finish_init();
    let _ = sink.events(1).await; // the subscription record
    let t0 = std::time::Instant::now();
    for i in 0..INVOKES {
        for r in records(i) {
            env.api.telemetry().emit(r);
        }
        if i % 500 == 499 {
            // Let delivery keep up, as invokes spread over time would.
            env.api.telemetry().flush().await;
        }
    }
    let emitting = t0.elapsed();
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Dropped {
        dropped_records: usize,
    }
    let (mut n, mut dropped) = (0, 0);
    while n + dropped < 3 * INVOKES as usize {
        for e in sink.batch().await.events() {
            if e.kind == "platform.logsDropped" {
                dropped += serde_json::from_value::<Dropped>(e.record)
                    .unwrap()
                    .dropped_records;
            } else {
                n += 1;
            }
        }
    }
    let delivered = t0.elapsed();
    println!(
        "no subscriber: {per_idle:?} per invoke; one subscriber: {:?} per invoke emitted and delivered ({n} records, {dropped} dropped), {:?} until the last batch was read",
        emitting / INVOKES,
        delivered / INVOKES
    );
}
