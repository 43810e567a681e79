//! Requests signed by this crate's signer verify, including through
//! `http::Request`.

use fleetfn_sigv4::{
    EMPTY_SHA256, Principal, RequestParts, SignatureLocation, SigningParams, UNSIGNED_PAYLOAD,
    VerifyConfig, host_for_uri, presign_query, sha256_hex, sign_http_request, sign_request, verify,
    verify_head,
};
use http::{HeaderMap, HeaderValue, Request};
use jiff::Timestamp;

const AKID: &str = "AKIDROUNDTRIP0000001";
const SECRET: &str = "round/trip+secret=";

fn now() -> Timestamp {
    "2026-11-27T09:00:00Z".parse().unwrap()
}

fn params(token: Option<&str>) -> SigningParams<'_> {
    SigningParams {
        access_key_id: AKID,
        secret_access_key: SECRET,
        session_token: token,
        region: "us-east-1",
        service: "lambda",
        time: now(),
    }
}

fn lookup(akid: &str) -> Option<String> {
    (akid == AKID).then(|| SECRET.to_owned())
}

fn roundtrip(method: &str, path: &str, query: &str, body: &[u8], token: Option<&str>) -> Principal {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("localhost:9000"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "x-amz-invocation-type",
        HeaderValue::from_static("  Request   Response "),
    );
    h.insert("user-agent", HeaderValue::from_static("fleetfn-cli/0.1"));
    sign_request(
        method,
        path,
        query,
        &mut h,
        &sha256_hex(body),
        &params(token),
    )
    .unwrap();
    let auth = h["authorization"].to_str().unwrap();
    assert!(
        auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-invocation-type"),
        "{auth}"
    );
    assert!(!auth.contains("user-agent"));
    // A proxy rewriting unsigned headers does not matter.
    h.insert("user-agent", HeaderValue::from_static("proxy"));
    h.insert("content-length", HeaderValue::from(body.len()));
    let req = RequestParts::new(method, path, query, &h);
    verify(
        &req,
        &sha256_hex(body),
        now(),
        &VerifyConfig::default(),
        lookup,
    )
    .unwrap_or_else(|e| panic!("{method} {path}?{query}: {e:?}"))
}

#[test]
fn sign_then_verify() {
    let cases: &[(&str, &str, &str, &[u8])] = &[
        ("GET", "/2015-03-31/functions", "MaxItems=2&Marker=abc", b""),
        ("GET", "/2015-03-31/functions/", "", b""),
        (
            "POST",
            "/2015-03-31/functions/my-fn/invocations",
            "Qualifier=%24LATEST.PUBLISHED",
            br#"{"k":"v"}"#,
        ),
        (
            "GET",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn",
            "",
            b"",
        ),
        // Unencoded reserved characters in path and query.
        (
            "GET",
            "/2015-03-31/functions/my-fn:prod",
            "Qualifier=$LATEST&Marker=a+b",
            b"",
        ),
        ("DELETE", "/2015-03-31/functions/my-fn", "Qualifier=1", b""),
        (
            "PUT",
            "/2015-03-31/functions/my-fn/code",
            "",
            "{\"m\":\"h\u{e9}llo \u{2603} \u{1F600}\"}".as_bytes(),
        ),
        ("GET", "/a/./b/../c//d", "z=1&a=2&a=1&m", b""),
        (
            "POST",
            "/2015-03-31/functions",
            "",
            &[0u8, 159, 146, 150, 255],
        ),
    ];
    for (method, path, query, body) in cases {
        let p = roundtrip(method, path, query, body, None);
        assert_eq!(p.access_key_id, AKID);
        assert_eq!(p.session_token, None);
        assert_eq!(p.location, SignatureLocation::Header);
        assert_eq!(p.signed_at, now());
    }
}

#[test]
fn session_token_is_signed_and_returned() {
    let token = "IQoJb3JpZ2luX2VjEXAMPLE//token+value=";
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("localhost:9000"));
    sign_request(
        "GET",
        "/2015-03-31/functions",
        "",
        &mut h,
        EMPTY_SHA256,
        &params(Some(token)),
    )
    .unwrap();
    assert_eq!(h["x-amz-security-token"], token);
    assert!(
        h["authorization"]
            .to_str()
            .unwrap()
            .contains("SignedHeaders=host;x-amz-date;x-amz-security-token,")
    );
    let req = RequestParts::new("GET", "/2015-03-31/functions", "", &h);
    let p = verify(&req, EMPTY_SHA256, now(), &VerifyConfig::default(), lookup).unwrap();
    assert_eq!(p.session_token.as_deref(), Some(token));

    // Swapping the token breaks the signature.
    h.insert("x-amz-security-token", HeaderValue::from_static("other"));
    let req = RequestParts::new("GET", "/2015-03-31/functions", "", &h);
    assert!(verify(&req, EMPTY_SHA256, now(), &VerifyConfig::default(), lookup).is_err());

    // Re-signing without a token removes the stale header.
    sign_request(
        "GET",
        "/2015-03-31/functions",
        "",
        &mut h,
        EMPTY_SHA256,
        &params(None),
    )
    .unwrap();
    assert!(!h.contains_key("x-amz-security-token"));
}

#[test]
fn resigning_replaces_previous_signature() {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("localhost:9000"));
    sign_request("GET", "/x", "", &mut h, EMPTY_SHA256, &params(None)).unwrap();
    let later = SigningParams {
        time: "2026-11-27T09:01:00Z".parse().unwrap(),
        ..params(None)
    };
    sign_request("GET", "/x", "", &mut h, EMPTY_SHA256, &later).unwrap();
    assert_eq!(h.get_all("authorization").iter().count(), 1);
    assert_eq!(h["x-amz-date"], "20261127T090100Z");
    let req = RequestParts::new("GET", "/x", "", &h);
    assert!(verify(&req, EMPTY_SHA256, now(), &VerifyConfig::default(), lookup).is_ok());
}

#[test]
fn sign_requires_host() {
    let mut h = HeaderMap::new();
    assert_eq!(
        sign_request("GET", "/", "", &mut h, EMPTY_SHA256, &params(None)),
        Err(fleetfn_sigv4::SignError::MissingHost)
    );
    let mut req = Request::builder()
        .uri("/relative")
        .body(Vec::new())
        .unwrap();
    assert_eq!(
        sign_http_request(&mut req, &params(None)),
        Err(fleetfn_sigv4::SignError::MissingHost)
    );
}

#[test]
fn http_request_roundtrip() {
    let body = br#"{"FunctionName":"f"}"#.to_vec();
    let mut req = Request::builder()
        .method("POST")
        .uri("http://127.0.0.1:9000/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations?Qualifier=%24LATEST")
        .header("content-type", "application/json")
        .body(body.clone())
        .unwrap();
    sign_http_request(&mut req, &params(None)).unwrap();
    assert_eq!(req.headers()["host"], "127.0.0.1:9000");

    // What the server sees: an origin-form URI plus the same headers.
    let (mut parts, body) = req.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    let server_req = Request::from_parts(parts, body);
    let p = verify(
        &RequestParts::from_request(&server_req),
        &sha256_hex(server_req.body()),
        now(),
        &VerifyConfig::default(),
        lookup,
    )
    .unwrap();
    assert_eq!(p.access_key_id, AKID);
    let (parts, _) = server_req.into_parts();
    assert!(
        verify(
            &RequestParts::from_parts(&parts),
            &sha256_hex(b"x"),
            now(),
            &VerifyConfig::default(),
            lookup
        )
        .is_err()
    );
}

#[test]
fn host_header_derivation() {
    let h = |u: &str| host_for_uri(&u.parse().unwrap());
    assert_eq!(
        h("http://127.0.0.1:9000/x").as_deref(),
        Some("127.0.0.1:9000")
    );
    assert_eq!(h("http://example.com:80/x").as_deref(), Some("example.com"));
    assert_eq!(
        h("https://example.com:443/x").as_deref(),
        Some("example.com")
    );
    assert_eq!(
        h("https://example.com:80/x").as_deref(),
        Some("example.com:80")
    );
    assert_eq!(h("http://[::1]:9000/").as_deref(), Some("[::1]:9000"));
    assert_eq!(h("/x"), None);
}

#[test]
fn presign_roundtrip() {
    let host = "localhost:9000";
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("localhost:9000"));
    for (payload, token) in [(EMPTY_SHA256, None), (UNSIGNED_PAYLOAD, Some("tok+en/=="))] {
        let q = presign_query(
            "GET",
            "/2015-03-31/functions/my-fn",
            "Qualifier=%24LATEST",
            host,
            payload,
            900,
            &params(token),
        )
        .unwrap();
        assert!(
            q.starts_with("Qualifier=%24LATEST&X-Amz-Algorithm=AWS4-HMAC-SHA256&"),
            "{q}"
        );
        let req = RequestParts::new("GET", "/2015-03-31/functions/my-fn", &q, &h);
        let p = verify(&req, EMPTY_SHA256, now(), &VerifyConfig::default(), lookup).unwrap();
        assert_eq!(p.location, SignatureLocation::QueryString);
        assert_eq!(p.session_token.as_deref(), token);
    }
    // Without an original query string.
    let q = presign_query("GET", "/", "", host, EMPTY_SHA256, 60, &params(None)).unwrap();
    assert!(q.starts_with("X-Amz-Algorithm="));
    let req = RequestParts::new("GET", "/", &q, &h);
    assert!(verify(&req, EMPTY_SHA256, now(), &VerifyConfig::default(), lookup).is_ok());
}

#[test]
fn header_name_case_in_signed_headers_is_ignored() {
    // HeaderMap keys are always lowercase, and the SignedHeaders list may be
    // sent in any case; both resolve to the same canonical request.
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("localhost:9000"));
    sign_request("GET", "/x", "", &mut h, EMPTY_SHA256, &params(None)).unwrap();
    let auth = h["authorization"].to_str().unwrap().replace(
        "SignedHeaders=host;x-amz-date",
        "SignedHeaders=Host;X-Amz-Date",
    );
    h.insert("authorization", auth.parse().unwrap());
    let req = RequestParts::new("GET", "/x", "", &h);
    assert!(verify(&req, EMPTY_SHA256, now(), &VerifyConfig::default(), lookup).is_ok());
}

#[test]
fn verify_signed_body_refuses_unsigned_payload_in_headers_and_presigned_urls() {
    let body = b"{\"a\":1}";
    let body_sha = sha256_hex(body);
    let cfg = VerifyConfig::default();
    let check = |q: &str, h: &HeaderMap, signed: bool| {
        let req = RequestParts::new("POST", "/x", q, h);
        let head = verify_head(&req, now(), &cfg, lookup).unwrap();
        if signed {
            head.verify_signed_body(&body_sha)
        } else {
            head.verify_body(&body_sha)
        }
    };
    let mut host = HeaderMap::new();
    host.insert("host", HeaderValue::from_static("localhost:9000"));
    // Header-signed with `x-amz-content-sha256: UNSIGNED-PAYLOAD`: verify_body takes it (any
    // body), verify_signed_body does not.
    let mut h = host.clone();
    h.insert(
        "x-amz-content-sha256",
        HeaderValue::from_static(UNSIGNED_PAYLOAD),
    );
    sign_request("POST", "/x", "", &mut h, UNSIGNED_PAYLOAD, &params(None)).unwrap();
    assert!(check("", &h, false).is_ok());
    let e = check("", &h, true).unwrap_err();
    assert!(e.message().contains("UNSIGNED-PAYLOAD"), "{}", e.message());
    // Presigned with UNSIGNED-PAYLOAD: the same.
    let q = presign_query(
        "POST",
        "/x",
        "",
        "localhost:9000",
        UNSIGNED_PAYLOAD,
        60,
        &params(None),
    )
    .unwrap();
    assert!(check(&q, &host, false).is_ok());
    assert!(check(&q, &host, true).is_err());
    // Signed over the body, either way: both accept it.
    let mut h = host.clone();
    sign_request("POST", "/x", "", &mut h, &body_sha, &params(None)).unwrap();
    assert!(check("", &h, true).is_ok());
    let q = presign_query(
        "POST",
        "/x",
        "",
        "localhost:9000",
        &body_sha,
        60,
        &params(None),
    )
    .unwrap();
    assert!(check(&q, &host, true).is_ok());
    // ...and another body is refused.
    let req = RequestParts::new("POST", "/x", &q, &host);
    let head = verify_head(&req, now(), &cfg, lookup).unwrap();
    assert!(head.verify_signed_body(&sha256_hex(b"other")).is_err());
}
