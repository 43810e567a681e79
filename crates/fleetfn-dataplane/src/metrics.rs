//! The data plane's side of the Prometheus metrics (`fleetfn-metrics`): per-version handles the
//! router updates (cached in `VersionStats`, so an invoke hashes no labels), and every gauge
//! rebuilt from the data plane's state once per scaler tick ([`publish`]). The Lambda Insights
//! counters (CPU time by mode, network bytes) grow by what each environment used between two
//! of its agent's reports ([`usage_delta`], applied by the report watcher), so they keep
//! counting across environments that come and go.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;

use fleetfn_metrics::{
    CapacityGauges, EnvironmentState, EnvironmentUsage, GaugeSnapshot, InstanceLabels,
    ProviderGauges, ProviderLabels, ProviderTypeLabels, TryOutcome, VersionGauges,
};
use fleetfn_proto::{ClientError, EnvInsights, EnvState, InvokeReply};
use fleetfn_scheduler::InstanceState;
use fleetfn_scheduler::placement::{MILLI, usable};
use fleetfn_server::VersionRecord;
use fleetfn_server::records::version_key;

use crate::state::State;
use crate::version::{bounds, desired_within, env_request, labels};

const MIB: u64 = 1 << 20;

/// The round trip of a streamed answer: the function answered.
pub(crate) const TRY_DONE: TryOutcome = TryOutcome::Done;

/// How one agent round trip ended.
pub(crate) fn try_outcome(reply: &Result<InvokeReply, ClientError>) -> TryOutcome {
    match reply {
        Ok(InvokeReply::Done { .. }) => TryOutcome::Done,
        Ok(InvokeReply::Rejected { .. }) => TryOutcome::Rejected,
        Ok(InvokeReply::Gone) => TryOutcome::Gone,
        Ok(InvokeReply::Invalid { .. }) => TryOutcome::Invalid,
        Err(ClientError::Unreachable { .. }) => TryOutcome::Unreachable,
        Err(_) => TryOutcome::Failed,
    }
}

fn env_state(s: EnvState) -> EnvironmentState {
    match s {
        EnvState::Starting => EnvironmentState::Starting,
        EnvState::Ready => EnvironmentState::Ready,
        EnvState::Draining => EnvironmentState::Draining,
        EnvState::Failed => EnvironmentState::Failed,
        EnvState::Exited => EnvironmentState::Exited,
    }
}

fn instance_state(s: InstanceState) -> fleetfn_metrics::InstanceState {
    match s {
        InstanceState::Pending => fleetfn_metrics::InstanceState::Pending,
        InstanceState::Running => fleetfn_metrics::InstanceState::Running,
        InstanceState::Draining => fleetfn_metrics::InstanceState::Draining,
        InstanceState::Terminated => fleetfn_metrics::InstanceState::Terminated,
    }
}

fn gauge<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

#[allow(clippy::cast_precision_loss)]
fn mean(sum: f64, n: usize) -> f64 {
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// What an environment used between two reports: each counter's growth from `prev` to `cur`.
/// A counter first reported counts from zero (the environment's start); one that is absent
/// or went backwards (a reading from another source) adds nothing.
pub(crate) fn usage_delta(prev: &EnvInsights, cur: &EnvInsights) -> EnvironmentUsage {
    let grew = |p: Option<u64>, c: Option<u64>| match (p, c) {
        (_, None) => 0,
        (None, Some(c)) => c,
        (Some(p), Some(c)) => c.saturating_sub(p),
    };
    EnvironmentUsage {
        cpu_user: std::time::Duration::from_nanos(grew(prev.cpu_user_ns, cur.cpu_user_ns)),
        cpu_system: std::time::Duration::from_nanos(grew(prev.cpu_system_ns, cur.cpu_system_ns)),
        network_rx_bytes: grew(prev.net_rx_bytes, cur.net_rx_bytes),
        network_tx_bytes: grew(prev.net_tx_bytes, cur.net_tx_bytes),
    }
}

/// One version's environments, folded.
#[derive(Default)]
struct EnvFold {
    states: [i64; 5],
    max_in_flight: u32,
    max_concurrency: u32,
    ready_cpu: (f64, usize),
    ready_memory: (f64, usize),
    ready_by_publish: HashMap<String, i64>,
    /// Highest peak memory of any environment (Lambda Insights `used_memory_max`).
    memory_max: Option<u64>,
    /// Fullest `/tmp` of a Ready environment, and `EphemeralStorage`.
    tmp_used: Option<u64>,
    tmp_size: Option<u64>,
    memory_size: Option<u64>,
}

/// One capacity provider's instances of one type, folded.
#[derive(Default)]
struct TypeFold {
    running: usize,
    cpu_sum: f64,
    running_memory_bytes: u64,
    used_memory_bytes: u64,
    vcpus_allocated: f64,
    memory_allocated: u64,
    free_mvcpu: u64,
    free_mib: u64,
}

/// Every gauge from the data plane's state; `versions` are the deployable versions.
pub(crate) fn snapshot(s: &State, versions: &[VersionRecord]) -> GaugeSnapshot {
    // Environments: per version, and what they take on each instance.
    let mut per_version: BTreeMap<String, EnvFold> = BTreeMap::new();
    let mut on_instance: HashMap<&str, (f64, u64, u64)> = HashMap::new();
    for e in s.envs.values() {
        let f = per_version.entry(e.version_key.clone()).or_default();
        f.states[EnvironmentState::ALL
            .iter()
            .position(|x| *x == env_state(e.state))
            .unwrap_or(0)] += 1;
        f.max_in_flight = f.max_in_flight.max(e.in_flight.load(Ordering::Relaxed));
        f.max_concurrency = f.max_concurrency.max(e.max_concurrency);
        if let Some(peak) = e.usage.insights.memory_peak_bytes {
            f.memory_max = f.memory_max.max(Some(peak));
        }
        if e.usage.tmp_limit_bytes > 0 {
            f.tmp_size = Some(e.usage.tmp_limit_bytes);
        }
        if e.memory_mib > 0 {
            f.memory_size = Some(e.memory_mib * MIB);
        }
        if e.state == EnvState::Ready {
            if let Some(t) = e.usage.tmp_used_bytes {
                f.tmp_used = f.tmp_used.max(Some(t));
            }
            f.ready_cpu.0 += e.cpu.util.unwrap_or(0.0);
            f.ready_cpu.1 += 1;
            if let Some(m) = e.memory_bytes
                && e.memory_mib > 0
            {
                #[allow(clippy::cast_precision_loss)]
                let u = m as f64 / (e.memory_mib * MIB) as f64;
                f.ready_memory.0 += u;
                f.ready_memory.1 += 1;
            }
            *f.ready_by_publish
                .entry(e.publish_hash.clone())
                .or_default() += 1;
        }
        let a = on_instance.entry(e.instance.id.as_str()).or_default();
        a.0 += e.vcpus;
        a.1 += e.memory_mib;
        a.2 += e.memory_bytes.unwrap_or(0);
    }

    let deployable: HashMap<String, &VersionRecord> = versions
        .iter()
        .map(|v| (version_key(&v.function, &v.version), v))
        .collect();
    let keys: BTreeSet<&String> = per_version.keys().chain(deployable.keys()).collect();
    let empty = EnvFold::default();
    let mut out = GaugeSnapshot::default();
    for vkey in keys {
        let f = per_version.get(vkey).unwrap_or(&empty);
        let v = deployable.get(vkey);
        let desired = v.and_then(|v| bounds(v)).map_or(0, |b| {
            desired_within(b, s.scale.get(vkey).map(|sc| sc.desired), b.0)
        });
        let actual = v
            .and_then(|v| f.ready_by_publish.get(&v.publish_hash).copied())
            .unwrap_or(0);
        // The version's current configuration first (what new environments get), else what
        // its environments run with.
        let request = v.map(|v| env_request(v, ""));
        let limit = request
            .as_ref()
            .map_or(f.max_concurrency, |r| r.max_concurrency);
        let memory_size = request
            .as_ref()
            .map(|r| u64::from(r.memory_mb) * MIB)
            .or(f.memory_size);
        let tmp_size = request
            .as_ref()
            .map(|r| u64::from(r.ephemeral_storage_mb) * MIB)
            .or(f.tmp_size);
        out.versions.push(VersionGauges {
            labels: labels(vkey),
            environments: f.states,
            concurrency: gauge(f.max_in_flight),
            concurrency_limit: gauge(limit),
            cpu_utilization: mean(f.ready_cpu.0, f.ready_cpu.1),
            memory_utilization: mean(f.ready_memory.0, f.ready_memory.1),
            desired_environments: gauge(desired),
            actual_environments: actual,
            memory_max_bytes: f.memory_max.map(gauge),
            memory_size_bytes: memory_size.filter(|b| *b > 0).map(gauge),
            tmp_used_bytes: f.tmp_used.map(gauge),
            tmp_size_bytes: tmp_size.filter(|b| *b > 0).map(gauge),
        });
    }

    // Instances: per provider and type, per zone and state, per provider.
    let mut per_type: BTreeMap<ProviderTypeLabels, TypeFold> = BTreeMap::new();
    let mut counts: BTreeMap<InstanceLabels, i64> = BTreeMap::new();
    let mut providers: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in s.instances.values() {
        let pt = ProviderTypeLabels {
            capacity_provider: i.capacity_provider.clone(),
            instance_type: i.instance_type.name.clone(),
        };
        *counts
            .entry(InstanceLabels {
                provider_type: pt.clone(),
                zone: i.zone.clone(),
                state: instance_state(i.state),
            })
            .or_default() += 1;
        let (vcpus, mib, used) = on_instance.get(i.id.as_str()).copied().unwrap_or_default();
        let t = per_type.entry(pt).or_default();
        t.vcpus_allocated += vcpus;
        t.memory_allocated += mib;
        if i.state.accepts_environments() {
            let (mvcpu, umib) = usable(&i.instance_type);
            t.free_mvcpu += mvcpu.saturating_sub(fleetfn_scheduler::placement::to_milli(vcpus));
            t.free_mib += umib.saturating_sub(mib);
        }
        let p = providers.entry(i.capacity_provider.clone()).or_default();
        if i.state == InstanceState::Running {
            t.running += 1;
            t.cpu_sum += i.cpu.util.unwrap_or(0.0);
            t.running_memory_bytes += i.instance_type.memory_mib * MIB;
            t.used_memory_bytes += used;
            p.1 += 1;
        }
        if i.state.accepts_environments() {
            p.0 += 1;
        }
    }
    for v in versions {
        if let Some(cp) = &v.capacity_provider {
            providers.entry(cp.clone()).or_default();
        }
    }
    for (labels, t) in per_type {
        #[allow(clippy::cast_precision_loss)]
        let memory_utilization = if t.running_memory_bytes == 0 {
            0.0
        } else {
            t.used_memory_bytes as f64 / t.running_memory_bytes as f64
        };
        #[allow(clippy::cast_precision_loss)]
        let vcpus_available = t.free_mvcpu as f64 / MILLI as f64;
        out.capacity.push(CapacityGauges {
            labels,
            cpu_utilization: mean(t.cpu_sum, t.running),
            memory_utilization,
            vcpus_allocated: t.vcpus_allocated,
            vcpus_available,
            memory_allocated_bytes: gauge(t.memory_allocated * MIB),
            memory_available_bytes: gauge(t.free_mib * MIB),
        });
    }
    out.instances = counts.into_iter().collect();
    for (cp, (kept, running)) in providers {
        let deferred = s.deferred_launches.get(&cp).copied().unwrap_or(0);
        out.providers.push(ProviderGauges {
            labels: ProviderLabels {
                capacity_provider: cp,
            },
            desired_instances: kept + gauge(deferred),
            actual_instances: running,
        });
    }
    out
}

/// Rebuilds every gauge from the data plane's state (once per scaler tick).
pub(crate) fn publish(s: &State, versions: &[VersionRecord]) {
    s.metrics.publish(&snapshot(s, versions));
}

/// Drops the version statistics of versions no longer deployed, and their series.
pub(crate) fn retain_versions(s: &mut State, keep: impl Fn(&str) -> bool) {
    for st in s.routes.retain(keep) {
        s.metrics.remove_version(st.metrics.labels());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn desired_gauge_follows_an_applied_config_before_the_scaler_ticks() {
        use fleetfn_model::types::{FunctionConfiguration, FunctionScalingConfig};
        use fleetfn_server::records::ScalingState;

        let applied = |min, max| FunctionScalingConfig {
            min_execution_environments: Some(min),
            max_execution_environments: Some(max),
        };
        let mut v = VersionRecord {
            function: "f".into(),
            version: "1".into(),
            config: FunctionConfiguration {
                state: fleetfn_model::State::Active,
                last_update_status: fleetfn_model::LastUpdateStatus::Successful,
                ..FunctionConfiguration::default()
            },
            code_hex: String::new(),
            publish_hash: "p1".into(),
            scaling: ScalingState {
                requested: None,
                applied: applied(3, 3),
            },
            capacity_provider: Some("cp".into()),
            layers: Vec::new(),
        };
        let vkey = version_key(&v.function, &v.version);
        let mut s = State::default();
        // The scaler's last tick sized the version to 3 (its Min at the time).
        s.scale.insert(
            vkey,
            crate::state::VersionScale {
                desired: 3,
                low_for: std::time::Duration::ZERO,
                last_tick: Some((tokio::time::Instant::now(), 0)),
                last_counts: (0, 0),
                throttle_history: std::collections::VecDeque::new(),
                throttles_last_minute: 0,
                avg_cpu: 0.0,
                saturation: 0.0,
            },
        );
        let desired = |s: &State, v: &VersionRecord| {
            snapshot(s, std::slice::from_ref(v)).versions[0].desired_environments
        };
        assert_eq!(desired(&s, &v), 3);
        // Min = Max = 0 is applied; the deployer stops everything at once, the scaler has not
        // ticked since: the gauge already says 0.
        v.scaling.applied = applied(0, 0);
        assert_eq!(desired(&s, &v), 0);
        // A raised minimum counts at once too.
        v.scaling.applied = applied(5, 8);
        assert_eq!(desired(&s, &v), 5);
    }

    #[test]
    fn usage_grows_by_what_each_report_adds() {
        let r = |u: u64, s: u64, rx: Option<u64>| EnvInsights {
            cpu_user_ns: Some(u),
            cpu_system_ns: Some(s),
            memory_peak_bytes: Some(1),
            net_rx_bytes: rx,
            net_tx_bytes: rx.map(|x| x * 2),
        };
        let ms = std::time::Duration::from_millis;
        // The first report counts from the environment's start.
        let first = usage_delta(&EnvInsights::default(), &r(5_000_000, 1_000_000, Some(10)));
        assert_eq!(
            first,
            EnvironmentUsage {
                cpu_user: ms(5),
                cpu_system: ms(1),
                network_rx_bytes: 10,
                network_tx_bytes: 20,
            }
        );
        let next = usage_delta(
            &r(5_000_000, 1_000_000, Some(10)),
            &r(7_000_000, 1_000_000, Some(15)),
        );
        assert_eq!(
            (
                next.cpu_user,
                next.cpu_system,
                next.network_rx_bytes,
                next.network_tx_bytes
            ),
            (ms(2), ms(0), 5, 10)
        );
        // Backwards (another source) or unmeasured: nothing.
        let back = usage_delta(
            &r(7_000_000, 1_000_000, Some(15)),
            &r(1_000_000, 2_000_000, None),
        );
        assert_eq!(
            (back.cpu_user, back.cpu_system, back.network_rx_bytes),
            (ms(0), ms(1), 0)
        );
    }

    #[test]
    fn try_outcomes() {
        let addr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(try_outcome(&Ok(InvokeReply::Gone)), TryOutcome::Gone);
        assert_eq!(
            try_outcome(&Err(ClientError::Unreachable {
                addr,
                detail: String::new()
            })),
            TryOutcome::Unreachable
        );
        assert_eq!(
            try_outcome(&Err(ClientError::NoAnswer {
                addr,
                detail: String::new()
            })),
            TryOutcome::Failed
        );
    }
}
