//! [`Api`]: the API as one tower service, with a fast path for `Invoke`.
//!
//! Every request goes through axum's router except `POST /2015-03-31/functions/{name}/invocations`
//! with a name that needs no percent-decoding. That one calls the same steps the router's layers
//! would, in the same order (SigV4 and body limit in [`crate::auth::authenticated`], the
//! `Invoke` handler, `x-amzn-RequestId` in [`crate::handlers::with_request_id`]), without the
//! router's per-request work: route lookup, two middleware layers each cloning its inner
//! service and boxing a future. That work was ≈ 10 % of the server's CPU per invoke
//! (docs/BENCHMARKS.md). Anything else about the path (a `%`, a trailing slash, another method)
//! takes the router, so both give the same answer to every request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{Method, Request};

use crate::Shared;

type BoxResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The API: axum's router, and the state the `Invoke` fast path needs (`None`: no fast path,
/// as for a router built elsewhere).
#[derive(Clone)]
pub struct Api {
    router: Router,
    fast: Option<Shared>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("fast_invoke", &self.fast.is_some())
            .finish_non_exhaustive()
    }
}

impl Api {
    pub(crate) fn new(router: Router, state: Shared) -> Self {
        Self {
            router,
            fast: Some(state),
        }
    }

    /// The router alone (what the fast path must answer like).
    pub fn router(&self) -> Router {
        self.router.clone()
    }
}

impl From<Router> for Api {
    fn from(router: Router) -> Self {
        Self { router, fast: None }
    }
}

/// The function name of a `POST /2015-03-31/functions/{name}/invocations` whose name the
/// router would take as it is (no `%` to decode).
fn invoke_target<B>(req: &Request<B>) -> Option<&str> {
    if req.method() != Method::POST {
        return None;
    }
    let name = req
        .uri()
        .path()
        .strip_prefix("/2015-03-31/functions/")?
        .strip_suffix("/invocations")?;
    (!name.is_empty() && !name.contains(['/', '%'])).then_some(name)
}

async fn invoke(state: Shared, function: String, req: axum::extract::Request) -> Response {
    let resp = crate::auth::authenticated(&state, req, |req| async {
        crate::invoke::invoke(State(state.clone()), Path(function), req)
            .await
            .into_response()
    })
    .await;
    let mut resp = crate::handlers::with_request_id(resp);
    // What axum's router adds to every answer whose length is known.
    if !resp.headers().contains_key(http::header::CONTENT_LENGTH)
        && let Some(n) = http_body::Body::size_hint(resp.body()).exact()
    {
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
    }
    resp
}

impl<B> tower::Service<Request<B>> for Api
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    // Boxed on both paths: the router's other operations are not where the time goes.
    type Future = BoxResponse;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready, and so is the fast path.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(state) = &self.fast
            && let Some(function) = invoke_target(&req)
        {
            let function = function.to_owned();
            let state = state.clone();
            return Box::pin(async move { Ok(invoke(state, function, req.map(Body::new)).await) });
        }
        Box::pin(tower::Service::call(&mut self.router, req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str) -> Request<()> {
        Request::post(path).body(()).unwrap()
    }

    #[test]
    fn only_plain_invoke_paths_take_the_fast_path() {
        assert_eq!(
            invoke_target(&post("/2015-03-31/functions/my-fn/invocations")),
            Some("my-fn")
        );
        assert_eq!(
            invoke_target(&post(
                "/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f:live/invocations?x=1"
            )),
            Some("arn:aws:lambda:us-east-1:000000000000:function:f:live")
        );
        for path in [
            "/2015-03-31/functions/f%3Alive/invocations",
            "/2015-03-31/functions//invocations",
            "/2015-03-31/functions/a/b/invocations",
            "/2015-03-31/functions/f/invocations/",
            "/2015-03-31/functions/f/response-streaming-invocations",
            "/2021-11-15/functions/f/invocations",
            "/2015-03-31/functions/f",
        ] {
            assert_eq!(invoke_target(&post(path)), None, "{path}");
        }
        let get = Request::get("/2015-03-31/functions/f/invocations")
            .body(())
            .unwrap();
        assert_eq!(invoke_target(&get), None);
    }

    /// A request as the AWS CLI sends it (signed with `secret`), or unsigned.
    fn invoke_request(path: &str, body: &[u8], secret: Option<&str>) -> Request<Body> {
        let mut req = Request::post(path)
            .header(http::header::HOST, "127.0.0.1:9000")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(body.to_vec())
            .unwrap();
        if let Some(secret) = secret {
            fleetfn_sigv4::sign_http_request(
                &mut req,
                &fleetfn_sigv4::SigningParams {
                    access_key_id: crate::console::tests::KEY,
                    secret_access_key: secret,
                    session_token: None,
                    region: "us-east-1",
                    service: "lambda",
                    time: jiff::Timestamp::now(),
                },
            )
            .unwrap();
        }
        req.map(Body::from)
    }

    async fn answer(
        svc: impl tower::Service<Request<Body>, Response = Response, Error = Infallible>,
        req: Request<Body>,
    ) -> (http::StatusCode, Vec<(String, String)>, Bytes) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let resp = svc.oneshot(req).await.unwrap();
        let status = resp.status();
        assert!(resp.headers().contains_key("x-amzn-requestid"));
        // Every header but the request id (a new one each time), in order.
        let headers = resp
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str() != "x-amzn-requestid")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        (
            status,
            headers,
            resp.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    #[tokio::test]
    async fn the_fast_path_answers_invokes_as_the_router_does() {
        let app = crate::console::tests::app(crate::Console::new(false));
        let secret = crate::console::tests::SECRET;
        let big = vec![b'x'; 6 * 1024 * 1024 + 1];
        let cases: [(&str, &[u8], Option<&str>); 7] = [
            // Unsigned, a wrong signature, an unknown function, an invalid name, a bad
            // qualifier, a body over the 6 MB limit, and a server without a data plane.
            ("/2015-03-31/functions/f/invocations", b"{}", None),
            ("/2015-03-31/functions/f/invocations", b"{}", Some("wrong")),
            (
                "/2015-03-31/functions/nope/invocations",
                b"{}",
                Some(secret),
            ),
            (
                "/2015-03-31/functions/bad!name/invocations",
                b"{}",
                Some(secret),
            ),
            (
                "/2015-03-31/functions/f/invocations?Qualifier=%24%24",
                b"{}",
                Some(secret),
            ),
            ("/2015-03-31/functions/f/invocations", &big, Some(secret)),
            (
                "/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f/invocations",
                b"{}",
                Some(secret),
            ),
        ];
        for (path, body, secret) in cases {
            assert!(
                invoke_target(&invoke_request(path, b"", None)).is_some(),
                "{path}"
            );
            let fast = answer(app.router.clone(), invoke_request(path, body, secret)).await;
            let slow = answer(app.router.router(), invoke_request(path, body, secret)).await;
            assert_eq!(fast, slow, "{path}");
            assert!(
                fast.0.is_client_error() || fast.0.is_server_error(),
                "{path}: {fast:?}"
            );
        }
    }
}
