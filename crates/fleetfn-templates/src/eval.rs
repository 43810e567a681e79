//! The evaluator: parameters checked, conditions evaluated, the dependency graph ordered, and
//! intrinsic functions resolved against what is known about deployed resources.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ResourceDecl, Template, TemplateError};

/// Pseudo parameters' values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackContext {
    pub stack_name: String,
    pub region: String,
    pub account_id: String,
    /// "aws"
    pub partition: String,
    pub stack_id: String,
}

/// What the deploy engine knows about resources already deployed.
pub trait Known {
    /// Ref of a resource: its physical id (function name, alias ARN, version ARN, ...).
    fn physical_id(&self, logical_id: &str) -> Option<String>;
    /// Fn::GetAtt of a resource (e.g. Fn.Arn, Ver.Version, Url.FunctionUrl).
    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<Value>;
}

/// Knows nothing: every reference to a resource becomes an `{{after-deploy:..}}` placeholder.
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingKnown;

impl Known for NothingKnown {
    fn physical_id(&self, _logical_id: &str) -> Option<String> {
        None
    }
    fn attribute(&self, _logical_id: &str, _attribute: &str) -> Option<Value> {
        None
    }
}

/// A resource's properties with every intrinsic evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub properties: Value,
    /// `Id` or `Id.Attr` of every reference that was not known (placeholders in `properties`).
    pub unknowns: Vec<String>,
}

/// An output evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolvedOutput {
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_name: Option<String>,
    /// References not known yet (placeholders in `value`); empty once deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknowns: Vec<String>,
}

/// A parameter's value as used by the evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamValue {
    /// The declared Type.
    pub type_: String,
    /// A string, or a list of strings for list types.
    pub value: Value,
    pub no_echo: bool,
    /// The value came from the Default (no override given).
    pub from_default: bool,
}

impl ParamValue {
    /// The value as shown to people: `****` for NoEcho parameters; lists comma-joined.
    pub fn display(&self) -> String {
        if self.no_echo {
            return "****".into();
        }
        match &self.value {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        }
    }
}

static NO_DEPENDENCIES: BTreeSet<String> = BTreeSet::new();

/// A template checked and ready to evaluate.
#[derive(Debug, Clone)]
pub struct Evaluator {
    template: Template,
    ctx: StackContext,
    params: BTreeMap<String, ParamValue>,
    conditions: BTreeMap<String, bool>,
    order: Vec<String>,
    deps: BTreeMap<String, BTreeSet<String>>,
    warnings: Vec<String>,
}

impl Evaluator {
    /// Checks the parameters against `overrides`, evaluates the conditions and orders the resources.
    pub fn new(
        t: &Template,
        ctx: StackContext,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, TemplateError> {
        let _ = (t, ctx, overrides);
        Err(TemplateError::Limit {
            message: "Evaluator is not implemented yet".into(),
        })
    }

    /// Logical ids of the resources whose Condition holds, every resource after what it references
    /// (ties by logical id).
    pub fn order(&self) -> &[String] {
        &self.order
    }

    pub fn resource(&self, logical_id: &str) -> Option<&ResourceDecl> {
        if !self.deps.contains_key(logical_id) {
            return None;
        }
        self.template.resources.get(logical_id)
    }

    /// The included resources that `logical_id` references (Ref, GetAtt, Sub, DependsOn).
    pub fn dependencies(&self, logical_id: &str) -> &BTreeSet<String> {
        self.deps.get(logical_id).unwrap_or(&NO_DEPENDENCIES)
    }

    /// The resource's Properties with every intrinsic evaluated and AWS::NoValue keys removed.
    pub fn properties(
        &self,
        logical_id: &str,
        known: &dyn Known,
    ) -> Result<Resolved, TemplateError> {
        let _ = (logical_id, known, &self.ctx, &self.conditions);
        Err(TemplateError::Limit {
            message: "properties is not implemented yet".into(),
        })
    }

    /// The outputs whose Condition holds, evaluated.
    pub fn outputs(
        &self,
        known: &dyn Known,
    ) -> Result<BTreeMap<String, ResolvedOutput>, TemplateError> {
        let _ = known;
        Ok(BTreeMap::new())
    }

    pub fn parameter_values(&self) -> BTreeMap<String, ParamValue> {
        self.params.clone()
    }

    /// Ignored sections, SSM parameters used literally, ...
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}
