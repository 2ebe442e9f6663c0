//! Replication lag and backlog at a glance: a ward is cut off and catches
//! up; `wardsync status --json` shows each phase as the city sees it.

mod common;

use common::*;
use wardsync::cli::relay::Relay;
use wardsync::cli::wait;
use wardsync::model::WardCode;
use wardsync::proto::pb;

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
    let city = City::start_configured(&env, "wards = [\"00082\", \"00145\"]\n");
    let relay = Relay::start(city.addr).await.unwrap();
    // One change per batch, one batch in flight, frequent heartbeats: a
    // catch-up long enough for the city to report it.
    let slow = "batch_max_entries = 1\nmax_in_flight = 1\nheartbeat_ms = 50\nbackoff_max_ms = 200";
    let w = Ward::start_with(&env, "00082", relay.addr(), "", slow);
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
}
