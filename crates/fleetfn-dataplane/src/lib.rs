//! The data plane of `fleetfn serve`: instances (agent processes), the deployer that keeps every
//! published version's environments running (start at publish, `Active` when Ready, replace
//! what dies, roll `$LATEST.PUBLISHED` over before draining the old set), and the router that
//! sends each invoke to a Ready environment without ever starting one on the request path.
//! It talks to agents only through `fleetfn-proto` and to desired state only through
//! `fleetfn-server`.
#![forbid(unsafe_code)]

mod deployer;
mod instances;
mod router;

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, RwLock};

use fleetfn_proto::{EnvState, Failure};
use fleetfn_server::ControlPlane;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use instances::{Instance, LaunchError, LocalProvider, LocalProviderConfig};

/// One environment the data plane asked an agent to run.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    pub env_id: String,
    pub instance: Arc<Instance>,
    /// Store key of the version (`fn/000000000001`, `fn/$LATEST.PUBLISHED`).
    pub version_key: String,
    /// Which publish of that version it runs.
    pub publish_hash: String,
    pub state: EnvState,
    pub failure: Option<Failure>,
    pub max_concurrency: u32,
    /// Invokes the router has in flight on it.
    pub in_flight: Arc<AtomicU32>,
    /// Utilization as last reported by the agent: memory in use (bytes), CPU time (ns).
    pub memory_bytes: Option<u64>,
    pub cpu_usage_ns: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Capacity provider name → its instances (one per zone for now).
    pub instances: HashMap<String, Vec<Arc<Instance>>>,
    pub envs: HashMap<String, Env>,
    /// Version key → (no new starts before, current back-off) after failed replacements.
    pub backoff: HashMap<String, (tokio::time::Instant, std::time::Duration)>,
}

/// The data plane; cheap to clone.
#[derive(Debug, Clone)]
pub struct DataPlane {
    pub(crate) cp: ControlPlane,
    pub(crate) provider: LocalProvider,
    pub(crate) state: Arc<RwLock<State>>,
    /// Bumped when an agent reports a state change, to wake the deployer.
    pub(crate) reports: Arc<watch::Sender<u64>>,
    /// Cancelled at shutdown; a deploy pass in progress stops starting things.
    pub(crate) stopping: CancellationToken,
}

impl DataPlane {
    pub fn new(cp: ControlPlane, provider: LocalProvider) -> Self {
        Self {
            cp,
            provider,
            state: Arc::new(RwLock::new(State::default())),
            reports: Arc::new(watch::Sender::new(0)),
            stopping: CancellationToken::new(),
        }
    }

    /// Runs the deployer until `stop`; then stops every instance.
    pub fn spawn(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let dp = self.clone();
        tokio::spawn(async move {
            let stopping = dp.stopping.clone();
            let relay = stop.clone();
            tokio::spawn(async move {
                relay.cancelled().await;
                stopping.cancel();
            });
            dp.run_deployer(stop).await;
            dp.shutdown().await;
        })
    }

    async fn shutdown(&self) {
        let all: Vec<Arc<Instance>> = self
            .state
            .read()
            .map(|s| s.instances.values().flatten().cloned().collect())
            .unwrap_or_default();
        let mut set = tokio::task::JoinSet::new();
        for i in all {
            set.spawn(async move { i.terminate().await });
        }
        while set.join_next().await.is_some() {}
    }

    /// Number of environments per state, for status and tests.
    pub fn environment_counts(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        if let Ok(s) = self.state.read() {
            for e in s.envs.values() {
                *out.entry(format!("{:?}", e.state)).or_insert(0) += 1;
            }
        }
        out
    }
}
