//! The front door of every API request: body size limit, then AWS Signature V4 verification
//! against the admin key pair. The verified body is handed on as bytes.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use fleetfn_model::limits::{
    MAX_CODE_REQUEST_BYTES, MAX_CONTROL_REQUEST_BYTES, MAX_SYNC_PAYLOAD_BYTES,
};
use fleetfn_model::{ErrorKind, LambdaError};
use fleetfn_sigv4::{RequestParts, VerifyConfig, sha256_hex, verify};
use http_body_util::BodyExt;

use crate::AppState;
use crate::error::render;

/// The admin key pair requests must be signed with.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Body limit and its error for a request path.
fn limit_for(method: &http::Method, path: &str) -> (usize, LambdaError) {
    if path.ends_with("/invocations") {
        (
            MAX_SYNC_PAYLOAD_BYTES,
            LambdaError::new(
                ErrorKind::RequestTooLarge,
                format!(
                    "Request must be smaller than {MAX_SYNC_PAYLOAD_BYTES} bytes for the InvokeFunction operation"
                ),
            ),
        )
    } else if (method == http::Method::POST
        && path.trim_end_matches('/') == "/2015-03-31/functions")
        || path.ends_with("/code")
    {
        let op = if path.ends_with("/code") {
            "UpdateFunctionCode"
        } else {
            "CreateFunction"
        };
        (
            MAX_CODE_REQUEST_BYTES,
            LambdaError::new(
                ErrorKind::RequestEntityTooLarge,
                format!(
                    "Request must be smaller than {MAX_CODE_REQUEST_BYTES} bytes for the {op} operation"
                ),
            ),
        )
    } else {
        (
            MAX_CONTROL_REQUEST_BYTES,
            LambdaError::new(
                ErrorKind::RequestEntityTooLarge,
                format!("Request must be smaller than {MAX_CONTROL_REQUEST_BYTES} bytes"),
            ),
        )
    }
}

fn auth_error(e: &fleetfn_sigv4::AuthError) -> LambdaError {
    let kind = match e.aws_error_type() {
        "MissingAuthenticationTokenException" => ErrorKind::MissingAuthenticationToken,
        "UnrecognizedClientException" => ErrorKind::UnrecognizedClient,
        "IncompleteSignatureException" => ErrorKind::IncompleteSignature,
        _ => ErrorKind::InvalidSignature,
    };
    LambdaError::new(kind, e.message())
}

/// Middleware: limit, buffer, verify, pass on.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let (limit, too_large) = limit_for(&parts.method, parts.uri.path());
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return render(&too_large);
    }
    let bytes: Bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return render(&too_large);
            }
            return render(&LambdaError::bad_content(format!(
                "Could not read the request body: {e}"
            )));
        }
    };
    let query = parts.uri.query().unwrap_or("");
    let rp = RequestParts::new(
        parts.method.as_str(),
        parts.uri.path(),
        query,
        &parts.headers,
    );
    let creds = &state.credentials;
    let cfg = VerifyConfig::new(state.cp.scope().region.clone(), "lambda");
    let verified = verify(
        &rp,
        &sha256_hex(&bytes),
        jiff::Timestamp::now(),
        &cfg,
        |akid: &str| (akid == creds.access_key_id).then(|| creds.secret_access_key.clone()),
    );
    if let Err(e) = verified {
        return render(&auth_error(&e));
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
