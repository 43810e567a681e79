//! Function URL configs (2021-10-31: Create/Get/Update/Delete/ListFunctionUrlConfig(s)) and
//! resource-based policies (AddPermission, RemovePermission, GetPolicy) on the API.

use axum::extract::{Path, Request, State};
use axum::response::IntoResponse;
use fleetfn_model::LambdaError;
use fleetfn_model::arn::FunctionRef;
use fleetfn_model::url::CreateFunctionUrlConfigResponse;
use http::StatusCode;

use crate::Shared;
use crate::handlers::{ApiResult, Query, body, fref, json};

async fn read_body(req: Request) -> Result<bytes::Bytes, LambdaError> {
    axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|e| LambdaError::bad_content(e.to_string()))
}

/// The function (and alias) of a URL operation: a name or ARN of at most 140 characters and
/// the `Qualifier` query parameter.
fn url_ref(s: &Shared, function: &str, q: &Query) -> Result<FunctionRef, LambdaError> {
    fref(s, function, 140, q)
}

/// The function, version or alias of a policy operation (names up to 256 characters).
fn policy_ref(s: &Shared, function: &str, q: &Query) -> Result<FunctionRef, LambdaError> {
    fref(s, function, 256, q)
}

/// `POST /2021-10-31/functions/{function}/url`: CreateFunctionUrlConfig (201).
pub async fn create_function_url_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = url_ref(&s, &function, &q)?;
    let b = read_body(req).await?;
    let cfg = s.cp.create_function_url_config(&f, body(&b)?).await?;
    Ok(json(
        StatusCode::CREATED,
        &CreateFunctionUrlConfigResponse::from(cfg),
    ))
}

/// `GET /2021-10-31/functions/{function}/url`: GetFunctionUrlConfig.
pub async fn get_function_url_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = url_ref(&s, &function, &q)?;
    Ok(json(
        StatusCode::OK,
        &s.cp.get_function_url_config(&f).await?,
    ))
}

/// `PUT /2021-10-31/functions/{function}/url`: UpdateFunctionUrlConfig.
pub async fn update_function_url_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = url_ref(&s, &function, &q)?;
    let b = read_body(req).await?;
    let cfg = s.cp.update_function_url_config(&f, body(&b)?).await?;
    Ok(json(StatusCode::OK, &cfg))
}

/// `DELETE /2021-10-31/functions/{function}/url`: DeleteFunctionUrlConfig (204).
pub async fn delete_function_url_config(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = url_ref(&s, &function, &q)?;
    s.cp.delete_function_url_config(&f).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /2021-10-31/functions/{function}/urls`: ListFunctionUrlConfigs.
pub async fn list_function_url_configs(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = FunctionRef::parse(&function, s.cp.scope(), 140)?;
    if f.qualifier.is_some() {
        return Err(LambdaError::invalid(
            "ListFunctionUrlConfigs takes an unqualified function name or ARN; it lists the URLs of the function and its aliases.",
        )
        .into());
    }
    let max = q.max_items_up_to(50)?;
    Ok(json(
        StatusCode::OK,
        &s.cp
            .list_function_url_configs(&f, q.get("Marker"), max)
            .await?,
    ))
}

/// `POST /2015-03-31/functions/{function}/policy`: AddPermission (201).
pub async fn add_permission(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = policy_ref(&s, &function, &q)?;
    let b = read_body(req).await?;
    let added = s.cp.add_permission(&f, body(&b)?).await?;
    Ok(json(StatusCode::CREATED, &added))
}

/// `GET /2015-03-31/functions/{function}/policy`: GetPolicy.
pub async fn get_policy(
    State(s): State<Shared>,
    Path(function): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = policy_ref(&s, &function, &q)?;
    Ok(json(StatusCode::OK, &s.cp.get_policy(&f).await?))
}

/// `DELETE /2015-03-31/functions/{function}/policy/{sid}`: RemovePermission (204).
pub async fn remove_permission(
    State(s): State<Shared>,
    Path((function, sid)): Path<(String, String)>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let f = policy_ref(&s, &function, &q)?;
    s.cp.remove_permission(&f, &sid, q.get("RevisionId"))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
