//! `GET /fleetfn/v1/functions/{function}/series` (docs/STATUS.md): the data plane's in-memory
//! ring of one-second samples per version (the last 15 minutes), in columns — the web
//! console's live charts. Served from memory: reading it touches no store.

use serde::{Deserialize, Serialize};

/// A function's recent one-second samples, per version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SeriesDocument {
    pub function_name: String,
    /// The server's unix second when the document was built (the charts' right edge).
    pub now: u64,
    /// Seconds per sample (1).
    pub step_seconds: u64,
    /// The versions that have samples (none for a server without a data plane), in version
    /// order.
    pub versions: Vec<VersionSeries>,
}

/// `Versions[]`: one version's samples as columns of equal length, oldest first. A second with
/// no sample (the scaler's tick came late) is absent from `T`; its counts are in the next
/// sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionSeries {
    /// `"1"`, `"2"`, … or `"$LATEST.PUBLISHED"`.
    pub version: String,
    /// Unix second of each sample.
    #[serde(rename = "T")]
    pub t: Vec<u64>,
    /// Invokes that ended in that second (function errors included).
    pub invocations: Vec<u64>,
    /// Invokes that failed, in the function or on the way to it.
    pub errors: Vec<u64>,
    /// Throttled invokes, each under exactly one reason.
    pub throttles: ThrottleSeries,
    /// Median duration of the invokes that ended in that second (ms); `null` without any.
    #[serde(rename = "DurationP50Ms")]
    pub duration_p50_ms: Vec<Option<f64>>,
    /// 99th percentile duration (ms); `null` without any invoke.
    #[serde(rename = "DurationP99Ms")]
    pub duration_p99_ms: Vec<Option<f64>>,
    /// Mean CPU utilization of the Ready environments (a fraction; 0 without any).
    pub cpu_utilization: Vec<f64>,
    /// Average invokes in flight over the second (busy time / elapsed time).
    pub in_flight: Vec<f64>,
    /// The scaler's desired environment count.
    pub desired_environments: Vec<u32>,
    /// Ready environments of the version's current publish.
    pub ready_environments: Vec<u32>,
}

/// `Versions[].Throttles`: one column per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ThrottleSeries {
    pub concurrency: Vec<u64>,
    #[serde(rename = "CPU")]
    pub cpu: Vec<u64>,
    pub memory: Vec<u64>,
    pub disk: Vec<u64>,
}

impl SeriesDocument {
    /// A document without samples.
    pub fn empty(function_name: impl Into<String>, now: u64) -> Self {
        Self {
            function_name: function_name.into(),
            now,
            step_seconds: 1,
            versions: Vec::new(),
        }
    }
}
