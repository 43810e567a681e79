//! `GET /fleetfn/v1/environments`: every execution environment and every instance of the data
//! plane, sorted by id.

use fleetfn_proto::EnvState;
use fleetfn_scheduler::InstanceState;
use serde::{Deserialize, Serialize};

/// The data plane's environments and instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentsDocument {
    pub environments: Vec<EnvironmentEntry>,
    /// Absent without a data plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<InstanceEntry>>,
}

/// `Environments[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentEntry {
    pub environment_id: String,
    pub function_name: String,
    /// `"1"`, `"2"`, … or `"$LATEST.PUBLISHED"`.
    pub version: String,
    pub instance_id: String,
    pub zone: String,
    pub capacity_provider: String,
    pub state: EnvState,
    /// Whether this server's router sends invokes to it: `Ready` on an instance whose last
    /// heartbeat is not overdue (a silent or partitioned agent's environments are not).
    #[serde(default)]
    pub routed: bool,
    pub in_flight: u32,
    pub max_concurrency: u32,
    pub publish_hash: String,
    pub memory_bytes: Option<u64>,
    pub cpu_usage_ns: Option<u64>,
    /// Why it failed or exited; `null` otherwise.
    pub failure: Option<EnvironmentFailure>,
}

/// `Environments[].Failure`: LMI's `StateReasonCode` and a readable reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentFailure {
    pub reason_code: String,
    pub reason: String,
}

/// `Instances[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceEntry {
    pub instance_id: String,
    pub zone: String,
    pub capacity_provider: String,
    pub instance_type: String,
    pub state: InstanceState,
}
