//! Whether the ward replicates, for load balancers and probes: the gRPC
//! health of [`SERVICE`] and HTTP `/health` on the metrics listener turn
//! NOT_SERVING (503) once the link to the city has been down longer than
//! `replication.unhealthy_after_ms`, and SERVING again when it is back. The
//! process itself (health service "") stays SERVING: its local API still
//! takes writes, which queue up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::LinkState;

/// The health service name that reflects replication.
pub const SERVICE: &str = "wardsync.v1.Replication";

/// How long the link has been down, as the watcher last saw it.
#[derive(Debug, Clone, Default)]
pub struct CutOff(Arc<AtomicU64>);

impl CutOff {
    /// Milliseconds the link has been down (0 while connected).
    pub fn ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Watches `link` until `stop`: keeps [`CutOff`] and the health of
/// [`SERVICE`] up to date, NOT_SERVING beyond `unhealthy_after`.
pub fn watch(
    link: Arc<LinkState>,
    reporter: HealthReporter,
    unhealthy_after: Duration,
    stop: CancellationToken,
) -> CutOff {
    let cut_off = CutOff::default();
    let shared = cut_off.clone();
    tokio::spawn(async move {
        let mut last_up = Instant::now();
        let mut serving = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if link.connected.load(Ordering::Relaxed) {
                last_up = Instant::now();
            }
            let down = last_up.elapsed();
            shared.0.store(down.as_millis() as u64, Ordering::Relaxed);
            let healthy = down <= unhealthy_after;
            if serving != Some(healthy) {
                let status = if healthy { ServingStatus::Serving } else { ServingStatus::NotServing };
                reporter.set_service_status(SERVICE, status).await;
                if serving.is_some() {
                    tracing::info!(healthy, cut_off_s = down.as_secs(), "replication health changed");
                }
                serving = Some(healthy);
            }
        }
    });
    cut_off
}

/// The `/health` route: 200 while replication is healthy, 503 with how long
/// the link has been down otherwise.
pub fn route(cut_off: CutOff, unhealthy_after: Duration) -> axum::Router {
    use axum::http::StatusCode;
    axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let down = Duration::from_millis(cut_off.ms());
            async move {
                if down <= unhealthy_after {
                    (StatusCode::OK, "serving\n".to_string())
                } else {
                    let why = format!("not serving: cut off from the city for {} s\n", down.as_secs());
                    (StatusCode::SERVICE_UNAVAILABLE, why)
                }
            }
        }),
    )
}
