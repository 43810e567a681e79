//! Service-level tests without HTTP, on a real SQLite store in a temp dir.

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::types::*;
use fleetfn_model::{ErrorKind, Scope};
use fleetfn_store::{SqliteStore, Table};

use crate::records::version_key;
use crate::{ControlPlane, ControlPlaneConfig};

pub(crate) async fn cp() -> (tempfile::TempDir, ControlPlane) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let cp = ControlPlane::new(
        Arc::new(store),
        ControlPlaneConfig {
            scope: Scope::default(),
            artifacts_dir: dir.path().join("artifacts"),
            env_key: test_key(),
        },
    )
    .unwrap();
    (dir, cp)
}

/// One key for every control plane of this test process (the key is process-wide).
fn test_key() -> crate::EnvKey {
    crate::EnvKey::from_bytes(&[7; crate::secrets::KEY_LEN]).unwrap()
}

fn zip_b64(body: &str) -> String {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        w.start_file("bootstrap", opts).unwrap();
        w.write_all(body.as_bytes()).unwrap();
        w.finish().unwrap();
    }
    base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
}

fn provider_req(name: &str) -> CreateCapacityProviderRequest {
    CreateCapacityProviderRequest {
        capacity_provider_name: Some(name.into()),
        vpc_config: Some(CapacityProviderVpcConfig {
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into(), "subnet-c".into()],
            security_group_ids: vec![],
        }),
        permissions_config: Some(CapacityProviderPermissionsConfig {
            capacity_provider_operator_role_arn: "arn:aws:iam::000000000000:role/op".into(),
        }),
        ..Default::default()
    }
}

fn function_req(name: &str, cp_arn: &str, code: &str) -> CreateFunctionRequest {
    CreateFunctionRequest {
        function_name: Some(name.into()),
        runtime: Some("provided.al2023".into()),
        role: Some("arn:aws:iam::000000000000:role/fn".into()),
        code: Some(FunctionCode {
            zip_file: Some(zip_b64(code)),
            ..Default::default()
        }),
        capacity_provider_config: Some(CapacityProviderConfig {
            lambda_managed_instances_capacity_provider_config: Some(
                LambdaManagedInstancesCapacityProviderConfig {
                    capacity_provider_arn: Some(cp_arn.into()),
                    per_execution_environment_max_concurrency: None,
                    memory_gib_per_vcpu: None,
                },
            ),
        }),
        ..Default::default()
    }
}

fn fref(s: &str) -> FunctionRef {
    FunctionRef::parse(s, &Scope::default(), 256).unwrap()
}

#[tokio::test]
async fn provider_lifecycle_and_attached_versions_block_delete() {
    let (_d, cp) = cp().await;
    let p = cp
        .create_capacity_provider(provider_req("cp1"))
        .await
        .unwrap();
    assert_eq!(p.state, CapacityProviderState::Pending);
    assert_eq!(p.capacity_provider_scaling_config.max_vcpu_count, Some(400));
    cp.reconcile_once().await.unwrap();
    assert_eq!(
        cp.get_capacity_provider("cp1").await.unwrap().state,
        CapacityProviderState::Active
    );
    let dup = cp
        .create_capacity_provider(provider_req("cp1"))
        .await
        .unwrap_err();
    assert_eq!(dup.kind, ErrorKind::ResourceConflict);

    let f = cp
        .create_function(function_req("f1", &p.capacity_provider_arn, "v1"))
        .await
        .unwrap();
    assert_eq!(f.state, State::ActiveNonInvocable);
    assert_eq!(f.memory_size, 2048);
    let v = cp
        .publish_version(&fref("f1"), PublishVersionRequest::default())
        .await
        .unwrap();
    assert_eq!(v.version, "1");
    assert_eq!(v.state, State::Pending);
    // Nothing changed: same version again.
    let again = cp
        .publish_version(&fref("f1"), PublishVersionRequest::default())
        .await
        .unwrap();
    assert_eq!(again.version, "1");
    let listed = cp
        .list_function_versions_by_capacity_provider("cp1", None, None)
        .await
        .unwrap();
    assert_eq!(listed.function_versions.len(), 1);
    let e = cp.delete_capacity_provider("cp1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceConflict);

    assert_eq!(cp.delete_function(&fref("f1")).await.unwrap(), 202);
    cp.reconcile_once().await.unwrap();
    assert_eq!(
        cp.get_function(&fref("f1")).await.unwrap_err().kind,
        ErrorKind::ResourceNotFound
    );
    let deleted = cp.delete_capacity_provider("cp1").await.unwrap();
    assert_eq!(deleted.state, CapacityProviderState::Deleting);
    cp.reconcile_once().await.unwrap();
    assert_eq!(
        cp.get_capacity_provider("cp1").await.unwrap_err().kind,
        ErrorKind::ResourceNotFound
    );
}

#[tokio::test]
async fn lmi_memory_rules() {
    let (_d, cp) = cp().await;
    let p = cp
        .create_capacity_provider(provider_req("cp2"))
        .await
        .unwrap();
    let mut req = function_req("small", &p.capacity_provider_arn, "x");
    req.memory_size = Some(1024);
    assert_eq!(
        cp.create_function(req).await.unwrap_err().kind,
        ErrorKind::InvalidParameterValue
    );
    let mut req = function_req("odd", &p.capacity_provider_arn, "x");
    req.memory_size = Some(3072);
    assert_eq!(
        cp.create_function(req).await.unwrap_err().kind,
        ErrorKind::InvalidParameterValue
    );
    let mut req = function_req("ok", &p.capacity_provider_arn, "x");
    req.memory_size = Some(8192);
    let f = cp.create_function(req).await.unwrap();
    let inner = f
        .capacity_provider_config
        .unwrap()
        .lambda_managed_instances_capacity_provider_config
        .unwrap();
    // 8192 MB at 2 GiB/vCPU = 4 vCPUs × 32 per vCPU for provided.*.
    assert_eq!(inner.per_execution_environment_max_concurrency, Some(128));
    let req = function_req(
        "nocp",
        "arn:aws:lambda:us-east-1:000000000000:capacity-provider:missing",
        "x",
    );
    assert_eq!(
        cp.create_function(req).await.unwrap_err().kind,
        ErrorKind::ResourceNotFound
    );
}

#[tokio::test]
async fn latest_published_replaces_itself_and_keeps_scaling() {
    let (_d, cp) = cp().await;
    let p = cp
        .create_capacity_provider(provider_req("cp3"))
        .await
        .unwrap();
    cp.create_function(function_req("g", &p.capacity_provider_arn, "a"))
        .await
        .unwrap();
    let lp = PublishVersionRequest {
        publish_to: Some("LATEST_PUBLISHED".into()),
        ..Default::default()
    };
    let v = cp.publish_version(&fref("g"), lp.clone()).await.unwrap();
    assert_eq!(v.version, "$LATEST.PUBLISHED");
    let q = fref("g:$LATEST.PUBLISHED");
    cp.put_function_scaling_config(
        &q,
        PutFunctionScalingConfigRequest {
            function_scaling_config: Some(FunctionScalingConfig {
                min_execution_environments: Some(1),
                max_execution_environments: Some(4),
            }),
        },
    )
    .await
    .unwrap();
    let got = cp.get_function_scaling_config(&q).await.unwrap();
    assert_eq!(
        got.requested_function_scaling_config
            .unwrap()
            .max_execution_environments,
        Some(4)
    );
    cp.reconcile_once().await.unwrap();
    let got = cp.get_function_scaling_config(&q).await.unwrap();
    assert!(got.requested_function_scaling_config.is_none());
    assert_eq!(
        got.applied_function_scaling_config
            .unwrap()
            .min_execution_environments,
        Some(1)
    );
    cp.update_function_code(
        &fref("g"),
        UpdateFunctionCodeRequest {
            zip_file: Some(zip_b64("b")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let v2 = cp.publish_version(&fref("g"), lp).await.unwrap();
    assert_eq!(v2.version, "$LATEST.PUBLISHED");
    assert_ne!(v2.code_sha256, v.code_sha256);
    let got = cp.get_function_scaling_config(&q).await.unwrap();
    assert_eq!(
        got.applied_function_scaling_config
            .unwrap()
            .max_execution_environments,
        Some(4)
    );
    // Still one attached version for the provider.
    let listed = cp
        .list_function_versions_by_capacity_provider("cp3", None, None)
        .await
        .unwrap();
    assert_eq!(listed.function_versions.len(), 1);
}

#[tokio::test]
async fn capacity_provider_quota_is_an_error_not_a_crash() {
    let (_d, cp) = cp().await;
    for i in 0..fleetfn_model::limits::MAX_CAPACITY_PROVIDERS {
        cp.create_capacity_provider(provider_req(&format!("q{i:04}")))
            .await
            .unwrap();
    }
    let e = cp
        .create_capacity_provider(provider_req("one-too-many"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::CapacityProviderLimitExceeded);
    assert!(e.message.contains("1000"), "{}", e.message);
    // Listing pages through all of them, 50 at a time, without duplicates.
    let mut seen = std::collections::BTreeSet::new();
    let mut marker: Option<String> = None;
    loop {
        let page = cp
            .list_capacity_providers(None, marker.as_deref(), None)
            .await
            .unwrap();
        assert!(page.items.len() <= 50);
        for p in page.items {
            assert!(seen.insert(p.capacity_provider_arn));
        }
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    assert_eq!(seen.len(), fleetfn_model::limits::MAX_CAPACITY_PROVIDERS);
}

#[tokio::test]
async fn environment_variables_are_sealed_in_the_store() {
    let (_d, cp) = cp().await;
    let p = cp
        .create_capacity_provider(provider_req("cps"))
        .await
        .unwrap();
    let secret = "s3cr3t-value-that-must-not-be-stored-in-clear";
    let mut req = function_req("fs", &p.capacity_provider_arn, "v1");
    req.environment = Some(fleetfn_model::types::Environment {
        variables: [("DB_PASSWORD".to_string(), secret.to_string())].into(),
    });
    cp.create_function(req).await.unwrap();
    cp.publish_version(&fref("fs"), PublishVersionRequest::default())
        .await
        .unwrap();
    for (table, key) in [
        (Table::Functions, "fs".to_string()),
        (Table::Versions, version_key("fs", "1")),
    ] {
        let raw = cp.store.get(table, &key).await.unwrap().unwrap().value;
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains(secret), "{table:?}/{key}: {text}");
        assert!(text.contains("fleetfn:sealed:v1:"), "{text}");
    }
    for q in ["fs", "fs:1"] {
        let cfg = cp.get_function_configuration(&fref(q)).await.unwrap();
        assert_eq!(
            cfg.environment.unwrap().variables["DB_PASSWORD"],
            secret,
            "{q}"
        );
    }
}

/// A store whose next `races` commits that update a version lose a race: just before each, the
/// version is rewritten as a background writer (the reconciler, a data-plane transition) would.
#[derive(Debug)]
struct RacingStore {
    inner: SqliteStore,
    races: std::sync::atomic::AtomicUsize,
}

impl fleetfn_store::Store for RacingStore {
    fn get<'a>(
        &'a self,
        table: Table,
        key: &'a str,
    ) -> fleetfn_store::BoxFut<'a, Result<Option<fleetfn_store::Record>, fleetfn_store::StoreError>>
    {
        self.inner.get(table, key)
    }

    fn list<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> fleetfn_store::BoxFut<'a, Result<Vec<fleetfn_store::Record>, fleetfn_store::StoreError>>
    {
        self.inner.list(table, prefix, after, limit)
    }

    fn count<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
    ) -> fleetfn_store::BoxFut<'a, Result<usize, fleetfn_store::StoreError>> {
        self.inner.count(table, prefix)
    }

    fn commit(
        &self,
        ops: Vec<fleetfn_store::Op>,
    ) -> fleetfn_store::BoxFut<'_, Result<Vec<i64>, fleetfn_store::StoreError>> {
        use std::sync::atomic::Ordering;
        Box::pin(async move {
            let version = ops.iter().find_map(|op| match op {
                fleetfn_store::Op::Put {
                    table: Table::Versions,
                    key,
                    expect: fleetfn_store::Expect::Revision(_),
                    ..
                } => Some(key.clone()),
                _ => None,
            });
            if let Some(key) = version
                && self
                    .races
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                && let Some(rec) = self.inner.get(Table::Versions, &key).await?
            {
                self.inner
                    .commit(vec![fleetfn_store::Op::Put {
                        table: Table::Versions,
                        key,
                        value: rec.value,
                        expect: fleetfn_store::Expect::Revision(rec.revision),
                    }])
                    .await?;
            }
            self.inner.commit(ops).await
        })
    }
}

#[tokio::test]
async fn a_race_with_a_background_writer_is_retried_not_reported() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RacingStore {
        inner: SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap(),
        races: 0.into(),
    });
    let cp = ControlPlane::new(
        store.clone(),
        ControlPlaneConfig {
            scope: Scope::default(),
            artifacts_dir: dir.path().join("artifacts"),
            env_key: test_key(),
        },
    )
    .unwrap();
    let p = cp
        .create_capacity_provider(provider_req("cpr"))
        .await
        .unwrap();
    cp.create_function(function_req("r", &p.capacity_provider_arn, "a"))
        .await
        .unwrap();
    let lp = PublishVersionRequest {
        publish_to: Some("LATEST_PUBLISHED".into()),
        ..Default::default()
    };
    cp.publish_version(&fref("r"), lp.clone()).await.unwrap();
    let q = fref("r:$LATEST.PUBLISHED");
    let scaling = |max| PutFunctionScalingConfigRequest {
        function_scaling_config: Some(FunctionScalingConfig {
            min_execution_environments: Some(1),
            max_execution_environments: Some(max),
        }),
    };
    // Lost races short of the limit are recomputed from fresh reads and succeed.
    store
        .races
        .store(crate::service::RACE_ATTEMPTS - 1, Ordering::SeqCst);
    cp.put_function_scaling_config(&q, scaling(4))
        .await
        .unwrap();
    assert_eq!(store.races.load(Ordering::SeqCst), 0, "every race was met");
    let got = cp.get_function_scaling_config(&q).await.unwrap();
    assert_eq!(
        got.requested_function_scaling_config
            .unwrap()
            .max_execution_environments,
        Some(4)
    );
    cp.update_function_code(
        &fref("r"),
        UpdateFunctionCodeRequest {
            zip_file: Some(zip_b64("b")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store.races.store(2, Ordering::SeqCst);
    let v2 = cp.publish_version(&fref("r"), lp).await.unwrap();
    assert_eq!(store.races.load(Ordering::SeqCst), 0, "every race was met");
    assert_eq!(v2.version, "$LATEST.PUBLISHED");
    // A writer that keeps winning is reported as the conflict it is, after a bounded number of
    // attempts.
    store
        .races
        .store(crate::service::RACE_ATTEMPTS, Ordering::SeqCst);
    let e = cp
        .put_function_scaling_config(&q, scaling(5))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceConflict, "{e}");
    assert!(e.message.contains("Retry the request"), "{e}");
    assert_eq!(store.races.load(Ordering::SeqCst), 0);
}

/// Two servers on one store: a change committed through one reaches the other's invokes once
/// its cached resolution is older than the resolve TTL (and not before).
#[tokio::test(start_paused = true)]
async fn another_servers_change_reaches_invokes_within_the_resolve_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn fleetfn_store::Store> = Arc::new(fleetfn_store::MemoryStore::new());
    let server = |n: &str| {
        ControlPlane::new(
            store.clone(),
            ControlPlaneConfig {
                scope: Scope::default(),
                artifacts_dir: dir.path().join(n),
                env_key: test_key(),
            },
        )
        .unwrap()
    };
    let (a, b) = (
        server("a"),
        server("b").with_resolve_ttl(std::time::Duration::from_secs(1)),
    );
    let p = a
        .create_capacity_provider(provider_req("cpt"))
        .await
        .unwrap();
    a.create_function(function_req("t", &p.capacity_provider_arn, "a"))
        .await
        .unwrap();
    a.publish_version(&fref("t"), PublishVersionRequest::default())
        .await
        .unwrap();
    let q = fref("t:1");
    // Pending: refused, and the refusal is cached on b.
    let err = b.resolve_invoke_target(&q, 0.5).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ResourceConflict, "{}", err.message);
    // The leader (a) turns it Active.
    let (v, _) = a
        .get_record::<crate::records::VersionRecord>(
            fleetfn_store::Table::Versions,
            &crate::records::version_key("t", "1"),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        a.transition_version("t", "1", &v.publish_hash, &crate::VersionTransition::Active)
            .await
            .unwrap()
    );
    a.resolve_invoke_target(&q, 0.5)
        .await
        .expect("a sees it at once");
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert!(
        b.resolve_invoke_target(&q, 0.5).await.is_err(),
        "within the TTL b serves what it resolved"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let got = b
        .resolve_invoke_target(&q, 0.5)
        .await
        .expect("after the TTL b reads it again");
    assert_eq!(got.version, "1");
}

#[tokio::test]
async fn a_code_package_is_decoded_and_hashed_off_the_runtime_thread() {
    // A current-thread runtime (tokio::test): a task beside the decode gets turns only if the
    // decode left the thread.
    let b64 = zip_b64(&"x".repeat(1 << 20));
    let done = std::cell::Cell::new(false);
    let turns = std::cell::Cell::new(0u32);
    let work = async {
        let p = crate::functions::decode_zip(b64).await;
        done.set(true);
        p
    };
    let ticker = async {
        while !done.get() {
            turns.set(turns.get() + 1);
            tokio::task::yield_now().await;
        }
    };
    let (package, ()) = tokio::join!(work, ticker);
    let package = package.unwrap();
    assert_eq!(
        package.digest,
        fleetfn_artifacts::Digest::of(&package.bytes)
    );
    assert!(
        turns.get() > 0,
        "the package was decoded on the runtime's thread"
    );
}

#[tokio::test]
async fn listing_all_versions_pages_by_entries_not_functions() {
    let (_d, cp) = cp().await;
    let p = cp
        .create_capacity_provider(provider_req("cpl"))
        .await
        .unwrap();
    cp.reconcile_once().await.unwrap();
    // Three functions with two published versions each (different code each time): nine
    // entries, with $LATEST.PUBLISHED records as the versions table keeps them.
    for name in ["la", "lb", "lc"] {
        cp.create_function(function_req(name, &p.capacity_provider_arn, "v0"))
            .await
            .unwrap();
        for code in ["v1", "v2"] {
            cp.update_function_code(
                &fref(name),
                UpdateFunctionCodeRequest {
                    zip_file: Some(zip_b64(code)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            cp.reconcile_once().await.unwrap();
            cp.publish_version(&fref(name), PublishVersionRequest::default())
                .await
                .unwrap();
        }
    }
    let whole = cp.list_functions(true, None, None).await.unwrap();
    assert!(whole.next_marker.is_none());
    let all: Vec<String> = whole.items.iter().map(|c| c.function_arn.clone()).collect();
    assert!(all.len() >= 9, "{all:?}");
    for page_size in [1u32, 2, 4, 5] {
        let (mut seen, mut marker) = (Vec::new(), None);
        for _ in 0..100 {
            let page = cp
                .list_functions(true, marker.as_deref(), Some(page_size))
                .await
                .unwrap();
            assert!(page.items.len() <= page_size as usize);
            seen.extend(page.items.into_iter().map(|c| c.function_arn));
            marker = page.next_marker;
            if marker.is_none() {
                break;
            }
        }
        assert_eq!(seen, all, "pages of {page_size}");
    }
}
