//! Asynchronous invocation on the API: the event invoke config operations
//! (Put/Update/Get/Delete/ListFunctionEventInvokeConfigs) and the legacy `InvokeAsync`; Invoke
//! with `InvocationType=Event` is in [`crate::invoke`], which hands both to [`enqueue`]. And the
//! event source mapping operations (SQS).

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fleetfn_contracts::EventRequest;
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::limits::MAX_ASYNC_PAYLOAD_BYTES;
use fleetfn_model::{ErrorKind, LambdaError};
use http::{HeaderValue, StatusCode};

use crate::Shared;
use crate::handlers::{ApiResult, Query, X_AMZN_REQUEST_ID, body, fref, json};
use crate::invoke::new_request_id;

async fn read_body(req: Request) -> Result<Bytes, LambdaError> {
    axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|e| LambdaError::bad_content(e.to_string()))
}

/// Stores an asynchronous invoke of `fref` (already resolved once, so a missing function or
/// qualifier was refused) and answers 202 with its request id once it is committed.
pub(crate) async fn enqueue(
    s: &Shared,
    fref: FunctionRef,
    mut payload: Bytes,
    client_context: Option<String>,
    tenant_id: Option<String>,
    operation: &str,
) -> Result<(String, Response), LambdaError> {
    if payload.len() > MAX_ASYNC_PAYLOAD_BYTES {
        return Err(LambdaError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "Request must be smaller than {MAX_ASYNC_PAYLOAD_BYTES} bytes for the {operation} operation (asynchronous invocation)"
            ),
        ));
    }
    let Some(events) = &s.events else {
        return Err(LambdaError::service(
            "This fleetfn server has no asynchronous invocation queue attached, so it cannot take InvocationType=Event.",
        ));
    };
    if payload.is_empty() {
        payload = Bytes::from_static(b"{}");
    }
    let request_id = new_request_id();
    events
        .enqueue(EventRequest {
            request_id: request_id.clone(),
            function: fref.name,
            qualifier: fref.qualifier,
            payload,
            client_context,
            tenant_id,
        })
        .await?;
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(X_AMZN_REQUEST_ID, v);
    }
    Ok((request_id, resp))
}

/// `POST /2014-11-13/functions/{function}/invoke-async`: the deprecated InvokeAsync, an
/// asynchronous invoke of the unqualified function (or the qualifier in the ARN) answering
/// `{"Status": 202}`.
pub async fn invoke_async(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let f = FunctionRef::parse(&function, s.cp.scope(), 170)?;
    s.cp.resolve_invoke_target(&f, 0.0).await?;
    let payload = read_body(req).await?;
    let (_, resp) = enqueue(&s, f, payload, None, None, "InvokeAsync").await?;
    let (mut parts, _) = resp.into_parts();
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(Response::from_parts(
        parts,
        axum::body::Body::from(r#"{"Status":202}"#),
    ))
}

/// `PUT` (Put: replace) and `POST` (Update: merge) of
/// `/2019-09-25/functions/{function}/event-invoke-config`.
async fn put_or_update(s: Shared, function: String, req: Request, merge: bool) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = fref(&s, &function, 140, &q)?;
    let b = read_body(req).await?;
    let cfg = s.cp.put_event_invoke_config(&f, body(&b)?, merge).await?;
    Ok(json(StatusCode::OK, &cfg))
}

pub async fn put_event_invoke_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    put_or_update(s, function, req, false).await
}

pub async fn update_event_invoke_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    put_or_update(s, function, req, true).await
}

pub async fn get_event_invoke_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = fref(&s, &function, 140, &q)?;
    Ok(json(
        StatusCode::OK,
        &s.cp.get_event_invoke_config(&f).await?,
    ))
}

pub async fn delete_event_invoke_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = fref(&s, &function, 140, &q)?;
    s.cp.delete_event_invoke_config(&f).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_event_invoke_configs(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = FunctionRef::parse(&function, s.cp.scope(), 140)?;
    if f.qualifier.is_some() {
        return Err(LambdaError::invalid(
            "ListFunctionEventInvokeConfigs takes an unqualified function name or ARN.",
        )
        .into());
    }
    let max = q.max_items_up_to(50)?;
    Ok(json(
        StatusCode::OK,
        &s.cp
            .list_event_invoke_configs(&f, q.get("Marker"), max)
            .await?,
    ))
}

// ----- event source mappings -----

pub async fn create_event_source_mapping(State(s): State<Shared>, b: Bytes) -> ApiResult {
    let cfg = s.cp.create_event_source_mapping(body(&b)?).await?;
    Ok(json(StatusCode::ACCEPTED, &cfg))
}

pub async fn list_event_source_mappings(
    State(s): State<Shared>,
    uri: axum::http::Uri,
) -> ApiResult {
    let q = Query::parse(uri.query());
    let max = match q.get("MaxItems") {
        None => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| {
            LambdaError::validation(
                v,
                "maxItems",
                "Member must be an integer between 1 and 10000",
            )
        })?),
    };
    Ok(json(
        StatusCode::OK,
        &s.cp
            .list_event_source_mappings(
                q.get("EventSourceArn"),
                q.get("FunctionName"),
                q.get("Marker"),
                max,
            )
            .await?,
    ))
}

pub async fn get_event_source_mapping(
    State(s): State<Shared>,
    Path(uuid): Path<String>,
) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        &s.cp.get_event_source_mapping(&uuid).await?,
    ))
}

pub async fn update_event_source_mapping(
    State(s): State<Shared>,
    Path(uuid): Path<String>,
    b: Bytes,
) -> ApiResult {
    let cfg = s.cp.update_event_source_mapping(&uuid, body(&b)?).await?;
    Ok(json(StatusCode::ACCEPTED, &cfg))
}

pub async fn delete_event_source_mapping(
    State(s): State<Shared>,
    Path(uuid): Path<String>,
) -> ApiResult {
    let cfg = s.cp.delete_event_source_mapping(&uuid).await?;
    Ok(json(StatusCode::ACCEPTED, &cfg))
}
