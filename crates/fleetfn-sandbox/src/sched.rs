//! The CPU scheduling policy of fleetfn's own processes, and of what they start.
//!
//! fleetfn's agents run `SCHED_BATCH` by default (the servers stay normal, so they answer at
//! once while functions keep the CPUs busy). A thread woken under that policy does not preempt
//! the thread running on its CPU; it runs when that thread blocks or its slice ends. Each wake-up
//! of the invoke path (an invoke arriving, a runtime's `/response`) then finds more work queued
//! (docs/DESIGN.md, "CPU scheduling"; docs/BENCHMARKS.md).
//! The policy needs no privilege, and it leaves the nice value as it was.
//!
//! Functions must not inherit it (AWS runs them under the normal policy). So every process an
//! agent starts for an environment goes through [`normal_on_exec`], which resets the policy in
//! the child between fork and exec.

use std::io;
use std::os::unix::process::CommandExt;

/// A scheduling policy of the fair class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_OTHER`: wake-ups may preempt the running thread.
    Normal,
    /// `SCHED_BATCH`: wake-ups never preempt; for throughput-bound services.
    Batch,
}

impl Policy {
    fn raw(self) -> libc::c_int {
        match self {
            Self::Normal => libc::SCHED_OTHER,
            Self::Batch => libc::SCHED_BATCH,
        }
    }
}

/// `sched_setscheduler(0, policy)`: no allocation, async-signal-safe.
fn set_raw(policy: libc::c_int) -> libc::c_int {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised `sched_param` that outlives the call; pid 0 names
    // the calling thread. The call only changes that thread's scheduling attributes.
    unsafe { libc::sched_setscheduler(0, policy, &raw const param) }
}

/// Sets the calling thread's policy. Threads it creates afterwards inherit it, so call it
/// before starting any (before the async runtime is built) to cover the whole process.
pub fn set_own_policy(policy: Policy) -> io::Result<()> {
    if set_raw(policy.raw()) == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `cmd`'s child run under the normal policy whatever its parent runs, so a function (or
/// the `fleetfn jail` helper that execs it) never inherits fleetfn's `SCHED_BATCH`. Best effort:
/// a child that cannot switch starts all the same.
pub fn normal_on_exec(cmd: &mut std::process::Command) {
    // SAFETY: the closure runs in the child between fork and exec. It makes one system call on
    // a stack value and allocates nothing, which is async-signal-safe; it touches no lock or
    // shared state of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let _ = set_raw(libc::SCHED_OTHER);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy `sched_getscheduler` reports as `raw`; `None` outside the fair class.
    fn from_raw(raw: libc::c_int) -> Option<Policy> {
        match raw {
            libc::SCHED_OTHER => Some(Policy::Normal),
            libc::SCHED_BATCH => Some(Policy::Batch),
            _ => None,
        }
    }

    /// The policy of thread or process `pid` (0: the calling thread); `None` for a policy outside
    /// the fair class (real-time, deadline, idle).
    fn policy_of(pid: u32) -> io::Result<Option<Policy>> {
        let pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: sched_getscheduler takes a pid by value and touches no memory of ours.
        let raw = unsafe { libc::sched_getscheduler(pid) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(from_raw(raw & !libc::SCHED_RESET_ON_FORK))
    }

    #[test]
    fn a_child_started_through_normal_on_exec_runs_normal_under_a_batch_parent() {
        // A thread of its own, so the test harness's other threads keep their policy.
        std::thread::spawn(|| {
            set_own_policy(Policy::Batch).unwrap();
            assert_eq!(policy_of(0).unwrap(), Some(Policy::Batch));
            let policy_of_child = |reset: bool| {
                let mut cmd = std::process::Command::new("sleep");
                cmd.arg("5");
                if reset {
                    normal_on_exec(&mut cmd);
                }
                let mut child = cmd.spawn().unwrap();
                let policy = policy_of(child.id()).unwrap();
                child.kill().unwrap();
                child.wait().unwrap();
                policy
            };
            // Inherited without it, reset with it.
            assert_eq!(policy_of_child(false), Some(Policy::Batch));
            assert_eq!(policy_of_child(true), Some(Policy::Normal));
        })
        .join()
        .unwrap();
    }
}
