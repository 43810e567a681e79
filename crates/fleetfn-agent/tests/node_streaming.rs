//! Streamed responses from fleetfn's Node.js bootstrap (`awslambda.streamifyResponse`,
//! `awslambda.HttpResponseStream`) through the agent's Runtime API: chunks relayed as the
//! handler writes them, the content type it sets, a prelude, errors after the first byte as
//! trailers and before it as an ordinary function error, a buffered invoke collecting the
//! stream. Uses the fixture tests/dataplane/functions/node_stream. The tests are in
//! `needs_node`, `#[ignore]`d unless run with `--include-ignored` (as `scripts/test` does).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use fleetfn_agent::{Environment, RuntimeProvider, StreamedOutput};
use fleetfn_proto::{StreamError, StreamPart};
use serde_json::{Value, json};

fn node_provider(root: &Path) -> RuntimeProvider {
    let p = provider(root, &shared_runtime_root());
    let found = p
        .host()
        .node
        .as_ref()
        .map(|_| ())
        .map_err(|why| why.to_string());
    fleetfn_testutil::require(fleetfn_testutil::NODE, found);
    p
}

/// The fixture's code directory (one `index.mjs`).
fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/dataplane/functions/node_stream")
}

async fn ready_env(p: &RuntimeProvider, id: &str, handler: &str) -> Environment {
    let mut s = spec(id, "nodejs22.x", &fixture_dir(), 2);
    s.handler = Some(handler.to_owned());
    s.vcpus = 1.0;
    let env = Environment::start(s, p).await.expect("start");
    guarded("ready", env.ready()).await.expect("ready");
    guarded("all loops parked", env.wait_parked(|n| n == 2)).await;
    env
}

/// The chunks (each with the time it arrived after the first) and how the stream ended.
async fn read_all(
    mut parts: tokio::sync::mpsc::Receiver<StreamPart>,
) -> (Vec<(Duration, Bytes)>, Option<StreamError>) {
    let mut chunks = Vec::new();
    let mut first: Option<tokio::time::Instant> = None;
    loop {
        match guarded("a part", parts.recv()).await.expect("an end") {
            StreamPart::Chunk(c) => {
                let now = tokio::time::Instant::now();
                let at = now - *first.get_or_insert(now);
                chunks.push((at, c));
            }
            StreamPart::End(end) => return (chunks, end),
        }
    }
}

fn concat(chunks: &[(Duration, Bytes)]) -> Bytes {
    let mut out = BytesMut::new();
    for (_, c) in chunks {
        out.extend_from_slice(c);
    }
    out.freeze()
}

async fn streamed(
    env: &Environment,
    id: &str,
    event: &Value,
) -> (Option<String>, Vec<(Duration, Bytes)>, Option<StreamError>) {
    let out = env
        .invoke_streaming(input(id, event))
        .await
        .expect("admitted");
    let StreamedOutput::Streamed(stream) = out else {
        panic!("expected a stream, got {out:?}");
    };
    let (chunks, end) = read_all(stream.parts).await;
    (stream.content_type, chunks, end)
}

mod needs_node {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs node on PATH; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=node)"]
    async fn chunks_are_relayed_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = node_provider(dir.path());
        let env = ready_env(&p, "node-stream", "index.handler").await;

        let (ct, chunks, end) = streamed(
            &env,
            "s-1",
            &json!({"mode": "chunks", "n": 3, "delay_ms": 300}),
        )
        .await;
        assert_eq!(ct.as_deref(), Some("text/plain"));
        assert_eq!(end, None);
        let bodies: Vec<&[u8]> = chunks.iter().map(|(_, c)| c.as_ref()).collect();
        assert_eq!(bodies, [&b"chunk 0\n"[..], b"chunk 1\n", b"chunk 2\n"]);
        // The handler waits 300 ms between writes: the last chunk cannot come with the first.
        assert!(chunks[2].0 >= Duration::from_millis(500), "{chunks:?}");

        // HttpResponseStream: its own content type, then the prelude and 8 NUL bytes.
        let (ct, chunks, end) = streamed(&env, "s-2", &json!({"mode": "http", "n": 1})).await;
        assert_eq!(
            ct.as_deref(),
            Some("application/vnd.awslambda.http-integration-response")
        );
        assert_eq!(end, None);
        let body = concat(&chunks);
        let split = body
            .windows(8)
            .position(|w| w == [0u8; 8])
            .expect("a delimiter");
        let prelude: Value = serde_json::from_slice(&body[..split]).unwrap();
        assert_eq!(prelude["statusCode"], 201);
        assert_eq!(prelude["cookies"], json!(["a=1", "b=2; Path=/"]));
        assert_eq!(&body[split + 8..], b"chunk 0\n");

        // 4 MiB through stream.pipeline, intact.
        let (ct, chunks, end) =
            streamed(&env, "s-3", &json!({"mode": "pipe", "bytes": 4 << 20})).await;
        assert_eq!(ct.as_deref(), Some("application/octet-stream"));
        assert_eq!(end, None);
        let body = concat(&chunks);
        assert_eq!(body.len(), 4 << 20);
        assert!(body.iter().all(|&b| b == b'x'));
        env.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs node on PATH; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=node)"]
    async fn errors_after_and_before_the_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = node_provider(dir.path());
        let env = ready_env(&p, "node-stream-err", "index.handler").await;

        // After the first byte: the trailers end the stream with the error.
        let (_, chunks, end) =
            streamed(&env, "e-1", &json!({"mode": "fails", "delay_ms": 50})).await;
        assert_eq!(concat(&chunks), &b"before\n"[..]);
        let end = end.expect("an error at the end");
        assert_eq!(end.error_type, "StreamBoom");
        let doc: Value = serde_json::from_slice(&end.payload).unwrap();
        assert_eq!(doc["errorType"], "StreamBoom");
        assert_eq!(doc["errorMessage"], "failed after the first chunk");

        // Before it: an ordinary function error.
        let out = env
            .invoke_streaming(input("e-2", &json!({"mode": "failsEarly"})))
            .await
            .expect("admitted");
        let StreamedOutput::Buffered(out) = out else {
            panic!("expected a buffered error, got {out:?}");
        };
        assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(out.error_type.as_deref(), Some("EarlyBoom"));

        // A buffered invoke of a streamed handler collects the whole body.
        let out = env
            .invoke(input(
                "e-3",
                &json!({"mode": "chunks", "n": 3, "delay_ms": 10}),
            ))
            .await
            .unwrap();
        assert_eq!(out.function_error, None, "{:?}", out.payload);
        assert_eq!(&out.payload[..], b"chunk 0\nchunk 1\nchunk 2\n");

        // The loops keep serving afterwards.
        let (_, chunks, end) = streamed(&env, "e-4", &json!({"mode": "chunks", "n": 1})).await;
        assert_eq!(
            (concat(&chunks), end),
            (Bytes::from_static(b"chunk 0\n"), None)
        );
        env.stop(Duration::from_secs(1)).await;
    }
}
