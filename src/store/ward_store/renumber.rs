//! Renumbering a ward's queue after the city's sequence (the ward lost data
//! and the city has applied numbers it never reached, or applied other
//! changes under numbers the ward used again: a fork), a chunk at a time,
//! with a progress mark that an interrupted renumbering is finished from.
//! The chain resumes on the city's link there, stored with the last step.
//! Every step also stores the refill the renumbering makes due (the
//! records the lost copy wrote come back from the city), so that a crash
//! midway never forgets it; the last step counts the event (a fork, or a
//! jump past the city's numbering) in the store, where status reads it.

use super::chain::store_anchor;
use super::{ACKED, BYTES, CHUNK, Inner, LAST_SEQ, Lost, REFILL, WardStore, outbox_key};
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
    /// Why the queue moves.
    why: Renumbering,
}

/// The progress mark as stores written before chains kept it.
#[derive(serde::Deserialize)]
struct ShiftBefore {
    by: u64,
    low: u64,
    below: u64,
}

impl Shift {
    /// The progress mark stored under `m:shift`, in either form.
    pub(super) fn read(v: &[u8]) -> Result<Shift, StoreError> {
        decode::<Shift>(SHIFT, v).or_else(|e| match postcard::from_bytes::<ShiftBefore>(v) {
            Ok(b) => Ok(Shift { by: b.by, low: b.low, below: b.below, link: None, why: Renumbering::Behind }),
            Err(_) => Err(e),
        })
    }
}

/// Why a ward's queue is renumbered after the city's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Renumbering {
    /// A store restored from the city (new, or put back from a marked
    /// copy) continues after the city's numbering: nothing was lost.
    Restore,
    /// The city applied numbers this store never reached: it lost data.
    Behind,
    /// The city applied other changes under numbers this store used again
    /// (its link there is not the city's): it was put back to an older
    /// copy and forked.
    Fork,
    /// The city applied numbers this store holds queued changes under,
    /// and neither side's link there is known to compare (a store or a
    /// city from before chains): they are sent again after the city's,
    /// which is harmless if they were the same.
    Unverifiable,
}

/// The key of the count of forks found, and of jumps past the city's numbering.
pub(super) const FORKS: &[u8] = b"m:forks";
pub(super) const JUMPS: &[u8] = b"m:jumps";

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
    // Records the lost copy wrote come back from the city (a refill already
    // due for the city stays so).
    let refill =
        (shift.why != Renumbering::Restore).then(|| c.refill.map_or(Lost::Ward, |d| d.max(Lost::Ward)));
    for _ in 0..steps {
        let mut batch = Batch::default();
        if let Some(due) = refill {
            batch.insert(REFILL, vec![due as u8]);
        }
        if shift.below <= shift.low {
            // Done: the counter and the acknowledged mark move past the city's.
            let (last, acked) = (c.last_seq + shift.by, shift.low + shift.by);
            batch.insert(LAST_SEQ, be(last).to_vec());
            batch.insert(ACKED, be(acked).to_vec());
            store_anchor(&mut batch, (acked, shift.link));
            match shift.why {
                Renumbering::Fork => batch.insert(FORKS, be(c.forks + 1).to_vec()),
                Renumbering::Behind => batch.insert(JUMPS, be(c.jumps + 1).to_vec()),
                Renumbering::Restore | Renumbering::Unverifiable => {}
            }
            batch.remove(SHIFT);
            engine.apply(batch)?;
            (c.last_seq, c.acked, c.chain) = (last, acked, (acked, shift.link));
            match shift.why {
                Renumbering::Fork => c.forks += 1,
                Renumbering::Behind => c.jumps += 1,
                Renumbering::Restore | Renumbering::Unverifiable => {}
            }
            c.refill = refill.or(c.refill);
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
    /// number this ward never reached (it lost data: a disk fault, a
    /// restored backup; or `why` it is restored from the city), and
    /// numbers it handed out since may already mean other changes at the
    /// city. Renumbers every queued entry, in order, right after
    /// `city_applied`, and moves the counter and the acknowledged mark
    /// there, with the city's `link` there, so no number the city applied
    /// is used again and nothing queued is lost. Returns how many entries
    /// were renumbered. Not durable until [`WardStore::flush`].
    pub fn move_past(
        &self,
        city_applied: u64,
        link: Option<Hash>,
        why: Renumbering,
    ) -> Result<u64, StoreError> {
        if city_applied <= self.last_seq() {
            return Ok(0);
        }
        self.renumber_after(city_applied, link, why)
    }

    /// Renumbers every entry not acknowledged, in order, right after
    /// `city_applied` (at or past the acknowledged mark), and moves the
    /// acknowledged mark there with the city's `link`: what the city
    /// applied under the numbers before is the city's to send back (a
    /// refill is made due, with the renumbering, unless `why` is a
    /// restore). Returns how many entries were renumbered. Not durable
    /// until [`WardStore::flush`].
    pub fn renumber_after(
        &self,
        city_applied: u64,
        link: Option<Hash>,
        why: Renumbering,
    ) -> Result<u64, StoreError> {
        self.renumber_steps(city_applied, (link, why), usize::MAX)
    }

    /// [`WardStore::renumber_after`], stopping after `steps` chunks as a crash would.
    pub(crate) fn renumber_steps(
        &self,
        city_applied: u64,
        (link, why): (Option<Hash>, Renumbering),
        steps: usize,
    ) -> Result<u64, StoreError> {
        let mut c = self.lock();
        if city_applied < c.acked {
            return Ok(0);
        }
        let by = city_applied - c.acked;
        let shift = Shift { by, low: c.acked, below: c.last_seq, link, why };
        let moved = c.last_seq - c.acked;
        finish_shift(&*self.engine, &mut c, shift, steps)?;
        Ok(moved)
    }

    /// Forks found, and jumps past the city's numbering, in this store's life.
    pub fn renumberings(&self) -> (u64, u64) {
        let c = self.lock();
        (c.forks, c.jumps)
    }
}
