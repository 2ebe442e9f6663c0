//! What proves who made the writes by others a ward holds: for each write
//! the city sent it that it did not make itself (an office correction or
//! settlement, another ward's registration), the evidence the city sent
//! with it, kept as received (the ward never reads it) and given back with
//! the record's state when the ward refills a city that lost data: the
//! city takes a write by another only on its author's signature.
//!
//! Kept under `a<tag><id>\0<wall: u64 BE><logical: u32 BE><writer>`, read
//! back by stamp for the writes by others the record's state still holds
//! (at most [`MAX_PER_RECORD`]). (Evidence of a write superseded since
//! stays on disk: as many rows as the office's and other wards' writes to
//! the ward's records.)

use super::{WardStore, tagged};
use crate::model::{RecordKey, Stamp, Versioned};
use crate::store::codec::key;
use crate::store::engine::{Batch, StoreError};

/// The prefix of the evidence kept.
pub(super) const AUTHORSHIP: &[u8] = b"a";

/// Most pieces of evidence given back with one record's state.
pub const MAX_PER_RECORD: usize = 32;

fn prefix(k: &RecordKey) -> Vec<u8> {
    key(&tagged(AUTHORSHIP, k), &[b"\0"])
}

/// Where the evidence of the write stamped `stamp` to `k` is kept.
fn at(k: &RecordKey, stamp: &Stamp) -> Vec<u8> {
    key(
        &prefix(k),
        &[&stamp.hlc.wall_ms.to_be_bytes(), &stamp.hlc.logical.to_be_bytes(), stamp.writer.as_bytes()],
    )
}

/// Stores the evidence of the write stamped `stamp` to `k`, in `batch`.
pub(super) fn keep(batch: &mut Batch, k: &RecordKey, stamp: &Stamp, evidence: &[u8]) {
    batch.insert(at(k, stamp), evidence.to_vec());
}

impl WardStore {
    /// The evidence kept of the writes by others than `ward` that `state`
    /// (of `k`) holds, newest last (at most [`MAX_PER_RECORD`]).
    pub fn authorship_of(
        &self,
        k: &RecordKey,
        state: &Versioned,
        ward: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stamps: Vec<&Stamp> =
            state.fields.values().flatten().map(|w| &w.stamp).filter(|s| s.writer != ward).collect();
        stamps.sort_by_key(|s| (s.hlc, &s.writer));
        stamps.dedup();
        let newest = stamps.len().saturating_sub(MAX_PER_RECORD);
        let mut out = Vec::new();
        for stamp in &stamps[newest..] {
            out.extend(self.engine.get(&at(k, stamp))?);
        }
        Ok(out)
    }
}
