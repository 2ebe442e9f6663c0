//! The ward agent: local API, durable writes with an outbox, and the
//! replicator that streams the outbox to the city.

mod api;
pub mod chain;
mod error;
mod health;
mod reconcile;
mod register;
mod replicator;
mod verify;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, Server};

pub use api::LocalApi;
pub use error::WardError;
pub use health::SERVICE as REPLICATION_HEALTH;
pub use replicator::{Connect, LinkState, Replicator, tcp_connect};
pub use verify::{Report, Verifier, VerifyState};
pub use writer::Writer;

use crate::auth::{Expiry, OwnCertificate, client_tls};
use crate::config::WardConfig;
use crate::model::WardCode;
use crate::proto::pb::ward_api_server::WardApiServer;
use crate::store::{Engine, SledEngine, WardStore};

/// Most writes committed together in one batch and one flush.
const MAX_GROUP: usize = 1024;

/// The channel factory for the city described by `cfg`: TCP, with mutual
/// TLS unless `insecure_dev`. The certificate files are read again for
/// every connection, so a renewed certificate is used from the next one.
pub fn city_connect(cfg: &WardConfig) -> anyhow::Result<Connect> {
    let endpoint = city_endpoint(cfg)?;
    if cfg.tls.is_none() {
        tracing::warn!("insecure_dev: talking to the city in plaintext, without authentication");
        return Ok(tcp_connect(endpoint));
    }
    let cfg = cfg.clone();
    Ok(Arc::new(move || {
        let cfg = cfg.clone();
        Box::pin(async move {
            check_certificate(&cfg)?;
            Ok(city_endpoint(&cfg)?.connect().await?)
        })
    }))
}

/// The city's endpoint as `cfg` describes it, with its TLS settings and
/// HTTP/2 keep-alive pings (a connection that stops answering them is
/// dropped and replaced, whichever direction died).
pub fn city_endpoint(cfg: &WardConfig) -> anyhow::Result<Endpoint> {
    let mut endpoint = Endpoint::from_shared(cfg.city_url.clone())
        .with_context(|| format!("bad city_url {:?}", cfg.city_url))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .http2_keep_alive_interval(std::time::Duration::from_secs(10))
        .keep_alive_timeout(std::time::Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(files) = &cfg.tls {
        anyhow::ensure!(
            cfg.city_url.starts_with("https://"),
            "city_url must start with https:// when TLS is configured"
        );
        endpoint = endpoint.tls_config(client_tls(files, &cfg.city_name)?)?;
    }
    Ok(endpoint)
}

/// Checks the ward's own certificate: it must be this ward's (the city
/// would refuse every change otherwise, and they would queue up unsent).
/// Returns it, if the ward uses TLS.
pub fn check_certificate(cfg: &WardConfig) -> anyhow::Result<Option<OwnCertificate>> {
    let ward = WardCode::parse(&cfg.code).map_err(|e| anyhow::anyhow!("config `code`: {e}"))?;
    let Some(files) = &cfg.tls else { return Ok(None) };
    let cert = OwnCertificate::read(files)?;
    cert.check_ward(&ward)?;
    Ok(Some(cert))
}

/// On SIGHUP: the certificate is checked and its expiry reported (the next
/// connection to the city uses the files as they are then).
fn reload_on_hangup(cfg: WardConfig) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match check_certificate(&cfg) {
                Ok(Some(cert)) => {
                    let days_left = cert.warn_if_expiring(crate::clock::now_ms()).floor();
                    tracing::info!(certificate = %cert.path.display(), days_left, "certificates reloaded: the next connection to the city uses them");
                }
                Ok(None) => tracing::info!("SIGHUP: no certificates to reload (insecure_dev)"),
                Err(e) => tracing::error!(
                    "the certificate files are not usable, connections to the city will fail: {e:#}"
                ),
            }
        }
    });
}

/// Runs a ward agent on an on-disk store until `shutdown` completes: binds
/// the local API on `cfg.listen` and replicates to the city.
pub async fn run(cfg: WardConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    cfg.check()?;
    if let Some(cert) = check_certificate(&cfg)? {
        cert.warn_if_expiring(crate::clock::now_ms());
    }
    reload_on_hangup(cfg.clone());
    let engine: Arc<dyn Engine> = Arc::new(SledEngine::open(&cfg.data_dir, cfg.cache_mb)?);
    let connect = city_connect(&cfg)?;
    match cfg.socket.clone() {
        Some(path) => {
            let listener = crate::net::unix_listener(&path)?;
            tracing::info!(socket = %path.display(), "local API on a Unix socket (mode 660)");
            serve(cfg, engine, tokio_stream::wrappers::UnixListenerStream::new(listener), connect, shutdown)
                .await
        }
        None => {
            let listener = TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.listen))?;
            let addr = listener.local_addr()?;
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "the local API has no authentication of its own and listens beyond loopback: restrict access to it");
            }
            tracing::info!(%addr, "local API on TCP");
            serve(cfg, engine, crate::net::incoming(listener), connect, shutdown).await
        }
    }
}

/// Runs a ward agent over any engine, stream of local connections and city connector.
pub async fn serve<I, IO, IE>(
    cfg: WardConfig,
    engine: Arc<dyn Engine>,
    incoming: I,
    connect: Connect,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: crate::net::ServerConn,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let ward = WardCode::parse(&cfg.code).map_err(|e| anyhow::anyhow!("config `code`: {e}"))?;
    let province = crate::model::reference::commune(ward.as_str())
        .ok_or_else(|| {
            anyhow::anyhow!("config `code`: {ward} is not a commune code in force since 1 July 2025")
        })?
        .province
        .to_string();
    let store = WardStore::open(engine, ward.clone(), cfg.replication.max_outbox)?;
    let verifier = Arc::new(Verifier::new(ward.clone(), store.clone(), connect.clone()));
    if store.is_new() || store.is_copy()? {
        restore(&verifier, &cfg.replication).await;
    }
    let (writer, durable, writer_task) = Writer::spawn(store.clone(), MAX_GROUP);
    let link = Arc::new(LinkState::default());
    let cancel = CancellationToken::new();
    let replicator = Replicator {
        ward: ward.clone(),
        node_id: format!("ward-{ward}@{}", hostname()),
        store: store.clone(),
        durable,
        connect: connect.clone(),
        config: cfg.replication.clone(),
        link: link.clone(),
        tls: cfg.tls.clone(),
        floor: 0,
        verifier: verifier.clone(),
    };
    let replicator_task = tokio::spawn(replicator.run(cancel.clone()));
    let verify_task = {
        let (verifier, cancel) = (verifier.clone(), cancel.clone());
        let every = cfg.replication.verify_every_ms;
        let every = (every > 0).then(|| Duration::from_millis(every));
        tokio::spawn(async move { verifier.schedule(every, cancel).await })
    };
    if let Some(files) = &cfg.tls {
        crate::auth::watch_expiry(files.clone(), Expiry::File(files.clone()), cancel.clone());
    }
    let (health, reflection, reporter) = crate::net::health_and_reflection(&["wardsync.v1.WardApi"]).await?;
    let unhealthy_after = Duration::from_millis(cfg.replication.unhealthy_after_ms);
    let cut_off = health::watch(link.clone(), reporter, unhealthy_after, cancel.clone());
    let metrics_task = cfg.metrics_listen.map(|addr| {
        let mut exporter = ward_metrics(&ward, &store, &link, &verifier.state);
        if let Some(files) = &cfg.tls {
            exporter = exporter.with_certificate(&Expiry::File(files.clone()));
        }
        let exporter = Arc::new(exporter);
        tokio::spawn(crate::metrics::serve(
            addr,
            exporter,
            health::route(cut_off, unhealthy_after),
            cancel.clone().cancelled_owned(),
        ))
    });
    let api =
        LocalApi { ward: ward.clone(), store: store.clone(), writer, link, province, connect, verifier };
    tracing::info!(%ward, data_dir = %cfg.data_dir.display(), backlog = store.backlog(), "ward agent started");
    let served = Server::builder()
        .timeout(crate::net::RPC_DEADLINE)
        .add_service(health)
        .add_service(reflection)
        .add_service(WardApiServer::new(api))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    // The API is closed and its writers are gone: let the commit task finish
    // its last group, then stop replicating.
    let committed = writer_task.await;
    cancel.cancel();
    let replicated = replicator_task.await;
    committed.context("the commit task failed")?;
    replicated.context("the replication task failed")?;
    verify_task.await.context("the verification task failed")?;
    if let Some(t) = metrics_task {
        t.await??;
    }
    store.flush().await?;
    tracing::info!(%ward, backlog = store.backlog(), "ward agent stopped");
    served.context("local API server failed")
}

/// Before any local write, brings a new, empty store (its disk was
/// replaced) or one put back from a copy level with the city, if the city
/// knows this ward: tries for `restore_wait_ms`, then starts as it is (the
/// next connection renumbers past the city and verification refills it).
async fn restore(verifier: &Verifier, cfg: &crate::config::ReplicationConfig) {
    let started = std::time::Instant::now();
    let wait = Duration::from_millis(cfg.restore_wait_ms);
    let mut delay = Duration::from_millis(cfg.backoff_initial_ms.max(10));
    let what = if verifier.store.is_new() { "new store" } else { "store put back from a copy" };
    loop {
        match verifier.restore().await {
            Ok(None) => {
                tracing::info!(ward = %verifier.ward, "new store, and the city holds nothing of this ward: starting empty");
                return;
            }
            Ok(Some(r)) => {
                if let Err(e) = verifier.store.level_with_city() {
                    tracing::error!(ward = %verifier.ward, error = %e, "cannot note the copy brought level with the city");
                }
                tracing::warn!(ward = %verifier.ward, records = r.fetched, last_seq = verifier.store.last_seq(),
                    downstream_cursor = verifier.store.downstream_cursor(), took_ms = r.took_ms,
                    "restored this ward's records from the city ({what}): accepting writes");
                return;
            }
            Err(e) if started.elapsed() >= wait => {
                tracing::error!(ward = %verifier.ward, error = %e, waited_ms = wait.as_millis() as u64,
                    "{what}, and the city could not be asked for this ward's records: starting as it is; verification refills the records once the city is back (start with --restore-from-city to wait for it instead)");
                return;
            }
            Err(e) => {
                tracing::warn!(ward = %verifier.ward, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "{what}: waiting for the city to restore this ward's records before accepting writes");
                tokio::time::sleep(crate::clock::jitter(delay, 0.5)).await;
                delay = (delay * 2).min(Duration::from_millis(cfg.backoff_max_ms.max(10)));
            }
        }
    }
}

/// The ward's metrics: outbox depth, bytes and oldest age, link state,
/// reconnects, batches sent and ack latency, verification.
/// Every metric carries the label `ward`, so that a dashboard tells wards apart.
fn ward_metrics(
    ward: &WardCode,
    store: &WardStore,
    link: &Arc<LinkState>,
    verify: &Arc<VerifyState>,
) -> crate::metrics::Exporter {
    use prometheus_client::metrics::gauge::Gauge;
    use std::sync::atomic::{AtomicU64, Ordering};
    let label = (std::borrow::Cow::Borrowed("ward"), std::borrow::Cow::Owned(ward.to_string()));
    let mut r =
        prometheus_client::registry::Registry::with_prefix_and_labels("wardsync", std::iter::once(label));
    crate::metrics::register_build_info(&mut r, "ward");
    let depth = Gauge::<i64>::default();
    let bytes = Gauge::<i64>::default();
    let oldest = Gauge::<f64, AtomicU64>::default();
    let connected = Gauge::<i64>::default();
    r.register("outbox_depth", "Changes queued for the city, not yet acknowledged", depth.clone());
    r.register("outbox_bytes", "Bytes of the queued changes", bytes.clone());
    r.register("outbox_oldest_age_seconds", "Age of the oldest queued change", oldest.clone());
    r.register("connected", "1 while a replication stream to the city is open", connected.clone());
    r.register("reconnects", "Connection attempts after the first", link.reconnects.clone());
    r.register("batches_sent", "Batches sent to the city", link.batches_sent.clone());
    r.register("ack_latency_seconds", "Time from sending a batch to its ack", link.ack_latency.clone());
    // (Counted in the store, so a restart forgets neither.)
    let jumps = prometheus_client::metrics::counter::Counter::<u64>::default();
    let forks = prometheus_client::metrics::counter::Counter::<u64>::default();
    r.register(
        "sequence_jumps",
        "Times the city had applied more changes than this ward numbered (this ward lost data)",
        jumps.clone(),
    );
    r.register(
        "forks",
        "Times this ward's store was found forked from the city's chain (put back to an older copy)",
        forks.clone(),
    );
    r.register(
        "city_lost_changes",
        "Changes the city acknowledged to this ward and later no longer held",
        link.city_lost_changes.clone(),
    );
    r.register("verify_runs", "Comparisons of this ward's records with the city's copy", verify.runs.clone());
    r.register("verify_failures", "Comparisons that could not complete", verify.failures.clone());
    r.register(
        "verify_differing_records",
        "Records found to differ between this ward and the city's copy",
        verify.differing.clone(),
    );
    r.register("verify_fetched_records", "Records merged from the city's copy", verify.fetched.clone());
    r.register(
        "verify_repaired_city_records",
        "Records of the city's copy that gained writes from this ward's",
        verify.repaired_at_city.clone(),
    );
    r.register(
        "verify_in_sync_timestamp_seconds",
        "When this ward's records and the city's copy were last found equal",
        verify.in_sync_at.clone(),
    );
    let (store, link) = (store.clone(), link.clone());
    let refresh = move || {
        depth.set(store.backlog() as i64);
        bytes.set(store.backlog_bytes() as i64);
        let age = store
            .oldest_queued_ms()
            .ok()
            .flatten()
            .map_or(0.0, |t| (crate::clock::now_ms() - t).max(0) as f64 / 1000.0);
        oldest.set(age);
        connected.set(i64::from(link.connected.load(Ordering::Relaxed)));
        let (forked, jumped) = store.renumberings();
        forks.inc_by(forked.saturating_sub(forks.get()));
        jumps.inc_by(jumped.saturating_sub(jumps.get()));
    };
    crate::metrics::Exporter::new(r, crate::metrics::refresh_now(refresh))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
