//! Capacity decisions of fleetfn: the instance-type catalog, environment placement onto instances
//! (bin-packing, zone spreading, `MaxVCpuCount`) and the per-version environment scaler.
//!
//! This crate owns *decisions only*. Every function here is a pure function of a snapshot of plain
//! data: no clock, no I/O, no async runtime. The control loops in the data plane gather the
//! snapshot (utilization reports, the fleet, the desired state), call these functions, and do the
//! I/O the result asks for (launch or drain instances, start or stop environments). Time is passed
//! in as [`std::time::Duration`]s, so the decisions can be tested with simulated time.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod placement;
pub mod scaler;

pub use catalog::{
    Arch, Catalog, CatalogError, DescribedInstanceType, InstanceType, PRICES_AS_OF, SHAPES_SOURCE,
};
pub use placement::{
    Assignment, EnvRequest, Instance, InstanceState, Launch, PlacedEnv, PlacementError,
    PlacementInput, Plan, ProviderLimits, Target, Unplaced, place,
};
pub use scaler::{Decision, ScalingMode, VersionSnapshot, decide, desired_environments};
