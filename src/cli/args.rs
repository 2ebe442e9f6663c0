//! Command-line arguments (clap). Flags override the TOML config; every flag
//! of a node can also be set with a `WARDSYNC_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::formats::Format;
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
    /// Delete a record through a ward agent.
    Delete(KeyArgs),
    /// Read one record from a ward agent or from the city.
    Get(KeyArgs),
    /// List records of one kind from a ward agent or from the city.
    List(ListArgs),
    /// Show a ward agent's replication state, or every ward's state at the city.
    Status(TargetArgs),
    /// Find a record anywhere in the city through a ward agent (asks the city).
    Lookup(LookupArgs),
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
    /// Start a city and three wards on loopback, cut one off, heal, and check convergence.
    Demo(DemoArgs),
}

/// Flags of `wardsync city`.
#[derive(Debug, Args)]
pub struct CityArgs {
    /// TOML configuration file (see README.md, "Configuration").
    #[arg(long, short, env = "WARDSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database directory.
    #[arg(long, env = "WARDSYNC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
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
}

impl CityArgs {
    /// Applies the flags over `cfg`.
    pub fn apply(&self, cfg: &mut CityConfig) {
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(dir) = &self.tls_dir {
            cfg.tls = Some(TlsFiles::in_dir(dir, "city"));
        }
        if let Some(p) = &self.province {
            cfg.province = Some(p.clone());
        }
        if self.insecure_dev {
            cfg.insecure_dev = true;
            cfg.tls = None;
        }
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
    /// City server URL, e.g. https://city.example:7443.
    #[arg(long, env = "WARDSYNC_CITY_URL")]
    pub city_url: Option<String>,
    /// Directory with ca.pem, ward-CODE.pem and ward-CODE.key.
    #[arg(long, env = "WARDSYNC_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Talk to the city in plaintext (local experiments only).
    #[arg(long)]
    pub insecure_dev: bool,
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
            city_url: city_url.clone(),
            city_name: "city".into(),
            tls: None,
            insecure_dev: false,
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

/// Which node a client command talks to.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// The ward agent's local API.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070")]
    pub ward_api: String,
    /// Ask the city at this URL (https://HOST:PORT) instead of a ward agent.
    #[arg(long, env = "WARDSYNC_CITY")]
    pub city: Option<String>,
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

/// Flags of `wardsync put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The ward agent's local API.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070")]
    pub ward_api: String,
    /// One record as JSON, e.g. '{"ward":"00082","body":{"citizen":{...}}}'.
    #[arg(long, conflicts_with = "file")]
    pub json: Option<String>,
    /// A file of records, one JSON record per line ("-" for standard input).
    #[arg(long)]
    pub file: Option<PathBuf>,
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

/// Flags of `wardsync lookup`.
#[derive(Debug, Args)]
pub struct LookupArgs {
    /// citizen, business or land.
    #[arg(long)]
    pub kind: Kind,
    /// The key: personal id, enterprise code, or COMMUNE:SHEET:PARCEL.
    #[arg(long)]
    pub key: String,
    /// The ward agent's local API.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070")]
    pub ward_api: String,
}

/// Flags of `wardsync gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Generate one ward (5-digit commune code).
    #[arg(long, conflicts_with = "city", required_unless_present = "city")]
    pub ward: Option<String>,
    /// Generate every ward of a province (2-digit code, e.g. 01 for Hanoi),
    /// with long-tailed populations of 6,500 to 215,000 times --scale.
    #[arg(long)]
    pub city: Option<String>,
    /// With --city: fraction of the real population to generate.
    #[arg(long, default_value_t = 0.01)]
    pub scale: f64,
    /// With --ward: citizens to generate (whole households, so a few more).
    #[arg(long, default_value_t = 0)]
    pub citizens: u64,
    /// With --ward: businesses to generate.
    #[arg(long, default_value_t = 0)]
    pub businesses: u64,
    /// With --ward: land parcels to generate.
    #[arg(long, default_value_t = 0)]
    pub parcels: u64,
    /// Seed: the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Fraction of records (0 to 1) to corrupt so that they fail validation.
    #[arg(long, default_value_t = 0.0)]
    pub invalid: f64,
    /// Write one file per ward and kind (WARD-KIND.EXT) into this directory
    /// instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Flags of `wardsync import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The kind of the records in the file.
    #[arg(long)]
    pub kind: Kind,
    /// The file: CSV (by its .csv extension) or JSON Lines.
    pub file: PathBuf,
    /// Override the format the extension suggests.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The ward agent's local API.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070")]
    pub ward_api: String,
    /// Where rejected lines go, with line numbers and reasons [default: FILE.rejects].
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Ignore the progress saved by an interrupted run and start from the first line.
    #[arg(long)]
    pub restart: bool,
}

/// Flags of `wardsync export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// citizen, business or land.
    #[arg(long)]
    pub kind: Kind,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Only records owned by this ward.
    #[arg(long)]
    pub ward: Option<String>,
    /// Only records changed after this change-log cursor (printed by the previous export).
    #[arg(long)]
    pub since: Option<u64>,
    /// Output file [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The city to export from.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `wardsync query`: one of --name, --household, --owner.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["name", "household", "owner"])))]
pub struct QueryArgs {
    /// Records whose name starts with this text, with or without diacritics,
    /// e.g. "nguyen van an".
    #[arg(long)]
    pub name: Option<String>,
    /// The citizens of this household.
    #[arg(long)]
    pub household: Option<String>,
    /// Businesses and land parcels owned by this personal id or enterprise code.
    #[arg(long)]
    pub owner: Option<String>,
    /// With --name: only this kind.
    #[arg(long)]
    pub kind: Option<Kind>,
    /// With --name: most results.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// The city to ask (--city and --tls-dir).
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Flags of `wardsync quarantine`.
#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: QuarantineAction,
}

/// Actions of `wardsync quarantine`.
#[derive(Debug, Subcommand)]
pub enum QuarantineAction {
    /// List quarantined changes with their reasons.
    List {
        /// Only this ward's.
        #[arg(long)]
        ward: Option<String>,
        /// The city (--city and --tls-dir).
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Apply a quarantined change if it is now acceptable.
    Retry {
        /// The ward that sent it.
        #[arg(long)]
        ward: String,
        /// Its sequence number.
        #[arg(long)]
        seq: u64,
        /// The city (--city and --tls-dir).
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Set a quarantined change aside for good, saying why.
    Discard {
        /// The ward that sent it.
        #[arg(long)]
        ward: String,
        /// Its sequence number.
        #[arg(long)]
        seq: u64,
        /// Why it is discarded (kept with it).
        #[arg(long)]
        reason: String,
        /// The city (--city and --tls-dir).
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// Flags of `wardsync conflicts`.
#[derive(Debug, Args)]
pub struct ConflictsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConflictsAction,
}

/// Actions of `wardsync conflicts`.
#[derive(Debug, Subcommand)]
pub enum ConflictsAction {
    /// List open conflicts.
    List {
        /// Only records this ward owns.
        #[arg(long)]
        ward: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<Kind>,
        /// Only conflicts open at least this many seconds.
        #[arg(long, default_value_t = 0)]
        older_than: u64,
        /// The city (--city and --tls-dir).
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show a record and every contender of its conflicts, numbered.
    Show {
        /// citizen, business or land.
        #[arg(long)]
        kind: Kind,
        /// The record's key.
        #[arg(long)]
        key: String,
        /// The city (--city and --tls-dir).
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Settle a conflict: keep contender N, or give a value.
    Resolve {
        /// citizen, business or land.
        #[arg(long)]
        kind: Kind,
        /// The record's key.
        #[arg(long)]
        key: String,
        /// The field in conflict.
        #[arg(long)]
        field: String,
        /// The contender to keep, as numbered by `conflicts show`.
        #[arg(long, conflicts_with = "value", required_unless_present = "value")]
        choose: Option<u32>,
        /// A new value, as JSON (text in quotes: '"12 Hàng Bông"').
        #[arg(long)]
        value: Option<String>,
        /// The city (--city and --tls-dir).
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// Flags of `wardsync edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The corrected record as JSON.
    #[arg(long)]
    pub json: String,
    /// The city (--city and --tls-dir).
    #[command(flatten)]
    pub target: TargetArgs,
}
