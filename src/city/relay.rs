//! Writes by others a ward gives back in a repair (the city lost them, and
//! the ward holds them from the city): each is taken only on its author's
//! signature, the evidence the city sent with it ([`Authorship`]) checked
//! here as the city checks a caller, never on the ward's word. A ward's
//! signature of its own change to another ward's record must be that
//! ward's, by a certificate the CA issued, not revoked, over the content
//! hash it names; an office request must be signed by an office editor's
//! certificate, issued by the CA, not revoked, and come with the city's
//! own signed statement that it derived this very change (stamp, context,
//! values) from it, so that a request vouches for nothing else. (Not whether it was valid
//! when it signed: the city checked that when it took the request, and the
//! write is the very change it derived then, its stamp included.) What
//! passes vouches for a write ([`Vouched`]), compared with the write itself
//! where it is rebuilt (`store::city::repair`); the rest is dropped.

use std::sync::Arc;

use rustls::RootCertStore;

use super::receipts::Receipts;
use crate::auth::{Access, Identity, Peer, Role};
use crate::model::signed::authored_message;
use crate::store::{Authorship, Vouched};

/// Pieces of evidence read per record.
const MAX_PER_RECORD: usize = crate::store::MAX_AUTHORSHIP_PER_RECORD;

/// The writes `blobs` (a record's evidence, as a ward gave it back) vouch
/// for, checked against the CA `roots` and the access rules in force; and
/// how many did not pass.
pub(super) fn vouched(
    blobs: &[Vec<u8>],
    roots: Option<&Arc<RootCertStore>>,
    (access, receipts): (&Access, &Receipts),
) -> (Vec<Vouched>, usize) {
    let Some(roots) = roots else { return (Vec::new(), blobs.len()) };
    let mut out = Vec::new();
    for blob in blobs.iter().take(MAX_PER_RECORD) {
        let checked = |a| checked(a, blob, roots, (access, receipts));
        match Authorship::decode(blob).map_err(|e| e.to_string()).and_then(checked) {
            Ok(v) => out.push(v),
            Err(why) => tracing::warn!(reason = %why, "evidence of a write by another refused"),
        }
    }
    let refused = blobs.len() - out.len();
    (out, refused)
}

/// `a` (decoded from `blob`) if its signature is its author's, by a
/// certificate the CA issued to that author, not revoked.
fn checked(
    a: Authorship,
    blob: &[u8],
    roots: &Arc<RootCertStore>,
    (access, receipts): (&Access, &Receipts),
) -> Result<Vouched, String> {
    let author = |cert: &[u8], role: Role| -> Result<Peer, String> {
        crate::auth::issued_by(roots, cert)?;
        let peer = Peer::from_der(cert).map_err(|e| e.to_string())?;
        access.check(&peer, &[role], "a write relayed in a repair").map_err(|e| e.to_string())?;
        Ok(peer)
    };
    let evidence = blob.to_vec();
    match a {
        Authorship::Ward { hash, key, cert, signature, sent } => {
            let peer = author(&cert, Role::Ward)?;
            let Identity::Ward(writer) = peer.identity else { return Err("not a ward's certificate".into()) };
            if crate::auth::key_id(&cert)? != key {
                return Err("its certificate does not certify the key it names".into());
            }
            crate::auth::verify(&cert, &authored_message(&hash), &signature)?;
            Ok(Vouched::Ward { writer, hash, key, sent, evidence })
        }
        Authorship::Office { request: r, derived, city } => {
            if !receipts.proves_derived(&r.request.id, &derived, &city) {
                return Err("the city's statement of what it derived from the request does not hold".into());
            }
            let peer = author(&r.cert, Role::OfficeEditor)?;
            if !matches!(&peer.identity, Identity::Named(n) if *n == r.by) || r.signature.is_empty() {
                return Err(format!("not signed by {}", r.by));
            }
            if crate::auth::key_id(&r.cert)? != r.key {
                return Err("its certificate does not certify the key it names".into());
            }
            crate::auth::verify(&r.cert, &r.request.message(&r.key), &r.signature)?;
            Ok(Vouched::Office { request: r, derived, evidence })
        }
    }
}
