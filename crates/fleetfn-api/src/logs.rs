//! `GET /fleetfn/v1/functions/{function}/logs` (SigV4 like the rest of the API): a function's
//! log records as JSON lines (`application/x-ndjson`), merged across its environments in
//! timestamp order.
//!
//! Query parameters: `Qualifier` (a version or alias; default: every version), `Since` (RFC 3339
//! or epoch milliseconds), `RequestId`, `Limit` (1–10000, default 1000), `Cursor` (from an
//! earlier answer), `Follow=true` and `Wait` (seconds, 1–900, default 60).
//!
//! Without `Follow`: at most `Limit` records (and about 4 MiB). `X-Fleetfn-Cursor` continues
//! after the last one, `X-Fleetfn-More: true` says more are there now, and
//! `X-Fleetfn-Dropped-Lines` counts the lines the cap and age limits deleted.
//!
//! With `Follow=true`: the records so far, then new ones as they are written (looked for every
//! 150 ms), for `Wait` seconds; the last line is `{"type":"fleetfn.followEnd","cursor":...}`,
//! whose cursor continues the stream in the next request.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::response::Response;
use fleetfn_logs::{Cursor, LogReader, ReadQuery};
use fleetfn_model::LambdaError;
use fleetfn_model::arn::FunctionRef;
use http::{HeaderValue, StatusCode};
use jiff::Timestamp;

use crate::error::ApiError;
use crate::handlers::Query;
use crate::{AppState, Shared};

/// `type` of the last line of a follow stream.
pub const FOLLOW_END_TYPE: &str = "fleetfn.followEnd";
const NDJSON: &str = "application/x-ndjson";
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;
const PAGE_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_WAIT_SECS: u64 = 60;
const MAX_WAIT_SECS: u64 = 900;
const POLL: Duration = Duration::from_millis(150);

/// The request's parameters, checked.
#[derive(Debug)]
pub(crate) struct Params {
    since: Option<Timestamp>,
    request_id: Option<String>,
    limit: usize,
    cursor: Option<Cursor>,
    follow: bool,
    wait: Duration,
}

fn int_in(q: &Query, key: &str, lo: u64, hi: u64, default: u64) -> Result<u64, LambdaError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| {
                LambdaError::invalid(format!(
                    "{key} must be a whole number from {lo} to {hi}, not {v:?}."
                ))
            }),
    }
}

impl Params {
    pub(crate) fn parse(q: &Query) -> Result<Self, LambdaError> {
        let since = q
            .get("Since")
            .map(|v| {
                fleetfn_logs::parse_time(v)
                    .map_err(|e| LambdaError::invalid(format!("Since: {e}.")))
            })
            .transpose()?;
        let request_id = match q.get("RequestId") {
            Some(v) if v.is_empty() || v.len() > 256 => {
                return Err(LambdaError::invalid(
                    "RequestId must be 1 to 256 characters.",
                ));
            }
            v => v.map(str::to_owned),
        };
        let limit = int_in(q, "Limit", 1, MAX_LIMIT as u64, DEFAULT_LIMIT as u64)?;
        let cursor = q
            .get("Cursor")
            .map(|c| Cursor::decode(c).map_err(|e| LambdaError::invalid(format!("Cursor: {e}."))))
            .transpose()?;
        let follow = match q.get("Follow") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(LambdaError::invalid(format!(
                    "Follow must be true or false, not {v:?}."
                )));
            }
        };
        let wait = int_in(q, "Wait", 1, MAX_WAIT_SECS, DEFAULT_WAIT_SECS)?;
        Ok(Self {
            since,
            request_id,
            limit: usize::try_from(limit).unwrap_or(DEFAULT_LIMIT),
            cursor,
            follow,
            wait: Duration::from_secs(wait),
        })
    }
}

/// The versions whose logs to read: `None` for all of them. Unknown functions, versions and
/// aliases are `ResourceNotFoundException`.
pub(crate) async fn versions_of(
    s: &AppState,
    fref: &FunctionRef,
) -> Result<Option<Vec<String>>, LambdaError> {
    let cfg = s.cp.get_function_configuration(fref).await?;
    match fref.qualifier.as_deref() {
        None => Ok(None),
        Some(q) if q.starts_with('$') || q.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(vec![cfg.version]))
        }
        Some(alias) => {
            let unqualified = FunctionRef {
                name: fref.name.clone(),
                qualifier: None,
            };
            let a = s.cp.get_alias(&unqualified, alias).await?;
            let mut versions = vec![a.function_version.clone()];
            if let Some(rc) = &a.routing_config {
                versions.extend(rc.additional_version_weights.keys().cloned());
            }
            Ok(Some(versions))
        }
    }
}

fn internal(e: impl std::fmt::Display) -> LambdaError {
    LambdaError::service(format!("reading the function's logs failed: {e}"))
}

fn ndjson(records: Vec<Vec<u8>>) -> Bytes {
    let mut body = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
    for r in records {
        body.extend_from_slice(&r);
        body.push(b'\n');
    }
    Bytes::from(body)
}

fn header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

pub async fn get_logs(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query());
    let fref = FunctionRef::parse(&function, s.cp.scope(), 256)?
        .with_query_qualifier(q.get("Qualifier"))?;
    let params = Params::parse(&q)?;
    let versions = versions_of(&s, &fref).await?;
    let Some(store) = s.logs.clone() else {
        return Err(LambdaError::invalid("This server keeps no function logs.").into());
    };
    // Records past the retention age are not served, even before they are pruned.
    let oldest = jiff::SignedDuration::try_from(store.limits.max_age)
        .ok()
        .and_then(|age| Timestamp::now().checked_sub(age).ok());
    let since = match (params.since, oldest) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let query = ReadQuery {
        since,
        request_id: params.request_id,
    };
    let name = fref.name;
    let reader = LogReader::new(&store.dir, &name, versions.clone(), query, params.cursor)
        .map_err(|e| LambdaError::invalid(e.to_string()))?;
    if params.follow {
        return Ok(follow(reader, params.wait));
    }
    let limit = params.limit;
    let (page, cursor, dropped) = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let page = reader.read_page(limit, PAGE_BYTES)?;
        let dropped =
            fleetfn_logs::dropped_for(&store.dir, &name, versions.as_deref()).unwrap_or_default();
        Ok::<_, std::io::Error>((page, reader.cursor(), dropped))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let more = page.more;
    let mut resp = Response::new(Body::from(ndjson(page.records)));
    *resp.status_mut() = StatusCode::OK;
    header(&mut resp, "content-type", NDJSON);
    header(&mut resp, "x-fleetfn-cursor", &cursor.encode());
    header(
        &mut resp,
        "x-fleetfn-more",
        if more { "true" } else { "false" },
    );
    header(
        &mut resp,
        "x-fleetfn-dropped-lines",
        &dropped.lines.to_string(),
    );
    Ok(resp)
}

/// Streams what there is, then new records as they come, for `wait`; ends with the cursor.
fn follow(reader: LogReader, wait: Duration) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(8);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + wait;
        let mut reader = reader;
        loop {
            let read = tokio::task::spawn_blocking(move || {
                let page = reader.read_page(MAX_LIMIT, PAGE_BYTES);
                (reader, page)
            })
            .await;
            let Ok((r, page)) = read else {
                return;
            };
            reader = r;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "reading function logs failed; ending the follow");
                    break;
                }
            };
            if !page.records.is_empty() && tx.send(Ok(ndjson(page.records))).await.is_err() {
                return;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline || tx.is_closed() {
                break;
            }
            if !page.more {
                tokio::time::sleep(POLL.min(deadline - now)).await;
            }
        }
        let end =
            serde_json::json!({ "type": FOLLOW_END_TYPE, "cursor": reader.cursor().encode() });
        let _ = tx.send(Ok(Bytes::from(format!("{end}\n")))).await;
    });
    let mut resp = Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    header(&mut resp, "content-type", NDJSON);
    header(&mut resp, "cache-control", "no-store");
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(raw: &str) -> Result<Params, LambdaError> {
        Params::parse(&Query::parse(Some(raw)))
    }

    #[test]
    fn parameters_are_checked_with_a_hint() {
        let p = params("Since=1767225600000&Limit=5&RequestId=r1&Follow=TRUE&Wait=900").unwrap();
        assert_eq!(p.since, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(p.limit, 5);
        assert_eq!(p.request_id.as_deref(), Some("r1"));
        assert!(p.follow);
        assert_eq!(p.wait, Duration::from_secs(900));
        let p = params("Since=2026-01-01T00%3A00%3A00Z").unwrap();
        assert_eq!(p.limit, DEFAULT_LIMIT);
        assert!(!p.follow);
        for (raw, hint) in [
            ("Since=10m", "RFC 3339"),
            ("Since=yesterday", "epoch milliseconds"),
            ("Limit=0", "from 1 to 10000"),
            ("Limit=abc", "from 1 to 10000"),
            ("Limit=10001", "from 1 to 10000"),
            ("Wait=901", "from 1 to 900"),
            ("Follow=yes", "true or false"),
            ("RequestId=", "1 to 256"),
            ("Cursor=%21%21", "unchanged"),
        ] {
            let e = params(raw).unwrap_err();
            assert_eq!(
                e.kind,
                fleetfn_model::ErrorKind::InvalidParameterValue,
                "{raw}"
            );
            assert!(e.message.contains(hint), "{raw}: {}", e.message);
        }
    }
}
