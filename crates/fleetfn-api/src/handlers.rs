//! One handler per Lambda operation: parse path, query and body into a typed command, call the
//! control plane, render the result with AWS's status code.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fleetfn_contracts::{EnvironmentsDocument, StatusDocument};
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::types::*;
use fleetfn_model::{ErrorKind, LambdaError};
use http::{HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::{AppState, Shared};

pub(crate) type ApiResult = Result<Response, ApiError>;

/// `x-amzn-RequestId` (HTTP/1.1 sends header names lowercase anyway).
pub(crate) const X_AMZN_REQUEST_ID: http::HeaderName =
    http::HeaderName::from_static("x-amzn-requestid");

/// Adds `x-amzn-RequestId` to every response.
pub async fn request_id(req: Request, next: Next) -> Response {
    with_request_id(next.run(req).await)
}

/// `resp` with an `x-amzn-RequestId` of its own unless it has one.
pub(crate) fn with_request_id(mut resp: Response) -> Response {
    if !resp.headers().contains_key(&X_AMZN_REQUEST_ID)
        && let Ok(v) = HeaderValue::from_str(&crate::invoke::new_request_id())
    {
        resp.headers_mut().insert(X_AMZN_REQUEST_ID, v);
    }
    resp
}

pub async fn unknown_operation(req: Request) -> Response {
    crate::error::render(&LambdaError::new(
        ErrorKind::UnknownOperation,
        format!(
            "No Lambda operation matches {} {}. Check the path against the Lambda API (2015-03-31 or 2025-11-30).",
            req.method(),
            req.uri().path()
        ),
    ))
}

/// The first value of `key` in a raw query string, decoded as [`Query::parse`] decodes it,
/// without decoding (or allocating for) the other parameters.
pub(crate) fn query_param<'a>(
    raw: Option<&'a str>,
    key: &str,
) -> Option<std::borrow::Cow<'a, str>> {
    fn decode(s: &str) -> std::borrow::Cow<'_, str> {
        if !s.bytes().any(|b| b == b'+' || b == b'%') {
            return std::borrow::Cow::Borrowed(s);
        }
        std::borrow::Cow::Owned(
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned(),
        )
    }
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k) == key).then(|| decode(v))
        })
}

/// Decoded query parameters (keys may repeat).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        Self(
            raw.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect(),
        )
    }
    /// Every pair, in order.
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub(crate) fn max_items(&self) -> Result<Option<u32>, LambdaError> {
        self.max_items_up_to(10000)
    }
    /// `MaxItems` of an operation whose model caps it at `max` (the range is checked by the
    /// service; here only that it is a number, with the model's bound in the message).
    pub(crate) fn max_items_up_to(&self, max: u32) -> Result<Option<u32>, LambdaError> {
        match self.get("MaxItems") {
            None => Ok(None),
            Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
                LambdaError::validation(
                    v,
                    "maxItems",
                    &format!("Member must be an integer between 1 and {max}"),
                )
            }),
        }
    }
}

/// Parses a JSON body into a request shape; an empty body is `{}`.
/// [`body`] for a request that may carry a code package (up to ≈ 70 MB of JSON): parsed on a
/// blocking thread when large, so the runtime's thread keeps serving invokes meanwhile.
pub(crate) async fn large_body<T: DeserializeOwned + Send + 'static>(
    bytes: Bytes,
) -> Result<T, LambdaError> {
    if bytes.len() <= INLINE_WORK_BYTES {
        return body(&bytes);
    }
    tokio::task::spawn_blocking(move || body(&bytes))
        .await
        .map_err(|e| LambdaError::service(format!("parsing the request body: {e}")))?
}

/// Up to this many bytes, parsing or hashing a body inline costs less than a hop to a blocking
/// thread (≈ 64 KiB of SHA-256 is ≈ 40 µs).
pub(crate) const INLINE_WORK_BYTES: usize = 64 * 1024;

pub(crate) fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, LambdaError> {
    let slice: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(slice);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            LambdaError::bad_content(format!("Could not parse request body into json: {inner}"))
        } else {
            LambdaError::bad_content(format!(
                "Could not parse request body into json: at '{path}': {inner}"
            ))
        }
    })
}

pub(crate) fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    (status, Json(v)).into_response()
}

pub(crate) fn fref(
    state: &AppState,
    name: &str,
    max: usize,
    q: &Query,
) -> Result<FunctionRef, LambdaError> {
    FunctionRef::parse(name, state.cp.scope(), max)?.with_query_qualifier(q.get("Qualifier"))
}

pub(crate) fn unqualified_ref(state: &AppState, name: &str) -> Result<FunctionRef, LambdaError> {
    FunctionRef::parse(name, state.cp.scope(), 140)
}

// ----- capacity providers -----

pub async fn create_capacity_provider(State(s): State<Shared>, b: Bytes) -> ApiResult {
    let p = s.cp.create_capacity_provider(body(&b)?).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &CapacityProviderResponse {
            capacity_provider: p,
        },
    ))
}

pub async fn list_capacity_providers(State(s): State<Shared>, req: Request) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let page =
        s.cp.list_capacity_providers(q.get("State"), q.get("Marker"), q.max_items()?)
            .await?;
    Ok(json(
        StatusCode::OK,
        &ListCapacityProvidersResponse {
            capacity_providers: page.items,
            next_marker: page.next_marker,
        },
    ))
}

pub async fn get_capacity_provider(State(s): State<Shared>, Path(name): Path<String>) -> ApiResult {
    let p = s.cp.get_capacity_provider(&name).await?;
    Ok(json(
        StatusCode::OK,
        &CapacityProviderResponse {
            capacity_provider: p,
        },
    ))
}

pub async fn update_capacity_provider(
    State(s): State<Shared>,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult {
    let p = s.cp.update_capacity_provider(&name, body(&b)?).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &CapacityProviderResponse {
            capacity_provider: p,
        },
    ))
}

pub async fn delete_capacity_provider(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult {
    let p = s.cp.delete_capacity_provider(&name).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &CapacityProviderResponse {
            capacity_provider: p,
        },
    ))
}

pub async fn list_function_versions_by_capacity_provider(
    State(s): State<Shared>,
    Path(name): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let r =
        s.cp.list_function_versions_by_capacity_provider(&name, q.get("Marker"), q.max_items()?)
            .await?;
    Ok(json(StatusCode::OK, &r))
}

// ----- scaling config -----

pub async fn put_function_scaling_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let b = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|e| LambdaError::bad_content(e.to_string()))?;
    let f = fref(&s, &function, 140, &q)?;
    let state = s.cp.put_function_scaling_config(&f, body(&b)?).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &PutFunctionScalingConfigResponse {
            function_state: state,
        },
    ))
}

pub async fn get_function_scaling_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = fref(&s, &function, 140, &q)?;
    Ok(json(
        StatusCode::OK,
        &s.cp.get_function_scaling_config(&f).await?,
    ))
}

// ----- functions -----

pub async fn create_function(State(s): State<Shared>, b: Bytes) -> ApiResult {
    let cfg = s.cp.create_function(large_body(b).await?).await?;
    Ok(json(StatusCode::CREATED, &cfg))
}

pub async fn list_functions(State(s): State<Shared>, req: Request) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let all = function_version_all(&q)?;
    let page =
        s.cp.list_functions(all, q.get("Marker"), q.max_items()?)
            .await?;
    Ok(json(
        StatusCode::OK,
        &ListFunctionsResponse {
            functions: page.items,
            next_marker: page.next_marker,
        },
    ))
}

/// ListFunctions' `FunctionVersion`: absent, or `ALL`.
pub(crate) fn function_version_all(q: &Query) -> Result<bool, LambdaError> {
    match q.get("FunctionVersion") {
        None => Ok(false),
        Some("ALL") => Ok(true),
        Some(v) => Err(LambdaError::validation(
            v,
            "functionVersion",
            "Member must satisfy enum value set: [ALL]",
        )),
    }
}

pub async fn get_function(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = fref(&s, &function, 256, &q)?;
    let mut out = s.cp.get_function(&f).await?;
    if let Some(url) = presigned_location(&s, req.headers(), &out.code.location)? {
        out.code.repository_type = "S3".into();
        out.code.location = url;
    }
    Ok(json(StatusCode::OK, &out))
}

/// A package location of the service (`fleetfn://artifacts/sha256/<hex>`) as AWS's presigned S3
/// URL would be: a download link valid for 10 minutes, signed with the admin key. `None` for
/// another location, or a request without `Host`.
pub(crate) fn presigned_location(
    s: &AppState,
    headers: &http::HeaderMap,
    location: &str,
) -> Result<Option<String>, LambdaError> {
    if let Some(hex) = location.strip_prefix("fleetfn://artifacts/sha256/")
        && let Some(host) = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    {
        let path = format!("/fleetfn/v1/code/{hex}");
        let params = fleetfn_sigv4::SigningParams {
            access_key_id: &s.credentials.access_key_id,
            secret_access_key: &s.credentials.secret_access_key,
            session_token: None,
            region: &s.cp.scope().region,
            service: "lambda",
            time: jiff::Timestamp::now(),
        };
        let query = fleetfn_sigv4::presign_query(
            "GET",
            &path,
            "",
            host,
            fleetfn_sigv4::UNSIGNED_PAYLOAD,
            600,
            &params,
        )
        .map_err(|e| LambdaError::service(format!("cannot sign the code location: {e}")))?;
        return Ok(Some(format!("http://{host}{path}?{query}")));
    }
    Ok(None)
}

/// Downloads a code package by its sha256 (the `Code.Location` of GetFunction).
pub async fn download_code(State(s): State<Shared>, Path(hex): Path<String>) -> ApiResult {
    package_response(&s, &hex).await
}

/// A code package by its sha256 as a zip response, or ResourceNotFoundException.
pub(crate) async fn package_response(s: &AppState, hex: &str) -> ApiResult {
    let bytes =
        s.cp.package(hex).await?.ok_or_else(|| {
            LambdaError::not_found(format!("Code package not found: sha256 {hex}"))
        })?;
    Ok((
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/zip")],
        bytes,
    )
        .into_response())
}

pub async fn get_function_configuration(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = fref(&s, &function, 256, &q)?;
    Ok(json(
        StatusCode::OK,
        &s.cp.get_function_configuration(&f).await?,
    ))
}

pub async fn update_function_code(
    State(s): State<Shared>,
    Path(function): Path<String>,
    b: Bytes,
) -> ApiResult {
    let f = unqualified_ref(&s, &function)?;
    Ok(json(
        StatusCode::OK,
        &s.cp.update_function_code(&f, large_body(b).await?).await?,
    ))
}

pub async fn update_function_configuration(
    State(s): State<Shared>,
    Path(function): Path<String>,
    b: Bytes,
) -> ApiResult {
    let f = unqualified_ref(&s, &function)?;
    Ok(json(
        StatusCode::OK,
        &s.cp.update_function_configuration(&f, body(&b)?).await?,
    ))
}

pub async fn delete_function(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = fref(&s, &function, 256, &q)?;
    let status = s.cp.delete_function(&f).await?;
    Ok(StatusCode::from_u16(status)
        .unwrap_or(StatusCode::NO_CONTENT)
        .into_response())
}

// ----- versions -----

pub async fn publish_version(
    State(s): State<Shared>,
    Path(function): Path<String>,
    b: Bytes,
) -> ApiResult {
    let f = unqualified_ref(&s, &function)?;
    Ok(json(
        StatusCode::CREATED,
        &s.cp.publish_version(&f, body(&b)?).await?,
    ))
}

pub async fn list_versions_by_function(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = FunctionRef::parse(&function, s.cp.scope(), 256)?;
    let page =
        s.cp.list_versions_by_function(&f, q.get("Marker"), q.max_items()?)
            .await?;
    Ok(json(
        StatusCode::OK,
        &ListVersionsByFunctionResponse {
            versions: page.items,
            next_marker: page.next_marker,
        },
    ))
}

// ----- aliases -----

pub async fn create_alias(
    State(s): State<Shared>,
    Path(function): Path<String>,
    b: Bytes,
) -> ApiResult {
    let f = unqualified_ref(&s, &function)?;
    Ok(json(
        StatusCode::CREATED,
        &s.cp.create_alias(&f, body(&b)?).await?,
    ))
}

pub async fn list_aliases(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = unqualified_ref(&s, &function)?;
    let page =
        s.cp.list_aliases(
            &f,
            q.get("FunctionVersion"),
            q.get("Marker"),
            q.max_items()?,
        )
        .await?;
    Ok(json(
        StatusCode::OK,
        &ListAliasesResponse {
            aliases: page.items,
            next_marker: page.next_marker,
        },
    ))
}

pub async fn get_alias(
    State(s): State<Shared>,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult {
    let f = unqualified_ref(&s, &function)?;
    Ok(json(StatusCode::OK, &s.cp.get_alias(&f, &alias).await?))
}

pub async fn update_alias(
    State(s): State<Shared>,
    Path((function, alias)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let f = unqualified_ref(&s, &function)?;
    Ok(json(
        StatusCode::OK,
        &s.cp.update_alias(&f, &alias, body(&b)?).await?,
    ))
}

pub async fn delete_alias(
    State(s): State<Shared>,
    Path((function, alias)): Path<(String, String)>,
) -> ApiResult {
    let f = unqualified_ref(&s, &function)?;
    s.cp.delete_alias(&f, &alias).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- tags and account -----

pub async fn tag_resource(
    State(s): State<Shared>,
    Path(resource): Path<String>,
    b: Bytes,
) -> ApiResult {
    let req: TagResourceRequest = body(&b)?;
    s.cp.tag_resource(&resource, req.tags).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn untag_resource(
    State(s): State<Shared>,
    Path(resource): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    s.cp.untag_resource(&resource, &q.all("tagKeys")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_tags(State(s): State<Shared>, Path(resource): Path<String>) -> ApiResult {
    let tags = s.cp.list_tags(&resource).await?;
    Ok(json(StatusCode::OK, &ListTagsResponse { tags }))
}

pub async fn get_account_settings(State(s): State<Shared>) -> ApiResult {
    Ok(json(StatusCode::OK, &s.cp.get_account_settings().await?))
}

/// `GET /fleetfn/v1/environments`: the data plane's environments (fleetfn extension).
pub async fn list_environments(State(s): State<Shared>) -> ApiResult {
    let body = s
        .invoker
        .as_ref()
        .map_or_else(EnvironmentsDocument::default, |i| i.environments());
    Ok(json(StatusCode::OK, &body))
}

/// `GET /fleetfn/v1/status`: capacity providers, instances, versions and their environments
/// (the JSON is documented in docs/STATUS.md).
pub async fn status(State(s): State<Shared>) -> ApiResult {
    let mut body = match s.invoker.as_ref() {
        Some(i) => i.status().await?,
        None => StatusDocument {
            generated_at: Some(fleetfn_model::time::now_lambda()),
            ..StatusDocument::empty(false)
        },
    };
    if let Some(q) = s.events.as_ref() {
        body.async_queue = Some(q.queue_status().await?);
    }
    Ok(json(StatusCode::OK, &body))
}

/// `GET /fleetfn/v1/cost?Since=24h`: instance-hours and requests per capacity provider with
/// their cost here, on AWS Lambda and on AWS LMI, and the break-even request rate.
pub async fn cost(State(s): State<Shared>, uri: axum::http::Uri) -> ApiResult {
    let q = Query::parse(uri.query());
    let since = cost_since(&q, jiff::Timestamp::now())?;
    let Some(invoker) = s.invoker.as_ref() else {
        return Err(LambdaError::service(
            "The cost report needs the data plane (fleetfn serve without --no-data-plane).",
        )
        .into());
    };
    Ok(json(StatusCode::OK, &invoker.cost(since).await?))
}

/// The cost report's `Since` (default: a day back from `now`).
pub(crate) fn cost_since(q: &Query, now: jiff::Timestamp) -> Result<jiff::Timestamp, LambdaError> {
    fleetfn_logs::parse_since(q.get("Since").unwrap_or("24h"), now)
        .map_err(|e| LambdaError::invalid(format!("Since: {e}")))
}

/// `GET /fleetfn/health` (no auth): 200 once serving; says whether a data plane is attached.
pub async fn health(State(s): State<Shared>) -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ok", "dataPlane": s.invoker.is_some() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tests::turns_while;

    #[tokio::test]
    async fn a_large_code_request_is_parsed_off_the_runtime_thread() {
        let zip = "A".repeat(4 << 20);
        let raw = format!(r#"{{"FunctionName":"f","Code":{{"ZipFile":"{zip}"}}}}"#);
        let (req, turns) = turns_while(large_body::<CreateFunctionRequest>(Bytes::from(raw))).await;
        let req = req.unwrap();
        assert_eq!(req.code.unwrap().zip_file.unwrap().len(), zip.len());
        assert!(
            turns > 0,
            "the 4 MiB request was parsed on the runtime's thread"
        );
        let (req, turns) = turns_while(large_body::<CreateFunctionRequest>(Bytes::from_static(
            br#"{"FunctionName":"f"}"#,
        )))
        .await;
        assert_eq!(req.unwrap().function_name.as_deref(), Some("f"));
        assert_eq!(turns, 0);
        let (err, _) = turns_while(large_body::<CreateFunctionRequest>(Bytes::from(format!(
            "{{\"FunctionName\": {}}}",
            "1".repeat(1 << 20)
        ))))
        .await;
        assert_eq!(err.unwrap_err().kind, ErrorKind::InvalidRequestContent);
    }
}
