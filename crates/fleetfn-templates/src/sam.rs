//! The SAM transform (`Transform: AWS::Serverless-2016-10-31`), reproducing aws-sam-translator's output
//! for what fleetfn supports: `AWS::Serverless::Function` (code, generated execution role with
//! managed policies, statements and policy templates, `CapacityProviderConfig`, `AutoPublishAlias` →
//! Version + Alias, `FunctionUrlConfig` → Url + Permissions, `EventInvokeConfig`, SQS `Events` →
//! event source mappings), `AWS::Serverless::CapacityProvider` (+ generated operator role) and
//! `Globals`. Everything else SAM knows is an error that names the resource and property, worded like
//! samtranslator's; plain CloudFormation resources pass through unchanged.
//!
//! A `CodeUri` that is a local path becomes `Code: {"S3Bucket": "fleetfn-local", "S3Key": <path>}`
//! (plus `S3ObjectVersion` when [`SamOptions::local_code_version`] knows it): exactly what
//! samtranslator emits for `s3://fleetfn-local/<path>[?versionId=..]`. The deploy engine zips it.
//! tests/templates/test_sam_oracle.py compares the output with aws-sam-translator's.

mod capacity_provider;
mod function;
mod hash;
mod policies;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::{ResourceDecl, StackContext, Template, TemplateError};

/// The transform's name in a template's `Transform` section.
pub const SAM_TRANSFORM: &str = "AWS::Serverless-2016-10-31";
/// The S3 bucket name that marks a local code path in a transformed function's `Code`.
pub const LOCAL_CODE_BUCKET: &str = "fleetfn-local";

/// What the caller knows beyond the template.
#[derive(Default)]
pub struct SamOptions<'a> {
    /// Parameter values given on the command line (they win over Defaults), used where samtranslator
    /// resolves parameter references itself (AutoPublishAlias, the Version logical id's hash).
    pub parameter_overrides: BTreeMap<String, String>,
    /// The content version of a local code path (as written in `CodeUri`), emitted as
    /// `Code.S3ObjectVersion` so that a code change publishes a new version.
    pub local_code_version: Option<&'a LocalCodeVersion<'a>>,
}

/// Gives the content version of a local code path as written in `CodeUri` (None: unknown).
pub type LocalCodeVersion<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Applies the SAM transform with no parameter overrides and no local code versions; a template
/// without the transform is returned unchanged. The result has no AWS::Serverless::* resources and no
/// Globals.
pub fn transform(t: &Template, ctx: &StackContext) -> Result<Template, TemplateError> {
    transform_with(t, ctx, &SamOptions::default())
}

/// [`transform`] with parameter overrides and local code versions.
pub fn transform_with(
    t: &Template,
    ctx: &StackContext,
    opts: &SamOptions<'_>,
) -> Result<Template, TemplateError> {
    if !t.transform.iter().any(|name| name == SAM_TRANSFORM) {
        return Ok(t.clone());
    }
    if let Some(other) = t.transform.iter().find(|name| *name != SAM_TRANSFORM) {
        return Err(TemplateError::Unsupported {
            path: "Transform".into(),
            message: format!(
                "the transform {other} is not supported by fleetfn; only {SAM_TRANSFORM} is"
            ),
        });
    }
    let cx = Cx::new(t, ctx, opts);
    let globals = Globals::parse(t.globals.as_ref()).map_err(|e| TemplateError::Sam(vec![e]))?;

    let mut errors: Vec<String> = Vec::new();
    let mut out: BTreeMap<String, ResourceDecl> = BTreeMap::new();
    let mut refs: BTreeMap<String, String> = BTreeMap::new();
    let mut conditions: BTreeMap<String, Value> = BTreeMap::new();
    // Plain resources first, so generated ids that collide with them are reported.
    for (id, decl) in &t.resources {
        if !decl.type_.starts_with("AWS::Serverless::") {
            out.insert(id.clone(), decl.clone());
        }
    }
    for (id, decl) in &t.resources {
        if !decl.type_.starts_with("AWS::Serverless::") {
            continue;
        }
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            errors.push(invalid(id, "Logical ids must be alphanumeric."));
            continue;
        }
        let Some(props) = decl.properties.as_object() else {
            errors.push(invalid(id, "Properties of a resource must be an object."));
            continue;
        };
        let generated = match decl.type_.as_str() {
            function::TYPE => {
                let merged = globals.merge("Function", props);
                function::transform(id, decl, &merged, &cx)
            }
            capacity_provider::TYPE => {
                let merged = globals.merge("CapacityProvider", props);
                capacity_provider::transform(id, decl, &merged, &cx)
            }
            other => Err(format!(
                "{other} is not supported by fleetfn's SAM transform; supported: {}, {}. \
                 Write the resource as plain CloudFormation instead.",
                function::TYPE,
                capacity_provider::TYPE
            )),
        };
        match generated {
            Ok(generated) => {
                conditions.extend(generated.conditions);
                for (property, target) in generated.refs {
                    refs.insert(format!("{id}.{property}"), target);
                }
                for (new_id, new_decl) in generated.resources {
                    if out.contains_key(&new_id)
                        || (new_id != *id && t.resources.contains_key(&new_id))
                    {
                        errors.push(format!(
                            "Transforming resource with id [{id}] attempts to create a new resource with id \
                             [{new_id}] and type \"{}\". A resource with that id already exists within this \
                             template. Please use a different id for that resource.",
                            new_decl.type_
                        ));
                        continue;
                    }
                    out.insert(new_id, new_decl);
                }
            }
            Err(message) => errors.push(invalid(id, &message)),
        }
    }
    if !errors.is_empty() {
        let mut seen = std::collections::BTreeSet::new();
        errors.retain(|e| seen.insert(e.clone()));
        return Err(TemplateError::Sam(errors));
    }

    let mut result = t.clone();
    result.transform.clear();
    result.globals = None;
    result.resources = out;
    result.conditions.extend(conditions);
    if !refs.is_empty() {
        for decl in result.resources.values_mut() {
            resolve_sam_refs(&mut decl.properties, &refs);
        }
        for output in result.outputs.values_mut() {
            resolve_sam_refs(&mut output.value, &refs);
        }
    }
    Ok(result)
}

/// "Resource with id [Id] is invalid. <message>" (samtranslator's InvalidResourceException).
fn invalid(id: &str, message: &str) -> String {
    format!("Resource with id [{id}] is invalid. {message}")
}

/// What one SAM resource expands to.
struct Generated {
    /// New resources by logical id (the SAM resource's own id among them).
    resources: Vec<(String, ResourceDecl)>,
    /// `Id.Property` references the template may use (`Fn.Alias`, `Fn.Version`) → generated ids.
    refs: Vec<(&'static str, String)>,
    /// Conditions the generated resources need (e.g. `NOT<Cond>` for a role in an Fn::If's else).
    conditions: Vec<(String, Value)>,
}

/// The values every resource transform needs.
struct Cx<'a> {
    ctx: &'a StackContext,
    opts: &'a SamOptions<'a>,
    /// Parameter values (overrides, else Defaults) and pseudo parameters, for samtranslator's
    /// `resolve_parameter_refs`.
    params: BTreeMap<String, Value>,
}

impl<'a> Cx<'a> {
    fn new(t: &Template, ctx: &'a StackContext, opts: &'a SamOptions<'a>) -> Self {
        let mut params = BTreeMap::new();
        for (name, decl) in &t.parameters {
            if let Some(v) = opts.parameter_overrides.get(name) {
                params.insert(name.clone(), Value::String(v.clone()));
            } else if let Some(default) = &decl.default {
                params.insert(name.clone(), default.clone());
            }
        }
        params.insert("AWS::Region".into(), json!(ctx.region));
        params.insert("AWS::AccountId".into(), json!(ctx.account_id));
        params.insert("AWS::StackName".into(), json!(ctx.stack_name));
        params.insert("AWS::Partition".into(), json!(ctx.partition));
        Cx { ctx, opts, params }
    }

    /// samtranslator's `IntrinsicsResolver.resolve_parameter_refs`: `Ref`s to parameters become
    /// their values and `${Param}` in `Fn::Sub` strings is substituted; everything else is kept.
    fn resolve_params(&self, v: &Value) -> Value {
        match v {
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| self.resolve_params(i)).collect())
            }
            Value::Object(map) => {
                if map.len() == 1 {
                    if let Some(Value::String(name)) = map.get("Ref") {
                        if let Some(value) = self.params.get(name) {
                            return value.clone();
                        }
                        return v.clone();
                    }
                    if let Some(sub) = map.get("Fn::Sub") {
                        let substituted = match sub {
                            Value::String(s) => Value::String(self.sub_params(s)),
                            Value::Array(parts) if !parts.is_empty() => {
                                let mut parts = parts.clone();
                                if let Value::String(s) = &parts[0] {
                                    parts[0] = Value::String(self.sub_params(s));
                                }
                                Value::Array(parts)
                            }
                            other => other.clone(),
                        };
                        return json!({ "Fn::Sub": substituted });
                    }
                }
                Value::Object(
                    map.iter()
                        .map(|(k, item)| (k.clone(), self.resolve_params(item)))
                        .collect(),
                )
            }
            other => other.clone(),
        }
    }

    fn sub_params(&self, s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            match self.params.get(name) {
                Some(Value::String(v)) if !name.starts_with('!') => out.push_str(v),
                Some(v @ (Value::Number(_) | Value::Bool(_))) if !name.starts_with('!') => {
                    out.push_str(&v.to_string())
                }
                _ => out.push_str(&rest[start..start + 2 + end + 1]),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// A dict with one key that is `Ref`, `Condition` or `Fn::*` (samtranslator's `is_intrinsic`).
fn is_intrinsic(v: &Value) -> bool {
    match v.as_object() {
        Some(m) if m.len() == 1 => m
            .keys()
            .next()
            .is_some_and(|k| k == "Ref" || k == "Condition" || k.starts_with("Fn::")),
        _ => false,
    }
}

/// `[{"Key": k, "Value": v}, ...]` from a SAM tags map.
fn tag_list(tags: &Map<String, Value>) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| {
            let v = if v.is_null() { json!("") } else { v.clone() };
            json!({"Key": k, "Value": v})
        })
        .collect()
}

/// The SAM tag samtranslator puts on what it generates.
const SAM_TAG_KEY: &str = "lambda:createdBy";

/// Rewrites `{"Ref": "Fn.Alias"}`, `{"Fn::GetAtt": ["Fn.Alias", "Arn"]}` and `${Fn.Alias}` in
/// `Fn::Sub` to the generated resources (samtranslator's `resolve_sam_resource_refs`).
fn resolve_sam_refs(v: &mut Value, refs: &BTreeMap<String, String>) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| resolve_sam_refs(i, refs)),
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(name)) = map.get_mut("Ref") {
                    if let Some(target) = refs.get(name.as_str()) {
                        *name = target.clone();
                    }
                    return;
                }
                if let Some(getatt) = map.get_mut("Fn::GetAtt") {
                    // "Fn.Alias.Arn", ["Fn", "Alias.Arn"] and ["Fn.Alias", "Arn"] are one reference.
                    let joined = match &*getatt {
                        Value::String(s) => Some(s.clone()),
                        Value::Array(parts) => parts
                            .iter()
                            .map(|p| p.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .map(|p| p.join(".")),
                        _ => None,
                    };
                    let resolved = joined.and_then(|joined| {
                        refs.iter().find_map(|(from, to)| {
                            joined
                                .strip_prefix(from.as_str())
                                .and_then(|rest| rest.strip_prefix('.'))
                                .map(|attr| json!([to, attr]))
                        })
                    });
                    if let Some(resolved) = resolved {
                        *getatt = resolved;
                    }
                    return;
                }
                if let Some(sub) = map.get_mut("Fn::Sub") {
                    let text = match sub {
                        Value::String(s) => Some(s),
                        Value::Array(parts) => match parts.first_mut() {
                            Some(Value::String(s)) => Some(s),
                            _ => None,
                        },
                        _ => None,
                    };
                    if let Some(text) = text {
                        for (from, to) in refs {
                            *text = text
                                .replace(&format!("${{{from}}}"), &format!("${{{to}}}"))
                                .replace(&format!("${{{from}."), &format!("${{{to}."));
                        }
                    }
                    if let Value::Array(parts) = sub {
                        parts
                            .iter_mut()
                            .skip(1)
                            .for_each(|p| resolve_sam_refs(p, refs));
                    }
                    return;
                }
            }
            map.values_mut().for_each(|i| resolve_sam_refs(i, refs));
        }
        _ => {}
    }
}

/// The Globals section, checked like samtranslator's Globals plugin.
struct Globals {
    sections: BTreeMap<String, Map<String, Value>>,
}

/// The sections samtranslator accepts in Globals, with the properties each takes; fleetfn merges
/// `Function` and `CapacityProvider` (the other sections can only apply to resource types fleetfn
/// rejects anyway).
const GLOBALS_SECTIONS: &[(&str, &[&str])] = &[
    ("Api", &[]),
    ("CapacityProvider", capacity_provider::GLOBALS),
    ("Function", function::GLOBALS),
    ("HttpApi", &[]),
    ("LayerVersion", &["PublishLambdaVersion"]),
    ("MicrovmImage", &[]),
    (
        "NetworkConnector",
        &["OperatorRole", "Tags", "PropagateTags"],
    ),
    ("SimpleTable", &["SSESpecification"]),
    ("StateMachine", &["PropagateTags"]),
    ("WebSocketApi", &[]),
];

impl Globals {
    fn parse(v: Option<&Value>) -> Result<Globals, String> {
        let mut sections = BTreeMap::new();
        let Some(v) = v else {
            return Ok(Globals { sections });
        };
        let err = |m: String| format!("'Globals' section is invalid. {m}");
        let Some(map) = v.as_object() else {
            return Err(err("It must be a non-empty dictionary".into()));
        };
        let names: Vec<&str> = GLOBALS_SECTIONS.iter().map(|(n, _)| *n).collect();
        for (name, props) in map {
            let Some((_, supported)) = GLOBALS_SECTIONS.iter().find(|(n, _)| n == name) else {
                return Err(err(format!(
                    "'{name}' is not supported. Must be one of the following values - {}",
                    python_list(&names)
                )));
            };
            let Some(props) = props.as_object() else {
                return Err(err("Value of ${section} must be a dictionary".into()));
            };
            let checked =
                !supported.is_empty() || matches!(name.as_str(), "Function" | "CapacityProvider");
            if checked && let Some(key) = props.keys().find(|k| !supported.contains(&k.as_str())) {
                return Err(err(format!(
                    "'{key}' is not a supported property of '{name}'. Must be one of the following values - {}",
                    python_list(supported)
                )));
            }
            sections.insert(name.clone(), props.clone());
        }
        Ok(Globals { sections })
    }

    /// The resource's properties merged over the section's (samtranslator's GlobalProperties.merge).
    fn merge(&self, section: &str, local: &Map<String, Value>) -> Map<String, Value> {
        match self.sections.get(section) {
            None => local.clone(),
            Some(global) => merge_dict(global, local, "", section),
        }
    }
}

fn python_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", quoted.join(", "))
}

fn merge_value(global: &Value, local: &Value, path: &str, section: &str) -> Value {
    let replace = matches!(
        (section, path),
        ("Function", "Architectures") | ("CapacityProvider", "InstanceRequirements.Architectures")
    );
    let prune = section == "CapacityProvider" && path == "ManagedResourceTags";
    match (global, local) {
        (Value::Object(g), Value::Object(l)) if !is_intrinsic(global) && !is_intrinsic(local) => {
            if replace {
                local.clone()
            } else if prune && !l.is_empty() {
                let mut out = Map::new();
                for (k, lv) in l {
                    let child = format!("{path}.{k}");
                    let v = match g.get(k) {
                        Some(gv) => merge_value(gv, lv, child.trim_start_matches('.'), section),
                        None => lv.clone(),
                    };
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            } else {
                Value::Object(merge_dict(g, l, path, section))
            }
        }
        (Value::Array(g), Value::Array(l)) => {
            if replace {
                local.clone()
            } else {
                Value::Array(g.iter().chain(l.iter()).cloned().collect())
            }
        }
        _ => local.clone(),
    }
}

fn merge_dict(
    global: &Map<String, Value>,
    local: &Map<String, Value>,
    path: &str,
    section: &str,
) -> Map<String, Value> {
    let mut out = global.clone();
    for (k, lv) in local {
        let child = format!("{path}.{k}");
        let child = child.trim_start_matches('.');
        let v = match global.get(k) {
            Some(gv) => merge_value(gv, lv, child, section),
            None => lv.clone(),
        };
        out.insert(k.clone(), v);
    }
    out
}

#[cfg(test)]
mod tests;
