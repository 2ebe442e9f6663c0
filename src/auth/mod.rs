//! Who is calling: TLS configuration, identities from certificates, and the
//! development certificate authority.

mod access;
mod devca;
mod identity;
mod tls;

pub use access::{Access, Peer, Role, hex_id};
pub use devca::{DevCa, ward_cert_name};
pub use identity::{Identity, peer_identity};
pub use tls::{TlsFiles, client_tls, server_tls};
