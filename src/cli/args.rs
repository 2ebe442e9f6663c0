//! Command-line arguments (clap). Flags override the TOML config; every flag
//! of a node can also be set with a `WARDSYNC_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::TlsFiles;
use crate::config::{CityConfig, ReplicationConfig, WardConfig};
use crate::model::Kind;

/// wardsync: every ward's population, business and land records, replicated
/// into one city database.
#[derive(Debug, Parser)]
#[command(name = "wardsync", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG, e.g. RUST_LOG=wardsync=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "WARDSYNC_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the city server: replication from every ward, and the query API.
    City(CityArgs),
    /// Run a ward agent: the local API, durable outbox, replication to the city.
    Ward(WardArgs),
    /// Create a development CA and certificates for the city, wards and office.
    Certs(CertsArgs),
    /// Write records through a ward agent (JSON, one record per line).
    Put(PutArgs),
    /// Delete a record through its owning ward's agent.
    Delete(AgentKeyArgs),
    /// Read one record from a ward agent or from the city (now, or --as-of a past time).
    Get(GetArgs),
    /// Every change the city applied to one record: who, when, which fields, before and after.
    History(HistoryArgs),
    /// List records of one kind from a ward agent or from the city.
    List(ListArgs),
    /// Show a ward agent's replication state, or every ward's state at the city.
    Status(StatusArgs),
    /// Compare a ward agent's records with the city's copy now, and repair what differs.
    Verify(VerifyArgs),
    /// Copy a running ward agent's or city's embedded store, consistently, for a backup.
    Backup(BackupArgs),
    /// Find a record anywhere in the city through a ward agent (asks the city).
    Lookup(AgentKeyArgs),
    /// Register a marriage, divorce or death as this ward's registrar.
    Register(super::civil::RegisterArgs),
    /// Confirm a person's marital status city-wide (events, registering wards, disputes).
    ConfirmMaritalStatus(super::civil::ConfirmArgs),
    /// The data office's list of civil-status inconsistencies, by ward.
    CivilReport(super::civil::CivilReportArgs),
    /// Generate realistic records for a ward or a whole city (seeded).
    Gen(GenArgs),
    /// Import a CSV or JSON Lines file of records into a ward agent.
    Import(ImportArgs),
    /// Export records from the city as CSV or JSON Lines.
    Export(ExportArgs),
    /// Search the city: by name (accents optional), household or owner.
    Query(QueryArgs),
    /// List, retry or discard the changes the city quarantined.
    Quarantine(QuarantineArgs),
    /// Review and resolve conflicting concurrent writes at the city.
    Conflicts(ConflictsArgs),
    /// Correct a record at the city (data office); the correction reaches the owning ward.
    Edit(EditArgs),
    /// The audit trail: accepted writes with who submitted them, and refused calls.
    Audit(AuditArgs),
    /// Start a city and three wards on loopback, cut one off, heal, and check convergence.
    Demo(DemoArgs),
    /// Measure throughput, latency, lag and memory on this machine (see BENCHMARKS.md).
    Bench(BenchArgs),
}

/// Flags of `wardsync city`.
#[derive(Debug, Args)]
pub struct CityArgs {
    /// Its configuration and database.
    #[command(flatten)]
    pub store: CityStoreArgs,
    /// Address to listen on, e.g. 0.0.0.0:7443.
    #[arg(long, env = "WARDSYNC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory with ca.pem, city.pem and city.key (as written by `wardsync certs`).
    #[arg(long, env = "WARDSYNC_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Accept plaintext connections (local experiments only).
    #[arg(long)]
    pub insecure_dev: bool,
    /// The city's 2-digit province code, e.g. 01 for Hanoi.
    #[arg(long, env = "WARDSYNC_PROVINCE")]
    pub province: Option<String>,
    /// Serve Prometheus metrics on this address (http://ADDR/metrics).
    #[arg(long, env = "WARDSYNC_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl CityArgs {
    /// Applies the flags over `cfg`.
    pub fn apply(&self, cfg: &mut CityConfig) {
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(dir) = &self.tls_dir {
            cfg.tls = Some(TlsFiles::in_dir(dir, "city"));
        }
        if let Some(p) = &self.province {
            cfg.province = Some(p.clone());
        }
        if let Some(m) = self.metrics_listen {
            cfg.metrics_listen = Some(m);
        }
        if self.insecure_dev {
            cfg.insecure_dev = true;
            cfg.tls = None;
        }
    }
}

/// Where the city's configuration and database are: what `city` and
/// `audit verify` both read.
#[derive(Debug, Args)]
pub struct CityStoreArgs {
    /// TOML configuration file (see README.md, "Configuration").
    #[arg(long, short, env = "WARDSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database directory (the embedded store).
    #[arg(long, env = "WARDSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep the city database on PostgreSQL: postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(long, env = "WARDSYNC_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Speak TLS to PostgreSQL, trusting only this CA certificate (PEM).
    #[arg(long, env = "WARDSYNC_DATABASE_CA")]
    pub database_ca: Option<PathBuf>,
}

impl CityStoreArgs {
    /// The configuration file (or the defaults), with these flags over it.
    pub fn load(&self) -> anyhow::Result<CityConfig> {
        let mut cfg: CityConfig = match &self.config {
            Some(path) => crate::config::load(path)?,
            None => toml::from_str("")?,
        };
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(u) = &self.database_url {
            cfg.database.url = Some(u.clone());
        }
        if let Some(ca) = &self.database_ca {
            cfg.database.ca = Some(ca.clone());
        }
        Ok(cfg)
    }
}

/// Flags of `wardsync ward`.
#[derive(Debug, Args)]
pub struct WardArgs {
    /// TOML configuration file (see README.md, "Configuration").
    #[arg(long, short, env = "WARDSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// This ward's 5-digit commune code.
    #[arg(long, env = "WARDSYNC_CODE")]
    pub code: Option<String>,
    /// Database directory.
    #[arg(long, env = "WARDSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the local API, e.g. 127.0.0.1:7070.
    #[arg(long, env = "WARDSYNC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Let --listen be beyond loopback (the local API has no authentication
    /// of its own: only where a firewall admits just the ward's software).
    #[arg(long, env = "WARDSYNC_API_BEYOND_LOOPBACK")]
    pub api_beyond_loopback: bool,
    /// Serve the local API on this Unix socket (mode 660) instead.
    #[arg(long, env = "WARDSYNC_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (http://ADDR/metrics).
    #[arg(long, env = "WARDSYNC_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// City server URL, e.g. https://city.example:7443.
    #[arg(long, env = "WARDSYNC_CITY_URL")]
    pub city_url: Option<String>,
    /// Directory with ca.pem, ward-CODE.pem and ward-CODE.key.
    #[arg(long, env = "WARDSYNC_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Talk to the city in plaintext (local experiments only).
    #[arg(long)]
    pub insecure_dev: bool,
    /// On a new, empty store (a replaced disk): wait for the city, however
    /// long, and restore this ward's records from it before accepting writes.
    #[arg(long)]
    pub restore_from_city: bool,
}

impl WardArgs {
    /// A configuration from flags alone (no `--config`).
    pub fn bare_config(&self) -> anyhow::Result<WardConfig> {
        let (Some(code), Some(city_url)) = (&self.code, &self.city_url) else {
            anyhow::bail!("give --config FILE, or at least --code and --city-url");
        };
        Ok(WardConfig {
            code: code.clone(),
            data_dir: PathBuf::from("/var/lib/wardsync/ward"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            api_beyond_loopback: false,
            socket: None,
            metrics_listen: None,
            city_url: city_url.clone(),
            city_name: "city".into(),
            tls: None,
            insecure_dev: false,
            cache_mb: crate::config::WARD_CACHE_MB,
            replication: ReplicationConfig::default(),
        })
    }

    /// Applies the flags over `cfg`.
    pub fn apply(&self, cfg: &mut WardConfig) {
        if let Some(c) = &self.code {
            cfg.code = c.clone();
        }
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if self.api_beyond_loopback {
            cfg.api_beyond_loopback = true;
        }
        if let Some(s) = &self.socket {
            cfg.socket = Some(s.clone());
        }
        if let Some(m) = self.metrics_listen {
            cfg.metrics_listen = Some(m);
        }
        if let Some(u) = &self.city_url {
            cfg.city_url = u.clone();
        }
        if let Some(dir) = &self.tls_dir {
            cfg.tls = Some(TlsFiles::in_dir(dir, &format!("ward-{}", cfg.code)));
        }
        if self.insecure_dev {
            cfg.insecure_dev = true;
            cfg.tls = None;
        }
        if self.restore_from_city {
            cfg.replication.restore_wait_ms = u64::MAX;
        }
    }
}

/// Flags of `wardsync certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Output directory; an existing CA there (ca.pem, ca.key) is reused.
    #[arg(long)]
    pub out: PathBuf,
    /// Ward commune codes to issue certificates for, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub wards: Vec<String>,
    /// Other client certificates to issue (data office, ops), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "office")]
    pub clients: Vec<String>,
}

/// The client certificate a command shows the city, and the city's name.
#[derive(Debug, Args, Clone)]
pub struct ClientTls {
    /// Directory with ca.pem and the client certificate NAME.pem / NAME.key.
    #[arg(long, env = "WARDSYNC_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Name of the client certificate in --tls-dir.
    #[arg(long, default_value = "office")]
    pub tls_name: String,
    /// Name in the city's certificate.
    #[arg(long, default_value = "city")]
    pub city_name: String,
}

/// The city, for a command that only the city answers.
#[derive(Debug, Args, Clone)]
pub struct CityTarget {
    /// The city: https://HOST:PORT (its --listen).
    #[arg(long, env = "WARDSYNC_CITY")]
    pub city: String,
    /// How to show the city who asks.
    #[command(flatten)]
    pub tls: ClientTls,
}

/// Which node a client command talks to: a ward agent, or the city.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// The ward agent's local API: http://HOST:PORT, or unix:/path/to/socket.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070")]
    pub ward_api: String,
    /// Ask the city at this URL (https://HOST:PORT) instead of a ward agent.
    #[arg(long, env = "WARDSYNC_CITY")]
    pub city: Option<String>,
    /// How to show the city who asks.
    #[command(flatten)]
    pub tls: ClientTls,
}

/// Flags of `wardsync status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (one object per ward) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh every N seconds until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
    /// A ward further behind than this many seconds makes the exit status 2
    /// (a ward cut off or never seen: 3).
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    pub max_lag: f64,
    /// Which node to ask.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `wardsync verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The ward agent's local API: http://HOST:PORT, or unix:/path/to/socket.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070")]
    pub ward_api: String,
    /// The ward expected behind --ward-api (refused if the agent serves another).
    #[arg(long)]
    pub ward: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `wardsync backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A ward agent: the new directory on its server to copy into
    /// (absolute). The city (--city): a name under its backup_dir
    /// (default: the time).
    #[arg(long)]
    pub to: Option<String>,
    /// Which node to copy (the city needs a certificate with the ops role).
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `wardsync put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The ward agent's local API: http://HOST:PORT, or unix:/path/to/socket.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070")]
    pub ward_api: String,
    /// The records: a file of JSON records (one per line, or
    /// pretty-printed), `-` for standard input, or one record as JSON text,
    /// e.g. '{"ward":"00082","body":{"citizen":{...}}}'.
    #[arg(long, value_name = "FILE|-|JSON")]
    pub record: String,
    /// Register citizens moving into this ward from another (the agent asks the city for their records).
    #[arg(long)]
    pub transfer: bool,
}

/// Flags naming one record.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// citizen, business or land.
    #[arg(long)]
    pub kind: Kind,
    /// The key: personal id, enterprise code, or COMMUNE:SHEET:PARCEL.
    #[arg(long)]
    pub key: String,
    /// Where to send the request.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `wardsync get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The record, and where to ask.
    #[command(flatten)]
    pub key: KeyArgs,
    /// At the city: the record as it stood at this time (YYYY-MM-DD for
    /// midnight UTC, or an RFC 3339 time).
    #[arg(long)]
    pub as_of: Option<String>,
}

/// Flags of `wardsync list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// citizen, business or land.
    #[arg(long)]
    pub kind: Kind,
    /// At the city: only records owned by this ward.
    #[arg(long)]
    pub ward: Option<String>,
    /// Start after this key (the last key of the previous page).
    #[arg(long, default_value = "")]
    pub after: String,
    /// Most records to print (0: all).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Where to send the request.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `wardsync demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Records each ward writes before the cut (as many again during it).
    #[arg(long, default_value_t = 1000)]
    pub records: usize,
    /// Keep the demo's data here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds to wait for convergence after the link is restored.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Flags of `wardsync bench`. The defaults finish in a few minutes on 2 cores.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Phases to run, comma-separated: engine, write, load, stream, outage, update, recovery, steady, get.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "engine,write,load,stream,outage,update,recovery,steady,get",
        value_parser = clap::builder::PossibleValuesParser::new(
            ["engine", "write", "load", "stream", "outage", "update", "recovery", "steady", "get"]
        )
    )]
    pub phases: Vec<String>,
    /// Records the engine phase inserts in each of its batched measurements.
    #[arg(long, default_value_t = 200_000)]
    pub engine_records: usize,
    /// Records the ward phases write (and update) each time.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    /// Writes by the single client of the write phase.
    #[arg(long, default_value_t = 5_000)]
    pub single: usize,
    /// Concurrent clients of the ward's local API, each on its own connection.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Synthetic wards of the steady phase.
    #[arg(long, default_value_t = 170)]
    pub wards: usize,
    /// Changes per second each of them writes.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds the steady phase is measured (after 2 s of warm-up).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Records loaded into the city for the get phase.
    #[arg(long, default_value_t = 200_000)]
    pub get_records: usize,
    /// Synthetic wards those records come from.
    #[arg(long, default_value_t = 10)]
    pub get_wards: usize,
    /// Gets by key measured, one at a time.
    #[arg(long, default_value_t = 20_000)]
    pub gets: usize,
    /// Page cache of the city's database, MiB (its `cache_mb`).
    #[arg(long, default_value_t = crate::config::CITY_CACHE_MB)]
    pub city_cache_mb: u64,
    /// Page cache of the ward agent's database, MiB (its `cache_mb`).
    #[arg(long, default_value_t = crate::config::WARD_CACHE_MB)]
    pub ward_cache_mb: u64,
    /// Seed of the generated records.
    #[arg(long, default_value_t = 2025)]
    pub seed: u64,
    /// Keep the data here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Instead of measuring, write the ward phases' records as CSV rows for
    /// the PostgreSQL peer (scripts/bench.sh) into this directory.
    #[arg(long)]
    pub export_rows: Option<PathBuf>,
    /// Run the city with its database on this (empty) PostgreSQL database.
    #[arg(long, hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Flags naming one record, and the ward agent asked (`delete`: the
/// record's owner; `lookup`: any).
#[derive(Debug, Args)]
pub struct AgentKeyArgs {
    /// citizen, business or land.
    #[arg(long)]
    pub kind: Kind,
    /// The key: personal id, enterprise code, or COMMUNE:SHEET:PARCEL.
    #[arg(long)]
    pub key: String,
    /// The ward agent's local API: http://HOST:PORT, or unix:/path/to/socket.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070")]
    pub ward_api: String,
}

pub use super::args_data::*;
