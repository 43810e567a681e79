//! The per-environment readings behind the Lambda Insights metrics (docs/METRICS.md), taken by
//! the environment's once-a-second sampler next to the admission sample ([`crate::admission`]):
//! CPU time split into user and system, and the bytes the environment's network namespace
//! received and sent. Blocking file reads; call off the async runtime.
//!
//! * CPU: the environment's own cgroup when its processes are in one the agent is not in
//!   (v2 `cpu.stat` `user_usec`/`system_usec`, v1 `cpuacct.stat` in clock ticks); otherwise
//!   `utime + cutime` and `stime + cstime` of `/proc/<pid>/stat` summed over the process tree
//!   (children reaped by a process of the tree count through it; a lower bound, like
//!   [`crate::ProcTreeAccounting`]'s total).
//! * Network: `/proc/<pid>/net/dev` of a process of the environment in a network namespace
//!   other than the agent's, every interface summed: `eth0` (egress) and `lo`, which carries
//!   the runtime's Runtime API calls (so, as on Lambda, a function that does no I/O still shows
//!   traffic; a loopback byte counts once received and once sent). An environment that shares
//!   the agent's network has no reading (the host's counters are not its own).

use std::path::{Path, PathBuf};

use fleetfn_proto::EnvInsights;

/// Where the sampler reads: `/proc` and the cgroup mount (test seams).
#[derive(Debug, Clone)]
pub(crate) struct Roots {
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
    /// The agent's own pid (its cgroup and network namespace are not an environment's).
    pub self_pid: u32,
    /// Nanoseconds per clock tick of `stat` and `cpuacct.stat`.
    pub tick_ns: u64,
}

impl Roots {
    /// The live system.
    pub(crate) fn system() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            self_pid: std::process::id(),
            tick_ns: crate::process::clock_tick_ns(),
        }
    }
}

/// Reads the CPU split and network counters of the environment whose runtime (or sandbox
/// helper) is `pid`; `memory_peak_bytes` is passed through from the environment's accounting.
pub(crate) fn read(roots: &Roots, pid: u32, memory_peak_bytes: Option<u64>) -> EnvInsights {
    // The helper first: its children (the jailed runtime) are the ones in the environment's
    // cgroup and namespace when sandboxed.
    let mut pids = crate::process::tree_pids(&roots.proc_root, pid);
    pids.sort_by_key(|p| *p == pid);
    let (cpu_user_ns, cpu_system_ns) = match cgroup_cpu(roots, &pids) {
        Some((u, s)) => (Some(u), Some(s)),
        None => tree_cpu(roots, &pids).map_or((None, None), |(u, s)| (Some(u), Some(s))),
    };
    let (net_rx_bytes, net_tx_bytes) =
        namespace_net(roots, &pids).map_or((None, None), |(r, t)| (Some(r), Some(t)));
    EnvInsights {
        cpu_user_ns,
        cpu_system_ns,
        memory_peak_bytes,
        net_rx_bytes,
        net_tx_bytes,
    }
}

fn read_string(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// CPU (user, system) ns of the first process's CPU-accounting cgroup that is not the
/// agent's (an environment in the agent's own, or the root, would read the agent's or the
/// whole host's time).
fn cgroup_cpu(roots: &Roots, pids: &[u32]) -> Option<(u64, u64)> {
    let own = read_string(
        &roots
            .proc_root
            .join(roots.self_pid.to_string())
            .join("cgroup"),
    )?;
    pids.iter().find_map(|pid| {
        let theirs = read_string(&roots.proc_root.join(pid.to_string()).join("cgroup"))?;
        if let Some(path) = v2_path(&theirs) {
            if Some(path) == v2_path(&own) {
                return None;
            }
            let dir = roots.cgroup_root.join(path.trim_start_matches('/'));
            return parse_cpu_stat(&read_string(&dir.join("cpu.stat"))?);
        }
        let (controllers, path) = v1_cpuacct(&theirs)?;
        if v1_cpuacct(&own).is_some_and(|(_, p)| p == path) {
            return None;
        }
        [controllers, "cpuacct"].iter().find_map(|c| {
            let dir = roots.cgroup_root.join(c).join(path.trim_start_matches('/'));
            // Nanoseconds where the kernel has them (4.7+), else clock ticks.
            let ns = |f: &str| read_string(&dir.join(f))?.trim().parse::<u64>().ok();
            if let (Some(u), Some(s)) = (ns("cpuacct.usage_user"), ns("cpuacct.usage_sys")) {
                return Some((u, s));
            }
            let (u, s) = parse_cpuacct_stat(&read_string(&dir.join("cpuacct.stat"))?)?;
            Some((u * roots.tick_ns, s * roots.tick_ns))
        })
    })
}

/// The unified hierarchy's path of a `/proc/<pid>/cgroup` (`0::/path`), when it is the only
/// hierarchy (a hybrid host's v1 controllers come first and win in [`v1_cpuacct`]).
fn v2_path(cgroup: &str) -> Option<&str> {
    let mut lines = cgroup.lines().filter(|l| !l.is_empty());
    let path = lines.next()?.strip_prefix("0::")?;
    lines.next().is_none().then_some(path)
}

/// The `cpuacct` controller's directory name (`cpu,cpuacct`) and path in a v1 `cgroup` file.
fn v1_cpuacct(cgroup: &str) -> Option<(&str, &str)> {
    cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "cpuacct")
            .then_some((controllers, path))
    })
}

/// `user_usec` and `system_usec` of a v2 `cpu.stat`, in ns.
pub(crate) fn parse_cpu_stat(text: &str) -> Option<(u64, u64)> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    Some((
        field("user_usec")?.saturating_mul(1000),
        field("system_usec")?.saturating_mul(1000),
    ))
}

/// `user` and `system` of a v1 `cpuacct.stat`, in clock ticks.
fn parse_cpuacct_stat(text: &str) -> Option<(u64, u64)> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok())?
        })
    };
    Some((field("user")?, field("system")?))
}

/// `utime + cutime` and `stime + cstime` of one `/proc/<pid>/stat`, in clock ticks.
pub(crate) fn parse_stat_split(stat: &str) -> Option<(u64, u64)> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11) // rest[0] is field 3 (state); utime is field 14.
        .take(4)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    (f.len() == 4).then(|| (f[0] + f[2], f[1] + f[3]))
}

/// CPU (user, system) ns summed over the process tree; `None` when no process could be read.
fn tree_cpu(roots: &Roots, pids: &[u32]) -> Option<(u64, u64)> {
    let mut read_any = false;
    let (u, s) = pids
        .iter()
        .filter_map(|pid| {
            parse_stat_split(&read_string(
                &roots.proc_root.join(pid.to_string()).join("stat"),
            )?)
        })
        .inspect(|_| read_any = true)
        .fold((0u64, 0u64), |(u, s), (du, ds)| (u + du, s + ds));
    read_any.then(|| (u * roots.tick_ns, s * roots.tick_ns))
}

/// Received and sent bytes of the first process's network namespace that is not the agent's.
fn namespace_net(roots: &Roots, pids: &[u32]) -> Option<(u64, u64)> {
    let ns = |pid: u32| std::fs::read_link(roots.proc_root.join(pid.to_string()).join("ns/net"));
    let own = ns(roots.self_pid).ok()?;
    pids.iter().find_map(|pid| {
        let theirs = ns(*pid).ok()?;
        if theirs == own {
            return None;
        }
        parse_net_dev(&read_string(
            &roots.proc_root.join(pid.to_string()).join("net/dev"),
        )?)
    })
}

/// Received and sent bytes summed over every interface of a `/proc/<pid>/net/dev`.
pub(crate) fn parse_net_dev(text: &str) -> Option<(u64, u64)> {
    let mut total = None::<(u64, u64)>;
    for line in text.lines().skip(2) {
        let Some((_, counters)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
        if let (Some(rx), Some(tx)) = (f.first(), f.get(8)) {
            let t = total.get_or_insert((0, 0));
            *t = (t.0.saturating_add(*rx), t.1.saturating_add(*tx));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1200      10    0    0    0     0          0         0     1200      10    0    0    0     0       0          0
  eth0:     500       3    0    0    0     0          0         0      700       4    0    0    0     0       0          0
";

    #[test]
    fn net_dev_sums_every_interface() {
        assert_eq!(parse_net_dev(NET_DEV), Some((1700, 1900)));
        assert_eq!(parse_net_dev("header\nheader\n"), None);
    }

    #[test]
    fn cpu_stat_and_proc_stat_split_user_and_system() {
        let v2 = "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 0\n";
        assert_eq!(parse_cpu_stat(v2), Some((2_000_000, 1_000_000)));
        assert_eq!(parse_cpu_stat("usage_usec 5\n"), None);
        // utime 7, stime 3, cutime 2, cstime 1; a command name with spaces and parentheses.
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 5 0 0";
        assert_eq!(parse_stat_split(stat), Some((9, 4)));
        assert_eq!(parse_cpuacct_stat("user 12\nsystem 5\n"), Some((12, 5)));
    }

    #[test]
    fn cgroup_files_name_the_hierarchy() {
        assert_eq!(
            v2_path("0::/fleetfn.slice/env-1\n"),
            Some("/fleetfn.slice/env-1")
        );
        assert_eq!(
            v1_cpuacct("5:memory:/x\n3:cpu,cpuacct:/fleetfn/env-1\n"),
            Some(("cpu,cpuacct", "/fleetfn/env-1"))
        );
        // Hybrid: v1 controllers and an empty unified line; not a v2-only host.
        assert_eq!(v2_path("3:cpu,cpuacct:/a\n0::/\n"), None);
    }

    /// A fake `/proc` and cgroup mount: the agent (pid 1) in `/agent`, its child 10 (the
    /// sandbox helper, still in the agent's cgroup and namespace) and 11 (the runtime, in the
    /// environment's cgroup and namespace).
    fn fake(dir: &Path, env_cgroup: bool) -> Roots {
        let proc_root = dir.join("proc");
        let cg = dir.join("cgroup");
        let put = |p: PathBuf, text: &str| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        let stat = |utime: u32, stime: u32| {
            format!("1 (rt) S 0 0 0 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 5 0 0")
        };
        put(proc_root.join("1/cgroup"), "0::/agent\n");
        put(proc_root.join("10/task/10/children"), "11");
        put(proc_root.join("10/cgroup"), "0::/agent\n");
        put(proc_root.join("10/stat"), &stat(1, 1));
        put(proc_root.join("11/task/11/children"), "");
        let env_cg = if env_cgroup {
            "0::/env/e1\n"
        } else {
            "0::/agent\n"
        };
        put(proc_root.join("11/cgroup"), env_cg);
        put(proc_root.join("11/stat"), &stat(30, 20));
        put(proc_root.join("11/net/dev"), NET_DEV);
        put(
            cg.join("env/e1/cpu.stat"),
            "usage_usec 900\nuser_usec 600\nsystem_usec 300\n",
        );
        for (pid, ns) in [(1, "net:[1]"), (10, "net:[1]"), (11, "net:[2]")] {
            let p = proc_root.join(format!("{pid}/ns"));
            std::fs::create_dir_all(&p).unwrap();
            std::os::unix::fs::symlink(ns, p.join("net")).unwrap();
        }
        Roots {
            proc_root,
            cgroup_root: cg,
            self_pid: 1,
            tick_ns: 10_000_000,
        }
    }

    #[test]
    fn the_environment_cgroup_and_namespace_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let roots = fake(dir.path(), true);
        let got = read(&roots, 10, Some(4096));
        assert_eq!(
            got,
            EnvInsights {
                cpu_user_ns: Some(600_000),
                cpu_system_ns: Some(300_000),
                memory_peak_bytes: Some(4096),
                net_rx_bytes: Some(1700),
                net_tx_bytes: Some(1900),
            }
        );
    }

    #[test]
    fn without_an_own_cgroup_the_process_tree_counts() {
        let dir = tempfile::tempdir().unwrap();
        let roots = fake(dir.path(), false);
        let got = read(&roots, 10, None);
        // (1 + 30) and (1 + 20) ticks of 10 ms.
        assert_eq!(
            (got.cpu_user_ns, got.cpu_system_ns),
            (Some(310_000_000), Some(210_000_000))
        );
    }

    #[test]
    fn a_v1_cpuacct_cgroup_is_read_in_nanoseconds_or_ticks() {
        let dir = tempfile::tempdir().unwrap();
        let roots = fake(dir.path(), true);
        let p = &roots.proc_root;
        let agent = "4:memory:/agent\n2:cpuacct:/\n0::/\n";
        std::fs::write(p.join("1/cgroup"), agent).unwrap();
        std::fs::write(p.join("10/cgroup"), agent).unwrap();
        std::fs::write(
            p.join("11/cgroup"),
            "4:memory:/e1\n2:cpuacct:/fleetfn/e1\n0::/\n",
        )
        .unwrap();
        let acct = roots.cgroup_root.join("cpuacct/fleetfn/e1");
        std::fs::create_dir_all(&acct).unwrap();
        std::fs::write(acct.join("cpuacct.stat"), "user 4\nsystem 2\n").unwrap();
        let got = read(&roots, 10, None);
        assert_eq!(
            (got.cpu_user_ns, got.cpu_system_ns),
            (Some(40_000_000), Some(20_000_000))
        );
        std::fs::write(acct.join("cpuacct.usage_user"), "41234567\n").unwrap();
        std::fs::write(acct.join("cpuacct.usage_sys"), "20000001\n").unwrap();
        let got = read(&roots, 10, None);
        assert_eq!(
            (got.cpu_user_ns, got.cpu_system_ns),
            (Some(41_234_567), Some(20_000_001))
        );
        // In the agent's own cpuacct group (only its memory group differs): the tree counts,
        // never the group's (here the whole host's) time.
        std::fs::write(p.join("11/cgroup"), "4:memory:/e1\n2:cpuacct:/\n0::/\n").unwrap();
        let got = read(&roots, 10, None);
        assert_eq!(
            (got.cpu_user_ns, got.cpu_system_ns),
            (Some(310_000_000), Some(210_000_000))
        );
    }

    #[test]
    fn a_shared_network_has_no_reading() {
        let dir = tempfile::tempdir().unwrap();
        let roots = fake(dir.path(), true);
        let link = roots.proc_root.join("11/ns/net");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("net:[1]", &link).unwrap();
        let got = read(&roots, 10, None);
        assert_eq!((got.net_rx_bytes, got.net_tx_bytes), (None, None));
    }

    #[test]
    fn this_process_reads_as_its_own_tree() {
        // The live system: the test process shares its own cgroup and namespace, so CPU comes
        // from its /proc/self/stat and there is no network reading.
        let got = read(&Roots::system(), std::process::id(), None);
        assert!(got.cpu_user_ns.is_some(), "{got:?}");
        assert_eq!(got.net_rx_bytes, None);
    }
}
