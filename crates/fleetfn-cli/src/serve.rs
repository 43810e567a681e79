//! `fleetfn serve`: the embedded single-machine mode.

use std::sync::Arc;

use anyhow::Context;
use fleetfn_api::{AppState, router};
use fleetfn_dataplane::{DataPlane, DataPlaneConfig, LocalProvider, LocalProviderConfig};
use fleetfn_model::Scope;
use fleetfn_server::{ControlPlane, ControlPlaneConfig};
use fleetfn_store::{AnyStore, StoreLocation};
use tokio_util::sync::CancellationToken;

use crate::{ServeArgs, credentials, default_data_dir};

pub(crate) async fn shutdown_signal(stop: CancellationToken) {
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

/// The web console's host names (`fleetfn serve` and `fleetfn server`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// A host name the web console answers for besides IP addresses, localhost and
    /// *.localhost (repeatable; the env variable is comma-separated): the name a browser opens
    /// the console at, e.g. behind a reverse proxy. Other names are refused so that a page of
    /// another site cannot reach the console through DNS rebinding.
    #[arg(
        long = "console-host",
        value_name = "NAME",
        env = "FLEETFN_CONSOLE_HOSTS",
        value_delimiter = ','
    )]
    pub console_hosts: Vec<String>,
}

impl ConsoleArgs {
    /// The console's state: `Secure` cookies on a TLS listener, the allowed host names.
    pub fn console(&self, tls: bool) -> Arc<fleetfn_api::Console> {
        Arc::new(fleetfn_api::Console::new(tls).with_allowed_hosts(self.console_hosts.clone()))
    }
}

pub(crate) fn seconds(v: f64, flag: &str) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("{flag} takes a number of seconds ≥ 0, not {v}"))
}

/// A catalog override file (`--catalog`): `{"PricesAsOf": "...", "InstanceTypes": [...],
/// "Prices": {"m8g.large": 0.0898}, "Discounts": [{"Match": "m7g.*", "Kind": "SavingsPlan",
/// "Rate": 0.30}], "LambdaPrices": {...}}`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CatalogFile {
    prices_as_of: Option<String>,
    /// Types to add or replace, with their shape (and price, if known).
    #[serde(default)]
    instance_types: Vec<fleetfn_scheduler::InstanceType>,
    /// On-demand prices (USD/h) of types the catalog already has (e.g. the unpriced ones).
    #[serde(default)]
    prices: std::collections::BTreeMap<String, f64>,
    /// Pricing instruments: a discounted effective rate per type or family.
    #[serde(default)]
    discounts: fleetfn_cost::Discounts,
    /// AWS Lambda prices for `fleetfn cost` (all fields, see `fleetfn_cost::LambdaPrices`).
    lambda_prices: Option<fleetfn_cost::LambdaPrices>,
}

/// The instance catalog and the prices `fleetfn cost` compares with.
#[derive(Debug, Default)]
pub(crate) struct Pricing {
    pub catalog: fleetfn_scheduler::Catalog,
    pub lambda_prices: fleetfn_cost::LambdaPrices,
    pub discounts: fleetfn_cost::Discounts,
}

pub(crate) fn load_catalog(path: Option<&std::path::Path>) -> anyhow::Result<Pricing> {
    let Some(path) = path else {
        return Ok(Pricing::default());
    };
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_catalog(&raw).with_context(|| format!("{} is not a catalog file", path.display()))
}

fn parse_catalog(raw: &[u8]) -> anyhow::Result<Pricing> {
    let file: CatalogFile = serde_json::from_slice(raw)?;
    let mut catalog = fleetfn_scheduler::Catalog::builtin()
        .with_overrides(file.instance_types)
        .with_prices(&file.prices)?;
    if let Some(d) = file.prices_as_of {
        catalog.prices_as_of = d;
    }
    // A discount for no type is a typo: say so now, not as a report without the discount.
    for (i, d) in file.discounts.as_slice().iter().enumerate() {
        if !catalog.matches_any(&d.pattern) {
            anyhow::bail!(
                "Discounts[{i}].Match {:?} names no instance type of the catalog (add the type under InstanceTypes, or fix the name)",
                d.pattern
            );
        }
    }
    Ok(Pricing {
        catalog,
        lambda_prices: file.lambda_prices.unwrap_or_default(),
        discounts: file.discounts,
    })
}

/// What capacity providers may name in `AllowedInstanceTypes`/`ExcludedInstanceTypes`: the
/// types of `catalog`.
pub(crate) fn known_instance_types(
    catalog: &fleetfn_scheduler::Catalog,
) -> fleetfn_server::KnownInstanceTypes {
    let catalog = catalog.clone();
    fleetfn_server::KnownInstanceTypes::new(move |pattern| catalog.matches_any(pattern))
}

/// The store `--store`/`FLEETFN_STORE` names, or by default the SQLite file `state.db` in the
/// data dir; the error never shows the URL's password.
pub(crate) fn store_location(
    arg: Option<&str>,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<StoreLocation> {
    match arg {
        Some(url) => StoreLocation::parse(url).map_err(|e| anyhow::anyhow!("--store: {e}")),
        None => Ok(StoreLocation::Sqlite(
            data_dir
                .map_or_else(default_data_dir, std::path::Path::to_path_buf)
                .join("state.db"),
        )),
    }
}

/// What `fleetfn serve` and `fleetfn server` both open at start: the data dir, the admin key,
/// the store (migrated), the environment-variable key and the control plane over them.
pub(crate) struct Base {
    pub data_dir: std::path::PathBuf,
    pub creds: fleetfn_api::Credentials,
    /// Whether the admin key was generated now (and is to be printed).
    pub generated: bool,
    pub store: AnyStore,
    pub location: StoreLocation,
    pub cp: ControlPlane,
}

impl Base {
    pub async fn open(
        data_dir: Option<std::path::PathBuf>,
        location: StoreLocation,
        scope: Scope,
    ) -> anyhow::Result<Self> {
        let data_dir = data_dir.unwrap_or_else(default_data_dir);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let (creds, generated) = credentials::load_or_create(&data_dir)?;
        let store = open_store(&location).await?;
        let sealed = fleetfn_server::secrets::store_has_sealed_values(&store)
            .await
            .with_context(|| format!("reading the store ({location})"))?;
        let env_key = credentials::load_or_create_env_key(&data_dir, sealed)?;
        let cp = ControlPlane::new(
            Arc::new(store.clone()),
            ControlPlaneConfig {
                scope,
                artifacts_dir: data_dir.join("artifacts"),
                env_key,
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            data_dir,
            creds,
            generated,
            store,
            location,
            cp,
        })
    }
}

/// Prints the admin key pair generated at this start, with the lines to use it.
pub(crate) fn print_generated_key(
    data_dir: &std::path::Path,
    creds: &fleetfn_api::Credentials,
    addr: std::net::SocketAddr,
    region: &str,
) {
    eprintln!(
        "Generated an admin key pair, stored in {}/credentials.json. Use it with the AWS CLI or SDKs:\n\n  export AWS_ACCESS_KEY_ID={}\n  export AWS_SECRET_ACCESS_KEY={}\n  export AWS_DEFAULT_REGION={}\n  aws --endpoint-url http://{addr} lambda list-functions\n",
        data_dir.display(),
        creds.access_key_id,
        creds.secret_access_key,
        region
    );
}

/// Opens (and migrates) the store; the error says what to fix.
async fn open_store(location: &StoreLocation) -> anyhow::Result<AnyStore> {
    AnyStore::open(location)
        .await
        .with_context(|| format!("opening the store ({location})"))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if !(args.vcpu_scale.is_finite() && args.vcpu_scale > 0.0) {
        anyhow::bail!(
            "--vcpu-scale must be a positive number of host CPUs, not {}",
            args.vcpu_scale
        );
    }
    let log_limits = args.log_limits.limits()?;
    let header_read_timeout = seconds(args.header_read_timeout, "--header-read-timeout")?;
    if header_read_timeout.is_zero() {
        anyhow::bail!("--header-read-timeout must be more than 0 seconds");
    }
    if args.max_concurrent_uploads == 0 {
        anyhow::bail!("--max-concurrent-uploads must be at least 1");
    }
    let Base {
        data_dir,
        creds,
        generated,
        store,
        location,
        cp,
    } = Base::open(
        args.data_dir.clone(),
        store_location(args.store.as_deref(), args.data_dir.as_deref())?,
        Scope {
            region: args.region.clone(),
            account: args.account_id.clone(),
        },
    )
    .await?;
    // The URL endpoint's address first: FunctionUrls name its port.
    let url = crate::urls::bind(&args.urls, &args.region).await?;
    // The catalog (and prices) now: capacity providers are checked against it.
    let pricing = load_catalog(args.catalog.as_deref())?;
    let cp = cp
        .with_url_base(url.base.clone())
        .with_instance_types(known_instance_types(&pricing.catalog));
    // `fleetfn serve` runs its control loops without the leader lease: on a database that
    // `fleetfn server`s share it would be a second leader.
    if matches!(location, StoreLocation::Postgres(_))
        && fleetfn_store::Store::get(&store, fleetfn_store::Table::Leases, "leader/term")
            .await
            .with_context(|| format!("reading the store ({location})"))?
            .is_some()
    {
        anyhow::bail!(
            "the database at {location} belongs to a cluster of `fleetfn server`s (it holds their leader lease); \
             `fleetfn serve` would act as a second leader there: run `fleetfn server` instead, or give serve a database of its own"
        );
    }
    let stop = CancellationToken::new();
    let metrics = Arc::new(fleetfn_metrics::Metrics::new());
    let reconciler = cp.spawn_reconciler(stop.clone());
    let (invoker, deployer): (Option<Arc<dyn fleetfn_contracts::Invoker>>, _) = if args
        .no_data_plane
    {
        tracing::warn!(
            "data plane disabled (--no-data-plane): versions stay Pending, invokes are refused"
        );
        (None, None)
    } else {
        let dataplane = DataPlane::new(
            cp.clone(),
            Arc::new(LocalProvider::new(LocalProviderConfig {
                binary: std::env::current_exe().context("locating the fleetfn binary")?,
                instances_dir: data_dir.join("instances"),
                artifacts_dir: data_dir.join("artifacts"),
                runtime_dir: args
                    .runtime_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("runtimes")),
                logs_dir: data_dir.join("logs"),
                vcpu_scale: args.vcpu_scale,
                max_vcpus: args.max_local_vcpus,
                log_limits,
                unix_sockets: args.agent_transport == "unix",
                max_instance_age: seconds(args.max_instance_age, "--max-instance-age")?,
                agent_args: vec![
                    "--scheduling".to_owned(),
                    args.agent_scheduling.as_arg().to_owned(),
                ],
            })),
            DataPlaneConfig {
                catalog: pricing.catalog,
                lambda_prices: pricing.lambda_prices,
                discounts: pricing.discounts,
                scale_in_after: seconds(args.scale_in_after, "--scale-in-after")?,
                idle_instance_after: seconds(args.idle_instance_after, "--idle-instance-after")?,
                metrics: metrics.clone(),
                roles: crate::roles::assumer(&args.roles, &args.region).await?,
            },
        );
        let handle = dataplane.spawn(stop.clone());
        (Some(Arc::new(dataplane)), Some(handle))
    };
    // Asynchronous invokes and SQS event source mappings (serve leads alone: it runs both).
    let (events, dispatcher, pollers): (Option<Arc<dyn fleetfn_contracts::AsyncInvoker>>, _, _) =
        match &invoker {
            Some(invoker) => {
                let services = crate::events::services(&args.events).await?;
                let events = crate::events::build(
                    &args.events,
                    services.clone(),
                    Arc::new(store.clone()),
                    cp.clone(),
                    invoker.clone(),
                    metrics.clone(),
                )?;
                let handle = events.spawn(stop.clone());
                let pollers = crate::events::sources(services, invoker.clone(), metrics.clone())
                    .spawn(cp.clone(), stop.clone());
                (Some(Arc::new(events)), Some(handle), Some(pollers))
            }
            None => (None, None, None),
        };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let metrics_server =
        crate::metrics::serve(args.metrics_listen, metrics.clone(), stop.clone()).await?;
    let state = AppState {
        cp,
        credentials: Arc::new(creds.clone()),
        invoker,
        events,
        logs: Some(fleetfn_logs::LogStore {
            dir: data_dir.join("logs"),
            limits: log_limits,
        }),
        uploads: Arc::new(fleetfn_api::UploadPermits::new(
            args.max_concurrent_uploads,
            fleetfn_api::UploadPermits::DEFAULT_THRESHOLD,
        )),
        console: args.console.console(false),
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
    eprintln!(
        "fleetfn serving the Lambda API on http://{addr} (data dir {}, store {location})",
        data_dir.display()
    );
    if generated {
        print_generated_key(&data_dir, &creds, addr, &args.region);
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
    if let Some(u) = url_server {
        let _ = u.await;
    }
    let _ = reconciler.await;
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    if let Some(d) = deployer {
        let _ = d.await;
    }
    for task in [dispatcher, pollers].into_iter().flatten() {
        let _ = task.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod catalog_file_tests {
    use super::parse_catalog;

    #[test]
    fn prices_and_discounts_are_read() {
        let p = parse_catalog(
            br#"{"PricesAsOf": "2026-11-01", "Prices": {"m8g.large": 0.0898},
                 "Discounts": [{"Match": "m7g.*", "Kind": "SavingsPlan", "Rate": 0.30},
                               {"Match": "c7i.large", "Kind": "ReservedInstance", "Rate": 0.4}]}"#,
        )
        .unwrap();
        assert_eq!(p.catalog.prices_as_of, "2026-11-01");
        assert_eq!(p.catalog.get("m8g.large").unwrap().hourly_usd, Some(0.0898));
        assert_eq!(p.discounts.for_type("m7g.xlarge").unwrap().rate, 0.30);
        assert_eq!(
            p.discounts.for_type("c7i.large").unwrap().kind,
            fleetfn_cost::DiscountKind::ReservedInstance
        );
        // Nothing configured: the built-in catalog, no discounts.
        let d = parse_catalog(b"{}").unwrap();
        assert!(d.discounts.as_slice().is_empty());
        assert_eq!(d.catalog, fleetfn_scheduler::Catalog::builtin());
    }

    #[test]
    fn mistakes_are_named() {
        let err = |json: &str| format!("{:#}", parse_catalog(json.as_bytes()).err().unwrap());
        let e = err(r#"{"Discounts": [{"Match": "m7x.*", "Kind": "SavingsPlan", "Rate": 0.3}]}"#);
        assert!(
            e.contains(r#"Discounts[0].Match "m7x.*" names no instance type"#),
            "{e}"
        );
        let e = err(r#"{"Discounts": [{"Match": "m7g.*", "Kind": "SavingsPlan", "Rate": 30}]}"#);
        assert!(e.contains("Discounts[0].Rate is 30"), "{e}");
        let e = err(r#"{"Discounts": [{"Match": "m7g.*", "Kind": "Spot", "Rate": 0.3}]}"#);
        assert!(e.contains("unknown variant `Spot`"), "{e}");
        let e = err(r#"{"Prices": {"m99.large": 1.0}}"#);
        assert!(e.contains("cannot price m99.large"), "{e}");
        let e = err(r#"{"Discount": []}"#);
        assert!(e.contains("unknown field `Discount`"), "{e}");
    }
}
