//! The `ec2` provider against a fake EC2 that "boots" each instance it runs by joining an agent
//! with the token from its user data (what the hypervisor harness does with real processes in
//! tests/ec2), a fake directory of joined agents and claims, and fake agents.

use super::*;
use std::collections::HashSet;

use fleetfn_proto::{AgentApi, AgentReport, ClientError, EnvironmentRequest, InvokeReply};
use fleetfn_roles::{Instance as Ec2Instance, InstanceState, InstanceTypeInfo, Subnet};
use fleetfn_server::cluster::AgentDocument;

#[derive(Debug, Default)]
struct FakeAgent;

impl AgentApi for FakeAgent {
    fn put_environment<'a>(
        &'a self,
        _: &'a str,
        _: &'a EnvironmentRequest,
    ) -> fleetfn_proto::BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async { Ok(()) })
    }
    fn delete_environment<'a>(
        &'a self,
        _: &'a str,
    ) -> fleetfn_proto::BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async { Ok(()) })
    }
    fn put_credentials<'a>(
        &'a self,
        _: &'a str,
        _: &'a fleetfn_proto::RoleCredentials,
    ) -> fleetfn_proto::BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async { Ok(()) })
    }
    fn report(
        &self,
        _: Option<u64>,
        _: Duration,
    ) -> fleetfn_proto::BoxFuture<'_, Result<AgentReport, ClientError>> {
        Box::pin(async {
            Ok(AgentReport {
                instance_id: String::new(),
                zone: String::new(),
                revision: 0,
                isolation: String::new(),
                environments: Vec::new(),
                instance: None,
            })
        })
    }
    fn invoke<'a>(
        &'a self,
        _: Duration,
        _: &'a str,
        _: &'a str,
        _: bytes::Bytes,
        _: Option<&'a str>,
        _: Option<&'a str>,
    ) -> fleetfn_proto::BoxFuture<'a, Result<InvokeReply, ClientError>> {
        Box::pin(async {
            Err(ClientError::Unreachable {
                addr: "127.0.0.1:9".parse().unwrap(),
                detail: "a fake agent takes no invokes".into(),
            })
        })
    }
}

#[derive(Debug, Default)]
struct Dir {
    agents: Mutex<Vec<JoinedAgent>>,
    claims: Mutex<Vec<AgentClaim>>,
    /// token → token id.
    tokens: Mutex<HashMap<String, String>>,
    cp: Mutex<Option<CapacityProvider>>,
    image: Mutex<Option<String>>,
}

impl AgentDirectory for Dir {
    fn agents(&self) -> BoxFuture<'_, Result<Vec<JoinedAgent>, LambdaError>> {
        let a = self.agents.lock().clone();
        Box::pin(async move { Ok(a) })
    }
    fn claims(&self) -> BoxFuture<'_, Result<Vec<AgentClaim>, LambdaError>> {
        let c = self.claims.lock().clone();
        Box::pin(async move { Ok(c) })
    }
    fn claim<'a>(&'a self, claim: &'a AgentClaim) -> BoxFuture<'a, Result<bool, LambdaError>> {
        Box::pin(async move {
            let mut c = self.claims.lock();
            if c.iter().any(|x| x.agent_id == claim.agent_id) {
                return Ok(false);
            }
            c.push(claim.clone());
            Ok(true)
        })
    }
    fn release<'a>(
        &'a self,
        agent_id: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), LambdaError>> {
        Box::pin(async move {
            self.claims.lock().retain(|c| c.agent_id != agent_id);
            Ok(())
        })
    }
}

impl Ec2Directory for Dir {
    fn capacity_provider<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<CapacityProvider>, LambdaError>> {
        let cp = self.cp.lock().clone();
        Box::pin(async move { Ok(cp) })
    }
    fn image_override<'a>(
        &'a self,
        _: &'a CapacityProvider,
    ) -> BoxFuture<'a, Result<Option<String>, LambdaError>> {
        let image = self.image.lock().clone();
        Box::pin(async move { Ok(image) })
    }
    fn single_use_token<'a>(
        &'a self,
        _: String,
        _: Duration,
    ) -> BoxFuture<'a, Result<(String, String), LambdaError>> {
        Box::pin(async move {
            let mut t = self.tokens.lock();
            let id = format!("tok{}", t.len());
            let token = format!("fj1.{id}.secret{}", t.len());
            t.insert(token.clone(), id.clone());
            Ok((id, token))
        })
    }
}

/// EC2 that boots instances into joined agents (unless told not to).
#[derive(Debug)]
struct FakeEc2 {
    dir: Arc<Dir>,
    instances: Mutex<Vec<Ec2Instance>>,
    /// (type, subnet) without capacity.
    no_capacity: Mutex<HashSet<(String, String)>>,
    /// Instances boot and join.
    boots: Mutex<bool>,
    runs: Mutex<Vec<LaunchRequest>>,
    terminated: Mutex<Vec<String>>,
    parameters: Mutex<HashMap<String, String>>,
}

impl FakeEc2 {
    fn new(dir: Arc<Dir>) -> Self {
        Self {
            dir,
            instances: Mutex::default(),
            no_capacity: Mutex::default(),
            boots: Mutex::new(true),
            runs: Mutex::default(),
            terminated: Mutex::default(),
            parameters: Mutex::default(),
        }
    }

    /// What the user data says: the token and the zone.
    fn boot(&self, req: &LaunchRequest, n: usize) {
        let token = req
            .user_data
            .lines()
            .find_map(|l| l.strip_prefix("printf '%s\\n' '"))
            .and_then(|l| l.split('\'').next())
            .expect("the token is in the user data");
        let token_id = self
            .dir
            .tokens
            .lock()
            .get(token)
            .cloned()
            .expect("a known token");
        let zone = req
            .user_data
            .split("'--zone' '")
            .nth(1)
            .and_then(|l| l.split('\'').next())
            .unwrap()
            .to_owned();
        let arch = if req.instance_type.contains('g') {
            "arm64"
        } else {
            "x86_64"
        };
        self.dir.agents.lock().push(JoinedAgent {
            doc: AgentDocument {
                agent_id: format!("agent-{n}"),
                address: format!("10.0.0.{n}:9700"),
                zone,
                vcpus: 2,
                memory_mib: 8192,
                architecture: arch.into(),
                runtimes: vec![],
                hostname: String::new(),
                joined_at: String::new(),
                token_id,
                tls: false,
            },
            credential: "cred".into(),
        });
    }
}

impl Ec2Api for FakeEc2 {
    fn describe_subnets<'a>(
        &'a self,
        _: &'a [String],
    ) -> fleetfn_roles::BoxFuture<'a, Result<Vec<Subnet>, Ec2Error>> {
        Box::pin(async { Ok(vec![]) })
    }
    fn run_instance<'a>(
        &'a self,
        req: &'a LaunchRequest,
    ) -> fleetfn_roles::BoxFuture<'a, Result<Ec2Instance, Ec2Error>> {
        Box::pin(async move {
            self.runs.lock().push(req.clone());
            if self
                .no_capacity
                .lock()
                .contains(&(req.instance_type.clone(), req.subnet_id.clone()))
            {
                return Err(Ec2Error::Refused {
                    action: "RunInstances",
                    status: 500,
                    code: "InsufficientInstanceCapacity".into(),
                    message: format!("no {} in {}", req.instance_type, req.subnet_id),
                });
            }
            let n = self.instances.lock().len() + 1;
            let i = Ec2Instance {
                id: format!("i-{n:017}"),
                instance_type: req.instance_type.clone(),
                state: InstanceState::Pending,
                zone: req.subnet_id.clone(),
                subnet_id: Some(req.subnet_id.clone()),
                image_id: req.image_id.clone(),
                private_ip: None,
                launch_time: Some(jiff::Timestamp::now().to_string()),
                tags: req.tags.clone(),
                imds_v2_required: true,
            };
            self.instances.lock().push(i.clone());
            if *self.boots.lock() {
                self.boot(req, n);
            }
            Ok(i)
        })
    }
    fn describe_instances<'a>(
        &'a self,
        filters: &'a [Filter],
    ) -> fleetfn_roles::BoxFuture<'a, Result<Vec<Ec2Instance>, Ec2Error>> {
        Box::pin(async move {
            let all = self.instances.lock().clone();
            Ok(all
                .into_iter()
                .filter(|i| {
                    filters.iter().all(|f| match f.name.as_str() {
                        "instance-id" => f.values.contains(&i.id),
                        "instance-state-name" => f.values.iter().any(|v| {
                            matches!(
                                (v.as_str(), &i.state),
                                ("pending", InstanceState::Pending)
                                    | ("running", InstanceState::Running)
                                    | ("stopped", InstanceState::Stopped)
                            )
                        }),
                        tag => tag
                            .strip_prefix("tag:")
                            .is_some_and(|k| i.tags.get(k).is_some_and(|v| f.values.contains(v))),
                    })
                })
                .collect())
        })
    }
    fn terminate_instances<'a>(
        &'a self,
        ids: &'a [String],
    ) -> fleetfn_roles::BoxFuture<'a, Result<(), Ec2Error>> {
        Box::pin(async move {
            self.terminated.lock().extend(ids.iter().cloned());
            for i in self.instances.lock().iter_mut() {
                if ids.contains(&i.id) {
                    i.state = InstanceState::Terminated;
                }
            }
            Ok(())
        })
    }
    fn describe_instance_types<'a>(
        &'a self,
        _: &'a [String],
    ) -> fleetfn_roles::BoxFuture<'a, Result<Vec<InstanceTypeInfo>, Ec2Error>> {
        Box::pin(async { Ok(vec![]) })
    }
    fn get_parameter<'a>(
        &'a self,
        name: &'a str,
    ) -> fleetfn_roles::BoxFuture<'a, Result<String, Ec2Error>> {
        Box::pin(async move {
            self.parameters
                .lock()
                .get(name)
                .cloned()
                .ok_or_else(|| Ec2Error::Refused {
                    action: "GetParameter",
                    status: 400,
                    code: "ParameterNotFound".into(),
                    message: format!("Parameter {name} not found."),
                })
        })
    }
}

#[derive(Debug)]
struct Connector(Arc<FakeEc2>, Mutex<Vec<String>>);

impl Ec2Connector for Connector {
    fn for_role(&self, role_arn: &str) -> Result<Arc<dyn Ec2Api>, Ec2Error> {
        self.1.lock().push(role_arn.to_owned());
        Ok(self.0.clone())
    }
}

const ROLE: &str = "arn:aws:iam::123456789012:role/operator";

fn cp(allowed: &[&str]) -> CapacityProvider {
    serde_json::from_value(serde_json::json!({
        "CapacityProviderArn": "arn:aws:lambda:us-east-1:123456789012:capacity-provider:cp1",
        "State": "Active",
        "VpcConfig": {"SubnetIds": ["subnet-a", "subnet-b", "subnet-c"], "SecurityGroupIds": ["sg-1"]},
        "PermissionsConfig": {"CapacityProviderOperatorRoleArn": ROLE},
        "InstanceRequirements": {"Architectures": ["arm64"], "AllowedInstanceTypes": allowed},
        "CapacityProviderScalingConfig": {},
        "LastModified": "2026-12-04T00:00:00.000+0000"
    }))
    .unwrap()
}

struct Rig {
    dir: Arc<Dir>,
    ec2: Arc<FakeEc2>,
    roles: Arc<Connector>,
    p: Ec2Provider,
}

fn rig(allowed: &[&str]) -> Rig {
    let dir = Arc::new(Dir::default());
    *dir.cp.lock() = Some(cp(allowed));
    let ec2 = Arc::new(FakeEc2::new(dir.clone()));
    let roles = Arc::new(Connector(ec2.clone(), Mutex::default()));
    let mut cfg = Ec2ProviderConfig::new("c1", "ami-1", vec!["https://10.0.0.1:9600".into()]);
    cfg.join_timeout = Duration::from_secs(30);
    cfg.describe_every = Duration::ZERO;
    cfg.orphan_grace = Duration::from_secs(60);
    let connect: Connect = Arc::new(|_, _, _| Ok(Arc::new(FakeAgent) as Arc<dyn AgentApi>));
    let p = Ec2Provider::new(cfg, dir.clone(), roles.clone(), Catalog::builtin(), connect);
    Rig { dir, ec2, roles, p }
}

fn spec(t: &str, zone: &str) -> LaunchSpec {
    LaunchSpec {
        capacity_provider: "cp1".into(),
        zone: zone.into(),
        instance_type: Catalog::builtin().get(t).unwrap().clone(),
    }
}

#[tokio::test]
async fn launches_in_the_zone_subnet_with_tags_imdsv2_user_data_and_claims_its_own_agent() {
    let r = rig(&["m7g.*"]);
    // Another agent already joined in the same zone: never claimed for this instance.
    r.dir
        .tokens
        .lock()
        .insert("fj1.tok9.x".into(), "tok9".into());
    r.ec2.boot(
        &LaunchRequest {
            image_id: String::new(),
            instance_type: "m7g.large".into(),
            subnet_id: "subnet-b".into(),
            security_group_ids: vec![],
            user_data: user_data(&r.p.cfg, "fj1.tok9.x", "subnet-b", "i-other"),
            tags: BTreeMap::new(),
            client_token: String::new(),
            instance_profile: None,
        },
        99,
    );
    let inst =
        r.p.launch("i-1", &spec("m7g.large", "subnet-b"))
            .await
            .unwrap();
    assert_eq!(
        (inst.zone.as_str(), inst.instance_type.name.as_str()),
        ("subnet-b", "m7g.large")
    );
    let runs = r.ec2.runs.lock().clone();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.subnet_id, "subnet-b");
    assert_eq!(run.security_group_ids, ["sg-1"]);
    assert_eq!(run.image_id, "ami-1");
    assert_eq!(run.tags[TAG_CLUSTER], "c1");
    assert_eq!(run.tags[TAG_CAPACITY_PROVIDER], "cp1");
    assert_eq!(run.tags[TAG_INSTANCE_ID], "i-1");
    assert_eq!(run.tags[TAG_ZONE], "subnet-b");
    assert!(run.user_data.starts_with("#!/bin/sh\n"));
    assert!(run.user_data.contains("'--join' 'https://10.0.0.1:9600'"));
    assert!(run.user_data.contains("'--instance-id' 'i-1'"));
    assert_eq!(r.roles.1.lock()[0], ROLE, "signed as the operator role");
    let claims = r.dir.claims.lock().clone();
    assert_eq!(claims.len(), 1);
    assert_eq!(
        claims[0].agent_id, "agent-1",
        "the agent that joined with this launch's token"
    );
    assert!(r.p.is_running("i-1"));
    assert_eq!(r.p.capacity().vcpus_in_use, 2);
}

#[test]
fn the_user_data_quotes_what_it_is_given() {
    let mut cfg = Ec2ProviderConfig::new("c1", "ami-1", vec!["https://h:1/'; rm -rf /".into()]);
    cfg.ca_pem = Some("-----BEGIN CERTIFICATE-----\nMII'x\n-----END CERTIFICATE-----\n".into());
    let ud = user_data(&cfg, "fj1.a.b", "subnet-a", "i-1");
    assert!(
        ud.contains(r"'--join' 'https://h:1/'\''; rm -rf /'"),
        "{ud}"
    );
    assert!(ud.contains(r"MII'\''x"), "{ud}");
    assert!(ud.contains("--ca-file \"$FLEETFN_HOME/servers-ca.pem\""));
    assert!(ud.contains("umask 077"));
    // The script parses as POSIX shell.
    let status = std::process::Command::new("sh")
        .args(["-n", "-c", &ud])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn insufficient_capacity_falls_back_to_a_larger_type_then_another_zone_and_is_reported() {
    let r = rig(&["m7g.large", "m7g.xlarge"]);
    r.ec2
        .no_capacity
        .lock()
        .extend([("m7g.large".to_owned(), "subnet-a".to_owned())]);
    let inst =
        r.p.launch("i-1", &spec("m7g.large", "subnet-a"))
            .await
            .unwrap();
    assert_eq!(
        (inst.zone.as_str(), inst.instance_type.name.as_str()),
        ("subnet-a", "m7g.xlarge")
    );
    let failures = r.p.launch_failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].code, "InsufficientInstanceCapacity");
    assert_eq!(
        (
            failures[0].instance_type.as_str(),
            failures[0].zone.as_str()
        ),
        ("m7g.large", "subnet-a")
    );

    // Neither type in subnet-a: the next zone.
    r.ec2
        .no_capacity
        .lock()
        .insert(("m7g.xlarge".to_owned(), "subnet-a".to_owned()));
    let inst =
        r.p.launch("i-2", &spec("m7g.large", "subnet-a"))
            .await
            .unwrap();
    assert_eq!(inst.zone, "subnet-b");
    // The cooling (m7g.large, subnet-a) was not asked again.
    let asked: Vec<(String, String)> = r
        .ec2
        .runs
        .lock()
        .iter()
        .skip(2)
        .map(|q| (q.instance_type.clone(), q.subnet_id.clone()))
        .collect();
    assert_eq!(
        asked,
        [
            ("m7g.xlarge".to_owned(), "subnet-a".to_owned()),
            ("m7g.large".to_owned(), "subnet-b".to_owned())
        ]
    );
}

#[tokio::test]
async fn no_capacity_anywhere_fails_with_ec2s_code() {
    let r = rig(&["m7g.large"]);
    for z in ["subnet-a", "subnet-b", "subnet-c"] {
        r.ec2
            .no_capacity
            .lock()
            .insert(("m7g.large".to_owned(), z.to_owned()));
    }
    let err =
        r.p.launch("i-1", &spec("m7g.large", "subnet-a"))
            .await
            .unwrap_err();
    assert!(
        matches!(&err, LaunchError::Ec2 { code, .. } if code == "InsufficientInstanceCapacity"),
        "{err}"
    );
    assert_eq!(r.p.launch_failures().len(), 3);
    assert!(!r.p.is_running("i-1"));
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_never_joins_times_out_and_its_instance_is_terminated() {
    let r = rig(&["m7g.large"]);
    *r.ec2.boots.lock() = false;
    let err =
        r.p.launch("i-1", &spec("m7g.large", "subnet-a"))
            .await
            .unwrap_err();
    assert!(
        matches!(&err, LaunchError::Ec2 { code, .. } if code == "AgentJoinTimeout"),
        "{err}"
    );
    assert_eq!(r.ec2.terminated.lock().len(), 1);
    assert!(!r.p.is_running("i-1"));
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_stops_before_joining_fails_the_launch_early() {
    let r = rig(&["m7g.large"]);
    *r.ec2.boots.lock() = false;
    let ec2 = r.ec2.clone();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        for i in ec2.instances.lock().iter_mut() {
            i.state = InstanceState::Stopped;
        }
    });
    let started = tokio::time::Instant::now();
    let err =
        r.p.launch("i-1", &spec("m7g.large", "subnet-a"))
            .await
            .unwrap_err();
    stopper.await.unwrap();
    assert!(
        matches!(&err, LaunchError::Ec2 { code, .. } if code == "InstanceStopped"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "before the join timeout"
    );
}

#[tokio::test]
async fn the_sweep_marks_gone_instances_and_terminates_old_orphans_only() {
    let r = rig(&["m7g.large"]);
    r.p.launch("i-1", &spec("m7g.large", "subnet-a"))
        .await
        .unwrap();
    r.p.launch("i-2", &spec("m7g.large", "subnet-b"))
        .await
        .unwrap();
    // A "VM" dies.
    r.ec2.instances.lock()[0].state = InstanceState::Terminated;
    // An orphan of this cluster (old), a fresh one (a launch in flight elsewhere), and one of
    // another cluster.
    let orphan = |id: &str, cluster: &str, launched: &str| Ec2Instance {
        id: id.into(),
        instance_type: "m7g.large".into(),
        state: InstanceState::Running,
        zone: "subnet-a".into(),
        subnet_id: Some("subnet-a".into()),
        image_id: "ami-1".into(),
        private_ip: None,
        launch_time: Some(launched.into()),
        tags: BTreeMap::from([
            (TAG_CLUSTER.to_owned(), cluster.to_owned()),
            (TAG_INSTANCE_ID.to_owned(), format!("x-{id}")),
        ]),
        imds_v2_required: true,
    };
    let now = jiff::Timestamp::now().to_string();
    r.ec2.instances.lock().extend([
        orphan("i-old", "c1", "2020-01-01T00:00:00Z"),
        orphan("i-fresh", "c1", &now),
        orphan("i-theirs", "c2", "2020-01-01T00:00:00Z"),
    ]);
    r.p.sweep().await;
    assert!(
        !r.p.is_running("i-1"),
        "its VM is gone: the data plane replaces it"
    );
    assert!(r.p.is_running("i-2"));
    assert_eq!(*r.ec2.terminated.lock(), ["i-old"]);

    // Terminating an instance releases its agent and terminates its VM.
    r.p.terminate("i-2").await;
    assert!(r.dir.claims.lock().iter().all(|c| c.instance_id != "i-2"));
    assert_eq!(r.ec2.terminated.lock().len(), 2);
    assert!(!r.p.is_running("i-2"));
}

#[tokio::test]
async fn a_new_leader_adopts_the_claimed_instances_that_still_run() {
    let r = rig(&["m7g.large"]);
    r.p.launch("i-1", &spec("m7g.large", "subnet-a"))
        .await
        .unwrap();
    r.p.launch("i-2", &spec("m7g.large", "subnet-b"))
        .await
        .unwrap();
    r.ec2.instances.lock()[1].state = InstanceState::Terminated;
    // Another provider over the same directory and EC2: the next leader's.
    let connect: Connect = Arc::new(|_, _, _| Ok(Arc::new(FakeAgent) as Arc<dyn AgentApi>));
    let next = Ec2Provider::new(
        r.p.cfg.clone(),
        r.dir.clone(),
        r.roles.clone(),
        Catalog::builtin(),
        connect,
    );
    let adopted = next.existing().await.unwrap();
    let ids: Vec<&str> = adopted.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["i-1"]);
    assert!(next.is_running("i-1"));
    assert!(!next.is_running("i-2"));
    assert!(next.outlives_data_plane());
}

#[tokio::test]
async fn instances_of_an_old_image_or_past_the_maximum_age_are_to_be_replaced() {
    let r = rig(&["m7g.large"]);
    r.p.launch("i-1", &spec("m7g.large", "subnet-a"))
        .await
        .unwrap();
    assert_eq!(
        r.p.should_replace("i-1"),
        None,
        "fresh, on the current image"
    );
    assert_eq!(r.ec2.runs.lock()[0].tags[TAG_IMAGE], "ami-1");
    // The capacity provider's tag names a new image: read at the next sweep.
    *r.dir.image.lock() = Some("ami-2".into());
    r.p.sweep().await;
    let why = r.p.should_replace("i-1").unwrap();
    assert!(why.contains("ami-1") && why.contains("ami-2"), "{why}");
    // Its replacement boots the new image and is not to be replaced.
    r.p.launch("i-2", &spec("m7g.large", "subnet-a"))
        .await
        .unwrap();
    assert_eq!(r.ec2.runs.lock()[1].image_id, "ami-2");
    assert_eq!(r.p.should_replace("i-2"), None);

    // Past the maximum age: launched in 2020, as the next leader finds it.
    for i in r.ec2.instances.lock().iter_mut() {
        i.launch_time = Some("2020-01-01T00:00:00Z".into());
    }
    let mut cfg = r.p.cfg.clone();
    cfg.max_instance_age = Duration::from_secs(14 * 24 * 3600);
    let connect: Connect = Arc::new(|_, _, _| Ok(Arc::new(FakeAgent) as Arc<dyn AgentApi>));
    let aged = Ec2Provider::new(
        cfg,
        r.dir.clone(),
        r.roles.clone(),
        Catalog::builtin(),
        connect,
    );
    aged.existing().await.unwrap();
    let why = aged.should_replace("i-2").unwrap();
    assert!(why.contains("maximum instance age 1209600 s"), "{why}");
    assert_eq!(aged.should_replace("i-unknown"), None);
}

#[tokio::test]
async fn an_image_named_by_an_ssm_parameter_follows_the_parameter() {
    let r = rig(&["m7g.large"]);
    let param = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64";
    r.ec2.parameters.lock().insert(param.into(), "ami-a".into());
    *r.dir.image.lock() = Some(format!("resolve:ssm:{param}"));
    r.p.launch("i-1", &spec("m7g.large", "subnet-a"))
        .await
        .unwrap();
    assert_eq!(r.ec2.runs.lock()[0].image_id, "ami-a");
    assert_eq!(r.ec2.runs.lock()[0].tags[TAG_IMAGE], "ami-a");
    r.p.sweep().await;
    assert_eq!(r.p.should_replace("i-1"), None);
    // A new image published under the parameter: the instance is to be replaced.
    r.ec2.parameters.lock().insert(param.into(), "ami-b".into());
    r.p.sweep().await;
    assert!(r.p.should_replace("i-1").unwrap().contains("ami-b"));
    // A parameter that does not exist fails the launch with SSM's code.
    *r.dir.image.lock() = Some("resolve:ssm:/nope".into());
    let err =
        r.p.launch("i-2", &spec("m7g.large", "subnet-a"))
            .await
            .unwrap_err();
    assert!(
        matches!(&err, LaunchError::Ec2 { code, .. } if code == "ParameterNotFound"),
        "{err}"
    );
}
