//! A node refuses a setup that would hurt (a local API open beyond
//! loopback, a socket over a file, another ward's certificate), warns before
//! its certificate expires and reloads a renewed one on SIGHUP, and never
//! runs half-dead: a panic in any task stops it with a failure exit so its
//! supervisor restarts it.

mod common;

use common::*;
use wardsync::proto::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_task_stops_the_node_with_a_failure_exit() {
    let mut env = Env::new();
    let city = City::start(&env);
    env.node_env.push(("WARDSYNC_MUTATION".into(), "replicator-panics".into()));
    let mut ward = Ward::start(&env, "00082", city.addr);
    // The replication task panics once the city welcomes the ward; before
    // the fix the agent went on serving its API with replication dead.
    let status = ward.node.exited();
    assert_eq!(status.code(), Some(wardsync::cli::PANIC_EXIT), "{status}");
    let log = ward.node.log();
    assert!(log.contains("a task panicked: stopping the process"), "{log}");
}

/// A ward 00082 configuration with `lines` (listen, socket, certificates...)
/// and replication to `city`; the `wardsync ward` arguments that run it.
fn ward_args(env: &Env, city: std::net::SocketAddr, name: &str, lines: &str) -> Vec<String> {
    let config = env.path().join(format!("{name}.toml"));
    let text = format!(
        "code = \"00082\"\ndata_dir = \"{}\"\ncity_url = \"https://{city}\"\n{lines}\n",
        env.path().join(name).display()
    );
    std::fs::write(&config, text).unwrap();
    vec!["ward".into(), "--config".into(), config.display().to_string()]
}

/// `[tls]` lines for certificate `name` in the test certificates.
fn tls(env: &Env, name: &str) -> String {
    let c = env.certs();
    format!(
        "[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        c.join("ca.pem").display(),
        c.join(format!("{name}.pem")).display(),
        c.join(format!("{name}.key")).display()
    )
}

/// Starts a node that must refuse to run: its log once it has exited with a failure.
fn refused(env: &Env, name: &str, args: Vec<String>) -> String {
    let mut node = Node::spawn(name, args, env, env.path().join(format!("{name}.log")));
    let status = node.exited();
    assert!(!status.success(), "{name} should have refused to start");
    node.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_api_stays_on_loopback_unless_told_otherwise() {
    let env = Env::new();
    let city = City::start(&env);
    let port = free_port();
    let everywhere = format!("listen = \"0.0.0.0:{port}\"\n{}", tls(&env, "ward-00082"));
    let log = refused(&env, "open", ward_args(&env, city.addr, "open", &everywhere));
    assert!(log.contains("0.0.0.0") && log.contains("not a loopback address"), "{log}");
    assert!(log.contains("api_beyond_loopback = true"), "the error says how: {log}");
    // Said explicitly, it listens beyond loopback.
    let said = format!("api_beyond_loopback = true\n{everywhere}");
    let _ward =
        Node::spawn("ward", ward_args(&env, city.addr, "said", &said), &env, env.path().join("w.log"));
    let url = format!("http://127.0.0.1:{port}");
    wardsync::cli::wait::until(DEADLINE, "the agent to answer", || async {
        wardsync::cli::client::ward_client(&url).await?.status(pb::StatusRequest {}).await?;
        Ok(true)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_private_from_the_start_and_never_replaces_a_file() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let city = City::start(&env);
    // A file where the socket would go is left alone.
    let important = env.path().join("important.txt");
    std::fs::write(&important, "the only copy").unwrap();
    let lines = format!("socket = \"{}\"\n{}", important.display(), tls(&env, "ward-00082"));
    let log = refused(&env, "onfile", ward_args(&env, city.addr, "onfile", &lines));
    assert!(log.contains("exists and is not a socket"), "{log}");
    assert_eq!(std::fs::read_to_string(&important).unwrap(), "the only copy");

    // Under umask 000 the socket still has mode 660 (it is made in a
    // private directory and linked in place with its mode set).
    let socket = env.path().join("ward.sock");
    let lines = format!("socket = \"{}\"\n{}", socket.display(), tls(&env, "ward-00082"));
    let args = ward_args(&env, city.addr, "sock", &lines);
    let start = || {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(env.path().join("sock.log")).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wardsync"));
        cmd.args(&args).stderr(log);
        // SAFETY: umask is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    };
    let mut agent = start();
    let url = format!("unix:{}", socket.display());
    let answers = || async {
        wardsync::cli::wait::until(DEADLINE, "the agent to answer on its socket", || async {
            wardsync::cli::client::ward_client(&url).await?.status(pb::StatusRequest {}).await?;
            Ok(true)
        })
        .await
        .unwrap()
    };
    answers().await;
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    // A second agent on the same socket is refused; the first goes on.
    let second = ward_args(&env, city.addr, "second", &lines);
    let log = refused(&env, "second", second);
    assert!(log.contains("is in use"), "{log}");
    // Killed, it leaves its socket behind; the next start replaces it.
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert!(socket.exists());
    let mut agent = start();
    answers().await;
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_refuses_to_start_with_another_wards_certificate() {
    let env = Env::new();
    let city = City::start(&env);
    let lines = format!("listen = \"127.0.0.1:{}\"\n{}", free_port(), tls(&env, "ward-00145"));
    let log = refused(&env, "mixed", ward_args(&env, city.addr, "mixed", &lines));
    assert!(log.contains("config `code` is 00082") && log.contains("is ward 00145's"), "{log}");
}

/// Days of validity left of the certificate the server at `addr` presents
/// to a new connection (made with the office's certificate); both times
/// are in whole seconds.
async fn served_certificate_days(env: &Env, addr: std::net::SocketAddr) -> f64 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let certs = env.certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(certs.join("ca.pem")).unwrap()).unwrap();
    let chain = vec![CertificateDer::from_pem_file(certs.join("office.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(certs.join("office.key")).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tls = connector.connect(ServerName::try_from("city").unwrap(), tcp).await.unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (_, cert) =
        <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(&der)
            .unwrap();
    let left_s = cert.validity().not_after.timestamp() - chrono::Utc::now().timestamp();
    left_s as f64 / 86_400.0
}

/// A day in seconds.
const DAY: f64 = 86_400.0;

/// Waits until the metric `name` at `metrics` is within `range`.
async fn metric_within(metrics: std::net::SocketAddr, name: &str, range: std::ops::RangeInclusive<f64>) {
    let what = format!("{name} within {range:?}");
    wardsync::cli::wait::until(DEADLINE, &what, || {
        let range = range.clone();
        async move { Ok(scrape(metrics).await.get(name).is_some_and(|v| range.contains(v))) }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_warn_before_their_certificate_expires_and_reload_a_renewed_one_on_sighup() {
    let env = Env::new();
    let ca = wardsync::auth::DevCa::open_or_create(&env.certs()).unwrap();
    ca.issue_for("city", &["city", "localhost", "127.0.0.1"], 5).unwrap();
    ca.issue_for("ward-00082", &["ward-00082"], 12).unwrap();
    let (city_metrics, ward_metrics) = (free_port(), free_port());
    let city_metrics: std::net::SocketAddr = format!("127.0.0.1:{city_metrics}").parse().unwrap();
    let ward_metrics: std::net::SocketAddr = format!("127.0.0.1:{ward_metrics}").parse().unwrap();
    let extra = format!("metrics_listen = \"{city_metrics}\"");
    let city = City::start_configured(&env, &extra);
    let ward =
        Ward::start_with(&env, "00082", city.addr, &format!("metrics_listen = \"{ward_metrics}\""), "");
    let mut c = ward.client().await;
    metric_within(city_metrics, "wardsync_certificate_expiry_seconds", 4.9 * DAY..=5.0 * DAY).await;
    metric_within(
        ward_metrics,
        r#"wardsync_certificate_expiry_seconds{ward="00082"}"#,
        11.9 * DAY..=12.0 * DAY,
    )
    .await;
    let served = served_certificate_days(&env, city.addr).await;
    assert!((4.9..=5.0).contains(&served), "{served}");
    for log in [city.node.log(), ward.node.log()] {
        assert!(log.contains("the certificate expires soon"), "{log}");
    }

    // Renewed certificates, then SIGHUP: used from the next connection,
    // without a restart; replication goes on.
    ca.issue_for("city", &["city", "localhost", "127.0.0.1"], 400).unwrap();
    ca.issue_for("ward-00082", &["ward-00082"], 400).unwrap();
    city.reconfigure(&env, &extra);
    ward.node.signal("HUP");
    metric_within(city_metrics, "wardsync_certificate_expiry_seconds", 399.9 * DAY..=400.0 * DAY).await;
    metric_within(
        ward_metrics,
        r#"wardsync_certificate_expiry_seconds{ward="00082"}"#,
        399.9 * DAY..=400.0 * DAY,
    )
    .await;
    let served = served_certificate_days(&env, city.addr).await;
    assert!((399.9..=400.0).contains(&served), "{served}");
    wardsync::cli::wait::until(DEADLINE, "both to log the reload", || async {
        Ok(city.node.log().contains("certificates reloaded")
            && ward.node.log().contains("certificates reloaded"))
    })
    .await
    .unwrap();
    c.put(pb::PutRequest {
        record: Some((&rec(&wardsync::model::WardCode::parse("00082").unwrap(), 0)).into()),
    })
    .await
    .unwrap();
    drained(&mut c).await;
}
