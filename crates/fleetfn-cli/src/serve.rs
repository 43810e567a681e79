//! `fleetfn serve`: the embedded single-machine mode.

use std::sync::Arc;

use anyhow::Context;
use fleetfn_api::{AppState, router};
use fleetfn_dataplane::{DataPlane, LocalProvider, LocalProviderConfig};
use fleetfn_model::Scope;
use fleetfn_server::{ControlPlane, ControlPlaneConfig};
use fleetfn_store::SqliteStore;
use tokio_util::sync::CancellationToken;

use crate::{ServeArgs, credentials, default_data_dir};

async fn shutdown_signal(stop: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    stop.cancel();
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let (creds, generated) = credentials::load_or_create(&data_dir)?;
    let store = SqliteStore::open(&data_dir.join("state.db"))
        .await
        .context("opening the SQLite store")?;
    let scope = Scope {
        region: args.region.clone(),
        account: args.account_id.clone(),
    };
    let cp = ControlPlane::new(
        Arc::new(store.clone()),
        ControlPlaneConfig {
            scope,
            artifacts_dir: data_dir.join("artifacts"),
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = CancellationToken::new();
    let reconciler = cp.spawn_reconciler(stop.clone());
    let (invoker, deployer): (Option<Arc<dyn fleetfn_api::Invoker>>, _) = if args.no_data_plane {
        tracing::warn!(
            "data plane disabled (--no-data-plane): versions stay Pending, invokes are refused"
        );
        (None, None)
    } else {
        let dataplane = DataPlane::new(
            cp.clone(),
            LocalProvider::new(LocalProviderConfig {
                binary: std::env::current_exe().context("locating the fleetfn binary")?,
                instances_dir: data_dir.join("instances"),
                artifacts_dir: data_dir.join("artifacts"),
                runtime_dir: data_dir.join("runtimes"),
                logs_dir: data_dir.join("logs"),
            }),
        );
        let handle = dataplane.spawn(stop.clone());
        (Some(Arc::new(dataplane)), Some(handle))
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let app = router(AppState {
        cp,
        credentials: Arc::new(creds.clone()),
        invoker,
    });
    eprintln!(
        "fleetfn serving the Lambda API on http://{addr} (data dir {})",
        data_dir.display()
    );
    if generated {
        eprintln!(
            "Generated an admin key pair, stored in {}/credentials.json. Use it with the AWS CLI or SDKs:\n\n  export AWS_ACCESS_KEY_ID={}\n  export AWS_SECRET_ACCESS_KEY={}\n  export AWS_DEFAULT_REGION={}\n  aws --endpoint-url http://{addr} lambda list-functions\n",
            data_dir.display(),
            creds.access_key_id,
            creds.secret_access_key,
            args.region
        );
    }
    tokio::spawn(shutdown_signal(stop.clone()));
    let serve_stop = stop.clone();
    axum::serve(
        axum::serve::ListenerExt::tap_io(listener, |tcp| {
            // Small request/response exchanges: never wait for Nagle.
            let _ = tcp.set_nodelay(true);
        }),
        app,
    )
    .with_graceful_shutdown(async move { serve_stop.cancelled().await })
    .await
    .context("serving the API")?;
    stop.cancel();
    let _ = reconciler.await;
    if let Some(d) = deployer {
        let _ = d.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
