//! Applying a plan: creates, updates and replacements in dependency order (each resource's
//! properties resolved against what was applied before it), then deletions of removed resources
//! and of replaced ones' old copies in deletion order. When a resource fails, everything applied
//! so far is rolled back in reverse: created resources and replacements are deleted, updated ones
//! get their previous properties (and a function its previous code) back.

use std::collections::BTreeMap;

use fleetfn_templates::StackResource;
use serde_json::Value;

use super::code::CodePackage;
use super::plan::{Action, KnownMap, Plan, Source, deletion_order, generate_name};
use super::resources::{Current, Desired, Kind, OpError, Ops};

/// Progress lines as resources are applied.
pub trait Progress {
    fn event(&mut self, logical_id: &str, resource_type: &str, status: &str, detail: &str);
}

/// Prints progress to stderr.
pub struct PrintProgress;

impl Progress for PrintProgress {
    fn event(&mut self, logical_id: &str, resource_type: &str, status: &str, detail: &str) {
        if detail.is_empty() {
            eprintln!("{status:<28} {logical_id} ({resource_type})");
        } else {
            eprintln!("{status:<28} {logical_id} ({resource_type}) {detail}");
        }
    }
}

/// A deploy that went through.
#[derive(Debug)]
pub struct Outcome {
    pub resources: BTreeMap<String, StackResource>,
    pub known: KnownMap,
    /// Deletions that failed (the resources stay in the record as DELETE_FAILED).
    pub warnings: Vec<String>,
}

/// A deploy that failed and was rolled back.
#[derive(Debug)]
pub struct Failure {
    pub logical_id: String,
    pub resource_type: String,
    pub error: OpError,
    /// Rollback steps that failed too.
    pub rollback_errors: Vec<String>,
    /// Resources the rollback could not undo, as they are now (created ones that could not be
    /// deleted: DELETE_FAILED; updated ones that could not be restored: UPDATE_FAILED), for the
    /// record so that a later deploy or `stacks delete` still knows them.
    pub leftovers: Vec<StackResource>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Resource {} ({}) failed: {}",
            self.logical_id, self.resource_type, self.error
        )
    }
}

enum Journal {
    Created(StackResource),
    Updated {
        before: StackResource,
        after: StackResource,
    },
}

/// Deletes one recorded resource and reports its `DELETE_COMPLETE` or `DELETE_FAILED` event; one
/// of a type fleetfn does not handle is left alone, and so is one whose `DeletionPolicy` is
/// `Retain` when `honour_retain` (reported as `DELETE_SKIPPED`).
pub(crate) async fn delete_recorded<O: Ops>(
    ops: &O,
    r: &StackResource,
    honour_retain: bool,
    progress: &mut dyn Progress,
) -> Result<(), OpError> {
    let Some(c) = current(r) else { return Ok(()) };
    if honour_retain && r.deletion_policy.as_deref() == Some("Retain") {
        progress.event(
            &r.logical_id,
            &r.resource_type,
            "DELETE_SKIPPED",
            &format!("{} (DeletionPolicy Retain)", r.physical_id),
        );
        return Ok(());
    }
    match ops.delete(&c).await {
        Ok(()) => {
            progress.event(
                &r.logical_id,
                &r.resource_type,
                "DELETE_COMPLETE",
                &r.physical_id,
            );
            Ok(())
        }
        Err(e) => {
            progress.event(
                &r.logical_id,
                &r.resource_type,
                "DELETE_FAILED",
                &e.to_string(),
            );
            Err(e)
        }
    }
}

fn current(r: &StackResource) -> Option<Current<'_>> {
    Some(Current {
        logical_id: &r.logical_id,
        kind: Kind::parse(&r.resource_type)?,
        physical_id: &r.physical_id,
        properties: &r.properties,
        attributes: &r.attributes,
    })
}

/// Applies `plan`. `previous` is the recorded resources.
pub async fn apply<O: Ops>(
    ops: &O,
    src: &dyn Source,
    plan: &Plan,
    previous: &BTreeMap<String, StackResource>,
    stack_name: &str,
    package: &mut dyn FnMut(&str, &Value) -> Result<CodePackage, OpError>,
    progress: &mut dyn Progress,
) -> Result<Outcome, Failure> {
    let mut known = KnownMap::from_resources(previous);
    for s in &plan.steps {
        if matches!(s.action, Action::Create | Action::Replace) {
            known.forget(&s.logical_id);
        }
    }
    let mut resources: BTreeMap<String, StackResource> = BTreeMap::new();
    let mut journal: Vec<Journal> = Vec::new();
    let mut old_copies: Vec<StackResource> = Vec::new();
    for step in &plan.steps {
        let id = step.logical_id.as_str();
        let ty = step.resource_type.as_str();
        let kind = match (step.action, Kind::parse(ty)) {
            (Action::Skip | Action::Delete, _) | (_, None) => continue,
            (_, Some(k)) => k,
        };
        let result = apply_one(
            ops,
            src,
            plan,
            previous,
            stack_name,
            package,
            step.action,
            id,
            kind,
            &known,
        )
        .await;
        let (resource, entry) = match result {
            Ok(x) => x,
            Err(error) => {
                progress.event(id, ty, failed_status(step.action), &error.to_string());
                let (rollback_errors, leftovers) = rollback(ops, journal, progress).await;
                return Err(Failure {
                    logical_id: id.to_owned(),
                    resource_type: ty.to_owned(),
                    error,
                    rollback_errors,
                    leftovers,
                });
            }
        };
        known.set(id, &resource.physical_id, &resource.attributes);
        if let Some(entry) = entry {
            if let Journal::Created(_) = &entry
                && let Some(old) = previous.get(id)
            {
                if src.policies(id).1.as_deref() == Some("Retain") {
                    progress.event(
                        id,
                        ty,
                        "DELETE_SKIPPED",
                        &format!("{} (UpdateReplacePolicy Retain)", old.physical_id),
                    );
                } else {
                    old_copies.push(old.clone());
                }
            }
            progress.event(id, ty, &resource.status, &resource.physical_id);
            journal.push(entry);
        }
        resources.insert(id.to_owned(), resource);
    }
    // Clean-up: removed resources, then the old copies of replaced ones.
    let mut warnings = Vec::new();
    let removed: Vec<StackResource> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::Delete)
        .filter_map(|s| previous.get(&s.logical_id).cloned())
        .collect();
    let mut doomed: Vec<(&StackResource, bool)> = removed
        .iter()
        .map(|r| (r, true))
        .chain(old_copies.iter().map(|r| (r, false)))
        .collect();
    doomed.sort_by(|(a, _), (b, _)| deletion_order(a, b));
    for (r, is_removed) in doomed {
        // The old copy of a replaced resource goes whatever its DeletionPolicy says.
        if let Err(e) = delete_recorded(ops, r, is_removed, progress).await {
            warnings.push(format!(
                "could not delete {} {} ({}): {e}",
                if is_removed {
                    "removed resource"
                } else {
                    "the replaced copy of"
                },
                r.logical_id,
                r.physical_id
            ));
            if is_removed {
                let mut kept = r.clone();
                kept.status = "DELETE_FAILED".into();
                resources.insert(r.logical_id.clone(), kept);
            }
        }
    }
    Ok(Outcome {
        resources,
        known,
        warnings,
    })
}

fn failed_status(a: Action) -> &'static str {
    match a {
        Action::Update | Action::NoChange => "UPDATE_FAILED",
        _ => "CREATE_FAILED",
    }
}

#[allow(clippy::too_many_arguments)]
async fn apply_one<O: Ops>(
    ops: &O,
    src: &dyn Source,
    plan: &Plan,
    previous: &BTreeMap<String, StackResource>,
    stack_name: &str,
    package: &mut dyn FnMut(&str, &Value) -> Result<CodePackage, OpError>,
    action: Action,
    id: &str,
    kind: Kind,
    known: &KnownMap,
) -> Result<(StackResource, Option<Journal>), OpError> {
    let resolved = src
        .properties(id, known)
        .map_err(|e| OpError::validation(e.to_string()))?;
    // A role is only recorded: references to resources fleetfn does not deploy stay placeholders.
    let unresolved = resolved
        .unknowns
        .iter()
        .find(|u| kind != Kind::IamRole || known.0.contains_key(u.split('.').next().unwrap_or(u)));
    if let Some(u) = unresolved {
        // Everything referenced was applied before: an unknown is an attribute fleetfn does
        // not provide.
        let (target, attr) = u.split_once('.').unwrap_or((u, ""));
        let available = known
            .0
            .get(target)
            .map(|(_, a)| a.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        return Err(OpError::validation(if attr.is_empty() {
            format!("Ref {target}: the resource is not deployed by fleetfn")
        } else {
            format!(
                "Fn::GetAtt {target}.{attr}: fleetfn does not provide the attribute {attr}                  (it has: {available})"
            )
        }));
    }
    let ty = kind.type_name();
    let record =
        |physical_id: String, attributes: BTreeMap<String, Value>, status: &str| StackResource {
            logical_id: id.to_owned(),
            resource_type: ty.to_owned(),
            physical_id,
            attributes,
            properties: resolved.properties.clone(),
            status: status.to_owned(),
            deletion_policy: src.policies(id).0,
        };
    let limit = kind.name_property().map_or(100, |(_, l)| l);
    let name = generate_name(stack_name, id, limit);
    // A function whose Code referenced another resource is packaged now.
    let late_package = match (kind, plan.packages.get(id)) {
        (Kind::Function, None) => Some(package(id, &resolved.properties)?),
        _ => None,
    };
    // A version without a FunctionScalingConfig of its own gets its function's (which applies
    // to the function's published versions).
    let inherited = match kind {
        Kind::Version => inherit_scaling(&resolved.properties, known, src),
        _ => None,
    };
    let desired = Desired {
        logical_id: id,
        kind,
        properties: inherited.as_ref().unwrap_or(&resolved.properties),
        generated_name: &name,
        code: plan.packages.get(id).or(late_package.as_ref()),
    };
    let prev = previous.get(id);
    let action = match (action, prev) {
        // Resolved again now that what it references is applied: unchanged stays untouched.
        (Action::NoChange, Some(p)) if p.properties == resolved.properties => {
            return Ok((p.clone(), None));
        }
        (Action::NoChange, Some(_)) => Action::Update,
        (a, _) => a,
    };
    match (action, prev) {
        (Action::Update, Some(p)) => {
            let c = current(p).ok_or_else(|| OpError::new("InternalFailure", "unknown type"))?;
            let a = ops.update(&desired, &c).await?;
            let after = record(a.physical_id, a.attributes, "UPDATE_COMPLETE");
            Ok((
                after.clone(),
                Some(Journal::Updated {
                    before: p.clone(),
                    after,
                }),
            ))
        }
        _ => {
            let a = ops.create(&desired).await?;
            let status = "CREATE_COMPLETE";
            let created = record(a.physical_id, a.attributes, status);
            Ok((created.clone(), Some(Journal::Created(created))))
        }
    }
}

/// The version's properties with its function's FunctionScalingConfig, when it has none and
/// its function is a resource of the stack that has one.
fn inherit_scaling(props: &Value, known: &KnownMap, src: &dyn Source) -> Option<Value> {
    if props.get("FunctionScalingConfig").is_some() {
        return None;
    }
    let target = props.get("FunctionName")?.as_str()?;
    let (function_id, _) = known.0.iter().find(|(id, (physical, attrs))| {
        src.resource_type(id) == Kind::Function.type_name()
            && (physical == target || attrs.get("Arn").and_then(Value::as_str) == Some(target))
    })?;
    let fprops = src.properties(function_id, known).ok()?.properties;
    let scaling = fprops.get("FunctionScalingConfig")?.clone();
    let mut out = props.clone();
    out.as_object_mut()?
        .insert("FunctionScalingConfig".into(), scaling);
    Some(out)
}

/// Undoes the journal in reverse; returns what could not be undone (messages, and the
/// resources left behind).
async fn rollback<O: Ops>(
    ops: &O,
    journal: Vec<Journal>,
    progress: &mut dyn Progress,
) -> (Vec<String>, Vec<StackResource>) {
    let mut errors = Vec::new();
    let mut leftovers = Vec::new();
    for entry in journal.into_iter().rev() {
        match entry {
            Journal::Created(r) => {
                let Some(c) = current(&r) else { continue };
                match ops.delete(&c).await {
                    Ok(()) => progress.event(
                        &r.logical_id,
                        &r.resource_type,
                        "DELETE_COMPLETE",
                        "(rollback)",
                    ),
                    Err(e) => {
                        progress.event(
                            &r.logical_id,
                            &r.resource_type,
                            "DELETE_FAILED",
                            &e.to_string(),
                        );
                        errors.push(format!(
                            "deleting {} ({}): {e}",
                            r.logical_id, r.physical_id
                        ));
                        leftovers.push(StackResource {
                            status: "DELETE_FAILED".into(),
                            ..r
                        });
                    }
                }
            }
            Journal::Updated { before, after } => {
                let Some(c) = current(&after) else { continue };
                let code = match c.kind {
                    Kind::Function => {
                        match before.attributes.get("CodeSha256").and_then(Value::as_str) {
                            Some(sha) => match ops.fetch_code(sha).await {
                                Ok(p) => Some(p),
                                Err(e) => {
                                    errors.push(format!(
                                        "fetching the previous code of {}: {e}",
                                        before.logical_id
                                    ));
                                    leftovers.push(StackResource {
                                        status: "UPDATE_FAILED".into(),
                                        ..after
                                    });
                                    continue;
                                }
                            },
                            None => None,
                        }
                    }
                    _ => None,
                };
                let desired = Desired {
                    logical_id: &before.logical_id,
                    kind: c.kind,
                    properties: &before.properties,
                    generated_name: &before.physical_id,
                    code: code.as_ref(),
                };
                match ops.update(&desired, &c).await {
                    Ok(_) => progress.event(
                        &before.logical_id,
                        &before.resource_type,
                        "UPDATE_COMPLETE",
                        "(rollback)",
                    ),
                    Err(e) => {
                        progress.event(
                            &before.logical_id,
                            &before.resource_type,
                            "UPDATE_FAILED",
                            &e.to_string(),
                        );
                        errors.push(format!("restoring {}: {e}", before.logical_id));
                        leftovers.push(StackResource {
                            status: "UPDATE_FAILED".into(),
                            ..after
                        });
                    }
                }
            }
        }
    }
    (errors, leftovers)
}
