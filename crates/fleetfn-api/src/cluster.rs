//! Cluster membership over HTTP: join tokens (`/fleetfn/v1/join-tokens`, admin, SigV4), the
//! joined agents (`GET /fleetfn/v1/agents`, admin) and the join itself (`POST
//! /fleetfn/v1/agents/join`), which is outside SigV4: its bearer is a join token, and the answer
//! is the agent's own credential. Neither opens the admin API. A joined agent fetches code
//! packages by digest (`GET /fleetfn/v1/agent/packages/{sha256}`) with `Bearer
//! <agent id>.<credential>`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use fleetfn_model::{ErrorKind, LambdaError};
use fleetfn_server::cluster::{CreateJoinToken, JoinRequest};
use http::{HeaderMap, StatusCode};

use crate::auth::{BodyReadError, body_timed_out, read_body_within, refuse_unread};
use crate::error::ApiError;
use crate::handlers::body;
use crate::{AppState, Shared};

type ApiResult = Result<Response, ApiError>;

/// The largest join request read (a few hundred bytes in practice).
pub const MAX_JOIN_BYTES: usize = 64 * 1024;

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

pub async fn create_join_token(State(s): State<Shared>, b: Bytes) -> ApiResult {
    let req: CreateJoinToken = body(&b)?;
    let doc = s.cp.create_join_token(req, now()).await?;
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

pub async fn list_join_tokens(State(s): State<Shared>) -> ApiResult {
    Ok(Json(s.cp.list_join_tokens().await?).into_response())
}

pub async fn revoke_join_token(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(s.cp.revoke_join_token(&id).await?).into_response())
}

pub async fn list_agents(State(s): State<Shared>) -> ApiResult {
    Ok(Json(s.cp.list_agents().await?).into_response())
}

/// `DELETE /fleetfn/v1/agents/{id}`: its credential opens nothing from now on.
pub async fn remove_agent(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(s.cp.remove_agent(&id).await?).into_response())
}

/// `Authorization: Bearer <join token>`, then the offer; 403 AccessDeniedException for a token
/// that is missing or not valid. Anyone may call it, so its body is read within
/// [`crate::auth::BODY_READ_TIMEOUT`] (408 and the connection closed otherwise) and at most
/// [`MAX_JOIN_BYTES`] of it.
pub async fn join(State(s): State<Shared>, req: axum::extract::Request) -> ApiResult {
    let (parts, raw) = req.into_parts();
    let headers = &parts.headers;
    let too_large = || {
        LambdaError::new(
            ErrorKind::RequestEntityTooLarge,
            format!("A join request must be at most {MAX_JOIN_BYTES} bytes"),
        )
    };
    if axum::body::HttpBody::size_hint(&raw)
        .exact()
        .is_some_and(|n| n > MAX_JOIN_BYTES as u64)
    {
        return Ok(refuse_unread(&too_large()));
    }
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            LambdaError::new(
                ErrorKind::AccessDenied,
                "A join needs `Authorization: Bearer <join token>` (fleetfn token create).",
            )
        })?;
    let b = match read_body_within(raw, MAX_JOIN_BYTES).await {
        Ok(b) => b,
        Err(BodyReadError::TimedOut) => return Ok(body_timed_out("join request")),
        Err(BodyReadError::TooLarge) => return Ok(refuse_unread(&too_large())),
        Err(BodyReadError::Failed(e)) => {
            return Err(
                LambdaError::bad_content(format!("Could not read the join request: {e}")).into(),
            );
        }
    };
    let req: JoinRequest = body(&b)?;
    let joined = s.cp.join_agent(token, req, now()).await?;
    Ok((StatusCode::CREATED, Json(joined)).into_response())
}

/// `Authorization: Bearer <agent id>.<credential>`, checked against the joined agents; 403
/// AccessDeniedException otherwise.
async fn authenticate_agent(s: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let denied = || {
        LambdaError::new(
            ErrorKind::AccessDenied,
            "This endpoint is for joined agents: `Authorization: Bearer <agent id>.<credential>`.",
        )
    };
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(denied)?;
    let (agent_id, credential) = bearer.split_once('.').ok_or_else(denied)?;
    if !s.cp.agent_credential_valid(agent_id, credential).await? {
        return Err(denied().into());
    }
    Ok(agent_id.to_string())
}

/// A code package by sha256 (hex) for a joined agent.
pub async fn agent_package(
    State(s): State<Shared>,
    Path(hex): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    authenticate_agent(&s, &headers).await?;
    crate::handlers::package_response(&s, &hex).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{Method, Request, header};

    use crate::console::Console;
    use crate::console::tests::{NeverBody, app};

    #[tokio::test(start_paused = true)]
    async fn a_join_body_that_never_comes_is_answered_408_after_10_seconds() {
        let app = app(Console::default());
        let start = tokio::time::Instant::now();
        let a = app
            .call(
                Request::builder()
                    .method(Method::POST)
                    .uri("/fleetfn/v1/agents/join")
                    .header(header::AUTHORIZATION, "Bearer anything")
                    .body(Body::new(NeverBody(100)))
                    .unwrap(),
            )
            .await;
        assert_eq!(start.elapsed(), crate::auth::BODY_READ_TIMEOUT);
        assert_eq!(a.status, http::StatusCode::REQUEST_TIMEOUT);
        assert_eq!(a.headers[header::CONNECTION], "close");
        assert_eq!(a.headers["x-amzn-errortype"], "RequestTimeoutException");
        // Declared too large: refused at once.
        let a = app
            .call(
                Request::builder()
                    .method(Method::POST)
                    .uri("/fleetfn/v1/agents/join")
                    .header(header::AUTHORIZATION, "Bearer anything")
                    .body(Body::new(NeverBody(super::MAX_JOIN_BYTES as u64 + 1)))
                    .unwrap(),
            )
            .await;
        assert_eq!(a.status, http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(a.headers[header::CONNECTION], "close");
        assert_eq!(start.elapsed(), crate::auth::BODY_READ_TIMEOUT);
    }
}
