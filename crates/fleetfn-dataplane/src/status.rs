//! `GET /fleetfn/v1/status`: capacity providers with their instances, and every published
//! version with its environments, scaler state and throttles. The document is described in
//! docs/STATUS.md; fields may be added, never renamed.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use fleetfn_scheduler::InstanceState;
use fleetfn_server::records::version_key;
use serde_json::{Value, json};

use crate::DataPlane;
use crate::stats::ThrottleReason;
use crate::version::{bounds, desired_within};
// Kept at this path for the environments document.
pub(crate) use crate::version::display_version;

fn instance_state(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Pending => "pending",
        InstanceState::Running => "running",
        InstanceState::Draining => "draining",
        InstanceState::Terminated => "terminated",
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl DataPlane {
    pub(crate) async fn status_document(&self) -> fleetfn_model::Result<Value> {
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
                json!({
                    "Message": f.message,
                    "At": f.at,
                    "RetryAt": fleetfn_model::time::lambda_timestamp(retry_at),
                })
            });
            cps.push(json!({
                "Name": name,
                "Arn": p.capacity_provider_arn,
                "State": p.state,
                "Architecture": p.instance_requirements.architectures.as_ref().and_then(|a| a.first()).cloned().unwrap_or_else(|| "x86_64".into()),
                "Zones": p.vpc_config.subnet_ids,
                "MaxVCpuCount": p.capacity_provider_scaling_config.max_vcpu_count.unwrap_or(i64::from(fleetfn_model::limits::DEFAULT_MAX_VCPU)),
                "VCpus": vcpus,
                "MemoryMiB": memory,
                "AllocatedVCpus": round3(avcpu),
                "AllocatedMemoryMiB": amem,
                "LaunchError": launch_error,
                "Instances": instances.iter().map(|i| json!({
                    "InstanceId": i.id,
                    "InstanceType": i.instance_type.name,
                    "Zone": i.zone,
                    "VCpus": i.instance_type.vcpus,
                    "MemoryMiB": i.instance_type.memory_mib,
                    "State": instance_state(i.state),
                    "CpuUtilization": i.cpu.util.map(round3),
                    "Environments": env_count.get(i.id.as_str()).copied().unwrap_or(0),
                    "LaunchedAt": i.launched_at,
                })).collect::<Vec<_>>(),
            }));
        }
        let mut functions = Vec::new();
        for v in &versions {
            let vkey = version_key(&v.function, &v.version);
            let mut envs: Vec<_> = s.envs.values().filter(|e| e.version_key == vkey).collect();
            envs.sort_by(|a, b| a.env_id.cmp(&b.env_id));
            let scale = s.scale.get(&vkey);
            let throttles = s.existing_stats(&vkey).map(|st| {
                let n = |r: ThrottleReason| st.throttles[r as usize].load(Ordering::Relaxed);
                let by = [
                    n(ThrottleReason::Concurrency),
                    n(ThrottleReason::Cpu),
                    n(ThrottleReason::Memory),
                    n(ThrottleReason::Disk),
                ];
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
            functions.push(json!({
                "FunctionName": v.function,
                "Version": display_version(&v.version),
                "FunctionArn": c.function_arn,
                "CapacityProvider": v.capacity_provider,
                "State": c.state,
                "StateReasonCode": c.state_reason_code,
                "LastUpdateStatus": c.last_update_status,
                "MinExecutionEnvironments": applied.min_execution_environments.unwrap_or(i64::from(fleetfn_model::limits::DEFAULT_MIN_ENVIRONMENTS)),
                "MaxExecutionEnvironments": applied.max_execution_environments,
                "DesiredExecutionEnvironments": desired,
                "CpuUtilization": scale.map(|x| round3(x.avg_cpu)),
                "ConcurrencySaturation": scale.map(|x| round3(x.saturation)),
                "Invocations": invocations,
                "Errors": errors,
                "ThrottlesLastMinute": scale.map_or(0, |x| x.throttles_last_minute),
                "Throttles": {
                    "Total": by.iter().sum::<u64>(),
                    "Concurrency": by[0],
                    "CPU": by[1],
                    "Memory": by[2],
                    "Disk": by[3],
                },
                "Environments": envs.iter().map(|e| json!({
                    "EnvironmentId": e.env_id,
                    "InstanceId": e.instance.id,
                    "Zone": e.instance.zone,
                    "State": format!("{:?}", e.state),
                    "MaxConcurrency": e.max_concurrency,
                    "InFlight": e.in_flight.load(Ordering::Relaxed),
                    "CpuUtilization": e.cpu.util.map(round3),
                    "MemoryBytes": e.memory_bytes,
                    "Current": e.publish_hash == v.publish_hash,
                })).collect::<Vec<_>>(),
            }));
        }
        Ok(json!({
            "GeneratedAt": fleetfn_model::time::now_lambda(),
            "DataPlane": true,
            "Host": {
                "VCpuScale": host.vcpu_scale,
                "MaxVCpus": host.max_vcpus,
                "VCpusInUse": host.vcpus_in_use,
            },
            "CapacityProviders": cps,
            "Functions": functions,
        }))
    }
}
