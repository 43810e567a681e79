//! The fleetfn agent's execution environments: the lifecycle of every environment on one
//! instance.
//!
//! An *environment* (LMI: execution environment) is one long-lived runtime process tree of one
//! function version that serves up to `AWS_LAMBDA_MAX_CONCURRENCY` invokes at once through its
//! own Lambda Runtime API endpoint ([`fleetfn_runtime_api::RuntimeApi`]). This crate:
//!
//! * provides runtimes ([`RuntimeProvider`]): probes the host once for Python interpreters and
//!   `node`; installs AWS's Python runtime interface client (`awslambdaric`) into a directory
//!   it manages; writes fleetfn's Node.js bootstrap; a runtime the host cannot provide is an
//!   `InvalidRuntime` [`InitFailure`] before anything starts, never an invoke-time error;
//! * starts environments ([`Environment::start`]): binds the endpoint on `127.0.0.1:0`,
//!   launches the runtime in its own process group with a clean, Lambda-shaped environment
//!   (no variable of the agent leaks in), a private `TMPDIR`, and its code directory as
//!   working directory;
//! * follows their state ([`EnvState`]: `Starting` → `Ready` → `Draining` → `Exited`) and
//!   turns init failures into LMI reason codes (`FunctionError.RuntimeInitError`,
//!   `FunctionError.InitTimeout`, `FunctionError.InvalidEntryPoint`, `InvalidRuntime`);
//! * admits invokes without queueing ([`Environment::invoke`]): an invoke goes to a parked
//!   `/next` or is [`Rejected`] at once, also while the environment's memory, `/tmp` or CPU
//!   use (sampled once a second) is at its ceiling ([`admission`]); its timeout answers the
//!   caller with a `Sandbox.Timedout` error while the runtime keeps running (LMI does not
//!   kill it); a response the function streams is relayed as it is written
//!   ([`Environment::invoke_streaming`], the timeout covering the whole stream) or collected
//!   up to 6 MiB for a caller who wants it whole; a
//!   runtime that dies fails its in-flight invokes with `Runtime.ExitError` (or
//!   `Runtime.OutOfMemory`) and the environment becomes `Exited` so the caller can replace it;
//! * stops them ([`Environment::stop`]): drain, `SIGTERM` to the process group, `SIGKILL`,
//!   remove the scratch directory;
//! * writes their logs: each stdout/stderr line as a JSON object, plus `START`, `END`,
//!   `REPORT` and init records, in the environment's segments of its version's log directory
//!   (`fleetfn-logs`: rotated, capped per version);
//! * gives them their layers ([`LayerCache`]: merged in order into one `/opt` per layer set)
//!   and runs the external extensions found in `/opt/extensions` in the sandbox, in Lambda's
//!   order (extensions register, the runtime starts, init ends when all poll), with
//!   `FunctionError.ExtensionInitError` for a failed extension init, `Extension.Crash` (and an
//!   `Exited` environment) for a later exit, and `SHUTDOWN` before the runtime's `SIGTERM`;
//! * feeds the Telemetry API of their endpoint (platform records, function lines, and extension
//!   lines, read from each extension's own output pipe, so they are told from the function's),
//!   at the cost of one atomic load per record when nothing subscribed.
//!
//! Sandboxing (cgroups, namespaces, a read-only `/var/task`) plugs in as a [`Launcher`]
//! ([`SandboxLauncher`], environments' cgroups under the instance's [`InstanceSlice`]);
//! without it the runtime is a plain child process and its use is read from `/proc`
//! ([`ProcTreeAccounting`]).

#![forbid(unsafe_code)]

pub mod admission;
mod environment;
mod error;
mod insights;
mod instance;
mod layers;
mod log_socket;
mod logs;
mod packages;
mod process;
mod runtime;
mod sandbox;
mod service;
mod spec;
mod stream;

pub use admission::ResourceView;
pub use environment::{
    ERROR_TYPE_OUT_OF_MEMORY, ERROR_TYPE_TIMEOUT, EnvState, Environment, ExitReason,
    FUNCTION_ERROR_UNHANDLED, OutputStream, StreamedOutput, TERM_GRACE,
};
pub use error::{InitFailure, InitReasonCode, Rejected, Resource, StartError};
pub use fleetfn_logs::LogLimits;
pub use fleetfn_runtime_api::ERROR_TYPE_EXIT;
pub use instance::{AGENT_LEAF, InstanceShape, InstanceSlice};
pub use layers::{LayerCache, LayerDir, LayerError, MAX_EXTENSIONS};
pub use logs::MAX_LINE_BYTES;
pub use packages::PackageSource;
pub use process::{
    DirectLauncher, Gate, GateSignal, Hold, LaunchCommand, Launched, Launcher, ProcTreeAccounting,
    Reservation, ResourceAccounting, SandboxInputs, TmpStorage,
};
pub use runtime::{
    AWSLAMBDARIC_REQUIREMENT, HostRuntimes, Interpreter, MIN_NODE_MAJOR, NODE_BOOTSTRAP,
    PreparedRuntime, RuntimeProvider, RuntimeProviderConfig,
};
pub use sandbox::{CGROUP_LEASES, NetworkConfig, SLICE, SandboxLauncher, UID_BASE};
pub use service::{Agent, AgentConfig};
pub use spec::{
    EnvironmentSpec, InvokeInput, InvokeOutput, LogTarget, MAX_INIT_TIMEOUT, MIN_INIT_TIMEOUT,
};
