//! The invoke stream end to end: a real agent API on loopback, a real environment (the test
//! function as a `provided.al2023` bootstrap) and the real `AgentClient`. Many concurrent invokes
//! share one connection and each gets its own reply; every reply kind crosses it; what the HTTP
//! route answers, the stream answers; hostile upgrades and frames are refused.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use fleetfn_agent::{Agent, AgentConfig, InstanceShape, RuntimeProvider, RuntimeProviderConfig};
use fleetfn_artifacts::{ArtifactStore, Digest};
use fleetfn_proto::{AgentClient, EnvState, EnvironmentRequest, InvokeReply};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "stream-token";

fn package() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o755);
    w.start_file("bootstrap", opts).unwrap();
    w.write_all(&std::fs::read(testfn_binary()).unwrap())
        .unwrap();
    w.finish().unwrap().into_inner()
}

struct Harness {
    _dir: tempfile::TempDir,
    agent: Agent,
    addr: std::net::SocketAddr,
    client: AgentClient,
    digest: Digest,
    /// Connections the agent API accepted.
    accepted: Arc<AtomicUsize>,
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let digest = store.put(&package()).unwrap();
        let agent = Agent::new(
            AgentConfig {
                instance_id: "i-stream".into(),
                zone: "z1".into(),
                token: TOKEN.into(),
                artifacts_dir: dir.path().join("artifacts"),
                logs_dir: dir.path().join("logs"),
                log_limits: Default::default(),
                isolation: "none".into(),
                instance: InstanceShape {
                    instance_type: "local".into(),
                    vcpus: 2,
                    memory_mib: 4096,
                    cpu_scale: 1.0,
                },
                instance_slice: None,
            },
            RuntimeProvider::detect(RuntimeProviderConfig::new(
                dir.path().join("rt"),
                dir.path().join("envs"),
            )),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let router = agent.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            _dir: dir,
            agent,
            addr,
            client: AgentClient::new(addr, TOKEN),
            digest,
            accepted,
        }
    }

    async fn put_ready(&self, env_id: &str, max_concurrency: u32) {
        let req = EnvironmentRequest {
            function_name: "testfn".into(),
            version: "1".into(),
            qualified_arn: "arn:aws:lambda:us-east-1:123456789012:function:testfn:1".into(),
            runtime: "provided.al2023".into(),
            handler: None,
            code_sha256_hex: self.digest.hex(),
            code_size: self.digest.size(),
            memory_mb: 512,
            timeout_secs: 30,
            max_concurrency,
            vcpus: 1.0,
            ephemeral_storage_mb: 512,
            region: "us-east-1".into(),
            env_vars: BTreeMap::new(),
            placement: None,
            credentials: None,
            layers: Vec::new(),
        };
        self.client.put_environment(env_id, &req).await.unwrap();
        guarded("the environment turns Ready", async {
            let mut after = None;
            loop {
                let r = self
                    .client
                    .report(after, Duration::from_secs(10))
                    .await
                    .unwrap();
                if let Some(e) = r.environments.iter().find(|e| e.env_id == env_id) {
                    assert!(
                        !matches!(e.state, EnvState::Failed | EnvState::Exited),
                        "{e:?}"
                    );
                    if e.state == EnvState::Ready {
                        return;
                    }
                }
                after = Some(r.revision);
            }
        })
        .await;
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
}

fn done_json(reply: &InvokeReply) -> Value {
    match reply {
        InvokeReply::Done {
            payload,
            function_error: None,
        } => serde_json::from_slice(payload).unwrap(),
        other => panic!("expected a result, got {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_invokes_share_one_connection_and_each_gets_its_own_reply() {
    let h = Harness::start().await;
    h.put_ready("e1", 16).await;
    // The first invoke opens the stream.
    assert_eq!(
        done_json(
            &h.invoke("e1", "r-first", &json!({"op":"echo","n":-1}))
                .await
        )["n"],
        -1
    );
    let before = h.accepted.load(Ordering::SeqCst);
    // 64 invokes at once, 16 at a time in the environment, over the one open stream; each
    // carries its own number back (and a payload above the copy threshold for some). Bounded
    // by the guard.
    let big = "x".repeat(40_000);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..64 {
        let client = h.client.clone();
        let pad = if i % 8 == 0 {
            big.clone()
        } else {
            String::new()
        };
        set.spawn(async move {
            let event = json!({"op":"echo","n":i,"pad":pad});
            // No queue (LMI): an invoke that finds all 16 workers busy is refused, and retried
            // here as a caller would.
            for attempt in 0.. {
                let reply = client
                    .invoke(
                        Duration::from_secs(30),
                        "e1",
                        &format!("r-{i}-{attempt}"),
                        Bytes::from(event.to_string()),
                        None,
                        None,
                    )
                    .await
                    .unwrap();
                if !matches!(reply, InvokeReply::Rejected { .. }) {
                    return (i, pad.len(), reply);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            unreachable!()
        });
    }
    let mut seen = Vec::new();
    while let Some(r) = guarded("the 64 invokes", set.join_next()).await {
        let (i, pad, reply) = r.unwrap();
        let v = done_json(&reply);
        assert_eq!(v["n"], i, "reply of invoke {i} was {v}");
        assert_eq!(v["pad"].as_str().unwrap().len(), pad);
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..64).collect::<Vec<_>>());
    assert_eq!(
        h.accepted.load(Ordering::SeqCst),
        before,
        "the invokes opened connections of their own"
    );
    h.agent.stop_all(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn every_reply_kind_crosses_the_stream_as_the_http_route_answers_it() {
    let h = Harness::start().await;
    h.put_ready("e1", 1).await;
    let cases = [
        ("e1", json!({"op":"echo","a":1})),
        ("e1", json!({"op":"error"})),
        ("no-such-env", json!({"op":"echo"})),
    ];
    for (i, (env, event)) in cases.iter().enumerate() {
        let streamed = h.invoke(env, &format!("s-{i}"), event).await;
        let http = h
            .client
            .invoke_http(
                Duration::from_secs(30),
                env,
                &format!("h-{i}"),
                Bytes::from(event.to_string()),
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(streamed, http, "{env} {event}");
    }
    assert_eq!(
        h.invoke("no-such-env", "g", &json!({})).await,
        InvokeReply::Gone
    );
    match h.invoke("e1", "err", &json!({"op":"error"})).await {
        InvokeReply::Done {
            function_error: Some(fe),
            payload,
        } => {
            assert_eq!(fe, "Unhandled");
            let doc: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(doc["errorType"], "TestFnError");
        }
        other => panic!("{other:?}"),
    }
    // While the one slot is taken, another invoke is refused with its reason. The slow invoke
    // is retried until it gets the slot (an echo below may hold it for a moment), so a refusal
    // below can only be for the slot it holds.
    let slow = {
        let client = h.client.clone();
        tokio::spawn(async move {
            for attempt in 0.. {
                let r = client
                    .invoke(
                        Duration::from_secs(30),
                        "e1",
                        &format!("slow-{attempt}"),
                        Bytes::from(json!({"op":"sleep","ms":1500}).to_string()),
                        None,
                        None,
                    )
                    .await
                    .unwrap();
                if !matches!(r, InvokeReply::Rejected { .. }) {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            unreachable!()
        })
    };
    let refused = guarded("an invoke is refused while the slot is taken", async {
        let mut n = 0;
        loop {
            n += 1;
            let r = h
                .invoke("e1", &format!("busy-{n}"), &json!({"op":"echo"}))
                .await;
            if !matches!(r, InvokeReply::Done { .. }) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    match refused {
        InvokeReply::Rejected { reason, detail } => {
            assert_eq!(
                reason,
                fleetfn_proto::ThrottleReason::Concurrency,
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(done_json(&slow.await.unwrap())["slept_ms"], 1500);
    h.agent.stop_all(Duration::from_secs(2)).await;
}

/// Sends a raw upgrade request; returns the head of the answer and the connection.
async fn raw_upgrade(
    addr: std::net::SocketAddr,
    token: &str,
    upgrade: &str,
) -> (String, tokio::net::TcpStream) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /v1/invoke-stream HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {token}\r\nconnection: upgrade\r\nupgrade: {upgrade}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), s)
}

#[tokio::test]
async fn hostile_upgrades_and_frames_are_refused() {
    let h = Harness::start().await;
    let (head, _) = raw_upgrade(h.addr, "wrong-token", fleetfn_proto::stream::PROTOCOL).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, _) = raw_upgrade(h.addr, TOKEN, "websocket").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // A frame longer than the limit: the agent closes the stream without reading it.
    let (head, mut s) = raw_upgrade(h.addr, TOKEN, fleetfn_proto::stream::PROTOCOL).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let n = guarded("the agent closes the stream", s.read_to_end(&mut rest)).await;
    assert_eq!(n.unwrap(), 0);
    // An unknown frame kind: closed too.
    let (_, mut s) = raw_upgrade(h.addr, TOKEN, fleetfn_proto::stream::PROTOCOL).await;
    s.write_all(&[0, 0, 0, 9, 77, 0, 0, 0, 0, 0, 0, 0, 1])
        .await
        .unwrap();
    let n = guarded("the agent closes the stream", s.read_to_end(&mut rest)).await;
    assert_eq!(n.unwrap(), 0);
    // The agent still serves a well-behaved client.
    assert_eq!(h.invoke("none", "ok", &json!({})).await, InvokeReply::Gone);
}

/// Reads an agent stream to its end: its chunks and how it ended.
async fn read_stream(
    mut parts: tokio::sync::mpsc::Receiver<fleetfn_proto::StreamPart>,
) -> (Vec<Bytes>, Option<fleetfn_proto::StreamError>) {
    let mut chunks = Vec::new();
    loop {
        match guarded("a part", parts.recv()).await.expect("an end") {
            fleetfn_proto::StreamPart::Chunk(c) => chunks.push(c),
            fleetfn_proto::StreamPart::End(end) => return (chunks, end),
        }
    }
}

impl Harness {
    async fn invoke_streamed(
        &self,
        env_id: &str,
        request_id: &str,
        event: &Value,
    ) -> fleetfn_proto::StreamedReply {
        self.client
            .invoke_stream(
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
}

#[tokio::test]
async fn a_streamed_response_crosses_the_agent_api_chunk_by_chunk() {
    let h = Harness::start().await;
    h.put_ready("st", 2).await;
    let reply = h
        .invoke_streamed(
            "st",
            "s-1",
            &json!({"op": "stream", "chunks": 3, "ms": 100}),
        )
        .await;
    let fleetfn_proto::StreamedReply::Stream(stream) = reply else {
        panic!("expected a stream, got {reply:?}");
    };
    assert_eq!(
        stream.content_type.as_deref(),
        Some("application/vnd.awslambda.http-integration-response")
    );
    let (chunks, end) = read_stream(stream.parts).await;
    assert_eq!(end, None);
    let body: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let mut want =
        br#"{"statusCode":200,"headers":{"content-type":"text/plain"},"cookies":[]}"#.to_vec();
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(b"chunk-0\nchunk-1\nchunk-2\n");
    assert_eq!(body, want);
    // Written 100 ms apart, the chunks came as they were written, not as one body.
    assert!(chunks.len() >= 3, "{chunks:?}");

    // The same over the agent's Unix socket.
    let path = h._dir.path().join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let router = h.agent.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let unix = AgentClient::new_unix(h.addr, &path, TOKEN);
    let reply = unix
        .invoke_stream(
            Duration::from_secs(30),
            "st",
            "s-unix",
            Bytes::from(json!({"op": "stream", "chunks": 2}).to_string()),
            None,
            None,
        )
        .await
        .unwrap();
    let fleetfn_proto::StreamedReply::Stream(stream) = reply else {
        panic!("expected a stream, got {reply:?}");
    };
    let (chunks, end) = read_stream(stream.parts).await;
    assert_eq!(end, None);
    let body: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    assert!(body.ends_with(b"chunk-0\nchunk-1\n"), "{body:?}");

    // A buffered function, an unknown environment: ordinary replies.
    match h
        .invoke_streamed("st", "s-2", &json!({"op": "echo", "n": 2}))
        .await
    {
        fleetfn_proto::StreamedReply::Reply(r) => assert_eq!(done_json(&r)["n"], 2),
        other => panic!("expected a reply, got {other:?}"),
    }
    assert!(matches!(
        h.invoke_streamed("nope", "s-3", &json!({"op": "noop"}))
            .await,
        fleetfn_proto::StreamedReply::Reply(InvokeReply::Gone)
    ));
    // A function that fails before it streams is an ordinary function error.
    match h
        .invoke_streamed("st", "s-4", &json!({"op": "error"}))
        .await
    {
        fleetfn_proto::StreamedReply::Reply(InvokeReply::Done {
            function_error: Some(fe),
            ..
        }) => assert_eq!(fe, "Unhandled"),
        other => panic!("expected a function error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dropped_stream_is_discarded_and_the_worker_comes_back() {
    let h = Harness::start().await;
    // One worker: the next invoke only runs once the abandoned one has finished.
    h.put_ready("drop", 1).await;
    let reply = h
        .invoke_streamed(
            "drop",
            "d-1",
            // 6.4 MiB: far more than every buffer on the way holds.
            &json!({"op": "stream", "chunks": 100, "size": 65536}),
        )
        .await;
    let fleetfn_proto::StreamedReply::Stream(mut stream) = reply else {
        panic!("expected a stream, got {reply:?}");
    };
    assert!(matches!(
        guarded("a chunk", stream.parts.recv()).await,
        Some(fleetfn_proto::StreamPart::Chunk(_))
    ));
    drop(stream);
    let dropped = std::time::Instant::now();
    // The runtime finishes its upload into the void and polls /next again, long before the
    // function's 30 s timeout would have freed it.
    let reply = guarded("the worker is back", async {
        loop {
            match h
                .invoke("drop", "d-2", &json!({"op": "echo", "n": 7}))
                .await
            {
                InvokeReply::Rejected { .. } => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    })
    .await;
    assert_eq!(done_json(&reply)["n"], 7);
    assert!(
        dropped.elapsed() < Duration::from_secs(15),
        "the abandoned stream held the worker for {:?}",
        dropped.elapsed()
    );
}
