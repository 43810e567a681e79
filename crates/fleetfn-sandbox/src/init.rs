//! The sandbox's init, used when the function has external extensions
//! ([`SandboxSpec::extensions`] non-empty); without extensions the helper's child execs the
//! runtime directly, as before.
//!
//! After the child's setup (seccomp included, so it covers everything started here) it stays
//! pid 1 of the environment's pid namespace and:
//!
//! 1. forks and execs every extension (`argv` = its path, the runtime's environment, working
//!    directory and uid, stdin `/dev/null`, stdout and stderr inherited, or, with
//!    [`SandboxSpec::extension_output`], both on the extension's own descriptor that the agent
//!    passed with [`pass_extension_outputs`], so the agent tells the extensions' lines from the
//!    function's; init closes its copies once they are started, and the runtime never has them);
//! 2. waits for the gate byte [`GATE_BYTE`] on its stdin, where the agent sent the spec as one
//!    JSON line before (whitespace is skipped). EOF first aborts the sandbox (exit
//!    [`SETUP_FAILURE_EXIT_CODE`] with a `fleetfn-sandbox: gate: ...` line);
//! 3. forks and execs the runtime (`argv`, stdin `/dev/null`);
//! 4. reaps every child, orphans included, and forwards the signals the supervisor passes on
//!    (SIGTERM, SIGINT, SIGHUP, SIGQUIT) to the runtime only.
//!
//! An extension that exits before the gate or while the runtime runs ends the sandbox: one
//! stderr line `fleetfn-sandbox: extension <name> exited: <status>` ([`parse_extension_exit`]),
//! everything killed, exit [`EXTENSION_EXIT_CODE`]. Once the environment is stopping (the agent
//! wrote [`STOPPING_BYTE`] on stdin, or a forwarded signal arrived) extensions may exit freely.
//! When the runtime exits, the rest is killed and init exits with the runtime's status
//! (128 + signal for a signal death). A forwarded signal before the gate kills everything and
//! exits with 128 + that signal.
//!
//! The decisions live in `InitState` (pure, unit tested); `run` is the system-call loop
//! around it (signalfd + poll), exercised by `tests/privileged.rs`.

use std::convert::Infallible;
use std::ffi::CString;
use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::error::{JailError, MESSAGE_PREFIX};
use crate::jail::{FORWARDED_SIGNALS, SETUP_FAILURE_EXIT_CODE, reset_signal_dispositions};
use crate::spec::SandboxSpec;

/// Exit status of the helper when an extension exited while it was not allowed to.
pub const EXTENSION_EXIT_CODE: i32 = 124;
/// The byte the agent writes on the helper's stdin to start the runtime.
pub const GATE_BYTE: u8 = b'G';
/// The byte the agent writes on the helper's stdin, after the gate, when the environment
/// starts stopping (extensions then exit after their `SHUTDOWN` without ending the sandbox).
pub const STOPPING_BYTE: u8 = b'S';
/// Exit status of an extension's child whose `execve` failed (it also prints why).
const EXEC_FAILED: i32 = 127;
/// Makes `cmd` (the agent's `fleetfn jail` command) inherit `outputs` (the write ends of the
/// extensions' output pipes, extension `i`'s at `i`) at their current descriptor numbers and
/// returns those numbers, for [`SandboxSpec::extension_output`]. Only the child started by
/// `cmd` gets them (close-on-exec is cleared after its fork, never in the agent, whose other
/// children must not inherit them); the agent's copies close when `cmd` is dropped, so its read
/// ends see EOF once the extensions (and whatever inherited their output) are gone.
pub fn pass_extension_outputs(
    cmd: &mut std::process::Command,
    outputs: Vec<OwnedFd>,
) -> Vec<RawFd> {
    use std::os::unix::process::CommandExt;
    let numbers: Vec<RawFd> = outputs.iter().map(AsRawFd::as_raw_fd).collect();
    if outputs.is_empty() {
        return numbers;
    }
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl(2), which
    // is async-signal-safe, on descriptors it owns; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &outputs {
                if libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    numbers
}

/// Checks that the extension output descriptors are open (the helper fails early and clearly
/// when the agent named them without passing them).
pub(crate) fn check_extension_outputs(spec: &SandboxSpec) -> Result<(), JailError> {
    for (fd, ext) in spec.extension_output.iter().zip(&spec.extensions) {
        // SAFETY: F_GETFD only reads the flags of a descriptor number; no memory involved.
        if unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0 {
            return Err(JailError::new(
                "extension output",
                format!(
                    "descriptor {fd} for extension {}'s output is not open (pass it with pass_extension_outputs)",
                    ext.name
                ),
            ));
        }
    }
    Ok(())
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildStatus {
    Exited(i32),
    Signaled(Signal),
}

impl ChildStatus {
    /// The shell's convention: the code, or 128 + the signal number.
    pub(crate) fn code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(sig) => 128 + sig as i32,
        }
    }
}

impl fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exit code {code}"),
            Self::Signaled(sig) => write!(f, "killed by {}", sig.as_str()),
        }
    }
}

/// The line init prints when extension `name` ended the sandbox.
pub fn extension_exit_line(name: &str, status: impl fmt::Display) -> String {
    format!("{MESSAGE_PREFIX}extension {name} exited: {status}")
}

/// Parses [`extension_exit_line`]'s line back into `(name, status)`, e.g.
/// `("my-ext", "exit code 1")` or `("my-ext", "killed by SIGSEGV")`; `None` for other lines.
pub fn parse_extension_exit(line: &str) -> Option<(String, String)> {
    let rest = line
        .trim_end()
        .strip_prefix(MESSAGE_PREFIX)?
        .strip_prefix("extension ")?;
    let (name, status) = rest.rsplit_once(" exited: ")?;
    Some((name.to_owned(), status.to_owned()))
}

/// Something init noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A byte on stdin.
    Stdin(u8),
    /// Stdin reached end of file.
    StdinEof,
    /// A child (or an adopted orphan) was reaped.
    Exited(i32, ChildStatus),
    /// A forwarded signal reached init.
    Signal(Signal),
}

/// What init does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Continue,
    /// Fork and exec the runtime, then tell [`InitState::runtime_started`].
    StartRuntime,
    /// Send the signal to that process.
    Forward(i32, Signal),
    /// Print `line` (if any) on stderr, kill everything, exit with `code`.
    Exit {
        line: Option<String>,
        code: i32,
    },
}

/// Init's bookkeeping: which extensions live, the runtime's pid, gate and stop state.
#[derive(Debug)]
pub(crate) struct InitState {
    extensions: Vec<(i32, String)>,
    runtime: Option<i32>,
    gate_open: bool,
    stopping: bool,
}

impl InitState {
    /// Extensions `(pid, name)` already started.
    pub(crate) fn new(extensions: Vec<(i32, String)>) -> Self {
        Self {
            extensions,
            runtime: None,
            gate_open: false,
            stopping: false,
        }
    }

    pub(crate) fn runtime_started(&mut self, pid: i32) {
        self.runtime = Some(pid);
    }

    #[cfg(test)]
    fn gate_open(&self) -> bool {
        self.gate_open
    }

    /// Processes init started that have not been reaped.
    pub(crate) fn live_pids(&self) -> Vec<i32> {
        self.extensions
            .iter()
            .map(|(pid, _)| *pid)
            .chain(self.runtime)
            .collect()
    }

    pub(crate) fn on(&mut self, event: Event) -> Step {
        match event {
            Event::Stdin(byte) if byte.is_ascii_whitespace() => Step::Continue,
            Event::Stdin(GATE_BYTE) if !self.gate_open => {
                self.gate_open = true;
                Step::StartRuntime
            }
            Event::Stdin(byte) if !self.gate_open => Step::Exit {
                line: Some(format!(
                    "{MESSAGE_PREFIX}gate: unexpected byte {byte:#04x} on stdin (expected 'G')"
                )),
                code: SETUP_FAILURE_EXIT_CODE,
            },
            Event::Stdin(STOPPING_BYTE) => {
                self.stopping = true;
                Step::Continue
            }
            Event::Stdin(_) => Step::Continue,
            Event::StdinEof if !self.gate_open => Step::Exit {
                line: Some(format!(
                    "{MESSAGE_PREFIX}gate: stdin closed before the gate byte"
                )),
                code: SETUP_FAILURE_EXIT_CODE,
            },
            Event::StdinEof => Step::Continue,
            Event::Exited(pid, status) if Some(pid) == self.runtime => {
                self.runtime = None;
                Step::Exit {
                    line: None,
                    code: status.code(),
                }
            }
            Event::Exited(pid, status) => {
                let Some(i) = self.extensions.iter().position(|(p, _)| *p == pid) else {
                    return Step::Continue; // an orphan, adopted and reaped
                };
                let (_, name) = self.extensions.remove(i);
                if self.stopping {
                    Step::Continue
                } else {
                    Step::Exit {
                        line: Some(extension_exit_line(&name, status)),
                        code: EXTENSION_EXIT_CODE,
                    }
                }
            }
            Event::Signal(sig) => {
                self.stopping = true;
                match self.runtime {
                    Some(pid) => Step::Forward(pid, sig),
                    None => Step::Exit {
                        line: None,
                        code: 128 + sig as i32,
                    },
                }
            }
        }
    }
}

fn stderr_line(line: &str) {
    // Never panics, whatever stderr is (the helper ignores SIGPIPE).
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Exits a forked child without running the parent's exit handlers or flushing its buffers.
fn exit_child(code: i32) -> ! {
    // SAFETY: _exit(2) ends the process at once; it touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Forks a child that takes `null` as stdin (and `output`, when given, as stdout and stderr),
/// gets default signal dispositions and `old_mask`,
/// and execs `argv[0]` with `env`; when exec fails it prints `exec_step: error` and exits with
/// `exec_failed`.
fn spawn(
    argv: &[CString],
    env: &[CString],
    null: RawFd,
    output: Option<RawFd>,
    old_mask: &SigSet,
    exec_step: &str,
    exec_failed: i32,
) -> nix::Result<Pid> {
    // SAFETY: init is single-threaded (the helper checked before its own fork and starts no
    // thread), so the child may run ordinary code until it execs or exits.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let result = (|| -> nix::Result<Infallible> {
                nix::unistd::dup2(null, 0)?;
                if let Some(output) = output {
                    nix::unistd::dup2(output, 1)?;
                    nix::unistd::dup2(output, 2)?;
                }
                // Without a pid namespace nothing else would kill it when init dies.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                reset_signal_dispositions();
                sigprocmask(SigmaskHow::SIG_SETMASK, Some(old_mask), None)?;
                nix::unistd::execve(&argv[0], argv, env)
            })();
            let Err(e) = result;
            stderr_line(&JailError::new(exec_step, e).message());
            exit_child(exec_failed)
        }
    }
}

/// Kills every process init may have started: all of the pid namespace when init is its
/// pid 1 (`kill(-1)` spares init itself), else the children it knows of.
fn kill_everything(state: &InitState) {
    if std::process::id() == 1 {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    } else {
        for pid in state.live_pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn finish(state: &InitState, line: Option<&str>, code: i32) -> ! {
    if let Some(line) = line {
        stderr_line(line);
    }
    kill_everything(state);
    std::process::exit(code)
}

/// Reaps every child that has ended (without blocking).
fn reap(events: &mut Vec<Event>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                events.push(Event::Exited(pid.as_raw(), ChildStatus::Exited(code)));
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                events.push(Event::Exited(pid.as_raw(), ChildStatus::Signaled(sig)));
            }
            Err(Errno::EINTR) => {}
            // StillAlive, ECHILD (no children left) or anything unexpected: done for now.
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Signals from the signalfd: SIGCHLD becomes reaped children, the rest forwarded signals.
fn drain_signals(sigfd: &SignalFd, events: &mut Vec<Event>) {
    let mut child = false;
    while let Ok(Some(info)) = sigfd.read_signal() {
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) => child = true,
            Ok(sig) => events.push(Event::Signal(sig)),
            Err(_) => {}
        }
    }
    if child {
        reap(events);
    }
}

/// Reads what stdin has (it is readable); false once it has nothing more to give.
fn read_stdin(events: &mut Vec<Event>) -> bool {
    let mut buf = [0u8; 64];
    match nix::unistd::read(0, &mut buf) {
        Ok(0) => {
            events.push(Event::StdinEof);
            false
        }
        Ok(n) => {
            events.extend(buf[..n].iter().map(|b| Event::Stdin(*b)));
            true
        }
        Err(Errno::EINTR | Errno::EAGAIN) => true,
        Err(_) => {
            events.push(Event::StdinEof);
            false
        }
    }
}

/// Runs init: starts the extensions, then the runtime after the gate, and never returns
/// (exits with the status described in the module docs). `pending` holds stdin bytes read
/// after the spec; `null` is `/dev/null` for the children's stdin; `old_mask` is the signal
/// mask the children get.
pub(crate) fn run(
    spec: &SandboxSpec,
    argv: &[CString],
    env: &[CString],
    pending: &[u8],
    null: &OwnedFd,
    old_mask: &SigSet,
) -> Result<Infallible, JailError> {
    let mut watched = SigSet::empty();
    watched.add(Signal::SIGCHLD);
    for sig in FORWARDED_SIGNALS {
        watched.add(sig);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched), None)
        .map_err(|e| JailError::new("sigprocmask", e))?;
    let sigfd = SignalFd::with_flags(&watched, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| JailError::new("signalfd", e))?;
    if std::process::id() != 1 {
        // No pid namespace: orphans of the sandbox come to init, to be reaped.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| JailError::new("child subreaper", e))?;
    }

    let mut state = InitState::new(Vec::new());
    for (i, ext) in spec.extensions.iter().enumerate() {
        let path = ext.path.to_string_lossy();
        let ext_argv = [CString::new(path.as_bytes())
            .map_err(|e| JailError::new(format!("extension {}", ext.name), e))?];
        let started = spawn(
            &ext_argv,
            env,
            null.as_raw_fd(),
            spec.extension_output.get(i).copied(),
            old_mask,
            &format!("exec extension {path}"),
            EXEC_FAILED,
        );
        match started {
            Ok(pid) => state.extensions.push((pid.as_raw(), ext.name.clone())),
            Err(e) => {
                let line = JailError::new(format!("fork extension {}", ext.name), e).message();
                finish(&state, Some(&line), SETUP_FAILURE_EXIT_CODE)
            }
        }
    }
    // The extensions have theirs: the pipes end with them, not with init.
    for fd in &spec.extension_output {
        let _ = nix::unistd::close(*fd);
    }

    let mut events: Vec<Event> = pending.iter().map(|b| Event::Stdin(*b)).collect();
    let mut stdin_open = true;
    loop {
        for event in std::mem::take(&mut events) {
            match state.on(event) {
                Step::Continue => {}
                Step::StartRuntime => {
                    let exec_step = format!("exec {}", spec.argv[0]);
                    let started = spawn(
                        argv,
                        env,
                        null.as_raw_fd(),
                        None,
                        old_mask,
                        &exec_step,
                        SETUP_FAILURE_EXIT_CODE,
                    );
                    match started {
                        Ok(pid) => state.runtime_started(pid.as_raw()),
                        Err(e) => {
                            let line = JailError::new("fork runtime", e).message();
                            finish(&state, Some(&line), SETUP_FAILURE_EXIT_CODE)
                        }
                    }
                }
                Step::Forward(pid, sig) => {
                    let _ = kill(Pid::from_raw(pid), sig);
                }
                Step::Exit { line, code } => finish(&state, line.as_deref(), code),
            }
        }
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => finish(
                &state,
                Some(&JailError::new("poll", e).message()),
                SETUP_FAILURE_EXIT_CODE,
            ),
        }
        let stdin_ready = fds.get(1).is_some_and(|fd| {
            fd.revents().is_some_and(|r| {
                r.intersects(
                    PollFlags::POLLIN
                        | PollFlags::POLLHUP
                        | PollFlags::POLLERR
                        | PollFlags::POLLNVAL,
                )
            })
        });
        drop(fds);
        drain_signals(&sigfd, &mut events);
        if stdin_ready {
            stdin_open = read_stdin(&mut events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> InitState {
        InitState::new(vec![(10, "ext-a".into()), (11, "ext-b".into())])
    }

    fn exit(line: Option<&str>, code: i32) -> Step {
        Step::Exit {
            line: line.map(str::to_owned),
            code,
        }
    }

    #[test]
    fn the_runtime_starts_only_at_the_gate_byte() {
        let mut s = state();
        for b in b"\n \r\t" {
            assert_eq!(s.on(Event::Stdin(*b)), Step::Continue);
        }
        assert!(!s.gate_open());
        assert_eq!(s.on(Event::Stdin(b'G')), Step::StartRuntime);
        s.runtime_started(12);
        assert_eq!(s.live_pids(), [10, 11, 12]);
        // A second gate byte, other bytes and EOF after the gate change nothing.
        assert_eq!(s.on(Event::Stdin(b'G')), Step::Continue);
        assert_eq!(s.on(Event::Stdin(b'x')), Step::Continue);
        assert_eq!(s.on(Event::StdinEof), Step::Continue);
    }

    #[test]
    fn eof_or_garbage_before_the_gate_aborts() {
        assert_eq!(
            state().on(Event::StdinEof),
            exit(
                Some("fleetfn-sandbox: gate: stdin closed before the gate byte"),
                125
            )
        );
        assert_eq!(
            state().on(Event::Stdin(b'{')),
            exit(
                Some("fleetfn-sandbox: gate: unexpected byte 0x7b on stdin (expected 'G')"),
                125
            )
        );
    }

    #[test]
    fn an_extension_exiting_before_the_gate_or_while_the_runtime_runs_ends_the_sandbox() {
        let mut s = state();
        assert_eq!(
            s.on(Event::Exited(11, ChildStatus::Exited(3))),
            exit(
                Some("fleetfn-sandbox: extension ext-b exited: exit code 3"),
                EXTENSION_EXIT_CODE
            )
        );
        let mut s = state();
        s.on(Event::Stdin(GATE_BYTE));
        s.runtime_started(12);
        assert_eq!(
            s.on(Event::Exited(10, ChildStatus::Signaled(Signal::SIGSEGV))),
            exit(
                Some("fleetfn-sandbox: extension ext-a exited: killed by SIGSEGV"),
                124
            )
        );
        // Orphans reaped along the way are nobody's business.
        let mut s = state();
        assert_eq!(
            s.on(Event::Exited(99, ChildStatus::Exited(0))),
            Step::Continue
        );
        assert_eq!(s.live_pids(), [10, 11]);
    }

    #[test]
    fn the_runtime_status_is_the_sandbox_status() {
        let mut s = state();
        s.on(Event::Stdin(GATE_BYTE));
        s.runtime_started(12);
        assert_eq!(
            s.on(Event::Exited(12, ChildStatus::Exited(7))),
            exit(None, 7)
        );
        let mut s = state();
        s.on(Event::Stdin(GATE_BYTE));
        s.runtime_started(12);
        assert_eq!(
            s.on(Event::Exited(12, ChildStatus::Signaled(Signal::SIGKILL))),
            exit(None, 137)
        );
    }

    #[test]
    fn signals_go_to_the_runtime_only_and_mean_stopping() {
        let mut s = state();
        s.on(Event::Stdin(GATE_BYTE));
        s.runtime_started(12);
        assert_eq!(
            s.on(Event::Signal(Signal::SIGTERM)),
            Step::Forward(12, Signal::SIGTERM)
        );
        // Stopping: extensions may now exit (after their SHUTDOWN) without ending anything.
        assert_eq!(
            s.on(Event::Exited(10, ChildStatus::Exited(0))),
            Step::Continue
        );
        assert_eq!(s.live_pids(), [11, 12]);
        assert_eq!(
            s.on(Event::Exited(12, ChildStatus::Exited(0))),
            exit(None, 0)
        );

        // Before the gate there is no runtime: the sandbox ends as if killed by the signal.
        assert_eq!(state().on(Event::Signal(Signal::SIGTERM)), exit(None, 143));
    }

    #[test]
    fn the_stopping_byte_lets_extensions_exit() {
        let mut s = state();
        s.on(Event::Stdin(GATE_BYTE));
        s.runtime_started(12);
        assert_eq!(s.on(Event::Stdin(STOPPING_BYTE)), Step::Continue);
        assert_eq!(
            s.on(Event::Exited(11, ChildStatus::Exited(0))),
            Step::Continue
        );
        // Before the gate the stopping byte is not allowed (the gate must come first).
        assert!(matches!(
            state().on(Event::Stdin(STOPPING_BYTE)),
            Step::Exit { code: 125, .. }
        ));
    }

    #[test]
    fn extension_exit_lines_parse_back() {
        let line = extension_exit_line("my: ext", ChildStatus::Exited(1));
        assert_eq!(
            line,
            "fleetfn-sandbox: extension my: ext exited: exit code 1"
        );
        assert_eq!(
            parse_extension_exit(&format!("{line}\n")),
            Some(("my: ext".into(), "exit code 1".into()))
        );
        assert_eq!(parse_extension_exit("fleetfn-sandbox: setuid: EPERM"), None);
        assert_eq!(parse_extension_exit("extension x exited: 1"), None);
    }
}
