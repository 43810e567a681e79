//! The plan of a deploy: for each resource of the template, whether it is created, updated in
//! place, replaced, left alone or skipped (a type fleetfn does not deploy), and which recorded
//! resources are deleted, from the previous stack record. Properties are compared as resolved
//! (references to resources that will be created or replaced are unknown and count as changed);
//! a function's code by the SHA-256 of its package. A Version whose function changes is replaced
//! (a new version is published), so a deploy that changes a function publishes it.

use std::collections::{BTreeMap, BTreeSet};

use fleetfn_templates::{Known, Resolved, StackResource, TemplateError};
use serde_json::Value;

use super::code::CodePackage;
use super::resources::{Kind, OpError, SILENTLY_SKIPPED};

/// What the engine needs of an evaluated template (the [`fleetfn_templates::Evaluator`], or a
/// fake in tests).
pub trait Source {
    /// Logical ids in dependency order.
    fn order(&self) -> Vec<String>;
    fn resource_type(&self, logical_id: &str) -> String;
    fn dependencies(&self, logical_id: &str) -> BTreeSet<String>;
    fn properties(&self, logical_id: &str, known: &dyn Known) -> Result<Resolved, TemplateError>;
    /// The resource's DeletionPolicy and UpdateReplacePolicy.
    fn policies(&self, _logical_id: &str) -> (Option<String>, Option<String>) {
        (None, None)
    }
}

impl Source for fleetfn_templates::Evaluator {
    fn order(&self) -> Vec<String> {
        fleetfn_templates::Evaluator::order(self).to_vec()
    }
    fn resource_type(&self, logical_id: &str) -> String {
        self.resource(logical_id)
            .map(|r| r.type_.clone())
            .unwrap_or_default()
    }
    fn dependencies(&self, logical_id: &str) -> BTreeSet<String> {
        fleetfn_templates::Evaluator::dependencies(self, logical_id).clone()
    }
    fn properties(&self, logical_id: &str, known: &dyn Known) -> Result<Resolved, TemplateError> {
        fleetfn_templates::Evaluator::properties(self, logical_id, known)
    }
    fn policies(&self, logical_id: &str) -> (Option<String>, Option<String>) {
        self.resource(logical_id).map_or((None, None), |r| {
            (r.deletion_policy.clone(), r.update_replace_policy.clone())
        })
    }
}

/// Physical ids and attributes of deployed resources, answering Ref and Fn::GetAtt.
#[derive(Debug, Clone, Default)]
pub struct KnownMap(pub BTreeMap<String, (String, BTreeMap<String, Value>)>);

impl KnownMap {
    pub fn from_resources(resources: &BTreeMap<String, StackResource>) -> Self {
        Self(
            resources
                .iter()
                .map(|(id, r)| (id.clone(), (r.physical_id.clone(), r.attributes.clone())))
                .collect(),
        )
    }

    pub fn set(&mut self, id: &str, physical_id: &str, attributes: &BTreeMap<String, Value>) {
        self.0
            .insert(id.to_owned(), (physical_id.to_owned(), attributes.clone()));
    }

    pub fn forget(&mut self, id: &str) {
        self.0.remove(id);
    }
}

impl Known for KnownMap {
    fn physical_id(&self, logical_id: &str) -> Option<String> {
        self.0.get(logical_id).map(|(p, _)| p.clone())
    }
    fn attribute(&self, logical_id: &str, attribute: &str) -> Option<Value> {
        self.0
            .get(logical_id)
            .and_then(|(_, a)| a.get(attribute).cloned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    NoChange,
    Skip,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::Create => "+ Create",
            Action::Update => "~ Update",
            Action::Replace => "-/+ Replace",
            Action::Delete => "- Delete",
            Action::NoChange => "= NoChange",
            Action::Skip => "! Skip (unsupported type)",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub logical_id: String,
    pub resource_type: String,
    pub action: Action,
    /// Top-level properties that changed (names only: values are never printed).
    pub changed: Vec<String>,
    pub reason: Option<String>,
    /// References not known before the deploy (`Id` or `Id.Attr`).
    pub unknowns: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// The template's resources in dependency order, then the deletions in deletion order.
    pub steps: Vec<Step>,
    /// Code packages of the functions, by logical id.
    pub packages: BTreeMap<String, CodePackage>,
}

impl Plan {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.logical_id == id)
    }

    /// Unsupported types that were skipped (those not skipped silently).
    pub fn skipped(&self) -> Vec<&Step> {
        self.steps
            .iter()
            .filter(|s| {
                s.action == Action::Skip && !SILENTLY_SKIPPED.contains(&s.resource_type.as_str())
            })
            .collect()
    }

    pub fn has_changes(&self) -> bool {
        self.steps
            .iter()
            .any(|s| !matches!(s.action, Action::NoChange | Action::Skip))
    }

    /// The plan as printed: one line per resource (silently skipped types left out).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            if s.action == Action::Skip && SILENTLY_SKIPPED.contains(&s.resource_type.as_str()) {
                continue;
            }
            out.push_str(&format!(
                "{} {} ({})",
                s.action.label(),
                s.logical_id,
                s.resource_type
            ));
            if !s.changed.is_empty() {
                out.push_str(&format!(" [changed: {}]", s.changed.join(", ")));
            }
            if let Some(r) = &s.reason {
                out.push_str(&format!(" ({r})"));
            }
            out.push('\n');
        }
        out
    }
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Template(#[from] TemplateError),
    #[error("Resource {logical_id} ({resource_type}) failed: {error}")]
    Resource {
        logical_id: String,
        resource_type: String,
        error: OpError,
    },
    #[error(
        "unsupported resource types (--strict): {}",
        .0.iter().map(|(id, t)| format!("{id} ({t})")).collect::<Vec<_>>().join(", ")
    )]
    Strict(Vec<(String, String)>),
}

/// The top-level property names whose values differ.
pub fn changed_properties(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    keys.into_iter()
        .filter(|k| o.get(*k) != n.get(*k))
        .cloned()
        .collect()
}

/// Makes the plan. `package` builds a function's code package from its resolved properties.
pub fn make(
    src: &dyn Source,
    previous: &BTreeMap<String, StackResource>,
    strict: bool,
    package: &mut dyn FnMut(&str, &Value) -> Result<CodePackage, OpError>,
) -> Result<Plan, PlanError> {
    let order = src.order();
    let mut known = KnownMap::from_resources(previous);
    let mut plan = Plan::default();
    let mut unsupported = Vec::new();
    let mut skipped_ids = BTreeSet::new();
    for id in &order {
        let ty = src.resource_type(id);
        let fail = |error: OpError| PlanError::Resource {
            logical_id: id.clone(),
            resource_type: ty.clone(),
            error,
        };
        let Some(kind) = Kind::parse(&ty) else {
            if !SILENTLY_SKIPPED.contains(&ty.as_str()) {
                unsupported.push((id.clone(), ty.clone()));
            }
            skipped_ids.insert(id.clone());
            known.forget(id);
            plan.steps.push(Step {
                logical_id: id.clone(),
                resource_type: ty.clone(),
                action: Action::Skip,
                changed: vec![],
                reason: None,
                unknowns: vec![],
            });
            continue;
        };
        let resolved = src.properties(id, &known)?;
        // A role is only recorded: it may name resources fleetfn does not deploy.
        if let Some(s) = resolved
            .unknowns
            .iter()
            .find(|u| skipped_ids.contains(u.split('.').next().unwrap_or(u)))
            .filter(|_| kind != Kind::IamRole)
        {
            let target = s.split('.').next().unwrap_or(s);
            return Err(fail(OpError::validation(format!(
                "it references {target} ({}), which fleetfn does not deploy",
                src.resource_type(target)
            ))));
        }
        match kind.validate(&resolved.properties) {
            // A placeholder stands where the value will be: only its type can be wrong.
            Err(e)
                if resolved.unknowns.is_empty()
                    || e.message.contains("unknown field")
                    || e.message.contains("missing field") =>
            {
                return Err(fail(e));
            }
            _ => {}
        }
        if kind == Kind::Function
            && let Some(code) = resolved.properties.get("Code")
            && !code.to_string().contains("{{after-deploy:")
        {
            let pkg = package(id, &resolved.properties).map_err(fail)?;
            plan.packages.insert(id.clone(), pkg);
        }
        let mut reason = None;
        let (action, changed) = match previous.get(id) {
            None => (Action::Create, vec![]),
            Some(p) if p.resource_type != ty => {
                reason = Some(format!("type was {}", p.resource_type));
                (Action::Replace, vec![])
            }
            Some(p) => {
                let mut changed = changed_properties(&p.properties, &resolved.properties);
                if kind == Kind::Function
                    && !changed.iter().any(|c| c == "Code")
                    && let Some(pkg) = plan.packages.get(id)
                    && p.attributes.get("CodeSha256").and_then(Value::as_str)
                        != Some(pkg.sha256.as_str())
                {
                    changed.push("Code".into());
                    reason = Some("the code package changed".into());
                }
                let function_changed = kind == Kind::Version
                    && src.dependencies(id).iter().any(|d| {
                        plan.step(d).is_some_and(|s| {
                            s.resource_type == Kind::Function.type_name()
                                && matches!(s.action, Action::Update | Action::Replace)
                        })
                    });
                if function_changed {
                    reason = Some("its function changed: a new version is published".into());
                }
                let replaces = match kind.replacing_properties() {
                    None => true,
                    Some(keys) => changed.iter().any(|c| keys.contains(&c.as_str())),
                };
                if changed.is_empty() && !function_changed {
                    (Action::NoChange, changed)
                } else if replaces || function_changed {
                    if let Some((prop, _)) = kind.name_property()
                        && let Some(name) = resolved.properties.get(prop)
                        && p.properties.get(prop) == Some(name)
                    {
                        return Err(fail(OpError::validation(format!(
                            "CloudFormation cannot update a stack when a custom-named resource \
                             requires replacing ({} changed). Rename {name} ({prop}) and deploy \
                             again.",
                            changed.join(", ")
                        ))));
                    }
                    (Action::Replace, changed)
                } else {
                    (Action::Update, changed)
                }
            }
        };
        if matches!(action, Action::Create | Action::Replace) {
            known.forget(id);
        }
        plan.steps.push(Step {
            logical_id: id.clone(),
            resource_type: ty,
            action,
            changed,
            reason,
            unknowns: resolved.unknowns,
        });
    }
    if strict && !unsupported.is_empty() {
        return Err(PlanError::Strict(unsupported));
    }
    // A resource whose type is skipped now is no longer part of the stack.
    let in_template: BTreeSet<&String> = order
        .iter()
        .filter(|id| !skipped_ids.contains(*id))
        .collect();
    let mut removed: Vec<&StackResource> = previous
        .values()
        .filter(|r| !in_template.contains(&r.logical_id))
        .collect();
    sort_for_deletion(&mut removed);
    for r in removed {
        plan.steps.push(Step {
            logical_id: r.logical_id.clone(),
            resource_type: r.resource_type.clone(),
            action: Action::Delete,
            changed: vec![],
            reason: None,
            unknowns: vec![],
        });
    }
    Ok(plan)
}

/// Dependents first: permissions, URLs and mappings, then aliases, versions, functions,
/// capacity providers, roles; ties in reverse logical-id order.
pub fn deletion_order(a: &StackResource, b: &StackResource) -> std::cmp::Ordering {
    let rank = |r: &StackResource| Kind::parse(&r.resource_type).map_or(9, Kind::delete_rank);
    rank(b)
        .cmp(&rank(a))
        .then_with(|| b.logical_id.cmp(&a.logical_id))
}

pub fn sort_for_deletion(resources: &mut [&StackResource]) {
    resources.sort_by(|a, b| deletion_order(a, b));
}

/// `<stack>-<LogicalId>-<12 random [A-Za-z0-9]>`, the prefix cut so the whole fits `limit`.
pub fn generate_name(stack: &str, logical_id: &str, limit: usize) -> String {
    use rand::Rng;
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(12)
        .map(char::from)
        .collect();
    let prefix: String = format!("{stack}-{logical_id}")
        .chars()
        .take(limit.saturating_sub(13))
        .collect();
    format!("{prefix}-{suffix}")
}
