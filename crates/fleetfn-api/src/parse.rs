//! The request parsing of every operation as one pure function, [`parse_request`], for the fuzz
//! targets in `fuzz/` (not a public API; the handlers do the same steps with the same helpers).
//!
//! It takes what routing hands a handler (the operation, its raw path parameters, the raw
//! query, the headers and the body) and runs everything the handler does before it calls the
//! control plane: percent-decoding of the path parameters (as axum's `Path` does), function
//! names, ARNs and qualifiers, query parameters and the JSON body into the operation's typed
//! request. No I/O, no state.

use fleetfn_model::arn::{self, FunctionRef};
use fleetfn_model::types::*;
use fleetfn_model::{LambdaError, Scope};
use http::HeaderMap;

use crate::handlers::{Query, body, function_version_all};

/// The operations whose requests [`parse_request`] parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateCapacityProvider,
    ListCapacityProviders,
    GetCapacityProvider,
    UpdateCapacityProvider,
    DeleteCapacityProvider,
    ListFunctionVersionsByCapacityProvider,
    GetFunctionScalingConfig,
    PutFunctionScalingConfig,
    CreateFunction,
    ListFunctions,
    GetFunction,
    DeleteFunction,
    GetFunctionConfiguration,
    UpdateFunctionConfiguration,
    UpdateFunctionCode,
    PublishVersion,
    ListVersionsByFunction,
    CreateAlias,
    ListAliases,
    GetAlias,
    UpdateAlias,
    DeleteAlias,
    Invoke,
    TagResource,
    UntagResource,
    ListTags,
    DownloadCode,
    GetLogs,
    Cost,
}

impl Operation {
    /// Every operation, in a fixed order (a fuzzer picks one by index).
    pub const ALL: [Operation; 29] = [
        Operation::CreateCapacityProvider,
        Operation::ListCapacityProviders,
        Operation::GetCapacityProvider,
        Operation::UpdateCapacityProvider,
        Operation::DeleteCapacityProvider,
        Operation::ListFunctionVersionsByCapacityProvider,
        Operation::GetFunctionScalingConfig,
        Operation::PutFunctionScalingConfig,
        Operation::CreateFunction,
        Operation::ListFunctions,
        Operation::GetFunction,
        Operation::DeleteFunction,
        Operation::GetFunctionConfiguration,
        Operation::UpdateFunctionConfiguration,
        Operation::UpdateFunctionCode,
        Operation::PublishVersion,
        Operation::ListVersionsByFunction,
        Operation::CreateAlias,
        Operation::ListAliases,
        Operation::GetAlias,
        Operation::UpdateAlias,
        Operation::DeleteAlias,
        Operation::Invoke,
        Operation::TagResource,
        Operation::UntagResource,
        Operation::ListTags,
        Operation::DownloadCode,
        Operation::GetLogs,
        Operation::Cost,
    ];
}

/// What a parsed request names (the typed body is parsed and dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The function the operation acts on, with its qualifier.
    pub function: Option<FunctionRef>,
    /// A capacity provider name, or the resource of a tagging operation, as given.
    pub resource: Option<String>,
}

/// Parses one request of `op` exactly as its handler does before calling the control plane.
/// `path` holds the raw (still percent-encoded) path parameters in route order, `query` the
/// raw query string.
pub fn parse_request(
    op: Operation,
    scope: &Scope,
    path: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Parsed, LambdaError> {
    use Operation as O;
    let q = Query::parse(query);
    let param = |i: usize| -> Result<String, LambdaError> {
        let raw = path.get(i).copied().unwrap_or("");
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| LambdaError::bad_content("Invalid URL: path is not UTF-8"))
    };
    let fref = |max: usize| -> Result<FunctionRef, LambdaError> {
        FunctionRef::parse(&param(0)?, scope, max)?.with_query_qualifier(q.get("Qualifier"))
    };
    let unqualified = || FunctionRef::parse(&param(0)?, scope, 140);
    let mut out = Parsed::default();
    match op {
        O::CreateCapacityProvider => {
            body::<CreateCapacityProviderRequest>(bytes)?;
        }
        O::ListCapacityProviders => {
            q.max_items()?;
        }
        O::GetCapacityProvider | O::DeleteCapacityProvider => {
            out.resource = Some(arn::parse_capacity_provider_name(&param(0)?, scope)?);
        }
        O::UpdateCapacityProvider => {
            out.resource = Some(arn::parse_capacity_provider_name(&param(0)?, scope)?);
            body::<UpdateCapacityProviderRequest>(bytes)?;
        }
        O::ListFunctionVersionsByCapacityProvider => {
            out.resource = Some(arn::parse_capacity_provider_name(&param(0)?, scope)?);
            q.max_items()?;
        }
        O::GetFunctionScalingConfig => out.function = Some(fref(140)?),
        O::PutFunctionScalingConfig => {
            out.function = Some(fref(140)?);
            body::<PutFunctionScalingConfigRequest>(bytes)?;
        }
        O::CreateFunction => {
            body::<CreateFunctionRequest>(bytes)?;
        }
        O::ListFunctions => {
            function_version_all(&q)?;
            q.max_items()?;
        }
        O::GetFunction | O::DeleteFunction | O::GetFunctionConfiguration => {
            out.function = Some(fref(256)?);
        }
        O::UpdateFunctionConfiguration => {
            out.function = Some(unqualified()?);
            body::<UpdateFunctionConfigurationRequest>(bytes)?;
        }
        O::UpdateFunctionCode => {
            out.function = Some(unqualified()?);
            body::<UpdateFunctionCodeRequest>(bytes)?;
        }
        O::PublishVersion => {
            out.function = Some(unqualified()?);
            body::<PublishVersionRequest>(bytes)?;
        }
        O::ListVersionsByFunction => {
            out.function = Some(FunctionRef::parse(&param(0)?, scope, 256)?);
            q.max_items()?;
        }
        O::CreateAlias => {
            out.function = Some(unqualified()?);
            body::<CreateAliasRequest>(bytes)?;
        }
        O::ListAliases => {
            out.function = Some(unqualified()?);
            q.max_items()?;
        }
        O::GetAlias | O::DeleteAlias => {
            out.function = Some(unqualified()?);
            out.resource = Some(param(1)?);
        }
        O::UpdateAlias => {
            out.function = Some(unqualified()?);
            out.resource = Some(param(1)?);
            body::<UpdateAliasRequest>(bytes)?;
        }
        O::Invoke => {
            out.function = Some(fref(256)?);
            crate::invoke::InvokeOptions::parse(headers)?;
        }
        O::TagResource => {
            let req: TagResourceRequest = body(bytes)?;
            drop(req);
            out.resource = Some(taggable(&param(0)?, scope)?);
        }
        O::UntagResource => {
            out.resource = Some(taggable(&param(0)?, scope)?);
            q.all("tagKeys");
        }
        O::ListTags => out.resource = Some(taggable(&param(0)?, scope)?),
        O::DownloadCode => {
            let hex = param(0)?;
            fleetfn_artifacts::Digest::from_hex(&hex, 0)
                .map_err(|_| LambdaError::not_found(format!("Code package not found: {hex}")))?;
        }
        O::GetLogs => {
            out.function = Some(fref(256)?);
            crate::logs::Params::parse(&q)?;
        }
        O::Cost => {
            crate::handlers::cost_since(&q, FIXED_NOW)?;
        }
    }
    Ok(out)
}

fn taggable(resource: &str, scope: &Scope) -> Result<String, LambdaError> {
    arn::parse_taggable(resource, scope)?;
    Ok(resource.to_owned())
}

/// The clock of [`parse_request`] (2026-11-27T09:00:00Z), so a parse is deterministic.
const FIXED_NOW: jiff::Timestamp = jiff::Timestamp::constant(1_795_770_000, 0);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        op: Operation,
        path: &[&str],
        query: Option<&str>,
        body: &str,
    ) -> Result<Parsed, LambdaError> {
        parse_request(
            op,
            &Scope::default(),
            path,
            query,
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn parses_names_arns_and_qualifiers_like_the_handlers() {
        let p = parse(
            Operation::GetFunction,
            &["arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello"],
            Some("Qualifier=%24LATEST.PUBLISHED"),
            "",
        )
        .unwrap();
        let f = p.function.unwrap();
        assert_eq!(
            (f.name.as_str(), f.qualifier.as_deref()),
            ("hello", Some("$LATEST.PUBLISHED"))
        );
        let e = parse(Operation::Invoke, &["hello%3A1"], Some("Qualifier=2"), "").unwrap_err();
        assert_eq!(e.kind, fleetfn_model::ErrorKind::InvalidParameterValue);
        assert!(parse(Operation::GetFunction, &["%FF"], None, "").is_err());
    }

    #[test]
    fn parses_bodies_into_the_typed_requests() {
        assert!(
            parse(
                Operation::CreateFunction,
                &[],
                None,
                r#"{"FunctionName":"f"}"#
            )
            .is_ok()
        );
        assert!(parse(Operation::CreateFunction, &[], None, "  ").is_ok());
        let e = parse(Operation::CreateFunction, &[], None, r#"{"Nope":1}"#).unwrap_err();
        assert_eq!(e.kind, fleetfn_model::ErrorKind::InvalidRequestContent);
    }

    #[test]
    fn cost_since_with_a_multibyte_end_is_a_4xx() {
        // fuzz/corpus/api_parse/crash-cost-since-multibyte: this panicked in parse_since.
        let e = parse(Operation::Cost, &[], Some("Since=48h%FF%FF"), "").unwrap_err();
        assert_eq!(e.kind.status(), 400);
    }
}
