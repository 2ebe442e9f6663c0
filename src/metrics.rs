//! Prometheus metrics and the HTTP listener that serves them (`/metrics`).
//!
//! Counters and histograms are updated where things happen; gauges that
//! describe state (backlog, lag, ...) are refreshed from that state when
//! Prometheus scrapes, so they are never stale.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Something that refreshes gauges before a scrape.
pub type Refresh = Box<dyn Fn() + Send + Sync>;

/// A registry and how to refresh it.
pub struct Exporter {
    registry: Registry,
    refresh: Refresh,
}

impl Exporter {
    /// Exports `registry`, calling `refresh` before each scrape.
    pub fn new(registry: Registry, refresh: Refresh) -> Exporter {
        Exporter { registry, refresh }
    }

    /// Adds `certificate_expiry_days`, for the certificate `expiry` tracks.
    pub fn with_certificate(mut self, expiry: &crate::auth::Expiry) -> Exporter {
        let set = expiry.register(&mut self.registry);
        let refresh = self.refresh;
        self.refresh = Box::new(move || {
            refresh();
            set();
        });
        self
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        (self.refresh)();
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A latency histogram from 1 ms to about 16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Serves `/metrics` (and any `extra` routes) on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    exporter: Arc<Exporter>,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics on /metrics");
    let app = extra.route(
        "/metrics",
        get(move || {
            let exporter = exporter.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    exporter.render(),
                )
                    .into_response()
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
