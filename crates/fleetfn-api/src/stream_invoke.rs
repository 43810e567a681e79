//! `InvokeWithResponseStream` (`POST /2021-11-15/functions/{FunctionName}/response-streaming-invocations`):
//! Invoke's SigV4, headers and qualifier rules (`X-Amz-Invocation-Type` `RequestResponse` or
//! `DryRun` only), then [`fleetfn_contracts::Invoker::invoke_stream`]. The answer is an AWS event
//! stream ([`crate::eventstream`]): a `PayloadChunk` per chunk as the function writes it, then
//! `InvokeComplete`, which carries a function's error. Throttles and routing errors come before
//! the stream, as the usual error documents.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use fleetfn_contracts::{InvokeRequest, StreamingOutcome};
use fleetfn_model::LambdaError;
use http::{HeaderValue, StatusCode};

use crate::Shared;
use crate::error::ApiError;
use crate::eventstream::{Frames, buffered};
use crate::handlers::X_AMZN_REQUEST_ID;
use crate::invoke::{
    InvocationType, InvokeOptions, X_AMZ_EXECUTED_VERSION, X_AMZ_INVOCATION_TYPE, function_ref,
    insert, invoker, new_request_id, payload,
};

/// The content type of an event stream.
pub(crate) const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

pub async fn invoke_with_response_stream(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let fref = function_ref(&s, &function, req.uri())?;
    // This operation's enum has no `Event`.
    if let Some(v) = req.headers().get(X_AMZ_INVOCATION_TYPE)
        && !matches!(v.as_bytes(), b"RequestResponse" | b"DryRun")
    {
        return Err(LambdaError::validation(
            &String::from_utf8_lossy(v.as_bytes()),
            "invocationType",
            "Member must satisfy enum value set: [RequestResponse, DryRun]",
        )
        .into());
    }
    let InvokeOptions {
        invocation_type,
        client_context,
        tenant_id,
    } = InvokeOptions::parse(req.headers())?;
    let request_id = new_request_id();
    let version =
        s.cp.resolve_invoke_target(&fref, rand::random::<f64>())
            .await?;
    let executed = version.version.clone();
    if invocation_type == InvocationType::DryRun {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        insert(&mut resp, X_AMZ_EXECUTED_VERSION, &executed);
        return Ok(resp);
    }
    let invoker = invoker(&s)?;
    let payload = payload(req.into_body()).await?;
    let outcome = invoker
        .invoke_stream(InvokeRequest {
            request_id: request_id.clone(),
            version,
            payload,
            client_context,
            tenant_id,
        })
        .await?;
    let body = match outcome {
        StreamingOutcome::Buffered(o) => Body::from(buffered(&o)),
        StreamingOutcome::Streamed(st) => Body::from_stream(Frames::new(st.parts)),
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(EVENT_STREAM),
    );
    insert(&mut resp, X_AMZN_REQUEST_ID, &request_id);
    insert(&mut resp, X_AMZ_EXECUTED_VERSION, &executed);
    Ok(resp)
}
