//! The per-version counters the router updates on the request path (invocations, errors,
//! throttles by reason, busy and billed time), read by the scaler, the metering, status and
//! metrics and the one-second series. Depends on no other module of the crate but `series`.

use std::sync::atomic::{AtomicBool, AtomicU64};

/// The one throttle reason type, from the agent's refusal to the 429 message and the metrics.
pub(crate) use fleetfn_model::ThrottleReason;

/// Per-version counters the router updates on the request path.
#[derive(Debug, Default)]
pub(crate) struct VersionStats {
    pub invocations: AtomicU64,
    pub errors: AtomicU64,
    /// Indexed by [`ThrottleReason::index`].
    pub throttles: [AtomicU64; ThrottleReason::COUNT],
    /// Sum of invoke durations (ns): average concurrency = Δbusy / Δt.
    pub busy_ns: AtomicU64,
    /// Invoke durations in log buckets (the one-second series' percentiles).
    pub durations: crate::series::DurationHistogram,
    /// Sum of served invokes' durations rounded up to the millisecond (Lambda's billing unit).
    pub billed_ms: AtomicU64,
    /// Placement cannot give the version what the scaler wants (`MaxVCpuCount` or host budget).
    pub capped: AtomicBool,
    /// The version's Prometheus series, cached so an invoke hashes no labels.
    pub metrics: fleetfn_metrics::VersionMetrics,
}
