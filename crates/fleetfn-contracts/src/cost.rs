//! `GET /fleetfn/v1/cost`: the report of `fleetfn_cost` over the window it covers.

use serde::{Deserialize, Serialize};

/// The cost report with its window: `Since` (the start of the data it covers, at or after the
/// asked time) and `Until` (now), as Lambda timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CostDocument {
    pub since: String,
    pub until: String,
    #[serde(flatten)]
    pub report: fleetfn_cost::Report,
}
