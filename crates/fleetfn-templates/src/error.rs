//! The one error type of template parsing and evaluation; messages follow CloudFormation's wording.

use thiserror::Error;

/// Everything that can be wrong with a template, its parameters or its evaluation. Each variant names
/// what is at fault (a path in the template, a parameter, logical ids) and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// The template text is larger than the limit (bytes).
    #[error(
        "Template format error: the template is {size} bytes; at most {limit} bytes are accepted"
    )]
    TooLarge { size: usize, limit: usize },
    /// The text is neither well-formed JSON nor well-formed YAML.
    #[error("Template format error: {format} not well-formed. {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    /// The template's structure is wrong at `path` (e.g. `Resources.Fn.Properties.Environment`).
    #[error("Template format error: {path}: {message}")]
    Format { path: String, message: String },
    /// A limit against hostile input was exceeded (nesting depth, resource count, output size, ...).
    #[error("Template format error: {message}")]
    Limit { message: String },
    /// A feature the template uses that fleetfn does not support (e.g. `Fn::ImportValue`).
    #[error("Template format error: {path}: {message}")]
    Unsupported { path: String, message: String },
    /// Parameter overrides that name no parameter of the template.
    #[error("Parameters: [{}] do not exist in the template", .0.join(", "))]
    UnknownParameters(Vec<String>),
    /// Parameters without a Default that were given no value.
    #[error("Parameters: [{}] must have values", .0.join(", "))]
    MissingParameters(Vec<String>),
    /// A parameter value that breaks its declaration's constraints.
    #[error("Parameter '{name}' {message}")]
    InvalidParameter { name: String, message: String },
    /// Resources that reference each other in a cycle.
    #[error("Circular dependency between resources: [{}]", .0.join(", "))]
    CircularDependency(Vec<String>),
    /// Conditions that reference each other in a cycle.
    #[error("Template format error: Circular dependency between conditions: [{}]", .0.join(", "))]
    CircularCondition(Vec<String>),
    /// Ref / GetAtt / Sub / DependsOn names that are neither resources nor parameters.
    #[error(
        "Template format error: Unresolved resource dependencies [{}] in the Resources block of the template",
        .0.join(", ")
    )]
    UnresolvedDependencies(Vec<String>),
    /// The SAM transform rejected the template; each cause worded like aws-sam-translator's.
    #[error(
        "Transform AWS::Serverless-2016-10-31 failed with: Invalid Serverless Application Specification document. Number of errors found: {}. {}",
        .0.len(),
        .0.join(" ")
    )]
    Sam(Vec<String>),
    /// Outputs that reference resources that do not exist or whose Condition is false.
    #[error(
        "Template format error: Unresolved resource dependencies [{}] in the Outputs block of the template",
        .0.join(", ")
    )]
    UnresolvedOutputDependencies(Vec<String>),
    /// An intrinsic function failed on the values it was given (e.g. Fn::Select out of range).
    #[error("Template error: {path}: {message}")]
    Evaluation { path: String, message: String },
}

impl TemplateError {
    pub(crate) fn format(path: impl Into<String>, message: impl Into<String>) -> Self {
        TemplateError::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn eval(path: impl Into<String>, message: impl Into<String>) -> Self {
        TemplateError::Evaluation {
            path: path.into(),
            message: message.into(),
        }
    }
}
