//! The data plane's state behind its one lock: the instances it tracks, the environments it
//! asked agents to run, the scaler's memory, the back-offs, and the routing table it keeps
//! current. Every change to an environment that the router could see goes through a method
//! here, which rebuilds that version's routes in the same write.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use fleetfn_proto::{EnvState, Failure};
use fleetfn_scheduler::{InstanceState, InstanceType};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::instances::Instance;
use crate::routing::{Route, RoutingTable, VersionRoutes};
use crate::stats::VersionStats;

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

/// What an environment used as its agent last reported, for the per-version Lambda Insights
/// series (`metrics.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct EnvUsage {
    pub insights: fleetfn_proto::EnvInsights,
    pub tmp_used_bytes: Option<u64>,
    pub tmp_limit_bytes: u64,
}

impl EnvUsage {
    pub(crate) fn of(st: &fleetfn_proto::EnvironmentStatus) -> Self {
        Self {
            insights: st.insights,
            tmp_used_bytes: st.tmp_used_bytes,
            tmp_limit_bytes: st.tmp_limit_bytes,
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
    /// `/tmp`, CPU split, peak memory and network as last reported (Lambda Insights metrics).
    pub usage: EnvUsage,
    /// When its execution-role credentials are renewed next; `None`: not yet given (a new
    /// environment, or one adopted), so the next renewal pass gives them.
    pub credentials_renew_at: Option<tokio::time::Instant>,
    /// The role it was started with (`None`: adopted, so its version's current role).
    pub role: Option<std::sync::Arc<crate::credentials::RoleTarget>>,
}

impl Env {
    fn route(&self) -> Arc<Route> {
        Arc::new(Route {
            env_id: self.env_id.clone(),
            instance: self.instance.clone(),
            in_flight: self.in_flight.clone(),
            max_concurrency: self.max_concurrency,
            publish_hash: self.publish_hash.clone(),
        })
    }
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
    /// Being replaced (its provider wants it gone: too old, an old image): `Draining`, its
    /// environments serve until their replacements elsewhere are Ready, then it is terminated.
    pub retiring: bool,
}

/// The scaler's memory of one version.
#[derive(Debug, Clone)]
pub(crate) struct VersionScale {
    pub desired: u32,
    pub low_for: Duration,
    pub last_tick: Option<(Instant, u64)>,
    /// Served and throttled invokes at the last tick.
    pub last_counts: (u64, u64),
    /// (tick, throttles so far by reason) over the last minute, oldest first, with one older
    /// sample as the baseline.
    pub throttle_history:
        std::collections::VecDeque<(Instant, [u64; fleetfn_model::ThrottleReason::COUNT])>,
    /// Throttles in the last minute.
    pub throttles_last_minute: u64,
    pub avg_cpu: f64,
    pub saturation: f64,
}

/// A capacity provider's last failed instance launch, retried with back-off.
#[derive(Debug, Clone)]
pub(crate) struct LaunchFailure {
    pub message: String,
    pub at: String,
    /// When it failed (a launch begun before it belongs to the same round).
    pub failed_at: Instant,
    /// No launch before this (from `backoff`, which the next failure continues).
    pub retry_at: Instant,
    pub backoff: Backoff,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub instances: HashMap<String, InstanceSlot>,
    /// Read freely; changed only through the methods below, which keep the routes current.
    pub envs: HashMap<String, Env>,
    /// Version key → back-off of its environment starts after failed replacements.
    pub start_backoff: HashMap<String, Backoff>,
    /// Capacity provider name → last launch failure.
    pub launch_failures: HashMap<String, LaunchFailure>,
    pub scale: HashMap<String, VersionScale>,
    /// Version key → its last 15 minutes in one-second samples (filled by the scaler's tick,
    /// or a follower's, and dropped with the version).
    pub series: HashMap<String, crate::series::SeriesRing>,
    /// The unix seconds of those samples.
    pub series_clock: crate::series::SeriesClock,
    /// Capacity provider → launches its last placement asked for but could not start (the
    /// provider is backing off after a failed launch).
    pub deferred_launches: HashMap<String, usize>,
    /// Per version: its Ready environments and counters (shared with the router).
    pub routes: Arc<RoutingTable>,
    /// Instances whose last heartbeat is overdue: their environments are not routed to until
    /// a report comes again (or the instance is declared lost).
    silent: HashSet<String>,
    /// The Prometheus registry (each version's series are cached in its counters).
    pub metrics: Arc<fleetfn_metrics::Metrics>,
}

impl State {
    pub fn new(metrics: Arc<fleetfn_metrics::Metrics>) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    /// The version's routes and counters, created (with its Ready environments) on first use.
    pub fn version_routes(&mut self, vkey: &str) -> Arc<VersionRoutes> {
        if let Some(r) = self.routes.get(vkey) {
            return r;
        }
        let stats = Arc::new(VersionStats {
            metrics: self.metrics.version(crate::version::labels(vkey)),
            ..VersionStats::default()
        });
        self.routes.insert(vkey, stats, self.ready_routes(vkey))
    }

    /// The version's counters, created on first use.
    pub fn stats(&mut self, vkey: &str) -> Arc<VersionStats> {
        self.version_routes(vkey).stats.clone()
    }

    /// The version's counters if it has any.
    pub fn existing_stats(&self, vkey: &str) -> Option<Arc<VersionStats>> {
        self.routes.get(vkey).map(|r| r.stats.clone())
    }

    /// Whether the router sends invokes to this environment: Ready on an instance whose
    /// heartbeat is not overdue.
    pub fn is_routed(&self, e: &Env) -> bool {
        e.state == EnvState::Ready && !self.silent.contains(&e.instance.id)
    }

    fn ready_routes(&self, vkey: &str) -> Vec<Arc<Route>> {
        self.envs
            .values()
            .filter(|e| e.version_key == vkey && self.is_routed(e))
            .map(Env::route)
            .collect()
    }

    /// Rebuilds the routes of these versions from their environments.
    pub fn refresh_routes<'a>(&self, vkeys: impl IntoIterator<Item = &'a str>) {
        for vkey in vkeys {
            self.routes.set_ready(vkey, self.ready_routes(vkey));
        }
    }

    /// Adds an environment (starting: the router does not see it yet).
    pub fn insert_env(&mut self, env: Env) {
        let ready = env.state == EnvState::Ready;
        let vkey = env.version_key.clone();
        self.envs.insert(env.env_id.clone(), env);
        if ready {
            self.refresh_routes([vkey.as_str()]);
        }
    }

    /// Forgets an environment; the router stops using it at once.
    pub fn remove_env(&mut self, env_id: &str) -> Option<Env> {
        let env = self.envs.remove(env_id)?;
        if env.state == EnvState::Ready {
            self.refresh_routes([env.version_key.as_str()]);
        }
        Some(env)
    }

    /// Takes an instance's environments out of the routes while its heartbeat is overdue, and
    /// puts them back when it answers again; `true` when that changed anything.
    pub fn set_silent(&mut self, id: &str, silent: bool) -> bool {
        let changed = if silent {
            self.silent.insert(id.to_string())
        } else {
            self.silent.remove(id)
        };
        if changed {
            let versions: HashSet<String> = self
                .envs
                .values()
                .filter(|e| e.instance.id == id && e.state == EnvState::Ready)
                .map(|e| e.version_key.clone())
                .collect();
            self.refresh_routes(versions.iter().map(String::as_str));
        }
        changed
    }

    /// Forgets an instance and every environment on it; the router stops using them at once.
    pub fn remove_instance(&mut self, id: &str) {
        self.instances.remove(id);
        self.silent.remove(id);
        let mut gone = HashSet::new();
        self.envs.retain(|_, e| {
            let keep = e.instance.id != id;
            if !keep && e.state == EnvState::Ready {
                gone.insert(e.version_key.clone());
            }
            keep
        });
        self.refresh_routes(gone.iter().map(String::as_str));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::routing::tests::instance;

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

    pub(crate) fn env(id: &str, vkey: &str, inst: &Arc<Instance>, state: EnvState) -> Env {
        Env {
            env_id: id.into(),
            instance: inst.clone(),
            version_key: vkey.into(),
            publish_hash: "p1".into(),
            state,
            failure: None,
            max_concurrency: 1,
            vcpus: 1.0,
            memory_mib: 2048,
            in_flight: Arc::default(),
            memory_bytes: None,
            cpu_usage_ns: None,
            cpu: CpuSampler::default(),
            usage: EnvUsage::default(),
            credentials_renew_at: None,
            role: None,
        }
    }

    fn ready_ids(s: &State, vkey: &str) -> Vec<String> {
        let mut ids: Vec<String> = s
            .routes
            .get(vkey)
            .expect("entry")
            .candidates("p1", &[])
            .into_iter()
            .map(|r| r.env_id.clone())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn routes_follow_the_environments_of_their_version() {
        let (i1, i2) = (instance("i-1", "z1"), instance("i-2", "z2"));
        let mut s = State::default();
        // Environments that exist before the version's entry are in it when it is created.
        s.insert_env(env("a", "f/1", &i1, EnvState::Ready));
        s.insert_env(env("b", "f/1", &i2, EnvState::Starting));
        s.insert_env(env("c", "g/1", &i1, EnvState::Ready));
        let f = s.version_routes("f/1");
        let g = s.version_routes("g/1");
        assert_eq!(ready_ids(&s, "f/1"), ["a"]);
        assert_eq!(ready_ids(&s, "g/1"), ["c"]);
        // Turning Ready (as the watcher does: change, then refresh) adds it.
        s.envs.get_mut("b").expect("env").state = EnvState::Ready;
        s.refresh_routes(["f/1"]);
        assert_eq!(ready_ids(&s, "f/1"), ["a", "b"]);
        // A Ready environment inserted later joins at once; a starting one does not.
        s.insert_env(env("d", "f/1", &i2, EnvState::Ready));
        s.insert_env(env("e", "f/1", &i2, EnvState::Starting));
        assert_eq!(ready_ids(&s, "f/1"), ["a", "b", "d"]);
        // Stopping one removes it.
        assert!(s.remove_env("a").is_some());
        assert!(s.remove_env("a").is_none());
        assert!(!f.is_ready("a"));
        assert_eq!(ready_ids(&s, "f/1"), ["b", "d"]);
        // A lost instance takes its environments of every version with it.
        s.instances.insert(
            "i-2".into(),
            InstanceSlot {
                id: "i-2".into(),
                capacity_provider: "cp".into(),
                zone: "z2".into(),
                instance_type: i2.instance_type.clone(),
                state: InstanceState::Running,
                handle: Some(i2.clone()),
                launched_at: String::new(),
                empty_since: None,
                cpu: CpuSampler::default(),
                retiring: false,
            },
        );
        s.remove_instance("i-2");
        assert!(s.instances.is_empty());
        assert!(ready_ids(&s, "f/1").is_empty());
        assert!(!s.envs.contains_key("e"));
        assert_eq!(ready_ids(&s, "g/1"), ["c"]);
        assert!(g.is_ready("c"));
        // The counters outlive route changes.
        s.stats("f/1")
            .invocations
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            s.existing_stats("f/1")
                .expect("stats")
                .invocations
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        assert!(s.existing_stats("h/1").is_none());
    }
}
