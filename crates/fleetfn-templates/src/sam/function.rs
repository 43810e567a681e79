//! `AWS::Serverless::Function` → `AWS::Lambda::Function` (+ execution role, Version and Alias for
//! `AutoPublishAlias`, Url and Permissions for `FunctionUrlConfig`), as samtranslator's SamFunction does.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::policies::{self, RoleSpec};
use super::{Cx, Generated, LOCAL_CODE_BUCKET, SAM_TAG_KEY, hash, is_intrinsic, tag_list};
use crate::ResourceDecl;

pub(super) const TYPE: &str = "AWS::Serverless::Function";

/// Properties Globals.Function accepts (samtranslator's list).
pub(super) const GLOBALS: &[&str] = &[
    "Handler",
    "Runtime",
    "CodeUri",
    "DeadLetterQueue",
    "Description",
    "MemorySize",
    "Timeout",
    "VpcConfig",
    "Environment",
    "Tags",
    "PropagateTags",
    "Tracing",
    "KmsKeyArn",
    "AutoPublishAlias",
    "AutoPublishAliasAllProperties",
    "Layers",
    "DeploymentPreference",
    "RolePath",
    "PermissionsBoundary",
    "ReservedConcurrentExecutions",
    "ProvisionedConcurrencyConfig",
    "AssumeRolePolicyDocument",
    "EventInvokeConfig",
    "FileSystemConfigs",
    "CodeSigningConfigArn",
    "Architectures",
    "SnapStart",
    "EphemeralStorage",
    "FunctionUrlConfig",
    "RuntimeManagementConfig",
    "LoggingConfig",
    "RecursiveLoop",
    "SourceKMSKeyArn",
    "TenancyConfig",
    "DurableConfig",
    "CapacityProviderConfig",
    "FunctionScalingConfig",
    "PublishToLatestPublished",
    "VersionDeletionPolicy",
];

/// The SAM properties of a function. Values that CloudFormation may give as intrinsics stay JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Props {
    function_name: Option<Value>,
    handler: Option<Value>,
    runtime: Option<Value>,
    code_uri: Option<Value>,
    image_uri: Option<Value>,
    package_type: Option<Value>,
    inline_code: Option<Value>,
    dead_letter_queue: Option<Map<String, Value>>,
    description: Option<Value>,
    memory_size: Option<Value>,
    timeout: Option<Value>,
    vpc_config: Option<Value>,
    role: Option<Value>,
    assume_role_policy_document: Option<Map<String, Value>>,
    policies: Option<Value>,
    role_path: Option<Value>,
    permissions_boundary: Option<Value>,
    environment: Option<Map<String, Value>>,
    events: Option<Map<String, Value>>,
    tags: Option<Map<String, Value>>,
    propagate_tags: Option<bool>,
    tracing: Option<Value>,
    kms_key_arn: Option<Value>,
    deployment_preference: Option<Map<String, Value>>,
    reserved_concurrent_executions: Option<Value>,
    layers: Option<Vec<Value>>,
    event_invoke_config: Option<Map<String, Value>>,
    ephemeral_storage: Option<Value>,
    auto_publish_alias: Option<Value>,
    auto_publish_code_sha256: Option<Value>,
    auto_publish_alias_all_properties: Option<bool>,
    version_description: Option<Value>,
    provisioned_concurrency_config: Option<Value>,
    file_system_configs: Option<Value>,
    image_config: Option<Value>,
    code_signing_config_arn: Option<Value>,
    architectures: Option<Value>,
    snap_start: Option<Map<String, Value>>,
    function_url_config: Option<Map<String, Value>>,
    runtime_management_config: Option<Value>,
    logging_config: Option<Value>,
    recursive_loop: Option<Value>,
    #[serde(rename = "SourceKMSKeyArn")]
    source_kms_key_arn: Option<Value>,
    capacity_provider_config: Option<Map<String, Value>>,
    function_scaling_config: Option<Map<String, Value>>,
    version_deletion_policy: Option<String>,
    publish_to_latest_published: Option<Value>,
    tenancy_config: Option<Value>,
    durable_config: Option<Map<String, Value>>,
}

/// Every property name of [`Props`] (for samtranslator's "property X not defined" message).
const PROPERTIES: &[&str] = &[
    "FunctionName",
    "Handler",
    "Runtime",
    "CodeUri",
    "ImageUri",
    "PackageType",
    "InlineCode",
    "DeadLetterQueue",
    "Description",
    "MemorySize",
    "Timeout",
    "VpcConfig",
    "Role",
    "AssumeRolePolicyDocument",
    "Policies",
    "RolePath",
    "PermissionsBoundary",
    "Environment",
    "Events",
    "Tags",
    "PropagateTags",
    "Tracing",
    "KmsKeyArn",
    "DeploymentPreference",
    "ReservedConcurrentExecutions",
    "Layers",
    "EventInvokeConfig",
    "EphemeralStorage",
    "AutoPublishAlias",
    "AutoPublishCodeSha256",
    "AutoPublishAliasAllProperties",
    "VersionDescription",
    "ProvisionedConcurrencyConfig",
    "FileSystemConfigs",
    "ImageConfig",
    "CodeSigningConfigArn",
    "Architectures",
    "SnapStart",
    "FunctionUrlConfig",
    "RuntimeManagementConfig",
    "LoggingConfig",
    "RecursiveLoop",
    "SourceKMSKeyArn",
    "CapacityProviderConfig",
    "FunctionScalingConfig",
    "VersionDeletionPolicy",
    "PublishToLatestPublished",
    "TenancyConfig",
    "DurableConfig",
];

/// The properties samtranslator types as maps ("Property 'X' should be a map." when they are not).
const MAP_PROPERTIES: &[&str] = &[
    "DeadLetterQueue",
    "AssumeRolePolicyDocument",
    "Tags",
    "DeploymentPreference",
    "EventInvokeConfig",
    "SnapStart",
    "FunctionUrlConfig",
    "CapacityProviderConfig",
    "FunctionScalingConfig",
    "DurableConfig",
];

/// `CapacityProviderConfig` as SAM writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityProviderConfig {
    #[serde(rename = "Arn")]
    arn: Value,
    #[serde(rename = "PerExecutionEnvironmentMaxConcurrency")]
    per_execution_environment_max_concurrency: Option<Value>,
    #[serde(rename = "ExecutionEnvironmentMemoryGiBPerVCpu")]
    execution_environment_memory_gib_per_vcpu: Option<Value>,
}

/// Parses the SAM properties with samtranslator's messages for unknown and mistyped properties.
fn parse_props(props: &Map<String, Value>) -> Result<Props, String> {
    if let Some(name) = props.keys().find(|k| !PROPERTIES.contains(&k.as_str())) {
        return Err(format!(
            "property {name} not defined for resource of type {TYPE}"
        ));
    }
    let de = Value::Object(props.clone());
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let name = path.split(['.', '[']).next().unwrap_or(&path).to_string();
        let is_map_property = MAP_PROPERTIES.contains(&name.as_str());
        if is_map_property && !props.get(&name).is_some_and(Value::is_object) {
            format!("Property '{name}' should be a map.")
        } else {
            format!("Type of property '{name}' is invalid.")
        }
    })
}

fn attr(decl: &ResourceDecl, passthrough_only: bool) -> ResourceDecl {
    ResourceDecl {
        type_: String::new(),
        properties: Value::Object(Map::new()),
        depends_on: if passthrough_only {
            Vec::new()
        } else {
            decl.depends_on.clone()
        },
        condition: decl.condition.clone(),
        deletion_policy: decl.deletion_policy.clone(),
        update_replace_policy: decl.update_replace_policy.clone(),
        metadata: if passthrough_only {
            None
        } else {
            decl.metadata.clone()
        },
    }
}

fn resource(base: ResourceDecl, type_: &str, props: Map<String, Value>) -> ResourceDecl {
    ResourceDecl {
        type_: type_.to_string(),
        properties: Value::Object(props),
        ..base
    }
}

fn put(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v
        && !v.is_null()
    {
        m.insert(key.to_string(), v);
    }
}

/// Python truthiness of a JSON value (samtranslator's `if self.X:`).
fn truthy(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Bool(true)) => true,
    }
}

pub(super) fn transform(
    id: &str,
    decl: &ResourceDecl,
    raw: &Map<String, Value>,
    cx: &Cx<'_>,
) -> Result<Generated, String> {
    let p = parse_props(raw)?;
    validate_rules(&p)?;
    unsupported(&p)?;
    if let Some(dlq) = &p.dead_letter_queue {
        validate_dlq(dlq)?;
    }
    let partition = cx.ctx.partition.as_str();
    let fn_tags = construct_tag_list(p.tags.as_ref())?;

    // The function, with samtranslator's property set (None values dropped).
    let mut f = Map::new();
    put(&mut f, "FunctionName", p.function_name.clone());
    put(&mut f, "Handler", p.handler.clone());
    put(&mut f, "Runtime", p.runtime.clone());
    put(&mut f, "Description", p.description.clone());
    put(&mut f, "MemorySize", p.memory_size.clone());
    put(&mut f, "Timeout", p.timeout.clone());
    put(&mut f, "VpcConfig", p.vpc_config.clone());
    put(&mut f, "Role", p.role.clone());
    put(
        &mut f,
        "Environment",
        p.environment.clone().map(Value::Object),
    );
    let code = code_dict(&p, cx)?;
    f.insert("Code".into(), Value::Object(code.clone()));
    put(&mut f, "KmsKeyArn", p.kms_key_arn.clone());
    put(
        &mut f,
        "ReservedConcurrentExecutions",
        p.reserved_concurrent_executions.clone(),
    );
    f.insert("Tags".into(), Value::Array(fn_tags.clone()));
    put(&mut f, "Layers", p.layers.clone().map(Value::Array));
    put(&mut f, "FileSystemConfigs", p.file_system_configs.clone());
    put(&mut f, "ImageConfig", p.image_config.clone());
    put(&mut f, "PackageType", p.package_type.clone());
    put(&mut f, "Architectures", p.architectures.clone());
    put(&mut f, "SnapStart", p.snap_start.clone().map(Value::Object));
    put(&mut f, "EphemeralStorage", p.ephemeral_storage.clone());
    let tracing = p.tracing.as_ref().map(|t| cx.resolve_params(t));
    let tracing_on = truthy(&p.tracing) && tracing != Some(json!("Disabled"));
    if tracing_on {
        f.insert("TracingConfig".into(), json!({ "Mode": p.tracing }));
    }
    if let Some(dlq) = &p.dead_letter_queue {
        f.insert(
            "DeadLetterConfig".into(),
            json!({ "TargetArn": dlq.get("TargetArn") }),
        );
    }
    put(
        &mut f,
        "CodeSigningConfigArn",
        p.code_signing_config_arn.clone(),
    );
    put(
        &mut f,
        "RuntimeManagementConfig",
        p.runtime_management_config.clone(),
    );
    put(&mut f, "LoggingConfig", p.logging_config.clone());
    put(&mut f, "TenancyConfig", p.tenancy_config.clone());
    put(&mut f, "RecursiveLoop", p.recursive_loop.clone());
    put(
        &mut f,
        "DurableConfig",
        p.durable_config.clone().map(Value::Object),
    );
    if let Some(cpc) = p
        .capacity_provider_config
        .as_ref()
        .filter(|c| !c.is_empty())
    {
        f.insert(
            "CapacityProviderConfig".into(),
            transform_capacity_provider_config(cpc)?,
        );
    }
    if let Some(fsc) = p.function_scaling_config.as_ref().filter(|c| !c.is_empty()) {
        f.insert("FunctionScalingConfig".into(), Value::Object(fsc.clone()));
    }
    put(
        &mut f,
        "PublishToLatestPublished",
        p.publish_to_latest_published.clone(),
    );
    validate_package_type(&p, &f)?;

    if truthy(&p.provisioned_concurrency_config) && !truthy(&p.auto_publish_alias) {
        return Err(
            "To set ProvisionedConcurrencyConfig AutoPublishALias must be defined on the function"
                .into(),
        );
    }

    let mut resources: Vec<(String, ResourceDecl)> = Vec::new();
    let mut refs: Vec<(&'static str, String)> = Vec::new();
    let mut alias_id: Option<String> = None;
    let mut alias: Option<String> = None;
    let mut version_and_alias: Vec<(String, ResourceDecl)> = Vec::new();
    if truthy(&p.auto_publish_alias) {
        let alias_name = match cx
            .resolve_params(p.auto_publish_alias.as_ref().unwrap_or(&Value::Null))
        {
            Value::String(s) => s,
            _ => {
                return Err(
                    "'AutoPublishAlias' must be a string or a Ref to a template parameter".into(),
                );
            }
        };
        let mut code_sha256: Option<String> = None;
        if let Some(sha) = &p.auto_publish_code_sha256 {
            let Value::String(sha) = cx.resolve_params(sha) else {
                return Err("AutoPublishCodeSha256 must be a string".into());
            };
            let description = p.description.as_ref().map(|d| cx.resolve_params(d));
            let new = match description {
                None | Some(Value::Null) => json!(sha),
                Some(Value::String(d)) if d.is_empty() => json!(sha),
                Some(Value::String(d)) => json!(format!("{d} {sha}")),
                Some(other) => json!({"Fn::Join": [" ", [other, sha]]}),
            };
            f.insert("Description".into(), new);
            code_sha256 = Some(sha);
        }
        // The Version's logical id hashes what should publish a new version (before the generated
        // role is set on the function, as samtranslator does).
        let hashed = if p.auto_publish_alias_all_properties == Some(true) {
            Value::Object(f.clone())
        } else {
            let mut d = match cx.resolve_params(&Value::Object(code.clone())) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if let Some(env) = &p.environment {
                d.extend(env.clone());
            }
            if truthy(&p.memory_size) {
                d.insert(
                    "MemorySize".into(),
                    p.memory_size.clone().unwrap_or_default(),
                );
            }
            if let Some(snap) = &p.snap_start
                && snap
                    .get("ApplyOn")
                    .and_then(Value::as_str)
                    .unwrap_or("None")
                    != "None"
            {
                d.insert("SnapStart".into(), Value::Object(snap.clone()));
            }
            Value::Object(d)
        };
        let prefix = format!("{id}Version");
        let version_id = match &code_sha256 {
            Some(sha) => format!("{prefix}{}", sha.chars().take(10).collect::<String>()),
            None => hash::logical_id(&prefix, &hashed),
        };
        let mut vattr = attr(decl, true);
        if vattr.deletion_policy.is_none() {
            vattr.deletion_policy = Some(match &p.version_deletion_policy {
                Some(policy) => policy.clone(),
                None if p.capacity_provider_config.is_some() => "Delete".into(),
                None => "Retain".into(),
            });
        }
        let mut v = Map::new();
        v.insert("FunctionName".into(), json!({ "Ref": id }));
        put(&mut v, "Description", p.version_description.clone());
        if p.capacity_provider_config.is_some() {
            put(
                &mut v,
                "FunctionScalingConfig",
                p.function_scaling_config.clone().map(Value::Object),
            );
        }
        version_and_alias.push((
            version_id.clone(),
            resource(vattr, "AWS::Lambda::Version", v),
        ));

        let alias_ok = !alias_name.is_empty()
            && alias_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !alias_name.chars().all(|c| c.is_ascii_digit());
        if !alias_ok {
            return Err(format!(
                "AutoPublishAlias name ('{alias_name}') must contain only alphanumeric characters, hyphens, or \
                 underscores matching (?!^[0-9]+$)([a-zA-Z0-9-_]+) pattern."
            ));
        }
        let a_id = format!(
            "{id}Alias{}",
            alias_name.replace('-', "D").replace('_', "U")
        );
        let mut a = Map::new();
        a.insert("Name".into(), json!(alias_name));
        a.insert("FunctionName".into(), json!({ "Ref": id }));
        a.insert(
            "FunctionVersion".into(),
            json!({ "Fn::GetAtt": [version_id, "Version"] }),
        );
        put(
            &mut a,
            "ProvisionedConcurrencyConfig",
            p.provisioned_concurrency_config.clone(),
        );
        version_and_alias.push((
            a_id.clone(),
            resource(attr(decl, true), "AWS::Lambda::Alias", a),
        ));
        refs.push(("Version", version_id));
        refs.push(("Alias", a_id.clone()));
        alias_id = Some(a_id);
        alias = Some(alias_name);
    }

    let mut url_resources: Vec<(String, ResourceDecl)> = Vec::new();
    if let Some(cfg) = p.function_url_config.as_ref().filter(|c| !c.is_empty()) {
        url_resources = function_url(id, decl, cfg, alias_id.as_deref())?;
    }
    let mut invoke_config: Option<(String, ResourceDecl)> = None;
    let mut invoke_policies: Vec<Value> = Vec::new();
    if let Some(cfg) = p.event_invoke_config.as_ref() {
        let (props, policies) = event_invoke_config(id, cfg, alias.as_deref(), cx)?;
        let mut base = attr(decl, false);
        base.depends_on = alias_id.iter().cloned().collect();
        invoke_config = Some((
            format!("{id}EventInvokeConfig"),
            resource(base, "AWS::Lambda::EventInvokeConfig", props),
        ));
        invoke_policies = policies;
    }

    // The execution role, unless the template names one.
    let mut role: Option<(String, ResourceDecl)> = None;
    // A Role given as Fn::If with an AWS::NoValue branch: the generated role in that branch.
    let role_if = p
        .role
        .as_ref()
        .filter(|r| r.get("Fn::If").is_some() && is_intrinsic(r));
    let mut conditions: Vec<(String, Value)> = Vec::new();
    if p.role.is_none() || role_if.is_some() {
        let role_id = format!("{id}Role");
        let mut managed = vec![json!(policies::aws_policy_arn(
            if p.durable_config.is_some() {
                "service-role/AWSLambdaBasicDurableExecutionRolePolicy"
            } else {
                "service-role/AWSLambdaBasicExecutionRole"
            },
            partition
        ))];
        if tracing_on {
            let xray = if partition == "aws" {
                "AWSXrayWriteOnlyAccess"
            } else {
                "AWSXRayDaemonWriteAccess"
            };
            managed.push(json!(policies::aws_policy_arn(xray, partition)));
        }
        if truthy(&p.vpc_config) {
            managed.push(json!(policies::aws_policy_arn(
                "service-role/AWSLambdaVPCAccessExecutionRole",
                partition
            )));
        }
        let mut documents = Vec::new();
        if let Some(dlq) = &p.dead_letter_queue {
            let action = if dlq.get("Type") == Some(&json!("SQS")) {
                "sqs:SendMessage"
            } else {
                "sns:Publish"
            };
            documents.push(json!({
                "PolicyName": "DeadLetterQueuePolicy",
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Action": action,
                        "Resource": dlq.get("TargetArn"),
                        "Effect": "Allow"
                    }]
                }
            }));
        }
        documents.extend(invoke_policies);
        let props = policies::role_properties(RoleSpec {
            role_id: role_id.clone(),
            assume_role_policy_document: p
                .assume_role_policy_document
                .clone()
                .map(Value::Object)
                .unwrap_or_else(policies::lambda_assume_role_policy),
            managed_policy_arns: managed,
            policies: p.policies.as_ref(),
            policy_documents: documents,
            role_path: p.role_path.clone(),
            permissions_boundary: p.permissions_boundary.clone(),
            tags: fn_tags.clone(),
            partition,
        })?;
        let arn = json!({ "Fn::GetAtt": [role_id, "Arn"] });
        let mut role_attr = attr(decl, true);
        let generated = match role_if {
            None => {
                f.insert("Role".into(), arn);
                true
            }
            Some(r) => {
                let resolved = cx.resolve_params(r);
                let items = match resolved.get("Fn::If") {
                    Some(Value::Array(items)) if items.len() == 3 => items.clone(),
                    _ => {
                        return Err(
                            "Malformed 'Role' property: Fn::If requires 3 arguments.".into()
                        );
                    }
                };
                let Value::String(condition) = &items[0] else {
                    return Err("Malformed 'Role' property: the Fn::If condition must be a \
                                    condition name."
                        .into());
                };
                let no_value =
                    |v: &Value| v.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue");
                match (no_value(&items[1]), no_value(&items[2])) {
                    (true, true) => {
                        f.insert("Role".into(), arn);
                        true
                    }
                    (true, false) => {
                        f.insert("Role".into(), json!({"Fn::If": [condition, arn, items[2]]}));
                        role_attr.condition = Some(condition.clone());
                        true
                    }
                    (false, true) => {
                        f.insert("Role".into(), json!({"Fn::If": [condition, items[1], arn]}));
                        let not = format!("NOT{condition}");
                        conditions
                            .push((not.clone(), json!({"Fn::Not": [{"Condition": condition}]})));
                        role_attr.condition = Some(not);
                        true
                    }
                    (false, false) => false,
                }
            }
        };
        if generated {
            role = Some((role_id, resource(role_attr, "AWS::IAM::Role", props)));
        }
    }

    resources.push((
        id.to_string(),
        resource(attr(decl, false), "AWS::Lambda::Function", f),
    ));
    resources.extend(version_and_alias);
    resources.extend(url_resources);
    resources.extend(invoke_config);
    let events = sqs_events(id, &p, &alias_id)?;
    if let Some((_, role)) = &mut role
        && !events.is_empty()
        && let Some(Value::Array(managed)) = role
            .properties
            .as_object_mut()
            .and_then(|m| m.get_mut("ManagedPolicyArns"))
    {
        let arn = json!(policies::aws_policy_arn(
            "service-role/AWSLambdaSQSQueueExecutionRole",
            partition
        ));
        if !managed.contains(&arn) {
            managed.push(arn);
        }
    }
    resources.extend(role);
    for (event_id, props) in events {
        resources.push((
            event_id,
            resource(attr(decl, true), "AWS::Lambda::EventSourceMapping", props),
        ));
    }

    // PropagateTags: every generated resource that has Tags gets the user's tags (replacing them).
    if p.propagate_tags == Some(true)
        && let Some(tags) = p.tags.as_ref().filter(|t| !t.is_empty())
    {
        for (_, r) in &mut resources {
            if matches!(r.type_.as_str(), "AWS::Lambda::Function" | "AWS::IAM::Role")
                && let Some(props) = r.properties.as_object_mut()
            {
                props.insert("Tags".into(), Value::Array(tag_list(tags)));
            }
        }
    }
    Ok(Generated {
        resources,
        refs,
        conditions,
    })
}

/// samtranslator's `__validation_rules__` for functions.
fn validate_rules(p: &Props) -> Result<(), String> {
    let mut errors = Vec::new();
    let present = |v: bool, name: &'static str| v.then_some(name);
    for (a, b) in [
        (
            present(
                p.capacity_provider_config.is_some(),
                "CapacityProviderConfig",
            ),
            present(
                p.provisioned_concurrency_config.is_some(),
                "ProvisionedConcurrencyConfig",
            ),
        ),
        (
            present(
                p.capacity_provider_config.is_some(),
                "CapacityProviderConfig",
            ),
            present(p.vpc_config.is_some(), "VpcConfig"),
        ),
    ] {
        if let (Some(a), Some(b)) = (a, b) {
            errors.push(format!("Cannot specify '{a}' and '{b}' together."));
        }
    }
    if p.function_scaling_config.is_some() && p.capacity_provider_config.is_none() {
        errors.push("'FunctionScalingConfig' requires 'CapacityProviderConfig'.".to_string());
    }
    if p.version_deletion_policy.is_some() && p.auto_publish_alias.is_none() {
        errors.push("'VersionDeletionPolicy' requires 'AutoPublishAlias'.".to_string());
    }
    if let Some(policy) = &p.version_deletion_policy
        && policy != "Delete"
        && policy != "Retain"
    {
        errors.push("Type of property 'VersionDeletionPolicy' is invalid.".to_string());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// SAM features that generate resources fleetfn's transform does not produce yet.
fn unsupported(p: &Props) -> Result<(), String> {
    let not = |what: &str| {
        Err(format!(
            "{what} is not supported by fleetfn's SAM transform; remove it, or write the resources it \
             generates as plain CloudFormation."
        ))
    };
    for (name, event) in p.events.iter().flatten() {
        let kind = event.get("Type").and_then(Value::as_str).unwrap_or("?");
        if kind != "SQS" {
            return not(&format!(
                "Events (event '{name}' of type '{kind}'; fleetfn's SAM transform supports SQS events)"
            ));
        }
    }
    if p.deployment_preference.is_some() {
        return not("DeploymentPreference");
    }
    Ok(())
}

fn validate_dlq(dlq: &Map<String, Value>) -> Result<(), String> {
    let kind = dlq.get("Type");
    if !truthy(&kind.cloned()) || !truthy(&dlq.get("TargetArn").cloned()) {
        return Err(
            "'DeadLetterQueue' requires Type and TargetArn properties to be specified.".into(),
        );
    }
    match kind.and_then(Value::as_str) {
        Some("SQS" | "SNS") => Ok(()),
        Some(_) => Err("'DeadLetterQueue' requires Type of ['SQS', 'SNS']".into()),
        None => Err("Property 'DeadLetterQueue.Type' should be a string.".into()),
    }
}

/// Tags with the SAM tag first (samtranslator's `_construct_tag_list`).
fn construct_tag_list(tags: Option<&Map<String, Value>>) -> Result<Vec<Value>, String> {
    let empty = Map::new();
    let tags = tags.unwrap_or(&empty);
    for reserved in [
        SAM_TAG_KEY,
        "serverlessrepo:applicationId",
        "serverlessrepo:semanticVersion",
    ] {
        if tags.contains_key(reserved) {
            return Err(format!(
                "{reserved} is a reserved Tag key name and cannot be set on your resource. Please change the \
                 tag key in the input."
            ));
        }
    }
    let mut list = vec![json!({"Key": SAM_TAG_KEY, "Value": "SAM"})];
    list.extend(tag_list(tags));
    Ok(list)
}

/// The function's `Code` from InlineCode / CodeUri / ImageUri (samtranslator's `_construct_code_dict`),
/// with a local CodeUri path carried in the `fleetfn-local` bucket.
fn code_dict(p: &Props, cx: &Cx<'_>) -> Result<Map<String, Value>, String> {
    let package_type = p
        .package_type
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or("Zip");
    let mut code = Map::new();
    match package_type {
        "Zip" => {
            if let Some(inline) = &p.inline_code {
                code.insert("ZipFile".into(), inline.clone());
            } else if let Some(uri) = &p.code_uri {
                code = s3_location(uri, cx)?;
            } else {
                return Err("Only one of 'InlineCode' or 'CodeUri' can be set.".into());
            }
        }
        "Image" => match &p.image_uri {
            Some(uri) if truthy(&Some(uri.clone())) => {
                code.insert("ImageUri".into(), uri.clone());
            }
            _ => return Err("'ImageUri' must be set.".into()),
        },
        other => return Err(format!("invalid 'PackageType' : {other}")),
    }
    if package_type == "Zip" {
        put(&mut code, "SourceKMSKeyArn", p.source_kms_key_arn.clone());
    }
    Ok(code)
}

fn s3_location(uri: &Value, cx: &Cx<'_>) -> Result<Map<String, Value>, String> {
    let mut code = Map::new();
    match uri {
        Value::Object(m) => {
            if !truthy(&m.get("Bucket").cloned()) || !truthy(&m.get("Key").cloned()) {
                return Err("'CodeUri' requires Bucket and Key properties to be specified.".into());
            }
            code.insert("S3Bucket".into(), m["Bucket"].clone());
            code.insert("S3Key".into(), m["Key"].clone());
            put(&mut code, "S3ObjectVersion", m.get("Version").cloned());
            put(
                &mut code,
                "S3ObjectStorageMode",
                m.get("StorageMode").cloned(),
            );
        }
        Value::String(s) => {
            if s.contains("{{resolve:") {
                return Err(
                    "Unsupported dynamic reference detected in 'CodeUri'. Please consider using \
                            alternative 'FunctionCode' object format."
                        .into(),
                );
            }
            if let Some(rest) = s.strip_prefix("s3://") {
                let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
                let (bucket, key) = location.split_once('/').unwrap_or((location, ""));
                let key = key.trim_start_matches('/');
                if bucket.is_empty() || key.is_empty() {
                    return Err("'CodeUri' is not a valid S3 Uri of the form 's3://bucket/key' with optional \
                                versionId query parameter."
                        .into());
                }
                code.insert("S3Bucket".into(), json!(bucket));
                code.insert("S3Key".into(), json!(key));
                let versions: Vec<&str> = query
                    .split('&')
                    .filter_map(|kv| kv.strip_prefix("versionId="))
                    .collect();
                if let [version] = versions[..] {
                    code.insert("S3ObjectVersion".into(), json!(version));
                }
            } else if s.contains("://") || s.is_empty() {
                return Err(
                    "'CodeUri' is not a valid S3 Uri of the form 's3://bucket/key' with optional \
                            versionId query parameter, nor a local path."
                        .into(),
                );
            } else {
                // A local path: what `sam package` would have uploaded; the deploy engine zips it.
                code.insert("S3Bucket".into(), json!(LOCAL_CODE_BUCKET));
                code.insert("S3Key".into(), json!(s));
                if let Some(version) = cx.opts.local_code_version.and_then(|f| f(s)) {
                    code.insert("S3ObjectVersion".into(), json!(version));
                }
            }
        }
        _ => return Err("'CodeUri' must be of type dict or string.".into()),
    }
    Ok(code)
}

fn validate_package_type(p: &Props, f: &Map<String, Value>) -> Result<(), String> {
    let package_type = p
        .package_type
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or("Zip");
    match package_type {
        "Zip" => {
            if !truthy(&p.runtime) || !truthy(&p.handler) {
                return Err(
                    "Runtime and Handler needs to be present when PackageType is of type `Zip`"
                        .into(),
                );
            }
            if truthy(&p.image_config) {
                return Err(
                    "ImageUri or ImageConfig cannot be present when PackageType is of type `Zip`"
                        .into(),
                );
            }
        }
        "Image" => {
            if truthy(&p.handler)
                || truthy(&p.runtime)
                || p.layers.as_ref().is_some_and(|l| !l.is_empty())
            {
                return Err(
                    "Runtime, Handler, Layers cannot be present when PackageType is of type `Image`".into(),
                );
            }
            if f.get("Code").and_then(|c| c.get("ImageUri")).is_none() {
                return Err(
                    "ImageUri needs to be present when PackageType is of type `Image`".into(),
                );
            }
        }
        other => {
            return Err(format!(
                "PackageType needs to be `Zip` or `Image`, not `{other}`"
            ));
        }
    }
    Ok(())
}

/// SAM's `CapacityProviderConfig` → CloudFormation's `LambdaManagedInstancesCapacityProviderConfig`.
fn transform_capacity_provider_config(cpc: &Map<String, Value>) -> Result<Value, String> {
    let parsed: CapacityProviderConfig =
        serde_json::from_value(Value::Object(cpc.clone())).map_err(|e| {
            format!("Invalid CapacityProviderConfig: {e} (it takes Arn, PerExecutionEnvironmentMaxConcurrency, ExecutionEnvironmentMemoryGiBPerVCpu)")
        })?;
    let mut c = Map::new();
    c.insert("CapacityProviderArn".into(), parsed.arn);
    put(
        &mut c,
        "PerExecutionEnvironmentMaxConcurrency",
        parsed.per_execution_environment_max_concurrency,
    );
    put(
        &mut c,
        "ExecutionEnvironmentMemoryGiBPerVCpu",
        parsed.execution_environment_memory_gib_per_vcpu,
    );
    Ok(json!({ "LambdaManagedInstancesCapacityProviderConfig": c }))
}

/// `FunctionUrlConfig` → `<Id>Url` (+ the two public permissions when AuthType is NONE).
fn function_url(
    id: &str,
    decl: &ResourceDecl,
    cfg: &Map<String, Value>,
    alias_id: Option<&str>,
) -> Result<Vec<(String, ResourceDecl)>, String> {
    let cfg_value = Value::Object(cfg.clone());
    let intrinsic_cfg = is_intrinsic(&cfg_value);
    let auth_type = cfg.get("AuthType");
    if !intrinsic_cfg && !auth_type.is_some_and(is_intrinsic) {
        match auth_type.and_then(Value::as_str) {
            Some("AWS_IAM" | "NONE") => {}
            _ => {
                return Err(
                    "AuthType is required to configure function property `FunctionUrlConfig`. \
                            Please provide either AWS_IAM or NONE."
                        .into(),
                );
            }
        }
    }
    if let Some(key) = cfg
        .keys()
        .find(|k| !["AuthType", "Cors", "InvokeMode"].contains(&k.as_str()))
        .filter(|_| !intrinsic_cfg)
    {
        return Err(format!(
            "property {key} not defined for FunctionUrlConfig (it takes AuthType, Cors, InvokeMode)"
        ));
    }
    if let Some(cors) = cfg
        .get("Cors")
        .filter(|c| !is_intrinsic(c) && truthy(&Some((*c).clone())))
    {
        let Some(cors) = cors.as_object() else {
            return Err("Property 'FunctionUrlConfig.Cors' should be a map.".into());
        };
        for (name, value) in cors {
            let ok = match name.as_str() {
                "AllowOrigins" | "AllowMethods" | "AllowHeaders" | "ExposeHeaders" => {
                    value.is_array()
                }
                "AllowCredentials" => value.is_boolean(),
                "MaxAge" => value.is_i64() || value.is_u64(),
                _ => {
                    return Err(format!(
                        "{name} is not a valid property for configuring Cors."
                    ));
                }
            };
            if !ok && !is_intrinsic(value) {
                let ty = match name.as_str() {
                    "AllowCredentials" => "bool",
                    "MaxAge" => "int",
                    _ => "list",
                };
                return Err(format!("{name} must be of type {ty}."));
            }
        }
    }
    let target = match alias_id {
        Some(alias) => json!({ "Ref": alias }),
        None => json!({ "Ref": id }),
    };
    let mut out = Vec::new();
    let mut url = Map::new();
    if let Some(cors) = cfg.get("Cors").filter(|c| truthy(&Some((*c).clone()))) {
        url.insert("Cors".into(), cors.clone());
    }
    put(&mut url, "AuthType", auth_type.cloned());
    url.insert("TargetFunctionArn".into(), target.clone());
    put(&mut url, "InvokeMode", cfg.get("InvokeMode").cloned());
    out.push((
        format!("{id}Url"),
        resource(attr(decl, true), "AWS::Lambda::Url", url),
    ));
    if auth_type == Some(&json!("NONE")) && !intrinsic_cfg {
        let mut public = Map::new();
        public.insert("Action".into(), json!("lambda:InvokeFunctionUrl"));
        public.insert("FunctionName".into(), target.clone());
        public.insert("Principal".into(), json!("*"));
        public.insert("FunctionUrlAuthType".into(), json!("NONE"));
        out.push((
            format!("{id}UrlPublicPermissions"),
            resource(attr(decl, true), "AWS::Lambda::Permission", public),
        ));
        let mut invoke = Map::new();
        invoke.insert("Action".into(), json!("lambda:InvokeFunction"));
        invoke.insert("Principal".into(), json!("*"));
        invoke.insert("FunctionName".into(), target);
        invoke.insert("InvokedViaFunctionUrl".into(), json!(true));
        out.push((
            format!("{id}URLInvokeAllowPublicAccess"),
            resource(attr(decl, true), "AWS::Lambda::Permission", invoke),
        ));
    }
    Ok(out)
}

/// A JSON object (CloudFormation properties).
type JsonObject = Map<String, Value>;

/// SQS event properties samtranslator passes to the event source mapping as they are.
const SQS_EVENT_PROPERTIES: &[&str] = &[
    "Queue",
    "BatchSize",
    "Enabled",
    "MaximumBatchingWindowInSeconds",
    "FunctionResponseTypes",
    "FilterCriteria",
    "KmsKeyArn",
    "ScalingConfig",
    "ProvisionedPollerConfig",
    "MetricsConfig",
    "LoggingConfig",
];

/// `Events` of type SQS → `AWS::Lambda::EventSourceMapping` `<Fn><Event>` on the alias when there
/// is one (samtranslator's SQS pull event source); the execution role gets
/// AWSLambdaSQSQueueExecutionRole.
fn sqs_events(
    id: &str,
    p: &Props,
    alias_id: &Option<String>,
) -> Result<Vec<(String, JsonObject)>, String> {
    let mut out = Vec::new();
    for (name, event) in p.events.iter().flatten() {
        let invalid = |m: String| format!("Event with id [{name}] is invalid. {m}");
        let empty = Map::new();
        let props = match event.get("Properties") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(invalid(
                    "Properties of a resource must be an object.".into(),
                ));
            }
        };
        if let Some(key) = props
            .keys()
            .find(|k| !SQS_EVENT_PROPERTIES.contains(&k.as_str()))
        {
            return Err(invalid(format!(
                "property {key} is not supported for SQS events by fleetfn's SAM transform (it takes {})",
                SQS_EVENT_PROPERTIES.join(", ")
            )));
        }
        let Some(queue) = props.get("Queue") else {
            return Err(invalid("Missing required property 'Queue'.".into()));
        };
        for (key, ok) in [
            (
                "BatchSize",
                props
                    .get("BatchSize")
                    .is_none_or(|v| v.is_u64() || is_intrinsic(v)),
            ),
            (
                "Enabled",
                props.get("Enabled").is_none_or(Value::is_boolean),
            ),
            (
                "MaximumBatchingWindowInSeconds",
                props
                    .get("MaximumBatchingWindowInSeconds")
                    .is_none_or(|v| v.is_u64() || is_intrinsic(v)),
            ),
        ] {
            if !ok {
                return Err(invalid(format!("Type of property '{key}' is invalid.")));
            }
        }
        if let Some(filter) = props.get("FilterCriteria").filter(|f| !is_intrinsic(f))
            && !filter
                .as_object()
                .is_some_and(|m| m.keys().all(|k| k == "Filters"))
        {
            return Err(invalid("FilterCriteria field has a wrong format".into()));
        }
        let target = match alias_id {
            Some(alias) => json!({ "Ref": alias }),
            None => json!({ "Ref": id }),
        };
        let mut esm = Map::new();
        esm.insert("FunctionName".into(), target);
        esm.insert("EventSourceArn".into(), queue.clone());
        for key in SQS_EVENT_PROPERTIES.iter().skip(1) {
            put(&mut esm, key, props.get(*key).cloned());
        }
        out.push((format!("{id}{name}"), esm));
    }
    Ok(out)
}

/// `EventInvokeConfig` → `<Fn>EventInvokeConfig` (qualifier: the alias, else `$LATEST`) and the
/// role policies for its destinations (samtranslator's `_construct_event_invoke_config`); a
/// destination must be given (samtranslator would create an SQS queue or SNS topic for a missing one).
fn event_invoke_config(
    id: &str,
    cfg: &JsonObject,
    alias_name: Option<&str>,
    cx: &Cx<'_>,
) -> Result<(JsonObject, Vec<Value>), String> {
    let resolved = cx.resolve_params(&Value::Object(cfg.clone()));
    let logical_id = format!("{id}EventInvokeConfig");
    let mut destinations = Map::new();
    let mut policies = Vec::new();
    if let Some(dest) = resolved
        .get("DestinationConfig")
        .filter(|d| truthy(&Some((*d).clone())))
    {
        let Some(dest) = dest.as_object() else {
            return Err("Property 'EventInvokeConfig.DestinationConfig' should be a map.".into());
        };
        for name in ["OnSuccess", "OnFailure"] {
            let Some(one) = dest.get(name).filter(|v| !v.is_null()) else {
                continue;
            };
            let Some(one) = one.as_object() else {
                return Err(format!(
                    "Property 'EventInvokeConfig.DestinationConfig.{name}' should be a map."
                ));
            };
            let kind = one.get("Type");
            let accepted = ["SQS", "SNS", "EventBridge", "Lambda", "S3Bucket"];
            let Some(kind) = kind
                .and_then(Value::as_str)
                .filter(|k| accepted.contains(k))
            else {
                let shown = match kind {
                    Some(Value::String(k)) => k.clone(),
                    Some(other) => other.to_string(),
                    None => "None".into(),
                };
                return Err(format!(
                    "'Type: {shown}' must be one of ['SQS', 'SNS', 'EventBridge', 'Lambda', 'S3Bucket']"
                ));
            };
            let Some(destination) = one.get("Destination").filter(|d| !d.is_null()) else {
                return Err(format!(
                    "EventInvokeConfig.DestinationConfig.{name} has no Destination; fleetfn's SAM transform \
                     does not create the {kind} resource samtranslator would: give its ARN."
                ));
            };
            if destination.get("Fn::If").is_some() && is_intrinsic(destination) {
                return Err(format!(
                    "EventInvokeConfig.DestinationConfig.{name}.Destination as Fn::If is not supported by \
                     fleetfn's SAM transform."
                ));
            }
            destinations.insert(name.into(), json!({ "Destination": destination }));
            let policy_id = format!("{logical_id}{name}");
            let (suffix, statements) = match kind {
                "SQS" => (
                    "SQSPolicy",
                    json!([{"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": destination}]),
                ),
                "SNS" => (
                    "SNSPolicy",
                    json!([{"Action": "sns:publish", "Effect": "Allow", "Resource": destination}]),
                ),
                "EventBridge" => (
                    "EventBridgePolicy",
                    json!([{"Action": "events:PutEvents", "Effect": "Allow", "Resource": destination}]),
                ),
                "Lambda" => (
                    "LambdaPolicy",
                    json!([{"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": destination}]),
                ),
                _ => (
                    "S3Policy",
                    json!([
                        {"Action": "s3:PutObject", "Effect": "Allow",
                         "Resource": {"Fn::Join": ["/", [destination, "*"]]}},
                        {"Action": "s3:ListBucket", "Effect": "Allow", "Resource": destination}
                    ]),
                ),
            };
            policies.push(json!({
                "PolicyName": format!("{policy_id}{suffix}"),
                "PolicyDocument": {"Statement": statements},
            }));
        }
    }
    let mut props = Map::new();
    props.insert("FunctionName".into(), json!({ "Ref": id }));
    props.insert("Qualifier".into(), json!(alias_name.unwrap_or("$LATEST")));
    props.insert("DestinationConfig".into(), Value::Object(destinations));
    put(
        &mut props,
        "MaximumEventAgeInSeconds",
        resolved.get("MaximumEventAgeInSeconds").cloned(),
    );
    put(
        &mut props,
        "MaximumRetryAttempts",
        resolved.get("MaximumRetryAttempts").cloned(),
    );
    Ok((props, policies))
}
