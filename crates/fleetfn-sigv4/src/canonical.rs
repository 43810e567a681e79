//! Canonical request construction, shared by the verifier and the signer.
//!
//! Rules (non-S3 services, as implemented by botocore's `SigV4Auth` and the
//! Rust `aws-sigv4` crate with its default settings):
//!
//! * **Path**: the path *as sent on the wire* (already percent-encoded by the
//!   client) has its dot segments and empty segments removed, and is then
//!   percent-encoded **once more** with only RFC 3986 unreserved characters
//!   and `/` left alone. So `%3A` on the wire becomes `%253A` in the canonical
//!   URI ("double encoding"); an unencoded `:` would become `%3A`.
//! * **Query**: every `key=value` pair is decoded (`%XX`, and `+` as a space,
//!   like `application/x-www-form-urlencoded`) and re-encoded with the
//!   unreserved set (uppercase hex), then pairs are sorted by encoded key and
//!   then encoded value. Query values are encoded only once.
//! * **Headers**: lowercase names in `SignedHeaders` order, values with
//!   leading/trailing whitespace removed and inner runs collapsed to a single
//!   space, repeated headers joined with `,`.

use http::HeaderMap;
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;
use sha2::{Digest, Sha256};

use crate::hmac_sha256;

/// The only algorithm supported.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Last element of the credential scope.
pub(crate) const TERMINATOR: &str = "aws4_request";

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[inline]
fn push_encoded(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[
        b'%',
        HEX_UPPER[usize::from(b >> 4)],
        HEX_UPPER[usize::from(b & 15)],
    ]);
}

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Encode `bytes`, keeping unreserved characters and `/`.
fn encode_path_into(out: &mut Vec<u8>, bytes: &[u8]) {
    // Runs of bytes that stay as they are are copied at once.
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !(is_unreserved(b) || b == b'/') {
            out.extend_from_slice(&bytes[run..i]);
            push_encoded(out, b);
            run = i + 1;
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

/// Does the path need dot-segment / empty-segment removal?
fn needs_normalization(path: &str) -> bool {
    // One pass over the bytes: not absolute, an empty segment before the end (`//`), or a `.`
    // or `..` segment.
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return true;
    }
    let mut seg_start = 1;
    for i in 1..=b.len() {
        if i == b.len() || b[i] == b'/' {
            let seg = &b[seg_start..i];
            if (seg.is_empty() && i < b.len()) || seg == b"." || seg == b".." {
                return true;
            }
            seg_start = i + 1;
        }
    }
    false
}

/// RFC 3986 5.2.4 "Remove Dot Segments", also dropping empty segments
/// (consecutive slashes), exactly like botocore's `remove_dot_segments`.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// Append the canonical URI for a raw (as received, percent-encoded) path.
pub(crate) fn write_canonical_uri(out: &mut Vec<u8>, raw_path: &str) {
    if raw_path.is_empty() {
        out.push(b'/');
    } else if needs_normalization(raw_path) {
        encode_path_into(out, remove_dot_segments(raw_path).as_bytes());
    } else {
        encode_path_into(out, raw_path.as_bytes());
    }
}

/// Percent-encode `s` with only RFC 3986 unreserved characters left alone
/// (how query keys and values, and `X-Amz-Credential`, are written).
pub(crate) fn encode_unreserved_into(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.extend([
                '%',
                char::from(HEX_UPPER[usize::from(b >> 4)]),
                char::from(HEX_UPPER[usize::from(b & 15)]),
            ]);
        }
    }
}

/// Decode one query component (`+` is a space, `%XX` a byte; malformed
/// escapes are kept literally) and re-encode it with the unreserved set.
fn reencode_query_component(raw: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 8);
    reencode_query_component_into(&mut out, raw);
    out
}

fn reencode_query_component_into(out: &mut Vec<u8>, raw: &str) {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let decoded = match b {
            b'+' => b' ',
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    i += 2;
                    (h << 4) | l
                }
                _ => b'%',
            },
            _ => b,
        };
        if is_unreserved(decoded) {
            out.push(decoded);
        } else {
            push_encoded(out, decoded);
        }
        i += 1;
    }
}

/// Decode a query component to a string (`+` is a space, invalid UTF-8 is
/// replaced). Used for reading the `X-Amz-*` presigning parameters.
pub(crate) fn decode_query_component(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Iterate over the non-empty `key=value` pieces of a raw query string.
pub(crate) fn query_pairs(raw_query: &str) -> impl Iterator<Item = (&str, &str)> {
    raw_query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| piece.split_once('=').unwrap_or((piece, "")))
}

/// Append the canonical query string. With `skip_signature`, the
/// `X-Amz-Signature` parameter (presigned URLs) is left out.
pub(crate) fn write_canonical_query(out: &mut Vec<u8>, raw_query: &str, skip_signature: bool) {
    if raw_query.is_empty() {
        return;
    }
    if !raw_query.contains('&') {
        // One parameter: nothing to sort, so no buffers.
        let (k, v) = raw_query.split_once('=').unwrap_or((raw_query, ""));
        let start = out.len();
        reencode_query_component_into(out, k);
        if skip_signature && &out[start..] == b"X-Amz-Signature" {
            out.truncate(start);
            return;
        }
        out.push(b'=');
        reencode_query_component_into(out, v);
        return;
    }
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query_pairs(raw_query)
        .map(|(k, v)| (reencode_query_component(k), reencode_query_component(v)))
        .filter(|(k, _)| !(skip_signature && k == b"X-Amz-Signature"))
        .collect();
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
}

/// Append a header value with surrounding whitespace trimmed and inner
/// whitespace runs collapsed into one space.
fn write_trimmed_value(out: &mut Vec<u8>, value: &[u8]) {
    if !value.iter().any(|&b| b == b' ' || b == b'\t') {
        out.extend_from_slice(value);
        return;
    }
    let mut started = false;
    let mut pending_space = false;
    for &b in value {
        if b == b' ' || b == b'\t' {
            pending_space = started;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
            started = true;
        }
    }
}

/// Append the canonical headers block (each line ends with `\n`, and the
/// block is followed by the blank line) and the signed headers line (with
/// its trailing `\n`). `signed_headers` is the `;`-separated list.
pub(crate) fn write_canonical_headers(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    signed_headers: &str,
) {
    for name in signed_headers.split(';') {
        push_lowercase(out, name.as_bytes());
        out.push(b':');
        let mut first = true;
        // `HeaderMap::get_all(&str)` matches names case-insensitively; a
        // name that is not a valid header name matches nothing.
        for value in headers.get_all(name) {
            if !first {
                out.push(b',');
            }
            first = false;
            write_trimmed_value(out, value.as_bytes());
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    push_lowercase(out, signed_headers.as_bytes());
    out.push(b'\n');
}

/// Append `s` lowercased (signers send lowercase names, which are copied at once).
fn push_lowercase(out: &mut Vec<u8>, s: &[u8]) {
    if s.iter().any(u8::is_ascii_uppercase) {
        out.extend(s.iter().map(u8::to_ascii_lowercase));
    } else {
        out.extend_from_slice(s);
    }
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(data), &mut hex).expect("64 bytes hold a hex sha256");
    std::str::from_utf8(&hex).expect("hex is ascii").to_owned()
}

/// SHA-256 of the empty string, the payload hash of a request without body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Build the string to sign for a canonical request.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    let mut hashed = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(canonical_request), &mut hashed)
        .expect("64 bytes hold a hex sha256");
    let mut sts = String::with_capacity(ALGORITHM.len() + amz_date.len() + scope.len() + 67);
    sts.push_str(ALGORITHM);
    sts.push('\n');
    sts.push_str(amz_date);
    sts.push('\n');
    sts.push_str(scope);
    sts.push('\n');
    sts.push_str(std::str::from_utf8(&hashed).expect("hex is ascii"));
    sts
}

/// Derive the SigV4 signing key.
/// [`signing_key`] through a small process-wide cache: the key depends only on the secret, the
/// day, the region and the service, so a verifier derives it (4 HMAC-SHA256) once a day per key
/// instead of on every request, as the AWS SDKs do when signing.
#[cfg(test)]
pub(crate) fn cached_signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> [u8; 32] {
    cached_signing(secret, date, region, service).0
}

/// The signing key keyed into an HMAC-SHA256 whose inner and outer pads are already hashed:
/// cloning it saves the two compressions of `Hmac::new_from_slice` on every request.
pub(crate) fn cached_signing_mac(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> crate::HmacSha256 {
    cached_signing(secret, date, region, service).1
}

fn cached_signing(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> ([u8; 32], crate::HmacSha256) {
    use hmac::Mac;
    type Entry = (String, String, String, String, [u8; 32], crate::HmacSha256);
    static CACHE: parking_lot::Mutex<Vec<Entry>> = parking_lot::Mutex::new(Vec::new());
    const ENTRIES: usize = 16;
    let hit = |e: &Entry| e.0 == secret && e.1 == date && e.2 == region && e.3 == service;
    if let Some(e) = CACHE.lock().iter().find(|e| hit(e)) {
        return (e.4, e.5.clone());
    }
    let key = signing_key(secret, date, region, service);
    let mac = crate::HmacSha256::new_from_slice(&key).expect("hmac takes any key length");
    {
        let mut cache = CACHE.lock();
        if cache.len() >= ENTRIES {
            cache.remove(0);
        }
        cache.push((
            secret.to_owned(),
            date.to_owned(),
            region.to_owned(),
            service.to_owned(),
            key,
            mac.clone(),
        ));
    }
    (key, mac)
}

pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let k_date = hmac_sha256(&k_secret, date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

/// Format a timestamp in ISO 8601 basic format, `20261127T090000Z`.
pub fn format_amz_date(ts: Timestamp) -> String {
    let dt = Offset::UTC.to_datetime(ts);
    // Digits by hand: `format!` costs ~2,000 instructions on every verified request.
    if let Ok(year) = u16::try_from(dt.year())
        && year <= 9999
    {
        let mut b = *b"00000000T000000Z";
        let digit = |v: u16| b'0' + (v % 10) as u8;
        b[0] = digit(year / 1000);
        b[1] = digit(year / 100);
        b[2] = digit(year / 10);
        b[3] = digit(year);
        for (at, v) in [
            (4, dt.month()),
            (6, dt.day()),
            (9, dt.hour()),
            (11, dt.minute()),
            (13, dt.second()),
        ] {
            let v = u16::try_from(v).unwrap_or(0);
            b[at] = digit(v / 10);
            b[at + 1] = digit(v);
        }
        return std::str::from_utf8(&b).expect("ascii").to_owned();
    }
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Parse an ISO 8601 basic format timestamp, `20261127T090000Z`.
pub fn parse_amz_date(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i32> {
        let mut n = 0i32;
        for &c in &b[range] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i32::from(c - b'0');
        }
        Some(n)
    };
    let dt = DateTime::new(
        i16::try_from(num(0..4)?).ok()?,
        i8::try_from(num(4..6)?).ok()?,
        i8::try_from(num(6..8)?).ok()?,
        i8::try_from(num(9..11)?).ok()?,
        i8::try_from(num(11..13)?).ok()?,
        i8::try_from(num(13..15)?).ok()?,
        0,
    )
    .ok()?;
    Offset::UTC.to_timestamp(dt).ok()
}

/// Parse an HTTP `Date` header: RFC 7231 / RFC 2822 (`Fri, 27 Nov 2026
/// 09:00:00 GMT`, `... -0000`), or ISO 8601 basic format.
pub(crate) fn parse_http_date(s: &str) -> Option<Timestamp> {
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let s = s.trim();
    parse_amz_date(s).or_else(|| PARSER.parse_timestamp(s).ok())
}

#[cfg(test)]
mod tests {
    /// The fast paths give what the plain definitions give.
    #[test]
    fn fast_paths_match_the_definitions() {
        let plain = |p: &str| {
            !p.starts_with('/') || p.contains("//") || p.split('/').any(|s| s == "." || s == "..")
        };
        for p in [
            "",
            "/",
            "//",
            "/a",
            "/a/",
            "/a//",
            "//a",
            "/.",
            "/..",
            "/./a",
            "/a/..",
            "/a/../",
            "/a/.b",
            "/a/b.",
            "/...",
            "a",
            "a/b",
            "/2015-03-31/functions/f/invocations",
        ] {
            assert_eq!(needs_normalization(p), plain(p), "{p:?}");
        }
        for secs in [
            0,
            1,
            59,
            86_399,
            951_782_400,
            1_796_300_000,
            253_402_207_200,
        ] {
            let ts = Timestamp::from_second(secs).unwrap();
            let dt = Offset::UTC.to_datetime(ts);
            let expected = format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            );
            assert_eq!(format_amz_date(ts), expected, "{secs}");
        }
        for (raw, expected) in [
            ("a", "a="),
            ("a=b=c", "a=b%3Dc"),
            ("X-Amz-Signature=00", ""),
            ("Qualifier=%24LATEST", "Qualifier=%24LATEST"),
            ("k+1=v%2", "k%201=v%252"),
        ] {
            for skip in [true, false] {
                let mut out = Vec::new();
                write_canonical_query(&mut out, raw, skip);
                let want = if skip || !raw.starts_with("X-Amz-Signature") {
                    expected.to_string()
                } else {
                    raw.to_string()
                };
                assert_eq!(String::from_utf8(out).unwrap(), want, "{raw:?} skip={skip}");
            }
        }
    }

    use super::*;

    fn uri(p: &str) -> String {
        let mut v = Vec::new();
        write_canonical_uri(&mut v, p);
        String::from_utf8(v).unwrap()
    }

    fn query(q: &str) -> String {
        let mut v = Vec::new();
        write_canonical_query(&mut v, q, false);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn path_is_encoded_again() {
        assert_eq!(uri(""), "/");
        assert_eq!(uri("/"), "/");
        assert_eq!(uri("/2015-03-31/functions"), "/2015-03-31/functions");
        assert_eq!(
            uri("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af"),
            "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A1%253Afunction%253Af"
        );
        // A raw (unencoded) reserved char is encoded once.
        assert_eq!(uri("/f/my-fn:prod"), "/f/my-fn%3Aprod");
        assert_eq!(uri("/f/%24LATEST"), "/f/%2524LATEST");
        assert_eq!(uri("/a~b_c.d-e"), "/a~b_c.d-e");
    }

    #[test]
    fn path_normalization_matches_botocore() {
        assert_eq!(uri("/a/./b/../c"), "/a/c");
        assert_eq!(uri("/a//b///c/"), "/a/b/c/");
        assert_eq!(uri("/.."), "/");
        assert_eq!(uri("/a/b/.."), "/a");
        assert_eq!(uri("a/b"), "/a/b");
        assert_eq!(uri("/a%2F.%2Fb"), "/a%252F.%252Fb");
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        assert_eq!(query(""), "");
        assert_eq!(query("MaxItems=2&Marker=abc"), "Marker=abc&MaxItems=2");
        assert_eq!(
            query("Qualifier=%24LATEST.PUBLISHED"),
            "Qualifier=%24LATEST.PUBLISHED"
        );
        assert_eq!(query("Qualifier=$LATEST"), "Qualifier=%24LATEST");
        assert_eq!(
            query("a=%2a&b=%7e&c=x+y&d=%zz&e"),
            "a=%2A&b=~&c=x%20y&d=%25zz&e="
        );
        assert_eq!(query("k=b&k=a&j=z"), "j=z&k=a&k=b");
        assert_eq!(query("a&&b=1&"), "a=&b=1");
        assert_eq!(query("x=%"), "x=%25");
        assert_eq!(query("x=%4"), "x=%254");
        assert_eq!(query("x=%41"), "x=A");
        assert_eq!(query("u=%C3%A9"), "u=%C3%A9");
    }

    #[test]
    fn header_values_are_trimmed() {
        let mut h = HeaderMap::new();
        h.insert("host", "example.com".parse().unwrap());
        h.insert("x-amz-foo", "  a   b \t c  ".parse().unwrap());
        h.append("x-amz-multi", "one".parse().unwrap());
        h.append("x-amz-multi", " two ".parse().unwrap());
        let mut v = Vec::new();
        write_canonical_headers(&mut v, &h, "host;X-Amz-Foo;x-amz-multi;x-amz-missing");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "host:example.com\nx-amz-foo:a b c\nx-amz-multi:one,two\nx-amz-missing:\n\n\
             host;x-amz-foo;x-amz-multi;x-amz-missing\n"
        );
    }

    #[test]
    fn amz_dates() {
        let ts = parse_amz_date("20261127T090000Z").unwrap();
        assert_eq!(ts.to_string(), "2026-11-27T09:00:00Z");
        assert_eq!(format_amz_date(ts), "20261127T090000Z");
        assert!(parse_amz_date("20261127T090000").is_none());
        assert!(parse_amz_date("20261327T090000Z").is_none());
        assert!(parse_amz_date("2026-11-27T09:00").is_none());
        assert!(parse_amz_date("2026112+T090000Z").is_none());
        assert_eq!(parse_http_date("Fri, 27 Nov 2026 09:00:00 -0000"), Some(ts));
        assert_eq!(parse_http_date("Fri, 27 Nov 2026 09:00:00 GMT"), Some(ts));
        assert_eq!(parse_http_date("20261127T090000Z"), Some(ts));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn empty_sha() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }
}

#[cfg(test)]
mod signing_key_cache_tests {
    use super::*;

    #[test]
    fn the_cache_gives_the_derived_key_for_every_scope() {
        let scopes = [
            ("s1", "20261127", "us-east-1", "lambda"),
            ("s1", "20261128", "us-east-1", "lambda"),
            ("s1", "20261127", "eu-west-1", "lambda"),
            ("s2", "20261127", "us-east-1", "lambda"),
            ("s1", "20261127", "us-east-1", "s3"),
        ];
        // Twice over more distinct scopes than the cache holds: hits and evictions both give the
        // right key.
        for round in 0..2 {
            for i in 0..20 {
                let date = format!("2026{:04}", 1100 + i);
                assert_eq!(
                    cached_signing_key("x", &date, "r", "s"),
                    signing_key("x", &date, "r", "s"),
                    "round {round} scope {i}"
                );
            }
            for (secret, date, region, service) in scopes {
                assert_eq!(
                    cached_signing_key(secret, date, region, service),
                    signing_key(secret, date, region, service)
                );
            }
        }
        assert_ne!(
            cached_signing_key("s1", "20261127", "us-east-1", "lambda"),
            cached_signing_key("s2", "20261127", "us-east-1", "lambda")
        );
    }
}
