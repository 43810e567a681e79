//! The HTTP/1.1 side: accept loop, routing and the four Runtime API routes.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::state::{Delivery, Shared};
use crate::{
    API_PREFIX, ERROR_TYPE_RESPONSE_TOO_LARGE, ERROR_TYPE_RUNTIME_UNKNOWN,
    ERROR_TYPE_TRUNCATED_RESPONSE, ERROR_TYPE_UNHANDLED, InitError, Outcome, ResponseStream,
    ResponseTiming, StreamFailure, StreamPart, error_body,
};

const HDR_FUNCTION_ERROR_TYPE: &str = "lambda-runtime-function-error-type";

type Resp = Response<Full<Bytes>>;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    peer_filter: Option<crate::PeerFilter>,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off a little instead of spinning.
                tracing::warn!(error = %e, "runtime API accept failed");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set TCP_NODELAY failed");
        }
        let shared = Arc::clone(&shared);
        let cancel = cancel.clone();
        let peer_filter = peer_filter.clone();
        tokio::spawn(async move {
            if let Some(allowed) = peer_filter {
                let local = stream.local_addr();
                if !local.is_ok_and(|local| allowed(peer, local)) {
                    tracing::warn!(%peer, "runtime API connection refused: not from the environment's own processes");
                    return;
                }
            }
            let streaming = StreamingUpload::default();
            let io = QuickAck {
                stream,
                streaming: streaming.clone(),
            };
            let conn = serve_connection(io, shared, streaming);
            if let Some(Err(e)) = cancel.run_until_cancelled(conn).await {
                tracing::debug!(%peer, error = %e, "runtime API connection ended");
            }
        });
    }
}

/// Whether a streamed `/response` is being read on a connection: set by its handler, read by
/// the connection's [`QuickAck`].
#[derive(Clone, Default)]
pub(crate) struct StreamingUpload(Arc<AtomicBool>);

impl StreamingUpload {
    /// Marks the upload as under way until the guard is dropped.
    fn begin(&self) -> UploadGuard<'_> {
        self.0.store(true, Ordering::Relaxed);
        UploadGuard(self)
    }

    fn active(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

struct UploadGuard<'a>(&'a StreamingUpload);

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.0.0.store(false, Ordering::Relaxed);
    }
}

/// An accepted Runtime API socket that ACKs at once while a streamed `/response` is read.
///
/// A runtime's HTTP client may keep Nagle's algorithm on (`lambda_runtime`'s does): then its
/// second small write of a streamed body (a function's first chunk after the prelude) waits in
/// its kernel until the first is ACKed, and Linux delays that ACK (40 ms at least) on a
/// connection in interactive mode, which every request/answer exchange puts it in. So while
/// an upload is streamed, `TCP_QUICKACK` is set before each read: it leaves interactive mode
/// and sends a pending ACK at once. Linux drops it again by itself, hence before every read.
/// Other requests pay one atomic load per read.
struct QuickAck {
    stream: TcpStream,
    streaming: StreamingUpload,
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.streaming.active()
            && let Err(e) = socket2::SockRef::from(&this.stream).set_tcp_quickack(true)
        {
            tracing::debug!(error = %e, "set TCP_QUICKACK failed");
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Serves the Runtime API on one connection until it closes. `streaming` is set while a
/// streamed `/response` is read on it.
pub(crate) async fn serve_connection<I>(
    io: I,
    shared: Arc<Shared>,
    streaming: StreamingUpload,
) -> hyper::Result<()>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let svc = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        let streaming = streaming.clone();
        async move { Ok::<_, Infallible>(route(shared, &streaming, req).await) }
    });
    http1::Builder::new()
        .keep_alive(true)
        // `/next` is held open indefinitely; nothing here may time a connection out.
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), svc)
        .await
}

async fn route(shared: Arc<Shared>, streaming: &StreamingUpload, req: Request<Incoming>) -> Resp {
    let Some(rest) = req.uri().path().strip_prefix(API_PREFIX) else {
        if req.uri().path() == crate::CREDENTIALS_PATH {
            return credentials(&shared, &req);
        }
        if crate::extensions::is_extension_path(req.uri().path()) {
            return crate::extensions::route(&shared, req).await;
        }
        return not_found();
    };
    enum Route {
        Next,
        Response(String),
        Error(String),
        InitError,
    }
    let route = match rest {
        "invocation/next" => Route::Next,
        "init/error" => Route::InitError,
        _ => match rest
            .strip_prefix("invocation/")
            .and_then(|r| r.rsplit_once('/'))
        {
            Some((id, "response")) if valid_id(id) => Route::Response(id.to_owned()),
            Some((id, "error")) if valid_id(id) => Route::Error(id.to_owned()),
            _ => return not_found(),
        },
    };
    let method_ok = match route {
        Route::Next => req.method() == Method::GET,
        _ => req.method() == Method::POST,
    };
    if !method_ok {
        // Drain whatever was sent so the connection stays usable.
        drain(req.into_body()).await;
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            error_body("MethodNotAllowed", "Method not allowed"),
        );
    }
    match route {
        Route::Next => next(shared).await,
        Route::Response(id) => response(&shared, &id, req, streaming).await,
        Route::Error(id) => invocation_error(&shared, &id, req).await,
        Route::InitError => init_error(&shared, req).await,
    }
}

/// `GET` [`crate::CREDENTIALS_PATH`]: the role's credentials for the holder of the token.
fn credentials(shared: &Shared, req: &Request<Incoming>) -> Resp {
    if req.method() != Method::GET {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            error_body("MethodNotAllowed", "Method not allowed"),
        );
    }
    let Some(served) = shared.credentials.read().clone() else {
        return json(
            StatusCode::NOT_FOUND,
            error_body(
                "CredentialsNotAvailable",
                "This environment has no execution role credentials: the server does not assume roles (fleetfn serve --assume-roles).",
            ),
        );
    };
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if !same_secret(given, served.token.as_bytes()) {
        return json(
            StatusCode::FORBIDDEN,
            error_body(
                "AccessDenied",
                "The Authorization header must be the value of AWS_CONTAINER_AUTHORIZATION_TOKEN.",
            ),
        );
    }
    json(StatusCode::OK, served.document)
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.contains('/')
}

/// Unparks itself (or passes on an invoke it was handed) when the `/next` handler is dropped
/// before it took its invoke, i.e. when hyper saw the connection close.
struct ParkGuard {
    shared: Arc<Shared>,
    id: u64,
    rx: Option<oneshot::Receiver<Delivery>>,
}

impl Drop for ParkGuard {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            self.shared.abandon(self.id, &mut rx);
        }
    }
}

async fn next(shared: Arc<Shared>) -> Resp {
    let (tx, rx) = oneshot::channel();
    let id = shared.park(tx);
    let mut guard = ParkGuard {
        shared,
        id,
        rx: Some(rx),
    };
    let received = guard.rx.as_mut().expect("set above").await;
    guard.rx = None;
    match received {
        Ok(Delivery {
            headers, payload, ..
        }) => {
            let mut resp = Response::new(Full::new(payload));
            *resp.headers_mut() = headers;
            resp
        }
        // The endpoint shut down and dropped the waiter. Never answer `/next` with an error:
        // hold it until the connection is torn down.
        Err(_) => std::future::pending().await,
    }
}

async fn response(
    shared: &Shared,
    id: &str,
    req: Request<Incoming>,
    streaming: &StreamingUpload,
) -> Resp {
    if req
        .headers()
        .get(crate::HDR_RESPONSE_MODE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"))
    {
        let _quickack = streaming.begin();
        return streamed_response(shared, id, req).await;
    }
    // The headers were just read: the runtime started sending its answer (responseLatency ends).
    let started = Instant::now();
    let limit = shared.cfg.max_response_bytes;
    match read_limited(req.into_body(), limit).await {
        Body::Complete(bytes) => match shared.take(id) {
            Some(tx) => {
                let timing = timing_since(started);
                if tx.send((Outcome::Response(bytes), timing)).is_err() {
                    tracing::debug!(request_id = id, "response for an abandoned ticket dropped");
                }
                accepted()
            }
            None => invalid_request_id(),
        },
        Body::TooLarge(rest) => {
            // Fail the invoke right away, then swallow the rest of the upload.
            let known = match shared.take(id) {
                Some(tx) => {
                    let outcome = Outcome::function_error(
                        ERROR_TYPE_RESPONSE_TOO_LARGE,
                        &format!(
                            "Response payload size exceeded maximum allowed payload size ({limit} bytes)."
                        ),
                    );
                    let _ = tx.send((outcome, timing_since(started)));
                    true
                }
                None => false,
            };
            if let Some(rest) = rest {
                drain(rest).await;
            }
            if known {
                too_large(limit)
            } else {
                invalid_request_id()
            }
        }
        Body::Truncated => truncated(shared, id),
    }
}

/// How many chunks wait between the runtime's upload and the reader of its [`ResponseStream`]
/// before the upload is no longer read.
const STREAM_BUFFER: usize = 8;

/// A streamed `/response`: hands the ticket a [`ResponseStream`] at once, then forwards the
/// body chunk by chunk as it arrives. Mid-stream errors come as the
/// `Lambda-Runtime-Function-Error-Type` / `-Body` (base64) trailers. Whoever reads the stream
/// may stop (dropped ticket or stream): the rest is read and discarded so the runtime finishes
/// its upload and gets its `202`.
async fn streamed_response(shared: &Shared, id: &str, req: Request<Incoming>) -> Resp {
    let content_type = header_string(&req, CONTENT_TYPE.as_str());
    let mut body = req.into_body();
    let Some(tx) = shared.take(id) else {
        drain(body).await;
        return invalid_request_id();
    };
    let (parts_tx, parts_rx) = mpsc::channel(STREAM_BUFFER);
    let mut sink = tx
        .send((
            Outcome::Stream(ResponseStream::new(content_type, parts_rx)),
            None,
        ))
        .is_ok()
        .then_some(parts_tx);
    if sink.is_none() {
        tracing::debug!(request_id = id, "streamed response for an abandoned ticket");
    }
    let limit = shared.cfg.max_stream_bytes;
    let mut total = 0u64;
    let mut failure: Option<StreamFailure> = None;
    // When the first chunk arrived: a streaming runtime sends its headers before it has
    // anything to say, so its answer starts with its first byte.
    let mut first_chunk: Option<Instant> = None;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(_)) => {
                end_stream(
                    sink,
                    Some(StreamFailure::new(
                        ERROR_TYPE_TRUNCATED_RESPONSE,
                        "The runtime's streamed response was cut off before its end.",
                    )),
                    first_chunk,
                )
                .await;
                return json(
                    StatusCode::BAD_REQUEST,
                    error_body("TruncatedHTTPRequest", "HTTP request detected as truncated"),
                );
            }
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    failure = trailer_failure(&trailers);
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        if first_chunk.is_none() {
            first_chunk = Some(Instant::now());
        }
        total = total.saturating_add(data.len() as u64);
        if total > limit {
            end_stream(
                sink,
                Some(StreamFailure::new(
                    ERROR_TYPE_RESPONSE_TOO_LARGE,
                    &format!(
                        "Response payload size exceeded maximum allowed payload size ({limit} bytes)."
                    ),
                )),
                first_chunk,
            )
            .await;
            drain(body).await;
            return too_large(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        if let Some(s) = &sink
            && s.send((StreamPart::Chunk(data), None)).await.is_err()
        {
            tracing::debug!(
                request_id = id,
                "streamed response abandoned; discarding the rest"
            );
            sink = None;
        }
    }
    end_stream(sink, failure, first_chunk).await;
    accepted()
}

/// Ends a stream now; its timing starts at its first chunk (at its end when it had none).
async fn end_stream(
    sink: Option<mpsc::Sender<(StreamPart, Option<ResponseTiming>)>>,
    failure: Option<StreamFailure>,
    first_chunk: Option<Instant>,
) {
    if let Some(s) = sink {
        let ended = Instant::now();
        let timing = ResponseTiming {
            started: first_chunk.unwrap_or(ended),
            ended,
        };
        let _ = s.send((StreamPart::End(failure), Some(timing))).await;
    }
}

/// An answer that started at `started` and was read to its end just now.
fn timing_since(started: Instant) -> Option<ResponseTiming> {
    Some(ResponseTiming {
        started,
        ended: Instant::now(),
    })
}

/// The function error the trailers of a streamed response carry, if any. The body trailer is
/// base64 of the error document (taken as is if it does not decode); without it the document
/// is built from the type.
fn trailer_failure(trailers: &http::HeaderMap) -> Option<StreamFailure> {
    let error_type = trailers
        .get(crate::TRAILER_ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())?;
    let body = trailers
        .get(crate::TRAILER_ERROR_BODY)
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty())
        .map(|raw| {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(raw) {
                Ok(doc) => Bytes::from(doc),
                Err(_) => Bytes::copy_from_slice(raw),
            }
        })
        .unwrap_or_else(|| {
            error_body(
                error_type,
                "The function failed while streaming its response.",
            )
        });
    Some(StreamFailure {
        error_type: error_type.to_owned(),
        body,
    })
}

async fn invocation_error(shared: &Shared, id: &str, req: Request<Incoming>) -> Resp {
    let error_type = header_string(&req, HDR_FUNCTION_ERROR_TYPE)
        .unwrap_or_else(|| ERROR_TYPE_UNHANDLED.to_owned());
    // As for `/response`: the runtime started sending its answer.
    let started = Instant::now();
    let limit = shared.cfg.max_error_bytes;
    match read_limited(req.into_body(), limit).await {
        Body::Complete(body) => match shared.take(id) {
            Some(tx) => {
                let timing = timing_since(started);
                if tx
                    .send((Outcome::FunctionError { error_type, body }, timing))
                    .is_err()
                {
                    tracing::debug!(request_id = id, "error for an abandoned ticket dropped");
                }
                accepted()
            }
            None => invalid_request_id(),
        },
        Body::TooLarge(rest) => {
            let known = match shared.take(id) {
                Some(tx) => {
                    let outcome = Outcome::function_error(
                        ERROR_TYPE_RESPONSE_TOO_LARGE,
                        &format!(
                            "Error payload size exceeded maximum allowed payload size ({limit} bytes)."
                        ),
                    );
                    let _ = tx.send((outcome, timing_since(started)));
                    true
                }
                None => false,
            };
            if let Some(rest) = rest {
                drain(rest).await;
            }
            if known {
                too_large(limit)
            } else {
                invalid_request_id()
            }
        }
        Body::Truncated => truncated(shared, id),
    }
}

async fn init_error(shared: &Shared, req: Request<Incoming>) -> Resp {
    let error_type = header_string(&req, HDR_FUNCTION_ERROR_TYPE)
        .unwrap_or_else(|| ERROR_TYPE_RUNTIME_UNKNOWN.to_owned());
    let limit = shared.cfg.max_error_bytes;
    let body = match read_limited(req.into_body(), limit).await {
        Body::Complete(body) => body,
        Body::TooLarge(rest) => {
            if let Some(rest) = rest {
                drain(rest).await;
            }
            error_body(
                &error_type,
                &format!("Init error payload exceeded the maximum allowed size ({limit} bytes)."),
            )
        }
        Body::Truncated => error_body(&error_type, "Init error payload was truncated."),
    };
    tracing::debug!(error_type, "runtime posted /init/error");
    shared.record_init_error(InitError { error_type, body });
    accepted()
}

fn truncated(shared: &Shared, id: &str) -> Resp {
    // The runtime hung up mid-body; nobody will read this answer, but the invoke must end.
    let Some(tx) = shared.take(id) else {
        return invalid_request_id();
    };
    let outcome = Outcome::function_error(
        ERROR_TYPE_TRUNCATED_RESPONSE,
        "The runtime's response was cut off before its end.",
    );
    let _ = tx.send((outcome, None));
    json(
        StatusCode::BAD_REQUEST,
        error_body("TruncatedHTTPRequest", "HTTP request detected as truncated"),
    )
}

pub(crate) fn header_string(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

pub(crate) enum Body {
    Complete(Bytes),
    /// Over the limit; the unread rest of the body, if any, is handed back for draining.
    TooLarge(Option<Incoming>),
    Truncated,
}

/// Reads `body` up to `limit` bytes. Declared lengths over the limit are refused before reading.
pub(crate) async fn read_limited(mut body: Incoming, limit: usize) -> Body {
    use hyper::body::Body as _;
    let hint = body.size_hint();
    if hint.lower() > limit as u64 {
        return Body::TooLarge(Some(body));
    }
    // One data frame is the common case: keep it without copying.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) => return Body::Truncated,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        total += data.len();
        if total > limit {
            return Body::TooLarge(Some(body));
        }
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(f) => {
                let cap = hint
                    .upper()
                    .and_then(|u| usize::try_from(u).ok())
                    .unwrap_or(0)
                    .clamp(total, limit);
                buf.reserve(cap);
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
        }
    }
    Body::Complete(match first {
        Some(f) => f,
        None => buf.freeze(),
    })
}

/// Reads and discards the rest of a body, so the client can finish its upload and keep the
/// connection.
pub(crate) async fn drain(mut body: Incoming) {
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return;
        }
    }
}

pub(crate) fn json(status: StatusCode, body: Bytes) -> Resp {
    let len = body.len();
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

fn accepted() -> Resp {
    json(
        StatusCode::ACCEPTED,
        Bytes::from_static(br#"{"status":"OK"}"#),
    )
}

fn invalid_request_id() -> Resp {
    json(
        StatusCode::BAD_REQUEST,
        error_body("InvalidRequestID", "Invalid request ID"),
    )
}

fn too_large(limit: usize) -> Resp {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        error_body(
            "RequestEntityTooLarge",
            &format!("Exceeded maximum allowed payload size ({limit} bytes)."),
        ),
    )
}

fn not_found() -> Resp {
    json(
        StatusCode::NOT_FOUND,
        error_body("NotFound", "No such Runtime API route"),
    )
}
