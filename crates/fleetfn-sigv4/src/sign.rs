//! A small SigV4 signer for fleetfn's own clients (the CLI) and tests.
//!
//! It produces the same canonical request as botocore / aws-sigv4, so a
//! request signed here verifies against AWS-compatible servers and against
//! [`crate::verify`].

use http::HeaderMap;
use http::HeaderValue;
use http::header::{AUTHORIZATION, HOST};
use jiff::Timestamp;

use crate::canonical::{
    ALGORITHM, TERMINATOR, cached_signing_mac, encode_unreserved_into, format_amz_date,
    string_to_sign, write_canonical_headers, write_canonical_query, write_canonical_uri,
};
use crate::error::SignError;
use crate::sha256_hex;

/// Credentials, scope and time for signing.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    /// Access key id, e.g. `AKIDEXAMPLE`.
    pub access_key_id: &'a str,
    /// Secret access key.
    pub secret_access_key: &'a str,
    /// Session token of temporary credentials (sent as `x-amz-security-token`).
    pub session_token: Option<&'a str>,
    /// Region of the credential scope, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service of the credential scope, e.g. `lambda`.
    pub service: &'a str,
    /// Signing time (normally `Timestamp::now()`).
    pub time: Timestamp,
}

impl SigningParams<'_> {
    fn date_and_scope(&self) -> Result<(String, String), SignError> {
        let amz_date = format_amz_date(self.time);
        if amz_date.len() != 16 {
            return Err(SignError::TimeOutOfRange);
        }
        let scope = format!(
            "{}/{}/{}/{}",
            &amz_date[..8],
            self.region,
            self.service,
            TERMINATOR
        );
        Ok((amz_date, scope))
    }

    /// The signature, with the day's signing key from the cache the verifier uses (a client
    /// signing many requests derives it once a day, not with four HMACs per request).
    fn signature(&self, amz_date: &str, scope: &str, canonical: &[u8]) -> String {
        use hmac::Mac;
        let sts = string_to_sign(amz_date, scope, canonical);
        let mut mac = cached_signing_mac(
            self.secret_access_key,
            &amz_date[..8],
            self.region,
            self.service,
        );
        mac.update(sts.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Is this header signed by [`sign_request`]?
fn is_signed_header(name: &str) -> bool {
    name == "host" || name == "content-type" || name == "content-md5" || name.starts_with("x-amz-")
}

/// Sign a request in place with an `Authorization` header.
///
/// `path` and `query` are exactly what will be sent (path percent-encoded,
/// query without `?`); `headers` must contain `host`. Sets `X-Amz-Date`,
/// `X-Amz-Security-Token` (when `params.session_token` is set, otherwise an
/// existing one is removed) and `Authorization`. Signs `host`,
/// `content-type`, `content-md5` and every `x-amz-*` header present, so
/// headers a proxy or HTTP client may add or rewrite (user-agent,
/// content-length, accept-encoding, ...) do not break the signature.
pub fn sign_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &mut HeaderMap,
    body_sha256_hex: &str,
    params: &SigningParams<'_>,
) -> Result<(), SignError> {
    if !headers.contains_key(HOST) {
        return Err(SignError::MissingHost);
    }
    let (amz_date, scope) = params.date_and_scope()?;
    headers.remove(AUTHORIZATION);
    headers.insert(
        "x-amz-date",
        HeaderValue::from_str(&amz_date).map_err(|_| SignError::TimeOutOfRange)?,
    );
    match params.session_token {
        Some(token) => {
            let mut v = HeaderValue::from_str(token)
                .map_err(|_| SignError::InvalidHeaderValue("x-amz-security-token"))?;
            v.set_sensitive(true);
            headers.insert("x-amz-security-token", v);
        }
        None => {
            headers.remove("x-amz-security-token");
        }
    }

    let mut names: Vec<&str> = headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| is_signed_header(n))
        .collect();
    names.sort_unstable();
    let signed_headers = names.join(";");

    let payload = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or(body_sha256_hex);

    let mut canonical = Vec::with_capacity(256 + 2 * (path.len() + query.len()));
    canonical.extend_from_slice(method.as_bytes());
    canonical.push(b'\n');
    write_canonical_uri(&mut canonical, path);
    canonical.push(b'\n');
    write_canonical_query(&mut canonical, query, false);
    canonical.push(b'\n');
    write_canonical_headers(&mut canonical, headers, &signed_headers);
    canonical.extend_from_slice(payload.as_bytes());

    let signature = params.signature(&amz_date, &scope, &canonical);
    let auth = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        params.access_key_id
    );
    let mut value =
        HeaderValue::from_str(&auth).map_err(|_| SignError::InvalidHeaderValue("authorization"))?;
    value.set_sensitive(true);
    headers.insert(AUTHORIZATION, value);
    Ok(())
}

/// The `Host` header value an HTTP client sends for `uri`: the host, plus
/// the port unless it is the scheme's default.
pub fn host_for_uri(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    let default_port = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    Some(match uri.port_u16() {
        Some(port) if Some(port) != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    })
}

/// Sign an [`http::Request`] in place (see [`sign_request`]).
///
/// If it has no `Host` header, one is derived from the URI's authority
/// (default ports omitted, as HTTP clients do) and inserted, so what is
/// signed is what is sent. The body is hashed for the payload hash.
pub fn sign_http_request<B: AsRef<[u8]>>(
    req: &mut http::Request<B>,
    params: &SigningParams<'_>,
) -> Result<(), SignError> {
    if !req.headers().contains_key(HOST) {
        let host = host_for_uri(req.uri()).ok_or(SignError::MissingHost)?;
        let value =
            HeaderValue::from_str(&host).map_err(|_| SignError::InvalidHeaderValue("host"))?;
        req.headers_mut().insert(HOST, value);
    }
    let body_hash = sha256_hex(req.body().as_ref());
    let method = req.method().clone();
    let uri = req.uri().clone();
    sign_request(
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or(""),
        req.headers_mut(),
        &body_hash,
        params,
    )
}

/// Presign a URL: returns the query string to send (the original `query`
/// followed by the `X-Amz-*` parameters and `X-Amz-Signature`).
///
/// Only `host` is signed. `body_sha256_hex` is the payload hash to sign
/// (the body's hash, [`crate::EMPTY_SHA256`] for none, or
/// [`crate::UNSIGNED_PAYLOAD`]); [`crate::verify`] accepts both the body hash
/// and `UNSIGNED-PAYLOAD` for presigned URLs.
pub fn presign_query(
    method: &str,
    path: &str,
    query: &str,
    host: &str,
    body_sha256_hex: &str,
    expires_secs: u32,
    params: &SigningParams<'_>,
) -> Result<String, SignError> {
    let (amz_date, scope) = params.date_and_scope()?;
    let mut out = String::with_capacity(query.len() + 256);
    out.push_str(query);
    let mut add = |key: &str, value: &str| {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        encode_unreserved_into(&mut out, value);
    };
    add("X-Amz-Algorithm", ALGORITHM);
    add(
        "X-Amz-Credential",
        &format!("{}/{scope}", params.access_key_id),
    );
    add("X-Amz-Date", &amz_date);
    add("X-Amz-Expires", &expires_secs.to_string());
    add("X-Amz-SignedHeaders", "host");
    if let Some(token) = params.session_token {
        add("X-Amz-Security-Token", token);
    }

    let mut headers = HeaderMap::with_capacity(1);
    headers.insert(
        HOST,
        HeaderValue::from_str(host).map_err(|_| SignError::InvalidHeaderValue("host"))?,
    );
    let mut canonical = Vec::with_capacity(256 + 2 * (path.len() + out.len()));
    canonical.extend_from_slice(method.as_bytes());
    canonical.push(b'\n');
    write_canonical_uri(&mut canonical, path);
    canonical.push(b'\n');
    write_canonical_query(&mut canonical, &out, false);
    canonical.push(b'\n');
    write_canonical_headers(&mut canonical, &headers, "host");
    canonical.extend_from_slice(body_sha256_hex.as_bytes());

    let signature = params.signature(&amz_date, &scope, &canonical);
    out.push_str("&X-Amz-Signature=");
    out.push_str(&signature);
    Ok(out)
}
