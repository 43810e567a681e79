//! The router: picks a Ready environment of the invoked version from the routing table (least in
//! flight, ties broken at random so zones share the load; no lock shared with other versions),
//! sends the invoke to its agent, tries another one (a
//! bounded number of times) when an agent says the environment is saturated, and throttles with
//! a reason when none can take it: concurrency, CPU, memory or disk, each throttle counted under
//! exactly one. Nothing queues and nothing starts here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use fleetfn_contracts::{
    CostDocument, EnvironmentEntry, EnvironmentFailure, EnvironmentsDocument, InstanceEntry,
    InvokeOutcome, InvokeRequest, InvokeStream, Invoker, SeriesDocument, StatusDocument,
    StreamError, StreamPart, StreamingOutcome,
};
use fleetfn_model::{LambdaError, Result};
use fleetfn_proto::{AgentApi, AgentStream, BoxFuture, ClientError, InvokeReply, StreamedReply};
use fleetfn_server::records::version_key;
// The scaler compares busy time with its own tick interval, measured on tokio's clock.
use tokio::time::Instant;

use crate::DataPlane;
use crate::routing::VersionRoutes;
use crate::stats::{ThrottleReason, VersionStats};

/// Agent round trips one invoke may make before it is throttled.
const MAX_TRIES: usize = 4;

/// Decrements an environment's in-flight count and adds the invoke's duration to the version's
/// busy time when the invoke ends, however it ends.
struct InFlight<'a> {
    count: &'a AtomicU32,
    stats: &'a VersionStats,
    started: Instant,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// The reason a throttle is counted under: the one that refused the most environments;
/// ties go to concurrency, then CPU, memory, disk.
pub(crate) fn dominant(refusals: &[u32; ThrottleReason::COUNT]) -> ThrottleReason {
    let mut best = ThrottleReason::Concurrency;
    for r in ThrottleReason::ALL {
        if refusals[r.index()] > refusals[best.index()] {
            best = r;
        }
    }
    best
}

/// [`InFlight`] owned, for a streamed response that outlives the routing call.
struct OwnedInFlight {
    count: Arc<AtomicU32>,
    stats: Arc<VersionStats>,
    started: Instant,
}

impl Drop for OwnedInFlight {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl InFlight<'_> {
    /// Hands the in-flight count over to a guard that owns its counters.
    fn into_owned(self, count: &Arc<AtomicU32>, stats: &Arc<VersionStats>) -> OwnedInFlight {
        let owned = OwnedInFlight {
            count: Arc::clone(count),
            stats: Arc::clone(stats),
            started: self.started,
        };
        std::mem::forget(self);
        owned
    }
}

/// How the router sends an invoke and what it makes of a successful answer: [`Buffered`]
/// ([`Invoker::invoke`]) or [`Streaming`] ([`Invoker::invoke_stream`]). The routing, retries
/// and throttling are the same code for both, compiled once per mode.
trait Mode {
    type Reply: Send;
    /// A streamed answer (never for [`Buffered`]).
    type Stream;
    type Out;

    #[allow(clippy::too_many_arguments)]
    fn send<'a>(
        client: &'a dyn AgentApi,
        deadline: std::time::Duration,
        env_id: &'a str,
        request_id: &'a str,
        payload: bytes::Bytes,
        client_context: Option<&'a str>,
        tenant_id: Option<&'a str>,
    ) -> BoxFuture<'a, std::result::Result<Self::Reply, ClientError>>;

    fn split(reply: Self::Reply) -> std::result::Result<InvokeReply, Self::Stream>;

    fn buffered(outcome: InvokeOutcome) -> Self::Out;

    /// Takes over a streamed answer; `guard` keeps the invoke in flight until it ends, or
    /// until `deadline` (from the guard's start) passes.
    fn streamed(
        plane: &DataPlane,
        function: &str,
        stream: Self::Stream,
        guard: OwnedInFlight,
        deadline: std::time::Duration,
    ) -> Self::Out;
}

struct Buffered;

impl Mode for Buffered {
    type Reply = InvokeReply;
    type Stream = std::convert::Infallible;
    type Out = InvokeOutcome;

    fn send<'a>(
        client: &'a dyn AgentApi,
        deadline: std::time::Duration,
        env_id: &'a str,
        request_id: &'a str,
        payload: bytes::Bytes,
        client_context: Option<&'a str>,
        tenant_id: Option<&'a str>,
    ) -> BoxFuture<'a, std::result::Result<InvokeReply, ClientError>> {
        client.invoke(
            deadline,
            env_id,
            request_id,
            payload,
            client_context,
            tenant_id,
        )
    }

    #[inline]
    fn split(reply: InvokeReply) -> std::result::Result<InvokeReply, Self::Stream> {
        Ok(reply)
    }

    #[inline]
    fn buffered(outcome: InvokeOutcome) -> InvokeOutcome {
        outcome
    }

    fn streamed(
        _: &DataPlane,
        _: &str,
        stream: Self::Stream,
        _: OwnedInFlight,
        _: std::time::Duration,
    ) -> InvokeOutcome {
        match stream {}
    }
}

struct Streaming;

/// Parts buffered between the agent's stream and the API's reader.
const STREAM_BUFFER: usize = 4;

impl Mode for Streaming {
    type Reply = StreamedReply;
    type Stream = AgentStream;
    type Out = StreamingOutcome;

    fn send<'a>(
        client: &'a dyn AgentApi,
        deadline: std::time::Duration,
        env_id: &'a str,
        request_id: &'a str,
        payload: bytes::Bytes,
        client_context: Option<&'a str>,
        tenant_id: Option<&'a str>,
    ) -> BoxFuture<'a, std::result::Result<StreamedReply, ClientError>> {
        client.invoke_stream(
            deadline,
            env_id,
            request_id,
            payload,
            client_context,
            tenant_id,
        )
    }

    fn split(reply: StreamedReply) -> std::result::Result<InvokeReply, AgentStream> {
        match reply {
            StreamedReply::Reply(r) => Ok(r),
            StreamedReply::Stream(s) => Err(s),
        }
    }

    fn buffered(outcome: InvokeOutcome) -> StreamingOutcome {
        StreamingOutcome::Buffered(outcome)
    }

    /// Relays the agent's parts to the caller. The invoke is counted (once), with its
    /// duration and error, and leaves its environment's in-flight count when the agent's
    /// stream ends or `deadline` passes, whichever is first: not when the caller takes the
    /// end, so a caller that stops reading holds the environment no longer than the invoke
    /// may run. At the deadline a stream still being relayed is abandoned (dropping the
    /// agent's stream aborts its request); the end is offered to a slow caller for
    /// [`END_GRACE`] more. The time to the first part is observed.
    fn streamed(
        plane: &DataPlane,
        function: &str,
        stream: AgentStream,
        guard: OwnedInFlight,
        deadline: std::time::Duration,
    ) -> StreamingOutcome {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let metrics = Arc::clone(&plane.cfg.metrics);
        let function = function.to_owned();
        let ends_at = guard.started + deadline;
        let mut parts = stream.parts;
        tokio::spawn(async move {
            let mut guard = Some(guard);
            let mut first = true;
            loop {
                let part = match tokio::time::timeout_at(ends_at, parts.recv()).await {
                    Ok(Some(part)) => part,
                    // The proto client always ends a stream; this is only a safety net.
                    Ok(None) => stream_end(
                        "Runtime.TruncatedResponse",
                        "The response stream ended before its end.",
                    ),
                    // The proto client ends it at the same deadline; a stuck agent does not.
                    Err(_) => stream_end(
                        "Sandbox.Timedout",
                        "The response stream did not end in time.",
                    ),
                };
                if first {
                    first = false;
                    if let Some(g) = &guard {
                        metrics.stream_first_byte(&function, g.started.elapsed());
                    }
                }
                if let StreamPart::End(e) = &part {
                    if let Some(g) = guard.take() {
                        finish_stream(g, e.is_some());
                    }
                    drop(parts);
                    let _ = tokio::time::timeout(END_GRACE, tx.send(part)).await;
                    return;
                }
                // A reader gone away (not an error), or one that stopped reading until the
                // deadline (a timeout), abandons the stream: dropping `parts` aborts the
                // agent's request.
                let timed_out = match tokio::time::timeout_at(ends_at, tx.send(part)).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => false,
                    Err(_) => true,
                };
                drop(parts);
                if let Some(g) = guard.take() {
                    finish_stream(g, timed_out);
                }
                return;
            }
        });
        StreamingOutcome::Streamed(InvokeStream {
            content_type: stream.content_type,
            parts: rx,
        })
    }
}

/// How long the end of a stream waits for a caller that stopped reading, once the invoke is
/// over (it no longer holds its environment then).
const END_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The end of a stream the router makes itself.
/// `error_type` and `message` are constants that need no JSON escaping.
fn stream_end(error_type: &'static str, message: &'static str) -> StreamPart {
    let doc = format!(r#"{{"errorMessage":"{message}","errorType":"{error_type}"}}"#);
    StreamPart::End(Some(StreamError {
        error_type: error_type.to_owned(),
        payload: bytes::Bytes::from(doc),
    }))
}

/// Counts a streamed invoke that ended (`error` when it ended in an error, timed out or was
/// abandoned) and takes it out of flight.
fn finish_stream(guard: OwnedInFlight, error: bool) {
    let stats = &guard.stats;
    let elapsed = guard.started.elapsed();
    stats.invocations.fetch_add(1, Ordering::Relaxed);
    let billed = elapsed.as_micros().div_ceil(1000);
    stats
        .billed_ms
        .fetch_add(u64::try_from(billed).unwrap_or(u64::MAX), Ordering::Relaxed);
    if error {
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
    stats.metrics.invoked(elapsed, error);
    stats.durations.record(elapsed);
    drop(guard);
}

impl DataPlane {
    /// The version's routes and counters: lock-free once the version has them (its first
    /// invoke or the scaler's first tick creates them, under the state's lock).
    fn version_routes(&self, vkey: &str) -> Arc<VersionRoutes> {
        match self.routes.get(vkey) {
            Some(r) => r,
            None => self.state.write().version_routes(vkey),
        }
    }

    async fn route<M: Mode>(&self, req: InvokeRequest) -> Result<M::Out> {
        let v = &req.version;
        let vkey = version_key(&v.function, &v.version);
        let routes = self.version_routes(&vkey);
        let stats = &routes.stats;
        let mut first = Some(routes.candidates(&v.publish_hash, &[]));
        let request_id = req.request_id.as_str();
        // The agent answers a timeout itself; this only guards against a stuck agent.
        let deadline = std::time::Duration::from_secs(u64::from(v.config.timeout) + 10);
        let mut last_error: Option<String> = None;
        let mut refusals = [0u32; ThrottleReason::COUNT];
        let mut capacity = 0u32;
        let mut seen = 0usize;
        let mut tried: Vec<String> = Vec::new();
        // A second round only when the first met environments that had just gone away (a
        // rollout or scale-in drained them): the fresh list has their replacements.
        for round in 0..2 {
            let candidates = match first.take() {
                Some(c) => c,
                None => self
                    .version_routes(&vkey)
                    .candidates(&v.publish_hash, &tried),
            };
            seen += candidates.len();
            let mut went_away = false;
            for env in &candidates {
                if env.in_flight.load(Ordering::Relaxed) >= env.max_concurrency {
                    refusals[ThrottleReason::Concurrency.index()] += 1;
                    capacity += env.max_concurrency;
                    continue;
                }
                if tried.len() >= MAX_TRIES {
                    break;
                }
                tried.push(env.env_id.clone());
                env.in_flight.fetch_add(1, Ordering::Relaxed);
                let guard = InFlight {
                    count: &env.in_flight,
                    stats,
                    started: Instant::now(),
                };
                let reply = M::send(
                    &*env.instance.client,
                    deadline,
                    &env.env_id,
                    request_id,
                    req.payload.clone(),
                    req.client_context.as_deref(),
                    req.tenant_id.as_deref(),
                )
                .await;
                let reply = match reply.map(M::split) {
                    Ok(Ok(reply)) => Ok(reply),
                    Ok(Err(stream)) => {
                        self.cfg.metrics.router_try(crate::metrics::TRY_DONE);
                        let guard = guard.into_owned(&env.in_flight, &routes.stats);
                        return Ok(M::streamed(self, &v.function, stream, guard, deadline));
                    }
                    Err(e) => Err(e),
                };
                self.cfg
                    .metrics
                    .router_try(crate::metrics::try_outcome(&reply));
                match reply {
                    Ok(InvokeReply::Done {
                        payload,
                        function_error,
                    }) => {
                        stats.invocations.fetch_add(1, Ordering::Relaxed);
                        let elapsed = guard.started.elapsed();
                        let billed = elapsed.as_micros().div_ceil(1000);
                        stats.billed_ms.fetch_add(
                            u64::try_from(billed).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                        if function_error.is_some() {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        stats.metrics.invoked(elapsed, function_error.is_some());
                        stats.durations.record(elapsed);
                        return Ok(M::buffered(InvokeOutcome {
                            payload,
                            function_error,
                        }));
                    }
                    Ok(InvokeReply::Rejected { reason, .. }) => {
                        refusals[reason.index()] += 1;
                        capacity += env.max_concurrency;
                        went_away |= !self.is_routable(&vkey, &env.env_id);
                    }
                    Ok(InvokeReply::Gone) => went_away = true,
                    Ok(InvokeReply::Invalid { reason }) => {
                        return Err(LambdaError::invalid(format!(
                            "The invoke could not be passed to the runtime: {reason}"
                        )));
                    }
                    // Never reached the agent: another environment may take it.
                    Err(e @ fleetfn_proto::ClientError::Unreachable { .. }) => {
                        tracing::warn!(error = %e, env = %env.env_id, "agent unreachable");
                        last_error = Some(e.to_string());
                        went_away = true;
                    }
                    // It may have run: retrying elsewhere could run it twice.
                    Err(e) => {
                        tracing::warn!(error = %e, env = %env.env_id, "invoke to agent failed");
                        stats.invocations.fetch_add(1, Ordering::Relaxed);
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        let elapsed = guard.started.elapsed();
                        stats.metrics.invoked(elapsed, true);
                        stats.durations.record(elapsed);
                        return Err(LambdaError::service(format!(
                            "The execution environment of {}:{} on instance {} did not answer (the instance may have been lost); the invoke may or may not have run: {e}",
                            v.function, v.version, env.instance.id
                        )));
                    }
                }
            }
            if round == 0 && (!went_away || tried.len() >= MAX_TRIES) {
                break;
            }
        }
        let refused: u32 = refusals.iter().sum();
        if refused == 0
            && let Some(e) = last_error
        {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats.metrics.undeliverable();
            return Err(LambdaError::service(format!(
                "fleetfn could not deliver the invoke to an execution environment of {}:{}: {e}",
                v.function, v.version
            )));
        }
        let reason = dominant(&refusals);
        stats.throttles[reason.index()].fetch_add(1, Ordering::Relaxed);
        stats.metrics.throttled(reason);
        let capped = if stats.capped.load(Ordering::Relaxed) {
            " The capacity provider cannot add execution environments right now (MaxVCpuCount or instance capacity reached) until capacity frees up."
        } else {
            ""
        };
        // What keeps capacity from being added, when launches for the version's capacity
        // provider are failing (no instance capacity, an EC2 error).
        let launching = v
            .capacity_provider
            .as_deref()
            .and_then(|cp| {
                self.state
                    .read()
                    .launch_failures
                    .get(cp)
                    .map(|f| f.message.clone())
            })
            .map(|m| format!(" Instance launches for its capacity provider are failing: {m}"))
            .unwrap_or_default();
        let label = reason.label();
        let message = if seen == 0 {
            format!(
                "Rate Exceeded. Version {} of {} has no Ready execution environment right now; the request was not queued ({label} throttle).{capped}",
                v.version, v.function
            )
        } else if reason == ThrottleReason::Concurrency {
            format!(
                "Rate Exceeded. All {refused} execution environments of {}:{} tried are at their concurrency limit ({capacity} concurrent invokes in total); the request was not queued ({label} throttle).{capped}",
                v.function, v.version
            )
        } else {
            format!(
                "Rate Exceeded. The execution environments of {}:{} refused the invoke to protect the invokes in flight: {} of {refused} are over their {} ceiling; the request was not queued ({label} throttle).{capped}",
                v.function,
                v.version,
                refusals[reason.index()],
                label.to_lowercase()
            )
        };
        Err(LambdaError::throttled(
            "ConcurrentInvocationLimitExceeded",
            1,
            format!("{message}{launching}"),
        ))
    }

    /// Whether the router still routes to an environment of the version (it is known and
    /// Ready).
    fn is_routable(&self, vkey: &str, env_id: &str) -> bool {
        self.routes.get(vkey).is_some_and(|r| r.is_ready(env_id))
    }
}

impl Invoker for DataPlane {
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<InvokeOutcome>> + Send + '_>> {
        Box::pin(self.route::<Buffered>(req))
    }

    fn invoke_stream(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<StreamingOutcome>> + Send + '_>> {
        Box::pin(self.route::<Streaming>(req))
    }

    fn status(&self) -> Pin<Box<dyn Future<Output = Result<StatusDocument>> + Send + '_>> {
        Box::pin(self.status_document())
    }

    fn cost(
        &self,
        since: jiff::Timestamp,
    ) -> Pin<Box<dyn Future<Output = Result<CostDocument>> + Send + '_>> {
        Box::pin(self.cost_document(since))
    }

    fn series(
        &self,
        function: &str,
        versions: Option<&[String]>,
        since: Option<u64>,
    ) -> SeriesDocument {
        self.series_document(function, versions, since)
    }

    fn environments(&self) -> EnvironmentsDocument {
        let s = self.state.read();
        let mut environments: Vec<EnvironmentEntry> = s
            .envs
            .values()
            .map(|e| {
                let (function, version) = e
                    .version_key
                    .split_once('/')
                    .unwrap_or((&e.version_key, ""));
                EnvironmentEntry {
                    environment_id: e.env_id.clone(),
                    function_name: function.to_string(),
                    version: crate::status::display_version(version),
                    instance_id: e.instance.id.clone(),
                    zone: e.instance.zone.clone(),
                    capacity_provider: e.instance.capacity_provider.clone(),
                    state: e.state,
                    routed: s.is_routed(e),
                    in_flight: e.in_flight.load(Ordering::Relaxed),
                    max_concurrency: e.max_concurrency,
                    publish_hash: e.publish_hash.clone(),
                    memory_bytes: e.memory_bytes,
                    cpu_usage_ns: e.cpu_usage_ns,
                    failure: e.failure.as_ref().map(|f| EnvironmentFailure {
                        reason_code: f.reason_code.clone(),
                        reason: f.reason.clone(),
                    }),
                }
            })
            .collect();
        environments.sort_by(|a, b| a.environment_id.cmp(&b.environment_id));
        let mut instances: Vec<InstanceEntry> = s
            .instances
            .values()
            .map(|i| InstanceEntry {
                instance_id: i.id.clone(),
                zone: i.zone.clone(),
                capacity_provider: i.capacity_provider.clone(),
                instance_type: i.instance_type.name.clone(),
                state: i.state,
            })
            .collect();
        instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        EnvironmentsDocument {
            environments,
            instances: Some(instances),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_is_counted_under_the_most_frequent_refusal() {
        assert_eq!(dominant(&[0, 0, 0, 0]), ThrottleReason::Concurrency);
        assert_eq!(dominant(&[1, 2, 0, 0]), ThrottleReason::Cpu);
        assert_eq!(dominant(&[0, 1, 1, 3]), ThrottleReason::Disk);
        // Ties go to concurrency, then CPU, memory, disk.
        assert_eq!(dominant(&[2, 2, 2, 2]), ThrottleReason::Concurrency);
        assert_eq!(dominant(&[0, 1, 1, 0]), ThrottleReason::Cpu);
        assert_eq!(dominant(&[0, 0, 4, 4]), ThrottleReason::Memory);
    }
}
