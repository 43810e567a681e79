//! The server's own calls to SQS (`SendMessage`, JSON protocol), SNS (`Publish`, query
//! protocol) and EventBridge (`PutEvents`, JSON 1.1), for the destinations and dead-letter
//! queues of asynchronous invocations, and to SQS as a consumer (`ReceiveMessage`,
//! `DeleteMessageBatch`, `ChangeMessageVisibilityBatch`, `GetQueueAttributes`) for the pollers
//! of event source mappings; signed (SigV4) with the server's credentials in the region of the
//! queue's, topic's or bus's ARN.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::utf8_percent_encode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::transport::{
    AwsError, FORM, HttpClient, MAX_ANSWER, SignedPost, excerpt, json_error, query_error,
    verified_client,
};
use crate::{SourceChain, SourceError};

/// How long one call may take (a long poll: this beyond its wait).
const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest `ReceiveMessage` answer read: ten messages of up to 1 MiB each (body and message
/// attributes), which JSON's escapes can double, and their system attributes.
const RECEIVE_MAX_ANSWER: usize = 32 * 1024 * 1024;

/// Most entries SQS takes in one batch request.
const SQS_BATCH: usize = 10;

/// Where the server sends destination records.
#[derive(Debug, Clone, Default)]
pub struct ServicesConfig {
    /// One AWS-compatible endpoint for every service (`http://127.0.0.1:5000` for moto);
    /// `None`: AWS's regional endpoints, `https://{sqs|sns|events}.{region}.amazonaws.com`
    /// (`.amazonaws.com.cn` in China), the region taken from the target's ARN.
    pub endpoint: Option<String>,
}

/// Why a record could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Not an ARN of the service called.
    #[error("bad ARN {arn:?}: {detail}")]
    BadArn {
        /// The ARN given.
        arn: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The service answered with an error (`QueueDoesNotExist`, `AuthorizationError`...), or
    /// EventBridge failed the entry.
    #[error("{service} refused: {code}: {message}")]
    Refused {
        /// `SQS`, `SNS` or `EventBridge`.
        service: &'static str,
        /// The HTTP status of the answer.
        status: u16,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The service could not be reached, did not answer in time, or answered something else
    /// than its documents.
    #[error("{endpoint} could not be used: {detail}")]
    Unavailable {
        /// The endpoint tried.
        endpoint: String,
        /// What went wrong.
        detail: String,
    },
    /// The server's own credentials are gone (an instance role that could not be read).
    #[error("the server's AWS credentials are unavailable: {0}")]
    Source(#[from] SourceError),
}

impl ServiceError {
    /// Whether trying again later may succeed: the service unreachable, failing (5xx, an
    /// internal failure of an EventBridge entry) or throttling, the server's own credentials
    /// unreadable for a moment; not a refusal or a bad ARN.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Refused { status, code, .. } => {
                *status >= 500
                    || matches!(
                        code.as_str(),
                        "Throttling"
                            | "ThrottlingException"
                            | "ThrottledException"
                            | "RequestThrottled"
                            | "RequestThrottledException"
                            | "TooManyRequestsException"
                            | "RequestLimitExceeded"
                            | "KmsThrottled"
                            | "InternalFailure"
                            | "InternalError"
                            | "InternalException"
                            | "ServiceUnavailable"
                    )
            }
            Self::BadArn { .. } => false,
            Self::Unavailable { .. } | Self::Source(_) => true,
        }
    }

    /// Whether the service said the queue, topic or bus does not exist (`QueueDoesNotExist`,
    /// the query protocol's `AWS.SimpleQueueService.NonExistentQueue`, `NotFound`,
    /// `ResourceNotFoundException`).
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Refused { code, .. } => matches!(
                code.as_str(),
                "QueueDoesNotExist"
                    | "AWS.SimpleQueueService.NonExistentQueue"
                    | "NonExistentQueue"
                    | "NotFound"
                    | "ResourceNotFoundException"
            ),
            _ => false,
        }
    }

    /// The service's error code, for what the function's owner is told (messages and
    /// endpoints stay in the server's log).
    pub fn code(&self) -> &str {
        match self {
            Self::BadArn { .. } => "the target is not a valid ARN of its service",
            Self::Refused { code, .. } => code,
            Self::Unavailable { .. } => "the service could not be reached",
            Self::Source(_) => "the server's AWS credentials are unavailable",
        }
    }
}

/// A message [`AwsServices::sqs_receive`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsMessage {
    /// `MessageId`.
    pub message_id: String,
    /// `ReceiptHandle`: what deletes the message or changes its visibility, for this receive.
    pub receipt_handle: String,
    /// `Body`.
    pub body: String,
    /// `MD5OfBody` (hex; as SQS said it, not checked).
    pub md5_of_body: String,
    /// System attributes (`ApproximateReceiveCount`, `SentTimestamp`, `SenderId`,
    /// `ApproximateFirstReceiveTimestamp`, `MessageGroupId`…), as SQS names them.
    pub attributes: BTreeMap<String, String>,
    /// Message attributes by name.
    pub message_attributes: BTreeMap<String, SqsMessageAttribute>,
}

/// A message attribute of an [`SqsMessage`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqsMessageAttribute {
    /// `String`, `Number`, `Binary`, or one of them with a custom `.suffix`.
    pub data_type: String,
    /// The value of a `String` or `Number` attribute.
    pub string_value: Option<String>,
    /// The value of a `Binary` attribute, base64 as on the wire.
    pub binary_value: Option<String>,
    /// Reserved by SQS (lists are not implemented); kept when given.
    pub string_list_values: Vec<String>,
    /// Reserved by SQS; base64, kept when given.
    pub binary_list_values: Vec<String>,
}

/// What a poller needs to know of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqsQueueAttributes {
    /// `VisibilityTimeout`, in seconds.
    pub visibility_timeout_secs: u32,
    /// A FIFO queue (a `.fifo` name, or `FifoQueue` true).
    pub fifo: bool,
}

/// Calls SQS, SNS and EventBridge with the server's credentials.
#[derive(Debug, Clone)]
pub struct AwsServices {
    /// Without a trailing `/`.
    endpoint: Option<String>,
    source: Arc<SourceChain>,
    http: HttpClient,
}

/// The parts of an ARN a call needs.
#[derive(Debug, PartialEq, Eq)]
struct Arn<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
    /// What follows the account (`NAME`, `event-bus/NAME`), without `:`.
    resource: &'a str,
}

impl<'a> Arn<'a> {
    /// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE` of `service`, for a partition whose
    /// endpoints are known.
    fn parse(arn: &'a str, service: &str) -> Result<Self, String> {
        if arn.len() > 2048 {
            return Err("longer than 2048 characters".into());
        }
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, svc, region, account, resource] = parts[..] else {
            return Err(format!(
                "not arn:PARTITION:{service}:REGION:ACCOUNT:RESOURCE"
            ));
        };
        if prefix != "arn" {
            return Err("does not start with arn:".into());
        }
        if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
            return Err(format!("unknown partition {partition:?}"));
        }
        if svc != service {
            return Err(format!("an ARN of {svc:?}, not of {service:?}"));
        }
        let region_ok = !region.is_empty()
            && region.len() <= 32
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !region.starts_with('-')
            && !region.ends_with('-');
        if !region_ok {
            return Err(format!("bad region {region:?}"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad account {account:?} (12 digits)"));
        }
        if resource.contains(':') {
            return Err(format!("bad resource {resource:?} (a ':' in it)"));
        }
        Ok(Self {
            partition,
            region,
            account,
            resource,
        })
    }

    /// `https://{service}.{region}.amazonaws.com` (`.com.cn` in China).
    fn aws_endpoint(&self, service: &str) -> String {
        let suffix = match self.partition {
            "aws-cn" => "amazonaws.com.cn",
            _ => "amazonaws.com",
        };
        format!("https://{service}.{}.{suffix}", self.region)
    }
}

/// A queue or topic name: letters, digits, `-` and `_`, at most `max` characters with an
/// optional `.fifo` suffix.
fn check_name(name: &str, max: usize, what: &str) -> Result<(), String> {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    let ok = !base.is_empty()
        && name.len() <= max
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("bad {what} name {name:?}"))
    }
}

/// How a service is spoken to.
#[derive(Clone, Copy)]
enum Protocol {
    /// JSON: `X-Amz-Target`, this content type, `{"__type":…}` errors.
    Json {
        target: &'static str,
        content_type: &'static str,
    },
    /// Query: a form, `<ErrorResponse>` errors.
    Query,
}

/// One call: where, how, what.
struct Call<'a> {
    /// `SQS`, `SNS`, `EventBridge` (for errors).
    name: &'static str,
    /// The signing service.
    service: &'static str,
    region: &'a str,
    endpoint: &'a str,
    protocol: Protocol,
    body: String,
    /// How long the whole exchange may take.
    timeout: Duration,
    /// Largest answer read.
    max_answer: usize,
}

/// The queue an SQS call is about.
struct Queue<'a> {
    arn: Arn<'a>,
    /// Without a trailing `/`.
    endpoint: String,
    /// `{endpoint}/ACCOUNT/NAME`.
    url: String,
}

/// `null` read as absent (the JSON protocols' documents may carry either).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What `ReceiveMessage` is asked for: every system and message attribute.
const ALL: [&str; 1] = ["All"];

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessageRequest<'a> {
    queue_url: &'a str,
    max_number_of_messages: u8,
    wait_time_seconds: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility_timeout: Option<u32>,
    /// The older name of `MessageSystemAttributeNames`, for servers that know only it.
    attribute_names: [&'static str; 1],
    message_system_attribute_names: [&'static str; 1],
    message_attribute_names: [&'static str; 1],
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessageResult {
    #[serde(default, deserialize_with = "null_default")]
    messages: Vec<ReceivedMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceivedMessage {
    message_id: String,
    receipt_handle: String,
    body: String,
    #[serde(rename = "MD5OfBody", default, deserialize_with = "null_default")]
    md5_of_body: String,
    #[serde(default, deserialize_with = "null_default")]
    attributes: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    message_attributes: BTreeMap<String, ReceivedAttribute>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceivedAttribute {
    data_type: String,
    string_value: Option<String>,
    binary_value: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    string_list_values: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    binary_list_values: Vec<String>,
}

impl From<ReceivedMessage> for SqsMessage {
    fn from(m: ReceivedMessage) -> Self {
        Self {
            message_id: m.message_id,
            receipt_handle: m.receipt_handle,
            body: m.body,
            md5_of_body: m.md5_of_body,
            attributes: m.attributes,
            message_attributes: m
                .message_attributes
                .into_iter()
                .map(|(name, a)| {
                    let a = SqsMessageAttribute {
                        data_type: a.data_type,
                        string_value: a.string_value,
                        binary_value: a.binary_value,
                        string_list_values: a.string_list_values,
                        binary_list_values: a.binary_list_values,
                    };
                    (name, a)
                })
                .collect(),
        }
    }
}

/// `DeleteMessageBatch` and `ChangeMessageVisibilityBatch`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchRequest<'a> {
    queue_url: &'a str,
    entries: Vec<BatchEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchEntry<'a> {
    id: &'a str,
    receipt_handle: &'a str,
    /// `ChangeMessageVisibilityBatch` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility_timeout: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResult {
    #[serde(default, deserialize_with = "null_default")]
    failed: Vec<BatchFailure>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchFailure {
    id: String,
    #[serde(default, deserialize_with = "null_default")]
    code: String,
    #[serde(default, deserialize_with = "null_default")]
    message: String,
    #[serde(default, deserialize_with = "null_default")]
    sender_fault: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributesRequest<'a> {
    queue_url: &'a str,
    /// Not `FifoQueue`: SQS refuses it of a standard queue (`InvalidAttributeName`).
    attribute_names: [&'static str; 1],
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributesResult {
    #[serde(default, deserialize_with = "null_default")]
    attributes: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageRequest<'a> {
    queue_url: &'a str,
    message_body: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    message_attributes: BTreeMap<&'a str, StringAttribute<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StringAttribute<'a> {
    data_type: &'static str,
    string_value: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageResult {
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishResponse {
    publish_result: PublishResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishResult {
    message_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutEventsRequest<'a> {
    entries: [PutEventsEntry<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutEventsEntry<'a> {
    source: &'a str,
    detail_type: &'a str,
    detail: &'a str,
    event_bus_name: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    resources: &'a [&'a str],
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutEventsResult {
    failed_entry_count: u32,
    #[serde(default)]
    entries: Vec<PutEventsResultEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutEventsResultEntry {
    event_id: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
}

/// Attributes by name, the last value of a name given twice.
fn attribute_map<'a>(attributes: &[(&'a str, &'a str)]) -> BTreeMap<&'a str, &'a str> {
    attributes.iter().copied().collect()
}

impl AwsServices {
    /// Clients signing with `source`; `https://` endpoints are verified against the host's
    /// roots.
    pub fn new(cfg: ServicesConfig, source: Arc<SourceChain>) -> Result<Self, ServiceError> {
        let endpoint = match cfg.endpoint {
            Some(e) => {
                let e = e.trim_end_matches('/').to_owned();
                let usable = e.parse::<http::Uri>().ok().is_some_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https"))
                        && u.host().is_some_and(|h| !h.is_empty())
                        && u.query().is_none()
                });
                if !usable {
                    return Err(ServiceError::Unavailable {
                        endpoint: e,
                        detail: "not an http:// or https:// URL".into(),
                    });
                }
                Some(e)
            }
            None => None,
        };
        let https = endpoint
            .as_deref()
            .is_none_or(|e| e.starts_with("https://"));
        let http = verified_client(https).map_err(|detail| ServiceError::Unavailable {
            endpoint: endpoint
                .clone()
                .unwrap_or_else(|| "https://*.amazonaws.com".to_owned()),
            detail,
        })?;
        Ok(Self {
            endpoint,
            source,
            http,
        })
    }

    /// The ARN's parts, or [`ServiceError::BadArn`].
    fn arn<'a>(arn: &'a str, service: &str) -> Result<Arn<'a>, ServiceError> {
        Arn::parse(arn, service).map_err(|detail| ServiceError::BadArn {
            arn: arn.to_owned(),
            detail,
        })
    }

    /// The endpoint of `service` for `arn`, without a trailing `/`.
    fn endpoint(&self, service: &str, arn: &Arn<'_>) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => arn.aws_endpoint(service),
        }
    }

    /// SQS `SendMessage` to the queue `queue_arn` names (`arn:aws:sqs:REGION:ACCOUNT:NAME`, the
    /// queue URL `{endpoint}/ACCOUNT/NAME`), with String message attributes (the last value
    /// of a name given twice).
    pub async fn sqs_send_message(
        &self,
        queue_arn: &str,
        body: &str,
        attributes: &[(&str, &str)],
    ) -> Result<(), ServiceError> {
        let queue = self.queue(queue_arn)?;
        let doc = SendMessageRequest {
            queue_url: &queue.url,
            message_body: body,
            message_attributes: attribute_map(attributes)
                .into_iter()
                .map(|(name, value)| {
                    let v = StringAttribute {
                        data_type: "String",
                        string_value: value,
                    };
                    (name, v)
                })
                .collect(),
        };
        let result: SendMessageResult = self
            .sqs_call(&queue, "AmazonSQS.SendMessage", &doc, TIMEOUT, MAX_ANSWER)
            .await?;
        tracing::debug!(
            queue = queue_arn,
            message_id = result.message_id,
            "sent to SQS"
        );
        Ok(())
    }

    /// SNS `Publish` to `topic_arn` (`arn:aws:sns:REGION:ACCOUNT:NAME`), with String message
    /// attributes (the last value of a name given twice).
    pub async fn sns_publish(
        &self,
        topic_arn: &str,
        message: &str,
        attributes: &[(&str, &str)],
    ) -> Result<(), ServiceError> {
        let arn = Self::arn(topic_arn, "sns")?;
        check_name(arn.resource, 256, "topic").map_err(|detail| ServiceError::BadArn {
            arn: topic_arn.to_owned(),
            detail,
        })?;
        let endpoint = self.endpoint("sns", &arn);
        let mut form = format!(
            "Action=Publish&Version=2010-03-31&TopicArn={}&Message={}",
            utf8_percent_encode(topic_arn, FORM),
            utf8_percent_encode(message, FORM)
        );
        for (n, (name, value)) in attribute_map(attributes).into_iter().enumerate() {
            let key = format!("MessageAttributes.entry.{}", n + 1);
            form.push_str(&format!(
                "&{key}.Name={}&{key}.Value.DataType=String&{key}.Value.StringValue={}",
                utf8_percent_encode(name, FORM),
                utf8_percent_encode(value, FORM)
            ));
        }
        let answer = self
            .call(Call {
                name: "SNS",
                service: "sns",
                region: arn.region,
                endpoint: &endpoint,
                protocol: Protocol::Query,
                body: form,
                timeout: TIMEOUT,
                max_answer: MAX_ANSWER,
            })
            .await?;
        let doc: PublishResponse = quick_xml::de::from_reader(answer.as_ref())
            .map_err(|e| unavailable(&endpoint, format!("reading the Publish answer: {e}")))?;
        tracing::debug!(
            topic = topic_arn,
            message_id = doc.publish_result.message_id,
            "published to SNS"
        );
        Ok(())
    }

    /// EventBridge `PutEvents` of one entry onto the bus `bus_arn` names
    /// (`arn:aws:events:REGION:ACCOUNT:event-bus/NAME`); a failed entry is
    /// [`ServiceError::Refused`] with its `ErrorCode` and `ErrorMessage`.
    pub async fn put_event(
        &self,
        bus_arn: &str,
        source: &str,
        detail_type: &str,
        detail: &str,
        resources: &[&str],
    ) -> Result<(), ServiceError> {
        let arn = Self::arn(bus_arn, "events")?;
        let bus = arn.resource.strip_prefix("event-bus/").unwrap_or_default();
        let bus_ok = !bus.is_empty()
            && bus.len() <= 256
            && bus
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !bus_ok {
            return Err(ServiceError::BadArn {
                arn: bus_arn.to_owned(),
                detail: format!("not event-bus/NAME: {:?}", arn.resource),
            });
        }
        let endpoint = self.endpoint("events", &arn);
        let doc = PutEventsRequest {
            entries: [PutEventsEntry {
                source,
                detail_type,
                detail,
                event_bus_name: bus_arn,
                resources,
            }],
        };
        let answer = self
            .call(Call {
                name: "EventBridge",
                service: "events",
                region: arn.region,
                endpoint: &endpoint,
                protocol: Protocol::Json {
                    target: "AWSEvents.PutEvents",
                    content_type: "application/x-amz-json-1.1",
                },
                body: to_json(&doc, &endpoint)?,
                timeout: TIMEOUT,
                max_answer: MAX_ANSWER,
            })
            .await?;
        let result: PutEventsResult = serde_json::from_slice(&answer)
            .map_err(|e| unavailable(&endpoint, format!("reading the PutEvents answer: {e}")))?;
        if result.failed_entry_count > 0 {
            let failed = result.entries.into_iter().find(|e| e.error_code.is_some());
            return Err(match failed {
                Some(PutEventsResultEntry {
                    error_code: Some(code),
                    error_message,
                    ..
                }) => ServiceError::Refused {
                    service: "EventBridge",
                    status: 200,
                    code,
                    message: error_message.unwrap_or_default(),
                },
                _ => unavailable(
                    &endpoint,
                    format!(
                        "FailedEntryCount {} without an ErrorCode",
                        result.failed_entry_count
                    ),
                ),
            });
        }
        let event_id = result.entries.into_iter().find_map(|e| e.event_id);
        tracing::debug!(bus = bus_arn, event_id, "put to EventBridge");
        Ok(())
    }

    /// SQS `ReceiveMessage` from the queue `queue_arn` names: up to `max` messages (1 to 10),
    /// waiting up to `wait_secs` (0 to 20) for the first (a long poll; the call may take 10 s
    /// more), hidden for `visibility_timeout` seconds (`None`: the queue's), with all their
    /// system and message attributes. No message: an empty list.
    pub async fn sqs_receive(
        &self,
        queue_arn: &str,
        max: u8,
        wait_secs: u8,
        visibility_timeout: Option<u32>,
    ) -> Result<Vec<SqsMessage>, ServiceError> {
        let queue = self.queue(queue_arn)?;
        let wait_secs = wait_secs.min(20);
        let doc = ReceiveMessageRequest {
            queue_url: &queue.url,
            max_number_of_messages: max.clamp(1, 10),
            wait_time_seconds: wait_secs,
            visibility_timeout,
            attribute_names: ALL,
            message_system_attribute_names: ALL,
            message_attribute_names: ALL,
        };
        let timeout = receive_timeout(wait_secs);
        let result: ReceiveMessageResult = self
            .sqs_call(
                &queue,
                "AmazonSQS.ReceiveMessage",
                &doc,
                timeout,
                RECEIVE_MAX_ANSWER,
            )
            .await?;
        tracing::trace!(
            queue = queue_arn,
            messages = result.messages.len(),
            "received from SQS"
        );
        Ok(result.messages.into_iter().map(SqsMessage::from).collect())
    }

    /// SQS `DeleteMessageBatch` of `(entry id, receipt handle)`s (ids distinct; more than 10
    /// are sent 10 at a time): the entries SQS failed, as `(entry id, error code)`
    /// (`ReceiptHandleIsInvalid`...), which is not an error of the call.
    pub async fn sqs_delete_batch(
        &self,
        queue_arn: &str,
        entries: &[(&str, &str)],
    ) -> Result<Vec<(String, String)>, ServiceError> {
        self.sqs_batch(queue_arn, "AmazonSQS.DeleteMessageBatch", entries, None)
            .await
    }

    /// SQS `ChangeMessageVisibilityBatch`: each `(entry id, receipt handle)` hidden for
    /// `timeout_secs` more seconds from now (0: visible again now); like
    /// [`sqs_delete_batch`](Self::sqs_delete_batch), the entries SQS failed.
    pub async fn sqs_change_visibility_batch(
        &self,
        queue_arn: &str,
        entries: &[(&str, &str)],
        timeout_secs: u32,
    ) -> Result<Vec<(String, String)>, ServiceError> {
        self.sqs_batch(
            queue_arn,
            "AmazonSQS.ChangeMessageVisibilityBatch",
            entries,
            Some(timeout_secs),
        )
        .await
    }

    /// SQS `GetQueueAttributes`: the queue's `VisibilityTimeout`, and whether it is FIFO (its
    /// name ends in `.fifo`, which SQS requires of FIFO queues only, or it says `FifoQueue`).
    /// A missing queue is [`ServiceError::Refused`] with [`ServiceError::is_not_found`].
    pub async fn sqs_queue_attributes(
        &self,
        queue_arn: &str,
    ) -> Result<SqsQueueAttributes, ServiceError> {
        let queue = self.queue(queue_arn)?;
        let doc = GetQueueAttributesRequest {
            queue_url: &queue.url,
            attribute_names: ["VisibilityTimeout"],
        };
        let result: GetQueueAttributesResult = self
            .sqs_call(
                &queue,
                "AmazonSQS.GetQueueAttributes",
                &doc,
                TIMEOUT,
                MAX_ANSWER,
            )
            .await?;
        let visibility = result.attributes.get("VisibilityTimeout");
        let Some(visibility_timeout_secs) = visibility.and_then(|v| v.parse().ok()) else {
            return Err(unavailable(
                &queue.endpoint,
                format!("GetQueueAttributes answered VisibilityTimeout {visibility:?}"),
            ));
        };
        let fifo = queue.arn.resource.ends_with(".fifo")
            || result
                .attributes
                .get("FifoQueue")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(SqsQueueAttributes {
            visibility_timeout_secs,
            fifo,
        })
    }

    /// `DeleteMessageBatch` (`visibility` `None`) or `ChangeMessageVisibilityBatch` of
    /// `entries`, 10 at a time; the failed entries' ids and codes.
    async fn sqs_batch(
        &self,
        queue_arn: &str,
        target: &'static str,
        entries: &[(&str, &str)],
        visibility: Option<u32>,
    ) -> Result<Vec<(String, String)>, ServiceError> {
        let queue = self.queue(queue_arn)?;
        let mut failed = Vec::new();
        for chunk in entries.chunks(SQS_BATCH) {
            let doc = BatchRequest {
                queue_url: &queue.url,
                entries: chunk
                    .iter()
                    .map(|&(id, receipt_handle)| BatchEntry {
                        id,
                        receipt_handle,
                        visibility_timeout: visibility,
                    })
                    .collect(),
            };
            let result: BatchResult = self
                .sqs_call(&queue, target, &doc, TIMEOUT, MAX_ANSWER)
                .await?;
            for f in result.failed {
                tracing::debug!(
                    queue = queue_arn,
                    target,
                    id = f.id,
                    code = f.code,
                    message = f.message,
                    sender_fault = f.sender_fault,
                    "SQS failed a batch entry"
                );
                failed.push((f.id, f.code));
            }
        }
        Ok(failed)
    }

    /// The queue `queue_arn` names (`arn:aws:sqs:REGION:ACCOUNT:NAME`), its endpoint and URL.
    fn queue<'a>(&self, queue_arn: &'a str) -> Result<Queue<'a>, ServiceError> {
        let arn = Self::arn(queue_arn, "sqs")?;
        check_name(arn.resource, 80, "queue").map_err(|detail| ServiceError::BadArn {
            arn: queue_arn.to_owned(),
            detail,
        })?;
        let endpoint = self.endpoint("sqs", &arn);
        let url = format!("{endpoint}/{}/{}", arn.account, arn.resource);
        Ok(Queue { arn, endpoint, url })
    }

    /// The SQS operation `target` (JSON 1.0, `AmazonSQS.{Op}`) on `queue` with `doc`; its
    /// answer read as `T`.
    async fn sqs_call<T: DeserializeOwned>(
        &self,
        queue: &Queue<'_>,
        target: &'static str,
        doc: &impl Serialize,
        timeout: Duration,
        max_answer: usize,
    ) -> Result<T, ServiceError> {
        let answer = self
            .call(Call {
                name: "SQS",
                service: "sqs",
                region: queue.arn.region,
                endpoint: &queue.endpoint,
                protocol: Protocol::Json {
                    target,
                    content_type: "application/x-amz-json-1.0",
                },
                body: to_json(doc, &queue.endpoint)?,
                timeout,
                max_answer,
            })
            .await?;
        let op = target.strip_prefix("AmazonSQS.").unwrap_or(target);
        serde_json::from_slice(&answer)
            .map_err(|e| unavailable(&queue.endpoint, format!("reading the {op} answer: {e}")))
    }

    /// Signs and sends `call`; the answer of a 2xx, else the service's error.
    async fn call(&self, call: Call<'_>) -> Result<Bytes, ServiceError> {
        let creds = self.source.current().await?;
        let url = format!("{}/", call.endpoint);
        let (content_type, target) = match call.protocol {
            Protocol::Json {
                target,
                content_type,
            } => (content_type, Some(target)),
            Protocol::Query => ("application/x-www-form-urlencoded; charset=utf-8", None),
        };
        let post = SignedPost {
            url: &url,
            region: call.region,
            service: call.service,
            content_type,
            target,
            body: call.body,
        };
        let (status, answer) = post
            .send_limited(&self.http, &creds, call.timeout, call.max_answer)
            .await
            .map_err(|detail| unavailable(call.endpoint, detail))?;
        if status.is_success() {
            return Ok(answer);
        }
        let error = match call.protocol {
            Protocol::Json { .. } => json_error(&answer),
            Protocol::Query => query_error(&answer),
        };
        Err(match error {
            Some(AwsError { code, message }) => ServiceError::Refused {
                service: call.name,
                status: status.as_u16(),
                code,
                message,
            },
            None => unavailable(call.endpoint, excerpt(status, &answer)),
        })
    }
}

/// How long a `ReceiveMessage` waiting up to `wait_secs` may take.
fn receive_timeout(wait_secs: u8) -> Duration {
    TIMEOUT + Duration::from_secs(u64::from(wait_secs))
}

fn unavailable(endpoint: &str, detail: String) -> ServiceError {
    ServiceError::Unavailable {
        endpoint: endpoint.to_owned(),
        detail,
    }
}

fn to_json<T: Serialize>(doc: &T, endpoint: &str) -> Result<String, ServiceError> {
    serde_json::to_string(doc).map_err(|e| unavailable(endpoint, format!("encoding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use crate::SourceCredentials;

    const ACCOUNT: &str = "123456789012";
    const QUEUE: &str = "arn:aws:sqs:eu-west-3:123456789012:dest-queue";
    const TOPIC: &str = "arn:aws:sns:eu-west-3:123456789012:dest-topic";
    const BUS: &str = "arn:aws:events:eu-west-3:123456789012:event-bus/dest-bus";

    #[test]
    fn parses_arns() {
        let arn = Arn::parse(QUEUE, "sqs").unwrap();
        assert_eq!(
            arn,
            Arn {
                partition: "aws",
                region: "eu-west-3",
                account: ACCOUNT,
                resource: "dest-queue"
            }
        );
        assert_eq!(
            arn.aws_endpoint("sqs"),
            "https://sqs.eu-west-3.amazonaws.com"
        );
        let cn = Arn::parse(
            "arn:aws-cn:events:cn-north-1:123456789012:event-bus/b",
            "events",
        )
        .unwrap();
        assert_eq!(cn.resource, "event-bus/b");
        assert_eq!(
            cn.aws_endpoint("events"),
            "https://events.cn-north-1.amazonaws.com.cn"
        );
        let gov = Arn::parse("arn:aws-us-gov:sns:us-gov-west-1:123456789012:t", "sns").unwrap();
        assert_eq!(
            gov.aws_endpoint("sns"),
            "https://sns.us-gov-west-1.amazonaws.com"
        );

        for (arn, service, why) in [
            ("", "sqs", "arn:PARTITION"),
            ("dest-queue", "sqs", "arn:PARTITION"),
            ("arn:aws:sqs:eu-west-3:123456789012", "sqs", "arn:PARTITION"),
            ("urn:aws:sqs:eu-west-3:123456789012:q", "sqs", "arn:"),
            ("arn:evil:sqs:eu-west-3:123456789012:q", "sqs", "partition"),
            (TOPIC, "sqs", "not of \"sqs\""),
            (QUEUE, "events", "not of \"events\""),
            ("arn:aws:sqs::123456789012:q", "sqs", "region"),
            ("arn:aws:sqs:evil.com/x:123456789012:q", "sqs", "region"),
            ("arn:aws:sqs:EU-WEST-3:123456789012:q", "sqs", "region"),
            ("arn:aws:sqs:-eu:123456789012:q", "sqs", "region"),
            ("arn:aws:sqs:eu-west-3::q", "sqs", "account"),
            ("arn:aws:sqs:eu-west-3:12345:q", "sqs", "account"),
            ("arn:aws:sqs:eu-west-3:12345678901a:q", "sqs", "account"),
            (
                "arn:aws:sqs:eu-west-3:123456789012:q:extra",
                "sqs",
                "resource",
            ),
            (
                "arn:aws:sns:eu-west-3:123456789012:topic:6f1d8b7e-0000",
                "sns",
                "resource",
            ),
        ] {
            let e = Arn::parse(arn, service).unwrap_err();
            assert!(e.contains(why), "{arn}: {e}");
        }
        assert!(Arn::parse(&format!("{QUEUE}{}", "q".repeat(2048)), "sqs").is_err());
    }

    #[test]
    fn checks_names() {
        for ok in ["q", "dest_queue-1", "orders.fifo", &"q".repeat(80)] {
            assert_eq!(check_name(ok, 80, "queue"), Ok(()), "{ok}");
        }
        for bad in ["", ".fifo", "a/b", "a b", "a.b", "ü", &"q".repeat(81)] {
            assert!(check_name(bad, 80, "queue").is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn refuses_bad_arns_before_calling() {
        // Nothing listens there: a bad ARN must fail before any connection.
        let s = services("http://127.0.0.1:9", None);
        let bad_arn = |r: Result<(), ServiceError>| match r {
            Err(e @ ServiceError::BadArn { .. }) => {
                assert!(!e.is_transient());
                e.to_string()
            }
            other => panic!("{other:?}"),
        };
        bad_arn(s.sqs_send_message(TOPIC, "b", &[]).await);
        bad_arn(
            s.sqs_send_message("arn:aws:sqs:eu-west-3:123456789012:a/b", "b", &[])
                .await,
        );
        let topic = TOPIC;
        for e in [
            s.sqs_receive(topic, 10, 0, None).await.map(drop),
            s.sqs_delete_batch(topic, &[("1", "h")]).await.map(drop),
            s.sqs_change_visibility_batch(topic, &[("1", "h")], 0)
                .await
                .map(drop),
            s.sqs_queue_attributes("arn:aws:sqs:eu-west-3:123456789012:a.b")
                .await
                .map(drop),
        ] {
            bad_arn(e);
        }
        bad_arn(s.sns_publish(QUEUE, "m", &[]).await);
        bad_arn(
            s.sns_publish("arn:aws:sns:eu-west-3:123456789012:t:sub", "m", &[])
                .await,
        );
        for bus in [
            "arn:aws:events:eu-west-3:123456789012:rule/r",
            "arn:aws:events:eu-west-3:123456789012:event-bus/",
            "arn:aws:events:eu-west-3:123456789012:event-bus/a:b",
            "arn:aws:events:eu-west-3:123456789012:event-bus/a b",
            "arn:aws:events:eu-west-3:123456789012",
        ] {
            let e = bad_arn(s.put_event(bus, "s", "d", "{}", &[]).await);
            assert!(e.contains(bus), "{e}");
        }
        for endpoint in ["127.0.0.1:5000", "ftp://h", "http://h/?a=b", ""] {
            let cfg = ServicesConfig {
                endpoint: Some(endpoint.into()),
            };
            assert!(
                matches!(
                    AwsServices::new(cfg, source(None)),
                    Err(ServiceError::Unavailable { .. })
                ),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn classifies_errors() {
        let refused = |status: u16, code: &str| ServiceError::Refused {
            service: "SQS",
            status,
            code: code.into(),
            message: "m".into(),
        };
        assert!(!refused(400, "QueueDoesNotExist").is_transient());
        assert!(!refused(403, "AccessDenied").is_transient());
        assert!(refused(400, "ThrottlingException").is_transient());
        assert!(refused(400, "RequestThrottled").is_transient());
        assert!(refused(200, "InternalFailure").is_transient());
        assert!(refused(503, "ServiceUnavailable").is_transient());
        assert!(refused(500, "Whatever").is_transient());
        assert_eq!(
            refused(400, "QueueDoesNotExist").code(),
            "QueueDoesNotExist"
        );
        for code in [
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "NonExistentQueue",
            "NotFound",
            "ResourceNotFoundException",
        ] {
            assert!(refused(400, code).is_not_found(), "{code}");
        }
        for code in [
            "AccessDenied",
            "ReceiptHandleIsInvalid",
            "InvalidParameterValue",
        ] {
            assert!(!refused(400, code).is_not_found(), "{code}");
        }
        let unavailable = unavailable("http://x", "refused".into());
        assert!(!unavailable.is_not_found());
        assert!(unavailable.is_transient());
        assert_eq!(unavailable.code(), "the service could not be reached");
        let source: ServiceError = SourceError::InstanceRole {
            endpoint: "http://169.254.169.254".into(),
            detail: "d".into(),
        }
        .into();
        assert!(source.is_transient());
    }

    fn source(token: Option<&str>) -> Arc<SourceChain> {
        Arc::new(SourceChain::Static {
            credentials: SourceCredentials {
                access_key_id: "AKIDTEST".into(),
                secret_access_key: "secret".into(),
                session_token: token.map(str::to_owned),
                expires: None,
            },
            origin: "test".into(),
        })
    }

    fn services(endpoint: &str, token: Option<&str>) -> AwsServices {
        let cfg = ServicesConfig {
            endpoint: Some(endpoint.into()),
        };
        AwsServices::new(cfg, source(token)).unwrap()
    }

    /// A request the fake server received.
    struct Seen {
        method: String,
        path: String,
        headers: http::HeaderMap,
        body: Bytes,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }

        /// Checks the SigV4 signature (scope included) and returns the `Authorization` header.
        fn check_signed(&self, region: &str, service: &str) -> &str {
            let parts =
                fleetfn_sigv4::RequestParts::new(&self.method, &self.path, "", &self.headers);
            let principal = fleetfn_sigv4::verify(
                &parts,
                &fleetfn_sigv4::sha256_hex(&self.body),
                jiff::Timestamp::now(),
                &fleetfn_sigv4::VerifyConfig::new(region, service),
                |akid| (akid == "AKIDTEST").then_some("secret"),
            )
            .unwrap();
            assert_eq!(principal.access_key_id, "AKIDTEST");
            let auth = self.header("authorization").unwrap();
            assert!(
                auth.contains(&format!("/{region}/{service}/aws4_request")),
                "{auth}"
            );
            auth
        }

        /// The form body as (name, value) pairs.
        fn form(&self) -> Vec<(String, String)> {
            let text = std::str::from_utf8(&self.body).unwrap();
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            };
            text.split('&')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (decode(k), decode(v))
                })
                .collect()
        }
    }

    /// A server on 127.0.0.1 that records requests and answers the queued `(status, body)`s.
    struct Fake {
        endpoint: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Fake {
        async fn start(answers: &[(u16, &str)]) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let answers: Arc<Mutex<VecDeque<(u16, String)>>> = Arc::new(Mutex::new(
                answers.iter().map(|(s, b)| (*s, (*b).to_owned())).collect(),
            ));
            let record = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (record, answers) = (record.clone(), answers.clone());
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (record, answers) = (record.clone(), answers.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            record.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                            });
                            let (status, body) = answers
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or((500, "no answer queued".into()));
                            let resp = http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap();
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc),
                    );
                }
            });
            Self { endpoint, seen }
        }

        fn take(&self) -> Vec<Seen> {
            std::mem::take(&mut *self.seen.lock().unwrap())
        }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct SeenSendMessage {
        queue_url: String,
        message_body: String,
        #[serde(default)]
        message_attributes: BTreeMap<String, SeenAttribute>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct SeenAttribute {
        data_type: String,
        string_value: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct SeenPutEvents {
        entries: Vec<SeenEntry>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct SeenEntry {
        source: String,
        detail_type: String,
        detail: String,
        event_bus_name: String,
        #[serde(default)]
        resources: Vec<String>,
    }

    fn attr(value: &str) -> SeenAttribute {
        SeenAttribute {
            data_type: "String".into(),
            string_value: value.into(),
        }
    }

    const SQS_OK: &str = r#"{"MD5OfMessageBody":"x","MessageId":"m-1"}"#;
    const SNS_OK: &str = r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>m-2</MessageId></PublishResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishResponse>"#;
    const EVENTS_OK: &str = r#"{"FailedEntryCount":0,"Entries":[{"EventId":"e-1"}]}"#;

    #[tokio::test]
    async fn sends_sqs_messages() {
        let fake = Fake::start(&[(200, SQS_OK), (200, SQS_OK)]).await;
        let s = services(&format!("{}/", fake.endpoint), Some("session-token"));
        let body = r#"{"version":"1.0","requestPayload":"a \"b\" ü"}"#;
        s.sqs_send_message(
            QUEUE,
            body,
            &[
                ("ErrorCode", "200"),
                ("ErrorMessage", "a & b = ü"),
                ("RequestID", "r-1"),
            ],
        )
        .await
        .unwrap();
        s.sqs_send_message("arn:aws:sqs:us-east-1:123456789012:orders.fifo", "x", &[])
            .await
            .unwrap();
        let seen = fake.take();
        assert_eq!(seen.len(), 2);
        let first = &seen[0];
        assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/"));
        assert_eq!(first.header("x-amz-target"), Some("AmazonSQS.SendMessage"));
        assert_eq!(
            first.header("content-type"),
            Some("application/x-amz-json-1.0")
        );
        assert_eq!(first.header("x-amz-security-token"), Some("session-token"));
        first.check_signed("eu-west-3", "sqs");
        let doc: SeenSendMessage = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(
            doc,
            SeenSendMessage {
                queue_url: format!("{}/{ACCOUNT}/dest-queue", fake.endpoint),
                message_body: body.into(),
                message_attributes: [
                    ("ErrorCode".to_owned(), attr("200")),
                    ("ErrorMessage".to_owned(), attr("a & b = ü")),
                    ("RequestID".to_owned(), attr("r-1")),
                ]
                .into_iter()
                .collect(),
            }
        );
        seen[1].check_signed("us-east-1", "sqs");
        let doc: SeenSendMessage = serde_json::from_slice(&seen[1].body).unwrap();
        assert_eq!(
            doc.queue_url,
            format!("{}/{ACCOUNT}/orders.fifo", fake.endpoint)
        );
        assert!(doc.message_attributes.is_empty());
        // No attributes: no MessageAttributes member at all.
        assert!(
            !std::str::from_utf8(&seen[1].body)
                .unwrap()
                .contains("MessageAttributes")
        );
    }

    #[tokio::test]
    async fn publishes_to_sns() {
        let fake = Fake::start(&[(200, SNS_OK)]).await;
        let s = services(&fake.endpoint, None);
        let message = "{\"a\":\"b c&d=e+f\"}\nü";
        s.sns_publish(
            TOPIC,
            message,
            &[("Kind", "failure"), ("Attempt", "2"), ("Kind", "last wins")],
        )
        .await
        .unwrap();
        let seen = fake.take();
        assert_eq!(seen.len(), 1);
        let req = &seen[0];
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/"));
        assert_eq!(req.header("x-amz-target"), None);
        assert_eq!(req.header("x-amz-security-token"), None);
        assert_eq!(
            req.header("content-type"),
            Some("application/x-www-form-urlencoded; charset=utf-8")
        );
        req.check_signed("eu-west-3", "sns");
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            req.form(),
            pairs(&[
                ("Action", "Publish"),
                ("Version", "2010-03-31"),
                ("TopicArn", TOPIC),
                ("Message", message),
                ("MessageAttributes.entry.1.Name", "Attempt"),
                ("MessageAttributes.entry.1.Value.DataType", "String"),
                ("MessageAttributes.entry.1.Value.StringValue", "2"),
                ("MessageAttributes.entry.2.Name", "Kind"),
                ("MessageAttributes.entry.2.Value.DataType", "String"),
                ("MessageAttributes.entry.2.Value.StringValue", "last wins"),
            ])
        );
    }

    #[tokio::test]
    async fn puts_events() {
        let fake = Fake::start(&[(200, EVENTS_OK), (200, EVENTS_OK)]).await;
        let s = services(&fake.endpoint, None);
        let detail = r#"{"requestContext":{"condition":"Success"}}"#;
        let function = "arn:aws:lambda:eu-west-3:123456789012:function:f:$LATEST";
        s.put_event(
            BUS,
            "lambda",
            "Lambda Function Invocation Result - Success",
            detail,
            &[function],
        )
        .await
        .unwrap();
        let partner = "arn:aws:events:eu-west-3:123456789012:event-bus/aws.partner/example.com/1/b";
        s.put_event(partner, "s", "t", "{}", &[]).await.unwrap();
        let seen = fake.take();
        assert_eq!(seen.len(), 2);
        let req = &seen[0];
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/"));
        assert_eq!(req.header("x-amz-target"), Some("AWSEvents.PutEvents"));
        assert_eq!(
            req.header("content-type"),
            Some("application/x-amz-json-1.1")
        );
        req.check_signed("eu-west-3", "events");
        let doc: SeenPutEvents = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            doc,
            SeenPutEvents {
                entries: vec![SeenEntry {
                    source: "lambda".into(),
                    detail_type: "Lambda Function Invocation Result - Success".into(),
                    detail: detail.into(),
                    event_bus_name: BUS.into(),
                    resources: vec![function.into()],
                }]
            }
        );
        let doc: SeenPutEvents = serde_json::from_slice(&seen[1].body).unwrap();
        assert_eq!(doc.entries[0].event_bus_name, partner);
        assert!(doc.entries[0].resources.is_empty());
    }

    #[tokio::test]
    async fn reports_service_errors() {
        let fake = Fake::start(&[
            (
                400,
                r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#,
            ),
            (
                403,
                r#"<ErrorResponse><Error><Type>Sender</Type><Code>AuthorizationError</Code><Message>not allowed</Message></Error></ErrorResponse>"#,
            ),
            (
                404,
                r#"<ErrorResponse><Errors><Error><Code>NotFound</Code><Message>Topic does not exist</Message></Error></Errors></ErrorResponse>"#,
            ),
            (
                200,
                r#"{"FailedEntryCount":1,"Entries":[{"ErrorCode":"InternalFailure","ErrorMessage":"try again"}]}"#,
            ),
            (
                200,
                r#"{"FailedEntryCount":1,"Entries":[{"ErrorCode":"MalformedDetail","ErrorMessage":"Detail is malformed."}]}"#,
            ),
            (400, r#"{"__type":"ResourceNotFoundException","message":"Event bus dest-bus does not exist."}"#),
            (503, r#"{"__type":"com.amazonaws.sqs#ServiceUnavailable","message":"busy"}"#),
            (503, "<html>Service Unavailable</html>"),
            (400, r#"{"__type":"com.amazon.coral.availability#ThrottlingException"}"#),
            (200, "<html>a captive portal</html>"),
            (200, "not xml at all"),
            (200, r#"{"FailedEntryCount":1,"Entries":[{}]}"#),
        ])
        .await;
        let s = services(&fake.endpoint, None);
        let refused = |r: Result<(), ServiceError>| match r {
            Err(ServiceError::Refused {
                service,
                status,
                code,
                message,
            }) => (service, status, code, message),
            other => panic!("{other:?}"),
        };
        let e = s.sqs_send_message(QUEUE, "b", &[]).await;
        assert!(!e.as_ref().unwrap_err().is_transient());
        assert_eq!(
            refused(e),
            (
                "SQS",
                400,
                "QueueDoesNotExist".into(),
                "The specified queue does not exist.".into()
            )
        );
        let e = s.sns_publish(TOPIC, "m", &[]).await;
        assert_eq!(e.as_ref().unwrap_err().code(), "AuthorizationError");
        assert_eq!(
            refused(e),
            (
                "SNS",
                403,
                "AuthorizationError".into(),
                "not allowed".into()
            )
        );
        let e = s.sns_publish(TOPIC, "m", &[]).await;
        assert_eq!(refused(e).2, "NotFound");
        let e = s.put_event(BUS, "s", "t", "{}", &[]).await;
        assert!(e.as_ref().unwrap_err().is_transient());
        assert_eq!(
            refused(e),
            (
                "EventBridge",
                200,
                "InternalFailure".into(),
                "try again".into()
            )
        );
        let e = s.put_event(BUS, "s", "t", "{", &[]).await;
        assert!(!e.as_ref().unwrap_err().is_transient());
        assert_eq!(refused(e).2, "MalformedDetail");
        let e = s.put_event(BUS, "s", "t", "{}", &[]).await;
        assert_eq!(refused(e).2, "ResourceNotFoundException");
        let e = s.sqs_send_message(QUEUE, "b", &[]).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert_eq!(e.code(), "ServiceUnavailable");
        let e = s.sqs_send_message(QUEUE, "b", &[]).await.unwrap_err();
        assert!(
            matches!(e, ServiceError::Unavailable { .. }) && e.is_transient(),
            "{e}"
        );
        assert!(e.to_string().contains("503"), "{e}");
        let e = s.put_event(BUS, "s", "t", "{}", &[]).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        for e in [
            s.sqs_send_message(QUEUE, "b", &[]).await.unwrap_err(),
            s.sns_publish(TOPIC, "m", &[]).await.unwrap_err(),
            s.put_event(BUS, "s", "t", "{}", &[]).await.unwrap_err(),
        ] {
            assert!(matches!(e, ServiceError::Unavailable { .. }), "{e}");
        }
        assert_eq!(fake.take().len(), 12);
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct SeenReceive {
        queue_url: String,
        max_number_of_messages: u8,
        wait_time_seconds: u8,
        visibility_timeout: Option<u32>,
        attribute_names: Vec<String>,
        message_system_attribute_names: Vec<String>,
        message_attribute_names: Vec<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct SeenBatch {
        queue_url: String,
        entries: Vec<SeenBatchEntry>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct SeenBatchEntry {
        id: String,
        receipt_handle: String,
        visibility_timeout: Option<u32>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct SeenGetQueueAttributes {
        queue_url: String,
        attribute_names: Vec<String>,
    }

    fn strings(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// What moto 5.2 answers (AWS's shape), plus the reserved list values and a `null`.
    const RECEIVED: &str = r#"{"Messages": [
        {"MessageId": "m-1", "ReceiptHandle": "rh-1", "MD5OfBody": "0153c42b76bc37e33497dee300222bd1",
         "Body": "hello \u00fc \"q\"",
         "Attributes": {"SenderId": "AIDAIT2UOQQY3AUEKVGXU", "SentTimestamp": "1796377566443",
                        "ApproximateReceiveCount": "1", "ApproximateFirstReceiveTimestamp": "1796377566449"},
         "MD5OfMessageAttributes": "c16ccebd314cec3d477ebde3022edd47",
         "MessageAttributes": {"S": {"StringValue": "v", "DataType": "String"},
                               "N": {"StringValue": "7", "DataType": "Number.int"},
                               "B": {"BinaryValue": "AAEC", "DataType": "Binary"},
                               "L": {"DataType": "String", "StringValue": "x",
                                     "StringListValues": ["a", "b"], "BinaryListValues": null}}},
        {"MessageId": "m-2", "ReceiptHandle": "rh-2", "MD5OfBody": "cf54937a2330ac17aa523bf7130911a3", "Body": "fifo",
         "Attributes": {"MessageGroupId": "g1", "MessageDeduplicationId": "d", "ApproximateReceiveCount": "3"}}
    ]}"#;

    #[tokio::test]
    async fn receives_sqs_messages() {
        let big = "x".repeat(300 * 1024);
        let big_answer = format!(
            r#"{{"Messages":[{{"MessageId":"m-3","ReceiptHandle":"rh-3","MD5OfBody":"d","Body":"{big}"}}]}}"#
        );
        let fake = Fake::start(&[
            (200, RECEIVED),
            (200, "{}"),
            (200, r#"{"Messages":[]}"#),
            (200, r#"{"Messages":null}"#),
            (200, &big_answer),
        ])
        .await;
        let s = services(&fake.endpoint, Some("session-token"));
        let got = s.sqs_receive(QUEUE, 10, 20, Some(30)).await.unwrap();
        assert_eq!(
            got,
            vec![
                SqsMessage {
                    message_id: "m-1".into(),
                    receipt_handle: "rh-1".into(),
                    body: "hello ü \"q\"".into(),
                    md5_of_body: "0153c42b76bc37e33497dee300222bd1".into(),
                    attributes: strings(&[
                        ("ApproximateFirstReceiveTimestamp", "1796377566449"),
                        ("ApproximateReceiveCount", "1"),
                        ("SenderId", "AIDAIT2UOQQY3AUEKVGXU"),
                        ("SentTimestamp", "1796377566443"),
                    ]),
                    message_attributes: [
                        (
                            "B".to_owned(),
                            SqsMessageAttribute {
                                data_type: "Binary".into(),
                                binary_value: Some("AAEC".into()),
                                ..Default::default()
                            },
                        ),
                        (
                            "L".to_owned(),
                            SqsMessageAttribute {
                                data_type: "String".into(),
                                string_value: Some("x".into()),
                                string_list_values: vec!["a".into(), "b".into()],
                                ..Default::default()
                            },
                        ),
                        (
                            "N".to_owned(),
                            SqsMessageAttribute {
                                data_type: "Number.int".into(),
                                string_value: Some("7".into()),
                                ..Default::default()
                            },
                        ),
                        (
                            "S".to_owned(),
                            SqsMessageAttribute {
                                data_type: "String".into(),
                                string_value: Some("v".into()),
                                ..Default::default()
                            },
                        ),
                    ]
                    .into_iter()
                    .collect(),
                },
                SqsMessage {
                    message_id: "m-2".into(),
                    receipt_handle: "rh-2".into(),
                    body: "fifo".into(),
                    md5_of_body: "cf54937a2330ac17aa523bf7130911a3".into(),
                    attributes: strings(&[
                        ("ApproximateReceiveCount", "3"),
                        ("MessageDeduplicationId", "d"),
                        ("MessageGroupId", "g1"),
                    ]),
                    message_attributes: BTreeMap::new(),
                },
            ]
        );
        // No `Messages` member, an empty list, `null`: nothing received.
        for _ in 0..3 {
            assert!(s.sqs_receive(QUEUE, 0, 0, None).await.unwrap().is_empty());
        }
        // An answer over the 64 KiB other calls read.
        let got = s.sqs_receive(QUEUE, 255, 255, None).await.unwrap();
        assert_eq!(got[0].body.len(), big.len());
        assert!(got[0].attributes.is_empty() && got[0].message_attributes.is_empty());

        let seen = fake.take();
        assert_eq!(seen.len(), 5);
        let req = &seen[0];
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/"));
        assert_eq!(req.header("x-amz-target"), Some("AmazonSQS.ReceiveMessage"));
        assert_eq!(
            req.header("content-type"),
            Some("application/x-amz-json-1.0")
        );
        assert_eq!(req.header("x-amz-security-token"), Some("session-token"));
        req.check_signed("eu-west-3", "sqs");
        let all = vec!["All".to_owned()];
        let doc: SeenReceive = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            doc,
            SeenReceive {
                queue_url: format!("{}/{ACCOUNT}/dest-queue", fake.endpoint),
                max_number_of_messages: 10,
                wait_time_seconds: 20,
                visibility_timeout: Some(30),
                attribute_names: all.clone(),
                message_system_attribute_names: all.clone(),
                message_attribute_names: all,
            }
        );
        // Out of range: clamped to 1 to 10 messages, at most 20 s; no VisibilityTimeout member.
        let doc: SeenReceive = serde_json::from_slice(&seen[1].body).unwrap();
        assert_eq!((doc.max_number_of_messages, doc.wait_time_seconds), (1, 0));
        assert!(
            !std::str::from_utf8(&seen[1].body)
                .unwrap()
                .contains("VisibilityTimeout")
        );
        let doc: SeenReceive = serde_json::from_slice(&seen[4].body).unwrap();
        assert_eq!(
            (doc.max_number_of_messages, doc.wait_time_seconds),
            (10, 20)
        );
        assert_eq!(receive_timeout(20), Duration::from_secs(30));
        assert_eq!(receive_timeout(0), TIMEOUT);
    }

    #[tokio::test]
    async fn deletes_and_hides_sqs_messages_in_batches() {
        let fake = Fake::start(&[
            (
                200,
                r#"{"Successful":[{"Id":"a"}],"Failed":[{"Id":"b","SenderFault":true,"Code":"ReceiptHandleIsInvalid","Message":"The input receipt handle is invalid."}]}"#,
            ),
            (200, r#"{"Successful":[{"Id":"0"}]}"#),
            (
                200,
                r#"{"Successful":[],"Failed":[{"Id":"11","SenderFault":false,"Code":"InternalError"}]}"#,
            ),
            (200, r#"{"Successful":[{"Id":"a"}],"Failed":null}"#),
        ])
        .await;
        let s = services(&fake.endpoint, None);
        let failed = s
            .sqs_delete_batch(QUEUE, &[("a", "rh-1"), ("b", "bogus")])
            .await
            .unwrap();
        assert_eq!(
            failed,
            vec![("b".to_owned(), "ReceiptHandleIsInvalid".to_owned())]
        );
        // Twelve entries: ten, then two.
        let ids: Vec<String> = (0..12).map(|n| n.to_string()).collect();
        let handles: Vec<String> = (0..12).map(|n| format!("rh-{n}")).collect();
        let entries: Vec<(&str, &str)> = ids
            .iter()
            .zip(&handles)
            .map(|(i, h)| (i.as_str(), h.as_str()))
            .collect();
        let failed = s
            .sqs_change_visibility_batch(QUEUE, &entries, 0)
            .await
            .unwrap();
        assert_eq!(failed, vec![("11".to_owned(), "InternalError".to_owned())]);
        let failed = s
            .sqs_change_visibility_batch(QUEUE, &[("a", "rh-1")], 43_200)
            .await
            .unwrap();
        assert!(failed.is_empty());
        // Nothing to do: no call.
        assert!(s.sqs_delete_batch(QUEUE, &[]).await.unwrap().is_empty());

        let seen = fake.take();
        assert_eq!(seen.len(), 4);
        let queue_url = format!("{}/{ACCOUNT}/dest-queue", fake.endpoint);
        let entry = |id: &str, handle: &str, visibility: Option<u32>| SeenBatchEntry {
            id: id.into(),
            receipt_handle: handle.into(),
            visibility_timeout: visibility,
        };
        assert_eq!(
            seen[0].header("x-amz-target"),
            Some("AmazonSQS.DeleteMessageBatch")
        );
        seen[0].check_signed("eu-west-3", "sqs");
        let doc: SeenBatch = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(
            doc,
            SeenBatch {
                queue_url: queue_url.clone(),
                entries: vec![entry("a", "rh-1", None), entry("b", "bogus", None)],
            }
        );
        for (req, range) in [(&seen[1], 0..10), (&seen[2], 10..12)] {
            assert_eq!(
                req.header("x-amz-target"),
                Some("AmazonSQS.ChangeMessageVisibilityBatch")
            );
            req.check_signed("eu-west-3", "sqs");
            let doc: SeenBatch = serde_json::from_slice(&req.body).unwrap();
            let want: Vec<SeenBatchEntry> = range
                .map(|n| entry(&n.to_string(), &format!("rh-{n}"), Some(0)))
                .collect();
            assert_eq!(
                doc,
                SeenBatch {
                    queue_url: queue_url.clone(),
                    entries: want,
                }
            );
        }
        let doc: SeenBatch = serde_json::from_slice(&seen[3].body).unwrap();
        assert_eq!(doc.entries, vec![entry("a", "rh-1", Some(43_200))]);
    }

    #[tokio::test]
    async fn reads_sqs_queue_attributes() {
        let fake = Fake::start(&[
            (200, r#"{"Attributes": {"VisibilityTimeout": "45"}}"#),
            (
                200,
                r#"{"Attributes": {"VisibilityTimeout": "30", "FifoQueue": "true"}}"#,
            ),
            (
                200,
                r#"{"Attributes": {"VisibilityTimeout": "0", "FifoQueue": "true"}}"#,
            ),
            (200, r#"{"Attributes": {}}"#),
            (200, r#"{"Attributes": {"VisibilityTimeout": "-1"}}"#),
        ])
        .await;
        let s = services(&fake.endpoint, None);
        assert_eq!(
            s.sqs_queue_attributes(QUEUE).await.unwrap(),
            SqsQueueAttributes {
                visibility_timeout_secs: 45,
                fifo: false
            }
        );
        let fifo = "arn:aws:sqs:us-east-1:123456789012:orders.fifo";
        assert_eq!(
            s.sqs_queue_attributes(fifo).await.unwrap(),
            SqsQueueAttributes {
                visibility_timeout_secs: 30,
                fifo: true
            }
        );
        // FifoQueue alone says so too.
        assert_eq!(
            s.sqs_queue_attributes(QUEUE).await.unwrap(),
            SqsQueueAttributes {
                visibility_timeout_secs: 0,
                fifo: true
            }
        );
        for _ in 0..2 {
            let e = s.sqs_queue_attributes(QUEUE).await.unwrap_err();
            assert!(matches!(e, ServiceError::Unavailable { .. }), "{e}");
            assert!(e.to_string().contains("VisibilityTimeout"), "{e}");
        }
        let seen = fake.take();
        assert_eq!(seen.len(), 5);
        assert_eq!(
            seen[0].header("x-amz-target"),
            Some("AmazonSQS.GetQueueAttributes")
        );
        assert_eq!(
            seen[0].header("content-type"),
            Some("application/x-amz-json-1.0")
        );
        seen[0].check_signed("eu-west-3", "sqs");
        let doc: SeenGetQueueAttributes = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(
            doc,
            SeenGetQueueAttributes {
                queue_url: format!("{}/{ACCOUNT}/dest-queue", fake.endpoint),
                attribute_names: vec!["VisibilityTimeout".into()],
            }
        );
        seen[1].check_signed("us-east-1", "sqs");
        let doc: SeenGetQueueAttributes = serde_json::from_slice(&seen[1].body).unwrap();
        assert_eq!(
            doc.queue_url,
            format!("{}/{ACCOUNT}/orders.fifo", fake.endpoint)
        );
    }

    #[tokio::test]
    async fn reports_sqs_consumer_errors() {
        const MISSING: &str = r#"{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "The specified queue does not exist.", "Message": "The specified queue does not exist."}"#;
        let fake = Fake::start(&[
            (400, MISSING),
            (400, MISSING),
            (400, MISSING),
            (
                400,
                r#"{"__type":"AWS.SimpleQueueService.NonExistentQueue","message":"gone"}"#,
            ),
            (
                400,
                r#"{"__type":"com.amazonaws.sqs#TooManyEntriesInBatchRequest","message":"too many"}"#,
            ),
            (
                400,
                r#"{"__type":"com.amazonaws.sqs#OverLimit","message":"too many inflight"}"#,
            ),
            (500, r#"{"__type":"com.amazonaws.sqs#InternalError"}"#),
            (200, r#"{"Messages":[{"MessageId":"m"}]}"#),
            (200, r#"{"Failed":[{"Code":"X"}]}"#),
            (200, "<html>a captive portal</html>"),
        ])
        .await;
        let s = services(&fake.endpoint, None);
        let missing = [
            s.sqs_queue_attributes(QUEUE).await.map(drop),
            s.sqs_receive(QUEUE, 10, 0, None).await.map(drop),
            s.sqs_delete_batch(QUEUE, &[("a", "h")]).await.map(drop),
            s.sqs_change_visibility_batch(QUEUE, &[("a", "h")], 0)
                .await
                .map(drop),
        ];
        for (n, e) in missing.into_iter().enumerate() {
            let e = e.unwrap_err();
            assert!(e.is_not_found() && !e.is_transient(), "{n}: {e}");
            match e {
                ServiceError::Refused {
                    service: "SQS",
                    status: 400,
                    ..
                } => {}
                other => panic!("{n}: {other:?}"),
            }
        }
        let e = s.sqs_delete_batch(QUEUE, &[("a", "h")]).await.unwrap_err();
        assert!(!e.is_not_found() && !e.is_transient(), "{e}");
        assert_eq!(e.code(), "TooManyEntriesInBatchRequest");
        let e = s.sqs_receive(QUEUE, 10, 0, None).await.unwrap_err();
        assert_eq!(e.code(), "OverLimit");
        let e = s.sqs_receive(QUEUE, 10, 0, None).await.unwrap_err();
        assert!(e.is_transient() && !e.is_not_found(), "{e}");
        // Answers that are no SQS document.
        let e = s.sqs_receive(QUEUE, 10, 0, None).await.unwrap_err();
        assert!(
            matches!(&e, ServiceError::Unavailable { detail, .. } if detail.contains("ReceiveMessage")),
            "{e}"
        );
        let e = s.sqs_delete_batch(QUEUE, &[("a", "h")]).await.unwrap_err();
        assert!(matches!(e, ServiceError::Unavailable { .. }), "{e}");
        let e = s.sqs_queue_attributes(QUEUE).await.unwrap_err();
        assert!(matches!(e, ServiceError::Unavailable { .. }), "{e}");
        assert_eq!(fake.take().len(), 10);
    }

    #[tokio::test]
    async fn closed_port_is_unavailable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let s = services(&endpoint, None);
        for e in [
            s.sqs_send_message(QUEUE, "b", &[]).await.unwrap_err(),
            s.sns_publish(TOPIC, "m", &[]).await.unwrap_err(),
            s.put_event(BUS, "s", "t", "{}", &[]).await.unwrap_err(),
            s.sqs_receive(QUEUE, 10, 20, None).await.unwrap_err(),
            s.sqs_delete_batch(QUEUE, &[("1", "h")]).await.unwrap_err(),
            s.sqs_change_visibility_batch(QUEUE, &[("1", "h")], 0)
                .await
                .unwrap_err(),
            s.sqs_queue_attributes(QUEUE).await.unwrap_err(),
        ] {
            assert!(!e.is_not_found());
            match &e {
                ServiceError::Unavailable { endpoint: at, .. } => assert_eq!(at, &endpoint),
                other => panic!("{other:?}"),
            }
            assert!(e.is_transient());
        }
    }
}
