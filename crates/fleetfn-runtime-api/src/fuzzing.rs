//! An in-memory way into the endpoint's HTTP handling for the fuzz targets in `fuzz/` (cargo
//! feature `fuzzing`; not a public API). [`exchange`] serves one HTTP/1.1 connection whose
//! client sends the given bytes, through the same hyper server settings and routing as
//! [`RuntimeApi::bind`](crate::RuntimeApi::bind), with one invoke ([`REQUEST_ID`]) in flight
//! and one registered external extension ([`EXTENSION_ID`], so the Extensions and Telemetry
//! API routes are reachable past the identity checks). Telemetry destinations are never
//! connected to (the connector refuses).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::state::Shared;
use crate::{InitError, Invocation, Outcome, RuntimeApiConfig};

/// The request id of the invoke in flight during an [`exchange`].
pub const REQUEST_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";

/// The `Lambda-Extension-Identifier` of the extension registered during an [`exchange`]
/// (name [`EXTENSION_NAME`], registered for `SHUTDOWN`).
pub const EXTENSION_ID: &str = "0f4f3a2e-6c1b-4d7e-9a55-3b0d4b2f6a10";

/// The name of that extension; `other-ext` is expected too but not registered.
pub const EXTENSION_NAME: &str = "fuzz-ext";

/// Refuses every connection: fuzz inputs must not reach the network.
struct NoNetwork;

impl crate::TelemetryConnector for NoNetwork {
    fn connect(
        &self,
        _port: u16,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<tokio::net::TcpStream>> + Send + '_>,
    > {
        Box::pin(async {
            Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "no network while fuzzing",
            ))
        })
    }
}

/// What one [`exchange`] did.
#[derive(Debug)]
pub struct Exchange {
    /// Every byte the server wrote back.
    pub response: Vec<u8>,
    /// The server closed the connection before `limit` passed.
    pub closed_by_server: bool,
    /// How the in-flight invoke ended, if it did.
    pub outcome: Option<Outcome>,
    /// The `/init/error` recorded, if any.
    pub init_error: Option<InitError>,
    /// `/next` requests still parked after the connection was gone (must be 0).
    pub parked: usize,
    /// Invokes still in flight at the end (0 or 1).
    pub in_flight: usize,
    /// Extensions registered at the end (at most [`crate::MAX_EXTENSIONS`]).
    pub extensions: usize,
    /// Telemetry subscribers at the end (0 or 1: only [`EXTENSION_ID`] can subscribe).
    pub subscribers: usize,
}

/// Serves `input` as the bytes one client connection sends, until the server closes the
/// connection or `limit` passes (Tokio time: on a paused clock that is as soon as nothing is
/// left to do), then closes the connection from the client's side.
pub async fn exchange(input: &[u8], cfg: RuntimeApiConfig, limit: Duration) -> Exchange {
    let shared = Arc::new(Shared::new(cfg));
    shared.telemetry.set_connector(Arc::new(NoNetwork));
    shared
        .extensions
        .expect(vec![EXTENSION_NAME.to_owned(), "other-ext".to_owned()]);
    shared
        .extensions
        .insert_registered(EXTENSION_ID, EXTENSION_NAME);
    // One invoke in flight, as if a `/next` had already taken it.
    let (tx, mut rx) = oneshot::channel();
    shared.park(tx);
    let mut ticket = shared
        .dispatch(Invocation {
            request_id: REQUEST_ID.to_owned(),
            payload: Bytes::from_static(b"{}"),
            deadline_ms: 1_795_770_000_000,
            invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".to_owned(),
            trace_id: None,
            client_context: None,
            cognito_identity: None,
            tenant_id: None,
        })
        .expect("one waiter is parked");
    drop(rx.try_recv());

    let (client, server) = tokio::io::duplex(64 * 1024);
    let conn = crate::server::serve_connection(
        server,
        Arc::clone(&shared),
        crate::server::StreamingUpload::default(),
    );
    let (mut rd, mut wr) = tokio::io::split(client);
    let mut response = Vec::new();
    let run = async {
        let serve = async {
            // The server's end of the pipe is dropped when this returns, ending `read`.
            let _ = conn.await;
        };
        let read = async {
            let _ = rd.read_to_end(&mut response).await;
        };
        let write = async {
            // Never half-closed: hyper cancels the request in progress on an EOF.
            let _ = wr.write_all(input).await;
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = async { tokio::join!(serve, read) } => {}
            _ = write => {}
        }
    };
    // On time out, dropping `run` closes the connection; parked `/next`s unpark themselves.
    let closed_by_server = tokio::time::timeout(limit, run).await.is_ok();

    let ex = Exchange {
        response,
        closed_by_server,
        outcome: ticket.rx.try_recv().ok().map(|(outcome, _timing)| outcome),
        init_error: shared.init_error.borrow().clone(),
        parked: shared.parked(),
        in_flight: shared.in_flight(),
        extensions: shared.extensions.list().len(),
        subscribers: shared.telemetry.subscribers(),
    };
    // Ends the telemetry delivery tasks a subscription started.
    shared.close();
    ex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Exchange {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(exchange(
                input,
                RuntimeApiConfig::default(),
                Duration::from_millis(200),
            ))
    }

    #[test]
    fn a_response_completes_the_invoke() {
        let ex = run(format!(
            "POST /2018-06-01/runtime/invocation/{REQUEST_ID}/response HTTP/1.1\r\n\
             host: x\r\ncontent-length: 2\r\n\r\nok"
        )
        .as_bytes());
        assert!(
            ex.response.starts_with(b"HTTP/1.1 202"),
            "{:?}",
            ex.response
        );
        assert_eq!(
            ex.outcome,
            Some(Outcome::Response(Bytes::from_static(b"ok")))
        );
        assert_eq!((ex.parked, ex.in_flight), (0, 0));
    }

    #[test]
    fn the_registered_extension_can_subscribe_and_register_others() {
        let sub = r#"{"schemaVersion":"2025-01-29","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:9"}}"#;
        let reg = r#"{"events":["SHUTDOWN"]}"#;
        let ex = run(format!(
            "PUT /2022-07-01/telemetry HTTP/1.1\r\nhost: x\r\nlambda-extension-identifier: {EXTENSION_ID}\r\n\
             content-length: {}\r\n\r\n{sub}\
             POST /2020-01-01/extension/register HTTP/1.1\r\nhost: x\r\nlambda-extension-name: other-ext\r\n\
             content-length: {}\r\n\r\n{reg}",
            sub.len(),
            reg.len()
        )
        .as_bytes());
        let text = String::from_utf8_lossy(&ex.response);
        assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
        assert_eq!((ex.extensions, ex.subscribers), (2, 1));
    }

    #[test]
    fn a_next_is_unparked_when_its_connection_closes() {
        let ex = run(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n");
        assert_eq!(ex.parked, 0);
        assert_eq!(ex.in_flight, 1);
    }
}
