//! The per-version counters the router updates on the request path (invocations, errors,
//! throttles by reason, busy and billed time), read by the scaler, the metering, status and
//! metrics. Depends on no other module of the crate.

use std::sync::atomic::{AtomicBool, AtomicU64};

/// Throttle reasons, each throttle counted under exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThrottleReason {
    Concurrency = 0,
    Cpu = 1,
    Memory = 2,
    Disk = 3,
}

impl ThrottleReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Concurrency => "Concurrency",
            Self::Cpu => "CPU",
            Self::Memory => "Memory",
            Self::Disk => "Disk",
        }
    }
}

/// Per-version counters the router updates on the request path.
#[derive(Debug, Default)]
pub(crate) struct VersionStats {
    pub invocations: AtomicU64,
    pub errors: AtomicU64,
    /// Indexed by [`ThrottleReason`].
    pub throttles: [AtomicU64; 4],
    /// Sum of invoke durations (ns): average concurrency = Δbusy / Δt.
    pub busy_ns: AtomicU64,
    /// Sum of served invokes' durations rounded up to the millisecond (Lambda's billing unit).
    pub billed_ms: AtomicU64,
    /// Placement cannot give the version what the scaler wants (`MaxVCpuCount` or host budget).
    pub capped: AtomicBool,
    /// The version's Prometheus series, cached so an invoke hashes no labels.
    pub metrics: fleetfn_metrics::VersionMetrics,
}
