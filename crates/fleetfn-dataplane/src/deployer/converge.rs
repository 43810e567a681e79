//! One convergence pass: from the deployable versions and the scaler's counts to what each
//! version wants (rollouts, scale to zero, failed starts), placement per capacity provider
//! (`fleetfn_scheduler::place`: launches, starts, what could not be placed), scale-in and the
//! drain of an older publish ([`choose_to_stop`], pure), version transitions (`Active`,
//! `Failed`), and the retirement of empty instances.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use fleetfn_model::limits::DEFAULT_MAX_VCPU;
use fleetfn_proto::{EnvState, Failure};
use fleetfn_scheduler::{
    EnvRequest, InstanceState, PlacedEnv, PlacementError, PlacementInput, ProviderLimits, Target,
};
use fleetfn_server::records::version_key;
use fleetfn_server::{VersionRecord, VersionTransition};
use tokio::time::Instant;

use crate::state::InstanceSlot;
use crate::version::{arch_of, bounds, desired_within, env_request, placement_key, rolling_out};
use crate::{DataPlane, LaunchSpec};

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
    /// Per placement key: live environments on retiring instances (not scale-in candidates;
    /// stopped once the key has its desired count Ready elsewhere).
    retiring: HashMap<String, Vec<String>>,
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

    /// One convergence pass.
    pub(crate) async fn deploy_once(&self) -> fleetfn_model::Result<()> {
        let versions = self.cp.deployable_versions().await?;
        // One pass over the environments, grouped by version.
        let mut index: HashMap<String, Vec<EnvView>> = HashMap::new();
        for e in self.state.read().envs.values() {
            index
                .entry(e.version_key.clone())
                .or_default()
                .push(EnvView {
                    env_id: e.env_id.clone(),
                    publish_hash: e.publish_hash.clone(),
                    state: e.state,
                    failure: e.failure.clone(),
                });
        }
        let mut wanted_keys = HashSet::new();
        let mut by_cp: HashMap<String, Vec<Wanted<'_>>> = HashMap::new();
        for v in &versions {
            if self.stopping.is_cancelled() {
                return Ok(());
            }
            let vkey = version_key(&v.function, &v.version);
            let rolling_out = rolling_out(v);
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
                let scaler = self.state.read().scale.get(&vkey).map(|x| x.desired);
                desired_within((min, max), scaler, running)
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
            .envs
            .values()
            .filter(|e| !wanted_keys.contains(&e.version_key))
            .map(|e| e.env_id.clone())
            .collect();
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
        self.mark_retiring(cp_name);
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
            let s = self.state.read();
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
        let may_launch = self.may_launch(cp_name);
        if may_launch && !self.stopping.is_cancelled() {
            for l in &plan.launches {
                self.launch(LaunchSpec {
                    capacity_provider: cp_name.to_string(),
                    zone: l.zone.clone(),
                    instance_type: l.instance_type.clone(),
                });
            }
        }
        let deferred = if may_launch { 0 } else { plan.launches.len() };
        self.state
            .write()
            .deferred_launches
            .insert(cp_name.to_string(), deferred);
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
            self.state
                .write()
                .stats(&w.vkey)
                .capped
                .store(u.is_some(), Ordering::Relaxed);
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
        let s = self.state.read();
        let keys: HashSet<&str> = wanted.iter().map(|w| w.vkey.as_str()).collect();
        let mut load: HashMap<&str, usize> = HashMap::new();
        for e in s.envs.values() {
            *load.entry(e.instance.id.as_str()).or_default() += 1;
        }
        for e in s.envs.values() {
            if !keys.contains(e.version_key.as_str()) {
                continue;
            }
            let on_retiring = s.instances.get(&e.instance.id).is_some_and(|i| i.retiring);
            if on_retiring && matches!(e.state, EnvState::Starting | EnvState::Ready) {
                view.retiring
                    .entry(placement_key(&e.version_key, &e.publish_hash))
                    .or_default()
                    .push(e.env_id.clone());
            } else if matches!(e.state, EnvState::Starting | EnvState::Ready) {
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
        // Environments on a retiring instance drain once their replacements serve.
        if ready >= desired
            && let Some(old) = view
                .retiring
                .get(&placement_key(&w.vkey, &w.v.publish_hash))
        {
            for id in old {
                tracing::info!(env = %id, "environment on a retiring instance replaced: draining it");
                self.stop_env(id);
            }
        }
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

    /// Marks one running instance of the capacity provider as retiring when its provider wants
    /// it replaced and none of the provider's instances is retiring already (a rolling
    /// replacement, one instance at a time).
    fn mark_retiring(&self, cp_name: &str) {
        let mut s = self.state.write();
        if s.instances
            .values()
            .any(|i| i.capacity_provider == cp_name && i.retiring)
        {
            return;
        }
        let mut ids: Vec<&String> = s
            .instances
            .values()
            .filter(|i| i.capacity_provider == cp_name && i.state == InstanceState::Running)
            .map(|i| &i.id)
            .collect();
        ids.sort();
        let found = ids.into_iter().find_map(|id| {
            self.provider
                .should_replace(id)
                .map(|why| (id.clone(), why))
        });
        if let Some((id, why)) = found
            && let Some(slot) = s.instances.get_mut(&id)
        {
            tracing::info!(instance = %id, capacity_provider = %cp_name, reason = %why, "replacing an instance: its environments start elsewhere, then it drains");
            slot.state = InstanceState::Draining;
            slot.retiring = true;
        }
    }

    /// Terminates instances with no environment: at once for a provider with nothing to run,
    /// after [`crate::DataPlaneConfig::idle_instance_after`] otherwise.
    fn retire_instances(&self, busy_cps: &HashSet<String>) {
        let now = Instant::now();
        let idle_after = self.cfg.idle_instance_after;
        let mut retire = Vec::new();
        {
            let mut s = self.state.write();
            let used: HashSet<String> = s.envs.values().map(|e| e.instance.id.clone()).collect();
            for slot in s.instances.values_mut() {
                // A retiring instance goes once its environments have drained.
                if slot.retiring
                    && slot.state == InstanceState::Draining
                    && !used.contains(&slot.id)
                {
                    slot.retiring = false;
                    retire.push(slot.id.clone());
                    continue;
                }
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
                    retire.push(slot.id.clone());
                }
            }
        }
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
