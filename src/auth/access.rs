//! Who may do what at the city: roles bound to certificate identities, the
//! deny list of revoked certificates, and the check every RPC makes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use tonic::Request;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::Identity;
use crate::city::CityError;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A ward agent: replicates its own records, looks up others' through the city.
    Ward,
    /// Reads the city's records, history, quarantine and conflicts.
    OfficeReader,
    /// Also corrects records and settles quarantine and conflicts.
    OfficeEditor,
    /// Sees replication status only.
    Ops,
    /// Takes copies of the city's embedded store (`Backup`), nothing else.
    Backup,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s =
            serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        f.write_str(&s)
    }
}

/// The authenticated peer of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Who it is.
    pub identity: Identity,
    /// Its certificate's serial number, as [`hex_id`] writes it (empty without a certificate).
    pub serial: String,
    /// SHA-256 of its certificate, as [`hex_id`] writes it (empty without a certificate).
    pub fingerprint: String,
    /// Its certificate (DER; empty without one), whose key its signatures are checked with.
    pub cert: std::sync::Arc<[u8]>,
}

impl Peer {
    /// The peer of `req`, from its TLS certificate (none only under `--insecure-dev`).
    pub fn of<T>(req: &Request<T>) -> Result<Peer, CityError> {
        let Some(chain) = req.peer_certs() else {
            return Ok(Peer {
                identity: Identity::Insecure,
                serial: String::new(),
                fingerprint: String::new(),
                cert: std::sync::Arc::new([]),
            });
        };
        let leaf =
            chain.first().ok_or_else(|| CityError::PermissionDenied("empty certificate chain".into()))?;
        Peer::from_der(leaf.as_ref())
    }

    /// The peer a DER certificate names.
    pub fn from_der(der: &[u8]) -> Result<Peer, CityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| CityError::PermissionDenied(format!("unreadable certificate: {e}")))?;
        let identity = Identity::from_der(der).map_err(CityError::PermissionDenied)?;
        // The serial's value, not its DER bytes (which carry a leading 00
        // when the top bit is set): as `openssl x509 -serial` shows it.
        let serial = hex_id(&cert.serial.to_str_radix(16));
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Ok(Peer { identity, serial, fingerprint: hex_id(&fingerprint), cert: der.into() })
    }
}

/// A serial number or fingerprint as operators write them, in one form:
/// `serial=0A1B...` or `8F:01:...` as `openssl x509 -serial` or
/// `-fingerprint -sha256` print them (upper or lower case, with or without
/// colons, a `name=` prefix, a `0x` prefix or leading zeros) → lower-case
/// hex without leading zeros.
pub fn hex_id(written: &str) -> String {
    let value = written.rsplit('=').next().unwrap_or(written).trim();
    let value = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")).unwrap_or(value);
    let hex: String =
        value.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect::<String>().to_lowercase();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() && !hex.is_empty() { "0".into() } else { trimmed.into() }
}

/// Roles and revocations in force; replaced as a whole when the city
/// configuration is reloaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Access {
    /// Certificate common name → roles.
    pub roles: BTreeMap<String, BTreeSet<Role>>,
    /// Revoked certificates: serial numbers or SHA-256 fingerprints, as [`hex_id`] writes them.
    pub revoked: BTreeSet<String>,
    /// If set, only wards of this province have the ward role.
    pub province: Option<String>,
    /// Plaintext without certificates is allowed (`insecure_dev`), and a
    /// peer without a certificate may do anything. Otherwise such a peer
    /// (a transport that carries no TLS identity) is refused outright.
    pub insecure_dev: bool,
}

impl Access {
    /// The roles of `identity`.
    pub fn roles_of(&self, identity: &Identity) -> BTreeSet<Role> {
        match identity {
            Identity::Insecure if self.insecure_dev => {
                [Role::Ward, Role::OfficeReader, Role::OfficeEditor, Role::Ops, Role::Backup].into()
            }
            Identity::Insecure => BTreeSet::new(),
            Identity::Ward(w) => {
                let mut roles = self.roles.get(&format!("ward-{w}")).cloned().unwrap_or_default();
                let ours = crate::model::reference::commune(w.as_str())
                    .is_some_and(|c| self.province.as_deref().is_none_or(|p| p == c.province));
                if ours {
                    roles.insert(Role::Ward);
                }
                roles
            }
            Identity::Named(n) => {
                let mut roles = self.roles.get(n).cloned().unwrap_or_default();
                if roles.contains(&Role::OfficeEditor) {
                    roles.insert(Role::OfficeReader);
                }
                roles
            }
        }
    }

    /// Admits `peer` if its certificate is not revoked and it has one of `any_of`.
    pub fn check(&self, peer: &Peer, any_of: &[Role], rpc: &str) -> Result<(), CityError> {
        if !peer.serial.is_empty()
            && (self.revoked.contains(&peer.serial) || self.revoked.contains(&peer.fingerprint))
        {
            return Err(CityError::PermissionDenied(format!(
                "the certificate of {} is revoked",
                peer.identity
            )));
        }
        if peer.identity == Identity::Insecure && !self.insecure_dev {
            return Err(CityError::PermissionDenied(format!(
                "no client certificate: {rpc} needs mutual TLS with a certificate of this city's CA"
            )));
        }
        let roles = self.roles_of(&peer.identity);
        if any_of.iter().any(|r| roles.contains(r)) {
            return Ok(());
        }
        let need: Vec<String> = any_of.iter().map(Role::to_string).collect();
        // (The reason a ward cannot see from its side: this city serves another province.)
        let why = match &peer.identity {
            Identity::Ward(w) if any_of.contains(&Role::Ward) => {
                match (crate::model::reference::commune(w.as_str()), &self.province) {
                    (None, _) => format!(": {w} is not a commune code in the reference data"),
                    (Some(c), Some(p)) if c.province != *p => format!(
                        ": ward {w} is a commune of province {}, and this city serves province {p} (its \
                         --province or `province` setting: is that right?)",
                        c.province
                    ),
                    _ => String::new(),
                }
            }
            _ => String::new(),
        };
        Err(CityError::PermissionDenied(format!(
            "{} may not call {rpc}: it needs the role {}{why}",
            peer.identity,
            need.join(" or ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WardCode;

    fn peer(identity: Identity) -> Peer {
        Peer { identity, serial: "0a".into(), fingerprint: "ff".into(), cert: std::sync::Arc::new([]) }
    }

    #[test]
    fn roles_revocation_and_provinces() {
        let mut a = Access { province: Some("01".into()), ..Access::default() };
        a.roles.insert("office".into(), [Role::OfficeEditor].into());
        a.roles.insert("grafana".into(), [Role::Ops].into());
        let hanoi = peer(Identity::Ward(WardCode::parse("00082").unwrap()));
        let saigon = peer(Identity::Ward(WardCode::parse("25747").unwrap()));
        let office = peer(Identity::Named("office".into()));
        let ops = peer(Identity::Named("grafana".into()));
        let stranger = peer(Identity::Named("someone".into()));
        assert!(a.check(&hanoi, &[Role::Ward], "Replicate").is_ok());
        let e = a.check(&saigon, &[Role::Ward], "Replicate").unwrap_err().to_string();
        assert!(e.contains("this city serves province 01"), "another province's ward: {e}");
        assert!(a.check(&office, &[Role::OfficeReader], "Get").is_ok(), "editors read too");
        assert!(a.check(&ops, &[Role::OfficeReader], "Get").is_err());
        let e = a.check(&stranger, &[Role::Ops, Role::OfficeReader], "Wards").unwrap_err();
        assert!(e.to_string().contains("needs the role ops or office-reader"), "{e}");
        a.revoked.insert("0a".into());
        assert!(a.check(&office, &[Role::OfficeReader], "Get").unwrap_err().to_string().contains("revoked"));
    }

    #[test]
    fn revoked_serials_and_fingerprints_match_however_operators_write_them() {
        // A serial whose top bit is set: DER stores it with a leading 00.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["ward-00082".into()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "ward-00082");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x8f, 0x01, 0x0a]));
        let cert = params.self_signed(&key).unwrap();
        let peer = Peer::from_der(cert.der()).unwrap();
        let fingerprint: Vec<String> = ring::digest::digest(&ring::digest::SHA256, cert.der())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        for written in [
            "serial=8F010A".to_string(),
            "8F:01:0A".into(),
            "008f010a".into(),
            "0x8F010A".into(),
            format!("SHA256 Fingerprint={}", fingerprint.join(":")),
            fingerprint.concat().to_lowercase(),
        ] {
            let a = Access { revoked: [hex_id(&written)].into(), ..Access::default() };
            let e = a.check(&peer, &[Role::Ward], "Replicate").unwrap_err();
            assert!(e.to_string().contains("revoked"), "{written}: {e}");
        }
        assert_eq!(hex_id("00"), "0");
    }

    #[test]
    fn a_peer_without_a_certificate_is_refused_unless_insecure_dev() {
        let nobody = Peer {
            identity: Identity::Insecure,
            serial: String::new(),
            fingerprint: String::new(),
            cert: std::sync::Arc::new([]),
        };
        let strict = Access::default();
        let e = strict.check(&nobody, &[Role::Ward], "Replicate").unwrap_err();
        assert!(e.to_string().contains("no client certificate"), "{e}");
        assert!(strict.roles_of(&nobody.identity).is_empty());
        let dev = Access { insecure_dev: true, ..Access::default() };
        assert!(dev.check(&nobody, &[Role::Ward], "Replicate").is_ok());
    }
}
