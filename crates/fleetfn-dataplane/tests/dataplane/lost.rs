//! Failures of instances: a killed agent, a hung one, an environment that exits, launches that
//! fail (backing off, then recovering), a provider without capacity.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::{FunctionSpec, Harness, Health};

const MINUTE: Duration = Duration::from_secs(60);

/// Three Ready environments of `f`, one per zone, none on instance `not_on`.
fn replaced(h: &Harness, not_on: &str) -> bool {
    let ready = h.ready("f");
    ready.len() == 3
        && ready.iter().all(|(_, _, i)| i != not_on)
        && Harness::per_zone(&ready).values().all(|n| *n == 1)
}

#[tokio::test(start_paused = true)]
async fn a_killed_agent_is_replaced_in_the_same_zone() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let victim = h.provider.running()[0].clone();
    let zone = victim.zone().to_string();
    let before = h.provider.launches().len();
    h.provider.kill(victim.instance_id());
    let took = h
        .until("a replacement in the same zone", MINUTE, || async {
            replaced(&h, victim.instance_id())
        })
        .await;
    // A process known to be gone is lost at its first failed report.
    assert!(took < Duration::from_secs(10), "{took:?}");
    let after: Vec<_> = h.provider.launches().into_iter().skip(before).collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].zone, zone);
    assert!(
        h.provider
            .terminations()
            .iter()
            .any(|(i, _)| i == victim.instance_id())
    );
    assert_eq!(h.config("f:1").await.state, fleetfn_model::State::Active);
    h.invoke("f:1", "x")
        .await
        .expect("invoke after the replacement");
}

#[tokio::test(start_paused = true)]
async fn a_hung_agent_leaves_the_routes_at_once_and_is_lost_after_missed_heartbeats() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let victim = h.provider.running()[1].clone();
    let t0 = Instant::now();
    // Hung: it accepts requests and never answers (a partition that drops packets).
    victim.set_health(Health::Hung);
    h.run_for(Duration::from_secs(3)).await;
    // Its first missed heartbeat (no report within 2.5 s) took it out of the routes: invokes go
    // to the other two and none waits on the hung one.
    assert!(h.provider.terminations().is_empty(), "not lost yet");
    for i in 0..12 {
        let out = tokio::time::timeout(Duration::from_secs(1), h.invoke("f:1", &format!("p{i}")))
            .await
            .expect("no invoke waits on the hung agent")
            .expect("served elsewhere");
        assert_eq!(out.payload, format!("p{i}").into_bytes());
    }
    assert!(victim.invokes().is_empty(), "{:?}", victim.invokes());
    h.until("a replacement for the hung agent", 2 * MINUTE, || async {
        replaced(&h, victim.instance_id())
    })
    .await;
    let (_, at) = h
        .provider
        .terminations()
        .into_iter()
        .find(|(i, _)| i == victim.instance_id())
        .expect("the hung instance is terminated");
    // Three missed heartbeats of 2.5 s each, 0.2 s apart.
    let lost = at - t0;
    assert!(
        lost >= Duration::from_millis(7500) && lost <= Duration::from_secs(9),
        "{lost:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_agent_whose_process_runs_is_lost_after_three_failed_reports() {
    let h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let victim = h.provider.running()[2].clone();
    // Connection refused, yet the provider still sees the process.
    victim.set_health(Health::Dead);
    h.until(
        "a replacement for the unreachable agent",
        MINUTE,
        || async { replaced(&h, victim.instance_id()) },
    )
    .await;
    assert!(
        h.provider
            .terminations()
            .iter()
            .any(|(i, _)| i == victim.instance_id())
    );
}

#[tokio::test(start_paused = true)]
async fn an_environment_that_exits_is_replaced() {
    let h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let agent = h.provider.running()[0].clone();
    let gone = agent.envs()[0].env_id.clone();
    agent.forget(&gone);
    h.until("a replacement environment", MINUTE, || async {
        let ready = h.ready("f");
        ready.len() == 3
            && ready.iter().all(|(e, _, _)| e.env_id != gone)
            && Harness::per_zone(&ready).values().all(|n| *n == 1)
    })
    .await;
    assert_eq!(h.provider.launches().len(), 3, "the instance is reused");
}

/// Start times of rounds of launch attempts (attempts less than 100 ms apart are one round).
fn rounds(h: &Harness) -> Vec<Instant> {
    let mut out: Vec<Instant> = Vec::new();
    for l in h.provider.launches() {
        if out
            .last()
            .is_none_or(|t| l.at - *t > Duration::from_millis(100))
        {
            out.push(l.at);
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn failing_launches_back_off_then_recover() {
    let h = Harness::new();
    h.provider.fail_next_launches(9);
    let arn = h.capacity_provider("cp", None).await;
    h.create_function("f", &arn, &FunctionSpec::default()).await;
    h.publish("f").await;
    h.until_state("f:1", fleetfn_model::State::Active, 10 * MINUTE)
        .await;
    let failed = h.provider.launches().iter().filter(|l| !l.ok).count();
    assert_eq!(failed, 9);
    let r = rounds(&h);
    assert!(r.len() >= 4, "three failed rounds and a good one: {r:?}");
    let gaps: Vec<Duration> = r.windows(2).map(|w| w[1] - w[0]).collect();
    // One failed round (three launches, one per zone) is one back-off step: about 1 s, then
    // 2 s, 4 s; each wait jittered by ±20 % and taken at the deployer's next pass (≤ 1 s later).
    assert!(
        gaps[0] >= Duration::from_millis(800) && gaps[0] <= Duration::from_millis(2200),
        "{gaps:?}"
    );
    for w in gaps.windows(2) {
        assert!(
            w[1] + Duration::from_secs(1) >= w[0],
            "the spacing does not shrink: {gaps:?}"
        );
    }
    assert!(
        gaps[gaps.len() - 1] >= gaps[0] * 2,
        "the spacing grows: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_secs(62)),
        "at most the largest back-off apart: {gaps:?}"
    );
    assert_eq!(h.ready("f").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn without_capacity_launches_are_retried_slowly_and_succeed_once_it_returns() {
    let h = Harness::new();
    h.provider.set_no_capacity(true);
    let arn = h.capacity_provider("cp", None).await;
    h.create_function("f", &arn, &FunctionSpec::default()).await;
    h.publish("f").await;
    h.run_for(5 * MINUTE).await;
    assert_eq!(h.config("f:1").await.state, fleetfn_model::State::Pending);
    let attempts = h.provider.launches().len();
    // One round of three per back-off step: 1, 2, 4, … 32 s, then 60 s, each −20 % at worst.
    assert!(
        attempts <= 36,
        "no retry storm: {attempts} attempts in 5 min"
    );
    let gaps: Vec<Duration> = rounds(&h).windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_secs(62)),
        "{gaps:?}"
    );
    h.provider.set_no_capacity(false);
    h.until_state("f:1", fleetfn_model::State::Active, 2 * MINUTE)
        .await;
    assert_eq!(h.ready("f").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn throttles_while_launches_fail_name_the_launch_error() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.provider.set_no_capacity(true);
    for a in h.provider.running() {
        h.provider.kill(a.instance_id());
    }
    h.until("every environment lost", MINUTE, || async {
        h.ready("f").is_empty()
    })
    .await;
    h.run_for(Duration::from_secs(5)).await;
    let err = h.invoke("f:1", "x").await.unwrap_err();
    assert_eq!(
        err.kind,
        fleetfn_model::ErrorKind::TooManyRequests,
        "{err:?}"
    );
    assert!(
        err.message.contains(
            "Instance launches for its capacity provider are failing: InsufficientInstanceCapacity"
        ),
        "{}",
        err.message
    );
    h.provider.set_no_capacity(false);
    h.until("environments back", 2 * MINUTE, || async {
        h.ready("f").len() == 3
    })
    .await;
    h.invoke("f:1", "x")
        .await
        .expect("served once capacity returns");
}

#[tokio::test(start_paused = true)]
async fn a_replacement_that_fails_init_is_retried_with_growing_back_off() {
    let h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let hex = crate::support::harness::code_hex(&h.config("f:1").await);
    // From now on this code fails init (a broken host dependency, say).
    h.provider.script().init_failures.insert(
        hex.clone(),
        fleetfn_proto::Failure {
            reason_code: "Runtime.ExitError".into(),
            reason: "exit status 1".into(),
        },
    );
    let victim = h.provider.running()[0].clone();
    let t0 = Instant::now();
    h.provider.kill(victim.instance_id());
    h.run_for(2 * MINUTE).await;
    // An Active version does not fail for a replacement's sake: the other two serve meanwhile.
    assert_eq!(h.config("f:1").await.state, fleetfn_model::State::Active);
    assert_eq!(h.ready("f").len(), 2);
    let starts: Vec<Instant> = {
        let mut s: Vec<Instant> = h
            .provider
            .agents()
            .iter()
            .flat_map(crate::support::FakeAgent::started)
            .map(|(_, _, at)| at)
            .filter(|at| *at > t0)
            .collect();
        s.sort();
        s
    };
    assert!(starts.len() >= 4, "{starts:?}");
    assert!(
        starts.len() <= 12,
        "no retry storm: {} starts",
        starts.len()
    );
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // Each wait is jittered by ±20 % and taken at the deployer's next pass (≤ 1 s later), so
    // neighbours may come out equal; over the run the spacing grows.
    for w in gaps.windows(2) {
        assert!(
            w[1] + Duration::from_secs(1) >= w[0],
            "the spacing does not shrink: {gaps:?}"
        );
    }
    assert!(
        gaps[gaps.len() - 1] >= gaps[0] * 2,
        "the spacing grows: {gaps:?}"
    );
    // The cause goes away: the next attempt succeeds.
    h.provider.script().init_failures.clear();
    h.until("the replacement is Ready", 2 * MINUTE, || async {
        replaced(&h, victim.instance_id())
    })
    .await;
}
