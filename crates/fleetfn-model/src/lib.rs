//! Domain types of fleetfn: Lambda wire shapes, lifecycle states, ARNs, runtimes, limits, the
//! throttle reason and the AWS-typed error.
//! No I/O lives here; the API layer, the service and the agent all build on it.
#![forbid(unsafe_code)]

pub mod arn;
pub mod destination;
pub mod error;
pub mod filter;
pub mod layers;
pub mod limits;
pub mod policy;
pub mod runtimes;
pub mod states;
pub mod throttle;
pub mod time;
pub mod types;
pub mod url;

pub use arn::Scope;
pub use error::{ErrorKind, LambdaError, Result};
pub use states::{CapacityProviderState, LastUpdateStatus, State};
pub use throttle::ThrottleReason;
