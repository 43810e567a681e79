//! Execution-role credentials for functions: the server's own AWS credentials, found the way the
//! AWS SDKs find them ([`SourceChain`]: environment variables, the shared credentials and config
//! files, the EC2 instance role), and STS `AssumeRole` with them ([`StsClient`]), which yields the
//! temporary [`RoleCredentials`] an environment is given. The [`RoleAssumer`] trait is what the
//! data plane uses, so it can run against a fake in unit tests. With the same credentials it
//! makes the server's own calls to SQS, SNS and EventBridge ([`AwsServices`]) for the
//! destinations and dead-letter queues of asynchronous invocations, and receives, deletes and
//! hides again the messages of SQS queues for the pollers of event source mappings. With a
//! capacity provider's operator role it launches, finds and terminates EC2 instances
//! ([`Ec2Client`], behind the [`Ec2Api`] trait).
#![forbid(unsafe_code)]

mod ec2;
mod services;
mod source;
mod sts;
mod transport;

pub use ec2::{
    Ec2Api, Ec2Client, Ec2Config, Ec2Credentials, Ec2Error, Filter, Instance, InstanceState,
    InstanceTypeInfo, LaunchRequest, Subnet,
};
pub use fleetfn_proto::RoleCredentials;
pub use services::{
    AwsServices, ServiceError, ServicesConfig, SqsMessage, SqsMessageAttribute, SqsQueueAttributes,
};
pub use source::{SourceChain, SourceCredentials, SourceError};
pub use sts::{StsClient, StsConfig};

use std::future::Future;
use std::pin::Pin;

/// Why a role could not be assumed.
#[derive(Debug, thiserror::Error)]
pub enum AssumeError {
    /// STS refused (`AccessDenied`, `ValidationError`, an expired source token...).
    #[error("STS refused to assume {role_arn}: {code}: {message}")]
    Refused {
        /// The role.
        role_arn: String,
        /// The HTTP status of STS's answer.
        status: u16,
        /// STS's error code.
        code: String,
        /// STS's message.
        message: String,
    },
    /// The server's own credentials are gone (an instance role that could not be read).
    #[error("the server's AWS credentials are unavailable: {0}")]
    Source(#[from] SourceError),
    /// STS could not be reached or answered something else than an STS document.
    #[error("STS at {endpoint} could not be used: {detail}")]
    Unavailable {
        /// The endpoint tried.
        endpoint: String,
        /// What went wrong.
        detail: String,
    },
}

impl AssumeError {
    /// Whether trying again later may succeed: STS unreachable or throttling or failing
    /// itself, the server's own credentials unreadable for a moment; not a refusal of the role.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Refused { status, code, .. } => {
                *status >= 500
                    || matches!(
                        code.as_str(),
                        "Throttling" | "ThrottlingException" | "RequestLimitExceeded"
                    )
            }
            Self::Source(_) | Self::Unavailable { .. } => true,
        }
    }

    /// STS's error code, for what the function's owner is told (the message can name the
    /// server's own principal, which stays in the server's log).
    pub fn code(&self) -> &str {
        match self {
            Self::Refused { code, .. } => code,
            Self::Source(_) => "the server's AWS credentials are unavailable",
            Self::Unavailable { .. } => "STS could not be reached",
        }
    }
}

/// A boxed `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Assumes execution roles.
pub trait RoleAssumer: Send + Sync + std::fmt::Debug {
    /// Temporary credentials of `role_arn` for a session named `session_name`.
    fn assume<'a>(
        &'a self,
        role_arn: &'a str,
        session_name: &'a str,
    ) -> BoxFuture<'a, Result<RoleCredentials, AssumeError>>;

    /// How long the credentials it hands out live.
    fn lifetime(&self) -> std::time::Duration;
}

/// A session name STS accepts (`[\w+=,.@-]`, 2 to 64 characters) for an environment of a
/// function: `<function>@<env id>`, the function name cut so the environment id stays whole.
pub fn session_name(function_name: &str, env_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let env = clean(env_id);
    let room = 64usize.saturating_sub(env.len() + 1);
    let func: String = clean(function_name).chars().take(room).collect();
    let name = if func.is_empty() {
        env
    } else {
        format!("{func}@{env}")
    };
    let name: String = name.chars().take(64).collect();
    if name.len() < 2 {
        format!("fleetfn-{name}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts() {
        assert_eq!(session_name("hello", "e-0123"), "hello@e-0123");
        let long = "f".repeat(140);
        let s = session_name(&long, "e-0123456789abcdef");
        assert_eq!(s.len(), 64);
        assert!(s.ends_with("@e-0123456789abcdef"));
        assert_eq!(session_name("a:b", "e/1"), "a-b@e-1");
        assert_eq!(session_name("", "x"), "fleetfn-x");
    }
}
