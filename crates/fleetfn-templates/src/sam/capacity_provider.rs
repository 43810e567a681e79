//! `AWS::Serverless::CapacityProvider` → `AWS::Lambda::CapacityProvider` (+ `<Id>OperatorRole` when
//! no OperatorRole is given), as samtranslator's CapacityProviderGenerator does.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::policies::{self, RoleSpec};
use super::{Cx, Generated, SAM_TAG_KEY, is_intrinsic, tag_list};
use crate::ResourceDecl;

pub(super) const TYPE: &str = "AWS::Serverless::CapacityProvider";

/// Properties Globals.CapacityProvider accepts (samtranslator's list).
pub(super) const GLOBALS: &[&str] = &[
    "VpcConfig",
    "OperatorRole",
    "Tags",
    "InstanceRequirements",
    "ScalingConfig",
    "KmsKeyArn",
    "PropagateTags",
    "LoggingConfig",
    "ManagedResourceTags",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Props {
    capacity_provider_name: Option<Value>,
    vpc_config: Option<VpcConfig>,
    operator_role: Option<Value>,
    tags: Option<Map<String, Value>>,
    propagate_tags: Option<bool>,
    instance_requirements: Option<InstanceRequirements>,
    scaling_config: Option<ScalingConfig>,
    kms_key_arn: Option<Value>,
    logging_config: Option<Value>,
    managed_resource_tags: Option<ManagedResourceTags>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct VpcConfig {
    subnet_ids: Value,
    security_group_ids: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct InstanceRequirements {
    architectures: Option<Value>,
    allowed_types: Option<Value>,
    excluded_types: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScalingConfig {
    #[serde(rename = "MaxVCpuCount")]
    max_vcpu_count: Option<Value>,
    #[serde(rename = "AverageCPUUtilization")]
    average_cpu_utilization: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ManagedResourceTags {
    tags: Option<Map<String, Value>>,
}

/// Every property of [`Props`], in samtranslator's schema order.
const PROPERTIES: &[&str] = &[
    "CapacityProviderName",
    "VpcConfig",
    "OperatorRole",
    "Tags",
    "PropagateTags",
    "InstanceRequirements",
    "ScalingConfig",
    "LoggingConfig",
    "ManagedResourceTags",
    "KmsKeyArn",
];

/// What a nested value may be (besides an intrinsic, which samtranslator always accepts).
#[derive(Clone, Copy)]
enum Kind {
    List,
    Integer,
    Number,
    Map,
}

/// The nested properties samtranslator's schema knows, with their kinds.
const NESTED: &[(&str, &[(&str, Kind)])] = &[
    (
        "VpcConfig",
        &[("SecurityGroupIds", Kind::List), ("SubnetIds", Kind::List)],
    ),
    (
        "InstanceRequirements",
        &[
            ("Architectures", Kind::List),
            ("AllowedTypes", Kind::List),
            ("ExcludedTypes", Kind::List),
        ],
    ),
    (
        "ScalingConfig",
        &[
            ("MaxVCpuCount", Kind::Integer),
            ("AverageCPUUtilization", Kind::Number),
        ],
    ),
    ("ManagedResourceTags", &[("Tags", Kind::Map)]),
];

/// Checks the properties against samtranslator's schema with its messages (all of them, joined),
/// then reads them.
fn parse(props: &Map<String, Value>) -> Result<Props, String> {
    if let Some(name) = props.keys().find(|k| !PROPERTIES.contains(&k.as_str())) {
        return Err(format!(
            "property {name} not defined for resource of type {TYPE}"
        ));
    }
    let Some(vpc) = props.get("VpcConfig") else {
        return Err("Missing required property 'VpcConfig'.".into());
    };
    let mut errors = Vec::new();
    for name in [
        "VpcConfig",
        "Tags",
        "InstanceRequirements",
        "ScalingConfig",
        "ManagedResourceTags",
    ] {
        if let Some(v) = props.get(name)
            && !v.is_object()
        {
            errors.push(format!("Property '{name}' should be a map."));
        }
    }
    for name in ["CapacityProviderName", "OperatorRole", "KmsKeyArn"] {
        if let Some(v) = props.get(name)
            && !(v.is_string() || v.is_object())
        {
            errors.push(format!("Type of property '{name}' is invalid."));
        }
    }
    if props.get("PropagateTags").is_some_and(|v| !v.is_boolean()) {
        errors.push("Type of property 'PropagateTags' is invalid.".into());
    }
    if vpc.is_object() && vpc.get("SubnetIds").is_none() {
        errors.push("Property 'VpcConfig.SubnetIds' is required.".into());
    }
    for (outer, fields) in NESTED {
        let Some(Value::Object(inner)) = props.get(*outer) else {
            continue;
        };
        if is_intrinsic(&Value::Object(inner.clone())) {
            continue;
        }
        for (field, kind) in *fields {
            let Some(v) = inner.get(*field) else { continue };
            let (ok, expected) = match kind {
                Kind::List => (v.is_array(), "list"),
                Kind::Integer => (v.is_i64() || v.is_u64(), "integer"),
                Kind::Number => (v.is_number(), "number"),
                Kind::Map => (true, "map"),
            };
            if !ok && !v.is_object() {
                errors.push(format!(
                    "Property '{outer}.{field}' value must be dictionary or {expected}."
                ));
            }
        }
        for key in inner.keys().filter(|k| !fields.iter().any(|(f, _)| f == k)) {
            errors.push(format!("Property '{outer}.{key}' is an invalid property."));
        }
    }
    if !errors.is_empty() {
        return Err(errors.join(" "));
    }
    serde_path_to_error::deserialize(Value::Object(props.clone())).map_err(|e| {
        let path = e.path().to_string();
        format!("Type of property '{path}' is invalid.")
    })
}

pub(super) fn transform(
    id: &str,
    decl: &ResourceDecl,
    raw: &Map<String, Value>,
    cx: &Cx<'_>,
) -> Result<Generated, String> {
    let p = parse(raw)?;
    if let Some(req) = &p.instance_requirements
        && req.allowed_types.is_some()
        && req.excluded_types.is_some()
    {
        return Err(
            "Cannot specify 'InstanceRequirements.AllowedTypes' and 'InstanceRequirements.ExcludedTypes' \
             together."
                .into(),
        );
    }
    let passthrough = ResourceDecl {
        type_: String::new(),
        properties: Value::Null,
        depends_on: Vec::new(),
        condition: decl.condition.clone(),
        deletion_policy: decl.deletion_policy.clone(),
        update_replace_policy: decl.update_replace_policy.clone(),
        metadata: None,
    };
    let sam_tags = |user: Option<&Map<String, Value>>| {
        let mut tags = user.cloned().unwrap_or_default();
        tags.insert(SAM_TAG_KEY.into(), json!("SAM"));
        tag_list(&tags)
    };
    let mut resources = Vec::new();

    let operator_role = match &p.operator_role {
        Some(role) if !role.is_null() => role.clone(),
        _ => {
            let role_id = format!("{id}OperatorRole");
            let props = policies::role_properties(RoleSpec {
                role_id: role_id.clone(),
                assume_role_policy_document: policies::lambda_assume_role_policy(),
                managed_policy_arns: vec![json!(policies::aws_policy_arn(
                    "AWSLambdaManagedEC2ResourceOperator",
                    &cx.ctx.partition
                ))],
                policies: None,
                policy_documents: Vec::new(),
                role_path: None,
                permissions_boundary: None,
                tags: sam_tags(None),
                partition: &cx.ctx.partition,
            })?;
            resources.push((
                role_id.clone(),
                ResourceDecl {
                    type_: "AWS::IAM::Role".into(),
                    properties: Value::Object(props),
                    ..passthrough.clone()
                },
            ));
            json!({ "Fn::GetAtt": [role_id, "Arn"] })
        }
    };

    let mut c = Map::new();
    if let Some(name) = p.capacity_provider_name.clone().filter(|n| !n.is_null()) {
        c.insert("CapacityProviderName".into(), name);
    }
    if let Some(vpc) = &p.vpc_config {
        let mut v = Map::new();
        v.insert("SubnetIds".into(), vpc.subnet_ids.clone());
        if let Some(sg) = vpc.security_group_ids.clone().filter(|s| !s.is_null()) {
            v.insert("SecurityGroupIds".into(), sg);
        }
        c.insert("VpcConfig".into(), Value::Object(v));
    }
    c.insert(
        "PermissionsConfig".into(),
        json!({ "CapacityProviderOperatorRoleArn": operator_role }),
    );
    c.insert("Tags".into(), Value::Array(sam_tags(p.tags.as_ref())));
    if let Some(req) = &p.instance_requirements {
        let mut r = Map::new();
        for (key, v) in [
            ("Architectures", &req.architectures),
            ("AllowedInstanceTypes", &req.allowed_types),
            ("ExcludedInstanceTypes", &req.excluded_types),
        ] {
            if let Some(v) = v.clone().filter(|v| !v.is_null()) {
                r.insert(key.into(), v);
            }
        }
        if !r.is_empty() {
            c.insert("InstanceRequirements".into(), Value::Object(r));
        }
    }
    if let Some(scaling) = &p.scaling_config {
        let max = scaling.max_vcpu_count.clone().filter(|v| !v.is_null());
        let cpu = scaling
            .average_cpu_utilization
            .clone()
            .filter(|v| !v.is_null());
        if max.is_some() || cpu.is_some() {
            let mut s = Map::new();
            if let Some(max) = max {
                s.insert("MaxVCpuCount".into(), max);
            }
            match cpu {
                Some(target) => {
                    s.insert("ScalingMode".into(), json!("Manual"));
                    s.insert(
                        "ScalingPolicies".into(),
                        json!([{
                            "PredefinedMetricType": "LambdaCapacityProviderAverageCPUUtilization",
                            "TargetValue": target
                        }]),
                    );
                }
                None => {
                    s.insert("ScalingMode".into(), json!("Auto"));
                }
            }
            c.insert("CapacityProviderScalingConfig".into(), Value::Object(s));
        }
    }
    if let Some(kms) = p.kms_key_arn.clone().filter(|v| !v.is_null()) {
        c.insert("KmsKeyArn".into(), kms);
    }
    if let Some(logging) = p.logging_config.clone().filter(|v| !v.is_null()) {
        c.insert(
            "TelemetryConfig".into(),
            json!({ "LoggingConfig": logging }),
        );
    }
    if let Some(tags) = p
        .managed_resource_tags
        .as_ref()
        .and_then(|m| m.tags.as_ref())
    {
        c.insert(
            "PropagateTags".into(),
            json!({ "Mode": "Explicit", "ExplicitTags": tag_list(tags) }),
        );
    }
    resources.push((
        id.to_string(),
        ResourceDecl {
            type_: "AWS::Lambda::CapacityProvider".into(),
            properties: Value::Object(c),
            depends_on: decl.depends_on.clone(),
            metadata: decl.metadata.clone(),
            ..passthrough
        },
    ));

    // PropagateTags: the user's tags are added to every generated resource's tags.
    if p.propagate_tags == Some(true)
        && let Some(user) = p.tags.as_ref().filter(|t| !t.is_empty())
    {
        for (_, r) in &mut resources {
            let Some(Value::Array(existing)) =
                r.properties.as_object_mut().and_then(|m| m.get_mut("Tags"))
            else {
                continue;
            };
            for tag in tag_list(user) {
                let key = tag.get("Key").cloned();
                match existing.iter_mut().find(|t| t.get("Key").cloned() == key) {
                    Some(slot) => *slot = tag,
                    None => existing.push(tag),
                }
            }
        }
    }
    Ok(Generated {
        resources,
        refs: Vec::new(),
        conditions: Vec::new(),
    })
}
