//! What leaves fleetfn about an asynchronous invoke: the destination record (AWS's shape:
//! `version`, `timestamp`, `requestContext`, `requestPayload`, `responseContext`,
//! `responsePayload`) and the dead-letter message attributes.

use serde::Serialize;
use serde_json::value::RawValue;

/// Why a record is sent (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    /// The EventBridge `detail-type` of a record with this condition.
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::Success => "Lambda Function Invocation Result - Success",
            Self::RetriesExhausted | Self::EventAgeExceeded => {
                "Lambda Function Invocation Result - Failure"
            }
        }
    }
}

/// A JSON document as sent (`requestPayload`, `responsePayload`): embedded as is when it is
/// JSON, else as a JSON string.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Payload<'a> {
    Json(&'a RawValue),
    Text(String),
}

impl<'a> Payload<'a> {
    pub fn of(bytes: &'a [u8]) -> Self {
        match serde_json::from_slice::<&RawValue>(bytes) {
            Ok(raw) => Self::Json(raw),
            Err(_) => Self::Text(String::from_utf8_lossy(bytes).into_owned()),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext<'a> {
    pub request_id: &'a str,
    pub function_arn: &'a str,
    pub condition: Condition,
    pub approximate_invoke_count: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext<'a> {
    pub status_code: u16,
    pub executed_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_error: Option<&'a str>,
}

/// The record sent to an `OnSuccess`/`OnFailure` destination.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRecord<'a> {
    pub version: &'static str,
    /// UTC, milliseconds: `2026-12-04T10:15:30.123Z`.
    pub timestamp: String,
    pub request_context: RequestContext<'a>,
    pub request_payload: Payload<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_context: Option<ResponseContext<'a>>,
    /// `null` when the function returned nothing; absent when it was never invoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_payload: Option<Option<Payload<'a>>>,
}

/// The time as records carry it.
pub fn timestamp(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The `errorMessage` of a function error payload, if it has one.
pub fn error_message(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct FunctionError {
        error_message: Option<String>,
    }
    serde_json::from_slice::<FunctionError>(payload)
        .ok()
        .and_then(|e| e.error_message)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_record_has_aws_shape() {
        let rec = DestinationRecord {
            version: "1.0",
            timestamp: timestamp(jiff::Timestamp::from_millisecond(1_764_842_130_123).unwrap()),
            request_context: RequestContext {
                request_id: "r-1",
                function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
                condition: Condition::RetriesExhausted,
                approximate_invoke_count: 3,
            },
            request_payload: Payload::of(br#"{"a": [1, 2]}"#),
            response_context: Some(ResponseContext {
                status_code: 200,
                executed_version: "1",
                function_error: Some("Unhandled"),
            }),
            response_payload: Some(Some(Payload::of(
                br#"{"errorMessage":"boom","errorType":"Error"}"#,
            ))),
        };
        let v: serde_json::Value = serde_json::to_value(&rec).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "version": "1.0",
                "timestamp": "2025-12-04T09:55:30.123Z",
                "requestContext": {
                    "requestId": "r-1",
                    "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": 3
                },
                "requestPayload": {"a": [1, 2]},
                "responseContext": {"statusCode": 200, "executedVersion": "1", "functionError": "Unhandled"},
                "responsePayload": {"errorMessage": "boom", "errorType": "Error"}
            })
        );
    }

    #[test]
    fn payloads_that_are_not_json_become_strings_and_null_stays_null() {
        let p = serde_json::to_string(&Payload::of(b"not json {")).unwrap();
        assert_eq!(p, r#""not json {""#);
        let rec = DestinationRecord {
            version: "1.0",
            timestamp: String::new(),
            request_context: RequestContext {
                request_id: "r",
                function_arn: "a",
                condition: Condition::EventAgeExceeded,
                approximate_invoke_count: 0,
            },
            request_payload: Payload::of(b"{}"),
            response_context: None,
            response_payload: None,
        };
        let s = serde_json::to_string(&rec).unwrap();
        assert!(
            !s.contains("responseContext") && !s.contains("responsePayload"),
            "{s}"
        );
        assert_eq!(
            error_message(br#"{"errorMessage":"x"}"#).as_deref(),
            Some("x")
        );
        assert_eq!(truncate("héllo".into(), 2), "h");
    }
}
