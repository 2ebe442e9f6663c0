//! The ward's store: its records and its outbox, in one key space.
//!
//! Layout (one sled tree):
//! - `r<kind tag><id>`  → the record;
//! - `o<seq: u64 BE>`   → the queued change with that sequence number;
//! - `m:last_seq`       → highest sequence number ever assigned;
//! - `m:acked`          → highest sequence number the city acknowledged.
//!
//! Why this is crash-safe without transactions: a write puts the record, its
//! outbox entry and `m:last_seq` in one atomic batch, so after a crash either
//! all three exist or none does, and a sequence number is never reused. The
//! writer flushes before acknowledging; the replicator only sends entries up
//! to the flushed watermark, so the city never sees a change a crash could
//! take back. Deleting acknowledged entries is a second batch that also
//! raises `m:acked`; if a crash loses it, those entries are sent again and
//! the city skips them as duplicates.

use std::sync::{Arc, Mutex};

use super::codec::{be, decode, encode, key, read_be};
use super::engine::{Batch, Engine, StoreError, prefix_end};
use crate::model::{Change, Kind, Op, Record, RecordKey};

const RECORD: &[u8] = b"r";
const OUTBOX: &[u8] = b"o";
const LAST_SEQ: &[u8] = b"m:last_seq";
const ACKED: &[u8] = b"m:acked";

/// A write waiting to be numbered and stored.
#[derive(Debug, Clone)]
pub struct NewChange {
    /// The record written.
    pub key: RecordKey,
    /// What is done to it.
    pub op: Op,
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    last_seq: u64,
    acked: u64,
}

/// Records and outbox of one ward, over any [`Engine`].
#[derive(Clone)]
pub struct WardStore {
    engine: Arc<dyn Engine>,
    counters: Arc<Mutex<Counters>>,
    max_outbox: u64,
}

fn record_key(k: &RecordKey) -> Vec<u8> {
    key(RECORD, &[&[k.kind().tag()], k.id().as_bytes()])
}

fn outbox_key(seq: u64) -> Vec<u8> {
    key(OUTBOX, &[&be(seq)])
}

impl WardStore {
    /// Opens the store; at most `max_outbox` entries may be queued.
    pub fn open(engine: Arc<dyn Engine>, max_outbox: u64) -> Result<WardStore, StoreError> {
        let read = |k: &[u8]| -> Result<u64, StoreError> { engine.get(k)?.map_or(Ok(0), |v| read_be(k, &v)) };
        let counters = Counters { last_seq: read(LAST_SEQ)?, acked: read(ACKED)? };
        Ok(WardStore { engine, counters: Arc::new(Mutex::new(counters)), max_outbox })
    }

    fn counters(&self) -> Counters {
        *self.counters.lock().expect("poisoned")
    }

    /// Highest sequence number assigned so far (0 when none).
    pub fn last_seq(&self) -> u64 {
        self.counters().last_seq
    }

    /// Highest sequence number the city acknowledged.
    pub fn acked_seq(&self) -> u64 {
        self.counters().acked
    }

    /// Entries queued and not yet acknowledged.
    pub fn backlog(&self) -> u64 {
        let c = self.counters();
        c.last_seq - c.acked
    }

    /// Numbers `changes` in order and stores each with its record update, as
    /// one atomic batch. Not durable until [`WardStore::flush`]. Refuses the
    /// whole group with [`StoreError::Full`] if the outbox would overflow.
    pub fn append(&self, changes: &[NewChange], now_ms: i64) -> Result<Vec<u64>, StoreError> {
        let mut c = self.counters.lock().expect("poisoned");
        let queued = c.last_seq - c.acked;
        if queued + changes.len() as u64 > self.max_outbox {
            return Err(StoreError::Full(format!(
                "outbox holds {queued} entries, the limit is {}; writes resume as the city catches up",
                self.max_outbox
            )));
        }
        let mut batch = Batch::default();
        let mut seqs = Vec::with_capacity(changes.len());
        let mut seq = c.last_seq;
        for ch in changes {
            seq += 1;
            let rk = record_key(&ch.key);
            match &ch.op {
                Op::Put(r) => batch.insert(rk, encode(r)),
                Op::Delete => batch.remove(rk),
            }
            let change = Change { seq, written_at_ms: now_ms, key: ch.key.clone(), op: ch.op.clone() };
            batch.insert(outbox_key(seq), encode(&change));
            seqs.push(seq);
        }
        batch.insert(LAST_SEQ, be(seq).to_vec());
        self.engine.apply(batch)?;
        c.last_seq = seq;
        Ok(seqs)
    }

    /// Makes everything appended so far durable and returns the highest
    /// sequence number now on disk: the watermark up to which entries may be sent.
    pub async fn flush(&self) -> Result<u64, StoreError> {
        let upto = self.last_seq();
        self.engine.flush().await?;
        Ok(upto)
    }

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

    /// Deletes entries up to `seq` once the city has applied them. The
    /// acknowledged sequence never moves backwards.
    pub fn ack(&self, seq: u64) -> Result<(), StoreError> {
        let mut c = self.counters.lock().expect("poisoned");
        let seq = seq.min(c.last_seq);
        if seq <= c.acked {
            return Ok(());
        }
        let mut batch = Batch::default();
        for s in c.acked + 1..=seq {
            batch.remove(outbox_key(s));
        }
        batch.insert(ACKED, be(seq).to_vec());
        self.engine.apply(batch)?;
        c.acked = seq;
        Ok(())
    }

    /// The record under `key`, if this ward holds it.
    pub fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let k = record_key(key);
        self.engine.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Up to `limit` records of `kind` with ids after `after`, in id order.
    pub fn list(&self, kind: Kind, after: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        let prefix = key(RECORD, &[&[kind.tag()]]);
        let mut start = key(&prefix, &[after.as_bytes()]);
        if !after.is_empty() {
            start.push(0);
        }
        self.engine
            .scan(&start, &prefix_end(&prefix), limit)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// How many records of `kind` this ward holds.
    pub fn count(&self, kind: Kind) -> Result<u64, StoreError> {
        let prefix = key(RECORD, &[&[kind.tag()]]);
        self.engine.count(&prefix, &prefix_end(&prefix))
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.engine.size_on_disk()
    }
}
