//! Tags on functions and capacity providers, and GetAccountSettings.

use fleetfn_model::arn::{TaggableResource, parse_taggable};
use fleetfn_model::limits::{MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES};
use fleetfn_model::types::{AccountLimit, AccountUsage, GetAccountSettingsResponse, Tags};
use fleetfn_model::{LambdaError, Result};
use fleetfn_store::{Expect, Op, Table};

use crate::records::{CapacityProviderRecord, FunctionRecord, VersionRecord};
use crate::service::ControlPlane;
use crate::validate;

impl ControlPlane {
    async fn with_tags(
        &self,
        resource: &str,
        edit: impl FnOnce(&mut Tags) -> Result<()>,
    ) -> Result<Tags> {
        match parse_taggable(resource, &self.scope)? {
            TaggableResource::Function(name) => {
                let (mut rec, rev) = self.function(&name).await?;
                edit(&mut rec.tags)?;
                let tags = rec.tags.clone();
                self.commit(vec![Op::put(
                    Table::Functions,
                    name,
                    &rec,
                    Expect::Revision(rev),
                )])
                .await?;
                Ok(tags)
            }
            TaggableResource::CapacityProvider(name) => {
                let (mut rec, rev) = self
                    .get_record::<CapacityProviderRecord>(Table::CapacityProviders, &name)
                    .await?
                    .ok_or_else(|| {
                        LambdaError::not_found(format!("Capacity provider not found: {resource}"))
                    })?;
                edit(&mut rec.tags)?;
                let tags = rec.tags.clone();
                self.commit(vec![Op::put(
                    Table::CapacityProviders,
                    name,
                    &rec,
                    Expect::Revision(rev),
                )])
                .await?;
                Ok(tags)
            }
        }
    }

    pub async fn tag_resource(&self, resource: &str, tags: Option<Tags>) -> Result<()> {
        let tags = validate::required(&tags, "tags")?.clone();
        self.with_tags(resource, |current| {
            validate::tags(&tags, Some(current))?;
            current.extend(tags);
            Ok(())
        })
        .await
        .map(|_| ())
    }

    pub async fn untag_resource(&self, resource: &str, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Err(LambdaError::new(
                fleetfn_model::ErrorKind::Validation,
                "1 validation error detected: Value null at 'tagKeys' failed to satisfy constraint: Member must not be null",
            ));
        }
        self.with_tags(resource, |current| {
            for k in keys {
                current.remove(k);
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    pub async fn list_tags(&self, resource: &str) -> Result<Tags> {
        match parse_taggable(resource, &self.scope)? {
            TaggableResource::Function(name) => Ok(self.function(&name).await?.0.tags),
            TaggableResource::CapacityProvider(name) => Ok(self
                .get_record::<CapacityProviderRecord>(Table::CapacityProviders, &name)
                .await?
                .ok_or_else(|| {
                    LambdaError::not_found(format!("Capacity provider not found: {resource}"))
                })?
                .0
                .tags),
        }
    }

    pub async fn get_account_settings(&self) -> Result<GetAccountSettingsResponse> {
        let functions: Vec<(FunctionRecord, String, i64)> = self
            .list_records(Table::Functions, "", None, usize::MAX >> 1)
            .await?;
        let versions: Vec<(VersionRecord, String, i64)> = self
            .list_records(Table::Versions, "", None, usize::MAX >> 1)
            .await?;
        let total_code_size = functions
            .iter()
            .map(|(f, _, _)| f.latest.code_size)
            .sum::<u64>()
            + versions
                .iter()
                .map(|(v, _, _)| v.config.code_size)
                .sum::<u64>();
        Ok(GetAccountSettingsResponse {
            account_limit: AccountLimit {
                total_code_size: 80_530_636_800,
                code_size_unzipped: MAX_UNZIPPED_BYTES,
                code_size_zipped: MAX_ZIP_BYTES as u64,
                concurrent_executions: 1000,
                unreserved_concurrent_executions: 1000,
            },
            account_usage: AccountUsage {
                total_code_size,
                function_count: functions.len() as u64,
            },
        })
    }
}
