//! The Lambda REST API of fleetfn (restJson1, paths of the 2015-03-31 and 2025-11-30 models):
//! routing, SigV4, body limits, parsing requests into the typed commands of `fleetfn-model` and
//! rendering results and AWS-typed errors. It executes nothing itself: every operation is a call
//! on [`fleetfn_server::ControlPlane`] or on the [`Invoker`] of the data plane
//! (`fleetfn-contracts`), whose documents it serializes.
#![forbid(unsafe_code)]

mod auth;
mod cluster;
pub mod console;
mod error;
mod events;
mod eventstream;
mod fast;
#[doc(hidden)]
pub mod fuzzing;
mod handlers;
mod invoke;
mod layers;
mod listener;
mod logs;
#[doc(hidden)]
pub mod parse;
mod series;
mod stacks;
mod stream_invoke;
mod url;
mod urls;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use fleetfn_contracts::{AsyncInvoker, Invoker};
use fleetfn_server::ControlPlane;

pub use auth::{Credentials, UploadPermits};
pub use console::Console;
pub use error::{ApiError, render};
pub use fast::Api;
pub use listener::{
    DEFAULT_MAX_PEER_CONNECTIONS, ListenerConfig, serve, serve_tls, serve_with_peers,
};
pub use logs::FOLLOW_END_TYPE;
pub use url::{PATH_PREFIX as URL_PATH_PREFIX, UrlEndpoint, url_router};

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    pub cp: ControlPlane,
    pub credentials: Arc<Credentials>,
    pub invoker: Option<Arc<dyn Invoker>>,
    /// The asynchronous invocation queue (`InvocationType=Event`, `InvokeAsync`); `None`
    /// refuses them.
    pub events: Option<Arc<dyn AsyncInvoker>>,
    /// Function logs (`GET /fleetfn/v1/functions/{function}/logs`); `None` answers that this
    /// server keeps none.
    pub logs: Option<fleetfn_logs::LogStore>,
    /// Permits for buffering large request bodies (code uploads).
    pub uploads: Arc<UploadPermits>,
    /// The web console's sessions (`/console/`); `Console::new(true)` on a TLS listener marks
    /// its cookie `Secure`.
    pub console: Arc<Console>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The handlers' state: one allocation shared by reference, so axum's clones of it (several per
/// request) copy a pointer, not the fields.
#[derive(Clone, Debug)]
pub struct Shared(Arc<AppState>);

impl std::ops::Deref for Shared {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0
    }
}

/// The whole API: `/fleetfn/health` and the console's page and sign-in (`/console`) without
/// auth, everything else behind SigV4 or a console session (`auth::authenticate`); `Invoke`
/// on the fast path of [`Api`].
pub fn router(state: AppState) -> Api {
    use handlers as h;
    let state = Shared(Arc::new(state));
    let lambda = Router::new()
        .route(
            "/2025-11-30/capacity-providers",
            post(h::create_capacity_provider).get(h::list_capacity_providers),
        )
        .route(
            "/2025-11-30/capacity-providers/{name}",
            get(h::get_capacity_provider)
                .put(h::update_capacity_provider)
                .delete(h::delete_capacity_provider),
        )
        .route(
            "/2025-11-30/capacity-providers/{name}/function-versions",
            get(h::list_function_versions_by_capacity_provider),
        )
        .route(
            "/2025-11-30/functions/{function}/function-scaling-config",
            get(h::get_function_scaling_config).put(h::put_function_scaling_config),
        )
        .route(
            "/2015-03-31/functions",
            post(h::create_function).get(h::list_functions),
        )
        .route("/2015-03-31/functions/", get(h::list_functions))
        .route(
            "/2015-03-31/functions/{function}",
            get(h::get_function).delete(h::delete_function),
        )
        .route(
            "/2015-03-31/functions/{function}/configuration",
            get(h::get_function_configuration).put(h::update_function_configuration),
        )
        .route(
            "/2015-03-31/functions/{function}/code",
            axum::routing::put(h::update_function_code),
        )
        .route(
            "/2015-03-31/functions/{function}/versions",
            post(h::publish_version).get(h::list_versions_by_function),
        )
        .route(
            "/2015-03-31/functions/{function}/aliases",
            post(h::create_alias).get(h::list_aliases),
        )
        .route(
            "/2015-03-31/functions/{function}/aliases/{alias}",
            get(h::get_alias)
                .put(h::update_alias)
                .delete(h::delete_alias),
        )
        .route(
            "/2015-03-31/functions/{function}/invocations",
            post(invoke::invoke),
        )
        .route(
            "/2021-11-15/functions/{function}/response-streaming-invocations",
            post(stream_invoke::invoke_with_response_stream),
        )
        .route(
            "/2014-11-13/functions/{function}/invoke-async",
            post(events::invoke_async),
        )
        .route(
            "/2014-11-13/functions/{function}/invoke-async/",
            post(events::invoke_async),
        )
        .route(
            "/2019-09-25/functions/{function}/event-invoke-config",
            get(events::get_event_invoke_config)
                .put(events::put_event_invoke_config)
                .post(events::update_event_invoke_config)
                .delete(events::delete_event_invoke_config),
        )
        .route(
            "/2019-09-25/functions/{function}/event-invoke-config/list",
            get(events::list_event_invoke_configs),
        )
        .route(
            "/2021-10-31/functions/{function}/url",
            post(urls::create_function_url_config)
                .get(urls::get_function_url_config)
                .put(urls::update_function_url_config)
                .delete(urls::delete_function_url_config),
        )
        .route(
            "/2021-10-31/functions/{function}/urls",
            get(urls::list_function_url_configs),
        )
        .route(
            "/2015-03-31/functions/{function}/policy",
            post(urls::add_permission).get(urls::get_policy),
        )
        .route(
            "/2015-03-31/functions/{function}/policy/{sid}",
            axum::routing::delete(urls::remove_permission),
        )
        .route(
            "/2015-03-31/event-source-mappings",
            post(events::create_event_source_mapping).get(events::list_event_source_mappings),
        )
        .route(
            "/2015-03-31/event-source-mappings/",
            post(events::create_event_source_mapping).get(events::list_event_source_mappings),
        )
        .route(
            "/2015-03-31/event-source-mappings/{uuid}",
            get(events::get_event_source_mapping)
                .put(events::update_event_source_mapping)
                .delete(events::delete_event_source_mapping),
        )
        .route("/2018-10-31/layers", get(layers::list_layers))
        .route(
            "/2018-10-31/layers/{layer}/versions",
            post(layers::publish_layer_version).get(layers::list_layer_versions),
        )
        .route(
            "/2018-10-31/layers/{layer}/versions/{version}",
            get(layers::get_layer_version).delete(layers::delete_layer_version),
        )
        .route(
            "/2018-10-31/layers/{layer}/versions/{version}/policy",
            post(layers::add_layer_version_permission).get(layers::get_layer_version_policy),
        )
        .route(
            "/2018-10-31/layers/{layer}/versions/{version}/policy/{sid}",
            axum::routing::delete(layers::remove_layer_version_permission),
        )
        .route(
            "/2017-03-31/tags/{resource}",
            get(h::list_tags)
                .post(h::tag_resource)
                .delete(h::untag_resource),
        )
        .route("/fleetfn/v1/code/{sha256}", get(h::download_code))
        .route("/fleetfn/v1/environments", get(h::list_environments))
        .route("/fleetfn/v1/status", get(h::status))
        .route("/fleetfn/v1/functions/{function}/logs", get(logs::get_logs))
        .route(
            "/fleetfn/v1/functions/{function}/series",
            get(series::get_series),
        )
        .route("/fleetfn/v1/cost", get(h::cost))
        .route("/fleetfn/v1/stacks", get(stacks::list_stacks))
        .route(
            "/fleetfn/v1/stacks/{name}",
            get(stacks::get_stack)
                .put(stacks::put_stack)
                .delete(stacks::delete_stack),
        )
        .route(
            "/fleetfn/v1/join-tokens",
            get(cluster::list_join_tokens).post(cluster::create_join_token),
        )
        .route(
            "/fleetfn/v1/join-tokens/{id}",
            axum::routing::delete(cluster::revoke_join_token),
        )
        .route("/fleetfn/v1/agents", get(cluster::list_agents))
        .route(
            "/fleetfn/v1/agents/{id}",
            axum::routing::delete(cluster::remove_agent),
        )
        .route("/2016-08-19/account-settings", get(h::get_account_settings))
        .route(
            "/2016-08-19/account-settings/",
            get(h::get_account_settings),
        )
        .fallback(h::unknown_operation)
        // Limits are per operation and enforced in `auth::authenticate`, before buffering.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .method_not_allowed_fallback(h::unknown_operation)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    // Outside SigV4: a join token, or a joined agent's credential, is the bearer.
    let join = Router::new()
        .route("/fleetfn/v1/agents/join", post(cluster::join))
        .route(
            "/fleetfn/v1/agent/packages/{sha256}",
            get(cluster::agent_package),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            cluster::MAX_JOIN_BYTES,
        ));
    let router = Router::new()
        .route("/fleetfn/health", get(handlers::health))
        .merge(join)
        .merge(console::router())
        .merge(lambda)
        .layer(axum::middleware::from_fn(handlers::request_id))
        .with_state(state.clone());
    Api::new(router, state)
}
