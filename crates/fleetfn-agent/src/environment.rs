//! One execution environment: its runtime process, its Runtime API endpoint, its state and
//! its invokes.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fleetfn_proto::{StreamError, StreamPart};
use fleetfn_runtime_api::{
    ERROR_TYPE_EXIT, ExtensionContext, ExtensionInitError, ExtensionRecord, InitError, InitPhase,
    InitReport, InitReportMetrics, InitRuntimeDone, InitStart, Invocation, Outcome, PlatformEvent,
    Rejected as ApiRejected, ReportMetrics, ResponseTiming, RuntimeApi, RuntimeApiConfig,
    RuntimeDone, RuntimeDoneMetrics, ShutdownReason, Span, Status, StreamPart as ApiPart,
    TelemetryConnector, TelemetryRecord, TraceContext,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admission::{self, Fractions, ResourceView, Sampled};
use crate::error::{InitFailure, InitReasonCode, Rejected, Resource, StartError};
use crate::logs::{self, InFlightIds, LogSink, platform_record};
use crate::process::{
    ProcTreeAccounting, ResourceAccounting, TmpStorage, describe_exit, dir_usage_bytes,
    fs_usage_bytes, killed_by_sigkill, signal_group,
};
use crate::runtime::{LaunchContext, PreparedRuntime, RuntimeProvider, launch_command};
use crate::spec::{EnvironmentSpec, InvokeInput, InvokeOutput};

/// Error type of an invoke whose environment was killed for using too much memory.
pub const ERROR_TYPE_OUT_OF_MEMORY: &str = "Runtime.OutOfMemory";

/// Error type of an invoke that hit its timeout.
pub const ERROR_TYPE_TIMEOUT: &str = "Sandbox.Timedout";

/// `X-Amz-Function-Error` of every failed invoke.
pub const FUNCTION_ERROR_UNHANDLED: &str = "Unhandled";

/// How long the runtime gets between `SIGTERM` and `SIGKILL` when it is stopped.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// Error type of the invokes in flight when an external extension of their environment
/// exited (the environment is then replaced), and of an extension's crash during init.
pub const ERROR_TYPE_EXTENSION_CRASH: &str = fleetfn_runtime_api::ERROR_TYPE_EXTENSION_CRASH;

/// How long external extensions get to finish after their `SHUTDOWN` event (Lambda: 2 s
/// with external extensions), before the runtime gets `SIGTERM`.
pub const EXTENSIONS_SHUTDOWN: Duration = Duration::from_secs(2);

/// How long the agent waits for the sandbox's line naming the extension that exited, once
/// the sandbox has exited with [`fleetfn_sandbox::EXTENSION_EXIT_CODE`].
const EXTENSION_LINE_GRACE: Duration = Duration::from_secs(1);

/// The environment's `/etc/hosts` (in its directory), as Lambda's: extensions address their
/// Telemetry API listeners as `sandbox.localdomain`.
const HOSTS_FILE: &str = "hosts";
const HOSTS: &str = "127.0.0.1 localhost sandbox.localdomain sandbox\n::1 localhost\n";

/// How long the agent keeps reading a dead runtime's stdout/stderr (a process that left the
/// process group may still hold them).
/// How long an invoke waits for a runtime worker that is between its last answer and its next
/// `/next` when the environment has concurrency to spare.
const REPARK_GRACE: Duration = Duration::from_millis(20);
const DRAIN_OUTPUT: Duration = Duration::from_secs(2);

/// How often resource use is sampled while the runtime lives.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// CPU use is measured over the last second, refreshed at every sample: an environment at its
/// CPU ceiling refuses invokes for a quarter of a second at a time, not a whole second (which
/// shifted its whole share onto the other environments at once).
const CPU_WINDOW: Duration = Duration::from_secs(1);
/// `/tmp` and the Lambda Insights counters are read at every this many samples (once a second).
const FULL_SAMPLE_EVERY: u32 = 4;

/// Most directory entries one sample of a host `/tmp` visits (a lower bound beyond that).
const MAX_TMP_WALK_ENTRIES: usize = 10_000;

const MIB: u64 = 1024 * 1024;

/// Where an environment is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvState {
    /// The runtime is initializing: no `/next` has been parked yet.
    Starting,
    /// At least one runtime worker is polling `/next`; invokes are admitted.
    Ready,
    /// Stopping: new invokes are rejected, in-flight ones finish.
    Draining,
    /// The runtime is gone and the environment's resources are released.
    Exited(ExitReason),
}

/// Why an environment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// It never became ready.
    InitFailed(InitFailure),
    /// The runtime exited (or was killed) after it was ready; replace the environment.
    Crashed {
        /// `Runtime.ExitError` or `Runtime.OutOfMemory`.
        error_type: String,
        /// `Runtime exited with error: exit status 1`.
        message: String,
    },
    /// [`Environment::stop`] (or dropping the [`Environment`]) ended it.
    Stopped,
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InitFailed(e) => write!(f, "init failed: {e}"),
            Self::Crashed {
                error_type,
                message,
            } => write!(f, "{error_type}: {message}"),
            Self::Stopped => f.write_str("stopped"),
        }
    }
}

struct Inner {
    spec: EnvironmentSpec,
    /// The token of the credentials endpoint, when the environment was started with them.
    credentials_token: Option<String>,
    api: RuntimeApi,
    pid: u32,
    state: watch::Sender<EnvState>,
    /// Invokes whose callers are waiting for a result.
    active: watch::Sender<usize>,
    ids: Arc<InFlightIds>,
    stopping: AtomicBool,
    /// The runtime process has been waited for; its pid may be reused, so never signal it.
    reaped: AtomicBool,
    init_duration: OnceLock<Duration>,
    logs: LogSink,
    accounting: Arc<dyn ResourceAccounting>,
    /// Where `/tmp` is, for the disk ceiling.
    tmp: TmpStorage,
    /// The last resource sample and its admission verdict.
    sampled: Sampled,
    /// The resource at its ceiling, published on every change.
    saturation: watch::Sender<Option<Resource>>,
    env_dir: PathBuf,
    cancel: CancellationToken,
    /// External extensions (names in `/opt/extensions`), started before the runtime.
    extensions: Vec<String>,
    /// Lets the runtime start once the extensions are ready; tells the sandbox when the
    /// environment stops. `None` without extensions.
    gate: Option<crate::process::Gate>,
    /// The extension whose exit ended the sandbox, and how it ended (read from the sandbox's
    /// stderr line).
    extension_exit: watch::Sender<Option<(String, String)>>,
    /// Connections into the environment's network (telemetry deliveries), closed with it.
    connect: Option<crate::process::Connect>,
    /// Ends accepting on the log socket of the runtime's workers (when it has one).
    log_stop: CancellationToken,
    /// The launcher's reservation (network namespace, uid slot): last, so it is released
    /// after everything above.
    _hold: Option<crate::process::Hold>,
}

impl Inner {
    fn signal(&self, sig: Signal) {
        if self.reaped.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = signal_group(self.pid, sig) {
            tracing::warn!(env_id = self.spec.env_id, pid = self.pid, ?sig, error = %e, "signalling the runtime failed");
        }
    }

    /// Signals the launched process alone (the sandbox's supervisor), not its group.
    fn signal_leader(&self, sig: Signal) {
        if self.reaped.load(Ordering::SeqCst) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).unwrap_or(i32::MAX));
        if let Err(e) = nix::sys::signal::kill(pid, sig) {
            tracing::warn!(env_id = self.spec.env_id, pid = self.pid, ?sig, error = %e, "signalling the runtime failed");
        }
    }

    /// Peak memory as of the last periodic sample: reading `/proc` or a cgroup on every
    /// invoke would cost more than the rest of the agent's work for it.
    fn peak_memory_mb(&self) -> u64 {
        self.accounting
            .last_peak_memory_bytes()
            .map_or(0, |b| b.div_ceil(MIB))
    }

    fn set_state(&self, new: EnvState) {
        self.state.send_replace(new);
    }

    /// Bytes in use in the environment's `/tmp` (blocking: call from the sampler).
    fn tmp_used_bytes(&self) -> Option<u64> {
        match self.tmp {
            TmpStorage::HostDir => dir_usage_bytes(&self.env_dir.join("tmp"), MAX_TMP_WALK_ENTRIES),
            TmpStorage::PrivateTmpfs { size_bytes } => {
                // The sandboxed runtime is the helper's child; both see the private /tmp once
                // the sandbox is built.
                let pid = crate::process::tree_pids(Path::new("/proc"), self.pid)
                    .into_iter()
                    .find(|p| *p != self.pid)
                    .unwrap_or(self.pid);
                let (used, size) = fs_usage_bytes(&PathBuf::from(format!("/proc/{pid}/root/tmp")))?;
                // Before the sandbox's /tmp is mounted that path is the host's /tmp: trust
                // only a filesystem of the configured size.
                (size.abs_diff(size_bytes) <= MIB).then_some(used)
            }
        }
    }
}

/// The rejection of an invoke to a Ready environment whose last sample is at a ceiling
/// (`verdict`), before dispatch. Concurrency is checked first, so with no idle worker either
/// it is a concurrency rejection. `None` without a verdict: dispatch decides (no idle worker
/// is a concurrency rejection there). `idle_workers` is only asked when at a ceiling.
fn ceiling_rejection(
    verdict: Option<(Resource, u32)>,
    idle_workers: impl FnOnce() -> usize,
    max_concurrency: u32,
) -> Option<Rejected> {
    let (resource, percent) = verdict?;
    Some(if idle_workers() == 0 {
        Rejected::Busy { max_concurrency }
    } else {
        Rejected::Saturated {
            resource,
            percent,
            ceiling_percent: admission::percent(admission::ceiling(resource)),
        }
    })
}

/// The rejection of an invoke that found no parked worker with concurrency to spare and waited
/// [`REPARK_GRACE`] for one (`back`: one came). A worker that does not come back while the
/// environment's cgroup is running out of CPU quota (`cpu_throttled`) or is at its CPU ceiling
/// is held by the CPU allotment, not by the concurrency setting: a CPU rejection. Otherwise
/// `None`, and dispatch decides (no idle worker there is a concurrency rejection: a runtime
/// that runs fewer workers than `AWS_LAMBDA_MAX_CONCURRENCY`, or slow ones).
fn starved_rejection(
    back: bool,
    in_flight: usize,
    max_concurrency: u32,
    cpu_throttled: bool,
    verdict: Option<(Resource, u32)>,
) -> Option<Rejected> {
    let cpu_bound = cpu_throttled || matches!(verdict, Some((Resource::Cpu, _)));
    (!back && in_flight < max_concurrency as usize && cpu_bound).then(|| Rejected::CpuStarved {
        waited_ms: u64::try_from(REPARK_GRACE.as_millis()).unwrap_or(u64::MAX),
        in_flight,
        max_concurrency,
    })
}

/// What resource sampling carries from one sample to the next.
#[derive(Debug, Default)]
struct Sampler {
    /// CPU readings (time, cumulative ns) of the last [`CPU_WINDOW`], oldest first.
    cpu: std::collections::VecDeque<(tokio::time::Instant, u64)>,
    /// Samples taken since the window last restarted.
    taken: u32,
    tmp_used: Option<u64>,
    insights: fleetfn_proto::EnvInsights,
    /// Throttled CFS periods of the environment's cgroup at the last sample.
    throttled_periods: Option<u64>,
}

impl Sampler {
    /// Forgets the CPU readings (at Ready: init's CPU burst must not read as a saturated
    /// environment); the next sample is a full one.
    fn restart(&mut self) {
        self.cpu.clear();
        self.taken = 0;
        self.throttled_periods = None;
    }
}

/// Adds a cumulative CPU reading and gives the CPU time and wall time since the newest
/// earlier reading that is at least `window` old (older ones are dropped); `None` until one
/// is.
fn cpu_over_window(
    readings: &mut std::collections::VecDeque<(tokio::time::Instant, u64)>,
    now: tokio::time::Instant,
    cpu_ns: u64,
    window: Duration,
) -> Option<(u64, Duration)> {
    while readings.len() >= 2 && now.saturating_duration_since(readings[1].0) >= window {
        readings.pop_front();
    }
    let base = readings
        .front()
        .copied()
        .filter(|(then, _)| now.saturating_duration_since(*then) >= window);
    readings.push_back((now, cpu_ns));
    base.map(|(then, before)| {
        (
            cpu_ns.saturating_sub(before),
            now.saturating_duration_since(then),
        )
    })
}

/// Takes one resource sample (off the invoke path) and publishes it with its admission
/// verdict: memory and CPU every time, `/tmp` and the Insights counters every
/// [`FULL_SAMPLE_EVERY`] samples.
async fn sample_resources(inner: &Arc<Inner>, sampler: &mut Sampler) {
    let full = sampler.taken.is_multiple_of(FULL_SAMPLE_EVERY);
    sampler.taken = sampler.taken.wrapping_add(1);
    let i = Arc::clone(inner);
    let Ok((usage, throttled_periods, full_read)) = tokio::task::spawn_blocking(move || {
        let usage = i.accounting.sample();
        let throttled_periods = i.accounting.cpu_throttled_periods();
        let full_read = full.then(|| {
            let peak = i.accounting.last_peak_memory_bytes();
            let insights = crate::insights::read(&crate::insights::Roots::system(), i.pid, peak);
            (i.tmp_used_bytes(), insights)
        });
        (usage, throttled_periods, full_read)
    })
    .await
    else {
        return;
    };
    inner.sampled.set_cpu_throttled(matches!(
        (sampler.throttled_periods, throttled_periods),
        (Some(before), Some(now)) if now > before
    ));
    sampler.throttled_periods = throttled_periods;
    if let Some((tmp_used, insights)) = full_read {
        sampler.tmp_used = tmp_used;
        sampler.insights = insights;
    }
    let (tmp_used, insights) = (sampler.tmp_used, sampler.insights);
    let now = tokio::time::Instant::now();
    let spec = &inner.spec;
    let cpu_utilization = usage
        .and_then(|(_, ns)| cpu_over_window(&mut sampler.cpu, now, ns, CPU_WINDOW))
        .and_then(|(used, over)| admission::cpu_fraction(used, over, spec.cpu_allotment()));
    let fractions = Fractions {
        cpu: cpu_utilization,
        memory: usage
            .and_then(|(mem, _)| admission::fraction(mem, u64::from(spec.memory_mb) * MIB)),
        disk: tmp_used
            .and_then(|t| admission::fraction(t, u64::from(spec.ephemeral_storage_mb) * MIB)),
    };
    let saturated = admission::over_ceiling(&fractions).map(|(r, f)| (r, admission::percent(f)));
    inner.sampled.publish(&ResourceView {
        memory_bytes: usage.map(|u| u.0),
        cpu_usage_ns: usage.map(|u| u.1),
        cpu_utilization,
        tmp_used_bytes: tmp_used,
        saturated,
        insights,
    });
    let resource = saturated.map(|(r, _)| r);
    inner.saturation.send_if_modified(|cur| {
        let changed = *cur != resource;
        if changed {
            tracing::info!(env_id = spec.env_id, from = ?*cur, to = ?resource, "admission ceiling changed");
            *cur = resource;
        }
        changed
    });
}

/// A running execution environment. Dropping it kills the runtime's process group.
pub struct Environment {
    inner: Arc<Inner>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("env_id", &self.inner.spec.env_id)
            .field("pid", &self.inner.pid)
            .field("state", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Environment {
    /// Starts an environment: prepares its runtime, binds its Runtime API endpoint on
    /// `127.0.0.1:0`, creates its scratch directory and launches the runtime process. Returns
    /// while the runtime initializes ([`EnvState::Starting`]); await [`Environment::ready`].
    pub async fn start(
        spec: EnvironmentSpec,
        provider: &RuntimeProvider,
    ) -> Result<Environment, StartError> {
        validate_spec(&spec)?;
        let prepared = provider.prepare(&spec.runtime).await?;
        let env_dir = provider.config().env_root.join(&spec.env_id);
        let tmp_dir = env_dir.join("tmp");
        let extensions = {
            let (dir, tmp) = (env_dir.clone(), tmp_dir.clone());
            let opt = spec.opt_dir.clone();
            tokio::task::spawn_blocking(move || {
                remove_dir_if_present(&dir)?;
                std::fs::create_dir_all(&tmp)?;
                std::fs::write(dir.join(HOSTS_FILE), HOSTS)?;
                opt.map_or_else(|| Ok(Vec::new()), |o| crate::layers::list_extensions(&o))
            })
            .await
            .map_err(|e| StartError::io("preparing the environment directory", e.into()))?
            .map_err(|e| {
                StartError::io(
                    format!("preparing the environment directory {}", env_dir.display()),
                    e,
                )
            })?
        };
        match launch(
            spec,
            provider,
            &prepared,
            env_dir.clone(),
            &tmp_dir,
            extensions,
        )
        .await
        {
            Ok(env) => Ok(env),
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || remove_dir_if_present(&env_dir)).await;
                Err(e)
            }
        }
    }

    /// Serves renewed execution-role credentials from now on; `false` when the environment was
    /// started without credentials (its processes have no endpoint to read them from).
    pub fn set_credentials(&self, c: &fleetfn_proto::RoleCredentials) -> bool {
        match &self.inner.credentials_token {
            Some(token) => {
                self.inner
                    .api
                    .set_credentials(token, credentials_document(c));
                true
            }
            None => false,
        }
    }

    /// The spec this environment runs.
    pub fn spec(&self) -> &EnvironmentSpec {
        &self.inner.spec
    }

    /// Pid of the runtime process (leader of its own process group).
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// `AWS_LAMBDA_RUNTIME_API` of this environment.
    pub fn runtime_api_addr(&self) -> SocketAddr {
        self.inner.api.local_addr()
    }

    /// The current state.
    pub fn state(&self) -> EnvState {
        self.inner.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<EnvState> {
        self.inner.state.subscribe()
    }

    /// `AWS_LAMBDA_MAX_CONCURRENCY`.
    pub fn max_concurrency(&self) -> u32 {
        self.inner.spec.max_concurrency
    }

    /// Invokes handed to the runtime and not answered yet, including timed-out ones the
    /// runtime is still working on: the runtime workers in use.
    pub fn in_flight(&self) -> usize {
        self.inner.api.in_flight()
    }

    /// Memory in use (bytes) and CPU time used (ns), read now, when the environment's
    /// accounting can tell.
    pub fn usage(&self) -> Option<(u64, u64)> {
        self.inner.accounting.usage()
    }

    /// Resource use as of the last periodic sample (about once a second), with the admission
    /// verdict.
    pub fn resources(&self) -> ResourceView {
        self.inner.sampled.view()
    }

    /// A receiver that sees every change of the resource at its admission ceiling.
    pub fn watch_saturation(&self) -> watch::Receiver<Option<Resource>> {
        self.inner.saturation.subscribe()
    }

    /// Idle runtime workers: `/next` long polls parked right now.
    pub fn parked(&self) -> usize {
        self.inner.api.parked()
    }

    /// Invokes whose callers are waiting for a result (in flight and not timed out).
    pub fn active_invokes(&self) -> usize {
        *self.inner.active.borrow()
    }

    /// Waits until `pred(parked())` holds; returns that count.
    pub async fn wait_parked(&self, pred: impl FnMut(usize) -> bool) -> usize {
        self.inner.api.wait_parked(pred).await
    }

    /// Waits until `pred(active_invokes())` holds; returns that count.
    pub async fn wait_active(&self, mut pred: impl FnMut(usize) -> bool) -> usize {
        let mut rx = self.inner.active.subscribe();
        loop {
            let n = *rx.borrow_and_update();
            if pred(n) {
                return n;
            }
            // The sender lives in `inner`, which `self` keeps alive.
            let _ = rx.changed().await;
        }
    }

    /// How long init took (launch until the first parked `/next`), once ready.
    pub fn init_duration(&self) -> Option<Duration> {
        self.inner.init_duration.get().copied()
    }

    /// Resolves with the init duration once the environment is ready, or with why it never
    /// will be (`/init/error` → `FunctionError.RuntimeInitError`, exit before ready → same,
    /// init timeout → `FunctionError.InitTimeout`).
    pub async fn ready(&self) -> Result<Duration, InitFailure> {
        let mut rx = self.inner.state.subscribe();
        loop {
            {
                let state = rx.borrow_and_update();
                if let Some(d) = self.init_duration() {
                    return Ok(d);
                }
                match &*state {
                    EnvState::Exited(ExitReason::InitFailed(f)) => return Err(f.clone()),
                    EnvState::Exited(other) => {
                        return Err(InitFailure::new(
                            InitReasonCode::RuntimeInitError,
                            format!("The environment ended before it was ready: {other}"),
                        ));
                    }
                    EnvState::Starting | EnvState::Ready | EnvState::Draining => {}
                }
            }
            let _ = rx.changed().await;
        }
    }

    /// Waits until the environment has exited and released its resources.
    pub async fn exited(&self) -> ExitReason {
        let mut rx = self.inner.state.subscribe();
        wait_exited(&mut rx).await
    }

    /// Runs one invoke. Never queues: without an idle runtime worker the invoke is rejected at
    /// once, and so it is while the last resource sample is at a ceiling (memory, disk, cpu:
    /// [`crate::admission`]). A timeout answers the caller with a `Sandbox.Timedout` error but
    /// leaves the runtime working (LMI semantics).
    pub async fn invoke(&self, input: InvokeInput) -> Result<InvokeOutput, Rejected> {
        self.admit().await?;
        let timeout = self.inner.spec.timeout();
        let mut begun = self.begin(input, timeout)?;
        // A function that streams its response is collected for a caller who wants it whole.
        let result = tokio::time::timeout(timeout, async {
            match (&mut begun.ticket).await {
                Outcome::Stream(mut stream) => {
                    let outcome = collect_stream(&mut stream).await;
                    (outcome, stream.timing())
                }
                buffered => (buffered, begun.ticket.timing()),
            }
        })
        .await;
        let ended = match result {
            Ok((outcome, timing)) => {
                begun.guard.timing = timing;
                Ended::Outcome(outcome)
            }
            Err(_) => Ended::TimedOut,
        };
        Ok(finish_invoke(
            &self.inner,
            begun.request_id,
            begun.started,
            begun.guard,
            timeout,
            ended,
        ))
    }

    /// Refuses an invoke the environment cannot take now (state, idle workers, ceilings).
    async fn admit(&self) -> Result<(), Rejected> {
        let inner = &*self.inner;
        match &*inner.state.borrow() {
            EnvState::Ready => {}
            EnvState::Starting => return Err(Rejected::NotReady),
            EnvState::Draining => return Err(Rejected::Draining),
            EnvState::Exited(_) => return Err(Rejected::Exited),
        }
        let max = inner.spec.max_concurrency;
        if inner.api.parked() == 0 && inner.api.in_flight() < max as usize {
            // A worker that just answered is about to poll /next again: give it a moment
            // (bounded, far below any invoke) rather than refusing with concurrency to spare.
            let back = tokio::time::timeout(REPARK_GRACE, inner.api.wait_parked(|n| n > 0))
                .await
                .is_ok();
            if let Some(rejected) = starved_rejection(
                back,
                inner.api.in_flight(),
                max,
                inner.sampled.cpu_throttled(),
                inner.sampled.verdict(),
            ) {
                return Err(rejected);
            }
        }
        if let Some(rejected) = ceiling_rejection(
            inner.sampled.verdict(),
            || inner.api.parked(),
            inner.spec.max_concurrency,
        ) {
            return Err(rejected);
        }
        Ok(())
    }

    /// Runs one invoke whose response may be streamed: admitted, timed and logged like
    /// [`Environment::invoke`]. A function that answers buffered, or fails (or times out)
    /// before its first chunk, gives [`StreamedOutput::Buffered`]. One that streams gives
    /// [`StreamedOutput::Streamed`] at once; its parts end with the function's end or error, or
    /// with `Sandbox.Timedout` when the function's timeout passes mid-stream. The invoke counts
    /// as active, and its `END`/`REPORT` are written, when the stream ends; dropping the
    /// receiver abandons the rest of the response.
    pub async fn invoke_streaming(&self, input: InvokeInput) -> Result<StreamedOutput, Rejected> {
        self.admit().await?;
        let timeout = self.inner.spec.timeout();
        let mut begun = self.begin(input, timeout)?;
        let sleep = tokio::time::sleep(timeout);
        let mut sleep = Box::pin(sleep);
        let outcome = tokio::select! {
            o = &mut begun.ticket => o,
            () = &mut sleep => {
                return Ok(StreamedOutput::Buffered(finish_invoke(
                    &self.inner,
                    begun.request_id, begun.started, begun.guard, timeout, Ended::TimedOut,
                )));
            }
        };
        let mut stream = match outcome {
            Outcome::Stream(s) => s,
            buffered => {
                begun.guard.timing = begun.ticket.timing();
                return Ok(StreamedOutput::Buffered(finish_invoke(
                    &self.inner,
                    begun.request_id,
                    begun.started,
                    begun.guard,
                    timeout,
                    Ended::Outcome(buffered),
                )));
            }
        };
        let first = tokio::select! {
            p = stream.next() => p,
            () = &mut sleep => {
                return Ok(StreamedOutput::Buffered(finish_invoke(
                    &self.inner,
                    begun.request_id, begun.started, begun.guard, timeout, Ended::TimedOut,
                )));
            }
        };
        let first = match first {
            // Failed before its first byte: an ordinary function error.
            Some(ApiPart::End(Some(f))) => {
                begun.guard.timing = stream.timing();
                return Ok(StreamedOutput::Buffered(finish_invoke(
                    &self.inner,
                    begun.request_id,
                    begun.started,
                    begun.guard,
                    timeout,
                    Ended::Outcome(Outcome::FunctionError {
                        error_type: f.error_type,
                        body: f.body,
                    }),
                )));
            }
            Some(part) => part,
            None => ApiPart::End(None),
        };
        let content_type = stream.content_type().map(str::to_owned);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let request_id = begun.request_id;
            let ended = relay(&request_id, first, &mut stream, &tx, sleep).await;
            let mut guard = begun.guard;
            guard.timing = stream.timing();
            let end = match &ended {
                Relayed::Done(f) => Some(f.clone()),
                Relayed::TimedOut => Some(Some(StreamError {
                    error_type: ERROR_TYPE_TIMEOUT.to_owned(),
                    payload: timeout_body(&request_id, timeout),
                })),
                Relayed::Abandoned => None,
            };
            let status = match &ended {
                Relayed::Done(None) => Ended::StreamDone(None),
                Relayed::Done(Some(f)) => Ended::StreamDone(Some(f.error_type.clone())),
                Relayed::TimedOut => Ended::TimedOut,
                Relayed::Abandoned => Ended::Abandoned,
            };
            finish_invoke(&inner, request_id, begun.started, guard, timeout, status);
            if let Some(end) = end {
                // The reader is slow or gone: the end is not waited for long.
                let _ = tokio::time::timeout(END_GRACE, tx.send(StreamPart::End(end))).await;
            }
        });
        Ok(StreamedOutput::Streamed(OutputStream {
            content_type,
            parts: rx,
        }))
    }

    /// Admits and dispatches one invoke, and writes its `START`.
    fn begin(&self, input: InvokeInput, timeout: Duration) -> Result<Begun, Rejected> {
        let inner = &*self.inner;
        let deadline_ms =
            now_ms().saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let request_id = input.request_id;
        // One atomic load when no extension subscribed to telemetry.
        let telemetry = inner.api.telemetry();
        let traced = if telemetry.is_active() {
            Some(input.trace_id.clone().map(TraceContext::new))
        } else {
            None
        };
        let invocation = Invocation {
            request_id: request_id.clone(),
            payload: input.payload,
            deadline_ms,
            invoked_function_arn: inner.spec.qualified_arn.clone(),
            trace_id: input.trace_id,
            client_context: input.client_context,
            cognito_identity: None,
            tenant_id: input.tenant_id,
        };
        // In flight before the runtime can write a line of it (a line read between the
        // dispatch and the guard would go unattributed).
        inner.ids.insert(&request_id);
        let dispatched = inner.api.try_dispatch(invocation);
        let ticket = dispatched.map_err(|e| {
            inner.ids.forget(&request_id);
            match e {
                ApiRejected::NoIdleWorker => Rejected::Busy {
                    max_concurrency: inner.spec.max_concurrency,
                },
                ApiRejected::DuplicateRequestId(id) => Rejected::DuplicateRequestId(id),
                ApiRejected::InvalidHeaderValue(field) => Rejected::InvalidInput(field),
                ApiRejected::Closed => Rejected::Exited,
            }
        })?;
        let started = Instant::now();
        if let Some(tracing) = traced {
            telemetry.emit(TelemetryRecord::Platform(PlatformEvent::Start(
                fleetfn_runtime_api::Start {
                    request_id: request_id.clone(),
                    version: Some(inner.spec.version.clone()),
                    function_arn: Some(inner.spec.qualified_arn.clone()),
                    tracing,
                },
            )));
        }
        let guard = ActiveGuard::new(&self.inner, &request_id);
        inner.logs.try_send_invoke(
            &request_id,
            logs::InvokeEvent::Start {
                version: inner.spec.version.clone(),
            },
        );
        Ok(Begun {
            request_id,
            ticket,
            started,
            guard,
        })
    }

    /// Stops the environment: rejects new invokes, waits up to `grace` for the invokes whose
    /// callers are waiting, sends `SIGTERM` to the process group, `SIGKILL` after
    /// [`TERM_GRACE`], and waits until its resources are released. Idempotent.
    pub async fn stop(&self, grace: Duration) -> ExitReason {
        let inner = &*self.inner;
        let mut state = inner.state.subscribe();
        if let EnvState::Exited(r) = &*state.borrow_and_update() {
            return r.clone();
        }
        inner.stopping.store(true, Ordering::SeqCst);
        inner.state.send_if_modified(|s| {
            if matches!(s, EnvState::Starting | EnvState::Ready) {
                *s = EnvState::Draining;
                true
            } else {
                false
            }
        });
        let mut active = inner.active.subscribe();
        let drained = async {
            loop {
                if *active.borrow_and_update() == 0 {
                    return;
                }
                if active.changed().await.is_err() {
                    return;
                }
            }
        };
        let mut exit_rx = inner.state.subscribe();
        tokio::select! {
            _ = tokio::time::timeout(grace, drained) => {}
            _ = wait_exited(&mut exit_rx) => {}
        }
        if let Some(gate) = &inner.gate {
            // Extensions first (SHUTDOWN with its deadline): the sandbox ends them all once
            // the runtime exits. From now on an extension that exits does not end it.
            gate.stopping();
            // The last telemetry first, so subscribers have it before their SHUTDOWN.
            let telemetry = inner.api.telemetry();
            if telemetry.is_active() {
                let _ = tokio::time::timeout(EXTENSIONS_SHUTDOWN / 2, telemetry.flush()).await;
            }
            let deadline = now_ms()
                .saturating_add(u64::try_from(EXTENSIONS_SHUTDOWN.as_millis()).unwrap_or(u64::MAX));
            inner
                .api
                .shutdown_extensions(ShutdownReason::Spindown, deadline);
            let mut exit_rx = inner.state.subscribe();
            tokio::select! {
                _ = tokio::time::timeout(EXTENSIONS_SHUTDOWN, inner.api.extensions_shut_down()) => {}
                _ = wait_exited(&mut exit_rx) => {}
            }
            // The sandbox's supervisor passes it to the runtime only.
            inner.signal_leader(Signal::SIGTERM);
        } else {
            inner.signal(Signal::SIGTERM);
        }
        match tokio::time::timeout(TERM_GRACE, wait_exited(&mut state)).await {
            Ok(r) => r,
            Err(_) => {
                inner.signal(Signal::SIGKILL);
                wait_exited(&mut state).await
            }
        }
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        if !matches!(&*self.inner.state.borrow(), EnvState::Exited(_)) {
            self.inner.stopping.store(true, Ordering::SeqCst);
            self.inner.signal(Signal::SIGKILL);
            self.inner.cancel.cancel();
        }
    }
}

/// Parts buffered between the runtime's stream and the reader of an [`OutputStream`].
const STREAM_BUFFER: usize = 4;

/// How long the end of a stream waits for a reader that stopped reading.
const END_GRACE: Duration = Duration::from_secs(5);

/// What [`Environment::invoke_streaming`] gives.
#[derive(Debug)]
pub enum StreamedOutput {
    /// The whole answer: the function answered buffered, or failed or timed out before its
    /// first chunk.
    Buffered(InvokeOutput),
    Streamed(OutputStream),
}

/// A response the function is streaming.
#[derive(Debug)]
pub struct OutputStream {
    /// The content type the runtime declared, if any.
    pub content_type: Option<String>,
    /// Chunks, then exactly one [`StreamPart::End`].
    pub parts: tokio::sync::mpsc::Receiver<StreamPart>,
}

/// An invoke handed to the runtime.
struct Begun {
    request_id: String,
    ticket: fleetfn_runtime_api::InvokeTicket,
    started: Instant,
    guard: ActiveGuard,
}

/// How an invoke ended, for its `END`/`REPORT` and its [`InvokeOutput`].
enum Ended {
    Outcome(Outcome),
    TimedOut,
    /// A stream that ended, with the error type it ended with.
    StreamDone(Option<String>),
    /// The reader of a stream went away before its end.
    Abandoned,
}

/// Writes the invoke's `END`/`REPORT`, ends its activity and builds its output. A streamed
/// invoke's output only carries its status (its body went to the reader).
fn finish_invoke(
    inner: &Inner,
    request_id: String,
    started: Instant,
    guard: ActiveGuard,
    timeout: Duration,
    ended: Ended,
) -> InvokeOutput {
    let duration = started.elapsed();
    let timing = guard.timing;
    drop(guard);
    let (payload, error_type, timed_out, status) = match ended {
        Ended::Outcome(Outcome::Response(body)) => (body, None, false, "success"),
        Ended::Outcome(Outcome::FunctionError { error_type, body }) => {
            let (body, error_type) = function_error_body(&request_id, &error_type, body);
            (body, Some(error_type), false, "error")
        }
        // Only reached through a stream's first part; never from a ticket.
        Ended::Outcome(Outcome::Stream(_)) | Ended::StreamDone(None) => {
            (Bytes::new(), None, false, "success")
        }
        Ended::StreamDone(Some(t)) => (Bytes::new(), Some(t), false, "error"),
        Ended::Abandoned => (Bytes::new(), None, false, "error"),
        // Like AWS, the message names the configured timeout, not the measured wait (which
        // a busy host stretches past it by a few milliseconds).
        Ended::TimedOut => (
            timeout_body(&request_id, timeout),
            Some(ERROR_TYPE_TIMEOUT.to_owned()),
            true,
            "timeout",
        ),
    };
    let duration_ms = duration.as_secs_f64() * 1000.0;
    let billed_ms = u64::try_from(duration.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    let max_used_mb = inner.peak_memory_mb();
    inner.logs.try_send_invoke(
        &request_id,
        logs::InvokeEvent::Done {
            status,
            duration_ms,
            billed_ms,
            memory_mb: inner.spec.memory_mb,
            max_used_mb,
        },
    );
    let telemetry = inner.api.telemetry();
    if telemetry.is_active() {
        emit_invoke_done(
            inner,
            &request_id,
            status,
            error_type.as_deref(),
            duration_ms,
            billed_ms,
            max_used_mb,
            payload.len(),
            response_spans(started, timing),
        );
    }
    InvokeOutput {
        request_id,
        payload,
        function_error: error_type
            .as_ref()
            .map(|_| FUNCTION_ERROR_UNHANDLED.to_owned()),
        error_type,
        timed_out,
        duration,
        billed_duration_ms: billed_ms,
        max_memory_used_mb: max_used_mb,
    }
}

/// An invoke's `platform.runtimeDone` and `platform.report` for telemetry subscribers.
#[allow(clippy::too_many_arguments)]
fn emit_invoke_done(
    inner: &Inner,
    request_id: &str,
    status: &str,
    error_type: Option<&str>,
    duration_ms: f64,
    billed_ms: u64,
    max_used_mb: u64,
    produced_bytes: usize,
    spans: Vec<Span>,
) {
    // A platform failure (the runtime or an extension died) is `failure`, as on Lambda.
    let status = match (status, error_type) {
        (_, Some(ERROR_TYPE_EXIT | ERROR_TYPE_OUT_OF_MEMORY | ERROR_TYPE_EXTENSION_CRASH)) => {
            Status::Failure
        }
        ("success", _) => Status::Success,
        ("timeout", _) => Status::Timeout,
        _ => Status::Error,
    };
    let duration_ms = (duration_ms * 1000.0).round() / 1000.0;
    let telemetry = inner.api.telemetry();
    telemetry.emit(TelemetryRecord::Platform(PlatformEvent::RuntimeDone(
        RuntimeDone {
            request_id: request_id.to_owned(),
            status,
            error_type: error_type.map(str::to_owned),
            metrics: Some(RuntimeDoneMetrics {
                duration_ms,
                produced_bytes: produced_bytes as u64,
            }),
            spans: spans.clone(),
            tracing: None,
        },
    )));
    telemetry.emit(TelemetryRecord::Platform(PlatformEvent::Report(
        fleetfn_runtime_api::Report {
            request_id: request_id.to_owned(),
            status,
            error_type: error_type.map(str::to_owned),
            metrics: ReportMetrics {
                duration_ms,
                billed_duration_ms: Some(billed_ms),
                memory_size_mb: Some(u64::from(inner.spec.memory_mb)),
                max_memory_used_mb: Some(max_used_mb),
                init_duration_ms: None,
            },
            spans,
            tracing: None,
        },
    )));
}

/// An invoke's `responseLatency` (from its dispatch until the runtime started sending its
/// answer) and `responseDuration` (sending it) spans, none when the runtime never answered (a
/// timeout, a crash). Both records carry them: `platform.runtimeDone` as in the `2022-12-13`
/// schema, `platform.report` as AWS's LMI implementation sends them in `2025-01-29` (it sends
/// no runtimeDone; aws-lambda-runtime-interface-emulator
/// `internal/lambda-managed-instances/invoke/metrics.go`, `SendInvokeFinishedEvent`).
fn response_spans(dispatched: Instant, timing: Option<ResponseTiming>) -> Vec<Span> {
    let Some(t) = timing else {
        return Vec::new();
    };
    let (now, wall) = (Instant::now(), SystemTime::now());
    let at = |i: Instant| {
        wall.checked_sub(now.saturating_duration_since(i))
            .unwrap_or(wall)
    };
    // Microseconds as milliseconds, as AWS's buildDuration.
    let ms = |d: Duration| d.as_micros() as f64 / 1000.0;
    vec![
        Span {
            name: "responseLatency".to_owned(),
            start: at(dispatched),
            duration_ms: ms(t.started.saturating_duration_since(dispatched)),
        },
        Span {
            name: "responseDuration".to_owned(),
            start: at(t.started),
            duration_ms: ms(t.duration()),
        },
    ]
}

/// Reads a streamed response whole for a caller who wants it so: up to the synchronous
/// response limit (6 MiB), beyond it `Function.ResponseSizeTooLarge` (and the rest is
/// discarded). A stream that ends with an error is that function error.
async fn collect_stream(stream: &mut fleetfn_runtime_api::ResponseStream) -> Outcome {
    let limit = fleetfn_runtime_api::MAX_RESPONSE_BYTES;
    let mut buf = bytes::BytesMut::new();
    while let Some(part) = stream.next().await {
        match part {
            ApiPart::Chunk(c) => {
                if buf.len() + c.len() > limit {
                    return Outcome::function_error(
                        fleetfn_runtime_api::ERROR_TYPE_RESPONSE_TOO_LARGE,
                        &format!(
                            "Response payload size exceeded maximum allowed payload size ({limit} bytes)."
                        ),
                    );
                }
                buf.extend_from_slice(&c);
            }
            ApiPart::End(None) => break,
            ApiPart::End(Some(f)) => {
                return Outcome::FunctionError {
                    error_type: f.error_type,
                    body: f.body,
                };
            }
        }
    }
    Outcome::Response(buf.freeze())
}

/// How a relayed stream ended.
enum Relayed {
    /// The runtime ended it (`Some`: with an error).
    Done(Option<StreamError>),
    TimedOut,
    Abandoned,
}

/// Passes a runtime's stream on to `tx`, starting with `first`, until it ends, `sleep` (the
/// invoke's timeout) fires, or the reader goes away. The end itself is not sent.
async fn relay(
    request_id: &str,
    first: ApiPart,
    stream: &mut fleetfn_runtime_api::ResponseStream,
    tx: &tokio::sync::mpsc::Sender<StreamPart>,
    mut sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
) -> Relayed {
    let mut part = Some(first);
    loop {
        let current = match part.take() {
            Some(p) => p,
            None => tokio::select! {
                p = stream.next() => p.unwrap_or(ApiPart::End(None)),
                () = &mut sleep => return Relayed::TimedOut,
            },
        };
        let chunk = match current {
            ApiPart::Chunk(c) => c,
            ApiPart::End(end) => {
                return Relayed::Done(end.map(|f| {
                    let (payload, error_type) =
                        function_error_body(request_id, &f.error_type, f.body);
                    StreamError {
                        error_type,
                        payload,
                    }
                }));
            }
        };
        tokio::select! {
            sent = tx.send(StreamPart::Chunk(chunk)) => {
                if sent.is_err() {
                    return Relayed::Abandoned;
                }
            }
            () = &mut sleep => return Relayed::TimedOut,
        }
    }
}

/// Counts an invoke as active while its caller waits (its request id, put in flight before
/// the dispatch, leaves the in-flight ids with it).
struct ActiveGuard {
    inner: Arc<Inner>,
    request_id: String,
    /// When the runtime sent its answer, once it did (for the telemetry spans).
    timing: Option<ResponseTiming>,
}

impl ActiveGuard {
    fn new(inner: &Arc<Inner>, request_id: &str) -> Self {
        add_active(&inner.active, 1);
        Self {
            inner: Arc::clone(inner),
            request_id: request_id.to_owned(),
            timing: None,
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.inner.ids.remove(&self.request_id);
        add_active(&self.inner.active, -1);
    }
}

/// Changes the active count, waking its watchers only when there are any (a drain or a
/// test): `send_modify` takes the locks of all eight of the channel's notifiers each time,
/// twice per invoke. A receiver that subscribes concurrently reads the new value first.
fn add_active(active: &watch::Sender<usize>, delta: isize) {
    active.send_if_modified(|n| {
        *n = n.saturating_add_signed(delta);
        active.receiver_count() > 0
    });
}

async fn wait_exited(rx: &mut watch::Receiver<EnvState>) -> ExitReason {
    loop {
        if let EnvState::Exited(r) = &*rx.borrow_and_update() {
            return r.clone();
        }
        if rx.changed().await.is_err() {
            return ExitReason::Stopped;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn remove_dir_if_present(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn validate_spec(spec: &EnvironmentSpec) -> Result<(), StartError> {
    let id = &spec.env_id;
    let plain = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !plain {
        return Err(StartError::InvalidSpec(format!(
            "env_id {id:?} must be 1-128 characters of [A-Za-z0-9._-]"
        )));
    }
    if spec.max_concurrency == 0 {
        return Err(StartError::InvalidSpec(
            "max_concurrency must be at least 1".into(),
        ));
    }
    Ok(())
}

/// `2026/01/02/[<version>]<env_id>`.
fn log_stream_name(spec: &EnvironmentSpec) -> String {
    format!(
        "{}/[{}]{}",
        jiff::Timestamp::now().strftime("%Y/%m/%d"),
        spec.version,
        spec.env_id
    )
}

/// The container credentials document of `c`.
fn credentials_document(c: &fleetfn_proto::RoleCredentials) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(c).unwrap_or_default())
}

/// Binds the endpoint, launches the process and starts watching it.
async fn launch(
    spec: EnvironmentSpec,
    provider: &RuntimeProvider,
    prepared: &PreparedRuntime,
    env_dir: PathBuf,
    tmp_dir: &Path,
    extensions: Vec<String>,
) -> Result<Environment, StartError> {
    let launcher = provider.launcher();
    if extensions.len() > crate::layers::MAX_EXTENSIONS {
        return Err(InitFailure::new(
            InitReasonCode::TooManyExtensions,
            format!(
                "The function's layers have {} extensions in /opt/extensions ({}); Lambda runs at most {}.",
                extensions.len(),
                extensions.join(", "),
                crate::layers::MAX_EXTENSIONS
            ),
        )
        .into());
    }
    if !extensions.is_empty()
        && let Some(why) = launcher.extensions_unsupported()
    {
        return Err(InitFailure::new(
            InitReasonCode::ExtensionInitError,
            format!(
                "The function's layers have extensions ({}), but {why}.",
                extensions.join(", ")
            ),
        )
        .into());
    }
    let mut reservation = {
        let launcher = Arc::clone(&launcher);
        let env_id = spec.env_id.clone();
        tokio::task::spawn_blocking(move || launcher.reserve(&env_id))
            .await
            .map_err(|e| StartError::io("reserving the environment", std::io::Error::other(e)))?
            .map_err(|e| StartError::io("reserving the environment", e))?
    };
    let listener = reservation.listener.take().ok_or_else(|| {
        StartError::io(
            "binding the Runtime API endpoint",
            std::io::Error::other("the launcher reserved no listener"),
        )
    })?;
    let api = RuntimeApi::serve(
        listener,
        RuntimeApiConfig::default(),
        reservation.peer_filter.take(),
    )
    .map_err(|e| StartError::io("binding the Runtime API endpoint", e))?;
    let connect = reservation.connect.take();
    if let Some(c) = &connect {
        // Telemetry deliveries reach the extensions' listeners in the environment's network.
        api.telemetry()
            .set_connector(Arc::new(EnvTelemetryConnector(Arc::clone(c))));
    }
    // Kept for subscribers until init ends (extensions subscribe during init).
    api.telemetry()
        .emit(TelemetryRecord::Platform(PlatformEvent::InitStart(
            InitStart {
                phase: InitPhase::Init,
                runtime_version: Some(spec.runtime.clone()),
                runtime_version_arn: None,
                function_name: spec.function_name.clone(),
                function_version: spec.version.clone(),
                instance_id: spec.env_id.clone(),
                instance_max_memory: u64::from(spec.memory_mb) * MIB,
                tracing: None,
            },
        )));
    let log_stream = log_stream_name(&spec);
    // The environment's key to its credentials endpoint (only its own processes reach its
    // Runtime API listener; the token keeps anything else on a shared loopback out).
    let credentials_token = spec.credentials.as_ref().map(|c| {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        api.set_credentials(&token, credentials_document(c));
        token
    });
    extensions_begin(&api, &spec, &extensions);
    let hosts_file = env_dir.join(HOSTS_FILE);
    // Python's workers put connections to it on their stdout and stderr: a stream each.
    let log_socket = match prepared {
        PreparedRuntime::Python { .. } => crate::log_socket::LogSocket::bind(&env_dir)
            .inspect_err(|e| {
                tracing::warn!(env_id = spec.env_id, error = %e, "no log socket; the runtime's workers share its stdout")
            })
            .ok(),
        _ => None,
    };
    let cmd = launch_command(
        &spec,
        prepared,
        &LaunchContext {
            api_addr: reservation.api_addr,
            tmp_dir,
            log_stream: &log_stream,
            credentials_token: credentials_token.as_deref(),
            hosts_file: Some(&hosts_file),
            extensions: &extensions,
            log_socket: log_socket.as_ref().map(crate::log_socket::LogSocket::paths),
        },
    )?;
    let launched = launcher
        .launch(&cmd, reservation)
        .map_err(|e| spawn_error(prepared, &cmd.program, e))?;
    let mut child = launched.child;
    let Some(pid) = child.id() else {
        return Err(StartError::io(
            "launching the runtime",
            std::io::Error::other("the runtime process exited at once"),
        ));
    };
    let (logs, _writer) = match &spec.logs {
        Some(t) => {
            let (sink, task) = LogSink::open(t.dir.clone(), spec.env_id.clone(), t.limits);
            (sink, Some(task))
        }
        None => (LogSink::disabled(), None),
    };
    let ids = Arc::new(InFlightIds::default());
    let extension_exit = watch::Sender::new(None);
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(logs::pump(
            out,
            "stdout",
            logs.clone(),
            Arc::clone(&ids),
            None,
            Some(api.telemetry().clone()),
        )));
    }
    if let Some(err) = child.stderr.take() {
        // Only the sandbox's init prints that line, and only with extensions.
        let watch_exit = (!extensions.is_empty()).then(|| extension_exit.clone());
        pumps.push(tokio::spawn(logs::pump(
            err,
            "stderr",
            logs.clone(),
            Arc::clone(&ids),
            watch_exit,
            Some(api.telemetry().clone()),
        )));
    }
    for (name, fd) in launched.extension_output {
        match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(rx) => pumps.push(tokio::spawn(logs::pump_extension(
                rx,
                name,
                logs.clone(),
                api.telemetry().clone(),
            ))),
            Err(e) => {
                tracing::warn!(env_id = spec.env_id, extension = name, error = %e, "cannot read the extension's output")
            }
        }
    }
    let log_stop = CancellationToken::new();
    if let Some(sock) = log_socket {
        pumps.push(tokio::spawn(sock.serve(
            crate::log_socket::max_connections(spec.max_concurrency),
            logs.clone(),
            Arc::clone(&ids),
            Some(api.telemetry().clone()),
            log_stop.clone(),
        )));
    }
    let gate = launched.gate;
    let accounting = launched
        .accounting
        .unwrap_or_else(|| Arc::new(ProcTreeAccounting::new(pid)));
    let tmp = launched.tmp;
    let hold = launched.hold;
    logs.try_send(platform_record(
        "platform.initStart",
        None,
        format!("INIT_START Runtime Version: {}", spec.runtime),
        json!({
            "initializationType": "lambda-managed-instances",
            "phase": "init",
            "runtimeVersion": spec.runtime,
            "functionName": spec.function_name,
            "functionVersion": spec.version,
        }),
    ));
    tracing::info!(env_id = spec.env_id, pid, runtime = spec.runtime, api = %api.local_addr(), "environment launched");
    let inner = Arc::new(Inner {
        spec,
        credentials_token,
        api,
        pid,
        state: watch::Sender::new(EnvState::Starting),
        active: watch::Sender::new(0),
        ids,
        stopping: AtomicBool::new(false),
        reaped: AtomicBool::new(false),
        init_duration: OnceLock::new(),
        logs,
        accounting,
        tmp,
        sampled: Sampled::new(),
        saturation: watch::Sender::new(None),
        env_dir,
        cancel: CancellationToken::new(),
        extensions,
        gate,
        extension_exit,
        connect,
        log_stop,
        _hold: hold,
    });
    tokio::spawn(monitor(Arc::clone(&inner), child, pumps, Instant::now()));
    Ok(Environment { inner })
}

/// Maps a failed exec to the reason the function cannot start.
fn spawn_error(prepared: &PreparedRuntime, program: &Path, e: std::io::Error) -> StartError {
    const ENOEXEC: i32 = 8;
    match prepared {
        PreparedRuntime::Provided { .. } => {
            let why = match (e.kind(), e.raw_os_error()) {
                (std::io::ErrorKind::PermissionDenied, _) => "permission denied".to_owned(),
                (_, Some(ENOEXEC)) => {
                    "it is not a valid executable for this platform (exec format error)".to_owned()
                }
                (std::io::ErrorKind::NotFound, _) => {
                    "its interpreter (the #! line) was not found".to_owned()
                }
                _ => return StartError::io("launching the bootstrap", e),
            };
            InitFailure::entry_point(format!(
                "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]; /var/task/bootstrap cannot be executed: {why}"
            ))
            .into()
        }
        PreparedRuntime::Python { runtime, .. }
        | PreparedRuntime::Node { runtime, .. }
        | PreparedRuntime::Java { runtime, .. } => InitFailure::invalid_runtime(format!(
            "The runtime {runtime} cannot be started: {} failed to run: {e}",
            program.display()
        ))
        .into(),
    }
}

enum InitOutcome {
    Ready,
    InitError(InitError),
    /// An extension posted `/extension/init/error`.
    ExtensionInitError(ExtensionInitError),
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

/// Owns the runtime process: drives the state through init, notices its exit, and releases
/// the environment's resources.
async fn monitor(
    inner: Arc<Inner>,
    mut child: Child,
    pumps: Vec<JoinHandle<()>>,
    launched: Instant,
) {
    let init_timeout = inner.spec.init_timeout();
    let deadline = tokio::time::sleep(init_timeout);
    tokio::pin!(deadline);
    let mut sample = tokio::time::interval(SAMPLE_EVERY);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sampler = Sampler::default();
    // As Lambda's init: external extensions register, then the runtime starts; init ends
    // when the runtime polls `/next` and every registered extension (internal ones too)
    // polls `/event/next`.
    let mut gate_closed = inner.gate.is_some();
    let mut runtime_ready = false;
    let mut extensions_ready = false;

    let outcome = loop {
        tokio::select! {
            r = inner.api.extensions_registered(), if gate_closed => match r {
                Ok(()) => {
                    gate_closed = false;
                    if let Some(g) = &inner.gate {
                        g.open();
                    }
                    tracing::info!(env_id = inner.spec.env_id, extensions = ?inner.extensions, "extensions registered; runtime starting");
                }
                Err(e) => break InitOutcome::ExtensionInitError(e),
            },
            r = inner.api.extensions_ready(), if !extensions_ready => match r {
                Ok(()) if runtime_ready => break InitOutcome::Ready,
                Ok(()) => extensions_ready = true,
                Err(e) => break InitOutcome::ExtensionInitError(e),
            },
            r = inner.api.ready(), if !runtime_ready => match r {
                Ok(()) => {
                    runtime_ready = true;
                    // Asked again: the runtime's own (internal) extensions registered meanwhile.
                    extensions_ready = false;
                }
                Err(e) => break InitOutcome::InitError(e),
            },
            st = child.wait() => break InitOutcome::Exited(st),
            () = &mut deadline => break InitOutcome::TimedOut,
            () = inner.cancel.cancelled() => break InitOutcome::Cancelled,
            _ = sample.tick() => sample_resources(&inner, &mut sampler).await,
        }
    };
    let init_elapsed = launched.elapsed();
    if matches!(outcome, InitOutcome::Ready) {
        // The CPU window restarts at Ready: init's CPU burst must not read as a saturated
        // environment (and refuse its first invokes with the CPU reason).
        sampler.restart();
        sample_resources(&inner, &mut sampler).await;
    }
    let failure = match outcome {
        InitOutcome::Ready => None,
        InitOutcome::InitError(e) => Some(init_error_failure(&e)),
        InitOutcome::ExtensionInitError(e) => Some(extension_init_failure(&e)),
        InitOutcome::Exited(st) => {
            inner.reaped.store(true, Ordering::SeqCst);
            let _ = signal_group(inner.pid, Signal::SIGKILL);
            let init_error = inner.api.init_error().borrow().clone();
            if let Some(e) = init_error {
                Some(init_error_failure(&e))
            } else if let Some(e) = reported_extension_error(&inner.api).await {
                // It posted /extension/init/error and exited before the agent saw the post.
                Some(extension_init_failure(&e))
            } else if let Some((name, how)) = extension_exited(&inner, st.as_ref().ok()).await {
                Some(InitFailure::new(
                    InitReasonCode::ExtensionInitError,
                    format!(
                        "{ERROR_TYPE_EXTENSION_CRASH}: The extension {name} exited before it was ready ({how})."
                    ),
                ))
            } else if inner.stopping.load(Ordering::SeqCst) {
                finish(&inner, ExitReason::Stopped, pumps).await;
                return;
            } else {
                let how = st.map_or_else(|e| format!("wait failed: {e}"), describe_exit);
                Some(InitFailure::new(
                    InitReasonCode::RuntimeInitError,
                    format!("Runtime exited with error: {how}"),
                ))
            }
        }
        InitOutcome::TimedOut if gate_closed || (runtime_ready && !extensions_ready) => {
            Some(InitFailure::new(
                InitReasonCode::InitTimeout,
                format!(
                    "The extensions did not finish init within {:.2} seconds: each must register and poll /2020-01-01/extension/event/next ({})",
                    init_timeout.as_secs_f64(),
                    extension_states(&inner.api, &inner.extensions)
                ),
            ))
        }
        InitOutcome::TimedOut => Some(InitFailure::new(
            InitReasonCode::InitTimeout,
            format!(
                "The runtime did not finish init within {:.2} seconds: no runtime worker polled /runtime/invocation/next",
                init_timeout.as_secs_f64()
            ),
        )),
        InitOutcome::Cancelled => {
            kill_and_reap(&inner, &mut child).await;
            finish(&inner, ExitReason::Stopped, pumps).await;
            return;
        }
    };
    let init_ms = init_elapsed.as_secs_f64() * 1000.0;
    if let Some(failure) = failure {
        let status = if failure.reason_code == InitReasonCode::InitTimeout {
            "timeout"
        } else {
            "error"
        };
        log_init_report(&inner, init_ms, status);
        let init_status = if status == "timeout" {
            Status::Timeout
        } else {
            Status::Error
        };
        emit_init_done(
            &inner,
            init_status,
            Some(init_error_type(&failure)),
            init_ms,
        );
        tracing::warn!(env_id = inner.spec.env_id, %failure, "environment init failed");
        if !inner.reaped.load(Ordering::SeqCst) {
            if status == "timeout" {
                kill_and_reap(&inner, &mut child).await;
            } else {
                terminate(&inner, &mut child).await;
            }
        }
        finish(&inner, ExitReason::InitFailed(failure), pumps).await;
        return;
    }

    let _ = inner.init_duration.set(init_elapsed);
    log_init_report(&inner, init_ms, "success");
    emit_init_done(&inner, Status::Success, None, init_ms);
    // Registration and telemetry subscriptions close with init (as on LMI).
    inner.api.finish_init();
    inner.state.send_if_modified(|s| {
        if matches!(s, EnvState::Starting) {
            *s = EnvState::Ready;
            true
        } else {
            false
        }
    });
    tracing::info!(env_id = inner.spec.env_id, init_ms, "environment ready");

    let status = loop {
        tokio::select! {
            st = child.wait() => break st,
            () = inner.cancel.cancelled() => {
                kill_and_reap(&inner, &mut child).await;
                finish(&inner, ExitReason::Stopped, pumps).await;
                return;
            }
            _ = sample.tick() => sample_resources(&inner, &mut sampler).await,
        }
    };
    inner.reaped.store(true, Ordering::SeqCst);
    // Whatever else is left in the process group goes with the runtime.
    let _ = signal_group(inner.pid, Signal::SIGKILL);
    let how = status
        .as_ref()
        .map_or_else(|e| format!("wait failed: {e}"), |s| describe_exit(*s));
    let extension = if inner.stopping.load(Ordering::SeqCst) {
        None
    } else {
        extension_exited(&inner, status.as_ref().ok()).await
    };
    let out_of_memory = status.as_ref().is_ok_and(|s| killed_by_sigkill(*s))
        && match inner.accounting.oom_killed() {
            Some(killed) => killed,
            None => inner.peak_memory_mb() >= u64::from(inner.spec.memory_mb),
        };
    let (error_type, message) = match extension {
        // LMI: an extension that crashes makes the environment unhealthy; it is replaced.
        Some((name, ext_how)) => {
            // It may have said why first (`/extension/exit/error`).
            let reported = inner
                .api
                .watch_extension_errors()
                .borrow()
                .as_ref()
                .filter(|e| e.name == name)
                .map(|e| format!(" (it reported {})", e.error_type))
                .unwrap_or_default();
            (
                ERROR_TYPE_EXTENSION_CRASH,
                format!("Extension {name} exited with error: {ext_how}{reported}"),
            )
        }
        None if out_of_memory => (
            ERROR_TYPE_OUT_OF_MEMORY,
            format!("Runtime exited with error: {how}"),
        ),
        None => (ERROR_TYPE_EXIT, format!("Runtime exited with error: {how}")),
    };
    let failed = inner.api.fail_all_in_flight(error_type, &message);
    inner.api.shutdown();
    let reason = if inner.stopping.load(Ordering::SeqCst) {
        ExitReason::Stopped
    } else {
        tracing::warn!(
            env_id = inner.spec.env_id,
            error_type,
            message,
            failed,
            "runtime exited"
        );
        ExitReason::Crashed {
            error_type: error_type.to_owned(),
            message,
        }
    };
    finish(&inner, reason, pumps).await;
}

/// What init is told about extensions: the function (for `register`'s answer) and, before
/// they start, the external ones, which alone may register for events.
fn extensions_begin(api: &RuntimeApi, spec: &EnvironmentSpec, external: &[String]) {
    // arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    let account_id = spec
        .qualified_arn
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    api.set_extension_context(ExtensionContext {
        function_name: spec.function_name.clone(),
        function_version: spec.version.clone(),
        handler: spec.handler.clone().unwrap_or_default(),
        account_id,
    });
    if !external.is_empty() {
        api.expect_extensions(external.to_vec());
    }
}

/// An `/extension/init/error` already posted, if any (asked without waiting).
async fn reported_extension_error(api: &RuntimeApi) -> Option<ExtensionInitError> {
    match tokio::time::timeout(Duration::ZERO, api.extensions_ready()).await {
        Ok(Err(e @ ExtensionInitError::Reported(_))) => Some(e),
        _ => None,
    }
}

/// `ExtensionInitError` with the extension's own error type and message.
fn extension_init_failure(e: &ExtensionInitError) -> InitFailure {
    let reason = match e {
        ExtensionInitError::Reported(r) => {
            #[derive(serde::Deserialize)]
            struct Doc {
                #[serde(rename = "errorMessage")]
                error_message: Option<String>,
            }
            let message = serde_json::from_slice::<Doc>(&r.body)
                .ok()
                .and_then(|d| d.error_message)
                .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_owned());
            let message = if message.is_empty() {
                "no message".to_owned()
            } else {
                message
            };
            format!("{}: {message} (extension {})", r.error_type, r.name)
        }
        ExtensionInitError::Closed => format!(
            "{}: the environment's endpoint closed during extension init",
            e.error_type()
        ),
    };
    InitFailure::new(InitReasonCode::ExtensionInitError, reason)
}

/// Which extensions registered and which are ready, for a timeout's reason.
fn extension_states(api: &RuntimeApi, external: &[String]) -> String {
    let registered = api.extensions();
    let mut parts: Vec<String> = external
        .iter()
        .filter(|n| !registered.iter().any(|r| &r.name == *n))
        .map(|n| format!("{n}: not registered"))
        .collect();
    parts.extend(
        registered
            .iter()
            .map(|r| format!("{}: {}", r.name, r.state.as_str())),
    );
    parts.join(", ")
}

/// When the sandbox ended because an external extension exited: which one, and how (the
/// sandbox's stderr line, waited for briefly: the pipe may be read after the exit is seen).
async fn extension_exited(inner: &Inner, status: Option<&ExitStatus>) -> Option<(String, String)> {
    if inner.extensions.is_empty()
        || status.and_then(ExitStatus::code) != Some(fleetfn_sandbox::EXTENSION_EXIT_CODE)
    {
        return None;
    }
    let mut rx = inner.extension_exit.subscribe();
    let seen = tokio::time::timeout(EXTENSION_LINE_GRACE, rx.wait_for(Option::is_some)).await;
    match seen {
        Ok(Ok(v)) => v.clone(),
        _ => Some((
            "(unknown)".to_owned(),
            format!("exit code {}", fleetfn_sandbox::EXTENSION_EXIT_CODE),
        )),
    }
}

fn init_error_failure(e: &InitError) -> InitFailure {
    let body: Value = serde_json::from_slice(&e.body).unwrap_or(Value::Null);
    let error_type = body
        .get("errorType")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&e.error_type);
    let message = body
        .get("errorMessage")
        .and_then(Value::as_str)
        .map_or_else(
            || String::from_utf8_lossy(&e.body).into_owned(),
            str::to_owned,
        );
    InitFailure::new(
        InitReasonCode::RuntimeInitError,
        format!("{error_type}: {message}"),
    )
}

/// The end of init for telemetry subscribers: each extension's `platform.extension`, then
/// `platform.initRuntimeDone` and `platform.initReport`.
fn emit_init_done(inner: &Inner, status: Status, error_type: Option<String>, init_ms: f64) {
    let telemetry = inner.api.telemetry();
    if !telemetry.is_active() {
        return;
    }
    for e in inner.api.extensions() {
        telemetry.emit(TelemetryRecord::Platform(PlatformEvent::Extension(
            ExtensionRecord {
                name: e.name,
                state: e.state.as_str().to_owned(),
                events: e.events,
                error_type: None,
            },
        )));
    }
    telemetry.emit(TelemetryRecord::Platform(PlatformEvent::InitRuntimeDone(
        InitRuntimeDone {
            phase: InitPhase::Init,
            status,
            error_type: error_type.clone(),
            spans: Vec::new(),
        },
    )));
    telemetry.emit(TelemetryRecord::Platform(PlatformEvent::InitReport(
        InitReport {
            phase: InitPhase::Init,
            status,
            error_type,
            metrics: InitReportMetrics {
                duration_ms: (init_ms * 100.0).round() / 100.0,
            },
            spans: Vec::new(),
        },
    )));
}

/// The `errorType` of a failed init: the runtime's or extension's own error type when the
/// reason starts with one (`Runtime.ImportModuleError: ...`), else what the reason code says.
fn init_error_type(f: &InitFailure) -> String {
    let named = f
        .reason
        .split_once(": ")
        .map(|(t, _)| t)
        .filter(|t| t.contains('.') && !t.contains(' '));
    match (named, f.reason_code) {
        (Some(t), _) => t.to_owned(),
        (None, InitReasonCode::RuntimeInitError) => ERROR_TYPE_EXIT.to_owned(),
        (None, code) => code.as_str().to_owned(),
    }
}

/// Telemetry deliveries made from inside the environment's network namespace.
struct EnvTelemetryConnector(crate::process::Connect);

impl TelemetryConnector for EnvTelemetryConnector {
    fn connect(
        &self,
        port: u16,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<tokio::net::TcpStream>> + Send + '_>,
    > {
        let c = Arc::clone(&self.0);
        Box::pin(async move {
            let addr = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
            let stream = tokio::task::spawn_blocking(move || c.connect(addr))
                .await
                .map_err(std::io::Error::other)??;
            stream.set_nonblocking(true)?;
            tokio::net::TcpStream::from_std(stream)
        })
    }
}

fn log_init_report(inner: &Inner, init_ms: f64, status: &str) {
    inner.logs.try_send(platform_record(
        "platform.initReport",
        None,
        format!("INIT_REPORT Init Duration: {init_ms:.2} ms\tPhase: init\tStatus: {status}"),
        json!({
            "initializationType": "lambda-managed-instances",
            "phase": "init",
            "status": status,
            "metrics": { "durationMs": (init_ms * 100.0).round() / 100.0 },
        }),
    ));
}

/// `SIGTERM` to the group, `SIGKILL` after [`TERM_GRACE`]; reaps the process.
async fn terminate(inner: &Inner, child: &mut Child) {
    inner.signal(Signal::SIGTERM);
    if tokio::time::timeout(TERM_GRACE, child.wait())
        .await
        .is_err()
    {
        inner.signal(Signal::SIGKILL);
        let _ = child.wait().await;
    }
    inner.reaped.store(true, Ordering::SeqCst);
    let _ = signal_group(inner.pid, Signal::SIGKILL);
}

async fn kill_and_reap(inner: &Inner, child: &mut Child) {
    inner.signal(Signal::SIGKILL);
    let _ = child.wait().await;
    inner.reaped.store(true, Ordering::SeqCst);
    let _ = signal_group(inner.pid, Signal::SIGKILL);
}

/// Releases everything once the runtime is gone, then publishes the final state.
async fn finish(inner: &Inner, reason: ExitReason, pumps: Vec<JoinHandle<()>>) {
    inner.api.shutdown();
    if let Some(c) = &inner.connect {
        c.close();
    }
    inner.log_stop.cancel();
    for mut pump in pumps {
        if tokio::time::timeout(DRAIN_OUTPUT, &mut pump).await.is_err() {
            pump.abort();
        }
    }
    inner.logs.flush().await;
    if inner.logs.dropped() > 0 {
        tracing::warn!(
            env_id = inner.spec.env_id,
            dropped = inner.logs.dropped(),
            "platform log records were dropped"
        );
    }
    let dir = inner.env_dir.clone();
    match tokio::task::spawn_blocking(move || remove_dir_if_present(&dir)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(env_id = inner.spec.env_id, error = %e, "removing the environment directory failed")
        }
        Err(e) => {
            tracing::warn!(env_id = inner.spec.env_id, error = %e, "removing the environment directory failed")
        }
    }
    // Nothing left to measure or to refuse.
    inner.sampled.publish(&ResourceView::default());
    inner.saturation.send_replace(None);
    tracing::info!(env_id = inner.spec.env_id, %reason, "environment exited");
    inner.set_state(EnvState::Exited(reason));
}

/// The caller's error document for a runtime-reported or platform failure, and its type.
/// Exit errors get Lambda's `RequestId: <id> Error: ` prefix.
fn function_error_body(request_id: &str, header_type: &str, body: Bytes) -> (Bytes, String) {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let body_type = parsed
        .as_ref()
        .and_then(|v| v.get("errorType"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let is_exit = header_type == ERROR_TYPE_EXIT
        || header_type == ERROR_TYPE_OUT_OF_MEMORY
        || header_type == ERROR_TYPE_EXTENSION_CRASH;
    if is_exit {
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("errorMessage"))
            .and_then(Value::as_str)
            .unwrap_or("Runtime exited");
        let message = if message.starts_with("RequestId:") {
            message.to_owned()
        } else {
            format!("RequestId: {request_id} Error: {message}")
        };
        let doc = json!({ "errorMessage": message, "errorType": header_type });
        return (Bytes::from(doc.to_string()), header_type.to_owned());
    }
    let error_type = body_type.unwrap_or_else(|| header_type.to_owned());
    (body, error_type)
}

/// `{"errorMessage":"RequestId: <id> Error: Task timed out after 1.00 seconds","errorType":"Sandbox.Timedout"}`.
fn timeout_body(request_id: &str, after: Duration) -> Bytes {
    let doc = json!({
        "errorMessage": format!(
            "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
            after.as_secs_f64()
        ),
        "errorType": ERROR_TYPE_TIMEOUT,
    });
    Bytes::from(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_measured_over_the_last_second_at_every_sample() {
        let mut readings = std::collections::VecDeque::new();
        let t0 = tokio::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Nothing until a reading a whole window old exists.
        for (ms, ns) in [(0, 0), (250, 100), (500, 200), (750, 300)] {
            assert_eq!(
                cpu_over_window(&mut readings, at(ms), ns, CPU_WINDOW),
                None,
                "{ms}"
            );
        }
        // From then on: since the newest reading at least a second old.
        assert_eq!(
            cpu_over_window(&mut readings, at(1000), 400, CPU_WINDOW),
            Some((400, Duration::from_millis(1000)))
        );
        assert_eq!(
            cpu_over_window(&mut readings, at(1250), 900, CPU_WINDOW),
            Some((800, Duration::from_millis(1000)))
        );
        // A late sample: the base stays the newest reading a second old, older ones go.
        assert_eq!(
            cpu_over_window(&mut readings, at(2100), 1000, CPU_WINDOW),
            Some((600, Duration::from_millis(1100)))
        );
        assert!(readings.len() <= 4, "{readings:?}");
        // Ended saturation shows within one sample: a second of full use, then a quiet one.
        let mut r = std::collections::VecDeque::new();
        let full = 250_000_000;
        for i in 0..=4u64 {
            cpu_over_window(&mut r, at(i * 250), i * full, CPU_WINDOW);
        }
        let (used, over) = cpu_over_window(&mut r, at(1250), 4 * full, CPU_WINDOW).unwrap();
        assert_eq!((used, over), (3 * full, Duration::from_millis(1000)));
    }

    #[test]
    fn error_documents() {
        let body = timeout_body("r1", Duration::from_millis(1001));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"errorMessage": "RequestId: r1 Error: Task timed out after 1.00 seconds", "errorType": "Sandbox.Timedout"})
        );
        let (body, t) = function_error_body(
            "r2",
            ERROR_TYPE_EXIT,
            Bytes::from_static(br#"{"errorMessage":"Runtime exited with error: exit status 1","errorType":"Runtime.ExitError"}"#),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(t, "Runtime.ExitError");
        assert_eq!(
            v["errorMessage"],
            "RequestId: r2 Error: Runtime exited with error: exit status 1"
        );
        let (body, t) = function_error_body(
            "r3",
            "Unhandled",
            Bytes::from_static(
                br#"{"errorMessage":"boom","errorType":"ValueError","stackTrace":[]}"#,
            ),
        );
        assert_eq!(t, "ValueError");
        assert!(body.starts_with(b"{\"errorMessage\":\"boom\""));
    }

    #[test]
    fn a_worker_held_by_the_cpu_allotment_is_a_cpu_rejection() {
        let cpu = Some((Resource::Cpu, 97));
        let memory = Some((Resource::Memory, 93));
        // No worker came back, 3 of 4 in flight, the quota ran out since the last sample.
        let starved = starved_rejection(false, 3, 4, true, None).unwrap();
        assert_eq!(
            starved,
            Rejected::CpuStarved {
                waited_ms: 20,
                in_flight: 3,
                max_concurrency: 4
            }
        );
        assert_eq!(
            starved.throttle_reason(),
            Some(fleetfn_model::ThrottleReason::Cpu)
        );
        assert!(starved.try_elsewhere());
        assert_eq!(
            starved.to_string(),
            "no runtime worker of the environment came back for another invoke within 20 ms (3 of 4 invokes in flight): its cpu allotment is used up"
        );
        // At the CPU ceiling without a throttled period in the last interval: the same.
        assert!(starved_rejection(false, 3, 4, false, cpu).is_some());
        // Anything else is left to dispatch: a worker came back, every slot is taken
        // (concurrency), or nothing says the CPU is short (a runtime with fewer workers).
        assert_eq!(starved_rejection(true, 3, 4, true, cpu), None);
        assert_eq!(starved_rejection(false, 4, 4, true, cpu), None);
        assert_eq!(starved_rejection(false, 3, 4, false, None), None);
        assert_eq!(starved_rejection(false, 3, 4, false, memory), None);
    }

    #[test]
    fn concurrency_comes_before_ceilings() {
        let idle = || 1;
        let none_idle = || 0;
        assert_eq!(ceiling_rejection(None, idle, 4), None);
        assert_eq!(ceiling_rejection(None, none_idle, 4), None);
        assert_eq!(
            ceiling_rejection(Some((Resource::Memory, 93)), idle, 4),
            Some(Rejected::Saturated {
                resource: Resource::Memory,
                percent: 93,
                ceiling_percent: 90,
            })
        );
        let busy = ceiling_rejection(Some((Resource::Cpu, 99)), none_idle, 4).unwrap();
        assert_eq!(busy, Rejected::Busy { max_concurrency: 4 });
        assert_eq!(
            busy.throttle_reason(),
            Some(fleetfn_model::ThrottleReason::Concurrency)
        );
        let disk = ceiling_rejection(Some((Resource::Disk, 95)), idle, 4).unwrap();
        assert_eq!(
            disk.throttle_reason(),
            Some(fleetfn_model::ThrottleReason::Disk)
        );
        assert_eq!(
            disk.to_string(),
            "the environment's disk use is at 95 % of its allotment (ceiling 90 %)"
        );
    }

    #[test]
    fn init_errors_name_the_runtime_error() {
        let f = init_error_failure(&InitError {
            error_type: "Runtime.ImportModuleError".into(),
            body: Bytes::from_static(br#"{"errorMessage":"Unable to import module 'app': No module named 'app'","errorType":"Runtime.ImportModuleError","requestId":"","stackTrace":[]}"#),
        });
        assert_eq!(f.reason_code, InitReasonCode::RuntimeInitError);
        assert_eq!(
            f.reason,
            "Runtime.ImportModuleError: Unable to import module 'app': No module named 'app'"
        );
    }

    #[test]
    fn env_ids_must_be_plain_names() {
        let mut spec = EnvironmentSpec {
            env_id: "ok-1.a_b".into(),
            function_name: "f".into(),
            version: "1".into(),
            qualified_arn: "arn".into(),
            runtime: "provided.al2023".into(),
            handler: None,
            code_dir: "/code".into(),
            memory_mb: 2048,
            timeout_secs: 3,
            max_concurrency: 1,
            vcpus: 1.0,
            cpu_scale: 1.0,
            ephemeral_storage_mb: 512,
            region: "us-east-1".into(),
            env_vars: Default::default(),
            logs: None,
            init_timeout: None,
            credentials: None,
            opt_dir: None,
        };
        assert!(validate_spec(&spec).is_ok());
        assert_eq!(spec.init_timeout(), Duration::from_secs(130));
        spec.timeout_secs = 900;
        assert_eq!(spec.init_timeout(), Duration::from_secs(900));
        for bad in ["", ".", "..", "a/b", "a b"] {
            spec.env_id = bad.into();
            assert!(validate_spec(&spec).is_err(), "{bad:?}");
        }
        assert!(
            log_stream_name(&EnvironmentSpec {
                env_id: "e".into(),
                ..spec
            })
            .ends_with("/[1]e")
        );
    }
}
