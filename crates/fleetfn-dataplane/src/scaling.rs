//! The scaler tick (about once a second): per published version, a snapshot of its Ready
//! environments' CPU utilization (from the agents' reports), its concurrency saturation (average
//! in-flight from the router's busy time, with throttled requests counted as unmet demand), its
//! `[min, max]` and its provider's CPU target, handed to `fleetfn_scheduler::decide`. The answer
//! is the version's desired environment count, which the deployer places and converges to.
//! The same tick adds each version's second to its one-second series (`series`). A follower
//! (a server that only routes) runs the same per-version sampling once a second over the
//! invokes it routed, without deciding anything (`DataPlane::follower_tick`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetfn_proto::EnvState;
use fleetfn_scheduler::{ScalingMode, VersionSnapshot, decide};
use fleetfn_server::records::version_key;
use tokio::time::Instant;

use crate::DataPlane;
use crate::state::{State, VersionScale};
use crate::version::{bounds, rolling_out};

const MINUTE: Duration = Duration::from_secs(60);
/// Largest multiple of the served load that throttles may add to the demand in one tick.
const MAX_DEMAND_FACTOR: f64 = 2.0;

/// The provider's CPU target (a fraction) from its scaling config.
fn target_cpu(p: &fleetfn_model::types::CapacityProvider) -> f64 {
    let cfg = &p.capacity_provider_scaling_config;
    let mode = match cfg.scaling_mode.as_deref() {
        Some("Manual") => cfg
            .scaling_policies
            .as_ref()
            .and_then(|ps| {
                ps.iter().find(|p| {
                    p.predefined_metric_type == "LambdaCapacityProviderAverageCPUUtilization"
                })
            })
            .map_or(ScalingMode::Auto, |p| ScalingMode::Manual {
                target_cpu_percent: p.target_value,
            }),
        _ => ScalingMode::Auto,
    };
    mode.target_cpu()
}

/// Saturation with throttled requests counted as demand the fleet did not serve: if a third of
/// the requests were throttled, the fleet needed 1.5× what it served (at most 2× per tick).
pub(crate) fn effective_saturation(busy_fraction: f64, served: u64, throttled: u64) -> f64 {
    if !busy_fraction.is_finite() || busy_fraction < 0.0 {
        return 0.0;
    }
    if throttled == 0 {
        return busy_fraction;
    }
    // Capped at 2: clients retrying throttles in a tight loop inflate the count far beyond
    // the real demand; doubling per tick still absorbs a doubling in one step.
    #[allow(clippy::cast_precision_loss)]
    let factor = ((served + throttled) as f64 / served.max(1) as f64).min(MAX_DEMAND_FACTOR);
    // Throttles scale the observed use, they do not stand in for it: a handful of throttles on a
    // fleet at 75 % (a request that met a worker between two /next) is no reason to grow it,
    // while a busy fleet throttling half its callers needs twice the environments. (CPU
    // throttles show up in the CPU utilization, which the scaler also reads.)
    busy_fraction * factor
}

/// One version's environments as a tick reads them (of its current publish).
#[derive(Debug)]
struct Group {
    ready: u32,
    starting: u32,
    /// The Ready ones' CPU utilizations (from the agents' reports).
    utils: Vec<f64>,
    /// Their max concurrency (at least 1).
    max_concurrency: u32,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            ready: 0,
            starting: 0,
            utils: Vec::new(),
            max_concurrency: 1,
        }
    }
}

/// One pass over the environments: per (version key, publish hash) its [`Group`].
fn groups(s: &State) -> HashMap<(String, String), Group> {
    let mut groups: HashMap<(String, String), Group> = HashMap::new();
    for e in s.envs.values() {
        let g = groups
            .entry((e.version_key.clone(), e.publish_hash.clone()))
            .or_default();
        match e.state {
            EnvState::Ready => {
                g.ready += 1;
                g.utils.push(e.cpu.util.unwrap_or(0.0));
                g.max_concurrency = e.max_concurrency.max(1);
            }
            EnvState::Starting => g.starting += 1,
            _ => {}
        }
    }
    groups
}

/// The per-version half of a tick, the same on the leader and on a follower: reads the
/// version's counters (what this data plane routed), updates its [`VersionScale`] (the
/// throttles of the last minute, the average CPU of its Ready environments, the concurrency
/// saturation), lets `size` set its desired count (the leader's scaler decision, a follower's
/// estimate), and adds the second to the version's series. A new entry starts at `initial`.
/// Reads a few atomics per version: nothing on the invoke path.
fn sample_version(
    s: &mut State,
    vkey: &str,
    now: Instant,
    second: u64,
    g: &Group,
    initial: u32,
    size: impl FnOnce(&mut VersionScale),
) {
    let stats = s.stats(vkey);
    let busy = stats.busy_ns.load(Ordering::Relaxed);
    let served = stats.invocations.load(Ordering::Relaxed);
    let throttled_by: [u64; fleetfn_model::ThrottleReason::COUNT] =
        std::array::from_fn(|i| stats.throttles[i].load(Ordering::Relaxed));
    let throttled: u64 = throttled_by.iter().sum();
    let counters = crate::series::Counters {
        invocations: served,
        errors: stats.errors.load(Ordering::Relaxed),
        throttles: throttled_by,
        busy_ns: busy,
        durations: stats.durations.counts(),
    };
    let entry = s.scale.entry(vkey.to_string()).or_insert(VersionScale {
        desired: initial,
        low_for: Duration::ZERO,
        last_tick: None,
        last_counts: (served, throttled),
        // The version's counters start at zero with it, as its series does: throttles counted
        // before its first tick (a deploy pass can hold the tick back for seconds) are in its
        // last minute, not hidden in the baseline.
        throttle_history: std::collections::VecDeque::from([(
            now,
            [0; fleetfn_model::ThrottleReason::COUNT],
        )]),
        throttles_last_minute: 0,
        avg_cpu: 0.0,
        saturation: 0.0,
    });
    entry.throttle_history.push_back((now, throttled_by));
    while entry.throttle_history.len() >= 2
        && now.saturating_duration_since(entry.throttle_history[1].0) >= MINUTE
    {
        entry.throttle_history.pop_front();
    }
    entry.throttles_last_minute = throttled.saturating_sub(
        entry
            .throttle_history
            .front()
            .map_or(0, |x| x.1.iter().sum()),
    );
    let (prev_served, prev_throttled) = entry.last_counts;
    entry.last_counts = (served, throttled);
    let busy_fraction = match entry.last_tick {
        Some((t, b)) if g.ready > 0 => {
            let dt = now.saturating_duration_since(t).as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let avg_in_flight = busy.saturating_sub(b) as f64 / 1e9 / dt.max(1e-3);
            avg_in_flight / f64::from(g.ready * g.max_concurrency)
        }
        _ => 0.0,
    };
    entry.last_tick = Some((now, busy));
    entry.saturation = effective_saturation(
        busy_fraction,
        served.saturating_sub(prev_served),
        throttled.saturating_sub(prev_throttled),
    );
    #[allow(clippy::cast_precision_loss)]
    let avg_cpu = if g.utils.is_empty() {
        0.0
    } else {
        g.utils.iter().sum::<f64>() / g.utils.len() as f64
    };
    entry.avg_cpu = avg_cpu;
    size(entry);
    let gauges = crate::series::Gauges {
        cpu_utilization: avg_cpu,
        desired: entry.desired,
        ready: g.ready,
    };
    s.series
        .entry(vkey.to_string())
        .or_default()
        .record(second, now, &counters, gauges);
}

impl DataPlane {
    pub(crate) async fn scale_tick(&self, elapsed: Duration) -> fleetfn_model::Result<()> {
        let versions = self.cp.deployable_versions().await?;
        let mut targets: HashMap<String, f64> = HashMap::new();
        for v in &versions {
            if let Some(cp) = &v.capacity_provider
                && !targets.contains_key(cp)
            {
                let t = self
                    .cp
                    .capacity_provider_by_name(cp)
                    .await?
                    .map_or(fleetfn_scheduler::scaler::AUTO_TARGET_CPU, |p| {
                        target_cpu(&p)
                    });
                targets.insert(cp.clone(), t);
            }
        }
        let now = Instant::now();
        let mut guard = self.state.write();
        let s: &mut State = &mut guard;
        let second = s.series_clock.second(now);
        let mut seen = HashSet::new();
        let mut groups = groups(s);
        for v in &versions {
            let vkey = version_key(&v.function, &v.version);
            let Some((min, max)) = bounds(v) else {
                continue;
            };
            seen.insert(vkey.clone());
            let rolling_out = rolling_out(v);
            let g = groups
                .remove(&(vkey.clone(), v.publish_hash.clone()))
                .unwrap_or_default();
            let (ready, starting) = (g.ready, g.starting);
            let max_bound = max.unwrap_or(u32::MAX).max(min);
            sample_version(s, &vkey, now, second, &g, min, |entry| {
                if rolling_out || ready == 0 {
                    // Nothing to measure yet: hold (at least the minimum).
                    entry.desired = entry.desired.clamp(min, max_bound);
                    entry.low_for = Duration::ZERO;
                    return;
                }
                let snapshot = VersionSnapshot {
                    current: ready,
                    avg_cpu: entry.avg_cpu,
                    saturation: entry.saturation,
                    min,
                    max,
                    target_cpu: v
                        .capacity_provider
                        .as_ref()
                        .and_then(|cp| targets.get(cp).copied())
                        .unwrap_or(fleetfn_scheduler::scaler::AUTO_TARGET_CPU),
                    low_for: entry.low_for,
                    scale_in_after: self.cfg.scale_in_after,
                };
                let d = decide(&snapshot, elapsed);
                let before = entry.desired;
                if starting > 0 {
                    // A scale-out is under way: never shrink before it lands.
                    entry.desired = d.desired.max(entry.desired).clamp(min, max_bound);
                    entry.low_for = Duration::ZERO;
                } else {
                    entry.desired = d.desired;
                    entry.low_for = d.low_for;
                }
                if entry.desired != before {
                    let (avg_cpu, saturation) = (entry.avg_cpu, entry.saturation);
                    tracing::info!(function = %v.function, version = %v.version, from = before, to = entry.desired, ready, avg_cpu, saturation, "scaling");
                }
            });
        }
        self.meter.lock().tick(s, now, &versions, true);
        s.scale.retain(|k, _| seen.contains(k));
        s.series.retain(|k, _| seen.contains(k));
        crate::metrics::retain_versions(s, |k| seen.contains(k));
        crate::metrics::publish(s, &versions);
        Ok(())
    }

    /// A follower's tick (about once a second): the same per-version sampling as the leader's
    /// [`DataPlane::scale_tick`] over the invokes this server routed and the environments it
    /// mirrors, so its series and its status' rates are its own; and the metering of those
    /// invokes. It decides nothing: a version's desired count is the environments of its
    /// current publish it sees placed (Ready or Starting) within the applied `[Min, Max]`,
    /// which is the leader's decision as it lands (a report later).
    pub(crate) async fn follower_tick(&self) {
        let versions = match self.cp.deployable_versions().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "follower tick: cannot read the versions");
                return;
            }
        };
        let now = Instant::now();
        let mut guard = self.state.write();
        let s: &mut State = &mut guard;
        let second = s.series_clock.second(now);
        let mut seen = HashSet::new();
        let mut groups = groups(s);
        for v in &versions {
            let vkey = version_key(&v.function, &v.version);
            let Some((min, max)) = bounds(v) else {
                continue;
            };
            seen.insert(vkey.clone());
            let g = groups
                .remove(&(vkey.clone(), v.publish_hash.clone()))
                .unwrap_or_default();
            let placed = g.ready + g.starting;
            let max_bound = max.unwrap_or(u32::MAX).max(min);
            sample_version(s, &vkey, now, second, &g, min, |entry| {
                entry.desired = placed.clamp(min, max_bound);
            });
        }
        self.meter.lock().tick(s, now, &versions, false);
        s.scale.retain(|k, _| seen.contains(k));
        s.series.retain(|k, _| seen.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_count_as_unmet_demand() {
        assert!((effective_saturation(0.5, 100, 0) - 0.5).abs() < 1e-12);
        // Half the requests throttled while the fleet was fully busy: twice the fleet.
        assert!((effective_saturation(1.0, 100, 100) - 2.0).abs() < 1e-12);
        // A few throttles on a fleet with room do not make it look saturated.
        assert!((effective_saturation(0.75, 1000, 10) - 0.7575).abs() < 1e-12);
        assert!((effective_saturation(0.3, 100, 50) - 0.45).abs() < 1e-12);
        // A retry storm counts as at most twice the served load.
        assert!((effective_saturation(1.0, 10, 10_000) - 2.0).abs() < 1e-12);
        assert!(effective_saturation(0.0, 0, 10).abs() < 1e-12);
        assert!(effective_saturation(f64::NAN, 1, 1).abs() < 1e-12);
    }
}
