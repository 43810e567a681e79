//! Lambda layers (2018-10-31): the wire shapes of PublishLayerVersion, GetLayerVersion(ByArn),
//! ListLayers, ListLayerVersions and the layer version permissions, the `Layers` member of a
//! function's configuration, and the parsing of layer names and layer version ARNs.

use serde::{Deserialize, Serialize};

use crate::Scope;
use crate::error::{LambdaError, Result};

/// Most layers one function may use.
pub const MAX_FUNCTION_LAYERS: usize = 5;
/// Longest layer name.
pub const MAX_LAYER_NAME_LEN: usize = 140;
/// Most `CompatibleRuntimes` of a layer version.
pub const MAX_COMPATIBLE_RUNTIMES: usize = 15;
/// Most `CompatibleArchitectures` of a layer version.
pub const MAX_COMPATIBLE_ARCHITECTURES: usize = 2;

/// The model's pattern of `LayerNameOrArn`.
pub const LAYER_NAME_PATTERN: &str = "(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:[a-zA-Z0-9-_]{1,140}|[a-zA-Z0-9-_]{1,140})";
/// The model's pattern of `LayerVersionArn`.
pub const LAYER_VERSION_ARN_PATTERN: &str = "((arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+))";

/// Every value of the model's `Runtime` enum that `CompatibleRuntimes` takes.
pub const LAYER_RUNTIMES: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "java8",
    "java8.al2",
    "java11",
    "java17",
    "java21",
    "java25",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "dotnet8",
    "dotnet10",
    "nodejs4.3-edge",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "ruby4.0",
    "provided",
    "provided.al2",
    "provided.al2023",
    "nodejs26.x",
    "python3.15",
    "java8.al2023",
    "java11.al2023",
    "java17.al2023",
    "custom",
];

/// `Layer` of a function's configuration: a layer version it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Layer {
    pub arn: String,
    pub code_size: u64,
}

/// `LayerVersionContentInput`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct LayerVersionContentInput {
    /// Base64 in JSON.
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
    pub s3_object_storage_mode: Option<String>,
}

/// The body of PublishLayerVersion (`LayerName` is in the path).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PublishLayerVersionRequest {
    pub description: Option<String>,
    pub content: Option<LayerVersionContentInput>,
    pub compatible_runtimes: Option<Vec<String>>,
    pub compatible_architectures: Option<Vec<String>>,
    pub license_info: Option<String>,
}

/// `LayerVersionContentOutput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionContentOutput {
    pub location: String,
    /// Base64 of the zip's sha256, like a function's `CodeSha256`.
    pub code_sha256: String,
    pub code_size: u64,
}

/// The answer of PublishLayerVersion, GetLayerVersion and GetLayerVersionByArn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionResponse {
    pub content: LayerVersionContentOutput,
    pub layer_arn: String,
    pub layer_version_arn: String,
    pub description: String,
    pub created_date: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compatible_runtimes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compatible_architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
}

/// `LayerVersionsListItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionsListItem {
    pub layer_version_arn: String,
    pub version: u64,
    pub description: String,
    pub created_date: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compatible_runtimes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compatible_architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
}

/// `LayersListItem`: a layer and its newest version matching the filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayersListItem {
    pub layer_name: String,
    pub layer_arn: String,
    pub latest_matching_version: LayerVersionsListItem,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListLayersResponse {
    pub layers: Vec<LayersListItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListLayerVersionsResponse {
    pub layer_versions: Vec<LayerVersionsListItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// The filters of ListLayers and ListLayerVersions.
#[derive(Debug, Clone, Default)]
pub struct LayerFilter {
    pub compatible_runtime: Option<String>,
    pub compatible_architecture: Option<String>,
}

/// The body of AddLayerVersionPermission (`RevisionId` is in the query).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AddLayerVersionPermissionRequest {
    pub statement_id: Option<String>,
    pub action: Option<String>,
    pub principal: Option<String>,
    pub organization_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddLayerVersionPermissionResponse {
    /// The added statement, as a JSON string.
    pub statement: String,
    pub revision_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetLayerVersionPolicyResponse {
    /// The policy document, as a JSON string.
    pub policy: String,
    pub revision_id: String,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LAYER_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

impl Scope {
    pub fn layer_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:layer:{name}",
            self.region, self.account
        )
    }
    pub fn layer_version_arn(&self, name: &str, version: u64) -> String {
        format!("{}:{version}", self.layer_arn(name))
    }
}

/// Parses `LayerName` of a path: a name or a layer ARN (without version) of this installation.
/// A well-formed ARN of another account or region is `ResourceNotFoundException`: no layer
/// of this installation has it.
pub fn parse_layer_name(input: &str, scope: &Scope) -> Result<String> {
    if input.is_empty() || input.len() > 2048 {
        return Err(LambdaError::validation(
            input,
            "layerName",
            "Member must have length between 1 and 2048",
        ));
    }
    if is_name(input) {
        return Ok(input.to_owned());
    }
    let parts: Vec<&str> = input.split(':').collect();
    let ok = parts.len() == 7
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "lambda"
        && is_account(parts[4])
        && parts[5] == "layer"
        && is_name(parts[6]);
    if !ok {
        return Err(LambdaError::validation(
            input,
            "layerName",
            &format!("Member must satisfy regular expression pattern: {LAYER_NAME_PATTERN}"),
        ));
    }
    if parts[3] != scope.region || parts[4] != scope.account {
        return Err(LambdaError::not_found(format!(
            "Layer {input} does not exist: this fleetfn installation serves region {} and account {}.",
            scope.region, scope.account
        )));
    }
    Ok(parts[6].to_owned())
}

/// A layer version ARN split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerVersionArn {
    pub region: String,
    pub account: String,
    pub name: String,
    pub version: u64,
}

impl LayerVersionArn {
    /// Parses `arn:aws:lambda:<region>:<account>:layer:<name>:<version>`; `member` names the
    /// request member in the `ValidationException`.
    pub fn parse(input: &str, member: &str) -> Result<Self> {
        let bad = || {
            LambdaError::validation(
                input,
                member,
                &format!(
                    "Member must satisfy regular expression pattern: {LAYER_VERSION_ARN_PATTERN}"
                ),
            )
        };
        if input.is_empty() || input.len() > 2048 {
            return Err(LambdaError::validation(
                input,
                member,
                "Member must have length between 1 and 2048",
            ));
        }
        let parts: Vec<&str> = input.split(':').collect();
        if parts.len() != 8
            || parts[0] != "arn"
            || !parts[1].starts_with("aws")
            || parts[2] != "lambda"
            || parts[3].is_empty()
            || !is_account(parts[4])
            || parts[5] != "layer"
            || !is_name(parts[6])
            || parts[7].is_empty()
            || !parts[7].bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let version = parts[7].parse::<u64>().map_err(|_| bad())?;
        Ok(Self {
            region: parts[3].to_owned(),
            account: parts[4].to_owned(),
            name: parts[6].to_owned(),
            version,
        })
    }

    /// Whether the layer belongs to this installation.
    pub fn in_scope(&self, scope: &Scope) -> bool {
        self.region == scope.region && self.account == scope.account
    }
}

/// Whether `s` is an AWS-managed layer ARN (`arn:<partition>:lambda:::awslayer:<name>`), which
/// the model's pattern allows and no fleetfn installation has.
pub fn is_aws_managed_layer_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 7
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && parts[2] == "lambda"
        && parts[3].is_empty()
        && parts[4].is_empty()
        && parts[5] == "awslayer"
        && !parts[6].is_empty()
        && parts[6]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses `VersionNumber` of a path (a positive long).
pub fn parse_layer_version_number(input: &str) -> Result<u64> {
    match input.parse::<u64>() {
        Ok(n) if n >= 1 && i64::try_from(n).is_ok() => Ok(n),
        _ => Err(LambdaError::invalid(format!(
            "Layer version number {input} is not valid: give a positive whole number, as PublishLayerVersion returned it in Version."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn layer_names_and_arns() {
        let s = Scope::default();
        assert_eq!(parse_layer_name("my-layer_1", &s).unwrap(), "my-layer_1");
        assert_eq!(
            parse_layer_name(&s.layer_arn("x"), &s).unwrap(),
            "x".to_string()
        );
        for bad in [
            "",
            "a b",
            "a/b",
            "a:b",
            "arn:aws:lambda:us-east-1:1:layer:x",
        ] {
            let e = parse_layer_name(bad, &s).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{bad}");
        }
        let long = "a".repeat(141);
        assert_eq!(
            parse_layer_name(&long, &s).unwrap_err().kind,
            ErrorKind::Validation
        );
        let other = "arn:aws:lambda:eu-west-1:000000000000:layer:x";
        assert_eq!(
            parse_layer_name(other, &s).unwrap_err().kind,
            ErrorKind::ResourceNotFound
        );
    }

    #[test]
    fn layer_version_arns() {
        let s = Scope::default();
        let a = LayerVersionArn::parse(&s.layer_version_arn("l", 7), "arn").unwrap();
        assert_eq!((a.name.as_str(), a.version), ("l", 7));
        assert!(a.in_scope(&s));
        for bad in [
            "l:1",
            "arn:aws:lambda:us-east-1:000000000000:layer:l",
            "arn:aws:lambda:us-east-1:000000000000:layer:l:x",
            "arn:aws:lambda:us-east-1:000000000000:function:l:1",
            "arn:aws:lambda:us-east-1:00000:layer:l:1",
            "arn:aws:lambda:us-east-1:000000000000:layer:l:99999999999999999999999",
        ] {
            let e = LayerVersionArn::parse(bad, "arn").unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{bad}");
            assert!(e.message.contains("regular expression"), "{}", e.message);
        }
        assert!(is_aws_managed_layer_arn(
            "arn:aws:lambda:::awslayer:AWSLambda-Python-AWS-SDK"
        ));
        assert!(!is_aws_managed_layer_arn("arn:aws:lambda:::awslayer:"));
        assert!(!is_aws_managed_layer_arn(&s.layer_version_arn("l", 1)));
        assert_eq!(parse_layer_version_number("3").unwrap(), 3);
        for bad in ["0", "-1", "x", ""] {
            assert_eq!(
                parse_layer_version_number(bad).unwrap_err().kind,
                ErrorKind::InvalidParameterValue
            );
        }
    }

    #[test]
    fn function_layer_shape() {
        let l = Layer {
            arn: "a".into(),
            code_size: 3,
        };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"Arn":"a","CodeSize":3}"#
        );
    }
}
