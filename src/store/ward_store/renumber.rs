//! Renumbering a ward's queue after the city's sequence (the ward lost data
//! and the city has applied numbers it never reached, or applied other
//! changes under numbers the ward used again: a fork), a chunk at a time,
//! with a progress mark that an interrupted renumbering is finished from.
//! The chain resumes on the city's link there, stored with the last step.

use super::chain::store_anchor;
use super::{ACKED, BYTES, CHUNK, Inner, LAST_SEQ, WardStore, outbox_key};
use crate::model::Change;
use crate::model::signed::Hash;
use crate::store::codec::{be, decode, encode};
use crate::store::engine::{Batch, Engine, StoreError};

/// The key of the progress mark.
pub(super) const SHIFT: &[u8] = b"m:shift";

/// A renumbering of the queued entries in progress (stored under
/// `m:shift` while it runs, so that a crash midway is finished on opening):
/// entries `low < seq <= below` still have their old numbers; those above
/// have moved up `by`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Shift {
    by: u64,
    low: u64,
    below: u64,
    /// The city's link at `low + by`, where the chain resumes.
    link: Option<Hash>,
}

/// Moves the queued entries up by `shift.by` (more than there are of
/// them, so old and new numbers never overlap), a chunk at a time from the
/// highest, each chunk one batch with the progress mark; the counter and
/// the acknowledged mark move last. At most `steps` chunks (a crash, in tests).
pub(super) fn finish_shift(
    engine: &dyn Engine,
    c: &mut Inner,
    mut shift: Shift,
    steps: usize,
) -> Result<(), StoreError> {
    for _ in 0..steps {
        let mut batch = Batch::default();
        if shift.below <= shift.low {
            // Done: the counter and the acknowledged mark move past the city's.
            let (last, acked) = (c.last_seq + shift.by, shift.low + shift.by);
            batch.insert(LAST_SEQ, be(last).to_vec());
            batch.insert(ACKED, be(acked).to_vec());
            store_anchor(&mut batch, (acked, shift.link));
            batch.remove(SHIFT);
            engine.apply(batch)?;
            (c.last_seq, c.acked, c.chain) = (last, acked, (acked, shift.link));
            return Ok(());
        }
        let start = shift.below.saturating_sub(CHUNK as u64 - 1).max(shift.low + 1);
        let rows = engine.scan(&outbox_key(start), &outbox_key(shift.below + 1), CHUNK)?;
        let mut moved = Vec::with_capacity(rows.len());
        let mut bytes = c.queued_bytes;
        for (k, v) in rows {
            let mut change: Change = decode(&k, &v)?;
            change.seq += shift.by;
            bytes = bytes.saturating_sub(v.len() as u64);
            batch.remove(k);
            moved.push(change);
        }
        for change in &moved {
            let v = encode(change);
            bytes += v.len() as u64;
            batch.insert(outbox_key(change.seq), v);
        }
        shift.below = start - 1;
        batch.insert(SHIFT, encode(&shift));
        batch.insert(BYTES, be(bytes).to_vec());
        engine.apply(batch)?;
        c.queued_bytes = bytes;
    }
    Ok(())
}

impl WardStore {
    /// The city has applied this ward's changes up to `city_applied`, a
    /// number this ward never reached: it lost data (a disk fault, a
    /// restored backup), and numbers it handed out since may already mean
    /// other changes at the city. Renumbers every queued entry, in order,
    /// right after `city_applied`, and moves the counter and the
    /// acknowledged mark there, with the city's `link` there, so no number
    /// the city applied is used again and nothing queued is lost. Returns
    /// how many entries were renumbered. Not durable until [`WardStore::flush`].
    pub fn move_past(&self, city_applied: u64, link: Option<Hash>) -> Result<u64, StoreError> {
        if city_applied <= self.last_seq() {
            return Ok(0);
        }
        self.renumber_after(city_applied, link)
    }

    /// The city applied, under this ward's numbers up to `city_applied`,
    /// changes other than this store's (its link there is not the
    /// city's): this store was put back to an older copy and numbered new
    /// changes again. Renumbers every entry not acknowledged, in order,
    /// right after `city_applied`, and moves the acknowledged mark there
    /// with the city's `link` (what the city applied under the numbers
    /// before is the city's to send back). Returns how many entries were
    /// renumbered. Not durable until [`WardStore::flush`].
    pub fn renumber_after(&self, city_applied: u64, link: Option<Hash>) -> Result<u64, StoreError> {
        self.renumber_steps(city_applied, link, usize::MAX)
    }

    /// [`WardStore::renumber_after`], stopping after `steps` chunks as a crash would.
    pub(crate) fn renumber_steps(
        &self,
        city_applied: u64,
        link: Option<Hash>,
        steps: usize,
    ) -> Result<u64, StoreError> {
        let mut c = self.lock();
        if city_applied < c.acked {
            return Ok(0);
        }
        let by = city_applied - c.acked;
        if by == 0 {
            let mut batch = Batch::default();
            store_anchor(&mut batch, (city_applied, link));
            self.engine.apply(batch)?;
            c.chain = (city_applied, link);
            return Ok(0);
        }
        let shift = Shift { by, low: c.acked, below: c.last_seq, link };
        let moved = c.last_seq - c.acked;
        finish_shift(&*self.engine, &mut c, shift, steps)?;
        Ok(moved)
    }
}
