//! `fleetfn server`: one of any number of API servers sharing a PostgreSQL store. Every server
//! serves the Lambda API; the one holding the leader lease (`fleetfn_store::lease`) runs the
//! control loops, writing through a store fenced by its term, so a paused or partitioned former
//! leader cannot overwrite its successor. A server that stops gives the lease up at once.
//! Code packages are kept in the store too. The data plane runs on joined agents through the
//! `static` provider (or, with `--instance-provider ec2`, on EC2 instances the leader launches
//! for the capacity providers, whose agents join the same way): the leader's places, scales and
//! replaces environments on them; every
//! other server runs a follower that routes invokes to what the agents report. When the
//! leader changes, the new leader adopts what runs (nothing is started twice), and a server
//! that stops leaves the agents and their environments running.

use std::sync::Arc;

use anyhow::Context;
use fleetfn_api::{AppState, router};
use fleetfn_contracts::{
    CostDocument, EnvironmentsDocument, InvokeOutcome, InvokeRequest, Invoker, StatusDocument,
    StreamingOutcome,
};
use fleetfn_dataplane::{DataPlane, DataPlaneConfig, InstanceProvider, StaticProvider};
use fleetfn_model::{LambdaError, Scope};
use fleetfn_store::lease::{Elector, Fenced, LeaseConfig, Role};
use fleetfn_store::{Store, StoreLocation};
use std::future::Future;
use std::pin::Pin;
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
    // TLS files first: a bad one stops the start before anything is opened.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(fleetfn_proto::tls::ServerTls::from_pem_files(
            cert,
            key,
            "--tls-cert",
            "--tls-key",
        )?),
        _ => None,
    };
    let agent_tls = args
        .agent_ca
        .as_deref()
        .map(|ca| fleetfn_proto::tls::ClientTls::from_ca_file(ca, "--agent-ca"))
        .transpose()?;
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
    // Other servers change desired state too: an invoke's resolution of a qualifier is kept at
    // most a second, so a publish or alias update through any server reaches this one's invokes.
    // The URL endpoint's address first: FunctionUrls name its port.
    let url = crate::urls::bind(&args.urls, &args.region).await?;
    // Instance types, prices and discounts (`--catalog`): capacity providers are checked
    // against the types, `fleetfn cost` prices with them.
    let pricing = crate::serve::load_catalog(args.catalog.as_deref())?;
    anyhow::ensure!(
        args.ec2.max_instance_age >= 60,
        "--max-instance-age must be at least 60 seconds"
    );
    let cp = base
        .cp
        .clone()
        .with_url_base(url.base.clone())
        .with_packages_in_store()
        .with_resolve_ttl(std::time::Duration::from_secs(1))
        .with_instance_types(crate::serve::known_instance_types(&pricing.catalog));
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
    let metrics = Arc::new(fleetfn_metrics::Metrics::new());
    let plane = Arc::new(CurrentPlane::default());
    let roles = if args.no_data_plane {
        None
    } else {
        crate::roles::assumer(&args.roles, &args.region).await?
    };
    let services = if args.no_data_plane {
        None
    } else {
        crate::events::services(&args.events).await?
    };
    let idle_instance_after = seconds(args.ec2.idle_instance_after, "--idle-instance-after")?;
    let ec2 = if args.no_data_plane {
        None
    } else {
        crate::ec2::setup(&args.ec2, &args.region).await?
    };
    let planes = (!args.no_data_plane).then(|| Planes {
        current: plane.clone(),
        metrics: metrics.clone(),
        agent_tls,
        ec2,
        idle_instance_after,
        max_instance_age: std::time::Duration::from_secs(args.ec2.max_instance_age),
        pricing: Arc::new(pricing),
        catalog_file: args.catalog.is_some(),
        roles,
        // The leader polls SQS event source mappings, through whichever plane is current.
        sources: crate::events::sources(
            services.clone(),
            plane.clone() as Arc<dyn Invoker>,
            metrics.clone(),
        ),
    });
    if planes.is_none() {
        tracing::warn!(
            "data plane disabled (--no-data-plane): versions stay Pending, invokes are refused"
        );
    }
    let loops = tokio::spawn(lead_while_leader(
        cp.clone(),
        shared,
        role_rx,
        id.clone(),
        stop.clone(),
        planes,
    ));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let invoker = (!args.no_data_plane).then_some(plane as Arc<dyn Invoker>);
    // Every server delivers asynchronous events (the queue's leases keep them apart).
    let (events, dispatcher): (Option<Arc<dyn fleetfn_contracts::AsyncInvoker>>, _) = match &invoker
    {
        Some(invoker) => {
            let events = crate::events::build(
                &args.events,
                services.clone(),
                Arc::new(base.store.clone()),
                cp.clone(),
                invoker.clone(),
                metrics.clone(),
            )?;
            let handle = events.spawn(stop.clone());
            (Some(Arc::new(events)), Some(handle))
        }
        None => (None, None),
    };
    let metrics_server = metrics::serve(args.metrics_listen, metrics.clone(), stop.clone()).await?;
    let state = AppState {
        cp,
        credentials: Arc::new(base.creds.clone()),
        invoker,
        events,
        logs: None,
        uploads: Arc::new(fleetfn_api::UploadPermits::new(
            args.max_concurrent_uploads,
            fleetfn_api::UploadPermits::DEFAULT_THRESHOLD,
        )),
        console: args.console.console(tls.is_some()),
    };
    let url_server = url
        .listener
        .map(|l| {
            crate::urls::spawn(
                l,
                state.clone(),
                &args.urls.url_domain,
                &args.region,
                metrics,
                fleetfn_api::ListenerConfig {
                    header_read_timeout,
                },
                stop.clone(),
            )
        })
        .transpose()?;
    let app = router(state);
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "fleetfn server {id} serving the Lambda API on {scheme}://{addr} (data dir {}, store {})",
        base.data_dir.display(),
        base.location
    );
    if base.generated {
        print_generated_key(&base.data_dir, &base.creds, addr, &args.region);
    }
    tokio::spawn(shutdown_signal(stop.clone()));
    let serve_stop = stop.clone();
    let cfg = fleetfn_api::ListenerConfig {
        header_read_timeout,
    };
    let stopped = async move { serve_stop.cancelled().await };
    match tls {
        Some(tls) => {
            // The handshake is bounded like a request head.
            let listener =
                fleetfn_proto::tls::TlsListener::new(listener, &tls, header_read_timeout)?;
            fleetfn_api::serve_tls(listener, app, cfg, stopped).await;
        }
        None => fleetfn_api::serve(listener, app, cfg, stopped).await,
    }
    stop.cancel();
    if let Some(u) = url_server {
        let _ = u.await;
    }
    if let Some(d) = dispatcher {
        let _ = d.await;
    }
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

/// The data plane the API uses: the leader's while this server leads, a follower's otherwise.
#[derive(Default)]
struct CurrentPlane(parking_lot::RwLock<Option<DataPlane>>);

impl CurrentPlane {
    fn get(&self) -> Option<DataPlane> {
        self.0.read().clone()
    }

    fn set(&self, dp: DataPlane) {
        *self.0.write() = Some(dp);
    }
}

fn no_plane() -> LambdaError {
    LambdaError::service("this server's data plane is starting; retry the request")
}

impl Invoker for CurrentPlane {
    fn invoke(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = fleetfn_model::Result<InvokeOutcome>> + Send + '_>> {
        let dp = self.get();
        Box::pin(async move {
            match dp {
                Some(dp) => dp.invoke(req).await,
                None => Err(no_plane()),
            }
        })
    }

    fn invoke_stream(
        &self,
        req: InvokeRequest,
    ) -> Pin<Box<dyn Future<Output = fleetfn_model::Result<StreamingOutcome>> + Send + '_>> {
        let dp = self.get();
        Box::pin(async move {
            match dp {
                Some(dp) => dp.invoke_stream(req).await,
                None => Err(no_plane()),
            }
        })
    }

    fn environments(&self) -> EnvironmentsDocument {
        self.get().map(|dp| dp.environments()).unwrap_or_default()
    }

    fn series(
        &self,
        function: &str,
        versions: Option<&[String]>,
        since: Option<u64>,
    ) -> fleetfn_contracts::SeriesDocument {
        match self.get() {
            Some(dp) => dp.series(function, versions, since),
            None => fleetfn_contracts::SeriesDocument::empty(
                function,
                jiff::Timestamp::now().as_second().try_into().unwrap_or(0),
            ),
        }
    }

    fn cost(
        &self,
        since: jiff::Timestamp,
    ) -> Pin<Box<dyn Future<Output = fleetfn_model::Result<CostDocument>> + Send + '_>> {
        let dp = self.get();
        Box::pin(async move {
            match dp {
                Some(dp) => dp.cost(since).await,
                None => Err(no_plane()),
            }
        })
    }

    fn status(
        &self,
    ) -> Pin<Box<dyn Future<Output = fleetfn_model::Result<StatusDocument>> + Send + '_>> {
        let dp = self.get();
        Box::pin(async move {
            match dp {
                Some(dp) => dp.status().await,
                None => Ok(StatusDocument::empty(true)),
            }
        })
    }
}

/// What the leader's and followers' data planes are made with.
struct Planes {
    current: Arc<CurrentPlane>,
    metrics: Arc<fleetfn_metrics::Metrics>,
    /// The CA agents' certificates are verified with (`--agent-ca`).
    agent_tls: Option<fleetfn_proto::tls::ClientTls>,
    /// The `ec2` provider's setup (`--instance-provider ec2`); `None`: joined hosts (`static`).
    ec2: Option<crate::ec2::Ec2Setup>,
    idle_instance_after: std::time::Duration,
    /// `--max-instance-age`: old claims of the `static` provider are handed over.
    max_instance_age: std::time::Duration,
    /// `--catalog`'s types, prices and discounts (the built-in catalog without one).
    pricing: Arc<crate::serve::Pricing>,
    /// Whether `--catalog` was given (its types then win over EC2's described ones).
    catalog_file: bool,
    roles: Option<Arc<dyn fleetfn_roles::RoleAssumer>>,
    sources: fleetfn_events::sources::EventSources,
}

impl Planes {
    fn config(&self) -> DataPlaneConfig {
        DataPlaneConfig {
            metrics: self.metrics.clone(),
            roles: self.roles.clone(),
            idle_instance_after: self.idle_instance_after,
            catalog: match (&self.ec2, self.catalog_file) {
                (Some(e), false) => e.catalog.clone(),
                _ => self.pricing.catalog.clone(),
            },
            lambda_prices: self.pricing.lambda_prices.clone(),
            discounts: self.pricing.discounts.clone(),
            ..DataPlaneConfig::default()
        }
    }

    /// Joined agents as instances (EC2 instances this server launched, with the `ec2`
    /// provider); a leader's calls carry its `term`.
    fn provider(
        &self,
        cp: &fleetfn_server::ControlPlane,
        term: Option<u64>,
    ) -> Arc<dyn InstanceProvider> {
        if let Some(ec2) = &self.ec2 {
            return ec2.provider(cp, term, self.agent_tls.clone());
        }
        Arc::new(
            StaticProvider::new(
                Arc::new(cp.clone()),
                fleetfn_scheduler::Catalog::builtin(),
                term,
                self.agent_tls.clone(),
            )
            .with_max_age(self.max_instance_age),
        )
    }

    /// A follower with the routes of every claimed agent, serving.
    async fn follow(
        &self,
        cp: &fleetfn_server::ControlPlane,
        stop: &CancellationToken,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let dp = DataPlane::follower(cp.clone(), self.provider(cp, None), self.config());
        dp.follow_once().await;
        let t = stop.child_token();
        let h = dp.spawn_follower(t.clone());
        self.current.set(dp);
        (t, h)
    }
}

/// A term's loops: its stop token, the reconciler, the leader's data plane and the pollers of
/// event source mappings.
struct Term {
    number: u64,
    stop: CancellationToken,
    reconciler: tokio::task::JoinHandle<()>,
    dataplane: tokio::task::JoinHandle<()>,
    sources: Option<tokio::task::JoinHandle<()>>,
}

impl Term {
    async fn end(self) {
        self.stop.cancel();
        let _ = self.reconciler.await;
        let _ = self.dataplane.await;
        if let Some(s) = self.sources {
            let _ = s.await;
        }
    }
}

/// Runs the leader's loops for each term this server holds, over a store fenced by that term,
/// and stops them as soon as the term ends (or a newer term replaces it); a follower's data
/// plane routes whenever this server does not lead.
async fn lead_while_leader(
    cp: fleetfn_server::ControlPlane,
    store: Arc<dyn Store>,
    mut role: watch::Receiver<Role>,
    id: String,
    stop: CancellationToken,
    planes: Option<Planes>,
) {
    let mut running: Option<Term> = None;
    let mut following = match &planes {
        Some(p) => Some(p.follow(&cp, &stop).await),
        None => None,
    };
    loop {
        let now = role.borrow_and_update().clone();
        let wanted = match &now {
            Role::Leader { term, fence } => Some((*term, fence.clone())),
            Role::Follower { .. } => None,
        };
        // Stop the loops of a term that ended (or was replaced by a newer one); route as a
        // follower meanwhile.
        if let Some(term) = running.take() {
            if wanted.as_ref().is_some_and(|(n, _)| *n == term.number) {
                running = Some(term);
            } else {
                if following.is_none()
                    && let Some(p) = &planes
                {
                    following = Some(p.follow(&cp, &stop).await);
                }
                term.end().await;
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
            let fenced_cp = cp.with_store(fenced);
            let term_stop = stop.child_token();
            let reconciler = fenced_cp.spawn_reconciler(term_stop.clone());
            // The leader's data plane adopts what runs before it places anything, and takes
            // the invokes once it has.
            let dataplane = match &planes {
                Some(p) => {
                    let dp = DataPlane::new(
                        fenced_cp.clone(),
                        p.provider(&fenced_cp, Some(term)),
                        p.config(),
                    );
                    dp.adopt(&term_stop).await;
                    let handle = dp.spawn(term_stop.clone());
                    p.current.set(dp);
                    handle
                }
                None => tokio::spawn(async {}),
            };
            if let Some((t, h)) = following.take() {
                t.cancel();
                let _ = h.await;
            }
            let sources = planes
                .as_ref()
                .map(|p| p.sources.spawn(fenced_cp.clone(), term_stop.clone()));
            running = Some(Term {
                number: term,
                stop: term_stop,
                reconciler,
                dataplane,
                sources,
            });
        }
        tokio::select! {
            () = stop.cancelled() => break,
            changed = role.changed() => if changed.is_err() { break },
        }
    }
    if let Some(term) = running.take() {
        term.end().await;
    }
    if let Some((t, h)) = following.take() {
        t.cancel();
        let _ = h.await;
    }
}
