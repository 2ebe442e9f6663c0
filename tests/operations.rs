//! Replication lag and backlog at a glance: a ward is cut off and catches
//! up; `wardsync status` (and its exit status), the metrics (clean for
//! promtool) and the status page (on a phone too) show each phase as the
//! city sees it, and the outage afterwards.

mod common;

use common::*;
use wardsync::cli::relay::Relay;
use wardsync::cli::wait;
use wardsync::model::WardCode;
use wardsync::proto::pb;

/// The DOM of `url` after headless Chromium has loaded it, in a window
/// `width` pixels wide; `extra` flags go to Chromium.
fn dump_dom(url: &str, width: u32, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args(extra)
        .arg(format!("--window-size={width},844"))
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
    status_and_code(city, env).0
}

/// `wardsync status --json` against the city, and its exit status.
fn status_and_code(city: &City, env: &Env) -> (Vec<serde_json::Value>, i32) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args(["status", "--json", "--city", &city.url(), "--tls-dir", env.certs().to_str().unwrap()])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    assert!([0, 2, 3].contains(&code), "{code}: {}", String::from_utf8_lossy(&out.stderr));
    let all = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone();
    (all, code)
}

/// What a phone shows of the status page at `url` (390 px wide): for each
/// ward row, whether its state, lag and last contact lie within the
/// screen, and whether the page scrolls sideways. Measured by a probe page
/// that fetches the status page and lays it out in a frame 390 px wide
/// (Chromium without the same-origin policy, for this test only).
fn phone_layout(url: &str, dir: &std::path::Path) -> String {
    let probe = dir.join("probe.html");
    std::fs::write(
        &probe,
        format!(
            r#"<!doctype html><html><body style="margin:0"><iframe id="f" style="border:0;width:390px;height:844px"></iframe>
<pre id="result">pending</pre><script>
fetch('{url}').then(r => r.text()).then(html => {{
  const f = document.getElementById('f');
  f.onload = () => {{
    const d = f.contentDocument;
    const rows = [...d.querySelectorAll('tr[data-ward]')].map(tr => {{
      const inside = ['state', 'lag', 'contact'].every(c => {{
        const r = tr.querySelector('[data-col=' + c + ']').getBoundingClientRect();
        return r.width > 0 && r.right <= 390;
      }});
      return tr.dataset.ward + '=' + (inside ? 'visible' : 'off-screen');
    }});
    const sideways = d.documentElement.scrollWidth > 390 ? 'scrolls-sideways' : 'fits';
    document.getElementById('result').textContent = 'layout: ' + rows.join(' ') + ' ' + sideways;
  }};
  f.srcdoc = html;
}});
</script></body></html>"#
        ),
    )
    .unwrap();
    let flags = ["--disable-web-security", "--virtual-time-budget=5000"];
    let dom = dump_dom(&format!("file://{}", probe.display()), 420, &flags);
    let result = dom.split("<pre id=\"result\">").nth(1).and_then(|s| s.split('<').next());
    result.and_then(|r| r.strip_prefix("layout: ")).unwrap_or(&dom).to_string()
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
    let cut_at = std::time::Instant::now();
    // Worst first: the disconnected ward before the never-seen one; the
    // exit status says a ward is cut off.
    let (all, exit) = status_and_code(&city, &env);
    assert_eq!((all[0]["ward"].as_str(), exit), (Some("00082"), 3));

    // Writes made while cut off queue up on the ward.
    futures::future::join_all((1..600u32).map(|i| {
        let mut c = c.clone();
        let r = rec(&code, i);
        async move { c.put(pb::PutRequest { record: Some((&r).into()) }).await.unwrap() }
    }))
    .await;
    assert_eq!(status(&mut c).await.unwrap().backlog, 599);
    let m = scrape(ward_metrics).await;
    let w = r#"{ward="00082"}"#;
    assert_eq!(m[&format!("wardsync_outbox_depth{w}")], 599.0, "{m:?}");
    assert_eq!(m[&format!("wardsync_connected{w}")], 0.0);
    assert!(m[&format!("wardsync_outbox_bytes{w}")] > 100_000.0, "{m:?}");
    assert!(m[&format!("wardsync_outbox_oldest_age_seconds{w}")] >= 0.0);
    let m = scrape(city_metrics).await;
    assert_eq!(m[r#"wardsync_ward_connected{ward="00082"}"#], 0.0, "{m:?}");
    assert_eq!(m[r#"wardsync_ward_last_applied_seq{ward="00082"}"#], 1.0);
    // Cut off while caught up, the ward has written since: its lag is at
    // least the time since the city last heard from it, and says so.
    let all = status_json(&city, &env);
    let cut = ward(&all, "00082");
    assert_eq!(cut["lag_is_lower_bound"], true, "{cut}");
    let silent_for =
        (chrono::Utc::now().timestamp_millis() - cut["last_contact_ms"].as_i64().unwrap()) as f64 / 1000.0;
    assert!(cut["lag_seconds"].as_f64().unwrap() >= silent_for - 1.0, "{cut} silent {silent_for}");
    assert!(cut_at.elapsed().as_secs_f64() - 1.0 <= cut["lag_seconds"].as_f64().unwrap(), "{cut}");
    assert!(cut["outages"][0]["end_ms"] == 0 && cut["outage_count"] == 1, "{cut}");
    let m = scrape(city_metrics).await;
    assert!(
        m[r#"wardsync_ward_lag_seconds{ward="00082"}"#] > 0.0,
        "a cut-off ward is never shown caught up: {m:?}"
    );
    let layout = phone_layout(&format!("http://{city_metrics}/status"), env.path());
    assert_eq!(layout, "00082=visible 00145=visible fits", "on a phone, worst first");

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
    // The outage is on record: from the cut to the catch-up.
    let all = status_json(&city, &env);
    let outage = ward(&all, "00082")["outages"][0].clone();
    assert!(outage["end_ms"].as_i64().unwrap() > outage["start_ms"].as_i64().unwrap(), "{outage}");
    assert_eq!(outage["changes_caught_up"], 599, "{outage}");
    assert!(outage["longest_lag_seconds"].as_f64().unwrap() > 0.0, "{outage}");
    let m = scrape(city_metrics).await;
    assert_eq!(m[r#"wardsync_ward_outages_total{ward="00082"}"#], 1.0, "{m:?}");
    assert_eq!(m[r#"wardsync_ward_connected{ward="00145"}"#], 0.0, "the never-seen ward is exported too");
    assert!(m["wardsync_apply_latency_seconds_count"] > 0.0, "{m:?}");
    let by_kind = m[r#"wardsync_records{kind="citizen"}"#]
        + m[r#"wardsync_records{kind="business"}"#]
        + m[r#"wardsync_records{kind="land"}"#];
    assert_eq!(by_kind, m[r#"wardsync_ward_records{ward="00082"}"#], "{m:?}");
    let m = scrape(ward_metrics).await;
    let w = r#"{ward="00082"}"#;
    assert_eq!((m[&format!("wardsync_outbox_depth{w}")], m[&format!("wardsync_connected{w}")]), (0.0, 1.0));

    // The status page, as a real browser renders it, shows the same.
    let dom = dump_dom(&format!("http://{city_metrics}/status"), 1200, &[]);
    assert!(dom.contains("2 wards, 1 cut off or behind."), "{dom}");
    let row = |code: &str| {
        dom.lines().find(|l| l.contains(&format!("data-ward=\"{code}\""))).unwrap_or_default().to_string()
    };
    assert!(row("00082").contains("Phường Cửa Nam"), "ward names: {dom}");
    assert!(
        row("00082").contains(r#"<td data-col="state">connected</td><td data-col="lag">0.0 s</td>"#),
        "{dom}"
    );
    assert!(row("00145").contains("never-seen") && row("00145").contains("class=\"bad\""), "{dom}");
    assert!(dom.find("00145").unwrap() < dom.find("data-ward=\"00082\"").unwrap(), "worst first");
    assert!(dom.contains("As of ") && dom.contains("changes in"), "as of, and the outage: {dom}");
    let (_, exit) = status_and_code(&city, &env);
    assert_eq!(exit, 3, "a ward expected and never seen");
    // promtool finds nothing to fault in either node's metrics.
    for addr in [city_metrics, ward_metrics] {
        let text = metrics_text(addr).await;
        let mut check = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool is installed (scripts/test.sh installs it)");
        use std::io::Write;
        check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = check.wait_with_output().unwrap();
        let said =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "promtool on {addr}: {said}\n{text}");
    }
    // A reader that closes the pipe early ends `status --watch` quietly.
    let script = format!(
        "{} status --watch 1 --json --city {} --tls-dir {} | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_wardsync"),
        city.url(),
        env.certs().display()
    );
    let out = std::process::Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3", "{stderr}");
    assert!(
        m[&format!("wardsync_batches_sent_total{w}")] >= 600.0
            && m[&format!("wardsync_ack_latency_seconds_count{w}")] >= 600.0,
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
