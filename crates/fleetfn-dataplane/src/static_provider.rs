//! The `static` instance provider of `fleetfn server`: its instances are hosts that already run,
//! agents that joined with `fleetfn agent --join`. Launching an instance of type T in zone Z
//! claims a free joined agent whose `--zone` is Z and that is at least as large as T (vCPUs,
//! memory, architecture); terminating one stops its environments and gives the agent back. The
//! claims live in the store (written through the leader's fenced store), so a new leader adopts
//! the claimed agents with what runs on them ([`InstanceProvider::existing`]) instead of
//! starting anything again, and a stopping data plane leaves the agents running.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fleetfn_model::LambdaError;
use fleetfn_proto::tls::ClientTls;
use fleetfn_proto::{AgentApi, AgentClient};
use fleetfn_scheduler::{Arch, Catalog, InstanceType};
use fleetfn_server::ControlPlane;
use fleetfn_server::cluster::{AgentClaim, JoinedAgent};
use parking_lot::Mutex;

use crate::ProviderCapacity;
use crate::instances::{BoxFuture, Instance, InstanceProvider, LaunchError, LaunchSpec, Sweep};

/// How long a claimed agent has to answer before the launch gives it back.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long an unclaimed agent has to answer the stray sweep (one that does not is looked at
/// again at the next sweep).
const SWEEP_ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Where the joined agents and their claims are kept: the control plane's store, or a fake.
pub trait AgentDirectory: Send + Sync + std::fmt::Debug {
    fn agents(&self) -> BoxFuture<'_, Result<Vec<JoinedAgent>, LambdaError>>;
    fn claims(&self) -> BoxFuture<'_, Result<Vec<AgentClaim>, LambdaError>>;
    /// `Ok(false)`: claimed already, or removed meanwhile.
    fn claim<'a>(&'a self, claim: &'a AgentClaim) -> BoxFuture<'a, Result<bool, LambdaError>>;
    fn release<'a>(
        &'a self,
        agent_id: &'a str,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<(), LambdaError>>;
}

impl AgentDirectory for ControlPlane {
    fn agents(&self) -> BoxFuture<'_, Result<Vec<JoinedAgent>, LambdaError>> {
        Box::pin(self.joined_agents())
    }
    fn claims(&self) -> BoxFuture<'_, Result<Vec<AgentClaim>, LambdaError>> {
        Box::pin(self.agent_claims())
    }
    fn claim<'a>(&'a self, claim: &'a AgentClaim) -> BoxFuture<'a, Result<bool, LambdaError>> {
        Box::pin(self.claim_agent(claim))
    }
    fn release<'a>(
        &'a self,
        agent_id: &'a str,
        instance_id: &'a str,
    ) -> BoxFuture<'a, Result<(), LambdaError>> {
        Box::pin(self.release_agent(agent_id, instance_id))
    }
}

/// Makes the client that reaches one agent (its address, its credential, whether it serves its
/// API over TLS); `Err` says why it cannot be reached.
pub type Connect =
    Arc<dyn Fn(SocketAddr, &str, bool) -> Result<Arc<dyn AgentApi>, String> + Send + Sync>;

/// Reaches joined agents with their credentials: over TLS, verified with `agent_tls`, those
/// that joined saying they serve it, over plain HTTP the others; a leader's calls carry its
/// `term`.
pub fn agent_connect(term: Option<u64>, agent_tls: Option<ClientTls>) -> Connect {
    Arc::new(move |addr, credential, tls| {
        let client = match (tls, &agent_tls) {
            (false, _) => AgentClient::new(addr, credential),
            (true, Some(roots)) => AgentClient::new_tls(addr, credential, roots),
            (true, None) => {
                return Err(format!(
                    "agent {addr} serves its API over TLS and this server has no CA to \
                             verify it with: start it with --agent-ca FILE"
                ));
            }
        };
        Ok(Arc::new(match term {
            Some(t) => client.with_term(t),
            None => client,
        }))
    })
}

#[derive(Debug, Clone)]
struct Claimed {
    agent_id: String,
    vcpus: u32,
    client: Arc<dyn AgentApi>,
    /// The zone and type it serves as (a free agent that fits them can take over).
    zone: String,
    instance_type: InstanceType,
    /// When it was claimed (its age, for the maximum instance age).
    claimed_at: Option<jiff::Timestamp>,
}

/// Joined agents as instances.
pub struct StaticProvider {
    dir: Arc<dyn AgentDirectory>,
    catalog: Catalog,
    connect: Connect,
    /// By instance id.
    claimed: Mutex<HashMap<String, Claimed>>,
    /// vCPUs of the joined agents, as last listed.
    joined_vcpus: AtomicU32,
    /// Ids of the agents seen by the sweeps.
    known_agents: Mutex<HashSet<String>>,
    /// Claims older than this are handed over to a free agent of their zone, when one fits.
    max_age: Option<Duration>,
    /// Unclaimed agents as the last sweep saw them.
    free: Mutex<Vec<JoinedAgent>>,
}

impl std::fmt::Debug for StaticProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticProvider")
            .field("dir", &self.dir)
            .field("claimed", &self.claimed.lock().len())
            .finish_non_exhaustive()
    }
}

fn arch_name(a: Arch) -> &'static str {
    match a {
        Arch::X86_64 => "x86_64",
        Arch::Arm64 => "arm64",
    }
}

/// Whether the agent can serve as an instance of type `t` in `zone`.
fn fits(a: &JoinedAgent, zone: &str, t: &InstanceType) -> bool {
    a.doc.zone == zone
        && a.doc.vcpus >= t.vcpus
        && a.doc.memory_mib >= t.memory_mib
        && a.doc.architecture == arch_name(t.arch)
}

impl StaticProvider {
    /// Over `dir`, reaching agents with their credentials: over TLS, verified with
    /// `agent_tls`, those that joined saying they serve it, over plain HTTP the others.
    /// `term`: the leader's (its starts and stops carry it, so agents refuse a former
    /// leader's); `None` for a follower, which never starts or stops anything.
    pub fn new(
        dir: Arc<dyn AgentDirectory>,
        catalog: Catalog,
        term: Option<u64>,
        agent_tls: Option<ClientTls>,
    ) -> Self {
        Self::with_connect(dir, catalog, agent_connect(term, agent_tls))
    }

    pub fn with_connect(dir: Arc<dyn AgentDirectory>, catalog: Catalog, connect: Connect) -> Self {
        Self {
            dir,
            catalog,
            connect,
            claimed: Mutex::default(),
            joined_vcpus: AtomicU32::new(0),
            known_agents: Mutex::default(),
            max_age: None,
            free: Mutex::default(),
        }
    }

    /// Claims older than `max_age` are rotated: the data plane moves their environments to a
    /// free agent of the same zone (when the last sweep saw one that fits), then releases the
    /// agent, which drained and stays joined, free for a later claim.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    fn client_for(&self, a: &JoinedAgent) -> Result<Arc<dyn AgentApi>, String> {
        let addr: SocketAddr = a.doc.address.parse().map_err(|_| {
            format!(
                "agent {} has a bad address {:?}",
                a.doc.agent_id, a.doc.address
            )
        })?;
        (self.connect)(addr, &a.credential, a.doc.tls)
    }

    async fn agents(&self) -> Result<Vec<JoinedAgent>, LaunchError> {
        let agents = self
            .dir
            .agents()
            .await
            .map_err(|e| LaunchError::Directory(e.message))?;
        self.joined_vcpus
            .store(agents.iter().map(|a| a.doc.vcpus).sum(), Ordering::Relaxed);
        Ok(agents)
    }

    /// The joined agents and the claims on them.
    async fn agents_and_claims(&self) -> Result<(Vec<JoinedAgent>, Vec<AgentClaim>), LaunchError> {
        let agents = self.agents().await?;
        let claims = self
            .dir
            .claims()
            .await
            .map_err(|e| LaunchError::Directory(e.message))?;
        Ok((agents, claims))
    }

    async fn launch_on_agent(
        &self,
        instance_id: &str,
        spec: &LaunchSpec,
    ) -> Result<Instance, LaunchError> {
        let t = &spec.instance_type;
        let (agents, claims) = self.agents_and_claims().await?;
        let mut free: Vec<&JoinedAgent> = agents
            .iter()
            .filter(|a| fits(a, &spec.zone, t))
            .filter(|a| !claims.iter().any(|c| c.agent_id == a.doc.agent_id))
            .collect();
        // The smallest agent that fits first: large hosts stay free for large types.
        free.sort_by(|a, b| {
            (a.doc.vcpus, a.doc.memory_mib, &a.doc.agent_id).cmp(&(
                b.doc.vcpus,
                b.doc.memory_mib,
                &b.doc.agent_id,
            ))
        });
        let mut unreachable = Vec::new();
        for a in free {
            let claim = AgentClaim {
                agent_id: a.doc.agent_id.clone(),
                instance_id: instance_id.to_string(),
                capacity_provider: spec.capacity_provider.clone(),
                zone: spec.zone.clone(),
                instance_type: t.name.clone(),
                claimed_at: fleetfn_model::time::now_lambda(),
            };
            let client = match self.client_for(a) {
                Ok(c) => c,
                Err(e) => {
                    unreachable.push(e);
                    continue;
                }
            };
            if !self
                .dir
                .claim(&claim)
                .await
                .map_err(|e| LaunchError::Directory(e.message))?
            {
                continue;
            }
            match client.report(None, Duration::ZERO).await {
                // Anything it runs now is left from an earlier claim (it was cut off when
                // that ended): a fresh instance starts empty.
                Ok(report) => {
                    stop_strays(&client, &a.doc.agent_id, report.environments).await;
                }
                Err(e) => {
                    unreachable.push(format!(
                        "agent {} at {}: {e}",
                        a.doc.agent_id, a.doc.address
                    ));
                    let _ = self.dir.release(&a.doc.agent_id, instance_id).await;
                    continue;
                }
            }
            tracing::info!(instance = %instance_id, agent = %a.doc.agent_id, address = %a.doc.address, zone = %spec.zone, instance_type = %t.name, capacity_provider = %spec.capacity_provider, "joined agent claimed as an instance");
            self.claimed.lock().insert(
                instance_id.to_string(),
                Claimed {
                    agent_id: a.doc.agent_id.clone(),
                    vcpus: t.vcpus,
                    client: client.clone(),
                    zone: spec.zone.clone(),
                    instance_type: t.clone(),
                    claimed_at: Some(jiff::Timestamp::now()),
                },
            );
            return Ok(Instance {
                id: instance_id.to_string(),
                zone: spec.zone.clone(),
                capacity_provider: spec.capacity_provider.clone(),
                instance_type: t.clone(),
                client,
            });
        }
        Err(LaunchError::NoFreeAgent {
            zone: spec.zone.clone(),
            instance_type: t.name.clone(),
            vcpus: t.vcpus,
            memory_mib: t.memory_mib,
            arch: arch_name(t.arch),
            unreachable: unreachable.join("; "),
        })
    }

    fn claims_agent(&self, agent_id: &str) -> bool {
        self.claimed.lock().values().any(|c| c.agent_id == agent_id)
    }

    /// The instance type a claim serves as: the catalog's, or (a type the catalog no longer
    /// has) the agent's own size under the claimed name.
    fn claimed_type(&self, claim: &AgentClaim, a: &JoinedAgent) -> InstanceType {
        claimed_type(&self.catalog, claim, a, "static")
    }
}

/// The instance type a claim names: the catalog's, or (a type the catalog no longer has) the
/// agent's own shape under that name, in `family`, unpriced.
pub(crate) fn claimed_type(
    catalog: &Catalog,
    claim: &AgentClaim,
    a: &JoinedAgent,
    family: &str,
) -> InstanceType {
    catalog
        .get(&claim.instance_type)
        .cloned()
        .unwrap_or_else(|| InstanceType {
            name: claim.instance_type.clone(),
            family: family.into(),
            arch: if a.doc.architecture == "arm64" {
                Arch::Arm64
            } else {
                Arch::X86_64
            },
            vcpus: a.doc.vcpus,
            memory_mib: a.doc.memory_mib,
            hourly_usd: None,
        })
}

/// Stops environments an agent runs for no instance; how many it stopped.
async fn stop_strays(
    client: &Arc<dyn AgentApi>,
    agent_id: &str,
    environments: Vec<fleetfn_proto::EnvironmentStatus>,
) -> usize {
    let mut stopped = 0;
    for e in environments {
        match client.delete_environment(&e.env_id).await {
            Ok(()) => {
                stopped += 1;
                tracing::info!(agent = %agent_id, env = %e.env_id, "stray environment stopped (its agent is no instance's)");
            }
            Err(err) => {
                tracing::warn!(agent = %agent_id, env = %e.env_id, error = %err, "cannot stop a stray environment")
            }
        }
    }
    stopped
}

impl InstanceProvider for StaticProvider {
    fn launch<'a>(
        &'a self,
        instance_id: &'a str,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<Instance, LaunchError>> {
        Box::pin(async move {
            tokio::time::timeout(ANSWER_WITHIN * 2, self.launch_on_agent(instance_id, spec))
                .await
                .unwrap_or_else(|_| {
                    Err(LaunchError::Directory(format!(
                        "claiming a joined agent for {instance_id} took over {} s",
                        (ANSWER_WITHIN * 2).as_secs()
                    )))
                })
        })
    }

    fn terminate<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let claimed = self.claimed.lock().remove(instance_id);
            let Some(c) = claimed else { return };
            // Stop what it runs for us, then give the host back.
            if let Ok(Ok(report)) =
                tokio::time::timeout(ANSWER_WITHIN, c.client.report(None, Duration::ZERO)).await
            {
                for e in report.environments {
                    if let Err(err) = c.client.delete_environment(&e.env_id).await {
                        tracing::warn!(agent = %c.agent_id, env = %e.env_id, error = %err, "cannot stop an environment of a released agent");
                    }
                }
            }
            if let Err(e) = self.dir.release(&c.agent_id, instance_id).await {
                tracing::warn!(agent = %c.agent_id, instance = %instance_id, error = %e, "cannot release a joined agent");
            }
            tracing::info!(instance = %instance_id, agent = %c.agent_id, "joined agent released");
        })
    }

    fn is_running(&self, instance_id: &str) -> bool {
        self.claimed.lock().contains_key(instance_id)
    }

    fn capacity(&self) -> ProviderCapacity {
        ProviderCapacity {
            vcpu_scale: 1.0,
            max_vcpus: self.joined_vcpus.load(Ordering::Relaxed),
            vcpus_in_use: self.claimed.lock().values().map(|c| c.vcpus).sum(),
        }
    }

    fn existing(&self) -> BoxFuture<'_, Result<Vec<Instance>, LaunchError>> {
        Box::pin(async move {
            let (agents, claims) = self.agents_and_claims().await?;
            let mut found = Vec::new();
            let mut claimed = HashMap::new();
            for claim in claims {
                let Some(a) = agents.iter().find(|a| a.doc.agent_id == claim.agent_id) else {
                    continue;
                };
                let client = match self.client_for(a) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "a claimed agent cannot be reached");
                        continue;
                    }
                };
                let t = self.claimed_type(&claim, a);
                claimed.insert(
                    claim.instance_id.clone(),
                    Claimed {
                        agent_id: claim.agent_id.clone(),
                        vcpus: t.vcpus,
                        client: client.clone(),
                        zone: claim.zone.clone(),
                        instance_type: t.clone(),
                        claimed_at: claim.claimed_at.parse().ok(),
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
            *self.claimed.lock() = claimed;
            Ok(found)
        })
    }

    fn outlives_data_plane(&self) -> bool {
        true
    }

    fn should_replace(&self, instance_id: &str) -> Option<String> {
        let max = self.max_age?;
        let c = self.claimed.lock().get(instance_id).cloned()?;
        let age = jiff::Timestamp::now()
            .duration_since(c.claimed_at?)
            .unsigned_abs();
        let why = crate::instances::too_old(age, max)?;
        // Only when another joined agent can take over; otherwise it keeps serving.
        let successor = self
            .free
            .lock()
            .iter()
            .any(|a| a.doc.agent_id != c.agent_id && fits(a, &c.zone, &c.instance_type));
        successor.then(|| format!("its claim is old: {why}"))
    }

    fn sweep(&self) -> BoxFuture<'_, Sweep> {
        Box::pin(async move {
            let Ok((agents, claims)) = self.agents_and_claims().await else {
                return Sweep::default();
            };
            let hosts_joined = {
                let mut known = self.known_agents.lock();
                let before = known.len();
                known.extend(agents.iter().map(|a| a.doc.agent_id.clone()));
                known.len() > before
            };
            *self.free.lock() = agents
                .iter()
                .filter(|a| !claims.iter().any(|c| c.agent_id == a.doc.agent_id))
                .cloned()
                .collect();
            let mut stopped = 0;
            for a in &agents {
                if claims.iter().any(|c| c.agent_id == a.doc.agent_id) {
                    continue;
                }
                let Ok(client) = self.client_for(a) else {
                    continue;
                };
                let Ok(Ok(report)) =
                    tokio::time::timeout(SWEEP_ANSWER_WITHIN, client.report(None, Duration::ZERO))
                        .await
                else {
                    continue;
                };
                // A launch that claimed it since the claims were read is in `claimed` before
                // it starts anything; what the report listed before that is stray either way.
                if report.environments.is_empty() || self.claims_agent(&a.doc.agent_id) {
                    continue;
                }
                stopped += stop_strays(&client, &a.doc.agent_id, report.environments).await;
            }
            Sweep {
                stopped,
                hosts_joined,
            }
        })
    }
}
