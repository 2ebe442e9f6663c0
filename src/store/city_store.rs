//! The city's store: the merged records of every ward, the city-wide change
//! log, per-ward replication state and refused changes, in one key space.
//!
//! Layout (one sled tree):
//! - `r<kind tag><id>`             → current record;
//! - `x<ward><kind tag><id>`       → empty: index of records by owning ward;
//! - `l<cursor: u64 BE>`           → [`LoggedChange`]: the change log;
//! - `w<ward>`                     → [`WardState`]: last applied sequence...;
//! - `q<ward><seq: u64 BE>`        → [`RefusedChange`];
//! - `m:cursor`                    → highest cursor assigned.
//!
//! One group of ward batches is one atomic batch: records, index, log,
//! refusals and the wards' last applied sequences move together, so after a
//! crash a ward's last applied sequence describes exactly what is stored,
//! and a re-sent change is recognised as a duplicate (exactly-once in effect).
//! Cursors and applied sequences are read back from disk on open and only
//! grow, and the log is served only up to the flushed cursor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::codec::{be, decode, encode, key, read_be};
use super::engine::{Batch, Engine, StoreError, prefix_end};
use crate::model::{Change, Kind, Op, Record, RecordKey, WardCode};

const RECORD: &[u8] = b"r";
const BY_WARD: &[u8] = b"x";
const LOG: &[u8] = b"l";
const WARD: &[u8] = b"w";
const REFUSED: &[u8] = b"q";
const CURSOR: &[u8] = b"m:cursor";

/// Replication state of one ward as the city knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WardState {
    /// Highest sequence number durably applied (or refused) for the ward.
    pub last_applied_seq: u64,
    /// City time of the last batch, ms since the epoch.
    pub last_contact_ms: i64,
    /// Changes from this ward the city refused.
    pub refused: u64,
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

/// A change the city would not apply, kept for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedChange {
    /// The ward that sent it.
    pub ward: WardCode,
    /// Why it was refused.
    pub reason: String,
    /// City time of refusal, ms since the epoch.
    pub refused_at_ms: i64,
    /// The change as the ward sent it.
    pub change: Change,
}

/// A batch of changes from one ward, in its order.
#[derive(Debug, Clone)]
pub struct WardBatch {
    /// The authenticated sender.
    pub ward: WardCode,
    /// Its changes, ascending sequence numbers.
    pub changes: Vec<Change>,
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

fn record_key(k: &RecordKey) -> Vec<u8> {
    key(RECORD, &[&[k.kind().tag()], k.id().as_bytes()])
}

fn index_key(ward: &WardCode, k: &RecordKey) -> Vec<u8> {
    key(
        BY_WARD,
        &[
            ward.as_str().as_bytes(),
            &[k.kind().tag()],
            k.id().as_bytes(),
        ],
    )
}

fn ward_key(ward: &WardCode) -> Vec<u8> {
    key(WARD, &[ward.as_str().as_bytes()])
}

/// Start key for a page of ids after `after` under `prefix`.
fn page_start(prefix: &[u8], after: &str) -> Vec<u8> {
    let mut start = key(prefix, &[after.as_bytes()]);
    if !after.is_empty() {
        start.push(0);
    }
    start
}

impl CityStore {
    /// Opens the store and loads counters and ward states.
    pub fn open(engine: Arc<dyn Engine>) -> Result<CityStore, StoreError> {
        let cursor = engine.get(CURSOR)?.map_or(Ok(0), |v| read_be(CURSOR, &v))?;
        let mut wards = HashMap::new();
        for (k, v) in engine.scan(WARD, &prefix_end(WARD), usize::MAX)? {
            let code = WardCode::parse(&String::from_utf8_lossy(&k[1..])).map_err(|reason| {
                StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason,
                }
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

    /// Applies a group of batches as one atomic write. Duplicates (sequence
    /// already applied) are skipped; changes a ward may not make are stored
    /// as refused and still advance its sequence, so they never block the
    /// stream. Returns, per batch, the ward's last applied sequence or why
    /// the batch was rejected. Not durable until [`CityStore::flush`].
    pub fn apply_group(
        &self,
        group: &[WardBatch],
        now_ms: i64,
    ) -> Result<Vec<Result<u64, BatchRejected>>, StoreError> {
        let mut cache = self.cache.lock().expect("poisoned");
        let mut batch = Batch::default();
        let mut cursor = cache.cursor;
        let mut wards = cache.wards.clone();
        // Owners of records touched earlier in this group.
        let mut owners: HashMap<Vec<u8>, Option<WardCode>> = HashMap::new();
        let mut outcomes = Vec::with_capacity(group.len());
        for wb in group {
            let mut state = wards.get(&wb.ward).cloned().unwrap_or_default();
            let fresh: Vec<&Change> = wb
                .changes
                .iter()
                .filter(|c| c.seq > state.last_applied_seq)
                .collect();
            let contiguous = fresh
                .iter()
                .enumerate()
                .all(|(i, c)| c.seq == state.last_applied_seq + 1 + i as u64);
            if !contiguous {
                outcomes.push(Err(BatchRejected::Gap {
                    ward: wb.ward.clone(),
                    expected: state.last_applied_seq + 1,
                    got: fresh[0].seq,
                }));
                continue;
            }
            for change in fresh {
                let rk = record_key(&change.key);
                let owner = match owners.get(&rk) {
                    Some(o) => o.clone(),
                    None => self.owner_of(&rk)?,
                };
                if let Some(reason) = change.refusal(&wb.ward, owner.as_ref()) {
                    tracing::warn!(ward = %wb.ward, seq = change.seq, key = %change.key, %reason, "change refused");
                    let refused = RefusedChange {
                        ward: wb.ward.clone(),
                        reason,
                        refused_at_ms: now_ms,
                        change: change.clone(),
                    };
                    let qk = key(REFUSED, &[wb.ward.as_str().as_bytes(), &be(change.seq)]);
                    batch.insert(qk, encode(&refused));
                    state.refused += 1;
                } else {
                    match &change.op {
                        Op::Put(r) => {
                            if owner.is_none() {
                                state.records += 1;
                            }
                            batch.insert(rk.clone(), encode(r));
                            batch.insert(index_key(&r.ward, &change.key), Vec::new());
                            owners.insert(rk, Some(r.ward.clone()));
                        }
                        Op::Delete => {
                            batch.remove(rk.clone());
                            if let Some(o) = &owner {
                                // The refusal rule guarantees `o` is the sender.
                                batch.remove(index_key(o, &change.key));
                                state.records = state.records.saturating_sub(1);
                            }
                            owners.insert(rk, None);
                        }
                    }
                    cursor += 1;
                    let logged = LoggedChange {
                        cursor,
                        ward: wb.ward.clone(),
                        applied_at_ms: now_ms,
                        change: change.clone(),
                    };
                    batch.insert(key(LOG, &[&be(cursor)]), encode(&logged));
                }
                state.last_applied_seq = change.seq;
            }
            state.last_contact_ms = now_ms;
            batch.insert(ward_key(&wb.ward), encode(&state));
            outcomes.push(Ok(state.last_applied_seq));
            wards.insert(wb.ward.clone(), state);
        }
        batch.insert(CURSOR, be(cursor).to_vec());
        self.engine.apply(batch)?;
        cache.cursor = cursor;
        cache.wards = wards;
        Ok(outcomes)
    }

    fn owner_of(&self, rk: &[u8]) -> Result<Option<WardCode>, StoreError> {
        Ok(self
            .engine
            .get(rk)?
            .map(|v| decode::<Record>(rk, &v))
            .transpose()?
            .map(|r| r.ward))
    }

    /// Makes every applied group durable and publishes the log up to it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let cursor = self.cache.lock().expect("poisoned").cursor;
        self.engine.flush().await?;
        self.durable_cursor.fetch_max(cursor, Ordering::SeqCst);
        Ok(())
    }

    /// The current record under `key`.
    pub fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let k = record_key(key);
        self.engine.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Up to `limit` records of `kind` (owned by `ward` if given) with ids
    /// after `after`, in id order.
    pub fn list(
        &self,
        kind: Kind,
        ward: Option<&WardCode>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        match ward {
            None => {
                let prefix = key(RECORD, &[&[kind.tag()]]);
                self.engine
                    .scan(&page_start(&prefix, after), &prefix_end(&prefix), limit)?
                    .into_iter()
                    .map(|(k, v)| decode(&k, &v))
                    .collect()
            }
            Some(w) => {
                let prefix = key(BY_WARD, &[w.as_str().as_bytes(), &[kind.tag()]]);
                let rows =
                    self.engine
                        .scan(&page_start(&prefix, after), &prefix_end(&prefix), limit)?;
                let mut out = Vec::with_capacity(rows.len());
                for (k, _) in rows {
                    let rk = key(RECORD, &[&[kind.tag()], &k[prefix.len()..]]);
                    if let Some(v) = self.engine.get(&rk)? {
                        out.push(decode(&rk, &v)?);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Up to `limit` durable log entries with cursor greater than `after`.
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
        let durable = self.durable_cursor.load(Ordering::SeqCst);
        if after >= durable {
            return Ok(Vec::new());
        }
        self.engine
            .scan(
                &key(LOG, &[&be(after + 1)]),
                &key(LOG, &[&be(durable + 1)]),
                limit,
            )?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// Every ward the city has heard from, with its state, in code order.
    pub fn wards(&self) -> Vec<(WardCode, WardState)> {
        let c = self.cache.lock().expect("poisoned");
        let mut v: Vec<_> = c
            .wards
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Refused changes, of one ward or of all, oldest first per ward.
    pub fn refused(&self, ward: Option<&WardCode>) -> Result<Vec<RefusedChange>, StoreError> {
        let prefix = key(REFUSED, &[ward.map_or(&b""[..], |w| w.as_str().as_bytes())]);
        self.engine
            .scan(&prefix, &prefix_end(&prefix), usize::MAX)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.engine.size_on_disk()
    }
}
