//! The endpoint driven over real loopback HTTP with hyper's client, playing the runtime's part.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use fleetfn_runtime_api::{
    ERROR_TYPE_EXIT, ERROR_TYPE_RESPONSE_TOO_LARGE, InitError, Invocation, Outcome, Rejected,
    RuntimeApi, RuntimeApiConfig,
};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Safety net only: every wait below is woken by an event, this just turns a hang into a failure.
const GUARD: Duration = Duration::from_secs(20);

async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

struct Rt {
    api: RuntimeApi,
    client: HttpClient,
}

impl Rt {
    fn start() -> Rt {
        let api = RuntimeApi::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            RuntimeApiConfig::default(),
        )
        .expect("bind");
        let client = Client::builder(TokioExecutor::new()).build_http();
        Rt { api, client }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "http://{}/2018-06-01/runtime/{}",
            self.api.local_addr(),
            path
        )
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let mut req = Request::builder().method(method).uri(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).expect("request");
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

    /// Opens a `/next` long poll in the background.
    fn next(&self) -> JoinHandle<Reply> {
        tokio::spawn(self.request(Method::GET, "invocation/next", &[], Bytes::new()))
    }

    /// Opens `n` `/next` long polls and waits until all of them are parked.
    async fn park(&self, n: usize) -> Vec<JoinHandle<Reply>> {
        let before = self.api.parked();
        let polls = (0..n).map(|_| self.next()).collect();
        guarded("parked /next", self.api.wait_parked(|p| p >= before + n)).await;
        polls
    }

    async fn respond(&self, id: &str, body: impl Into<Bytes>) -> Reply {
        self.request(
            Method::POST,
            &format!("invocation/{id}/response"),
            &[],
            body,
        )
        .await
    }
}

fn invocation(id: &str, payload: &str) -> Invocation {
    Invocation {
        request_id: id.to_owned(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        deadline_ms: 1_900_000_000_000,
        invoked_function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f:1".to_owned(),
        trace_id: None,
        client_context: None,
        cognito_identity: None,
        tenant_id: None,
    }
}

fn function_error(outcome: Outcome) -> (String, Value) {
    match outcome {
        Outcome::FunctionError { error_type, body } => {
            (error_type, serde_json::from_slice(&body).expect("JSON"))
        }
        other => panic!("expected a function error, got {other:?}"),
    }
}

fn assert_accepted(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.json(), json!({"status": "OK"}));
}

fn assert_invalid_request_id(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json(),
        json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"})
    );
}

#[tokio::test]
async fn dispatch_without_a_parked_next_is_rejected() {
    let rt = Rt::start();
    assert!(!rt.api.is_ready());
    assert_eq!(
        rt.api.try_dispatch(invocation("a", "{}")).unwrap_err(),
        Rejected::NoIdleWorker
    );
    assert_eq!(rt.api.in_flight(), 0);
}

#[tokio::test]
async fn ready_resolves_on_the_first_parked_next() {
    let rt = Rt::start();
    let _poll = rt.next();
    guarded("ready", rt.api.ready()).await.expect("ready");
    assert!(rt.api.is_ready());
    assert_eq!(rt.api.parked(), 1);
}

#[tokio::test]
async fn three_parked_three_dispatched_answered_out_of_order() {
    let rt = Rt::start();
    let polls = rt.park(3).await;

    let mut tickets = Vec::new();
    for id in ["a", "b", "c"] {
        let mut inv = invocation(id, &format!(r#"{{"n":"{id}"}}"#));
        if id == "b" {
            inv.trace_id = Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".into());
            inv.client_context = Some(r#"{"custom":{"k":"v"}}"#.into());
            inv.cognito_identity =
                Some(r#"{"cognitoIdentityId":"i","cognitoIdentityPoolId":"p"}"#.into());
            inv.tenant_id = Some("tenant-1".into());
        }
        tickets.push(rt.api.try_dispatch(inv).expect("dispatch"));
    }
    assert_eq!(rt.api.parked(), 0);
    assert_eq!(rt.api.in_flight(), 3);
    assert_eq!(
        rt.api.try_dispatch(invocation("d", "{}")).unwrap_err(),
        Rejected::NoIdleWorker
    );

    // Each /next got exactly one invoke, with its own payload and headers.
    let mut seen = Vec::new();
    for poll in polls {
        let reply = guarded("/next", poll).await.expect("join");
        assert_eq!(reply.status, StatusCode::OK);
        let h = &reply.headers;
        let id = h["lambda-runtime-aws-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(reply.json(), json!({ "n": id }));
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["lambda-runtime-deadline-ms"], "1900000000000");
        assert_eq!(
            h["lambda-runtime-invoked-function-arn"],
            "arn:aws:lambda:us-east-1:123456789012:function:f:1"
        );
        let optional = [
            "lambda-runtime-trace-id",
            "lambda-runtime-client-context",
            "lambda-runtime-cognito-identity",
            "lambda-runtime-aws-tenant-id",
        ];
        if id == "b" {
            assert_eq!(
                h["lambda-runtime-trace-id"],
                "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
            );
            assert_eq!(
                h["lambda-runtime-client-context"],
                r#"{"custom":{"k":"v"}}"#
            );
            assert_eq!(
                h["lambda-runtime-cognito-identity"],
                r#"{"cognitoIdentityId":"i","cognitoIdentityPoolId":"p"}"#
            );
            assert_eq!(h["lambda-runtime-aws-tenant-id"], "tenant-1");
        } else {
            for name in optional {
                assert!(!h.contains_key(name), "{name} sent for {id}");
            }
        }
        seen.push(id);
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c"]);

    for id in ["c", "a", "b"] {
        assert_accepted(&rt.respond(id, format!(r#"{{"r":"{id}"}}"#)).await);
    }
    for (ticket, id) in tickets.into_iter().zip(["a", "b", "c"]) {
        assert_eq!(ticket.request_id(), id);
        let outcome = guarded("outcome", ticket).await;
        assert_eq!(
            outcome,
            Outcome::Response(Bytes::from(format!(r#"{{"r":"{id}"}}"#)))
        );
    }
    assert_eq!(rt.api.in_flight(), 0);
}

#[tokio::test]
async fn invocation_error_carries_type_header_and_body() {
    let rt = Rt::start();
    let poll = rt.park(1).await.remove(0);
    let ticket = rt
        .api
        .try_dispatch(invocation("e1", "{}"))
        .expect("dispatch");
    guarded("/next", poll).await.expect("join");

    let doc = json!({"errorMessage": "boom", "errorType": "MyError", "stackTrace": ["at x"]});
    let reply = rt
        .request(
            Method::POST,
            "invocation/e1/error",
            &[("Lambda-Runtime-Function-Error-Type", "Function.MyError")],
            doc.to_string(),
        )
        .await;
    assert_accepted(&reply);
    let (error_type, body) = function_error(guarded("outcome", ticket).await);
    assert_eq!(error_type, "Function.MyError");
    assert_eq!(body, doc);

    // Completed: a second answer for the same id is refused.
    assert_invalid_request_id(&rt.respond("e1", "{}").await);
}

#[tokio::test]
async fn invocation_error_without_type_header_is_unhandled() {
    let rt = Rt::start();
    let poll = rt.park(1).await.remove(0);
    let ticket = rt
        .api
        .try_dispatch(invocation("e2", "{}"))
        .expect("dispatch");
    guarded("/next", poll).await.expect("join");
    let reply = rt
        .request(Method::POST, "invocation/e2/error", &[], "{}")
        .await;
    assert_accepted(&reply);
    assert_eq!(
        function_error(guarded("outcome", ticket).await).0,
        "Unhandled"
    );
}

#[tokio::test]
async fn init_error_is_accepted_and_surfaced() {
    let rt = Rt::start();
    let mut watch = rt.api.init_error();
    assert!(watch.borrow_and_update().is_none());

    let doc = json!({"errorMessage": "bad handler", "errorType": "Runtime.InitError"});
    let reply = rt
        .request(
            Method::POST,
            "init/error",
            &[("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")],
            doc.to_string(),
        )
        .await;
    assert_accepted(&reply);

    guarded("init error", watch.changed())
        .await
        .expect("sender alive");
    let expected = InitError {
        error_type: "Runtime.InitError".into(),
        body: Bytes::from(doc.to_string()),
    };
    assert_eq!(watch.borrow().clone(), Some(expected.clone()));
    assert_eq!(guarded("ready", rt.api.ready()).await, Err(expected));
}

#[tokio::test]
async fn oversized_response_is_413_and_a_size_error() {
    let rt = Rt::start();
    let polls = rt.park(2).await;
    let big = rt
        .api
        .try_dispatch(invocation("big", "{}"))
        .expect("dispatch");
    let exact = rt
        .api
        .try_dispatch(invocation("exact", "{}"))
        .expect("dispatch");
    for poll in polls {
        guarded("/next", poll).await.expect("join");
    }

    let limit = 6_291_456;
    let reply = rt.respond("big", vec![b'x'; limit + 1]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        reply.json(),
        json!({
            "errorMessage": "Exceeded maximum allowed payload size (6291456 bytes).",
            "errorType": "RequestEntityTooLarge"
        })
    );
    let (error_type, body) = function_error(guarded("outcome", big).await);
    assert_eq!(error_type, ERROR_TYPE_RESPONSE_TOO_LARGE);
    assert_eq!(
        body,
        json!({
            "errorMessage": "Response payload size exceeded maximum allowed payload size (6291456 bytes).",
            "errorType": "Function.ResponseSizeTooLarge"
        })
    );

    // Exactly at the limit is fine.
    assert_accepted(&rt.respond("exact", vec![b'y'; limit]).await);
    match guarded("outcome", exact).await {
        Outcome::Response(b) => assert_eq!(b.len(), limit),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(rt.api.in_flight(), 0);
}

#[tokio::test]
async fn unknown_request_id_is_400() {
    let rt = Rt::start();
    assert_invalid_request_id(&rt.respond("nope", "{}").await);
    let reply = rt
        .request(Method::POST, "invocation/nope/error", &[], "{}")
        .await;
    assert_invalid_request_id(&reply);
    let reply = rt
        .request(Method::GET, "invocation/nope/whatever", &[], "")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn closed_parked_connection_does_not_eat_an_invoke() {
    let rt = Rt::start();
    let survivor = rt.park(1).await.remove(0);

    // A second /next on a raw connection, parked after the survivor (so LIFO would pick it),
    // whose client then goes away.
    let mut raw = tokio::net::TcpStream::connect(rt.api.local_addr())
        .await
        .expect("connect");
    raw.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: rt\r\n\r\n")
        .await
        .expect("write");
    guarded("raw /next parked", rt.api.wait_parked(|n| n == 2)).await;
    drop(raw);
    guarded("raw /next unparked", rt.api.wait_parked(|n| n == 1)).await;

    let ticket = rt
        .api
        .try_dispatch(invocation("s1", "{}"))
        .expect("dispatch");
    let reply = guarded("/next", survivor).await.expect("join");
    assert_eq!(reply.headers["lambda-runtime-aws-request-id"], "s1");
    assert_accepted(&rt.respond("s1", "ok").await);
    assert_eq!(
        guarded("outcome", ticket).await,
        Outcome::Response(Bytes::from_static(b"ok"))
    );
}

#[tokio::test]
async fn fail_all_in_flight_resolves_every_ticket() {
    let rt = Rt::start();
    let polls = rt.park(2).await;
    let t1 = rt
        .api
        .try_dispatch(invocation("f1", "{}"))
        .expect("dispatch");
    let t2 = rt
        .api
        .try_dispatch(invocation("f2", "{}"))
        .expect("dispatch");
    for poll in polls {
        guarded("/next", poll).await.expect("join");
    }
    assert_eq!(rt.api.in_flight(), 2);

    let n = rt
        .api
        .fail_all_in_flight(ERROR_TYPE_EXIT, "Runtime exited with error: exit status 1");
    assert_eq!(n, 2);
    assert_eq!(rt.api.in_flight(), 0);
    for t in [t1, t2] {
        let (error_type, body) = function_error(guarded("outcome", t).await);
        assert_eq!(error_type, "Runtime.ExitError");
        assert_eq!(
            body,
            json!({
                "errorMessage": "Runtime exited with error: exit status 1",
                "errorType": "Runtime.ExitError"
            })
        );
    }
    // Their ids are forgotten.
    assert_invalid_request_id(&rt.respond("f1", "{}").await);
}

#[tokio::test]
async fn dropped_ticket_response_is_accepted_and_discarded() {
    let rt = Rt::start();
    let poll = rt.park(1).await.remove(0);
    let ticket = rt
        .api
        .try_dispatch(invocation("d1", "{}"))
        .expect("dispatch");
    guarded("/next", poll).await.expect("join");
    drop(ticket);
    // Still in flight: the runtime is working on it.
    assert_eq!(rt.api.in_flight(), 1);
    assert_accepted(&rt.respond("d1", "late").await);
    assert_eq!(rt.api.in_flight(), 0);
    assert_invalid_request_id(&rt.respond("d1", "again").await);
}

/// Reads one HTTP/1.1 response with a `content-length` body from a raw connection.
async fn read_raw_response(
    conn: &mut tokio::io::BufReader<tokio::net::TcpStream>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    conn.read_line(&mut line).await.expect("status line");
    let status: u16 = line
        .split(' ')
        .nth(1)
        .expect("status")
        .parse()
        .expect("code");
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header");
        headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().expect("length"))
        .expect("content-length");
    let mut body = vec![0; len];
    conn.read_exact(&mut body).await.expect("body");
    (status, headers, body)
}

#[tokio::test]
async fn one_keep_alive_connection_serves_next_response_next() {
    let rt = Rt::start();
    let stream = tokio::net::TcpStream::connect(rt.api.local_addr())
        .await
        .expect("connect");
    let mut conn = tokio::io::BufReader::new(stream);
    for round in 0..3 {
        conn.get_mut()
            .write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: rt\r\n\r\n")
            .await
            .expect("write /next");
        guarded("parked", rt.api.wait_parked(|n| n == 1)).await;
        let id = format!("k{round}");
        let ticket = rt
            .api
            .try_dispatch(invocation(&id, "{}"))
            .expect("dispatch");
        let (status, headers, body) = guarded("/next", read_raw_response(&mut conn)).await;
        assert_eq!(status, 200);
        assert!(headers.contains(&("lambda-runtime-aws-request-id".into(), id.clone())));
        assert_eq!(body, b"{}");

        let post = format!(
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: rt\r\nContent-Length: 1\r\n\r\nr"
        );
        conn.get_mut()
            .write_all(post.as_bytes())
            .await
            .expect("write");
        let (status, _, body) = guarded("/response", read_raw_response(&mut conn)).await;
        assert_eq!(status, 202);
        assert_eq!(body, br#"{"status":"OK"}"#);
        assert_eq!(
            guarded("outcome", ticket).await,
            Outcome::Response(Bytes::from_static(b"r"))
        );
    }
}

#[tokio::test]
async fn shutdown_rejects_dispatch_and_fails_in_flight() {
    let rt = Rt::start();
    let poll = rt.park(1).await.remove(0);
    let ticket = rt
        .api
        .try_dispatch(invocation("x1", "{}"))
        .expect("dispatch");
    guarded("/next", poll).await.expect("join");
    rt.api.shutdown();
    assert_eq!(
        rt.api.try_dispatch(invocation("x2", "{}")).unwrap_err(),
        Rejected::Closed
    );
    assert_eq!(
        function_error(guarded("outcome", ticket).await).0,
        "Runtime.Unavailable"
    );
}

/// `GET /2018-06-01/credentials` with a header set, as the AWS SDKs' container provider asks.
async fn get_credentials(rt: &Rt, auth: Option<&str>) -> Reply {
    let mut req = Request::builder().method(Method::GET).uri(format!(
        "http://{}{}",
        rt.api.local_addr(),
        fleetfn_runtime_api::CREDENTIALS_PATH
    ));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = rt
        .client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("HTTP request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn the_credentials_endpoint_answers_only_the_token_holder() {
    let rt = Rt::start();
    let none = get_credentials(&rt, Some("t")).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(none.json()["errorType"], "CredentialsNotAvailable");
    rt.api.set_credentials(
        "secret-token",
        Bytes::from_static(br#"{"AccessKeyId":"A1"}"#),
    );
    for wrong in [
        None,
        Some("secret-toke"),
        Some("secret-tokenX"),
        Some("Bearer secret-token"),
    ] {
        let r = get_credentials(&rt, wrong).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{wrong:?}");
        assert_eq!(r.json()["errorType"], "AccessDenied");
    }
    let ok = get_credentials(&rt, Some("secret-token")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json()["AccessKeyId"], "A1");
    // Renewed: the next read gets the new document.
    rt.api.set_credentials(
        "secret-token",
        Bytes::from_static(br#"{"AccessKeyId":"A2"}"#),
    );
    let renewed = get_credentials(&rt, Some("secret-token")).await;
    assert_eq!(renewed.json()["AccessKeyId"], "A2");
}

#[tokio::test]
async fn shutdown_closes_open_connections() {
    use tokio::io::AsyncReadExt;
    let rt = Rt::start();
    // One connection with a parked `/next`, one idle after a finished request.
    let mut parked = tokio::net::TcpStream::connect(rt.api.local_addr())
        .await
        .expect("connect");
    parked
        .write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write /next");
    let mut idle = tokio::net::TcpStream::connect(rt.api.local_addr())
        .await
        .expect("connect");
    idle.write_all(b"GET /2018-06-01/ping HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 12];
    guarded(
        "an answer on the idle connection",
        idle.read_exact(&mut first),
    )
    .await
    .expect("read the answer");
    assert_eq!(&first, b"HTTP/1.1 404");
    guarded("the /next to park", rt.api.wait_parked(|n| n == 1)).await;
    rt.api.shutdown();
    // Both see the end of the stream (after whatever rest of the answer was in flight).
    for (what, conn) in [("the parked", &mut parked), ("the idle", &mut idle)] {
        let mut rest = Vec::new();
        guarded(what, conn.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|e| panic!("{what} connection: {e}"));
    }
}
