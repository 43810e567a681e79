//! Publishing: environments spread over three zones, what an environment is started with,
//! `MaxVCpuCount`, deleting a function, idle instances, shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use fleetfn_model::ErrorKind;
use tokio::time::Instant;

use crate::support::{FunctionSpec, Harness};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn publish_turns_active_with_three_environments_over_three_zones() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let ready = h.ready("f");
    assert_eq!(ready.len(), 3, "{ready:?}");
    for (zone, n) in Harness::per_zone(&ready) {
        assert_eq!(n, 1, "one environment in {zone}");
    }
    // Three instances, one per zone, nothing else launched.
    let launches = h.provider.launches();
    assert_eq!(launches.len(), 3, "{launches:?}");
    let zones: std::collections::BTreeSet<&str> =
        launches.iter().map(|l| l.zone.as_str()).collect();
    assert_eq!(zones.len(), 3);
    for l in &launches {
        assert!(l.ok);
        assert_eq!(l.capacity_provider, "cp");
        // The cheapest type that fits one 1-vCPU, 2 GB environment beside the OS reservation.
        assert_eq!(l.instance_type, "c7i.large");
        assert!(
            h.provider
                .running()
                .iter()
                .any(|a| a.instance_id() == l.instance_id)
        );
    }
    let out = h.invoke("f:1", "hello").await.expect("invoke");
    assert_eq!(out.payload, "hello");
    assert_eq!(out.function_error, None);
    assert_eq!(h.metric("fleetfn_invocations_total", "f", "1"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_version_is_pending_until_its_minimum_is_ready() {
    let h = Harness::new();
    h.provider.script().ready_after = Duration::from_secs(20);
    let arn = h.capacity_provider("cp", None).await;
    h.create_function("f", &arn, &FunctionSpec::default()).await;
    let v = h.publish("f").await;
    assert_eq!(v.state, fleetfn_model::State::Pending);
    h.run_for(Duration::from_secs(15)).await;
    // Environments started, none Ready yet: still Pending, and not invocable.
    assert_eq!(h.envs().len(), 3);
    assert_eq!(h.config("f:1").await.state, fleetfn_model::State::Pending);
    let e = h.request("f:1", "x", 1).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceConflict, "{e}");
    let took = h
        .until("f:1 Active", MINUTE, || async {
            h.config("f:1").await.state == fleetfn_model::State::Active
        })
        .await;
    assert!(
        took <= Duration::from_secs(10),
        "Active {took:?} after Ready"
    );
    assert_eq!(h.ready("f").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn environments_are_started_with_the_versions_configuration() {
    let h = Harness::new();
    let spec = FunctionSpec {
        memory_mb: 4096,
        max_concurrency: Some(7),
        timeout_secs: Some(42),
        env_vars: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        code: "configured".into(),
    };
    h.active_function(&spec).await;
    let cfg = h.config("f:1").await;
    let started: Vec<_> = h
        .provider
        .agents()
        .iter()
        .flat_map(|a| a.started())
        .collect();
    assert_eq!(started.len(), 3);
    for (_, req, _) in started {
        assert_eq!(req.function_name, "f");
        assert_eq!(req.version, "1");
        assert_eq!(req.qualified_arn, cfg.function_arn);
        assert_eq!(req.timeout_secs, 42);
        assert_eq!(req.memory_mb, 4096);
        assert_eq!(req.max_concurrency, 7);
        // 4096 MB at the default 2 GiB per vCPU.
        assert!((req.vcpus - 2.0).abs() < 1e-9, "{}", req.vcpus);
        assert_eq!(
            req.env_vars.get("GREETING").map(String::as_str),
            Some("hello")
        );
        assert_eq!(req.code_sha256_hex, crate::support::harness::code_hex(&cfg));
        assert_eq!(req.runtime, "provided.al2023");
        assert_eq!(req.region, "us-east-1");
    }
}

#[tokio::test(start_paused = true)]
async fn max_vcpu_count_caps_placement() {
    let mut h = Harness::new();
    // Three zones × one 2-vCPU instance (1 vCPU each for the OS and one environment) = 6.
    let arn = h.capacity_provider("cp", Some(6)).await;
    h.create_function("f", &arn, &FunctionSpec::default()).await;
    h.publish("f").await;
    h.until_state("f:1", fleetfn_model::State::Active, MINUTE)
        .await;
    // Load that would want twice the environments.
    h.provider.script().cpu_demand.insert("f".into(), 3.0);
    h.run_for(2 * MINUTE).await;
    let vcpus: u32 = h.provider.launches().iter().map(|l| l.vcpus).sum();
    assert!(vcpus <= 6, "launched {vcpus} vCPUs under MaxVCpuCount 6");
    assert_eq!(h.ready("f").len(), 3);
    // A throttle now says why no environment is added.
    h.provider.script().answers.insert(
        "f".into(),
        crate::support::Answer::Refuse(fleetfn_proto::ThrottleReason::Cpu),
    );
    let e = h.invoke("f:1", "x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests);
    assert!(e.message.contains("MaxVCpuCount"), "{}", e.message);
}

#[tokio::test(start_paused = true)]
async fn a_minimum_that_cannot_fit_under_max_vcpu_count_fails_the_version() {
    let h = Harness::new();
    // Three environments need three 2-vCPU instances: 6 > 4.
    let arn = h.capacity_provider("cp", Some(4)).await;
    h.create_function("f", &arn, &FunctionSpec::default()).await;
    h.publish("f").await;
    let v = h
        .until_state("f:1", fleetfn_model::State::Failed, MINUTE)
        .await;
    assert_eq!(
        v.state_reason_code.as_deref(),
        Some("CapacityProviderScalingLimitExceeded"),
        "{v:?}"
    );
    assert!(
        v.state_reason
            .as_deref()
            .unwrap_or("")
            .contains("MaxVCpuCount of 4"),
        "{:?}",
        v.state_reason
    );
    h.run_for(MINUTE).await;
    let vcpus: u32 = h
        .provider
        .launches()
        .iter()
        .filter(|l| l.ok)
        .map(|l| l.vcpus)
        .sum();
    assert!(vcpus <= 4, "launched {vcpus} vCPUs under MaxVCpuCount 4");
    assert!(h.envs().is_empty(), "a Failed version runs nothing");
}

#[tokio::test(start_paused = true)]
async fn deleting_the_only_function_terminates_its_instances_at_once() {
    let h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let instances: Vec<String> = h
        .provider
        .running()
        .iter()
        .map(|a| a.instance_id().to_string())
        .collect();
    assert_eq!(instances.len(), 3);
    h.cp.delete_function(&crate::support::harness::fref("f"))
        .await
        .expect("delete function");
    let t0 = Instant::now();
    h.until("instances terminated", MINUTE, || async {
        h.provider.running().is_empty()
    })
    .await;
    // A provider with nothing to run keeps no instance for the idle period.
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let terminated: Vec<String> = h.provider.terminations().into_iter().map(|t| t.0).collect();
    for id in instances {
        assert!(terminated.contains(&id), "{id} terminated");
    }
}

#[tokio::test(start_paused = true)]
async fn an_emptied_instance_of_a_busy_provider_is_terminated_after_the_idle_period() {
    let h = Harness::with_config(|c| c.idle_instance_after = Duration::from_secs(30));
    let arn = h.active_function(&FunctionSpec::default()).await;
    h.create_function("g", &arn, &FunctionSpec::default()).await;
    h.publish("g").await;
    h.until_state("g:1", fleetfn_model::State::Active, MINUTE)
        .await;
    let g_instances: Vec<String> = h.ready("g").into_iter().map(|(_, _, id)| id).collect();
    let f_instances: Vec<String> = h.ready("f").into_iter().map(|(_, _, id)| id).collect();
    assert!(
        g_instances.iter().all(|i| !f_instances.contains(i)),
        "each 2-vCPU instance holds one environment"
    );
    h.cp.delete_function(&crate::support::harness::fref("g"))
        .await
        .expect("delete function");
    h.until("g's environments stopped", MINUTE, || async {
        h.ready("g").is_empty()
    })
    .await;
    let emptied = Instant::now();
    h.until("g's instances terminated", 2 * MINUTE, || async {
        let t: Vec<String> = h.provider.terminations().into_iter().map(|t| t.0).collect();
        g_instances.iter().all(|i| t.contains(i))
    })
    .await;
    for (id, at) in h.provider.terminations() {
        assert!(g_instances.contains(&id), "only g's instances go: {id}");
        let idle = at - emptied;
        assert!(
            idle >= Duration::from_secs(29) && idle <= Duration::from_secs(33),
            "{id} terminated after {idle:?} empty"
        );
    }
    assert_eq!(h.ready("f").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn shutdown_terminates_every_instance() {
    let mut h = Harness::new();
    h.active_function(&FunctionSpec::default()).await;
    let running: Vec<String> = h
        .provider
        .running()
        .iter()
        .map(|a| a.instance_id().to_string())
        .collect();
    assert_eq!(running.len(), 3);
    h.shutdown().await;
    assert!(h.provider.running().is_empty());
    let terminated: Vec<String> = h.provider.terminations().into_iter().map(|t| t.0).collect();
    for id in running {
        assert!(terminated.contains(&id), "{id} terminated at shutdown");
    }
    // Nothing is launched after the stop.
    let launches = h.provider.launches().len();
    h.run_for(MINUTE).await;
    assert_eq!(h.provider.launches().len(), launches);
}
