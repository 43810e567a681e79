//! The SQS endpoints of the asynchronous-invocation and event-source-mapping scenarios, on free
//! loopback ports: moto's server (`moto_server`, PyPI moto[server]) and this binary's
//! `sqs-server` stand-in (crate::sqs_server); and a small SQS client for them: SigV4-signed
//! JSON 1.0 (`X-Amz-Target: AmazonSQS.{Op}`), the protocol of current SDKs, over the load
//! generator's hyper client. Only the calls the scenarios need.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::fleet::{Guarded, REGION, free_port};
use crate::load::HttpClient;

/// Keys the bench signs its own SQS calls with, and the ones `fleetfn serve` is given for its
/// calls (moto accepts any).
pub const BENCH_KEYS: (&str, &str) = ("AKIDBENCHSQSCLIENT00", "bench-sqs-secret");
pub const SERVER_KEYS: (&str, &str) = ("AKIDFLEETFNSERVER000", "fleetfn-server-secret");

/// Where `moto_server` is: on `PATH`, or in the test virtualenv (`FLEETFN_TEST_VENV`, default
/// `~/.cache/fleetfn-venv`). `Err` says where it was looked for.
pub fn find_moto() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let venv = std::env::var_os("FLEETFN_TEST_VENV")
        .map_or_else(|| home.join(".cache/fleetfn-venv"), PathBuf::from);
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("moto_server"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(venv.join("bin/moto_server"));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        format!(
            "moto_server not found on PATH nor in {}/bin (pip install 'moto[server]' into that virtualenv)",
            venv.display()
        )
    })
}

/// An SQS endpoint on loopback, stopped when dropped: `moto_server`, or this binary's
/// `sqs-server` (crate::sqs_server).
pub struct Endpoint {
    pub proc_: Guarded,
    pub addr: SocketAddr,
    /// `moto` or `bench-sqs-server`.
    pub kind: &'static str,
    _dir: tempfile::TempDir,
}

impl Endpoint {
    /// `moto_server` (`exe`) on a free port.
    pub async fn moto(exe: &std::path::Path) -> anyhow::Result<Endpoint> {
        Self::start(exe, &["-H", "127.0.0.1", "-p"], "moto").await
    }

    /// This binary's `sqs-server` on a free port.
    pub async fn standin() -> anyhow::Result<Endpoint> {
        let me = std::env::current_exe()?;
        Self::start(
            &me,
            &["sqs-server", "--listen", "127.0.0.1"],
            "bench-sqs-server",
        )
        .await
    }

    /// `exe args… PORT` (the port is appended; `sqs-server` takes `--listen 127.0.0.1` + `:PORT`).
    async fn start(
        exe: &std::path::Path,
        args: &[&str],
        kind: &'static str,
    ) -> anyhow::Result<Endpoint> {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = tempfile::Builder::new()
            .prefix("fleetfn-bench-sqs-")
            .tempdir()?;
        // FLEETFN_BENCH_SERVE_LOG_DIR keeps the endpoint's log too.
        let log_path = std::env::var_os("FLEETFN_BENCH_SERVE_LOG_DIR").map_or_else(
            || dir.path().join("sqs.log"),
            |d| PathBuf::from(d).join(format!("{kind}-{port}.log")),
        );
        let log = std::fs::File::create(log_path)?;
        let mut argv: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        if kind == "moto" {
            argv.push(port.to_string());
        } else if let Some(last) = argv.last_mut() {
            last.push_str(&format!(":{port}"));
        }
        let child = Command::new(exe)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut proc_ = Guarded {
            child,
            grace: Duration::from_secs(10),
        };
        let sqs = Sqs::new(addr);
        let t0 = Instant::now();
        loop {
            // An answer to ListQueues means it is up.
            if sqs.call("ListQueues", &json!({})).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = proc_.child.try_wait() {
                bail!("{kind} exited at start: {status}");
            }
            if t0.elapsed() > Duration::from_secs(30) {
                proc_.stop();
                bail!("{kind} did not answer on {addr} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Endpoint {
            proc_,
            addr,
            kind,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.proc_.pid()
    }
}

/// An SQS client for an endpoint on loopback.
#[derive(Clone)]
pub struct Sqs {
    addr: SocketAddr,
    client: HttpClient,
}

impl Sqs {
    pub fn new(addr: SocketAddr) -> Sqs {
        assert!(addr.ip().is_loopback(), "loopback only");
        Sqs {
            addr,
            client: crate::load::client(64),
        }
    }

    /// `AmazonSQS.{op}` with `doc`; the answer, or the error moto gave.
    pub async fn call(&self, op: &str, doc: &Value) -> anyhow::Result<Value> {
        let body = Bytes::from(doc.to_string());
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/", self.addr))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("AmazonSQS.{op}"))
            .body(body)?;
        fleetfn_sigv4::sign_http_request(
            &mut req,
            &fleetfn_sigv4::SigningParams {
                access_key_id: BENCH_KEYS.0,
                secret_access_key: BENCH_KEYS.1,
                session_token: None,
                region: REGION,
                service: "sqs",
                time: jiff::Timestamp::now(),
            },
        )
        .map_err(|e| anyhow::anyhow!("signing {op}: {e:?}"))?;
        let (parts, body) = req.into_parts();
        let resp = tokio::time::timeout(
            Duration::from_secs(60),
            self.client
                .request(http::Request::from_parts(parts, Full::new(body))),
        )
        .await
        .with_context(|| format!("SQS {op} timed out"))??;
        let status = resp.status();
        let b = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("SQS {op}: HTTP {status}: {}", String::from_utf8_lossy(&b));
        }
        if b.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&b).with_context(|| format!("SQS {op} answer"))
    }

    /// A new queue: (url, arn).
    pub async fn create_queue(
        &self,
        name: &str,
        attributes: &Value,
    ) -> anyhow::Result<(String, String)> {
        let v = self
            .call(
                "CreateQueue",
                &json!({"QueueName": name, "Attributes": attributes}),
            )
            .await?;
        let url = v["QueueUrl"]
            .as_str()
            .context("CreateQueue: no QueueUrl")?
            .to_owned();
        let a = self.attributes(&url, &["QueueArn"]).await?;
        let arn = a["QueueArn"]
            .as_str()
            .context("GetQueueAttributes: no QueueArn")?
            .to_owned();
        Ok((url, arn))
    }

    pub async fn delete_queue(&self, url: &str) -> anyhow::Result<()> {
        self.call("DeleteQueue", &json!({"QueueUrl": url}))
            .await
            .map(drop)
    }

    pub async fn attributes(&self, url: &str, names: &[&str]) -> anyhow::Result<Value> {
        let v = self
            .call(
                "GetQueueAttributes",
                &json!({"QueueUrl": url, "AttributeNames": names}),
            )
            .await?;
        Ok(v["Attributes"].clone())
    }

    /// Messages in the queue, visible and in flight (received, not yet deleted).
    pub async fn count(&self, url: &str) -> anyhow::Result<(u64, u64)> {
        let a = self
            .attributes(
                url,
                &[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
            .await?;
        let n = |k: &str| {
            a[k].as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or_else(|| a[k].as_u64())
                .unwrap_or(0)
        };
        Ok((
            n("ApproximateNumberOfMessages"),
            n("ApproximateNumberOfMessagesNotVisible"),
        ))
    }

    /// Sends up to 10 bodies in one `SendMessageBatch`.
    pub async fn send_batch(&self, url: &str, bodies: &[String]) -> anyhow::Result<()> {
        let entries: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| json!({"Id": i.to_string(), "MessageBody": b}))
            .collect();
        let v = self
            .call(
                "SendMessageBatch",
                &json!({"QueueUrl": url, "Entries": entries}),
            )
            .await?;
        if v["Failed"].as_array().is_some_and(|f| !f.is_empty()) {
            bail!("SendMessageBatch: {}", v["Failed"]);
        }
        Ok(())
    }

    /// Up to `max` (≤ 10) messages, long-polling up to `wait_secs`.
    pub async fn receive(&self, url: &str, max: u8, wait_secs: u8) -> anyhow::Result<Vec<Value>> {
        let v = self
            .call(
                "ReceiveMessage",
                &json!({"QueueUrl": url, "MaxNumberOfMessages": max, "WaitTimeSeconds": wait_secs}),
            )
            .await?;
        Ok(v["Messages"].as_array().cloned().unwrap_or_default())
    }

    /// Deletes received messages (≤ 10) in one `DeleteMessageBatch`.
    pub async fn delete_batch(&self, url: &str, msgs: &[Value]) -> anyhow::Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let entries: Vec<Value> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| json!({"Id": i.to_string(), "ReceiptHandle": m["ReceiptHandle"]}))
            .collect();
        let v = self
            .call(
                "DeleteMessageBatch",
                &json!({"QueueUrl": url, "Entries": entries}),
            )
            .await?;
        if v["Failed"].as_array().is_some_and(|f| !f.is_empty()) {
            bail!("DeleteMessageBatch: {}", v["Failed"]);
        }
        Ok(())
    }
}
