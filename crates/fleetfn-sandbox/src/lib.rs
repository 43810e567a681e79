//! Isolation of one Lambda execution environment (a runtime's process tree).
//!
//! Owns: the [`SandboxSpec`] wire format; the single-threaded helper [`jail_main`] that the
//! `fleetfn jail` subcommand runs to join a cgroup, unshare namespaces, build a read-only root
//! with the code at `/var/task` and a private `/tmp`, drop to an unprivileged uid and exec the
//! runtime; the [`Cgroups`] manager the agent uses to create, limit, measure, kill, remove and
//! sweep instance slices and environment cgroups (v1 and v2); the start-up [`probe()`] of
//! what the host allows; the small [`init`] that runs a function's external extensions next to
//! its runtime; and [`net::connect_in`], a TCP connection from inside an environment's network
//! namespace; and [`sched`], the CPU scheduling policy of fleetfn's agents (`SCHED_BATCH`) and
//! its reset for everything a function runs.
//!
//! Must not: fork from a multithreaded process (only [`jail_main`] forks, and it refuses to run
//! with more than one thread), depend on tokio, or know about Lambda semantics beyond paths.
//! Every system call goes through [`Host`] and every kernel path is a parameter, so most of the
//! logic is tested unprivileged with [`RecordingHost`] and cgroup fixture directories.
//!
//! This is the only fleetfn crate allowed `unsafe` (fork, signal handlers, prctl,
//! close_range, `pre_exec`, sched_setscheduler); each block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cgroups;
pub mod error;
pub mod host;
pub mod init;
pub mod jail;
pub mod lease;
pub mod net;
pub mod probe;
pub mod rootfs;
pub mod sched;
pub mod seccomp;
pub mod spec;

pub use cgroups::{
    CgroupError, CgroupLayout, CgroupLimits, CgroupStats, Cgroups, Controller, Membership,
};
pub use error::JailError;
pub use host::{Host, LinuxHost, RecordingHost};
pub use init::{
    EXTENSION_EXIT_CODE, GATE_BYTE, STOPPING_BYTE, parse_extension_exit, pass_extension_outputs,
};
pub use jail::{SETUP_FAILURE_EXIT_CODE, jail_main, jail_main_from, load_spec};
pub use lease::{DEFAULT_LEASE_DIR, Lease, LeaseDir, SlotLease};
pub use net::{EnvNetwork, Ipv4Cidr, NetError, NetIsolation};
pub use probe::{Isolation, probe, probe_with_root};
pub use spec::{CgroupSpec, ExtensionProcess, Namespaces, Rlimits, SandboxSpec, SpecError};
