//! AWS Signature Version 4 for fleetfn's Lambda-compatible API.
//!
//! This crate owns the *verification* of SigV4-signed HTTP requests (the
//! `Authorization: AWS4-HMAC-SHA256 ...` header form and presigned query
//! strings), as produced by the unmodified AWS CLI / botocore / boto3 and by
//! the Rust `aws-sigv4` signer, plus a small matching signer for fleetfn's
//! own clients. It is pure computation: no I/O, no HTTP server, no clock
//! (the caller passes `now`) and no credential store (the caller passes a
//! lookup function). Errors map one to one onto the AWS error types a
//! server returns ([`AuthError::aws_error_type`], all HTTP 403).
//!
//! ```
//! use fleetfn_sigv4::{RequestParts, SigningParams, VerifyConfig, sha256_hex, sign_request, verify};
//!
//! let now = "2026-11-27T09:00:00Z".parse().unwrap();
//! let body = br#"{"hello":"world"}"#;
//! let mut headers = http::HeaderMap::new();
//! headers.insert("host", "127.0.0.1:9000".parse().unwrap());
//! let params = SigningParams {
//!     access_key_id: "AKIDEXAMPLE",
//!     secret_access_key: "secret",
//!     session_token: None,
//!     region: "us-east-1",
//!     service: "lambda",
//!     time: now,
//! };
//! let path = "/2015-03-31/functions/my-fn/invocations";
//! sign_request("POST", path, "", &mut headers, &sha256_hex(body), &params).unwrap();
//!
//! let req = RequestParts::new("POST", path, "", &headers);
//! let principal = verify(&req, &sha256_hex(body), now, &VerifyConfig::default(), |akid| {
//!     (akid == "AKIDEXAMPLE").then_some("secret")
//! })
//! .unwrap();
//! assert_eq!(principal.access_key_id, "AKIDEXAMPLE");
//! ```
#![forbid(unsafe_code)]

mod canonical;
mod error;
mod sign;
mod verify;

pub use canonical::{EMPTY_SHA256, format_amz_date, parse_amz_date, sha256_hex};
pub use error::{AuthError, SIGNATURE_MISMATCH_MESSAGE, SignError};
pub use sign::{SigningParams, host_for_uri, presign_query, sign_http_request, sign_request};
pub use verify::{
    HeadVerified, MAX_PRESIGN_EXPIRES_SECS, Principal, RequestParts, SignatureLocation,
    UNSIGNED_PAYLOAD, VerifyConfig, verify, verify_head,
};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}
