//! The typed Telemetry API records (schema `2025-01-29`, with the `2022-07-01`/`2022-12-13`
//! shapes for subscribers that asked for those) and their rendering as one JSON event
//! `{"time","type","record"}`.
//!
//! Field names follow AWS's schema reference and the records of AWS's own Lambda Managed
//! Instances implementation (aws-lambda-runtime-interface-emulator,
//! `internal/lambda-managed-instances/interop/events_api.go`). Subscribers on an older schema
//! version get what clients written against it parse: `initializationType` `on-demand` (LMI's
//! `lambda-managed-instances` is unknown to them, e.g. to the `lambda-extension` crate, whose
//! parser then rejects the whole batch), `platform.report` metrics with the integer
//! `billedDurationMs`/`memorySizeMB`/`maxMemoryUsedMB` they require, and JSON log lines as text.

use std::time::SystemTime;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// `initializationType` of every init record on Lambda Managed Instances.
pub const INITIALIZATION_TYPE: &str = "lambda-managed-instances";

/// `initializationType` for subscribers on a schema older than `2025-01-29`.
const LEGACY_INITIALIZATION_TYPE: &str = "on-demand";

/// One telemetry record, handed to [`Telemetry::emit`](crate::Telemetry::emit).
#[derive(Debug, Clone, PartialEq)]
pub enum TelemetryRecord {
    /// A platform event (subscription type `platform`).
    Platform(PlatformEvent),
    /// A line the function wrote to stdout/stderr (subscription type `function`).
    Function(LogLine),
    /// A line an extension wrote to stdout/stderr (subscription type `extension`).
    Extension {
        /// The extension's name. Not part of AWS's record (which is the line itself); kept for
        /// whoever reads records in-process.
        name: String,
        line: LogLine,
    },
}

impl TelemetryRecord {
    pub(crate) fn category(&self) -> Category {
        match self {
            TelemetryRecord::Platform(_) => Category::Platform,
            TelemetryRecord::Function(_) => Category::Function,
            TelemetryRecord::Extension { .. } => Category::Extension,
        }
    }

    /// The `type` of the event carrying this record.
    pub fn event_type(&self) -> &'static str {
        match self {
            TelemetryRecord::Platform(p) => p.event_type(),
            TelemetryRecord::Function(_) => "function",
            TelemetryRecord::Extension { .. } => "extension",
        }
    }

    /// A rough size for the bound of the init-phase buffer.
    pub(crate) fn approx_len(&self) -> usize {
        match self {
            TelemetryRecord::Platform(_) => 256,
            TelemetryRecord::Function(l) | TelemetryRecord::Extension { line: l, .. } => {
                64 + l.len()
            }
        }
    }
}

/// The three subscription types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    Platform = 1,
    Function = 2,
    Extension = 4,
}

/// One log line of the function or of an extension.
#[derive(Debug, Clone)]
pub enum LogLine {
    /// A text line (the function's log format is `Text`): the record is the string.
    Text(String),
    /// A line that is one JSON value (log format `JSON`): the record is that value, as Lambda
    /// delivers structured logs. Build it with [`LogLine::json`].
    Json(Box<RawValue>),
}

impl LogLine {
    /// `line` as a [`LogLine::Json`] if it is one JSON value, else as [`LogLine::Text`].
    pub fn json(line: String) -> LogLine {
        match serde_json::from_str::<Box<RawValue>>(&line) {
            Ok(raw) => LogLine::Json(raw),
            Err(_) => LogLine::Text(line),
        }
    }

    fn len(&self) -> usize {
        self.as_str().len()
    }

    fn as_str(&self) -> &str {
        match self {
            LogLine::Text(s) => s,
            LogLine::Json(r) => r.get(),
        }
    }
}

impl PartialEq for LogLine {
    fn eq(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (LogLine::Text(_), LogLine::Text(_)) | (LogLine::Json(_), LogLine::Json(_))
        ) && self.as_str() == other.as_str()
    }
}

/// The platform events fleetfn emits.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PlatformEvent {
    /// `platform.initStart`
    InitStart(InitStart),
    /// `platform.initRuntimeDone`
    InitRuntimeDone(InitRuntimeDone),
    /// `platform.initReport`
    InitReport(InitReport),
    /// `platform.start`
    Start(Start),
    /// `platform.runtimeDone`
    RuntimeDone(RuntimeDone),
    /// `platform.report`
    Report(Report),
    /// `platform.extension`: an extension's state at the end of init.
    Extension(ExtensionRecord),
    /// `platform.telemetrySubscription` (emitted by this crate on each subscription).
    TelemetrySubscription(TelemetrySubscriptionRecord),
    /// `platform.logsDropped` (emitted by this crate when a subscriber falls behind).
    LogsDropped(LogsDropped),
}

impl PlatformEvent {
    /// The event `type`, e.g. `platform.initStart`.
    pub fn event_type(&self) -> &'static str {
        match self {
            PlatformEvent::InitStart(_) => "platform.initStart",
            PlatformEvent::InitRuntimeDone(_) => "platform.initRuntimeDone",
            PlatformEvent::InitReport(_) => "platform.initReport",
            PlatformEvent::Start(_) => "platform.start",
            PlatformEvent::RuntimeDone(_) => "platform.runtimeDone",
            PlatformEvent::Report(_) => "platform.report",
            PlatformEvent::Extension(_) => "platform.extension",
            PlatformEvent::TelemetrySubscription(_) => "platform.telemetrySubscription",
            PlatformEvent::LogsDropped(_) => "platform.logsDropped",
        }
    }
}

/// `phase` of the init records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitPhase {
    Init,
    Invoke,
}

/// `status` of init and invoke records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Success,
    Error,
    Failure,
    Timeout,
}

/// The X-Ray trace context of a record (`type` is always `X-Amzn-Trace-Id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub span_id: Option<String>,
    /// The `X-Amzn-Trace-Id` header value (`Root=...;Parent=...;Sampled=...`).
    pub value: String,
}

impl TraceContext {
    /// A trace context for the `X-Amzn-Trace-Id` value `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            span_id: None,
            value: value.into(),
        }
    }
}

impl Serialize for TraceContext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            span_id: Option<&'a str>,
            #[serde(rename = "type")]
            kind: &'static str,
            value: &'a str,
        }
        Wire {
            span_id: self.span_id.as_deref(),
            kind: "X-Amzn-Trace-Id",
            value: &self.value,
        }
        .serialize(s)
    }
}

/// A named span of a record (e.g. `responseLatency`, `responseDuration`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub name: String,
    #[serde(serialize_with = "timestamp")]
    pub start: SystemTime,
    pub duration_ms: f64,
}

/// `platform.initStart`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitStart {
    pub phase: InitPhase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_version_arn: Option<String>,
    pub function_name: String,
    pub function_version: String,
    /// The environment's id (AWS: the log stream name).
    pub instance_id: String,
    /// The environment's memory limit in bytes.
    pub instance_max_memory: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
}

/// `platform.initRuntimeDone`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitRuntimeDone {
    pub phase: InitPhase,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
}

/// `platform.initReport`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitReport {
    pub phase: InitPhase,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    pub metrics: InitReportMetrics,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<Span>,
}

/// `metrics` of `platform.initReport`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitReportMetrics {
    pub duration_ms: f64,
}

/// `platform.start`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
}

/// `platform.runtimeDone`
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDone {
    pub request_id: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<RuntimeDoneMetrics>,
    pub spans: Vec<Span>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TraceContext>,
}

/// `metrics` of `platform.runtimeDone`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDoneMetrics {
    pub duration_ms: f64,
    pub produced_bytes: u64,
}

/// `platform.report`
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub request_id: String,
    pub status: Status,
    pub error_type: Option<String>,
    pub metrics: ReportMetrics,
    pub spans: Vec<Span>,
    pub tracing: Option<TraceContext>,
}

/// `metrics` of `platform.report`. On LMI only `durationMs` is defined; the others are sent
/// when set, and filled in for subscribers on an older schema, which require them
/// (`billedDurationMs` = the duration rounded up, memory figures 0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReportMetrics {
    pub duration_ms: f64,
    pub billed_duration_ms: Option<u64>,
    pub memory_size_mb: Option<u64>,
    pub max_memory_used_mb: Option<u64>,
    pub init_duration_ms: Option<f64>,
}

/// `platform.extension`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionRecord {
    pub name: String,
    /// `Ready`, `Registered`, `InitError`, ...
    pub state: String,
    /// The events it registered for, e.g. `["SHUTDOWN"]`.
    pub events: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

/// `platform.telemetrySubscription`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySubscriptionRecord {
    pub name: String,
    /// `Subscribed`
    pub state: String,
    pub types: Vec<String>,
}

/// `platform.logsDropped`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsDropped {
    pub reason: String,
    pub dropped_records: u64,
    pub dropped_bytes: u64,
}

/// The schema version a subscriber asked for decides a few shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `2025-01-29` (Lambda Managed Instances).
    Lmi,
    /// `2022-07-01` / `2022-12-13`.
    Legacy,
}

/// `record` with `initializationType` in front.
#[derive(Serialize)]
struct WithInitType<'a, T: Serialize> {
    #[serde(rename = "initializationType")]
    initialization_type: &'static str,
    #[serde(flatten)]
    record: &'a T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportWire<'a> {
    request_id: &'a str,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    metrics: ReportMetricsWire,
    #[serde(skip_serializing_if = "<[Span]>::is_empty")]
    spans: &'a [Span],
    #[serde(skip_serializing_if = "Option::is_none")]
    tracing: Option<&'a TraceContext>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportMetricsWire {
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    billed_duration_ms: Option<u64>,
    #[serde(rename = "memorySizeMB", skip_serializing_if = "Option::is_none")]
    memory_size_mb: Option<u64>,
    #[serde(rename = "maxMemoryUsedMB", skip_serializing_if = "Option::is_none")]
    max_memory_used_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    init_duration_ms: Option<f64>,
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.wire(Shape::Lmi).serialize(s)
    }
}

impl Report {
    fn wire(&self, shape: Shape) -> ReportWire<'_> {
        let m = self.metrics;
        let metrics = match shape {
            Shape::Lmi => ReportMetricsWire {
                duration_ms: m.duration_ms,
                billed_duration_ms: m.billed_duration_ms,
                memory_size_mb: m.memory_size_mb,
                max_memory_used_mb: m.max_memory_used_mb,
                init_duration_ms: m.init_duration_ms,
            },
            Shape::Legacy => ReportMetricsWire {
                duration_ms: m.duration_ms,
                billed_duration_ms: Some(
                    m.billed_duration_ms
                        .unwrap_or_else(|| m.duration_ms.max(0.0).ceil() as u64),
                ),
                memory_size_mb: Some(m.memory_size_mb.unwrap_or(0)),
                max_memory_used_mb: Some(m.max_memory_used_mb.unwrap_or(0)),
                init_duration_ms: m.init_duration_ms,
            },
        };
        ReportWire {
            request_id: &self.request_id,
            status: self.status,
            error_type: self.error_type.as_deref(),
            metrics,
            spans: &self.spans,
            tracing: self.tracing.as_ref(),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a, R: Serialize> {
    time: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    record: R,
}

/// A record as the subscriber's schema wants it.
enum Wire<'a> {
    Init(WithInitType<'a, PlatformEventRef<'a>>),
    Report(ReportWire<'a>),
    Plain(&'a PlatformEvent),
    Line(LineWire<'a>),
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Wire::Init(w) => w.serialize(s),
            Wire::Report(w) => w.serialize(s),
            Wire::Plain(w) => w.serialize(s),
            Wire::Line(w) => w.serialize(s),
        }
    }
}

struct PlatformEventRef<'a>(&'a PlatformEvent);

impl Serialize for PlatformEventRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

enum LineWire<'a> {
    Text(&'a str),
    Raw(&'a RawValue),
}

impl Serialize for LineWire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LineWire::Text(t) => s.serialize_str(t),
            LineWire::Raw(r) => r.serialize(s),
        }
    }
}

/// Renders one event `{"time","type","record"}` for a subscriber of `shape`.
pub(crate) fn render(time: SystemTime, record: &TelemetryRecord, shape: Shape) -> Vec<u8> {
    let time = format_time(time);
    let init_type = match shape {
        Shape::Lmi => INITIALIZATION_TYPE,
        Shape::Legacy => LEGACY_INITIALIZATION_TYPE,
    };
    let wire = match record {
        TelemetryRecord::Platform(
            p @ (PlatformEvent::InitStart(_)
            | PlatformEvent::InitRuntimeDone(_)
            | PlatformEvent::InitReport(_)),
        ) => Wire::Init(WithInitType {
            initialization_type: init_type,
            record: &PlatformEventRef(p),
        }),
        TelemetryRecord::Platform(PlatformEvent::Report(r)) => Wire::Report(r.wire(shape)),
        TelemetryRecord::Platform(p) => Wire::Plain(p),
        TelemetryRecord::Function(line) | TelemetryRecord::Extension { line, .. } => {
            Wire::Line(match (line, shape) {
                (LogLine::Json(raw), Shape::Lmi) => LineWire::Raw(raw),
                (line, _) => LineWire::Text(line.as_str()),
            })
        }
    };
    serde_json::to_vec(&Envelope {
        time: &time,
        kind: record.event_type(),
        record: wire,
    })
    // Every type above serializes infallibly (no maps with non-string keys, no NaN checks in
    // serde_json's writer).
    .unwrap_or_default()
}

/// `2006-01-02T15:04:05.000Z`, the timestamp format of every telemetry event.
pub(crate) fn format_time(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

fn timestamp<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}
