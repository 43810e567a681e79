//! `GET /fleetfn/v1/status` (docs/STATUS.md): capacity providers with their instances, and every
//! published version with its environments, scaler state and throttles.

use fleetfn_model::{CapacityProviderState, LastUpdateStatus, State, ThrottleReason};
use fleetfn_proto::EnvState;
use fleetfn_scheduler::InstanceState;
use serde::{Deserialize, Serialize};

/// The fleet at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusDocument {
    /// When the document was built (absent when the data plane could not read its state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_at: Option<String>,
    /// `false` when the server runs with `--no-data-plane` (then both lists are empty).
    pub data_plane: bool,
    /// The local instance provider's budget (absent without a data plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostStatus>,
    pub capacity_providers: Vec<CapacityProviderStatus>,
    pub functions: Vec<FunctionStatus>,
    /// The asynchronous invocation queue (absent when this server has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_queue: Option<crate::AsyncQueueStatus>,
}

impl StatusDocument {
    /// A document with no providers, versions, host or time.
    pub fn empty(data_plane: bool) -> Self {
        Self {
            generated_at: None,
            data_plane,
            host: None,
            capacity_providers: Vec::new(),
            functions: Vec::new(),
            async_queue: None,
        }
    }
}

/// `Host`: `MaxVCpus` virtual vCPUs over all instances of this machine, `VCpuScale` host CPUs
/// per virtual vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostStatus {
    pub v_cpu_scale: f64,
    pub max_v_cpus: u32,
    pub v_cpus_in_use: u32,
}

/// `CapacityProviders[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapacityProviderStatus {
    pub name: String,
    pub arn: String,
    pub state: CapacityProviderState,
    pub architecture: String,
    pub zones: Vec<String>,
    pub max_v_cpu_count: i64,
    /// vCPUs of its instances.
    pub v_cpus: u32,
    #[serde(rename = "MemoryMiB")]
    pub memory_mib: u64,
    /// vCPUs allocated to its environments (rounded to 3 decimals).
    pub allocated_v_cpus: f64,
    #[serde(rename = "AllocatedMemoryMiB")]
    pub allocated_memory_mib: u64,
    /// The last failed instance launch while it is retried with backoff; `null` otherwise.
    pub launch_error: Option<LaunchError>,
    /// Launch choices the instance provider had no capacity for recently (EC2's
    /// `InsufficientInstanceCapacity`...), that it fell back from to another type or zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_fallbacks: Vec<CapacityFallback>,
    pub instances: Vec<InstanceStatus>,
}

/// `CapacityProviders[].CapacityFallbacks[]`: a (type, zone) the provider had no capacity for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapacityFallback {
    pub instance_type: String,
    pub zone: String,
    /// EC2's error code.
    pub code: String,
    pub message: String,
    pub at: String,
}

/// `CapacityProviders[].LaunchError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LaunchError {
    pub message: String,
    pub at: String,
    pub retry_at: String,
}

/// `CapacityProviders[].Instances[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceStatus {
    pub instance_id: String,
    pub instance_type: String,
    pub zone: String,
    pub v_cpus: u32,
    #[serde(rename = "MemoryMiB")]
    pub memory_mib: u64,
    /// `pending`, `running`, `draining`, `terminated`.
    pub state: InstanceState,
    pub cpu_utilization: Option<f64>,
    /// How many environments it runs.
    pub environments: usize,
    pub launched_at: String,
}

/// `Functions[]`: one published version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionStatus {
    pub function_name: String,
    /// `"1"`, `"2"`, … or `"$LATEST.PUBLISHED"`.
    pub version: String,
    pub function_arn: String,
    pub capacity_provider: Option<String>,
    pub state: State,
    pub state_reason_code: Option<String>,
    pub last_update_status: LastUpdateStatus,
    pub min_execution_environments: i64,
    pub max_execution_environments: Option<i64>,
    /// The scaler's current answer, within the applied `[Min, Max]`.
    pub desired_execution_environments: u32,
    pub cpu_utilization: Option<f64>,
    pub concurrency_saturation: Option<f64>,
    /// Invokes run since the server started (function errors included).
    #[serde(default)]
    pub invocations: u64,
    /// Invokes that failed, in the function or on the way to it.
    #[serde(default)]
    pub errors: u64,
    /// Throttles of the last 60 s.
    #[serde(default)]
    pub throttles_last_minute: u64,
    /// The throttles of the last 60 s by reason (`Total` is `ThrottlesLastMinute`).
    #[serde(default)]
    pub throttles_last_minute_by_reason: Throttles,
    /// Invokes per second over the last 10 s (from the one-second series).
    #[serde(default)]
    pub invocations_per_second: f64,
    pub throttles: Throttles,
    pub environments: Vec<EnvironmentStatus>,
}

/// `Functions[].Throttles`: throttled invokes since the server started, each counted once under
/// exactly one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Throttles {
    pub total: u64,
    pub concurrency: u64,
    #[serde(rename = "CPU")]
    pub cpu: u64,
    pub memory: u64,
    pub disk: u64,
}

impl Throttles {
    /// From per-reason counts indexed by [`ThrottleReason::index`]; the total is their sum.
    pub fn from_counts(by_reason: [u64; ThrottleReason::COUNT]) -> Self {
        let n = |r: ThrottleReason| by_reason[r.index()];
        Self {
            total: by_reason.iter().sum(),
            concurrency: n(ThrottleReason::Concurrency),
            cpu: n(ThrottleReason::Cpu),
            memory: n(ThrottleReason::Memory),
            disk: n(ThrottleReason::Disk),
        }
    }

    /// The count of one reason.
    pub fn get(&self, reason: ThrottleReason) -> u64 {
        match reason {
            ThrottleReason::Concurrency => self.concurrency,
            ThrottleReason::Cpu => self.cpu,
            ThrottleReason::Memory => self.memory,
            ThrottleReason::Disk => self.disk,
        }
    }
}

fn yes() -> bool {
    true
}

/// `Functions[].Environments[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentStatus {
    pub environment_id: String,
    pub instance_id: String,
    pub zone: String,
    /// `Starting`, `Ready`, `Draining`, `Failed`, `Exited`.
    pub state: EnvState,
    pub max_concurrency: u32,
    pub in_flight: u32,
    pub cpu_utilization: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// Whether it runs the version's current publish (`false`: an older one, during a rollout).
    #[serde(default = "yes")]
    pub current: bool,
}
