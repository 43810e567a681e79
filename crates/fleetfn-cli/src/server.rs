//! `fleetfn server`: one of any number of API servers sharing a PostgreSQL store. Every server
//! serves the Lambda API; the one holding the leader lease (`fleetfn_store::lease`) runs the
//! control loops, writing through a store fenced by its term, so a paused or partitioned former
//! leader cannot overwrite its successor. A server that stops gives the lease up at once.
//! Code packages are kept in the store too. Not here yet (docs/CLUSTER.md): agents that join,
//! the `static` provider and invokes routed from every server; until then a server answers
//! Invoke with an error saying so.

use std::sync::Arc;

use anyhow::Context;
use fleetfn_api::{AppState, router};
use fleetfn_model::Scope;
use fleetfn_store::lease::{Elector, Fenced, LeaseConfig, Role};
use fleetfn_store::{Store, StoreLocation};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::serve::{Base, print_generated_key, seconds, shutdown_signal, store_location};
use crate::{ServerArgs, metrics};

/// The lease every server contends for.
const LEADER_LEASE: &str = "leader";

/// This process's contender id: the one given, else host name and process id (a restarted
/// server is a new contender).
fn server_id(given: Option<&str>) -> String {
    if let Some(id) = given {
        return id.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "server".into());
    format!("{host}-{}", std::process::id())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let header_read_timeout = seconds(args.header_read_timeout, "--header-read-timeout")?;
    if header_read_timeout.is_zero() {
        anyhow::bail!("--header-read-timeout must be more than 0 seconds");
    }
    if args.max_concurrent_uploads == 0 {
        anyhow::bail!("--max-concurrent-uploads must be at least 1");
    }
    let location = store_location(Some(&args.store), args.data_dir.as_deref())?;
    if !matches!(location, StoreLocation::Postgres(_)) {
        anyhow::bail!(
            "fleetfn server needs a store its servers share: --store postgres://USER:PASSWORD@HOST:PORT/DATABASE \
             (for one machine on SQLite, run `fleetfn serve`)"
        );
    }
    let base = Base::open(
        args.data_dir.clone(),
        location,
        Scope {
            region: args.region.clone(),
            account: args.account_id.clone(),
        },
    )
    .await?;
    // Code packages live in the shared store: any server hands out any package, and none is
    // lost with one server's disk.
    let cp = base.cp.clone().with_packages_in_store();
    let id = server_id(args.server_id.as_deref());
    let stop = CancellationToken::new();
    let shared: Arc<dyn Store> = Arc::new(base.store.clone());

    // The lease has connections of its own: API traffic (a 50 MB package read) filling the
    // shared pool must not delay renewals until the leader steps down.
    let lease_store: Arc<dyn Store> = Arc::new(
        fleetfn_store::AnyStore::open(&base.location)
            .await
            .context("opening the store for the leader lease")?,
    );
    let (role_tx, role_rx) = watch::channel(Role::Follower { leader: None });
    let elector = Elector::new(
        lease_store,
        LEADER_LEASE,
        id.clone(),
        LeaseConfig::default(),
    );
    // Cancelled only after the leader's loops have stopped, so the lease is given up last.
    let lease_stop = CancellationToken::new();
    let elector = {
        let lease_stop = lease_stop.clone();
        tokio::spawn(elector.run(role_tx, async move {
            lease_stop.cancelled().await;
        }))
    };
    let loops = tokio::spawn(lead_while_leader(
        cp.clone(),
        shared,
        role_rx,
        id.clone(),
        stop.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(fleetfn_metrics::Metrics::new());
    let metrics_server = metrics::serve(args.metrics_listen, metrics, stop.clone()).await?;
    let app = router(AppState {
        cp,
        credentials: Arc::new(base.creds.clone()),
        invoker: None,
        logs: None,
        uploads: Arc::new(fleetfn_api::UploadPermits::new(
            args.max_concurrent_uploads,
            fleetfn_api::UploadPermits::DEFAULT_THRESHOLD,
        )),
    });
    eprintln!(
        "fleetfn server {id} serving the Lambda API on http://{addr} (data dir {}, store {})",
        base.data_dir.display(),
        base.location
    );
    if base.generated {
        print_generated_key(&base.data_dir, &base.creds, addr, &args.region);
    }
    tokio::spawn(shutdown_signal(stop.clone()));
    let serve_stop = stop.clone();
    fleetfn_api::serve(
        listener,
        app,
        fleetfn_api::ListenerConfig {
            header_read_timeout,
        },
        async move { serve_stop.cancelled().await },
    )
    .await;
    stop.cancel();
    // The loops stop first, then the elector gives the lease up.
    let _ = loops.await;
    lease_stop.cancel();
    let _ = elector.await;
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    base.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Runs the leader's loops for each term this server holds, over a store fenced by that term,
/// and stops them as soon as the term ends (or a newer term replaces it).
async fn lead_while_leader(
    cp: fleetfn_server::ControlPlane,
    store: Arc<dyn Store>,
    mut role: watch::Receiver<Role>,
    id: String,
    stop: CancellationToken,
) {
    // The running term: its number, its loops' stop token and their task.
    let mut running: Option<(u64, CancellationToken, tokio::task::JoinHandle<()>)> = None;
    loop {
        let now = role.borrow_and_update().clone();
        let wanted = match &now {
            Role::Leader { term, fence } => Some((*term, fence.clone())),
            Role::Follower { .. } => None,
        };
        // Stop the loops of a term that ended (or was replaced by a newer one).
        if let Some((term, t, h)) = running.take() {
            if wanted.as_ref().is_some_and(|(n, _)| *n == term) {
                running = Some((term, t, h));
            } else {
                t.cancel();
                let _ = h.await;
                if wanted.is_none() {
                    let leader = match &now {
                        Role::Follower { leader: Some(l) } => l.as_str(),
                        _ => "nobody yet",
                    };
                    eprintln!("fleetfn server {id}: no longer the leader (following {leader})");
                }
            }
        }
        if running.is_none()
            && let Some((term, fence)) = wanted
        {
            eprintln!("fleetfn server {id}: leader (term {term})");
            let fenced: Arc<dyn Store> = Arc::new(Fenced::new(store.clone(), term, fence));
            let term_stop = stop.child_token();
            let reconciler = cp.with_store(fenced).spawn_reconciler(term_stop.clone());
            running = Some((term, term_stop, reconciler));
        }
        tokio::select! {
            () = stop.cancelled() => break,
            changed = role.changed() => if changed.is_err() { break },
        }
    }
    if let Some((_, t, h)) = running.take() {
        t.cancel();
        let _ = h.await;
    }
}
