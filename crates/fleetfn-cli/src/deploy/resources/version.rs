//! `AWS::Lambda::Version`: PublishVersion, then (unless `--no-wait`) wait for the version to be
//! Active; a version that ends Failed or never gets there is deleted again and fails the deploy.
//! Versions are immutable: every property but `FunctionScalingConfig` replaces it (a new
//! version). Ref is the version's ARN; attributes `Version` and `FunctionArn`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::function::{Answer, ScalingConfig, put_scaling, settle_qualified};
use super::{Api, Applied, Current, Desired, OpError, Settings, function_path, lenient};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Props {
    pub function_name: String,
    #[serde(default)]
    pub code_sha256: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub description: Option<String>,
    #[serde(default)]
    pub provisioned_concurrency_config: Option<Value>,
    /// Accepted and not used (fleetfn's runtimes are updated with fleetfn).
    #[allow(dead_code)]
    #[serde(default)]
    pub runtime_policy: Option<Value>,
    #[serde(default)]
    pub function_scaling_config: Option<ScalingConfig>,
}

impl Props {
    pub fn from_value(v: &Value) -> Result<Self, OpError> {
        let p: Props = super::typed(v)?;
        if p.provisioned_concurrency_config.is_some() {
            return Err(OpError::validation(
                "ProvisionedConcurrencyConfig is not supported by fleetfn (capacity-provider \
                 functions scale with FunctionScalingConfig)",
            ));
        }
        Ok(p)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PublishBody<'a> {
    code_sha256: Option<&'a str>,
    description: Option<&'a str>,
}

/// The unqualified function ARN of a version ARN (`...:function:f:3` → `...:function:f`).
fn unqualified(arn: &str) -> String {
    match arn.rsplit_once(':') {
        Some((head, tail)) if arn.split(':').count() == 8 && !tail.is_empty() => head.to_owned(),
        _ => arn.to_owned(),
    }
}

pub async fn create(api: &Api<'_>, s: &Settings, d: &Desired<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let body = PublishBody {
        code_sha256: p.code_sha256.as_deref(),
        description: p.description.as_deref(),
    };
    let a: Answer = api
        .call(
            http::Method::POST,
            &function_path(&p.function_name, "/versions"),
            &[],
            Some(&body),
        )
        .await?;
    let function_arn = unqualified(&a.function_arn);
    let ready = async {
        if s.wait {
            settle_qualified(api, &function_arn, Some(&a.version), s.wait_timeout, true).await?;
        }
        if let Some(sc) = &p.function_scaling_config {
            put_scaling(api, &function_arn, Some(&a.version), sc).await?;
        }
        Ok::<_, OpError>(())
    }
    .await;
    if let Err(e) = ready {
        // The version exists but failed: it is not part of the stack, so delete it here.
        let _ = api
            .call_empty(
                http::Method::DELETE,
                &function_path(&function_arn, ""),
                &[("Qualifier", a.version.as_str())],
                None::<&()>,
            )
            .await;
        return Err(OpError::new(
            e.kind,
            format!(
                "version {} of {}: {}",
                a.version, a.function_name, e.message
            ),
        ));
    }
    Ok(Applied {
        physical_id: a.function_arn.clone(),
        attributes: BTreeMap::from([
            ("Version".to_owned(), Value::String(a.version.clone())),
            ("FunctionArn".to_owned(), Value::String(function_arn)),
        ]),
    })
}

/// Only `FunctionScalingConfig` updates in place.
pub async fn update(api: &Api<'_>, d: &Desired<'_>, c: &Current<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let (function, version) = parts(c)?;
    if let Some(sc) = &p.function_scaling_config {
        put_scaling(api, &function, Some(&version), sc).await?;
    }
    Ok(Applied {
        physical_id: c.physical_id.to_owned(),
        attributes: c.attributes.clone(),
    })
}

fn parts(c: &Current<'_>) -> Result<(String, String), OpError> {
    let version = c
        .attributes
        .get("Version")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| c.physical_id.rsplit_once(':').map(|(_, v)| v.to_owned()))
        .ok_or_else(|| OpError::new("InternalFailure", "the version number is not recorded"))?;
    Ok((unqualified(c.physical_id), version))
}

pub async fn delete(api: &Api<'_>, c: &Current<'_>) -> Result<(), OpError> {
    let (function, version) = parts(c)?;
    api.call_empty(
        http::Method::DELETE,
        &function_path(&function, ""),
        &[("Qualifier", version.as_str())],
        None::<&()>,
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn unqualified_arns() {
        assert_eq!(
            super::unqualified("arn:aws:lambda:us-east-1:000000000000:function:f:3"),
            "arn:aws:lambda:us-east-1:000000000000:function:f"
        );
        assert_eq!(
            super::unqualified("arn:aws:lambda:us-east-1:000000000000:function:f"),
            "arn:aws:lambda:us-east-1:000000000000:function:f"
        );
    }
}
