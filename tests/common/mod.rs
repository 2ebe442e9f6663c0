//! Test harness: real `wardsync` processes (city and wards) on loopback
//! ports, with real TLS certificates and on-disk databases in a temp dir.
#![allow(dead_code)]

pub mod ledger;
pub mod load;
#[path = "../../src/store/pg/test_cluster.rs"]
pub mod pg;
pub mod powercut;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::Channel;
use wardsync::auth::DevCa;
use wardsync::cli::client::{city_client, ward_client};
use wardsync::cli::wait;
use wardsync::model::WardCode;
use wardsync::proto::pb::{self, city_query_client::CityQueryClient, ward_api_client::WardApiClient};

/// `wardsync ARGS`, run to its end.
pub fn wardsync(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wardsync")).args(args).output().unwrap()
}

/// What a command printed on standard output.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What a command printed on standard error.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// How long any awaited condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A temp directory holding certificates and every node's data and logs.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Environment variables every node started in this environment gets.
    pub node_env: Vec<(String, String)>,
}

impl Env {
    /// Certificates for the city, wards 00082 and 00145, and the office;
    /// and, in `foreign/`, a second CA with its own ward-00082 certificate.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::open_or_create(&dir.path().join("certs")).unwrap();
        ca.issue_city().unwrap();
        ca.issue("office", &["office"]).unwrap();
        for w in ["00082", "00145"] {
            ca.issue_ward(&WardCode::parse(w).unwrap()).unwrap();
        }
        let foreign = DevCa::open_or_create(&dir.path().join("foreign")).unwrap();
        foreign.issue_ward(&WardCode::parse("00082").unwrap()).unwrap();
        Env { dir, node_env: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn certs(&self) -> PathBuf {
        self.path().join("certs")
    }

    /// `wardsync audit verify` of the stopped city's embedded store, with
    /// this environment's CA.
    pub fn audit_stopped_city(&self) -> std::process::Output {
        let (data, certs) = (self.path().join("city"), self.certs());
        wardsync(&[
            "audit",
            "verify",
            "--data-dir",
            data.to_str().unwrap(),
            "--tls-dir",
            certs.to_str().unwrap(),
        ])
    }

    /// Flips a bit of byte `at` (counted from the end if negative) of the
    /// one row under `prefix` in the stopped city's embedded store, as
    /// someone editing it behind the city's back would.
    pub async fn alter_stopped_city(&self, prefix: u8, at: isize) {
        use wardsync::store::{Batch, Engine, SledEngine};
        let engine = SledEngine::open(&self.path().join("city"), 8).unwrap();
        let kept = engine.scan(&[prefix], &[prefix + 1], 10).unwrap();
        assert_eq!(kept.len(), 1, "one row under {:?}: {kept:?}", prefix as char);
        let (k, mut v) = kept[0].clone();
        let i = if at < 0 { v.len() - at.unsigned_abs() } else { at as usize };
        v[i] ^= 1;
        let mut batch = Batch::default();
        batch.insert(k, v);
        engine.apply(batch).unwrap();
        engine.flush().await.unwrap();
    }

    /// Signs requests as the office does (its certificate's key).
    pub fn office(&self) -> wardsync::cli::office::OfficeSigner {
        let files = wardsync::auth::TlsFiles::in_dir(&self.certs(), "office");
        wardsync::cli::office::OfficeSigner::load(Some(&files)).unwrap()
    }
}

/// A free loopback port for a node to listen on. Taken below Linux's
/// ephemeral range (32768 and up), where the system never hands a port to
/// an outgoing connection meanwhile, and in a sequence of this process's
/// own (started from its pid), so two tests never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ =
        NEXT.compare_exchange(u32::MAX, std::process::id() * 101 % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A `wardsync` child process with its log in a file; killed on drop, and
/// its log printed if the test is failing.
pub struct Node {
    pub name: String,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Node {
    /// Starts `wardsync ARGS` with its log in `log`.
    pub fn spawn(name: &str, args: Vec<String>, env: &Env, log: PathBuf) -> Node {
        let mut n = Node { name: name.into(), child: None, args, env: env.node_env.clone(), log };
        n.start();
        n
    }

    /// (Re)starts the process with the same arguments.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wardsync"))
            .args(&self.args)
            .env("RUST_LOG", "wardsync=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Sends a signal by name (e.g. "HUP") to the running process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill").args([format!("-{sig}"), pid.to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        sigterm(c.id());
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.success();
            }
            assert!(std::time::Instant::now() < deadline, "{} ignored SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Node {
    /// Waits for the process to exit by itself; its exit status.
    pub fn exited(&mut self) -> std::process::ExitStatus {
        let c = self.child.as_mut().expect("running");
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "{} is still running", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn sigterm(pid: u32) {
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- last lines of {} ----", self.name);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A city server process.
pub struct City {
    pub node: Node,
    pub addr: SocketAddr,
    certs: PathBuf,
}

impl City {
    pub fn start(env: &Env) -> City {
        Self::start_at(env, free_port())
    }

    pub fn start_at(env: &Env, port: u16) -> City {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let args = vec![
            "city".into(),
            "--data-dir".into(),
            env.path().join("city").display().to_string(),
            "--listen".into(),
            addr.to_string(),
            "--tls-dir".into(),
            env.certs().display().to_string(),
        ];
        let node = Node::spawn("city", args, env, env.path().join("city.log"));
        City { node, addr, certs: env.certs() }
    }

    /// A city started with a config file: `extra` is TOML appended after
    /// the data directory, address and certificates (tables allowed).
    pub fn start_configured(env: &Env, extra: &str) -> City {
        Self::start_named(env, "city", extra)
    }

    /// Like [`City::start_configured`], with its own config file and log
    /// (`NAME.toml`, `NAME.log`), for several city processes.
    pub fn start_named(env: &Env, name: &str, extra: &str) -> City {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = env.path().join(format!("{name}.toml"));
        write_city_config(env, &config, addr, extra);
        let args = vec!["city".into(), "--config".into(), config.display().to_string()];
        let node = Node::spawn(name, args, env, env.path().join(format!("{name}.log")));
        City { node, addr, certs: env.certs() }
    }

    /// Rewrites the config file (same address and data) and sends SIGHUP.
    pub fn reconfigure(&self, env: &Env, extra: &str) {
        self.rewrite_config(env, extra);
        self.node.signal("HUP");
    }

    /// Rewrites the config file (same address and data), for the next start.
    pub fn rewrite_config(&self, env: &Env, extra: &str) {
        write_city_config(env, &env.path().join("city.toml"), self.addr, extra);
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A query client with the office certificate, once the city answers.
    pub async fn client(&self) -> CityQueryClient<Channel> {
        self.client_as("office").await
    }

    /// A query client with the certificate `name` (`ward-00082`, `office`...),
    /// once the city accepts connections.
    pub async fn client_as(&self, name: &str) -> CityQueryClient<Channel> {
        // (`city_client` makes one call, which only a city serving answers.)
        let url = self.url();
        let connect = || city_client(&url, Some(&self.certs), name, "city");
        wait::until(DEADLINE, "the city to accept connections", || async { Ok(connect().await.is_ok()) })
            .await
            .unwrap();
        connect().await.unwrap()
    }
}

fn write_city_config(env: &Env, path: &Path, addr: SocketAddr, extra: &str) {
    let certs = env.certs();
    let text = format!(
        "data_dir = \"{}\"\nlisten = \"{addr}\"\ntls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n{extra}\n",
        env.path().join("city").display(),
        certs.join("ca.pem").display(),
        certs.join("city.pem").display(),
        certs.join("city.key").display(),
    );
    std::fs::write(path, text).unwrap();
}

/// A ward agent process.
pub struct Ward {
    pub node: Node,
    pub code: String,
    pub api: SocketAddr,
}

impl Ward {
    /// Starts ward `code` replicating to `city_addr` (the city or a relay).
    pub fn start(env: &Env, code: &str, city_addr: SocketAddr) -> Ward {
        Self::start_with(env, code, city_addr, "", "")
    }

    /// Like [`Ward::start`], with extra top-level config lines and extra
    /// `[replication]` settings (which override the test defaults).
    pub fn start_with(env: &Env, code: &str, city_addr: SocketAddr, extra: &str, replication: &str) -> Ward {
        Self::start_flagged(env, code, city_addr, extra, replication, &[])
    }

    /// Like [`Ward::start_with`], with extra command-line flags.
    pub fn start_flagged(
        env: &Env,
        code: &str,
        city_addr: SocketAddr,
        extra: &str,
        replication: &str,
        flags: &[&str],
    ) -> Ward {
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let certs = env.certs();
        let config = env.path().join(format!("ward-{code}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"code = "{code}"
data_dir = "{data}"
listen = "{api}"
city_url = "https://{city_addr}"
{extra}
[tls]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
[replication]
{replication}
"#,
                data = env.path().join(format!("ward-{code}")).display(),
                ca = certs.join("ca.pem").display(),
                cert = certs.join(format!("ward-{code}.pem")).display(),
                key = certs.join(format!("ward-{code}.key")).display(),
                replication = with_defaults(replication),
            ),
        )
        .unwrap();
        let mut args = vec!["ward".into(), "--config".into(), config.display().to_string()];
        args.extend(flags.iter().map(|f| f.to_string()));
        let node =
            Node::spawn(&format!("ward {code}"), args, env, env.path().join(format!("ward-{code}.log")));
        Ward { node, code: code.into(), api }
    }

    /// A local API client, once the agent answers.
    pub async fn client(&self) -> WardApiClient<Channel> {
        let url = format!("http://{}", self.api);
        wait::until(DEADLINE, "the ward agent to accept connections", || async {
            ward_client(&url).await?.status(pb::StatusRequest {}).await?;
            Ok(true)
        })
        .await
        .unwrap();
        ward_client(&url).await.unwrap()
    }
}

/// `[replication]` lines: the test defaults, except those `overrides` sets.
fn with_defaults(overrides: &str) -> String {
    let defaults = [
        ("backoff_initial_ms", "50"),
        ("backoff_max_ms", "500"),
        ("ack_timeout_ms", "2000"),
        ("batch_max_entries", "64"),
    ];
    let mut lines: Vec<String> = overrides.lines().map(String::from).collect();
    for (k, v) in defaults {
        if !overrides.lines().any(|l| l.trim_start().starts_with(k)) {
            lines.push(format!("{k} = {v}"));
        }
    }
    lines.join("\n")
}

/// The ward agent's status.
pub async fn status(c: &mut WardApiClient<Channel>) -> anyhow::Result<pb::WardStatus> {
    Ok(c.status(pb::StatusRequest {}).await?.into_inner())
}

/// Waits until the ward's backlog is empty.
pub async fn drained(c: &mut WardApiClient<Channel>) {
    wait::until(DEADLINE, "the backlog to drain", || {
        let mut c = c.clone();
        async move { Ok(status(&mut c).await?.backlog == 0) }
    })
    .await
    .unwrap();
}

/// Waits until a comparison of the ward with the city's copy that ended
/// after `after_ms` (before the loss it is to repair) found them in sync.
pub async fn in_sync_since(c: &mut WardApiClient<Channel>, after_ms: i64) {
    wait::until(DEADLINE, "the ward and the city's copy to be found in sync", || {
        let mut c = c.clone();
        async move {
            let s = status(&mut c).await?;
            Ok(s.verify_in_sync && s.verified_at_ms > after_ms && !s.verifying)
        }
    })
    .await
    .unwrap();
}

/// Every change the city logged, in cursor order.
pub async fn city_log(city: &mut CityQueryClient<Channel>) -> Vec<pb::LoggedChange> {
    ledger::read_log(city).await.unwrap()
}

/// Asserts the city's log holds sequences 1..=last of `ward` exactly once each, in order.
pub fn assert_each_seq_once(log: &[pb::LoggedChange], ward: &str, last: u64) {
    let seqs: Vec<u64> =
        log.iter().filter(|l| l.ward == ward).map(|l| l.change.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "ward {ward}: each change applied once, in order");
}

/// Asserts that the ward and the city hold the same records of every kind for the ward.
pub async fn assert_same_records(
    ward: &mut WardApiClient<Channel>,
    city: &mut CityQueryClient<Channel>,
    code: &str,
) -> usize {
    use wardsync::cli::client::{all_city_records, all_ward_records};
    let mut total = 0;
    for kind in wardsync::model::Kind::ALL {
        let w = all_ward_records(ward, kind).await.unwrap();
        let c = all_city_records(city, kind, code).await.unwrap();
        assert_eq!(w.len(), c.len(), "ward {code} {kind}: record counts");
        assert_eq!(w, c, "ward {code} {kind}: records differ");
        total += w.len();
    }
    total
}

/// The text of `/metrics` at `addr` (the Prometheus text format a plain
/// client gets), or empty if it does not answer.
pub async fn metrics_text(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut conn) = tokio::net::TcpStream::connect(addr).await else { return String::new() };
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    text.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

/// Scrapes `/metrics` at `addr`: `name{labels}` → value.
pub async fn scrape(addr: std::net::SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in metrics_text(addr).await.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        if let Some((name, value)) = line.rsplit_once(' ') {
            out.insert(name.to_string(), value.parse().unwrap_or(f64::NAN));
        }
    }
    out
}

/// Every ward's replication state at the city.
pub async fn city_wards(city: &mut CityQueryClient<Channel>) -> anyhow::Result<Vec<pb::WardState>> {
    Ok(city.wards(pb::WardsRequest {}).await?.into_inner().wards)
}

/// Record `i` (< 4000) of a fixed generated workload of ward `code`.
pub fn rec(code: &WardCode, i: u32) -> wardsync::model::Record {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Cache = Mutex<HashMap<WardCode, Arc<Vec<wardsync::model::Record>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let all = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(code.clone())
        .or_insert_with(|| Arc::new(wardsync::generate::sample(code, 4000, 1)))
        .clone();
    all[i as usize].clone()
}

/// The Hello a ward agent would send, claiming ward `claim`.
pub fn hello(claim: &str) -> pb::WardMessage {
    pb::WardMessage {
        msg: Some(pb::ward_message::Msg::Hello(pb::Hello {
            ward_code: claim.into(),
            node_id: "test".into(),
            protocol_version: wardsync::proto::PROTOCOL_VERSION,
            schema_version: wardsync::proto::SCHEMA_VERSION,
            ..Default::default()
        })),
    }
}

/// `changes` of ward `code` as its agent sends them: chained after `head`
/// (the city's `Welcome` link, or `GENESIS` for a new ward) and signed with
/// the key of its certificate in `certs`.
#[allow(dead_code)]
pub fn signed_batch(
    certs: &Path,
    code: &str,
    head: (u64, wardsync::model::signed::Hash),
    changes: &[wardsync::model::Change],
) -> pb::WardMessage {
    let files = wardsync::auth::TlsFiles::in_dir(certs, &format!("ward-{code}"));
    let signer = std::sync::Arc::new(wardsync::auth::Signer::load(&files).unwrap());
    let mut chain = wardsync::ward::chain::Chainer::new(
        wardsync::model::WardCode::parse(code).unwrap(),
        Some(signer),
        head,
    );
    pb::WardMessage { msg: Some(pb::ward_message::Msg::Batch(chain.batch(changes))) }
}

/// Copies directory `from` into `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Replaces `dir` with a copy of `backup`.
pub fn restore_dir(backup: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    copy_dir(backup, dir);
}

/// Puts records `range` of ward `code` (see [`rec`]) through its agent.
pub async fn put_range(c: &mut WardApiClient<Channel>, code: &str, range: std::ops::Range<u32>) {
    let code = WardCode::parse(code).unwrap();
    for i in range {
        c.put(pb::PutRequest { record: Some((&rec(&code, i)).into()) }).await.unwrap();
    }
}

/// Asserts the city's copy of records `range` of ward `code` is what was written.
pub async fn at_city(city: &mut CityQueryClient<Channel>, code: &str, range: std::ops::Range<u32>) {
    let code = WardCode::parse(code).unwrap();
    for i in range {
        let r = rec(&code, i);
        let got = city
            .get(pb::CityGetRequest { key: Some((&r.key().unwrap()).into()), ..Default::default() })
            .await
            .unwrap();
        let got = wardsync::proto::record_from_pb(got.into_inner().record).unwrap();
        assert_eq!(got, r, "record {i} of ward {code} at the city");
    }
}
