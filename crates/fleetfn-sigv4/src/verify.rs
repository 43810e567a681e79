//! Server-side verification of SigV4-signed requests.

use std::borrow::Cow;

use hmac::Mac;
use http::HeaderMap;
use http::header::{AUTHORIZATION, DATE, HeaderName};
use jiff::{SignedDuration, Timestamp};

use crate::canonical::{
    ALGORITHM, TERMINATOR, cached_signing_mac, decode_query_component, format_amz_date,
    parse_amz_date, parse_http_date, query_pairs, string_to_sign, write_canonical_headers,
    write_canonical_query, write_canonical_uri,
};
use crate::error::AuthError;

/// Literal payload hash for requests whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Longest validity AWS allows for a presigned URL (7 days).
pub const MAX_PRESIGN_EXPIRES_SECS: i64 = 604_800;

// Header names as `HeaderName`s: a `&str` name is parsed and lowercased on every lookup.
const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// The parts of an incoming HTTP request that take part in SigV4.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// HTTP method, e.g. `GET` (used verbatim).
    pub method: &'a str,
    /// The path exactly as received, still percent-encoded, without query.
    pub path: &'a str,
    /// The raw query string without the leading `?` (empty if none).
    pub query: &'a str,
    /// All request headers.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestParts<'a> {
    /// Build from the individual parts.
    pub fn new(method: &'a str, path: &'a str, query: &'a str, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            path,
            query,
            headers,
        }
    }

    /// Borrow the parts of an [`http::Request`] (its URI keeps the path and
    /// query exactly as received).
    pub fn from_request<B>(req: &'a http::Request<B>) -> Self {
        Self::from_head(req.method(), req.uri(), req.headers())
    }

    /// Borrow the parts of an [`http::request::Parts`].
    pub fn from_parts(parts: &'a http::request::Parts) -> Self {
        Self::from_head(&parts.method, &parts.uri, &parts.headers)
    }

    fn from_head(method: &'a http::Method, uri: &'a http::Uri, headers: &'a HeaderMap) -> Self {
        Self {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers,
        }
    }
}

/// What the verifier accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyConfig {
    /// The region credentials must be scoped to, e.g. `us-east-1`.
    pub region: String,
    /// The service credentials must be scoped to, e.g. `lambda`.
    pub service: String,
    /// How far the request time may be from the server's clock, either way.
    pub max_clock_skew: SignedDuration,
}

impl VerifyConfig {
    /// A config for `region`/`service` with the default 15 minute skew.
    pub fn new(region: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            service: service.into(),
            max_clock_skew: SignedDuration::from_mins(15),
        }
    }
}

impl Default for VerifyConfig {
    /// `us-east-1`, `lambda`, 15 minutes.
    fn default() -> Self {
        Self::new("us-east-1", "lambda")
    }
}

/// Where the signature was carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureLocation {
    /// `Authorization: AWS4-HMAC-SHA256 ...` header.
    Header,
    /// Presigned URL (`X-Amz-Signature` query parameter).
    QueryString,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The access key id from the credential scope.
    pub access_key_id: String,
    /// `x-amz-security-token` header / `X-Amz-Security-Token` parameter, as
    /// received (for temporary credentials), if any.
    pub session_token: Option<String>,
    /// The request time the client signed.
    pub signed_at: Timestamp,
    /// Header or presigned-URL authentication.
    pub location: SignatureLocation,
}

/// Authentication values pulled out of the header or query string.
struct AuthValues<'a> {
    location: SignatureLocation,
    algorithm: Cow<'a, str>,
    credential: Cow<'a, str>,
    signed_headers: Cow<'a, str>,
    signature: Cow<'a, str>,
    time: Timestamp,
    /// Presigned URL validity, in seconds.
    expires: Option<i64>,
    session_token: Option<String>,
}

fn incomplete(msg: impl Into<String>) -> AuthError {
    AuthError::IncompleteSignature(msg.into())
}

fn invalid(msg: impl Into<String>) -> AuthError {
    AuthError::InvalidSignature(msg.into())
}

fn bad_date(value: &str) -> AuthError {
    incomplete(format!(
        "Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
    ))
}

fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Cow<'h, str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// The non-empty pieces of `s` between `,`, space and tab, scanned as bytes (all three are
/// ASCII, so every piece is a `str` slice); `str::split` with a char set decodes each char.
fn auth_params(s: &str) -> impl Iterator<Item = &str> {
    let sep = |b: u8| matches!(b, b',' | b' ' | b'\t');
    let bytes = s.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < bytes.len() && sep(bytes[pos]) {
            pos += 1;
        }
        if pos == bytes.len() {
            return None;
        }
        let start = pos;
        while pos < bytes.len() && !sep(bytes[pos]) {
            pos += 1;
        }
        Some(&s[start..pos])
    })
}

fn parse_header_auth<'a>(
    value: &'a http::HeaderValue,
    headers: &'a HeaderMap,
) -> Result<AuthValues<'a>, AuthError> {
    let Ok(full) = value.to_str() else {
        return Err(incomplete(format!(
            "Authorization header contains characters that are not visible ASCII. Authorization={}",
            String::from_utf8_lossy(value.as_bytes())
        )));
    };
    let full = full.trim();
    let (algorithm, rest) = full.split_once([' ', '\t']).unwrap_or((full, ""));
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in auth_params(rest) {
        let Some((key, val)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{full}'."
            )));
        };
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => {}
        }
    }

    let date_value = header_str(headers, &X_AMZ_DATE)
        .map(|v| (v, true))
        .or_else(|| header_str(headers, &DATE).map(|v| (v, false)));

    let mut msg = String::new();
    for (name, val) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if val.is_none_or(str::is_empty) {
            msg.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    if date_value.is_none() {
        msg.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some((date_value, is_amz))) =
        (credential, signed_headers, signature, date_value)
    else {
        msg.push_str("Authorization=");
        msg.push_str(full);
        return Err(incomplete(msg));
    };
    if !msg.is_empty() {
        msg.push_str("Authorization=");
        msg.push_str(full);
        return Err(incomplete(msg));
    }

    let time = if is_amz {
        parse_amz_date(date_value.trim())
    } else {
        parse_http_date(&date_value)
    }
    .ok_or_else(|| bad_date(&date_value))?;

    Ok(AuthValues {
        location: SignatureLocation::Header,
        algorithm: Cow::Borrowed(algorithm),
        credential: Cow::Borrowed(credential),
        signed_headers: Cow::Borrowed(signed_headers),
        signature: Cow::Borrowed(signature),
        time,
        expires: None,
        session_token: header_str(headers, &X_AMZ_SECURITY_TOKEN).map(Cow::into_owned),
    })
}

fn parse_query_auth(query: &str) -> Result<AuthValues<'static>, AuthError> {
    let mut algorithm = None;
    let mut credential = None;
    let mut signature = None;
    let mut signed_headers = None;
    let mut date = None;
    let mut expires = None;
    let mut token = None;
    for (k, v) in query_pairs(query) {
        let slot = match decode_query_component(k).as_str() {
            "X-Amz-Algorithm" => &mut algorithm,
            "X-Amz-Credential" => &mut credential,
            "X-Amz-Signature" => &mut signature,
            "X-Amz-SignedHeaders" => &mut signed_headers,
            "X-Amz-Date" => &mut date,
            "X-Amz-Expires" => &mut expires,
            "X-Amz-Security-Token" => &mut token,
            _ => continue,
        };
        *slot = Some(decode_query_component(v));
    }

    let mut msg = String::new();
    for (name, val) in [
        ("X-Amz-Algorithm", &algorithm),
        ("X-Amz-Credential", &credential),
        ("X-Amz-Signature", &signature),
        ("X-Amz-SignedHeaders", &signed_headers),
        ("X-Amz-Date", &date),
    ] {
        if val.as_deref().is_none_or(str::is_empty) {
            msg.push_str(&format!(
                "AWS query-string parameters must include '{name}'. "
            ));
        }
    }
    let (Some(algorithm), Some(credential), Some(signature), Some(signed_headers), Some(date)) =
        (algorithm, credential, signature, signed_headers, date)
    else {
        msg.push_str("Re-examine the query-string parameters.");
        return Err(incomplete(msg));
    };
    if !msg.is_empty() {
        msg.push_str("Re-examine the query-string parameters.");
        return Err(incomplete(msg));
    }

    let time = parse_amz_date(&date).ok_or_else(|| bad_date(&date))?;
    let expires = match expires {
        None => None,
        Some(e) => {
            let secs: i64 = e
                .parse()
                .map_err(|_| incomplete("X-Amz-Expires should be a number"))?;
            if secs < 0 {
                return Err(incomplete("X-Amz-Expires must be non-negative"));
            }
            if secs > MAX_PRESIGN_EXPIRES_SECS {
                return Err(incomplete(
                    "X-Amz-Expires must be less than a week (in seconds) that is 604800",
                ));
            }
            Some(secs)
        }
    };
    Ok(AuthValues {
        location: SignatureLocation::QueryString,
        algorithm: Cow::Owned(algorithm),
        credential: Cow::Owned(credential),
        signed_headers: Cow::Owned(signed_headers),
        signature: Cow::Owned(signature),
        time,
        expires,
        session_token: token,
    })
}

fn fmt_window(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs % 60 == 0 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} sec")
    }
}

fn check_time(
    auth: &AuthValues<'_>,
    now: Timestamp,
    skew: SignedDuration,
) -> Result<(), AuthError> {
    let t = auth.time;
    let skew = skew.abs();
    let window = auth.expires.map_or(skew, SignedDuration::from_secs);
    let earliest = now.checked_sub(window).unwrap_or(Timestamp::MIN);
    if t < earliest {
        return Err(invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - {}.)",
            format_amz_date(t),
            format_amz_date(earliest),
            format_amz_date(now),
            fmt_window(window)
        )));
    }
    let latest = now.checked_add(skew).unwrap_or(Timestamp::MAX);
    if t > latest {
        return Err(invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + {}.)",
            format_amz_date(t),
            format_amz_date(latest),
            format_amz_date(now),
            fmt_window(skew)
        )));
    }
    Ok(())
}

/// A request whose SigV4 authentication passed every check that does not need the body
/// (shape, date, time window, `host` signed, algorithm, credential scope, known access key):
/// what [`verify_head`] returns and [`HeadVerified::verify_body`] finishes. A server calls
/// [`verify_head`] before it reads a body, so an unsigned or malformed request costs it nothing.
pub struct HeadVerified<'a, S> {
    req: RequestParts<'a>,
    auth: AuthValues<'a>,
    /// Length of the access key id in `auth.credential`.
    akid_len: usize,
    /// The request time in the SigV4 format, computed once.
    amz_date: String,
    secret: S,
}

impl<S> std::fmt::Debug for HeadVerified<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadVerified")
            .field("credential", &self.auth.credential)
            .finish_non_exhaustive()
    }
}

/// Verify the SigV4 signature of a request.
///
/// * `body_sha256_hex`: lowercase hex SHA-256 of the request body (see
///   [`crate::sha256_hex`]; [`crate::EMPTY_SHA256`] for no body).
/// * `now`: the server's current time.
/// * `lookup`: returns the secret access key for an access key id, or `None`
///   if the key is unknown. It is called at most once, after the request
///   has been checked for shape, time window and credential scope.
///
/// Checks, in AWS's order: presence of auth (exactly one `Authorization`
/// header), required parameters and date,
/// date format, time window (`max_clock_skew`, or `X-Amz-Expires` for
/// presigned URLs), `host` signed, algorithm, credential shape, credential
/// scope (region, service, terminator, date), access key, signature
/// (constant time), and finally that a signed `x-amz-content-sha256` other
/// than `UNSIGNED-PAYLOAD` matches the body. The same as [`verify_head`]
/// followed by [`HeadVerified::verify_body`].
pub fn verify<S: AsRef<str>>(
    req: &RequestParts<'_>,
    body_sha256_hex: &str,
    now: Timestamp,
    cfg: &VerifyConfig,
    lookup: impl FnOnce(&str) -> Option<S>,
) -> Result<Principal, AuthError> {
    verify_head(req, now, cfg, lookup)?.verify_body(body_sha256_hex)
}

/// The checks of [`verify`] that need no body, up to and including the access key lookup.
pub fn verify_head<'a, S: AsRef<str>>(
    req: &RequestParts<'a>,
    now: Timestamp,
    cfg: &VerifyConfig,
    lookup: impl FnOnce(&str) -> Option<S>,
) -> Result<HeadVerified<'a, S>, AuthError> {
    let mut auth_headers = req.headers.get_all(AUTHORIZATION).iter();
    let auth_header = auth_headers.next();
    let extra = auth_headers.count();
    if extra > 0 {
        return Err(incomplete(format!(
            "The request has {} Authorization headers; only one Authorization header is allowed. Send a single 'Authorization: AWS4-HMAC-SHA256 ...' header.",
            extra + 1
        )));
    }
    let presigned =
        query_pairs(req.query).any(|(k, _)| decode_query_component(k) == "X-Amz-Algorithm");
    let auth = match (auth_header, presigned) {
        (Some(_), true) => {
            return Err(invalid(
                "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
            ));
        }
        (None, false) => return Err(AuthError::MissingAuthenticationToken),
        (Some(value), false) => parse_header_auth(value, req.headers)?,
        (None, true) => parse_query_auth(req.query)?,
    };
    check_time(&auth, now, cfg.max_clock_skew)?;

    if !auth
        .signed_headers
        .split(';')
        .any(|h| h.eq_ignore_ascii_case("host"))
    {
        return Err(invalid(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }

    if auth.algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{}' (only AWS4-HMAC-SHA256 for now).",
            auth.algorithm
        )));
    }

    let mut parts = auth.credential.split('/');
    let (
        Some(access_key_id),
        Some(scope_date),
        Some(scope_region),
        Some(scope_service),
        Some(scope_term),
        None,
    ) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    )
    else {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{}'",
            auth.credential
        )));
    };

    let amz_date = format_amz_date(auth.time);
    let mut scope_errors: Vec<String> = Vec::new();
    if scope_region != cfg.region {
        scope_errors.push(format!(
            "Credential should be scoped to a valid region, not '{scope_region}'."
        ));
    }
    if scope_service != cfg.service {
        scope_errors.push(format!(
            "Credential should be scoped to correct service: '{}'.",
            cfg.service
        ));
    }
    if scope_term != TERMINATOR {
        scope_errors.push(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{scope_term}'."
        ));
    }
    if scope_date != &amz_date[..8] {
        scope_errors.push(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{}', from '{amz_date}'.",
            &amz_date[..8]
        ));
    }
    if !scope_errors.is_empty() {
        return Err(invalid(scope_errors.join(" ")));
    }

    let Some(secret) = lookup(access_key_id) else {
        return Err(AuthError::UnrecognizedClient);
    };
    let akid_len = access_key_id.len();
    Ok(HeadVerified {
        req: *req,
        auth,
        akid_len,
        amz_date,
        secret,
    })
}

impl<S: AsRef<str>> HeadVerified<'_, S> {
    /// Finish [`verify`]: the signature over the request and `body_sha256_hex`, then a signed
    /// `x-amz-content-sha256` against the body.
    pub fn verify_body(self, body_sha256_hex: &str) -> Result<Principal, AuthError> {
        self.finish(body_sha256_hex, true)
    }

    /// [`Self::verify_body`] for a server where a signature must cover the body: a request
    /// signed with `UNSIGNED-PAYLOAD` (an `x-amz-content-sha256` header of that value, or a
    /// presigned URL signed so) is refused, so a request seen on the wire cannot be replayed
    /// with another body.
    pub fn verify_signed_body(self, body_sha256_hex: &str) -> Result<Principal, AuthError> {
        self.finish(body_sha256_hex, false)
    }

    fn finish(self, body_sha256_hex: &str, allow_unsigned: bool) -> Result<Principal, AuthError> {
        let Self {
            req,
            auth,
            akid_len,
            amz_date,
            secret,
        } = self;
        let access_key_id = &auth.credential[..akid_len];
        let mut parts = auth.credential[akid_len + 1..].split('/');
        let (Some(scope_date), Some(scope_region), Some(scope_service)) =
            (parts.next(), parts.next(), parts.next())
        else {
            unreachable!("verify_head checked the credential's five elements");
        };

        // The signature the client sent, as bytes. Anything that is not 64 hex
        // digits cannot match; it is compared as a wrong value (constant time).
        let mut provided = [0u8; 32];
        let provided_ok = hex::decode_to_slice(auth.signature.as_bytes(), &mut provided).is_ok();

        let content_sha256 = header_str(req.headers, &X_AMZ_CONTENT_SHA256);
        let content_sha256 = content_sha256.as_deref().map(str::trim);
        let primary_payload = content_sha256.unwrap_or(body_sha256_hex);
        if !allow_unsigned && content_sha256 == Some(UNSIGNED_PAYLOAD) {
            return Err(invalid(
                "UNSIGNED-PAYLOAD is not accepted here: sign the request over the SHA-256 of its body.",
            ));
        }

        let mut canonical = Vec::with_capacity(
            256 + req.method.len()
                + 2 * req.path.len()
                + 2 * req.query.len()
                + auth.signed_headers.len(),
        );
        canonical.extend_from_slice(req.method.as_bytes());
        canonical.push(b'\n');
        write_canonical_uri(&mut canonical, req.path);
        canonical.push(b'\n');
        write_canonical_query(
            &mut canonical,
            req.query,
            auth.location == SignatureLocation::QueryString,
        );
        canonical.push(b'\n');
        write_canonical_headers(&mut canonical, req.headers, &auth.signed_headers);
        let payload_at = canonical.len();
        canonical.extend_from_slice(primary_payload.as_bytes());

        let scope = &auth.credential[access_key_id.len() + 1..];
        let keyed = cached_signing_mac(secret.as_ref(), scope_date, scope_region, scope_service);
        let matches = |sts: &str| {
            let mut mac = keyed.clone();
            mac.update(sts.as_bytes());
            // `verify_slice` compares in constant time.
            mac.verify_slice(&provided).is_ok() && provided_ok
        };

        let sts = string_to_sign(&amz_date, scope, &canonical);
        let mut ok = matches(&sts);
        if !ok
            && allow_unsigned
            && auth.location == SignatureLocation::QueryString
            && content_sha256.is_none()
        {
            // Presigned URLs: botocore signs the body hash, other signers (and
            // S3-style presigning) use UNSIGNED-PAYLOAD. Accept either.
            let mut alt = canonical[..payload_at].to_vec();
            alt.extend_from_slice(UNSIGNED_PAYLOAD.as_bytes());
            ok = matches(&string_to_sign(&amz_date, scope, &alt));
        }
        if !ok {
            return Err(AuthError::SignatureDoesNotMatch {
                canonical_request: String::from_utf8_lossy(&canonical).into_owned(),
                string_to_sign: sts,
            });
        }

        if let Some(declared) = content_sha256
            && declared != UNSIGNED_PAYLOAD
            && !declared.eq_ignore_ascii_case(body_sha256_hex)
        {
            return Err(invalid(
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }

        Ok(Principal {
            access_key_id: access_key_id.to_owned(),
            session_token: auth.session_token,
            signed_at: auth.time,
            location: auth.location,
        })
    }
}
