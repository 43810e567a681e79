//! Execution roles the SAM transform generates: AWS managed policy names → ARNs (samtranslator's
//! bundled map), inline policy statements, SAM policy templates (samtranslator's bundled
//! `policy_templates.json`, version 0.0.1 as shipped with aws-sam-translator 1.115.0, reduced to each
//! template's parameter names and definition), and the AWS::IAM::Role resource itself.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::is_intrinsic;

/// `<path>/<name>` of every AWS managed policy samtranslator knows (partition aws), by name.
fn managed_policy_paths() -> &'static BTreeMap<&'static str, &'static str> {
    static MAP: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| {
        include_str!("aws_managed_policies.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| (l.rsplit('/').next().unwrap_or(l), l))
            .collect()
    })
}

/// A SAM policy template: the parameters it needs and the policy document they go into.
#[derive(Debug, Deserialize)]
struct PolicyTemplate {
    #[serde(rename = "Parameters")]
    parameters: Vec<String>,
    #[serde(rename = "Definition")]
    definition: Value,
}

fn policy_templates() -> &'static BTreeMap<String, PolicyTemplate> {
    static MAP: OnceLock<BTreeMap<String, PolicyTemplate>> = OnceLock::new();
    MAP.get_or_init(|| {
        serde_json::from_str(include_str!("policy_templates.json"))
            .expect("the bundled policy templates are valid JSON")
    })
}

/// A policy template entry (`{SQSPollerPolicy: {QueueName: q}}`) expanded to its policy document,
/// as samtranslator's policy templates plugin does; None when `name` is no template.
fn expand_policy_template(name: &str, values: &Value) -> Option<Result<Value, String>> {
    let template = policy_templates().get(name)?;
    let Some(values) = values.as_object() else {
        return Some(Err(format!(
            "Must specify valid parameter values for policy template '{name}'"
        )));
    };
    let missing: Vec<String> = template
        .parameters
        .iter()
        .filter(|p| !values.contains_key(p.as_str()))
        .map(|p| format!("'{p}'"))
        .collect();
    if !missing.is_empty() {
        return Some(Err(format!(
            "Following required parameters of template '{name}' don't have values: [{}]",
            missing.join(", ")
        )));
    }
    fn substitute(v: &Value, params: &[String], values: &Map<String, Value>) -> Value {
        match v {
            Value::Object(m) => {
                if m.len() == 1
                    && let Some(Value::String(r)) = m.get("Ref")
                    && params.contains(r)
                    && let Some(value) = values.get(r)
                {
                    return value.clone();
                }
                Value::Object(
                    m.iter()
                        .map(|(k, item)| (k.clone(), substitute(item, params, values)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| substitute(item, params, values))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    Some(Ok(substitute(
        &template.definition,
        &template.parameters,
        values,
    )))
}

/// The ARN of an AWS managed policy `name` (`service-role/AWSLambdaBasicExecutionRole` or a bare name
/// samtranslator knows); an ARN or an unknown name is returned as is (samtranslator's behaviour).
pub(super) fn managed_policy_arn(name: &str, partition: &str) -> String {
    match managed_policy_paths().get(name) {
        Some(path) => format!("arn:{partition}:iam::aws:policy/{path}"),
        None => name.to_string(),
    }
}

/// `arn:<partition>:iam::aws:policy/<path/name>` (samtranslator's generate_aws_managed_policy_arn).
pub(super) fn aws_policy_arn(path_and_name: &str, partition: &str) -> String {
    format!("arn:{partition}:iam::aws:policy/{path_and_name}")
}

/// Lambda's trust policy (samtranslator's lambda_assume_role_policy).
pub(super) fn lambda_assume_role_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Action": ["sts:AssumeRole"],
            "Effect": "Allow",
            "Principal": {"Service": ["lambda.amazonaws.com"]}
        }]
    })
}

/// What a Policies entry is (samtranslator's ResourcePolicies types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Managed,
    Statement,
    Template,
    Unknown,
}

fn not_valid(index: usize) -> String {
    format!("Policy at index {index} in the 'Policies' property is not valid")
}

fn is_no_value(v: &Value) -> bool {
    v.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue") && is_intrinsic(v)
}

/// `[condition, then, else]` of an `Fn::If` entry, or None when `v` is no Fn::If.
fn if_items(v: &Value) -> Option<Result<&Vec<Value>, String>> {
    let items = v.get("Fn::If").filter(|_| is_intrinsic(v))?;
    Some(match items {
        Value::Array(items) if items.len() == 3 => Ok(items),
        _ => Err("Structure of the SAM template is invalid. Fn::If requires 3 arguments".into()),
    })
}

/// The kind of a Policies entry; an Fn::If takes its branches' kind (a NoValue branch aside).
fn policy_kind(v: &Value) -> Result<Kind, String> {
    if let Some(items) = if_items(v) {
        let items = items?;
        let (then, else_) = (&items[1], &items[2]);
        let (a, b) = (policy_kind(then)?, policy_kind(else_)?);
        return if a == b {
            Ok(a)
        } else if is_no_value(then) {
            Ok(b)
        } else if is_no_value(else_) {
            Ok(a)
        } else {
            Err("Structure of the SAM template is invalid. Different policy types within the same Fn::If \
                 statement is unsupported. Separate different policy types into different Fn::If statements"
                .into())
        };
    }
    Ok(match v {
        Value::String(_) => Kind::Managed,
        v if is_intrinsic(v) => Kind::Managed,
        Value::Object(m) if m.contains_key("Statement") => Kind::Statement,
        Value::Object(m)
            if m.len() == 1
                && m.keys()
                    .next()
                    .is_some_and(|k| policy_templates().contains_key(k)) =>
        {
            Kind::Template
        }
        _ => Kind::Unknown,
    })
}

/// `f` applied to `v`, or to each branch of an Fn::If `v` that is not AWS::NoValue.
fn map_if_branches(
    v: &Value,
    mut f: impl FnMut(&Value) -> Result<Value, String>,
) -> Result<Value, String> {
    match if_items(v) {
        None => f(v),
        Some(items) => {
            let items = items?;
            let mut out = vec![items[0].clone()];
            for branch in &items[1..] {
                out.push(if is_no_value(branch) {
                    branch.clone()
                } else {
                    f(branch)?
                });
            }
            Ok(json!({ "Fn::If": out }))
        }
    }
}

/// A role to generate (samtranslator's construct_role_for_resource).
pub(super) struct RoleSpec<'a> {
    pub role_id: String,
    pub assume_role_policy_document: Value,
    pub managed_policy_arns: Vec<Value>,
    pub policies: Option<&'a Value>,
    pub policy_documents: Vec<Value>,
    pub role_path: Option<Value>,
    pub permissions_boundary: Option<Value>,
    pub tags: Vec<Value>,
    pub partition: &'a str,
}

/// The role's properties, or samtranslator's message for a Policies entry it cannot place.
pub(super) fn role_properties(spec: RoleSpec<'_>) -> Result<Map<String, Value>, String> {
    let mut managed = spec.managed_policy_arns;
    let mut documents = spec.policy_documents;
    let entries: Vec<Value> = match spec.policies {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(one) => vec![one.clone()],
    };
    for (index, entry) in entries.iter().enumerate() {
        let name = format!("{}Policy{index}", spec.role_id);
        match policy_kind(entry)? {
            Kind::Managed => {
                let arn = match entry {
                    Value::String(name) => json!(managed_policy_arn(name, spec.partition)),
                    v => map_if_branches(v, |branch| match branch {
                        Value::String(n) => Ok(json!(managed_policy_arn(n, spec.partition))),
                        other => Ok(other.clone()),
                    })?,
                };
                if !managed.contains(&arn) {
                    managed.push(arn);
                }
            }
            Kind::Statement => documents.push(map_if_branches(entry, |doc| {
                Ok(json!({"PolicyName": name, "PolicyDocument": doc}))
            })?),
            Kind::Template => documents.push(map_if_branches(entry, |template| {
                let (template_name, values) = template
                    .as_object()
                    .and_then(|m| m.iter().next())
                    .ok_or_else(|| not_valid(index))?;
                let doc = expand_policy_template(template_name, values)
                    .ok_or_else(|| not_valid(index))??;
                Ok(json!({"PolicyName": name, "PolicyDocument": doc}))
            })?),
            Kind::Unknown => return Err(not_valid(index)),
        }
    }
    let mut props = Map::new();
    props.insert(
        "AssumeRolePolicyDocument".into(),
        spec.assume_role_policy_document,
    );
    props.insert("ManagedPolicyArns".into(), Value::Array(managed));
    if !documents.is_empty() {
        props.insert("Policies".into(), Value::Array(documents));
    }
    if let Some(path) = spec.role_path {
        props.insert("Path".into(), path);
    }
    if let Some(boundary) = spec.permissions_boundary {
        props.insert("PermissionsBoundary".into(), boundary);
    }
    if !spec.tags.is_empty() {
        props.insert("Tags".into(), Value::Array(spec.tags));
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_templates_expand_with_their_parameters() {
        assert!(policy_templates().len() >= 80);
        let doc = expand_policy_template("SQSPollerPolicy", &json!({"QueueName": "jobs"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            doc["Statement"][0]["Resource"],
            json!({"Fn::Sub": [
                "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${queueName}",
                {"queueName": "jobs"}
            ]})
        );
        assert_eq!(
            expand_policy_template("SQSPollerPolicy", &json!({})).unwrap(),
            Err(
                "Following required parameters of template 'SQSPollerPolicy' don't have values: \
                 ['QueueName']"
                    .to_string()
            )
        );
        assert!(expand_policy_template("NoSuchPolicy", &json!({})).is_none());
    }

    #[test]
    fn managed_policy_names_become_arns() {
        assert_eq!(
            managed_policy_arn("AWSLambdaBasicExecutionRole", "aws"),
            "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        );
        assert_eq!(
            managed_policy_arn("AmazonS3ReadOnlyAccess", "aws"),
            "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
        );
        assert_eq!(managed_policy_arn("NoSuchPolicy", "aws"), "NoSuchPolicy");
        assert_eq!(
            managed_policy_arn("arn:aws:iam::123456789012:policy/mine", "aws"),
            "arn:aws:iam::123456789012:policy/mine"
        );
    }
}
