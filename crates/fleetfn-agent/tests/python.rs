//! `python3.13` environments: AWS's runtime interface client (awslambdaric from PyPI,
//! installed by the provider) on the host's interpreter, in multi-concurrent mode.
//!
//! The tests that run one are in `needs_python`: `#[ignore]`d unless run with `--include-ignored`
//! (as `scripts/test` does), and failing with the reason when the host has no Python 3.13 or
//! awslambdaric cannot be installed.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fleetfn_agent::{
    EnvState, Environment, InitReasonCode, PreparedRuntime, RuntimeProvider, StartError,
};
use serde_json::json;

const RUNTIME: &str = "python3.13";

/// A provider with awslambdaric installed for python3.13; the test fails, saying why, when the
/// host has no such interpreter or awslambdaric cannot be provided.
async fn python_provider(root: &Path) -> RuntimeProvider {
    let p = provider(root, &shared_runtime_root());
    let found = match &p.host().python[RUNTIME] {
        Err(why) => Err(format!("{RUNTIME} is not available on this host: {why}")),
        Ok(_) => match p.prepare(RUNTIME).await {
            Ok(PreparedRuntime::Python { runtime_dir, .. }) => {
                assert!(runtime_dir.join("awslambdaric").is_dir());
                Ok(())
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => {
                assert_eq!(e.reason_code, InitReasonCode::InvalidRuntime);
                Err(format!("awslambdaric could not be provided: {}", e.reason))
            }
        },
    };
    fleetfn_testutil::require(fleetfn_testutil::PYTHON, found);
    p
}

fn code_dir(root: &Path, app_py: &str) -> std::path::PathBuf {
    let code = root.join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("app.py"), app_py).unwrap();
    code
}

#[tokio::test]
async fn a_missing_interpreter_is_an_invalid_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        fleetfn_agent::RuntimeProviderConfig::new(dir.path().join("rt"), dir.path().join("envs"));
    cfg.python_interpreters
        .insert(RUNTIME.into(), dir.path().join("no-such-python3.13"));
    let p = RuntimeProvider::detect(cfg);
    let code = code_dir(dir.path(), "def handler(e, c):\n    return e\n");
    let mut s = spec("py-none", RUNTIME, &code, 1);
    s.handler = Some("app.handler".into());
    let err = Environment::start(s, &p).await.unwrap_err();
    let f = err.init_failure();
    assert_eq!(f.reason_code, InitReasonCode::InvalidRuntime);
    assert!(f.reason.contains("no-such-python3.13"), "{}", f.reason);
}

mod needs_python {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs python3.13 and awslambdaric (from PyPI on first use); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=python)"]
    async fn runs_a_handler_with_awslambdaric() {
        let dir = tempfile::tempdir().unwrap();
        let p = python_provider(dir.path()).await;
        let code = code_dir(
            dir.path(),
            "import os\n\
         def handler(event, context):\n\
         \x20   print('hello from python')\n\
         \x20   return {'event': event, 'request_id': context.aws_request_id,\n\
         \x20           'max': os.environ['AWS_LAMBDA_MAX_CONCURRENCY'],\n\
         \x20           'telemetry_fd': os.environ.get('_LAMBDA_TELEMETRY_LOG_FD')}\n\
         def fails(event, context):\n\
         \x20   raise ValueError('bad value')\n",
        );
        let log = dir.path().join("py-logs");
        let mut s = spec("py-echo", RUNTIME, &code, 2);
        s.handler = Some("app.handler".into());
        s.logs = Some(log_target(&log));
        let env = Environment::start(s, &p).await.expect("start");
        guarded("ready", env.ready()).await.expect("ready");
        guarded("2 parked", env.wait_parked(|n| n == 2)).await;

        let out = env
            .invoke(input("py-1", &json!({"hello": "world"})))
            .await
            .unwrap();
        assert_eq!(out.function_error, None, "{:?}", out.payload);
        assert_eq!(
            json_of(&out),
            json!({"event": {"hello": "world"}, "request_id": "py-1", "max": "2", "telemetry_fd": null})
        );
        env.stop(Duration::from_secs(1)).await;

        let recs = log_records(&log);
        let hello = recs
            .iter()
            .find(|r| r["message"] == "hello from python")
            .unwrap_or_else(|| panic!("no function line in {recs:#?}"));
        assert_eq!(hello["requestId"], "py-1");

        // A handler that raises: the runtime's error document, `Unhandled`.
        let mut s = spec("py-fail", RUNTIME, &code, 1);
        s.handler = Some("app.fails".into());
        let env = Environment::start(s, &p).await.unwrap();
        guarded("ready", env.ready()).await.unwrap();
        guarded("parked", env.wait_parked(|n| n == 1)).await;
        let out = env.invoke(input("py-2", &json!({}))).await.unwrap();
        assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(out.error_type.as_deref(), Some("ValueError"));
        let v = json_of(&out);
        assert_eq!(v["errorType"], "ValueError");
        assert_eq!(v["errorMessage"], "bad value");
        env.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs python3.13 and awslambdaric (from PyPI on first use); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=python)"]
    async fn four_worker_processes_serve_four_invokes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = python_provider(dir.path()).await;
        let code = code_dir(
            dir.path(),
            "import os, time\n\
         def handler(event, context):\n\
         \x20   time.sleep(1)\n\
         \x20   return {'pid': os.getpid()}\n",
        );
        let mut s = spec("py-conc", RUNTIME, &code, 4);
        s.handler = Some("app.handler".into());
        let env = Arc::new(Environment::start(s, &p).await.unwrap());
        guarded("ready", env.ready()).await.unwrap();
        guarded("4 parked", env.wait_parked(|n| n == 4)).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..4 {
            let env = Arc::clone(&env);
            tasks.spawn(async move { env.invoke(input(&format!("c-{i}"), &json!({}))).await });
        }
        guarded("4 in flight", env.wait_active(|n| n == 4)).await;
        assert_eq!(env.in_flight(), 4);
        let mut pids = std::collections::BTreeSet::new();
        while let Some(r) = guarded("invokes", tasks.join_next()).await {
            let out = r.unwrap().expect("admitted");
            assert_eq!(out.function_error, None, "{:?}", out.payload);
            pids.insert(json_of(&out)["pid"].as_u64().unwrap());
        }
        assert_eq!(pids.len(), 4, "each invoke ran in its own worker process");
        assert_eq!(env.state(), EnvState::Ready);
        env.stop(Duration::from_secs(1)).await;
    }

    /// Runs `handler_py` (writing `lines` lines `<tag> <w> <i> <fill × len>` each) in 4
    /// workers at once (in fleetfn's sandbox when `sandboxed`; with environment directories
    /// too deep for a socket address when `deep`) and asserts that every line reached the log
    /// whole.
    pub(super) async fn concurrent_lines_stay_whole(
        name: &str,
        handler_py: &str,
        shape: LineShape,
        sandboxed: bool,
        deep: bool,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = match deep {
            true => dir.path().join("d".repeat(100)),
            false => dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(&root).unwrap();
        let mut p = python_provider(&root).await;
        if sandboxed {
            p = p.with_launcher(sandbox_launcher());
        }
        let code = code_dir(dir.path(), handler_py);
        let logs = dir.path().join("logs");
        let mut s = spec(name, RUNTIME, &code, 4);
        s.handler = Some("app.handler".into());
        s.logs = Some(log_target(&logs));
        let env = Arc::new(Environment::start(s, &p).await.unwrap());
        guarded("ready", env.ready()).await.unwrap();
        guarded("4 parked", env.wait_parked(|n| n == 4)).await;
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..4 {
            let env = Arc::clone(&env);
            tasks.spawn(async move {
                env.invoke(input(&format!("{w}-{w}"), &json!({"w": w})))
                    .await
            });
        }
        while let Some(r) = guarded("invokes", tasks.join_next()).await {
            let out = r.unwrap().expect("admitted");
            assert_eq!(out.function_error, None, "{:?}", out.payload);
        }
        env.stop(Duration::from_secs(1)).await;
        let lines: Vec<String> = log_records(&logs)
            .iter()
            .filter_map(|r| r["message"].as_str().map(str::to_owned))
            .filter(|m| m.contains(shape.tag))
            .collect();
        let whole = lines.iter().filter(|m| shape.is_whole(m)).count();
        let bad: Vec<String> = lines
            .iter()
            .filter(|m| !shape.is_whole(m))
            .take(3)
            .map(|m| m.chars().take(300).collect())
            .collect();
        assert_eq!(whole, 4 * shape.lines, "lines ran together: {bad:?}");
    }

    /// Each worker writes to log streams of its own (the log socket), so `print()`'s separate
    /// writes of text and newline (awslambdaric flushes after each) never interleave with
    /// another worker's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs python3.13 and awslambdaric (from PyPI on first use); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=python)"]
    async fn prints_of_concurrent_workers_stay_whole_lines() {
        concurrent_lines_stay_whole(
            "py-print",
            "def handler(event, context):\n\
         \x20   for i in range(300):\n\
         \x20       print('LINE', event['w'], i, 'x' * 200)\n\
         \x20   return {}\n",
            LineShape {
                tag: "LINE",
                lines: 300,
                fill: b'x',
                len: 200,
            },
            false,
            false,
        )
        .await;
    }

    /// Lines longer than a pipe's atomic write (`PIPE_BUF`, 4096 bytes), written in pieces
    /// with `sys.stdout.write` and `sys.stderr.write`, stay whole too (here with an environment
    /// directory too deep for a socket address: reached through the agent's `/proc` fd).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs python3.13 and awslambdaric (from PyPI on first use); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=python)"]
    async fn long_lines_of_concurrent_workers_stay_whole() {
        concurrent_lines_stay_whole("py-long", LONG_LINES_PY, LONG_LINES, false, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs python3.13 and awslambdaric (from PyPI on first use); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=python)"]
    async fn an_unloadable_handler_is_a_runtime_init_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = python_provider(dir.path()).await;
        let code = code_dir(dir.path(), "def handler(event, context):\n    return 1\n");
        let mut s = spec("py-bad", RUNTIME, &code, 2);
        s.handler = Some("missing_module.handler".into());
        let env = Environment::start(s, &p).await.unwrap();
        let f = guarded("init failure", env.ready()).await.unwrap_err();
        assert_eq!(f.reason_code, InitReasonCode::RuntimeInitError);
        assert!(
            f.reason
                .starts_with("Runtime.ImportModuleError: Unable to import module 'missing_module'"),
            "{}",
            f.reason
        );

        let mut s = spec("py-nohandler", RUNTIME, &code, 1);
        s.handler = None;
        let err = Environment::start(s, &p).await.unwrap_err();
        assert!(
            matches!(&err, StartError::Init(f) if f.reason_code == InitReasonCode::InvalidEntryPoint),
            "{err:?}"
        );
    }
}

/// Writes 40 lines of 10,000 bytes per invoke, each in 12 pieces, to stdout and stderr in turn.
const LONG_LINES_PY: &str = "import sys\n\
         def handler(event, context):\n\
         \x20   for i in range(40):\n\
         \x20       out = sys.stdout if i % 2 else sys.stderr\n\
         \x20       out.write('LONG %d %d ' % (event['w'], i))\n\
         \x20       for _ in range(10):\n\
         \x20           out.write('y' * 1000)\n\
         \x20       out.write('\\n')\n\
         \x20   return {}\n";

const LONG_LINES: LineShape = LineShape {
    tag: "LONG",
    lines: 40,
    fill: b'y',
    len: 10_000,
};

/// Needs root and Python: left out by either opt-out (`--skip needs_root::`, `--skip needs_python::`).
mod needs_root {
    pub(super) mod needs_python {
        use super::super::*;

        /// In the sandbox the log socket is bound at /var/runtime and belongs to the
        /// environment's uid: the workers' long lines stay whole there too (bound through the
        /// agent's `/proc` fd, the environment's directory being too deep for a socket address).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs root with namespaces and cgroups, python3.13 and awslambdaric; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root or python)"]
        async fn long_lines_of_concurrent_sandboxed_workers_stay_whole() {
            crate::needs_python::concurrent_lines_stay_whole(
                "py-long-sb",
                LONG_LINES_PY,
                LONG_LINES,
                true,
                true,
            )
            .await;
        }
    }
}

/// The sandboxing launcher; the test fails, saying why, when this host cannot sandbox.
fn sandbox_launcher() -> Arc<fleetfn_agent::SandboxLauncher> {
    use fleetfn_sandbox::{CgroupLayout, LinuxHost, Namespaces};
    let iso = fleetfn_sandbox::probe(&LinuxHost);
    let found = if !iso.root {
        Err(format!("not root ({iso})"))
    } else if iso.namespaces != Namespaces::all() {
        Err(format!("namespaces cannot be unshared ({iso})"))
    } else if !iso.cgroups.as_ref().is_some_and(CgroupLayout::can_limit) {
        Err(format!("no usable memory+cpu cgroups ({iso})"))
    } else {
        Ok(iso)
    };
    let iso = fleetfn_testutil::require(fleetfn_testutil::ROOT, found);
    let net = fleetfn_agent::NetworkConfig {
        isolation: fleetfn_sandbox::net::probe(iso.root, false),
        dns: Vec::new(),
        leases: fleetfn_sandbox::LeaseDir::new(fleetfn_sandbox::DEFAULT_LEASE_DIR),
    };
    Arc::new(fleetfn_agent::SandboxLauncher::new(
        sandbox_helper_binary().to_path_buf(),
        iso,
        None,
        net,
    ))
}

/// The lines a test handler writes: `<tag> <w> <i> <fill × len>`, `lines` per worker.
struct LineShape {
    tag: &'static str,
    lines: usize,
    fill: u8,
    len: usize,
}

impl LineShape {
    /// Whether `m` is exactly one such line.
    fn is_whole(&self, m: &str) -> bool {
        let parts: Vec<&str> = m.split(' ').collect();
        parts.len() == 4
            && parts[0] == self.tag
            && parts[1].parse::<u32>().is_ok()
            && parts[2].parse::<u32>().is_ok()
            && parts[3].len() == self.len
            && parts[3].bytes().all(|b| b == self.fill)
    }
}
