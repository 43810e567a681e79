//! The deployer: converges the environments on the agents to the published versions in the
//! store, and reports version state back (`Active`, `Failed`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use fleetfn_model::limits::DEFAULT_MIN_ENVIRONMENTS;
use fleetfn_model::runtimes;
use fleetfn_proto::{EnvState, EnvironmentRequest, Failure};
use fleetfn_server::records::version_key;
use fleetfn_server::{VersionRecord, VersionTransition};
use tokio_util::sync::CancellationToken;

use crate::{DataPlane, Env, Instance};

/// How often the deployer runs when nothing wakes it.
const PERIOD: Duration = Duration::from_secs(1);
/// How long an agent report request may wait for a change.
const REPORT_WAIT: Duration = Duration::from_secs(5);
/// Consecutive failed reports after which an instance is declared lost.
const LOST_AFTER: u32 = 3;

/// How many environments a version should have now.
fn desired_count(v: &VersionRecord) -> usize {
    if matches!(v.config.state.as_str(), "Deleting" | "Failed") {
        return 0;
    }
    let applied = &v.scaling.applied;
    let min = applied
        .min_execution_environments
        .unwrap_or(i64::from(DEFAULT_MIN_ENVIRONMENTS));
    let n = match applied.max_execution_environments {
        Some(max) => min.min(max),
        None => min,
    };
    usize::try_from(n.max(0)).unwrap_or(0)
}

fn env_request(v: &VersionRecord, region: &str) -> EnvironmentRequest {
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

impl DataPlane {
    pub(crate) async fn run_deployer(&self, stop: CancellationToken) {
        let mut changes = self.cp.changes();
        let mut reports = self.reports.subscribe();
        loop {
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

    /// The instances of a capacity provider, launching one per zone (subnet) that has none.
    async fn ensure_instances(&self, cp_name: &str) -> Vec<Arc<Instance>> {
        let Ok(Some(provider)) = self.cp.capacity_provider_by_name(cp_name).await else {
            return Vec::new();
        };
        let zones = provider.vpc_config.subnet_ids.clone();
        let have: HashSet<String> = self
            .state
            .read()
            .map(|s| {
                s.instances
                    .get(cp_name)
                    .map(|v| v.iter().map(|i| i.zone.clone()).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let mut launches = tokio::task::JoinSet::new();
        for zone in zones.into_iter().filter(|z| !have.contains(z)) {
            if self.stopping.is_cancelled() {
                break;
            }
            let provider = self.provider.clone();
            let cp = cp_name.to_string();
            launches.spawn(async move {
                let r = provider.launch(&cp, &zone).await;
                (zone, r)
            });
        }
        while let Some(done) = launches.join_next().await {
            let Ok((zone, result)) = done else { continue };
            match result {
                Ok(inst) => {
                    let inst = Arc::new(inst);
                    if let Ok(mut s) = self.state.write() {
                        s.instances
                            .entry(cp_name.to_string())
                            .or_default()
                            .push(inst.clone());
                    }
                    self.spawn_watcher(inst);
                }
                Err(e) => {
                    tracing::error!(error = %e, capacity_provider = cp_name, %zone, "cannot launch instance");
                }
            }
        }
        self.state
            .read()
            .map(|s| s.instances.get(cp_name).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Follows one agent's reports, updating environment states; declares it lost when it stops
    /// answering.
    fn spawn_watcher(&self, inst: Arc<Instance>) {
        let dp = self.clone();
        tokio::spawn(async move {
            let mut after: Option<u64> = None;
            let mut failures = 0;
            loop {
                match inst.client.report(after, REPORT_WAIT).await {
                    Ok(report) => {
                        failures = 0;
                        after = Some(report.revision);
                        let seen: HashMap<&str, _> = report
                            .environments
                            .iter()
                            .map(|e| (e.env_id.as_str(), e))
                            .collect();
                        let unknown: Vec<String> = dp
                            .state
                            .read()
                            .map(|s| {
                                report
                                    .environments
                                    .iter()
                                    .filter(|e| !s.envs.contains_key(&e.env_id))
                                    .map(|e| e.env_id.clone())
                                    .collect()
                            })
                            .unwrap_or_default();
                        // Environments the data plane does not know (a start whose answer was
                        // lost, a stop that failed) must not run unseen.
                        for id in unknown {
                            let client = inst.client.clone();
                            tokio::spawn(async move {
                                let _ = client.delete_environment(&id).await;
                            });
                        }
                        if let Ok(mut s) = dp.state.write() {
                            for env in s.envs.values_mut().filter(|e| e.instance.id == inst.id) {
                                match seen.get(env.env_id.as_str()) {
                                    Some(st) => {
                                        env.state = st.state;
                                        env.failure.clone_from(&st.failure);
                                        env.memory_bytes = st.memory_bytes;
                                        env.cpu_usage_ns = st.cpu_usage_ns;
                                    }
                                    None if env.state != EnvState::Starting => {
                                        env.state = EnvState::Exited;
                                    }
                                    None => {}
                                }
                            }
                        }
                        dp.reports.send_modify(|n| *n += 1);
                    }
                    Err(e) => {
                        failures += 1;
                        if failures >= LOST_AFTER {
                            tracing::warn!(instance = %inst.id, error = %e, "instance lost");
                            if let Ok(mut s) = dp.state.write() {
                                for list in s.instances.values_mut() {
                                    list.retain(|i| i.id != inst.id);
                                }
                                s.envs.retain(|_, e| e.instance.id != inst.id);
                            }
                            dp.reports.send_modify(|n| *n += 1);
                            inst.terminate().await;
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }

    async fn start_env(&self, v: &VersionRecord, vkey: &str, instances: &[Arc<Instance>]) {
        // Spread: the zone with the fewest environments of this version, then the emptiest.
        let pick = {
            let Ok(s) = self.state.read() else { return };
            instances
                .iter()
                .min_by_key(|i| {
                    let of_version = s
                        .envs
                        .values()
                        .filter(|e| e.instance.id == i.id && e.version_key == vkey)
                        .count();
                    let total = s.envs.values().filter(|e| e.instance.id == i.id).count();
                    (of_version, total)
                })
                .cloned()
        };
        let Some(inst) = pick else { return };
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
            in_flight: Arc::new(AtomicU32::new(0)),
            memory_bytes: None,
            cpu_usage_ns: None,
        };
        if let Ok(mut s) = self.state.write() {
            s.envs.insert(env_id.clone(), env);
        }
        if let Err(e) = inst.client.put_environment(&env_id, &req).await {
            tracing::warn!(error = %e, env = %env_id, "cannot start environment");
            if let Ok(mut s) = self.state.write() {
                s.envs.remove(&env_id);
            }
        }
    }

    async fn stop_env(&self, env_id: &str) {
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
                .insert(vkey.to_string(), (tokio::time::Instant::now() + next, next));
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
                    .is_none_or(|(until, _)| tokio::time::Instant::now() >= *until)
            })
            .unwrap_or(true)
    }

    /// One convergence pass.
    pub(crate) async fn deploy_once(&self) -> fleetfn_model::Result<()> {
        let versions = self.cp.deployable_versions().await?;
        let mut wanted_keys = HashSet::new();
        let mut wanted_cps: HashSet<String> = HashSet::new();
        for v in &versions {
            if self.stopping.is_cancelled() {
                return Ok(());
            }
            let vkey = version_key(&v.function, &v.version);
            let want = desired_count(v);
            let rolling_out =
                v.config.state == "Pending" || v.config.last_update_status == "InProgress";
            if want == 0 {
                // Scaled to zero (or Failed/Deleting): nothing to start; a publish with no
                // environments to wait for is done.
                if rolling_out && !matches!(v.config.state.as_str(), "Deleting" | "Failed") {
                    self.transition(v, &VersionTransition::Active).await;
                }
                continue;
            }
            wanted_keys.insert(vkey.clone());
            let Some(cp_name) = v.capacity_provider.clone() else {
                continue;
            };
            wanted_cps.insert(cp_name.clone());
            let instances = self.ensure_instances(&cp_name).await;
            if instances.is_empty() {
                continue;
            }
            // Snapshot of this version's environments.
            let (current, ready, failed, exited, stale) = {
                let Ok(s) = self.state.read() else { continue };
                let mine: Vec<&Env> = s.envs.values().filter(|e| e.version_key == vkey).collect();
                let cur: Vec<&&Env> = mine
                    .iter()
                    .filter(|e| e.publish_hash == v.publish_hash)
                    .collect();
                let live: Vec<String> = cur
                    .iter()
                    .filter(|e| matches!(e.state, EnvState::Starting | EnvState::Ready))
                    .map(|e| e.env_id.clone())
                    .collect();
                let ready = cur.iter().filter(|e| e.state == EnvState::Ready).count();
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
                let stale: Vec<String> = mine
                    .iter()
                    .filter(|e| e.publish_hash != v.publish_hash)
                    .map(|e| e.env_id.clone())
                    .collect();
                (live, ready, failed, exited, stale)
            };
            for id in &exited {
                self.stop_env(id).await;
            }
            // A rollout of this publish already failed: the previous publish keeps serving and
            // nothing of the broken one is started again (a new publish retries).
            if v.config.state == "Active" && v.config.last_update_status == "Failed" {
                for id in current.iter().chain(failed.iter().map(|(id, _)| id)) {
                    self.stop_env(id).await;
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
                        self.stop_env(id).await;
                    }
                    continue;
                }
                // A replacement that failed on an Active version: drop it and retry later,
                // backing off so a broken host does not spin.
                for (id, _) in &failed {
                    self.stop_env(id).await;
                }
                self.note_failure(&vkey);
            }
            if current.len() < want && self.may_start(&vkey) {
                for _ in current.len()..want {
                    self.start_env(v, &vkey, &instances).await;
                }
            } else if current.len() > want {
                // Stop the ones still starting first, then any.
                let mut by_readiness: Vec<(bool, String)> = {
                    let s = self.state.read().ok();
                    current
                        .iter()
                        .map(|id| {
                            let ready = s
                                .as_ref()
                                .and_then(|s| s.envs.get(id))
                                .is_some_and(|e| e.state == EnvState::Ready);
                            (ready, id.clone())
                        })
                        .collect()
                };
                by_readiness.sort();
                for (_, id) in by_readiness.iter().take(current.len() - want) {
                    self.stop_env(id).await;
                }
            }
            if ready >= want {
                self.clear_failures(&vkey);
                if rolling_out {
                    self.transition(v, &VersionTransition::Active).await;
                }
                // The new set serves: drain the previous publish of $LATEST.PUBLISHED.
                for id in &stale {
                    self.stop_env(id).await;
                }
            }
        }
        if self.stopping.is_cancelled() {
            return Ok(());
        }
        // Environments of versions that are gone, deleting or scaled to zero.
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
            self.stop_env(&id).await;
        }
        // A capacity provider with nothing to run keeps no instances (and a deleted one none).
        let idle: Vec<Arc<Instance>> = self
            .state
            .write()
            .map(|mut s| {
                let busy: HashSet<String> = s
                    .envs
                    .values()
                    .map(|e| e.instance.capacity_provider.clone())
                    .collect();
                let idle_cps: Vec<String> = s
                    .instances
                    .keys()
                    .filter(|cp| !busy.contains(*cp) && !wanted_cps.contains(*cp))
                    .cloned()
                    .collect();
                idle_cps
                    .iter()
                    .filter_map(|cp| s.instances.remove(cp))
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        for inst in idle {
            tracing::info!(instance = %inst.id, capacity_provider = %inst.capacity_provider, "terminating idle instance");
            tokio::spawn(async move { inst.terminate().await });
        }
        Ok(())
    }
}
