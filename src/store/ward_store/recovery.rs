//! What verification and recovery need of the ward's store
//! (`ward::verify`): the records it shows and those it no longer does, page
//! by page; the city's states merged in; the marks of a refill due, of a
//! store put back from a copy, and of the downstream position.

use super::{
    Batch, CountDelta, DOWN, DOWN_CHECK, DOWN_RECEIPT, HLC, Kind, LOSS_SEEN, Overlay, RECORD, REFILL, STATE,
    StoreError, WardStore, be, decode, encode, prefix_end, read_be, tagged,
};
use crate::model::{RecordKey, Versioned};

/// Records with their states, and the key to read on after (none: the end).
pub type StatesPage = (Vec<(RecordKey, Versioned)>, Option<RecordKey>);

/// Which side lost data, for a refill due: the city's loss weighs more
/// (its refill must send even records with changes queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lost {
    /// This ward: it gets back from the city what it lost.
    Ward = 1,
    /// The city (perhaps this ward too): each gets back what it lost.
    City = 2,
}

impl Lost {
    /// As stored; anything but the ward's mark counts as the city's loss.
    pub(super) fn from_byte(b: &[u8]) -> Option<Lost> {
        Some(if b == [Lost::Ward as u8] { Lost::Ward } else { Lost::City })
    }
}

impl WardStore {
    /// Merges records' states fetched from the city, in one batch, and
    /// moves the downstream cursor up to `cursor` (a restore: the states
    /// hold every change up to it).
    pub fn adopt_states(&self, states: &[(RecordKey, Versioned)], cursor: u64) -> Result<(), StoreError> {
        let mut c = self.lock();
        let mut overlay = Overlay::new(&*self.engine);
        let mut hlc = c.hlc;
        let now = crate::clock::now_ms().max(0) as u64;
        for (key, state) in states {
            if let Some(own) = state.seen.0.get(self.ward.as_str()) {
                // This ward's next stamps follow its own writes, even those
                // it knows of only from the city (its disk was replaced).
                hlc = hlc.observe(*own, now);
            }
            overlay.state(key)?.merge(state);
        }
        let mut batch = Batch::default();
        let mut delta = CountDelta::default();
        let policies = c.policies.clone();
        for (k, (state, shown)) in &overlay.states {
            self.put_state(&mut batch, &mut delta, k, (state, *shown), None, &policies);
        }
        batch.insert(HLC, encode(&hlc));
        if cursor > c.down {
            batch.insert(DOWN, be(cursor).to_vec());
            batch.remove(DOWN_CHECK);
            batch.remove(DOWN_RECEIPT);
        }
        self.engine.apply(batch)?;
        delta.apply(&mut c.records);
        c.hlc = hlc;
        if cursor > c.down {
            (c.down, c.down_check, c.down_receipt) = (cursor, 0, Vec::new());
        }
        Ok(())
    }

    /// The refill due, if this ward or the city lost data and the two have
    /// not been brought level since.
    pub fn refill_due(&self) -> Option<Lost> {
        self.lock().refill
    }

    /// Notes that a refill is due because `lost` lost data (a refill
    /// already due for the city stays so), or that none is (`None`: done).
    /// Not durable until [`WardStore::flush`].
    pub fn set_refill_due(&self, lost: Option<Lost>) -> Result<(), StoreError> {
        let mut c = self.lock();
        let due = lost.map(|l| c.refill.map_or(l, |d| d.max(l)));
        let mut batch = Batch::default();
        match due {
            Some(l) => batch.insert(REFILL, vec![l as u8]),
            None => batch.remove(REFILL),
        }
        self.engine.apply(batch)?;
        c.refill = due;
        Ok(())
    }

    /// When the city last found it had lost data of this ward's, as far as
    /// a refill has been made due for it (0: never).
    pub fn loss_seen(&self) -> Result<i64, StoreError> {
        Ok(self.engine.get(LOSS_SEEN)?.map_or(Ok(0), |v| read_be(LOSS_SEEN, &v))? as i64)
    }

    /// Notes a loss the city found at `found_at_ms` as seen (its refill due).
    /// Not durable until [`WardStore::flush`].
    pub fn see_loss(&self, found_at_ms: i64) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.insert(LOSS_SEEN, be(found_at_ms.max(0) as u64).to_vec());
        self.engine.apply(batch)
    }

    /// Moves the downstream cursor back to `cursor`: the city's log ends
    /// there (it lost what came after, and numbers its new changes from it).
    pub fn rewind_downstream(&self, cursor: u64) -> Result<(), StoreError> {
        let mut c = self.lock();
        let mut batch = Batch::default();
        batch.insert(DOWN, be(cursor).to_vec());
        batch.remove(DOWN_CHECK);
        batch.remove(DOWN_RECEIPT);
        self.engine.apply(batch)?;
        (c.down, c.down_check, c.down_receipt) = (cursor, 0, Vec::new());
        Ok(())
    }

    /// True for a store put back from a copy and not yet brought level
    /// with the city (see [`crate::store::backup::COPY_MARK`]).
    pub fn is_copy(&self) -> Result<bool, StoreError> {
        Ok(self.engine.get(crate::store::backup::COPY_MARK)?.is_some())
    }

    /// Notes that the store, a copy, has been brought level with the city.
    pub fn level_with_city(&self) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.remove(crate::store::backup::COPY_MARK);
        self.engine.apply(batch)
    }

    /// True for a store that holds nothing: never written, never replicated.
    pub fn is_new(&self) -> bool {
        let c = self.lock();
        c.last_seq == 0 && c.acked == 0 && c.down == 0 && c.records == [0; 3]
    }

    /// Up to `limit` records this ward holds a state of and does not show
    /// (deleted, or passed to another ward), with their states, after
    /// `after` (none: from the first) in key order; read in pages of
    /// `limit` whatever they hold.
    pub fn hidden_states_after(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<StatesPage, StoreError> {
        let start = match after {
            Some(k) => [tagged(STATE, k).as_slice(), &[0]].concat(),
            None => STATE.to_vec(),
        };
        let rows = self.engine.scan(&start, &prefix_end(STATE), limit)?;
        let mut out = Vec::new();
        let mut last = None;
        for (k, v) in &rows {
            let Some(kind) = Kind::from_tag(k[1]) else { continue };
            let Ok(rk) = RecordKey::new(kind, &String::from_utf8_lossy(&k[2..])) else { continue };
            if self.engine.get(&tagged(RECORD, &rk))?.is_none() {
                out.push((rk.clone(), decode(k, v)?));
            }
            last = Some(rk);
        }
        Ok((out, last.filter(|_| rows.len() == limit)))
    }

    /// Up to `limit` records this ward shows, with their states, after
    /// `after` (none: from the first) in key order.
    pub fn states_after(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, Versioned)>, StoreError> {
        let start = match after {
            Some(k) => [tagged(RECORD, k).as_slice(), &[0]].concat(),
            None => RECORD.to_vec(),
        };
        let mut out = Vec::new();
        for (k, _) in self.engine.scan(&start, &prefix_end(RECORD), limit)? {
            let Some(kind) = Kind::from_tag(k[1]) else { continue };
            let Ok(rk) = RecordKey::new(kind, &String::from_utf8_lossy(&k[2..])) else { continue };
            if let Some(state) = self.state(&rk)? {
                out.push((rk, state));
            }
        }
        Ok(out)
    }
}
