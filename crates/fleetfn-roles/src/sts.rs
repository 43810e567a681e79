//! STS `AssumeRole` over the query protocol (form-encoded POST, SigV4 for service `sts`, an XML
//! answer), on hyper with rustls for `https://` endpoints.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::{AssumeError, BoxFuture, RoleAssumer, RoleCredentials, SourceChain};

pub(crate) type HttpClient = Client<fleetfn_proto::tls::HttpsConnector, Full<Bytes>>;

/// Largest STS answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// A client for `http://` only (the instance metadata service).
pub(crate) fn plain_client() -> HttpClient {
    client(None, true)
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
    let exchange = async {
        let resp = http
            .request(req)
            .await
            .map_err(|e| fleetfn_proto::tls::error_chain(&e))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
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

/// Where and how [`StsClient`] assumes roles.
#[derive(Debug, Clone)]
pub struct StsConfig {
    /// `https://sts.<region>.amazonaws.com`, or an override (`AWS_ENDPOINT_URL_STS`).
    pub endpoint: String,
    /// The signing region.
    pub region: String,
    /// `DurationSeconds` (STS accepts 900 s to the role's maximum, 1 h by default).
    pub duration: Duration,
}

impl StsConfig {
    /// The endpoint of `region`, or `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL` as the AWS SDKs
    /// read them.
    pub fn from_env(region: &str, duration: Duration) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = env("AWS_ENDPOINT_URL_STS")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
            duration,
        }
    }
}

/// Assumes roles with STS, signing with the server's own credentials.
#[derive(Debug, Clone)]
pub struct StsClient {
    cfg: StsConfig,
    source: Arc<SourceChain>,
    http: HttpClient,
}

/// Characters escaped in a form value (everything but unreserved characters).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResponse {
    assume_role_result: AssumeRoleResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResult {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

/// STS's error document: `<ErrorResponse><Error>…`; some STS-compatible servers (moto) wrap
/// it as `<ErrorResponse><Errors><Error>…`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponse {
    error: Option<StsError>,
    errors: Option<Errors>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Errors {
    error: StsError,
}

impl ErrorResponse {
    fn into_error(self) -> Option<StsError> {
        self.error.or(self.errors.map(|e| e.error))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsError {
    code: String,
    #[serde(default)]
    message: String,
}

impl StsClient {
    /// A client for `cfg`, signing with `source`. `https://` endpoints are verified against the
    /// host's roots.
    pub fn new(cfg: StsConfig, source: Arc<SourceChain>) -> Result<Self, AssumeError> {
        let tls = fleetfn_proto::tls::ClientTls::system_roots().ok();
        if tls.is_none() && cfg.endpoint.starts_with("https://") {
            return Err(AssumeError::Unavailable {
                endpoint: cfg.endpoint.clone(),
                detail: "the host has no CA certificates to verify it with".into(),
            });
        }
        Ok(Self {
            http: client(tls.as_ref(), true),
            cfg,
            source,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StsConfig {
        &self.cfg
    }

    async fn assume_role(
        &self,
        role_arn: &str,
        session_name: &str,
    ) -> Result<RoleCredentials, AssumeError> {
        let unavailable = |detail: String| AssumeError::Unavailable {
            endpoint: self.cfg.endpoint.clone(),
            detail,
        };
        let source = self.source.current().await?;
        let body = format!(
            "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName={}&DurationSeconds={}",
            utf8_percent_encode(role_arn, FORM),
            utf8_percent_encode(session_name, FORM),
            self.cfg.duration.as_secs()
        );
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/", self.cfg.endpoint))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(Bytes::from(body))
            .map_err(|e| unavailable(e.to_string()))?;
        fleetfn_sigv4::sign_http_request(
            &mut req,
            &fleetfn_sigv4::SigningParams {
                access_key_id: &source.access_key_id,
                secret_access_key: &source.secret_access_key,
                session_token: source.session_token.as_deref(),
                region: &self.cfg.region,
                service: "sts",
                time: jiff::Timestamp::now(),
            },
        )
        .map_err(|e| unavailable(format!("signing: {e}")))?;
        let req = req.map(Full::new);
        let (status, answer) = send(&self.http, req, Duration::from_secs(10))
            .await
            .map_err(unavailable)?;
        if !status.is_success() {
            let parsed = quick_xml::de::from_reader::<_, ErrorResponse>(answer.as_ref())
                .ok()
                .and_then(ErrorResponse::into_error);
            return match parsed {
                Some(e) => Err(AssumeError::Refused {
                    role_arn: role_arn.to_owned(),
                    status: status.as_u16(),
                    code: e.code,
                    message: e.message,
                }),
                None => Err(unavailable(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(300)])
                ))),
            };
        }
        let doc: AssumeRoleResponse = quick_xml::de::from_reader(answer.as_ref())
            .map_err(|e| unavailable(format!("reading the AssumeRole answer: {e}")))?;
        let c = doc.assume_role_result.credentials;
        // Normalized to RFC 3339 in UTC, which every SDK parses.
        let expiration = c
            .expiration
            .parse::<jiff::Timestamp>()
            .map_err(|e| unavailable(format!("bad Expiration {:?}: {e}", c.expiration)))?
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        Ok(RoleCredentials {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            token: c.session_token,
            expiration,
            role_arn: role_arn.to_owned(),
        })
    }
}

impl RoleAssumer for StsClient {
    fn assume<'a>(
        &'a self,
        role_arn: &'a str,
        session_name: &'a str,
    ) -> BoxFuture<'a, Result<RoleCredentials, AssumeError>> {
        Box::pin(self.assume_role(role_arn, session_name))
    }

    fn lifetime(&self) -> Duration {
        self.cfg.duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sts_documents() {
        let ok = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser><AssumedRoleId>AROA:s</AssumedRoleId><Arn>arn:aws:sts::1:assumed-role/r/s</Arn></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>secret</SecretAccessKey>
      <SessionToken>token</SessionToken>
      <Expiration>2026-12-03T22:00:00.123Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;
        let doc: AssumeRoleResponse = quick_xml::de::from_str(ok).unwrap();
        assert_eq!(
            doc.assume_role_result.credentials.access_key_id,
            "ASIAEXAMPLE"
        );
        assert_eq!(doc.assume_role_result.credentials.session_token, "token");
        let err = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not allowed</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
        let e = quick_xml::de::from_str::<ErrorResponse>(err)
            .unwrap()
            .into_error()
            .unwrap();
        assert_eq!(e.code, "AccessDenied");
        assert_eq!(e.message, "not allowed");
        let moto = r#"<?xml version="1.0" encoding="utf-8"?>
<ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message><Type>Sender</Type></Error></Errors></ErrorResponse>"#;
        let e = quick_xml::de::from_str::<ErrorResponse>(moto)
            .unwrap()
            .into_error()
            .unwrap();
        assert_eq!(e.code, "InvalidClientTokenId");
        assert_eq!(
            utf8_percent_encode("arn:aws:iam::1:role/a b", FORM).to_string(),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b"
        );
    }
}
