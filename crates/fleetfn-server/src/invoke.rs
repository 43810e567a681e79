//! Qualifier resolution for Invoke, as LMI does it: unqualified means `$LATEST.PUBLISHED`,
//! `$LATEST` of a capacity-provider function is refused, aliases may route by weight.

use std::collections::HashMap;
use std::sync::Arc;

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::types::AliasConfiguration;
use fleetfn_model::{ErrorKind, LambdaError, Result, State};
use fleetfn_store::Table;
use parking_lot::Mutex;
// tokio's clock, so tests can pause it.
use tokio::time::Instant;

use crate::records::{LATEST, LATEST_PUBLISHED, VersionRecord, alias_key, version_key};
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

/// What a function name and qualifier resolve to, before alias weights are drawn.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    Version(Arc<VersionRecord>),
    Alias(Arc<AliasConfiguration>),
}

/// Resolutions keyed by `name\0qualifier`, valid for one generation of desired state: any
/// committed change bumps the generation and so invalidates every entry. With a `resolve_ttl`
/// (servers sharing a store) an entry is also dropped once older than it.
#[derive(Debug, Default)]
pub(crate) struct ResolveCache {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    /// When it was resolved, kept only under a `resolve_ttl`.
    at: Option<Instant>,
    resolved: Result<Resolved>,
}

/// Calls `f` with the cache key `name\0qualifier`, joined on the stack when it is short (a
/// hit allocates nothing).
fn with_key<R>(name: &str, qualifier: &str, f: impl FnOnce(&str) -> R) -> R {
    let len = name.len() + 1 + qualifier.len();
    let mut buf = [0u8; 256];
    if len > buf.len() {
        return f(&format!("{name}\0{qualifier}"));
    }
    buf[..name.len()].copy_from_slice(name.as_bytes());
    buf[name.len() + 1..len].copy_from_slice(qualifier.as_bytes());
    f(std::str::from_utf8(&buf[..len]).expect("two strs joined by NUL"))
}

/// Bound on cached resolutions; the cache is cleared when it grows past it.
const CACHE_MAX: usize = 10_000;

impl ControlPlane {
    async fn lookup(&self, name: &str, qualifier: Option<&str>) -> Result<Resolved> {
        // Read the generation before the store, so a result is never newer than its tag.
        let generation = *self.changed.borrow();
        let q = qualifier.unwrap_or("");
        let hit = with_key(name, q, |key| {
            let map = self.resolve_cache.entries.lock();
            let e = map.get(key)?;
            (e.generation == generation
                && self
                    .resolve_ttl
                    .is_none_or(|ttl| e.at.is_some_and(|at| at.elapsed() < ttl)))
            .then(|| e.resolved.clone())
        });
        if let Some(r) = hit {
            return r;
        }
        let at = self.resolve_ttl.map(|_| Instant::now());
        let r = self.lookup_uncached(name, qualifier).await;
        // A store failure is transient: never serve it from the cache.
        if r.as_ref().is_err_and(|e| e.kind == ErrorKind::Service) {
            return r;
        }
        {
            let mut map = self.resolve_cache.entries.lock();
            if map.len() >= CACHE_MAX {
                map.clear();
            }
            map.insert(
                format!("{name}\0{q}"),
                Entry {
                    generation,
                    at,
                    resolved: r.clone(),
                },
            );
        }
        r
    }

    async fn lookup_uncached(&self, name: &str, qualifier: Option<&str>) -> Result<Resolved> {
        let (f, _) = self.function(name).await?;
        if f.deleting {
            return Err(self.function_not_found(name, None));
        }
        if f.latest.capacity_provider_config.is_none() {
            return Err(LambdaError::invalid(
                "fleetfn runs functions configured with a capacity provider; this function has none. Create it with CapacityProviderConfig.",
            ));
        }
        match qualifier {
            Some(LATEST) => Err(LambdaError::invalid(
                "Functions configured with capacity provider configuration can't be invoked with $LATEST qualifier. To invoke this function, specify a published version qualifier or $LATEST.PUBLISHED.",
            )),
            None | Some(LATEST_PUBLISHED) => match self
                .get_record::<VersionRecord>(Table::Versions, &version_key(name, LATEST_PUBLISHED))
                .await?
            {
                Some((v, _)) => Ok(Resolved::Version(Arc::new(v))),
                None if qualifier.is_none() => Err(LambdaError::new(
                    ErrorKind::NoPublishedVersion,
                    "The function can't be invoked because no published version exists. For functions with capacity provider configuration, either publish a version to $LATEST.PUBLISHED, or specify a published version qualifier.",
                )),
                None => Err(self.function_not_found(name, Some(LATEST_PUBLISHED))),
            },
            Some(q) if q.chars().all(|c| c.is_ascii_digit()) => {
                Ok(Resolved::Version(Arc::new(self.version(name, q).await?.0)))
            }
            Some(alias) => {
                let (a, _) = self
                    .get_record::<AliasConfiguration>(Table::Aliases, &alias_key(name, alias))
                    .await?
                    .ok_or_else(|| self.function_not_found(name, Some(alias)))?;
                Ok(Resolved::Alias(Arc::new(a)))
            }
        }
    }

    /// The version an invoke runs on, checked to be invocable. `draw` is a uniform number in
    /// [0, 1) for weighted aliases. Served from memory until desired state changes.
    pub async fn resolve_invoke_target(
        &self,
        fref: &FunctionRef,
        draw: f64,
    ) -> Result<Arc<VersionRecord>> {
        let version = match self.lookup(&fref.name, fref.qualifier.as_deref()).await? {
            Resolved::Version(v) => v,
            Resolved::Alias(a) => {
                let target = pick_weighted(&a, draw);
                if target == LATEST {
                    return Err(LambdaError::invalid(format!(
                        "Alias {} points at $LATEST, which functions configured with a capacity provider can't invoke. Point the alias at a published version.",
                        a.name
                    )));
                }
                match self.lookup(&fref.name, Some(target)).await? {
                    Resolved::Version(v) => v,
                    Resolved::Alias(_) => {
                        return Err(LambdaError::service(format!(
                            "alias {} resolved to another alias",
                            a.name
                        )));
                    }
                }
            }
        };
        match version.config.state {
            State::Active => Ok(version),
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
