//! Where records leave fleetfn: [`Sink`] sends to SQS, SNS and EventBridge (on the server's
//! AWS endpoint, [`AwsSink`]), so the dispatcher runs against a fake in unit tests.

use std::future::Future;
use std::pin::Pin;

use fleetfn_roles::{AwsServices, ServiceError};

/// A boxed `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a record was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Service(#[from] ServiceError),
    /// The server has no AWS credentials to send with.
    #[error(
        "this server has no AWS credentials for destinations and dead-letter queues (set them in its environment or profile)"
    )]
    NoCredentials,
}

impl SinkError {
    /// Whether sending again soon may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Service(e) => e.is_transient(),
            Self::NoCredentials => false,
        }
    }
}

/// AWS services that receive records.
pub trait Sink: Send + Sync + std::fmt::Debug {
    fn sqs<'a>(
        &'a self,
        queue_arn: &'a str,
        body: &'a str,
        attributes: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<(), SinkError>>;
    fn sns<'a>(
        &'a self,
        topic_arn: &'a str,
        message: &'a str,
        attributes: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<(), SinkError>>;
    fn event_bus<'a>(
        &'a self,
        bus_arn: &'a str,
        detail_type: &'a str,
        detail: &'a str,
        resources: &'a [&'a str],
    ) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// The real services, or none (every send fails with [`SinkError::NoCredentials`]).
#[derive(Debug, Clone)]
pub struct AwsSink(pub Option<AwsServices>);

impl AwsSink {
    fn services(&self) -> Result<&AwsServices, SinkError> {
        self.0.as_ref().ok_or(SinkError::NoCredentials)
    }
}

impl Sink for AwsSink {
    fn sqs<'a>(
        &'a self,
        queue_arn: &'a str,
        body: &'a str,
        attributes: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            Ok(self
                .services()?
                .sqs_send_message(queue_arn, body, attributes)
                .await?)
        })
    }

    fn sns<'a>(
        &'a self,
        topic_arn: &'a str,
        message: &'a str,
        attributes: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            Ok(self
                .services()?
                .sns_publish(topic_arn, message, attributes)
                .await?)
        })
    }

    fn event_bus<'a>(
        &'a self,
        bus_arn: &'a str,
        detail_type: &'a str,
        detail: &'a str,
        resources: &'a [&'a str],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            Ok(self
                .services()?
                .put_event(bus_arn, "lambda", detail_type, detail, resources)
                .await?)
        })
    }
}
