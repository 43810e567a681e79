//! `AWS::Lambda::EventInvokeConfig`: PutFunctionEventInvokeConfig to create and update (it
//! replaces the whole configuration), DeleteFunctionEventInvokeConfig. `FunctionName` and
//! `Qualifier` replace it; the physical id is `function:qualifier`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Api, Applied, Current, Desired, OpError, lenient};
use crate::client::encode_component;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Props {
    #[serde(skip_serializing)]
    pub function_name: String,
    #[serde(skip_serializing, deserialize_with = "lenient::string")]
    pub qualifier: String,
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub maximum_retry_attempts: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub maximum_event_age_in_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_config: Option<fleetfn_model::types::DestinationConfig>,
}

impl Props {
    pub fn from_value(v: &Value) -> Result<Self, OpError> {
        super::typed(v)
    }

    fn path(&self) -> String {
        format!(
            "/2019-09-25/functions/{}/event-invoke-config",
            encode_component(&self.function_name)
        )
    }
}

pub async fn create(api: &Api<'_>, d: &Desired<'_>) -> Result<Applied, OpError> {
    update(api, d).await
}

pub async fn update(api: &Api<'_>, d: &Desired<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    api.call_empty(
        http::Method::PUT,
        &p.path(),
        &[("Qualifier", p.qualifier.as_str())],
        Some(&p),
    )
    .await?;
    Ok(Applied {
        physical_id: format!("{}:{}", p.function_name, p.qualifier),
        attributes: Default::default(),
    })
}

pub async fn delete(api: &Api<'_>, c: &Current<'_>) -> Result<(), OpError> {
    let p = Props::from_value(c.properties)?;
    api.call_empty(
        http::Method::DELETE,
        &p.path(),
        &[("Qualifier", p.qualifier.as_str())],
        None::<&()>,
    )
    .await
}
