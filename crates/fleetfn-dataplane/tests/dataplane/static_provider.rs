//! The `static` provider over a directory of joined agents (in memory) and fake agents: which
//! agent a launch claims, what it refuses and why, what terminating gives back, and what a new
//! provider (a new leader's) finds claimed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use fleetfn_dataplane::{
    AgentDirectory, BoxFuture, InstanceProvider, LaunchError, LaunchSpec, StaticProvider,
};
use fleetfn_model::LambdaError;
use fleetfn_proto::{AgentApi, EnvironmentRequest};
use fleetfn_scheduler::Catalog;
use fleetfn_server::cluster::{AgentClaim, AgentDocument, JoinedAgent};

use crate::support::{FakeAgent, Health};

#[derive(Debug, Default)]
struct Directory {
    agents: Mutex<Vec<JoinedAgent>>,
    claims: Mutex<Vec<AgentClaim>>,
}

impl AgentDirectory for Directory {
    fn agents(&self) -> BoxFuture<'_, Result<Vec<JoinedAgent>, LambdaError>> {
        let a = self.agents.lock().unwrap().clone();
        Box::pin(async move { Ok(a) })
    }
    fn claims(&self) -> BoxFuture<'_, Result<Vec<AgentClaim>, LambdaError>> {
        let c = self.claims.lock().unwrap().clone();
        Box::pin(async move { Ok(c) })
    }
    fn claim<'a>(&'a self, claim: &'a AgentClaim) -> BoxFuture<'a, Result<bool, LambdaError>> {
        Box::pin(async move {
            let mut c = self.claims.lock().unwrap();
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
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<(), LambdaError>> {
        Box::pin(async move {
            self.claims
                .lock()
                .unwrap()
                .retain(|c| !(c.agent_id == agent_id && c.instance_id == instance_id));
            Ok(())
        })
    }
}

fn joined(id: &str, port: u16, zone: &str, vcpus: u32, memory_mib: u64, arch: &str) -> JoinedAgent {
    JoinedAgent {
        doc: AgentDocument {
            agent_id: id.into(),
            address: format!("127.0.0.1:{port}"),
            zone: zone.into(),
            vcpus,
            memory_mib,
            architecture: arch.into(),
            runtimes: vec!["provided.al2023".into()],
            hostname: id.into(),
            joined_at: "2026-12-03T00:00:00Z".into(),
            token_id: "t".into(),
            tls: false,
        },
        credential: format!("secret-{id}"),
    }
}

struct Fleet {
    dir: Arc<Directory>,
    /// The fake agent behind each address.
    agents: Arc<Mutex<HashMap<SocketAddr, FakeAgent>>>,
    /// The credential each connection was made with.
    credentials: Arc<Mutex<Vec<String>>>,
}

impl Fleet {
    fn new(agents: Vec<JoinedAgent>) -> Self {
        let catalog = Catalog::builtin();
        let t = catalog.get("c7i.large").cloned().unwrap();
        let fakes = agents
            .iter()
            .map(|a| {
                let addr: SocketAddr = a.doc.address.parse().unwrap();
                let fake = FakeAgent::new(
                    &a.doc.agent_id,
                    &a.doc.zone,
                    t.clone(),
                    addr.port(),
                    Arc::default(),
                );
                (addr, fake)
            })
            .collect();
        let dir = Directory::default();
        *dir.agents.lock().unwrap() = agents;
        Self {
            dir: Arc::new(dir),
            agents: Arc::new(Mutex::new(fakes)),
            credentials: Arc::default(),
        }
    }

    fn provider(&self) -> StaticProvider {
        let (agents, creds) = (self.agents.clone(), self.credentials.clone());
        StaticProvider::with_connect(
            self.dir.clone(),
            Catalog::builtin(),
            Arc::new(move |addr, credential, _tls| {
                creds.lock().unwrap().push(credential.to_string());
                Ok(Arc::new(agents.lock().unwrap()[&addr].clone()) as Arc<dyn AgentApi>)
            }),
        )
    }

    fn fake(&self, port: u16) -> FakeAgent {
        self.agents.lock().unwrap()[&SocketAddr::from(([127, 0, 0, 1], port))].clone()
    }

    fn claimed(&self) -> Vec<(String, String)> {
        let mut c: Vec<(String, String)> = self
            .dir
            .claims
            .lock()
            .unwrap()
            .iter()
            .map(|c| (c.agent_id.clone(), c.instance_id.clone()))
            .collect();
        c.sort();
        c
    }
}

fn spec(zone: &str, t: &str) -> LaunchSpec {
    LaunchSpec {
        capacity_provider: "cp".into(),
        zone: zone.into(),
        instance_type: Catalog::builtin().get(t).cloned().unwrap(),
    }
}

fn env_request() -> EnvironmentRequest {
    EnvironmentRequest {
        function_name: "f".into(),
        version: "1".into(),
        qualified_arn: "arn:aws:lambda:us-east-1:000000000000:function:f:1".into(),
        runtime: "provided.al2023".into(),
        handler: None,
        code_sha256_hex: "00".repeat(32),
        code_size: 1,
        memory_mb: 2048,
        timeout_secs: 3,
        max_concurrency: 1,
        vcpus: 1.0,
        ephemeral_storage_mb: 512,
        region: "us-east-1".into(),
        env_vars: BTreeMap::new(),
        placement: None,
        credentials: None,
        layers: Vec::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_launch_claims_the_smallest_free_agent_that_fits_in_its_zone() {
    let fleet = Fleet::new(vec![
        joined("big", 20_001, "z1", 8, 32_768, "x86_64"),
        joined("small", 20_002, "z1", 2, 4_096, "x86_64"),
        joined("other-zone", 20_003, "z2", 2, 4_096, "x86_64"),
        joined("arm", 20_004, "z1", 4, 8_192, "arm64"),
        joined("too-little-memory", 20_005, "z1", 2, 2_048, "x86_64"),
    ]);
    let p = fleet.provider();
    let i1 = p.launch("i-1", &spec("z1", "c7i.large")).await.unwrap();
    assert_eq!(
        (i1.zone.as_str(), i1.instance_type.name.as_str()),
        ("z1", "c7i.large")
    );
    let i2 = p.launch("i-2", &spec("z1", "c7i.large")).await.unwrap();
    assert_eq!(
        fleet.claimed(),
        vec![("big".into(), "i-2".into()), ("small".into(), "i-1".into())]
    );
    // The servers present each agent's own credential.
    assert_eq!(
        fleet.credentials.lock().unwrap()[..2],
        ["secret-small".to_string(), "secret-big".to_string()]
    );
    // Nothing left in z1 for an x86 c7i.large: refused with what to do.
    let err = p.launch("i-3", &spec("z1", "c7i.large")).await.unwrap_err();
    assert!(matches!(err, LaunchError::NoFreeAgent { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("InsufficientInstanceCapacity")
            && msg.contains("zone z1")
            && msg.contains("fleetfn agent --join"),
        "{msg}"
    );
    assert_eq!(p.capacity().vcpus_in_use, 4);
    assert_eq!(p.capacity().max_vcpus, 8 + 2 + 2 + 4 + 2);
    assert!(p.is_running("i-1") && p.is_running(&i2.id));

    // Terminating stops what the agent runs for us and gives it back.
    i1.client
        .put_environment("e-1", &env_request())
        .await
        .unwrap();
    p.terminate("i-1").await;
    assert!(!p.is_running("i-1"));
    assert_eq!(fleet.claimed(), vec![("big".into(), "i-2".into())]);
    assert!(
        fleet
            .fake(20_002)
            .deleted()
            .iter()
            .any(|(id, _)| id == "e-1"),
        "the environment was stopped"
    );
    let again = p.launch("i-4", &spec("z1", "c7i.large")).await.unwrap();
    assert_eq!(again.id, "i-4");
    assert!(fleet.claimed().contains(&("small".into(), "i-4".into())));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_agent_is_given_back_and_the_next_one_claimed() {
    let fleet = Fleet::new(vec![
        joined("a", 20_011, "z1", 2, 4_096, "x86_64"),
        joined("b", 20_012, "z1", 4, 8_192, "x86_64"),
    ]);
    fleet.fake(20_011).set_health(Health::Dead);
    let p = fleet.provider();
    p.launch("i-1", &spec("z1", "c7i.large")).await.unwrap();
    assert_eq!(fleet.claimed(), vec![("b".into(), "i-1".into())]);
    let err = p.launch("i-2", &spec("z1", "c7i.large")).await.unwrap_err();
    assert!(err.to_string().contains("unreachable: agent a"), "{err}");
    assert_eq!(fleet.claimed(), vec![("b".into(), "i-1".into())]);
}

#[tokio::test(start_paused = true)]
async fn a_new_provider_finds_the_claimed_agents_and_they_outlive_it() {
    let fleet = Fleet::new(vec![
        joined("a", 20_021, "z1", 2, 4_096, "x86_64"),
        joined("b", 20_022, "z2", 2, 4_096, "x86_64"),
    ]);
    let first = fleet.provider();
    assert!(first.outlives_data_plane());
    first.launch("i-1", &spec("z1", "c7i.large")).await.unwrap();
    first.launch("i-2", &spec("z2", "c7i.large")).await.unwrap();
    drop(first);

    let next = fleet.provider();
    let mut found = next.existing().await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    let seen: Vec<(&str, &str, &str)> = found
        .iter()
        .map(|i| {
            (
                i.id.as_str(),
                i.zone.as_str(),
                i.instance_type.name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![("i-1", "z1", "c7i.large"), ("i-2", "z2", "c7i.large")]
    );
    assert!(next.is_running("i-1") && next.is_running("i-2"));
    // A removed agent's claim is not an instance any more.
    fleet
        .dir
        .agents
        .lock()
        .unwrap()
        .retain(|a| a.doc.agent_id != "b");
    let found = next.existing().await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(!next.is_running("i-2"));
}

#[tokio::test(start_paused = true)]
async fn environments_left_on_an_agent_whose_claim_ended_are_swept() {
    let fleet = Fleet::new(vec![
        joined("a", 20_031, "z1", 2, 4_096, "x86_64"),
        joined("b", 20_032, "z1", 2, 4_096, "x86_64"),
        joined("c", 20_033, "z2", 2, 4_096, "x86_64"),
    ]);
    let p = fleet.provider();
    let ia = p.launch("i-a", &spec("z1", "c7i.large")).await.unwrap();
    let ic = p.launch("i-c", &spec("z2", "c7i.large")).await.unwrap();
    ia.client
        .put_environment("e-a", &env_request())
        .await
        .unwrap();
    ic.client
        .put_environment("e-c", &env_request())
        .await
        .unwrap();
    // `a` is cut off while its instance is terminated: nothing is stopped, the claim ends.
    fleet.fake(20_031).set_health(Health::Dead);
    p.terminate("i-a").await;
    assert_eq!(fleet.claimed(), vec![("c".into(), "i-c".into())]);
    assert!(fleet.fake(20_031).deleted().is_empty());
    // Unreachable: the sweep leaves it for later.
    assert_eq!(p.sweep().await.stopped, 0);
    // Healed: its environment is stray and stopped; the claimed agent's is not touched.
    fleet.fake(20_031).set_health(Health::Up);
    assert_eq!(p.sweep().await.stopped, 1);
    let deleted: Vec<String> = fleet
        .fake(20_031)
        .deleted()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(deleted, vec!["e-a".to_string()]);
    assert!(fleet.fake(20_033).deleted().is_empty());
    assert_eq!(p.sweep().await.stopped, 0);

    // A launch that claims an agent still running an earlier claim's environment stops it first.
    fleet.fake(20_033).set_health(Health::Dead);
    p.terminate("i-c").await;
    fleet.fake(20_033).set_health(Health::Up);
    let again = p.launch("i-c2", &spec("z2", "c7i.large")).await.unwrap();
    assert_eq!(fleet.claimed(), vec![("c".into(), "i-c2".into())]);
    assert_eq!(again.id, "i-c2");
    let deleted: Vec<String> = fleet
        .fake(20_033)
        .deleted()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        deleted,
        vec!["e-c".to_string()],
        "the new claim starts empty"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sweep_tells_when_agents_joined() {
    let fleet = Fleet::new(vec![joined("a", 20_041, "z1", 2, 4_096, "x86_64")]);
    let p = fleet.provider();
    assert!(p.sweep().await.hosts_joined, "the first look sees `a`");
    assert!(!p.sweep().await.hosts_joined);
    fleet
        .dir
        .agents
        .lock()
        .unwrap()
        .push(joined("b", 20_041, "z2", 2, 4_096, "x86_64"));
    assert!(p.sweep().await.hosts_joined);
    assert!(!p.sweep().await.hosts_joined);
    // One leaving is not a join.
    fleet
        .dir
        .agents
        .lock()
        .unwrap()
        .retain(|a| a.doc.agent_id != "a");
    assert!(!p.sweep().await.hosts_joined);
}

#[tokio::test(start_paused = true)]
async fn an_old_claim_is_rotated_only_when_a_free_agent_of_its_zone_can_take_over() {
    let fleet = Fleet::new(vec![
        joined("a1", 20_101, "z1", 2, 4_096, "x86_64"),
        joined("a2", 20_102, "z1", 2, 4_096, "x86_64"),
        joined("b1", 20_103, "z2", 2, 4_096, "x86_64"),
        joined("arm", 20_104, "z2", 2, 4_096, "arm64"),
    ]);
    let old = fleet.provider().with_max_age(std::time::Duration::ZERO);
    old.launch("i-1", &spec("z1", "c7i.large")).await.unwrap();
    old.launch("i-2", &spec("z2", "c7i.large")).await.unwrap();
    // Before a sweep has seen the free agents, nothing is rotated.
    assert_eq!(old.should_replace("i-1"), None);
    old.sweep().await;
    let why = old
        .should_replace("i-1")
        .expect("a free z1 agent can take over");
    assert!(why.contains("maximum instance age 0 s"), "{why}");
    // z2's only other agent is arm64: i-2 keeps serving.
    assert_eq!(old.should_replace("i-2"), None);
    assert_eq!(old.should_replace("i-unknown"), None);
    // Young claims are left alone; without a maximum age nothing is rotated.
    let young = fleet
        .provider()
        .with_max_age(std::time::Duration::from_secs(14 * 24 * 3600));
    young.existing().await.unwrap();
    young.sweep().await;
    assert_eq!(young.should_replace("i-1"), None);
    // A new leader's provider knows the claims' ages from the directory.
    let adopted = fleet.provider().with_max_age(std::time::Duration::ZERO);
    adopted.existing().await.unwrap();
    adopted.sweep().await;
    assert!(adopted.should_replace("i-1").is_some());
    let never = fleet.provider();
    never.existing().await.unwrap();
    never.sweep().await;
    assert_eq!(never.should_replace("i-1"), None);
}
