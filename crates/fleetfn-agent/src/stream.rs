//! The agent's end of the invoke stream ([`fleetfn_proto::stream`]): reads invoke frames, runs
//! each as its own task, and writes the replies that are ready together. A cancel frame, or the
//! connection closing, drops the invokes still waiting (as a dropped HTTP request does).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use fleetfn_proto::stream::{self, MAX_BATCH, OutFrame, ToAgent};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::service::Agent;

/// Serves one invoke stream until the server closes it or sends a malformed frame.
pub(crate) async fn serve<IO>(agent: Arc<Agent>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut r, w) = tokio::io::split(io);
    let (tx, rx) = mpsc::unbounded_channel::<OutFrame>();
    let writer = tokio::spawn(write_loop(rx, w));
    let running: Arc<Mutex<HashMap<u64, AbortHandle>>> = Arc::default();
    let mut buf = BytesMut::with_capacity(stream::READ_BUF);
    'read: loop {
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        agent.touch();
        loop {
            match stream::decode_to_agent(&mut buf) {
                Ok(Some(ToAgent::Invoke(id, f))) => {
                    let (agent, tx, done) = (agent.clone(), tx.clone(), running.clone());
                    let task = tokio::spawn(async move {
                        let reply = agent
                            .invoke(
                                &f.env_id,
                                Some(f.request_id),
                                f.payload,
                                f.client_context.as_deref(),
                                f.tenant_id,
                            )
                            .await;
                        done.lock().remove(&id);
                        let mut head = BytesMut::new();
                        let payload = stream::encode_reply(&mut head, id, &reply);
                        let _ = tx.send(OutFrame {
                            head: head.freeze(),
                            payload,
                        });
                    });
                    let mut map = running.lock();
                    // On a runtime of several threads it may be over already.
                    if !task.is_finished() {
                        map.insert(id, task.abort_handle());
                    }
                }
                Ok(Some(ToAgent::Cancel(id))) => {
                    if let Some(task) = running.lock().remove(&id) {
                        task.abort();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed frame on the invoke stream: closing it");
                    break 'read;
                }
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(stream::READ_BUF);
        }
    }
    for (_, task) in running.lock().drain() {
        task.abort();
    }
    drop(tx);
    let _ = writer.await;
}

async fn write_loop<W: AsyncWrite + Unpin>(mut rx: mpsc::UnboundedReceiver<OutFrame>, mut w: W) {
    let mut buf = BytesMut::with_capacity(stream::READ_BUF);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let written = stream::write_frames(&mut w, &mut buf, batch.iter()).await;
        batch.clear();
        if written.is_err() {
            break;
        }
    }
}
