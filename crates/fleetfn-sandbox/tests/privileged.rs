//! Runs the real helper (`fleetfn-sandbox-test-helper`, i.e. `jail_main`) on this host.
//!
//! The tests in `needs_root` are `#[ignore]`d unless run with `--include-ignored` (as
//! `scripts/test` does, as root); run, each checks the host first and fails, saying why, when it
//! is not root, a namespace cannot be unshared, or (for the limit tests) cgroups are unusable
//! (`fleetfn_testutil::require`). Each test uses its own cgroup slice
//! (`fleetfn-test-<pid>-<test>`) and temp dirs; guards kill running helpers and remove the slice
//! even when an assertion fails. Mounts live only in the helpers' private mount namespaces and
//! vanish with them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fleetfn_sandbox::{
    CgroupLimits, CgroupSpec, Cgroups, Controller, EXTENSION_EXIT_CODE, ExtensionProcess,
    Isolation, LinuxHost, Namespaces, SETUP_FAILURE_EXIT_CODE, SandboxSpec, parse_extension_exit,
    probe,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const HELPER: &str = env!("CARGO_BIN_EXE_fleetfn-sandbox-test-helper");
const TIMEOUT: Duration = Duration::from_secs(60);

/// This host's isolation; the test fails, saying what is missing, when the host is not root, a
/// namespace cannot be unshared, or (`needs_cgroups`) cgroups cannot limit memory and CPU.
fn host(needs_cgroups: bool) -> Isolation {
    let iso = probe(&LinuxHost);
    let missing = if !iso.root {
        Some("not root".to_owned())
    } else if iso.namespaces != Namespaces::all() {
        Some(format!(
            "only namespaces {} can be unshared",
            iso.namespaces
        ))
    } else if needs_cgroups && !iso.cgroups.as_ref().is_some_and(|c| c.can_limit()) {
        Some("no usable memory+cpu cgroups".to_owned())
    } else {
        None
    };
    let found = match missing {
        Some(why) => Err(format!("{why} ({iso})")),
        None => Ok(iso),
    };
    fleetfn_testutil::require(fleetfn_testutil::ROOT, found)
}

/// Temp dirs of one test plus its cgroup slice; removes the slice on drop.
struct Fixture {
    dir: tempfile::TempDir,
    cgroups: Option<Cgroups>,
    slice: String,
}

impl Fixture {
    fn new(test: &str, iso: &Isolation) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("code");
        std::fs::create_dir(&code).unwrap();
        // World-writable: only the read-only mount can stop the sandbox user writing here.
        std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(code.join("hello.txt"), "hello from the code dir\n").unwrap();
        let slice = format!("fleetfn-test-{}-{test}", std::process::id());
        let cgroups = iso
            .cgroups
            .clone()
            .map(|layout| Cgroups::new(layout, &slice).unwrap());
        Self {
            dir,
            cgroups,
            slice,
        }
    }

    fn cgroups(&self) -> &Cgroups {
        self.cgroups
            .as_ref()
            .expect("cgroups checked by host(true)")
    }

    fn rootfs(&self, env: &str) -> PathBuf {
        let root = self.dir.path().join("envs").join(env);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    /// A spec running `/bin/sh -c script` as `uid`, with no cgroup.
    fn spec(&self, env: &str, uid: u32, script: &str) -> SandboxSpec {
        SandboxSpec {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("LANG".into(), "C".into()),
            ],
            cwd: "/var/task".into(),
            code_dir: self.dir.path().join("code"),
            extra_ro_binds: Vec::new(),
            tmp_size_mb: 16,
            uid,
            gid: uid,
            rootfs_dir: self.rootfs(env),
            namespaces: Namespaces::all(),
            cgroup: None,
            no_new_privs: true,
            rlimits: Default::default(),
            netns: None,
            seccomp: true,
            resolv_conf: None,
            opt_dir: None,
            hosts_file: None,
            extensions: Vec::new(),
            extension_output: Vec::new(),
        }
    }

    fn cgroup(&self, env: &str) -> CgroupSpec {
        let root = match self.cgroups().layout() {
            fleetfn_sandbox::CgroupLayout::V1 { root, .. }
            | fleetfn_sandbox::CgroupLayout::V2 { root, .. } => root.clone(),
        };
        CgroupSpec {
            root,
            slice: self.slice.clone(),
            ..CgroupSpec::new(env)
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.cgroups.as_ref().map(Cgroups::remove_slice) {
            eprintln!("cleanup of cgroup slice {} failed: {e}", self.slice);
        }
    }
}

/// A running helper, SIGKILLed and reaped on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// Waits for a stdout line equal to `wanted`, returning the lines before it.
    fn wait_for_line(&self, wanted: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(TIMEOUT) {
                Ok(line) if line == wanted => return seen,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no {wanted:?} line ({e}); saw {seen:?}"),
            }
        }
    }

    fn wait(&mut self) -> ExitStatus {
        for _ in 0..TIMEOUT.as_millis() / 20 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("helper {} did not exit within {TIMEOUT:?}", self.child.id());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_with_stdout_lines(spec: &SandboxSpec) -> Running {
    let mut child = Command::new(HELPER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let json = serde_json::to_string(spec).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running { child, lines }
}

/// Runs the helper to completion and returns its output (bounded by [`TIMEOUT`]).
fn run(spec: &SandboxSpec) -> Output {
    let mut child = Command::new(HELPER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let json = serde_json::to_string(spec).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL);
            panic!("helper did not finish within {TIMEOUT:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `key=value` lines of the output.
fn values(output: &Output) -> BTreeMap<String, String> {
    text(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Host pids of live (not zombie) processes running as `uid`.
fn processes_of(uid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
        };
        if field("Uid:").as_deref() == Some(&uid.to_string())
            && field("State:").as_deref() != Some("Z")
        {
            pids.push(pid);
        }
    }
    pids
}

fn wait_until_no_process_of(uid: u32) {
    for _ in 0..250 {
        if processes_of(uid).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = processes_of(uid);
    for pid in &left {
        let _ = kill(Pid::from_raw(i32::try_from(*pid).unwrap()), Signal::SIGKILL);
    }
    panic!("processes of uid {uid} survived their supervisor: {left:?}");
}

fn libc_sigkill() -> i32 {
    Signal::SIGKILL as i32
}

#[test]
fn probe_describes_this_host() {
    let iso = probe(&LinuxHost);
    println!("{iso}");
    assert!(iso.to_string().starts_with("sandbox: "));
    assert_eq!(iso.use_helper(), !iso.plain_command_allowed());
    if nix::unistd::geteuid().is_root() {
        assert!(iso.root);
    }
}

mod needs_root {
    use super::*;

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn runs_unprivileged_in_a_private_read_only_root() {
        let iso = host(false);
        let fx = Fixture::new("identity", &iso);
        let data_dir = tempfile::Builder::new()
            .prefix("fleetfn-agent-data")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::write(data_dir.path().join("secret"), "s3cr3t").unwrap();
        let data = data_dir.path().display();
        let script = format!(
            r#"
        echo uid=$(id -u) gid=$(id -g) groups=$(id -G)
        echo host=$(hostname) cwd=$(pwd)
        echo root=$(ls / | tr '\n' ' ')
        echo var=$(ls /var | tr '\n' ' ')
        echo code=$(cat /var/task/hello.txt)
        if echo x > /var/task/x 2>/dev/null; then echo task=writable; else echo task=readonly; fi
        if echo x > /etc/fleetfn-test 2>/dev/null; then echo etc=writable; else echo etc=readonly; fi
        if echo x > /tmp/t && [ "$(cat /tmp/t)" = x ]; then echo tmp=writable; fi
        echo tmpkb=$(df -k /tmp | tail -1 | awk '{{print $2}}')
        echo tmpfs=$(awk '$2 == "/tmp" {{print $3}}' /proc/self/mounts)
        if [ -e /root ]; then echo hostroot=visible; else echo hostroot=hidden; fi
        if [ -e {data} ] || [ -e {data}/secret ]; then echo data=visible; else echo data=hidden; fi
        echo nonewprivs=$(awk '/^NoNewPrivs/ {{print $2}}' /proc/self/status)
        echo capeff=$(awk '/^CapEff/ {{print $2}}' /proc/self/status)
        echo capbnd=$(awk '/^CapBnd/ {{print $2}}' /proc/self/status)
        echo nofile=$(ulimit -n)
        echo envcount=$(env | wc -l)
        echo fd200=$(if [ -e /proc/$$/fd/200 ]; then echo leaked; else echo closed; fi)
        echo sigign=$(awk '/^SigIgn/ {{print $2}}' /proc/self/status)
        if [ -w /dev/null ] && head -c 4 /dev/urandom | wc -c | grep -q 4; then echo dev=ok; fi
        "#
        );
        // A descriptor the agent leaked without close-on-exec must not reach the runtime.
        let leaked = std::fs::File::open("/dev/null").unwrap();
        nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&leaked), 200).unwrap();
        let output = run(&fx.spec("e1", 10_101, &script));
        nix::unistd::close(200).unwrap();
        assert!(output.status.success(), "{output:?}");
        let v = values(&output);
        assert_eq!(v["uid"], "10101 gid=10101 groups=10101", "{v:?}");
        assert_eq!(v["host"], "fleetfn-env cwd=/var/task");
        assert_eq!(
            v["root"].trim(),
            "bin dev etc lib lib64 proc sbin tmp usr var"
        );
        assert_eq!(v["var"].trim(), "task");
        assert_eq!(v["code"], "hello from the code dir");
        assert_eq!(v["task"], "readonly");
        assert_eq!(v["etc"], "readonly");
        assert_eq!(v["tmp"], "writable");
        assert_eq!(v["tmpkb"], "16384");
        assert_eq!(v["tmpfs"], "tmpfs");
        assert_eq!(v["hostroot"], "hidden");
        assert_eq!(v["data"], "hidden");
        assert_eq!(v["nonewprivs"], "1");
        assert_eq!(v["capeff"], "0000000000000000");
        assert_eq!(v["capbnd"], "0000000000000000");
        assert_eq!(v["nofile"], "1024");
        // PATH, LANG, and the PWD/SHLVL-style variables sh adds itself; nothing from the test.
        assert!(v["envcount"].parse::<u32>().unwrap() <= 5, "{v:?}");
        assert_eq!(v["dev"], "ok");
        assert_eq!(v["fd200"], "closed");
        // The helper is a Rust program (SIGPIPE ignored); the runtime gets default dispositions.
        assert_eq!(v["sigign"], "0000000000000000");
        assert!(!fx.dir.path().join("code/x").exists());
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn pid_namespace_shows_only_the_sandbox() {
        let iso = host(false);
        let fx = Fixture::new("pidns", &iso);
        let script = r#"
        echo self=$$
        echo pid1=$(tr '\0' ' ' < /proc/1/cmdline)
        echo pids=$(ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\n' ' ')
        ps -e -o pid= 2>/dev/null | wc -l | sed 's/^/ps=/'
    "#;
        let output = run(&fx.spec("e1", 10_102, script));
        assert!(output.status.success(), "{output:?}");
        let v = values(&output);
        assert_eq!(v["self"], "1");
        assert!(v["pid1"].starts_with("/bin/sh -c"), "{v:?}");
        let pids: Vec<u32> = v["pids"]
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(pids[0], 1);
        assert!(
            pids.len() <= 6 && pids.iter().all(|&p| p < 100),
            "foreign processes visible: {pids:?}"
        );
        assert!(!pids.contains(&std::process::id()));
        if let Some(ps) = v.get("ps") {
            assert!(
                ps.trim().parse::<u32>().unwrap() <= 6,
                "ps sees {ps} processes"
            );
        }
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn tmp_is_private_to_each_environment() {
        let iso = host(false);
        let fx = Fixture::new("tmp", &iso);
        let a = fx.spec(
            "a",
            10_103,
            "echo secret-a > /tmp/marker && echo ready && exec sleep 300",
        );
        let mut running = spawn_with_stdout_lines(&a);
        running.wait_for_line("ready");

        let b = fx.spec(
            "b",
            10_104,
            "if [ -e /tmp/marker ]; then echo b=sees-a; else echo b=clean; fi; ls -A /tmp | wc -l",
        );
        let output = run(&b);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(text(&output.stdout), "b=clean\n0\n");

        // On the host, A's rootfs dir stays an empty directory: the tmpfs lives in A's namespace.
        let host_view: Vec<_> = std::fs::read_dir(&a.rootfs_dir).unwrap().collect();
        assert!(host_view.is_empty(), "{host_view:?}");

        // Killing the supervisor kills the sandbox (parent-death signal, then pid-namespace teardown).
        kill(running.pid(), Signal::SIGKILL).unwrap();
        assert_eq!(running.wait().signal(), Some(libc_sigkill()));
        wait_until_no_process_of(a.uid);
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn exit_codes_and_setup_failures() {
        let iso = host(false);
        let fx = Fixture::new("exit", &iso);
        assert_eq!(run(&fx.spec("e1", 10_105, "exit 7")).status.code(), Some(7));
        assert_eq!(run(&fx.spec("e1", 10_105, "true")).status.code(), Some(0));

        // Signal deaths become 128 + signal (outside a pid namespace the shell can kill itself).
        let mut spec = fx.spec("e1", 10_105, "kill -KILL $$");
        spec.namespaces.pid = false;
        assert_eq!(run(&spec).status.code(), Some(128 + 9));

        let mut spec = fx.spec("e1", 10_105, "");
        spec.argv = vec!["/var/task/bootstrap".into()];
        let output = run(&spec);
        assert_eq!(output.status.code(), Some(SETUP_FAILURE_EXIT_CODE));
        assert_eq!(
            text(&output.stderr),
            "fleetfn-sandbox: exec /var/task/bootstrap: ENOENT: No such file or directory\n"
        );

        // Present but not executable by the sandbox user.
        std::fs::write(fx.dir.path().join("code/bootstrap"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(
            fx.dir.path().join("code/bootstrap"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let output = run(&spec);
        assert_eq!(output.status.code(), Some(SETUP_FAILURE_EXIT_CODE));
        assert!(
            text(&output.stderr).starts_with("fleetfn-sandbox: exec /var/task/bootstrap: EACCES"),
            "{output:?}"
        );

        let mut spec = fx.spec("e1", 10_105, "true");
        spec.code_dir = fx.dir.path().join("missing");
        let output = run(&spec);
        assert_eq!(output.status.code(), Some(SETUP_FAILURE_EXIT_CODE));
        let message = text(&output.stderr);
        assert!(
            message.starts_with("fleetfn-sandbox: code ") && message.contains("No such file"),
            "{message}"
        );
        assert_eq!(
            fleetfn_sandbox::JailError::parse(message.trim())
                .unwrap()
                .step,
            format!("code {}", spec.code_dir.display())
        );

        let mut spec = fx.spec("e1", 10_105, "true");
        spec.uid = 0;
        let output = run(&spec);
        assert_eq!(output.status.code(), Some(SETUP_FAILURE_EXIT_CODE));
        assert_eq!(
            text(&output.stderr),
            "fleetfn-sandbox: spec: uid and gid must not be 0\n"
        );
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn sigterm_is_forwarded_to_the_runtime() {
        let iso = host(false);
        let fx = Fixture::new("sigterm", &iso);
        // pid 1 of a namespace only receives signals it handles, as a Lambda runtime would.
        let script = "trap 'echo got-term; exit 42' TERM; echo ready; sleep 300 & wait";
        let mut running = spawn_with_stdout_lines(&fx.spec("e1", 10_106, script));
        running.wait_for_line("ready");
        kill(running.pid(), Signal::SIGTERM).unwrap();
        running.wait_for_line("got-term");
        assert_eq!(running.wait().code(), Some(42));
        // The backgrounded sleep died with pid 1.
        wait_until_no_process_of(10_106);
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn memory_limit_oom_kills_only_what_exceeds_it() {
        let iso = host(true);
        let fx = Fixture::new("oom", &iso);
        let cgroups = fx.cgroups();
        let mut spec = fx.spec("e1", 10_107, "");
        spec.extra_ro_binds = vec![(HELPER.into(), "/opt/fleetfn-test/helper".into())];
        spec.cgroup = Some(CgroupSpec {
            memory_bytes: Some(64 << 20),
            ..fx.cgroup("e1")
        });

        spec.argv = vec![
            "/opt/fleetfn-test/helper".into(),
            "alloc".into(),
            "16".into(),
        ];
        let output = run(&spec);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(text(&output.stdout), "allocated 16\n");
        let before = cgroups.stats("e1").unwrap();
        assert_eq!(before.oom_kills, 0);
        assert!(
            before.memory_peak_bytes.unwrap_or(u64::MAX) >= 16 << 20,
            "{before:?}"
        );

        spec.argv[2] = "256".into();
        let output = run(&spec);
        assert_eq!(output.status.code(), Some(128 + 9), "{output:?}");
        let after = cgroups.stats("e1").unwrap();
        assert!(
            after.oom_kills > before.oom_kills,
            "{before:?} -> {after:?}"
        );
        assert!(
            after.memory_peak_bytes.unwrap_or(0) <= 64 << 20,
            "{after:?}"
        );
        assert_eq!(cgroups.procs("e1").unwrap(), Vec::<u32>::new());
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn cpu_quota_and_pids_limit_are_applied() {
        let iso = host(true);
        let fx = Fixture::new("cpu", &iso);
        let cgroups = fx.cgroups();
        let mut spec = fx.spec(
            "e1",
            10_108,
            "cat /proc/self/cgroup; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo done",
        );
        // Half a CPU in 10 ms periods: the busy loop (tens of ms of CPU) runs out of quota in
        // some period, and the kernel counts it.
        spec.cgroup = Some(CgroupSpec {
            cpu_quota_us: Some(5_000),
            cpu_period_us: Some(10_000),
            pids_max: Some(32),
            memory_bytes: Some(128 << 20),
            ..fx.cgroup("e1")
        });
        let output = run(&spec);
        assert!(output.status.success(), "{output:?}");
        let stdout = text(&output.stdout);
        assert!(stdout.ends_with("done\n"), "{stdout}");
        let suffix = format!("/{}/e1", fx.slice);
        assert!(
            stdout.lines().any(|l| l.ends_with(&suffix)),
            "not in {suffix}: {stdout}"
        );

        let read = |c: Controller, file: &str| {
            let dir = cgroups.controller_dir("e1", c).unwrap().unwrap();
            std::fs::read_to_string(dir.join(file))
                .unwrap()
                .trim()
                .to_owned()
        };
        match cgroups.layout() {
            fleetfn_sandbox::CgroupLayout::V1 { .. } => {
                assert_eq!(read(Controller::Cpu, "cpu.cfs_quota_us"), "5000");
                assert_eq!(read(Controller::Cpu, "cpu.cfs_period_us"), "10000");
                assert_eq!(
                    read(Controller::Memory, "memory.limit_in_bytes"),
                    "134217728"
                );
            }
            fleetfn_sandbox::CgroupLayout::V2 { .. } => {
                assert_eq!(read(Controller::Cpu, "cpu.max"), "5000 10000");
                assert_eq!(read(Controller::Memory, "memory.max"), "134217728");
            }
        }
        if cgroups.layout().has(Controller::Pids) {
            assert_eq!(read(Controller::Pids, "pids.max"), "32");
        }
        let stats = cgroups.stats("e1").unwrap();
        assert!(stats.cpu_usage_ns > 0, "{stats:?}");
        assert!(stats.cpu_throttled_periods > 0, "{stats:?}");
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn kill_all_and_remove_leave_nothing_behind() {
        let iso = host(true);
        let fx = Fixture::new("kill", &iso);
        let cgroups = fx.cgroups();
        let mut spec = fx.spec("e1", 10_109, "sleep 300 & sleep 300 & echo ready; wait");
        spec.cgroup = Some(fx.cgroup("e1"));
        let mut running = spawn_with_stdout_lines(&spec);
        running.wait_for_line("ready");
        // Supervisor, pid 1 and two sleeps.
        assert!(cgroups.procs("e1").unwrap().len() >= 4);

        cgroups.kill_all("e1").unwrap();
        assert_eq!(running.wait().signal(), Some(libc_sigkill()));
        assert_eq!(cgroups.procs("e1").unwrap(), Vec::<u32>::new());
        cgroups.remove("e1").unwrap();
        for dir in cgroups.env_dirs("e1").unwrap() {
            assert!(!dir.exists(), "{}", dir.display());
        }
        cgroups.remove_slice().unwrap();
        for dir in cgroups.slice_dirs() {
            assert!(!dir.exists(), "{}", dir.display());
        }
        // No mount of this test's rootfs is visible on the host.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            !mounts.contains(fx.dir.path().to_str().unwrap()),
            "{mounts}"
        );
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn instance_slices_nest_sweep_and_let_a_process_go_back() {
        let iso = host(true);
        let fx = Fixture::new("nest", &iso);
        let top = fx.cgroups();
        top.create_slice().unwrap();
        // A process to move around (an agent, say): the helper holding 1 MiB until killed.
        struct KillOnDrop(Child);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut hog = KillOnDrop(
            Command::new(HELPER)
                .args(["hold", "1"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        BufReader::new(hog.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "allocated 1");
        let pid = hog.0.id();
        let origin =
            top.membership(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap());

        // Instance slice with limits; the process in its leaf; an environment below.
        let inst = top.child("i-live").unwrap();
        inst.create_slice().unwrap();
        top.set_limits(
            "i-live",
            &CgroupLimits {
                memory_bytes: Some(256 << 20),
                cpu_quota_us: Some(50_000),
                ..CgroupLimits::default()
            },
        )
        .unwrap();
        inst.create("agent").unwrap();
        inst.add_process("agent", pid).unwrap();
        inst.create("e-1").unwrap();
        let env_quota = |quota| CgroupLimits {
            cpu_quota_us: Some(quota),
            ..CgroupLimits::default()
        };
        inst.set_limits("e-1", &env_quota(25_000)).unwrap();
        if top.layout().version() == 1 {
            // v1 refuses a child quota above its parent's: the agent clamps environments.
            assert!(inst.set_limits("e-1", &env_quota(100_000)).is_err());
        }
        top.child("i-dead").unwrap().create("e-2").unwrap();
        assert_eq!(top.subtree_procs("i-live").unwrap(), [pid]);
        assert!(top.stats("i-live").is_ok());

        // Only the process-free instance goes; then the process goes back and its slice follows.
        assert_eq!(top.sweep(&[], &|_| false), ["i-dead"]);
        assert_eq!(top.list().unwrap(), ["i-live"]);
        origin.rejoin(pid).unwrap();
        assert_eq!(top.subtree_procs("i-live").unwrap(), Vec::<u32>::new());
        assert_eq!(top.sweep(&[], &|_| false), ["i-live"]);
        assert_eq!(top.list().unwrap(), Vec::<String>::new());
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn seccomp_denies_new_namespaces_and_tracing() {
        let iso = host(false);
        let fx = Fixture::new("seccomp", &iso);
        let script = r#"
        unshare -U true 2>/dev/null; echo userns=$?
        unshare -m true 2>/dev/null; echo mountns=$?
        python3 -c 'import ctypes, os; l = ctypes.CDLL(None, use_errno=True); r = l.syscall(321, 0, 0, 0); print("bpf=%d/%d" % (r, ctypes.get_errno()))'
        python3 -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); r = l.ptrace(0, 0, 0, 0); print("ptrace=%d/%d" % (r, ctypes.get_errno()))'
        python3 -c 'import threading; t = threading.Thread(target=print, args=("thread=ok",)); t.start(); t.join()'
    "#;
        let on = values(&run(&fx.spec("e-sc-on", 20_101, script)));
        assert_ne!(on["userns"], "0", "a user namespace was created: {on:?}");
        assert_ne!(on["mountns"], "0");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(on["bpf"], "-1/1", "bpf(2) must fail with EPERM");
        }
        assert_eq!(on["ptrace"], "-1/1", "ptrace(2) must fail with EPERM");
        assert_eq!(
            on["thread"], "ok",
            "ordinary threads (clone without CLONE_NEW*) still work"
        );
        // Without the filter the same unprivileged user can create a user namespace on this
        // kernel, so the refusal above is the filter's doing.
        let mut spec = fx.spec("e-sc-off", 20_102, script);
        spec.seccomp = false;
        let off = values(&run(&spec));
        assert_eq!(
            off["ptrace"], "0/0",
            "PTRACE_TRACEME works without the filter: {off:?}"
        );
        if off["userns"] != "0" {
            println!("note: this kernel refuses unprivileged user namespaces anyway ({off:?})");
        }
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn network_namespace_keeps_the_runtime_api_inside() {
        let iso = host(false);
        let fx = Fixture::new("netns", &iso);
        let leases = fleetfn_sandbox::LeaseDir::new(fleetfn_sandbox::DEFAULT_LEASE_DIR);
        let slot = leases
            .acquire_slot(fleetfn_sandbox::net::slot_count(), std::process::id())
            .unwrap();
        let mut net = fleetfn_sandbox::EnvNetwork::create(slot.slot(), false).unwrap();
        let listener = net.take_listener().unwrap();
        assert_eq!(listener.local_addr().unwrap().to_string(), "127.0.0.1:9001");
        listener.set_nonblocking(true).unwrap();
        // The host's loopback is another network: nothing sent there reaches the listener.
        let _ = std::net::TcpStream::connect_timeout(
            &"127.0.0.1:9001".parse().unwrap(),
            Duration::from_millis(200),
        );
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "a connection from the host reached the environment's listener"
        );
        listener.set_nonblocking(false).unwrap();
        let accepted = std::thread::spawn(move || {
            let (mut stream, peer) = listener.accept().unwrap();
            std::io::Write::write_all(&mut stream, b"hello\n").unwrap();
            peer
        });
        let mut spec = fx.spec(
        "e-netns",
        20_103,
        r#"python3 -c 'import socket; s = socket.create_connection(("127.0.0.1", 9001), 5); print("inside=" + s.recv(16).decode().strip())'
        ip -o link 2>/dev/null | wc -l | sed "s/^/links=/" || true"#,
    );
        spec.netns = Some(net.ns_path());
        let out = run(&spec);
        let v = values(&out);
        assert_eq!(
            v.get("inside").map(String::as_str),
            Some("hello"),
            "{}",
            text(&out.stderr)
        );
        let peer = accepted.join().unwrap();
        assert!(peer.ip().is_loopback());
    }

    /// Writes executable `/bin/sh` scripts into `<opt>/extensions/` and returns the opt dir
    /// and the spec's extension list.
    fn extensions_opt(fx: &Fixture, scripts: &[(&str, &str)]) -> (PathBuf, Vec<ExtensionProcess>) {
        let opt = fx.dir.path().join("opt");
        let dir = opt.join("extensions");
        std::fs::create_dir_all(&dir).unwrap();
        let mut list = Vec::new();
        for (name, body) in scripts {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            list.push(ExtensionProcess {
                name: (*name).to_owned(),
                path: PathBuf::from(format!("/opt/extensions/{name}")),
            });
        }
        (opt, list)
    }

    /// A helper running an init: the spec was sent as one line, stdin is kept for the gate.
    struct Gated {
        child: Child,
        stdin: Option<ChildStdin>,
        lines: mpsc::Receiver<String>,
        stderr: Option<std::thread::JoinHandle<String>>,
    }

    impl Gated {
        fn spawn(spec: &SandboxSpec) -> Self {
            Self::spawn_with(spec, Command::new(HELPER))
        }

        /// [`Gated::spawn`] with a command already set up (e.g. passing descriptors).
        fn spawn_with(spec: &SandboxSpec, mut cmd: Command) -> Self {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let line = format!("{}\n", serde_json::to_string(spec).unwrap());
            stdin.write_all(line.as_bytes()).unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut err = child.stderr.take().unwrap();
            let stderr = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut err, &mut text);
                text
            });
            Self {
                child,
                stdin: Some(stdin),
                lines,
                stderr: Some(stderr),
            }
        }

        fn send(&mut self, bytes: &[u8]) {
            let stdin = self.stdin.as_mut().expect("stdin still open");
            stdin.write_all(bytes).unwrap();
            stdin.flush().unwrap();
        }

        /// Waits for the line `wanted` on stdout; returns the lines before it.
        fn wait_for_line(&self, wanted: &str) -> Vec<String> {
            let mut seen = Vec::new();
            loop {
                match self.lines.recv_timeout(TIMEOUT) {
                    Ok(line) if line == wanted => return seen,
                    Ok(line) => seen.push(line),
                    Err(e) => panic!("no {wanted:?} line ({e}); saw {seen:?}"),
                }
            }
        }

        /// Every stdout line still to come, up to end of file.
        fn rest_of_lines(&self) -> Vec<String> {
            let mut lines = Vec::new();
            while let Ok(line) = self.lines.recv_timeout(TIMEOUT) {
                lines.push(line);
            }
            lines
        }

        /// The lines that arrived so far, without waiting.
        fn lines_so_far(&self) -> Vec<String> {
            self.lines.try_iter().collect()
        }

        /// Waits for the helper to exit; returns its status and stderr.
        fn finish(&mut self) -> (ExitStatus, String) {
            for _ in 0..TIMEOUT.as_millis() / 20 {
                if let Some(status) = self.child.try_wait().unwrap() {
                    let stderr = self.stderr.take().unwrap().join().unwrap();
                    return (status, stderr);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("helper {} did not exit within {TIMEOUT:?}", self.child.id());
        }

        fn pid(&self) -> Pid {
            Pid::from_raw(i32::try_from(self.child.id()).unwrap())
        }
    }

    impl Drop for Gated {
        fn drop(&mut self) {
            if self.child.try_wait().ok().flatten().is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    /// Command lines of `uid`'s live processes.
    fn cmdlines_of(uid: u32) -> Vec<String> {
        processes_of(uid)
            .into_iter()
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .collect()
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn init_starts_extensions_then_the_runtime_at_the_gate() {
        let iso = host(false);
        let fx = Fixture::new("ext-gate", &iso);
        let ext = |name: &str| {
            format!(
                r#"echo "uid=$(id -u) cwd=$(pwd) stdin=$(readlink /proc/self/fd/0) var=$TEST_VAR" > /tmp/{name}
echo {name}-up
exec sleep 600"#
            )
        };
        let (opt, extensions) =
            extensions_opt(&fx, &[("ext-a", &ext("ext-a")), ("ext-b", &ext("ext-b"))]);
        let uid = 20_301;
        let mut spec = fx.spec(
            "e-gate",
            uid,
            r#"echo runtime-script-started
            echo a=$(cat /tmp/ext-a)
            echo b=$(cat /tmp/ext-b)
            echo stdin=$(readlink /proc/self/fd/0)
            echo pid1=$(tr '\0' ' ' < /proc/1/cmdline)
            echo procs=$(ls /proc | grep -cE '^[0-9]+$')
            # An orphan (its parent subshell is gone) that exits: init must reap it.
            ( sleep 0.1 & )
            sleep 0.6
            echo zombies=$(grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l)
            exit 7"#,
        );
        spec.env.push(("TEST_VAR".into(), "same-env".into()));
        spec.opt_dir = Some(opt);
        spec.extensions = extensions;
        let mut gated = Gated::spawn(&spec);
        let mut up = Vec::new();
        while up.len() < 2 {
            let line = gated
                .lines
                .recv_timeout(TIMEOUT)
                .expect("extension up lines");
            up.push(line);
        }
        up.sort();
        assert_eq!(up, ["ext-a-up", "ext-b-up"]);
        // Both extensions run; the runtime does not until the gate byte comes.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            gated.lines_so_far().is_empty(),
            "output before the gate byte"
        );
        let cmdlines = cmdlines_of(uid);
        assert!(
            !cmdlines
                .iter()
                .any(|c| c.contains("runtime-script-started")),
            "the runtime started before the gate: {cmdlines:?}"
        );
        assert_eq!(
            cmdlines
                .iter()
                .filter(|c| c.starts_with("sleep 600"))
                .count(),
            2,
            "{cmdlines:?}"
        );
        gated.send(b"G");
        gated.wait_for_line("runtime-script-started");
        let (status, stderr) = gated.finish();
        assert_eq!(status.code(), Some(7), "the runtime's status: {stderr}");
        let v: BTreeMap<String, String> = gated
            .rest_of_lines()
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let same = format!("uid={uid} cwd=/var/task stdin=/dev/null var=same-env");
        assert_eq!(v["a"], same, "{v:?}");
        assert_eq!(v["b"], same, "{v:?}");
        assert_eq!(v["stdin"], "/dev/null");
        // Init is pid 1 (the helper), not the runtime.
        assert_eq!(v["pid1"].trim(), HELPER, "{v:?}");
        // Init, two extensions, the runtime and its command substitution's processes.
        assert!(v["procs"].parse::<u32>().unwrap() <= 8, "{v:?}");
        assert_eq!(v["zombies"], "0", "orphans are reaped: {v:?}");
        // The runtime's exit took the extensions with it.
        wait_until_no_process_of(uid);
    }
    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn extensions_write_on_their_own_output_descriptors() {
        use std::os::fd::{AsFd, OwnedFd};
        use std::os::unix::fs::MetadataExt;

        let iso = host(false);
        let fx = Fixture::new("ext-output", &iso);
        let ext = |name: &str| {
            format!(
                r#"echo {name}-out
echo {name}-err >&2
touch /tmp/{name}-up
exec sleep 600"#
            )
        };
        let (opt, extensions) =
            extensions_opt(&fx, &[("ext-a", &ext("ext-a")), ("ext-b", &ext("ext-b"))]);
        let mut spec = fx.spec(
            "e-output",
            20_311,
            r#"while [ ! -e /tmp/ext-a-up ] || [ ! -e /tmp/ext-b-up ]; do sleep 0.05; done
            echo runtime-out
            echo runtime-err >&2
            for f in /proc/$$/fd/*; do echo "fd=$(readlink $f)"; done
            echo runtime-done"#,
        );
        spec.opt_dir = Some(opt);
        spec.extensions = extensions;
        let (readers, writers): (Vec<_>, Vec<OwnedFd>) = (0..2)
            .map(|_| {
                let (r, w) = std::io::pipe().unwrap();
                (r, OwnedFd::from(w))
            })
            .unzip();
        let inodes: Vec<String> = readers
            .iter()
            .map(|r| {
                let fd = r.as_fd().try_clone_to_owned().unwrap();
                format!(
                    "pipe:[{}]",
                    std::fs::File::from(fd).metadata().unwrap().ino()
                )
            })
            .collect();
        let mut cmd = Command::new(HELPER);
        spec.extension_output = fleetfn_sandbox::pass_extension_outputs(&mut cmd, writers);
        let mut gated = Gated::spawn_with(&spec, cmd);
        // The agent's copies of the write ends closed with the command: each read below ends
        // at EOF once the sandbox (its only other holder) is gone.
        let collected: Vec<_> = readers
            .into_iter()
            .map(|mut r| {
                std::thread::spawn(move || {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut r, &mut text).unwrap();
                    text
                })
            })
            .collect();
        gated.send(b"G");
        let mut lines = gated.wait_for_line("runtime-out");
        lines.extend(gated.rest_of_lines());
        let (status, stderr) = gated.finish();
        assert_eq!(status.code(), Some(0), "{stderr}");
        let outputs: Vec<String> = collected.into_iter().map(|t| t.join().unwrap()).collect();
        // Each extension's stdout and stderr on its own descriptor, nothing of the runtime's.
        assert_eq!(outputs[0], "ext-a-out\next-a-err\n");
        assert_eq!(outputs[1], "ext-b-out\next-b-err\n");
        // The runtime's output stays on the helper's stdout and stderr, without theirs.
        assert!(lines.contains(&"runtime-done".to_owned()), "{lines:?}");
        assert!(!lines.iter().any(|l| l.starts_with("ext-")), "{lines:?}");
        assert_eq!(stderr.trim(), "runtime-err", "{stderr}");
        // The runtime holds none of the extensions' pipes.
        let fds: Vec<&String> = lines.iter().filter(|l| l.starts_with("fd=")).collect();
        assert!(!fds.is_empty());
        for inode in &inodes {
            assert!(
                !fds.iter().any(|l| l.ends_with(inode.as_str())),
                "{fds:?} has {inode}"
            );
        }
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn unpassed_extension_output_descriptors_fail_the_setup() {
        let iso = host(false);
        let fx = Fixture::new("ext-output-missing", &iso);
        let (opt, extensions) = extensions_opt(&fx, &[("ext-a", "exec sleep 600")]);
        let mut spec = fx.spec("e-output-missing", 20_312, "exit 0");
        spec.opt_dir = Some(opt);
        spec.extensions = extensions;
        spec.extension_output = vec![900];
        let mut gated = Gated::spawn(&spec);
        let (status, stderr) = gated.finish();
        assert_eq!(status.code(), Some(SETUP_FAILURE_EXIT_CODE), "{stderr}");
        assert!(
            stderr.contains(
                "extension output: descriptor 900 for extension ext-a's output is not open"
            ),
            "{stderr}"
        );
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn an_extension_crash_ends_the_sandbox_with_124() {
        let iso = host(false);
        let fx = Fixture::new("ext-crash", &iso);
        // Before the gate: ext-a exits at once, ext-b would run forever.
        let (opt, extensions) = extensions_opt(
            &fx,
            &[
                ("ext-a", "echo ext-a-up; exit 3"),
                ("ext-b", "exec sleep 600"),
            ],
        );
        let uid = 20_302;
        let mut spec = fx.spec("e-crash1", uid, "echo runtime-started");
        spec.opt_dir = Some(opt);
        spec.extensions = extensions;
        let mut gated = Gated::spawn(&spec);
        let (status, stderr) = gated.finish();
        assert_eq!(status.code(), Some(EXTENSION_EXIT_CODE), "{stderr}");
        assert_eq!(
            stderr.trim(),
            "fleetfn-sandbox: extension ext-a exited: exit code 3"
        );
        assert_eq!(
            parse_extension_exit(stderr.trim()),
            Some(("ext-a".to_owned(), "exit code 3".to_owned()))
        );
        assert_eq!(
            gated.rest_of_lines(),
            ["ext-a-up"],
            "the runtime never started"
        );
        wait_until_no_process_of(uid);

        // While the runtime runs: ext-b dies of a signal once the runtime says so.
        let fx = Fixture::new("ext-crash2", &iso);
        let (opt, extensions) = extensions_opt(
            &fx,
            &[
                ("ext-a", "exec sleep 600"),
                (
                    "ext-b",
                    "while [ ! -e /tmp/crash ]; do sleep 0.02; done; kill -SEGV $$",
                ),
            ],
        );
        let mut spec = fx.spec(
            "e-crash2",
            uid,
            "echo runtime-up; touch /tmp/crash; exec sleep 600",
        );
        spec.opt_dir = Some(opt);
        spec.extensions = extensions;
        let mut gated = Gated::spawn(&spec);
        gated.send(b"G");
        gated.wait_for_line("runtime-up");
        let (status, stderr) = gated.finish();
        assert_eq!(status.code(), Some(124), "{stderr}");
        assert_eq!(
            stderr.trim(),
            "fleetfn-sandbox: extension ext-b exited: killed by SIGSEGV"
        );
        // The runtime and the other extension were killed with it.
        wait_until_no_process_of(uid);

        // An extension that cannot be executed says why, then counts as exited.
        let fx = Fixture::new("ext-crash3", &iso);
        let (opt, mut extensions) = extensions_opt(&fx, &[("ext-a", "exec sleep 600")]);
        extensions.push(ExtensionProcess {
            name: "missing".into(),
            path: "/opt/extensions/missing".into(),
        });
        let mut spec = fx.spec("e-crash3", uid, "echo runtime-started");
        spec.opt_dir = Some(opt);
        spec.extensions = extensions;
        let mut gated = Gated::spawn(&spec);
        let (status, stderr) = gated.finish();
        assert_eq!(status.code(), Some(124), "{stderr}");
        assert_eq!(
            stderr.lines().collect::<Vec<_>>(),
            [
                "fleetfn-sandbox: exec extension /opt/extensions/missing: ENOENT: No such file or directory",
                "fleetfn-sandbox: extension missing exited: exit code 127",
            ]
        );
        wait_until_no_process_of(uid);
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn init_without_a_pid_namespace_kills_what_it_started() {
        let iso = host(false);
        let fx = Fixture::new("ext-nopid", &iso);
        let (opt, extensions) = extensions_opt(
            &fx,
            &[
                ("ext-a", "echo ext-a-up; exec sleep 600"),
                (
                    "ext-b",
                    "while [ ! -e /tmp/crash ]; do sleep 0.02; done; exit 9",
                ),
            ],
        );
        let uid = 20_306;
        let mut spec = fx.spec(
            "e-nopid",
            uid,
            "echo runtime-up; touch /tmp/crash; exec sleep 600",
        );
        spec.namespaces.pid = false;
        spec.opt_dir = Some(opt);
        spec.extensions = extensions;
        let mut gated = Gated::spawn(&spec);
        gated.wait_for_line("ext-a-up");
        gated.send(b"G\n");
        gated.wait_for_line("runtime-up");
        let (status, stderr) = gated.finish();
        assert_eq!(status.code(), Some(124), "{stderr}");
        assert_eq!(
            stderr.trim(),
            "fleetfn-sandbox: extension ext-b exited: exit code 9"
        );
        wait_until_no_process_of(uid);
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn stdin_closed_before_the_gate_aborts_the_sandbox() {
        let iso = host(false);
        let fx = Fixture::new("ext-eof", &iso);
        let (opt, extensions) = extensions_opt(&fx, &[("ext-a", "echo ext-a-up; exec sleep 600")]);
        let uid = 20_303;
        let mut spec = fx.spec("e-eof", uid, "echo runtime-started");
        spec.opt_dir = Some(opt);
        spec.extensions = extensions;
        let mut gated = Gated::spawn(&spec);
        gated.wait_for_line("ext-a-up");
        drop(gated.stdin.take());
        let (status, stderr) = gated.finish();
        assert_eq!(status.code(), Some(SETUP_FAILURE_EXIT_CODE), "{stderr}");
        assert_eq!(
            stderr.trim(),
            "fleetfn-sandbox: gate: stdin closed before the gate byte"
        );
        assert!(gated.rest_of_lines().is_empty());
        wait_until_no_process_of(uid);
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn sigterm_goes_to_the_runtime_only() {
        let iso = host(false);
        let fx = Fixture::new("ext-term", &iso);
        let (opt, extensions) = extensions_opt(
            &fx,
            &[
                (
                    "ext-a",
                    "trap 'echo ext-a-got-term' TERM; echo ext-a-up; while :; do sleep 0.05; done",
                ),
                // Leaves (exit 0) once the runtime says the environment stops: allowed then.
                (
                    "ext-b",
                    "echo ext-b-up; while [ ! -e /tmp/stop ]; do sleep 0.02; done; echo ext-b-left",
                ),
            ],
        );
        let uid = 20_304;
        let mut spec = fx.spec(
            "e-term",
            uid,
            // The runtime lingers after the signal so a misdirected one would show.
            r#"trap 'echo runtime-got-term; touch /tmp/stop; sleep 0.5; exit 0' TERM
            echo runtime-up
            while :; do sleep 0.05; done"#,
        );
        spec.opt_dir = Some(opt);
        spec.extensions = extensions;
        let mut gated = Gated::spawn(&spec);
        let mut up = vec![
            gated.lines.recv_timeout(TIMEOUT).unwrap(),
            gated.lines.recv_timeout(TIMEOUT).unwrap(),
        ];
        up.sort();
        assert_eq!(up, ["ext-a-up", "ext-b-up"]);
        gated.send(b"G");
        gated.wait_for_line("runtime-up");
        kill(gated.pid(), Signal::SIGTERM).unwrap();
        let (status, stderr) = gated.finish();
        assert_eq!(status.code(), Some(0), "{stderr}");
        assert_eq!(stderr.trim(), "", "no extension crash reported");
        let mut lines = gated.rest_of_lines();
        lines.sort();
        assert_eq!(lines, ["ext-b-left", "runtime-got-term"]);
        wait_until_no_process_of(uid);
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn layers_at_opt_are_read_only_and_hosts_names_the_sandbox() {
        let iso = host(false);
        let fx = Fixture::new("opt-hosts", &iso);
        let opt = fx.dir.path().join("layers");
        std::fs::create_dir_all(opt.join("bin")).unwrap();
        std::fs::write(
            opt.join("bin/layer-tool"),
            "#!/bin/sh\necho layer-tool-ran\n",
        )
        .unwrap();
        std::fs::set_permissions(
            opt.join("bin/layer-tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::set_permissions(&opt, std::fs::Permissions::from_mode(0o777)).unwrap();
        let runtime_tree = fx.dir.path().join("runtime");
        std::fs::create_dir_all(&runtime_tree).unwrap();
        std::fs::write(runtime_tree.join("version"), "r1\n").unwrap();
        let hosts = fx.dir.path().join("hosts");
        std::fs::write(
            &hosts,
            "127.0.0.1 localhost sandbox.localdomain sandbox\n::1 localhost\n",
        )
        .unwrap();
        let mut spec = fx.spec(
            "e-opt",
            20_305,
            r#"echo tool=$(/opt/bin/layer-tool)
            if touch /opt/x 2>/dev/null; then echo opt=writable; else echo opt=readonly; fi
            echo host=$(getent hosts sandbox.localdomain | awk '{print $1}')
            echo short=$(getent hosts sandbox | awk '{print $1}')
            echo runtime=$(cat /var/runtime/r0/version)
            if echo x >> /etc/hosts 2>/dev/null; then echo hosts=writable; else echo hosts=readonly; fi"#,
        );
        spec.opt_dir = Some(opt.clone());
        spec.hosts_file = Some(hosts);
        spec.extra_ro_binds = vec![(runtime_tree, "/var/runtime/r0".into())];
        let out = run(&spec);
        assert!(out.status.success(), "{out:?}");
        let v = values(&out);
        assert_eq!(v["tool"], "layer-tool-ran", "{v:?}");
        assert_eq!(v["opt"], "readonly");
        assert_eq!(v["host"], "127.0.0.1");
        assert_eq!(v["short"], "127.0.0.1");
        assert_eq!(v["runtime"], "r1");
        assert_eq!(v["hosts"], "readonly");
        assert!(!opt.join("x").exists());
    }

    #[test]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    fn connect_in_reaches_the_namespace_and_not_the_host() {
        host(false);
        let leases = fleetfn_sandbox::LeaseDir::new(fleetfn_sandbox::DEFAULT_LEASE_DIR);
        let slot = leases
            .acquire_slot(fleetfn_sandbox::net::slot_count(), std::process::id() + 7)
            .unwrap();
        let mut net = fleetfn_sandbox::EnvNetwork::create(slot.slot(), false).unwrap();
        // A listener inside the namespace (the Runtime API's, at 127.0.0.1:9001).
        let inside = net.take_listener().unwrap();
        let served = std::thread::spawn(move || {
            let (mut stream, _) = inside.accept().unwrap();
            stream.write_all(b"from inside\n").unwrap();
        });
        let stream =
            fleetfn_sandbox::net::connect_in(net.ns_fd(), "127.0.0.1:9001".parse().unwrap())
                .unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        assert_eq!(line, "from inside\n");
        served.join().unwrap();
        // A host-only listener: the namespace's loopback has nothing on that port.
        let host_only = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = host_only.local_addr().unwrap().port();
        let err = net
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        // Nothing but loopback is accepted, not even the environment's own address.
        let err = net.connect("198.18.0.2:9001".parse().unwrap()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }

    mod needs_nft {
        use super::*;

        #[test]
        #[ignore = "needs root and nft; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=nft or root)"]
        fn firewall_ruleset_is_accepted_by_nftables() {
            host(false);
            fleetfn_testutil::require(fleetfn_testutil::NFT, fleetfn_testutil::program("nft"));
            for allow in [vec![], vec!["169.254.169.254/32".parse().unwrap()]] {
                let rules = fleetfn_sandbox::net::firewall_ruleset(&allow);
                let mut child = Command::new("nft")
                    .args(["--check", "-f", "-"])
                    .stdin(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(rules.as_bytes())
                    .unwrap();
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "nft refused the ruleset: {}\n{rules}",
                    text(&out.stderr)
                );
            }
        }
    }
}
