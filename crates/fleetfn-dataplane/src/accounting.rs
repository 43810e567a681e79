//! Usage metering for `fleetfn cost`: every scaler tick adds each instance's seconds (by capacity
//! provider, type and zone) and each version's new requests and billed milliseconds to pending
//! hour-bucket deltas, which are written to the store every [`FLUSH_EVERY`] and before a cost
//! report is read. A follower (a `fleetfn server` that does not lead) meters the requests it
//! routed, never instance time (the leader's); the store adds every server's deltas.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetfn_contracts::CostDocument;
use fleetfn_server::VersionRecord;
use fleetfn_server::records::version_key;
use fleetfn_server::usage::{InstanceUsage, UsageRecord, VersionUsage};
use tokio::time::Instant;

use crate::DataPlane;
use crate::state::State;
use crate::version::display_version;

/// How often metered usage is written to the store.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(10);

/// The metering memory: where each instance and version was at the last tick.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// Instance id → (last tick, provider, type, zone).
    instances: HashMap<String, (Instant, String, String, String)>,
    /// Version key → (requests, billed ms) at the last tick.
    versions: HashMap<String, (u64, u64)>,
    pending: Vec<UsageRecord>,
}

fn now_second() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl Meter {
    /// Folds the time since the last tick (with `instance_time`) and the new requests into
    /// pending deltas.
    pub(crate) fn tick(
        &mut self,
        s: &State,
        now: Instant,
        versions: &[VersionRecord],
        instance_time: bool,
    ) {
        let second = now_second();
        let hour = second.div_euclid(3600);
        let mut deltas = Vec::new();
        let mut seen = Vec::new();
        for slot in s.instances.values().filter(|_| instance_time) {
            seen.push(slot.id.clone());
            match self.instances.get_mut(&slot.id) {
                Some((last, ..)) => {
                    let dt = now.saturating_duration_since(*last).as_secs_f64();
                    *last = now;
                    deltas.push(instance_delta(
                        second,
                        &slot.capacity_provider,
                        &slot.instance_type.name,
                        &slot.zone,
                        dt,
                    ));
                }
                None => {
                    self.instances.insert(
                        slot.id.clone(),
                        (
                            now,
                            slot.capacity_provider.clone(),
                            slot.instance_type.name.clone(),
                            slot.zone.clone(),
                        ),
                    );
                }
            }
        }
        // Instances gone since the last tick ran until some time in it: count it whole.
        self.instances.retain(|id, (last, cp, t, zone)| {
            if seen.contains(id) {
                return true;
            }
            let dt = now.saturating_duration_since(*last).as_secs_f64();
            deltas.push(instance_delta(second, cp, t, zone, dt));
            false
        });
        for v in versions {
            let vkey = version_key(&v.function, &v.version);
            let Some(stats) = s.existing_stats(&vkey) else {
                continue;
            };
            let now_counts = (
                stats.invocations.load(Ordering::Relaxed),
                stats.billed_ms.load(Ordering::Relaxed),
            );
            let before = self.versions.insert(vkey, now_counts).unwrap_or((0, 0));
            let requests = now_counts.0.saturating_sub(before.0);
            if requests == 0 {
                continue;
            }
            deltas.push(UsageRecord::Version {
                hour,
                since: second,
                usage: VersionUsage {
                    function: v.function.clone(),
                    version: display_version(&v.version),
                    capacity_provider: v.capacity_provider.clone().unwrap_or_default(),
                    architecture: v
                        .config
                        .architectures
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "x86_64".into()),
                    memory_mb: v.config.memory_size,
                    requests,
                    billed_ms: now_counts.1.saturating_sub(before.1),
                },
            });
        }
        self.pending.extend(deltas);
    }
}

/// `seconds` of instance time ending at `second` (Unix).
fn instance_delta(second: i64, cp: &str, t: &str, zone: &str, seconds: f64) -> UsageRecord {
    #[allow(clippy::cast_possible_truncation)]
    let since = second - seconds.ceil() as i64;
    UsageRecord::Instance {
        hour: second.div_euclid(3600),
        since,
        usage: InstanceUsage {
            capacity_provider: cp.to_string(),
            instance_type: t.to_string(),
            zone: zone.to_string(),
            seconds,
        },
    }
}

impl DataPlane {
    /// A follower's metering tick: the requests it routed since the last one.
    pub(crate) async fn meter_routed(&self) {
        let Ok(versions) = self.cp.deployable_versions().await else {
            return;
        };
        let s = self.state.read();
        self.meter
            .lock()
            .tick(&s, Instant::now(), &versions, !self.follower);
    }

    /// Writes pending usage to the store (kept for the next try if the write fails).
    pub(crate) async fn flush_usage(&self) {
        let pending = std::mem::take(&mut self.meter.lock().pending);
        if pending.is_empty() {
            return;
        }
        if let Err(e) = self.cp.record_usage(pending.clone()).await {
            tracing::warn!(error = %e, "writing usage failed; retrying with the next flush");
            self.meter.lock().pending.extend(pending);
        }
    }

    /// The cost report for the window from `since` to now (`fleetfn cost`).
    pub(crate) async fn cost_document(
        &self,
        since: jiff::Timestamp,
    ) -> fleetfn_model::Result<CostDocument> {
        // Everything up to now, not only up to the last tick.
        let versions = self.cp.deployable_versions().await?;
        {
            let s = self.state.read();
            self.meter
                .lock()
                .tick(&s, Instant::now(), &versions, !self.follower);
        }
        self.flush_usage().await;
        let now = jiff::Timestamp::now();
        let records = self
            .cp
            .usage_since(since.as_second().div_euclid(3600))
            .await?;
        let mut instances = Vec::new();
        let mut requests = Vec::new();
        let mut earliest = now.as_second();
        for r in records {
            earliest = earliest.min(r.since());
            match r {
                UsageRecord::Instance { usage, .. } => {
                    instances.push(fleetfn_cost::InstanceSeconds {
                        capacity_provider: usage.capacity_provider,
                        instance_type: usage.instance_type,
                        zone: usage.zone,
                        seconds: usage.seconds,
                    });
                }
                UsageRecord::Version { usage, .. } => requests.push(fleetfn_cost::Requests {
                    capacity_provider: usage.capacity_provider,
                    function: usage.function,
                    version: usage.version,
                    arch: if usage.architecture == "arm64" {
                        fleetfn_scheduler::Arch::Arm64
                    } else {
                        fleetfn_scheduler::Arch::X86_64
                    },
                    memory_mb: usage.memory_mb,
                    requests: usage.requests,
                    billed_ms: usage.billed_ms,
                }),
            }
        }
        // The window is what the data covers: from `since`, or from the first bucket when the
        // data starts later (a server that ran for ten minutes is not diluted over a day).
        let start = since.as_second().max(earliest);
        #[allow(clippy::cast_precision_loss)]
        let window = (now.as_second() - start).max(1) as f64;
        let report = fleetfn_cost::report(
            window,
            &instances,
            &requests,
            &self.cfg.catalog,
            &self.cfg.lambda_prices,
            &self.cfg.discounts,
        );
        Ok(CostDocument {
            since: fleetfn_model::time::lambda_timestamp(
                jiff::Timestamp::from_second(start).unwrap_or(since),
            ),
            until: fleetfn_model::time::lambda_timestamp(now),
            report,
        })
    }
}
