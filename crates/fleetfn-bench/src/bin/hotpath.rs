//! `fleetfn-hotpath`: the invoke hot path inside one process, for instruction counting under
//! `valgrind --tool=callgrind` (scripts/bench-hotpath, run by scripts/test).
//!
//! It builds the real API (`fleetfn_api::router`: request id, SigV4 verification, body limit,
//! Invoke parsing, qualifier resolution from the control plane's cache) over a real SQLite store,
//! and an [`Invoker`] that hands each invoke to a real Runtime API endpoint
//! (`fleetfn_runtime_api`, on loopback) served by an in-process fake runtime worker doing
//! `GET /next` and `POST /response` over HTTP/1.1. The only parts of a production invoke left
//! out are the router's environment choice and the server→agent hop.
//!
//! `fleetfn-hotpath N` sets up, runs 50 warm-up invokes, then N measured invokes on a
//! current-thread runtime and exits. The guard runs it with two values of N and divides the
//! difference of the instruction counts by the difference of N, so set-up cost cancels out.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::body::Body;
use bytes::Bytes;
use fleetfn_api::{AppState, Credentials};
use fleetfn_contracts::{CostDocument, InvokeOutcome, InvokeRequest, Invoker};
use fleetfn_model::types::FunctionConfiguration;
use fleetfn_model::{LambdaError, Scope};
use fleetfn_runtime_api::{Invocation, Outcome, RuntimeApi, RuntimeApiConfig};
use fleetfn_server::{ControlPlane, ControlPlaneConfig, VersionTransition};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tower::ServiceExt;

const KEY: &str = "AKIDHOTPATHHOTPATH00";
const SECRET: &str = "hotpathsecrethotpathsecrethotpath0000000";

struct FakeInvoker {
    rt: Arc<RuntimeApi>,
}

impl Invoker for FakeInvoker {
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = fleetfn_model::Result<InvokeOutcome>> + Send + '_>> {
        Box::pin(async move {
            self.rt.wait_parked(|n| n > 0).await;
            let ticket = self
                .rt
                .try_dispatch(Invocation {
                    request_id: req.request_id,
                    payload: req.payload,
                    deadline_ms: 4_102_444_800_000,
                    invoked_function_arn: req.version.config.function_arn.clone(),
                    trace_id: None,
                    client_context: None,
                    cognito_identity: None,
                    tenant_id: None,
                })
                .map_err(|e| LambdaError::service(e.to_string()))?;
            match ticket.await {
                Outcome::Response(payload) => Ok(InvokeOutcome {
                    payload,
                    function_error: None,
                }),
                Outcome::FunctionError { error_type, body } => Ok(InvokeOutcome {
                    payload: body,
                    function_error: Some(error_type),
                }),
            }
        })
    }

    fn cost(
        &self,
        _since: jiff::Timestamp,
    ) -> Pin<Box<dyn Future<Output = fleetfn_model::Result<CostDocument>> + Send + '_>> {
        Box::pin(async {
            Err(LambdaError::service(
                "The hot-path bench meters no usage, so it has no cost report.",
            ))
        })
    }
}

/// The fake runtime: one worker looping `/next` → `/response` on one keep-alive connection.
async fn worker(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    loop {
        let next = http::Request::get(format!("http://{addr}/2018-06-01/runtime/invocation/next"))
            .body(Full::new(Bytes::new()))?;
        let resp = send.send_request(next).await?;
        let id = resp
            .headers()
            .get("lambda-runtime-aws-request-id")
            .context("request id")?
            .to_str()?
            .to_owned();
        let _event = resp.into_body().collect().await?.to_bytes();
        let post = http::Request::post(format!(
            "http://{addr}/2018-06-01/runtime/invocation/{id}/response"
        ))
        .body(Full::new(Bytes::from_static(b"{}")))?;
        let resp = send.send_request(post).await?;
        let _ = resp.into_body().collect().await?;
    }
}

fn signed(method: &str, path: &str, body: serde_json::Value) -> http::Request<Body> {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:9600{path}"))
        .header("content-type", "application/json")
        .body(bytes)
        .expect("request");
    fleetfn_sigv4::sign_http_request(
        &mut req,
        &fleetfn_sigv4::SigningParams {
            access_key_id: KEY,
            secret_access_key: SECRET,
            session_token: None,
            region: "us-east-1",
            service: "lambda",
            time: jiff::Timestamp::now(),
        },
    )
    .expect("signing");
    let (parts, b) = req.into_parts();
    http::Request::from_parts(parts, Body::from(b))
}

async fn call(app: &axum::Router, req: http::Request<Body>) -> anyhow::Result<(u16, Bytes)> {
    let resp = app.clone().oneshot(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn bootstrap_zip() -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(
        "bootstrap",
        zip::write::SimpleFileOptions::default().unix_permissions(0o755),
    )?;
    w.write_all(b"#!/bin/sh\nexit 0\n")?;
    Ok(w.finish()?.into_inner())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    use base64::Engine;
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let store = fleetfn_store::SqliteStore::open(&dir.path().join("state.db"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cp = ControlPlane::new(
        Arc::new(store),
        ControlPlaneConfig {
            scope: Scope {
                region: "us-east-1".into(),
                account: "000000000000".into(),
            },
            artifacts_dir: dir.path().join("artifacts"),
            env_key: fleetfn_server::EnvKey::generate(),
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let reconciler = cp.spawn_reconciler(stop.clone());
    let rt = Arc::new(RuntimeApi::bind(
        "127.0.0.1:0".parse()?,
        RuntimeApiConfig::default(),
    )?);
    tokio::spawn(worker(rt.local_addr()));
    let app = fleetfn_api::router(AppState {
        cp: cp.clone(),
        credentials: Arc::new(Credentials {
            access_key_id: KEY.into(),
            secret_access_key: SECRET.into(),
        }),
        invoker: Some(Arc::new(FakeInvoker { rt: rt.clone() })),
        logs: None,
        uploads: Default::default(),
    });

    // Desired state: a capacity provider, a function, its $LATEST.PUBLISHED marked Active.
    let (s, b) = call(
        &app,
        signed(
            "POST",
            "/2025-11-30/capacity-providers",
            json!({"CapacityProviderName": "hot",
                   "VpcConfig": {"SubnetIds": ["subnet-a"], "SecurityGroupIds": []},
                   "PermissionsConfig": {"CapacityProviderOperatorRoleArn": "arn:aws:iam::000000000000:role/op"}}),
        ),
    )
    .await?;
    anyhow::ensure!(s < 300, "create capacity provider: {s} {b:?}");
    let zip = base64::engine::general_purpose::STANDARD.encode(bootstrap_zip()?);
    let create = json!({"FunctionName": "hot", "Runtime": "provided.al2023", "Handler": "bootstrap",
        "Role": "arn:aws:iam::000000000000:role/fn", "Code": {"ZipFile": zip}, "MemorySize": 2048,
        "CapacityProviderConfig": {"LambdaManagedInstancesCapacityProviderConfig": {
            "CapacityProviderArn": "arn:aws:lambda:us-east-1:000000000000:capacity-provider:hot",
            "PerExecutionEnvironmentMaxConcurrency": 1}}});
    let mut created = false;
    for _ in 0..200 {
        let (s, b) = call(
            &app,
            signed("POST", "/2015-03-31/functions", create.clone()),
        )
        .await?;
        if s < 300 {
            created = true;
            break;
        }
        // The provider may still be activating.
        tracing_free_sleep().await;
        let _ = b;
    }
    anyhow::ensure!(created, "could not create the function");
    let mut published = false;
    for _ in 0..200 {
        let (s, _) = call(
            &app,
            signed(
                "POST",
                "/2015-03-31/functions/hot/versions",
                json!({"PublishTo": "LATEST_PUBLISHED"}),
            ),
        )
        .await?;
        if s < 300 {
            published = true;
            break;
        }
        tracing_free_sleep().await;
    }
    anyhow::ensure!(published, "could not publish");
    let mut active = false;
    for _ in 0..200 {
        for v in cp
            .deployable_versions()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            cp.transition_version(
                &v.function,
                &v.version,
                &v.publish_hash,
                &VersionTransition::Active,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let (s, b) = call(
            &app,
            signed(
                "GET",
                "/2015-03-31/functions/hot/configuration?Qualifier=%24LATEST.PUBLISHED",
                serde_json::Value::Null,
            ),
        )
        .await?;
        if s == 200
            && serde_json::from_slice::<FunctionConfiguration>(&b)?.state
                == fleetfn_model::State::Active
        {
            active = true;
            break;
        }
        tracing_free_sleep().await;
    }
    anyhow::ensure!(active, "version never Active");
    // Nothing but invokes from here on: no background store traffic while counting.
    stop.cancel();
    let _ = reconciler.await;

    // One request signed once and replayed (SigV4 has no replay check), so the client's own
    // signing is not counted: only the server side of the invoke is.
    let path = "/2015-03-31/functions/hot/invocations?Qualifier=%24LATEST.PUBLISHED";
    let (template, body) = signed("POST", path, json!({"op": "noop"})).into_parts();
    let body = body.collect().await?.to_bytes();
    for i in 0..(50 + n) {
        let mut req = http::Request::new(Body::from(body.clone()));
        *req.method_mut() = template.method.clone();
        *req.uri_mut() = template.uri.clone();
        *req.headers_mut() = template.headers.clone();
        let (s, b) = call(&app, req).await?;
        if s != 200 || &b[..] != b"{}" {
            bail!("invoke {i}: HTTP {s} {}", String::from_utf8_lossy(&b));
        }
    }
    println!("{n} invokes ok");
    Ok(())
}

async fn tracing_free_sleep() {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}
