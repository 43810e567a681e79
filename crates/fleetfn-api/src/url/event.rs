//! The event a function URL hands its function: API Gateway's payload format 2.0 as Lambda
//! fills it for URLs (`routeKey` and `stage` `$default`, `apiId` and `domainPrefix` the URL id,
//! headers lower-cased with repeated values joined by `,`, the `Cookie` header moved to
//! `cookies`, repeated query parameters joined by `,`, a text body as it is and any other one
//! in base64, `authorizer.iam` for `AWS_IAM` URLs).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use http::HeaderMap;
use serde::Serialize;

use crate::handlers::Query;

/// The request as the URL endpoint received it, its path without the `/_fleetfn/url/<id>`
/// prefix.
#[derive(Debug)]
pub(crate) struct UrlRequest<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub protocol: &'static str,
    pub headers: &'a HeaderMap,
    /// Headers the endpoint adds: `x-forwarded-for` is appended to what the client sent (as
    /// AWS does, so only its last entry, the peer the endpoint saw, is to be trusted); any
    /// other (`x-forwarded-proto`) replaces what the client sent.
    pub extra_headers: &'a [(&'static str, String)],
    pub body: &'a [u8],
    pub source_ip: String,
}

/// Who and where: the values of `requestContext` that do not come from the request.
#[derive(Debug)]
pub(crate) struct UrlContext<'a> {
    pub account_id: &'a str,
    pub url_id: &'a str,
    pub domain_name: &'a str,
    pub request_id: &'a str,
    pub now: jiff::Timestamp,
    /// The SigV4 caller of an `AWS_IAM` URL.
    pub iam: Option<IamCaller>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UrlEvent<'a> {
    pub version: &'static str,
    pub route_key: &'static str,
    pub raw_path: &'a str,
    pub raw_query_string: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub query_string_parameters: BTreeMap<String, String>,
    pub request_context: RequestContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// A text body is borrowed from the request, not copied.
    pub body: Option<Cow<'a, str>>,
    pub is_base64_encoded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestContext<'a> {
    pub account_id: &'a str,
    pub api_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorizer: Option<Authorizer>,
    pub domain_name: &'a str,
    pub domain_prefix: &'a str,
    pub http: Http<'a>,
    pub request_id: &'a str,
    pub route_key: &'static str,
    pub stage: &'static str,
    pub time: String,
    pub time_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Http<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub protocol: &'static str,
    pub source_ip: String,
    pub user_agent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Authorizer {
    pub iam: IamCaller,
}

/// `requestContext.authorizer.iam`: the caller of an `AWS_IAM` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IamCaller {
    pub access_key: String,
    pub account_id: String,
    pub caller_id: String,
    pub cognito_identity: Option<()>,
    pub principal_org_id: Option<String>,
    pub user_arn: String,
    pub user_id: String,
}

/// The one endpoint header that accumulates: the client's list, then the peer.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Everything an event is made of, owned, so a large one can be built on a blocking thread.
#[derive(Debug)]
pub(crate) struct EventInput {
    pub method: http::Method,
    pub raw_path: String,
    pub raw_query: String,
    pub protocol: &'static str,
    pub headers: HeaderMap,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: bytes::Bytes,
    pub source_ip: String,
    pub account_id: String,
    pub url_id: String,
    pub domain_name: String,
    pub request_id: String,
    pub now: jiff::Timestamp,
    pub iam: Option<IamCaller>,
}

impl EventInput {
    /// The event as the JSON payload of the invoke.
    pub(crate) fn encode(&self) -> serde_json::Result<Vec<u8>> {
        let req = UrlRequest {
            method: self.method.as_str(),
            raw_path: &self.raw_path,
            raw_query: &self.raw_query,
            protocol: self.protocol,
            headers: &self.headers,
            extra_headers: &self.extra_headers,
            body: &self.body,
            source_ip: self.source_ip.clone(),
        };
        let ctx = UrlContext {
            account_id: &self.account_id,
            url_id: &self.url_id,
            domain_name: &self.domain_name,
            request_id: &self.request_id,
            now: self.now,
            iam: self.iam.clone(),
        };
        serde_json::to_vec(&build(&req, &ctx))
    }

    /// How many bytes the body takes in the encoded event (its JSON string, without the
    /// quotes): a bound the whole payload exceeds, known without building it. Linear and
    /// allocation-free, so a body whose event must be too large is refused before its event
    /// is built (6 MB of control characters as text would be ~36 MB of JSON escapes).
    pub(crate) fn encoded_body_len(&self) -> usize {
        let content_type = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let n = self.body.len();
        if is_text(content_type) && std::str::from_utf8(&self.body).is_ok() {
            json_escaped_len(&self.body)
        } else {
            n.div_ceil(3) * 4
        }
    }
}

/// The length of `text` as serde_json writes it inside a JSON string: `"`, `\` and the
/// short escapes take 2 bytes, other control characters 6 (`\u00XX`), everything else 1.
fn json_escaped_len(text: &[u8]) -> usize {
    text.iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// Whether a body of this `Content-Type` reaches the function as text: `text/*` and the JSON,
/// XML and JavaScript types; anything else (forms, multipart, images, no type) is base64.
pub(crate) fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || mime.contains("json")
        || mime.contains("xml")
        || mime.contains("javascript")
}

/// `requestContext.time`: `dd/MMM/yyyy:HH:mm:ss +0000`.
pub(crate) fn clf_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%d/%b/%Y:%H:%M:%S +0000").to_string()
}

/// The web console's session cookie: browsers send it to every port of the API's host, this
/// listener's included, and it must never reach a function.
fn is_console_cookie(c: &str) -> bool {
    c.split_once('=')
        .is_some_and(|(name, _)| name.trim() == crate::console::COOKIE_NAME)
}

/// The event of `req` to the URL described by `ctx`.
pub(crate) fn build<'a>(req: &'a UrlRequest<'a>, ctx: &'a UrlContext<'a>) -> UrlEvent<'a> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for name in req.headers.keys() {
        let values = req
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        if name == http::header::COOKIE {
            for v in values {
                cookies.extend(
                    v.split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty() && !is_console_cookie(c))
                        .map(str::to_string),
                );
            }
            continue;
        }
        // `HeaderMap` names are lower case already.
        headers.insert(
            name.as_str().to_string(),
            values.collect::<Vec<_>>().join(","),
        );
    }
    for (name, value) in req.extra_headers {
        if *name == X_FORWARDED_FOR {
            headers
                .entry((*name).to_string())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(value);
                })
                .or_insert_with(|| value.clone());
        } else {
            // The endpoint's own scheme and port: a client's `https` must not stay in front.
            headers.insert((*name).to_string(), value.clone());
        }
    }
    let mut query_string_parameters: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in Query::parse(Some(req.raw_query)).pairs() {
        query_string_parameters
            .entry(k.clone())
            .and_modify(|all| {
                all.push(',');
                all.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (body, is_base64_encoded) = if req.body.is_empty() {
        (None, false)
    } else {
        match std::str::from_utf8(req.body) {
            Ok(text) if is_text(content_type) => (Some(Cow::Borrowed(text)), false),
            _ => (
                Some(Cow::Owned(
                    base64::engine::general_purpose::STANDARD.encode(req.body),
                )),
                true,
            ),
        }
    };
    let user_agent = req
        .headers
        .get(http::header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    UrlEvent {
        version: "2.0",
        route_key: "$default",
        raw_path: req.raw_path,
        raw_query_string: req.raw_query,
        cookies,
        headers,
        query_string_parameters,
        request_context: RequestContext {
            account_id: ctx.account_id,
            api_id: ctx.url_id,
            authorizer: ctx.iam.clone().map(|iam| Authorizer { iam }),
            domain_name: ctx.domain_name,
            domain_prefix: ctx.url_id,
            http: Http {
                method: req.method,
                path: req.raw_path,
                protocol: req.protocol,
                source_ip: req.source_ip.clone(),
                user_agent,
            },
            request_id: ctx.request_id,
            route_key: "$default",
            stage: "$default",
            time: clf_time(ctx.now),
            time_epoch: ctx.now.as_millisecond(),
        },
        body,
        is_base64_encoded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The request payload example of the Lambda developer guide ("Invoking Lambda function
    /// URLs", request payload format), with the fields Lambda leaves out (`authentication`,
    /// `pathParameters`, `stageVariables`, `cognitoIdentity` and `principalOrgId` as null).
    const AWS_EXAMPLE: &str = r#"{
      "version": "2.0",
      "routeKey": "$default",
      "rawPath": "/my/path",
      "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
      "cookies": ["cookie1", "cookie2"],
      "headers": {"header1": "value1", "header2": "value1,value2"},
      "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
      "requestContext": {
        "accountId": "123456789012",
        "apiId": "<urlid>",
        "authorizer": {
          "iam": {
            "accessKey": "AKIA...",
            "accountId": "111122223333",
            "callerId": "AIDA...",
            "cognitoIdentity": null,
            "principalOrgId": null,
            "userArn": "arn:aws:iam::111122223333:user/example-user",
            "userId": "AIDA..."
          }
        },
        "domainName": "<url-id>.lambda-url.us-west-2.on.aws",
        "domainPrefix": "<urlid>",
        "http": {
          "method": "POST",
          "path": "/my/path",
          "protocol": "HTTP/1.1",
          "sourceIp": "123.123.123.123",
          "userAgent": "agent"
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390
      },
      "body": "Hello from client!",
      "isBase64Encoded": false
    }"#;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_console_session_cookie_never_reaches_a_function() {
        let h = headers(&[
            ("cookie", "a=1; fleetfn_console=secret-session"),
            ("cookie", "fleetfn_console =x;b=2"),
        ]);
        let req = UrlRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            protocol: "HTTP/1.1",
            headers: &h,
            extra_headers: &[],
            body: b"",
            source_ip: "127.0.0.1".into(),
        };
        let ctx = UrlContext {
            account_id: "123456789012",
            url_id: "u",
            domain_name: "u.lambda-url.us-east-1.localhost",
            request_id: "id",
            now: jiff::Timestamp::UNIX_EPOCH,
            iam: None,
        };
        let event = serde_json::to_string(&build(&req, &ctx)).unwrap();
        let got: serde_json::Value = serde_json::from_str(&event).unwrap();
        assert_eq!(got["cookies"], serde_json::json!(["a=1", "b=2"]));
        assert!(!event.contains("fleetfn_console"), "{event}");
    }

    #[test]
    fn the_event_matches_the_aws_documented_example() {
        let h = headers(&[
            ("Header1", "value1"),
            ("header2", "value1"),
            ("Header2", "value2"),
            ("cookie", "cookie1; cookie2"),
            ("user-agent", "agent"),
            ("content-type", "text/plain"),
        ]);
        let req = UrlRequest {
            method: "POST",
            raw_path: "/my/path",
            raw_query: "parameter1=value1&parameter1=value2&parameter2=value",
            protocol: "HTTP/1.1",
            headers: &h,
            extra_headers: &[],
            body: b"Hello from client!",
            source_ip: "123.123.123.123".into(),
        };
        let ctx = UrlContext {
            account_id: "123456789012",
            url_id: "<urlid>",
            domain_name: "<url-id>.lambda-url.us-west-2.on.aws",
            request_id: "id",
            // 12/Mar/2020:19:03:58 +0000 (the example's timeEpoch is of another day).
            now: jiff::Timestamp::from_millisecond(1_584_039_838_390).unwrap(),
            iam: Some(IamCaller {
                access_key: "AKIA...".into(),
                account_id: "111122223333".into(),
                caller_id: "AIDA...".into(),
                cognito_identity: None,
                principal_org_id: None,
                user_arn: "arn:aws:iam::111122223333:user/example-user".into(),
                user_id: "AIDA...".into(),
            }),
        };
        let mut got = serde_json::to_value(build(&req, &ctx)).unwrap();
        let mut want: serde_json::Value = serde_json::from_str(AWS_EXAMPLE).unwrap();
        // The example's two headers, plus the two the request needed to carry its values.
        assert_eq!(got["headers"]["user-agent"], "agent");
        assert_eq!(got["headers"]["content-type"], "text/plain");
        for h in ["user-agent", "content-type"] {
            got["headers"].as_object_mut().unwrap().remove(h);
        }
        // The documented example's timeEpoch (5 Mar) disagrees with its time (12 Mar).
        want["requestContext"]["timeEpoch"] = 1_584_039_838_390i64.into();
        // It also writes the id as `<urlid>` and `<url-id>`; both are the URL id.
        want["requestContext"]["domainPrefix"] = "<urlid>".into();
        assert_eq!(got, want);
    }

    #[test]
    fn bodies_query_strings_and_absent_fields() {
        let h = headers(&[("content-type", "application/octet-stream")]);
        let req = UrlRequest {
            method: "PUT",
            raw_path: "/",
            raw_query: "a=1&b=x%20y&a=2&flag&c=%2Fd+e",
            protocol: "HTTP/1.1",
            headers: &h,
            extra_headers: &[("x-forwarded-for", "127.0.0.1".into())],
            body: &[0, 159, 146, 150],
            source_ip: "127.0.0.1".into(),
        };
        let ctx = UrlContext {
            account_id: "000000000000",
            url_id: "abc",
            domain_name: "abc.lambda-url.us-east-1.localhost",
            request_id: "r",
            now: jiff::Timestamp::from_second(0).unwrap(),
            iam: None,
        };
        let ev = serde_json::to_value(build(&req, &ctx)).unwrap();
        assert_eq!(ev["isBase64Encoded"], true);
        assert_eq!(ev["body"], "AJ+Slg==");
        assert_eq!(
            ev["queryStringParameters"],
            serde_json::json!({"a": "1,2", "b": "x y", "flag": "", "c": "/d e"})
        );
        assert_eq!(ev["headers"]["x-forwarded-for"], "127.0.0.1");
        assert_eq!(ev["requestContext"]["time"], "01/Jan/1970:00:00:00 +0000");
        assert_eq!(ev["requestContext"]["timeEpoch"], 0);
        assert_eq!(ev["requestContext"]["http"]["userAgent"], "");
        let obj = ev.as_object().unwrap();
        assert!(!obj.contains_key("cookies"));
        assert!(
            !ev["requestContext"]
                .as_object()
                .unwrap()
                .contains_key("authorizer")
        );
        // A client's forwarding headers: its x-forwarded-for is kept with the peer last (the
        // only trusted entry), its x-forwarded-proto is replaced by the endpoint's.
        let h = headers(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let forwarded = UrlRequest {
            headers: &h,
            extra_headers: &[
                ("x-forwarded-for", "127.0.0.1".into()),
                ("x-forwarded-proto", "http".into()),
            ],
            source_ip: req.source_ip.clone(),
            ..req
        };
        let ev = serde_json::to_value(build(&forwarded, &ctx)).unwrap();
        assert_eq!(ev["headers"]["x-forwarded-for"], "10.0.0.1,127.0.0.1");
        assert_eq!(ev["headers"]["x-forwarded-proto"], "http");
        // No body: neither `body` nor base64.
        let empty = UrlRequest {
            raw_query: "",
            body: b"",
            ..req
        };
        let ev = serde_json::to_value(build(&empty, &ctx)).unwrap();
        assert!(!ev.as_object().unwrap().contains_key("body"));
        assert!(
            !ev.as_object()
                .unwrap()
                .contains_key("queryStringParameters")
        );
        assert_eq!(ev["isBase64Encoded"], false);
        assert_eq!(ev["rawQueryString"], "");
    }

    #[test]
    fn text_types_reach_the_function_as_text_others_in_base64() {
        for t in [
            "text/plain",
            "text/html; charset=utf-8",
            "application/json",
            "application/vnd.api+json",
            "application/xml",
            "image/svg+xml",
            "application/javascript",
            "TEXT/CSV",
        ] {
            assert!(is_text(Some(t)), "{t}");
        }
        for t in [
            "application/octet-stream",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "image/png",
        ] {
            assert!(!is_text(Some(t)), "{t}");
        }
        assert!(!is_text(None));
        // Text that is not UTF-8 is base64 all the same.
        let h = headers(&[("content-type", "text/plain")]);
        let req = UrlRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            protocol: "HTTP/1.1",
            headers: &h,
            extra_headers: &[],
            body: &[0xff, 0xfe],
            source_ip: String::new(),
        };
        let ctx = UrlContext {
            account_id: "0",
            url_id: "u",
            domain_name: "d",
            request_id: "r",
            now: jiff::Timestamp::UNIX_EPOCH,
            iam: None,
        };
        assert!(build(&req, &ctx).is_base64_encoded);
    }

    #[test]
    fn the_encoded_body_length_is_known_before_the_event_is_built() {
        let input = |ct: &'static str, body: &[u8]| EventInput {
            method: http::Method::POST,
            raw_path: "/".into(),
            raw_query: String::new(),
            protocol: "HTTP/1.1",
            headers: headers(&[("content-type", ct)]),
            extra_headers: vec![],
            body: bytes::Bytes::copy_from_slice(body),
            source_ip: String::new(),
            account_id: "0".into(),
            url_id: "u".into(),
            domain_name: "d".into(),
            request_id: "r".into(),
            now: jiff::Timestamp::UNIX_EPOCH,
            iam: None,
        };
        let all_ascii: Vec<u8> = (0u8..0x80).chain("é\"\\".bytes()).collect();
        for (ct, body) in [
            ("text/plain", &all_ascii[..]),
            ("application/json", b"{\"a\": \"\\u0001\"}\n"),
            ("text/plain", &[0xff, 0xfe, 0x01][..]),
            ("application/octet-stream", &[0u8; 7][..]),
            ("application/octet-stream", &[1u8; 9][..]),
        ] {
            let i = input(ct, body);
            let ev: serde_json::Value = serde_json::from_slice(&i.encode().unwrap()).unwrap();
            let encoded = serde_json::to_string(&ev["body"]).unwrap().len() - 2;
            assert_eq!(i.encoded_body_len(), encoded, "{ct} {body:?}");
        }
        // 1 MB of control characters as text: 6 MB of escapes.
        assert_eq!(
            input("text/plain", &[1u8; 1 << 20]).encoded_body_len(),
            6 << 20
        );
    }
}
