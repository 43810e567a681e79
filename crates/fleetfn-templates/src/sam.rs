//! SAM transform (`Transform: AWS::Serverless-2016-10-31`): placeholder until the real one lands.
use crate::{StackContext, Template, TemplateError};

pub fn transform(t: &Template, _ctx: &StackContext) -> Result<Template, TemplateError> {
    Ok(t.clone())
}
