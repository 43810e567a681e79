//! Evaluation: parameters, conditions, mappings, every intrinsic, dependency order, cycles, errors.

use std::collections::BTreeMap;

use fleetfn_templates::{Evaluator, Known, NothingKnown, StackContext, TemplateError, parse};
use serde_json::{Value, json};

fn ctx() -> StackContext {
    StackContext {
        stack_name: "demo".into(),
        region: "us-east-1".into(),
        account_id: "123456789012".into(),
        partition: "aws".into(),
        stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/1".into(),
    }
}

fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn evaluator(yaml: &str, pairs: &[(&str, &str)]) -> Result<Evaluator, TemplateError> {
    Evaluator::new(&parse(yaml).unwrap(), ctx(), &overrides(pairs))
}

/// Knows every resource: Ref → "phys-<Id>", GetAtt → "<Id>/<Attr>".
struct AllKnown;
impl Known for AllKnown {
    fn physical_id(&self, id: &str) -> Option<String> {
        Some(format!("phys-{id}"))
    }
    fn attribute(&self, id: &str, attr: &str) -> Option<Value> {
        Some(Value::String(format!("{id}/{attr}")))
    }
}

const INTRINSICS: &str = r#"
Parameters:
  Stage: {Type: String, Default: prod}
  Names: {Type: CommaDelimitedList, Default: "a, b ,c"}
  Sizes: {Type: List<Number>, Default: "1,2"}
  Memory: {Type: Number, Default: 512}
Mappings:
  Regions:
    us-east-1: {Ami: ami-1, Zones: [x, y]}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsProd, !Equals [!Ref Memory, 512]]
  Either: !Or [!Condition IsDev, !Equals ["1", 1]]
Resources:
  Dep:
    Type: X::Y::Z
  R:
    Type: X::Y::Z
    Properties:
      Ref: !Ref Stage
      RefList: !Ref Names
      RefNumbers: !Ref Sizes
      RefNumber: !Ref Memory
      Region: !Ref AWS::Region
      Account: !Ref AWS::AccountId
      StackName: !Ref AWS::StackName
      StackId: !Ref AWS::StackId
      Partition: !Ref AWS::Partition
      Suffix: !Ref AWS::URLSuffix
      RefRes: !Ref Dep
      GetAtt: !GetAtt Dep.Arn
      GetAttParamAttr: !GetAtt [Dep, !Ref Stage]
      Sub: !Sub "${AWS::StackName}-${Stage}-${Dep}-${Dep.Arn}-${!Literal}-${ Stage }"
      SubVars: !Sub ["${x}/${Stage}", {x: !Ref Memory}]
      Join: !Join [":", [a, !Ref Stage, 3]]
      JoinList: !Join ["|", !Ref Names]
      Select: !Select ["1", !Ref Names]
      SelectNum: !Select [0, [p, q]]
      Split: !Split [",", "a,,b"]
      SelectSplit: !Select [2, !Split ["-", !Sub "${AWS::Region}"]]
      If: !If [IsProd, yes-prod, no-prod]
      NoValueKey: !If [IsDev, x, !Ref AWS::NoValue]
      NoValueList: [a, !If [IsDev, x, !Ref AWS::NoValue], b]
      FindInMap: !FindInMap [Regions, !Ref AWS::Region, Ami]
      FindInMapList: !FindInMap [Regions, us-east-1, Zones]
      FindInMapDefault: !FindInMap [Regions, eu-west-1, Ami, {DefaultValue: fallback}]
      Base64: !Base64 hello
      GetAZs: !GetAZs ""
      GetAZsRegion: !GetAZs eu-west-1
      Conds: [!If [Both, both, no], !If [Either, either, no], !If [IsDev, dev, notdev]]
      Nested: {Deep: [{Ref: Stage}]}
"#;

#[test]
fn every_intrinsic_evaluates() {
    let ev = evaluator(INTRINSICS, &[]).unwrap();
    let r = ev.properties("R", &AllKnown).unwrap();
    assert!(r.unknowns.is_empty());
    assert_eq!(
        r.properties,
        json!({
            "Ref": "prod",
            "RefList": ["a", "b", "c"],
            "RefNumbers": ["1", "2"],
            "RefNumber": "512",
            "Region": "us-east-1",
            "Account": "123456789012",
            "StackName": "demo",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/1",
            "Partition": "aws",
            "Suffix": "amazonaws.com",
            "RefRes": "phys-Dep",
            "GetAtt": "Dep/Arn",
            "GetAttParamAttr": "Dep/prod",
            "Sub": "demo-prod-phys-Dep-Dep/Arn-${Literal}-prod",
            "SubVars": "512/prod",
            "Join": "a:prod:3",
            "JoinList": "a|b|c",
            "Select": "b",
            "SelectNum": "p",
            "Split": ["a", "", "b"],
            "SelectSplit": "1",
            "If": "yes-prod",
            "NoValueList": ["a", "b"],
            "FindInMap": "ami-1",
            "FindInMapList": ["x", "y"],
            "FindInMapDefault": "fallback",
            "Base64": "aGVsbG8=",
            "GetAZs": ["us-east-1a", "us-east-1b", "us-east-1c"],
            "GetAZsRegion": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
            "Conds": ["both", "either", "notdev"],
            "Nested": {"Deep": ["prod"]},
        })
    );
    assert_eq!(ev.order(), ["Dep", "R"]);
    assert_eq!(ev.dependencies("R").iter().collect::<Vec<_>>(), vec!["Dep"]);
    assert_eq!(ev.condition("IsDev"), Some(false));
}

#[test]
fn unknown_references_become_after_deploy_placeholders() {
    let ev = evaluator(INTRINSICS, &[]).unwrap();
    let r = ev.properties("R", &NothingKnown).unwrap();
    assert_eq!(r.properties["RefRes"], "{{after-deploy:Dep}}");
    assert_eq!(r.properties["GetAtt"], "{{after-deploy:Dep.Arn}}");
    assert_eq!(
        r.properties["Sub"],
        "demo-prod-{{after-deploy:Dep}}-{{after-deploy:Dep.Arn}}-${Literal}-prod"
    );
    assert_eq!(r.unknowns, vec!["Dep.Arn", "Dep.prod", "Dep"]);
}

fn eval_err(yaml: &str, pairs: &[(&str, &str)]) -> String {
    let ev = match evaluator(yaml, pairs) {
        Ok(ev) => ev,
        Err(e) => return e.to_string(),
    };
    match ev.properties("R", &NothingKnown) {
        Ok(r) => panic!("no error: {}", r.properties),
        Err(e) => e.to_string(),
    }
}

fn with_props(props: &str) -> String {
    format!(
        "Parameters:\n  P: {{Type: String, Default: v}}\nMappings:\n  M: {{a: {{b: c}}}}\nConditions:\n  C: !Equals [a, a]\nResources:\n  R:\n    Type: X::Y::Z\n    Properties:\n      {props}\n"
    )
}

#[test]
fn intrinsic_errors_name_the_path_and_what_to_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "Environment: !Join [\",\"]",
            "Resources.R.Properties.Environment: Fn::Join requires a list of two elements",
        ),
        (
            "X: !Join [\",\", !Ref P]",
            "Fn::Join's second element must be a list",
        ),
        ("X: !Join [\",\", [[a]]]", "Fn::Join can only join strings"),
        (
            "X: !Select [5, [a, b]]",
            "Fn::Select cannot select nonexistent value at index 5",
        ),
        (
            "X: !Select [-1, [a]]",
            "Fn::Select's index must be a non-negative integer",
        ),
        (
            "X: !Split [\"\", abc]",
            "Fn::Split's delimiter must be a non-empty string",
        ),
        ("X: !If [Nope, a, b]", "Condition 'Nope' is not defined"),
        ("X: !If [C, a]", "Fn::If requires a list of three elements"),
        (
            "X: !FindInMap [M, a, z]",
            "Unable to get mapping for M::a::z",
        ),
        (
            "X: !FindInMap [Nope, a, b]",
            "Mapping named 'Nope' is not present",
        ),
        ("X: !ImportValue shared", "Fn::ImportValue is not supported"),
        ("X: !Cidr [10.0.0.0/16, 2, 8]", "Fn::Cidr is not supported"),
        (
            "X: !Sub [\"${a}\", {a: [1]}]",
            "an Fn::Sub variable must be a string",
        ),
        ("X: {Fn::Sub: 5}", "Fn::Sub takes a string"),
        (
            "X: !GetAtt [P, Arn]",
            "Fn::GetAtt needs a resource; P is a parameter",
        ),
        ("X: !Ref AWS::Bogus", "AWS::Bogus is not a pseudo parameter"),
        (
            "X: {Fn::GetAtt: Nodot}",
            "Fn::GetAtt requires Resource.Attribute",
        ),
    ];
    for (props, want) in cases {
        let err = eval_err(&with_props(props), &[]);
        assert!(err.contains(want), "{props}: {err}");
    }
}

#[test]
fn references_to_missing_resources_are_unresolved_dependencies() {
    for props in [
        "X: !Ref Missing",
        "X: !GetAtt Missing.Arn",
        "X: !Sub \"${Missing}\"",
        "X: !Sub \"${Missing.Arn}\"",
    ] {
        let err = eval_err(&with_props(props), &[]);
        assert_eq!(
            err,
            "Template format error: Unresolved resource dependencies [Missing] in the Resources block of the template",
            "{props}"
        );
    }
    let err = evaluator(
        "Resources:\n  R: {Type: X::Y::Z, DependsOn: [Gone, Away]}\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err,
        TemplateError::UnresolvedDependencies(vec!["Away".into(), "Gone".into()])
    );
    let err = evaluator(
        "Resources:\n  R: {Type: X::Y::Z}\nOutputs:\n  O: {Value: !Ref Nope}\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Template format error: Unresolved resource dependencies [Nope] in the Outputs block of the template"
    );
}

#[test]
fn parameters_are_checked_like_cloudformation() {
    let t = r#"
Parameters:
  Env: {Type: String, AllowedValues: [prod, dev], Default: dev}
  Name: {Type: String, AllowedPattern: "[a-z]+", MinLength: 2, MaxLength: 5, Default: abc}
  Size: {Type: Number, MinValue: 1, MaxValue: 10, Default: 5}
  Secret: {Type: String, NoEcho: true}
  Sizes: {Type: List<Number>, Default: "1,2"}
  Desc: {Type: String, Default: x, AllowedPattern: "[0-9]+", ConstraintDescription: digits only}
  Subnet: {Type: "AWS::EC2::Subnet::Id", Default: subnet-1}
  Subnets: {Type: "List<AWS::EC2::Subnet::Id>", Default: "subnet-1, subnet-2"}
  Ssm: {Type: "AWS::SSM::Parameter::Value<String>", Default: /my/param}
  Password: {Type: String, Default: Abc1, AllowedPattern: "(?=.*[A-Z]).{4,}"}
Resources:
  R: {Type: X::Y::Z}
"#;
    let ok = [("Secret", "s3cret"), ("Desc", "123")];
    let ev = evaluator(t, &ok).unwrap();
    let values = ev.parameter_values();
    assert_eq!(values["Secret"].display(), "****");
    assert!(values["Secret"].no_echo);
    assert_eq!(values["Secret"].value, "s3cret");
    assert_eq!(values["Env"].display(), "dev");
    assert!(values["Env"].from_default);
    assert_eq!(values["Subnets"].value, json!(["subnet-1", "subnet-2"]));
    assert_eq!(values["Subnet"].value, "subnet-1");
    assert_eq!(values["Ssm"].value, "/my/param");
    let warnings = ev.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("Password: AllowedPattern is not checked"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("no SSM Parameter Store"),
        "{warnings:?}"
    );

    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("Desc", "1")], "Parameters: [Secret] must have values"),
        (
            &[("Secret", "s"), ("Desc", "1"), ("Nope", "x"), ("Also", "y")],
            "Parameters: [Also, Nope] do not exist in the template",
        ),
        (
            &[("Secret", "s"), ("Desc", "1"), ("Env", "qa")],
            "Parameter 'Env' must be one of AllowedValues",
        ),
        (
            &[("Secret", "s"), ("Desc", "1"), ("Name", "ABC")],
            "Parameter 'Name' must match pattern [a-z]+",
        ),
        (
            &[("Secret", "s"), ("Desc", "1"), ("Name", "a")],
            "Parameter 'Name' must contain at least 2 characters",
        ),
        (
            &[("Secret", "s"), ("Desc", "1"), ("Name", "abcdef")],
            "Parameter 'Name' must contain at most 5 characters",
        ),
        (
            &[("Secret", "s"), ("Desc", "1"), ("Size", "big")],
            "Parameter 'Size' must be a number",
        ),
        (
            &[("Secret", "s"), ("Desc", "1"), ("Size", "0")],
            "Parameter 'Size' must be a number not less than 1",
        ),
        (
            &[("Secret", "s"), ("Desc", "1"), ("Size", "11")],
            "Parameter 'Size' must be a number not greater than 10",
        ),
        (
            &[("Secret", "s"), ("Desc", "1"), ("Sizes", "1,x")],
            "Parameter 'Sizes' must be a number",
        ),
        (
            &[("Secret", "s"), ("Desc", "x")],
            "Parameter 'Desc' failed to satisfy constraint: digits only",
        ),
    ];
    for (pairs, want) in cases {
        let err = evaluator(t, pairs).unwrap_err().to_string();
        assert_eq!(&err, want, "{pairs:?}");
    }
    let err = evaluator(
        "Parameters:\n  P: {Type: Strng, Default: x}\nResources:\n  R: {Type: X::Y::Z}\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("Parameters.P.Type: Unrecognized parameter type: Strng"),
        "{err}"
    );
}

#[test]
fn conditions_exclude_resources_and_outputs() {
    let t = r#"
Parameters:
  Env: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
Resources:
  Always: {Type: X::Y::Z}
  ProdOnly:
    Type: X::Y::Z
    Condition: IsProd
  Guarded:
    Type: X::Y::Z
    Properties:
      P: !If [IsProd, !Ref ProdOnly, !Ref AWS::NoValue]
Outputs:
  ProdOut:
    Condition: IsProd
    Value: !GetAtt ProdOnly.Arn
  Out:
    Value: !Ref Always
    Description: d
    Export: {Name: !Sub "${AWS::StackName}-out"}
"#;
    let ev = evaluator(t, &[]).unwrap();
    assert_eq!(ev.order(), ["Always", "Guarded"]);
    assert!(ev.resource("ProdOnly").is_none());
    assert_eq!(
        ev.properties("Guarded", &AllKnown).unwrap().properties,
        json!({})
    );
    let outs = ev.outputs(&AllKnown).unwrap();
    assert_eq!(outs.keys().collect::<Vec<_>>(), vec!["Out"]);
    assert_eq!(outs["Out"].value, "phys-Always");
    assert_eq!(outs["Out"].export_name.as_deref(), Some("demo-out"));
    assert_eq!(outs["Out"].description.as_deref(), Some("d"));
    let unknown = ev.outputs(&NothingKnown).unwrap();
    assert_eq!(unknown["Out"].unknowns, vec!["Always"]);

    let ev = evaluator(t, &[("Env", "prod")]).unwrap();
    assert_eq!(ev.order(), ["Always", "ProdOnly", "Guarded"]);
    assert_eq!(
        ev.properties("Guarded", &AllKnown).unwrap().properties,
        json!({"P": "phys-ProdOnly"})
    );
    assert_eq!(
        ev.outputs(&AllKnown).unwrap()["ProdOut"].value,
        "ProdOnly/Arn"
    );

    // An unguarded reference to an excluded resource is an error.
    let bad = t.replace(
        "!If [IsProd, !Ref ProdOnly, !Ref AWS::NoValue]",
        "!Ref ProdOnly",
    );
    assert_eq!(
        evaluator(&bad, &[]).unwrap_err(),
        TemplateError::UnresolvedDependencies(vec!["ProdOnly".into()])
    );
}

#[test]
fn condition_errors() {
    let cycle = "Conditions:\n  A: !Condition B\n  B: !Not [!Condition A]\nResources:\n  R: {Type: X::Y::Z}\n";
    assert_eq!(
        evaluator(cycle, &[]).unwrap_err().to_string(),
        "Template format error: Circular dependency between conditions: [A, B]"
    );
    let undefined = "Resources:\n  R: {Type: X::Y::Z, Condition: Nope}\n";
    let err = evaluator(undefined, &[]).unwrap_err().to_string();
    assert!(
        err.contains("Resources.R.Condition: Condition 'Nope' is not defined"),
        "{err}"
    );
    let resource_ref = "Conditions:\n  A: !Equals [!Ref R, x]\nResources:\n  R: {Type: X::Y::Z}\n";
    let err = evaluator(resource_ref, &[]).unwrap_err().to_string();
    assert!(
        err.contains("Cannot reference resources in the Conditions block"),
        "{err}"
    );
    let bad = "Conditions:\n  A: !Equals [a]\nResources:\n  R: {Type: X::Y::Z}\n";
    let err = evaluator(bad, &[]).unwrap_err().to_string();
    assert!(
        err.contains("Conditions.A.Fn::Equals: Fn::Equals requires a list of two values"),
        "{err}"
    );
    let not_a_condition = "Conditions:\n  A: x\nResources:\n  R: {Type: X::Y::Z}\n";
    let err = evaluator(not_a_condition, &[]).unwrap_err().to_string();
    assert!(err.contains("a condition is Fn::Equals"), "{err}");
}

#[test]
fn order_is_topological_and_deterministic() {
    let t = r#"
Resources:
  Zeta: {Type: X::Y::Z}
  Alpha:
    Type: X::Y::Z
    Properties: {P: !GetAtt Zeta.Arn}
  Mid:
    Type: X::Y::Z
    DependsOn: Alpha
  Beta:
    Type: X::Y::Z
    Properties: {P: !Sub "${Mid}"}
  Gamma: {Type: X::Y::Z}
"#;
    let ev = evaluator(t, &[]).unwrap();
    assert_eq!(ev.order(), ["Gamma", "Zeta", "Alpha", "Mid", "Beta"]);
    assert_eq!(
        evaluator(t, &[]).unwrap().order(),
        ev.order(),
        "same order every time"
    );
}

#[test]
fn cycles_name_the_resources_on_them() {
    let t = r#"
Resources:
  A:
    Type: X::Y::Z
    Properties: {P: !Ref B}
  B:
    Type: X::Y::Z
    Properties: {P: !GetAtt A.Arn}
  C:
    Type: X::Y::Z
    Properties: {P: !Ref A}
  D: {Type: X::Y::Z}
"#;
    let err = evaluator(t, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Circular dependency between resources: [A, B]"
    );
    let own = "Resources:\n  S:\n    Type: X::Y::Z\n    Properties: {P: !Sub \"${S.Arn}\"}\n";
    assert_eq!(
        evaluator(own, &[]).unwrap_err(),
        TemplateError::CircularDependency(vec!["S".into()])
    );
    let depends =
        "Resources:\n  A: {Type: X::Y::Z, DependsOn: B}\n  B: {Type: X::Y::Z, DependsOn: A}\n";
    assert_eq!(
        evaluator(depends, &[]).unwrap_err(),
        TemplateError::CircularDependency(vec!["A".into(), "B".into()])
    );
}

#[test]
fn amplification_by_nesting_is_bounded() {
    // Each level doubles the previous one: 2^19 * 40 bytes (20 MiB) if nothing stopped it; the
    // nesting stays within the depth limit.
    let mut value =
        String::from("!Sub [\"${x}${x}\", {x: 0123456789012345678901234567890123456789}]");
    for _ in 0..19 {
        value = format!("!Sub [\"${{x}}${{x}}\", {{x: {value}}}]");
    }
    let t = format!("Resources:\n  R:\n    Type: X::Y::Z\n    Properties:\n      P: {value}\n");
    let ev = evaluator(&t, &[]);
    let err = match ev {
        Err(e) => e,
        Ok(ev) => ev.properties("R", &NothingKnown).unwrap_err(),
    };
    assert!(matches!(err, TemplateError::Limit { .. }), "{err}");
    assert!(err.to_string().contains("more than"), "{err}");
}

#[test]
fn ignored_sections_are_reported() {
    let ev = evaluator(
        "Metadata: {a: 1}\nRules:\n  R1: {Assertions: []}\nResources:\n  R: {Type: X::Y::Z}\n",
        &[],
    )
    .unwrap();
    assert_eq!(ev.warnings().len(), 1);
    assert!(
        ev.warnings()[0].contains("Rules section is ignored"),
        "{:?}",
        ev.warnings()
    );
}

#[test]
fn deep_condition_chains_are_bounded() {
    let mut t = String::from("Conditions:\n  C0: !Equals [a, a]\n");
    for i in 1..200 {
        t.push_str(&format!("  C{i}: !Not [!Condition C{}]\n", i - 1));
    }
    t.push_str("Resources:\n  R: {Type: X::Y::Z, Condition: C199}\n");
    let err = evaluator(&t, &[]).unwrap_err();
    assert!(matches!(err, TemplateError::Limit { .. }), "{err}");
    // A reasonable chain is fine.
    let mut t = String::from("Conditions:\n  C0: !Equals [a, a]\n");
    for i in 1..=20 {
        t.push_str(&format!("  C{i}: !Not [!Condition C{}]\n", i - 1));
    }
    t.push_str("Resources:\n  R: {Type: X::Y::Z, Condition: C20}\n");
    let ev = evaluator(&t, &[]).unwrap();
    assert_eq!(ev.order(), ["R"]);
}

/// The shape `cdk synth` emits: bootstrap SSM parameter, Rules, CDK metadata under a region
/// condition, an asset in the bootstrap bucket, a role referenced by ARN.
const CDK: &str = r#"{
 "Resources": {
  "FnServiceRoleB9001A96": {
   "Type": "AWS::IAM::Role",
   "Properties": {
    "AssumeRolePolicyDocument": {"Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow",
      "Principal": {"Service": "lambda.amazonaws.com"}}], "Version": "2012-10-17"},
    "ManagedPolicyArns": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
      ":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]]}]
   },
   "Metadata": {"aws:cdk:path": "Demo/Fn/ServiceRole/Resource"}
  },
  "Fn9270CBC0": {
   "Type": "AWS::Lambda::Function",
   "Properties": {
    "Code": {"S3Bucket": {"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}"},
             "S3Key": "0f1e2d.zip"},
    "Handler": "index.handler",
    "Role": {"Fn::GetAtt": ["FnServiceRoleB9001A96", "Arn"]},
    "Runtime": "nodejs22.x"
   },
   "DependsOn": ["FnServiceRoleB9001A96"],
   "Metadata": {"aws:cdk:path": "Demo/Fn/Resource", "aws:asset:path": "asset.0f1e2d",
                "aws:asset:is-bundled": false, "aws:asset:property": "Code"}
  },
  "CDKMetadata": {
   "Type": "AWS::CDK::Metadata",
   "Properties": {"Analytics": "v2:deflate64:H4sIAAAAAAAA"},
   "Metadata": {"aws:cdk:path": "Demo/CDKMetadata/Default"},
   "Condition": "CDKMetadataAvailable"
  }
 },
 "Conditions": {
  "CDKMetadataAvailable": {"Fn::Or": [
   {"Fn::Or": [{"Fn::Equals": [{"Ref": "AWS::Region"}, "af-south-1"]},
               {"Fn::Equals": [{"Ref": "AWS::Region"}, "ap-east-1"]}]},
   {"Fn::Or": [{"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]},
               {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-west-2"]}]}
  ]}
 },
 "Parameters": {
  "BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>",
   "Default": "/cdk-bootstrap/hnb659fds/version",
   "Description": "Version of the CDK Bootstrap resources in this environment, automatically retrieved from SSM Parameter Store. [cdk:skip]"}
 },
 "Rules": {
  "CheckBootstrapVersion": {"Assertions": [{"Assert": {"Fn::Not": [{"Fn::Contains": [["1", "2"],
    {"Ref": "BootstrapVersion"}]}]}, "AssertDescription": "CDK bootstrap stack version 6 required."}]}
 }
}"#;

#[test]
fn a_cdk_synthesized_template_evaluates() {
    let ev = evaluator(CDK, &[]).unwrap();
    assert_eq!(
        ev.order(),
        ["CDKMetadata", "FnServiceRoleB9001A96", "Fn9270CBC0"]
    );
    let f = ev.properties("Fn9270CBC0", &NothingKnown).unwrap();
    assert_eq!(
        f.properties["Code"],
        json!({"S3Bucket": "cdk-hnb659fds-assets-123456789012-us-east-1", "S3Key": "0f1e2d.zip"})
    );
    assert_eq!(
        f.properties["Role"],
        "{{after-deploy:FnServiceRoleB9001A96.Arn}}"
    );
    let role = ev
        .properties("FnServiceRoleB9001A96", &NothingKnown)
        .unwrap();
    assert_eq!(
        role.properties["ManagedPolicyArns"],
        json!(["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"])
    );
    assert_eq!(
        ev.resource("Fn9270CBC0")
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()["aws:asset:path"],
        "asset.0f1e2d"
    );
    let warnings = ev.warnings().join("\n");
    assert!(warnings.contains("Rules section is ignored"), "{warnings}");
    assert!(warnings.contains("BootstrapVersion"), "{warnings}");
    // In a region outside the list, the metadata resource is left out.
    let mut c = ctx();
    c.region = "eu-central-1".into();
    let ev = Evaluator::new(&parse(CDK).unwrap(), c, &BTreeMap::new()).unwrap();
    assert_eq!(ev.order(), ["FnServiceRoleB9001A96", "Fn9270CBC0"]);
}
