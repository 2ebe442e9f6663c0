//! Repair from a ward's whole states (anti-entropy, and refilling a city
//! that lost changes), on every city store: the ward's own writes the city
//! lacks are taken as the changes that made them, and nothing else is.

use super::*;
use crate::model::digest::record_hash;
use crate::model::office_request::{Asked, OfficeRequest};
use crate::model::{Body, CITY_WRITER, FieldWrite, Versioned};
use crate::store::{SignedRequest, Vouched, Vouchers};

/// Citizen `n` of ward 00082 with another phone number.
fn rephoned(n: u64, phone: &str) -> NewChange {
    let mut r = citizen("00082", n);
    if let Body::Citizen(c) = &mut r.body {
        c.phone = phone.into();
    }
    NewChange::put(RecordKey::new(Kind::Citizen, &r.key_id()).unwrap(), r)
}

#[tokio::test]
async fn a_repair_takes_the_wards_own_writes_the_city_lacks_and_nothing_else() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        // The ward writes citizens 0, 1 and 2, then changes 0's phone; the
        // city holds only the first two changes (it lost the others).
        let w = WardStore::open(Arc::new(MemEngine::new()), a.clone(), 100).unwrap();
        w.append(&[put("00082", 0), put("00082", 1), put("00082", 2)], 10).unwrap();
        w.append(&[rephoned(0, "0912345678")], 20).unwrap();
        let sent = w.outbox_range(0, 2, 10, usize::MAX).unwrap();
        city.apply_group(vec![batch(&a, sent)], 30, ctx(), NO_SKEW_LIMIT).await.unwrap();
        let keys: Vec<RecordKey> = (0..3).map(|n| put("00082", n).key).collect();
        let states: Vec<(RecordKey, Versioned)> =
            keys.iter().map(|k| (k.clone(), w.state(k).unwrap().unwrap())).collect();

        let out = city.repair(&a, &states, &Default::default(), 40, &ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!((out.repaired, out.writes, out.unchanged), (2, 2, 1), "{name}: {out:?}");
        assert!(out.refused.is_empty() && out.others_not_taken == 0, "{name}: {out:?}");
        for (k, s) in &states {
            let held = city.state(k).await.unwrap().unwrap();
            assert_eq!(record_hash(k, &held), record_hash(k, s), "{name}: {k} as the ward has it");
            assert_eq!(city.get(k).await.unwrap(), w.get(k).unwrap(), "{name}: {k} shown");
        }
        // Again: nothing left to take.
        let again = city.repair(&a, &states, &Default::default(), 41, &ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!((again.repaired, again.unchanged), (0, 3), "{name}");

        // An office write the city never made, inside the ward's own record, is not taken.
        let mut forged = states[1].1.clone();
        let stamp = Stamp { hlc: Hlc { wall_ms: 50, logical: 0 }, writer: CITY_WRITER.into() };
        // (as every write does, it says the record exists)
        let context = forged.seen.clone();
        let write =
            |value: &str| FieldWrite { value: value.into(), stamp: stamp.clone(), context: context.clone() };
        forged.merge_write("phone", write("\"0900000000\""));
        forged.merge_write(crate::model::EXISTS, write("true"));
        let out = city
            .repair(&a, &[(keys[1].clone(), forged.clone())], &Default::default(), 42, &ctx(), NO_SKEW_LIMIT)
            .await
            .unwrap();
        assert_eq!((out.repaired, out.others_not_taken), (0, 1), "{name}: {out:?}");
        // Nor after a loss recorded for the ward: only on the office's
        // request it was derived from (its signature checked by the city).
        city.log_lost(&a, 45).await.unwrap();
        let offered = [(keys[1].clone(), forged.clone())];
        let out = city.repair(&a, &offered, &Default::default(), 46, &ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!((out.repaired, out.others_not_taken), (0, 1), "{name}: {out:?}");
        let mut asked = city.get(&keys[1]).await.unwrap().unwrap();
        if let Body::Citizen(c) = &mut asked.body {
            c.phone = "0900000000".into();
        }
        let request = |record: Record| SignedRequest {
            request: OfficeRequest {
                id: [3; 16],
                signed_at_ms: 50,
                asked: Asked::Edit { record: Box::new(record), seen: context.clone() },
            },
            by: "office".into(),
            key: Default::default(),
            signature: vec![1; 64],
            cert: vec![],
            cursors: vec![],
            relayed_by: None,
        };
        // What the city derived from it, as it logged it (its content hash,
        // which the city signed when it sent it: checked in `city::relay`).
        let derived = |record: &Record, stamp: Stamp| {
            let change = Change {
                seq: 0,
                written_at_ms: 0,
                key: keys[1].clone(),
                stamp,
                context: context.clone(),
                fields: vec!["phone".into()],
                op: Op::Put(record.clone()),
            };
            crate::model::signed::content_hash(&change, &Default::default())
        };
        let vouch = |record: Record, stamp: Stamp| -> Vouchers {
            let derived = derived(&record, stamp);
            [(
                keys[1].clone(),
                vec![Vouched::Office { request: Box::new(request(record)), derived, evidence: vec![] }],
            )]
            .into()
        };
        // (The request vouches for nothing but the change derived: not another value, nor another stamp.)
        for other in [
            vouch(citizen("00082", 1), stamp.clone()),
            vouch(asked.clone(), Stamp { hlc: Hlc { wall_ms: 50, logical: 1 }, ..stamp.clone() }),
        ] {
            let out = city.repair(&a, &offered, &other, 46, &ctx(), NO_SKEW_LIMIT).await.unwrap();
            assert_eq!((out.repaired, out.others_not_taken), (0, 1), "{name}: {out:?}");
        }
        let out =
            city.repair(&a, &offered, &vouch(asked, stamp.clone()), 46, &ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!((out.repaired, out.others_taken), (1, 1), "{name}: {out:?}");
        let held = city.state(&keys[1]).await.unwrap().unwrap();
        assert_eq!(record_hash(&keys[1], &held), record_hash(&keys[1], &forged), "{name}");
        // Within that day another ward's write, taken without its
        // signature, is still judged by the registrar's rules: it may not
        // drop the events the city holds.
        let state = city.state(&keys[1]).await.unwrap().unwrap();
        assert!(
            state.fields["events"].iter().any(|h| h.value != "[]"),
            "{name}: the citizen has registered events"
        );
        let mut dropped = state.clone();
        let late = Stamp { hlc: Hlc { wall_ms: 80, logical: 0 }, writer: "00145".into() };
        for (field, value) in [("events", "[]"), ("phone", "\"0944444444\"")] {
            let write = FieldWrite { value: value.into(), stamp: late.clone(), context: state.seen.clone() };
            dropped.merge_write(field, write);
        }
        let offered = [(keys[1].clone(), dropped)];
        let out = city.repair(&a, &offered, &Default::default(), 48, &ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(out.others_taken, 0, "{name}: {out:?}");
        assert!(out.refused.iter().any(|(_, why)| why.contains("event")), "{name}: {out:?}");
        assert_eq!(city.state(&keys[1]).await.unwrap().unwrap(), state, "{name}");
        // Another ward's write signed on its own (a registration) is applied
        // with the context it signed, however wide the one the relaying
        // ward gives it: it supersedes nothing its author had not seen.
        let before = city.state(&keys[0]).await.unwrap().unwrap();
        let phone_then = before.newest("phone").unwrap().clone();
        let signed_context = VersionVector(
            [(phone_then.stamp.writer.clone(), Hlc { logical: 0, wall_ms: 1 })].into_iter().collect(),
        );
        let registered = Stamp { hlc: Hlc { wall_ms: 70, logical: 0 }, writer: "00145".into() };
        let mut widened = before.clone();
        widened.merge_write(
            "phone",
            FieldWrite {
                value: "\"0933333333\"".into(),
                stamp: registered.clone(),
                context: before.seen.clone(),
            },
        );
        let record = widened.materialize(&keys[0], &Policies::default()).unwrap();
        let as_signed = Change {
            seq: 0,
            written_at_ms: 0,
            key: keys[0].clone(),
            stamp: registered.clone(),
            context: signed_context.clone(),
            fields: vec!["phone".into()],
            op: Op::Put(record),
        };
        let hash = crate::model::signed::content_hash(&as_signed, &Default::default());
        let by_00145 = Vouched::Ward {
            writer: ward("00145"),
            hash,
            key: Default::default(),
            sent: Some(signed_context),
            evidence: vec![],
        };
        let vouched: Vouchers = [(keys[0].clone(), vec![by_00145])].into();
        let out = city
            .repair(&a, &[(keys[0].clone(), widened)], &vouched, 47, &ctx(), NO_SKEW_LIMIT)
            .await
            .unwrap();
        assert_eq!(out.others_taken, 1, "{name}: {out:?}");
        // (Taken as signed, not by the refill window's exception.)
        let last = city.record_history(&keys[0]).await.unwrap().pop().unwrap().logged;
        assert_eq!(last.by, crate::store::city::evidence::relaying_by(&a, "00145"), "{name}");
        let after = city.state(&keys[0]).await.unwrap().unwrap();
        assert!(
            after.fields["phone"].iter().any(|w| w.stamp == phone_then.stamp),
            "{name}: the write it had not seen stands beside it: {after:?}"
        );
        // Another ward may not repair this ward's record with its own write.
        let b = ward("00145");
        let mut theirs = states[0].1.clone();
        let stamp = Stamp { hlc: Hlc { wall_ms: 60, logical: 0 }, writer: b.to_string() };
        theirs.merge_write(
            "phone",
            FieldWrite { value: "\"0911111111\"".into(), stamp, context: theirs.seen.clone() },
        );
        let out = city
            .repair(&b, &[(keys[0].clone(), theirs)], &Default::default(), 43, &ctx(), NO_SKEW_LIMIT)
            .await
            .unwrap();
        assert_eq!(out.repaired, 0, "{name}");
        assert!(out.refused[0].1.contains("belongs to ward 00082"), "{name}: {out:?}");
        // A write stamped beyond the clock limit is refused, as in a batch.
        let before = city.get(&keys[1]).await.unwrap();
        w.append(&[rephoned(1, "0922222222")], 100_000_000).unwrap();
        let ahead = vec![(keys[1].clone(), w.state(&keys[1]).unwrap().unwrap())];
        let out = city.repair(&a, &ahead, &Default::default(), 44, &ctx(), 60_000).await.unwrap();
        assert!(out.refused[0].1.contains("ahead"), "{name}: {out:?}");
        assert_eq!(city.get(&keys[1]).await.unwrap(), before, "{name}");

        // What the city holds of the ward, a page at a time, survives a restart.
        drop(city);
        h.restart();
        let city = h.open(Policies::default()).await;
        let first = city.ward_states(&a, None, 2).await.unwrap();
        let rest = city.ward_states(&a, Some(&first[1].0), 2).await.unwrap();
        let mut listed: Vec<RecordKey> = first.iter().chain(&rest).map(|(k, _)| k.clone()).collect();
        assert_eq!(listed.len(), 3, "{name}");
        listed.sort();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(listed, expected, "{name}");
        assert!(city.ward_states(&b, None, 10).await.unwrap().is_empty(), "{name}");
        let log = city.changes_since(0, 100).await.unwrap();
        assert_eq!(
            log.iter().filter(|l| l.change.seq == 0 && l.by.contains("(repair)")).count(),
            2,
            "{name}"
        );
        let relayed: Vec<&str> =
            log.iter().filter(|l| l.by.contains("relayed")).map(|l| l.by.as_str()).collect();
        assert_eq!(relayed, ["office [request 0303030303030303] (relayed by ward 00082)"], "{name}");
    }
}

#[tokio::test]
async fn a_claim_cut_down_in_a_refill_is_widened_once_what_it_claimed_is_back() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        // The ward creates citizen 0 and gives it a new phone number twice.
        // The city holds the creation, acknowledged the first number and
        // lost it: the second arrives first, its claim to have seen the
        // first cut down, and is applied.
        let w = WardStore::open(Arc::new(MemEngine::new()), a.clone(), 100).unwrap();
        let created = put("00082", 0);
        let key = created.key.clone();
        w.append(&[created], 10).unwrap();
        w.append(&[rephoned(0, "0987654321")], 20).unwrap();
        w.append(&[rephoned(0, "0911111111")], 30).unwrap();
        let first = w.outbox_range(0, 1, 10, usize::MAX).unwrap();
        assert_eq!(
            city.apply_group(vec![batch(&a, first)], 31, ctx(), NO_SKEW_LIMIT).await.unwrap(),
            [Ok(1)]
        );
        assert_eq!(
            city.acknowledged_lost(&a, AckClaim { acked: 2, proven: 2, from: 1, link: None }, 35)
                .await
                .unwrap(),
            Some((2, 2)),
            "{name}"
        );
        let last = w.outbox_range(2, 3, 10, usize::MAX).unwrap();
        let applied = city.apply_group(vec![batch(&a, last)], 40, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(applied, vec![Ok(3)], "{name}");
        assert!(city.quarantine(Some(&a)).await.unwrap().is_empty(), "{name}: applied, its claim cut");
        // The refill brings the first number back: concurrent with the cut
        // write, it would contend with it; the write, widened to its whole
        // claim in the same repair, supersedes it.
        let state = w.state(&key).unwrap().unwrap();
        let out = city
            .repair(&a, &[(key.clone(), state.clone())], &Default::default(), 50, &ctx(), NO_SKEW_LIMIT)
            .await
            .unwrap();
        assert_eq!(out.repaired, 1, "{name}: {out:?}");
        assert!(out.refused.is_empty(), "{name}: {out:?}");
        let held = city.state(&key).await.unwrap().unwrap();
        assert_eq!(held.fields["phone"].len(), 1, "{name}: no contention: {held:?}");
        assert_eq!(record_hash(&key, &held), record_hash(&key, &state), "{name}: the ward's state");
        let again = city
            .repair(&a, &[(key.clone(), state)], &Default::default(), 51, &ctx(), NO_SKEW_LIMIT)
            .await
            .unwrap();
        assert_eq!((again.repaired, again.unchanged), (0, 1), "{name}: {again:?}");
    }
}

#[tokio::test]
async fn a_delete_of_a_record_whose_creation_the_city_lost_waits_for_the_refill() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        // The ward creates citizen 0 and deletes it; the city acknowledged
        // the creation and lost it. The delete is judged like any other:
        // its claim (the creation) is one the city does not hold, so it waits.
        let w = WardStore::open(Arc::new(MemEngine::new()), a.clone(), 100).unwrap();
        let created = put("00082", 0);
        let key = created.key.clone();
        w.append(&[created], 10).unwrap();
        w.append(&[NewChange::delete(key.clone())], 20).unwrap();
        assert_eq!(
            city.acknowledged_lost(&a, AckClaim { acked: 1, proven: 1, from: 1, link: None }, 25)
                .await
                .unwrap(),
            Some((1, 1)),
            "{name}"
        );
        let delete = w.outbox_range(1, 2, 10, usize::MAX).unwrap();
        let applied = city.apply_group(vec![batch(&a, delete)], 30, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(applied, vec![Ok(2)], "{name}");
        let waiting = city.quarantine(Some(&a)).await.unwrap();
        assert_eq!(waiting.len(), 1, "{name}: {waiting:?}");
        assert!(waiting[0].reason.starts_with(crate::store::UNHELD), "{name}: {}", waiting[0].reason);
        assert_eq!(city.state(&key).await.unwrap(), None, "{name}: nothing applied");
        // The refill brings the record back, deleted, as the ward holds it;
        // the waiting delete then applies as a late change.
        let state = w.state(&key).unwrap().unwrap();
        let out = city
            .repair(&a, &[(key.clone(), state.clone())], &Default::default(), 40, &ctx(), NO_SKEW_LIMIT)
            .await
            .unwrap();
        assert!(out.refused.is_empty(), "{name}: {out:?}");
        assert_eq!(city.get(&key).await.unwrap(), None, "{name}");
        let retried = city.retry(&a, 2, Retry::Refilled, 50, &ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert!(retried.is_ok(), "{name}: {retried:?}");
        assert!(city.quarantine(Some(&a)).await.unwrap().is_empty(), "{name}");
        let held = city.state(&key).await.unwrap().unwrap();
        assert_eq!(record_hash(&key, &held), record_hash(&key, &state), "{name}: the ward's state");
    }
}
