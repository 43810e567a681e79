//! The Extensions API (`2020-01-01`) as Lambda Managed Instances serves it, the Telemetry API
//! route and the Logs API answer, on the Runtime API's listener.
//!
//! Behaviour and error types follow AWS's own LMI implementation
//! (aws-lambda-runtime-interface-emulator, `internal/lambda-managed-instances/rapi/handler/`
//! and `core/externalagent.go`):
//!
//! * External extensions (the names the agent passed to `expect_extensions`, i.e. the files
//!   of `/opt/extensions`) may register for `SHUTDOWN` only: an environment serves many
//!   invokes at once, so LMI sends no `INVOKE` events and refuses to register for them
//!   (`403 Extension.InvalidEventType`). Other names register as internal extensions (started
//!   by the runtime), with no events, while registration is open.
//! * An extension is ready at its first `GET /event/next`; that request (and every later one)
//!   is held until `SHUTDOWN`. After `SHUTDOWN` was delivered, its next `/event/next` means it
//!   is done; that request is held until the environment goes away.
//! * Errors are `403 {"errorMessage","errorType"}`; `init/error` and `exit/error` answer
//!   `202 {"status":"OK"}`.
//! * The Logs API (`2020-08-15`) is not served on LMI ("Lambda Managed Instances do not support
//!   the Logs API", AWS's Logs API page): `404 Logs.NotSupported`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::server::{self, Body};
use crate::state::Shared;
use crate::{ERROR_TYPE_UNAVAILABLE, error_body};

type Resp = Response<Full<Bytes>>;

/// Path prefix of the Extensions API routes.
pub const EXTENSION_PREFIX: &str = "/2020-01-01/extension/";
/// The Telemetry API subscription route.
pub const TELEMETRY_PATH: &str = "/2022-07-01/telemetry";
/// The Logs API subscription route (not served on LMI).
pub const LOGS_PATH: &str = "/2020-08-15/logs";

/// Most extensions one environment may register (AWS's limit).
pub const MAX_EXTENSIONS: usize = 10;

/// `Lambda-Extension-Name`
pub const HDR_EXTENSION_NAME: &str = "lambda-extension-name";
/// `Lambda-Extension-Identifier`
pub const HDR_EXTENSION_ID: &str = "lambda-extension-identifier";
/// `Lambda-Extension-Accept-Feature`
pub const HDR_ACCEPT_FEATURE: &str = "lambda-extension-accept-feature";
/// `Lambda-Extension-Function-Error-Type`
pub const HDR_EXTENSION_ERROR_TYPE: &str = "lambda-extension-function-error-type";
/// `Lambda-Extension-Event-Identifier`, on each `/event/next` answer.
pub const HDR_EVENT_ID: &str = "lambda-extension-event-identifier";

/// Error type recorded for an `/extension/init/error` whose type is not `Extension.<Name>`.
pub const ERROR_TYPE_EXTENSION_INIT: &str = "Extension.InitError";
/// Error type recorded for an `/extension/exit/error` whose type is not `Extension.<Name>`.
pub const ERROR_TYPE_EXTENSION_EXIT: &str = "Extension.ExitError";
/// Error type the agent reports when an extension process exits on its own.
pub const ERROR_TYPE_EXTENSION_CRASH: &str = "Extension.Crash";

/// Largest `init/error`/`exit/error` body kept; the rest is discarded.
const MAX_EXTENSION_ERROR_BYTES: usize = 64 * 1024;
/// Largest register body.
const MAX_REGISTER_BYTES: usize = 64 * 1024;
/// Largest telemetry subscription body.
const MAX_SUBSCRIBE_BYTES: usize = 64 * 1024;

/// What `register` answers about the function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionContext {
    pub function_name: String,
    pub function_version: String,
    pub handler: String,
    /// Sent when the extension asks for it (`Lambda-Extension-Accept-Feature: accountId`).
    pub account_id: Option<String>,
}

/// An `/extension/init/error` or `/extension/exit/error` an extension posted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("extension {name} reported {error_type}")]
pub struct ExtensionError {
    /// The extension's registered name.
    pub name: String,
    /// `Extension.<Name>` from `Lambda-Extension-Function-Error-Type`, else
    /// [`ERROR_TYPE_EXTENSION_INIT`] / [`ERROR_TYPE_EXTENSION_EXIT`].
    pub error_type: String,
    /// The body as posted (normally `{"errorMessage","errorType","stackTrace"}`), possibly empty.
    pub body: Bytes,
}

/// Why extension init did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionInitError {
    /// An extension posted `/extension/init/error` (or `/extension/exit/error`) during init.
    #[error("{0}")]
    Reported(ExtensionError),
    /// The endpoint shut down while waiting.
    #[error("the runtime API endpoint shut down")]
    Closed,
}

impl ExtensionInitError {
    /// The error type to report (`Extension.InitError`, ...; `Runtime.Unavailable` when closed).
    pub fn error_type(&self) -> &str {
        match self {
            ExtensionInitError::Reported(e) => &e.error_type,
            ExtensionInitError::Closed => ERROR_TYPE_UNAVAILABLE,
        }
    }
}

/// `shutdownReason` of the `SHUTDOWN` event. LMI has no `timeout` reason: invokes time out on
/// their own there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownReason {
    /// The environment is being retired normally.
    Spindown,
    /// The environment failed (runtime or extension crash, ...).
    Failure,
}

/// Lifecycle state of a registered extension (the `state` of `platform.extension`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionState {
    /// Registered, has not called `/event/next` yet.
    Registered,
    /// Called `/event/next`.
    Ready,
    /// Posted `/extension/init/error`.
    InitError,
    /// Posted `/extension/exit/error`.
    ExitError,
}

impl ExtensionState {
    /// `Registered`, `Ready`, `InitError`, `ExitError`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionState::Registered => "Registered",
            ExtensionState::Ready => "Ready",
            ExtensionState::InitError => "InitError",
            ExtensionState::ExitError => "ExitError",
        }
    }
}

/// A registered extension, as [`crate::RuntimeApi::extensions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionInfo {
    /// Its `Lambda-Extension-Identifier`.
    pub id: String,
    pub name: String,
    /// Started from `/opt/extensions` (else an internal extension of the runtime).
    pub external: bool,
    /// The events it registered for (`["SHUTDOWN"]` or none).
    pub events: Vec<String>,
    pub state: ExtensionState,
}

#[derive(Debug)]
struct Ext {
    id: String,
    name: String,
    external: bool,
    wants_shutdown: bool,
    state: ExtensionState,
    /// The parked `/event/next`: its id and where its event goes.
    waiter: Option<(u64, oneshot::Sender<Bytes>)>,
    shutdown_sent: bool,
    /// Finished with `SHUTDOWN` (or never to get it).
    done: bool,
}

#[derive(Debug, Default)]
struct ExtState {
    context: ExtensionContext,
    expected: Vec<String>,
    list: Vec<Ext>,
    registration_closed: bool,
    init_finished: bool,
    /// The rendered `SHUTDOWN` event, once shutdown began.
    shutdown: Option<Bytes>,
    init_error: Option<ExtensionError>,
    next_waiter: u64,
    closed: bool,
}

/// The extensions of one environment.
#[derive(Debug)]
pub(crate) struct Extensions {
    state: Mutex<ExtState>,
    /// Bumped on every change the waiters below look at.
    changed: watch::Sender<u64>,
    errors: watch::Sender<Option<ExtensionError>>,
}

impl Default for Extensions {
    fn default() -> Self {
        Self {
            state: Mutex::new(ExtState::default()),
            changed: watch::Sender::new(0),
            errors: watch::Sender::new(None),
        }
    }
}

impl Extensions {
    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn set_context(&self, ctx: ExtensionContext) {
        self.state.lock().context = ctx;
    }

    pub(crate) fn expect(&self, names: Vec<String>) {
        self.state.lock().expected = names;
        self.bump();
    }

    pub(crate) fn list(&self) -> Vec<ExtensionInfo> {
        self.state
            .lock()
            .list
            .iter()
            .map(|e| ExtensionInfo {
                id: e.id.clone(),
                name: e.name.clone(),
                external: e.external,
                events: if e.wants_shutdown {
                    vec!["SHUTDOWN".to_owned()]
                } else {
                    Vec::new()
                },
                state: e.state,
            })
            .collect()
    }

    /// Registers `name` (external, for `SHUTDOWN`) under a fixed id.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn insert_registered(&self, id: &str, name: &str) {
        self.state.lock().list.push(Ext {
            id: id.to_owned(),
            name: name.to_owned(),
            external: true,
            wants_shutdown: true,
            state: ExtensionState::Registered,
            waiter: None,
            shutdown_sent: false,
            done: false,
        });
        self.bump();
    }

    pub(crate) fn watch_errors(&self) -> watch::Receiver<Option<ExtensionError>> {
        self.errors.subscribe()
    }

    /// Waits until `done(state)` gives a result.
    async fn wait<T>(&self, mut done: impl FnMut(&ExtState) -> Option<T>) -> T {
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(v) = done(&self.state.lock()) {
                return v;
            }
            // The sender lives in `self`, so this cannot fail while we are borrowed.
            let _ = rx.changed().await;
        }
    }

    fn all_registered(st: &ExtState) -> bool {
        st.expected
            .iter()
            .all(|n| st.list.iter().any(|e| e.external && &e.name == n))
    }

    fn init_outcome(st: &ExtState) -> Option<Result<(), ExtensionInitError>> {
        if let Some(err) = &st.init_error {
            return Some(Err(ExtensionInitError::Reported(err.clone())));
        }
        st.closed.then_some(Err(ExtensionInitError::Closed))
    }

    pub(crate) async fn registered(&self) -> Result<(), ExtensionInitError> {
        self.wait(|st| {
            Self::init_outcome(st).or_else(|| Self::all_registered(st).then_some(Ok(())))
        })
        .await
    }

    pub(crate) async fn ready(&self) -> Result<(), ExtensionInitError> {
        self.wait(|st| {
            Self::init_outcome(st).or_else(|| {
                (Self::all_registered(st)
                    && st.list.iter().all(|e| e.state == ExtensionState::Ready))
                .then_some(Ok(()))
            })
        })
        .await
    }

    pub(crate) fn finish_init(&self) {
        let mut st = self.state.lock();
        st.registration_closed = true;
        st.init_finished = true;
    }

    pub(crate) fn shutdown(&self, reason: ShutdownReason, deadline_ms: u64) {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ShutdownEvent {
            event_type: &'static str,
            shutdown_reason: ShutdownReason,
            deadline_ms: u64,
        }
        let event = Bytes::from(
            serde_json::to_vec(&ShutdownEvent {
                event_type: "SHUTDOWN",
                shutdown_reason: reason,
                deadline_ms,
            })
            .unwrap_or_default(),
        );
        {
            let mut st = self.state.lock();
            if st.shutdown.is_some() {
                return;
            }
            st.shutdown = Some(event.clone());
            st.registration_closed = true;
            for ext in &mut st.list {
                if !ext.wants_shutdown
                    || matches!(
                        ext.state,
                        ExtensionState::InitError | ExtensionState::ExitError
                    )
                {
                    ext.done = true;
                } else if let Some((_, tx)) = ext.waiter.take()
                    && tx.send(event.clone()).is_ok()
                {
                    ext.shutdown_sent = true;
                }
                // Otherwise it gets the event with its next `/event/next`.
            }
        }
        self.bump();
    }

    pub(crate) async fn shut_down(&self) {
        self.wait(|st| (st.closed || st.list.iter().all(|e| e.done)).then_some(()))
            .await
    }

    pub(crate) fn close(&self) {
        {
            let mut st = self.state.lock();
            st.closed = true;
            st.registration_closed = true;
            for ext in &mut st.list {
                ext.waiter = None;
            }
        }
        self.bump();
    }
}

/// Whether `path` belongs to the Extensions, Telemetry or Logs API.
pub(crate) fn is_extension_path(path: &str) -> bool {
    path.starts_with(EXTENSION_PREFIX)
        || path.trim_end_matches('/') == TELEMETRY_PATH
        || path.trim_end_matches('/') == LOGS_PATH
}

/// Serves the Extensions, Telemetry and Logs API routes (see [`is_extension_path`]).
pub(crate) async fn route(shared: &Arc<Shared>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path();
    let (method, handler): (Method, Handler) = if let Some(rest) =
        path.strip_prefix(EXTENSION_PREFIX)
    {
        match rest {
            "register" => (Method::POST, Handler::Register),
            "event/next" => (Method::GET, Handler::Next),
            "init/error" => (Method::POST, Handler::InitError),
            "exit/error" => (Method::POST, Handler::ExitError),
            _ => return not_found(),
        }
    } else if path.trim_end_matches('/') == TELEMETRY_PATH {
        (Method::PUT, Handler::Telemetry)
    } else if path.trim_end_matches('/') == LOGS_PATH {
        server::drain(req.into_body()).await;
        return server::json(
            StatusCode::NOT_FOUND,
            error_body(
                "Logs.NotSupported",
                "The Logs API (2020-08-15) is not supported on Lambda Managed Instances; subscribe with the Telemetry API instead (PUT /2022-07-01/telemetry, schemaVersion 2025-01-29).",
            ),
        );
    } else {
        return not_found();
    };
    if req.method() != method {
        server::drain(req.into_body()).await;
        return server::json(
            StatusCode::METHOD_NOT_ALLOWED,
            error_body("MethodNotAllowed", "Method not allowed"),
        );
    }
    match handler {
        Handler::Register => register(shared, req).await,
        Handler::Next => next(shared, req).await,
        Handler::InitError => report_error(shared, req, false).await,
        Handler::ExitError => report_error(shared, req, true).await,
        Handler::Telemetry => subscribe(shared, req).await,
    }
}

enum Handler {
    Register,
    Next,
    InitError,
    ExitError,
    Telemetry,
}

fn forbidden(error_type: &str, message: &str) -> Resp {
    server::json(StatusCode::FORBIDDEN, error_body(error_type, message))
}

fn not_found() -> Resp {
    server::json(
        StatusCode::NOT_FOUND,
        error_body("NotFound", "No such Extensions API route"),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest {
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    configuration_keys: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RegisterResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    function_name: &'a str,
    function_version: &'a str,
    handler: &'a str,
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, String> {
    match server::read_limited(req.into_body(), limit).await {
        Body::Complete(b) => Ok(b),
        Body::TooLarge(rest) => {
            if let Some(rest) = rest {
                server::drain(rest).await;
            }
            Err(format!("the request body exceeds {limit} bytes"))
        }
        Body::Truncated => Err("the request body was cut off".to_owned()),
    }
}

async fn register(shared: &Shared, req: Request<Incoming>) -> Resp {
    let name = server::header_string(&req, HDR_EXTENSION_NAME).unwrap_or_default();
    if name.is_empty() {
        server::drain(req.into_body()).await;
        return forbidden(
            "Extension.InvalidExtensionName",
            "Empty extension name: send the Lambda-Extension-Name header (the extension's file name in /opt/extensions).",
        );
    }
    let wants_account = req
        .headers()
        .get(HDR_ACCEPT_FEATURE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|f| f.trim() == "accountId"));
    let body = match read_body(req, MAX_REGISTER_BYTES).await {
        Ok(b) => b,
        Err(msg) => return forbidden("InvalidRequestFormat", &msg),
    };
    let request: RegisterRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return forbidden(
                "InvalidRequestFormat",
                &format!("The register body must be {{\"events\":[\"SHUTDOWN\"]}}: {e}"),
            );
        }
    };
    if !request.configuration_keys.is_empty() {
        return forbidden(
            "InvalidRequestFormat",
            "configurationKeys are deprecated; use environment variables instead",
        );
    }
    let mut wants_shutdown = false;
    let ext = &shared.extensions;
    let (id, context) = {
        let mut st = ext.state.lock();
        let external = st.expected.contains(&name);
        if external {
            for e in &request.events {
                match e.as_str() {
                    "SHUTDOWN" => wants_shutdown = true,
                    "INVOKE" => {
                        return forbidden(
                            "Extension.InvalidEventType",
                            "INVOKE: Lambda Managed Instances deliver only the SHUTDOWN event to extensions (one environment serves many invokes at once); register with {\"events\":[\"SHUTDOWN\"]}.",
                        );
                    }
                    other => {
                        return forbidden(
                            "Extension.InvalidEventType",
                            &format!(
                                "{other}: not an event type; extensions may register for SHUTDOWN only."
                            ),
                        );
                    }
                }
            }
            if st.list.iter().any(|e| e.external && e.name == name) {
                return forbidden(
                    "Extension.InvalidExtensionState",
                    &format!(
                        "State transition from Registered to Registered failed for extension {name}. Error: the extension is already registered"
                    ),
                );
            }
        } else {
            if !request.events.is_empty() {
                return forbidden(
                    "Extension.InvalidEventType",
                    &format!(
                        "No events allowed for internal extensions ({name} is not a file in /opt/extensions)"
                    ),
                );
            }
            if st.registration_closed {
                return forbidden(
                    "Extension.RegistrationClosed",
                    "Extension registration closed already",
                );
            }
            if st.list.iter().any(|e| e.name == name) {
                return forbidden(
                    "Extension.InvalidExtensionState",
                    "Extension with this name already registered",
                );
            }
        }
        if st.list.len() >= MAX_EXTENSIONS {
            return forbidden(
                "Extension.TooManyExtensions",
                &format!("Extension limit ({MAX_EXTENSIONS}) reached"),
            );
        }
        let id = uuid::Uuid::new_v4().to_string();
        st.list.push(Ext {
            id: id.clone(),
            name: name.clone(),
            external,
            wants_shutdown,
            state: ExtensionState::Registered,
            waiter: None,
            shutdown_sent: false,
            done: false,
        });
        (id, st.context.clone())
    };
    ext.bump();
    tracing::debug!(extension = %name, %id, "extension registered");
    let body = serde_json::to_vec(&RegisterResponse {
        account_id: if wants_account {
            context.account_id.as_deref()
        } else {
            None
        },
        function_name: &context.function_name,
        function_version: &context.function_version,
        handler: &context.handler,
    })
    .unwrap_or_default();
    let mut resp = server::json(StatusCode::OK, Bytes::from(body));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut()
            .insert(HeaderName::from_static(HDR_EXTENSION_ID), v);
    }
    resp
}

/// The extension id from `Lambda-Extension-Identifier`, or the `403` to answer.
#[allow(clippy::result_large_err)] // the error is the answer, built once on a cold path
fn extension_id(req: &Request<Incoming>) -> Result<String, Resp> {
    let Some(raw) = req
        .headers()
        .get(HDR_EXTENSION_ID)
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty())
    else {
        return Err(forbidden(
            "Extension.MissingExtensionIdentifier",
            "Missing Lambda-Extension-Identifier header",
        ));
    };
    match std::str::from_utf8(raw)
        .ok()
        .and_then(|s| uuid::Uuid::parse_str(s.trim()).ok())
    {
        Some(id) => Ok(id.to_string()),
        None => Err(forbidden(
            "Extension.InvalidExtensionIdentifier",
            "Invalid Lambda-Extension-Identifier",
        )),
    }
}

fn unknown_extension(id: &str) -> Resp {
    forbidden(
        "Extension.UnknownExtensionIdentifier",
        &format!("Unknown extension {id}: register first (POST /2020-01-01/extension/register)"),
    )
}

/// Clears the parked `/event/next` when its handler goes away before answering (its
/// connection closed), and marks the extension done if it had been handed `SHUTDOWN`.
struct NextGuard<'a> {
    ext: &'a Extensions,
    id: String,
    waiter: u64,
    rx: Option<oneshot::Receiver<Bytes>>,
}

impl Drop for NextGuard<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        rx.close();
        let delivered = rx.try_recv().is_ok();
        {
            let mut st = self.ext.state.lock();
            let Some(e) = st.list.iter_mut().find(|e| e.id == self.id) else {
                return;
            };
            if e.waiter.as_ref().is_some_and(|(w, _)| *w == self.waiter) {
                e.waiter = None;
            }
            if delivered {
                // It was handed SHUTDOWN but went away before reading it.
                e.done = true;
            }
        }
        if delivered {
            self.ext.bump();
        }
    }
}

enum NextStep {
    Answer(Bytes),
    Hold,
    Park(u64, oneshot::Receiver<Bytes>),
}

async fn next(shared: &Shared, req: Request<Incoming>) -> Resp {
    let id = match extension_id(&req) {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    server::drain(req.into_body()).await;
    let ext = &shared.extensions;
    let step = {
        let mut st = ext.state.lock();
        let shutdown = st.shutdown.clone();
        if st.closed {
            NextStep::Hold
        } else {
            let waiter_id = st.next_waiter;
            st.next_waiter += 1;
            let Some(e) = st.list.iter_mut().find(|e| e.id == id) else {
                return unknown_extension(&id);
            };
            match e.state {
                ExtensionState::InitError | ExtensionState::ExitError => {
                    return forbidden(
                        "Extension.InvalidExtensionState",
                        &format!(
                            "State transition from {} to Ready failed for extension {id}. Error: the extension reported an error",
                            e.state.as_str()
                        ),
                    );
                }
                ExtensionState::Registered => e.state = ExtensionState::Ready,
                ExtensionState::Ready => {}
            }
            match shutdown {
                Some(_) if e.shutdown_sent || !e.wants_shutdown => {
                    e.done = true;
                    NextStep::Hold
                }
                Some(event) => {
                    e.shutdown_sent = true;
                    NextStep::Answer(event)
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    e.waiter = Some((waiter_id, tx));
                    NextStep::Park(waiter_id, rx)
                }
            }
        }
    };
    ext.bump();
    let event = match step {
        NextStep::Answer(event) => event,
        // Never answered: the environment is going away (or this extension is done).
        NextStep::Hold => std::future::pending().await,
        NextStep::Park(waiter, rx) => {
            let mut guard = NextGuard {
                ext,
                id,
                waiter,
                rx: Some(rx),
            };
            let received = guard.rx.as_mut().expect("set above").await;
            guard.rx = None;
            match received {
                Ok(event) => event,
                Err(_) => std::future::pending().await,
            }
        }
    };
    let mut resp = server::json(StatusCode::OK, event);
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut()
            .insert(HeaderName::from_static(HDR_EVENT_ID), v);
    }
    resp
}

/// Whether `s` contains `Extension.` followed by an upper-case letter and more letters (AWS's
/// `Extension\.[A-Z][a-zA-Z]+`, unanchored).
fn is_extension_error_type(s: &str) -> bool {
    s.match_indices("Extension.").any(|(i, m)| {
        let rest = &s.as_bytes()[i + m.len()..];
        rest.len() >= 2 && rest[0].is_ascii_uppercase() && rest[1].is_ascii_alphabetic()
    })
}

async fn report_error(shared: &Shared, req: Request<Incoming>, exit: bool) -> Resp {
    let id = match extension_id(&req) {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let Some(raw_type) = server::header_string(&req, HDR_EXTENSION_ERROR_TYPE) else {
        server::drain(req.into_body()).await;
        return forbidden(
            "Extension.MissingHeader",
            "Lambda-Extension-Function-Error-Type not found",
        );
    };
    let error_type = if is_extension_error_type(&raw_type) {
        raw_type
    } else if exit {
        ERROR_TYPE_EXTENSION_EXIT.to_owned()
    } else {
        ERROR_TYPE_EXTENSION_INIT.to_owned()
    };
    let body = match server::read_limited(req.into_body(), MAX_EXTENSION_ERROR_BYTES).await {
        Body::Complete(b) => b,
        Body::TooLarge(rest) => {
            if let Some(rest) = rest {
                server::drain(rest).await;
            }
            error_body(&error_type, "The extension's error document was too large.")
        }
        Body::Truncated => Bytes::new(),
    };
    let ext = &shared.extensions;
    let err = {
        let mut st = ext.state.lock();
        let init_open = !st.init_finished;
        let Some(e) = st.list.iter_mut().find(|e| e.id == id) else {
            return forbidden(
                "Extension.UnknownExtensionIdentifier",
                "Unknown Lambda-Extension-Identifier",
            );
        };
        let target = if exit {
            ExtensionState::ExitError
        } else {
            ExtensionState::InitError
        };
        if matches!(
            e.state,
            ExtensionState::InitError | ExtensionState::ExitError
        ) {
            return forbidden(
                "Extension.InvalidExtensionState",
                &format!(
                    "State transition from {} to {} failed for extension {id}. Error: the extension already reported an error",
                    e.state.as_str(),
                    target.as_str()
                ),
            );
        }
        e.state = target;
        e.done = true;
        e.waiter = None;
        let err = ExtensionError {
            name: e.name.clone(),
            error_type,
            body,
        };
        if init_open && st.init_error.is_none() {
            st.init_error = Some(err.clone());
        }
        err
    };
    tracing::debug!(extension = %err.name, error_type = %err.error_type, exit, "extension reported an error");
    if exit {
        ext.errors.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(err);
            true
        });
    }
    ext.bump();
    server::json(
        StatusCode::ACCEPTED,
        Bytes::from_static(br#"{"status":"OK"}"#),
    )
}

async fn subscribe(shared: &Shared, req: Request<Incoming>) -> Resp {
    let id = match extension_id(&req) {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let Some(name) = shared
        .extensions
        .state
        .lock()
        .list
        .iter()
        .find(|e| e.id == id)
        .map(|e| e.name.clone())
    else {
        server::drain(req.into_body()).await;
        return unknown_extension(&id);
    };
    let body = match read_body(req, MAX_SUBSCRIBE_BYTES).await {
        Ok(b) => b,
        Err(msg) => return validation_error(&msg),
    };
    let valid = match crate::telemetry::validate(&body) {
        Ok(v) => v,
        Err(msg) => return validation_error(&msg),
    };
    match shared.telemetry.subscribe(&id, &name, valid) {
        Ok(()) => server::json(StatusCode::OK, Bytes::from_static(b"\"OK\"")),
        Err(crate::telemetry::Closed) => forbidden(
            "Telemetry.SubscriptionClosed",
            "Telemetry API subscription is closed: extensions subscribe during init",
        ),
    }
}

fn validation_error(msg: &str) -> Resp {
    server::json(StatusCode::BAD_REQUEST, error_body("ValidationError", msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_error_types_match_aws_pattern() {
        assert!(is_extension_error_type("Extension.InitError"));
        assert!(is_extension_error_type("Foo Extension.Crash"));
        assert!(!is_extension_error_type("Extension.x"));
        assert!(!is_extension_error_type("Extension.A"));
        assert!(!is_extension_error_type("Runtime.Unknown"));
        assert!(!is_extension_error_type("Extension."));
    }
}
