//! Cgroup management for execution environments, v1 and v2, on an injectable cgroupfs root.
//!
//! Agents share one parent cgroup (a "slice", `fleetfn` by default) under every hierarchy
//! they use; each agent's instance slice is a child cgroup there ([`Cgroups::child`]) and in
//! turn the slice of its environments' cgroups. This module creates them, writes limits, moves
//! processes (and back, [`Membership`]), reads usage, kills, removes, and sweeps what holds no
//! process any more ([`Cgroups::sweep`]). It only touches files under the root
//! it was given, so tests point it at fixture directories. It never forks and keeps no state
//! besides paths, so both the agent (multithreaded) and the helper may use it.

mod v1;
mod v2;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Checks a cgroup or slice name: relative, `/`-separated normal components, no NUL byte. The
/// error is the message (the spec's validation and the manager wrap it in their own errors).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    let path = Path::new(name);
    if name.is_empty()
        || path.is_absolute()
        || !path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "{what} {name:?} must be a relative path without `.` or `..`"
        ));
    }
    if name.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    Ok(())
}

/// CFS period used when a limit gives a quota without a period, in microseconds.
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

/// How long [`Cgroups::kill_all`] and [`Cgroups::remove`] keep retrying, in rounds of 10 ms.
const MAX_ROUNDS: u32 = 300;
const ROUND: Duration = Duration::from_millis(10);

/// A resource controller fleetfn uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// Memory limit, usage, peak and OOM kills.
    Memory,
    /// CFS quota.
    Cpu,
    /// CPU usage accounting (v1 only; v2 has `cpu.stat` in every cgroup).
    Cpuacct,
    /// Task limit.
    Pids,
}

impl Controller {
    /// The controller's kernel name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cpu => "cpu",
            Self::Cpuacct => "cpuacct",
            Self::Pids => "pids",
        }
    }

    const V1: [Self; 4] = [Self::Memory, Self::Cpu, Self::Cpuacct, Self::Pids];
    const V2: [Self; 3] = [Self::Cpu, Self::Memory, Self::Pids];

    /// A file that exists only at the root of a mounted v1 hierarchy of this controller.
    fn v1_marker(self) -> &'static str {
        match self {
            Self::Memory => "memory.limit_in_bytes",
            Self::Cpu => "cpu.cfs_quota_us",
            Self::Cpuacct => "cpuacct.usage",
            Self::Pids => "cgroup.procs",
        }
    }
}

/// Which cgroup version is mounted at the root and which of fleetfn's controllers it offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// One hierarchy per controller at `root/<controller>` (co-mounted ones via symlinks).
    V1 {
        root: PathBuf,
        controllers: Vec<Controller>,
    },
    /// The unified hierarchy at `root`; `controllers` come from `root/cgroup.controllers`.
    V2 {
        root: PathBuf,
        controllers: Vec<Controller>,
    },
}

impl CgroupLayout {
    /// Looks at `root` through `exists`/`read` (so the probe can go through a fake host).
    ///
    /// A v2 root has `cgroup.controllers`; a v1 (or hybrid) root has controller directories. A
    /// hybrid host's empty `unified` mount is ignored. `None` when neither is found.
    pub fn detect_with(
        root: &Path,
        exists: &dyn Fn(&Path) -> bool,
        read: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Option<Self> {
        let root = root.to_path_buf();
        let v2_file = root.join("cgroup.controllers");
        if exists(&v2_file) {
            let available = read(&v2_file).unwrap_or_default();
            let controllers: Vec<Controller> = Controller::V2
                .into_iter()
                .filter(|c| available.split_whitespace().any(|name| name == c.name()))
                .collect();
            return Some(Self::V2 { root, controllers });
        }
        let controllers: Vec<Controller> = Controller::V1
            .into_iter()
            .filter(|c| exists(&root.join(c.name()).join(c.v1_marker())))
            .collect();
        (!controllers.is_empty()).then_some(Self::V1 { root, controllers })
    }

    /// [`Self::detect_with`] on the real filesystem.
    pub fn detect(root: &Path) -> Option<Self> {
        Self::detect_with(root, &|p| p.exists(), &|p| std::fs::read_to_string(p))
    }

    /// The cgroup filesystem root.
    pub fn root(&self) -> &Path {
        match self {
            Self::V1 { root, .. } | Self::V2 { root, .. } => root,
        }
    }

    /// The controllers fleetfn can use.
    pub fn controllers(&self) -> &[Controller] {
        match self {
            Self::V1 { controllers, .. } | Self::V2 { controllers, .. } => controllers,
        }
    }

    /// Whether `controller` is available.
    pub fn has(&self, controller: Controller) -> bool {
        self.controllers().contains(&controller)
    }

    /// Memory and CPU limits can both be enforced.
    pub fn can_limit(&self) -> bool {
        self.has(Controller::Memory) && self.has(Controller::Cpu)
    }

    /// 1 or 2.
    pub fn version(&self) -> u8 {
        match self {
            Self::V1 { .. } => 1,
            Self::V2 { .. } => 2,
        }
    }
}

impl fmt::Display for CgroupLayout {
    /// `cgroup v1 (memory, cpu, cpuacct, pids)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.controllers().iter().map(|c| c.name()).collect();
        write!(f, "cgroup v{} ({})", self.version(), names.join(", "))
    }
}

/// Limits of one environment. `None` means unlimited: [`Cgroups::set_limits`] always writes
/// every value, so calling it again replaces earlier limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// Memory limit in bytes; swap is limited to zero where the kernel offers the knob.
    pub memory_bytes: Option<u64>,
    /// CPU time per period in microseconds (vCPUs × period).
    pub cpu_quota_us: Option<u64>,
    /// CFS period in microseconds ([`DEFAULT_CPU_PERIOD_US`] when `None`).
    pub cpu_period_us: Option<u64>,
    /// Maximum number of tasks.
    pub pids_max: Option<u64>,
}

impl CgroupLimits {
    fn period(&self) -> u64 {
        self.cpu_period_us.unwrap_or(DEFAULT_CPU_PERIOD_US)
    }
}

/// Usage of one environment's cgroup. Counters of a missing controller read as 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Total CPU time consumed, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory charged now (including tmpfs pages of its `/tmp`), in bytes.
    pub memory_current_bytes: u64,
    /// Highest memory charge seen, in bytes (`None` on v2 kernels without `memory.peak`).
    pub memory_peak_bytes: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup.
    pub oom_kills: u64,
    /// Page cache on the inactive file list (reclaimable at no cost), in bytes; 0 when
    /// `memory.stat` is missing.
    pub memory_inactive_file_bytes: u64,
    /// CFS periods in which the cgroup used up its CPU quota and was throttled
    /// (`nr_throttled` of `cpu.stat`); 0 without a quota or without the `cpu` controller.
    pub cpu_throttled_periods: u64,
}

impl CgroupStats {
    /// Memory in use that the kernel cannot simply drop: the charge minus inactive page
    /// cache (what `docker stats` and the kubelet call the working set). Tmpfs pages stay in.
    pub fn memory_working_set_bytes(&self) -> u64 {
        self.memory_current_bytes
            .saturating_sub(self.memory_inactive_file_bytes)
    }
}

/// A cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No v1 controller directory and no v2 `cgroup.controllers` under the root.
    #[error("no cgroup hierarchy under {0}")]
    NotFound(PathBuf),
    /// A cgroup or slice name that would escape the slice.
    #[error("{0}")]
    Name(String),
    /// A file operation on cgroupfs failed.
    #[error("{op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    /// A cgroupfs file did not have the expected format.
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    /// Processes survived [`Cgroups::kill_all`]'s bounded retries.
    #[error("cgroup {0} still has processes after repeated SIGKILL")]
    StillPopulated(PathBuf),
}

impl CgroupError {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |error| Self::Io {
            op,
            path: path.to_path_buf(),
            error,
        }
    }
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(CgroupError::io("write", path))
}

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(CgroupError::io("read", path))
}

/// [`read_keyed`] for a file that may be missing (a controller not enabled there).
pub(crate) fn read_keyed_if_present(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    if path.exists() {
        read_keyed(path, key)
    } else {
        Ok(None)
    }
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let content = read(path)?;
    content.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content,
    })
}

/// The value of `key` in a flat-keyed file (`memory.events`, `cpu.stat`, `memory.oom_control`).
pub(crate) fn read_keyed(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    let content = read(path)?;
    for line in content.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            return match parts.next().and_then(|v| v.parse().ok()) {
                Some(v) => Ok(Some(v)),
                None => Err(CgroupError::Parse {
                    path: path.to_path_buf(),
                    content,
                }),
            };
        }
    }
    Ok(None)
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(CgroupError::io("mkdir", path)(e))
        }
        _ => Ok(()),
    }
}

/// Manager of the agent's slice and the environments' cgroups below it.
#[derive(Clone, Debug)]
pub struct Cgroups {
    layout: CgroupLayout,
    slice: PathBuf,
}

impl Cgroups {
    /// A manager for `slice` (relative, e.g. `fleetfn`) in `layout`. Creates nothing.
    pub fn new(layout: CgroupLayout, slice: &str) -> Result<Self, CgroupError> {
        check_name("cgroup slice", slice).map_err(CgroupError::Name)?;
        Ok(Self {
            layout,
            slice: PathBuf::from(slice),
        })
    }

    /// Detects the layout under `root` (normally `/sys/fs/cgroup`, a fixture dir in tests).
    pub fn detect(root: &Path, slice: &str) -> Result<Self, CgroupError> {
        let layout =
            CgroupLayout::detect(root).ok_or_else(|| CgroupError::NotFound(root.to_path_buf()))?;
        Self::new(layout, slice)
    }

    /// The detected layout.
    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// The slice, relative to the cgroup root (e.g. `fleetfn` or `fleetfn/i-0abc`).
    pub fn slice(&self) -> &Path {
        &self.slice
    }

    /// A manager for the cgroup `name` under this slice, used as a slice of its own (an
    /// instance slice holding environment cgroups). Creates nothing.
    pub fn child(&self, name: &str) -> Result<Self, CgroupError> {
        Self::check_name(name)?;
        Ok(Self {
            layout: self.layout.clone(),
            slice: self.slice.join(name),
        })
    }

    /// Directories of the hierarchies in use, deduplicated (co-mounted v1 controllers share
    /// one), each paired with the controllers it serves.
    fn hierarchies(&self) -> Vec<(PathBuf, Vec<Controller>)> {
        match &self.layout {
            CgroupLayout::V2 { root, controllers } => vec![(root.clone(), controllers.clone())],
            CgroupLayout::V1 { root, controllers } => {
                let mut out: Vec<(PathBuf, PathBuf, Vec<Controller>)> = Vec::new();
                for &c in controllers {
                    let dir = root.join(c.name());
                    let real = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
                    match out.iter_mut().find(|(_, r, _)| *r == real) {
                        Some((_, _, cs)) => cs.push(c),
                        None => out.push((dir, real, vec![c])),
                    }
                }
                out.into_iter().map(|(dir, _, cs)| (dir, cs)).collect()
            }
        }
    }

    fn check_name(name: &str) -> Result<(), CgroupError> {
        check_name("cgroup name", name).map_err(CgroupError::Name)
    }

    /// The slice directory in every hierarchy.
    pub fn slice_dirs(&self) -> Vec<PathBuf> {
        self.hierarchies()
            .into_iter()
            .map(|(dir, _)| dir.join(&self.slice))
            .collect()
    }

    /// The environment's directory in every hierarchy.
    pub fn env_dirs(&self, name: &str) -> Result<Vec<PathBuf>, CgroupError> {
        Self::check_name(name)?;
        Ok(self
            .slice_dirs()
            .into_iter()
            .map(|d| d.join(name))
            .collect())
    }

    /// The environment's directory holding `controller`'s files (`None` if unavailable; on v2
    /// always the single directory).
    pub fn controller_dir(
        &self,
        name: &str,
        controller: Controller,
    ) -> Result<Option<PathBuf>, CgroupError> {
        Self::check_name(name)?;
        Ok(match &self.layout {
            CgroupLayout::V2 { root, .. } => Some(root.join(&self.slice).join(name)),
            CgroupLayout::V1 { root, controllers } => controllers
                .contains(&controller)
                .then(|| root.join(controller.name()).join(&self.slice).join(name)),
        })
    }

    /// Creates the agent's slice (idempotent). On v2 it also enables `cpu`, `memory` and `pids`
    /// in `cgroup.subtree_control` of the root and of every level down to the slice, so those
    /// levels must hold no processes (true for the default `fleetfn` directly under the root).
    pub fn create_slice(&self) -> Result<(), CgroupError> {
        match &self.layout {
            CgroupLayout::V1 { .. } => {
                for dir in self.slice_dirs() {
                    std::fs::create_dir_all(&dir).map_err(CgroupError::io("mkdir", &dir))?;
                }
                Ok(())
            }
            CgroupLayout::V2 { root, controllers } => {
                v2::create_slice(root, &self.slice, controllers)
            }
        }
    }

    /// Creates the environment's cgroup (and the slice) if missing.
    pub fn create(&self, name: &str) -> Result<(), CgroupError> {
        self.create_slice()?;
        for dir in self.env_dirs(name)? {
            mkdir(&dir)?;
        }
        Ok(())
    }

    /// Writes all limits of the environment (legal once [`Self::create`] has run).
    pub fn set_limits(&self, name: &str, limits: &CgroupLimits) -> Result<(), CgroupError> {
        match &self.layout {
            CgroupLayout::V1 { .. } => {
                for c in Controller::V1 {
                    if let Some(dir) = self.controller_dir(name, c)? {
                        v1::set_limits(c, &dir, limits)?;
                    }
                }
                Ok(())
            }
            CgroupLayout::V2 { controllers, .. } => {
                let dir = self.env_dirs(name)?.remove(0);
                v2::set_limits(&dir, controllers, limits)
            }
        }
    }

    /// Moves process `pid` (all its threads) into the environment's cgroup in every hierarchy.
    pub fn add_process(&self, name: &str, pid: u32) -> Result<(), CgroupError> {
        for dir in self.env_dirs(name)? {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Pids in the environment's cgroup (union over hierarchies; empty if it does not exist).
    pub fn procs(&self, name: &str) -> Result<Vec<u32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in self.env_dirs(name)? {
            let path = dir.join("cgroup.procs");
            let content = match std::fs::read_to_string(&path) {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CgroupError::io("read", &path)(e)),
            };
            for line in content.lines().filter(|l| !l.trim().is_empty()) {
                let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
                    path: path.clone(),
                    content: content.clone(),
                })?;
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        Ok(pids)
    }

    /// Reads CPU, memory and OOM counters.
    pub fn stats(&self, name: &str) -> Result<CgroupStats, CgroupError> {
        match &self.layout {
            CgroupLayout::V1 { .. } => v1::stats(
                self.controller_dir(name, Controller::Cpuacct)?.as_deref(),
                self.controller_dir(name, Controller::Cpu)?.as_deref(),
                self.controller_dir(name, Controller::Memory)?.as_deref(),
            ),
            CgroupLayout::V2 { .. } => v2::stats(&self.env_dirs(name)?[0]),
        }
    }

    /// Kills every process in the environment's cgroup and waits (bounded) until it is empty.
    /// v2 uses `cgroup.kill` where present; otherwise every listed pid gets SIGKILL, repeatedly,
    /// so processes forked meanwhile are caught too.
    pub fn kill_all(&self, name: &str) -> Result<(), CgroupError> {
        let dirs = self.env_dirs(name)?;
        if let CgroupLayout::V2 { .. } = self.layout {
            let kill = dirs[0].join("cgroup.kill");
            if kill.exists() {
                write(&kill, "1")?;
            }
        }
        for _ in 0..MAX_ROUNDS {
            let pids = self.procs(name)?;
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                let Ok(pid) = i32::try_from(pid) else {
                    continue;
                };
                // ESRCH: already gone. Anything else is retried next round.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            sleep(ROUND);
        }
        Err(CgroupError::StillPopulated(dirs[0].clone()))
    }

    /// Kills everything in the environment's cgroup and removes it from every hierarchy.
    /// Removing a missing cgroup is not an error.
    pub fn remove(&self, name: &str) -> Result<(), CgroupError> {
        self.kill_all(name)?;
        for dir in self.env_dirs(name)? {
            rmdir_retrying(&dir)?;
        }
        Ok(())
    }

    /// Names of the environment cgroups currently under the slice (any hierarchy).
    pub fn list(&self) -> Result<Vec<String>, CgroupError> {
        let mut names = Vec::new();
        for dir in self.slice_dirs() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CgroupError::io("list", &dir)(e)),
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Pids in `name` and in every cgroup below it, in any hierarchy.
    pub fn subtree_procs(&self, name: &str) -> Result<Vec<u32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in self.env_dirs(name)? {
            collect_procs(&dir, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Removes every cgroup directly under the slice whose whole subtree holds no process (in
    /// any hierarchy), except those named in `keep` and those `owned` says a live owner holds
    /// (an instance slice another agent just created, before its first process joins): what
    /// stopped environments and killed agents left behind. Nothing is killed; a subtree that
    /// gains a process meanwhile fails to `rmdir` (`EBUSY`) and stays. Returns the names
    /// removed.
    pub fn sweep(&self, keep: &[&str], owned: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut removed = Vec::new();
        for name in self.list().unwrap_or_default() {
            if keep.contains(&name.as_str())
                || owned(&name)
                || !self.subtree_procs(&name).is_ok_and(|p| p.is_empty())
            {
                continue;
            }
            let gone = self
                .env_dirs(&name)
                .unwrap_or_default()
                .iter()
                .all(|dir| rmdir_tree(dir).is_ok());
            if gone {
                removed.push(name);
            }
        }
        removed
    }

    /// The cgroups a process is in, one directory per hierarchy in use, from the content of
    /// its `/proc/<pid>/cgroup`. Hierarchies it names no cgroup in are left out.
    pub fn membership(&self, proc_cgroup: &str) -> Membership {
        let entries: Vec<(Vec<&str>, &str)> = proc_cgroup
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ':');
                let _id = parts.next()?;
                let controllers = parts.next()?;
                let path = parts.next()?;
                Some((controllers.split(',').collect(), path))
            })
            .collect();
        let dirs = self
            .hierarchies()
            .into_iter()
            .filter_map(|(dir, controllers)| {
                let path = match &self.layout {
                    CgroupLayout::V2 { .. } => entries
                        .iter()
                        .find(|(cs, _)| cs.iter().all(|c| c.is_empty()))
                        .map(|(_, p)| *p),
                    CgroupLayout::V1 { .. } => {
                        let name = controllers.first()?.name();
                        entries
                            .iter()
                            .find(|(cs, _)| cs.contains(&name))
                            .map(|(_, p)| *p)
                    }
                }?;
                Some(dir.join(path.trim_start_matches('/')))
            })
            .collect();
        Membership { dirs }
    }

    /// The root cgroup of every hierarchy in use (somewhere a process can always go).
    pub fn root_membership(&self) -> Membership {
        Membership {
            dirs: self.hierarchies().into_iter().map(|(dir, _)| dir).collect(),
        }
    }

    /// Removes every environment under the slice, then the slice itself (not its ancestors).
    /// For agent shutdown, and at start-up to clear what a crashed agent left behind.
    pub fn remove_slice(&self) -> Result<(), CgroupError> {
        for name in self.list()? {
            self.remove(&name)?;
        }
        for dir in self.slice_dirs() {
            rmdir_retrying(&dir)?;
        }
        Ok(())
    }
}

/// Where a process was in each hierarchy ([`Cgroups::membership`]), to move it back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    dirs: Vec<PathBuf>,
}

impl Membership {
    /// The cgroup directories, one per hierarchy.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Moves process `pid` (all its threads) back into these cgroups.
    pub fn rejoin(&self, pid: u32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }
}

/// Adds the pids of `dir` and its descendants to `pids`; a missing directory adds nothing.
fn collect_procs(dir: &Path, pids: &mut Vec<u32>) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.procs");
    match std::fs::read_to_string(&path) {
        Ok(content) => {
            for line in content.lines().filter(|l| !l.trim().is_empty()) {
                pids.push(line.trim().parse().map_err(|_| CgroupError::Parse {
                    path: path.clone(),
                    content: content.clone(),
                })?);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(CgroupError::io("read", &path)(e)),
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::io("list", dir)(e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_procs(&entry.path(), pids)?;
        }
    }
    Ok(())
}

/// Removes a cgroup and its descendants, deepest first, one `rmdir` each (no retries).
fn rmdir_tree(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&entry.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CgroupError::io("rmdir", dir)(e)),
        _ => Ok(()),
    }
}

/// `rmdir`, retried while the kernel still reports the cgroup busy (dying tasks).
fn rmdir_retrying(dir: &Path) -> Result<(), CgroupError> {
    let mut rounds = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && rounds < MAX_ROUNDS => {
                rounds += 1;
                sleep(ROUND);
            }
            Err(e) => return Err(CgroupError::io("rmdir", dir)(e)),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::Path;

    /// Writes a fake cgroupfs file (youki's `set_fixture`).
    pub(crate) fn set_fixture(dir: &Path, file: &str, value: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), value).unwrap();
    }

    pub(crate) fn get(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    /// A v1 root with the given controllers mounted (marker files only).
    pub(crate) fn v1_root(dir: &Path, controllers: &[&str]) {
        for c in controllers {
            let marker = match *c {
                "memory" => "memory.limit_in_bytes",
                "cpu" => "cpu.cfs_quota_us",
                "cpuacct" => "cpuacct.usage",
                _ => "cgroup.procs",
            };
            set_fixture(&dir.join(c), marker, "");
        }
        // A hybrid host's empty unified mount must not turn this into v2.
        set_fixture(&dir.join("unified"), "cgroup.controllers", "");
    }

    /// A v2 root offering `controllers`.
    pub(crate) fn v2_root(dir: &Path, controllers: &str) {
        set_fixture(dir, "cgroup.controllers", controllers);
        set_fixture(dir, "cgroup.subtree_control", "");
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn detects_v1_hybrid_and_v2() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(CgroupLayout::detect(tmp.path()), None);
        v1_root(tmp.path(), &["memory", "cpu", "cpuacct", "pids"]);
        let layout = CgroupLayout::detect(tmp.path()).unwrap();
        assert_eq!(layout.to_string(), "cgroup v1 (memory, cpu, cpuacct, pids)");
        assert!(layout.can_limit());

        let tmp = tempfile::tempdir().unwrap();
        v2_root(tmp.path(), "cpuset cpu io memory hugetlb pids rdma misc\n");
        let layout = CgroupLayout::detect(tmp.path()).unwrap();
        assert_eq!(layout.to_string(), "cgroup v2 (cpu, memory, pids)");

        let tmp = tempfile::tempdir().unwrap();
        v2_root(tmp.path(), "");
        let layout = CgroupLayout::detect(tmp.path()).unwrap();
        assert_eq!(layout.to_string(), "cgroup v2 ()");
        assert!(!layout.can_limit());
    }

    #[test]
    fn rejects_escaping_names() {
        let tmp = tempfile::tempdir().unwrap();
        v2_root(tmp.path(), "cpu memory pids");
        assert!(Cgroups::detect(tmp.path(), "../x").is_err());
        assert!(Cgroups::detect(tmp.path(), "/x").is_err());
        let cg = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
        assert!(matches!(cg.create("a/../../b"), Err(CgroupError::Name(_))));
        assert!(matches!(cg.env_dirs(""), Err(CgroupError::Name(_))));
    }

    #[test]
    fn create_list_and_remove_leave_nothing() {
        for v2 in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            if v2 {
                v2_root(tmp.path(), "cpu memory pids");
            } else {
                v1_root(tmp.path(), &["memory", "cpu", "cpuacct", "pids"]);
            }
            let cg = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
            cg.create("e1").unwrap();
            cg.create("e1").unwrap();
            cg.create("e2").unwrap();
            for dir in cg.env_dirs("e1").unwrap() {
                assert!(dir.is_dir(), "{}", dir.display());
            }
            assert_eq!(cg.list().unwrap(), ["e1", "e2"]);
            assert_eq!(cg.procs("e1").unwrap(), Vec::<u32>::new());
            cg.remove("e1").unwrap();
            cg.remove("e1").unwrap();
            assert_eq!(cg.list().unwrap(), ["e2"]);
            if v2 {
                // The fixture's subtree_control file is not a cgroup; drop it before rmdir.
                std::fs::remove_file(tmp.path().join("fleetfn/cgroup.subtree_control")).unwrap();
            }
            cg.remove_slice().unwrap();
            for dir in cg.slice_dirs() {
                assert!(!dir.exists(), "{}", dir.display());
            }
        }
    }

    #[test]
    fn procs_unions_hierarchies() {
        let tmp = tempfile::tempdir().unwrap();
        v1_root(tmp.path(), &["memory", "pids"]);
        let cg = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
        set_fixture(
            &tmp.path().join("memory/fleetfn/e1"),
            "cgroup.procs",
            "10\n11\n",
        );
        set_fixture(
            &tmp.path().join("pids/fleetfn/e1"),
            "cgroup.procs",
            "11\n12\n",
        );
        assert_eq!(cg.procs("e1").unwrap(), [10, 11, 12]);
    }

    #[test]
    fn sweep_removes_process_free_subtrees_only() {
        let tmp = tempfile::tempdir().unwrap();
        v1_root(tmp.path(), &["memory", "cpu", "pids"]);
        let top = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
        // A live instance (its agent in a leaf), a dead one with an environment left, an
        // empty environment cgroup of the old flat layout, and our own (kept even if empty).
        let live = top.child("i-live").unwrap();
        live.create("agent").unwrap();
        set_fixture(
            &tmp.path().join("pids/fleetfn/i-live/agent"),
            "cgroup.procs",
            "77\n",
        );
        top.child("i-dead").unwrap().create("e-1").unwrap();
        top.create("e-flat").unwrap();
        top.child("i-self").unwrap().create_slice().unwrap();
        // Another agent's instance, created a moment ago: empty, but its owner is alive.
        top.child("i-fresh").unwrap().create_slice().unwrap();
        assert_eq!(top.subtree_procs("i-live").unwrap(), [77]);
        assert_eq!(top.subtree_procs("i-dead").unwrap(), Vec::<u32>::new());

        let mut removed = top.sweep(&["i-self"], &|name| name == "i-fresh");
        removed.sort();
        assert_eq!(removed, ["e-flat", "i-dead"]);
        assert_eq!(top.list().unwrap(), ["i-fresh", "i-live", "i-self"]);
        assert!(tmp.path().join("memory/fleetfn/i-live/agent").is_dir());
    }

    #[test]
    fn instance_slices_nest_environment_cgroups() {
        for v2 in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            if v2 {
                v2_root(tmp.path(), "cpu memory pids");
            } else {
                v1_root(tmp.path(), &["memory", "cpu", "cpuacct", "pids"]);
            }
            let top = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
            let inst = top.child("i-1").unwrap();
            assert_eq!(inst.slice(), Path::new("fleetfn/i-1"));
            assert!(matches!(top.child("../x"), Err(CgroupError::Name(_))));
            inst.create_slice().unwrap();
            top.set_limits(
                "i-1",
                &CgroupLimits {
                    memory_bytes: Some(1 << 30),
                    cpu_quota_us: Some(50_000),
                    ..CgroupLimits::default()
                },
            )
            .unwrap();
            inst.create("e-1").unwrap();
            let (cpu_dir, mem_dir) = if v2 {
                let d = tmp.path().join("fleetfn/i-1");
                (d.clone(), d)
            } else {
                (
                    tmp.path().join("cpu/fleetfn/i-1"),
                    tmp.path().join("memory/fleetfn/i-1"),
                )
            };
            if v2 {
                assert_eq!(get(&cpu_dir, "cpu.max"), "50000 100000");
                assert_eq!(get(&mem_dir, "memory.max"), "1073741824");
                // Controllers reach the environments: enabled at every level down to the
                // instance slice.
                assert_eq!(
                    get(&cpu_dir, "cgroup.subtree_control"),
                    "+cpu +memory +pids"
                );
            } else {
                assert_eq!(get(&cpu_dir, "cpu.cfs_quota_us"), "50000");
                assert_eq!(get(&mem_dir, "memory.limit_in_bytes"), "1073741824");
            }
            assert!(cpu_dir.join("e-1").is_dir());
            assert_eq!(inst.list().unwrap(), ["e-1"]);
            assert_eq!(top.list().unwrap(), ["i-1"]);
        }
    }

    #[test]
    fn membership_follows_proc_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        v1_root(tmp.path(), &["memory", "cpu", "cpuacct", "pids"]);
        let cg = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
        let proc_cgroup =
            "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/b45e\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let m = cg.membership(proc_cgroup);
        assert_eq!(
            m.dirs(),
            [
                tmp.path().join("memory/process_api/b45e"),
                tmp.path().join("cpu/"),
                tmp.path().join("cpuacct/"),
                tmp.path().join("pids/"),
            ]
        );
        std::fs::create_dir_all(tmp.path().join("memory/process_api/b45e")).unwrap();
        m.rejoin(42).unwrap();
        assert_eq!(
            get(&tmp.path().join("memory/process_api/b45e"), "cgroup.procs"),
            "42"
        );

        let tmp = tempfile::tempdir().unwrap();
        v2_root(tmp.path(), "cpu memory");
        let cg = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
        let m = cg.membership("0::/user.slice/session-1.scope\n");
        assert_eq!(m.dirs(), [tmp.path().join("user.slice/session-1.scope")]);
    }

    #[test]
    fn v1_comounted_controllers_are_one_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        set_fixture(&tmp.path().join("cpu,cpuacct"), "cpu.cfs_quota_us", "");
        set_fixture(&tmp.path().join("cpu,cpuacct"), "cpuacct.usage", "");
        std::os::unix::fs::symlink("cpu,cpuacct", tmp.path().join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", tmp.path().join("cpuacct")).unwrap();
        set_fixture(&tmp.path().join("memory"), "memory.limit_in_bytes", "");
        let cg = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
        assert_eq!(cg.slice_dirs().len(), 2);
        cg.create("e1").unwrap();
        cg.remove("e1").unwrap();
    }
}
