//! The documents keep today's wire shape. `fixtures/{status,environments,cost}.json` are the raw
//! answers of a server built before these types existed (a capacity provider over three zones,
//! one function published and invoked); the `-busy`, `-failed`, `-no-requests` and `-empty`
//! variants are those answers with the optional parts filled or emptied, and the
//! `-no-data-plane` ones what `fleetfn serve --no-data-plane` answers. `status*.json` gained
//! `InvocationsPerSecond` and `ThrottlesLastMinuteByReason` later; `series.json` is the example
//! of the web console's contract, `series-empty.json` a server without a data plane.

use std::collections::BTreeSet;

use fleetfn_contracts::{CostDocument, EnvironmentsDocument, SeriesDocument, StatusDocument};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const STATUS: &[(&str, &str)] = &[
    ("status.json", include_str!("fixtures/status.json")),
    (
        "status-busy.json",
        include_str!("fixtures/status-busy.json"),
    ),
    (
        "status-no-data-plane.json",
        include_str!("fixtures/status-no-data-plane.json"),
    ),
];
const ENVIRONMENTS: &[(&str, &str)] = &[
    (
        "environments.json",
        include_str!("fixtures/environments.json"),
    ),
    (
        "environments-failed.json",
        include_str!("fixtures/environments-failed.json"),
    ),
    (
        "environments-no-data-plane.json",
        include_str!("fixtures/environments-no-data-plane.json"),
    ),
];
const COST: &[(&str, &str)] = &[
    ("cost.json", include_str!("fixtures/cost.json")),
    (
        "cost-no-requests.json",
        include_str!("fixtures/cost-no-requests.json"),
    ),
    ("cost-empty.json", include_str!("fixtures/cost-empty.json")),
];
const SERIES: &[(&str, &str)] = &[
    ("series.json", include_str!("fixtures/series.json")),
    (
        "series-empty.json",
        include_str!("fixtures/series-empty.json"),
    ),
];

/// Every key path of a document (`Functions[].Throttles.CPU`), with whether its value is null.
fn key_paths(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, path: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.insert(if v.is_null() {
                        format!("{p}=null")
                    } else {
                        p.clone()
                    });
                    walk(v, &p, out);
                }
            }
            Value::Array(a) => {
                for v in a {
                    walk(v, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

fn parse<T: DeserializeOwned>(name: &str, text: &str) -> T {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

/// The fixture parses into `T`; serializing that gives the fixture back, value for value, and
/// parsing that again gives the same `T`.
fn round_trip<T>(fixtures: &[(&str, &str)])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    for (name, text) in fixtures {
        let doc: T = parse(name, text);
        let fixture: Value = serde_json::from_str(text).unwrap();
        let written = serde_json::to_value(&doc).unwrap();
        assert_eq!(written, fixture, "{name} changed in a round trip");
        let again: T = serde_json::from_value(written).unwrap();
        assert_eq!(again, doc, "{name}");
    }
}

/// The keys a document serializes are today's keys, null where today's are null.
fn same_keys<T: DeserializeOwned + Serialize>(fixtures: &[(&str, &str)]) {
    for (name, text) in fixtures {
        let doc: T = parse(name, text);
        let fixture: Value = serde_json::from_str(text).unwrap();
        let want = key_paths(&fixture);
        let got = key_paths(&serde_json::to_value(&doc).unwrap());
        assert_eq!(
            got.difference(&want).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{name}: keys that are not today's"
        );
        assert_eq!(
            want.difference(&got).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{name}: today's keys that are missing"
        );
    }
}

#[test]
fn status_round_trips() {
    round_trip::<StatusDocument>(STATUS);
}

#[test]
fn environments_round_trip() {
    round_trip::<EnvironmentsDocument>(ENVIRONMENTS);
}

#[test]
fn cost_round_trips() {
    round_trip::<CostDocument>(COST);
}

#[test]
fn series_round_trips() {
    round_trip::<SeriesDocument>(SERIES);
}

#[test]
fn series_keys_are_the_contracts() {
    same_keys::<SeriesDocument>(SERIES);
    let doc: SeriesDocument = parse("series.json", SERIES[0].1);
    let v = &doc.versions[0];
    assert_eq!(v.t, [1_796_399_998, 1_796_399_999]);
    assert_eq!(v.duration_p50_ms, [Some(1.2), None]);
    assert_eq!(v.throttles.concurrency, [0, 2]);
}

#[test]
fn status_keys_are_todays() {
    same_keys::<StatusDocument>(STATUS);
}

#[test]
fn environments_keys_are_todays() {
    same_keys::<EnvironmentsDocument>(ENVIRONMENTS);
}

#[test]
fn cost_keys_are_todays() {
    same_keys::<CostDocument>(COST);
}

#[test]
fn the_filled_in_variants_differ_where_they_should() {
    // The variants are not copies: the comparison above would pass for them trivially.
    let plain: StatusDocument = parse("status.json", STATUS[0].1);
    let busy: StatusDocument = parse("status-busy.json", STATUS[1].1);
    assert!(plain.capacity_providers[0].launch_error.is_none());
    let err = busy.capacity_providers[0].launch_error.as_ref().unwrap();
    assert_eq!(err.message, "launching c7i.large in subnet-a: no capacity");
    let f = &busy.functions[0];
    assert_eq!(f.state, fleetfn_model::State::Pending);
    assert_eq!(
        f.last_update_status,
        fleetfn_model::LastUpdateStatus::InProgress
    );
    assert_eq!(f.throttles.get(fleetfn_model::ThrottleReason::Cpu), 2);
    assert_eq!(
        f.throttles,
        fleetfn_contracts::Throttles::from_counts([10, 2, 1, 0])
    );
    assert!(!f.environments[0].current && plain.functions[0].environments[0].current);
    assert_eq!(
        f.throttles_last_minute_by_reason,
        fleetfn_contracts::Throttles::from_counts([2, 1, 0, 0])
    );
    assert!((f.invocations_per_second - 2.5).abs() < 1e-12);
    let failed: EnvironmentsDocument = parse("environments-failed.json", ENVIRONMENTS[1].1);
    assert_eq!(
        failed.environments[0].failure.as_ref().unwrap().reason_code,
        "Runtime.ExitError"
    );
    assert_eq!(
        failed.instances.as_ref().unwrap()[0].state,
        fleetfn_scheduler::InstanceState::Draining
    );
}

#[test]
fn documents_of_older_servers_still_parse() {
    // Before `Invocations`, `Errors` and `Current` were added (docs/STATUS.md's first example).
    let mut doc: Value = serde_json::from_str(STATUS[0].1).unwrap();
    let f = doc["Functions"][0].as_object_mut().unwrap();
    for k in [
        "Invocations",
        "Errors",
        "ThrottlesLastMinute",
        "ThrottlesLastMinuteByReason",
        "InvocationsPerSecond",
    ] {
        f.remove(k);
    }
    for e in doc["Functions"][0]["Environments"].as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("Current");
    }
    let parsed: StatusDocument = serde_json::from_value(doc).unwrap();
    let f = &parsed.functions[0];
    assert_eq!(
        (f.invocations, f.errors, f.throttles_last_minute),
        (0, 0, 0)
    );
    assert!(f.environments.iter().all(|e| e.current));
    assert_eq!(f.throttles_last_minute_by_reason.total, 0);
    assert!(f.invocations_per_second.abs() < f64::EPSILON);
}

#[test]
fn unknown_states_are_refused() {
    let mut doc: Value = serde_json::from_str(STATUS[0].1).unwrap();
    doc["Functions"][0]["State"] = "Creating".into();
    assert!(serde_json::from_value::<StatusDocument>(doc).is_err());
}
