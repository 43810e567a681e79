//! [`FakeProvider`]: an instance provider in memory. Each launch records its zone and type and
//! starts a [`FakeAgent`]; the test can make the next launches fail or take away all capacity,
//! and kill an instance (its agent dies and `is_running` turns false).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fleetfn_dataplane::{
    BoxFuture, Instance, InstanceProvider, LaunchError, LaunchSpec, ProviderCapacity,
};
use tokio::time::Instant;

use super::agent::{FakeAgent, Health, Script};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One launch attempt.
#[derive(Debug, Clone)]
pub struct LaunchRecord {
    pub instance_id: String,
    pub capacity_provider: String,
    pub zone: String,
    pub instance_type: String,
    pub vcpus: u32,
    pub at: Instant,
    pub ok: bool,
}

#[derive(Debug, Default)]
struct ProviderState {
    launches: Vec<LaunchRecord>,
    terminations: Vec<(String, Instant)>,
    /// Every agent ever launched, by instance id.
    agents: HashMap<String, FakeAgent>,
    /// Instance ids whose "process" runs.
    running: HashMap<String, u32>,
    fail_next: u32,
    no_capacity: bool,
    next_port: u16,
    /// Instances outlive the data plane and are listed by `existing` (like joined agents).
    outlives: bool,
    /// Capacity provider and type of each instance, for `existing`.
    specs: HashMap<String, LaunchSpec>,
    /// Instances the provider wants replaced (`should_replace`).
    replace: std::collections::HashSet<String>,
}

#[derive(Debug)]
struct Inner {
    script: Arc<Mutex<Script>>,
    state: Mutex<ProviderState>,
    /// How long a launch takes (an instance boots, its agent starts).
    launch_takes: Duration,
}

/// An instance provider in memory; cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct FakeProvider(Arc<Inner>);

impl Default for FakeProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeProvider {
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            script: Arc::new(Mutex::new(Script::default())),
            state: Mutex::new(ProviderState {
                next_port: 20_000,
                ..ProviderState::default()
            }),
            launch_takes: Duration::from_millis(500),
        }))
    }

    fn state(&self) -> MutexGuard<'_, ProviderState> {
        lock(&self.0.state)
    }

    /// The behaviour of all agents, to change.
    pub fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.0.script)
    }

    /// The next `n` launches fail (the agent never reports its address).
    pub fn fail_next_launches(&self, n: u32) {
        self.state().fail_next = n;
    }

    /// Launches fail with `InsufficientInstanceCapacity` until told otherwise.
    /// Asks for these instances to be replaced (as an image change or a maximum age would).
    pub fn want_replaced(&self, ids: &[String]) {
        self.state().replace.extend(ids.iter().cloned());
    }

    pub fn set_no_capacity(&self, none: bool) {
        self.state().no_capacity = none;
    }

    /// Instances outlive a stopping data plane, and a data plane that starts adopts the running
    /// ones (as with the `static` provider's joined agents).
    pub fn set_outlives(&self, outlives: bool) {
        self.state().outlives = outlives;
    }

    pub fn launches(&self) -> Vec<LaunchRecord> {
        self.state().launches.clone()
    }

    pub fn terminations(&self) -> Vec<(String, Instant)> {
        self.state().terminations.clone()
    }

    /// Agents whose instance runs, ordered by instance id.
    pub fn running(&self) -> Vec<FakeAgent> {
        let st = self.state();
        let mut out: Vec<FakeAgent> = st
            .running
            .keys()
            .filter_map(|id| st.agents.get(id).cloned())
            .collect();
        out.sort_by(|a, b| a.instance_id().cmp(b.instance_id()));
        out
    }

    /// Every agent ever launched (running or not).
    pub fn agents(&self) -> Vec<FakeAgent> {
        let mut out: Vec<FakeAgent> = self.state().agents.values().cloned().collect();
        out.sort_by(|a, b| a.instance_id().cmp(b.instance_id()));
        out
    }

    /// The instance's process dies: its agent is unreachable and `is_running` is false.
    pub fn kill(&self, instance_id: &str) {
        let agent = {
            let mut st = self.state();
            st.running.remove(instance_id);
            st.agents.get(instance_id).cloned()
        };
        if let Some(a) = agent {
            a.set_health(Health::Dead);
        }
    }
}

impl InstanceProvider for FakeProvider {
    fn launch<'a>(
        &'a self,
        instance_id: &'a str,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<Instance, LaunchError>> {
        Box::pin(async move {
            let t = &spec.instance_type;
            let mut record = LaunchRecord {
                instance_id: instance_id.to_string(),
                capacity_provider: spec.capacity_provider.clone(),
                zone: spec.zone.clone(),
                instance_type: t.name.clone(),
                vcpus: t.vcpus,
                at: Instant::now(),
                ok: false,
            };
            let refusal = {
                let mut st = self.state();
                let refusal = if st.no_capacity {
                    Some(LaunchError::InsufficientCapacity {
                        instance_type: t.name.clone(),
                        vcpus: t.vcpus,
                        in_use: st.running.values().sum(),
                        max_vcpus: 0,
                    })
                } else if st.fail_next > 0 {
                    st.fail_next -= 1;
                    Some(LaunchError::NoAddress {
                        id: instance_id.to_string(),
                        detail: "fake launch failure".into(),
                    })
                } else {
                    None
                };
                if refusal.is_some() {
                    st.launches.push(record.clone());
                }
                refusal
            };
            if let Some(e) = refusal {
                return Err(e);
            }
            tokio::time::sleep(self.0.launch_takes).await;
            let agent = {
                let mut st = self.state();
                st.next_port += 1;
                let agent = FakeAgent::new(
                    instance_id,
                    &spec.zone,
                    t.clone(),
                    st.next_port,
                    self.0.script.clone(),
                );
                record.ok = true;
                st.launches.push(record);
                st.agents.insert(instance_id.to_string(), agent.clone());
                st.running.insert(instance_id.to_string(), t.vcpus);
                st.specs.insert(instance_id.to_string(), spec.clone());
                agent
            };
            Ok(Instance {
                id: instance_id.to_string(),
                zone: spec.zone.clone(),
                capacity_provider: spec.capacity_provider.clone(),
                instance_type: t.clone(),
                client: Arc::new(agent),
            })
        })
    }

    fn terminate<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let agent = {
                let mut st = self.state();
                st.terminations
                    .push((instance_id.to_string(), Instant::now()));
                st.running.remove(instance_id);
                st.agents.get(instance_id).cloned()
            };
            if let Some(a) = agent {
                a.set_health(Health::Dead);
            }
        })
    }

    fn is_running(&self, instance_id: &str) -> bool {
        self.state().running.contains_key(instance_id)
    }

    fn should_replace(&self, instance_id: &str) -> Option<String> {
        self.state()
            .replace
            .contains(instance_id)
            .then(|| "the test asked for it".to_string())
    }

    fn capacity(&self) -> ProviderCapacity {
        ProviderCapacity {
            vcpu_scale: 1.0,
            max_vcpus: 100_000,
            vcpus_in_use: self.state().running.values().sum(),
        }
    }

    fn existing(&self) -> BoxFuture<'_, Result<Vec<Instance>, LaunchError>> {
        Box::pin(async move {
            let st = self.state();
            if !st.outlives {
                return Ok(Vec::new());
            }
            let mut ids: Vec<&String> = st.running.keys().collect();
            ids.sort();
            Ok(ids
                .into_iter()
                .filter_map(|id| {
                    let spec = st.specs.get(id)?;
                    let agent = st.agents.get(id)?.clone();
                    Some(Instance {
                        id: id.clone(),
                        zone: spec.zone.clone(),
                        capacity_provider: spec.capacity_provider.clone(),
                        instance_type: spec.instance_type.clone(),
                        client: Arc::new(agent),
                    })
                })
                .collect())
        })
    }

    fn outlives_data_plane(&self) -> bool {
        self.state().outlives
    }
}
