//! The data plane in one process: a real control plane (over `MemoryStore`), the real deployer,
//! placement, scaler and router, on a fake instance provider and fake agents, under tokio's
//! paused time (no real processes, no real sleeps). See `support` for the testkit.

mod support;

mod adopt;
mod credentials;
mod deploy;
mod insights;
mod lost;
mod rollout;
mod rotation;
mod routing;
mod scaling;
mod series;
mod static_provider;
mod streaming;
