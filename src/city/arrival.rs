//! A ward's batch as it arrives, checked before it is queued: its changes
//! decoded, each one's content hash recomputed and compared with the one
//! the ward chained, the chain's links computed, and the ward's signature
//! of the last link verified against the certificate it connected with
//! (whose key id the content hashes must name). What passes is evidence:
//! the ward's key, and no one else's, made exactly this chain.

use super::CityError;
use super::ingest::incoming;
use crate::model::WardCode;
use crate::model::signed::{self, Hash, KeyId};
use crate::proto::pb;
use std::sync::Arc;

use crate::store::{Incoming, Links, Signed, SignedBatch};

/// Sequence numbers a ward may send are below this (2^62: no ward writes
/// that many changes); the city's arithmetic on them never overflows.
pub(crate) const MAX_SEQ: u64 = 1 << 62;

/// A batch whose chain and signature were checked.
#[derive(Debug)]
pub(crate) struct Arrived {
    /// Its changes, decoded or kept raw for the quarantine.
    pub changes: Vec<Incoming>,
    /// Their chain.
    pub links: Links,
}

impl Arrived {
    /// The link of the last change (or the one before the batch, if empty).
    fn head(&self) -> Hash {
        self.links.links.last().copied().unwrap_or(self.links.previous)
    }

    /// Appends `next` if it follows on: the next sequence, chained onto
    /// this batch's last link. Returns it back otherwise.
    pub fn join(&mut self, next: Arrived) -> Result<(), Arrived> {
        let follows = match (self.changes.last(), next.changes.first()) {
            (Some(a), Some(b)) => b.seq() == a.seq() + 1,
            _ => false,
        };
        if !follows || next.links.previous != self.head() || next.links.key != self.links.key {
            return Err(next);
        }
        let links: Vec<Hash> = self.links.links.iter().chain(next.links.links.iter()).copied().collect();
        self.links.links = links.into();
        // One run of the chain, signed at its last link: the joined batch's
        // evidence is both batches' hashes and the later signature.
        if let (Some(mine), Some(theirs)) = (self.links.signed.as_mut(), next.links.signed) {
            let mine = Arc::make_mut(mine);
            mine.batch.hashes.extend_from_slice(&theirs.batch.hashes);
            mine.batch.signature = theirs.batch.signature.clone();
            mine.authored.extend(theirs.authored.iter().cloned());
        }
        self.changes.extend(next.changes);
        Ok(())
    }
}

/// The key id of the certificate `cert` (DER; empty under `insecure_dev`,
/// which signs nothing).
pub(super) fn key_of(cert: &[u8]) -> Result<KeyId, CityError> {
    if cert.is_empty() {
        return Ok(KeyId::default());
    }
    crate::auth::key_id(cert).map_err(CityError::PermissionDenied)
}

/// Checks `batch` from `ward`, whose certificate is `cert` (key id `key`),
/// of at most `max` changes.
pub(crate) fn check(
    (ward, cert, key): (&WardCode, &Arc<[u8]>, KeyId),
    batch: pb::Batch,
    max: usize,
) -> Result<Arrived, CityError> {
    let bad = |what: String| CityError::Protocol(format!("batch: {what}"));
    let pb::Batch { changes, previous, hashes, signature } = batch;
    if changes.len() > max {
        return Err(CityError::Invalid(crate::model::ValidationError::single(
            "batch.changes",
            format!("{} changes exceed the limit of {max} per batch", changes.len()),
        )));
    }
    if hashes.len() != changes.len() {
        return Err(bad(format!("{} content hashes for {} changes (one each)", hashes.len(), changes.len())));
    }
    // (An empty batch asks only for an ack of what is applied.)
    let previous = match signed::hash_from(&previous) {
        Some(p) => p,
        None if changes.is_empty() => signed::GENESIS,
        None => return Err(bad(format!("previous is {} bytes, not a 32-byte link", previous.len()))),
    };
    let first = changes.first().map_or(1, |c| c.seq);
    // Checked before any arithmetic: no sum below can overflow.
    if first == 0 || first >= MAX_SEQ || changes.len() as u64 >= MAX_SEQ - first {
        return Err(bad(format!("sequence {first} is not one a ward numbers (1 to 2^62)")));
    }
    let mut chained = Vec::with_capacity(changes.len());
    let mut decoded = Vec::with_capacity(changes.len());
    let mut authored = Vec::new();
    for (i, (mut change, carried)) in changes.into_iter().zip(&hashes).enumerate() {
        let seq = change.seq;
        if seq != first + i as u64 {
            return Err(bad(format!(
                "change {i} has sequence {seq}, not {}: a batch is consecutive",
                first + i as u64
            )));
        }
        let Some(carried) = signed::hash_from(carried) else {
            return Err(bad(format!(
                "the content hash of sequence {seq} is {} bytes, not 32",
                carried.len()
            )));
        };
        // A change signed on its own (a registration): by this ward's key,
        // or the batch is refused. (Without a certificate: nothing to check
        // it against, and kept by no one.)
        let signature = std::mem::take(&mut change.signature);
        if !signature.is_empty() && !cert.is_empty() {
            crate::auth::verify(cert, &signed::authored_message(&carried), &signature).map_err(|e| {
                CityError::PermissionDenied(format!(
                    "the signature of change {seq} is not ward {ward}'s certificate key's: {e}"
                ))
            })?;
            authored.push((seq, signature));
        }
        let change = incoming(change);
        // A change the city cannot read is chained by the hash the ward
        // gave: the quarantine keeps its bytes as received.
        if let Incoming::Change(c) = &change
            && signed::content_hash(c, &key) != carried
        {
            return Err(bad(format!(
                "the content hash of sequence {seq} is not its content's (made with the certificate's key id)"
            )));
        }
        chained.push(carried);
        decoded.push(change);
    }
    let links = signed::links(ward, first, &previous, &chained);
    if let Some(last) = links.last()
        && !cert.is_empty()
    {
        crate::auth::verify(cert, &signed::batch_message(last), &signature).map_err(|e| {
            CityError::PermissionDenied(format!(
                "the signature of the batch ending at sequence {} is not ward {ward}'s certificate key's: {e}",
                first + links.len() as u64 - 1
            ))
        })?;
    }
    let signed = Signed {
        batch: SignedBatch { ward: ward.clone(), first, previous, hashes: chained, key, signature },
        cert: cert.clone(),
        authored,
    };
    Ok(Arrived {
        changes: decoded,
        links: Links { previous, links: links.into(), key, signed: Some(Arc::new(signed)) },
    })
}
