//! Rollouts: `$LATEST.PUBLISHED` replaced by a new publish (the old set drains only once the new
//! one serves), a rollout whose init fails (the old publish keeps serving), a first publish that
//! fails, numbered versions side by side.

use std::time::Duration;

use fleetfn_proto::{EnvState, Failure};

use crate::support::harness::code_hex;
use crate::support::{FunctionSpec, Harness};

const MINUTE: Duration = Duration::from_secs(60);
const LP: &str = "f:$LATEST.PUBLISHED";

/// `f` published to `$LATEST.PUBLISHED` and Active; returns its code hash.
async fn latest_published(h: &Harness) -> String {
    let arn = h.capacity_provider("cp", None).await;
    h.create_function("f", &arn, &FunctionSpec::default()).await;
    h.publish_latest("f").await;
    let v = h
        .until_state(LP, fleetfn_model::State::Active, MINUTE)
        .await;
    assert_eq!(h.ready("f").len(), 3);
    code_hex(&v)
}

/// Environments on running agents whose code is `hex`, with their state.
fn of_code(h: &Harness, hex: &str) -> Vec<(String, EnvState)> {
    h.envs()
        .into_iter()
        .filter(|(e, _, _)| e.request.code_sha256_hex == hex)
        .map(|(e, _, _)| (e.env_id, e.state))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn latest_published_rollout_drains_the_old_set_only_after_the_new_one_serves() {
    let mut h = Harness::new();
    let old_hex = latest_published(&h).await;
    let old_ids: Vec<String> = of_code(&h, &old_hex).into_iter().map(|e| e.0).collect();
    h.provider.script().ready_after = Duration::from_secs(20);
    let new_hex = code_hex(&h.update_code("f", "v2").await);
    assert_ne!(new_hex, old_hex);
    h.publish_latest("f").await;
    assert_eq!(
        h.config(LP).await.last_update_status,
        fleetfn_model::LastUpdateStatus::InProgress
    );

    // While the new set starts, the old one serves every invoke.
    h.run_for(Duration::from_secs(10)).await;
    let new = of_code(&h, &new_hex);
    assert_eq!(new.len(), 3, "{new:?}");
    assert!(new.iter().all(|e| e.1 == EnvState::Starting));
    let old = of_code(&h, &old_hex);
    assert_eq!(old.len(), 3, "the old set still runs: {old:?}");
    for _ in 0..5 {
        let id = h.next_request_id();
        h.invoke(LP, "during")
            .await
            .expect("served during the rollout");
        let rec = h.served(&id).expect("answered");
        assert_eq!(rec.code_sha256_hex.as_deref(), Some(old_hex.as_str()));
    }

    h.until("the old set drained", MINUTE, || async {
        of_code(&h, &old_hex).is_empty()
    })
    .await;
    // Drained after the last of the new set was Ready, not before.
    let last_ready = h
        .envs()
        .into_iter()
        .filter(|(e, _, _)| e.request.code_sha256_hex == new_hex)
        .filter_map(|(e, _, _)| e.ready_at)
        .max()
        .expect("new environments Ready");
    let deleted: Vec<_> = h
        .provider
        .agents()
        .iter()
        .flat_map(crate::support::FakeAgent::deleted)
        .filter(|(id, _)| old_ids.contains(id))
        .collect();
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    for (id, at) in deleted {
        assert!(
            at >= last_ready,
            "{id} deleted before the new set was Ready"
        );
    }
    let v = h.config(LP).await;
    assert_eq!(
        (v.state.as_str(), v.last_update_status.as_str()),
        ("Active", "Successful")
    );
    let id = h.next_request_id();
    h.invoke(LP, "after")
        .await
        .expect("served after the rollout");
    let rec = h.served(&id).expect("answered");
    assert_eq!(rec.code_sha256_hex.as_deref(), Some(new_hex.as_str()));
}

#[tokio::test(start_paused = true)]
async fn a_rollout_whose_init_fails_keeps_the_old_publish_serving() {
    let mut h = Harness::new();
    let old_hex = latest_published(&h).await;
    let new_hex = code_hex(&h.update_code("f", "broken").await);
    h.provider.script().init_failures.insert(
        new_hex.clone(),
        Failure {
            reason_code: "Runtime.ExitError".into(),
            reason: "the runtime exited during init".into(),
        },
    );
    h.publish_latest("f").await;
    h.until("the rollout failed", MINUTE, || async {
        h.config(LP).await.last_update_status == fleetfn_model::LastUpdateStatus::Failed
    })
    .await;
    let v = h.config(LP).await;
    assert_eq!(v.state, fleetfn_model::State::Active, "{v:?}");
    assert_eq!(
        v.last_update_status_reason_code.as_deref(),
        Some("Runtime.ExitError"),
        "{v:?}"
    );
    h.run_for(MINUTE).await;
    // The broken publish is not retried and leaves nothing; the old set still serves.
    assert!(of_code(&h, &new_hex).is_empty());
    let tried = h
        .provider
        .agents()
        .iter()
        .flat_map(crate::support::FakeAgent::started)
        .filter(|(_, r, _)| r.code_sha256_hex == new_hex)
        .count();
    assert_eq!(tried, 3, "one attempt per zone, no retry loop");
    let old = of_code(&h, &old_hex);
    assert_eq!(old.len(), 3);
    assert!(old.iter().all(|e| e.1 == EnvState::Ready));
    let id = h.next_request_id();
    h.invoke(LP, "x").await.expect("the old publish serves");
    let rec = h.served(&id).expect("answered");
    assert_eq!(rec.code_sha256_hex.as_deref(), Some(old_hex.as_str()));
}

#[tokio::test(start_paused = true)]
async fn a_first_publish_whose_init_fails_fails_the_version() {
    let mut h = Harness::new();
    let arn = h.capacity_provider("cp", None).await;
    let spec = FunctionSpec::default();
    h.create_function("f", &arn, &spec).await;
    let hex = code_hex(&h.config("f").await);
    h.provider.script().init_failures.insert(
        hex,
        Failure {
            reason_code: "Runtime.InvalidEntrypoint".into(),
            reason: "no bootstrap".into(),
        },
    );
    h.publish("f").await;
    let v = h
        .until_state("f:1", fleetfn_model::State::Failed, MINUTE)
        .await;
    assert_eq!(
        v.state_reason_code.as_deref(),
        Some("Runtime.InvalidEntrypoint")
    );
    h.until("the failed environments stopped", MINUTE, || async {
        h.envs().is_empty()
    })
    .await;
    let e = h.invoke("f:1", "x").await.unwrap_err();
    assert_eq!(e.kind, fleetfn_model::ErrorKind::ResourceConflict, "{e}");
}

#[tokio::test(start_paused = true)]
async fn numbered_versions_run_side_by_side() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let v1 = code_hex(&h.config("f:1").await);
    h.update_code("f", "v2").await;
    let v2 = h.publish("f").await;
    assert_eq!(v2.version, "2");
    h.until_state("f:2", fleetfn_model::State::Active, MINUTE)
        .await;
    let v2 = code_hex(&v2);
    assert_eq!(of_code(&h, &v1).len(), 3);
    assert_eq!(of_code(&h, &v2).len(), 3);
    for (q, hex) in [("f:1", &v1), ("f:2", &v2)] {
        let id = h.next_request_id();
        h.invoke(q, "x").await.expect("invoke");
        assert_eq!(
            h.served(&id).and_then(|r| r.code_sha256_hex).as_deref(),
            Some(hex.as_str()),
            "{q}"
        );
    }
}
