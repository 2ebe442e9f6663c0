//! What a node checks about its own certificate: that it names the node
//! (a ward's certificate must be that ward's), and how long it has left.
//! A certificate that expires stops replication at its next connection, so
//! the node warns well before: in its log (at start, on reload and daily)
//! and in the `wardsync_certificate_expiry_seconds` metric (time left).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Identity, TlsFiles};
use crate::model::WardCode;

/// Fewer days left than this, and the node warns.
pub const EXPIRY_WARNING_DAYS: f64 = 30.0;

/// A node's own certificate, as read from its file.
#[derive(Debug, Clone)]
pub struct OwnCertificate {
    /// Who the certificate says the node is.
    pub identity: Identity,
    /// The end of its validity, ms since the epoch.
    pub not_after_ms: i64,
    /// Where it was read from.
    pub path: std::path::PathBuf,
}

impl OwnCertificate {
    /// Reads the first certificate of the PEM file `files.cert`.
    pub fn read(files: &TlsFiles) -> anyhow::Result<OwnCertificate> {
        let path = &files.cert;
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read certificate {}: {e}", path.display()))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| anyhow::anyhow!("certificate {} is not PEM: {e}", path.display()))?;
        let (_, cert) = X509Certificate::from_der(&pem.contents)
            .map_err(|e| anyhow::anyhow!("certificate {} cannot be read: {e}", path.display()))?;
        let identity = Identity::from_der(&pem.contents)
            .map_err(|e| anyhow::anyhow!("certificate {}: {e}", path.display()))?;
        Ok(OwnCertificate {
            identity,
            not_after_ms: cert.validity().not_after.timestamp().saturating_mul(1000),
            path: path.clone(),
        })
    }

    /// Refuses a certificate that is not ward `ward`'s: the city would
    /// refuse every change the ward sends, which would queue up unsent.
    pub fn check_ward(&self, ward: &WardCode) -> anyhow::Result<()> {
        match &self.identity {
            Identity::Ward(w) if w == ward => Ok(()),
            Identity::Ward(w) => anyhow::bail!(
                "config `code` is {ward} but the certificate {} is ward {w}'s: the city accepts from a ward \
                 only what its certificate names; use ward-{ward}.pem and its key, or correct `code`",
                self.path.display()
            ),
            other => anyhow::bail!(
                "config `code` is {ward} but the certificate {} is not a ward's (it names {other}); \
                 use ward-{ward}.pem and its key",
                self.path.display()
            ),
        }
    }

    /// Days of validity left at `now_ms` (negative once expired).
    pub fn days_left(&self, now_ms: i64) -> f64 {
        (self.not_after_ms - now_ms) as f64 / 86_400_000.0
    }

    /// Logs a warning when fewer than [`EXPIRY_WARNING_DAYS`] are left,
    /// an error once expired; returns the days left.
    pub fn warn_if_expiring(&self, now_ms: i64) -> f64 {
        let days = self.days_left(now_ms);
        let path = self.path.display();
        if days <= 0.0 {
            tracing::error!(certificate = %path, "the certificate has expired: no connection can be made with it; install a renewed one and send SIGHUP");
        } else if days < EXPIRY_WARNING_DAYS {
            tracing::warn!(certificate = %path, days_left = days.floor(), "the certificate expires soon: install a renewed one and send SIGHUP");
        }
        days
    }
}

/// Where the metrics learn the certificate's end of validity: the city
/// records the one it loaded (it serves it until a reload); a ward reads
/// its file, which every new connection reads too.
#[derive(Debug, Clone)]
pub enum Expiry {
    /// The certificate loaded last ([`Expiry::set`]); 0 before any.
    Loaded(Arc<AtomicI64>),
    /// The certificate file, read at each scrape.
    File(TlsFiles),
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry::Loaded(Arc::default())
    }
}

impl Expiry {
    /// Records the certificate now in use (for [`Expiry::Loaded`]).
    pub fn set(&self, cert: &OwnCertificate) {
        if let Expiry::Loaded(t) = self {
            t.store(cert.not_after_ms, Ordering::Relaxed);
        }
    }

    /// Days left at `now_ms`, or `None` if unknown.
    pub fn days_left(&self, now_ms: i64) -> Option<f64> {
        let not_after_ms = match self {
            Expiry::Loaded(t) => Some(t.load(Ordering::Relaxed)).filter(|t| *t != 0)?,
            Expiry::File(files) => OwnCertificate::read(files).ok()?.not_after_ms,
        };
        Some((not_after_ms - now_ms) as f64 / 86_400_000.0)
    }

    /// Registers `certificate_expiry_seconds` in `registry`; the returned
    /// closure sets it (call it on every scrape).
    pub fn register(
        &self,
        registry: &mut prometheus_client::registry::Registry,
    ) -> impl Fn() + Send + Sync + 'static {
        use prometheus_client::metrics::gauge::Gauge;
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "certificate_expiry_seconds",
            "Time left until this node's TLS certificate expires (negative once expired)",
            gauge.clone(),
        );
        let expiry = self.clone();
        move || {
            if let Some(d) = expiry.days_left(crate::clock::now_ms()) {
                gauge.set(d * 86_400.0);
            }
        }
    }
}

/// Every day until `stop` is cancelled: reads `files`' certificate, records
/// it in `expiry` and warns if it is expiring.
pub fn watch_expiry(files: TlsFiles, expiry: Expiry, stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);
        let mut daily = tokio::time::interval_at(tokio::time::Instant::now() + DAY, DAY);
        loop {
            tokio::select! {
                _ = daily.tick() => {}
                _ = stop.cancelled() => return,
            }
            match OwnCertificate::read(&files) {
                Ok(c) => {
                    expiry.set(&c);
                    c.warn_if_expiring(crate::clock::now_ms());
                }
                Err(e) => tracing::error!("{e:#}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ward_certificate_must_name_the_ward() {
        let dir = tempfile::tempdir().unwrap();
        let ca = super::super::DevCa::open_or_create(dir.path()).unwrap();
        let (a, b) = (WardCode::parse("00082").unwrap(), WardCode::parse("00145").unwrap());
        ca.issue_ward(&b).unwrap();
        ca.issue_for("office", &["office"], 10).unwrap();
        let theirs = OwnCertificate::read(&TlsFiles::in_dir(dir.path(), "ward-00145")).unwrap();
        assert!(theirs.check_ward(&b).is_ok());
        let e = theirs.check_ward(&a).unwrap_err().to_string();
        assert!(e.contains("is ward 00145's") && e.contains("use ward-00082.pem"), "{e}");
        let office = OwnCertificate::read(&TlsFiles::in_dir(dir.path(), "office")).unwrap();
        assert!(office.check_ward(&a).unwrap_err().to_string().contains("not a ward's"));
        let days = office.days_left(crate::clock::now_ms());
        assert!((9.9..=10.0).contains(&days), "{days}");
    }
}
