//! Shared helpers of the agent's integration tests: real runtimes, real processes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use fleetfn_agent::{
    EnvironmentSpec, InvokeInput, InvokeOutput, RuntimeProvider, RuntimeProviderConfig,
};
use serde_json::Value;

/// Safety net only: every wait is woken by an event; this turns a hang into a failure.
pub const GUARD: Duration = Duration::from_secs(120);

pub async fn guarded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Builds binary `bin` of package `package` with the same cargo and target directory as the
/// tests, and returns its path.
fn cargo_binary(package: &str, bin: &str) -> PathBuf {
    let workspace = manifest_dir().join("../..");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json",
        ])
        .current_dir(&workspace)
        .output()
        .unwrap_or_else(|e| panic!("run cargo build -p {package}: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {bin} executable"))
}

/// The `fleetfn-testfn` fixture binary, built once per test process.
pub fn testfn_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_binary("fleetfn-testfn", "fleetfn-testfn"))
}

/// `fleetfn-sandbox-test-helper`, built once per test process: it runs the sandbox helper as
/// `jail --spec-file F` (what `fleetfn jail` does) and holds memory as `hold <MiB>`.
pub fn sandbox_helper_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_binary("fleetfn-sandbox", "fleetfn-sandbox-test-helper"))
}

/// Writes an executable file.
pub fn write_executable(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A code directory whose `bootstrap` is the fixture function.
pub fn testfn_code_dir(root: &Path) -> PathBuf {
    let code = root.join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::copy(testfn_binary(), code.join("bootstrap")).unwrap();
    std::fs::set_permissions(
        code.join("bootstrap"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    code
}

/// A provider with its own environment root under `root` and the given runtime root.
pub fn provider(root: &Path, runtime_root: &Path) -> RuntimeProvider {
    RuntimeProvider::detect(RuntimeProviderConfig::new(runtime_root, root.join("envs")))
}

/// Runtime support shared by every test run (so awslambdaric is installed once).
pub fn shared_runtime_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleetfn-agent-runtimes")
}

pub fn spec(env_id: &str, runtime: &str, code_dir: &Path, max_concurrency: u32) -> EnvironmentSpec {
    EnvironmentSpec {
        env_id: env_id.to_owned(),
        function_name: "testfn".to_owned(),
        version: "1".to_owned(),
        qualified_arn: "arn:aws:lambda:us-east-1:123456789012:function:testfn:1".to_owned(),
        runtime: runtime.to_owned(),
        handler: None,
        code_dir: code_dir.to_path_buf(),
        memory_mb: 2048,
        timeout_secs: 30,
        max_concurrency,
        vcpus: 1.0,
        cpu_scale: 1.0,
        ephemeral_storage_mb: 512,
        region: "us-east-1".to_owned(),
        env_vars: BTreeMap::new(),
        logs: None,
        init_timeout: None,
        credentials: None,
        opt_dir: None,
    }
}

pub fn input(id: &str, event: &Value) -> InvokeInput {
    InvokeInput {
        request_id: id.to_owned(),
        payload: Bytes::from(event.to_string()),
        client_context: None,
        tenant_id: None,
        trace_id: None,
    }
}

pub fn json_of(out: &InvokeOutput) -> Value {
    serde_json::from_slice(&out.payload)
        .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {:?}", out.payload))
}

/// The JSON records of a log file.
/// The records in a version's log directory (one environment's segments, in order).
pub fn log_records(dir: &Path) -> Vec<Value> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    segments.retain(|p| p.extension().is_some_and(|x| x == "jsonl"));
    segments.sort();
    segments
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}"))
                })
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// Logs of an environment in `dir` (its version's log directory), default limits.
pub fn log_target(dir: &Path) -> fleetfn_agent::LogTarget {
    fleetfn_agent::LogTarget {
        dir: dir.to_path_buf(),
        limits: fleetfn_agent::LogLimits::default(),
    }
}

/// The crate's directory: from the environment `cargo test` runs the binary with (so a test
/// binary built from another checkout still reads this one's files), else the build-time path.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}

/// Long-polls the agent's reports until `pred` holds for the environment `env_id` (bounded by
/// [`GUARD`], failing with `what`).
pub async fn wait_for_env(
    client: &fleetfn_proto::AgentClient,
    env_id: &str,
    what: &str,
    pred: impl Fn(&fleetfn_proto::EnvironmentStatus) -> bool,
) -> fleetfn_proto::EnvironmentStatus {
    guarded(what, async {
        let mut after = None;
        loop {
            let r = client.report(after, Duration::from_secs(10)).await.unwrap();
            if let Some(e) = r.environments.iter().find(|e| e.env_id == env_id)
                && pred(e)
            {
                return e.clone();
            }
            after = Some(r.revision);
        }
    })
    .await
}

/// Waits until the environment is Ready (or has failed or exited, which fails the test).
pub async fn wait_env_ready(client: &fleetfn_proto::AgentClient, env_id: &str) {
    use fleetfn_proto::EnvState;
    let e = wait_for_env(client, env_id, "ready or failed", |e| {
        matches!(
            e.state,
            EnvState::Ready | EnvState::Failed | EnvState::Exited
        )
    })
    .await;
    assert_eq!(e.state, EnvState::Ready, "{e:?}");
}

/// An agent on `provider` with its data under `root` (artifacts, logs in `root/logs`), served
/// on a free loopback port with the bearer token `token`: the agent, a client for it, and the
/// server task.
pub async fn serve_agent(
    root: &Path,
    isolation: String,
    provider: RuntimeProvider,
    token: &str,
) -> (
    fleetfn_agent::Agent,
    fleetfn_proto::AgentClient,
    tokio::task::JoinHandle<()>,
) {
    let agent = fleetfn_agent::Agent::new(
        fleetfn_agent::AgentConfig {
            instance_id: "i-test".into(),
            zone: "z1".into(),
            token: token.into(),
            artifacts_dir: root.join("artifacts"),
            logs_dir: root.join("logs"),
            log_limits: Default::default(),
            isolation,
            instance: fleetfn_agent::InstanceShape::local(),
            instance_slice: None,
        },
        provider,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = agent.router();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (agent, fleetfn_proto::AgentClient::new(addr, token), server)
}
