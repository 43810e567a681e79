//! cgroup v1 files: `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`,
//! `cpu.cfs_{period,quota}_us`, `pids.max`, `cpuacct.usage`, `memory.{usage,max_usage}_in_bytes`,
//! `memory.oom_control`, `memory.stat`, `cpu.stat` (`nr_throttled`).

use std::path::Path;

use super::{
    CgroupError, CgroupLimits, CgroupStats, Controller, read_keyed, read_keyed_if_present,
    read_u64, write,
};

/// v1 spells "unlimited" as -1 for memory and CFS quota.
fn or_unlimited(value: Option<u64>) -> String {
    value.map_or_else(|| "-1".to_owned(), |v| v.to_string())
}

pub(super) fn set_limits(
    controller: Controller,
    dir: &Path,
    limits: &CgroupLimits,
) -> Result<(), CgroupError> {
    match controller {
        Controller::Memory => {
            let memory = or_unlimited(limits.memory_bytes);
            let mem = dir.join("memory.limit_in_bytes");
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if !memsw.exists() {
                return write(&mem, &memory);
            }
            // memory+swap must stay >= memory: lower memory first, raise memsw first.
            match write(&mem, &memory) {
                Ok(()) => write(&memsw, &memory),
                Err(_) => {
                    write(&memsw, &memory)?;
                    write(&mem, &memory)
                }
            }
        }
        Controller::Cpu => {
            write(&dir.join("cpu.cfs_period_us"), &limits.period().to_string())?;
            write(
                &dir.join("cpu.cfs_quota_us"),
                &or_unlimited(limits.cpu_quota_us),
            )
        }
        Controller::Pids => write(
            &dir.join("pids.max"),
            &limits
                .pids_max
                .map_or_else(|| "max".to_owned(), |v| v.to_string()),
        ),
        Controller::Cpuacct => Ok(()),
    }
}

pub(super) fn stats(
    cpuacct: Option<&Path>,
    cpu: Option<&Path>,
    memory: Option<&Path>,
) -> Result<CgroupStats, CgroupError> {
    let mut stats = CgroupStats::default();
    if let Some(dir) = cpuacct {
        stats.cpu_usage_ns = read_u64(&dir.join("cpuacct.usage"))?;
    }
    if let Some(dir) = cpu {
        stats.cpu_throttled_periods =
            read_keyed_if_present(&dir.join("cpu.stat"), "nr_throttled")?.unwrap_or(0);
    }
    if let Some(dir) = memory {
        stats.memory_current_bytes = read_u64(&dir.join("memory.usage_in_bytes"))?;
        stats.memory_peak_bytes = Some(read_u64(&dir.join("memory.max_usage_in_bytes"))?);
        // `oom_kill` appeared in 4.13; older kernels only have under_oom.
        stats.oom_kills = read_keyed(&dir.join("memory.oom_control"), "oom_kill")?.unwrap_or(0);
        // `total_` counts descendants too (an instance slice's environments).
        stats.memory_inactive_file_bytes =
            read_keyed_if_present(&dir.join("memory.stat"), "total_inactive_file")?.unwrap_or(0);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    fn setup(with_memsw: bool) -> (tempfile::TempDir, Cgroups) {
        let tmp = tempfile::tempdir().unwrap();
        v1_root(tmp.path(), &["memory", "cpu", "cpuacct", "pids"]);
        let cg = Cgroups::detect(tmp.path(), "fleetfn").unwrap();
        cg.create("e1").unwrap();
        if with_memsw {
            set_fixture(
                &tmp.path().join("memory/fleetfn/e1"),
                "memory.memsw.limit_in_bytes",
                "",
            );
        }
        (tmp, cg)
    }

    #[test]
    fn writes_limits() {
        let (tmp, cg) = setup(true);
        let limits = CgroupLimits {
            memory_bytes: Some(128 << 20),
            cpu_quota_us: Some(50_000),
            cpu_period_us: None,
            pids_max: Some(64),
        };
        cg.set_limits("e1", &limits).unwrap();
        let env = |c: &str| tmp.path().join(c).join("fleetfn/e1");
        assert_eq!(get(&env("memory"), "memory.limit_in_bytes"), "134217728");
        assert_eq!(
            get(&env("memory"), "memory.memsw.limit_in_bytes"),
            "134217728"
        );
        assert_eq!(get(&env("cpu"), "cpu.cfs_period_us"), "100000");
        assert_eq!(get(&env("cpu"), "cpu.cfs_quota_us"), "50000");
        assert_eq!(get(&env("pids"), "pids.max"), "64");
        assert!(!env("cpuacct").join("cpu.cfs_quota_us").exists());

        cg.set_limits(
            "e1",
            &CgroupLimits {
                cpu_period_us: Some(20_000),
                ..CgroupLimits::default()
            },
        )
        .unwrap();
        assert_eq!(get(&env("memory"), "memory.limit_in_bytes"), "-1");
        assert_eq!(get(&env("memory"), "memory.memsw.limit_in_bytes"), "-1");
        assert_eq!(get(&env("cpu"), "cpu.cfs_period_us"), "20000");
        assert_eq!(get(&env("cpu"), "cpu.cfs_quota_us"), "-1");
        assert_eq!(get(&env("pids"), "pids.max"), "max");
    }

    #[test]
    fn memsw_only_if_present() {
        let (tmp, cg) = setup(false);
        cg.set_limits(
            "e1",
            &CgroupLimits {
                memory_bytes: Some(1 << 20),
                ..CgroupLimits::default()
            },
        )
        .unwrap();
        let dir = tmp.path().join("memory/fleetfn/e1");
        assert_eq!(get(&dir, "memory.limit_in_bytes"), "1048576");
        assert!(!dir.join("memory.memsw.limit_in_bytes").exists());
    }

    #[test]
    fn reads_stats() {
        let (tmp, cg) = setup(false);
        set_fixture(
            &tmp.path().join("cpuacct/fleetfn/e1"),
            "cpuacct.usage",
            "209071836\n",
        );
        let mem = tmp.path().join("memory/fleetfn/e1");
        set_fixture(&mem, "memory.usage_in_bytes", "258048\n");
        set_fixture(&mem, "memory.max_usage_in_bytes", "1048576\n");
        set_fixture(
            &mem,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        let stats = cg.stats("e1").unwrap();
        assert_eq!(
            stats,
            CgroupStats {
                cpu_usage_ns: 209_071_836,
                memory_current_bytes: 258_048,
                memory_peak_bytes: Some(1_048_576),
                oom_kills: 2,
                memory_inactive_file_bytes: 0,
                cpu_throttled_periods: 0,
            }
        );
        set_fixture(
            &tmp.path().join("cpu/fleetfn/e1"),
            "cpu.stat",
            "nr_periods 160\nnr_throttled 47\nthrottled_time 880000000\n",
        );
        assert_eq!(cg.stats("e1").unwrap().cpu_throttled_periods, 47);
        set_fixture(
            &mem,
            "memory.stat",
            "cache 8192\ninactive_file 4096\ntotal_cache 65536\ntotal_inactive_file 57344\n",
        );
        let stats = cg.stats("e1").unwrap();
        assert_eq!(stats.memory_inactive_file_bytes, 57_344);
        assert_eq!(stats.memory_working_set_bytes(), 258_048 - 57_344);
        set_fixture(
            &mem,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\n",
        );
        assert_eq!(cg.stats("e1").unwrap().oom_kills, 0);
        set_fixture(&mem, "memory.usage_in_bytes", "lots");
        assert!(matches!(cg.stats("e1"), Err(CgroupError::Parse { .. })));
    }

    #[test]
    fn add_process_writes_every_hierarchy() {
        let (tmp, cg) = setup(false);
        cg.add_process("e1", 4242).unwrap();
        for c in ["memory", "cpu", "cpuacct", "pids"] {
            assert_eq!(
                get(&tmp.path().join(c).join("fleetfn/e1"), "cgroup.procs"),
                "4242"
            );
        }
    }
}
