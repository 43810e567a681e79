//! Errors of starting an environment and of admitting an invoke.

use std::fmt;
use std::io;

use fleetfn_model::ThrottleReason;

/// Why an environment could not initialize, as an LMI `StateReasonCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitReasonCode {
    /// `FunctionError.InvalidEntryPoint`: no usable `bootstrap` or handler entry point.
    InvalidEntryPoint,
    /// `FunctionError.RuntimeInitError`: the runtime posted `/init/error`, or exited before
    /// it was ready.
    RuntimeInitError,
    /// `FunctionError.InitTimeout`: no `/next` was parked within the init timeout.
    InitTimeout,
    /// `InvalidRuntime`: this host cannot provide the runtime (interpreter or runtime client
    /// missing).
    InvalidRuntime,
    /// `InternalError`: the agent itself failed (I/O on its own directories, binding the
    /// Runtime API endpoint).
    InternalError,
    /// `FunctionError.ExtensionInitError`: an external extension posted
    /// `/extension/init/error`, exited before it was ready, or cannot run here.
    ExtensionInitError,
    /// `FunctionError.TooManyExtensions`: more than Lambda's 10 external extensions.
    TooManyExtensions,
}

impl InitReasonCode {
    /// The code as the Lambda API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidEntryPoint => "FunctionError.InvalidEntryPoint",
            Self::RuntimeInitError => "FunctionError.RuntimeInitError",
            Self::InitTimeout => "FunctionError.InitTimeout",
            Self::InvalidRuntime => "InvalidRuntime",
            Self::InternalError => "InternalError",
            Self::ExtensionInitError => "FunctionError.ExtensionInitError",
            Self::TooManyExtensions => "FunctionError.TooManyExtensions",
        }
    }
}

impl fmt::Display for InitReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An environment that did not become ready: the LMI reason code and a readable reason
/// (what a function's `StateReason` would say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason_code}: {reason}")]
pub struct InitFailure {
    /// The LMI `StateReasonCode`.
    pub reason_code: InitReasonCode,
    /// What went wrong, for a human.
    pub reason: String,
}

impl InitFailure {
    /// A failure with this code and reason.
    pub fn new(reason_code: InitReasonCode, reason: impl Into<String>) -> Self {
        Self {
            reason_code,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_runtime(reason: impl Into<String>) -> Self {
        Self::new(InitReasonCode::InvalidRuntime, reason)
    }

    pub(crate) fn entry_point(reason: impl Into<String>) -> Self {
        Self::new(InitReasonCode::InvalidEntryPoint, reason)
    }
}

/// Why [`crate::Environment::start`] failed. Nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The function or its runtime cannot start here (bad entry point, runtime the host cannot
    /// provide).
    #[error(transparent)]
    Init(#[from] InitFailure),
    /// The spec is unusable (for example an `env_id` that is not a plain name).
    #[error("invalid environment spec: {0}")]
    InvalidSpec(String),
    /// The agent failed to prepare or launch the environment.
    #[error("{what}: {source}")]
    Io {
        /// What the agent was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl StartError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// This error as an [`InitFailure`] (agent-side errors become `InternalError`).
    pub fn init_failure(&self) -> InitFailure {
        match self {
            Self::Init(f) => f.clone(),
            other => InitFailure::new(InitReasonCode::InternalError, other.to_string()),
        }
    }
}

/// A resource with an admission ceiling ([`crate::admission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// CPU time over the last sampling window, against `vcpus × cpu_scale` host CPUs.
    Cpu,
    /// Memory in use, against `MemorySize`.
    Memory,
    /// `/tmp` in use, against `EphemeralStorage`.
    Disk,
}

impl From<Resource> for ThrottleReason {
    /// The throttle a saturated resource counts as (and the agent protocol's reject reason).
    fn from(r: Resource) -> Self {
        match r {
            Resource::Cpu => Self::Cpu,
            Resource::Memory => Self::Memory,
            Resource::Disk => Self::Disk,
        }
    }
}

/// `cpu`, `memory` or `disk`: the reject reason's header value.
impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ThrottleReason::from(*self).as_header())
    }
}

/// Why [`crate::Environment::invoke`] refused an invoke. The invoke never reached the
/// function; the caller may try another environment or answer with a throttle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Every runtime worker is busy: no `/next` long poll is parked. No queueing: this is a
    /// concurrency throttle for this environment.
    #[error("all {max_concurrency} runtime workers of the environment are busy")]
    Busy {
        /// The environment's `AWS_LAMBDA_MAX_CONCURRENCY`.
        max_concurrency: u32,
    },
    /// The environment is at a resource ceiling as of its last sample (it has an idle
    /// worker, but another environment should take the invoke).
    #[error(
        "the environment's {resource} use is at {percent} % of its allotment (ceiling {ceiling_percent} %)"
    )]
    Saturated {
        /// The resource at its ceiling.
        resource: Resource,
        /// Its use, in percent of the allotment.
        percent: u32,
        /// The ceiling, in percent.
        ceiling_percent: u32,
    },
    /// No runtime worker came back for another invoke while the environment's CPU quota was
    /// running out: its workers are held by the CPU allotment with concurrency to spare.
    #[error(
        "no runtime worker of the environment came back for another invoke within {waited_ms} ms ({in_flight} of {max_concurrency} invokes in flight): its cpu allotment is used up"
    )]
    CpuStarved {
        /// How long the invoke waited for a worker, ms.
        waited_ms: u64,
        /// Invokes in flight in the environment.
        in_flight: usize,
        /// The environment's `AWS_LAMBDA_MAX_CONCURRENCY`.
        max_concurrency: u32,
    },
    /// The environment has not finished init.
    #[error("the environment is still initializing")]
    NotReady,
    /// The environment is draining and takes no new invokes.
    #[error("the environment is draining")]
    Draining,
    /// The environment's runtime has exited.
    #[error("the environment has exited")]
    Exited,
    /// An invoke with this request id is already in flight here.
    #[error("request id {0:?} is already in flight in this environment")]
    DuplicateRequestId(String),
    /// A field cannot be sent to the runtime as an HTTP header value.
    #[error("{0} is not a valid Runtime API header value")]
    InvalidInput(&'static str),
}

impl Rejected {
    /// The throttle this rejection counts as when no other environment can take the invoke.
    /// `None` for rejections that are not about capacity (bad input).
    pub fn throttle_reason(&self) -> Option<ThrottleReason> {
        match self {
            Self::Busy { .. } | Self::NotReady | Self::Draining | Self::Exited => {
                Some(ThrottleReason::Concurrency)
            }
            Self::Saturated { resource, .. } => Some((*resource).into()),
            Self::CpuStarved { .. } => Some(ThrottleReason::Cpu),
            Self::DuplicateRequestId(_) | Self::InvalidInput(_) => None,
        }
    }

    /// Whether another environment of the same version might accept the invoke.
    pub fn try_elsewhere(&self) -> bool {
        self.throttle_reason().is_some()
    }
}
