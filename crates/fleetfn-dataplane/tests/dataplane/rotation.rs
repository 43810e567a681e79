//! Rolling replacement of instances a provider wants gone (an image change, a maximum age): one
//! instance per capacity provider at a time, its environments placed elsewhere and Ready before
//! they drain, the instance terminated after; no invoke fails or is throttled meanwhile.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::harness::{FunctionSpec, Harness};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn instances_to_replace_go_one_at_a_time_under_load_without_a_failed_invoke() {
    let h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let old: Vec<String> = h
        .provider
        .running()
        .iter()
        .map(|a| a.instance_id().to_string())
        .collect();
    assert_eq!(old.len(), 3);
    let launched_before = h.provider.launches().len();
    let load = h.load("f:1", 4, Duration::from_millis(20));
    h.run_for(Duration::from_secs(2)).await;
    h.provider.want_replaced(&old);

    // Never more than one old instance retiring: at most one beyond the three live at once.
    let most_running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    h.until("every old instance replaced", 5 * MINUTE, || async {
        most_running.fetch_max(h.provider.running().len(), Ordering::Relaxed);
        let running: Vec<String> = h
            .provider
            .running()
            .iter()
            .map(|a| a.instance_id().to_string())
            .collect();
        !running.iter().any(|i| old.contains(i)) && h.ready("f").len() == 3
    })
    .await;
    h.run_for(Duration::from_secs(2)).await;
    let (ok, throttled, failed) = (
        load.ok.load(Ordering::Relaxed),
        load.throttled.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    drop(load);
    assert_eq!((failed, throttled), (0, 0), "{ok} served");
    assert!(ok > 100, "{ok} served");
    let most_running = most_running.load(Ordering::Relaxed);
    assert!(
        most_running <= 4,
        "one replacement at a time: {most_running} running at once"
    );
    let launched: Vec<_> = h
        .provider
        .launches()
        .into_iter()
        .skip(launched_before)
        .collect();
    assert_eq!(launched.len(), 3, "{launched:?}");
    for id in &old {
        assert!(
            h.provider.terminations().iter().any(|(i, _)| i == id),
            "{id} terminated"
        );
    }
    // One environment per zone again.
    let zones = Harness::per_zone(&h.ready("f"));
    assert!(zones.values().all(|n| *n == 1), "{zones:?}");
}
