//! CloudFormation templates for `fleetfn deploy`: parsing (JSON, and YAML with the short intrinsic
//! tags), parameters, conditions, mappings, intrinsic functions and the dependency order of
//! resources. Pure: no network, no files.
//!
//! YAML is read with `saphyr-parser` (maintained, YAML 1.2, reports tags, anchors and scalar
//! styles; `serde_yaml` is deprecated and unmaintained), and plain scalars are resolved the way
//! CloudFormation does with its YAML 1.1 templates (see `yaml.rs`). Limits against hostile input:
//! [`MAX_TEMPLATE_BYTES`], [`MAX_DEPTH`], [`MAX_RESOURCES`], [`MAX_EVAL_BYTES`]; YAML aliases are
//! rejected, as CloudFormation does.

mod error;
mod eval;
mod graph;
mod params;
pub mod sam;
pub mod stack;
mod template;
mod yaml;

/// Largest template text accepted: 1 MiB (CloudFormation takes 51,200 bytes in a request body and
/// 1 MB from S3; fleetfn reads files, so it takes the larger).
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;
/// Deepest nesting of mappings and lists in a template.
pub const MAX_DEPTH: usize = 64;
/// Most resources in one template (CloudFormation's limit).
pub const MAX_RESOURCES: usize = 500;

pub use error::TemplateError;
pub use eval::{
    Evaluator, Known, MAX_EVAL_BYTES, NothingKnown, ParamValue, Resolved, ResolvedOutput,
    StackContext,
};
pub use stack::{StackRecord, StackResource};
pub use template::{OutputDecl, ParameterDecl, ResourceDecl, Template, parse};
