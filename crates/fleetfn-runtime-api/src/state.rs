//! The shared state of one endpoint: parked `/next` waiters and in-flight invokes.
//!
//! One `parking_lot::Mutex` guards both; it is only ever held for a few pointer moves and never
//! across an `.await`. Each parked `/next` owns a oneshot receiver for its invoke, each ticket a
//! oneshot receiver for its outcome.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{Notify, oneshot, watch};

use crate::{
    Completion, ERROR_TYPE_UNAVAILABLE, InitError, Invocation, InvokeTicket, Outcome, Rejected,
    RuntimeApiConfig,
};

pub(crate) const HDR_REQUEST_ID: HeaderName =
    HeaderName::from_static("lambda-runtime-aws-request-id");
pub(crate) const HDR_DEADLINE_MS: HeaderName =
    HeaderName::from_static("lambda-runtime-deadline-ms");
pub(crate) const HDR_FUNCTION_ARN: HeaderName =
    HeaderName::from_static("lambda-runtime-invoked-function-arn");
pub(crate) const HDR_TRACE_ID: HeaderName = HeaderName::from_static("lambda-runtime-trace-id");
pub(crate) const HDR_CLIENT_CONTEXT: HeaderName =
    HeaderName::from_static("lambda-runtime-client-context");
pub(crate) const HDR_COGNITO_IDENTITY: HeaderName =
    HeaderName::from_static("lambda-runtime-cognito-identity");
pub(crate) const HDR_TENANT_ID: HeaderName =
    HeaderName::from_static("lambda-runtime-aws-tenant-id");

/// An invoke on its way to a parked `/next`: the response headers are built before the lock is
/// taken, so the `/next` handler only has to attach them.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) request_id: Arc<str>,
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    tx: oneshot::Sender<Delivery>,
}

#[derive(Debug, Default)]
struct State {
    /// Parked `/next` long polls; the last one is the newest and is served first (LIFO).
    waiters: Vec<Waiter>,
    next_waiter_id: u64,
    in_flight: HashMap<Arc<str>, oneshot::Sender<Completion>>,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: RuntimeApiConfig,
    state: Mutex<State>,
    /// Latches to `true` on the first parked `/next`.
    pub(crate) ready: watch::Sender<bool>,
    /// The first `/init/error`.
    pub(crate) init_error: watch::Sender<Option<InitError>>,
    /// Notified whenever the parked set changes.
    pub(crate) changed: Notify,
    /// The execution role's credentials document and the token that reads it.
    pub(crate) credentials: parking_lot::RwLock<Option<crate::ServedCredentials>>,
    /// The Extensions API's registered extensions.
    pub(crate) extensions: crate::extensions::Extensions,
    /// The Telemetry API's subscribers.
    pub(crate) telemetry: crate::telemetry::Telemetry,
}

impl Shared {
    pub(crate) fn new(cfg: RuntimeApiConfig) -> Self {
        Self {
            cfg,
            state: Mutex::new(State::default()),
            ready: watch::Sender::new(false),
            init_error: watch::Sender::new(None),
            changed: Notify::new(),
            credentials: parking_lot::RwLock::new(None),
            extensions: crate::extensions::Extensions::default(),
            telemetry: crate::telemetry::Telemetry::new(Arc::new(
                crate::telemetry::delivery::LoopbackConnector,
            )),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    pub(crate) fn parked(&self) -> usize {
        self.lock().waiters.len()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// Registers a parked `/next`; returns its id for [`Shared::abandon`].
    pub(crate) fn park(&self, tx: oneshot::Sender<Delivery>) -> u64 {
        let id = {
            let mut st = self.lock();
            let id = st.next_waiter_id;
            st.next_waiter_id += 1;
            st.waiters.push(Waiter { id, tx });
            id
        };
        self.ready
            .send_if_modified(|ready| !std::mem::replace(ready, true));
        self.changed.notify_waiters();
        id
    }

    /// Called when a parked `/next` handler goes away (its connection closed) without having
    /// taken an invoke out of `rx`. Removes it from the parked set or, if an invoke was already
    /// handed to it, passes that invoke on.
    pub(crate) fn abandon(&self, id: u64, rx: &mut oneshot::Receiver<Delivery>) {
        let mut st = self.lock();
        if let Some(pos) = st.waiters.iter().position(|w| w.id == id) {
            st.waiters.remove(pos);
            drop(st);
            self.changed.notify_waiters();
            return;
        }
        // Not parked any more, so a dispatch popped it, and dispatch sends while holding the
        // lock: whatever it sent is in `rx` now.
        rx.close();
        let Ok(delivery) = rx.try_recv() else {
            return;
        };
        tracing::debug!(
            request_id = %delivery.request_id,
            "/next went away before its invoke was written; passing the invoke on"
        );
        let Some(delivery) = Self::hand_off(&mut st, delivery) else {
            drop(st);
            self.changed.notify_waiters();
            return;
        };
        let tx = st.in_flight.remove(&delivery.request_id);
        drop(st);
        self.changed.notify_waiters();
        if let Some(tx) = tx {
            let _ = tx.send((
                Outcome::function_error(
                    ERROR_TYPE_UNAVAILABLE,
                    "The runtime closed its /next request before the invoke was delivered.",
                ),
                None,
            ));
        }
    }

    /// Sends `delivery` to the newest parked waiter whose receiver is still alive; gives it back
    /// if there is none.
    fn hand_off(st: &mut State, mut delivery: Delivery) -> Option<Delivery> {
        while let Some(waiter) = st.waiters.pop() {
            match waiter.tx.send(delivery) {
                Ok(()) => return None,
                // That `/next` is gone (receiver dropped); try the next one.
                Err(back) => delivery = back,
            }
        }
        Some(delivery)
    }

    pub(crate) fn dispatch(&self, inv: Invocation) -> Result<InvokeTicket, Rejected> {
        let headers = next_headers(&inv)?;
        let request_id: Arc<str> = Arc::from(inv.request_id);
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.lock();
            if st.closed {
                return Err(Rejected::Closed);
            }
            if st.waiters.is_empty() {
                return Err(Rejected::NoIdleWorker);
            }
            if st.in_flight.contains_key(&request_id) {
                return Err(Rejected::DuplicateRequestId(request_id.to_string()));
            }
            let delivery = Delivery {
                request_id: Arc::clone(&request_id),
                headers,
                payload: inv.payload,
            };
            if Self::hand_off(&mut st, delivery).is_some() {
                return Err(Rejected::NoIdleWorker);
            }
            st.in_flight.insert(Arc::clone(&request_id), tx);
        }
        self.changed.notify_waiters();
        Ok(InvokeTicket {
            request_id,
            rx,
            timing: None,
        })
    }

    /// Takes the ticket sender of an in-flight invoke; `None` for unknown or completed ids.
    pub(crate) fn take(&self, request_id: &str) -> Option<oneshot::Sender<Completion>> {
        self.lock().in_flight.remove(request_id)
    }

    pub(crate) fn fail_all(&self, error_type: &str, message: &str) -> usize {
        let drained = std::mem::take(&mut self.lock().in_flight);
        let n = drained.len();
        if n > 0 {
            let body = crate::error_body(error_type, message);
            for (_, tx) in drained {
                let outcome = Outcome::FunctionError {
                    error_type: error_type.to_owned(),
                    body: body.clone(),
                };
                let _ = tx.send((outcome, None));
            }
        }
        n
    }

    pub(crate) fn record_init_error(&self, err: InitError) {
        self.init_error.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(err);
            true
        });
    }

    /// Rejects further dispatches, drops every parked waiter and fails everything in flight.
    pub(crate) fn close(&self) {
        let waiters = {
            let mut st = self.lock();
            st.closed = true;
            std::mem::take(&mut st.waiters)
        };
        drop(waiters);
        self.changed.notify_waiters();
        self.extensions.close();
        self.telemetry.close();
        self.fail_all(
            ERROR_TYPE_UNAVAILABLE,
            "The runtime API endpoint shut down before the invoke completed.",
        );
    }
}

/// The `/next` response headers for `inv`.
fn next_headers(inv: &Invocation) -> Result<HeaderMap, Rejected> {
    fn value(s: &str, field: &'static str) -> Result<HeaderValue, Rejected> {
        HeaderValue::from_str(s).map_err(|_| Rejected::InvalidHeaderValue(field))
    }
    let mut h = HeaderMap::with_capacity(8);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(HDR_REQUEST_ID, value(&inv.request_id, "request_id")?);
    h.insert(HDR_DEADLINE_MS, HeaderValue::from(inv.deadline_ms));
    h.insert(
        HDR_FUNCTION_ARN,
        value(&inv.invoked_function_arn, "invoked_function_arn")?,
    );
    let optional = [
        (HDR_TRACE_ID, &inv.trace_id, "trace_id"),
        (HDR_CLIENT_CONTEXT, &inv.client_context, "client_context"),
        (
            HDR_COGNITO_IDENTITY,
            &inv.cognito_identity,
            "cognito_identity",
        ),
        (HDR_TENANT_ID, &inv.tenant_id, "tenant_id"),
    ];
    for (name, v, field) in optional {
        if let Some(v) = v {
            h.insert(name, value(v, field)?);
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(id: &str) -> Invocation {
        Invocation {
            request_id: id.to_owned(),
            payload: Bytes::from_static(b"{}"),
            deadline_ms: 1,
            invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            trace_id: None,
            client_context: None,
            cognito_identity: None,
            tenant_id: None,
        }
    }

    fn park(shared: &Shared) -> (u64, oneshot::Receiver<Delivery>) {
        let (tx, rx) = oneshot::channel();
        (shared.park(tx), rx)
    }

    #[test]
    fn serves_the_newest_waiter_first() {
        let shared = Shared::new(RuntimeApiConfig::default());
        let (_, mut old) = park(&shared);
        let (_, mut new) = park(&shared);
        let _t = shared.dispatch(inv("a")).expect("dispatched");
        assert_eq!(&*new.try_recv().expect("newest got it").request_id, "a");
        assert!(old.try_recv().is_err());
        assert_eq!(shared.parked(), 1);
        assert_eq!(shared.in_flight(), 1);
    }

    #[test]
    fn skips_a_waiter_whose_receiver_is_gone() {
        let shared = Shared::new(RuntimeApiConfig::default());
        let (_, mut alive) = park(&shared);
        let (_, dead) = park(&shared);
        drop(dead); // newest, but its connection is gone and the handler never cleaned up
        let _t = shared.dispatch(inv("a")).expect("dispatched");
        assert_eq!(&*alive.try_recv().expect("alive got it").request_id, "a");
        assert_eq!(shared.parked(), 0);
    }

    #[test]
    fn only_dead_waiters_means_rejected() {
        let shared = Shared::new(RuntimeApiConfig::default());
        let (_, dead) = park(&shared);
        drop(dead);
        assert_eq!(
            shared.dispatch(inv("a")).unwrap_err(),
            Rejected::NoIdleWorker
        );
        assert_eq!(shared.in_flight(), 0);
        assert_eq!(shared.parked(), 0);
    }

    #[test]
    fn abandoned_waiter_is_unparked() {
        let shared = Shared::new(RuntimeApiConfig::default());
        let (id, mut rx) = park(&shared);
        shared.abandon(id, &mut rx);
        assert_eq!(shared.parked(), 0);
        assert_eq!(
            shared.dispatch(inv("a")).unwrap_err(),
            Rejected::NoIdleWorker
        );
    }

    #[test]
    fn abandoned_waiter_passes_its_invoke_on() {
        let shared = Shared::new(RuntimeApiConfig::default());
        let (_, mut other) = park(&shared);
        let (id, mut gone) = park(&shared);
        let _t = shared.dispatch(inv("a")).expect("dispatched");
        // The newest waiter got it, then its handler was dropped before writing the response.
        shared.abandon(id, &mut gone);
        assert_eq!(&*other.try_recv().expect("passed on").request_id, "a");
        assert_eq!(shared.in_flight(), 1);
    }

    #[tokio::test]
    async fn abandoned_invoke_with_nobody_parked_fails_its_ticket() {
        let shared = Shared::new(RuntimeApiConfig::default());
        let (id, mut gone) = park(&shared);
        let ticket = shared.dispatch(inv("a")).expect("dispatched");
        shared.abandon(id, &mut gone);
        match ticket.await {
            Outcome::FunctionError { error_type, .. } => {
                assert_eq!(error_type, ERROR_TYPE_UNAVAILABLE)
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(shared.in_flight(), 0);
    }

    #[test]
    fn duplicate_and_invalid_invokes_are_rejected_without_using_a_waiter() {
        let shared = Shared::new(RuntimeApiConfig::default());
        let (_, _a) = park(&shared);
        let (_, _b) = park(&shared);
        let _t = shared.dispatch(inv("a")).expect("dispatched");
        assert_eq!(
            shared.dispatch(inv("a")).unwrap_err(),
            Rejected::DuplicateRequestId("a".into())
        );
        let mut bad = inv("b");
        bad.trace_id = Some("line\nbreak".into());
        assert_eq!(
            shared.dispatch(bad).unwrap_err(),
            Rejected::InvalidHeaderValue("trace_id")
        );
        assert_eq!(shared.parked(), 1);
    }

    #[test]
    fn closed_endpoint_rejects_and_fails_in_flight() {
        let shared = Shared::new(RuntimeApiConfig::default());
        let (_, _a) = park(&shared);
        let (_, _b) = park(&shared);
        let mut t = shared.dispatch(inv("a")).expect("dispatched");
        shared.close();
        assert_eq!(shared.dispatch(inv("b")).unwrap_err(), Rejected::Closed);
        assert_eq!(shared.parked(), 0);
        match t.rx.try_recv().expect("resolved").0 {
            Outcome::FunctionError { error_type, .. } => {
                assert_eq!(error_type, ERROR_TYPE_UNAVAILABLE)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
