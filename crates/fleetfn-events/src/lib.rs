//! Asynchronous invocation: [`AsyncInvocations`] stores `InvocationType=Event` invokes in the
//! store's durable queue (`fleetfn_store::Queue`, committed before the 202) and runs the
//! dispatcher that delivers them through the same router as synchronous invokes, at least once:
//! each event is leased (the lease kept alive while it runs, so a server that dies loses its
//! events to the next claimer), throttles and service errors go back to the queue with
//! exponential backoff until `MaximumEventAgeInSeconds`, function errors are retried
//! `MaximumRetryAttempts` times with AWS's spacing ([`policy`]), and the outcome is recorded at
//! the configured destination and dead-letter queue ([`record`], [`sink`]).
#![forbid(unsafe_code)]

pub mod policy;
pub mod record;
pub mod sink;
pub mod sources;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetfn_contracts::{AsyncInvoker, AsyncQueueStatus, EventRequest, InvokeRequest, Invoker};
use fleetfn_metrics::{DropReason, Metrics};
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::destination::{Target, parse_dead_letter, parse_destination};
use fleetfn_model::types::FunctionEventInvokeConfig;
use fleetfn_model::{ErrorKind, LambdaError, Result};
use fleetfn_server::{ControlPlane, DEFAULT_EVENT_AGE_SECS, DEFAULT_RETRY_ATTEMPTS};
use fleetfn_store::{Leased, NewItem, Queue, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

pub use policy::Policy;
use record::{Condition, DestinationRecord, Payload, RequestContext, ResponseContext};
pub use sink::{AwsSink, Sink, SinkError};

/// The queue name of asynchronous invokes in the store.
pub const QUEUE: &str = "async";

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct AsyncConfig {
    pub policy: Policy,
    /// How long a claimed event is held before another server may take it; renewed every
    /// third of it while the event runs.
    pub lease: Duration,
    /// Events delivered at once by this server.
    pub max_in_flight: usize,
    /// How often an idle dispatcher looks for events other servers stored (its own wake it).
    pub idle_poll: Duration,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            lease: Duration::from_secs(60),
            max_in_flight: 128,
            idle_poll: Duration::from_millis(250),
        }
    }
}

/// What the queue keeps beside an event's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    function: String,
    #[serde(default)]
    qualifier: Option<String>,
    #[serde(default)]
    client_context: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    /// Invokes that reached the function.
    #[serde(default)]
    invokes: u32,
    /// Throttles and service errors so far (for the backoff).
    #[serde(default)]
    throttles: u32,
}

/// What a finished invoke answered, for its record.
struct Response {
    executed_version: String,
    function_error: Option<String>,
    payload: Bytes,
}

/// What becomes of a claimed event.
enum Decision {
    /// Done (delivered, or recorded as failed): deleted.
    Done,
    /// Back to the queue until `at_ms`.
    Later { header: Header, at_ms: i64 },
}

/// The asynchronous invocation queue and its dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct AsyncInvocations {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Arc<dyn Queue>,
    cp: ControlPlane,
    invoker: Arc<dyn Invoker>,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    cfg: AsyncConfig,
    wake: Notify,
}

impl std::fmt::Debug for AsyncInvocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncInvocations")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch: the wall clock at this process's first call, advanced by
/// tokio's clock since (so tests run the dispatcher under paused time; the stored times stay
/// comparable across servers, whose clocks agree as far as their wall clocks do).
pub(crate) fn now_ms() -> i64 {
    static BASE: std::sync::OnceLock<(i64, tokio::time::Instant)> = std::sync::OnceLock::new();
    let (wall, at) = BASE.get_or_init(|| {
        (
            jiff::Timestamp::now().as_millisecond(),
            tokio::time::Instant::now(),
        )
    });
    wall + ms(at.elapsed())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn store_err(e: StoreError) -> LambdaError {
    LambdaError::service(format!("the asynchronous invocation queue: {e}"))
}

impl AsyncInvocations {
    pub fn new(
        queue: Arc<dyn Queue>,
        cp: ControlPlane,
        invoker: Arc<dyn Invoker>,
        sink: Arc<dyn Sink>,
        metrics: Arc<Metrics>,
        cfg: AsyncConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                queue,
                cp,
                invoker,
                sink,
                metrics,
                cfg,
                wake: Notify::new(),
            }),
        }
    }

    /// Runs the dispatcher until `stop`. Events in flight then are left to their leases.
    pub fn spawn(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.run(stop).await })
    }
}

impl Inner {
    async fn store_event(&self, req: EventRequest) -> Result<()> {
        let header = Header {
            function: req.function,
            qualifier: req.qualifier,
            client_context: req.client_context,
            tenant_id: req.tenant_id,
            invokes: 0,
            throttles: 0,
        };
        let now = now_ms();
        self.queue
            .enqueue(NewItem {
                id: req.request_id,
                queue: QUEUE.to_owned(),
                header: serde_json::to_vec(&header).unwrap_or_default(),
                body: req.payload.to_vec(),
                enqueued_ms: now,
                available_ms: now,
            })
            .await
            .map_err(store_err)?;
        self.metrics.async_received(&header.function);
        self.wake.notify_one();
        Ok(())
    }

    /// Claims and delivers events until `stop`. The events in flight are tasks of this loop:
    /// at `stop` each puts its event back (available at once, to this server's successor or
    /// another server) unless it finishes first; if the loop is dropped instead (the process
    /// dies), their leases run out and another server takes them then.
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.cfg.max_in_flight.max(1)));
        let lease = ms(self.cfg.lease);
        let mut failures = 0u32;
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            // Wait for a free slot before claiming: a claimed event starts at once.
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = stop.cancelled() => break,
            };
            let limit = (slots.available_permits() + 1).min(32);
            let now = now_ms();
            let claimed = match self.queue.claim(QUEUE, now, lease, limit).await {
                Ok(c) => {
                    failures = 0;
                    c
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "async dispatcher: claiming events failed");
                    drop(first);
                    let wait = Duration::from_millis(100 << failures.min(6));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {},
                        () = stop.cancelled() => break,
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                drop(first);
                let next = self.queue.next_available(QUEUE, now).await.ok().flatten();
                let wait = next.map_or(self.cfg.idle_poll, |at| {
                    Duration::from_millis(u64::try_from(at - now).unwrap_or(0))
                        .min(self.cfg.idle_poll)
                });
                tokio::select! {
                    () = tokio::time::sleep(wait) => {},
                    () = self.wake.notified() => {},
                    () = stop.cancelled() => break,
                }
                continue;
            }
            let mut permit = Some(first);
            for item in claimed {
                // `limit` was within the free slots, so this waits only for a finishing one.
                let p = match permit.take() {
                    Some(p) => p,
                    None => match slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let me = self.clone();
                let stop = stop.clone();
                tasks.spawn(async move {
                    me.handle(item, stop).await;
                    drop(p);
                });
            }
        }
        // Stopping: the tasks put their events back; bounded, so shutdown never hangs here.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }

    /// Runs one claimed event to its decision, renewing its lease meanwhile, and applies it;
    /// at `stop` puts it back as it was.
    async fn handle(&self, item: Leased, stop: CancellationToken) {
        let renew = async {
            let every = self.cfg.lease / 3;
            loop {
                tokio::time::sleep(every).await;
                let until = now_ms() + ms(self.cfg.lease);
                match self.queue.extend(&item.id, &item.token, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(event = %item.id, "async event: lease lost while it ran (another server may deliver it too)");
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        tracing::warn!(event = %item.id, error = %e, "async event: renewing its lease failed")
                    }
                }
            }
        };
        let decision = tokio::select! {
            d = self.decide(&item) => d,
            () = renew => return,
            () = stop.cancelled() => {
                tracing::info!(event = %item.id, "async event: put back at shutdown (it may have run: it will be delivered again)");
                let _ = self.queue.release(&item.id, &item.token, item.header.clone(), now_ms()).await;
                return;
            }
        };
        let applied = match decision {
            Decision::Done => self.queue.ack(&item.id, &item.token).await,
            Decision::Later { header, at_ms } => {
                let header = serde_json::to_vec(&header).unwrap_or_default();
                self.queue
                    .release(&item.id, &item.token, header, at_ms)
                    .await
            }
        };
        match applied {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(event = %item.id, "async event: its lease had passed to another server before it finished")
            }
            Err(e) => {
                tracing::warn!(event = %item.id, error = %e, "async event: updating the queue failed; it will be delivered again when its lease ends")
            }
        }
    }

    async fn decide(&self, item: &Leased) -> Decision {
        let mut h: Header = match serde_json::from_slice(&item.header) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(event = %item.id, error = %e, "async event dropped: its stored header is unreadable");
                self.metrics.async_dropped("", DropReason::Unreadable);
                return Decision::Done;
            }
        };
        let now = now_ms();
        let age = now.saturating_sub(item.enqueued_ms).max(0);
        let cfg = match self
            .cp
            .event_invoke_config(&h.function, h.qualifier.as_deref())
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(event = %item.id, error = %e, "async event: reading its config failed; retrying later");
                return self.later(h, now);
            }
        };
        let max_age_ms = cfg
            .as_ref()
            .and_then(|c| c.maximum_event_age_in_seconds)
            .unwrap_or(DEFAULT_EVENT_AGE_SECS)
            * 1000;
        let max_retries = cfg
            .as_ref()
            .and_then(|c| c.maximum_retry_attempts)
            .unwrap_or(DEFAULT_RETRY_ATTEMPTS);
        if age >= max_age_ms {
            self.fail(item, &h, cfg.as_ref(), Condition::EventAgeExceeded, None)
                .await;
            return Decision::Done;
        }
        let fref = FunctionRef {
            name: h.function.clone(),
            qualifier: h.qualifier.clone(),
        };
        let version = match self.cp.resolve_invoke_target(&fref, rand::random()).await {
            Ok(v) => v,
            Err(e) if e.kind == ErrorKind::ResourceNotFound => {
                tracing::warn!(event = %item.id, function = %h.function, qualifier = ?h.qualifier, reason = %e.message, "async event dropped: the function is gone");
                self.metrics
                    .async_dropped(&h.function, DropReason::FunctionNotFound);
                return Decision::Done;
            }
            Err(e) => {
                tracing::debug!(event = %item.id, error = %e, "async event: not invokable yet");
                return self
                    .later_or_expire(item, h, cfg.as_ref(), now, max_age_ms)
                    .await;
            }
        };
        let dead_letter = version
            .config
            .dead_letter_config
            .as_ref()
            .and_then(|d| d.target_arn.clone());
        let executed_version = version.version.clone();
        self.metrics
            .async_attempt(&h.function, Duration::from_millis(age.unsigned_abs()));
        let outcome = self
            .invoker
            .invoke(InvokeRequest {
                request_id: item.id.clone(),
                version,
                payload: Bytes::from(item.body.clone()),
                client_context: h.client_context.clone(),
                tenant_id: h.tenant_id.clone(),
            })
            .await;
        let response = match outcome {
            Ok(out) => Response {
                executed_version,
                function_error: out.function_error,
                payload: out.payload,
            },
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::TooManyRequests
                        | ErrorKind::Service
                        | ErrorKind::ResourceNotReady
                        | ErrorKind::NoPublishedVersion
                ) =>
            {
                tracing::debug!(event = %item.id, error = %e, "async event: throttled or not delivered; back to the queue");
                return self
                    .later_or_expire(item, h, cfg.as_ref(), now, max_age_ms)
                    .await;
            }
            // Refused for what it carries: a failure of this attempt, like a function error.
            Err(e) => Response {
                executed_version,
                function_error: Some("Unhandled".into()),
                payload: Bytes::from(
                    serde_json::to_vec(&InvokeFailure {
                        error_type: e.kind.type_name(),
                        error_message: &e.message,
                    })
                    .unwrap_or_default(),
                ),
            },
        };
        h.invokes += 1;
        if response.function_error.is_none() {
            self.succeed(item, &h, cfg.as_ref(), &response).await;
            return Decision::Done;
        }
        if i64::from(h.invokes) > max_retries {
            self.fail(
                item,
                &h,
                cfg.as_ref(),
                Condition::RetriesExhausted,
                Some((&response, dead_letter.as_deref())),
            )
            .await;
            return Decision::Done;
        }
        let at_ms = now_ms() + ms(self.cfg.policy.retry_delay(h.invokes));
        if at_ms - item.enqueued_ms >= max_age_ms {
            self.fail(
                item,
                &h,
                cfg.as_ref(),
                Condition::EventAgeExceeded,
                Some((&response, dead_letter.as_deref())),
            )
            .await;
            return Decision::Done;
        }
        Decision::Later { header: h, at_ms }
    }

    /// Back to the queue after a throttle, unless the backoff would outlive the event.
    async fn later_or_expire(
        &self,
        item: &Leased,
        h: Header,
        cfg: Option<&FunctionEventInvokeConfig>,
        now: i64,
        max_age_ms: i64,
    ) -> Decision {
        let d = self.later(h, now);
        if let Decision::Later { header, at_ms } = &d
            && at_ms - item.enqueued_ms >= max_age_ms
        {
            self.fail(item, header, cfg, Condition::EventAgeExceeded, None)
                .await;
            return Decision::Done;
        }
        d
    }

    fn later(&self, mut h: Header, now: i64) -> Decision {
        h.throttles = h.throttles.saturating_add(1);
        let wait = self.cfg.policy.backoff(h.throttles, rand::random());
        Decision::Later {
            header: h,
            at_ms: now + ms(wait),
        }
    }

    fn function_arn(&self, h: &Header) -> String {
        self.cp
            .scope()
            .qualified_function_arn(&h.function, h.qualifier.as_deref().unwrap_or("$LATEST"))
    }

    async fn succeed(
        &self,
        item: &Leased,
        h: &Header,
        cfg: Option<&FunctionEventInvokeConfig>,
        response: &Response,
    ) {
        let Some(dest) = cfg
            .and_then(|c| c.destination_config.as_ref())
            .and_then(|d| d.on_success.as_ref())
            .and_then(|d| d.destination.as_deref())
        else {
            return;
        };
        let arn = self.function_arn(h);
        let rec = DestinationRecord {
            version: "1.0",
            timestamp: record::timestamp(jiff::Timestamp::now()),
            request_context: RequestContext {
                request_id: &item.id,
                function_arn: &arn,
                condition: Condition::Success,
                approximate_invoke_count: h.invokes,
            },
            request_payload: Payload::of(&item.body),
            response_context: Some(ResponseContext {
                status_code: 200,
                executed_version: &response.executed_version,
                function_error: None,
            }),
            response_payload: Some(
                (!response.payload.is_empty()).then(|| Payload::of(&response.payload)),
            ),
        };
        self.send_record(h, dest, &rec).await;
    }

    /// Records a failed event: the OnFailure destination and the dead-letter queue (each when
    /// configured), then counts it dropped.
    async fn fail(
        &self,
        item: &Leased,
        h: &Header,
        cfg: Option<&FunctionEventInvokeConfig>,
        condition: Condition,
        response: Option<(&Response, Option<&str>)>,
    ) {
        let reason = match condition {
            Condition::EventAgeExceeded => DropReason::EventAgeExceeded,
            _ => DropReason::RetriesExhausted,
        };
        let on_failure = cfg
            .and_then(|c| c.destination_config.as_ref())
            .and_then(|d| d.on_failure.as_ref())
            .and_then(|d| d.destination.as_deref());
        let arn = self.function_arn(h);
        if let Some(dest) = on_failure {
            let rec = DestinationRecord {
                version: "1.0",
                timestamp: record::timestamp(jiff::Timestamp::now()),
                request_context: RequestContext {
                    request_id: &item.id,
                    function_arn: &arn,
                    condition,
                    approximate_invoke_count: h.invokes,
                },
                request_payload: Payload::of(&item.body),
                response_context: response.map(|(r, _)| ResponseContext {
                    status_code: 200,
                    executed_version: &r.executed_version,
                    function_error: r.function_error.as_deref(),
                }),
                response_payload: response
                    .map(|(r, _)| (!r.payload.is_empty()).then(|| Payload::of(&r.payload))),
            };
            self.send_record(h, dest, &rec).await;
        }
        let dead_letter = match response {
            Some((_, dlq)) => dlq.map(str::to_owned),
            None => self.dead_letter_of(h).await,
        };
        if let Some(dlq) = dead_letter {
            let message = response
                .and_then(|(r, _)| record::error_message(&r.payload))
                .unwrap_or_else(|| format!("{condition:?}"));
            let message = record::truncate(message, 1024);
            let body = String::from_utf8_lossy(&item.body);
            let attrs: [(&str, &str); 3] = [
                ("RequestID", &item.id),
                ("ErrorCode", "200"),
                ("ErrorMessage", &message),
            ];
            let sent = match parse_dead_letter(&dlq) {
                Ok(Target::Sqs(arn)) => self.retrying(|| self.sink.sqs(&arn, &body, &attrs)).await,
                Ok(Target::Sns(arn)) => self.retrying(|| self.sink.sns(&arn, &body, &attrs)).await,
                Ok(_) | Err(_) => Err(format!("{dlq} is not an SQS queue or SNS topic")),
            };
            if let Err(e) = sent {
                tracing::warn!(event = %item.id, function = %h.function, dead_letter = %dlq, error = %e, "async event: sending it to the dead-letter queue failed");
                self.metrics.dead_letter_error(&h.function);
            }
        }
        tracing::warn!(event = %item.id, function = %h.function, reason = ?reason, invokes = h.invokes, "async event dropped");
        self.metrics.async_dropped(&h.function, reason);
    }

    /// The dead-letter queue of the version the event would run on now (for events that
    /// expired before an invoke).
    async fn dead_letter_of(&self, h: &Header) -> Option<String> {
        let fref = FunctionRef {
            name: h.function.clone(),
            qualifier: h.qualifier.clone(),
        };
        let v = self.cp.resolve_invoke_target(&fref, 0.0).await.ok()?;
        v.config
            .dead_letter_config
            .as_ref()
            .and_then(|d| d.target_arn.clone())
    }

    async fn send_record(&self, h: &Header, dest: &str, rec: &DestinationRecord<'_>) {
        let json = serde_json::to_string(rec).unwrap_or_default();
        let arn = rec.request_context.function_arn;
        let sent = match parse_destination(dest, self.cp.scope()) {
            Ok(Target::Sqs(q)) => self.retrying(|| self.sink.sqs(&q, &json, &[])).await,
            Ok(Target::Sns(t)) => self.retrying(|| self.sink.sns(&t, &json, &[])).await,
            Ok(Target::EventBus(b)) => {
                let detail_type = rec.request_context.condition.detail_type();
                let resources = [arn];
                self.retrying(|| self.sink.event_bus(&b, detail_type, &json, &resources))
                    .await
            }
            Ok(Target::Function(f)) => self
                .store_event(EventRequest {
                    request_id: uuid_like(),
                    function: f.name,
                    qualifier: f.qualifier,
                    payload: Bytes::from(json.clone()),
                    client_context: None,
                    tenant_id: None,
                })
                .await
                .map_err(|e| e.message),
            Err(e) => Err(e.message),
        };
        if let Err(e) = sent {
            tracing::warn!(function = %h.function, destination = %dest, error = %e, "async event: delivering its record failed");
            self.metrics.destination_delivery_failed(&h.function);
        }
    }

    /// Sends with up to three tries on transient errors (0.2 s, then 1 s apart).
    async fn retrying<'a, F>(&'a self, send: F) -> std::result::Result<(), String>
    where
        F: Fn() -> sink::BoxFuture<'a, std::result::Result<(), SinkError>>,
    {
        let mut waits = [Duration::from_millis(200), Duration::from_secs(1)].into_iter();
        loop {
            match send().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => match waits.next() {
                    Some(w) => tokio::time::sleep(w).await,
                    None => return Err(e.to_string()),
                },
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// The error document of an invoke the router refused for what it carried.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InvokeFailure<'a> {
    error_type: &'a str,
    error_message: &'a str,
}

/// A random version 4 UUID from the thread's CSPRNG (the request id of a record sent to a
/// Lambda destination, and of a mapping's batch), as the API makes request ids.
pub(crate) fn uuid_like() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

impl AsyncInvoker for AsyncInvocations {
    fn enqueue(&self, req: EventRequest) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(self.inner.store_event(req))
    }

    fn queue_status(&self) -> Pin<Box<dyn Future<Output = Result<AsyncQueueStatus>> + Send + '_>> {
        Box::pin(async move {
            let now = now_ms();
            let s = self
                .inner
                .queue
                .stats(QUEUE, now)
                .await
                .map_err(store_err)?;
            Ok(AsyncQueueStatus {
                depth: s.depth,
                in_flight: s.leased,
                oldest_age_seconds: s
                    .oldest_enqueued_ms
                    .map(|t| (now - t).max(0) as f64 / 1000.0),
            })
        })
    }
}

#[cfg(test)]
mod tests;
