//! The router: picks a Ready environment of the invoked version (least in flight, ties broken
//! at random so zones share the load), sends the invoke to its agent, tries the next one when
//! an agent says the environment is saturated, and throttles with a reason when none can take
//! it. Nothing queues and nothing starts here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fleetfn_api::{InvokeOutcome, InvokeRequest, Invoker};
use fleetfn_model::{LambdaError, Result};
use fleetfn_proto::{EnvState, InvokeReply};
use fleetfn_server::records::version_key;
use rand::Rng;

use crate::{DataPlane, Env};

/// Decrements an environment's in-flight count when the invoke ends, however it ends.
struct InFlight(Arc<std::sync::atomic::AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DataPlane {
    /// Ready environments of a version's current publish, least loaded first.
    fn candidates(&self, vkey: &str, publish_hash: &str) -> Vec<Env> {
        let Ok(s) = self.state.read() else {
            return Vec::new();
        };
        let mut c: Vec<(u32, u32, Env)> = s
            .envs
            .values()
            .filter(|e| e.version_key == vkey && e.state == EnvState::Ready)
            .map(|e| {
                let load = e.in_flight.load(Ordering::Relaxed);
                (load, rand::rng().random::<u32>(), e.clone())
            })
            .collect();
        // Prefer the current publish; the previous one still serves during a rollout.
        c.sort_by_key(|(load, tie, e)| (e.publish_hash != publish_hash, *load, *tie));
        c.into_iter().map(|(_, _, e)| e).collect()
    }

    async fn route(&self, req: InvokeRequest) -> Result<InvokeOutcome> {
        let v = &req.version;
        let vkey = version_key(&v.function, &v.version);
        let candidates = self.candidates(&vkey, &v.publish_hash);
        let request_id = req.request_id.as_str();
        // The agent answers a timeout itself; this only guards against a stuck agent.
        let deadline = std::time::Duration::from_secs(u64::from(v.config.timeout) + 10);
        let mut last_error: Option<String> = None;
        let mut saturated = 0usize;
        let mut capacity = 0u32;
        for env in &candidates {
            if env.in_flight.load(Ordering::Relaxed) >= env.max_concurrency {
                saturated += 1;
                capacity += env.max_concurrency;
                continue;
            }
            env.in_flight.fetch_add(1, Ordering::Relaxed);
            let _guard = InFlight(env.in_flight.clone());
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
            match reply {
                Ok(InvokeReply::Done {
                    payload,
                    function_error,
                }) => {
                    return Ok(InvokeOutcome {
                        payload,
                        function_error,
                    });
                }
                Ok(InvokeReply::Rejected { .. }) => {
                    saturated += 1;
                    capacity += env.max_concurrency;
                }
                Ok(InvokeReply::Gone) => {}
                Ok(InvokeReply::Invalid { reason }) => {
                    return Err(LambdaError::invalid(format!(
                        "The invoke could not be passed to the runtime: {reason}"
                    )));
                }
                // Never reached the agent: another environment may take it.
                Err(e @ fleetfn_proto::ClientError::Unreachable { .. }) => {
                    tracing::warn!(error = %e, env = %env.env_id, "agent unreachable");
                    last_error = Some(e.to_string());
                }
                // It may have run: retrying elsewhere could run it twice.
                Err(e) => {
                    tracing::warn!(error = %e, env = %env.env_id, "invoke to agent failed");
                    return Err(LambdaError::service(format!(
                        "The execution environment of {}:{} did not answer: {e}",
                        v.function, v.version
                    )));
                }
            }
        }
        if saturated == 0
            && let Some(e) = last_error
        {
            return Err(LambdaError::service(format!(
                "fleetfn could not deliver the invoke to an execution environment of {}:{}: {e}",
                v.function, v.version
            )));
        }
        if candidates.is_empty() {
            return Err(LambdaError::throttled(
                "ConcurrentInvocationLimitExceeded",
                1,
                format!(
                    "Rate Exceeded. Version {} of {} has no Ready execution environment right now (concurrency throttle).",
                    v.version, v.function
                ),
            ));
        }
        Err(LambdaError::throttled(
            "ConcurrentInvocationLimitExceeded",
            1,
            format!(
                "Rate Exceeded. All {saturated} execution environments of {}:{} are at their concurrency limit ({capacity} concurrent invokes in total); the request was not queued (concurrency throttle).",
                v.function, v.version
            ),
        ))
    }
}

impl Invoker for DataPlane {
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<InvokeOutcome>> + Send + '_>> {
        Box::pin(self.route(req))
    }

    fn environments(&self) -> serde_json::Value {
        let Ok(s) = self.state.read() else {
            return serde_json::json!({ "Environments": [] });
        };
        let mut list: Vec<serde_json::Value> = s
            .envs
            .values()
            .map(|e| {
                let (function, version) = e.version_key.split_once('/').unwrap_or((&e.version_key, ""));
                let trimmed = version.trim_start_matches('0');
                let version = if version.starts_with('$') { version } else if trimmed.is_empty() { "0" } else { trimmed };
                serde_json::json!({
                    "EnvironmentId": e.env_id,
                    "FunctionName": function,
                    "Version": version,
                    "InstanceId": e.instance.id,
                    "Zone": e.instance.zone,
                    "CapacityProvider": e.instance.capacity_provider,
                    "State": format!("{:?}", e.state),
                    "InFlight": e.in_flight.load(Ordering::Relaxed),
                    "MaxConcurrency": e.max_concurrency,
                    "PublishHash": e.publish_hash,
                    "MemoryBytes": e.memory_bytes,
                    "CpuUsageNs": e.cpu_usage_ns,
                    "Failure": e.failure.as_ref().map(|f| serde_json::json!({"ReasonCode": f.reason_code, "Reason": f.reason})),
                })
            })
            .collect();
        list.sort_by(|a, b| {
            a["EnvironmentId"]
                .as_str()
                .cmp(&b["EnvironmentId"].as_str())
        });
        let mut instances: Vec<serde_json::Value> = s
            .instances
            .values()
            .flatten()
            .map(|i| {
                serde_json::json!({
                    "InstanceId": i.id,
                    "Zone": i.zone,
                    "CapacityProvider": i.capacity_provider,
                })
            })
            .collect();
        instances.sort_by(|a, b| a["InstanceId"].as_str().cmp(&b["InstanceId"].as_str()));
        serde_json::json!({ "Environments": list, "Instances": instances })
    }
}
