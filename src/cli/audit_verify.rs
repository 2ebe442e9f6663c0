//! `wardsync audit verify`: checks the city's log against the wards'
//! signatures ([`crate::city::log_audit`]), reading the database itself
//! (PostgreSQL, or the embedded store of a stopped city or of a copy that
//! `wardsync backup` made), and trusting only the CA certificate given
//! here or in the city's configuration, never one from the database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::failure::exit;
use crate::city::log_audit::{self, Checkpoint};
use crate::config::{self, CityConfig};

/// Flags of `wardsync audit verify`.
#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The city's TOML configuration: its database and its CA certificate.
    #[arg(long, short, env = "WARDSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// The embedded store's directory: a stopped city's, or a copy made by `wardsync backup`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The city database on PostgreSQL: postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(long, env = "WARDSYNC_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Speak TLS to PostgreSQL, trusting only this CA certificate (PEM).
    #[arg(long, env = "WARDSYNC_DATABASE_CA")]
    pub database_ca: Option<PathBuf>,
    /// The CA certificate (PEM) that issues the wards' certificates
    /// (default: the configuration's, or TLS_DIR/ca.pem).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Directory with ca.pem (as written by `wardsync certs`).
    #[arg(long, env = "WARDSYNC_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Resume from this checkpoint, and write the new one there after a
    /// clean run. Keep it off the database host: it proves the log up to it
    /// is the one verified then.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Print each finding as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Exit status when rows are not what the city wrote.
pub const EXIT_FINDINGS: u8 = exit::PARTLY;

/// Runs the verification and prints what it found.
pub async fn run(a: AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    let mut cfg: CityConfig = match &a.config {
        Some(path) => config::load(path)?,
        None => toml::from_str("")?,
    };
    if let Some(d) = &a.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(u) = &a.database_url {
        cfg.database.url = Some(u.clone());
    }
    if let Some(ca) = &a.database_ca {
        cfg.database.ca = Some(ca.clone());
    }
    let ca =
        a.ca.clone()
            .or_else(|| a.tls_dir.as_ref().map(|d| d.join("ca.pem")))
            .or_else(|| cfg.tls.as_ref().map(|t| t.ca.clone()))
            .context(
                "audit verify needs the CA certificate that issues the wards' certificates: \
             --ca FILE, --tls-dir DIR, or a configuration with [tls]",
            )?;
    let roots = std::sync::Arc::new(crate::auth::roots(&ca)?);
    let since: Option<Checkpoint> = match &a.checkpoint {
        Some(path) if path.exists() => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a checkpoint audit verify wrote (remove it to verify from the start)",
                    path.display()
                )
            })?)
        }
        _ => None,
    };
    let db = crate::city::open_store(&cfg).await.context(
        "cannot open the city database (the embedded store opens only while the city is stopped: \
         verify a copy made by wardsync backup with --data-dir)",
    )?;
    let report = log_audit::verify(db.as_ref(), &roots, since.as_ref()).await?;
    for f in &report.findings {
        if a.json {
            println!("{}", serde_json::to_string(f)?);
        } else {
            println!("{}: {}", f.row, f.why);
        }
    }
    eprintln!(
        "{} log entries up to cursor {}: {} signed by their wards, {} unsigned (office writes, repairs, \
         changes from before signed chains); {} records; {} batch signatures checked{}",
        report.signed_entries + report.unsigned_entries,
        report.checkpoint.cursor,
        report.signed_entries,
        report.unsigned_entries,
        report.records,
        report.signatures_checked,
        since.as_ref().map_or(String::new(), |c| format!(" (resumed from cursor {})", c.cursor)),
    );
    if !report.findings.is_empty() {
        eprintln!(
            "{} rows are not what the city wrote: restore them from a backup, or find who changed them",
            report.findings.len()
        );
        return Ok(ExitCode::from(EXIT_FINDINGS));
    }
    if let Some(path) = &a.checkpoint {
        let text = serde_json::to_string_pretty(&report.checkpoint)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!("the log is what the wards signed and the city wrote");
    Ok(ExitCode::SUCCESS)
}
