//! `SandboxSpec`: everything the helper needs to build one execution environment, passed to it as
//! JSON (a file or stdin). Validation happens here, before any privileged step runs.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::{CgroupLimits, check_name};

/// Default cgroup filesystem root.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Default name of the agent's parent cgroup (its "slice"), relative to the cgroup root.
pub const DEFAULT_SLICE: &str = "fleetfn";
/// Host hostname inside the UTS namespace.
pub const SANDBOX_HOSTNAME: &str = "fleetfn-env";
/// Where the code directory appears inside the sandbox.
pub const TASK_DIR: &str = "/var/task";
/// Host directories bound read-only into the new root (those that exist; host symlinks such as
/// `/bin -> usr/bin` are recreated as symlinks).
pub const SYSTEM_DIRS: [&str; 6] = ["/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc"];
/// Where [`SandboxSpec::opt_dir`] (the function's merged layers) appears inside the sandbox.
pub const OPT_DIR: &str = "/opt";
/// Sandbox paths an `extra_ro_binds` target may not be at or under (plus [`OPT_DIR`] when
/// `opt_dir` is set). Runtime trees go elsewhere, e.g. under `/var/runtime`.
const RESERVED: [&str; 10] = [
    "/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc", "/proc", "/dev", "/tmp", TASK_DIR,
];

/// One execution environment: the runtime's process tree and how to confine it.
///
/// Paths named "host" are resolved before `pivot_root`; everything else is a path inside the
/// sandbox. When `namespaces.mount` is false there is no new root: `argv[0]` and `cwd` are then
/// host paths and `code_dir`, `extra_ro_binds`, `tmp_size_mb` and `rootfs_dir` are unused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Program and arguments; `argv[0]` is an absolute path inside the sandbox (no `PATH` lookup).
    pub argv: Vec<String>,
    /// The complete environment of the runtime: nothing is inherited from the agent.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox, e.g. `/var/task`.
    pub cwd: PathBuf,
    /// Host directory with the function code, bound read-only at `/var/task`.
    pub code_dir: PathBuf,
    /// `(host path, sandbox path)` pairs bound read-only (runtime trees). Targets must not be at
    /// or under `/usr`, `/bin`, `/lib`, `/lib64`, `/sbin`, `/etc`, `/proc`, `/dev`, `/tmp` or
    /// `/var/task`, nor under `/opt` when `opt_dir` is set (`/var/runtime/...` is fine).
    #[serde(default)]
    pub extra_ro_binds: Vec<(PathBuf, PathBuf)>,
    /// Size of the environment's own `/tmp` tmpfs, in MiB (charged to its memory cgroup).
    pub tmp_size_mb: u64,
    /// Unprivileged user the runtime runs as (never 0).
    pub uid: u32,
    /// Unprivileged group the runtime runs as (never 0); supplementary groups are cleared.
    pub gid: u32,
    /// Existing, empty, per-environment host directory that becomes the new root (a tmpfs is
    /// mounted on it inside the private mount namespace, so nothing is written to the host).
    pub rootfs_dir: PathBuf,
    /// Namespaces to unshare; all by default.
    #[serde(default = "Namespaces::all")]
    pub namespaces: Namespaces,
    /// Cgroup the helper creates (if needed), limits and joins before anything else.
    #[serde(default)]
    pub cgroup: Option<CgroupSpec>,
    /// Set `PR_SET_NO_NEW_PRIVS` before exec (default true).
    #[serde(default = "yes")]
    pub no_new_privs: bool,
    /// Resource limits set before exec.
    #[serde(default)]
    pub rlimits: Rlimits,
    /// Network namespace to join (a path naming it, e.g. `/proc/<agent>/fd/<n>`); `None`
    /// stays in the helper's.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// Install the default system call filter ([`crate::seccomp`]) right before exec
    /// (default true).
    #[serde(default = "yes")]
    pub seccomp: bool,
    /// Host file bound read-only on `/etc/resolv.conf` (the environment's resolvers).
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
    /// Host directory bound read-only at `/opt` (the function's layers, extracted in order).
    #[serde(default)]
    pub opt_dir: Option<PathBuf>,
    /// Host file bound read-only on `/etc/hosts` (e.g. naming `sandbox.localdomain`).
    #[serde(default)]
    pub hosts_file: Option<PathBuf>,
    /// External extensions. When non-empty the helper's child does not exec `argv` directly: it
    /// stays as a small init ([`crate::init`]) that starts these first, starts `argv` only once
    /// the gate byte arrives on stdin, and ends the sandbox when an extension exits.
    #[serde(default)]
    pub extensions: Vec<ExtensionProcess>,
    /// The extensions' own output channel: when non-empty (one per extension), extension `i`'s
    /// stdout and stderr are the helper's inherited descriptor `extension_output[i]` (the write
    /// end of a pipe the agent reads, passed with [`crate::init::pass_extension_outputs`])
    /// instead of the helper's stdout and stderr, so the agent can tell their lines from the
    /// runtime's. The runtime never gets these descriptors.
    #[serde(default)]
    pub extension_output: Vec<i32>,
}

/// One external extension: an executable the sandbox's init starts before the runtime, with
/// the runtime's environment, working directory and uid, stdin `/dev/null`, stdout and stderr
/// inherited, and no arguments besides `argv[0]` = `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionProcess {
    /// The extension's name (its file name in `/opt/extensions`), used in messages.
    pub name: String,
    /// Absolute path of the executable inside the sandbox, e.g. `/opt/extensions/<name>`.
    pub path: PathBuf,
}

fn yes() -> bool {
    true
}

/// Which namespaces to unshare (or, in [`crate::Isolation`], which ones the host allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    /// Private mount namespace, new root, read-only code.
    pub mount: bool,
    /// Private pid namespace: the runtime is pid 1 and sees only its own processes.
    pub pid: bool,
    /// Private System V IPC / POSIX message queues.
    pub ipc: bool,
    /// Private hostname (`fleetfn-env`).
    pub uts: bool,
}

impl Namespaces {
    /// All four namespaces.
    pub const fn all() -> Self {
        Self {
            mount: true,
            pid: true,
            ipc: true,
            uts: true,
        }
    }

    /// No namespaces.
    pub const fn none() -> Self {
        Self {
            mount: false,
            pid: false,
            ipc: false,
            uts: false,
        }
    }

    /// True when no namespace is selected.
    pub fn is_empty(&self) -> bool {
        *self == Self::none()
    }

    /// Keeps only the namespaces also present in `other`.
    pub fn intersect(self, other: Self) -> Self {
        Self {
            mount: self.mount && other.mount,
            pid: self.pid && other.pid,
            ipc: self.ipc && other.ipc,
            uts: self.uts && other.uts,
        }
    }

    pub(crate) fn clone_flags(&self) -> nix::sched::CloneFlags {
        use nix::sched::CloneFlags;
        let mut flags = CloneFlags::empty();
        flags.set(CloneFlags::CLONE_NEWNS, self.mount);
        flags.set(CloneFlags::CLONE_NEWPID, self.pid);
        flags.set(CloneFlags::CLONE_NEWIPC, self.ipc);
        flags.set(CloneFlags::CLONE_NEWUTS, self.uts);
        flags
    }
}

impl std::fmt::Display for Namespaces {
    /// `mount+pid+ipc+uts`, a subset of it, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [
            (self.mount, "mount"),
            (self.pid, "pid"),
            (self.ipc, "ipc"),
            (self.uts, "uts"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join("+"))
        }
    }
}

/// The environment's cgroup: where it lives and its limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupSpec {
    /// Name of the environment's cgroup, relative to the agent's slice (e.g. `env-3f2a`).
    pub name: String,
    /// Memory limit in bytes (swap is disabled for the cgroup where the kernel allows).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU time allowed per period, in microseconds (`None` = unlimited).
    #[serde(default)]
    pub cpu_quota_us: Option<u64>,
    /// CFS period in microseconds (default 100 000).
    #[serde(default)]
    pub cpu_period_us: Option<u64>,
    /// Maximum number of tasks (`None` = unlimited).
    #[serde(default)]
    pub pids_max: Option<u64>,
    /// Cgroup filesystem root (default `/sys/fs/cgroup`).
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// The agent's slice, relative to `root` (default `fleetfn`).
    #[serde(default = "default_slice")]
    pub slice: String,
}

fn default_root() -> PathBuf {
    PathBuf::from(DEFAULT_CGROUP_ROOT)
}

fn default_slice() -> String {
    DEFAULT_SLICE.to_owned()
}

impl CgroupSpec {
    /// A spec in the default root and slice with no limits.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            memory_bytes: None,
            cpu_quota_us: None,
            cpu_period_us: None,
            pids_max: None,
            root: default_root(),
            slice: default_slice(),
        }
    }

    /// The limits part of the spec.
    pub fn limits(&self) -> CgroupLimits {
        CgroupLimits {
            memory_bytes: self.memory_bytes,
            cpu_quota_us: self.cpu_quota_us,
            cpu_period_us: self.cpu_period_us,
            pids_max: self.pids_max,
        }
    }
}

/// Resource limits (soft = hard) applied before exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rlimits {
    /// `RLIMIT_NOFILE`: open files (Lambda uses 1024).
    pub nofile: u64,
    /// `RLIMIT_NPROC`: processes of the environment's uid, host-wide (`None` = unchanged).
    pub nproc: Option<u64>,
    /// `RLIMIT_CORE` in bytes (default 0: no core dumps).
    pub core: Option<u64>,
}

impl Default for Rlimits {
    fn default() -> Self {
        Self {
            nofile: 1024,
            nproc: None,
            core: Some(0),
        }
    }
}

/// A spec that cannot be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SpecError(pub String);

fn invalid(msg: impl Into<String>) -> SpecError {
    SpecError(msg.into())
}

/// `path` is absolute and has no `.`/`..` components.
fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

fn no_nul(what: &str, s: &str) -> Result<(), SpecError> {
    if s.contains('\0') {
        Err(invalid(format!("{what} contains a NUL byte")))
    } else {
        Ok(())
    }
}

/// Checks a cgroup or slice name ([`crate::cgroups::check_name`]).
fn check_cgroup_name(what: &str, name: &str) -> Result<(), SpecError> {
    check_name(what, name).map_err(SpecError)
}

/// An extension's name is a file name (no `/`, no control characters, not `.`/`..`) and its
/// path is clean and absolute.
fn check_extension(ext: &ExtensionProcess) -> Result<(), SpecError> {
    let name = &ext.name;
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "extension name {name:?} must be a file name (no '/' or control characters)"
        )));
    }
    if !is_clean_absolute(&ext.path) {
        return Err(invalid(format!(
            "extension {name} path {} must be a clean absolute path",
            ext.path.display()
        )));
    }
    no_nul("extension path", &ext.path.to_string_lossy())
}

impl SandboxSpec {
    /// Reads a spec from JSON.
    pub fn from_json(json: &str) -> Result<Self, SpecError> {
        serde_json::from_str(json).map_err(|e| invalid(format!("invalid spec JSON: {e}")))
    }

    /// Writes the spec as JSON (what `fleetfn jail` reads from `--spec-file` or stdin).
    pub fn to_json(&self) -> Result<String, SpecError> {
        serde_json::to_string(self).map_err(|e| invalid(format!("cannot encode spec: {e}")))
    }

    /// Checks everything that can be checked without touching the host.
    pub fn validate(&self) -> Result<(), SpecError> {
        let Some(program) = self.argv.first() else {
            return Err(invalid("argv is empty"));
        };
        if !Path::new(program).is_absolute() {
            return Err(invalid(format!(
                "argv[0] {program:?} must be an absolute path"
            )));
        }
        for arg in &self.argv {
            no_nul("argv", arg)?;
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') {
                return Err(invalid(format!(
                    "env name {key:?} is empty or contains '='"
                )));
            }
            no_nul("env", key)?;
            no_nul("env", value)?;
        }
        for (what, path) in [
            ("cwd", &self.cwd),
            ("code_dir", &self.code_dir),
            ("rootfs_dir", &self.rootfs_dir),
        ] {
            if !is_clean_absolute(path) {
                return Err(invalid(format!(
                    "{what} {} must be a clean absolute path",
                    path.display()
                )));
            }
        }
        if self.rootfs_dir == Path::new("/") {
            return Err(invalid("rootfs_dir must not be /"));
        }
        for (what, path) in [
            ("netns", &self.netns),
            ("resolv_conf", &self.resolv_conf),
            ("opt_dir", &self.opt_dir),
            ("hosts_file", &self.hosts_file),
        ] {
            if path.as_ref().is_some_and(|p| !is_clean_absolute(p)) {
                return Err(invalid(format!("{what} must be a clean absolute path")));
            }
        }
        for (host, target) in &self.extra_ro_binds {
            if !is_clean_absolute(host) || !is_clean_absolute(target) {
                return Err(invalid(format!(
                    "bind {} -> {}: both paths must be clean and absolute",
                    host.display(),
                    target.display()
                )));
            }
            let opt_reserved = self.opt_dir.is_some() && target.starts_with(OPT_DIR);
            if target == Path::new("/")
                || opt_reserved
                || RESERVED.iter().any(|r| target.starts_with(r))
            {
                return Err(invalid(format!(
                    "bind target {} is reserved",
                    target.display()
                )));
            }
        }
        for ext in &self.extensions {
            check_extension(ext)?;
        }
        if !self.extension_output.is_empty() {
            if self.extension_output.len() != self.extensions.len() {
                return Err(invalid(format!(
                    "extension_output has {} descriptors for {} extensions (one each)",
                    self.extension_output.len(),
                    self.extensions.len()
                )));
            }
            let distinct: std::collections::BTreeSet<_> = self.extension_output.iter().collect();
            if distinct.len() != self.extension_output.len()
                || self.extension_output.iter().any(|fd| *fd < 3)
            {
                return Err(invalid(
                    "extension_output descriptors must be distinct and above stderr (2)",
                ));
            }
        }
        if self.tmp_size_mb == 0 {
            return Err(invalid("tmp_size_mb must be positive"));
        }
        if self.uid == 0 || self.gid == 0 {
            return Err(invalid("uid and gid must not be 0"));
        }
        if let Some(cgroup) = &self.cgroup {
            check_cgroup_name("cgroup name", &cgroup.name)?;
            check_cgroup_name("cgroup slice", &cgroup.slice)?;
            if cgroup.cpu_period_us == Some(0) || cgroup.cpu_quota_us == Some(0) {
                return Err(invalid("cpu quota and period must be positive"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> SandboxSpec {
        SandboxSpec {
            argv: vec!["/var/task/bootstrap".into()],
            env: vec![("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:9001".into())],
            cwd: "/var/task".into(),
            code_dir: "/srv/fleetfn/code/abc".into(),
            extra_ro_binds: vec![("/opt/fleetfn/python3.12".into(), "/var/lang".into())],
            tmp_size_mb: 512,
            uid: 10_001,
            gid: 10_001,
            rootfs_dir: "/srv/fleetfn/envs/e1/root".into(),
            namespaces: Namespaces::all(),
            cgroup: None,
            no_new_privs: true,
            rlimits: Rlimits::default(),
            netns: None,
            seccomp: true,
            resolv_conf: None,
            opt_dir: None,
            hosts_file: None,
            extensions: Vec::new(),
            extension_output: Vec::new(),
        }
    }

    #[test]
    fn minimal_json_gets_defaults() {
        let spec = SandboxSpec::from_json(
            r#"{"argv":["/var/task/bootstrap"],"cwd":"/var/task","code_dir":"/c","tmp_size_mb":16,
                "uid":10000,"gid":10000,"rootfs_dir":"/r","cgroup":{"name":"e1","memory_bytes":1024}}"#,
        )
        .unwrap();
        assert_eq!(spec.namespaces, Namespaces::all());
        assert!(spec.no_new_privs);
        assert!(spec.seccomp, "the syscall filter is on unless turned off");
        assert_eq!(spec.netns, None);
        assert_eq!((spec.opt_dir, spec.hosts_file), (None, None));
        assert!(spec.extensions.is_empty());
        assert_eq!(spec.rlimits.nofile, 1024);
        let cgroup = spec.cgroup.unwrap();
        assert_eq!(cgroup.root, Path::new("/sys/fs/cgroup"));
        assert_eq!(cgroup.slice, "fleetfn");
        assert_eq!(cgroup.limits().memory_bytes, Some(1024));
    }

    #[test]
    fn round_trips_and_rejects_unknown_fields() {
        let mut spec = sample();
        spec.opt_dir = Some("/srv/fleetfn/layers/l1".into());
        spec.hosts_file = Some("/srv/fleetfn/envs/e1/hosts".into());
        spec.extensions = vec![ExtensionProcess {
            name: "telemetry".into(),
            path: "/opt/extensions/telemetry".into(),
        }];
        let json = spec.to_json().unwrap();
        assert_eq!(SandboxSpec::from_json(&json).unwrap(), spec);
        let err = SandboxSpec::from_json(r#"{"argv":[],"bogus":1}"#).unwrap_err();
        assert!(err.0.contains("bogus"), "{err}");
    }

    fn ext(name: &str, path: &str) -> ExtensionProcess {
        ExtensionProcess {
            name: name.into(),
            path: path.into(),
        }
    }

    #[test]
    fn opt_is_reserved_only_with_an_opt_dir_and_var_runtime_is_allowed() {
        let mut spec = sample();
        spec.extra_ro_binds = vec![
            ("/x".into(), "/opt/fleetfn/r0".into()),
            ("/y".into(), "/var/runtime/r1".into()),
        ];
        assert_eq!(spec.validate(), Ok(()));
        spec.opt_dir = Some("/srv/layers".into());
        assert!(spec.validate().unwrap_err().0.contains("/opt/fleetfn/r0"));
        spec.extra_ro_binds.remove(0);
        spec.extensions = vec![ext("my-ext.sh", "/opt/extensions/my-ext.sh")];
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn validation() {
        assert_eq!(sample().validate(), Ok(()));
        type Case = (fn(&mut SandboxSpec), &'static str);
        let cases: Vec<Case> = vec![
            (|s| s.argv.clear(), "argv is empty"),
            (|s| s.argv[0] = "bootstrap".into(), "absolute"),
            (|s| s.env.push(("A=B".into(), "x".into())), "contains '='"),
            (|s| s.env.push(("A".into(), "x\0".into())), "NUL"),
            (|s| s.cwd = "var/task".into(), "cwd"),
            (|s| s.rootfs_dir = "/srv/../etc".into(), "rootfs_dir"),
            (
                |s| s.extra_ro_binds.push(("/x".into(), "/usr/local/x".into())),
                "reserved",
            ),
            (
                |s| s.extra_ro_binds.push(("/x".into(), "/var/task/lib".into())),
                "reserved",
            ),
            (
                |s| s.extra_ro_binds.push(("/x".into(), "/".into())),
                "reserved",
            ),
            (|s| s.tmp_size_mb = 0, "tmp_size_mb"),
            (|s| s.netns = Some("proc/1/ns/net".into()), "netns"),
            (|s| s.resolv_conf = Some("/x/../etc".into()), "resolv_conf"),
            (|s| s.opt_dir = Some("layers".into()), "opt_dir"),
            (|s| s.hosts_file = Some("/a/../hosts".into()), "hosts_file"),
            (
                |s| {
                    s.opt_dir = Some("/layers".into());
                    s.extra_ro_binds
                        .push(("/x".into(), "/opt/fleetfn/r0".into()));
                },
                "reserved",
            ),
            (
                |s| s.extensions.push(ext("a/b", "/opt/extensions/a")),
                "file name",
            ),
            (|s| s.extensions.push(ext("..", "/opt/x")), "file name"),
            (|s| s.extensions.push(ext("a\nb", "/opt/x")), "file name"),
            (|s| s.extensions.push(ext("", "/opt/x")), "file name"),
            (
                |s| s.extensions.push(ext("a", "extensions/a")),
                "clean absolute",
            ),
            (
                |s| s.extensions.push(ext("a", "/opt/extensions/../a")),
                "clean absolute",
            ),
            (|s| s.extension_output = vec![5], "one each"),
            (
                |s| {
                    s.extensions.push(ext("a", "/opt/extensions/a"));
                    s.extension_output = vec![2];
                },
                "above stderr",
            ),
            (
                |s| {
                    s.extensions.push(ext("a", "/opt/extensions/a"));
                    s.extensions.push(ext("b", "/opt/extensions/b"));
                    s.extension_output = vec![7, 7];
                },
                "distinct",
            ),
            (|s| s.uid = 0, "uid"),
            (
                |s| s.cgroup = Some(CgroupSpec::new("../escape")),
                "relative",
            ),
            (|s| s.cgroup = Some(CgroupSpec::new("/abs")), "relative"),
        ];
        for (mutate, needle) in cases {
            let mut spec = sample();
            mutate(&mut spec);
            let err = spec.validate().unwrap_err();
            assert!(err.0.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn namespaces_display_and_flags() {
        assert_eq!(Namespaces::all().to_string(), "mount+pid+ipc+uts");
        assert_eq!(Namespaces::none().to_string(), "none");
        let some = Namespaces {
            mount: true,
            pid: false,
            ipc: true,
            uts: false,
        };
        assert_eq!(some.to_string(), "mount+ipc");
        use nix::sched::CloneFlags;
        assert_eq!(
            some.clone_flags(),
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC
        );
        assert_eq!(Namespaces::all().intersect(some), some);
    }
}
