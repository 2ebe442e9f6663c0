//! Prometheus metrics and the HTTP listener that serves them (`/metrics`):
//! OpenMetrics to a scraper that asks for it (Prometheus does), the
//! Prometheus text format to anyone else (promtool, curl).
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

/// Something that refreshes gauges before a scrape (it may read the database).
pub type Refresh = Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// A [`Refresh`] that reads only memory.
pub fn refresh_now(f: impl Fn() + Send + Sync + 'static) -> Refresh {
    Box::new(move || {
        f();
        Box::pin(std::future::ready(()))
    })
}

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

    /// Adds `certificate_expiry_seconds`, for the certificate `expiry` tracks.
    pub fn with_certificate(mut self, expiry: &crate::auth::Expiry) -> Exporter {
        let set = std::sync::Arc::new(expiry.register(&mut self.registry));
        let refresh = self.refresh;
        self.refresh = Box::new(move || {
            let (before, set) = (refresh(), set.clone());
            Box::pin(async move {
                before.await;
                set();
            })
        });
        self
    }

    /// The metrics in the OpenMetrics text format.
    pub async fn render(&self) -> String {
        (self.refresh)().await;
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Registers `wardsync_build_info{version, role} 1`, which says what runs.
pub fn register_build_info(registry: &mut Registry, role: &str) {
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    let info = Family::<Vec<(String, String)>, Gauge>::default();
    let labels = vec![
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("role".to_string(), role.to_string()),
    ];
    info.get_or_create(&labels).set(1);
    registry.register("build_info", "The wardsync version and role of this node (always 1)", info);
}

/// OpenMetrics text as the Prometheus text format (0.0.4), for readers that
/// do not ask for OpenMetrics (promtool, curl, older scrapers): a counter's
/// HELP and TYPE name its `_total` sample, and `# EOF` and `# UNIT` go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|l| l.strip_suffix(" counter")) {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
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
        get(move |headers: axum::http::HeaderMap| {
            let exporter = exporter.clone();
            async move {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
                if accept.contains("application/openmetrics-text") {
                    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                    ([(header::CONTENT_TYPE, kind)], exporter.render().await).into_response()
                } else {
                    let kind = "text/plain; version=0.0.4; charset=utf-8";
                    ([(header::CONTENT_TYPE, kind)], to_prometheus_text(&exporter.render().await))
                        .into_response()
                }
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    #[test]
    fn counters_are_named_by_their_total_in_the_prometheus_text_format() {
        let mut r = Registry::with_prefix("wardsync");
        let c = Counter::<u64>::default();
        c.inc();
        r.register("reconnects", "Connection attempts after the first", c);
        r.register("outbox_depth", "Changes queued", Gauge::<i64>::default());
        register_build_info(&mut r, "ward");
        let rendered = futures::executor::block_on(Exporter::new(r, refresh_now(|| {})).render());
        let text = to_prometheus_text(&rendered);
        assert!(text.contains("# HELP wardsync_reconnects_total Connection attempts"), "{text}");
        assert!(
            text.contains("# TYPE wardsync_reconnects_total counter\nwardsync_reconnects_total 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE wardsync_outbox_depth gauge"), "{text}");
        assert!(text.contains("wardsync_build_info{version=\"0.1.0\",role=\"ward\"} 1"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
