//! cgroup v2 files: `cgroup.subtree_control`, `memory.max`, `memory.swap.max`, `cpu.max`,
//! `pids.max`, `cpu.stat`, `memory.current`, `memory.peak`, `memory.events`, `memory.stat`.

use std::path::Path;

use super::{
    CgroupError, CgroupLimits, CgroupStats, Controller, mkdir, read_keyed, read_keyed_if_present,
    read_u64, write,
};

/// Enables `controllers` for the children of the root and of each level down to the slice.
pub(super) fn create_slice(
    root: &Path,
    slice: &Path,
    controllers: &[Controller],
) -> Result<(), CgroupError> {
    let enable: Vec<String> = controllers
        .iter()
        .map(|c| format!("+{}", c.name()))
        .collect();
    let enable = enable.join(" ");
    let mut dir = root.to_path_buf();
    if !enable.is_empty() {
        write(&dir.join("cgroup.subtree_control"), &enable)?;
    }
    for component in slice.components() {
        dir.push(component);
        mkdir(&dir)?;
        if !enable.is_empty() {
            write(&dir.join("cgroup.subtree_control"), &enable)?;
        }
    }
    Ok(())
}

fn or_max(value: Option<u64>) -> String {
    value.map_or_else(|| "max".to_owned(), |v| v.to_string())
}

pub(super) fn set_limits(
    dir: &Path,
    controllers: &[Controller],
    limits: &CgroupLimits,
) -> Result<(), CgroupError> {
    if controllers.contains(&Controller::Memory) {
        write(&dir.join("memory.max"), &or_max(limits.memory_bytes))?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, "0")?;
        }
    }
    if controllers.contains(&Controller::Cpu) {
        write(
            &dir.join("cpu.max"),
            &format!("{} {}", or_max(limits.cpu_quota_us), limits.period()),
        )?;
    }
    if controllers.contains(&Controller::Pids) {
        write(&dir.join("pids.max"), &or_max(limits.pids_max))?;
    }
    Ok(())
}

pub(super) fn stats(dir: &Path) -> Result<CgroupStats, CgroupError> {
    let cpu_stat = dir.join("cpu.stat");
    let usage_usec = read_keyed(&cpu_stat, "usage_usec")?.unwrap_or(0);
    // `nr_throttled` is there when the `cpu` controller is enabled for the cgroup.
    let throttled = read_keyed(&cpu_stat, "nr_throttled")?.unwrap_or(0);
    let peak = dir.join("memory.peak");
    let memory_current = dir.join("memory.current");
    Ok(CgroupStats {
        cpu_usage_ns: usage_usec.saturating_mul(1000),
        memory_current_bytes: if memory_current.exists() {
            read_u64(&memory_current)?
        } else {
            0
        },
        // memory.peak appeared in 5.19.
        memory_peak_bytes: if peak.exists() {
            Some(read_u64(&peak)?)
        } else {
            None
        },
        oom_kills: read_keyed_if_present(&dir.join("memory.events"), "oom_kill")?.unwrap_or(0),
        // Hierarchical on v2: an instance slice's figure includes its environments.
        memory_inactive_file_bytes: read_keyed_if_present(
            &dir.join("memory.stat"),
            "inactive_file",
        )?
        .unwrap_or(0),
        cpu_throttled_periods: throttled,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    fn setup(controllers: &str) -> (tempfile::TempDir, Cgroups) {
        let tmp = tempfile::tempdir().unwrap();
        v2_root(tmp.path(), controllers);
        let cg = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
        cg.create("e1").unwrap();
        (tmp, cg)
    }

    #[test]
    fn slice_enables_available_controllers_at_each_level() {
        let (tmp, _) = setup("cpuset cpu io memory pids\n");
        assert_eq!(
            get(tmp.path(), "cgroup.subtree_control"),
            "+cpu +memory +pids"
        );
        assert_eq!(
            get(&tmp.path().join("fleetfn"), "cgroup.subtree_control"),
            "+cpu +memory +pids"
        );

        let tmp = tempfile::tempdir().unwrap();
        v2_root(tmp.path(), "memory io");
        let cg = Cgroups::detect(tmp.path(), "fleetfn.slice/envs").unwrap();
        cg.create_slice().unwrap();
        for dir in ["", "fleetfn.slice", "fleetfn.slice/envs"] {
            assert_eq!(
                get(&tmp.path().join(dir), "cgroup.subtree_control"),
                "+memory",
                "{dir}"
            );
        }
    }

    #[test]
    fn writes_limits() {
        let (tmp, cg) = setup("cpu memory pids");
        let env = tmp.path().join("fleetfn/e1");
        set_fixture(&env, "memory.swap.max", "max");
        let limits = CgroupLimits {
            memory_bytes: Some(256 << 20),
            cpu_quota_us: Some(200_000),
            cpu_period_us: Some(100_000),
            pids_max: Some(128),
        };
        cg.set_limits("e1", &limits).unwrap();
        assert_eq!(get(&env, "memory.max"), "268435456");
        assert_eq!(get(&env, "memory.swap.max"), "0");
        assert_eq!(get(&env, "cpu.max"), "200000 100000");
        assert_eq!(get(&env, "pids.max"), "128");

        cg.set_limits("e1", &CgroupLimits::default()).unwrap();
        assert_eq!(get(&env, "memory.max"), "max");
        assert_eq!(get(&env, "cpu.max"), "max 100000");
        assert_eq!(get(&env, "pids.max"), "max");
    }

    #[test]
    fn skips_missing_controllers_and_swap() {
        let (tmp, cg) = setup("memory");
        let limits = CgroupLimits {
            memory_bytes: Some(1),
            cpu_quota_us: Some(1),
            ..CgroupLimits::default()
        };
        cg.set_limits("e1", &limits).unwrap();
        let env = tmp.path().join("fleetfn/e1");
        assert_eq!(get(&env, "memory.max"), "1");
        assert!(!env.join("memory.swap.max").exists());
        assert!(!env.join("cpu.max").exists());
        assert!(!env.join("pids.max").exists());
    }

    #[test]
    fn reads_stats() {
        let (tmp, cg) = setup("cpu memory pids");
        let env = tmp.path().join("fleetfn/e1");
        set_fixture(
            &env,
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        );
        set_fixture(&env, "memory.current", "4096\n");
        set_fixture(
            &env,
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        let stats = cg.stats("e1").unwrap();
        assert_eq!(
            stats,
            CgroupStats {
                cpu_usage_ns: 1_500_000,
                memory_current_bytes: 4096,
                memory_peak_bytes: None,
                oom_kills: 1,
                memory_inactive_file_bytes: 0,
                cpu_throttled_periods: 0,
            }
        );
        set_fixture(
            &env,
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 9\nnr_throttled 4\nthrottled_usec 70\n",
        );
        assert_eq!(cg.stats("e1").unwrap().cpu_throttled_periods, 4);
        set_fixture(&env, "memory.peak", "8192\n");
        set_fixture(
            &env,
            "memory.stat",
            "anon 1024\nfile 2048\nactive_file 1024\ninactive_file 1024\n",
        );
        let stats = cg.stats("e1").unwrap();
        assert_eq!(stats.memory_peak_bytes, Some(8192));
        assert_eq!(stats.memory_working_set_bytes(), 3072);
    }

    #[test]
    fn kill_uses_cgroup_kill() {
        let (tmp, cg) = setup("cpu memory pids");
        let env = tmp.path().join("fleetfn/e1");
        set_fixture(&env, "cgroup.kill", "");
        set_fixture(&env, "cgroup.procs", "");
        cg.kill_all("e1").unwrap();
        assert_eq!(get(&env, "cgroup.kill"), "1");
    }
}
