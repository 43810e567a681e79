//! The console through the whole API router (a real `ControlPlane` on the in-memory store):
//! sign-in, the session cookie as the API's authentication, sign-out, expiry, the failed
//! sign-in limit, the embedded files and their headers.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use fleetfn_model::Scope;
use fleetfn_server::{ControlPlane, ControlPlaneConfig, EnvKey};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use tower::ServiceExt;

use super::*;
use crate::{AppState, Credentials, UploadPermits};

const HOST: &str = "127.0.0.1:9000";
pub(crate) const KEY: &str = "AKIDCONSOLETEST";
pub(crate) const SECRET: &str = "console-test-secret";

pub(crate) struct App {
    pub(crate) router: crate::Api,
    _dir: tempfile::TempDir,
}

pub(crate) fn app(console: Console) -> App {
    // The sealing key is per process: every test's control plane uses the same one.
    static ENV_KEY: OnceLock<EnvKey> = OnceLock::new();
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::new(
        Arc::new(fleetfn_store::MemoryStore::new()),
        ControlPlaneConfig {
            scope: Scope {
                region: "us-east-1".into(),
                account: "000000000000".into(),
            },
            artifacts_dir: dir.path().join("artifacts"),
            env_key: ENV_KEY.get_or_init(EnvKey::generate).clone(),
        },
    )
    .unwrap();
    let router = crate::router(AppState {
        cp,
        credentials: Arc::new(Credentials {
            access_key_id: KEY.into(),
            secret_access_key: SECRET.into(),
        }),
        invoker: None,
        events: None,
        logs: None,
        uploads: Arc::new(UploadPermits::default()),
        console: Arc::new(console),
    });
    App { router, _dir: dir }
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> ErrorDoc {
        self.json()
    }

    fn header(&self, name: impl header::AsHeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

#[derive(Deserialize)]
struct ErrorDoc {
    #[serde(rename = "__type")]
    kind: String,
    #[serde(rename = "Type")]
    sender: String,
    message: String,
}

#[derive(Deserialize)]
struct Functions {
    #[serde(rename = "Functions")]
    functions: Vec<serde_json::Value>,
}

fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST)
}

impl App {
    pub(crate) async fn call(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn sign_in_with(&self, key: &str, secret: &str) -> Answer {
        let body = serde_json::json!({"AccessKeyId": key, "SecretAccessKey": secret});
        self.call(
            request(Method::POST, "/console/session")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ORIGIN, format!("http://{HOST}"))
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Signs in; the cookie (`name=value`) and the session document.
    async fn sign_in(&self) -> (String, SessionDocument) {
        let a = self.sign_in_with(KEY, SECRET).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let cookie = a.header(header::SET_COOKIE).split(';').next().unwrap();
        (cookie.to_string(), a.json())
    }

    /// `GET /2015-03-31/functions/` with a cookie and a CSRF token.
    async fn list_functions(&self, cookie: &str, csrf: Option<&str>) -> Answer {
        let mut r = request(Method::GET, "/2015-03-31/functions/").header(header::COOKIE, cookie);
        if let Some(t) = csrf {
            r = r.header(CSRF_HEADER, t);
        }
        self.call(r.body(Body::empty()).unwrap()).await
    }

    async fn get_session(&self, cookie: &str) -> Answer {
        self.call(
            request(Method::GET, "/console/session")
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(request(Method::GET, path).body(Body::empty()).unwrap())
            .await
    }
}

fn assert_console_headers(a: &Answer) {
    assert_eq!(a.header(header::CONTENT_SECURITY_POLICY), CSP);
    assert_eq!(a.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(a.header(header::REFERRER_POLICY), "no-referrer");
    assert_eq!(a.header(header::X_FRAME_OPTIONS), "DENY");
    assert_eq!(a.header("cross-origin-opener-policy"), "same-origin");
    assert_eq!(a.header("cross-origin-resource-policy"), "same-origin");
}

/// A body that declares `len` bytes and never sends one.
pub(crate) struct NeverBody(pub(crate) u64);

impl http_body::Body for NeverBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0)
    }
}

/// A body of unknown length (chunked) that never sends a byte.
struct ChunkedNeverBody;

impl http_body::Body for ChunkedNeverBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

fn sign_in_request(host: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/console/session")
        .header(header::HOST, host)
        .header(header::ORIGIN, format!("http://{host}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_sign_in_body_that_never_comes_is_answered_408_after_10_seconds() {
    let app = app(Console::default());
    let start = tokio::time::Instant::now();
    let a = app
        .call(sign_in_request(HOST, Body::new(NeverBody(4096))))
        .await;
    assert_eq!(start.elapsed(), crate::auth::BODY_READ_TIMEOUT);
    assert_eq!(a.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(a.header(header::CONNECTION), "close");
    assert_eq!(a.error().kind, "RequestTimeoutException");
    assert_console_headers(&a);

    // No declared length, or more than the limit: refused at once, body unread.
    let a = app
        .call(sign_in_request(HOST, Body::new(ChunkedNeverBody)))
        .await;
    assert_eq!(a.status, StatusCode::LENGTH_REQUIRED);
    assert_eq!(a.header(header::CONNECTION), "close");
    assert!(a.error().message.contains("Content-Length"));
    let a = app
        .call(sign_in_request(
            HOST,
            Body::new(NeverBody(MAX_SIGN_IN_BYTES as u64 + 1)),
        ))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.header(header::CONNECTION), "close");
    assert_eq!(start.elapsed(), crate::auth::BODY_READ_TIMEOUT, "no wait");
    // Nothing counted as a failed sign-in, nothing opened.
    app.sign_in().await;
}

#[tokio::test]
async fn the_console_answers_only_for_ip_literals_localhost_and_allowed_names() {
    let app = app(Console::default().with_allowed_hosts(["console.example".to_string()]));
    let body = || {
        Body::from(serde_json::json!({"AccessKeyId": KEY, "SecretAccessKey": SECRET}).to_string())
    };
    // A rebinding page: its own name, its own origin; refused before its body is read.
    let a = app.call(sign_in_request("evil.example:9600", body())).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    assert_eq!(a.header(header::CONNECTION), "close");
    let e = a.error();
    assert_eq!(e.kind, "AccessDeniedException");
    assert!(e.message.contains("\"evil.example\""), "{}", e.message);
    assert!(
        e.message.contains("--console-host evil.example"),
        "{}",
        e.message
    );
    for host in [
        "127.0.0.1:9600",
        "[::1]:9600",
        "localhost:9600",
        "console.example:9600",
    ] {
        let a = app.call(sign_in_request(host, body())).await;
        assert_eq!(a.status, StatusCode::OK, "{host}: {:?}", a.body);
    }

    // The cookie path, GET and DELETE of the session likewise.
    let (cookie, doc) = app.sign_in().await;
    let with_host = |method: Method, path: &str, host: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .header(header::ORIGIN, format!("http://{host}"))
            .header(header::COOKIE, &cookie)
            .header(CSRF_HEADER, &doc.csrf_token)
            .body(Body::empty())
            .unwrap()
    };
    for (method, path) in [
        (Method::GET, "/2015-03-31/functions/"),
        (Method::GET, "/console/session"),
        (Method::DELETE, "/console/session"),
    ] {
        let a = app
            .call(with_host(method.clone(), path, "evil.example:9600"))
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{method} {path}");
        let e = a.error();
        assert_eq!(e.kind, "AccessDeniedException");
        assert!(e.message.contains("--console-host"), "{}", e.message);
    }
    for host in [
        "127.0.0.1:9600",
        "[::1]:9600",
        "localhost:9600",
        "console.example:9600",
    ] {
        let a = app
            .call(with_host(Method::GET, "/2015-03-31/functions/", host))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{host}: {:?}", a.body);
    }
    // The session outlived the refused sign-out.
    assert_eq!(app.get_session(&cookie).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_tossed_cookie_sent_first_does_not_hide_the_session() {
    let app = app(Console::default());
    let (cookie, doc) = app.sign_in().await;
    // What a function URL on another port could have set for a longer path: sent first.
    let both = format!("fleetfn_console=bogus; {cookie}");
    let a = app.list_functions(&both, Some(&doc.csrf_token)).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let a = app.get_session(&both).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json::<SessionDocument>(), doc);
    // In separate Cookie headers too.
    let a = app
        .call(
            request(Method::GET, "/2015-03-31/functions/")
                .header(header::COOKIE, "fleetfn_console=bogus")
                .header(header::COOKIE, &cookie)
                .header(CSRF_HEADER, &doc.csrf_token)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    // Sign-out ends the live one.
    let a = app
        .call(
            request(Method::DELETE, "/console/session")
                .header(header::COOKIE, &both)
                .header(CSRF_HEADER, &doc.csrf_token)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_session(&cookie).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sign_in_sets_a_strict_session_cookie_and_answers_the_csrf_token() {
    let app = app(Console::default());
    let a = app.sign_in_with(KEY, SECRET).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_console_headers(&a);
    assert_eq!(a.header(header::CACHE_CONTROL), "no-store");
    let cookie = a.header(header::SET_COOKIE);
    let (pair, attrs) = cookie.split_once("; ").unwrap();
    let token = pair.strip_prefix("fleetfn_console=").unwrap();
    assert_eq!(token.len(), 43, "{cookie}");
    assert_eq!(attrs, "Path=/; HttpOnly; SameSite=Strict; Max-Age=28800");
    let doc: SessionDocument = a.json();
    assert_eq!(doc.access_key_id, KEY);
    assert_eq!(doc.csrf_token.len(), 43);
    assert_ne!(doc.csrf_token, token);
    let expires: jiff::Timestamp = doc.expires_at.parse().unwrap();
    assert!(expires > jiff::Timestamp::now());

    // The same document again, for a reloaded page.
    let again = app.get_session(pair).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header(header::CACHE_CONTROL), "no-store");
    assert_eq!(again.json::<SessionDocument>(), doc);

    // On a TLS listener the cookie is Secure.
    let tls = app_tls().await;
    assert!(tls.ends_with("; Secure"), "{tls}");
}

async fn app_tls() -> String {
    let app = app(Console::new(true));
    let a = app.sign_in_with(KEY, SECRET).await;
    a.header(header::SET_COOKIE).to_string()
}

#[tokio::test]
async fn a_wrong_pair_or_a_bad_body_is_refused_with_what_to_fix() {
    let app = app(Console::default());
    for (key, secret) in [(KEY, "wrong"), ("AKIDOTHER", SECRET), ("", "")] {
        let a = app.sign_in_with(key, secret).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert!(a.headers.get(header::SET_COOKIE).is_none());
        let e = a.error();
        assert_eq!(e.kind, "UnrecognizedClientException");
        assert_eq!(e.sender, "User");
        assert!(e.message.contains("admin key pair"), "{}", e.message);
    }
    let post = |body: Body| {
        request(Method::POST, "/console/session")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap()
    };
    let a = app.call(post(Body::from("{\"AccessKeyId\": 1}"))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let e = a.error();
    assert_eq!(e.kind, "InvalidRequestContentException");
    assert!(e.message.contains("SecretAccessKey"), "{}", e.message);
    let a = app
        .call(post(Body::from(vec![b' '; MAX_SIGN_IN_BYTES + 1])))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.error().kind, "RequestEntityTooLargeException");
}

#[tokio::test(start_paused = true)]
async fn ten_failed_sign_ins_a_minute_then_429_then_allowed_again() {
    let app = app(Console::default());
    for _ in 0..MAX_FAILED_SIGN_INS {
        let a = app.sign_in_with(KEY, "guess").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
    let a = app.sign_in_with(KEY, SECRET).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.header(header::RETRY_AFTER), "60");
    let e = a.error();
    assert_eq!(e.kind, "TooManyRequestsException");
    assert!(e.message.contains("Retry in 60 seconds"), "{}", e.message);
    tokio::time::advance(FAILURE_WINDOW - Duration::from_secs(1)).await;
    assert_eq!(
        app.sign_in_with(KEY, SECRET).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    app.sign_in().await;
}

#[tokio::test]
async fn the_cookie_authenticates_api_calls_only_with_its_csrf_token() {
    let app = app(Console::default());
    let (cookie, doc) = app.sign_in().await;
    let a = app.list_functions(&cookie, Some(&doc.csrf_token)).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert!(a.json::<Functions>().functions.is_empty());
    assert_eq!(a.header(header::CACHE_CONTROL), "no-store");
    assert_eq!(a.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(a.header("cross-origin-resource-policy"), "same-origin");
    assert_eq!(a.header(header::VARY), "Cookie");

    // A write goes through too, body and all.
    let provider = serde_json::json!({
        "CapacityProviderName": "console-cp",
        "VpcConfig": {"SubnetIds": ["subnet-0123456789abcdef0"], "SecurityGroupIds": ["sg-0123456789abcdef0"]},
        "PermissionsConfig": {"CapacityProviderOperatorRoleArn": "arn:aws:iam::000000000000:role/operator"},
    });
    let a = app
        .call(
            request(Method::POST, "/2025-11-30/capacity-providers")
                .header(header::COOKIE, &cookie)
                .header(CSRF_HEADER, &doc.csrf_token)
                .header(header::ORIGIN, format!("http://{HOST}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(provider.to_string()))
                .unwrap(),
        )
        .await;
    assert!(a.status.is_success(), "{} {:?}", a.status, a.body);

    for (csrf, hint) in [
        (None, "CSRF token is missing or wrong"),
        (Some("wrong"), "CSRF token is missing or wrong"),
        (Some(""), "CSRF token is missing or wrong"),
    ] {
        let a = app.list_functions(&cookie, csrf).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        let e = a.error();
        assert_eq!(e.kind, "AccessDeniedException");
        assert!(e.message.contains(hint), "{}", e.message);
        assert!(e.message.contains("sign in again"), "{}", e.message);
    }
    // Another session's CSRF token is no good either.
    let (_, other) = app.sign_in().await;
    assert_eq!(
        app.list_functions(&cookie, Some(&other.csrf_token))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // An unknown session.
    let a = app
        .list_functions("fleetfn_console=forged", Some(&doc.csrf_token))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let e = a.error();
    assert_eq!(e.kind, "AccessDeniedException");
    assert!(
        e.message
            .contains("console session is missing or has expired"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn without_cookie_or_with_a_signature_the_sigv4_errors_are_unchanged() {
    let app = app(Console::default());
    let (cookie, doc) = app.sign_in().await;
    let a = app.get("/2015-03-31/functions/").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error().kind, "MissingAuthenticationTokenException");
    // The cookie path's headers are not added to answers of other requests.
    assert!(a.headers.get(header::VARY).is_none());
    // A signature present means SigV4 decides, cookie or not.
    let a = app
        .call(
            request(Method::GET, "/2015-03-31/functions/")
                .header(header::COOKIE, &cookie)
                .header(CSRF_HEADER, &doc.csrf_token)
                .header(header::AUTHORIZATION, "AWS4-HMAC-SHA256 garbage")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_ne!(a.error().kind, "AccessDeniedException");
    let a = app
        .call(
            request(
                Method::GET,
                "/2015-03-31/functions/?X-Amz-Signature=00&X-Amz-Algorithm=AWS4-HMAC-SHA256",
            )
            .header(header::COOKIE, &cookie)
            .header(CSRF_HEADER, &doc.csrf_token)
            .body(Body::empty())
            .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_ne!(a.error().kind, "AccessDeniedException");
}

#[tokio::test]
async fn a_foreign_origin_can_neither_sign_in_nor_use_the_session() {
    let app = app(Console::default());
    let body = serde_json::json!({"AccessKeyId": KEY, "SecretAccessKey": SECRET});
    let a = app
        .call(
            request(Method::POST, "/console/session")
                .header(header::ORIGIN, "http://127.0.0.1:1")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    assert_eq!(a.error().kind, "AccessDeniedException");

    let (cookie, doc) = app.sign_in().await;
    // A cross-site form post: the browser would send the cookie were it not SameSite, but no
    // CSRF header, and its origin.
    let a = app
        .call(
            request(Method::POST, "/2025-11-30/capacity-providers")
                .header(header::COOKIE, &cookie)
                .header(header::ORIGIN, "http://127.0.0.1:1")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from("CapacityProviderName=evil"))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Even with the token, a foreign origin is refused.
    let a = app
        .call(
            request(Method::GET, "/2015-03-31/functions/")
                .header(header::COOKIE, &cookie)
                .header(CSRF_HEADER, &doc.csrf_token)
                .header(header::ORIGIN, "https://evil.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error().kind, "AccessDeniedException");
    // Sign-out from a foreign origin is refused and the session lives on.
    let a = app
        .call(
            request(Method::DELETE, "/console/session")
                .header(header::COOKIE, &cookie)
                .header(CSRF_HEADER, &doc.csrf_token)
                .header(header::ORIGIN, "http://127.0.0.1:1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get_session(&cookie).await.status, StatusCode::OK);
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let app = app(Console::default());
    let (cookie, doc) = app.sign_in().await;
    let delete = |csrf: &str| {
        request(Method::DELETE, "/console/session")
            .header(header::COOKIE, &cookie)
            .header(CSRF_HEADER, csrf)
            .header(header::ORIGIN, format!("http://{HOST}"))
            .body(Body::empty())
            .unwrap()
    };
    // Without its CSRF token a sign-out is refused (no logout CSRF).
    let a = app.call(delete("wrong")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error().kind, "AccessDeniedException");
    assert_eq!(app.get_session(&cookie).await.status, StatusCode::OK);

    let a = app.call(delete(&doc.csrf_token)).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_console_headers(&a);
    assert_eq!(
        a.header(header::SET_COOKIE),
        "fleetfn_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    );
    let a = app.get_session(&cookie).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.error().kind, "MissingAuthenticationTokenException");
    let a = app.list_functions(&cookie, Some(&doc.csrf_token)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.error().kind, "AccessDeniedException");
    // Signing out again is harmless.
    assert_eq!(
        app.call(delete(&doc.csrf_token)).await.status,
        StatusCode::NO_CONTENT
    );
    // No cookie at all: no session document.
    let a = app.get("/console/session").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_8_hours_after_sign_in() {
    let app = app(Console::default());
    let (cookie, doc) = app.sign_in().await;
    tokio::time::advance(SESSION_TTL - Duration::from_secs(1)).await;
    assert_eq!(
        app.list_functions(&cookie, Some(&doc.csrf_token))
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    let a = app.list_functions(&cookie, Some(&doc.csrf_token)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.error().message.contains("expired"));
    assert_eq!(
        app.get_session(&cookie).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_their_types_and_headers() {
    let app = app(Console::default());
    let a = app.get("/console").await;
    assert_eq!(a.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(a.header(header::LOCATION), "/console/");

    let a = app.get("/console/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_console_headers(&a);
    assert_eq!(a.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(a.header(header::CACHE_CONTROL), "no-store");
    assert_eq!(&a.body[..], include_bytes!("../../console/index.html"));

    for (path, ty) in [
        ("index.html", "text/html; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
        ("js/api.js", "text/javascript; charset=utf-8"),
        ("js/app.js", "text/javascript; charset=utf-8"),
        ("js/charts.js", "text/javascript; charset=utf-8"),
        ("js/pages/overview.js", "text/javascript; charset=utf-8"),
        ("js/pages/provider.js", "text/javascript; charset=utf-8"),
        ("js/pages/cost.js", "text/javascript; charset=utf-8"),
        ("js/pages/forms.js", "text/javascript; charset=utf-8"),
        ("js/pages/function.js", "text/javascript; charset=utf-8"),
    ] {
        let url = format!("/console/assets/{path}");
        let a = app.get(&url).await;
        assert_eq!(a.status, StatusCode::OK, "{url}");
        assert_console_headers(&a);
        assert_eq!(a.header(header::CONTENT_TYPE), ty, "{url}");
        assert_eq!(a.header(header::CACHE_CONTROL), "no-cache", "{url}");
        let etag = a.header(header::ETAG).to_string();
        assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
        // A reload with the ETag costs a 304.
        let again = app
            .call(
                request(Method::GET, &url)
                    .header(header::IF_NONE_MATCH, &etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{url}");
        assert!(again.body.is_empty());
        assert_eq!(again.header(header::ETAG), etag);
        // HEAD: the headers without the body.
        let head = app
            .call(request(Method::HEAD, &url).body(Body::empty()).unwrap())
            .await;
        assert_eq!(head.status, StatusCode::OK, "{url}");
        assert_eq!(head.header(header::CONTENT_TYPE), ty);
        assert!(head.body.is_empty());
    }
}

#[tokio::test]
async fn unknown_files_and_traversals_are_404() {
    let app = app(Console::default());
    for path in [
        "/console/assets/nope.js",
        "/console/assets/",
        "/console/assets/js/charts.test.mjs",
        "/console/assets/../Cargo.toml",
        "/console/assets/..%2fCargo.toml",
        "/console/assets/%2e%2e/Cargo.toml",
        "/console/assets/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/console/assets/js/../../Cargo.toml",
        "/console/assets/%2E%2E%2F..%2Fsrc%2Flib.rs",
        "/console/assets//etc/passwd",
        "/console/../Cargo.toml",
        "/console/index.html",
        "/console/nothing",
    ] {
        let a = app.get(path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert_console_headers(&a);
        assert_eq!(a.error().kind, "ResourceNotFoundException", "{path}");
        assert!(!String::from_utf8_lossy(&a.body).contains("[package]"));
    }
}
