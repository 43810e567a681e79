//! [`FakeAgent`]: an agent in memory. Environments turn Ready (or fail init) after the fleet's
//! chosen delay; reports carry the CPU time and memory the test set; invokes are answered,
//! refused, delayed or left hanging as told; the agent can die (every call `Unreachable`) or hang
//! (every call waits out its bound, then `NoAnswer`), like an agent process behind
//! `AgentClient`. Everything it was asked is recorded for the test to inspect.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use fleetfn_proto::{
    AgentApi, AgentReport, AgentStream, BoxFuture, ClientError, EnvState, EnvironmentRequest,
    EnvironmentStatus, Failure, InstanceUsage, InvokeReply, StreamError, StreamPart, StreamedReply,
    ThrottleReason,
};
use fleetfn_scheduler::InstanceType;
use tokio::sync::watch;
use tokio::time::Instant;

/// Deadline of control requests beyond a report's wait, as `AgentClient` has it.
const CONTROL_DEADLINE: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How an environment answers an invoke.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Runs it at once and returns the payload.
    Echo,
    /// Runs it for this long, then returns the payload.
    After(Duration),
    /// Refuses it (HTTP 429 with this reason).
    Refuse(ThrottleReason),
    /// Does not know the environment (HTTP 404).
    Gone,
    /// Never answers: the exchange ends with `NoAnswer` at its deadline.
    Hang,
    /// Streams `chunks` chunks `chunk-<i>`, one every `every` (the first after `every` too),
    /// then ends (with `error` as its error type when set). A buffered invoke gets them
    /// together, as the agent collects them.
    Stream {
        chunks: usize,
        every: Duration,
        error: Option<&'static str>,
    },
}

/// Whether the agent process answers at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Connection refused: every call fails at once with `Unreachable`.
    Dead,
    /// Accepts connections but never answers: every call ends with `NoAnswer` at its bound.
    Hung,
}

/// Behaviour shared by every agent of a [`super::FakeProvider`], set by the test.
#[derive(Debug)]
pub struct Script {
    /// From `PUT` to Ready (or to Failed).
    pub ready_after: Duration,
    /// Init fails with this failure for environments of code with this SHA-256 (hex).
    pub init_failures: HashMap<String, Failure>,
    /// Per function name: how invokes are answered (default [`Answer::Echo`]).
    pub answers: HashMap<String, Answer>,
    /// Per function name: the CPU its load needs, in vCPUs, shared evenly by its Ready
    /// environments (each at most at its own vCPUs).
    pub cpu_demand: HashMap<String, f64>,
    /// Per function name: memory in use reported per environment, in bytes.
    pub memory_bytes: HashMap<String, u64>,
    /// Per function name: its Ready environments on agents that are up (kept by the agents).
    ready: HashMap<String, HashSet<String>>,
}

impl Script {
    /// How many Ready environments function `f` has on live agents.
    pub fn ready_count(&self, f: &str) -> usize {
        self.ready.get(f).map_or(0, HashSet::len)
    }
}

impl Default for Script {
    fn default() -> Self {
        Self {
            ready_after: Duration::from_secs(2),
            init_failures: HashMap::new(),
            answers: HashMap::new(),
            cpu_demand: HashMap::new(),
            memory_bytes: HashMap::new(),
            ready: HashMap::new(),
        }
    }
}

/// One environment on a fake agent.
#[derive(Debug, Clone)]
pub struct FakeEnv {
    pub env_id: String,
    pub request: EnvironmentRequest,
    pub state: EnvState,
    pub failure: Option<Failure>,
    pub started: Instant,
    pub ready_at: Option<Instant>,
    pub in_flight: u32,
    /// Invokes it was sent (whatever their answer).
    pub invocations: u64,
    cpu_ns: u64,
    cpu_at: Instant,
}

/// One invoke an agent received.
#[derive(Debug, Clone)]
pub struct InvokeRecord {
    pub request_id: String,
    pub env_id: String,
    pub instance_id: String,
    pub function: String,
    /// SHA-256 (hex) of the code of the environment that got it; `None` if it did not exist.
    pub code_sha256_hex: Option<String>,
    /// What the agent did with it.
    pub answer: String,
}

#[derive(Debug)]
struct AgentState {
    health: Health,
    /// Overrides the script's answer for every environment of this agent.
    answer: Option<Answer>,
    envs: BTreeMap<String, FakeEnv>,
    /// Every environment ever started here, by id, with its request.
    started: Vec<(String, EnvironmentRequest, Instant)>,
    /// Every environment deleted here, with when.
    deleted: Vec<(String, Instant)>,
    invokes: Vec<InvokeRecord>,
}

#[derive(Debug)]
struct Inner {
    instance_id: String,
    zone: String,
    instance_type: InstanceType,
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    state: Mutex<AgentState>,
    revision: watch::Sender<u64>,
}

/// An agent in memory; cheap to clone (clones share it).
#[derive(Debug, Clone)]
pub struct FakeAgent(Arc<Inner>);

impl FakeAgent {
    pub(crate) fn new(
        instance_id: &str,
        zone: &str,
        instance_type: InstanceType,
        port: u16,
        script: Arc<Mutex<Script>>,
    ) -> Self {
        Self(Arc::new(Inner {
            instance_id: instance_id.to_string(),
            zone: zone.to_string(),
            instance_type,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            script,
            state: Mutex::new(AgentState {
                health: Health::Up,
                answer: None,
                envs: BTreeMap::new(),
                started: Vec::new(),
                deleted: Vec::new(),
                invokes: Vec::new(),
            }),
            revision: watch::Sender::new(1),
        }))
    }

    pub fn instance_id(&self) -> &str {
        &self.0.instance_id
    }

    pub fn zone(&self) -> &str {
        &self.0.zone
    }

    fn state(&self) -> MutexGuard<'_, AgentState> {
        lock(&self.0.state)
    }

    fn bump(&self) {
        self.0.revision.send_modify(|r| *r += 1);
    }

    pub fn set_health(&self, health: Health) {
        let envs: Vec<(String, String)> = {
            let mut st = self.state();
            st.health = health;
            st.envs
                .values()
                .filter(|e| e.state == EnvState::Ready)
                .map(|e| (e.request.function_name.clone(), e.env_id.clone()))
                .collect()
        };
        {
            let mut script = lock(&self.0.script);
            for (f, id) in envs {
                let set = script.ready.entry(f).or_default();
                if health == Health::Up {
                    set.insert(id);
                } else {
                    set.remove(&id);
                }
            }
        }
        // Wake long polls so they see the new health.
        self.bump();
    }

    /// Answer every invoke on this agent this way (`None`: back to the script's answer).
    pub fn set_answer(&self, answer: Option<Answer>) {
        self.state().answer = answer;
    }

    /// The environments it runs now.
    pub fn envs(&self) -> Vec<FakeEnv> {
        self.state().envs.values().cloned().collect()
    }

    /// Every environment ever started here, with its request and when.
    pub fn started(&self) -> Vec<(String, EnvironmentRequest, Instant)> {
        self.state().started.clone()
    }

    /// Every environment deleted here, with when.
    pub fn deleted(&self) -> Vec<(String, Instant)> {
        self.state().deleted.clone()
    }

    pub fn invokes(&self) -> Vec<InvokeRecord> {
        self.state().invokes.clone()
    }

    /// Forgets an environment without telling anyone (as if its agent lost it).
    pub fn forget(&self, env_id: &str) {
        if let Some(e) = self.state().envs.remove(env_id) {
            self.unready(&e);
        }
        self.bump();
    }

    fn unready(&self, e: &FakeEnv) {
        if let Some(set) = lock(&self.0.script).ready.get_mut(&e.request.function_name) {
            set.remove(&e.env_id);
        }
    }

    fn unreachable(&self) -> ClientError {
        ClientError::Unreachable {
            addr: self.0.addr,
            detail: "connection refused (fake agent is dead)".into(),
        }
    }

    fn no_answer(&self, bound: Duration) -> ClientError {
        ClientError::NoAnswer {
            addr: self.0.addr,
            detail: format!("no answer within {} ms", bound.as_millis()),
        }
    }

    /// `Err` when the agent does not answer: at once when dead, after `bound` when hung.
    async fn reachable(&self, bound: Duration) -> Result<(), ClientError> {
        let health = self.state().health;
        match health {
            Health::Up => Ok(()),
            Health::Dead => Err(self.unreachable()),
            Health::Hung => {
                tokio::time::sleep(bound).await;
                Err(self.no_answer(bound))
            }
        }
    }

    fn report_now(&self) -> AgentReport {
        let now = Instant::now();
        let revision = *self.0.revision.borrow();
        // Per function: the CPU fraction each of its Ready environments uses.
        let (loads, memory): (HashMap<String, f64>, HashMap<String, u64>) = {
            let s = lock(&self.0.script);
            let loads = s
                .cpu_demand
                .iter()
                .map(|(f, demand)| {
                    #[allow(clippy::cast_precision_loss)]
                    let n = s.ready_count(f).max(1) as f64;
                    (f.clone(), *demand / n)
                })
                .collect();
            (loads, s.memory_bytes.clone())
        };
        let mut st = self.state();
        let mut environments = Vec::new();
        let mut total_cpu = 0u64;
        for e in st.envs.values_mut() {
            // vCPUs this environment uses: its share of the demand, at most its own vCPUs.
            let share = loads
                .get(&e.request.function_name)
                .copied()
                .unwrap_or(0.0)
                .min(e.request.vcpus);
            if e.state == EnvState::Ready {
                let dt = now.saturating_duration_since(e.cpu_at).as_secs_f64();
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let used = (dt * share * 1e9) as u64;
                e.cpu_ns += used;
            }
            e.cpu_at = now;
            total_cpu += e.cpu_ns;
            environments.push(EnvironmentStatus {
                env_id: e.env_id.clone(),
                function_name: e.request.function_name.clone(),
                version: e.request.version.clone(),
                state: e.state,
                failure: e.failure.clone(),
                in_flight: e.in_flight,
                parked: 0,
                max_concurrency: e.request.max_concurrency,
                init_ms: e.ready_at.map(|r| {
                    u64::try_from(r.saturating_duration_since(e.started).as_millis())
                        .unwrap_or(u64::MAX)
                }),
                memory_bytes: Some(
                    memory
                        .get(&e.request.function_name)
                        .copied()
                        .unwrap_or(64 << 20),
                ),
                cpu_usage_ns: Some(e.cpu_ns),
                memory_limit_bytes: u64::from(e.request.memory_mb) << 20,
                vcpus: e.request.vcpus,
                cpu_utilization: None,
                tmp_used_bytes: Some(0),
                tmp_limit_bytes: u64::from(e.request.ephemeral_storage_mb) << 20,
                placement: e.request.placement.clone(),
                // A quarter of the CPU in the kernel; 100 bytes each way per invoke.
                insights: fleetfn_proto::EnvInsights {
                    cpu_user_ns: Some(e.cpu_ns - e.cpu_ns / 4),
                    cpu_system_ns: Some(e.cpu_ns / 4),
                    memory_peak_bytes: Some(
                        memory
                            .get(&e.request.function_name)
                            .copied()
                            .unwrap_or(64 << 20),
                    ),
                    net_rx_bytes: Some(e.invocations * 100),
                    net_tx_bytes: Some(e.invocations * 100),
                },
            });
        }
        AgentReport {
            instance_id: self.0.instance_id.clone(),
            zone: self.0.zone.clone(),
            revision,
            isolation: "fake".into(),
            environments,
            instance: Some(InstanceUsage {
                instance_type: self.0.instance_type.name.clone(),
                vcpus: self.0.instance_type.vcpus,
                memory_mib: self.0.instance_type.memory_mib,
                cpu_scale: 1.0,
                cpu_usage_ns: Some(total_cpu),
                memory_bytes: None,
            }),
        }
    }

    /// Turns a starting environment Ready or Failed once the script's delay has passed.
    fn schedule_init(&self, env_id: String, failure: Option<Failure>, after: Duration) {
        let agent = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let now = Instant::now();
            {
                let mut st = agent.state();
                let Some(e) = st.envs.get_mut(&env_id) else {
                    return;
                };
                if e.state != EnvState::Starting {
                    return;
                }
                match failure {
                    Some(f) => {
                        e.state = EnvState::Failed;
                        e.failure = Some(f);
                    }
                    None => {
                        e.state = EnvState::Ready;
                        e.ready_at = Some(now);
                        e.cpu_at = now;
                        lock(&agent.0.script)
                            .ready
                            .entry(e.request.function_name.clone())
                            .or_default()
                            .insert(env_id.clone());
                    }
                }
            }
            agent.bump();
        });
    }
}

impl AgentApi for FakeAgent {
    fn put_environment<'a>(
        &'a self,
        env_id: &'a str,
        spec: &'a EnvironmentRequest,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            self.reachable(CONTROL_DEADLINE).await?;
            let (after, failure) = {
                let s = lock(&self.0.script);
                (
                    s.ready_after,
                    s.init_failures.get(&spec.code_sha256_hex).cloned(),
                )
            };
            let now = Instant::now();
            {
                let mut st = self.state();
                if st.envs.contains_key(env_id) {
                    return Ok(());
                }
                st.envs.insert(
                    env_id.to_string(),
                    FakeEnv {
                        env_id: env_id.to_string(),
                        request: spec.clone(),
                        state: EnvState::Starting,
                        failure: None,
                        started: now,
                        ready_at: None,
                        in_flight: 0,
                        invocations: 0,
                        cpu_ns: 0,
                        cpu_at: now,
                    },
                );
                st.started.push((env_id.to_string(), spec.clone(), now));
            }
            self.bump();
            self.schedule_init(env_id.to_string(), failure, after);
            Ok(())
        })
    }

    fn delete_environment<'a>(&'a self, env_id: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            self.reachable(CONTROL_DEADLINE).await?;
            let removed = {
                let mut st = self.state();
                let removed = st.envs.remove(env_id);
                if removed.is_some() {
                    st.deleted.push((env_id.to_string(), Instant::now()));
                }
                removed
            };
            if let Some(e) = removed {
                self.unready(&e);
                self.bump();
            }
            Ok(())
        })
    }

    fn put_credentials<'a>(
        &'a self,
        env_id: &'a str,
        credentials: &'a fleetfn_proto::RoleCredentials,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            self.reachable(CONTROL_DEADLINE).await?;
            if let Some(e) = self.state().envs.get_mut(env_id) {
                e.request.credentials = Some(credentials.clone());
            }
            Ok(())
        })
    }

    fn report(
        &self,
        after: Option<u64>,
        wait: Duration,
    ) -> BoxFuture<'_, Result<AgentReport, ClientError>> {
        Box::pin(async move {
            self.reachable(wait + CONTROL_DEADLINE).await?;
            if let Some(after) = after {
                let mut rx = self.0.revision.subscribe();
                // A change, or the wait runs out: either way the current report.
                let _ = tokio::time::timeout(wait, rx.wait_for(|r| *r > after)).await;
                // The agent may have died or hung while the poll waited.
                self.reachable(CONTROL_DEADLINE).await?;
            }
            Ok(self.report_now())
        })
    }

    fn invoke<'a>(
        &'a self,
        deadline: Duration,
        env_id: &'a str,
        request_id: &'a str,
        payload: Bytes,
        _client_context: Option<&'a str>,
        _tenant_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<InvokeReply, ClientError>> {
        Box::pin(async move {
            let health = self.state().health;
            let mut record = InvokeRecord {
                request_id: request_id.to_string(),
                env_id: env_id.to_string(),
                instance_id: self.0.instance_id.clone(),
                function: String::new(),
                code_sha256_hex: None,
                answer: String::new(),
            };
            if health != Health::Up {
                record.answer = format!("{health:?}");
                self.state().invokes.push(record);
                return Err(match self.reachable(deadline).await {
                    Err(e) => e,
                    Ok(()) => self.no_answer(deadline),
                });
            }
            let answer = {
                let mut st = self.state();
                let own = st.answer.clone();
                if let Some(e) = st.envs.get_mut(env_id) {
                    e.invocations += 1;
                }
                let env = st.envs.get(env_id).map(|e| {
                    (
                        e.request.function_name.clone(),
                        e.request.code_sha256_hex.clone(),
                        e.state,
                    )
                });
                let answer = match env {
                    None => Answer::Gone,
                    Some((function, code, state)) => {
                        record.function.clone_from(&function);
                        record.code_sha256_hex = Some(code);
                        match own {
                            Some(a) => a,
                            None if state != EnvState::Ready => {
                                Answer::Refuse(ThrottleReason::Concurrency)
                            }
                            None => lock(&self.0.script)
                                .answers
                                .get(&function)
                                .cloned()
                                .unwrap_or(Answer::Echo),
                        }
                    }
                };
                record.answer = format!("{answer:?}");
                st.invokes.push(record);
                answer
            };
            match answer {
                Answer::Echo => Ok(InvokeReply::Done {
                    payload,
                    function_error: None,
                }),
                Answer::After(d) => {
                    if let Some(e) = self.state().envs.get_mut(env_id) {
                        e.in_flight += 1;
                    }
                    let done = d <= deadline;
                    tokio::time::sleep(d.min(deadline)).await;
                    if let Some(e) = self.state().envs.get_mut(env_id) {
                        e.in_flight = e.in_flight.saturating_sub(1);
                    }
                    if done {
                        Ok(InvokeReply::Done {
                            payload,
                            function_error: None,
                        })
                    } else {
                        Err(self.no_answer(deadline))
                    }
                }
                Answer::Refuse(reason) => Ok(InvokeReply::Rejected {
                    reason,
                    detail: format!("fake refusal: {}", reason.as_header()),
                }),
                Answer::Gone => Ok(InvokeReply::Gone),
                Answer::Hang => {
                    tokio::time::sleep(deadline).await;
                    Err(self.no_answer(deadline))
                }
                Answer::Stream {
                    chunks,
                    every,
                    error,
                } => {
                    tokio::time::sleep(every * u32::try_from(chunks).unwrap_or(u32::MAX)).await;
                    let body: String = (0..chunks).map(|i| format!("chunk-{i}")).collect();
                    Ok(InvokeReply::Done {
                        payload: Bytes::from(body),
                        function_error: error.map(|_| "Unhandled".to_owned()),
                    })
                }
            }
        })
    }

    fn invoke_stream<'a>(
        &'a self,
        deadline: Duration,
        env_id: &'a str,
        request_id: &'a str,
        payload: Bytes,
        client_context: Option<&'a str>,
        tenant_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<StreamedReply, ClientError>> {
        Box::pin(async move {
            let streams = {
                let st = self.state();
                let own = st.answer.clone();
                let function = st.envs.get(env_id).map(|e| e.request.function_name.clone());
                own.or_else(|| function.and_then(|f| lock(&self.0.script).answers.get(&f).cloned()))
            };
            let Some(Answer::Stream {
                chunks,
                every,
                error,
            }) = streams
            else {
                return self
                    .invoke(
                        deadline,
                        env_id,
                        request_id,
                        payload,
                        client_context,
                        tenant_id,
                    )
                    .await
                    .map(StreamedReply::Reply);
            };
            self.state().invokes.push(InvokeRecord {
                request_id: request_id.to_string(),
                env_id: env_id.to_string(),
                instance_id: self.0.instance_id.clone(),
                function: String::new(),
                code_sha256_hex: None,
                answer: "Stream".into(),
            });
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                for i in 0..chunks {
                    tokio::time::sleep(every).await;
                    let chunk = Bytes::from(format!("chunk-{i}"));
                    if tx.send(StreamPart::Chunk(chunk)).await.is_err() {
                        return;
                    }
                }
                let end = error.map(|t| StreamError {
                    error_type: t.to_owned(),
                    payload: Bytes::from(format!(r#"{{"errorType":"{t}"}}"#)),
                });
                let _ = tx.send(StreamPart::End(end)).await;
            });
            Ok(StreamedReply::Stream(AgentStream {
                content_type: Some("text/plain".into()),
                parts: rx,
            }))
        })
    }
}
