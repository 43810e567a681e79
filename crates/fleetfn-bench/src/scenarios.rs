//! The scenarios of docs/BENCHMARKS.md. Each one starts what it measures (a fresh `fleetfn
//! serve`, the floor's echo server, `cargo lambda watch`), drives it, stops it and returns JSON.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::fleet::{Api, Fleet, FunctionSpec, Guarded, free_port, plain_request, zip};
use crate::load::{self, MakeRequest, RunResult, round};
use crate::procs;

mod events;
mod urls;

pub const ALL: &[&str] = &[
    "floor",
    "invoke-rust",
    "cargo-lambda",
    "invoke-python-node",
    "multi-concurrency",
    "saturation",
    "startup",
    "scale-out",
    "control-plane",
    "memory",
    "async",
    "sqs-mapping",
    "function-url",
    "stream-first-byte",
];

pub struct Ctx {
    pub bin_dir: PathBuf,
    pub repo: PathBuf,
    pub loadgen: tokio::runtime::Handle,
    /// Seconds per load level (the suite default keeps the whole run under 10 minutes).
    pub level_secs: u64,
}

pub async fn run(ctx: &Ctx, name: &str) -> anyhow::Result<Value> {
    match name {
        "floor" => floor(ctx).await,
        "invoke-rust" => invoke_rust(ctx).await,
        "cargo-lambda" => cargo_lambda(ctx).await,
        "invoke-python-node" => invoke_python_node(ctx).await,
        "multi-concurrency" => multi_concurrency(ctx).await,
        "saturation" => saturation(ctx).await,
        "startup" => startup(ctx).await,
        "scale-out" => scale_out(ctx).await,
        "control-plane" => control_plane(ctx).await,
        "memory" => memory(ctx).await,
        "async" => events::async_invoke(ctx).await,
        "sqs-mapping" => events::sqs_mapping(ctx).await,
        "function-url" => urls::function_url(ctx).await,
        "stream-first-byte" => urls::stream_first_byte(ctx).await,
        other => bail!("unknown scenario {other:?}; known: {}", ALL.join(", ")),
    }
}

/// Runs `f` on the load generator's runtime, with CPU snapshots of the tree under `root` and of
/// this process around it.
async fn measured<F>(ctx: &Ctx, root: u32, f: F) -> (RunResult, BTreeMap<&'static str, f64>, f64)
where
    F: Future<Output = RunResult> + Send + 'static,
{
    let me = std::process::id();
    let before = procs::tree(root);
    let lg0 = procs::cpu_secs(me);
    let r = ctx.loadgen.spawn(f).await.expect("load generator task");
    let lg1 = procs::cpu_secs(me);
    let after = procs::tree(root);
    (r, procs::cpu_delta(root, &before, &after), lg1 - lg0)
}

fn with_cpu(r: &RunResult, cpu: &BTreeMap<&'static str, f64>, loadgen_cpu: f64) -> Value {
    let mut v = r.to_json();
    let n = r.count().max(1) as f64;
    let o = v.as_object_mut().expect("object");
    if let Value::Object(m) = procs::per_request_us(cpu, r.count()) {
        o.extend(m);
    }
    let fleetfn =
        cpu.get("server").copied().unwrap_or(0.0) + cpu.get("agent").copied().unwrap_or(0.0);
    o.insert(
        "fleetfn_cpu_us_per_req".into(),
        json!(round(fleetfn * 1e6 / n, 1)),
    );
    o.insert(
        "loadgen_cpu_us_per_req".into(),
        json!(round(loadgen_cpu * 1e6 / n, 1)),
    );
    v
}

async fn closed_level(ctx: &Ctx, root: u32, make: MakeRequest, c: usize, requests: usize) -> Value {
    let secs = ctx.level_secs;
    let (r, cpu, lg) = measured(ctx, root, async move {
        load::closed(make, c, requests, 200.max(c * 4), Duration::from_secs(secs)).await
    })
    .await;
    let v = with_cpu(&r, &cpu, lg);
    eprintln!(
        "    c={c}: {} req, p50 {} µs, p99 {} µs, {:.0} req/s, errors {}",
        r.count(),
        v["p50_us"],
        v["p99_us"],
        r.throughput(),
        r.errors()
    );
    v
}

fn self_exe() -> PathBuf {
    std::env::current_exe().expect("current exe")
}

async fn wait_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("nothing listening on 127.0.0.1:{port} after {timeout:?}")
}

// ---------------------------------------------------------------------------------------------
// 2. The floor: a bare hyper echo server, its own process.

async fn floor(ctx: &Ctx) -> anyhow::Result<Value> {
    let port = free_port();
    let child = Command::new(self_exe())
        .args(["echo-server", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .spawn()?;
    let g = Guarded {
        child,
        grace: Duration::from_secs(5),
    };
    wait_port(port, Duration::from_secs(10)).await?;
    let make = plain_request(&format!("http://127.0.0.1:{port}/echo"), "{}");
    let mut runs = serde_json::Map::new();
    for (c, n) in [(1, 20_000), (32, 100_000), (128, 100_000)] {
        runs.insert(
            format!("c{c}"),
            closed_level(ctx, g.pid(), make.clone(), c, n).await,
        );
    }
    // The echo server is all "server" CPU.
    Ok(
        json!({ "what": "bare hyper 1.x HTTP/1.1 echo server (multi-thread tokio), same load generator", "runs": runs }),
    )
}

/// The `echo-server` subcommand.
pub async fn echo_server(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    anyhow::ensure!(listen.ip().is_loopback(), "loopback only");
    let l = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let b = req.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>(hyper::Response::new(Full::new(b)))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Functions.

fn rust_zip(ctx: &Ctx) -> anyhow::Result<Arc<Vec<u8>>> {
    let bin = std::fs::read(ctx.bin_dir.join("fleetfn-testfn")).with_context(|| {
        format!(
            "reading {}/fleetfn-testfn (build it with --release)",
            ctx.bin_dir.display()
        )
    })?;
    Ok(Arc::new(zip(&[("bootstrap", &bin, 0o755)])?))
}

fn rust_fn(ctx: &Ctx, name: &str, max_concurrency: u32) -> anyhow::Result<FunctionSpec> {
    Ok(FunctionSpec {
        name: name.into(),
        runtime: "provided.al2023",
        handler: "bootstrap",
        zip: rust_zip(ctx)?,
        max_concurrency,
        memory: 2048,
        env: Vec::new(),
    })
}

fn python_fn(ctx: &Ctx, name: &str, max_concurrency: u32) -> anyhow::Result<FunctionSpec> {
    let src = std::fs::read(ctx.repo.join("tests/dataplane/functions/python/app.py"))?;
    Ok(FunctionSpec {
        name: name.into(),
        runtime: "python3.13",
        handler: "app.handler",
        zip: Arc::new(zip(&[("app.py", &src, 0o644)])?),
        max_concurrency,
        memory: 2048,
        env: Vec::new(),
    })
}

fn node_fn(ctx: &Ctx, name: &str, max_concurrency: u32) -> anyhow::Result<FunctionSpec> {
    let src = std::fs::read(ctx.repo.join("tests/dataplane/functions/node/index.mjs"))?;
    Ok(FunctionSpec {
        name: name.into(),
        runtime: "nodejs22.x",
        handler: "index.handler",
        zip: Arc::new(zip(&[("index.mjs", &src, 0o644)])?),
        max_concurrency,
        memory: 2048,
        env: Vec::new(),
    })
}

/// tests/dataplane's Java function (`example.Echo`, echoing its event), compiled with the host's
/// `javac` against fleetfn's Java runtime client, as a zip of classes.
fn java_fn(ctx: &Ctx, name: &str, max_concurrency: u32) -> anyhow::Result<FunctionSpec> {
    let out = tempfile::tempdir()?;
    let sources: Vec<PathBuf> =
        std::fs::read_dir(ctx.repo.join("tests/dataplane/functions/java/example"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "java"))
            .collect();
    let status = Command::new("javac")
        .args(["--release", "17", "-cp"])
        .arg(
            ctx.repo
                .join("crates/fleetfn-agent/runtimes/java/fleetfn-java-runtime.jar"),
        )
        .arg("-d")
        .arg(out.path())
        .args(&sources)
        .status()
        .context("running javac (Debian: openjdk-17-jdk-headless) for the Java function")?;
    anyhow::ensure!(status.success(), "javac failed: {status}");
    let dir = out.path().join("example");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        let name = format!(
            "example/{}",
            p.file_name().and_then(|n| n.to_str()).unwrap_or_default()
        );
        files.push((name, std::fs::read(&p)?));
    }
    files.sort();
    let entries: Vec<(&str, &[u8], u32)> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice(), 0o644))
        .collect();
    Ok(FunctionSpec {
        name: name.into(),
        runtime: "java21",
        handler: "example.Echo::handleRequest",
        zip: Arc::new(zip(&entries)?),
        max_concurrency,
        memory: 2048,
        env: Vec::new(),
    })
}

/// Creates, publishes and pins `f` to exactly `envs` Ready environments.
async fn deploy(fleet: &Fleet, cp: &str, f: &FunctionSpec, envs: u32) -> anyhow::Result<Duration> {
    fleet.api.create_function(cp, f).await?;
    let took = fleet.api.publish(&f.name, Duration::from_secs(120)).await?;
    fleet.api.scale(&f.name, envs, envs).await?;
    fleet
        .api
        .wait_envs(&f.name, envs as usize, Duration::from_secs(120))
        .await?;
    Ok(took)
}

/// The version's throttle counters by reason, from `/fleetfn/v1/status`.
async fn throttles(fleet: &Fleet, name: &str) -> Value {
    let Ok(s) = fleet.api.status().await else {
        return Value::Null;
    };
    s["Functions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["FunctionName"] == name)
        .map_or(Value::Null, |f| f["Throttles"].clone())
}

// ---------------------------------------------------------------------------------------------
// 1. Invoke, no-op Rust function.

async fn invoke_rust(ctx: &Ctx) -> anyhow::Result<Value> {
    let fleet = Fleet::start(&ctx.bin_dir).await?;
    let cp = fleet.capacity_provider().await?;
    let f = rust_fn(ctx, "noop-rust", 64)?;
    deploy(&fleet, &cp, &f, 3).await?;
    let make = fleet.api.invoke_request(&f.name, r#"{"op":"noop"}"#);
    let mut runs = serde_json::Map::new();
    for (c, n) in [(1, 20_000), (32, 100_000), (128, 100_000)] {
        runs.insert(
            format!("c{c}"),
            closed_level(ctx, fleet.pid(), make.clone(), c, n).await,
        );
    }
    Ok(json!({
        "throttles_by_reason": throttles(&fleet, &f.name).await,
        "what": "fleetfn-testfn (lambda_runtime 1.5 run_concurrent) op=noop through the Invoke API with SigV4; 3 environments × PerExecutionEnvironmentMaxConcurrency 64",
        "runs": runs,
    }))
}

// ---------------------------------------------------------------------------------------------
// 3. The peer: cargo lambda watch.

fn peer_dirs() -> (PathBuf, PathBuf) {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let base = home.join(".cache/fleetfn-bench");
    (base.join("peer-fn"), base.join("peer-target"))
}

/// The peer's manifest: fleetfn-testfn's dependencies (a test checks it names each of them).
const PEER_MANIFEST: &str = "[package]\nname = \"noop\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\nhttp = \"1\"\nlambda_runtime = { version = \"1.5\", features = [\"concurrency-tokio\"] }\nlambda_runtime_api_client = \"1.1\"\nnix = { version = \"0.29\", default-features = false, features = [\"mount\", \"ptrace\", \"sched\"] }\nserde_json = \"1\"\ntokio = { version = \"1\", features = [\"full\"] }\n\n[profile.release]\ndebug = 1\n\n[workspace]\n";

/// Writes the peer's Cargo project: the same source as fleetfn-testfn, its own package.
fn peer_project(ctx: &Ctx) -> anyhow::Result<PathBuf> {
    let (dir, _) = peer_dirs();
    std::fs::create_dir_all(dir.join("src"))?;
    // Every source file of fleetfn-testfn, as it is.
    for entry in std::fs::read_dir(ctx.repo.join("crates/fleetfn-testfn/src"))? {
        let entry = entry?;
        let name = entry.file_name();
        let src = std::fs::read(entry.path())?;
        if std::fs::read(dir.join("src").join(&name)).ok().as_deref() != Some(&src[..]) {
            std::fs::write(dir.join("src").join(&name), &src)?;
        }
    }
    if std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()
        .as_deref()
        != Some(PEER_MANIFEST)
    {
        std::fs::write(dir.join("Cargo.toml"), PEER_MANIFEST)?;
    }
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(ctx.repo.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    }
    let tc = ctx.repo.join("rust-toolchain.toml");
    if tc.exists() {
        std::fs::copy(tc, dir.join("rust-toolchain.toml"))?;
    }
    Ok(dir)
}

fn find_cargo_lambda() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let venv = std::env::var_os("FLEETFN_TEST_VENV")
        .map_or_else(|| home.join(".cache/fleetfn-venv"), PathBuf::from);
    let mut candidates = vec![
        venv.join("bin/cargo-lambda"),
        home.join(".cargo/bin/cargo-lambda"),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|p| p.join("cargo-lambda")));
    }
    candidates.into_iter().find(|p| p.exists())
}

async fn cargo_lambda(ctx: &Ctx) -> anyhow::Result<Value> {
    let Some(cl) = find_cargo_lambda() else {
        bail!(
            "cargo-lambda not found: `pip install cargo-lambda` into ~/.cache/fleetfn-venv (or `cargo install cargo-lambda`)"
        );
    };
    let dir = peer_project(ctx)?;
    let (_, target) = peer_dirs();
    let version = Command::new(&cl)
        .args(["lambda", "--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    // cargo-lambda at its best: one function instance (its default) and as many as clients;
    // `runs` keeps the better of the two at each client count.
    let mut by_instances = serde_json::Map::new();
    let mut best = serde_json::Map::new();
    for instances in [1u32, 32] {
        let runs = cargo_lambda_runs(ctx, &cl, &dir, &target, instances).await?;
        for (c, v) in &runs {
            let better = match best.get(c) {
                None => true,
                // c=1 is about latency, c=32 about throughput.
                Some(b) if c == "c1" => v["p50_us"].as_f64() < b["p50_us"].as_f64(),
                Some(b) => v["throughput_rps"].as_f64() > b["throughput_rps"].as_f64(),
            };
            if better {
                let mut v = v.clone();
                v["cargo_lambda_concurrency"] = json!(instances);
                best.insert(c.clone(), v);
            }
        }
        by_instances.insert(instances.to_string(), Value::Object(runs));
    }
    Ok(json!({
        "what": "cargo lambda watch --release serving the same no-op source (package `noop`) on its Invoke API, run with --concurrency 1 and 32; `runs` is the better of the two per client count; peer CPU = its process tree except the function binary",
        "version": version,
        "runs": best,
        "by_concurrency": by_instances,
    }))
}

/// `cargo lambda watch --concurrency instances`: c=1 and c=32.
async fn cargo_lambda_runs(
    ctx: &Ctx,
    cl: &std::path::Path,
    dir: &std::path::Path,
    target: &std::path::Path,
    instances: u32,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let port = free_port();
    let path = format!(
        "{}:{}",
        cl.parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = std::fs::File::create(target.with_extension("log"))?;
    let child = Command::new(cl)
        // cargo-lambda 1.9 passes `--target-dir` on to `cargo metadata`, which rejects it: use
        // the environment instead.
        .args([
            "lambda",
            "watch",
            "--release",
            "--ignore-changes",
            "--offline",
            "-q",
        ])
        .env("CARGO_TARGET_DIR", target)
        .args([
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--concurrency",
            &instances.to_string(),
        ])
        .current_dir(dir)
        .env("PATH", path)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let g = Guarded {
        child,
        grace: Duration::from_secs(10),
    };
    wait_port(port, Duration::from_secs(60)).await?;
    let url = format!("http://127.0.0.1:{port}/2015-03-31/functions/noop/invocations");
    // First invoke compiles (cached under ~/.cache/fleetfn-bench/peer-target) and starts the function.
    let api = Api::new(([127, 0, 0, 1], port).into());
    let t0 = Instant::now();
    loop {
        let r = api
            .raw(
                "POST",
                "/2015-03-31/functions/noop/invocations",
                "",
                Some(json!({"op":"noop"})),
                false,
            )
            .await;
        if let Ok((200, _)) = r {
            break;
        }
        if t0.elapsed() > Duration::from_secs(900) {
            let log = std::fs::read_to_string(target.with_extension("log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            bail!(
                "cargo lambda watch never answered an invoke: {r:?}; the end of its log:\n{}",
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let make = plain_request(&url, r#"{"op":"noop"}"#);
    let mut runs = serde_json::Map::new();
    for (c, n) in [(1, 20_000), (32, 100_000)] {
        let mut v = closed_level(ctx, g.pid(), make.clone(), c, n).await;
        // Everything in cargo-lambda's tree except the function binary is the peer's overhead.
        let o = v.as_object_mut().expect("object");
        let other = o
            .get("other_cpu_us_per_req")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            + o.get("server_cpu_us_per_req")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
        o.insert("peer_cpu_us_per_req".into(), json!(round(other, 1)));
        runs.insert(format!("c{c}"), v);
    }
    drop(g);
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// 4. Python and Node no-op at c=32.

async fn invoke_python_node(ctx: &Ctx) -> anyhow::Result<Value> {
    let fleet = Fleet::start(&ctx.bin_dir).await?;
    let cp = fleet.capacity_provider().await?;
    let mut out = serde_json::Map::new();
    for f in [
        python_fn(ctx, "noop-python", 16)?,
        node_fn(ctx, "noop-node", 16)?,
        java_fn(ctx, "noop-java", 16)?,
    ] {
        deploy(&fleet, &cp, &f, 3).await?;
        eprintln!("  {} ({})", f.name, f.runtime);
        let make = fleet.api.invoke_request(&f.name, "{}");
        let v = closed_level(ctx, fleet.pid(), make, 32, 50_000).await;
        out.insert(
            f.runtime.to_string(),
            json!({ "c32": v, "throttles_by_reason": throttles(&fleet, &f.name).await }),
        );
    }
    Ok(json!({
        "what": "tests/dataplane fixtures (awslambdaric python3.13 app.handler, fleetfn's Node bootstrap nodejs22.x index.handler, fleetfn's Java runtime client java21 example.Echo) echoing {}; 3 environments × 16",
        "runs": out,
    }))
}

// ---------------------------------------------------------------------------------------------
// 5. Multi-concurrency in one environment.

async fn multi_concurrency(ctx: &Ctx) -> anyhow::Result<Value> {
    let fleet = Fleet::start(&ctx.bin_dir).await?;
    let cp = fleet.capacity_provider().await?;
    let mut runs = serde_json::Map::new();
    for n in [1u32, 4, 16, 64] {
        let f = rust_fn(ctx, &format!("multi-{n}"), n)?;
        deploy(&fleet, &cp, &f, 1).await?;
        let make = fleet
            .api
            .invoke_request(&f.name, r#"{"op":"sleep","ms":10}"#);
        let mut v = closed_level(ctx, fleet.pid(), make, n as usize, 1_000_000).await;
        let ideal = f64::from(n) * 100.0;
        let ok_rps = v["ok"].as_f64().unwrap_or(0.0) / v["seconds"].as_f64().unwrap_or(1.0);
        let o = v.as_object_mut().expect("object");
        o.insert("ideal_rps".into(), json!(ideal));
        o.insert("ok_rps".into(), json!(round(ok_rps, 1)));
        o.insert("efficiency".into(), json!(round(ok_rps / ideal, 3)));
        v["throttles_by_reason"] = throttles(&fleet, &f.name).await;
        runs.insert(format!("n{n}"), v);
        // Free the environment before the next level.
        fleet.api.scale(&f.name, 0, 0).await.ok();
    }
    Ok(json!({
        "what": "one environment with PerExecutionEnvironmentMaxConcurrency N, handler sleeping 10 ms, closed loop at c=N: ideal N/10 ms",
        "runs": runs,
    }))
}

// ---------------------------------------------------------------------------------------------
// 6. Saturation.

async fn saturation(ctx: &Ctx) -> anyhow::Result<Value> {
    let fleet = Fleet::start(&ctx.bin_dir).await?;
    let cp = fleet.capacity_provider().await?;
    let f = rust_fn(ctx, "saturate", 8)?;
    deploy(&fleet, &cp, &f, 1).await?;
    let make = fleet
        .api
        .invoke_request(&f.name, r#"{"op":"sleep","ms":10}"#);
    let capacity = 8.0 * 100.0;
    let m = make.clone();
    let (unloaded, _, _) = measured(ctx, fleet.pid(), async move {
        load::open(
            load::client(1024),
            m,
            capacity * 0.25,
            Duration::from_secs(5),
            1024,
        )
        .await
    })
    .await;
    let m = make.clone();
    let (over, cpu, lg) = measured(ctx, fleet.pid(), async move {
        load::open(
            load::client(1024),
            m,
            capacity * 2.0,
            Duration::from_secs(20),
            1024,
        )
        .await
    })
    .await;
    let pick =
        |r: &RunResult, code: u16, q: f64| r.by_status.get(&code).map(|h| h.value_at_quantile(q));
    #[allow(clippy::cast_precision_loss)]
    let share = over.by_status.get(&429).map_or(0, |h| h.len()) as f64 / over.count().max(1) as f64;
    let lag_p99 = over.pacer_lag.as_ref().map(|h| h.value_at_quantile(0.99));
    eprintln!(
        "    unloaded accepted p99 {:?} µs; overload accepted p99 {:?} µs, 429 p99 {:?} µs, throttled {:.1} %; load generator late by p99 {:?} µs",
        pick(&unloaded, 200, 0.99),
        pick(&over, 200, 0.99),
        pick(&over, 429, 0.99),
        share * 100.0,
        lag_p99
    );
    Ok(json!({
        "what": "one environment × 8 concurrent, handler sleeping 10 ms (capacity 800/s); open loop at 25 % for 5 s (unloaded), then at 2× (1600/s) for 20 s",
        "capacity_rps": capacity,
        "throttles_by_reason": throttles(&fleet, &f.name).await,
        "unloaded": unloaded.to_json(),
        "overload": with_cpu(&over, &cpu, lg),
        "unloaded_accepted_p99_us": pick(&unloaded, 200, 0.99),
        "accepted_p50_us": pick(&over, 200, 0.50),
        "accepted_p99_us": pick(&over, 200, 0.99),
        "throttled_p50_us": pick(&over, 429, 0.50),
        "throttled_p99_us": pick(&over, 429, 0.99),
        "throttled_share": round(share, 4),
        "accepted_rps": round(over.ok_throughput(), 1),
        "pacer_lag_p99_us": lag_p99,
    }))
}

// ---------------------------------------------------------------------------------------------
// 7. Start to Ready and publish to Active.

/// `durationMs` of every `platform.initReport` in the function's logs.
fn init_reports(logs: &Path, function: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut stack = vec![logs.join(function)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            for line in text.lines().filter(|l| l.contains("platform.initReport")) {
                if let Ok(v) = serde_json::from_str::<Value>(line)
                    && v["record"]["status"] == "success"
                    && let Some(ms) = v["record"]["metrics"]["durationMs"].as_f64()
                {
                    out.push(ms);
                }
            }
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

async fn startup(ctx: &Ctx) -> anyhow::Result<Value> {
    let fleet = Fleet::start(&ctx.bin_dir).await?;
    let cp = fleet.capacity_provider().await?;
    let mut out = serde_json::Map::new();
    for f in [
        rust_fn(ctx, "start-rust", 4)?,
        python_fn(ctx, "start-python", 4)?,
        node_fn(ctx, "start-node", 4)?,
        java_fn(ctx, "start-java", 4)?,
    ] {
        fleet.api.create_function(&cp, &f).await?;
        let took = fleet.api.publish(&f.name, Duration::from_secs(120)).await?;
        // INIT_REPORT lines are written asynchronously.
        let mut inits = Vec::new();
        for _ in 0..50 {
            inits = init_reports(&fleet.logs_dir(), &f.name);
            if inits.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ms = took.as_secs_f64() * 1000.0;
        eprintln!(
            "    {}: publish→Active {ms:.0} ms, init {inits:?} ms",
            f.runtime
        );
        out.insert(
            f.runtime.to_string(),
            json!({
                "publish_to_active_ms": round(ms, 1),
                "environments": inits.len(),
                "init_ms": inits,
                "init_ms_max": inits.last(),
                "init_ms_median": inits.get(inits.len() / 2),
            }),
        );
    }
    Ok(json!({
        "what": "publish to $LATEST.PUBLISHED → Active (3 environments, one per zone), polled every 10 ms by the client; start → Ready per environment from the agent's INIT_REPORT (spawn to first parked /next)",
        "runtimes": out,
    }))
}

// ---------------------------------------------------------------------------------------------
// 8. Scale-out reaction.

async fn scale_out(ctx: &Ctx) -> anyhow::Result<Value> {
    let fleet = Fleet::start(&ctx.bin_dir).await?;
    let cp = fleet.capacity_provider().await?;
    let f = rust_fn(ctx, "scale", 4)?;
    fleet.api.create_function(&cp, &f).await?;
    fleet.api.publish(&f.name, Duration::from_secs(60)).await?;
    fleet.api.scale(&f.name, 2, 20).await?;
    // Publishing starts 3 (one per zone) and scale-in is slow: start from what is Ready.
    let t = Instant::now();
    let mut before = 0;
    while t.elapsed() < Duration::from_secs(60) {
        before = fleet.api.env_states(&f.name).await?.0;
        if before >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Steady load at 75 % of the Ready capacity (4 per environment), then a step up.
    let clients = (before * 3).max(1);
    let make = fleet
        .api
        .invoke_request(&f.name, r#"{"op":"sleep","ms":100}"#);
    let m1 = make.clone();
    let first = ctx.loadgen.spawn(async move {
        load::closed(m1, clients, 1_000_000, 0, Duration::from_secs(30)).await
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = fleet.api.env_states(&f.name).await?.0;
    // The step at least doubles the offered load and always exceeds what the Ready environments
    // can take (the fleet may have grown during the steady phase): 1.5× their concurrency.
    // Capped so the wanted environments stay within Max = 20.
    let added = clients
        .max((before * 4 * 3).div_ceil(2).saturating_sub(clients))
        .min(72usize.saturating_sub(clients));
    let total = clients + added;
    let wanted = total.div_ceil(4);
    let t0 = Instant::now();
    let m2 = make.clone();
    let second = ctx
        .loadgen
        .spawn(async move { load::closed(m2, added, 1_000_000, 0, Duration::from_secs(20)).await });
    let mut ready_at = None;
    let mut max_ready = before;
    while t0.elapsed() < Duration::from_secs(19) {
        let (ready, _) = fleet.api.env_states(&f.name).await?;
        max_ready = max_ready.max(ready);
        if ready_at.is_none() && ready >= wanted {
            ready_at = Some(t0.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = first.await?;
    let second = second.await?;
    // Throttles after the doubling, in ms since the doubling.
    let mut throttles: Vec<i64> = first
        .non_ok
        .iter()
        .filter(|(_, s)| *s == 429)
        .map(|(ms, _)| i64::from(*ms) - 10_000)
        .chain(
            second
                .non_ok
                .iter()
                .filter(|(_, s)| *s == 429)
                .map(|(ms, _)| i64::from(*ms)),
        )
        .filter(|ms| *ms >= 0)
        .collect();
    throttles.sort_unstable();
    let errors = first.count() + second.count()
        - first.ok()
        - second.ok()
        - u64::try_from(throttles.len()).unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let last = throttles.last().map_or(0.0, |ms| *ms as f64 / 1000.0);
    eprintln!(
        "    Ready {before} → {max_ready}; ≥4 Ready after {ready_at:?} s; last throttle {last:.2} s; {} throttles",
        throttles.len()
    );
    Ok(json!({
        "what": "Min 2 / Max 20 environments × 4 concurrent, handler sleeping 100 ms; closed loop at 75 % of the Ready environments' concurrency, then after 10 s a step to at least twice the clients and at least 1.5× the then-Ready concurrency; 'serving' = enough Ready environments for the stepped load at 100 %",
        "clients_before": clients,
        "clients_after": total,
        "envs_needed_after": wanted,
        "ready_before": before,
        "ready_max_after": max_ready,
        "seconds_to_new_envs_ready": ready_at,
        "seconds_to_last_throttle": last,
        "throttled_after_doubling": throttles.len(),
        "invokes_by_added_clients": second.count(),
        "errors_other_than_throttles": errors,
    }))
}

// ---------------------------------------------------------------------------------------------
// 9. Control plane.

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

async fn control_plane(ctx: &Ctx) -> anyhow::Result<Value> {
    let fleet = Fleet::start(&ctx.bin_dir).await?;
    let cp = fleet.capacity_provider().await?;
    let small = python_fn(ctx, "x", 1)?;
    let t0 = Instant::now();
    let mut next = 0usize;
    let total = 1000usize;
    while next < total {
        let mut batch = Vec::new();
        for i in next..(next + 8).min(total) {
            let api = fleet.api.clone();
            let mut f = small.clone();
            f.name = format!("cp-{i:04}");
            let cp = cp.clone();
            batch.push(tokio::spawn(
                async move { api.create_function(&cp, &f).await },
            ));
        }
        next += batch.len();
        for b in batch {
            b.await??;
        }
    }
    let create_small_s = t0.elapsed().as_secs_f64();
    eprintln!("    created {total} functions in {create_small_s:.1} s");
    let addr = fleet.addr;
    let mk_get = |path_of: Arc<dyn Fn(usize) -> String + Send + Sync>| -> MakeRequest {
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        Arc::new(move || {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut req = http::Request::builder()
                .method("GET")
                .uri(format!("http://{addr}{}", path_of(i)))
                .body(bytes::Bytes::new())
                .expect("request");
            crate::fleet::sign(&mut req);
            let (p, b) = req.into_parts();
            http::Request::from_parts(p, http_body_util::Full::new(b))
        })
    };
    let get = mk_get(Arc::new(|i| {
        format!("/2015-03-31/functions/cp-{:04}", i % 1000)
    }));
    let get_r = closed_level(ctx, fleet.pid(), get, 1, 5_000).await;
    let list = mk_get(Arc::new(|_| "/2015-03-31/functions/".to_string()));
    let list_r = closed_level(ctx, fleet.pid(), list, 1, 2_000).await;
    // CreateFunction with a 1 MB zip (incompressible content), sequentially.
    let big = pseudo_random(1 << 20, 42);
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let zip_len;
    {
        let z = zip(&[
            ("app.py", b"def handler(e, c):\n    return {}\n", 0o644),
            ("blob.bin", &big, 0o644),
        ])?;
        zip_len = z.len();
        let z = Arc::new(z);
        for i in 0..20 {
            let mut f = small.clone();
            f.name = format!("big-{i:02}");
            f.zip = z.clone();
            let t = Instant::now();
            fleet.api.create_function(&cp, &f).await?;
            h.saturating_record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
    }
    eprintln!(
        "    CreateFunction 1 MB p50 {} µs",
        h.value_at_quantile(0.5)
    );
    Ok(json!({
        "what": "1,000 functions (+ 20 with a 1 MB zip) in the SQLite store; GetFunction (rotating over all) and ListFunctions (first page, 50) at c=1; CreateFunction with a 1 MB zip measured until State leaves Pending",
        "create_1000_small_seconds": round(create_small_s, 2),
        "get_function": get_r,
        "list_functions": list_r,
        "create_function_1mb": {"zip_bytes": zip_len, "latency": load::summary(&h)},
    }))
}

// ---------------------------------------------------------------------------------------------
// 10. Memory.

fn mem_by_role(root: u32) -> Value {
    let t = procs::tree(root);
    let mut by: BTreeMap<&'static str, (u64, u64, u64)> = BTreeMap::new();
    for p in t.values() {
        let (rss, pss) = procs::mem_kib(p.pid);
        let e = by.entry(procs::role(root, p, &t)).or_default();
        e.0 += 1;
        e.1 += rss;
        e.2 += pss;
    }
    let m: serde_json::Map<String, Value> = by
        .into_iter()
        .map(|(k, (n, rss, pss))| {
            (
                k.to_string(),
                json!({"processes": n, "rss_kib": rss, "pss_kib": pss}),
            )
        })
        .collect();
    Value::Object(m)
}

async fn memory(ctx: &Ctx) -> anyhow::Result<Value> {
    let fleet = Fleet::start(&ctx.bin_dir).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = procs::mem_kib(fleet.pid());
    let cp = fleet.capacity_provider().await?;
    let after_cp = procs::mem_kib(fleet.pid());
    let mut names = Vec::new();
    for i in 0..10 {
        let f = rust_fn(ctx, &format!("mem-{i}"), 4)?;
        fleet.api.create_function(&cp, &f).await?;
        fleet.api.publish(&f.name, Duration::from_secs(120)).await?;
        fleet.api.scale(&f.name, 10, 10).await?;
        names.push(f.name);
    }
    for n in &names {
        fleet.api.wait_envs(n, 10, Duration::from_secs(180)).await?;
    }
    // A few invokes so every path is touched, then let it settle.
    let api = fleet.api.clone();
    for n in &names {
        let make = api.invoke_request(n, r#"{"op":"noop"}"#);
        let _ = ctx
            .loadgen
            .spawn(async move { load::closed(make, 4, 200, 0, Duration::from_secs(5)).await })
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = mem_by_role(fleet.pid());
    let status = fleet.api.status().await?;
    let instances: usize = status["CapacityProviders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["Instances"].as_array().map_or(0, Vec::len))
        .sum();
    let envs = 100u64;
    let server = procs::mem_kib(fleet.pid());
    let agent_pss = loaded["agent"]["pss_kib"].as_u64().unwrap_or(0);
    let agent_rss = loaded["agent"]["rss_kib"].as_u64().unwrap_or(0);
    let agents = loaded["agent"]["processes"].as_u64().unwrap_or(1).max(1);
    let fn_pss = loaded["function"]["pss_kib"].as_u64().unwrap_or(0);
    let overhead_kib = agent_pss + server.1.saturating_sub(after_cp.1);
    eprintln!(
        "    serve idle RSS {} KiB; with {envs} envs: serve {} KiB, {agents} agents {} KiB PSS, runtimes {} KiB PSS",
        idle.0, server.0, agent_pss, fn_pss
    );
    Ok(json!({
        "what": "RSS/PSS from /proc/<pid>/smaps_rollup: `fleetfn serve` idle (2 s after start), then with 100 Rust no-op environments (10 functions × 10)",
        "serve_idle_rss_kib": idle.0,
        "serve_idle_pss_kib": idle.1,
        "serve_loaded_rss_kib": server.0,
        "serve_loaded_pss_kib": server.1,
        "instances": instances,
        "by_role": loaded,
        "per_agent_rss_kib": agent_rss / agents,
        "per_agent_pss_kib": agent_pss / agents,
        "per_env_runtime_pss_kib": fn_pss / envs,
        "per_env_fleetfn_overhead_pss_kib": overhead_kib / envs,
    }))
}

#[cfg(test)]
mod tests {
    use super::PEER_MANIFEST;

    /// The peer builds fleetfn-testfn's source, so its manifest must name every dependency
    /// fleetfn-testfn has (a missing one makes `cargo lambda watch` fail to compile).
    #[test]
    fn the_peer_manifest_names_every_testfn_dependency() {
        let testfn = include_str!("../../fleetfn-testfn/Cargo.toml");
        let deps = testfn
            .split("[dependencies]")
            .nth(1)
            .expect("a [dependencies] table")
            .split("\n[")
            .next()
            .expect("its body");
        let names: Vec<&str> = deps
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split(['=', '.', ' ']).next())
            .collect();
        assert!(names.len() >= 5, "parsed {names:?}");
        for name in names {
            assert!(
                PEER_MANIFEST
                    .lines()
                    .any(|l| l.starts_with(&format!("{name} ="))),
                "the peer manifest lacks {name}"
            );
        }
    }
}
