//! A ward cut off, as monitoring sees it: the shipped alert rules, run by a
//! real Prometheus against the city, fire (disconnected, lag, silent)
//! during the cut and resolve once the ward is back and caught up (the
//! rules are the files in deploy/, with their durations and thresholds
//! shortened); the ward's replication health turns NOT_SERVING and back.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::*;
use wardsync::cli::relay::Relay;
use wardsync::cli::wait;
use wardsync::model::WardCode;
use wardsync::proto::pb;

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped rules with every `for:` at 2 s and the lag and silence
/// thresholds at 3 s; each change must find what it changes.
fn quick_rules() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let mut rules = std::fs::read_to_string(path).unwrap();
    for (from, to) in [
        ("wardsync_ward_lag_seconds > 300", "wardsync_ward_lag_seconds > 3"),
        ("wardsync_ward_last_contact_age_seconds > 600", "wardsync_ward_last_contact_age_seconds > 3"),
    ] {
        assert!(rules.contains(from), "the rules no longer say {from:?}");
        rules = rules.replace(from, to);
    }
    let lines: Vec<String> = rules
        .lines()
        .map(|l| match l.split_once("for: ") {
            Some((indent, _)) => format!("{indent}for: 2s"),
            None => l.to_string(),
        })
        .collect();
    lines.join("\n")
}

fn start_prometheus(env: &Env, city_metrics: SocketAddr) -> Prometheus {
    let dir = env.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alerts.yml"), quick_rules()).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\n\
             scrape_configs:\n  - job_name: wardsync-city\n    static_configs:\n      - targets: [\"{city_metrics}\"]\n"
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(env.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus is installed (Debian package prometheus; scripts/test.sh installs it)");
    Prometheus { child, addr }
}

/// `GET path` on `addr` (HTTP/1.0: no chunked body), as JSON.
async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n").as_bytes()).await?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok(serde_json::from_str(body)?)
}

/// The HTTP status of `GET path` on `addr`.
async fn http_status(addr: SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: node\r\n\r\n").as_bytes()).await.unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The gRPC health of `service` on the ward agent at `api`.
async fn grpc_health(api: SocketAddr, service: &str) -> i32 {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{api}")).unwrap().connect().await.unwrap();
    let reply =
        HealthClient::new(channel).check(HealthCheckRequest { service: service.into() }).await.unwrap();
    reply.into_inner().status
}

/// The alerts firing for `ward`, by name, as Prometheus's API reports them.
async fn firing(prometheus: SocketAddr, ward: &str) -> anyhow::Result<Vec<String>> {
    let reply = get_json(prometheus, "/api/v1/alerts").await?;
    let mut names: Vec<String> = reply["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["state"] == "firing" && a["labels"]["ward"] == ward)
        .map(|a| a["labels"]["alertname"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_while_a_ward_is_cut_off_and_resolve_after() {
    let env = Env::new();
    let city_metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let city =
        City::start_configured(&env, &format!("wards = [\"00082\"]\nmetrics_listen = \"{city_metrics}\""));
    let relay = Relay::start(city.addr).await.unwrap();
    let ward_metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ward = Ward::start_with(
        &env,
        "00082",
        relay.addr(),
        &format!("metrics_listen = \"{ward_metrics}\""),
        "heartbeat_ms = 200\nbackoff_max_ms = 300\nunhealthy_after_ms = 1000",
    );
    let mut c = ward.client().await;
    let code = WardCode::parse("00082").unwrap();
    c.put(pb::PutRequest { record: Some((&rec(&code, 0)).into()) }).await.unwrap();
    drained(&mut c).await;
    let prometheus = start_prometheus(&env, city_metrics);
    wait::until(DEADLINE, "Prometheus to scrape the city", || async {
        let up = get_json(prometheus.addr, "/api/v1/query?query=wardsync_ward_connected").await?;
        Ok(up["data"]["result"][0]["value"][1] == "1")
    })
    .await
    .unwrap();
    assert!(firing(prometheus.addr, "00082").await.unwrap().is_empty());
    const SERVING: i32 = 1;
    const NOT_SERVING: i32 = 2;
    let replication = wardsync::ward::REPLICATION_HEALTH;
    assert_eq!(grpc_health(ward.api, replication).await, SERVING);
    assert_eq!(http_status(ward_metrics, "/health").await, 200);
    assert_eq!(http_status(city_metrics, "/health").await, 200, "no client certificate needed");

    // Cut off while caught up, the ward goes on writing.
    relay.cut();
    for i in 1..20 {
        c.put(pb::PutRequest { record: Some((&rec(&code, i)).into()) }).await.unwrap();
    }
    let all = [
        "WardsyncReplicationLagHigh".to_string(),
        "WardsyncWardDisconnected".to_string(),
        "WardsyncWardSilent".to_string(),
    ];
    wait::until(DEADLINE, "the cut-off alerts to fire", || async {
        Ok(firing(prometheus.addr, "00082").await? == all)
    })
    .await
    .unwrap();
    // The agent is up and takes writes; its replication is not.
    wait::until(DEADLINE, "replication health to say NOT_SERVING", || async {
        Ok(grpc_health(ward.api, replication).await == NOT_SERVING
            && http_status(ward_metrics, "/health").await == 503)
    })
    .await
    .unwrap();
    assert_eq!(grpc_health(ward.api, "").await, SERVING);

    // Back, and caught up: every alert resolves, health is back.
    relay.heal();
    drained(&mut c).await;
    wait::until(DEADLINE, "the alerts to resolve", || async {
        Ok(firing(prometheus.addr, "00082").await?.is_empty())
    })
    .await
    .unwrap();
    wait::until(DEADLINE, "replication health to say SERVING", || async {
        Ok(grpc_health(ward.api, replication).await == SERVING
            && http_status(ward_metrics, "/health").await == 200)
    })
    .await
    .unwrap();
}
