//! Domain types of fleetfn: Lambda wire shapes, ARNs, runtimes, limits and the AWS-typed error.
//! No I/O lives here; the API layer, the service and the agent all build on it.
#![forbid(unsafe_code)]

pub mod arn;
pub mod error;
pub mod limits;
pub mod runtimes;
pub mod time;
pub mod types;

pub use arn::Scope;
pub use error::{ErrorKind, LambdaError, Result, ThrottleReason};
