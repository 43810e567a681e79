//! SigV4: `fleetfn_sigv4::verify` (and through it the canonicalizer of canonical.rs) on raw
//! HTTP/1.1 requests, as the API's front door sees them. The seeds are the botocore and
//! aws-sigv4 fixtures of `crates/fleetfn-sigv4/tests/fixtures` (all signed at
//! 2026-11-27T09:00:00Z for `us-east-1`/`lambda` with the two keys below), so the fuzzer starts
//! from requests that verify.
//!
//! Checks:
//! * `verify` never panics, whatever the method, path, query, headers and body;
//! * a request it accepts is signed by one of the known keys;
//! * when the signature does not match, the canonical request it computed is well formed: the
//!   canonical URI is absolute, has no empty, `.` or `..` segments and only unreserved
//!   characters, `/` and `%XX` (upper-case hex); the canonical query is `k=v` pairs, encoded the
//!   same way, sorted;
//! * signer and verifier agree: the same method, path, query, headers and body signed with
//!   `sign_request` (header form) or `presign_query` (presigned URL) always verify.
#![no_main]

use fleetfn_sigv4::{
    AuthError, RequestParts, SigningParams, VerifyConfig, presign_query, sha256_hex, sign_request,
    verify,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;

const KEYS: [(&str, &str); 2] = [
    (
        "AKIDEXAMPLEFLEETFN01",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    ),
    (
        "AKIDEXAMPLEFLEETFN02",
        "aws/sigv4+secret/EXAMPLEKEYfleetfn0002",
    ),
];

fn now() -> Timestamp {
    Timestamp::constant(1_795_770_000, 0) // 2026-11-27T09:00:00Z
}

fn lookup(akid: &str) -> Option<&'static str> {
    KEYS.iter().find(|(k, _)| *k == akid).map(|(_, s)| *s)
}

/// A raw request: `METHOD SP TARGET [SP VERSION]`, header lines, a blank line, the body.
struct Raw<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: HeaderMap,
    body: &'a [u8],
}

fn parse(data: &[u8]) -> Option<Raw<'_>> {
    let (head, body) = match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&data[..i], &data[i + 4..]),
        None => (data, &data[data.len()..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut request_line = lines.next()?.splitn(3, ' ');
    let method = request_line.next()?;
    let target = request_line.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    Some(Raw {
        method,
        path,
        query,
        headers,
        body,
    })
}

/// A query key decoded as a form component (`+` is a space, `%XX` a byte).
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                out.push((hex(b[i + 1]).unwrap() * 16 + hex(b[i + 2]).unwrap()) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Only unreserved bytes, `extra`, and `%` followed by two upper-case hex digits.
fn assert_encoded(s: &str, extra: &[u8], what: &str) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
            assert!(
                i + 2 < b.len() && hex(b[i + 1]) && hex(b[i + 2]),
                "bad escape in canonical {what}: {s:?}"
            );
            i += 3;
        } else {
            assert!(
                is_unreserved(b[i]) || extra.contains(&b[i]),
                "unencoded byte {:?} in canonical {what}: {s:?}",
                char::from(b[i])
            );
            i += 1;
        }
    }
}

fn check_canonical_request(canonical: &str) {
    let mut lines = canonical.split('\n');
    let _method = lines.next();
    let uri = lines.next().expect("canonical URI line");
    let query = lines.next().expect("canonical query line");
    assert!(uri.starts_with('/'), "canonical URI not absolute: {uri:?}");
    assert_encoded(uri, b"/", "URI");
    assert!(
        !uri.contains("//"),
        "empty segment in canonical URI: {uri:?}"
    );
    assert!(
        !uri.split('/').any(|s| s == "." || s == ".."),
        "dot segment in canonical URI: {uri:?}"
    );
    if !query.is_empty() {
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .map(|p| p.split_once('=').expect("canonical query pair has '='"))
            .collect();
        for (k, v) in &pairs {
            assert_encoded(k, b"", "query key");
            assert_encoded(v, b"", "query value");
        }
        assert!(
            pairs.windows(2).all(|w| w[0] <= w[1]),
            "canonical query not sorted: {query:?}"
        );
    }
}

fn params(akid: &'static str, secret: &'static str) -> SigningParams<'static> {
    SigningParams {
        access_key_id: akid,
        secret_access_key: secret,
        session_token: None,
        region: "us-east-1",
        service: "lambda",
        time: now(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(raw) = parse(data) else {
        return;
    };
    let cfg = VerifyConfig::new("us-east-1", "lambda");
    let body_hash = sha256_hex(raw.body);

    let req = RequestParts::new(raw.method, raw.path, raw.query, &raw.headers);
    match verify(&req, &body_hash, now(), &cfg, lookup) {
        Ok(p) => assert!(
            lookup(&p.access_key_id).is_some(),
            "accepted unknown key {p:?}"
        ),
        Err(AuthError::SignatureDoesNotMatch {
            canonical_request, ..
        }) => check_canonical_request(&canonical_request),
        Err(_) => {}
    }

    // The same request, signed by fleetfn's signer, verifies. Skipped for queries that carry
    // presigning parameters of their own (those are the verifier's to reject).
    if raw
        .query
        .split('&')
        .any(|p| decode(p.split('=').next().unwrap_or("")).starts_with(b"X-Amz-"))
    {
        return;
    }
    let (akid, secret) = KEYS[usize::from(raw.body.len() % 2 == 1)];
    let mut headers = raw.headers.clone();
    headers.remove(http::header::AUTHORIZATION);
    headers.remove("x-amz-content-sha256");
    if !headers.contains_key(http::header::HOST) {
        headers.insert(
            http::header::HOST,
            HeaderValue::from_static("127.0.0.1:9600"),
        );
    }
    if sign_request(
        raw.method,
        raw.path,
        raw.query,
        &mut headers,
        &body_hash,
        &params(akid, secret),
    )
    .is_ok()
    {
        let req = RequestParts::new(raw.method, raw.path, raw.query, &headers);
        if let Err(e) = verify(&req, &body_hash, now(), &cfg, lookup) {
            panic!("a request signed by sign_request does not verify: {e:?}");
        }
    }

    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:9600")
        .to_owned();
    if let Ok(query) = presign_query(
        raw.method,
        raw.path,
        raw.query,
        &host,
        &body_hash,
        300,
        &params(akid, secret),
    ) {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, HeaderValue::from_str(&host).unwrap());
        let req = RequestParts::new(raw.method, raw.path, &query, &h);
        if let Err(e) = verify(&req, &body_hash, now(), &cfg, lookup) {
            panic!("a URL presigned by presign_query does not verify: {e:?}\nquery: {query}");
        }
    }
});
