//! The ward's store: its records (merged state and current view), its
//! outbox, and its clocks, in one key space.
//!
//! Layout (one sled tree):
//! - `s<tag><id>`     → the record's replicated state ([`Versioned`]);
//! - `r<tag><id>`     → the record as it stands, if it exists and this ward owns it;
//! - `o<seq: u64 BE>` → the queued change with that sequence number;
//! - `a<tag><id>\0...` → what proves who made a write by another to the
//!   record ([`authorship`]);
//! - `m:last_seq`     → highest sequence number ever assigned;
//! - `m:acked`        → highest sequence number the city acknowledged;
//! - `m:chain`        → that sequence and this ward's chain link there;
//! - `m:hlc`          → this node's hybrid clock;
//! - `m:down`         → cursor of the last change received from the city;
//! - `m:down_check`   → the city's check of the change logged there;
//! - `m:down_receipt` → the city's receipt for that cursor and check;
//! - `m:ack_receipt`  → the city's receipt for the highest ack it sent
//!   (sequence, then receipt): what shows the city it acknowledged that far;
//! - `m:loss_seen`    → when the city last found it had lost data of this
//!   ward's, as far as this ward has refilled it;
//! - `m:policies`     → the merge policies the city announced;
//! - `m:bytes`        → bytes of the queued outbox entries;
//! - `m:shift`        → a renumbering of the queued entries in progress;
//! - `m:forks`, `m:jumps` → forks found, and jumps past the city's numbering;
//! - `m:copy`         → present in a store put back from a copy until it is
//!   brought level with the city ([`crate::store::backup`]);
//! - `m:refill`       → [`Lost`]: present while this ward or the city lost
//!   data and the two copies have not been brought level since (`ward::verify`).
//!
//! Why this is crash-safe without transactions: a write puts the record's
//! state and view, its outbox entry, the sequence counter and the clock in
//! one atomic batch, so after a crash either all exist or none does, and a
//! sequence number is never reused. The writer flushes before
//! acknowledging; the replicator only sends entries up to the flushed
//! watermark, so the city never sees a change a crash could take back.
//! Deleting acknowledged entries is a second batch that also raises
//! `m:acked`; if a crash loses it, those entries are sent again and the city
//! skips them as duplicates. Changes from the city are merged in one batch
//! with the cursor that follows them, so a lost batch is simply fetched again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::codec::{be, decode, encode, key, read_be};
use super::engine::{Batch, Engine, StoreError, prefix_end};
mod authorship;
mod chain;
mod outbox;
mod recovery;
mod renumber;

use crate::model::{
    CLOCK_AHEAD_LIMIT_MS, Change, Hlc, Kind, Op, Policies, Record, RecordKey, Stamp, Versioned, WardCode,
    deleted, flatten, put_values,
};
pub use authorship::MAX_PER_RECORD as MAX_AUTHORSHIP_PER_RECORD;
use chain::{Anchor, CHAIN};
use outbox::outbox_bytes;
pub use recovery::Lost;
pub use renumber::Renumbering;
use renumber::{FORKS, JUMPS, SHIFT, Shift, finish_shift};

const RECORD: &[u8] = b"r";
const STATE: &[u8] = b"s";
const OUTBOX: &[u8] = b"o";
const LAST_SEQ: &[u8] = b"m:last_seq";
const ACKED: &[u8] = b"m:acked";
const HLC: &[u8] = b"m:hlc";
const DOWN: &[u8] = b"m:down";
const POLICIES: &[u8] = b"m:policies";
const BYTES: &[u8] = b"m:bytes";
const REFILL: &[u8] = b"m:refill";
const DOWN_CHECK: &[u8] = b"m:down_check";
const DOWN_RECEIPT: &[u8] = b"m:down_receipt";
const ACK_RECEIPT: &[u8] = b"m:ack_receipt";
const LOSS_SEEN: &[u8] = b"m:loss_seen";

/// Keys read or written per batch when the work is proportional to the
/// outbox or to the records (acknowledging a long backlog, recomputing
/// every view), so memory stays bounded however large they grow.
const CHUNK: usize = if cfg!(test) { 100 } else { 10_000 };

/// A write waiting to be numbered and stored.
#[derive(Debug, Clone)]
pub struct NewChange {
    /// The record written.
    pub key: RecordKey,
    /// What is done to it.
    pub op: Op,
    /// For a record another ward owns (a civil-status registration): its
    /// state at the city, which the change is built on; the ward sends the
    /// change but keeps no copy of the record.
    pub base: Option<Box<Versioned>>,
    /// The only fields a put may set, of those that differ from this
    /// ward's copy (a residence transfer: [`crate::model::TRANSFER_FIELDS`]);
    /// `None`: any.
    pub only: Option<&'static [&'static str]>,
}

impl NewChange {
    /// A put of a record this ward keeps.
    pub fn put(key: RecordKey, record: Record) -> NewChange {
        NewChange { key, op: Op::Put(record), base: None, only: None }
    }

    /// A delete of a record this ward keeps.
    pub fn delete(key: RecordKey) -> NewChange {
        NewChange { key, op: Op::Delete, base: None, only: None }
    }

    /// A residence transfer of `record` into this ward: a put that sets
    /// only the owning ward and the residence registration.
    pub fn transfer(key: RecordKey, record: Record) -> NewChange {
        NewChange { key, op: Op::Put(record), base: None, only: Some(&crate::model::TRANSFER_FIELDS) }
    }

    /// A put of another ward's record, built on its state at the city.
    pub fn foreign(key: RecordKey, record: Record, base: Versioned) -> NewChange {
        NewChange { key, op: Op::Put(record), base: Some(Box::new(base)), only: None }
    }
}

struct Inner {
    /// Bytes of the queued outbox entries.
    queued_bytes: u64,
    last_seq: u64,
    acked: u64,
    hlc: Hlc,
    down: u64,
    /// The city's check of the change at `down` (0: none known).
    down_check: u64,
    /// The city's receipt for `down` and `down_check` (empty: none).
    down_receipt: Vec<u8>,
    /// The highest sequence the city sent a receipt for, and the receipt.
    ack_receipt: (u64, Vec<u8>),
    policies: Policies,
    /// Records this ward shows, per kind (in `Kind::ALL` order): counted on
    /// opening, then kept up to date by every write, so status never scans.
    records: [u64; 3],
    /// A refill from the other side's copy is due (`m:refill`).
    refill: Option<Lost>,
    /// The acknowledged sequence and the link there (`m:chain`).
    chain: Anchor,
    /// Forks found (`m:forks`), and jumps past the city's numbering (`m:jumps`).
    forks: u64,
    jumps: u64,
}

/// Records and outbox of one ward, over any [`Engine`].
#[derive(Clone)]
pub struct WardStore {
    engine: Arc<dyn Engine>,
    ward: WardCode,
    inner: Arc<Mutex<Inner>>,
    max_outbox: u64,
}

fn tagged(prefix: &[u8], k: &RecordKey) -> Vec<u8> {
    key(prefix, &[&[k.kind().tag()], k.id().as_bytes()])
}

fn outbox_key(seq: u64) -> Vec<u8> {
    key(OUTBOX, &[&be(seq)])
}

/// States read or written during one batch.
struct Overlay<'a> {
    engine: &'a dyn Engine,
    /// Each key's state, and whether the ward showed the record before.
    states: HashMap<RecordKey, (Versioned, bool)>,
    /// Records a put just wrote whole, and their flattened values.
    written: HashMap<RecordKey, (Record, BTreeMap<String, String>)>,
}

impl<'a> Overlay<'a> {
    fn new(engine: &'a dyn Engine) -> Self {
        Overlay { engine, states: HashMap::new(), written: HashMap::new() }
    }

    fn state(&mut self, k: &RecordKey) -> Result<&mut Versioned, StoreError> {
        if !self.states.contains_key(k) {
            let sk = tagged(STATE, k);
            let v: Versioned =
                self.engine.get(&sk)?.map(|v| decode(&sk, &v)).transpose()?.unwrap_or_default();
            // The view is stored exactly when the ward shows the record.
            let shown = !v.fields.is_empty() && self.engine.get(&tagged(RECORD, k))?.is_some();
            self.states.insert(k.clone(), (v, shown));
        }
        Ok(&mut self.states.get_mut(k).expect("just inserted").0)
    }
}

/// Changes to the per-kind record counts that a batch makes once applied.
#[derive(Default)]
struct CountDelta([i64; 3]);

impl CountDelta {
    fn apply(self, to: &mut [u64; 3]) {
        for (n, d) in to.iter_mut().zip(self.0) {
            *n = n.saturating_add_signed(d);
        }
    }
}

fn kind_index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).expect("every kind is in ALL")
}

impl WardStore {
    /// Opens the store of `ward`; at most `max_outbox` entries may be queued.
    pub fn open(engine: Arc<dyn Engine>, ward: WardCode, max_outbox: u64) -> Result<WardStore, StoreError> {
        let read = |k: &[u8]| -> Result<u64, StoreError> { engine.get(k)?.map_or(Ok(0), |v| read_be(k, &v)) };
        let hlc = engine.get(HLC)?.map(|v| decode(HLC, &v)).transpose()?.unwrap_or_default();
        let policies = engine.get(POLICIES)?.map(|v| decode(POLICIES, &v)).transpose()?.unwrap_or_default();
        let queued_bytes = match engine.get(BYTES)? {
            Some(v) => read_be(BYTES, &v)?,
            None => outbox_bytes(&*engine)?,
        };
        let mut records = [0; 3];
        for kind in Kind::ALL {
            let prefix = key(RECORD, &[&[kind.tag()]]);
            records[kind_index(kind)] = engine.count(&prefix, &prefix_end(&prefix))?;
        }
        let mut inner = Inner {
            queued_bytes,
            last_seq: read(LAST_SEQ)?,
            acked: read(ACKED)?,
            hlc,
            down: read(DOWN)?,
            down_check: read(DOWN_CHECK)?,
            down_receipt: engine.get(DOWN_RECEIPT)?.unwrap_or_default(),
            ack_receipt: match engine.get(ACK_RECEIPT)? {
                Some(v) if v.len() >= 8 => (read_be(ACK_RECEIPT, &v[..8])?, v[8..].to_vec()),
                _ => (0, Vec::new()),
            },
            policies,
            records,
            refill: engine.get(REFILL)?.and_then(|b| Lost::from_byte(&b)),
            chain: (0, None),
            forks: read(FORKS)?,
            jumps: read(JUMPS)?,
        };
        inner.chain = match engine.get(CHAIN)? {
            Some(v) => decode(CHAIN, &v)?,
            // A new store's chain starts from nothing; one written before
            // chains takes the city's link where it resumes.
            None if inner.acked == 0 => (0, Some(crate::model::signed::GENESIS)),
            None => (inner.acked, None),
        };
        if let Some(shift) = engine.get(SHIFT)?.map(|v| Shift::read(&v)).transpose()? {
            tracing::warn!(%ward, "finishing the renumbering of queued changes that a stop interrupted");
            finish_shift(&*engine, &mut inner, shift, usize::MAX)?;
        }
        Ok(WardStore { engine, ward, inner: Arc::new(Mutex::new(inner)), max_outbox })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("poisoned")
    }

    /// Highest sequence number assigned so far (0 when none).
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// Highest sequence number the city acknowledged.
    pub fn acked_seq(&self) -> u64 {
        self.lock().acked
    }

    /// Entries queued and not yet acknowledged.
    pub fn backlog(&self) -> u64 {
        let c = self.lock();
        c.last_seq - c.acked
    }

    /// Bytes the queued entries take.
    pub fn backlog_bytes(&self) -> u64 {
        self.lock().queued_bytes
    }

    /// Ward time (ms) of the oldest queued change, if any.
    pub fn oldest_queued_ms(&self) -> Result<Option<i64>, StoreError> {
        let after = self.acked_seq();
        Ok(self.outbox_range(after, u64::MAX - 1, 1, usize::MAX)?.first().map(|c| c.written_at_ms))
    }

    /// Cursor of the last change merged from the city.
    pub fn downstream_cursor(&self) -> u64 {
        self.lock().down
    }

    /// The city's check of the change logged at [`WardStore::downstream_cursor`] (0: none known).
    pub fn downstream_check(&self) -> u64 {
        self.lock().down_check
    }

    /// The city's receipt for [`WardStore::downstream_cursor`] and its
    /// check (empty: none).
    pub fn downstream_receipt(&self) -> Vec<u8> {
        self.lock().down_receipt.clone()
    }

    /// The highest sequence the city gave a receipt for, and the receipt
    /// (0 and empty: none).
    pub fn ack_receipt(&self) -> (u64, Vec<u8>) {
        self.lock().ack_receipt.clone()
    }

    /// The merge policies in force.
    pub fn policies(&self) -> Policies {
        self.lock().policies.clone()
    }

    /// Writes the state of `k` and its current view into `batch`; `shown`
    /// says whether the ward showed the record before, for `delta`.
    /// `written` is the record a put just wrote and its flattened values.
    fn put_state(
        &self,
        batch: &mut Batch,
        delta: &mut CountDelta,
        k: &RecordKey,
        (state, shown): (&Versioned, bool),
        written: Option<&(Record, BTreeMap<String, String>)>,
        policies: &Policies,
    ) {
        batch.insert(tagged(STATE, k), encode(state));
        let view = match written {
            Some((r, all)) => state.materialize_put(k, policies, r, all),
            None => state.materialize(k, policies),
        }
        .filter(|r| r.ward == self.ward);
        delta.0[kind_index(k.kind())] += i64::from(view.is_some()) - i64::from(shown);
        match view {
            Some(r) => batch.insert(tagged(RECORD, k), encode(&r)),
            None => batch.remove(tagged(RECORD, k)),
        }
    }

    /// Numbers, stamps and stores `changes` with their record states, as one
    /// atomic batch. A put carries the fields that differ from the record as
    /// this ward has it. Not durable until [`WardStore::flush`]. Refuses the
    /// whole group with [`StoreError::Full`] if the outbox would overflow.
    pub fn append(&self, changes: &[NewChange], now_ms: i64) -> Result<Vec<u64>, StoreError> {
        let mut c = self.lock();
        let queued = c.last_seq - c.acked;
        if queued + changes.len() as u64 > self.max_outbox {
            return Err(StoreError::Full(format!(
                "outbox holds {queued} entries, the limit is {}; writes resume as the city catches up",
                self.max_outbox
            )));
        }
        let mut batch = Batch::default();
        let policies = c.policies.clone();
        let mut overlay = Overlay::new(&*self.engine);
        let mut seqs = Vec::with_capacity(changes.len());
        let now = now_ms.max(0) as u64;
        let (mut hlc, reset) = c.hlc.recover(now, CLOCK_AHEAD_LIMIT_MS);
        if reset {
            tracing::warn!(ward = %self.ward, clock_ms = c.hlc.wall_ms, now_ms = now,
                "this ward's clock had run ahead of its wall clock (its time was wrong and has been corrected): stamping from the wall clock again; records written while it was ahead keep their order");
        }
        let (mut seq, mut queued) = (c.last_seq, c.queued_bytes);
        let mut foreign;
        for ch in changes {
            seq += 1;
            hlc = hlc.tick(now);
            let state = match &ch.base {
                Some(base) => {
                    foreign = (**base).clone();
                    &mut foreign
                }
                None => overlay.state(&ch.key)?,
            };
            // Stamped after every write it has seen (its context): its
            // own last write to the record (a writer's stamps on one record
            // only grow, a version vector keeping the largest), even one
            // stamped while its clock ran ahead, and others' however far
            // ahead their writers' clocks ran. Last-writer-wins then never
            // puts a write before one it built on, which decides where a
            // city that lost data holds its claim cut down (see
            // `store::city::repair`): a residence transfer made after the
            // creation it saw stays the later write.
            let stamp_hlc = match state.seen.0.values().max() {
                Some(latest) if *latest >= hlc => latest.tick(0),
                _ => hlc,
            };
            let (fields, values, written) = match &ch.op {
                Op::Delete => (Vec::new(), deleted(), None),
                Op::Put(r) => {
                    let old = if state.exists(ch.key.kind(), &policies) {
                        state.shown(ch.key.kind(), &policies)
                    } else {
                        Default::default()
                    };
                    let all = flatten(r);
                    let fields: Vec<String> = all
                        .iter()
                        .filter(|(f, v)| {
                            old.get(*f) != Some(v) && ch.only.is_none_or(|o| o.contains(&f.as_str()))
                        })
                        .map(|(f, _)| f.clone())
                        .collect();
                    let values = put_values(&all, &fields);
                    (fields, values, Some((r.clone(), all)))
                }
            };
            let change = Change {
                seq,
                written_at_ms: now_ms,
                key: ch.key.clone(),
                stamp: Stamp { hlc: stamp_hlc, writer: self.ward.to_string() },
                context: state.seen.clone(),
                fields,
                op: ch.op.clone(),
            };
            state.apply(&values, &change.stamp, &change.context);
            match written {
                _ if ch.base.is_some() => None,
                Some(w) => overlay.written.insert(ch.key.clone(), w),
                None => overlay.written.remove(&ch.key),
            };
            let bytes = encode(&change);
            queued += bytes.len() as u64;
            batch.insert(outbox_key(seq), bytes);
            seqs.push(seq);
        }
        let mut delta = CountDelta::default();
        for (k, (state, shown)) in &overlay.states {
            self.put_state(&mut batch, &mut delta, k, (state, *shown), overlay.written.get(k), &policies);
        }
        batch.insert(LAST_SEQ, be(seq).to_vec());
        batch.insert(HLC, encode(&hlc));
        batch.insert(BYTES, be(queued).to_vec());
        self.engine.apply(batch)?;
        delta.apply(&mut c.records);
        c.last_seq = seq;
        c.hlc = hlc;
        c.queued_bytes = queued;
        Ok(seqs)
    }

    /// Merges changes made elsewhere (from the city), each with the
    /// evidence of who made it the city sent (empty: none), and the whole
    /// states fetched for the records the city named, and records `cursor`
    /// as the point to resume from, all in one batch. Returns the keys merged.
    pub fn merge_downstream(
        &self,
        changes: &[(Change, Vec<u8>)],
        whole: &[(RecordKey, Versioned)],
        (cursor, check, receipt): (u64, u64, &[u8]),
        now_ms: i64,
    ) -> Result<Vec<RecordKey>, StoreError> {
        let mut c = self.lock();
        if cursor <= c.down {
            return Ok(Vec::new());
        }
        let mut batch = Batch::default();
        let policies = c.policies.clone();
        let mut overlay = Overlay::new(&*self.engine);
        let mut hlc = c.hlc;
        for (ch, evidence) in changes {
            hlc = hlc.observe(ch.stamp.hlc, now_ms.max(0) as u64);
            overlay.state(&ch.key)?.apply(&ch.values(), &ch.stamp, &ch.context);
            if !evidence.is_empty() {
                authorship::keep(&mut batch, &ch.key, &ch.stamp, evidence);
            }
        }
        for (k, state) in whole {
            for h in state.seen.0.values() {
                hlc = hlc.observe(*h, now_ms.max(0) as u64);
            }
            overlay.state(k)?.merge(state);
        }
        let mut delta = CountDelta::default();
        for (k, (state, shown)) in &overlay.states {
            self.put_state(&mut batch, &mut delta, k, (state, *shown), None, &policies);
        }
        batch.insert(HLC, encode(&hlc));
        batch.insert(DOWN, be(cursor).to_vec());
        batch.insert(DOWN_CHECK, be(check).to_vec());
        batch.insert(DOWN_RECEIPT, receipt.to_vec());
        self.engine.apply(batch)?;
        delta.apply(&mut c.records);
        c.hlc = hlc;
        (c.down, c.down_check, c.down_receipt) = (cursor, check, receipt.to_vec());
        Ok(overlay.states.into_keys().collect())
    }

    /// Adopts the city's merge policies; if they differ, every record's view is recomputed.
    pub fn set_policies(&self, policies: Policies) -> Result<(), StoreError> {
        let mut c = self.lock();
        if c.policies == policies {
            return Ok(());
        }
        // Every view is rewritten, a chunk at a time, and counted afresh
        // (from nothing shown); the policies are stored last, so a crash
        // midway leaves the old ones, and the next Welcome starts again.
        let mut delta = CountDelta::default();
        let (mut start, end) = (STATE.to_vec(), prefix_end(STATE));
        loop {
            let rows = self.engine.scan(&start, &end, CHUNK)?;
            let mut batch = Batch::default();
            for (k, v) in &rows {
                let state: Versioned = decode(k, v)?;
                let Some(kind) = Kind::from_tag(k[1]) else { continue };
                let Ok(rk) = RecordKey::new(kind, &String::from_utf8_lossy(&k[2..])) else { continue };
                self.put_state(&mut batch, &mut delta, &rk, (&state, false), None, &policies);
            }
            self.engine.apply(batch)?;
            match rows.last() {
                Some((k, _)) if rows.len() == CHUNK => start = [k.as_slice(), &[0]].concat(),
                _ => break,
            }
        }
        let mut batch = Batch::default();
        batch.insert(POLICIES, encode(&policies));
        self.engine.apply(batch)?;
        c.records = [0; 3];
        delta.apply(&mut c.records);
        c.policies = policies;
        Ok(())
    }

    /// Makes everything appended so far durable and returns the highest
    /// sequence number now on disk: the watermark up to which entries may be sent.
    pub async fn flush(&self) -> Result<u64, StoreError> {
        let upto = self.last_seq();
        self.engine.flush().await?;
        Ok(upto)
    }

    /// The record under `key`, if it exists and this ward owns it.
    pub fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let k = tagged(RECORD, key);
        self.engine.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// The replicated state of `key` as this ward knows it.
    pub fn state(&self, key: &RecordKey) -> Result<Option<Versioned>, StoreError> {
        let k = tagged(STATE, key);
        self.engine.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Adopts a record's state fetched from the city (before a transfer).
    pub fn adopt_state(&self, key: &RecordKey, state: &Versioned) -> Result<(), StoreError> {
        self.adopt_states(&[(key.clone(), state.clone())], 0)
    }

    /// Up to `limit` records of `kind` this ward owns with ids after `after`, in id order.
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

    /// How many records of `kind` this ward owns (kept in memory: no scan).
    pub fn count(&self, kind: Kind) -> u64 {
        self.lock().records[kind_index(kind)]
    }

    /// A consistent copy of the store in the new directory `to`, taken
    /// while the agent runs: writes pause while it is copied (see
    /// [`crate::store::backup`]).
    pub async fn backup(&self, to: std::path::PathBuf) -> Result<super::backup::Manifest, StoreError> {
        let store = self.clone();
        let node = format!("ward {}", self.ward);
        let copy = tokio::task::spawn_blocking(move || {
            let _writes = store.lock();
            super::backup::copy(&*store.engine, &to, node)
        })
        .await
        .map_err(|e| StoreError::Io(e.to_string()))??;
        self.engine.flush().await?;
        super::backup::finish(copy).await
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.engine.size_on_disk()
    }
}
