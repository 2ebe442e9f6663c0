//! One suite, every engine: the sled engine and the in-memory engine must
//! behave the same for everything the ward and city stores rely on.

use std::sync::Arc;

use super::*;
use crate::generate::{Plan, WardGen};
use crate::model::{
    Change, Context, Hlc, Kind, Op, Policies, Record, RecordKey, Stamp, VersionVector, WardCode, flatten,
};

/// An engine under test that can be restarted, keeping what was flushed.
trait Harness {
    fn engine(&self) -> Arc<dyn Engine>;
    /// Drops every handle and reopens: what was flushed must remain.
    fn restart(&mut self);
}

struct Sled {
    dir: tempfile::TempDir,
    engine: Option<Arc<dyn Engine>>,
}

impl Sled {
    fn new() -> Sled {
        let dir = tempfile::tempdir().unwrap();
        let engine: Arc<dyn Engine> = Arc::new(SledEngine::open(dir.path(), 16).unwrap());
        Sled { dir, engine: Some(engine) }
    }
}

impl Harness for Sled {
    fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone().unwrap()
    }
    fn restart(&mut self) {
        self.engine = None;
        // sled's background flusher lets go of the file lock shortly after
        // the last handle is dropped: retry until it has, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let engine = loop {
            match SledEngine::open(self.dir.path(), 16) {
                Ok(e) => break e,
                Err(_) if std::time::Instant::now() < deadline => std::thread::yield_now(),
                Err(e) => panic!("cannot reopen the database: {e}"),
            }
        };
        self.engine = Some(Arc::new(engine));
    }
}

struct Mem(MemEngine);

impl Harness for Mem {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(self.0.clone())
    }
    fn restart(&mut self) {
        self.0.crash();
    }
}

fn harnesses() -> Vec<(&'static str, Box<dyn Harness>)> {
    vec![("sled", Box::new(Sled::new())), ("mem", Box::new(Mem(MemEngine::new())))]
}

/// A city database under test, on an engine or on PostgreSQL.
enum City {
    Engine(Box<dyn Harness>),
    Postgres(pg::test_cluster::Postgres),
}

impl City {
    /// Opens the database (again), on what was made durable.
    async fn open(&mut self, policies: Policies) -> Arc<dyn CityDb> {
        match self {
            City::Engine(h) => Arc::new(CityStore::open(h.engine(), policies).unwrap()),
            City::Postgres(pg) => Arc::new(pg::PgCityStore::open(&pg.url(), None, policies).await.unwrap()),
        }
    }

    /// What an audit reads of the database (flushed first).
    async fn evidence(&self) -> Box<dyn crate::store::Evidence> {
        match self {
            City::Engine(h) => Box::new(crate::store::KvEvidence::open(h.engine()).unwrap()),
            City::Postgres(pg) => Box::new(pg::PgEvidence::open(&pg.url(), None).await.unwrap()),
        }
    }

    /// Loses what was not made durable, as a crash would (every handle dropped first).
    fn restart(&mut self) {
        if let City::Engine(h) = self {
            h.restart();
        }
    }
}

/// Every city store: the embedded one on both engines, and PostgreSQL.
fn cities() -> Vec<(&'static str, City)> {
    let mut all: Vec<_> = harnesses().into_iter().map(|(n, h)| (n, City::Engine(h))).collect();
    all.push(("postgres", City::Postgres(pg::test_cluster::Postgres::start())));
    all
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

fn ward(s: &str) -> WardCode {
    WardCode::parse(s).unwrap()
}

fn ctx() -> Context {
    Context { today: "2026-11-22".parse().unwrap(), province: Some("01".into()) }
}

/// The `n`-th generated citizen of ward `owner`.
fn citizen(owner: &str, n: u64) -> Record {
    let plan = Plan { citizens: n + 1, ..Plan::default() };
    WardGen::new(&ward(owner), 11, ctx().today).records(plan).nth(n as usize).unwrap()
}

fn put(owner: &str, n: u64) -> NewChange {
    let r = citizen(owner, n);
    NewChange::put(RecordKey::new(Kind::Citizen, &r.key_id()).unwrap(), r)
}

#[test]
fn engine_basics() {
    for (name, h) in harnesses() {
        let e = h.engine();
        let mut b = Batch::default();
        for k in ["b2", "a1", "b1", "c1"] {
            b.insert(k.as_bytes(), k.as_bytes());
        }
        e.apply(b).unwrap();
        let got: Vec<_> = e
            .scan(b"b", &prefix_end(b"b"), 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect();
        assert_eq!(got, ["b1", "b2"], "{name}");
        assert_eq!(e.count(b"a", b"c").unwrap(), 3, "{name}");
        assert_eq!(e.scan(b"", b"\xff", 2).unwrap().len(), 2, "{name}");
        let mut b = Batch::default();
        b.remove(&b"a1"[..]);
        b.insert(&b"a1x"[..], &b"v"[..]);
        e.apply(b).unwrap();
        assert_eq!(e.get(b"a1").unwrap(), None, "{name}");
        assert_eq!(e.get(b"a1x").unwrap().as_deref(), Some(&b"v"[..]), "{name}");
    }
}

#[test]
fn flushed_batches_survive_restart() {
    for (name, mut h) in harnesses() {
        let e = h.engine();
        let mut b = Batch::default();
        b.insert(&b"k1"[..], &b"one"[..]);
        b.insert(&b"k2"[..], &b"two"[..]);
        e.apply(b).unwrap();
        block(e.flush()).unwrap();
        drop(e);
        h.restart();
        let e = h.engine();
        assert_eq!(e.get(b"k1").unwrap().as_deref(), Some(&b"one"[..]), "{name}");
        assert_eq!(e.get(b"k2").unwrap().as_deref(), Some(&b"two"[..]), "{name}");
    }
}

#[test]
fn mem_engine_crash_loses_exactly_the_unflushed() {
    let m = MemEngine::new();
    let mut b = Batch::default();
    b.insert(&b"durable"[..], &b"1"[..]);
    m.apply(b).unwrap();
    block(m.flush()).unwrap();
    let mut b = Batch::default();
    b.insert(&b"volatile"[..], &b"2"[..]);
    b.remove(&b"durable"[..]);
    m.apply(b).unwrap();
    assert_eq!(m.get(b"volatile").unwrap().as_deref(), Some(&b"2"[..]));
    m.crash();
    assert_eq!(m.get(b"volatile").unwrap(), None);
    assert_eq!(m.get(b"durable").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn outbox_keeps_order_deletes_on_ack_and_survives_restart() {
    for (name, mut h) in harnesses() {
        let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
        let seqs = store.append(&(1..=5).map(|n| put("00082", n)).collect::<Vec<_>>(), 7).unwrap();
        assert_eq!(seqs, [1, 2, 3, 4, 5], "{name}");
        let seqs = store.append(&[put("00082", 6)], 8).unwrap();
        assert_eq!(seqs, [6], "{name}");
        assert_eq!(block(store.flush()).unwrap(), 6, "{name}");

        let all = store.outbox_range(0, 6, 100, usize::MAX).unwrap();
        assert_eq!(all.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(store.outbox_range(0, 4, 100, usize::MAX).unwrap().len(), 4, "{name}");
        assert_eq!(store.outbox_range(2, 6, 2, usize::MAX).unwrap()[0].seq, 3, "{name}");
        // A byte bound still returns at least one entry.
        assert_eq!(store.outbox_range(0, 6, 100, 1).unwrap().len(), 1, "{name}");

        store.ack(3, &[], None).unwrap();
        assert_eq!(store.backlog(), 3, "{name}");
        assert_eq!(store.outbox_range(0, 6, 100, usize::MAX).unwrap()[0].seq, 4, "{name}");
        store.ack(2, &[], None).unwrap(); // never backwards
        assert_eq!(store.acked_seq(), 3, "{name}");
        block(store.flush()).unwrap();
        drop(store);

        h.restart();
        let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
        assert_eq!((store.last_seq(), store.acked_seq()), (6, 3), "{name}");
        let left = store.outbox_range(store.acked_seq(), store.last_seq(), 100, usize::MAX);
        assert_eq!(left.unwrap().iter().map(|c| c.seq).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(store.count(Kind::Citizen), 6, "{name}");
        // Numbering resumes after the last assigned sequence, even once all is acked.
        store.ack(6, &[], None).unwrap();
        assert_eq!(store.append(&[put("00082", 7)], 9).unwrap(), [7], "{name}");
    }
}

#[test]
fn record_counts_follow_puts_and_deletes_and_match_a_recount_after_restart() {
    for (name, mut h) in harnesses() {
        let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
        let puts: Vec<NewChange> = (1..=5).map(|n| put("00082", n)).collect();
        store.append(&puts, 1).unwrap();
        store.append(&[put("00082", 2)], 2).unwrap(); // an update: no new record
        assert_eq!(store.count(Kind::Citizen), 5, "{name}");
        let delete = NewChange::delete(puts[2].key.clone());
        store.append(&[delete, put("00082", 6)], 3).unwrap();
        assert_eq!((store.count(Kind::Citizen), store.count(Kind::Land)), (5, 0), "{name}");
        block(store.flush()).unwrap();
        drop(store);
        h.restart();
        let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
        assert_eq!(store.count(Kind::Citizen), 5, "{name}: recounted on opening");
    }
}

#[test]
fn unflushed_writes_are_lost_together_with_their_outbox_entries() {
    let mut h = Mem(MemEngine::new());
    let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
    store.append(&[put("00082", 1)], 1).unwrap();
    block(store.flush()).unwrap();
    store.append(&[put("00082", 2)], 2).unwrap();
    h.restart();
    let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
    assert_eq!(store.last_seq(), 1);
    assert_eq!(store.count(Kind::Citizen), 1);
    assert_eq!(store.outbox_range(0, 10, 10, usize::MAX).unwrap().len(), 1);
}

#[test]
fn full_outbox_refuses_new_writes_and_keeps_queued_ones() {
    for (name, h) in harnesses() {
        let store = WardStore::open(h.engine(), ward("00082"), 3).unwrap();
        store.append(&[put("00082", 1), put("00082", 2)], 1).unwrap();
        let err = store.append(&[put("00082", 3), put("00082", 4)], 1).unwrap_err();
        assert!(matches!(err, StoreError::Full(_)), "{name}: {err}");
        assert_eq!(store.last_seq(), 2, "{name}");
        assert_eq!(store.outbox_range(0, 10, 10, usize::MAX).unwrap().len(), 2, "{name}");
        store.ack(2, &[], None).unwrap();
        assert!(store.append(&[put("00082", 3), put("00082", 4)], 1).is_ok(), "{name}");
    }
}

/// No limit on clock skew: these tests use small clock values.
const NO_SKEW_LIMIT: u64 = u64::MAX;

/// Ward `owner`'s change number `seq`: its `seq`-th citizen, all fields, at clock `seq`.
fn change(owner: &str, seq: u64) -> Change {
    let nc = put(owner, seq);
    let Op::Put(r) = &nc.op else { unreachable!() };
    let fields = flatten(r).into_keys().collect();
    let stamp = Stamp { hlc: Hlc { wall_ms: seq, logical: 0 }, writer: owner.to_string() };
    Change {
        seq,
        written_at_ms: seq as i64,
        key: nc.key,
        stamp,
        context: VersionVector::default(),
        fields,
        op: nc.op,
    }
}

/// `c` re-stamped by `writer` at clock `ms`, having seen `seen` (writer, clock).
fn stamped(c: Change, writer: &str, ms: u64, seen: &[(&str, u64)]) -> Change {
    let stamp = Stamp { hlc: Hlc { wall_ms: ms, logical: 0 }, writer: writer.to_string() };
    let context =
        VersionVector(seen.iter().map(|(w, t)| (w.to_string(), Hlc { wall_ms: *t, logical: 0 })).collect());
    Change { stamp, context, ..c }
}

fn changes(owner: &str, seqs: std::ops::RangeInclusive<u64>) -> Arc<[Incoming]> {
    seqs.map(|seq| Incoming::Change(change(owner, seq))).collect()
}

/// The ward's record counter, checked against its index.
async fn owned(city: &dyn CityDb, ward: &WardCode) -> u64 {
    let state = city.wards().into_iter().find(|(w, _)| w == ward).unwrap().1;
    let (mut listed, mut total) = (0, 0);
    for k in Kind::ALL {
        listed += city.list(k, Some(ward), "", usize::MAX).await.unwrap().len();
        total += city.list(k, None, "", usize::MAX).await.unwrap().len();
    }
    assert_eq!(state.records, listed as u64, "the counter matches the index");
    assert_eq!(
        city.records_by_kind().iter().map(|(_, n)| *n as usize).sum::<usize>(),
        total,
        "kind counters"
    );
    state.records
}

fn batch(ward: &WardCode, changes: Vec<Change>) -> WardBatch {
    WardBatch {
        ward: ward.clone(),
        changes: changes.into_iter().map(Incoming::Change).collect(),
        links: None,
    }
}

#[test]
fn history_starts_at_the_first_change_since_a_time() {
    for (name, h) in harnesses() {
        let city = CityStore::open(h.engine(), Policies::default()).unwrap();
        let a = ward("00082");
        for seq in 1..=9u64 {
            // Applied at city times 10, 20, ... 90.
            city.apply_group(
                &[batch(&a, vec![change("00082", seq)])],
                seq as i64 * 10,
                &ctx(),
                NO_SKEW_LIMIT,
            )
            .unwrap();
        }
        block(city.flush()).unwrap();
        let since =
            |t, limit| city.history(t, limit, |_| true).unwrap().iter().map(|l| l.cursor).collect::<Vec<_>>();
        assert_eq!(since(0, 100), (1..=9).collect::<Vec<_>>(), "{name}");
        assert_eq!(since(45, 100), [5, 6, 7, 8, 9], "{name}");
        assert_eq!(since(50, 2), [5, 6], "{name}");
        assert!(since(91, 100).is_empty(), "{name}");
        let odd = city.history(0, 3, |l| l.cursor % 2 == 1).unwrap();
        assert_eq!(odd.iter().map(|l| l.cursor).collect::<Vec<_>>(), [1, 3, 5], "{name}");
    }
}

mod bounds;
mod chains;
mod city;
mod civil;
mod clocks;
mod durability;
mod office;
mod pages;
mod policies;
mod postgres;
mod repair;

/// The office's calls as a city without TLS takes them (unsigned), by
/// what they ask: the suites name what the office does, not how it signs.
#[async_trait::async_trait]
trait OfficeCalls {
    async fn office_put(
        &self,
        record: Record,
        seen: Option<VersionVector>,
        by: &str,
        now_ms: i64,
        ctx: &Context,
    ) -> Result<Result<u64, OfficeError>, StoreError>;
    async fn resolve(
        &self,
        key: &RecordKey,
        field: &str,
        value: &str,
        by: &str,
        now_ms: i64,
        ctx: &Context,
    ) -> Result<Result<u64, OfficeError>, StoreError>;
    async fn discard(
        &self,
        ward: &WardCode,
        seq: u64,
        reason: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<Result<u64, OfficeError>, StoreError>;
}

#[async_trait::async_trait]
impl OfficeCalls for Arc<dyn CityDb> {
    async fn office_put(
        &self,
        record: Record,
        seen: Option<VersionVector>,
        by: &str,
        now_ms: i64,
        ctx: &Context,
    ) -> Result<Result<u64, OfficeError>, StoreError> {
        let asked = crate::model::office_request::Asked::Edit {
            record: Box::new(record),
            seen: seen.unwrap_or_default(),
        };
        self.office(&SignedRequest::unsigned(asked, by, 0), now_ms, ctx).await
    }
    async fn resolve(
        &self,
        key: &RecordKey,
        field: &str,
        value: &str,
        by: &str,
        now_ms: i64,
        ctx: &Context,
    ) -> Result<Result<u64, OfficeError>, StoreError> {
        let asked = crate::model::office_request::Asked::Resolve {
            key: key.clone(),
            field: field.to_string(),
            value: value.to_string(),
        };
        self.office(&SignedRequest::unsigned(asked, by, 0), now_ms, ctx).await
    }
    async fn discard(
        &self,
        ward: &WardCode,
        seq: u64,
        reason: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<Result<u64, OfficeError>, StoreError> {
        let asked = crate::model::office_request::Asked::Discard {
            ward: ward.clone(),
            seq,
            reason: reason.to_string(),
        };
        let today = Context { today: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), province: None };
        self.office(&SignedRequest::unsigned(asked, by, 0), now_ms, &today).await
    }
}
