//! Node configuration: one TOML file per node, every field documented.
//! Command-line flags and `WARDSYNC_*` environment variables override it
//! (see `wardsync ward --help` and `wardsync city --help`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::auth::{Access, Role, TlsFiles};
use crate::model::{Policies, Policy};

/// Configuration of a ward agent (`wardsync ward`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WardConfig {
    /// This ward's 5-digit commune code, e.g. "00082". Must match its certificate.
    pub code: String,
    /// Directory of the ward's database. Created if missing.
    #[serde(default = "default_ward_dir")]
    pub data_dir: PathBuf,
    /// Address of the local API for the ward's own software. Loopback by default:
    /// the local API has no authentication of its own.
    #[serde(default = "default_ward_listen")]
    pub listen: SocketAddr,
    /// Let `listen` be an address beyond loopback. The local API has no
    /// authentication of its own and answers for the ward city-wide (its
    /// lookups reach any citizen through the ward's identity): set this only
    /// where a firewall admits nothing but the ward's own software.
    #[serde(default)]
    pub api_beyond_loopback: bool,
    /// Serve the local API on this Unix socket (mode 660) instead of `listen`.
    /// The path must not exist, or be a socket (left by an earlier run).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint; none if unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// URL of the city server, `https://HOST:PORT` (`http://` only with `insecure_dev`).
    pub city_url: String,
    /// Name the city's certificate must carry (its DNS SAN).
    #[serde(default = "default_city_name")]
    pub city_name: String,
    /// Certificates for mutual TLS with the city. Required unless `insecure_dev`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Talk to the city in plaintext. For local experiments only; logs a warning.
    #[serde(default)]
    pub insecure_dev: bool,
    /// Memory for the database's page cache, in MiB (more keeps more of a
    /// large ward's records in memory; the agent's idle footprint stays small).
    #[serde(default = "default_ward_cache_mb")]
    pub cache_mb: u64,
    /// Replication tuning.
    #[serde(default)]
    pub replication: ReplicationConfig,
}

/// How the ward streams its outbox to the city.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Most changes in one batch.
    pub batch_max_entries: usize,
    /// Most bytes (encoded changes) in one batch; a single larger change is sent alone.
    pub batch_max_bytes: usize,
    /// Batches sent and not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// First reconnect delay, in milliseconds; doubles with jitter after each failure.
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay, in milliseconds.
    pub backoff_max_ms: u64,
    /// A connection whose batches get no ack for this long is dropped and reopened.
    pub ack_timeout_ms: u64,
    /// Most entries the outbox may hold; beyond it writes fail with RESOURCE_EXHAUSTED.
    pub max_outbox: u64,
    /// How often the ward tells the city its backlog, in milliseconds.
    pub heartbeat_ms: u64,
    /// Cut off from the city this long (ms), the ward reports its
    /// replication NOT_SERVING (gRPC health `wardsync.v1.Replication`, and
    /// HTTP `/health` on the metrics listener).
    pub unhealthy_after_ms: u64,
    /// How often the ward compares its records with the city's copy and
    /// repairs what differs, in milliseconds (0: only on demand, and when
    /// the city is found to hold less than it acknowledged).
    pub verify_every_ms: u64,
    /// With a new, empty store, look for this ward's records at the city
    /// for this long (ms) before accepting writes; a city out of reach
    /// that long lets a new ward start empty (`--restore-from-city` waits
    /// for the city however long it takes).
    pub restore_wait_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            batch_max_entries: 512,
            batch_max_bytes: 1 << 20,
            max_in_flight: 4,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            ack_timeout_ms: 15_000,
            max_outbox: 20_000_000,
            heartbeat_ms: 5_000,
            unhealthy_after_ms: 120_000,
            verify_every_ms: 3_600_000,
            restore_wait_ms: 10_000,
        }
    }
}

/// Configuration of the city server (`wardsync city`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityConfig {
    /// Directory of the city database (the embedded store). Created if missing.
    #[serde(default = "default_city_dir")]
    pub data_dir: PathBuf,
    /// The city database on PostgreSQL instead (`[database] url`).
    #[serde(default)]
    pub database: Database,
    /// Where `wardsync backup` puts copies of the embedded store (unset:
    /// next to `data_dir`, as `DATA_DIR.backups`).
    #[serde(default)]
    pub backup_dir: Option<PathBuf>,
    /// Address the gRPC server (replication and queries) listens on.
    #[serde(default = "default_city_listen")]
    pub listen: SocketAddr,
    /// The city's certificate and the CA its clients must be signed by.
    /// Required unless `insecure_dev`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Accept plaintext connections and trust the ward code in `Hello`.
    /// For local experiments only; logs a warning.
    #[serde(default)]
    pub insecure_dev: bool,
    /// Most ward batches applied together in one write and one flush.
    #[serde(default = "default_max_group")]
    pub max_group: usize,
    /// Memory for the database's page cache, in MiB. Too small a cache
    /// makes every write read index pages back from disk.
    #[serde(default = "default_city_cache_mb")]
    pub cache_mb: u64,
    /// The city's 2-digit province code (e.g. "01" for Hanoi). When set,
    /// records owned by communes of other provinces are quarantined.
    #[serde(default)]
    pub province: Option<String>,
    /// Changes stamped more than this many milliseconds ahead of the city's
    /// clock are quarantined.
    #[serde(default = "default_max_skew")]
    pub max_clock_skew_ms: u64,
    /// Merge policy overrides, `"kind.field" = "lww" | "owner-wins" | "manual"`,
    /// over the defaults (see README, "Conflicts"); `"default"` sets the policy
    /// of fields not listed.
    #[serde(default)]
    pub policies: BTreeMap<String, Policy>,
    /// Roles of client certificates, by common name: `ward`, `office-reader`,
    /// `office-editor`, `ops`. Ward certificates (`ward-NNNNN`) of the city's
    /// communes have the ward role without being listed. Reloaded on SIGHUP.
    #[serde(default = "default_roles")]
    pub roles: BTreeMap<String, Vec<Role>>,
    /// Revoked certificates: serial numbers or SHA-256 fingerprints, as
    /// `openssl x509 -noout -serial` or `-fingerprint -sha256` print them
    /// (with or without colons, the `serial=` prefix or leading zeros).
    /// Reloaded on SIGHUP; every open stream of a revoked node ends at once.
    #[serde(default)]
    pub revoked: Vec<String>,
    /// Address of the HTTP endpoint for Prometheus (`/metrics`); none if unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The wards expected to replicate (commune codes); those never heard
    /// from are listed as `never-seen` by `wardsync status`.
    #[serde(default)]
    pub wards: Vec<String>,
    /// Limits that keep one client from hurting the others.
    #[serde(default)]
    pub limits: Limits,
}

/// Where the city keeps its database (city `[database]`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// A PostgreSQL URL, `postgres://USER:PASSWORD@HOST:PORT/DATABASE`:
    /// the city database on PostgreSQL, which several city processes may
    /// share. Unset: the embedded store in `data_dir`.
    #[serde(default)]
    pub url: Option<String>,
    /// The CA certificate (PEM) that signed the database server's
    /// certificate: the city then speaks TLS to PostgreSQL, checks the
    /// server's certificate and name, and never falls back to plain text.
    /// Unset: plain text (a database on this machine or a private network).
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl std::fmt::Debug for Database {
    // The URL may hold a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.url.as_ref().map(|_| "(set)"))
            .field("ca", &self.ca)
            .finish()
    }
}

/// Limits on what one client may send (city `[limits]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Most changes in one replication batch.
    pub max_batch_changes: usize,
    /// No longer used: a ward has one replication stream at a time (a new
    /// one ends the one before). Accepted so that older files still load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams_per_ward: Option<usize>,
    /// Query requests per second one identity may make, on average.
    pub requests_per_second: u32,
    /// Query requests one identity may make in a burst.
    pub request_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 << 20,
            max_batch_changes: 10_000,
            max_streams_per_ward: None,
            requests_per_second: 1000,
            request_burst: 5000,
        }
    }
}

fn default_ward_dir() -> PathBuf {
    PathBuf::from("/var/lib/wardsync/ward")
}
fn default_city_dir() -> PathBuf {
    PathBuf::from("/var/lib/wardsync/city")
}
fn default_ward_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7070))
}
fn default_city_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}
fn default_city_name() -> String {
    "city".into()
}
fn default_max_group() -> usize {
    64
}
/// Default page cache of a ward's database, MiB.
pub const WARD_CACHE_MB: u64 = 64;
/// Default page cache of the city's database, MiB.
pub const CITY_CACHE_MB: u64 = 512;
fn default_ward_cache_mb() -> u64 {
    WARD_CACHE_MB
}
fn default_city_cache_mb() -> u64 {
    CITY_CACHE_MB
}
fn default_roles() -> BTreeMap<String, Vec<Role>> {
    BTreeMap::from([
        ("office".to_string(), vec![Role::OfficeEditor]),
        ("ops".to_string(), vec![Role::Ops]),
        ("backup".to_string(), vec![Role::Backup]),
    ])
}
fn default_max_skew() -> u64 {
    5 * 60 * 1000
}

fn check_cache(mb: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=1 << 20).contains(&mb),
        "config `cache_mb`: {mb} MiB is out of range (1 to 1048576)"
    );
    Ok(())
}

impl WardConfig {
    /// Checks what the types cannot: the ward code and the TLS settings.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            crate::model::reference::commune(&self.code).is_some(),
            "config `code`: {:?} is not a commune code in force since 1 July 2025",
            self.code
        );
        check_cache(self.cache_mb)?;
        anyhow::ensure!(
            self.socket.is_some() || self.listen.ip().is_loopback() || self.api_beyond_loopback,
            "config `listen`: {} is not a loopback address, and the local API has no authentication \
             of its own (it can look up any citizen city-wide as this ward): listen on 127.0.0.1, \
             or use `socket`, or, if a firewall admits only the ward's own software, set \
             `api_beyond_loopback = true` (flag --api-beyond-loopback)",
            self.listen
        );
        check_tls(&self.tls, self.insecure_dev)
    }
}

impl CityConfig {
    /// Where copies of the embedded store go.
    pub fn backups(&self) -> PathBuf {
        self.backup_dir.clone().unwrap_or_else(|| {
            let mut name = self.data_dir.file_name().unwrap_or_default().to_os_string();
            name.push(".backups");
            self.data_dir.with_file_name(name)
        })
    }

    /// Roles and revocations as the city enforces them.
    pub fn access(&self) -> Access {
        Access {
            roles: self.roles.iter().map(|(cn, r)| (cn.clone(), r.iter().copied().collect())).collect(),
            revoked: self.revoked.iter().map(|s| crate::auth::hex_id(s)).collect(),
            province: self.province.clone(),
            insecure_dev: self.insecure_dev,
        }
    }

    /// The merge policies: the defaults with the configured overrides.
    pub fn merge_policies(&self) -> Policies {
        let mut p = Policies::default();
        for (name, policy) in &self.policies {
            if name == "default" {
                p.default = *policy;
            } else {
                p.fields.insert(name.clone(), *policy);
            }
        }
        p
    }

    /// Checks what the types cannot: TLS settings, the province code, policy names.
    pub fn check(&self) -> anyhow::Result<()> {
        check_tls(&self.tls, self.insecure_dev)?;
        check_cache(self.cache_mb)?;
        if self.limits.max_streams_per_ward.is_some() {
            tracing::warn!(
                "config `limits.max_streams_per_ward` is no longer used (a ward has one replication stream at a time): remove it"
            );
        }
        for w in &self.wards {
            anyhow::ensure!(
                crate::model::reference::commune(w).is_some(),
                "config `wards`: {w:?} is not a commune code in force since 1 July 2025"
            );
        }
        for name in self.policies.keys().filter(|n| *n != "default") {
            let parsed =
                name.split_once('.').and_then(|(k, f)| Some((k.parse::<crate::model::Kind>().ok()?, f)));
            let Some((kind, field)) = parsed else {
                anyhow::bail!(
                    "config `policies`: {name:?} should be \"default\" or KIND.FIELD, e.g. \"land.owners\""
                )
            };
            let fields = crate::model::field_names(kind);
            anyhow::ensure!(
                fields.contains(&field),
                "config `policies`: {kind} records have no field {field:?}; they have {}",
                fields.join(", ")
            );
        }
        if let Some(p) = &self.province {
            anyhow::ensure!(
                crate::model::reference::province_name(p).is_some(),
                "config `province`: {p:?} is not one of the 34 province codes in force since 1 July 2025 (Hanoi is \"01\")"
            );
        }
        Ok(())
    }
}

/// Reads a TOML file into a configuration, naming the file in every error.
pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Checks the TLS settings of a node: certificates, or an explicit opt-out.
pub fn check_tls(tls: &Option<TlsFiles>, insecure_dev: bool) -> anyhow::Result<()> {
    match (tls, insecure_dev) {
        (Some(_), true) => anyhow::bail!("set either [tls] or insecure_dev, not both"),
        (None, false) => anyhow::bail!(
            "no [tls] section: give ca, cert and key (see `wardsync certs`), or run with --insecure-dev for a plaintext experiment"
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ward_config_with_defaults() {
        let c: WardConfig = toml::from_str(
            r#"
            code = "00082"
            city_url = "https://city.example:7443"
            [tls]
            ca = "/etc/wardsync/ca.pem"
            cert = "/etc/wardsync/ward-00082.pem"
            key = "/etc/wardsync/ward-00082.key"
            [replication]
            max_in_flight = 8
            "#,
        )
        .unwrap();
        assert_eq!(c.listen, default_ward_listen());
        assert_eq!(c.replication.max_in_flight, 8);
        assert_eq!(c.replication.batch_max_entries, 512);
        assert_eq!(c.cache_mb, WARD_CACHE_MB);
        assert!(check_tls(&c.tls, c.insecure_dev).is_ok());
    }

    #[test]
    fn the_page_cache_is_sized_by_role_and_checked() {
        let c: CityConfig = toml::from_str("insecure_dev = true").unwrap();
        assert_eq!(c.cache_mb, CITY_CACHE_MB);
        let c: CityConfig = toml::from_str("insecure_dev = true\ncache_mb = 0").unwrap();
        assert!(c.check().unwrap_err().to_string().contains("cache_mb"));
    }

    #[test]
    fn policy_overrides_apply_over_the_defaults() {
        let c: CityConfig = toml::from_str(
            "insecure_dev = true\n[policies]\ndefault = \"owner-wins\"\n\"citizen.phone\" = \"manual\"\n",
        )
        .unwrap();
        c.check().unwrap();
        let p = c.merge_policies();
        assert_eq!(p.default, Policy::OwnerWins);
        assert_eq!(p.of(crate::model::Kind::Citizen, "phone"), Policy::Manual);
        assert_eq!(p.of(crate::model::Kind::Land, "owners"), Policy::Manual, "defaults stay");
        let bad: CityConfig =
            toml::from_str("insecure_dev = true\n[policies]\n\"house.owner\" = \"lww\"\n").unwrap();
        assert!(bad.check().unwrap_err().to_string().contains("KIND.FIELD"));
        let typo: CityConfig =
            toml::from_str("insecure_dev = true\n[policies]\n\"citizen.fullname\" = \"lww\"\n").unwrap();
        let e = typo.check().unwrap_err().to_string();
        assert!(e.contains("no field \"fullname\"") && e.contains("full_name"), "{e}");
        assert!(toml::from_str::<CityConfig>("[policies]\n\"land.owners\" = \"vote\"\n").is_err());
    }

    #[test]
    fn unknown_fields_and_missing_tls_are_errors() {
        let e = toml::from_str::<CityConfig>("listn = \"0.0.0.0:1\"").unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let c: CityConfig = toml::from_str("").unwrap();
        assert!(check_tls(&c.tls, c.insecure_dev).is_err());
        // A limit older files set and nothing reads any more still loads.
        let old: CityConfig =
            toml::from_str("insecure_dev = true\n[limits]\nmax_streams_per_ward = 2\n").unwrap();
        assert!(old.check().is_ok());
        let e = toml::from_str::<CityConfig>("[limits]\nmax_stream_per_ward = 2\n").unwrap_err();
        assert!(e.to_string().contains("max_stream_per_ward"), "{e}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn a_database_url_is_read_and_never_printed() {
        let c: CityConfig = toml::from_str(
            "insecure_dev = true\n[database]\nurl = \"postgres://city:s3cret@db:5432/wardsync\"\n",
        )
        .unwrap();
        assert_eq!(c.database.url.as_deref(), Some("postgres://city:s3cret@db:5432/wardsync"));
        let printed = format!("{c:?}");
        assert!(printed.contains("database") && !printed.contains("s3cret"), "{printed}");
        assert!(toml::from_str::<CityConfig>("[database]\nurl = \"x\"\nuser = \"y\"\n").is_err());
    }

    #[test]
    fn the_shipped_example_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let ward: WardConfig = load(&root.join("ward.toml")).unwrap();
        assert_eq!(ward.code, "00082");
        assert_eq!(ward.replication, ReplicationConfig::default());
        let city: CityConfig = load(&root.join("city.toml")).unwrap();
        assert!(check_tls(&city.tls, city.insecure_dev).is_ok());
    }
}
