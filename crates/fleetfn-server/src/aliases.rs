//! Aliases: Create, Get, List, Update, Delete, with weighted `RoutingConfig`.

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::types::{
    AliasConfiguration, AliasRoutingConfiguration, CreateAliasRequest, UpdateAliasRequest,
};
use fleetfn_model::{ErrorKind, LambdaError, Result};
use fleetfn_store::{Expect, Op, Table};

use crate::records::{LATEST, LATEST_PUBLISHED, alias_key};
use crate::service::{ControlPlane, Page, new_revision_id};
use crate::validate;

fn check_alias_name(name: &str) -> Result<()> {
    validate::len_between(name, "name", 1, 128)?;
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.chars().all(|c| c.is_ascii_digit());
    if !ok {
        return Err(LambdaError::validation(
            name,
            "name",
            "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
        ));
    }
    Ok(())
}

fn check_version_pattern(v: &str) -> Result<()> {
    if v == LATEST
        || v == LATEST_PUBLISHED
        || (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
    {
        return Ok(());
    }
    Err(LambdaError::validation(
        v,
        "functionVersion",
        "Member must satisfy regular expression pattern: (\\$LATEST(\\.PUBLISHED)?|[0-9]+)",
    ))
}

impl ControlPlane {
    async fn check_alias_target(
        &self,
        function: &str,
        version: &str,
        routing: Option<&AliasRoutingConfiguration>,
    ) -> Result<()> {
        check_version_pattern(version)?;
        if version != LATEST {
            self.version(function, version).await?;
        }
        if let Some(r) = routing {
            if r.additional_version_weights.len() > 1 {
                return Err(LambdaError::invalid(
                    "RoutingConfig supports one additional version; give at most one entry in AdditionalVersionWeights.",
                ));
            }
            for (v, w) in &r.additional_version_weights {
                if !(0.0..=1.0).contains(w) || w.is_nan() {
                    return Err(LambdaError::validation(
                        &w.to_string(),
                        "routingConfig.additionalVersionWeights",
                        "Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0]",
                    ));
                }
                if !v.chars().all(|c| c.is_ascii_digit()) || v.is_empty() {
                    return Err(LambdaError::invalid(format!(
                        "RoutingConfig can only route to numbered versions; '{v}' is not one."
                    )));
                }
                if v == version {
                    return Err(LambdaError::invalid(format!(
                        "Invalid function version {v}. Function version {v} is already included in routing configuration."
                    )));
                }
                self.version(function, v).await?;
            }
        }
        Ok(())
    }

    pub async fn create_alias(
        &self,
        fref: &FunctionRef,
        req: CreateAliasRequest,
    ) -> Result<AliasConfiguration> {
        let name = validate::required(&req.name, "name")?;
        check_alias_name(name)?;
        let version = validate::required(&req.function_version, "functionVersion")?;
        let description = req.description.clone().unwrap_or_default();
        validate::len_between(&description, "description", 0, 256)?;
        let (f, _) = self.function(&fref.name).await?;
        if f.deleting {
            return Err(self.function_not_found(&fref.name, None));
        }
        self.check_alias_target(&fref.name, version, req.routing_config.as_ref())
            .await?;
        let alias = AliasConfiguration {
            alias_arn: self.scope.qualified_function_arn(&fref.name, name),
            name: name.clone(),
            function_version: version.clone(),
            description,
            routing_config: req
                .routing_config
                .clone()
                .filter(|r| !r.additional_version_weights.is_empty()),
            revision_id: new_revision_id(),
        };
        self.commit(vec![Op::put(
            Table::Aliases,
            alias_key(&fref.name, name),
            &alias,
            Expect::Absent,
        )])
        .await
        .map_err(|e| {
            if e.kind == ErrorKind::ResourceConflict {
                LambdaError::conflict(format!("Alias already exists: {}", alias.alias_arn))
            } else {
                e
            }
        })?;
        Ok(alias)
    }

    async fn alias(&self, function: &str, name: &str) -> Result<(AliasConfiguration, i64)> {
        check_alias_name(name)?;
        self.function(function).await?;
        self.get_record(Table::Aliases, &alias_key(function, name))
            .await?
            .ok_or_else(|| {
                LambdaError::not_found(format!(
                    "Alias not found: {}",
                    self.scope.qualified_function_arn(function, name)
                ))
            })
    }

    pub async fn get_alias(&self, fref: &FunctionRef, name: &str) -> Result<AliasConfiguration> {
        Ok(self.alias(&fref.name, name).await?.0)
    }

    pub async fn list_aliases(
        &self,
        fref: &FunctionRef,
        function_version: Option<&str>,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<Page<AliasConfiguration>> {
        if let Some(m) = max_items {
            validate::int_between(i64::from(m), "maxItems", 1, 10000)?;
        }
        if let Some(v) = function_version {
            check_version_pattern(v)?;
        }
        self.function(&fref.name).await?;
        let page = self
            .page::<AliasConfiguration>(
                Table::Aliases,
                &format!("{}/", fref.name),
                marker,
                max_items,
                50,
            )
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(a, _, _)| a)
                .filter(|a| function_version.is_none_or(|v| a.function_version == v))
                .collect(),
            next_marker: page.next_marker,
        })
    }

    pub async fn update_alias(
        &self,
        fref: &FunctionRef,
        name: &str,
        req: UpdateAliasRequest,
    ) -> Result<AliasConfiguration> {
        let (mut alias, rev) = self.alias(&fref.name, name).await?;
        if let Some(r) = &req.revision_id
            && *r != alias.revision_id
        {
            return Err(LambdaError::precondition(
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            ));
        }
        if let Some(d) = &req.description {
            validate::len_between(d, "description", 0, 256)?;
            alias.description = d.clone();
        }
        if let Some(v) = &req.function_version {
            alias.function_version = v.clone();
        }
        if let Some(r) = &req.routing_config {
            alias.routing_config =
                Some(r.clone()).filter(|r| !r.additional_version_weights.is_empty());
        }
        self.check_alias_target(
            &fref.name,
            &alias.function_version,
            alias.routing_config.as_ref(),
        )
        .await?;
        alias.revision_id = new_revision_id();
        self.commit(vec![Op::put(
            Table::Aliases,
            alias_key(&fref.name, name),
            &alias,
            Expect::Revision(rev),
        )])
        .await?;
        Ok(alias)
    }

    pub async fn delete_alias(&self, fref: &FunctionRef, name: &str) -> Result<()> {
        check_alias_name(name)?;
        // Deleting a missing alias succeeds, as on AWS.
        if let Some((_, rev)) = self
            .get_record::<AliasConfiguration>(Table::Aliases, &alias_key(&fref.name, name))
            .await?
        {
            let mut ops = vec![Op::delete(Table::Aliases, alias_key(&fref.name, name), rev)];
            ops.extend(self.event_config_delete_op(&fref.name, name).await?);
            ops.extend(self.url_delete_ops(&fref.name, Some(name)).await?);
            ops.extend(self.policy_delete_op(&fref.name, name).await?);
            self.commit(ops).await?;
        }
        Ok(())
    }
}
