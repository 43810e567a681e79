//! Streamed `/response`s (`Lambda-Runtime-Function-Response-Mode: streaming`) sent by hyper's
//! client as chunked bodies with trailers, as `lambda_runtime` and Node's runtime send them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use fleetfn_runtime_api::{
    ERROR_TYPE_RESPONSE_TOO_LARGE, ERROR_TYPE_TRUNCATED_RESPONSE, Invocation, Outcome,
    ResponseStream, RuntimeApi, RuntimeApiConfig, StreamFailure, StreamPart,
};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Safety net only: every wait below is woken by an event.
const GUARD: Duration = Duration::from_secs(20);

async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A request body the test writes frame by frame (data, then maybe trailers).
struct ChanBody(mpsc::Receiver<Frame<Bytes>>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

fn start(cfg: RuntimeApiConfig) -> RuntimeApi {
    RuntimeApi::bind(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).expect("bind")
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

/// Parks one `/next`, dispatches `id` to it and waits until the runtime has it.
async fn dispatch(api: &RuntimeApi, id: &str) -> fleetfn_runtime_api::InvokeTicket {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri = format!(
        "http://{}/2018-06-01/runtime/invocation/next",
        api.local_addr()
    );
    let next = tokio::spawn(async move {
        let resp = client
            .request(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("/next");
        resp.into_body().collect().await.expect("body");
    });
    guarded("parked", api.wait_parked(|n| n >= 1)).await;
    let ticket = api.try_dispatch(invocation(id)).expect("dispatch");
    guarded("/next answered", next).await.expect("join");
    ticket
}

/// Starts a streamed `/response` for `id`; the returned sender writes its body frames.
fn post_stream(
    api: &RuntimeApi,
    id: &str,
) -> (mpsc::Sender<Frame<Bytes>>, JoinHandle<(StatusCode, Bytes)>) {
    let (tx, rx) = mpsc::channel(1);
    let client = Client::builder(TokioExecutor::new()).build_http::<ChanBody>();
    let req = Request::post(format!(
        "http://{}/2018-06-01/runtime/invocation/{id}/response",
        api.local_addr()
    ))
    .header("Lambda-Runtime-Function-Response-Mode", "streaming")
    .header("Transfer-Encoding", "chunked")
    .header(
        "Content-Type",
        "application/vnd.awslambda.http-integration-response",
    )
    .header("Trailer", "Lambda-Runtime-Function-Error-Type")
    .header("Trailer", "Lambda-Runtime-Function-Error-Body")
    .body(ChanBody(rx))
    .unwrap();
    let reply = tokio::spawn(async move {
        let resp = client.request(req).await.expect("/response");
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    });
    (tx, reply)
}

async fn stream_of(ticket: fleetfn_runtime_api::InvokeTicket) -> ResponseStream {
    match guarded("outcome", ticket).await {
        Outcome::Stream(s) => s,
        other => panic!("expected a stream, got {other:?}"),
    }
}

async fn send(tx: &mpsc::Sender<Frame<Bytes>>, data: &'static [u8]) {
    tx.send(Frame::data(Bytes::from_static(data)))
        .await
        .expect("body open");
}

async fn next(s: &mut ResponseStream) -> StreamPart {
    guarded("a part", s.next()).await.expect("a part")
}

#[tokio::test]
async fn chunks_reach_the_ticket_as_they_are_written() {
    let api = start(RuntimeApiConfig::default());
    let ticket = dispatch(&api, "s1").await;
    let (tx, reply) = post_stream(&api, "s1");
    let mut s = stream_of(ticket).await;
    assert_eq!(
        s.content_type(),
        Some("application/vnd.awslambda.http-integration-response")
    );
    // Each chunk arrives before the next is written: nothing waits for the end of the body.
    for chunk in [&b"one "[..], b"two ", b"three"] {
        send(&tx, chunk).await;
        assert_eq!(
            next(&mut s).await,
            StreamPart::Chunk(Bytes::from_static(chunk))
        );
    }
    drop(tx);
    assert_eq!(next(&mut s).await, StreamPart::End(None));
    assert_eq!(s.next().await, None);
    let (status, body) = guarded("202", reply).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(&body[..], br#"{"status":"OK"}"#);
    assert_eq!(api.in_flight(), 0);
}

#[tokio::test]
async fn error_trailers_end_the_stream_with_the_function_error() {
    let api = start(RuntimeApiConfig::default());
    let ticket = dispatch(&api, "s2").await;
    let (tx, reply) = post_stream(&api, "s2");
    let mut s = stream_of(ticket).await;
    send(&tx, b"partial").await;
    let doc = br#"{"errorMessage":"boom","errorType":"StreamBroke"}"#;
    let mut trailers = HeaderMap::new();
    trailers.insert(
        "lambda-runtime-function-error-type",
        HeaderValue::from_static("StreamBroke"),
    );
    trailers.insert(
        "lambda-runtime-function-error-body",
        HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(doc)).unwrap(),
    );
    tx.send(Frame::trailers(trailers)).await.unwrap();
    drop(tx);
    assert_eq!(
        next(&mut s).await,
        StreamPart::Chunk(Bytes::from_static(b"partial"))
    );
    assert_eq!(
        next(&mut s).await,
        StreamPart::End(Some(StreamFailure {
            error_type: "StreamBroke".into(),
            body: Bytes::from_static(doc),
        }))
    );
    assert_eq!(guarded("202", reply).await.unwrap().0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_stream_cut_before_its_last_chunk_ends_truncated() {
    let api = start(RuntimeApiConfig::default());
    let ticket = dispatch(&api, "s3").await;
    let mut conn = tokio::net::TcpStream::connect(api.local_addr())
        .await
        .unwrap();
    conn.write_all(
        b"POST /2018-06-01/runtime/invocation/s3/response HTTP/1.1\r\nhost: x\r\n\
          lambda-runtime-function-response-mode: streaming\r\n\
          transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    let mut s = stream_of(ticket).await;
    assert_eq!(s.content_type(), None);
    assert_eq!(
        next(&mut s).await,
        StreamPart::Chunk(Bytes::from_static(b"hello"))
    );
    drop(conn);
    match next(&mut s).await {
        StreamPart::End(Some(f)) => assert_eq!(f.error_type, ERROR_TYPE_TRUNCATED_RESPONSE),
        other => panic!("expected a truncated end, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_over_the_cap_ends_too_large_and_the_runtime_gets_413() {
    let api = start(RuntimeApiConfig {
        max_stream_bytes: 10,
        ..RuntimeApiConfig::default()
    });
    let ticket = dispatch(&api, "s4").await;
    let (tx, reply) = post_stream(&api, "s4");
    let mut s = stream_of(ticket).await;
    send(&tx, b"123456").await;
    assert_eq!(
        next(&mut s).await,
        StreamPart::Chunk(Bytes::from_static(b"123456"))
    );
    send(&tx, b"789012").await;
    match next(&mut s).await {
        StreamPart::End(Some(f)) => assert_eq!(f.error_type, ERROR_TYPE_RESPONSE_TOO_LARGE),
        other => panic!("expected a too-large end, got {other:?}"),
    }
    // The rest of the upload is still read: the runtime finishes and gets its answer.
    send(&tx, b"more").await;
    drop(tx);
    assert_eq!(
        guarded("413", reply).await.unwrap().0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn an_abandoned_stream_is_read_to_its_end_and_answered_202() {
    let api = start(RuntimeApiConfig::default());
    let ticket = dispatch(&api, "s5").await;
    let (tx, reply) = post_stream(&api, "s5");
    let mut s = stream_of(ticket).await;
    send(&tx, b"first").await;
    assert_eq!(
        next(&mut s).await,
        StreamPart::Chunk(Bytes::from_static(b"first"))
    );
    drop(s);
    // Far more than the stream buffers: nothing reads them, yet the upload is not stalled.
    for _ in 0..100 {
        send(&tx, b"discarded").await;
    }
    drop(tx);
    assert_eq!(guarded("202", reply).await.unwrap().0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_ticket_dropped_before_the_stream_starts_discards_it() {
    let api = start(RuntimeApiConfig::default());
    let ticket = dispatch(&api, "s6").await;
    drop(ticket);
    let (tx, reply) = post_stream(&api, "s6");
    for _ in 0..50 {
        send(&tx, b"discarded").await;
    }
    drop(tx);
    assert_eq!(guarded("202", reply).await.unwrap().0, StatusCode::ACCEPTED);
    assert_eq!(api.in_flight(), 0);
}

#[tokio::test]
async fn an_unread_stream_stops_reading_the_upload() {
    let api = start(RuntimeApiConfig::default());
    let ticket = dispatch(&api, "s7").await;
    let mut conn = tokio::net::TcpStream::connect(api.local_addr())
        .await
        .unwrap();
    conn.write_all(
        b"POST /2018-06-01/runtime/invocation/s7/response HTTP/1.1\r\nhost: x\r\n\
          lambda-runtime-function-response-mode: streaming\r\n\
          transfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let mut s = stream_of(ticket).await;
    // The runtime writes 64 KiB chunks as fast as it can, until told to finish.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (progress, mut written) = tokio::sync::watch::channel(0usize);
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                conn.write_all(chunk.as_bytes()).await.unwrap();
                n += 1;
                progress.send_replace(n);
            }
            conn.write_all(b"0\r\n\r\n").await.unwrap();
            let mut head = [0u8; 12];
            conn.read_exact(&mut head).await.unwrap();
            (n, head)
        }
    });
    // With nobody reading the stream, its writes soon block: the endpoint buffers a few chunks
    // and the sockets some more, then stops reading.
    while tokio::time::timeout(Duration::from_millis(300), written.changed())
        .await
        .is_ok()
    {
        assert!(
            *written.borrow() < 1000,
            "64 MiB written without the stream being read"
        );
    }
    // Reading the stream lets the upload go on to its end and its 202.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut bytes = 0usize;
    let end = loop {
        match next(&mut s).await {
            StreamPart::Chunk(c) => bytes += c.len(),
            StreamPart::End(end) => break end,
        }
    };
    assert_eq!(end, None);
    let (n, head) = guarded("202", writer).await.unwrap();
    assert_eq!(bytes, n * 0x10000);
    assert_eq!(&head, b"HTTP/1.1 202");
}
