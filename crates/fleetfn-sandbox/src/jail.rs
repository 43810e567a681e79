//! The helper: from a [`SandboxSpec`] to an exec'd runtime inside its sandbox.
//!
//! Process model (firecracker's jailer): the agent spawns `fleetfn jail` with the spec; that
//! process must be single-threaded (no tokio, no threads) because it forks.
//!
//! 1. *Supervisor, before fork*: joins the cgroup, unshares the namespaces, makes `/` private.
//! 2. *Fork*: the child is pid 1 of the new pid namespace.
//! 3. *Child*: stdin `/dev/null` (unless there are extensions: see [`crate::init`]),
//!    parent-death SIGKILL, new root and `pivot_root`, hostname, rlimits, empty
//!    capability bounding set, `setgroups([])`/`setgid`/`setuid` (then checks root cannot be
//!    regained), parent-death SIGKILL again (credential changes clear it) and a check that the
//!    supervisor is still alive, no_new_privs, `chdir`, seccomp, default signal dispositions,
//!    `execve` — or, when the spec has extensions, [`crate::init`] (which starts them, then the
//!    runtime once the agent writes the gate byte on stdin).
//! 4. *Supervisor*: forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT to the child, waits, and exits with
//!    its status (128 + signal for signal deaths).
//!
//! Any failure before exec prints one line `fleetfn-sandbox: <step>: <error>` on stderr and
//! exits with [`SETUP_FAILURE_EXIT_CODE`].

use std::convert::Infallible;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::resource::Resource;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use crate::cgroups::Cgroups;
pub use crate::error::{JailError, MESSAGE_PREFIX};
use crate::host::{Host, LinuxHost, MountArgs};
use crate::rootfs;
use crate::spec::{SANDBOX_HOSTNAME, SandboxSpec};

/// Exit status of the helper when setup failed before the runtime was exec'd.
pub const SETUP_FAILURE_EXIT_CODE: i32 = 125;
/// Signals the supervisor passes on to the sandboxed process.
pub const FORWARDED_SIGNALS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

fn step(name: &'static str) -> impl FnOnce(std::io::Error) -> JailError {
    move |e| JailError::new(name, e)
}

/// Reads a spec from `spec_file`, or from stdin when `None`.
pub fn load_spec(spec_file: Option<&Path>) -> Result<SandboxSpec, JailError> {
    load(spec_file).map(|(spec, _)| spec)
}

/// [`load_spec`], plus the stdin bytes that followed the spec (the gate, for [`crate::init`]).
fn load(spec_file: Option<&Path>) -> Result<(SandboxSpec, Vec<u8>), JailError> {
    match spec_file {
        Some(path) => {
            let json = std::fs::read_to_string(path)
                .map_err(|e| JailError::new(format!("spec {}", path.display()), e))?;
            let spec = SandboxSpec::from_json(&json).map_err(|e| JailError::new("spec", e))?;
            Ok((spec, Vec::new()))
        }
        None => read_spec(&mut Stdin0),
    }
}

/// File descriptor 0 without a buffer: nothing past the spec is read into one.
struct Stdin0;

impl Read for Stdin0 {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(nix::unistd::read(0, buf)?)
    }
}

/// Reads one JSON spec from `input` and returns it with the bytes read after it. Reading stops
/// as soon as a whole JSON value has arrived (the agent sends it as one line and keeps stdin
/// open for the gate byte when there are extensions) or at end of file (a spec written whole,
/// then closed, as without extensions).
pub(crate) fn read_spec(input: &mut impl Read) -> Result<(SandboxSpec, Vec<u8>), JailError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(JailError::new("spec stdin", e)),
        };
        if n == 0 {
            // Incomplete or empty: let the parser say what is wrong.
            let json = String::from_utf8_lossy(&buf);
            let spec = SandboxSpec::from_json(&json).map_err(|e| JailError::new("spec", e))?;
            return Ok((spec, Vec::new()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut values = serde_json::Deserializer::from_slice(&buf).into_iter::<SandboxSpec>();
        match values.next() {
            Some(Ok(spec)) => {
                let rest = buf[values.byte_offset()..].to_vec();
                return Ok((spec, rest));
            }
            Some(Err(e)) if e.is_eof() => {}
            Some(Err(e)) => {
                return Err(JailError::new(
                    "spec",
                    crate::spec::SpecError(format!("invalid spec JSON: {e}")),
                ));
            }
            None => {}
        }
    }
}

fn fail(err: &JailError) -> ! {
    eprintln!("{}", err.message());
    std::process::exit(SETUP_FAILURE_EXIT_CODE)
}

/// [`load_spec`] then [`jail_main`]: the whole `fleetfn jail [--spec-file F]` subcommand.
pub fn jail_main_from(spec_file: Option<&Path>) -> ! {
    match load(spec_file) {
        Ok((spec, pending)) => jail_main_pending(spec, &pending),
        Err(err) => fail(&err),
    }
}

/// Runs the helper: sets up the sandbox described by `spec`, execs `spec.argv` in it, and exits
/// with the runtime's status. Call it only from a single-threaded process (before any tokio
/// runtime or thread exists): it forks. It checks `/proc/self/status` and refuses otherwise.
pub fn jail_main(spec: SandboxSpec) -> ! {
    jail_main_pending(spec, &[])
}

/// [`jail_main`] with the stdin bytes already read past the spec.
fn jail_main_pending(spec: SandboxSpec, pending: &[u8]) -> ! {
    let host = LinuxHost;
    match run(&spec, &host, pending) {
        Ok(code) => std::process::exit(code),
        Err(err) => fail(&err),
    }
}

fn run(spec: &SandboxSpec, host: &LinuxHost, pending: &[u8]) -> Result<i32, JailError> {
    spec.validate().map_err(|e| JailError::new("spec", e))?;
    if spec.extensions.is_empty() && !pending.iter().all(u8::is_ascii_whitespace) {
        return Err(JailError::new("spec", "trailing bytes after the JSON spec"));
    }
    crate::init::check_extension_outputs(spec)?;
    check_single_threaded(host)?;
    prepare_supervisor(spec, host, std::process::id())?;

    // Forwarded signals stay blocked until the supervisor knows the child's pid; one that
    // arrives meanwhile stays pending and is forwarded once unblocked.
    let mut forwarded = SigSet::empty();
    for sig in FORWARDED_SIGNALS {
        forwarded.add(sig);
    }
    let mut old_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut old_mask))
        .map_err(|e| JailError::new("sigprocmask", e))?;

    // The supervisor holds the write end for its whole life; the child sees EOF on the read
    // end once it is gone. Both ends are close-on-exec, so the runtime never gets them.
    let (alive_read, alive_write) =
        pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| JailError::new("pipe", e))?;

    // SAFETY: `check_single_threaded` verified this process has exactly one thread, so no
    // lock can be held by another thread across the fork and the child may run ordinary code
    // (allocation included) until it execs.
    match unsafe { fork() }.map_err(|e| JailError::new("fork", e))? {
        ForkResult::Child => {
            drop(alive_write);
            let Err(err) = child(spec, host, &old_mask, &alive_read, pending);
            fail(&err)
        }
        ForkResult::Parent { child } => {
            drop(alive_read);
            // Only the extensions write on their output pipes.
            for fd in &spec.extension_output {
                let _ = nix::unistd::close(*fd);
            }
            let code = supervise(child, &old_mask);
            drop(alive_write);
            code
        }
    }
}

fn check_single_threaded(host: &dyn Host) -> Result<(), JailError> {
    let status = host
        .read_to_string(Path::new("/proc/self/status"))
        .map_err(step("preflight"))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok());
    match threads {
        Some(1) => Ok(()),
        Some(n) => Err(JailError::new(
            "preflight",
            format!("helper must be single-threaded, found {n} threads"),
        )),
        None => Err(JailError::new(
            "preflight",
            "cannot read thread count from /proc/self/status",
        )),
    }
}

/// Steps of the supervisor before fork: cgroup (create if needed, limit, join with `pid`),
/// unshare, make every mount private so nothing done in the sandbox propagates to the host.
pub(crate) fn prepare_supervisor(
    spec: &SandboxSpec,
    host: &dyn Host,
    pid: u32,
) -> Result<(), JailError> {
    if let Some(cg) = &spec.cgroup {
        let cgroup_step = |e: crate::cgroups::CgroupError| JailError::new("cgroup", e);
        let cgroups = Cgroups::detect(&cg.root, &cg.slice).map_err(cgroup_step)?;
        cgroups.create(&cg.name).map_err(cgroup_step)?;
        cgroups
            .set_limits(&cg.name, &cg.limits())
            .map_err(cgroup_step)?;
        cgroups.add_process(&cg.name, pid).map_err(cgroup_step)?;
    }
    if let Some(netns) = &spec.netns {
        host.setns_net(netns)
            .map_err(step("join network namespace"))?;
    }
    let flags = spec.namespaces.clone_flags();
    if !flags.is_empty() {
        host.unshare(flags).map_err(step("unshare"))?;
    }
    if spec.namespaces.mount {
        host.mount(&make_private())
            .map_err(step("make / private"))?;
    }
    // The supervisor dies with the agent that started it (and the sandbox with the supervisor),
    // so a killed agent leaves no runtime behind.
    host.set_parent_death_signal()
        .map_err(step("parent death signal"))?;
    Ok(())
}

pub(crate) fn make_private() -> MountArgs {
    use nix::mount::MsFlags;
    MountArgs {
        source: None,
        target: "/".into(),
        fstype: None,
        flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        data: None,
    }
}

/// Steps of the child after fork, up to (not including) exec.
pub(crate) fn prepare_child(spec: &SandboxSpec, host: &dyn Host) -> Result<(), JailError> {
    host.set_parent_death_signal()
        .map_err(step("parent death signal"))?;
    if spec.namespaces.mount {
        let ops = rootfs::plan(spec, host)?;
        rootfs::apply(&ops, host)?;
    }
    if spec.namespaces.uts {
        host.sethostname(SANDBOX_HOSTNAME)
            .map_err(step("sethostname"))?;
    }
    let limits = &spec.rlimits;
    host.setrlimit(Resource::RLIMIT_NOFILE, limits.nofile)
        .map_err(step("setrlimit nofile"))?;
    if let Some(nproc) = limits.nproc {
        host.setrlimit(Resource::RLIMIT_NPROC, nproc)
            .map_err(step("setrlimit nproc"))?;
    }
    if let Some(core) = limits.core {
        host.setrlimit(Resource::RLIMIT_CORE, core)
            .map_err(step("setrlimit core"))?;
    }
    host.drop_bounding_set()
        .map_err(step("drop capability bounding set"))?;
    host.setgroups_empty().map_err(step("setgroups"))?;
    host.setgid(spec.gid).map_err(step("setgid"))?;
    host.setuid(spec.uid).map_err(step("setuid"))?;
    verify_dropped(spec, host)?;
    // Changing credentials cleared the parent-death signal: set it again for the runtime.
    host.set_parent_death_signal()
        .map_err(step("parent death signal"))?;
    if spec.no_new_privs {
        host.set_no_new_privs().map_err(step("no_new_privs"))?;
    }
    host.chdir(&spec.cwd)
        .map_err(|e| JailError::new(format!("chdir {}", spec.cwd.display()), e))?;
    host.cloexec_from(3)
        .map_err(step("close inherited descriptors"))?;
    // Last: from here on the filter applies, to the exec and everything after it.
    if spec.seccomp {
        host.install_seccomp().map_err(step("seccomp"))?;
    }
    Ok(())
}

/// The ids are the requested ones and neither root uid nor root gid can be regained.
fn verify_dropped(spec: &SandboxSpec, host: &dyn Host) -> Result<(), JailError> {
    let ids = host.ids();
    if ids != (spec.uid, spec.uid, spec.gid, spec.gid) {
        return Err(JailError::new(
            "verify uid drop",
            format!("ids are {ids:?}"),
        ));
    }
    if host.setuid(0).is_ok() || host.setgid(0).is_ok() {
        return Err(JailError::new("verify uid drop", "root could be regained"));
    }
    Ok(())
}

fn cstring(what: &str, s: &str) -> Result<CString, JailError> {
    CString::new(s).map_err(|e| JailError::new(what.to_owned(), e))
}

/// The child: set up, restore signal state, exec (or, with extensions, run [`crate::init`]).
/// Returns only on failure.
fn child(
    spec: &SandboxSpec,
    host: &LinuxHost,
    old_mask: &SigSet,
    supervisor_alive: &OwnedFd,
    pending: &[u8],
) -> Result<Infallible, JailError> {
    let argv = spec
        .argv
        .iter()
        .map(|a| cstring("argv", a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = spec
        .env
        .iter()
        .map(|(k, v)| cstring("env", &format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;
    // The spec may have come on stdin: the runtime gets /dev/null instead (opened before
    // the new root hides the host's /dev).
    let null = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| JailError::new("open /dev/null", e))?;
    if spec.extensions.is_empty() {
        nix::unistd::dup2(null, 0).map_err(|e| JailError::new("stdin from /dev/null", e))?;
        let _ = nix::unistd::close(null);
    }
    prepare_child(spec, host)?;
    // If the supervisor died before the parent-death signal was re-armed, nobody would kill
    // this process with it: stop here. EAGAIN means the write end is still open.
    if nix::unistd::read(supervisor_alive.as_raw_fd(), &mut [0u8; 1]) == Ok(0) {
        return Err(JailError::new("supervisor", "exited during setup"));
    }
    if !spec.extensions.is_empty() {
        let _ = nix::unistd::close(null);
        // Opened again inside the new root, so the children see it as `/dev/null`.
        let null =
            std::fs::File::open("/dev/null").map_err(|e| JailError::new("open /dev/null", e))?;
        return crate::init::run(spec, &argv, &env, pending, &null.into(), old_mask);
    }
    // The helper is a Rust program (SIGPIPE ignored) started by an agent whose own ignored
    // signals it inherited; ignored signals survive exec. The runtime gets default
    // dispositions and the mask the helper started with.
    reset_signal_dispositions();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(old_mask), None)
        .map_err(|e| JailError::new("sigprocmask", e))?;
    let program = &argv[0];
    nix::unistd::execve(program, &argv, &env)
        .map_err(|e| JailError::new(format!("exec {}", spec.argv[0]), e))
}

/// Sets every signal (1..=64, real-time ones included) to SIG_DFL. Uses the raw system call
/// because glibc refuses to touch the two real-time signals it reserves (32, 33).
pub(crate) fn reset_signal_dispositions() {
    // A kernel `struct sigaction` with every field zero means SIG_DFL, no flags, empty mask,
    // whatever the architecture's field order; 32 bytes covers every layout.
    let default = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads the zeroed struct from a live local buffer and writes
        // nothing (old action null); 8 is the kernel sigset size (_NSIG / 8) on x86_64 and
        // aarch64. No handler runs, and the process execs right after. Errors (e.g. EINVAL on
        // an architecture with more signals) leave that signal as it was.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                default.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                8usize,
            );
        }
    }
}

static CHILD_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes plain integers.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The supervisor after fork: forward signals, wait, translate the status.
fn supervise(child: Pid, old_mask: &SigSet) -> Result<i32, JailError> {
    CHILD_PID.store(child.as_raw(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(forward_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in FORWARDED_SIGNALS {
        // SAFETY: `forward_signal` only reads an atomic and calls kill(2), both
        // async-signal-safe.
        unsafe { sigaction(sig, &action) }.map_err(|e| JailError::new("sigaction", e))?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(old_mask), None)
        .map_err(|e| JailError::new("sigprocmask", e))?;
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(JailError::new("wait", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use nix::sched::CloneFlags;

    use std::io::Read;

    use super::*;
    use crate::cgroups::test_util::{get, v1_root};
    use crate::host::{Call, RecordingHost};
    use crate::spec::tests::sample;
    use crate::spec::{CgroupSpec, Namespaces};

    fn host() -> RecordingHost {
        RecordingHost::root()
            .dir("/usr")
            .dir("/etc")
            .dir("/srv/fleetfn/code/abc")
            .dir("/srv/fleetfn/envs/e1/root")
            .dir("/opt/fleetfn/python3.12")
    }

    #[test]
    fn supervisor_joins_cgroup_then_unshares_then_makes_private() {
        let tmp = tempfile::tempdir().unwrap();
        v1_root(tmp.path(), &["memory", "cpu", "cpuacct", "pids"]);
        let mut spec = sample();
        spec.cgroup = Some(CgroupSpec {
            memory_bytes: Some(64 << 20),
            cpu_quota_us: Some(50_000),
            root: tmp.path().to_path_buf(),
            ..CgroupSpec::new("e1")
        });
        let host = host();
        prepare_supervisor(&spec, &host, 4321).unwrap();
        let mem = tmp.path().join("memory/fleetfn/e1");
        assert_eq!(get(&mem, "cgroup.procs"), "4321");
        assert_eq!(get(&mem, "memory.limit_in_bytes"), "67108864");
        assert_eq!(
            get(&tmp.path().join("cpu/fleetfn/e1"), "cpu.cfs_quota_us"),
            "50000"
        );
        assert_eq!(
            get(&tmp.path().join("pids/fleetfn/e1"), "cgroup.procs"),
            "4321"
        );
        let all = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS;
        assert_eq!(
            host.calls(),
            [
                Call::Unshare(all),
                Call::Mount(make_private()),
                Call::ParentDeathSignal
            ]
        );
    }

    #[test]
    fn supervisor_without_namespaces_does_nothing_to_mounts() {
        let mut spec = sample();
        spec.namespaces = Namespaces {
            mount: false,
            pid: true,
            ipc: false,
            uts: false,
        };
        let host = host();
        prepare_supervisor(&spec, &host, 1).unwrap();
        assert_eq!(
            host.calls(),
            [
                Call::Unshare(CloneFlags::CLONE_NEWPID),
                Call::ParentDeathSignal
            ]
        );
        spec.namespaces = Namespaces::none();
        let host = self::host();
        prepare_supervisor(&spec, &host, 1).unwrap();
        assert_eq!(host.calls(), [Call::ParentDeathSignal]);
    }

    #[test]
    fn supervisor_reports_missing_cgroupfs() {
        let mut spec = sample();
        spec.cgroup = Some(CgroupSpec {
            root: "/definitely/not/cgroupfs".into(),
            ..CgroupSpec::new("e1")
        });
        let err = prepare_supervisor(&spec, &host(), 1).unwrap_err();
        assert_eq!(
            err.message(),
            "fleetfn-sandbox: cgroup: no cgroup hierarchy under /definitely/not/cgroupfs"
        );
    }

    #[test]
    fn child_steps_in_order() {
        let host = host();
        let spec = sample();
        prepare_child(&spec, &host).unwrap();
        let calls = host.calls();
        assert_eq!(calls[0], Call::ParentDeathSignal);
        let pivot = calls
            .iter()
            .position(|c| matches!(c, Call::PivotRoot(_)))
            .unwrap();
        let tail: Vec<Call> = calls[pivot + 2..].to_vec();
        assert_eq!(
            tail,
            [
                Call::SetHostname("fleetfn-env".into()),
                Call::SetRlimit(Resource::RLIMIT_NOFILE, 1024),
                Call::SetRlimit(Resource::RLIMIT_CORE, 0),
                Call::DropBoundingSet,
                Call::SetGroupsEmpty,
                Call::SetGid(10_001),
                Call::SetUid(10_001),
                // The verification attempts, both refused.
                Call::SetUid(0),
                Call::SetGid(0),
                Call::ParentDeathSignal,
                Call::NoNewPrivs,
                Call::Chdir(PathBuf::from("/var/task")),
                Call::CloexecFrom(3),
                Call::InstallSeccomp,
            ]
        );
        // Everything before pivot is rootfs work.
        assert!(calls[1..pivot].iter().all(|c| matches!(
            c,
            Call::Mount(_) | Call::Mkdir(_) | Call::CreateFile(_) | Call::Symlink { .. }
        )));
    }

    #[test]
    fn child_without_mount_or_uts_namespace_skips_rootfs_and_hostname() {
        let host = host();
        let mut spec = sample();
        spec.namespaces = Namespaces {
            mount: false,
            pid: true,
            ipc: true,
            uts: false,
        };
        spec.no_new_privs = false;
        spec.seccomp = false;
        spec.rlimits.nproc = Some(256);
        prepare_child(&spec, &host).unwrap();
        let calls = host.calls();
        assert!(!calls.iter().any(|c| matches!(
            c,
            Call::Mount(_) | Call::PivotRoot(_) | Call::SetHostname(_)
        )));
        assert!(!calls.contains(&Call::NoNewPrivs));
        assert!(!calls.contains(&Call::InstallSeccomp));
        assert!(calls.contains(&Call::SetRlimit(Resource::RLIMIT_NPROC, 256)));
    }

    #[test]
    fn child_failure_names_the_step() {
        let mut host = host();
        host.fail = Some(|c| matches!(c, Call::SetGid(10_001)));
        let err = prepare_child(&sample(), &host).unwrap_err();
        assert_eq!(
            err.message(),
            "fleetfn-sandbox: setgid: Operation not permitted (os error 1)"
        );
        assert!(
            !host.calls().iter().any(|c| matches!(c, Call::SetUid(_))),
            "stops at the first failure"
        );
    }

    #[test]
    fn verify_refuses_unchanged_ids_or_regainable_root() {
        // Nothing was dropped: the ids are still root's.
        let err = verify_dropped(&sample(), &host()).unwrap_err();
        assert_eq!(err.to_string(), "verify uid drop: ids are (0, 0, 0, 0)");
        // Ids match but setuid(0) still works (the fake is root): refused too.
        let mut spec = sample();
        (spec.uid, spec.gid) = (0, 0);
        let err = verify_dropped(&spec, &host()).unwrap_err();
        assert_eq!(err.to_string(), "verify uid drop: root could be regained");
    }

    /// Hands out its input in the given pieces, then EOF (or a panic, if `eof` is false: the
    /// reader must not ask for more once a whole spec has arrived).
    struct Pieces {
        pieces: std::collections::VecDeque<Vec<u8>>,
        eof: bool,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.pieces.pop_front() {
                Some(piece) => {
                    buf[..piece.len()].copy_from_slice(&piece);
                    Ok(piece.len())
                }
                None if self.eof => Ok(0),
                None => panic!("read past the spec: it would block on a live pipe"),
            }
        }
    }

    fn pieces(parts: &[&[u8]], eof: bool) -> Pieces {
        Pieces {
            pieces: parts.iter().map(|p| p.to_vec()).collect(),
            eof,
        }
    }

    #[test]
    fn spec_is_read_up_to_its_end_leaving_the_gate_unread() {
        let json = sample().to_json().unwrap();
        // Today's agent: the whole spec, then EOF.
        let (spec, rest) = read_spec(&mut pieces(&[json.as_bytes()], true)).unwrap();
        assert_eq!((spec, rest), (sample(), Vec::new()));
        // One line, the pipe kept open; the gate byte may come in the same read.
        let line = format!("{json}\n");
        let (spec, rest) = read_spec(&mut pieces(&[line.as_bytes()], false)).unwrap();
        assert_eq!((spec, rest), (sample(), b"\n".to_vec()));
        let (_, rest) = read_spec(&mut pieces(&[format!("{line}G").as_bytes()], false)).unwrap();
        assert_eq!(rest, b"\nG");
        // Byte by byte, and pretty-printed over several lines.
        let bytes: Vec<&[u8]> = json.as_bytes().chunks(1).collect();
        assert_eq!(read_spec(&mut pieces(&bytes, false)).unwrap().0, sample());
        let pretty = serde_json::to_string_pretty(&sample()).unwrap();
        let halves: Vec<&[u8]> = pretty.as_bytes().chunks(pretty.len() / 2 + 1).collect();
        assert_eq!(read_spec(&mut pieces(&halves, false)).unwrap().0, sample());
    }

    #[test]
    fn bad_or_cut_specs_fail_with_the_parser_message() {
        let err = read_spec(&mut pieces(&[b"{\"argv\": [", b"\"/x\""], true)).unwrap_err();
        assert!(
            err.message()
                .starts_with("fleetfn-sandbox: spec: invalid spec JSON: EOF"),
            "{err}"
        );
        let err = read_spec(&mut pieces(&[b"{\"bogus\": 1}\n"], false)).unwrap_err();
        assert!(err.message().contains("bogus"), "{err}");
        let err = read_spec(&mut pieces(&[], true)).unwrap_err();
        assert!(err.message().contains("EOF"), "{err}");
    }

    #[test]
    fn single_thread_check() {
        let host = RecordingHost::root().file("/proc/self/status", "Name:\tx\nThreads:\t1\n");
        check_single_threaded(&host).unwrap();
        let host = RecordingHost::root().file("/proc/self/status", "Name:\tx\nThreads:\t7\n");
        assert!(
            check_single_threaded(&host)
                .unwrap_err()
                .error
                .contains("7 threads")
        );
    }
}
