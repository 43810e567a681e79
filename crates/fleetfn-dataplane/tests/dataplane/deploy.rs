//! Publishing: environments spread over three zones, env vars and timeout passed through,
//! `MaxVCpuCount`, shutdown.

use std::time::Duration;

use crate::support::{FunctionSpec, Harness};

#[tokio::test(start_paused = true)]
async fn publish_turns_active_with_three_environments_over_three_zones() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let ready = h.ready("f");
    assert_eq!(ready.len(), 3, "{ready:?}");
    for (zone, n) in Harness::per_zone(&ready) {
        assert_eq!(n, 1, "one environment in {zone}");
    }
    let out = h.invoke("f:1", "hello").await.expect("invoke");
    assert_eq!(out.payload, "hello");
    assert_eq!(out.function_error, None);
}
