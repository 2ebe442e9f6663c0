//! The city server: replication ingest from every ward and the query API.

mod applier;
pub(crate) mod arrival;
mod backup;
mod civil;
mod error;
mod guard;
mod ingest;
mod live;
pub mod log_audit;
mod losses;
mod metrics;
mod outages;
mod page;
mod query;
pub mod receipts;
mod relay;
pub mod report;
mod requests;
mod streams;
mod verify;
mod waiting;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

pub use applier::{ApplyResult, spawn_applier};
pub use civil::civil_status_reply;
pub use error::CityError;
pub use guard::Guard;
pub use ingest::{SyncService, incoming};
pub use live::{Lag, Live, LiveWard, lag, ward_states, worst_first};
pub use outages::{Outage, Outages};
pub use query::QueryService;

use tokio::sync::watch;

use crate::auth::{Access, Expiry, OwnCertificate, TlsFiles, server_config};
use crate::config::CityConfig;
use crate::proto::pb::city_query_server::CityQueryServer;
use crate::proto::pb::city_sync_server::CitySyncServer;
use crate::store::pg::PgCityStore;
use crate::store::{CityDb, CityStore, Engine, SledEngine};

/// How long open streams get to finish once the city is told to stop.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The city's TLS configuration, read again whenever `access` changes (a
/// reload, on SIGHUP): renewed certificates apply from the next connection.
/// A reload that cannot read them keeps those in use, and says why.
fn tls_reloader(
    files: TlsFiles,
    mut access: watch::Receiver<Arc<Access>>,
    (expiry, receipts): (Expiry, receipts::Receipts),
    stop: CancellationToken,
) -> anyhow::Result<watch::Receiver<Arc<rustls::ServerConfig>>> {
    let read = move |files: &TlsFiles| -> anyhow::Result<_> {
        let cert = OwnCertificate::read(files)?;
        Ok((server_config(files)?, cert))
    };
    let (config, cert) = read(&files)?;
    expiry.set(&cert);
    cert.warn_if_expiring(crate::clock::now_ms());
    crate::auth::watch_expiry(files.clone(), expiry.clone(), stop.clone());
    let (tx, rx) = watch::channel(config);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = access.changed() => if changed.is_err() { return },
                _ = stop.cancelled() => return,
            }
            match read(&files) {
                Ok((config, cert)) => {
                    tx.send_replace(config);
                    if let Err(e) = receipts.reload(&files) {
                        tracing::error!("cannot derive the receipt key from the reloaded key: {e:#}");
                    }
                    expiry.set(&cert);
                    let days_left = cert.warn_if_expiring(crate::clock::now_ms()).floor();
                    tracing::info!(certificate = %files.cert.display(), days_left, "certificates reloaded");
                }
                Err(e) => tracing::error!("cannot reload the certificates, keeping those in use: {e:#}"),
            }
        }
    });
    Ok(rx)
}

/// Runs the city server on an on-disk store until `shutdown` completes;
/// `access` carries the roles and revocations, replaced on reload.
pub async fn run(
    cfg: CityConfig,
    access: watch::Receiver<Arc<Access>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    cfg.check()?;
    let listener =
        TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let store: Arc<dyn CityDb> = match &cfg.database.url {
        Some(url) => {
            let store = PgCityStore::open(url, cfg.database.ca.as_deref(), cfg.merge_policies())
                .await
                .context("cannot open the city database on PostgreSQL ([database] url)")?;
            tracing::info!(addr = %listener.local_addr()?, "city server started, database on PostgreSQL");
            Arc::new(store)
        }
        None => {
            let engine: Arc<dyn Engine> = Arc::new(SledEngine::open(&cfg.data_dir, cfg.cache_mb)?);
            tracing::info!(addr = %listener.local_addr()?, data_dir = %cfg.data_dir.display(), "city server started");
            Arc::new(CityStore::open(engine, cfg.merge_policies())?)
        }
    };
    serve_store(cfg, store, crate::net::incoming(listener), access, shutdown).await
}

/// Runs the city server over the embedded store on any engine and any
/// stream of incoming connections (TCP, or a simulated network).
pub async fn serve<I, IO, IE>(
    cfg: CityConfig,
    engine: Arc<dyn Engine>,
    incoming: I,
    access: watch::Receiver<Arc<Access>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: crate::net::ServerConn,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let store = Arc::new(CityStore::open(engine, cfg.merge_policies())?);
    serve_store(cfg, store, incoming, access, shutdown).await
}

/// Runs the city server over any city database.
pub async fn serve_store<I, IO, IE>(
    cfg: CityConfig,
    store: Arc<dyn CityDb>,
    incoming: I,
    access: watch::Receiver<Arc<Access>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: crate::net::ServerConn,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    cfg.check()?;
    let expiry = Expiry::default();
    let cancel = CancellationToken::new();
    // Read before anything starts: bad files stop the city at once.
    let receipts = receipts::Receipts::new(cfg.tls.as_ref(), store.city_id())?;
    let tls = match &cfg.tls {
        Some(files) => Some(tls_reloader(
            files.clone(),
            access.clone(),
            (expiry.clone(), receipts.clone()),
            cancel.clone(),
        )?),
        None => {
            tracing::warn!("insecure_dev: accepting plaintext connections and trusting ward codes in Hello");
            None
        }
    };
    let apply_latency = crate::metrics::latency_histogram();
    let (applier, applier_task) = spawn_applier(
        store.clone(),
        cfg.max_group,
        cfg.province.clone(),
        cfg.max_clock_skew_ms,
        apply_latency.clone(),
    );
    let guard = Guard::new(access, store.clone(), &cfg.limits);
    let live = Live::default();
    let waiting =
        waiting::Waiting::spawn(store.clone(), cfg.province.clone(), cfg.max_clock_skew_ms, cancel.clone());
    let sync = SyncService {
        waiting,
        store: store.clone(),
        applier,
        cancel: cancel.clone(),
        guard: guard.clone(),
        limits: cfg.limits.clone(),
        live: live.clone(),
        province: cfg.province.clone(),
        max_skew_ms: cfg.max_clock_skew_ms,
        receipts,
        roots: cfg.tls.as_ref().map(|t| crate::auth::roots(&t.ca).map(Arc::new)).transpose()?,
    };
    let expected: Vec<crate::model::WardCode> =
        cfg.wards.iter().filter_map(|w| crate::model::WardCode::parse(w).ok()).collect();
    let metrics_task = cfg.metrics_listen.map(|addr| {
        let exporter = metrics::exporter(store.clone(), live.clone(), expected.clone(), apply_latency)
            .with_certificate(&expiry);
        // For load balancers and probes: no client certificate needed here.
        let status = page::route(store.clone(), live.clone(), expected.clone())
            .route("/health", axum::routing::get(|| async { "serving\n" }));
        tokio::spawn(crate::metrics::serve(
            addr,
            Arc::new(exporter),
            status,
            cancel.clone().cancelled_owned(),
        ))
    });
    let query = QueryService {
        store: store.clone(),
        guard: guard.clone(),
        province: cfg.province.clone(),
        max_skew_ms: cfg.max_clock_skew_ms,
        live,
        expected,
        backup_dir: cfg.backups(),
        last_backup: Default::default(),
    };
    // Every call must produce its response in time (a stream: its first message).
    // Keep-alive pings find connections that died silently and free their streams.
    let mut builder = Server::builder()
        .timeout(crate::net::RPC_DEADLINE)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    let signal = {
        let cancel = cancel.clone();
        async move {
            shutdown.await;
            // End the long-lived replication streams so connections can close.
            cancel.cancel();
            let _ = stopping_tx.send(());
        }
    };
    // Streams get a moment to finish; one a client stopped reading does not
    // hold the city up longer.
    let deadline = async move {
        if stopping.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let (health, reflection, _) =
        crate::net::health_and_reflection(&["wardsync.v1.CitySync", "wardsync.v1.CityQuery"]).await?;
    let router = builder
        .add_service(health)
        .add_service(reflection)
        .add_service(
            CitySyncServer::new(sync)
                .max_decoding_message_size(cfg.limits.max_message_bytes)
                .max_encoding_message_size(cfg.limits.max_message_bytes),
        )
        .add_service(
            CityQueryServer::new(query)
                .max_decoding_message_size(cfg.limits.max_message_bytes)
                .max_encoding_message_size(cfg.limits.max_message_bytes),
        );
    use futures::future::Either;
    let served = match tls {
        Some(tls) => {
            Either::Left(router.serve_with_incoming_shutdown(crate::net::tls_incoming(incoming, tls), signal))
        }
        None => Either::Right(router.serve_with_incoming_shutdown(incoming, signal)),
    };
    let (served, cut) = tokio::select! {
        served = served => (served, false),
        _ = deadline => {
            tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "streams still open at shutdown were cut");
            (Ok(()), true)
        }
    };
    cancel.cancel();
    // The applier ends once every stream's handle is gone; connections cut
    // at the deadline may still hold one: what it applied is flushed below
    // either way, and nothing unflushed was acknowledged.
    let wait = if cut { std::time::Duration::from_secs(1) } else { SHUTDOWN_GRACE };
    match tokio::time::timeout(wait, applier_task).await {
        Ok(applied) => applied.context("the apply task failed")?,
        Err(_) => tracing::warn!("connections cut at shutdown still held the applier: flushing without it"),
    }
    if let Some(t) = metrics_task {
        t.await??;
    }
    store.flush().await?;
    tracing::info!("city server stopped");
    served.context("city server failed")
}
