//! `AWS::IAM::Role`: fleetfn has no IAM API, so a role is recorded only. Ref is the role name
//! (`RoleName`, or a generated one); attributes `Arn` (`arn:<partition>:iam::<account>:role<Path><name>`)
//! and `RoleId` (kept across updates).

use std::collections::BTreeMap;

use rand::Rng;
use serde::Deserialize;
use serde_json::Value;

use super::{Applied, Current, Desired, OpError, Settings, Tag, lenient};

/// The role's properties: checked as CloudFormation checks them, and otherwise only recorded.
#[allow(dead_code)]
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Props {
    pub assume_role_policy_document: Value,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub description: Option<String>,
    #[serde(default)]
    pub managed_policy_arns: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub max_session_duration: Option<i64>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub permissions_boundary: Option<String>,
    #[serde(default)]
    pub policies: Option<Vec<Value>>,
    #[serde(default)]
    pub role_name: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<Tag>>,
}

impl Props {
    pub fn from_value(v: &Value) -> Result<Self, OpError> {
        super::typed(v)
    }
}

fn applied(s: &Settings, p: &Props, name: &str, role_id: String) -> Applied {
    let path = p.path.as_deref().unwrap_or("/");
    Applied {
        physical_id: name.to_owned(),
        attributes: BTreeMap::from([
            (
                "Arn".to_owned(),
                Value::String(format!(
                    "arn:{}:iam::{}:role{path}{name}",
                    s.partition, s.account_id
                )),
            ),
            ("RoleId".to_owned(), Value::String(role_id)),
        ]),
    }
}

pub fn create(s: &Settings, d: &Desired<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let name = p
        .role_name
        .clone()
        .unwrap_or_else(|| d.generated_name.to_owned());
    let id: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .map(|c| char::from(c).to_ascii_uppercase())
        .take(17)
        .collect();
    Ok(applied(s, &p, &name, format!("AROA{id}")))
}

pub fn update(s: &Settings, d: &Desired<'_>, c: &Current<'_>) -> Result<Applied, OpError> {
    let p = Props::from_value(d.properties)?;
    let role_id = c
        .attributes
        .get("RoleId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(applied(s, &p, c.physical_id, role_id))
}
