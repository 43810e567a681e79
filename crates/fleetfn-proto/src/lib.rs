//! The server ↔ agent protocol, version 1: HTTP/1.1 + JSON on the agent's listener, every request
//! carrying `Authorization: Bearer <token>`. The server tells an agent which environments to run
//! (`PUT`/`DELETE /v1/environments/{id}`), reads their state (`GET /v1/environments`), and sends
//! invokes (`POST /v1/environments/{id}/invoke`, payload as the body). This crate holds the
//! message types, the [`AgentApi`] trait of what the server asks of an agent, and a pooled HTTP
//! client implementing it; the agent's server side lives in `fleetfn-agent`.
#![forbid(unsafe_code)]

mod api;
mod client;
mod mux;
pub mod response;
pub mod stream;
pub mod tls;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use api::{AgentApi, BoxFuture};
pub use client::{
    AgentClient, AgentStream, ClientError, InvokeReply, MAX_UNIX_SOCKET_PATH, StreamedReply,
};
pub use response::{StreamError, StreamPart};

/// Path prefix of this protocol version.
pub const PREFIX: &str = "/v1";
/// Header carrying the request id of an invoke.
pub const H_REQUEST_ID: &str = "x-fleetfn-request-id";
/// Header carrying the base64 client context of an invoke.
pub const H_CLIENT_CONTEXT: &str = "x-fleetfn-client-context";
/// Header carrying the tenant id of an invoke.
pub const H_TENANT_ID: &str = "x-fleetfn-tenant-id";
/// Response header: the invoke failed in the function (value: `Unhandled`).
pub const H_FUNCTION_ERROR: &str = "x-fleetfn-function-error";
/// Request header on `PUT`/`DELETE` of an environment from a leader of a cluster: its term. An
/// agent refuses (409) a term lower than the highest it has seen, so a former leader that
/// wakes up after its successor took over cannot start or stop anything.
pub const H_TERM: &str = "x-fleetfn-term";
/// Response header on 429: why the environment could not take the invoke (a [`ThrottleReason`]).
pub const H_REJECT_REASON: &str = "x-fleetfn-reject-reason";

/// Why an environment refused an invoke: the value of [`H_REJECT_REASON`]
/// ([`ThrottleReason::as_header`]). The router tries another environment, and a final throttle
/// counts under the same reason.
pub use fleetfn_model::ThrottleReason;

/// What the server asks an agent to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentRequest {
    pub function_name: String,
    pub version: String,
    pub qualified_arn: String,
    pub runtime: String,
    pub handler: Option<String>,
    /// Hex sha256 of the code package in the shared artifact store.
    pub code_sha256_hex: String,
    pub code_size: u64,
    pub memory_mb: u32,
    pub timeout_secs: u32,
    pub max_concurrency: u32,
    pub vcpus: f64,
    pub ephemeral_storage_mb: u32,
    pub region: String,
    pub env_vars: BTreeMap<String, String>,
    /// Whose environment this is, echoed back in every report, so a data plane that did not
    /// start it (a new leader, a server that only routes) can adopt it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Temporary credentials of the function's execution role, when the server assumes roles;
    /// renewed with `PUT /v1/environments/{id}/credentials` before they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<RoleCredentials>,
    /// The function's layers, in the order they are extracted into `/opt` (a later layer's
    /// files replace an earlier one's); each is a zip in the artifact store, like the code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerPackage>,
}

/// One layer version of a function, as an agent needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerPackage {
    /// The layer version ARN (`arn:aws:lambda:<region>:<account>:layer:<name>:<version>`).
    pub arn: String,
    /// Hex sha256 of the layer's zip in the shared artifact store.
    pub sha256_hex: String,
    /// Size of the zip in bytes.
    pub size: u64,
}

/// Temporary credentials of an execution role, in the shape of the container credentials
/// endpoint the AWS SDKs read (`AWS_CONTAINER_CREDENTIALS_FULL_URI`): the agent serves this
/// document as is to the environment it belongs to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The session token.
    pub token: String,
    /// When they stop working, RFC 3339 (`2026-12-03T21:00:00Z`).
    pub expiration: String,
    /// The role they are of.
    pub role_arn: String,
}

impl std::fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .field("role_arn", &self.role_arn)
            .finish_non_exhaustive()
    }
}

/// Which version and publish an environment was placed for: opaque to the agent, which keeps it
/// with the environment and reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Store key of the version (`fn/000000000001`, `fn/$LATEST.PUBLISHED`).
    pub version_key: String,
    /// Which publish of that version.
    pub publish_hash: String,
}

/// Life of an environment as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvState {
    Starting,
    Ready,
    Draining,
    /// Init failed; see `failure`.
    Failed,
    /// The runtime exited after being Ready; the server replaces it.
    Exited,
}

/// One environment in an agent's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentStatus {
    pub env_id: String,
    pub function_name: String,
    pub version: String,
    pub state: EnvState,
    /// LMI `StateReasonCode` and readable reason when `Failed`/`Exited`.
    pub failure: Option<Failure>,
    pub in_flight: u32,
    pub parked: u32,
    pub max_concurrency: u32,
    /// Milliseconds from start to Ready, once Ready.
    pub init_ms: Option<u64>,
    /// Memory in use as last sampled (≈ 1 s), in bytes: the working set of the environment's
    /// cgroup, or the summed resident set of its process tree without one.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU time used since start as last sampled, in nanoseconds (cgroup, or process tree).
    #[serde(default)]
    pub cpu_usage_ns: Option<u64>,
    /// `MemorySize` in bytes and vCPUs, for utilization ratios.
    #[serde(default)]
    pub memory_limit_bytes: u64,
    #[serde(default)]
    pub vcpus: f64,
    /// CPU used over the last sampling window (≈ 1 s), as a fraction of the environment's
    /// CPU allotment (vCPUs × the instance's host CPUs per vCPU); absent before two samples
    /// or when the agent cannot measure CPU.
    #[serde(default)]
    pub cpu_utilization: Option<f64>,
    /// Bytes used in the environment's `/tmp`, as last sampled.
    #[serde(default)]
    pub tmp_used_bytes: Option<u64>,
    /// `EphemeralStorage` in bytes.
    #[serde(default)]
    pub tmp_limit_bytes: u64,
    /// The placement the environment was started with ([`EnvironmentRequest::placement`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// CPU time split, peak memory and network counters (the Lambda Insights metrics);
    /// all absent from agents that predate them.
    #[serde(default)]
    pub insights: EnvInsights,
}

/// What an environment used since it started, as last sampled (≈ 1 s), for the per-function
/// metrics Lambda Insights reports (docs/METRICS.md). Each is `None` where the agent cannot
/// measure it; the counters only grow while the environment lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvInsights {
    /// CPU time in user mode, ns (`cpu_user_time`): the cgroup's `cpu.stat` `user_usec`, or
    /// `utime + cutime` summed over the process tree.
    #[serde(default)]
    pub cpu_user_ns: Option<u64>,
    /// CPU time in kernel mode, ns (`cpu_system_time`): `system_usec`, or `stime + cstime`.
    #[serde(default)]
    pub cpu_system_ns: Option<u64>,
    /// Highest memory use seen, bytes (`used_memory_max`): the cgroup's `memory.peak` (or
    /// the highest sampled charge), or the summed `VmHWM` of the process tree.
    #[serde(default)]
    pub memory_peak_bytes: Option<u64>,
    /// Bytes received by the environment's network namespace, loopback included (`rx_bytes`);
    /// `None` when the environment shares the agent's network.
    #[serde(default)]
    pub net_rx_bytes: Option<u64>,
    /// Bytes sent by it (`tx_bytes`).
    #[serde(default)]
    pub net_tx_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub reason_code: String,
    pub reason: String,
}

/// `GET /v1/environments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub instance_id: String,
    pub zone: String,
    /// Bumped whenever any environment changes state; `?after=N` long-polls for a change.
    pub revision: u64,
    /// One line on the isolation in force (cgroups, namespaces, uid drop, or none).
    pub isolation: String,
    pub environments: Vec<EnvironmentStatus>,
    /// The instance's type, size and use (absent from agents that predate it).
    #[serde(default)]
    pub instance: Option<InstanceUsage>,
}

/// An instance's type and size, and its use as read from its cgroup slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceUsage {
    pub instance_type: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Host CPUs per virtual vCPU (CPU quota of the instance = `vcpus × cpu_scale`).
    pub cpu_scale: f64,
    /// CPU time used by the instance (agent and environments) since its slice was created,
    /// in nanoseconds; absent without a cgroup slice.
    #[serde(default)]
    pub cpu_usage_ns: Option<u64>,
    /// Memory in use by the instance, in bytes; absent without a cgroup slice.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reason_header_values_are_the_protocols() {
        let values: Vec<_> = ThrottleReason::ALL.iter().map(|r| r.as_header()).collect();
        assert_eq!(values, ["concurrency", "cpu", "memory", "disk"]);
        // A newer agent's reason counts as concurrency.
        assert_eq!(
            ThrottleReason::from_header("gpu"),
            ThrottleReason::Concurrency
        );
    }

    #[test]
    fn reports_of_older_agents_still_parse() {
        let old = r#"{"instance_id":"i-1","zone":"z","revision":3,"isolation":"none",
            "environments":[{"env_id":"e","function_name":"f","version":"1","state":"Ready",
            "failure":null,"in_flight":0,"parked":1,"max_concurrency":1,"init_ms":5}]}"#;
        let r: AgentReport = serde_json::from_str(old).unwrap();
        assert_eq!(r.instance, None);
        let e = &r.environments[0];
        assert_eq!(
            (e.cpu_utilization, e.tmp_used_bytes, e.tmp_limit_bytes),
            (None, None, 0)
        );
        assert_eq!(e.insights, EnvInsights::default());
    }
}
