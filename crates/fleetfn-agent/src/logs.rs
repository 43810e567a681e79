//! The environment's log: every line the runtime writes on stdout or stderr, and the platform
//! lines (`START`, `END`, `REPORT`, init), as JSON objects appended to one file.
//!
//! Function lines that already are JSON objects (awslambdaric and `lambda_runtime` in JSON
//! mode print those) keep their fields; `timestamp`, `level`, `stream`, `message` and
//! `requestId` are added when missing. Other lines become
//! `{"timestamp","level":"INFO","requestId"?,"message","stream"}`. A line without a request id
//! is attributed to the environment's only in-flight invoke when there is exactly one.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Longest line kept whole; longer output is split into several records.
pub const MAX_LINE_BYTES: u64 = 256 * 1024;

/// How long the log writer waits after a batch before writing the next one.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Records buffered between the pipes and the file before the runtime's writes block.
const CHANNEL_DEPTH: usize = 4096;

/// `2026-01-02T03:04:05.678Z`.
pub(crate) fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

enum LogMsg {
    Record(Value),
    Flush(oneshot::Sender<()>),
}

/// The sending side of an environment's log file. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct LogSink {
    tx: Option<mpsc::Sender<LogMsg>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Record(v) => write!(f, "Record({v})"),
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
        }
    }

    /// Starts the writer task appending to `path` (created with its parent directories).
    pub(crate) fn open(path: PathBuf) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let task = tokio::task::spawn_blocking(move || write_loop(path, rx));
        (
            Self {
                tx: Some(tx),
                dropped: Arc::new(AtomicU64::new(0)),
            },
            task,
        )
    }

    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record, waiting for room (back-pressure on the runtime's output).
    pub(crate) async fn send(&self, rec: Value) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(LogMsg::Record(rec)).await;
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

/// Appends records to the file on a dedicated thread with plain blocking I/O: one `write`
/// per batch of queued records, no hop through the async runtime's blocking pool per write.
fn write_loop(path: PathBuf, mut rx: mpsc::Receiver<LogMsg>) {
    use std::io::Write as _;
    let open = || -> std::io::Result<std::fs::File> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    };
    let mut out = match open() {
        Ok(f) => Some(std::io::BufWriter::with_capacity(64 * 1024, f)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the environment log; discarding its lines");
            None
        }
    };
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
            match msg {
                LogMsg::Record(rec) => {
                    if let Some(w) = out.as_mut() {
                        let written = serde_json::to_writer(&mut *w, &rec)
                            .map_err(std::io::Error::from)
                            .and_then(|()| w.write_all(b"\n"));
                        if let Err(e) = written {
                            tracing::warn!(path = %path.display(), error = %e, "writing the environment log failed");
                        }
                    }
                }
                LogMsg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        if let Some(w) = out.as_mut()
            && let Err(e) = w.flush()
        {
            tracing::warn!(path = %path.display(), error = %e, "flushing the environment log failed");
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
    if let Some(w) = out.as_mut() {
        let _ = w.flush();
    }
}

/// Request ids of the invokes in flight in an environment, for attributing output lines.
#[derive(Debug, Default)]
pub(crate) struct InFlightIds(Mutex<BTreeSet<String>>);

impl InFlightIds {
    pub(crate) fn insert(&self, id: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(id.to_owned());
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(id);
        }
    }

    /// The request id when exactly one invoke is in flight.
    pub(crate) fn only(&self) -> Option<String> {
        let s = self.0.lock().ok()?;
        if s.len() == 1 {
            s.iter().next().cloned()
        } else {
            None
        }
    }
}

/// Reads `reader` line by line into `sink` until EOF.
pub(crate) async fn pump(
    reader: impl AsyncRead + Unpin,
    stream: &'static str,
    sink: LogSink,
    in_flight: Arc<InFlightIds>,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(stream, error = %e, "reading runtime output failed");
                break;
            }
        }
        if !sink.enabled() {
            continue;
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf.is_empty() {
            continue;
        }
        let rec = function_record(&buf, stream, in_flight.only(), now_rfc3339());
        sink.send(rec).await;
    }
}

/// The record for one line of runtime output.
pub(crate) fn function_record(
    line: &[u8],
    stream: &str,
    attributed: Option<String>,
    timestamp: String,
) -> Value {
    if line.first() == Some(&b'{')
        && let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(line)
    {
        if !obj.contains_key("requestId")
            && let Some(id) = embedded_request_id(&obj).or(attributed)
        {
            obj.insert("requestId".into(), Value::String(id));
        }
        if !obj.contains_key("message")
            && let Some(m) = obj.get("fields").and_then(|f| f.get("message")).cloned()
        {
            obj.insert("message".into(), m);
        }
        if !obj.contains_key("timestamp") {
            obj.insert("timestamp".into(), Value::String(timestamp));
        }
        if !obj.contains_key("level") {
            obj.insert("level".into(), Value::String("INFO".into()));
        }
        if !obj.contains_key("stream") {
            obj.insert("stream".into(), Value::String(stream.into()));
        }
        return Value::Object(obj);
    }
    let mut obj = Map::new();
    obj.insert("timestamp".into(), Value::String(timestamp));
    obj.insert("level".into(), Value::String("INFO".into()));
    if let Some(id) = attributed {
        obj.insert("requestId".into(), Value::String(id));
    }
    obj.insert(
        "message".into(),
        Value::String(String::from_utf8_lossy(line).into_owned()),
    );
    obj.insert("stream".into(), Value::String(stream.into()));
    Value::Object(obj)
}

/// A request id carried elsewhere in a runtime's JSON line: `AWSRequestId`, or the
/// `lambda_runtime` tracing span (`span.requestId`, `spans[].requestId`).
fn embedded_request_id(obj: &Map<String, Value>) -> Option<String> {
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    str_of(obj.get("AWSRequestId"))
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
    let mut obj = Map::new();
    obj.insert("timestamp".into(), Value::String(now_rfc3339()));
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

/// The `REPORT` line's text.
pub(crate) fn report_message(
    request_id: &str,
    duration_ms: f64,
    billed_ms: u64,
    memory_mb: u32,
    max_used_mb: u64,
) -> String {
    format!(
        "REPORT RequestId: {request_id}\tDuration: {duration_ms:.2} ms\tBilled Duration: {billed_ms} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {max_used_mb} MB"
    )
}

/// The `platform.report` record's body.
pub(crate) fn report_record(
    request_id: &str,
    status: &str,
    duration_ms: f64,
    billed_ms: u64,
    memory_mb: u32,
    max_used_mb: u64,
) -> Value {
    json!({
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

    const TS: &str = "2026-01-01T00:00:00.000Z";

    #[test]
    fn plain_lines_are_wrapped() {
        let r = function_record(b"hello world", "stdout", Some("r1".into()), TS.into());
        assert_eq!(
            r,
            json!({"timestamp": TS, "level": "INFO", "requestId": "r1", "message": "hello world", "stream": "stdout"})
        );
        let r = function_record(b"{not json", "stderr", None, TS.into());
        assert_eq!(r["message"], "{not json");
        assert!(r.get("requestId").is_none());
    }

    #[test]
    fn json_lines_keep_their_fields() {
        let line = br#"{"timestamp":"2025-01-01T00:00:00Z","level":"WARNING","message":"hi","logger":"root","requestId":"abc"}"#;
        let r = function_record(line, "stdout", Some("other".into()), TS.into());
        assert_eq!(r["timestamp"], "2025-01-01T00:00:00Z");
        assert_eq!(r["level"], "WARNING");
        assert_eq!(r["requestId"], "abc");
        assert_eq!(r["logger"], "root");
        assert_eq!(r["stream"], "stdout");
        // lambda_runtime's tracing JSON: no time, message under fields, request id in the span.
        let line = br#"{"level":"INFO","fields":{"message":"working"},"span":{"requestId":"r9","name":"Lambda runtime invoke"}}"#;
        let r = function_record(line, "stdout", None, TS.into());
        assert_eq!(r["requestId"], "r9");
        assert_eq!(r["message"], "working");
        assert_eq!(r["timestamp"], TS);
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

    #[tokio::test]
    async fn writer_appends_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("env.log");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"old\":1}\n").unwrap();
        let (sink, task) = LogSink::open(path.clone());
        let ids = Arc::new(InFlightIds::default());
        ids.insert("only");
        let input: &[u8] = b"one\n{\"level\":\"ERROR\",\"message\":\"two\"}\r\n\nthree";
        pump(input, "stderr", sink.clone(), Arc::clone(&ids)).await;
        sink.try_send(platform_record(
            "platform.start",
            Some("only"),
            "START".into(),
            json!({}),
        ));
        sink.flush().await;
        let lines: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[1]["message"], "one");
        assert_eq!(lines[1]["requestId"], "only");
        assert_eq!(lines[2]["level"], "ERROR");
        assert_eq!(lines[3]["message"], "three");
        assert_eq!(lines[4]["type"], "platform.start");
        assert_eq!(sink.dropped(), 0);
        drop(sink);
        task.await.unwrap();
    }
}
