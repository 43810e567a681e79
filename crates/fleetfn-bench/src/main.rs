//! `fleetfn-bench`: a small closed-loop load generator for the Invoke API, signing every request
//! with SigV4 like an SDK does. Loopback only; every run is bounded by a request count and a
//! deadline. Prints latency percentiles, throughput and the status codes seen, as JSON.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Parser)]
struct Args {
    /// fleetfn API address (loopback).
    #[arg(long, default_value = "127.0.0.1:9600")]
    endpoint: std::net::SocketAddr,
    #[arg(long)]
    function: String,
    #[arg(long)]
    qualifier: Option<String>,
    #[arg(long, default_value = "{}")]
    payload: String,
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Total requests (after warm-up).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Hard stop.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key_id: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY")]
    secret_access_key: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
}

struct Target {
    args: Args,
    client: Client<HttpConnector, Full<Bytes>>,
    path: String,
    query: String,
}

impl Target {
    async fn one(&self) -> anyhow::Result<u16> {
        let body = Bytes::from(self.args.payload.clone());
        let uri = if self.query.is_empty() {
            format!("http://{}{}", self.args.endpoint, self.path)
        } else {
            format!("http://{}{}?{}", self.args.endpoint, self.path, self.query)
        };
        let mut req = http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.clone())?;
        fleetfn_sigv4::sign_http_request(
            &mut req,
            &fleetfn_sigv4::SigningParams {
                access_key_id: &self.args.access_key_id,
                secret_access_key: &self.args.secret_access_key,
                session_token: None,
                region: &self.args.region,
                service: "lambda",
                time: jiff::Timestamp::now(),
            },
        )?;
        let (parts, body) = req.into_parts();
        let resp = self
            .client
            .request(http::Request::from_parts(parts, Full::new(body)))
            .await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.endpoint.ip().is_loopback(),
        "fleetfn-bench only targets loopback addresses"
    );
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector);
    let path = format!("/2015-03-31/functions/{}/invocations", args.function);
    let query = args
        .qualifier
        .as_ref()
        .map(|q| format!("Qualifier={}", q.replace('$', "%24")))
        .unwrap_or_default();
    let target = Arc::new(Target {
        args,
        client,
        path,
        query,
    });
    for _ in 0..target.args.warmup {
        // A throttle is a fine warm-up answer (overload runs start saturated).
        target.one().await.context("warm-up invoke")?;
    }
    let deadline = Instant::now() + Duration::from_secs(target.args.max_seconds);
    let per_client = target.args.requests.div_ceil(target.args.concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..target.args.concurrency {
        let t = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            let mut codes = std::collections::BTreeMap::<u16, usize>::new();
            let mut by_code = std::collections::BTreeMap::<u16, Vec<Duration>>::new();
            for _ in 0..per_client {
                if Instant::now() > deadline {
                    break;
                }
                let s = Instant::now();
                let code = t.one().await.unwrap_or(0);
                let d = s.elapsed();
                lat.push(d);
                by_code.entry(code).or_default().push(d);
                *codes.entry(code).or_default() += 1;
            }
            (lat, codes, by_code)
        }));
    }
    let mut all = Vec::new();
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    let mut by_code = std::collections::BTreeMap::<u16, Vec<Duration>>::new();
    for t in tasks {
        let (l, c, b) = t.await?;
        all.extend(l);
        for (k, v) in c {
            *codes.entry(k).or_default() += v;
        }
        for (k, v) in b {
            by_code.entry(k).or_default().extend(v);
        }
    }
    // Latency per status code (e.g. accepted 200s vs throttled 429s under overload).
    let per_status: serde_json::Map<String, serde_json::Value> = by_code
        .into_iter()
        .map(|(code, mut l)| {
            l.sort();
            (
                code.to_string(),
                serde_json::json!({
                    "count": l.len(),
                    "p50_us": pct(&l, 0.50),
                    "p99_us": pct(&l, 0.99),
                    "p999_us": pct(&l, 0.999),
                }),
            )
        })
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    #[allow(clippy::cast_precision_loss)]
    let rps = all.len() as f64 / elapsed;
    let out = serde_json::json!({
        "concurrency": target.args.concurrency,
        "requests": all.len(),
        "seconds": elapsed,
        "throughput_rps": rps,
        "p50_us": pct(&all, 0.50),
        "p99_us": pct(&all, 0.99),
        "p999_us": pct(&all, 0.999),
        "status_codes": codes,
        "latency_by_status": per_status,
    });
    println!("{out}");
    Ok(())
}
