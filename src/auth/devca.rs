//! A development certificate authority: `wardsync certs`, the demo and the
//! tests use it to issue the city's, the wards' and the office's
//! certificates. Production uses the city's own CA.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::model::WardCode;

/// How long the certificates `wardsync certs` issues are valid, in days.
pub const CERT_DAYS: u32 = 825;

/// The certificate name of a ward: `ward-NNNNN`.
pub fn ward_cert_name(ward: &WardCode) -> String {
    format!("ward-{ward}")
}

/// A CA whose certificate and key live in a directory (`ca.pem`, `ca.key`).
pub struct DevCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

impl DevCa {
    /// Loads the CA in `dir`, or creates one if the directory has none.
    pub fn open_or_create(dir: &Path) -> anyhow::Result<DevCa> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
        let issuer = if ca_pem.exists() && ca_key.exists() {
            let key = KeyPair::from_pem(&fs::read_to_string(&ca_key)?)
                .with_context(|| format!("bad CA key {}", ca_key.display()))?;
            Issuer::from_ca_cert_pem(&fs::read_to_string(&ca_pem)?, key)
                .with_context(|| format!("bad CA certificate {}", ca_pem.display()))?
        } else {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(DnType::CommonName, "wardsync development CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key)?;
            fs::write(&ca_pem, cert.pem())?;
            write_private(&ca_key, &key.serialize_pem())?;
            Issuer::new(params, key)
        };
        Ok(DevCa { dir: dir.to_path_buf(), issuer })
    }

    /// Issues `NAME.pem` and `NAME.key` with common name `name` and the
    /// given DNS names / IP addresses as subject alternative names, valid
    /// for [`CERT_DAYS`].
    pub fn issue(&self, name: &str, sans: &[&str]) -> anyhow::Result<()> {
        self.issue_for(name, sans, CERT_DAYS)
    }

    /// [`DevCa::issue`], valid from an hour ago for `days` days.
    pub fn issue_for(&self, name: &str, sans: &[&str], days: u32) -> anyhow::Result<()> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(days));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        fs::write(self.dir.join(format!("{name}.pem")), cert.pem())?;
        write_private(&self.dir.join(format!("{name}.key")), &key.serialize_pem())?;
        Ok(())
    }

    /// Issues the city's certificate (`city.pem`), valid for the names
    /// `city` and `localhost` and for 127.0.0.1.
    pub fn issue_city(&self) -> anyhow::Result<()> {
        self.issue("city", &["city", "localhost", "127.0.0.1"])
    }

    /// Issues a ward's certificate (`ward-NNNNN.pem`).
    pub fn issue_ward(&self, ward: &WardCode) -> anyhow::Result<()> {
        let name = ward_cert_name(ward);
        self.issue(&name, &[&name])
    }
}
