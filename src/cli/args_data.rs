//! Command-line arguments of the data commands: generating, importing,
//! exporting, searching, and the data office's quarantine, conflicts and
//! corrections.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::CityTarget;
use super::formats::Format;
use crate::model::Kind;

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
    /// Fraction of records (0 to 1) to corrupt so that they fail validation;
    /// as many again of the valid citizens are made inconsistent with the
    /// civil-status register (for `wardsync civil-report`).
    #[arg(long, default_value_t = 0.0)]
    pub invalid: f64,
    /// Write one file per ward and kind (WARD-KIND.EXT) into this directory
    /// instead of standard output.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Flags of `wardsync import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The kind of the records in the file.
    #[arg(long)]
    pub kind: Kind,
    /// The file: JSON Lines (or pretty-printed JSON records) or CSV, told
    /// by its content.
    pub file: PathBuf,
    /// The file's format, if its content does not say.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// A CSV file's delimiter [default: comma, semicolon or tab, as its header uses].
    #[arg(long, value_parser = parse_delimiter)]
    pub delimiter: Option<char>,
    /// The ward agent's local API: http://HOST:PORT, or unix:/path/to/socket.
    #[arg(long, env = "WARDSYNC_WARD_API", default_value = "http://127.0.0.1:7070")]
    pub ward_api: String,
    /// Where rejected rows go, each after a note of its line and reason [default: FILE.rejects].
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Ignore the progress saved by an interrupted run and start from the first line.
    #[arg(long)]
    pub restart: bool,
}

/// A CSV delimiter as typed: one character, or `tab`.
fn parse_delimiter(s: &str) -> Result<char, String> {
    match s {
        "tab" | "\\t" => Ok('\t'),
        _ if s.chars().count() == 1 && s.is_ascii() => Ok(s.chars().next().unwrap_or(',')),
        _ => Err(format!("{s:?}: give one character, e.g. ';' or ',', or tab")),
    }
}

/// Flags of `wardsync export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// citizen, business or land.
    #[arg(long)]
    pub kind: Kind,
    /// Output format [default: what --out's name says (.csv, .jsonl), else jsonl].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Only records owned by this ward.
    #[arg(long)]
    pub ward: Option<String>,
    /// Only records changed since: a change-log cursor (printed by the
    /// previous export), or a time (YYYY-MM-DD, today, yesterday, RFC 3339).
    #[arg(long, value_name = "CURSOR|TIME")]
    pub since: Option<String>,
    /// Output file [default: standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The city to export from.
    #[command(flatten)]
    pub target: CityTarget,
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
    pub target: CityTarget,
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
        /// Print one JSON object per change.
        #[arg(long)]
        json: bool,
        /// The city (--city and --tls-dir).
        #[command(flatten)]
        target: CityTarget,
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
        target: CityTarget,
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
        target: CityTarget,
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
        /// Print one JSON object per conflict.
        #[arg(long)]
        json: bool,
        /// The city (--city and --tls-dir).
        #[command(flatten)]
        target: CityTarget,
    },
    /// Show a record and every contender of its conflicts, numbered.
    Show {
        /// citizen, business or land.
        #[arg(long)]
        kind: Kind,
        /// The record's key.
        #[arg(long)]
        key: String,
        /// Print one JSON object: the record, whether it is disputed, its conflicts.
        #[arg(long)]
        json: bool,
        /// The city (--city and --tls-dir).
        #[command(flatten)]
        target: CityTarget,
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
        target: CityTarget,
    },
}

/// Flags of `wardsync edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The corrected record: a file holding it as JSON, `-` for standard
    /// input, or the JSON text itself.
    #[arg(long, value_name = "FILE|-|JSON")]
    pub record: String,
    /// The version of the record the correction was made from, as `wardsync
    /// get --city` printed it: what wards wrote since is then not reverted but
    /// a conflict where it disagrees.
    #[arg(long, value_name = "VERSION", required_unless_present = "force")]
    pub based_on: Option<String>,
    /// Correct the record as it stands now, whatever was written since the
    /// copy the correction was made from (which it may revert).
    #[arg(long)]
    pub force: bool,
    /// The city (--city and --tls-dir).
    #[command(flatten)]
    pub target: CityTarget,
}

/// Flags of `wardsync history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// citizen, business or land.
    #[arg(long)]
    pub kind: Kind,
    /// The key: personal id, enterprise code, or COMMUNE:SHEET:PARCEL.
    #[arg(long)]
    pub key: String,
    /// The city to ask.
    #[command(flatten)]
    pub target: CityTarget,
    /// Print one JSON object per change.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `wardsync audit`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AuditArgs {
    /// Check the log against what proves it, instead of listing it.
    #[command(subcommand)]
    pub verify: Option<AuditCommand>,
    /// Only this ward's writes and calls.
    #[arg(long)]
    pub ward: Option<String>,
    /// Only from this time on: YYYY-MM-DD, today, yesterday, or an RFC 3339
    /// time (2026-11-22T08:00:00+07:00).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Most entries.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// Print one JSON object per entry.
    #[arg(long)]
    pub json: bool,
    /// The city: https://HOST:PORT (its --listen). (Required to list the
    /// trail; `audit verify` reads the database itself.)
    #[arg(long, env = "WARDSYNC_CITY", required = true)]
    pub city: Option<String>,
    /// How to show the city who asks.
    #[command(flatten)]
    pub tls: super::args::ClientTls,
}

/// What `wardsync audit` does besides listing the trail.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every log entry, record and signed batch against the wards'
    /// signatures and the CA: names every row that is not what the city wrote.
    Verify(super::audit_verify::AuditVerifyArgs),
}
