//! `fleetfn-hotpath`: the whole invoke path inside one process (but for the function), for
//! instruction counting under `valgrind --tool=callgrind` (scripts/bench-hotpath, run by
//! scripts/test).
//!
//! Server side: the real API (`fleetfn_api::router`: request id, SigV4 verification, body limit,
//! Invoke parsing, qualifier resolution from the control plane's cache) over a real SQLite store,
//! and an [`Invoker`] that sends each invoke with the real [`AgentClient`] over a Unix socket,
//! as `fleetfn serve` calls its agents. Agent side, in the same process: the real agent API
//! (`fleetfn_agent::Agent`: authentication, admission, the environment's Runtime API endpoint,
//! platform log records on the log writer thread) running one environment of the real
//! `fleetfn-testfn` (`lambda_runtime`, `run_concurrent`, four workers) as a child process
//! (its `bootstrap` execs the binary built next to this one),
//! which valgrind does not follow: the function is not counted, fleetfn's own work is. Left
//! out: the data plane's choice of environment (a least-in-flight pick in the routing table).
//!
//! `fleetfn-hotpath N` sets up, runs 50 warm-up invokes, then N measured invokes on a
//! current-thread runtime and exits. The guard runs it with two values of N and divides the
//! difference of the instruction counts by the difference of N, so set-up cost cancels out.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use axum::body::Body;
use bytes::Bytes;
use fleetfn_api::{AppState, Credentials};
use fleetfn_contracts::{CostDocument, InvokeOutcome, InvokeRequest, Invoker};
use fleetfn_model::types::FunctionConfiguration;
use fleetfn_model::{LambdaError, Scope};
use fleetfn_proto::{AgentClient, EnvState, EnvironmentRequest, InvokeReply};
use fleetfn_server::{ControlPlane, ControlPlaneConfig, VersionTransition};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

const KEY: &str = "AKIDHOTPATHHOTPATH00";
const SECRET: &str = "hotpathsecrethotpathsecrethotpath0000000";
const AGENT_TOKEN: &str = "hotpath-agent-token";
const ENV_ID: &str = "env-hot";

/// Sends every invoke to the one environment of the in-process agent.
struct AgentInvoker {
    client: AgentClient,
    /// Invokes the environment refused (no worker parked on `/next` yet), retried.
    rejected: AtomicU64,
}

impl Invoker for AgentInvoker {
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = fleetfn_model::Result<InvokeOutcome>> + Send + '_>> {
        Box::pin(async move {
            for _ in 0..1000 {
                let reply = self
                    .client
                    .invoke(
                        Duration::from_secs(30),
                        ENV_ID,
                        &req.request_id,
                        req.payload.clone(),
                        None,
                        None,
                    )
                    .await
                    .map_err(|e| LambdaError::service(e.to_string()))?;
                match reply {
                    InvokeReply::Done {
                        payload,
                        function_error,
                    } => {
                        return Ok(InvokeOutcome {
                            payload,
                            function_error,
                        });
                    }
                    InvokeReply::Rejected { .. } => {
                        self.rejected.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    other => return Err(LambdaError::service(format!("agent: {other:?}"))),
                }
            }
            Err(LambdaError::service("the environment refused 1000 times"))
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

/// The function's package: a `bootstrap` that runs `fleetfn-testfn` (built next to this
/// binary) from where it is; the environment is a plain child process, so the path is its own.
fn testfn_zip() -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let exe = std::env::current_exe()?.with_file_name("fleetfn-testfn");
    anyhow::ensure!(
        exe.is_file(),
        "{} is missing (cargo build --release -p fleetfn-testfn)",
        exe.display()
    );
    anyhow::ensure!(
        !exe.to_string_lossy().contains('\''),
        "{} cannot be quoted for /bin/sh",
        exe.display()
    );
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(
        "bootstrap",
        zip::write::SimpleFileOptions::default().unix_permissions(0o755),
    )?;
    write!(w, "#!/bin/sh\nexec '{}'\n", exe.display())?;
    Ok(w.finish()?.into_inner())
}

/// An agent in this process, serving its API on a Unix socket in `dir`, with one Ready
/// environment of `fleetfn-testfn` (max concurrency 4).
async fn start_agent(dir: &std::path::Path) -> anyhow::Result<(fleetfn_agent::Agent, AgentClient)> {
    let store = fleetfn_artifacts::ArtifactStore::open(dir.join("agent-artifacts"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let digest = store
        .put(&testfn_zip()?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let provider = fleetfn_agent::RuntimeProvider::detect(
        fleetfn_agent::RuntimeProviderConfig::new(dir.join("rt"), dir.join("envs")),
    );
    let agent = fleetfn_agent::Agent::new(
        fleetfn_agent::AgentConfig {
            instance_id: "i-hotpath".into(),
            zone: "subnet-a".into(),
            token: AGENT_TOKEN.into(),
            artifacts_dir: dir.join("agent-artifacts"),
            logs_dir: dir.join("logs"),
            log_limits: fleetfn_agent::LogLimits::default(),
            isolation: "none (plain child processes)".into(),
            instance: fleetfn_agent::InstanceShape {
                instance_type: "local".into(),
                vcpus: 2,
                memory_mib: 8192,
                cpu_scale: 1.0,
            },
            instance_slice: None,
        },
        provider,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let socket = dir.join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&socket)?;
    let router = agent.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = AgentClient::new_unix("127.0.0.1:0".parse()?, &socket, AGENT_TOKEN);
    let req = EnvironmentRequest {
        function_name: "hot".into(),
        version: "1".into(),
        qualified_arn: "arn:aws:lambda:us-east-1:000000000000:function:hot:1".into(),
        runtime: "provided.al2023".into(),
        handler: None,
        code_sha256_hex: digest.hex(),
        code_size: digest.size(),
        memory_mb: 2048,
        timeout_secs: 30,
        max_concurrency: 4,
        vcpus: 1.0,
        ephemeral_storage_mb: 512,
        region: "us-east-1".into(),
        env_vars: Default::default(),
        placement: None,
        credentials: None,
        layers: Vec::new(),
    };
    client.put_environment(ENV_ID, &req).await?;
    let mut after = None;
    for _ in 0..600 {
        let report = client.report(after, Duration::from_secs(5)).await?;
        if let Some(e) = report.environments.iter().find(|e| e.env_id == ENV_ID) {
            match e.state {
                EnvState::Ready => return Ok((agent, client)),
                EnvState::Failed | EnvState::Exited => bail!("the environment ended: {e:?}"),
                _ => {}
            }
        }
        after = Some(report.revision);
    }
    bail!("the environment never became Ready")
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

async fn call(app: &fleetfn_api::Api, req: http::Request<Body>) -> anyhow::Result<(u16, Bytes)> {
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
    let (agent, client) = start_agent(dir.path()).await?;
    let invoker = Arc::new(AgentInvoker {
        client,
        rejected: AtomicU64::new(0),
    });
    let app = fleetfn_api::router(AppState {
        events: None,
        cp: cp.clone(),
        credentials: Arc::new(Credentials {
            access_key_id: KEY.into(),
            secret_access_key: SECRET.into(),
        }),
        invoker: Some(invoker.clone()),
        logs: None,
        uploads: Default::default(),
        console: Default::default(),
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
    println!(
        "{n} invokes ok ({} refused by the environment and retried)",
        invoker.rejected.load(Ordering::Relaxed)
    );
    agent.stop_all(Duration::from_secs(2)).await;
    Ok(())
}

async fn tracing_free_sleep() {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}
