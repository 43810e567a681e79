//! Error types: [`AuthError`] for verification, [`SignError`] for signing.

/// The message AWS returns when the signature does not match.
pub const SIGNATURE_MISMATCH_MESSAGE: &str = "The request signature we calculated does not match \
the signature you provided. Check your AWS Secret Access Key and signing method. Consult the \
service documentation for details.";

/// Why a request failed SigV4 authentication.
///
/// Each variant corresponds to the AWS error type returned by
/// [`AuthError::aws_error_type`]; the `Display` text is the message AWS puts
/// in the error body. All of them are answered with HTTP 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor an `X-Amz-Algorithm` query
    /// parameter was sent. AWS: `MissingAuthenticationTokenException`.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,

    /// The authentication information is malformed or incomplete (missing
    /// `Credential`/`SignedHeaders`/`Signature`, missing or badly formatted
    /// date, bad credential shape, unsupported algorithm).
    /// AWS: `IncompleteSignatureException`.
    #[error("{0}")]
    IncompleteSignature(String),

    /// The request is well formed but not acceptable: credential scoped to
    /// the wrong region/service/date/terminator, timestamp outside the
    /// allowed window, `host` not signed, both header and query auth, or an
    /// `x-amz-content-sha256` that does not match the body.
    /// AWS: `InvalidSignatureException`.
    #[error("{0}")]
    InvalidSignature(String),

    /// The access key id is not known. AWS: `UnrecognizedClientException`.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,

    /// The signature does not match the one computed from the request.
    /// AWS: `InvalidSignatureException`. The canonical request and
    /// string-to-sign the server computed are kept for server-side logging
    /// (AWS echoes them to the client for some services; this crate leaves
    /// that choice to the caller and does not put them in the message).
    #[error("{}", SIGNATURE_MISMATCH_MESSAGE)]
    SignatureDoesNotMatch {
        /// The canonical request computed by the verifier.
        canonical_request: String,
        /// The string to sign computed by the verifier.
        string_to_sign: String,
    },
}

impl AuthError {
    /// The AWS error type (the `__type` / `x-amzn-ErrorType` value).
    pub fn aws_error_type(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthError::IncompleteSignature(_) => "IncompleteSignatureException",
            AuthError::InvalidSignature(_) | AuthError::SignatureDoesNotMatch { .. } => {
                "InvalidSignatureException"
            }
            AuthError::UnrecognizedClient => "UnrecognizedClientException",
        }
    }

    /// The HTTP status to answer with (403 Forbidden for every variant).
    pub fn http_status(&self) -> http::StatusCode {
        http::StatusCode::FORBIDDEN
    }

    /// The human readable message (same as `to_string()`).
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The request has no `host` header and none could be derived from its URI.
    #[error("cannot sign a request without a host (set the Host header or use an absolute URI)")]
    MissingHost,
    /// A value (session token, host) cannot be used as an HTTP header value.
    #[error("invalid value for header {0}")]
    InvalidHeaderValue(&'static str),
    /// The signing time cannot be represented in the SigV4 date format.
    #[error("signing time out of range")]
    TimeOutOfRange,
}
