//! `AWS::Lambda::CapacityProvider`: Create/Update/DeleteCapacityProvider. Only
//! `CapacityProviderScalingConfig`, `Tags` and `PropagateTags` update in place; the name, VPC,
//! permissions, instance requirements and KMS key replace it. Ref is the name; attribute `Arn`.

use std::collections::BTreeMap;

use fleetfn_model::types::{
    CapacityProviderPermissionsConfig, CapacityProviderScalingConfig, CapacityProviderVpcConfig,
    InstanceRequirements,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Api, Applied, Current, Desired, OpError, Tag, tag_map};
use crate::client::encode_component;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Props {
    #[serde(default)]
    pub capacity_provider_name: Option<String>,
    #[serde(default)]
    pub capacity_provider_scaling_config: Option<CapacityProviderScalingConfig>,
    #[serde(default)]
    pub instance_requirements: Option<InstanceRequirements>,
    #[serde(default)]
    pub kms_key_arn: Option<String>,
    pub permissions_config: CapacityProviderPermissionsConfig,
    #[serde(default)]
    pub propagate_tags: Option<Value>,
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
    /// Passed on as written (the API's newer member).
    #[serde(default)]
    pub telemetry_config: Option<Value>,
    pub vpc_config: CapacityProviderVpcConfig,
}

impl Props {
    pub fn from_value(v: &Value) -> Result<Self, OpError> {
        super::typed(v)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody<'a> {
    capacity_provider_name: &'a str,
    vpc_config: &'a CapacityProviderVpcConfig,
    permissions_config: &'a CapacityProviderPermissionsConfig,
    instance_requirements: Option<&'a InstanceRequirements>,
    capacity_provider_scaling_config: Option<&'a CapacityProviderScalingConfig>,
    kms_key_arn: Option<&'a str>,
    tags: Option<BTreeMap<String, String>>,
    propagate_tags: Option<&'a Value>,
    telemetry_config: Option<&'a Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateBody<'a> {
    capacity_provider_scaling_config: Option<&'a CapacityProviderScalingConfig>,
    propagate_tags: Option<&'a Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    capacity_provider: Provider,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Provider {
    capacity_provider_arn: String,
}

fn path(name: &str) -> String {
    format!("/2025-11-30/capacity-providers/{}", encode_component(name))
}

pub async fn create(api: &Api<'_>, d: &Desired<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let name = p
        .capacity_provider_name
        .as_deref()
        .unwrap_or(d.generated_name);
    let body = CreateBody {
        capacity_provider_name: name,
        vpc_config: &p.vpc_config,
        permissions_config: &p.permissions_config,
        instance_requirements: p.instance_requirements.as_ref(),
        capacity_provider_scaling_config: p.capacity_provider_scaling_config.as_ref(),
        kms_key_arn: p.kms_key_arn.as_deref(),
        tags: tag_map(&p.tags),
        propagate_tags: p.propagate_tags.as_ref(),
        telemetry_config: p.telemetry_config.as_ref(),
    };
    let a: Answer = api
        .call(
            http::Method::POST,
            "/2025-11-30/capacity-providers",
            &[],
            Some(&body),
        )
        .await?;
    Ok(Applied {
        physical_id: name.to_owned(),
        attributes: BTreeMap::from([(
            "Arn".to_owned(),
            Value::String(a.capacity_provider.capacity_provider_arn),
        )]),
    })
}

pub async fn update(api: &Api<'_>, d: &Desired<'_>, c: &Current<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let old = Props::from_value(c.properties).ok();
    let body = UpdateBody {
        capacity_provider_scaling_config: p.capacity_provider_scaling_config.as_ref(),
        propagate_tags: p.propagate_tags.as_ref(),
    };
    let a: Answer = api
        .call(http::Method::PUT, &path(c.physical_id), &[], Some(&body))
        .await?;
    let old_tags = old
        .as_ref()
        .and_then(|o| tag_map(&o.tags))
        .unwrap_or_default();
    let new_tags = tag_map(&p.tags).unwrap_or_default();
    let arn = a.capacity_provider.capacity_provider_arn;
    if old_tags != new_tags {
        super::retag(api, &arn, &old_tags, &new_tags).await?;
    }
    Ok(Applied {
        physical_id: c.physical_id.to_owned(),
        attributes: BTreeMap::from([("Arn".to_owned(), Value::String(arn))]),
    })
}

/// How long a deletion waits for the versions of just-deleted functions to let go of the
/// capacity provider (the API refuses while any is attached, and functions detach in the background).
const DETACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

pub async fn delete(api: &Api<'_>, c: &Current<'_>) -> Result<(), OpError> {
    let deadline = tokio::time::Instant::now() + DETACH_TIMEOUT;
    loop {
        match api
            .call_empty(http::Method::DELETE, &path(c.physical_id), &[], None::<&()>)
            .await
        {
            Err(e)
                if e.kind == "ResourceConflictException"
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}
