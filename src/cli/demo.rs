//! `wardsync demo`: a city and three Hanoi wards on loopback, with real
//! mutual TLS and on-disk databases. Each ward writes records; one ward is
//! cut off from the city and keeps writing while its backlog grows; the link
//! is restored; the demo waits for the backlog to drain and checks that the
//! city holds exactly what every ward holds.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::args::DemoArgs;
use super::client::{all_city_records, all_ward_records, city_client, ward_client};
use super::relay::Relay;
use super::wait;
use std::collections::BTreeMap;

use crate::auth::{DevCa, Role, TlsFiles, ward_cert_name};
use crate::config::{CityConfig, ReplicationConfig, WardConfig};
use crate::generate::{amend, sample};
use crate::model::{Kind, Record, WardCode};
use crate::proto::pb::{self, city_query_client::CityQueryClient, ward_api_client::WardApiClient};
use crate::store::{Engine, SledEngine};

const WARDS: [(&str, &str); 3] = [("00082", "Cửa Nam"), ("00145", "Long Biên"), ("09784", "Đan Phượng")];
/// Concurrent writes per ward.
const CONCURRENCY: usize = 16;

struct DemoWard {
    code: WardCode,
    name: &'static str,
    /// The records this ward writes, in writing order.
    records: Vec<Record>,
    relay: Relay,
    client: WardApiClient<Channel>,
}

/// Runs the demo; exit code 0 when the city converged to the wards' state.
pub async fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let n = a.records.min(5000) as u32;
    let (stop_wards, stop_city) = (CancellationToken::new(), CancellationToken::new());
    let (city_addr, city_task) = start_city(&dir, &stop_city).await?;
    println!("city        listening on {city_addr} (mutual TLS), data in {}", dir.join("city").display());
    let (mut wards, mut tasks) = (Vec::new(), Vec::new());
    for (code, name) in WARDS {
        let code = WardCode::parse(code).expect("demo ward codes are valid");
        let relay = Relay::start(city_addr).await?;
        let (api, task) = start_ward(&dir, &code, relay.addr(), &stop_wards).await?;
        tasks.push(task);
        let client = ward_client(&format!("http://{api}")).await?;
        println!("ward {code}  {name:<11} local API on {api}, linked to the city through {}", relay.addr());
        let records = sample(&code, 2 * n as usize, 2025);
        wards.push(DemoWard { code, name, records, relay, client });
    }

    let result = scenario(&a, &dir, &mut wards, n).await;
    // Wards first, so that none sees the city go away.
    stop_wards.cancel();
    for t in tasks {
        t.await??;
    }
    stop_city.cancel();
    city_task.await??;
    match result {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::FAILURE),
        Err(e) => Err(e),
    }
}

async fn scenario(a: &DemoArgs, dir: &Path, wards: &mut [DemoWard], n: u32) -> anyhow::Result<bool> {
    println!("\n1. every ward writes {n} records (citizens, businesses, land parcels)");
    for w in wards.iter() {
        write_range(w, 0..n, 0).await?;
    }
    wait_drained(wards, Duration::from_secs(a.timeout)).await?;
    print_backlogs(wards).await?;

    let cut = wards.len() - 1;
    println!(
        "\n2. the link of ward {} ({}) to the city is cut; every ward keeps writing",
        wards[cut].code, wards[cut].name
    );
    wards[cut].relay.cut();
    let mut city = city_client(&city_url(wards), Some(&dir.join("certs")), "office", "city").await?;
    let step = (n / 4).max(1);
    let mut from = n;
    while from < 2 * n {
        let to = (from + step).min(2 * n);
        for w in wards.iter() {
            write_range(w, from..to, 0).await?;
        }
        from = to;
        let s = status(&wards[cut]).await?;
        println!("   ward {} backlog: {:>6} changes queued on its disk", s.ward, s.backlog);
        print_city_view(&mut city, &wards[cut].code).await?;
    }
    println!("   ... and corrects and removes some earlier records");
    for w in wards.iter() {
        write_range(w, (0..n).step_by(10), 1).await?;
        delete_range(w, (5..n).step_by(20)).await?;
    }
    println!("   ward {} backlog: {:>6}", wards[cut].code, status(&wards[cut]).await?.backlog);

    println!("\n3. the link is restored; waiting for the backlog to drain");
    wards[cut].relay.heal();
    wait_drained(wards, Duration::from_secs(a.timeout)).await?;
    // The city marks the catch-up at the ward's next report of its backlog.
    let code = wards[cut].code.to_string();
    let recorded = wait::until(Duration::from_secs(a.timeout), "the city to record the catch-up", || {
        let (mut city, code) = (city.clone(), code.clone());
        async move {
            let states = city.wards(pb::WardsRequest {}).await?.into_inner().wards;
            Ok(states.iter().any(|w| w.ward == code && w.outages.first().is_some_and(|o| o.caught_up_ms > 0)))
        }
    })
    .await;
    if recorded.is_ok() {
        let states = city.wards(pb::WardsRequest {}).await?.into_inner().wards;
        if let Some(w) = states.iter().find(|w| w.ward == code) {
            let outage = crate::city::report::last_outage(w, crate::clock::now_ms()).unwrap_or_default();
            println!("   the city recorded the outage of ward {code}: {outage}");
        }
    }

    println!("\n4. summary");
    let states = city.wards(pb::WardsRequest {}).await?.into_inner().wards;
    println!(
        "   {:<6} {:<11} {:>13} {:>13} {:>12} {:>8}",
        "ward", "", "ward records", "city records", "applied seq", "backlog"
    );
    for w in wards.iter() {
        let s = status(w).await?;
        let c = states.iter().find(|c| c.ward == w.code.as_str());
        println!(
            "   {:<6} {:<11} {:>13} {:>13} {:>12} {:>8}",
            w.code,
            w.name,
            s.records,
            c.map_or(0, |c| c.records),
            c.map_or(0, |c| c.last_applied_seq),
            s.backlog
        );
    }

    let mut ok = true;
    for w in wards.iter_mut() {
        for kind in Kind::ALL {
            let at_ward = all_ward_records(&mut w.client, kind).await?;
            let at_city = all_city_records(&mut city, kind, w.code.as_str()).await?;
            if at_ward != at_city {
                ok = false;
                println!(
                    "   MISMATCH ward {} {kind}: ward holds {}, city holds {}",
                    w.code,
                    at_ward.len(),
                    at_city.len()
                );
            }
        }
    }
    println!();
    println!("{}", if ok { "converged" } else { "NOT converged" });
    Ok(ok)
}

/// What ops see of `ward` at the city: its state, lag and backlog.
async fn print_city_view(city: &mut CityQueryClient<Channel>, ward: &WardCode) -> anyhow::Result<()> {
    let states = city.wards(pb::WardsRequest {}).await?.into_inner().wards;
    if let Some(w) = states.iter().find(|w| w.ward == ward.as_str()) {
        let now = crate::clock::now_ms();
        println!(
            "   the city sees ward {}: {}, lag {}, backlog {}",
            w.ward,
            w.state,
            crate::city::report::lag(w),
            crate::city::report::backlog(w, now)
        );
    }
    Ok(())
}

fn city_url(wards: &[DemoWard]) -> String {
    // Any healed relay leads to the city.
    format!("https://{}", wards[0].relay.addr())
}

async fn start_city(
    dir: &Path,
    stop: &CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<anyhow::Result<()>>)> {
    let certs = dir.join("certs");
    let ca = DevCa::open_or_create(&certs)?;
    ca.issue_city()?;
    ca.issue("office", &["office"])?;
    for (code, _) in WARDS {
        ca.issue_ward(&WardCode::parse(code).expect("valid"))?;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg = CityConfig {
        data_dir: dir.join("city"),
        database: Default::default(),
        backup_dir: None,
        listen: addr,
        tls: Some(TlsFiles::in_dir(&certs, "city")),
        insecure_dev: false,
        max_group: 64,
        cache_mb: crate::config::CITY_CACHE_MB,
        province: Some("01".into()),
        max_clock_skew_ms: 300_000,
        policies: Default::default(),
        roles: BTreeMap::from([("office".to_string(), vec![Role::OfficeEditor])]),
        revoked: Vec::new(),
        limits: Default::default(),
        metrics_listen: None,
        wards: WARDS.iter().map(|(c, _)| c.to_string()).collect(),
    };
    let engine: Arc<dyn Engine> = Arc::new(SledEngine::open(&cfg.data_dir, cfg.cache_mb)?);
    let stop = stop.clone();
    let task = tokio::spawn(async move {
        let access = tokio::sync::watch::channel(std::sync::Arc::new(cfg.access())).1;
        crate::city::serve(cfg, engine, crate::net::incoming(listener), access, stop.cancelled_owned()).await
    });
    Ok((addr, task))
}

async fn start_ward(
    dir: &Path,
    code: &WardCode,
    city: SocketAddr,
    stop: &CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<anyhow::Result<()>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg = WardConfig {
        code: code.to_string(),
        data_dir: dir.join(format!("ward-{code}")),
        listen: addr,
        api_beyond_loopback: false,
        socket: None,
        metrics_listen: None,
        city_url: format!("https://{city}"),
        city_name: "city".into(),
        tls: Some(TlsFiles::in_dir(&dir.join("certs"), &ward_cert_name(code))),
        insecure_dev: false,
        cache_mb: crate::config::WARD_CACHE_MB,
        replication: ReplicationConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..Default::default()
        },
    };
    let engine: Arc<dyn Engine> = Arc::new(SledEngine::open(&cfg.data_dir, cfg.cache_mb)?);
    let connect = crate::ward::city_connect(&cfg)?;
    let stop = stop.clone();
    let task = tokio::spawn(async move {
        crate::ward::serve(cfg, engine, crate::net::incoming(listener), connect, stop.cancelled_owned()).await
    });
    Ok((addr, task))
}

/// Writes records `range` of the ward; `version` 0 as generated, else amended.
async fn write_range(w: &DemoWard, range: impl Iterator<Item = u32>, version: u32) -> anyhow::Result<()> {
    futures::stream::iter(range)
        .map(|i| {
            let mut client = w.client.clone();
            let record = match version {
                0 => w.records[i as usize].clone(),
                v => amend(&w.records[i as usize], v),
            };
            async move {
                client.put(pb::PutRequest { record: Some((&record).into()) }).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await
}

async fn delete_range(w: &DemoWard, range: impl Iterator<Item = u32>) -> anyhow::Result<()> {
    for i in range {
        let r = &w.records[i as usize];
        let key = r.key()?;
        w.client.clone().delete(pb::DeleteRequest { key: Some((&key).into()) }).await?;
    }
    Ok(())
}

async fn status(w: &DemoWard) -> anyhow::Result<pb::WardStatus> {
    Ok(w.client.clone().status(pb::StatusRequest {}).await?.into_inner())
}

async fn print_backlogs(wards: &[DemoWard]) -> anyhow::Result<()> {
    for w in wards {
        let s = status(w).await?;
        println!(
            "   ward {}: {} records, {} changes, city applied {}, backlog {}",
            s.ward, s.records, s.last_seq, s.acked_seq, s.backlog
        );
    }
    Ok(())
}

async fn wait_drained(wards: &[DemoWard], timeout: Duration) -> anyhow::Result<()> {
    wait::until(timeout, "every ward's backlog to drain", || async {
        let mut total = 0;
        for w in wards {
            total += status(w).await?.backlog;
        }
        Ok(total == 0)
    })
    .await?;
    println!("   every backlog is empty");
    Ok(())
}
