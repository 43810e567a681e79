//! The template model: CloudFormation's JSON form of a template, section by section.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{MAX_DEPTH, MAX_RESOURCES, MAX_TEMPLATE_BYTES, TemplateError};

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
    #[serde(
        rename = "Transform",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
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

/// Top-level sections CloudFormation knows (plus SAM's Globals).
const SECTIONS: &[&str] = &[
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Rules",
    "Mappings",
    "Conditions",
    "Transform",
    "Resources",
    "Outputs",
    "Globals",
    "Hooks",
];

/// Attributes a resource may have; CreationPolicy and UpdatePolicy are accepted and dropped.
const RESOURCE_ATTRIBUTES: &[&str] = &[
    "Type",
    "Properties",
    "DependsOn",
    "Condition",
    "DeletionPolicy",
    "UpdateReplacePolicy",
    "Metadata",
    "CreationPolicy",
    "UpdatePolicy",
    "Version",
];

/// Parses a template from JSON or YAML text: JSON when the text starts with `{`, YAML otherwise.
pub fn parse(text: &str) -> Result<Template, TemplateError> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::TooLarge {
            size: text.len(),
            limit: MAX_TEMPLATE_BYTES,
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value = if text.trim_start().starts_with('{') {
        let v: Value = serde_json::from_str(text).map_err(|e| TemplateError::Syntax {
            format: "JSON",
            message: format!("(line {}, column {}) {e}", e.line(), e.column()),
        })?;
        if depth(&v) > MAX_DEPTH {
            return Err(TemplateError::Limit {
                message: format!("the template nests deeper than {MAX_DEPTH} levels"),
            });
        }
        v
    } else {
        crate::yaml::to_json(text)?
    };
    Template::from_value(value)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn section<T: serde::de::DeserializeOwned>(name: &str, v: Value) -> Result<T, TemplateError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." {
            name.to_owned()
        } else {
            format!("{name}.{inner}")
        };
        TemplateError::format(path, e.into_inner().to_string())
    })
}

fn alphanumeric(
    section: &str,
    ids: impl Iterator<Item = impl AsRef<str>>,
) -> Result<(), TemplateError> {
    for id in ids {
        let id = id.as_ref();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) || id.len() > 255 {
            return Err(TemplateError::format(
                format!("{section}.{id}"),
                format!(
                    "{section} name {id} is non alphanumeric (use only A-Z, a-z and 0-9, at most 255)"
                ),
            ));
        }
    }
    Ok(())
}

impl Template {
    /// Reads a template already in JSON form (top-level sections checked, paths in errors).
    pub fn from_value(value: Value) -> Result<Template, TemplateError> {
        let Value::Object(top) = value else {
            return Err(TemplateError::format(
                "Template",
                "a template is a mapping of sections (Resources, Parameters, ...)",
            ));
        };
        let unknown: Vec<&str> = top
            .keys()
            .map(String::as_str)
            .filter(|k| !SECTIONS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(TemplateError::format(
                "Template",
                format!(
                    "Invalid template property or properties [{}]",
                    unknown.join(", ")
                ),
            ));
        }
        let mut t = Template::default();
        for (key, v) in top {
            match key.as_str() {
                "AWSTemplateFormatVersion" => t.format_version = Some(section(&key, v)?),
                "Description" => t.description = Some(section(&key, v)?),
                "Transform" => {
                    t.transform = match v {
                        Value::String(s) => vec![s],
                        Value::Array(_) => section(&key, v)?,
                        _ => {
                            return Err(TemplateError::format(
                                key,
                                "Transform must be a name or a list of names (fleetfn supports AWS::Serverless-2016-10-31)",
                            ));
                        }
                    }
                }
                "Parameters" => t.parameters = section(&key, v)?,
                "Mappings" => t.mappings = section(&key, v)?,
                "Conditions" => t.conditions = section(&key, v)?,
                "Resources" => {
                    let raw: BTreeMap<String, Value> = section(&key, v)?;
                    for (id, r) in raw {
                        let path = format!("Resources.{id}");
                        let Value::Object(mut m) = r else {
                            return Err(TemplateError::format(
                                path,
                                "a resource is a mapping with a Type",
                            ));
                        };
                        if let Some(bad) = m
                            .keys()
                            .find(|k| !RESOURCE_ATTRIBUTES.contains(&k.as_str()))
                        {
                            return Err(TemplateError::format(
                                path,
                                format!("Invalid template resource property '{bad}'"),
                            ));
                        }
                        if !m.contains_key("Type") {
                            return Err(TemplateError::format(
                                path,
                                "Every Resources object must contain a Type member.",
                            ));
                        }
                        for dropped in ["CreationPolicy", "UpdatePolicy", "Version"] {
                            m.remove(dropped);
                        }
                        if m.get("Properties").is_some_and(Value::is_null) {
                            m.remove("Properties");
                        }
                        let decl: ResourceDecl = section(&path, Value::Object(m))?;
                        if !decl.properties.is_object() {
                            return Err(TemplateError::format(
                                format!("{path}.Properties"),
                                "Properties must be a mapping",
                            ));
                        }
                        t.resources.insert(id, decl);
                    }
                }
                "Outputs" => {
                    let raw: BTreeMap<String, Value> = section(&key, v)?;
                    for (id, o) in raw {
                        let path = format!("Outputs.{id}");
                        if o.get("Value").is_none_or(Value::is_null) {
                            return Err(TemplateError::format(
                                path,
                                "Every Outputs member must contain a Value object",
                            ));
                        }
                        t.outputs.insert(id, section(&path, o)?);
                    }
                }
                "Globals" => t.globals = Some(v),
                _ => {
                    t.other.insert(key, v);
                }
            }
        }
        if t.resources.is_empty() {
            return Err(TemplateError::format(
                "Resources",
                "At least one Resources member must be defined.",
            ));
        }
        if t.resources.len() > MAX_RESOURCES {
            return Err(TemplateError::Limit {
                message: format!(
                    "the template has {} resources; at most {MAX_RESOURCES} are allowed",
                    t.resources.len()
                ),
            });
        }
        alphanumeric("Resources", t.resources.keys())?;
        alphanumeric("Parameters", t.parameters.keys())?;
        alphanumeric("Outputs", t.outputs.keys())?;
        Ok(t)
    }
}
