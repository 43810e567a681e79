//! SQS event source mappings: [`EventSources`] follows the mappings in the store (run by the
//! leader, so each mapping is polled from one place), settles their states (`Creating` →
//! `Enabled`, `Disabling` → `Disabled`, `Deleting` → gone) and runs a poller per enabled
//! mapping: long-polled batches of up to `BatchSize` messages gathered within
//! `MaximumBatchingWindowInSeconds`, filtered by `FilterCriteria` (messages that match no filter
//! are deleted, as AWS does), sent to the function synchronously in AWS's SQS event shape, then
//! deleted on success; on a function error they stay and SQS redelivers them after their
//! visibility timeout; with `ReportBatchItemFailures` only the reported ones stay. Throttles and
//! an unavailable function slow the poller down instead of failing messages.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetfn_contracts::{InvokeRequest, Invoker};
use fleetfn_metrics::{EsmOutcome, Metrics};
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::filter::{Filters, sqs_filter_view};
use fleetfn_model::limits::MAX_SYNC_PAYLOAD_BYTES;
use fleetfn_model::{ErrorKind, LambdaError};
use fleetfn_roles::{AwsServices, ServiceError, SqsMessage};
use fleetfn_server::{ControlPlane, EventSourceMappingRecord, esm_state};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sink::BoxFuture;

/// Concurrent batches of a mapping without `ScalingConfig.MaximumConcurrency` (AWS starts
/// with five), and the most this server runs for one mapping.
const DEFAULT_POLLERS: usize = 5;
const MAX_POLLERS: usize = 50;
/// `{"Records":[]}` around the records, in bytes.
const EVENT_OVERHEAD: usize = 16;

/// How often the mappings are re-read without a change notice.
const RESYNC: Duration = Duration::from_secs(2);

/// An SQS queue as the poller uses it ([`AwsServices`], or a fake in tests).
pub trait SqsSource: Send + Sync + std::fmt::Debug {
    fn receive<'a>(
        &'a self,
        queue_arn: &'a str,
        max: u8,
        wait_secs: u8,
    ) -> BoxFuture<'a, Result<Vec<SqsMessage>, ServiceError>>;
    /// Deletes (entry id, receipt handle) pairs; the ids that failed.
    fn delete<'a>(
        &'a self,
        queue_arn: &'a str,
        entries: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ServiceError>>;
    /// Makes received messages visible again at once; the ids that failed.
    fn release<'a>(
        &'a self,
        queue_arn: &'a str,
        entries: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ServiceError>>;
}

impl SqsSource for AwsServices {
    fn receive<'a>(
        &'a self,
        queue_arn: &'a str,
        max: u8,
        wait_secs: u8,
    ) -> BoxFuture<'a, Result<Vec<SqsMessage>, ServiceError>> {
        Box::pin(self.sqs_receive(queue_arn, max, wait_secs, None))
    }

    fn delete<'a>(
        &'a self,
        queue_arn: &'a str,
        entries: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ServiceError>> {
        Box::pin(self.sqs_delete_batch(queue_arn, entries))
    }

    fn release<'a>(
        &'a self,
        queue_arn: &'a str,
        entries: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ServiceError>> {
        Box::pin(self.sqs_change_visibility_batch(queue_arn, entries, 0))
    }
}

/// The pollers of every mapping, run on the leader.
#[derive(Clone)]
pub struct EventSources {
    invoker: Arc<dyn Invoker>,
    sqs: Option<Arc<dyn SqsSource>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for EventSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSources").finish_non_exhaustive()
    }
}

struct Running {
    generation: u64,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl EventSources {
    /// `sqs`: `None` when the server has no AWS credentials (mappings then report the problem).
    pub fn new(
        invoker: Arc<dyn Invoker>,
        sqs: Option<Arc<dyn SqsSource>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            invoker,
            sqs,
            metrics,
        }
    }

    /// Follows the mappings of `cp` until `stop`, then stops every poller.
    pub fn spawn(&self, cp: ControlPlane, stop: CancellationToken) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run(cp, stop).await })
    }

    async fn run(self, cp: ControlPlane, stop: CancellationToken) {
        let mut changes = cp.changes();
        let mut running: HashMap<String, Running> = HashMap::new();
        loop {
            match cp.event_source_mappings().await {
                Ok(mappings) => self.sync(&cp, mappings, &mut running, &stop).await,
                Err(e) => tracing::warn!(error = %e, "event source mappings: reading them failed"),
            }
            tokio::select! {
                () = stop.cancelled() => break,
                _ = changes.changed() => {},
                () = tokio::time::sleep(RESYNC) => {},
            }
        }
        for (_, r) in running.drain() {
            r.stop.cancel();
            let _ = r.task.await;
        }
    }

    async fn sync(
        &self,
        cp: &ControlPlane,
        mappings: Vec<(EventSourceMappingRecord, i64)>,
        running: &mut HashMap<String, Running>,
        stop: &CancellationToken,
    ) {
        let mut seen = HashSet::new();
        for (rec, rev) in mappings {
            let uuid = rec.config.uuid.clone();
            seen.insert(uuid.clone());
            let deleting = rec.config.state == esm_state::DELETING;
            if deleting || !rec.enabled {
                if let Some(r) = running.remove(&uuid) {
                    r.stop.cancel();
                    let _ = r.task.await;
                    tracing::info!(mapping = %uuid, "event source mapping: poller stopped");
                }
                let done = if deleting {
                    cp.remove_event_source_mapping(&uuid, rev).await
                } else if rec.config.state != esm_state::DISABLED {
                    cp.settle_event_source_mapping(&uuid, rev, rec, esm_state::DISABLED)
                        .await
                } else {
                    Ok(true)
                };
                if let Err(e) = done {
                    tracing::warn!(mapping = %uuid, error = %e, "event source mapping: settling its state failed");
                }
                continue;
            }
            let current = running
                .get(&uuid)
                .is_some_and(|r| r.generation == rec.generation && !r.task.is_finished());
            if !current {
                if let Some(r) = running.remove(&uuid) {
                    r.stop.cancel();
                    let _ = r.task.await;
                }
                let filters = match rec
                    .config
                    .filter_criteria
                    .as_ref()
                    .and_then(|f| f.filters.as_ref())
                    .filter(|fs| !fs.is_empty())
                    .map(|fs| Filters::parse(fs.iter().map(|f| f.pattern.as_deref().unwrap_or(""))))
                    .transpose()
                {
                    Ok(f) => f,
                    Err(e) => {
                        // Checked at create and update, so only a damaged record gets here.
                        let _ = cp
                            .note_event_source_result(
                                &uuid,
                                &format!("PROBLEM: its filter criteria are unreadable: {e}"),
                            )
                            .await;
                        continue;
                    }
                };
                let token = stop.child_token();
                let poller = Poller {
                    cp: cp.clone(),
                    rec: rec.clone(),
                    filters,
                    invoker: self.invoker.clone(),
                    sqs: self.sqs.clone(),
                    metrics: self.metrics.clone(),
                    stop: token.clone(),
                };
                tracing::info!(mapping = %uuid, queue = %rec.config.event_source_arn, function = %rec.function, "event source mapping: poller started");
                running.insert(
                    uuid.clone(),
                    Running {
                        generation: rec.generation,
                        stop: token,
                        task: tokio::spawn(poller.run()),
                    },
                );
            }
            if rec.config.state != esm_state::ENABLED
                && let Err(e) = cp
                    .settle_event_source_mapping(&uuid, rev, rec, esm_state::ENABLED)
                    .await
            {
                tracing::warn!(mapping = %uuid, error = %e, "event source mapping: settling its state failed");
            }
        }
        let gone: Vec<String> = running
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for uuid in gone {
            if let Some(r) = running.remove(&uuid) {
                r.stop.cancel();
                let _ = r.task.await;
            }
        }
    }
}

/// One mapping's pollers.
struct Poller {
    cp: ControlPlane,
    rec: EventSourceMappingRecord,
    filters: Option<Filters>,
    invoker: Arc<dyn Invoker>,
    sqs: Option<Arc<dyn SqsSource>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

/// What became of one batch.
#[derive(Debug, PartialEq, Eq)]
enum BatchOutcome {
    /// Nothing received.
    Empty,
    /// Invoked (or all filtered out); these many messages stay for redelivery.
    Done { failed: usize },
    /// Not invoked now (throttled, function unavailable, queue unreadable): wait before the
    /// next poll.
    Backoff(String),
}

impl Poller {
    async fn run(self) {
        let Some(sqs) = self.sqs.clone() else {
            let _ = self
                .cp
                .note_event_source_result(
                    &self.rec.config.uuid,
                    "PROBLEM: this server has no AWS credentials to poll SQS with",
                )
                .await;
            return;
        };
        let pollers = self
            .rec
            .config
            .scaling_config
            .as_ref()
            .and_then(|s| s.maximum_concurrency)
            .map_or(DEFAULT_POLLERS, |n| usize::try_from(n).unwrap_or(1))
            .clamp(1, MAX_POLLERS);
        let me = Arc::new(self);
        let mut tasks = Vec::with_capacity(pollers);
        for _ in 0..pollers {
            let me = me.clone();
            let sqs = sqs.clone();
            tasks.push(tokio::spawn(
                async move { me.poll_loop(sqs.as_ref()).await },
            ));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn poll_loop(&self, sqs: &dyn SqsSource) {
        let mut backoffs = 0u32;
        loop {
            let gathered = tokio::select! {
                () = self.stop.cancelled() => return,
                g = self.gather(sqs) => g,
            };
            let outcome = match gathered {
                Ok(msgs) => self.process(sqs, msgs).await,
                Err(e) => BatchOutcome::Backoff(format!(
                    "reading {} failed: {e}",
                    self.rec.config.event_source_arn
                )),
            };
            let wait = match outcome {
                BatchOutcome::Empty => None,
                BatchOutcome::Done { failed } => {
                    backoffs = 0;
                    let note = if failed == 0 {
                        "OK".to_owned()
                    } else {
                        format!(
                            "PROBLEM: Function call failed ({failed} messages left for redelivery)"
                        )
                    };
                    let _ = self
                        .cp
                        .note_event_source_result(&self.rec.config.uuid, &note)
                        .await;
                    None
                }
                BatchOutcome::Backoff(why) => {
                    backoffs = backoffs.saturating_add(1);
                    let _ = self
                        .cp
                        .note_event_source_result(&self.rec.config.uuid, &format!("PROBLEM: {why}"))
                        .await;
                    Some(Duration::from_millis(500 << backoffs.min(6)).min(Duration::from_secs(30)))
                }
            };
            if let Some(w) = wait {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = tokio::time::sleep(w) => {},
                }
            }
        }
    }

    /// Receives up to `BatchSize` messages within the batching window (without a window:
    /// what is there after one long poll, topped up while full receives keep coming).
    async fn gather(&self, sqs: &dyn SqsSource) -> Result<Vec<SqsMessage>, ServiceError> {
        let c = &self.rec.config;
        let size = usize::try_from(c.batch_size).unwrap_or(10).max(1);
        let window =
            Duration::from_secs(u64::try_from(c.maximum_batching_window_in_seconds).unwrap_or(0));
        let start = tokio::time::Instant::now();
        let mut got: Vec<SqsMessage> = Vec::new();
        loop {
            let want = u8::try_from((size - got.len()).min(10)).unwrap_or(10);
            let wait = if window.is_zero() {
                if got.is_empty() { 20 } else { 0 }
            } else {
                let left = window.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Ok(got);
                }
                u8::try_from(left.as_secs().clamp(1, 20)).unwrap_or(20)
            };
            let msgs = sqs.receive(&c.event_source_arn, want, wait).await?;
            let n = msgs.len();
            got.extend(msgs);
            if got.len() >= size || (window.is_zero() && n < usize::from(want)) {
                return Ok(got);
            }
        }
    }

    /// Invokes the function with a gathered batch and deletes what it processed; runs to the
    /// end even when the poller is told to stop (the batch is already out of the queue).
    async fn process(&self, sqs: &dyn SqsSource, msgs: Vec<SqsMessage>) -> BatchOutcome {
        let c = &self.rec.config;
        let uuid = c.uuid.as_str();
        if msgs.is_empty() {
            return BatchOutcome::Empty;
        }
        self.metrics
            .esm(uuid, &self.rec.function, EsmOutcome::Polled, msgs.len());
        let region = c.event_source_arn.split(':').nth(3).unwrap_or_default();
        let mut kept = Vec::with_capacity(msgs.len());
        let mut filtered = Vec::new();
        // The event must fit an invoke (6 MB): what does not goes back to the queue at once.
        let mut size = EVENT_OVERHEAD;
        let mut overflow = Vec::new();
        for m in &msgs {
            let record = SqsRecord::of(m, &c.event_source_arn, region);
            let pass = match &self.filters {
                None => true,
                Some(f) => serde_json::to_value(&record)
                    .map(|v| f.matches(&sqs_filter_view(&v)))
                    .unwrap_or(false),
            };
            if !pass {
                filtered.push(m);
                continue;
            }
            let len = serde_json::to_vec(&record).map_or(usize::MAX, |v| v.len() + 1);
            if !kept.is_empty() && size.saturating_add(len) > MAX_SYNC_PAYLOAD_BYTES {
                overflow.push(m);
                continue;
            }
            size = size.saturating_add(len);
            kept.push(record);
        }
        if !overflow.is_empty() {
            let entries: Vec<(String, &str)> = overflow
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("m{i}"), m.receipt_handle.as_str()))
                .collect();
            for chunk in entries.chunks(10) {
                let refs: Vec<(&str, &str)> = chunk.iter().map(|(i, r)| (i.as_str(), *r)).collect();
                if let Err(e) = sqs.release(&c.event_source_arn, &refs).await {
                    tracing::warn!(mapping = %uuid, error = %e, "event source mapping: returning messages past 6 MB failed; they come back after their visibility timeout");
                }
            }
        }
        if !filtered.is_empty() {
            self.metrics.esm(
                uuid,
                &self.rec.function,
                EsmOutcome::Filtered,
                filtered.len(),
            );
            self.delete(sqs, filtered.iter().copied()).await;
        }
        if kept.is_empty() {
            return BatchOutcome::Done { failed: 0 };
        }
        let fref = FunctionRef {
            name: self.rec.function.clone(),
            qualifier: self.rec.qualifier.clone(),
        };
        let version = match self.cp.resolve_invoke_target(&fref, rand::random()).await {
            Ok(v) => v,
            Err(e) => {
                return BatchOutcome::Backoff(format!(
                    "the function cannot be invoked: {}",
                    e.message
                ));
            }
        };
        let payload = match serde_json::to_vec(&SqsEvent { records: &kept }) {
            Ok(p) => p,
            Err(e) => return BatchOutcome::Backoff(format!("building the event failed: {e}")),
        };
        let outcome = self
            .invoker
            .invoke(InvokeRequest {
                request_id: crate::uuid_like(),
                version,
                payload: Bytes::from(payload),
                client_context: None,
                tenant_id: None,
            })
            .await;
        let failed_ids: HashSet<String> = match outcome {
            Ok(out) if out.function_error.is_none() => {
                let rbif = c
                    .function_response_types
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|x| x == "ReportBatchItemFailures"));
                if rbif {
                    let ids: HashSet<&str> = kept.iter().map(|r| r.message_id).collect();
                    match batch_item_failures(&out.payload, &ids) {
                        Some(f) => f,
                        None => ids.iter().map(|s| (*s).to_owned()).collect(),
                    }
                } else {
                    HashSet::new()
                }
            }
            Ok(_) => kept.iter().map(|r| r.message_id.to_owned()).collect(),
            Err(e) if is_backoff(&e) => {
                return BatchOutcome::Backoff(format!(
                    "the function is throttled or unavailable: {}",
                    e.message
                ));
            }
            Err(_) => kept.iter().map(|r| r.message_id.to_owned()).collect(),
        };
        let done: Vec<&SqsMessage> = msgs
            .iter()
            .filter(|m| kept.iter().any(|r| r.message_id == m.message_id))
            .filter(|m| !failed_ids.contains(&m.message_id))
            .collect();
        self.metrics
            .esm(uuid, &self.rec.function, EsmOutcome::Processed, done.len());
        self.metrics.esm(
            uuid,
            &self.rec.function,
            EsmOutcome::Failed,
            failed_ids.len(),
        );
        self.delete(sqs, done.into_iter()).await;
        BatchOutcome::Done {
            failed: failed_ids.len(),
        }
    }

    /// Deletes messages, ten per call; a failure leaves them to SQS's redelivery (logged).
    async fn delete<'m>(&self, sqs: &dyn SqsSource, msgs: impl Iterator<Item = &'m SqsMessage>) {
        let all: Vec<&SqsMessage> = msgs.collect();
        for chunk in all.chunks(10) {
            let entries: Vec<(String, &str)> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("m{i}"), m.receipt_handle.as_str()))
                .collect();
            let refs: Vec<(&str, &str)> = entries.iter().map(|(i, r)| (i.as_str(), *r)).collect();
            match sqs.delete(&self.rec.config.event_source_arn, &refs).await {
                Ok(failed) if failed.is_empty() => {}
                Ok(failed) => {
                    tracing::warn!(mapping = %self.rec.config.uuid, failed = ?failed, "event source mapping: some deletes failed; SQS will deliver those messages again")
                }
                Err(e) => {
                    tracing::warn!(mapping = %self.rec.config.uuid, error = %e, "event source mapping: deleting processed messages failed; SQS will deliver them again")
                }
            }
        }
    }
}

fn is_backoff(e: &LambdaError) -> bool {
    matches!(
        e.kind,
        ErrorKind::TooManyRequests
            | ErrorKind::Service
            | ErrorKind::ResourceNotReady
            | ErrorKind::ResourceNotFound
            | ErrorKind::NoPublishedVersion
    )
}

/// The ids a `ReportBatchItemFailures` answer names, or `None` when the answer makes the whole
/// batch a failure (not JSON, an identifier that is missing, empty, not a string or not in the
/// batch). A null or empty answer, or no/empty `batchItemFailures`, is full success.
fn batch_item_failures(payload: &[u8], ids: &HashSet<&str>) -> Option<HashSet<String>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        #[serde(default)]
        batch_item_failures: Option<Vec<Failure>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Failure {
        #[serde(default)]
        item_identifier: Option<serde_json::Value>,
    }
    let trimmed = payload.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Some(HashSet::new());
    }
    let answer: Answer = serde_json::from_slice(trimmed).ok()?;
    let mut out = HashSet::new();
    for f in answer.batch_item_failures.unwrap_or_default() {
        match f.item_identifier {
            Some(serde_json::Value::String(id)) if !id.is_empty() && ids.contains(id.as_str()) => {
                out.insert(id);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The event an SQS mapping sends: `{"Records": [...]}`.
#[derive(Serialize)]
struct SqsEvent<'a> {
    #[serde(rename = "Records")]
    records: &'a [SqsRecord<'a>],
}

/// One message as Lambda hands it to a function.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SqsRecord<'a> {
    message_id: &'a str,
    receipt_handle: &'a str,
    body: &'a str,
    attributes: &'a BTreeMap<String, String>,
    message_attributes: BTreeMap<&'a str, RecordAttribute<'a>>,
    md5_of_body: &'a str,
    event_source: &'static str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
    aws_region: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordAttribute<'a> {
    string_value: Option<&'a str>,
    binary_value: Option<&'a str>,
    string_list_values: &'a [String],
    binary_list_values: &'a [String],
    data_type: &'a str,
}

impl<'a> SqsRecord<'a> {
    fn of(m: &'a SqsMessage, arn: &'a str, region: &'a str) -> Self {
        Self {
            message_id: &m.message_id,
            receipt_handle: &m.receipt_handle,
            body: &m.body,
            attributes: &m.attributes,
            message_attributes: m
                .message_attributes
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str(),
                        RecordAttribute {
                            string_value: v.string_value.as_deref(),
                            binary_value: v.binary_value.as_deref(),
                            string_list_values: &v.string_list_values,
                            binary_list_values: &v.binary_list_values,
                            data_type: &v.data_type,
                        },
                    )
                })
                .collect(),
            md5_of_body: &m.md5_of_body,
            event_source: "aws:sqs",
            event_source_arn: arn,
            aws_region: region,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_failures_follow_aws_rules() {
        let ids: HashSet<&str> = ["a", "b", "c"].into_iter().collect();
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
        // Full success.
        for ok in [
            &b""[..],
            b"null",
            b"{}",
            br#"{"batchItemFailures":[]}"#,
            br#"{"batchItemFailures":null}"#,
        ] {
            assert_eq!(
                batch_item_failures(ok, &ids),
                Some(HashSet::new()),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
        assert_eq!(
            batch_item_failures(br#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#, &ids),
            Some(set(&["b"]))
        );
        // Whole-batch failure.
        for bad in [
            &b"not json"[..],
            br#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            br#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            br#"{"batchItemFailures":[{"itemId":"a"}]}"#,
            br#"{"batchItemFailures":[{"itemIdentifier":"zz"}]}"#,
            br#"{"batchItemFailures":[{"itemIdentifier":7}]}"#,
            br#"{"batchItemFailures":"a"}"#,
        ] {
            assert_eq!(
                batch_item_failures(bad, &ids),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn records_have_the_sqs_event_shape() {
        let mut attributes = BTreeMap::new();
        attributes.insert("ApproximateReceiveCount".to_owned(), "1".to_owned());
        let mut message_attributes = BTreeMap::new();
        message_attributes.insert(
            "k".to_owned(),
            fleetfn_roles::SqsMessageAttribute {
                data_type: "String".into(),
                string_value: Some("v".into()),
                binary_value: None,
                string_list_values: vec![],
                binary_list_values: vec![],
            },
        );
        let m = SqsMessage {
            message_id: "id-1".into(),
            receipt_handle: "rh".into(),
            body: "hello".into(),
            md5_of_body: "5d41402abc4b2a76b9719d911017c592".into(),
            attributes,
            message_attributes,
        };
        let arn = "arn:aws:sqs:us-east-2:123456789012:q";
        let v = serde_json::to_value(SqsEvent {
            records: &[SqsRecord::of(&m, arn, "us-east-2")],
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Records": [{
                "messageId": "id-1", "receiptHandle": "rh", "body": "hello",
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {"k": {"stringValue": "v", "binaryValue": null,
                    "stringListValues": [], "binaryListValues": [], "dataType": "String"}},
                "md5OfBody": "5d41402abc4b2a76b9719d911017c592",
                "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-2"
            }]})
        );
    }
}
