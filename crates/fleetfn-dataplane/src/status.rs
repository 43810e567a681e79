//! `GET /fleetfn/v1/status`: capacity providers with their instances, and every published
//! version with its environments, scaler state and throttles; and `GET
//! /fleetfn/v1/functions/{function}/series`, a function's one-second series from memory. The
//! documents are described in docs/STATUS.md; fields may be added, never renamed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use fleetfn_contracts::{
    CapacityProviderStatus, EnvironmentStatus, FunctionStatus, HostStatus, InstanceStatus,
    LaunchError, SeriesDocument, StatusDocument, Throttles, VersionSeries,
};
use fleetfn_server::records::version_key;

use crate::DataPlane;
use crate::stats::ThrottleReason;
use crate::version::{bounds, desired_within};
// Kept at this path for the environments document.
pub(crate) use crate::version::display_version;

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl DataPlane {
    pub(crate) async fn status_document(&self) -> fleetfn_model::Result<StatusDocument> {
        let providers = self.cp.capacity_providers_by_name().await?;
        let versions = self.cp.deployable_versions().await?;
        let host = self.provider.capacity();
        let s = self.state.read();
        let second = s.series_clock.second(tokio::time::Instant::now());
        let mut env_count: HashMap<&str, usize> = HashMap::new();
        let mut alloc: HashMap<&str, (f64, u64)> = HashMap::new();
        for e in s.envs.values() {
            *env_count.entry(e.instance.id.as_str()).or_default() += 1;
            let a = alloc
                .entry(e.instance.capacity_provider.as_str())
                .or_default();
            a.0 += e.vcpus;
            a.1 += e.memory_mib;
        }
        let fallbacks = self.provider.capacity_fallbacks();
        let mut cps = Vec::new();
        for (name, p) in &providers {
            let mut instances: Vec<_> = s
                .instances
                .values()
                .filter(|i| i.capacity_provider == *name)
                .collect();
            instances.sort_by(|a, b| a.zone.cmp(&b.zone).then(a.id.cmp(&b.id)));
            let vcpus: u32 = instances.iter().map(|i| i.instance_type.vcpus).sum();
            let memory: u64 = instances.iter().map(|i| i.instance_type.memory_mib).sum();
            let (avcpu, amem) = alloc.get(name.as_str()).copied().unwrap_or_default();
            let launch_error = s.launch_failures.get(name).map(|f| {
                let retry_in = f
                    .retry_at
                    .saturating_duration_since(tokio::time::Instant::now());
                let retry_at = jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::try_from(retry_in).unwrap_or_default())
                    .unwrap_or_else(|_| jiff::Timestamp::now());
                LaunchError {
                    message: f.message.clone(),
                    at: f.at.clone(),
                    retry_at: fleetfn_model::time::lambda_timestamp(retry_at),
                }
            });
            let capacity_fallbacks = fallbacks
                .iter()
                .filter(|f| f.capacity_provider == *name)
                .map(|f| fleetfn_contracts::CapacityFallback {
                    instance_type: f.instance_type.clone(),
                    zone: f.zone.clone(),
                    code: f.code.clone(),
                    message: f.message.clone(),
                    at: f.at.clone(),
                })
                .collect();
            cps.push(CapacityProviderStatus {
                name: name.clone(),
                arn: p.capacity_provider_arn.clone(),
                state: p.state,
                architecture: p
                    .instance_requirements
                    .architectures
                    .as_ref()
                    .and_then(|a| a.first())
                    .cloned()
                    .unwrap_or_else(|| "x86_64".into()),
                zones: p.vpc_config.subnet_ids.clone(),
                max_v_cpu_count: p
                    .capacity_provider_scaling_config
                    .max_vcpu_count
                    .unwrap_or(i64::from(fleetfn_model::limits::DEFAULT_MAX_VCPU)),
                v_cpus: vcpus,
                memory_mib: memory,
                allocated_v_cpus: round3(avcpu),
                allocated_memory_mib: amem,
                launch_error,
                capacity_fallbacks,
                instances: instances
                    .iter()
                    .map(|i| InstanceStatus {
                        instance_id: i.id.clone(),
                        instance_type: i.instance_type.name.clone(),
                        zone: i.zone.clone(),
                        v_cpus: i.instance_type.vcpus,
                        memory_mib: i.instance_type.memory_mib,
                        state: i.state,
                        cpu_utilization: i.cpu.util.map(round3),
                        environments: env_count.get(i.id.as_str()).copied().unwrap_or(0),
                        launched_at: i.launched_at.clone(),
                    })
                    .collect(),
            });
        }
        let mut functions = Vec::new();
        for v in &versions {
            let vkey = version_key(&v.function, &v.version);
            let mut envs: Vec<_> = s.envs.values().filter(|e| e.version_key == vkey).collect();
            envs.sort_by(|a, b| a.env_id.cmp(&b.env_id));
            let scale = s.scale.get(&vkey);
            let throttles = s.existing_stats(&vkey).map(|st| {
                let by =
                    ThrottleReason::ALL.map(|r| st.throttles[r.index()].load(Ordering::Relaxed));
                (
                    by,
                    st.invocations.load(Ordering::Relaxed),
                    st.errors.load(Ordering::Relaxed),
                )
            });
            let (by, invocations, errors) = throttles.unwrap_or_default();
            let applied = &v.scaling.applied;
            // Within the applied [Min, Max] even before the scaler's next tick (the deployer
            // acts on a new config at once).
            let desired =
                bounds(v).map_or(0, |b| desired_within(b, scale.map(|sc| sc.desired), b.0));
            // Over the last minute by reason: the newest count less the baseline.
            let by_reason_last_minute = scale.map_or([0; ThrottleReason::COUNT], |sc| {
                match (sc.throttle_history.front(), sc.throttle_history.back()) {
                    (Some(first), Some(last)) => {
                        std::array::from_fn(|i| last.1[i].saturating_sub(first.1[i]))
                    }
                    _ => [0; ThrottleReason::COUNT],
                }
            });
            let invocations_per_second =
                s.series.get(&vkey).map_or(0.0, |r| round3(r.rate(second)));
            let c = &v.config;
            functions.push(FunctionStatus {
                function_name: v.function.clone(),
                version: display_version(&v.version),
                function_arn: c.function_arn.clone(),
                capacity_provider: v.capacity_provider.clone(),
                state: c.state,
                state_reason_code: c.state_reason_code.clone(),
                last_update_status: c.last_update_status,
                min_execution_environments: applied
                    .min_execution_environments
                    .unwrap_or(i64::from(fleetfn_model::limits::DEFAULT_MIN_ENVIRONMENTS)),
                max_execution_environments: applied.max_execution_environments,
                desired_execution_environments: desired,
                cpu_utilization: scale.map(|x| round3(x.avg_cpu)),
                concurrency_saturation: scale.map(|x| round3(x.saturation)),
                invocations,
                errors,
                throttles_last_minute: scale.map_or(0, |x| x.throttles_last_minute),
                throttles_last_minute_by_reason: Throttles::from_counts(by_reason_last_minute),
                invocations_per_second,
                throttles: Throttles::from_counts(by),
                environments: envs
                    .iter()
                    .map(|e| EnvironmentStatus {
                        environment_id: e.env_id.clone(),
                        instance_id: e.instance.id.clone(),
                        zone: e.instance.zone.clone(),
                        state: e.state,
                        max_concurrency: e.max_concurrency,
                        in_flight: e.in_flight.load(Ordering::Relaxed),
                        cpu_utilization: e.cpu.util.map(round3),
                        memory_bytes: e.memory_bytes,
                        current: e.publish_hash == v.publish_hash,
                    })
                    .collect(),
            });
        }
        Ok(StatusDocument {
            generated_at: Some(fleetfn_model::time::now_lambda()),
            data_plane: true,
            host: Some(HostStatus {
                v_cpu_scale: host.vcpu_scale,
                max_v_cpus: host.max_vcpus,
                v_cpus_in_use: host.vcpus_in_use,
            }),
            capacity_providers: cps,
            functions,
            async_queue: None,
        })
    }

    /// The one-second samples of `function`'s `versions` (as the store spells them; `None`:
    /// all that have any) after the unix second `since`, within the last 15 minutes.
    pub(crate) fn series_document(
        &self,
        function: &str,
        versions: Option<&[String]>,
        since: Option<u64>,
    ) -> SeriesDocument {
        let s = self.state.read();
        let now = s.series_clock.second(tokio::time::Instant::now());
        let window = now.saturating_sub(crate::series::RING_SECONDS as u64);
        let after = since.map_or(window, |x| x.max(window));
        let keys: Vec<String> = match versions {
            Some(vs) => vs.iter().map(|v| version_key(function, v)).collect(),
            None => {
                let prefix = format!("{function}/");
                let mut keys: Vec<String> = s
                    .series
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .cloned()
                    .collect();
                // Numbered versions in order (their keys are zero-padded), then `$LATEST.PUBLISHED`.
                keys.sort_by_key(|k| (k[prefix.len()..].starts_with('$'), k.clone()));
                keys
            }
        };
        let mut doc = SeriesDocument::empty(function, now);
        for key in keys {
            let Some(ring) = s.series.get(&key) else {
                continue;
            };
            let version = display_version(key.split_once('/').map_or("", |x| x.1));
            let mut out = VersionSeries {
                version,
                ..VersionSeries::default()
            };
            let th = &mut out.throttles;
            for x in ring.since(after) {
                out.t.push(x.t);
                out.invocations.push(x.invocations);
                out.errors.push(x.errors);
                th.concurrency
                    .push(x.throttles[ThrottleReason::Concurrency.index()]);
                th.cpu.push(x.throttles[ThrottleReason::Cpu.index()]);
                th.memory.push(x.throttles[ThrottleReason::Memory.index()]);
                th.disk.push(x.throttles[ThrottleReason::Disk.index()]);
                out.duration_p50_ms.push(x.p50_ms.map(round3));
                out.duration_p99_ms.push(x.p99_ms.map(round3));
                out.cpu_utilization.push(round3(x.cpu_utilization));
                out.in_flight.push(round3(x.in_flight));
                out.desired_environments.push(x.desired);
                out.ready_environments.push(x.ready);
            }
            doc.versions.push(out);
        }
        doc
    }
}
