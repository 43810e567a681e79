//! Lambda layers on the API (2018-10-31): PublishLayerVersion, GetLayerVersion,
//! GetLayerVersionByArn, ListLayers, ListLayerVersions, DeleteLayerVersion and the layer
//! version permissions. A layer version's `Content.Location` is a presigned download link, like
//! a function's `Code.Location`.

use axum::extract::{Path, Request, State};
use axum::response::IntoResponse;
use fleetfn_model::LambdaError;
use fleetfn_model::layers::{
    LayerFilter, LayerVersionResponse, ListLayerVersionsResponse, ListLayersResponse,
    parse_layer_version_number,
};
use http::StatusCode;

use crate::Shared;
use crate::handlers::{ApiResult, Query, body, json, large_body, presigned_location};

async fn read_body(req: Request) -> Result<bytes::Bytes, LambdaError> {
    // The size was checked in `auth::authenticate` against the operation's limit.
    axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|e| LambdaError::bad_content(e.to_string()))
}

fn filter(q: &Query) -> LayerFilter {
    LayerFilter {
        compatible_runtime: q.get("CompatibleRuntime").map(str::to_owned),
        compatible_architecture: q.get("CompatibleArchitecture").map(str::to_owned),
    }
}

/// The answer with `Content.Location` made a download link for this request's host.
fn with_location(
    s: &Shared,
    headers: &http::HeaderMap,
    mut v: LayerVersionResponse,
) -> Result<LayerVersionResponse, LambdaError> {
    if let Some(url) = presigned_location(s, headers, &v.content.location)? {
        v.content.location = url;
    }
    Ok(v)
}

/// `POST /2018-10-31/layers/{layer}/versions`: PublishLayerVersion (201).
pub async fn publish_layer_version(
    State(s): State<Shared>,
    Path(layer): Path<String>,
    req: Request,
) -> ApiResult {
    let headers = req.headers().clone();
    let b = read_body(req).await?;
    let v =
        s.cp.publish_layer_version(&layer, large_body(b).await?)
            .await?;
    Ok(json(StatusCode::CREATED, &with_location(&s, &headers, v)?))
}

/// `GET /2018-10-31/layers/{layer}/versions`: ListLayerVersions.
pub async fn list_layer_versions(
    State(s): State<Shared>,
    Path(layer): Path<String>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let page =
        s.cp.list_layer_versions(&layer, &filter(&q), q.get("Marker"), q.max_items_up_to(50)?)
            .await?;
    Ok(json(
        StatusCode::OK,
        &ListLayerVersionsResponse {
            layer_versions: page.items,
            next_marker: page.next_marker,
        },
    ))
}

/// `GET /2018-10-31/layers`: ListLayers, or with `find=LayerVersion` GetLayerVersionByArn.
pub async fn list_layers(State(s): State<Shared>, req: Request) -> ApiResult {
    let q = Query::parse(req.uri().query());
    match q.get("find") {
        Some("LayerVersion") => {
            let arn = q
                .get("Arn")
                .ok_or_else(|| LambdaError::validation("null", "arn", "Member must not be null"))?;
            let v = s.cp.get_layer_version_by_arn(arn).await?;
            return Ok(json(StatusCode::OK, &with_location(&s, req.headers(), v)?));
        }
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "find={other} is not an operation of /2018-10-31/layers; use find=LayerVersion with Arn, or no find to list layers."
            ))
            .into());
        }
        None => {}
    }
    let page =
        s.cp.list_layers(&filter(&q), q.get("Marker"), q.max_items_up_to(50)?)
            .await?;
    Ok(json(
        StatusCode::OK,
        &ListLayersResponse {
            layers: page.items,
            next_marker: page.next_marker,
        },
    ))
}

/// `GET /2018-10-31/layers/{layer}/versions/{version}`: GetLayerVersion.
pub async fn get_layer_version(
    State(s): State<Shared>,
    Path((layer, version)): Path<(String, String)>,
    req: Request,
) -> ApiResult {
    let v =
        s.cp.get_layer_version(&layer, parse_layer_version_number(&version)?)
            .await?;
    Ok(json(StatusCode::OK, &with_location(&s, req.headers(), v)?))
}

/// `DELETE /2018-10-31/layers/{layer}/versions/{version}`: DeleteLayerVersion (204).
pub async fn delete_layer_version(
    State(s): State<Shared>,
    Path((layer, version)): Path<(String, String)>,
) -> ApiResult {
    s.cp.delete_layer_version(&layer, parse_layer_version_number(&version)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /2018-10-31/layers/{layer}/versions/{version}/policy`: AddLayerVersionPermission (201).
pub async fn add_layer_version_permission(
    State(s): State<Shared>,
    Path((layer, version)): Path<(String, String)>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    let version = parse_layer_version_number(&version)?;
    let b = read_body(req).await?;
    let out =
        s.cp.add_layer_version_permission(&layer, version, body(&b)?, q.get("RevisionId"))
            .await?;
    Ok(json(StatusCode::CREATED, &out))
}

/// `GET /2018-10-31/layers/{layer}/versions/{version}/policy`: GetLayerVersionPolicy.
pub async fn get_layer_version_policy(
    State(s): State<Shared>,
    Path((layer, version)): Path<(String, String)>,
) -> ApiResult {
    let out =
        s.cp.get_layer_version_policy(&layer, parse_layer_version_number(&version)?)
            .await?;
    Ok(json(StatusCode::OK, &out))
}

/// `DELETE /2018-10-31/layers/{layer}/versions/{version}/policy/{sid}`:
/// RemoveLayerVersionPermission (204).
pub async fn remove_layer_version_permission(
    State(s): State<Shared>,
    Path((layer, version, sid)): Path<(String, String, String)>,
    req: Request,
) -> ApiResult {
    let q = Query::parse(req.uri().query());
    s.cp.remove_layer_version_permission(
        &layer,
        parse_layer_version_number(&version)?,
        &sid,
        q.get("RevisionId"),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
