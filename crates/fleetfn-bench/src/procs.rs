//! Server-side CPU and memory from the processes' own accounting: `/proc/<pid>/stat` (utime +
//! stime of every thread of the process, in clock ticks) and `/proc/<pid>/smaps_rollup` (RSS, PSS).
//! A snapshot covers a process tree; the difference of two snapshots is the CPU each process
//! spent in between, split into roles (fleetfn server, agents, function runtimes, other).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ; 100 on every Linux we run on).
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub cmdline: String,
    /// utime + stime in ticks.
    pub ticks: u64,
    pub start_time: u64,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // rest[0] = state (field 3); utime = field 14 -> rest[11], stime = rest[12], starttime = field 22 -> rest[19].
    let ppid = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    let start_time = rest.get(19)?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Some(Proc {
        pid,
        ppid,
        comm,
        cmdline,
        ticks: utime + stime,
        start_time,
    })
}

/// Every process on the host.
pub fn all() -> BTreeMap<u32, Proc> {
    let mut out = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                && let Some(p) = read_proc(pid)
            {
                out.insert(pid, p);
            }
        }
    }
    out
}

/// `root` and all its descendants.
pub fn tree(root: u32) -> BTreeMap<u32, Proc> {
    let all = all();
    let mut out = BTreeMap::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(proc_) = all.get(&p) {
            out.insert(p, proc_.clone());
            stack.extend(all.values().filter(|c| c.ppid == p).map(|c| c.pid));
        }
    }
    out
}

/// The role of a process in a fleetfn tree rooted at `fleetfn serve`.
pub fn role(root: u32, p: &Proc, procs: &BTreeMap<u32, Proc>) -> &'static str {
    if p.pid == root {
        return "server";
    }
    if p.cmdline.contains(" agent ") || p.cmdline.ends_with(" agent") {
        return "agent";
    }
    // The peer's function binary (package `noop`, see scenarios::peer_project).
    if p.comm == "noop" {
        return "function";
    }
    // Anything under an agent is an environment's process tree (the function's runtime).
    let mut cur = p.ppid;
    while let Some(parent) = procs.get(&cur) {
        if parent.pid == root {
            break;
        }
        if parent.cmdline.contains(" agent ") {
            return "function";
        }
        cur = parent.ppid;
    }
    "other"
}

/// CPU seconds per role between two snapshots of the same tree. Processes that appeared in
/// between count from zero; processes that went away are missing (their CPU is lost, which the
/// scenarios avoid by keeping the fleet steady while they measure).
pub fn cpu_delta(
    root: u32,
    before: &BTreeMap<u32, Proc>,
    after: &BTreeMap<u32, Proc>,
) -> BTreeMap<&'static str, f64> {
    let mut out: BTreeMap<&'static str, f64> = BTreeMap::new();
    for (pid, p) in after {
        let base = before
            .get(pid)
            .filter(|b| b.start_time == p.start_time)
            .map_or(0, |b| b.ticks);
        #[allow(clippy::cast_precision_loss)]
        let secs = p.ticks.saturating_sub(base) as f64 / TICKS_PER_SEC;
        *out.entry(role(root, p, after)).or_default() += secs;
    }
    out
}

/// CPU seconds (utime + stime) of one process so far.
pub fn cpu_secs(pid: u32) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    read_proc(pid).map_or(0.0, |p| p.ticks as f64 / TICKS_PER_SEC)
}

/// (RSS, PSS) in KiB from `/proc/<pid>/smaps_rollup`.
pub fn mem_kib(pid: u32) -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// Per-request CPU in µs for each role, given a request count.
pub fn per_request_us(cpu: &BTreeMap<&'static str, f64>, requests: u64) -> Value {
    let n = requests.max(1) as f64;
    let mut m = serde_json::Map::new();
    for (k, v) in cpu {
        m.insert(
            format!("{k}_cpu_us_per_req"),
            json!(crate::load::round(v * 1e6 / n, 1)),
        );
    }
    Value::Object(m)
}
