//! The environment's log: every line the runtime writes on stdout or stderr, and the platform
//! lines (`START`, `END`, `REPORT`, init), as JSON records in the environment's own segments of
//! its version's log directory (`fleetfn_logs::SegmentWriter`: rotated, capped per version).
//!
//! Function lines that already are JSON objects (awslambdaric and `lambda_runtime` in JSON
//! mode print those) keep their fields; `timestamp`, `level`, `stream`, `message` and
//! `requestId` are added when missing. Other lines become
//! `{"timestamp","level":"INFO","requestId"?,"message","stream"}`, bytes that are not UTF-8
//! replaced by U+FFFD. A line without a request id is attributed to the environment's only
//! in-flight invoke when there is exactly one. A line longer than [`MAX_LINE_BYTES`] is split
//! (at a character boundary) into records marked `"partial": true`, all but the last.
//!
//! The runtime's pipes are read on the agent's runtime with as little work as possible; the
//! records are built and written on the environment's own writer thread, so a flooding function
//! costs its own writer, and waits for it (back-pressure, bounded in records and bytes), while
//! other environments' writers never wait on it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fleetfn_logs::{DropCounts, LogLimits, SegmentWriter};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Longest line kept whole; longer output is split into several records.
pub const MAX_LINE_BYTES: u64 = 256 * 1024;

/// How long the log writer waits after a batch before writing the next one.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Records buffered between the pipes and the file before the runtime's writes block.
const CHANNEL_DEPTH: usize = 4096;

/// Bytes of function output buffered between the pipes and the file (with [`CHANNEL_DEPTH`]).
const BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// `2026-01-02T03:04:05.678Z`.
pub(crate) fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

enum LogMsg {
    /// A line of runtime output, made into a record by the writer.
    Function {
        line: Vec<u8>,
        stream: &'static str,
        request_id: Option<String>,
        at: jiff::Timestamp,
        partial: bool,
        /// Bytes of the buffer budget it holds.
        permits: u32,
    },
    Record(Value),
    /// An invoke's platform lines, made into records by the writer.
    Invoke {
        request_id: String,
        at: jiff::Timestamp,
        event: InvokeEvent,
    },
    Flush(oneshot::Sender<()>),
}

/// The platform lines of one invoke, as values: the invoke path only queues them; the writer
/// thread builds the records (`platform.start`; `platform.runtimeDone` and `platform.report`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InvokeEvent {
    Start {
        version: String,
    },
    Done {
        /// `success`, `error` or `timeout`.
        status: &'static str,
        duration_ms: f64,
        billed_ms: u64,
        memory_mb: u32,
        max_used_mb: u64,
    },
}

impl InvokeEvent {
    /// Appends its `i`-th record (of [`Self::record_count`]) to `out` as one JSON line (no
    /// newline): the bytes `serde_json` writes for the document [`platform_record`] builds (keys
    /// in sorted order), written directly. `stamp` is the record's time as [`Stamps`] formats it.
    fn encode(&self, i: usize, request_id: &str, stamp: &str, out: &mut Vec<u8>) {
        use std::io::Write;
        let (message_start, kind) = match (self, i) {
            (Self::Start { .. }, _) => ("START", "platform.start"),
            (Self::Done { .. }, 0) => ("END", "platform.runtimeDone"),
            (Self::Done { .. }, _) => ("REPORT", "platform.report"),
        };
        out.extend_from_slice(b"{\"level\":\"INFO\",\"message\":");
        // The message, escaped as a whole when any part needs it (a request id or version
        // with a quote or control character: not ones fleetfn makes).
        let plain = json_plain(request_id)
            && match self {
                Self::Start { version } => json_plain(version),
                Self::Done { .. } => true,
            };
        // Written straight into `out` when nothing needs escaping (the REPORT line's tabs
        // written as their escapes), else into `text` and escaped as a whole.
        let mut text = Vec::new();
        let (message, tab): (&mut Vec<u8>, &str) = if plain {
            out.push(b'"');
            (&mut *out, "\\t")
        } else {
            (&mut text, "\t")
        };
        let _ = match self {
            Self::Start { version } => write!(
                message,
                "{message_start} RequestId: {request_id} Version: {version}"
            ),
            Self::Done { .. } if i == 0 => {
                write!(message, "{message_start} RequestId: {request_id}")
            }
            Self::Done {
                duration_ms,
                billed_ms,
                memory_mb,
                max_used_mb,
                ..
            } => write!(
                message,
                "{message_start} RequestId: {request_id}{tab}Duration: {duration_ms:.2} ms{tab}Billed Duration: {billed_ms} ms{tab}Memory Size: {memory_mb} MB{tab}Max Memory Used: {max_used_mb} MB"
            ),
        };
        if plain {
            out.push(b'"');
        } else {
            push_json_str(out, &String::from_utf8_lossy(&text));
        }
        out.extend_from_slice(b",\"record\":{");
        match (self, i) {
            (Self::Start { version }, _) => {
                out.extend_from_slice(b"\"requestId\":");
                push_json_str(out, request_id);
                out.extend_from_slice(b",\"version\":");
                push_json_str(out, version);
            }
            (Self::Done { status, .. }, 0) => {
                out.extend_from_slice(b"\"requestId\":");
                push_json_str(out, request_id);
                out.extend_from_slice(b",\"status\":");
                push_json_str(out, status);
            }
            (
                Self::Done {
                    status,
                    duration_ms,
                    billed_ms,
                    memory_mb,
                    max_used_mb,
                },
                _,
            ) => {
                let _ = write!(
                    out,
                    "\"metrics\":{{\"billedDurationMs\":{billed_ms},\"durationMs\":"
                );
                let _ = serde_json::to_writer(&mut *out, &((duration_ms * 100.0).round() / 100.0));
                let _ = write!(
                    out,
                    ",\"maxMemoryUsedMB\":{max_used_mb},\"memorySizeMB\":{memory_mb}}},\"requestId\":"
                );
                push_json_str(out, request_id);
                out.extend_from_slice(b",\"status\":");
                push_json_str(out, status);
            }
        }
        out.extend_from_slice(b"},\"requestId\":");
        push_json_str(out, request_id);
        out.extend_from_slice(b",\"stream\":\"platform\",\"timestamp\":");
        push_json_str(out, stamp);
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\"}");
    }

    fn record_count(&self) -> usize {
        match self {
            Self::Start { .. } => 1,
            Self::Done { .. } => 2,
        }
    }
}

/// Whether `serde_json` writes `s` as a string without escaping anything.
fn json_plain(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Appends `s` as a JSON string, as `serde_json` writes it.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if json_plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Formats record times (`2026-01-02T03:04:05.678Z`, what `{:.3}` of a `jiff::Timestamp`
/// writes) from a cached date and time of day: only the milliseconds change within a second.
#[derive(Default)]
pub(crate) struct Stamps {
    second: Option<i64>,
    text: String,
}

impl Stamps {
    pub(crate) fn format(&mut self, at: jiff::Timestamp) -> &str {
        let second = at.as_second();
        let millis = at.subsec_millisecond();
        // `YYYY-MM-DDTHH:MM:SS.mmmZ`; anything else (before 1970, after 9999) formatted whole.
        if self.second != Some(second) || millis < 0 {
            self.text.clear();
            let _ = std::fmt::Write::write_fmt(&mut self.text, format_args!("{at:.3}"));
            self.second = (self.text.len() == 24 && millis >= 0).then_some(second);
            return &self.text;
        }
        let digits = [
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
        ];
        self.text.truncate(20);
        self.text.extend(digits.iter().map(|&d| char::from(d)));
        self.text.push('Z');
        &self.text
    }
}

/// The sending side of an environment's log. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct LogSink {
    tx: Option<mpsc::Sender<LogMsg>>,
    dropped: Arc<AtomicU64>,
    budget: Arc<Semaphore>,
}

impl std::fmt::Debug for LogMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Function { line, stream, .. } => {
                write!(f, "Function({stream}, {} bytes)", line.len())
            }
            Self::Record(v) => write!(f, "Record({v})"),
            Self::Invoke { event, .. } => write!(f, "Invoke({event:?})"),
            Self::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl LogSink {
    /// A sink that discards everything.
    pub(crate) fn disabled() -> Self {
        Self {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
            budget: Arc::new(Semaphore::new(BUFFER_BYTES)),
        }
    }

    /// Starts the writer of environment `env_id` in the version's log directory `dir`.
    pub(crate) fn open(dir: PathBuf, env_id: String, limits: LogLimits) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let dropped = Arc::new(AtomicU64::new(0));
        let budget = Arc::new(Semaphore::new(BUFFER_BYTES));
        let writer = Writer {
            dir,
            env_id,
            limits,
            budget: Arc::clone(&budget),
            dropped: Arc::clone(&dropped),
        };
        let task = tokio::task::spawn_blocking(move || writer.run(rx));
        (
            Self {
                tx: Some(tx),
                dropped,
                budget,
            },
            task,
        )
    }

    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a line of runtime output, waiting for room (back-pressure on the runtime).
    async fn send_line(
        &self,
        line: Vec<u8>,
        stream: &'static str,
        request_id: Option<String>,
        partial: bool,
    ) {
        let Some(tx) = &self.tx else {
            return;
        };
        let permits = u32::try_from(line.len().min(BUFFER_BYTES)).unwrap_or(u32::MAX);
        match self.budget.acquire_many(permits).await {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        let msg = LogMsg::Function {
            line,
            stream,
            request_id,
            at: jiff::Timestamp::now(),
            partial,
            permits,
        };
        if tx.send(msg).await.is_err() {
            self.budget.add_permits(permits as usize);
        }
    }

    /// Queues a record without waiting; counts it as dropped when the queue is full.
    pub(crate) fn try_send(&self, rec: Value) {
        if let Some(tx) = &self.tx
            && tx.try_send(LogMsg::Record(rec)).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues an invoke's platform lines without waiting (counted as dropped when the queue
    /// is full); the time is taken now, the records are built by the writer.
    pub(crate) fn try_send_invoke(&self, request_id: &str, event: InvokeEvent) {
        let Some(tx) = &self.tx else { return };
        let n = event.record_count() as u64;
        let msg = LogMsg::Invoke {
            request_id: request_id.to_owned(),
            at: jiff::Timestamp::now(),
            event,
        };
        if tx.try_send(msg).is_err() {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Waits until everything queued so far is written to the file.
    pub(crate) async fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (ack, done) = oneshot::channel();
            if tx.send(LogMsg::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        }
    }

    /// Platform records dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The environment's writer thread.
struct Writer {
    dir: PathBuf,
    env_id: String,
    limits: LogLimits,
    budget: Arc<Semaphore>,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    /// Writes records on a dedicated thread with plain blocking I/O: one `write` per batch of
    /// queued records, no hop through the async runtime's blocking pool per write.
    fn run(self, mut rx: mpsc::Receiver<LogMsg>) {
        let mut out = match SegmentWriter::open(&self.dir, &self.env_id, self.limits) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), env_id = self.env_id, error = %e, "cannot open the environment log; discarding its lines");
                None
            }
        };
        let mut warned = false;
        let mut line = Vec::with_capacity(4096);
        let mut stamps = Stamps::default();
        // After writing a batch, sleep briefly before looking again: under load many invokes'
        // records then share one wake-up and one write instead of costing one each.
        let mut pending: Option<LogMsg> = None;
        loop {
            let msg = match pending.take() {
                Some(m) => m,
                None => match rx.blocking_recv() {
                    Some(m) => m,
                    None => break,
                },
            };
            let mut acks = Vec::new();
            let mut next = Some(msg);
            while let Some(msg) = next.take() {
                line.clear();
                match msg {
                    LogMsg::Function {
                        line: raw,
                        stream,
                        request_id,
                        at,
                        partial,
                        permits,
                    } => {
                        self.budget.add_permits(permits as usize);
                        encode_function_line(
                            &mut line,
                            &raw,
                            stream,
                            request_id.as_deref(),
                            stamps.format(at),
                            partial,
                        );
                    }
                    LogMsg::Record(rec) => {
                        let _ = serde_json::to_writer(&mut line, &rec);
                    }
                    LogMsg::Invoke {
                        request_id,
                        at,
                        event,
                    } => {
                        // One line each; the last goes out with the others below.
                        let n = event.record_count();
                        let stamp = stamps.format(at);
                        for i in 0..n {
                            line.clear();
                            event.encode(i, &request_id, stamp, &mut line);
                            if i + 1 < n
                                && let Some(w) = out.as_mut()
                                && let Err(e) = w.write_line(&line)
                                && !std::mem::replace(&mut warned, true)
                            {
                                tracing::warn!(dir = %self.dir.display(), env_id = self.env_id, error = %e, "writing the environment log failed");
                            }
                        }
                    }
                    LogMsg::Flush(ack) => acks.push(ack),
                }
                if !line.is_empty()
                    && let Some(w) = out.as_mut()
                    && let Err(e) = w.write_line(&line)
                    && !std::mem::replace(&mut warned, true)
                {
                    tracing::warn!(dir = %self.dir.display(), env_id = self.env_id, error = %e, "writing the environment log failed");
                }
                next = rx.try_recv().ok();
            }
            if let Some(w) = out.as_mut()
                && let Err(e) = w.flush()
                && !std::mem::replace(&mut warned, true)
            {
                tracing::warn!(dir = %self.dir.display(), env_id = self.env_id, error = %e, "flushing the environment log failed");
            }
            let flushed_on_request = !acks.is_empty();
            for ack in acks {
                let _ = ack.send(());
            }
            if !flushed_on_request {
                std::thread::sleep(BATCH_PAUSE);
                pending = rx.try_recv().ok();
            }
        }
        drop(out);
        let lost = self.dropped.load(Ordering::Relaxed);
        if lost > 0 {
            let counts = DropCounts {
                lines: lost,
                last_dropped_at: Some(now_rfc3339()),
                ..DropCounts::default()
            };
            if let Err(e) = fleetfn_logs::record_drops(&self.dir, &counts) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "counting dropped log records failed");
            }
        }
    }
}

/// Request ids of the invokes in flight in an environment, for attributing output lines.
#[derive(Debug, Default)]
pub(crate) struct InFlightIds(Mutex<Ids>);

#[derive(Debug, Default)]
struct Ids {
    active: BTreeSet<String>,
    /// The last invoke to finish when it left none in flight, and when.
    last: Option<(String, std::time::Instant)>,
}

/// Output read this soon after the only invoke finished is still its own: the runtime wrote it
/// before answering, the pipe was read after.
const ATTRIBUTION_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

impl InFlightIds {
    pub(crate) fn insert(&self, id: &str) {
        let mut s = self.0.lock();
        s.active.insert(id.to_owned());
        s.last = None;
    }

    /// Drops `id`, an invoke the runtime never got, without making it the last one.
    pub(crate) fn forget(&self, id: &str) {
        self.0.lock().active.remove(id);
    }

    pub(crate) fn remove(&self, id: &str) {
        let mut s = self.0.lock();
        s.active.remove(id);
        s.last = s
            .active
            .is_empty()
            .then(|| (id.to_owned(), std::time::Instant::now()));
    }

    /// The request id when exactly one invoke is in flight (or none is, and the last one
    /// finished within [`ATTRIBUTION_GRACE`]).
    pub(crate) fn only(&self) -> Option<String> {
        let s = self.0.lock();
        match s.active.len() {
            1 => s.active.iter().next().cloned(),
            0 => s
                .last
                .as_ref()
                .filter(|(_, at)| at.elapsed() < ATTRIBUTION_GRACE)
                .map(|(id, _)| id.clone()),
            _ => None,
        }
    }
}

/// The line the sandbox's init prints when an extension's exit ends the sandbox.
const EXTENSION_EXIT_PREFIX: &[u8] = b"fleetfn-sandbox: extension ";

/// Reads `reader` line by line into `sink` until EOF. With `extension_exit`, a line of the
/// sandbox naming the extension whose exit ended it is published there (and logged too).
pub(crate) async fn pump(
    reader: impl AsyncRead + Unpin,
    stream: &'static str,
    sink: LogSink,
    in_flight: Arc<InFlightIds>,
    extension_exit: Option<tokio::sync::watch::Sender<Option<(String, String)>>>,
    telemetry: Option<fleetfn_runtime_api::Telemetry>,
) {
    let mut reader = BufReader::new(reader);
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut carry: Vec<u8> = Vec::new();
    loop {
        buf.clear();
        buf.append(&mut carry);
        let room = MAX_LINE_BYTES.saturating_sub(buf.len() as u64).max(1);
        let eof = match (&mut reader).take(room).read_until(b'\n', &mut buf).await {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(stream, error = %e, "reading runtime output failed");
                true
            }
        };
        if buf.is_empty() {
            if eof {
                break;
            }
            continue;
        }
        let complete = buf.last() == Some(&b'\n');
        let partial = !complete && buf.len() as u64 >= MAX_LINE_BYTES;
        if partial {
            let cut = utf8_cut(&buf);
            carry.extend_from_slice(&buf[cut..]);
            buf.truncate(cut);
        }
        if let Some(tx) = &extension_exit
            && buf.starts_with(EXTENSION_EXIT_PREFIX)
            && let Some(parsed) =
                fleetfn_sandbox::parse_extension_exit(&String::from_utf8_lossy(&buf))
        {
            tx.send_replace(Some(parsed));
        }
        if let Some(t) = &telemetry
            && t.is_active()
        {
            // Extensions write on their own pipes (`pump_extension`): these lines are the
            // function's (and the sandbox's init's).
            let end = buf
                .iter()
                .rposition(|b| !matches!(b, b'\n' | b'\r'))
                .map_or(0, |i| i + 1);
            if end > 0 {
                let text = String::from_utf8_lossy(&buf[..end]).into_owned();
                t.emit(fleetfn_runtime_api::TelemetryRecord::Function(
                    fleetfn_runtime_api::LogLine::json(text),
                ));
            }
        }
        if sink.enabled() {
            if complete {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
            }
            if !buf.is_empty() {
                let line = std::mem::replace(&mut buf, Vec::with_capacity(1024));
                sink.send_line(line, stream, in_flight.only(), partial)
                    .await;
            }
        }
        if eof {
            break;
        }
    }
}

/// `stream` of an external extension's lines in the function's log.
pub(crate) const EXTENSION_STREAM: &str = "extension";

/// Reads extension `name`'s own output pipe (its stdout and stderr, see
/// `fleetfn_sandbox::SandboxSpec::extension_output`) line by line until EOF, with the same line
/// handling as [`pump`]: each line goes to the function's log (stream [`EXTENSION_STREAM`],
/// never attributed to a request, as Lambda shows extension lines in the function's log
/// stream) and, while telemetry is active, to Telemetry API subscribers as an `extension`
/// record.
pub(crate) async fn pump_extension(
    reader: impl AsyncRead + Unpin,
    name: String,
    sink: LogSink,
    telemetry: fleetfn_runtime_api::Telemetry,
) {
    let mut reader = BufReader::new(reader);
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = std::mem::take(&mut carry);
        let room = MAX_LINE_BYTES.saturating_sub(buf.len() as u64).max(1);
        let eof = match (&mut reader).take(room).read_until(b'\n', &mut buf).await {
            Ok(n) => n == 0,
            Err(e) => {
                tracing::debug!(extension = name, error = %e, "reading extension output failed");
                true
            }
        };
        let partial = buf.last() != Some(&b'\n') && buf.len() as u64 >= MAX_LINE_BYTES;
        if partial {
            let cut = utf8_cut(&buf);
            carry.extend_from_slice(&buf[cut..]);
            buf.truncate(cut);
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if !buf.is_empty() {
            if telemetry.is_active() {
                telemetry.emit(fleetfn_runtime_api::TelemetryRecord::Extension {
                    name: name.clone(),
                    line: fleetfn_runtime_api::LogLine::json(
                        String::from_utf8_lossy(&buf).into_owned(),
                    ),
                });
            }
            sink.send_line(buf, EXTENSION_STREAM, None, partial).await;
        }
        if eof {
            break;
        }
    }
}

/// Where a trailing incomplete UTF-8 sequence starts (`buf.len()` when there is none), so that a
/// split line does not cut a character in two.
fn utf8_cut(buf: &[u8]) -> usize {
    let len = buf.len();
    for back in 1..=len.min(4) {
        let b = buf[len - back];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let need = match b {
            0xF0..=0xF4 => 4,
            0xE0..=0xEF => 3,
            0xC2..=0xDF => 2,
            _ => 1,
        };
        return if need > back { len - back } else { len };
    }
    len
}

/// Appends the record for one line of runtime output to `out`.
pub(crate) fn encode_function_line(
    out: &mut Vec<u8>,
    line: &[u8],
    stream: &str,
    attributed: Option<&str>,
    timestamp: &str,
    partial: bool,
) {
    if !partial
        && line.first() == Some(&b'{')
        && let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(line)
    {
        let rec = complete_json_record(obj, stream, attributed, timestamp);
        let _ = serde_json::to_writer(&mut *out, &rec);
        return;
    }
    // Writing into a Vec cannot fail.
    out.extend_from_slice(b"{\"timestamp\":");
    let _ = serde_json::to_writer(&mut *out, timestamp);
    out.extend_from_slice(b",\"level\":\"INFO\"");
    if let Some(id) = attributed {
        out.extend_from_slice(b",\"requestId\":");
        let _ = serde_json::to_writer(&mut *out, id);
    }
    out.extend_from_slice(b",\"message\":");
    let _ = serde_json::to_writer(&mut *out, &*String::from_utf8_lossy(line));
    out.extend_from_slice(b",\"stream\":");
    let _ = serde_json::to_writer(&mut *out, stream);
    if partial {
        out.extend_from_slice(b",\"partial\":true");
    }
    out.push(b'}');
}

/// A runtime's own JSON line, with what a record needs added when missing.
fn complete_json_record(
    mut obj: Map<String, Value>,
    stream: &str,
    attributed: Option<&str>,
    timestamp: &str,
) -> Value {
    if !obj.contains_key("requestId")
        && let Some(id) = embedded_request_id(&obj).or(attributed.map(str::to_owned))
    {
        obj.insert("requestId".into(), Value::String(id));
    }
    if !obj.contains_key("message")
        && let Some(m) = obj.get("fields").and_then(|f| f.get("message")).cloned()
    {
        obj.insert("message".into(), m);
    }
    if !obj.contains_key("timestamp") {
        obj.insert("timestamp".into(), Value::String(timestamp.into()));
    }
    if !obj.contains_key("level") {
        obj.insert("level".into(), Value::String("INFO".into()));
    }
    if !obj.contains_key("stream") {
        obj.insert("stream".into(), Value::String(stream.into()));
    }
    Value::Object(obj)
}

/// A request id carried elsewhere in a runtime's JSON line: `AWSRequestId`, Powertools
/// Logger's `function_request_id`, or the `lambda_runtime` tracing span (`span.requestId`,
/// `spans[].requestId`).
fn embedded_request_id(obj: &Map<String, Value>) -> Option<String> {
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    str_of(obj.get("AWSRequestId"))
        .or_else(|| str_of(obj.get("function_request_id")))
        .or_else(|| str_of(obj.get("span").and_then(|s| s.get("requestId"))))
        .or_else(|| {
            obj.get("spans")?
                .as_array()?
                .iter()
                .find_map(|s| str_of(s.get("requestId")))
        })
        .or_else(|| str_of(obj.get("fields").and_then(|f| f.get("requestId"))))
        .filter(|s| !s.is_empty())
}

/// A platform record (`platform.start`, `platform.runtimeDone`, `platform.report`,
/// `platform.initStart`, `platform.initReport`).
pub(crate) fn platform_record(
    kind: &str,
    request_id: Option<&str>,
    message: String,
    record: Value,
) -> Value {
    platform_record_at(jiff::Timestamp::now(), kind, request_id, message, record)
}

/// [`platform_record`] stamped `at`.
fn platform_record_at(
    at: jiff::Timestamp,
    kind: &str,
    request_id: Option<&str>,
    message: String,
    record: Value,
) -> Value {
    let mut obj = Map::new();
    obj.insert("timestamp".into(), Value::String(format!("{at:.3}")));
    obj.insert("type".into(), Value::String(kind.into()));
    obj.insert("level".into(), Value::String("INFO".into()));
    if let Some(id) = request_id {
        obj.insert("requestId".into(), Value::String(id.into()));
    }
    obj.insert("message".into(), Value::String(message));
    obj.insert("stream".into(), Value::String("platform".into()));
    obj.insert("record".into(), record);
    Value::Object(obj)
}

/// The `REPORT` line's text (the reference the typed lines are tested against).
#[cfg(test)]
struct ReportText<'a> {
    request_id: &'a str,
    duration_ms: f64,
    billed_ms: u64,
    memory_mb: u32,
    max_used_mb: u64,
}

#[cfg(test)]
impl std::fmt::Display for ReportText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
            self.request_id, self.duration_ms, self.billed_ms, self.memory_mb, self.max_used_mb
        )
    }
}

#[cfg(test)]
fn report_message(
    request_id: &str,
    duration_ms: f64,
    billed_ms: u64,
    memory_mb: u32,
    max_used_mb: u64,
) -> String {
    ReportText {
        request_id,
        duration_ms,
        billed_ms,
        memory_mb,
        max_used_mb,
    }
    .to_string()
}

/// The `platform.report` record's body, as a `Value` (tests compare the typed lines with it).
#[cfg(test)]
fn report_record(
    request_id: &str,
    status: &str,
    duration_ms: f64,
    billed_ms: u64,
    memory_mb: u32,
    max_used_mb: u64,
) -> Value {
    serde_json::json!({
        "requestId": request_id,
        "status": status,
        "metrics": {
            "durationMs": (duration_ms * 100.0).round() / 100.0,
            "billedDurationMs": billed_ms,
            "memorySizeMB": memory_mb,
            "maxMemoryUsedMB": max_used_mb,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TS: &str = "2026-01-01T00:00:00.000Z";

    fn record(line: &[u8], stream: &str, id: Option<&str>, partial: bool) -> Value {
        let mut out = Vec::new();
        encode_function_line(&mut out, line, stream, id, TS, partial);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn plain_lines_are_wrapped() {
        let r = record(b"hello world", "stdout", Some("r1"), false);
        assert_eq!(
            r,
            json!({"timestamp": TS, "level": "INFO", "requestId": "r1", "message": "hello world", "stream": "stdout"})
        );
        let r = record(b"{not json", "stderr", None, false);
        assert_eq!(r["message"], "{not json");
        assert!(r.get("requestId").is_none());
        // Not UTF-8, control characters, quotes: stored as valid JSON, lossily.
        let r = record(b"bad \xff\xfe bytes \x00 \"q\"", "stdout", None, false);
        assert_eq!(r["message"], "bad \u{fffd}\u{fffd} bytes \u{0} \"q\"");
        let r = record(b"{\"a\":1}", "stdout", None, true);
        assert_eq!(
            r["message"], "{\"a\":1}",
            "a piece of a split line is never parsed"
        );
        assert_eq!(r["partial"], true);
    }

    #[test]
    fn json_lines_keep_their_fields() {
        let line = br#"{"timestamp":"2025-01-01T00:00:00Z","level":"WARNING","message":"hi","logger":"root","requestId":"abc"}"#;
        let r = record(line, "stdout", Some("other"), false);
        assert_eq!(r["timestamp"], "2025-01-01T00:00:00Z");
        assert_eq!(r["level"], "WARNING");
        assert_eq!(r["requestId"], "abc");
        assert_eq!(r["logger"], "root");
        assert_eq!(r["stream"], "stdout");
        // lambda_runtime's tracing JSON: no time, message under fields, request id in the span.
        let line = br#"{"level":"INFO","fields":{"message":"working"},"span":{"requestId":"r9","name":"Lambda runtime invoke"}}"#;
        let r = record(line, "stdout", None, false);
        assert_eq!(r["requestId"], "r9");
        assert_eq!(r["message"], "working");
        assert_eq!(r["timestamp"], TS);
        // Powertools Logger: the request id as `function_request_id`, over a guess.
        let line = br#"{"level":"INFO","message":"m","function_request_id":"p7"}"#;
        let r = record(line, "stdout", Some("other"), false);
        assert_eq!(r["requestId"], "p7");
    }

    #[test]
    fn split_points_keep_characters_whole() {
        assert_eq!(utf8_cut(b"abc"), 3);
        assert_eq!(utf8_cut("a\u{e9}".as_bytes()), 3);
        assert_eq!(utf8_cut(&"a\u{e9}".as_bytes()[..2]), 1);
        assert_eq!(utf8_cut(&"a\u{20ac}".as_bytes()[..3]), 1);
        assert_eq!(utf8_cut(&"a\u{1f600}".as_bytes()[..4]), 1);
        assert_eq!(utf8_cut("a\u{1f600}".as_bytes()), 5);
        assert_eq!(
            utf8_cut(b"\xff\xff"),
            2,
            "garbage is left to the lossy conversion"
        );
        assert_eq!(utf8_cut(b""), 0);
    }

    #[test]
    fn lines_are_attributed_to_the_only_invoke() {
        let ids = InFlightIds::default();
        assert_eq!(ids.only(), None);
        ids.insert("a");
        assert_eq!(ids.only().as_deref(), Some("a"));
        ids.insert("b");
        assert_eq!(ids.only(), None, "two in flight: ambiguous");
        ids.remove("a");
        assert_eq!(ids.only().as_deref(), Some("b"));
        ids.remove("b");
        assert_eq!(
            ids.only().as_deref(),
            Some("b"),
            "read just after it finished"
        );
        ids.0.lock().last = Some(("b".into(), std::time::Instant::now() - ATTRIBUTION_GRACE));
        assert_eq!(ids.only(), None);
    }

    #[test]
    fn report_line_format() {
        assert_eq!(
            report_message("r1", 12.345, 13, 2048, 40),
            "REPORT RequestId: r1\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 2048 MB\tMax Memory Used: 40 MB"
        );
        let r = report_record("r1", "success", 12.345, 13, 2048, 40);
        assert_eq!(r["metrics"]["billedDurationMs"], 13);
        assert!(now_rfc3339().ends_with('Z'));
        assert_eq!(now_rfc3339().len(), TS.len());
    }

    fn read_all(dir: &std::path::Path) -> Vec<Value> {
        let mut lines = Vec::new();
        for seg in fleetfn_logs::list_segments(dir).unwrap() {
            for l in std::fs::read_to_string(&seg.path).unwrap().lines() {
                lines.push(serde_json::from_str(l).unwrap());
            }
        }
        lines
    }

    /// The records an invoke event stands for, built as `Value`s the way every other platform
    /// record is.
    fn value_records(event: &InvokeEvent, request_id: &str, at: jiff::Timestamp) -> Vec<Value> {
        match event {
            InvokeEvent::Start { version } => vec![platform_record_at(
                at,
                "platform.start",
                Some(request_id),
                format!("START RequestId: {request_id} Version: {version}"),
                json!({ "requestId": request_id, "version": version }),
            )],
            InvokeEvent::Done {
                status,
                duration_ms,
                billed_ms,
                memory_mb,
                max_used_mb,
            } => vec![
                platform_record_at(
                    at,
                    "platform.runtimeDone",
                    Some(request_id),
                    format!("END RequestId: {request_id}"),
                    json!({ "requestId": request_id, "status": status }),
                ),
                platform_record_at(
                    at,
                    "platform.report",
                    Some(request_id),
                    report_message(
                        request_id,
                        *duration_ms,
                        *billed_ms,
                        *memory_mb,
                        *max_used_mb,
                    ),
                    report_record(
                        request_id,
                        status,
                        *duration_ms,
                        *billed_ms,
                        *memory_mb,
                        *max_used_mb,
                    ),
                ),
            ],
        }
    }

    #[test]
    fn typed_platform_lines_are_the_bytes_of_the_value_records() {
        let at: jiff::Timestamp = "2026-12-03T17:00:00.123456Z".parse().unwrap();
        let events = [
            InvokeEvent::Start {
                version: "7\"q".into(),
            },
            InvokeEvent::Done {
                status: "success",
                duration_ms: 12.345_678,
                billed_ms: 13,
                memory_mb: 2048,
                max_used_mb: 40,
            },
            InvokeEvent::Done {
                status: "timeout",
                duration_ms: 3000.0,
                billed_ms: 3000,
                memory_mb: 128,
                max_used_mb: 0,
            },
        ];
        // Ids that need no escaping (fleetfn's own), and ones that do (with a tab, a backslash
        // before a `t`, a newline, a quote in the version).
        let ids = [
            "3f0c8a52-6d4e-4b7a-9c1e-2b7d9e8f0a13",
            "r-\u{e9}\n1",
            "a\\tb\tc",
        ];
        let stamp = format!("{at:.3}");
        for id in ids {
            for event in &events {
                let want = value_records(event, id, at);
                assert_eq!(event.record_count(), want.len());
                for (i, w) in want.iter().enumerate() {
                    let mut got = Vec::new();
                    event.encode(i, id, &stamp, &mut got);
                    assert_eq!(
                        String::from_utf8(got).unwrap(),
                        serde_json::to_string(w).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn stamps_are_what_jiff_writes_with_millisecond_precision() {
        let mut stamps = Stamps::default();
        // Within a second, across seconds, days and years, before 1970 and past 9999.
        for t in [
            "2026-12-03T17:00:00.123456Z",
            "2026-12-03T17:00:00.999999Z",
            "2026-12-03T17:00:00.000001Z",
            "2026-12-03T17:00:01.5Z",
            "2026-12-03T23:59:59.999Z",
            "2026-12-04T00:00:00Z",
            "2027-01-01T00:00:00.007Z",
            "1969-12-31T23:59:59.250Z",
            "1969-12-31T23:59:59.750Z",
            "9999-12-30T00:00:00.042Z",
            "2026-12-04T00:00:00.010Z",
        ] {
            let at: jiff::Timestamp = t.parse().unwrap();
            assert_eq!(stamps.format(at), format!("{at:.3}"), "{t}");
        }
    }

    #[tokio::test]
    async fn invoke_events_become_the_platform_records_on_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let vdir = dir.path().join("fn").join("1");
        let (sink, task) = LogSink::open(vdir.clone(), "env".into(), LogLimits::default());
        let start = InvokeEvent::Start {
            version: "7".into(),
        };
        let done = InvokeEvent::Done {
            status: "success",
            duration_ms: 12.345,
            billed_ms: 13,
            memory_mb: 2048,
            max_used_mb: 40,
        };
        sink.try_send_invoke("r1", start.clone());
        sink.try_send_invoke("r1", done.clone());
        sink.flush().await;
        let lines = read_all(&vdir);
        assert_eq!(lines.len(), 3, "{lines:?}");
        let at = jiff::Timestamp::now();
        let mut expected = value_records(&start, "r1", at);
        expected.extend(value_records(&done, "r1", at));
        for (line, want) in lines.iter().zip(&expected) {
            let (mut line, mut want) = (line.clone(), want.clone());
            assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
            line["timestamp"] = Value::Null;
            want["timestamp"] = Value::Null;
            assert_eq!(line, want);
        }
        assert_eq!(lines[0]["message"], "START RequestId: r1 Version: 7");
        assert_eq!(lines[1]["type"], "platform.runtimeDone");
        assert_eq!(lines[2]["record"]["metrics"]["durationMs"], 12.35);
        assert_eq!(sink.dropped(), 0);
        drop(sink);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn writer_appends_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let vdir = dir.path().join("fn").join("1");
        let (sink, task) = LogSink::open(vdir.clone(), "env".into(), LogLimits::default());
        let ids = Arc::new(InFlightIds::default());
        ids.insert("only");
        let input: &[u8] = b"one\n{\"level\":\"ERROR\",\"message\":\"two\"}\r\n\nthree";
        pump(input, "stderr", sink.clone(), Arc::clone(&ids), None, None).await;
        sink.try_send(platform_record(
            "platform.start",
            Some("only"),
            "START".into(),
            json!({}),
        ));
        sink.flush().await;
        let lines = read_all(&vdir);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0]["message"], "one");
        assert_eq!(lines[0]["requestId"], "only");
        assert_eq!(lines[1]["level"], "ERROR");
        assert_eq!(lines[2]["message"], "three");
        assert!(lines[2].get("partial").is_none());
        assert_eq!(lines[3]["type"], "platform.start");
        assert_eq!(sink.dropped(), 0);
        drop(sink);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn long_lines_are_split_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let vdir = dir.path().join("fn").join("1");
        let (sink, task) = LogSink::open(vdir.clone(), "env".into(), LogLimits::default());
        let max = usize::try_from(MAX_LINE_BYTES).unwrap();
        // 1 MB of 'é' (2 bytes each) with a 1-byte prefix, so no piece ends on a boundary by luck.
        let mut input = b"x".to_vec();
        input.extend("\u{e9}".repeat(500_000).as_bytes());
        input.extend(b"\nafter\n");
        pump(
            &input[..],
            "stdout",
            sink.clone(),
            Arc::new(InFlightIds::default()),
            None,
            None,
        )
        .await;
        sink.flush().await;
        let lines = read_all(&vdir);
        let pieces = &lines[..lines.len() - 1];
        assert_eq!(pieces.len(), 4, "1 MB in 256 KiB pieces");
        let mut joined = String::new();
        for (i, p) in pieces.iter().enumerate() {
            let m = p["message"].as_str().unwrap();
            assert!(!m.contains('\u{fffd}'), "piece {i} cut a character");
            assert!(m.len() <= max);
            assert_eq!(p.get("partial").is_some(), i + 1 < pieces.len(), "{i}");
            joined.push_str(m);
        }
        assert_eq!(joined.len(), 1_000_001);
        assert_eq!(lines.last().unwrap()["message"], "after");
        drop(sink);
        task.await.unwrap();
    }
}
