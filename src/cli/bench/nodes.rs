//! The nodes a benchmark measures: `wardsync city` and `wardsync ward`
//! processes (this same binary) on loopback, with their own certificates
//! and on-disk databases, and what the kernel says of their memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use tonic::transport::Channel;

use crate::auth::DevCa;
use crate::cli::client::{city_client, ward_client};
use crate::cli::wait;
use crate::model::WardCode;
use crate::proto::pb::{self, city_query_client::CityQueryClient};

/// How long a node may take to start answering.
const START: Duration = Duration::from_secs(30);

/// A free loopback address.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A running node; killed when dropped.
pub struct Node {
    child: Child,
    /// Its data directory.
    pub data: PathBuf,
}

impl Node {
    fn spawn(config: &Path, role: &str, data: PathBuf, log: &Path) -> anyhow::Result<Node> {
        let log = std::fs::File::create(log)?;
        let child = Command::new(std::env::current_exe()?)
            .args([role, "--config", &config.display().to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start a {role}"))?;
        Ok(Node { child, data })
    }

    /// Stops it with SIGTERM (it flushes and exits) and waits.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "cannot signal the node");
        self.child.wait()?;
        Ok(())
    }

    /// Peak and current resident memory, in bytes, from /proc.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        Memory { peak: field("VmHWM:"), now: field("VmRSS:") }
    }

    /// CPU time it has used so far (user and system, every thread).
    pub fn cpu(&self) -> Duration {
        cpu_of(&self.child.id().to_string())
    }

    /// Bytes its data directory takes on disk.
    pub fn disk(&self) -> u64 {
        dir_size(&self.data)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time used by process `pid` (or `self`), from /proc/PID/stat.
pub fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th, in clock ticks of 1/100 s (Linux's USER_HZ).
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Resident memory of a process.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// The most it has held (VmHWM).
    pub peak: u64,
    /// What it holds now (VmRSS).
    pub now: u64,
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Where a benchmark keeps its certificates, configurations, data and logs.
pub struct Lab {
    /// The directory.
    pub dir: PathBuf,
    certs: PathBuf,
    /// The city's address (fixed, so that it can be restarted).
    pub city_addr: SocketAddr,
    /// Page cache of the city's and the agents' databases, MiB.
    cache_mb: (u64, u64),
    /// The city's database on PostgreSQL, if not embedded.
    pub database_url: Option<String>,
}

impl Lab {
    /// Certificates for the city, the office and `wards`, in `dir`; the
    /// nodes' page caches of `cache_mb` (city, agent) MiB.
    pub fn new(
        dir: &Path,
        wards: &[WardCode],
        cache_mb: (u64, u64),
        database_url: Option<String>,
    ) -> anyhow::Result<Lab> {
        let certs = dir.join("certs");
        let ca = DevCa::open_or_create(&certs)?;
        ca.issue_city()?;
        ca.issue("office", &["office"])?;
        ca.issue("ops", &["ops"])?;
        ca.issue("backup", &["backup"])?;
        for w in wards {
            ca.issue_ward(w)?;
        }
        Ok(Lab { dir: dir.to_path_buf(), certs, city_addr: free_addr()?, cache_mb, database_url })
    }

    /// The certificates directory.
    pub fn certs(&self) -> &Path {
        &self.certs
    }

    /// Starts the city (on its data directory, kept across restarts).
    pub async fn city(&self) -> anyhow::Result<Node> {
        let config = self.dir.join("city.toml");
        let data = self.dir.join("city");
        let tls = self.tls("city");
        let database =
            self.database_url.as_ref().map_or(String::new(), |u| format!("[database]\nurl = {u:?}\n"));
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\nlisten = \"{}\"\ncache_mb = {}\n{tls}\n[limits]\nrequests_per_second = 1000000\nrequest_burst = 1000000\n{database}",
                data.display(),
                self.city_addr,
                self.cache_mb.0
            ),
        )?;
        let node = Node::spawn(&config, "city", data, &self.dir.join("city.log"))?;
        let url = format!("https://{}", self.city_addr);
        wait::until(START, "the city to start", || async {
            city_client(&url, Some(&self.certs), "office", "city").await?.wards(pb::WardsRequest {}).await?;
            Ok(true)
        })
        .await?;
        Ok(node)
    }

    /// A query client of the city, as the office.
    pub async fn office(&self) -> anyhow::Result<CityQueryClient<Channel>> {
        city_client(&format!("https://{}", self.city_addr), Some(&self.certs), "office", "city").await
    }

    /// Starts the agent of `ward` (on its data directory, kept across
    /// restarts); returns it and the URL of its local API.
    pub async fn ward(&self, ward: &WardCode) -> anyhow::Result<(Node, String)> {
        let config = self.dir.join(format!("ward-{ward}.toml"));
        let data = self.dir.join(format!("ward-{ward}"));
        let listen = free_addr()?;
        let tls = self.tls(&format!("ward-{ward}"));
        std::fs::write(
            &config,
            format!(
                "code = \"{ward}\"\ndata_dir = \"{}\"\nlisten = \"{listen}\"\ncity_url = \"https://{}\"\ncache_mb = {}\n{tls}\n[replication]\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n",
                data.display(),
                self.city_addr,
                self.cache_mb.1
            ),
        )?;
        let node = Node::spawn(&config, "ward", data, &self.dir.join(format!("ward-{ward}.log")))?;
        let url = format!("http://{listen}");
        wait::until(START, "the ward agent to start", || async {
            ward_client(&url).await?.status(pb::StatusRequest {}).await?;
            Ok(true)
        })
        .await?;
        Ok((node, url))
    }

    fn tls(&self, name: &str) -> String {
        let c = &self.certs;
        format!(
            "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}",
            c.join("ca.pem").display(),
            c.join(format!("{name}.pem")).display(),
            c.join(format!("{name}.key")).display()
        )
    }
}

/// The size of the city's PostgreSQL database, bytes, and the records it holds.
pub async fn database_size(url: &str) -> anyhow::Result<(u64, u64)> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT pg_database_size(current_database()), (SELECT count(*) FROM record_states WHERE shown IS NOT NULL)",
            &[],
        )
        .await?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}
