//! A streamed `/response` from a runtime whose socket keeps Nagle's algorithm on
//! (`lambda_runtime`'s HTTP client does not set `TCP_NODELAY`): its second small write waits in
//! the runtime's kernel for the ACK of the first. Were that ACK delayed (Linux delays it at
//! least 40 ms on a connection in interactive mode, which every request/answer exchange puts it
//! in), a function's first chunk after the prelude would reach the caller 40 ms late.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetfn_runtime_api::{Invocation, Outcome, RuntimeApi, RuntimeApiConfig, StreamPart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Safety net only: every wait below is woken by an event.
const GUARD: Duration = Duration::from_secs(20);

async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn invocation(id: &str) -> Invocation {
    Invocation {
        request_id: id.to_owned(),
        payload: Bytes::from_static(b"{}"),
        deadline_ms: 1_900_000_000_000,
        invoked_function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f:1".to_owned(),
        trace_id: None,
        client_context: None,
        cognito_identity: None,
        tenant_id: None,
    }
}

/// Reads one HTTP/1.1 answer with a `content-length` body; returns its status line.
async fn read_answer(conn: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).expect("utf-8 head");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().expect("length"))
                })
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return head.lines().next().unwrap_or_default().to_owned();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = guarded("an answer", conn.read(&mut chunk))
            .await
            .expect("read");
        assert!(n > 0, "connection closed mid-answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One invoke on `conn` (Nagle on): `/next`, then a streamed `/response` whose head and first
/// chunk go in one write and whose second chunk follows at once in a second write, as
/// `lambda_runtime` writes a prelude then a function's first chunk. Returns how long the second
/// chunk took from its write to the ticket's stream.
async fn second_chunk_latency(api: &RuntimeApi, conn: &mut TcpStream, id: &str) -> Duration {
    let mut buf = Vec::new();
    conn.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write /next");
    guarded("parked", api.wait_parked(|n| n >= 1)).await;
    let ticket = api.try_dispatch(invocation(id)).expect("dispatch");
    assert!(read_answer(conn, &mut buf).await.ends_with(" 200 OK"));

    let head = format!(
        "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nhost: x\r\n\
         lambda-runtime-function-response-mode: streaming\r\n\
         transfer-encoding: chunked\r\n\r\n8\r\nprelude!\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("write head");
    let sent = Instant::now();
    conn.write_all(b"7\r\nchunk-0\r\n")
        .await
        .expect("write chunk");
    let mut s = match guarded("outcome", ticket).await {
        Outcome::Stream(s) => s,
        other => panic!("expected a stream, got {other:?}"),
    };
    let mut got = Vec::new();
    while got.len() < b"prelude!chunk-0".len() {
        match guarded("a chunk", s.next()).await {
            Some(StreamPart::Chunk(c)) => got.extend_from_slice(&c),
            other => panic!("expected a chunk, got {other:?}"),
        }
    }
    let latency = sent.elapsed();
    assert_eq!(&got[..], b"prelude!chunk-0");
    conn.write_all(b"0\r\n\r\n").await.expect("write end");
    assert_eq!(
        guarded("the end", s.next()).await,
        Some(StreamPart::End(None))
    );
    assert!(read_answer(conn, &mut buf).await.ends_with(" 202 Accepted"));
    latency
}

#[tokio::test]
async fn a_nagle_runtime_s_second_chunk_is_not_held_by_a_delayed_ack() {
    let api = RuntimeApi::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        RuntimeApiConfig::default(),
    )
    .expect("bind");
    let mut conn = TcpStream::connect(api.local_addr()).await.expect("connect");
    assert!(
        !conn.nodelay().expect("nodelay"),
        "the runtime keeps Nagle on"
    );
    // The first exchanges put the connection in interactive mode, where ACKs wait; the best of
    // several runs is what the kernel lets through, scheduling noise aside.
    let mut best = Duration::MAX;
    for i in 0..6 {
        let latency = second_chunk_latency(&api, &mut conn, &format!("n{i}")).await;
        eprintln!("run {i}: second chunk after {latency:?}");
        if i > 0 {
            best = best.min(latency);
        }
    }
    // A delayed ACK costs at least 40 ms (Linux's floor); an immediate one well under 1 ms.
    assert!(
        best < Duration::from_millis(20),
        "the second chunk of a streamed response took {best:?}: its write waited for a delayed ACK"
    );
}
