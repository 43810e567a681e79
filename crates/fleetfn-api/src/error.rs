//! Renders a [`LambdaError`] the way AWS Lambda does: status code, `x-amzn-ErrorType`, and a JSON
//! body with `Type` and `message`/`Message` (botocore reads either).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use fleetfn_model::{ErrorKind, LambdaError};
use http::{HeaderValue, StatusCode};

/// Wrapper so handlers can `?` a [`LambdaError`] into an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub LambdaError);

impl From<LambdaError> for ApiError {
    fn from(e: LambdaError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        render(&self.0)
    }
}

pub fn render(e: &LambdaError) -> Response {
    let sender = if e.kind.status() < 500 {
        "User"
    } else {
        "Service"
    };
    let mut body = serde_json::json!({
        "Type": sender,
        "message": e.message,
        "Message": e.message,
        "__type": e.kind.type_name(),
    });
    if e.kind == ErrorKind::TooManyRequests {
        if let Some(r) = &e.reason {
            body["Reason"] = serde_json::Value::String(r.clone());
        }
        if let Some(s) = e.retry_after_secs {
            body["retryAfterSeconds"] = serde_json::Value::String(s.to_string());
        }
    }
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-amzn-ErrorType",
        HeaderValue::from_static(e.kind.type_name()),
    );
    if let Some(s) = e.retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        h.insert(http::header::RETRY_AFTER, v);
    }
    resp
}
