//! The data plane of `fleetfn serve`: instances launched through an [`InstanceProvider`] (agent
//! processes for the local provider), the deployer that places every published version's
//! environments onto its capacity provider's instances (`fleetfn-scheduler` placement: instance
//! types, zones, `MaxVCpuCount`), the scaler that sizes each version from its agents' CPU and
//! concurrency reports, and the router that sends each invoke to a Ready environment and throttles
//! with a reason when none can take it. Nothing is started on the request path. It talks to
//! agents only through `fleetfn-proto` and to desired state only through `fleetfn-server`.
#![forbid(unsafe_code)]

mod accounting;
mod deployer;
mod instances;
mod metrics;
mod router;
mod scaling;
mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fleetfn_proto::{EnvState, Failure};
use fleetfn_scheduler::{Catalog, InstanceState, InstanceType};
use fleetfn_server::ControlPlane;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use instances::{
    BoxFuture, Instance, InstanceProvider, LaunchError, LaunchSpec, LocalProvider,
    LocalProviderConfig, ProviderCapacity, new_instance_id,
};

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
    /// The Prometheus metrics the data plane updates (a fresh registry by default).
    pub metrics: Arc<fleetfn_metrics::Metrics>,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            catalog: Catalog::builtin(),
            scale_in_after: fleetfn_scheduler::scaler::SCALE_IN_AFTER,
            idle_instance_after: Duration::from_secs(30),
            lambda_prices: fleetfn_cost::LambdaPrices::default(),
            metrics: Arc::default(),
        }
    }
}

/// CPU utilization from successive cumulative CPU-time readings.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuSampler {
    prev: Option<(Instant, u64)>,
    /// Fraction of the allotment used over the last interval.
    pub util: Option<f64>,
}

impl CpuSampler {
    /// Folds in a reading of cumulative CPU time; `host_cpus` is the allotment in host CPUs.
    pub fn observe(&mut self, now: Instant, cpu_ns: Option<u64>, host_cpus: f64) {
        let Some(cpu) = cpu_ns else { return };
        match self.prev {
            Some((t, c)) => {
                let dt = now.saturating_duration_since(t);
                if dt < Duration::from_millis(200) {
                    return;
                }
                if cpu >= c && host_cpus > 0.0 {
                    #[allow(clippy::cast_precision_loss)]
                    let used = (cpu - c) as f64 / dt.as_nanos() as f64;
                    self.util = Some(used / host_cpus);
                }
                self.prev = Some((now, cpu));
            }
            None => self.prev = Some((now, cpu)),
        }
    }
}

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
    pub vcpus: f64,
    pub memory_mib: u64,
    /// Invokes the router has in flight on it.
    pub in_flight: Arc<AtomicU32>,
    /// Utilization as last reported by the agent: memory in use (bytes), CPU time (ns).
    pub memory_bytes: Option<u64>,
    pub cpu_usage_ns: Option<u64>,
    pub cpu: CpuSampler,
}

/// An instance of a capacity provider, as the data plane tracks it.
#[derive(Debug, Clone)]
pub(crate) struct InstanceSlot {
    pub id: String,
    pub capacity_provider: String,
    pub zone: String,
    pub instance_type: InstanceType,
    pub state: InstanceState,
    /// Set once the instance runs.
    pub handle: Option<Arc<Instance>>,
    pub launched_at: String,
    /// Since when it has had no environment.
    pub empty_since: Option<Instant>,
    pub cpu: CpuSampler,
}

pub(crate) use fleetfn_model::ThrottleReason;

/// Per-version counters the router updates on the request path.
#[derive(Debug, Default)]
pub(crate) struct VersionStats {
    pub invocations: AtomicU64,
    pub errors: AtomicU64,
    /// Indexed by [`ThrottleReason::index`].
    pub throttles: [AtomicU64; ThrottleReason::COUNT],
    /// Sum of invoke durations (ns): average concurrency = Δbusy / Δt.
    pub busy_ns: AtomicU64,
    /// Sum of served invokes' durations rounded up to the millisecond (Lambda's billing unit).
    pub billed_ms: AtomicU64,
    /// Placement cannot give the version what the scaler wants (`MaxVCpuCount` or host budget).
    pub capped: AtomicBool,
    /// The version's Prometheus series, cached so an invoke hashes no labels.
    pub metrics: fleetfn_metrics::VersionMetrics,
}

/// The scaler's memory of one version.
#[derive(Debug, Clone)]
pub(crate) struct VersionScale {
    pub desired: u32,
    pub low_for: Duration,
    pub last_tick: Option<(Instant, u64)>,
    /// Served and throttled invokes at the last tick.
    pub last_counts: (u64, u64),
    /// (tick, throttles so far) over the last minute, oldest first, with one older sample as the
    /// baseline.
    pub throttle_history: std::collections::VecDeque<(Instant, u64)>,
    /// Throttles in the last minute.
    pub throttles_last_minute: u64,
    pub avg_cpu: f64,
    pub saturation: f64,
}

/// A capacity provider's last failed instance launch, retried with backoff.
#[derive(Debug, Clone)]
pub(crate) struct LaunchFailure {
    pub message: String,
    pub at: String,
    pub retry_at: Instant,
    pub delay: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub instances: HashMap<String, InstanceSlot>,
    pub envs: HashMap<String, Env>,
    /// Version key → (no new starts before, current back-off) after failed replacements.
    pub backoff: HashMap<String, (Instant, Duration)>,
    /// Capacity provider name → last launch failure.
    pub launch_failures: HashMap<String, LaunchFailure>,
    pub scale: HashMap<String, VersionScale>,
    pub stats: HashMap<String, Arc<VersionStats>>,
    /// Usage not yet written to the store.
    pub meter: accounting::Meter,
    /// The Prometheus registry and the deployer's figures for it.
    pub metrics: metrics::MetricsState,
}

impl State {
    pub fn stats(&mut self, vkey: &str) -> Arc<VersionStats> {
        let metrics = &self.metrics;
        self.stats
            .entry(vkey.to_string())
            .or_insert_with(|| {
                Arc::new(VersionStats {
                    metrics: metrics.version(vkey),
                    ..VersionStats::default()
                })
            })
            .clone()
    }
}

/// The data plane; cheap to clone.
#[derive(Debug, Clone)]
pub struct DataPlane {
    pub(crate) cp: ControlPlane,
    pub(crate) provider: Arc<dyn InstanceProvider>,
    pub(crate) cfg: Arc<DataPlaneConfig>,
    pub(crate) state: Arc<RwLock<State>>,
    /// Bumped when an agent reports a state change, to wake the deployer.
    pub(crate) reports: Arc<watch::Sender<u64>>,
    /// Cancelled at shutdown; a deploy pass in progress stops starting things.
    pub(crate) stopping: CancellationToken,
}

impl DataPlane {
    pub fn new(
        cp: ControlPlane,
        provider: Arc<dyn InstanceProvider>,
        cfg: DataPlaneConfig,
    ) -> Self {
        let metrics = metrics::MetricsState::new(cfg.metrics.clone());
        Self {
            cp,
            provider,
            cfg: Arc::new(cfg),
            state: Arc::new(RwLock::new(State {
                metrics,
                ..State::default()
            })),
            reports: Arc::new(watch::Sender::new(0)),
            stopping: CancellationToken::new(),
        }
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
            dp.run_deployer(stop).await;
            dp.shutdown().await;
            // The instances' last seconds, then everything metered, before the store closes.
            if let Ok(versions) = dp.cp.deployable_versions().await
                && let Ok(mut s) = dp.state.write()
            {
                accounting::Meter::tick(&mut s, Instant::now(), &versions);
            }
            dp.flush_usage().await;
        })
    }

    async fn shutdown(&self) {
        let all: Vec<String> = self
            .state
            .read()
            .map(|s| s.instances.keys().cloned().collect())
            .unwrap_or_default();
        let mut set = tokio::task::JoinSet::new();
        for id in all {
            let provider = self.provider.clone();
            set.spawn(async move { provider.terminate(&id).await });
        }
        while set.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cpu_sampler_measures_utilization_of_the_allotment() {
        let mut s = CpuSampler::default();
        let t0 = Instant::now();
        s.observe(t0, Some(1_000_000_000), 0.5);
        assert_eq!(s.util, None);
        // Too soon: ignored.
        s.observe(t0 + Duration::from_millis(100), Some(1_050_000_000), 0.5);
        assert_eq!(s.util, None);
        // 0.25 s of CPU in 1 s on an allotment of half a CPU: 50 %.
        s.observe(t0 + Duration::from_secs(1), Some(1_250_000_000), 0.5);
        assert!((s.util.unwrap() - 0.5).abs() < 1e-9);
        // A counter that went backwards (a replaced cgroup) is skipped, not negative.
        s.observe(t0 + Duration::from_secs(2), Some(10), 0.5);
        assert!((s.util.unwrap() - 0.5).abs() < 1e-9);
        s.observe(t0 + Duration::from_secs(3), Some(10), 0.5);
        assert_eq!(s.util, Some(0.0));
    }
}
