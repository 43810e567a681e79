//! Instances and the providers that launch them. An [`InstanceProvider`] launches, describes and
//! terminates instances; the data plane only ever sees [`Instance`] handles (an id, a type, a
//! zone and a client for the instance's agent).
//!
//! The [`LocalProvider`] (used by `fleetfn serve`) runs each virtual instance as a `fleetfn agent`
//! process on this machine, sized like its EC2 instance type, under a host-wide budget of virtual
//! vCPUs. Killing the process is losing the instance.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fleetfn_proto::{AgentApi, AgentClient};
use fleetfn_scheduler::InstanceType;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Environment variables an agent process inherits from `fleetfn serve`; nothing else (no
/// credentials) crosses over.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "PYENV_ROOT",
    "FLEETFN_LOG",
    "FLEETFN_PYTHON",
    "FLEETFN_RUNTIME_DIR",
    "FLEETFN_SANDBOX",
    "FLEETFN_ENV_DNS",
    "FLEETFN_ENV_ALLOW",
    "FLEETFN_ENV_EGRESS",
    "FLEETFN_PYTHON_SDK",
    "FLEETFN_NODE_SDK",
    "FLEETFN_NPM",
    "FLEETFN_JAVA",
    "RUST_BACKTRACE",
    // What pip and npm need to reach their registries when the agent installs runtime support:
    // proxies and extra CA certificates (configuration files are found through HOME).
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
];

/// Prefixes of further variables passed on for the same reason (`PIP_INDEX_URL`,
/// `npm_config_registry`).
const PASSED_ENV_PREFIXES: &[&str] = &["PIP_", "npm_config_", "NPM_CONFIG_"];

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub capacity_provider: String,
    pub zone: String,
    pub instance_type: InstanceType,
}

/// A launched instance: its agent, and where it runs.
#[derive(Debug)]
pub struct Instance {
    pub id: String,
    pub zone: String,
    pub capacity_provider: String,
    pub instance_type: InstanceType,
    /// The instance's agent (an [`AgentClient`] for agent processes).
    pub client: Arc<dyn AgentApi>,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The provider has no room for the instance (EC2's `InsufficientInstanceCapacity`).
    #[error(
        "InsufficientInstanceCapacity: launching {instance_type} ({vcpus} vCPUs) would exceed this host's budget of {max_vcpus} virtual vCPUs ({in_use} in use); raise --max-local-vcpus or lower MaxVCpuCount"
    )]
    InsufficientCapacity {
        instance_type: String,
        vcpus: u32,
        in_use: u32,
        max_vcpus: u32,
    },
    #[error("cannot start agent {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("agent {id} did not report its address: {detail}")]
    NoAddress { id: String, detail: String },
    /// A `static` provider has no joined agent to claim.
    #[error(
        "InsufficientInstanceCapacity: no joined agent in zone {zone} is free with at least {vcpus} vCPUs, {memory_mib} MiB and {arch} for {instance_type}; join one with `fleetfn agent --join … --zone {zone}`{}",
        if unreachable.is_empty() { String::new() } else { format!(" (unreachable: {unreachable})") }
    )]
    NoFreeAgent {
        zone: String,
        instance_type: String,
        vcpus: u32,
        memory_mib: u64,
        arch: &'static str,
        unreachable: String,
    },
    /// The list of joined agents or their claims could not be read or written.
    #[error("joined agents: {0}")]
    Directory(String),
    /// EC2 refused or failed a launch (`InsufficientInstanceCapacity` after every fallback,
    /// `UnauthorizedOperation`, an agent that never joined...).
    #[error("{code}: {message}")]
    Ec2 { code: String, message: String },
}

/// The provider's own view of its capacity, for status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderCapacity {
    /// Host CPUs per virtual vCPU.
    pub vcpu_scale: f64,
    /// Budget of virtual vCPUs over all instances.
    pub max_vcpus: u32,
    pub vcpus_in_use: u32,
}

/// What [`InstanceProvider::sweep`] did and found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Stray environments stopped.
    pub stopped: usize,
    /// Hosts joined since the last sweep.
    pub hosts_joined: bool,
}

/// Launches, describes and terminates instances.
pub trait InstanceProvider: Send + Sync + std::fmt::Debug {
    /// Launches one instance and waits until its agent answers.
    fn launch<'a>(
        &'a self,
        instance_id: &'a str,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<Instance, LaunchError>>;
    /// Stops an instance (its agent drains and stops its environments); idempotent.
    fn terminate<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, ()>;
    /// Whether the instance is still there (its process runs).
    fn is_running(&self, instance_id: &str) -> bool;
    /// Capacity figures.
    fn capacity(&self) -> ProviderCapacity;
    /// Instances of this provider that run already (a `static` provider's claimed agents): a
    /// data plane that starts adopts them with what they run instead of launching anything.
    fn existing(&self) -> BoxFuture<'_, Result<Vec<Instance>, LaunchError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Looks over the provider's hosts every few seconds (the leader calls it): stops
    /// environments that run there without belonging to any of its instances (a `static`
    /// provider's agent whose claim ended while no server could reach it, found again after
    /// the partition healed), and tells whether hosts joined since the last look (launches
    /// that failed for want of one are then retried at once, not after their back-off).
    fn sweep(&self) -> BoxFuture<'_, Sweep> {
        Box::pin(async { Sweep::default() })
    }
    /// Whether the instances outlive the data plane: a stopping data plane leaves them and
    /// their environments running (for the next leader to adopt) instead of terminating them.
    fn outlives_data_plane(&self) -> bool {
        false
    }
    /// Why a running instance should be replaced (older than the maximum age, an image that is
    /// no longer the one to boot), or `None`. The data plane replaces such instances one at a
    /// time per capacity provider: new environments elsewhere first, Ready, then the old ones
    /// drain and the instance is terminated.
    fn should_replace(&self, _instance_id: &str) -> Option<String> {
        None
    }
    /// Launch choices the provider recently had no capacity for and fell back from, for
    /// status (newest last).
    fn capacity_fallbacks(&self) -> Vec<crate::CapacityFailure> {
        Vec::new()
    }
}

/// How to start agents.
#[derive(Debug, Clone)]
pub struct LocalProviderConfig {
    /// The `fleetfn` binary (normally the running executable).
    pub binary: PathBuf,
    /// Each instance gets `<instances_dir>/<instance id>`.
    pub instances_dir: PathBuf,
    /// The shared artifact store the agents read code from.
    pub artifacts_dir: PathBuf,
    /// Where runtimes (awslambdaric, the Node bootstrap) are provisioned, shared by all agents.
    pub runtime_dir: PathBuf,
    /// Where function logs go.
    pub logs_dir: PathBuf,
    /// Host CPUs per virtual vCPU (1.0: a vCPU is a host CPU; 0.25 shrinks it to a quarter).
    pub vcpu_scale: f64,
    /// Budget of virtual vCPUs over all instances of this host.
    pub max_vcpus: u32,
    /// Rotation and caps of function logs, passed to every agent.
    pub log_limits: fleetfn_logs::LogLimits,
    /// Call the agents on a Unix socket in their instance directory instead of loopback TCP.
    pub unix_sockets: bool,
    /// Agents older than this are replaced (rolling, as LMI rotates instances).
    pub max_instance_age: Duration,
    /// Further arguments for every agent (its CPU scheduling policy).
    pub agent_args: Vec<String>,
}

#[derive(Debug)]
struct Running {
    vcpus: u32,
    started: tokio::time::Instant,
    child: Child,
    /// Held open: the agent exits when it reads EOF, so agents never outlive `fleetfn serve`.
    _stdin: Option<ChildStdin>,
}

#[derive(Debug, Default)]
struct Local {
    running: HashMap<String, Running>,
    /// vCPUs of launches in progress.
    launching: u32,
}

/// Why an instance of `age` is replaced under a maximum of `max`, if it is.
pub(crate) fn too_old(age: Duration, max: Duration) -> Option<String> {
    (age >= max).then(|| {
        format!(
            "it is {} s old (maximum instance age {} s)",
            age.as_secs(),
            max.as_secs()
        )
    })
}

/// Launches agent processes on this machine.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    cfg: Arc<LocalProviderConfig>,
    state: Arc<Mutex<Local>>,
}

impl LocalProvider {
    pub fn new(cfg: LocalProviderConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            state: Arc::new(Mutex::new(Local::default())),
        }
    }

    fn in_use(l: &Local) -> u32 {
        l.running.values().map(|r| r.vcpus).sum::<u32>() + l.launching
    }

    /// Reserves the instance's vCPUs in the host budget.
    fn reserve(&self, t: &InstanceType) -> Result<(), LaunchError> {
        let mut l = self.state.lock();
        let in_use = Self::in_use(&l);
        if in_use + t.vcpus > self.cfg.max_vcpus {
            return Err(LaunchError::InsufficientCapacity {
                instance_type: t.name.clone(),
                vcpus: t.vcpus,
                in_use,
                max_vcpus: self.cfg.max_vcpus,
            });
        }
        l.launching += t.vcpus;
        Ok(())
    }

    fn unreserve(&self, vcpus: u32) {
        let mut l = self.state.lock();
        l.launching = l.launching.saturating_sub(vcpus);
    }

    async fn spawn_agent(&self, id: &str, spec: &LaunchSpec) -> Result<Instance, LaunchError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.cfg.instances_dir.join(id);
        // With `unix_sockets`, invokes go over a Unix socket in the instance's directory when
        // its path fits in a socket address (else, and by default, over loopback TCP).
        let socket = Some(dir.join("agent.sock")).filter(|p| {
            self.cfg.unix_sockets && p.as_os_str().len() <= fleetfn_proto::MAX_UNIX_SOCKET_PATH
        });
        let t = &spec.instance_type;
        let mut cmd = Command::new(&self.cfg.binary);
        cmd.arg("agent")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--instance-id")
            .arg(id)
            .arg("--zone")
            .arg(&spec.zone)
            .arg("--instance-type")
            .arg(&t.name)
            .arg("--vcpus")
            .arg(t.vcpus.to_string())
            .arg("--memory-mib")
            .arg(t.memory_mib.to_string())
            .arg("--cpu-scale")
            .arg(self.cfg.vcpu_scale.to_string())
            .arg("--data-dir")
            .arg(&dir)
            .arg("--artifacts-dir")
            .arg(&self.cfg.artifacts_dir)
            .arg("--runtime-dir")
            .arg(&self.cfg.runtime_dir)
            .arg("--logs-dir")
            .arg(&self.cfg.logs_dir)
            .arg("--exit-on-stdin-eof")
            .args(self.cfg.log_limits.agent_args())
            .args(&self.cfg.agent_args)
            .args(
                socket
                    .iter()
                    .flat_map(|p| [std::ffi::OsStr::new("--socket"), p.as_os_str()]),
            )
            .env_clear()
            .env("FLEETFN_AGENT_TOKEN", &token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for key in PASSED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        for (key, v) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| PASSED_ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
            {
                cmd.env(key, v);
            }
        }
        let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            binary: self.cfg.binary.display().to_string(),
            source,
        })?;
        let no_address = |detail: String| LaunchError::NoAddress {
            id: id.to_string(),
            detail,
        };
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| no_address("no stdout".into()))?;
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .map_err(|_| no_address("timed out after 20 s".into()))?
            .map_err(|e| no_address(e.to_string()))?
            .ok_or_else(|| no_address("the agent exited before listening".into()))?;
        let addr: SocketAddr = first
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| no_address(format!("unexpected first line {first:?}")))?;
        // Keep draining stdout so the agent never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        tracing::info!(instance = %id, zone = %spec.zone, instance_type = %t.name, capacity_provider = %spec.capacity_provider, %addr, unix_socket = socket.is_some(), "instance running");
        self.state.lock().running.insert(
            id.to_string(),
            Running {
                vcpus: t.vcpus,
                started: tokio::time::Instant::now(),
                child,
                _stdin: stdin,
            },
        );
        Ok(Instance {
            id: id.to_string(),
            zone: spec.zone.clone(),
            capacity_provider: spec.capacity_provider.clone(),
            instance_type: t.clone(),
            client: Arc::new(match &socket {
                Some(path) => AgentClient::new_unix(addr, path, &token),
                None => AgentClient::new(addr, &token),
            }),
        })
    }
}

/// A fresh EC2-style instance id.
pub fn new_instance_id() -> String {
    format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17])
}

impl InstanceProvider for LocalProvider {
    fn launch<'a>(
        &'a self,
        instance_id: &'a str,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<Instance, LaunchError>> {
        Box::pin(async move {
            self.reserve(&spec.instance_type)?;
            let r = self.spawn_agent(instance_id, spec).await;
            self.unreserve(spec.instance_type.vcpus);
            r
        })
    }

    fn terminate<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let running = self.state.lock().running.remove(instance_id);
            let Some(mut r) = running else { return };
            if let Some(pid) = r.child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(10), r.child.wait())
                .await
                .is_err()
            {
                let _ = r.child.start_kill();
                let _ = r.child.wait().await;
            }
        })
    }

    fn should_replace(&self, instance_id: &str) -> Option<String> {
        let age = self
            .state
            .lock()
            .running
            .get(instance_id)?
            .started
            .elapsed();
        too_old(age, self.cfg.max_instance_age)
    }

    fn is_running(&self, instance_id: &str) -> bool {
        let mut l = self.state.lock();
        match l.running.get_mut(instance_id) {
            Some(r) => matches!(r.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn capacity(&self) -> ProviderCapacity {
        let l = self.state.lock();
        ProviderCapacity {
            vcpu_scale: self.cfg.vcpu_scale,
            max_vcpus: self.cfg.max_vcpus,
            vcpus_in_use: Self::in_use(&l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(max_vcpus: u32) -> LocalProvider {
        LocalProvider::new(LocalProviderConfig {
            binary: PathBuf::from("/nonexistent/fleetfn"),
            instances_dir: PathBuf::from("/tmp"),
            artifacts_dir: PathBuf::from("/tmp"),
            runtime_dir: PathBuf::from("/tmp"),
            logs_dir: PathBuf::from("/tmp"),
            vcpu_scale: 1.0,
            max_vcpus,
            log_limits: fleetfn_logs::LogLimits::default(),
            unix_sockets: false,
            max_instance_age: Duration::from_secs(14 * 24 * 3600),
            agent_args: Vec::new(),
        })
    }

    #[test]
    fn instances_past_the_maximum_age_are_replaced() {
        let max = Duration::from_secs(14 * 24 * 3600);
        assert_eq!(too_old(max - Duration::from_secs(1), max), None);
        assert_eq!(
            too_old(max, max).as_deref(),
            Some("it is 1209600 s old (maximum instance age 1209600 s)")
        );
        assert_eq!(provider(8).should_replace("i-unknown"), None);
    }

    fn spec(name: &str) -> LaunchSpec {
        let t = fleetfn_scheduler::Catalog::builtin()
            .get(name)
            .cloned()
            .expect("type in catalog");
        LaunchSpec {
            capacity_provider: "cp".into(),
            zone: "z1".into(),
            instance_type: t,
        }
    }

    #[tokio::test]
    async fn budget_refuses_launches_beyond_it_and_frees_failed_ones() {
        let p = provider(4);
        // c7i.xlarge has 4 vCPUs: within budget, but the binary is missing → spawn error,
        // and the reservation is released.
        let err = p.launch("i-1", &spec("c7i.xlarge")).await.unwrap_err();
        assert!(matches!(err, LaunchError::Spawn { .. }), "{err}");
        assert_eq!(p.capacity().vcpus_in_use, 0);
        // c7i.2xlarge has 8: over budget, refused before anything is spawned.
        let err = p.launch("i-2", &spec("c7i.2xlarge")).await.unwrap_err();
        match err {
            LaunchError::InsufficientCapacity {
                vcpus, max_vcpus, ..
            } => assert_eq!((vcpus, max_vcpus), (8, 4)),
            other => panic!("unexpected {other}"),
        }
        assert!(!p.is_running("i-unknown"));
    }
}
