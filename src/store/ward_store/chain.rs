//! The ward's chain ([`crate::model::signed`]): where it stands at the
//! city's last acknowledgement (`m:chain`: the acknowledged sequence and
//! the link there, stored in the same batch that moves `m:acked` to it),
//! from which the link of any queued change is computed again: a link is
//! never stored with an entry, so renumbering the queue rewrites no hash.

use super::{CHUNK, WardStore};
use crate::model::signed::{self, Hash, KeyId};
use crate::model::{Change, Hlc};
use crate::store::codec::encode;
use crate::store::engine::{Batch, StoreError};

/// The key of the chain's anchor.
pub(super) const CHAIN: &[u8] = b"m:chain";

/// The anchor as stored: the acknowledged sequence and the link there
/// (`None`: not known, a store written before chains, or acknowledged by
/// a city that gave none).
pub(super) type Anchor = (u64, Option<Hash>);

/// Puts `anchor` in `batch`.
pub(super) fn store_anchor(batch: &mut Batch, anchor: Anchor) {
    batch.insert(CHAIN, encode(&anchor));
}

impl WardStore {
    /// The acknowledged sequence and the link there, if known.
    pub fn chain_anchor(&self) -> Anchor {
        self.lock().chain
    }

    /// The link of this ward's change `seq` (acknowledged or queued), its
    /// content hashes made with `key`, computed on from the anchor;
    /// `None` if the anchor's link is not known or `seq` is not between it
    /// and the last queued change.
    pub fn link_at(&self, seq: u64, key: &KeyId) -> Result<Option<Hash>, StoreError> {
        let ((mut at, link), last) = {
            let c = self.lock();
            (c.chain, c.last_seq)
        };
        let Some(mut link) = link else { return Ok(None) };
        if seq < at || seq > last {
            return Ok(None);
        }
        while at < seq {
            let changes = self.outbox_range(at, seq, CHUNK, usize::MAX)?;
            let Some(next) = changes.first().map(|c| c.seq) else { return Ok(None) };
            if next != at + 1 {
                return Ok(None); // (an entry missing: nothing to compute from)
            }
            link = chained(&self.ward, at, link, &changes, key);
            at += changes.len() as u64;
        }
        Ok(Some(link))
    }

    /// Moves this ward's clock past `newest` (the newest stamp of its the
    /// city holds): no write after it reuses a stamp a lost incarnation
    /// of this store gave. Stored with the next write.
    pub fn observe_clock(&self, newest: Hlc) {
        let mut c = self.lock();
        c.hlc = c.hlc.observe(newest, crate::clock::now_ms().max(0) as u64);
    }
}

/// The link of the last of `changes`, which follow `(at, link)` in order.
fn chained(ward: &crate::model::WardCode, at: u64, link: Hash, changes: &[Change], key: &KeyId) -> Hash {
    let hashes: Vec<Hash> = changes.iter().map(|c| signed::content_hash(c, key)).collect();
    signed::links(ward, at + 1, &link, &hashes).last().copied().unwrap_or(link)
}
