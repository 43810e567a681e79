//! The control plane of fleetfn: the service that executes typed Lambda API commands against the
//! store and the artifact store (capacity providers, functions, versions, aliases, scaling
//! configs, tags), and the reconciler that moves records through their asynchronous states
//! (`Pending` → `Active`, `Deleting` → gone). It speaks no HTTP: the API crate parses requests
//! into the command types of `fleetfn-model` and calls [`ControlPlane`].
#![forbid(unsafe_code)]

mod aliases;
mod capacity;
pub mod cluster;
mod deploy;
mod event_config;
mod event_sources;
mod function_urls;
mod functions;
mod invoke;
mod layers;
mod permissions;
mod reconcile;
pub mod records;
mod scaling;
pub mod secrets;
mod service;
pub mod stacks;
mod tags;
pub mod usage;
mod validate;
mod versions;

pub use capacity::KnownInstanceTypes;
pub use deploy::VersionTransition;
pub use event_config::{DEFAULT_EVENT_AGE_SECS, DEFAULT_RETRY_ATTEMPTS};
pub use event_sources::{EventSourceMappingRecord, esm_state};
pub use function_urls::{UrlTarget, default_url_base, function_url, is_url_id};
pub use invoke::pick_weighted;
pub use records::{CapacityProviderRecord, FunctionRecord, LayerSnapshot, VersionRecord};
pub use secrets::EnvKey;
pub use service::{ControlPlane, ControlPlaneConfig, Page};

#[cfg(test)]
mod tests;
