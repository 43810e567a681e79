//! The `fleetfn` binary: `fleetfn serve` runs the whole system on one machine. Argument parsing,
//! start-up and shutdown live here; everything else is in the library crates.
#![forbid(unsafe_code)]

/// mimalloc: on the invoke path glibc's malloc and free (hyper's 8 KiB read buffers miss its
/// thread cache) were ≈ 15 % of the server's and agents' CPU; docs/BENCHMARKS.md has the pairs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent;
mod client;
mod cost;
mod credentials;
mod deploy;
mod ec2;
mod events;
mod join;
mod logs;
mod metrics;
mod roles;
mod serve;
mod server;
mod status;
mod template_cmd;
mod token;
mod urls;
mod wait;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fleetfn",
    version,
    about = "Self-hosted AWS Lambda Managed Instances"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: the Lambda API, the store and the data plane.
    Serve(ServeArgs),
    /// Run one of several API servers sharing a PostgreSQL store (one of them leads the control
    /// loops; see docs/CLUSTER.md).
    Server(ServerArgs),
    /// Run an instance agent: started by `fleetfn serve` for each virtual instance, or on a host
    /// of a cluster with `--join` (see docs/CLUSTER.md).
    Agent(Box<AgentArgs>),
    /// Show a running server's capacity providers, instances and function versions.
    Status(status::StatusArgs),
    /// Wait until a function (version) reaches a state, e.g. Active after a publish.
    Wait(wait::WaitArgs),
    /// Print a function's log (its output and START/END/REPORT lines); --follow for new lines.
    Logs(logs::LogsArgs),
    /// What the capacity cost here against AWS Lambda and AWS LMI for the same traffic.
    Cost(cost::CostArgs),
    /// Join tokens for agents on other hosts: create, list, revoke.
    Token(token::TokenArgs),
    /// Deploy a CloudFormation, SAM or CDK template as a stack: plan, apply in dependency order,
    /// roll back on failure (`--dry-run` prints the plan only).
    Deploy(Box<deploy::DeployArgs>),
    /// Deployed stacks: list, describe NAME, delete NAME.
    Stacks(deploy::StacksArgs),
    /// Templates without a server: `render` prints one after the SAM transform.
    Template(template_cmd::TemplateArgs),
    /// Internal: the sandbox helper the agent runs for each environment.
    #[command(hide = true)]
    Jail {
        /// The sandbox spec (JSON); stdin when absent.
        #[arg(long)]
        spec_file: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Address of the agent API (port 0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Also serve the agent API on a Unix domain socket at this path (mode 0600; the server
    /// of the same host calls it there: no TCP on the invoke path). Not with --tls-cert.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[arg(long)]
    pub instance_id: String,
    /// The zone (availability zone) the instance is in.
    #[arg(long)]
    pub zone: String,
    /// The instance's own directory (environments, scratch space).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The content-addressed code store to read packages from.
    #[arg(long)]
    pub artifacts_dir: PathBuf,
    /// Where runtimes are provisioned (shared between agents of one host) [default: runtimes in
    /// the data dir].
    #[arg(long, env = "FLEETFN_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Where function logs are written.
    #[arg(long)]
    pub logs_dir: Option<PathBuf>,
    /// Exit when standard input closes (set by `fleetfn serve`, so agents never outlive it).
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
    /// CPU scheduling policy of the agent's threads: `batch` (SCHED_BATCH: their wake-ups do not
    /// preempt a running thread, so each finds more work queued; docs/DESIGN.md, "CPU
    /// scheduling") or `normal`. Functions always run `normal`.
    #[arg(long, value_enum, default_value_t = Scheduling::Batch, env = "FLEETFN_AGENT_SCHEDULING")]
    pub scheduling: Scheduling,
    /// Join these servers (comma-separated URLs, tried in order) on start, with the token in
    /// --token-file; the identity it gets is kept in the data dir and reused on restarts.
    #[arg(long, value_delimiter = ',', value_name = "URL[,URL…]")]
    pub join: Vec<String>,
    /// A file (mode 0600) holding a join token (`fleetfn token create`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Allow plain HTTP with the servers (the token, the credential, packages, payloads
    /// unencrypted; said in the log): http:// --join servers, and with --join this agent's own
    /// API without --tls-cert. Only on a network you trust; without it both are refused.
    #[arg(long)]
    pub allow_plain_http: bool,
    /// PEM bundle of the CA(s) that signed the https:// --join servers' certificates
    /// [default: the host's root certificates].
    #[arg(long, value_name = "FILE", env = "FLEETFN_AGENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Serve the agent API over TLS with this PEM certificate (chain); it must name the
    /// --advertise address's IP (a subjectAltName), and the servers verify it with their
    /// --agent-ca. Needs --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        env = "FLEETFN_AGENT_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "FLEETFN_AGENT_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// The address the servers reach this agent at [default: the address it listens on].
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// With --join: seconds without a call from any server after which this agent stops its
    /// environments (the servers will have replaced them elsewhere by then, and the host is
    /// freed); 0 keeps them forever.
    #[arg(long, default_value_t = 60.0)]
    pub orphan_grace: f64,
    /// The instance type (reported to the server).
    #[arg(long, default_value = "local")]
    pub instance_type: String,
    /// The instance's vCPUs [default: the host's CPUs].
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// The instance's memory in MiB (its cgroup slice's limit) [default: the host's memory].
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Host CPUs per vCPU: the instance's CPU quota is vcpus × cpu-scale host CPUs, each
    /// environment's its vCPUs × cpu-scale (below 1 packs more instances on a small host).
    #[arg(long, default_value_t = 1.0)]
    pub cpu_scale: f64,
    #[command(flatten)]
    pub log_limits: LogLimitArgs,
    #[command(flatten)]
    pub network: EnvNetworkArgs,
}

/// How environments reach the network (`fleetfn agent`; `fleetfn serve` passes the variables
/// on to its agents).
#[derive(Debug, Clone, clap::Args)]
pub struct EnvNetworkArgs {
    /// Resolvers for the environments' /etc/resolv.conf (comma-separated IPs) [default: the
    /// host's /etc/resolv.conf].
    #[arg(long, env = "FLEETFN_ENV_DNS", value_delimiter = ',')]
    pub env_dns: Vec<std::net::IpAddr>,
    /// Destinations environments may reach although they are blocked by default
    /// (comma-separated IPv4 CIDRs, e.g. 169.254.169.254/32).
    #[arg(long, env = "FLEETFN_ENV_ALLOW", value_delimiter = ',')]
    pub env_allow: Vec<fleetfn_sandbox::Ipv4Cidr>,
    /// Outbound network for environments (`on`, or `off` for loopback only).
    #[arg(long, env = "FLEETFN_ENV_EGRESS", default_value = "on", value_parser = ["on", "off"])]
    pub env_egress: String,
}

/// Retention of function logs, per function version (`fleetfn agent` and `fleetfn serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct LogLimitArgs {
    /// Size at which an environment starts a new log segment (bytes, or e.g. 8MiB).
    #[arg(long, default_value = "8MiB", env = "FLEETFN_LOG_SEGMENT_BYTES", value_parser = fleetfn_logs::parse_size)]
    pub log_segment_bytes: u64,
    /// Cap on each function version's stored log; the oldest lines go first (bytes, or e.g.
    /// 64MiB).
    #[arg(long, default_value = "64MiB", env = "FLEETFN_LOG_MAX_BYTES", value_parser = fleetfn_logs::parse_size)]
    pub log_max_bytes: u64,
    /// Log lines older than this are deleted (seconds, or e.g. 12h, 7d).
    #[arg(long, default_value = "7d", env = "FLEETFN_LOG_MAX_AGE", value_parser = fleetfn_logs::parse_duration)]
    pub log_max_age: std::time::Duration,
}

impl LogLimitArgs {
    pub fn limits(&self) -> anyhow::Result<fleetfn_logs::LogLimits> {
        Ok(fleetfn_logs::LogLimits::new(
            self.log_segment_bytes,
            self.log_max_bytes,
            self.log_max_age,
        )?)
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address of the Lambda API.
    #[arg(long, default_value = "127.0.0.1:9600", env = "FLEETFN_LISTEN")]
    pub listen: SocketAddr,
    /// Where state, code and logs live (default: $XDG_DATA_HOME/fleetfn or ~/.local/share/fleetfn).
    #[arg(long, env = "FLEETFN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where runtime support is installed (awslambdaric, boto3, the AWS SDK for JavaScript),
    /// shared by this host's instances [default: runtimes in the data dir].
    #[arg(long, env = "FLEETFN_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Where the desired state lives: `postgres://USER:PASSWORD@HOST[:PORT]/DATABASE` (the
    /// database must exist; fleetfn creates and migrates its tables), or `sqlite:PATH`
    /// [default: the SQLite file state.db in the data dir].
    /// (Parsed at start rather than by clap, whose error would echo the password.)
    #[arg(
        long,
        env = "FLEETFN_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
    /// Region in ARNs and in the SigV4 credential scope.
    #[arg(long, default_value = "us-east-1", env = "FLEETFN_REGION")]
    pub region: String,
    /// Account id in ARNs.
    #[arg(long, default_value = "000000000000", env = "FLEETFN_ACCOUNT_ID")]
    pub account_id: String,
    /// Run the control plane only: no instances, no environments; published versions stay
    /// `Pending` and Invoke is refused. For testing the API alone.
    #[arg(long, env = "FLEETFN_NO_DATA_PLANE")]
    pub no_data_plane: bool,
    /// Host CPUs per virtual vCPU of the local instances (1.0: a vCPU is a host CPU; 0.25 shrinks
    /// it to a quarter, so a small machine can stand in for bigger instances).
    #[arg(long, default_value_t = 1.0, env = "FLEETFN_VCPU_SCALE")]
    pub vcpu_scale: f64,
    /// Budget of virtual vCPUs over all local instances; launches beyond it fail with
    /// InsufficientInstanceCapacity and are retried with backoff.
    #[arg(long, default_value_t = 64, env = "FLEETFN_MAX_LOCAL_VCPUS")]
    pub max_local_vcpus: u32,
    /// How the server calls its local agents: `tcp` (loopback) or `unix` (a socket of mode 0600
    /// in each instance's directory). TCP is the default: on the 2-core benchmark host a Unix
    /// socket served 5–20 % fewer invokes at c=32 (docs/BENCHMARKS.md).
    #[arg(long, default_value = "tcp", env = "FLEETFN_AGENT_TRANSPORT", value_parser = ["tcp", "unix"])]
    pub agent_transport: String,
    /// Seconds of sustained low use before a version scales in by one step (LMI: minutes).
    #[arg(long, default_value_t = 300.0, env = "FLEETFN_SCALE_IN_AFTER")]
    pub scale_in_after: f64,
    /// Seconds an instance stays empty before it is terminated.
    #[arg(long, default_value_t = 30.0, env = "FLEETFN_IDLE_INSTANCE_AFTER")]
    pub idle_instance_after: f64,
    /// Seconds after which an instance (agent process) is replaced, one at a time, its
    /// environments started on a new one first (LMI rotates its instances; 14 days).
    #[arg(long, default_value_t = 14.0 * 24.0 * 3600.0, env = "FLEETFN_MAX_INSTANCE_AGE")]
    pub max_instance_age: f64,
    /// A JSON file overriding or adding instance types and prices:
    /// `{"PricesAsOf": "2026-01-01", "InstanceTypes": [{"name": "c7i.large", "family": "c7i",
    /// "arch": "x86_64", "vcpus": 2, "memory_mib": 4096, "hourly_usd": 0.0893}]}`.
    #[arg(long, env = "FLEETFN_CATALOG")]
    pub catalog: Option<PathBuf>,
    #[command(flatten)]
    pub log_limits: LogLimitArgs,
    #[command(flatten)]
    pub roles: roles::RoleArgs,
    #[command(flatten)]
    pub events: events::AsyncArgs,
    /// Seconds an API connection may take to send a request's headers; an idle keep-alive
    /// connection is closed after the same time.
    #[arg(long, default_value_t = 10.0, env = "FLEETFN_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: f64,
    /// Request bodies above 1 MiB (code uploads) buffered at once; one more is answered with
    /// 429 TooManyRequestsException (retry in a second).
    #[arg(long, default_value_t = 4, env = "FLEETFN_MAX_CONCURRENT_UPLOADS")]
    pub max_concurrent_uploads: usize,
    /// Address of `GET /metrics` (Prometheus text, no SigV4), or `off`
    /// [default: 127.0.0.1:9601; when that is taken fleetfn warns and runs without metrics].
    #[arg(long, env = "FLEETFN_METRICS_LISTEN", value_name = "ADDR|off")]
    pub metrics_listen: Option<metrics::MetricsListen>,
    #[command(flatten)]
    pub urls: urls::UrlArgs,
    /// CPU scheduling policy of this process's threads: `normal` (its wake-ups preempt, so a
    /// throttle or an invoke is answered at once even while the functions keep the CPUs busy)
    /// or `batch` (docs/DESIGN.md, "CPU scheduling").
    #[arg(long, value_enum, default_value_t = Scheduling::Normal, env = "FLEETFN_SCHEDULING")]
    pub scheduling: Scheduling,
    /// CPU scheduling policy of the local agents (their `--scheduling`): `batch` (default) or
    /// `normal`.
    #[arg(long, value_enum, default_value_t = Scheduling::Batch, env = "FLEETFN_AGENT_SCHEDULING")]
    pub agent_scheduling: Scheduling,
    /// Threads of the API and router: 1 (default) runs them on one thread, which on a host
    /// shared with the functions spends the least CPU per invoke (docs/BENCHMARKS.md); 0 = one
    /// per CPU. Code uploads are parsed and hashed on separate blocking threads either way.
    #[arg(long, default_value_t = 1, env = "FLEETFN_THREADS")]
    pub threads: usize,
    #[command(flatten)]
    pub console: serve::ConsoleArgs,
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address of the Lambda API.
    #[arg(long, default_value = "127.0.0.1:9600", env = "FLEETFN_LISTEN")]
    pub listen: SocketAddr,
    /// This server's own files: the admin key, the environment-variable key, code packages
    /// (default: $XDG_DATA_HOME/fleetfn or ~/.local/share/fleetfn).
    #[arg(long, env = "FLEETFN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The store all servers share: `postgres://USER:PASSWORD@HOST[:PORT]/DATABASE`.
    #[arg(
        long,
        env = "FLEETFN_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: String,
    /// This server's name in the leader lease [default: host name and process id].
    #[arg(long, env = "FLEETFN_SERVER_ID")]
    pub server_id: Option<String>,
    /// Run the control plane only: no data plane on joined agents; published versions stay
    /// `Pending` and Invoke is refused. For testing the API alone.
    #[arg(long, env = "FLEETFN_NO_DATA_PLANE")]
    pub no_data_plane: bool,
    /// Region in ARNs and in the SigV4 credential scope.
    #[arg(long, default_value = "us-east-1", env = "FLEETFN_REGION")]
    pub region: String,
    /// Account id in ARNs.
    #[arg(long, default_value = "000000000000", env = "FLEETFN_ACCOUNT_ID")]
    pub account_id: String,
    #[command(flatten)]
    pub roles: roles::RoleArgs,
    #[command(flatten)]
    pub events: events::AsyncArgs,
    /// Seconds an API connection may take to send a request's headers.
    #[arg(long, default_value_t = 10.0, env = "FLEETFN_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: f64,
    /// Request bodies above 1 MiB (code uploads) buffered at once.
    #[arg(long, default_value_t = 4, env = "FLEETFN_MAX_CONCURRENT_UPLOADS")]
    pub max_concurrent_uploads: usize,
    /// Address of `GET /metrics`, or `off` [default: 127.0.0.1:9601 when free].
    #[arg(long, env = "FLEETFN_METRICS_LISTEN", value_name = "ADDR|off")]
    pub metrics_listen: Option<metrics::MetricsListen>,
    #[command(flatten)]
    pub urls: urls::UrlArgs,
    /// CPU scheduling policy of this process's threads: `normal` (its wake-ups preempt, so a
    /// throttle or an invoke is answered at once even while other work keeps the CPUs busy)
    /// or `batch` (docs/DESIGN.md, "CPU scheduling").
    #[arg(long, value_enum, default_value_t = Scheduling::Normal, env = "FLEETFN_SCHEDULING")]
    pub scheduling: Scheduling,
    /// Threads of the API and router: 0 (default) = one per CPU, for a host of its own; 1
    /// spends the least CPU per invoke (docs/BENCHMARKS.md).
    #[arg(long, default_value_t = 0, env = "FLEETFN_THREADS")]
    pub threads: usize,
    /// Serve the API (clients and agents) over TLS with this PEM certificate (chain), which
    /// must name the host or IP clients and agents use. Needs --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        env = "FLEETFN_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "FLEETFN_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of the CA that signs agents' certificates: agents that joined with
    /// --tls-cert are called over https and verified with it (for their advertised IP).
    #[arg(long, value_name = "FILE", env = "FLEETFN_AGENT_CA")]
    pub agent_ca: Option<PathBuf>,
    /// A JSON file of instance types, prices and discounts (Savings Plans, Reserved Instances)
    /// for placement and `fleetfn cost`, as for `fleetfn serve` (README: Cost); with
    /// `--instance-provider ec2` its types replace the described ones.
    #[arg(long, env = "FLEETFN_CATALOG")]
    pub catalog: Option<PathBuf>,
    #[command(flatten)]
    pub ec2: ec2::Ec2Args,
    #[command(flatten)]
    pub console: serve::ConsoleArgs,
}

pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("fleetfn");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/fleetfn")
}

/// The CPU scheduling policy of fleetfn's own threads ([`fleetfn_sandbox::sched`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheduling {
    Batch,
    Normal,
}

impl Scheduling {
    /// The argument that asks an agent for this policy.
    pub fn as_arg(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Normal => "normal",
        }
    }
}

/// Puts the calling thread, and every thread it starts from now on, under `scheduling`.
fn apply_scheduling(scheduling: Scheduling) {
    let policy = match scheduling {
        Scheduling::Batch => fleetfn_sandbox::sched::Policy::Batch,
        Scheduling::Normal => fleetfn_sandbox::sched::Policy::Normal,
    };
    if let Err(e) = fleetfn_sandbox::sched::set_own_policy(policy) {
        tracing::warn!(error = %e, ?scheduling, "could not set the CPU scheduling policy; running with the inherited one");
    }
}

/// The API's runtime: one thread, or a multi-thread runtime of `threads` workers (0: one per CPU).
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 1 {
        b.worker_threads(threads);
    }
    b.enable_all().build()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Jail { spec_file } = &cli.command {
        // Single-threaded on purpose: no logging thread, no runtime, before anything else.
        fleetfn_sandbox::jail_main_from(spec_file.as_deref());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEETFN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // One crypto provider for every TLS config of this process.
    fleetfn_proto::tls::install_default_provider();
    // Before any thread starts, so all of them inherit it.
    match &cli.command {
        Command::Serve(a) => apply_scheduling(a.scheduling),
        Command::Server(a) => apply_scheduling(a.scheduling),
        Command::Agent(a) => apply_scheduling(a.scheduling),
        _ => {}
    }
    match cli.command {
        Command::Serve(args) => runtime(args.threads)?.block_on(serve::run(args)),
        Command::Server(args) => runtime(args.threads)?.block_on(server::run(args)),
        Command::Agent(args) => {
            // One thread: an invoke crosses the agent API, the environment and its Runtime API
            // endpoint; on one thread that is a few polls instead of cross-thread wake-ups.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(agent::run(*args));
            // The stdin watcher sits in a blocking read; don't wait for it.
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            result
        }
        Command::Status(args) => client::run_command(status::run(args)),
        Command::Token(args) => client::run_command(token::run(args)),
        Command::Wait(args) => client::run_command(wait::run(args)),
        Command::Logs(args) => client::run_command(logs::run(args)),
        Command::Cost(args) => client::run_command(cost::run(args)),
        Command::Deploy(args) => client::run_command(deploy::run_deploy(*args)),
        Command::Stacks(args) => client::run_command(deploy::run_stacks(args)),
        Command::Template(args) => template_cmd::run(args),
        Command::Jail { .. } => unreachable!("handled before start-up"),
    }
}
