//! One suite, every engine: the sled engine and the in-memory engine must
//! behave the same for everything the ward and city stores rely on.

use std::sync::Arc;

use super::*;
use crate::model::{Body, Change, Citizen, Kind, Op, Record, RecordKey, WardCode};

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
        let engine: Arc<dyn Engine> = Arc::new(SledEngine::open(dir.path()).unwrap());
        Sled {
            dir,
            engine: Some(engine),
        }
    }
}

impl Harness for Sled {
    fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone().unwrap()
    }
    fn restart(&mut self) {
        self.engine = None;
        self.engine = Some(Arc::new(SledEngine::open(self.dir.path()).unwrap()));
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
    vec![
        ("sled", Box::new(Sled::new())),
        ("mem", Box::new(Mem(MemEngine::new()))),
    ]
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn ward(s: &str) -> WardCode {
    WardCode::parse(s).unwrap()
}

fn citizen(owner: &str, id: &str, name: &str) -> Record {
    Record {
        ward: ward(owner),
        body: Body::Citizen(Citizen {
            personal_id: id.into(),
            full_name: name.into(),
            date_of_birth: "1985-03-02".into(),
            permanent_address: "1 Hàng Bông".into(),
        }),
    }
}

fn put(owner: &str, n: u64) -> NewChange {
    let id = format!("0010850{n:05}");
    NewChange {
        key: RecordKey::new(Kind::Citizen, &id).unwrap(),
        op: Op::Put(citizen(owner, &id, &format!("Nguyễn Văn {n}"))),
    }
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
        assert_eq!(
            e.get(b"k1").unwrap().as_deref(),
            Some(&b"one"[..]),
            "{name}"
        );
        assert_eq!(
            e.get(b"k2").unwrap().as_deref(),
            Some(&b"two"[..]),
            "{name}"
        );
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
        let store = WardStore::open(h.engine(), 1000).unwrap();
        let seqs = store
            .append(&(1..=5).map(|n| put("00082", n)).collect::<Vec<_>>(), 7)
            .unwrap();
        assert_eq!(seqs, [1, 2, 3, 4, 5], "{name}");
        let seqs = store.append(&[put("00082", 6)], 8).unwrap();
        assert_eq!(seqs, [6], "{name}");
        assert_eq!(block(store.flush()).unwrap(), 6, "{name}");

        let all = store.outbox_range(0, 6, 100, usize::MAX).unwrap();
        assert_eq!(
            all.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            store.outbox_range(0, 4, 100, usize::MAX).unwrap().len(),
            4,
            "{name}"
        );
        assert_eq!(
            store.outbox_range(2, 6, 2, usize::MAX).unwrap()[0].seq,
            3,
            "{name}"
        );
        // A byte bound still returns at least one entry.
        assert_eq!(store.outbox_range(0, 6, 100, 1).unwrap().len(), 1, "{name}");

        store.ack(3).unwrap();
        assert_eq!(store.backlog(), 3, "{name}");
        assert_eq!(
            store.outbox_range(0, 6, 100, usize::MAX).unwrap()[0].seq,
            4,
            "{name}"
        );
        store.ack(2).unwrap(); // never backwards
        assert_eq!(store.acked_seq(), 3, "{name}");
        block(store.flush()).unwrap();
        drop(store);

        h.restart();
        let store = WardStore::open(h.engine(), 1000).unwrap();
        assert_eq!((store.last_seq(), store.acked_seq()), (6, 3), "{name}");
        let left = store.outbox_range(store.acked_seq(), store.last_seq(), 100, usize::MAX);
        assert_eq!(
            left.unwrap().iter().map(|c| c.seq).collect::<Vec<_>>(),
            [4, 5, 6]
        );
        assert_eq!(store.count(Kind::Citizen).unwrap(), 6, "{name}");
        // Numbering resumes after the last assigned sequence, even once all is acked.
        store.ack(6).unwrap();
        assert_eq!(store.append(&[put("00082", 7)], 9).unwrap(), [7], "{name}");
    }
}

#[test]
fn unflushed_writes_are_lost_together_with_their_outbox_entries() {
    let mut h = Mem(MemEngine::new());
    let store = WardStore::open(h.engine(), 1000).unwrap();
    store.append(&[put("00082", 1)], 1).unwrap();
    block(store.flush()).unwrap();
    store.append(&[put("00082", 2)], 2).unwrap();
    h.restart();
    let store = WardStore::open(h.engine(), 1000).unwrap();
    assert_eq!(store.last_seq(), 1);
    assert_eq!(store.count(Kind::Citizen).unwrap(), 1);
    assert_eq!(store.outbox_range(0, 10, 10, usize::MAX).unwrap().len(), 1);
}

#[test]
fn full_outbox_refuses_new_writes_and_keeps_queued_ones() {
    for (name, h) in harnesses() {
        let store = WardStore::open(h.engine(), 3).unwrap();
        store
            .append(&[put("00082", 1), put("00082", 2)], 1)
            .unwrap();
        let err = store
            .append(&[put("00082", 3), put("00082", 4)], 1)
            .unwrap_err();
        assert!(matches!(err, StoreError::Full(_)), "{name}: {err}");
        assert_eq!(store.last_seq(), 2, "{name}");
        assert_eq!(
            store.outbox_range(0, 10, 10, usize::MAX).unwrap().len(),
            2,
            "{name}"
        );
        store.ack(2).unwrap();
        assert!(
            store.append(&[put("00082", 3), put("00082", 4)], 1).is_ok(),
            "{name}"
        );
    }
}

fn changes(owner: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Change> {
    seqs.map(|seq| {
        let nc = put(owner, seq);
        Change {
            seq,
            written_at_ms: seq as i64,
            key: nc.key,
            op: nc.op,
        }
    })
    .collect()
}

/// The ward's record counter, checked against its index.
fn owned(city: &CityStore, ward: &WardCode) -> u64 {
    let state = city.wards().into_iter().find(|(w, _)| w == ward).unwrap().1;
    let listed: usize = Kind::ALL
        .iter()
        .map(|k| city.list(*k, Some(ward), "", usize::MAX).unwrap().len())
        .sum();
    assert_eq!(
        state.records, listed as u64,
        "the counter matches the index"
    );
    state.records
}

#[test]
fn city_applies_each_change_once_however_often_it_is_sent() {
    for (name, mut h) in harnesses() {
        let city = CityStore::open(h.engine()).unwrap();
        let a = ward("00082");
        let b1 = WardBatch {
            ward: a.clone(),
            changes: changes("00082", 1..=5),
        };
        assert_eq!(
            city.apply_group(std::slice::from_ref(&b1), 1).unwrap(),
            [Ok(5)],
            "{name}"
        );
        // The same batch again, and an overlapping one.
        let b2 = WardBatch {
            ward: a.clone(),
            changes: changes("00082", 3..=8),
        };
        assert_eq!(
            city.apply_group(&[b1, b2], 2).unwrap(),
            [Ok(5), Ok(8)],
            "{name}"
        );
        block(city.flush()).unwrap();
        let log = city.changes_since(0, 100).unwrap();
        let seqs: Vec<u64> = log.iter().map(|l| l.change.seq).collect();
        assert_eq!(seqs, (1..=8).collect::<Vec<_>>(), "{name}");
        assert_eq!(log.last().unwrap().cursor, 8, "{name}");
        drop(city);

        h.restart();
        let city = CityStore::open(h.engine()).unwrap();
        assert_eq!(city.last_applied(&a), 8, "{name}");
        let again = WardBatch {
            ward: a.clone(),
            changes: changes("00082", 1..=9),
        };
        assert_eq!(city.apply_group(&[again], 3).unwrap(), [Ok(9)], "{name}");
        block(city.flush()).unwrap();
        assert_eq!(city.changes_since(0, 100).unwrap().len(), 9, "{name}");
        assert_eq!(
            city.list(Kind::Citizen, Some(&a), "", 100).unwrap().len(),
            9,
            "{name}"
        );
        assert_eq!(owned(&city, &a), 9, "{name}");
    }
}

#[test]
fn city_rejects_a_gap_without_storing_anything() {
    for (name, h) in harnesses() {
        let city = CityStore::open(h.engine()).unwrap();
        let a = ward("00082");
        let out = city
            .apply_group(
                &[WardBatch {
                    ward: a.clone(),
                    changes: changes("00082", 3..=4),
                }],
                1,
            )
            .unwrap();
        assert!(
            matches!(
                &out[0],
                Err(BatchRejected::Gap {
                    expected: 1,
                    got: 3,
                    ..
                })
            ),
            "{name}"
        );
        assert_eq!(city.last_applied(&a), 0, "{name}");
        assert!(
            city.list(Kind::Citizen, None, "", 10).unwrap().is_empty(),
            "{name}"
        );
    }
}

#[test]
fn city_refuses_foreign_records_but_keeps_the_stream_moving() {
    for (name, h) in harnesses() {
        let city = CityStore::open(h.engine()).unwrap();
        let a = ward("00082");
        let b = ward("00145");
        // Ward b sends a record that names ward a as its owner, then one of its own.
        let mut cs = changes("00082", 1..=1);
        cs.extend(changes("00145", 2..=2));
        let out = city
            .apply_group(
                &[WardBatch {
                    ward: b.clone(),
                    changes: cs,
                }],
                5,
            )
            .unwrap();
        assert_eq!(out, [Ok(2)], "{name}");
        // Ward a owns record 2? No: b does. a may not delete it.
        let del = Change {
            op: Op::Delete,
            ..changes("00145", 2..=2).remove(0)
        };
        let del = Change { seq: 1, ..del };
        let out = city
            .apply_group(
                &[WardBatch {
                    ward: a.clone(),
                    changes: vec![del],
                }],
                6,
            )
            .unwrap();
        assert_eq!(out, [Ok(1)], "{name}");
        block(city.flush()).unwrap();

        let refused = city.refused(None).unwrap();
        assert_eq!(refused.len(), 2, "{name}");
        assert!(
            refused
                .iter()
                .any(|r| r.ward == b && r.reason.contains("sent by ward 00145"))
        );
        assert!(
            refused
                .iter()
                .any(|r| r.ward == a && r.reason.contains("belongs to ward 00145"))
        );
        assert_eq!(city.refused(Some(&a)).unwrap().len(), 1, "{name}");
        let stored = city.list(Kind::Citizen, None, "", 10).unwrap();
        assert_eq!(stored.len(), 1, "{name}");
        assert_eq!(stored[0].ward, b, "{name}");
        assert_eq!(
            city.wards().iter().map(|(_, s)| s.refused).sum::<u64>(),
            2,
            "{name}"
        );
    }
}

#[test]
fn city_list_pages_with_a_cursor_and_deletes_leave_the_index() {
    for (name, h) in harnesses() {
        let city = CityStore::open(h.engine()).unwrap();
        let a = ward("00082");
        city.apply_group(
            &[WardBatch {
                ward: a.clone(),
                changes: changes("00082", 1..=5),
            }],
            1,
        )
        .unwrap();
        let p1 = city.list(Kind::Citizen, Some(&a), "", 2).unwrap();
        let last = p1.last().unwrap().key_id();
        let p2 = city.list(Kind::Citizen, Some(&a), &last, 10).unwrap();
        assert_eq!(p1.len() + p2.len(), 5, "{name}");
        assert!(p2.iter().all(|r| r.key_id() > last), "{name}");
        let del = Change {
            seq: 6,
            op: Op::Delete,
            ..changes("00082", 1..=1).remove(0)
        };
        city.apply_group(
            &[WardBatch {
                ward: a.clone(),
                changes: vec![del],
            }],
            2,
        )
        .unwrap();
        assert_eq!(owned(&city, &a), 4, "{name}");
        assert_eq!(
            city.list(Kind::Citizen, None, "", 10).unwrap().len(),
            4,
            "{name}"
        );
    }
}
