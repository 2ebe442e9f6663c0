//! The city's store: the merged records of every ward, their indexes, the
//! city-wide change log, per-ward replication state, and the quarantine of
//! changes the city would not apply. Layout in [`keys`].
//!
//! One group of ward batches is one atomic batch: records, indexes, log,
//! quarantine entries and the wards' last applied sequences move together,
//! so after a crash a ward's last applied sequence describes exactly what
//! is stored, and a re-sent change is recognised as a duplicate
//! (exactly-once in effect). Cursors and applied sequences are read back
//! from disk on open and only grow, and the log is served only up to the
//! flushed cursor.

mod keys;
mod quarantine;
mod queries;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::codec::{be, decode, encode, read_be};
use super::engine::{Batch, Engine, StoreError, prefix_end};
use crate::model::{Change, Context, Op, Record, RecordKey, WardCode};
use keys::{
    CURSOR, QUARANTINE, WARD, index_entries, log_key, quarantine_key, record_key, version_key, ward_key,
};

pub use quarantine::{Discarded, Quarantined, RetryError};

/// Replication state of one ward as the city knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WardState {
    /// Highest sequence number durably applied (or quarantined) for the ward.
    pub last_applied_seq: u64,
    /// City time of the last batch, ms since the epoch.
    pub last_contact_ms: i64,
    /// Changes from this ward waiting in quarantine.
    pub quarantined: u64,
    /// Records the ward owns at the city.
    pub records: u64,
}

/// One applied change in the city-wide log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedChange {
    /// Position in the log, from 1.
    pub cursor: u64,
    /// The ward that sent it.
    pub ward: WardCode,
    /// City time of application, ms since the epoch.
    pub applied_at_ms: i64,
    /// The change as the ward sent it.
    pub change: Change,
}

/// One change as received from a ward: decoded, or too malformed to decode
/// (then kept as the raw bytes the ward sent).
// Malformed changes are rare; boxing the common case would cost more.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A change whose format is right (its content is checked on apply).
    Change(Change),
    /// A change that could not be decoded.
    Malformed {
        /// Its sequence number.
        seq: u64,
        /// Why it could not be decoded.
        reason: String,
        /// The encoded change as received.
        raw: Vec<u8>,
    },
}

impl Incoming {
    /// The change's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Incoming::Change(c) => c.seq,
            Incoming::Malformed { seq, .. } => *seq,
        }
    }
}

/// A batch of changes from one ward, in its order.
#[derive(Debug, Clone)]
pub struct WardBatch {
    /// The authenticated sender.
    pub ward: WardCode,
    /// Its changes, ascending sequence numbers.
    pub changes: Vec<Incoming>,
}

/// Why a whole batch was rejected (nothing of it stored).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchRejected {
    /// The batch skips sequence numbers the city has not applied.
    #[error("ward {ward} sent sequence {got} but the city expects {expected}: resume from Welcome")]
    Gap {
        /// The sending ward.
        ward: WardCode,
        /// The next sequence the city can apply.
        expected: u64,
        /// What the batch contained.
        got: u64,
    },
}

struct Cache {
    cursor: u64,
    wards: HashMap<WardCode, WardState>,
}

/// The city database over any [`Engine`].
#[derive(Clone)]
pub struct CityStore {
    engine: Arc<dyn Engine>,
    cache: Arc<Mutex<Cache>>,
    durable_cursor: Arc<AtomicU64>,
}

/// One atomic write being assembled: sees its own earlier changes.
struct GroupWrite<'a> {
    engine: &'a dyn Engine,
    batch: Batch,
    cursor: u64,
    now_ms: i64,
    records: HashMap<Vec<u8>, Option<Record>>,
}

impl GroupWrite<'_> {
    fn current(&mut self, k: &RecordKey) -> Result<Option<Record>, StoreError> {
        let rk = record_key(k);
        if let Some(r) = self.records.get(&rk) {
            return Ok(r.clone());
        }
        let r = self.engine.get(&rk)?.map(|v| decode(&rk, &v)).transpose()?;
        self.records.insert(rk, r.clone());
        Ok(r)
    }

    /// Applies an accepted change: record, indexes, version, log.
    fn apply(&mut self, ward: &WardCode, state: &mut WardState, change: &Change) -> Result<(), StoreError> {
        let old = self.current(&change.key)?;
        if let Some(old) = &old {
            for k in index_entries(&change.key, old) {
                self.batch.remove(k);
            }
        }
        let rk = record_key(&change.key);
        match &change.op {
            Op::Put(r) => {
                if old.is_none() {
                    state.records += 1;
                }
                self.batch.insert(rk.clone(), encode(r));
                for k in index_entries(&change.key, r) {
                    self.batch.insert(k, Vec::new());
                }
                self.records.insert(rk, Some(r.clone()));
            }
            Op::Delete => {
                if old.is_some() {
                    // The ownership rule guarantees the deleted record was the sender's.
                    state.records = state.records.saturating_sub(1);
                }
                self.batch.remove(rk.clone());
                self.records.insert(rk, None);
            }
        }
        self.cursor += 1;
        self.batch.insert(version_key(&change.key), be(self.cursor).to_vec());
        let logged = LoggedChange {
            cursor: self.cursor,
            ward: ward.clone(),
            applied_at_ms: self.now_ms,
            change: change.clone(),
        };
        self.batch.insert(log_key(self.cursor), encode(&logged));
        Ok(())
    }

    /// Why `change` from `ward` cannot be applied now, if it cannot.
    fn refusal(
        &mut self,
        ward: &WardCode,
        change: &Change,
        ctx: &Context,
    ) -> Result<Option<String>, StoreError> {
        let owner = self.current(&change.key)?.map(|r| r.ward);
        Ok(change.refusal(ward, owner.as_ref(), ctx))
    }
}

impl CityStore {
    /// Opens the store and loads counters and ward states.
    pub fn open(engine: Arc<dyn Engine>) -> Result<CityStore, StoreError> {
        let cursor = engine.get(CURSOR)?.map_or(Ok(0), |v| read_be(CURSOR, &v))?;
        let mut wards = HashMap::new();
        for (k, v) in engine.scan(WARD, &prefix_end(WARD), usize::MAX)? {
            let code = WardCode::parse(&String::from_utf8_lossy(&k[1..])).map_err(|reason| {
                StoreError::Corrupt { key: String::from_utf8_lossy(&k).into_owned(), reason }
            })?;
            wards.insert(code, decode(&k, &v)?);
        }
        Ok(CityStore {
            engine,
            cache: Arc::new(Mutex::new(Cache { cursor, wards })),
            durable_cursor: Arc::new(AtomicU64::new(cursor)),
        })
    }

    /// The last sequence durably applied for `ward` (0 if never seen).
    pub fn last_applied(&self, ward: &WardCode) -> u64 {
        let c = self.cache.lock().expect("poisoned");
        c.wards.get(ward).map_or(0, |s| s.last_applied_seq)
    }

    /// Runs `f` over one atomic write and commits it with the ward states it returns.
    fn write<T>(
        &self,
        now_ms: i64,
        f: impl FnOnce(&mut GroupWrite, &mut HashMap<WardCode, WardState>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut cache = self.cache.lock().expect("poisoned");
        let mut wards = cache.wards.clone();
        let mut w = GroupWrite {
            engine: &*self.engine,
            batch: Batch::default(),
            cursor: cache.cursor,
            now_ms,
            records: HashMap::new(),
        };
        let out = f(&mut w, &mut wards)?;
        for (ward, state) in &wards {
            if cache.wards.get(ward) != Some(state) {
                w.batch.insert(ward_key(ward), encode(state));
            }
        }
        w.batch.insert(CURSOR, be(w.cursor).to_vec());
        self.engine.apply(w.batch)?;
        cache.cursor = w.cursor;
        cache.wards = wards;
        Ok(out)
    }

    /// Applies a group of batches as one atomic write. Duplicates (sequence
    /// already applied) are skipped; changes that are malformed, invalid or
    /// not the sender's to make are quarantined and still advance its
    /// sequence, so they never block the stream. Returns, per batch, the
    /// ward's last applied sequence or why the batch was rejected. Not
    /// durable until [`CityStore::flush`].
    pub fn apply_group(
        &self,
        group: &[WardBatch],
        now_ms: i64,
        ctx: &Context,
    ) -> Result<Vec<Result<u64, BatchRejected>>, StoreError> {
        self.write(now_ms, |w, wards| {
            let mut outcomes = Vec::with_capacity(group.len());
            for wb in group {
                let mut state = wards.get(&wb.ward).cloned().unwrap_or_default();
                let fresh: Vec<&Incoming> = wb.changes.iter().filter(|c| c.seq() > state.last_applied_seq).collect();
                let contiguous = fresh.iter().enumerate().all(|(i, c)| c.seq() == state.last_applied_seq + 1 + i as u64);
                if !contiguous {
                    outcomes.push(Err(BatchRejected::Gap {
                        ward: wb.ward.clone(),
                        expected: state.last_applied_seq + 1,
                        got: fresh[0].seq(),
                    }));
                    continue;
                }
                for incoming in fresh {
                    let refusal = match incoming {
                        Incoming::Change(change) => w.refusal(&wb.ward, change, ctx)?,
                        Incoming::Malformed { reason, .. } => Some(format!("malformed: {reason}")),
                    };
                    match (refusal, incoming) {
                        (None, Incoming::Change(change)) => w.apply(&wb.ward, &mut state, change)?,
                        (Some(reason), incoming) => {
                            tracing::warn!(ward = %wb.ward, seq = incoming.seq(), %reason, "change quarantined");
                            let q = Quarantined::new(&wb.ward, incoming, reason, now_ms, w.cursor);
                            w.batch.insert(quarantine_key(QUARANTINE, &wb.ward, incoming.seq()), encode(&q));
                            state.quarantined += 1;
                        }
                        (None, Incoming::Malformed { .. }) => unreachable!("malformed changes are always refused"),
                    }
                    state.last_applied_seq = incoming.seq();
                }
                state.last_contact_ms = now_ms;
                outcomes.push(Ok(state.last_applied_seq));
                wards.insert(wb.ward.clone(), state);
            }
            Ok(outcomes)
        })
    }

    /// Makes every applied group durable and publishes the log up to it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let cursor = self.cache.lock().expect("poisoned").cursor;
        self.engine.flush().await?;
        self.durable_cursor.fetch_max(cursor, Ordering::SeqCst);
        Ok(())
    }

    /// Every ward the city has heard from, with its state, in code order.
    pub fn wards(&self) -> Vec<(WardCode, WardState)> {
        let c = self.cache.lock().expect("poisoned");
        let mut v: Vec<_> = c.wards.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every value under `prefix`, decoded.
    fn scan_decoded<T: serde::de::DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.engine
            .scan(prefix, &prefix_end(prefix), usize::MAX)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.engine.size_on_disk()
    }
}
