//! What an environment runs, and what goes in and out of an invoke.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// Smallest init timeout LMI gives an environment (the init timeout is the larger of this and
/// the function timeout).
pub const MIN_INIT_TIMEOUT: Duration = Duration::from_secs(130);

/// Largest init timeout (LMI: "initialization can take up to 15 minutes").
pub const MAX_INIT_TIMEOUT: Duration = Duration::from_secs(900);

/// Where an environment writes its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// The version's log directory (`<logs dir>/<function>/<version>`): the environment writes
    /// its own segments `<env id>.<seq>.jsonl` there.
    pub dir: PathBuf,
    /// Segment size, cap and age of the version's log.
    pub limits: fleetfn_logs::LogLimits,
}

/// Everything needed to start one execution environment of one function version.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentSpec {
    /// Unique id of this environment on the instance; a plain name (`[A-Za-z0-9._-]`), used
    /// for its scratch directory and log stream.
    pub env_id: String,
    /// `FunctionName`.
    pub function_name: String,
    /// The version this environment runs (`1`, `$LATEST.PUBLISHED`, ...).
    pub version: String,
    /// The version's qualified ARN, sent to the runtime as `Lambda-Runtime-Invoked-Function-Arn`.
    pub qualified_arn: String,
    /// `Runtime` (`provided.al2023`, `python3.13`, `nodejs22.x`, ...).
    pub runtime: String,
    /// `Handler` (`app.handler`); `None` for `provided.*`, where it is optional.
    pub handler: Option<String>,
    /// The extracted code package (`LAMBDA_TASK_ROOT`, working directory).
    pub code_dir: PathBuf,
    /// `MemorySize` in MiB.
    pub memory_mb: u32,
    /// `Timeout` in seconds: each invoke's deadline.
    pub timeout_secs: u32,
    /// `PerExecutionEnvironmentMaxConcurrency` (`AWS_LAMBDA_MAX_CONCURRENCY`), at least 1.
    pub max_concurrency: u32,
    /// vCPUs of the environment (memory ÷ GiB-per-vCPU ratio).
    pub vcpus: f64,
    /// Host CPUs per vCPU on this instance (`fleetfn agent --cpu-scale`, normally 1): the
    /// environment's CPU allotment is `vcpus × cpu_scale` host CPUs.
    pub cpu_scale: f64,
    /// `EphemeralStorage.Size` in MiB: the size of `/tmp` (its disk ceiling).
    pub ephemeral_storage_mb: u32,
    /// `AWS_REGION`.
    pub region: String,
    /// The function's own environment variables.
    pub env_vars: BTreeMap<String, String>,
    /// Where the environment's log records go. `None` discards the function's output.
    pub logs: Option<LogTarget>,
    /// Overrides the init timeout (default: max(130 s, timeout), at most 900 s).
    pub init_timeout: Option<Duration>,
    /// The execution role's credentials, served to the environment at the container
    /// credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`); `None`: it gets none.
    pub credentials: Option<fleetfn_proto::RoleCredentials>,
    /// The function's layers merged into one host directory (its `/opt`: bound there in a
    /// sandbox, named by the runtime's paths without one). Its executable
    /// `extensions/*` files are the environment's external extensions. `None`: no layers.
    pub opt_dir: Option<PathBuf>,
}

impl EnvironmentSpec {
    /// The per-invoke timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout_secs.max(1)))
    }

    /// The init timeout: the override if set, else LMI's max(130 s, function timeout), capped
    /// at 15 minutes.
    pub fn init_timeout(&self) -> Duration {
        self.init_timeout
            .unwrap_or_else(|| self.timeout().max(MIN_INIT_TIMEOUT).min(MAX_INIT_TIMEOUT))
    }

    /// The CPU allotment in host CPUs: `vcpus × cpu_scale`.
    pub fn cpu_allotment(&self) -> f64 {
        self.vcpus * self.cpu_scale
    }

    /// `AWS_LAMBDA_LOG_GROUP_NAME`: `/aws/lambda/<function name>`.
    pub fn log_group_name(&self) -> String {
        format!("/aws/lambda/{}", self.function_name)
    }
}

/// One invoke for an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeInput {
    /// The request id (`Lambda-Runtime-Aws-Request-Id`, `x-amzn-RequestId`).
    pub request_id: String,
    /// The event.
    pub payload: Bytes,
    /// Base64-decoded `X-Amz-Client-Context` (JSON), if any.
    pub client_context: Option<String>,
    /// `X-Amz-Tenant-Id`, if any.
    pub tenant_id: Option<String>,
    /// The X-Ray trace header, if any.
    pub trace_id: Option<String>,
}

/// How an invoke ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeOutput {
    /// The request id.
    pub request_id: String,
    /// The response, or the error document (`{"errorMessage","errorType",...}`) when
    /// `function_error` is set.
    pub payload: Bytes,
    /// `X-Amz-Function-Error`: `Some("Unhandled")` when the function failed, timed out or its
    /// runtime exited.
    pub function_error: Option<String>,
    /// The error's type (`Sandbox.Timedout`, `Runtime.ExitError`, the handler's own type...).
    pub error_type: Option<String>,
    /// Whether the invoke hit its timeout (the function keeps running; LMI does not kill it).
    pub timed_out: bool,
    /// Time from hand-off to the runtime until the result (or the timeout).
    pub duration: Duration,
    /// Duration rounded up to the millisecond, as `REPORT` prints it.
    pub billed_duration_ms: u64,
    /// Peak memory of the environment so far, MiB.
    pub max_memory_used_mb: u64,
}
