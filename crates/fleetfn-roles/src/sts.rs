//! STS `AssumeRole` over the query protocol (form-encoded POST, SigV4 for service `sts`, an XML
//! answer), on hyper with rustls for `https://` endpoints.

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use crate::transport::{FORM, HttpClient, SignedPost, excerpt, query_error, verified_client};
use crate::{AssumeError, BoxFuture, RoleAssumer, RoleCredentials, SourceChain};

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

impl StsClient {
    /// A client for `cfg`, signing with `source`. `https://` endpoints are verified against the
    /// host's roots.
    pub fn new(cfg: StsConfig, source: Arc<SourceChain>) -> Result<Self, AssumeError> {
        let http = verified_client(cfg.endpoint.starts_with("https://")).map_err(|detail| {
            AssumeError::Unavailable {
                endpoint: cfg.endpoint.clone(),
                detail,
            }
        })?;
        Ok(Self { cfg, source, http })
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
        let url = format!("{}/", self.cfg.endpoint);
        let post = SignedPost {
            url: &url,
            region: &self.cfg.region,
            service: "sts",
            content_type: "application/x-www-form-urlencoded; charset=utf-8",
            target: None,
            body,
        };
        let (status, answer) = post
            .send(&self.http, &source, Duration::from_secs(10))
            .await
            .map_err(unavailable)?;
        if !status.is_success() {
            return Err(match query_error(&answer) {
                Some(e) => AssumeError::Refused {
                    role_arn: role_arn.to_owned(),
                    status: status.as_u16(),
                    code: e.code,
                    message: e.message,
                },
                None => unavailable(excerpt(status, &answer)),
            });
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
        assert_eq!(
            utf8_percent_encode("arn:aws:iam::1:role/a b", FORM).to_string(),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b"
        );
    }
}
