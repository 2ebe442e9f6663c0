//! The outbox: queued changes read in order, a bounded batch at a time,
//! and deleted once the city has applied them, a chunk at a time.

use std::collections::HashSet;

use super::chain::store_anchor;
use super::{ACK_RECEIPT, ACKED, BYTES, CHUNK, OUTBOX, WardStore, outbox_key};
use crate::model::signed::Hash;
use crate::model::{Change, RecordKey};
use crate::store::codec::{be, decode, read_be};
use crate::store::engine::{Batch, Engine, StoreError, prefix_end};

/// Bytes of every queued outbox entry, read a chunk at a time (for a store
/// written before the count was kept under `m:bytes`).
pub(super) fn outbox_bytes(engine: &dyn Engine) -> Result<u64, StoreError> {
    let (mut start, end, mut total) = (OUTBOX.to_vec(), prefix_end(OUTBOX), 0);
    loop {
        let rows = engine.scan(&start, &end, CHUNK)?;
        total += rows.iter().map(|(_, v)| v.len() as u64).sum::<u64>();
        match rows.last() {
            Some((k, _)) if rows.len() == CHUNK => start = [k.as_slice(), &[0]].concat(),
            _ => return Ok(total),
        }
    }
}

impl WardStore {
    /// Queued changes with `after < seq <= upto`, in order, at most
    /// `max_entries` of them and about `max_bytes` (always at least one).
    pub fn outbox_range(
        &self,
        after: u64,
        upto: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<Change>, StoreError> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let rows = self.engine.scan(&outbox_key(after + 1), &outbox_key(upto + 1), max_entries)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for (k, v) in rows {
            bytes += v.len();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(decode::<Change>(&k, &v)?);
        }
        Ok(out)
    }

    /// The records the queued changes write, if at most `limit` are queued.
    pub fn queued_keys(&self, limit: u64) -> Result<Option<HashSet<RecordKey>>, StoreError> {
        let (mut after, last) = {
            let c = self.lock();
            (c.acked, c.last_seq)
        };
        if last - after > limit {
            return Ok(None);
        }
        let mut out = HashSet::new();
        loop {
            let changes = self.outbox_range(after, last, CHUNK, usize::MAX)?;
            let Some(l) = changes.last().map(|c| c.seq) else { return Ok(Some(out)) };
            out.extend(changes.into_iter().map(|c| c.key));
            after = l;
        }
    }

    /// Deletes entries up to `seq` once the city has applied them, a
    /// bounded number per batch (each batch raises the acknowledged mark to
    /// what it deleted, so a crash between batches loses nothing). The
    /// acknowledged sequence never moves backwards. The city's `receipt`
    /// for `seq` (empty: none came) is kept before any entry is deleted,
    /// unless one for a later sequence is held;
    /// `link`, this ward's chain link at `seq`, is stored with the last
    /// deletion (`None`: not known, so the city's next one is taken).
    pub fn ack(&self, seq: u64, receipt: &[u8], link: Option<Hash>) -> Result<(), StoreError> {
        let mut c = self.lock();
        // (At the same sequence too: the newer receipt proves as much, in
        // the city's newest loss generation, and replaces one a city made
        // before its receipts were signed.)
        if seq >= c.ack_receipt.0 && !receipt.is_empty() && receipt != c.ack_receipt.1 {
            let mut batch = Batch::default();
            batch.insert(ACK_RECEIPT, [&be(seq)[..], receipt].concat());
            self.engine.apply(batch)?;
            c.ack_receipt = (seq, receipt.to_vec());
        }
        let seq = seq.min(c.last_seq);
        while c.acked < seq {
            let rows = self.engine.scan(&outbox_key(c.acked + 1), &outbox_key(seq + 1), CHUNK)?;
            let upto = if rows.len() < CHUNK {
                seq
            } else {
                read_be(OUTBOX, &rows[rows.len() - 1].0[OUTBOX.len()..])?
            };
            let mut batch = Batch::default();
            let mut freed = 0;
            for (k, v) in rows {
                freed += v.len() as u64;
                batch.remove(k);
            }
            let queued = c.queued_bytes.saturating_sub(freed);
            batch.insert(ACKED, be(upto).to_vec());
            batch.insert(BYTES, be(queued).to_vec());
            let anchor = (upto, if upto == seq { link } else { None });
            store_anchor(&mut batch, anchor);
            self.engine.apply(batch)?;
            c.chain = anchor;
            c.acked = upto;
            c.queued_bytes = queued;
        }
        if c.acked == seq && c.chain == (seq, None) && link.is_some() {
            let mut batch = Batch::default();
            store_anchor(&mut batch, (seq, link));
            self.engine.apply(batch)?;
            c.chain = (seq, link);
        }
        Ok(())
    }
}
