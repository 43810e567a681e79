//! The function URL endpoint (`fleetfn serve --url-listen`): plain HTTP requests to
//! `<url-id>.lambda-url.<region>.<domain>[:port]`, or to `/_fleetfn/url/<url-id>/...` on any host
//! (the function sees the path without that prefix), become payload format 2.0 events
//! ([`event`]) for the URL's function or alias, and its answer becomes the HTTP response
//! ([`response`]), as Lambda's URL endpoint does: `BUFFERED` maps the whole answer,
//! `RESPONSE_STREAM` forwards chunks as the function writes them (after the HTTP prelude of
//! `application/vnd.awslambda.http-integration-response`). No SigV4 at this listener: an
//! `AWS_IAM` URL checks the request's signature (service `lambda`, the server's key; it must
//! cover the body: `UNSIGNED-PAYLOAD` is refused on this plain-HTTP listener), a `NONE`
//! URL needs a resource policy that lets anyone invoke it. CORS per the URL's config
//! ([`cors`]; a config without `AllowOrigins` is none). Unknown ids answer AWS's
//! `403 {"Message":null}`, function errors `502 Internal Server Error`.

mod cors;
mod event;
pub(crate) mod response;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use fleetfn_contracts::{InvokeRequest, StreamPart, StreamingOutcome};
use fleetfn_metrics::Metrics;
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::limits::MAX_SYNC_PAYLOAD_BYTES;
use fleetfn_model::url::{AuthType, InvokeMode};
use fleetfn_model::{ErrorKind, LambdaError};
use fleetfn_server::UrlTarget;
use fleetfn_sigv4::{RequestParts, VerifyConfig, verify_head};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use serde::Serialize;
use tokio::sync::mpsc::Receiver;

use crate::handlers::X_AMZN_REQUEST_ID;
use crate::invoke::{capped, invoker, new_request_id};
use crate::{AppState, Shared};

/// The path prefix that addresses a URL on any host (plain-IP setups without wildcard DNS):
/// `/_fleetfn/url/<url-id>/<the function's path>`.
pub const PATH_PREFIX: &str = "/_fleetfn/url/";

/// How long a request's body may take to arrive once its head has (the listener's header-read
/// timeout covers only the head): a client trickling a body would otherwise hold its buffer,
/// and a body permit, for ever.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest HTTP prelude a streamed answer may start with.
const MAX_PRELUDE_BYTES: usize = 1 << 20;

const FORBIDDEN: &str = "Forbidden. For troubleshooting Function URL authorization issues, see: https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html";

/// How the endpoint is reached and what it reports to.
#[derive(Debug, Clone)]
pub struct UrlEndpoint {
    /// The domain of URL hosts: `<url-id>.lambda-url.<region>.<domain>`.
    pub domain: String,
    pub metrics: Option<Arc<Metrics>>,
}

struct UrlInner {
    api: Shared,
    domain: String,
    metrics: Option<Arc<Metrics>>,
    bodies: BodyPermits,
}

/// Bodies above 1 MiB (or of unknown length) are read only with a permit, held until their
/// event is built: anonymous clients of a public URL cannot make the endpoint buffer more than
/// [`BodyPermits::DEFAULT_PERMITS`] such bodies (each up to 6 MB, plus its event) at once. A
/// request that finds none answers 429 at once, unread. The URL endpoint's own permits, so its
/// clients do not use up the API's.
#[derive(Debug)]
struct BodyPermits {
    sem: tokio::sync::Semaphore,
    permits: usize,
    threshold: u64,
}

impl BodyPermits {
    const DEFAULT_PERMITS: usize = 8;
    const DEFAULT_THRESHOLD: u64 = 1 << 20;

    fn new(permits: usize, threshold: u64) -> Self {
        Self {
            sem: tokio::sync::Semaphore::new(permits),
            permits,
            threshold,
        }
    }

    /// A permit for a body of `len` bytes (`None`: unknown, up to 6 MB); `Ok(None)` when it is
    /// small enough to need none.
    fn acquire(
        &self,
        len: Option<u64>,
    ) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, UrlError> {
        if len.unwrap_or(MAX_SYNC_PAYLOAD_BYTES as u64) <= self.threshold {
            return Ok(None);
        }
        self.sem.try_acquire().map(Some).map_err(|_| {
            LambdaError::throttled(
                "ConcurrentRequestBodyLimitExceeded",
                1,
                format!(
                    "Rate Exceeded. The function URL endpoint is already receiving {} request bodies larger than {} bytes; retry in a second",
                    self.permits, self.threshold
                ),
            )
            .into()
        })
    }
}

#[derive(Clone)]
struct UrlState(Arc<UrlInner>);

/// The URL endpoint: every path and method, on its own listener (serve it with
/// [`crate::serve_with_peers`] for `sourceIp`).
pub fn url_router(api: AppState, endpoint: UrlEndpoint) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(UrlState(Arc::new(UrlInner {
            api: Shared(Arc::new(api)),
            domain: endpoint.domain.to_ascii_lowercase(),
            metrics: endpoint.metrics,
            bodies: BodyPermits::new(BodyPermits::DEFAULT_PERMITS, BodyPermits::DEFAULT_THRESHOLD),
        })))
}

/// The URL a request addresses: its id and the path the function sees.
#[derive(Debug, PartialEq, Eq)]
struct Located<'a> {
    url_id: String,
    path: &'a str,
}

/// The URL id in a `Host` of `<url-id>.lambda-url.<region>.<domain>[:port]`, else in a
/// [`PATH_PREFIX`] path.
fn locate<'a>(
    host: Option<&str>,
    path: &'a str,
    region: &str,
    domain: &str,
) -> Option<Located<'a>> {
    if let Some(host) = host {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => name,
            _ => host,
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let suffix = format!(".lambda-url.{region}.{domain}");
        if let Some(id) = name.strip_suffix(&suffix)
            && !id.is_empty()
            && !id.contains('.')
        {
            return Some(Located {
                url_id: id.to_string(),
                path,
            });
        }
    }
    let rest = path.strip_prefix(PATH_PREFIX)?;
    let (id, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!id.is_empty()).then(|| Located {
        url_id: id.to_ascii_lowercase(),
        path,
    })
}

/// The endpoint's own answers.
#[derive(Debug, thiserror::Error)]
enum UrlError {
    #[error("no function URL has this address")]
    UnknownUrl,
    #[error("the caller may not invoke this URL")]
    Forbidden,
    #[error("the request is larger than 6 MB")]
    TooLarge,
    #[error("the request body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs())]
    BodyTimeout,
    #[error("the function failed, or answered with what is not an HTTP response")]
    FunctionFailed,
    #[error(transparent)]
    Lambda(#[from] LambdaError),
}

#[derive(Serialize)]
struct MessageBody<'a> {
    #[serde(rename = "Message")]
    message: Option<&'a str>,
}

fn json_error(status: StatusCode, error_type: &str, message: Option<&str>) -> Response {
    let body = serde_json::to_vec(&MessageBody { message }).unwrap_or_default();
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(error_type) {
        h.insert("x-amzn-ErrorType", v);
    }
    resp
}

impl IntoResponse for UrlError {
    fn into_response(self) -> Response {
        match self {
            UrlError::UnknownUrl => {
                json_error(StatusCode::FORBIDDEN, "AccessDeniedException", None)
            }
            UrlError::Forbidden => json_error(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                Some(FORBIDDEN),
            ),
            UrlError::TooLarge => {
                let mut resp = json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorKind::RequestTooLarge.type_name(),
                    Some(&format!(
                        "Request must be smaller than {MAX_SYNC_PAYLOAD_BYTES} bytes for the InvokeFunction operation"
                    )),
                );
                // Refused unread: do not drain what the client still sends.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                resp
            }
            UrlError::BodyTimeout => {
                let mut resp = json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeoutException",
                    Some(&format!(
                        "The request body did not arrive within {} seconds",
                        BODY_READ_TIMEOUT.as_secs()
                    )),
                );
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                resp
            }
            UrlError::FunctionFailed => {
                let mut resp = (StatusCode::BAD_GATEWAY, "Internal Server Error").into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp
            }
            UrlError::Lambda(e) => {
                let status =
                    StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut resp = json_error(status, e.kind.type_name(), Some(&e.message));
                if let Some(s) = e.retry_after_secs {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(s));
                }
                resp
            }
        }
    }
}

async fn handle(State(UrlState(u)): State<UrlState>, req: Request) -> Response {
    let start = Instant::now();
    let request_id = new_request_id();
    let mut function = None;
    let mut resp = serve_url(&u, req, &request_id, start, &mut function)
        .await
        .unwrap_or_else(|e| {
            tracing::debug!(error = %e, "function URL request refused");
            e.into_response()
        });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(X_AMZN_REQUEST_ID, v);
    }
    // Unknown URLs have no function to count them under.
    match (&u.metrics, function) {
        (Some(m), Some(function)) => {
            let status = resp.status().as_u16();
            let metered = Metered {
                inner: std::mem::take(resp.body_mut()),
                done: Some(Done {
                    metrics: m.clone(),
                    function,
                    status,
                    start,
                }),
            };
            *resp.body_mut() = Body::new(metered);
            resp
        }
        _ => resp,
    }
}

async fn serve_url(
    u: &UrlInner,
    req: Request,
    request_id: &str,
    start: Instant,
    function: &mut Option<String>,
) -> Result<Response, UrlError> {
    let cp = &u.api.cp;
    let scope = cp.scope();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.host());
    let loc =
        locate(host, parts.uri.path(), &scope.region, &u.domain).ok_or(UrlError::UnknownUrl)?;
    let target: UrlTarget = cp
        .function_url_target(&loc.url_id)
        .await?
        .ok_or(UrlError::UnknownUrl)?;
    *function = Some(target.function_name.clone());
    // A config without origins allows none: as if it had no CORS at all.
    let cors = target
        .config
        .cors
        .as_ref()
        .filter(|c| c.allow_origins.as_ref().is_some_and(|o| !o.is_empty()));
    if let Some(c) = cors
        && cors::is_preflight(&parts.method, &parts.headers, cors)
    {
        let mut resp = StatusCode::OK.into_response();
        resp.headers_mut()
            .extend(cors::preflight(c, &parts.headers));
        return Ok(resp);
    }
    // Who may call, checked before a byte of the body is read where the body is not needed.
    let creds = &u.api.credentials;
    let verify_cfg = VerifyConfig::new(scope.region.clone(), "lambda");
    let rp = RequestParts::from_parts(&parts);
    let head = match target.config.auth_type {
        AuthType::None if !target.public => return Err(UrlError::Forbidden),
        AuthType::None => None,
        AuthType::AwsIam => Some(
            verify_head(&rp, jiff::Timestamp::now(), &verify_cfg, |akid: &str| {
                (akid == creds.access_key_id).then_some(creds.secret_access_key.as_str())
            })
            .map_err(|e| {
                tracing::debug!(error = %e.message(), "function URL signature refused");
                UrlError::Forbidden
            })?,
        ),
    };
    let (bytes, permit) = read_body(body, &u.bodies).await?;
    let iam = match head {
        None => None,
        Some(head) => {
            let hash = crate::auth::body_sha256(&bytes).await?;
            let principal = head.verify_signed_body(&hash).map_err(|e| {
                tracing::debug!(error = %e.message(), "function URL signature refused");
                UrlError::Forbidden
            })?;
            Some(event::IamCaller {
                access_key: principal.access_key_id,
                account_id: scope.account.clone(),
                caller_id: scope.account.clone(),
                cognito_identity: None,
                principal_org_id: None,
                user_arn: format!("arn:aws:iam::{}:root", scope.account),
                user_id: scope.account.clone(),
            })
        }
    };
    let source_ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let input = event::EventInput {
        method: parts.method.clone(),
        raw_path: loc.path.to_string(),
        raw_query: parts.uri.query().unwrap_or("").to_string(),
        protocol: match parts.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        },
        headers: parts.headers.clone(),
        extra_headers: vec![
            ("x-forwarded-for", source_ip.clone()),
            ("x-forwarded-proto", "http".to_string()),
        ],
        body: bytes.clone(),
        source_ip,
        account_id: scope.account.clone(),
        domain_name: format!("{}.lambda-url.{}.{}", loc.url_id, scope.region, u.domain),
        url_id: loc.url_id.clone(),
        request_id: request_id.to_string(),
        now: jiff::Timestamp::now(),
        iam,
    };
    // An event whose body alone must exceed the limit is refused before it is built.
    let payload = off_thread(bytes.len(), move || {
        if input.encoded_body_len() > MAX_SYNC_PAYLOAD_BYTES {
            return Ok(None);
        }
        input.encode().map(Some)
    })
    .await?
    .map_err(|e| LambdaError::service(format!("encoding the URL event: {e}")))?
    .filter(|p| p.len() <= MAX_SYNC_PAYLOAD_BYTES)
    .ok_or(UrlError::TooLarge)?;
    drop((bytes, permit));
    let fref = FunctionRef {
        name: target.function_name.clone(),
        qualifier: target.qualifier.clone(),
    };
    let version = cp
        .resolve_invoke_target(&fref, rand::random::<f64>())
        .await?;
    let timeout = version.config.timeout;
    let invoker = invoker(&u.api)?;
    let invoke = InvokeRequest {
        request_id: request_id.to_string(),
        version,
        payload: Bytes::from(payload),
        client_context: None,
        tenant_id: None,
    };
    let mut resp = match target.config.invoke_mode {
        InvokeMode::Buffered => {
            let outcome = capped(invoker.invoke(invoke), timeout, request_id).await?;
            if outcome.function_error.is_some() {
                return Err(UrlError::FunctionFailed);
            }
            let len = outcome.payload.len();
            let answer = off_thread(len, move || response::buffered(&outcome.payload))
                .await?
                .map_err(|e| {
                tracing::debug!(error = %e, function = %target.function_name, "function URL answer refused");
                UrlError::FunctionFailed
            })?;
            with_head(answer.head, Body::from(answer.body))
        }
        InvokeMode::ResponseStream => {
            let resp =
                streamed(invoker.invoke_stream(invoke).await?, &target.function_name).await?;
            if let Some(m) = &u.metrics {
                m.url_stream_first_byte(&target.function_name, start.elapsed());
            }
            resp
        }
    };
    cors::apply(cors, &parts.headers, resp.headers_mut());
    Ok(resp)
}

/// The request body, read within [`BODY_READ_TIMEOUT`] and 6 MB, with the permit a large one
/// needs (to be held until its event is built). Refusals close the connection unread.
async fn read_body(
    body: Body,
    permits: &BodyPermits,
) -> Result<(Bytes, Option<tokio::sync::SemaphorePermit<'_>>), UrlError> {
    let declared = HttpBody::size_hint(&body).exact();
    if declared.is_some_and(|n| n > MAX_SYNC_PAYLOAD_BYTES as u64) {
        return Err(UrlError::TooLarge);
    }
    let permit = permits.acquire(declared)?;
    let read = http_body_util::Limited::new(body, MAX_SYNC_PAYLOAD_BYTES).collect();
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Err(_) => return Err(UrlError::BodyTimeout),
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(UrlError::TooLarge);
        }
        Ok(Err(e)) => {
            return Err(
                LambdaError::bad_content(format!("Could not read the request body: {e}")).into(),
            );
        }
    };
    Ok((bytes, permit))
}

/// Runs `f` inline for a small input, else on a blocking thread: a 6 MB body's base64 and JSON
/// take milliseconds the runtime's thread owes to other requests.
async fn off_thread<T: Send + 'static>(
    len: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LambdaError> {
    if len <= crate::handlers::INLINE_WORK_BYTES {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LambdaError::service(format!("function URL work failed: {e}")))
}

fn with_head(head: response::Head, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    resp
}

/// The response of a `RESPONSE_STREAM` URL: its head once the function has written the
/// prelude (or its first bytes), then the rest as it comes.
async fn streamed(outcome: StreamingOutcome, function: &str) -> Result<Response, UrlError> {
    let st = match outcome {
        StreamingOutcome::Buffered(o) => {
            // The runtime answered in buffered mode: its answer as it is.
            if o.function_error.is_some() {
                return Err(UrlError::FunctionFailed);
            }
            let mut resp = Response::new(Body::from(o.payload));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(resp);
        }
        StreamingOutcome::Streamed(st) => st,
    };
    let mut parts = st.parts;
    let refused = |e: &dyn std::fmt::Display| {
        tracing::debug!(error = %e, %function, "function URL stream refused");
        UrlError::FunctionFailed
    };
    if st.content_type.as_deref() == Some(response::HTTP_INTEGRATION) {
        let mut buf = BytesMut::new();
        loop {
            match parts.recv().await {
                Some(StreamPart::Chunk(b)) => {
                    let searched = buf.len();
                    buf.extend_from_slice(&b);
                    // Only the new bytes, and the 7 before them a delimiter may start in.
                    let from = searched.saturating_sub(response::PRELUDE_END.len() - 1);
                    if let Some(i) = response::find_prelude_end(&buf, from) {
                        let head = response::prelude(&buf[..i]).map_err(|e| refused(&e))?;
                        let rest = buf.split_off(i + response::PRELUDE_END.len()).freeze();
                        return Ok(with_head(
                            head,
                            Body::from_stream(Forward::new(rest, parts)),
                        ));
                    }
                    if buf.len() > MAX_PRELUDE_BYTES {
                        return Err(refused(&"no prelude end within 1 MiB"));
                    }
                }
                Some(StreamPart::End(None)) => {
                    // Ended with the prelude alone (or nothing at all).
                    let head = if buf.is_empty() {
                        response::prelude(b"{}")
                    } else {
                        response::prelude(&buf)
                    }
                    .map_err(|e| refused(&e))?;
                    return Ok(with_head(head, Body::empty()));
                }
                Some(StreamPart::End(Some(e))) => return Err(refused(&e.error_type)),
                None => return Err(refused(&"the stream ended without its end")),
            }
        }
    }
    let head = response::stream_head(st.content_type.as_deref());
    match parts.recv().await {
        Some(StreamPart::Chunk(first)) => Ok(with_head(
            head,
            Body::from_stream(Forward::new(first, parts)),
        )),
        Some(StreamPart::End(None)) => Ok(with_head(head, Body::empty())),
        Some(StreamPart::End(Some(e))) => Err(refused(&e.error_type)),
        None => Err(refused(&"the stream ended without its end")),
    }
}

/// A streamed answer after its head breaks off: the client's connection is cut without the
/// last chunk, so it can tell a failed stream from a finished one.
#[derive(Debug, thiserror::Error)]
#[error("the function's response stream failed: {0}")]
struct StreamFailed(String);

/// The body of a streamed response: what was read with the head, then each chunk as it comes.
struct Forward {
    first: Option<Bytes>,
    parts: Receiver<StreamPart>,
    done: bool,
}

impl Forward {
    fn new(first: Bytes, parts: Receiver<StreamPart>) -> Self {
        Self {
            first: (!first.is_empty()).then_some(first),
            parts,
            done: false,
        }
    }
}

impl tokio_stream::Stream for Forward {
    type Item = Result<Bytes, StreamFailed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(Ok(b)));
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let part = std::task::ready!(self.parts.poll_recv(cx));
            return Poll::Ready(match part {
                Some(StreamPart::Chunk(b)) if b.is_empty() => continue,
                Some(StreamPart::Chunk(b)) => Some(Ok(b)),
                Some(StreamPart::End(None)) => {
                    self.done = true;
                    None
                }
                Some(StreamPart::End(Some(e))) => {
                    self.done = true;
                    Some(Err(StreamFailed(e.error_type)))
                }
                None => {
                    self.done = true;
                    Some(Err(StreamFailed("the stream ended without its end".into())))
                }
            });
        }
    }
}

/// What a finished response reports to the metrics.
struct Done {
    metrics: Arc<Metrics>,
    function: String,
    status: u16,
    start: Instant,
}

/// A response body that observes the request's duration when it is done with (sent, or
/// dropped with its connection).
struct Metered {
    inner: Body,
    done: Option<Done>,
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(d) = self.done.take() {
            let elapsed: Duration = d.start.elapsed();
            d.metrics.url_request(&d.function, d.status, elapsed);
        }
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_found_by_host_or_by_path_prefix() {
        let l = |host, path| locate(host, path, "us-east-1", "localhost");
        assert_eq!(
            l(Some("abc123.lambda-url.us-east-1.localhost:9602"), "/x?y"),
            Some(Located {
                url_id: "abc123".into(),
                path: "/x?y"
            })
        );
        assert_eq!(
            l(Some("ABC.Lambda-URL.us-east-1.LOCALHOST"), "/"),
            Some(Located {
                url_id: "abc".into(),
                path: "/"
            })
        );
        // Another region or domain, or a nested name, is not a URL host.
        assert_eq!(l(Some("abc.lambda-url.eu-west-1.localhost"), "/"), None);
        assert_eq!(l(Some("abc.lambda-url.us-east-1.example.com"), "/"), None);
        assert_eq!(l(Some("a.b.lambda-url.us-east-1.localhost"), "/"), None);
        assert_eq!(l(Some(".lambda-url.us-east-1.localhost"), "/"), None);
        // The path prefix on any host; the function sees the path without it.
        assert_eq!(
            l(Some("127.0.0.1:9602"), "/_fleetfn/url/abc/deep/path/"),
            Some(Located {
                url_id: "abc".into(),
                path: "/deep/path/"
            })
        );
        assert_eq!(
            l(None, "/_fleetfn/url/abc"),
            Some(Located {
                url_id: "abc".into(),
                path: "/"
            })
        );
        assert_eq!(l(Some("127.0.0.1"), "/_fleetfn/url/"), None);
        assert_eq!(l(Some("127.0.0.1"), "/other"), None);
        // A URL host keeps the whole path, prefix-like or not.
        assert_eq!(
            l(
                Some("abc.lambda-url.us-east-1.localhost"),
                "/_fleetfn/url/x/y"
            ),
            Some(Located {
                url_id: "abc".into(),
                path: "/_fleetfn/url/x/y"
            })
        );
    }

    #[tokio::test]
    async fn large_events_and_answers_are_built_off_the_runtime_thread() {
        use crate::auth::tests::turns_while;
        let body = Bytes::from(vec![0xffu8; 4 << 20]);
        let input = |body: Bytes| event::EventInput {
            method: http::Method::POST,
            raw_path: "/".into(),
            raw_query: String::new(),
            protocol: "HTTP/1.1",
            headers: http::HeaderMap::new(),
            extra_headers: vec![],
            body,
            source_ip: String::new(),
            account_id: "0".into(),
            url_id: "u".into(),
            domain_name: "d".into(),
            request_id: "r".into(),
            now: jiff::Timestamp::UNIX_EPOCH,
            iam: None,
        };
        let large = input(body.clone());
        let (out, turns) = turns_while(off_thread(body.len(), move || large.encode())).await;
        assert!(out.unwrap().unwrap().len() > 4 << 20);
        assert!(
            turns > 0,
            "the 4 MiB event was built on the runtime's thread"
        );
        let small = input(Bytes::from_static(b"x"));
        let (_, turns) = turns_while(off_thread(1, move || small.encode())).await;
        assert_eq!(turns, 0);
    }

    #[tokio::test]
    async fn large_bodies_need_one_of_the_endpoints_permits_held_until_released() {
        let permits = BodyPermits::new(1, 1 << 20);
        // Small (or empty) bodies need none.
        assert!(permits.acquire(Some(1 << 20)).unwrap().is_none());
        let held = permits.acquire(Some(2 << 20)).unwrap();
        assert!(held.is_some());
        // A second large body, or one of unknown length: 429 at once.
        for len in [Some(2 << 20), None] {
            let resp = permits.acquire(len).unwrap_err().into_response();
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(
                resp.headers()["x-amzn-ErrorType"],
                "TooManyRequestsException"
            );
        }
        // read_body holds one for a chunked body and gives it back with the bytes.
        drop(held);
        let chunked = || {
            Body::from_stream(tokio_stream::iter([Ok::<_, std::io::Error>(Bytes::from(
                "abc",
            ))]))
        };
        let (bytes, permit) = read_body(chunked(), &permits).await.unwrap();
        assert_eq!(bytes, "abc");
        assert!(permit.is_some());
        assert!(matches!(
            read_body(chunked(), &permits).await,
            Err(UrlError::Lambda(_))
        ));
        drop(permit);
        assert!(read_body(chunked(), &permits).await.is_ok());
        // Too large by Content-Length: refused before a permit or a byte.
        let big = Body::from(vec![0u8; MAX_SYNC_PAYLOAD_BYTES + 1]);
        assert!(matches!(
            read_body(big, &permits).await,
            Err(UrlError::TooLarge)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_times_out_and_frees_its_permit() {
        let permits = BodyPermits::new(1, 0);
        // One chunk, then nothing, for ever.
        let trickle = tokio_stream::StreamExt::chain(
            tokio_stream::iter([Ok::<_, std::io::Error>(Bytes::from("a"))]),
            tokio_stream::pending(),
        );
        let start = tokio::time::Instant::now();
        let e = read_body(Body::from_stream(trickle), &permits)
            .await
            .unwrap_err();
        assert!(matches!(e, UrlError::BodyTimeout), "{e}");
        assert_eq!(start.elapsed(), BODY_READ_TIMEOUT);
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(resp.headers()[header::CONNECTION], "close");
        assert_eq!(permits.sem.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_response_is_counted_when_its_body_is_done_with() {
        let metrics = Arc::new(Metrics::new());
        let body = Metered {
            inner: Body::from("hello"),
            done: Some(Done {
                metrics: metrics.clone(),
                function: "f".into(),
                status: 502,
                start: Instant::now(),
            }),
        };
        let rendered = || metrics.render().unwrap();
        assert!(!rendered().contains(r#"fleetfn_url_requests_total{function="f""#));
        let b = axum::body::to_bytes(Body::new(body), usize::MAX)
            .await
            .unwrap();
        assert_eq!(b, &b"hello"[..]);
        let text = rendered();
        assert!(
            text.contains(r#"fleetfn_url_requests_total{function="f",status="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fleetfn_url_request_duration_seconds_count{function="f"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn endpoint_errors_have_aws_bodies() {
        async fn body(e: UrlError) -> (StatusCode, String, Option<String>) {
            let r = e.into_response();
            let t = r
                .headers()
                .get("x-amzn-ErrorType")
                .map(|v| v.to_str().unwrap().to_string());
            let s = r.status();
            let b = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            (s, String::from_utf8(b.to_vec()).unwrap(), t)
        }
        assert_eq!(
            body(UrlError::UnknownUrl).await,
            (
                StatusCode::FORBIDDEN,
                r#"{"Message":null}"#.into(),
                Some("AccessDeniedException".into())
            )
        );
        let (s, b, _) = body(UrlError::Forbidden).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(
            b.starts_with(r#"{"Message":"Forbidden. For troubleshooting"#),
            "{b}"
        );
        assert_eq!(
            body(UrlError::FunctionFailed).await,
            (
                StatusCode::BAD_GATEWAY,
                "Internal Server Error".into(),
                None
            )
        );
        let (s, b, t) = body(UrlError::Lambda(LambdaError::throttled(
            "ReservedFunctionConcurrentInvocationLimitExceeded",
            1,
            "Rate Exceeded.",
        )))
        .await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(b, r#"{"Message":"Rate Exceeded."}"#);
        assert_eq!(t.as_deref(), Some("TooManyRequestsException"));
        let (s, _, t) = body(UrlError::TooLarge).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(t.as_deref(), Some("RequestTooLargeException"));
    }

    fn parts(v: Vec<StreamPart>) -> Receiver<StreamPart> {
        let (tx, rx) = tokio::sync::mpsc::channel(v.len().max(1));
        for p in v {
            tx.try_send(p).unwrap();
        }
        rx
    }

    fn stream(content_type: Option<&str>, v: Vec<StreamPart>) -> StreamingOutcome {
        StreamingOutcome::Streamed(fleetfn_contracts::InvokeStream {
            content_type: content_type.map(str::to_string),
            parts: parts(v),
        })
    }

    fn chunk(b: &[u8]) -> StreamPart {
        StreamPart::Chunk(Bytes::copy_from_slice(b))
    }

    #[tokio::test]
    async fn a_prelude_split_across_chunks_gives_the_head_and_the_rest_streams() {
        let outcome = stream(
            Some(response::HTTP_INTEGRATION),
            vec![
                chunk(br#"{"statusCode":201,"headers":{"content-type":"text/pl"#),
                chunk(b"ain\"},\"cookies\":[\"a=b\"]}\0\0\0\0"),
                chunk(b"\0\0\0\0hello "),
                chunk(b"world"),
                StreamPart::End(None),
            ],
        );
        let resp = streamed(outcome, "f").await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
        assert_eq!(resp.headers()[header::SET_COOKIE], "a=b");
        let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(b, &b"hello world"[..]);
    }

    #[tokio::test]
    async fn a_prelude_in_one_byte_chunks_is_searched_in_linear_time() {
        // 256 KiB of prelude a byte at a time: rescanning the whole buffer on every chunk
        // (32 G comparisons) would not finish; searching only the new bytes does at once.
        let mut prelude = br#"{"statusCode":200,"headers":{"x-a":"b"}}"#.to_vec();
        prelude.resize(256 << 10, b' ');
        prelude.extend_from_slice(&response::PRELUDE_END);
        prelude.extend_from_slice(b"body");
        let mut v: Vec<StreamPart> = prelude.iter().map(|b| chunk(&[*b])).collect();
        v.push(StreamPart::End(None));
        let resp = streamed(stream(Some(response::HTTP_INTEGRATION), v), "f")
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-a"], "b");
        let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(b, &b"body"[..]);
    }

    #[tokio::test]
    async fn a_plain_stream_has_the_runtimes_type_and_errors_cut_it_or_give_502() {
        let resp = streamed(
            stream(
                Some("text/csv"),
                vec![chunk(b"a,b\n"), chunk(b"1,2\n"), StreamPart::End(None)],
            ),
            "f",
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/csv");
        let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(b, &b"a,b\n1,2\n"[..]);
        // An error before the first byte: the endpoint's 502.
        let err = fleetfn_contracts::StreamError {
            error_type: "Runtime.ExitError".into(),
            payload: Bytes::new(),
        };
        let e = streamed(stream(None, vec![StreamPart::End(Some(err.clone()))]), "f")
            .await
            .unwrap_err();
        assert!(matches!(e, UrlError::FunctionFailed));
        // After it: the body fails, so the client sees a cut stream.
        let resp = streamed(
            stream(None, vec![chunk(b"part"), StreamPart::End(Some(err))]),
            "f",
        )
        .await
        .unwrap();
        assert!(
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .is_err()
        );
        // A malformed prelude is a 502 too.
        let e = streamed(
            stream(
                Some(response::HTTP_INTEGRATION),
                vec![chunk(b"nope\0\0\0\0\0\0\0\0")],
            ),
            "f",
        )
        .await
        .unwrap_err();
        assert!(matches!(e, UrlError::FunctionFailed));
        // A runtime that answered buffered: its payload as it is.
        let resp = streamed(
            StreamingOutcome::Buffered(fleetfn_contracts::InvokeOutcome {
                payload: Bytes::from_static(br#"{"statusCode":201,"body":"x"}"#),
                function_error: None,
            }),
            "f",
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(b, &br#"{"statusCode":201,"body":"x"}"#[..]);
    }
}
