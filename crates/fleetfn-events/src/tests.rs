//! The dispatcher under tokio's paused time, over a control plane and queue on the memory store,
//! a scripted invoker and a recording sink: retries and their spacing, throttle backoff, age
//! expiry into the dead-letter queue, destinations, lease renewal and takeover by another
//! server.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use fleetfn_contracts::{
    AsyncInvoker, CostDocument, EventRequest, InvokeOutcome, InvokeRequest, Invoker,
};
use fleetfn_model::arn::{FunctionRef, Scope};
use fleetfn_model::types::{
    CapacityProviderConfig, CapacityProviderPermissionsConfig, CapacityProviderVpcConfig,
    CreateCapacityProviderRequest, CreateFunctionRequest, DeadLetterConfig, Destination,
    DestinationConfig, FunctionCode, LambdaManagedInstancesCapacityProviderConfig,
    PublishVersionRequest, PutFunctionEventInvokeConfigRequest, UpdateFunctionConfigurationRequest,
};
use fleetfn_model::{LambdaError, Result, State};
use fleetfn_server::secrets::EnvKey;
use fleetfn_server::{ControlPlane, ControlPlaneConfig, VersionRecord};
use fleetfn_store::{Expect, MemoryStore, Op, Queue, Store, Table};
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sink::{BoxFuture, Sink, SinkError};
use crate::{AsyncConfig, AsyncInvocations, Policy, QUEUE};

/// What the fake invoker answers, call by call (the last one repeats).
#[derive(Clone, Debug)]
enum Answer {
    Ok(&'static str),
    FunctionError,
    Throttled,
    /// Answers OK after this long.
    Slow(Duration),
}

#[derive(Default)]
struct FakeInvoker {
    script: Mutex<VecDeque<Answer>>,
    last: Mutex<Option<Answer>>,
    calls: Mutex<Vec<(Instant, String, Bytes)>>,
}

impl FakeInvoker {
    fn new(script: &[Answer]) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.iter().cloned().collect()),
            ..Self::default()
        })
    }
    fn calls(&self) -> Vec<(Instant, String, Bytes)> {
        self.calls.lock().clone()
    }
}

impl Invoker for FakeInvoker {
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<InvokeOutcome>> + Send + '_>> {
        self.calls
            .lock()
            .push((Instant::now(), req.request_id.clone(), req.payload.clone()));
        let answer = {
            let mut s = self.script.lock();
            let a = s.pop_front();
            let mut last = self.last.lock();
            if let Some(a) = a {
                *last = Some(a.clone());
                a
            } else {
                last.clone().unwrap_or(Answer::Ok("{}"))
            }
        };
        Box::pin(async move {
            match answer {
                Answer::Ok(body) => Ok(InvokeOutcome {
                    payload: Bytes::from_static(body.as_bytes()),
                    function_error: None,
                }),
                Answer::FunctionError => Ok(InvokeOutcome {
                    payload: Bytes::from_static(
                        br#"{"errorType":"Boom","errorMessage":"it failed"}"#,
                    ),
                    function_error: Some("Unhandled".into()),
                }),
                Answer::Throttled => Err(LambdaError::throttled(
                    "ConcurrentInvocationLimitExceeded",
                    1,
                    "Rate Exceeded.",
                )),
                Answer::Slow(d) => {
                    tokio::time::sleep(d).await;
                    Ok(InvokeOutcome {
                        payload: Bytes::from_static(b"{}"),
                        function_error: None,
                    })
                }
            }
        })
    }

    fn cost(
        &self,
        _since: jiff::Timestamp,
    ) -> Pin<Box<dyn Future<Output = Result<CostDocument>> + Send + '_>> {
        Box::pin(async { Err(LambdaError::service("no cost here")) })
    }
}

/// One record sent: (service, target, body, attributes).
type Sent = (&'static str, String, String, Vec<(String, String)>);

/// Records what was sent where.
#[derive(Debug, Default)]
struct FakeSink {
    sent: Mutex<Vec<Sent>>,
}

impl FakeSink {
    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().clone()
    }
    fn record(&self, service: &'static str, target: &str, body: &str, attrs: &[(&str, &str)]) {
        self.sent.lock().push((
            service,
            target.to_owned(),
            body.to_owned(),
            attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ));
    }
}

impl Sink for FakeSink {
    fn sqs<'a>(
        &'a self,
        queue_arn: &'a str,
        body: &'a str,
        attributes: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, std::result::Result<(), SinkError>> {
        self.record("sqs", queue_arn, body, attributes);
        Box::pin(async { Ok(()) })
    }
    fn sns<'a>(
        &'a self,
        topic_arn: &'a str,
        message: &'a str,
        attributes: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, std::result::Result<(), SinkError>> {
        self.record("sns", topic_arn, message, attributes);
        Box::pin(async { Ok(()) })
    }
    fn event_bus<'a>(
        &'a self,
        bus_arn: &'a str,
        detail_type: &'a str,
        detail: &'a str,
        _resources: &'a [&'a str],
    ) -> BoxFuture<'a, std::result::Result<(), SinkError>> {
        self.record("events", bus_arn, detail, &[("detail-type", detail_type)]);
        Box::pin(async { Ok(()) })
    }
}

const DLQ: &str = "arn:aws:sqs:us-east-1:123456789012:dlq";
const ON_FAILURE: &str = "arn:aws:sqs:us-east-1:123456789012:failures";
const ON_SUCCESS: &str = "arn:aws:sns:us-east-1:123456789012:successes";

struct World {
    cp: ControlPlane,
    store: Arc<MemoryStore>,
    sink: Arc<FakeSink>,
    metrics: Arc<fleetfn_metrics::Metrics>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn zip_b64() -> String {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        w.start_file("bootstrap", opts).unwrap();
        w.write_all(b"#!/bin/sh\n").unwrap();
        w.finish().unwrap();
    }
    base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
}

impl World {
    /// A control plane with function `f` published to `$LATEST.PUBLISHED` and marked Active
    /// (as the data plane would), its dead-letter queue [`DLQ`].
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::new());
        let cp = ControlPlane::new(
            store.clone(),
            ControlPlaneConfig {
                scope: Scope::default(),
                artifacts_dir: dir.path().join("artifacts"),
                env_key: EnvKey::from_bytes(&[7; fleetfn_server::secrets::KEY_LEN]).unwrap(),
            },
        )
        .unwrap();
        let stop = CancellationToken::new();
        let _reconciler = cp.spawn_reconciler(stop.clone());
        let p = cp
            .create_capacity_provider(CreateCapacityProviderRequest {
                capacity_provider_name: Some("cp".into()),
                vpc_config: Some(CapacityProviderVpcConfig {
                    subnet_ids: vec!["subnet-a".into()],
                    security_group_ids: vec![],
                }),
                permissions_config: Some(CapacityProviderPermissionsConfig {
                    capacity_provider_operator_role_arn: "arn:aws:iam::000000000000:role/op".into(),
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let w = Self {
            cp,
            store,
            sink: Arc::new(FakeSink::default()),
            metrics: Arc::new(fleetfn_metrics::Metrics::new()),
            stop,
            _dir: dir,
        };
        // The provider turns Active under the reconciler.
        for _ in 0..100 {
            let f =
                w.cp.create_function(CreateFunctionRequest {
                    function_name: Some("f".into()),
                    runtime: Some("provided.al2023".into()),
                    role: Some("arn:aws:iam::000000000000:role/fn".into()),
                    code: Some(FunctionCode {
                        zip_file: Some(zip_b64()),
                        ..Default::default()
                    }),
                    capacity_provider_config: Some(CapacityProviderConfig {
                        lambda_managed_instances_capacity_provider_config: Some(
                            LambdaManagedInstancesCapacityProviderConfig {
                                capacity_provider_arn: Some(p.capacity_provider_arn.clone()),
                                per_execution_environment_max_concurrency: None,
                                memory_gib_per_vcpu: None,
                            },
                        ),
                    }),
                    ..Default::default()
                })
                .await;
            if f.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let fref = FunctionRef::parse("f", &Scope::default(), 64).unwrap();
        for _ in 0..100 {
            if w.cp
                .update_function_configuration(
                    &fref,
                    UpdateFunctionConfigurationRequest {
                        dead_letter_config: Some(DeadLetterConfig {
                            target_arn: Some(DLQ.into()),
                        }),
                        ..Default::default()
                    },
                )
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for _ in 0..100 {
            if w.cp
                .publish_version(
                    &fref,
                    PublishVersionRequest {
                        publish_to: Some("LATEST_PUBLISHED".into()),
                        ..Default::default()
                    },
                )
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        w.activate().await;
        w
    }

    /// Marks `f:$LATEST.PUBLISHED` Active, as the data plane does once environments are Ready.
    async fn activate(&self) {
        let key = "f/$LATEST.PUBLISHED";
        let rec = self.store.get(Table::Versions, key).await.unwrap().unwrap();
        let mut v: VersionRecord = rec.decode().unwrap();
        v.config.state = State::Active;
        self.store
            .commit(vec![Op::put(
                Table::Versions,
                key,
                &v,
                Expect::Revision(rec.revision),
            )])
            .await
            .unwrap();
    }

    async fn config(&self, retries: i64, max_age: Option<i64>, with_destinations: bool) {
        let fref = FunctionRef::parse("f", &Scope::default(), 64).unwrap();
        self.cp
            .put_event_invoke_config(
                &fref,
                PutFunctionEventInvokeConfigRequest {
                    maximum_retry_attempts: Some(retries),
                    maximum_event_age_in_seconds: max_age,
                    destination_config: with_destinations.then(|| DestinationConfig {
                        on_success: Some(Destination {
                            destination: Some(ON_SUCCESS.into()),
                        }),
                        on_failure: Some(Destination {
                            destination: Some(ON_FAILURE.into()),
                        }),
                    }),
                },
                false,
            )
            .await
            .unwrap();
    }

    fn dispatcher(&self, invoker: Arc<FakeInvoker>, lease: Duration) -> AsyncInvocations {
        AsyncInvocations::new(
            self.store.clone(),
            self.cp.clone(),
            invoker,
            self.sink.clone(),
            self.metrics.clone(),
            AsyncConfig {
                policy: Policy::default(),
                lease,
                max_in_flight: 8,
                idle_poll: Duration::from_millis(250),
            },
        )
    }

    async fn send(&self, d: &AsyncInvocations, id: &str) {
        d.enqueue(EventRequest {
            request_id: id.into(),
            function: "f".into(),
            qualifier: None,
            payload: Bytes::from_static(br#"{"n":1}"#),
            client_context: None,
            tenant_id: None,
        })
        .await
        .unwrap();
    }

    async fn depth(&self) -> u64 {
        self.store
            .stats(QUEUE, crate::now_ms())
            .await
            .unwrap()
            .depth
    }

    /// Lets paused time pass until the queue is empty (bounded).
    async fn until_empty(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        while self.depth().await > 0 {
            assert!(
                start.elapsed() < limit,
                "the queue did not empty within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        start.elapsed()
    }
}

fn record(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_function_error_is_retried_one_then_two_minutes_later_then_recorded() {
    let w = World::new().await;
    w.config(2, None, true).await;
    let inv = FakeInvoker::new(&[Answer::FunctionError]);
    let d = w.dispatcher(inv.clone(), Duration::from_secs(60));
    let _run = d.spawn(w.stop.clone());
    w.send(&d, "ev-1").await;
    w.until_empty(Duration::from_secs(600)).await;
    let calls = inv.calls();
    assert_eq!(calls.len(), 3, "one invoke and two retries");
    assert!(calls.iter().all(|(_, id, _)| id == "ev-1"));
    let gaps = [calls[1].0 - calls[0].0, calls[2].0 - calls[1].0];
    assert!(
        gaps[0] >= Duration::from_secs(60) && gaps[0] < Duration::from_secs(62),
        "{gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_secs(120) && gaps[1] < Duration::from_secs(122),
        "{gaps:?}"
    );
    let sent = w.sink.sent();
    let failure = sent
        .iter()
        .find(|s| s.1 == ON_FAILURE)
        .expect("an OnFailure record");
    let r = record(&failure.2);
    assert_eq!(r["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(r["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(r["responseContext"]["functionError"], "Unhandled");
    assert_eq!(r["responsePayload"]["errorMessage"], "it failed");
    assert_eq!(r["requestPayload"], serde_json::json!({"n": 1}));
    // The dead-letter queue gets the event itself, with AWS's attributes.
    let dead = sent
        .iter()
        .find(|s| s.1 == DLQ)
        .expect("a dead-letter message");
    assert_eq!(dead.2, r#"{"n":1}"#);
    assert!(dead.3.contains(&("RequestID".into(), "ev-1".into())));
    assert!(
        dead.3
            .contains(&("ErrorMessage".into(), "it failed".into()))
    );
    assert!(!sent.iter().any(|s| s.1 == ON_SUCCESS));
}

#[tokio::test(start_paused = true)]
async fn zero_retries_means_one_invoke() {
    let w = World::new().await;
    w.config(0, None, true).await;
    let inv = FakeInvoker::new(&[Answer::FunctionError]);
    let d = w.dispatcher(inv.clone(), Duration::from_secs(60));
    let _run = d.spawn(w.stop.clone());
    w.send(&d, "ev-0").await;
    w.until_empty(Duration::from_secs(60)).await;
    assert_eq!(inv.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn throttles_back_off_exponentially_and_the_event_runs_once_capacity_returns() {
    let w = World::new().await;
    w.config(2, None, true).await;
    let inv = FakeInvoker::new(&[
        Answer::Throttled,
        Answer::Throttled,
        Answer::Throttled,
        Answer::Throttled,
        Answer::Ok(r#"{"ok":true}"#),
    ]);
    let d = w.dispatcher(inv.clone(), Duration::from_secs(60));
    let _run = d.spawn(w.stop.clone());
    w.send(&d, "ev-t").await;
    w.until_empty(Duration::from_secs(120)).await;
    let calls = inv.calls();
    assert_eq!(calls.len(), 5);
    // Waits of about 1, 2, 4 and 8 s (up to 20 % less: jitter), never retries of a function error.
    for (i, pair) in calls.windows(2).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        let full = Duration::from_secs(1 << i);
        assert!(
            gap >= full.mul_f64(0.79) && gap <= full + Duration::from_millis(600),
            "{i}: {gap:?}"
        );
    }
    let sent = w.sink.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r = record(&sent[0].2);
    assert_eq!(sent[0].1, ON_SUCCESS);
    assert_eq!(r["requestContext"]["condition"], "Success");
    assert_eq!(r["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(r["responsePayload"], serde_json::json!({"ok": true}));
}

#[tokio::test(start_paused = true)]
async fn an_event_throttled_past_its_maximum_age_goes_to_the_dead_letter_queue() {
    let w = World::new().await;
    w.config(2, Some(60), true).await;
    let inv = FakeInvoker::new(&[Answer::Throttled]);
    let d = w.dispatcher(inv.clone(), Duration::from_secs(60));
    let _run = d.spawn(w.stop.clone());
    w.send(&d, "ev-old").await;
    let took = w.until_empty(Duration::from_secs(300)).await;
    // Backoffs of 1, 2, 4, 8, 16 and 32 s (each up to 20 % shorter): five or six of them fit
    // in the 60 s, and the event is dropped as soon as the next would not.
    assert!(took < Duration::from_secs(61), "{took:?}");
    let n = inv.calls().len();
    assert!((6..=7).contains(&n), "{n} invokes");
    let sent = w.sink.sent();
    let failure = record(&sent.iter().find(|s| s.1 == ON_FAILURE).unwrap().2);
    assert_eq!(failure["requestContext"]["condition"], "EventAgeExceeded");
    assert_eq!(failure["requestContext"]["approximateInvokeCount"], 0);
    assert!(failure.get("responseContext").is_none());
    let dead = sent.iter().find(|s| s.1 == DLQ).unwrap();
    assert!(
        dead.3
            .contains(&("ErrorMessage".into(), "EventAgeExceeded".into()))
    );
    let text = w.metrics.render().unwrap();
    assert!(
        text.contains(
            r#"fleetfn_async_events_dropped_total{function="f",reason="EventAgeExceeded"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_invoke_keeps_its_lease_and_another_server_never_takes_it() {
    let w = World::new().await;
    w.config(0, None, false).await;
    let slow = FakeInvoker::new(&[Answer::Slow(Duration::from_secs(200))]);
    let other = FakeInvoker::new(&[Answer::Ok("{}")]);
    let a = w.dispatcher(slow.clone(), Duration::from_secs(10));
    let b = w.dispatcher(other.clone(), Duration::from_secs(10));
    let _ra = a.spawn(w.stop.clone());
    w.send(&a, "ev-long").await;
    // Let server A claim it before B runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _rb = b.spawn(w.stop.clone());
    w.until_empty(Duration::from_secs(400)).await;
    assert_eq!(slow.calls().len(), 1);
    assert!(
        other.calls().is_empty(),
        "B took an event A was still running"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_servers_events_are_taken_over_when_its_lease_ends() {
    let w = World::new().await;
    w.config(0, None, false).await;
    let stuck = FakeInvoker::new(&[Answer::Slow(Duration::from_secs(100_000))]);
    let other = FakeInvoker::new(&[Answer::Ok("{}")]);
    let a = w.dispatcher(stuck.clone(), Duration::from_secs(10));
    let b = w.dispatcher(other.clone(), Duration::from_secs(10));
    let ra = a.spawn(w.stop.child_token());
    w.send(&a, "ev-orphan").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stuck.calls().len(), 1);
    // Server A dies with the event in flight: its loop and the event's task vanish without
    // a word (aborted, not stopped), so the lease is neither renewed nor given back.
    ra.abort();
    let _ = ra.await;
    drop(a);
    let died = Instant::now();
    let _rb = b.spawn(w.stop.clone());
    w.until_empty(Duration::from_secs(60)).await;
    let calls = other.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1, "ev-orphan");
    let waited = calls[0].0 - died;
    assert!(
        waited <= Duration::from_secs(11),
        "taken over after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lambda_destination_gets_the_record_as_an_event() {
    let w = World::new().await;
    let fref = FunctionRef::parse("f", &Scope::default(), 64).unwrap();
    w.cp.put_event_invoke_config(
        &fref,
        PutFunctionEventInvokeConfigRequest {
            maximum_retry_attempts: Some(0),
            maximum_event_age_in_seconds: None,
            destination_config: Some(DestinationConfig {
                // Itself, qualified: the record comes back as the next event.
                on_success: Some(Destination {
                    destination: Some(
                        "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST.PUBLISHED".into(),
                    ),
                }),
                on_failure: None,
            }),
        },
        false,
    )
    .await
    .unwrap();
    let inv = FakeInvoker::new(&[Answer::Ok(r#"{"first":true}"#), Answer::Ok("{}")]);
    let d = w.dispatcher(inv.clone(), Duration::from_secs(60));
    let _run = d.spawn(w.stop.clone());
    w.send(&d, "ev-chain").await;
    // The chain: the first event, then its record (whose config, on the qualifier, has none).
    w.until_empty(Duration::from_secs(60)).await;
    let calls = inv.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let second: serde_json::Value = serde_json::from_slice(&calls[1].2).unwrap();
    assert_eq!(second["requestContext"]["requestId"], "ev-chain");
    assert_eq!(
        second["responsePayload"],
        serde_json::json!({"first": true})
    );
    assert_ne!(calls[1].1, "ev-chain");
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_events_in_flight_are_put_back_for_the_next_server() {
    let w = World::new().await;
    w.config(0, None, false).await;
    let stuck = FakeInvoker::new(&[Answer::Slow(Duration::from_secs(100_000))]);
    let other = FakeInvoker::new(&[Answer::Ok("{}")]);
    let a = w.dispatcher(stuck.clone(), Duration::from_secs(60));
    let a_stop = w.stop.child_token();
    let ra = a.spawn(a_stop.clone());
    w.send(&a, "ev-back").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    a_stop.cancel();
    tokio::time::timeout(Duration::from_secs(11), ra)
        .await
        .unwrap()
        .unwrap();
    let stopped = Instant::now();
    let b = w.dispatcher(other.clone(), Duration::from_secs(60));
    let _rb = b.spawn(w.stop.clone());
    w.until_empty(Duration::from_secs(5)).await;
    let calls = other.calls();
    assert_eq!(calls.len(), 1);
    // Not after the 60 s lease: at once.
    assert!(calls[0].0 - stopped < Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------------
// SQS event source mappings

mod mappings {
    use std::collections::{BTreeMap, HashSet};

    use fleetfn_model::types::{EventSourceMappingRequest, FilterCriteria, FilterPattern};
    use fleetfn_roles::{ServiceError, SqsMessage};

    use super::*;
    use crate::sources::{EventSources, SqsSource};

    const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:jobs";

    /// A queue in memory: received messages leave `visible` until deleted (gone) or released
    /// (back at the front).
    #[derive(Debug, Default)]
    struct FakeSqs {
        visible: Mutex<VecDeque<SqsMessage>>,
        deleted: Mutex<Vec<String>>,
        released: Mutex<Vec<String>>,
        receives: Mutex<Vec<Instant>>,
    }

    impl FakeSqs {
        fn with(messages: impl IntoIterator<Item = (String, String)>) -> Arc<Self> {
            let q = Self::default();
            for (id, body) in messages {
                q.visible.lock().push_back(SqsMessage {
                    message_id: id.clone(),
                    receipt_handle: format!("rh-{id}"),
                    body,
                    md5_of_body: String::new(),
                    attributes: BTreeMap::from([(
                        "ApproximateReceiveCount".to_owned(),
                        "1".to_owned(),
                    )]),
                    message_attributes: BTreeMap::new(),
                });
            }
            Arc::new(q)
        }
    }

    impl SqsSource for FakeSqs {
        fn receive<'a>(
            &'a self,
            _queue_arn: &'a str,
            max: u8,
            wait_secs: u8,
        ) -> BoxFuture<'a, std::result::Result<Vec<SqsMessage>, ServiceError>> {
            self.receives.lock().push(Instant::now());
            Box::pin(async move {
                let got: Vec<SqsMessage> = {
                    let mut v = self.visible.lock();
                    let n = usize::from(max).min(v.len());
                    v.drain(..n).collect()
                };
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_secs(u64::from(wait_secs))).await;
                }
                Ok(got)
            })
        }

        fn delete<'a>(
            &'a self,
            _queue_arn: &'a str,
            entries: &'a [(&'a str, &'a str)],
        ) -> BoxFuture<'a, std::result::Result<Vec<(String, String)>, ServiceError>> {
            self.deleted.lock().extend(
                entries
                    .iter()
                    .map(|(_, rh)| rh.trim_start_matches("rh-").to_owned()),
            );
            Box::pin(async { Ok(vec![]) })
        }

        fn release<'a>(
            &'a self,
            _queue_arn: &'a str,
            entries: &'a [(&'a str, &'a str)],
        ) -> BoxFuture<'a, std::result::Result<Vec<(String, String)>, ServiceError>> {
            for (_, rh) in entries {
                let id = rh.trim_start_matches("rh-").to_owned();
                self.released.lock().push(id.clone());
            }
            Box::pin(async { Ok(vec![]) })
        }
    }

    async fn mapping(w: &World, req: EventSourceMappingRequest) -> String {
        w.cp.create_event_source_mapping(EventSourceMappingRequest {
            function_name: Some("f".into()),
            event_source_arn: Some(QUEUE_ARN.into()),
            ..req
        })
        .await
        .unwrap()
        .uuid
    }

    fn start(w: &World, inv: Arc<FakeInvoker>, sqs: Arc<FakeSqs>) {
        let sources = EventSources::new(inv, Some(sqs), w.metrics.clone());
        // Runs until the world stops.
        drop(sources.spawn(w.cp.clone(), w.stop.clone()));
    }

    async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < limit, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn batch_ids(payload: &Bytes) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        v["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["messageId"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn batches_are_processed_and_only_reported_failures_stay() {
        let w = World::new().await;
        let sqs = FakeSqs::with((0..25).map(|i| (format!("m-{i}"), format!("{{\"i\":{i}}}"))));
        let inv = FakeInvoker::new(&[
            Answer::Ok(r#"{"batchItemFailures":[{"itemIdentifier":"m-3"}]}"#),
            Answer::Ok("null"),
            Answer::Ok(r#"{"batchItemFailures":[]}"#),
        ]);
        let uuid = mapping(
            &w,
            EventSourceMappingRequest {
                batch_size: Some(10),
                function_response_types: Some(vec!["ReportBatchItemFailures".into()]),
                scaling_config: Some(fleetfn_model::types::EsmScalingConfig {
                    maximum_concurrency: Some(2),
                }),
                ..Default::default()
            },
        )
        .await;
        start(&w, inv.clone(), sqs.clone());
        until("24 deleted", Duration::from_secs(60), || {
            sqs.deleted.lock().len() == 24
        })
        .await;
        let deleted: HashSet<String> = sqs.deleted.lock().iter().cloned().collect();
        assert_eq!(deleted.len(), 24, "each deleted once");
        assert!(!deleted.contains("m-3"));
        let calls = inv.calls();
        assert_eq!(calls.len(), 3);
        let sizes: Vec<usize> = calls.iter().map(|c| batch_ids(&c.2).len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 25, "{sizes:?}");
        assert!(sizes.iter().all(|n| *n <= 10), "{sizes:?}");
        let got = w.cp.get_event_source_mapping(&uuid).await.unwrap();
        assert_eq!(got.state, "Enabled");
    }

    #[tokio::test(start_paused = true)]
    async fn a_function_error_deletes_nothing_and_filtered_messages_are_deleted_unseen() {
        let w = World::new().await;
        let mut msgs: Vec<(String, String)> = (0..4)
            .map(|i| (format!("keep-{i}"), r#"{"kind":"keep"}"#.to_owned()))
            .collect();
        msgs.extend((0..3).map(|i| (format!("drop-{i}"), r#"{"kind":"drop"}"#.to_owned())));
        msgs.push(("text".into(), "not json".into()));
        let sqs = FakeSqs::with(msgs);
        let inv = FakeInvoker::new(&[Answer::FunctionError]);
        mapping(
            &w,
            EventSourceMappingRequest {
                batch_size: Some(10),
                filter_criteria: Some(FilterCriteria {
                    filters: Some(vec![FilterPattern {
                        pattern: Some(r#"{"body":{"kind":["keep"]}}"#.into()),
                    }]),
                }),
                ..Default::default()
            },
        )
        .await;
        start(&w, inv.clone(), sqs.clone());
        until("an invoke", Duration::from_secs(60), || {
            !inv.calls().is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let calls = inv.calls();
        assert_eq!(
            batch_ids(&calls[0].2),
            ["keep-0", "keep-1", "keep-2", "keep-3"]
        );
        let mut deleted = sqs.deleted.lock().clone();
        deleted.sort();
        assert_eq!(
            deleted,
            ["drop-0", "drop-1", "drop-2", "text"],
            "only the filtered ones"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_over_6_mb_sends_the_rest_back_at_once() {
        let w = World::new().await;
        let big = "x".repeat(1_000_000);
        let sqs = FakeSqs::with((0..10).map(|i| (format!("b-{i}"), big.clone())));
        let inv = FakeInvoker::new(&[Answer::Ok("{}")]);
        mapping(
            &w,
            EventSourceMappingRequest {
                batch_size: Some(10),
                ..Default::default()
            },
        )
        .await;
        start(&w, inv.clone(), sqs.clone());
        until("the first batch", Duration::from_secs(60), || {
            !inv.calls().is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first = &inv.calls()[0];
        assert!(first.2.len() <= fleetfn_model::limits::MAX_SYNC_PAYLOAD_BYTES);
        let n = batch_ids(&first.2).len();
        assert_eq!(n, 6, "six 1 MB messages fit in 6 MB");
        let mut released = sqs.released.lock().clone();
        released.sort();
        assert_eq!(released, ["b-6", "b-7", "b-8", "b-9"]);
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_slow_the_poller_and_fail_no_message() {
        let w = World::new().await;
        let sqs = FakeSqs::with((0..3).map(|i| (format!("t-{i}"), "{}".to_owned())));
        let inv = FakeInvoker::new(&[Answer::Throttled]);
        let uuid = mapping(
            &w,
            EventSourceMappingRequest {
                batch_size: Some(1),
                scaling_config: Some(fleetfn_model::types::EsmScalingConfig {
                    maximum_concurrency: Some(2),
                }),
                ..Default::default()
            },
        )
        .await;
        start(&w, inv.clone(), sqs.clone());
        until("three invokes", Duration::from_secs(60), || {
            inv.calls().len() >= 3
        })
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            sqs.deleted.lock().is_empty(),
            "a throttled batch is not deleted"
        );
        // Two pollers, each waiting 1 s, 2 s, 4 s… after a throttle: a handful of invokes, not
        // a tight loop.
        let n = inv.calls().len();
        assert!(n <= 6, "{n} invokes in ~6 s");
        let got = w.cp.get_event_source_mapping(&uuid).await.unwrap();
        assert!(
            got.last_processing_result
                .as_deref()
                .is_some_and(|r| r.contains("throttled")),
            "{:?}",
            got.last_processing_result
        );
    }
}
