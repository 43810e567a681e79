//! Function URL wire shapes (2021-10-31): the config of a function's or alias's URL
//! ([`FunctionUrlConfig`]), its [`Cors`], [`AuthType`] and [`InvokeMode`], and the request and
//! list shapes of Create/Get/Update/Delete/ListFunctionUrlConfig(s).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How callers of a function URL authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthType {
    /// Anyone may call it, if the resource policy allows `lambda:InvokeFunctionUrl` and
    /// `lambda:InvokeFunction` to `*`.
    #[serde(rename = "NONE")]
    None,
    /// Callers sign requests with SigV4.
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

impl AuthType {
    pub const NAMES: [&'static str; 2] = ["NONE", "AWS_IAM"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::AwsIam => "AWS_IAM",
        }
    }

    /// The value by its wire name, `None` if it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NONE" => Some(Self::None),
            "AWS_IAM" => Some(Self::AwsIam),
            _ => None,
        }
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a function URL answers with the buffered response or streams it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum InvokeMode {
    #[default]
    #[serde(rename = "BUFFERED")]
    Buffered,
    #[serde(rename = "RESPONSE_STREAM")]
    ResponseStream,
}

impl InvokeMode {
    pub const NAMES: [&'static str; 2] = ["BUFFERED", "RESPONSE_STREAM"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buffered => "BUFFERED",
            Self::ResponseStream => "RESPONSE_STREAM",
        }
    }

    /// The value by its wire name, `None` if it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BUFFERED" => Some(Self::Buffered),
            "RESPONSE_STREAM" => Some(Self::ResponseStream),
            _ => None,
        }
    }
}

impl fmt::Display for InvokeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cross-origin resource sharing settings of a function URL. Members absent from a request
/// stay absent in the config (AWS echoes only what was given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Cors {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

/// A function URL's configuration, as Create/Get/Update/ListFunctionUrlConfig(s) answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionUrlConfig {
    pub function_url: String,
    /// The function's ARN, qualified by the alias for an alias's URL.
    pub function_arn: String,
    pub auth_type: AuthType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// ISO-8601 with milliseconds, as AWS writes it (`2026-12-04T12:00:00.000Z`).
    pub creation_time: String,
    pub last_modified_time: String,
    pub invoke_mode: InvokeMode,
}

/// The body of CreateFunctionUrlConfig and UpdateFunctionUrlConfig. The enums stay strings
/// here so a wrong value gets AWS's `ValidationException`, not a parse error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FunctionUrlConfigRequest {
    pub auth_type: Option<String>,
    pub cors: Option<Cors>,
    pub invoke_mode: Option<String>,
}

/// The answer of CreateFunctionUrlConfig (no `LastModifiedTime`, as on AWS).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateFunctionUrlConfigResponse {
    pub function_url: String,
    pub function_arn: String,
    pub auth_type: AuthType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    pub creation_time: String,
    pub invoke_mode: InvokeMode,
}

impl From<FunctionUrlConfig> for CreateFunctionUrlConfigResponse {
    fn from(c: FunctionUrlConfig) -> Self {
        Self {
            function_url: c.function_url,
            function_arn: c.function_arn,
            auth_type: c.auth_type,
            cors: c.cors,
            creation_time: c.creation_time,
            invoke_mode: c.invoke_mode,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctionUrlConfigsResponse {
    pub function_url_configs: Vec<FunctionUrlConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// Timestamps of function URL configs: ISO-8601 in UTC with milliseconds and `Z`.
pub fn url_timestamp(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names() {
        let c = FunctionUrlConfig {
            function_url: "http://x/".into(),
            function_arn: "arn".into(),
            auth_type: AuthType::AwsIam,
            cors: Some(Cors {
                max_age: Some(5),
                ..Cors::default()
            }),
            creation_time: "t".into(),
            last_modified_time: "t".into(),
            invoke_mode: InvokeMode::ResponseStream,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["AuthType"], "AWS_IAM");
        assert_eq!(v["InvokeMode"], "RESPONSE_STREAM");
        assert_eq!(v["Cors"], serde_json::json!({"MaxAge": 5}));
        assert_eq!(serde_json::from_value::<FunctionUrlConfig>(v).unwrap(), c);
        assert_eq!(AuthType::parse("NONE"), Some(AuthType::None));
        assert_eq!(InvokeMode::parse("buffered"), None);
    }

    #[test]
    fn timestamps_like_aws() {
        let ts: jiff::Timestamp = "2026-12-04T12:00:00.5Z".parse().unwrap();
        assert_eq!(url_timestamp(ts), "2026-12-04T12:00:00.500Z");
    }
}
