//! The server's end of the invoke stream ([`crate::stream`]): one upgraded connection per agent,
//! opened at the first invoke and again after it closes. Invokes wait for their reply by id; a
//! writer task sends whatever queued up since its last write in one write, a reader task hands
//! each reply to its caller.
//!
//! Failures keep the HTTP client's meaning: an invoke whose frame never left this process is
//! [`ClientError::Unreachable`] (safe to try elsewhere), one that was sent and got no reply is
//! [`ClientError::NoAnswer`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::stream::{self, InvokeHead, MAX_BATCH, OutFrame};
use crate::{AgentClient, ClientError, InvokeReply};

type Io = TokioIo<hyper::upgrade::Upgraded>;
type Waiter = oneshot::Sender<Result<InvokeReply, ClientError>>;

/// What [`InvokeMux::invoke`] decided.
pub(crate) enum Sent {
    /// The stream carried it.
    Replied(Result<InvokeReply, ClientError>),
    /// The agent has no invoke stream (an older agent): send it as an HTTP request.
    NoStream,
}

#[derive(Default)]
pub(crate) struct InvokeMux {
    state: Mutex<State>,
    /// Held while connecting, so concurrent first invokes open one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for InvokeMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InvokeMux")
    }
}

#[derive(Default)]
enum State {
    #[default]
    Closed,
    Open(Arc<Conn>),
    /// The agent answered 404 to the upgrade: it predates the stream.
    Unsupported,
}

struct Conn {
    tx: mpsc::UnboundedSender<Out>,
    pending: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    /// Cancelled when either task ends: the connection is done.
    stop: CancellationToken,
}

/// One frame to write.
struct Out {
    /// The invoke's id, or `None` for a cancel.
    invoke: Option<u64>,
    frame: OutFrame,
}

impl Out {
    fn frame(&self) -> &OutFrame {
        &self.frame
    }
}

impl Drop for InvokeMux {
    fn drop(&mut self) {
        // The last client of this agent is gone: close its stream.
        if let Ok(State::Open(conn)) = self.state.get_mut().map(std::mem::take) {
            conn.stop.cancel();
        }
    }
}

impl InvokeMux {
    fn current(&self) -> Option<Result<Arc<Conn>, ()>> {
        match &*self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            State::Open(c) if !c.stop.is_cancelled() => Some(Ok(c.clone())),
            State::Unsupported => Some(Err(())),
            _ => None,
        }
    }

    /// The open connection, or a new one.
    async fn conn(&self, client: &AgentClient) -> Result<Option<Arc<Conn>>, ClientError> {
        match self.current() {
            Some(Ok(c)) => return Ok(Some(c)),
            Some(Err(())) => return Ok(None),
            None => {}
        }
        let _one = self.connecting.lock().await;
        match self.current() {
            Some(Ok(c)) => return Ok(Some(c)),
            Some(Err(())) => return Ok(None),
            None => {}
        }
        let Some(io) = client.open_invoke_stream().await? else {
            *self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = State::Unsupported;
            return Ok(None);
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stop: CancellationToken::new(),
        });
        let (r, w) = tokio::io::split(io);
        let addr = client.addr();
        tokio::spawn(read_loop(conn.clone(), r));
        tokio::spawn(write_loop(conn.clone(), rx, w, addr));
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = State::Open(conn.clone());
        Ok(Some(conn))
    }

    /// Sends one invoke over the stream and waits up to `deadline` for its reply.
    pub(crate) async fn invoke(
        &self,
        client: &AgentClient,
        deadline: Duration,
        head: InvokeHead<'_>,
        payload: Bytes,
    ) -> Sent {
        let started = tokio::time::Instant::now();
        let conn = match tokio::time::timeout(deadline, self.conn(client)).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return Sent::NoStream,
            Ok(Err(e)) => return Sent::Replied(Err(e)),
            Err(_) => {
                return Sent::Replied(Err(ClientError::Unreachable {
                    addr: client.addr(),
                    detail: format!("no invoke stream opened within {} ms", deadline.as_millis()),
                }));
            }
        };
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let mut buf = BytesMut::new();
        stream::encode_invoke_head(&mut buf, id, &head, payload.len());
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, tx);
        let out = Out {
            invoke: Some(id),
            frame: OutFrame {
                head: buf.freeze(),
                payload,
            },
        };
        if conn.tx.send(out).is_err() {
            lock(&conn.pending).remove(&id);
            return Sent::Replied(Err(ClientError::Unreachable {
                addr: client.addr(),
                detail: "the invoke stream closed".into(),
            }));
        }
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rx).await {
            Ok(Ok(reply)) => Sent::Replied(reply),
            Ok(Err(_)) => Sent::Replied(Err(ClientError::NoAnswer {
                addr: client.addr(),
                detail: "the invoke stream closed before the reply".into(),
            })),
            Err(_) => {
                lock(&conn.pending).remove(&id);
                let mut c = BytesMut::new();
                stream::encode_cancel(&mut c, id);
                let _ = conn.tx.send(Out {
                    invoke: None,
                    frame: OutFrame {
                        head: c.freeze(),
                        payload: Bytes::new(),
                    },
                });
                Sent::Replied(Err(ClientError::NoAnswer {
                    addr: client.addr(),
                    detail: format!("no answer within {} ms", deadline.as_millis()),
                }))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn read_loop(conn: Arc<Conn>, mut r: ReadHalf<Io>) {
    let mut buf = BytesMut::with_capacity(stream::READ_BUF);
    'read: loop {
        tokio::select! {
            n = r.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break 'read,
                Ok(_) => {}
            },
            () = conn.stop.cancelled() => break 'read,
        }
        loop {
            match stream::decode_reply(&mut buf) {
                Ok(Some((id, reply))) => {
                    if let Some(w) = lock(&conn.pending).remove(&id) {
                        let _ = w.send(Ok(reply));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed frame on an invoke stream: closing it");
                    break 'read;
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(stream::READ_BUF);
        }
    }
    conn.stop.cancel();
}

async fn write_loop(
    conn: Arc<Conn>,
    mut rx: mpsc::UnboundedReceiver<Out>,
    mut w: WriteHalf<Io>,
    addr: std::net::SocketAddr,
) {
    let mut buf = BytesMut::with_capacity(stream::READ_BUF);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            o = rx.recv() => o,
            () = conn.stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let written = tokio::select! {
            r = stream::write_frames(&mut w, &mut buf, batch.iter().map(Out::frame)) => r.is_ok(),
            () = conn.stop.cancelled() => false,
        };
        batch.clear();
        if !written {
            break;
        }
    }
    conn.stop.cancel();
    // Frames still queued never left: their invokes may go elsewhere.
    rx.close();
    while let Ok(o) = rx.try_recv() {
        if let Some(id) = o.invoke
            && let Some(w) = lock(&conn.pending).remove(&id)
        {
            let _ = w.send(Err(ClientError::Unreachable {
                addr,
                detail: "the invoke stream closed before the invoke was sent".into(),
            }));
        }
    }
    // Sent ones may have run.
    let left: Vec<Waiter> = lock(&conn.pending).drain().map(|(_, w)| w).collect();
    for w in left {
        let _ = w.send(Err(ClientError::NoAnswer {
            addr,
            detail: "the invoke stream closed before the reply".into(),
        }));
    }
    let _ = w.shutdown().await;
}
