//! `fleetfn-testfn`: a Rust Lambda function used as a test fixture for fleetfn.
//!
//! Built on `lambda_runtime` with `run_concurrent`, so with `AWS_LAMBDA_MAX_CONCURRENCY=N` it
//! keeps N `/next` long polls open, like a Lambda Managed Instances runtime. The event's `op`
//! field picks what the handler does:
//!
//! | event | result |
//! | --- | --- |
//! | `{"op":"echo", ...}` | the event itself |
//! | `{"op":"sleep","ms":1000}` | sleeps (tokio), then `{"slept_ms":1000}` |
//! | `{"op":"error"}` | a function error (`errorType` `TestFnError`) |
//! | `{"op":"env"}` | env vars starting with `AWS_`, `LAMBDA_`, `_HANDLER`, plus pid, uid and the invoke's `Context` fields |
//! | `{"op":"crash"}` | the process exits with code 1 at once |
//! | `{"op":"alloc","mb":N}` | allocates and touches N MiB, then `{"allocated_mb":N,"pages_touched":..}` |
//! | `{"op":"write","path":"/var/task/x"}` | tries to write that file: `{"path":..,"written":bool,"error":..}` |
//! | `{"op":"ps"}` | `{"pids":[..]}`: the numeric entries of `/proc` |
//! | `{"op":"noop"}` | `{}` |
//! | `{"op":"now"}` | `{"now_us":N}`: the wall clock (`CLOCK_REALTIME`, µs since the Unix epoch) at handler entry, for enqueue-to-handler latencies (fleetfn-bench's `async`) |
//! | `{"op":"burn","ms":20}` | keeps one CPU busy for that long (wall clock), then `{"burned_ms":20}` |
//! | `{"op":"fill","mb":N}` | writes N MiB to a new file under `/tmp`, then `{"path":..,"mb":N}` |
//! | `{"op":"stream","chunks":N,"ms":D}` | a streamed response (`lambda_runtime`'s `StreamResponse`, so an HTTP-integration prelude `{"statusCode":200,"headers":{"content-type":"text/plain"},"cookies":[]}` and 8 NUL bytes come first): N chunks `chunk-<i>\n`, D ms apart (D defaults to 0); optional `"size":S` pads each chunk to S bytes with `.`, `"fail_after":K` makes the stream fail after K chunks (`lambda_runtime` 1.5 writes that error into the body as text, not as trailers), `"crash_after":K` exits the process after K chunks (the stream is cut: `Runtime.TruncatedResponse`) |
//! | `{"op":"probe", ...}` | a hostile tenant's attempts (connect, HTTP, resolve, namespaces, mount, ptrace, `/tmp`, reads), reported as found ([`probe`]) |
//!
//! A function URL's event (payload format 2.0) whose body is a JSON object runs that object
//! as the event, so `curl -d '{"op":"stream","chunks":3}' <url>` streams.
//!
//! An event without `op` (e.g. an SQS event source mapping's `{"Records":[…]}`) takes the op
//! named by the function's `TESTFN_DEFAULT_OP` environment variable when that is set (only ops
//! without arguments make sense there: `noop`, `now`, `echo`, `error`, `env`, `ps`).
//!
//! A missing or unknown `op`, or a missing argument, is a function error (`InvalidEvent`).
//! The `env` op returns every `AWS_*` variable, credentials included: it is a fixture for
//! checking what an environment is given, not something to deploy.

#![forbid(unsafe_code)]

use std::time::Duration;

mod probe;

use lambda_runtime::streaming::Body;
use lambda_runtime::{
    Context, Diagnostic, FunctionResponse, LambdaEvent, MetadataPrelude, StreamResponse, service_fn,
};
use serde_json::{Map, Value, json};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run_concurrent(service_fn(handler)).await
}

fn diag(error_type: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        error_type: error_type.to_owned(),
        error_message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> Diagnostic {
    diag("InvalidEvent", message)
}

/// The `stream` op answers streamed, every other op buffered.
async fn handler(
    mut event: LambdaEvent<Value>,
) -> Result<FunctionResponse<Value, Body>, Diagnostic> {
    event.payload = from_url_event(event.payload);
    if event.payload.get("op").and_then(Value::as_str) == Some("stream") {
        return stream(&event.payload).map(FunctionResponse::StreamingResponse);
    }
    buffered(event)
        .await
        .map(FunctionResponse::BufferedResponse)
}

/// The `stream` op: chunks written by a task while the runtime already sends the first ones.
fn stream(event: &Value) -> Result<StreamResponse<Body>, Diagnostic> {
    let chunks = u64_arg(event, "chunks")?;
    let opt = |name: &str| event.get(name).and_then(Value::as_u64);
    let ms = opt("ms").unwrap_or(0);
    let size = usize::try_from(opt("size").unwrap_or(0)).unwrap_or(usize::MAX);
    let (fail_after, crash_after) = (opt("fail_after"), opt("crash_after"));
    let (mut tx, body) = lambda_runtime::streaming::channel();
    tokio::spawn(async move {
        for i in 0..chunks {
            if i > 0 && ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if fail_after == Some(i) {
                tx.send_error(lambda_runtime_api_client::Error::new(format!(
                    "stream failure requested after {i} chunks"
                )));
                return;
            }
            if crash_after == Some(i) {
                eprintln!("fleetfn-testfn: crash requested after {i} streamed chunks");
                std::process::exit(1);
            }
            let mut chunk = format!("chunk-{i}\n").into_bytes();
            if chunk.len() < size {
                chunk.resize(size, b'.');
            }
            if tx.send_data(chunk.into()).await.is_err() {
                return;
            }
        }
    });
    let mut prelude = MetadataPrelude::default();
    prelude
        .headers
        .insert("content-type", http::HeaderValue::from_static("text/plain"));
    Ok(StreamResponse {
        metadata_prelude: prelude,
        stream: body,
    })
}

async fn buffered(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    // Read first, so `now` reports the handler's entry (a vDSO call, tens of nanoseconds).
    let entered = std::time::SystemTime::now();
    let (event, ctx) = event.into_parts();
    let op = match event.get("op").and_then(Value::as_str) {
        Some(op) => op,
        None => default_op().ok_or_else(|| invalid("the event has no string field \"op\""))?,
    };
    match op {
        "echo" => Ok(event),
        "noop" => Ok(json!({})),
        "now" => {
            let us = entered
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| diag("ClockError", e.to_string()))?
                .as_micros();
            Ok(json!({ "now_us": u64::try_from(us).unwrap_or(u64::MAX) }))
        }
        "probe" => {
            let request_id = ctx.request_id.clone();
            tokio::task::spawn_blocking(move || probe::run(&event, &request_id))
                .await
                .map_err(|e| diag("ProbeError", e.to_string()))
        }
        "sleep" => {
            let ms = u64_arg(&event, "ms")?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({ "slept_ms": ms }))
        }
        "error" => Err(diag("TestFnError", "error requested by the event")),
        "env" => Ok(env_report(&ctx)),
        "crash" => {
            eprintln!("fleetfn-testfn: crash requested, exiting with code 1");
            std::process::exit(1)
        }
        "alloc" => {
            let mb = u64_arg(&event, "mb")?;
            let mb = usize::try_from(mb).map_err(|_| invalid("\"mb\" is too large"))?;
            let touched = alloc_and_touch(mb)?;
            Ok(json!({ "allocated_mb": mb, "pages_touched": touched }))
        }
        "write" => {
            let path = event
                .get("path")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("write needs a string field \"path\""))?;
            let (written, error) = match std::fs::write(path, b"fleetfn-testfn\n") {
                Ok(()) => (true, None),
                Err(e) => (false, Some(e.to_string())),
            };
            Ok(json!({ "path": path, "written": written, "error": error }))
        }
        "ps" => Ok(json!({ "pids": pids().map_err(|e| diag("ProcError", e.to_string()))? })),
        "burn" => {
            let ms = u64_arg(&event, "ms")?;
            tokio::task::spawn_blocking(move || {
                let until = std::time::Instant::now() + Duration::from_millis(ms);
                let mut x: u64 = 0;
                while std::time::Instant::now() < until {
                    for i in 0..10_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                    }
                }
                x
            })
            .await
            .map_err(|e| diag("BurnError", e.to_string()))?;
            Ok(json!({ "burned_ms": ms }))
        }
        "fill" => {
            let mb = u64_arg(&event, "mb")?;
            let path = std::env::temp_dir().join(format!("fill-{}", uuid_like()));
            let chunk = vec![0x5au8; 1 << 20];
            let mut f =
                std::fs::File::create(&path).map_err(|e| diag("FillError", e.to_string()))?;
            for _ in 0..mb {
                std::io::Write::write_all(&mut f, &chunk)
                    .map_err(|e| diag("FillError", e.to_string()))?;
            }
            Ok(json!({ "path": path.display().to_string(), "mb": mb }))
        }
        other => Err(invalid(format!("unknown op {other:?}"))),
    }
}

/// A function URL's event (payload format 2.0, with `rawPath` and `requestContext`) whose body
/// is a JSON text: that body is the event, so the same ops run behind a URL.
fn from_url_event(event: Value) -> Value {
    let Value::Object(map) = &event else {
        return event;
    };
    if !(map.contains_key("rawPath") && map.contains_key("requestContext"))
        || map.get("isBase64Encoded") == Some(&Value::Bool(true))
    {
        return event;
    }
    match map
        .get("body")
        .and_then(Value::as_str)
        .map(serde_json::from_str)
    {
        Some(Ok(inner @ Value::Object(_))) => inner,
        _ => event,
    }
}

/// `TESTFN_DEFAULT_OP`, read once.
fn default_op() -> Option<&'static str> {
    static OP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    OP.get_or_init(|| {
        std::env::var("TESTFN_DEFAULT_OP")
            .ok()
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// A name unique within this process.
fn uuid_like() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn u64_arg(event: &Value, name: &str) -> Result<u64, Diagnostic> {
    event
        .get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("needs a non-negative integer field {name:?}")))
}

/// Allocates `mb` MiB and writes one byte per 4 KiB page so every page is really backed.
fn alloc_and_touch(mb: usize) -> Result<usize, Diagnostic> {
    const PAGE: usize = 4096;
    let len = mb
        .checked_mul(1 << 20)
        .ok_or_else(|| invalid("\"mb\" is too large"))?;
    let mut buf = vec![0u8; len];
    for i in (0..len).step_by(PAGE) {
        buf[i] = 1;
    }
    let touched = std::hint::black_box(&buf)
        .iter()
        .step_by(PAGE)
        .filter(|&&b| b == 1)
        .count();
    Ok(touched)
}

fn env_report(ctx: &Context) -> Value {
    let env: Map<String, Value> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("LAMBDA_") || k.starts_with("_HANDLER")
        })
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let (uid, euid) = proc_uids().unwrap_or((None, None));
    json!({
        "env": env,
        "pid": std::process::id(),
        "uid": uid,
        "euid": euid,
        "context": {
            "request_id": ctx.request_id,
            "deadline": ctx.deadline,
            "invoked_function_arn": ctx.invoked_function_arn,
            "xray_trace_id": ctx.xray_trace_id,
            "client_context": ctx.client_context,
            "identity": ctx.identity,
            "tenant_id": ctx.tenant_id,
        },
    })
}

/// Real and effective uid from the `Uid:` line of `/proc/self/status`.
fn proc_uids() -> Option<(Option<u32>, Option<u32>)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = line.split_whitespace().map(|s| s.parse::<u32>().ok());
    Some((ids.next().flatten(), ids.next().flatten()))
}

/// The numeric entries of `/proc`: the pids this process can see, sorted.
fn pids() -> std::io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        if let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_events_json_body_is_the_event() {
        let url = |body: Value, b64: bool| {
            json!({"version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "POST"}},
                   "body": body, "isBase64Encoded": b64})
        };
        assert_eq!(
            from_url_event(url(json!(r#"{"op":"noop"}"#), false)),
            json!({"op": "noop"})
        );
        // Not JSON, not an object, base64 or no body: the URL event itself.
        for e in [
            url(json!("op=noop"), false),
            url(json!("[1]"), false),
            url(json!(r#"{"op":"noop"}"#), true),
            url(Value::Null, false),
        ] {
            assert_eq!(from_url_event(e.clone()), e);
        }
        let plain = json!({"op": "echo", "body": r#"{"op":"noop"}"#});
        assert_eq!(from_url_event(plain.clone()), plain);
    }
}
