//! The machine and build description, target checks and the Markdown rendering of a run.

use std::process::Command;

use serde_json::{Value, json};

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    // In a KVM guest the idle driver decides what a wake-up of an idle vCPU costs: with
    // `haltpoll` the guest polls for up to `guest_halt_poll_ns` before it halts (a VM exit).
    // Linux's default is 200,000 ns; a guest booted with `haltpoll.guest_halt_poll_ns=0` halts
    // at once, and every hand-off to an idle vCPU pays the exit (docs/BENCHMARKS.md).
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|v| v.trim().to_string())
    };
    let cpuidle = read("/sys/devices/system/cpu/cpuidle/current_driver");
    let halt_poll_ns = read("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
        .and_then(|v| v.parse::<u64>().ok());
    json!({
        "cpuidle_driver": cpuidle,
        "guest_halt_poll_ns": halt_poll_ns,
        "cpu": model,
        "cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "memory_mib": mem / 1024,
        "kernel": sh("uname", &["-r"]),
        "root": sh("id", &["-u"]) == "0",
    })
}

pub fn build(repo: &std::path::Path) -> Value {
    let r = repo.display().to_string();
    let commit = sh("git", &["-C", &r, "rev-parse", "--short=12", "HEAD"]);
    let dirty = !sh(
        "git",
        &["-C", &r, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_empty();
    json!({
        "commit": commit,
        "dirty": dirty,
        "rustc": sh("rustc", &["-V"]),
        "profile": "release (debug = 1)",
    })
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// One target: (name, target, measured, pass).
pub fn targets(r: &Value) -> Vec<(String, String, String, Option<bool>)> {
    let mut t = Vec::new();
    let inv = &r["invoke-rust"]["runs"];
    let peer = &r["cargo-lambda"]["runs"];
    let floor = &r["floor"]["runs"];
    let mut add =
        |name: &str, target: String, measured: Option<f64>, unit: &str, ok: Option<bool>| {
            t.push((
                name.to_string(),
                target,
                measured.map_or("not measured".into(), |m| format!("{m:.1} {unit}")),
                ok,
            ));
        };
    let p50 = f(&inv["c1"]["p50_us"]);
    add(
        "Rust invoke c=1 p50",
        "≤ 200 µs".into(),
        p50,
        "µs",
        p50.map(|v| v <= 200.0),
    );
    let peer_p50 = f(&peer["c1"]["p50_us"]);
    add(
        "Rust invoke c=1 p50 vs cargo-lambda",
        format!(
            "≤ cargo-lambda's best p50 ({})",
            peer_p50.map_or("n/a".into(), |v| format!("{v:.0} µs"))
        ),
        p50,
        "µs",
        p50.zip(peer_p50).map(|(a, b)| a <= b),
    );
    let p99 = f(&inv["c1"]["p99_us"]);
    add(
        "Rust invoke c=1 p99",
        "≤ 1000 µs".into(),
        p99,
        "µs",
        p99.map(|v| v <= 1000.0),
    );
    let tp = f(&inv["c32"]["throughput_rps"]);
    let peer_tp = f(&peer["c32"]["throughput_rps"]);
    add(
        "Rust invoke c=32 throughput vs cargo-lambda",
        format!(
            "≥ 5 × cargo-lambda at its best ({})",
            peer_tp.map_or("n/a".into(), |v| format!("{v:.0}/s"))
        ),
        tp.zip(peer_tp).map(|(a, b)| a / b),
        "×",
        tp.zip(peer_tp).map(|(a, b)| a >= 5.0 * b),
    );
    let cpu = f(&inv["c32"]["fleetfn_cpu_us_per_req"]);
    add(
        "fleetfn CPU per invoke c=32 (server + agent)",
        "≤ 60 µs".into(),
        cpu,
        "µs",
        cpu.map(|v| v <= 60.0),
    );
    let floor_cpu = f(&floor["c32"]["server_cpu_us_per_req"]);
    add(
        "fleetfn CPU per invoke c=32 vs floor",
        format!(
            "≈ ≤ 5 × floor ({})",
            floor_cpu.map_or("n/a".into(), |v| format!("{v:.1} µs"))
        ),
        cpu.zip(floor_cpu).map(|(a, b)| a / b),
        "×",
        cpu.zip(floor_cpu).map(|(a, b)| a <= 5.0 * b),
    );
    let sat = &r["saturation"];
    let t99 = f(&sat["throttled_p99_us"]);
    add(
        "Saturation: 429 p99",
        "≤ 1000 µs".into(),
        t99,
        "µs",
        t99.map(|v| v <= 1000.0),
    );
    let a99 = f(&sat["accepted_p99_us"]);
    let u99 = f(&sat["unloaded_accepted_p99_us"]);
    add(
        "Saturation: accepted p99 vs unloaded",
        format!(
            "≤ 2 × unloaded ({})",
            u99.map_or("n/a".into(), |v| format!("{v:.0} µs"))
        ),
        a99.zip(u99).map(|(a, b)| a / b),
        "×",
        a99.zip(u99).map(|(a, b)| a <= 2.0 * b),
    );
    let rt = &r["startup"]["runtimes"];
    for (rt_name, label, lim) in [
        ("provided.al2023", "Rust", 50.0),
        ("nodejs22.x", "Node", 300.0),
        ("python3.13", "Python", 500.0),
    ] {
        let v = f(&rt[rt_name]["init_ms_max"]);
        add(
            &format!("Start → Ready, {label} (slowest of 3)"),
            format!("≤ {lim} ms"),
            v,
            "ms",
            v.map(|v| v <= lim),
        );
    }
    let pa = f(&rt["provided.al2023"]["publish_to_active_ms"]);
    add(
        "Publish → Active (3 envs, Rust)",
        "≤ 2000 ms".into(),
        pa,
        "ms",
        pa.map(|v| v <= 2000.0),
    );
    let so = &r["scale-out"];
    let s = match (
        f(&so["seconds_to_new_envs_ready"]),
        f(&so["seconds_to_last_throttle"]),
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (None, Some(_)) if so.get("ready_before").is_some() => Some(f64::INFINITY),
        _ => None,
    };
    add(
        "Scale-out: doubling absorbed",
        "≤ 5 s".into(),
        s,
        "s",
        s.map(|v| v <= 5.0),
    );
    let g = f(&r["control-plane"]["get_function"]["p50_us"]);
    add(
        "GetFunction p50 (1,000 functions)",
        "≤ 500 µs".into(),
        g,
        "µs",
        g.map(|v| v <= 500.0),
    );
    let m = f(&r["memory"]["serve_idle_rss_kib"]).map(|k| k / 1024.0);
    add(
        "Idle `fleetfn serve` RSS",
        "≤ 50 MiB".into(),
        m,
        "MiB",
        m.map(|v| v <= 50.0),
    );
    t
}

fn us(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| {
        if x >= 10_000.0 {
            format!("{:.1} ms", x / 1000.0)
        } else {
            format!("{x:.0} µs")
        }
    })
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn load_row(name: &str, case: &str, v: &Value, cpu_key: &str) -> String {
    format!(
        "| {name} | {case} | {} | {} | {} | {} | {} | {} | {} |\n",
        us(&v["p50_us"]),
        us(&v["p99_us"]),
        us(&v["p999_us"]),
        num(&v["throughput_rps"], 0),
        num(&v["errors"], 0),
        num(&v[cpu_key], 1),
        num(&v["function_cpu_us_per_req"], 1),
    )
}

pub fn markdown(doc: &Value) -> String {
    let r = &doc["results"];
    let mut s = String::new();
    let m = &doc["machine"];
    let b = &doc["build"];
    s.push_str(&format!(
        "Run {} on {} ({} CPUs, {} MiB, Linux {}, root: {}{}); fleetfn {}{} built {} with {}; suite took {:.0} s.\n\n",
        doc["started_at"].as_str().unwrap_or("?"),
        m["cpu"].as_str().unwrap_or("?"),
        m["cpus"],
        m["memory_mib"],
        m["kernel"].as_str().unwrap_or("?"),
        m["root"],
        match (m["cpuidle_driver"].as_str(), m["guest_halt_poll_ns"].as_u64()) {
            (Some(d), Some(ns)) => format!(", cpuidle {d}, guest halt polling {ns} ns"),
            (Some(d), None) => format!(", cpuidle {d}"),
            _ => String::new(),
        },
        b["commit"].as_str().unwrap_or("?"),
        if b["dirty"] == true { " (+ uncommitted changes)" } else { "" },
        b["profile"].as_str().unwrap_or("?"),
        b["rustc"].as_str().unwrap_or("?"),
        doc["seconds"].as_f64().unwrap_or(0.0),
    ));
    s.push_str("| scenario | case | p50 | p99 | p99.9 | req/s | errors (non-200) | server CPU µs/req (fleetfn: server + agents) | function CPU µs/req |\n|---|---|---|---|---|---|---|---|---|\n");
    for c in ["c1", "c32", "c128"] {
        if r["floor"]["runs"][c].is_object() {
            s.push_str(&load_row(
                "floor: hyper echo",
                c,
                &r["floor"]["runs"][c],
                "server_cpu_us_per_req",
            ));
        }
    }
    for c in ["c1", "c32", "c128"] {
        if r["invoke-rust"]["runs"][c].is_object() {
            s.push_str(&load_row(
                "fleetfn Rust no-op",
                c,
                &r["invoke-rust"]["runs"][c],
                "fleetfn_cpu_us_per_req",
            ));
        }
    }
    for n in ["1", "32"] {
        for c in ["c1", "c32"] {
            let run = &r["cargo-lambda"]["by_concurrency"][n][c];
            if run.is_object() {
                s.push_str(&load_row(
                    &format!("cargo lambda watch --concurrency {n}"),
                    c,
                    run,
                    "peer_cpu_us_per_req",
                ));
            }
        }
    }
    for rt in ["python3.13", "nodejs22.x", "java21"] {
        if r["invoke-python-node"]["runs"][rt]["c32"].is_object() {
            s.push_str(&load_row(
                &format!("fleetfn {rt} no-op"),
                "c32",
                &r["invoke-python-node"]["runs"][rt]["c32"],
                "fleetfn_cpu_us_per_req",
            ));
        }
    }
    for n in ["n1", "n4", "n16", "n64"] {
        let v = &r["multi-concurrency"]["runs"][n];
        if v.is_object() {
            s.push_str(&load_row(
                "one env, sleep 10 ms",
                &format!(
                    "max {} (ideal {}/s, got {}/s ok = {:.0} %)",
                    &n[1..],
                    num(&v["ideal_rps"], 0),
                    num(&v["ok_rps"], 0),
                    v["efficiency"].as_f64().unwrap_or(0.0) * 100.0
                ),
                v,
                "fleetfn_cpu_us_per_req",
            ));
        }
    }
    let sat = &r["saturation"];
    if sat.is_object() {
        s.push_str(&load_row(
            "saturation 2× (open loop)",
            "all answers",
            &sat["overload"],
            "fleetfn_cpu_us_per_req",
        ));
    }
    let cp = &r["control-plane"];
    if cp.is_object() {
        s.push_str(&load_row(
            "GetFunction (1,000 fns)",
            "c1",
            &cp["get_function"],
            "server_cpu_us_per_req",
        ));
        s.push_str(&load_row(
            "ListFunctions first page",
            "c1",
            &cp["list_functions"],
            "server_cpu_us_per_req",
        ));
        let l = &cp["create_function_1mb"]["latency"];
        s.push_str(&format!(
            "| CreateFunction, 1 MB zip | sequential ×20 | {} | {} | {} | – | 0 | – | – |\n",
            us(&l["p50_us"]),
            us(&l["p99_us"]),
            us(&l["p999_us"])
        ));
    }
    s.push('\n');
    if sat.is_object() {
        s.push_str(&format!(
            "Saturation (capacity {}/s, offered 2×): accepted p50 {} / p99 {} (unloaded p99 {}), 429 p50 {} / p99 {}, {:.1} % throttled, {} accepted/s.\n\n",
            num(&sat["capacity_rps"], 0),
            us(&sat["accepted_p50_us"]),
            us(&sat["accepted_p99_us"]),
            us(&sat["unloaded_accepted_p99_us"]),
            us(&sat["throttled_p50_us"]),
            us(&sat["throttled_p99_us"]),
            sat["throttled_share"].as_f64().unwrap_or(0.0) * 100.0,
            num(&sat["accepted_rps"], 0),
        ));
    }
    if r["startup"].is_object() {
        s.push_str(
            "| runtime | publish → Active (3 envs) | start → Ready per env (ms) |\n|---|---|---|\n",
        );
        if let Some(o) = r["startup"]["runtimes"].as_object() {
            for (k, v) in o {
                s.push_str(&format!(
                    "| {k} | {} ms | {} |\n",
                    num(&v["publish_to_active_ms"], 0),
                    v["init_ms"]
                ));
            }
        }
        s.push('\n');
    }
    let so = &r["scale-out"];
    if so.is_object() {
        s.push_str(&format!(
            "Scale-out: Ready {} → {}; enough environments for the doubled load Ready {} s after the doubling; last throttle at {} s; {} throttled answers after it ({} invokes by the added clients).\n\n",
            so["ready_before"], so["ready_max_after"], num(&so["seconds_to_new_envs_ready"], 2), num(&so["seconds_to_last_throttle"], 2), so["throttled_after_doubling"], so["invokes_by_added_clients"]
        ));
    }
    let mem = &r["memory"];
    if mem.is_object() {
        s.push_str(&format!(
            "Memory: `fleetfn serve` idle RSS {:.1} MiB (PSS {:.1}); with 100 environments on {} instances: serve RSS {:.1} MiB, per agent RSS {:.1} MiB / PSS {:.1} MiB, per environment: runtime PSS {:.1} MiB, fleetfn overhead (agents + server growth) PSS {:.2} MiB.\n\n",
            mem["serve_idle_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            mem["serve_idle_pss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            mem["instances"],
            mem["serve_loaded_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            mem["per_agent_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            mem["per_agent_pss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            mem["per_env_runtime_pss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            mem["per_env_fleetfn_overhead_pss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        ));
    }
    for name in ["async", "sqs-mapping"] {
        if let Some(line) = r[name]["summary"].as_str() {
            s.push_str(line);
            s.push_str(".\n\n");
        }
    }
    if let Some(errs) = doc["errors"].as_object()
        && !errs.is_empty()
    {
        s.push_str("Scenarios that failed to run:\n");
        for (k, v) in errs {
            s.push_str(&format!("- {k}: {}\n", v.as_str().unwrap_or("?")));
        }
        s.push('\n');
    }
    s.push_str("| target | goal | measured | result |\n|---|---|---|---|\n");
    for (name, target, measured, ok) in targets(r) {
        let res = match ok {
            Some(true) => "pass",
            Some(false) => "**miss**",
            None => "not run",
        };
        s.push_str(&format!("| {name} | {target} | {measured} | {res} |\n"));
    }
    s
}
