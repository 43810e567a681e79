//! What the data plane reads and writes: the versions to deploy, and their state transitions
//! (`Pending` → `Active` when their environments are Ready, `Failed` with a reason when they
//! cannot start, `LastUpdateStatus` of a `$LATEST.PUBLISHED` rollout).

use fleetfn_model::types::CapacityProvider;
use fleetfn_model::{LastUpdateStatus, Result, State};
use fleetfn_store::{Expect, Op, Table};

use crate::records::{CapacityProviderRecord, VersionRecord, version_key};
use crate::service::ControlPlane;

/// A state change the data plane reports for one published version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionTransition {
    /// Its environments are Ready: `State=Active`, `LastUpdateStatus=Successful`.
    Active,
    /// It cannot run: `State=Failed` (or, for a rollout of an Active `$LATEST.PUBLISHED`,
    /// `LastUpdateStatus=Failed`) with an LMI reason code and a readable reason.
    Failed { reason_code: String, reason: String },
}

impl ControlPlane {
    /// Every published version of a capacity-provider function, with the store revision.
    pub async fn deployable_versions(&self) -> Result<Vec<VersionRecord>> {
        let all: Vec<(VersionRecord, String, i64)> = self
            .list_records(Table::Versions, "", None, usize::MAX >> 1)
            .await?;
        Ok(all
            .into_iter()
            .map(|(v, _, _)| v)
            .filter(|v| v.capacity_provider.is_some())
            .collect())
    }

    /// Every capacity provider (for status), by name.
    pub async fn capacity_providers_by_name(&self) -> Result<Vec<(String, CapacityProvider)>> {
        let all: Vec<(CapacityProviderRecord, String, i64)> = self
            .list_records(Table::CapacityProviders, "", None, usize::MAX >> 1)
            .await?;
        Ok(all
            .into_iter()
            .map(|(r, _, _)| (r.name().to_string(), r.provider))
            .collect())
    }

    /// A capacity provider by name, if it exists.
    pub async fn capacity_provider_by_name(&self, name: &str) -> Result<Option<CapacityProvider>> {
        Ok(self
            .get_record::<CapacityProviderRecord>(Table::CapacityProviders, name)
            .await?
            .map(|(r, _)| r.provider))
    }

    /// Applies a transition to the version if it is still the one published with
    /// `publish_hash`; returns whether anything changed.
    pub async fn transition_version(
        &self,
        function: &str,
        version: &str,
        publish_hash: &str,
        t: &VersionTransition,
    ) -> Result<bool> {
        let key = version_key(function, version);
        let Some((mut v, rev)) = self
            .get_record::<VersionRecord>(Table::Versions, &key)
            .await?
        else {
            return Ok(false);
        };
        if v.publish_hash != publish_hash || v.config.state == State::Deleting {
            return Ok(false);
        }
        let c = &mut v.config;
        let before = (c.state, c.last_update_status);
        match t {
            VersionTransition::Active => {
                c.state = State::Active;
                c.state_reason = None;
                c.state_reason_code = None;
                c.last_update_status = LastUpdateStatus::Successful;
                c.last_update_status_reason = None;
                c.last_update_status_reason_code = None;
            }
            VersionTransition::Failed {
                reason_code,
                reason,
            } => {
                if c.state == State::Active {
                    // A failed rollout leaves the running version serving.
                    c.last_update_status = LastUpdateStatus::Failed;
                    c.last_update_status_reason = Some(reason.clone());
                    c.last_update_status_reason_code = Some(reason_code.clone());
                } else {
                    c.state = State::Failed;
                    c.state_reason = Some(reason.clone());
                    c.state_reason_code = Some(reason_code.clone());
                    c.last_update_status = LastUpdateStatus::Failed;
                    c.last_update_status_reason = Some(reason.clone());
                    c.last_update_status_reason_code = Some(reason_code.clone());
                }
            }
        }
        if (c.state, c.last_update_status) == before {
            return Ok(false);
        }
        self.commit(vec![Op::put(
            Table::Versions,
            key,
            &v,
            Expect::Revision(rev),
        )])
        .await?;
        Ok(true)
    }
}
