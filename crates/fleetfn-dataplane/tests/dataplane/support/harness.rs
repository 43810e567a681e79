//! [`Harness`]: a control plane over [`MemoryStore`] and artifacts in a temp dir, a data plane on
//! a [`FakeProvider`], the reconciler and the data plane running until the harness stops, and
//! helpers that let paused time run until a condition holds.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use fleetfn_contracts::{InvokeOutcome, InvokeRequest, Invoker};
use fleetfn_dataplane::{DataPlane, DataPlaneConfig};
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::types::{
    CapacityProviderConfig, CapacityProviderPermissionsConfig, CapacityProviderScalingConfig,
    CapacityProviderVpcConfig, CreateCapacityProviderRequest, CreateFunctionRequest, Environment,
    FunctionCode, FunctionConfiguration, FunctionScalingConfig, InstanceRequirements,
    LambdaManagedInstancesCapacityProviderConfig, PublishVersionRequest,
    PutFunctionScalingConfigRequest, UpdateFunctionCodeRequest,
};
use fleetfn_model::{LambdaError, Scope};
use fleetfn_server::{ControlPlane, ControlPlaneConfig, EnvKey};
use fleetfn_store::MemoryStore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::agent::FakeEnv;
use super::provider::FakeProvider;

/// The zones (subnets) of every capacity provider the harness creates.
pub const ZONES: [&str; 3] = ["subnet-a", "subnet-b", "subnet-c"];

/// A function to create.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub memory_mb: i64,
    /// `PerExecutionEnvironmentMaxConcurrency` (the runtime's default when `None`).
    pub max_concurrency: Option<i64>,
    pub timeout_secs: Option<i64>,
    pub env_vars: BTreeMap<String, String>,
    /// The function's code (a `bootstrap` file with this text).
    pub code: String,
}

impl Default for FunctionSpec {
    fn default() -> Self {
        Self {
            memory_mb: 2048,
            max_concurrency: None,
            timeout_secs: None,
            env_vars: BTreeMap::new(),
            code: "v1".into(),
        }
    }
}

/// A zip with one executable `bootstrap`, base64 as the API takes it.
fn zip_b64(body: &str) -> String {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        w.start_file("bootstrap", opts).expect("zip entry");
        w.write_all(body.as_bytes()).expect("zip write");
        w.finish().expect("zip finish");
    }
    base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
}

/// A function reference such as `f`, `f:1` or `f:$LATEST.PUBLISHED`.
pub fn fref(s: &str) -> FunctionRef {
    FunctionRef::parse(s, &Scope::default(), 256).expect("function reference")
}

/// The SHA-256 (hex) of a version's code, as environment requests carry it.
pub fn code_hex(cfg: &FunctionConfiguration) -> String {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&cfg.code_sha256)
        .expect("CodeSha256 is base64");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Invokes sent in the background by [`Harness::load`]; stops when dropped.
#[derive(Debug)]
pub struct Load {
    stop: CancellationToken,
    pub ok: Arc<AtomicU64>,
    pub throttled: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A control plane and a data plane on fakes, running under paused time.
pub struct Harness {
    pub cp: ControlPlane,
    pub dp: DataPlane,
    pub provider: FakeProvider,
    pub metrics: Arc<fleetfn_metrics::Metrics>,
    stop: CancellationToken,
    data_plane: Option<JoinHandle<()>>,
    reconciler: Option<JoinHandle<()>>,
    requests: u64,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// A harness whose data plane config `tune` adjusted.
    pub fn with_config(tune: impl FnOnce(&mut DataPlaneConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cp = ControlPlane::new(
            Arc::new(MemoryStore::new()),
            ControlPlaneConfig {
                scope: Scope::default(),
                artifacts_dir: dir.path().join("artifacts"),
                // The key is process-wide: every harness of this process uses the same one.
                env_key: EnvKey::from_bytes(&[7; fleetfn_server::secrets::KEY_LEN])
                    .expect("key length"),
            },
        )
        .expect("control plane");
        let provider = FakeProvider::new();
        let mut cfg = DataPlaneConfig::default();
        tune(&mut cfg);
        let metrics = cfg.metrics.clone();
        let dp = DataPlane::new(cp.clone(), Arc::new(provider.clone()), cfg);
        let stop = CancellationToken::new();
        let reconciler = cp.spawn_reconciler(stop.clone());
        let data_plane = dp.spawn(stop.clone());
        Self {
            cp,
            dp,
            provider,
            metrics,
            stop,
            data_plane: Some(data_plane),
            reconciler: Some(reconciler),
            requests: 0,
            _dir: dir,
        }
    }

    /// Stops the data plane (as `fleetfn serve` does at shutdown) and waits for it.
    pub async fn shutdown(&mut self) {
        self.stop.cancel();
        for task in [self.data_plane.take(), self.reconciler.take()]
            .into_iter()
            .flatten()
        {
            tokio::time::timeout(Duration::from_secs(120), task)
                .await
                .expect("the data plane stops within 120 s")
                .expect("the data plane task does not panic");
        }
    }

    /// A new data plane (a new leader's) over the same control plane and provider, after
    /// [`Harness::shutdown`]: it adopts what the provider lists as running.
    pub fn restart(&mut self) {
        self.stop = CancellationToken::new();
        self.dp = DataPlane::new(
            self.cp.clone(),
            Arc::new(self.provider.clone()),
            DataPlaneConfig::default(),
        );
        self.reconciler = Some(self.cp.spawn_reconciler(self.stop.clone()));
        self.data_plane = Some(self.dp.spawn(self.stop.clone()));
    }

    /// A data plane that only routes, following the provider's instances; stops with the
    /// harness.
    pub fn follower(&self) -> DataPlane {
        let dp = DataPlane::follower(
            self.cp.clone(),
            Arc::new(self.provider.clone()),
            DataPlaneConfig::default(),
        );
        dp.spawn_follower(self.stop.clone());
        dp
    }

    /// Lets (paused) time run until `cond` holds, checking every 100 ms; panics after `limit`.
    /// Returns how long it took.
    pub async fn until<F, Fut>(&self, what: &str, limit: Duration, mut cond: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if cond().await {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} of (paused) time waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Lets `d` of (paused) time pass.
    pub async fn run_for(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// A capacity provider over [`ZONES`]; returns its ARN.
    pub async fn capacity_provider(&self, name: &str, max_vcpu: Option<i64>) -> String {
        self.capacity_provider_of(name, max_vcpu, None).await
    }

    /// A capacity provider over [`ZONES`] limited to the `allowed` instance types.
    pub async fn capacity_provider_of(
        &self,
        name: &str,
        max_vcpu: Option<i64>,
        allowed: Option<&[&str]>,
    ) -> String {
        let p = self
            .cp
            .create_capacity_provider(CreateCapacityProviderRequest {
                capacity_provider_name: Some(name.into()),
                vpc_config: Some(CapacityProviderVpcConfig {
                    subnet_ids: ZONES.iter().map(|z| (*z).to_string()).collect(),
                    security_group_ids: vec![],
                }),
                permissions_config: Some(CapacityProviderPermissionsConfig {
                    capacity_provider_operator_role_arn: "arn:aws:iam::000000000000:role/op".into(),
                }),
                instance_requirements: allowed.map(|types| InstanceRequirements {
                    allowed_instance_types: Some(types.iter().map(|t| (*t).to_string()).collect()),
                    ..Default::default()
                }),
                capacity_provider_scaling_config: max_vcpu.map(|n| CapacityProviderScalingConfig {
                    max_vcpu_count: Some(n),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create capacity provider");
        p.capacity_provider_arn
    }

    pub async fn create_function(&self, name: &str, cp_arn: &str, spec: &FunctionSpec) {
        self.cp
            .create_function(CreateFunctionRequest {
                function_name: Some(name.into()),
                runtime: Some("provided.al2023".into()),
                role: Some("arn:aws:iam::000000000000:role/fn".into()),
                memory_size: Some(spec.memory_mb),
                timeout: spec.timeout_secs,
                environment: (!spec.env_vars.is_empty()).then(|| Environment {
                    variables: spec.env_vars.clone(),
                }),
                code: Some(FunctionCode {
                    zip_file: Some(zip_b64(&spec.code)),
                    ..Default::default()
                }),
                capacity_provider_config: Some(CapacityProviderConfig {
                    lambda_managed_instances_capacity_provider_config: Some(
                        LambdaManagedInstancesCapacityProviderConfig {
                            capacity_provider_arn: Some(cp_arn.into()),
                            per_execution_environment_max_concurrency: spec.max_concurrency,
                            memory_gib_per_vcpu: None,
                        },
                    ),
                }),
                ..Default::default()
            })
            .await
            .expect("create function");
    }

    /// Publishes a numbered version.
    pub async fn publish(&self, name: &str) -> FunctionConfiguration {
        self.cp
            .publish_version(&fref(name), PublishVersionRequest::default())
            .await
            .expect("publish version")
    }

    /// Publishes to `$LATEST.PUBLISHED`.
    pub async fn publish_latest(&self, name: &str) -> FunctionConfiguration {
        self.cp
            .publish_version(
                &fref(name),
                PublishVersionRequest {
                    publish_to: Some("LATEST_PUBLISHED".into()),
                    ..Default::default()
                },
            )
            .await
            .expect("publish $LATEST.PUBLISHED")
    }

    /// `UpdateFunctionCode` of `$LATEST`; returns its configuration (with the new code hash).
    pub async fn update_code(&self, name: &str, code: &str) -> FunctionConfiguration {
        self.cp
            .update_function_code(
                &fref(name),
                UpdateFunctionCodeRequest {
                    zip_file: Some(zip_b64(code)),
                    ..Default::default()
                },
            )
            .await
            .expect("update function code")
    }

    /// `PutFunctionScalingConfig` on a qualified version (`f:1`).
    pub async fn scaling(&self, qualified: &str, min: Option<i64>, max: Option<i64>) {
        self.cp
            .put_function_scaling_config(
                &fref(qualified),
                PutFunctionScalingConfigRequest {
                    function_scaling_config: Some(FunctionScalingConfig {
                        min_execution_environments: min,
                        max_execution_environments: max,
                    }),
                },
            )
            .await
            .expect("put function scaling config");
    }

    pub async fn config(&self, qualified: &str) -> FunctionConfiguration {
        self.cp
            .get_function_configuration(&fref(qualified))
            .await
            .expect("get function configuration")
    }

    /// Waits until the version's `State` is `state` (and returns its configuration).
    pub async fn until_state(
        &self,
        qualified: &str,
        state: fleetfn_model::State,
        limit: Duration,
    ) -> FunctionConfiguration {
        self.until(&format!("{qualified} is {state}"), limit, || async {
            self.config(qualified).await.state == state
        })
        .await;
        self.config(qualified).await
    }

    /// One provider + one function (`f`) published as version 1 and Active, with `Min` envs
    /// Ready on the agents. Returns the provider's ARN.
    pub async fn active_function(&self, spec: &FunctionSpec) -> String {
        let arn = self.capacity_provider("cp", None).await;
        self.create_function("f", &arn, spec).await;
        self.publish("f").await;
        self.until_state("f:1", fleetfn_model::State::Active, Duration::from_secs(60))
            .await;
        arn
    }

    /// An invoke through the data plane's `Invoker`, as the API sends it.
    pub async fn invoke(
        &mut self,
        qualified: &str,
        payload: &str,
    ) -> Result<InvokeOutcome, LambdaError> {
        self.requests += 1;
        let req = self.request(qualified, payload, self.requests).await?;
        self.dp.invoke(req).await
    }

    /// An invoke through the data plane's `Invoker::invoke_stream`, as the API sends
    /// `InvokeWithResponseStream`.
    pub async fn invoke_stream(
        &mut self,
        qualified: &str,
        payload: &str,
    ) -> Result<fleetfn_contracts::StreamingOutcome, LambdaError> {
        self.requests += 1;
        let req = self.request(qualified, payload, self.requests).await?;
        self.dp.invoke_stream(req).await
    }

    /// A sample of a series labelled with the function only (0 when it does not exist).
    pub fn function_metric(&self, name: &str, function: &str) -> f64 {
        let text = self.metrics.render().expect("metrics render");
        let f = format!("function=\"{function}\"");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&f))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Starts an invoke in the background; it has reached the router (and holds its place in
    /// flight) once the returned handle exists and paused time has moved a little.
    pub async fn spawn_invoke(
        &mut self,
        qualified: &str,
        payload: &str,
    ) -> JoinHandle<Result<InvokeOutcome, LambdaError>> {
        self.requests += 1;
        let req = self
            .request(qualified, payload, self.requests)
            .await
            .expect("invoke target resolves");
        let dp = self.dp.clone();
        let handle = tokio::spawn(async move { dp.invoke(req).await });
        // Let it run up to its agent call.
        tokio::time::sleep(Duration::from_millis(1)).await;
        handle
    }

    /// `workers` loops invoking `qualified` back to back, each waiting `pause` after every
    /// invoke (so paused time always moves).
    pub fn load(&self, qualified: &str, workers: usize, pause: Duration) -> Load {
        let load = Load {
            stop: CancellationToken::new(),
            ok: Arc::default(),
            throttled: Arc::default(),
            failed: Arc::default(),
        };
        for w in 0..workers {
            let (cp, dp, stop) = (self.cp.clone(), self.dp.clone(), load.stop.clone());
            let (ok, throttled, failed) =
                (load.ok.clone(), load.throttled.clone(), load.failed.clone());
            let target = fref(qualified);
            tokio::spawn(async move {
                for n in 0u64.. {
                    if stop.is_cancelled() {
                        return;
                    }
                    let outcome = match cp.resolve_invoke_target(&target, 0.5).await {
                        Ok(version) => {
                            dp.invoke(InvokeRequest {
                                request_id: format!("load-{w}-{n}"),
                                version,
                                payload: Bytes::from_static(b"load"),
                                client_context: None,
                                tenant_id: None,
                            })
                            .await
                        }
                        Err(e) => Err(e),
                    };
                    match outcome {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) if e.kind == fleetfn_model::ErrorKind::TooManyRequests => {
                            throttled.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(pause).await;
                }
            });
        }
        load
    }

    /// The id the next invoke gets.
    pub fn next_request_id(&self) -> String {
        format!("req-{:06}", self.requests + 1)
    }

    /// The invoke request for `qualified` (resolving the version as the API does).
    pub async fn request(
        &self,
        qualified: &str,
        payload: &str,
        n: u64,
    ) -> Result<InvokeRequest, LambdaError> {
        let version = self.cp.resolve_invoke_target(&fref(qualified), 0.5).await?;
        Ok(InvokeRequest {
            request_id: format!("req-{n:06}"),
            version,
            payload: Bytes::from(payload.to_string()),
            client_context: None,
            tenant_id: None,
        })
    }

    /// Environments on running agents, with their agent's zone and instance id.
    pub fn envs(&self) -> Vec<(FakeEnv, String, String)> {
        self.provider
            .running()
            .into_iter()
            .flat_map(|a| {
                let zone = a.zone().to_string();
                let id = a.instance_id().to_string();
                a.envs()
                    .into_iter()
                    .map(move |e| (e, zone.clone(), id.clone()))
            })
            .collect()
    }

    /// Ready environments of function `function` on running agents.
    pub fn ready(&self, function: &str) -> Vec<(FakeEnv, String, String)> {
        self.envs()
            .into_iter()
            .filter(|(e, _, _)| {
                e.request.function_name == function && e.state == fleetfn_proto::EnvState::Ready
            })
            .collect()
    }

    /// The answered try of an invoke (the agent's record), if an agent answered it.
    pub fn served(&self, request_id: &str) -> Option<super::agent::InvokeRecord> {
        self.provider
            .agents()
            .iter()
            .flat_map(super::FakeAgent::invokes)
            .find(|r| r.request_id == request_id && r.answer == "Echo")
    }

    /// Every try of an invoke, on any agent.
    pub fn tries(&self, request_id: &str) -> Vec<super::agent::InvokeRecord> {
        self.provider
            .agents()
            .iter()
            .flat_map(super::FakeAgent::invokes)
            .filter(|r| r.request_id == request_id)
            .collect()
    }

    /// Per zone, how many of `envs` are in it (every zone of [`ZONES`] listed).
    pub fn per_zone(envs: &[(FakeEnv, String, String)]) -> BTreeMap<String, usize> {
        let mut m: BTreeMap<String, usize> = ZONES.iter().map(|z| ((*z).to_string(), 0)).collect();
        for (_, zone, _) in envs {
            *m.entry(zone.clone()).or_default() += 1;
        }
        m
    }

    /// A sample of the data plane's Prometheus registry, e.g. `fleetfn_memory_throttles_total`
    /// of function `f` version `1`; 0 when the series does not exist.
    pub fn metric(&self, name: &str, function: &str, version: &str) -> f64 {
        let text = self.metrics.render().expect("metrics render");
        let f = format!("function=\"{function}\"");
        let v = format!("version=\"{version}\"");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&f) && l.contains(&v))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}
