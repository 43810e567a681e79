//! `fleetfn serve --metrics-listen`: `GET /metrics` (Prometheus/OpenMetrics text) on its own
//! address, without SigV4, so a scraper needs no credentials.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fleetfn_metrics::{Format, Metrics};
use http::{HeaderMap, StatusCode, header};
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
        let served = axum::serve(listener, router(metrics))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics server failed");
        }
    })))
}

/// A router serving `GET /metrics` (anything else is 404): the registry as OpenMetrics text
/// when the `Accept` header names it (as Prometheus does), else as Prometheus text 0.0.4; no
/// authentication (bind it to a loopback or otherwise private address).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match metrics.render_as(format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fleetfn_metrics::VersionLabels;

    use super::*;

    #[tokio::test]
    async fn get_metrics_negotiates_openmetrics_or_prometheus_text() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let m = Arc::new(Metrics::new());
        m.version(VersionLabels::new("hello", "1"))
            .invoked(Duration::from_millis(5), false);
        let app = router(m.clone());
        let req = |method: &str, path: &str, accept: Option<&str>| {
            let mut b = http::Request::builder().method(method).uri(path);
            if let Some(a) = accept {
                b = b.header(http::header::ACCEPT, a);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        // What Prometheus sends.
        let prometheus_accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
        let resp = app
            .clone()
            .oneshot(req("GET", "/metrics", Some(prometheus_accept)))
            .await
            .unwrap();
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert_eq!(
            resp.headers()[http::header::CONTENT_TYPE],
            Format::OpenMetrics.content_type()
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(
            body.contains("# TYPE fleetfn_invocations counter\n"),
            "{body}"
        );
        assert!(body.contains(r#"fleetfn_invocations_total{function="hello",version="1"} 1"#));
        assert!(body.ends_with("# EOF\n"));

        // curl and older scrapers: Prometheus text 0.0.4.
        let resp = app
            .clone()
            .oneshot(req("GET", "/metrics", None))
            .await
            .unwrap();
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert_eq!(
            resp.headers()[http::header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(
            body.contains("# TYPE fleetfn_invocations_total counter\n"),
            "{body}"
        );
        assert!(body.contains(r#"fleetfn_invocations_total{function="hello",version="1"} 1"#));
        assert!(!body.contains("# EOF"));

        let resp = app
            .clone()
            .oneshot(req("POST", "/metrics", None))
            .await
            .unwrap();
        assert_eq!(resp.status(), http::StatusCode::METHOD_NOT_ALLOWED);
        let resp = app.oneshot(req("GET", "/", None)).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::NOT_FOUND);
    }

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
