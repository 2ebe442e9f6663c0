//! Signing with a node's certificate key, and checking a signature against
//! a certificate: what a ward signs of its chain ([`crate::model::signed`])
//! is checked by anyone holding its certificate, without trusting whoever
//! relays it. Keys are ECDSA P-256 (what `wardsync certs` issues; TLS uses
//! the same key); a signature is the fixed 64-byte form (r ‖ s) over
//! SHA-256.

use anyhow::Context as _;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::TlsFiles;
use crate::model::signed::KeyId;

/// A node's signing key, with the id of its certificate's key.
pub struct Signer {
    key: EcdsaKeyPair,
    id: KeyId,
    rng: SystemRandom,
}

/// The fixed key of a node without a certificate (`insecure_dev`, which
/// trusts a peer's word anyway): PKCS#8, ECDSA P-256. Public: what it
/// signs proves nothing to anyone else.
const INSECURE_KEY: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420a5e5c4bba35d0941\
    fadeabcb9634687fb6568b3da76efda1a9fbf19dedb1d774a14403420004ffd7ed225a791d3b8d86dfb429ea118243990597852cfa88b5f8\
    4201da7c0f52d266ad024a8a2bfefaa86c2871eef56417837e9c3ff7426b0ff38427c514f081";

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Signer {
    /// The key and certificate of `files`, which must certify that key.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Signer> {
        let pem =
            std::fs::read(&files.key).with_context(|| format!("cannot read {}", files.key.display()))?;
        let (_, key_pem) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM private key: {e}", files.key.display()))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key_pem.contents, &rng).map_err(|e| {
            anyhow::anyhow!(
                "{}: not an ECDSA P-256 key in PKCS#8 ({e}): signing needs the kind of key wardsync certs issues",
                files.key.display()
            )
        })?;
        let cert =
            std::fs::read(&files.cert).with_context(|| format!("cannot read {}", files.cert.display()))?;
        let (_, cert_pem) = x509_parser::pem::parse_x509_pem(&cert)
            .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", files.cert.display()))?;
        let signer = Signer { key, id: super::key_id(&cert_pem.contents).map_err(anyhow::Error::msg)?, rng };
        // The certificate must be the key's: a signature checked against it
        // must be one this key made.
        verify(&cert_pem.contents, b"wardsync/key-check", &signer.sign(b"wardsync/key-check")).map_err(
            |_| {
                anyhow::anyhow!(
                    "{} does not certify the key in {}",
                    files.cert.display(),
                    files.key.display()
                )
            },
        )?;
        Ok(signer)
    }

    /// The fixed signer of a node without a certificate (`insecure_dev`).
    pub fn insecure() -> Signer {
        let pkcs8: Vec<u8> = (0..INSECURE_KEY.len() / 2)
            .map(|i| u8::from_str_radix(&INSECURE_KEY[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).expect("a P-256 key");
        let mut id = [0; 32];
        id.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref()).as_ref());
        Signer { key, id: KeyId(id), rng }
    }

    /// The id of the key, as signed content names it.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Checks that `signature` is this key signing `message`.
    pub fn signed(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(message, signature)
            .is_ok()
    }

    /// Signs `message`: 64 bytes.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key
            .sign(&self.rng, message)
            .expect("ECDSA signing with the system's randomness")
            .as_ref()
            .to_vec()
    }
}

/// Checks that `signature` is the key of the DER certificate `cert` signing `message`.
pub fn verify(cert: &[u8], message: &[u8], signature: &[u8]) -> Result<(), String> {
    let (_, c) = X509Certificate::from_der(cert).map_err(|e| format!("bad certificate: {e}"))?;
    let public = c.tbs_certificate.subject_pki.subject_public_key.data.as_ref();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
        .verify(message, signature)
        .map_err(|_| "the signature is not this certificate's key's".to_string())
}

/// Checks that the DER certificate `cert` was valid at `at_ms` (ms since
/// the epoch): what it signed then, it could sign.
pub fn valid_at(cert: &[u8], at_ms: i64) -> Result<(), String> {
    let (_, c) = X509Certificate::from_der(cert).map_err(|e| format!("not a certificate: {e}"))?;
    let at = at_ms.div_euclid(1000);
    let (from, to) = (c.validity().not_before.timestamp(), c.validity().not_after.timestamp());
    if at < from || at > to {
        return Err(format!(
            "signed at {at} s since the epoch, outside its certificate's validity ({from} to {to})"
        ));
    }
    Ok(())
}

/// Checks that the DER certificate `cert` was issued by one of `roots` (a
/// client certificate, as the city requires of wards), judged at a moment
/// within its validity: a certificate that has expired since still proves
/// what it signed while it was valid.
pub fn issued_by(roots: &std::sync::Arc<rustls::RootCertStore>, cert: &[u8]) -> Result<(), String> {
    use rustls::pki_types::{CertificateDer, UnixTime};
    let (_, parsed) = X509Certificate::from_der(cert).map_err(|e| format!("not a certificate: {e}"))?;
    let from = parsed.validity().not_before.timestamp().max(0) as u64;
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(from + 1));
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots.clone())
        .build()
        .map_err(|e| format!("cannot check certificates against the CA: {e}"))?;
    verifier
        .verify_client_cert(&CertificateDer::from(cert), &[], at)
        .map(|_| ())
        .map_err(|e| format!("not issued by the CA: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::DevCa;
    use crate::model::WardCode;

    #[test]
    fn a_ward_signs_and_anyone_with_its_certificate_checks_and_no_other_key_passes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::open_or_create(dir.path()).unwrap();
        for w in ["00082", "00145"] {
            ca.issue_ward(&WardCode::parse(w).unwrap()).unwrap();
        }
        let files = |name: &str| TlsFiles::in_dir(dir.path(), name);
        let der = |name: &str| {
            let pem = std::fs::read(dir.path().join(format!("{name}.pem"))).unwrap();
            x509_parser::pem::parse_x509_pem(&pem).unwrap().1.contents
        };
        let a = Signer::load(&files("ward-00082")).unwrap();
        assert_eq!(a.key_id(), crate::auth::key_id(&der("ward-00082")).unwrap());
        let link = [9u8; 32];
        let sig = a.sign(&link);
        assert_eq!(sig.len(), 64);
        assert_eq!(verify(&der("ward-00082"), &link, &sig), Ok(()));
        // Another ward's certificate, another message, a changed signature: refused.
        assert!(verify(&der("ward-00145"), &link, &sig).is_err());
        assert!(verify(&der("ward-00082"), &[8u8; 32], &sig).is_err());
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(verify(&der("ward-00082"), &link, &bad).is_err());
        // A certificate that is not the key's is refused at load.
        let mut mixed = files("ward-00082");
        mixed.cert = dir.path().join("ward-00145.pem");
        let e = Signer::load(&mixed).unwrap_err().to_string();
        assert!(e.contains("does not certify the key"), "{e}");
    }
}
