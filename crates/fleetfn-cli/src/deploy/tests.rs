//! The engine against fakes: a template source that resolves Ref/GetAtt from what is known, and
//! resource operations that record their calls (and fail on demand). The real API is exercised by
//! the end-to-end tests in tests/templates.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use fleetfn_templates::{Known, Resolved, StackRecord, StackResource, TemplateError};
use serde_json::{Value, json};

use super::apply::{Progress, apply};
use super::code::CodePackage;
use super::plan::{self, Action, Source};
use super::resources::{Applied, Current, Desired, Kind, OpError, Ops};
use super::store::{MemStackStore, StackStore, StoreError};

struct FakeSource {
    resources: Vec<(String, String, Value)>,
}

impl FakeSource {
    fn new(items: &[(&str, &str, Value)]) -> Self {
        Self {
            resources: items
                .iter()
                .map(|(id, t, p)| (id.to_string(), t.to_string(), p.clone()))
                .collect(),
        }
    }

    fn refs(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(id)) = m.get("Ref") {
                    out.insert(id.clone());
                }
                if let Some(Value::Array(a)) = m.get("Fn::GetAtt")
                    && let Some(Value::String(id)) = a.first()
                {
                    out.insert(id.clone());
                }
                m.values().for_each(|v| Self::refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| Self::refs(v, out)),
            _ => {}
        }
    }

    fn resolve(v: &Value, known: &dyn Known, unknowns: &mut Vec<String>) -> Value {
        match v {
            Value::Object(m) if m.len() == 1 && m.contains_key("Ref") => {
                let id = m["Ref"].as_str().unwrap();
                known.physical_id(id).map(Value::String).unwrap_or_else(|| {
                    unknowns.push(id.to_owned());
                    Value::String(format!("{{{{after-deploy:{id}}}}}"))
                })
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("Fn::GetAtt") => {
                let a = m["Fn::GetAtt"].as_array().unwrap();
                let (id, attr) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
                known.attribute(id, attr).unwrap_or_else(|| {
                    unknowns.push(format!("{id}.{attr}"));
                    Value::String(format!("{{{{after-deploy:{id}.{attr}}}}}"))
                })
            }
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), Self::resolve(v, known, unknowns)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|v| Self::resolve(v, known, unknowns))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

impl Source for FakeSource {
    fn order(&self) -> Vec<String> {
        self.resources.iter().map(|r| r.0.clone()).collect()
    }
    fn resource_type(&self, logical_id: &str) -> String {
        self.resources
            .iter()
            .find(|r| r.0 == logical_id)
            .map(|r| r.1.clone())
            .unwrap_or_default()
    }
    fn dependencies(&self, logical_id: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if let Some(r) = self.resources.iter().find(|r| r.0 == logical_id) {
            Self::refs(&r.2, &mut out);
        }
        out
    }
    fn properties(&self, logical_id: &str, known: &dyn Known) -> Result<Resolved, TemplateError> {
        let r = self.resources.iter().find(|r| r.0 == logical_id).unwrap();
        let mut unknowns = Vec::new();
        let properties = Self::resolve(&r.2, known, &mut unknowns);
        Ok(Resolved {
            properties,
            unknowns,
        })
    }
}

#[derive(Default)]
struct FakeOps {
    calls: RefCell<Vec<String>>,
    fail: Option<(&'static str, &'static str)>,
    versions: Cell<u32>,
}

impl FakeOps {
    fn failing(op: &'static str, id: &'static str) -> Self {
        Self {
            fail: Some((op, id)),
            ..Default::default()
        }
    }

    fn call(&self, op: &'static str, id: &str) -> Result<(), OpError> {
        self.calls.borrow_mut().push(format!("{op} {id}"));
        if self.fail == Some((op, id)) || self.fail.is_some_and(|(o, i)| o == op && id == i) {
            return Err(OpError::new(
                "ValidationException",
                format!("{id} is broken"),
            ));
        }
        Ok(())
    }

    fn applied(&self, d: &Desired<'_>) -> Applied {
        let arn = |name: &str| format!("arn:aws:lambda:us-east-1:000000000000:function:{name}");
        match d.kind {
            Kind::Function => {
                let name = d.properties["FunctionName"]
                    .as_str()
                    .unwrap_or(d.generated_name)
                    .to_owned();
                Applied {
                    attributes: BTreeMap::from([
                        ("Arn".into(), json!(arn(&name))),
                        (
                            "CodeSha256".into(),
                            json!(d.code.map(|c| c.sha256.clone()).unwrap_or_default()),
                        ),
                    ]),
                    physical_id: name,
                }
            }
            Kind::Version => {
                self.versions.set(self.versions.get() + 1);
                let n = self.versions.get().to_string();
                let f = d.properties["FunctionName"].as_str().unwrap();
                Applied {
                    physical_id: format!("{}:{n}", arn(f)),
                    attributes: BTreeMap::from([("Version".into(), json!(n))]),
                }
            }
            _ => Applied {
                physical_id: format!("phys-{}", d.logical_id),
                attributes: BTreeMap::from([(
                    "Arn".into(),
                    json!(format!("arn-{}", d.logical_id)),
                )]),
            },
        }
    }
}

impl Ops for FakeOps {
    async fn create(&self, d: &Desired<'_>) -> Result<Applied, OpError> {
        self.call("create", d.logical_id)?;
        Ok(self.applied(d))
    }
    async fn update(&self, d: &Desired<'_>, c: &Current<'_>) -> Result<Applied, OpError> {
        self.call("update", d.logical_id)?;
        let mut a = self.applied(d);
        if d.kind == Kind::Version {
            return Ok(Applied {
                physical_id: c.physical_id.into(),
                attributes: c.attributes.clone(),
            });
        }
        a.physical_id = c.physical_id.to_owned();
        Ok(a)
    }
    async fn delete(&self, c: &Current<'_>) -> Result<(), OpError> {
        self.call("delete", c.logical_id)
    }
    async fn fetch_code(&self, code_sha256: &str) -> Result<CodePackage, OpError> {
        self.calls.borrow_mut().push(format!("fetch {code_sha256}"));
        Ok(CodePackage {
            zip: vec![],
            sha256: code_sha256.into(),
            source: "fake".into(),
        })
    }
}

struct Quiet;
impl Progress for Quiet {
    fn event(&mut self, _: &str, _: &str, _: &str, _: &str) {}
}

/// The plain-CloudFormation LMI stack: role, capacity provider, function, version, alias.
fn lmi_template(env: &str) -> FakeSource {
    FakeSource::new(&[
        (
            "Role",
            "AWS::IAM::Role",
            json!({"AssumeRolePolicyDocument": {"Version": "2012-10-17"}}),
        ),
        (
            "Cp",
            "AWS::Lambda::CapacityProvider",
            json!({
                "VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
                "PermissionsConfig": {"CapacityProviderOperatorRoleArn": {"Fn::GetAtt": ["Role", "Arn"]}}
            }),
        ),
        (
            "Fn",
            "AWS::Lambda::Function",
            json!({
                "Runtime": "python3.13",
                "Handler": "index.handler",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"ZipFile": "def handler(e, c): return 1"},
                "Environment": {"Variables": {"STAGE": env}},
                "CapacityProviderConfig": {"LambdaManagedInstancesCapacityProviderConfig": {
                    "CapacityProviderArn": {"Fn::GetAtt": ["Cp", "Arn"]}
                }}
            }),
        ),
        (
            "Ver",
            "AWS::Lambda::Version",
            json!({"FunctionName": {"Ref": "Fn"}}),
        ),
        (
            "Live",
            "AWS::Lambda::Alias",
            json!({
                "FunctionName": {"Ref": "Fn"},
                "FunctionVersion": {"Fn::GetAtt": ["Ver", "Version"]},
                "Name": "live"
            }),
        ),
        ("Bucket", "AWS::S3::Bucket", json!({})),
        (
            "CDKMetadata",
            "AWS::CDK::Metadata",
            json!({"Analytics": "x"}),
        ),
    ])
}

fn package(_: &str, props: &Value) -> Result<CodePackage, OpError> {
    let text = props["Code"]["ZipFile"].as_str().unwrap_or_default();
    super::code::inline(text, props["Runtime"].as_str())
        .map_err(|e| OpError::validation(e.to_string()))
}

async fn deploy(
    src: &FakeSource,
    ops: &FakeOps,
    previous: &BTreeMap<String, StackResource>,
) -> Result<BTreeMap<String, StackResource>, String> {
    let plan = plan::make(src, previous, false, &mut package).map_err(|e| e.to_string())?;
    apply(ops, src, &plan, previous, "demo", &mut package, &mut Quiet)
        .await
        .map(|o| o.resources)
        .map_err(|f| f.to_string())
}

fn actions(p: &plan::Plan) -> Vec<(String, Action)> {
    p.steps
        .iter()
        .map(|s| (s.logical_id.clone(), s.action))
        .collect()
}

#[tokio::test]
async fn a_new_stack_creates_everything_in_order_and_skips_unknown_types() {
    let src = lmi_template("dev");
    let plan = plan::make(&src, &BTreeMap::new(), false, &mut package).unwrap();
    assert_eq!(
        actions(&plan),
        [
            ("Role".into(), Action::Create),
            ("Cp".into(), Action::Create),
            ("Fn".into(), Action::Create),
            ("Ver".into(), Action::Create),
            ("Live".into(), Action::Create),
            ("Bucket".into(), Action::Skip),
            ("CDKMetadata".into(), Action::Skip),
        ]
    );
    let text = plan.render();
    assert!(
        text.contains("+ Create Fn (AWS::Lambda::Function)"),
        "{text}"
    );
    assert!(text.contains("! Skip (unsupported type) Bucket (AWS::S3::Bucket)"));
    assert!(
        !text.contains("CDKMetadata"),
        "CDK metadata is skipped silently"
    );
    assert_eq!(
        plan.skipped()
            .iter()
            .map(|s| s.logical_id.as_str())
            .collect::<Vec<_>>(),
        ["Bucket"]
    );
    // Unknown references are shown as placeholders until deployed.
    assert_eq!(plan.step("Live").unwrap().unknowns, ["Fn", "Ver.Version"]);
    // The function's code does not depend on anything: packaged when planned.
    assert!(plan.packages.contains_key("Fn"));

    let ops = FakeOps::default();
    let resources = deploy(&src, &ops, &BTreeMap::new()).await.unwrap();
    assert_eq!(
        *ops.calls.borrow(),
        [
            "create Role",
            "create Cp",
            "create Fn",
            "create Ver",
            "create Live"
        ]
    );
    // Generated names: <stack>-<LogicalId>-<12 random>.
    let fname = &resources["Fn"].physical_id;
    assert!(fname.starts_with("demo-Fn-") && fname.len() == "demo-Fn-".len() + 12);
    // What was applied is the resolved properties.
    assert_eq!(
        resources["Live"].properties["FunctionVersion"],
        json!("1"),
        "the alias got the version's number"
    );
    assert_eq!(
        resources["Fn"].properties["Role"],
        resources["Role"].attributes["Arn"]
    );
}

#[tokio::test]
async fn an_environment_change_updates_the_function_publishes_one_version_and_moves_the_alias() {
    let ops = FakeOps::default();
    let first = deploy(&lmi_template("dev"), &ops, &BTreeMap::new())
        .await
        .unwrap();
    let src = lmi_template("prod");
    let plan = plan::make(&src, &first, false, &mut package).unwrap();
    assert_eq!(
        actions(&plan)[..5],
        [
            ("Role".into(), Action::NoChange),
            ("Cp".into(), Action::NoChange),
            ("Fn".into(), Action::Update),
            ("Ver".into(), Action::Replace),
            ("Live".into(), Action::Update),
        ]
    );
    assert_eq!(plan.step("Fn").unwrap().changed, ["Environment"]);
    let text = plan.render();
    assert!(text.contains("~ Update Fn (AWS::Lambda::Function) [changed: Environment]"));
    assert!(text.contains("-/+ Replace Ver (AWS::Lambda::Version)"));
    assert!(!text.contains("prod"), "values are never printed: {text}");

    ops.calls.borrow_mut().clear();
    let second = deploy(&src, &ops, &first).await.unwrap();
    assert_eq!(
        *ops.calls.borrow(),
        ["update Fn", "create Ver", "update Live", "delete Ver"],
        "the old version is deleted after the alias moved; nothing else is touched"
    );
    assert_eq!(second["Live"].properties["FunctionVersion"], json!("2"));
    assert_eq!(second["Role"], first["Role"]);
    assert_eq!(second["Cp"], first["Cp"]);

    // The same template again: nothing to do.
    let plan = plan::make(&src, &second, false, &mut package).unwrap();
    assert!(!plan.has_changes(), "{}", plan.render());
}

#[tokio::test]
async fn a_failure_rolls_back_in_reverse() {
    let ops = FakeOps::default();
    let first = deploy(&lmi_template("dev"), &ops, &BTreeMap::new())
        .await
        .unwrap();
    let ops = FakeOps::failing("update", "Live");
    let err = deploy(&lmi_template("prod"), &ops, &first)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "Resource Live (AWS::Lambda::Alias) failed: ValidationException: Live is broken"
    );
    let sha = first["Fn"].attributes["CodeSha256"].as_str().unwrap();
    assert_eq!(
        *ops.calls.borrow(),
        [
            "update Fn".to_owned(),
            "create Ver".into(),
            "update Live".into(),
            // Rollback: the new version deleted, the function's previous configuration and
            // code restored.
            "delete Ver".into(),
            format!("fetch {sha}"),
            "update Fn".into(),
        ]
    );

    // A new stack that fails deletes what it created.
    let ops = FakeOps::failing("create", "Ver");
    let err = deploy(&lmi_template("dev"), &ops, &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        err.starts_with("Resource Ver (AWS::Lambda::Version) failed"),
        "{err}"
    );
    assert_eq!(
        *ops.calls.borrow(),
        [
            "create Role",
            "create Cp",
            "create Fn",
            "create Ver",
            "delete Fn",
            "delete Cp",
            "delete Role"
        ]
    );
}

#[tokio::test]
async fn what_a_rollback_cannot_undo_is_reported_with_the_resources_left() {
    // The version fails and the function cannot be deleted again.
    #[derive(Default)]
    struct Stubborn(FakeOps);
    impl Ops for Stubborn {
        async fn create(&self, d: &Desired<'_>) -> Result<Applied, OpError> {
            if d.logical_id == "Ver" {
                return Err(OpError::new("FunctionError.RuntimeInitError", "crashed"));
            }
            self.0.create(d).await
        }
        async fn update(&self, d: &Desired<'_>, c: &Current<'_>) -> Result<Applied, OpError> {
            self.0.update(d, c).await
        }
        async fn delete(&self, c: &Current<'_>) -> Result<(), OpError> {
            if c.logical_id == "Fn" {
                return Err(OpError::new("ResourceConflictException", "busy"));
            }
            self.0.delete(c).await
        }
        async fn fetch_code(&self, sha: &str) -> Result<CodePackage, OpError> {
            self.0.fetch_code(sha).await
        }
    }
    let src = lmi_template("dev");
    let plan = plan::make(&src, &BTreeMap::new(), false, &mut package).unwrap();
    let f = apply(
        &Stubborn::default(),
        &src,
        &plan,
        &BTreeMap::new(),
        "demo",
        &mut package,
        &mut Quiet,
    )
    .await
    .unwrap_err();
    assert_eq!(f.logical_id, "Ver");
    assert_eq!(f.rollback_errors.len(), 1, "{:?}", f.rollback_errors);
    assert!(f.rollback_errors[0].starts_with("deleting Fn"));
    assert_eq!(f.leftovers.len(), 1);
    assert_eq!(
        (
            f.leftovers[0].logical_id.as_str(),
            f.leftovers[0].status.as_str()
        ),
        ("Fn", "DELETE_FAILED")
    );
}

#[tokio::test]
async fn strict_refuses_unknown_types_before_anything_is_applied() {
    let src = lmi_template("dev");
    let err = plan::make(&src, &BTreeMap::new(), true, &mut package).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported resource types (--strict): Bucket (AWS::S3::Bucket)"
    );
}

#[test]
fn bad_properties_are_attributed_to_the_logical_id() {
    let src = FakeSource::new(&[(
        "Fn",
        "AWS::Lambda::Function",
        json!({"Role": "r", "Code": {"ZipFile": "x"}, "Runtime": "python3.13", "MemorySise": 128}),
    )]);
    let err = plan::make(&src, &BTreeMap::new(), false, &mut package).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("Resource Fn (AWS::Lambda::Function) failed: ValidationError: ")
            && msg.contains("MemorySise"),
        "{msg}"
    );
    // Parameters give strings where numbers are wanted: accepted, as CloudFormation does.
    let src = FakeSource::new(&[(
        "Fn",
        "AWS::Lambda::Function",
        json!({"Role": "r", "Code": {"ZipFile": "x"}, "Runtime": "python3.13",
               "MemorySize": "1024", "Environment": {"Variables": {"PORT": 8080}}}),
    )]);
    assert!(plan::make(&src, &BTreeMap::new(), false, &mut package).is_ok());
    // A reference to a skipped resource cannot be applied.
    let src = FakeSource::new(&[
        ("Q", "AWS::SQS::Queue", json!({})),
        (
            "Map",
            "AWS::Lambda::EventSourceMapping",
            json!({"FunctionName": "f", "EventSourceArn": {"Fn::GetAtt": ["Q", "Arn"]}}),
        ),
    ]);
    let err = plan::make(&src, &BTreeMap::new(), false, &mut package).unwrap_err();
    assert!(
        err.to_string()
            .contains("it references Q (AWS::SQS::Queue), which fleetfn does not deploy"),
        "{err}"
    );
}

#[tokio::test]
async fn removed_resources_are_deleted_dependents_first_and_renames_replace() {
    let ops = FakeOps::default();
    let first = deploy(&lmi_template("dev"), &ops, &BTreeMap::new())
        .await
        .unwrap();
    // Only the role and the capacity provider remain.
    let src = FakeSource::new(&[
        (
            "Role",
            "AWS::IAM::Role",
            json!({"AssumeRolePolicyDocument": {"Version": "2012-10-17"}}),
        ),
        (
            "Cp",
            "AWS::Lambda::CapacityProvider",
            json!({
                "VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
                "PermissionsConfig": {"CapacityProviderOperatorRoleArn": {"Fn::GetAtt": ["Role", "Arn"]}}
            }),
        ),
    ]);
    ops.calls.borrow_mut().clear();
    let after = deploy(&src, &ops, &first).await.unwrap();
    assert_eq!(
        *ops.calls.borrow(),
        ["delete Live", "delete Ver", "delete Fn"]
    );
    assert_eq!(after.keys().collect::<Vec<_>>(), ["Cp", "Role"]);

    // A custom name that stays while a replacing property changes cannot be replaced.
    let named = |pkg: &str| {
        FakeSource::new(&[(
            "Fn",
            "AWS::Lambda::Function",
            json!({"FunctionName": "fixed", "PackageType": pkg, "Role": "r",
                   "Code": {"ZipFile": "x"}, "Runtime": "python3.13"}),
        )])
    };
    let mut prev = BTreeMap::new();
    prev.insert(
        "Fn".to_owned(),
        StackResource {
            logical_id: "Fn".into(),
            resource_type: "AWS::Lambda::Function".into(),
            physical_id: "fixed".into(),
            properties: json!({"FunctionName": "fixed", "PackageType": "Image", "Role": "r",
                               "Code": {"ZipFile": "x"}, "Runtime": "python3.13"}),
            ..Default::default()
        },
    );
    let err = plan::make(&named("Zip"), &prev, false, &mut package).unwrap_err();
    assert!(
        err.to_string()
            .contains("custom-named resource requires replacing"),
        "{err}"
    );
}

#[test]
fn generated_names_fit_the_limit() {
    let long = "a".repeat(100);
    let n = plan::generate_name(&long, "MyFunction", 64);
    assert_eq!(n.len(), 64);
    assert!(n.starts_with("aaaa"));
    let n = plan::generate_name("demo", "Fn", 64);
    assert!(n.starts_with("demo-Fn-"));
    assert!(
        n["demo-Fn-".len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
    );
    assert_ne!(n, plan::generate_name("demo", "Fn", 64));
}

#[test]
fn stack_names_come_from_the_file() {
    use std::path::Path;
    assert_eq!(
        super::default_stack_name(Path::new("cdk.out/MyStack.template.json")).as_deref(),
        Some("MyStack")
    );
    assert_eq!(
        super::default_stack_name(Path::new("dir/app.yaml")).as_deref(),
        Some("app")
    );
    assert!(super::check_stack_name("my-stack-1").is_ok());
    assert!(super::check_stack_name("1stack").is_err());
    assert!(super::check_stack_name("my_stack").is_err());
}

#[tokio::test]
async fn the_memory_store_checks_revisions() {
    let s = MemStackStore::default();
    let r = StackRecord {
        stack_name: "demo".into(),
        stack_status: "CREATE_COMPLETE".into(),
        ..Default::default()
    };
    let stored = s.put(&r, 0).await.unwrap();
    assert_eq!(stored.revision, 1);
    assert!(matches!(s.put(&r, 0).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.put(&r, 1).await.unwrap().revision, 2);
    assert_eq!(s.list().await.unwrap().len(), 1);
    assert!(matches!(
        s.delete("demo", 1).await,
        Err(StoreError::Conflict(_))
    ));
    s.delete("demo", 2).await.unwrap();
    assert!(s.get("demo").await.unwrap().is_none());
}

#[test]
fn a_resource_whose_type_became_unsupported_is_deleted() {
    let mut prev = BTreeMap::new();
    prev.insert(
        "X".to_owned(),
        StackResource {
            logical_id: "X".into(),
            resource_type: "AWS::Lambda::Permission".into(),
            physical_id: "sid".into(),
            ..Default::default()
        },
    );
    let src = FakeSource::new(&[("X", "AWS::SNS::Topic", json!({}))]);
    let plan = plan::make(&src, &prev, false, &mut package).unwrap();
    assert_eq!(
        actions(&plan),
        [("X".into(), Action::Skip), ("X".into(), Action::Delete)]
    );
}
