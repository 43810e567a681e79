//! The data plane's testkit: a fake instance provider and fake agents (in memory, driven by the
//! test), and a [`Harness`] that runs a real `ControlPlane` (over `MemoryStore`) and a real
//! `DataPlane` (deployer, scaler, placement, router) on them under tokio's paused time.
//!
//! The tests look only at the data plane's public surface (invokes through `Invoker`, the
//! Prometheus registry) and at what the fakes recorded, never at the data plane's internal state.

pub mod agent;
pub mod harness;
pub mod provider;

pub use agent::{Answer, FakeAgent, Health};
pub use harness::{FunctionSpec, Harness};
