//! `fleetfn agent --join URL[,URL…] --token-file F`: an agent on another host registers with
//! the servers once, with a join token, and keeps the agent id and credential it gets in
//! `<data dir>/agent-credential.json` (mode 0600); on later starts it reuses them and needs no
//! token. The token and the credential open nothing of the admin API. `https://` servers are
//! verified against `--ca-file` (or the host's roots); `http://` ones need `--allow-plain-http`.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use fleetfn_agent::HostRuntimes;
use fleetfn_proto::tls::ClientTls;
use fleetfn_server::cluster::{JoinRequest, JoinResponse};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

/// Where a joined agent keeps its identity.
pub const CREDENTIAL_FILE: &str = "agent-credential.json";

/// The saved identity of a joined agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Joined {
    pub agent_id: String,
    pub credential: String,
    /// The servers it joined (on later starts: those of `--join`).
    pub servers: Vec<String>,
    /// It told the servers it serves its API over TLS: it must go on doing so.
    #[serde(default)]
    pub tls: bool,
}

/// What this agent offers when it joins.
pub struct Offer {
    pub address: std::net::SocketAddr,
    pub zone: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub host: HostRuntimes,
    /// It serves its API over TLS.
    pub tls: bool,
}

/// The client an agent talks to its servers with (join, packages): `https://` verified with the
/// CA of `--ca-file` or the host's roots, `http://` where allowed.
#[derive(Clone, Debug)]
pub struct ServerHttp(HyperClient<fleetfn_proto::tls::HttpsConnector, Full<Bytes>>);

impl ServerHttp {
    fn new(tls: Option<&ClientTls>) -> Self {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        http.set_nodelay(true);
        Self(
            HyperClient::builder(TokioExecutor::new())
                .build(fleetfn_proto::tls::https_connector(tls, http, true)),
        )
    }
}

fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x86_64",
    }
}

/// The runtimes this host can run: `provided.*` always, Python and Node.js where found.
fn runtimes(host: &HostRuntimes) -> Vec<String> {
    let mut out = vec!["provided.al2023".to_string(), "provided.al2".to_string()];
    out.extend(
        host.python
            .iter()
            .filter(|(_, i)| i.is_ok())
            .map(|(name, _)| name.clone()),
    );
    if host.node.is_ok() {
        out.extend(["nodejs22.x".to_string(), "nodejs24.x".to_string()]);
    }
    out
}

/// Checks the `--join` URLs and makes the client for them: `http://HOST:PORT` only with
/// `--allow-plain-http` (then said in the log), `https://HOST:PORT` verified with the CA bundle
/// in `ca_file`, or without one the host's root certificates.
pub fn check_servers(
    servers: &[String],
    allow_plain_http: bool,
    ca_file: Option<&Path>,
) -> anyhow::Result<ServerHttp> {
    let (mut plain, mut tls) = (false, false);
    for s in servers {
        let uri: http::Uri = s
            .parse()
            .map_err(|e| anyhow::anyhow!("--join: {s:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") if allow_plain_http => plain = true,
            Some("http") => anyhow::bail!(
                "--join {s}: plain HTTP would carry the join token and this agent's credential \
                 unencrypted; use https:// (servers started with --tls-cert), or add \
                 --allow-plain-http to do it anyway on a network you trust"
            ),
            Some("https") => tls = true,
            _ => anyhow::bail!("--join {s}: expected https://HOST:PORT (or http://)"),
        }
        anyhow::ensure!(uri.host().is_some(), "--join {s}: no host");
    }
    let roots = if !tls {
        None
    } else if let Some(ca) = ca_file {
        Some(ClientTls::from_ca_file(ca, "--ca-file")?)
    } else {
        Some(ClientTls::system_roots().map_err(|e| {
            anyhow::anyhow!(
                "--join with https://: {e} (--ca-file FILE: the CA that signed the servers' certificates)"
            )
        })?)
    };
    if plain {
        tracing::warn!(
            servers = %servers.join(","),
            "talking to the servers over plain HTTP (--allow-plain-http): the join token, this agent's credential and code packages cross the network unencrypted"
        );
    }
    Ok(ServerHttp::new(roots.as_ref()))
}

/// The saved identity, or a new one from a join with the token in `token_file`.
pub async fn identity(
    client: &ServerHttp,
    data_dir: &Path,
    servers: &[String],
    token_file: Option<&Path>,
    offer: Offer,
) -> anyhow::Result<Joined> {
    let path = data_dir.join(CREDENTIAL_FILE);
    if let Ok(raw) = std::fs::read(&path) {
        let mut joined: Joined = serde_json::from_slice(&raw)
            .with_context(|| format!("{} is not an agent credential file", path.display()))?;
        // The servers call it as it joined: over TLS, or over plain HTTP.
        match (joined.tls, offer.tls) {
            (true, false) => anyhow::bail!(
                "agent {} joined serving its API over TLS, and the servers call it only so: \
                 start it with --tls-cert and --tls-key",
                joined.agent_id
            ),
            (false, true) => anyhow::bail!(
                "agent {} joined serving its API over plain HTTP, and the servers call it so: \
                 to serve TLS, remove it (DELETE /fleetfn/v1/agents/{}), delete {} and join \
                 again with a new token",
                joined.agent_id,
                joined.agent_id,
                path.display()
            ),
            _ => {}
        }
        // The servers as checked now (a saved http:// list must not bypass the check).
        joined.servers = servers.to_vec();
        tracing::info!(agent = %joined.agent_id, "using the identity from an earlier join ({})", path.display());
        return Ok(joined);
    }
    let token_file = token_file.context(
        "--join needs --token-file FILE holding a join token (`fleetfn token create` on a server)",
    )?;
    let token = read_secret_file(token_file)?;
    let req = JoinRequest {
        address: offer.address.to_string(),
        zone: offer.zone,
        vcpus: offer.vcpus,
        memory_mib: offer.memory_mib,
        architecture: architecture().to_string(),
        runtimes: runtimes(&offer.host),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        tls: offer.tls,
    };
    let body = Bytes::from(serde_json::to_vec(&req)?);
    let mut last = anyhow::anyhow!("no server to join (--join is empty)");
    for server in servers {
        match post_join(client, server, &token, body.clone()).await {
            Ok(resp) => {
                let joined = Joined {
                    agent_id: resp.agent_id,
                    credential: resp.credential,
                    servers: servers.to_vec(),
                    tls: req.tls,
                };
                save(&path, &joined)?;
                eprintln!(
                    "fleetfn agent joined {server} as {} (identity saved in {})",
                    joined.agent_id,
                    path.display()
                );
                return Ok(joined);
            }
            // A refusal is the cluster's answer: asking another server changes nothing.
            Err(JoinError::Refused(msg)) => anyhow::bail!("{server} refused the join: {msg}"),
            Err(JoinError::Unreachable(msg)) => {
                tracing::warn!(%server, "cannot reach the server: {msg}");
                last = anyhow::anyhow!("cannot reach {server}: {msg}");
            }
        }
    }
    Err(last)
}

/// A file holding a secret: readable only by its owner, trimmed.
fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} is readable by others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let token = text.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "{} is empty", path.display());
    Ok(token)
}

fn save(path: &PathBuf, joined: &Joined) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(joined)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

enum JoinError {
    /// The server answered with an error (bad token, bad offer).
    Refused(String),
    Unreachable(String),
}

async fn post_join(
    client: &ServerHttp,
    server: &str,
    token: &str,
    body: Bytes,
) -> Result<JoinResponse, JoinError> {
    let url = format!("{}/fleetfn/v1/agents/join", server.trim_end_matches('/'));
    let req = http::Request::post(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| JoinError::Refused(format!("bad server URL {url}: {e}")))?;
    let exchange = async {
        let resp = client
            .0
            .request(req)
            .await
            .map_err(|e| JoinError::Unreachable(fleetfn_proto::tls::error_chain(&e)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| JoinError::Unreachable(e.to_string()))?
            .to_bytes();
        Ok::<_, JoinError>((status, headers, bytes))
    };
    let (status, headers, bytes) =
        tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
            .await
            .map_err(|_| JoinError::Unreachable("no answer within 30 s".into()))??;
    if status.is_success() {
        serde_json::from_slice(&bytes)
            .map_err(|e| JoinError::Refused(format!("the server's answer is not a join: {e}")))
    } else {
        Err(JoinError::Refused(
            crate::client::api_error(status, &headers, &bytes).to_string(),
        ))
    }
}

/// The largest package fetched (the API takes zips up to 50 MB).
const MAX_PACKAGE_BYTES: usize = 64 * 1024 * 1024;

/// Code packages from the servers a joined agent belongs to, tried in order.
#[derive(Debug)]
pub struct ServerPackages {
    pub joined: Joined,
    pub client: ServerHttp,
}

impl fleetfn_agent::PackageSource for ServerPackages {
    fn fetch<'a>(
        &'a self,
        sha256_hex: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'a>>
    {
        Box::pin(async move {
            let mut why = String::from("no servers");
            for server in &self.joined.servers {
                let url = format!(
                    "{}/fleetfn/v1/agent/packages/{sha256_hex}",
                    server.trim_end_matches('/')
                );
                let req = http::Request::get(&url)
                    .header(
                        http::header::AUTHORIZATION,
                        format!("Bearer {}.{}", self.joined.agent_id, self.joined.credential),
                    )
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                let exchange = async {
                    let resp = self
                        .client
                        .0
                        .request(req)
                        .await
                        .map_err(|e| fleetfn_proto::tls::error_chain(&e))?;
                    let status = resp.status();
                    let body = http_body_util::Limited::new(resp.into_body(), MAX_PACKAGE_BYTES)
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    Ok::<_, String>((status, body))
                };
                match tokio::time::timeout(std::time::Duration::from_secs(120), exchange).await {
                    Ok(Ok((status, body))) if status.is_success() => return Ok(body.to_vec()),
                    Ok(Ok((status, body))) => {
                        why = format!("{server}: {status} {}", String::from_utf8_lossy(&body));
                    }
                    Ok(Err(e)) => why = format!("{server}: {e}"),
                    Err(_) => why = format!("{server}: no answer within 120 s"),
                }
            }
            Err(why)
        })
    }
}
