//! `fleetfn server --instance-provider ec2`: the options of the `ec2` instance provider and the
//! provider they make (fleetfn-dataplane's `Ec2Provider`, EC2 through fleetfn-roles). docs/EC2.md
//! has the walk-through, the operator role's IAM policy and the user-data contract.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetfn_dataplane::{Ec2Provider, Ec2ProviderConfig, StsEc2Connector, agent_connect};
use fleetfn_roles::{
    Ec2Api, Ec2Client, Ec2Config, Ec2Credentials, SourceChain, StsClient, StsConfig,
};
use fleetfn_scheduler::{Catalog, DescribedInstanceType};

/// Where the instances of the cluster come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    /// Hosts that joined with `fleetfn agent --join` (started by someone else).
    Static,
    /// EC2 instances this server launches, in the capacity providers' subnets, as their
    /// operator roles.
    Ec2,
}

/// Options of `fleetfn server` for the `ec2` provider.
#[derive(Debug, Clone, clap::Args)]
pub struct Ec2Args {
    /// `static`: joined hosts; `ec2`: EC2 instances launched for the capacity providers.
    #[arg(
        long,
        value_enum,
        default_value = "static",
        env = "FLEETFN_INSTANCE_PROVIDER"
    )]
    pub instance_provider: ProviderKind,
    /// The image EC2 instances boot (`ami-…`): any Linux with `fleetfn` on its PATH and
    /// cloud-init (or anything that runs user data as a shell script); `resolve:ssm:NAME` is the
    /// AMI in SSM parameter NAME, read at each launch and sweep. A capacity provider's
    /// `fleetfn:ec2-image-id` tag overrides it for its instances; changing either replaces the
    /// instances one at a time.
    #[arg(
        long,
        env = "FLEETFN_EC2_IMAGE_ID",
        value_name = "AMI|resolve:ssm:NAME"
    )]
    pub ec2_image_id: Option<String>,
    /// A server URL the instances' agents join (repeatable; https://, or http:// with
    /// `--ec2-agent-arg=--allow-plain-http`).
    #[arg(
        long = "ec2-join-url",
        env = "FLEETFN_EC2_JOIN_URLS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub ec2_join_urls: Vec<String>,
    /// The `fleetfn:cluster` tag of this cluster's instances (several clusters can share an
    /// account; each reconciles only its own).
    #[arg(long, env = "FLEETFN_EC2_CLUSTER", default_value = "fleetfn")]
    pub ec2_cluster: String,
    /// An instance profile (name or ARN) for the instances' own role.
    #[arg(long, env = "FLEETFN_EC2_INSTANCE_PROFILE")]
    pub ec2_instance_profile: Option<String>,
    /// The CA bundle (PEM) the agents verify the servers' certificates with, passed in the
    /// user data.
    #[arg(long, env = "FLEETFN_EC2_SERVERS_CA", value_name = "FILE")]
    pub ec2_servers_ca: Option<PathBuf>,
    /// A further argument of `fleetfn agent` on the instances (repeatable).
    #[arg(long = "ec2-agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub ec2_agent_args: Vec<String>,
    /// Seconds an instance has to boot and join before it is terminated and the launch fails.
    #[arg(
        long,
        env = "FLEETFN_EC2_JOIN_TIMEOUT",
        default_value_t = 600,
        value_name = "SECONDS"
    )]
    pub ec2_join_timeout: u64,
    /// Seconds before an instance of this cluster that no server knows is terminated as an
    /// orphan.
    #[arg(
        long,
        env = "FLEETFN_EC2_ORPHAN_GRACE",
        default_value_t = 900,
        value_name = "SECONDS"
    )]
    pub ec2_orphan_grace: u64,
    /// Seconds between the leader's looks at the cluster's instances in EC2
    /// (`DescribeInstances`: instances gone, orphans).
    #[arg(
        long,
        env = "FLEETFN_EC2_DESCRIBE_EVERY",
        default_value_t = 15,
        value_name = "SECONDS"
    )]
    pub ec2_describe_every: u64,
    /// Seconds after which an instance is replaced, one at a time (its environments start on
    /// another instance first), as LMI rotates instances; 14 days by default. `ec2`: a new EC2
    /// instance; `static`: another free joined agent of its zone takes over when there is one,
    /// and the old agent, drained, stays joined.
    #[arg(long, env = "FLEETFN_MAX_INSTANCE_AGE", default_value_t = 14 * 24 * 3600, value_name = "SECONDS")]
    pub max_instance_age: u64,
    /// Seconds an instance stays empty before it is terminated (any provider: a `static`
    /// one gives the host back).
    #[arg(
        long,
        default_value_t = 30.0,
        env = "FLEETFN_IDLE_INSTANCE_AFTER",
        value_name = "SECONDS"
    )]
    pub idle_instance_after: f64,
}

/// What the `ec2` provider is made of once: its settings, and the connector to EC2 (one client
/// per operator role, assumed with the server's own credentials).
#[derive(Debug, Clone)]
pub struct Ec2Setup {
    cfg: Ec2ProviderConfig,
    connector: Arc<StsEc2Connector>,
    /// The instance types as EC2 describes them (the built-in catalog if it could not be read).
    pub catalog: Catalog,
}

impl Ec2Setup {
    /// The provider for a leader (`term`) or a follower, over `cp`.
    pub fn provider(
        &self,
        cp: &fleetfn_server::ControlPlane,
        term: Option<u64>,
        agent_tls: Option<fleetfn_proto::tls::ClientTls>,
    ) -> Arc<Ec2Provider> {
        Arc::new(Ec2Provider::new(
            self.cfg.clone(),
            Arc::new(cp.clone()),
            self.connector.clone(),
            self.catalog.clone(),
            agent_connect(term, agent_tls),
        ))
    }
}

/// The `ec2` provider's setup, or `None` for the `static` provider; the options checked.
pub async fn setup(args: &Ec2Args, region: &str) -> anyhow::Result<Option<Ec2Setup>> {
    if args.instance_provider == ProviderKind::Static {
        return Ok(None);
    }
    let image = args
        .ec2_image_id
        .clone()
        .context("--instance-provider ec2 needs --ec2-image-id ami-… or resolve:ssm:NAME (an image with fleetfn on its PATH; docs/EC2.md)")?;
    anyhow::ensure!(
        image.starts_with("ami-") || image.starts_with("resolve:ssm:/"),
        "--ec2-image-id must be an AMI id (ami-…) or resolve:ssm:/PARAMETER/NAME, not {image:?}"
    );
    anyhow::ensure!(
        !args.ec2_join_urls.is_empty(),
        "--instance-provider ec2 needs --ec2-join-url URL: where the instances' agents reach the servers"
    );
    anyhow::ensure!(
        args.ec2_join_timeout >= 10,
        "--ec2-join-timeout must be at least 10 seconds"
    );
    let mut cfg = Ec2ProviderConfig::new(&args.ec2_cluster, &image, args.ec2_join_urls.clone());
    cfg.instance_profile = args.ec2_instance_profile.clone();
    cfg.agent_args = args.ec2_agent_args.clone();
    cfg.join_timeout = Duration::from_secs(args.ec2_join_timeout);
    cfg.orphan_grace = Duration::from_secs(args.ec2_orphan_grace);
    cfg.describe_every = Duration::from_secs(args.ec2_describe_every.max(1));
    cfg.max_instance_age = Duration::from_secs(args.max_instance_age);
    if let Some(ca) = &args.ec2_servers_ca {
        cfg.ca_pem = Some(
            std::fs::read_to_string(ca)
                .with_context(|| format!("reading --ec2-servers-ca {}", ca.display()))?,
        );
    }
    let source = SourceChain::detect()
        .await
        .context("reading the server's AWS credentials for --instance-provider ec2")?
        .context(
            "--instance-provider ec2 needs AWS credentials for the server (to assume the capacity \
             providers' operator roles): none in the environment, the shared files or an EC2 \
             instance role",
        )?;
    let source = Arc::new(source);
    let sts = StsClient::new(
        StsConfig::from_env(region, Duration::from_secs(3600)),
        source.clone(),
    )
    .context("setting up the STS client")?;
    let ec2 = Ec2Config::from_env(region);
    let catalog = described_catalog(&ec2, source).await;
    tracing::info!(endpoint = %ec2.endpoint, image = %image, cluster = %args.ec2_cluster, "instances: EC2, launched as each capacity provider's operator role");
    Ok(Some(Ec2Setup {
        cfg,
        connector: Arc::new(StsEc2Connector::new(ec2, Arc::new(sts))),
        catalog,
    }))
}

/// The instance types of the EC2 endpoint (`DescribeInstanceTypes` with the server's own
/// credentials), priced where the built-in prices know them; the built-in catalog when EC2
/// cannot be asked (said once).
async fn described_catalog(cfg: &Ec2Config, source: Arc<SourceChain>) -> Catalog {
    let described = async {
        let client = Ec2Client::new(cfg.clone(), Ec2Credentials::Source(source))?;
        client.describe_instance_types(&[]).await
    };
    match tokio::time::timeout(Duration::from_secs(60), described).await {
        Ok(Ok(types)) => {
            let records: Vec<DescribedInstanceType> = types
                .into_iter()
                .map(|t| DescribedInstanceType {
                    instance_type: t.name,
                    current_generation: t.current_generation,
                    bare_metal: t.bare_metal,
                    burstable: t.burstable,
                    accelerated: t.accelerated,
                    vcpus: t.vcpus,
                    memory_mib: t.memory_mib,
                    architectures: t.architectures,
                    hypervisor: t.hypervisor,
                })
                .collect();
            let catalog = Catalog::from_described(
                &records,
                format!("DescribeInstanceTypes at {}", cfg.endpoint),
                fleetfn_scheduler::catalog::PRICES_AS_OF,
                &fleetfn_scheduler::catalog::builtin_prices(),
            );
            tracing::info!(
                described = records.len(),
                offered = catalog.types.len(),
                "instance types from EC2's DescribeInstanceTypes"
            );
            catalog
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "DescribeInstanceTypes failed: using the built-in instance catalog");
            Catalog::builtin()
        }
        Err(_) => {
            tracing::warn!(
                "DescribeInstanceTypes took over 60 s: using the built-in instance catalog"
            );
            Catalog::builtin()
        }
    }
}
