//! Lambda layers: PublishLayerVersion, GetLayerVersion(ByArn), ListLayers, ListLayerVersions,
//! DeleteLayerVersion and the layer version permissions (Add/RemoveLayerVersionPermission,
//! GetLayerVersionPolicy), and the resolution of a function's `Layers` into snapshots.
//!
//! A layer's zip is a package like a function's code: content-addressed in the artifact store
//! (and the store's `packages` table under `fleetfn server`), so joined agents fetch it by
//! digest like code. Packages are never removed, so a deleted layer version keeps running in
//! the function versions that snapshotted it ([`LayerSnapshot`]), as on AWS.

use fleetfn_model::layers::{
    AddLayerVersionPermissionRequest, AddLayerVersionPermissionResponse,
    GetLayerVersionPolicyResponse, LAYER_RUNTIMES, Layer, LayerFilter, LayerVersionArn,
    LayerVersionContentOutput, LayerVersionResponse, LayerVersionsListItem, LayersListItem,
    MAX_COMPATIBLE_ARCHITECTURES, MAX_COMPATIBLE_RUNTIMES, MAX_FUNCTION_LAYERS,
    PublishLayerVersionRequest, is_aws_managed_layer_arn, parse_layer_name,
};
use fleetfn_model::limits::MAX_UNZIPPED_BYTES;
use fleetfn_model::policy::{Conditions, Effect, PolicyDocument, PolicyStatement, Principal};
use fleetfn_model::time::now_lambda;
use fleetfn_model::{ErrorKind, LambdaError, Result};
use fleetfn_store::{Expect, Op, Table};
use serde::{Deserialize, Serialize};

use crate::functions::decode_zip;
use crate::permissions::MAX_POLICY_BYTES;
use crate::records::{FunctionRecord, LayerSnapshot, layer_version_key};
use crate::service::{ControlPlane, Page, RACE_ATTEMPTS, new_revision_id};
use crate::validate;

/// How many times PublishLayerVersion retries after another publish of the layer took the
/// number it read.
const PUBLISH_ATTEMPTS: usize = 100;

/// A layer: the number its next version gets (kept after its versions are deleted, so a
/// number is never reused).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub next_version: u64,
}

/// A layer version's permissions policy and its revision id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerPolicy {
    pub revision_id: String,
    pub document: PolicyDocument,
}

/// A published layer version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerVersionRecord {
    pub name: String,
    pub version: u64,
    pub description: String,
    pub created_date: String,
    #[serde(default)]
    pub compatible_runtimes: Vec<String>,
    #[serde(default)]
    pub compatible_architectures: Vec<String>,
    #[serde(default)]
    pub license_info: Option<String>,
    pub code_hex: String,
    /// Base64 sha256 (`CodeSha256`).
    pub code_sha256: String,
    pub code_size: u64,
    pub unzipped: u64,
    #[serde(default)]
    pub policy: Option<LayerPolicy>,
}

impl LayerVersionRecord {
    fn matches(&self, f: &LayerFilter) -> bool {
        f.compatible_runtime
            .as_ref()
            .is_none_or(|r| self.compatible_runtimes.contains(r))
            && f.compatible_architecture
                .as_ref()
                .is_none_or(|a| self.compatible_architectures.contains(a))
    }

    fn list_item(&self, cp: &ControlPlane) -> LayerVersionsListItem {
        LayerVersionsListItem {
            layer_version_arn: cp.scope.layer_version_arn(&self.name, self.version),
            version: self.version,
            description: self.description.clone(),
            created_date: self.created_date.clone(),
            compatible_runtimes: self.compatible_runtimes.clone(),
            compatible_architectures: self.compatible_architectures.clone(),
            license_info: self.license_info.clone(),
        }
    }

    fn response(&self, cp: &ControlPlane) -> LayerVersionResponse {
        LayerVersionResponse {
            content: LayerVersionContentOutput {
                location: format!("fleetfn://artifacts/sha256/{}", self.code_hex),
                code_sha256: self.code_sha256.clone(),
                code_size: self.code_size,
            },
            layer_arn: cp.scope.layer_arn(&self.name),
            layer_version_arn: cp.scope.layer_version_arn(&self.name, self.version),
            description: self.description.clone(),
            created_date: self.created_date.clone(),
            version: self.version,
            compatible_runtimes: self.compatible_runtimes.clone(),
            compatible_architectures: self.compatible_architectures.clone(),
            license_info: self.license_info.clone(),
        }
    }

    fn snapshot(&self, arn: String) -> LayerSnapshot {
        LayerSnapshot {
            arn,
            sha256_hex: self.code_hex.clone(),
            size: self.code_size,
            unzipped: self.unzipped,
        }
    }
}

/// The wire form of a function's layers: `None` when it has none.
pub(crate) fn wire_layers(layers: &[LayerSnapshot]) -> Option<Vec<Layer>> {
    (!layers.is_empty()).then(|| {
        layers
            .iter()
            .map(|l| Layer {
                arn: l.arn.clone(),
                code_size: l.size,
            })
            .collect()
    })
}

/// The message of a function whose code and layers are too large unzipped, as AWS words it.
pub(crate) fn too_large_with_layers(total: u64) -> LambdaError {
    LambdaError::invalid(format!(
        "Function code combined with layers exceeds the maximum allowed size of {MAX_UNZIPPED_BYTES} bytes. The actual size is {total} bytes."
    ))
}

fn version_not_found(cp: &ControlPlane, name: &str, version: u64) -> LambdaError {
    LambdaError::not_found(format!(
        "Layer version {} does not exist. List the layer's versions with ListLayerVersions.",
        cp.scope.layer_version_arn(name, version)
    ))
}

fn no_policy() -> LambdaError {
    LambdaError::not_found(
        "No policy is associated with the given resource. Add one with AddLayerVersionPermission.",
    )
}

const REVISION_MISMATCH: &str = "The Revision Id provided does not match the latest Revision Id. Call the GetLayerVersionPolicy API to retrieve the latest Revision Id";

fn pattern_err(v: &str, path: &str, re: &str) -> LambdaError {
    LambdaError::validation(
        v,
        path,
        &format!("Member must satisfy regular expression pattern: {re}"),
    )
}

fn check_runtimes(v: &[String], path: &str) -> Result<()> {
    if v.len() > MAX_COMPATIBLE_RUNTIMES {
        return Err(LambdaError::validation(
            &format!("{v:?}"),
            path,
            &format!("Member must have length less than or equal to {MAX_COMPATIBLE_RUNTIMES}"),
        ));
    }
    for r in v {
        validate::one_of(r, &format!("{path}.member"), LAYER_RUNTIMES)?;
    }
    Ok(())
}

fn check_architectures(v: &[String], path: &str) -> Result<()> {
    if v.len() > MAX_COMPATIBLE_ARCHITECTURES {
        return Err(LambdaError::validation(
            &format!("{v:?}"),
            path,
            &format!(
                "Member must have length less than or equal to {MAX_COMPATIBLE_ARCHITECTURES}"
            ),
        ));
    }
    for a in v {
        validate::one_of(a, &format!("{path}.member"), &["x86_64", "arm64"])?;
    }
    Ok(())
}

/// Checks the filters of ListLayers/ListLayerVersions.
fn check_filter(f: &LayerFilter) -> Result<()> {
    if let Some(r) = &f.compatible_runtime {
        validate::one_of(r, "compatibleRuntime", LAYER_RUNTIMES)?;
    }
    if let Some(a) = &f.compatible_architecture {
        validate::one_of(a, "compatibleArchitecture", &["x86_64", "arm64"])?;
    }
    Ok(())
}

fn max_items(m: Option<u32>) -> Result<usize> {
    match m {
        None => Ok(50),
        Some(m) => {
            validate::int_between(i64::from(m), "maxItems", 1, 50)?;
            Ok(m as usize)
        }
    }
}

/// `StatementId`: `([a-zA-Z0-9-_]+)`, 1–100 characters.
fn check_statement_id(v: &str) -> Result<()> {
    validate::len_between(v, "statementId", 1, 100)?;
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(pattern_err(v, "statementId", "([a-zA-Z0-9-_]+)"))
    }
}

/// The statement AddLayerVersionPermission adds, as AWS writes it.
fn layer_statement(
    req: &AddLayerVersionPermissionRequest,
    resource: String,
) -> Result<PolicyStatement> {
    let sid = validate::required(&req.statement_id, "statementId")?;
    check_statement_id(sid)?;
    let action = validate::required(&req.action, "action")?;
    validate::len_between(action, "action", 0, 22)?;
    if action != "lambda:GetLayerVersion" {
        return Err(pattern_err(action, "action", "lambda:GetLayerVersion"));
    }
    let p = validate::required(&req.principal, "principal")?;
    const PRINCIPAL_RE: &str = "\\d{12}|\\*|arn:(aws[a-zA-Z-]*):iam::\\d{12}:root";
    let is_account = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
    let principal = if p == "*" {
        Principal::Literal("*".into())
    } else if is_account(p) {
        Principal::Aws {
            aws: format!("arn:aws:iam::{p}:root"),
        }
    } else if let Some(rest) = p.strip_prefix("arn:")
        && let [partition, "iam", "", account, "root"] =
            rest.split(':').collect::<Vec<_>>().as_slice()
        && partition.starts_with("aws")
        && is_account(account)
    {
        Principal::Aws { aws: p.clone() }
    } else {
        return Err(pattern_err(p, "principal", PRINCIPAL_RE));
    };
    let mut condition = None;
    if let Some(o) = &req.organization_id {
        validate::len_between(o, "organizationId", 0, 34)?;
        let ok = o.strip_prefix("o-").is_some_and(|r| {
            (10..=32).contains(&r.len())
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if !ok {
            return Err(pattern_err(o, "organizationId", "o-[a-z0-9]{10,32}"));
        }
        if p != "*" {
            return Err(LambdaError::invalid(
                "OrganizationId can only be given with Principal '*' (every account of the organization); remove OrganizationId to grant one account, or set Principal to '*'.",
            ));
        }
        let mut c = Conditions::new();
        c.entry("StringEquals".into())
            .or_default()
            .insert("aws:PrincipalOrgID".into(), o.clone());
        condition = Some(c);
    }
    Ok(PolicyStatement {
        sid: sid.clone(),
        effect: Effect::Allow,
        principal,
        action: action.clone(),
        resource,
        condition,
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| LambdaError::service(format!("encoding a policy: {e}")))
}

impl ControlPlane {
    /// A layer version record and its store revision, or `ResourceNotFoundException`.
    async fn layer_version(&self, name: &str, version: u64) -> Result<(LayerVersionRecord, i64)> {
        self.get_record(Table::LayerVersions, &layer_version_key(name, version))
            .await?
            .ok_or_else(|| version_not_found(self, name, version))
    }

    /// Every version of a layer, oldest first.
    async fn layer_versions_of(&self, name: &str) -> Result<Vec<LayerVersionRecord>> {
        Ok(self
            .list_records::<LayerVersionRecord>(
                Table::LayerVersions,
                &format!("{name}/"),
                None,
                100_000,
            )
            .await?
            .into_iter()
            .map(|(v, _, _)| v)
            .collect())
    }

    /// PublishLayerVersion: stores the zip and creates the next version of the layer (the
    /// layer is created with its first version).
    pub async fn publish_layer_version(
        &self,
        layer_name: &str,
        req: PublishLayerVersionRequest,
    ) -> Result<LayerVersionResponse> {
        let name = parse_layer_name(layer_name, &self.scope)?;
        let content = validate::required(&req.content, "content")?;
        let description = req.description.clone().unwrap_or_default();
        validate::len_between(&description, "description", 0, 256)?;
        if let Some(l) = &req.license_info {
            validate::len_between(l, "licenseInfo", 0, 512)?;
        }
        let runtimes = req.compatible_runtimes.clone().unwrap_or_default();
        check_runtimes(&runtimes, "compatibleRuntimes")?;
        let archs = req.compatible_architectures.clone().unwrap_or_default();
        check_architectures(&archs, "compatibleArchitectures")?;
        if content.s3_bucket.is_some() || content.s3_key.is_some() {
            return Err(LambdaError::invalid(
                "fleetfn has no S3: upload the layer's .zip directly with Content.ZipFile (up to 50 MB zipped).",
            ));
        }
        let Some(zip) = content.zip_file.clone() else {
            return Err(LambdaError::invalid(
                "Content.ZipFile is required: upload the layer's .zip archive.",
            ));
        };
        let package = decode_zip(zip).await?;
        let digest = self.put_package(&package).await?;
        let created_date = now_lambda();
        // Concurrent publishes of one layer race for its counter; each lost race costs two
        // small reads, so a burst of publishers all get a number instead of a conflict.
        for _ in 0..PUBLISH_ATTEMPTS {
            let existing = self.get_record::<LayerRecord>(Table::Layers, &name).await?;
            let (version, expect) = match &existing {
                Some((l, rev)) => (l.next_version, Expect::Revision(*rev)),
                None => (1, Expect::Absent),
            };
            let record = LayerVersionRecord {
                name: name.clone(),
                version,
                description: description.clone(),
                created_date: created_date.clone(),
                compatible_runtimes: runtimes.clone(),
                compatible_architectures: archs.clone(),
                license_info: req.license_info.clone(),
                code_hex: digest.hex(),
                code_sha256: digest.base64(),
                code_size: package.bytes.len() as u64,
                unzipped: package.unzipped,
                policy: None,
            };
            let ops = vec![
                Op::put(
                    Table::Layers,
                    &name,
                    &LayerRecord {
                        next_version: version + 1,
                    },
                    expect,
                ),
                Op::put(
                    Table::LayerVersions,
                    layer_version_key(&name, version),
                    &record,
                    Expect::Absent,
                ),
            ];
            if self.commit_unless_raced(ops).await?.is_some() {
                return Ok(record.response(self));
            }
        }
        Err(LambdaError::conflict(format!(
            "Layer {name} is being published concurrently. Retry the request."
        )))
    }

    /// GetLayerVersion.
    pub async fn get_layer_version(
        &self,
        layer_name: &str,
        version: u64,
    ) -> Result<LayerVersionResponse> {
        let name = parse_layer_name(layer_name, &self.scope)?;
        Ok(self.layer_version(&name, version).await?.0.response(self))
    }

    /// GetLayerVersionByArn.
    pub async fn get_layer_version_by_arn(&self, arn: &str) -> Result<LayerVersionResponse> {
        if is_aws_managed_layer_arn(arn) {
            return Err(LambdaError::not_found(format!(
                "Layer version {arn} does not exist: fleetfn has no AWS-managed layers; publish the layer with PublishLayerVersion."
            )));
        }
        let a = LayerVersionArn::parse(arn, "arn")?;
        if !a.in_scope(&self.scope) {
            return Err(LambdaError::not_found(format!(
                "Layer version {arn} does not exist: this fleetfn installation serves region {} and account {}.",
                self.scope.region, self.scope.account
            )));
        }
        Ok(self
            .layer_version(&a.name, a.version)
            .await?
            .0
            .response(self))
    }

    /// ListLayers: each layer with its newest version matching the filters (layers without
    /// one are left out), by name; the marker is the last layer name given.
    pub async fn list_layers(
        &self,
        filter: &LayerFilter,
        marker: Option<&str>,
        max: Option<u32>,
    ) -> Result<Page<LayersListItem>> {
        check_filter(filter)?;
        let limit = max_items(max)?;
        let mut items = Vec::new();
        let mut after = marker.map(str::to_owned);
        // One more than a page: whether another matching layer follows the last one given.
        'scan: loop {
            let batch = self
                .list_records::<LayerRecord>(Table::Layers, "", after.as_deref(), 100)
                .await?;
            let Some((_, last, _)) = batch.last() else {
                break;
            };
            after = Some(last.clone());
            for (_, name, _) in batch {
                let latest = self
                    .layer_versions_of(&name)
                    .await?
                    .into_iter()
                    .rev()
                    .find(|v| v.matches(filter));
                if let Some(v) = latest {
                    items.push(LayersListItem {
                        layer_name: name.clone(),
                        layer_arn: self.scope.layer_arn(&name),
                        latest_matching_version: v.list_item(self),
                    });
                    if items.len() > limit {
                        break 'scan;
                    }
                }
            }
        }
        let next_marker = (items.len() > limit).then(|| {
            items.truncate(limit);
            items
                .last()
                .map(|l| l.layer_name.clone())
                .unwrap_or_default()
        });
        Ok(Page { items, next_marker })
    }

    /// ListLayerVersions: newest first, as AWS lists them; the marker is the last version
    /// number given. A layer without versions lists none.
    pub async fn list_layer_versions(
        &self,
        layer_name: &str,
        filter: &LayerFilter,
        marker: Option<&str>,
        max: Option<u32>,
    ) -> Result<Page<LayerVersionsListItem>> {
        let name = parse_layer_name(layer_name, &self.scope)?;
        check_filter(filter)?;
        let limit = max_items(max)?;
        let below = match marker {
            None => u64::MAX,
            Some(m) => m.parse::<u64>().map_err(|_| {
                LambdaError::invalid(format!(
                    "Marker {m} is not valid: pass the NextMarker of the previous ListLayerVersions answer."
                ))
            })?,
        };
        let mut matching: Vec<LayerVersionRecord> = self
            .layer_versions_of(&name)
            .await?
            .into_iter()
            .rev()
            .filter(|v| v.version < below && v.matches(filter))
            .collect();
        let next_marker = (matching.len() > limit).then(|| matching[limit - 1].version.to_string());
        matching.truncate(limit);
        Ok(Page {
            items: matching.iter().map(|v| v.list_item(self)).collect(),
            next_marker,
        })
    }

    /// DeleteLayerVersion: idempotent (204 for a version that is already gone). Functions
    /// using it keep their snapshot of it, and its package stays in the artifact store.
    pub async fn delete_layer_version(&self, layer_name: &str, version: u64) -> Result<()> {
        let name = parse_layer_name(layer_name, &self.scope)?;
        let key = layer_version_key(&name, version);
        for _ in 0..RACE_ATTEMPTS {
            let Some((_, rev)) = self
                .get_record::<serde::de::IgnoredAny>(Table::LayerVersions, &key)
                .await?
            else {
                return Ok(());
            };
            if self
                .commit_unless_raced(vec![Op::delete(Table::LayerVersions, &key, rev)])
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(LambdaError::conflict(
            "The layer version is being changed concurrently. Retry the request.",
        ))
    }

    /// AddLayerVersionPermission.
    pub async fn add_layer_version_permission(
        &self,
        layer_name: &str,
        version: u64,
        req: AddLayerVersionPermissionRequest,
        revision_id: Option<&str>,
    ) -> Result<AddLayerVersionPermissionResponse> {
        let name = parse_layer_name(layer_name, &self.scope)?;
        let stmt = layer_statement(&req, self.scope.layer_version_arn(&name, version))?;
        for _ in 0..RACE_ATTEMPTS {
            let (mut rec, rev) = self.layer_version(&name, version).await?;
            if let Some(want) = revision_id
                && rec.policy.as_ref().is_none_or(|p| p.revision_id != want)
            {
                return Err(LambdaError::precondition(REVISION_MISMATCH));
            }
            let mut doc = rec.policy.take().map(|p| p.document).unwrap_or_default();
            if doc.statement.iter().any(|s| s.sid == stmt.sid) {
                return Err(LambdaError::conflict(format!(
                    "The statement id ({}) provided already exists. Please provide a new statement id, or remove the existing statement.",
                    stmt.sid
                )));
            }
            doc.statement.push(stmt.clone());
            let size = to_json(&doc)?.len();
            if size > MAX_POLICY_BYTES {
                return Err(LambdaError::new(
                    ErrorKind::PolicyLengthExceeded,
                    format!(
                        "The final policy size ({size}) is bigger than the limit ({MAX_POLICY_BYTES}). Remove statements with RemoveLayerVersionPermission first."
                    ),
                ));
            }
            let revision = new_revision_id();
            rec.policy = Some(LayerPolicy {
                revision_id: revision.clone(),
                document: doc,
            });
            let op = Op::put(
                Table::LayerVersions,
                layer_version_key(&name, version),
                &rec,
                Expect::Revision(rev),
            );
            if self.commit_unless_raced(vec![op]).await?.is_some() {
                return Ok(AddLayerVersionPermissionResponse {
                    statement: to_json(&stmt)?,
                    revision_id: revision,
                });
            }
        }
        Err(LambdaError::conflict(
            "The policy is being changed concurrently. Retry the request.",
        ))
    }

    /// RemoveLayerVersionPermission: the policy goes with its last statement.
    pub async fn remove_layer_version_permission(
        &self,
        layer_name: &str,
        version: u64,
        statement_id: &str,
        revision_id: Option<&str>,
    ) -> Result<()> {
        let name = parse_layer_name(layer_name, &self.scope)?;
        check_statement_id(statement_id)?;
        for _ in 0..RACE_ATTEMPTS {
            let (mut rec, rev) = self.layer_version(&name, version).await?;
            let Some(mut policy) = rec.policy.take() else {
                return Err(no_policy());
            };
            if revision_id.is_some_and(|r| r != policy.revision_id) {
                return Err(LambdaError::precondition(REVISION_MISMATCH));
            }
            let before = policy.document.statement.len();
            policy.document.statement.retain(|s| s.sid != statement_id);
            if policy.document.statement.len() == before {
                return Err(LambdaError::not_found(format!(
                    "Statement {statement_id} is not found in resource policy. See the statements with GetLayerVersionPolicy."
                )));
            }
            if !policy.document.statement.is_empty() {
                policy.revision_id = new_revision_id();
                rec.policy = Some(policy);
            }
            let op = Op::put(
                Table::LayerVersions,
                layer_version_key(&name, version),
                &rec,
                Expect::Revision(rev),
            );
            if self.commit_unless_raced(vec![op]).await?.is_some() {
                return Ok(());
            }
        }
        Err(LambdaError::conflict(
            "The policy is being changed concurrently. Retry the request.",
        ))
    }

    /// GetLayerVersionPolicy.
    pub async fn get_layer_version_policy(
        &self,
        layer_name: &str,
        version: u64,
    ) -> Result<GetLayerVersionPolicyResponse> {
        let name = parse_layer_name(layer_name, &self.scope)?;
        let (rec, _) = self.layer_version(&name, version).await?;
        let p = rec.policy.ok_or_else(no_policy)?;
        Ok(GetLayerVersionPolicyResponse {
            policy: to_json(&p.document)?,
            revision_id: p.revision_id,
        })
    }

    /// Resolves a function's `Layers` (layer version ARNs, in order) into snapshots: at most
    /// [`MAX_FUNCTION_LAYERS`], each existing, no layer twice, and the code (`code_unzipped`
    /// bytes) and layers together within the unzipped limit.
    pub(crate) async fn resolve_function_layers(
        &self,
        arns: &[String],
        code_unzipped: u64,
    ) -> Result<Vec<LayerSnapshot>> {
        if arns.len() > MAX_FUNCTION_LAYERS {
            return Err(LambdaError::invalid(format!(
                "Cannot reference more than {MAX_FUNCTION_LAYERS} layers. {} were given; merge layers or move their content into the function's package.",
                arns.len()
            )));
        }
        // Well formed first, as AWS checks the whole list: each 1–140 characters and the
        // model's pattern, reported with the list as the value.
        let parsed = arns
            .iter()
            .map(|arn| {
                if !(1..=140).contains(&arn.len()) {
                    return None;
                }
                match LayerVersionArn::parse(arn, "layers") {
                    Ok(a) => Some(Some(a)),
                    // Well formed, but none exists here.
                    Err(_) if is_aws_managed_layer_arn(arn) => Some(None),
                    Err(_) => None,
                }
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                LambdaError::validation(
                    &format!("[{}]", arns.join(", ")),
                    "layers",
                    &format!(
                        "Member must satisfy constraint: [Member must have length less than or equal to 140, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: {}]",
                        fleetfn_model::layers::LAYER_VERSION_ARN_PATTERN
                    ),
                )
            })?;
        let mut out: Vec<LayerSnapshot> = Vec::with_capacity(arns.len());
        let mut names: Vec<(String, &str)> = Vec::new();
        for (arn, a) in arns.iter().zip(parsed) {
            let not_found = || LambdaError::invalid(format!("Layer version {arn} does not exist."));
            let Some(a) = a else {
                return Err(not_found());
            };
            // AWS words a layer listed twice the same way as two versions of one layer.
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == a.name) {
                return Err(LambdaError::invalid(format!(
                    "Two different versions of the same layer are not allowed to be referenced in the same function. {first} and {arn} are versions of the same layer."
                )));
            }
            if !a.in_scope(&self.scope) {
                return Err(not_found());
            }
            let (rec, _) = self
                .get_record::<LayerVersionRecord>(
                    Table::LayerVersions,
                    &layer_version_key(&a.name, a.version),
                )
                .await?
                .ok_or_else(not_found)?;
            names.push((a.name, arn));
            out.push(rec.snapshot(self.scope.layer_version_arn(&rec.name, rec.version)));
        }
        let total = out.iter().map(|l| l.unzipped).sum::<u64>() + code_unzipped;
        if total > MAX_UNZIPPED_BYTES {
            return Err(too_large_with_layers(total));
        }
        Ok(out)
    }

    /// The unzipped size of a function's code: kept in the record, or (records from before it
    /// was) measured from its package.
    pub(crate) async fn code_unzipped(&self, rec: &FunctionRecord) -> Result<u64> {
        if let Some(n) = rec.code_unzipped {
            return Ok(n);
        }
        let bytes = self.package(&rec.code_hex).await?.ok_or_else(|| {
            LambdaError::service(format!(
                "the code package sha256 {} of function {} is missing from the artifact store",
                rec.code_hex, rec.latest.function_name
            ))
        })?;
        tokio::task::spawn_blocking(move || {
            fleetfn_artifacts::validate_zip(&bytes, &fleetfn_artifacts::Limits::LAMBDA)
                .map(|s| s.total_uncompressed_size())
                .map_err(|e| LambdaError::service(format!("measuring the code package: {e}")))
        })
        .await
        .map_err(|e| LambdaError::service(format!("measuring the code package: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::io::Write;

    fn zip_b64(files: &[(&str, &str)]) -> String {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default();
            for (name, body) in files {
                w.start_file(*name, opts).unwrap();
                w.write_all(body.as_bytes()).unwrap();
            }
            w.finish().unwrap();
        }
        base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
    }

    fn publish_req(body: &str, runtimes: &[&str]) -> PublishLayerVersionRequest {
        PublishLayerVersionRequest {
            content: Some(fleetfn_model::layers::LayerVersionContentInput {
                zip_file: Some(zip_b64(&[("python/lib.py", body)])),
                ..Default::default()
            }),
            compatible_runtimes: Some(runtimes.iter().map(|r| (*r).to_string()).collect()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn versions_count_up_and_are_never_reused() {
        let (_d, cp) = crate::tests::cp().await;
        let v1 = cp
            .publish_layer_version("lib", publish_req("a", &["python3.13"]))
            .await
            .unwrap();
        assert_eq!(v1.version, 1);
        assert_eq!(v1.layer_version_arn, cp.scope.layer_version_arn("lib", 1));
        let v2 = cp
            .publish_layer_version(
                &cp.scope.layer_arn("lib"),
                publish_req("b", &["nodejs22.x"]),
            )
            .await
            .unwrap();
        assert_eq!(v2.version, 2);
        cp.delete_layer_version("lib", 2).await.unwrap();
        cp.delete_layer_version("lib", 2).await.unwrap();
        let e = cp.get_layer_version("lib", 2).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceNotFound);
        let v3 = cp
            .publish_layer_version("lib", publish_req("c", &[]))
            .await
            .unwrap();
        assert_eq!(v3.version, 3);
        let got = cp
            .get_layer_version_by_arn(&v1.layer_version_arn)
            .await
            .unwrap();
        assert_eq!(got, v1);
        // Content-addressed like code: the package is servable by digest.
        let hex = v1.content.location.rsplit('/').next().unwrap();
        assert!(cp.package(hex).await.unwrap().is_some());

        let listed = cp
            .list_layer_versions("lib", &LayerFilter::default(), None, Some(1))
            .await
            .unwrap();
        assert_eq!(listed.items[0].version, 3);
        let rest = cp
            .list_layer_versions(
                "lib",
                &LayerFilter::default(),
                listed.next_marker.as_deref(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            rest.items.iter().map(|v| v.version).collect::<Vec<_>>(),
            [1]
        );
        assert!(rest.next_marker.is_none());
        let py = LayerFilter {
            compatible_runtime: Some("python3.13".into()),
            ..Default::default()
        };
        let layers = cp.list_layers(&py, None, None).await.unwrap();
        assert_eq!(layers.items.len(), 1);
        assert_eq!(layers.items[0].latest_matching_version.version, 1);
        let all = cp
            .list_layers(&LayerFilter::default(), None, None)
            .await
            .unwrap();
        assert_eq!(all.items[0].latest_matching_version.version, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_publishes_all_get_a_number() {
        let (_d, cp) = crate::tests::cp().await;
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let cp = cp.clone();
                tokio::spawn(async move {
                    cp.publish_layer_version("busy", publish_req(&i.to_string(), &[]))
                        .await
                        .map(|v| v.version)
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap().unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (1..=24).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn non_zip_content_is_refused() {
        let (_d, cp) = crate::tests::cp().await;
        let mut req = publish_req("a", &[]);
        req.content.as_mut().unwrap().zip_file =
            Some(base64::engine::general_purpose::STANDARD.encode(b"not a zip"));
        let e = cp.publish_layer_version("l", req).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameterValue, "{}", e.message);
        let e = cp
            .publish_layer_version("bad name", publish_req("a", &[]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
    }

    #[tokio::test]
    async fn function_layers_are_checked() {
        let (_d, cp) = crate::tests::cp().await;
        let mut arns = Vec::new();
        for n in 0..6 {
            let v = cp
                .publish_layer_version(&format!("l{n}"), publish_req("x", &[]))
                .await
                .unwrap();
            arns.push(v.layer_version_arn);
        }
        let ok = cp.resolve_function_layers(&arns[..5], 10).await.unwrap();
        assert_eq!(ok.len(), 5);
        assert_eq!(ok[0].arn, arns[0]);
        assert_eq!(ok[0].unzipped, 1);
        let e = cp.resolve_function_layers(&arns, 10).await.unwrap_err();
        assert!(
            e.message
                .starts_with("Cannot reference more than 5 layers."),
            "{}",
            e.message
        );
        let missing = cp.scope.layer_version_arn("l0", 9);
        let e = cp
            .resolve_function_layers(std::slice::from_ref(&missing), 10)
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            format!("Layer version {missing} does not exist.")
        );
        let v2 = cp
            .publish_layer_version("l0", publish_req("y", &[]))
            .await
            .unwrap()
            .layer_version_arn;
        let e = cp
            .resolve_function_layers(&[arns[0].clone(), v2], 10)
            .await
            .unwrap_err();
        assert!(
            e.message.starts_with("Two different versions"),
            "{}",
            e.message
        );
        let e = cp
            .resolve_function_layers(&[arns[0].clone(), arns[0].clone()], 10)
            .await
            .unwrap_err();
        assert!(
            e.message.starts_with("Two different versions"),
            "{}",
            e.message
        );
        let e = cp
            .resolve_function_layers(std::slice::from_ref(&arns[0]), MAX_UNZIPPED_BYTES)
            .await
            .unwrap_err();
        assert_eq!(e, too_large_with_layers(MAX_UNZIPPED_BYTES + 1));
        let e = cp
            .resolve_function_layers(&[arns[0].clone(), "nope".into()], 10)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(
            e.message.starts_with(&format!(
                "1 validation error detected: Value '[{}, nope]' at 'layers' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 140,",
                arns[0]
            )),
            "{}",
            e.message
        );
        let managed = "arn:aws:lambda:::awslayer:AWSLambda-Python-AWS-SDK".to_string();
        let e = cp
            .resolve_function_layers(std::slice::from_ref(&managed), 10)
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            format!("Layer version {managed} does not exist.")
        );
        let long = cp.scope.layer_version_arn(&"n".repeat(100), 1);
        let e = cp.resolve_function_layers(&[long], 10).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
    }

    #[tokio::test]
    async fn published_versions_keep_their_layers_after_a_delete() {
        use fleetfn_model::arn::FunctionRef;
        use fleetfn_model::types::{
            CreateFunctionRequest, FunctionCode, PublishVersionRequest,
            UpdateFunctionConfigurationRequest,
        };
        let (_d, cp) = crate::tests::cp().await;
        let a = cp
            .publish_layer_version("a", publish_req("a", &[]))
            .await
            .unwrap();
        let b = cp
            .publish_layer_version("b", publish_req("b", &[]))
            .await
            .unwrap();
        let made = cp
            .create_function(CreateFunctionRequest {
                function_name: Some("f".into()),
                runtime: Some("python3.13".into()),
                role: Some("arn:aws:iam::000000000000:role/r".into()),
                handler: Some("app.handler".into()),
                code: Some(FunctionCode {
                    zip_file: Some(zip_b64(&[("app.py", "x = 1")])),
                    ..Default::default()
                }),
                layers: Some(vec![
                    b.layer_version_arn.clone(),
                    a.layer_version_arn.clone(),
                ]),
                ..Default::default()
            })
            .await
            .unwrap();
        let wire = |v: &LayerVersionResponse| Layer {
            arn: v.layer_version_arn.clone(),
            code_size: v.content.code_size,
        };
        assert_eq!(made.layers, Some(vec![wire(&b), wire(&a)]));
        let f = FunctionRef {
            name: "f".into(),
            qualifier: None,
        };
        let v1 = cp
            .publish_version(&f, PublishVersionRequest::default())
            .await
            .unwrap();
        assert_eq!(v1.layers, made.layers);
        cp.delete_layer_version("a", 1).await.unwrap();
        let (rec, _) = cp.version("f", "1").await.unwrap();
        assert_eq!(
            rec.layers
                .iter()
                .map(|l| l.arn.as_str())
                .collect::<Vec<_>>(),
            [b.layer_version_arn.as_str(), a.layer_version_arn.as_str()]
        );
        // The deleted layer's package is still served by digest, for agents starting version 1.
        assert!(
            cp.package(&rec.layers[1].sha256_hex)
                .await
                .unwrap()
                .is_some()
        );
        // Removing the layers: the wire form has none, and the next version snapshots none.
        let cleared = cp
            .update_function_configuration(
                &f,
                UpdateFunctionConfigurationRequest {
                    layers: Some(Vec::new()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(cleared.layers, None);
        cp.publish_version(&f, PublishVersionRequest::default())
            .await
            .unwrap();
        assert!(cp.version("f", "2").await.unwrap().0.layers.is_empty());
    }

    #[tokio::test]
    async fn permissions_with_revisions() {
        let (_d, cp) = crate::tests::cp().await;
        cp.publish_layer_version("p", publish_req("x", &[]))
            .await
            .unwrap();
        let e = cp.get_layer_version_policy("p", 1).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceNotFound);
        let a = cp
            .add_layer_version_permission("p", 1, req("one", "*", None), None)
            .await
            .unwrap();
        let e = cp
            .add_layer_version_permission("p", 1, req("one", "*", None), None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceConflict);
        let e = cp
            .add_layer_version_permission("p", 1, req("two", "*", None), Some("stale"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
        let b = cp
            .add_layer_version_permission("p", 1, req("two", "*", None), Some(&a.revision_id))
            .await
            .unwrap();
        let got = cp.get_layer_version_policy("p", 1).await.unwrap();
        assert_eq!(got.revision_id, b.revision_id);
        let doc: PolicyDocument = serde_json::from_str(&got.policy).unwrap();
        assert_eq!(doc.statement.len(), 2);
        let e = cp
            .remove_layer_version_permission("p", 1, "one", Some(&a.revision_id))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
        cp.remove_layer_version_permission("p", 1, "one", None)
            .await
            .unwrap();
        cp.remove_layer_version_permission("p", 1, "two", None)
            .await
            .unwrap();
        let e = cp.get_layer_version_policy("p", 1).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceNotFound);
        let e = cp
            .add_layer_version_permission("p", 2, req("x", "*", None), None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    }

    fn req(sid: &str, principal: &str, org: Option<&str>) -> AddLayerVersionPermissionRequest {
        AddLayerVersionPermissionRequest {
            statement_id: Some(sid.into()),
            action: Some("lambda:GetLayerVersion".into()),
            principal: Some(principal.into()),
            organization_id: org.map(str::to_owned),
        }
    }

    #[test]
    fn statements_as_aws_writes_them() {
        let r = "arn:aws:lambda:us-east-1:000000000000:layer:l:1".to_string();
        let s = layer_statement(&req("xaccount", "210987654321", None), r.clone()).unwrap();
        assert_eq!(
            to_json(&s).unwrap(),
            format!(
                r#"{{"Sid":"xaccount","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::210987654321:root"}},"Action":"lambda:GetLayerVersion","Resource":"{r}"}}"#
            )
        );
        let s = layer_statement(&req("org", "*", Some("o-abcdefghij")), r.clone()).unwrap();
        assert_eq!(
            to_json(&s).unwrap(),
            format!(
                r#"{{"Sid":"org","Effect":"Allow","Principal":"*","Action":"lambda:GetLayerVersion","Resource":"{r}","Condition":{{"StringEquals":{{"aws:PrincipalOrgID":"o-abcdefghij"}}}}}}"#
            )
        );
        let s = layer_statement(
            &req("root", "arn:aws:iam::210987654321:root", None),
            r.clone(),
        )
        .unwrap();
        assert_eq!(
            s.principal,
            Principal::Aws {
                aws: "arn:aws:iam::210987654321:root".into()
            }
        );
    }

    #[test]
    fn statement_inputs_are_checked() {
        let r = String::from("x");
        for (rq, kind) in [
            (req("a b", "*", None), ErrorKind::Validation),
            (req("a", "someone", None), ErrorKind::Validation),
            (
                req("a", "arn:aws:iam::210987654321:user/x", None),
                ErrorKind::Validation,
            ),
            (req("a", "*", Some("org")), ErrorKind::Validation),
            (
                req("a", "210987654321", Some("o-abcdefghij")),
                ErrorKind::InvalidParameterValue,
            ),
            (
                AddLayerVersionPermissionRequest {
                    action: Some("lambda:InvokeFunction".into()),
                    ..req("a", "*", None)
                },
                ErrorKind::Validation,
            ),
            (
                AddLayerVersionPermissionRequest {
                    principal: None,
                    ..req("a", "*", None)
                },
                ErrorKind::Validation,
            ),
        ] {
            let e = layer_statement(&rq, r.clone()).unwrap_err();
            assert_eq!(e.kind, kind, "{rq:?}: {}", e.message);
        }
    }

    #[test]
    fn filters_and_limits() {
        assert!(check_runtimes(&["python3.13".into(), "custom".into()], "r").is_ok());
        assert_eq!(
            check_runtimes(&["cobol".into()], "r").unwrap_err().kind,
            ErrorKind::Validation
        );
        assert!(check_runtimes(&vec!["python3.13".to_string(); 16], "r").is_err());
        assert!(check_architectures(&["arm64".into(), "x86_64".into()], "a").is_ok());
        assert!(check_architectures(&["sparc".into()], "a").is_err());
        assert!(check_architectures(&vec!["arm64".to_string(); 3], "a").is_err());
        assert_eq!(max_items(None).unwrap(), 50);
        assert!(max_items(Some(0)).is_err());
        assert!(max_items(Some(51)).is_err());
        let e = too_large_with_layers(262_144_001);
        assert_eq!(
            e.message,
            "Function code combined with layers exceeds the maximum allowed size of 262144000 bytes. The actual size is 262144001 bytes."
        );
    }
}
