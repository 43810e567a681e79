//! The console's files, embedded in the binary (`include_bytes!` of a fixed list under
//! `crates/fleetfn-api/console/`): `index.html` at `/console/`, every file at
//! `/console/assets/<path>`. A path is looked up by exact name in the list, so nothing outside
//! it can be named (`..` and its encodings included). Each file has an ETag (from its SHA-256,
//! computed once) and `Cache-Control: no-cache`, so a reload costs a 304; `index.html` at
//! `/console/` is `no-store`.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::Path;
use axum::response::Response;
use fleetfn_model::{ErrorKind, LambdaError};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::error::render;

/// (path under `/console/assets/`, content) of every console file.
const FILES: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../console/index.html")),
    ("app.css", include_bytes!("../../console/app.css")),
    ("favicon.svg", include_bytes!("../../console/favicon.svg")),
    ("js/api.js", include_bytes!("../../console/js/api.js")),
    ("js/app.js", include_bytes!("../../console/js/app.js")),
    ("js/charts.js", include_bytes!("../../console/js/charts.js")),
    (
        "js/pages/overview.js",
        include_bytes!("../../console/js/pages/overview.js"),
    ),
    (
        "js/pages/provider.js",
        include_bytes!("../../console/js/pages/provider.js"),
    ),
    (
        "js/pages/cost.js",
        include_bytes!("../../console/js/pages/cost.js"),
    ),
    (
        "js/pages/forms.js",
        include_bytes!("../../console/js/pages/forms.js"),
    ),
    (
        "js/pages/function.js",
        include_bytes!("../../console/js/pages/function.js"),
    ),
];

struct Asset {
    path: &'static str,
    body: &'static [u8],
    content_type: HeaderValue,
    etag: HeaderValue,
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(path, body)| {
            use sha2::Digest;
            let hash = sha2::Sha256::digest(body);
            let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
            Asset {
                path,
                body,
                content_type: HeaderValue::from_static(content_type(path)),
                etag: HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value"),
            }
        })
        .collect()
});

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// `GET /console/`: the page, signed in or not (the page itself asks for the session).
pub(crate) async fn index(headers: HeaderMap) -> Response {
    let asset = find("index.html").expect("index.html is in the list");
    let mut resp = serve(asset, &headers);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /console/assets/{*path}`.
pub(crate) async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match find(&path) {
        Some(a) => serve(a, &headers),
        None => not_found(),
    }
}

/// Any other path under `/console/`.
pub(crate) fn not_found() -> Response {
    render(&LambdaError::new(
        ErrorKind::ResourceNotFound,
        "The console has no such file: the page is /console/ and its files are under /console/assets/.",
    ))
}

fn serve(a: &'static Asset, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t.as_bytes() == a.etag.as_bytes());
    let mut resp = if fresh {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(a.body));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, a.content_type.clone());
        r
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, a.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_its_type_and_an_etag() {
        assert_eq!(ASSETS.len(), 11);
        for a in ASSETS.iter() {
            assert_ne!(
                a.content_type, "application/octet-stream",
                "{}: no content type",
                a.path
            );
        }
        assert_eq!(
            find("js/app.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        assert!(find("../Cargo.toml").is_none());
        assert!(find("js/charts.test.mjs").is_none());
    }
}
