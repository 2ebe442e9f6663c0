//! Replication lag and backlog at a glance: a ward is cut off and catches
//! up; `wardsync status --json` shows each phase as the city sees it.

mod common;

use common::*;
use wardsync::cli::relay::Relay;
use wardsync::cli::wait;
use wardsync::model::WardCode;
use wardsync::proto::pb;

/// The DOM of `url` after headless Chromium has loaded it.
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium is installed (Debian package chromium; .ci/run installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `wardsync status --json` against the city, as parsed JSON.
fn status_json(city: &City, env: &Env) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args(["status", "--json", "--city", &city.url(), "--tls-dir", env.certs().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

fn ward<'a>(all: &'a [serde_json::Value], code: &str) -> &'a serde_json::Value {
    all.iter().find(|w| w["ward"] == code).unwrap_or_else(|| panic!("{code} missing from {all:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_lag_and_backlog_of_a_ward_cut_off_and_catching_up() {
    let env = Env::new();
    let city_metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ward_metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let city = City::start_configured(
        &env,
        &format!("wards = [\"00082\", \"00145\"]\nmetrics_listen = \"{city_metrics}\"\n"),
    );
    let relay = Relay::start(city.addr).await.unwrap();
    // One change per batch, one batch in flight, frequent heartbeats: a
    // catch-up long enough for the city to report it.
    let slow = "batch_max_entries = 1\nmax_in_flight = 1\nheartbeat_ms = 50\nbackoff_max_ms = 200";
    let w =
        Ward::start_with(&env, "00082", relay.addr(), &format!("metrics_listen = \"{ward_metrics}\""), slow);
    let mut c = w.client().await;
    let code = WardCode::parse("00082").unwrap();
    c.put(pb::PutRequest { record: Some((&rec(&code, 0)).into()) }).await.unwrap();
    drained(&mut c).await;

    // Caught up and connected; the expected ward that never connected is listed.
    wait::until(DEADLINE, "the city to see the ward connected and caught up", || {
        let all = status_json(&city, &env);
        let w = ward(&all, "00082").clone();
        let never = ward(&all, "00145")["state"] == "never-seen";
        async move { Ok(w["state"] == "connected" && w["lag_seconds"] == 0.0 && w["backlog"] == 0 && never) }
    })
    .await
    .unwrap();

    relay.cut();
    wait::until(DEADLINE, "the city to see the ward disconnected", || {
        let all = status_json(&city, &env);
        let disconnected = ward(&all, "00082")["state"] == "disconnected";
        async move { Ok(disconnected) }
    })
    .await
    .unwrap();
    // Worst first: the disconnected ward before the never-seen one.
    let all = status_json(&city, &env);
    assert_eq!(all[0]["ward"], "00082");

    // Writes made while cut off queue up on the ward.
    futures::future::join_all((1..600u32).map(|i| {
        let mut c = c.clone();
        let r = rec(&code, i);
        async move { c.put(pb::PutRequest { record: Some((&r).into()) }).await.unwrap() }
    }))
    .await;
    assert_eq!(status(&mut c).await.unwrap().backlog, 599);
    let m = scrape(ward_metrics).await;
    assert_eq!(m["wardsync_outbox_depth"], 599.0, "{m:?}");
    assert_eq!(m["wardsync_connected"], 0.0);
    assert!(m["wardsync_outbox_bytes"] > 100_000.0, "{m:?}");
    assert!(m["wardsync_outbox_oldest_age_seconds"] >= 0.0);
    let m = scrape(city_metrics).await;
    assert_eq!(m[r#"wardsync_ward_connected{ward="00082"}"#], 0.0, "{m:?}");
    assert_eq!(m[r#"wardsync_ward_last_applied_seq{ward="00082"}"#], 1.0);

    // On reconnecting, the ward reports its backlog; the city shows the lag
    // while it catches up.
    relay.heal();
    wait::until(DEADLINE, "the city to report the backlog and a lag", || {
        let all = status_json(&city, &env);
        let w = ward(&all, "00082").clone();
        async move { Ok(w["backlog"].as_u64().unwrap_or(0) > 0 && w["lag_seconds"].as_f64().unwrap_or(0.0) > 0.0) }
    })
    .await
    .unwrap();
    drained(&mut c).await;
    wait::until(DEADLINE, "lag and backlog back to zero", || {
        let all = status_json(&city, &env);
        let w = ward(&all, "00082").clone();
        async move { Ok(w["state"] == "connected" && w["lag_seconds"] == 0.0 && w["backlog"] == 0) }
    })
    .await
    .unwrap();

    // The metrics agree with the status: back to zero, connected.
    wait::until(DEADLINE, "the metrics to show the ward caught up", || async move {
        let m = scrape(city_metrics).await;
        Ok(m.get(r#"wardsync_ward_connected{ward="00082"}"#) == Some(&1.0)
            && m.get(r#"wardsync_ward_lag_seconds{ward="00082"}"#) == Some(&0.0)
            && m.get(r#"wardsync_ward_backlog{ward="00082"}"#) == Some(&0.0)
            && m.get(r#"wardsync_ward_last_applied_seq{ward="00082"}"#) == Some(&600.0))
    })
    .await
    .unwrap();
    let m = scrape(city_metrics).await;
    assert_eq!(m[r#"wardsync_ward_connected{ward="00145"}"#], 0.0, "the never-seen ward is exported too");
    assert!(m["wardsync_apply_latency_seconds_count"] > 0.0, "{m:?}");
    let by_kind = m[r#"wardsync_records{kind="citizen"}"#]
        + m[r#"wardsync_records{kind="business"}"#]
        + m[r#"wardsync_records{kind="land"}"#];
    assert_eq!(by_kind, m[r#"wardsync_ward_records{ward="00082"}"#], "{m:?}");
    let m = scrape(ward_metrics).await;
    assert_eq!((m["wardsync_outbox_depth"], m["wardsync_connected"]), (0.0, 1.0));

    // The status page, as a real browser renders it, shows the same.
    let dom = dump_dom(&format!("http://{city_metrics}/status"));
    assert!(dom.contains("2 wards, 1 cut off or behind."), "{dom}");
    let row = |code: &str| {
        dom.lines().find(|l| l.contains(&format!("data-ward=\"{code}\""))).unwrap_or_default().to_string()
    };
    assert!(row("00082").contains("<td>connected</td><td>0.0 s</td><td>0</td>"), "{dom}");
    assert!(row("00145").contains("never-seen") && row("00145").contains("class=\"bad\""), "{dom}");
    assert!(dom.find("00145").unwrap() < dom.find("data-ward=\"00082\"").unwrap(), "worst first");
    assert!(
        m["wardsync_batches_sent_total"] >= 600.0 && m["wardsync_ack_latency_seconds_count"] >= 600.0,
        "{m:?}"
    );
}

/// The services a gRPC server lists through reflection.
async fn list_services(ch: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    match replies.message().await.unwrap().and_then(|r| r.message_response) {
        Some(MessageResponse::ListServicesResponse(l)) => {
            let mut names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

async fn serving(ch: tonic::transport::Channel, service: &str) -> bool {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let r = HealthClient::new(ch).check(HealthCheckRequest { service: service.into() }).await.unwrap();
    r.into_inner().status == ServingStatus::Serving as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_grpc_tools_see_health_and_every_service() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    ward.client().await;
    city.client().await;
    let ward_ch = tonic::transport::Endpoint::from_shared(format!("http://{}", ward.api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        list_services(ward_ch.clone()).await,
        ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "wardsync.v1.WardApi"]
    );
    assert!(serving(ward_ch, "wardsync.v1.WardApi").await);
    let tls = wardsync::auth::client_tls(&wardsync::auth::TlsFiles::in_dir(&env.certs(), "office"), "city")
        .unwrap();
    let city_ch = tonic::transport::Endpoint::from_shared(city.url())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let services = list_services(city_ch.clone()).await;
    assert!(
        services.contains(&"wardsync.v1.CitySync".to_string())
            && services.contains(&"wardsync.v1.CityQuery".to_string()),
        "{services:?}"
    );
    assert!(serving(city_ch.clone(), "wardsync.v1.CitySync").await);
    assert!(serving(city_ch, "").await);
}
