//! Versions: PublishVersion (numbered and `$LATEST.PUBLISHED`), ListVersionsByFunction, and
//! deleting a single version.

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::limits::{DEFAULT_MIN_ENVIRONMENTS, MAX_VERSIONS_PER_CAPACITY_PROVIDER};
use fleetfn_model::time::now_lambda;
use fleetfn_model::types::{
    AliasConfiguration, FunctionConfiguration, FunctionScalingConfig, PublishVersionRequest,
};
use fleetfn_model::{ErrorKind, LambdaError, LastUpdateStatus, Result, State};
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
    let mut h = Sha256::new();
    h.update(without_lifecycle(&cfg));
    h.update(rec.code_hex.as_bytes());
    hex::encode(h.finalize())
}

/// `cfg` as compact JSON (fields in declaration order) with `State` and `LastUpdateStatus`
/// blanked to `""`: the bytes the publish hash has always covered, from when those fields were
/// strings cleared before hashing, so versions published before keep their hashes.
fn without_lifecycle(cfg: &FunctionConfiguration) -> Vec<u8> {
    let json = serde_json::to_string(cfg).unwrap_or_default();
    let Ok(TopLevel(fields)) = serde_json::from_str::<TopLevel<'_>>(&json) else {
        return json.into_bytes();
    };
    let mut out = String::with_capacity(json.len());
    out.push('{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).unwrap_or_default());
        out.push(':');
        out.push_str(match key.as_str() {
            "State" | "LastUpdateStatus" => "\"\"",
            _ => value.get(),
        });
    }
    out.push('}');
    out.into_bytes()
}

/// The top-level members of a JSON object, in document order, values unparsed.
struct TopLevel<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(TopLevel(fields))
            }
        }
        d.deserialize_map(Members)
    }
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
                && p.config.state != State::Deleting
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
                Some((p, _)) if p.config.state == State::Active => {
                    config.state = State::Active;
                    config.state_reason = None;
                    config.state_reason_code = None;
                    config.last_update_status = LastUpdateStatus::InProgress;
                    config.last_update_status_reason =
                        Some("The function is being updated.".into());
                    config.last_update_status_reason_code = None;
                }
                _ => {
                    config.state = State::Pending;
                    config.state_reason = Some("The function is being created.".into());
                    config.state_reason_code = Some("Creating".into());
                    config.last_update_status = LastUpdateStatus::InProgress;
                    config.last_update_status_reason =
                        Some("The function is being created.".into());
                    config.last_update_status_reason_code = None;
                }
            }
        } else {
            config.state = State::Active;
            config.last_update_status = LastUpdateStatus::Successful;
        }
        let record = VersionRecord {
            function: name.clone(),
            version: version.clone(),
            config,
            code_hex: rec.code_hex.clone(),
            publish_hash: hash.clone(),
            scaling,
            capacity_provider: cp.clone(),
            layers: rec.layers.clone(),
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
        for _ in 1..crate::service::RACE_ATTEMPTS {
            if let Some(config) = self.publish_version_once(fref, &req).await? {
                return Ok(config);
            }
        }
        // The last attempt reports a lost race as the conflict it is.
        self.publish_version_once(fref, &req)
            .await?
            .ok_or_else(|| {
                LambdaError::conflict(format!(
                    "The operation cannot be performed at this time. An update is in progress for resource: {}. Retry the request.",
                    self.scope.function_arn(&fref.name)
                ))
            })
    }

    /// One attempt of [`Self::publish_version`]; `None` when its write lost a race.
    async fn publish_version_once(
        &self,
        fref: &FunctionRef,
        req: &PublishVersionRequest,
    ) -> Result<Option<FunctionConfiguration>> {
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
            return Ok(Some(version.config));
        }
        ops.insert(
            0,
            Op::put(Table::Functions, &fref.name, &rec, Expect::Revision(rev)),
        );
        Ok(self.commit_unless_raced(ops).await?.map(|_| version.config))
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
        if v.config.state == State::Deleting {
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
            v.config.state = State::Deleting;
            v.config.state_reason = Some("The function version is being deleted.".into());
            v.config.state_reason_code = None;
            v.config.last_update_status = LastUpdateStatus::InProgress;
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
        ops.extend(self.event_config_delete_op(function, version).await?);
        ops.extend(self.policy_delete_op(function, version).await?);
        self.commit(ops).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fleetfn_model::types::{EnvironmentResponse, FunctionConfiguration};

    use fleetfn_model::{LastUpdateStatus, State};

    use super::publish_hash;
    use crate::records::FunctionRecord;

    /// A record whose `$LATEST` is Active and whose environment variables look like the fields
    /// the hash blanks out.
    fn record(state: State, update: LastUpdateStatus) -> FunctionRecord {
        FunctionRecord {
            latest: FunctionConfiguration {
                function_name: "f".into(),
                function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
                last_modified: "2026-01-01T00:00:00.000+0000".into(),
                revision_id: "rev".into(),
                state,
                last_update_status: update,
                environment: Some(EnvironmentResponse {
                    variables: BTreeMap::from([
                        ("RevisionId".to_string(), String::new()),
                        ("State".to_string(), "Active".to_string()),
                    ]),
                }),
                ..FunctionConfiguration::default()
            },
            code_hex: "00ff".into(),
            tags: BTreeMap::new(),
            next_version: 1,
            concurrency_explicit: false,
            last_numbered: None,
            deleting: false,
            code_unzipped: None,
            layers: Vec::new(),
        }
    }

    /// The hash of this record as computed before `State` and `LastUpdateStatus` were enums
    /// (they were strings, cleared before hashing): a stored version keeps matching its
    /// unchanged `$LATEST`, so publishing again does not make a new version after an upgrade.
    const HASH_BEFORE_TYPED_STATES: &str =
        "909fa818b361a46241e05d3536040a32792e127286386d2171f7db7cca0e4fdc";

    #[test]
    fn the_publish_hash_ignores_the_lifecycle_and_is_unchanged_by_typed_states() {
        for (state, update) in [
            (State::Active, LastUpdateStatus::Successful),
            (State::Pending, LastUpdateStatus::InProgress),
            (State::ActiveNonInvocable, LastUpdateStatus::Failed),
        ] {
            assert_eq!(
                publish_hash(&record(state, update)),
                HASH_BEFORE_TYPED_STATES,
                "{state} {update}"
            );
        }
        // Everything else still counts, environment variables named like the blanked fields
        // included.
        let mut changed = record(State::Active, LastUpdateStatus::Successful);
        if let Some(env) = changed.latest.environment.as_mut() {
            env.variables.insert("State".into(), "Pending".into());
        }
        assert_ne!(publish_hash(&changed), HASH_BEFORE_TYPED_STATES);
    }
}
