//! `provided.al2023` environments running the `fleetfn-testfn` fixture (a real `lambda_runtime`
//! 1.5 function in concurrent mode).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fleetfn_agent::{
    EnvState, Environment, ExitReason, InitReasonCode, Rejected, RuntimeProvider, StartError,
};
use serde_json::{Value, json};

async fn start_ready(spec: fleetfn_agent::EnvironmentSpec, p: &RuntimeProvider) -> Environment {
    let env = Environment::start(spec, p).await.expect("start");
    guarded("ready", env.ready()).await.expect("ready");
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_max_concurrency_at_once_and_rejects_the_next_invoke() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    let p = provider(dir.path(), &dir.path().join("rt"));
    let env = Arc::new(start_ready(spec("conc", "provided.al2023", &code, 8), &p).await);
    assert_eq!(env.state(), EnvState::Ready);
    assert!(env.init_duration().is_some());
    assert_eq!(env.max_concurrency(), 8);
    let tmp = dir.path().join("envs").join("conc").join("tmp");
    assert!(tmp.is_dir());
    guarded("8 parked", env.wait_parked(|n| n == 8)).await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let env = Arc::clone(&env);
        tasks.spawn(async move {
            env.invoke(input(
                &format!("sleep-{i}"),
                &json!({"op": "sleep", "ms": 1000}),
            ))
            .await
        });
    }
    guarded("8 in flight", env.wait_active(|n| n == 8)).await;
    assert_eq!(env.in_flight(), 8);
    assert_eq!(env.parked(), 0);

    let t = Instant::now();
    let ninth = env.invoke(input("ninth", &json!({"op": "noop"}))).await;
    assert_eq!(ninth, Err(Rejected::Busy { max_concurrency: 8 }));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "rejection must not wait"
    );
    assert!(ninth.unwrap_err().throttle_reason().is_some());

    while let Some(r) = guarded("invokes", tasks.join_next()).await {
        let out = r.unwrap().expect("admitted");
        assert_eq!(out.function_error, None, "{out:?}");
        assert_eq!(json_of(&out), json!({"slept_ms": 1000}));
        assert!(out.duration >= Duration::from_millis(1000));
        assert!(out.billed_duration_ms >= 1000);
        assert!(out.max_memory_used_mb > 0);
    }

    assert_eq!(
        guarded("stop", env.stop(Duration::from_secs(5))).await,
        ExitReason::Stopped
    );
    assert_eq!(env.state(), EnvState::Exited(ExitReason::Stopped));
    assert!(
        !tmp.exists(),
        "the environment's tmp dir is removed on stop"
    );
    assert_eq!(
        env.invoke(input("late", &json!({"op": "noop"}))).await,
        Err(Rejected::Exited)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_answers_the_caller_and_keeps_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    let p = provider(dir.path(), &dir.path().join("rt"));
    let mut s = spec("timeout", "provided.al2023", &code, 2);
    s.timeout_secs = 1;
    let env = start_ready(s, &p).await;
    guarded("2 parked", env.wait_parked(|n| n == 2)).await;

    let out = guarded(
        "timeout",
        env.invoke(input("slow", &json!({"op": "sleep", "ms": 3000}))),
    )
    .await
    .unwrap();
    assert!(out.timed_out);
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.error_type.as_deref(), Some("Sandbox.Timedout"));
    assert_eq!(
        json_of(&out),
        json!({
            "errorMessage": "RequestId: slow Error: Task timed out after 1.00 seconds",
            "errorType": "Sandbox.Timedout",
        })
    );
    assert_eq!(env.state(), EnvState::Ready);
    // The runtime is still working on it (LMI does not kill it).
    assert_eq!(env.in_flight(), 1);

    guarded("a parked worker", env.wait_parked(|n| n >= 1)).await;
    let out = env
        .invoke(input("next", &json!({"op": "echo", "x": 1})))
        .await
        .unwrap();
    assert_eq!(out.function_error, None);
    assert_eq!(json_of(&out), json!({"op": "echo", "x": 1}));

    // A function error comes back as the runtime's error document.
    guarded("a parked worker", env.wait_parked(|n| n >= 1)).await;
    let out = env
        .invoke(input("err", &json!({"op": "error"})))
        .await
        .unwrap();
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.error_type.as_deref(), Some("TestFnError"));
    assert_eq!(json_of(&out)["errorType"], "TestFnError");
    env.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_every_in_flight_invoke_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    let p = provider(dir.path(), &dir.path().join("rt"));
    let env = Arc::new(start_ready(spec("crash", "provided.al2023", &code, 4), &p).await);
    guarded("4 parked", env.wait_parked(|n| n == 4)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2 {
        let env = Arc::clone(&env);
        tasks.spawn(async move {
            env.invoke(input(
                &format!("victim-{i}"),
                &json!({"op": "sleep", "ms": 60_000}),
            ))
            .await
        });
    }
    guarded("2 in flight", env.wait_active(|n| n == 2)).await;
    let out = guarded(
        "crash",
        env.invoke(input("crasher", &json!({"op": "crash"}))),
    )
    .await
    .unwrap();
    let mut outs = vec![out];
    while let Some(r) = guarded("victims", tasks.join_next()).await {
        outs.push(r.unwrap().unwrap());
    }
    for out in &outs {
        assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(out.error_type.as_deref(), Some("Runtime.ExitError"));
        assert_eq!(
            json_of(out),
            json!({
                "errorMessage": format!("RequestId: {} Error: Runtime exited with error: exit status 1", out.request_id),
                "errorType": "Runtime.ExitError",
            })
        );
    }
    let reason = guarded("exit", env.exited()).await;
    assert_eq!(
        reason,
        ExitReason::Crashed {
            error_type: "Runtime.ExitError".into(),
            message: "Runtime exited with error: exit status 1".into(),
        }
    );
    assert!(matches!(env.state(), EnvState::Exited(_)));
    assert_eq!(
        env.invoke(input("after", &json!({"op": "noop"}))).await,
        Err(Rejected::Exited)
    );
    assert!(!dir.path().join("envs").join("crash").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runtime_reports_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    let p = provider(dir.path(), &dir.path().join("rt"));
    let env = Arc::new(start_ready(spec("killed", "provided.al2023", &code, 1), &p).await);
    guarded("parked", env.wait_parked(|n| n == 1)).await;
    let task = {
        let env = Arc::clone(&env);
        tokio::spawn(async move {
            env.invoke(input("victim", &json!({"op": "sleep", "ms": 60_000})))
                .await
        })
    };
    guarded("in flight", env.wait_active(|n| n == 1)).await;
    let st = std::process::Command::new("kill")
        .args(["-KILL", &env.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = guarded("victim", task).await.unwrap().unwrap();
    assert_eq!(out.error_type.as_deref(), Some("Runtime.ExitError"));
    assert_eq!(
        json_of(&out)["errorMessage"],
        "RequestId: victim Error: Runtime exited with error: signal: killed"
    );
    assert!(matches!(
        guarded("exit", env.exited()).await,
        ExitReason::Crashed { .. }
    ));
}

#[tokio::test]
async fn a_missing_or_unusable_bootstrap_is_an_invalid_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    let p = provider(dir.path(), &dir.path().join("rt"));
    let err = Environment::start(spec("nobootstrap", "provided.al2023", &code, 1), &p)
        .await
        .unwrap_err();
    let StartError::Init(f) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(f.reason_code, InitReasonCode::InvalidEntryPoint);
    assert_eq!(f.reason_code.as_str(), "FunctionError.InvalidEntryPoint");
    assert_eq!(
        f.reason,
        "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
    );
    assert!(!dir.path().join("envs").join("nobootstrap").exists());

    std::fs::write(code.join("bootstrap"), "#!/bin/sh\n").unwrap();
    let err = Environment::start(spec("noexec", "provided.al2023", &code, 1), &p)
        .await
        .unwrap_err();
    let f = err.init_failure();
    assert_eq!(f.reason_code, InitReasonCode::InvalidEntryPoint);
    assert!(f.reason.contains("not executable"), "{}", f.reason);

    write_executable(&code.join("bootstrap"), b"#!/nonexistent/interpreter\n");
    let err = Environment::start(spec("badshebang", "provided.al2023", &code, 1), &p)
        .await
        .unwrap_err();
    assert_eq!(
        err.init_failure().reason_code,
        InitReasonCode::InvalidEntryPoint
    );

    let err = Environment::start(spec("../escape", "provided.al2023", &code, 1), &p)
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::InvalidSpec(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failures_carry_lmi_reason_codes() {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    let p = provider(dir.path(), &dir.path().join("rt"));

    // Exits before it polls /next.
    write_executable(
        &code.join("bootstrap"),
        b"#!/bin/sh\necho 'cannot start' >&2\nexit 3\n",
    );
    let env = Environment::start(spec("exits", "provided.al2023", &code, 1), &p)
        .await
        .unwrap();
    let f = guarded("init failure", env.ready()).await.unwrap_err();
    assert_eq!(f.reason_code, InitReasonCode::RuntimeInitError);
    assert_eq!(f.reason, "Runtime exited with error: exit status 3");
    assert!(matches!(
        env.state(),
        EnvState::Exited(ExitReason::InitFailed(_))
    ));

    // Never polls /next.
    write_executable(&code.join("bootstrap"), b"#!/bin/sh\nexec sleep 600\n");
    let mut s = spec("hangs", "provided.al2023", &code, 1);
    s.init_timeout = Some(Duration::from_millis(300));
    let env = Environment::start(s, &p).await.unwrap();
    let f = guarded("init timeout", env.ready()).await.unwrap_err();
    assert_eq!(f.reason_code, InitReasonCode::InitTimeout);
    assert_eq!(f.reason_code.as_str(), "FunctionError.InitTimeout");
    assert!(matches!(
        guarded("exit", env.exited()).await,
        ExitReason::InitFailed(_)
    ));
}

/// The child's environment is exactly the Lambda one: run the test again in a child process
/// whose own environment holds a secret, and check the function cannot see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_gets_lambda_variables_and_nothing_of_the_agent() {
    const SECRET: &str = "FLEETFN_SECRET_ACCESS_KEY";
    if std::env::var_os(SECRET).is_none() {
        let st = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "the_runtime_gets_lambda_variables_and_nothing_of_the_agent",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SECRET, "do-not-leak-me")
            .status()
            .unwrap();
        assert!(st.success(), "the re-run with {SECRET} set failed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    std::fs::rename(code.join("bootstrap"), code.join("testfn")).unwrap();
    let dump = dir.path().join("env.txt");
    write_executable(
        &code.join("bootstrap"),
        b"#!/bin/sh\nenv > \"$DUMP_TO\"\npwd >> \"$DUMP_TO\"\necho 'bootstrap says hi'\nexec ./testfn\n",
    );
    let p = provider(dir.path(), &dir.path().join("rt"));
    let mut s = spec("envvars", "provided.al2023", &code, 2);
    s.handler = Some("my.handler".into());
    s.region = "eu-central-1".into();
    s.env_vars
        .insert("DUMP_TO".into(), dump.display().to_string());
    s.env_vars.insert("MY_SETTING".into(), "42".into());
    s.env_vars
        .insert("AWS_LAMBDA_FUNCTION_NAME".into(), "spoofed".into());
    let env = start_ready(s, &p).await;

    let out = env
        .invoke(input("env-1", &json!({"op": "env"})))
        .await
        .unwrap();
    let v = json_of(&out);
    let e = &v["env"];
    let api = env.runtime_api_addr().to_string();
    for (k, want) in [
        ("AWS_LAMBDA_RUNTIME_API", api.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "testfn"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048"),
        ("AWS_LAMBDA_MAX_CONCURRENCY", "2"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_DEFAULT_REGION", "eu-central-1"),
        ("_HANDLER", "my.handler"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/testfn"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"),
    ] {
        assert_eq!(e[k], Value::from(want), "{k}");
    }
    assert!(
        e["AWS_LAMBDA_LOG_STREAM_NAME"]
            .as_str()
            .unwrap()
            .ends_with("/[1]envvars")
    );
    assert_eq!(
        e["LAMBDA_TASK_ROOT"],
        Value::from(code.display().to_string())
    );
    assert_eq!(
        v["context"]["invoked_function_arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:testfn:1"
    );
    assert_eq!(v["context"]["request_id"], "env-1");
    assert_eq!(v["pid"], Value::from(env.pid()));

    let dumped = std::fs::read_to_string(&dump).unwrap();
    let vars: std::collections::BTreeMap<&str, &str> =
        dumped.lines().filter_map(|l| l.split_once('=')).collect();
    assert!(std::env::var_os(SECRET).is_some());
    assert!(
        !dumped.contains(SECRET),
        "the agent's secret leaked: {dumped}"
    );
    assert!(
        !dumped.contains("CARGO"),
        "the agent's environment leaked: {dumped}"
    );
    assert_eq!(vars["TZ"], ":UTC");
    assert_eq!(vars["LANG"], "en_US.UTF-8");
    assert_eq!(vars["MY_SETTING"], "42");
    assert!(vars["PATH"].contains("/usr/bin"));
    assert!(vars.contains_key("LD_LIBRARY_PATH"));
    let tmp = dir.path().join("envs").join("envvars").join("tmp");
    assert_eq!(vars["TMPDIR"], tmp.display().to_string());
    assert_eq!(
        dumped.lines().last().unwrap(),
        code.display().to_string(),
        "working directory"
    );
    env.stop(Duration::from_secs(1)).await;
    assert!(!tmp.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_platform_records_and_function_lines() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    std::fs::rename(code.join("bootstrap"), code.join("testfn")).unwrap();
    write_executable(
        &code.join("bootstrap"),
        b"#!/bin/sh\necho 'plain line from the bootstrap'\nexec ./testfn\n",
    );
    let log = dir.path().join("logs").join("testfn").join("1");
    let p = provider(dir.path(), &dir.path().join("rt"));
    let mut s = spec("logs", "provided.al2023", &code, 1);
    s.logs = Some(log_target(&log));
    let env = start_ready(s, &p).await;
    env.invoke(input("req-1", &json!({"op": "echo"})))
        .await
        .unwrap();
    guarded("parked", env.wait_parked(|n| n == 1)).await;
    env.invoke(input("req-2", &json!({"op": "error"})))
        .await
        .unwrap();
    env.stop(Duration::from_secs(1)).await;

    let recs = log_records(&log);
    let messages: Vec<&str> = recs.iter().filter_map(|r| r["message"].as_str()).collect();
    assert!(
        messages.contains(&"plain line from the bootstrap"),
        "{messages:#?}"
    );
    for r in &recs {
        assert!(r["timestamp"].is_string(), "{r}");
        assert!(r["level"].is_string(), "{r}");
        assert!(r["stream"].is_string(), "{r}");
    }
    let line = recs
        .iter()
        .find(|r| r["message"] == "plain line from the bootstrap")
        .unwrap();
    assert_eq!(line["stream"], "stdout");
    // lambda_runtime's own JSON line for the failed invoke keeps its fields and its request id.
    let diag = recs
        .iter()
        .find(|r| r["level"] == "ERROR" && r["stream"] == "stdout")
        .expect("the runtime's error line");
    assert_eq!(diag["requestId"], "req-2");
    assert!(diag["span"].is_object());
    let kinds: Vec<&str> = recs.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"platform.initStart"));
    assert!(kinds.contains(&"platform.initReport"));
    for id in ["req-1", "req-2"] {
        let of = |kind: &str| {
            recs.iter()
                .find(|r| r["type"] == kind && r["requestId"] == id)
                .unwrap_or_else(|| panic!("no {kind} for {id}: {recs:#?}"))
        };
        assert_eq!(
            of("platform.start")["message"],
            format!("START RequestId: {id} Version: 1")
        );
        assert_eq!(
            of("platform.runtimeDone")["message"],
            format!("END RequestId: {id}")
        );
        let report = of("platform.report")["message"].as_str().unwrap();
        assert!(
            report.starts_with(&format!("REPORT RequestId: {id}\tDuration: ")),
            "{report}"
        );
        assert!(report.contains(" ms\tBilled Duration: "), "{report}");
        assert!(
            report.contains("\tMemory Size: 2048 MB\tMax Memory Used: "),
            "{report}"
        );
        assert!(report.ends_with(" MB"), "{report}");
    }
    assert_eq!(
        recs.iter()
            .find(|r| r["type"] == "platform.report" && r["requestId"] == "req-2")
            .unwrap()["record"]["status"],
        "error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_in_flight_invokes_and_rejects_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    let p = provider(dir.path(), &dir.path().join("rt"));
    let env = Arc::new(start_ready(spec("drain", "provided.al2023", &code, 2), &p).await);
    guarded("2 parked", env.wait_parked(|n| n == 2)).await;
    let busy = {
        let env = Arc::clone(&env);
        tokio::spawn(async move {
            env.invoke(input("inflight", &json!({"op": "sleep", "ms": 1000})))
                .await
        })
    };
    guarded("in flight", env.wait_active(|n| n == 1)).await;
    let mut states = env.watch_state();
    let stopper = {
        let env = Arc::clone(&env);
        tokio::spawn(async move { env.stop(Duration::from_secs(30)).await })
    };
    guarded("draining", states.wait_for(|s| *s == EnvState::Draining))
        .await
        .unwrap();
    assert_eq!(
        env.invoke(input("new", &json!({"op": "noop"}))).await,
        Err(Rejected::Draining)
    );
    let out = guarded("drained invoke", busy).await.unwrap().unwrap();
    assert_eq!(json_of(&out), json!({"slept_ms": 1000}));
    assert_eq!(guarded("stop", stopper).await.unwrap(), ExitReason::Stopped);
}

/// Whether `pid` is gone or a zombie waiting to be reaped.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Polls a condition the kernel offers no notification for (process death), guarded.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    guarded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_environment_kills_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let code = testfn_code_dir(dir.path());
    std::fs::rename(code.join("bootstrap"), code.join("testfn")).unwrap();
    let pids = dir.path().join("pids");
    // A background process in the same group, like a forked worker.
    write_executable(
        &code.join("bootstrap"),
        b"#!/bin/sh\nsleep 600 &\necho $! > \"$PIDS\"\nexec ./testfn\n",
    );
    let p = provider(dir.path(), &dir.path().join("rt"));
    let mut s = spec("dropped", "provided.al2023", &code, 1);
    s.env_vars.insert("PIDS".into(), pids.display().to_string());
    let env = start_ready(s, &p).await;
    let pid = env.pid();
    let helper: u32 = std::fs::read_to_string(&pids)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!is_dead(pid) && !is_dead(helper));
    drop(env);
    eventually("the runtime to die", || is_dead(pid)).await;
    eventually("the group member to die", || is_dead(helper)).await;
    let env_dir = dir.path().join("envs").join("dropped");
    eventually("the environment dir to go", || !env_dir.exists()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_during_init_ends_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    write_executable(&code.join("bootstrap"), b"#!/bin/sh\nexec sleep 600\n");
    let p = provider(dir.path(), &dir.path().join("rt"));
    let env = Environment::start(spec("early-stop", "provided.al2023", &code, 1), &p)
        .await
        .unwrap();
    assert_eq!(env.state(), EnvState::Starting);
    assert_eq!(
        env.invoke(input("too-early", &json!({}))).await,
        Err(Rejected::NotReady)
    );
    assert_eq!(
        guarded("stop", env.stop(Duration::from_secs(1))).await,
        ExitReason::Stopped
    );
    let f = env.ready().await.unwrap_err();
    assert!(f.reason.contains("stopped"), "{}", f.reason);
}

mod needs_curl {
    use super::*;

    /// A runtime that posts `/init/error` (with curl) fails its start with the posted error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs curl on PATH; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=curl)"]
    async fn an_init_error_post_carries_its_type_and_message() {
        let curl =
            fleetfn_testutil::require(fleetfn_testutil::CURL, fleetfn_testutil::program("curl"));
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("code");
        std::fs::create_dir_all(&code).unwrap();
        let p = provider(dir.path(), &dir.path().join("rt"));
        let script = format!(
            "#!/bin/sh\nexec {} -s -X POST -H 'Lambda-Runtime-Function-Error-Type: Runtime.ConfigError' \
             --data '{{\"errorType\":\"Runtime.ConfigError\",\"errorMessage\":\"no config\"}}' \
             http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error\n",
            curl.display()
        );
        write_executable(&code.join("bootstrap"), script.as_bytes());
        let env = Environment::start(spec("initerror", "provided.al2023", &code, 1), &p)
            .await
            .unwrap();
        let f = guarded("init error", env.ready()).await.unwrap_err();
        assert_eq!(f.reason_code, InitReasonCode::RuntimeInitError);
        assert_eq!(f.reason, "Runtime.ConfigError: no config");
    }
}
