//! `AWS::Lambda::EventSourceMapping`: Create/Update/DeleteEventSourceMapping. `EventSourceArn`
//! and the stream/Kafka starting settings replace it. Ref and attribute `Id` are the mapping's
//! UUID; attribute `EventSourceMappingArn`. Members for sources fleetfn does not poll are passed
//! on, so the API refuses them by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Api, Applied, Current, Desired, OpError, Tag, lenient, tag_map};
use crate::client::encode_component;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Props {
    pub function_name: String,
    #[serde(default)]
    pub event_source_arn: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub batch_size: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub maximum_batching_window_in_seconds: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string_list")]
    pub function_response_types: Option<Vec<String>>,
    #[serde(default)]
    pub scaling_config: Option<fleetfn_model::types::EsmScalingConfig>,
    #[serde(default)]
    pub filter_criteria: Option<fleetfn_model::types::FilterCriteria>,
    #[serde(default)]
    pub kms_key_arn: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
    /// Members of other kinds of sources, passed on as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

const OTHER_MEMBERS: &[&str] = &[
    "AmazonManagedKafkaEventSourceConfig",
    "BisectBatchOnFunctionError",
    "DestinationConfig",
    "DocumentDBEventSourceConfig",
    "LoggingConfig",
    "MaximumRecordAgeInSeconds",
    "MaximumRetryAttempts",
    "MetricsConfig",
    "ParallelizationFactor",
    "ProvisionedPollerConfig",
    "Queues",
    "SelfManagedEventSource",
    "SelfManagedKafkaEventSourceConfig",
    "SourceAccessConfigurations",
    "StartingPosition",
    "StartingPositionTimestamp",
    "Topics",
    "TumblingWindowInSeconds",
];

impl Props {
    pub fn from_value(v: &Value) -> Result<Self, OpError> {
        let p: Props = super::typed(v)?;
        if let Some(k) = p
            .other
            .keys()
            .find(|k| !OTHER_MEMBERS.contains(&k.as_str()))
        {
            return Err(OpError::validation(format!(
                "Properties validation failed: unknown property {k:?} of \
                 AWS::Lambda::EventSourceMapping"
            )));
        }
        Ok(p)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    function_name: &'a str,
    event_source_arn: Option<&'a str>,
    enabled: Option<bool>,
    batch_size: Option<i64>,
    maximum_batching_window_in_seconds: Option<i64>,
    function_response_types: Option<&'a Vec<String>>,
    scaling_config: Option<&'a fleetfn_model::types::EsmScalingConfig>,
    filter_criteria: Option<&'a fleetfn_model::types::FilterCriteria>,
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<&'a str>,
    tags: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    other: &'a BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    #[serde(rename = "UUID")]
    uuid: String,
    #[serde(default)]
    event_source_mapping_arn: Option<String>,
}

fn applied(a: Answer) -> Applied {
    let mut attributes = BTreeMap::from([("Id".to_owned(), Value::String(a.uuid.clone()))]);
    if let Some(arn) = a.event_source_mapping_arn {
        attributes.insert("EventSourceMappingArn".to_owned(), Value::String(arn));
    }
    Applied {
        physical_id: a.uuid,
        attributes,
    }
}

pub async fn create(api: &Api<'_>, d: &Desired<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let body = Body {
        function_name: &p.function_name,
        event_source_arn: p.event_source_arn.as_deref(),
        enabled: p.enabled,
        batch_size: p.batch_size,
        maximum_batching_window_in_seconds: p.maximum_batching_window_in_seconds,
        function_response_types: p.function_response_types.as_ref(),
        scaling_config: p.scaling_config.as_ref(),
        filter_criteria: p.filter_criteria.as_ref(),
        kms_key_arn: p.kms_key_arn.as_deref(),
        tags: tag_map(&p.tags),
        other: &p.other,
    };
    let a: Answer = api
        .call(
            http::Method::POST,
            "/2015-03-31/event-source-mappings/",
            &[],
            Some(&body),
        )
        .await?;
    Ok(applied(a))
}

pub async fn update(api: &Api<'_>, d: &Desired<'_>, c: &Current<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let none = BTreeMap::new();
    let body = Body {
        function_name: &p.function_name,
        event_source_arn: None,
        enabled: Some(p.enabled.unwrap_or(true)),
        batch_size: p.batch_size,
        maximum_batching_window_in_seconds: p.maximum_batching_window_in_seconds,
        function_response_types: p.function_response_types.as_ref(),
        scaling_config: p.scaling_config.as_ref(),
        filter_criteria: p.filter_criteria.as_ref(),
        kms_key_arn: p.kms_key_arn.as_deref(),
        tags: None,
        other: &none,
    };
    let a: Answer = api
        .call(
            http::Method::PUT,
            &format!(
                "/2015-03-31/event-source-mappings/{}",
                encode_component(c.physical_id)
            ),
            &[],
            Some(&body),
        )
        .await?;
    Ok(applied(a))
}

pub async fn delete(api: &Api<'_>, c: &Current<'_>) -> Result<(), OpError> {
    api.call_empty(
        http::Method::DELETE,
        &format!(
            "/2015-03-31/event-source-mappings/{}",
            encode_component(c.physical_id)
        ),
        &[],
        None::<&()>,
    )
    .await
}
