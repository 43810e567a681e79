//! The data plane of `fleetfn serve`: instances launched through an [`InstanceProvider`] (agent
//! processes for the local provider), the deployer that places every published version's
//! environments onto its capacity provider's instances (`fleetfn-scheduler` placement: instance
//! types, zones, `MaxVCpuCount`), the scaler that sizes each version from its agents' CPU and
//! concurrency reports, and the router that sends each invoke to a Ready environment and throttles
//! with a reason when none can take it. Nothing is started on the request path. It talks to
//! agents only through `fleetfn-proto` and to desired state only through `fleetfn-server`.
//!
//! Layout: [`DataPlane`] here; `deployer/` (run loop, instance and environment lifecycle, the
//! agent-report watcher, convergence) on top; below it `scaling`, `router`, `status`,
//! `accounting` and `metrics`, which share only `state` (the state behind the lock), `routing`
//! (the per-version routing table), `stats` (the router's counters), `series` (the one-second
//! ring per version and the duration histogram), `version` (pure functions of a version record),
//! `backoff` and `instances`. No module below the deployer imports it.
#![forbid(unsafe_code)]

mod accounting;
mod backoff;
mod credentials;
mod deployer;
mod ec2_provider;
mod instances;
mod metrics;
mod router;
mod routing;
mod scaling;
mod series;
mod state;
mod static_provider;
mod stats;
mod status;
mod version;

use std::sync::Arc;
use std::time::Duration;

use fleetfn_scheduler::Catalog;
use fleetfn_server::ControlPlane;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use ec2_provider::{
    CapacityFailure, Ec2Connector, Ec2Directory, Ec2Provider, Ec2ProviderConfig, StsEc2Connector,
    user_data,
};
pub use instances::{
    BoxFuture, Instance, InstanceProvider, LaunchError, LaunchSpec, LocalProvider,
    LocalProviderConfig, ProviderCapacity, Sweep, new_instance_id,
};
pub use static_provider::{AgentDirectory, Connect, StaticProvider, agent_connect};

/// Tunables of the data plane.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Instance types (built-in catalog, possibly overridden by a config file).
    pub catalog: Catalog,
    /// Sustained low use before a version scales in by one step (LMI: minutes).
    pub scale_in_after: Duration,
    /// How long an instance stays empty before it is terminated.
    pub idle_instance_after: Duration,
    /// AWS Lambda prices for the cost comparison.
    pub lambda_prices: fleetfn_cost::LambdaPrices,
    /// Pricing instruments (Savings Plans, Reserved Instances) for the cost report.
    pub discounts: fleetfn_cost::Discounts,
    /// The Prometheus metrics the data plane updates (a fresh registry by default).
    pub metrics: Arc<fleetfn_metrics::Metrics>,
    /// Assumes functions' execution roles for their environments; `None`: environments get no
    /// AWS credentials.
    pub roles: Option<Arc<dyn fleetfn_roles::RoleAssumer>>,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            catalog: Catalog::builtin(),
            scale_in_after: fleetfn_scheduler::scaler::SCALE_IN_AFTER,
            idle_instance_after: Duration::from_secs(30),
            lambda_prices: fleetfn_cost::LambdaPrices::default(),
            discounts: fleetfn_cost::Discounts::default(),
            metrics: Arc::default(),
            roles: None,
        }
    }
}

/// The data plane; cheap to clone.
#[derive(Debug, Clone)]
pub struct DataPlane {
    pub(crate) cp: ControlPlane,
    pub(crate) provider: Arc<dyn InstanceProvider>,
    pub(crate) cfg: Arc<DataPlaneConfig>,
    pub(crate) state: Arc<RwLock<state::State>>,
    /// The routing table, also in the state: the router reads it without the state's lock.
    pub(crate) routes: Arc<routing::RoutingTable>,
    /// Usage not yet written to the store (locked after the state when both are).
    pub(crate) meter: Arc<Mutex<accounting::Meter>>,
    /// Bumped when an agent reports a state change, to wake the deployer.
    pub(crate) reports: Arc<watch::Sender<u64>>,
    /// Cancelled at shutdown; a deploy pass in progress stops starting things.
    pub(crate) stopping: CancellationToken,
    /// Routes only ([`DataPlane::follower`]): adopts and mirrors, never launches, starts or
    /// stops anything.
    pub(crate) follower: bool,
    /// Set once what ran already was adopted (a leader adopts once).
    adopted: Arc<tokio::sync::OnceCell<()>>,
}

impl DataPlane {
    pub fn new(
        cp: ControlPlane,
        provider: Arc<dyn InstanceProvider>,
        cfg: DataPlaneConfig,
    ) -> Self {
        let state = state::State::new(cfg.metrics.clone());
        Self {
            cp,
            provider,
            cfg: Arc::new(cfg),
            routes: state.routes.clone(),
            state: Arc::new(RwLock::new(state)),
            meter: Arc::default(),
            reports: Arc::new(watch::Sender::new(0)),
            stopping: CancellationToken::new(),
            follower: false,
            adopted: Arc::default(),
        }
    }

    /// A data plane that only routes (a `fleetfn server` that is not the leader): it follows
    /// the instances its provider lists and the environments their agents report, and sends
    /// invokes to them; the leader's data plane places, scales and replaces. Run it with
    /// [`DataPlane::spawn_follower`].
    pub fn follower(
        cp: ControlPlane,
        provider: Arc<dyn InstanceProvider>,
        cfg: DataPlaneConfig,
    ) -> Self {
        Self {
            follower: true,
            ..Self::new(cp, provider, cfg)
        }
    }

    /// Runs a follower until `stop`; nothing is stopped when it ends.
    pub fn spawn_follower(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let dp = self.clone();
        tokio::spawn(async move {
            let stopping = dp.stopping.clone();
            dp.follow(stop).await;
            stopping.cancel();
            // What it routed since the last flush (it may be about to lead instead).
            dp.meter_routed().await;
            dp.flush_usage().await;
        })
    }

    /// Adopts what the provider runs already (see [`InstanceProvider::existing`]); the leader's
    /// [`DataPlane::spawn`] does it first. Callable before `spawn` to have the routes ready
    /// before the data plane takes invokes.
    pub async fn adopt(&self, stop: &CancellationToken) {
        self.adopted.get_or_init(|| self.adopt_existing(stop)).await;
    }

    /// Runs the deployer and scaler until `stop`; then stops every instance.
    pub fn spawn(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let dp = self.clone();
        tokio::spawn(async move {
            let stopping = dp.stopping.clone();
            let relay = stop.clone();
            tokio::spawn(async move {
                relay.cancelled().await;
                stopping.cancel();
            });
            dp.adopt(&stop).await;
            dp.run_deployer(stop).await;
            dp.shutdown().await;
            // The instances' last seconds, then everything metered, before the store closes.
            if let Ok(versions) = dp.cp.deployable_versions().await {
                let s = dp.state.read();
                dp.meter.lock().tick(&s, Instant::now(), &versions, true);
            }
            dp.flush_usage().await;
        })
    }

    async fn shutdown(&self) {
        if self.provider.outlives_data_plane() {
            // The next leader adopts them.
            return;
        }
        let all: Vec<String> = self.state.read().instances.keys().cloned().collect();
        let mut set = tokio::task::JoinSet::new();
        for id in all {
            let provider = self.provider.clone();
            set.spawn(async move { provider.terminate(&id).await });
        }
        while set.join_next().await.is_some() {}
    }
}
