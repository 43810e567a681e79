//! [`ResponseTiming`]: when the runtime started sending its answer and when it was read, for
//! the telemetry `responseLatency`/`responseDuration` spans. The runtime is played over raw TCP
//! so the pauses between its writes are exactly where the test puts them (real clock: the
//! endpoint stamps `std::time::Instant`; every assertion is a lower bound on a pause the test
//! made, plus an upper bound far above it).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetfn_runtime_api::{
    Invocation, InvokeTicket, Outcome, ResponseTiming, RuntimeApi, RuntimeApiConfig, StreamPart,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Safety net only: turns a hang into a failure.
const GUARD: Duration = Duration::from_secs(20);
/// How long the "handler" works before answering.
const HANDLER: Duration = Duration::from_millis(120);
/// The pause between the two writes of the answer's body.
const PAUSE: Duration = Duration::from_millis(150);

fn invocation(id: &str) -> Invocation {
    Invocation {
        request_id: id.to_owned(),
        payload: Bytes::from_static(b"{}"),
        deadline_ms: 1,
        invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
        trace_id: None,
        client_context: None,
        cognito_identity: None,
        tenant_id: None,
    }
}

/// Parks one `/next`, dispatches `id` to it and reads the invoke; returns the ticket and the
/// instant just before the dispatch.
async fn dispatched(api: &RuntimeApi, id: &str) -> (InvokeTicket, Instant) {
    let mut next = TcpStream::connect(api.local_addr()).await.expect("connect");
    next.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: rt\r\n\r\n")
        .await
        .expect("write /next");
    tokio::time::timeout(GUARD, api.wait_parked(|n| n == 1))
        .await
        .expect("parked");
    let t0 = Instant::now();
    let ticket = api.try_dispatch(invocation(id)).expect("dispatched");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(GUARD, next.read(&mut buf))
        .await
        .expect("invoke read in time")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains(id),
        "the /next answer carries the request id"
    );
    // Keep the connection open for the rest of the test: the runtime does.
    std::mem::forget(next);
    (ticket, t0)
}

/// Sends `head` now, then each of `parts` with [`PAUSE`] before every one after the first.
async fn answer(addr: SocketAddr, head: String, parts: &[&[u8]]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("headers");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        s.write_all(part).await.expect("body part");
    }
    s
}

fn assert_spans(t0: Instant, timing: ResponseTiming, first_pause: Duration) {
    let latency = timing.started.saturating_duration_since(t0);
    assert!(
        latency >= first_pause && latency < GUARD,
        "responseLatency {latency:?} covers the handler's {first_pause:?}"
    );
    let duration = timing.duration();
    assert!(
        duration >= PAUSE && duration < GUARD,
        "responseDuration {duration:?} covers the {PAUSE:?} pause inside the body"
    );
    assert!(timing.ended <= Instant::now());
}

#[tokio::test]
async fn a_slowly_sent_response_is_timed_from_its_headers_to_its_end() {
    let api = RuntimeApi::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        RuntimeApiConfig::default(),
    )
    .expect("bind");
    let (mut ticket, t0) = dispatched(&api, "req-1").await;
    assert_eq!(ticket.timing(), None, "nothing answered yet");
    tokio::time::sleep(HANDLER).await;
    let head = "POST /2018-06-01/runtime/invocation/req-1/response HTTP/1.1\r\nHost: rt\r\n\
                Content-Length: 10\r\n\r\n"
        .to_owned();
    let _conn = answer(api.local_addr(), head, &[b"hello", b"world"]).await;
    let outcome = tokio::time::timeout(GUARD, &mut ticket)
        .await
        .expect("resolved");
    assert_eq!(
        outcome,
        Outcome::Response(Bytes::from_static(b"helloworld"))
    );
    assert_spans(t0, ticket.timing().expect("timed"), HANDLER);
}

#[tokio::test]
async fn a_slowly_sent_error_is_timed_too() {
    let api = RuntimeApi::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        RuntimeApiConfig::default(),
    )
    .expect("bind");
    let (mut ticket, t0) = dispatched(&api, "req-e").await;
    tokio::time::sleep(HANDLER).await;
    let doc = br#"{"errorMessage":"boom","errorType":"Oops"}"#;
    let head = format!(
        "POST /2018-06-01/runtime/invocation/req-e/error HTTP/1.1\r\nHost: rt\r\n\
         Lambda-Runtime-Function-Error-Type: Oops\r\nContent-Length: {}\r\n\r\n",
        doc.len()
    );
    let _conn = answer(api.local_addr(), head, &[&doc[..10], &doc[10..]]).await;
    let outcome = tokio::time::timeout(GUARD, &mut ticket)
        .await
        .expect("resolved");
    assert!(
        matches!(outcome, Outcome::FunctionError { ref error_type, .. } if error_type == "Oops")
    );
    assert_spans(t0, ticket.timing().expect("timed"), HANDLER);
}

#[tokio::test]
async fn a_stream_is_timed_from_its_first_chunk_to_its_end() {
    let api = RuntimeApi::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        RuntimeApiConfig::default(),
    )
    .expect("bind");
    let (mut ticket, t0) = dispatched(&api, "req-s").await;
    // A streaming runtime sends its headers at once, then works, then writes.
    let head = "POST /2018-06-01/runtime/invocation/req-s/response HTTP/1.1\r\nHost: rt\r\n\
                Lambda-Runtime-Function-Response-Mode: streaming\r\n\
                Transfer-Encoding: chunked\r\n\r\n"
        .to_owned();
    let mut conn = answer(api.local_addr(), head, &[]).await;
    let outcome = tokio::time::timeout(GUARD, &mut ticket)
        .await
        .expect("resolved at the headers");
    let Outcome::Stream(mut stream) = outcome else {
        panic!("a stream");
    };
    assert_eq!(
        ticket.timing(),
        None,
        "a stream's timing comes with its end"
    );
    tokio::time::sleep(HANDLER).await;
    conn.write_all(b"5\r\nhello\r\n").await.expect("chunk 1");
    tokio::time::sleep(PAUSE).await;
    conn.write_all(b"5\r\nworld\r\n0\r\n\r\n")
        .await
        .expect("chunk 2");
    let mut body = Vec::new();
    loop {
        let part = tokio::time::timeout(GUARD, stream.next())
            .await
            .expect("part in time");
        match part {
            Some(StreamPart::Chunk(c)) => {
                assert_eq!(stream.timing(), None, "not ended yet");
                body.extend_from_slice(&c);
            }
            Some(StreamPart::End(None)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(body, b"helloworld");
    assert_spans(t0, stream.timing().expect("timed at its end"), HANDLER);
}
