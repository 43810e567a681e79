//! Starting `fleetfn serve` (and the other servers a scenario measures) on free loopback ports
//! with temporary data dirs, and a SigV4-signing client for its Lambda API.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::load::{HttpClient, MakeRequest};

pub const KEY: &str = "AKIDBENCHBENCHBENCH0";
pub const SECRET: &str = "benchsecretbenchsecretbenchsecret0000000";
pub const REGION: &str = "us-east-1";
pub const ZONES: [&str; 3] = ["subnet-a", "subnet-b", "subnet-c"];
pub const CP_NAME: &str = "bench";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

/// Sends SIGTERM (or another signal) to one process we started.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A child process stopped (SIGTERM, then SIGKILL after `grace`) when dropped.
pub struct Guarded {
    pub child: Child,
    pub grace: Duration,
}

impl Guarded {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `fleetfn serve`.
pub struct Fleet {
    pub proc_: Guarded,
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    pub api: Api,
}

/// Extra `fleetfn serve` arguments and environment of a scenario (e.g. an AWS endpoint for
/// asynchronous destinations and event source mappings).
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Fleet {
    pub async fn start(bin_dir: &Path) -> anyhow::Result<Fleet> {
        Self::start_with(bin_dir, &ServeOptions::default()).await
    }

    pub async fn start_with(bin_dir: &Path, opts: &ServeOptions) -> anyhow::Result<Fleet> {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let data = tempfile::Builder::new()
            .prefix("fleetfn-bench-")
            .tempdir()?;
        // FLEETFN_BENCH_SERVE_LOG_DIR keeps each server's log (its data dir is temporary).
        let log_path = std::env::var_os("FLEETFN_BENCH_SERVE_LOG_DIR").map_or_else(
            || data.path().join("serve.log"),
            |d| std::path::PathBuf::from(d).join(format!("serve-{}.log", addr.port())),
        );
        let log = std::fs::File::create(log_path)?;
        let child = Command::new(bin_dir.join("fleetfn"))
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data.path())
            .args(["--vcpu-scale", "0.25", "--max-local-vcpus", "256"])
            .args(&opts.args)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .env("FLEETFN_ACCESS_KEY_ID", KEY)
            .env("FLEETFN_SECRET_ACCESS_KEY", SECRET)
            .env(
                "FLEETFN_LOG",
                std::env::var("FLEETFN_BENCH_SERVE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}/fleetfn serve", bin_dir.display()))?;
        let proc_ = Guarded {
            child,
            grace: Duration::from_secs(20),
        };
        let api = Api::new(addr);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = api.raw("GET", "/fleetfn/health", "", None, false).await {
                break;
            }
            if Instant::now() > deadline {
                bail!("fleetfn serve did not come up on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Fleet {
            proc_,
            addr,
            data,
            api,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc_.pid()
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data.path().join("logs")
    }

    /// Creates the `bench` capacity provider and waits until it is Active.
    pub async fn capacity_provider(&self) -> anyhow::Result<String> {
        let body = json!({
            "CapacityProviderName": CP_NAME,
            "VpcConfig": {"SubnetIds": ZONES, "SecurityGroupIds": []},
            "PermissionsConfig": {"CapacityProviderOperatorRoleArn": "arn:aws:iam::000000000000:role/op"},
        });
        self.api
            .ok("POST", "/2025-11-30/capacity-providers", "", Some(body))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self
                .api
                .ok(
                    "GET",
                    &format!("/2025-11-30/capacity-providers/{CP_NAME}"),
                    "",
                    None,
                )
                .await?;
            if v["CapacityProvider"]["State"] == "Active" {
                break;
            }
            if Instant::now() > deadline {
                bail!("capacity provider not Active: {v}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(format!(
            "arn:aws:lambda:{REGION}:000000000000:capacity-provider:{CP_NAME}"
        ))
    }
}

/// One function to create.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub runtime: &'static str,
    pub handler: &'static str,
    pub zip: Arc<Vec<u8>>,
    pub max_concurrency: u32,
    pub memory: u32,
    /// The function's environment variables (`Environment.Variables`).
    pub env: Vec<(&'static str, &'static str)>,
}

/// Zips `files` (name, bytes, mode).
pub fn zip(files: &[(&str, &[u8], u32)]) -> anyhow::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in files {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        w.start_file(*name, opts)?;
        w.write_all(data)?;
    }
    Ok(w.finish()?.into_inner())
}

#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    client: HttpClient,
}

/// Keys that replace the ones this tool starts fleetfn with ([`use_env_keys`]).
static SIGNING_KEYS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// Signs with `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` when both are set (`load` against a
/// fleetfn someone else started); the scenarios always use their own.
pub fn use_env_keys() {
    if let (Ok(k), Ok(s)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) && !k.is_empty()
        && !s.is_empty()
    {
        let _ = SIGNING_KEYS.set((k, s));
    }
}

pub fn sign(req: &mut http::Request<Bytes>) {
    sign_at(req, jiff::Timestamp::now());
}

/// Signs `req` as made at `time`.
fn sign_at(req: &mut http::Request<Bytes>, time: jiff::Timestamp) {
    let (key, secret) = SIGNING_KEYS
        .get()
        .map_or((KEY, SECRET), |(k, s)| (k.as_str(), s.as_str()));
    let _ = fleetfn_sigv4::sign_http_request(
        req,
        &fleetfn_sigv4::SigningParams {
            access_key_id: key,
            secret_access_key: secret,
            session_token: None,
            region: REGION,
            service: "lambda",
            time,
        },
    );
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api {
            addr,
            client: crate::load::client(64),
        }
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: Option<Value>,
        signed: bool,
    ) -> anyhow::Result<(u16, Value)> {
        let uri = if query.is_empty() {
            format!("http://{}{path}", self.addr)
        } else {
            format!("http://{}{path}?{query}", self.addr)
        };
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(bytes)?;
        if signed {
            sign(&mut req);
        }
        let (parts, body) = req.into_parts();
        let resp = tokio::time::timeout(
            Duration::from_secs(120),
            self.client
                .request(http::Request::from_parts(parts, Full::new(body))),
        )
        .await
        .context("API call timed out")??;
        let status = resp.status().as_u16();
        let b = resp.into_body().collect().await?.to_bytes();
        let v = serde_json::from_slice(&b).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// A signed call that must succeed (2xx).
    pub async fn ok(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.raw(method, path, query, body, true).await?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: HTTP {status}: {v}");
        }
        Ok(v)
    }

    pub async fn create_function(&self, cp_arn: &str, f: &FunctionSpec) -> anyhow::Result<()> {
        let mut body = json!({
            "FunctionName": f.name,
            "Runtime": f.runtime,
            "Handler": f.handler,
            "Role": "arn:aws:iam::000000000000:role/fn",
            "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(&*f.zip)},
            "MemorySize": f.memory,
            "Timeout": 30,
            "CapacityProviderConfig": {"LambdaManagedInstancesCapacityProviderConfig": {
                "CapacityProviderArn": cp_arn,
                "PerExecutionEnvironmentMaxConcurrency": f.max_concurrency}},
        });
        if !f.env.is_empty() {
            let vars: serde_json::Map<String, Value> = f
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect();
            body["Environment"] = json!({ "Variables": vars });
        }
        self.ok("POST", "/2015-03-31/functions", "", Some(body))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.configuration(&f.name, None).await?;
            if v["State"] != "Pending" {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} stayed Pending", f.name);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn configuration(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> anyhow::Result<Value> {
        let q = qualifier.map_or_else(String::new, |q| {
            format!("Qualifier={}", q.replace('$', "%24"))
        });
        self.ok(
            "GET",
            &format!("/2015-03-31/functions/{name}/configuration"),
            &q,
            None,
        )
        .await
    }

    /// Publishes to `$LATEST.PUBLISHED` and waits until it is Active; returns how long that took
    /// from the publish call (polled every 10 ms).
    pub async fn publish(&self, name: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        self.ok(
            "POST",
            &format!("/2015-03-31/functions/{name}/versions"),
            "",
            Some(json!({"PublishTo": "LATEST_PUBLISHED"})),
        )
        .await?;
        loop {
            let v = self.configuration(name, Some("$LATEST.PUBLISHED")).await?;
            if v["State"] == "Active" {
                return Ok(t0.elapsed());
            }
            if v["State"] == "Failed" {
                bail!("{name} failed to publish: {v}");
            }
            if t0.elapsed() > timeout {
                bail!("{name} not Active after {timeout:?}: {v}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn scale(&self, name: &str, min: u32, max: u32) -> anyhow::Result<()> {
        self.ok(
            "PUT",
            &format!("/2025-11-30/functions/{name}/function-scaling-config"),
            "Qualifier=%24LATEST.PUBLISHED",
            Some(json!({"FunctionScalingConfig": {
                "MinExecutionEnvironments": min, "MaxExecutionEnvironments": max}})),
        )
        .await?;
        Ok(())
    }

    pub async fn status(&self) -> anyhow::Result<Value> {
        self.ok("GET", "/fleetfn/v1/status", "", None).await
    }

    /// Environments of `name` by state.
    pub async fn env_states(&self, name: &str) -> anyhow::Result<(usize, usize)> {
        let s = self.status().await?;
        let mut ready = 0;
        let mut total = 0;
        for f in s["Functions"].as_array().into_iter().flatten() {
            if f["FunctionName"] == name {
                for e in f["Environments"].as_array().into_iter().flatten() {
                    total += 1;
                    if e["State"] == "Ready" {
                        ready += 1;
                    }
                }
            }
        }
        Ok((ready, total))
    }

    /// Waits until `name` has exactly `n` environments, all Ready.
    pub async fn wait_envs(&self, name: &str, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let t0 = Instant::now();
        loop {
            let (ready, total) = self.env_states(name).await?;
            if ready == n && total == n {
                return Ok(());
            }
            if t0.elapsed() > timeout {
                bail!("{name}: {ready} Ready of {total} environments, wanted {n}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A request factory for `POST .../invocations` of `name` with `payload`, signed (once a
    /// second: see below).
    pub fn invoke_request(&self, name: &str, payload: &str) -> MakeRequest {
        let uri: http::Uri = format!(
            "http://{}/2015-03-31/functions/{name}/invocations?Qualifier=%24LATEST.PUBLISHED",
            self.addr
        )
        .parse()
        .expect("invoke uri");
        let payload = Bytes::from(payload.to_owned());
        // The signed headers of the current second. Every request of that second would carry
        // the same signature (same method, path, headers, payload and `X-Amz-Date` second), so
        // it is computed once: the load generator shares the host's CPU with the server it
        // measures, and the server still verifies each request in full.
        let signed: std::sync::Mutex<Option<(i64, http::HeaderMap)>> = std::sync::Mutex::new(None);
        Arc::new(move || {
            let mut req = http::Request::builder()
                .method("POST")
                .uri(uri.clone())
                .header("content-type", "application/json")
                .body(payload.clone())
                .expect("request");
            let second = jiff::Timestamp::now().as_second();
            let mut cached = signed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match cached.as_ref() {
                Some((at, headers)) if *at == second => *req.headers_mut() = headers.clone(),
                _ => {
                    sign_at(
                        &mut req,
                        jiff::Timestamp::from_second(second).unwrap_or_default(),
                    );
                    *cached = Some((second, req.headers().clone()));
                }
            }
            drop(cached);
            let (parts, body) = req.into_parts();
            http::Request::from_parts(parts, Full::new(body))
        })
    }
}

impl Api {
    /// A request factory for asynchronous invokes (`X-Amz-Invocation-Type: Event`) of `name`
    /// (unqualified, like the SDKs' default) with `payload`, signed per request.
    pub fn event_request(&self, name: &str, payload: &str) -> MakeRequest {
        let uri = format!(
            "http://{}/2015-03-31/functions/{name}/invocations",
            self.addr
        );
        let payload = Bytes::from(payload.to_owned());
        Arc::new(move || event_invoke(&uri, payload.clone()))
    }

    /// The URI of `name`'s unqualified Invoke.
    pub fn invocations_uri(&self, name: &str) -> String {
        format!(
            "http://{}/2015-03-31/functions/{name}/invocations",
            self.addr
        )
    }

    /// A GET of `path` returning the status and the body as text (logs, metrics).
    pub async fn text(&self, addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
        let mut req = http::Request::builder()
            .method("GET")
            .uri(format!("http://{addr}{path}"))
            .body(Bytes::new())?;
        if addr == self.addr {
            sign(&mut req);
        }
        let (parts, body) = req.into_parts();
        let resp = tokio::time::timeout(
            Duration::from_secs(60),
            self.client
                .request(http::Request::from_parts(parts, Full::new(body))),
        )
        .await
        .context("GET timed out")??;
        let status = resp.status().as_u16();
        let b = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&b).into_owned()))
    }
}

/// A signed asynchronous invoke (`X-Amz-Invocation-Type: Event`) of `payload` to `uri`.
pub fn event_invoke(uri: &str, payload: Bytes) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .header("x-amz-invocation-type", "Event")
        .body(payload)
        .expect("request");
    sign(&mut req);
    let (parts, body) = req.into_parts();
    http::Request::from_parts(parts, Full::new(body))
}

/// An unsigned POST of `payload` to `url` (the floor and the peers).
pub fn plain_request(url: &str, payload: &str) -> MakeRequest {
    let uri: http::Uri = url.parse().expect("uri");
    let payload = Bytes::from(payload.to_owned());
    Arc::new(move || {
        http::Request::builder()
            .method("POST")
            .uri(uri.clone())
            .header("content-type", "application/json")
            .body(Full::new(payload.clone()))
            .expect("request")
    })
}
