//! The load generator: HDR histograms, a closed loop (fixed concurrency, each client on its own
//! connection, speaking HTTP/1.1 itself) and an open loop (fixed arrival rate on hyper's pooled
//! client, latency measured from the intended send time, so a stalled server is not hidden by
//! coordinated omission).
//! Every run is bounded by a request count and a deadline, and runs on its own Tokio runtime so
//! its CPU can be told apart from the orchestrator's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::HOST;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// Builds one request (signed if the target needs it).
pub type MakeRequest = Arc<dyn Fn() -> http::Request<Full<Bytes>> + Send + Sync>;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client(max_idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

/// Status 0 = transport error.
async fn one(client: &HttpClient, make: &MakeRequest) -> u16 {
    let req = make();
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.into_body().collect().await {
                Ok(_) => status,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    }
}

fn hist() -> Histogram<u64> {
    // 1 µs .. 120 s, 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// What one run saw.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub mode: String,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub seconds: f64,
    pub all: Histogram<u64>,
    pub by_status: BTreeMap<u16, Histogram<u64>>,
    /// Arrivals the open loop could not send because `max_outstanding` requests were pending.
    pub skipped: usize,
    /// (ms since start, status) of every non-200 answer, bounded; for timelines.
    pub non_ok: Vec<(u32, u16)>,
    /// Open loop: how late the pacer sent each arrival after its intended time (included in
    /// every latency above).
    pub pacer_lag: Option<Histogram<u64>>,
}

impl RunResult {
    pub fn count(&self) -> u64 {
        self.all.len()
    }
    pub fn ok(&self) -> u64 {
        self.by_status.get(&200).map_or(0, Histogram::len)
    }
    pub fn errors(&self) -> u64 {
        self.count() - self.ok()
    }
    pub fn throughput(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let n = self.count() as f64;
        n / self.seconds.max(1e-9)
    }
    pub fn ok_throughput(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let n = self.ok() as f64;
        n / self.seconds.max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        let by_status: serde_json::Map<String, Value> = self
            .by_status
            .iter()
            .map(|(k, h)| (k.to_string(), summary(h)))
            .collect();
        let mut v = summary(&self.all);
        let o = v.as_object_mut().expect("object");
        o.insert("mode".into(), json!(self.mode));
        o.insert("concurrency".into(), json!(self.concurrency));
        o.insert("rate_rps".into(), json!(self.rate));
        o.insert("seconds".into(), json!(round(self.seconds, 3)));
        o.insert("throughput_rps".into(), json!(round(self.throughput(), 1)));
        o.insert("ok".into(), json!(self.ok()));
        o.insert("errors".into(), json!(self.errors()));
        o.insert("skipped_arrivals".into(), json!(self.skipped));
        o.insert("by_status".into(), Value::Object(by_status));
        if let Some(lag) = &self.pacer_lag {
            o.insert("pacer_lag".into(), summary(lag));
        }
        v
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Percentiles in µs.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.50),
        "p90_us": h.value_at_quantile(0.90),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
        "mean_us": round(h.mean(), 1),
    })
}

struct Local {
    all: Histogram<u64>,
    by_status: BTreeMap<u16, Histogram<u64>>,
    non_ok: Vec<(u32, u16)>,
}

impl Local {
    fn new() -> Self {
        Local {
            all: hist(),
            by_status: BTreeMap::new(),
            non_ok: Vec::new(),
        }
    }
    fn record(&mut self, started: Instant, t0: Instant, took: Duration, status: u16) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.all.saturating_record(us.max(1));
        self.by_status
            .entry(status)
            .or_insert_with(hist)
            .saturating_record(us.max(1));
        if status != 200 && self.non_ok.len() < 100_000 {
            let ms = u32::try_from(t0.duration_since(started).as_millis()).unwrap_or(u32::MAX);
            self.non_ok.push((ms, status));
        }
    }
    fn merge(&mut self, other: Local) {
        let _ = self.all.add(&other.all);
        for (k, h) in other.by_status {
            let _ = self.by_status.entry(k).or_insert_with(hist).add(&h);
        }
        self.non_ok.extend(other.non_ok);
    }
}

/// The load generator's own runtime (`threads` worker threads).
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("loadgen")
        .enable_all()
        .build()
        .expect("load generator runtime")
}

/// One closed-loop client's own HTTP/1.1 connection, spoken here directly: the request is
/// written in one write and the answer read into a reused buffer and framed with `httparse`,
/// so the instrument takes as little as it can of the CPU it shares with what it measures (no
/// per-request channel, task wake-up or header map of a general client). A transport error or
/// a malformed answer (status 0) drops the connection and the next request opens a new one; so
/// does an answer with `connection: close`. A kept-alive connection that turns out closed
/// before any byte of the answer came is replaced and the request sent once more, as a pool
/// does with a connection the server closed while idle.
#[derive(Default)]
struct OwnConn {
    stream: Option<TcpStream>,
    out: Vec<u8>,
    buf: Vec<u8>,
}

/// The largest answer [`OwnConn`] reads (the bench's answers are a few KiB).
const MAX_ANSWER: usize = 16 << 20;

/// How a read answer ended.
enum Answer {
    /// Its status; `close` when the connection cannot carry another request.
    Done { status: u16, close: bool },
    /// The connection ended before the first byte of an answer.
    Closed,
    /// A transport error or a malformed answer.
    Broken,
}

impl OwnConn {
    /// Sends one request and reads its whole answer: the status, or 0 on a transport error.
    async fn one(&mut self, make: &MakeRequest) -> u16 {
        let (parts, body) = make().into_parts();
        let Some(authority) = parts.uri.authority().cloned() else {
            return 0;
        };
        let Ok(body) = body.collect().await;
        let body = body.to_bytes();
        encode_request(&parts, authority.as_str(), &body, &mut self.out);
        for _ in 0..2 {
            let fresh = self.stream.is_none();
            if fresh {
                match connect(authority.as_str()).await {
                    Ok(s) => self.stream = Some(s),
                    Err(_) => return 0,
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                return 0;
            };
            let answer = if stream.write_all(&self.out).await.is_err() {
                Answer::Closed
            } else {
                read_answer(stream, &mut self.buf).await
            };
            match answer {
                Answer::Done { status, close } => {
                    if close {
                        self.stream = None;
                    }
                    return status;
                }
                Answer::Closed if !fresh => self.stream = None,
                Answer::Closed | Answer::Broken => {
                    self.stream = None;
                    return 0;
                }
            }
        }
        0
    }
}

async fn connect(authority: &str) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect(authority).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// `parts` and `body` as an HTTP/1.1 request in origin form, with `host` (from `authority`
/// unless set) and `content-length`.
fn encode_request(parts: &http::request::Parts, authority: &str, body: &[u8], out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.clear();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let _ = write!(out, "{} {target} HTTP/1.1\r\n", parts.method);
    if !parts.headers.contains_key(HOST) {
        let _ = write!(out, "host: {authority}\r\n");
    }
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(out, "content-length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

/// Reads one answer from `stream` into `buf` (cleared first) and frames it.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
    use tokio::io::AsyncReadExt as _;
    buf.clear();
    loop {
        match frame(buf) {
            Framed::Done { status, close } => return Answer::Done { status, close },
            Framed::Broken => return Answer::Broken,
            Framed::Partial { until_eof } => {
                if buf.len() >= MAX_ANSWER {
                    return Answer::Broken;
                }
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(8192);
                }
                match stream.read_buf(buf).await {
                    Ok(0) if until_eof => {
                        return match frame_eof(buf) {
                            Some(status) => Answer::Done {
                                status,
                                close: true,
                            },
                            None => Answer::Broken,
                        };
                    }
                    Ok(0) if buf.is_empty() => return Answer::Closed,
                    Ok(0) | Err(_) => return Answer::Broken,
                    Ok(_) => {}
                }
            }
        }
    }
}

/// What [`frame`] found in the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
enum Framed {
    Done {
        status: u16,
        close: bool,
    },
    /// More is needed; `until_eof` when the body runs to the end of the connection.
    Partial {
        until_eof: bool,
    },
    Broken,
}

/// Frames an HTTP/1.x answer in `buf`: a head, then a body by `content-length`, chunked
/// transfer coding, or (neither) the end of the connection. Interim (1xx) answers are skipped.
fn frame(buf: &[u8]) -> Framed {
    let mut at = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&buf[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Framed::Partial { until_eof: false },
            Err(_) => return Framed::Broken,
        };
        let Some(status) = resp.code else {
            return Framed::Broken;
        };
        let mut length = None;
        let mut chunked = false;
        let mut close = resp.version == Some(0);
        for h in resp.headers.iter() {
            let value = std::str::from_utf8(h.value).unwrap_or("").trim();
            if h.name.eq_ignore_ascii_case("content-length") {
                match value.parse::<usize>() {
                    Ok(n) => length = Some(n),
                    Err(_) => return Framed::Broken,
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                close |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"));
            }
        }
        let body = at + head;
        if (100..200).contains(&status) {
            at = body;
            continue;
        }
        if status == 204 || status == 304 {
            return Framed::Done { status, close };
        }
        return if chunked {
            match chunked_end(&buf[body..]) {
                Some(Ok(())) => Framed::Done { status, close },
                Some(Err(())) => Framed::Broken,
                None => Framed::Partial { until_eof: false },
            }
        } else if let Some(n) = length {
            if buf.len() - body >= n {
                Framed::Done { status, close }
            } else {
                Framed::Partial { until_eof: false }
            }
        } else {
            Framed::Partial { until_eof: true }
        };
    }
}

/// The status of an answer whose body ran to the end of the connection.
fn frame_eof(buf: &[u8]) -> Option<u16> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(_)) => resp.code,
        _ => None,
    }
}

/// Whether a chunked body is complete in `b`: `Some(Ok)` when its last chunk and trailers are
/// there, `None` when more is needed, `Some(Err)` when it is malformed.
fn chunked_end(mut b: &[u8]) -> Option<Result<(), ()>> {
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..line]).ok().and_then(|l| {
            let hex = l.split(';').next().unwrap_or("").trim();
            usize::from_str_radix(hex, 16).ok()
        });
        let Some(size) = size else {
            return Some(Err(()));
        };
        b = &b[line + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let line = b.windows(2).position(|w| w == b"\r\n")?;
                if line == 0 {
                    return Some(Ok(()));
                }
                b = &b[line + 2..];
            }
        }
        if b.len() < size.checked_add(2)? {
            return None;
        }
        if &b[size..size + 2] != b"\r\n" {
            return Some(Err(()));
        }
        b = &b[size + 2..];
    }
}

/// Closed loop: `concurrency` clients, each on its own connection sending its next request when
/// the previous one is answered, until `requests` were sent in total or `max` elapsed. `warmup`
/// requests (not recorded) go first, spread over the same clients and connections.
pub async fn closed(
    make: MakeRequest,
    concurrency: usize,
    requests: usize,
    warmup: usize,
    max: Duration,
) -> RunResult {
    let c = concurrency.max(1);
    // Warm-up: open the connections and settle the server.
    let warm_left = Arc::new(AtomicUsize::new(warmup));
    let warm_deadline = Instant::now() + max.min(Duration::from_secs(10));
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (make, left) = (make.clone(), warm_left.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = OwnConn::default();
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
                && Instant::now() < warm_deadline
            {
                let _ = conn.one(&make).await;
            }
            conn
        }));
    }
    let mut conns = Vec::with_capacity(c);
    for t in tasks {
        conns.push(t.await.unwrap_or_default());
    }
    let left = Arc::new(AtomicUsize::new(requests));
    let started = Instant::now();
    let deadline = started + max;
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (make, left) = (make.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Local::new();
            while Instant::now() < deadline
                && left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                let t0 = Instant::now();
                let status = conn.one(&make).await;
                local.record(started, t0, t0.elapsed(), status);
            }
            local
        }));
    }
    let mut total = Local::new();
    for t in tasks {
        if let Ok(l) = t.await {
            total.merge(l);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    RunResult {
        mode: "closed".into(),
        concurrency: c,
        rate: None,
        seconds,
        all: total.all,
        by_status: total.by_status,
        skipped: 0,
        non_ok: total.non_ok,
        pacer_lag: None,
    }
}

/// Open loop: one arrival every `1/rate` s for `duration` (at most `rate × duration` requests),
/// each measured from its intended send time. Arrivals beyond `max_outstanding` pending requests
/// are counted as skipped instead of sent.
///
/// The arrivals are paced by a thread of their own sleeping with the OS's high-resolution timer,
/// not by `tokio::time::sleep`: Tokio's timer wheel has a 1 ms granularity, so arrivals paced by it
/// leave up to 1 ms late and in bursts, and since latency is counted from the intended time that
/// lateness was added to every answer (it dominated the 429 p99 of the saturation scenario). How
/// late the pacer itself was is reported as `pacer_lag`.
pub async fn open(
    client: HttpClient,
    make: MakeRequest,
    rate: f64,
    duration: Duration,
    max_outstanding: usize,
) -> RunResult {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    let outstanding = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Duration, u16)>();
    let handle = tokio::runtime::Handle::current();
    let pacer = std::thread::Builder::new()
        .name("loadgen-pacer".into())
        .spawn(move || {
            let mut skipped = 0usize;
            let mut lag = hist();
            for i in 0..total {
                #[allow(clippy::cast_possible_truncation)]
                let at = started + interval * (i as u32);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let late = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                lag.saturating_record(late.max(1));
                if outstanding.load(Ordering::SeqCst) >= max_outstanding {
                    skipped += 1;
                    continue;
                }
                outstanding.fetch_add(1, Ordering::SeqCst);
                let (client, make, tx, out) = (
                    client.clone(),
                    make.clone(),
                    tx.clone(),
                    outstanding.clone(),
                );
                handle.spawn(async move {
                    let status = one(&client, &make).await;
                    let took = at.elapsed();
                    out.fetch_sub(1, Ordering::SeqCst);
                    let _ = tx.send((at, took, status));
                });
            }
            (skipped, lag)
        })
        .expect("spawn the load generator's pacer thread");
    let mut local = Local::new();
    // The pacer stops sending after `duration`; answers still pending 30 s later are not waited for.
    let drain_deadline = tokio::time::Instant::now() + duration + Duration::from_secs(30);
    while let Ok(Some((at, took, status))) =
        tokio::time::timeout_at(drain_deadline, rx.recv()).await
    {
        local.record(started, at, took, status);
    }
    let (skipped, pacer_lag) = tokio::task::spawn_blocking(move || pacer.join())
        .await
        .expect("join the pacer")
        .expect("the pacer thread panicked");
    let seconds = duration.as_secs_f64();
    RunResult {
        mode: "open".into(),
        concurrency: max_outstanding,
        rate: Some(rate),
        seconds,
        all: local.all,
        by_status: local.by_status,
        skipped,
        non_ok: local.non_ok,
        pacer_lag: Some(pacer_lag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers `per_connection` requests on each connection (the last with
    /// `connection: close` when `announce`) and then closes it.
    async fn closing_server(per_connection: usize, announce: bool) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for n in 1..=per_connection {
                        // Read one request head (the requests here have no body).
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut chunk = [0u8; 1024];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        let close = if n == per_connection && announce {
                            "connection: close\r\n"
                        } else {
                            ""
                        };
                        let answer =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{close}\r\nok");
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn get(addr: std::net::SocketAddr) -> MakeRequest {
        Arc::new(move || {
            http::Request::get(format!("http://{addr}/x"))
                .body(Full::new(Bytes::new()))
                .unwrap()
        })
    }

    #[test]
    fn answers_are_framed_by_length_chunks_or_the_end_of_the_connection() {
        let done = |status, close| Framed::Done { status, close };
        let more = Framed::Partial { until_eof: false };
        for (bytes, want) in [
            (&b""[..], more),
            (b"HTTP/1.1 200 OK\r\ncontent-len", Framed::Partial { until_eof: false }),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\no", Framed::Partial { until_eof: false }),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", done(200, false)),
            (b"HTTP/1.1 429 Too Many\r\ncontent-length: 0\r\nConnection: keep-alive, close\r\n\r\n", done(429, true)),
            (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", done(200, true)),
            (b"HTTP/1.1 204 No Content\r\n\r\n", done(204, false)),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 1\r\n\r\nx", done(201, false)),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n", Framed::Partial { until_eof: false }),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nx-t: 1\r\n\r\n", done(200, false)),
            (b"HTTP/1.1 200 OK\r\n\r\nsome", Framed::Partial { until_eof: true }),
            // Malformed: never taken as an answer.
            (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", Framed::Broken),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", Framed::Broken),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nabc", Framed::Broken),
            (b"SSH-2.0-OpenSSH\r\n\r\n", Framed::Broken),
        ] {
            assert_eq!(frame(bytes), want, "{}", String::from_utf8_lossy(bytes));
        }
        assert_eq!(frame_eof(b"HTTP/1.1 503 Busy\r\n\r\nbody"), Some(503));
        assert_eq!(frame_eof(b"HTTP/1.1 503 Bu"), None);
    }

    #[test]
    fn a_request_is_written_in_origin_form_with_host_and_length() {
        let req = http::Request::post("http://127.0.0.1:9/a/b?q=%24x")
            .header("x-amz-date", "20261205T000000Z")
            .header("content-length", "999")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        encode_request(&parts, "127.0.0.1:9", b"{}", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a/b?q=%24x HTTP/1.1\r\nhost: 127.0.0.1:9\r\nx-amz-date: 20261205T000000Z\r\ncontent-length: 2\r\n\r\n{}"
        );
    }

    #[tokio::test]
    async fn a_client_replaces_a_connection_the_server_closed_after_an_answer() {
        // Announced with `connection: close`, or found closed when the next request is sent
        // on it (as a server closes an idle keep-alive connection).
        for (per_connection, announce) in [(1, true), (3, true), (1, false), (3, false)] {
            let addr = closing_server(per_connection, announce).await;
            let run = closed(get(addr), 2, 40, 4, Duration::from_secs(20)).await;
            assert_eq!(
                (run.count(), run.ok()),
                (40, 40),
                "{per_connection} per connection, announced {announce}: {:?}",
                run.to_json()
            );
        }
    }
}
