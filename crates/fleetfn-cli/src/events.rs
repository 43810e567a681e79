//! Asynchronous invocation options of `fleetfn serve` and `fleetfn server`, and the queue and
//! dispatcher built from them (fleetfn-events).

use std::sync::Arc;
use std::time::Duration;

use fleetfn_events::sources::EventSources;
use fleetfn_events::{AsyncConfig, AsyncInvocations, AwsSink, Policy};
use fleetfn_roles::{AwsServices, ServicesConfig, SourceChain};

/// Options of the asynchronous invocation queue.
#[derive(Debug, Clone, clap::Args)]
pub struct AsyncArgs {
    /// Seconds before the first retry of an asynchronous event whose invoke failed with a
    /// function error; the second retry waits twice as long (AWS: about 1 and 2 minutes).
    #[arg(
        long,
        default_value_t = 60.0,
        env = "FLEETFN_ASYNC_RETRY_DELAY",
        value_name = "SECONDS"
    )]
    pub async_retry_delay: f64,
    /// Seconds a server holds an asynchronous event it delivers before another server may take
    /// it over (renewed while the invoke runs; what a server that dies delays its events by).
    #[arg(
        long,
        default_value_t = 60.0,
        env = "FLEETFN_ASYNC_LEASE",
        value_name = "SECONDS"
    )]
    pub async_lease: f64,
    /// Asynchronous events this server delivers at once.
    #[arg(long, default_value_t = 128, env = "FLEETFN_ASYNC_MAX_IN_FLIGHT")]
    pub async_max_in_flight: usize,
    /// An AWS-compatible endpoint (e.g. http://127.0.0.1:5000) for SQS, SNS and EventBridge
    /// destinations and dead-letter queues [default: AWS's regional endpoints]. They are sent
    /// with the server's own AWS credentials (environment, profile or instance role).
    #[arg(long, env = "FLEETFN_AWS_ENDPOINT_URL", value_name = "URL")]
    pub aws_endpoint_url: Option<String>,
}

impl AsyncArgs {
    fn config(&self) -> anyhow::Result<AsyncConfig> {
        let delay = crate::serve::seconds(self.async_retry_delay, "--async-retry-delay")?;
        let lease = crate::serve::seconds(self.async_lease, "--async-lease")?;
        anyhow::ensure!(
            lease >= Duration::from_secs(3),
            "--async-lease must be at least 3 seconds"
        );
        anyhow::ensure!(
            self.async_max_in_flight >= 1,
            "--async-max-in-flight must be at least 1"
        );
        Ok(AsyncConfig {
            policy: Policy {
                retry_delays: [delay, delay * 2],
                ..Policy::default()
            },
            lease,
            max_in_flight: self.async_max_in_flight,
            ..AsyncConfig::default()
        })
    }
}

/// The client for the server's calls to SQS, SNS and EventBridge (destinations, dead-letter
/// queues, event source mappings), or `None` (said once) without AWS credentials.
pub async fn services(args: &AsyncArgs) -> anyhow::Result<Option<AwsServices>> {
    match SourceChain::detect().await {
        Ok(Some(source)) => {
            let services = AwsServices::new(
                ServicesConfig {
                    endpoint: args.aws_endpoint_url.clone(),
                },
                Arc::new(source),
            )
            .map_err(|e| anyhow::anyhow!("--aws-endpoint-url: {e}"))?;
            Ok(Some(services))
        }
        Ok(None) => {
            tracing::info!(
                "async destinations and event source mappings: the server has no AWS credentials, so SQS/SNS/EventBridge destinations, dead-letter queues and SQS mappings report that they cannot be reached (Lambda function destinations work)"
            );
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the server's AWS credentials for destinations and event source mappings failed");
            Ok(None)
        }
    }
}

/// The queue and dispatcher over `store` (not yet spawned).
pub fn build(
    args: &AsyncArgs,
    services: Option<AwsServices>,
    store: Arc<dyn fleetfn_store::Queue>,
    cp: fleetfn_server::ControlPlane,
    invoker: Arc<dyn fleetfn_contracts::Invoker>,
    metrics: Arc<fleetfn_metrics::Metrics>,
) -> anyhow::Result<AsyncInvocations> {
    Ok(AsyncInvocations::new(
        store,
        cp,
        invoker,
        Arc::new(AwsSink(services)),
        metrics,
        args.config()?,
    ))
}

/// The pollers of SQS event source mappings (spawned by the leader).
pub fn sources(
    services: Option<AwsServices>,
    invoker: Arc<dyn fleetfn_contracts::Invoker>,
    metrics: Arc<fleetfn_metrics::Metrics>,
) -> EventSources {
    EventSources::new(
        invoker,
        services.map(|s| Arc::new(s) as Arc<dyn fleetfn_events::sources::SqsSource>),
        metrics,
    )
}
