//! The one-second series (`Invoker::series`) and the status fields drawn from it, filled by the
//! real scaler tick from the router's counters under load with throttles, and on a follower by
//! its own tick from the invokes it routed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetfn_contracts::Invoker;

use crate::support::{Answer, FunctionSpec, Harness};

#[tokio::test(start_paused = true)]
async fn the_series_counts_every_invoke_and_throttle_once_per_second() {
    let h = Harness::new();
    let spec = FunctionSpec {
        max_concurrency: Some(1),
        ..FunctionSpec::default()
    };
    h.active_function(&spec).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), Answer::After(Duration::from_millis(20)));
    // Eight callers on three single-concurrency environments: some throttled.
    let load = h.load("f:1", 8, Duration::from_millis(30));
    h.run_for(Duration::from_secs(20)).await;
    let status = h.dp.status().await.unwrap();
    let f = &status.functions[0];
    assert!(f.invocations_per_second > 10.0, "{f:?}");
    assert_eq!(
        f.throttles_last_minute_by_reason.total,
        f.throttles_last_minute
    );
    assert!(f.throttles_last_minute_by_reason.concurrency > 0, "{f:?}");
    let throttled = load.throttled.clone();
    drop(load);
    // The invokes in flight end, and two more ticks record them.
    h.run_for(Duration::from_secs(3)).await;
    let status = h.dp.status().await.unwrap();
    let f = &status.functions[0];

    let doc = h.dp.series("f", None, None);
    assert_eq!(doc.function_name, "f");
    assert_eq!(doc.step_seconds, 1);
    assert_eq!(doc.versions.len(), 1);
    let v = &doc.versions[0];
    assert_eq!(v.version, "1");
    let n = v.t.len();
    assert!(n >= 20, "{n} samples");
    for col in [
        v.invocations.len(),
        v.errors.len(),
        v.throttles.concurrency.len(),
        v.throttles.cpu.len(),
        v.duration_p50_ms.len(),
        v.duration_p99_ms.len(),
        v.cpu_utilization.len(),
        v.in_flight.len(),
        v.desired_environments.len(),
        v.ready_environments.len(),
    ] {
        assert_eq!(col, n);
    }
    assert!(v.t.windows(2).all(|w| w[1] > w[0]), "{:?}", v.t);
    assert!(*v.t.last().unwrap() <= doc.now);
    // Every invoke and throttle once, as the status' counters since start say.
    assert_eq!(v.invocations.iter().sum::<u64>(), f.invocations);
    assert_eq!(v.errors.iter().sum::<u64>(), 0);
    assert_eq!(
        v.throttles.concurrency.iter().sum::<u64>(),
        f.throttles.concurrency
    );
    assert_eq!(f.throttles.concurrency, throttled.load(Ordering::Relaxed));
    assert_eq!(v.throttles.cpu.iter().sum::<u64>(), 0);
    // Under load: 20 ms invokes, about three in flight, three Ready environments or more.
    let busy: Vec<usize> = (0..n).filter(|&i| v.invocations[i] > 0).collect();
    assert!(busy.len() >= 15);
    for &i in &busy {
        let p50 = v.duration_p50_ms[i].unwrap();
        let p99 = v.duration_p99_ms[i].unwrap();
        assert!((16.0..=25.0).contains(&p50), "p50 {p50}");
        assert!(p99 >= p50 && p99 <= 25.0, "p99 {p99}");
        assert!(v.ready_environments[i] >= 3);
        assert!(v.desired_environments[i] >= 3);
    }
    let peak = v.in_flight.iter().copied().fold(0.0, f64::max);
    assert!(peak > 1.0, "in flight {peak}");
    // Seconds without an invoke have no duration.
    let idle = v.invocations.iter().position(|x| *x == 0);
    if let Some(i) = idle {
        assert_eq!(v.duration_p50_ms[i], None);
    }
    // `since` keeps the later samples only; an unknown version or function has none.
    let cut = v.t[n - 5];
    let later = h.dp.series("f", Some(&["1".to_string()]), Some(cut));
    assert_eq!(later.versions[0].t, v.t[n - 4..]);
    assert!(
        h.dp.series("f", Some(&["7".to_string()]), None)
            .versions
            .is_empty()
    );
    assert!(h.dp.series("g", None, None).versions.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_ring_keeps_fifteen_minutes_and_goes_with_the_version() {
    let h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    h.run_for(Duration::from_secs(20 * 60)).await;
    let doc = h.dp.series("f", None, None);
    let v = &doc.versions[0];
    assert!(v.t.len() <= 900 && v.t.len() >= 850, "{}", v.t.len());
    assert!(v.t[0] > doc.now - 900);
    // Idle: no invokes, no rate.
    let status = h.dp.status().await.unwrap();
    assert!(status.functions[0].invocations_per_second.abs() < f64::EPSILON);
    h.cp.delete_function(&crate::support::harness::fref("f"))
        .await
        .unwrap();
    h.until("the series gone", Duration::from_secs(30), || async {
        h.dp.series("f", None, None).versions.is_empty()
    })
    .await;
}

/// A follower (a server that only routes) charts the invokes it routed, once each, with the
/// leader's per-version sampling; the leader charts none of them.
#[tokio::test(start_paused = true)]
async fn a_follower_charts_the_invokes_it_routed() {
    let mut h = Harness::new();
    h.provider.set_outlives(true);
    let spec = FunctionSpec {
        max_concurrency: Some(1),
        ..FunctionSpec::default()
    };
    h.active_function(&spec).await;
    h.provider
        .script()
        .answers
        .insert("f".into(), Answer::After(Duration::from_millis(20)));
    let follower = h.follower();
    h.until(
        "the follower routes to the three environments",
        Duration::from_secs(60),
        || async {
            follower
                .environments()
                .environments
                .iter()
                .filter(|e| e.state == fleetfn_proto::EnvState::Ready)
                .count()
                == 3
        },
    )
    .await;

    // Steady: one invoke every 200 ms for 6 s, through the follower only.
    let mut ok = 0u64;
    for n in 0..30 {
        let req = h.request("f:1", "steady", n).await.unwrap();
        follower.invoke(req).await.expect("routed by the follower");
        ok += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = follower.status().await.unwrap();
    let f = &status.functions[0];
    assert!(f.invocations_per_second > 0.0, "{f:?}");
    assert_eq!(f.throttles_last_minute, 0);

    // A burst of eight on three single-concurrency environments: some throttled.
    let mut burst = tokio::task::JoinSet::new();
    for n in 100..108 {
        let req = h.request("f:1", "burst", n).await.unwrap();
        let dp = follower.clone();
        burst.spawn(async move { dp.invoke(req).await });
    }
    let mut throttled = 0u64;
    while let Some(out) = burst.join_next().await {
        match out.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if e.kind == fleetfn_model::ErrorKind::TooManyRequests => throttled += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(throttled > 0, "no throttle in the burst");
    // Two more ticks record the last of them.
    h.run_for(Duration::from_secs(3)).await;

    let status = follower.status().await.unwrap();
    let f = &status.functions[0];
    assert_eq!(f.invocations, ok);
    assert_eq!(f.throttles_last_minute, throttled);
    assert_eq!(f.throttles_last_minute_by_reason.concurrency, throttled);
    let doc = follower.series("f", None, None);
    let v = &doc.versions[0];
    let n = v.t.len();
    assert!(v.t.windows(2).all(|w| w[1] > w[0]), "{:?}", v.t);
    // Every invoke and throttle it routed, once.
    assert_eq!(v.invocations.iter().sum::<u64>(), ok);
    assert_eq!(v.throttles.concurrency.iter().sum::<u64>(), throttled);
    assert_eq!(v.errors.iter().sum::<u64>(), 0);
    // One sample a second: the steady invokes spread over (at least) five of them.
    assert!(
        v.invocations.iter().filter(|x| **x > 0).count() >= 5,
        "{:?}",
        v.invocations
    );
    assert_eq!(v.ready_environments[n - 1], 3);
    assert_eq!(v.desired_environments[n - 1], 3);
    let busy = v.invocations.iter().position(|x| *x > 0).unwrap();
    let p50 = v.duration_p50_ms[busy].unwrap();
    assert!((16.0..=25.0).contains(&p50), "p50 {p50}");

    // The leader routed none of them: its own chart and rate stay at zero.
    let leader = h.dp.series("f", None, None);
    assert_eq!(leader.versions[0].invocations.iter().sum::<u64>(), 0);
    let status = h.dp.status().await.unwrap();
    assert_eq!(status.functions[0].invocations, 0);
    assert_eq!(status.functions[0].throttles_last_minute, 0);
    h.shutdown().await;
}
