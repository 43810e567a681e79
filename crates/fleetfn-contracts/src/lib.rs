//! The contracts between the data plane and its users, with no HTTP in them: the [`Invoker`]
//! the API hands invokes and fleetfn extensions to, and the typed documents it serves under
//! `/fleetfn/v1/` — [`StatusDocument`] (`/status`, docs/STATUS.md), [`EnvironmentsDocument`]
//! (`/environments`), [`CostDocument`] (`/cost`) and [`SeriesDocument`]
//! (`/functions/{name}/series`). The data plane builds them, the API
//! serializes them, the CLI deserializes them into the same structs. Keys are PascalCase; fields
//! may be added, never renamed.
#![forbid(unsafe_code)]

mod cost;
mod environments;
mod invoke;
mod series;
mod status;

// The states the documents carry besides the model's lifecycle states.
pub use fleetfn_proto::EnvState;
pub use fleetfn_scheduler::InstanceState;

pub use cost::CostDocument;
pub use environments::{EnvironmentEntry, EnvironmentFailure, EnvironmentsDocument, InstanceEntry};
pub use invoke::{
    AsyncInvoker, AsyncQueueStatus, EventRequest, InvokeOutcome, InvokeRequest, InvokeStream,
    Invoker, StreamError, StreamPart, StreamingOutcome,
};
pub use series::{SeriesDocument, ThrottleSeries, VersionSeries};
pub use status::{
    CapacityFallback, CapacityProviderStatus, EnvironmentStatus, FunctionStatus, HostStatus,
    InstanceStatus, LaunchError, StatusDocument, Throttles,
};
