//! Who is calling: TLS configuration, identities from certificates, and the
//! development certificate authority.

mod access;
mod certificate;
mod devca;
mod identity;
mod signing;
mod tls;

pub use access::{Access, Peer, Role, hex_id};
pub use certificate::{EXPIRY_WARNING_DAYS, Expiry, OwnCertificate, watch_expiry};
pub use devca::{CERT_DAYS, DevCa, ward_cert_name};
pub use identity::{Identity, key_id, peer_identity};
pub use signing::{Signer, issued_by, valid_at, verify};
pub use tls::{TlsFiles, client_tls, roots, server_config};
