use std::collections::BTreeMap;

use super::*;

/// Every family fleetfn declares, with its OpenMetrics type. The test below fails when a family
/// is registered but not listed here, or listed but not registered.
const FAMILIES: &[(&str, &str)] = &[
    ("fleetfn_invocations", "counter"),
    ("fleetfn_errors", "counter"),
    ("fleetfn_throttles", "counter"),
    ("fleetfn_concurrency_throttles", "counter"),
    ("fleetfn_cpu_throttles", "counter"),
    ("fleetfn_memory_throttles", "counter"),
    ("fleetfn_disk_throttles", "counter"),
    ("fleetfn_duration_seconds", "histogram"),
    ("fleetfn_init_duration_seconds", "histogram"),
    ("fleetfn_execution_environments", "gauge"),
    ("fleetfn_execution_environment_concurrency", "gauge"),
    ("fleetfn_execution_environment_concurrency_limit", "gauge"),
    ("fleetfn_execution_environment_cpu_utilization", "gauge"),
    ("fleetfn_execution_environment_memory_utilization", "gauge"),
    ("fleetfn_execution_environment_memory_max_bytes", "gauge"),
    ("fleetfn_execution_environment_memory_size_bytes", "gauge"),
    ("fleetfn_execution_environment_tmp_used_bytes", "gauge"),
    ("fleetfn_execution_environment_tmp_size_bytes", "gauge"),
    ("fleetfn_execution_environment_cpu_seconds", "counter"),
    (
        "fleetfn_execution_environment_network_receive_bytes",
        "counter",
    ),
    (
        "fleetfn_execution_environment_network_transmit_bytes",
        "counter",
    ),
    ("fleetfn_scaler_desired_environments", "gauge"),
    ("fleetfn_scaler_actual_environments", "gauge"),
    ("fleetfn_capacity_provider_cpu_utilization", "gauge"),
    ("fleetfn_capacity_provider_memory_utilization", "gauge"),
    ("fleetfn_capacity_provider_vcpus_allocated", "gauge"),
    ("fleetfn_capacity_provider_vcpus_available", "gauge"),
    ("fleetfn_capacity_provider_memory_allocated_bytes", "gauge"),
    ("fleetfn_capacity_provider_memory_available_bytes", "gauge"),
    ("fleetfn_instances", "gauge"),
    ("fleetfn_scaler_desired_instances", "gauge"),
    ("fleetfn_scaler_actual_instances", "gauge"),
    ("fleetfn_router_tries", "counter"),
];

/// `# TYPE` lines: family name → type.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, ty) = l.split_once(' ').unwrap();
            (name.to_string(), ty.to_string())
        })
        .collect()
}

/// Sample lines: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// The samples of one family (its name, or its name plus a suffix such as `_total`).
fn family_samples<'a>(s: &'a BTreeMap<String, f64>, family: &str) -> Vec<(&'a str, f64)> {
    s.iter()
        .filter(|(k, _)| {
            k.strip_prefix(family)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['{', '_']))
        })
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

fn v1() -> VersionLabels {
    VersionLabels::new("hello", "1")
}

fn snapshot(instances_state: InstanceState) -> GaugeSnapshot {
    let pt = ProviderTypeLabels {
        capacity_provider: "cp1".into(),
        instance_type: "c7i.large".into(),
    };
    GaugeSnapshot {
        versions: vec![VersionGauges {
            labels: v1(),
            environments: [1, 2, 0, 0, 0],
            concurrency: 3,
            concurrency_limit: 8,
            cpu_utilization: 0.25,
            memory_utilization: 0.5,
            desired_environments: 3,
            actual_environments: 2,
            memory_max_bytes: Some(300 << 20),
            memory_size_bytes: Some(1 << 30),
            tmp_used_bytes: Some(4096),
            tmp_size_bytes: Some(512 << 20),
        }],
        capacity: vec![CapacityGauges {
            labels: pt.clone(),
            cpu_utilization: 0.125,
            memory_utilization: 0.375,
            vcpus_allocated: 3.0,
            vcpus_available: 1.5,
            memory_allocated_bytes: 6 << 30,
            memory_available_bytes: 1 << 30,
        }],
        instances: vec![(
            InstanceLabels {
                provider_type: pt,
                zone: "subnet-a".into(),
                state: instances_state,
            },
            3,
        )],
        providers: vec![ProviderGauges {
            labels: ProviderLabels {
                capacity_provider: "cp1".into(),
            },
            desired_instances: 4,
            actual_instances: 3,
        }],
    }
}

const USAGE: EnvironmentUsage = EnvironmentUsage {
    cpu_user: Duration::from_millis(1500),
    cpu_system: Duration::from_millis(250),
    network_rx_bytes: 1000,
    network_tx_bytes: 300,
};

/// One of every event: invokes, errors, throttles of each reason, an init, tries of every
/// outcome (outcome i counted i + 1 times), and a gauge snapshot.
fn exercise(m: &Metrics) {
    let v = m.version(v1());
    v.invoked(Duration::from_millis(20), false);
    v.invoked(Duration::from_millis(40), false);
    v.invoked(Duration::from_millis(3), true);
    v.undeliverable();
    v.throttled(ThrottleReason::Concurrency);
    v.throttled(ThrottleReason::Concurrency);
    v.throttled(ThrottleReason::Cpu);
    v.throttled(ThrottleReason::Memory);
    v.throttled(ThrottleReason::Disk);
    v.initialized(Duration::from_millis(700));
    v.used(&USAGE);
    for (i, o) in TryOutcome::ALL.into_iter().enumerate() {
        for _ in 0..=i {
            m.router_try(o);
        }
    }
    m.publish(&snapshot(InstanceState::Running));
}

#[test]
fn every_declared_family_is_registered_with_help_and_type() {
    let m = Metrics::new();
    // Before anything happens only the router's outcomes exist (at 0): the other families have
    // no series yet (and are left out of the text), so nothing reads as a measured zero.
    let s = samples(&m.render().unwrap());
    assert_eq!(s.len(), TryOutcome::ALL.len(), "{s:?}");
    assert!(s.values().all(|v| *v == 0.0));

    exercise(&m);
    let text = m.render().unwrap();
    let declared: BTreeMap<String, String> = FAMILIES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(types(&text), declared, "{text}");
    for (name, _) in FAMILIES {
        let help = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# HELP {name} ")))
            .unwrap_or_else(|| panic!("no HELP for {name}"));
        assert!(!help.ends_with(".."), "{help}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// Families whose samples differ between two renders.
fn moved(before: &str, after: &str) -> Vec<&'static str> {
    let (b, a) = (samples(before), samples(after));
    FAMILIES
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| family_samples(&b, n) != family_samples(&a, n))
        .collect()
}

type Event = Box<dyn Fn(&Metrics, &VersionMetrics)>;

#[test]
fn every_family_moves_when_its_event_happens() {
    let m = Metrics::new();
    let v = m.version(v1());
    let gauges: Vec<&str> = FAMILIES
        .iter()
        .filter(|(_, t)| *t == "gauge")
        .map(|(n, _)| *n)
        .collect();
    let mut events: Vec<(&str, Event, Vec<&str>)> = vec![
        (
            "invoke",
            Box::new(|_, v| v.invoked(Duration::from_millis(20), false)),
            vec!["fleetfn_invocations", "fleetfn_duration_seconds"],
        ),
        (
            "function error",
            Box::new(|_, v| v.invoked(Duration::from_millis(3), true)),
            vec![
                "fleetfn_invocations",
                "fleetfn_errors",
                "fleetfn_duration_seconds",
            ],
        ),
        (
            "undeliverable",
            Box::new(|_, v| v.undeliverable()),
            vec!["fleetfn_errors"],
        ),
        (
            "init",
            Box::new(|_, v| v.initialized(Duration::from_millis(700))),
            vec!["fleetfn_init_duration_seconds"],
        ),
        (
            "environment usage",
            Box::new(|_, v| v.used(&USAGE)),
            vec![
                "fleetfn_execution_environment_cpu_seconds",
                "fleetfn_execution_environment_network_receive_bytes",
                "fleetfn_execution_environment_network_transmit_bytes",
            ],
        ),
        (
            "gauge refresh",
            Box::new(|m, _| m.publish(&snapshot(InstanceState::Running))),
            gauges,
        ),
    ];
    for (reason, family) in [
        (ThrottleReason::Concurrency, "fleetfn_concurrency_throttles"),
        (ThrottleReason::Cpu, "fleetfn_cpu_throttles"),
        (ThrottleReason::Memory, "fleetfn_memory_throttles"),
        (ThrottleReason::Disk, "fleetfn_disk_throttles"),
    ] {
        events.push((
            family,
            Box::new(move |_, v| v.throttled(reason)),
            vec!["fleetfn_throttles", family],
        ));
    }
    for o in TryOutcome::ALL {
        events.push((
            "router try",
            Box::new(move |m, _| m.router_try(o)),
            vec!["fleetfn_router_tries"],
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (what, event, expected) in &events {
        let before = m.render().unwrap();
        event(&m, &v);
        let after = m.render().unwrap();
        assert_eq!(&moved(&before, &after), expected, "after {what}");
        seen.extend(expected.iter().copied());
    }
    assert_eq!(seen.len(), FAMILIES.len(), "a family no event moves");

    // After one more of each event, the exact counts.
    exercise(&m);
    let text = m.render().unwrap();
    let s = samples(&text);
    let l = r#"{function="hello",version="1"}"#;
    let at = |k: &str| {
        *s.get(k)
            .unwrap_or_else(|| panic!("no series {k} in\n{text}"))
    };
    assert_eq!(at(&format!("fleetfn_invocations_total{l}")), 5.0);
    assert_eq!(at(&format!("fleetfn_errors_total{l}")), 4.0);
    assert_eq!(at(&format!("fleetfn_throttles_total{l}")), 9.0);
    assert_eq!(at(&format!("fleetfn_concurrency_throttles_total{l}")), 3.0);
    assert_eq!(at(&format!("fleetfn_cpu_throttles_total{l}")), 2.0);
    assert_eq!(at(&format!("fleetfn_memory_throttles_total{l}")), 2.0);
    assert_eq!(at(&format!("fleetfn_disk_throttles_total{l}")), 2.0);
    assert_eq!(at(&format!("fleetfn_duration_seconds_count{l}")), 5.0);
    assert!((at(&format!("fleetfn_duration_seconds_sum{l}")) - 0.086).abs() < 1e-9);
    // 20, 3, 20 and 3 ms are under 25 ms; 40 ms is not.
    assert_eq!(
        at(r#"fleetfn_duration_seconds_bucket{le="0.025",function="hello",version="1"}"#),
        4.0
    );
    assert_eq!(at(&format!("fleetfn_init_duration_seconds_count{l}")), 2.0);
    assert_eq!(
        at(r#"fleetfn_execution_environments{function="hello",version="1",state="Ready"}"#),
        2.0
    );
    assert_eq!(
        at(r#"fleetfn_execution_environments{function="hello",version="1",state="Exited"}"#),
        0.0
    );
    assert_eq!(
        at(&format!(
            "fleetfn_execution_environment_concurrency_limit{l}"
        )),
        8.0
    );
    assert_eq!(at(&format!("fleetfn_scaler_desired_environments{l}")), 3.0);
    assert_eq!(
        at(
            r#"fleetfn_execution_environment_cpu_seconds_total{function="hello",version="1",mode="user"}"#
        ),
        3.0
    );
    assert_eq!(
        at(
            r#"fleetfn_execution_environment_cpu_seconds_total{function="hello",version="1",mode="system"}"#
        ),
        0.5
    );
    assert_eq!(
        at(&format!(
            "fleetfn_execution_environment_network_receive_bytes_total{l}"
        )),
        2000.0
    );
    assert_eq!(
        at(&format!(
            "fleetfn_execution_environment_memory_max_bytes{l}"
        )),
        314_572_800.0
    );
    assert_eq!(
        at(&format!("fleetfn_execution_environment_tmp_size_bytes{l}")),
        536_870_912.0
    );
    assert_eq!(
        at(
            r#"fleetfn_capacity_provider_memory_allocated_bytes{capacity_provider="cp1",instance_type="c7i.large"}"#
        ),
        6_442_450_944.0
    );
    assert_eq!(
        at(
            r#"fleetfn_instances{capacity_provider="cp1",instance_type="c7i.large",zone="subnet-a",state="running"}"#
        ),
        3.0
    );
    assert_eq!(
        at(r#"fleetfn_scaler_desired_instances{capacity_provider="cp1"}"#),
        4.0
    );
    assert_eq!(at(r#"fleetfn_router_tries_total{outcome="done"}"#), 2.0);
    assert_eq!(at(r#"fleetfn_router_tries_total{outcome="invalid"}"#), 7.0);
}

#[test]
fn publish_removes_what_is_gone_and_keeps_what_continues() {
    let m = Metrics::new();
    m.publish(&snapshot(InstanceState::Pending));
    m.publish(&snapshot(InstanceState::Running));
    let s = samples(&m.render().unwrap());
    let inst: Vec<_> = family_samples(&s, "fleetfn_instances");
    assert_eq!(inst.len(), 1, "{inst:?}");
    assert!(inst[0].0.contains(r#"state="running""#), "{inst:?}");
    assert_eq!(
        family_samples(&s, "fleetfn_execution_environments").len(),
        5
    );

    m.publish(&GaugeSnapshot::default());
    let s = samples(&m.render().unwrap());
    assert_eq!(
        s.keys()
            .filter(|k| !k.starts_with("fleetfn_router_tries"))
            .count(),
        0,
        "{s:?}"
    );
}

#[test]
fn unmeasured_resource_gauges_have_no_series() {
    let m = Metrics::new();
    m.publish(&snapshot(InstanceState::Running));
    let mut snap = snapshot(InstanceState::Running);
    snap.versions[0].memory_max_bytes = None;
    snap.versions[0].tmp_used_bytes = None;
    m.publish(&snap);
    let s = samples(&m.render().unwrap());
    assert!(family_samples(&s, "fleetfn_execution_environment_memory_max_bytes").is_empty());
    assert!(family_samples(&s, "fleetfn_execution_environment_tmp_used_bytes").is_empty());
    assert_eq!(
        family_samples(&s, "fleetfn_execution_environment_tmp_size_bytes").len(),
        1
    );
}

#[test]
fn a_removed_version_exports_nothing_and_comes_back_from_zero() {
    let m = Metrics::new();
    let old = m.version(v1());
    old.invoked(Duration::from_millis(1), false);
    m.publish(&snapshot(InstanceState::Running));
    m.remove_version(&v1());
    // A handle still held by an invoke in flight updates nothing exported.
    old.invoked(Duration::from_millis(1), false);
    let s = samples(&m.render().unwrap());
    assert!(
        !s.keys().any(|k| k.contains(r#"function="hello""#)),
        "{s:?}"
    );
    let new = m.version(v1());
    new.throttled(ThrottleReason::Disk);
    let s = samples(&m.render().unwrap());
    let l = r#"{function="hello",version="1"}"#;
    assert_eq!(s[&format!("fleetfn_invocations_total{l}")], 0.0);
    assert_eq!(s[&format!("fleetfn_disk_throttles_total{l}")], 1.0);
    assert_eq!(s[&format!("fleetfn_concurrency_throttles_total{l}")], 0.0);
    // A detached handle (the default) is registered nowhere.
    VersionMetrics::default().invoked(Duration::from_millis(1), true);
    assert_eq!(s, samples(&m.render().unwrap()));
}
