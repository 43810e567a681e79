//! EC2 over the query protocol (API version 2016-11-15): the calls an instance provider makes to
//! launch, find and terminate the instances of a capacity provider, and to read instance types'
//! shapes — `DescribeSubnets`, `RunInstances`, `DescribeInstances`, `TerminateInstances`,
//! `DescribeInstanceTypes`, and SSM `GetParameter` for an image published as a parameter — signed with the capacity provider's operator role ([`Ec2Credentials`]:
//! STS `AssumeRole` with the server's own credentials, renewed before it expires).
//!
//! Hand-written like the crate's STS, SQS and SNS clients instead of `aws-sdk-ec2`: that crate is
//! 1.24 million lines of generated Rust (88 MB of source) for the five calls used here, and with
//! `aws-config` and `aws-sdk-sts` it brings a second TLS stack (aws-lc, a C build) next to ring
//! (docs/EC2.md has the measured build cost). The [`Ec2Api`] trait is what the provider uses, so it
//! runs against a fake in unit tests; the real client is tested against moto's EC2 server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use crate::transport::{FORM, HttpClient, SignedPost, excerpt, query_error, verified_client};
use crate::{AssumeError, BoxFuture, RoleAssumer, SourceChain, SourceCredentials};

/// Largest answer read (a page of `DescribeInstanceTypes` or `DescribeInstances`).
const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Pages read at most by one paginated call (a bound against a server that never ends).
const MAX_PAGES: usize = 100;
/// Assumed-role credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// Where the client sends its calls.
#[derive(Debug, Clone)]
pub struct Ec2Config {
    /// `https://ec2.<region>.amazonaws.com`, or an override (`AWS_ENDPOINT_URL_EC2`).
    pub endpoint: String,
    /// The signing region.
    pub region: String,
    /// `https://ssm.<region>.amazonaws.com`, or an override (`AWS_ENDPOINT_URL_SSM`): where an
    /// image named by an SSM parameter is read.
    pub ssm_endpoint: String,
}

impl Ec2Config {
    /// The endpoints of `region`, or `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL_SSM` /
    /// `AWS_ENDPOINT_URL` as the AWS SDKs read them.
    pub fn from_env(region: &str) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = env("AWS_ENDPOINT_URL_EC2")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"));
        let ssm = env("AWS_ENDPOINT_URL_SSM")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://ssm.{region}.amazonaws.com"));
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
            ssm_endpoint: ssm.trim_end_matches('/').to_owned(),
        }
    }
}

/// Why an EC2 call failed.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// EC2 answered with an error document.
    #[error("EC2 {action} was refused: {code}: {message}")]
    Refused {
        /// The action (`RunInstances`...).
        action: &'static str,
        /// The HTTP status.
        status: u16,
        /// EC2's error code (`InsufficientInstanceCapacity`...).
        code: String,
        /// EC2's message.
        message: String,
    },
    /// EC2 could not be reached or answered something that is no EC2 document.
    #[error("EC2 at {endpoint} could not be used for {action}: {detail}")]
    Unavailable {
        /// The endpoint tried.
        endpoint: String,
        /// The action.
        action: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The operator role could not be assumed.
    #[error("the operator role could not be assumed: {0}")]
    Assume(#[from] AssumeError),
    /// The server's own credentials are unavailable.
    #[error("the server's AWS credentials are unavailable: {0}")]
    Source(#[from] crate::SourceError),
}

impl Ec2Error {
    /// EC2's error code, or a short description of a failure without one.
    pub fn code(&self) -> &str {
        match self {
            Self::Refused { code, .. } => code,
            Self::Unavailable { .. } => "EC2 could not be reached",
            Self::Assume(e) => e.code(),
            Self::Source(_) => "the server's AWS credentials are unavailable",
        }
    }

    /// Whether the same call may succeed later unchanged: throttling, EC2's own failures,
    /// an unreachable endpoint.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Refused { status, code, .. } => {
                *status >= 500
                    || matches!(
                        code.as_str(),
                        "RequestLimitExceeded"
                            | "Throttling"
                            | "ServiceUnavailable"
                            | "Unavailable"
                    )
            }
            Self::Unavailable { .. } | Self::Source(_) => true,
            Self::Assume(e) => e.is_transient(),
        }
    }

    /// Whether a launch failed for want of capacity or quota of this type in this zone, so
    /// another allowed type or zone may succeed (the errors AWS documents for `RunInstances`).
    pub fn is_capacity(&self) -> bool {
        matches!(
            self,
            Self::Refused { code, .. } if matches!(
                code.as_str(),
                "InsufficientInstanceCapacity"
                    | "InsufficientHostCapacity"
                    | "InsufficientReservedInstanceCapacity"
                    | "InstanceLimitExceeded"
                    | "VcpuLimitExceeded"
                    | "MaxSpotInstanceCountExceeded"
                    | "Unsupported"
                    | "InsufficientCapacity"
            )
        )
    }
}

/// A subnet: its id, zone and VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// `subnet-…`.
    pub id: String,
    /// The zone's name (`us-east-1a`).
    pub zone: String,
    /// The zone's id (`use1-az6`), when EC2 says it.
    pub zone_id: Option<String>,
    /// `vpc-…`.
    pub vpc_id: String,
    /// `available` or `pending`.
    pub state: String,
}

/// The state of an instance, as `instanceState.name` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
    /// A name this client does not know.
    Other(String),
}

impl InstanceState {
    fn parse(name: &str) -> Self {
        match name {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "shutting-down" => Self::ShuttingDown,
            "terminated" => Self::Terminated,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Pending or running: an instance that is, or will be, a host.
    pub fn is_live(&self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// An instance as `RunInstances` and `DescribeInstances` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `i-…`.
    pub id: String,
    /// `m7g.large`.
    pub instance_type: String,
    /// Its state.
    pub state: InstanceState,
    /// Its zone (`us-east-1a`).
    pub zone: String,
    /// Its subnet.
    pub subnet_id: Option<String>,
    /// Its image.
    pub image_id: String,
    /// Its private address.
    pub private_ip: Option<String>,
    /// When it was launched (RFC 3339, as EC2 writes it).
    pub launch_time: Option<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Whether IMDSv2 is required (`metadataOptions.httpTokens` = `required`).
    pub imds_v2_required: bool,
}

/// The shape of an instance type, as `DescribeInstanceTypes` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTypeInfo {
    /// `m7g.large`.
    pub name: String,
    /// Default vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// `x86_64`, `arm64`, `i386`, `x86_64_mac`...
    pub architectures: Vec<String>,
    /// Whether EC2 calls it current generation.
    pub current_generation: bool,
    /// Whether it is bare metal.
    pub bare_metal: bool,
    /// Whether it is burstable (CPU credits).
    pub burstable: bool,
    /// Whether it has accelerators (GPU, FPGA, Inferentia, Neuron, media).
    pub accelerated: bool,
    /// `nitro` or `xen` (empty when EC2 says none, as for bare metal).
    pub hypervisor: String,
}

/// One instance to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    /// `ami-…`.
    pub image_id: String,
    /// `m7g.large`.
    pub instance_type: String,
    /// The subnet (and so the zone).
    pub subnet_id: String,
    /// Security groups of its network interface.
    pub security_group_ids: Vec<String>,
    /// User data (sent base64-encoded, as EC2 wants it).
    pub user_data: String,
    /// Tags of the instance (and of its volumes).
    pub tags: BTreeMap<String, String>,
    /// Idempotency token: the same token launches at most one instance.
    pub client_token: String,
    /// An instance profile (name or ARN) for the instance's own role, if any.
    pub instance_profile: Option<String>,
}

/// A filter of `DescribeInstances` (`tag:fleetfn:provider` = [`p1`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The filter's name.
    pub name: String,
    /// Values, any of which matches.
    pub values: Vec<String>,
}

impl Filter {
    /// A filter on `name` with `values`.
    pub fn new(name: impl Into<String>, values: &[&str]) -> Self {
        Self {
            name: name.into(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }
}

/// The EC2 calls an instance provider makes.
pub trait Ec2Api: Send + Sync + std::fmt::Debug {
    /// The subnets with these ids (`InvalidSubnetID.NotFound` when one does not exist).
    fn describe_subnets<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Subnet>, Ec2Error>>;
    /// Launches one instance (IMDSv2 required, tags on the instance and its volumes).
    fn run_instance<'a>(
        &'a self,
        req: &'a LaunchRequest,
    ) -> BoxFuture<'a, Result<Instance, Ec2Error>>;
    /// The instances matching every filter (all pages).
    fn describe_instances<'a>(
        &'a self,
        filters: &'a [Filter],
    ) -> BoxFuture<'a, Result<Vec<Instance>, Ec2Error>>;
    /// Terminates these instances.
    fn terminate_instances<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<(), Ec2Error>>;
    /// The shapes of these instance types, or of every type when `names` is empty (all pages).
    fn describe_instance_types<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<InstanceTypeInfo>, Ec2Error>>;
    /// The value of an SSM parameter (`GetParameter`): an image published as one, such as
    /// `/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64`.
    fn get_parameter<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, Ec2Error>>;
}

/// The credentials EC2 calls are signed with.
#[derive(Debug)]
pub enum Ec2Credentials {
    /// The server's own credentials.
    Source(Arc<SourceChain>),
    /// A role (the capacity provider's operator role) assumed with the server's credentials.
    AssumedRole {
        /// Who assumes it.
        assumer: Arc<dyn RoleAssumer>,
        /// The role.
        role_arn: String,
        /// The session name (`fleetfn-<provider>`).
        session_name: String,
        /// The current credentials and when they expire.
        cache: Box<tokio::sync::Mutex<Option<(SourceCredentials, jiff::Timestamp)>>>,
    },
}

impl Ec2Credentials {
    /// Credentials of `role_arn`, assumed with `assumer` and renewed five minutes before they
    /// expire.
    pub fn assumed(assumer: Arc<dyn RoleAssumer>, role_arn: &str, session_name: &str) -> Self {
        Self::AssumedRole {
            assumer,
            role_arn: role_arn.to_owned(),
            session_name: session_name.to_owned(),
            cache: Box::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The credentials to sign with now.
    pub async fn current(&self) -> Result<SourceCredentials, Ec2Error> {
        match self {
            Self::Source(chain) => Ok(chain.current().await?),
            Self::AssumedRole {
                assumer,
                role_arn,
                session_name,
                cache,
            } => {
                let mut cached = cache.lock().await;
                let renew_at = jiff::Timestamp::now()
                    + jiff::SignedDuration::try_from(RENEW_BEFORE).unwrap_or_default();
                if let Some((creds, expires)) = cached.as_ref()
                    && *expires > renew_at
                {
                    return Ok(creds.clone());
                }
                let c = assumer.assume(role_arn, session_name).await?;
                let expires = c
                    .expiration
                    .parse::<jiff::Timestamp>()
                    .unwrap_or_else(|_| jiff::Timestamp::now());
                let creds = SourceCredentials {
                    access_key_id: c.access_key_id,
                    secret_access_key: c.secret_access_key,
                    session_token: Some(c.token),
                    expires: Some(expires),
                };
                *cached = Some((creds.clone(), expires));
                Ok(creds)
            }
        }
    }
}

/// EC2 over HTTP.
#[derive(Debug)]
pub struct Ec2Client {
    cfg: Ec2Config,
    creds: Ec2Credentials,
    http: HttpClient,
}

impl Ec2Client {
    /// A client for `cfg`, signing with `creds`. `https://` endpoints are verified against the
    /// host's roots.
    pub fn new(cfg: Ec2Config, creds: Ec2Credentials) -> Result<Self, Ec2Error> {
        let http = verified_client(cfg.endpoint.starts_with("https://")).map_err(|detail| {
            Ec2Error::Unavailable {
                endpoint: cfg.endpoint.clone(),
                action: "connect",
                detail,
            }
        })?;
        Ok(Self { cfg, creds, http })
    }

    /// The configuration.
    pub fn config(&self) -> &Ec2Config {
        &self.cfg
    }

    /// Posts `form` (the action's parameters) and reads the answer as `T`.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        action: &'static str,
        form: Form,
    ) -> Result<T, Ec2Error> {
        let unavailable = |detail: String| Ec2Error::Unavailable {
            endpoint: self.cfg.endpoint.clone(),
            action,
            detail,
        };
        let creds = self.creds.current().await?;
        let url = format!("{}/", self.cfg.endpoint);
        let post = SignedPost {
            url: &url,
            region: &self.cfg.region,
            service: "ec2",
            content_type: "application/x-www-form-urlencoded; charset=utf-8",
            target: None,
            body: form.finish(action),
        };
        let (status, answer) = post
            .send_limited(&self.http, &creds, CALL_TIMEOUT, MAX_ANSWER)
            .await
            .map_err(unavailable)?;
        if !status.is_success() {
            return Err(match query_error(&answer) {
                Some(e) => Ec2Error::Refused {
                    action,
                    status: status.as_u16(),
                    code: e.code,
                    message: e.message,
                },
                None => unavailable(excerpt(status, &answer)),
            });
        }
        quick_xml::de::from_reader(answer.as_ref())
            .map_err(|e| unavailable(format!("reading the {action} answer: {e}")))
    }
}

impl Ec2Api for Ec2Client {
    fn describe_subnets<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Subnet>, Ec2Error>> {
        Box::pin(async move {
            let mut form = Form::default();
            form.list("SubnetId", ids);
            let doc: xml::DescribeSubnets = self.call("DescribeSubnets", form).await?;
            Ok(doc.subnet_set.item.into_iter().map(Subnet::from).collect())
        })
    }

    fn run_instance<'a>(
        &'a self,
        req: &'a LaunchRequest,
    ) -> BoxFuture<'a, Result<Instance, Ec2Error>> {
        Box::pin(async move {
            let doc: xml::RunInstances = self.call("RunInstances", launch_form(req)).await?;
            doc.instances_set
                .item
                .into_iter()
                .next()
                .map(Instance::from)
                .ok_or_else(|| Ec2Error::Unavailable {
                    endpoint: self.cfg.endpoint.clone(),
                    action: "RunInstances",
                    detail: "the answer names no instance".into(),
                })
        })
    }

    fn describe_instances<'a>(
        &'a self,
        filters: &'a [Filter],
    ) -> BoxFuture<'a, Result<Vec<Instance>, Ec2Error>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let mut form = Form::default();
                form.filters(filters);
                form.push("MaxResults", "1000");
                if let Some(t) = &token {
                    form.push("NextToken", t);
                }
                let doc: xml::DescribeInstances = self.call("DescribeInstances", form).await?;
                for r in doc.reservation_set.item {
                    out.extend(r.instances_set.item.into_iter().map(Instance::from));
                }
                token = doc.next_token.filter(|t| !t.is_empty());
                if token.is_none() {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn terminate_instances<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<(), Ec2Error>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let mut form = Form::default();
            form.list("InstanceId", ids);
            let _: xml::Ignored = self.call("TerminateInstances", form).await?;
            Ok(())
        })
    }

    fn describe_instance_types<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<InstanceTypeInfo>, Ec2Error>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let mut form = Form::default();
                form.list("InstanceType", names);
                if names.is_empty() {
                    form.push("MaxResults", "100");
                }
                if let Some(t) = &token {
                    form.push("NextToken", t);
                }
                let doc: xml::DescribeInstanceTypes =
                    self.call("DescribeInstanceTypes", form).await?;
                out.extend(
                    doc.instance_type_set
                        .item
                        .into_iter()
                        .map(InstanceTypeInfo::from),
                );
                token = doc.next_token.filter(|t| !t.is_empty());
                if token.is_none() {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn get_parameter<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, Ec2Error>> {
        Box::pin(async move {
            let unavailable = |detail: String| Ec2Error::Unavailable {
                endpoint: self.cfg.ssm_endpoint.clone(),
                action: "GetParameter",
                detail,
            };
            let creds = self.creds.current().await?;
            let url = format!("{}/", self.cfg.ssm_endpoint);
            let post = SignedPost {
                url: &url,
                region: &self.cfg.region,
                service: "ssm",
                content_type: "application/x-amz-json-1.1",
                target: Some("AmazonSSM.GetParameter"),
                body: serde_json::json!({ "Name": name }).to_string(),
            };
            let (status, answer) = post
                .send(&self.http, &creds, CALL_TIMEOUT)
                .await
                .map_err(unavailable)?;
            if !status.is_success() {
                return Err(match crate::transport::json_error(&answer) {
                    Some(e) => Ec2Error::Refused {
                        action: "GetParameter",
                        status: status.as_u16(),
                        code: e.code,
                        message: e.message,
                    },
                    None => unavailable(excerpt(status, &answer)),
                });
            }
            let doc: GetParameterAnswer = serde_json::from_slice(&answer)
                .map_err(|e| unavailable(format!("reading the GetParameter answer: {e}")))?;
            Ok(doc.parameter.value)
        })
    }
}

/// `GetParameter`'s answer.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameterAnswer {
    parameter: SsmParameter,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SsmParameter {
    value: String,
}

/// The form of a `RunInstances` call for `req`.
fn launch_form(req: &LaunchRequest) -> Form {
    use base64::Engine as _;
    let mut form = Form::default();
    form.push("ImageId", &req.image_id);
    form.push("InstanceType", &req.instance_type);
    form.push("MinCount", "1");
    form.push("MaxCount", "1");
    form.push("SubnetId", &req.subnet_id);
    form.list("SecurityGroupId", &req.security_group_ids);
    form.push(
        "UserData",
        &base64::engine::general_purpose::STANDARD.encode(req.user_data.as_bytes()),
    );
    form.push("ClientToken", &req.client_token);
    // IMDSv2 only: a token is required for every metadata request, one hop.
    form.push("MetadataOptions.HttpTokens", "required");
    form.push("MetadataOptions.HttpEndpoint", "enabled");
    form.push("MetadataOptions.HttpPutResponseHopLimit", "1");
    if let Some(profile) = &req.instance_profile {
        if profile.starts_with("arn:") {
            form.push("IamInstanceProfile.Arn", profile);
        } else {
            form.push("IamInstanceProfile.Name", profile);
        }
    }
    // EC2 refuses a tag specification without tags.
    let resources: &[&str] = if req.tags.is_empty() {
        &[]
    } else {
        &["instance", "volume"]
    };
    for (i, resource) in resources.iter().enumerate() {
        let spec = format!("TagSpecification.{}", i + 1);
        form.push(&format!("{spec}.ResourceType"), resource);
        for (j, (k, v)) in req.tags.iter().enumerate() {
            form.push(&format!("{spec}.Tag.{}.Key", j + 1), k);
            form.push(&format!("{spec}.Tag.{}.Value", j + 1), v);
        }
    }
    form
}

/// A form-encoded query: `Action`, `Version`, then the parameters in the order pushed.
#[derive(Debug, Default)]
struct Form {
    body: String,
}

impl Form {
    fn push(&mut self, key: &str, value: &str) {
        self.body.push('&');
        self.body
            .push_str(&utf8_percent_encode(key, FORM).to_string());
        self.body.push('=');
        self.body
            .push_str(&utf8_percent_encode(value, FORM).to_string());
    }

    /// `Name.1=a&Name.2=b`.
    fn list(&mut self, name: &str, values: &[String]) {
        for (i, v) in values.iter().enumerate() {
            self.push(&format!("{name}.{}", i + 1), v);
        }
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    fn filters(&mut self, filters: &[Filter]) {
        for (i, f) in filters.iter().enumerate() {
            self.push(&format!("Filter.{}.Name", i + 1), &f.name);
            for (j, v) in f.values.iter().enumerate() {
                self.push(&format!("Filter.{}.Value.{}", i + 1, j + 1), v);
            }
        }
    }

    fn finish(self, action: &str) -> String {
        format!("Action={action}&Version=2016-11-15{}", self.body)
    }
}

impl From<xml::Subnet> for Subnet {
    fn from(s: xml::Subnet) -> Self {
        Self {
            id: s.subnet_id,
            zone: s.availability_zone,
            zone_id: s.availability_zone_id,
            vpc_id: s.vpc_id,
            state: s.state,
        }
    }
}

impl From<xml::Instance> for Instance {
    fn from(i: xml::Instance) -> Self {
        Self {
            id: i.instance_id,
            instance_type: i.instance_type,
            state: InstanceState::parse(&i.instance_state.name),
            zone: i.placement.map(|p| p.availability_zone).unwrap_or_default(),
            subnet_id: i.subnet_id.filter(|s| !s.is_empty()),
            image_id: i.image_id,
            private_ip: i.private_ip_address.filter(|s| !s.is_empty()),
            launch_time: i.launch_time,
            tags: i
                .tag_set
                .item
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect(),
            imds_v2_required: i
                .metadata_options
                .is_some_and(|m| m.http_tokens.as_deref() == Some("required")),
        }
    }
}

impl From<xml::InstanceType> for InstanceTypeInfo {
    fn from(t: xml::InstanceType) -> Self {
        Self {
            name: t.instance_type,
            vcpus: t.v_cpu_info.default_v_cpus,
            memory_mib: t.memory_info.size_in_mi_b,
            architectures: t.processor_info.supported_architectures.item,
            current_generation: t.current_generation.unwrap_or(false),
            bare_metal: t.bare_metal.unwrap_or(false),
            burstable: t.burstable_performance_supported.unwrap_or(false),
            accelerated: t.gpu_info.is_some()
                || t.fpga_info.is_some()
                || t.inference_accelerator_info.is_some()
                || t.neuron_info.is_some()
                || t.media_accelerator_info.is_some(),
            hypervisor: t.hypervisor.unwrap_or_default(),
        }
    }
}

/// The answer documents, as EC2 writes them (lowerCamel elements, lists as `<xSet><item>`).
mod xml {
    use serde::Deserialize;

    /// A list: `<fooSet><item>…</item>…</fooSet>`.
    #[derive(Debug, Deserialize)]
    pub struct Items<T> {
        #[serde(default = "Vec::new")]
        pub item: Vec<T>,
    }

    impl<T> Default for Items<T> {
        fn default() -> Self {
            Self { item: Vec::new() }
        }
    }

    /// An answer whose content is not used.
    #[derive(Debug, Deserialize)]
    pub struct Ignored {}

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct DescribeSubnets {
        #[serde(default)]
        pub subnet_set: Items<Subnet>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Subnet {
        pub subnet_id: String,
        pub availability_zone: String,
        pub availability_zone_id: Option<String>,
        pub vpc_id: String,
        #[serde(default)]
        pub state: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RunInstances {
        #[serde(default)]
        pub instances_set: Items<Instance>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct DescribeInstances {
        #[serde(default)]
        pub reservation_set: Items<Reservation>,
        pub next_token: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Reservation {
        #[serde(default)]
        pub instances_set: Items<Instance>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Instance {
        pub instance_id: String,
        pub instance_type: String,
        pub instance_state: State,
        pub placement: Option<Placement>,
        pub subnet_id: Option<String>,
        #[serde(default)]
        pub image_id: String,
        pub private_ip_address: Option<String>,
        pub launch_time: Option<String>,
        #[serde(default)]
        pub tag_set: Items<Tag>,
        pub metadata_options: Option<MetadataOptions>,
    }

    #[derive(Debug, Deserialize)]
    pub struct State {
        pub name: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Placement {
        #[serde(default)]
        pub availability_zone: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct Tag {
        pub key: String,
        #[serde(default)]
        pub value: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct MetadataOptions {
        pub http_tokens: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct DescribeInstanceTypes {
        #[serde(default)]
        pub instance_type_set: Items<InstanceType>,
        pub next_token: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct InstanceType {
        pub instance_type: String,
        pub current_generation: Option<bool>,
        pub bare_metal: Option<bool>,
        pub burstable_performance_supported: Option<bool>,
        pub hypervisor: Option<String>,
        pub gpu_info: Option<serde::de::IgnoredAny>,
        pub fpga_info: Option<serde::de::IgnoredAny>,
        pub inference_accelerator_info: Option<serde::de::IgnoredAny>,
        pub neuron_info: Option<serde::de::IgnoredAny>,
        pub media_accelerator_info: Option<serde::de::IgnoredAny>,
        pub processor_info: ProcessorInfo,
        pub v_cpu_info: VCpuInfo,
        pub memory_info: MemoryInfo,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ProcessorInfo {
        #[serde(default)]
        pub supported_architectures: Items<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct VCpuInfo {
        #[serde(rename = "defaultVCpus")]
        pub default_v_cpus: u32,
    }

    #[derive(Debug, Deserialize)]
    pub struct MemoryInfo {
        #[serde(rename = "sizeInMiB")]
        pub size_in_mi_b: u64,
    }
}

#[cfg(test)]
mod tests;
