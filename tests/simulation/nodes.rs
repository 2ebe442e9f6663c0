//! The city and the wards as simulated hosts: the real servers over the
//! real TLS stack, on stores that keep only what was flushed when their
//! host crashes and restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wardsync::auth::TlsFiles;
use wardsync::config::{CityConfig, ReplicationConfig, WardConfig};
use wardsync::store::{Engine, MemEngine};

use super::net::{connect, incoming};

/// The city's port.
pub const CITY_PORT: u16 = 7443;
/// Each ward's local API port.
pub const WARD_PORT: u16 = 7070;

/// Registers the city host. Each (re)start sees only what was flushed.
pub fn city(sim: &mut turmoil::Sim<'_>, engine: &MemEngine, certs: &Path) {
    let (engine, certs) = (engine.clone(), certs.to_path_buf());
    sim.host("city", move || {
        engine.crash();
        let (engine, certs) = (engine.clone(), certs.clone());
        async move {
            let cfg: CityConfig = toml::from_str(&format!(
                "tls = {{ ca = \"{0}/ca.pem\", cert = \"{0}/city.pem\", key = \"{0}/city.key\" }}\n",
                certs.display()
            ))
            .unwrap();
            let access = tokio::sync::watch::channel(Arc::new(cfg.access())).1;
            let engine: Arc<dyn Engine> = Arc::new(engine);
            wardsync::city::serve(cfg, engine, incoming(CITY_PORT), access, std::future::pending()).await?;
            Ok(())
        }
    });
}

/// Registers a ward host `host` running ward `code`, verifying its records
/// against the city's every `verify_every_ms` (0: never). Each (re)start
/// sees only what was flushed.
pub fn ward(
    sim: &mut turmoil::Sim<'_>,
    (host, code): (&'static str, &'static str),
    engine: &MemEngine,
    certs: &Path,
    verify_every_ms: u64,
) {
    let (engine, certs): (MemEngine, PathBuf) = (engine.clone(), certs.to_path_buf());
    sim.host(host, move || {
        engine.crash();
        let (engine, certs) = (engine.clone(), certs.clone());
        async move {
            let cfg = WardConfig {
                code: code.into(),
                data_dir: "/unused".into(),
                listen: "0.0.0.0:7070".parse().unwrap(),
                // The simulated clients write from hosts of their own.
                api_beyond_loopback: true,
                socket: None,
                metrics_listen: None,
                city_url: format!("https://city:{CITY_PORT}"),
                city_name: "city".into(),
                tls: Some(TlsFiles::in_dir(&certs, &format!("ward-{code}"))),
                insecure_dev: false,
                cache_mb: wardsync::config::WARD_CACHE_MB,
                replication: ReplicationConfig {
                    backoff_initial_ms: 100,
                    backoff_max_ms: 2000,
                    ack_timeout_ms: 3000,
                    heartbeat_ms: 1000,
                    verify_every_ms,
                    ..Default::default()
                },
            };
            // The production endpoint (TLS, keep-alive), over the simulated network.
            let endpoint = wardsync::ward::city_endpoint(&cfg)?;
            let connect: wardsync::ward::Connect = Arc::new(move || {
                let endpoint = endpoint.clone();
                Box::pin(async move { Ok(connect(endpoint, "city", CITY_PORT).await?) })
            });
            let engine: Arc<dyn Engine> = Arc::new(engine);
            wardsync::ward::serve(cfg, engine, incoming(WARD_PORT), connect, std::future::pending()).await?;
            Ok(())
        }
    });
}
