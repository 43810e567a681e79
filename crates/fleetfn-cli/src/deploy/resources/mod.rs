//! The resource types `fleetfn deploy` applies, each in its own module: CloudFormation's properties
//! (typed, unknown ones refused) mapped onto Lambda API calls, which properties update in place and
//! which replace the resource, and the attributes `Fn::GetAtt` reads. [`Ops`] is the seam the
//! engine applies through; [`LambdaOps`] is the real one, over the signing client.

pub mod alias;
pub mod capacity_provider;
pub mod event_invoke_config;
pub mod event_source_mapping;
pub mod function;
pub mod iam_role;
mod lenient;
pub mod permission;
pub mod url;
pub mod version;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{Client, ClientError, encode_component};
use crate::deploy::code::CodePackage;

/// The resource types fleetfn applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    IamRole,
    CapacityProvider,
    Function,
    Version,
    Alias,
    Permission,
    Url,
    EventInvokeConfig,
    EventSourceMapping,
}

/// Types skipped without a warning (CDK's analytics resource).
pub const SILENTLY_SKIPPED: &[&str] = &["AWS::CDK::Metadata"];

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::IamRole,
        Kind::CapacityProvider,
        Kind::Function,
        Kind::Version,
        Kind::Alias,
        Kind::Permission,
        Kind::Url,
        Kind::EventInvokeConfig,
        Kind::EventSourceMapping,
    ];

    pub fn type_name(self) -> &'static str {
        match self {
            Kind::IamRole => "AWS::IAM::Role",
            Kind::CapacityProvider => "AWS::Lambda::CapacityProvider",
            Kind::Function => "AWS::Lambda::Function",
            Kind::Version => "AWS::Lambda::Version",
            Kind::Alias => "AWS::Lambda::Alias",
            Kind::Permission => "AWS::Lambda::Permission",
            Kind::Url => "AWS::Lambda::Url",
            Kind::EventInvokeConfig => "AWS::Lambda::EventInvokeConfig",
            Kind::EventSourceMapping => "AWS::Lambda::EventSourceMapping",
        }
    }

    pub fn parse(type_name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_name() == type_name)
    }

    /// Top-level properties whose change replaces the resource (CloudFormation's "Update requires:
    /// Replacement"); `None` means every property does (immutable resources).
    pub fn replacing_properties(self) -> Option<&'static [&'static str]> {
        match self {
            Kind::IamRole => Some(&["RoleName", "Path"]),
            Kind::CapacityProvider => Some(&[
                "CapacityProviderName",
                "VpcConfig",
                "PermissionsConfig",
                "InstanceRequirements",
                "KmsKeyArn",
                "TelemetryConfig",
            ]),
            Kind::Function => Some(&["FunctionName", "PackageType"]),
            Kind::Version => Some(&[
                "FunctionName",
                "CodeSha256",
                "Description",
                "RuntimePolicy",
                "ProvisionedConcurrencyConfig",
            ]),
            Kind::Alias => Some(&["FunctionName", "Name"]),
            Kind::Permission => None,
            Kind::Url => Some(&["TargetFunctionArn", "Qualifier"]),
            Kind::EventInvokeConfig => Some(&["FunctionName", "Qualifier"]),
            Kind::EventSourceMapping => Some(&[
                "EventSourceArn",
                "StartingPosition",
                "StartingPositionTimestamp",
                "SelfManagedEventSource",
                "AmazonManagedKafkaEventSourceConfig",
                "SelfManagedKafkaEventSourceConfig",
            ]),
        }
    }

    /// The property that names the resource, and the longest name the API takes; a name is
    /// generated when the template gives none.
    pub fn name_property(self) -> Option<(&'static str, usize)> {
        match self {
            Kind::IamRole => Some(("RoleName", 64)),
            Kind::CapacityProvider => Some(("CapacityProviderName", 140)),
            Kind::Function => Some(("FunctionName", 64)),
            Kind::Permission => None,
            _ => None,
        }
    }

    /// Deletion order: dependents (higher) before what they depend on.
    pub fn delete_rank(self) -> u8 {
        match self {
            Kind::Permission | Kind::Url | Kind::EventInvokeConfig | Kind::EventSourceMapping => 5,
            Kind::Alias => 4,
            Kind::Version => 3,
            Kind::Function => 2,
            Kind::CapacityProvider => 1,
            Kind::IamRole => 0,
        }
    }

    /// Checks the resolved properties against the type's schema (unknown properties, wrong
    /// types, missing required ones) without calling anything.
    pub fn validate(self, properties: &Value) -> Result<(), OpError> {
        match self {
            Kind::IamRole => iam_role::Props::from_value(properties).map(drop),
            Kind::CapacityProvider => capacity_provider::Props::from_value(properties).map(drop),
            Kind::Function => function::Props::from_value(properties).map(drop),
            Kind::Version => version::Props::from_value(properties).map(drop),
            Kind::Alias => alias::Props::from_value(properties).map(drop),
            Kind::Permission => permission::Props::from_value(properties).map(drop),
            Kind::Url => url::Props::from_value(properties).map(drop),
            Kind::EventInvokeConfig => event_invoke_config::Props::from_value(properties).map(drop),
            Kind::EventSourceMapping => {
                event_source_mapping::Props::from_value(properties).map(drop)
            }
        }
    }
}

/// Why an operation on a resource failed: the API's error type and message, or CloudFormation's
/// `ValidationError` for properties that do not fit the type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct OpError {
    pub kind: String,
    pub message: String,
}

impl OpError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationError", message)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == "ResourceNotFoundException"
    }
}

impl From<ClientError> for OpError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { kind, message, .. } => Self { kind, message },
            other => Self::new("RequestFailed", other.to_string()),
        }
    }
}

/// Deserializes properties into a type's schema; the message names the property at fault.
pub(crate) fn typed<T: DeserializeOwned>(properties: &Value) -> Result<T, OpError> {
    let v = if properties.is_null() {
        Value::Object(Default::default())
    } else {
        properties.clone()
    };
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            OpError::validation(format!("Properties validation failed: {inner}"))
        } else {
            OpError::validation(format!("Properties validation failed at {path}: {inner}"))
        }
    })
}

/// The stack-wide settings resources are applied with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub partition: String,
    pub account_id: String,
    /// Wait for published versions to be Active (`--no-wait` clears it).
    pub wait: bool,
    pub wait_timeout: Duration,
}

/// A resource as the template wants it.
#[derive(Debug, Clone, Copy)]
pub struct Desired<'a> {
    /// For messages and the engine's test fakes.
    #[allow(dead_code)]
    pub logical_id: &'a str,
    pub kind: Kind,
    /// Resolved properties (no placeholders).
    pub properties: &'a Value,
    /// The physical name to use when the properties name none (see [`Kind::name_property`]).
    pub generated_name: &'a str,
    /// The code package of a function.
    pub code: Option<&'a CodePackage>,
}

/// A resource as it was applied.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    /// For messages and the engine's test fakes.
    #[allow(dead_code)]
    pub logical_id: &'a str,
    pub kind: Kind,
    pub physical_id: &'a str,
    pub properties: &'a Value,
    pub attributes: &'a BTreeMap<String, Value>,
}

/// What applying a resource produced: its physical id (what `Ref` answers) and attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub physical_id: String,
    pub attributes: BTreeMap<String, Value>,
}

/// The operations the engine applies a stack through.
#[allow(async_fn_in_trait)]
pub trait Ops {
    async fn create(&self, d: &Desired<'_>) -> Result<Applied, OpError>;
    async fn update(&self, d: &Desired<'_>, current: &Current<'_>) -> Result<Applied, OpError>;
    async fn delete(&self, current: &Current<'_>) -> Result<(), OpError>;
    /// A function's code package as deployed before (for rolling an update back), by the
    /// base64 `CodeSha256` Lambda reports.
    async fn fetch_code(&self, code_sha256: &str) -> Result<CodePackage, OpError>;
}

/// [`Ops`] over the Lambda API of a fleetfn server.
pub struct LambdaOps<'a> {
    pub api: Api<'a>,
    pub settings: Settings,
}

impl Ops for LambdaOps<'_> {
    async fn create(&self, d: &Desired<'_>) -> Result<Applied, OpError> {
        let (api, s) = (&self.api, &self.settings);
        match d.kind {
            Kind::IamRole => iam_role::create(s, d),
            Kind::CapacityProvider => capacity_provider::create(api, d).await,
            Kind::Function => function::create(api, d).await,
            Kind::Version => version::create(api, s, d).await,
            Kind::Alias => alias::create(api, d).await,
            Kind::Permission => permission::create(api, d).await,
            Kind::Url => url::create(api, d).await,
            Kind::EventInvokeConfig => event_invoke_config::create(api, d).await,
            Kind::EventSourceMapping => event_source_mapping::create(api, d).await,
        }
    }

    async fn update(&self, d: &Desired<'_>, c: &Current<'_>) -> Result<Applied, OpError> {
        let (api, s) = (&self.api, &self.settings);
        match d.kind {
            Kind::IamRole => iam_role::update(s, d, c),
            Kind::CapacityProvider => capacity_provider::update(api, d, c).await,
            Kind::Function => function::update(api, d, c).await,
            Kind::Version => version::update(api, d, c).await,
            Kind::Alias => alias::update(api, d, c).await,
            Kind::Permission => Err(OpError::new(
                "InternalFailure",
                "a permission is replaced, never updated",
            )),
            Kind::Url => url::update(api, d, c).await,
            Kind::EventInvokeConfig => event_invoke_config::update(api, d).await,
            Kind::EventSourceMapping => event_source_mapping::update(api, d, c).await,
        }
    }

    async fn delete(&self, c: &Current<'_>) -> Result<(), OpError> {
        let api = &self.api;
        let r = match c.kind {
            Kind::IamRole => Ok(()),
            Kind::CapacityProvider => capacity_provider::delete(api, c).await,
            Kind::Function => function::delete(api, c).await,
            Kind::Version => version::delete(api, c).await,
            Kind::Alias => alias::delete(api, c).await,
            Kind::Permission => permission::delete(api, c).await,
            Kind::Url => url::delete(api, c).await,
            Kind::EventInvokeConfig => event_invoke_config::delete(api, c).await,
            Kind::EventSourceMapping => event_source_mapping::delete(api, c).await,
        };
        // Already gone is deleted (as CloudFormation treats it).
        match r {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    async fn fetch_code(&self, code_sha256: &str) -> Result<CodePackage, OpError> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(code_sha256)
            .map_err(|e| OpError::new("InternalFailure", format!("CodeSha256: {e}")))?;
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let zip = self
            .api
            .client
            .get(&format!("/fleetfn/v1/code/{hex}"), &[])
            .await?;
        Ok(CodePackage::from_zip(
            zip.to_vec(),
            format!("the code deployed before (sha256 {hex})"),
        ))
    }
}

/// Typed JSON calls over the signing client.
#[derive(Clone, Copy)]
pub struct Api<'a> {
    pub client: &'a Client,
}

impl Api<'_> {
    /// A call with a JSON body (None: no body) answered with JSON.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&impl Serialize>,
    ) -> Result<T, OpError> {
        let bytes = self.raw(method, path, query, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            OpError::new(
                "InvalidResponse",
                format!("the server's answer to {path} did not parse: {e}"),
            )
        })
    }

    /// A call whose answer body is ignored.
    pub async fn call_empty(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&impl Serialize>,
    ) -> Result<(), OpError> {
        self.raw(method, path, query, body).await.map(drop)
    }

    async fn raw(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&impl Serialize>,
    ) -> Result<Bytes, OpError> {
        let body = match body {
            Some(b) => Bytes::from(
                serde_json::to_vec(&drop_nulls(serde_json::to_value(b).map_err(|e| {
                    OpError::new("InternalFailure", format!("encoding a request: {e}"))
                })?))
                .map_err(|e| OpError::new("InternalFailure", e.to_string()))?,
            ),
            None => Bytes::new(),
        };
        // Lambda refuses an operation while the resource is still changing ("An update is in
        // progress ... Retry the request") and throttles with 429: both are retried, as the
        // SDKs and CloudFormation do. A refused request changed nothing, so this is safe.
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        loop {
            match self
                .client
                .send(method.clone(), path, query, body.clone())
                .await
            {
                Err(e) if retryable(&e) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return Ok(other?),
            }
        }
    }
}

const RETRY_FOR: Duration = Duration::from_secs(60);
const RETRY_PAUSE: Duration = Duration::from_millis(300);

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Api {
            status,
            kind,
            message,
            ..
        } => {
            *status == 429
                || kind == "ResourceConflictException"
                    && (message.contains("in progress") || message.contains("Retry"))
        }
        _ => false,
    }
}

/// Removes `null` members of objects (absent request members), recursively.
pub fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

/// `/2015-03-31/functions/{name}` with the name (or ARN) encoded.
pub fn function_path(function: &str, rest: &str) -> String {
    format!("/2015-03-31/functions/{}{rest}", encode_component(function))
}

/// CloudFormation's `Tags` list (`[{Key, Value}]`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tag {
    #[serde(deserialize_with = "lenient::string")]
    pub key: String,
    #[serde(deserialize_with = "lenient::string")]
    pub value: String,
}

/// Tags as the API takes them (a map).
pub fn tag_map(tags: &Option<Vec<Tag>>) -> Option<BTreeMap<String, String>> {
    tags.as_ref()
        .map(|t| t.iter().map(|t| (t.key.clone(), t.value.clone())).collect())
}

/// Brings a resource's tags from `old` to `new`: TagResource for added/changed, UntagResource
/// for removed ones.
pub async fn retag(
    api: &Api<'_>,
    arn: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), OpError> {
    let path = format!("/2017-03-31/tags/{}", encode_component(arn));
    let removed: Vec<&str> = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !removed.is_empty() {
        let query: Vec<(&str, &str)> = removed.iter().map(|k| ("tagKeys", *k)).collect();
        api.call_empty(http::Method::DELETE, &path, &query, None::<&()>)
            .await?;
    }
    let changed: BTreeMap<&String, &String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .collect();
    if !changed.is_empty() {
        api.call_empty(
            http::Method::POST,
            &path,
            &[],
            Some(&serde_json::json!({ "Tags": changed })),
        )
        .await?;
    }
    Ok(())
}
