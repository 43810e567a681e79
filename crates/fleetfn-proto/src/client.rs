//! A pooled HTTP/1.1 client for one agent: over a Unix domain socket (an agent on the same
//! host, `fleetfn serve`), plain HTTP or TLS. Its base URI and `Authorization` header are built
//! once, not per request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::{
    AgentReport, EnvironmentRequest, H_CLIENT_CONTEXT, H_FUNCTION_ERROR, H_REJECT_REASON,
    H_REQUEST_ID, H_TENANT_ID, PREFIX, ThrottleReason,
};

/// Deadline of control requests (start, stop) beyond any long-poll wait.
const CONTROL_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request never reached the agent (connection refused or failed): safe to retry
    /// elsewhere.
    #[error("agent {addr} unreachable: {detail}")]
    Unreachable { addr: SocketAddr, detail: String },
    /// The request may have reached the agent, but no answer came (reset, or no answer within
    /// the deadline): not safe to retry an invoke elsewhere.
    #[error("agent {addr} did not answer: {detail}")]
    NoAnswer { addr: SocketAddr, detail: String },
    #[error("agent {addr} answered {status}: {body}")]
    Status {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
    #[error("agent {addr} sent an unreadable answer: {detail}")]
    Decode { addr: SocketAddr, detail: String },
}

/// The outcome of an invoke sent to an agent.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeReply {
    /// The function ran; `function_error` is set when it failed (`Unhandled`).
    Done {
        payload: Bytes,
        function_error: Option<String>,
    },
    /// The environment could not take it (no idle worker, draining, over a ceiling);
    /// `detail` is the agent's explanation.
    Rejected {
        reason: ThrottleReason,
        detail: String,
    },
    /// The agent does not know the environment (it was stopped or replaced).
    Gone,
    /// The invoke itself is unacceptable (e.g. a client context that is not valid there).
    Invalid { reason: String },
}

/// The reply to [`AgentClient::invoke_stream`]: a whole reply, or a response being streamed.
#[derive(Debug)]
pub enum StreamedReply {
    /// Rejected, gone, invalid, or a function that answered buffered (or failed before it
    /// streamed): as from [`AgentClient::invoke`].
    Reply(InvokeReply),
    Stream(AgentStream),
}

/// A response the function streams, as the agent relays it.
#[derive(Debug)]
pub struct AgentStream {
    /// The content type the function declared, if any.
    pub content_type: Option<String>,
    /// Chunks, then exactly one [`crate::StreamPart::End`]. Dropping the receiver aborts the
    /// HTTP request, and the agent then abandons the invoke's response.
    pub parts: tokio::sync::mpsc::Receiver<crate::StreamPart>,
}

/// Parts buffered between the agent's connection and the reader of an [`AgentStream`].
const STREAM_BUFFER: usize = 4;

#[derive(Debug, Clone)]
pub struct AgentClient {
    /// The agent's TCP address: where it is called, or (over a Unix socket) how it is named.
    addr: SocketAddr,
    /// `http://<addr>/v1`, `https://<addr>/v1`, or `http://localhost/v1` over a Unix socket.
    base: Arc<str>,
    /// `Bearer <token>`, marked sensitive.
    auth: HeaderValue,
    /// The leader's term, sent with every start and stop ([`crate::H_TERM`]).
    term: Option<u64>,
    http: Http,
    /// The invoke stream to this agent, shared by every clone of this client.
    mux: Arc<crate::mux::InvokeMux>,
}

/// The pooled connections: plain, TLS or a Unix socket (never two: an agent that serves TLS
/// is never called over plain HTTP).
#[derive(Debug, Clone)]
enum Http {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<crate::tls::HttpsConnector, Full<Bytes>>),
    Unix(Client<UnixConnector, Full<Bytes>>),
}

/// Connects every request to one Unix domain socket, whatever its URI says.
#[derive(Debug, Clone)]
pub struct UnixConnector {
    path: Arc<PathBuf>,
}

impl tower_service::Service<http::Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let path = self.path.clone();
        Box::pin(async move {
            let connect = tokio::net::UnixStream::connect(path.as_path());
            match tokio::time::timeout(Duration::from_secs(2), connect).await {
                Ok(stream) => stream.map(hyper_util::rt::TokioIo::new),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {} timed out", path.display()),
                )),
            }
        })
    }
}

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

/// `Bearer <token>` as a sensitive header value.
fn bearer(token: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token"));
    v.set_sensitive(true);
    v
}

fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector
}

fn pool() -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256);
    b
}

impl AgentClient {
    /// Over plain HTTP.
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        Self {
            addr,
            base: format!("http://{addr}{PREFIX}").into(),
            auth: bearer(token),
            term: None,
            mux: Arc::default(),
            http: Http::Plain(pool().build(connector())),
        }
    }

    /// Over the agent's Unix domain socket at `path` (an agent on this host); `addr` names it in
    /// errors and reports.
    pub fn new_unix(addr: SocketAddr, path: &Path, token: &str) -> Self {
        Self {
            addr,
            base: format!("http://localhost{PREFIX}").into(),
            auth: bearer(token),
            term: None,
            mux: Arc::default(),
            http: Http::Unix(pool().build(UnixConnector {
                path: Arc::new(path.to_path_buf()),
            })),
        }
    }

    /// Whether it calls over a Unix domain socket.
    pub fn is_unix(&self) -> bool {
        matches!(self.http, Http::Unix(_))
    }

    /// Over TLS only, verifying the agent's certificate with `tls` for the address's IP.
    pub fn new_tls(addr: SocketAddr, token: &str, tls: &crate::tls::ClientTls) -> Self {
        Self {
            addr,
            base: format!("https://{addr}{PREFIX}").into(),
            auth: bearer(token),
            term: None,
            mux: Arc::default(),
            http: Http::Tls(pool().build(crate::tls::https_connector(
                Some(tls),
                connector(),
                false,
            ))),
        }
    }

    /// Starts and stops environments as the leader of `term` (agents refuse older terms).
    #[must_use]
    pub fn with_term(mut self, term: u64) -> Self {
        self.term = Some(term);
        self
    }

    /// A start or stop request, with the term when there is one.
    fn control(&self, method: Method, path: &str) -> http::request::Builder {
        let b = self.request(method, path);
        match self.term {
            Some(t) => b.header(crate::H_TERM, t),
            None => b,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        let mut uri = String::with_capacity(self.base.len() + path.len());
        uri.push_str(&self.base);
        uri.push_str(path);
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, self.auth.clone())
    }

    /// Sends a request over the pooled connections.
    fn start(&self, req: Request<Full<Bytes>>) -> hyper_util::client::legacy::ResponseFuture {
        match &self.http {
            Http::Plain(c) => c.request(req),
            Http::Tls(c) => c.request(req),
            Http::Unix(c) => c.request(req),
        }
    }

    fn request_error(&self, e: &hyper_util::client::legacy::Error) -> ClientError {
        if e.is_connect() {
            ClientError::Unreachable {
                addr: self.addr,
                detail: crate::tls::error_chain(e),
            }
        } else {
            ClientError::NoAnswer {
                addr: self.addr,
                detail: e.to_string(),
            }
        }
    }

    /// Sends a request and reads the whole answer within `deadline`.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        deadline: Duration,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), ClientError> {
        let exchange = async {
            let sent = match &self.http {
                Http::Plain(c) => c.request(req),
                Http::Tls(c) => c.request(req),
                Http::Unix(c) => c.request(req),
            };
            let resp = sent.await.map_err(|e| {
                if e.is_connect() {
                    ClientError::Unreachable {
                        addr: self.addr,
                        // With the cause: a refused connection, a certificate not trusted.
                        detail: crate::tls::error_chain(&e),
                    }
                } else {
                    ClientError::NoAnswer {
                        addr: self.addr,
                        detail: e.to_string(),
                    }
                }
            })?;
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| ClientError::NoAnswer {
                    addr: self.addr,
                    detail: e.to_string(),
                })?
                .to_bytes();
            Ok((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| ClientError::NoAnswer {
                addr: self.addr,
                detail: format!("no answer within {} ms", deadline.as_millis()),
            })??;
        Ok((parts.status, parts.headers, bytes))
    }

    fn status_error(&self, status: StatusCode, body: &Bytes) -> ClientError {
        ClientError::Status {
            addr: self.addr,
            status: status.as_u16(),
            body: String::from_utf8_lossy(body).chars().take(500).collect(),
        }
    }

    /// Asks the agent to run an environment (idempotent per id).
    pub async fn put_environment(
        &self,
        env_id: &str,
        spec: &EnvironmentRequest,
    ) -> Result<(), ClientError> {
        self.put_json(&format!("/environments/{env_id}"), spec)
            .await
    }

    /// `PUT` of a JSON document as a control call (with the leader's term).
    async fn put_json<T: serde::Serialize>(&self, path: &str, doc: &T) -> Result<(), ClientError> {
        let body = Bytes::from(serde_json::to_vec(doc).unwrap_or_default());
        let req = self
            .control(Method::PUT, path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Decode {
                addr: self.addr,
                detail: e.to_string(),
            })?;
        let (status, _, bytes) = self.send(req, CONTROL_DEADLINE).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.status_error(status, &bytes))
        }
    }

    /// Hands an environment renewed execution-role credentials.
    pub async fn put_credentials(
        &self,
        env_id: &str,
        credentials: &crate::RoleCredentials,
    ) -> Result<(), ClientError> {
        self.put_json(&format!("/environments/{env_id}/credentials"), credentials)
            .await
    }

    /// Drains and stops an environment; unknown ids are fine.
    pub async fn delete_environment(&self, env_id: &str) -> Result<(), ClientError> {
        let req = self
            .control(Method::DELETE, &format!("/environments/{env_id}"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Decode {
                addr: self.addr,
                detail: e.to_string(),
            })?;
        let (status, _, bytes) = self.send(req, CONTROL_DEADLINE).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.status_error(status, &bytes))
        }
    }

    /// The agent's report; with `after`, waits (up to `wait`) until its revision exceeds it.
    /// A leader's client sends its term, which the agent keeps if it is the highest it saw.
    pub async fn report(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<AgentReport, ClientError> {
        let path = match after {
            Some(n) => format!("/environments?after={n}&wait_ms={}", wait.as_millis()),
            None => "/environments".to_string(),
        };
        // With the term: the leader's polls tell an agent of a new term even when that
        // leader has nothing to start or stop there.
        let req = self
            .control(Method::GET, &path)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Decode {
                addr: self.addr,
                detail: e.to_string(),
            })?;
        let (status, _, bytes) = self.send(req, wait + CONTROL_DEADLINE).await?;
        if !status.is_success() {
            return Err(self.status_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            addr: self.addr,
            detail: e.to_string(),
        })
    }

    /// Opens the invoke stream ([`crate::stream`]): an HTTP/1.1 upgrade of the agent API.
    /// `None` when the agent does not have one (404). No invoke is in flight yet, so every
    /// failure is [`ClientError::Unreachable`] or the agent's status.
    pub(crate) async fn open_invoke_stream(
        &self,
    ) -> Result<Option<TokioIo<hyper::upgrade::Upgraded>>, ClientError> {
        let unreachable = |detail: String| ClientError::Unreachable {
            addr: self.addr,
            detail,
        };
        let req = self
            .request(Method::GET, crate::stream::PATH)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, crate::stream::PROTOCOL)
            .body(Full::new(Bytes::new()))
            .map_err(|e| unreachable(e.to_string()))?;
        let open = async {
            let sent = match &self.http {
                Http::Plain(c) => c.request(req),
                Http::Tls(c) => c.request(req),
                Http::Unix(c) => c.request(req),
            };
            let resp = sent
                .await
                .map_err(|e| unreachable(crate::tls::error_chain(&e)))?;
            match resp.status() {
                StatusCode::SWITCHING_PROTOCOLS => hyper::upgrade::on(resp)
                    .await
                    .map(|io| Some(TokioIo::new(io)))
                    .map_err(|e| unreachable(format!("invoke stream upgrade: {e}"))),
                StatusCode::NOT_FOUND => Ok(None),
                status => {
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map(http_body_util::Collected::to_bytes)
                        .unwrap_or_default();
                    Err(self.status_error(status, &body))
                }
            }
        };
        tokio::time::timeout(CONTROL_DEADLINE, open)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no invoke stream within {} ms",
                    CONTROL_DEADLINE.as_millis()
                ))
            })?
    }

    /// Sends one invoke to an environment; `deadline` bounds the whole exchange (the
    /// function's timeout plus a margin: the agent answers a timeout itself). It goes over the
    /// agent's invoke stream, or as an HTTP request to an agent without one.
    #[allow(clippy::too_many_arguments)]
    pub async fn invoke(
        &self,
        deadline: Duration,
        env_id: &str,
        request_id: &str,
        payload: Bytes,
        client_context: Option<&str>,
        tenant_id: Option<&str>,
    ) -> Result<InvokeReply, ClientError> {
        let head = crate::stream::InvokeHead {
            env_id,
            request_id,
            client_context,
            tenant_id,
        };
        match self.mux.invoke(self, deadline, head, payload.clone()).await {
            crate::mux::Sent::Replied(reply) => return reply,
            crate::mux::Sent::NoStream => {}
        }
        self.invoke_http(
            deadline,
            env_id,
            request_id,
            payload,
            client_context,
            tenant_id,
        )
        .await
    }

    /// [`invoke`](Self::invoke) as one HTTP request (agents without the invoke stream).
    #[allow(clippy::too_many_arguments)]
    pub async fn invoke_http(
        &self,
        deadline: Duration,
        env_id: &str,
        request_id: &str,
        payload: Bytes,
        client_context: Option<&str>,
        tenant_id: Option<&str>,
    ) -> Result<InvokeReply, ClientError> {
        let mut b = self
            .request(Method::POST, &format!("/environments/{env_id}/invoke"))
            .header(H_REQUEST_ID, request_id);
        if let Some(cc) = client_context {
            b = b.header(H_CLIENT_CONTEXT, cc);
        }
        if let Some(t) = tenant_id {
            b = b.header(H_TENANT_ID, t);
        }
        let req = b
            .body(Full::new(payload))
            .map_err(|e| ClientError::Decode {
                addr: self.addr,
                detail: e.to_string(),
            })?;
        let (status, headers, bytes) = self.send(req, deadline).await?;
        self.invoke_reply(status, &headers, bytes)
    }

    /// The [`InvokeReply`] of an agent's whole answer to an invoke.
    fn invoke_reply(
        &self,
        status: StatusCode,
        headers: &http::HeaderMap,
        bytes: Bytes,
    ) -> Result<InvokeReply, ClientError> {
        match status {
            StatusCode::OK => Ok(InvokeReply::Done {
                payload: bytes,
                function_error: headers
                    .get(H_FUNCTION_ERROR)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            }),
            StatusCode::TOO_MANY_REQUESTS => Ok(InvokeReply::Rejected {
                reason: headers
                    .get(H_REJECT_REASON)
                    .and_then(|v| v.to_str().ok())
                    .map_or(ThrottleReason::Concurrency, ThrottleReason::from_header),
                detail: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            }),
            StatusCode::NOT_FOUND => Ok(InvokeReply::Gone),
            StatusCode::BAD_REQUEST => Ok(InvokeReply::Invalid {
                reason: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            }),
            other => Err(self.status_error(other, &bytes)),
        }
    }

    /// Sends one invoke as an HTTP request asking for a streamed reply
    /// ([`crate::response`]); never over the invoke stream, whose frames have no flow control
    /// of their own. `deadline` bounds the whole exchange: a stream still open when it passes
    /// ends with `Sandbox.Timedout` (the agent ends it itself at the function's timeout, so
    /// only a stuck agent meets this). A connection that breaks mid-stream ends it with
    /// `Runtime.TruncatedResponse`.
    #[allow(clippy::too_many_arguments)]
    pub async fn invoke_stream(
        &self,
        deadline: Duration,
        env_id: &str,
        request_id: &str,
        payload: Bytes,
        client_context: Option<&str>,
        tenant_id: Option<&str>,
    ) -> Result<StreamedReply, ClientError> {
        let ends_at = tokio::time::Instant::now() + deadline;
        let mut b = self
            .request(Method::POST, &format!("/environments/{env_id}/invoke"))
            .header(H_REQUEST_ID, request_id)
            .header(
                crate::response::H_RESPONSE_MODE,
                crate::response::RESPONSE_MODE_STREAMING,
            );
        if let Some(cc) = client_context {
            b = b.header(H_CLIENT_CONTEXT, cc);
        }
        if let Some(t) = tenant_id {
            b = b.header(H_TENANT_ID, t);
        }
        let req = b
            .body(Full::new(payload))
            .map_err(|e| ClientError::Decode {
                addr: self.addr,
                detail: e.to_string(),
            })?;
        let no_answer = || ClientError::NoAnswer {
            addr: self.addr,
            detail: format!("no answer within {} ms", deadline.as_millis()),
        };
        let resp = tokio::time::timeout_at(ends_at, self.start(req))
            .await
            .map_err(|_| no_answer())?
            .map_err(|e| self.request_error(&e))?;
        let streamed = resp.status() == StatusCode::OK
            && resp
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes() == crate::response::CONTENT_TYPE.as_bytes());
        let (parts, body) = resp.into_parts();
        if !streamed {
            let bytes = tokio::time::timeout_at(ends_at, body.collect())
                .await
                .map_err(|_| no_answer())?
                .map_err(|e| ClientError::NoAnswer {
                    addr: self.addr,
                    detail: e.to_string(),
                })?
                .to_bytes();
            return self
                .invoke_reply(parts.status, &parts.headers, bytes)
                .map(StreamedReply::Reply);
        }
        let content_type = parts
            .headers
            .get(crate::response::H_STREAM_CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        tokio::spawn(relay_stream(body, tx, ends_at, self.addr));
        Ok(StreamedReply::Stream(AgentStream {
            content_type,
            parts: rx,
        }))
    }
}

/// How long the end [`relay_stream`] makes itself (a timeout, a cut-off stream) waits for a
/// reader that stopped reading.
const STREAM_END_GRACE: Duration = Duration::from_secs(5);

/// Decodes an agent's streamed reply into `tx` until its END frame, the deadline, a broken
/// connection, or the reader going away (which drops `body`: the request is aborted). Every
/// send to `tx` is bounded by the deadline (the last one by [`STREAM_END_GRACE`] more), so a
/// reader that stops reading never holds the agent's request past it.
async fn relay_stream(
    mut body: hyper::body::Incoming,
    tx: tokio::sync::mpsc::Sender<crate::StreamPart>,
    ends_at: tokio::time::Instant,
    addr: SocketAddr,
) {
    use crate::StreamPart;
    let end = |error_type: &str, message: String| {
        let doc = serde_json::json!({ "errorMessage": message, "errorType": error_type });
        StreamPart::End(Some(crate::StreamError {
            error_type: error_type.to_owned(),
            payload: Bytes::from(doc.to_string()),
        }))
    };
    let mut decoder = crate::response::Decoder::default();
    let relay = async {
        loop {
            loop {
                match decoder.next_part() {
                    Ok(Some(part)) => {
                        let last = matches!(part, StreamPart::End(_));
                        if tx.send(part).await.is_err() || last {
                            return None;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Some(end(
                            "Runtime.TruncatedResponse",
                            format!("The agent {addr} sent a malformed response stream: {e}"),
                        ));
                    }
                }
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        decoder.push(data);
                    }
                }
                Some(Err(e)) => {
                    return Some(end(
                        "Runtime.TruncatedResponse",
                        format!("The connection to the agent {addr} broke mid-stream: {e}"),
                    ));
                }
                None => {
                    return Some(end(
                        "Runtime.TruncatedResponse",
                        format!("The agent {addr} ended the response stream before its end."),
                    ));
                }
            }
        }
    };
    let last = match tokio::time::timeout_at(ends_at, relay).await {
        Ok(last) => last,
        Err(_) => Some(end(
            "Sandbox.Timedout",
            format!("The agent {addr} did not end the response stream in time."),
        )),
    };
    if let Some(last) = last {
        // A reader that stopped reading is not waited for past the deadline for long.
        let _ = tokio::time::timeout(STREAM_END_GRACE, tx.send(last)).await;
    }
}
