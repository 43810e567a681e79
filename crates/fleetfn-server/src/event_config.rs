//! Asynchronous invocation configs: Put/Update/Get/Delete/ListFunctionEventInvokeConfig(s) for a
//! function, version or alias (stored by `function/qualifier`, unqualified as `$LATEST`), and
//! [`ControlPlane::event_invoke_config`], what the async dispatcher applies to an event.

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::destination::parse_destination;
use fleetfn_model::types::{
    Destination, DestinationConfig, FunctionEventInvokeConfig,
    ListFunctionEventInvokeConfigsResponse, PutFunctionEventInvokeConfigRequest,
};
use fleetfn_model::{LambdaError, Result};
use fleetfn_store::{Expect, Op, Table};

use crate::records::{LATEST, LATEST_PUBLISHED, alias_key};
use crate::service::ControlPlane;
use crate::validate;

/// Store key of a config.
fn config_key(function: &str, qualifier: &str) -> String {
    format!("{function}/{qualifier}")
}

/// `MaximumRetryAttempts` when none is configured.
pub const DEFAULT_RETRY_ATTEMPTS: i64 = 2;
/// `MaximumEventAgeInSeconds` when none is configured (6 hours).
pub const DEFAULT_EVENT_AGE_SECS: i64 = 21_600;

impl ControlPlane {
    /// The qualifier a config is stored under, after checking that the function and the
    /// version or alias exist.
    async fn config_qualifier(&self, fref: &FunctionRef) -> Result<String> {
        self.function(&fref.name).await?;
        let q = fref.qualifier.clone().unwrap_or_else(|| LATEST.to_owned());
        if q == LATEST {
            return Ok(q);
        }
        if q == LATEST_PUBLISHED || q.chars().all(|c| c.is_ascii_digit()) {
            self.version(&fref.name, &q).await?;
            return Ok(q);
        }
        let found = self
            .get_record::<serde::de::IgnoredAny>(Table::Aliases, &alias_key(&fref.name, &q))
            .await?;
        if found.is_none() {
            return Err(self.function_not_found(&fref.name, Some(&q)));
        }
        Ok(q)
    }

    fn check_event_config(&self, req: &PutFunctionEventInvokeConfigRequest) -> Result<()> {
        if let Some(n) = req.maximum_retry_attempts {
            validate::int_between(n, "maximumRetryAttempts", 0, 2)?;
        }
        if let Some(n) = req.maximum_event_age_in_seconds {
            validate::int_between(n, "maximumEventAgeInSeconds", 60, 21_600)?;
        }
        if let Some(d) = &req.destination_config {
            for (dest, path) in [
                (&d.on_success, "destinationConfig.onSuccess.destination"),
                (&d.on_failure, "destinationConfig.onFailure.destination"),
            ] {
                if let Some(arn) = dest.as_ref().and_then(|x| x.destination.as_deref()) {
                    validate::len_between(arn, path, 0, 350)?;
                    if !arn.is_empty() {
                        parse_destination(arn, &self.scope)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// PutFunctionEventInvokeConfig (`merge` false: replaces the whole config) and
    /// UpdateFunctionEventInvokeConfig (`merge` true: only the given members change).
    pub async fn put_event_invoke_config(
        &self,
        fref: &FunctionRef,
        req: PutFunctionEventInvokeConfigRequest,
        merge: bool,
    ) -> Result<FunctionEventInvokeConfig> {
        self.check_event_config(&req)?;
        let q = self.config_qualifier(fref).await?;
        let key = config_key(&fref.name, &q);
        for _ in 0..crate::service::RACE_ATTEMPTS {
            let existing = self
                .get_record::<FunctionEventInvokeConfig>(Table::EventInvokeConfigs, &key)
                .await?;
            let mut cfg = match (&existing, merge) {
                (Some((c, _)), true) => c.clone(),
                _ => FunctionEventInvokeConfig {
                    last_modified: 0.0,
                    function_arn: self.scope.qualified_function_arn(&fref.name, &q),
                    maximum_retry_attempts: None,
                    maximum_event_age_in_seconds: None,
                    destination_config: None,
                },
            };
            if req.maximum_retry_attempts.is_some() || !merge {
                cfg.maximum_retry_attempts = req.maximum_retry_attempts;
            }
            if req.maximum_event_age_in_seconds.is_some() || !merge {
                cfg.maximum_event_age_in_seconds = req.maximum_event_age_in_seconds;
            }
            let mut dest = cfg.destination_config.take().unwrap_or_default();
            if let Some(given) = &req.destination_config {
                if given.on_success.is_some() || !merge {
                    dest.on_success = given.on_success.clone();
                }
                if given.on_failure.is_some() || !merge {
                    dest.on_failure = given.on_failure.clone();
                }
            } else if !merge {
                dest = DestinationConfig::default();
            }
            // As AWS answers: both members present, empty when unset.
            let norm = |d: Option<Destination>| {
                Some(Destination {
                    destination: d.and_then(|d| d.destination).filter(|a| !a.is_empty()),
                })
            };
            cfg.destination_config = Some(DestinationConfig {
                on_success: norm(dest.on_success),
                on_failure: norm(dest.on_failure),
            });
            cfg.last_modified = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
            let expect = existing
                .as_ref()
                .map_or(Expect::Absent, |(_, rev)| Expect::Revision(*rev));
            if self
                .commit_unless_raced(vec![Op::put(Table::EventInvokeConfigs, &key, &cfg, expect)])
                .await?
                .is_some()
            {
                return Ok(cfg);
            }
        }
        Err(LambdaError::conflict(format!(
            "The event invoke config of {} is being changed concurrently. Retry the request.",
            self.scope.qualified_function_arn(&fref.name, &q)
        )))
    }

    fn no_config(&self, fref: &FunctionRef, q: &str) -> LambdaError {
        LambdaError::not_found(format!(
            "The function {} doesn't have an EventInvokeConfig",
            self.scope.qualified_function_arn(&fref.name, q)
        ))
    }

    pub async fn get_event_invoke_config(
        &self,
        fref: &FunctionRef,
    ) -> Result<FunctionEventInvokeConfig> {
        let q = self.config_qualifier(fref).await?;
        self.get_record(Table::EventInvokeConfigs, &config_key(&fref.name, &q))
            .await?
            .map(|(c, _)| c)
            .ok_or_else(|| self.no_config(fref, &q))
    }

    pub async fn delete_event_invoke_config(&self, fref: &FunctionRef) -> Result<()> {
        let q = self.config_qualifier(fref).await?;
        let key = config_key(&fref.name, &q);
        let Some((_, rev)) = self
            .get_record::<FunctionEventInvokeConfig>(Table::EventInvokeConfigs, &key)
            .await?
        else {
            return Err(self.no_config(fref, &q));
        };
        self.commit(vec![Op::delete(Table::EventInvokeConfigs, key, rev)])
            .await?;
        Ok(())
    }

    pub async fn list_event_invoke_configs(
        &self,
        fref: &FunctionRef,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<ListFunctionEventInvokeConfigsResponse> {
        if let Some(m) = max_items {
            validate::int_between(i64::from(m), "maxItems", 1, 50)?;
        }
        self.function(&fref.name).await?;
        let page = self
            .page::<FunctionEventInvokeConfig>(
                Table::EventInvokeConfigs,
                &format!("{}/", fref.name),
                marker,
                max_items,
                50,
            )
            .await?;
        Ok(ListFunctionEventInvokeConfigsResponse {
            function_event_invoke_configs: page.items.into_iter().map(|(c, _, _)| c).collect(),
            next_marker: page.next_marker,
        })
    }

    /// The config that applies to an event invoked with `qualifier` (`None`: unqualified), if
    /// any; the dispatcher reads it for every attempt, so a change applies to queued events.
    pub async fn event_invoke_config(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<FunctionEventInvokeConfig>> {
        let q = qualifier.unwrap_or(LATEST);
        Ok(self
            .get_record(Table::EventInvokeConfigs, &config_key(function, q))
            .await?
            .map(|(c, _)| c))
    }

    /// The op deleting the config of one version or alias, if it has one.
    pub(crate) async fn event_config_delete_op(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<Op>> {
        let key = config_key(function, qualifier);
        Ok(self
            .get_record::<serde::de::IgnoredAny>(Table::EventInvokeConfigs, &key)
            .await?
            .map(|(_, rev)| Op::delete(Table::EventInvokeConfigs, key, rev)))
    }

    /// Ops deleting every event invoke config of `function` (the function is being deleted).
    pub(crate) async fn event_config_delete_ops(&self, function: &str) -> Result<Vec<Op>> {
        Ok(self
            .list_records::<serde::de::IgnoredAny>(
                Table::EventInvokeConfigs,
                &format!("{function}/"),
                None,
                100_000,
            )
            .await?
            .into_iter()
            .map(|(_, key, rev)| Op::delete(Table::EventInvokeConfigs, key, rev))
            .collect())
    }
}
