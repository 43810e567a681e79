//! The agent-report watcher: one task per running instance long-polls its agent's report (the
//! heartbeat), folds it into the state (environment states, utilization, the instance's CPU,
//! init durations), keeps the routing table current, deletes environments the data plane does
//! not know, takes the instance out of the routes at its first missed heartbeat (no report
//! within [`REPORT_WAIT`] + [`HEARTBEAT_MARGIN`]) and declares it lost after [`LOST_AFTER`]
//! failed reports.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fleetfn_proto::{EnvState, EnvironmentStatus};
use tokio::time::Instant;

use crate::state::State;
use crate::{DataPlane, Instance};

/// How long an agent report request may wait for a change: the agents' heartbeat.
const REPORT_WAIT: Duration = Duration::from_secs(1);
/// How late a report may be beyond its wait before the heartbeat counts as missed: a
/// partitioned agent (packets dropped, no refusal) leaves the routes within 2.5 s.
const HEARTBEAT_MARGIN: Duration = Duration::from_millis(1500);
/// Consecutive failed reports after which an instance is declared lost.
const LOST_AFTER: u32 = 3;

/// What folding one report into the state found.
#[derive(Debug, Default, PartialEq)]
struct Applied {
    /// Environments the agent runs that the data plane does not know.
    unknown: Vec<String>,
    /// Some environment changed state (the deployer has work).
    changed: bool,
}

/// Folds an agent's report of the environments on `instance_id` into the state: their states,
/// failures and utilization (CPU over `vcpus × host_scale`), the instance's CPU, and the init
/// duration of those that just turned Ready; one that is gone from the report (and was past
/// starting) has exited. The versions whose environments changed state get fresh routes.
fn apply_report(
    s: &mut State,
    instance_id: &str,
    environments: &[EnvironmentStatus],
    now: Instant,
    host_scale: f64,
) -> Applied {
    let seen: HashMap<&str, &EnvironmentStatus> = environments
        .iter()
        .map(|e| (e.env_id.as_str(), e))
        .collect();
    let mut applied = Applied {
        unknown: environments
            .iter()
            .filter(|e| !s.envs.contains_key(&e.env_id))
            .map(|e| e.env_id.clone())
            .collect(),
        changed: false,
    };
    let mut changed_versions = HashSet::new();
    // (version key, init ms) of environments that just turned Ready.
    let mut inits = Vec::new();
    // (version key, what it used since the previous report) of every reported environment.
    let mut usage_deltas = Vec::new();
    for env in s.envs.values_mut().filter(|e| e.instance.id == instance_id) {
        match seen.get(env.env_id.as_str()) {
            Some(st) => {
                if env.state != st.state {
                    changed_versions.insert(env.version_key.clone());
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
                env.cpu
                    .observe(now, st.cpu_usage_ns, env.vcpus * host_scale);
                let usage = crate::state::EnvUsage::of(st);
                let delta = crate::metrics::usage_delta(&env.usage.insights, &usage.insights);
                if delta != fleetfn_metrics::EnvironmentUsage::default() {
                    usage_deltas.push((env.version_key.clone(), delta));
                }
                env.usage = usage;
            }
            // Starting: the agent may not have it yet; Failed without the agent: its role could
            // not be assumed (the deployer stops it).
            None if !matches!(env.state, EnvState::Starting | EnvState::Failed) => {
                env.state = EnvState::Exited;
                changed_versions.insert(env.version_key.clone());
            }
            None => {}
        }
    }
    applied.changed = !changed_versions.is_empty();
    s.refresh_routes(changed_versions.iter().map(String::as_str));
    // Instance CPU: what its environments used, over its own vCPUs.
    let used: Option<u64> = s
        .envs
        .values()
        .filter(|e| e.instance.id == instance_id)
        .map(|e| e.cpu_usage_ns)
        .sum();
    if let Some(slot) = s.instances.get_mut(instance_id) {
        let cpus = f64::from(slot.instance_type.vcpus) * host_scale;
        slot.cpu.observe(now, used, cpus);
    }
    for (vkey, ms) in inits {
        s.stats(&vkey)
            .metrics
            .initialized(Duration::from_millis(ms));
    }
    for (vkey, delta) in usage_deltas {
        s.stats(&vkey).metrics.used(&delta);
    }
    applied
}

impl DataPlane {
    /// Follows one agent's reports (its heartbeat, at least every [`REPORT_WAIT`]), updating
    /// environment states and utilization; declares it lost after [`LOST_AFTER`] failed reports.
    pub(super) fn spawn_watcher(&self, inst: Arc<Instance>) {
        let dp = self.clone();
        let host_scale = self.provider.capacity().vcpu_scale;
        tokio::spawn(async move {
            let mut after: Option<u64> = None;
            let mut failures = 0;
            loop {
                let known = dp.state.read().instances.contains_key(&inst.id);
                if !known || dp.stopping.is_cancelled() {
                    return;
                }
                let report = match tokio::time::timeout(
                    REPORT_WAIT + HEARTBEAT_MARGIN,
                    inst.client.report(after, REPORT_WAIT),
                )
                .await
                {
                    Ok(answer) => answer.map_err(|e| e.to_string()),
                    Err(_) => Err(format!(
                        "no report within {:.1} s (a missed heartbeat)",
                        (REPORT_WAIT + HEARTBEAT_MARGIN).as_secs_f64()
                    )),
                };
                match report {
                    Ok(report) => {
                        failures = 0;
                        after = Some(report.revision);
                        let applied = {
                            let mut s = dp.state.write();
                            if s.set_silent(&inst.id, false) {
                                tracing::info!(instance = %inst.id, "instance answers again: routed to again");
                            }
                            if dp.follower {
                                super::adopt::mirror(&mut s, &inst, &report.environments);
                            }
                            apply_report(
                                &mut s,
                                &inst.id,
                                &report.environments,
                                Instant::now(),
                                host_scale,
                            )
                        };
                        // Environments the data plane does not know (a start whose answer was
                        // lost, a stop that failed) must not run unseen.
                        for id in applied.unknown {
                            let client = inst.client.clone();
                            tokio::spawn(async move {
                                let _ = client.delete_environment(&id).await;
                            });
                        }
                        if applied.changed {
                            dp.bump();
                        }
                    }
                    Err(e) => {
                        // Retired (or dropped) while the report was under way: its process
                        // going away is no loss.
                        let known = dp.state.read().instances.contains_key(&inst.id);
                        if !known || dp.stopping.is_cancelled() {
                            return;
                        }
                        failures += 1;
                        // A missed heartbeat: route elsewhere at once, decide loss later.
                        if dp.state.write().set_silent(&inst.id, true) {
                            tracing::warn!(instance = %inst.id, zone = %inst.zone, error = %e, "instance missed its heartbeat: not routed to until it answers");
                        }
                        // A process known to be gone needs no more heartbeats to be declared lost.
                        if failures >= LOST_AFTER || !dp.provider.is_running(&inst.id) {
                            if dp.follower {
                                // Routing stops here; replacing it is the leader's.
                                tracing::warn!(instance = %inst.id, zone = %inst.zone, error = %e, "instance not answering: no longer routed to");
                                dp.state.write().remove_instance(&inst.id);
                                return;
                            }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::instance;

    fn env(id: &str, inst: &Arc<Instance>, state: EnvState) -> crate::state::Env {
        crate::state::tests::env(id, "f/1", inst, state)
    }

    fn status(id: &str, state: EnvState) -> EnvironmentStatus {
        EnvironmentStatus {
            env_id: id.into(),
            function_name: "f".into(),
            version: "1".into(),
            state,
            failure: None,
            in_flight: 0,
            parked: 1,
            max_concurrency: 1,
            init_ms: Some(120),
            memory_bytes: Some(1 << 20),
            cpu_usage_ns: Some(5),
            memory_limit_bytes: 0,
            vcpus: 1.0,
            cpu_utilization: None,
            tmp_used_bytes: None,
            tmp_limit_bytes: 0,
            placement: None,
            insights: fleetfn_proto::EnvInsights::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_moves_environments_in_and_out_of_the_routes() {
        let (i1, i2) = (instance("i-1", "z1"), instance("i-2", "z2"));
        let mut s = State::default();
        s.insert_env(env("a", &i1, EnvState::Starting));
        s.insert_env(env("b", &i1, EnvState::Ready));
        s.insert_env(env("c", &i2, EnvState::Ready));
        s.insert_env(env("d", &i1, EnvState::Starting));
        let routes = s.version_routes("f/1");
        assert!(routes.is_ready("b") && !routes.is_ready("a"));

        // `a` turns Ready, `b` is gone from the report (it exited), `d` has not shown up yet
        // (still starting), and the agent runs `x`, which nobody asked for.
        let now = Instant::now();
        let applied = apply_report(
            &mut s,
            "i-1",
            &[status("a", EnvState::Ready), status("x", EnvState::Ready)],
            now,
            1.0,
        );
        assert_eq!(
            applied,
            Applied {
                unknown: vec!["x".into()],
                changed: true
            }
        );
        assert!(routes.is_ready("a"));
        assert!(!routes.is_ready("b"));
        assert_eq!(s.envs["b"].state, EnvState::Exited);
        assert_eq!(s.envs["d"].state, EnvState::Starting);
        assert_eq!(s.envs["a"].memory_bytes, Some(1 << 20));
        // Another instance's environments are not this report's business.
        assert!(routes.is_ready("c"));

        // Once the deployer has stopped the exited one, the same report changes nothing.
        assert!(s.remove_env("b").is_some());
        let applied = apply_report(&mut s, "i-1", &[status("a", EnvState::Ready)], now, 1.0);
        assert!(!applied.changed && applied.unknown.is_empty());

        // `a` starts draining: it leaves the routes.
        let applied = apply_report(&mut s, "i-1", &[status("a", EnvState::Draining)], now, 1.0);
        assert!(applied.changed);
        assert!(!routes.is_ready("a"));
        assert!(routes.is_ready("c"));
    }
}
