//! Parsing: YAML short tags, YAML ≡ JSON, CloudFormation's scalar rules, structure errors, limits.

use fleetfn_templates::{TemplateError, parse};
use serde_json::json;

const LMI_YAML: &str = r#"
AWSTemplateFormatVersion: 2010-09-09
Description: LMI function on a capacity provider
Parameters:
  SubnetIds:
    Type: List<AWS::EC2::Subnet::Id>
    Default: subnet-1,subnet-2
  Stage:
    Type: String
    Default: prod
    AllowedValues: [prod, dev]
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Resources:
  OperatorRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
  Provider:
    Type: AWS::Lambda::CapacityProvider
    Properties:
      CapacityProviderName: !Sub "${AWS::StackName}-provider"
      VpcConfig:
        SubnetIds: !Ref SubnetIds
      PermissionsConfig:
        CapacityProviderOperatorRoleArn: !GetAtt OperatorRole.Arn
      InstanceRequirements:
        Architectures: [x86_64]
      CapacityProviderScalingConfig:
        MaxVCpuCount: 64
  Fn:
    Type: AWS::Lambda::Function
    DependsOn: Provider
    Properties:
      Runtime: python3.13
      Handler: app.handler
      MemorySize: 2048
      Role: !GetAtt [OperatorRole, Arn]
      Code:
        ZipFile: |
          def handler(event, context):
              return event
      Environment:
        Variables:
          STAGE: !If [IsProd, production, !Ref Stage]
          REGION: !Join ["-", [!Ref "AWS::Region", !Select [0, !GetAZs ""]]]
      CapacityProviderConfig:
        LambdaManagedInstancesCapacityProviderConfig:
          CapacityProviderArn: !GetAtt Provider.Arn
          PerExecutionEnvironmentMaxConcurrency: 10
  Version:
    Type: AWS::Lambda::Version
    Properties:
      FunctionName: !Ref Fn
  Alias:
    Type: AWS::Lambda::Alias
    Properties:
      FunctionName: !Ref Fn
      FunctionVersion: !GetAtt Version.Version
      Name: live
Outputs:
  AliasArn:
    Value: !Ref Alias
    Export:
      Name: !Sub "${AWS::StackName}-alias"
"#;

const LMI_JSON: &str = r#"{
  "AWSTemplateFormatVersion": "2010-09-09",
  "Description": "LMI function on a capacity provider",
  "Parameters": {
    "SubnetIds": {"Type": "List<AWS::EC2::Subnet::Id>", "Default": "subnet-1,subnet-2"},
    "Stage": {"Type": "String", "Default": "prod", "AllowedValues": ["prod", "dev"]}
  },
  "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
  "Resources": {
    "OperatorRole": {
      "Type": "AWS::IAM::Role",
      "Properties": {
        "AssumeRolePolicyDocument": {
          "Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                         "Action": "sts:AssumeRole"}]
        }
      }
    },
    "Provider": {
      "Type": "AWS::Lambda::CapacityProvider",
      "Properties": {
        "CapacityProviderName": {"Fn::Sub": "${AWS::StackName}-provider"},
        "VpcConfig": {"SubnetIds": {"Ref": "SubnetIds"}},
        "PermissionsConfig": {"CapacityProviderOperatorRoleArn": {"Fn::GetAtt": ["OperatorRole", "Arn"]}},
        "InstanceRequirements": {"Architectures": ["x86_64"]},
        "CapacityProviderScalingConfig": {"MaxVCpuCount": 64}
      }
    },
    "Fn": {
      "Type": "AWS::Lambda::Function",
      "DependsOn": ["Provider"],
      "Properties": {
        "Runtime": "python3.13",
        "Handler": "app.handler",
        "MemorySize": 2048,
        "Role": {"Fn::GetAtt": ["OperatorRole", "Arn"]},
        "Code": {"ZipFile": "def handler(event, context):\n    return event\n"},
        "Environment": {"Variables": {
          "STAGE": {"Fn::If": ["IsProd", "production", {"Ref": "Stage"}]},
          "REGION": {"Fn::Join": ["-", [{"Ref": "AWS::Region"}, {"Fn::Select": [0, {"Fn::GetAZs": ""}]}]]}
        }},
        "CapacityProviderConfig": {"LambdaManagedInstancesCapacityProviderConfig": {
          "CapacityProviderArn": {"Fn::GetAtt": ["Provider", "Arn"]},
          "PerExecutionEnvironmentMaxConcurrency": 10
        }}
      }
    },
    "Version": {"Type": "AWS::Lambda::Version", "Properties": {"FunctionName": {"Ref": "Fn"}}},
    "Alias": {
      "Type": "AWS::Lambda::Alias",
      "Properties": {"FunctionName": {"Ref": "Fn"}, "FunctionVersion": {"Fn::GetAtt": ["Version", "Version"]}, "Name": "live"}
    }
  },
  "Outputs": {
    "AliasArn": {"Value": {"Ref": "Alias"}, "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-alias"}}}
  }
}"#;

#[test]
fn yaml_and_json_of_one_lmi_template_parse_equal() {
    let y = parse(LMI_YAML).unwrap();
    let j = parse(LMI_JSON).unwrap();
    assert_eq!(y, j);
    assert_eq!(y.format_version.as_deref(), Some("2010-09-09"));
    assert_eq!(y.resources["Fn"].depends_on, vec!["Provider".to_owned()]);
    assert_eq!(y.resources["Fn"].type_, "AWS::Lambda::Function");
    // to_json round-trips through parse.
    let again = parse(&serde_json::to_string(&y.to_json()).unwrap()).unwrap();
    assert_eq!(again, y);
}

fn props(yaml: &str) -> serde_json::Value {
    let text = format!("Resources:\n  R:\n    Type: X::Y::Z\n    Properties:\n{yaml}");
    parse(&text).unwrap().resources["R"].properties.clone()
}

#[test]
fn every_short_tag_becomes_its_long_form() {
    let p = props(
        r#"      Ref: !Ref P
      GetAttDot: !GetAtt A.B.C
      GetAttList: !GetAtt [A, B]
      Sub: !Sub "x-${P}"
      SubList: !Sub ["${a}", {a: !Ref P}]
      Join: !Join [",", [a, b]]
      Select: !Select ["1", [a, b]]
      Split: !Split [",", "a,b"]
      If: !If [C, a, b]
      Equals: !Equals [a, b]
      And: !And [!Condition C, !Condition D]
      Or: !Or [!Condition C, !Condition D]
      Not: !Not [!Condition C]
      FindInMap: !FindInMap [M, a, b]
      Base64: !Base64 abc
      GetAZs: !GetAZs ''
      ImportValue: !ImportValue x
      Cidr: !Cidr [10.0.0.0/16, 4, 8]
"#,
    );
    assert_eq!(
        p,
        json!({
            "Ref": {"Ref": "P"},
            "GetAttDot": {"Fn::GetAtt": ["A", "B.C"]},
            "GetAttList": {"Fn::GetAtt": ["A", "B"]},
            "Sub": {"Fn::Sub": "x-${P}"},
            "SubList": {"Fn::Sub": ["${a}", {"a": {"Ref": "P"}}]},
            "Join": {"Fn::Join": [",", ["a", "b"]]},
            "Select": {"Fn::Select": ["1", ["a", "b"]]},
            "Split": {"Fn::Split": [",", "a,b"]},
            "If": {"Fn::If": ["C", "a", "b"]},
            "Equals": {"Fn::Equals": ["a", "b"]},
            "And": {"Fn::And": [{"Condition": "C"}, {"Condition": "D"}]},
            "Or": {"Fn::Or": [{"Condition": "C"}, {"Condition": "D"}]},
            "Not": {"Fn::Not": [{"Condition": "C"}]},
            "FindInMap": {"Fn::FindInMap": ["M", "a", "b"]},
            "Base64": {"Fn::Base64": "abc"},
            "GetAZs": {"Fn::GetAZs": ""},
            "ImportValue": {"Fn::ImportValue": "x"},
            "Cidr": {"Fn::Cidr": ["10.0.0.0/16", 4, 8]},
        })
    );
}

#[test]
fn plain_scalars_resolve_as_cloudformation_sees_them() {
    let p = props(
        r#"      Octal: 0123
      Account: 012345678901
      Yes: yes
      On: On
      Off: OFF
      No: no
      Y: y
      N: N
      Version: 1.10
      Float: 1.5
      Int: 42
      Neg: -7
      Hex: 0x1F
      Exp: 1e3
      Inf: .inf
      Date: 2024-01-02
      Null: ~
      Empty:
      QuotedYes: "yes"
      QuotedNum: '10'
      Str: !!str 10
      Block: |
        text
"#,
    );
    assert_eq!(
        p,
        json!({
            "Octal": "0123", "Account": "012345678901", "Yes": true, "On": true, "Off": false,
            "No": false, "Y": "y", "N": "N", "Version": "1.10", "Float": 1.5, "Int": 42,
            "Neg": -7, "Hex": "0x1F", "Exp": "1e3", "Inf": ".inf", "Date": "2024-01-02",
            "Null": null, "Empty": null, "QuotedYes": "yes", "QuotedNum": "10", "Str": "10",
            "Block": "text\n",
        })
    );
}

#[test]
fn yaml_aliases_and_merge_keys_are_rejected() {
    let err = parse("Resources:\n  A: &a {Type: X::Y::Z}\n  B: *a\n").unwrap_err();
    assert!(err.to_string().contains("aliases"), "{err}");
    let err = parse("Resources:\n  A:\n    <<: {Type: X::Y::Z}\n").unwrap_err();
    assert!(err.to_string().contains("merge keys"), "{err}");
}

#[test]
fn a_billion_laughs_is_rejected_at_once() {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        let refs = vec![prev; 9].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text.push_str("Resources:\n  R: {Type: X::Y::Z, Properties: {P: *a9}}\n");
    let started = std::time::Instant::now();
    let err = parse(&text).unwrap_err();
    assert!(matches!(err, TemplateError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("aliases"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn limits_on_size_depth_and_resources() {
    let big = format!("Description: {}\n", "x".repeat(1024 * 1024));
    assert!(matches!(
        parse(&big).unwrap_err(),
        TemplateError::TooLarge { .. }
    ));
    let deep = format!(
        "Resources:\n  R: {{Type: X::Y::Z, Properties: {{P: {}{}}}}}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    let err = parse(&deep).unwrap_err();
    assert!(err.to_string().contains("deeper than 64"), "{err}");
    let deep_json = format!(
        r#"{{"Resources": {{"R": {{"Type": "X::Y::Z", "Properties": {{"P": {}{}}}}}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let err = parse(&deep_json).unwrap_err();
    assert!(err.to_string().contains("deeper than 64"), "{err}");
    let mut many = String::from("Resources:\n");
    for i in 0..501 {
        many.push_str(&format!("  R{i}: {{Type: X::Y::Z}}\n"));
    }
    let err = parse(&many).unwrap_err();
    assert!(err.to_string().contains("at most 500"), "{err}");
}

#[test]
fn structure_errors_name_the_path() {
    let cases: &[(&str, &str)] = &[
        (
            "Foo: 1\nResources:\n  R: {Type: X::Y::Z}\n",
            "Invalid template property or properties [Foo]",
        ),
        (
            "Resources: {}\n",
            "At least one Resources member must be defined.",
        ),
        (
            "Resources:\n  R: {Properties: {}}\n",
            "Resources.R: Every Resources object must contain a Type member.",
        ),
        (
            "Resources:\n  R: {Type: X::Y::Z, Bogus: 1}\n",
            "Resources.R: Invalid template resource property 'Bogus'",
        ),
        (
            "Resources:\n  R-1: {Type: X::Y::Z}\n",
            "Resources.R-1: Resources name R-1 is non alphanumeric",
        ),
        (
            "Resources:\n  R: {Type: X::Y::Z}\nOutputs:\n  O: {Description: d}\n",
            "Outputs.O: Every Outputs member must contain a Value object",
        ),
        (
            "Resources:\n  R: {Type: X::Y::Z, Properties: [1]}\n",
            "Resources.R.Properties: Properties must be a mapping",
        ),
        (
            "Resources:\n  R: {Type: X::Y::Z, Properties: {P: !Bogus x}}\n",
            "unknown tag !Bogus",
        ),
        (
            "Resources:\n  R: {Type: X::Y::Z}\n  R: {Type: X::Y::Z}\n",
            "duplicate mapping key 'R'",
        ),
        ("Resources:\n  R: {Type: X::Y::Z\n", "YAML not well-formed"),
        ("{\"Resources\": ", "JSON not well-formed. (line 1"),
        (
            "---\nResources: {R: {Type: A}}\n---\nResources: {}\n",
            "one YAML document",
        ),
        (
            "Parameters:\n  P: {Type: [1]}\nResources:\n  R: {Type: X::Y::Z}\n",
            "Parameters.P.Type",
        ),
    ];
    for (text, want) in cases {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn transform_and_globals_and_other_sections() {
    let t = parse(
        "Transform: AWS::Serverless-2016-10-31\nGlobals:\n  Function: {Timeout: 3}\nMetadata: {a: 1}\nResources:\n  R: {Type: X::Y::Z}\n",
    )
    .unwrap();
    assert_eq!(t.transform, vec!["AWS::Serverless-2016-10-31".to_owned()]);
    assert_eq!(t.globals, Some(json!({"Function": {"Timeout": 3}})));
    assert_eq!(t.other["Metadata"], json!({"a": 1}));
    assert_eq!(t.resources["R"].properties, json!({}));
}

#[test]
fn very_deep_nesting_is_an_error_not_a_crash() {
    for text in [
        format!("Resources: {}\n", "[".repeat(200_000)),
        format!("{{\"Resources\": {}}}", "[".repeat(200_000)),
        format!("Resources: {}\n", "{a: ".repeat(100_000)),
    ] {
        let err = parse(&text).unwrap_err();
        assert!(
            matches!(
                err,
                TemplateError::Limit { .. } | TemplateError::Syntax { .. }
            ),
            "{err}"
        );
    }
}

#[test]
fn byte_order_mark_and_crlf_line_ends() {
    let yaml = "\u{feff}Resources:\r\n  R:\r\n    Type: X::Y::Z\r\n    Properties:\r\n      Code: |\r\n        a\r\n        b\r\n";
    let t = parse(yaml).unwrap();
    assert_eq!(t.resources["R"].properties, json!({"Code": "a\nb\n"}));
    let json_text = "\u{feff}{\"Resources\": {\"R\": {\"Type\": \"X::Y::Z\"}}}";
    assert_eq!(parse(json_text).unwrap().resources["R"].type_, "X::Y::Z");
}
