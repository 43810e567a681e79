//! The scaler tick (about once a second): per published version, a snapshot of its Ready
//! environments' CPU utilization (from the agents' reports), its concurrency saturation (average
//! in-flight from the router's busy time, with throttled requests counted as unmet demand), its
//! `[min, max]` and its provider's CPU target, handed to `fleetfn_scheduler::decide`. The answer
//! is the version's desired environment count, which the deployer places and converges to.
//! The same tick adds each version's second to its one-second series (`series`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetfn_proto::EnvState;
use fleetfn_scheduler::{ScalingMode, VersionSnapshot, decide};
use fleetfn_server::records::version_key;
use tokio::time::Instant;

use crate::DataPlane;
use crate::state::VersionScale;
use crate::version::{bounds, rolling_out};

const MINUTE: Duration = Duration::from_secs(60);
/// Largest multiple of the served load that throttles may add to the demand in one tick.
const MAX_DEMAND_FACTOR: f64 = 2.0;

/// Per (version, publish): Ready count, starting count, the Ready ones' CPU utilizations, and
/// their max concurrency.
type Group = (u32, u32, Vec<f64>, u32);

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
        // Borrowed as a plain reference: a version's scaler entry and its series are both
        // updated in the loop below.
        let s: &mut crate::state::State = &mut guard;
        let second = s.series_clock.second(now);
        let mut seen = HashSet::new();
        // One pass over the environments: per (version, publish) the Ready and starting counts,
        // the Ready ones' CPU utilizations and their max concurrency.
        let mut groups: HashMap<(String, String), Group> = HashMap::new();
        for e in s.envs.values() {
            let g = groups
                .entry((e.version_key.clone(), e.publish_hash.clone()))
                .or_insert((0, 0, Vec::new(), 1));
            match e.state {
                EnvState::Ready => {
                    g.0 += 1;
                    g.2.push(e.cpu.util.unwrap_or(0.0));
                    g.3 = e.max_concurrency.max(1);
                }
                EnvState::Starting => g.1 += 1,
                _ => {}
            }
        }
        for v in &versions {
            let vkey = version_key(&v.function, &v.version);
            let Some((min, max)) = bounds(v) else {
                continue;
            };
            seen.insert(vkey.clone());
            let rolling_out = rolling_out(v);
            let (ready, starting, utils, max_conc) = groups
                .remove(&(vkey.clone(), v.publish_hash.clone()))
                .unwrap_or((0, 0, Vec::new(), 1));
            let stats = s.stats(&vkey);
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
            let entry = s.scale.entry(vkey.clone()).or_insert(VersionScale {
                desired: min,
                low_for: Duration::ZERO,
                last_tick: None,
                last_counts: (served, throttled),
                throttle_history: std::collections::VecDeque::new(),
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
                Some((t, b)) if ready > 0 => {
                    let dt = now.saturating_duration_since(t).as_secs_f64();
                    #[allow(clippy::cast_precision_loss)]
                    let avg_in_flight = busy.saturating_sub(b) as f64 / 1e9 / dt.max(1e-3);
                    avg_in_flight / f64::from(ready * max_conc)
                }
                _ => 0.0,
            };
            entry.last_tick = Some((now, busy));
            let saturation = effective_saturation(
                busy_fraction,
                served.saturating_sub(prev_served),
                throttled.saturating_sub(prev_throttled),
            );
            #[allow(clippy::cast_precision_loss)]
            let avg_cpu = if utils.is_empty() {
                0.0
            } else {
                utils.iter().sum::<f64>() / utils.len() as f64
            };
            entry.avg_cpu = avg_cpu;
            entry.saturation = saturation;
            let max_bound = max.unwrap_or(u32::MAX).max(min);
            if rolling_out || ready == 0 {
                // Nothing to measure yet: hold (at least the minimum).
                entry.desired = entry.desired.clamp(min, max_bound);
                entry.low_for = Duration::ZERO;
                let gauges = crate::series::Gauges {
                    cpu_utilization: avg_cpu,
                    desired: entry.desired,
                    ready,
                };
                s.series
                    .entry(vkey)
                    .or_default()
                    .record(second, now, &counters, gauges);
                continue;
            }
            let snapshot = VersionSnapshot {
                current: ready,
                avg_cpu,
                saturation,
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
                tracing::info!(function = %v.function, version = %v.version, from = before, to = entry.desired, ready, avg_cpu, saturation, "scaling");
            }
            let gauges = crate::series::Gauges {
                cpu_utilization: avg_cpu,
                desired: entry.desired,
                ready,
            };
            s.series
                .entry(vkey)
                .or_default()
                .record(second, now, &counters, gauges);
        }
        self.meter.lock().tick(s, now, &versions, true);
        s.scale.retain(|k, _| seen.contains(k));
        s.series.retain(|k, _| seen.contains(k));
        crate::metrics::retain_versions(s, |k| seen.contains(k));
        crate::metrics::publish(s, &versions);
        Ok(())
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
