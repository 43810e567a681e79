//! The server's own AWS credentials, found in the order the AWS SDKs use: `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`), then the profile `AWS_PROFILE` (or
//! `default`) of the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, `~/.aws/credentials`)
//! and config file (`AWS_CONFIG_FILE`, `~/.aws/config`), then the EC2 instance role (IMDSv2 at
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` or `http://169.254.169.254`, unless
//! `AWS_EC2_METADATA_DISABLED=true`), renewed five minutes before it expires.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde::Deserialize;

use crate::transport::{HttpClient, plain_client, send};

/// Credentials to sign STS requests with.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// When temporary credentials expire.
    pub expires: Option<jiff::Timestamp>,
}

impl std::fmt::Debug for SourceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why the server's credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A profile names a key id without a secret, or the other way round.
    #[error("{origin}: aws_access_key_id and aws_secret_access_key must both be set")]
    Incomplete {
        /// Where (`AWS_ACCESS_KEY_ID`, `profile default in ~/.aws/credentials`).
        origin: String,
    },
    /// The instance metadata service failed.
    #[error("the EC2 instance role could not be read from {endpoint}: {detail}")]
    InstanceRole {
        /// The metadata endpoint.
        endpoint: String,
        /// What went wrong.
        detail: String,
    },
}

/// Where the server's credentials come from.
#[derive(Debug)]
pub enum SourceChain {
    /// Fixed keys (environment or profile).
    Static {
        /// The keys.
        credentials: SourceCredentials,
        /// Where they were found, for the start-up line.
        origin: String,
    },
    /// The EC2 instance role, read from IMDSv2 and renewed.
    InstanceRole(Imds),
}

impl SourceChain {
    /// Looks for credentials in the order of the chain; `None` when there are none.
    pub async fn detect() -> Result<Option<Self>, SourceError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(found) = Self::from_env_and_files(&env)? {
            return Ok(Some(found));
        }
        if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|| "http://169.254.169.254".to_owned());
        let imds = Imds::new(endpoint);
        match imds.fetch().await {
            Ok(_) => Ok(Some(Self::InstanceRole(imds))),
            Err(e) => {
                tracing::debug!(error = %e, "no EC2 instance role");
                Ok(None)
            }
        }
    }

    /// The environment variables, then the profile files, read through `env`.
    pub fn from_env_and_files(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SourceError> {
        match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => {
                return Ok(Some(Self::Static {
                    credentials: SourceCredentials {
                        access_key_id: id,
                        secret_access_key: secret,
                        session_token: env("AWS_SESSION_TOKEN"),
                        expires: None,
                    },
                    origin: "the environment (AWS_ACCESS_KEY_ID)".to_owned(),
                }));
            }
            (None, None) => {}
            _ => {
                return Err(SourceError::Incomplete {
                    origin: "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)".into(),
                });
            }
        }
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
        let home = env("HOME").map(PathBuf::from);
        let file = |var: &str, name: &str| {
            env(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        let candidates = [
            (file("AWS_SHARED_CREDENTIALS_FILE", "credentials"), false),
            (file("AWS_CONFIG_FILE", "config"), true),
        ];
        for (path, is_config) in candidates {
            let Some(path) = path else { continue };
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let section = if is_config && profile != "default" {
                format!("profile {profile}")
            } else {
                profile.clone()
            };
            if let Some(found) = profile_keys(&text, &section, &path)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// One line for the server's start-up log: where the credentials come from.
    pub fn describe(&self) -> String {
        match self {
            Self::Static {
                credentials,
                origin,
            } => format!("access key {} from {origin}", credentials.access_key_id),
            Self::InstanceRole(imds) => format!("the EC2 instance role at {}", imds.endpoint),
        }
    }

    /// The credentials to sign with now.
    pub async fn current(&self) -> Result<SourceCredentials, SourceError> {
        match self {
            Self::Static { credentials, .. } => Ok(credentials.clone()),
            Self::InstanceRole(imds) => imds.current().await,
        }
    }
}

/// The keys of `[section]` in an INI-style AWS file.
fn profile_keys(
    text: &str,
    section: &str,
    path: &Path,
) -> Result<Option<SourceChain>, SourceError> {
    let mut inside = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    let origin = format!("profile {section:?} in {}", path.display());
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(SourceChain::Static {
            credentials: SourceCredentials {
                access_key_id,
                secret_access_key,
                session_token: token,
                expires: None,
            },
            origin,
        })),
        (None, None) => Ok(None),
        _ => Err(SourceError::Incomplete { origin }),
    }
}

/// The EC2 instance metadata service (IMDSv2), with the last credentials it gave.
#[derive(Debug)]
pub struct Imds {
    endpoint: String,
    http: HttpClient,
    cache: tokio::sync::Mutex<Option<SourceCredentials>>,
}

/// What IMDS answers for a role.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImdsCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
}

impl Imds {
    /// Reads from `endpoint` (`http://169.254.169.254`).
    pub fn new(endpoint: String) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            http: plain_client(),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    async fn current(&self) -> Result<SourceCredentials, SourceError> {
        let mut cache = self.cache.lock().await;
        let fresh_until = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(5);
        if let Some(c) = &*cache
            && c.expires.is_some_and(|e| e > fresh_until)
        {
            return Ok(c.clone());
        }
        let c = self.fetch().await?;
        *cache = Some(c.clone());
        Ok(c)
    }

    async fn fetch(&self) -> Result<SourceCredentials, SourceError> {
        let err = |detail: String| SourceError::InstanceRole {
            endpoint: self.endpoint.clone(),
            detail,
        };
        let get = |method: Method, path: &str, token: Option<&str>| {
            let mut b = Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.endpoint));
            b = match token {
                Some(t) => b.header("x-aws-ec2-metadata-token", t),
                None => b.header("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
            };
            b.body(Full::new(Bytes::new()))
                .map_err(|e| err(e.to_string()))
        };
        let timeout = Duration::from_secs(2);
        let token = send(
            &self.http,
            get(Method::PUT, "/latest/api/token", None)?,
            timeout,
        )
        .await
        .map_err(&err)?;
        let token = String::from_utf8_lossy(&token.1).trim().to_owned();
        let base = "/latest/meta-data/iam/security-credentials/";
        let (status, roles) = send(&self.http, get(Method::GET, base, Some(&token))?, timeout)
            .await
            .map_err(&err)?;
        let role = String::from_utf8_lossy(&roles)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if !status.is_success() || role.is_empty() {
            return Err(err(format!("no instance role ({status})")));
        }
        let (status, body) = send(
            &self.http,
            get(Method::GET, &format!("{base}{role}"), Some(&token))?,
            timeout,
        )
        .await
        .map_err(&err)?;
        if !status.is_success() {
            return Err(err(format!("reading role {role}: {status}")));
        }
        let c: ImdsCredentials =
            serde_json::from_slice(&body).map_err(|e| err(format!("reading role {role}: {e}")))?;
        let expires = c
            .expiration
            .parse::<jiff::Timestamp>()
            .map_err(|e| err(format!("bad Expiration {:?}: {e}", c.expiration)))?;
        Ok(SourceCredentials {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: Some(c.token),
            expires: Some(expires),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn environment_first_then_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n[ops]\naws_access_key_id=AKOPS\naws_secret_access_key=s2\naws_session_token=t2\n",
        )
        .unwrap();
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "[profile cfg]\naws_access_key_id = AKCFG\naws_secret_access_key = s3\n[profile half]\naws_access_key_id = AKHALF\n",
        )
        .unwrap();
        let c = creds.to_str().unwrap();
        let f = config.to_str().unwrap();
        let id = |vars: &[(&str, &str)]| match SourceChain::from_env_and_files(&lookup(vars)) {
            Ok(Some(SourceChain::Static { credentials, .. })) => {
                Ok(Some((credentials.access_key_id, credentials.session_token)))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(
            id(&[
                ("AWS_ACCESS_KEY_ID", "AKENV"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
                ("AWS_SHARED_CREDENTIALS_FILE", c)
            ]),
            Ok(Some(("AKENV".into(), None)))
        );
        assert_eq!(
            id(&[("AWS_SHARED_CREDENTIALS_FILE", c), ("AWS_CONFIG_FILE", f)]),
            Ok(Some(("AKDEFAULT".into(), None)))
        );
        assert_eq!(
            id(&[("AWS_PROFILE", "ops"), ("AWS_SHARED_CREDENTIALS_FILE", c)]),
            Ok(Some(("AKOPS".into(), Some("t2".into()))))
        );
        assert_eq!(
            id(&[
                ("AWS_PROFILE", "cfg"),
                ("AWS_SHARED_CREDENTIALS_FILE", c),
                ("AWS_CONFIG_FILE", f)
            ]),
            Ok(Some(("AKCFG".into(), None)))
        );
        assert_eq!(
            id(&[("AWS_PROFILE", "none"), ("AWS_SHARED_CREDENTIALS_FILE", c)]),
            Ok(None)
        );
        let half = id(&[("AWS_PROFILE", "half"), ("AWS_CONFIG_FILE", f)]).unwrap_err();
        assert!(half.contains("must both be set"), "{half}");
        let env_half = id(&[("AWS_ACCESS_KEY_ID", "AK")]).unwrap_err();
        assert!(env_half.contains("AWS_SECRET_ACCESS_KEY"), "{env_half}");
    }
}
