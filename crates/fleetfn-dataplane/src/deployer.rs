//! The deployer: converges the environments on the agents to the published versions in the
//! store and the scaler's counts, places them onto instances with `fleetfn_scheduler::place`
//! (launching instances when none fits, under `MaxVCpuCount`), drains what is no longer wanted,
//! terminates instances left empty, and reports version state back (`Active`, `Failed`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fleetfn_model::limits::{DEFAULT_MAX_VCPU, DEFAULT_MIN_ENVIRONMENTS};
use fleetfn_model::runtimes;
use fleetfn_proto::{EnvState, EnvironmentRequest, Failure};
use fleetfn_scheduler::{
    Arch, EnvRequest, InstanceState, PlacedEnv, PlacementError, PlacementInput, ProviderLimits,
    Target,
};
use fleetfn_server::records::version_key;
use fleetfn_server::{VersionRecord, VersionTransition};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{CpuSampler, DataPlane, Env, Instance, InstanceSlot, LaunchFailure, LaunchSpec};

/// How often the deployer runs when nothing wakes it; also the scaler's period.
const PERIOD: Duration = Duration::from_secs(1);
/// How long an agent report request may wait for a change: the agents' heartbeat.
const REPORT_WAIT: Duration = Duration::from_secs(1);
/// Consecutive failed reports after which an instance is declared lost.
const LOST_AFTER: u32 = 3;
/// First and largest delay between retries of a failed instance launch.
const LAUNCH_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// A version's `[min, max]` environments from its applied scaling config (LMI default min 3, no
/// max); `None` when it should run nothing (Failed, Deleting).
pub(crate) fn bounds(v: &VersionRecord) -> Option<(u32, Option<u32>)> {
    if matches!(
        v.config.state,
        fleetfn_model::State::Deleting | fleetfn_model::State::Failed
    ) {
        return None;
    }
    let applied = &v.scaling.applied;
    let to_u32 = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    let max = applied.max_execution_environments.map(to_u32);
    let min = applied
        .min_execution_environments
        .map_or(DEFAULT_MIN_ENVIRONMENTS, to_u32);
    Some((max.map_or(min, |m| min.min(m)), max))
}

/// The provider's architecture (`x86_64` unless it says `arm64`).
fn arch_of(p: &fleetfn_model::types::CapacityProvider) -> Arch {
    match p
        .instance_requirements
        .architectures
        .as_ref()
        .and_then(|a| a.first())
        .map(String::as_str)
    {
        Some("arm64") => Arch::Arm64,
        _ => Arch::X86_64,
    }
}

pub(crate) fn env_request(v: &VersionRecord, region: &str) -> EnvironmentRequest {
    let c = &v.config;
    let lmi = c
        .capacity_provider_config
        .as_ref()
        .and_then(|p| p.lambda_managed_instances_capacity_provider_config.clone());
    let ratio = lmi
        .as_ref()
        .and_then(|l| l.memory_gib_per_vcpu)
        .unwrap_or(2.0);
    let concurrency = lmi
        .as_ref()
        .and_then(|l| l.per_execution_environment_max_concurrency)
        .unwrap_or(1);
    EnvironmentRequest {
        function_name: c.function_name.clone(),
        version: v.version.clone(),
        qualified_arn: c.function_arn.clone(),
        runtime: c.runtime.clone().unwrap_or_default(),
        handler: c.handler.clone(),
        code_sha256_hex: v.code_hex.clone(),
        code_size: c.code_size,
        memory_mb: c.memory_size,
        timeout_secs: c.timeout,
        max_concurrency: u32::try_from(concurrency.clamp(1, 1600)).unwrap_or(1),
        vcpus: runtimes::vcpus(c.memory_size, ratio),
        ephemeral_storage_mb: u32::try_from(c.ephemeral_storage.size).unwrap_or(512),
        region: region.to_string(),
        env_vars: c
            .environment
            .as_ref()
            .map(|e| e.variables.clone())
            .unwrap_or_default(),
    }
}

/// The placement key of a version's publish: environments of an older publish of the same
/// version only take room.
fn placement_key(vkey: &str, publish_hash: &str) -> String {
    format!("{vkey}#{publish_hash}")
}

/// One environment as scale-in sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StopCandidate {
    pub env_id: String,
    pub zone: String,
    pub ready: bool,
    pub instance_id: String,
    /// Environments (of any version) on its instance.
    pub instance_load: usize,
}

/// Which `n` environments to stop: always from the zone with the most (so zones stay balanced
/// within one), starting ones before Ready ones, and from the emptiest instance first (so
/// instances empty out and can be terminated). Pure.
pub(crate) fn choose_to_stop(mut c: Vec<StopCandidate>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n.min(c.len()) {
        let mut per_zone: HashMap<&str, usize> = HashMap::new();
        for e in &c {
            *per_zone.entry(e.zone.as_str()).or_default() += 1;
        }
        let Some(i) = c
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| {
                per_zone[b.zone.as_str()]
                    .cmp(&per_zone[a.zone.as_str()])
                    .then(a.ready.cmp(&b.ready))
                    .then(a.instance_load.cmp(&b.instance_load))
                    .then_with(|| a.env_id.cmp(&b.env_id))
            })
            .map(|(i, _)| i)
        else {
            break;
        };
        let e = c.swap_remove(i);
        for other in c.iter_mut().filter(|o| o.instance_id == e.instance_id) {
            other.instance_load = other.instance_load.saturating_sub(1);
        }
        out.push(e.env_id);
    }
    out
}

/// An environment as one deploy pass sees it.
struct EnvView {
    env_id: String,
    publish_hash: String,
    state: EnvState,
    failure: Option<Failure>,
}

/// The environments of one provider's versions, for scale-in and rollouts.
#[derive(Default)]
struct TrimView {
    live: HashMap<String, Vec<StopCandidate>>,
    all: HashMap<String, Vec<(String, String)>>,
}

/// What the deployer wants of one version in this pass.
struct Wanted<'a> {
    v: &'a VersionRecord,
    vkey: String,
    /// Ready environments the publish needs before it is `Active`/`Successful` and an older
    /// publish drains: its minimum, and at least one while an older publish still serves.
    min: u32,
    desired: u32,
    rolling_out: bool,
}

impl DataPlane {
    pub(crate) async fn run_deployer(&self, stop: CancellationToken) {
        let mut changes = self.cp.changes();
        let mut reports = self.reports.subscribe();
        let mut last_tick: Option<Instant> = None;
        let mut last_flush = Instant::now();
        loop {
            if last_flush.elapsed() >= crate::accounting::FLUSH_EVERY {
                last_flush = Instant::now();
                let dp = self.clone();
                tokio::spawn(async move { dp.flush_usage().await });
            }
            if last_tick.is_none_or(|t| t.elapsed() >= PERIOD) {
                let now = Instant::now();
                let elapsed = last_tick.map_or(Duration::ZERO, |t| now - t);
                last_tick = Some(now);
                if let Err(e) = self.scale_tick(elapsed).await {
                    tracing::warn!(error = %e, "scaler tick failed");
                }
            }
            if let Err(e) = self.deploy_once().await {
                tracing::warn!(error = %e, "deploy pass failed");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = changes.changed() => {}
                _ = reports.changed() => {}
                () = tokio::time::sleep(PERIOD) => {}
            }
        }
    }

    fn bump(&self) {
        self.reports.send_modify(|n| *n += 1);
    }

    /// Launches one instance in the background: a `pending` slot now, `running` (and watched)
    /// once its agent answers; a failure removes the slot and backs the provider off.
    fn launch(&self, spec: LaunchSpec) {
        let id = crate::new_instance_id();
        if let Ok(mut s) = self.state.write() {
            s.instances.insert(
                id.clone(),
                InstanceSlot {
                    id: id.clone(),
                    capacity_provider: spec.capacity_provider.clone(),
                    zone: spec.zone.clone(),
                    instance_type: spec.instance_type.clone(),
                    state: InstanceState::Pending,
                    handle: None,
                    launched_at: fleetfn_model::time::now_lambda(),
                    empty_since: None,
                    cpu: CpuSampler::default(),
                },
            );
        }
        let dp = self.clone();
        tokio::spawn(async move {
            let result = dp.provider.launch(&id, &spec).await;
            match result {
                Ok(inst) => {
                    let inst = Arc::new(inst);
                    let keep = dp
                        .state
                        .write()
                        .map(|mut s| {
                            s.launch_failures.remove(&spec.capacity_provider);
                            match s.instances.get_mut(&id) {
                                Some(slot) => {
                                    slot.state = InstanceState::Running;
                                    slot.handle = Some(inst.clone());
                                    slot.empty_since = Some(Instant::now());
                                    true
                                }
                                None => false,
                            }
                        })
                        .unwrap_or(false);
                    if keep && !dp.stopping.is_cancelled() {
                        dp.spawn_watcher(inst);
                    } else {
                        dp.provider.terminate(&id).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, capacity_provider = %spec.capacity_provider, zone = %spec.zone, instance_type = %spec.instance_type.name, "instance launch failed");
                    if let Ok(mut s) = dp.state.write() {
                        s.instances.remove(&id);
                        let delay = s
                            .launch_failures
                            .get(&spec.capacity_provider)
                            .map_or(LAUNCH_BACKOFF.0, |f| (f.delay * 2).min(LAUNCH_BACKOFF.1));
                        s.launch_failures.insert(
                            spec.capacity_provider.clone(),
                            LaunchFailure {
                                message: e.to_string(),
                                at: fleetfn_model::time::now_lambda(),
                                retry_at: Instant::now() + delay,
                                delay,
                            },
                        );
                    }
                }
            }
            dp.bump();
        });
    }

    /// Forgets an instance and everything on it (the router stops using it at once), and
    /// terminates it.
    async fn drop_instance(&self, id: &str) {
        if let Ok(mut s) = self.state.write() {
            s.instances.remove(id);
            s.envs.retain(|_, e| e.instance.id != id);
        }
        self.bump();
        self.provider.terminate(id).await;
    }

    /// Follows one agent's reports (its heartbeat, at least every [`REPORT_WAIT`]), updating
    /// environment states and utilization; declares it lost after [`LOST_AFTER`] failed reports.
    fn spawn_watcher(&self, inst: Arc<Instance>) {
        let dp = self.clone();
        let host_scale = self.provider.capacity().vcpu_scale;
        tokio::spawn(async move {
            let mut after: Option<u64> = None;
            let mut failures = 0;
            loop {
                let known = dp
                    .state
                    .read()
                    .is_ok_and(|s| s.instances.contains_key(&inst.id));
                if !known || dp.stopping.is_cancelled() {
                    return;
                }
                match inst.client.report(after, REPORT_WAIT).await {
                    Ok(report) => {
                        failures = 0;
                        after = Some(report.revision);
                        let now = Instant::now();
                        let seen: HashMap<&str, _> = report
                            .environments
                            .iter()
                            .map(|e| (e.env_id.as_str(), e))
                            .collect();
                        let mut unknown = Vec::new();
                        let mut changed = false;
                        // (version key, init ms) of environments that just turned Ready.
                        let mut inits = Vec::new();
                        if let Ok(mut s) = dp.state.write() {
                            for e in &report.environments {
                                if !s.envs.contains_key(&e.env_id) {
                                    unknown.push(e.env_id.clone());
                                }
                            }
                            for env in s.envs.values_mut().filter(|e| e.instance.id == inst.id) {
                                match seen.get(env.env_id.as_str()) {
                                    Some(st) => {
                                        if env.state != st.state {
                                            changed = true;
                                            if st.state == EnvState::Ready
                                                && let Some(ms) = st.init_ms
                                            {
                                                inits.push((env.version_key.clone(), ms));
                                            }
                                        }
                                        env.state = st.state;
                                        env.failure.clone_from(&st.failure);
                                        env.memory_bytes = st.memory_bytes;
                                        env.cpu_usage_ns = st.cpu_usage_ns;
                                        env.cpu.observe(
                                            now,
                                            st.cpu_usage_ns,
                                            env.vcpus * host_scale,
                                        );
                                    }
                                    None if env.state != EnvState::Starting => {
                                        env.state = EnvState::Exited;
                                        changed = true;
                                    }
                                    None => {}
                                }
                            }
                            // Instance CPU: what its environments used, over its own vCPUs.
                            let used: Option<u64> = s
                                .envs
                                .values()
                                .filter(|e| e.instance.id == inst.id)
                                .map(|e| e.cpu_usage_ns)
                                .sum();
                            if let Some(slot) = s.instances.get_mut(&inst.id) {
                                let cpus = f64::from(slot.instance_type.vcpus) * host_scale;
                                slot.cpu.observe(now, used, cpus);
                            }
                            for (vkey, ms) in inits {
                                s.stats(&vkey)
                                    .metrics
                                    .initialized(Duration::from_millis(ms));
                            }
                        }
                        // Environments the data plane does not know (a start whose answer was
                        // lost, a stop that failed) must not run unseen.
                        for id in unknown {
                            let client = inst.client.clone();
                            tokio::spawn(async move {
                                let _ = client.delete_environment(&id).await;
                            });
                        }
                        if changed {
                            dp.bump();
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        // A process known to be gone needs no more heartbeats to be declared lost.
                        if failures >= LOST_AFTER || !dp.provider.is_running(&inst.id) {
                            tracing::warn!(instance = %inst.id, zone = %inst.zone, error = %e, "instance lost: its environments will be replaced");
                            dp.drop_instance(&inst.id).await;
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }

    async fn start_env(&self, v: &VersionRecord, vkey: &str, inst: Arc<Instance>) {
        let env_id = format!("e-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let req = env_request(v, &self.cp.scope().region);
        let env = Env {
            env_id: env_id.clone(),
            instance: inst.clone(),
            version_key: vkey.to_string(),
            publish_hash: v.publish_hash.clone(),
            state: EnvState::Starting,
            failure: None,
            max_concurrency: req.max_concurrency,
            vcpus: req.vcpus,
            memory_mib: u64::from(req.memory_mb),
            in_flight: Arc::new(AtomicU32::new(0)),
            memory_bytes: None,
            cpu_usage_ns: None,
            cpu: CpuSampler::default(),
        };
        if let Ok(mut s) = self.state.write() {
            s.envs.insert(env_id.clone(), env);
            if let Some(slot) = s.instances.get_mut(&inst.id) {
                slot.empty_since = None;
            }
        }
        let dp = self.clone();
        tokio::spawn(async move {
            if let Err(e) = inst.client.put_environment(&env_id, &req).await {
                tracing::warn!(error = %e, env = %env_id, "cannot start environment");
                if let Ok(mut s) = dp.state.write() {
                    s.envs.remove(&env_id);
                }
                dp.bump();
            }
        });
    }

    /// Stops routing to an environment at once and asks its agent to drain and stop it (the
    /// agent lets in-flight invokes finish up to the timeout, then SIGTERM, then SIGKILL).
    fn stop_env(&self, env_id: &str) {
        let env = self
            .state
            .write()
            .ok()
            .and_then(|mut s| s.envs.remove(env_id));
        if let Some(env) = env {
            let client = env.instance.client.clone();
            let id = env.env_id.clone();
            tokio::spawn(async move {
                if let Err(e) = client.delete_environment(&id).await {
                    tracing::warn!(error = %e, env = %id, "cannot stop environment");
                }
            });
        }
    }

    /// Applies a version transition; a conflict (the version changed meanwhile) is left to
    /// the next pass.
    async fn transition(&self, v: &VersionRecord, t: &VersionTransition) {
        if let Err(e) = self
            .cp
            .transition_version(&v.function, &v.version, &v.publish_hash, t)
            .await
        {
            tracing::debug!(error = %e, function = %v.function, version = %v.version, "version transition deferred");
        }
    }

    /// Records a failed replacement: the next start of this version waits 1 s, doubling to 60 s.
    fn note_failure(&self, vkey: &str) {
        if let Ok(mut s) = self.state.write() {
            let next = s
                .backoff
                .get(vkey)
                .map_or(Duration::from_secs(1), |(_, d)| {
                    (*d * 2).min(Duration::from_secs(60))
                });
            s.backoff
                .insert(vkey.to_string(), (Instant::now() + next, next));
        }
    }

    fn clear_failures(&self, vkey: &str) {
        if let Ok(mut s) = self.state.write() {
            s.backoff.remove(vkey);
        }
    }

    fn may_start(&self, vkey: &str) -> bool {
        self.state
            .read()
            .map(|s| {
                s.backoff
                    .get(vkey)
                    .is_none_or(|(until, _)| Instant::now() >= *until)
            })
            .unwrap_or(true)
    }

    /// One convergence pass.
    pub(crate) async fn deploy_once(&self) -> fleetfn_model::Result<()> {
        let versions = self.cp.deployable_versions().await?;
        // One pass over the environments, grouped by version.
        let index: HashMap<String, Vec<EnvView>> = self
            .state
            .read()
            .map(|s| {
                let mut m: HashMap<String, Vec<EnvView>> = HashMap::new();
                for e in s.envs.values() {
                    m.entry(e.version_key.clone()).or_default().push(EnvView {
                        env_id: e.env_id.clone(),
                        publish_hash: e.publish_hash.clone(),
                        state: e.state,
                        failure: e.failure.clone(),
                    });
                }
                m
            })
            .unwrap_or_default();
        let mut wanted_keys = HashSet::new();
        let mut by_cp: HashMap<String, Vec<Wanted<'_>>> = HashMap::new();
        for v in &versions {
            if self.stopping.is_cancelled() {
                return Ok(());
            }
            let vkey = version_key(&v.function, &v.version);
            let rolling_out = v.config.state == fleetfn_model::State::Pending
                || v.config.last_update_status == fleetfn_model::LastUpdateStatus::InProgress;
            let Some((min, max)) = bounds(v) else {
                continue;
            };
            // A rollout takes over from an older publish that still serves (e.g. Min 0 with
            // environments not scaled in yet): it needs at least one Ready environment of its
            // own before it reports Successful and the older one drains.
            let older_serving = index.get(&vkey).is_some_and(|l| {
                l.iter()
                    .any(|e| e.publish_hash != v.publish_hash && e.state == EnvState::Ready)
            });
            let min = if rolling_out && older_serving && max != Some(0) {
                min.max(1)
            } else {
                min
            };
            if max == Some(0) || (min == 0 && rolling_out) {
                // Scaled to zero: nothing to start; a publish with nothing to wait for is done.
                if rolling_out {
                    self.transition(v, &VersionTransition::Active).await;
                }
                if max == Some(0) {
                    continue;
                }
            }
            wanted_keys.insert(vkey.clone());
            let Some(cp_name) = v.capacity_provider.clone() else {
                continue;
            };
            // Snapshot of this version's environments of the current publish.
            let (current, failed, exited) = {
                let cur: Vec<&EnvView> = index
                    .get(&vkey)
                    .map(|l| {
                        l.iter()
                            .filter(|e| e.publish_hash == v.publish_hash)
                            .collect()
                    })
                    .unwrap_or_default();
                let live: Vec<String> = cur
                    .iter()
                    .filter(|e| matches!(e.state, EnvState::Starting | EnvState::Ready))
                    .map(|e| e.env_id.clone())
                    .collect();
                let failed: Vec<(String, Option<Failure>)> = cur
                    .iter()
                    .filter(|e| e.state == EnvState::Failed)
                    .map(|e| (e.env_id.clone(), e.failure.clone()))
                    .collect();
                let exited: Vec<String> = cur
                    .iter()
                    .filter(|e| matches!(e.state, EnvState::Exited | EnvState::Draining))
                    .map(|e| e.env_id.clone())
                    .collect();
                (live, failed, exited)
            };
            for id in &exited {
                self.stop_env(id);
            }
            // A rollout of this publish already failed: the previous publish keeps serving and
            // nothing of the broken one is started again (a new publish retries).
            if v.config.state == fleetfn_model::State::Active
                && v.config.last_update_status == fleetfn_model::LastUpdateStatus::Failed
            {
                for id in current.iter().chain(failed.iter().map(|(id, _)| id)) {
                    self.stop_env(id);
                }
                continue;
            }
            if let Some((_, failure)) = failed.first() {
                let failure = failure.clone().unwrap_or(Failure {
                    reason_code: "FunctionError.RuntimeInitError".into(),
                    reason: "The execution environment failed to initialize.".into(),
                });
                if rolling_out {
                    self.transition(
                        v,
                        &VersionTransition::Failed {
                            reason_code: failure.reason_code.clone(),
                            reason: failure.reason.clone(),
                        },
                    )
                    .await;
                    for id in current.iter().chain(failed.iter().map(|(id, _)| id)) {
                        self.stop_env(id);
                    }
                    continue;
                }
                // A replacement that failed on an Active version: drop it and retry later,
                // backing off so a broken host does not spin.
                for (id, _) in &failed {
                    self.stop_env(id);
                }
                self.note_failure(&vkey);
            }
            let desired = if rolling_out {
                min
            } else {
                // Until the scaler has sized the version (its first tick after the version
                // turned Active), keep what runs: a minimum lowered right after a publish must
                // not stop environments that serve.
                let running = u32::try_from(current.len()).unwrap_or(u32::MAX);
                let scaler = self
                    .state
                    .read()
                    .ok()
                    .and_then(|s| s.scale.get(&vkey).map(|x| x.desired));
                crate::scaling::desired_within((min, max), scaler, running)
            };
            by_cp.entry(cp_name).or_default().push(Wanted {
                v,
                vkey,
                min,
                desired,
                rolling_out,
            });
        }
        if self.stopping.is_cancelled() {
            return Ok(());
        }
        for (cp_name, wanted) in &by_cp {
            self.converge_provider(cp_name, wanted).await?;
        }
        if self.stopping.is_cancelled() {
            return Ok(());
        }
        // Environments of versions that are gone, deleting, failed or scaled to zero.
        let orphans: Vec<String> = self
            .state
            .read()
            .map(|s| {
                s.envs
                    .values()
                    .filter(|e| !wanted_keys.contains(&e.version_key))
                    .map(|e| e.env_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for id in orphans {
            self.stop_env(&id);
        }
        self.retire_instances(&by_cp.keys().cloned().collect());
        Ok(())
    }

    /// Places one capacity provider's versions onto its instances and starts, launches and stops
    /// what the plan says.
    async fn converge_provider(
        &self,
        cp_name: &str,
        wanted: &[Wanted<'_>],
    ) -> fleetfn_model::Result<()> {
        let Some(provider) = self.cp.capacity_provider_by_name(cp_name).await? else {
            return Ok(());
        };
        let arch = arch_of(&provider);
        let req = &provider.instance_requirements;
        let limits = ProviderLimits {
            max_vcpu: provider
                .capacity_provider_scaling_config
                .max_vcpu_count
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(DEFAULT_MAX_VCPU),
            arch,
            instance_types: self.cfg.catalog.allowed(
                arch,
                req.allowed_instance_types.as_deref(),
                req.excluded_instance_types.as_deref(),
            ),
        };
        let region = self.cp.scope().region.clone();
        let (input, slots) = {
            let Ok(s) = self.state.read() else {
                return Ok(());
            };
            let slots: HashMap<String, InstanceSlot> = s
                .instances
                .values()
                .filter(|i| i.capacity_provider == cp_name)
                .map(|i| (i.id.clone(), i.clone()))
                .collect();
            let mut on: HashMap<&str, Vec<PlacedEnv>> = HashMap::new();
            for e in s.envs.values() {
                if slots.contains_key(&e.instance.id) {
                    on.entry(e.instance.id.as_str())
                        .or_default()
                        .push(PlacedEnv {
                            version: placement_key(&e.version_key, &e.publish_hash),
                            vcpus: e.vcpus,
                            memory_mib: e.memory_mib,
                        });
                }
            }
            let instances = slots
                .values()
                .map(|slot| fleetfn_scheduler::Instance {
                    id: slot.id.clone(),
                    instance_type: slot.instance_type.clone(),
                    zone: slot.zone.clone(),
                    state: slot.state,
                    environments: on.remove(slot.id.as_str()).unwrap_or_default(),
                })
                .collect();
            let requests = wanted
                .iter()
                .map(|w| {
                    let r = env_request(w.v, &region);
                    EnvRequest {
                        version: placement_key(&w.vkey, &w.v.publish_hash),
                        vcpus: r.vcpus,
                        memory_mib: u64::from(r.memory_mb),
                        count: w.desired,
                        min: w.min,
                    }
                })
                .collect();
            (
                PlacementInput {
                    limits,
                    zones: provider.vpc_config.subnet_ids.clone(),
                    instances,
                    requests,
                },
                slots,
            )
        };
        let plan = fleetfn_scheduler::place(&input);

        // Launches, unless the provider is backing off after a failed launch.
        let may_launch = self.state.read().is_ok_and(|s| {
            s.launch_failures
                .get(cp_name)
                .is_none_or(|f| Instant::now() >= f.retry_at)
        });
        if may_launch && !self.stopping.is_cancelled() {
            for l in &plan.launches {
                self.launch(LaunchSpec {
                    capacity_provider: cp_name.to_string(),
                    zone: l.zone.clone(),
                    instance_type: l.instance_type.clone(),
                });
            }
        }
        if let Ok(mut s) = self.state.write() {
            let deferred = if may_launch { 0 } else { plan.launches.len() };
            s.metrics
                .deferred_launches
                .insert(cp_name.to_string(), deferred);
        }
        // Starts on running instances (a pending one takes its environments once it runs).
        let by_key: HashMap<String, &Wanted<'_>> = wanted
            .iter()
            .map(|w| (placement_key(&w.vkey, &w.v.publish_hash), w))
            .collect();
        for a in &plan.assignments {
            let Target::Existing(id) = &a.target else {
                continue;
            };
            let Some(w) = by_key.get(&a.version) else {
                continue;
            };
            let Some(inst) = slots.get(id).and_then(|s| s.handle.clone()) else {
                continue;
            };
            if self.may_start(&w.vkey) && !self.stopping.is_cancelled() {
                self.start_env(w.v, &w.vkey, inst).await;
            }
        }
        // What placement could not give.
        let unplaced: HashMap<&str, &fleetfn_scheduler::Unplaced> = plan
            .unplaced
            .iter()
            .map(|u| (u.version.as_str(), u))
            .collect();
        for w in wanted {
            let key = placement_key(&w.vkey, &w.v.publish_hash);
            let u = unplaced.get(key.as_str());
            if let Ok(mut s) = self.state.write() {
                s.stats(&w.vkey)
                    .capped
                    .store(u.is_some(), Ordering::Relaxed);
            }
            if let Some(u) = u
                && u.below_min
                && w.rolling_out
            {
                let (code, reason) = match u.reason {
                    PlacementError::CapacityProviderScalingLimitExceeded => (
                        "CapacityProviderScalingLimitExceeded",
                        format!(
                            "The capacity provider {cp_name} cannot fit the {} minimum execution environments within its MaxVCpuCount of {}.",
                            w.min, input.limits.max_vcpu
                        ),
                    ),
                    PlacementError::NoInstanceTypeFits => (
                        "InsufficientCapacity",
                        format!(
                            "No instance type allowed by capacity provider {cp_name} fits an execution environment of {} MB.",
                            w.v.config.memory_size
                        ),
                    ),
                    PlacementError::NoZones => (
                        "InsufficientCapacity",
                        format!("The capacity provider {cp_name} has no subnets."),
                    ),
                };
                tracing::warn!(function = %w.v.function, version = %w.v.version, %code, "{reason}");
                self.transition(
                    w.v,
                    &VersionTransition::Failed {
                        reason_code: code.into(),
                        reason,
                    },
                )
                .await;
            }
        }
        // Scale-in and rollouts, from one fresh look at the provider's environments.
        let view = self.trim_view(wanted);
        for w in wanted {
            self.trim_version(w, &view).await;
        }
        Ok(())
    }

    /// Per placement key: the live environments of that publish (as scale-in candidates) and
    /// how many are Ready; per version key: the environments of other publishes.
    fn trim_view(&self, wanted: &[Wanted<'_>]) -> TrimView {
        let mut view = TrimView::default();
        let Ok(s) = self.state.read() else {
            return view;
        };
        let keys: HashSet<&str> = wanted.iter().map(|w| w.vkey.as_str()).collect();
        let mut load: HashMap<&str, usize> = HashMap::new();
        for e in s.envs.values() {
            *load.entry(e.instance.id.as_str()).or_default() += 1;
        }
        for e in s.envs.values() {
            if !keys.contains(e.version_key.as_str()) {
                continue;
            }
            if matches!(e.state, EnvState::Starting | EnvState::Ready) {
                view.live
                    .entry(placement_key(&e.version_key, &e.publish_hash))
                    .or_default()
                    .push(StopCandidate {
                        env_id: e.env_id.clone(),
                        zone: e.instance.zone.clone(),
                        ready: e.state == EnvState::Ready,
                        instance_id: e.instance.id.clone(),
                        instance_load: load.get(e.instance.id.as_str()).copied().unwrap_or(0),
                    });
            }
            view.all
                .entry(e.version_key.clone())
                .or_default()
                .push((e.env_id.clone(), e.publish_hash.clone()));
        }
        view
    }

    /// Stops environments above the desired count (zone-balanced), turns a rollout `Active`
    /// when its minimum is Ready, and drains an older publish once the new one serves.
    async fn trim_version(&self, w: &Wanted<'_>, view: &TrimView) {
        let live = view
            .live
            .get(&placement_key(&w.vkey, &w.v.publish_hash))
            .cloned()
            .unwrap_or_default();
        let ready = live.iter().filter(|c| c.ready).count();
        let stale: Vec<String> = view
            .all
            .get(&w.vkey)
            .map(|l| {
                l.iter()
                    .filter(|(_, h)| *h != w.v.publish_hash)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let desired = usize::try_from(w.desired).unwrap_or(usize::MAX);
        if live.len() > desired {
            for id in choose_to_stop(live.clone(), live.len() - desired) {
                self.stop_env(&id);
            }
        }
        let want_ready = usize::try_from(w.min).unwrap_or(usize::MAX).min(desired);
        if ready >= want_ready {
            self.clear_failures(&w.vkey);
            if w.rolling_out {
                self.transition(w.v, &VersionTransition::Active).await;
            }
            // The new set serves: drain the previous publish of $LATEST.PUBLISHED.
            if ready > 0 || want_ready == 0 {
                for id in &stale {
                    self.stop_env(id);
                }
            }
        }
    }

    /// Terminates instances with no environment: at once for a provider with nothing to run,
    /// after [`crate::DataPlaneConfig::idle_instance_after`] otherwise.
    fn retire_instances(&self, busy_cps: &HashSet<String>) {
        let now = Instant::now();
        let idle_after = self.cfg.idle_instance_after;
        let retire: Vec<String> = self
            .state
            .write()
            .map(|mut s| {
                let used: HashSet<String> =
                    s.envs.values().map(|e| e.instance.id.clone()).collect();
                let mut out = Vec::new();
                for slot in s.instances.values_mut() {
                    if slot.state != InstanceState::Running {
                        continue;
                    }
                    if used.contains(&slot.id) {
                        slot.empty_since = None;
                        continue;
                    }
                    let since = *slot.empty_since.get_or_insert(now);
                    if !busy_cps.contains(&slot.capacity_provider)
                        || now.saturating_duration_since(since) >= idle_after
                    {
                        slot.state = InstanceState::Draining;
                        out.push(slot.id.clone());
                    }
                }
                out
            })
            .unwrap_or_default();
        for id in retire {
            tracing::info!(instance = %id, "terminating empty instance");
            let dp = self.clone();
            tokio::spawn(async move { dp.drop_instance(&id).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, zone: &str, ready: bool, load: usize) -> StopCandidate {
        StopCandidate {
            env_id: id.into(),
            zone: zone.into(),
            ready,
            instance_id: format!("i-{id}"),
            instance_load: load,
        }
    }

    #[test]
    fn scale_in_keeps_zones_balanced_and_prefers_starting_and_emptiest() {
        let envs = vec![
            c("a1", "a", true, 3),
            c("a2", "a", true, 1),
            c("a3", "a", false, 3),
            c("b1", "b", true, 1),
            c("b2", "b", true, 1),
            c("c1", "c", true, 1),
        ];
        // Zone a has 3: first its starting one, then (a and b tie at 2) the emptiest instance.
        let out = choose_to_stop(envs.clone(), 3);
        assert_eq!(out[0], "a3");
        assert_eq!(out.len(), 3);
        let mut left: HashMap<String, usize> = HashMap::new();
        for e in envs.iter().filter(|e| !out.contains(&e.env_id)) {
            *left.entry(e.zone.clone()).or_default() += 1;
        }
        let (lo, hi) = (left.values().min().unwrap(), left.values().max().unwrap());
        assert!(hi - lo <= 1, "zones unbalanced after scale-in: {left:?}");
        assert!(out.contains(&"a2".to_string()), "{out:?}");
        // Never more than there are.
        assert_eq!(choose_to_stop(envs, 10).len(), 6);
    }
}
