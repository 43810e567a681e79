//! The agent's side of the server ↔ agent protocol (`fleetfn-proto`, v1): run, report, invoke
//! and stop environments on request of the server, behind a bearer token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use fleetfn_artifacts::{ArtifactStore, Digest};
use fleetfn_proto::{
    AgentReport, EnvState as WireState, EnvironmentRequest, EnvironmentStatus, Failure,
    H_CLIENT_CONTEXT, H_FUNCTION_ERROR, H_REJECT_REASON, H_REQUEST_ID, H_TENANT_ID, InstanceUsage,
    InvokeReply, ThrottleReason, response, stream,
};
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{
    EnvState, Environment, EnvironmentSpec, ExitReason, InstanceShape, InstanceSlice, InvokeInput,
    RuntimeProvider,
};

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub instance_id: String,
    pub zone: String,
    /// Bearer token the server must present.
    pub token: String,
    pub artifacts_dir: PathBuf,
    /// Function logs: `<logs_dir>/<function>/<version>/<env_id>.<seq>.jsonl`.
    pub logs_dir: PathBuf,
    /// Segment size, cap and age of each version's log.
    pub log_limits: crate::LogLimits,
    /// One line on the isolation in force, for reports.
    pub isolation: String,
    /// The instance's type and size (its `cpu_scale` sizes every environment's CPU).
    pub instance: InstanceShape,
    /// The instance's cgroup slice, when cgroups are in use (its use goes in reports).
    pub instance_slice: Option<Arc<InstanceSlice>>,
}

struct Slot {
    req: EnvironmentRequest,
    status: WireState,
    failure: Option<Failure>,
    init_ms: Option<u64>,
    env: Option<Arc<Environment>>,
}

/// The agent: its environments and their report revision.
#[derive(Clone)]
pub struct Agent {
    cfg: Arc<AgentConfig>,
    provider: Arc<RuntimeProvider>,
    artifacts: ArtifactStore,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    revision: Arc<watch::Sender<u64>>,
    /// Cancelled at shutdown: ends pending report long-polls at once.
    closing: tokio_util::sync::CancellationToken,
    /// Where packages missing from `artifacts` come from (joined agents: the servers).
    packages: Option<Arc<dyn crate::PackageSource>>,
    /// When a server last called with the right token.
    last_contact: Arc<Mutex<tokio::time::Instant>>,
    /// The highest leader term seen on a start or stop ([`fleetfn_proto::H_TERM`]).
    term: Arc<std::sync::atomic::AtomicU64>,
    /// Where that term is kept across restarts (joined agents).
    term_file: Option<Arc<std::path::PathBuf>>,
    /// The functions' merged layers (each environment's `/opt`).
    layers: Arc<crate::LayerCache>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("instance", &self.cfg.instance_id)
            .finish_non_exhaustive()
    }
}

fn failure_of(reason: &ExitReason) -> Failure {
    match reason {
        ExitReason::InitFailed(f) => Failure {
            reason_code: f.reason_code.as_str().to_string(),
            reason: f.reason.clone(),
        },
        ExitReason::Crashed {
            error_type,
            message,
        } => Failure {
            reason_code: error_type.clone(),
            reason: message.clone(),
        },
        ExitReason::Stopped => Failure {
            reason_code: "Stopped".into(),
            reason: "The environment was stopped.".into(),
        },
    }
}

impl Agent {
    pub fn new(
        cfg: AgentConfig,
        provider: RuntimeProvider,
    ) -> Result<Self, fleetfn_artifacts::StoreError> {
        let artifacts = ArtifactStore::open(&cfg.artifacts_dir)?;
        // Beside the environments' directories, under a name no environment id can take.
        let layers = Arc::new(crate::LayerCache::new(
            provider.config().env_root.join("+layers"),
        ));
        Ok(Self {
            layers,
            cfg: Arc::new(cfg),
            provider: Arc::new(provider),
            artifacts,
            slots: Arc::new(Mutex::new(HashMap::new())),
            revision: Arc::new(watch::Sender::new(0)),
            closing: tokio_util::sync::CancellationToken::new(),
            packages: None,
            last_contact: Arc::new(Mutex::new(tokio::time::Instant::now())),
            term: Arc::default(),
            term_file: None,
        })
    }

    /// Keeps the highest leader term seen in `path` (read now, rewritten when it rises), so a
    /// restarted agent still refuses a former leader's starts and stops.
    #[must_use]
    pub fn with_term_file(mut self, path: std::path::PathBuf) -> Self {
        if let Some(t) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            self.term.store(t, std::sync::atomic::Ordering::SeqCst);
        }
        self.term_file = Some(Arc::new(path));
        self
    }

    /// Records a leader's `term` when it is the highest seen (kept in the term file); returns
    /// the highest seen before it.
    fn note_term(&self, term: u64) -> u64 {
        let seen = self
            .term
            .fetch_max(term, std::sync::atomic::Ordering::SeqCst);
        if term > seen {
            self.keep_term(term);
        }
        seen
    }

    /// Writes a higher term to the term file (best effort: a failure is logged).
    fn keep_term(&self, term: u64) {
        let Some(path) = &self.term_file else { return };
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, format!("{term}\n"))
            .and_then(|()| std::fs::rename(&tmp, path.as_ref()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep the leader term");
        }
    }

    /// Fetches code packages its artifact store lacks from `source` (an agent that joined
    /// servers on other hosts).
    #[must_use]
    pub fn with_package_source(mut self, source: Arc<dyn crate::PackageSource>) -> Self {
        self.packages = Some(source);
        self
    }

    /// Ends pending report long-polls (call before a graceful HTTP shutdown).
    pub fn close(&self) {
        self.closing.cancel();
    }

    fn bump(&self) {
        self.revision.send_modify(|n| *n += 1);
    }

    fn update(&self, env_id: &str, f: impl FnOnce(&mut Slot)) {
        if let Some(slot) = self.slots.lock().get_mut(env_id) {
            f(slot);
        }
        self.bump();
    }

    /// Starts an environment in the background; its progress shows in reports.
    fn start(&self, env_id: String, req: EnvironmentRequest) {
        let agent = self.clone();
        tokio::spawn(async move {
            let digest = match Digest::from_hex(&req.code_sha256_hex, req.code_size) {
                Ok(d) => d,
                Err(e) => {
                    agent.fail(
                        &env_id,
                        "InvalidZipFileException",
                        format!("bad code digest: {e}"),
                    );
                    return;
                }
            };
            if let Err(e) =
                crate::packages::ensure_package(&agent.artifacts, &digest, agent.packages.as_ref())
                    .await
            {
                agent.fail(
                    &env_id,
                    "InvalidZipFileException",
                    format!("cannot get the code package: {e}"),
                );
                return;
            }
            let artifacts = agent.artifacts.clone();
            let code_dir = match tokio::task::spawn_blocking(move || {
                artifacts.ensure_extracted(&digest)
            })
            .await
            {
                Ok(Ok(dir)) => dir,
                Ok(Err(e)) => {
                    agent.fail(
                        &env_id,
                        "InvalidZipFileException",
                        format!("cannot unpack the code package: {e}"),
                    );
                    return;
                }
                Err(e) => {
                    agent.fail(&env_id, "InternalError", e.to_string());
                    return;
                }
            };
            // Held until the environment is gone: the last environment of a layer set
            // removes its merged directory.
            let layers = match agent
                .layers
                .prepare(&agent.artifacts, &req.layers, agent.packages.as_ref())
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    agent.fail(&env_id, e.reason_code(), e.to_string());
                    return;
                }
            };
            let spec = EnvironmentSpec {
                env_id: env_id.clone(),
                function_name: req.function_name.clone(),
                version: req.version.clone(),
                qualified_arn: req.qualified_arn.clone(),
                runtime: req.runtime.clone(),
                handler: req.handler.clone(),
                code_dir,
                memory_mb: req.memory_mb,
                timeout_secs: req.timeout_secs,
                max_concurrency: req.max_concurrency,
                vcpus: req.vcpus,
                cpu_scale: agent.cfg.instance.cpu_scale,
                ephemeral_storage_mb: req.ephemeral_storage_mb,
                region: req.region.clone(),
                env_vars: req.env_vars.clone(),
                logs: agent.log_target(&env_id, &req),
                init_timeout: None,
                credentials: req.credentials.clone(),
                opt_dir: layers.as_ref().map(|l| l.path().to_path_buf()),
            };
            let env = match Environment::start(spec, &agent.provider).await {
                Ok(env) => Arc::new(env),
                Err(e) => {
                    let f = e.init_failure();
                    agent.fail(&env_id, f.reason_code.as_str(), f.reason);
                    return;
                }
            };
            // Stopped before it started: drop it (which kills it).
            let still_wanted = match agent.slots.lock().get_mut(&env_id) {
                Some(slot) => {
                    slot.env = Some(env.clone());
                    true
                }
                None => false,
            };
            if !still_wanted {
                let _ = env.stop(Duration::from_secs(1)).await;
                return;
            }
            match env.ready().await {
                Ok(took) => agent.update(&env_id, |s| {
                    s.status = WireState::Ready;
                    s.init_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
                }),
                Err(f) => {
                    agent.fail(&env_id, f.reason_code.as_str(), f.reason);
                    return;
                }
            }
            // A change of admission ceiling is news for the server's view of this instance.
            let mut saturation = env.watch_saturation();
            let reason = loop {
                tokio::select! {
                    reason = env.exited() => break reason,
                    Ok(()) = saturation.changed() => agent.bump(),
                }
            };
            agent.update(&env_id, |s| {
                if s.status != WireState::Draining {
                    s.status = WireState::Exited;
                    s.failure = Some(failure_of(&reason));
                }
            });
            drop(layers);
        });
    }

    /// The version's log directory; `None` (logged) for names that cannot be paths.
    fn log_target(&self, env_id: &str, req: &EnvironmentRequest) -> Option<crate::LogTarget> {
        match fleetfn_logs::version_dir(&self.cfg.logs_dir, &req.function_name, &req.version) {
            Ok(dir) => Some(crate::LogTarget {
                dir,
                limits: self.cfg.log_limits,
            }),
            Err(e) => {
                tracing::warn!(env = env_id, error = %e, "discarding the environment's log");
                None
            }
        }
    }

    fn fail(&self, env_id: &str, code: &str, reason: String) {
        tracing::warn!(env = env_id, code, %reason, "environment failed to start");
        self.update(env_id, |s| {
            s.status = WireState::Failed;
            s.failure = Some(Failure {
                reason_code: code.to_string(),
                reason,
            });
        });
    }

    fn report(&self) -> AgentReport {
        let environments = {
            let slots = self.slots.lock();
            slots
                .iter()
                .map(|(id, s)| {
                    (
                        id,
                        s,
                        s.env.as_ref().map(|e| e.resources()).unwrap_or_default(),
                    )
                })
                .map(|(id, s, usage)| EnvironmentStatus {
                    env_id: id.clone(),
                    function_name: s.req.function_name.clone(),
                    version: s.req.version.clone(),
                    state: s.status,
                    failure: s.failure.clone(),
                    in_flight: s
                        .env
                        .as_ref()
                        .map_or(0, |e| u32::try_from(e.in_flight()).unwrap_or(u32::MAX)),
                    parked: s
                        .env
                        .as_ref()
                        .map_or(0, |e| u32::try_from(e.parked()).unwrap_or(u32::MAX)),
                    max_concurrency: s.req.max_concurrency,
                    init_ms: s.init_ms,
                    memory_bytes: usage.memory_bytes,
                    cpu_usage_ns: usage.cpu_usage_ns,
                    memory_limit_bytes: u64::from(s.req.memory_mb) * 1024 * 1024,
                    vcpus: s.req.vcpus,
                    cpu_utilization: usage.cpu_utilization,
                    tmp_used_bytes: usage.tmp_used_bytes,
                    tmp_limit_bytes: u64::from(s.req.ephemeral_storage_mb) * 1024 * 1024,
                    placement: s.req.placement.clone(),
                    insights: usage.insights,
                })
                .collect()
        };
        AgentReport {
            instance_id: self.cfg.instance_id.clone(),
            zone: self.cfg.zone.clone(),
            revision: *self.revision.borrow(),
            isolation: self.cfg.isolation.clone(),
            environments,
            instance: Some(self.instance_usage()),
        }
    }

    fn instance_usage(&self) -> InstanceUsage {
        let shape = &self.cfg.instance;
        let usage = self.cfg.instance_slice.as_ref().and_then(|s| s.usage());
        InstanceUsage {
            instance_type: shape.instance_type.clone(),
            vcpus: shape.vcpus,
            memory_mib: shape.memory_mib,
            cpu_scale: shape.cpu_scale,
            cpu_usage_ns: usage.map(|u| u.1),
            memory_bytes: usage.map(|u| u.0),
        }
    }

    /// Stops every environment once no server has called for `grace` (checked every second,
    /// until `stop`): an agent cut off from every server serves nobody (no server routes to
    /// it), and by then the leader has replaced its environments elsewhere, so the host is
    /// freed. It keeps serving its API; a server that reaches it again sees it empty.
    pub fn spawn_orphan_guard(
        &self,
        grace: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let agent = self.clone();
        tokio::spawn(async move {
            let every = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let silent = agent.last_contact.lock().elapsed();
                if silent < grace || agent.slots.lock().is_empty() {
                    continue;
                }
                let slots: Vec<(String, Slot)> = agent.slots.lock().drain().collect();
                agent.bump();
                tracing::warn!(
                    environments = slots.len(),
                    silent_secs = silent.as_secs_f64(),
                    "no server has called this agent for over {:.0} s (--orphan-grace): stopping its environments",
                    grace.as_secs_f64()
                );
                for (_, slot) in slots {
                    if let Some(env) = slot.env {
                        let grace = Duration::from_secs(u64::from(slot.req.timeout_secs.max(1)));
                        tokio::spawn(async move { env.stop(grace).await });
                    }
                }
            }
        })
    }

    /// Stops every environment at once, giving in-flight invokes `grace` to finish (agent
    /// shutdown).
    pub async fn stop_all(&self, grace: Duration) {
        self.closing.cancel();
        let envs: Vec<Arc<Environment>> = self
            .slots
            .lock()
            .drain()
            .filter_map(|(_, slot)| slot.env)
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for env in envs {
            set.spawn(async move { env.stop(grace).await });
        }
        while set.join_next().await.is_some() {}
    }

    /// The HTTP API.
    pub fn router(&self) -> Router {
        // One shared handle: a request clones an `Arc`, not the agent's fields.
        let shared = Arc::new(self.clone());
        Router::new()
            .route("/v1/environments", get(list))
            .route("/v1/environments/{id}", put(put_env).delete(delete_env))
            .route("/v1/environments/{id}/invoke", post(invoke))
            .route("/v1/environments/{id}/credentials", put(put_credentials))
            .route("/v1/invoke-stream", get(invoke_stream))
            // Invoke payloads are up to 6 MB; the server checked that already.
            .layer(axum::extract::DefaultBodyLimit::max(7 * 1024 * 1024))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), auth))
            .with_state(shared)
    }
}

async fn auth(State(agent): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), agent.cfg.token.as_bytes()));
    if !ok {
        return (StatusCode::UNAUTHORIZED, "missing or wrong agent token").into_response();
    }
    // A server's call counts from when it starts until it ends: a long-poll in progress is
    // contact too.
    *agent.last_contact.lock() = tokio::time::Instant::now();
    let resp = next.run(req).await;
    *agent.last_contact.lock() = tokio::time::Instant::now();
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(serde::Deserialize)]
struct ListQuery {
    after: Option<u64>,
    wait_ms: Option<u64>,
}

async fn list(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<ListQuery>,
    headers: http::HeaderMap,
) -> Response {
    // A leader's poll carries its term: keep it if it is new (never refused: reading is
    // harmless, and followers poll without one).
    if let Some(term) = headers
        .get(fleetfn_proto::H_TERM)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.parse::<u64>().ok())
    {
        agent.note_term(term);
    }
    if let Some(after) = q.after {
        let mut rx = agent.revision.subscribe();
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(5000).min(30_000));
        tokio::select! {
            _ = tokio::time::timeout(wait, rx.wait_for(|rev| *rev > after)) => {}
            () = agent.closing.cancelled() => {}
        }
    }
    axum::Json(agent.report()).into_response()
}

/// A refusal (400 or 409) when the request comes from a leader older than one already heard
/// from (no term is term 0: `fleetfn serve`, whose agents never see one).
fn check_term(agent: &Agent, headers: &http::HeaderMap) -> Option<Response> {
    let term = match headers.get(fleetfn_proto::H_TERM) {
        None => 0,
        Some(v) => match v.to_str().ok().and_then(|t| t.parse::<u64>().ok()) {
            Some(t) => t,
            None => {
                return Some((StatusCode::BAD_REQUEST, "bad x-fleetfn-term").into_response());
            }
        },
    };
    let seen = agent.note_term(term);
    if term < seen {
        tracing::warn!(term, seen, "refused a start or stop from a former leader");
        return Some(
            (
                StatusCode::CONFLICT,
                format!("stale leader term {term}: this agent follows term {seen}"),
            )
                .into_response(),
        );
    }
    None
}

async fn put_env(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = check_term(&agent, &headers) {
        return refused;
    }
    let req: EnvironmentRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("bad environment request: {e}"),
            )
                .into_response();
        }
    };
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return (
            StatusCode::BAD_REQUEST,
            "environment ids are [A-Za-z0-9._-]+",
        )
            .into_response();
    }
    let fresh = {
        let mut s = agent.slots.lock();
        if s.contains_key(&id) {
            false
        } else {
            s.insert(
                id.clone(),
                Slot {
                    req: req.clone(),
                    status: WireState::Starting,
                    failure: None,
                    init_ms: None,
                    env: None,
                },
            );
            true
        }
    };
    if fresh {
        agent.bump();
        agent.start(id, req);
        StatusCode::ACCEPTED.into_response()
    } else {
        StatusCode::OK.into_response()
    }
}

async fn delete_env(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    headers: http::HeaderMap,
) -> Response {
    if let Some(refused) = check_term(&agent, &headers) {
        return refused;
    }
    let slot = agent.slots.lock().remove(&id);
    agent.bump();
    match slot {
        Some(slot) => {
            if let Some(env) = slot.env {
                let grace = Duration::from_secs(u64::from(slot.req.timeout_secs.max(1)));
                tokio::spawn(async move {
                    env.stop(grace).await;
                });
            }
            StatusCode::ACCEPTED.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `PUT /v1/environments/{id}/credentials`: renewed execution-role credentials, served to the
/// environment from now on. 404 for an unknown environment, 409 while it is still starting or
/// when it was started without credentials.
async fn put_credentials(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = check_term(&agent, &headers) {
        return refused;
    }
    let creds: fleetfn_proto::RoleCredentials = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not a credentials document: {e}"),
            )
                .into_response();
        }
    };
    let env = match agent.slots.lock().get(&id) {
        None => return StatusCode::NOT_FOUND.into_response(),
        Some(slot) => slot.env.clone(),
    };
    match env {
        Some(env) if env.set_credentials(&creds) => StatusCode::NO_CONTENT.into_response(),
        Some(_) => (
            StatusCode::CONFLICT,
            "the environment was started without credentials",
        )
            .into_response(),
        None => (StatusCode::CONFLICT, "the environment is still starting").into_response(),
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn invoke(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.contains_key(response::H_RESPONSE_MODE) {
        return invoke_streaming(&agent, &id, &headers, body).await;
    }
    let reply = agent
        .invoke(
            &id,
            header(&headers, H_REQUEST_ID),
            body,
            headers.get(H_CLIENT_CONTEXT).and_then(|v| v.to_str().ok()),
            header(&headers, H_TENANT_ID),
        )
        .await;
    reply_response(reply)
}

/// `POST /v1/environments/{id}/invoke` with `x-fleetfn-response-mode: streaming`: a response
/// the function streams goes back as it is written, framed as [`fleetfn_proto::response`]
/// describes; anything else is answered as any invoke.
async fn invoke_streaming(agent: &Agent, id: &str, headers: &HeaderMap, body: Bytes) -> Response {
    let reply = agent
        .invoke_with(
            id,
            header(headers, H_REQUEST_ID),
            body,
            headers.get(H_CLIENT_CONTEXT).and_then(|v| v.to_str().ok()),
            header(headers, H_TENANT_ID),
            true,
        )
        .await;
    let stream = match reply {
        Answer::Reply(reply) => return reply_response(reply),
        Answer::Stream(stream) => stream,
    };
    let mut resp = Response::new(axum::body::Body::new(FramedBody::new(stream.parts)));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(response::CONTENT_TYPE),
    );
    if let Some(ct) = stream
        .content_type
        .and_then(|ct| http::HeaderValue::from_str(&ct).ok())
    {
        h.insert(response::H_STREAM_CONTENT_TYPE, ct);
    }
    resp
}

/// The frames of a streamed reply, made from the environment's parts as they come: a DATA
/// frame's head, then its chunk as is (a chunk over [`response::MAX_FRAME_LEN`] goes as
/// several frames). Dropped with the connection, which drops the parts' receiver and so
/// abandons the invoke's response.
struct FramedBody {
    parts: tokio::sync::mpsc::Receiver<fleetfn_proto::StreamPart>,
    /// A chunk whose head was just sent.
    pending: Option<Bytes>,
    /// The rest of a chunk over the frame limit, still to be framed.
    rest: Option<Bytes>,
    ended: bool,
}

impl FramedBody {
    fn new(parts: tokio::sync::mpsc::Receiver<fleetfn_proto::StreamPart>) -> Self {
        Self {
            parts,
            pending: None,
            rest: None,
            ended: false,
        }
    }

    /// The head of a DATA frame for (up to the frame limit of) `chunk`, which follows it.
    fn data_head(&mut self, mut chunk: Bytes) -> Bytes {
        if chunk.len() > response::MAX_FRAME_LEN {
            self.rest = Some(chunk.split_off(response::MAX_FRAME_LEN));
        }
        let head = Bytes::copy_from_slice(&response::data_head(chunk.len()));
        self.pending = Some(chunk);
        head
    }
}

impl hyper::body::Body for FramedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if let Some(chunk) = self.pending.take() {
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))));
        }
        if let Some(rest) = self.rest.take() {
            let head = self.data_head(rest);
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(head))));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        let part = match self.parts.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(p) => p,
        };
        let frame = match part {
            Some(fleetfn_proto::StreamPart::Chunk(c)) => self.data_head(c),
            Some(fleetfn_proto::StreamPart::End(e)) => {
                self.ended = true;
                response::end_frame(e.as_ref())
            }
            // The environment's relay always sends an end; without one the body is cut short
            // and the server sees a truncated stream.
            None => {
                self.ended = true;
                return Poll::Ready(None);
            }
        };
        Poll::Ready(Some(Ok(hyper::body::Frame::data(frame))))
    }
}

fn reply_response(reply: InvokeReply) -> Response {
    match reply {
        InvokeReply::Done {
            payload,
            function_error,
        } => {
            let mut resp = payload.into_response();
            if let Some(fe) = function_error
                && let Ok(v) = http::HeaderValue::from_str(&fe)
            {
                resp.headers_mut().insert(H_FUNCTION_ERROR, v);
            }
            resp
        }
        InvokeReply::Rejected { reason, detail } => (
            StatusCode::TOO_MANY_REQUESTS,
            [(H_REJECT_REASON, reason.as_header())],
            detail,
        )
            .into_response(),
        InvokeReply::Gone => StatusCode::NOT_FOUND.into_response(),
        InvokeReply::Invalid { reason } => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

/// `GET /v1/invoke-stream` with `Upgrade: fleetfn-invoke/1`: switches the connection to the
/// invoke stream ([`fleetfn_proto::stream`]); the token was checked like on every call.
async fn invoke_stream(State(agent): State<Arc<Agent>>, mut req: Request) -> Response {
    let wanted = req.headers().get(http::header::UPGRADE).is_some_and(|v| {
        v.as_bytes()
            .eq_ignore_ascii_case(stream::PROTOCOL.as_bytes())
    });
    if !wanted {
        return (
            StatusCode::BAD_REQUEST,
            format!("this path upgrades to {} only", stream::PROTOCOL),
        )
            .into_response();
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => crate::stream::serve(agent, hyper_util::rt::TokioIo::new(io)).await,
            Err(e) => tracing::warn!(error = %e, "invoke stream upgrade failed"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (http::header::CONNECTION, "upgrade"),
            (http::header::UPGRADE, stream::PROTOCOL),
        ],
    )
        .into_response()
}

/// An invoke's answer: whole, or a stream.
enum Answer {
    Reply(InvokeReply),
    Stream(crate::OutputStream),
}

impl Agent {
    /// Runs one invoke on environment `env_id` (from the HTTP route or the invoke stream).
    /// `client_context` is the base64 the API received.
    pub(crate) async fn invoke(
        &self,
        env_id: &str,
        request_id: Option<String>,
        payload: Bytes,
        client_context: Option<&str>,
        tenant_id: Option<String>,
    ) -> InvokeReply {
        match self
            .invoke_with(
                env_id,
                request_id,
                payload,
                client_context,
                tenant_id,
                false,
            )
            .await
        {
            Answer::Reply(reply) => reply,
            // Only asked for with `streaming`.
            Answer::Stream(_) => InvokeReply::Invalid {
                reason: "unexpected stream".into(),
            },
        }
    }

    /// Runs one invoke, streaming its response when `streaming` and the function streams.
    async fn invoke_with(
        &self,
        env_id: &str,
        request_id: Option<String>,
        payload: Bytes,
        client_context: Option<&str>,
        tenant_id: Option<String>,
        streaming: bool,
    ) -> Answer {
        let env = self
            .slots
            .lock()
            .get(env_id)
            .and_then(|slot| slot.env.clone());
        let Some(env) = env else {
            return Answer::Reply(InvokeReply::Gone);
        };
        if env.state() != EnvState::Ready {
            return Answer::Reply(InvokeReply::Rejected {
                reason: ThrottleReason::Concurrency,
                detail: "environment not ready".into(),
            });
        }
        let client_context = client_context.and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
        });
        let input = InvokeInput {
            request_id: request_id
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            payload,
            client_context,
            tenant_id,
            trace_id: None,
        };
        let result = if streaming {
            env.invoke_streaming(input).await
        } else {
            env.invoke(input).await.map(crate::StreamedOutput::Buffered)
        };
        match result {
            Ok(crate::StreamedOutput::Buffered(out)) => Answer::Reply(InvokeReply::Done {
                payload: out.payload,
                function_error: out.function_error,
            }),
            Ok(crate::StreamedOutput::Streamed(stream)) => Answer::Stream(stream),
            Err(rejected) => Answer::Reply(match rejected.throttle_reason() {
                Some(reason) => InvokeReply::Rejected {
                    reason,
                    detail: rejected.to_string(),
                },
                None => InvokeReply::Invalid {
                    reason: rejected.to_string(),
                },
            }),
        }
    }

    /// A server called (an invoke stream's frames count too): the orphan guard's clock.
    pub(crate) fn touch(&self) {
        *self.last_contact.lock() = tokio::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk over the frame limit goes as several DATA frames the server's decoder takes.
    #[tokio::test]
    async fn a_chunk_over_the_frame_limit_is_split() {
        use hyper::body::Body as _;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let big = Bytes::from(vec![3u8; 2 * response::MAX_FRAME_LEN + 5]);
        tx.send(fleetfn_proto::StreamPart::Chunk(big.clone()))
            .await
            .unwrap();
        tx.send(fleetfn_proto::StreamPart::End(None)).await.unwrap();
        drop(tx);
        let mut body = std::pin::pin!(FramedBody::new(rx));
        let mut decoder = response::Decoder::default();
        let mut parts = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            decoder.push(frame.unwrap().data_ref().unwrap());
            while let Some(p) = decoder.next_part().unwrap() {
                parts.push(p);
            }
        }
        let lens: Vec<_> = parts
            .iter()
            .map(|p| match p {
                fleetfn_proto::StreamPart::Chunk(c) => Some(c.len()),
                fleetfn_proto::StreamPart::End(_) => None,
            })
            .collect();
        let max = response::MAX_FRAME_LEN;
        assert_eq!(lens, [Some(max), Some(max), Some(5), None]);
        let joined: Vec<u8> = parts
            .iter()
            .filter_map(|p| match p {
                fleetfn_proto::StreamPart::Chunk(c) => Some(c.to_vec()),
                fleetfn_proto::StreamPart::End(_) => None,
            })
            .flatten()
            .collect();
        assert_eq!(joined, big);
    }
}
