//! `nodejs22.x` environments: fleetfn's Node.js bootstrap (worker threads, concurrent `/next`
//! loops) on the host's `node`. The tests are in `needs_node`: `#[ignore]`d unless run with
//! `--include-ignored` (as `scripts/test` does), and failing with the reason when there is no `node`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fleetfn_agent::{EnvState, Environment, InitReasonCode, RuntimeProvider};
use serde_json::json;

const RUNTIME: &str = "nodejs22.x";

/// A provider that found the host's `node`; the test fails, saying why, without one.
fn node_provider(root: &Path) -> RuntimeProvider {
    let p = provider(root, &shared_runtime_root());
    let found = p
        .host()
        .node
        .as_ref()
        .map(|_| ())
        .map_err(|why| why.to_string());
    fleetfn_testutil::require(fleetfn_testutil::NODE, found);
    p
}

fn code_dir(root: &Path, files: &[(&str, &str)]) -> PathBuf {
    let code = root.join("code");
    std::fs::create_dir_all(&code).unwrap();
    for (name, body) in files {
        std::fs::write(code.join(name), body).unwrap();
    }
    code
}

async fn ready_env(
    p: &RuntimeProvider,
    code: &Path,
    id: &str,
    handler: &str,
    max: u32,
) -> Environment {
    let mut s = spec(id, RUNTIME, code, max);
    s.handler = Some(handler.to_owned());
    s.vcpus = 2.0;
    let env = Environment::start(s, p).await.expect("start");
    guarded("ready", env.ready()).await.expect("ready");
    let want = usize::try_from(max).unwrap();
    guarded("all loops parked", env.wait_parked(|n| n == want)).await;
    env
}

mod needs_node {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs node on PATH; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=node)"]
    async fn runs_an_es_module_handler() {
        let dir = tempfile::tempdir().unwrap();
        let p = node_provider(dir.path());
        let code = code_dir(
            dir.path(),
            &[(
                "index.mjs",
                "export const handler = async (e, ctx) => {\n\
             \x20 console.log('handling', ctx.awsRequestId);\n\
             \x20 return { ok: e };\n\
             };\n\
             export const fails = async () => { throw new TypeError('bad input'); };\n",
            )],
        );
        let log = dir.path().join("node-logs");
        let mut s = spec("node-esm", RUNTIME, &code, 2);
        s.handler = Some("index.handler".into());
        s.logs = Some(log_target(&log));
        let env = Environment::start(s, &p).await.unwrap();
        guarded("ready", env.ready()).await.expect("ready");
        guarded("parked", env.wait_parked(|n| n == 2)).await;
        let out = env.invoke(input("n-1", &json!({"a": 1}))).await.unwrap();
        assert_eq!(out.function_error, None, "{:?}", out.payload);
        assert_eq!(json_of(&out), json!({"ok": {"a": 1}}));
        env.stop(Duration::from_secs(1)).await;
        let recs = log_records(&log);
        let line = recs
            .iter()
            .find(|r| r["message"] == "handling n-1")
            .unwrap_or_else(|| panic!("no console line in {recs:#?}"));
        assert_eq!(line["requestId"], "n-1");
        assert_eq!(line["level"], "INFO");

        let env = ready_env(&p, &code, "node-fails", "index.fails", 1).await;
        let out = env.invoke(input("n-2", &json!({}))).await.unwrap();
        assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(out.error_type.as_deref(), Some("TypeError"));
        let v = json_of(&out);
        assert_eq!(v["errorType"], "TypeError");
        assert_eq!(v["errorMessage"], "bad input");
        assert!(v["stackTrace"].is_array());
        env.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs node on PATH; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=node)"]
    async fn runs_a_commonjs_handler() {
        let dir = tempfile::tempdir().unwrap();
        let p = node_provider(dir.path());
        let code = code_dir(
            dir.path(),
            &[(
                "index.js",
                "const os = require('node:os');\n\
             exports.handler = async (e, ctx) => ({ cjs: e, requestId: ctx.awsRequestId,\n\
             \x20 max: process.env.AWS_LAMBDA_MAX_CONCURRENCY, remaining: ctx.getRemainingTimeInMillis() > 0 });\n\
             exports.sync = (e) => e.n * 2;\n",
            )],
        );
        let env = ready_env(&p, &code, "node-cjs", "index.handler", 2).await;
        let out = env.invoke(input("c-1", &json!("x"))).await.unwrap();
        assert_eq!(
            json_of(&out),
            json!({"cjs": "x", "requestId": "c-1", "max": "2", "remaining": true})
        );
        env.stop(Duration::from_secs(1)).await;

        let env = ready_env(&p, &code, "node-sync", "index.sync", 1).await;
        let out = env.invoke(input("c-2", &json!({"n": 21}))).await.unwrap();
        assert_eq!(json_of(&out), json!(42));
        env.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs node on PATH; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=node)"]
    async fn eight_concurrent_invokes_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let p = node_provider(dir.path());
        let code = code_dir(
            dir.path(),
            &[(
                "index.mjs",
                "import { threadId } from 'node:worker_threads';\n\
             export const handler = async () => {\n\
             \x20 await new Promise((r) => setTimeout(r, 1000));\n\
             \x20 return { thread: threadId };\n\
             };\n",
            )],
        );
        let env = Arc::new(ready_env(&p, &code, "node-conc", "index.handler", 8).await);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let env = Arc::clone(&env);
            tasks.spawn(async move { env.invoke(input(&format!("c-{i}"), &json!({}))).await });
        }
        guarded("8 in flight", env.wait_active(|n| n == 8)).await;
        assert_eq!(env.in_flight(), 8);
        assert!(env.invoke(input("ninth", &json!({}))).await.is_err());
        let mut threads = std::collections::BTreeSet::new();
        while let Some(r) = guarded("invokes", tasks.join_next()).await {
            let out = r.unwrap().expect("admitted");
            assert_eq!(out.function_error, None, "{:?}", out.payload);
            assert!(out.duration < Duration::from_secs(5));
            threads.insert(json_of(&out)["thread"].as_u64().unwrap());
        }
        assert_eq!(
            threads.len(),
            2,
            "vcpus = 2: two worker threads share the loops"
        );
        assert_eq!(env.state(), EnvState::Ready);
        env.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs node on PATH; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=node)"]
    async fn a_handler_that_cannot_load_is_a_runtime_init_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = node_provider(dir.path());
        let code = code_dir(
            dir.path(),
            &[
                ("index.mjs", "export const handler = async () => 1;\n"),
                ("broken.js", "exports.handler = async () => {;\n"),
            ],
        );
        for (id, handler, want) in [
            (
                "missing-export",
                "index.nope",
                "Runtime.HandlerNotFound: index.nope is undefined or not exported",
            ),
            (
                "missing-file",
                "nofile.handler",
                "Runtime.ImportModuleError: Error: Cannot find module 'nofile'",
            ),
            (
                "syntax",
                "broken.handler",
                "Runtime.UserCodeSyntaxError: SyntaxError",
            ),
            ("malformed", "index", "Runtime.MalformedHandlerName"),
        ] {
            let mut s = spec(id, RUNTIME, &code, 4);
            s.handler = Some(handler.into());
            let env = Environment::start(s, &p).await.unwrap();
            let f = guarded("init failure", env.ready()).await.unwrap_err();
            assert_eq!(f.reason_code, InitReasonCode::RuntimeInitError, "{handler}");
            assert!(f.reason.starts_with(want), "{handler}: {}", f.reason);
        }
    }
}
