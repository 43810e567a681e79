//! `AWS::Lambda::Url`: Create/Update/DeleteFunctionUrlConfig. `TargetFunctionArn` and `Qualifier`
//! replace it. Attributes `FunctionUrl` and `FunctionArn`; the physical id is the function ARN.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Api, Applied, Current, Desired, OpError};
use crate::client::encode_component;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Props {
    pub auth_type: String,
    #[serde(default)]
    pub cors: Option<fleetfn_model::url::Cors>,
    #[serde(default)]
    pub invoke_mode: Option<String>,
    #[serde(default)]
    pub qualifier: Option<String>,
    pub target_function_arn: String,
}

impl Props {
    pub fn from_value(v: &Value) -> Result<Self, OpError> {
        super::typed(v)
    }

    fn path(&self) -> String {
        format!(
            "/2021-10-31/functions/{}/url",
            encode_component(&self.target_function_arn)
        )
    }

    fn query(&self) -> Vec<(&str, &str)> {
        self.qualifier
            .as_deref()
            .map(|q| ("Qualifier", q))
            .into_iter()
            .collect()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    auth_type: &'a str,
    cors: Option<fleetfn_model::url::Cors>,
    invoke_mode: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    function_url: String,
    function_arn: String,
}

fn applied(a: Answer) -> Applied {
    Applied {
        physical_id: a.function_arn.clone(),
        attributes: BTreeMap::from([
            ("FunctionUrl".to_owned(), Value::String(a.function_url)),
            ("FunctionArn".to_owned(), Value::String(a.function_arn)),
        ]),
    }
}

pub async fn create(api: &Api<'_>, d: &Desired<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let body = Body {
        auth_type: &p.auth_type,
        cors: p.cors.clone(),
        invoke_mode: p.invoke_mode.as_deref(),
    };
    let a: Answer = api
        .call(http::Method::POST, &p.path(), &p.query(), Some(&body))
        .await?;
    Ok(applied(a))
}

pub async fn update(api: &Api<'_>, d: &Desired<'_>, _c: &Current<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let body = Body {
        auth_type: &p.auth_type,
        cors: Some(p.cors.clone().unwrap_or_default()),
        invoke_mode: Some(p.invoke_mode.as_deref().unwrap_or("BUFFERED")),
    };
    let a: Answer = api
        .call(http::Method::PUT, &p.path(), &p.query(), Some(&body))
        .await?;
    Ok(applied(a))
}

pub async fn delete(api: &Api<'_>, c: &Current<'_>) -> Result<(), OpError> {
    let p = Props::from_value(c.properties)?;
    api.call_empty(http::Method::DELETE, &p.path(), &p.query(), None::<&()>)
        .await
}
