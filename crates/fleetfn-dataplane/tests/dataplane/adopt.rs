//! A data plane that outlives its control plane: instances that outlive the data plane (joined
//! agents) are adopted by the next leader with what they run, nothing started twice; a follower
//! routes to them from the agents' reports, seeing new environments and lost agents.

use std::collections::BTreeSet;
use std::time::Duration;

use fleetfn_contracts::Invoker;
use fleetfn_dataplane::DataPlane;
use fleetfn_proto::EnvState;

use crate::support::{FunctionSpec, Harness, Health};

const MINUTE: Duration = Duration::from_secs(60);

/// The Ready environments of `f` as a data plane sees them.
fn ready_in(dp: &DataPlane) -> BTreeSet<String> {
    dp.environments()
        .environments
        .into_iter()
        .filter(|e| e.function_name == "f" && e.state == EnvState::Ready)
        .map(|e| e.environment_id)
        .collect()
}

fn ready_on_agents(h: &Harness) -> BTreeSet<String> {
    h.ready("f").into_iter().map(|(e, _, _)| e.env_id).collect()
}

fn starts(h: &Harness) -> usize {
    h.provider.agents().iter().map(|a| a.started().len()).sum()
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_adopts_what_runs_and_starts_nothing_again() {
    let mut h = Harness::new();
    h.provider.set_outlives(true);
    h.active_function(&FunctionSpec::default()).await;
    let before = ready_on_agents(&h);
    assert_eq!(before.len(), 3);
    let (launches, started) = (h.provider.launches().len(), starts(&h));

    // The leader stops: its instances and their environments keep running.
    h.shutdown().await;
    assert!(h.provider.terminations().is_empty());
    assert_eq!(ready_on_agents(&h), before);

    h.restart();
    h.until(
        "the new leader routes to the adopted environments",
        MINUTE,
        || async { ready_in(&h.dp) == before },
    )
    .await;
    h.run_for(Duration::from_secs(30)).await;
    assert_eq!(ready_in(&h.dp), before, "adopted, and still the same");
    assert_eq!(ready_on_agents(&h), before);
    assert_eq!(
        h.provider.launches().len(),
        launches,
        "no instance launched"
    );
    assert_eq!(starts(&h), started, "no environment started again");
    assert!(h.provider.agents().iter().all(|a| a.deleted().is_empty()));
    assert_eq!(h.config("f:1").await.state, fleetfn_model::State::Active);
    let out = h
        .invoke("f:1", "after")
        .await
        .expect("invoke on the new leader");
    assert_eq!(&out.payload[..], b"after");

    // It still leads: a higher minimum starts one more, and only one.
    h.scaling("f:1", Some(4), Some(4)).await;
    h.until("a fourth environment", MINUTE, || async {
        ready_on_agents(&h).len() == 4
    })
    .await;
    assert_eq!(starts(&h), started + 1);
}

#[tokio::test(start_paused = true)]
async fn a_follower_routes_from_the_agents_reports() {
    let started = tokio::time::Instant::now();
    let mut h = Harness::new();
    h.provider.set_outlives(true);
    h.active_function(&FunctionSpec::default()).await;
    let follower = h.follower();
    let placed = ready_on_agents(&h);
    h.until(
        "the follower sees the leader's environments",
        MINUTE,
        || async { ready_in(&follower) == placed },
    )
    .await;
    let req = h
        .request("f:1", "via follower", 900)
        .await
        .expect("resolves");
    let out = follower
        .invoke(req)
        .await
        .expect("invoke through the follower");
    assert_eq!(&out.payload[..], b"via follower");

    // What the follower routed is metered (flushed every 10 s) for the cost report, and the
    // follower adds no instance time of its own (the leader meters that).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let since = jiff::Timestamp::from_second(0).unwrap();
    let leader_cost = h.dp.cost(since).await.unwrap().report;
    let requests: u64 = leader_cost
        .capacity_providers
        .iter()
        .map(|p| p.requests)
        .sum();
    assert_eq!(
        requests, 1,
        "the invoke through the follower is counted once"
    );
    let follower_cost = follower.cost(since).await.unwrap().report;
    let again = h.dp.cost(since).await.unwrap().report;
    let instance_seconds = |r: &fleetfn_cost::Report| {
        r.capacity_providers
            .iter()
            .map(|p| p.instance_hours)
            .sum::<f64>()
            * 3600.0
    };
    let bound = h.provider.running().len() as f64 * started.elapsed().as_secs_f64();
    assert!(
        instance_seconds(&again) <= bound + 1.0,
        "instance time counted twice: {} s for {} instances in {:?}",
        instance_seconds(&again),
        h.provider.running().len(),
        started.elapsed()
    );
    assert!((instance_seconds(&follower_cost) - instance_seconds(&again)).abs() < 1.0);

    // A new environment is routable from the follower within a second of turning Ready.
    h.scaling("f:1", Some(4), Some(4)).await;
    h.until(
        "a fourth Ready environment on the agents",
        MINUTE,
        || async { ready_on_agents(&h).len() == 4 },
    )
    .await;
    let seen = h
        .until("the follower routes to it", MINUTE, || async {
            ready_in(&follower).len() == 4
        })
        .await;
    assert!(seen <= Duration::from_secs(1), "{seen:?}");

    // An agent that stops answering leaves the follower's routes within 3 s.
    let victim = h.provider.running()[0].clone();
    let on_victim: BTreeSet<String> = victim.envs().into_iter().map(|e| e.env_id).collect();
    assert!(!on_victim.is_empty());
    victim.set_health(Health::Dead);
    let gone = h
        .until(
            "the follower stops routing to the dead agent",
            MINUTE,
            || async { ready_in(&follower).is_disjoint(&on_victim) },
        )
        .await;
    assert!(gone <= Duration::from_secs(3), "{gone:?}");
    h.shutdown().await;
}
