//! CORS of a function URL, from its config: the endpoint answers a preflight (`OPTIONS` with
//! `Origin` and `Access-Control-Request-Method`) itself without invoking the function, and
//! adds `Access-Control-Allow-Origin`, `-Expose-Headers` and `-Allow-Credentials` to the
//! responses of an allowed origin, in place of any the function set (the URL's configured
//! headers take precedence, as on AWS). A URL without CORS leaves both to the function. A
//! wildcard origin answers the literal `*` and never allows credentials; a list of origins
//! echoes the allowed one and adds `Vary: Origin`.

use fleetfn_model::url::Cors;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method};

const ALLOW_ORIGIN: HeaderName = header::ACCESS_CONTROL_ALLOW_ORIGIN;
const ALLOW_CREDENTIALS: HeaderName = header::ACCESS_CONTROL_ALLOW_CREDENTIALS;
const EXPOSE_HEADERS: HeaderName = header::ACCESS_CONTROL_EXPOSE_HEADERS;

/// Whether a request to a URL with `cors` is a preflight the endpoint answers.
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap, cors: Option<&Cors>) -> bool {
    cors.is_some()
        && method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether the URL allows every origin (`*` among its origins).
fn wildcard(cors: &Cors) -> bool {
    cors.allow_origins
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|o| o == "*")
}

/// The `Access-Control-Allow-Origin` value for the request's `Origin`, if it is allowed: the
/// literal `*` for a wildcard, else the origin itself (a listed one). A wildcard never echoes
/// the origin, so it never pairs with `Access-Control-Allow-Credentials` (browsers refuse `*`
/// with credentials, and echoing any origin with them would let every site read a logged-in
/// user's responses).
fn allowed_origin(cors: &Cors, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    if wildcard(cors) {
        return Some(HeaderValue::from_static("*"));
    }
    let o = origin.to_str().ok()?;
    let origins = cors.allow_origins.as_deref().unwrap_or_default();
    origins
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(o))
        .then(|| origin.clone())
}

/// Credentials are allowed only with a listed (echoed) origin.
fn credentials(cors: &Cors) -> bool {
    cors.allow_credentials == Some(true) && !wildcard(cors)
}

/// Adds `Vary: Origin` (to what the function set) when the answer depends on the origin: the
/// URL lists origins rather than `*`, so caches must not hand one origin's answer to another.
fn vary_origin(cors: &Cors, resp: &mut HeaderMap) {
    if wildcard(cors) {
        return;
    }
    let already = resp.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("origin"))
        })
    });
    if !already {
        resp.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn joined(list: Option<&Vec<String>>) -> Option<HeaderValue> {
    let list = list.filter(|l| !l.is_empty())?;
    HeaderValue::from_str(&list.join(",")).ok()
}

/// The headers of the endpoint's answer to a preflight (status 200, no body): none when the
/// origin is not allowed.
pub(crate) fn preflight(cors: &Cors, req: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    let Some(origin) = allowed_origin(cors, req) else {
        return h;
    };
    h.insert(ALLOW_ORIGIN, origin);
    if let Some(v) = joined(cors.allow_methods.as_ref()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if let Some(v) = joined(cors.allow_headers.as_ref()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(age) = cors.max_age {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
    }
    if credentials(cors) {
        h.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    vary_origin(cors, &mut h);
    h
}

/// Puts the URL's CORS headers on a response to a request from an allowed origin.
pub(crate) fn apply(cors: Option<&Cors>, req: &HeaderMap, resp: &mut HeaderMap) {
    let Some(cors) = cors else { return };
    for name in [ALLOW_ORIGIN, ALLOW_CREDENTIALS, EXPOSE_HEADERS] {
        resp.remove(name);
    }
    vary_origin(cors, resp);
    let Some(origin) = allowed_origin(cors, req) else {
        return;
    };
    resp.insert(ALLOW_ORIGIN, origin);
    if let Some(v) = joined(cors.expose_headers.as_ref()) {
        resp.insert(EXPOSE_HEADERS, v);
    }
    if credentials(cors) {
        resp.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    fn req(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        h
    }

    fn config() -> Cors {
        Cors {
            allow_credentials: Some(true),
            allow_headers: strings(&["x-custom", "content-type"]),
            allow_methods: strings(&["GET", "PUT"]),
            allow_origins: strings(&["https://app.example.com"]),
            expose_headers: strings(&["x-request-id"]),
            max_age: Some(300),
        }
    }

    #[test]
    fn a_preflight_is_answered_for_an_allowed_origin_only() {
        let c = config();
        assert!(is_preflight(&Method::OPTIONS, &req("https://x"), Some(&c)));
        assert!(!is_preflight(&Method::OPTIONS, &req("https://x"), None));
        assert!(!is_preflight(&Method::GET, &req("https://x"), Some(&c)));
        let mut no_method = req("https://x");
        no_method.remove(header::ACCESS_CONTROL_REQUEST_METHOD);
        assert!(!is_preflight(&Method::OPTIONS, &no_method, Some(&c)));

        let h = preflight(&c, &req("https://APP.example.com"));
        assert_eq!(h[ALLOW_ORIGIN], "https://APP.example.com");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET,PUT");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "x-custom,content-type"
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "300");
        assert_eq!(h[ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::VARY], "Origin");
        assert!(preflight(&c, &req("https://evil.example.com")).is_empty());
    }

    #[test]
    fn a_wildcard_allows_every_origin_as_star_and_never_with_credentials() {
        let c = Cors {
            allow_origins: strings(&["*"]),
            ..Cors::default()
        };
        let h = preflight(&c, &req("https://a.example"));
        assert_eq!(h[ALLOW_ORIGIN], "*");
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS));
        assert!(!h.contains_key(header::ACCESS_CONTROL_MAX_AGE));
        assert!(!h.contains_key(header::VARY));
        let c = Cors {
            allow_credentials: Some(true),
            ..c
        };
        // With credentials too: still `*`, and no credentials (never an echoed origin).
        let h = preflight(&c, &req("https://evil.example"));
        assert_eq!(h[ALLOW_ORIGIN], "*");
        assert!(!h.contains_key(ALLOW_CREDENTIALS));
        let mut resp = HeaderMap::new();
        resp.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        apply(Some(&c), &req("https://evil.example"), &mut resp);
        assert_eq!(resp[ALLOW_ORIGIN], "*");
        assert!(!resp.contains_key(ALLOW_CREDENTIALS));
        assert!(!resp.contains_key(header::VARY));
    }

    #[test]
    fn responses_get_the_configured_headers_in_place_of_the_functions() {
        let c = config();
        let mut resp = HeaderMap::new();
        resp.insert(ALLOW_ORIGIN, HeaderValue::from_static("*"));
        resp.insert("x-other", HeaderValue::from_static("kept"));
        apply(Some(&c), &req("https://app.example.com"), &mut resp);
        assert_eq!(resp[ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(resp[EXPOSE_HEADERS], "x-request-id");
        assert_eq!(resp[ALLOW_CREDENTIALS], "true");
        assert_eq!(resp["x-other"], "kept");
        assert_eq!(resp[header::VARY], "Origin");
        // The function's Vary is kept, Origin added to it once.
        let mut resp = HeaderMap::new();
        resp.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        apply(Some(&c), &req("https://app.example.com"), &mut resp);
        let vary: Vec<_> = resp.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
        apply(Some(&c), &req("https://app.example.com"), &mut resp);
        assert_eq!(resp.get_all(header::VARY).iter().count(), 2);
        // Another origin: no CORS headers at all, the function's removed.
        let mut resp = HeaderMap::new();
        resp.insert(ALLOW_ORIGIN, HeaderValue::from_static("*"));
        apply(Some(&c), &req("https://evil.example.com"), &mut resp);
        assert_eq!(resp.len(), 1, "{resp:?}");
        // Still varies by origin: an allowed one gets another answer.
        assert_eq!(resp[header::VARY], "Origin");
        // No CORS config: the function's headers stand.
        let mut resp = HeaderMap::new();
        resp.insert(ALLOW_ORIGIN, HeaderValue::from_static("*"));
        apply(None, &req("https://evil.example.com"), &mut resp);
        assert_eq!(resp[ALLOW_ORIGIN], "*");
    }
}
