//! The server ↔ agent protocol, version 1: HTTP/1.1 + JSON on the agent's listener, every request
//! carrying `Authorization: Bearer <token>`. The server tells an agent which environments to run
//! (`PUT`/`DELETE /v1/environments/{id}`), reads their state (`GET /v1/environments`), and sends
//! invokes (`POST /v1/environments/{id}/invoke`, payload as the body). This crate holds the
//! message types and a pooled client; the agent's server side lives in `fleetfn-agent`.
#![forbid(unsafe_code)]

mod client;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use client::{AgentClient, ClientError, InvokeReply};

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
/// Response header on 429: why the environment could not take the invoke.
pub const H_REJECT_REASON: &str = "x-fleetfn-reject-reason";

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
    /// Memory in use now, in bytes (from the environment's cgroup; absent without one).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU time used since start, in nanoseconds (absent without a cgroup).
    #[serde(default)]
    pub cpu_usage_ns: Option<u64>,
    /// `MemorySize` in bytes and vCPUs, for utilization ratios.
    #[serde(default)]
    pub memory_limit_bytes: u64,
    #[serde(default)]
    pub vcpus: f64,
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
}
