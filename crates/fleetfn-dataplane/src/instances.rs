//! The local instance provider: each virtual instance is a `fleetfn agent` process on this
//! machine. Killing the process is losing the instance.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use fleetfn_proto::AgentClient;
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
    "RUST_BACKTRACE",
];

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
}

/// A running virtual instance.
#[derive(Debug)]
pub struct Instance {
    pub id: String,
    pub zone: String,
    pub capacity_provider: String,
    pub client: AgentClient,
    child: Mutex<Option<Child>>,
    /// Held open: the agent exits when it reads EOF, so agents never outlive `fleetfn serve`.
    _stdin: Mutex<Option<ChildStdin>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start agent {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("agent {id} did not report its address: {detail}")]
    NoAddress { id: String, detail: String },
}

impl Instance {
    /// Stops the agent process (it drains and stops its environments on SIGTERM).
    pub async fn terminate(&self) {
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// The agent's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(Child::id))
    }
}

/// Launches agent processes.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    cfg: LocalProviderConfig,
}

impl LocalProvider {
    pub fn new(cfg: LocalProviderConfig) -> Self {
        Self { cfg }
    }

    pub async fn launch(
        &self,
        capacity_provider: &str,
        zone: &str,
    ) -> Result<Instance, LaunchError> {
        let id = format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17]);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.cfg.instances_dir.join(&id);
        let mut cmd = Command::new(&self.cfg.binary);
        cmd.arg("agent")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--instance-id")
            .arg(&id)
            .arg("--zone")
            .arg(zone)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--artifacts-dir")
            .arg(&self.cfg.artifacts_dir)
            .arg("--runtime-dir")
            .arg(&self.cfg.runtime_dir)
            .arg("--logs-dir")
            .arg(&self.cfg.logs_dir)
            .arg("--exit-on-stdin-eof")
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
        let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            binary: self.cfg.binary.display().to_string(),
            source,
        })?;
        let stdout = child.stdout.take().ok_or_else(|| LaunchError::NoAddress {
            id: id.clone(),
            detail: "no stdout".into(),
        })?;
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .map_err(|_| LaunchError::NoAddress {
                id: id.clone(),
                detail: "timed out after 20 s".into(),
            })?
            .map_err(|e| LaunchError::NoAddress {
                id: id.clone(),
                detail: e.to_string(),
            })?
            .ok_or_else(|| LaunchError::NoAddress {
                id: id.clone(),
                detail: "the agent exited before listening".into(),
            })?;
        let addr: SocketAddr = first
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| LaunchError::NoAddress {
                id: id.clone(),
                detail: format!("unexpected first line {first:?}"),
            })?;
        // Keep draining stdout so the agent never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        tracing::info!(instance = %id, %zone, %capacity_provider, %addr, "instance running");
        Ok(Instance {
            id,
            zone: zone.to_string(),
            capacity_provider: capacity_provider.to_string(),
            client: AgentClient::new(addr, &token),
            child: Mutex::new(Some(child)),
            _stdin: Mutex::new(stdin),
        })
    }
}
