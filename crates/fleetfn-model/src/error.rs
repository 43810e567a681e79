//! The one error type every control-plane and invoke operation returns, named after AWS Lambda's
//! error shapes so the API layer can render `x-amzn-ErrorType` and the JSON body boto3 expects.

use std::fmt;

/// AWS Lambda error types (the `x-amzn-ErrorType` value) that fleetfn returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    ResourceNotFound,
    ResourceConflict,
    InvalidParameterValue,
    Validation,
    PreconditionFailed,
    TooManyRequests,
    RequestTooLarge,
    RequestEntityTooLarge,
    InvalidRequestContent,
    UnsupportedMediaType,
    Service,
    CapacityProviderLimitExceeded,
    FunctionVersionsPerCapacityProviderLimitExceeded,
    CodeStorageExceeded,
    NoPublishedVersion,
    AccessDenied,
    UnknownOperation,
    ResourceNotReady,
    ResourceInUse,
    MissingAuthenticationToken,
    UnrecognizedClient,
    InvalidSignature,
    IncompleteSignature,
    PolicyLengthExceeded,
}

impl ErrorKind {
    /// The AWS error type name, as sent in `x-amzn-ErrorType` and the body's `Type`/`__type`.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ResourceConflict => "ResourceConflictException",
            Self::InvalidParameterValue => "InvalidParameterValueException",
            Self::Validation => "ValidationException",
            Self::PreconditionFailed => "PreconditionFailedException",
            Self::TooManyRequests => "TooManyRequestsException",
            Self::RequestTooLarge => "RequestTooLargeException",
            Self::RequestEntityTooLarge => "RequestEntityTooLargeException",
            Self::InvalidRequestContent => "InvalidRequestContentException",
            Self::UnsupportedMediaType => "UnsupportedMediaTypeException",
            Self::Service => "ServiceException",
            Self::CapacityProviderLimitExceeded => "CapacityProviderLimitExceededException",
            Self::FunctionVersionsPerCapacityProviderLimitExceeded => {
                "FunctionVersionsPerCapacityProviderLimitExceededException"
            }
            Self::CodeStorageExceeded => "CodeStorageExceededException",
            Self::NoPublishedVersion => "NoPublishedVersionException",
            Self::AccessDenied => "AccessDeniedException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::ResourceNotReady => "ResourceNotReadyException",
            Self::ResourceInUse => "ResourceInUseException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::InvalidSignature => "InvalidSignatureException",
            Self::IncompleteSignature => "IncompleteSignatureException",
            Self::PolicyLengthExceeded => "PolicyLengthExceededException",
        }
    }

    /// The HTTP status AWS uses for this error type.
    pub fn status(self) -> u16 {
        match self {
            Self::ResourceNotFound | Self::UnknownOperation => 404,
            Self::ResourceConflict => 409,
            Self::PreconditionFailed => 412,
            Self::TooManyRequests => 429,
            Self::RequestTooLarge | Self::RequestEntityTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Service => 500,
            Self::ResourceNotReady => 502,
            Self::AccessDenied
            | Self::MissingAuthenticationToken
            | Self::UnrecognizedClient
            | Self::InvalidSignature
            | Self::IncompleteSignature => 403,
            _ => 400,
        }
    }
}

/// An error with its AWS type and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct LambdaError {
    pub kind: ErrorKind,
    pub message: String,
    /// For `TooManyRequestsException`: seconds the caller should wait, and the reason.
    pub retry_after_secs: Option<u32>,
    pub reason: Option<String>,
}

impl fmt::Display for LambdaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.type_name(), self.message)
    }
}

impl LambdaError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after_secs: None,
            reason: None,
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceConflict, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterValue, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PreconditionFailed, message)
    }
    pub fn service(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Service, message)
    }
    pub fn bad_content(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequestContent, message)
    }
    pub fn throttled(reason: &str, retry_after_secs: u32, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::TooManyRequests,
            message: message.into(),
            retry_after_secs: Some(retry_after_secs),
            reason: Some(reason.to_string()),
        }
    }
    /// A `ValidationException` in AWS's wording for one failed member constraint.
    pub fn validation(value: &str, member_path: &str, constraint: &str) -> Self {
        Self::new(
            ErrorKind::Validation,
            format!(
                "1 validation error detected: Value '{value}' at '{member_path}' failed to satisfy constraint: {constraint}"
            ),
        )
    }
}

pub type Result<T, E = LambdaError> = std::result::Result<T, E>;
