//! Usage for cost accounting, in hour buckets: instance-seconds per (capacity provider, instance
//! type, zone) and requests with their billed duration per function version. The data plane adds
//! deltas; `fleetfn cost` sums the buckets of a window. Usage writes do not count as changes of
//! desired state (they wake no reconciler and keep the invoke cache).

use std::collections::BTreeMap;

use fleetfn_store::{Expect, Op, Table};
use serde::{Deserialize, Serialize};

use crate::service::{ControlPlane, decode, store_err};

/// Instance time of one (provider, type, zone) in one hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceUsage {
    pub capacity_provider: String,
    pub instance_type: String,
    pub zone: String,
    pub seconds: f64,
}

/// Requests of one function version in one hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionUsage {
    pub function: String,
    pub version: String,
    pub capacity_provider: String,
    /// `x86_64` or `arm64`.
    pub architecture: String,
    pub memory_mb: u32,
    pub requests: u64,
    /// Sum of each request's duration rounded up to the millisecond (Lambda's billing unit).
    pub billed_ms: u64,
}

/// One stored bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum UsageRecord {
    Instance {
        hour: i64,
        /// The earliest second (Unix) the bucket covers; 0 when unknown (the hour's start).
        #[serde(default)]
        since: i64,
        #[serde(flatten)]
        usage: InstanceUsage,
    },
    Version {
        hour: i64,
        #[serde(default)]
        since: i64,
        #[serde(flatten)]
        usage: VersionUsage,
    },
}

impl UsageRecord {
    pub fn hour(&self) -> i64 {
        match self {
            Self::Instance { hour, .. } | Self::Version { hour, .. } => *hour,
        }
    }

    /// The earliest second the bucket covers.
    pub fn since(&self) -> i64 {
        match self {
            Self::Instance { hour, since, .. } | Self::Version { hour, since, .. } => {
                if *since > 0 { *since } else { hour * 3600 }
            }
        }
    }

    fn since_mut(&mut self) -> &mut i64 {
        match self {
            Self::Instance { since, .. } | Self::Version { since, .. } => since,
        }
    }

    fn key(&self) -> String {
        match self {
            Self::Instance { hour, usage, .. } => format!(
                "{hour:012}/i/{}/{}/{}",
                usage.capacity_provider, usage.instance_type, usage.zone
            ),
            Self::Version { hour, usage, .. } => {
                format!("{hour:012}/v/{}/{}", usage.function, usage.version)
            }
        }
    }

    /// Adds another bucket's figures with the same key.
    fn add(&mut self, other: &Self) {
        let first = self.since().min(other.since());
        *self.since_mut() = first;
        match (self, other) {
            (Self::Instance { usage: a, .. }, Self::Instance { usage: b, .. }) => {
                a.seconds += b.seconds;
            }
            (Self::Version { usage: a, .. }, Self::Version { usage: b, .. }) => {
                a.requests += b.requests;
                a.billed_ms += b.billed_ms;
                a.memory_mb = b.memory_mb;
                a.architecture.clone_from(&b.architecture);
            }
            _ => {}
        }
    }
}

impl ControlPlane {
    /// Adds usage deltas to their hour buckets (read, add, conditional write; retried on a
    /// concurrent write).
    pub async fn record_usage(&self, deltas: Vec<UsageRecord>) -> fleetfn_model::Result<()> {
        let mut merged: BTreeMap<String, UsageRecord> = BTreeMap::new();
        for d in deltas {
            match merged.get_mut(&d.key()) {
                Some(m) => m.add(&d),
                None => {
                    merged.insert(d.key(), d);
                }
            }
        }
        for (key, delta) in merged {
            for attempt in 0..5 {
                let current = self
                    .store
                    .get(Table::Usage, &key)
                    .await
                    .map_err(store_err)?;
                let (value, expect) = match current {
                    Some(rec) => {
                        let mut v: UsageRecord = decode(&rec)?;
                        v.add(&delta);
                        (v, Expect::Revision(rec.revision))
                    }
                    None => (delta.clone(), Expect::Absent),
                };
                let op = Op::Put {
                    table: Table::Usage,
                    key: key.clone(),
                    value: serde_json::to_vec(&value).map_err(|e| {
                        fleetfn_model::LambdaError::service(format!("encoding usage: {e}"))
                    })?,
                    expect,
                };
                match self.store.commit(vec![op]).await {
                    Ok(_) => break,
                    Err(fleetfn_store::StoreError::Conflict { .. }) if attempt < 4 => {}
                    Err(e) => return Err(store_err(e)),
                }
            }
        }
        Ok(())
    }

    /// Every usage bucket from `since_hour` (hours since the Unix epoch) on.
    pub async fn usage_since(&self, since_hour: i64) -> fleetfn_model::Result<Vec<UsageRecord>> {
        let all: Vec<(UsageRecord, String, i64)> = self
            .list_records(Table::Usage, "", None, usize::MAX >> 1)
            .await?;
        Ok(all
            .into_iter()
            .map(|(r, _, _)| r)
            .filter(|r| r.hour() >= since_hour)
            .collect())
    }
}
