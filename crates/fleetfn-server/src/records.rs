//! The stored records and their keys.

use fleetfn_model::types::{CapacityProvider, FunctionConfiguration, FunctionScalingConfig, Tags};
use serde::{Deserialize, Serialize};

/// A capacity provider and its tags (the wire shape has no `Tags` member).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacityProviderRecord {
    pub provider: CapacityProvider,
    #[serde(default)]
    pub tags: Tags,
}

impl CapacityProviderRecord {
    /// The provider's name (its store key): the last part of its ARN.
    pub fn name(&self) -> &str {
        provider_name(&self.provider)
    }
}

/// A capacity provider's name: the last part of its ARN.
pub fn provider_name(p: &CapacityProvider) -> &str {
    p.capacity_provider_arn
        .rsplit(':')
        .next()
        .unwrap_or_default()
}

/// A function: its `$LATEST` configuration, code and bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// Environment variable values are sealed in the store (`crate::secrets`).
    #[serde(with = "crate::secrets::sealed_config")]
    pub latest: FunctionConfiguration,
    /// Hex sha256 of the code package in the artifact store.
    pub code_hex: String,
    #[serde(default)]
    pub tags: Tags,
    /// The next numbered version.
    pub next_version: u64,
    /// Whether `PerExecutionEnvironmentMaxConcurrency` was set by the user (otherwise it follows
    /// the runtime's default for the current size).
    #[serde(default)]
    pub concurrency_explicit: bool,
    /// Publish hash and number of the newest numbered version.
    #[serde(default)]
    pub last_numbered: Option<(String, String)>,
    /// Set by DeleteFunction on capacity-provider functions; the reconciler finishes the job.
    #[serde(default)]
    pub deleting: bool,
    /// Unzipped size of the code package (`None` in records from before it was kept: read
    /// from the package when needed).
    #[serde(default)]
    pub code_unzipped: Option<u64>,
    /// The layer versions of `$LATEST`, in extraction order (`latest.layers` is their wire form).
    #[serde(default)]
    pub layers: Vec<LayerSnapshot>,
}

/// A layer version as a function (and each version published from it) keeps it: enough to run
/// it after the layer version itself is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSnapshot {
    /// The layer version ARN.
    pub arn: String,
    /// Hex sha256 of the layer's zip in the artifact store.
    pub sha256_hex: String,
    /// Zip size in bytes (`CodeSize`).
    pub size: u64,
    /// Unzipped size in bytes (counted against the function's unzipped limit).
    pub unzipped: u64,
}

/// Scaling config of one published version: what was asked for, and what is in effect.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScalingState {
    pub requested: Option<FunctionScalingConfig>,
    pub applied: FunctionScalingConfig,
}

/// A published version (numbered or `$LATEST.PUBLISHED`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    pub function: String,
    pub version: String,
    /// Environment variable values are sealed in the store (`crate::secrets`).
    #[serde(with = "crate::secrets::sealed_config")]
    pub config: FunctionConfiguration,
    pub code_hex: String,
    /// Hash of the configuration and code it was published from.
    pub publish_hash: String,
    pub scaling: ScalingState,
    /// Capacity provider name the version runs on.
    pub capacity_provider: Option<String>,
    /// The layer versions it was published with, in extraction order.
    #[serde(default)]
    pub layers: Vec<LayerSnapshot>,
}

pub const LATEST: &str = "$LATEST";
pub const LATEST_PUBLISHED: &str = "$LATEST.PUBLISHED";

/// Store key of a version: numbered versions zero-padded so they sort numerically.
pub fn version_key(function: &str, version: &str) -> String {
    match version.parse::<u64>() {
        Ok(n) => format!("{function}/{n:012}"),
        Err(_) => format!("{function}/{version}"),
    }
}

/// Store key of a layer version: the number zero-padded so versions sort numerically.
pub fn layer_version_key(layer: &str, version: u64) -> String {
    format!("{layer}/{version:012}")
}

pub fn alias_key(function: &str, alias: &str) -> String {
    format!("{function}/{alias}")
}

/// Secondary index: capacity provider → attached versions.
pub fn cp_version_key(cp: &str, function: &str, version: &str) -> String {
    format!("{cp}/{}", version_key(function, version))
}
