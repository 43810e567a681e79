//! The web console's server side (issue 17): the embedded single-page app under `/console/`
//! ([`assets`]) and its sessions ([`session`]). The console has no operations of its own: the
//! page calls the same API routes as the AWS CLI, authenticated by the session cookie and its
//! CSRF token instead of SigV4 (see `crate::auth`). Every answer under `/console` carries a
//! strict Content-Security-Policy (the page's own scripts, styles and API only; no framing) and
//! the usual hardening headers (`nosniff`, no referrer, no framing, same-origin opener and
//! resource policies).

mod assets;
mod session;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{any, get};
use http::{HeaderValue, StatusCode, header};

pub use session::{
    COOKIE_NAME, CSRF_HEADER, Console, FAILURE_WINDOW, MAX_FAILED_SIGN_INS, MAX_SESSIONS,
    MAX_SIGN_IN_BYTES, SESSION_TTL, SessionDocument,
};

use crate::Shared;

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (outside the API's SigV4 layer).
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/console", get(redirect))
        .route("/console/", get(assets::index))
        .route("/console/assets/{*path}", get(assets::asset))
        .route(
            "/console/session",
            get(session::get_session)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .route("/console/{*rest}", any(async || assets::not_found()))
        .layer(axum::middleware::from_fn(security_headers))
}

/// `GET /console`: the page lives at `/console/` (its relative URLs need the slash).
async fn redirect() -> Response {
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/console/"));
    resp
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[cfg(test)]
pub(crate) mod tests;
