//! Instance and environment lifecycle: launching an instance in the background (a failed launch
//! backs its capacity provider off), dropping one with everything on it, starting and stopping
//! environments (a failed replacement backs its version's starts off). Every change goes through
//! the state's methods, so the routing table follows at once.

use std::sync::Arc;
use std::time::Duration;

use fleetfn_proto::EnvState;
use fleetfn_scheduler::InstanceState;
use fleetfn_server::VersionRecord;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::state::{CpuSampler, Env, InstanceSlot, LaunchFailure};
use crate::version::env_request;
use crate::{DataPlane, Instance, LaunchSpec};

/// Back-off of a capacity provider's launches after a failed one: about 1 s, doubling to 60 s.
const LAUNCH_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// Back-off of a version's environment starts after a failed replacement: about 1 s, doubling
/// to 60 s.
const START_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

impl DataPlane {
    /// Launches one instance in the background: a `pending` slot now, `running` (and watched)
    /// once its agent answers; a failure removes the slot and backs the provider off.
    pub(super) fn launch(&self, spec: LaunchSpec) {
        let id = crate::new_instance_id();
        self.state.write().instances.insert(
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
                retiring: false,
            },
        );
        let dp = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = dp.provider.launch(&id, &spec).await;
            match result {
                Ok(inst) => {
                    let inst = Arc::new(inst);
                    let keep = {
                        let mut s = dp.state.write();
                        s.launch_failures.remove(&spec.capacity_provider);
                        match s.instances.get_mut(&id) {
                            Some(slot) => {
                                slot.state = InstanceState::Running;
                                // A provider may fall back to another zone or type than asked
                                // (EC2 without capacity for the first choice).
                                slot.zone = inst.zone.clone();
                                slot.instance_type = inst.instance_type.clone();
                                slot.handle = Some(inst.clone());
                                slot.empty_since = Some(Instant::now());
                                true
                            }
                            None => false,
                        }
                    };
                    if keep && !dp.stopping.is_cancelled() {
                        dp.spawn_watcher(inst);
                    } else {
                        dp.provider.terminate(&id).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, capacity_provider = %spec.capacity_provider, zone = %spec.zone, instance_type = %spec.instance_type.name, "instance launch failed");
                    let mut s = dp.state.write();
                    s.instances.remove(&id);
                    let now = Instant::now();
                    let previous = s.launch_failures.remove(&spec.capacity_provider);
                    // Launches of one round that fail together back off one step, not one
                    // step each: a failure recorded after this launch began is the same round.
                    let (retry_at, backoff) = match previous {
                        Some(f) if f.failed_at >= started => (f.retry_at, f.backoff),
                        previous => {
                            let mut backoff = previous.map_or(LAUNCH_BACKOFF, |f| f.backoff);
                            (now + backoff.fail(now), backoff)
                        }
                    };
                    s.launch_failures.insert(
                        spec.capacity_provider.clone(),
                        LaunchFailure {
                            message: e.to_string(),
                            at: fleetfn_model::time::now_lambda(),
                            failed_at: now,
                            retry_at,
                            backoff,
                        },
                    );
                }
            }
            dp.bump();
        });
    }

    /// Whether the capacity provider may launch (it is not backing off after a failed launch).
    pub(super) fn may_launch(&self, cp_name: &str) -> bool {
        self.state
            .read()
            .launch_failures
            .get(cp_name)
            .is_none_or(|f| Instant::now() >= f.retry_at)
    }

    /// Forgets an instance and everything on it (the router stops using it at once), and
    /// terminates it.
    pub(super) async fn drop_instance(&self, id: &str) {
        self.state.write().remove_instance(id);
        self.bump();
        self.provider.terminate(id).await;
    }

    /// Starts an environment of the version on a running instance (`Starting` until its
    /// agent reports it Ready); a start the agent refuses is forgotten.
    pub(super) async fn start_env(&self, v: &VersionRecord, vkey: &str, inst: Arc<Instance>) {
        let env_id = format!("e-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let target = std::sync::Arc::new(crate::credentials::RoleTarget {
            role_arn: v.config.role.clone(),
            function_name: v.config.function_name.clone(),
        });
        let mut req = env_request(v, &self.cp.scope().region);
        req.placement = Some(fleetfn_proto::Placement {
            version_key: vkey.to_string(),
            publish_hash: v.publish_hash.clone(),
        });
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
            in_flight: Arc::default(),
            memory_bytes: None,
            cpu_usage_ns: None,
            cpu: CpuSampler::default(),
            usage: crate::state::EnvUsage::default(),
            credentials_renew_at: None,
            role: Some(target.clone()),
        };
        {
            let mut s = self.state.write();
            s.insert_env(env);
            if let Some(slot) = s.instances.get_mut(&inst.id) {
                slot.empty_since = None;
            }
        }
        let dp = self.clone();
        let vkey = vkey.to_string();
        tokio::spawn(async move {
            match dp.assume_for(&target, &env_id).await {
                Ok(credentials) => req.credentials = credentials,
                Err(failure) => {
                    // Never reaches the agent: failed here, as if its init had failed.
                    if let Some(e) = dp.state.write().envs.get_mut(&env_id) {
                        e.state = EnvState::Failed;
                        e.failure = Some(failure);
                    }
                    dp.bump();
                    return;
                }
            }
            if let Err(e) = inst.client.put_environment(&env_id, &req).await {
                tracing::warn!(error = %e, env = %env_id, "cannot start environment");
                dp.state.write().remove_env(&env_id);
                // The next start of the version waits (back-off), so an agent that refuses or
                // is gone is not asked again in a tight loop.
                dp.note_failure(&vkey);
                dp.bump();
            }
        });
    }

    /// Stops routing to an environment at once and asks its agent to drain and stop it (the
    /// agent lets in-flight invokes finish up to the timeout, then SIGTERM, then SIGKILL).
    pub(super) fn stop_env(&self, env_id: &str) {
        let env = self.state.write().remove_env(env_id);
        if let Some(env) = env {
            let client = env.instance.client.clone();
            let id = env.env_id;
            tokio::spawn(async move {
                if let Err(e) = client.delete_environment(&id).await {
                    tracing::warn!(error = %e, env = %id, "cannot stop environment");
                }
            });
        }
    }

    /// Records a failed replacement: the version's next start waits (back-off).
    pub(super) fn note_failure(&self, vkey: &str) {
        self.state
            .write()
            .start_backoff
            .entry(vkey.to_string())
            .or_insert(START_BACKOFF)
            .fail(Instant::now());
    }

    /// The version serves its minimum: its next failure starts the back-off again.
    pub(super) fn clear_failures(&self, vkey: &str) {
        self.state.write().start_backoff.remove(vkey);
    }

    /// Whether the version may start environments (it is not backing off).
    pub(super) fn may_start(&self, vkey: &str) -> bool {
        self.state
            .read()
            .start_backoff
            .get(vkey)
            .is_none_or(|b| b.ready(Instant::now()))
    }
}
