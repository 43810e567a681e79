//! The instance an agent runs: its type and size ([`InstanceShape`]) and, where cgroups are in
//! use, its own cgroup slice sized like it ([`InstanceSlice`]).
//!
//! Layout: `<top>/<instance-id>` (top is `fleetfn`) has CPU quota = `vcpus × cpu_scale` host
//! CPUs and memory limit = the instance's memory; the agent itself runs in the leaf
//! `<top>/<instance-id>/agent` (cgroup v2 allows processes only in leaves once controllers are
//! enabled), each environment in `<top>/<instance-id>/<env-id>`.

use fleetfn_sandbox::cgroups::DEFAULT_CPU_PERIOD_US;
use fleetfn_sandbox::{
    CgroupError, CgroupLayout, CgroupLimits, Cgroups, Lease, LeaseDir, Membership,
};
use parking_lot::Mutex;

use crate::sandbox::{CGROUP_LEASES, cgroup_owned};

/// The leaf of an instance slice the agent process runs in (never an environment id).
pub const AGENT_LEAF: &str = "agent";

/// Smallest CFS quota the kernel accepts, in microseconds.
const MIN_QUOTA_US: u64 = 1_000;

const MIB: u64 = 1024 * 1024;

/// An instance's type and size.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceShape {
    /// The instance type (`m7g.xlarge`, or `local`).
    pub instance_type: String,
    /// Its vCPUs.
    pub vcpus: u32,
    /// Its memory, MiB.
    pub memory_mib: u64,
    /// Host CPUs per vCPU (below 1 shrinks a vCPU to a share of a host CPU, for tests).
    pub cpu_scale: f64,
}

impl InstanceShape {
    /// This host as it is: type `local`, every host CPU, all host memory, scale 1.
    pub fn local() -> Self {
        Self {
            instance_type: "local".to_owned(),
            vcpus: host_cpus(),
            memory_mib: host_memory_mib().unwrap_or(0),
            cpu_scale: 1.0,
        }
    }

    /// The instance's CPU in host CPUs: `vcpus × cpu_scale`.
    pub fn host_cpus(&self) -> f64 {
        f64::from(self.vcpus) * self.cpu_scale
    }
}

/// Host CPUs this process may run on.
pub fn host_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// `MemTotal` of `/proc/meminfo`, MiB.
pub fn host_memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024)
}

/// CFS quota per [`DEFAULT_CPU_PERIOD_US`] for `host_cpus` CPUs.
pub(crate) fn quota_us(host_cpus: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let q = (host_cpus.max(0.0) * DEFAULT_CPU_PERIOD_US as f64).round() as u64;
    q.max(MIN_QUOTA_US)
}

/// The instance's cgroup slice. Create it once at agent start ([`Self::create`]), move the
/// agent in ([`Self::join`]), and [`Self::close`] it at a clean exit; an agent that is killed
/// leaves it behind, empty once its environments' helpers die with it, and the next agent on
/// the host sweeps it.
#[derive(Debug)]
pub struct InstanceSlice {
    /// The agents' common slice (`fleetfn`).
    top: Cgroups,
    /// `fleetfn/<instance-id>`: the environments' parent.
    slice: Cgroups,
    instance_id: String,
    shape: InstanceShape,
    /// The agent's pid and where it was before [`Self::join`].
    origin: Mutex<Option<(u32, Membership)>>,
    /// Marks the slice as this live agent's, so other agents' sweeps leave it alone.
    _lease: Lease,
}

impl InstanceSlice {
    /// Creates (or takes over) `<top>/<instance_id>` with the instance's limits. First it takes
    /// the host-wide lease `cgroups/<instance_id>` in `leases` (failing when another live agent
    /// holds it), then removes the process-free cgroups under `top` that no live agent holds a
    /// lease on (slices of agents that were killed, environment cgroups of the older flat
    /// layout) — never another live agent's slice, even one created an instant ago and still
    /// empty.
    pub fn create(
        layout: CgroupLayout,
        top: &str,
        instance_id: &str,
        shape: InstanceShape,
        leases: &LeaseDir,
    ) -> Result<Self, CgroupError> {
        let lease_error = |error| CgroupError::Io {
            op: "lease",
            path: leases.path().join(CGROUP_LEASES).join(instance_id),
            error,
        };
        let lease = leases
            .hold(CGROUP_LEASES, instance_id)
            .map_err(lease_error)?;
        let top = Cgroups::new(layout, top)?;
        top.create_slice()?;
        let swept = top.sweep(&[instance_id], &|name| cgroup_owned(leases, name));
        if !swept.is_empty() {
            tracing::info!(?swept, "removed cgroups left by instances that are gone");
        }
        let slice = top.child(instance_id)?;
        let this = Self {
            top,
            slice,
            instance_id: instance_id.to_owned(),
            shape,
            origin: Mutex::new(None),
            _lease: lease,
        };
        this.ensure()?;
        // Environment cgroups of an earlier agent with this id (or of environments gone).
        this.sweep_with(leases);
        Ok(this)
    }

    /// Creates the slice if missing and writes its limits.
    fn ensure(&self) -> Result<(), CgroupError> {
        self.slice.create_slice()?;
        self.top.set_limits(
            &self.instance_id,
            &CgroupLimits {
                memory_bytes: Some(self.shape.memory_mib.saturating_mul(MIB)).filter(|b| *b > 0),
                cpu_quota_us: Some(self.quota_us()),
                cpu_period_us: Some(DEFAULT_CPU_PERIOD_US),
                pids_max: None,
            },
        )
    }

    /// The instance's CFS quota per period: `vcpus × cpu_scale` host CPUs.
    pub fn quota_us(&self) -> u64 {
        quota_us(self.shape.host_cpus())
    }

    /// An environment's CFS quota for `host_cpus` CPUs, at most the instance's (cgroup v1
    /// refuses a child quota above its parent's).
    pub fn env_quota_us(&self, host_cpus: f64) -> u64 {
        quota_us(host_cpus).min(self.quota_us())
    }

    /// Moves process `pid` (the agent, all its threads) into the slice's leaf
    /// [`AGENT_LEAF`], remembering where it was for [`Self::close`].
    pub fn join(&self, pid: u32) -> Result<(), CgroupError> {
        let path = std::path::PathBuf::from(format!("/proc/{pid}/cgroup"));
        let proc_cgroup = std::fs::read_to_string(&path).map_err(|error| CgroupError::Io {
            op: "read",
            path,
            error,
        })?;
        self.join_from(pid, &proc_cgroup)
    }

    /// [`Self::join`] with the content of `/proc/<pid>/cgroup` given.
    pub(crate) fn join_from(&self, pid: u32, proc_cgroup: &str) -> Result<(), CgroupError> {
        let origin = self.slice.membership(proc_cgroup);
        // An agent starting at the same moment may sweep the still empty slice: recreate it
        // and try again.
        let mut attempt = 0;
        loop {
            let joined = self
                .ensure()
                .and_then(|()| self.slice.create(AGENT_LEAF))
                .and_then(|()| self.slice.add_process(AGENT_LEAF, pid));
            match joined {
                Ok(()) => break,
                Err(e) if attempt >= 2 => return Err(e),
                Err(_) => attempt += 1,
            }
        }
        *self.origin.lock() = Some((pid, origin));
        Ok(())
    }

    /// The environments' cgroup manager (the slice).
    pub fn cgroups(&self) -> &Cgroups {
        &self.slice
    }

    /// The instance id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The instance's type and size.
    pub fn shape(&self) -> &InstanceShape {
        &self.shape
    }

    /// Memory in use (working set, bytes) and CPU time used (ns) by the whole instance: the
    /// agent and its environments.
    pub fn usage(&self) -> Option<(u64, u64)> {
        let s = self.top.stats(&self.instance_id).ok()?;
        Some((s.memory_working_set_bytes(), s.cpu_usage_ns))
    }

    /// Environment cgroups in the slice.
    pub fn env_cgroups(&self) -> Vec<String> {
        let mut names = self.slice.list().unwrap_or_default();
        names.retain(|n| n != AGENT_LEAF);
        names
    }

    /// Removes environment cgroups that hold no process and whose environment's lease in
    /// `leases` is not held; returns how many.
    pub fn sweep_with(&self, leases: &LeaseDir) -> usize {
        self.slice
            .sweep(&[AGENT_LEAF], &|name| cgroup_owned(leases, name))
            .len()
    }

    /// Removes the slice at a clean agent exit: moves the agent back where it was (or to the
    /// root cgroups), kills what is left in environment cgroups, and removes them, the leaf
    /// and the slice. The agent's own leaf is never killed: if the agent cannot leave it,
    /// this fails and the slice stays for a later sweep.
    pub fn close(&self) -> Result<(), CgroupError> {
        let origin = self.origin.lock().take();
        if let Some((pid, origin)) = origin
            && origin.rejoin(pid).is_err()
        {
            self.top.root_membership().rejoin(pid)?;
        }
        for name in self.env_cgroups() {
            self.slice.remove(&name)?;
        }
        if !self.slice.subtree_procs(AGENT_LEAF)?.is_empty() {
            return Err(CgroupError::StillPopulated(
                self.slice.env_dirs(AGENT_LEAF)?.remove(0),
            ));
        }
        self.slice.remove(AGENT_LEAF)?;
        self.top.remove(&self.instance_id)
    }

    /// One line for the start-up log: `instance slice fleetfn/i-1: 2 vCPU × 0.25 = 0.50 host
    /// CPUs, 4096 MiB`.
    pub fn describe(&self) -> String {
        format!(
            "instance slice {}: {} vCPU × {} = {:.2} host CPUs, {} MiB",
            self.slice.slice().display(),
            self.shape.vcpus,
            self.shape.cpu_scale,
            self.shape.host_cpus(),
            self.shape.memory_mib
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn set(dir: &Path, file: &str, value: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), value).unwrap();
    }

    fn get(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    fn strip_files(dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                strip_files(&entry.path());
            } else {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }

    fn shape() -> InstanceShape {
        InstanceShape {
            instance_type: "m7i.large".into(),
            vcpus: 2,
            memory_mib: 4096,
            cpu_scale: 0.25,
        }
    }

    /// A v1 cgroupfs fixture (marker files of each controller).
    fn v1_root(root: &Path) -> CgroupLayout {
        set(&root.join("memory"), "memory.limit_in_bytes", "");
        set(&root.join("cpu"), "cpu.cfs_quota_us", "");
        set(&root.join("cpuacct"), "cpuacct.usage", "");
        set(&root.join("pids"), "cgroup.procs", "");
        CgroupLayout::detect(root).unwrap()
    }

    #[test]
    fn quotas_follow_vcpus_times_scale_and_nest() {
        assert_eq!(quota_us(0.5), 50_000);
        assert_eq!(quota_us(4.0), 400_000);
        assert_eq!(quota_us(0.0), MIN_QUOTA_US);
        let s = shape();
        assert_eq!(s.host_cpus(), 0.5);
        let tmp = tempfile::tempdir().unwrap();
        let slice = InstanceSlice::create(
            v1_root(tmp.path()),
            "fleetfn",
            "i-1",
            s,
            &LeaseDir::new(tmp.path().join("leases")),
        )
        .unwrap();
        assert_eq!(slice.quota_us(), 50_000);
        // 1 vCPU × 0.25: within the instance; 4 vCPUs × 0.25 would exceed it.
        assert_eq!(slice.env_quota_us(0.25), 25_000);
        assert_eq!(slice.env_quota_us(1.0), 50_000);
        assert_eq!(
            slice.describe(),
            "instance slice fleetfn/i-1: 2 vCPU × 0.25 = 0.50 host CPUs, 4096 MiB"
        );
    }

    #[test]
    fn v1_slice_limits_join_and_close() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let layout = v1_root(root);
        // Leftovers: an empty slice of a killed agent, and a live one.
        std::fs::create_dir_all(root.join("memory/fleetfn/i-dead/e-1")).unwrap();
        set(
            &root.join("pids/fleetfn/i-live/agent"),
            "cgroup.procs",
            "99\n",
        );
        let slice = InstanceSlice::create(
            layout,
            "fleetfn",
            "i-1",
            shape(),
            &LeaseDir::new(tmp.path().join("leases")),
        )
        .unwrap();
        assert!(!root.join("memory/fleetfn/i-dead").exists());
        assert!(root.join("pids/fleetfn/i-live/agent").exists());
        let inst = |c: &str| root.join(c).join("fleetfn/i-1");
        assert_eq!(get(&inst("cpu"), "cpu.cfs_quota_us"), "50000");
        assert_eq!(get(&inst("cpu"), "cpu.cfs_period_us"), "100000");
        assert_eq!(
            get(&inst("memory"), "memory.limit_in_bytes"),
            (4096u64 << 20).to_string()
        );

        std::fs::create_dir_all(root.join("memory/origin")).unwrap();
        slice
            .join_from(4242, "4:memory:/origin\n3:cpu:/\n2:cpuacct:/\n1:pids:/\n")
            .unwrap();
        for c in ["memory", "cpu", "cpuacct", "pids"] {
            assert_eq!(get(&inst(c).join(AGENT_LEAF), "cgroup.procs"), "4242");
        }
        assert_eq!(slice.env_cgroups(), Vec::<String>::new());
        std::fs::create_dir_all(inst("memory").join("e-7")).unwrap();
        assert_eq!(slice.env_cgroups(), ["e-7"]);

        // Fixture files are plain files: drop them (the agent's pid included, as if it had
        // moved out) so close can rmdir the directories as on cgroupfs.
        for c in ["memory", "cpu", "cpuacct", "pids"] {
            strip_files(&inst(c));
        }
        slice.close().unwrap();
        assert_eq!(get(&root.join("memory/origin"), "cgroup.procs"), "4242");
        for c in ["cpu", "cpuacct", "pids"] {
            assert_eq!(get(&root.join(c), "cgroup.procs"), "4242", "{c}");
        }
        for c in ["memory", "cpu", "cpuacct", "pids"] {
            assert!(!inst(c).exists(), "{c}");
        }
    }

    #[test]
    fn close_never_removes_a_leaf_the_agent_is_still_in() {
        let tmp = tempfile::tempdir().unwrap();
        let slice = InstanceSlice::create(
            v1_root(tmp.path()),
            "fleetfn",
            "i-2",
            shape(),
            &LeaseDir::new(tmp.path().join("leases")),
        )
        .unwrap();
        slice.slice.create(AGENT_LEAF).unwrap();
        set(
            &tmp.path().join("pids/fleetfn/i-2").join(AGENT_LEAF),
            "cgroup.procs",
            "4242\n",
        );
        assert!(matches!(slice.close(), Err(CgroupError::StillPopulated(_))));
        assert!(
            tmp.path()
                .join("pids/fleetfn/i-2")
                .join(AGENT_LEAF)
                .exists()
        );
    }

    #[test]
    fn v2_slice_enables_controllers_down_to_the_environments() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        set(root, "cgroup.controllers", "cpuset cpu io memory pids\n");
        set(root, "cgroup.subtree_control", "");
        let layout = CgroupLayout::detect(root).unwrap();
        let slice = InstanceSlice::create(
            layout,
            "fleetfn",
            "i-3",
            shape(),
            &LeaseDir::new(tmp.path().join("leases")),
        )
        .unwrap();
        let inst = root.join("fleetfn/i-3");
        assert_eq!(get(&inst, "cpu.max"), "50000 100000");
        assert_eq!(get(&inst, "memory.max"), (4096u64 << 20).to_string());
        for dir in [root.to_path_buf(), root.join("fleetfn"), inst.clone()] {
            assert_eq!(
                get(&dir, "cgroup.subtree_control"),
                "+cpu +memory +pids",
                "{}",
                dir.display()
            );
        }
        slice.join_from(77, "0::/user.slice\n").unwrap();
        // The agent goes to a leaf, never into the slice itself (no internal processes).
        assert_eq!(get(&inst.join(AGENT_LEAF), "cgroup.procs"), "77");
        assert!(!inst.join("cgroup.procs").exists());
        set(&inst, "cpu.stat", "usage_usec 2500\n");
        set(&inst, "memory.current", "8192\n");
        set(&inst, "memory.stat", "inactive_file 4096\n");
        assert_eq!(slice.usage(), Some((4096, 2_500_000)));
    }
}
