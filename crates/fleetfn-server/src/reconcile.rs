//! The reconciler: finishes the asynchronous parts of control-plane operations. Capacity
//! providers go `Pending` → `Active` (a provider without functions needs no instances) and
//! `Deleting` → gone; functions marked for deletion lose their versions, aliases and record;
//! requested scaling configs become the applied desired state.

use std::time::Duration;

use fleetfn_model::time::now_lambda;
use fleetfn_model::{CapacityProviderState, Result, State};
use fleetfn_store::{Op, Table};
use tokio_util::sync::CancellationToken;

use crate::records::{FunctionRecord, VersionRecord};
use crate::service::ControlPlane;

/// How often the reconciler runs when nothing wakes it.
const PERIOD: Duration = Duration::from_secs(1);

impl ControlPlane {
    /// One pass over all records; returns how many records it changed.
    pub async fn reconcile_once(&self) -> Result<usize> {
        let mut changed = 0;
        for (mut rec, rev) in self.all_capacity_providers().await? {
            let key = rec.name().to_string();
            let ops = match rec.provider.state {
                CapacityProviderState::Pending => {
                    rec.provider.state = CapacityProviderState::Active;
                    rec.provider.last_modified = now_lambda();
                    vec![Op::put(
                        Table::CapacityProviders,
                        key,
                        &rec,
                        fleetfn_store::Expect::Revision(rev),
                    )]
                }
                CapacityProviderState::Deleting => {
                    vec![Op::delete(Table::CapacityProviders, key, rev)]
                }
                _ => continue,
            };
            // A concurrent change wins; the next pass sees it.
            if self.commit(ops).await.is_ok() {
                changed += 1;
            }
        }
        let functions: Vec<(FunctionRecord, String, i64)> = self
            .list_records(Table::Functions, "", None, usize::MAX >> 1)
            .await?;
        for (f, key, rev) in functions {
            if !f.deleting {
                continue;
            }
            let mut ops = vec![Op::delete(Table::Functions, key.clone(), rev)];
            ops.extend(self.version_and_alias_delete_ops(&key).await?);
            if self.commit(ops).await.is_ok() {
                changed += 1;
            }
        }
        let versions: Vec<(VersionRecord, String, i64)> = self
            .list_records(Table::Versions, "", None, usize::MAX >> 1)
            .await?;
        for (mut v, key, rev) in versions {
            if v.config.state == State::Deleting {
                // Versions of a function being deleted go with their function above.
                let function_deleting = self
                    .get_record::<FunctionRecord>(Table::Functions, &v.function)
                    .await?
                    .is_some_and(|(f, _)| f.deleting);
                if !function_deleting && self.remove_version(&v, rev).await.is_ok() {
                    changed += 1;
                }
                continue;
            }
            if let Some(req) = v.scaling.requested.take() {
                v.scaling.applied = req;
                if self
                    .commit(vec![Op::put(
                        Table::Versions,
                        key,
                        &v,
                        fleetfn_store::Expect::Revision(rev),
                    )])
                    .await
                    .is_ok()
                {
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }

    /// Runs the reconciler until `stop` is cancelled: at once when desired state changes, and
    /// every second regardless.
    pub fn spawn_reconciler(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let cp = self.clone();
        let mut changes = self.changes();
        tokio::spawn(async move {
            loop {
                if let Err(e) = cp.reconcile_once().await {
                    tracing::warn!(error = %e, "reconcile pass failed");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = changes.changed() => {}
                    () = tokio::time::sleep(PERIOD) => {}
                }
            }
        })
    }
}
