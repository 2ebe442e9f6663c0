//! Identities of the city's clients, read from their TLS certificates.
//!
//! Naming convention (what `wardsync certs` issues): a ward's certificate has
//! common name `ward-NNNNN` (its commune code); any other common name is a
//! named client such as `office` or `ops`. The identity never comes from a
//! request body.

use std::fmt;

use tonic::Request;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::city::CityError;
use crate::model::WardCode;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A ward agent, by commune code.
    Ward(WardCode),
    /// Another client (data office, ops), by certificate common name.
    Named(String),
    /// No certificate: only possible under `--insecure-dev`.
    Insecure,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ward(w) => write!(f, "ward {w}"),
            Identity::Named(n) => write!(f, "{n}"),
            Identity::Insecure => write!(f, "unauthenticated (insecure dev mode)"),
        }
    }
}

impl Identity {
    /// The identity a certificate's common name stands for.
    pub fn from_common_name(cn: &str) -> Identity {
        match cn.strip_prefix("ward-").map(WardCode::parse) {
            Some(Ok(w)) => Identity::Ward(w),
            _ => Identity::Named(cn.to_string()),
        }
    }

    /// Parses the identity out of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Identity, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or("certificate has no common name")?;
        Ok(Identity::from_common_name(cn))
    }
}

/// The id of the key a DER certificate certifies: the SHA-256 of its
/// public key (SubjectPublicKeyInfo, DER), which names the signer in what
/// a ward signs ([`crate::model::signed`]).
pub fn key_id(der: &[u8]) -> Result<crate::model::signed::KeyId, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
    let spki = ring::digest::digest(&ring::digest::SHA256, cert.tbs_certificate.subject_pki.raw);
    let mut id = [0; 32];
    id.copy_from_slice(spki.as_ref());
    Ok(crate::model::signed::KeyId(id))
}

/// The identity of the peer of `req`. Without a peer certificate (plaintext,
/// which only `--insecure-dev` allows) this is [`Identity::Insecure`].
pub fn peer_identity<T>(req: &Request<T>) -> Result<Identity, CityError> {
    match req.peer_certs() {
        None => Ok(Identity::Insecure),
        Some(chain) => {
            let leaf =
                chain.first().ok_or_else(|| CityError::PermissionDenied("empty certificate chain".into()))?;
            Identity::from_der(leaf.as_ref()).map_err(CityError::PermissionDenied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names() {
        assert_eq!(
            Identity::from_common_name("ward-00082"),
            Identity::Ward(WardCode::parse("00082").unwrap())
        );
        assert_eq!(Identity::from_common_name("ward-82"), Identity::Named("ward-82".into()));
        assert_eq!(Identity::from_common_name("office"), Identity::Named("office".into()));
    }

    #[test]
    fn a_key_id_is_the_hash_of_the_certified_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::auth::DevCa::open_or_create(dir.path()).unwrap();
        let der = |name: &str| {
            let pem = std::fs::read(dir.path().join(format!("{name}.pem"))).unwrap();
            x509_parser::pem::parse_x509_pem(&pem).unwrap().1.contents
        };
        for w in ["00082", "00145"] {
            ca.issue_ward(&WardCode::parse(w).unwrap()).unwrap();
        }
        let (a, b) = (key_id(&der("ward-00082")).unwrap(), key_id(&der("ward-00145")).unwrap());
        assert_ne!(a, b);
        // The same, from the private key alone (rcgen derives its public key).
        let key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.path().join("ward-00082.key")).unwrap())
                .unwrap();
        let spki = x509_parser::pem::parse_x509_pem(key.public_key_pem().as_bytes()).unwrap().1.contents;
        let spki = ring::digest::digest(&ring::digest::SHA256, &spki);
        assert_eq!(a.0.as_slice(), spki.as_ref());
    }
}
