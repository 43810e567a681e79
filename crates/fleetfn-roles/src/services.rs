//! The server's own calls to SQS (`SendMessage`, JSON protocol), SNS (`Publish`, query
//! protocol) and EventBridge (`PutEvents`, JSON 1.1), for the destinations and dead-letter
//! queues of asynchronous invocations; signed (SigV4) with the server's credentials in the
//! region of the target's ARN.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::utf8_percent_encode;
use serde::{Deserialize, Serialize};

use crate::transport::{
    AwsError, FORM, HttpClient, SignedPost, excerpt, json_error, query_error, verified_client,
};
use crate::{SourceChain, SourceError};

/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(10);

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
        let arn = Self::arn(queue_arn, "sqs")?;
        check_name(arn.resource, 80, "queue").map_err(|detail| ServiceError::BadArn {
            arn: queue_arn.to_owned(),
            detail,
        })?;
        let endpoint = self.endpoint("sqs", &arn);
        let queue_url = format!("{endpoint}/{}/{}", arn.account, arn.resource);
        let doc = SendMessageRequest {
            queue_url: &queue_url,
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
        let answer = self
            .call(Call {
                name: "SQS",
                service: "sqs",
                region: arn.region,
                endpoint: &endpoint,
                protocol: Protocol::Json {
                    target: "AmazonSQS.SendMessage",
                    content_type: "application/x-amz-json-1.0",
                },
                body: to_json(&doc, &endpoint)?,
            })
            .await?;
        let result: SendMessageResult = serde_json::from_slice(&answer)
            .map_err(|e| unavailable(&endpoint, format!("reading the SendMessage answer: {e}")))?;
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
            .send(&self.http, &creds, TIMEOUT)
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
        let unavailable = unavailable("http://x", "refused".into());
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
        ] {
            match &e {
                ServiceError::Unavailable { endpoint: at, .. } => assert_eq!(at, &endpoint),
                other => panic!("{other:?}"),
            }
            assert!(e.is_transient());
        }
    }
}
