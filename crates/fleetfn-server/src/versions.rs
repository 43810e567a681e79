//! Versions: PublishVersion (numbered and `$LATEST.PUBLISHED`), ListVersionsByFunction, and
//! deleting a single version.

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::limits::{DEFAULT_MIN_ENVIRONMENTS, MAX_VERSIONS_PER_CAPACITY_PROVIDER};
use fleetfn_model::time::now_lambda;
use fleetfn_model::types::{
    AliasConfiguration, FunctionConfiguration, FunctionScalingConfig, PublishVersionRequest,
};
use fleetfn_model::{ErrorKind, LambdaError, Result};
use fleetfn_store::{Expect, Op, Table};
use sha2::{Digest as _, Sha256};

use crate::functions::capacity_provider_name_of;
use crate::records::{
    FunctionRecord, LATEST, LATEST_PUBLISHED, ScalingState, VersionRecord, cp_version_key,
    version_key,
};
use crate::service::{ControlPlane, Page, new_revision_id};
use crate::validate;

/// The scaling config a new version starts with: min 3 environments, no max.
pub(crate) fn default_scaling() -> FunctionScalingConfig {
    FunctionScalingConfig {
        min_execution_environments: Some(i64::from(DEFAULT_MIN_ENVIRONMENTS)),
        max_execution_environments: None,
    }
}

/// Hash of everything a version is made of, to skip publishing when nothing changed.
fn publish_hash(rec: &FunctionRecord) -> String {
    let mut cfg = rec.latest.clone();
    cfg.last_modified.clear();
    cfg.revision_id.clear();
    cfg.state.clear();
    cfg.last_update_status.clear();
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&cfg).unwrap_or_default());
    h.update(rec.code_hex.as_bytes());
    hex::encode(h.finalize())
}

impl ControlPlane {
    /// Builds the writes that publish `$LATEST` of `rec` as a numbered version (`target` empty)
    /// or as `$LATEST.PUBLISHED`. Updates `rec` (version counter) in place; the caller writes
    /// `rec` in the same batch. Returns no ops when nothing changed since the last publish.
    pub(crate) async fn publish_ops(
        &self,
        rec: &mut FunctionRecord,
        description: Option<&str>,
        target: &str,
        code_sha256: Option<&str>,
    ) -> Result<(VersionRecord, Vec<Op>)> {
        let name = rec.latest.function_name.clone();
        if let Some(sha) = code_sha256
            && sha != rec.latest.code_sha256
        {
            return Err(LambdaError::invalid(format!(
                "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                rec.latest.code_sha256
            )));
        }
        let hash = publish_hash(rec);
        let cp = capacity_provider_name_of(&rec.latest);
        if cp.is_some() {
            // The provider must still exist to deploy onto it.
            let arn = self
                .scope
                .capacity_provider_arn(cp.as_deref().unwrap_or_default());
            self.require_capacity_provider(&arn).await?;
        }
        let latest_published = target == LATEST_PUBLISHED;
        let (version, previous) = if latest_published {
            let prev = self
                .get_record::<VersionRecord>(Table::Versions, &version_key(&name, LATEST_PUBLISHED))
                .await?;
            if let Some((p, _)) = &prev
                && p.publish_hash == hash
                && p.config.state != "Deleting"
            {
                return Ok((p.clone(), Vec::new()));
            }
            (LATEST_PUBLISHED.to_string(), prev)
        } else {
            if let Some((h, v)) = &rec.last_numbered
                && *h == hash
                && let Some((existing, _)) = self
                    .get_record::<VersionRecord>(Table::Versions, &version_key(&name, v))
                    .await?
            {
                return Ok((existing, Vec::new()));
            }
            (rec.next_version.to_string(), None)
        };
        if let Some(cp) = &cp
            && previous.is_none()
        {
            let attached = self
                .store
                .count(Table::CapacityProviderVersions, &format!("{cp}/"))
                .await
                .map_err(crate::service::store_err)?;
            if attached >= MAX_VERSIONS_PER_CAPACITY_PROVIDER {
                return Err(LambdaError::new(
                    ErrorKind::FunctionVersionsPerCapacityProviderLimitExceeded,
                    format!(
                        "Capacity provider {cp} already has {attached} function versions attached, the most it can have ({MAX_VERSIONS_PER_CAPACITY_PROVIDER}). Delete unused versions, or publish to $LATEST.PUBLISHED, which replaces itself."
                    ),
                ));
            }
        }
        let mut config: FunctionConfiguration = rec.latest.clone();
        config.version = version.clone();
        config.function_arn = self.scope.qualified_function_arn(&name, &version);
        config.revision_id = new_revision_id();
        config.last_modified = now_lambda();
        if let Some(d) = description {
            config.description = d.to_string();
        }
        let scaling = match (&previous, latest_published) {
            // Scaling set on $LATEST.PUBLISHED carries over to its next publish.
            (Some((p, _)), true) => p.scaling.clone(),
            _ => ScalingState {
                requested: None,
                applied: default_scaling(),
            },
        };
        if cp.is_some() {
            match &previous {
                Some((p, _)) if p.config.state == "Active" => {
                    config.state = "Active".into();
                    config.state_reason = None;
                    config.state_reason_code = None;
                    config.last_update_status = "InProgress".into();
                    config.last_update_status_reason =
                        Some("The function is being updated.".into());
                    config.last_update_status_reason_code = None;
                }
                _ => {
                    config.state = "Pending".into();
                    config.state_reason = Some("The function is being created.".into());
                    config.state_reason_code = Some("Creating".into());
                    config.last_update_status = "InProgress".into();
                    config.last_update_status_reason =
                        Some("The function is being created.".into());
                    config.last_update_status_reason_code = None;
                }
            }
        } else {
            config.state = "Active".into();
            config.last_update_status = "Successful".into();
        }
        let record = VersionRecord {
            function: name.clone(),
            version: version.clone(),
            config,
            code_hex: rec.code_hex.clone(),
            publish_hash: hash.clone(),
            scaling,
            capacity_provider: cp.clone(),
        };
        let mut ops = Vec::new();
        let expect = previous
            .as_ref()
            .map_or(Expect::Absent, |(_, r)| Expect::Revision(*r));
        ops.push(Op::put(
            Table::Versions,
            version_key(&name, &version),
            &record,
            expect,
        ));
        if let Some(cp) = &cp {
            let old_cp = previous
                .as_ref()
                .and_then(|(p, _)| p.capacity_provider.clone());
            if old_cp.as_deref() != Some(cp.as_str()) {
                if let Some(old) = old_cp {
                    ops.extend(self.index_delete_op(&old, &name, &version).await?);
                }
                ops.push(Op::put(
                    Table::CapacityProviderVersions,
                    cp_version_key(cp, &name, &version),
                    &serde_json::json!({ "version_key": version_key(&name, &version) }),
                    Expect::Absent,
                ));
            }
        }
        if !latest_published {
            rec.next_version += 1;
            rec.last_numbered = Some((hash, version));
        }
        Ok((record, ops))
    }

    pub async fn publish_version(
        &self,
        fref: &FunctionRef,
        req: PublishVersionRequest,
    ) -> Result<FunctionConfiguration> {
        if let Some(q) = fref.qualifier.as_deref()
            && q != LATEST
        {
            return Err(LambdaError::invalid(format!(
                "PublishVersion publishes $LATEST; remove the qualifier {q} from the function name."
            )));
        }
        if let Some(d) = &req.description {
            validate::len_between(d, "description", 0, 256)?;
        }
        if let Some(p) = &req.publish_to {
            validate::one_of(p, "publishTo", &["LATEST_PUBLISHED"])?;
        }
        let (mut rec, rev) = self.function(&fref.name).await?;
        if rec.deleting {
            return Err(self.function_not_found(&fref.name, None));
        }
        if let Some(r) = &req.revision_id
            && *r != rec.latest.revision_id
        {
            return Err(LambdaError::precondition(
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            ));
        }
        if req.publish_to.is_some() && rec.latest.capacity_provider_config.is_none() {
            return Err(LambdaError::invalid(
                "PublishTo is only supported for functions configured with a capacity provider.",
            ));
        }
        let target = if req.publish_to.is_some() {
            LATEST_PUBLISHED
        } else {
            ""
        };
        let (version, mut ops) = self
            .publish_ops(
                &mut rec,
                req.description.as_deref(),
                target,
                req.code_sha256.as_deref(),
            )
            .await?;
        if ops.is_empty() {
            return Ok(version.config);
        }
        ops.insert(
            0,
            Op::put(Table::Functions, &fref.name, &rec, Expect::Revision(rev)),
        );
        self.commit(ops).await?;
        Ok(version.config)
    }

    pub async fn list_versions_by_function(
        &self,
        fref: &FunctionRef,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<Page<FunctionConfiguration>> {
        if let Some(m) = max_items {
            validate::int_between(i64::from(m), "maxItems", 1, 10000)?;
        }
        let (rec, _) = self.function(&fref.name).await?;
        // `$LATEST` comes first, then the stored versions in order; the marker "$LATEST" means
        // the first page ended right after it.
        let limit = max_items.map_or(50, |m| (m as usize).min(50));
        let mut items = Vec::new();
        let versions_marker = match marker {
            None => {
                items.push(rec.latest.clone());
                None
            }
            Some(LATEST) => None,
            Some(m) => Some(m),
        };
        if items.len() == limit {
            return Ok(Page {
                items,
                next_marker: Some(LATEST.into()),
            });
        }
        let page = self
            .page::<VersionRecord>(
                Table::Versions,
                &format!("{}/", fref.name),
                versions_marker,
                Some(u32::try_from(limit - items.len()).unwrap_or(50)),
                50,
            )
            .await?;
        items.extend(page.items.into_iter().map(|(v, _, _)| v.config));
        Ok(Page {
            items,
            next_marker: page.next_marker,
        })
    }

    /// Deletes one version (DeleteFunction with a version qualifier). A capacity-provider version
    /// turns `Deleting` and the reconciler removes it once its environments are gone (202);
    /// any other version goes at once (204).
    pub(crate) async fn delete_version(&self, function: &str, version: &str) -> Result<u16> {
        let (mut v, vrev) = self.version(function, version).await?;
        if v.config.state == "Deleting" {
            return Ok(202);
        }
        let aliases: Vec<(AliasConfiguration, String, i64)> = self
            .list_records(Table::Aliases, &format!("{function}/"), None, 100_000)
            .await?;
        let users: Vec<String> = aliases
            .iter()
            .filter(|(a, _, _)| {
                a.function_version == version
                    || a.routing_config
                        .as_ref()
                        .is_some_and(|r| r.additional_version_weights.contains_key(version))
            })
            .map(|(a, _, _)| a.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(LambdaError::conflict(format!(
                "Unable to delete version because the following aliases reference it: [{}]",
                users.join(", ")
            )));
        }
        if v.capacity_provider.is_some() {
            v.config.state = "Deleting".into();
            v.config.state_reason = Some("The function version is being deleted.".into());
            v.config.state_reason_code = None;
            v.config.last_update_status = "InProgress".into();
            self.commit(vec![Op::put(
                Table::Versions,
                version_key(function, version),
                &v,
                Expect::Revision(vrev),
            )])
            .await?;
            return Ok(202);
        }
        self.remove_version(&v, vrev).await?;
        Ok(204)
    }

    /// Removes a version record and its capacity provider index entry.
    pub(crate) async fn remove_version(&self, v: &VersionRecord, vrev: i64) -> Result<()> {
        let (function, version) = (v.function.as_str(), v.version.as_str());
        let mut ops = vec![Op::delete(
            Table::Versions,
            version_key(function, version),
            vrev,
        )];
        if let Some(cp) = &v.capacity_provider {
            ops.extend(self.index_delete_op(cp, function, version).await?);
        }
        self.commit(ops).await?;
        Ok(())
    }
}
