//! The Prometheus metrics of `fleetfn serve`, named after Lambda Managed Instances' CloudWatch
//! metrics (docs/METRICS.md). Owns every metric family: each is declared, typed (label sets
//! derive `EncodeLabelSet`) and registered in one place, [`Metrics::new`], and rendered as
//! OpenMetrics text by [`Metrics::render`] (or [`Metrics::render_as`] a negotiated [`Format`]),
//! which `fleetfn serve --metrics-listen` serves on `GET /metrics`. No HTTP here.
//!
//! Writers: the invoke path records through cached per-version handles ([`VersionMetrics`], no
//! label hashing per invoke) and [`Metrics::router_try`]; the gauges are replaced once per
//! scaler tick from a plain [`GaugeSnapshot`] by [`Metrics::publish`], which also removes the
//! series of whatever is gone. Nothing here reads the data plane.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub use fleetfn_model::ThrottleReason;
use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds (seconds) of the invoke duration buckets: 5 ms to Lambda's 15 min timeout.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];
/// Upper bounds (seconds) of the async event age buckets: 10 ms to the 6 h maximum age.
pub const EVENT_AGE_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0, 3600.0, 21600.0,
];
/// Upper bounds (seconds) of the init duration buckets: 50 ms to LMI's 15 min init limit.
pub const INIT_DURATION_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// A function version as users name it: `function="hello", version="1"` (or
/// `"$LATEST.PUBLISHED"`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct VersionLabels {
    pub function: String,
    pub version: String,
}

impl VersionLabels {
    pub fn new(function: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            function: function.into(),
            version: version.into(),
        }
    }
}

/// Life of an execution environment (the states of `fleetfn status`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum EnvironmentState {
    Starting,
    Ready,
    Draining,
    Failed,
    Exited,
}

impl EnvironmentState {
    pub const ALL: [Self; 5] = [
        Self::Starting,
        Self::Ready,
        Self::Draining,
        Self::Failed,
        Self::Exited,
    ];
}

/// A version's environments in one state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvironmentLabels {
    #[prometheus(flatten)]
    pub version: VersionLabels,
    pub state: EnvironmentState,
}

/// CPU time of a version's environments in one mode (Lambda Insights `cpu_user_time`,
/// `cpu_system_time`; their sum is `cpu_total_time`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuMode {
    User,
    System,
}

impl EncodeLabelValue for CpuMode {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = match self {
            Self::User => "user",
            Self::System => "system",
        };
        EncodeLabelValue::encode(&s, encoder)
    }
}

/// A version's CPU time in one mode.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CpuModeLabels {
    #[prometheus(flatten)]
    pub version: VersionLabels,
    pub mode: CpuMode,
}

/// What a version's environments used between two agent reports (the Lambda Insights
/// counters): CPU time by mode and network bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EnvironmentUsage {
    pub cpu_user: Duration,
    pub cpu_system: Duration,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
}

/// A function (the asynchronous-invocation metrics, which AWS reports per function).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct FunctionLabels {
    pub function: String,
}

/// Why an asynchronous event was dropped (after its records were sent where configured).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum DropReason {
    /// The function failed on every attempt (`MaximumRetryAttempts` + 1).
    RetriesExhausted,
    /// `MaximumEventAgeInSeconds` passed before an attempt succeeded (throttles, errors).
    EventAgeExceeded,
    /// The function (or the qualifier it was invoked with) no longer exists.
    FunctionNotFound,
    /// The stored event could not be read.
    Unreadable,
}

/// Events of a function dropped for one reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabels {
    pub function: String,
    pub reason: DropReason,
}

/// What happened to messages of an event source mapping.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum EsmOutcome {
    /// Received from the queue.
    Polled,
    /// Dropped by the mapping's filter criteria (deleted, as AWS does).
    Filtered,
    /// Processed by the function and deleted.
    Processed,
    /// Left in the queue after a failed invoke or a reported item failure.
    Failed,
}

/// Messages of one mapping with one outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EsmLabels {
    pub mapping: String,
    pub function: String,
    pub outcome: EsmOutcome,
}

/// Requests to a function's URL answered with one class of status (`2xx` … `5xx`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct UrlLabels {
    pub function: String,
    pub status: String,
}

/// A capacity provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ProviderLabels {
    pub capacity_provider: String,
}

/// A capacity provider's instances of one type (CloudWatch dimensions `CapacityProviderName`,
/// `InstanceType`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ProviderTypeLabels {
    pub capacity_provider: String,
    pub instance_type: String,
}

/// Life of an instance (the states of `fleetfn status`, lower case).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum InstanceState {
    Pending,
    Running,
    Draining,
    Terminated,
}

impl EncodeLabelValue for InstanceState {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Draining => "draining",
            Self::Terminated => "terminated",
        };
        EncodeLabelValue::encode(&s, encoder)
    }
}

/// A provider's instances of one type in one zone and state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct InstanceLabels {
    #[prometheus(flatten)]
    pub provider_type: ProviderTypeLabels,
    pub zone: String,
    pub state: InstanceState,
}

/// The help text of a reason's throttle counter (its CloudWatch metric in parentheses).
fn throttle_help(reason: ThrottleReason) -> &'static str {
    match reason {
        ThrottleReason::Concurrency => {
            "Throttles because every environment was at its concurrency limit (CloudWatch ConcurrencyThrottles)"
        }
        ThrottleReason::Cpu => {
            "Throttles because the environments were over their CPU ceiling (CloudWatch CPUThrottles)"
        }
        ThrottleReason::Memory => {
            "Throttles because the environments were over their memory ceiling (CloudWatch MemoryThrottles)"
        }
        ThrottleReason::Disk => {
            "Throttles because the environments' /tmp was nearly full (CloudWatch DiskThrottles)"
        }
    }
}

/// How one agent round trip of the router ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum TryOutcome {
    /// The agent ran the invoke (a function error included).
    Done = 0,
    /// The agent refused it (concurrency, CPU, memory or disk ceiling).
    Rejected = 1,
    /// The environment was no longer there.
    Gone = 2,
    /// The agent could not be reached; the invoke did not run.
    Unreachable = 3,
    /// The exchange broke after the invoke was sent (it may have run).
    Failed = 4,
    /// The agent could not pass the invoke to the runtime.
    Invalid = 5,
}

impl TryOutcome {
    pub const ALL: [Self; 6] = [
        Self::Done,
        Self::Rejected,
        Self::Gone,
        Self::Unreachable,
        Self::Failed,
        Self::Invalid,
    ];
}

impl EncodeLabelValue for TryOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = match self {
            Self::Done => "done",
            Self::Rejected => "rejected",
            Self::Gone => "gone",
            Self::Unreachable => "unreachable",
            Self::Failed => "failed",
            Self::Invalid => "invalid",
        };
        EncodeLabelValue::encode(&s, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TryLabels {
    pub outcome: TryOutcome,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn event_age_histogram() -> Histogram {
    Histogram::new(EVENT_AGE_BUCKETS)
}

fn init_duration_histogram() -> Histogram {
    Histogram::new(INIT_DURATION_BUCKETS)
}

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for first; ends with `# EOF`).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (counters named `…_total` in `# TYPE` too).
    PrometheusText,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// What an `Accept` header asks for: OpenMetrics when it names it, else Prometheus text.
    pub fn negotiate(accept: Option<&str>) -> Self {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            Self::OpenMetrics
        } else {
            Self::PrometheusText
        }
    }
}

fn fl(function: &str) -> FunctionLabels {
    FunctionLabels {
        function: function.to_owned(),
    }
}

/// Encoding the registry failed (only a label value encoder can fail; none of ours does).
#[derive(Debug, thiserror::Error)]
#[error("encoding the metrics failed")]
pub struct RenderError(#[from] std::fmt::Error);

/// Every metric family of fleetfn, registered in [`Metrics::new`]. Cheap to share (`Arc`);
/// every update is an atomic or a short lock on one series.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,

    // Per function version: the invoke path.
    invocations: Family<VersionLabels, Counter>,
    errors: Family<VersionLabels, Counter>,
    throttles: Family<VersionLabels, Counter>,
    /// Indexed by [`ThrottleReason`].
    throttles_by_reason: [Family<VersionLabels, Counter>; ThrottleReason::COUNT],
    duration: HistogramFamily<VersionLabels>,
    init_duration: HistogramFamily<VersionLabels>,

    // Per function version: what its environments used (agent reports, ≈ 1 s).
    environment_cpu_seconds: Family<CpuModeLabels, FloatCounter>,
    environment_rx: Family<VersionLabels, Counter>,
    environment_tx: Family<VersionLabels, Counter>,

    // Per function version: gauges refreshed by the scaler tick.
    environments: Family<EnvironmentLabels, Gauge>,
    concurrency: Family<VersionLabels, Gauge>,
    concurrency_limit: Family<VersionLabels, Gauge>,
    environment_cpu: Family<VersionLabels, FloatGauge>,
    environment_memory: Family<VersionLabels, FloatGauge>,
    environment_memory_max: Family<VersionLabels, Gauge>,
    environment_memory_size: Family<VersionLabels, Gauge>,
    environment_tmp_used: Family<VersionLabels, Gauge>,
    environment_tmp_size: Family<VersionLabels, Gauge>,
    desired_environments: Family<VersionLabels, Gauge>,
    actual_environments: Family<VersionLabels, Gauge>,

    // Per capacity provider and instance type.
    provider_cpu: Family<ProviderTypeLabels, FloatGauge>,
    provider_memory: Family<ProviderTypeLabels, FloatGauge>,
    vcpus_allocated: Family<ProviderTypeLabels, FloatGauge>,
    vcpus_available: Family<ProviderTypeLabels, FloatGauge>,
    memory_allocated: Family<ProviderTypeLabels, Gauge>,
    memory_available: Family<ProviderTypeLabels, Gauge>,
    instances: Family<InstanceLabels, Gauge>,

    // Per capacity provider: the scaler's instances.
    desired_instances: Family<ProviderLabels, Gauge>,
    actual_instances: Family<ProviderLabels, Gauge>,

    /// `fleetfn_router_tries_total` series, indexed by [`TryOutcome`], so a try hashes no labels.
    tries: [Counter; 6],

    // Per function: asynchronous invocation.
    async_received: Family<FunctionLabels, Counter>,
    async_age: HistogramFamily<FunctionLabels>,
    async_dropped: Family<DroppedLabels, Counter>,
    destination_failures: Family<FunctionLabels, Counter>,
    dead_letter_errors: Family<FunctionLabels, Counter>,
    esm_messages: Family<EsmLabels, Counter>,

    // Per function: function URLs.
    url_requests: Family<UrlLabels, Counter>,
    url_duration: HistogramFamily<FunctionLabels>,
    url_first_byte: HistogramFamily<FunctionLabels>,
    stream_first_byte: HistogramFamily<FunctionLabels>,

    /// The label sets the last [`Metrics::publish`] set, to remove those that are gone.
    published: Mutex<Published>,
}

#[derive(Debug, Default)]
struct Published {
    versions: HashSet<VersionLabels>,
    provider_types: HashSet<ProviderTypeLabels>,
    instances: HashSet<InstanceLabels>,
    providers: HashSet<ProviderLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Declares and registers every family (prefix `fleetfn_`).
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("fleetfn");
        let invocations = Family::default();
        r.register(
            "invocations",
            "Invokes that reached an execution environment, function errors included (CloudWatch Invocations)",
            invocations.clone(),
        );
        let errors = Family::default();
        r.register(
            "errors",
            "Invokes that ended in a function error or could not be completed (CloudWatch Errors)",
            errors.clone(),
        );
        let throttles = Family::default();
        r.register(
            "throttles",
            "Invokes answered 429 because no execution environment could take them, all reasons (CloudWatch Throttles)",
            throttles.clone(),
        );
        let throttles_by_reason: [Family<VersionLabels, Counter>; ThrottleReason::COUNT] =
            Default::default();
        for reason in ThrottleReason::ALL {
            r.register(
                reason.metric_name(),
                throttle_help(reason),
                throttles_by_reason[reason.index()].clone(),
            );
        }
        let duration: HistogramFamily<VersionLabels> =
            Family::new_with_constructor(duration_histogram);
        r.register_with_unit(
            "duration",
            "Time from sending an invoke to its environment to its answer (CloudWatch Duration)",
            Unit::Seconds,
            duration.clone(),
        );
        let init_duration: HistogramFamily<VersionLabels> =
            Family::new_with_constructor(init_duration_histogram);
        r.register_with_unit(
            "init_duration",
            "Time from an environment's start to Ready, observed once per environment (Init Duration of INIT_REPORT)",
            Unit::Seconds,
            init_duration.clone(),
        );

        let environment_cpu_seconds = Family::default();
        r.register_with_unit(
            "execution_environment_cpu",
            "CPU time the version's environments used, by mode (user, system), from their cgroup or process tree; the sum of both is Lambda Insights cpu_total_time",
            Unit::Seconds,
            environment_cpu_seconds.clone(),
        );
        let environment_rx = Family::default();
        r.register_with_unit(
            "execution_environment_network_receive",
            "Bytes the version's environments received in their network namespace, loopback included (Lambda Insights rx_bytes)",
            Unit::Bytes,
            environment_rx.clone(),
        );
        let environment_tx = Family::default();
        r.register_with_unit(
            "execution_environment_network_transmit",
            "Bytes the version's environments sent from their network namespace, loopback included (Lambda Insights tx_bytes)",
            Unit::Bytes,
            environment_tx.clone(),
        );

        let environments = Family::default();
        r.register(
            "execution_environments",
            "Execution environments of the version by state",
            environments.clone(),
        );
        let concurrency = Family::default();
        r.register(
            "execution_environment_concurrency",
            "Most invokes in flight on one of the version's environments, sampled each second (CloudWatch ExecutionEnvironmentConcurrency)",
            concurrency.clone(),
        );
        let concurrency_limit = Family::default();
        r.register(
            "execution_environment_concurrency_limit",
            "Invokes one environment of the version takes at once: PerExecutionEnvironmentMaxConcurrency (CloudWatch ExecutionEnvironmentConcurrencyLimit)",
            concurrency_limit.clone(),
        );
        let environment_cpu = Family::default();
        r.register(
            "execution_environment_cpu_utilization",
            "Average CPU use of the version's Ready environments over the last second, as a fraction of their vCPUs (CloudWatch ExecutionEnvironmentCPUUtilization, in percent there)",
            environment_cpu.clone(),
        );
        let environment_memory = Family::default();
        r.register(
            "execution_environment_memory_utilization",
            "Average memory use of the version's Ready environments as a fraction of MemorySize (CloudWatch ExecutionEnvironmentMemoryUtilization, in percent there)",
            environment_memory.clone(),
        );
        let environment_memory_max = Family::default();
        r.register_with_unit(
            "execution_environment_memory_max",
            "Highest memory use of any of the version's environments since it started (Lambda Insights used_memory_max)",
            Unit::Bytes,
            environment_memory_max.clone(),
        );
        let environment_memory_size = Family::default();
        r.register_with_unit(
            "execution_environment_memory_size",
            "Memory of each of the version's environments: MemorySize (Lambda Insights total_memory)",
            Unit::Bytes,
            environment_memory_size.clone(),
        );
        let environment_tmp_used = Family::default();
        r.register_with_unit(
            "execution_environment_tmp_used",
            "Bytes in use in /tmp of the version's fullest environment (Lambda Insights tmp_used)",
            Unit::Bytes,
            environment_tmp_used.clone(),
        );
        let environment_tmp_size = Family::default();
        r.register_with_unit(
            "execution_environment_tmp_size",
            "Size of each of the version's environments' /tmp: EphemeralStorage (Lambda Insights tmp_max)",
            Unit::Bytes,
            environment_tmp_size.clone(),
        );
        let desired_environments = Family::default();
        r.register(
            "scaler_desired_environments",
            "Environments the scaler wants for the version, within its min and max",
            desired_environments.clone(),
        );
        let actual_environments = Family::default();
        r.register(
            "scaler_actual_environments",
            "Ready environments of the version's current publish",
            actual_environments.clone(),
        );

        let provider_cpu = Family::default();
        r.register(
            "capacity_provider_cpu_utilization",
            "CPU used by environments on the provider's running instances of the type, as a fraction of their vCPUs (CloudWatch CPUUtilization, in percent there)",
            provider_cpu.clone(),
        );
        let provider_memory = Family::default();
        r.register(
            "capacity_provider_memory_utilization",
            "Memory used by environments on the provider's running instances of the type, as a fraction of their memory (CloudWatch MemoryUtilization, in percent there)",
            provider_memory.clone(),
        );
        let vcpus_allocated = Family::default();
        r.register(
            "capacity_provider_vcpus_allocated",
            "vCPUs allocated to execution environments on the provider's instances of the type (CloudWatch vCPUAllocated)",
            vcpus_allocated.clone(),
        );
        let vcpus_available = Family::default();
        r.register(
            "capacity_provider_vcpus_available",
            "vCPUs still free for environments on the provider's pending and running instances of the type, after the 1 vCPU each instance keeps (CloudWatch vCPUAvailable)",
            vcpus_available.clone(),
        );
        let memory_allocated = Family::default();
        r.register_with_unit(
            "capacity_provider_memory_allocated",
            "Memory allocated to execution environments on the provider's instances of the type (CloudWatch MemoryAllocated)",
            Unit::Bytes,
            memory_allocated.clone(),
        );
        let memory_available = Family::default();
        r.register_with_unit(
            "capacity_provider_memory_available",
            "Memory still free for environments on the provider's pending and running instances of the type, after the 1 GiB each instance keeps (CloudWatch MemoryAvailable)",
            Unit::Bytes,
            memory_available.clone(),
        );
        let instances = Family::default();
        r.register(
            "instances",
            "Instances of the provider by type, zone and state",
            instances.clone(),
        );
        let desired_instances = Family::default();
        r.register(
            "scaler_desired_instances",
            "Instances placement wants for the provider: pending and running ones it keeps plus launches it could not start yet",
            desired_instances.clone(),
        );
        let actual_instances = Family::default();
        r.register(
            "scaler_actual_instances",
            "Running instances of the provider",
            actual_instances.clone(),
        );

        let router_tries: Family<TryLabels, Counter> = Family::default();
        r.register(
            "router_tries",
            "Agent round trips of the invoke router by outcome",
            router_tries.clone(),
        );
        let tries =
            TryOutcome::ALL.map(|outcome| router_tries.get_or_create_owned(&TryLabels { outcome }));

        let async_received = Family::default();
        r.register(
            "async_events_received",
            "Asynchronous invokes stored in the queue (CloudWatch AsyncEventsReceived)",
            async_received.clone(),
        );
        let async_age: HistogramFamily<FunctionLabels> =
            Family::new_with_constructor(event_age_histogram);
        r.register_with_unit(
            "async_event_age",
            "Time from an asynchronous event's enqueue to each attempt to invoke it (CloudWatch AsyncEventAge)",
            Unit::Seconds,
            async_age.clone(),
        );
        let async_dropped = Family::default();
        r.register(
            "async_events_dropped",
            "Asynchronous events dropped without a successful invoke, by reason, after their records went to the configured destination or dead-letter queue (CloudWatch AsyncEventsDropped)",
            async_dropped.clone(),
        );
        let destination_failures = Family::default();
        r.register(
            "destination_delivery_failures",
            "Records of asynchronous invokes that could not be delivered to their destination (CloudWatch DestinationDeliveryFailures)",
            destination_failures.clone(),
        );
        let dead_letter_errors = Family::default();
        r.register(
            "dead_letter_errors",
            "Failed asynchronous events that could not be sent to the dead-letter queue (CloudWatch DeadLetterErrors)",
            dead_letter_errors.clone(),
        );

        let esm_messages = Family::default();
        r.register(
            "event_source_messages",
            "Messages of SQS event source mappings by outcome: polled, filtered out, processed (deleted) or failed (left for redelivery)",
            esm_messages.clone(),
        );

        let url_requests = Family::default();
        r.register(
            "url_requests",
            "Requests to function URLs by function and status class (2xx, 3xx, 4xx, 5xx), the endpoint's own answers (auth, CORS preflights, 502s) included",
            url_requests.clone(),
        );
        let url_duration: HistogramFamily<FunctionLabels> =
            Family::new_with_constructor(duration_histogram);
        r.register_with_unit(
            "url_request_duration",
            "Time from a function URL request's arrival to the last byte of its response",
            Unit::Seconds,
            url_duration.clone(),
        );
        let url_first_byte: HistogramFamily<FunctionLabels> =
            Family::new_with_constructor(duration_histogram);
        r.register_with_unit(
            "url_stream_first_byte",
            "Time from a RESPONSE_STREAM function URL request's arrival to its response head (the first bytes the function streamed)",
            Unit::Seconds,
            url_first_byte.clone(),
        );

        let stream_first_byte: HistogramFamily<FunctionLabels> =
            Family::new_with_constructor(duration_histogram);
        r.register_with_unit(
            "stream_first_byte",
            "Time from the router sending a streamed invoke to an environment to the first part of its response (a chunk, or the end of an empty stream)",
            Unit::Seconds,
            stream_first_byte.clone(),
        );

        Self {
            registry: r,
            invocations,
            errors,
            throttles,
            throttles_by_reason,
            duration,
            init_duration,
            environment_cpu_seconds,
            environment_rx,
            environment_tx,
            environments,
            concurrency,
            concurrency_limit,
            environment_cpu,
            environment_memory,
            environment_memory_max,
            environment_memory_size,
            environment_tmp_used,
            environment_tmp_size,
            desired_environments,
            actual_environments,
            provider_cpu,
            provider_memory,
            vcpus_allocated,
            vcpus_available,
            memory_allocated,
            memory_available,
            instances,
            desired_instances,
            actual_instances,
            tries,
            async_received,
            async_age,
            async_dropped,
            destination_failures,
            dead_letter_errors,
            esm_messages,
            url_requests,
            url_duration,
            url_first_byte,
            stream_first_byte,
            published: Mutex::default(),
        }
    }

    /// The whole registry as OpenMetrics text (ends with `# EOF`).
    pub fn render(&self) -> Result<String, RenderError> {
        self.render_as(Format::OpenMetrics)
    }

    /// The whole registry in `format`.
    pub fn render_as(&self, format: Format) -> Result<String, RenderError> {
        let mut out = String::with_capacity(8 * 1024);
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
            }
        }
        Ok(out)
    }

    /// The invoke-path series of one version (created at 0 if new). Keep the handles: updating
    /// them hashes no labels. They stop being exported once [`Metrics::remove_version`] runs.
    pub fn version(&self, labels: VersionLabels) -> VersionMetrics {
        VersionMetrics {
            invocations: self.invocations.get_or_create_owned(&labels),
            errors: self.errors.get_or_create_owned(&labels),
            throttles: self.throttles.get_or_create_owned(&labels),
            throttles_by_reason: ThrottleReason::ALL
                .map(|r| self.throttles_by_reason[r.index()].get_or_create_owned(&labels)),
            duration: self.duration.get_or_create_owned(&labels),
            init_duration: self.init_duration.get_or_create_owned(&labels),
            cpu_seconds: [CpuMode::User, CpuMode::System].map(|mode| {
                self.environment_cpu_seconds
                    .get_or_create_owned(&CpuModeLabels {
                        version: labels.clone(),
                        mode,
                    })
            }),
            network_rx_bytes: self.environment_rx.get_or_create_owned(&labels),
            network_tx_bytes: self.environment_tx.get_or_create_owned(&labels),
            labels,
        }
    }

    /// Removes every series of a version (it was deleted or is no longer deployed).
    pub fn remove_version(&self, labels: &VersionLabels) {
        self.invocations.remove(labels);
        self.errors.remove(labels);
        self.throttles.remove(labels);
        for f in &self.throttles_by_reason {
            f.remove(labels);
        }
        self.duration.remove(labels);
        self.init_duration.remove(labels);
        for mode in [CpuMode::User, CpuMode::System] {
            self.environment_cpu_seconds.remove(&CpuModeLabels {
                version: labels.clone(),
                mode,
            });
        }
        self.environment_rx.remove(labels);
        self.environment_tx.remove(labels);
        self.remove_version_gauges(labels);
    }

    fn remove_version_gauges(&self, labels: &VersionLabels) {
        for state in EnvironmentState::ALL {
            self.environments.remove(&EnvironmentLabels {
                version: labels.clone(),
                state,
            });
        }
        for f in [
            &self.concurrency,
            &self.concurrency_limit,
            &self.desired_environments,
            &self.actual_environments,
            &self.environment_memory_max,
            &self.environment_memory_size,
            &self.environment_tmp_used,
            &self.environment_tmp_size,
        ] {
            f.remove(labels);
        }
        self.environment_cpu.remove(labels);
        self.environment_memory.remove(labels);
    }

    /// Counts a function URL request answered with `status` after `elapsed` (to its last byte).
    pub fn url_request(&self, function: &str, status: u16, elapsed: Duration) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.url_requests
            .get_or_create(&UrlLabels {
                function: function.to_owned(),
                status: class.to_owned(),
            })
            .inc();
        self.url_duration
            .get_or_create(&fl(function))
            .observe(elapsed.as_secs_f64());
    }

    /// Observes the time to the response head of a streamed function URL response.
    pub fn url_stream_first_byte(&self, function: &str, elapsed: Duration) {
        self.url_first_byte
            .get_or_create(&fl(function))
            .observe(elapsed.as_secs_f64());
    }

    /// Observes the time from sending a streamed invoke of `function` to its environment to
    /// the first part of its response.
    pub fn stream_first_byte(&self, function: &str, elapsed: Duration) {
        self.stream_first_byte
            .get_or_create(&fl(function))
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an asynchronous event stored for `function`.
    pub fn async_received(&self, function: &str) {
        self.async_received.get_or_create(&fl(function)).inc();
    }

    /// Observes an asynchronous event's age at an attempt to invoke it.
    pub fn async_attempt(&self, function: &str, age: Duration) {
        self.async_age
            .get_or_create(&fl(function))
            .observe(age.as_secs_f64());
    }

    /// Counts an asynchronous event dropped for `reason`.
    pub fn async_dropped(&self, function: &str, reason: DropReason) {
        self.async_dropped
            .get_or_create(&DroppedLabels {
                function: function.to_owned(),
                reason,
            })
            .inc();
    }

    /// Counts a destination record that could not be delivered.
    pub fn destination_delivery_failed(&self, function: &str) {
        self.destination_failures.get_or_create(&fl(function)).inc();
    }

    /// Counts a failed event that could not be sent to the dead-letter queue.
    pub fn dead_letter_error(&self, function: &str) {
        self.dead_letter_errors.get_or_create(&fl(function)).inc();
    }

    /// Counts `n` messages of event source mapping `mapping` with `outcome`.
    pub fn esm(&self, mapping: &str, function: &str, outcome: EsmOutcome, n: usize) {
        if n == 0 {
            return;
        }
        self.esm_messages
            .get_or_create(&EsmLabels {
                mapping: mapping.to_owned(),
                function: function.to_owned(),
                outcome,
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Counts one agent round trip of the router.
    pub fn router_try(&self, outcome: TryOutcome) {
        self.tries[outcome as usize].inc();
    }

    /// Replaces every gauge with the snapshot: series in it are set, series the previous
    /// snapshot had and this one has not are removed (so a scrape never misses a series that
    /// continues). Counters are untouched.
    pub fn publish(&self, snap: &GaugeSnapshot) {
        let mut now = Published::default();
        for v in &snap.versions {
            for (state, n) in EnvironmentState::ALL.iter().zip(v.environments) {
                self.environments
                    .get_or_create(&EnvironmentLabels {
                        version: v.labels.clone(),
                        state: *state,
                    })
                    .set(n);
            }
            self.concurrency.get_or_create(&v.labels).set(v.concurrency);
            self.concurrency_limit
                .get_or_create(&v.labels)
                .set(v.concurrency_limit);
            self.environment_cpu
                .get_or_create(&v.labels)
                .set(v.cpu_utilization);
            self.environment_memory
                .get_or_create(&v.labels)
                .set(v.memory_utilization);
            for (f, n) in [
                (&self.environment_memory_max, v.memory_max_bytes),
                (&self.environment_memory_size, v.memory_size_bytes),
                (&self.environment_tmp_used, v.tmp_used_bytes),
                (&self.environment_tmp_size, v.tmp_size_bytes),
            ] {
                match n {
                    Some(n) => {
                        f.get_or_create(&v.labels).set(n);
                    }
                    // Not measured (yet): no series rather than a zero that reads as measured.
                    None => {
                        f.remove(&v.labels);
                    }
                }
            }
            self.desired_environments
                .get_or_create(&v.labels)
                .set(v.desired_environments);
            self.actual_environments
                .get_or_create(&v.labels)
                .set(v.actual_environments);
            now.versions.insert(v.labels.clone());
        }
        for c in &snap.capacity {
            self.provider_cpu
                .get_or_create(&c.labels)
                .set(c.cpu_utilization);
            self.provider_memory
                .get_or_create(&c.labels)
                .set(c.memory_utilization);
            self.vcpus_allocated
                .get_or_create(&c.labels)
                .set(c.vcpus_allocated);
            self.vcpus_available
                .get_or_create(&c.labels)
                .set(c.vcpus_available);
            self.memory_allocated
                .get_or_create(&c.labels)
                .set(c.memory_allocated_bytes);
            self.memory_available
                .get_or_create(&c.labels)
                .set(c.memory_available_bytes);
            now.provider_types.insert(c.labels.clone());
        }
        for (labels, n) in &snap.instances {
            self.instances.get_or_create(labels).set(*n);
            now.instances.insert(labels.clone());
        }
        for p in &snap.providers {
            self.desired_instances
                .get_or_create(&p.labels)
                .set(p.desired_instances);
            self.actual_instances
                .get_or_create(&p.labels)
                .set(p.actual_instances);
            now.providers.insert(p.labels.clone());
        }
        let mut published = self.published.lock();
        for gone in published.versions.difference(&now.versions) {
            self.remove_version_gauges(gone);
        }
        for gone in published.provider_types.difference(&now.provider_types) {
            self.provider_cpu.remove(gone);
            self.provider_memory.remove(gone);
            self.vcpus_allocated.remove(gone);
            self.vcpus_available.remove(gone);
            self.memory_allocated.remove(gone);
            self.memory_available.remove(gone);
        }
        for gone in published.instances.difference(&now.instances) {
            self.instances.remove(gone);
        }
        for gone in published.providers.difference(&now.providers) {
            self.desired_instances.remove(gone);
            self.actual_instances.remove(gone);
        }
        *published = now;
    }
}

/// The invoke-path series of one version, cached by the data plane: each update is an atomic
/// add (counters) or one short uncontended lock (histograms), with no label hashing.
#[derive(Clone, Debug)]
pub struct VersionMetrics {
    labels: VersionLabels,
    invocations: Counter,
    errors: Counter,
    throttles: Counter,
    /// Indexed by [`ThrottleReason`].
    throttles_by_reason: [Counter; ThrottleReason::COUNT],
    duration: Histogram,
    init_duration: Histogram,
    /// Indexed user, system.
    cpu_seconds: [FloatCounter; 2],
    network_rx_bytes: Counter,
    network_tx_bytes: Counter,
}

impl Default for VersionMetrics {
    /// Series registered nowhere: updates are kept but never exported.
    fn default() -> Self {
        Self {
            labels: VersionLabels::new("", ""),
            invocations: Counter::default(),
            errors: Counter::default(),
            throttles: Counter::default(),
            throttles_by_reason: Default::default(),
            duration: duration_histogram(),
            init_duration: init_duration_histogram(),
            cpu_seconds: Default::default(),
            network_rx_bytes: Counter::default(),
            network_tx_bytes: Counter::default(),
        }
    }
}

impl VersionMetrics {
    pub fn labels(&self) -> &VersionLabels {
        &self.labels
    }

    /// An invoke that reached an environment and ended after `duration`; `error` when it ended
    /// in a function error or the exchange broke.
    pub fn invoked(&self, duration: Duration, error: bool) {
        self.invocations.inc();
        self.duration.observe(duration.as_secs_f64());
        if error {
            self.errors.inc();
        }
    }

    /// An invoke that failed without reaching any environment (every agent unreachable).
    pub fn undeliverable(&self) {
        self.errors.inc();
    }

    /// A throttle, counted in the total and under exactly one reason.
    pub fn throttled(&self, reason: ThrottleReason) {
        self.throttles.inc();
        self.throttles_by_reason[reason.index()].inc();
    }

    /// An environment of the version turned Ready `init` after it was started.
    pub fn initialized(&self, init: Duration) {
        self.init_duration.observe(init.as_secs_f64());
    }

    /// Adds what one of the version's environments used since its previous report.
    pub fn used(&self, u: &EnvironmentUsage) {
        self.cpu_seconds[0].inc_by(u.cpu_user.as_secs_f64());
        self.cpu_seconds[1].inc_by(u.cpu_system.as_secs_f64());
        self.network_rx_bytes.inc_by(u.network_rx_bytes);
        self.network_tx_bytes.inc_by(u.network_tx_bytes);
    }
}

/// The gauges of one version at one refresh.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionGauges {
    pub labels: VersionLabels,
    /// Environments by state, indexed like [`EnvironmentState::ALL`].
    pub environments: [i64; 5],
    pub concurrency: i64,
    pub concurrency_limit: i64,
    /// Fractions (0.0–1.0; CPU may briefly exceed 1.0).
    pub cpu_utilization: f64,
    pub memory_utilization: f64,
    pub desired_environments: i64,
    pub actual_environments: i64,
    /// Highest peak memory of the version's environments; `None` when none was measured.
    pub memory_max_bytes: Option<i64>,
    /// `MemorySize` in bytes; `None` when unknown.
    pub memory_size_bytes: Option<i64>,
    /// `/tmp` in use in the fullest environment; `None` when none was measured.
    pub tmp_used_bytes: Option<i64>,
    /// `EphemeralStorage` in bytes; `None` when unknown.
    pub tmp_size_bytes: Option<i64>,
}

/// The gauges of a capacity provider's instances of one type.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityGauges {
    pub labels: ProviderTypeLabels,
    pub cpu_utilization: f64,
    pub memory_utilization: f64,
    pub vcpus_allocated: f64,
    pub vcpus_available: f64,
    pub memory_allocated_bytes: i64,
    pub memory_available_bytes: i64,
}

/// The scaler's instances of one capacity provider.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderGauges {
    pub labels: ProviderLabels,
    pub desired_instances: i64,
    pub actual_instances: i64,
}

/// Every gauge at one refresh; what is not in it is removed by [`Metrics::publish`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GaugeSnapshot {
    pub versions: Vec<VersionGauges>,
    pub capacity: Vec<CapacityGauges>,
    /// Instance counts by provider, type, zone and state.
    pub instances: Vec<(InstanceLabels, i64)>,
    pub providers: Vec<ProviderGauges>,
}

#[cfg(test)]
mod tests;
