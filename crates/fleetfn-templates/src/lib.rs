//! CloudFormation templates for `fleetfn deploy`: parsing (JSON, and YAML with the short intrinsic
//! tags), parameters, conditions, mappings, intrinsic functions and the dependency order of
//! resources. Pure: no network, no files.

mod error;
mod eval;
pub mod sam;
pub mod stack;
mod template;

pub use error::TemplateError;
pub use eval::{
    Evaluator, Known, NothingKnown, ParamValue, Resolved, ResolvedOutput, StackContext,
};
pub use stack::{StackRecord, StackResource};
pub use template::{OutputDecl, ParameterDecl, ResourceDecl, Template, parse};
