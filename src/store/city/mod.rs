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

pub(crate) mod apply;
pub(crate) mod audit;
pub(crate) mod budget;
pub(crate) mod chain;
mod civil;
mod conflicts;
mod db;
pub(crate) mod evidence;
pub(crate) mod history;
mod keys;
mod kv_target;
mod office;
mod policies;
mod quarantine;
mod queries;
mod repair;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::codec::{be, decode, encode, read_be};
use super::engine::{Batch, Engine, StoreError, prefix_end};
use crate::model::{Change, Context, Hlc, Policies, WardCode, WriterId};
use keys::{
    BUDGET, CHAIN, CURSOR, HLC, LOSS, UNPROVEN, WARD, budget_key, chain_key, loss_key, unproven_key, ward_key,
};

pub use apply::UNHELD;
pub use audit::{AuditCursor, AuditEntry, Denial, MAX_DENIALS};
pub use budget::Budget;
pub use chain::{Chain, Links};
pub use civil::CitizenProblems;
pub use conflicts::{Conflict, ConflictFilter};
pub use evidence::{
    Authorship, Evidence, EvidencePart, EvidenceRow, KvEvidence, RELAYING_MARK, REQUEST_MARK, Signed,
    SignedBatch, SignedRequest, WardKey,
};
pub use history::{HistoryEntry, MAX_HISTORY, MAX_HISTORY_BYTES};
pub(crate) use history::{history_too_large, replay_state};
pub use office::OfficeError;
pub use quarantine::{Discarded, Quarantined, RETRIED, Retry, RetryError};
pub use queries::{LogFilter, PAGE_SCAN, Page};
pub use repair::{MAX_REPAIR_RECORDS, REFILL_WINDOW_MS, RepairOutcome, Vouched, Vouchers};

use apply::GroupWrite;
use kv_target::KvTarget;

/// Replication state of one ward as the city knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WardState {
    /// Changes the city had acknowledged to the ward and no longer held
    /// (stored under a key of its own, `L<ward>`).
    #[serde(skip)]
    pub lost: Loss,
    /// Highest sequence number durably applied (or quarantined) for the ward.
    pub last_applied_seq: u64,
    /// City time of the last batch, ms since the epoch.
    pub last_contact_ms: i64,
    /// Changes from this ward waiting in quarantine.
    pub quarantined: u64,
    /// Records the ward owns at the city.
    pub records: u64,
    /// Its changes to other wards' records today (stored under a key of
    /// its own, `B<ward>`).
    #[serde(skip)]
    pub budget: Budget,
    /// The last sequence its numbering moved past on its word alone (no
    /// receipt proved the city acknowledged it; stored under `U<ward>`):
    /// the city's receipts speak only for sequences after it.
    #[serde(skip)]
    pub unproven_to: u64,
    /// The ward's chain as the city applied it, and the forks found
    /// (stored under `C<ward>`).
    #[serde(skip)]
    pub chain: Chain,
}

/// What a ward's `Hello` says of the changes the city acknowledged, and
/// what the city's receipt proves of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckClaim {
    /// The last sequence the ward says the city acknowledged.
    pub acked: u64,
    /// The last the city's receipt proves it acknowledged (0: none).
    pub proven: u64,
    /// The first sequence that receipt speaks for.
    pub from: u64,
    /// The ward's link at `acked` (`None`: it gives none): where its chain
    /// resumes at a city that no longer holds what it acknowledged.
    pub link: Option<crate::model::signed::Hash>,
}

/// Changes the city acknowledged to a ward and then no longer held (its
/// database restored from an older backup, or lost to a disk fault), as
/// the ward reported on reconnecting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Loss {
    /// How many changes, in all.
    pub changes: u64,
    /// The last range lost, first and last sequence.
    pub last_range: (u64, u64),
    /// City time when the last loss was found, ms since the epoch.
    pub found_at_ms: i64,
}

/// One applied change in the city-wide log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedChange {
    /// Position in the log, from 1.
    pub cursor: u64,
    /// Who wrote it: a ward's commune code, or `city`.
    pub writer: WriterId,
    /// The authenticated identity that submitted it (the audit trail).
    pub by: String,
    /// City time of application, ms since the epoch.
    pub applied_at_ms: i64,
    /// The change as the ward sent it.
    pub change: Change,
}

/// One change as received from a ward: decoded, or kept as the raw bytes
/// the ward sent, with why (too malformed to decode; refused by the
/// database; past the ward's daily budget), for the quarantine.
// Malformed changes are rare; boxing the common case would cost more.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A change whose format is right (its content is checked on apply).
    Change(Change),
    /// A change kept raw, never applied as it came.
    Malformed {
        /// Its sequence number.
        seq: u64,
        /// Why it is kept raw: the quarantine's reason, as is.
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

    /// The change, if it could be decoded.
    pub fn change(&self) -> Option<&Change> {
        match self {
            Incoming::Change(c) => Some(c),
            Incoming::Malformed { .. } => None,
        }
    }
}

/// A batch of changes from one ward, in its order.
#[derive(Debug, Clone)]
pub struct WardBatch {
    /// The authenticated sender.
    pub ward: WardCode,
    /// Its changes, ascending sequence numbers (shared: a group the
    /// database refuses is applied again, batch by batch, without a copy).
    pub changes: std::sync::Arc<[Incoming]>,
    /// Their chain as checked on arrival (signature and content hashes):
    /// every batch a ward sends has one; `None` only for changes the city
    /// itself applies again (a quarantine retry) and in tests.
    pub links: Option<Links>,
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
    /// The batch does not link onto the ward's chain as the city applied
    /// it: the city applied other changes under these numbers (the ward
    /// was put back to an older copy, or the chain is forged). Recorded.
    #[error(
        "ward {ward}'s changes up to sequence {seq} differ from those the city applied under those numbers \
         (a store put back to an older copy?): the batch is refused; resume from Welcome, whose link shows where the chains part"
    )]
    Fork {
        /// The sending ward.
        ward: WardCode,
        /// The city's last applied sequence, where the chains differ.
        seq: u64,
    },
    /// Every change of the batch is one the city applied, and the batch
    /// reaches no further than its chain's head, so nothing shows they
    /// are the same changes.
    #[error(
        "ward {ward} sent changes up to sequence {last}, all before the city's {applied}, which cannot be \
         checked against the city's chain: resume from Welcome"
    )]
    Behind {
        /// The sending ward.
        ward: WardCode,
        /// The batch's last sequence.
        last: u64,
        /// The ward's last sequence the city applied.
        applied: u64,
    },
    /// The batch repeats changes the city applied, their content hashes
    /// made with another key id than those it applied (the ward's
    /// certificate was renewed meanwhile): they cannot be compared, and the
    /// ward resumes after the city's last applied change.
    #[error(
        "ward {ward} sent again changes the city applied (up to {applied}), hashed with another key than \
         it applied them with (a renewed certificate): resume from Welcome"
    )]
    Rekeyed {
        /// The sending ward.
        ward: WardCode,
        /// The ward's last sequence the city applied.
        applied: u64,
    },
    /// The ward already has as many changes in quarantine as the city
    /// keeps for one ward: nothing more is taken from it until the data
    /// office settles them (so no ward can fill the city's disk).
    #[error(
        "ward {ward} has {held} changes in quarantine, the most the city keeps for one ward: \
         the data office must retry or discard them before more are accepted"
    )]
    QuarantineFull {
        /// The sending ward.
        ward: WardCode,
        /// Its changes in quarantine.
        held: u64,
    },
}

/// Moves `ward`'s last applied sequence to `claim.acked` (its changes up
/// to it were acknowledged and are lost) and records the loss of those the
/// receipt proves (see [`CityStore::acknowledged_lost`]); returns the range
/// recorded lost, if any.
pub(crate) fn record_loss(
    wards: &mut HashMap<WardCode, WardState>,
    ward: &WardCode,
    claim: AckClaim,
    now_ms: i64,
) -> Option<(u64, u64)> {
    let state = wards.entry(ward.clone()).or_default();
    let held = state.last_applied_seq;
    if claim.acked <= held {
        return None;
    }
    state.last_applied_seq = claim.acked;
    // The chain resumes where the ward says it stood, on its word: the
    // link speaks only for the ward's own chain, which it alone extends.
    state.chain.link = claim.link;
    if claim.acked > claim.proven.max(held) {
        state.unproven_to = claim.acked;
    }
    let (first, last) = ((held + 1).max(claim.from), claim.proven.min(claim.acked));
    if last < first {
        return None;
    }
    state.lost.changes = state.lost.changes.saturating_add(last - first + 1);
    state.lost.last_range = (first, last);
    state.lost.found_now(now_ms);
    Some((first, last))
}

/// Records that `ward` found the city's log behind what it had merged
/// from it: the city lost logged changes (its database restored from an
/// older backup), and opens the ward's refill window (`repair`).
pub(crate) fn record_log_loss(wards: &mut HashMap<WardCode, WardState>, ward: &WardCode, now_ms: i64) {
    wards.entry(ward.clone()).or_default().lost.found_now(now_ms);
}

impl Loss {
    /// Notes a loss found at city time `now_ms`: always later than the one
    /// before (the receipts made since name it as the ward's generation).
    fn found_now(&mut self, now_ms: i64) {
        self.found_at_ms = now_ms.max(self.found_at_ms + 1);
    }
}

impl LoggedChange {
    /// A number naming this entry of the log (its cursor, writer, stamp and
    /// record): a ward that merged it gives it back, so that a city put back
    /// to an older copy (whose log may have grown past that cursor again,
    /// with other changes) knows it lost it.
    pub fn check(&self) -> u64 {
        let c = &self.change;
        let text = format!(
            "{}|{}|{}.{}|{}",
            self.cursor, c.stamp.writer, c.stamp.hlc.wall_ms, c.stamp.hlc.logical, c.key
        );
        let h = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        u64::from_be_bytes(h.as_ref()[..8].try_into().expect("8 bytes")).max(1)
    }
}

/// Every ward's state as the embedded store in `engine` holds it.
pub(super) fn load_wards(engine: &dyn Engine) -> Result<HashMap<WardCode, WardState>, StoreError> {
    let code = |k: &[u8]| {
        WardCode::parse(&String::from_utf8_lossy(&k[1..]))
            .map_err(|reason| StoreError::Corrupt { key: String::from_utf8_lossy(k).into_owned(), reason })
    };
    let mut wards = HashMap::new();
    for (k, v) in engine.scan(WARD, &prefix_end(WARD), usize::MAX)? {
        wards.insert(code(&k)?, decode(&k, &v)?);
    }
    for (k, v) in engine.scan(LOSS, &prefix_end(LOSS), usize::MAX)? {
        wards.entry(code(&k)?).or_insert_with(WardState::default).lost = decode(&k, &v)?;
    }
    for (k, v) in engine.scan(BUDGET, &prefix_end(BUDGET), usize::MAX)? {
        wards.entry(code(&k)?).or_insert_with(WardState::default).budget = decode(&k, &v)?;
    }
    for (k, v) in engine.scan(UNPROVEN, &prefix_end(UNPROVEN), usize::MAX)? {
        wards.entry(code(&k)?).or_insert_with(WardState::default).unproven_to = read_be(&k, &v)?;
    }
    for (k, v) in engine.scan(CHAIN, &prefix_end(CHAIN), usize::MAX)? {
        wards.entry(code(&k)?).or_insert_with(WardState::default).chain = decode(&k, &v)?;
    }
    Ok(wards)
}

/// The running hash of the whole log in `engine` (see
/// [`apply::log_step`]): for a store written before it was kept.
fn running_of_log(engine: &dyn Engine) -> Result<crate::model::signed::Hash, StoreError> {
    let mut running = crate::model::signed::GENESIS;
    let mut start = keys::LOG.to_vec();
    loop {
        let rows = engine.scan(&start, &prefix_end(keys::LOG), 1000)?;
        let Some((last, _)) = rows.last() else { return Ok(running) };
        start = [&last[..], b"\0"].concat();
        for (k, v) in &rows {
            running = decode::<LoggedChange>(k, v)?.running_after(&running);
        }
    }
}

/// Changes of one ward the city keeps in quarantine at the most.
pub const MAX_QUARANTINED: u64 = if cfg!(test) { 3 } else { 100_000 };

struct Cache {
    cursor: u64,
    /// The log's running hash at `cursor`.
    running: crate::model::signed::Hash,
    hlc: Hlc,
    wards: HashMap<WardCode, WardState>,
    /// Records per kind (in `Kind::ALL` order), counted at open, kept since.
    kinds: [u64; 3],
}

/// The city database over any [`Engine`].
#[derive(Clone)]
pub struct CityStore {
    engine: Arc<dyn Engine>,
    cache: Arc<Mutex<Cache>>,
    durable_cursor: Arc<tokio::sync::watch::Sender<u64>>,
    /// The durable end of the log and its running hash there.
    durable_head: Arc<Mutex<(u64, crate::model::signed::Hash)>>,
    /// The database's id (see [`crate::store::CityDb::city_id`]).
    city_id: [u8; 16],
    /// Each ward's last applied sequence as of the last completed flush:
    /// what the city may report to the ward.
    /// (With the ward's chain there.)
    durable_applied: Arc<Mutex<HashMap<WardCode, (u64, Chain)>>>,
    policies: Arc<Policies>,
    denials: Arc<std::sync::atomic::AtomicU64>,
    /// Denials in the audit trail (at most [`audit::MAX_DENIALS`]).
    stored_denials: Arc<Mutex<u64>>,
}

impl CityStore {
    /// Opens the store and loads counters and ward states; records are
    /// merged and shown under `policies` (stored records are shown again,
    /// with their indexes and conflicts, if the policies changed).
    pub fn open(engine: Arc<dyn Engine>, policies: Policies) -> Result<CityStore, StoreError> {
        let cursor = engine.get(CURSOR)?.map_or(Ok(0), |v| read_be(CURSOR, &v))?;
        let running = match engine.get(keys::RUNNING)? {
            Some(v) => crate::model::signed::hash_from(&v).ok_or_else(|| StoreError::Corrupt {
                key: "m:running".into(),
                reason: format!("{} bytes, not 32", v.len()),
            })?,
            // A store from before the running hash: computed once, from its log.
            None => {
                let running = running_of_log(&*engine)?;
                let mut batch = Batch::default();
                batch.insert(keys::RUNNING, running.to_vec());
                engine.apply(batch)?;
                running
            }
        };
        let city_id: [u8; 16] = match engine.get(keys::CITY_ID)? {
            Some(v) => v.as_slice().try_into().map_err(|_| StoreError::Corrupt {
                key: "m:city".into(),
                reason: format!("{} bytes, not 16", v.len()),
            })?,
            // Made durable by the first flush: a city that stops before any
            // makes another, and a receipt it gave meanwhile names an id no
            // database holds (`audit verify` says so).
            None => {
                let id: [u8; 16] = ring::rand::generate(&ring::rand::SystemRandom::new())
                    .map_err(|_| StoreError::Io("no randomness for the city's id".into()))?
                    .expose();
                let mut batch = Batch::default();
                batch.insert(keys::CITY_ID, id.to_vec());
                engine.apply(batch)?;
                id
            }
        };
        let hlc = engine.get(HLC)?.map(|v| decode(HLC, &v)).transpose()?.unwrap_or_default();
        let mut kinds = [0; 3];
        for (n, kind) in kinds.iter_mut().zip(crate::model::Kind::ALL) {
            let prefix = [keys::RECORD, &[kind.tag()]].concat();
            *n = engine.count(&prefix, &prefix_end(&prefix))?;
        }
        let wards = load_wards(&*engine)?;
        let durable_applied = wards.iter().map(|(w, s)| (w.clone(), (s.last_applied_seq, s.chain))).collect();
        let stored_denials = engine.count(keys::AUDIT, &prefix_end(keys::AUDIT))?;
        let store = CityStore {
            engine,
            cache: Arc::new(Mutex::new(Cache { cursor, running, hlc, wards, kinds })),
            durable_cursor: Arc::new(tokio::sync::watch::channel(cursor).0),
            durable_head: Arc::new(Mutex::new((cursor, running))),
            city_id,
            durable_applied: Arc::new(Mutex::new(durable_applied)),
            policies: Arc::new(policies),
            denials: Arc::default(),
            stored_denials: Arc::new(Mutex::new(stored_denials)),
        };
        store.reapply_policies(crate::clock::now_ms())?;
        Ok(store)
    }

    /// The last sequence durably applied for `ward` (0 if never seen): the
    /// only figure the city may report to the ward, which deletes what it
    /// covers. Changes applied and not yet flushed are not included.
    pub fn last_applied(&self, ward: &WardCode) -> u64 {
        self.resume(ward).0
    }

    /// The last sequence durably applied for `ward`, and its chain there.
    pub fn resume(&self, ward: &WardCode) -> (u64, Chain) {
        if crate::mutation::active(crate::mutation::Mutation::WelcomeBeforeFlush) {
            let c = self.cache.lock().expect("poisoned");
            return c.wards.get(ward).map_or_else(Default::default, |s| (s.last_applied_seq, s.chain));
        }
        self.durable_applied.lock().expect("poisoned").get(ward).copied().unwrap_or_default()
    }

    /// The ward says this city had acknowledged its changes up to
    /// `claim.acked`, beyond what the city holds, and the city's receipt
    /// shows it did up to `claim.proven` (from `claim.from`): those were
    /// lost (the database was restored from an older backup, or lost to a
    /// disk fault). Records the loss of those the receipt proves (which
    /// opens the ward's refill window) and moves the ward's last applied
    /// sequence to `claim.acked`, so that its new changes are applied again
    /// (the ward no longer holds the lost ones). Returns the range recorded
    /// lost, if any. Not durable until [`CityStore::flush`].
    pub fn acknowledged_lost(
        &self,
        ward: &WardCode,
        claim: AckClaim,
        now_ms: i64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        self.write(now_ms, |_, wards| Ok(record_loss(wards, ward, claim, now_ms)))
    }

    /// Runs `f` over one atomic write and commits it with the ward states it returns.
    fn write<T>(
        &self,
        now_ms: i64,
        f: impl FnOnce(&mut GroupWrite<KvTarget>, &mut HashMap<WardCode, WardState>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut cache = self.cache.lock().expect("poisoned");
        let mut wards = cache.wards.clone();
        let hlc = apply::city_clock_at(cache.hlc, now_ms);
        let target = KvTarget { engine: &*self.engine, batch: Batch::default() };
        let mut w = GroupWrite::new(target, &self.policies, (cache.cursor, cache.running), hlc, now_ms);
        let out = f(&mut w, &mut wards)?;
        let batch = &mut w.target.batch;
        batch.insert(HLC, encode(&w.hlc));
        for (ward, state) in &wards {
            let before = cache.wards.get(ward);
            if before != Some(state) {
                batch.insert(ward_key(ward), encode(state));
            }
            if before.map(|b| &b.lost) != Some(&state.lost) && state.lost != Loss::default() {
                batch.insert(loss_key(ward), encode(&state.lost));
            }
            if before.map(|b| &b.budget) != Some(&state.budget) && state.budget != Budget::default() {
                batch.insert(budget_key(ward), encode(&state.budget));
            }
            if before.map(|b| b.unproven_to) != Some(state.unproven_to) && state.unproven_to > 0 {
                batch.insert(unproven_key(ward), be(state.unproven_to).to_vec());
            }
            if before.map(|b| &b.chain) != Some(&state.chain) && !state.chain.is_empty() {
                batch.insert(chain_key(ward), encode(&state.chain));
            }
        }
        batch.insert(CURSOR, be(w.cursor).to_vec());
        batch.insert(keys::RUNNING, w.running.to_vec());
        self.engine.apply(std::mem::take(batch))?;
        cache.cursor = w.cursor;
        cache.running = w.running;
        cache.hlc = w.hlc;
        cache.wards = wards;
        for (n, d) in cache.kinds.iter_mut().zip(w.kind_delta) {
            *n = n.saturating_add_signed(d);
        }
        Ok(out)
    }

    /// Applies a group of batches as one atomic write. Duplicates (sequence
    /// already applied) are skipped; changes that are malformed, invalid or
    /// not the sender's to make are quarantined and still advance its
    /// sequence, so they never block the stream. Returns, per batch, the
    /// ward's last applied sequence or why the batch was rejected. Not
    /// durable until [`CityStore::flush`].
    /// Changes whose clock runs more than `max_skew_ms` ahead of the city's
    /// are quarantined too.
    pub fn apply_group(
        &self,
        group: &[WardBatch],
        now_ms: i64,
        ctx: &Context,
        max_skew_ms: u64,
    ) -> Result<Vec<Result<u64, BatchRejected>>, StoreError> {
        self.write(now_ms, |w, wards| w.apply_batches(group, ctx, max_skew_ms, wards))
    }

    /// See [`crate::store::CityDb::log_lost`]; not durable until [`CityStore::flush`].
    pub fn log_lost(&self, ward: &WardCode, now_ms: i64) -> Result<(), StoreError> {
        self.write(now_ms, |_, wards| {
            record_log_loss(wards, ward, now_ms);
            Ok(())
        })
    }

    /// A consistent copy of the store in the new directory `to`, taken
    /// while the city runs: writes pause while it is copied (see
    /// [`crate::store::backup`]).
    pub async fn backup(&self, to: std::path::PathBuf) -> Result<crate::store::backup::Manifest, StoreError> {
        let (engine, cache) = (self.engine.clone(), self.cache.clone());
        let copy = tokio::task::spawn_blocking(move || {
            let _writes = cache.lock().expect("poisoned");
            crate::store::backup::copy(&*engine, &to, "city".into())
        })
        .await
        .map_err(|e| StoreError::Io(e.to_string()))??;
        self.engine.flush().await?;
        crate::store::backup::finish(copy).await
    }

    /// Makes every applied group durable and publishes the log up to it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        type Applied = Vec<(WardCode, (u64, Chain))>;
        let (cursor, running, applied): (u64, _, Applied) = {
            let c = self.cache.lock().expect("poisoned");
            let applied = c.wards.iter().map(|(w, s)| (w.clone(), (s.last_applied_seq, s.chain))).collect();
            (c.cursor, c.running, applied)
        };
        self.engine.flush().await?;
        {
            let mut head = self.durable_head.lock().expect("poisoned");
            if cursor >= head.0 {
                *head = (cursor, running);
            }
        }
        let mut durable = self.durable_applied.lock().expect("poisoned");
        for (ward, (seq, chain)) in applied {
            let d = durable.entry(ward).or_default();
            if seq >= d.0 {
                *d = (seq, chain);
            }
        }
        drop(durable);
        self.durable_cursor.send_if_modified(|c| {
            let newer = cursor > *c;
            *c = (*c).max(cursor);
            newer
        });
        Ok(())
    }

    /// Watches the durable cursor: it changes whenever new changes become durable.
    pub fn watch_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable_cursor.subscribe()
    }

    /// The merge policies in force.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// How many records of each kind the city holds.
    pub fn records_by_kind(&self) -> Vec<(crate::model::Kind, u64)> {
        let c = self.cache.lock().expect("poisoned");
        crate::model::Kind::ALL.into_iter().zip(c.kinds).collect()
    }

    /// Every ward the city has heard from, with its state, in code order;
    /// the last applied sequence is the durable one, which never goes back.
    pub fn wards(&self) -> Vec<(WardCode, WardState)> {
        let mut v: Vec<_> = self.cache.lock().expect("poisoned").wards.clone().into_iter().collect();
        for (ward, state) in &mut v {
            state.last_applied_seq = self.last_applied(ward);
        }
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
