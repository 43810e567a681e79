//! Resource-based policies: AddPermission, RemovePermission and GetPolicy for a function
//! (unqualified), a version or an alias, each its own policy stored by `function/qualifier`.

use fleetfn_model::Result;
use fleetfn_model::policy::PolicyDocument;
use fleetfn_store::{Op, Table};
use serde::{Deserialize, Serialize};

use crate::records::LATEST;
use crate::service::ControlPlane;

/// A stored policy and its revision id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PolicyRecord {
    pub revision_id: String,
    pub document: PolicyDocument,
}

/// Store key of the policy of a function (`None`, or `$LATEST`), version or alias.
pub(crate) fn policy_key(function: &str, qualifier: Option<&str>) -> String {
    format!("{function}/{}", qualifier.unwrap_or(LATEST))
}

impl ControlPlane {
    /// The policy of a function (`None`), version or alias, if it has one.
    pub(crate) async fn policy_document(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<PolicyDocument>> {
        Ok(self
            .get_record::<PolicyRecord>(Table::Policies, &policy_key(function, qualifier))
            .await?
            .map(|(p, _)| p.document))
    }

    /// The op deleting the policy of one version or alias, if it has one.
    pub(crate) async fn policy_delete_op(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<Op>> {
        let key = policy_key(function, Some(qualifier));
        Ok(self
            .get_record::<serde::de::IgnoredAny>(Table::Policies, &key)
            .await?
            .map(|(_, rev)| Op::delete(Table::Policies, key, rev)))
    }

    /// Ops deleting every policy of `function` and its versions and aliases.
    pub(crate) async fn policy_delete_ops_all(&self, function: &str) -> Result<Vec<Op>> {
        Ok(self
            .list_records::<serde::de::IgnoredAny>(
                Table::Policies,
                &format!("{function}/"),
                None,
                100_000,
            )
            .await?
            .into_iter()
            .map(|(_, key, rev)| Op::delete(Table::Policies, key, rev))
            .collect())
    }
}
