//! The Invoke operation: header and qualifier rules as LMI applies them, then a hand-off to the
//! data plane through [`fleetfn_contracts::Invoker`].

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use fleetfn_contracts::{InvokeOutcome, InvokeRequest};
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::limits::MAX_TIMEOUT_SECS;
use fleetfn_model::{LambdaError, Result};
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::Shared;
use crate::error::ApiError;
use crate::handlers::{X_AMZN_REQUEST_ID, query_param};

// Header names as `HeaderName`s: a `&str` name is parsed (and lowercased) on every use.
pub(crate) const X_AMZ_INVOCATION_TYPE: HeaderName =
    HeaderName::from_static("x-amz-invocation-type");
const X_AMZ_LOG_TYPE: HeaderName = HeaderName::from_static("x-amz-log-type");
const X_AMZ_CLIENT_CONTEXT: HeaderName = HeaderName::from_static("x-amz-client-context");
const X_AMZ_TENANT_ID: HeaderName = HeaderName::from_static("x-amz-tenant-id");
pub(crate) const X_AMZ_EXECUTED_VERSION: HeaderName =
    HeaderName::from_static("x-amz-executed-version");
const X_AMZ_FUNCTION_ERROR: HeaderName = HeaderName::from_static("x-amz-function-error");

fn header<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

/// The Invoke headers: `X-Amz-Invocation-Type`, `X-Amz-Log-Type`, `X-Amz-Client-Context` and
/// `X-Amz-Tenant-Id`, checked.
#[derive(Debug)]
pub(crate) struct InvokeOptions {
    pub(crate) invocation_type: InvocationType,
    pub(crate) client_context: Option<String>,
    pub(crate) tenant_id: Option<String>,
}

impl InvokeOptions {
    pub(crate) fn parse(headers: &HeaderMap) -> Result<Self> {
        let invocation_type = match header(headers, &X_AMZ_INVOCATION_TYPE) {
            None | Some("RequestResponse") => InvocationType::RequestResponse,
            Some("Event") => InvocationType::Event,
            Some("DryRun") => InvocationType::DryRun,
            Some(other) => {
                return Err(LambdaError::validation(
                    other,
                    "invocationType",
                    "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
                ));
            }
        };
        match header(headers, &X_AMZ_LOG_TYPE) {
            None | Some("None") => {}
            Some("Tail") => {
                return Err(LambdaError::invalid(
                    "Tail logs are not supported for functions configured with capacity provider. Read them with `fleetfn logs`.",
                ));
            }
            Some(other) => {
                return Err(LambdaError::validation(
                    other,
                    "logType",
                    "Member must satisfy enum value set: [None, Tail]",
                ));
            }
        }
        let client_context = header(headers, &X_AMZ_CLIENT_CONTEXT).map(str::to_string);
        if let Some(cc) = &client_context
            && cc.len() > 3583
        {
            return Err(LambdaError::invalid(
                "Client context must be at most 3583 bytes of base64 (2.5 KB of JSON).",
            ));
        }
        let tenant_id = header(headers, &X_AMZ_TENANT_ID).map(str::to_string);
        Ok(Self {
            invocation_type,
            client_context,
            tenant_id,
        })
    }
}

pub async fn invoke(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let fref = function_ref(&s, &function, req.uri())?;
    let InvokeOptions {
        invocation_type,
        client_context,
        tenant_id,
    } = InvokeOptions::parse(req.headers())?;
    let request_id = new_request_id();
    let draw = rand::random::<f64>();
    let version = s.cp.resolve_invoke_target(&fref, draw).await?;
    let executed = version.version.clone();
    if invocation_type == InvocationType::DryRun {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        insert(&mut resp, X_AMZ_EXECUTED_VERSION, &executed);
        return Ok(resp);
    }
    if invocation_type == InvocationType::Event {
        let payload = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .map_err(|e| LambdaError::bad_content(e.to_string()))?;
        // The version is drawn when the event is delivered, so no X-Amz-Executed-Version.
        let (_, resp) =
            crate::events::enqueue(&s, fref, payload, client_context, tenant_id, "Invoke").await?;
        return Ok(resp);
    }
    let invoker = invoker(&s)?;
    let payload = payload(req.into_body()).await?;
    let timeout = version.config.timeout;
    let run = invoker.invoke(InvokeRequest {
        request_id: request_id.clone(),
        version,
        payload,
        client_context,
        tenant_id,
    });
    let outcome = capped(run, timeout, &request_id).await?;
    let mut resp = Response::new(Body::from(outcome.payload));
    insert(&mut resp, X_AMZN_REQUEST_ID, &request_id);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    insert(&mut resp, X_AMZ_EXECUTED_VERSION, &executed);
    if let Some(fe) = &outcome.function_error {
        insert(&mut resp, X_AMZ_FUNCTION_ERROR, fe);
    }
    Ok(resp)
}

/// The function an invoke names: the path's name or ARN with the `Qualifier` parameter.
pub(crate) fn function_ref(s: &Shared, function: &str, uri: &http::Uri) -> Result<FunctionRef> {
    let qualifier = query_param(uri.query(), "Qualifier");
    FunctionRef::parse(function, s.cp.scope(), 256)?.with_query_qualifier(qualifier.as_deref())
}

/// The data plane, or the error of a server without one.
pub(crate) fn invoker(s: &Shared) -> Result<&std::sync::Arc<dyn fleetfn_contracts::Invoker>> {
    s.invoker.as_ref().ok_or_else(|| {
        LambdaError::service(
            "This fleetfn server has no data plane attached, so it cannot run invokes.",
        )
    })
}

/// An invoke's payload (already verified and limited by `auth::authenticate`); as on AWS, an
/// invoke without one hands the function an empty JSON object.
pub(crate) async fn payload(body: Body) -> Result<bytes::Bytes> {
    let payload = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| LambdaError::bad_content(e.to_string()))?;
    if payload.is_empty() {
        return Ok(bytes::Bytes::from_static(b"{}"));
    }
    Ok(payload)
}

pub(crate) fn insert(resp: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Awaits a synchronous invoke of a function whose timeout is `timeout_secs`. A function may
/// run up to 90 minutes for asynchronous and mapping invokes; a caller who waits gets the
/// timeout error after 15 minutes, as on AWS, while the invoke goes on (LMI does not stop a
/// timed-out invoke either). Shorter timeouts are the agent's to enforce: no timer here.
pub(crate) async fn capped(
    run: impl std::future::Future<Output = Result<InvokeOutcome>>,
    timeout_secs: u32,
    request_id: &str,
) -> Result<InvokeOutcome> {
    if timeout_secs <= MAX_TIMEOUT_SECS {
        return run.await;
    }
    let limit = std::time::Duration::from_secs(u64::from(MAX_TIMEOUT_SECS));
    match tokio::time::timeout(limit, run).await {
        Ok(r) => r,
        Err(_) => Ok(InvokeOutcome {
            payload: bytes::Bytes::from(sync_timeout_body(request_id, limit)),
            function_error: Some("Unhandled".into()),
        }),
    }
}

/// The error a synchronous caller gets when a function with a longer timeout is still running
/// after 15 minutes: the `Sandbox.Timedout` document the agent sends for its own timeouts.
fn sync_timeout_body(request_id: &str, after: std::time::Duration) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Timedout {
        error_message: String,
        error_type: &'static str,
    }
    serde_json::to_vec(&Timedout {
        error_message: format!(
            "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
            after.as_secs_f64()
        ),
        error_type: "Sandbox.Timedout",
    })
    .unwrap_or_default()
}

/// A random (version 4) UUID as a request id, from the thread's CSPRNG (`rand`'s ChaCha,
/// seeded from the OS): `Uuid::new_v4` asks the kernel for every id, a syscall per request.
pub(crate) fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_synchronous_caller_waits_at_most_15_minutes() {
        let start = tokio::time::Instant::now();
        let out = capped(std::future::pending(), 5400, "r-1").await.unwrap();
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(900));
        assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
        let doc: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(doc["errorType"], "Sandbox.Timedout");
        assert_eq!(
            doc["errorMessage"],
            "RequestId: r-1 Error: Task timed out after 900.00 seconds"
        );
        // An answer before then is the answer.
        let quick = async {
            tokio::time::sleep(std::time::Duration::from_secs(899)).await;
            Ok(InvokeOutcome {
                payload: bytes::Bytes::from_static(b"{}"),
                function_error: None,
            })
        };
        assert!(
            capped(quick, 5400, "r-2")
                .await
                .unwrap()
                .function_error
                .is_none()
        );
        // Up to 900 s the agent's own timeout applies: no timer here.
        let slow = async {
            tokio::time::sleep(std::time::Duration::from_secs(2000)).await;
            Ok(InvokeOutcome {
                payload: bytes::Bytes::from_static(b"{}"),
                function_error: None,
            })
        };
        assert!(
            capped(slow, 900, "r-3")
                .await
                .unwrap()
                .function_error
                .is_none()
        );
    }
    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| super::new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(id.len(), 36);
        }
    }
}
