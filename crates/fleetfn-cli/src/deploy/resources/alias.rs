//! `AWS::Lambda::Alias`: CreateAlias / UpdateAlias / DeleteAlias. `FunctionName` and `Name`
//! replace it; `FunctionVersion`, `Description` and `RoutingConfig` update in place. Ref and
//! attribute `AliasArn` are the alias's ARN.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Api, Applied, Current, Desired, OpError, function_path, lenient};
use crate::client::encode_component;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Props {
    pub function_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub function_version: String,
    pub name: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub description: Option<String>,
    #[serde(default)]
    pub provisioned_concurrency_config: Option<Value>,
    #[serde(default)]
    pub routing_config: Option<RoutingConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RoutingConfig {
    #[serde(default)]
    pub additional_version_weights: Vec<VersionWeight>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct VersionWeight {
    #[serde(deserialize_with = "lenient::string")]
    pub function_version: String,
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub function_weight: Option<f64>,
}

impl Props {
    pub fn from_value(v: &Value) -> Result<Self, OpError> {
        let p: Props = super::typed(v)?;
        if p.provisioned_concurrency_config.is_some() {
            return Err(OpError::validation(
                "ProvisionedConcurrencyConfig is not supported by fleetfn",
            ));
        }
        Ok(p)
    }

    fn routing(&self) -> Option<Value> {
        self.routing_config.as_ref().map(|r| {
            let weights: BTreeMap<&str, f64> = r
                .additional_version_weights
                .iter()
                .map(|w| {
                    (
                        w.function_version.as_str(),
                        w.function_weight.unwrap_or(0.0),
                    )
                })
                .collect();
            serde_json::json!({ "AdditionalVersionWeights": weights })
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    name: Option<&'a str>,
    function_version: &'a str,
    description: Option<&'a str>,
    routing_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    alias_arn: String,
}

fn applied(a: Answer) -> Applied {
    Applied {
        physical_id: a.alias_arn.clone(),
        attributes: BTreeMap::from([("AliasArn".to_owned(), Value::String(a.alias_arn))]),
    }
}

pub async fn create(api: &Api<'_>, d: &Desired<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let body = Body {
        name: Some(&p.name),
        function_version: &p.function_version,
        description: p.description.as_deref(),
        routing_config: p.routing(),
    };
    let a: Answer = api
        .call(
            http::Method::POST,
            &function_path(&p.function_name, "/aliases"),
            &[],
            Some(&body),
        )
        .await?;
    Ok(applied(a))
}

pub async fn update(api: &Api<'_>, d: &Desired<'_>, _c: &Current<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let body = Body {
        name: None,
        function_version: &p.function_version,
        description: Some(p.description.as_deref().unwrap_or("")),
        routing_config: Some(
            p.routing()
                .unwrap_or_else(|| serde_json::json!({"AdditionalVersionWeights": {}})),
        ),
    };
    let path = function_path(
        &p.function_name,
        &format!("/aliases/{}", encode_component(&p.name)),
    );
    let a: Answer = api.call(http::Method::PUT, &path, &[], Some(&body)).await?;
    Ok(applied(a))
}

pub async fn delete(api: &Api<'_>, c: &Current<'_>) -> Result<(), OpError> {
    let p: Props = super::typed(c.properties)?;
    let path = function_path(
        &p.function_name,
        &format!("/aliases/{}", encode_component(&p.name)),
    );
    api.call_empty(http::Method::DELETE, &path, &[], None::<&()>)
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn routing_weights_become_the_api_map() {
        let p = super::Props::from_value(&json!({
            "FunctionName": "f", "FunctionVersion": 2, "Name": "live",
            "RoutingConfig": {"AdditionalVersionWeights": [
                {"FunctionVersion": "1", "FunctionWeight": 0.25}
            ]}
        }))
        .unwrap();
        assert_eq!(p.function_version, "2");
        assert_eq!(
            p.routing(),
            Some(json!({"AdditionalVersionWeights": {"1": 0.25}}))
        );
        assert!(
            super::Props::from_value(&json!({"FunctionName": "f", "FunctionVersion": "1",
                "Name": "x", "ProvisionedConcurrencyConfig": {}}))
            .is_err()
        );
    }
}
