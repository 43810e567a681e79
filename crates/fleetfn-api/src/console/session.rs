//! Console sessions: sign-in with the admin key pair (`POST /console/session`), the session
//! document (`GET`), sign-out (`DELETE`), and the check that lets a request carrying the session
//! cookie and its CSRF token through the API's authentication instead of SigV4.
//!
//! Sessions live in this server's memory only: at most [`MAX_SESSIONS`] (the oldest is evicted
//! first), each for [`SESSION_TTL`] from sign-in whatever its use, and all of them end when the
//! server restarts. A session token and its CSRF token are 32 bytes each from the operating
//! system's CSPRNG, base64url; the map is keyed by the SHA-256 of the token, so looking a token
//! up reveals nothing about the tokens held, and the secret key and CSRF token are compared in
//! constant time. Failed sign-ins are limited to [`MAX_FAILED_SIGN_INS`] per minute per server:
//! past that every sign-in is refused with 429 until the oldest failure is a minute old. Times
//! are `tokio::time::Instant`s, so tests run on paused time.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fleetfn_model::{ErrorKind, LambdaError};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use parking_lot::Mutex;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::Shared;
use crate::auth::{BodyReadError, Credentials, body_timed_out, read_body_within, refuse_unread};
use crate::error::render;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "fleetfn_console";
/// The header a cookie-authenticated request carries its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-fleetfn-csrf";
/// How long a session lasts from sign-in (absolute: use does not extend it).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at once; signing in past it ends the oldest.
pub const MAX_SESSIONS: usize = 1024;
/// Failed sign-ins per [`FAILURE_WINDOW`] per server before sign-in answers 429.
pub const MAX_FAILED_SIGN_INS: usize = 10;
/// The window [`MAX_FAILED_SIGN_INS`] counts over.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Largest sign-in body accepted.
pub const MAX_SIGN_IN_BYTES: usize = 4096;

/// Random bytes in a session or CSRF token.
const TOKEN_BYTES: usize = 32;

/// The console's sessions on this server (the API state's `console` field).
#[derive(Debug)]
pub struct Console {
    secure_cookie: bool,
    /// Host names (lowercase, no port) the console answers for besides IP literals,
    /// `localhost` and `*.localhost` (`--console-host`).
    allowed_hosts: Vec<String>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keyed by the SHA-256 of the session token.
    sessions: HashMap<[u8; 32], Session>,
    /// Sign-in order, for eviction: (sequence number, key). Entries of sessions already gone
    /// are skipped when met.
    order: VecDeque<(u64, [u8; 32])>,
    next_seq: u64,
    /// Times of the failed sign-ins of the last [`FAILURE_WINDOW`].
    failures: VecDeque<Instant>,
}

#[derive(Debug, Clone)]
struct Session {
    seq: u64,
    csrf: String,
    access_key_id: String,
    expires: Instant,
    expires_at: jiff::Timestamp,
}

impl Session {
    fn document(&self) -> SessionDocument {
        SessionDocument {
            access_key_id: self.access_key_id.clone(),
            csrf_token: self.csrf.clone(),
            expires_at: self.expires_at.to_string(),
        }
    }
}

/// The answer of `POST` and `GET /console/session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDocument {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "CsrfToken")]
    pub csrf_token: String,
    /// RFC 3339.
    #[serde(rename = "ExpiresAt")]
    pub expires_at: String,
}

/// The body of `POST /console/session`.
#[derive(Deserialize)]
struct SignIn {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: String,
}

impl Default for Console {
    /// Cookies without `Secure` (a plain HTTP listener).
    fn default() -> Self {
        Self::new(false)
    }
}

impl Console {
    /// `secure_cookie`: the API listener speaks TLS, so the cookie is marked `Secure`.
    pub fn new(secure_cookie: bool) -> Self {
        Self {
            secure_cookie,
            allowed_hosts: Vec::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Also answers for these host names (`--console-host`): a request whose `Host` is neither
    /// an IP literal, `localhost`, a name under `.localhost` nor one of these is refused, so a
    /// page of another site cannot reach the console under a name of its own that resolves to
    /// this server (DNS rebinding).
    pub fn with_allowed_hosts(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.allowed_hosts = hosts
            .into_iter()
            .map(|h| {
                let h = h.trim().to_ascii_lowercase();
                h.strip_suffix('.').map(str::to_string).unwrap_or(h)
            })
            .filter(|h| !h.is_empty())
            .collect();
        self
    }

    /// Sessions currently held (expired ones included until they are met or evicted).
    pub fn session_count(&self) -> usize {
        self.inner.lock().sessions.len()
    }

    /// Checks the key pair and opens a session: its token (for the cookie) and document.
    fn sign_in(
        &self,
        creds: &Credentials,
        req: &SignIn,
        now: Instant,
    ) -> Result<(String, SessionDocument), LambdaError> {
        let mut inner = self.inner.lock();
        while inner
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            inner.failures.pop_front();
        }
        if inner.failures.len() >= MAX_FAILED_SIGN_INS {
            let oldest = inner.failures[0];
            let wait = FAILURE_WINDOW.saturating_sub(now.duration_since(oldest));
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let secs = u32::try_from(secs.max(1)).unwrap_or(u32::MAX);
            return Err(LambdaError::throttled(
                "FailedSignInLimitExceeded",
                secs,
                format!(
                    "Too many failed console sign-ins: {MAX_FAILED_SIGN_INS} in the last minute on this server. Retry in {secs} seconds with the right access key pair (the API with SigV4 keeps working meanwhile)."
                ),
            ));
        }
        // Both compared in full, in constant time, whatever the first one gave.
        let id_ok = constant_time_eq(&digest(&req.access_key_id), &digest(&creds.access_key_id));
        let secret_ok = constant_time_eq(
            &digest(&req.secret_access_key),
            &digest(&creds.secret_access_key),
        );
        if !(id_ok & secret_ok) {
            inner.failures.push_back(now);
            return Err(LambdaError::new(
                ErrorKind::UnrecognizedClient,
                "The access key id or secret access key is wrong. Sign in with the admin key pair this server was started with (FLEETFN_ACCESS_KEY_ID and FLEETFN_SECRET_ACCESS_KEY if they were set when it started, or else the pair in the data directory's credentials.json, printed when it was generated).",
            ));
        }
        let token = random_token()?;
        let session = Session {
            seq: inner.next_seq,
            csrf: random_token()?,
            access_key_id: creds.access_key_id.clone(),
            expires: now + SESSION_TTL,
            expires_at: jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(SESSION_TTL.as_secs() as i64))
                .unwrap_or(jiff::Timestamp::MAX),
        };
        inner.next_seq += 1;
        while inner.sessions.len() >= MAX_SESSIONS {
            match inner.order.pop_front() {
                Some((seq, key)) => {
                    if inner.sessions.get(&key).is_some_and(|s| s.seq == seq) {
                        inner.sessions.remove(&key);
                    }
                }
                None => break,
            }
        }
        let key = digest(&token);
        let doc = session.document();
        inner.order.push_back((session.seq, key));
        inner.sessions.insert(key, session);
        // Ended and expired sessions leave their entries behind: drop them before the queue
        // outgrows the map by much.
        if inner.order.len() > 2 * MAX_SESSIONS {
            let Inner {
                sessions, order, ..
            } = &mut *inner;
            order.retain(|(seq, key)| sessions.get(key).is_some_and(|s| s.seq == *seq));
        }
        Ok((token, doc))
    }

    /// The live session of `token`, forgetting it if it has expired.
    fn lookup(&self, token: &str, now: Instant) -> Option<Session> {
        let key = digest(token);
        let mut inner = self.inner.lock();
        let s = inner.sessions.get(&key)?;
        if now >= s.expires {
            inner.sessions.remove(&key);
            return None;
        }
        Some(s.clone())
    }

    /// The first of the request's session cookies that names a live session, with it. A page
    /// of another port of this host (a function URL) may have set a cookie of the same name for
    /// a longer path, which the browser sends first: it is skipped.
    fn live_session<'h>(&self, headers: &'h HeaderMap, now: Instant) -> Option<(&'h str, Session)> {
        session_cookies(headers).find_map(|t| self.lookup(t, now).map(|s| (t, s)))
    }

    /// Refuses a request whose host this console does not answer for (see
    /// [`Console::with_allowed_hosts`]) or that names a foreign `Origin`.
    fn guard(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), LambdaError> {
        let authority = request_authority(headers, uri);
        self.check_host(authority)?;
        same_origin(headers, authority)
    }

    fn check_host(&self, authority: Option<&str>) -> Result<(), LambdaError> {
        let host = authority.map(host_of).unwrap_or_default();
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let ok = name.parse::<Ipv4Addr>().is_ok()
            || name
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<Ipv6Addr>().is_ok())
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.allowed_hosts.contains(&name);
        if ok {
            return Ok(());
        }
        Err(LambdaError::new(
            ErrorKind::AccessDenied,
            if host.is_empty() {
                "The console needs the request's Host: open it at this server's IP address or localhost.".to_string()
            } else {
                format!(
                    "The console does not answer for the host {host:?}: only IP addresses, localhost and names the operator allowed are accepted, so a page of another site cannot reach it under a name that resolves to this server. Open it at an IP address or localhost, or start the server with `--console-host {host}` (or FLEETFN_CONSOLE_HOSTS) to allow this name."
                )
            },
        ))
    }

    /// Ends the session of `token` (nothing if there is none).
    fn end(&self, token: &str) {
        self.inner.lock().sessions.remove(&digest(token));
    }

    /// Whether a request may use the cookie path of the API's authentication: it carries no
    /// SigV4 (no `Authorization` header, no presigned-URL parameters) but the session cookie.
    pub(crate) fn wants_cookie_auth(parts: &http::request::Parts) -> bool {
        !parts.headers.contains_key(header::AUTHORIZATION)
            && !parts.uri.query().is_some_and(has_presign_params)
            && session_cookies(&parts.headers).next().is_some()
    }

    /// The cookie path of the API's authentication: a host the console answers for, no
    /// foreign `Origin`, a live session and its CSRF token in [`CSRF_HEADER`]. Refusals are
    /// `AccessDeniedException`s that name the console session, so the console shows its
    /// sign-in view.
    pub(crate) fn authorize(
        &self,
        parts: &http::request::Parts,
        now: Instant,
    ) -> Result<(), LambdaError> {
        self.guard(&parts.headers, &parts.uri)?;
        let (_, session) = self
            .live_session(&parts.headers, now)
            .ok_or_else(no_session)?;
        check_csrf(&session, &parts.headers)
    }

    fn set_cookie(&self, token: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("base64url tokens are valid header values")
    }
}

/// `POST /console/session`: sign in. The body must declare its length (at most
/// [`MAX_SIGN_IN_BYTES`]) and arrive within [`crate::auth::BODY_READ_TIMEOUT`]; a refusal
/// before it is read closes the connection.
pub(crate) async fn sign_in(State(s): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(e) = s.console.guard(&parts.headers, &parts.uri) {
        return no_store(refuse_unread(&e));
    }
    let too_large = || {
        LambdaError::new(
            ErrorKind::RequestEntityTooLarge,
            format!("A console sign-in must be at most {MAX_SIGN_IN_BYTES} bytes"),
        )
    };
    match axum::body::HttpBody::size_hint(&body).exact() {
        None => {
            let mut resp = refuse_unread(&LambdaError::bad_content(
                "A console sign-in needs a Content-Length: send the JSON object in one piece, not chunked.",
            ));
            *resp.status_mut() = StatusCode::LENGTH_REQUIRED;
            return no_store(resp);
        }
        Some(n) if n > MAX_SIGN_IN_BYTES as u64 => return no_store(refuse_unread(&too_large())),
        Some(_) => {}
    }
    let bytes: Bytes = match read_body_within(body, MAX_SIGN_IN_BYTES).await {
        Ok(b) => b,
        Err(BodyReadError::TimedOut) => return no_store(body_timed_out("console sign-in")),
        Err(BodyReadError::TooLarge) => return no_store(refuse_unread(&too_large())),
        Err(BodyReadError::Failed(e)) => {
            return no_store(render(&LambdaError::bad_content(format!(
                "Could not read the sign-in request: {e}"
            ))));
        }
    };
    let body: SignIn = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            return no_store(render(&LambdaError::bad_content(format!(
                "Could not parse the sign-in request ({e}); send a JSON object {{\"AccessKeyId\": \"...\", \"SecretAccessKey\": \"...\"}}"
            ))));
        }
    };
    let now = Instant::now();
    let (token, doc) = match s.console.sign_in(&s.credentials, &body, now) {
        Ok(v) => v,
        Err(e) => return no_store(render(&e)),
    };
    // Signing in again replaces the session the browser held.
    for old in session_cookies(&parts.headers) {
        s.console.end(old);
    }
    let mut resp = document(StatusCode::OK, &doc);
    resp.headers_mut().insert(
        header::SET_COOKIE,
        s.console.set_cookie(&token, SESSION_TTL.as_secs()),
    );
    resp
}

/// `GET /console/session`: the session's document again (a reloaded page needs its CSRF token).
pub(crate) async fn get_session(State(s): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(e) = s.console.guard(&headers, &uri) {
        return no_store(render(&e));
    }
    match s.console.live_session(&headers, Instant::now()) {
        Some((_, session)) => document(StatusCode::OK, &session.document()),
        None => {
            let mut resp = render(&LambdaError::new(
                ErrorKind::MissingAuthenticationToken,
                "No console session: the fleetfn_console cookie is missing, or its session expired or ended. Sign in with POST /console/session.",
            ));
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            no_store(resp)
        }
    }
}

/// `DELETE /console/session`: sign out (cookie and CSRF token). Without a live session there is
/// nothing to end and the cookie is cleared all the same.
pub(crate) async fn sign_out(State(s): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(e) = s.console.guard(&headers, &uri) {
        return no_store(render(&e));
    }
    if let Some((token, session)) = s.console.live_session(&headers, Instant::now()) {
        if let Err(e) = check_csrf(&session, &headers) {
            return no_store(render(&e));
        }
        s.console.end(token);
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::SET_COOKIE, s.console.set_cookie("", 0));
    no_store(resp)
}

fn document(status: StatusCode, doc: &SessionDocument) -> Response {
    let body = serde_json::to_vec(doc).expect("a session document serializes");
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(resp)
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn no_session() -> LambdaError {
    LambdaError::new(
        ErrorKind::AccessDenied,
        "The console session is missing or has expired (sessions last 8 hours and end at sign-out or when the server restarts): sign in again at /console/.",
    )
}

fn check_csrf(session: &Session, headers: &HeaderMap) -> Result<(), LambdaError> {
    let given = headers
        .get(CSRF_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if constant_time_eq(&digest_bytes(given), &digest(&session.csrf)) {
        Ok(())
    } else {
        Err(LambdaError::new(
            ErrorKind::AccessDenied,
            "The console session's CSRF token is missing or wrong: send the session's CsrfToken in the X-Fleetfn-Csrf header (GET /console/session gives it again), or sign in again.",
        ))
    }
}

/// The authority a request was sent to: its `Host`, or (HTTP/2) the URI's.
fn request_authority<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    match headers.get(header::HOST) {
        Some(h) => h.to_str().ok(),
        None => uri.authority().map(http::uri::Authority::as_str),
    }
}

/// The host of an authority, without its port: `[::1]:9600` → `[::1]`, `a.example:1` →
/// `a.example`.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority
            .split_once(':')
            .map_or(authority, |(host, _)| host)
    }
}

/// A request that names its origin must come from this server's own: `http(s)://<authority>`.
fn same_origin(headers: &HeaderMap, authority: Option<&str>) -> Result<(), LambdaError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = authority.map(str::as_bytes);
    let origin = origin.as_bytes();
    let matches = host.is_some_and(|host| {
        [&b"http://"[..], b"https://"].iter().any(|scheme| {
            origin.len() == scheme.len() + host.len()
                && origin.starts_with(scheme)
                && origin[scheme.len()..].eq_ignore_ascii_case(host)
        })
    });
    if matches {
        Ok(())
    } else {
        Err(LambdaError::new(
            ErrorKind::AccessDenied,
            "The console session cannot be used from another origin: only pages this server serves under /console/ may sign in or use it. Open the console on this server and sign in again.",
        ))
    }
}

/// The values of the request's `fleetfn_console` cookies (all `Cookie` headers), in order.
fn session_cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE_NAME && !value.is_empty()).then_some(value)
        })
}

/// Whether a query string carries SigV4 presigned-URL parameters.
fn has_presign_params(query: &str) -> bool {
    query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        key == "X-Amz-Signature" || key == "X-Amz-Algorithm"
    })
}

fn random_token() -> Result<String, LambdaError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
        LambdaError::service(format!(
            "the operating system's random number generator failed: {e}"
        ))
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn digest(s: &str) -> [u8; 32] {
    digest_bytes(s.as_bytes())
}

fn digest_bytes(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
        }
    }

    fn good() -> SignIn {
        SignIn {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
        }
    }

    #[test]
    fn tokens_are_43_base64url_characters_and_differ() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn the_cookie_is_found_among_others_and_presign_parameters_are_seen() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        assert_eq!(session_cookies(&h).count(), 0);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("x=y;  fleetfn_console=tok; z=1; fleetfn_console="),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("fleetfn_console=two"),
        );
        assert_eq!(session_cookies(&h).collect::<Vec<_>>(), ["tok", "two"]);
        assert!(has_presign_params("a=1&X-Amz-Signature=00"));
        assert!(has_presign_params("X%2DAmz%2DAlgorithm=AWS4-HMAC-SHA256"));
        assert!(!has_presign_params("Qualifier=1&X-Amz-Date=2"));
    }

    #[test]
    fn the_host_must_be_an_ip_literal_localhost_or_allowed() {
        let c = Console::default().with_allowed_hosts(["Console.Example.".to_string()]);
        for ok in [
            "127.0.0.1:9600",
            "127.0.0.1",
            "10.1.2.3:80",
            "[::1]:9600",
            "[::1]",
            "localhost:9600",
            "LOCALHOST",
            "localhost.",
            "app.localhost:9600",
            "console.example:9600",
            "console.example",
        ] {
            assert!(c.check_host(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example:9600",
            "evil.example",
            "localhost.evil.example",
            "evillocalhost",
            "127.0.0.1.evil.example",
            "[::1",
            "[evil]:9600",
            "console.example.evil",
            "",
        ] {
            let e = c.check_host(Some(bad)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::AccessDenied, "{bad}");
            if !bad.is_empty() {
                assert!(e.message.contains("--console-host"), "{}", e.message);
            }
        }
        assert!(c.check_host(None).is_err());
        // The URI's authority stands in for a missing Host (HTTP/2).
        let uri: Uri = "http://127.0.0.1:9600/console/session".parse().unwrap();
        assert_eq!(
            request_authority(&HeaderMap::new(), &uri),
            Some("127.0.0.1:9600")
        );
    }

    #[test]
    fn origin_must_be_the_requests_own() {
        let same_origin = |h: &HeaderMap| same_origin(h, request_authority(h, &Uri::default()));
        let mut h = HeaderMap::new();
        assert!(same_origin(&h).is_ok());
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9000"));
        for ok in ["http://127.0.0.1:9000", "https://127.0.0.1:9000"] {
            h.insert(header::ORIGIN, HeaderValue::from_static(ok));
            assert!(same_origin(&h).is_ok(), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:1",
            "null",
            "http://127.0.0.1:90000",
            "http://evil.example",
            "ftp://127.0.0.1:9000",
        ] {
            h.insert(header::ORIGIN, HeaderValue::from_static(bad));
            let e = same_origin(&h).unwrap_err();
            assert_eq!(e.kind, ErrorKind::AccessDenied, "{bad}");
            assert!(e.message.contains("sign in again"), "{}", e.message);
        }
        h.remove(header::HOST);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9000"),
        );
        assert!(same_origin(&h).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn ten_failures_a_minute_then_429_until_the_oldest_is_a_minute_old() {
        let c = Console::default();
        let bad = SignIn {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wrong".into(),
        };
        let start = Instant::now();
        for i in 0..MAX_FAILED_SIGN_INS {
            let e = c.sign_in(&creds(), &bad, Instant::now()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::UnrecognizedClient, "attempt {i}");
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Even the right pair is refused now: a guesser learns nothing more.
        let e = c.sign_in(&creds(), &good(), Instant::now()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooManyRequests);
        assert_eq!(e.retry_after_secs, Some(50));
        assert!(e.message.contains("Retry in 50 seconds"), "{}", e.message);
        tokio::time::advance(start + FAILURE_WINDOW - Instant::now()).await;
        // The first failure has aged out: one more attempt is allowed.
        assert!(c.sign_in(&creds(), &good(), Instant::now()).is_ok());
        assert_eq!(c.session_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_expires_8_hours_after_sign_in_however_used() {
        let c = Console::default();
        let (token, doc) = c.sign_in(&creds(), &good(), Instant::now()).unwrap();
        let expires: jiff::Timestamp = doc.expires_at.parse().unwrap();
        let left = expires.duration_since(jiff::Timestamp::now());
        assert!(
            left.as_secs() > 8 * 3600 - 60 && left.as_secs() <= 8 * 3600,
            "{left:?}"
        );
        tokio::time::advance(SESSION_TTL - Duration::from_millis(1)).await;
        assert!(c.lookup(&token, Instant::now()).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(c.lookup(&token, Instant::now()).is_none());
        assert_eq!(c.session_count(), 0, "an expired session met is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn past_1024_sessions_the_oldest_is_evicted() {
        let c = Console::default();
        let (first, _) = c.sign_in(&creds(), &good(), Instant::now()).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let (second, _) = c.sign_in(&creds(), &good(), Instant::now()).unwrap();
        for _ in 2..MAX_SESSIONS {
            c.sign_in(&creds(), &good(), Instant::now()).unwrap();
        }
        assert_eq!(c.session_count(), MAX_SESSIONS);
        assert!(c.lookup(&first, Instant::now()).is_some());
        c.sign_in(&creds(), &good(), Instant::now()).unwrap();
        assert_eq!(c.session_count(), MAX_SESSIONS);
        assert!(c.lookup(&first, Instant::now()).is_none(), "oldest evicted");
        assert!(c.lookup(&second, Instant::now()).is_some());
        // Ended sessions leave stale order entries that eviction skips.
        c.end(&second);
        c.sign_in(&creds(), &good(), Instant::now()).unwrap();
        assert_eq!(c.session_count(), MAX_SESSIONS);
    }

    #[test]
    fn the_order_queue_is_compacted_when_sessions_end() {
        let c = Console::default();
        let now = Instant::now();
        let (kept, _) = c.sign_in(&creds(), &good(), now).unwrap();
        for _ in 0..5 * MAX_SESSIONS {
            let (t, _) = c.sign_in(&creds(), &good(), now).unwrap();
            c.end(&t);
            assert!(c.inner.lock().order.len() <= 2 * MAX_SESSIONS);
        }
        assert_eq!(c.session_count(), 1);
        assert!(c.lookup(&kept, now).is_some());
        // The live session keeps its entry (eviction still finds it), first in the queue.
        assert_eq!(
            c.inner.lock().order.front().map(|e| e.1),
            Some(digest(&kept))
        );
    }
}
