//! A function's answer as its URL's HTTP response, as Lambda maps it: a JSON object with a
//! `statusCode` is a structured response (`headers`, `cookies` as `Set-Cookie`, `body`,
//! `isBase64Encoded`); a JSON string is the body as it is; any other JSON is the body verbatim;
//! all with `Content-Type: application/json` unless the function set one. What is not JSON,
//! or a structured response that does not hold up, is the endpoint's `502`. A streamed answer
//! of type `application/vnd.awslambda.http-integration-response` starts with a prelude of the
//! same shape (no body), ended by 8 NUL bytes.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

/// The content type of a streamed answer that starts with an HTTP prelude.
pub(crate) const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";

/// What ends the prelude of such an answer.
pub(crate) const PRELUDE_END: [u8; 8] = [0; 8];

/// Why a function's answer could not be mapped (the client gets a 502).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Malformed {
    #[error("the function's response is not JSON")]
    NotJson,
    #[error("the function's response does not have the shape of an HTTP response: {0}")]
    Shape(String),
    #[error("the function's response has an invalid statusCode {0}")]
    Status(String),
    #[error("the function's response has an invalid header {0:?}")]
    Header(String),
    #[error("the function's response body is not valid base64")]
    Base64,
}

/// A status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// A whole (buffered) HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub head: Head,
    pub body: Bytes,
}

/// A header value as functions write them: strings, also numbers and booleans.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    String(String),
    Number(serde_json::Number),
    Bool(bool),
}

/// The structured response (and, without `body`, the streaming prelude).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Structured {
    #[serde(default)]
    status_code: Option<Scalar>,
    #[serde(default)]
    headers: Option<BTreeMap<String, Option<Scalar>>>,
    #[serde(default)]
    cookies: Option<Vec<String>>,
    /// Free-form: a string, or JSON that is sent serialized.
    #[serde(default)]
    body: Option<serde_json::Value>,
    #[serde(default)]
    is_base64_encoded: Option<bool>,
}

/// The most headers (names) and cookies a function's answer may set, each: more is malformed,
/// as is more than [`MAX_HEADER_BYTES`] of them in all (a `HeaderMap` would panic past ~24k
/// names; API Gateway caps a response's headers at 10 KB).
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 10 << 10;

/// Headers the endpoint sets itself: what the function says about them is dropped.
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name.as_str() == "keep-alive"
}

/// Whether a `Set-Cookie` value sets the console's session cookie (its name in any case, with
/// or without a `__Host-`/`__Secure-` prefix). Browsers share cookies across the ports of a
/// host, so a function URL answer could otherwise set it for the API (a longer `Path` is sent
/// first) and keep signing the admin out, or crowd out the real one: such cookies are dropped.
fn sets_console_cookie(set_cookie: &[u8]) -> bool {
    let name = set_cookie
        .split(|b| *b == b'=')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    let name = name
        .strip_prefix(b"__host-")
        .or_else(|| name.strip_prefix(b"__secure-"))
        .unwrap_or(&name[..]);
    name == crate::console::COOKIE_NAME.as_bytes()
}

fn head_of(s: &Structured) -> Result<(Head, Option<&serde_json::Value>), Malformed> {
    let status = match &s.status_code {
        None => StatusCode::OK,
        Some(Scalar::Number(n)) => n
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|c| c.as_u16() >= 200)
            .ok_or_else(|| Malformed::Status(n.to_string()))?,
        Some(Scalar::String(t)) => t
            .trim()
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|c| c.as_u16() >= 200)
            .ok_or_else(|| Malformed::Status(format!("{t:?}")))?,
        Some(Scalar::Bool(b)) => return Err(Malformed::Status(b.to_string())),
    };
    let too_many = || Malformed::Header(format!("more than {MAX_HEADERS} headers or cookies"));
    if s.headers.as_ref().is_some_and(|h| h.len() > MAX_HEADERS)
        || s.cookies.as_ref().is_some_and(|c| c.len() > MAX_HEADERS)
    {
        return Err(too_many());
    }
    let header_bytes: usize = s
        .headers
        .iter()
        .flatten()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.to_header_string().len()))
        .chain(s.cookies.iter().flatten().map(String::len))
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(Malformed::Header(format!(
            "headers and cookies of more than {MAX_HEADER_BYTES} bytes"
        )));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in s.headers.iter().flatten() {
        let Some(value) = value else { continue };
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| Malformed::Header(name.clone()))?;
        if hop_by_hop(&name) {
            continue;
        }
        let v = value.to_header_string();
        if name == header::SET_COOKIE && sets_console_cookie(v.as_bytes()) {
            continue;
        }
        let v = HeaderValue::from_str(&v).map_err(|_| Malformed::Header(name.to_string()))?;
        headers.try_insert(name, v).map_err(|_| too_many())?;
    }
    for c in s.cookies.iter().flatten() {
        if sets_console_cookie(c.as_bytes()) {
            continue;
        }
        let v = HeaderValue::from_str(c).map_err(|_| Malformed::Header("set-cookie".into()))?;
        headers
            .try_append(header::SET_COOKIE, v)
            .map_err(|_| too_many())?;
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok((Head { status, headers }, s.body.as_ref()))
}

impl Scalar {
    fn to_header_string(&self) -> String {
        match self {
            Scalar::String(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn json_head() -> Head {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Head {
        status: StatusCode::OK,
        headers,
    }
}

/// The HTTP answer of a function's buffered response.
pub(crate) fn buffered(payload: &Bytes) -> Result<Answer, Malformed> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| Malformed::NotJson)?;
    match value {
        serde_json::Value::Object(ref m) if m.contains_key("statusCode") => {
            let s = Structured::deserialize(value).map_err(|e| Malformed::Shape(e.to_string()))?;
            let (head, body) = head_of(&s)?;
            let body = match body {
                None | Some(serde_json::Value::Null) => Bytes::new(),
                Some(serde_json::Value::String(b)) if s.is_base64_encoded == Some(true) => {
                    Bytes::from(
                        base64::engine::general_purpose::STANDARD
                            .decode(b.trim())
                            .map_err(|_| Malformed::Base64)?,
                    )
                }
                Some(serde_json::Value::String(b)) => Bytes::from(b.clone()),
                Some(other) => Bytes::from(other.to_string()),
            };
            Ok(Answer { head, body })
        }
        serde_json::Value::String(s) => Ok(Answer {
            head: json_head(),
            body: Bytes::from(s),
        }),
        _ => Ok(Answer {
            head: json_head(),
            body: payload.clone(),
        }),
    }
}

/// The head of a streamed answer in a URL's `RESPONSE_STREAM` mode without a prelude: `200`
/// with the runtime's content type.
pub(crate) fn stream_head(content_type: Option<&str>) -> Head {
    let mut headers = HeaderMap::new();
    let ct = content_type
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, ct);
    Head {
        status: StatusCode::OK,
        headers,
    }
}

/// The head a prelude (the JSON before [`PRELUDE_END`]) describes.
pub(crate) fn prelude(json: &[u8]) -> Result<Head, Malformed> {
    let s: Structured = serde_json::from_slice(json).map_err(|e| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err() {
            Malformed::NotJson
        } else {
            Malformed::Shape(e.to_string())
        }
    })?;
    head_of(&s).map(|(head, _)| head)
}

/// Where [`PRELUDE_END`] starts in `buf`, if it is there, searching from `from` (a caller that
/// appends chunks passes where the last search stopped, less 7 bytes for a delimiter split
/// across chunks, so a stream of tiny chunks costs linear time, not quadratic).
pub(crate) fn find_prelude_end(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buf.len());
    buf[from..]
        .windows(PRELUDE_END.len())
        .position(|w| w == PRELUDE_END)
        .map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(s: &str) -> Answer {
        buffered(&Bytes::from(s.to_string())).unwrap()
    }

    fn ct(a: &Answer) -> &str {
        a.head.headers[header::CONTENT_TYPE].to_str().unwrap()
    }

    #[test]
    fn a_function_cannot_set_the_console_cookie_buffered_or_streamed() {
        let cookies = [
            "fleetfn_console=x; Path=/2015-03-31",
            "FLEETFN_CONSOLE=x",
            " fleetfn_console =x",
            "__Host-fleetfn_console=x; Path=/",
            "__secure-Fleetfn_Console=x",
            "fleetfn_console",
            "keep=1; Path=/",
            "fleetfn_console_other=2",
        ];
        let doc = serde_json::json!({
            "statusCode": 200,
            "headers": {"Set-Cookie": "fleetfn_console=y; Path=/"},
            "cookies": cookies,
        })
        .to_string();
        let kept = |h: &HeaderMap| -> Vec<String> {
            h.get_all(header::SET_COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect()
        };
        let a = map(&doc);
        assert_eq!(
            kept(&a.head.headers),
            ["keep=1; Path=/", "fleetfn_console_other=2"]
        );
        let head = prelude(doc.as_bytes()).unwrap();
        assert_eq!(
            kept(&head.headers),
            ["keep=1; Path=/", "fleetfn_console_other=2"]
        );
        // A function's own cookie in its headers is kept.
        let a = map(r#"{"statusCode": 200, "headers": {"set-cookie": "mine=1"}}"#);
        assert_eq!(kept(&a.head.headers), ["mine=1"]);
    }

    #[test]
    fn anything_but_a_structured_response_is_a_200_json_body() {
        // As AWS answers a Python function returning each value (content, Content-Length).
        for (ret, body) in [
            (r#"{"hello":"world"}"#, r#"{"hello":"world"}"#),
            (r#"["hello",3,true]"#, r#"["hello",3,true]"#),
            (r#""hello""#, "hello"),
            ("3", "3"),
            ("3.1", "3.1"),
            ("true", "true"),
            ("null", "null"),
        ] {
            let a = map(ret);
            assert_eq!(a.head.status, StatusCode::OK, "{ret}");
            assert_eq!(ct(&a), "application/json");
            assert_eq!(a.body, body.as_bytes(), "{ret}");
        }
        // An object with a body but no statusCode is a JSON document like any other.
        let a = map(r#"{"body":"x"}"#);
        assert_eq!(a.body, &br#"{"body":"x"}"#[..]);
    }

    #[test]
    fn a_structured_response_sets_status_headers_cookies_and_body() {
        let a = map(
            r#"{"statusCode": 201, "headers": {"Content-Type": "text/html", "My-Custom-Header": "Custom Value", "X-N": 5, "Content-Length": "999"},
               "body": "<p>hi</p>", "cookies": ["Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT", "Cookie_2=Value2; Max-Age=78000"], "isBase64Encoded": false}"#,
        );
        assert_eq!(a.head.status, StatusCode::CREATED);
        assert_eq!(ct(&a), "text/html");
        assert_eq!(a.head.headers["my-custom-header"], "Custom Value");
        assert_eq!(a.head.headers["x-n"], "5");
        assert!(!a.head.headers.contains_key(header::CONTENT_LENGTH));
        let cookies: Vec<_> = a.head.headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(
            cookies,
            [
                "Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT",
                "Cookie_2=Value2; Max-Age=78000"
            ]
        );
        assert_eq!(a.body, &b"<p>hi</p>"[..]);
        // A string statusCode, no headers (JSON by default), no body.
        let a = map(r#"{"statusCode": "418"}"#);
        assert_eq!(a.head.status.as_u16(), 418);
        assert_eq!(ct(&a), "application/json");
        assert!(a.body.is_empty());
        // Base64 bodies are decoded; a JSON body is sent serialized.
        let a = map(r#"{"statusCode": 200, "body": "AJ+Slg==", "isBase64Encoded": true}"#);
        assert_eq!(a.body, &[0u8, 159, 146, 150][..]);
        let a = map(r#"{"statusCode": 200, "body": {"a": 1}}"#);
        assert_eq!(a.body, &br#"{"a":1}"#[..]);
    }

    #[test]
    fn what_does_not_hold_up_is_malformed() {
        let bad = |s: &str| buffered(&Bytes::from(s.to_string())).unwrap_err();
        assert_eq!(bad("not json"), Malformed::NotJson);
        assert!(matches!(bad(r#"{"statusCode": 99}"#), Malformed::Status(_)));
        assert!(matches!(
            bad(r#"{"statusCode": "abc"}"#),
            Malformed::Status(_)
        ));
        assert!(matches!(
            bad(r#"{"statusCode": 1000}"#),
            Malformed::Status(_)
        ));
        assert!(matches!(
            bad(r#"{"statusCode": true}"#),
            Malformed::Status(_)
        ));
        assert!(matches!(
            bad(r#"{"statusCode": 200, "headers": {"bad name": "x"}}"#),
            Malformed::Header(_)
        ));
        assert!(matches!(
            bad(r#"{"statusCode": 200, "headers": ["x"]}"#),
            Malformed::Shape(_)
        ));
        assert_eq!(
            bad(r#"{"statusCode": 200, "body": "%%%", "isBase64Encoded": true}"#),
            Malformed::Base64
        );
    }

    #[test]
    fn too_many_or_too_large_headers_are_malformed_not_a_panic() {
        let with = |n: usize, value: &str| {
            let headers: serde_json::Map<_, _> = (0..n)
                .map(|i| (format!("x-h{i}"), serde_json::Value::from(value)))
                .collect();
            serde_json::json!({"statusCode": 200, "headers": headers}).to_string()
        };
        // 30k distinct names used to panic in HeaderMap::insert.
        for (n, value) in [(30_000, "v"), (101, "v"), (50, &"v".repeat(300)[..])] {
            let e = buffered(&Bytes::from(with(n, value))).unwrap_err();
            assert!(matches!(e, Malformed::Header(_)), "{n}: {e:?}");
            let e = prelude(with(n, value).as_bytes()).unwrap_err();
            assert!(matches!(e, Malformed::Header(_)), "{n}: {e:?}");
        }
        let cookies: Vec<String> = (0..101).map(|i| format!("c{i}=1")).collect();
        let e = buffered(&Bytes::from(
            serde_json::json!({"statusCode": 200, "cookies": cookies}).to_string(),
        ))
        .unwrap_err();
        assert!(matches!(e, Malformed::Header(_)), "{e:?}");
        assert_eq!(
            buffered(&Bytes::from(with(100, "v")))
                .unwrap()
                .head
                .headers
                .len(),
            101
        );
    }

    #[test]
    fn a_prelude_gives_the_head_and_ends_at_eight_nuls() {
        let mut stream = br#"{"statusCode":202,"headers":{"content-type":"text/plain","x-a":"b"},"cookies":["c=1"]}"#.to_vec();
        let json_len = stream.len();
        stream.extend_from_slice(&PRELUDE_END);
        stream.extend_from_slice(b"body\0bytes");
        assert_eq!(find_prelude_end(&stream, 0), Some(json_len));
        // From an offset: a delimiter that starts before it is not seen, one at it is.
        assert_eq!(find_prelude_end(&stream, json_len), Some(json_len));
        assert_eq!(find_prelude_end(&stream, json_len + 1), None);
        assert_eq!(find_prelude_end(&stream, usize::MAX), None);
        let head = prelude(&stream[..json_len]).unwrap();
        assert_eq!(head.status, StatusCode::ACCEPTED);
        assert_eq!(head.headers[header::CONTENT_TYPE], "text/plain");
        assert_eq!(head.headers["x-a"], "b");
        assert_eq!(head.headers[header::SET_COOKIE], "c=1");
        assert_eq!(find_prelude_end(b"{}\0\0\0\0\0\0\0", 0), None);
        // Without a statusCode: 200; without a content type: JSON.
        let head = prelude(b"{}").unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(prelude(b"nope").unwrap_err(), Malformed::NotJson);
        assert_eq!(
            stream_head(None).headers[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert_eq!(
            stream_head(Some("text/csv")).headers[header::CONTENT_TYPE],
            "text/csv"
        );
    }
}
