//! Admission ceilings end to end, through a real agent API and `AgentClient`: an environment
//! whose memory or `/tmp` is over its ceiling answers 429 with reason `memory` or `disk`, a
//! normal one runs the invoke; an environment whose only runtime worker is busy refuses a
//! second invoke with `cpu` when that worker keeps its cgroup out of CPU quota and with
//! `concurrency` when it sleeps. Once with plain child processes, once sandboxed (root and
//! cgroups: in `needs_root`, `#[ignore]`d unless run with `--include-ignored`, as `scripts/test` does) under an instance slice of its own.
//!
//! The function's `bootstrap` takes the resources before the runtime starts: it fills
//! `$TMPDIR` with `FILL_TMP_MB` MiB and starts `hog hold HOLD_MB` (the sandbox test helper,
//! which keeps that much memory until killed), waiting until the memory is held.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use fleetfn_agent::{
    Agent, AgentConfig, InstanceShape, InstanceSlice, RuntimeProvider, RuntimeProviderConfig,
    SandboxLauncher,
};
use fleetfn_artifacts::{ArtifactStore, Digest};
use fleetfn_proto::{
    AgentClient, AgentReport, EnvState, EnvironmentRequest, EnvironmentStatus, InvokeReply,
    ThrottleReason,
};
use fleetfn_sandbox::{CgroupLayout, Isolation, LinuxHost, Namespaces};

const TOKEN: &str = "test-token";
const MEMORY_MB: u32 = 512;
/// 470 of 512 MiB: 91.8 %, over the 90 % memory ceiling before the runtime's own use.
const HOLD_MB: u32 = 470;
/// `/tmp` of 64 MiB (the smallest sandbox `/tmp`), 60 MiB written: 93.75 %.
const TMP_MB: u32 = 64;
const FILL_MB: u32 = 60;

const BOOTSTRAP: &str = r#"#!/bin/sh
set -e
if [ -n "$FILL_TMP_MB" ]; then
  head -c "${FILL_TMP_MB}M" /dev/zero > "$TMPDIR/fill"
fi
if [ -n "$HOLD_MB" ]; then
  mkfifo "$TMPDIR/held"
  ./hog hold "$HOLD_MB" > "$TMPDIR/held" &
  read -r line < "$TMPDIR/held"
fi
if [ -n "$ONE_WORKER" ]; then
  export AWS_LAMBDA_MAX_CONCURRENCY=1
fi
exec ./testfn
"#;

/// The code package: the bootstrap above, the fixture function and the memory hog.
fn package() -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o755);
    let files: [(&str, Vec<u8>); 3] = [
        ("bootstrap", BOOTSTRAP.as_bytes().to_vec()),
        ("testfn", std::fs::read(testfn_binary()).unwrap()),
        ("hog", std::fs::read(sandbox_helper_binary()).unwrap()),
    ];
    for (name, data) in files {
        w.start_file(name, opts).unwrap();
        w.write_all(&data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// An agent serving its API on loopback.
struct Harness {
    _dir: tempfile::TempDir,
    agent: Agent,
    client: AgentClient,
    digest: Digest,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(
        sandbox: Option<(Isolation, Option<Arc<InstanceSlice>>)>,
        shape: InstanceShape,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let digest = store.put(&package()).unwrap();
        let mut provider = RuntimeProvider::detect(RuntimeProviderConfig::new(
            dir.path().join("rt"),
            dir.path().join("envs"),
        ));
        let mut isolation = "none (plain child processes)".to_owned();
        let mut instance_slice = None;
        if let Some((iso, slice)) = sandbox {
            isolation = iso.to_string();
            instance_slice.clone_from(&slice);
            let net = fleetfn_agent::NetworkConfig {
                isolation: fleetfn_sandbox::net::probe(iso.root, false),
                dns: Vec::new(),
                leases: fleetfn_sandbox::LeaseDir::new(fleetfn_sandbox::DEFAULT_LEASE_DIR),
            };
            provider = provider.with_launcher(Arc::new(SandboxLauncher::new(
                sandbox_helper_binary().to_path_buf(),
                iso,
                slice,
                net,
            )));
        }
        let agent = Agent::new(
            AgentConfig {
                instance_id: instance_slice
                    .as_ref()
                    .map_or("i-test", |s| s.instance_id())
                    .into(),
                zone: "z1".into(),
                token: TOKEN.into(),
                artifacts_dir: dir.path().join("artifacts"),
                logs_dir: dir.path().join("logs"),
                log_limits: Default::default(),
                isolation,
                instance: shape,
                instance_slice,
            },
            provider,
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = agent.router();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            _dir: dir,
            agent,
            client: AgentClient::new(addr, TOKEN),
            digest,
            server,
        }
    }

    async fn put(&self, env_id: &str, env: &[(&str, u32)], ephemeral_mb: u32) {
        self.put_max(env_id, env, ephemeral_mb, 1).await;
    }

    async fn put_max(&self, env_id: &str, env: &[(&str, u32)], ephemeral_mb: u32, max: u32) {
        let req = EnvironmentRequest {
            function_name: "testfn".into(),
            version: "1".into(),
            qualified_arn: "arn:aws:lambda:us-east-1:123456789012:function:testfn:1".into(),
            runtime: "provided.al2023".into(),
            handler: None,
            code_sha256_hex: self.digest.hex(),
            code_size: self.digest.size(),
            memory_mb: MEMORY_MB,
            timeout_secs: 30,
            max_concurrency: max,
            vcpus: 1.0,
            ephemeral_storage_mb: ephemeral_mb,
            region: "us-east-1".into(),
            env_vars: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            placement: None,
            credentials: None,
            layers: Vec::new(),
        };
        self.client.put_environment(env_id, &req).await.unwrap();
    }

    /// Long-polls reports until `pred` holds for the environment (woken by the agent's
    /// revision: state changes and admission-ceiling changes).
    async fn wait_for(
        &self,
        env_id: &str,
        what: &str,
        pred: impl Fn(&EnvironmentStatus) -> bool,
    ) -> AgentReport {
        guarded(what, async {
            let mut after = None;
            loop {
                let r = self
                    .client
                    .report(after, Duration::from_secs(10))
                    .await
                    .unwrap();
                let env = r.environments.iter().find(|e| e.env_id == env_id);
                if let Some(e) = env {
                    assert!(
                        !matches!(e.state, EnvState::Failed | EnvState::Exited),
                        "{env_id} ended: {e:?}"
                    );
                    if pred(e) {
                        return r;
                    }
                }
                after = Some(r.revision);
            }
        })
        .await
    }

    async fn invoke(&self, env_id: &str, request_id: &str) -> InvokeReply {
        invoke(&self.client, env_id, request_id, br#"{"op":"echo","x":1}"#).await
    }

    async fn stop(self) {
        self.agent.stop_all(Duration::from_secs(2)).await;
        self.server.abort();
    }
}

async fn invoke(
    client: &AgentClient,
    env_id: &str,
    request_id: &str,
    payload: &'static [u8],
) -> InvokeReply {
    client
        .invoke(
            Duration::from_secs(30),
            env_id,
            request_id,
            Bytes::from_static(payload),
            None,
            None,
        )
        .await
        .unwrap()
}

fn ready(e: &EnvironmentStatus) -> bool {
    e.state == EnvState::Ready
}

fn memory_over(e: &EnvironmentStatus) -> bool {
    ready(e)
        && e.memory_bytes
            .is_some_and(|m| m * 10 >= e.memory_limit_bytes * 9)
}

fn tmp_over(e: &EnvironmentStatus) -> bool {
    ready(e)
        && e.tmp_used_bytes
            .is_some_and(|t| t * 10 >= e.tmp_limit_bytes * 9)
}

fn assert_rejected(reply: &InvokeReply, want: ThrottleReason) {
    match reply {
        InvokeReply::Rejected { reason, detail } => {
            assert_eq!(*reason, want, "{detail}");
            assert!(detail.contains(want.as_header()), "{detail}");
        }
        other => panic!("expected a {want} rejection, got {other:?}"),
    }
}

/// The environments and what each must answer. In a sandbox `/tmp` is a tmpfs charged to the
/// environment's memory, so the environment over both ceilings holds less itself (and stays
/// under its hard memory limit).
async fn check_ceilings(h: &Harness, sandboxed: bool) {
    h.put("normal", &[], TMP_MB).await;
    h.put("hungry", &[("HOLD_MB", HOLD_MB)], TMP_MB).await;
    h.put("full", &[("FILL_TMP_MB", FILL_MB)], TMP_MB).await;
    // Over both: memory is checked first.
    let hold = if sandboxed {
        HOLD_MB - FILL_MB
    } else {
        HOLD_MB
    };
    h.put(
        "both",
        &[("HOLD_MB", hold), ("FILL_TMP_MB", FILL_MB)],
        TMP_MB,
    )
    .await;

    let r = h.wait_for("normal", "normal ready", ready).await;
    let normal = r
        .environments
        .iter()
        .find(|e| e.env_id == "normal")
        .unwrap();
    assert_eq!(normal.tmp_limit_bytes, u64::from(TMP_MB) << 20);
    match h.invoke("normal", "ok-1").await {
        InvokeReply::Done {
            payload,
            function_error,
        } => {
            assert_eq!(function_error, None);
            assert_eq!(&payload[..], br#"{"op":"echo","x":1}"#);
        }
        other => panic!("the normal environment must run the invoke: {other:?}"),
    }

    let r = h
        .wait_for("hungry", "memory over its ceiling", memory_over)
        .await;
    let hungry = r
        .environments
        .iter()
        .find(|e| e.env_id == "hungry")
        .unwrap();
    // Over the 90 % ceiling (the working set can be a little under what the hog allocated).
    assert!(
        hungry.memory_bytes.unwrap() >= hungry.memory_limit_bytes / 10 * 9,
        "{hungry:?}"
    );
    assert_rejected(&h.invoke("hungry", "mem-1").await, ThrottleReason::Memory);

    h.wait_for("full", "/tmp over its ceiling", tmp_over).await;
    assert_rejected(&h.invoke("full", "disk-1").await, ThrottleReason::Disk);

    h.wait_for("both", "memory and /tmp over their ceilings", |e| {
        memory_over(e) && tmp_over(e)
    })
    .await;
    assert_rejected(&h.invoke("both", "both-1").await, ThrottleReason::Memory);

    // The normal one is unaffected by its neighbours.
    assert!(matches!(
        h.invoke("normal", "ok-2").await,
        InvokeReply::Done { .. }
    ));
}

/// An environment that takes two invokes at once whose runtime runs one worker
/// (`ONE_WORKER`), that worker busy with `busy` (3 s of `burn`, 5 s of `sleep`): the second invoke
/// finds no worker with concurrency to spare, waits its 20 ms and is refused. When the busy
/// worker burns the CPU, the environment's cgroup runs out of quota and the refusal is `cpu`
/// (once the agent has sampled it); when it sleeps, nothing is short of CPU and every refusal
/// is `concurrency`.
async fn check_one_worker(h: &Harness, env_id: &str, busy: &'static [u8], want: ThrottleReason) {
    h.put_max(env_id, &[("ONE_WORKER", 1)], TMP_MB, 2).await;
    h.wait_for(env_id, "ready", ready).await;
    let client = h.client.clone();
    let id = env_id.to_owned();
    let first = tokio::spawn(async move { invoke(&client, &id, "busy-1", busy).await });
    guarded("the first invoke in flight", async {
        loop {
            let r = h.client.report(None, Duration::ZERO).await.unwrap();
            let e = r.environments.iter().find(|e| e.env_id == env_id).unwrap();
            if (e.in_flight, e.parked) == (1, 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Bounded: 15 tries 100 ms apart, inside the time the first invoke takes. The agent
    // samples every 250 ms, so a throttled cgroup is seen within the first few.
    let mut reasons = Vec::new();
    for n in 0..15 {
        match invoke(
            &h.client,
            env_id,
            &format!("second-{n}"),
            br#"{"op":"echo"}"#,
        )
        .await
        {
            InvokeReply::Rejected { reason, detail } => {
                reasons.push(reason);
                if reason == ThrottleReason::Cpu {
                    assert!(detail.contains("came back for another invoke"), "{detail}");
                }
            }
            other => panic!("the busy environment took a second invoke: {other:?}"),
        }
        if want == ThrottleReason::Cpu && reasons.last() == Some(&ThrottleReason::Cpu) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if want == ThrottleReason::Cpu {
        assert_eq!(reasons.last(), Some(&ThrottleReason::Cpu), "{reasons:?}");
    } else {
        assert!(reasons.iter().all(|r| *r == want), "{reasons:?}");
    }
    assert!(matches!(
        guarded("the first invoke", first).await.unwrap(),
        InvokeReply::Done { .. }
    ));
}

/// [`check_one_worker`] with a worker that sleeps: `concurrency` refusals only.
async fn check_sleeping_worker(h: &Harness) {
    let sleep = br#"{"op":"sleep","ms":5000}"#;
    check_one_worker(h, "sleeping", sleep, ThrottleReason::Concurrency).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_single_worker_of_plain_processes_is_a_concurrency_refusal() {
    let h = Harness::start(None, InstanceShape::local()).await;
    check_sleeping_worker(&h).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_processes_are_refused_over_memory_and_disk_ceilings() {
    let h = Harness::start(None, InstanceShape::local()).await;
    check_ceilings(&h, false).await;
    let r = h.client.report(None, Duration::ZERO).await.unwrap();
    let instance = r.instance.expect("the report names the instance");
    assert_eq!(instance.instance_type, "local");
    assert_eq!((instance.cpu_usage_ns, instance.memory_bytes), (None, None));
    h.stop().await;
}

/// This host's isolation and cgroup layout; the test fails, saying why, when it cannot sandbox
/// with cgroups.
fn sandbox_host() -> (Isolation, CgroupLayout) {
    let iso = fleetfn_sandbox::probe(&LinuxHost);
    let layout = iso.cgroups.clone().filter(CgroupLayout::can_limit);
    let found = if !iso.root {
        Err(format!("not root ({iso})"))
    } else if iso.namespaces != Namespaces::all() {
        Err(format!("namespaces cannot be unshared ({iso})"))
    } else {
        match layout {
            Some(layout) => Ok((iso, layout)),
            None => Err(format!("no usable memory+cpu cgroups ({iso})")),
        }
    };
    fleetfn_testutil::require(fleetfn_testutil::ROOT, found)
}

/// Removes the test's top slice even when an assertion fails.
struct SliceGuard(Option<Arc<InstanceSlice>>, fleetfn_sandbox::Cgroups);

impl Drop for SliceGuard {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.close();
        }
        let _ = self.1.remove_slice();
    }
}

mod needs_root {
    use super::*;

    /// An agent sandboxing its environments under an instance slice `i-<tag>` (4 vCPUs at
    /// `cpu_scale` of a host CPU each, 4 GiB) in a top slice of the test's own, so agents
    /// running on the host never sweep it (and tests running at once hold different instance
    /// leases).
    async fn sandboxed(
        tag: &str,
        cpu_scale: f64,
    ) -> (
        Harness,
        SliceGuard,
        Arc<InstanceSlice>,
        CgroupLayout,
        String,
    ) {
        let (iso, layout) = sandbox_host();
        let top = format!("fleetfn-test-{}-{tag}", std::process::id());
        let shape = InstanceShape {
            instance_type: "test.xlarge".into(),
            vcpus: 4,
            memory_mib: 4096,
            cpu_scale,
        };
        let slice = Arc::new(
            InstanceSlice::create(
                layout.clone(),
                &top,
                &format!("i-{tag}"),
                shape.clone(),
                &fleetfn_sandbox::LeaseDir::new(fleetfn_sandbox::DEFAULT_LEASE_DIR),
            )
            .unwrap(),
        );
        let guard = SliceGuard(
            Some(slice.clone()),
            fleetfn_sandbox::Cgroups::new(layout.clone(), &top).unwrap(),
        );
        let h = Harness::start(Some((iso, Some(slice.clone()))), shape).await;
        (h, guard, slice, layout, top)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    async fn a_worker_held_by_the_cpu_quota_is_a_cpu_refusal() {
        // An environment of 1 vCPU gets 5 % of a host CPU: the burning worker runs out of
        // that quota in every period even on a busy host.
        let (h, guard, ..) = sandboxed("starved", 0.05).await;
        check_one_worker(
            &h,
            "burning",
            br#"{"op":"burn","ms":3000}"#,
            ThrottleReason::Cpu,
        )
        .await;
        check_sleeping_worker(&h).await;
        h.stop().await;
        drop(guard);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs root with namespaces and cgroups; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=root)"]
    async fn sandboxed_environments_under_an_instance_slice_are_refused_over_their_ceilings() {
        let (h, guard, slice, layout, top) = sandboxed("admission", 0.5).await;
        check_ceilings(&h, true).await;

        // Every environment's cgroup is in the instance slice, its CPU quota vcpus × cpu_scale.
        let mut envs = slice.env_cgroups();
        envs.sort();
        assert_eq!(envs, ["both", "full", "hungry", "normal"]);
        let cpu_dir = match &layout {
            CgroupLayout::V1 { root, .. } => root.join("cpu"),
            CgroupLayout::V2 { root, .. } => root.clone(),
        }
        .join(&top)
        .join("i-admission");
        match &layout {
            CgroupLayout::V1 { .. } => {
                let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
                assert_eq!(read(cpu_dir.join("cpu.cfs_quota_us")).trim(), "200000");
                assert_eq!(
                    read(cpu_dir.join("normal/cpu.cfs_quota_us")).trim(),
                    "50000"
                );
            }
            CgroupLayout::V2 { .. } => {
                let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap();
                assert_eq!(read(cpu_dir.join("cpu.max")).trim(), "200000 100000");
                assert_eq!(read(cpu_dir.join("normal/cpu.max")).trim(), "50000 100000");
            }
        }
        // The instance's use covers its environments: at least the held memory.
        let r = h.client.report(None, Duration::ZERO).await.unwrap();
        let instance = r.instance.expect("the report names the instance");
        assert_eq!(
            (
                instance.instance_type.as_str(),
                instance.vcpus,
                instance.cpu_scale
            ),
            ("test.xlarge", 4, 0.5)
        );
        assert!(instance.cpu_usage_ns.is_some_and(|n| n > 0), "{instance:?}");
        assert!(
            instance
                .memory_bytes
                .is_some_and(|m| m >= 2 * (u64::from(HOLD_MB) << 20)),
            "{instance:?}"
        );

        h.stop().await;
        drop(guard);
        assert!(!cpu_dir.exists(), "the slice is removed");
    }
}
