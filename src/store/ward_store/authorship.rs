//! What proves who made the writes by others a ward holds: for each write
//! the city sent it that it did not make itself (an office correction or
//! settlement, another ward's registration), the evidence the city sent
//! with it, kept as received (the ward never reads it) and given back with
//! the record's state when the ward refills a city that lost data: the
//! city takes a write by another only on its author's signature.
//!
//! Kept under `a<tag><id>\0<wall: u64 BE><logical: u32 BE><writer>`, at
//! most [`MAX_PER_RECORD`] given back per record (the newest): as many as
//! the office's and other wards' writes to the ward's records.

use super::{WardStore, tagged};
use crate::model::{RecordKey, Stamp};
use crate::store::codec::key;
use crate::store::engine::{Batch, StoreError, prefix_end};

/// The prefix of the evidence kept.
pub(super) const AUTHORSHIP: &[u8] = b"a";

/// Most pieces of evidence given back with one record's state.
pub const MAX_PER_RECORD: usize = 32;

fn prefix(k: &RecordKey) -> Vec<u8> {
    key(&tagged(AUTHORSHIP, k), &[b"\0"])
}

/// Stores the evidence of the write stamped `stamp` to `k`, in `batch`.
pub(super) fn keep(batch: &mut Batch, k: &RecordKey, stamp: &Stamp, evidence: &[u8]) {
    let at = key(
        &prefix(k),
        &[&stamp.hlc.wall_ms.to_be_bytes(), &stamp.hlc.logical.to_be_bytes(), stamp.writer.as_bytes()],
    );
    batch.insert(at, evidence.to_vec());
}

impl WardStore {
    /// The evidence kept of writes by others to `k`, newest last (at most
    /// [`MAX_PER_RECORD`]).
    pub fn authorship_of(&self, k: &RecordKey) -> Result<Vec<Vec<u8>>, StoreError> {
        let p = prefix(k);
        let all = self.engine.scan(&p, &prefix_end(&p), usize::MAX)?;
        let skip = all.len().saturating_sub(MAX_PER_RECORD);
        Ok(all.into_iter().skip(skip).map(|(_, v)| v).collect())
    }
}
