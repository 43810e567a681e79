//! `fleetfn agent`: runs on an instance, starts and serves its execution environments for the
//! server. In `fleetfn serve` every virtual instance is one such process.

use std::path::PathBuf;

use anyhow::Context;
use fleetfn_agent::{
    Agent, AgentConfig, InstanceShape, InstanceSlice, RuntimeProvider, RuntimeProviderConfig,
    SandboxLauncher,
};
use tokio::io::AsyncReadExt;

use crate::AgentArgs;

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let token = std::env::var("FLEETFN_AGENT_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    anyhow::ensure!(
        token.is_some() || !args.join.is_empty(),
        "FLEETFN_AGENT_TOKEN must hold the token the server authenticates with (or join servers with --join)"
    );
    // This agent's own API over TLS (--tls-cert), or plain HTTP.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            anyhow::ensure!(
                !args.join.is_empty(),
                "--tls-cert is for agents that --join servers"
            );
            Some(fleetfn_proto::tls::ServerTls::from_pem_files(
                cert,
                key,
                "--tls-cert",
                "--tls-key",
            )?)
        }
        _ => None,
    };
    let mut server_http = None;
    if !args.join.is_empty() {
        server_http = Some(crate::join::check_servers(
            &args.join,
            args.allow_plain_http,
            args.ca_file.as_deref(),
        )?);
        if tls.is_none() {
            anyhow::ensure!(
                args.allow_plain_http,
                "without --tls-cert and --tls-key this agent's API would be plain HTTP: the \
                 servers' calls, with this agent's credential and invoke payloads, would cross \
                 the network unencrypted; give it a certificate, or add --allow-plain-http to do \
                 it anyway on a network you trust"
            );
            tracing::warn!(
                "serving the agent API over plain HTTP (--allow-plain-http): the servers' calls, with this agent's credential and invoke payloads, cross the network unencrypted"
            );
        }
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let runtime_dir: PathBuf = args
        .runtime_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("runtimes"));
    let mut rcfg =
        RuntimeProviderConfig::new(runtime_dir, args.data_dir.join("environments")).with_sdk_env();
    if let Some(py) = std::env::var_os("FLEETFN_PYTHON") {
        // FLEETFN_PYTHON=/path/to/python3.13 pins the interpreter of its minor version.
        let path = PathBuf::from(py);
        if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && name.starts_with("python3.")
        {
            rcfg.python_interpreters
                .insert(name.to_string(), path.clone());
        }
    }
    let mut provider = RuntimeProvider::detect(rcfg);
    let host_runtimes = provider.host().clone();
    let local = InstanceShape::local();
    let shape = InstanceShape {
        instance_type: args.instance_type.clone(),
        vcpus: args.vcpus.unwrap_or(local.vcpus),
        memory_mib: args.memory_mib.unwrap_or(local.memory_mib),
        cpu_scale: args.cpu_scale,
    };
    anyhow::ensure!(
        shape.cpu_scale.is_finite() && shape.cpu_scale > 0.0,
        "--cpu-scale must be a positive number"
    );
    let probed = fleetfn_sandbox::probe(&fleetfn_sandbox::LinuxHost);
    let sandbox_off = std::env::var("FLEETFN_SANDBOX").is_ok_and(|v| v == "off");
    let mut sandbox: Option<std::sync::Arc<SandboxLauncher>> = None;
    let mut slice: Option<std::sync::Arc<InstanceSlice>> = None;
    let isolation = if probed.use_helper() && !sandbox_off {
        let binary = std::env::current_exe()
            .context("locating the fleetfn binary for the sandbox helper")?;
        // Host-wide: every agent of every fleetfn on this host allocates from the same slots.
        let leases = fleetfn_sandbox::LeaseDir::new(fleetfn_sandbox::DEFAULT_LEASE_DIR);
        slice = probed
            .cgroups
            .clone()
            .and_then(|layout| instance_slice(layout, &args.instance_id, &shape, &leases));
        let net = network_config(&args.network, leases);
        let net_line = net.isolation.to_string();
        let launcher = std::sync::Arc::new(SandboxLauncher::new(
            binary,
            probed.clone(),
            slice.clone(),
            net,
        ));
        sandbox = Some(launcher.clone());
        provider = provider.with_launcher(launcher);
        match &slice {
            Some(s) => format!("{probed}; {}; {net_line}", s.describe()),
            None => format!("{probed}; {net_line}"),
        }
    } else if sandbox_off {
        "sandbox: off (FLEETFN_SANDBOX=off): environments run as plain child processes of the agent; they are NOT isolated from each other or the host"
            .to_string()
    } else {
        format!(
            "{probed}; environments are NOT isolated from each other or the host (run fleetfn as root for network namespaces, seccomp and per-environment uids)"
        )
    };
    tracing::info!(instance = %args.instance_id, zone = %args.zone, "{isolation}");
    let log_limits = args.log_limits.limits()?;
    let logs_dir = args
        .logs_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("logs"));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let unix = match &args.socket {
        Some(path) => {
            anyhow::ensure!(
                tls.is_none(),
                "--socket is for a server on the same host; an agent with --tls-cert is called over TLS"
            );
            Some(bind_unix(path)?)
        }
        None => None,
    };
    let mut packages: Option<std::sync::Arc<dyn fleetfn_agent::PackageSource>> = None;
    let token = match token {
        Some(t) => t,
        None => {
            // Joined: the servers will authenticate to this agent with its own credential.
            let client = server_http.clone().context("--join servers were checked")?;
            let joined = crate::join::identity(
                &client,
                &args.data_dir,
                &args.join,
                args.token_file.as_deref(),
                crate::join::Offer {
                    address: args.advertise.unwrap_or(addr),
                    zone: args.zone.clone(),
                    vcpus: shape.vcpus,
                    memory_mib: shape.memory_mib,
                    host: host_runtimes,
                    tls: tls.is_some(),
                },
            )
            .await?;
            let credential = joined.credential.clone();
            packages = Some(std::sync::Arc::new(crate::join::ServerPackages {
                joined,
                client,
            }));
            credential
        }
    };
    let agent = Agent::new(
        AgentConfig {
            instance_id: args.instance_id.clone(),
            zone: args.zone.clone(),
            token,
            artifacts_dir: args.artifacts_dir.clone(),
            logs_dir: logs_dir.clone(),
            log_limits,
            isolation,
            instance: shape,
            instance_slice: slice.clone(),
        },
        provider,
    )
    .map_err(|e| anyhow::anyhow!("opening the artifact store: {e}"))?;
    let agent = match packages {
        // Joined: packages from the servers, and the leader term kept across restarts.
        Some(source) => agent
            .with_package_source(source)
            .with_term_file(args.data_dir.join("leader-term")),
        None => agent,
    };
    // The one line on stdout: the parent reads the address from it.
    println!("fleetfn-agent listening on {addr}");
    let stop = tokio_util::sync::CancellationToken::new();
    {
        let stop = stop.clone();
        let watch_stdin = args.exit_on_stdin_eof;
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let stdin_eof = async {
                if watch_stdin {
                    let mut buf = [0u8; 64];
                    let mut stdin = tokio::io::stdin();
                    while let Ok(n) = stdin.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
                () = stdin_eof => {}
            }
            stop.cancel();
        });
    }
    tokio::spawn(sweep_logs(logs_dir, log_limits, stop.clone()));
    if !args.join.is_empty() {
        anyhow::ensure!(
            args.orphan_grace.is_finite() && args.orphan_grace >= 0.0,
            "--orphan-grace must be 0 or a positive number of seconds"
        );
        if args.orphan_grace > 0.0 {
            agent.spawn_orphan_guard(
                std::time::Duration::from_secs_f64(args.orphan_grace),
                stop.clone(),
            );
        }
    }
    let serve_stop = stop.clone();
    let closer = agent.clone();
    let shutdown = async move {
        serve_stop.cancelled().await;
        // Stop the environments first: in-flight invokes get their answer (or their
        // error) within the grace, and the HTTP drain then has nothing long to wait for.
        closer.close();
        closer.stop_all(std::time::Duration::from_secs(2)).await;
    };
    // The Unix socket shares the shutdown: it stops taking connections when the TCP side does.
    let unix_served = unix.map(|listener| {
        let router = agent.router();
        let stop = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    });
    match tls {
        Some(tls) => axum::serve(
            TlsIncoming(fleetfn_proto::tls::TlsListener::new(
                listener,
                &tls,
                std::time::Duration::from_secs(10),
            )?),
            agent.router(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the agent API")?,
        None => axum::serve(
            axum::serve::ListenerExt::tap_io(listener, |tcp| {
                // Small request/response exchanges: never wait for Nagle.
                let _ = tcp.set_nodelay(true);
            }),
            agent.router(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the agent API")?,
    }
    if let Some(served) = unix_served {
        match served.await {
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "serving the agent API on its Unix socket failed")
            }
            Err(e) => tracing::warn!(error = %e, "the agent API's Unix socket task failed"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(path) = &args.socket {
        let _ = std::fs::remove_file(path);
    }
    agent.stop_all(std::time::Duration::from_secs(2)).await;
    if let Some(s) = sandbox {
        // The environments' processes die with their helpers; give the kernel a moment to
        // empty their cgroups, then remove them (bounded).
        for _ in 0..20 {
            s.sweep_cgroups();
            if s.cgroup_count() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    if let Some(slice) = slice {
        let closed = tokio::task::spawn_blocking(move || slice.close()).await;
        if let Ok(Err(e)) = closed {
            tracing::warn!(error = %e, "removing the instance's cgroup slice failed; the next agent sweeps it");
        }
    }
    Ok(())
}

/// Binds the agent API's Unix socket at `path` (a stale socket from an earlier run is replaced)
/// and makes it reachable by its owner only: an environment, which runs as another user, cannot
/// connect even where it could see the path.
fn bind_unix(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    anyhow::ensure!(
        path.as_os_str().len() <= fleetfn_proto::MAX_UNIX_SOCKET_PATH,
        "--socket {} is longer than a Unix socket address holds ({} bytes)",
        path.display(),
        fleetfn_proto::MAX_UNIX_SOCKET_PATH
    );
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?,
        Ok(_) => anyhow::bail!(
            "--socket {} exists and is not a socket; remove it or choose another path",
            path.display()
        ),
        Err(_) => {}
    }
    // Connecting needs write permission on the socket: the usual umask already leaves none to
    // others; 0600 takes the group's too, before anything is accepted.
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

/// The agent API's connections over TLS, handshakes done (TCP_NODELAY set).
struct TlsIncoming(fleetfn_proto::tls::TlsListener);

impl axum::serve::Listener for TlsIncoming {
    type Io = fleetfn_proto::tls::ServerTlsStream;
    type Addr = std::net::SocketAddr;

    fn accept(&mut self) -> impl std::future::Future<Output = (Self::Io, Self::Addr)> + Send {
        self.0.accept()
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.0.local_addr())
    }
}

/// Once a minute, prunes every version's log (writers prune the versions they write; versions
/// nobody writes any more age out here).
async fn sweep_logs(
    dir: PathBuf,
    limits: fleetfn_agent::LogLimits,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let d = dir.clone();
        let swept = tokio::task::spawn_blocking(move || {
            fleetfn_logs::sweep(&d, &limits, std::time::SystemTime::now())
        })
        .await;
        if let Ok(Err(e)) = swept {
            tracing::warn!(dir = %dir.display(), error = %e, "sweeping function logs failed");
        }
    }
}

/// Probes the environments' network isolation and, for egress, installs the host firewall;
/// a firewall that cannot be installed leaves environments on loopback only (logged).
fn network_config(
    args: &crate::EnvNetworkArgs,
    leases: fleetfn_sandbox::LeaseDir,
) -> fleetfn_agent::NetworkConfig {
    use fleetfn_sandbox::NetIsolation;
    let mut isolation = fleetfn_sandbox::net::probe(true, args.env_egress == "on");
    if isolation == NetIsolation::Egress
        && let Err(e) = fleetfn_sandbox::net::install_firewall(&args.env_allow)
    {
        isolation = NetIsolation::NoEgress(format!("installing the firewall failed: {e}"));
    }
    if isolation == NetIsolation::Egress && args.env_dns.is_empty() {
        let loopback_dns = std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("nameserver"))
            .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
            .any(|ip| ip.is_loopback());
        if loopback_dns {
            tracing::warn!(
                "the host's resolver is on loopback, which environments cannot reach: set FLEETFN_ENV_DNS (--env-dns) for name resolution in functions"
            );
        }
    }
    fleetfn_agent::NetworkConfig {
        isolation,
        dns: args.env_dns.clone(),
        leases,
    }
}

/// The instance's cgroup slice, with the agent moved into it; `None` (logged) when the host
/// refuses, in which case environments still get their own cgroups under the agents' slice.
fn instance_slice(
    layout: fleetfn_sandbox::CgroupLayout,
    instance_id: &str,
    shape: &InstanceShape,
    leases: &fleetfn_sandbox::LeaseDir,
) -> Option<std::sync::Arc<InstanceSlice>> {
    let created = InstanceSlice::create(
        layout,
        fleetfn_agent::SLICE,
        instance_id,
        shape.clone(),
        leases,
    )
    .and_then(|slice| {
        slice.join(std::process::id())?;
        Ok(slice)
    });
    match created {
        Ok(slice) => Some(std::sync::Arc::new(slice)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot create the instance's cgroup slice; running without one");
            None
        }
    }
}
