//! Execution-role credentials: given to every environment at start, renewed on the agents before
//! they expire, and a role that cannot be assumed fails the publish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fleetfn_roles::{AssumeError, BoxFuture, RoleAssumer, RoleCredentials};

use crate::support::*;

const LIFETIME: Duration = Duration::from_secs(60);

/// Issues numbered keys (`ASIA1`, `ASIA2`, ...) living [`LIFETIME`], or refuses every role.
#[derive(Debug, Default)]
struct FakeSts {
    issued: AtomicU32,
    refuse: bool,
    /// Answers "unreachable" this many times first.
    unreachable: AtomicU32,
}

impl RoleAssumer for FakeSts {
    fn assume<'a>(
        &'a self,
        role_arn: &'a str,
        session_name: &'a str,
    ) -> BoxFuture<'a, Result<RoleCredentials, AssumeError>> {
        Box::pin(async move {
            if self
                .unreachable
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(AssumeError::Unavailable {
                    endpoint: "http://sts.test".into(),
                    detail: "connection refused".into(),
                });
            }
            if self.refuse {
                return Err(AssumeError::Refused {
                    role_arn: role_arn.to_owned(),
                    status: 403,
                    code: "AccessDenied".into(),
                    message: format!("not authorized to assume {role_arn} as {session_name}"),
                });
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
            Ok(RoleCredentials {
                access_key_id: format!("ASIA{n}"),
                secret_access_key: format!("secret{n}"),
                token: format!("token{n}"),
                expiration: expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                role_arn: role_arn.to_owned(),
            })
        })
    }

    fn lifetime(&self) -> Duration {
        LIFETIME
    }
}

fn keys(h: &Harness) -> Vec<Option<String>> {
    let mut keys: Vec<_> = h
        .ready("f")
        .into_iter()
        .map(|(e, _, _)| e.request.credentials.map(|c| c.access_key_id))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(start_paused = true)]
async fn environments_get_credentials_and_renewals_before_expiry() {
    let sts = Arc::new(FakeSts::default());
    let h = Harness::with_config(|c| c.roles = Some(sts.clone()));
    h.active_function(&FunctionSpec::default()).await;
    let first = keys(&h);
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(Option::is_some), "{first:?}");
    assert_eq!(sts.issued.load(Ordering::SeqCst), 3);
    // Two thirds into their lifetime (40 s) each environment gets new keys, and again after.
    h.run_for(Duration::from_secs(30)).await;
    assert_eq!(keys(&h), first, "renewed too early");
    h.run_for(Duration::from_secs(15)).await;
    let second = keys(&h);
    assert!(
        second.iter().all(|k| !first.contains(k)),
        "{first:?} → {second:?}"
    );
    h.run_for(Duration::from_secs(45)).await;
    assert_eq!(sts.issued.load(Ordering::SeqCst), 9);
}

#[tokio::test(start_paused = true)]
async fn a_role_that_cannot_be_assumed_fails_the_publish() {
    let sts = Arc::new(FakeSts {
        refuse: true,
        ..FakeSts::default()
    });
    let h = Harness::with_config(|c| c.roles = Some(sts));
    let arn = h.capacity_provider("cp", None).await;
    h.create_function("f", &arn, &FunctionSpec::default()).await;
    h.publish("f").await;
    let v = h
        .until_state("f:1", fleetfn_model::State::Failed, Duration::from_secs(60))
        .await;
    assert_eq!(
        v.state_reason_code.as_deref(),
        Some("InsufficientRolePermissions"),
        "{v:?}"
    );
    let reason = v.state_reason.unwrap_or_default();
    assert!(
        reason.contains("cannot be assumed") && reason.contains("AccessDenied"),
        "{reason}"
    );
    // Nothing reached an agent.
    assert!(h.envs().is_empty(), "{:?}", h.envs().len());
}

#[tokio::test(start_paused = true)]
async fn sts_failing_for_a_moment_does_not_fail_the_publish() {
    let sts = Arc::new(FakeSts {
        unreachable: AtomicU32::new(2),
        ..FakeSts::default()
    });
    let h = Harness::with_config(|c| c.roles = Some(sts.clone()));
    h.active_function(&FunctionSpec::default()).await;
    assert_eq!(keys(&h).len(), 3);
    assert_eq!(sts.issued.load(Ordering::SeqCst), 3);
    assert_eq!(sts.unreachable.load(Ordering::SeqCst), 0);
}
