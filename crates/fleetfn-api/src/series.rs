//! `GET /fleetfn/v1/functions/{function}/series` (SigV4, or the web console's session): the
//! function's one-second samples of the last 15 minutes, per version, from the data plane's
//! memory (`SeriesDocument`, docs/STATUS.md). Reading them costs the store one lookup of the
//! function (and its alias), never the samples.
//!
//! Query parameters: `Qualifier` (a version, `$LATEST.PUBLISHED` or an alias, whose versions it
//! routes to; default: every version) and `Since` (a unix time in seconds: only the samples
//! after it).

use axum::extract::{Path, Request, State};
use axum::response::Response;
use fleetfn_contracts::SeriesDocument;
use fleetfn_model::LambdaError;
use fleetfn_model::arn::FunctionRef;
use http::StatusCode;

use crate::Shared;
use crate::error::ApiError;
use crate::handlers::{Query, json};

/// `Since`: unix seconds.
fn since(q: &Query) -> Result<Option<u64>, LambdaError> {
    q.get("Since")
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                LambdaError::invalid(format!(
                    "Since must be a unix time in whole seconds (for example 1796400000), not {v:?}."
                ))
            })
        })
        .transpose()
}

pub async fn get_series(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query());
    let fref = FunctionRef::parse(&function, s.cp.scope(), 256)?
        .with_query_qualifier(q.get("Qualifier"))?;
    let since = since(&q)?;
    // Unknown functions, versions and aliases are ResourceNotFoundException.
    let versions = crate::logs::versions_of(&s, &fref).await?;
    let doc = match s.invoker.as_ref() {
        Some(i) => i.series(&fref.name, versions.as_deref(), since),
        None => SeriesDocument::empty(
            fref.name.clone(),
            u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0),
        ),
    };
    Ok(json(StatusCode::OK, &doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_whole_unix_seconds() {
        assert_eq!(since(&Query::parse(None)).unwrap(), None);
        assert_eq!(
            since(&Query::parse(Some("Since=1796400000"))).unwrap(),
            Some(1_796_400_000)
        );
        for bad in ["Since=-1", "Since=1h", "Since=1.5", "Since="] {
            let e = since(&Query::parse(Some(bad))).unwrap_err();
            assert!(e.message.contains("unix time in whole seconds"), "{e:?}");
        }
    }
}
