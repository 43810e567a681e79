//! The default system call filter of every environment: the one reviewed list of what a
//! function may not ask the kernel for.
//!
//! Reference: the container runtimes' default profile (Docker/moby `default.json`), turned
//! around into a deny list so that ordinary Python, Node and Rust code (and any new system call
//! a libc starts using) keeps working. Denied calls fail with `EPERM`, as they would without the
//! capability, so programs that probe for a feature fall back cleanly; `clone3` fails with
//! `ENOSYS` (its flags sit in memory a filter cannot read), which makes glibc use `clone`,
//! whose flags the filter does check.
//!
//! Installed by the helper as the last step before `execve`, after `no_new_privs`, so it covers
//! the runtime and every process it starts; with external extensions, as the last step before
//! the sandbox's init ([`crate::init`]) forks the first of them, so it covers them as well. It is defence in depth: the environment already
//! runs without capabilities, as an unprivileged uid, in its own namespaces.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why a call is denied, grouped the way the rules below are.
pub const DENIED_GROUPS: &[(&str, &[&str])] = &[
    (
        "namespaces and mounts (no new user namespace, no escape from the sandbox's)",
        &[
            "unshare",
            "setns",
            "clone with CLONE_NEW* flags",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "open_tree",
            "move_mount",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
        ],
    ),
    ("kernel keyrings", &["keyctl", "add_key", "request_key"]),
    (
        "kernel programs, tracing and other processes' memory",
        &[
            "bpf",
            "perf_event_open",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
        ],
    ),
    (
        "the machine itself",
        &[
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "settimeofday",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
            "syslog",
            "vhangup",
            "quotactl",
            "quotactl_fd",
            "open_by_handle_at",
            "name_to_handle_at",
            "lookup_dcookie",
            "personality other than the defaults",
            "iopl",
            "ioperm",
            "uselib",
        ],
    ),
];

/// Namespace flags `clone` may not be given.
const CLONE_NEW_FLAGS: [i32; 8] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    0x80, // CLONE_NEWTIME
];

/// `personality` values programs use (Docker's list): the default, `UNAME26` variants,
/// `ADDR_NO_RANDOMIZE`-free ones, and the query `0xffffffff`.
const ALLOWED_PERSONAS: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(String);

fn always() -> Vec<SeccompRule> {
    Vec::new()
}

/// Syscalls denied whatever their arguments.
fn denied_outright() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_syslog,
        libc::SYS_vhangup,
        libc::SYS_quotactl,
        libc::SYS_quotactl_fd,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_lookup_dcookie,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib]);
    calls
}

fn arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SeccompError(e.to_string()))
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| SeccompError(e.to_string()))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SeccompError> {
    SeccompRule::new(conditions).map_err(|e| SeccompError(e.to_string()))
}

/// The two programs of the default filter, in installation order: the `EPERM` deny list, then
/// `clone3` → `ENOSYS`.
pub fn default_programs() -> Result<Vec<BpfProgram>, SeccompError> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = denied_outright()
        .into_iter()
        .map(|nr| (nr, always()))
        .collect();
    // clone: any namespace flag (one rule per flag; rules of a call are alternatives).
    let clone_rules = CLONE_NEW_FLAGS
        .iter()
        .map(|flag| {
            let flag = u64::from(flag.cast_unsigned());
            rule(vec![cond(0, SeccompCmpOp::MaskedEq(flag), flag)?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // personality: anything but the usual values (conditions of one rule all must hold).
    let persona = ALLOWED_PERSONAS
        .iter()
        .map(|p| cond(0, SeccompCmpOp::Ne, *p))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_personality, vec![rule(persona)?]);
    let eperm = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM.cast_unsigned()),
        arch,
    )
    .map_err(|e| SeccompError(e.to_string()))?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, always())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS.cast_unsigned()),
        arch,
    )
    .map_err(|e| SeccompError(e.to_string()))?;
    [eperm, clone3]
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(|e| SeccompError(e.to_string())))
        .collect()
}

/// Builds and installs the default filter on the calling thread (the helper is single
/// threaded). Needs `no_new_privs` or `CAP_SYS_ADMIN`.
pub fn install_default() -> Result<(), SeccompError> {
    for program in default_programs()? {
        seccompiler::apply_filter(&program).map_err(|e| SeccompError(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_build_for_this_architecture() {
        let programs = default_programs().unwrap();
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn every_outright_denial_is_documented() {
        let documented: Vec<&str> = DENIED_GROUPS
            .iter()
            .flat_map(|(_, calls)| calls.iter().copied())
            .collect();
        // Each documented name is unique and the list covers the outright denials plus the two
        // argument-checked calls.
        let mut sorted = documented.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), documented.len());
        let expected = denied_outright().len() + 2; // + clone and personality
        let on_this_arch = documented
            .iter()
            .filter(|c| cfg!(target_arch = "x86_64") || !["iopl", "ioperm", "uselib"].contains(c))
            .count();
        assert_eq!(on_this_arch, expected);
    }
}
