//! The template model: CloudFormation's JSON form of a template, section by section.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::TemplateError;

/// A template in CloudFormation's JSON form: YAML short tags are already rewritten to long forms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Template {
    #[serde(
        rename = "AWSTemplateFormatVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub format_version: Option<String>,
    #[serde(
        rename = "Description",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    /// "Transform": a string or a list of strings in the template.
    #[serde(rename = "Transform", default, skip_serializing_if = "Vec::is_empty")]
    pub transform: Vec<String>,
    #[serde(
        rename = "Parameters",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub parameters: BTreeMap<String, ParameterDecl>,
    #[serde(
        rename = "Mappings",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub mappings: BTreeMap<String, Value>,
    #[serde(
        rename = "Conditions",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub conditions: BTreeMap<String, Value>,
    #[serde(rename = "Resources", default)]
    pub resources: BTreeMap<String, ResourceDecl>,
    #[serde(
        rename = "Outputs",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub outputs: BTreeMap<String, OutputDecl>,
    /// SAM's "Globals" section (consumed by the SAM transform).
    #[serde(rename = "Globals", default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<Value>,
    /// Every other top-level section (Metadata, Rules, ...): kept, and reported as ignored.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One entry of the Parameters section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParameterDecl {
    #[serde(rename = "Type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_values: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_echo: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint_description: Option<String>,
}

/// One entry of the Resources section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceDecl {
    #[serde(rename = "Type")]
    pub type_: String,
    /// `{}` when the template has none.
    #[serde(default = "empty_object")]
    pub properties: Value,
    /// "DependsOn": a string or a list of strings in the template.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_replace_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// One entry of the Outputs section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OutputDecl {
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `{"Name": ...}`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Template {
    /// The template in CloudFormation's JSON form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Parses a template from JSON or YAML text (detected from the text).
pub fn parse(text: &str) -> Result<Template, TemplateError> {
    let _ = text;
    Err(TemplateError::Limit {
        message: "parse is not implemented yet".into(),
    })
}
