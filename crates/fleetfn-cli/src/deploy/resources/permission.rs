//! `AWS::Lambda::Permission`: AddPermission with a generated statement id (the physical id),
//! RemovePermission to delete. Every property replaces it, as in CloudFormation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Api, Applied, Current, Desired, OpError, function_path, lenient};
use crate::client::encode_component;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Props {
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source_token: Option<String>,
    #[serde(skip_serializing)]
    pub function_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_url_auth_type: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub invoked_via_function_url: Option<bool>,
    pub principal: String,
    #[serde(
        rename = "PrincipalOrgID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub principal_org_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_arn: Option<String>,
}

impl Props {
    pub fn from_value(v: &Value) -> Result<Self, OpError> {
        super::typed(v)
    }
}

pub async fn create(api: &Api<'_>, d: &Desired<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let mut body =
        serde_json::to_value(&p).map_err(|e| OpError::new("InternalFailure", e.to_string()))?;
    body["StatementId"] = Value::String(d.generated_name.to_owned());
    api.call_empty(
        http::Method::POST,
        &function_path(&p.function_name, "/policy"),
        &[],
        Some(&body),
    )
    .await?;
    Ok(Applied {
        physical_id: d.generated_name.to_owned(),
        attributes: Default::default(),
    })
}

pub async fn delete(api: &Api<'_>, c: &Current<'_>) -> Result<(), OpError> {
    let p: Props = super::typed(c.properties)?;
    let path = function_path(
        &p.function_name,
        &format!("/policy/{}", encode_component(c.physical_id)),
    );
    api.call_empty(http::Method::DELETE, &path, &[], None::<&()>)
        .await
}
