//! What the crate's AWS clients share: an HTTP client on hyper (rustls for `https://`), signed
//! POSTs whose answers are read up to 64 KiB (more when a call says so), and the error documents of the query (XML) and
//! JSON protocols.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::SourceCredentials;

pub(crate) type HttpClient = Client<fleetfn_proto::tls::HttpsConnector, Full<Bytes>>;

/// Largest answer read, unless a call says otherwise.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;

/// Characters escaped in a form value (everything but unreserved characters).
pub(crate) const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A client for `http://` only (the instance metadata service).
pub(crate) fn plain_client() -> HttpClient {
    client(None, true)
}

/// A client for `http://` and for `https://` verified against the host's roots; an error when
/// `https` is needed and the host has no CA certificates.
pub(crate) fn verified_client(https: bool) -> Result<HttpClient, String> {
    let tls = fleetfn_proto::tls::ClientTls::system_roots().ok();
    if tls.is_none() && https {
        return Err("the host has no CA certificates to verify it with".into());
    }
    Ok(client(tls.as_ref(), true))
}

fn client(tls: Option<&fleetfn_proto::tls::ClientTls>, allow_http: bool) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(2)));
    let connector = fleetfn_proto::tls::https_connector(tls, http, allow_http);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends `req` and reads the answer (at most 64 KiB) within `timeout`.
pub(crate) async fn send(
    http: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    send_limited(http, req, timeout, MAX_ANSWER).await
}

/// Sends `req` and reads the answer (at most `max_answer` bytes) within `timeout`.
pub(crate) async fn send_limited(
    http: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    max_answer: usize,
) -> Result<(StatusCode, Bytes), String> {
    let exchange = async {
        let resp = http
            .request(req)
            .await
            .map_err(|e| fleetfn_proto::tls::error_chain(&e))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), max_answer)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// A POST to an AWS service.
pub(crate) struct SignedPost<'a> {
    /// The URL posted to.
    pub url: &'a str,
    /// The signing region.
    pub region: &'a str,
    /// The signing service (`sts`, `sqs`...).
    pub service: &'a str,
    /// `Content-Type`.
    pub content_type: &'a str,
    /// `X-Amz-Target` of the JSON protocols.
    pub target: Option<&'a str>,
    /// The body.
    pub body: String,
}

impl SignedPost<'_> {
    /// Signs the request with `creds` (SigV4) and sends it (see [`send`]).
    pub(crate) async fn send(
        self,
        http: &HttpClient,
        creds: &SourceCredentials,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        self.send_limited(http, creds, timeout, MAX_ANSWER).await
    }

    /// Signs the request with `creds` (SigV4) and sends it, reading at most `max_answer`
    /// bytes of the answer (see [`send_limited`]).
    pub(crate) async fn send_limited(
        self,
        http: &HttpClient,
        creds: &SourceCredentials,
        timeout: Duration,
        max_answer: usize,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(self.url)
            .header(http::header::CONTENT_TYPE, self.content_type);
        if let Some(target) = self.target {
            b = b.header("x-amz-target", target);
        }
        let mut req = b.body(Bytes::from(self.body)).map_err(|e| e.to_string())?;
        fleetfn_sigv4::sign_http_request(
            &mut req,
            &fleetfn_sigv4::SigningParams {
                access_key_id: &creds.access_key_id,
                secret_access_key: &creds.secret_access_key,
                session_token: creds.session_token.as_deref(),
                region: self.region,
                service: self.service,
                time: jiff::Timestamp::now(),
            },
        )
        .map_err(|e| format!("signing: {e}"))?;
        send_limited(http, req.map(Full::new), timeout, max_answer).await
    }
}

/// A service's error: its code and message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AwsError {
    pub code: String,
    pub message: String,
}

/// The query protocol's error document: `<ErrorResponse><Error>…`; some AWS-compatible servers
/// (moto) wrap it as `<ErrorResponse><Errors><Error>…`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponse {
    error: Option<QueryError>,
    errors: Option<Errors>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Errors {
    error: QueryError,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueryError {
    code: String,
    #[serde(default)]
    message: String,
}

/// The error of a query-protocol answer (STS, SNS), if it is one.
pub(crate) fn query_error(answer: &[u8]) -> Option<AwsError> {
    let doc = quick_xml::de::from_reader::<_, ErrorResponse>(answer).ok()?;
    let e = doc.error.or(doc.errors.map(|e| e.error))?;
    (!e.code.is_empty()).then_some(AwsError {
        code: e.code,
        message: e.message,
    })
}

/// The JSON protocols' error document: `{"__type":"com.amazonaws.sqs#QueueDoesNotExist",
/// "message":"…"}` (`Message` for some services, both for moto).
#[derive(Deserialize)]
struct JsonError {
    #[serde(rename = "__type")]
    kind: String,
    message: Option<String>,
    #[serde(rename = "Message")]
    message_upper: Option<String>,
}

/// The error of a JSON-protocol answer (SQS, EventBridge), if it is one: the code is what
/// `__type` says after any `namespace#` and before any `:`, as the AWS SDKs read it.
pub(crate) fn json_error(answer: &[u8]) -> Option<AwsError> {
    let doc = serde_json::from_slice::<JsonError>(answer).ok()?;
    let code = doc.kind.rsplit('#').next().unwrap_or_default();
    let code = code.split(':').next().unwrap_or_default().trim();
    (!code.is_empty()).then(|| AwsError {
        code: code.to_owned(),
        message: doc.message.or(doc.message_upper).unwrap_or_default(),
    })
}

/// The start of an answer that is no document, for a log line.
pub(crate) fn excerpt(status: StatusCode, answer: &[u8]) -> String {
    format!(
        "{status}: {}",
        String::from_utf8_lossy(&answer[..answer.len().min(300)])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str, message: &str) -> Option<AwsError> {
        Some(AwsError {
            code: code.into(),
            message: message.into(),
        })
    }

    #[test]
    fn reads_query_errors() {
        let aws = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not allowed</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
        assert_eq!(
            query_error(aws.as_bytes()),
            err("AccessDenied", "not allowed")
        );
        let moto = r#"<?xml version="1.0" encoding="utf-8"?>
<ErrorResponse><Errors><Error><Code>NotFound</Code><Message>Topic does not exist</Message><Type>Sender</Type></Error></Errors></ErrorResponse>"#;
        assert_eq!(
            query_error(moto.as_bytes()),
            err("NotFound", "Topic does not exist")
        );
        let no_message = "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>";
        assert_eq!(query_error(no_message.as_bytes()), err("Throttling", ""));
        for other in [
            "",
            "<html><body>Bad Gateway</body></html>",
            "<ErrorResponse></ErrorResponse>",
            "<ErrorResponse><Error><Code></Code></Error></ErrorResponse>",
            r#"{"__type":"X"}"#,
        ] {
            assert_eq!(query_error(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn reads_json_errors() {
        assert_eq!(
            json_error(br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}"#),
            err("QueueDoesNotExist", "gone")
        );
        assert_eq!(
            json_error(br#"{"__type":"ResourceNotFoundException","Message":"no bus"}"#),
            err("ResourceNotFoundException", "no bus")
        );
        assert_eq!(
            json_error(br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist", "message":"gone", "Message":"gone"}"#),
            err("QueueDoesNotExist", "gone")
        );
        assert_eq!(
            json_error(br#"{"__type":"aws#Throttling:http://internal.amazon.com/"}"#),
            err("Throttling", "")
        );
        for other in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"__type":""}"#,
            br#"{"__type":"ns#"}"#,
            br#"{"__type":7}"#,
            b"<ErrorResponse/>",
        ] {
            assert_eq!(
                json_error(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
