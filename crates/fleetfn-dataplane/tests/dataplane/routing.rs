//! The router through `Invoker::invoke`: the least-loaded environment, another environment after
//! a refusal, a vanished environment or an unreachable agent; one throttle reason chosen from the
//! refusals (the 429 message and the counters); an agent that does not answer.

use std::collections::HashMap;
use std::time::Duration;

use fleetfn_model::ErrorKind;
use fleetfn_proto::ThrottleReason;
use tokio::time::Instant;

use crate::support::{Answer, FunctionSpec, Harness, Health};

const REASONS: [&str; 4] = ["concurrency", "cpu", "memory", "disk"];

/// Each throttle counter of `f:1`.
fn throttles(h: &Harness) -> HashMap<&'static str, f64> {
    REASONS
        .iter()
        .map(|r| {
            (
                *r,
                h.metric(&format!("fleetfn_{r}_throttles_total"), "f", "1"),
            )
        })
        .collect()
}

/// Asserts that exactly one throttle was counted, under `reason`.
fn one_throttle_under(h: &Harness, reason: &str) {
    assert_eq!(h.metric("fleetfn_throttles_total", "f", "1"), 1.0);
    for (r, n) in throttles(h) {
        let want = if r == reason { 1.0 } else { 0.0 };
        assert_eq!(n, want, "{r} throttles");
    }
}

/// Every agent of `f` refuses with `reason`; the invoke is throttled under it.
async fn all_refuse(reason: ThrottleReason, label: &str, counter: &str) {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), Answer::Refuse(reason));
    let id = h.next_request_id();
    let e = h.invoke("f:1", "x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests);
    assert!(
        e.message.contains(&format!("({label} throttle)")),
        "{}",
        e.message
    );
    assert!(
        e.message.contains(&format!(
            "3 of 3 are over their {} ceiling",
            label.to_lowercase()
        )),
        "{}",
        e.message
    );
    // Each environment was asked once.
    let tried: std::collections::BTreeSet<String> =
        h.tries(&id).into_iter().map(|t| t.env_id).collect();
    assert_eq!(tried.len(), 3);
    one_throttle_under(&h, counter);
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn memory_refusals_throttle_under_memory() {
    all_refuse(ThrottleReason::Memory, "Memory", "memory").await;
}

#[tokio::test(start_paused = true)]
async fn disk_refusals_throttle_under_disk() {
    all_refuse(ThrottleReason::Disk, "Disk", "disk").await;
}

#[tokio::test(start_paused = true)]
async fn cpu_refusals_throttle_under_cpu() {
    all_refuse(ThrottleReason::Cpu, "CPU", "cpu").await;
}

#[tokio::test(start_paused = true)]
async fn the_throttle_reason_is_the_most_frequent_refusal() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let agents = h.provider.running();
    agents[0].set_answer(Some(Answer::Refuse(ThrottleReason::Disk)));
    agents[1].set_answer(Some(Answer::Refuse(ThrottleReason::Cpu)));
    agents[2].set_answer(Some(Answer::Refuse(ThrottleReason::Cpu)));
    let e = h.invoke("f:1", "x").await.unwrap_err();
    assert!(e.message.contains("(CPU throttle)"), "{}", e.message);
    assert!(
        e.message.contains("2 of 3 are over their cpu ceiling"),
        "{}",
        e.message
    );
    one_throttle_under(&h, "cpu");
}

#[tokio::test(start_paused = true)]
async fn environments_at_their_concurrency_limit_throttle_without_a_round_trip() {
    let mut h = Harness::new();
    let spec = FunctionSpec {
        max_concurrency: Some(1),
        ..FunctionSpec::default()
    };
    h.active_function(&spec).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), Answer::After(Duration::from_secs(10)));
    let busy = [
        h.spawn_invoke("f:1", "a").await,
        h.spawn_invoke("f:1", "b").await,
        h.spawn_invoke("f:1", "c").await,
    ];
    let id = h.next_request_id();
    let e = h.invoke("f:1", "d").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests);
    assert!(
        e.message.contains("(Concurrency throttle)"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("All 3 execution environments")
            && e.message.contains("concurrency limit"),
        "{}",
        e.message
    );
    assert!(h.tries(&id).is_empty(), "no agent was asked");
    one_throttle_under(&h, "concurrency");
    for b in busy {
        b.await.expect("join").expect("the busy invokes complete");
    }
}

#[tokio::test(start_paused = true)]
async fn invokes_go_to_the_least_loaded_environment() {
    let mut h = Harness::new();
    let spec = FunctionSpec {
        max_concurrency: Some(4),
        ..FunctionSpec::default()
    };
    h.active_function(&spec).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), Answer::After(Duration::from_secs(10)));
    let mut held = Vec::new();
    for i in 0..6 {
        held.push(h.spawn_invoke("f:1", &i.to_string()).await);
    }
    let mut per_env: HashMap<String, usize> = HashMap::new();
    for a in h.provider.running() {
        for r in a.invokes() {
            *per_env.entry(r.env_id).or_default() += 1;
        }
    }
    assert_eq!(per_env.len(), 3, "{per_env:?}");
    assert!(per_env.values().all(|n| *n == 2), "{per_env:?}");
    for j in held {
        j.await.expect("join").expect("invoke");
    }
}

/// Invokes `f:1` until `on` has been tried (bounded); every invoke must succeed. Returns how many
/// invokes it took.
async fn until_tried(h: &mut Harness, on: &crate::support::FakeAgent) -> usize {
    for n in 1..=200 {
        h.invoke("f:1", "x")
            .await
            .unwrap_or_else(|e| panic!("invoke {n}: {e}"));
        if !on.invokes().is_empty() {
            return n;
        }
    }
    panic!("200 invokes and {} never tried", on.instance_id());
}

#[tokio::test(start_paused = true)]
async fn an_environment_that_refuses_is_skipped_for_another() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let refusing = h.provider.running()[0].clone();
    refusing.set_answer(Some(Answer::Refuse(ThrottleReason::Cpu)));
    let n = until_tried(&mut h, &refusing).await;
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), n as f64);
    assert_eq!(h.metric("fleetfn_throttles_total", "f", "1"), 0.0);
    // The invoke that met the refusal was answered elsewhere.
    let id = refusing.invokes()[0].request_id.clone();
    let served = h.served(&id).expect("answered");
    assert_ne!(served.instance_id, refusing.instance_id());
}

#[tokio::test(start_paused = true)]
async fn an_environment_the_agent_no_longer_knows_is_skipped_for_another() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let forgetful = h.provider.running()[1].clone();
    forgetful.set_answer(Some(Answer::Gone));
    until_tried(&mut h, &forgetful).await;
    let id = forgetful.invokes()[0].request_id.clone();
    assert_ne!(
        h.served(&id).expect("answered").instance_id,
        forgetful.instance_id()
    );
    assert_eq!(h.metric("fleetfn_errors_total", "f", "1"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_agent_is_skipped_and_the_invoke_delivered_elsewhere() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let down = h.provider.running()[2].clone();
    // Connection refused: the invoke never reached it, so another environment may run it.
    down.set_health(Health::Dead);
    until_tried(&mut h, &down).await;
    let id = down.invokes()[0].request_id.clone();
    assert_ne!(
        h.served(&id).expect("answered").instance_id,
        down.instance_id()
    );
    assert_eq!(h.metric("fleetfn_errors_total", "f", "1"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn no_reachable_agent_is_a_service_error_not_a_throttle() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    for a in h.provider.running() {
        a.set_health(Health::Dead);
    }
    let id = h.next_request_id();
    let e = h.invoke("f:1", "x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Service, "{e}");
    assert!(
        e.message.contains("could not deliver the invoke"),
        "{}",
        e.message
    );
    assert_eq!(h.tries(&id).len(), 3);
    assert_eq!(h.metric("fleetfn_throttles_total", "f", "1"), 0.0);
    assert_eq!(h.metric("fleetfn_errors_total", "f", "1"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_never_answers_is_a_service_error_that_may_have_run() {
    let mut h = Harness::new();
    let spec = FunctionSpec {
        timeout_secs: Some(5),
        ..FunctionSpec::default()
    };
    h.active_function(&spec).await;
    h.provider.script().answers.insert("f".into(), Answer::Hang);
    let id = h.next_request_id();
    let t0 = Instant::now();
    let e = h.invoke("f:1", "x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Service, "{e}");
    assert!(
        e.message.contains("may or may not have run"),
        "{}",
        e.message
    );
    // The function's timeout plus the router's margin, and never retried elsewhere (it may
    // have run).
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
    assert_eq!(h.tries(&id).len(), 1);
    assert_eq!(h.metric("fleetfn_errors_total", "f", "1"), 1.0);
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn an_invoke_during_a_rollout_of_a_new_version_is_not_routed_to_another_version() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.provider.script().ready_after = Duration::from_secs(30);
    h.update_code("f", "v2").await;
    h.publish("f").await;
    h.run_for(Duration::from_secs(5)).await;
    // Version 2 is Pending (not invocable); version 1 only ever reaches its own environments.
    let e = h.invoke("f:2", "x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceConflict);
    let v1 = crate::support::harness::code_hex(&h.config("f:1").await);
    for _ in 0..10 {
        let id = h.next_request_id();
        h.invoke("f:1", "x").await.expect("invoke");
        assert_eq!(
            h.served(&id).and_then(|r| r.code_sha256_hex).as_deref(),
            Some(v1.as_str())
        );
    }
}
