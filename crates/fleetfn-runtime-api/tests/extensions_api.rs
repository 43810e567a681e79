//! The Extensions API and the Logs API answer, over real loopback HTTP, playing extensions.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use fleetfn_runtime_api::{
    ExtensionContext, ExtensionInitError, ExtensionState, HDR_EVENT_ID, HDR_EXTENSION_ID,
    MAX_EXTENSIONS, RuntimeApi, RuntimeApiConfig, ShutdownReason,
};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::task::JoinHandle;

/// Safety net only: every wait below is woken by an event.
const GUARD: Duration = Duration::from_secs(20);

async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct ErrorDoc {
    error_message: String,
    error_type: String,
}

impl Reply {
    fn error(&self) -> ErrorDoc {
        serde_json::from_slice(&self.body).expect("error document")
    }

    #[track_caller]
    fn assert_error(&self, status: StatusCode, error_type: &str) -> ErrorDoc {
        assert_eq!(
            self.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        let doc = self.error();
        assert_eq!(doc.error_type, error_type, "{}", doc.error_message);
        doc
    }
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    function_name: String,
    function_version: String,
    handler: String,
    account_id: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct ShutdownEvent {
    event_type: String,
    shutdown_reason: String,
    deadline_ms: u64,
}

struct Env {
    api: RuntimeApi,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Env {
    fn start() -> Env {
        let api = RuntimeApi::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            RuntimeApiConfig::default(),
        )
        .expect("bind");
        api.set_extension_context(ExtensionContext {
            function_name: "f".into(),
            function_version: "3".into(),
            handler: "app.handler".into(),
            account_id: Some("123456789012".into()),
        });
        Env {
            api,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.api.local_addr()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .expect("request");
        let client = self.client.clone();
        async move {
            let resp = client.request(req).await.expect("HTTP request");
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            Reply {
                status,
                headers,
                body,
            }
        }
    }

    async fn register(&self, name: &str, body: &str) -> Reply {
        self.request(
            Method::POST,
            "/2020-01-01/extension/register",
            &[
                ("Lambda-Extension-Name", name),
                ("Lambda-Extension-Accept-Feature", "accountId"),
            ],
            body,
        )
        .await
    }

    /// Registers `name` for SHUTDOWN and returns its id.
    async fn register_ok(&self, name: &str) -> String {
        let reply = self.register(name, r#"{"events":["SHUTDOWN"]}"#).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.headers[HDR_EXTENSION_ID]
            .to_str()
            .expect("id")
            .to_owned()
    }

    fn next(&self, id: &str) -> JoinHandle<Reply> {
        tokio::spawn(self.request(
            Method::GET,
            "/2020-01-01/extension/event/next",
            &[("Lambda-Extension-Identifier", id)],
            "",
        ))
    }

    async fn post_error(
        &self,
        kind: &str,
        id: &str,
        error_type: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut headers = vec![("Lambda-Extension-Identifier", id)];
        if let Some(t) = error_type {
            headers.push(("Lambda-Extension-Function-Error-Type", t));
        }
        self.request(
            Method::POST,
            &format!("/2020-01-01/extension/{kind}/error"),
            &headers,
            body,
        )
        .await
    }

    async fn wait_ready(&self, name: &str) {
        guarded("extension ready", async {
            loop {
                if self
                    .api
                    .extensions()
                    .iter()
                    .any(|e| e.name == name && e.state == ExtensionState::Ready)
                {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
    }
}

#[tokio::test]
async fn register_next_shutdown_and_done() {
    let env = Env::start();
    env.api.expect_extensions(vec!["ext-a".into()]);

    let reply = env.register("ext-a", r#"{"events":["SHUTDOWN"]}"#).await;
    assert_eq!(reply.status, StatusCode::OK);
    let id = reply.headers[HDR_EXTENSION_ID].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let body: RegisterBody = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        body,
        RegisterBody {
            function_name: "f".into(),
            function_version: "3".into(),
            handler: "app.handler".into(),
            account_id: Some("123456789012".into()),
        }
    );
    guarded("registered", env.api.extensions_registered())
        .await
        .expect("registered");

    let poll = env.next(&id);
    guarded("ready", env.api.extensions_ready())
        .await
        .expect("ready");
    let info = env.api.extensions();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].name, "ext-a");
    assert!(info[0].external);
    assert_eq!(info[0].events, vec!["SHUTDOWN".to_owned()]);
    assert_eq!(info[0].state, ExtensionState::Ready);
    env.api.finish_init();

    env.api
        .shutdown_extensions(ShutdownReason::Spindown, 1_900_000_000_123);
    let reply = guarded("SHUTDOWN", poll).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.contains_key(HDR_EVENT_ID));
    let event: ShutdownEvent = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        event,
        ShutdownEvent {
            event_type: "SHUTDOWN".into(),
            shutdown_reason: "spindown".into(),
            deadline_ms: 1_900_000_000_123,
        }
    );

    // Not done until it asks for the next event again; that request is then held.
    let done = env.api.extensions_shut_down();
    tokio::pin!(done);
    assert!(futures_poll(done.as_mut()).await.is_none());
    let last = env.next(&id);
    guarded("shut down", done).await;
    tokio::task::yield_now().await;
    assert!(!last.is_finished());
    last.abort();
}

/// Polls `fut` once.
async fn futures_poll<F: Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn shutdown_reaches_an_extension_that_was_not_parked() {
    let env = Env::start();
    env.api.expect_extensions(vec!["late".into()]);
    let id = env.register_ok("late").await;
    env.api.shutdown_extensions(ShutdownReason::Failure, 7);
    let reply = guarded("SHUTDOWN", env.next(&id)).await.unwrap();
    let event: ShutdownEvent = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(event.shutdown_reason, "failure");
    assert_eq!(event.deadline_ms, 7);
    let last = env.next(&id);
    guarded("shut down", env.api.extensions_shut_down()).await;
    last.abort();
}

#[tokio::test]
async fn extension_init_waits_for_every_expected_one() {
    let env = Env::start();
    env.api.expect_extensions(vec!["a".into(), "b".into()]);
    let a = env.register_ok("a").await;
    let _pa = env.next(&a);
    env.wait_ready("a").await;
    let ready = env.api.extensions_ready();
    tokio::pin!(ready);
    assert!(
        futures_poll(ready.as_mut()).await.is_none(),
        "b has not registered"
    );
    let b = env.register_ok("b").await;
    assert!(
        futures_poll(ready.as_mut()).await.is_none(),
        "b has not called /event/next"
    );
    let _pb = env.next(&b);
    guarded("ready", ready).await.expect("ready");
}

#[tokio::test]
async fn registration_errors_are_aws_errors() {
    let env = Env::start();
    env.api.expect_extensions(vec!["ext".into()]);

    let r = env.register("", r#"{"events":["SHUTDOWN"]}"#).await;
    r.assert_error(StatusCode::FORBIDDEN, "Extension.InvalidExtensionName");

    // LMI delivers no INVOKE events to extensions.
    let r = env
        .register("ext", r#"{"events":["INVOKE","SHUTDOWN"]}"#)
        .await;
    let doc = r.assert_error(StatusCode::FORBIDDEN, "Extension.InvalidEventType");
    assert!(
        doc.error_message.starts_with("INVOKE:"),
        "{}",
        doc.error_message
    );

    let r = env.register("ext", r#"{"events":"SHUTDOWN"}"#).await;
    r.assert_error(StatusCode::FORBIDDEN, "InvalidRequestFormat");
    let r = env.register("ext", "").await;
    r.assert_error(StatusCode::FORBIDDEN, "InvalidRequestFormat");
    let r = env
        .register("ext", r#"{"events":[],"configurationKeys":["K"]}"#)
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "InvalidRequestFormat");

    env.register_ok("ext").await;
    let r = env.register("ext", r#"{"events":["SHUTDOWN"]}"#).await;
    r.assert_error(StatusCode::FORBIDDEN, "Extension.InvalidExtensionState");

    // Internal extensions: no events, unique names, up to the limit, while registration is open.
    let r = env.register("internal", r#"{"events":["SHUTDOWN"]}"#).await;
    r.assert_error(StatusCode::FORBIDDEN, "Extension.InvalidEventType");
    let r = env.register("internal", r#"{"events":[]}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = env.register("internal", r#"{"events":[]}"#).await;
    r.assert_error(StatusCode::FORBIDDEN, "Extension.InvalidExtensionState");
    for i in 2..MAX_EXTENSIONS {
        let r = env.register(&format!("i{i}"), "{}").await;
        assert_eq!(r.status, StatusCode::OK, "{i}");
    }
    let r = env.register("one-too-many", "{}").await;
    r.assert_error(StatusCode::FORBIDDEN, "Extension.TooManyExtensions");

    env.api.finish_init();
    let r = env.register("after-init", "{}").await;
    // Closed is checked before the limit (the list is full too).
    r.assert_error(StatusCode::FORBIDDEN, "Extension.RegistrationClosed");
}

#[tokio::test]
async fn identifier_errors_are_aws_errors() {
    let env = Env::start();
    let r = env
        .request(Method::GET, "/2020-01-01/extension/event/next", &[], "")
        .await;
    r.assert_error(
        StatusCode::FORBIDDEN,
        "Extension.MissingExtensionIdentifier",
    );
    let r = guarded("next", env.next("not-a-uuid")).await.unwrap();
    r.assert_error(
        StatusCode::FORBIDDEN,
        "Extension.InvalidExtensionIdentifier",
    );
    let r = guarded("next", env.next(&uuid::Uuid::new_v4().to_string()))
        .await
        .unwrap();
    r.assert_error(
        StatusCode::FORBIDDEN,
        "Extension.UnknownExtensionIdentifier",
    );
    let r = env
        .request(Method::POST, "/2020-01-01/extension/event/next", &[], "")
        .await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");
    let r = env
        .request(Method::GET, "/2020-01-01/extension/nope", &[], "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn init_error_fails_extension_init() {
    let env = Env::start();
    env.api
        .expect_extensions(vec!["bad".into(), "other".into()]);
    let id = env.register_ok("bad").await;

    let r = env.post_error("init", &id, None, "").await;
    r.assert_error(StatusCode::FORBIDDEN, "Extension.MissingHeader");

    let body = r#"{"errorMessage":"no config","errorType":"Extension.ConfigMissing"}"#;
    let r = env
        .post_error("init", &id, Some("Extension.ConfigMissing"), body)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(&r.body[..], br#"{"status":"OK"}"#);

    let err = guarded("init error", env.api.extensions_ready())
        .await
        .unwrap_err();
    let ExtensionInitError::Reported(err) = err else {
        panic!("{err:?}")
    };
    assert_eq!(err.name, "bad");
    assert_eq!(err.error_type, "Extension.ConfigMissing");
    assert_eq!(&err.body[..], body.as_bytes());
    assert!(env.api.extensions_registered().await.is_err());

    // It cannot come back to life.
    let r = guarded("next", env.next(&id)).await.unwrap();
    r.assert_error(StatusCode::FORBIDDEN, "Extension.InvalidExtensionState");
}

#[tokio::test]
async fn error_types_not_in_the_extension_namespace_get_the_default() {
    let env = Env::start();
    env.api.expect_extensions(vec!["e".into()]);
    let id = env.register_ok("e").await;
    env.post_error("init", &id, Some("oops"), "").await;
    let err = env.api.extensions_ready().await.unwrap_err();
    assert_eq!(err.error_type(), "Extension.InitError");
}

#[tokio::test]
async fn exit_error_after_init_is_watched() {
    let env = Env::start();
    env.api.expect_extensions(vec!["e".into()]);
    let id = env.register_ok("e").await;
    let poll = env.next(&id);
    guarded("ready", env.api.extensions_ready()).await.unwrap();
    env.api.finish_init();

    let mut errors = env.api.watch_extension_errors();
    assert!(errors.borrow_and_update().is_none());
    let r = env.post_error("exit", &id, Some("whatever"), "{}").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    guarded("exit error", errors.changed()).await.unwrap();
    let err = errors.borrow().clone().expect("error");
    assert_eq!(err.name, "e");
    assert_eq!(err.error_type, "Extension.ExitError");
    let r = env
        .post_error("exit", &id, Some("Extension.Again"), "")
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "Extension.InvalidExtensionState");
    // An extension that reported an error is not waited for at shutdown.
    env.api.shutdown_extensions(ShutdownReason::Failure, 1);
    guarded("shut down", env.api.extensions_shut_down()).await;
    poll.abort();
}

#[tokio::test]
async fn logs_api_is_not_supported_on_lmi() {
    let env = Env::start();
    let id = {
        env.api.expect_extensions(vec!["e".into()]);
        env.register_ok("e").await
    };
    let r = env
        .request(
            Method::PUT,
            "/2020-08-15/logs",
            &[("Lambda-Extension-Identifier", &id)],
            r#"{"schemaVersion":"2021-03-18","types":["function"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:1234"}}"#,
        )
        .await;
    let doc = r.assert_error(StatusCode::NOT_FOUND, "Logs.NotSupported");
    assert!(
        doc.error_message.contains("Telemetry API"),
        "{}",
        doc.error_message
    );
}

#[tokio::test]
async fn endpoint_shutdown_ends_the_waits() {
    let env = Env::start();
    env.api.expect_extensions(vec!["never".into()]);
    let wait = env.api.extensions_ready();
    tokio::pin!(wait);
    assert!(futures_poll(wait.as_mut()).await.is_none());
    env.api.shutdown();
    assert_eq!(
        guarded("closed", wait).await.unwrap_err(),
        ExtensionInitError::Closed
    );
}
