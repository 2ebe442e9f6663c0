//! Durability: what a flush covers survives a power cut, and what the
//! stores report or renumber after losing data. A power cut of the sled
//! engine needs a file system that forgets what was not synced: that case
//! is `tests/power_loss.rs` (`sled_keeps_every_flushed_batch_across_a_power_cut`).

use std::time::Duration;

use super::*;

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
}

fn insert(e: &MemEngine, k: &str) {
    let mut b = Batch::default();
    b.insert(k.as_bytes(), &b"v"[..]);
    e.apply(b).unwrap();
}

#[test]
fn a_flush_covers_what_was_applied_before_it_and_a_cut_during_it_keeps_nothing_of_it() {
    paused().block_on(async {
        let m = MemEngine::with_flush_time(Duration::from_millis(10));
        insert(&m, "a");
        let mut flush = m.flush();
        insert(&m, "b");
        tokio::select! {
            _ = &mut flush => panic!("a flush that takes 10 ms completed in 5"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        drop(flush);
        m.crash();
        assert_eq!(m.get(b"a").unwrap(), None, "the cut came before the flush completed");

        insert(&m, "a");
        let flush = m.flush();
        insert(&m, "b");
        flush.await.unwrap();
        m.crash();
        assert!(m.get(b"a").unwrap().is_some(), "applied before the flush: durable");
        assert_eq!(m.get(b"b").unwrap(), None, "applied after the flush was called: not covered");
    });
}

#[test]
fn a_ward_behind_the_city_renumbers_its_queue_past_the_city_and_keeps_it() {
    for (name, mut h) in harnesses() {
        let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
        let puts: Vec<NewChange> = (1..=10).map(|n| put("00082", n)).collect();
        store.append(&puts, 1).unwrap();
        store.ack(2, &[], None).unwrap();
        assert_eq!(
            store.move_past(5, None, Renumbering::Behind).unwrap(),
            0,
            "{name}: not behind the city: nothing to do"
        );
        // The city applied up to 12, past this ward's 10: the eight queued
        // entries move to 13..=20.
        assert_eq!(store.move_past(12, None, Renumbering::Behind).unwrap(), 8, "{name}");
        let check = |store: &WardStore| {
            assert_eq!((store.last_seq(), store.acked_seq(), store.backlog()), (20, 12, 8), "{name}");
            let queued = store.outbox_range(12, 20, 100, usize::MAX).unwrap();
            assert_eq!(queued.iter().map(|c| c.seq).collect::<Vec<_>>(), (13..=20).collect::<Vec<_>>());
            let keys: Vec<&RecordKey> = queued.iter().map(|c| &c.key).collect();
            assert_eq!(keys, puts[2..].iter().map(|p| &p.key).collect::<Vec<_>>(), "{name}: same order");
        };
        check(&store);
        block(store.flush()).unwrap();
        drop(store);
        h.restart();
        let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
        check(&store);
        assert_eq!(store.append(&[put("00082", 11)], 2).unwrap(), [21], "{name}");
    }
}

#[test]
fn the_city_reports_only_durable_sequences_and_records_acknowledged_losses() {
    for (name, mut h) in harnesses() {
        let city = CityStore::open(h.engine(), Policies::default()).unwrap();
        let a = ward("00082");
        let b1 = WardBatch { ward: a.clone(), changes: changes("00082", 1..=5), links: None };
        assert_eq!(city.apply_group(&[b1], 1, &ctx(), NO_SKEW_LIMIT).unwrap(), [Ok(5)], "{name}");
        assert_eq!(city.last_applied(&a), 0, "{name}: applied, not yet durable: not reported");
        assert_eq!(city.wards()[0].1.last_applied_seq, 0, "{name}");
        block(city.flush()).unwrap();
        assert_eq!(city.last_applied(&a), 5, "{name}");

        // The ward was told 9 were applied: 6 to 9 were lost.
        assert_eq!(
            city.acknowledged_lost(&a, AckClaim { acked: 9, proven: 9, from: 1, link: None }, 77).unwrap(),
            Some((6, 9)),
            "{name}"
        );
        assert_eq!(
            city.acknowledged_lost(&a, AckClaim { acked: 9, proven: 9, from: 1, link: None }, 78).unwrap(),
            None,
            "{name}: found once"
        );
        block(city.flush()).unwrap();
        drop(city);
        h.restart();
        let city = CityStore::open(h.engine(), Policies::default()).unwrap();
        assert_eq!(city.last_applied(&a), 9, "{name}");
        let lost = &city.wards()[0].1.lost;
        assert_eq!(*lost, Loss { changes: 4, last_range: (6, 9), found_at_ms: 77 }, "{name}");
        let b2 = WardBatch { ward: a.clone(), changes: changes("00082", 10..=11), links: None };
        assert_eq!(city.apply_group(&[b2], 2, &ctx(), NO_SKEW_LIMIT).unwrap(), [Ok(11)], "{name}");
    }
}

#[tokio::test]
async fn a_change_that_claims_writes_the_city_does_not_hold_is_held_with_what_it_depends_on() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let create = change("00082", 1);
        // Stamped an hour ahead: quarantined on arrival.
        let ahead = stamped(change("00082", 2), "00082", 3_600_000, &[]);
        let key = ahead.key.clone();
        // The ward's next write to the same record, its clock corrected,
        // builds on the quarantined one.
        let next = stamped(Change { seq: 3, ..ahead.clone() }, "00082", 4, &[("00082", 3_600_000)]);
        // And a forged claim to have seen the office's writes of the first record.
        let forged = stamped(Change { seq: 4, ..create.clone() }, "00082", 5, &[("city", 9), ("00082", 1)]);
        let group = [batch(&a, vec![create, ahead, next, forged])];
        assert_eq!(city.apply_group(group.to_vec(), 1, ctx(), 60_000).await.unwrap(), [Ok(4)], "{name}");
        let held: Vec<(u64, String)> =
            city.quarantine(None).await.unwrap().into_iter().map(|q| (q.seq, q.reason)).collect();
        assert_eq!(held.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 3, 4], "{name}: {held:?}");
        assert!(held[1].1.contains("does not hold"), "{name}: {}", held[1].1);
        assert!(held[2].1.contains("write by city"), "{name}: {}", held[2].1);
        assert!(city.state(&key).await.unwrap().is_none(), "{name}: nothing of the held changes applied");
        // A retry before its time has come is refused again: it would move the city's clock.
        let e = city.retry(&a, 2, Retry::Office(None), 5, &ctx(), 60_000).await.unwrap().unwrap_err();
        assert!(e.to_string().contains("ahead"), "{name}: {e}");
        // Once the first is retried (its time has come), the one that built on it follows.
        let later = 3_600_000;
        assert!(
            city.retry(&a, 2, Retry::Office(None), later, &ctx(), 60_000).await.unwrap().is_ok(),
            "{name}"
        );
        assert!(
            city.retry(&a, 3, Retry::Office(None), later, &ctx(), 60_000).await.unwrap().is_ok(),
            "{name}"
        );
        let state = city.state(&key).await.unwrap().unwrap();
        assert!(
            state.fields.values().flatten().all(|w| w.stamp.hlc.wall_ms == 4),
            "{name}: the later write shows"
        );
    }
}
