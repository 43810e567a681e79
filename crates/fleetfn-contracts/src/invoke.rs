//! The data plane as the API sees it: [`Invoker`] runs an [`InvokeRequest`] and serves the
//! status, environments and cost documents.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use fleetfn_model::Result;
use fleetfn_server::VersionRecord;

use crate::{CostDocument, EnvironmentsDocument, SeriesDocument, StatusDocument};

/// What the data plane is asked to run.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The request id: `x-amzn-RequestId` to the caller, `Lambda-Runtime-Aws-Request-Id` to the
    /// function.
    pub request_id: String,
    pub version: Arc<VersionRecord>,
    pub payload: Bytes,
    /// Base64 client context, passed through to the runtime.
    pub client_context: Option<String>,
    pub tenant_id: Option<String>,
}

/// The result of a synchronous invoke.
#[derive(Debug, Clone)]
pub struct InvokeOutcome {
    pub payload: Bytes,
    /// `Unhandled` (or the runtime's type) when the function failed.
    pub function_error: Option<String>,
}

// The parts of a streamed response are the agent protocol's own, so they pass through as is.
pub use fleetfn_proto::{StreamError, StreamPart};

/// A response the function streams (`Lambda-Runtime-Function-Response-Mode: streaming`).
/// Dropping the receiver abandons the invoke (the client went away).
#[derive(Debug)]
pub struct InvokeStream {
    /// The content type the runtime declared for its response, if any:
    /// `application/vnd.awslambda.http-integration-response` means the body starts with a
    /// JSON prelude (`statusCode`, `headers`, `cookies`) and 8 NUL bytes, as for function URLs.
    pub content_type: Option<String>,
    pub parts: tokio::sync::mpsc::Receiver<StreamPart>,
}

/// What an invoke that accepts a streamed response got: a whole answer (the runtime answered
/// in buffered mode, or the function failed before it started streaming) or a stream.
#[derive(Debug)]
pub enum StreamingOutcome {
    Buffered(InvokeOutcome),
    Streamed(InvokeStream),
}

/// The data plane, as the API sees it.
pub trait Invoker: Send + Sync {
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<InvokeOutcome>> + Send + '_>>;

    /// An invoke whose response may be streamed (`InvokeWithResponseStream`, function URLs in
    /// `RESPONSE_STREAM` mode). Throttles and routing errors are `Err` as for [`Invoker::invoke`];
    /// once the function answers, its response comes back as it is written. By default the
    /// whole answer is awaited ([`StreamingOutcome::Buffered`]).
    fn invoke_stream(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<StreamingOutcome>> + Send + '_>> {
        Box::pin(async move { self.invoke(req).await.map(StreamingOutcome::Buffered) })
    }

    /// Every execution environment with its instance, zone and state (`GET
    /// /fleetfn/v1/environments`).
    fn environments(&self) -> EnvironmentsDocument {
        EnvironmentsDocument::default()
    }

    /// The cost report from `since` to now (`GET /fleetfn/v1/cost`).
    fn cost(
        &self,
        since: jiff::Timestamp,
    ) -> Pin<Box<dyn Future<Output = Result<CostDocument>> + Send + '_>>;

    /// The fleet at a glance (`GET /fleetfn/v1/status`, documented in docs/STATUS.md).
    fn status(&self) -> Pin<Box<dyn Future<Output = Result<StatusDocument>> + Send + '_>> {
        Box::pin(async { Ok(StatusDocument::empty(true)) })
    }

    /// The function's one-second samples of the last 15 minutes from the data plane's memory
    /// (`GET /fleetfn/v1/functions/{function}/series`): of `versions` (as the store spells
    /// them, `"1"` or `"$LATEST.PUBLISHED"`; `None`: every version that has samples), only the
    /// samples after the unix second `since`. The caller has checked that the function exists.
    /// By default there are none.
    fn series(
        &self,
        function: &str,
        versions: Option<&[String]>,
        since: Option<u64>,
    ) -> SeriesDocument {
        let _ = (versions, since);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        SeriesDocument::empty(function, now)
    }
}

/// An asynchronous invoke to store: `InvocationType=Event`, `InvokeAsync`, or the record a
/// Lambda destination receives. The version is resolved when it is delivered.
#[derive(Debug, Clone)]
pub struct EventRequest {
    /// `x-amzn-RequestId` of the 202, and the request id the function sees.
    pub request_id: String,
    pub function: String,
    /// As invoked (`None`: unqualified); its event invoke config applies.
    pub qualifier: Option<String>,
    pub payload: Bytes,
    pub client_context: Option<String>,
    pub tenant_id: Option<String>,
}

/// How deep the asynchronous queue is (`fleetfn status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsyncQueueStatus {
    /// Events stored: waiting, waiting for a retry, or being delivered.
    pub depth: u64,
    /// Events being delivered now (under a lease).
    pub in_flight: u64,
    /// Age of the oldest stored event in seconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_seconds: Option<f64>,
}

/// The asynchronous invocation queue, as the API sees it.
pub trait AsyncInvoker: Send + Sync {
    /// Stores the event durably; `Ok` only once it is committed.
    fn enqueue(&self, req: EventRequest) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>;

    /// The queue's depth now.
    fn queue_status(&self) -> Pin<Box<dyn Future<Output = Result<AsyncQueueStatus>> + Send + '_>>;
}
