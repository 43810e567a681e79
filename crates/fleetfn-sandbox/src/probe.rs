//! What isolation this host allows, decided once at agent start and logged as one line.

use std::fmt;
use std::path::Path;

use crate::cgroups::CgroupLayout;
use crate::host::Host;
use crate::spec::{DEFAULT_CGROUP_ROOT, Namespaces, SandboxSpec};

/// The isolation in force on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isolation {
    /// The agent runs as root, so the helper can build sandboxes and drop to per-env uids.
    pub root: bool,
    /// Usable cgroup layout (only when root and at least one controller is available).
    pub cgroups: Option<CgroupLayout>,
    /// Namespaces a child process could unshare (none when not root).
    pub namespaces: Namespaces,
}

impl Isolation {
    /// Whether environments are started through the helper (`fleetfn jail`). True when root:
    /// even without cgroups or namespaces the helper still drops to the environment's uid.
    pub fn use_helper(&self) -> bool {
        self.root
    }

    /// Whether the agent may spawn runtimes directly, as its own user and without limits
    /// (only when it is not root: a root agent must never run function code as root).
    pub fn plain_command_allowed(&self) -> bool {
        !self.root
    }

    /// Restricts `spec` to what the host allows: unavailable namespaces are turned off and the
    /// cgroup is dropped when cgroups are unusable. Without a mount namespace there is no new
    /// root, so the caller must then give host paths in `argv[0]` and `cwd`.
    pub fn fit(&self, spec: &mut SandboxSpec) {
        spec.namespaces = spec.namespaces.intersect(self.namespaces);
        if self.cgroups.is_none() {
            spec.cgroup = None;
        }
    }
}

impl fmt::Display for Isolation {
    /// `sandbox: cgroup v1 (memory, cpu, cpuacct, pids), namespaces mount+pid+ipc+uts, uid drop`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.root {
            return f.write_str(
                "sandbox: none (not root): environments run as the agent's user without limits",
            );
        }
        f.write_str("sandbox: ")?;
        match &self.cgroups {
            Some(layout) => write!(f, "{layout}")?,
            None => f.write_str("no cgroups (environments run without resource limits)")?,
        }
        write!(f, ", namespaces {}, uid drop", self.namespaces)
    }
}

/// Probes the host with the cgroup root at `/sys/fs/cgroup`.
pub fn probe(host: &dyn Host) -> Isolation {
    probe_with_root(host, Path::new(DEFAULT_CGROUP_ROOT))
}

/// Probes the host: effective uid, the cgroup layout under `cgroup_root`, and which namespaces
/// a throwaway child can unshare (each tried on its own). Safe to call from the agent.
pub fn probe_with_root(host: &dyn Host, cgroup_root: &Path) -> Isolation {
    if host.euid() != 0 {
        return Isolation {
            root: false,
            cgroups: None,
            namespaces: Namespaces::none(),
        };
    }
    let cgroups = CgroupLayout::detect_with(cgroup_root, &|p| host.exists(p), &|p| {
        host.read_to_string(p)
    })
    .filter(|layout| !layout.controllers().is_empty());
    let none = Namespaces::none();
    let works = |ns: Namespaces| host.try_unshare(ns).is_ok();
    let namespaces = Namespaces {
        mount: works(Namespaces {
            mount: true,
            ..none
        }),
        pid: works(Namespaces { pid: true, ..none }),
        ipc: works(Namespaces { ipc: true, ..none }),
        uts: works(Namespaces { uts: true, ..none }),
    };
    Isolation {
        root: true,
        cgroups,
        namespaces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::RecordingHost;
    use crate::spec::CgroupSpec;
    use crate::spec::tests::sample;

    fn hybrid_v1(host: RecordingHost) -> RecordingHost {
        host.file("/sys/fs/cgroup/memory/memory.limit_in_bytes", "")
            .file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "")
            .file("/sys/fs/cgroup/cpuacct/cpuacct.usage", "")
            .file("/sys/fs/cgroup/pids/cgroup.procs", "")
            .file("/sys/fs/cgroup/unified/cgroup.controllers", "")
    }

    #[test]
    fn not_root() {
        let iso = probe(&hybrid_v1(RecordingHost::with_euid(1000)));
        assert_eq!(
            iso.to_string(),
            "sandbox: none (not root): environments run as the agent's user without limits"
        );
        assert!(iso.plain_command_allowed());
        assert!(!iso.use_helper());
    }

    #[test]
    fn root_on_hybrid_v1() {
        let iso = probe(&hybrid_v1(RecordingHost::root()));
        assert_eq!(
            iso.to_string(),
            "sandbox: cgroup v1 (memory, cpu, cpuacct, pids), namespaces mount+pid+ipc+uts, uid drop"
        );
        assert!(iso.use_helper());
        assert!(!iso.plain_command_allowed());
    }

    #[test]
    fn root_on_v2_without_pid_namespaces() {
        let mut host = RecordingHost::root().file(
            "/sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory pids\n",
        );
        host.unshareable = Namespaces {
            pid: false,
            ..Namespaces::all()
        };
        let iso = probe(&host);
        assert_eq!(
            iso.to_string(),
            "sandbox: cgroup v2 (cpu, memory, pids), namespaces mount+ipc+uts, uid drop"
        );
    }

    #[test]
    fn root_without_cgroups_or_namespaces() {
        let mut host = RecordingHost::root().file("/sys/fs/cgroup/cgroup.controllers", "");
        host.unshareable = Namespaces::none();
        let iso = probe(&host);
        assert_eq!(
            iso.to_string(),
            "sandbox: no cgroups (environments run without resource limits), namespaces none, uid drop"
        );
        let mut spec = sample();
        spec.cgroup = Some(CgroupSpec::new("e1"));
        iso.fit(&mut spec);
        assert_eq!(spec.namespaces, Namespaces::none());
        assert_eq!(spec.cgroup, None);
    }
}
