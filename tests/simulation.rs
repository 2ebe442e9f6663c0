//! Deterministic simulation: the real city and ward code, over the real
//! tonic and rustls stack, on turmoil's simulated network, with partitions,
//! lost acks and ward crashes (unflushed writes lost); after each run the
//! invariants are checked: no
//! acknowledged write lost, no change applied twice, the ward's records and
//! the city's copy identical, the backlog drained.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};
use wardsync::auth::{DevCa, TlsFiles, client_tls};
use wardsync::config::{CityConfig, ReplicationConfig, WardConfig};
use wardsync::model::{Record, WardCode};
use wardsync::proto::pb;
use wardsync::store::{Engine, MemEngine};

/// A simulated TCP connection the tonic server can serve.
struct SimConn(turmoil::net::TcpStream);

impl Connected for SimConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for SimConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Connections accepted on a simulated port.
fn incoming(port: u16) -> impl tokio_stream::Stream<Item = std::io::Result<SimConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::task::spawn_local(async move {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await.expect("bind");
        loop {
            let conn = listener.accept().await.map(|(s, _)| SimConn(s));
            if tx.send(conn).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A channel to `host:port` over the simulated network (TLS if given).
async fn sim_channel(
    host: &'static str,
    port: u16,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host}:{port}")).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint
        .connect_with_connector(tower::service_fn(move |_| async move {
            let s = turmoil::net::TcpStream::connect((host, port)).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }))
        .await
}

fn run_seed(seed: u64, certs: &std::path::Path) -> Result<(), String> {
    let mut sim =
        turmoil::Builder::new().rng_seed(seed).simulation_duration(Duration::from_secs(300)).build();
    let city_engine = MemEngine::new();
    let ward_engine = MemEngine::new();
    let certs = certs.to_path_buf();
    {
        let (engine, certs) = (city_engine.clone(), certs.clone());
        sim.host("city", move || {
            let (engine, certs) = (engine.clone(), certs.clone());
            async move {
                let cfg: CityConfig = toml::from_str(&format!(
                    "tls = {{ ca = \"{0}/ca.pem\", cert = \"{0}/city.pem\", key = \"{0}/city.key\" }}\n",
                    certs.display()
                ))
                .unwrap();
                let access = tokio::sync::watch::channel(Arc::new(cfg.access())).1;
                let engine: Arc<dyn Engine> = Arc::new(engine);
                wardsync::city::serve(cfg, engine, incoming(7443), access, std::future::pending())
                    .await
                    .unwrap();
                Ok(())
            }
        });
    }
    {
        let (engine, certs) = (ward_engine.clone(), certs.clone());
        sim.host("ward", move || {
            let (engine, certs) = (engine.clone(), certs.clone());
            // A (re)start sees only what was flushed: a crash loses the rest.
            engine.crash();
            async move {
                let cfg = WardConfig {
                    code: "00082".into(),
                    data_dir: "/unused".into(),
                    listen: "0.0.0.0:7070".parse().unwrap(),
                    socket: None,
                    metrics_listen: None,
                    city_url: "https://city:7443".into(),
                    city_name: "city".into(),
                    tls: Some(TlsFiles::in_dir(&certs, "ward-00082")),
                    insecure_dev: false,
                    replication: ReplicationConfig {
                        backoff_initial_ms: 100,
                        backoff_max_ms: 2000,
                        ack_timeout_ms: 3000,
                        heartbeat_ms: 1000,
                        ..Default::default()
                    },
                };
                let tls = client_tls(cfg.tls.as_ref().unwrap(), "city").unwrap();
                let connect: wardsync::ward::Connect = Arc::new(move || {
                    let tls = tls.clone();
                    Box::pin(async move { sim_channel("city", 7443, Some(tls)).await })
                });
                let engine: Arc<dyn Engine> = Arc::new(engine);
                wardsync::ward::serve(cfg, engine, incoming(7070), connect, std::future::pending())
                    .await
                    .unwrap();
                Ok(())
            }
        });
    }
    let acked: Arc<Mutex<BTreeMap<String, Record>>> = Arc::default();
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let outcome: Arc<Mutex<Option<String>>> = Arc::default();
    {
        let (acked, outcome, certs, progress) =
            (acked.clone(), outcome.clone(), certs.clone(), progress.clone());
        sim.client("driver", async move {
            let code = WardCode::parse("00082").unwrap();
            let records = wardsync::generate::sample(&code, 120, seed);
            let mut ward = loop {
                if let Ok(ch) = sim_channel("ward", 7070, None).await {
                    break pb::ward_api_client::WardApiClient::new(ch);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            for (i, r) in records.iter().enumerate() {
                // Faults while writing: a partition, then lost acks, then heal.
                match i {
                    30 => turmoil::partition("ward", "city"),
                    60 => {
                        turmoil::repair("ward", "city");
                        turmoil::partition_oneway("city", "ward");
                    }
                    90 => turmoil::repair("ward", "city"),
                    _ => {}
                }
                progress.store(i, std::sync::atomic::Ordering::SeqCst);
                if ward.put(pb::PutRequest { record: Some(r.into()) }).await.is_ok() {
                    acked.lock().unwrap().insert(r.key_id(), r.clone());
                }
            }
            // Wait for the backlog to drain (the ward may still be restarting).
            let tls = client_tls(&TlsFiles::in_dir(&certs, "office"), "city").unwrap();
            let mut city = pb::city_query_client::CityQueryClient::new(
                sim_channel("city", 7443, Some(tls)).await.unwrap(),
            );
            loop {
                if let Ok(s) = ward.status(pb::StatusRequest {}).await {
                    if s.into_inner().backlog == 0 {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut problems = Vec::new();
            let acked = acked.lock().unwrap().clone();
            for (id, r) in acked.iter() {
                let key = wardsync::model::RecordKey::new(r.kind(), id).unwrap();
                match city.get(pb::CityGetRequest { key: Some((&key).into()) }).await {
                    Ok(got) if got.get_ref().record == Some(r.into()) => {}
                    other => problems.push(format!("acknowledged {key} wrong at the city: {other:?}")),
                }
            }
            let mut log = city
                .changes_since(pb::ChangesSinceRequest { after: 0, limit: 0 })
                .await
                .unwrap()
                .into_inner();
            let mut seqs = Vec::new();
            while let Some(l) = log.message().await.unwrap() {
                seqs.push(l.change.unwrap().seq);
            }
            let last = ward.status(pb::StatusRequest {}).await.unwrap().into_inner().last_seq;
            if seqs != (1..=last).collect::<Vec<_>>() {
                problems.push(format!("log sequences are not 1..={last} once each: {seqs:?}"));
            }
            *outcome.lock().unwrap() = Some(problems.join("\n"));
            Ok(())
        });
    }
    // The ward crashes and restarts twice while the driver writes.
    let mut crashes = [20usize, 75].into_iter().peekable();
    loop {
        if crashes.peek().is_some_and(|at| progress.load(std::sync::atomic::Ordering::SeqCst) >= *at) {
            crashes.next();
            sim.bounce("ward");
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(format!("seed {seed}: simulation failed: {e}")),
        }
    }
    match outcome.lock().unwrap().take() {
        Some(p) if p.is_empty() => Ok(()),
        Some(p) => Err(format!("seed {seed}: {p}")),
        None => Err(format!("seed {seed}: the driver did not finish")),
    }
}

#[test]
fn replication_keeps_its_invariants_under_partitions_lost_acks_and_crashes() {
    let certs = tempfile::tempdir().unwrap();
    let ca = DevCa::open_or_create(certs.path()).unwrap();
    ca.issue_city().unwrap();
    ca.issue("office", &["office"]).unwrap();
    ca.issue_ward(&WardCode::parse("00082").unwrap()).unwrap();
    // WARDSYNC_SIM_SEEDS=N runs seeds 0..N (200 by default).
    let seeds: u64 = std::env::var("WARDSYNC_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let failures: Vec<String> = (0..seeds).filter_map(|seed| run_seed(seed, certs.path()).err()).collect();
    assert!(failures.is_empty(), "{}\nreplay one with WARDSYNC_SIM_SEEDS", failures.join("\n"));
}
