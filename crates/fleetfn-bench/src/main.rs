//! `fleetfn-bench`: the fleetfn benchmark suite (docs/BENCHMARKS.md).
//!
//! * `suite --out DIR`: every scenario, one after the other, each starting what it measures
//!   (`fleetfn serve` on a free loopback port with a temporary data dir, the floor's echo server,
//!   `cargo lambda watch`); writes `DIR/results.json` and `DIR/results.md`.
//! * `scenario NAME... --out DIR`: the same for the named scenarios only.
//! * `load`: the bare load generator against a running fleetfn (used by scripts/bench-capacity.py).
//! * `echo-server`: the floor, a bare hyper echo server (started by the suite itself).
//! * `sqs-server`: an in-memory SQS stand-in for `sqs-mapping` (started by the scenario itself).
//!
//! The load generator is hyper with HDR histograms, closed loop (fixed concurrency) or open loop
//! (fixed rate), on its own runtime; every run is bounded in count and time; loopback only.
#![forbid(unsafe_code)]

/// mimalloc, as in `fleetfn` itself: the load generator shares the 2 cores with what it
/// measures, so its own allocator costs are taken from fleetfn (glibc's malloc and free were
/// ≈ 13 % of its CPU per request). The floor's echo server runs in this binary too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod fleet;
mod load;
mod procs;
mod report;
mod scenarios;
mod sqs;
mod sqs_server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "fleetfn benchmark suite (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Args)]
struct SuiteArgs {
    /// Where results.json and results.md go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Directory with release builds of `fleetfn` and `fleetfn-testfn` (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Seconds per load level (each level also stops at its request count).
    #[arg(long, default_value_t = 5)]
    level_secs: u64,
    /// Worker threads of the load generator's own runtime.
    #[arg(long, default_value_t = 1)]
    loadgen_threads: usize,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every scenario.
    Suite(SuiteArgs),
    /// Only the named scenarios (see `list`).
    Scenario {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        args: SuiteArgs,
    },
    /// The scenario names.
    List,
    /// The floor: a bare hyper HTTP/1.1 echo server.
    EchoServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// An in-memory SQS stand-in (JSON protocol) for the `sqs-mapping` scenario.
    SqsServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// A closed loop of signed invokes against a running fleetfn; prints JSON.
    Load(LoadArgs),
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    #[arg(long, default_value = "127.0.0.1:9600")]
    endpoint: std::net::SocketAddr,
    #[arg(long)]
    function: String,
    #[arg(long, default_value = "{}")]
    payload: String,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Open loop at this many requests per second instead of a closed loop.
    #[arg(long)]
    rate: Option<f64>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

fn run_suite(names: &[String], args: &SuiteArgs) -> anyhow::Result<()> {
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary dir")?
            .to_path_buf(),
    };
    for b in ["fleetfn", "fleetfn-testfn"] {
        anyhow::ensure!(
            bin_dir.join(b).exists(),
            "{}/{b} is missing: cargo build --release -p fleetfn-cli -p fleetfn-testfn",
            bin_dir.display()
        );
    }
    let loadgen = load::runtime(args.loadgen_threads);
    let main_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let repo = repo_root();
    let ctx = scenarios::Ctx {
        bin_dir,
        repo: repo.clone(),
        loadgen: loadgen.handle().clone(),
        level_secs: args.level_secs,
    };
    let started_at = jiff::Timestamp::now();
    let t0 = Instant::now();
    std::fs::create_dir_all(&args.out)?;
    let mut results = serde_json::Map::new();
    let mut errors = serde_json::Map::new();
    let mut timings = serde_json::Map::new();
    for name in names {
        eprintln!("== {name}");
        let t = Instant::now();
        // Every scenario is bounded: a stuck one is reported, not waited on forever.
        let r = main_rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1200), scenarios::run(&ctx, name)).await
        });
        timings.insert(
            name.clone(),
            json!(load::round(t.elapsed().as_secs_f64(), 1)),
        );
        match r {
            Ok(Ok(v)) => {
                results.insert(name.clone(), v);
            }
            Ok(Err(e)) => {
                eprintln!("   {name} failed: {e:#}");
                errors.insert(name.clone(), json!(format!("{e:#}")));
            }
            Err(_) => {
                eprintln!("   {name} timed out");
                errors.insert(name.clone(), json!("timed out after 1200 s"));
            }
        }
    }
    let mut doc = json!({
        "started_at": started_at.to_string(),
        "seconds": load::round(t0.elapsed().as_secs_f64(), 1),
        "machine": report::machine(),
        "build": report::build(&repo),
        "scenario_seconds": timings,
        "results": results,
        "errors": errors,
    });
    let targets: Vec<Value> = report::targets(&doc["results"])
        .into_iter()
        .map(|(n, t, m, ok)| json!({"target": n, "goal": t, "measured": m, "pass": ok}))
        .collect();
    doc["targets"] = Value::Array(targets);
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    let md = report::markdown(&doc);
    std::fs::write(args.out.join("results.md"), &md)?;
    println!("{md}");
    eprintln!(
        "wrote {0}/results.json and {0}/results.md in {1:.0} s",
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    drop(main_rt);
    loadgen.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

fn run_load(a: LoadArgs) -> anyhow::Result<()> {
    // Traffic never leaves this host: loopback, or an address of one of its own interfaces
    // (e.g. a test bridge a benchmark made, scripts/bench-cluster.py).
    anyhow::ensure!(
        a.endpoint.ip().is_loopback() || std::net::UdpSocket::bind((a.endpoint.ip(), 0)).is_ok(),
        "fleetfn-bench only targets loopback or this host's own addresses"
    );
    fleet::use_env_keys();
    let rt = load::runtime(1);
    let api = fleet::Api::new(a.endpoint);
    let make = api.invoke_request(&a.function, &a.payload);
    let r = rt.block_on(async move {
        match a.rate {
            Some(rate) => {
                load::open(
                    load::client(1024),
                    make,
                    rate,
                    Duration::from_secs(a.max_seconds),
                    4096,
                )
                .await
            }
            None => {
                load::closed(
                    make,
                    a.concurrency,
                    a.requests,
                    a.warmup,
                    Duration::from_secs(a.max_seconds),
                )
                .await
            }
        }
    });
    let mut v = r.to_json();
    // Field names scripts/bench-capacity.py reads.
    v["requests"] = json!(r.count());
    v["status_codes"] = json!(
        r.by_status
            .iter()
            .map(|(k, h)| (k.to_string(), json!(h.len())))
            .collect::<serde_json::Map<_, _>>()
    );
    v["latency_by_status"] = v["by_status"].clone();
    println!("{v}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Suite(args) => {
            let names: Vec<String> = scenarios::ALL.iter().map(|s| (*s).to_string()).collect();
            run_suite(&names, &args)
        }
        Cmd::Scenario { names, args } => run_suite(&names, &args),
        Cmd::List => {
            for s in scenarios::ALL {
                println!("{s}");
            }
            Ok(())
        }
        Cmd::EchoServer { listen } => {
            tokio::runtime::Runtime::new()?.block_on(scenarios::echo_server(listen))
        }
        Cmd::SqsServer { listen } => {
            tokio::runtime::Runtime::new()?.block_on(sqs_server::serve(listen))
        }
        Cmd::Load(a) => run_load(a),
    }
}
