//! Event source mappings (SQS queues only): Create/Get/Update/Delete/ListEventSourceMappings
//! with AWS's validation, stored by UUID with the state AWS reports (`Creating` → `Enabled`,
//! `Enabling`, `Disabling`, `Updating`, `Deleting`); the pollers (fleetfn-events) read them
//! with [`ControlPlane::event_source_mappings`] and settle their transitions.

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::filter::Filters;
use fleetfn_model::types::{
    EventSourceMappingConfiguration, EventSourceMappingRequest, ListEventSourceMappingsResponse,
};
use fleetfn_model::{ErrorKind, LambdaError, Result};
use fleetfn_store::{Expect, Op, Table};
use serde::{Deserialize, Serialize};

use crate::service::ControlPlane;
use crate::validate;

/// A mapping and what its poller needs beside the wire shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventSourceMappingRecord {
    pub config: EventSourceMappingConfiguration,
    /// The function it invokes, and the qualifier it was given (`None`: unqualified).
    pub function: String,
    pub qualifier: Option<String>,
    /// Whether the user wants it polling.
    pub enabled: bool,
    /// Bumped by every change a running poller must pick up.
    pub generation: u64,
}

/// States of a mapping, as AWS names them.
pub mod esm_state {
    pub const CREATING: &str = "Creating";
    pub const ENABLING: &str = "Enabling";
    pub const ENABLED: &str = "Enabled";
    pub const DISABLING: &str = "Disabling";
    pub const DISABLED: &str = "Disabled";
    pub const UPDATING: &str = "Updating";
    pub const DELETING: &str = "Deleting";
}
use esm_state::*;

/// Largest `BatchSize` of a standard queue, and of a FIFO queue.
const MAX_BATCH: i64 = 10_000;
const MAX_FIFO_BATCH: i64 = 10;

/// An SQS queue ARN's name, or why it is not one fleetfn can poll.
fn sqs_queue_name(arn: &str) -> Result<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "sqs", region, account, name]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && !name.is_empty()
                && name.len() <= 80
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') =>
        {
            Ok(name)
        }
        ["arn", _, service, ..] if *service != "sqs" => Err(LambdaError::invalid(format!(
            "Unsupported event source type for {arn}: fleetfn polls Amazon SQS queues only (Kinesis, DynamoDB Streams, Kafka, Amazon MQ and DocumentDB sources are not available)."
        ))),
        _ => Err(LambdaError::invalid(format!(
            "{arn} is not a valid SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:QUEUE)."
        ))),
    }
}

impl ControlPlane {
    fn esm_arn(&self, uuid: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:event-source-mapping:{uuid}",
            self.scope.region, self.scope.account
        )
    }

    /// The function a mapping names, checked to exist (with its qualifier).
    async fn esm_function(&self, name: &str) -> Result<FunctionRef> {
        validate::len_between(name, "functionName", 1, 256)?;
        let f = FunctionRef::parse(name, &self.scope, 256)?;
        self.function(&f.name).await?;
        if let Some(q) = f.qualifier.as_deref()
            && q != crate::records::LATEST
        {
            self.resolve_qualifier_exists(&f.name, q).await?;
        }
        Ok(f)
    }

    async fn resolve_qualifier_exists(&self, function: &str, q: &str) -> Result<()> {
        let exists =
            if q == crate::records::LATEST_PUBLISHED || q.chars().all(|c| c.is_ascii_digit()) {
                self.version(function, q).await.is_ok()
            } else {
                self.get_record::<serde::de::IgnoredAny>(
                    Table::Aliases,
                    &crate::records::alias_key(function, q),
                )
                .await?
                .is_some()
            };
        if exists {
            Ok(())
        } else {
            Err(self.function_not_found(function, Some(q)))
        }
    }

    /// Checks the members every request may set, against the queue `arn`.
    fn check_esm_members(
        &self,
        req: &EventSourceMappingRequest,
        arn: &str,
        batch: i64,
        window: i64,
    ) -> Result<()> {
        let foreign = req.foreign_members();
        if !foreign.is_empty() {
            return Err(LambdaError::invalid(format!(
                "Unsupported parameter for an SQS event source: {}.",
                foreign.join(", ")
            )));
        }
        validate::int_between(batch, "batchSize", 1, MAX_BATCH)?;
        validate::int_between(window, "maximumBatchingWindowInSeconds", 0, 300)?;
        let fifo = sqs_queue_name(arn)?.ends_with(".fifo");
        if fifo && batch > MAX_FIFO_BATCH {
            return Err(LambdaError::invalid(format!(
                "BatchSize must be between 1 and {MAX_FIFO_BATCH} for FIFO queues; {batch} was given."
            )));
        }
        if batch > 10 && window < 1 {
            return Err(LambdaError::invalid(
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
            ));
        }
        if let Some(types) = &req.function_response_types {
            if types.len() > 1 {
                return Err(LambdaError::validation(
                    &format!("{types:?}"),
                    "functionResponseTypes",
                    "Member must have length less than or equal to 1",
                ));
            }
            for t in types {
                validate::one_of(t, "functionResponseTypes", &["ReportBatchItemFailures"])?;
            }
        }
        if let Some(n) = req
            .scaling_config
            .as_ref()
            .and_then(|s| s.maximum_concurrency)
        {
            validate::int_between(n, "scalingConfig.maximumConcurrency", 2, 1000)?;
        }
        if let Some(filters) = req
            .filter_criteria
            .as_ref()
            .and_then(|f| f.filters.as_ref())
        {
            Filters::parse(filters.iter().map(|f| f.pattern.as_deref().unwrap_or(""))).map_err(
                |e| LambdaError::invalid(format!("Invalid filter pattern definition: {e}")),
            )?;
        }
        if let Some(k) = &req.kms_key_arn {
            validate::kms_arn(k, "kMSKeyArn")?;
        }
        Ok(())
    }

    pub async fn create_event_source_mapping(
        &self,
        req: EventSourceMappingRequest,
    ) -> Result<EventSourceMappingConfiguration> {
        let name = validate::required(&req.function_name, "functionName")?;
        let arn = req.event_source_arn.clone().ok_or_else(|| {
            LambdaError::invalid(
                "EventSourceArn is required: the ARN of the SQS queue to poll (fleetfn polls SQS queues only).",
            )
        })?;
        let batch = req.batch_size.unwrap_or(10);
        let window = req.maximum_batching_window_in_seconds.unwrap_or(0);
        self.check_esm_members(&req, &arn, batch, window)?;
        let f = self.esm_function(name).await?;
        for (existing, _) in self.event_source_mappings().await? {
            if existing.config.event_source_arn == arn && existing.function == f.name {
                return Err(LambdaError::conflict(format!(
                    "An event source mapping with SQS arn (\" {arn} \") and function (\" {} \") already exists. Please update or delete the existing mapping with UUID {}",
                    f.name, existing.config.uuid
                )));
            }
        }
        let uuid = crate::service::new_revision_id();
        let rec = EventSourceMappingRecord {
            config: EventSourceMappingConfiguration {
                event_source_mapping_arn: self.esm_arn(&uuid),
                uuid: uuid.clone(),
                batch_size: batch,
                maximum_batching_window_in_seconds: window,
                event_source_arn: arn,
                filter_criteria: req.filter_criteria.clone(),
                function_arn: match &f.qualifier {
                    Some(q) => self.scope.qualified_function_arn(&f.name, q),
                    None => self.scope.function_arn(&f.name),
                },
                last_modified: now_secs(),
                last_processing_result: None,
                state: CREATING.into(),
                state_transition_reason: "USER_INITIATED".into(),
                function_response_types: req.function_response_types.clone(),
                scaling_config: req.scaling_config.clone(),
                kms_key_arn: req.kms_key_arn.clone(),
            },
            function: f.name,
            qualifier: f.qualifier,
            enabled: req.enabled.unwrap_or(true),
            generation: 1,
        };
        self.commit(vec![Op::put(
            Table::EventSourceMappings,
            &uuid,
            &rec,
            Expect::Absent,
        )])
        .await?;
        Ok(rec.config)
    }

    async fn esm(&self, uuid: &str) -> Result<(EventSourceMappingRecord, i64)> {
        validate::len_between(uuid, "uUID", 36, 36)?;
        self.get_record(Table::EventSourceMappings, uuid)
            .await?
            .ok_or_else(|| {
                LambdaError::not_found(format!(
                    "The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: -): event source mapping {uuid}"
                ))
            })
    }

    pub async fn get_event_source_mapping(
        &self,
        uuid: &str,
    ) -> Result<EventSourceMappingConfiguration> {
        Ok(self.esm(uuid).await?.0.config)
    }

    pub async fn update_event_source_mapping(
        &self,
        uuid: &str,
        req: EventSourceMappingRequest,
    ) -> Result<EventSourceMappingConfiguration> {
        if req.event_source_arn.is_some() {
            return Err(LambdaError::invalid(
                "EventSourceArn cannot be changed: delete the mapping and create one for the other queue.",
            ));
        }
        let (mut rec, rev) = self.esm(uuid).await?;
        let c = &rec.config;
        if [CREATING, ENABLING, DISABLING, UPDATING, DELETING].contains(&c.state.as_str()) {
            return Err(LambdaError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Cannot update the event source mapping {uuid} because it is {}; retry once it is Enabled or Disabled.",
                    c.state
                ),
            ));
        }
        let batch = req.batch_size.unwrap_or(c.batch_size);
        let window = req
            .maximum_batching_window_in_seconds
            .unwrap_or(c.maximum_batching_window_in_seconds);
        let arn = c.event_source_arn.clone();
        self.check_esm_members(&req, &arn, batch, window)?;
        if let Some(name) = &req.function_name {
            let f = self.esm_function(name).await?;
            rec.config.function_arn = match &f.qualifier {
                Some(q) => self.scope.qualified_function_arn(&f.name, q),
                None => self.scope.function_arn(&f.name),
            };
            rec.function = f.name;
            rec.qualifier = f.qualifier;
        }
        rec.config.batch_size = batch;
        rec.config.maximum_batching_window_in_seconds = window;
        if let Some(t) = req.function_response_types {
            rec.config.function_response_types = (!t.is_empty()).then_some(t);
        }
        if let Some(s) = req.scaling_config {
            rec.config.scaling_config = s.maximum_concurrency.is_some().then_some(s);
        }
        if let Some(f) = req.filter_criteria {
            rec.config.filter_criteria = f
                .filters
                .as_ref()
                .is_some_and(|v| !v.is_empty())
                .then_some(f);
        }
        if let Some(k) = req.kms_key_arn {
            rec.config.kms_key_arn = (!k.is_empty()).then_some(k);
        }
        let was_enabled = rec.enabled;
        if let Some(e) = req.enabled {
            rec.enabled = e;
        }
        rec.config.state = match (was_enabled, rec.enabled) {
            (false, true) => ENABLING,
            (true, false) => DISABLING,
            _ => UPDATING,
        }
        .into();
        rec.config.state_transition_reason = "USER_INITIATED".into();
        rec.config.last_modified = now_secs();
        rec.generation += 1;
        self.commit(vec![Op::put(
            Table::EventSourceMappings,
            uuid,
            &rec,
            Expect::Revision(rev),
        )])
        .await
        .map_err(|e| {
            if e.kind == ErrorKind::ResourceConflict {
                LambdaError::new(
                    ErrorKind::ResourceInUse,
                    format!("The event source mapping {uuid} changed concurrently; retry."),
                )
            } else {
                e
            }
        })?;
        Ok(rec.config)
    }

    /// DeleteEventSourceMapping: `Deleting` now; the poller stops and removes it.
    pub async fn delete_event_source_mapping(
        &self,
        uuid: &str,
    ) -> Result<EventSourceMappingConfiguration> {
        for _ in 0..crate::service::RACE_ATTEMPTS {
            let (mut rec, rev) = self.esm(uuid).await?;
            if rec.config.state == DELETING {
                return Ok(rec.config);
            }
            rec.config.state = DELETING.into();
            rec.config.state_transition_reason = "USER_INITIATED".into();
            rec.config.last_modified = now_secs();
            rec.generation += 1;
            if self
                .commit_unless_raced(vec![Op::put(
                    Table::EventSourceMappings,
                    uuid,
                    &rec,
                    Expect::Revision(rev),
                )])
                .await?
                .is_some()
            {
                return Ok(rec.config);
            }
        }
        Err(LambdaError::new(
            ErrorKind::ResourceInUse,
            format!("The event source mapping {uuid} is changing; retry."),
        ))
    }

    pub async fn list_event_source_mappings(
        &self,
        event_source_arn: Option<&str>,
        function_name: Option<&str>,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<ListEventSourceMappingsResponse> {
        let max = match max_items {
            Some(m) => {
                validate::int_between(i64::from(m), "maxItems", 1, 10_000)?;
                m as usize
            }
            None => 100,
        };
        let function = match function_name {
            Some(n) => Some(FunctionRef::parse(n, &self.scope, 256)?),
            None => None,
        };
        let mut items: Vec<EventSourceMappingConfiguration> = self
            .event_source_mappings()
            .await?
            .into_iter()
            .filter(|(r, _)| event_source_arn.is_none_or(|a| r.config.event_source_arn == a))
            .filter(|(r, _)| {
                function.as_ref().is_none_or(|f| {
                    r.function == f.name && (f.qualifier.is_none() || r.qualifier == f.qualifier)
                })
            })
            .filter(|(r, _)| marker.is_none_or(|m| r.config.uuid.as_str() > m))
            .map(|(r, _)| r.config)
            .collect();
        items.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        let next_marker = (items.len() > max).then(|| {
            items.truncate(max);
            items.last().map(|c| c.uuid.clone()).unwrap_or_default()
        });
        Ok(ListEventSourceMappingsResponse {
            event_source_mappings: items,
            next_marker,
        })
    }

    /// Every mapping with its store revision (what the pollers follow).
    pub async fn event_source_mappings(&self) -> Result<Vec<(EventSourceMappingRecord, i64)>> {
        Ok(self
            .list_records::<EventSourceMappingRecord>(Table::EventSourceMappings, "", None, 100_000)
            .await?
            .into_iter()
            .map(|(r, _, rev)| (r, rev))
            .collect())
    }

    /// Moves a mapping from the state it had at `rev` to `state` (a poller started, stopped
    /// or picked up an update); `false` when it changed meanwhile.
    pub async fn settle_event_source_mapping(
        &self,
        uuid: &str,
        rev: i64,
        mut rec: EventSourceMappingRecord,
        state: &str,
    ) -> Result<bool> {
        rec.config.state = state.into();
        Ok(self
            .commit_unless_raced(vec![Op::put(
                Table::EventSourceMappings,
                uuid,
                &rec,
                Expect::Revision(rev),
            )])
            .await?
            .is_some())
    }

    /// Removes a `Deleting` mapping whose poller stopped.
    pub async fn remove_event_source_mapping(&self, uuid: &str, rev: i64) -> Result<bool> {
        Ok(self
            .commit_unless_raced(vec![Op::delete(Table::EventSourceMappings, uuid, rev)])
            .await?
            .is_some())
    }

    /// Records the outcome of the latest poll (`OK` or `PROBLEM: …`), if it changed.
    pub async fn note_event_source_result(&self, uuid: &str, result: &str) -> Result<()> {
        for _ in 0..crate::service::RACE_ATTEMPTS {
            let Some((mut rec, rev)) = self
                .get_record::<EventSourceMappingRecord>(Table::EventSourceMappings, uuid)
                .await?
            else {
                return Ok(());
            };
            if rec.config.last_processing_result.as_deref() == Some(result) {
                return Ok(());
            }
            rec.config.last_processing_result = Some(result.to_owned());
            if self
                .commit_unless_raced(vec![Op::put(
                    Table::EventSourceMappings,
                    uuid,
                    &rec,
                    Expect::Revision(rev),
                )])
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Ok(())
    }
}

fn now_secs() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::sqs_queue_name;

    #[test]
    fn only_sqs_queue_arns_are_sources() {
        assert_eq!(
            sqs_queue_name("arn:aws:sqs:us-east-1:123456789012:jobs.fifo").unwrap(),
            "jobs.fifo"
        );
        for (arn, says) in [
            (
                "arn:aws:kinesis:us-east-1:123456789012:stream/s",
                "SQS queues only",
            ),
            (
                "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
                "SQS queues only",
            ),
            ("arn:aws:sqs:us-east-1:123:q", "not a valid SQS queue ARN"),
            (
                "arn:aws:sqs:us-east-1:123456789012:",
                "not a valid SQS queue ARN",
            ),
            (
                "arn:aws:sqs:us-east-1:123456789012:a/b",
                "not a valid SQS queue ARN",
            ),
            ("sqs", "not a valid SQS queue ARN"),
        ] {
            let e = sqs_queue_name(arn).unwrap_err();
            assert!(e.message.contains(says), "{arn}: {}", e.message);
        }
    }
}
