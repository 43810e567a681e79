//! The evaluator: parameters checked, conditions evaluated, the dependency graph ordered, and
//! intrinsic functions resolved against what is known about deployed resources.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// Most bytes of strings and list items one evaluation may produce (Fn::Sub, Fn::Join, Fn::Split,
/// Fn::FindInMap, list parameters, ...): bounds amplification by nesting.
pub const MAX_EVAL_BYTES: usize = 16 * 1024 * 1024;

const PLACEHOLDER_PREFIX: &str = "{{after-deploy:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Conditions,
    Resources,
    Outputs,
}

/// State of one evaluation.
struct Ctx<'k> {
    known: &'k dyn Known,
    scope: Scope,
    /// Resources referenced (Ref, GetAtt, Sub).
    refs: BTreeSet<String>,
    /// Names referenced that are neither parameters nor included resources; only collected when
    /// `record` is set (otherwise they are errors at once).
    missing: BTreeSet<String>,
    record: bool,
    unknowns: Vec<String>,
    produced: usize,
}

impl<'k> Ctx<'k> {
    fn new(known: &'k dyn Known, scope: Scope, record: bool) -> Self {
        Ctx {
            known,
            scope,
            refs: BTreeSet::new(),
            missing: BTreeSet::new(),
            record,
            unknowns: Vec::new(),
            produced: 0,
        }
    }

    fn charge(&mut self, bytes: usize, path: &str) -> Result<(), TemplateError> {
        self.produced = self.produced.saturating_add(bytes);
        if self.produced > MAX_EVAL_BYTES {
            return Err(TemplateError::Limit {
                message: format!(
                    "{path}: evaluating intrinsic functions produces more than {MAX_EVAL_BYTES} bytes"
                ),
            });
        }
        Ok(())
    }

    fn placeholder(&mut self, what: String) -> Value {
        let v = Value::String(format!("{PLACEHOLDER_PREFIX}{what}}}}}"));
        if !self.unknowns.contains(&what) {
            self.unknowns.push(what);
        }
        v
    }
}

fn is_placeholder(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.starts_with(PLACEHOLDER_PREFIX))
}

fn size_of(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 8,
        Value::Array(items) => 8 + items.iter().map(size_of).sum::<usize>(),
        Value::Object(m) => 8 + m.iter().map(|(k, v)| k.len() + size_of(v)).sum::<usize>(),
        _ => 8,
    }
}

fn child(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

/// The list argument of an intrinsic, checked for its length.
fn args<'v>(
    name: &str,
    arg: &'v Value,
    n: std::ops::RangeInclusive<usize>,
    what: &str,
    path: &str,
) -> Result<&'v [Value], TemplateError> {
    match arg {
        Value::Array(items) if n.contains(&items.len()) => Ok(items),
        _ => Err(TemplateError::format(
            path,
            format!("{name} requires a list of {what}"),
        )),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Fn::Equals compares values in their string form.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => text(other)
            .map(Value::String)
            .unwrap_or_else(|| other.clone()),
    }
}

const PSEUDO: &[&str] = &[
    "AWS::Region",
    "AWS::AccountId",
    "AWS::StackName",
    "AWS::StackId",
    "AWS::Partition",
    "AWS::URLSuffix",
    "AWS::NotificationARNs",
    "AWS::NoValue",
];

impl Evaluator {
    /// Checks the parameters against `overrides`, evaluates the conditions and orders the resources.
    pub fn new(
        t: &Template,
        ctx: StackContext,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, TemplateError> {
        let mut warnings = Vec::new();
        let params = crate::params::resolve(t, overrides, &mut warnings)?;
        for section in t.other.keys() {
            if section != "Metadata" {
                warnings.push(format!(
                    "the template's {section} section is ignored: fleetfn does not evaluate it"
                ));
            }
        }
        let mut ev = Evaluator {
            template: t.clone(),
            ctx,
            params,
            conditions: BTreeMap::new(),
            order: Vec::new(),
            deps: BTreeMap::new(),
            warnings,
        };
        // Conditions: every one evaluated (so a broken one is reported even when unused).
        let mut memo = BTreeMap::new();
        for name in t.conditions.keys() {
            ev.named_condition(
                name,
                &format!("Conditions.{name}"),
                &mut Vec::new(),
                &mut memo,
            )?;
        }
        ev.conditions = memo;
        // Included resources and their dependencies.
        let mut included = BTreeSet::new();
        for (id, r) in &t.resources {
            let holds = match &r.condition {
                None => true,
                Some(c) => ev.condition_value(c, &format!("Resources.{id}.Condition"))?,
            };
            if holds {
                included.insert(id.clone());
            }
        }
        for id in &included {
            ev.deps.insert(id.clone(), BTreeSet::new());
        }
        let mut missing = BTreeSet::new();
        for id in &included {
            let r = &t.resources[id];
            let mut cx = Ctx::new(&NothingKnown, Scope::Resources, true);
            ev.eval(
                &r.properties,
                &format!("Resources.{id}.Properties"),
                &mut cx,
            )?;
            let mut deps = cx.refs;
            missing.extend(cx.missing);
            for d in &r.depends_on {
                if included.contains(d) {
                    deps.insert(d.clone());
                } else {
                    missing.insert(d.clone());
                }
            }
            ev.deps.insert(id.clone(), deps);
        }
        if !missing.is_empty() {
            return Err(TemplateError::UnresolvedDependencies(
                missing.into_iter().collect(),
            ));
        }
        let mut missing = BTreeSet::new();
        for (id, o) in &t.outputs {
            if let Some(c) = &o.condition {
                ev.condition_value(c, &format!("Outputs.{id}.Condition"))?;
            }
            let mut cx = Ctx::new(&NothingKnown, Scope::Outputs, true);
            if ev.output_holds(o)? {
                ev.eval(&o.value, &format!("Outputs.{id}.Value"), &mut cx)?;
                if let Some(e) = &o.export {
                    ev.eval(e, &format!("Outputs.{id}.Export"), &mut cx)?;
                }
            }
            missing.extend(cx.missing);
        }
        if !missing.is_empty() {
            return Err(TemplateError::UnresolvedOutputDependencies(
                missing.into_iter().collect(),
            ));
        }
        ev.order = crate::graph::order(&ev.deps)?;
        Ok(ev)
    }

    /// Logical ids of the resources whose Condition holds, every resource after what it references
    /// (ties by logical id).
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The declaration of an included resource (None if absent or its Condition is false).
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

    /// The value of a named condition (None if the template has no such condition).
    pub fn condition(&self, name: &str) -> Option<bool> {
        self.conditions.get(name).copied()
    }

    /// The resource's Properties with every intrinsic evaluated and AWS::NoValue keys removed.
    pub fn properties(
        &self,
        logical_id: &str,
        known: &dyn Known,
    ) -> Result<Resolved, TemplateError> {
        let path = format!("Resources.{logical_id}");
        let Some(r) = self.resource(logical_id) else {
            return Err(TemplateError::format(
                path,
                "no such resource in this stack (absent, or its Condition is false)",
            ));
        };
        let mut cx = Ctx::new(known, Scope::Resources, false);
        let properties = self
            .eval(&r.properties, &format!("{path}.Properties"), &mut cx)?
            .unwrap_or_else(|| Value::Object(Map::new()));
        Ok(Resolved {
            properties,
            unknowns: cx.unknowns,
        })
    }

    /// The outputs whose Condition holds, evaluated.
    pub fn outputs(
        &self,
        known: &dyn Known,
    ) -> Result<BTreeMap<String, ResolvedOutput>, TemplateError> {
        let mut out = BTreeMap::new();
        for (id, o) in &self.template.outputs {
            if !self.output_holds(o)? {
                continue;
            }
            let path = format!("Outputs.{id}");
            let mut cx = Ctx::new(known, Scope::Outputs, false);
            let value = self
                .eval(&o.value, &format!("{path}.Value"), &mut cx)?
                .ok_or_else(|| {
                    TemplateError::eval(
                        format!("{path}.Value"),
                        "an output's Value cannot be AWS::NoValue",
                    )
                })?;
            let export_name = match &o.export {
                None => None,
                Some(e) => {
                    let e = self.eval(e, &format!("{path}.Export"), &mut cx)?;
                    let name = e.as_ref().and_then(|e| e.get("Name")).and_then(text);
                    Some(name.ok_or_else(|| {
                        TemplateError::format(
                            format!("{path}.Export"),
                            "Export needs a Name string",
                        )
                    })?)
                }
            };
            out.insert(
                id.clone(),
                ResolvedOutput {
                    value,
                    description: o.description.clone(),
                    export_name,
                    unknowns: cx.unknowns,
                },
            );
        }
        Ok(out)
    }

    /// Every parameter's value (NoEcho ones are marked; show them with [`ParamValue::display`]).
    pub fn parameter_values(&self) -> BTreeMap<String, ParamValue> {
        self.params.clone()
    }

    /// Ignored sections, SSM parameters used literally, ...
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn output_holds(&self, o: &crate::OutputDecl) -> Result<bool, TemplateError> {
        match &o.condition {
            None => Ok(true),
            Some(c) => self.condition_value(c, "Outputs"),
        }
    }

    fn condition_value(&self, name: &str, path: &str) -> Result<bool, TemplateError> {
        self.conditions.get(name).copied().ok_or_else(|| {
            TemplateError::format(
                path,
                format!("Condition '{name}' is not defined in the Conditions section"),
            )
        })
    }

    // ---- conditions ----

    fn named_condition(
        &self,
        name: &str,
        path: &str,
        visiting: &mut Vec<String>,
        memo: &mut BTreeMap<String, bool>,
    ) -> Result<bool, TemplateError> {
        if let Some(v) = memo.get(name) {
            return Ok(*v);
        }
        let Some(expr) = self.template.conditions.get(name) else {
            return Err(TemplateError::format(
                path,
                format!("Condition '{name}' is not defined in the Conditions section"),
            ));
        };
        if let Some(at) = visiting.iter().position(|v| v == name) {
            let mut cycle = visiting[at..].to_vec();
            cycle.sort();
            return Err(TemplateError::CircularCondition(cycle));
        }
        if visiting.len() >= crate::MAX_DEPTH {
            return Err(TemplateError::Limit {
                message: format!(
                    "{path}: conditions refer to each other more than {} levels deep",
                    crate::MAX_DEPTH
                ),
            });
        }
        visiting.push(name.to_owned());
        let v = self.condition_expr(expr, &format!("Conditions.{name}"), visiting, memo, 0)?;
        visiting.pop();
        memo.insert(name.to_owned(), v);
        Ok(v)
    }

    fn condition_expr(
        &self,
        v: &Value,
        path: &str,
        visiting: &mut Vec<String>,
        memo: &mut BTreeMap<String, bool>,
        depth: usize,
    ) -> Result<bool, TemplateError> {
        // Named conditions and nested expressions together stay within a bounded stack.
        if depth + visiting.len() > 2 * crate::MAX_DEPTH {
            return Err(TemplateError::Limit {
                message: format!(
                    "{path}: conditions nest more than {} levels deep",
                    2 * crate::MAX_DEPTH
                ),
            });
        }
        let bad = || {
            TemplateError::format(
                path,
                "a condition is Fn::Equals, Fn::And, Fn::Or, Fn::Not or {\"Condition\": name}",
            )
        };
        let Value::Object(m) = v else {
            return Err(bad());
        };
        if m.len() != 1 {
            return Err(bad());
        }
        let (name, arg) = m.iter().next().ok_or_else(bad)?;
        let path = &child(path, name);
        match name.as_str() {
            "Condition" => {
                let c = arg.as_str().ok_or_else(|| {
                    TemplateError::format(path, "Condition takes the name of a condition")
                })?;
                self.named_condition(c, path, visiting, memo)
            }
            "Fn::Equals" => {
                let a = args(name, arg, 2..=2, "two values", path)?;
                let mut cx = Ctx::new(&NothingKnown, Scope::Conditions, false);
                let l = self.eval(&a[0], &format!("{path}[0]"), &mut cx)?;
                let r = self.eval(&a[1], &format!("{path}[1]"), &mut cx)?;
                Ok(l.as_ref().map(normalize) == r.as_ref().map(normalize))
            }
            "Fn::And" | "Fn::Or" => {
                let a = args(name, arg, 2..=10, "2 to 10 conditions", path)?;
                let mut values = Vec::with_capacity(a.len());
                for (i, c) in a.iter().enumerate() {
                    values.push(self.condition_expr(
                        c,
                        &format!("{path}[{i}]"),
                        visiting,
                        memo,
                        depth + 1,
                    )?);
                }
                Ok(if name == "Fn::And" {
                    values.iter().all(|v| *v)
                } else {
                    values.iter().any(|v| *v)
                })
            }
            "Fn::Not" => {
                let a = args(name, arg, 1..=1, "one condition", path)?;
                Ok(
                    !self.condition_expr(
                        &a[0],
                        &format!("{path}[0]"),
                        visiting,
                        memo,
                        depth + 1,
                    )?,
                )
            }
            _ => Err(bad()),
        }
    }

    /// Fn::If's condition, which Conditions evaluation has computed already.
    fn if_condition(&self, name: &Value, path: &str) -> Result<bool, TemplateError> {
        let name = name.as_str().ok_or_else(|| {
            TemplateError::format(path, "Fn::If's first element is a condition name")
        })?;
        self.condition_value(name, path)
    }

    // ---- intrinsic functions ----

    /// Evaluates `v`; `None` is AWS::NoValue (the key or list element is removed).
    fn eval(
        &self,
        v: &Value,
        path: &str,
        cx: &mut Ctx<'_>,
    ) -> Result<Option<Value>, TemplateError> {
        match v {
            Value::Object(m) => {
                if m.len() == 1
                    && let Some((k, arg)) = m.iter().next()
                    && (k == "Ref" || k.starts_with("Fn::"))
                {
                    return self.call(k, arg, path, cx);
                }
                let mut out = Map::new();
                for (k, v) in m {
                    if let Some(v) = self.eval(v, &child(path, k), cx)? {
                        out.insert(k.clone(), v);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    if let Some(v) = self.eval(v, &format!("{path}[{i}]"), cx)? {
                        out.push(v);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            other => Ok(Some(other.clone())),
        }
    }

    /// Evaluates an argument that must produce a value (not AWS::NoValue).
    fn value(
        &self,
        v: &Value,
        path: &str,
        cx: &mut Ctx<'_>,
        what: &str,
    ) -> Result<Value, TemplateError> {
        self.eval(v, path, cx)?
            .ok_or_else(|| TemplateError::eval(path, format!("{what} cannot be AWS::NoValue")))
    }

    fn string(
        &self,
        v: &Value,
        path: &str,
        cx: &mut Ctx<'_>,
        what: &str,
    ) -> Result<String, TemplateError> {
        let v = self.value(v, path, cx, what)?;
        text(&v).ok_or_else(|| TemplateError::eval(path, format!("{what} must be a string")))
    }

    fn call(
        &self,
        name: &str,
        arg: &Value,
        path: &str,
        cx: &mut Ctx<'_>,
    ) -> Result<Option<Value>, TemplateError> {
        match name {
            "Ref" => {
                let target = arg
                    .as_str()
                    .ok_or_else(|| TemplateError::format(path, "Ref takes the name of a parameter or resource"))?;
                self.reference(target, path, cx)
            }
            "Fn::GetAtt" => {
                let (id, attr) = match arg {
                    Value::String(s) => match s.split_once('.') {
                        Some((id, attr)) => (id.to_owned(), attr.to_owned()),
                        None => {
                            return Err(TemplateError::format(path, "Fn::GetAtt requires Resource.Attribute or [Resource, Attribute]"));
                        }
                    },
                    Value::Array(a) if a.len() == 2 => {
                        let id = a[0].as_str().ok_or_else(|| {
                            TemplateError::format(path, "Fn::GetAtt's first element is a resource's logical id")
                        })?;
                        (id.to_owned(), self.string(&a[1], &format!("{path}[1]"), cx, "Fn::GetAtt's attribute name")?)
                    }
                    _ => {
                        return Err(TemplateError::format(path, "Fn::GetAtt requires a list of two elements: [Resource, Attribute]"));
                    }
                };
                Ok(Some(self.attribute(&id, &attr, path, cx)?))
            }
            "Fn::Sub" => self.sub(arg, path, cx).map(Some),
            "Fn::Join" => {
                let a = args(name, arg, 2..=2, "two elements: [delimiter, [values]]", path)?;
                let delim = a[0]
                    .as_str()
                    .ok_or_else(|| TemplateError::format(path, "Fn::Join's delimiter must be a string"))?;
                let list = self.value(&a[1], &format!("{path}[1]"), cx, "Fn::Join's list")?;
                if is_placeholder(&list) {
                    return Ok(Some(list));
                }
                let Value::Array(items) = list else {
                    return Err(TemplateError::eval(path, "Fn::Join's second element must be a list"));
                };
                let mut parts = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    parts.push(text(item).ok_or_else(|| {
                        TemplateError::eval(format!("{path}[1][{i}]"), "Fn::Join can only join strings")
                    })?);
                }
                let joined = parts.join(delim);
                cx.charge(joined.len(), path)?;
                Ok(Some(Value::String(joined)))
            }
            "Fn::Select" => {
                let a = args(name, arg, 2..=2, "two elements: [index, [values]]", path)?;
                let index = self.string(&a[0], &format!("{path}[0]"), cx, "Fn::Select's index")?;
                let list = self.value(&a[1], &format!("{path}[1]"), cx, "Fn::Select's list")?;
                if is_placeholder(&list) {
                    return Ok(Some(list));
                }
                let Value::Array(items) = list else {
                    return Err(TemplateError::eval(path, "Fn::Select's second element must be a list"));
                };
                let i: usize = index.trim().parse().map_err(|_| {
                    TemplateError::eval(path, format!("Fn::Select's index must be a non-negative integer, got '{index}'"))
                })?;
                match items.into_iter().nth(i) {
                    Some(v) => Ok(Some(v)),
                    None => Err(TemplateError::eval(
                        path,
                        format!("Fn::Select cannot select nonexistent value at index {i}"),
                    )),
                }
            }
            "Fn::Split" => {
                let a = args(name, arg, 2..=2, "two elements: [delimiter, string]", path)?;
                let delim = a[0]
                    .as_str()
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| TemplateError::format(path, "Fn::Split's delimiter must be a non-empty string"))?;
                let source = self.string(&a[1], &format!("{path}[1]"), cx, "Fn::Split's source")?;
                if source.starts_with(PLACEHOLDER_PREFIX) {
                    return Ok(Some(Value::String(source)));
                }
                let parts: Vec<Value> = source.split(delim).map(|s| Value::String(s.to_owned())).collect();
                cx.charge(source.len() + 8 * parts.len(), path)?;
                Ok(Some(Value::Array(parts)))
            }
            "Fn::If" => {
                let a = args(name, arg, 3..=3, "three elements: [condition, value if true, value if false]", path)?;
                let branch = if self.if_condition(&a[0], &format!("{path}[0]"))? { 1 } else { 2 };
                self.eval(&a[branch], &format!("{path}[{branch}]"), cx)
            }
            "Fn::Equals" | "Fn::And" | "Fn::Or" | "Fn::Not" => {
                let mut wrapper = Map::new();
                wrapper.insert(name.to_owned(), arg.clone());
                let v = self.condition_expr(&Value::Object(wrapper), path, &mut Vec::new(), &mut self.conditions.clone(), 0)?;
                Ok(Some(Value::Bool(v)))
            }
            "Fn::FindInMap" => {
                let a = args(name, arg, 3..=4, "three elements: [MapName, TopLevelKey, SecondLevelKey]", path)?;
                let map = self.string(&a[0], &format!("{path}[0]"), cx, "Fn::FindInMap's map name")?;
                let top = self.string(&a[1], &format!("{path}[1]"), cx, "Fn::FindInMap's top-level key")?;
                let second = self.string(&a[2], &format!("{path}[2]"), cx, "Fn::FindInMap's second-level key")?;
                let default = match a.get(3) {
                    None => None,
                    Some(d) => match d.get("DefaultValue") {
                        Some(v) => Some(self.value(v, &format!("{path}[3].DefaultValue"), cx, "DefaultValue")?),
                        None => return Err(TemplateError::format(path, "Fn::FindInMap's fourth element is {\"DefaultValue\": value}")),
                    },
                };
                let Some(mapping) = self.template.mappings.get(&map) else {
                    return Err(TemplateError::format(path, format!("Mapping named '{map}' is not present in the 'Mappings' section of template")));
                };
                let found = mapping.get(&top).and_then(|m| m.get(&second)).cloned().or(default);
                let found = found.ok_or_else(|| {
                    TemplateError::eval(path, format!("Fn::FindInMap: Unable to get mapping for {map}::{top}::{second}"))
                })?;
                cx.charge(size_of(&found), path)?;
                Ok(Some(found))
            }
            "Fn::Base64" => {
                use base64::Engine as _;
                let s = self.string(arg, path, cx, "Fn::Base64's argument")?;
                let encoded = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
                cx.charge(encoded.len(), path)?;
                Ok(Some(Value::String(encoded)))
            }
            "Fn::GetAZs" => {
                let region = self.string(arg, path, cx, "Fn::GetAZs's region")?;
                let region = if region.is_empty() { self.ctx.region.clone() } else { region };
                Ok(Some(Value::Array(
                    ["a", "b", "c"].iter().map(|z| Value::String(format!("{region}{z}"))).collect(),
                )))
            }
            "Fn::ImportValue" => Err(TemplateError::Unsupported {
                path: path.to_owned(),
                message: "Fn::ImportValue is not supported: fleetfn stacks have no cross-stack exports; pass the value as a parameter".into(),
            }),
            other => Err(TemplateError::Unsupported {
                path: path.to_owned(),
                message: format!(
                    "{other} is not supported (fleetfn evaluates Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::If, Fn::Equals, Fn::And, Fn::Or, Fn::Not, Fn::FindInMap, Fn::Base64, Fn::GetAZs)"
                ),
            }),
        }
    }

    fn pseudo(&self, name: &str) -> Option<Option<Value>> {
        let s = |v: &str| Some(Some(Value::String(v.to_owned())));
        match name {
            "AWS::Region" => s(&self.ctx.region),
            "AWS::AccountId" => s(&self.ctx.account_id),
            "AWS::StackName" => s(&self.ctx.stack_name),
            "AWS::StackId" => s(&self.ctx.stack_id),
            "AWS::Partition" => s(&self.ctx.partition),
            "AWS::URLSuffix" => s(if self.ctx.partition == "aws-cn" {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            }),
            "AWS::NotificationARNs" => Some(Some(Value::Array(Vec::new()))),
            "AWS::NoValue" => Some(None),
            _ => None,
        }
    }

    fn resource_ref_allowed(
        &self,
        id: &str,
        path: &str,
        cx: &mut Ctx<'_>,
    ) -> Result<bool, TemplateError> {
        if cx.scope == Scope::Conditions {
            return Err(TemplateError::format(
                path,
                format!(
                    "Unresolved dependencies [{id}]. Cannot reference resources in the Conditions block of the template"
                ),
            ));
        }
        if self.deps.contains_key(id) {
            cx.refs.insert(id.to_owned());
            return Ok(true);
        }
        if cx.record {
            cx.missing.insert(id.to_owned());
            return Ok(false);
        }
        Err(if cx.scope == Scope::Outputs {
            TemplateError::UnresolvedOutputDependencies(vec![id.to_owned()])
        } else {
            TemplateError::UnresolvedDependencies(vec![id.to_owned()])
        })
    }

    fn reference(
        &self,
        name: &str,
        path: &str,
        cx: &mut Ctx<'_>,
    ) -> Result<Option<Value>, TemplateError> {
        if let Some(p) = self.params.get(name) {
            cx.charge(size_of(&p.value), path)?;
            return Ok(Some(p.value.clone()));
        }
        if let Some(v) = self.pseudo(name) {
            return Ok(v);
        }
        if name.starts_with("AWS::") {
            return Err(TemplateError::format(
                path,
                format!("{name} is not a pseudo parameter"),
            ));
        }
        if !self.resource_ref_allowed(name, path, cx)? {
            return Ok(Some(cx.placeholder(name.to_owned())));
        }
        Ok(Some(match cx.known.physical_id(name) {
            Some(id) => Value::String(id),
            None => cx.placeholder(name.to_owned()),
        }))
    }

    fn attribute(
        &self,
        id: &str,
        attr: &str,
        path: &str,
        cx: &mut Ctx<'_>,
    ) -> Result<Value, TemplateError> {
        if self.params.contains_key(id) {
            return Err(TemplateError::format(
                path,
                format!("Fn::GetAtt needs a resource; {id} is a parameter"),
            ));
        }
        if !self.resource_ref_allowed(id, path, cx)? {
            return Ok(cx.placeholder(format!("{id}.{attr}")));
        }
        Ok(match cx.known.attribute(id, attr) {
            Some(v) => v,
            None => cx.placeholder(format!("{id}.{attr}")),
        })
    }

    fn sub(&self, arg: &Value, path: &str, cx: &mut Ctx<'_>) -> Result<Value, TemplateError> {
        let (template, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(a) if a.len() == 2 && a[0].is_string() && a[1].is_object() => {
                (a[0].as_str().unwrap_or_default(), a[1].as_object())
            }
            _ => {
                return Err(TemplateError::format(
                    path,
                    "Fn::Sub takes a string, or a list of two elements: [string, {Name: value}]",
                ));
            }
        };
        let mut values = BTreeMap::new();
        if let Some(vars) = vars {
            for (k, v) in vars {
                let p = format!("{path}[1].{k}");
                let v = self.value(v, &p, cx, "an Fn::Sub variable")?;
                let s = text(&v).ok_or_else(|| {
                    TemplateError::eval(&p, "an Fn::Sub variable must be a string")
                })?;
                values.insert(k.as_str(), s);
            }
        }
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = &after[..end];
            rest = &after[end + 1..];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
                continue;
            }
            let name = name.trim();
            let piece = if let Some(v) = values.get(name) {
                v.clone()
            } else if self.params.contains_key(name) || PSEUDO.contains(&name) {
                match self.reference(name, path, cx)? {
                    Some(v) => text(&v).ok_or_else(|| {
                        TemplateError::eval(
                            path,
                            format!("Fn::Sub cannot substitute ${{{name}}}: it is a list"),
                        )
                    })?,
                    None => {
                        return Err(TemplateError::eval(
                            path,
                            "Fn::Sub cannot substitute ${AWS::NoValue}",
                        ));
                    }
                }
            } else if let Some((id, attr)) = name.split_once('.') {
                let v = self.attribute(id, attr, path, cx)?;
                text(&v).ok_or_else(|| {
                    TemplateError::eval(
                        path,
                        format!("Fn::Sub cannot substitute ${{{name}}}: it is not a string"),
                    )
                })?
            } else if name.is_empty() {
                return Err(TemplateError::format(path, "Fn::Sub has an empty ${}"));
            } else {
                let v = self.reference(name, path, cx)?.unwrap_or_default();
                text(&v).unwrap_or_default()
            };
            out.push_str(&piece);
            cx.charge(piece.len(), path)?;
        }
        out.push_str(rest);
        cx.charge(out.len(), path)?;
        Ok(Value::String(out))
    }
}
