//! The SigV4-signing HTTP client of the commands that talk to a running server (`fleetfn status`,
//! `fleetfn wait`, `fleetfn logs`), and where it finds its endpoint, region and credentials.
//!
//! Credentials are resolved the way the AWS CLI resolves them: `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`) unless `--profile` is given, then the profile
//! (`--profile`, `AWS_PROFILE`, `default`) in the shared credentials file and in the config file;
//! as a last resort the `credentials.json` that `fleetfn serve` writes into its data dir. The
//! region comes from `--region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile, or `us-east-1`.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9600";
pub const DEFAULT_REGION: &str = "us-east-1";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to send requests and as whom: the options every server-facing command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// URL of the fleetfn API.
    #[arg(long, env = "FLEETFN_ENDPOINT_URL", default_value = DEFAULT_ENDPOINT, global = true)]
    pub endpoint_url: String,
    /// AWS profile to take credentials and region from (default: $AWS_PROFILE, else "default").
    /// As with the AWS CLI, an explicit --profile takes precedence over AWS_ACCESS_KEY_ID.
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Region to sign for (default: $AWS_REGION, $AWS_DEFAULT_REGION, the profile's region,
    /// us-east-1).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Data dir of a local `fleetfn serve`: its credentials.json is used when no AWS credentials
    /// are configured (default: $XDG_DATA_HOME/fleetfn or ~/.local/share/fleetfn).
    #[arg(long, env = "FLEETFN_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

/// Why a request could not be made or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an AWS-style error.
    #[error("{kind}: {message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error(
        "could not connect to {endpoint} ({reason}); is `fleetfn serve` running there? \
         (choose another endpoint with --endpoint-url or FLEETFN_ENDPOINT_URL)"
    )]
    Connect { endpoint: String, reason: String },
    #[error("no answer from {endpoint} within {}s", .after.as_secs())]
    Timeout { endpoint: String, after: Duration },
    #[error("request to {endpoint} failed: {reason}")]
    Http { endpoint: String, reason: String },
    #[error("invalid endpoint URL {url:?}: {reason}")]
    Endpoint { url: String, reason: String },
    #[error(
        "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, configure profile \
         {profile:?} in {}, or start `fleetfn serve` with data dir {} (it writes credentials.json \
         there)", .credentials_file.display(), .data_dir.display()
    )]
    NoCredentials {
        profile: String,
        credentials_file: PathBuf,
        data_dir: PathBuf,
    },
    #[error("{present} is set but {missing} is not")]
    PartialCredentials {
        present: &'static str,
        missing: &'static str,
    },
    #[error("the profile {profile:?} was not found in {} or {}", .credentials_file.display(), .config_file.display())]
    ProfileNotFound {
        profile: String,
        credentials_file: PathBuf,
        config_file: PathBuf,
    },
    #[error("profile {profile:?} in {}: {key} is set but {missing} is not", .path.display())]
    PartialProfile {
        profile: String,
        path: PathBuf,
        key: &'static str,
        missing: &'static str,
    },
    #[error("reading {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {}: {source}", .path.display())]
    CredentialsJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("signing the request: {0}")]
    Sign(#[from] fleetfn_sigv4::SignError),
    #[error("the server answered something that is not JSON: {0}")]
    BadJson(serde_json::Error),
}

impl ClientError {
    /// The AWS error type, for errors the server answered.
    pub fn api_kind(&self) -> Option<&str> {
        match self {
            Self::Api { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// An error worth retrying while polling: throttled or a server-side failure.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            Self::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// A static key pair and where it was found.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Where they came from, for messages ("environment variables", a file and profile).
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("source", &self.source)
            .finish()
    }
}

/// The outcome of resolving [`ConnectArgs`] against the environment and the files.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub endpoint: String,
    pub region: String,
    pub credentials: Credentials,
    /// The CA bundle an `https://` endpoint is verified with (`AWS_CA_BUNDLE`, as for the AWS
    /// CLI) [default: the host's root certificates].
    pub ca_bundle: Option<PathBuf>,
}

/// An INI file as the AWS CLI reads it: sections of lower-cased keys. Later duplicates win.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ini {
    sections: HashMap<String, HashMap<String, String>>,
}

impl Ini {
    /// Parses `[section]` headers and `key = value` (or `key: value`) lines; `#` and `;` start
    /// comment lines; indented lines (nested settings such as `s3 =` blocks) are skipped.
    pub fn parse(text: &str) -> Self {
        let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
        let mut current: Option<String> = None;
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if raw.starts_with([' ', '\t']) {
                continue;
            }
            if let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = inner.split_whitespace().collect::<Vec<_>>().join(" ");
                sections.entry(name.clone()).or_default();
                current = Some(name);
                continue;
            }
            let (Some(section), Some(at)) = (&current, line.find(['=', ':'])) else {
                continue;
            };
            let key = line[..at].trim().to_ascii_lowercase();
            let value = line[at + 1..].trim().to_owned();
            if let Some(s) = sections.get_mut(section) {
                s.insert(key, value);
            }
        }
        Self { sections }
    }

    pub fn section(&self, name: &str) -> Option<&HashMap<String, String>> {
        self.sections.get(name)
    }
}

/// The environment variables resolution reads (a parameter, so tests need not touch the process
/// environment). Empty values count as unset.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .map(|v| (*v).to_owned())
    }
}

fn expand_home(path: &str, env: &dyn Env) -> PathBuf {
    match (path.strip_prefix("~/"), env.var("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn aws_file(env: &dyn Env, var: &str, name: &str) -> PathBuf {
    env.var(var).map_or_else(
        || {
            let home = env.var("HOME").unwrap_or_else(|| ".".to_owned());
            Path::new(&home).join(".aws").join(name)
        },
        |p| expand_home(&p, env),
    )
}

/// Reads an INI file; a missing file is an empty one.
fn read_ini(path: &Path) -> Result<Ini, ClientError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Ini::parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ini::default()),
        Err(source) => Err(ClientError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Static credentials in one profile section, if it has any.
fn profile_credentials(
    section: &HashMap<String, String>,
    profile: &str,
    path: &Path,
) -> Result<Option<Credentials>, ClientError> {
    let get = |k: &str| section.get(k).filter(|v| !v.is_empty()).cloned();
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Some(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: get("aws_session_token"),
            source: format!("profile {profile:?} in {}", path.display()),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ClientError::PartialProfile {
            profile: profile.to_owned(),
            path: path.to_owned(),
            key: "aws_access_key_id",
            missing: "aws_secret_access_key",
        }),
        (None, Some(_)) => Err(ClientError::PartialProfile {
            profile: profile.to_owned(),
            path: path.to_owned(),
            key: "aws_secret_access_key",
            missing: "aws_access_key_id",
        }),
    }
}

/// The key pair `fleetfn serve` stores in its data dir (see `credentials.rs`).
#[derive(serde::Deserialize)]
struct StoredCredentials {
    access_key_id: String,
    secret_access_key: String,
}

fn data_dir_credentials(data_dir: &Path) -> Result<Option<Credentials>, ClientError> {
    let path = data_dir.join("credentials.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ClientError::Read { path, source }),
    };
    let s: StoredCredentials =
        serde_json::from_str(&text).map_err(|source| ClientError::CredentialsJson {
            path: path.clone(),
            source,
        })?;
    Ok(Some(Credentials {
        access_key_id: s.access_key_id,
        secret_access_key: s.secret_access_key,
        session_token: None,
        source: path.display().to_string(),
    }))
}

/// Resolves endpoint, region and credentials. `default_data_dir` is used when `--data-dir` is
/// not given.
pub fn resolve(
    args: &ConnectArgs,
    env: &dyn Env,
    default_data_dir: &Path,
) -> Result<Resolved, ClientError> {
    let credentials_file = aws_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = aws_file(env, "AWS_CONFIG_FILE", "config");
    let explicit_profile = args.profile.clone().filter(|p| !p.is_empty());
    let profile_chosen = explicit_profile.is_some() || env.var("AWS_PROFILE").is_some();
    let profile = explicit_profile
        .clone()
        .or_else(|| env.var("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());

    let creds_ini = read_ini(&credentials_file)?;
    let config_ini = read_ini(&config_file)?;
    let creds_section = creds_ini.section(&profile);
    let config_section = config_ini
        .section(&format!("profile {profile}"))
        .or_else(|| {
            (profile == "default")
                .then(|| config_ini.section("default"))
                .flatten()
        });
    if profile_chosen && creds_section.is_none() && config_section.is_none() {
        return Err(ClientError::ProfileNotFound {
            profile,
            credentials_file,
            config_file,
        });
    }

    let region = args
        .region
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| env.var("AWS_REGION"))
        .or_else(|| env.var("AWS_DEFAULT_REGION"))
        .or_else(|| {
            config_section
                .and_then(|s| s.get("region"))
                .filter(|r| !r.is_empty())
                .cloned()
        })
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());

    // An explicit --profile overrides the environment's keys (as in the AWS CLI); AWS_PROFILE
    // does not.
    let from_env = if explicit_profile.is_none() {
        match (
            env.var("AWS_ACCESS_KEY_ID"),
            env.var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: env.var("AWS_SESSION_TOKEN"),
                source: "environment variables".to_owned(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ClientError::PartialCredentials {
                    present: "AWS_ACCESS_KEY_ID",
                    missing: "AWS_SECRET_ACCESS_KEY",
                });
            }
            (None, Some(_)) => {
                return Err(ClientError::PartialCredentials {
                    present: "AWS_SECRET_ACCESS_KEY",
                    missing: "AWS_ACCESS_KEY_ID",
                });
            }
        }
    } else {
        None
    };

    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir.to_owned());
    let credentials = match from_env {
        Some(c) => c,
        None => {
            let from_creds_file = match creds_section {
                Some(s) => profile_credentials(s, &profile, &credentials_file)?,
                None => None,
            };
            let from_config = match (&from_creds_file, config_section) {
                (None, Some(s)) => profile_credentials(s, &profile, &config_file)?,
                _ => None,
            };
            match from_creds_file.or(from_config) {
                Some(c) => c,
                None => data_dir_credentials(&data_dir)?.ok_or(ClientError::NoCredentials {
                    profile,
                    credentials_file,
                    data_dir,
                })?,
            }
        }
    };

    Ok(Resolved {
        endpoint: args.endpoint_url.trim_end_matches('/').to_owned(),
        region,
        credentials,
        ca_bundle: env.var("AWS_CA_BUNDLE").map(PathBuf::from),
    })
}

/// Percent-encodes one path segment or query component (everything but RFC 3986 unreserved).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The signing client.
pub struct Client {
    endpoint: String,
    base: http::Uri,
    region: String,
    credentials: Credentials,
    http: HyperClient<fleetfn_proto::tls::HttpsConnector, Full<Bytes>>,
}

impl Client {
    pub fn new(resolved: Resolved) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::Endpoint {
            url: resolved.endpoint.clone(),
            reason: reason.to_owned(),
        };
        let base: http::Uri = resolved
            .endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let tls = match base.scheme_str() {
            Some("http") => None,
            Some("https") => Some(
                match &resolved.ca_bundle {
                    Some(ca) => fleetfn_proto::tls::ClientTls::from_ca_file(ca, "AWS_CA_BUNDLE"),
                    None => fleetfn_proto::tls::ClientTls::system_roots(),
                }
                .map_err(|e| bad(&e.to_string()))?,
            ),
            _ => return Err(bad("expected http://HOST:PORT or https://HOST:PORT")),
        };
        if base.host().is_none() {
            return Err(bad("no host"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let connector = fleetfn_proto::tls::https_connector(tls.as_ref(), connector, true);
        Ok(Self {
            endpoint: resolved.endpoint,
            base,
            region: resolved.region,
            credentials: resolved.credentials,
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
        })
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A signed GET of `path` (already percent-encoded) with `query` pairs (raw, encoded here);
    /// returns the body of a 2xx answer.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Bytes, ClientError> {
        self.send(http::Method::GET, path, query, Bytes::new())
            .await
    }

    /// A signed request of any method with a JSON body (empty for none); returns the body of a
    /// 2xx answer.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Bytes, ClientError> {
        self.send_with_headers(method, path, query, &[], body).await
    }

    /// [`Self::send`] with extra request headers (signed with the rest).
    pub async fn send_with_headers(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Bytes, ClientError> {
        let (parts, body) = self
            .signed_with(method, path, query, headers, body)?
            .into_parts();
        let exchange = async {
            let resp = self
                .http
                .request(http::Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Http {
                    endpoint: self.endpoint.clone(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, ClientError>((status, headers, body))
        };
        let (status, headers, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: self.endpoint.clone(),
                after: REQUEST_TIMEOUT,
            })??;
        if status.is_success() {
            Ok(body)
        } else {
            Err(api_error(status, &headers, &body))
        }
    }

    /// A signed GET whose body goes to `on_chunk` as it arrives (answers that stream, such as
    /// followed logs). Waits at most the request timeout for the answer to start and `idle`
    /// between chunks; returns the answer's headers once the body ends or `on_chunk` breaks.
    pub async fn get_streaming(
        &self,
        path: &str,
        query: &[(&str, &str)],
        idle: Duration,
        mut on_chunk: impl FnMut(&[u8]) -> std::ops::ControlFlow<()>,
    ) -> Result<http::HeaderMap, ClientError> {
        let (parts, body) = self
            .signed(http::Method::GET, path, query, Bytes::new())?
            .into_parts();
        let timeout = |after| ClientError::Timeout {
            endpoint: self.endpoint.clone(),
            after,
        };
        let http_error = |e: &dyn std::fmt::Display| ClientError::Http {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        };
        let resp = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.http
                .request(http::Request::from_parts(parts, Full::new(body))),
        )
        .await
        .map_err(|_| timeout(REQUEST_TIMEOUT))?
        .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = tokio::time::timeout(REQUEST_TIMEOUT, body.collect())
                .await
                .map_err(|_| timeout(REQUEST_TIMEOUT))?
                .map_err(|e| http_error(&e))?
                .to_bytes();
            return Err(api_error(status, &headers, &bytes));
        }
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return Err(timeout(idle)),
                Ok(None) => break,
                Ok(Some(f)) => f.map_err(|e| http_error(&e))?,
            };
            if let Ok(data) = frame.into_data()
                && on_chunk(&data).is_break()
            {
                break;
            }
        }
        Ok(headers)
    }

    /// A GET of `path` (already percent-encoded) with `query` pairs (raw, encoded here), signed.
    fn signed(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Bytes,
    ) -> Result<http::Request<Bytes>, ClientError> {
        self.signed_with(method, path, query, &[], body)
    }

    fn signed_with(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<http::Request<Bytes>, ClientError> {
        let prefix = self.base.path().trim_end_matches('/');
        let mut uri = format!(
            "{}://{}{prefix}{path}",
            self.base.scheme_str().unwrap_or("http"),
            self.base.authority().map_or("", |a| a.as_str()),
        );
        for (i, (k, v)) in query.iter().enumerate() {
            uri.push(if i == 0 { '?' } else { '&' });
            uri.push_str(&encode_component(k));
            uri.push('=');
            uri.push_str(&encode_component(v));
        }
        let mut builder = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::ACCEPT, "application/json");
        if !body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut req = builder.body(body).map_err(|e| ClientError::Endpoint {
            url: uri.clone(),
            reason: e.to_string(),
        })?;
        fleetfn_sigv4::sign_http_request(
            &mut req,
            &fleetfn_sigv4::SigningParams {
                access_key_id: &self.credentials.access_key_id,
                secret_access_key: &self.credentials.secret_access_key,
                session_token: self.credentials.session_token.as_deref(),
                region: &self.region,
                service: "lambda",
                time: jiff::Timestamp::now(),
            },
        )?;
        Ok(req)
    }

    /// [`Self::get`], parsed as JSON.
    pub async fn get_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value, ClientError> {
        let body = self.get(path, query).await?;
        serde_json::from_slice(&body).map_err(ClientError::BadJson)
    }

    fn transport_error(&self, e: &hyper_util::client::legacy::Error) -> ClientError {
        // The innermost cause says what happened ("Connection refused (os error 111)").
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        if e.is_connect() {
            ClientError::Connect {
                endpoint: self.endpoint.clone(),
                reason,
            }
        } else {
            ClientError::Http {
                endpoint: self.endpoint.clone(),
                reason,
            }
        }
    }
}

/// An AWS-style error answer: the type from `x-amzn-ErrorType` (or the body's `__type`/`code`),
/// the message from the body's `message`/`Message`.
pub fn api_error(status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]) -> ClientError {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| {
        json.as_ref().and_then(|j| {
            names
                .iter()
                .find_map(|n| j.get(*n).and_then(|v| v.as_str()))
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
    };
    let kind = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty())
        .or_else(|| {
            field(&["__type", "code", "Code"])
                .map(|t| t.rsplit('#').next().unwrap_or(&t).to_owned())
        })
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    let message = field(&["message", "Message", "errorMessage"])
        .or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            (!text.is_empty() && json.is_none()).then(|| text.chars().take(500).collect())
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
    ClientError::Api {
        status: status.as_u16(),
        kind,
        message,
    }
}

/// Error types that mean "these credentials are not accepted".
pub fn is_auth_error(kind: &str) -> bool {
    matches!(
        kind,
        "InvalidSignatureException"
            | "UnrecognizedClientException"
            | "MissingAuthenticationTokenException"
            | "IncompleteSignatureException"
            | "AccessDeniedException"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
    )
}

/// Builds a client from the command line, the environment and the files.
pub fn connect(args: &ConnectArgs) -> Result<Client, ClientError> {
    Client::new(resolve(args, &ProcessEnv, &crate::default_data_dir())?)
}

/// Runs a client command on a small runtime. On failure prints `fleetfn: <error>` (and, for
/// refused credentials, which ones were used) to stderr and exits with status 1.
pub fn run_command<F>(fut: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(fut);
    drop(rt);
    if let Err(e) = result {
        eprintln!("fleetfn: {e:#}");
        if let Some(RefusedCredentials { hint, .. }) = e.downcast_ref::<RefusedCredentials>() {
            eprintln!("{hint}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// The server refused the credentials; `hint` says which key was used and where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RefusedCredentials {
    error: ClientError,
    hint: String,
}

/// Turns a client error into the command's error; refused credentials get a hint naming them.
pub fn command_error(client: &Client, e: ClientError) -> anyhow::Error {
    if let Some(kind) = e.api_kind()
        && is_auth_error(kind)
    {
        let c = client.credentials();
        return RefusedCredentials {
            error: e,
            hint: format!(
                "hint: signed with access key {} from {}",
                c.access_key_id, c.source
            ),
        }
        .into();
    }
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConnectArgs {
        ConnectArgs {
            endpoint_url: DEFAULT_ENDPOINT.to_owned(),
            profile: None,
            region: None,
            data_dir: None,
        }
    }

    /// A temp dir with `.aws/credentials`, `.aws/config` and a data dir, and an environment whose
    /// HOME points at it.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(credentials: &str, config: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
            std::fs::create_dir_all(dir.path().join("data")).unwrap();
            if !credentials.is_empty() {
                std::fs::write(dir.path().join(".aws/credentials"), credentials).unwrap();
            }
            if !config.is_empty() {
                std::fs::write(dir.path().join(".aws/config"), config).unwrap();
            }
            Self { dir }
        }
        fn home(&self) -> String {
            self.dir.path().to_str().unwrap().to_owned()
        }
        fn data_dir(&self) -> PathBuf {
            self.dir.path().join("data")
        }
        fn write_data_creds(&self, id: &str, secret: &str) {
            std::fs::write(
                self.data_dir().join("credentials.json"),
                format!(r#"{{"access_key_id": "{id}", "secret_access_key": "{secret}"}}"#),
            )
            .unwrap();
        }
        fn resolve(
            &self,
            args: &ConnectArgs,
            vars: &[(&'static str, &str)],
        ) -> Result<Resolved, ClientError> {
            let home = self.home();
            let mut env: HashMap<&str, &str> = vars.iter().copied().collect();
            env.insert("HOME", &home);
            resolve(args, &env, &self.data_dir())
        }
    }

    const CREDS: &str = "\
# comment
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = secret/default+key
; another comment

[dev]
AWS_ACCESS_KEY_ID=AKIDDEV
aws_secret_access_key=devsecret
aws_session_token = tok==
";

    const CONFIG: &str = "\
[default]
region = eu-west-1
s3 =
    max_concurrent_requests = 20

[profile dev]
region: ap-south-1

[profile cfgonly]
aws_access_key_id = AKIDCFG
aws_secret_access_key = cfgsecret
";

    #[test]
    fn ini_sections_keys_comments_and_nesting() {
        let ini = Ini::parse(CONFIG);
        assert_eq!(ini.section("default").unwrap()["region"], "eu-west-1");
        assert_eq!(ini.section("default").unwrap()["s3"], "");
        assert!(
            !ini.section("default")
                .unwrap()
                .contains_key("max_concurrent_requests")
        );
        assert_eq!(ini.section("profile dev").unwrap()["region"], "ap-south-1");
        let creds = Ini::parse(CREDS);
        assert_eq!(
            creds.section("dev").unwrap()["aws_access_key_id"],
            "AKIDDEV"
        );
        assert_eq!(creds.section("dev").unwrap()["aws_session_token"], "tok==");
        assert_eq!(
            creds.section("default").unwrap()["aws_secret_access_key"],
            "secret/default+key"
        );
        assert!(creds.section("missing").is_none());
        // Extra whitespace in headers, values with '=' and ':' inside, keys before any section.
        let odd = Ini::parse("stray = 1\n[  profile   x  ]\nrole_arn = arn:aws:iam::1:role/r\n");
        assert_eq!(
            odd.section("profile x").unwrap()["role_arn"],
            "arn:aws:iam::1:role/r"
        );
        assert_eq!(odd.sections.len(), 1);
    }

    #[test]
    fn env_credentials_come_first() {
        let f = Fixture::new(CREDS, CONFIG);
        let r = f
            .resolve(
                &args(),
                &[
                    ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                    ("AWS_SECRET_ACCESS_KEY", "envsecret"),
                    ("AWS_SESSION_TOKEN", "envtok"),
                ],
            )
            .unwrap();
        assert_eq!(r.credentials.access_key_id, "AKIDENV");
        assert_eq!(r.credentials.secret_access_key, "envsecret");
        assert_eq!(r.credentials.session_token.as_deref(), Some("envtok"));
        assert_eq!(r.credentials.source, "environment variables");
        // The region still comes from the default profile of the config file.
        assert_eq!(r.region, "eu-west-1");
        assert_eq!(r.endpoint, DEFAULT_ENDPOINT);
    }

    #[test]
    fn partial_env_credentials_are_an_error() {
        let f = Fixture::new(CREDS, "");
        let e = f
            .resolve(&args(), &[("AWS_ACCESS_KEY_ID", "AKIDENV")])
            .unwrap_err();
        assert!(matches!(
            e,
            ClientError::PartialCredentials {
                missing: "AWS_SECRET_ACCESS_KEY",
                ..
            }
        ));
    }

    #[test]
    fn default_profile_from_the_credentials_file() {
        let f = Fixture::new(CREDS, CONFIG);
        let r = f.resolve(&args(), &[]).unwrap();
        assert_eq!(r.credentials.access_key_id, "AKIDDEFAULT");
        assert_eq!(r.credentials.secret_access_key, "secret/default+key");
        assert_eq!(r.credentials.session_token, None);
        assert!(r.credentials.source.contains("\"default\""));
        assert_eq!(r.region, "eu-west-1");
    }

    #[test]
    fn explicit_profile_beats_env_keys_but_aws_profile_does_not() {
        let f = Fixture::new(CREDS, CONFIG);
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
        ];
        let mut a = args();
        a.profile = Some("dev".into());
        let r = f.resolve(&a, &env).unwrap();
        assert_eq!(r.credentials.access_key_id, "AKIDDEV");
        assert_eq!(r.credentials.session_token.as_deref(), Some("tok=="));
        assert_eq!(r.region, "ap-south-1");

        let mut with_profile_var = env.to_vec();
        with_profile_var.push(("AWS_PROFILE", "dev"));
        let r = f.resolve(&args(), &with_profile_var).unwrap();
        assert_eq!(r.credentials.access_key_id, "AKIDENV");
        assert_eq!(r.region, "ap-south-1");

        let r = f.resolve(&args(), &[("AWS_PROFILE", "dev")]).unwrap();
        assert_eq!(r.credentials.access_key_id, "AKIDDEV");
    }

    #[test]
    fn credentials_in_the_config_file() {
        let f = Fixture::new(CREDS, CONFIG);
        let mut a = args();
        a.profile = Some("cfgonly".into());
        let r = f.resolve(&a, &[]).unwrap();
        assert_eq!(r.credentials.access_key_id, "AKIDCFG");
        assert!(r.credentials.source.ends_with("config"));
        assert_eq!(r.region, DEFAULT_REGION);
    }

    #[test]
    fn unknown_profile_is_an_error() {
        let f = Fixture::new(CREDS, CONFIG);
        let mut a = args();
        a.profile = Some("nope".into());
        assert!(matches!(
            f.resolve(&a, &[]).unwrap_err(),
            ClientError::ProfileNotFound { profile, .. } if profile == "nope"
        ));
        assert!(matches!(
            f.resolve(&args(), &[("AWS_PROFILE", "nope")]).unwrap_err(),
            ClientError::ProfileNotFound { .. }
        ));
    }

    #[test]
    fn file_locations_from_env() {
        let f = Fixture::new("", "");
        let other = tempfile::tempdir().unwrap();
        let creds = other.path().join("c");
        let config = other.path().join("k");
        std::fs::write(
            &creds,
            "[p]\naws_access_key_id=A\naws_secret_access_key=B\n",
        )
        .unwrap();
        std::fs::write(&config, "[profile p]\nregion=us-west-2\n").unwrap();
        let r = f
            .resolve(
                &args(),
                &[
                    ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
                    ("AWS_CONFIG_FILE", config.to_str().unwrap()),
                    ("AWS_PROFILE", "p"),
                ],
            )
            .unwrap();
        assert_eq!(r.credentials.access_key_id, "A");
        assert_eq!(r.region, "us-west-2");
    }

    #[test]
    fn region_precedence() {
        let f = Fixture::new(CREDS, CONFIG);
        let mut a = args();
        assert_eq!(
            f.resolve(&a, &[("AWS_DEFAULT_REGION", "us-west-1")])
                .unwrap()
                .region,
            "us-west-1"
        );
        assert_eq!(
            f.resolve(
                &a,
                &[
                    ("AWS_DEFAULT_REGION", "us-west-1"),
                    ("AWS_REGION", "ca-central-1")
                ]
            )
            .unwrap()
            .region,
            "ca-central-1"
        );
        a.region = Some("sa-east-1".into());
        assert_eq!(
            f.resolve(&a, &[("AWS_REGION", "ca-central-1")])
                .unwrap()
                .region,
            "sa-east-1"
        );
    }

    #[test]
    fn data_dir_credentials_are_the_last_resort() {
        let f = Fixture::new("", "");
        f.write_data_creds("AKIDDATA", "datasecret");
        let r = f.resolve(&args(), &[]).unwrap();
        assert_eq!(r.credentials.access_key_id, "AKIDDATA");
        assert_eq!(r.credentials.secret_access_key, "datasecret");
        assert!(r.credentials.source.ends_with("credentials.json"));
        assert_eq!(r.region, DEFAULT_REGION);

        // A profile with keys wins over the data dir.
        let g = Fixture::new(CREDS, "");
        g.write_data_creds("AKIDDATA", "datasecret");
        assert_eq!(
            g.resolve(&args(), &[]).unwrap().credentials.access_key_id,
            "AKIDDEFAULT"
        );

        // --data-dir points elsewhere.
        let other = Fixture::new("", "");
        other.write_data_creds("AKIDOTHER", "s");
        let mut a = args();
        a.data_dir = Some(other.data_dir());
        assert_eq!(
            f.resolve(&a, &[]).unwrap().credentials.access_key_id,
            "AKIDOTHER"
        );
    }

    #[test]
    fn nothing_configured() {
        let f = Fixture::new("", "[default]\nregion = eu-west-1\n");
        let e = f.resolve(&args(), &[]).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ClientError::NoCredentials { .. }), "{e:?}");
        assert!(msg.contains("AWS_ACCESS_KEY_ID"), "{msg}");
        assert!(msg.contains("credentials.json"), "{msg}");
    }

    #[test]
    fn broken_data_dir_credentials() {
        let f = Fixture::new("", "");
        std::fs::write(f.data_dir().join("credentials.json"), "{").unwrap();
        assert!(matches!(
            f.resolve(&args(), &[]).unwrap_err(),
            ClientError::CredentialsJson { .. }
        ));
    }

    #[test]
    fn api_errors_from_header_and_body() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-amzn-ErrorType",
            "ResourceNotFoundException:http://internal.amazon.com/"
                .parse()
                .unwrap(),
        );
        let body = br#"{"Type":"User","message":"Function not found: x","__type":"Ignored"}"#;
        let e = api_error(http::StatusCode::NOT_FOUND, &headers, body);
        assert_eq!(
            e.to_string(),
            "ResourceNotFoundException: Function not found: x"
        );
        assert!(!e.is_transient());

        let e = api_error(
            http::StatusCode::FORBIDDEN,
            &http::HeaderMap::new(),
            br#"{"__type":"com.amazon.coral#InvalidSignatureException","Message":"bad"}"#,
        );
        assert_eq!(e.to_string(), "InvalidSignatureException: bad");

        let e = api_error(
            http::StatusCode::BAD_GATEWAY,
            &http::HeaderMap::new(),
            b"upstream down",
        );
        assert_eq!(e.to_string(), "HTTP 502: upstream down");
        assert!(e.is_transient());
    }

    #[test]
    fn component_encoding() {
        assert_eq!(encode_component("$LATEST.PUBLISHED"), "%24LATEST.PUBLISHED");
        assert_eq!(
            encode_component("arn:aws:lambda:us-east-1:0:function:f"),
            "arn%3Aaws%3Alambda%3Aus-east-1%3A0%3Afunction%3Af"
        );
        assert_eq!(encode_component("a-b_c~d"), "a-b_c~d");
    }

    #[test]
    fn endpoint_validation() {
        let resolved = |e: &str| Resolved {
            endpoint: e.to_owned(),
            region: DEFAULT_REGION.to_owned(),
            credentials: Credentials {
                access_key_id: "a".into(),
                secret_access_key: "b".into(),
                session_token: None,
                source: "test".into(),
            },
            ca_bundle: Some(PathBuf::from("/nonexistent/ca.pem")),
        };
        let unreadable = Client::new(resolved("https://x"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            unreadable.contains("cannot read AWS_CA_BUNDLE /nonexistent/ca.pem"),
            "{unreadable}"
        );
        assert!(matches!(
            Client::new(resolved("ftp://x")),
            Err(ClientError::Endpoint { .. })
        ));
        assert!(matches!(
            Client::new(resolved("127.0.0.1:9600")),
            Err(ClientError::Endpoint { .. })
        ));
        assert!(Client::new(resolved("http://127.0.0.1:9600")).is_ok());
    }
}
