//! Admission ceilings: an environment refuses invokes while its memory, `/tmp` or CPU use is at
//! a ceiling, so the router tries another environment and a final throttle counts as
//! `MemoryThrottles`, `DiskThrottles` or `CPUThrottles` (LMI). Use is sampled every 250 ms off
//! the invoke path (CPU over the last second; [`crate::Environment`]'s monitor); the invoke path
//! reads one atomic.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use fleetfn_proto::EnvInsights;

use crate::error::Resource;

/// CPU ceiling: CPU time over the last window ≥ 95 % of `vcpus × cpu_scale` host CPUs.
pub const CPU_CEILING: f64 = 0.95;
/// Memory ceiling: memory in use ≥ 90 % of `MemorySize`.
pub const MEMORY_CEILING: f64 = 0.90;
/// Disk ceiling: `/tmp` in use ≥ 90 % of `EphemeralStorage`.
pub const DISK_CEILING: f64 = 0.90;

/// Use as fractions of the environment's allotments; `None` where it cannot be measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fractions {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub disk: Option<f64>,
}

/// The first resource at its ceiling in admission order (memory, disk, cpu), with its use.
/// (Concurrency comes before all of them; the invoke path checks it.)
pub fn over_ceiling(f: &Fractions) -> Option<(Resource, f64)> {
    [
        (Resource::Memory, f.memory, MEMORY_CEILING),
        (Resource::Disk, f.disk, DISK_CEILING),
        (Resource::Cpu, f.cpu, CPU_CEILING),
    ]
    .into_iter()
    .find_map(|(r, used, ceiling)| used.filter(|u| *u >= ceiling).map(|u| (r, u)))
}

/// The ceiling of `resource`.
pub fn ceiling(resource: Resource) -> f64 {
    match resource {
        Resource::Cpu => CPU_CEILING,
        Resource::Memory => MEMORY_CEILING,
        Resource::Disk => DISK_CEILING,
    }
}

/// CPU use over a window: `cpu_ns` of CPU time in `window`, as a fraction of
/// `allotment_cpus` CPUs. `None` for an empty window or no allotment.
pub fn cpu_fraction(cpu_ns: u64, window: Duration, allotment_cpus: f64) -> Option<f64> {
    let window_ns = window.as_nanos() as f64;
    (window_ns > 0.0 && allotment_cpus > 0.0 && allotment_cpus.is_finite())
        .then(|| cpu_ns as f64 / (window_ns * allotment_cpus))
}

/// `used / limit`; `None` without a limit.
pub fn fraction(used: u64, limit: u64) -> Option<f64> {
    (limit > 0).then(|| used as f64 / limit as f64)
}

/// An environment's use as last sampled.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceView {
    /// Memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// CPU time used since start, ns.
    pub cpu_usage_ns: Option<u64>,
    /// CPU use over the last window, as a fraction of the allotment.
    pub cpu_utilization: Option<f64>,
    /// `/tmp` in use, bytes.
    pub tmp_used_bytes: Option<u64>,
    /// The resource at its ceiling (admission refuses invokes), with its use in percent.
    pub saturated: Option<(Resource, u32)>,
    /// CPU split, peak memory and network counters for the Lambda Insights metrics
    /// ([`crate::insights`]).
    pub insights: EnvInsights,
}

const UNKNOWN: u64 = u64::MAX;

/// The last sample, in atomics: written by the sampler, read by invokes and reports.
#[derive(Debug)]
pub(crate) struct Sampled {
    /// 0 when under every ceiling, else `resource code << 16 | percent`.
    verdict: AtomicU32,
    memory_bytes: AtomicU64,
    cpu_usage_ns: AtomicU64,
    /// `f64` bits.
    cpu_utilization: AtomicU64,
    tmp_used_bytes: AtomicU64,
    /// [`EnvInsights`], field by field.
    insights: [AtomicU64; 5],
    /// Whether the environment's cgroup ran out of CPU quota (a throttled CFS period) between
    /// the last two samples.
    cpu_throttled: std::sync::atomic::AtomicBool,
}

fn code(r: Resource) -> u32 {
    match r {
        Resource::Cpu => 1,
        Resource::Memory => 2,
        Resource::Disk => 3,
    }
}

fn from_code(c: u32) -> Option<Resource> {
    match c {
        1 => Some(Resource::Cpu),
        2 => Some(Resource::Memory),
        3 => Some(Resource::Disk),
        _ => None,
    }
}

/// A fraction in whole percent, rounded down and capped to fit the verdict's 16 bits.
pub(crate) fn percent(f: f64) -> u32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let p = (f * 100.0).clamp(0.0, f64::from(u16::MAX)) as u32;
    p
}

impl Sampled {
    pub(crate) fn new() -> Self {
        Self {
            verdict: AtomicU32::new(0),
            memory_bytes: AtomicU64::new(UNKNOWN),
            cpu_usage_ns: AtomicU64::new(UNKNOWN),
            cpu_utilization: AtomicU64::new(UNKNOWN),
            tmp_used_bytes: AtomicU64::new(UNKNOWN),
            insights: std::array::from_fn(|_| AtomicU64::new(UNKNOWN)),
            cpu_throttled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Records whether the environment's CPU quota ran out since the previous sample.
    pub(crate) fn set_cpu_throttled(&self, throttled: bool) {
        self.cpu_throttled.store(throttled, Ordering::Relaxed);
    }

    /// Whether the environment's CPU quota ran out between the last two samples.
    pub(crate) fn cpu_throttled(&self) -> bool {
        self.cpu_throttled.load(Ordering::Relaxed)
    }

    /// Stores a sample and its verdict.
    pub(crate) fn publish(&self, view: &ResourceView) {
        let store =
            |a: &AtomicU64, v: Option<u64>| a.store(v.unwrap_or(UNKNOWN), Ordering::Relaxed);
        store(&self.memory_bytes, view.memory_bytes);
        store(&self.cpu_usage_ns, view.cpu_usage_ns);
        store(
            &self.cpu_utilization,
            view.cpu_utilization.map(f64::to_bits),
        );
        store(&self.tmp_used_bytes, view.tmp_used_bytes);
        let i = &view.insights;
        for (a, v) in self.insights.iter().zip([
            i.cpu_user_ns,
            i.cpu_system_ns,
            i.memory_peak_bytes,
            i.net_rx_bytes,
            i.net_tx_bytes,
        ]) {
            store(a, v);
        }
        let verdict = view
            .saturated
            .map_or(0, |(r, p)| (code(r) << 16) | p.min(u32::from(u16::MAX)));
        self.verdict.store(verdict, Ordering::Relaxed);
    }

    /// The resource at its ceiling, if any, with its use in percent (one atomic load).
    pub(crate) fn verdict(&self) -> Option<(Resource, u32)> {
        let v = self.verdict.load(Ordering::Relaxed);
        from_code(v >> 16).map(|r| (r, v & 0xFFFF))
    }

    pub(crate) fn view(&self) -> ResourceView {
        let load = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|v| *v != UNKNOWN);
        ResourceView {
            memory_bytes: load(&self.memory_bytes),
            cpu_usage_ns: load(&self.cpu_usage_ns),
            cpu_utilization: load(&self.cpu_utilization).map(f64::from_bits),
            tmp_used_bytes: load(&self.tmp_used_bytes),
            saturated: self.verdict(),
            insights: EnvInsights {
                cpu_user_ns: load(&self.insights[0]),
                cpu_system_ns: load(&self.insights[1]),
                memory_peak_bytes: load(&self.insights[2]),
                net_rx_bytes: load(&self.insights[3]),
                net_tx_bytes: load(&self.insights[4]),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(cpu: Option<f64>, memory: Option<f64>, disk: Option<f64>) -> Fractions {
        Fractions { cpu, memory, disk }
    }

    #[test]
    fn ceilings_are_inclusive_and_checked_memory_disk_cpu() {
        assert_eq!(over_ceiling(&Fractions::default()), None);
        assert_eq!(over_ceiling(&f(Some(0.94), Some(0.89), Some(0.89))), None);
        assert_eq!(
            over_ceiling(&f(Some(0.95), None, None)),
            Some((Resource::Cpu, 0.95))
        );
        assert_eq!(
            over_ceiling(&f(None, Some(0.90), None)),
            Some((Resource::Memory, 0.90))
        );
        assert_eq!(
            over_ceiling(&f(None, None, Some(1.0))),
            Some((Resource::Disk, 1.0))
        );
        // Several at once: memory, then disk, then cpu.
        assert_eq!(
            over_ceiling(&f(Some(2.0), Some(0.95), Some(0.99))).map(|v| v.0),
            Some(Resource::Memory)
        );
        assert_eq!(
            over_ceiling(&f(Some(2.0), Some(0.5), Some(0.99))).map(|v| v.0),
            Some(Resource::Disk)
        );
        assert_eq!(
            over_ceiling(&f(Some(2.0), Some(0.5), Some(0.5))).map(|v| v.0),
            Some(Resource::Cpu)
        );
    }

    #[test]
    fn cpu_use_is_relative_to_the_allotment() {
        let s = Duration::from_secs(1);
        // One full host CPU for a second against 2 vCPUs × 0.25 host CPUs: twice the allotment.
        assert_eq!(cpu_fraction(1_000_000_000, s, 2.0 * 0.25), Some(2.0));
        assert_eq!(cpu_fraction(475_000_000, s, 0.5), Some(0.95));
        assert_eq!(cpu_fraction(0, s, 1.0), Some(0.0));
        assert_eq!(cpu_fraction(1, Duration::ZERO, 1.0), None);
        assert_eq!(cpu_fraction(1, s, 0.0), None);
        assert_eq!(fraction(90, 100), Some(0.9));
        assert_eq!(fraction(1, 0), None);
    }

    #[test]
    fn the_sampled_view_round_trips_through_atomics() {
        let s = Sampled::new();
        assert_eq!(s.view(), ResourceView::default());
        assert_eq!(s.verdict(), None);
        let view = ResourceView {
            memory_bytes: Some(42),
            cpu_usage_ns: Some(0),
            cpu_utilization: Some(0.97),
            tmp_used_bytes: None,
            saturated: Some((Resource::Disk, 93)),
            insights: EnvInsights {
                cpu_user_ns: Some(7),
                cpu_system_ns: Some(0),
                memory_peak_bytes: Some(1 << 20),
                net_rx_bytes: None,
                net_tx_bytes: Some(u64::MAX - 1),
            },
        };
        s.publish(&view);
        assert_eq!(s.view(), view);
        assert_eq!(s.verdict(), Some((Resource::Disk, 93)));
        s.publish(&ResourceView {
            saturated: Some((Resource::Cpu, percent(1e9))),
            ..view
        });
        assert_eq!(s.verdict(), Some((Resource::Cpu, 65_535)));
        s.publish(&ResourceView::default());
        assert_eq!(s.view(), ResourceView::default());
        assert_eq!(percent(0.905), 90);
    }
}
