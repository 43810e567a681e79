//! One Telemetry API subscriber: its bounded queue and the task that delivers it in batches,
//! in order, over one kept-alive connection.
//!
//! As in Lambda Managed Instances (aws-lambda-runtime-interface-emulator,
//! `aws-lambda-rie/internal/telemetry/internal/subscriber.go`): a batch goes out when it holds
//! `maxItems` events or `maxBytes` bytes, or `timeoutMs` after its first event; one batch is
//! in flight at a time; a batch that fails to send is not retried (a `platform.logsDropped`
//! says so); events that arrive while the queue already holds two full batches are dropped and
//! counted, and the next batch taken is preceded by a `platform.logsDropped`. So a subscriber
//! that stops reading costs at most three batches of memory.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::records::{LogsDropped, Shape};

/// Opens the TCP connections that deliver telemetry to a subscriber's destination.
///
/// A destination is `sandbox.localdomain:<port>` (or `sandbox`), i.e. `port` on the loopback
/// interface of the execution environment. In a network namespace of its own, the agent
/// supplies a connector that connects from inside that namespace; [`LoopbackConnector`]
/// connects to `127.0.0.1:port` of the host's.
pub trait TelemetryConnector: Send + Sync + 'static {
    /// A connected stream to `port` on the environment's loopback interface.
    fn connect(
        &self,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send + '_>>;
}

/// Connects to `127.0.0.1:port`: the destination for environments without a network namespace
/// of their own.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopbackConnector;

impl TelemetryConnector for LoopbackConnector {
    fn connect(
        &self,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send + '_>> {
        Box::pin(TcpStream::connect(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            port,
        ))))
    }
}

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Pauses between connection attempts to a destination that refuses (a listener being rebound
/// between connections, as `lambda-extension`'s is).
const CONNECT_RETRY: [Duration; 3] = [
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(250),
];

/// Largest subscriber answer read (and discarded).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// `reason` of the `platform.logsDropped` for a subscriber that falls behind (AWS's words).
pub(crate) const SLOW_SUBSCRIBER_REASON: &str = "Some logs were dropped because the downstream consumer is slower than the logs production rate";

/// A subscription's buffering settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Buffering {
    pub(crate) max_items: usize,
    pub(crate) max_bytes: usize,
    pub(crate) timeout: Duration,
}

/// Where a subscriber's batches go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// `POST <path>` with a JSON array of events.
    Http {
        port: u16,
        path: String,
        host: String,
    },
    /// Each event as one line of JSON.
    Tcp { port: u16 },
}

/// What the delivery task needs from the telemetry hub.
pub(crate) trait Host: Send + Sync + 'static {
    fn connector(&self) -> Arc<dyn TelemetryConnector>;
    fn dropped(&self, record: LogsDropped);
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Bytes>,
    bytes: usize,
    /// When the oldest queued event arrived (the batch timer's start).
    oldest: Option<Instant>,
    /// Events ever queued.
    pushed: u64,
    dropped_records: u64,
    dropped_bytes: u64,
    /// Send what is queued now, without waiting for the timer.
    flush: bool,
}

/// One subscriber of one extension.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub(crate) extension_id: String,
    pub(crate) name: String,
    /// Bit set of [`super::records::Category`].
    pub(crate) categories: u8,
    pub(crate) shape: Shape,
    pub(crate) buffering: Buffering,
    pub(crate) destination: Destination,
    queue: Mutex<Queue>,
    wake: Notify,
    /// Events delivered or given up on (a failed batch).
    done: watch::Sender<u64>,
    pub(crate) cancel: CancellationToken,
}

impl Subscriber {
    pub(crate) fn new(
        extension_id: String,
        name: String,
        categories: u8,
        shape: Shape,
        buffering: Buffering,
        destination: Destination,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            extension_id,
            name,
            categories,
            shape,
            buffering,
            destination,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            done: watch::Sender::new(0),
            cancel,
        }
    }

    /// Queues one rendered event. Beyond two full batches it is dropped and counted, unless
    /// `force` (the replay of the init-phase buffer, itself bounded).
    pub(crate) fn push(&self, event: Bytes, force: bool) {
        let b = self.buffering;
        let mut q = self.queue.lock();
        if !force && (q.items.len() >= 2 * b.max_items || q.bytes >= 2 * b.max_bytes) {
            q.dropped_records += 1;
            q.dropped_bytes += event.len() as u64;
            return;
        }
        let was_empty = q.items.is_empty();
        q.bytes += event.len();
        q.items.push_back(event);
        q.pushed += 1;
        if was_empty {
            q.oldest = Some(Instant::now());
        }
        let full = q.items.len() >= b.max_items || q.bytes >= b.max_bytes;
        drop(q);
        if was_empty || full {
            self.wake.notify_one();
        }
    }

    /// Asks for everything queued now to be sent at once; returns the count to wait for with
    /// [`Subscriber::delivered`].
    pub(crate) fn request_flush(&self) -> u64 {
        let mut q = self.queue.lock();
        let target = q.pushed;
        if !q.items.is_empty() {
            q.flush = true;
        }
        drop(q);
        self.wake.notify_one();
        target
    }

    /// Waits until `target` events were delivered (or given up on), or the subscriber ended.
    pub(crate) async fn delivered(&self, target: u64) {
        let mut rx = self.done.subscribe();
        tokio::select! {
            _ = rx.wait_for(|n| *n >= target) => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    /// The next batch, and the drops counted since the previous one.
    async fn next_batch(&self) -> (Vec<Bytes>, Option<(u64, u64)>) {
        loop {
            let deadline = {
                let mut q = self.queue.lock();
                if q.items.is_empty() {
                    q.flush = false;
                    None
                } else {
                    let b = self.buffering;
                    let due = q.oldest.unwrap_or_else(Instant::now) + b.timeout;
                    if q.flush
                        || q.items.len() >= b.max_items
                        || q.bytes >= b.max_bytes
                        || due <= Instant::now()
                    {
                        return self.take(&mut q);
                    }
                    Some(due)
                }
            };
            match deadline {
                Some(due) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    fn take(&self, q: &mut Queue) -> (Vec<Bytes>, Option<(u64, u64)>) {
        let b = self.buffering;
        let mut batch = Vec::with_capacity(q.items.len().min(b.max_items));
        let mut bytes = 0usize;
        while batch.len() < b.max_items && bytes < b.max_bytes {
            let Some(ev) = q.items.pop_front() else {
                break;
            };
            bytes += ev.len();
            batch.push(ev);
        }
        q.bytes -= bytes;
        if q.items.is_empty() {
            q.oldest = None;
            q.flush = false;
        } else {
            q.oldest = Some(Instant::now());
        }
        let dropped = (q.dropped_records > 0).then(|| {
            (
                std::mem::take(&mut q.dropped_records),
                std::mem::take(&mut q.dropped_bytes),
            )
        });
        (batch, dropped)
    }
}

/// Delivers `sub`'s batches until it is cancelled.
pub(crate) async fn run<H: Host>(sub: Arc<Subscriber>, host: Weak<H>) {
    let mut conn = Connection::None;
    loop {
        let (batch, dropped) = tokio::select! {
            _ = sub.cancel.cancelled() => return,
            next = sub.next_batch() => next,
        };
        if let Some((records, bytes)) = dropped {
            let Some(h) = host.upgrade() else { return };
            h.dropped(LogsDropped {
                reason: SLOW_SUBSCRIBER_REASON.to_owned(),
                dropped_records: records,
                dropped_bytes: bytes,
            });
        }
        let n = batch.len() as u64;
        let sent = tokio::select! {
            _ = sub.cancel.cancelled() => return,
            sent = send(&mut conn, &sub.destination, &batch, &host) => sent,
        };
        if let Err(e) = sent {
            conn = Connection::None;
            tracing::debug!(subscriber = %sub.name, error = %e, "telemetry batch not delivered");
            let Some(h) = host.upgrade() else { return };
            h.dropped(LogsDropped {
                reason: format!("could not send events: {e}"),
                dropped_records: n,
                dropped_bytes: batch.iter().map(|b| b.len() as u64).sum(),
            });
        }
        sub.done.send_modify(|d| *d += n);
    }
}

enum Connection {
    None,
    Http(http1::SendRequest<Full<Bytes>>),
    Tcp(TcpStream),
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("could not connect to the destination: {0}")]
    Connect(io::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("the destination answered {0}")]
    Status(http::StatusCode),
    #[error("the telemetry endpoint shut down")]
    Gone,
}

async fn connect<H: Host>(host: &Weak<H>, port: u16) -> Result<TcpStream, SendError> {
    let connector = host.upgrade().ok_or(SendError::Gone)?.connector();
    let mut attempt = 0;
    loop {
        let res = match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(port)).await {
            Ok(res) => res,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        };
        match res {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e)
                if e.kind() == io::ErrorKind::ConnectionRefused
                    && attempt < CONNECT_RETRY.len() =>
            {
                tokio::time::sleep(CONNECT_RETRY[attempt]).await;
                attempt += 1;
            }
            Err(e) => return Err(SendError::Connect(e)),
        }
    }
}

async fn send<H: Host>(
    conn: &mut Connection,
    dest: &Destination,
    batch: &[Bytes],
    host: &Weak<H>,
) -> Result<(), SendError> {
    match dest {
        Destination::Tcp { port } => {
            let mut buf = BytesMut::with_capacity(batch.iter().map(|b| b.len() + 1).sum());
            for ev in batch {
                buf.put_slice(ev);
                buf.put_u8(b'\n');
            }
            if !matches!(conn, Connection::Tcp(_)) {
                *conn = Connection::Tcp(connect(host, *port).await?);
            }
            let Connection::Tcp(stream) = conn else {
                return Err(SendError::Gone);
            };
            stream.write_all(&buf).await?;
            stream.flush().await?;
            Ok(())
        }
        Destination::Http {
            port,
            path,
            host: host_header,
        } => {
            let body = json_array(batch);
            // A kept-alive connection may have been closed by the subscriber since the last
            // batch: then reconnect once and send again (the request did not go out).
            for attempt in 0..2 {
                let sender = match conn {
                    Connection::Http(s) if !s.is_closed() => s,
                    _ => {
                        let stream = connect(host, *port).await?;
                        let (sender, driver) = http1::handshake(TokioIo::new(stream)).await?;
                        tokio::spawn(async move {
                            if let Err(e) = driver.await {
                                tracing::debug!(error = %e, "telemetry connection ended");
                            }
                        });
                        *conn = Connection::Http(sender);
                        let Connection::Http(s) = conn else {
                            return Err(SendError::Gone);
                        };
                        s
                    }
                };
                if sender.ready().await.is_err() {
                    *conn = Connection::None;
                    continue;
                }
                let mut req = Request::new(Full::new(body.clone()));
                *req.method_mut() = Method::POST;
                *req.uri_mut() = path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
                let h = req.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                if let Ok(v) = HeaderValue::from_str(host_header) {
                    h.insert(HOST, v);
                }
                match sender.try_send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        // Read the answer so the connection can carry the next batch.
                        if Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                            .collect()
                            .await
                            .is_err()
                        {
                            *conn = Connection::None;
                        }
                        if status.is_client_error() || status.is_server_error() {
                            return Err(SendError::Status(status));
                        }
                        return Ok(());
                    }
                    Err(mut e) => {
                        *conn = Connection::None;
                        if attempt == 0 && e.take_message().is_some() {
                            continue;
                        }
                        return Err(e.into_error().into());
                    }
                }
            }
            Err(SendError::Io(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the destination closed the connection",
            )))
        }
    }
}

/// `[e1,e2,...]`
fn json_array(batch: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + batch.iter().map(|b| b.len() + 1).sum::<usize>());
    buf.put_u8(b'[');
    for (i, ev) in batch.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(ev);
    }
    buf.put_u8(b']');
    buf.freeze()
}
