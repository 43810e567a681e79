//! Unit tests of the SAM transform. Expected ids and values are aws-sam-translator 1.115.0's output
//! for the same templates (tests/templates/test_sam_oracle.py compares whole templates against it).

use serde_json::{Value, json};

use super::*;
use crate::{StackContext, parse};

fn ctx() -> StackContext {
    StackContext {
        stack_name: "s".into(),
        region: "us-east-1".into(),
        account_id: "123456789012".into(),
        partition: "aws".into(),
        stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1".into(),
    }
}

fn render(text: &str) -> Value {
    let t = parse(text).expect("parse");
    transform(&t, &ctx()).expect("transform").to_json()
}

fn causes(text: &str) -> Vec<String> {
    let t = parse(text).expect("parse");
    match transform(&t, &ctx()) {
        Err(TemplateError::Sam(causes)) => causes,
        other => panic!("expected a SAM error, got {other:?}"),
    }
}

const LMI: &str = r#"
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    MemorySize: 2048
    Environment:
      Variables:
        A: global
Resources:
  MyCapacityProvider:
    Type: AWS::Serverless::CapacityProvider
    Properties:
      CapacityProviderName: my-cp
      VpcConfig:
        SubnetIds: [subnet-1]
        SecurityGroupIds: [sg-1]
      ScalingConfig:
        MaxVCpuCount: 64
        AverageCPUUtilization: 70
      InstanceRequirements:
        Architectures: [x86_64]
  MyFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src
      Handler: app.handler
      AutoPublishAlias: live
      Policies:
        - AmazonS3ReadOnlyAccess
      Environment:
        Variables:
          B: b
      CapacityProviderConfig:
        Arn: !GetAtt MyCapacityProvider.Arn
        PerExecutionEnvironmentMaxConcurrency: 10
      FunctionScalingConfig:
        MinExecutionEnvironments: 1
        MaxExecutionEnvironments: 5
      FunctionUrlConfig:
        AuthType: NONE
      Tags:
        team: x
"#;

#[test]
fn template_without_the_transform_is_unchanged() {
    let text = r#"{"Resources": {"F": {"Type": "AWS::Lambda::Function", "Properties": {"Handler": "h"}}}}"#;
    let t = parse(text).unwrap();
    assert_eq!(transform(&t, &ctx()).unwrap(), t);
}

#[test]
fn lmi_function_and_capacity_provider_like_samtranslator() {
    let out = render(LMI);
    assert!(out.get("Transform").is_none() && out.get("Globals").is_none());
    let r = &out["Resources"];
    let ids: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(
        ids,
        [
            "MyCapacityProvider",
            "MyCapacityProviderOperatorRole",
            "MyFunction",
            "MyFunctionAliaslive",
            "MyFunctionRole",
            "MyFunctionURLInvokeAllowPublicAccess",
            "MyFunctionUrl",
            "MyFunctionUrlPublicPermissions",
            // samtranslator's id for CodeUri s3://fleetfn-local/src: the local path hashes the same.
            "MyFunctionVersion079a6d65d4",
        ]
    );
    let f = &r["MyFunction"]["Properties"];
    assert_eq!(
        f["Code"],
        json!({"S3Bucket": "fleetfn-local", "S3Key": "src"})
    );
    assert_eq!(
        f["Environment"],
        json!({"Variables": {"A": "global", "B": "b"}})
    );
    assert_eq!(f["MemorySize"], json!(2048));
    assert_eq!(f["Role"], json!({"Fn::GetAtt": ["MyFunctionRole", "Arn"]}));
    assert_eq!(
        f["Tags"],
        json!([{"Key": "lambda:createdBy", "Value": "SAM"}, {"Key": "team", "Value": "x"}])
    );
    assert_eq!(
        f["CapacityProviderConfig"],
        json!({"LambdaManagedInstancesCapacityProviderConfig": {
            "CapacityProviderArn": {"Fn::GetAtt": ["MyCapacityProvider", "Arn"]},
            "PerExecutionEnvironmentMaxConcurrency": 10
        }})
    );
    let v = &r["MyFunctionVersion079a6d65d4"];
    assert_eq!(v["DeletionPolicy"], json!("Delete"));
    assert_eq!(
        v["Properties"],
        json!({"FunctionName": {"Ref": "MyFunction"},
               "FunctionScalingConfig": {"MinExecutionEnvironments": 1, "MaxExecutionEnvironments": 5}})
    );
    assert_eq!(
        r["MyFunctionAliaslive"]["Properties"]["FunctionVersion"],
        json!({"Fn::GetAtt": ["MyFunctionVersion079a6d65d4", "Version"]})
    );
    assert_eq!(
        r["MyFunctionUrl"]["Properties"],
        json!({"AuthType": "NONE", "TargetFunctionArn": {"Ref": "MyFunctionAliaslive"}})
    );
    assert_eq!(
        r["MyFunctionRole"]["Properties"]["ManagedPolicyArns"],
        json!([
            "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
        ])
    );
    let cp = &r["MyCapacityProvider"]["Properties"];
    assert_eq!(
        cp["PermissionsConfig"],
        json!({"CapacityProviderOperatorRoleArn": {"Fn::GetAtt": ["MyCapacityProviderOperatorRole", "Arn"]}})
    );
    assert_eq!(
        cp["CapacityProviderScalingConfig"],
        json!({"MaxVCpuCount": 64, "ScalingMode": "Manual", "ScalingPolicies": [
            {"PredefinedMetricType": "LambdaCapacityProviderAverageCPUUtilization", "TargetValue": 70}
        ]})
    );
    assert_eq!(
        r["MyCapacityProviderOperatorRole"]["Properties"]["ManagedPolicyArns"],
        json!(["arn:aws:iam::aws:policy/AWSLambdaManagedEC2ResourceOperator"])
    );
}

#[test]
fn a_code_version_goes_into_the_code_and_the_version_id() {
    let t = parse(LMI).unwrap();
    let version = |path: &str| (path == "src").then(|| "abc".to_string());
    let opts = SamOptions {
        local_code_version: Some(&version),
        ..SamOptions::default()
    };
    let out = transform_with(&t, &ctx(), &opts).unwrap().to_json();
    let code = &out["Resources"]["MyFunction"]["Properties"]["Code"];
    assert_eq!(
        code,
        &json!({"S3Bucket": "fleetfn-local", "S3Key": "src", "S3ObjectVersion": "abc"})
    );
    // samtranslator's id for CodeUri s3://fleetfn-local/src?versionId=abc with the same function.
    assert!(
        out["Resources"]
            .get("MyFunctionVersion079a6d65d4")
            .is_none()
    );
    let versions: Vec<&String> = out["Resources"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("MyFunctionVersion"))
        .collect();
    assert_eq!(versions.len(), 1);
}

#[test]
fn globals_merge_and_sam_references_resolve() {
    let out = render(
        r#"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: prod}
Globals:
  Function:
    Runtime: python3.13
    Handler: app.handler
    Architectures: [x86_64]
    Layers: [arn:aws:lambda:us-east-1:123456789012:layer:a:1]
    Environment: {Variables: {A: global, B: global}}
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: s3://fleetfn-local/src?versionId=abc
      Architectures: [arm64]
      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:b:1]
      Environment: {Variables: {B: local}}
      AutoPublishAlias: !Ref Stage
      Policies:
        - AWSLambdaBasicExecutionRole
        - Statement: [{Effect: Allow, Action: s3:GetObject, Resource: "*"}]
Outputs:
  AliasArn: {Value: !Ref Fn.Alias}
  Ver: {Value: !GetAtt Fn.Version.Version}
"#,
    );
    let f = &out["Resources"]["Fn"]["Properties"];
    assert_eq!(f["Architectures"], json!(["arm64"]));
    assert_eq!(
        f["Layers"],
        json!([
            "arn:aws:lambda:us-east-1:123456789012:layer:a:1",
            "arn:aws:lambda:us-east-1:123456789012:layer:b:1"
        ])
    );
    assert_eq!(
        f["Environment"],
        json!({"Variables": {"A": "global", "B": "local"}})
    );
    // Ids from samtranslator for this template.
    assert_eq!(
        out["Outputs"]["AliasArn"]["Value"],
        json!({"Ref": "FnAliasprod"})
    );
    assert_eq!(
        out["Outputs"]["Ver"]["Value"],
        json!({"Fn::GetAtt": ["FnVersion5eb171303c", "Version"]})
    );
    let role = &out["Resources"]["FnRole"]["Properties"];
    assert_eq!(
        role["ManagedPolicyArns"],
        json!(["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"])
    );
    assert_eq!(
        role["Policies"],
        json!([{"PolicyName": "FnRolePolicy1", "PolicyDocument":
            {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}])
    );
}

fn function_with(extra: &str, globals: &str) -> String {
    format!(
        "Transform: AWS::Serverless-2016-10-31\n{globals}\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    \
         Properties:\n      InlineCode: x\n      Handler: h\n      Runtime: python3.13\n{extra}\n"
    )
}

#[test]
fn errors_are_worded_like_samtranslator() {
    let cases = [
        (
            function_with("      Foo: 1", ""),
            "Resource with id [Fn] is invalid. property Foo not defined for resource of type AWS::Serverless::Function",
        ),
        (
            function_with(
                "      FunctionScalingConfig: {MinExecutionEnvironments: 1}",
                "",
            ),
            "Resource with id [Fn] is invalid. 'FunctionScalingConfig' requires 'CapacityProviderConfig'.",
        ),
        (
            function_with("      AutoPublishAlias: 'a.b'", ""),
            "Resource with id [Fn] is invalid. AutoPublishAlias name ('a.b') must contain only alphanumeric \
             characters, hyphens, or underscores matching (?!^[0-9]+$)([a-zA-Z0-9-_]+) pattern.",
        ),
        (
            function_with("      FunctionUrlConfig: {Cors: {AllowOrigins: ['*']}}", ""),
            "Resource with id [Fn] is invalid. AuthType is required to configure function property \
             `FunctionUrlConfig`. Please provide either AWS_IAM or NONE.",
        ),
        (
            function_with("      Tags: {'lambda:createdBy': me}", ""),
            "Resource with id [Fn] is invalid. lambda:createdBy is a reserved Tag key name and cannot be set \
             on your resource. Please change the tag key in the input.",
        ),
        (
            function_with("      Tags: [a]", ""),
            "Resource with id [Fn] is invalid. Property 'Tags' should be a map.",
        ),
        (
            function_with("      PropagateTags: 'yes'", ""),
            "Resource with id [Fn] is invalid. Type of property 'PropagateTags' is invalid.",
        ),
        (
            function_with("      Layers: x", ""),
            "Resource with id [Fn] is invalid. Type of property 'Layers' is invalid.",
        ),
        (
            function_with("", "Globals:\n  Nope: {}"),
            "'Globals' section is invalid. 'Nope' is not supported. Must be one of the following values - \
             ['Api', 'CapacityProvider', 'Function', 'HttpApi', 'LayerVersion', 'MicrovmImage', \
             'NetworkConnector', 'SimpleTable', 'StateMachine', 'WebSocketApi']",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(causes(&text), vec![expected.to_string()], "{text}");
    }
}

#[test]
fn unsupported_sam_features_name_the_resource() {
    let c = causes(&function_with(
        "      Events:\n        Tick: {Type: Schedule, Properties: {Schedule: rate(1 minute)}}",
        "",
    ));
    assert!(
        c[0].starts_with(
            "Resource with id [Fn] is invalid. Events (event 'Tick' of type 'Schedule'"
        ),
        "{c:?}"
    );
    let c = causes(&function_with(
        "      Events:\n        Q: {Type: SQS, Properties: {BatchSize: 5}}",
        "",
    ));
    assert_eq!(
        c,
        [
            "Resource with id [Fn] is invalid. Event with id [Q] is invalid. Missing required property 'Queue'."
        ]
    );
    let c = causes(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Api:\n    Type: AWS::Serverless::Api\n    \
         Properties: {StageName: p}\n",
    );
    assert!(
        c[0].contains("AWS::Serverless::Api is not supported"),
        "{c:?}"
    );
    // Every SAM resource's errors are reported, not only the first.
    let text = format!(
        "{}  Fn2:\n    Type: AWS::Serverless::Function\n    Properties: {{Handler: h}}\n",
        function_with("      Foo: 1", "")
    );
    assert_eq!(causes(&text).len(), 2);
}

#[test]
fn capacity_provider_with_operator_role_and_auto_scaling() {
    let out = render(
        r#"
Transform: AWS::Serverless-2016-10-31
Resources:
  Cp:
    Type: AWS::Serverless::CapacityProvider
    Properties:
      VpcConfig: {SubnetIds: [subnet-1]}
      OperatorRole: arn:aws:iam::123456789012:role/op
      ScalingConfig: {MaxVCpuCount: 8}
      Tags: {team: x}
"#,
    );
    let r = out["Resources"].as_object().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        r["Cp"]["Properties"],
        json!({
            "VpcConfig": {"SubnetIds": ["subnet-1"]},
            "PermissionsConfig": {"CapacityProviderOperatorRoleArn": "arn:aws:iam::123456789012:role/op"},
            "Tags": [{"Key": "lambda:createdBy", "Value": "SAM"}, {"Key": "team", "Value": "x"}],
            "CapacityProviderScalingConfig": {"MaxVCpuCount": 8, "ScalingMode": "Auto"}
        })
    );
    let c = causes(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Cp:\n    Type: AWS::Serverless::CapacityProvider\n    \
         Properties: {}\n",
    );
    assert_eq!(
        c,
        ["Resource with id [Cp] is invalid. Missing required property 'VpcConfig'."]
    );
}

#[test]
fn sub_references_to_the_alias_are_rewritten() {
    // samtranslator: {"Fn::Sub": "${Fn.Alias} in ${AWS::Region}"} → "${FnAliaslive} in ${AWS::Region}".
    let out = render(&format!(
        "{}Outputs:\n  S: {{Value: !Sub '${{Fn.Alias}} in ${{AWS::Region}}'}}\n  A: {{Value: !GetAtt Fn.Alias.Arn}}\n",
        function_with("      AutoPublishAlias: live", "")
    ));
    assert_eq!(
        out["Outputs"]["S"]["Value"],
        json!({"Fn::Sub": "${FnAliaslive} in ${AWS::Region}"})
    );
    assert_eq!(
        out["Outputs"]["A"]["Value"],
        json!({"Fn::GetAtt": ["FnAliaslive", "Arn"]})
    );
}

#[test]
fn capacity_provider_errors_are_worded_like_samtranslator() {
    let cp = |props: &str| {
        format!(
            "Transform: AWS::Serverless-2016-10-31\nResources:\n  Cp:\n    Type: AWS::Serverless::CapacityProvider\n    \
             Properties:\n{props}\n"
        )
    };
    let vpc = "      VpcConfig: {SubnetIds: [a]}\n";
    let cases = [
        (
            format!("{vpc}      Foo: 1"),
            "property Foo not defined for resource of type AWS::Serverless::CapacityProvider",
        ),
        (
            "      VpcConfig: {SubnetIds: [a], Bad: 1}".to_string(),
            "Property 'VpcConfig.Bad' is an invalid property.",
        ),
        (
            "      VpcConfig: {}".to_string(),
            "Property 'VpcConfig.SubnetIds' is required.",
        ),
        (
            "      VpcConfig: {SubnetIds: x}".to_string(),
            "Property 'VpcConfig.SubnetIds' value must be dictionary or list.",
        ),
        (
            format!("{vpc}      ScalingConfig: {{MaxVCpuCount: x, Bad: 1}}"),
            "Property 'ScalingConfig.MaxVCpuCount' value must be dictionary or integer. Property \
             'ScalingConfig.Bad' is an invalid property.",
        ),
        (
            format!("{vpc}      ScalingConfig: {{AverageCPUUtilization: x}}"),
            "Property 'ScalingConfig.AverageCPUUtilization' value must be dictionary or number.",
        ),
        (
            format!("{vpc}      Tags: x"),
            "Property 'Tags' should be a map.",
        ),
        (
            format!("{vpc}      PropagateTags: x"),
            "Type of property 'PropagateTags' is invalid.",
        ),
        (
            format!("{vpc}      ManagedResourceTags: {{Foo: 1}}"),
            "Property 'ManagedResourceTags.Foo' is an invalid property.",
        ),
    ];
    for (props, expected) in cases {
        assert_eq!(
            causes(&cp(&props)),
            vec![format!("Resource with id [Cp] is invalid. {expected}")],
            "{props}"
        );
    }
}
