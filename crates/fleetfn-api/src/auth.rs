//! The front door of every API request: the SigV4 checks that need no body (a request without a
//! well-formed signature is refused before a byte of its body is read, and its connection is
//! closed rather than drained), the body size limit, a permit for a large body (at most
//! [`UploadPermits`] of them are buffered at once), then the signature over the body. The verified
//! body is handed on as bytes.
//!
//! A request with no SigV4 at all (no `Authorization` header, no presigned-URL parameters) but
//! the web console's session cookie is authenticated by its session and CSRF token instead
//! ([`crate::console::Console::authorize`]); it then goes through the same limits and permits,
//! and reaches the handler as a signed request would.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use fleetfn_model::limits::{
    MAX_CODE_REQUEST_BYTES, MAX_CONTROL_REQUEST_BYTES, MAX_SYNC_PAYLOAD_BYTES,
};
use fleetfn_model::{ErrorKind, LambdaError};
use fleetfn_sigv4::{RequestParts, VerifyConfig, sha256_hex, verify_head};
use http_body_util::BodyExt;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::Shared;
use crate::console::Console;
use crate::error::render;

/// The admin key pair requests must be signed with.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Bodies above a threshold (1 MiB by default), or of unknown length that may exceed it, are
/// buffered only with a permit; a request that finds none answers 429 at once.
#[derive(Debug)]
pub struct UploadPermits {
    sem: Semaphore,
    permits: usize,
    threshold: u64,
}

impl UploadPermits {
    /// Default: 4 large bodies above 1 MiB at once.
    pub const DEFAULT_PERMITS: usize = 4;
    pub const DEFAULT_THRESHOLD: u64 = 1 << 20;

    pub fn new(permits: usize, threshold: u64) -> Self {
        Self {
            sem: Semaphore::new(permits),
            permits,
            threshold,
        }
    }

    /// A permit for a body of `len` bytes (`None`: unknown) that may grow to `limit` bytes;
    /// `Ok(None)` when it is small enough to need none.
    fn acquire(
        &self,
        len: Option<u64>,
        limit: usize,
    ) -> Result<Option<SemaphorePermit<'_>>, LambdaError> {
        let large = len.unwrap_or(limit as u64) > self.threshold;
        if !large {
            return Ok(None);
        }
        self.sem.try_acquire().map(Some).map_err(|_| {
            LambdaError::throttled(
                "ConcurrentUploadLimitExceeded",
                1,
                format!(
                    "fleetfn is already receiving {} request bodies larger than {} bytes; retry the request in a second",
                    self.permits, self.threshold
                ),
            )
        })
    }
}

impl Default for UploadPermits {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PERMITS, Self::DEFAULT_THRESHOLD)
    }
}

/// Which body limit a request path has; its error is built only when it is needed.
#[derive(Debug, Clone, Copy)]
enum Limit {
    Invoke,
    Code(&'static str),
    Control,
}

impl Limit {
    fn bytes(self) -> usize {
        match self {
            Limit::Invoke => MAX_SYNC_PAYLOAD_BYTES,
            Limit::Code(_) => MAX_CODE_REQUEST_BYTES,
            Limit::Control => MAX_CONTROL_REQUEST_BYTES,
        }
    }

    fn too_large(self) -> LambdaError {
        match self {
            Limit::Invoke => LambdaError::new(
                ErrorKind::RequestTooLarge,
                format!(
                    "Request must be smaller than {MAX_SYNC_PAYLOAD_BYTES} bytes for the InvokeFunction operation"
                ),
            ),
            Limit::Code(op) => LambdaError::new(
                ErrorKind::RequestEntityTooLarge,
                format!(
                    "Request must be smaller than {MAX_CODE_REQUEST_BYTES} bytes for the {op} operation"
                ),
            ),
            Limit::Control => LambdaError::new(
                ErrorKind::RequestEntityTooLarge,
                format!("Request must be smaller than {MAX_CONTROL_REQUEST_BYTES} bytes"),
            ),
        }
    }
}

/// Body limit of a request path.
fn limit_for(method: &http::Method, path: &str) -> Limit {
    if path.ends_with("/invocations")
        || path.ends_with("/response-streaming-invocations")
        || path.trim_end_matches('/').ends_with("/invoke-async")
    {
        Limit::Invoke
    } else if method == http::Method::POST
        && path.starts_with("/2018-10-31/layers/")
        && path.trim_end_matches('/').ends_with("/versions")
    {
        Limit::Code("PublishLayerVersion")
    } else if (method == http::Method::POST
        && path.trim_end_matches('/') == "/2015-03-31/functions")
        || path.ends_with("/code")
    {
        Limit::Code(if path.ends_with("/code") {
            "UpdateFunctionCode"
        } else {
            "CreateFunction"
        })
    } else {
        Limit::Control
    }
}

fn auth_error(e: &fleetfn_sigv4::AuthError) -> LambdaError {
    let kind = match e.aws_error_type() {
        "MissingAuthenticationTokenException" => ErrorKind::MissingAuthenticationToken,
        "UnrecognizedClientException" => ErrorKind::UnrecognizedClient,
        "IncompleteSignatureException" => ErrorKind::IncompleteSignature,
        _ => ErrorKind::InvalidSignature,
    };
    LambdaError::new(kind, e.message())
}

/// How long the unauthenticated endpoints that read a body (console sign-in, agent join) wait
/// for all of it: a client that declares a body and never sends it is answered 408 after this.
pub(crate) const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why [`read_body_within`] gave no body.
#[derive(Debug)]
pub(crate) enum BodyReadError {
    /// Past the limit.
    TooLarge,
    /// Not all of it within [`BODY_READ_TIMEOUT`].
    TimedOut,
    /// The connection failed.
    Failed(axum::Error),
}

/// Reads a body of at most `limit` bytes within [`BODY_READ_TIMEOUT`].
pub(crate) async fn read_body_within(body: Body, limit: usize) -> Result<Bytes, BodyReadError> {
    let read = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Err(_) => Err(BodyReadError::TimedOut),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyReadError::TooLarge)
        }
        Ok(Err(e)) => Err(BodyReadError::Failed(axum::Error::new(e))),
    }
}

/// 408 `RequestTimeoutException` for a body that did not arrive within [`BODY_READ_TIMEOUT`];
/// the connection closes after it.
pub(crate) fn body_timed_out(what: &str) -> Response {
    let message = format!(
        "The {what} body did not arrive within {} seconds of its headers: send the whole body at once.",
        BODY_READ_TIMEOUT.as_secs()
    );
    let body = serde_json::json!({
        "Type": "User",
        "message": message,
        "Message": message,
        "__type": "RequestTimeoutException",
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-amzn-ErrorType",
        http::HeaderValue::from_static("RequestTimeoutException"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

/// An answer given before the body was read: the connection closes after it, so a client still
/// sending costs nothing more (hyper does not drain an unread body).
pub(crate) fn refuse_unread(e: &LambdaError) -> Response {
    let mut resp = render(e);
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

/// The hex SHA-256 of a request body; a large one (up to ≈ 70 MB: tens of milliseconds) is hashed
/// on a blocking thread so the runtime's thread keeps serving invokes.
pub(crate) async fn body_sha256(bytes: &Bytes) -> Result<String, LambdaError> {
    if bytes.len() <= crate::handlers::INLINE_WORK_BYTES {
        return Ok(sha256_hex(bytes));
    }
    let b = bytes.clone();
    tokio::task::spawn_blocking(move || sha256_hex(&b))
        .await
        .map_err(|e| LambdaError::service(format!("hashing the request body: {e}")))
}

/// Middleware: verify the head, limit, take a permit for a large body, buffer, verify the
/// signature over it, pass on.
pub async fn authenticate(State(state): State<Shared>, req: Request, next: Next) -> Response {
    authenticated(&state, req, |req| next.run(req)).await
}

/// [`authenticate`] with the rest of the request's handling as `inner` (the Invoke fast path,
/// [`crate::fast`], calls it without axum's middleware).
pub(crate) async fn authenticated<F, Fut>(state: &Shared, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let (parts, body) = req.into_parts();
    let kind = limit_for(&parts.method, parts.uri.path());
    let limit = kind.bytes();
    // Exact for a Content-Length (or no body), unknown for chunked.
    let declared = axum::body::HttpBody::size_hint(&body).exact();
    if declared.is_some_and(|n| n > limit as u64) {
        return refuse_unread(&kind.too_large());
    }
    let rp = RequestParts::from_parts(&parts);
    let creds = &state.credentials;
    // `None`: a console session (checked in full here, nothing to verify over the body).
    let head = if Console::wants_cookie_auth(&parts) {
        if let Err(e) = state.console.authorize(&parts, tokio::time::Instant::now()) {
            return refuse_unread(&e);
        }
        None
    } else {
        let cfg = VerifyConfig::new(state.cp.scope().region.clone(), "lambda");
        match verify_head(&rp, jiff::Timestamp::now(), &cfg, |akid: &str| {
            (akid == creds.access_key_id).then_some(creds.secret_access_key.as_str())
        }) {
            Ok(h) => Some(h),
            Err(e) => return refuse_unread(&auth_error(&e)),
        }
    };
    let permit = match state.uploads.acquire(declared, limit) {
        Ok(p) => p,
        Err(e) => return refuse_unread(&e),
    };
    let bytes: Bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return refuse_unread(&kind.too_large());
            }
            return render(&LambdaError::bad_content(format!(
                "Could not read the request body: {e}"
            )));
        }
    };
    let cookie_path = head.is_none();
    if let Some(head) = head {
        let hash = match body_sha256(&bytes).await {
            Ok(h) => h,
            Err(e) => return render(&e),
        };
        let verified = head.verify_body(&hash);
        if let Err(e) = verified {
            return render(&auth_error(&e));
        }
    }
    drop(permit);
    let mut resp = inner(Request::from_parts(parts, Body::from(bytes))).await;
    if cookie_path {
        cookie_answer_headers(resp.headers_mut());
    }
    resp
}

/// The headers of every answer to a cookie-authenticated request: it is the admin's data in a
/// browser, so it is not cached, not sniffed, not readable by other origins' pages, and not
/// served from a cache to another cookie.
fn cookie_answer_headers(h: &mut http::HeaderMap) {
    use http::{HeaderValue, header};
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.append(header::VARY, HeaderValue::from_static("Cookie"));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn publish_layer_version_takes_a_code_upload_s_body() {
        let post = http::Method::POST;
        for path in [
            "/2018-10-31/layers/lib/versions",
            "/2018-10-31/layers/arn:aws:lambda:us-east-1:000000000000:layer:lib/versions/",
        ] {
            assert!(
                matches!(limit_for(&post, path), Limit::Code("PublishLayerVersion")),
                "{path}"
            );
        }
        for (method, path) in [
            (http::Method::GET, "/2018-10-31/layers/lib/versions"),
            (post.clone(), "/2018-10-31/layers/lib/versions/1/policy"),
        ] {
            assert!(matches!(limit_for(&method, path), Limit::Control), "{path}");
        }
    }

    /// Polls `work` beside a task that counts its own turns until `work` is done: on a
    /// current-thread runtime the count is 0 when `work` ran inline (done at its first poll).
    pub(crate) async fn turns_while<T>(work: impl std::future::Future<Output = T>) -> (T, u32) {
        let done = std::cell::Cell::new(false);
        let turns = std::cell::Cell::new(0u32);
        let work = async {
            let out = work.await;
            done.set(true);
            out
        };
        let ticker = async {
            while !done.get() {
                turns.set(turns.get() + 1);
                tokio::task::yield_now().await;
            }
        };
        let (out, ()) = tokio::join!(work, ticker);
        (out, turns.get())
    }

    #[tokio::test]
    async fn a_large_body_is_hashed_off_the_runtime_thread_a_small_one_inline() {
        let large = Bytes::from(vec![b'x'; 4 << 20]);
        let (hash, turns) = turns_while(body_sha256(&large)).await;
        assert_eq!(hash.unwrap(), sha256_hex(&large));
        assert!(
            turns > 0,
            "the 4 MiB body was hashed on the runtime's thread"
        );
        let small = Bytes::from_static(b"{}");
        let (hash, turns) = turns_while(body_sha256(&small)).await;
        assert_eq!(hash.unwrap(), sha256_hex(b"{}"));
        assert_eq!(turns, 0);
    }

    #[test]
    fn only_large_or_unknown_bodies_take_permits_and_the_last_one_is_refused() {
        let p = UploadPermits::new(2, 1 << 20);
        let limit = MAX_CODE_REQUEST_BYTES;
        // Small bodies never wait, however many.
        for _ in 0..10 {
            assert!(p.acquire(Some(1 << 20), limit).unwrap().is_none());
        }
        // A small limit with an unknown length is small too.
        assert!(p.acquire(None, 1024).unwrap().is_none());
        let a = p.acquire(Some(60_000_000), limit).unwrap();
        let b = p.acquire(None, limit).unwrap();
        assert!(a.is_some() && b.is_some());
        let e = p.acquire(Some((1 << 20) + 1), limit).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooManyRequests);
        assert_eq!(e.retry_after_secs, Some(1));
        assert!(e.message.contains("retry"), "{}", e.message);
        drop(a);
        assert!(p.acquire(Some(2 << 20), limit).unwrap().is_some());
    }
}
