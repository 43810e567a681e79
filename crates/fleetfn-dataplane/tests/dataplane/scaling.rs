//! The scaler with real placement: scale-out on CPU, on concurrency saturation and on
//! throttles; scale-in after the idle period, one step at a time, zones kept balanced, emptied
//! instances retired; `MaxExecutionEnvironments`; Min = Max = 0 and back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetfn_model::ErrorKind;
use tokio::time::Instant;

use crate::support::{Answer, FunctionSpec, Harness};

const MINUTE: Duration = Duration::from_secs(60);

fn balanced(h: &Harness, f: &str) -> bool {
    let per_zone = Harness::per_zone(&h.ready(f));
    let (lo, hi) = (
        per_zone.values().min().copied().unwrap_or(0),
        per_zone.values().max().copied().unwrap_or(0),
    );
    hi - lo <= 1
}

#[tokio::test(start_paused = true)]
async fn scales_out_on_cpu_and_settles_at_the_target() {
    let h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    // 2.7 vCPUs of work on three 1-vCPU environments: 90 % against a 50 % target.
    h.provider.script().cpu_demand.insert("f".into(), 2.7);
    h.until("six Ready environments", 2 * MINUTE, || async {
        h.ready("f").len() == 6
    })
    .await;
    // 45 % each now: it stays there.
    h.run_for(3 * MINUTE).await;
    assert_eq!(h.ready("f").len(), 6);
    assert!(
        Harness::per_zone(&h.ready("f")).values().all(|n| *n == 2),
        "{:?}",
        Harness::per_zone(&h.ready("f"))
    );
    assert_eq!(
        h.metric("fleetfn_scaler_desired_environments", "f", "1"),
        6.0
    );
}

#[tokio::test(start_paused = true)]
async fn scales_out_on_concurrency_saturation() {
    let h = Harness::new();
    let spec = FunctionSpec {
        max_concurrency: Some(1),
        ..FunctionSpec::default()
    };
    h.active_function(&spec).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), Answer::After(Duration::from_millis(200)));
    // Three callers keep the three single-concurrency environments busy all the time.
    let load = h.load("f:1", 3, Duration::from_millis(1));
    h.until("a fourth environment", 2 * MINUTE, || async {
        h.ready("f").len() >= 4
    })
    .await;
    // Three callers on four environments is 75 % saturation: no further growth.
    h.run_for(3 * MINUTE).await;
    assert_eq!(h.ready("f").len(), 4);
    assert_eq!(load.throttled.load(Ordering::Relaxed), 0);
    assert_eq!(load.failed.load(Ordering::Relaxed), 0);
    assert!(load.ok.load(Ordering::Relaxed) > 1000);
}

#[tokio::test(start_paused = true)]
async fn throttles_count_as_demand() {
    let h = Harness::new();
    let spec = FunctionSpec {
        max_concurrency: Some(1),
        ..FunctionSpec::default()
    };
    h.active_function(&spec).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), Answer::After(Duration::from_millis(200)));
    // Six callers on three environments: half of them throttled until the fleet grows.
    let load = h.load("f:1", 6, Duration::from_millis(50));
    h.until("room for six callers", 3 * MINUTE, || async {
        h.ready("f").len() >= 8
    })
    .await;
    assert!(load.throttled.load(Ordering::Relaxed) > 0);
    assert!(h.metric("fleetfn_concurrency_throttles_total", "f", "1") > 0.0);
    for other in ["cpu", "memory", "disk"] {
        assert_eq!(
            h.metric(&format!("fleetfn_{other}_throttles_total"), "f", "1"),
            0.0
        );
    }
    // Once there is room, nothing is throttled any more.
    h.run_for(MINUTE).await;
    let before = load.throttled.load(Ordering::Relaxed);
    h.run_for(MINUTE).await;
    assert_eq!(load.throttled.load(Ordering::Relaxed), before);
    assert!(balanced(&h, "f"));
}

#[tokio::test(start_paused = true)]
async fn scales_in_after_the_idle_period_one_step_at_a_time_keeping_zones_balanced() {
    // A shorter idle period than LMI's 5 minutes keeps the test quick; the rules are the same.
    const IDLE: Duration = Duration::from_secs(120);
    let h = Harness::with_config(|c| {
        c.idle_instance_after = Duration::from_secs(30);
        c.scale_in_after = IDLE;
    });
    h.active_function(&FunctionSpec::default()).await;
    h.provider.script().cpu_demand.insert("f".into(), 2.7);
    h.until("six Ready environments", 2 * MINUTE, || async {
        h.ready("f").len() == 6
    })
    .await;
    h.run_for(Duration::from_secs(10)).await;
    assert_eq!(
        h.provider.running().len(),
        6,
        "one instance per environment"
    );
    h.provider.script().cpu_demand.insert("f".into(), 0.0);
    let idle_from = Instant::now();
    // (when, count) each time the Ready count changed.
    let mut changes: Vec<(Duration, usize)> = Vec::new();
    let mut last = 6;
    while last > 3 {
        h.run_for(Duration::from_secs(5)).await;
        let n = h.ready("f").len();
        assert!(balanced(&h, "f"), "zones unbalanced at {n}");
        if n != last {
            changes.push((idle_from.elapsed(), n));
            last = n;
        }
        assert!(
            idle_from.elapsed() < 30 * MINUTE,
            "no scale-in: {changes:?}"
        );
    }
    // One environment per step, the first after the idle period, the next ones at least that
    // far apart (the timer restarts after each step).
    let counts: Vec<usize> = changes.iter().map(|c| c.1).collect();
    assert_eq!(counts, [5, 4, 3], "{changes:?}");
    assert!(changes[0].0 >= IDLE, "{changes:?}");
    assert!(
        changes[0].0 <= IDLE + Duration::from_secs(30),
        "{changes:?}"
    );
    for w in changes.windows(2) {
        assert!(w[1].0 - w[0].0 >= IDLE, "{changes:?}");
    }
    // The emptied instances are retired; every remaining one carries an environment.
    h.run_for(MINUTE).await;
    let running = h.provider.running();
    assert_eq!(running.len(), 3, "{running:?}");
    assert!(running.iter().all(|a| a.envs().len() == 1));
    // Each retired once (not retired, then declared lost when its agent stopped answering).
    assert_eq!(
        h.provider.terminations().len(),
        3,
        "{:?}",
        h.provider.terminations()
    );
    assert_eq!(h.config("f:1").await.state, fleetfn_model::State::Active);
}

#[tokio::test(start_paused = true)]
async fn the_scaler_stays_within_max_execution_environments() {
    let h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.scaling("f:1", Some(3), Some(4)).await;
    h.provider.script().cpu_demand.insert("f".into(), 2.7);
    h.until("a fourth environment", 2 * MINUTE, || async {
        h.ready("f").len() == 4
    })
    .await;
    h.run_for(3 * MINUTE).await;
    assert_eq!(h.ready("f").len(), 4);
    assert_eq!(
        h.metric("fleetfn_scaler_desired_environments", "f", "1"),
        4.0
    );
}

#[tokio::test(start_paused = true)]
async fn min_max_zero_stops_everything_throttles_and_comes_back() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.scaling("f:1", Some(0), Some(0)).await;
    h.until("no environment and no instance", MINUTE, || async {
        h.envs().is_empty() && h.provider.running().is_empty()
    })
    .await;
    // The gauge follows at the scaler's next tick (it refreshes once a second).
    h.run_for(Duration::from_millis(1100)).await;
    assert_eq!(
        h.metric("fleetfn_scaler_desired_environments", "f", "1"),
        0.0
    );
    let e = h.invoke("f:1", "x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests);
    assert!(
        e.message.contains("has no Ready execution environment"),
        "{}",
        e.message
    );
    assert_eq!(h.metric("fleetfn_throttles_total", "f", "1"), 1.0);
    let launches = h.provider.launches().len();
    h.run_for(2 * MINUTE).await;
    assert_eq!(
        h.provider.launches().len(),
        launches,
        "nothing launched at zero"
    );
    assert_eq!(h.config("f:1").await.state, fleetfn_model::State::Active);

    h.scaling("f:1", Some(3), None).await;
    h.until("three Ready environments again", MINUTE, || async {
        h.ready("f").len() == 3
    })
    .await;
    assert!(Harness::per_zone(&h.ready("f")).values().all(|n| *n == 1));
    h.invoke("f:1", "x")
        .await
        .expect("invoke after scaling back up");
}

/// Environments per instance of the running agents, as `(instance id, zone, count)`.
fn loads(h: &Harness) -> Vec<(String, String, usize)> {
    h.provider
        .running()
        .iter()
        .map(|a| {
            (
                a.instance_id().to_string(),
                a.zone().to_string(),
                a.envs().len(),
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn scale_in_takes_from_the_fullest_zone_then_the_emptiest_instance() {
    let h = Harness::with_config(|c| {
        c.idle_instance_after = Duration::from_secs(30);
        c.scale_in_after = MINUTE;
    });
    // Only 4-vCPU instances: three 1-vCPU environments fit on each.
    let arn = h
        .capacity_provider_of("cp", None, Some(&["c7i.xlarge"]))
        .await;
    h.create_function("f", &arn, &FunctionSpec::default()).await;
    h.publish("f").await;
    h.until_state("f:1", fleetfn_model::State::Active, MINUTE)
        .await;

    // Four environments: the fourth shares an instance in one zone.
    h.scaling("f:1", Some(4), None).await;
    h.until("four Ready", MINUTE, || async { h.ready("f").len() == 4 })
        .await;
    let mut l = loads(&h);
    l.sort_by_key(|x| x.2);
    assert_eq!(
        l.iter().map(|x| x.2).collect::<Vec<_>>(),
        [1, 1, 2],
        "{l:?}"
    );
    let doubled = l[2].clone();
    // Back to three: the environment goes from the zone with two (not from an emptier
    // instance elsewhere, which would leave a zone empty).
    h.scaling("f:1", Some(3), None).await;
    h.until("three Ready", 5 * MINUTE, || async {
        h.ready("f").len() == 3
    })
    .await;
    assert!(Harness::per_zone(&h.ready("f")).values().all(|n| *n == 1));
    assert!(
        loads(&h).iter().any(|x| x.0 == doubled.0 && x.2 == 1),
        "{:?}",
        loads(&h)
    );

    // Ten: each zone's instance full (3), the tenth on a new instance of its own.
    h.scaling("f:1", Some(10), None).await;
    h.until("ten Ready", 2 * MINUTE, || async {
        h.ready("f").len() == 10
    })
    .await;
    let mut l = loads(&h);
    l.sort_by_key(|x| x.2);
    assert_eq!(
        l.iter().map(|x| x.2).collect::<Vec<_>>(),
        [1, 3, 3, 3],
        "{l:?}"
    );
    let lone = l[0].clone();
    // Nine: the zone with four gives one up, from its emptiest instance, which is retired.
    h.scaling("f:1", Some(9), None).await;
    h.until("nine Ready", 5 * MINUTE, || async {
        h.ready("f").len() == 9
    })
    .await;
    assert!(Harness::per_zone(&h.ready("f")).values().all(|n| *n == 3));
    h.until("the emptied instance retired", MINUTE, || async {
        h.provider.terminations().iter().any(|t| t.0 == lone.0)
    })
    .await;
    let l = loads(&h);
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l.iter().all(|x| x.2 == 3), "{l:?}");
}

#[tokio::test(start_paused = true)]
async fn the_agents_cpu_and_memory_reach_the_versions_gauges() {
    let h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    {
        let mut script = h.provider.script();
        // 1.2 vCPUs over three 1-vCPU environments: 40 % each, below the 50 % target.
        script.cpu_demand.insert("f".into(), 1.2);
        // 512 MiB of a 2048 MB MemorySize.
        script.memory_bytes.insert("f".into(), 512 << 20);
    }
    h.until("the CPU gauge at 40 %", MINUTE, || async {
        (h.metric("fleetfn_execution_environment_cpu_utilization", "f", "1") - 0.4).abs() < 0.01
    })
    .await;
    let mem = h.metric("fleetfn_execution_environment_memory_utilization", "f", "1");
    assert!((mem - 0.25).abs() < 1e-9, "{mem}");
    // Below the target: no scale-out.
    h.run_for(2 * MINUTE).await;
    assert_eq!(h.ready("f").len(), 3);
}
