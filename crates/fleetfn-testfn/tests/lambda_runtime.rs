//! The fixture function, a real `lambda_runtime` 1.5 process in concurrent mode, against
//! fleetfn's Runtime API endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fleetfn_runtime_api::{
    ERROR_TYPE_EXIT, Invocation, InvokeTicket, Outcome, Rejected, RuntimeApi, RuntimeApiConfig,
};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const CONCURRENCY: usize = 8;
const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:testfn:1";

/// Safety net only: every wait is woken by an event; this turns a hang into a failure.
const GUARD: Duration = Duration::from_secs(60);

async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn now_ms() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(d.as_millis()).expect("ms")
}

fn invocation(id: &str, event: Value) -> Invocation {
    Invocation {
        request_id: id.to_owned(),
        payload: Bytes::from(event.to_string()),
        deadline_ms: now_ms() + 60_000,
        invoked_function_arn: ARN.to_owned(),
        trace_id: None,
        client_context: None,
        cognito_identity: None,
        tenant_id: None,
    }
}

fn spawn_fixture(api: &RuntimeApi) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleetfn-testfn"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.local_addr().to_string())
        .env("AWS_LAMBDA_MAX_CONCURRENCY", CONCURRENCY.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "testfn")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
        .env("_HANDLER", "bootstrap")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fleetfn-testfn")
}

/// Waits for `ready()`, failing fast if the process exits first.
async fn wait_ready(api: &RuntimeApi, child: &mut Child) {
    tokio::select! {
        r = guarded("ready", api.ready()) => r.expect("runtime reported an init error"),
        status = child.wait() => panic!("fixture exited before it was ready: {status:?}"),
    }
}

async fn response_json(ticket: InvokeTicket) -> Value {
    match guarded("outcome", ticket).await {
        Outcome::Response(body) => serde_json::from_slice(&body).expect("JSON response"),
        other => panic!("expected a response, got {other:?}"),
    }
}

fn function_error(outcome: Outcome) -> (String, Value) {
    match outcome {
        Outcome::FunctionError { error_type, body } => {
            (error_type, serde_json::from_slice(&body).expect("JSON"))
        }
        other => panic!("expected a function error, got {other:?}"),
    }
}

async fn all_parked(api: &RuntimeApi) {
    guarded("all workers parked", api.wait_parked(|n| n >= CONCURRENCY)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lambda_runtime_against_the_endpoint() {
    let api = RuntimeApi::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        RuntimeApiConfig::default(),
    )
    .expect("bind");
    let mut child = spawn_fixture(&api);
    wait_ready(&api, &mut child).await;
    all_parked(&api).await;
    assert_eq!(api.parked(), CONCURRENCY);

    // Eight one-second sleeps all dispatched before any of them could finish: every worker is
    // busy at once, and a ninth invoke finds no idle worker.
    let mut tickets = Vec::new();
    for i in 0..CONCURRENCY {
        let inv = invocation(&format!("sleep-{i}"), json!({"op": "sleep", "ms": 1000}));
        tickets.push(
            api.try_dispatch(inv)
                .expect("dispatch while others are in flight"),
        );
    }
    assert_eq!(api.in_flight(), CONCURRENCY);
    assert_eq!(api.parked(), 0);
    assert_eq!(
        api.try_dispatch(invocation("ninth", json!({"op": "noop"})))
            .unwrap_err(),
        Rejected::NoIdleWorker
    );
    for ticket in tickets {
        assert_eq!(response_json(ticket).await, json!({"slept_ms": 1000}));
    }
    assert_eq!(api.in_flight(), 0);

    // A function error.
    all_parked(&api).await;
    let t = api
        .try_dispatch(invocation("err-1", json!({"op": "error"})))
        .expect("dispatch");
    let (error_type, body) = function_error(guarded("outcome", t).await);
    assert_eq!(error_type, "unhandled"); // what lambda_runtime 1.5 sends in the header
    assert_eq!(
        body,
        json!({"errorType": "TestFnError", "errorMessage": "error requested by the event"})
    );

    // Echo and env: the Context the runtime built from our /next headers, and its environment.
    all_parked(&api).await;
    let t = api
        .try_dispatch(invocation("echo-1", json!({"op": "echo", "x": [1, 2]})))
        .expect("dispatch");
    assert_eq!(response_json(t).await, json!({"op": "echo", "x": [1, 2]}));

    all_parked(&api).await;
    let mut inv = invocation("env-1", json!({"op": "env"}));
    let deadline = inv.deadline_ms;
    inv.trace_id = Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".into());
    inv.client_context = Some(r#"{"custom":{"k":"v"}}"#.into());
    inv.tenant_id = Some("tenant-7".into());
    let report = response_json(api.try_dispatch(inv).expect("dispatch")).await;
    let ctx = &report["context"];
    assert_eq!(ctx["request_id"], "env-1");
    assert_eq!(ctx["deadline"], deadline);
    assert_eq!(ctx["invoked_function_arn"], ARN);
    assert_eq!(
        ctx["xray_trace_id"],
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    );
    assert_eq!(ctx["client_context"]["custom"], json!({"k": "v"}));
    assert_eq!(ctx["tenant_id"], "tenant-7");
    assert_eq!(report["env"]["AWS_LAMBDA_MAX_CONCURRENCY"], "8");
    assert_eq!(report["env"]["AWS_LAMBDA_FUNCTION_NAME"], "testfn");
    assert_eq!(report["env"]["_HANDLER"], "bootstrap");
    assert_eq!(report["pid"], child.id().expect("running"));
    assert!(report["uid"].is_u64());

    // The remaining ops, each once.
    let pid = u64::from(child.id().expect("running"));
    let scratch = std::env::temp_dir().join(format!("fleetfn-testfn-{pid}"));
    let cases = [
        (json!({"op": "noop"}), json!({})),
        (
            json!({"op": "alloc", "mb": 8}),
            json!({"allocated_mb": 8, "pages_touched": 2048}),
        ),
        (
            json!({"op": "write", "path": scratch}),
            json!({"path": scratch, "written": true, "error": null}),
        ),
    ];
    for (i, (event, expected)) in cases.into_iter().enumerate() {
        all_parked(&api).await;
        let t = api
            .try_dispatch(invocation(&format!("op-{i}"), event))
            .expect("dispatch");
        assert_eq!(response_json(t).await, expected);
    }
    let _ = std::fs::remove_file(&scratch);
    // `now`: the wall clock at handler entry, between the dispatch and the answer.
    all_parked(&api).await;
    let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let t = api
        .try_dispatch(invocation("now-1", json!({"op": "now"})))
        .expect("dispatch");
    let now_us = response_json(t).await["now_us"].as_u64().expect("now_us");
    let after = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    assert!(
        (before.as_micros()..=after.as_micros()).contains(&u128::from(now_us)),
        "{before:?} <= {now_us} us <= {after:?}"
    );
    all_parked(&api).await;
    let t = api
        .try_dispatch(invocation("ps-1", json!({"op": "ps"})))
        .expect("dispatch");
    let ps = response_json(t).await;
    assert!(ps["pids"].as_array().expect("pids").contains(&json!(pid)));
    all_parked(&api).await;
    let t = api
        .try_dispatch(invocation("bad-1", json!({"op": "nope"})))
        .expect("dispatch");
    let (_, body) = function_error(guarded("outcome", t).await);
    assert_eq!(body["errorType"], "InvalidEvent");

    // Crash while other invokes are in flight: the process exits, and failing everything in
    // flight resolves the tickets that will never be answered.
    all_parked(&api).await;
    let sleepers: Vec<_> = (0..3)
        .map(|i| {
            let inv = invocation(&format!("long-{i}"), json!({"op": "sleep", "ms": 600_000}));
            api.try_dispatch(inv).expect("dispatch")
        })
        .collect();
    let crash = api
        .try_dispatch(invocation("crash-1", json!({"op": "crash"})))
        .expect("dispatch");
    let status: ExitStatus = guarded("fixture exit", child.wait()).await.expect("wait");
    assert_eq!(status.code(), Some(1));
    assert_eq!(api.in_flight(), 4);
    let failed =
        api.fail_all_in_flight(ERROR_TYPE_EXIT, "Runtime exited with error: exit status 1");
    assert_eq!(failed, 4);
    for t in sleepers.into_iter().chain([crash]) {
        let (error_type, body) = function_error(guarded("outcome", t).await);
        assert_eq!(error_type, "Runtime.ExitError");
        assert_eq!(body["errorType"], "Runtime.ExitError");
    }
    assert_eq!(api.in_flight(), 0);
}
