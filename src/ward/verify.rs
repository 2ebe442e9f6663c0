//! Anti-entropy, the ward's side: proves that the city's copy of this
//! ward's records is this ward's, and repairs both where not.
//!
//! One run: the digest of this ward's records against the city's (one
//! round trip when they agree); for the buckets that differ, the city's
//! records there with their hashes and states (a page at a time); every
//! record that differs is merged both ways with the one merge function:
//! the city's state into this ward's store, and this ward's whole state to
//! the city (`Repair`), which takes the writes it lacks that it may take
//! and answers with its state of each, merged here too. Then a
//! second digest says whether the copies now agree. Merging is idempotent,
//! so a change still in flight that shows up as a difference costs only the
//! work. The same run restores a ward whose disk was replaced: against an
//! empty store every record differs, and the downstream cursor and the
//! sequence counter are taken from the city before any local write.
//!
//! Runs on a schedule and on demand (`wardsync verify`); and, as a refill,
//! from the replicator before it sends anything more, when the city is
//! found holding less than it acknowledged or sent down (restored from an
//! older backup), or this ward less than the city applied: the side that
//! lost data gets it back from the other's copy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::replicator::Connect;
use crate::clock::now_ms;
use crate::model::digest::{BUCKETS, Digest, Hash, Leaf, bucket, record_hash};
use crate::model::{RecordKey, Versioned, WardCode};
use crate::proto::pb::{self, city_sync_client::CitySyncClient};
use crate::proto::{key_from_pb, versioned_from_pb};
use crate::store::{Lost, MAX_REPAIR_RECORDS, StoreError, WardStore};

/// Records read from the store at a time.
const PAGE: usize = 1000;

/// Most queued changes checked so as not to send their records twice.
const MAX_QUEUED_CHECKED: u64 = 100_000;

/// What one run found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Records this ward holds.
    pub records: u64,
    /// Records that differed between this ward and the city.
    pub differing: u64,
    /// Of those, records merged from the city's copy into this ward's.
    pub fetched: u64,
    /// Of those, records this ward sent the city.
    pub sent: u64,
    /// Records the city gained writes for, and the writes.
    pub repaired_at_city: u64,
    /// Writes the city took.
    pub writes_at_city: u64,
    /// Records not sent because more changes are queued than are checked
    /// against them: sent by a later run, once the queue drains.
    pub deferred: u64,
    /// Writes by others only this ward held, which the city took back
    /// (on their author's signature), and those it did not take.
    pub others_taken: u64,
    /// See [`Report::others_taken`].
    pub others_not_taken: u64,
    /// Records the city refused, and why.
    pub refused: Vec<String>,
    /// Whether the copies agreed when the run ended.
    pub in_sync: bool,
    /// When it ended (ms since the epoch).
    pub finished_ms: i64,
    /// How long it took, in ms.
    pub took_ms: u64,
}

/// Verification's state, for `status` and the metrics.
#[derive(Debug, Default)]
pub struct VerifyState {
    /// A run is in progress.
    pub running: AtomicBool,
    /// The last run's report, or why it failed.
    pub last: Mutex<Option<Result<Report, String>>>,
    /// When the copies were last found to agree (seconds since the epoch; 0: never).
    pub in_sync_at: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Runs that failed (the city out of reach, an error).
    pub failures: Counter,
    /// Runs completed.
    pub runs: Counter,
    /// Records found to differ, in all runs.
    pub differing: Counter,
    /// Records merged from the city's copy.
    pub fetched: Counter,
    /// Records the city gained writes for from this ward's copy.
    pub repaired_at_city: Counter,
}

/// Runs verifications, one at a time.
pub struct Verifier {
    /// This ward.
    pub ward: WardCode,
    /// Its store.
    pub store: WardStore,
    /// How to reach the city.
    pub connect: Connect,
    /// Shared with status and metrics.
    pub state: std::sync::Arc<VerifyState>,
    /// One run at a time.
    turn: tokio::sync::Mutex<()>,
    /// Notified when a refill left the copies differing: the schedule
    /// then runs again soon.
    again: tokio::sync::Notify,
}

/// What a run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A check (scheduled, on demand; and after this ward lost data):
    /// records with changes still queued are left to their batches.
    Verify,
    /// After the city lost data, before anything more is sent: every
    /// record that differs is sent, queued changes or not (their batches
    /// may build on writes the city lost).
    Refill,
    /// A new, empty store, or one put back from a copy, before any local
    /// write: also the numbering and the downstream cursor; every record
    /// that differs is sent, queued changes or not.
    Restore,
}

/// The city's side of one comparison.
struct CityDigest {
    digest: Digest,
    cursor: u64,
    last_applied_seq: u64,
    /// The city's receipt for `last_applied_seq`.
    receipt: Vec<u8>,
    /// The ward's chain link there, as the city applied it.
    link: Option<crate::model::signed::Hash>,
}

impl Verifier {
    /// A verifier of `ward`'s `store` against the city `connect` reaches.
    pub fn new(ward: WardCode, store: WardStore, connect: Connect) -> Verifier {
        Verifier {
            ward,
            store,
            connect,
            state: Default::default(),
            turn: Default::default(),
            again: Default::default(),
        }
    }

    /// One run (see the module docs), after any run in progress.
    pub async fn run(&self, why: &str) -> Result<Report, String> {
        self.run_as(Mode::Verify, why).await
    }

    /// Brings this ward and the city level after `lost` lost data, before
    /// the replicator sends anything more: every record that differs is
    /// merged both ways (after the city's loss, queued changes or not).
    pub async fn refill(&self, lost: Lost) -> Result<Report, String> {
        let (mode, why) = match lost {
            Lost::City => {
                (Mode::Refill, "the city lost data: refilling it from this ward, and this ward from it")
            }
            Lost::Ward => (Mode::Verify, "this ward lost data: refilling it from the city"),
        };
        let outcome = self.run_as(mode, why).await;
        if outcome.as_ref().is_ok_and(|r| !r.in_sync) {
            // Changes still queued, say: compared again once they are sent.
            self.again.notify_one();
        }
        outcome
    }

    /// Restores an empty store from the city (its disk was replaced), or
    /// brings one put back from a copy level with it: the records this
    /// ward owns there, the downstream cursor, and a sequence counter past
    /// every change of this ward the city applied. Returns `None` for a new
    /// store the city knows nothing of (a new ward: it stays empty).
    pub async fn restore(&self) -> Result<Option<Report>, String> {
        let report = self.run_as(Mode::Restore, "restore").await?;
        Ok((!self.store.is_new()).then_some(report))
    }

    /// One run for `mode`, after any run in progress: timed, shown in
    /// status while it runs, counted and logged when it ends.
    async fn run_as(&self, mode: Mode, why: &str) -> Result<Report, String> {
        let _turn = self.turn.lock().await;
        self.state.running.store(true, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let outcome = self.compare_and_repair(mode).await.map(|mut r| {
            r.took_ms = started.elapsed().as_millis() as u64;
            r
        });
        self.state.running.store(false, Ordering::Relaxed);
        self.record(why, &outcome);
        outcome
    }

    fn record(&self, why: &str, outcome: &Result<Report, String>) {
        match outcome {
            Ok(r) => {
                self.state.runs.inc();
                self.state.differing.inc_by(r.differing);
                self.state.fetched.inc_by(r.fetched);
                self.state.repaired_at_city.inc_by(r.repaired_at_city);
                if r.in_sync {
                    self.state.in_sync_at.set(r.finished_ms as f64 / 1000.0);
                }
                if r.differing == 0 {
                    tracing::info!(ward = %self.ward, why, records = r.records, took_ms = r.took_ms, "verified: the city's copy of this ward's records is this ward's");
                } else {
                    tracing::warn!(ward = %self.ward, why, records = r.records, differing = r.differing,
                        fetched = r.fetched, sent = r.sent, repaired_at_city = r.repaired_at_city,
                        writes_at_city = r.writes_at_city, refused = r.refused.len(),
                        others_not_taken = r.others_not_taken, in_sync = r.in_sync, took_ms = r.took_ms,
                        "verification found records that differ between this ward and the city, and repaired them");
                }
                for why in &r.refused {
                    tracing::error!(ward = %self.ward, reason = %why, "the city refused a record this ward offered in a repair");
                }
            }
            Err(e) => {
                self.state.failures.inc();
                tracing::warn!(ward = %self.ward, why, error = %e, "verification against the city failed; it runs again later");
            }
        }
        *self.state.last.lock().expect("poisoned") = Some(outcome.clone());
    }

    async fn client(&self) -> Result<CitySyncClient<Channel>, String> {
        let channel = tokio::time::timeout(Duration::from_secs(10), (self.connect)())
            .await
            .map_err(|_| "no connection to the city within 10 s".to_string())?
            .map_err(|e| format!("cannot connect to the city: {e:#}"))?;
        Ok(CitySyncClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    /// Calls `each` with every record this ward shows and its state, a
    /// page at a time, letting other tasks run between pages (no thread of
    /// its own: a seeded simulation replays it exactly).
    async fn each_own(&self, mut each: impl FnMut(&RecordKey, &Versioned)) -> Result<(), String> {
        let mut after: Option<RecordKey> = None;
        loop {
            let page = self.store.states_after(after.as_ref(), PAGE).map_err(store_err)?;
            for (k, s) in &page {
                each(k, s);
            }
            match page.last() {
                Some((k, _)) if page.len() == PAGE => after = Some(k.clone()),
                _ => return Ok(()),
            }
            tokio::task::yield_now().await;
        }
    }

    /// This ward's digest.
    async fn own_digest(&self) -> Result<Digest, String> {
        let mut d = Digest::default();
        self.each_own(|k, s| d.add(k, &record_hash(k, s))).await?;
        Ok(d)
    }

    /// The city's digest of this ward's records; `end_streams` when
    /// restoring (the streams open are a lost incarnation's: what they
    /// queued is applied before the city answers where this ward stands).
    async fn city_digest(
        &self,
        client: &mut CitySyncClient<Channel>,
        end_streams: bool,
    ) -> Result<CityDigest, String> {
        let request = pb::DigestRequest { ward_code: self.ward.to_string(), end_streams };
        let reply = answer(client.digest(request), "the digest").await?;
        if reply.leaves.len() != BUCKETS || reply.counts.len() != BUCKETS {
            return Err(format!("the city sent {} buckets, not {BUCKETS}", reply.leaves.len()));
        }
        let mut leaves = Vec::with_capacity(BUCKETS);
        for (hash, count) in reply.leaves.iter().zip(&reply.counts) {
            let hash: Hash =
                hash.as_slice().try_into().map_err(|_| "the city sent a malformed bucket digest")?;
            leaves.push(Leaf { hash, count: *count });
        }
        Ok(CityDigest {
            digest: Digest { leaves },
            cursor: reply.cursor,
            last_applied_seq: reply.last_applied_seq,
            receipt: reply.receipt,
            link: crate::model::signed::hash_from(&reply.link),
        })
    }

    async fn compare_and_repair(&self, mode: Mode) -> Result<Report, String> {
        let restore = mode == Mode::Restore;
        let mut client = self.client().await?;
        let city = self.city_digest(&mut client, restore).await?;
        let mine = self.own_digest().await?;
        let mut report = Report { records: mine.records(), ..Report::default() };
        if restore && city.last_applied_seq > self.store.last_seq() {
            // Before anything else: no number the city applied is used again.
            // The chain goes on from the city's link there.
            let restore = crate::store::Renumbering::Restore;
            self.store.move_past(city.last_applied_seq, city.link, restore).map_err(store_err)?;
            // With the city's receipt for it: should the city lose what it
            // applied, the ward can prove it (nothing is deleted: all is acked).
            self.store.ack(city.last_applied_seq, &city.receipt, city.link).map_err(store_err)?;
            self.store.flush().await.map_err(store_err)?;
            tracing::warn!(ward = %self.ward, last_seq = city.last_applied_seq, "restoring: numbering continues after the city's last applied change of this ward");
        }
        let differing: Vec<u16> = mine.differing(&city.digest);
        if differing.is_empty() && mode != Mode::Refill {
            report.in_sync = true;
            report.finished_ms = now_ms();
            return Ok(report);
        }
        let wanted: BTreeSet<u16> = differing.iter().copied().collect();
        let mut own: HashMap<RecordKey, Hash> = HashMap::new();
        self.each_own(|k, s| {
            if wanted.contains(&bucket(k)) {
                own.insert(k.clone(), record_hash(k, s));
            }
        })
        .await?;
        let mut send: Vec<RecordKey> = Vec::new();
        let mut after = None;
        // (No bucket asked for would mean every bucket.)
        while !differing.is_empty() {
            let request = pb::DigestKeysRequest {
                ward_code: self.ward.to_string(),
                buckets: differing.iter().map(|b| u32::from(*b)).collect(),
                after,
            };
            let reply = answer(client.digest_keys(request), "the records of differing buckets").await?;
            let mut fetched: Vec<(RecordKey, Versioned)> = Vec::new();
            for r in reply.records {
                let key = key_from_pb(r.key).map_err(|e| format!("the city named a bad record key: {e}"))?;
                let city_state = versioned_from_pb(r.state.unwrap_or_default());
                if own.remove(&key).is_some_and(|h| h.as_slice() == r.hash.as_slice()) {
                    continue;
                }
                report.differing += 1;
                let mine = self.store.state(&key).map_err(store_err)?.unwrap_or_default();
                if has_writes_unseen(&mine, &city_state) {
                    send.push(key.clone());
                }
                fetched.push((key, city_state));
            }
            report.fetched += fetched.len() as u64;
            let cursor = if restore { city.cursor } else { 0 };
            self.store.adopt_states(&fetched, cursor).map_err(store_err)?;
            match reply.next_after {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        // What this ward holds and the city's copy of its records lacks.
        report.differing += own.len() as u64;
        send.extend(own.into_keys());
        // Writes still queued reach the city in their batches: a check
        // leaves them to those (a repair would apply them twice: harmless,
        // but logged twice). Not a store put back from a copy: its queue
        // may hold writes the city already has, whose batches bring back
        // nothing of what happened to the record since.
        if mode == Mode::Verify {
            match self.store.queued_keys(MAX_QUEUED_CHECKED).map_err(store_err)? {
                Some(queued) => send.retain(|k| !queued.contains(k)),
                None => {
                    report.deferred = send.len() as u64;
                    send.clear();
                }
            }
        }
        report.sent = send.len() as u64;
        for chunk in send.chunks(MAX_REPAIR_RECORDS) {
            let mut states = Vec::with_capacity(chunk.len());
            for key in chunk {
                if let Some(state) = self.store.state(key).map_err(store_err)? {
                    states.push((key.clone(), state));
                }
            }
            self.repair(&mut client, &states, &mut report).await?;
        }
        if mode == Mode::Refill {
            // Records this ward no longer shows (deleted, passed to another
            // ward) may hold writes of its the city lost: they are in no
            // digest, so their states go as they are.
            let mut after = None;
            loop {
                let (states, next) =
                    self.store.hidden_states_after(after.as_ref(), MAX_REPAIR_RECORDS).map_err(store_err)?;
                if !states.is_empty() {
                    self.repair(&mut client, &states, &mut report).await?;
                }
                match next {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
        }
        let city = self.city_digest(&mut client, false).await?;
        report.in_sync = self.own_digest().await?.root() == city.digest.root();
        report.finished_ms = now_ms();
        Ok(report)
    }

    /// Sends `states` for the city to take what it lacks; counts the outcome.
    async fn repair(
        &self,
        client: &mut CitySyncClient<Channel>,
        states: &[(RecordKey, Versioned)],
        report: &mut Report,
    ) -> Result<(), String> {
        let mut records = Vec::with_capacity(states.len());
        for (k, s) in states {
            // With the evidence of writes by others it holds: the city takes
            // one only on its author's signature.
            let authorship = self.store.authorship_of(k, s, self.ward.as_str()).map_err(store_err)?;
            records.push(pb::KeyedState {
                key: Some(k.into()),
                hash: Vec::new(),
                state: Some(s.into()),
                authorship,
            });
        }
        let request = pb::RepairRequest { ward_code: self.ward.to_string(), records };
        let reply = answer(client.repair(request), "the repair").await?;
        report.repaired_at_city += reply.repaired;
        report.writes_at_city += reply.writes;
        report.others_taken += reply.others_taken;
        report.others_not_taken += reply.others_not_taken;
        report.refused.extend(reply.refused);
        // The city's side of the exchange: what it holds of each record now
        // (for one this ward shows and the city does not, a later delete or
        // transfer this ward lost).
        let mut theirs = Vec::with_capacity(reply.states.len());
        for r in reply.states {
            let key = key_from_pb(r.key).map_err(|e| format!("the city named a bad record key: {e}"))?;
            theirs.push((key, versioned_from_pb(r.state.unwrap_or_default())));
        }
        self.store.adopt_states(&theirs, 0).map_err(store_err)?;
        Ok(())
    }

    /// Runs every `interval` (none: never) until `cancel` fires. A run or
    /// refill that leaves the copies differing (a change in flight, the
    /// city out of reach) is followed by another sooner, at 5 s, doubling
    /// up to `interval`.
    pub async fn schedule(&self, interval: Option<Duration>, cancel: CancellationToken) {
        let mut retry: Option<Duration> = None;
        loop {
            let wait = match (retry, interval) {
                (Some(r), Some(i)) => Some(r.min(i)),
                (r, i) => r.or(i),
            };
            let why = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = self.again.notified() => {
                    retry = Some(FIRST_RETRY);
                    continue;
                }
                _ = sleep_or_never(wait) => if retry.is_some() { "again: the copies differed" } else { "scheduled" },
            };
            let outcome = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                o = self.run(why) => o,
            };
            retry = match outcome {
                Ok(r) if r.in_sync => None,
                _ => Some(retry.map_or(FIRST_RETRY, |r| r * 2)),
            };
        }
    }
}

/// The first follow-up of a run that left the copies differing.
const FIRST_RETRY: Duration = Duration::from_secs(5);

async fn sleep_or_never(interval: Option<Duration>) {
    match interval {
        Some(d) => tokio::time::sleep(crate::clock::jitter(d, 0.1)).await,
        None => std::future::pending().await,
    }
}

/// True if `mine` holds a write that `city` does not, or holds with less
/// of its claim (the city takes this ward's own, and others' only after a
/// loss of its own).
fn has_writes_unseen(mine: &Versioned, city: &Versioned) -> bool {
    mine.fields.iter().any(|(field, heads)| heads.iter().any(|w| city.adds(field, w)))
}

/// The city's answer to a call for `what`, within [`crate::net::RPC_DEADLINE`]
/// (a call held by a dead link fails instead of stalling the replicator).
async fn answer<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    what: &str,
) -> Result<T, String> {
    match tokio::time::timeout(crate::net::RPC_DEADLINE, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(format!("the city refused {what}: {}", s.message())),
        Err(_) => Err(format!("no answer from the city for {what} within {:?}", crate::net::RPC_DEADLINE)),
    }
}

fn store_err(e: StoreError) -> String {
    format!("this ward's store: {e}")
}
