//! `fleetfn serve --metrics-listen`: `GET /metrics` (Prometheus/OpenMetrics text) on its own
//! address, without SigV4, so a scraper needs no credentials.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use fleetfn_metrics::Metrics;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where metrics are served when `--metrics-listen` is not given.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9601);

/// The value of `--metrics-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    Addr(SocketAddr),
}

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        s.parse()
            .map(Self::Addr)
            .map_err(|e| format!("{e}: expected an address such as 127.0.0.1:9601, or off"))
    }
}

/// Serves `GET /metrics` until `stop`. `None` when turned off, or when the default address is
/// taken (another fleetfn on this machine): that only warns, while an address given explicitly
/// must be bound.
pub async fn serve(
    listen: Option<MetricsListen>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let (addr, explicit) = match listen {
        Some(MetricsListen::Off) => return Ok(None),
        Some(MetricsListen::Addr(a)) => (a, true),
        None => (DEFAULT_LISTEN, false),
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if !explicit => {
            tracing::warn!(error = %e, %addr, "metrics are not served: the default address is taken (pass --metrics-listen ADDR, or off)");
            return Ok(None);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("binding the metrics address {addr}"));
        }
    };
    let addr = listener.local_addr()?;
    eprintln!("fleetfn serving metrics on http://{addr}/metrics");
    Ok(Some(tokio::spawn(async move {
        let served = axum::serve(listener, fleetfn_metrics::router(metrics))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics server failed");
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_listen_is_an_address_or_off() {
        assert_eq!("off".parse(), Ok(MetricsListen::Off));
        assert_eq!("OFF".parse(), Ok(MetricsListen::Off));
        assert_eq!(
            "127.0.0.1:9700".parse(),
            Ok(MetricsListen::Addr("127.0.0.1:9700".parse().unwrap()))
        );
        assert!("localhost".parse::<MetricsListen>().is_err());
    }
}
