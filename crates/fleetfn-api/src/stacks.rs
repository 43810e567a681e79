//! Stack records of `fleetfn deploy` (fleetfn extension, SigV4 like every route):
//! `GET /fleetfn/v1/stacks`, and `GET`/`PUT`/`DELETE /fleetfn/v1/stacks/{name}`. A `PUT` names
//! the revision its writer read in `X-Fleetfn-Stack-Revision` (0: the stack must not exist yet)
//! and is refused with 412 `PreconditionFailedException` when the stack moved on since.

use axum::extract::{Path, Request, State};
use fleetfn_model::{ErrorKind, LambdaError};
use http::{HeaderMap, StatusCode};

use crate::Shared;
use crate::handlers::{ApiResult, json};

/// The revision a write expects (`X-Fleetfn-Stack-Revision`).
pub(crate) const REVISION_HEADER: &str = "x-fleetfn-stack-revision";

/// The header's revision, `None` when absent.
fn revision(headers: &HeaderMap) -> Result<Option<u64>, LambdaError> {
    let Some(v) = headers.get(REVISION_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            LambdaError::new(
                ErrorKind::Validation,
                format!(
                    "X-Fleetfn-Stack-Revision must be the stack's revision as read (a whole \
                     number, 0 for a new stack), not {:?}",
                    String::from_utf8_lossy(v.as_bytes())
                ),
            )
        })
}

/// `GET /fleetfn/v1/stacks`: every stack's name, status, last update and revision.
pub async fn list_stacks(State(s): State<Shared>) -> ApiResult {
    Ok(json(StatusCode::OK, &s.cp.list_stacks().await?))
}

/// `GET /fleetfn/v1/stacks/{name}`: the stack's record.
pub async fn get_stack(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult {
    Ok(json(StatusCode::OK, &s.cp.get_stack(&name).await?))
}

/// `PUT /fleetfn/v1/stacks/{name}`: stores the record if the stack is at the header's revision;
/// answers the stored record (with its new `Revision`).
pub async fn put_stack(
    State(s): State<Shared>,
    Path(name): Path<String>,
    req: Request,
) -> ApiResult {
    let expected = revision(req.headers())?.ok_or_else(|| {
        LambdaError::new(
            ErrorKind::Validation,
            "X-Fleetfn-Stack-Revision is required: the stack's revision as read (0 for a new stack)",
        )
    })?;
    // Buffered within the control limit by `auth::authenticate`; the record's own limit
    // (1 MiB) is the service's.
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|e| LambdaError::bad_content(e.to_string()))?;
    Ok(json(
        StatusCode::OK,
        &s.cp.put_stack(&name, expected, &body).await?,
    ))
}

/// `DELETE /fleetfn/v1/stacks/{name}` (204): the record only, at the header's revision if given.
pub async fn delete_stack(
    State(s): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    s.cp.delete_stack(&name, revision(&headers)?).await?;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_header_is_a_whole_number() {
        let mut h = HeaderMap::new();
        assert_eq!(revision(&h).unwrap(), None);
        h.insert(REVISION_HEADER, "0".parse().unwrap());
        assert_eq!(revision(&h).unwrap(), Some(0));
        h.insert(REVISION_HEADER, "17".parse().unwrap());
        assert_eq!(revision(&h).unwrap(), Some(17));
        for bad in ["-1", "one", "1.5", ""] {
            h.insert(REVISION_HEADER, bad.parse().unwrap());
            let e = revision(&h).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{bad}");
            assert!(e.message.contains("X-Fleetfn-Stack-Revision"));
        }
    }
}
