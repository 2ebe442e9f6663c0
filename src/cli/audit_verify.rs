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
use crate::city::log_audit::{self, Checkpoint, Finding, OfficeRules, Trust};
use crate::city::receipts::Receipt;
use crate::config::CityConfig;
use crate::model::signed::KeyId;
use crate::store::pg::PgEvidence;
use crate::store::{Evidence, KvEvidence, SledEngine};

/// Flags of `wardsync audit verify`.
#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The city's configuration (its database, its CA and certificate) and
    /// database: the embedded store's directory a stopped city's, or a copy
    /// made by `wardsync backup`.
    #[command(flatten)]
    pub store: super::args::CityStoreArgs,
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
    /// A ward's witnesses: the output of `wardsync status --ward-api URL
    /// --json` on that ward (or lines of receipts in hex). Each of the
    /// city's receipts it holds names the log's running hash at a cursor,
    /// which the database must still match. Repeat for several wards.
    #[arg(long, value_name = "FILE")]
    pub witness: Vec<PathBuf>,
    /// The city's certificate its receipts and statements are checked with (default: the
    /// configuration's, or TLS_DIR/city.pem); repeat for one renewed since.
    #[arg(long, value_name = "FILE")]
    pub city_cert: Vec<PathBuf>,
    /// Print each finding as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Exit status when rows are not what the city wrote.
pub const EXIT_FINDINGS: u8 = exit::PARTLY;

/// Runs the verification and prints what it found.
pub async fn run(a: AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    let cfg = a.store.load()?;
    let trust = match a.ca.clone().or_else(|| a.tls_dir.as_ref().map(|d| d.join("ca.pem"))) {
        Some(ca) => Trust::Ca(std::sync::Arc::new(crate::auth::roots(&ca)?)),
        None => match &cfg.tls {
            Some(tls) => Trust::Ca(std::sync::Arc::new(crate::auth::roots(&tls.ca)?)),
            None if cfg.insecure_dev => Trust::Unsigned,
            None => anyhow::bail!(
                "audit verify needs the CA certificate that issues the wards' certificates: \
                 --ca FILE, --tls-dir DIR, or a configuration with [tls]"
            ),
        },
    };
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
        Some(path) => {
            eprintln!(
                "no checkpoint at {} yet: verifying from the start; a clean run writes it",
                path.display()
            );
            None
        }
        None => None,
    };
    let mut evidence: Box<dyn Evidence> = match &cfg.database.url {
        Some(url) => Box::new(PgEvidence::open(url, cfg.database.ca.as_deref()).await?),
        None => {
            let engine = SledEngine::open(&cfg.data_dir, cfg.cache_mb).with_context(|| {
                format!(
                    "cannot open the city's store in {} (it opens only while the city is stopped: \
                     verify a copy made by wardsync backup with --data-dir)",
                    cfg.data_dir.display()
                )
            })?;
            Box::new(KvEvidence::open(std::sync::Arc::new(engine))?)
        }
    };
    let city_keys = city_keys(&a, &cfg, &trust)?;
    let (witnesses, mut unproven) = witnesses(&a, &city_keys, &trust)?;
    // Who may edit, from the configuration given (without one: not checked).
    let office = OfficeRules {
        access: a.store.config.as_ref().map(|_| cfg.access()),
        max_skew_ms: cfg.max_clock_skew_ms,
        city_keys,
    };
    let mut report =
        log_audit::verify(evidence.as_mut(), &trust, since.as_ref(), &witnesses, &office).await?;
    if office.access.is_none() && report.office_requests > 0 {
        eprintln!(
            "(who may edit is not checked: give the city's --config to check each request against its [roles])"
        );
    }
    report.findings.append(&mut unproven);
    for f in &report.findings {
        if a.json {
            println!("{}", serde_json::to_string(f)?);
        } else {
            println!("{}: {}", f.row, f.why);
        }
    }
    eprintln!(
        "{} log entries up to cursor {}: {} signed by their wards, {} by the office's {} signed requests, \
         {} unsigned (repairs, changes from before signed chains and requests); {} records; signatures \
         checked: {} of batches, {} of registrations{}{}",
        report.entries,
        report.checkpoint.cursor,
        report.signed_entries,
        report.office_entries,
        report.office_requests,
        report.unsigned_entries,
        report.records,
        report.signatures_checked,
        report.authored_checked,
        match report.held_raw {
            0 => String::new(),
            n => format!("; {n} quarantined changes held as received, too malformed to compare"),
        },
        since.as_ref().map_or(String::new(), |c| format!(
            " (the log up to cursor {} checked against the checkpoint)",
            c.cursor
        )),
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

/// The city's certificates (`--city-cert`, else the TLS directory's or the
/// configuration's, if there is one), each issued by the CA: key id and
/// DER. (Without one, what only the city's signature proves is named as
/// such, with what to give.)
fn city_keys(a: &AuditVerifyArgs, cfg: &CityConfig, trust: &Trust) -> anyhow::Result<Vec<(KeyId, Vec<u8>)>> {
    let mut certs = a.city_cert.clone();
    if certs.is_empty() {
        let default = a
            .tls_dir
            .as_ref()
            .map(|d| d.join("city.pem"))
            .or_else(|| cfg.tls.as_ref().map(|t| t.cert.clone()));
        certs.extend(default.filter(|p| p.exists()));
    }
    let mut keys = Vec::new();
    for path in &certs {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the city's certificate {}", path.display()))?;
        let (_, der) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", path.display()))?;
        if let Trust::Ca(roots) = trust {
            crate::auth::issued_by(roots, &der.contents)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        keys.push((crate::auth::key_id(&der.contents).map_err(anyhow::Error::msg)?, der.contents));
    }
    Ok(keys)
}

/// The receipts in the `--witness` files whose signature is the city's
/// (by one of its certificates `keys`), and a finding for each that is not.
fn witnesses(
    a: &AuditVerifyArgs,
    keys: &[(KeyId, Vec<u8>)],
    trust: &Trust,
) -> anyhow::Result<(Vec<Receipt>, Vec<Finding>)> {
    if a.witness.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let insecure = matches!(trust, Trust::Unsigned);
    let (mut held, mut findings) = (Vec::new(), Vec::new());
    for path in &a.witness {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let hexes: Vec<String> = match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => v["receipts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str().map(String::from))
                    .collect(),
                Err(_) => vec![line.trim().to_string()],
            };
            for hex in hexes {
                let name = format!("witness {} line {}", path.display(), n + 1);
                let bytes = crate::model::signed::from_hex(&hex).unwrap_or_default();
                match Receipt::checked(&bytes, keys, insecure) {
                    Ok(receipt) => held.push(receipt),
                    Err(why) => findings.push(Finding { row: name, why: why.into() }),
                }
            }
        }
    }
    Ok((held, findings))
}
