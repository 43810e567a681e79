//! Lambda wire shapes (restJson1, PascalCase), shared by the API layer and the service. Request
//! shapes reject unknown fields; response shapes omit absent members, as AWS does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::states::{CapacityProviderState, LastUpdateStatus, State};

pub type Tags = BTreeMap<String, String>;

// ---------------------------------------------------------------------------------------------
// Capacity providers (2025-11-30)

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CapacityProviderVpcConfig {
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CapacityProviderPermissionsConfig {
    #[serde(default)]
    pub capacity_provider_operator_role_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InstanceRequirements {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_instance_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_instance_types: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TargetTrackingScalingPolicy {
    pub predefined_metric_type: String,
    pub target_value: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CapacityProviderScalingConfig {
    #[serde(rename = "MaxVCpuCount", skip_serializing_if = "Option::is_none")]
    pub max_vcpu_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling_policies: Option<Vec<TargetTrackingScalingPolicy>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateCapacityProviderRequest {
    pub capacity_provider_name: Option<String>,
    pub vpc_config: Option<CapacityProviderVpcConfig>,
    pub permissions_config: Option<CapacityProviderPermissionsConfig>,
    pub instance_requirements: Option<InstanceRequirements>,
    pub capacity_provider_scaling_config: Option<CapacityProviderScalingConfig>,
    pub kms_key_arn: Option<String>,
    pub tags: Option<Tags>,
    /// Newer API members, kept verbatim.
    pub propagate_tags: Option<serde_json::Value>,
    pub telemetry_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateCapacityProviderRequest {
    pub capacity_provider_scaling_config: Option<CapacityProviderScalingConfig>,
    pub propagate_tags: Option<serde_json::Value>,
}

/// The `CapacityProvider` shape, also the stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapacityProvider {
    pub capacity_provider_arn: String,
    pub state: CapacityProviderState,
    pub vpc_config: CapacityProviderVpcConfig,
    pub permissions_config: CapacityProviderPermissionsConfig,
    pub instance_requirements: InstanceRequirements,
    pub capacity_provider_scaling_config: CapacityProviderScalingConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    pub last_modified: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapacityProviderResponse {
    pub capacity_provider: CapacityProvider,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListCapacityProvidersResponse {
    pub capacity_providers: Vec<CapacityProvider>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionVersionsByCapacityProviderListItem {
    pub function_arn: String,
    pub state: State,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctionVersionsByCapacityProviderResponse {
    pub capacity_provider_arn: String,
    pub function_versions: Vec<FunctionVersionsByCapacityProviderListItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Functions (2015-03-31)

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LambdaManagedInstancesCapacityProviderConfig {
    #[serde(default)]
    pub capacity_provider_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_execution_environment_max_concurrency: Option<i64>,
    #[serde(
        rename = "ExecutionEnvironmentMemoryGiBPerVCpu",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_gib_per_vcpu: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CapacityProviderConfig {
    #[serde(default)]
    pub lambda_managed_instances_capacity_provider_config:
        Option<LambdaManagedInstancesCapacityProviderConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FunctionCode {
    /// Base64 in JSON.
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
    pub image_uri: Option<String>,
    #[serde(rename = "SourceKMSKeyArn")]
    pub source_kms_key_arn: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Environment {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VpcConfig {
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_allowed_for_dual_stack: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TracingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeadLetterConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EphemeralStorage {
    pub size: i64,
}

impl Default for EphemeralStorage {
    fn default() -> Self {
        Self { size: 512 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LoggingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateFunctionRequest {
    pub function_name: Option<String>,
    pub runtime: Option<String>,
    pub role: Option<String>,
    pub handler: Option<String>,
    pub code: Option<FunctionCode>,
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub memory_size: Option<i64>,
    pub publish: Option<bool>,
    pub vpc_config: Option<VpcConfig>,
    pub package_type: Option<String>,
    pub dead_letter_config: Option<DeadLetterConfig>,
    pub environment: Option<Environment>,
    #[serde(rename = "KMSKeyArn")]
    pub kms_key_arn: Option<String>,
    pub tracing_config: Option<TracingConfig>,
    pub tags: Option<Tags>,
    pub layers: Option<Vec<String>>,
    pub file_system_configs: Option<Vec<serde_json::Value>>,
    pub image_config: Option<serde_json::Value>,
    pub code_signing_config_arn: Option<String>,
    pub architectures: Option<Vec<String>>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    pub snap_start: Option<serde_json::Value>,
    pub logging_config: Option<LoggingConfig>,
    pub capacity_provider_config: Option<CapacityProviderConfig>,
    pub publish_to: Option<String>,
    pub durable_config: Option<serde_json::Value>,
    pub tenancy_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateFunctionCodeRequest {
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
    pub image_uri: Option<String>,
    pub publish: Option<bool>,
    pub dry_run: Option<bool>,
    pub revision_id: Option<String>,
    pub architectures: Option<Vec<String>>,
    #[serde(rename = "SourceKMSKeyArn")]
    pub source_kms_key_arn: Option<String>,
    pub publish_to: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateFunctionConfigurationRequest {
    pub role: Option<String>,
    pub handler: Option<String>,
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub memory_size: Option<i64>,
    pub vpc_config: Option<VpcConfig>,
    pub environment: Option<Environment>,
    pub runtime: Option<String>,
    pub dead_letter_config: Option<DeadLetterConfig>,
    #[serde(rename = "KMSKeyArn")]
    pub kms_key_arn: Option<String>,
    pub tracing_config: Option<TracingConfig>,
    pub revision_id: Option<String>,
    pub layers: Option<Vec<String>>,
    pub file_system_configs: Option<Vec<serde_json::Value>>,
    pub image_config: Option<serde_json::Value>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    pub snap_start: Option<serde_json::Value>,
    pub logging_config: Option<LoggingConfig>,
    pub capacity_provider_config: Option<CapacityProviderConfig>,
    pub durable_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PublishVersionRequest {
    pub code_sha256: Option<String>,
    pub description: Option<String>,
    pub revision_id: Option<String>,
    pub publish_to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentResponse {
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcConfigResponse {
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
}

/// `FunctionConfiguration`: what Get/Create/Update/Publish return, and the stored snapshot of
/// `$LATEST` and of each version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    pub code_size: u64,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub last_modified: String,
    pub code_sha256: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfigResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_config: Option<DeadLetterConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentResponse>,
    #[serde(rename = "KMSKeyArn", skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    pub tracing_config: TracingConfig,
    pub revision_id: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason_code: Option<String>,
    pub last_update_status: LastUpdateStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_status_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_status_reason_code: Option<String>,
    pub package_type: String,
    pub architectures: Vec<String>,
    pub ephemeral_storage: EphemeralStorage,
    pub logging_config: LoggingConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_provider_config: Option<CapacityProviderConfig>,
    /// The layer versions the function uses, in extraction order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<crate::layers::Layer>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionCodeLocation {
    pub repository_type: String,
    pub location: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetFunctionResponse {
    pub configuration: FunctionConfiguration,
    pub code: FunctionCodeLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctionsResponse {
    pub functions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListVersionsByFunctionResponse {
    pub versions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Aliases

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AliasRoutingConfiguration {
    #[serde(default)]
    pub additional_version_weights: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateAliasRequest {
    pub name: Option<String>,
    pub function_version: Option<String>,
    pub description: Option<String>,
    pub routing_config: Option<AliasRoutingConfiguration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpdateAliasRequest {
    pub function_version: Option<String>,
    pub description: Option<String>,
    pub routing_config: Option<AliasRoutingConfiguration>,
    pub revision_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasConfiguration {
    pub alias_arn: String,
    pub name: String,
    pub function_version: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_config: Option<AliasRoutingConfiguration>,
    pub revision_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesResponse {
    pub aliases: Vec<AliasConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Function scaling config

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FunctionScalingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_execution_environments: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_execution_environments: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutFunctionScalingConfigRequest {
    pub function_scaling_config: Option<FunctionScalingConfig>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutFunctionScalingConfigResponse {
    pub function_state: State,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetFunctionScalingConfigResponse {
    pub function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_function_scaling_config: Option<FunctionScalingConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_function_scaling_config: Option<FunctionScalingConfig>,
}

// ---------------------------------------------------------------------------------------------
// Tags and account

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TagResourceRequest {
    pub tags: Option<Tags>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsResponse {
    pub tags: Tags,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountLimit {
    pub total_code_size: u64,
    pub code_size_unzipped: u64,
    pub code_size_zipped: u64,
    pub concurrent_executions: u32,
    pub unreserved_concurrent_executions: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountUsage {
    pub total_code_size: u64,
    pub function_count: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAccountSettingsResponse {
    pub account_limit: AccountLimit,
    pub account_usage: AccountUsage,
}

// ---------------------------------------------------------------------------------------------
// Asynchronous invocation

/// Where records of asynchronous invocations go (`OnSuccess`/`OnFailure`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DestinationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Destination>,
}

/// One destination: an SQS queue, SNS topic, EventBridge bus or Lambda function ARN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Destination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// The body of PutFunctionEventInvokeConfig and UpdateFunctionEventInvokeConfig.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutFunctionEventInvokeConfigRequest {
    pub maximum_retry_attempts: Option<i64>,
    pub maximum_event_age_in_seconds: Option<i64>,
    pub destination_config: Option<DestinationConfig>,
}

/// A function's (version's, alias's) asynchronous invocation configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionEventInvokeConfig {
    /// Seconds since the Unix epoch (the model's `timestamp` in JSON).
    pub last_modified: f64,
    pub function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_config: Option<DestinationConfig>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctionEventInvokeConfigsResponse {
    pub function_event_invoke_configs: Vec<FunctionEventInvokeConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Event source mappings (SQS)

/// `ScalingConfig` of an event source mapping: concurrent invokes it may make.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EsmScalingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_concurrency: Option<i64>,
}

/// `FilterCriteria`: records pass when any filter's pattern matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FilterCriteria {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<FilterPattern>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FilterPattern {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// The body of CreateEventSourceMapping and UpdateEventSourceMapping. Members for other
/// sources (streams, Kafka, MQ, DocumentDB) are read so they can be refused by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EventSourceMappingRequest {
    pub function_name: Option<String>,
    pub event_source_arn: Option<String>,
    pub enabled: Option<bool>,
    pub batch_size: Option<i64>,
    pub maximum_batching_window_in_seconds: Option<i64>,
    pub function_response_types: Option<Vec<String>>,
    pub scaling_config: Option<EsmScalingConfig>,
    pub filter_criteria: Option<FilterCriteria>,
    #[serde(rename = "KMSKeyArn")]
    pub kms_key_arn: Option<String>,
    pub tags: Option<Tags>,
    pub metrics_config: Option<serde_json::Value>,
    pub logging_config: Option<serde_json::Value>,
    pub parallelization_factor: Option<serde_json::Value>,
    pub starting_position: Option<serde_json::Value>,
    pub starting_position_timestamp: Option<serde_json::Value>,
    pub destination_config: Option<serde_json::Value>,
    pub maximum_record_age_in_seconds: Option<serde_json::Value>,
    pub bisect_batch_on_function_error: Option<serde_json::Value>,
    pub maximum_retry_attempts: Option<serde_json::Value>,
    pub tumbling_window_in_seconds: Option<serde_json::Value>,
    pub topics: Option<serde_json::Value>,
    pub queues: Option<serde_json::Value>,
    pub source_access_configurations: Option<serde_json::Value>,
    pub self_managed_event_source: Option<serde_json::Value>,
    pub amazon_managed_kafka_event_source_config: Option<serde_json::Value>,
    pub self_managed_kafka_event_source_config: Option<serde_json::Value>,
    #[serde(rename = "DocumentDBEventSourceConfig")]
    pub document_db_event_source_config: Option<serde_json::Value>,
    pub provisioned_poller_config: Option<serde_json::Value>,
}

impl EventSourceMappingRequest {
    /// The members given that only other kinds of sources take.
    pub fn foreign_members(&self) -> Vec<&'static str> {
        [
            (
                "ParallelizationFactor",
                self.parallelization_factor.is_some(),
            ),
            ("StartingPosition", self.starting_position.is_some()),
            (
                "StartingPositionTimestamp",
                self.starting_position_timestamp.is_some(),
            ),
            ("DestinationConfig", self.destination_config.is_some()),
            (
                "MaximumRecordAgeInSeconds",
                self.maximum_record_age_in_seconds.is_some(),
            ),
            (
                "BisectBatchOnFunctionError",
                self.bisect_batch_on_function_error.is_some(),
            ),
            (
                "MaximumRetryAttempts",
                self.maximum_retry_attempts.is_some(),
            ),
            (
                "TumblingWindowInSeconds",
                self.tumbling_window_in_seconds.is_some(),
            ),
            ("Topics", self.topics.is_some()),
            ("Queues", self.queues.is_some()),
            (
                "SourceAccessConfigurations",
                self.source_access_configurations.is_some(),
            ),
            (
                "SelfManagedEventSource",
                self.self_managed_event_source.is_some(),
            ),
            (
                "AmazonManagedKafkaEventSourceConfig",
                self.amazon_managed_kafka_event_source_config.is_some(),
            ),
            (
                "SelfManagedKafkaEventSourceConfig",
                self.self_managed_kafka_event_source_config.is_some(),
            ),
            (
                "DocumentDBEventSourceConfig",
                self.document_db_event_source_config.is_some(),
            ),
            (
                "ProvisionedPollerConfig",
                self.provisioned_poller_config.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// An event source mapping as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventSourceMappingConfiguration {
    #[serde(rename = "UUID")]
    pub uuid: String,
    pub batch_size: i64,
    pub maximum_batching_window_in_seconds: i64,
    pub event_source_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_criteria: Option<FilterCriteria>,
    pub function_arn: String,
    /// Seconds since the Unix epoch.
    pub last_modified: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_processing_result: Option<String>,
    pub state: String,
    pub state_transition_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_config: Option<EsmScalingConfig>,
    #[serde(rename = "KMSKeyArn", default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    pub event_source_mapping_arn: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListEventSourceMappingsResponse {
    pub event_source_mappings: Vec<EventSourceMappingConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}
