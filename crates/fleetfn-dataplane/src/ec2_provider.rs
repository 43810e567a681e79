//! The `ec2` instance provider: instances are EC2 instances it launches in the capacity
//! provider's subnets, with its security groups, signed with its operator role
//! (`CapacityProviderOperatorRoleArn`, assumed through STS). Each instance boots an image that
//! has `fleetfn` on it and runs the user data this provider writes ([`user_data`]): a script that
//! starts `fleetfn agent --join` with a single-use join token made for that instance alone. The
//! launch returns once the agent that joined with that token is claimed as the instance (like a
//! `static` provider's claim, but of exactly that agent).
//!
//! Zones are subnets: a capacity provider's zones are its `SubnetIds` (as everywhere in
//! fleetfn), so an instance of zone `subnet-…` is launched in that subnet and its agent joins
//! with `--zone subnet-…`.
//!
//! Launch errors for want of capacity or quota (`InsufficientInstanceCapacity`,
//! `VcpuLimitExceeded`, `Unsupported`, …) fall back: first to the next allowed type at least as
//! large in the same zone, then to the same choices in the capacity provider's other zones; a
//! (type, zone) that failed so is skipped for [`CAPACITY_COOL_OFF`], and the failures are kept
//! for status ([`Ec2Provider::launch_failures`]). The data plane records the zone and type the
//! instance got.
//!
//! Instances are replaced, one at a time per capacity provider (new environments elsewhere
//! Ready first, then the old ones drain), when they are older than
//! [`Ec2ProviderConfig::max_instance_age`] (14 days by default, as LMI rotates instances) or run
//! another image than the one the capacity provider's instances should boot now: the server's
//! `--ec2-image-id`, or the capacity provider's `fleetfn:ec2-image-id` tag.
//!
//! Every instance is tagged `fleetfn:cluster`, `fleetfn:capacity-provider`, `fleetfn:instance-id`,
//! `fleetfn:zone` and `fleetfn:image`; the sweep reconciles with `DescribeInstances` over
//! the cluster's tag: an instance of this cluster that no launch or claim knows is terminated
//! once older than [`Ec2ProviderConfig::orphan_grace`], and an instance whose EC2 state left
//! `pending`/`running` is no longer running for the data plane, which replaces it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetfn_model::LambdaError;
use fleetfn_model::types::CapacityProvider;
use fleetfn_roles::{Ec2Api, Ec2Error, Filter, LaunchRequest};
use fleetfn_scheduler::{Arch, Catalog, InstanceType};
use fleetfn_server::cluster::{AgentClaim, JoinedAgent};
use parking_lot::Mutex;

use crate::ProviderCapacity;
use crate::instances::{BoxFuture, Instance, InstanceProvider, LaunchError, LaunchSpec, Sweep};
use crate::static_provider::{AgentDirectory, Connect};

/// How long a (type, zone) that EC2 had no capacity for is not tried again.
pub const CAPACITY_COOL_OFF: Duration = Duration::from_secs(300);
/// How often a launch waiting for its agent looks for it.
const JOIN_POLL: Duration = Duration::from_secs(1);
/// How often a launch waiting for its agent asks EC2 whether the instance still runs.
const STATE_POLL: Duration = Duration::from_secs(10);
/// How long a claimed agent has to answer its first report.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Failures kept for status.
const MAX_FAILURES_KEPT: usize = 20;

/// Tag keys.
pub const TAG_CLUSTER: &str = "fleetfn:cluster";
pub const TAG_CAPACITY_PROVIDER: &str = "fleetfn:capacity-provider";
pub const TAG_INSTANCE_ID: &str = "fleetfn:instance-id";
pub const TAG_ZONE: &str = "fleetfn:zone";
pub const TAG_IMAGE: &str = "fleetfn:image";
/// The capacity provider tag naming the image its instances boot (overrides the server-wide
/// `--ec2-image-id`; changing it replaces the instances, one at a time).
pub const TAG_IMAGE_OVERRIDE: &str = "fleetfn:ec2-image-id";
/// An image given as `resolve:ssm:NAME` is the value of SSM parameter NAME (CloudFormation's and
/// launch templates' syntax).
pub const SSM_PREFIX: &str = "resolve:ssm:";

/// How the provider launches instances (server-wide; per capacity provider: subnets, security
/// groups, operator role and instance requirements).
#[derive(Debug, Clone)]
pub struct Ec2ProviderConfig {
    /// The value of the `fleetfn:cluster` tag: which fleetfn cluster an instance belongs to
    /// (several can share an account; each reconciles only its own).
    pub cluster: String,
    /// The image instances boot (`ami-…`), with `fleetfn` on its `PATH`.
    pub image_id: String,
    /// The servers' URLs the agents join (`--join`).
    pub join_urls: Vec<String>,
    /// A CA bundle (PEM) the agents verify the servers with, written next to the token.
    pub ca_pem: Option<String>,
    /// An instance profile (name or ARN) for the instances' own role.
    pub instance_profile: Option<String>,
    /// Further arguments of `fleetfn agent` (e.g. `--allow-plain-http` in a test).
    pub agent_args: Vec<String>,
    /// How long a launched instance has to boot and join.
    pub join_timeout: Duration,
    /// How old an unknown instance of the cluster must be before the sweep terminates it (a
    /// launch of another server in flight is not an orphan).
    pub orphan_grace: Duration,
    /// How often the sweep asks EC2 for the cluster's instances.
    pub describe_every: Duration,
    /// Instances older than this are replaced (rolling, as LMI rotates its instances).
    pub max_instance_age: Duration,
}

impl Ec2ProviderConfig {
    /// Defaults for `cluster`, `image_id` and `join_urls`: 10 min to join, 15 min grace, EC2
    /// asked every 15 s.
    pub fn new(cluster: &str, image_id: &str, join_urls: Vec<String>) -> Self {
        Self {
            cluster: cluster.to_owned(),
            image_id: image_id.to_owned(),
            join_urls,
            ca_pem: None,
            instance_profile: None,
            agent_args: Vec::new(),
            join_timeout: Duration::from_secs(600),
            orphan_grace: Duration::from_secs(900),
            describe_every: Duration::from_secs(15),
            max_instance_age: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// What the provider needs of the control plane beyond the joined agents: capacity providers
/// and single-use join tokens.
pub trait Ec2Directory: AgentDirectory {
    /// The capacity provider named `name`, if it exists.
    fn capacity_provider<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<CapacityProvider>, LambdaError>>;
    /// The image a capacity provider's instances boot instead of the server-wide one: the
    /// value of its `fleetfn:ec2-image-id` tag.
    fn image_override<'a>(
        &'a self,
        cp: &'a CapacityProvider,
    ) -> BoxFuture<'a, Result<Option<String>, LambdaError>>;
    /// A single-use join token living `ttl`: `(token id, token)`.
    fn single_use_token<'a>(
        &'a self,
        description: String,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(String, String), LambdaError>>;
}

impl Ec2Directory for fleetfn_server::ControlPlane {
    fn capacity_provider<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<CapacityProvider>, LambdaError>> {
        Box::pin(self.capacity_provider_by_name(name))
    }

    fn image_override<'a>(
        &'a self,
        cp: &'a CapacityProvider,
    ) -> BoxFuture<'a, Result<Option<String>, LambdaError>> {
        Box::pin(async move {
            Ok(self
                .list_tags(&cp.capacity_provider_arn)
                .await?
                .get(TAG_IMAGE_OVERRIDE)
                .cloned())
        })
    }

    fn single_use_token<'a>(
        &'a self,
        description: String,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(String, String), LambdaError>> {
        Box::pin(async move {
            let doc = self
                .create_join_token(
                    fleetfn_server::cluster::CreateJoinToken {
                        ttl_seconds: Some(ttl.as_secs().max(60)),
                        description: Some(description),
                        single_use: true,
                    },
                    jiff::Timestamp::now().as_second(),
                )
                .await?;
            let token = doc
                .token
                .ok_or_else(|| LambdaError::service("a new join token came without its secret"))?;
            Ok((doc.token_id, token))
        })
    }
}

/// The EC2 client of an operator role.
pub trait Ec2Connector: Send + Sync + std::fmt::Debug {
    /// A client signing as `role_arn` (cached by the implementation).
    fn for_role(&self, role_arn: &str) -> Result<Arc<dyn Ec2Api>, Ec2Error>;
}

/// [`Ec2Connector`] over STS: one [`fleetfn_roles::Ec2Client`] per role, its credentials
/// assumed with the server's own.
#[derive(Debug)]
pub struct StsEc2Connector {
    cfg: fleetfn_roles::Ec2Config,
    assumer: Arc<dyn fleetfn_roles::RoleAssumer>,
    clients: Mutex<HashMap<String, Arc<dyn Ec2Api>>>,
}

impl StsEc2Connector {
    pub fn new(
        cfg: fleetfn_roles::Ec2Config,
        assumer: Arc<dyn fleetfn_roles::RoleAssumer>,
    ) -> Self {
        Self {
            cfg,
            assumer,
            clients: Mutex::default(),
        }
    }
}

impl Ec2Connector for StsEc2Connector {
    fn for_role(&self, role_arn: &str) -> Result<Arc<dyn Ec2Api>, Ec2Error> {
        if let Some(c) = self.clients.lock().get(role_arn) {
            return Ok(c.clone());
        }
        let creds = fleetfn_roles::Ec2Credentials::assumed(
            self.assumer.clone(),
            role_arn,
            "fleetfn-ec2-provider",
        );
        let client: Arc<dyn Ec2Api> =
            Arc::new(fleetfn_roles::Ec2Client::new(self.cfg.clone(), creds)?);
        self.clients
            .lock()
            .insert(role_arn.to_owned(), client.clone());
        Ok(client)
    }
}

/// A launch that EC2 refused for want of capacity, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityFailure {
    pub capacity_provider: String,
    pub instance_type: String,
    pub zone: String,
    /// EC2's code (`InsufficientInstanceCapacity`...).
    pub code: String,
    pub message: String,
    /// RFC 3339.
    pub at: String,
}

/// An instance of this provider.
#[derive(Debug, Clone)]
struct Launched {
    ec2_id: String,
    role_arn: String,
    capacity_provider: String,
    agent_id: Option<String>,
    vcpus: u32,
    /// EC2 said it is neither pending nor running (or it vanished).
    gone: bool,
    /// The image it booted.
    image: String,
    /// When EC2 launched it.
    launched_at: Option<jiff::Timestamp>,
}

/// EC2 instances as instances.
pub struct Ec2Provider {
    cfg: Ec2ProviderConfig,
    dir: Arc<dyn Ec2Directory>,
    ec2: Arc<dyn Ec2Connector>,
    catalog: Catalog,
    connect: Connect,
    /// By fleetfn instance id.
    launched: Mutex<HashMap<String, Launched>>,
    /// (type, zone) → when EC2 last had no capacity for it.
    cooling: Mutex<HashMap<(String, String), Instant>>,
    failures: Mutex<Vec<CapacityFailure>>,
    last_describe: Mutex<Option<Instant>>,
    /// The image each capacity provider's instances should run, as last read (the server-wide
    /// image, or the provider's `fleetfn:ec2-image-id` tag).
    images: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Ec2Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2Provider")
            .field("cluster", &self.cfg.cluster)
            .field("launched", &self.launched.lock().len())
            .finish_non_exhaustive()
    }
}

/// Quotes `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The user data of an instance: a shell script that writes the join token (and CA bundle)
/// readable by root only and starts the agent. The contract (docs/EC2.md): `fleetfn` on
/// `PATH` (or `FLEETFN_BIN`); state in `FLEETFN_HOME` (default `/var/lib/fleetfn`); the agent
/// listens on `FLEETFN_LISTEN` (default: the private IPv4 address from IMDSv2, port 9700).
pub fn user_data(cfg: &Ec2ProviderConfig, token: &str, zone: &str, instance_id: &str) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # fleetfn agent, started by the ec2 instance provider (docs/EC2.md: the user-data contract).\n\
         set -eu\n\
         umask 077\n\
         FLEETFN_HOME=\"${FLEETFN_HOME:-/var/lib/fleetfn}\"\n\
         FLEETFN_BIN=\"${FLEETFN_BIN:-fleetfn}\"\n\
         mkdir -p \"$FLEETFN_HOME\"\n",
    );
    s.push_str(&format!(
        "printf '%s\\n' {} > \"$FLEETFN_HOME/join-token\"\n",
        sh_quote(token)
    ));
    if let Some(ca) = &cfg.ca_pem {
        s.push_str(&format!(
            "printf '%s\\n' {} > \"$FLEETFN_HOME/servers-ca.pem\"\n",
            sh_quote(ca.trim_end())
        ));
    }
    s.push_str(
        "if [ -z \"${FLEETFN_LISTEN:-}\" ]; then\n\
         \x20 t=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)\n\
         \x20 ip=$(curl -sf -H \"X-aws-ec2-metadata-token: $t\" http://169.254.169.254/latest/meta-data/local-ipv4)\n\
         \x20 FLEETFN_LISTEN=\"$ip:9700\"\n\
         fi\n",
    );
    let mut args: Vec<String> = vec!["agent".into()];
    for url in &cfg.join_urls {
        args.push("--join".into());
        args.push(url.clone());
    }
    args.extend([
        "--zone".into(),
        zone.to_owned(),
        "--instance-id".into(),
        instance_id.to_owned(),
    ]);
    args.extend(cfg.agent_args.iter().cloned());
    let quoted: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    s.push_str(&format!(
        "exec \"$FLEETFN_BIN\" {} --token-file \"$FLEETFN_HOME/join-token\" --data-dir \"$FLEETFN_HOME\" --artifacts-dir \"$FLEETFN_HOME/artifacts\" --listen \"$FLEETFN_LISTEN\"{}\n",
        quoted.join(" "),
        if cfg.ca_pem.is_some() {
            " --ca-file \"$FLEETFN_HOME/servers-ca.pem\""
        } else {
            ""
        }
    ));
    s
}

fn arch_name(a: Arch) -> &'static str {
    match a {
        Arch::X86_64 => "x86_64",
        Arch::Arm64 => "arm64",
    }
}

impl Ec2Provider {
    pub fn new(
        cfg: Ec2ProviderConfig,
        dir: Arc<dyn Ec2Directory>,
        ec2: Arc<dyn Ec2Connector>,
        catalog: Catalog,
        connect: Connect,
    ) -> Self {
        Self {
            cfg,
            dir,
            ec2,
            catalog,
            connect,
            launched: Mutex::default(),
            cooling: Mutex::default(),
            failures: Mutex::default(),
            last_describe: Mutex::new(None),
            images: Mutex::default(),
        }
    }

    /// The image instances of capacity provider `name` boot now: its `fleetfn:ec2-image-id`
    /// tag, else the server-wide image; `resolve:ssm:NAME` is the value of SSM parameter NAME
    /// now (read as the operator role), so publishing a new image there replaces the instances.
    async fn image_for(
        &self,
        name: &str,
        cp: &CapacityProvider,
        ec2: &Arc<dyn Ec2Api>,
    ) -> Result<String, LaunchError> {
        let image = self
            .dir
            .image_override(cp)
            .await
            .map_err(|e| LaunchError::Directory(e.message))?
            .unwrap_or_else(|| self.cfg.image_id.clone());
        let image = match image.strip_prefix(SSM_PREFIX) {
            Some(parameter) => ec2
                .get_parameter(parameter)
                .await
                .map_err(|e| ec2_error(&e))?,
            None => image,
        };
        self.images.lock().insert(name.to_owned(), image.clone());
        Ok(image)
    }

    /// Launches EC2 refused for want of capacity, newest last (at most 20).
    pub fn launch_failures(&self) -> Vec<CapacityFailure> {
        self.failures.lock().clone()
    }

    /// The (type, zone) choices of a launch, in order: the asked type in the asked zone, the
    /// capacity provider's other allowed types at least as large (cheapest first) in that zone,
    /// then the same in its other zones; those cooling off after a capacity error left out
    /// (unless every choice is).
    fn choices(&self, spec: &LaunchSpec, cp: &CapacityProvider) -> Vec<(InstanceType, String)> {
        let t = &spec.instance_type;
        let req = &cp.instance_requirements;
        let mut types = vec![t.clone()];
        types.extend(
            self.catalog
                .allowed(
                    t.arch,
                    req.allowed_instance_types.as_deref(),
                    req.excluded_instance_types.as_deref(),
                )
                .into_iter()
                .filter(|o| o.name != t.name && o.vcpus >= t.vcpus && o.memory_mib >= t.memory_mib),
        );
        let mut zones = vec![spec.zone.clone()];
        zones.extend(
            cp.vpc_config
                .subnet_ids
                .iter()
                .filter(|z| **z != spec.zone)
                .cloned(),
        );
        let all: Vec<(InstanceType, String)> = zones
            .iter()
            .flat_map(|z| types.iter().map(move |t| (t.clone(), z.clone())))
            .collect();
        let now = Instant::now();
        let cooling = self.cooling.lock();
        let warm: Vec<(InstanceType, String)> = all
            .iter()
            .filter(|(t, z)| {
                cooling
                    .get(&(t.name.clone(), z.clone()))
                    .is_none_or(|at| now.duration_since(*at) >= CAPACITY_COOL_OFF)
            })
            .cloned()
            .collect();
        if warm.is_empty() { all } else { warm }
    }

    fn note_capacity_failure(&self, cp: &str, t: &str, zone: &str, e: &Ec2Error) {
        self.cooling
            .lock()
            .insert((t.to_owned(), zone.to_owned()), Instant::now());
        let (code, message) = match e {
            Ec2Error::Refused { code, message, .. } => (code.clone(), message.clone()),
            other => (other.code().to_owned(), other.to_string()),
        };
        let mut f = self.failures.lock();
        f.push(CapacityFailure {
            capacity_provider: cp.to_owned(),
            instance_type: t.to_owned(),
            zone: zone.to_owned(),
            code,
            message,
            at: fleetfn_model::time::now_lambda(),
        });
        let excess = f.len().saturating_sub(MAX_FAILURES_KEPT);
        f.drain(..excess);
    }

    fn tags(
        &self,
        spec: &LaunchSpec,
        zone: &str,
        instance_id: &str,
        image: &str,
    ) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_CLUSTER.to_owned(), self.cfg.cluster.clone()),
            (
                TAG_CAPACITY_PROVIDER.to_owned(),
                spec.capacity_provider.clone(),
            ),
            (TAG_INSTANCE_ID.to_owned(), instance_id.to_owned()),
            (TAG_ZONE.to_owned(), zone.to_owned()),
            (TAG_IMAGE.to_owned(), image.to_owned()),
            (
                "Name".to_owned(),
                format!("fleetfn-{}-{instance_id}", spec.capacity_provider),
            ),
        ])
    }

    async fn launch_instance(
        &self,
        instance_id: &str,
        spec: &LaunchSpec,
    ) -> Result<Instance, LaunchError> {
        let cp = self
            .dir
            .capacity_provider(&spec.capacity_provider)
            .await
            .map_err(|e| LaunchError::Directory(e.message))?
            .ok_or_else(|| {
                LaunchError::Directory(format!(
                    "capacity provider {} no longer exists",
                    spec.capacity_provider
                ))
            })?;
        let role = cp
            .permissions_config
            .capacity_provider_operator_role_arn
            .clone();
        let ec2 = self.ec2.for_role(&role).map_err(|e| ec2_error(&e))?;
        let image = self.image_for(&spec.capacity_provider, &cp, &ec2).await?;
        let (token_id, token) = self
            .dir
            .single_use_token(
                format!("ec2 instance {instance_id} of {}", spec.capacity_provider),
                self.cfg.join_timeout + Duration::from_secs(60),
            )
            .await
            .map_err(|e| LaunchError::Directory(e.message))?;

        let mut last_capacity: Option<Ec2Error> = None;
        let mut launched = None;
        for (t, zone) in self.choices(spec, &cp) {
            let req = LaunchRequest {
                image_id: image.clone(),
                instance_type: t.name.clone(),
                subnet_id: zone.clone(),
                security_group_ids: cp.vpc_config.security_group_ids.clone(),
                user_data: user_data(&self.cfg, &token, &zone, instance_id),
                tags: self.tags(spec, &zone, instance_id, &image),
                // One instance per fleetfn instance and choice, even if a call is retried.
                client_token: format!("{instance_id}-{}-{zone}", t.name),
                instance_profile: self.cfg.instance_profile.clone(),
            };
            match ec2.run_instance(&req).await {
                Ok(i) => {
                    launched = Some((i, t, zone));
                    break;
                }
                Err(e) if e.is_capacity() => {
                    tracing::warn!(instance = %instance_id, instance_type = %t.name, %zone, error = %e, "EC2 has no capacity for this choice; trying the next");
                    self.note_capacity_failure(&spec.capacity_provider, &t.name, &zone, &e);
                    last_capacity = Some(e);
                }
                Err(e) => return Err(ec2_error(&e)),
            }
        }
        let Some((ec2_instance, t, zone)) = launched else {
            let e = last_capacity.map_or_else(
                || "no instance type and zone to try".to_owned(),
                |e| e.to_string(),
            );
            return Err(LaunchError::Ec2 {
                code: "InsufficientInstanceCapacity".into(),
                message: format!(
                    "every allowed instance type in every zone of {} failed: {e}",
                    spec.capacity_provider
                ),
            });
        };
        tracing::info!(instance = %instance_id, ec2_instance = %ec2_instance.id, instance_type = %t.name, %zone, "EC2 instance launched; waiting for its agent to join");
        self.launched.lock().insert(
            instance_id.to_owned(),
            Launched {
                ec2_id: ec2_instance.id.clone(),
                role_arn: role.clone(),
                capacity_provider: spec.capacity_provider.clone(),
                agent_id: None,
                vcpus: t.vcpus,
                gone: false,
                image: image.clone(),
                launched_at: ec2_instance
                    .launch_time
                    .as_deref()
                    .and_then(|t| t.parse().ok())
                    .or_else(|| Some(jiff::Timestamp::now())),
            },
        );
        match self
            .claim_when_joined(
                instance_id,
                spec,
                &token_id,
                &ec2,
                &ec2_instance.id,
                &t,
                &zone,
            )
            .await
        {
            Ok(i) => Ok(i),
            Err(e) => {
                // Nothing of it is used: the instance goes.
                self.launched.lock().remove(instance_id);
                if let Err(te) = ec2
                    .terminate_instances(std::slice::from_ref(&ec2_instance.id))
                    .await
                {
                    tracing::warn!(ec2_instance = %ec2_instance.id, error = %te, "cannot terminate an instance whose launch failed (the sweep will)");
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn claim_when_joined(
        &self,
        instance_id: &str,
        spec: &LaunchSpec,
        token_id: &str,
        ec2: &Arc<dyn Ec2Api>,
        ec2_id: &str,
        t: &InstanceType,
        zone: &str,
    ) -> Result<Instance, LaunchError> {
        // Tokio's clock, so tests run it on paused time.
        let started = tokio::time::Instant::now();
        let mut last_state_check = tokio::time::Instant::now();
        loop {
            let agents = self
                .dir
                .agents()
                .await
                .map_err(|e| LaunchError::Directory(e.message))?;
            if let Some(a) = agents.iter().find(|a| a.doc.token_id == token_id) {
                return self.claim(instance_id, spec, a, t, zone).await;
            }
            if started.elapsed() >= self.cfg.join_timeout {
                return Err(LaunchError::Ec2 {
                    code: "AgentJoinTimeout".into(),
                    message: format!(
                        "EC2 instance {ec2_id} ({}, {zone}) started, but its agent did not join within {} s: check the image has fleetfn on PATH and reaches {} (docs/EC2.md)",
                        t.name,
                        self.cfg.join_timeout.as_secs(),
                        self.cfg.join_urls.join(", ")
                    ),
                });
            }
            if last_state_check.elapsed() >= STATE_POLL {
                last_state_check = tokio::time::Instant::now();
                let found = ec2
                    .describe_instances(&[Filter::new("instance-id", &[ec2_id])])
                    .await;
                if let Ok(found) = found
                    && !found.iter().any(|i| i.id == ec2_id && i.state.is_live())
                {
                    return Err(LaunchError::Ec2 {
                        code: "InstanceStopped".into(),
                        message: format!(
                            "EC2 instance {ec2_id} stopped or vanished before its agent joined"
                        ),
                    });
                }
            }
            tokio::time::sleep(JOIN_POLL).await;
        }
    }

    async fn claim(
        &self,
        instance_id: &str,
        spec: &LaunchSpec,
        a: &JoinedAgent,
        t: &InstanceType,
        zone: &str,
    ) -> Result<Instance, LaunchError> {
        if a.doc.architecture != arch_name(t.arch) || a.doc.zone != zone {
            return Err(LaunchError::Directory(format!(
                "agent {} joined for instance {instance_id} as {} in {}, expected {} in {zone}",
                a.doc.agent_id,
                a.doc.architecture,
                a.doc.zone,
                arch_name(t.arch)
            )));
        }
        let addr: SocketAddr = a.doc.address.parse().map_err(|_| {
            LaunchError::Directory(format!(
                "agent {} has a bad address {:?}",
                a.doc.agent_id, a.doc.address
            ))
        })?;
        let client =
            (self.connect)(addr, &a.credential, a.doc.tls).map_err(LaunchError::Directory)?;
        let claim = AgentClaim {
            agent_id: a.doc.agent_id.clone(),
            instance_id: instance_id.to_owned(),
            capacity_provider: spec.capacity_provider.clone(),
            zone: zone.to_owned(),
            instance_type: t.name.clone(),
            claimed_at: fleetfn_model::time::now_lambda(),
        };
        if !self
            .dir
            .claim(&claim)
            .await
            .map_err(|e| LaunchError::Directory(e.message))?
        {
            return Err(LaunchError::Directory(format!(
                "agent {} of instance {instance_id} was claimed by another launch",
                a.doc.agent_id
            )));
        }
        let answered = tokio::time::timeout(ANSWER_WITHIN, client.report(None, Duration::ZERO))
            .await
            .map_err(|_| format!("no answer within {} s", ANSWER_WITHIN.as_secs()))
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = answered {
            let _ = self.dir.release(&a.doc.agent_id, instance_id).await;
            return Err(LaunchError::Directory(format!(
                "agent {} of instance {instance_id} joined but does not answer at {}: {e}",
                a.doc.agent_id, a.doc.address
            )));
        }
        if let Some(l) = self.launched.lock().get_mut(instance_id) {
            l.agent_id = Some(a.doc.agent_id.clone());
        }
        tracing::info!(instance = %instance_id, agent = %a.doc.agent_id, instance_type = %t.name, %zone, "EC2 instance's agent joined and claimed");
        Ok(Instance {
            id: instance_id.to_owned(),
            zone: zone.to_owned(),
            capacity_provider: spec.capacity_provider.clone(),
            instance_type: t.clone(),
            client,
        })
    }

    /// Reconciles with EC2 (at most every `describe_every`): marks instances EC2 no longer runs,
    /// terminates the cluster's instances nobody knows.
    async fn reconcile(&self) {
        {
            let mut last = self.last_describe.lock();
            if last.is_some_and(|at| at.elapsed() < self.cfg.describe_every) {
                return;
            }
            *last = Some(Instant::now());
        }
        // The image each capacity provider in use should run now.
        let cps: Vec<String> = {
            let l = self.launched.lock();
            let mut c: Vec<String> = l.values().map(|x| x.capacity_provider.clone()).collect();
            c.sort();
            c.dedup();
            c
        };
        for name in cps {
            if let Ok(Some(cp)) = self.dir.capacity_provider(&name).await
                && let Ok(ec2) = self
                    .ec2
                    .for_role(&cp.permissions_config.capacity_provider_operator_role_arn)
                && let Err(e) = self.image_for(&name, &cp, &ec2).await
            {
                tracing::warn!(capacity_provider = %name, error = %e, "cannot read the image its instances should run");
            }
        }
        // Every role in use; with none launched yet, nothing to look at.
        let roles: Vec<String> = {
            let l = self.launched.lock();
            let mut r: Vec<String> = l.values().map(|x| x.role_arn.clone()).collect();
            r.sort();
            r.dedup();
            r
        };
        let claims = match self.dir.claims().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e.message, "ec2 provider: cannot read claims");
                return;
            }
        };
        let filters = [
            Filter::new(format!("tag:{TAG_CLUSTER}"), &[&self.cfg.cluster]),
            Filter::new(
                "instance-state-name",
                &["pending", "running", "stopping", "stopped"],
            ),
        ];
        for role in roles {
            let Ok(ec2) = self.ec2.for_role(&role) else {
                continue;
            };
            let found = match ec2.describe_instances(&filters).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "ec2 provider: DescribeInstances failed");
                    continue;
                }
            };
            let mut orphans = Vec::new();
            {
                let mut launched = self.launched.lock();
                for l in launched.values_mut().filter(|l| l.role_arn == role) {
                    let live = found.iter().any(|i| i.id == l.ec2_id && i.state.is_live());
                    if !live && !l.gone {
                        tracing::warn!(ec2_instance = %l.ec2_id, "EC2 instance is no longer running: its instance is replaced");
                    }
                    l.gone = !live;
                }
                for i in &found {
                    let known_ec2 = launched.values().any(|l| l.ec2_id == i.id);
                    let known_claim = i
                        .tags
                        .get(TAG_INSTANCE_ID)
                        .is_some_and(|id| claims.iter().any(|c| &c.instance_id == id));
                    if known_ec2 || known_claim {
                        continue;
                    }
                    let old_enough = i
                        .launch_time
                        .as_deref()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|t| {
                            jiff::Timestamp::now().duration_since(t).unsigned_abs()
                                >= self.cfg.orphan_grace
                        });
                    if old_enough {
                        orphans.push(i.id.clone());
                    }
                }
            }
            if !orphans.is_empty() {
                tracing::warn!(
                    ?orphans,
                    "terminating EC2 instances of this cluster that no instance knows"
                );
                if let Err(e) = ec2.terminate_instances(&orphans).await {
                    tracing::warn!(error = %e, "cannot terminate orphan instances");
                }
            }
        }
    }
}

fn ec2_error(e: &Ec2Error) -> LaunchError {
    LaunchError::Ec2 {
        code: e.code().to_owned(),
        message: e.to_string(),
    }
}

impl InstanceProvider for Ec2Provider {
    fn launch<'a>(
        &'a self,
        instance_id: &'a str,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<Instance, LaunchError>> {
        Box::pin(self.launch_instance(instance_id, spec))
    }

    fn terminate<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(l) = self.launched.lock().remove(instance_id) else {
                return;
            };
            if let Some(agent) = &l.agent_id
                && let Err(e) = self.dir.release(agent, instance_id).await
            {
                tracing::warn!(%agent, instance = %instance_id, error = %e, "cannot release the agent of a terminated instance");
            }
            match self.ec2.for_role(&l.role_arn) {
                Ok(ec2) => {
                    if let Err(e) = ec2
                        .terminate_instances(std::slice::from_ref(&l.ec2_id))
                        .await
                    {
                        tracing::warn!(ec2_instance = %l.ec2_id, error = %e, "cannot terminate (the sweep will, as an orphan)");
                    }
                }
                Err(e) => {
                    tracing::warn!(ec2_instance = %l.ec2_id, error = %e, "cannot reach EC2 to terminate")
                }
            }
            tracing::info!(instance = %instance_id, ec2_instance = %l.ec2_id, "EC2 instance terminated");
        })
    }

    fn is_running(&self, instance_id: &str) -> bool {
        self.launched
            .lock()
            .get(instance_id)
            .is_some_and(|l| !l.gone)
    }

    fn capacity(&self) -> ProviderCapacity {
        let l = self.launched.lock();
        let in_use: u32 = l.values().map(|x| x.vcpus).sum();
        ProviderCapacity {
            vcpu_scale: 1.0,
            max_vcpus: in_use,
            vcpus_in_use: in_use,
        }
    }

    fn sweep(&self) -> BoxFuture<'_, Sweep> {
        Box::pin(async move {
            self.reconcile().await;
            Sweep::default()
        })
    }

    /// The claimed agents whose EC2 instance (found by its `fleetfn:instance-id` tag) still
    /// runs: what a new leader adopts.
    fn existing(&self) -> BoxFuture<'_, Result<Vec<Instance>, LaunchError>> {
        Box::pin(async move {
            let dir = |e: LambdaError| LaunchError::Directory(e.message);
            let agents = self.dir.agents().await.map_err(dir)?;
            let claims = self.dir.claims().await.map_err(dir)?;
            let mut found = Vec::new();
            let mut launched = HashMap::new();
            for claim in claims {
                let Some(a) = agents.iter().find(|a| a.doc.agent_id == claim.agent_id) else {
                    continue;
                };
                let Some(cp) = self
                    .dir
                    .capacity_provider(&claim.capacity_provider)
                    .await
                    .map_err(dir)?
                else {
                    continue;
                };
                let role = cp.permissions_config.capacity_provider_operator_role_arn;
                let ec2 = self.ec2.for_role(&role).map_err(|e| ec2_error(&e))?;
                let running = ec2
                    .describe_instances(&[
                        Filter::new(format!("tag:{TAG_CLUSTER}"), &[&self.cfg.cluster]),
                        Filter::new(format!("tag:{TAG_INSTANCE_ID}"), &[&claim.instance_id]),
                        Filter::new("instance-state-name", &["pending", "running"]),
                    ])
                    .await
                    .map_err(|e| ec2_error(&e))?;
                let Some(vm) = running.first() else {
                    tracing::warn!(instance = %claim.instance_id, "a claimed agent's EC2 instance no longer runs: not adopted");
                    continue;
                };
                let Ok(addr) = a.doc.address.parse::<SocketAddr>() else {
                    continue;
                };
                let client = match (self.connect)(addr, &a.credential, a.doc.tls) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "a claimed agent cannot be reached");
                        continue;
                    }
                };
                let t = crate::static_provider::claimed_type(&self.catalog, &claim, a, "ec2");
                launched.insert(
                    claim.instance_id.clone(),
                    Launched {
                        ec2_id: vm.id.clone(),
                        role_arn: role,
                        capacity_provider: claim.capacity_provider.clone(),
                        agent_id: Some(claim.agent_id.clone()),
                        vcpus: t.vcpus,
                        gone: false,
                        image: vm
                            .tags
                            .get(TAG_IMAGE)
                            .cloned()
                            .unwrap_or_else(|| vm.image_id.clone()),
                        launched_at: vm.launch_time.as_deref().and_then(|t| t.parse().ok()),
                    },
                );
                found.push(Instance {
                    id: claim.instance_id,
                    zone: claim.zone,
                    capacity_provider: claim.capacity_provider,
                    instance_type: t,
                    client,
                });
            }
            *self.launched.lock() = launched;
            Ok(found)
        })
    }

    fn outlives_data_plane(&self) -> bool {
        true
    }

    fn capacity_fallbacks(&self) -> Vec<CapacityFailure> {
        self.launch_failures()
    }

    fn should_replace(&self, instance_id: &str) -> Option<String> {
        let l = self.launched.lock().get(instance_id).cloned()?;
        if l.gone || l.agent_id.is_none() {
            return None;
        }
        if let Some(want) = self.images.lock().get(&l.capacity_provider)
            && *want != l.image
        {
            return Some(format!(
                "it runs image {}, the capacity provider's is now {want}",
                l.image
            ));
        }
        let age = l
            .launched_at
            .map(|t| jiff::Timestamp::now().duration_since(t).unsigned_abs())?;
        crate::instances::too_old(age, self.cfg.max_instance_age)
    }
}

#[cfg(test)]
mod tests;
