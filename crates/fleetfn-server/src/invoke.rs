//! Qualifier resolution for Invoke, as LMI does it: unqualified means `$LATEST.PUBLISHED`,
//! `$LATEST` of a capacity-provider function is refused, aliases may route by weight.

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::types::AliasConfiguration;
use fleetfn_model::{ErrorKind, LambdaError, Result};
use fleetfn_store::Table;

use crate::records::{LATEST, LATEST_PUBLISHED, VersionRecord, alias_key};
use crate::service::ControlPlane;

/// Picks the version of a weighted alias for a uniform `draw` in [0, 1).
pub fn pick_weighted(alias: &AliasConfiguration, draw: f64) -> &str {
    if let Some(r) = &alias.routing_config {
        let mut acc = 0.0;
        for (version, weight) in &r.additional_version_weights {
            acc += weight;
            if draw < acc {
                return version;
            }
        }
    }
    &alias.function_version
}

impl ControlPlane {
    /// The version an invoke runs on, checked to be invocable.
    pub async fn resolve_invoke_target(
        &self,
        fref: &FunctionRef,
        draw: f64,
    ) -> Result<VersionRecord> {
        let (f, _) = self.function(&fref.name).await?;
        if f.deleting {
            return Err(self.function_not_found(&fref.name, None));
        }
        if f.latest.capacity_provider_config.is_none() {
            return Err(LambdaError::invalid(
                "fleetfn runs functions configured with a capacity provider; this function has none. Create it with CapacityProviderConfig.",
            ));
        }
        let version = match fref.qualifier.as_deref() {
            Some(LATEST) => {
                return Err(LambdaError::invalid(
                    "Functions configured with capacity provider configuration can't be invoked with $LATEST qualifier. To invoke this function, specify a published version qualifier or $LATEST.PUBLISHED.",
                ));
            }
            None | Some(LATEST_PUBLISHED) => {
                match self
                    .get_record::<VersionRecord>(
                        Table::Versions,
                        &self.version_key(&fref.name, LATEST_PUBLISHED),
                    )
                    .await?
                {
                    Some((v, _)) => v,
                    None if fref.qualifier.is_none() => {
                        return Err(LambdaError::new(
                            ErrorKind::NoPublishedVersion,
                            "The function can't be invoked because no published version exists. For functions with capacity provider configuration, either publish a version to $LATEST.PUBLISHED, or specify a published version qualifier.",
                        ));
                    }
                    None => return Err(self.function_not_found(&fref.name, Some(LATEST_PUBLISHED))),
                }
            }
            Some(q) if q.chars().all(|c| c.is_ascii_digit()) => {
                self.version(&fref.name, q).await?.0
            }
            Some(alias) => {
                let (a, _) = self
                    .get_record::<AliasConfiguration>(Table::Aliases, &alias_key(&fref.name, alias))
                    .await?
                    .ok_or_else(|| self.function_not_found(&fref.name, Some(alias)))?;
                let target = pick_weighted(&a, draw).to_string();
                if target == LATEST {
                    return Err(LambdaError::invalid(format!(
                        "Alias {alias} points at $LATEST, which functions configured with a capacity provider can't invoke. Point the alias at a published version."
                    )));
                }
                self.version(&fref.name, &target).await?.0
            }
        };
        match version.config.state.as_str() {
            "Active" => Ok(version),
            state => Err(LambdaError::conflict(format!(
                "The operation cannot be performed at this time. The function is currently in the following state: {state}{}",
                version
                    .config
                    .state_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetfn_model::types::AliasRoutingConfiguration;

    #[test]
    fn weighted_alias_split() {
        let mut a = AliasConfiguration {
            alias_arn: String::new(),
            name: "live".into(),
            function_version: "1".into(),
            description: String::new(),
            routing_config: Some(AliasRoutingConfiguration {
                additional_version_weights: [("2".to_string(), 0.25)].into_iter().collect(),
            }),
            revision_id: String::new(),
        };
        assert_eq!(pick_weighted(&a, 0.1), "2");
        assert_eq!(pick_weighted(&a, 0.3), "1");
        a.routing_config = None;
        assert_eq!(pick_weighted(&a, 0.1), "1");
    }
}
