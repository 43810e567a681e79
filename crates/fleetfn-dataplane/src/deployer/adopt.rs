//! Adoption: instances that run already (a `static` provider's claimed agents) enter the state
//! with the environments their agents report, instead of being launched. A leader adopts once,
//! before its first convergence pass, so nothing that runs is started twice; a follower (a
//! server that only routes) adopts every claimed agent as it appears, mirrors each agent's
//! environments from its reports, and forgets (never stops) what leaves.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fleetfn_proto::{EnvState, EnvironmentStatus};
use fleetfn_scheduler::InstanceState;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::state::{CpuSampler, Env, InstanceSlot, State};
use crate::{DataPlane, Instance};

/// How long the first report of an adopted agent may take.
const FIRST_REPORT_WITHIN: Duration = Duration::from_secs(2);
/// How often a follower looks for agents claimed or released by the leader.
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How often a follower samples and meters the requests it routed (the leader's scaler tick
/// period).
const METER_EVERY: Duration = Duration::from_secs(1);

/// An environment the agent reports with its placement, as the data plane tracks it.
fn adopted_env(inst: &Arc<Instance>, st: &EnvironmentStatus) -> Option<Env> {
    let p = st.placement.as_ref()?;
    Some(Env {
        env_id: st.env_id.clone(),
        instance: inst.clone(),
        version_key: p.version_key.clone(),
        publish_hash: p.publish_hash.clone(),
        state: st.state,
        failure: st.failure.clone(),
        max_concurrency: st.max_concurrency.max(1),
        vcpus: st.vcpus,
        memory_mib: st.memory_limit_bytes >> 20,
        in_flight: Arc::default(),
        memory_bytes: st.memory_bytes,
        cpu_usage_ns: st.cpu_usage_ns,
        cpu: CpuSampler::default(),
        usage: crate::state::EnvUsage::of(st),
        credentials_renew_at: None,
        role: None,
    })
}

/// Makes the state's environments on `inst` exactly those of the report that carry a
/// placement (a follower's view): new ones enter with their reported state, gone ones leave.
pub(super) fn mirror(s: &mut State, inst: &Arc<Instance>, environments: &[EnvironmentStatus]) {
    let reported: HashSet<&str> = environments.iter().map(|e| e.env_id.as_str()).collect();
    let gone: Vec<String> = s
        .envs
        .values()
        .filter(|e| e.instance.id == inst.id && !reported.contains(e.env_id.as_str()))
        .map(|e| e.env_id.clone())
        .collect();
    for id in gone {
        s.remove_env(&id);
    }
    for st in environments {
        if !s.envs.contains_key(&st.env_id)
            && let Some(env) = adopted_env(inst, st)
        {
            s.insert_env(env);
        }
    }
}

impl DataPlane {
    /// Adds a running instance and the placed environments its agent reports, and follows it.
    /// `false` (nothing added) when a follower's agent does not answer; a leader adds it
    /// anyway, so its watcher declares it lost and the leader replaces what it ran.
    async fn adopt_instance(&self, inst: Arc<Instance>) -> bool {
        let report = tokio::time::timeout(
            FIRST_REPORT_WITHIN,
            inst.client.report(None, Duration::ZERO),
        )
        .await;
        let environments = match report {
            Ok(Ok(r)) => r.environments,
            Ok(Err(e)) if self.follower => {
                tracing::debug!(instance = %inst.id, error = %e, "claimed agent not answering yet");
                return false;
            }
            Err(_) if self.follower => return false,
            Ok(Err(e)) => {
                tracing::warn!(instance = %inst.id, error = %e, "adopted instance does not answer");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        {
            let mut s = self.state.write();
            let live = environments
                .iter()
                .any(|e| matches!(e.state, EnvState::Starting | EnvState::Ready));
            s.instances.insert(
                inst.id.clone(),
                InstanceSlot {
                    id: inst.id.clone(),
                    capacity_provider: inst.capacity_provider.clone(),
                    zone: inst.zone.clone(),
                    instance_type: inst.instance_type.clone(),
                    state: InstanceState::Running,
                    handle: Some(inst.clone()),
                    launched_at: fleetfn_model::time::now_lambda(),
                    empty_since: (!live).then(Instant::now),
                    cpu: CpuSampler::default(),
                    retiring: false,
                },
            );
            for st in &environments {
                if let Some(env) = adopted_env(&inst, st) {
                    s.insert_env(env);
                }
            }
        }
        let envs = environments.len();
        tracing::info!(instance = %inst.id, zone = %inst.zone, environments = envs, follower = self.follower, "instance adopted");
        self.spawn_watcher(inst);
        true
    }

    /// The leader's start: adopts what its provider runs already (retrying a failed read of
    /// the claims until it succeeds or `stop`), before anything is launched or started.
    pub(crate) async fn adopt_existing(&self, stop: &CancellationToken) {
        loop {
            match self.provider.existing().await {
                Ok(list) => {
                    let mut set = tokio::task::JoinSet::new();
                    for inst in list {
                        let dp = self.clone();
                        set.spawn(async move { dp.adopt_instance(Arc::new(inst)).await });
                    }
                    while set.join_next().await.is_some() {}
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the instances to adopt; retrying");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// A follower's loop: [`DataPlane::follow_once`] every [`FOLLOW_EVERY`] until `stop`, and
    /// once a second [`DataPlane::follower_tick`] (its series, and metering of the requests it
    /// routed, flushed like the leader's).
    pub(crate) async fn follow(&self, stop: CancellationToken) {
        let mut last_meter = Instant::now();
        let mut last_flush = Instant::now();
        loop {
            self.follow_once().await;
            // Invokes this server routed: its own series and status rates, and the cost report.
            if last_meter.elapsed() >= METER_EVERY {
                last_meter = Instant::now();
                self.follower_tick().await;
            }
            if last_flush.elapsed() >= crate::accounting::FLUSH_EVERY {
                last_flush = Instant::now();
                let dp = self.clone();
                tokio::spawn(async move { dp.flush_usage().await });
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
        }
    }

    /// One pass of a follower: adopts the instances its provider lists that it does not follow
    /// yet, and forgets those no longer listed (never stopping anything).
    pub async fn follow_once(&self) {
        match self.provider.existing().await {
            Ok(list) => {
                let listed: HashSet<String> = list.iter().map(|i| i.id.clone()).collect();
                let known: HashSet<String> = self.state.read().instances.keys().cloned().collect();
                for id in known.difference(&listed) {
                    self.state.write().remove_instance(id);
                }
                let mut set = tokio::task::JoinSet::new();
                for inst in list.into_iter().filter(|i| !known.contains(&i.id)) {
                    let dp = self.clone();
                    set.spawn(async move { dp.adopt_instance(Arc::new(inst)).await });
                }
                while set.join_next().await.is_some() {}
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the claimed agents"),
        }
    }
}
