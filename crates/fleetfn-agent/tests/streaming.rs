//! Streamed responses of the `fleetfn-testfn` fixture (`lambda_runtime` 1.5's
//! `StreamResponse`, concurrent mode): relayed as written, collected for a buffered invoke,
//! ended by the timeout or a crash.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use fleetfn_agent::{Environment, RuntimeProvider, StreamedOutput};
use fleetfn_proto::{StreamError, StreamPart};
use serde_json::json;

async fn start_ready(spec: fleetfn_agent::EnvironmentSpec, p: &RuntimeProvider) -> Environment {
    let env = Environment::start(spec, p).await.expect("start");
    guarded("ready", env.ready()).await.expect("ready");
    env
}

/// `lambda_runtime`'s prelude for a `text/plain` response, and its 8 NUL bytes.
const PRELUDE: &[u8] =
    b"{\"statusCode\":200,\"headers\":{\"content-type\":\"text/plain\"},\"cookies\":[]}\0\0\0\0\0\0\0\0";

/// Reads a stream to its end: the body and how it ended.
async fn read_all(
    mut parts: tokio::sync::mpsc::Receiver<StreamPart>,
) -> (Bytes, Option<StreamError>, usize) {
    let mut body = BytesMut::new();
    let mut n = 0;
    loop {
        match guarded("a part", parts.recv()).await.expect("an end") {
            StreamPart::Chunk(c) => {
                assert!(!c.is_empty());
                n += 1;
                body.extend_from_slice(&c);
            }
            StreamPart::End(end) => return (body.freeze(), end, n),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_is_relayed_and_a_buffered_invoke_collects_it() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    let p = provider(dir.path(), &dir.path().join("rt"));
    let env = start_ready(spec("stream", "provided.al2023", &code, 2), &p).await;

    let out = env
        .invoke_streaming(input(
            "s-1",
            &json!({"op": "stream", "chunks": 3, "ms": 50}),
        ))
        .await
        .expect("admitted");
    let StreamedOutput::Streamed(stream) = out else {
        panic!("expected a stream, got {out:?}");
    };
    assert_eq!(
        stream.content_type.as_deref(),
        Some("application/vnd.awslambda.http-integration-response")
    );
    let (body, end, _) = read_all(stream.parts).await;
    assert_eq!(end, None);
    let mut want = PRELUDE.to_vec();
    want.extend_from_slice(b"chunk-0\nchunk-1\nchunk-2\n");
    assert_eq!(&body[..], &want[..], "{body:?}");
    // Its end was written before the worker is back, so it is not in flight any more.
    guarded("idle", env.wait_active(|n| n == 0)).await;

    // A buffered invoke of the same function gets the whole response.
    let out = env
        .invoke(input("s-2", &json!({"op": "stream", "chunks": 2})))
        .await
        .expect("admitted");
    assert_eq!(out.function_error, None, "{out:?}");
    let mut want = PRELUDE.to_vec();
    want.extend_from_slice(b"chunk-0\nchunk-1\n");
    assert_eq!(&out.payload[..], &want[..]);

    // A buffered function asked for a stream answers whole.
    let out = env
        .invoke_streaming(input("s-3", &json!({"op": "echo", "x": 1})))
        .await
        .expect("admitted");
    match out {
        StreamedOutput::Buffered(out) => {
            assert_eq!(json_of(&out), json!({"op": "echo", "x": 1}));
        }
        other => panic!("expected a buffered answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_ends_a_stream_and_a_crash_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    let p = provider(dir.path(), &dir.path().join("rt"));
    let mut s = spec("stream-timeout", "provided.al2023", &code, 2);
    s.timeout_secs = 1;
    let env = start_ready(s, &p).await;

    // 100 chunks 50 ms apart outlast the 1 s timeout.
    let out = env
        .invoke_streaming(input(
            "t-1",
            &json!({"op": "stream", "chunks": 100, "ms": 50}),
        ))
        .await
        .expect("admitted");
    let StreamedOutput::Streamed(stream) = out else {
        panic!("expected a stream, got {out:?}");
    };
    let (_, end, n) = read_all(stream.parts).await;
    let end = end.expect("an error end");
    assert_eq!(end.error_type, "Sandbox.Timedout");
    let doc: serde_json::Value = serde_json::from_slice(&end.payload).unwrap();
    assert_eq!(
        doc["errorMessage"],
        "RequestId: t-1 Error: Task timed out after 1.00 seconds"
    );
    assert!((2..100).contains(&n), "{n} chunks before the timeout");

    // A runtime that dies mid-stream cuts it.
    let out = env
        .invoke_streaming(input(
            "t-2",
            &json!({"op": "stream", "chunks": 5, "ms": 100, "crash_after": 2}),
        ))
        .await
        .expect("admitted");
    let StreamedOutput::Streamed(stream) = out else {
        panic!("expected a stream, got {out:?}");
    };
    let (body, end, _) = read_all(stream.parts).await;
    // What was written before the crash arrived (the last chunk may be lost with the process).
    let mut full = PRELUDE.to_vec();
    full.extend_from_slice(b"chunk-0\nchunk-1\n");
    assert!(full.starts_with(&body), "{body:?}");
    assert_eq!(
        end.expect("an error end").error_type,
        "Runtime.TruncatedResponse"
    );
}

/// A reader that never reads (a stalled server connection) does not hold the invoke past the
/// function's timeout: the relay's sends are bounded by it, and the invoke leaves the
/// environment's active count then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_holds_the_invoke_only_until_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    let p = provider(dir.path(), &dir.path().join("rt"));
    let mut s = spec("stream-stalled", "provided.al2023", &code, 1);
    s.timeout_secs = 1;
    let env = start_ready(s, &p).await;

    // 200 chunks 20 ms apart (4 s) fill the buffers long before the 1 s timeout.
    let started = std::time::Instant::now();
    let out = env
        .invoke_streaming(input(
            "n-1",
            &json!({"op": "stream", "chunks": 200, "ms": 20}),
        ))
        .await
        .expect("admitted");
    let StreamedOutput::Streamed(stalled) = out else {
        panic!("expected a stream, got {out:?}");
    };
    assert_eq!(env.active_invokes(), 1);
    guarded("the invoke to end", env.wait_active(|n| n == 0)).await;
    let held = started.elapsed();
    assert!(
        held < std::time::Duration::from_millis(3000),
        "held {held:?}, past the 1 s timeout"
    );
    drop(stalled);
}
