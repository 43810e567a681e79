//! The Telemetry API (`PUT /2022-07-01/telemetry`) and the hub the agent emits records into.
//!
//! Subscriptions are validated as Lambda Managed Instances validates them (AWS's
//! `telemetry-subscription-schema.json` in aws-lambda-runtime-interface-emulator,
//! `internal/lambda-managed-instances/aws-lambda-rie/internal/telemetry/`), except that the
//! schema versions `2022-07-01` and `2022-12-13` are accepted too (LMI takes `2025-01-29`
//! only): unchanged clients such as the `lambda-extension` crate still send `2022-07-01`, and
//! get records in the shapes they parse (see [`records`]).
//!
//! Until the agent ends init ([`Telemetry::close_subscriptions`]) every record is also kept in
//! a bounded buffer and replayed to each new subscriber, as LMI's relay does, so an extension
//! that subscribes while the function initialises still sees `platform.initStart` and the
//! init logs.

pub(crate) mod delivery;
pub(crate) mod records;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use self::delivery::{Buffering, Destination, Host, Subscriber, TelemetryConnector};
use self::records::{Category, LogsDropped, Shape, TelemetryRecord, TelemetrySubscriptionRecord};

/// Schema versions a subscription may ask for.
pub const SCHEMA_VERSIONS: [&str; 3] = ["2025-01-29", "2022-12-13", "2022-07-01"];

/// Bounds of the subscription's `buffering` (inclusive), and its defaults.
pub const MAX_ITEMS_RANGE: (u64, u64) = (1_000, 10_000);
pub const MAX_BYTES_RANGE: (u64, u64) = (262_144, 1_048_576);
pub const TIMEOUT_MS_RANGE: (u64, u64) = (25, 30_000);
pub const DEFAULT_MAX_ITEMS: usize = 10_000;
pub const DEFAULT_MAX_BYTES: usize = 262_144;
pub const DEFAULT_TIMEOUT_MS: u64 = 1_000;

/// Records kept for late subscribers during init, at most.
pub const INIT_BUFFER_RECORDS: usize = 10_000;
/// Bytes (roughly) kept for late subscribers during init, at most.
pub const INIT_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// The telemetry hub of one environment: its subscribers and what they are sent.
///
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

struct Inner {
    /// Whether [`Telemetry::emit`] has anything to do: init still open (records are buffered)
    /// or at least one subscriber.
    active: AtomicBool,
    state: Mutex<State>,
    connector: RwLock<Arc<dyn TelemetryConnector>>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    subscribers: Vec<Arc<Subscriber>>,
    /// `Some` until subscriptions close.
    init: Option<InitBuffer>,
    closed: bool,
}

#[derive(Default)]
struct InitBuffer {
    records: Vec<(SystemTime, TelemetryRecord)>,
    bytes: usize,
    dropped_records: u64,
    dropped_bytes: u64,
}

impl Telemetry {
    pub(crate) fn new(connector: Arc<dyn TelemetryConnector>) -> Self {
        Self {
            inner: Arc::new(Inner {
                active: AtomicBool::new(true),
                state: Mutex::new(State {
                    subscribers: Vec::new(),
                    init: Some(InitBuffer::default()),
                    closed: false,
                }),
                connector: RwLock::new(connector),
                cancel: CancellationToken::new(),
            }),
        }
    }

    /// Whether records are wanted: init is still open, or an extension subscribed. One atomic
    /// load; check it before building a record on a hot path.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Sends `record`, stamped now, to every subscriber of its type (and keeps it for late
    /// subscribers while init is open). Costs one atomic load when nobody listens.
    #[inline]
    pub fn emit(&self, record: TelemetryRecord) {
        if self.is_active() {
            self.inner.emit_at(SystemTime::now(), record, false);
        }
    }

    /// [`Telemetry::emit`] with the event's own time.
    #[inline]
    pub fn emit_at(&self, time: SystemTime, record: TelemetryRecord) {
        if self.is_active() {
            self.inner.emit_at(time, record, false);
        }
    }

    /// Number of subscribers.
    pub fn subscribers(&self) -> usize {
        self.inner.state.lock().subscribers.len()
    }

    /// The extensions subscribed, with the types they asked for.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.inner
            .state
            .lock()
            .subscribers
            .iter()
            .map(|s| Subscription {
                extension_id: s.extension_id.clone(),
                name: s.name.clone(),
                types: category_names(s.categories),
            })
            .collect()
    }

    /// Replaces how destinations are reached (e.g. from inside the environment's network
    /// namespace). Used for connections opened from now on.
    pub fn set_connector(&self, connector: Arc<dyn TelemetryConnector>) {
        *self.inner.connector.write() = connector;
    }

    /// Ends the init phase: later subscriptions get `403 Telemetry.SubscriptionClosed` (as on
    /// LMI, where subscriptions close once every extension is ready) and the init-phase buffer
    /// is freed. Idempotent.
    pub fn close_subscriptions(&self) {
        let mut st = self.inner.state.lock();
        st.closed = true;
        st.init = None;
        self.inner
            .active
            .store(!st.subscribers.is_empty(), Ordering::Relaxed);
    }

    /// Sends every subscriber what is queued for it now and waits until that was delivered
    /// (or given up on). Bound it with a timeout: a subscriber may not answer at all. Call it
    /// before [`crate::RuntimeApi::shutdown_extensions`] so the last records arrive first.
    pub async fn flush(&self) {
        let subs: Vec<_> = self.inner.state.lock().subscribers.clone();
        let targets: Vec<_> = subs.iter().map(|s| s.request_flush()).collect();
        for (sub, target) in subs.iter().zip(targets) {
            sub.delivered(target).await;
        }
    }

    /// Stops every delivery task (the endpoint shut down).
    pub(crate) fn close(&self) {
        self.inner.cancel.cancel();
        let mut st = self.inner.state.lock();
        st.closed = true;
        st.init = None;
        st.subscribers.clear();
        self.inner.active.store(false, Ordering::Relaxed);
    }

    /// Adds (or replaces) the subscription of extension `extension_id`.
    pub(crate) fn subscribe(
        &self,
        extension_id: &str,
        name: &str,
        req: ValidSubscription,
    ) -> Result<(), Closed> {
        let types = category_names(req.categories);
        {
            let mut st = self.inner.state.lock();
            if st.closed {
                return Err(Closed);
            }
            if let Some(pos) = st
                .subscribers
                .iter()
                .position(|s| s.extension_id == extension_id)
            {
                let old = st.subscribers.remove(pos);
                old.cancel.cancel();
            }
            let sub = Arc::new(Subscriber::new(
                extension_id.to_owned(),
                name.to_owned(),
                req.categories,
                req.shape,
                req.buffering,
                req.destination,
                self.inner.cancel.child_token(),
            ));
            if let Some(init) = &st.init {
                for (time, record) in &init.records {
                    if sub.categories & record.category() as u8 != 0 {
                        sub.push(Bytes::from(records::render(*time, record, sub.shape)), true);
                    }
                }
                if init.dropped_records > 0 {
                    let rec = TelemetryRecord::Platform(records::PlatformEvent::LogsDropped(LogsDropped {
                        reason: "Some init-phase logs were dropped because they exceeded the buffer kept for extensions that subscribe during init".to_owned(),
                        dropped_records: init.dropped_records,
                        dropped_bytes: init.dropped_bytes,
                    }));
                    if sub.categories & Category::Platform as u8 != 0 {
                        sub.push(
                            Bytes::from(records::render(SystemTime::now(), &rec, sub.shape)),
                            true,
                        );
                    }
                }
            }
            st.subscribers.push(Arc::clone(&sub));
            self.inner.active.store(true, Ordering::Relaxed);
            tokio::spawn(delivery::run(sub, Arc::downgrade(&self.inner)));
        }
        tracing::debug!(extension = name, ?types, "telemetry subscription");
        self.emit(TelemetryRecord::Platform(
            records::PlatformEvent::TelemetrySubscription(TelemetrySubscriptionRecord {
                name: name.to_owned(),
                state: "Subscribed".to_owned(),
                types,
            }),
        ));
        Ok(())
    }
}

impl Inner {
    /// `force`: queue even past a subscriber's bound (only `platform.logsDropped`, at most one
    /// per batch taken: dropping it would lose the count it reports).
    fn emit_at(&self, time: SystemTime, record: TelemetryRecord, force: bool) {
        let category = record.category() as u8;
        let mut st = self.state.lock();
        let mut rendered: [Option<Bytes>; 2] = [None, None];
        for sub in &st.subscribers {
            if sub.categories & category == 0 {
                continue;
            }
            let slot = &mut rendered[sub.shape as usize];
            let event = slot
                .get_or_insert_with(|| Bytes::from(records::render(time, &record, sub.shape)))
                .clone();
            sub.push(event, force);
        }
        if let Some(init) = &mut st.init {
            let len = record.approx_len();
            if init.records.len() < INIT_BUFFER_RECORDS && init.bytes + len <= INIT_BUFFER_BYTES {
                init.bytes += len;
                init.records.push((time, record));
            } else {
                init.dropped_records += 1;
                init.dropped_bytes += len as u64;
            }
        }
    }
}

impl Host for Inner {
    fn connector(&self) -> Arc<dyn TelemetryConnector> {
        Arc::clone(&self.connector.read())
    }

    fn dropped(&self, record: LogsDropped) {
        if self.active.load(Ordering::Relaxed) {
            self.emit_at(
                SystemTime::now(),
                TelemetryRecord::Platform(records::PlatformEvent::LogsDropped(record)),
                true,
            );
        }
    }
}

/// One subscription, as [`Telemetry::subscriptions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub extension_id: String,
    pub name: String,
    /// `platform`, `function`, `extension`.
    pub types: Vec<String>,
}

/// Subscriptions are closed (init ended, or the endpoint shut down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

fn category_names(bits: u8) -> Vec<String> {
    [
        (Category::Platform, "platform"),
        (Category::Function, "function"),
        (Category::Extension, "extension"),
    ]
    .into_iter()
    .filter(|(c, _)| bits & *c as u8 != 0)
    .map(|(_, n)| n.to_owned())
    .collect()
}

/// The body of `PUT /2022-07-01/telemetry`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubscribeRequest {
    schema_version: Option<String>,
    types: Option<Vec<String>>,
    buffering: Option<BufferingRequest>,
    destination: Option<DestinationRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BufferingRequest {
    max_items: Option<i64>,
    max_bytes: Option<i64>,
    timeout_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct DestinationRequest {
    protocol: Option<String>,
    #[serde(rename = "URI")]
    uri: Option<String>,
    port: Option<i64>,
}

/// A subscription that passed validation.
#[derive(Debug)]
pub(crate) struct ValidSubscription {
    categories: u8,
    shape: Shape,
    buffering: Buffering,
    destination: Destination,
}

/// Parses and validates a subscription body; `Err` is the `ValidationError` message (every
/// problem found, `; `-separated, as AWS answers e.g. "URI port is not provided; types should
/// not be empty").
pub(crate) fn validate(body: &[u8]) -> Result<ValidSubscription, String> {
    let req: SubscribeRequest =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON: {e}"))?;
    let mut problems = Vec::new();

    let shape = match req.schema_version.as_deref() {
        None => {
            problems.push("schemaVersion is required (2025-01-29)".to_owned());
            Shape::Lmi
        }
        Some("2025-01-29") => Shape::Lmi,
        Some(v) if SCHEMA_VERSIONS.contains(&v) => Shape::Legacy,
        Some(v) => {
            problems.push(format!(
                "schemaVersion {v:?} is not supported; use 2025-01-29 (2022-12-13 and 2022-07-01 are also accepted)"
            ));
            Shape::Lmi
        }
    };

    let mut categories = 0u8;
    match &req.types {
        None => problems.push("types should not be empty".to_owned()),
        Some(types) if types.is_empty() => problems.push("types should not be empty".to_owned()),
        Some(types) => {
            for t in types {
                match t.as_str() {
                    "platform" => categories |= Category::Platform as u8,
                    "function" => categories |= Category::Function as u8,
                    "extension" => categories |= Category::Extension as u8,
                    other => problems.push(format!(
                        "types: {other:?} is not a telemetry type (platform, function, extension)"
                    )),
                }
            }
        }
    }

    let mut buffering = Buffering {
        max_items: DEFAULT_MAX_ITEMS,
        max_bytes: DEFAULT_MAX_BYTES,
        timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
    };
    if let Some(b) = &req.buffering {
        let check =
            |name: &str, v: Option<i64>, (lo, hi): (u64, u64), problems: &mut Vec<String>| {
                let v = v?;
                match u64::try_from(v) {
                    Ok(v) if (lo..=hi).contains(&v) => Some(v),
                    _ => {
                        problems.push(format!(
                            "buffering.{name} must be between {lo} and {hi} (got {v})"
                        ));
                        None
                    }
                }
            };
        if let Some(v) = check("maxItems", b.max_items, MAX_ITEMS_RANGE, &mut problems) {
            buffering.max_items = v as usize;
        }
        if let Some(v) = check("maxBytes", b.max_bytes, MAX_BYTES_RANGE, &mut problems) {
            buffering.max_bytes = v as usize;
        }
        if let Some(v) = check("timeoutMs", b.timeout_ms, TIMEOUT_MS_RANGE, &mut problems) {
            buffering.timeout = Duration::from_millis(v);
        }
    }

    let destination = match &req.destination {
        None => {
            problems.push("destination is required".to_owned());
            None
        }
        Some(d) => match d.protocol.as_deref() {
            Some("HTTP") => http_destination(d.uri.as_deref(), &mut problems),
            Some("TCP") => match d.port.map(u16::try_from) {
                Some(Ok(port)) if port > 0 => Some(Destination::Tcp { port }),
                Some(_) => {
                    problems.push("destination.port must be between 1 and 65535".to_owned());
                    None
                }
                None => {
                    problems.push("destination.port is required with protocol TCP".to_owned());
                    None
                }
            },
            Some(other) => {
                problems.push(format!(
                    "destination.protocol {other:?} is not supported (HTTP or TCP)"
                ));
                None
            }
            None => {
                problems.push("destination.protocol is required (HTTP or TCP)".to_owned());
                None
            }
        },
    };

    match destination {
        Some(destination) if problems.is_empty() => Ok(ValidSubscription {
            categories,
            shape,
            buffering,
            destination,
        }),
        _ => Err(problems.join("; ")),
    }
}

fn http_destination(uri: Option<&str>, problems: &mut Vec<String>) -> Option<Destination> {
    let Some(uri) = uri.filter(|u| !u.is_empty()) else {
        problems.push("destination.URI is required with protocol HTTP".to_owned());
        return None;
    };
    let Ok(parsed) = uri.parse::<http::Uri>() else {
        problems.push(format!("destination.URI {uri:?} is not a valid URI"));
        return None;
    };
    if parsed.scheme_str() != Some("http") {
        problems.push(format!(
            "destination.URI {uri:?} must be http://sandbox.localdomain:PORT/PATH"
        ));
        return None;
    }
    let host = parsed.host().unwrap_or_default();
    if !host.eq_ignore_ascii_case("sandbox.localdomain") && !host.eq_ignore_ascii_case("sandbox") {
        problems.push(format!(
            "destination.URI host must be sandbox.localdomain (got {host:?})"
        ));
        return None;
    }
    let Some(port) = parsed.port_u16().filter(|p| *p > 0) else {
        problems.push("URI port is not provided".to_owned());
        return None;
    };
    let path = parsed
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    Some(Destination::Http {
        port,
        path,
        host: format!("{host}:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `platform.logsDropped` is queued even when the subscriber is at its bound again:
    /// dropping it would lose the count it carries.
    #[test]
    fn logs_dropped_is_queued_past_the_bound() {
        let t = Telemetry::new(Arc::new(delivery::LoopbackConnector));
        let buffering = Buffering {
            max_items: 1000,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(1),
        };
        let sub = Arc::new(Subscriber::new(
            "id".into(),
            "ext".into(),
            Category::Platform as u8 | Category::Function as u8,
            Shape::Lmi,
            buffering,
            Destination::Tcp { port: 9 },
            CancellationToken::new(),
        ));
        t.inner.state.lock().subscribers.push(Arc::clone(&sub));
        for i in 0..2001 {
            t.emit(TelemetryRecord::Function(records::LogLine::Text(format!(
                "{i}"
            ))));
        }
        // 2000 queued (two batches), one dropped.
        let target = sub.request_flush();
        assert_eq!(target, 2000);
        t.inner.dropped(LogsDropped {
            reason: "r".into(),
            dropped_records: 7,
            dropped_bytes: 70,
        });
        assert_eq!(sub.request_flush(), 2001, "the drop report was queued");
        t.emit(TelemetryRecord::Function(records::LogLine::Text(
            "x".into(),
        )));
        assert_eq!(sub.request_flush(), 2001, "ordinary records still are not");
    }
}
