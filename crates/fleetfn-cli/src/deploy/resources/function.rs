//! `AWS::Lambda::Function`: CreateFunction; an update is UpdateFunctionCode when the package or
//! the architectures changed, UpdateFunctionConfiguration when configuration properties changed
//! (removed ones reset to Lambda's defaults, as CloudFormation does), Tag/UntagResource for tags
//! and PutFunctionScalingConfig; `FunctionName` and `PackageType` replace it. Ref is the
//! function's name; attributes `Arn` and `CodeSha256` (what the engine compares code by).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Api, Applied, Current, Desired, OpError, Tag, function_path, lenient, tag_map};
use crate::wait::{Lifecycle, describe};

const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);

/// CloudFormation's properties of AWS::Lambda::Function.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Props {
    #[serde(default, deserialize_with = "lenient::opt_string_list")]
    pub architectures: Option<Vec<String>>,
    #[serde(default)]
    pub capacity_provider_config: Option<CapacityProviderConfig>,
    /// Checked by [`code_source`] (a local path string is accepted too, as `aws cloudformation
    /// package` takes it).
    pub code: Value,
    #[serde(default)]
    pub code_signing_config_arn: Option<String>,
    #[serde(default)]
    pub dead_letter_config: Option<fleetfn_model::types::DeadLetterConfig>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub description: Option<String>,
    #[serde(default)]
    pub durable_config: Option<Value>,
    #[serde(default)]
    pub environment: Option<Environment>,
    #[serde(default)]
    pub ephemeral_storage: Option<EphemeralStorage>,
    #[serde(default)]
    pub file_system_configs: Option<Vec<Value>>,
    #[serde(default)]
    pub function_name: Option<String>,
    #[serde(default)]
    pub function_scaling_config: Option<ScalingConfig>,
    #[serde(default)]
    pub handler: Option<String>,
    #[serde(default)]
    pub image_config: Option<Value>,
    #[serde(default)]
    pub kms_key_arn: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string_list")]
    pub layers: Option<Vec<String>>,
    #[serde(default)]
    pub logging_config: Option<fleetfn_model::types::LoggingConfig>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub memory_size: Option<i64>,
    #[serde(default)]
    pub package_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub publish_to_latest_published: Option<bool>,
    /// Accepted and not used: fleetfn has no recursive-loop detection.
    #[allow(dead_code)]
    #[serde(default)]
    pub recursive_loop: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub reserved_concurrent_executions: Option<i64>,
    pub role: String,
    #[serde(default)]
    pub runtime: Option<String>,
    /// Accepted and not used: fleetfn's runtimes are updated with fleetfn.
    #[allow(dead_code)]
    #[serde(default)]
    pub runtime_management_config: Option<Value>,
    #[serde(default)]
    pub snap_start: Option<Value>,
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
    #[serde(default)]
    pub tenancy_config: Option<Value>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub timeout: Option<i64>,
    #[serde(default)]
    pub tracing_config: Option<fleetfn_model::types::TracingConfig>,
    #[serde(default)]
    pub vpc_config: Option<fleetfn_model::types::VpcConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CapacityProviderConfig {
    pub lambda_managed_instances_capacity_provider_config: LmiConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LmiConfig {
    pub capacity_provider_arn: String,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub per_execution_environment_max_concurrency: Option<i64>,
    #[serde(
        rename = "ExecutionEnvironmentMemoryGiBPerVCpu",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub memory_gib_per_vcpu: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Environment {
    #[serde(default, deserialize_with = "lenient::opt_string_map")]
    pub variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EphemeralStorage {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub size: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ScalingConfig {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub min_execution_environments: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_execution_environments: Option<i64>,
}

/// Where a function's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeSource {
    /// `Code.ZipFile`: source text.
    Inline(String),
    /// A local path (a `Code` string, or the SAM transform's local `CodeUri`).
    Path(String),
    /// `Code.S3Bucket`/`S3Key`: looked up in the CDK asset manifests.
    S3 { bucket: String, key: String },
}

/// The bucket name the SAM transform writes for a local `CodeUri` (its key is the path).
pub const LOCAL_BUCKET: &str = "fleetfn-local";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CodeSpec {
    #[serde(default)]
    zip_file: Option<String>,
    #[serde(default)]
    s3_bucket: Option<String>,
    #[serde(default)]
    s3_key: Option<String>,
    #[serde(default)]
    s3_object_version: Option<String>,
    #[serde(default)]
    s3_object_storage_mode: Option<String>,
    #[serde(default)]
    image_uri: Option<String>,
    #[serde(default)]
    source_kms_key_arn: Option<String>,
}

/// Reads the `Code` property.
pub fn code_source(code: &Value) -> Result<CodeSource, OpError> {
    if let Value::String(path) = code {
        return Ok(CodeSource::Path(path.clone()));
    }
    let spec: CodeSpec = super::typed(code)
        .map_err(|e| OpError::validation(e.message.replace("Properties", "Code")))?;
    if spec.image_uri.is_some() {
        return Err(OpError::validation(
            "Code.ImageUri: container images are not supported by fleetfn; use a .zip package",
        ));
    }
    let _ = (spec.s3_object_version, spec.s3_object_storage_mode);
    let _ = spec.source_kms_key_arn;
    match (spec.zip_file, spec.s3_bucket, spec.s3_key) {
        (Some(text), None, None) => Ok(CodeSource::Inline(text)),
        (None, Some(bucket), Some(key)) if bucket == LOCAL_BUCKET => Ok(CodeSource::Path(key)),
        (None, Some(bucket), Some(key)) => Ok(CodeSource::S3 { bucket, key }),
        _ => Err(OpError::validation(
            "Code needs either ZipFile, or S3Bucket and S3Key (fleetfn resolves S3Key through \
             the CDK asset manifest next to the template), or a local path",
        )),
    }
}

impl Props {
    pub fn from_value(v: &Value) -> Result<Self, OpError> {
        let p: Props = super::typed(v)?;
        code_source(&p.code)?;
        if p.reserved_concurrent_executions.is_some() {
            return Err(OpError::validation(
                "ReservedConcurrentExecutions is not supported by fleetfn (there is no \
                 PutFunctionConcurrency); remove it",
            ));
        }
        if p.package_type.as_deref().is_some_and(|t| t != "Zip") {
            return Err(OpError::validation(
                "PackageType: only Zip is supported by fleetfn",
            ));
        }
        Ok(p)
    }

    fn publish_to(&self) -> Option<&'static str> {
        self.publish_to_latest_published
            .unwrap_or(false)
            .then_some("LATEST_PUBLISHED")
    }
}

/// The configuration members of CreateFunction and UpdateFunctionConfiguration.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigBody {
    role: String,
    handler: Option<String>,
    description: Option<String>,
    timeout: Option<i64>,
    memory_size: Option<i64>,
    vpc_config: Option<fleetfn_model::types::VpcConfig>,
    environment: Option<Environment>,
    runtime: Option<String>,
    dead_letter_config: Option<fleetfn_model::types::DeadLetterConfig>,
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<String>,
    tracing_config: Option<fleetfn_model::types::TracingConfig>,
    layers: Option<Vec<String>>,
    file_system_configs: Option<Vec<Value>>,
    image_config: Option<Value>,
    ephemeral_storage: Option<EphemeralStorage>,
    snap_start: Option<Value>,
    logging_config: Option<fleetfn_model::types::LoggingConfig>,
    capacity_provider_config: Option<CapacityProviderConfig>,
    durable_config: Option<Value>,
}

impl ConfigBody {
    fn from(p: &Props) -> Self {
        Self {
            role: p.role.clone(),
            handler: p.handler.clone(),
            description: p.description.clone(),
            timeout: p.timeout,
            memory_size: p.memory_size,
            vpc_config: p.vpc_config.clone(),
            environment: p.environment.clone(),
            runtime: p.runtime.clone(),
            dead_letter_config: p.dead_letter_config.clone(),
            kms_key_arn: p.kms_key_arn.clone(),
            tracing_config: p.tracing_config.clone(),
            layers: p.layers.clone(),
            file_system_configs: p.file_system_configs.clone(),
            image_config: p.image_config.clone(),
            ephemeral_storage: p.ephemeral_storage.clone(),
            snap_start: p.snap_start.clone(),
            logging_config: p.logging_config.clone(),
            capacity_provider_config: p.capacity_provider_config.clone(),
            durable_config: p.durable_config.clone(),
        }
    }

    /// Properties the template no longer sets go back to Lambda's defaults.
    fn reset_removed(&mut self, old: &Props) {
        if self.environment.is_none() && old.environment.is_some() {
            self.environment = Some(Environment {
                variables: Some(BTreeMap::new()),
            });
        }
        if self.description.is_none() && old.description.is_some() {
            self.description = Some(String::new());
        }
        if self.layers.is_none() && old.layers.is_some() {
            self.layers = Some(Vec::new());
        }
        if self.timeout.is_none() && old.timeout.is_some() {
            self.timeout = Some(3);
        }
        if self.memory_size.is_none() && old.memory_size.is_some() {
            self.memory_size = Some(128);
        }
        if self.vpc_config.is_none() && old.vpc_config.is_some() {
            self.vpc_config = Some(Default::default());
        }
        if self.dead_letter_config.is_none() && old.dead_letter_config.is_some() {
            self.dead_letter_config = Some(Default::default());
        }
        if self.ephemeral_storage.is_none() && old.ephemeral_storage.is_some() {
            self.ephemeral_storage = Some(EphemeralStorage { size: Some(512) });
        }
        if self.tracing_config.is_none() && old.tracing_config.is_some() {
            self.tracing_config = Some(fleetfn_model::types::TracingConfig {
                mode: Some("PassThrough".into()),
            });
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody<'a> {
    function_name: &'a str,
    #[serde(flatten)]
    config: ConfigBody,
    code: ZipBody,
    package_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    code_signing_config_arn: Option<String>,
    architectures: Option<Vec<String>>,
    publish_to: Option<&'static str>,
    tenancy_config: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ZipBody {
    zip_file: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CodeUpdateBody {
    zip_file: String,
    architectures: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PublishBody {
    publish_to: &'static str,
}

/// The members of a FunctionConfiguration answer the engine reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Answer {
    pub function_name: String,
    pub function_arn: String,
    #[serde(default)]
    pub code_sha256: String,
    #[serde(default)]
    pub version: String,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

fn applied(a: &Answer) -> Applied {
    Applied {
        physical_id: a.function_name.clone(),
        attributes: BTreeMap::from([
            ("Arn".to_owned(), Value::String(a.function_arn.clone())),
            (
                "CodeSha256".to_owned(),
                Value::String(a.code_sha256.clone()),
            ),
        ]),
    }
}

fn function_name<'a>(p: &'a Props, d: &'a Desired<'_>) -> &'a str {
    p.function_name.as_deref().unwrap_or(d.generated_name)
}

pub async fn create(api: &Api<'_>, d: &Desired<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let code = d
        .code
        .ok_or_else(|| OpError::new("InternalFailure", "no code package"))?;
    let name = function_name(&p, d);
    let body = CreateBody {
        function_name: name,
        config: ConfigBody::from(&p),
        code: ZipBody {
            zip_file: code.base64(),
        },
        package_type: p.package_type.clone(),
        tags: tag_map(&p.tags),
        code_signing_config_arn: p.code_signing_config_arn.clone(),
        architectures: p.architectures.clone(),
        publish_to: p.publish_to(),
        tenancy_config: p.tenancy_config.clone(),
    };
    let _: Answer = api
        .call(
            http::Method::POST,
            "/2015-03-31/functions",
            &[],
            Some(&body),
        )
        .await?;
    let answer = settle(api, name).await?;
    // The function's scaling applies to its published versions: $LATEST.PUBLISHED here, and
    // each Version resource of the stack when it is published.
    if let Some(s) = &p.function_scaling_config
        && p.publish_to().is_some()
    {
        put_scaling(api, name, Some("$LATEST.PUBLISHED"), s).await?;
    }
    Ok(applied(&answer))
}

pub async fn update(api: &Api<'_>, d: &Desired<'_>, c: &Current<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    // What was applied before parsed as it was (a record from an older fleetfn that no longer
    // parses counts as "everything changed").
    let old = Props::from_value(c.properties).ok();
    let name = c.physical_id;
    let code = d
        .code
        .ok_or_else(|| OpError::new("InternalFailure", "no code package"))?;
    let old_sha = c.attributes.get("CodeSha256").and_then(Value::as_str);
    let arch_changed = old
        .as_ref()
        .is_none_or(|o| o.architectures != p.architectures);
    let mut changed = false;
    if old_sha != Some(code.sha256.as_str()) || arch_changed {
        let body = CodeUpdateBody {
            zip_file: code.base64(),
            architectures: p.architectures.clone(),
        };
        api.call_empty(
            http::Method::PUT,
            &function_path(name, "/code"),
            &[],
            Some(&body),
        )
        .await?;
        settle(api, name).await?;
        changed = true;
    }
    let mut config = ConfigBody::from(&p);
    let config_changed = match &old {
        Some(o) => {
            let was = ConfigBody::from(o);
            let differs = serde_json::to_value(&was).ok() != serde_json::to_value(&config).ok();
            config.reset_removed(o);
            differs
        }
        None => true,
    };
    if config_changed {
        api.call_empty(
            http::Method::PUT,
            &function_path(name, "/configuration"),
            &[],
            Some(&config),
        )
        .await?;
        changed = true;
    }
    let answer = settle(api, name).await?;
    let old_tags = old
        .as_ref()
        .and_then(|o| tag_map(&o.tags))
        .unwrap_or_default();
    let new_tags = tag_map(&p.tags).unwrap_or_default();
    if old_tags != new_tags {
        super::retag(api, &answer.function_arn, &old_tags, &new_tags).await?;
    }
    if let Some(publish_to) = p.publish_to().filter(|_| changed) {
        api.call_empty(
            http::Method::POST,
            &function_path(name, "/versions"),
            &[],
            Some(&PublishBody { publish_to }),
        )
        .await?;
    }
    if let Some(s) = &p.function_scaling_config
        && p.publish_to().is_some()
        && (changed
            || old.as_ref().map(|o| &o.function_scaling_config) != Some(&p.function_scaling_config))
    {
        put_scaling(api, name, Some("$LATEST.PUBLISHED"), s).await?;
    }
    Ok(applied(&answer))
}

pub async fn delete(api: &Api<'_>, c: &Current<'_>) -> Result<(), OpError> {
    api.call_empty(
        http::Method::DELETE,
        &function_path(c.physical_id, ""),
        &[],
        None::<&()>,
    )
    .await
}

/// PutFunctionScalingConfig of a function (version).
pub async fn put_scaling(
    api: &Api<'_>,
    function: &str,
    qualifier: Option<&str>,
    s: &ScalingConfig,
) -> Result<(), OpError> {
    let path = format!(
        "/2025-11-30/functions/{}/function-scaling-config",
        crate::client::encode_component(function)
    );
    let query: Vec<(&str, &str)> = qualifier.map(|q| ("Qualifier", q)).into_iter().collect();
    api.call_empty(
        http::Method::PUT,
        &path,
        &query,
        Some(&serde_json::json!({ "FunctionScalingConfig": s })),
    )
    .await
}

/// Waits until the function (version) is no longer Pending nor being updated; a Failed state
/// or update is an error.
pub async fn settle_qualified(
    api: &Api<'_>,
    function: &str,
    qualifier: Option<&str>,
    timeout: Duration,
    until_active: bool,
) -> Result<Answer, OpError> {
    use fleetfn_model::{LastUpdateStatus, State};
    let path = function_path(function, "/configuration");
    let query: Vec<(&str, &str)> = qualifier.map(|q| ("Qualifier", q)).into_iter().collect();
    let deadline = Instant::now() + timeout;
    loop {
        let a: Answer = api
            .call(http::Method::GET, &path, &query, None::<&()>)
            .await?;
        let l = &a.lifecycle;
        if l.state == Some(State::Failed) || l.last_update_status == Some(LastUpdateStatus::Failed)
        {
            let kind = l
                .state_reason_code
                .clone()
                .or_else(|| l.last_update_status_reason_code.clone())
                .unwrap_or_else(|| "FunctionFailed".into());
            return Err(OpError::new(kind, describe(l)));
        }
        let busy = l.last_update_status == Some(LastUpdateStatus::InProgress);
        let done = if until_active {
            l.state == Some(State::Active) && !busy
        } else {
            l.state != Some(State::Pending) && !busy
        };
        if done {
            return Ok(a);
        }
        if Instant::now() >= deadline {
            let target = match qualifier {
                Some(q) => format!("{function}:{q}"),
                None => function.to_owned(),
            };
            return Err(OpError::new(
                "Timeout",
                format!(
                    "{target} did not settle within {}s; last seen: {}",
                    timeout.as_secs(),
                    describe(l)
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn settle(api: &Api<'_>, function: &str) -> Result<Answer, OpError> {
    settle_qualified(api, function, None, SETTLE_TIMEOUT, false).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn code_comes_inline_from_a_path_or_from_s3() {
        assert_eq!(
            code_source(&json!("src/")).unwrap(),
            CodeSource::Path("src/".into())
        );
        assert_eq!(
            code_source(&json!({"ZipFile": "x = 1"})).unwrap(),
            CodeSource::Inline("x = 1".into())
        );
        assert_eq!(
            code_source(
                &json!({"S3Bucket": LOCAL_BUCKET, "S3Key": "src", "S3ObjectVersion": "ab"})
            )
            .unwrap(),
            CodeSource::Path("src".into())
        );
        assert_eq!(
            code_source(&json!({"S3Bucket": "cdk-assets", "S3Key": "abc.zip"})).unwrap(),
            CodeSource::S3 {
                bucket: "cdk-assets".into(),
                key: "abc.zip".into()
            }
        );
        let e = code_source(&json!({"ImageUri": "repo:tag"})).unwrap_err();
        assert!(e.message.contains("container images"), "{e}");
        let e = code_source(&json!({"S3Bucket": "b"})).unwrap_err();
        assert!(e.message.contains("either ZipFile"), "{e}");
        let e = code_source(&json!({"ZipFile": "x", "Zip": 1})).unwrap_err();
        assert!(e.message.contains("Zip"), "{e}");
    }

    #[test]
    fn properties_take_cloudformation_scalars_and_refuse_unknown_ones() {
        let p = Props::from_value(&json!({
            "Role": "r", "Code": {"ZipFile": "x"}, "MemorySize": "1024", "Timeout": 30.0,
            "Environment": {"Variables": {"PORT": 8080, "DEBUG": true}},
            "PublishToLatestPublished": "true",
            "CapacityProviderConfig": {"LambdaManagedInstancesCapacityProviderConfig": {
                "CapacityProviderArn": "arn", "PerExecutionEnvironmentMaxConcurrency": "8",
                "ExecutionEnvironmentMemoryGiBPerVCpu": "4"}}
        }))
        .unwrap();
        assert_eq!((p.memory_size, p.timeout), (Some(1024), Some(30)));
        let vars = p.environment.clone().unwrap().variables.unwrap();
        assert_eq!(vars["PORT"], "8080");
        assert_eq!(vars["DEBUG"], "true");
        assert_eq!(p.publish_to(), Some("LATEST_PUBLISHED"));
        let lmi = &p
            .capacity_provider_config
            .as_ref()
            .unwrap()
            .lambda_managed_instances_capacity_provider_config;
        assert_eq!(lmi.per_execution_environment_max_concurrency, Some(8));
        assert_eq!(lmi.memory_gib_per_vcpu, Some(4.0));
        // The API's member names in the request.
        let body = serde_json::to_value(ConfigBody::from(&p)).unwrap();
        assert_eq!(
            body["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]["ExecutionEnvironmentMemoryGiBPerVCpu"],
            json!(4.0)
        );

        let e = Props::from_value(&json!({"Role": "r", "Code": "x", "Memory": 1})).unwrap_err();
        assert_eq!(e.kind, "ValidationError");
        assert!(e.message.contains("Memory"), "{e}");
        let e = Props::from_value(&json!({"Code": "x"})).unwrap_err();
        assert!(e.message.contains("Role"), "{e}");
        let e = Props::from_value(&json!({"Role": "r", "Code": "x", "MemorySize": "lots"}))
            .unwrap_err();
        assert!(e.message.contains("MemorySize"), "{e}");
    }

    #[test]
    fn removed_configuration_goes_back_to_the_defaults() {
        let old = Props::from_value(&json!({
            "Role": "r", "Code": "x", "Description": "d", "Timeout": 30, "MemorySize": 2048,
            "Environment": {"Variables": {"A": "1"}}, "Layers": ["arn:l:1"]
        }))
        .unwrap();
        let new = Props::from_value(&json!({"Role": "r", "Code": "x"})).unwrap();
        let mut body = ConfigBody::from(&new);
        body.reset_removed(&old);
        let v = crate::deploy::resources::drop_nulls(serde_json::to_value(&body).unwrap());
        assert_eq!(
            v,
            json!({"Role": "r", "Description": "", "Timeout": 3, "MemorySize": 128,
                   "Environment": {"Variables": {}}, "Layers": []})
        );
    }
}
