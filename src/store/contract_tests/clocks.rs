//! A ward's clock after its time was wrong: it recovers without breaking
//! the order of its own writes.

use super::*;

const HOUR: i64 = 3_600_000;

#[test]
fn a_ward_whose_clock_ran_ahead_stamps_from_the_wall_clock_once_its_time_is_corrected() {
    for (name, mut h) in harnesses() {
        let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
        let now = 1_780_000_000_000;
        // Written while the machine's time was ten hours fast.
        store.append(&[put("00082", 1)], now + 10 * HOUR).unwrap();
        block(store.flush()).unwrap();
        drop(store);
        h.restart();
        let store = WardStore::open(h.engine(), ward("00082"), 1000).unwrap();
        // The time is right again: a new record is stamped now, not ten hours ahead.
        store.append(&[put("00082", 2)], now).unwrap();
        // The record written while ahead gets a stamp past its earlier one,
        // so the ward's own later write still supersedes it.
        store.append(&[put("00082", 1)], now).unwrap();
        let queued = store.outbox_range(0, 3, 10, usize::MAX).unwrap();
        let stamps: Vec<u64> = queued.iter().map(|c| c.stamp.hlc.wall_ms).collect();
        assert_eq!(stamps[1], now as u64, "{name}: {stamps:?}");
        assert!(queued[2].stamp.hlc > queued[0].stamp.hlc, "{name}: {stamps:?}");
        assert!(queued[2].context.has_seen(&queued[0].stamp), "{name}");
    }
}

#[tokio::test]
async fn a_city_whose_clock_ran_ahead_stamps_office_writes_from_the_wall_clock_past_what_each_record_saw() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let now: u64 = 1_780_000_000_000;
        // Two records; the second written by a ward ten hours ahead (with no
        // skew limit, as a city before stamps were checked would have).
        let first = stamped(change("00082", 1), "00082", now, &[]);
        let ahead = stamped(change("00082", 2), "00082", now + 10 * HOUR as u64, &[]);
        let group = [batch(&a, vec![first.clone(), ahead.clone()])];
        city.apply_group(group.to_vec(), now as i64, ctx(), NO_SKEW_LIMIT).await.unwrap();
        let edit = async |c: &Change, n: u32| {
            let Op::Put(r) = &c.op else { unreachable!() };
            city.office_put(crate::generate::amend(r, n), None, "office", now as i64, &ctx())
                .await
                .unwrap()
                .unwrap();
            city.state(&c.key).await.unwrap().unwrap().seen.0[crate::model::CITY_WRITER]
        };
        assert!(edit(&first, 1).await.wall_ms < now + 1000, "{name}: the other record's edit is stamped now");
        assert!(
            edit(&ahead, 2).await > ahead.stamp.hlc,
            "{name}: an edit of the record written ahead still comes after it"
        );
    }
}

#[test]
fn a_write_is_stamped_after_every_write_it_saw_however_far_ahead_their_writers_clocks_ran() {
    for (name, h) in harnesses() {
        let store = WardStore::open(h.engine(), ward("00145"), 1000).unwrap();
        let now: i64 = 1_780_000_000_000;
        // A citizen of 00082, last written by 00082 with its clock a minute
        // fast; 00145 registers an event on it, built on the city's state.
        let theirs = put("00082", 1);
        let Op::Put(record) = &theirs.op else { unreachable!() };
        let ahead = Stamp { hlc: Hlc { wall_ms: now as u64 + 60_000, logical: 0 }, writer: "00082".into() };
        let mut base = crate::model::Versioned::default();
        base.apply(&crate::model::put_values(&flatten(record), &[]), &ahead, &VersionVector::default());
        store.append(&[NewChange::foreign(theirs.key.clone(), record.clone(), base)], now).unwrap();
        let sent = store.outbox_range(0, 1, 10, usize::MAX).unwrap();
        assert!(sent[0].context.has_seen(&ahead), "{name}");
        assert!(sent[0].stamp.hlc > ahead.hlc, "{name}: {:?} is not after {:?}", sent[0].stamp, ahead);
    }
}
