//! The API listener: hyper's HTTP/1 server with a header-read timeout, TCP_NODELAY and graceful
//! shutdown. The header-read timeout also closes idle keep-alive connections: hyper starts it
//! whenever a connection waits for the head of its next request, so a client that opens a
//! connection (or keeps one) and never finishes a request head is dropped after it.
//! [`serve_tls`] is the same over TLS (every connection; the handshake is bounded by the same
//! timeout). [`serve_with_peers`] (the function URL endpoint, open to anonymous clients) also
//! caps its open connections: at the cap it stops accepting until one closes, so a flood of
//! idle connections cannot use up the process's file descriptors (and starve the API's
//! listener).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fleetfn_proto::tls::TlsListener;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use crate::Api;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The default cap on open connections of [`serve_with_peers`].
pub const DEFAULT_MAX_PEER_CONNECTIONS: usize = 4096;

/// Timeouts of the API listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerConfig {
    /// How long a connection may take to send a request head, and how long an idle keep-alive
    /// connection stays open.
    pub header_read_timeout: Duration,
}

impl ListenerConfig {
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` completes, then wait for open connections to
/// finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: impl Into<Api>,
    cfg: ListenerConfig,
    shutdown: impl Future<Output = ()>,
) {
    serve_on(
        Incoming::Plain(listener),
        app.into(),
        cfg,
        false,
        None,
        shutdown,
    )
    .await;
}

/// [`serve`] that hands each request its peer's address (axum's
/// `ConnectInfo<SocketAddr>` extension), for the function URL endpoint's `sourceIp`, with at
/// most `max_connections` open at once (see [`DEFAULT_MAX_PEER_CONNECTIONS`]): further clients
/// wait in the kernel's backlog until one closes.
pub async fn serve_with_peers(
    listener: TcpListener,
    app: impl Into<Api>,
    cfg: ListenerConfig,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let cap = Arc::new(Semaphore::new(max_connections));
    serve_on(
        Incoming::Plain(listener),
        app.into(),
        cfg,
        true,
        Some(cap),
        shutdown,
    )
    .await;
}

/// [`serve`] over TLS: `listener` hands out connections with their handshake done.
pub async fn serve_tls(
    listener: TlsListener,
    app: impl Into<Api>,
    cfg: ListenerConfig,
    shutdown: impl Future<Output = ()>,
) {
    serve_on(
        Incoming::Tls(listener),
        app.into(),
        cfg,
        false,
        None,
        shutdown,
    )
    .await;
}

enum Incoming {
    Plain(TcpListener),
    Tls(TlsListener),
}

async fn serve_on(
    mut listener: Incoming,
    app: Api,
    cfg: ListenerConfig,
    peers: bool,
    cap: Option<Arc<Semaphore>>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // The peer's address goes into the request only when asked for: the API's requests
        // stay without an extensions map to allocate.
        let with_peer = |peer: std::net::SocketAddr| {
            let peer = peers.then_some(axum::extract::ConnectInfo(peer));
            TowerToHyperService::new(tower::ServiceExt::map_request(
                app.clone(),
                move |mut req: http::Request<hyper::body::Incoming>| {
                    if let Some(p) = peer {
                        req.extensions_mut().insert(p);
                    }
                    req
                },
            ))
        };
        match &mut listener {
            Incoming::Plain(tcp_listener) => {
                // A connection slot first: at the cap, accept nothing until one closes.
                let slot = match &cap {
                    None => None,
                    Some(cap) => tokio::select! {
                        slot = cap.clone().acquire_owned() => slot.ok(),
                        () = &mut shutdown => break,
                    },
                };
                let (tcp, peer) = tokio::select! {
                    accepted = tcp_listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accepting an API connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = &mut shutdown => break,
                };
                // Small request/response exchanges: never wait for Nagle.
                let _ = tcp.set_nodelay(true);
                let conn =
                    graceful.watch(http.serve_connection(TokioIo::new(tcp), with_peer(peer)));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "API connection ended with an error");
                    }
                    drop(slot);
                });
            }
            Incoming::Tls(tls_listener) => {
                let (stream, peer) = tokio::select! {
                    accepted = tls_listener.accept() => accepted,
                    () = &mut shutdown => break,
                };
                let conn =
                    graceful.watch(http.serve_connection(TokioIo::new(stream), with_peer(peer)));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "API connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(c: &mut TcpStream) -> String {
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn serve_with_peers_accepts_no_more_than_its_cap() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with_peers(
            listener,
            app,
            ListenerConfig {
                header_read_timeout: Duration::from_secs(3600),
            },
            1,
            async move {
                let _ = stopped.await;
            },
        ));
        let mut first = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut first).await.starts_with("HTTP/1.1 200"));
        // The second connection waits in the backlog while the first is open (kept alive)...
        let mut second = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_secs(60), get(&mut second)).await;
        assert!(waiting.is_err(), "served past the cap: {waiting:?}");
        // ...and is served once the first closes.
        drop(first);
        let mut buf = [0u8; 1024];
        let n = second.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        let _ = stop.send(());
        drop(second);
        server.await.unwrap();
    }
}
