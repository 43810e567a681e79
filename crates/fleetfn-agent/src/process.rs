//! Everything that touches OS processes: launching a runtime, signalling its process group,
//! describing how it exited, and reading its memory use from `/proc`.
//!
//! The agent is a multithreaded Tokio process, so it never forks by hand: processes are
//! started with [`tokio::process::Command`] (which execs at once in the child). Sandboxing
//! (cgroups, namespaces) plugs in as another [`Launcher`] that starts a single-threaded helper
//! which sets up the sandbox and execs the runtime, keeping the same pid.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// The process to start for an environment: program, arguments, complete environment and
/// working directory. Nothing of the agent's own environment is inherited.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments (without `argv[0]`).
    pub args: Vec<String>,
    /// The complete environment.
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// What a sandboxing launcher needs beyond the command; a plain launcher ignores it.
    pub sandbox: SandboxInputs,
}

/// The environment's resources and host paths, for a launcher that isolates it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxInputs {
    /// The environment id (names its cgroup).
    pub env_id: String,
    /// The code directory (`LAMBDA_TASK_ROOT` on the host; `/var/task` inside a sandbox).
    pub code_dir: PathBuf,
    /// The environment's private temporary directory (`TMPDIR`; `/tmp` inside a sandbox).
    pub tmp_dir: PathBuf,
    /// Host directories the runtime reads (its `LAMBDA_RUNTIME_DIR`, the interpreter's tree).
    pub runtime_dirs: Vec<PathBuf>,
    /// `MemorySize` in MiB.
    pub memory_mb: u32,
    /// vCPUs (CPU quota, with `cpu_scale`).
    pub vcpus: f64,
    /// Host CPUs per vCPU: the CPU quota is `vcpus × cpu_scale` host CPUs.
    pub cpu_scale: f64,
    /// `EphemeralStorage` in MiB (size of `/tmp`).
    pub tmp_size_mb: u32,
    /// The merged layers, bound read-only at `/opt`.
    pub opt_dir: Option<PathBuf>,
    /// The environment's hosts file, bound read-only at `/etc/hosts`.
    pub hosts_file: Option<PathBuf>,
    /// External extensions (names of files in `/opt/extensions`) the sandbox starts before
    /// the runtime; the runtime itself waits for [`Launched::gate`].
    pub extensions: Vec<String>,
    /// The environment's log socket (`_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET`, a host path),
    /// for a sandbox to give to the environment's uid and bind into its mount namespace.
    pub log_socket: Option<PathBuf>,
}

/// A launched runtime process.
#[derive(Debug)]
pub struct Launched {
    /// The process. Its stdout and stderr must be piped; it must lead its own process group
    /// (pgid = pid) so the whole tree can be signalled.
    pub child: Child,
    /// Memory accounting for the environment; `None` uses the `/proc` tree of the child.
    pub accounting: Option<Arc<dyn ResourceAccounting>>,
    /// Where the runtime's `/tmp` is, for the disk ceiling.
    pub tmp: TmpStorage,
    /// Released when the environment is gone (see [`Reservation::hold`]).
    pub hold: Option<Hold>,
    /// With external extensions: what lets the runtime start once they are ready.
    pub gate: Option<Gate>,
    /// With external extensions in a sandbox: the read end of each one's own output pipe (its
    /// stdout and stderr), by name, so its lines are told from the function's.
    pub extension_output: Vec<(String, std::os::fd::OwnedFd)>,
}

/// The start signal of a runtime whose extensions start first: [`Gate::open`] lets the
/// runtime start; a gate dropped unopened aborts the environment. [`Gate::stopping`] says the
/// environment is stopping (its extensions may then exit without ending it).
#[derive(Debug)]
pub struct Gate(std::sync::mpsc::Sender<GateSignal>);

/// What a [`Gate`] tells its launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateSignal {
    /// Start the runtime.
    Open,
    /// The environment is stopping.
    Stopping,
}

impl Gate {
    /// A gate and what its launcher reads (until the gate is dropped).
    pub fn new() -> (Self, std::sync::mpsc::Receiver<GateSignal>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (Self(tx), rx)
    }

    /// Lets the runtime start.
    pub fn open(&self) {
        let _ = self.0.send(GateSignal::Open);
    }

    /// The environment is stopping.
    pub fn stopping(&self) {
        let _ = self.0.send(GateSignal::Stopping);
    }
}

/// Where an environment's `/tmp` lives, so its use can be measured off the invoke path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpStorage {
    /// `TMPDIR` is the environment's host scratch directory: measured by a bounded walk.
    HostDir,
    /// `/tmp` is a tmpfs of `size_bytes` in the runtime's private mount namespace: measured
    /// with `statvfs` through `/proc/<pid>/root/tmp` (needs root, as the sandbox does).
    PrivateTmpfs { size_bytes: u64 },
}

/// Starts runtime processes. The default, [`DirectLauncher`], runs them as plain child
/// processes; a sandboxing launcher can wrap them in cgroups and namespaces.
pub trait Launcher: Send + Sync + fmt::Debug {
    /// Reserves what environment `env_id` needs before its runtime starts: above all the
    /// listener its Runtime API is served on. The default binds `127.0.0.1:0` on the agent's
    /// own network. Blocking (it may create a network namespace).
    fn reserve(&self, env_id: &str) -> io::Result<Reservation> {
        let _ = env_id;
        Reservation::loopback()
    }

    /// Starts `cmd` with stdin from `/dev/null`, stdout and stderr piped, in a new process
    /// group, killed when the returned child is dropped. `reservation` is what [`Self::reserve`]
    /// returned for the same environment (without its listener, which is being served).
    fn launch(&self, cmd: &LaunchCommand, reservation: Reservation) -> io::Result<Launched>;

    /// Why this launcher cannot run external extensions (`None`: it can, and a command with
    /// [`SandboxInputs::extensions`] starts them, then waits for [`Launched::gate`] before
    /// the runtime).
    fn extensions_unsupported(&self) -> Option<String> {
        Some(
            "external extensions (the executables in /opt/extensions) run only in fleetfn's sandbox, which gives each environment its own network (extensions listen on fixed ports such as 8080 at sandbox.localdomain); this agent starts environments as plain processes (run fleetfn as root to sandbox them), so remove the extension layer or run it on a sandboxed agent"
                .to_owned(),
        )
    }
}

/// Whatever a launcher keeps for an environment's life (its network namespace, its uid slot);
/// dropped only after the environment's processes are gone.
pub type Hold = Box<dyn std::any::Any + Send + Sync>;

/// What a launcher set aside for one environment before its runtime starts.
pub struct Reservation {
    /// The Runtime API listener (taken by the environment to serve it).
    pub listener: Option<std::net::TcpListener>,
    /// What the runtime is told (`AWS_LAMBDA_RUNTIME_API`).
    pub api_addr: std::net::SocketAddr,
    /// When set, the Runtime API serves only the connections it accepts.
    pub peer_filter: Option<fleetfn_runtime_api::PeerFilter>,
    /// Held for the environment's life (its network namespace, its uid slot); released only
    /// after its processes are killed.
    pub hold: Option<Hold>,
    /// Opens a TCP connection to an address of the environment's own network (the Telemetry
    /// API's deliveries to its extensions); `None`: the agent's network is the environment's.
    pub connect: Option<Connect>,
}

/// Connects to addresses inside an environment's network.
pub type Connect = Arc<dyn EnvConnect>;

/// Connections into an environment's own network.
pub trait EnvConnect: Send + Sync + fmt::Debug {
    /// A connected stream to `addr` (blocking, with a short timeout).
    fn connect(&self, addr: std::net::SocketAddr) -> io::Result<std::net::TcpStream>;
    /// Lets go of the network (the environment is gone): every later connect fails.
    fn close(&self);
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("listener", &self.listener)
            .field("api_addr", &self.api_addr)
            .field("peer_filter", &self.peer_filter.is_some())
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// A listener on `127.0.0.1:0` of the agent's network, nothing else.
    pub fn loopback() -> io::Result<Self> {
        let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        Ok(Self {
            api_addr: listener.local_addr()?,
            listener: Some(listener),
            peer_filter: None,
            hold: None,
            connect: None,
        })
    }
}

/// A command set up as every launcher must start a runtime: empty environment, stdin from
/// `/dev/null`, stdout and stderr piped, its own process group, killed when dropped, and the
/// normal CPU scheduling policy whatever the agent runs under ([`fleetfn_sandbox::sched`]).
pub(crate) fn runtime_command(program: &std::path::Path) -> Command {
    let mut c = Command::new(program);
    fleetfn_sandbox::sched::normal_on_exec(c.as_std_mut());
    c.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    c
}

/// Runs the runtime as a plain child process of the agent, in its own process group, with a
/// cleared environment. No isolation beyond that.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectLauncher;

impl Launcher for DirectLauncher {
    fn launch(&self, cmd: &LaunchCommand, reservation: Reservation) -> io::Result<Launched> {
        let child = runtime_command(&cmd.program)
            .args(&cmd.args)
            .envs(&cmd.env)
            .current_dir(&cmd.cwd)
            .spawn()?;
        Ok(Launched {
            child,
            accounting: None,
            tmp: TmpStorage::HostDir,
            hold: reservation.hold,
            gate: None,
            extension_output: Vec::new(),
        })
    }
}

/// Resource accounting of one environment (a cgroup once sandboxing exists; the process tree
/// in `/proc` until then).
pub trait ResourceAccounting: Send + Sync + fmt::Debug {
    /// Peak memory use of the environment so far, in bytes, if known.
    fn peak_memory_bytes(&self) -> Option<u64>;
    /// Whether the kernel's OOM killer killed a process of the environment; `None` when this
    /// accounting cannot tell.
    fn oom_killed(&self) -> Option<bool>;

    /// The peak as of the last sample, without sampling (cheap; for the invoke path). The
    /// environment samples once a second.
    fn last_peak_memory_bytes(&self) -> Option<u64> {
        self.peak_memory_bytes()
    }

    /// Memory in use now (bytes) and CPU time used so far (ns), for utilization reports and
    /// admission ceilings; `None` when this accounting cannot tell.
    fn usage(&self) -> Option<(u64, u64)> {
        None
    }

    /// One periodic sample: updates the peak and returns [`Self::usage`]. Implementations
    /// that can read both at once override it.
    fn sample(&self) -> Option<(u64, u64)> {
        let _ = self.peak_memory_bytes();
        self.usage()
    }

    /// CFS periods so far in which the environment used up its CPU quota and was throttled,
    /// as of the last [`Self::sample`]; `None` when this accounting cannot tell (no quota).
    fn cpu_throttled_periods(&self) -> Option<u64> {
        None
    }
}

/// Accounting from `/proc` over the runtime process and its descendants: memory in use is
/// the sum of `VmRSS`, the peak the running maximum of the sum of `VmHWM` (so it survives the
/// processes), CPU time the sum of `utime + stime + cutime + cstime` (children already reaped
/// count through their parent). Forked workers share pages, so the memory sums over-estimate;
/// they are upper bounds. CPU time of a descendant that exits without being reaped by a
/// process of the tree is lost, so CPU use is a lower bound.
#[derive(Debug)]
pub struct ProcTreeAccounting {
    root: u32,
    peak: AtomicU64,
}

/// One walk of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TreeSample {
    hwm_bytes: u64,
    rss_bytes: u64,
    cpu_ns: u64,
}

impl ProcTreeAccounting {
    /// Accounting for the tree rooted at `pid`.
    pub fn new(pid: u32) -> Self {
        Self {
            root: pid,
            peak: AtomicU64::new(0),
        }
    }

    /// Reads the tree now and updates the running maximum of the peak.
    fn walk(&self) -> TreeSample {
        let proc_root = Path::new("/proc");
        let tick_ns = clock_tick_ns();
        let mut total = TreeSample::default();
        for pid in tree_pids(proc_root, self.root) {
            let (hwm, rss) = status_memory_bytes(proc_root, pid).unwrap_or((0, 0));
            total.hwm_bytes += hwm;
            total.rss_bytes += rss;
            total.cpu_ns += stat_cpu_ticks(proc_root, pid).unwrap_or(0) * tick_ns;
        }
        let peak = self
            .peak
            .fetch_max(total.hwm_bytes, Ordering::Relaxed)
            .max(total.hwm_bytes);
        TreeSample {
            hwm_bytes: peak,
            ..total
        }
    }
}

impl ResourceAccounting for ProcTreeAccounting {
    fn peak_memory_bytes(&self) -> Option<u64> {
        Some(self.walk().hwm_bytes)
    }

    fn oom_killed(&self) -> Option<bool> {
        None
    }

    fn last_peak_memory_bytes(&self) -> Option<u64> {
        Some(self.peak.load(Ordering::Relaxed))
    }

    fn usage(&self) -> Option<(u64, u64)> {
        self.sample()
    }

    fn sample(&self) -> Option<(u64, u64)> {
        let s = self.walk();
        // An empty tree (the runtime is gone) reads as zero: say nothing instead.
        (s.rss_bytes > 0).then_some((s.rss_bytes, s.cpu_ns))
    }
}

/// Nanoseconds per clock tick of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux ABI).
pub(crate) fn clock_tick_ns() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => 1_000_000_000 / u64::try_from(hz).unwrap_or(100),
        _ => 10_000_000,
    }
}

/// `utime + stime + cutime + cstime` of one process, in clock ticks.
pub(crate) fn stat_cpu_ticks(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime..cstime are fields 14..=17.
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

/// Total size of the files under `dir` in bytes (allocated blocks, so sparse files count for
/// what they use), visiting at most `max_entries` entries: a bounded walk for the periodic
/// sampler. Symlinks are not followed; unreadable entries count as empty. `None` when `dir`
/// cannot be read.
pub(crate) fn dir_usage_bytes(dir: &Path, max_entries: usize) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut todo = vec![std::fs::read_dir(dir).ok()?];
    let mut total = 0u64;
    let mut seen = 0usize;
    while let Some(entries) = todo.last_mut() {
        let Some(entry) = entries.next() else {
            todo.pop();
            continue;
        };
        seen += 1;
        if seen > max_entries {
            break;
        }
        let Ok(entry) = entry else { continue };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if meta.is_dir()
            && let Ok(sub) = std::fs::read_dir(entry.path())
        {
            todo.push(sub);
        }
    }
    Some(total)
}

/// Bytes in use of the filesystem holding `path` (`statvfs`), and its size.
pub(crate) fn fs_usage_bytes(path: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    // u64 on every 64-bit Linux target.
    let (frsize, blocks, free) = (st.fragment_size(), st.blocks(), st.blocks_free());
    Some((blocks.saturating_sub(free) * frsize, blocks * frsize))
}

/// `pid` and all its descendants, from `/proc/<pid>/task/<tid>/children`. Empty once `pid`
/// is gone.
pub(crate) fn tree_pids(proc_root: &Path, pid: u32) -> Vec<u32> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if !seen.insert(p) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(proc_root.join(p.to_string()).join("task")) else {
            seen.remove(&p);
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            todo.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    seen.into_iter().collect()
}

/// `VmHWM` and `VmRSS` of one process, in bytes (kernel threads and zombies have neither).
pub(crate) fn status_memory_bytes(proc_root: &Path, pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    Some((kb("VmHWM:")? * 1024, kb("VmRSS:")? * 1024))
}

/// Sends `sig` to the process group `pgid`. A group that no longer exists is not an error.
pub(crate) fn signal_group(pgid: u32, sig: Signal) -> io::Result<()> {
    let Ok(raw) = i32::try_from(pgid) else {
        return Err(io::Error::other(format!("pid {pgid} out of range")));
    };
    if raw <= 1 {
        // Never signal "every process" (0) or init's group by accident.
        return Err(io::Error::other(format!(
            "refusing to signal process group {raw}"
        )));
    }
    match killpg(Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// How a process ended, the way Lambda phrases it after "Runtime exited with error: " (Go's
/// `ExitStatus` text): `exit status 1`, `signal: killed`.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(sig) => format!("signal: {}", signal_text(sig)),
        None => "exit status unknown".to_owned(),
    }
}

/// Go's `syscall.Signal.String()` text for common signals.
pub(crate) fn signal_text(sig: i32) -> String {
    let text = match Signal::try_from(sig) {
        Ok(Signal::SIGKILL) => "killed",
        Ok(Signal::SIGTERM) => "terminated",
        Ok(Signal::SIGSEGV) => "segmentation fault",
        Ok(Signal::SIGABRT) => "aborted",
        Ok(Signal::SIGBUS) => "bus error",
        Ok(Signal::SIGILL) => "illegal instruction",
        Ok(Signal::SIGFPE) => "floating point exception",
        Ok(Signal::SIGINT) => "interrupt",
        Ok(Signal::SIGHUP) => "hangup",
        Ok(Signal::SIGQUIT) => "quit",
        Ok(Signal::SIGPIPE) => "broken pipe",
        Ok(Signal::SIGTRAP) => "trace/breakpoint trap",
        Ok(Signal::SIGSYS) => "bad system call",
        Ok(Signal::SIGUSR1) => "user defined signal 1",
        Ok(Signal::SIGUSR2) => "user defined signal 2",
        Ok(Signal::SIGXCPU) => "CPU time limit exceeded",
        Ok(Signal::SIGXFSZ) => "file size limit exceeded",
        _ => return format!("signal {sig}"),
    };
    text.to_owned()
}

/// Whether the process was killed with `SIGKILL`.
/// Whether the runtime died of SIGKILL: directly, or inside a sandbox whose helper reports a
/// signal death as exit code 128 + signal.
pub(crate) fn killed_by_sigkill(status: ExitStatus) -> bool {
    let sigkill = Signal::SIGKILL as i32;
    status.signal() == Some(sigkill) || status.code() == Some(128 + sigkill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_descriptions_follow_lambda() {
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(0)), "exit status 0");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal: killed");
        assert_eq!(
            describe_exit(ExitStatus::from_raw(11)),
            "signal: segmentation fault"
        );
        assert!(killed_by_sigkill(ExitStatus::from_raw(9)));
        assert!(!killed_by_sigkill(ExitStatus::from_raw(15)));
        assert_eq!(signal_text(64), "signal 64");
    }

    #[test]
    fn reads_memory_cpu_and_children_from_a_proc_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for (pid, hwm, children) in [(10, 100, "11 12"), (11, 50, ""), (12, 25, "13")] {
            let d = p.join(pid.to_string());
            std::fs::create_dir_all(d.join("task").join(pid.to_string())).unwrap();
            std::fs::write(
                d.join("status"),
                format!("Name:\tx\nVmPeak:\t999 kB\nVmHWM:\t{hwm} kB\nVmRSS:\t1 kB\n"),
            )
            .unwrap();
            std::fs::write(
                d.join("stat"),
                format!(
                    "{pid} (a (b) c) S 1 {pid} {pid} 0 -1 4194304 100 0 0 0 7 3 2 1 20 0 1 0 1 1 1"
                ),
            )
            .unwrap();
            std::fs::write(
                d.join("task").join(pid.to_string()).join("children"),
                children,
            )
            .unwrap();
        }
        // 13 is listed as a child but already gone.
        assert_eq!(tree_pids(p, 10), vec![10, 11, 12]);
        let total: u64 = tree_pids(p, 10)
            .into_iter()
            .filter_map(|pid| status_memory_bytes(p, pid).map(|m| m.0))
            .sum();
        assert_eq!(total, 175 * 1024);
        assert_eq!(status_memory_bytes(p, 11), Some((50 * 1024, 1024)));
        assert_eq!(stat_cpu_ticks(p, 12), Some(7 + 3 + 2 + 1));
        assert_eq!(stat_cpu_ticks(p, 99), None);
        assert!(tree_pids(p, 99).is_empty());
    }

    #[test]
    fn this_process_tree_has_memory_and_cpu() {
        let acct = ProcTreeAccounting::new(std::process::id());
        // Burn a little CPU so the counters move.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let (rss, cpu_ns) = acct.sample().expect("a live process has a resident set");
        assert!(rss > 0 && cpu_ns > 0, "{rss} {cpu_ns}");
        assert!(acct.last_peak_memory_bytes().unwrap() > 0);
    }

    #[test]
    fn bounded_directory_walk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::write(dir.path().join("g"), vec![1u8; 64 * 1024]).unwrap();
        let all = dir_usage_bytes(dir.path(), 100).unwrap();
        assert!(all >= 128 * 1024, "{all}");
        // The walk stops after max_entries entries: a lower bound, never more.
        assert!(dir_usage_bytes(dir.path(), 1).unwrap() <= all);
        assert_eq!(dir_usage_bytes(&dir.path().join("missing"), 100), None);
        let (used, size) = fs_usage_bytes(dir.path()).unwrap();
        assert!(size > 0 && used <= size);
    }

    #[test]
    fn refuses_to_signal_special_groups() {
        assert!(signal_group(0, Signal::SIGTERM).is_err());
        assert!(signal_group(1, Signal::SIGTERM).is_err());
    }
}
