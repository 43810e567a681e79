//! `fleetfn-httpfn`: a test fixture, an HTTP application written on `lambda_http` the way
//! users write one, to prove fleetfn's function URLs speak payload format 2.0 to a real
//! framework. It uses `lambda_http`'s own request and response types unchanged.
//!
//! The function's handler setting (`_HANDLER`) picks how it answers:
//! - anything but `stream`: buffered, through `lambda_http::run_concurrent`;
//! - `stream`: streamed, through `lambda_http::run_with_streaming_response_concurrent`
//!   (the response goes out as a metadata prelude, 8 NUL bytes and the body chunks).
//!
//! Routes (both modes):
//!
//! | path | answer |
//! | --- | --- |
//! | `/cookie` | 200 `text/plain` `cookie set`, with `Set-Cookie: flavour=oatmeal` and `session=abc; HttpOnly; Path=/`, and `x-fixture: httpfn` |
//! | `/binary` | 200 `application/octet-stream`, the 256 bytes 0..=255 |
//! | `/status/{code}` | that status, `text/plain` body `status {code}` |
//! | `/chunks?n=3&delay_ms=1000` | 201 `text/plain`, header `x-fixture: httpfn-stream`, cookie `streamed=yes`: `n` lines `chunk {i}\n` with `delay_ms` between them (buffered mode: the same body, all at once after the delays) |
//! | anything else | 200 `application/json`: `{"method","path","rawPath","query","rawQuery","headers","cookies","body","bodyBase64","isBinary","requestId"}` |
//!
//! In the echo, `query` maps each parameter to all of its values, `headers` each header to
//! its value (values joined with `,`), `cookies` is the request's cookies in order (`lambda_http`
//! folds the event's `cookies` into one `Cookie` header), `body` the body as text (or null when
//! it is not UTF-8) and `bodyBase64` the same bytes in base64.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body::Frame;
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use serde_json::json;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    if std::env::var("_HANDLER").as_deref() == Ok("stream") {
        lambda_http::run_with_streaming_response_concurrent(service_fn(streamed)).await
    } else {
        lambda_http::run_concurrent(service_fn(buffered)).await
    }
}

/// One route's answer before it is turned into a buffered or a streamed response.
enum Answer {
    Whole(Response<Body>),
    Chunks { n: u32, delay: Duration },
}

async fn buffered(req: Request) -> Result<Response<Body>, Error> {
    match route(&req)? {
        Answer::Whole(resp) => Ok(resp),
        Answer::Chunks { n, delay } => {
            let mut text = String::new();
            for i in 0..n {
                if i > 0 {
                    tokio::time::sleep(delay).await;
                }
                text.push_str(&format!("chunk {i}\n"));
            }
            let (parts, ()) = chunks_head()?.into_parts();
            Ok(Response::from_parts(parts, Body::Text(text)))
        }
    }
}

async fn streamed(req: Request) -> Result<Response<ChannelBody>, Error> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let head = match route(&req)? {
        Answer::Whole(resp) => {
            let (parts, body) = resp.into_parts();
            let bytes = Bytes::copy_from_slice(body.as_ref());
            // Capacity 4: the one send never waits.
            let _ = tx.try_send(bytes);
            Response::from_parts(parts, ())
        }
        Answer::Chunks { n, delay } => {
            tokio::spawn(async move {
                for i in 0..n {
                    if i > 0 {
                        tokio::time::sleep(delay).await;
                    }
                    if tx.send(Bytes::from(format!("chunk {i}\n"))).await.is_err() {
                        return;
                    }
                }
            });
            chunks_head()?
        }
    };
    let (parts, ()) = head.into_parts();
    Ok(Response::from_parts(parts, ChannelBody(rx)))
}

/// A response body fed by a channel: each message is one frame, the body ends when every
/// sender is gone.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

fn chunks_head() -> Result<Response<()>, Error> {
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "text/plain")
        .header("x-fixture", "httpfn-stream")
        .header(header::SET_COOKIE, "streamed=yes")
        .body(())?)
}

fn route(req: &Request) -> Result<Answer, Error> {
    let path = req.raw_http_path().to_owned();
    let query = req.query_string_parameters();
    if path == "/cookie" {
        return Ok(Answer::Whole(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .header("x-fixture", "httpfn")
                .header(header::SET_COOKIE, "flavour=oatmeal")
                .header(header::SET_COOKIE, "session=abc; HttpOnly; Path=/")
                .body(Body::Text("cookie set".to_owned()))?,
        ));
    }
    if path == "/binary" {
        return Ok(Answer::Whole(
            Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::Binary((0..=255u8).collect()))?,
        ));
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        return Ok(Answer::Whole(
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::Text(format!("status {}", status.as_u16())))?,
        ));
    }
    if path == "/chunks" {
        let n = query.first("n").and_then(|v| v.parse().ok()).unwrap_or(3);
        let delay_ms = query
            .first("delay_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        return Ok(Answer::Chunks {
            n,
            delay: Duration::from_millis(delay_ms),
        });
    }
    Ok(Answer::Whole(echo(req, &path)?))
}

fn echo(req: &Request, path: &str) -> Result<Response<Body>, Error> {
    let query_map = req.query_string_parameters();
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, _) in query_map.iter() {
        if !query.contains_key(k) {
            let all = query_map.all(k).unwrap_or_default();
            query.insert(k.to_owned(), all.into_iter().map(str::to_owned).collect());
        }
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for name in req.headers().keys() {
        let values: Vec<&str> = req
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v: &HeaderValue| v.to_str().ok())
            .collect();
        headers.insert(name.as_str().to_owned(), values.join(","));
    }
    let cookies: Vec<String> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    let body: &[u8] = req.body().as_ref();
    let doc = json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "rawPath": path,
        "query": query,
        "rawQuery": req.uri().query().unwrap_or(""),
        "headers": headers,
        "cookies": cookies,
        "body": std::str::from_utf8(body).ok(),
        "bodyBase64": base64::engine::general_purpose::STANDARD.encode(body),
        "isBinary": matches!(req.body(), Body::Binary(_)),
        "requestId": req.lambda_context_ref().map(|c| c.request_id.clone()),
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(serde_json::to_string(&doc)?))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn echo_reports_query_cookies_and_binary_body() {
        let req: Request = lambda_http::http::Request::builder()
            .method("POST")
            .uri("https://x.lambda-url.us-east-1.on.aws/a/b?x=1&x=2&y=3")
            .header(header::COOKIE, "a=1; b=2")
            .body(Body::Binary(vec![0, 159, 146, 150]))
            .unwrap()
            .with_query_string_parameters(
                [
                    ("x".to_owned(), vec!["1".to_owned(), "2".to_owned()]),
                    ("y".to_owned(), vec!["3".to_owned()]),
                ]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
            );
        let resp = echo(&req, "/a/b").unwrap();
        let doc: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
        assert_eq!(doc["method"], "POST");
        assert_eq!(doc["query"]["x"], json!(["1", "2"]));
        assert_eq!(doc["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(doc["body"], Value::Null);
        assert_eq!(doc["bodyBase64"], "AJ+Slg==");
        assert_eq!(doc["isBinary"], true);
    }

    #[test]
    fn status_route_parses_its_code() {
        let req: Request = lambda_http::http::Request::builder()
            .uri("https://x.lambda-url.us-east-1.on.aws/status/418")
            .body(Body::Empty)
            .unwrap()
            .with_raw_http_path("/status/418");
        let Answer::Whole(resp) = route(&req).unwrap() else {
            panic!("not a whole answer")
        };
        assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT);
    }
}
