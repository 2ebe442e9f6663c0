//! Loading PEM files into rustls configurations (mutual TLS): the city's
//! server side, the clients' through tonic.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The three PEM files a node needs for mutual TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate that signs every node of the city.
    pub ca: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key (must not be readable by other users).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The conventional file names in a directory written by `wardsync certs`:
    /// `ca.pem`, `NAME.pem`, `NAME.key`.
    pub fn in_dir(dir: &Path, name: &str) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }

    fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))
    }

    fn load(&self) -> anyhow::Result<(Certificate, Identity)> {
        check_private(&self.key)?;
        let ca = Certificate::from_pem(Self::read(&self.ca, "CA certificate")?);
        let id =
            Identity::from_pem(Self::read(&self.cert, "certificate")?, Self::read(&self.key, "private key")?);
        Ok((ca, id))
    }
}

/// Refuses a private key file that users other than its owner may read or write.
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read private key {}: {e}", path.display()))?
        .permissions()
        .mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "private key {} is open to other users (mode {:o}): run `chmod 600 {}`",
        path.display(),
        mode & 0o777,
        path.display()
    );
    Ok(())
}

/// The certificates in the PEM file `ca`, as the only roots to trust.
pub fn roots(ca: &Path) -> anyhow::Result<rustls::RootCertStore> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: rustls::pki_types::pem::Error| {
        anyhow::anyhow!("cannot read CA certificate {}: {e}", ca.display())
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(bad)? {
        roots.add(cert.map_err(bad)?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "{} holds no certificate", ca.display());
    Ok(roots)
}

/// Server side: present our certificate, require a client certificate
/// signed by the CA, speak HTTP/2. Read afresh on every call, so a reload
/// picks up renewed files.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    check_private(&files.key)?;
    let pem_error = |what: &str, path: &Path| {
        let path = path.display().to_string();
        let what = what.to_string();
        move |e: rustls::pki_types::pem::Error| anyhow::anyhow!("cannot read {what} {path}: {e}")
    };
    let roots = roots(&files.ca)?;
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem_error("certificate", &files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("certificate", &files.cert))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem_error("private key", &files.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            anyhow::anyhow!("certificate {} and key {}: {e}", files.cert.display(), files.key.display())
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Client side: trust only the CA, present our certificate, and expect the
/// server to be `domain` (the city certificate's name).
pub fn client_tls(files: &TlsFiles, domain: &str) -> anyhow::Result<ClientTlsConfig> {
    let (ca, id) = files.load()?;
    Ok(ClientTlsConfig::new().ca_certificate(ca).identity(id).domain_name(domain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_open_to_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("node.key");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_private(&key).is_ok());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private(&key).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
    }
}
