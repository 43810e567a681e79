//! `GET /fleetfn/v1/status`: capacity providers with their instances, and every published
//! version with its environments, scaler state and throttles. The document is described in
//! docs/STATUS.md; fields may be added, never renamed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use fleetfn_contracts::{
    CapacityProviderStatus, EnvironmentStatus, FunctionStatus, HostStatus, InstanceStatus,
    LaunchError, StatusDocument, Throttles,
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
}
