//! The routing table: per version key, the version's Ready environments (where an invoke may go)
//! and its counters. An invoke reads only its own version's entry, lock-free (`arc-swap`), and
//! never the data plane's state lock. The table is written only by `State`'s
//! methods, under the state's write lock (which serializes writers): an entry's list is rebuilt
//! from the state whenever one of the version's environments turns Ready, stops being Ready, or
//! goes (the agent-report watcher, environment start/stop, a lost or retired instance).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arc_swap::ArcSwap;
use rand::Rng;

use crate::instances::Instance;
use crate::stats::VersionStats;

/// A Ready environment the router may send an invoke to.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub env_id: String,
    pub instance: Arc<Instance>,
    /// Invokes the router has in flight on it (shared with the state's environment).
    pub in_flight: Arc<AtomicU32>,
    pub max_concurrency: u32,
    /// Which publish of the version it runs.
    pub publish_hash: String,
}

/// One version's entry: its Ready environments and its counters.
#[derive(Debug)]
pub(crate) struct VersionRoutes {
    ready: ArcSwap<Vec<Arc<Route>>>,
    pub stats: Arc<VersionStats>,
}

impl VersionRoutes {
    /// Ready environments to try, the current publish first (then an older one still serving
    /// during a rollout), least in flight first, ties broken at random so zones share the load;
    /// `exclude` (already tried) left out.
    pub(crate) fn candidates(&self, publish_hash: &str, exclude: &[String]) -> Vec<Arc<Route>> {
        let ready = self.ready.load();
        let mut rng = rand::rng();
        let mut c: Vec<(bool, u32, u32, &Arc<Route>)> = ready
            .iter()
            .filter(|r| !exclude.contains(&r.env_id))
            .map(|r| {
                (
                    r.publish_hash != publish_hash,
                    r.in_flight.load(Ordering::Relaxed),
                    rng.random::<u32>(),
                    r,
                )
            })
            .collect();
        c.sort_unstable_by_key(|(old, load, tie, _)| (*old, *load, *tie));
        c.into_iter().map(|(.., r)| r.clone()).collect()
    }

    /// Whether the router still routes to an environment (it is Ready).
    pub(crate) fn is_ready(&self, env_id: &str) -> bool {
        self.ready.load().iter().any(|r| r.env_id == env_id)
    }

    /// How many environments the version has Ready.
    #[cfg(test)]
    pub(crate) fn ready_count(&self) -> usize {
        self.ready.load().len()
    }
}

/// Version key (`fn/000000000001`, `fn/$LATEST.PUBLISHED`) → its routes.
#[derive(Debug, Default)]
pub(crate) struct RoutingTable {
    versions: ArcSwap<HashMap<String, Arc<VersionRoutes>>>,
}

impl RoutingTable {
    /// The version's entry, if it has one (lock-free).
    pub(crate) fn get(&self, vkey: &str) -> Option<Arc<VersionRoutes>> {
        self.versions.load().get(vkey).cloned()
    }

    /// Adds a version's entry with its counters and Ready environments. Writers only
    /// (serialized by the caller).
    pub(crate) fn insert(
        &self,
        vkey: &str,
        stats: Arc<VersionStats>,
        ready: Vec<Arc<Route>>,
    ) -> Arc<VersionRoutes> {
        let entry = Arc::new(VersionRoutes {
            ready: ArcSwap::from_pointee(ready),
            stats,
        });
        let mut map = HashMap::clone(&self.versions.load());
        map.insert(vkey.to_string(), entry.clone());
        self.versions.store(Arc::new(map));
        entry
    }

    /// Replaces a version's Ready environments; nothing when it has no entry (one is built from
    /// the state when it is created). Writers only.
    pub(crate) fn set_ready(&self, vkey: &str, ready: Vec<Arc<Route>>) {
        if let Some(entry) = self.versions.load().get(vkey) {
            entry.ready.store(Arc::new(ready));
        }
    }

    /// Keeps the entries of the versions `keep` says yes to; returns the counters of the others.
    /// Writers only.
    pub(crate) fn retain(&self, keep: impl Fn(&str) -> bool) -> Vec<Arc<VersionStats>> {
        let current = self.versions.load();
        if current.keys().all(|k| keep(k)) {
            return Vec::new();
        }
        let mut map = HashMap::with_capacity(current.len());
        let mut removed = Vec::new();
        for (k, v) in current.iter() {
            if keep(k) {
                map.insert(k.clone(), v.clone());
            } else {
                removed.push(v.stats.clone());
            }
        }
        self.versions.store(Arc::new(map));
        removed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use fleetfn_proto::AgentClient;

    pub(crate) fn instance(id: &str, zone: &str) -> Arc<Instance> {
        let t = fleetfn_scheduler::Catalog::builtin()
            .get("c7i.xlarge")
            .cloned()
            .expect("type in catalog");
        Arc::new(Instance {
            id: id.into(),
            zone: zone.into(),
            capacity_provider: "cp".into(),
            instance_type: t,
            client: Arc::new(AgentClient::new(
                "127.0.0.1:1".parse().expect("address"),
                "token",
            )),
        })
    }

    fn route(env: &str, publish: &str, in_flight: u32) -> Arc<Route> {
        Arc::new(Route {
            env_id: env.into(),
            instance: instance(&format!("i-{env}"), "z1"),
            in_flight: Arc::new(AtomicU32::new(in_flight)),
            max_concurrency: 4,
            publish_hash: publish.into(),
        })
    }

    fn ids(r: &[Arc<Route>]) -> Vec<&str> {
        r.iter().map(|r| r.env_id.as_str()).collect()
    }

    #[test]
    fn current_publish_first_then_least_in_flight_then_exclusions() {
        let t = RoutingTable::default();
        let v = t.insert(
            "f/1",
            Arc::default(),
            vec![
                route("old-idle", "p0", 0),
                route("busy", "p1", 3),
                route("idle", "p1", 0),
                route("half", "p1", 2),
            ],
        );
        // An older publish still serving comes after every environment of the current one,
        // however idle it is.
        assert_eq!(
            ids(&v.candidates("p1", &[])),
            ["idle", "half", "busy", "old-idle"]
        );
        // Tried environments are left out.
        assert_eq!(
            ids(&v.candidates("p1", &["idle".into(), "busy".into()])),
            ["half", "old-idle"]
        );
        // The ordering follows the live counters, not the ones at insertion.
        v.ready.load()[2].in_flight.store(9, Ordering::Relaxed);
        assert_eq!(ids(&v.candidates("p1", &[]))[0], "half");
        // Seen from the old publish (a request resolved before the rollout), the old one leads.
        assert_eq!(ids(&v.candidates("p0", &[]))[0], "old-idle");
    }

    #[test]
    fn ties_are_broken_at_random() {
        let t = RoutingTable::default();
        let v = t.insert(
            "f/1",
            Arc::default(),
            vec![route("a", "p", 1), route("b", "p", 1), route("c", "p", 1)],
        );
        let mut first = std::collections::HashSet::new();
        for _ in 0..200 {
            first.insert(v.candidates("p", &[])[0].env_id.clone());
        }
        // Each of three tied environments leads 1/3 of the time: all three in 200 draws
        // (missing one has a probability of about 3 × (2/3)^200).
        assert_eq!(first.len(), 3, "{first:?}");
    }

    #[test]
    fn entries_are_per_version_and_readers_keep_their_snapshot() {
        let t = RoutingTable::default();
        assert!(t.get("f/1").is_none());
        // A version with no entry is not given one by an update.
        t.set_ready("f/1", vec![route("a", "p", 0)]);
        assert!(t.get("f/1").is_none());
        let v1 = t.insert("f/1", Arc::default(), vec![route("a", "p", 0)]);
        let v2 = t.insert("g/1", Arc::default(), Vec::new());
        assert!(v1.is_ready("a"));
        assert!(!v2.is_ready("a"));
        // An update replaces only that version's list; an entry held by an invoke sees it.
        t.set_ready("f/1", vec![route("b", "p", 0), route("c", "p", 0)]);
        assert!(!v1.is_ready("a") && v1.is_ready("b"));
        assert_eq!(v1.ready_count(), 2);
        assert_eq!(v2.ready_count(), 0);
        // The counters are shared, not copied.
        v1.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let again = t.get("f/1").expect("entry");
        assert_eq!(again.stats.invocations.load(Ordering::Relaxed), 1);
        // Removing a version hands back its counters and leaves the others.
        let removed = t.retain(|k| k != "f/1");
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].invocations.load(Ordering::Relaxed), 1);
        assert!(t.get("f/1").is_none());
        assert!(t.get("g/1").is_some());
        assert!(t.retain(|_| true).is_empty());
    }
}
