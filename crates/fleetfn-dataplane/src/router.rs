//! The router: picks a Ready environment of the invoked version (least in flight, ties broken
//! at random so zones share the load), sends the invoke to its agent, tries another one (a
//! bounded number of times) when an agent says the environment is saturated, and throttles with
//! a reason when none can take it: concurrency, CPU, memory or disk, each throttle counted under
//! exactly one. Nothing queues and nothing starts here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use fleetfn_contracts::{
    CostDocument, EnvironmentEntry, EnvironmentFailure, EnvironmentsDocument, InstanceEntry,
    InvokeOutcome, InvokeRequest, Invoker, StatusDocument,
};
use fleetfn_model::{LambdaError, Result};
use fleetfn_proto::{EnvState, InvokeReply};
use fleetfn_server::records::version_key;
use rand::Rng;

use crate::{DataPlane, Instance, ThrottleReason, VersionStats};

/// Agent round trips one invoke may make before it is throttled.
const MAX_TRIES: usize = 4;

/// Decrements an environment's in-flight count and adds the invoke's duration to the version's
/// busy time when the invoke ends, however it ends.
struct InFlight<'a> {
    count: &'a AtomicU32,
    stats: &'a VersionStats,
    started: Instant,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// A Ready environment the router may try.
struct Candidate {
    env_id: String,
    instance: Arc<Instance>,
    in_flight: Arc<AtomicU32>,
    max_concurrency: u32,
}

/// The reason a throttle is counted under: the one that refused the most environments;
/// ties go to concurrency, then CPU, memory, disk.
pub(crate) fn dominant(refusals: &[u32; ThrottleReason::COUNT]) -> ThrottleReason {
    let mut best = ThrottleReason::Concurrency;
    for r in ThrottleReason::ALL {
        if refusals[r as usize] > refusals[best as usize] {
            best = r;
        }
    }
    best
}

impl DataPlane {
    /// Ready environments of a version (the current publish first, then an older one still
    /// serving during a rollout), least loaded first, skipping `exclude`.
    /// Also returns the version's counters when they exist (one lock for both).
    fn candidates(
        &self,
        vkey: &str,
        publish_hash: &str,
        exclude: &[String],
    ) -> (Vec<Candidate>, Option<Arc<VersionStats>>) {
        let Ok(s) = self.state.read() else {
            return (Vec::new(), None);
        };
        let mut rng = rand::rng();
        let mut c: Vec<(bool, u32, u32, Candidate)> = s
            .envs
            .values()
            .filter(|e| {
                e.version_key == vkey && e.state == EnvState::Ready && !exclude.contains(&e.env_id)
            })
            .map(|e| {
                let load = e.in_flight.load(Ordering::Relaxed);
                (
                    e.publish_hash != publish_hash,
                    load,
                    rng.random::<u32>(),
                    Candidate {
                        env_id: e.env_id.clone(),
                        instance: e.instance.clone(),
                        in_flight: e.in_flight.clone(),
                        max_concurrency: e.max_concurrency,
                    },
                )
            })
            .collect();
        c.sort_unstable_by_key(|(old, load, tie, _)| (*old, *load, *tie));
        (
            c.into_iter().map(|(_, _, _, e)| e).collect(),
            s.stats.get(vkey).cloned(),
        )
    }

    /// The version's counters, created on its first invoke.
    fn new_version_stats(&self, vkey: &str) -> Arc<VersionStats> {
        self.state
            .write()
            .map(|mut s| s.stats(vkey))
            .unwrap_or_default()
    }

    async fn route(&self, req: InvokeRequest) -> Result<InvokeOutcome> {
        let v = &req.version;
        let vkey = version_key(&v.function, &v.version);
        let (first, stats) = self.candidates(&vkey, &v.publish_hash, &[]);
        let stats = stats.unwrap_or_else(|| self.new_version_stats(&vkey));
        let mut first = Some(first);
        let request_id = req.request_id.as_str();
        // The agent answers a timeout itself; this only guards against a stuck agent.
        let deadline = std::time::Duration::from_secs(u64::from(v.config.timeout) + 10);
        let mut last_error: Option<String> = None;
        let mut refusals = [0u32; ThrottleReason::COUNT];
        let mut capacity = 0u32;
        let mut seen = 0usize;
        let mut tried: Vec<String> = Vec::new();
        // A second round only when the first met environments that had just gone away (a
        // rollout or scale-in drained them): the fresh list has their replacements.
        for round in 0..2 {
            let candidates = match first.take() {
                Some(c) => c,
                None => self.candidates(&vkey, &v.publish_hash, &tried).0,
            };
            seen += candidates.len();
            let mut went_away = false;
            for env in &candidates {
                if env.in_flight.load(Ordering::Relaxed) >= env.max_concurrency {
                    refusals[ThrottleReason::Concurrency as usize] += 1;
                    capacity += env.max_concurrency;
                    continue;
                }
                if tried.len() >= MAX_TRIES {
                    break;
                }
                tried.push(env.env_id.clone());
                env.in_flight.fetch_add(1, Ordering::Relaxed);
                let guard = InFlight {
                    count: &env.in_flight,
                    stats: &stats,
                    started: Instant::now(),
                };
                let reply = env
                    .instance
                    .client
                    .invoke(
                        deadline,
                        &env.env_id,
                        request_id,
                        req.payload.clone(),
                        req.client_context.as_deref(),
                        req.tenant_id.as_deref(),
                    )
                    .await;
                self.cfg
                    .metrics
                    .router_try(crate::metrics::try_outcome(&reply));
                match reply {
                    Ok(InvokeReply::Done {
                        payload,
                        function_error,
                    }) => {
                        stats.invocations.fetch_add(1, Ordering::Relaxed);
                        let billed = guard.started.elapsed().as_micros().div_ceil(1000);
                        stats.billed_ms.fetch_add(
                            u64::try_from(billed).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                        if function_error.is_some() {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        stats
                            .metrics
                            .invoked(guard.started.elapsed(), function_error.is_some());
                        return Ok(InvokeOutcome {
                            payload,
                            function_error,
                        });
                    }
                    Ok(InvokeReply::Rejected { reason, .. }) => {
                        refusals[reason.index()] += 1;
                        capacity += env.max_concurrency;
                        went_away |= !self.is_routable(&env.env_id);
                    }
                    Ok(InvokeReply::Gone) => went_away = true,
                    Ok(InvokeReply::Invalid { reason }) => {
                        return Err(LambdaError::invalid(format!(
                            "The invoke could not be passed to the runtime: {reason}"
                        )));
                    }
                    // Never reached the agent: another environment may take it.
                    Err(e @ fleetfn_proto::ClientError::Unreachable { .. }) => {
                        tracing::warn!(error = %e, env = %env.env_id, "agent unreachable");
                        last_error = Some(e.to_string());
                        went_away = true;
                    }
                    // It may have run: retrying elsewhere could run it twice.
                    Err(e) => {
                        tracing::warn!(error = %e, env = %env.env_id, "invoke to agent failed");
                        stats.invocations.fetch_add(1, Ordering::Relaxed);
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        stats.metrics.invoked(guard.started.elapsed(), true);
                        return Err(LambdaError::service(format!(
                            "The execution environment of {}:{} on instance {} did not answer (the instance may have been lost); the invoke may or may not have run: {e}",
                            v.function, v.version, env.instance.id
                        )));
                    }
                }
            }
            if round == 0 && (!went_away || tried.len() >= MAX_TRIES) {
                break;
            }
        }
        let refused: u32 = refusals.iter().sum();
        if refused == 0
            && let Some(e) = last_error
        {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats.metrics.undeliverable();
            return Err(LambdaError::service(format!(
                "fleetfn could not deliver the invoke to an execution environment of {}:{}: {e}",
                v.function, v.version
            )));
        }
        let reason = dominant(&refusals);
        stats.throttles[reason as usize].fetch_add(1, Ordering::Relaxed);
        stats.metrics.throttled(reason);
        let capped = if stats.capped.load(Ordering::Relaxed) {
            " The capacity provider cannot add execution environments right now (MaxVCpuCount or instance capacity reached) until capacity frees up."
        } else {
            ""
        };
        let label = reason.label();
        let message = if seen == 0 {
            format!(
                "Rate Exceeded. Version {} of {} has no Ready execution environment right now; the request was not queued ({label} throttle).{capped}",
                v.version, v.function
            )
        } else if reason == ThrottleReason::Concurrency {
            format!(
                "Rate Exceeded. All {refused} execution environments of {}:{} tried are at their concurrency limit ({capacity} concurrent invokes in total); the request was not queued ({label} throttle).{capped}",
                v.function, v.version
            )
        } else {
            format!(
                "Rate Exceeded. The execution environments of {}:{} refused the invoke to protect the invokes in flight: {} of {refused} are over their {} ceiling; the request was not queued ({label} throttle).{capped}",
                v.function,
                v.version,
                refusals[reason as usize],
                label.to_lowercase()
            )
        };
        Err(LambdaError::throttled(
            "ConcurrentInvocationLimitExceeded",
            1,
            message,
        ))
    }

    /// Whether the router still routes to an environment (it is known and Ready).
    fn is_routable(&self, env_id: &str) -> bool {
        self.state.read().is_ok_and(|s| {
            s.envs
                .get(env_id)
                .is_some_and(|e| e.state == EnvState::Ready)
        })
    }
}

impl Invoker for DataPlane {
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<InvokeOutcome>> + Send + '_>> {
        Box::pin(self.route(req))
    }

    fn status(&self) -> Pin<Box<dyn Future<Output = Result<StatusDocument>> + Send + '_>> {
        Box::pin(self.status_document())
    }

    fn cost(
        &self,
        since: jiff::Timestamp,
    ) -> Pin<Box<dyn Future<Output = Result<CostDocument>> + Send + '_>> {
        Box::pin(self.cost_document(since))
    }

    fn environments(&self) -> EnvironmentsDocument {
        let Ok(s) = self.state.read() else {
            return EnvironmentsDocument::default();
        };
        let mut environments: Vec<EnvironmentEntry> = s
            .envs
            .values()
            .map(|e| {
                let (function, version) = e
                    .version_key
                    .split_once('/')
                    .unwrap_or((&e.version_key, ""));
                EnvironmentEntry {
                    environment_id: e.env_id.clone(),
                    function_name: function.to_string(),
                    version: crate::status::display_version(version),
                    instance_id: e.instance.id.clone(),
                    zone: e.instance.zone.clone(),
                    capacity_provider: e.instance.capacity_provider.clone(),
                    state: e.state,
                    in_flight: e.in_flight.load(Ordering::Relaxed),
                    max_concurrency: e.max_concurrency,
                    publish_hash: e.publish_hash.clone(),
                    memory_bytes: e.memory_bytes,
                    cpu_usage_ns: e.cpu_usage_ns,
                    failure: e.failure.as_ref().map(|f| EnvironmentFailure {
                        reason_code: f.reason_code.clone(),
                        reason: f.reason.clone(),
                    }),
                }
            })
            .collect();
        environments.sort_by(|a, b| a.environment_id.cmp(&b.environment_id));
        let mut instances: Vec<InstanceEntry> = s
            .instances
            .values()
            .map(|i| InstanceEntry {
                instance_id: i.id.clone(),
                zone: i.zone.clone(),
                capacity_provider: i.capacity_provider.clone(),
                instance_type: i.instance_type.name.clone(),
                state: i.state,
            })
            .collect();
        instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        EnvironmentsDocument {
            environments,
            instances: Some(instances),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_is_counted_under_the_most_frequent_refusal() {
        assert_eq!(dominant(&[0, 0, 0, 0]), ThrottleReason::Concurrency);
        assert_eq!(dominant(&[1, 2, 0, 0]), ThrottleReason::Cpu);
        assert_eq!(dominant(&[0, 1, 1, 3]), ThrottleReason::Disk);
        // Ties go to concurrency, then CPU, memory, disk.
        assert_eq!(dominant(&[2, 2, 2, 2]), ThrottleReason::Concurrency);
        assert_eq!(dominant(&[0, 1, 1, 0]), ThrottleReason::Cpu);
        assert_eq!(dominant(&[0, 0, 4, 4]), ThrottleReason::Memory);
    }
}
