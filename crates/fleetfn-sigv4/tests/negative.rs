//! Requests that must be rejected, with the AWS error type and message.

mod common;

use common::{Fixture, load};
use fleetfn_sigv4::{
    AuthError, EMPTY_SHA256, RequestParts, SIGNATURE_MISMATCH_MESSAGE, SigningParams, VerifyConfig,
    presign_query, sha256_hex, sign_request, verify,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use jiff::{SignedDuration, Timestamp};

const AKID: &str = "AKIDTESTNEGATIVE0001";
const SECRET: &str = "negative/test+secret";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn params(time: Timestamp) -> SigningParams<'static> {
    SigningParams {
        access_key_id: AKID,
        secret_access_key: SECRET,
        session_token: None,
        region: "us-east-1",
        service: "lambda",
        time,
    }
}

fn lookup(akid: &str) -> Option<&'static str> {
    (akid == AKID).then_some(SECRET)
}

/// A GET signed by our signer at `time` with `params` tweaks.
fn signed_get(p: SigningParams<'_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1:9000"));
    sign_request(
        "GET",
        "/2015-03-31/functions",
        "MaxItems=2",
        &mut h,
        EMPTY_SHA256,
        &p,
    )
    .unwrap();
    h
}

fn verify_get(h: &HeaderMap, now: Timestamp) -> Result<fleetfn_sigv4::Principal, AuthError> {
    let req = RequestParts::new("GET", "/2015-03-31/functions", "MaxItems=2", h);
    verify(&req, EMPTY_SHA256, now, &VerifyConfig::default(), lookup)
}

fn verify_fixture(
    fx: &Fixture,
    headers: &HeaderMap,
    query: &str,
    body_sha: &str,
) -> Result<fleetfn_sigv4::Principal, AuthError> {
    let req = RequestParts::new(&fx.method, &fx.path, query, headers);
    verify(
        &req,
        body_sha,
        fx.now(),
        &VerifyConfig::new(fx.region.clone(), fx.service.clone()),
        fx.lookup(),
    )
}

fn assert_mismatch(r: Result<fleetfn_sigv4::Principal, AuthError>) {
    let err = r.expect_err("must be rejected");
    assert!(
        matches!(err, AuthError::SignatureDoesNotMatch { .. }),
        "expected signature mismatch, got {err:?}"
    );
    assert_eq!(err.aws_error_type(), "InvalidSignatureException");
    assert_eq!(err.to_string(), SIGNATURE_MISMATCH_MESSAGE);
    assert_eq!(err.http_status(), StatusCode::FORBIDDEN);
}

fn assert_err(r: Result<fleetfn_sigv4::Principal, AuthError>, aws_type: &str, message: &str) {
    let err = r.expect_err("must be rejected");
    assert_eq!(err.aws_error_type(), aws_type, "{err:?}");
    assert_eq!(err.to_string(), message);
    assert_eq!(err.http_status(), StatusCode::FORBIDDEN);
}

#[test]
fn tampered_body() {
    let fx = load("invoke_json_body");
    let h = fx.header_map();
    assert!(verify_fixture(&fx, &h, &fx.query, &fx.body_sha256()).is_ok());
    let tampered = sha256_hex(br#"{"hello": "world", "n": 2}"#);
    assert_mismatch(verify_fixture(&fx, &h, &fx.query, &tampered));

    let fx = load("invoke_unicode_body");
    let h = fx.header_map();
    let mut body = fx.body();
    body.pop();
    assert_mismatch(verify_fixture(&fx, &h, &fx.query, &sha256_hex(&body)));
}

#[test]
fn tampered_query() {
    let fx = load("list_functions_query");
    let h = fx.header_map();
    assert_mismatch(verify_fixture(
        &fx,
        &h,
        "MaxItems=3&Marker=abc",
        &fx.body_sha256(),
    ));
    assert_mismatch(verify_fixture(&fx, &h, "MaxItems=2", &fx.body_sha256()));
    assert_mismatch(verify_fixture(
        &fx,
        &h,
        "MaxItems=2&Marker=abc&x=1",
        &fx.body_sha256(),
    ));
    // Re-ordering or re-encoding unreserved characters is not tampering.
    assert!(verify_fixture(&fx, &h, "Marker=abc&MaxItems=2", &fx.body_sha256()).is_ok());
    assert!(verify_fixture(&fx, &h, "MaxItems=%32&Marker=%61bc", &fx.body_sha256()).is_ok());

    let fx = load("invoke_qualifier_latest_published");
    let h = fx.header_map();
    assert_mismatch(verify_fixture(
        &fx,
        &h,
        "Qualifier=%24LATEST",
        &fx.body_sha256(),
    ));
    assert_mismatch(verify_fixture(&fx, &h, "", &fx.body_sha256()));
}

#[test]
fn tampered_path_method_and_headers() {
    let fx = load("get_function_arn_in_path");
    let h = fx.header_map();
    let cfg = VerifyConfig::default();
    let body = fx.body_sha256();
    let other =
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aother";
    assert_mismatch(verify(
        &RequestParts::new("GET", other, "", &h),
        &body,
        fx.now(),
        &cfg,
        fx.lookup(),
    ));
    // The decoded form of the same path is a different canonical URI.
    let decoded = "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:my-fn";
    assert_mismatch(verify(
        &RequestParts::new("GET", decoded, "", &h),
        &body,
        fx.now(),
        &cfg,
        fx.lookup(),
    ));
    assert_mismatch(verify(
        &RequestParts::new("DELETE", &fx.path, "", &h),
        &body,
        fx.now(),
        &cfg,
        fx.lookup(),
    ));

    // A signed header changed: mismatch. An unsigned header changed: fine.
    let fx = load("invoke_qualifier_latest_published");
    let mut h = fx.header_map();
    h.insert("x-amz-invocation-type", HeaderValue::from_static("Event"));
    assert_mismatch(verify_fixture(&fx, &h, &fx.query, &fx.body_sha256()));
    let mut h = fx.header_map();
    h.insert("user-agent", HeaderValue::from_static("something-else"));
    h.insert("x-amz-not-signed", HeaderValue::from_static("1"));
    assert!(verify_fixture(&fx, &h, &fx.query, &fx.body_sha256()).is_ok());
    let mut h = fx.header_map();
    h.insert("host", HeaderValue::from_static("evil.example.com"));
    assert_mismatch(verify_fixture(&fx, &h, &fx.query, &fx.body_sha256()));
}

#[test]
fn wrong_secret() {
    let fx = load("delete_function_qualifier");
    let h = fx.header_map();
    let req = fx.parts(&h);
    assert_mismatch(verify(
        &req,
        &fx.body_sha256(),
        fx.now(),
        &VerifyConfig::default(),
        |_| Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ"),
    ));
}

#[test]
fn garbage_signature_values() {
    let fx = load("delete_function_qualifier");
    let original = fx.header_map()["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    let (prefix, sig) = original.rsplit_once("Signature=").unwrap();
    for bad in [
        "".to_owned(),
        sig[..63].to_owned(),
        format!("{sig}00"),
        sig.to_uppercase().replace('A', "G"),
        "zz".repeat(32),
    ] {
        let mut h = fx.header_map();
        h.insert(
            "authorization",
            format!("{prefix}Signature={bad}").parse().unwrap(),
        );
        let err = verify_fixture(&fx, &h, &fx.query, &fx.body_sha256()).expect_err(&bad);
        assert_eq!(
            err.aws_error_type(),
            if bad.is_empty() {
                "IncompleteSignatureException"
            } else {
                "InvalidSignatureException"
            }
        );
    }
    // Uppercase hex is the same signature value.
    let mut h = fx.header_map();
    h.insert(
        "authorization",
        format!("{prefix}Signature={}", sig.to_uppercase())
            .parse()
            .unwrap(),
    );
    assert!(verify_fixture(&fx, &h, &fx.query, &fx.body_sha256()).is_ok());
}

#[test]
fn unknown_access_key() {
    let fx = load("list_functions_query");
    let h = fx.header_map();
    let req = fx.parts(&h);
    let r = verify(
        &req,
        &fx.body_sha256(),
        fx.now(),
        &VerifyConfig::default(),
        |_| None::<String>,
    );
    assert_err(
        r,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    );
}

#[test]
fn wrong_region() {
    let now = ts("2026-11-27T09:00:00Z");
    let h = signed_get(SigningParams {
        region: "eu-west-1",
        ..params(now)
    });
    assert_err(
        verify_get(&h, now),
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'eu-west-1'.",
    );
    // And the server configured for another region rejects a us-east-1 fixture.
    let fx = load("list_functions_query");
    let h = fx.header_map();
    let r = verify(
        &fx.parts(&h),
        &fx.body_sha256(),
        fx.now(),
        &VerifyConfig::new("eu-west-1", "lambda"),
        fx.lookup(),
    );
    assert_err(
        r,
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'us-east-1'.",
    );
}

#[test]
fn wrong_service() {
    let now = ts("2026-11-27T09:00:00Z");
    let h = signed_get(SigningParams {
        service: "s3",
        ..params(now)
    });
    assert_err(
        verify_get(&h, now),
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'lambda'.",
    );
    let h = signed_get(SigningParams {
        service: "s3",
        region: "eu-west-1",
        ..params(now)
    });
    assert_err(
        verify_get(&h, now),
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'eu-west-1'. \
         Credential should be scoped to correct service: 'lambda'.",
    );
}

#[test]
fn bad_scope_terminator_and_date() {
    let now = ts("2026-11-27T09:00:00Z");
    let h = signed_get(params(now));
    let auth = h["authorization"].to_str().unwrap().to_owned();
    let mut h2 = h.clone();
    h2.insert(
        "authorization",
        auth.replace("/aws4_request", "/aws5_request")
            .parse()
            .unwrap(),
    );
    assert_err(
        verify_get(&h2, now),
        "InvalidSignatureException",
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'.",
    );
    let mut h3 = h.clone();
    h3.insert(
        "authorization",
        auth.replace("/20261127/", "/20261126/").parse().unwrap(),
    );
    assert_err(
        verify_get(&h3, now),
        "InvalidSignatureException",
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
         '20261126' != '20261127', from '20261127T090000Z'.",
    );
    let mut h4 = h.clone();
    h4.insert(
        "authorization",
        auth.replace("/us-east-1/lambda/", "/us-east-1/")
            .parse()
            .unwrap(),
    );
    assert_err(
        verify_get(&h4, now),
        "IncompleteSignatureException",
        &format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, \
             got '{AKID}/20261127/us-east-1/aws4_request'"
        ),
    );
}

#[test]
fn expired_and_future_dates() {
    let signed_at = ts("2026-11-27T08:00:00Z");
    let now = ts("2026-11-27T09:00:00Z");
    let h = signed_get(params(signed_at));
    assert_err(
        verify_get(&h, now),
        "InvalidSignatureException",
        "Signature expired: 20261127T080000Z is now earlier than 20261127T084500Z (20261127T090000Z - 15 min.)",
    );
    let h = signed_get(params(ts("2026-11-27T09:20:00Z")));
    assert_err(
        verify_get(&h, now),
        "InvalidSignatureException",
        "Signature not yet current: 20261127T092000Z is still later than 20261127T091500Z (20261127T090000Z + 15 min.)",
    );
    // Inside the window, both ways, including the edges.
    for signed in [
        "2026-11-27T08:45:00Z",
        "2026-11-27T09:15:00Z",
        "2026-11-27T08:59:59Z",
    ] {
        let h = signed_get(params(ts(signed)));
        assert!(verify_get(&h, now).is_ok(), "{signed}");
    }
    // A custom window is reported as configured.
    let h = signed_get(params(ts("2026-11-27T08:59:00Z")));
    let req = RequestParts::new("GET", "/2015-03-31/functions", "MaxItems=2", &h);
    let cfg = VerifyConfig {
        max_clock_skew: SignedDuration::from_secs(30),
        ..VerifyConfig::default()
    };
    assert_err(
        verify(&req, EMPTY_SHA256, now, &cfg, lookup),
        "InvalidSignatureException",
        "Signature expired: 20261127T085900Z is now earlier than 20261127T085930Z (20261127T090000Z - 30 sec.)",
    );
    // A botocore fixture an hour later.
    let fx = load("invoke_json_body");
    let h = fx.header_map();
    let r = verify(
        &fx.parts(&h),
        &fx.body_sha256(),
        ts("2026-11-27T10:00:00Z"),
        &VerifyConfig::default(),
        fx.lookup(),
    );
    assert_err(
        r,
        "InvalidSignatureException",
        "Signature expired: 20261127T090000Z is now earlier than 20261127T094500Z (20261127T100000Z - 15 min.)",
    );
}

#[test]
fn missing_auth() {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1:9000"));
    h.insert("x-amz-date", HeaderValue::from_static("20261127T090000Z"));
    let err = verify_get(&h, ts("2026-11-27T09:00:00Z")).unwrap_err();
    assert_eq!(err, AuthError::MissingAuthenticationToken);
    assert_eq!(err.aws_error_type(), "MissingAuthenticationTokenException");
    assert_eq!(err.to_string(), "Missing Authentication Token");
    assert_eq!(err.http_status(), StatusCode::FORBIDDEN);
}

#[test]
fn malformed_authorization_header() {
    let now = ts("2026-11-27T09:00:00Z");
    let mut h = signed_get(params(now));

    let cases: &[(&str, &str)] = &[
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/lambda/aws4_request",
            "Authorization header requires 'Signature' parameter. Authorization header requires \
             'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 \
             Credential=AKID/20261127/us-east-1/lambda/aws4_request",
        ),
        (
            "Bearer abc.def",
            "'abc.def' not a valid key=value pair (missing equal-sign) in Authorization header: \
             'Bearer abc.def'.",
        ),
        (
            "Basic",
            "Authorization header requires 'Credential' parameter. Authorization header requires \
             'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. \
             Authorization=Basic",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=, SignedHeaders=host, Signature=00",
            "Authorization header requires 'Credential' parameter. \
             Authorization=AWS4-HMAC-SHA256 Credential=, SignedHeaders=host, Signature=00",
        ),
    ];
    for (value, message) in cases {
        h.insert("authorization", value.parse().unwrap());
        assert_err(verify_get(&h, now), "IncompleteSignatureException", message);
    }

    // Unsupported algorithm (checked after date and host, as AWS does).
    let good = signed_get(params(now));
    let auth = good["authorization"]
        .to_str()
        .unwrap()
        .replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512");
    let mut h = good.clone();
    h.insert("authorization", auth.parse().unwrap());
    assert_err(
        verify_get(&h, now),
        "IncompleteSignatureException",
        "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512' (only AWS4-HMAC-SHA256 for now).",
    );

    // host not signed.
    let auth = good["authorization"]
        .to_str()
        .unwrap()
        .replace("SignedHeaders=host;", "SignedHeaders=");
    let mut h = good.clone();
    h.insert("authorization", auth.parse().unwrap());
    assert_err(
        verify_get(&h, now),
        "InvalidSignatureException",
        "'Host' must be a 'SignedHeader' in the AWS Authorization.",
    );
}

#[test]
fn missing_or_malformed_date() {
    let now = ts("2026-11-27T09:00:00Z");
    let good = signed_get(params(now));
    let auth = good["authorization"].to_str().unwrap().to_owned();

    let mut h = good.clone();
    h.remove("x-amz-date");
    assert_err(
        verify_get(&h, now),
        "IncompleteSignatureException",
        &format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. \
             Authorization={auth}"
        ),
    );

    let mut h = good.clone();
    h.insert(
        "x-amz-date",
        HeaderValue::from_static("2026-11-27T09:00:00Z"),
    );
    assert_err(
        verify_get(&h, now),
        "IncompleteSignatureException",
        "Date must be in ISO-8601 'basic format'. Got '2026-11-27T09:00:00Z'. See http://en.wikipedia.org/wiki/ISO_8601",
    );

    // A date that is not the signed one: mismatch (x-amz-date is signed).
    let mut h = good.clone();
    h.insert("x-amz-date", HeaderValue::from_static("20261127T090001Z"));
    assert_mismatch(verify_get(&h, now));
}

#[test]
fn date_header_fixture_clock_skew() {
    let fx = load("sigv4auth_date_header");
    let h = fx.header_map();
    assert!(
        verify(
            &fx.parts(&h),
            &fx.body_sha256(),
            fx.now(),
            &VerifyConfig::default(),
            fx.lookup()
        )
        .is_ok()
    );
    let r = verify(
        &fx.parts(&h),
        &fx.body_sha256(),
        ts("2026-11-27T09:16:00Z"),
        &VerifyConfig::default(),
        fx.lookup(),
    );
    assert_err(
        r,
        "InvalidSignatureException",
        "Signature expired: 20261127T090000Z is now earlier than 20261127T090100Z (20261127T091600Z - 15 min.)",
    );
}

#[test]
fn both_header_and_query_auth() {
    let fx = load("presigned_get_function");
    let mut h = fx.header_map();
    h.insert(
        "authorization",
        load("list_functions_query").header_map()["authorization"].clone(),
    );
    assert_err(
        verify_fixture(&fx, &h, &fx.query, &fx.body_sha256()),
        "InvalidSignatureException",
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
    );
}

#[test]
fn content_sha256_header_must_match_body() {
    let now = ts("2026-11-27T09:00:00Z");
    let body = br#"{"a":1}"#;
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1:9000"));
    h.insert("x-amz-content-sha256", sha256_hex(body).parse().unwrap());
    let path = "/2015-03-31/functions/f/invocations";
    sign_request("POST", path, "", &mut h, &sha256_hex(body), &params(now)).unwrap();
    let req = RequestParts::new("POST", path, "", &h);
    assert!(
        verify(
            &req,
            &sha256_hex(body),
            now,
            &VerifyConfig::default(),
            lookup
        )
        .is_ok()
    );
    assert_err(
        verify(
            &req,
            &sha256_hex(b"{\"a\":2}"),
            now,
            &VerifyConfig::default(),
            lookup,
        ),
        "InvalidSignatureException",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    );

    // aws-sigv4 fixture with a signed x-amz-content-sha256.
    let fx = load("aws_sigv4_unicode_body_session_token");
    let h = fx.header_map();
    assert_err(
        verify_fixture(&fx, &h, &fx.query, EMPTY_SHA256),
        "InvalidSignatureException",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    );

    // UNSIGNED-PAYLOAD: the body is not covered by the signature.
    let fx = load("sigv4auth_unsigned_payload");
    let h = fx.header_map();
    assert!(verify_fixture(&fx, &h, &fx.query, &sha256_hex(b"anything")).is_ok());
    // ...but the header itself is signed.
    let mut h2 = h.clone();
    h2.insert("x-amz-content-sha256", fx.body_sha256().parse().unwrap());
    assert_mismatch(verify_fixture(&fx, &h2, &fx.query, &fx.body_sha256()));
}

#[test]
fn presigned_url_rejections() {
    let fx = load("presigned_get_function");
    let h = fx.header_map();
    let cfg = VerifyConfig::default();
    let body = fx.body_sha256();

    // Expired: X-Amz-Expires=300.
    let req = fx.parts(&h);
    assert!(verify(&req, &body, ts("2026-11-27T09:05:00Z"), &cfg, fx.lookup()).is_ok());
    assert_err(
        verify(&req, &body, ts("2026-11-27T09:05:01Z"), &cfg, fx.lookup()),
        "InvalidSignatureException",
        "Signature expired: 20261127T090000Z is now earlier than 20261127T090001Z (20261127T090501Z - 5 min.)",
    );
    // Not yet valid.
    assert_err(
        verify(&req, &body, ts("2026-11-27T08:40:00Z"), &cfg, fx.lookup()),
        "InvalidSignatureException",
        "Signature not yet current: 20261127T090000Z is still later than 20261127T085500Z (20261127T084000Z + 15 min.)",
    );

    // Tampered query parameter.
    let tampered = fx.query.replace("Qualifier=%24LATEST", "Qualifier=1");
    assert_mismatch(verify_fixture(&fx, &h, &tampered, &body));
    let tampered = fx.query.replace("X-Amz-Expires=300", "X-Amz-Expires=600");
    assert_mismatch(verify_fixture(&fx, &h, &tampered, &body));

    // Missing parameters.
    let (before_sig, _) = fx.query.split_once("&X-Amz-Signature=").unwrap();
    let no_cred: Vec<&str> = before_sig
        .split('&')
        .filter(|p| !p.starts_with("X-Amz-Credential="))
        .collect();
    assert_err(
        verify_fixture(&fx, &h, &no_cred.join("&"), &body),
        "IncompleteSignatureException",
        "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must \
         include 'X-Amz-Signature'. Re-examine the query-string parameters.",
    );
    // Bad expiry values.
    for (expires, message) in [
        ("abc", "X-Amz-Expires should be a number"),
        ("-1", "X-Amz-Expires must be non-negative"),
        (
            "604801",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ),
    ] {
        let q = fx
            .query
            .replace("X-Amz-Expires=300", &format!("X-Amz-Expires={expires}"));
        assert_err(
            verify_fixture(&fx, &h, &q, &body),
            "IncompleteSignatureException",
            message,
        );
    }
}

#[test]
fn presigned_with_wrong_secret_or_unknown_key() {
    let now = ts("2026-11-27T09:00:00Z");
    let q = presign_query(
        "GET",
        "/2015-03-31/functions",
        "",
        "127.0.0.1:9000",
        EMPTY_SHA256,
        60,
        &params(now),
    )
    .unwrap();
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1:9000"));
    let req = RequestParts::new("GET", "/2015-03-31/functions", &q, &h);
    assert!(verify(&req, EMPTY_SHA256, now, &VerifyConfig::default(), lookup).is_ok());
    assert_mismatch(verify(
        &req,
        EMPTY_SHA256,
        now,
        &VerifyConfig::default(),
        |_| Some("nope"),
    ));
    assert_err(
        verify(&req, EMPTY_SHA256, now, &VerifyConfig::default(), |_| {
            None::<String>
        }),
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    );
}

#[test]
fn two_authorization_headers_are_refused() {
    let now = ts("2026-11-27T09:00:00Z");
    let mut h = signed_get(params(now));
    let first = h.get("authorization").unwrap().clone();
    // The valid header first: before, the first one silently won and this verified.
    h.append("authorization", first);
    let err = verify_get(&h, now).unwrap_err();
    assert_eq!(err.aws_error_type(), "IncompleteSignatureException");
    assert!(
        err.message()
            .contains("only one Authorization header is allowed"),
        "{err}"
    );
    let req = RequestParts::new("GET", "/2015-03-31/functions", "MaxItems=2", &h);
    assert!(
        fleetfn_sigv4::verify_head(&req, now, &VerifyConfig::default(), lookup).is_err(),
        "the head check refuses it too"
    );
}

#[test]
fn head_check_needs_no_body_and_finishes_with_it() {
    let now = ts("2026-11-27T09:00:00Z");
    let body = b"{\"a\":1}";
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("127.0.0.1:9000"));
    sign_request(
        "POST",
        "/2015-03-31/functions",
        "",
        &mut h,
        &sha256_hex(body),
        &params(now),
    )
    .unwrap();
    let req = RequestParts::new("POST", "/2015-03-31/functions", "", &h);
    let cfg = VerifyConfig::default();
    // Head passes, then the body decides.
    let head = fleetfn_sigv4::verify_head(&req, now, &cfg, lookup).unwrap();
    assert_eq!(
        head.verify_body(&sha256_hex(body)).unwrap().access_key_id,
        AKID
    );
    let head = fleetfn_sigv4::verify_head(&req, now, &cfg, lookup).unwrap();
    assert!(matches!(
        head.verify_body(&sha256_hex(b"{\"a\":2}")),
        Err(AuthError::SignatureDoesNotMatch { .. })
    ));
    // No auth at all, an unknown key, a stale date: refused before any body.
    let empty = HeaderMap::new();
    let bare = RequestParts::new("POST", "/2015-03-31/functions", "", &empty);
    assert_eq!(
        fleetfn_sigv4::verify_head(&bare, now, &cfg, lookup).unwrap_err(),
        AuthError::MissingAuthenticationToken
    );
    assert_eq!(
        fleetfn_sigv4::verify_head(&req, now, &cfg, |_| None::<&str>).unwrap_err(),
        AuthError::UnrecognizedClient
    );
    let late = now + SignedDuration::from_mins(20);
    assert_eq!(
        fleetfn_sigv4::verify_head(&req, late, &cfg, lookup)
            .unwrap_err()
            .aws_error_type(),
        "InvalidSignatureException"
    );
}
