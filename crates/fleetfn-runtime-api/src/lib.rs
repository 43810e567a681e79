//! The Lambda Runtime API (version `2018-06-01`) endpoint of one fleetfn execution environment.
//!
//! In Lambda Managed Instances (LMI) an execution environment is one long-lived runtime process
//! tree that serves up to `AWS_LAMBDA_MAX_CONCURRENCY` invokes at once. The runtime finds this
//! endpoint through `AWS_LAMBDA_RUNTIME_API=host:port` and keeps up to N concurrent
//! `GET /2018-06-01/runtime/invocation/next` long polls open. This crate owns exactly that
//! endpoint, as a library the agent embeds (one [`RuntimeApi`] per environment):
//!
//! * the HTTP/1.1 server (keep-alive, `TCP_NODELAY`) on a loopback port; while a streamed
//!   `/response` is read, its connection ACKs at once (`TCP_QUICKACK`), so a runtime that keeps
//!   Nagle's algorithm on does not hold each small write for a delayed ACK;
//! * the set of parked `/next` long polls, and the hand-off of each invoke to exactly one of them
//!   ([`RuntimeApi::try_dispatch`]); with no parked `/next` the invoke is rejected at once
//!   ([`Rejected::NoIdleWorker`]): there is no queue;
//! * the table of in-flight invokes and the routing of `/invocation/{id}/response` and
//!   `/invocation/{id}/error` back to the caller's [`InvokeTicket`];
//! * `/init/error`, surfaced as an [`InitError`] the agent can watch;
//! * readiness (the first parked `/next`), and failing every in-flight invoke when the runtime
//!   process dies ([`RuntimeApi::fail_all_in_flight`]).
//!
//! It does not own the runtime process, invoke timeouts, throttling policy or logs: those belong
//! to the agent. In particular a ticket is never timed out here; the agent drops it when the
//! invoke's deadline passes.
//!
//! # Contract with the runtime
//!
//! * `/next` never answers with an error while the endpoint is running (runtime clients such as
//!   `lambda_runtime` retry `/next` immediately, so an error would hot-loop). It is held open with
//!   no timeout until an invoke is handed to it or the client goes away.
//! * Waiters are served **LIFO**: the most recently parked `/next` gets the next invoke. The newest
//!   long poll is the one least likely to sit on a connection the client has silently given up.
//! * A `/next` whose connection closed is removed from the parked set as soon as the server sees
//!   the close. If an invoke was handed to it in the window before that, and its response had not
//!   been produced yet, the invoke is passed on to another parked `/next`, or, with none parked,
//!   its ticket resolves to a [`Outcome::FunctionError`] of type [`ERROR_TYPE_UNAVAILABLE`].
//!   An invoke whose `/next` response was already written to a dead socket is lost like on any
//!   network: the agent's deadline covers that case.
//! * `/response` and `/error` for an unknown or already completed request id get `400`
//!   `{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}` (as the AWS runtime
//!   interface emulator answers). Success is `202 {"status":"OK"}`.
//! * A `/response` body over [`RuntimeApiConfig::max_response_bytes`] (6 MiB by default) gets
//!   `413` `{"errorMessage":"Exceeded maximum allowed payload size (6291456 bytes).","errorType":
//!   "RequestEntityTooLarge"}` and the invoke resolves to a `Function.ResponseSizeTooLarge`
//!   function error. The rest of an oversized body is read and discarded before the `413` is sent
//!   so the runtime's HTTP client never sees a reset mid-upload.
//! * A `/response` with `Lambda-Runtime-Function-Response-Mode: streaming` (chunked, as
//!   `lambda_runtime`'s `StreamResponse` and Node's `streamifyResponse` send it) resolves the
//!   ticket at once to [`Outcome::Stream`], whose [`ResponseStream`] yields the body chunk by
//!   chunk as it arrives (a few chunks are buffered, then the upload is not read further:
//!   backpressure to the runtime's socket), then one [`StreamPart::End`]. A mid-stream error
//!   comes as the `Lambda-Runtime-Function-Error-Type` and `Lambda-Runtime-Function-Error-Body`
//!   (base64 of the error document) trailers; a body cut off ends with
//!   `Runtime.TruncatedResponse`; over [`RuntimeApiConfig::max_stream_bytes`] (200 MiB) it ends
//!   with `Function.ResponseSizeTooLarge` and the runtime gets `413` once its upload is read.
//!   Otherwise the runtime gets `202` after the body ends. A dropped ticket or stream makes the
//!   rest of the upload be read and discarded. (`lambda_runtime` 1.5 writes a stream's error
//!   as text in the body rather than as trailers; it arrives as data.)
//! * A ticket dropped by the agent (for example on its invoke timeout) stays in flight, since the
//!   runtime is still working on it; its later `/response` or `/error` gets `202` and is
//!   discarded. Only ids that are unknown or already completed get `400`.
//! * Each answer is timed for the telemetry `responseLatency`/`responseDuration` spans
//!   ([`ResponseTiming`]: headers read, or a stream's first chunk, to the end of the body; two
//!   `Instant::now()` per answer, nothing allocated): [`InvokeTicket::timing`] once the ticket
//!   resolved, [`ResponseStream::timing`] once the stream ended.
//! * `Lambda-Runtime-Client-Context` and `Lambda-Runtime-Cognito-Identity` are passed through as
//!   given; `lambda_runtime` parses them as JSON, and a value it cannot parse makes that worker
//!   loop exit, so the agent should only pass JSON there.
//!
//! # Extensions, Telemetry and Logs APIs
//!
//! The same listener (and peer filter) serves the Extensions API (`/2020-01-01/extension/`)
//! and the Telemetry API (`PUT /2022-07-01/telemetry`), and answers the Logs API
//! (`/2020-08-15/logs`), as Lambda Managed Instances does. AWS's own LMI implementation
//! (aws-lambda-runtime-interface-emulator, `internal/lambda-managed-instances/`) is the
//! reference for behaviour and error types:
//!
//! * extensions register for `SHUTDOWN` only (`INVOKE`: `403 Extension.InvalidEventType`; one
//!   environment serves many invokes at once, so LMI sends no per-invoke events); names not
//!   announced with [`RuntimeApi::expect_extensions`] register as internal extensions, with no
//!   events; at most [`MAX_EXTENSIONS`]; every other refusal is a `403` with AWS's `errorType`;
//! * Telemetry subscriptions take schema `2025-01-29` (records in LMI's shapes, e.g.
//!   `initializationType` `lambda-managed-instances`) and also `2022-12-13`/`2022-07-01`
//!   (records in the shapes clients of those parse: the unchanged `lambda-extension` crate
//!   sends `2022-07-01`); buffering and destination are validated like AWS (`400
//!   ValidationError`); delivery is per subscriber, in order, batched by `maxItems`/`maxBytes`/
//!   `timeoutMs`, over one kept-alive connection made by a [`TelemetryConnector`]; a slow
//!   subscriber holds at most three batches, the rest is dropped and reported with
//!   `platform.logsDropped`; records from before a subscription (init) are replayed to it;
//! * the Logs API is not served on LMI: `404 Logs.NotSupported`.
//!
//! The agent drives an environment's extensions with:
//!
//! 1. [`RuntimeApi::set_extension_context`] (what `register` answers) and
//!    [`RuntimeApi::expect_extensions`] (the file names of `/opt/extensions`, before starting
//!    them: only those may register for `SHUTDOWN`);
//! 2. [`RuntimeApi::extensions_registered`]: every expected extension registered (LMI starts
//!    the runtime then); [`RuntimeApi::extensions_ready`]: and every registered extension
//!    called `/event/next` (init is complete when this and [`RuntimeApi::ready`] hold); both
//!    fail with the first `/extension/init/error`;
//! 3. [`RuntimeApi::finish_init`]: closes registration and Telemetry subscriptions and frees
//!    the init-phase telemetry buffer;
//! 4. records into [`RuntimeApi::telemetry`] ([`Telemetry::emit`], one atomic load when
//!    nothing listens: check [`Telemetry::is_active`] before building a record on a hot path);
//! 5. [`RuntimeApi::watch_extension_errors`] for `/extension/exit/error`;
//! 6. on stop: [`Telemetry::flush`] (bounded by a timeout), [`RuntimeApi::shutdown_extensions`]
//!    (`SHUTDOWN` with its deadline), then [`RuntimeApi::extensions_shut_down`] (every extension
//!    that registered for `SHUTDOWN` asked for its next event again) alongside the processes'
//!    exits.
//!
//! LMI delivers no `INVOKE` events to extensions, so there is nothing to call per invoke.

#![forbid(unsafe_code)]

mod extensions;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod server;
mod state;
mod telemetry;

pub use crate::extensions::{
    ERROR_TYPE_EXTENSION_CRASH, ERROR_TYPE_EXTENSION_EXIT, ERROR_TYPE_EXTENSION_INIT,
    EXTENSION_PREFIX, ExtensionContext, ExtensionError, ExtensionInfo, ExtensionInitError,
    ExtensionState, HDR_EVENT_ID, HDR_EXTENSION_ID, HDR_EXTENSION_NAME, LOGS_PATH, MAX_EXTENSIONS,
    ShutdownReason, TELEMETRY_PATH,
};
pub use crate::telemetry::delivery::{LoopbackConnector, TelemetryConnector};
pub use crate::telemetry::records::{
    ExtensionRecord, INITIALIZATION_TYPE, InitPhase, InitReport, InitReportMetrics,
    InitRuntimeDone, InitStart, LogLine, LogsDropped, PlatformEvent, Report, ReportMetrics,
    RuntimeDone, RuntimeDoneMetrics, Span, Start, Status, TelemetryRecord,
    TelemetrySubscriptionRecord, TraceContext,
};
pub use crate::telemetry::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEMS, DEFAULT_TIMEOUT_MS, INIT_BUFFER_BYTES,
    INIT_BUFFER_RECORDS, MAX_BYTES_RANGE, MAX_ITEMS_RANGE, SCHEMA_VERSIONS, Subscription,
    TIMEOUT_MS_RANGE, Telemetry,
};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::state::Shared;

/// Path prefix of every Runtime API route.
pub const API_PREFIX: &str = "/2018-06-01/runtime/";

/// fleetfn's container credentials endpoint on the Runtime API listener
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI` = `http://<AWS_LAMBDA_RUNTIME_API><this>`): `GET` with
/// `Authorization: <AWS_CONTAINER_AUTHORIZATION_TOKEN>` answers the execution role's current
/// credentials, the document the AWS SDKs' container credential provider reads.
pub const CREDENTIALS_PATH: &str = "/2018-06-01/credentials";

/// What [`CREDENTIALS_PATH`] serves, and to whom.
#[derive(Clone)]
pub(crate) struct ServedCredentials {
    pub(crate) token: String,
    pub(crate) document: Bytes,
}

impl std::fmt::Debug for ServedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServedCredentials")
    }
}

/// Largest `/response` body accepted by default: 6 MiB, Lambda's synchronous response limit.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Largest streamed response by default: 200 MiB, Lambda's limit for streamed responses.
pub const MAX_STREAM_BYTES: u64 = 200 * 1024 * 1024;

/// `Lambda-Runtime-Function-Response-Mode`: `streaming` marks a streamed `/response`.
pub const HDR_RESPONSE_MODE: &str = "lambda-runtime-function-response-mode";

/// Trailer of a streamed `/response` that failed mid-stream: the error type.
pub const TRAILER_ERROR_TYPE: &str = "lambda-runtime-function-error-type";

/// Trailer of a streamed `/response` that failed mid-stream: the error document, base64.
pub const TRAILER_ERROR_BODY: &str = "lambda-runtime-function-error-body";

/// Error type of an invoke whose runtime response exceeded the payload limit.
pub const ERROR_TYPE_RESPONSE_TOO_LARGE: &str = "Function.ResponseSizeTooLarge";

/// Error type the agent passes to [`RuntimeApi::fail_all_in_flight`] when the runtime process
/// exits.
pub const ERROR_TYPE_EXIT: &str = "Runtime.ExitError";

/// Error type of an invoke that could not be delivered or completed because the endpoint shut
/// down or the `/next` it was handed to went away before the invoke was written to it.
pub const ERROR_TYPE_UNAVAILABLE: &str = "Runtime.Unavailable";

/// Error type of an invoke whose `/response` or `/error` body was cut off (the runtime closed the
/// connection mid-body).
pub const ERROR_TYPE_TRUNCATED_RESPONSE: &str = "Runtime.TruncatedResponse";

/// Error type recorded for a `/invocation/{id}/error` that carries no
/// `Lambda-Runtime-Function-Error-Type` header.
pub const ERROR_TYPE_UNHANDLED: &str = "Unhandled";

/// Error type recorded for a `/init/error` that carries no `Lambda-Runtime-Function-Error-Type`
/// header.
pub const ERROR_TYPE_RUNTIME_UNKNOWN: &str = "Runtime.Unknown";

/// Limits of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeApiConfig {
    /// Largest `/invocation/{id}/response` body; larger gets `413` and a
    /// `Function.ResponseSizeTooLarge` outcome.
    pub max_response_bytes: usize,
    /// Largest `/invocation/{id}/error` and `/init/error` body; larger is treated like an
    /// oversized response (invoke errors) or replaced by a short message (init errors).
    pub max_error_bytes: usize,
    /// Largest streamed response (all chunks together); beyond it the stream ends with
    /// `Function.ResponseSizeTooLarge`.
    pub max_stream_bytes: u64,
}

impl Default for RuntimeApiConfig {
    fn default() -> Self {
        Self {
            max_response_bytes: MAX_RESPONSE_BYTES,
            max_error_bytes: MAX_RESPONSE_BYTES,
            max_stream_bytes: MAX_STREAM_BYTES,
        }
    }
}

/// One invoke to hand to the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`; must be unique among in-flight invokes.
    pub request_id: String,
    /// The event, sent as the `/next` response body.
    pub payload: Bytes,
    /// `Lambda-Runtime-Deadline-Ms`: the deadline as Unix epoch milliseconds.
    pub deadline_ms: u64,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub invoked_function_arn: String,
    /// `Lambda-Runtime-Trace-Id`, sent when set.
    pub trace_id: Option<String>,
    /// `Lambda-Runtime-Client-Context` (JSON), sent when set.
    pub client_context: Option<String>,
    /// `Lambda-Runtime-Cognito-Identity` (JSON), sent when set.
    pub cognito_identity: Option<String>,
    /// `Lambda-Runtime-Aws-Tenant-Id`, sent when set.
    pub tenant_id: Option<String>,
}

/// How an invoke ended, as seen by the caller of [`RuntimeApi::try_dispatch`].
///
/// Equality compares the buffered variants; a [`Outcome::Stream`] equals nothing (not even
/// itself), since its body is still arriving.
#[derive(Debug)]
pub enum Outcome {
    /// The runtime posted `/invocation/{id}/response` with this body.
    Response(Bytes),
    /// The runtime is streaming its response (`/invocation/{id}/response` with
    /// `Lambda-Runtime-Function-Response-Mode: streaming`): read it from the [`ResponseStream`]
    /// as it is written. Dropping the stream abandons the rest (it is read and discarded).
    Stream(ResponseStream),
    /// The invoke failed: the runtime posted `/invocation/{id}/error` (type from the
    /// `Lambda-Runtime-Function-Error-Type` header, body as posted, normally
    /// `{"errorMessage":..,"errorType":..,"stackTrace":[..]}`), or this endpoint failed it
    /// (oversized response, [`RuntimeApi::fail_all_in_flight`], shutdown).
    FunctionError {
        /// The error type, e.g. `Unhandled`, `Runtime.ExitError`.
        error_type: String,
        /// The error document (JSON).
        body: Bytes,
    },
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Outcome::Response(a), Outcome::Response(b)) => a == b,
            (
                Outcome::FunctionError {
                    error_type: ta,
                    body: ba,
                },
                Outcome::FunctionError {
                    error_type: tb,
                    body: bb,
                },
            ) => ta == tb && ba == bb,
            _ => false,
        }
    }
}

impl Outcome {
    /// A function error whose body is `{"errorMessage":message,"errorType":error_type}`.
    pub fn function_error(error_type: &str, message: &str) -> Self {
        Outcome::FunctionError {
            error_type: error_type.to_owned(),
            body: error_body(error_type, message),
        }
    }
}

/// A function error that ends a streamed response: from the `Lambda-Runtime-Function-Error-Type`
/// and `Lambda-Runtime-Function-Error-Body` (base64) trailers, or set by this endpoint (a cut
/// stream: [`ERROR_TYPE_TRUNCATED_RESPONSE`]; an oversized one:
/// [`ERROR_TYPE_RESPONSE_TOO_LARGE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailure {
    pub error_type: String,
    /// The error document (normally `{"errorMessage":..,"errorType":..}`).
    pub body: Bytes,
}

impl StreamFailure {
    /// A failure whose body is `{"errorMessage":message,"errorType":error_type}`.
    pub fn new(error_type: &str, message: &str) -> Self {
        Self {
            error_type: error_type.to_owned(),
            body: error_body(error_type, message),
        }
    }
}

/// One piece of a streamed response: chunks in order, then exactly one `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPart {
    Chunk(Bytes),
    /// `None`: the runtime finished its response; otherwise how it failed mid-stream.
    End(Option<StreamFailure>),
}

/// The caller's end of a streamed response. The runtime's upload is read only as fast as
/// [`ResponseStream::next`] takes its chunks (a few are buffered): backpressure reaches the
/// runtime's socket. Dropping it discards the rest of the upload, which is still read to its
/// end so the runtime sees no reset.
#[derive(Debug)]
pub struct ResponseStream {
    content_type: Option<String>,
    rx: tokio::sync::mpsc::Receiver<(StreamPart, Option<ResponseTiming>)>,
    ended: bool,
    timing: Option<ResponseTiming>,
}

impl ResponseStream {
    pub(crate) fn new(
        content_type: Option<String>,
        rx: tokio::sync::mpsc::Receiver<(StreamPart, Option<ResponseTiming>)>,
    ) -> Self {
        Self {
            content_type,
            rx,
            ended: false,
            timing: None,
        }
    }

    /// When the runtime sent this stream (its first chunk) and finished it; `None` until
    /// [`ResponseStream::next`] gave the [`StreamPart::End`], and for a stream the endpoint
    /// ended itself (shutdown).
    pub fn timing(&self) -> Option<ResponseTiming> {
        self.timing
    }

    /// The `Content-Type` the runtime declared (e.g.
    /// `application/vnd.awslambda.http-integration-response`), if any.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The next part: chunks, then one [`StreamPart::End`], then `None`. An endpoint that shut
    /// down mid-stream ends it with [`ERROR_TYPE_UNAVAILABLE`].
    pub async fn next(&mut self) -> Option<StreamPart> {
        if self.ended {
            return None;
        }
        let (part, timing) = self.rx.recv().await.unwrap_or_else(|| {
            let end = StreamPart::End(Some(StreamFailure::new(
                ERROR_TYPE_UNAVAILABLE,
                "The runtime API endpoint shut down while the response was streaming.",
            )));
            (end, None)
        });
        if timing.is_some() {
            self.timing = timing;
        }
        self.ended = matches!(part, StreamPart::End(_));
        Some(part)
    }
}

/// When the runtime answered an invoke, for the `responseLatency` / `responseDuration` spans of
/// its telemetry records: `started` is when it began sending its answer (the `/response` or
/// `/error` request's headers were read; for a streamed response, its first body chunk), `ended`
/// when the answer was read to its end. The latency span runs from the caller's
/// [`RuntimeApi::try_dispatch`] to `started`, the duration span from `started` to `ended`.
/// Available from [`InvokeTicket::timing`] once the ticket resolved with a buffered outcome, and
/// from [`ResponseStream::timing`] once a stream gave its [`StreamPart::End`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseTiming {
    pub started: std::time::Instant,
    pub ended: std::time::Instant,
}

impl ResponseTiming {
    /// `started` to `ended`: how long sending the answer took.
    pub fn duration(&self) -> std::time::Duration {
        self.ended.saturating_duration_since(self.started)
    }
}

/// What the server hands an invoke's ticket: the outcome and, when the runtime answered it, when.
pub(crate) type Completion = (Outcome, Option<ResponseTiming>);

/// A `POST /2018-06-01/runtime/init/error` from the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitError {
    /// From the `Lambda-Runtime-Function-Error-Type` header, or `Runtime.Unknown` without one.
    pub error_type: String,
    /// The body as posted (normally `{"errorMessage":..,"errorType":..}`).
    pub body: Bytes,
}

/// Why [`RuntimeApi::try_dispatch`] refused an invoke. The invoke was not handed to the runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// No `/next` long poll is parked: every runtime worker is busy (or none has started).
    #[error("no idle runtime worker: no /next long poll is parked")]
    NoIdleWorker,
    /// An invoke with this request id is already in flight in this environment.
    #[error("request id {0:?} is already in flight")]
    DuplicateRequestId(String),
    /// A field cannot be sent as an HTTP header value (control characters, non-visible ASCII).
    #[error("{0} is not a valid HTTP header value")]
    InvalidHeaderValue(&'static str),
    /// The endpoint was shut down.
    #[error("the runtime API endpoint is shut down")]
    Closed,
}

/// The caller's end of one dispatched invoke. Await it (or [`InvokeTicket::outcome`]) for the
/// [`Outcome`]. Dropping it abandons the result; the invoke stays in flight until the runtime
/// answers it (that answer then gets `202` and is discarded) or it is failed.
#[derive(Debug)]
#[must_use = "an invoke's outcome is only seen through its ticket"]
pub struct InvokeTicket {
    request_id: Arc<str>,
    rx: oneshot::Receiver<Completion>,
    timing: Option<ResponseTiming>,
}

impl InvokeTicket {
    /// The request id of this invoke.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Waits for the outcome (same as awaiting the ticket).
    pub async fn outcome(self) -> Outcome {
        self.await
    }

    /// When the runtime sent its `/response` or `/error` and when it was read to its end, once
    /// the ticket resolved (await `&mut ticket` to keep it). `None` before, for an invoke the
    /// endpoint failed itself (runtime exit, shutdown, a cut-off body), and for
    /// [`Outcome::Stream`] (see [`ResponseStream::timing`]).
    pub fn timing(&self) -> Option<ResponseTiming> {
        self.timing
    }
}

impl Future for InvokeTicket {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        Pin::new(&mut self.rx).poll(cx).map(|res| match res {
            Ok((outcome, timing)) => {
                self.timing = timing;
                outcome
            }
            Err(_) => Outcome::function_error(
                ERROR_TYPE_UNAVAILABLE,
                "The runtime API endpoint shut down before the invoke completed.",
            ),
        })
    }
}

/// Decides whether a new connection, given its (peer, local) addresses, may use the endpoint.
pub type PeerFilter = Arc<dyn Fn(SocketAddr, SocketAddr) -> bool + Send + Sync>;

/// A running Runtime API endpoint for one execution environment.
///
/// Dropping it (or calling [`RuntimeApi::shutdown`]) stops the server, closes every connection
/// and resolves all outstanding tickets with [`ERROR_TYPE_UNAVAILABLE`].
#[derive(Debug)]
pub struct RuntimeApi {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    cancel: CancellationToken,
}

impl RuntimeApi {
    /// Binds `addr` (normally `127.0.0.1:0`) and starts serving on the current Tokio runtime.
    ///
    /// Must be called from within a Tokio runtime; fails with an `io::Error` otherwise.
    pub fn bind(addr: SocketAddr, cfg: RuntimeApiConfig) -> io::Result<RuntimeApi> {
        Self::serve(std::net::TcpListener::bind(addr)?, cfg, None)
    }

    /// Serves on an already bound `std_listener` (e.g. one bound inside the environment's
    /// network namespace). With `peer_filter`, each new connection is served only if the filter
    /// accepts its (peer, local) addresses; a refused one is closed before any byte is read.
    pub fn serve(
        std_listener: std::net::TcpListener,
        cfg: RuntimeApiConfig,
        peer_filter: Option<PeerFilter>,
    ) -> io::Result<RuntimeApi> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            io::Error::other(format!("RuntimeApi::serve needs a Tokio runtime: {e}"))
        })?;
        std_listener.set_nonblocking(true)?;
        let local_addr = std_listener.local_addr()?;
        let listener = {
            let _guard = handle.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared::new(cfg));
        let cancel = CancellationToken::new();
        handle.spawn(server::accept_loop(
            listener,
            Arc::clone(&shared),
            cancel.clone(),
            peer_filter,
        ));
        tracing::debug!(%local_addr, "runtime API endpoint listening");
        Ok(RuntimeApi {
            shared,
            local_addr,
            cancel,
        })
    }

    /// Serves `document` (JSON) at [`CREDENTIALS_PATH`] to requests whose `Authorization` is
    /// `token`, replacing what was served before.
    pub fn set_credentials(&self, token: &str, document: Bytes) {
        *self.shared.credentials.write() = Some(ServedCredentials {
            token: token.to_owned(),
            document,
        });
    }

    /// The bound address; `AWS_LAMBDA_RUNTIME_API` is this as `host:port`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Hands `inv` to exactly one parked `/next` (the most recently parked one) and returns its
    /// ticket, or rejects it at once. Never waits.
    pub fn try_dispatch(&self, inv: Invocation) -> Result<InvokeTicket, Rejected> {
        self.shared.dispatch(inv)
    }

    /// Number of `/next` long polls parked right now (idle runtime workers).
    pub fn parked(&self) -> usize {
        self.shared.parked()
    }

    /// Number of invokes handed to the runtime and not yet answered or failed.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Whether a `/next` has ever been parked (the runtime finished init).
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Resolves `Ok` once the first `/next` is parked (immediately if that already happened), or
    /// `Err` with the runtime's init error if `/init/error` comes first. Pair it with the
    /// runtime process's exit and an init timeout: a runtime that dies silently resolves neither.
    pub async fn ready(&self) -> Result<(), InitError> {
        let mut ready = self.shared.ready.subscribe();
        let mut init = self.shared.init_error.subscribe();
        loop {
            if *ready.borrow_and_update() {
                return Ok(());
            }
            if let Some(err) = init.borrow_and_update().clone() {
                return Err(err);
            }
            // The senders live in `self.shared`, so neither `changed` can fail while we wait.
            tokio::select! {
                _ = ready.changed() => {}
                _ = init.changed() => {}
            }
        }
    }

    /// The runtime's first `/init/error`, `None` until one arrives.
    pub fn init_error(&self) -> watch::Receiver<Option<InitError>> {
        self.shared.init_error.subscribe()
    }

    /// Waits until `pred(parked())` holds and returns that count. Woken on every park and unpark,
    /// so no polling.
    pub async fn wait_parked(&self, mut pred: impl FnMut(usize) -> bool) -> usize {
        loop {
            let notified = self.shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let n = self.parked();
            if pred(n) {
                return n;
            }
            notified.await;
        }
    }

    /// Resolves every outstanding ticket with a function error of `error_type` and body
    /// `{"errorMessage":message,"errorType":error_type}`, and forgets those request ids (a later
    /// `/response` for them gets `400`). Use [`ERROR_TYPE_EXIT`] when the runtime process died.
    /// Returns how many invokes were failed.
    pub fn fail_all_in_flight(&self, error_type: &str, message: &str) -> usize {
        self.shared.fail_all(error_type, message)
    }

    /// What `POST /2020-01-01/extension/register` answers about the function.
    pub fn set_extension_context(&self, ctx: ExtensionContext) {
        self.shared.extensions.set_context(ctx);
    }

    /// The external extensions started (the file names in `/opt/extensions`): they, and only
    /// they, may register for `SHUTDOWN`; init waits for each of them to register. Other names
    /// register as internal extensions (no events). Call before starting them.
    pub fn expect_extensions(&self, names: Vec<String>) {
        self.shared.extensions.expect(names);
    }

    /// Resolves once every expected extension registered; `Err` on the first
    /// `/extension/init/error` (or `exit/error`) during init, or if the endpoint shuts down.
    /// Pair it with the extensions' processes and the init timeout.
    pub async fn extensions_registered(&self) -> Result<(), ExtensionInitError> {
        self.shared.extensions.registered().await
    }

    /// Resolves once every expected extension registered and every registered extension
    /// (internal ones too) called `/event/next`; errors as [`RuntimeApi::extensions_registered`].
    pub async fn extensions_ready(&self) -> Result<(), ExtensionInitError> {
        self.shared.extensions.ready().await
    }

    /// Ends init: further registrations get `403 Extension.RegistrationClosed`, Telemetry
    /// subscriptions `403 Telemetry.SubscriptionClosed`, and the records kept for late
    /// subscribers are dropped. Idempotent.
    pub fn finish_init(&self) {
        self.shared.extensions.finish_init();
        self.shared.telemetry.close_subscriptions();
    }

    /// The registered extensions, in registration order (for `platform.extension` records).
    pub fn extensions(&self) -> Vec<ExtensionInfo> {
        self.shared.extensions.list()
    }

    /// The first `/extension/exit/error` an extension posted, `None` until one arrives.
    pub fn watch_extension_errors(&self) -> watch::Receiver<Option<ExtensionError>> {
        self.shared.extensions.watch_errors()
    }

    /// Sends `SHUTDOWN` (`deadline_ms`: Unix epoch milliseconds) to every extension that
    /// registered for it: at once to a parked `/event/next`, else with its next one. Only the
    /// first call counts.
    pub fn shutdown_extensions(&self, reason: ShutdownReason, deadline_ms: u64) {
        self.shared.extensions.shutdown(reason, deadline_ms);
    }

    /// Resolves once every registered extension is done with `SHUTDOWN`: it called
    /// `/event/next` again after receiving it, went away while it was being handed over,
    /// reported an error, or never registered for it. Bound it by the deadline.
    pub async fn extensions_shut_down(&self) {
        self.shared.extensions.shut_down().await
    }

    /// The environment's telemetry hub.
    pub fn telemetry(&self) -> &Telemetry {
        &self.shared.telemetry
    }

    /// Stops the server: rejects further dispatches, closes every connection and resolves all
    /// outstanding tickets with [`ERROR_TYPE_UNAVAILABLE`]. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        if self.cancel.is_cancelled() {
            return;
        }
        self.cancel.cancel();
        self.shared.close();
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `{"errorMessage":message,"errorType":error_type}` as bytes.
pub(crate) fn error_body(error_type: &str, message: &str) -> Bytes {
    let v = serde_json::json!({ "errorMessage": message, "errorType": error_type });
    Bytes::from(v.to_string())
}
