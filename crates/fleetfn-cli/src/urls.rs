//! `--url-listen` and `--url-domain` of `fleetfn serve` and `fleetfn server`: the function URL
//! endpoint on its own address (plain HTTP, no SigV4 at the listener), and the URL base the
//! control plane writes into `FunctionUrl`s (`http://<url-id>.lambda-url.<region>.<domain>:<port>/`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where function URLs are served when `--url-listen` is not given: next to the API (9600) and
/// the metrics (9601).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9602);

/// The value of `--url-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlListen {
    Off,
    Addr(SocketAddr),
}

impl std::str::FromStr for UrlListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        s.parse()
            .map(Self::Addr)
            .map_err(|e| format!("{e}: expected an address such as 127.0.0.1:9602, or off"))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct UrlArgs {
    /// Address of the function URL endpoint (plain HTTP; AWS_IAM URLs check SigV4 themselves),
    /// or `off` [default: 127.0.0.1:9602; when that is taken fleetfn warns and runs without it].
    /// A URL is `http://<url-id>.lambda-url.<region>.<url-domain>:<port>/`, or on any host
    /// `http://<addr>/_fleetfn/url/<url-id>/`.
    #[arg(long, env = "FLEETFN_URL_LISTEN", value_name = "ADDR|off")]
    pub url_listen: Option<UrlListen>,
    /// The domain of function URL hosts (`<url-id>.lambda-url.<region>.<url-domain>`): a name
    /// whose subdomains resolve to this server (`localhost` does on most systems).
    #[arg(long, default_value = "localhost", env = "FLEETFN_URL_DOMAIN")]
    pub url_domain: String,
}

/// The bound URL listener (or none), and the URL base for the control plane.
pub struct Bound {
    pub listener: Option<TcpListener>,
    pub base: String,
}

/// Binds `--url-listen`: the default address only warns when it is taken, an address given
/// explicitly must be bound.
pub async fn bind(args: &UrlArgs, region: &str) -> anyhow::Result<Bound> {
    let domain = args.url_domain.trim_matches('.').to_ascii_lowercase();
    if domain.is_empty() || domain.contains(['/', ':', ' ']) {
        anyhow::bail!(
            "--url-domain takes a domain name such as localhost or fn.example.com, not {:?}",
            args.url_domain
        );
    }
    let (addr, explicit) = match args.url_listen {
        Some(UrlListen::Off) => (None, true),
        Some(UrlListen::Addr(a)) => (Some(a), true),
        None => (Some(DEFAULT_LISTEN), false),
    };
    let listener = match addr {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) if !explicit => {
                tracing::warn!(error = %e, %addr, "function URLs are not served: the default address is taken (pass --url-listen ADDR, or off)");
                None
            }
            Err(e) => {
                return Err(e).with_context(|| format!("binding the function URL address {addr}"));
            }
        },
    };
    let port = match &listener {
        Some(l) => Some(l.local_addr()?.port()),
        None => None,
    };
    let base = match port {
        Some(p) => format!("http://lambda-url.{region}.{domain}:{p}"),
        None => format!("http://lambda-url.{region}.{domain}"),
    };
    Ok(Bound { listener, base })
}

/// Serves function URLs on `listener` until `stop`.
pub fn spawn(
    listener: TcpListener,
    state: fleetfn_api::AppState,
    domain: &str,
    region: &str,
    metrics: Arc<fleetfn_metrics::Metrics>,
    cfg: fleetfn_api::ListenerConfig,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let addr = listener.local_addr()?;
    let domain = domain.trim_matches('.').to_ascii_lowercase();
    eprintln!(
        "fleetfn serving function URLs on http://{addr} (http://<url-id>.lambda-url.{region}.{domain}:{port}/, or http://{addr}{prefix}<url-id>/)",
        port = addr.port(),
        prefix = fleetfn_api::URL_PATH_PREFIX,
    );
    let app = fleetfn_api::url_router(
        state,
        fleetfn_api::UrlEndpoint {
            domain,
            metrics: Some(metrics),
        },
    );
    Ok(tokio::spawn(async move {
        fleetfn_api::serve_with_peers(
            listener,
            app,
            cfg,
            fleetfn_api::DEFAULT_MAX_PEER_CONNECTIONS,
            async move { stop.cancelled().await },
        )
        .await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_listen_takes_an_address_or_off() {
        assert_eq!("off".parse::<UrlListen>(), Ok(UrlListen::Off));
        assert_eq!(
            "127.0.0.1:9700".parse::<UrlListen>(),
            Ok(UrlListen::Addr("127.0.0.1:9700".parse().unwrap()))
        );
        assert!("nine".parse::<UrlListen>().unwrap_err().contains("or off"));
    }

    #[tokio::test]
    async fn the_url_base_names_the_bound_port_and_domain() {
        let args = UrlArgs {
            url_listen: Some(UrlListen::Addr("127.0.0.1:0".parse().unwrap())),
            url_domain: "Fn.Example.com.".into(),
        };
        let b = bind(&args, "eu-west-1").await.unwrap();
        let port = b.listener.as_ref().unwrap().local_addr().unwrap().port();
        assert_eq!(
            b.base,
            format!("http://lambda-url.eu-west-1.fn.example.com:{port}")
        );
        let off = UrlArgs {
            url_listen: Some(UrlListen::Off),
            url_domain: "localhost".into(),
        };
        let b = bind(&off, "us-east-1").await.unwrap();
        assert!(b.listener.is_none());
        assert_eq!(b.base, "http://lambda-url.us-east-1.localhost");
        let bad = UrlArgs {
            url_listen: Some(UrlListen::Off),
            url_domain: "http://x".into(),
        };
        assert!(bind(&bad, "us-east-1").await.is_err());
        // An explicit address that is taken is an error.
        let holder = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let taken = UrlArgs {
            url_listen: Some(UrlListen::Addr(holder.local_addr().unwrap())),
            url_domain: "localhost".into(),
        };
        assert!(bind(&taken, "us-east-1").await.is_err());
    }
}
