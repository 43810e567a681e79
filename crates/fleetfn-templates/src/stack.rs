//! A deployed stack as the server stores it: its resources with their physical ids, and its outputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ResolvedOutput;

/// One stack: what was deployed from which template with which parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StackRecord {
    pub stack_name: String,
    pub stack_id: String,
    /// CREATE_COMPLETE, UPDATE_COMPLETE, ROLLBACK_COMPLETE, UPDATE_ROLLBACK_COMPLETE, ...
    pub stack_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    pub creation_time: String,
    #[serde(default)]
    pub last_updated_time: String,
    #[serde(default)]
    pub template_body: String,
    /// Parameter values as deployed; NoEcho ones are `****`.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: BTreeMap<String, StackResource>,
    #[serde(default)]
    pub outputs: BTreeMap<String, ResolvedOutput>,
}

/// One resource of a stack as applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StackResource {
    pub logical_id: String,
    pub resource_type: String,
    pub physical_id: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// The resolved properties as applied.
    #[serde(default)]
    pub properties: serde_json::Value,
    /// CREATE_COMPLETE, UPDATE_COMPLETE, ...
    #[serde(default)]
    pub status: String,
    /// The template's DeletionPolicy when applied (`Retain`: kept when removed from the stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
}
