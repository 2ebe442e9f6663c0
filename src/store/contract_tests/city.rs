//! The city database's contract, on every store: the embedded store on
//! sled and in memory, and PostgreSQL.

use super::*;

#[tokio::test]
async fn city_applies_each_change_once_however_often_it_is_sent() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let b1 = WardBatch { ward: a.clone(), changes: changes("00082", 1..=5), links: None };
        assert_eq!(
            city.apply_group(vec![b1.clone()], 1, ctx(), NO_SKEW_LIMIT).await.unwrap(),
            [Ok(5)],
            "{name}"
        );
        // The same batch again, and an overlapping one.
        let b2 = WardBatch { ward: a.clone(), changes: changes("00082", 3..=8), links: None };
        assert_eq!(
            city.apply_group(vec![b1, b2], 2, ctx(), NO_SKEW_LIMIT).await.unwrap(),
            [Ok(5), Ok(8)],
            "{name}"
        );
        city.flush().await.unwrap();
        let log = city.changes_since(0, 100).await.unwrap();
        let seqs: Vec<u64> = log.iter().map(|l| l.change.seq).collect();
        assert_eq!(seqs, (1..=8).collect::<Vec<_>>(), "{name}");
        assert_eq!(log.last().unwrap().cursor, 8, "{name}");
        drop(city);

        h.restart();
        let city = h.open(Policies::default()).await;
        assert_eq!(city.last_applied(&a), 8, "{name}");
        let again = WardBatch { ward: a.clone(), changes: changes("00082", 1..=9), links: None };
        assert_eq!(city.apply_group(vec![again], 3, ctx(), NO_SKEW_LIMIT).await.unwrap(), [Ok(9)], "{name}");
        city.flush().await.unwrap();
        assert_eq!(city.changes_since(0, 100).await.unwrap().len(), 9, "{name}");
        assert_eq!(city.list(Kind::Citizen, Some(&a), "", 100).await.unwrap().len(), 9, "{name}");
        assert_eq!(owned(&*city, &a).await, 9, "{name}");
    }
}

#[tokio::test]
async fn city_rejects_a_gap_without_storing_anything() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let out = city
            .apply_group(
                vec![WardBatch { ward: a.clone(), changes: changes("00082", 3..=4), links: None }],
                1,
                ctx(),
                NO_SKEW_LIMIT,
            )
            .await
            .unwrap();
        assert!(matches!(&out[0], Err(BatchRejected::Gap { expected: 1, got: 3, .. })), "{name}");
        assert_eq!(city.last_applied(&a), 0, "{name}");
        assert!(city.list(Kind::Citizen, None, "", 10).await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn city_quarantines_what_it_will_not_apply_but_keeps_the_stream_moving() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let b = ward("00145");
        // Ward b sends a record of ward a, a malformed change, then one of its own.
        let malformed =
            Incoming::Malformed { seq: 2, reason: "malformed: key.id: bad".into(), raw: vec![1, 2, 3] };
        let own = Incoming::Change(change("00145", 3));
        let group = [WardBatch {
            ward: b.clone(),
            changes: vec![Incoming::Change(change("00082", 1)), malformed, own].into(),
            links: None,
        }];
        assert_eq!(
            city.apply_group(group.to_vec(), 5, ctx(), NO_SKEW_LIMIT).await.unwrap(),
            [Ok(3)],
            "{name}"
        );
        // Ward a may not delete ward b's record.
        let del = stamped(
            Change { seq: 1, op: Op::Delete, fields: vec![], ..change("00145", 3) },
            "00082",
            9,
            &[("00145", 3)],
        );
        assert_eq!(
            city.apply_group(vec![batch(&a, vec![del])], 6, ctx(), NO_SKEW_LIMIT).await.unwrap(),
            [Ok(1)],
            "{name}"
        );

        let q = city.quarantine(None).await.unwrap();
        assert_eq!(q.len(), 3, "{name}");
        assert!(q.iter().any(|e| e.ward == b && e.seq == 1 && e.reason.contains("sent by ward 00145")));
        assert!(q.iter().any(|e| e.ward == b && e.seq == 2 && e.change.is_none() && e.raw == [1, 2, 3]));
        assert!(q.iter().any(|e| e.ward == a && e.reason.contains("belongs to ward 00145")));
        assert_eq!(city.quarantine(Some(&a)).await.unwrap().len(), 1, "{name}");
        let stored = city.list(Kind::Citizen, None, "", 10).await.unwrap();
        assert_eq!(stored.len(), 1, "{name}");
        assert_eq!(stored[0].ward, b, "{name}");
        assert_eq!(city.wards().iter().map(|(_, s)| s.quarantined).sum::<u64>(), 3, "{name}");
    }
}

#[tokio::test]
async fn quarantined_changes_can_be_retried_once_acceptable_or_discarded() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        // Valid only in a city without a province restriction.
        let mut foreign = change("25747", 1);
        foreign.seq = 1;
        let hanoi = ctx();
        let anywhere = Context { province: None, ..ctx() };
        let wb = WardBatch {
            ward: ward("25747"),
            changes: vec![Incoming::Change(foreign.clone())].into(),
            links: None,
        };
        city.apply_group(vec![wb], 1, hanoi.clone(), NO_SKEW_LIMIT).await.unwrap();
        let w = ward("25747");
        let e = city.retry(&w, 1, Retry::Office(None), 2, &hanoi, NO_SKEW_LIMIT).await.unwrap().unwrap_err();
        assert!(
            matches!(e, RetryError::StillRefused(ref r) if r.contains("not a unit of this city")),
            "{name}: {e}"
        );
        let cursor =
            city.retry(&w, 1, Retry::Office(None), 3, &anywhere, NO_SKEW_LIMIT).await.unwrap().unwrap();
        assert_eq!(cursor, 1, "{name}");
        assert_eq!(city.get(&foreign.key).await.unwrap().unwrap().ward, w, "{name}");
        assert!(city.quarantine(None).await.unwrap().is_empty(), "{name}");
        assert!(matches!(
            city.retry(&w, 1, Retry::Office(None), 3, &anywhere, NO_SKEW_LIMIT).await.unwrap(),
            Err(RetryError::NotFound { .. })
        ));

        // A quarantined change whose record changed since cannot be retried: it is discarded.
        let mut bad = change("00082", 1);
        if let Op::Put(Record { body: crate::model::Body::Citizen(c), .. }) = &mut bad.op {
            c.full_name.clear();
        }
        let good = Change { seq: 2, ..change("00082", 1) };
        city.apply_group(vec![batch(&a, vec![bad, good])], 4, hanoi.clone(), NO_SKEW_LIMIT).await.unwrap();
        let e = city.retry(&a, 1, Retry::Office(None), 5, &hanoi, NO_SKEW_LIMIT).await.unwrap().unwrap_err();
        assert!(matches!(e, RetryError::Superseded(_)), "{name}: {e}");
        // Discarding keeps it, with who and why.
        city.discard(&a, 1, "superseded by change 2", "office", 6).await.unwrap().unwrap();
        assert!(city.quarantine(Some(&a)).await.unwrap().is_empty(), "{name}");
        let d = city.discarded(Some(&a)).await.unwrap();
        assert_eq!((d.len(), d[0].by.as_str(), d[0].entry.seq), (1, "office", 1), "{name}");
        assert_eq!(city.wards().iter().map(|(_, s)| s.quarantined).sum::<u64>(), 0, "{name}");
    }
}

#[tokio::test]
async fn a_retry_never_undoes_a_newer_change() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let w = ward("25747");
        let first = Change { seq: 1, ..change("25747", 1) };
        let hanoi = ctx();
        city.apply_group(vec![batch(&w, vec![first.clone()])], 1, hanoi.clone(), NO_SKEW_LIMIT)
            .await
            .unwrap();
        // The rule changes, a newer change to the same record is applied, then a retry is attempted.
        let anywhere = Context { province: None, ..ctx() };
        let newer = Change { seq: 2, ..first.clone() };
        city.apply_group(vec![batch(&w, vec![newer])], 2, anywhere.clone(), NO_SKEW_LIMIT).await.unwrap();
        let e =
            city.retry(&w, 1, Retry::Office(None), 3, &anywhere, NO_SKEW_LIMIT).await.unwrap().unwrap_err();
        assert!(matches!(e, RetryError::Superseded(_)), "{name}: {e}");
    }
}

#[tokio::test]
async fn city_list_pages_with_a_cursor_and_deletes_leave_the_indexes() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        city.apply_group(
            vec![WardBatch { ward: a.clone(), changes: changes("00082", 1..=5), links: None }],
            1,
            ctx(),
            NO_SKEW_LIMIT,
        )
        .await
        .unwrap();
        let p1 = city.list(Kind::Citizen, Some(&a), "", 2).await.unwrap();
        let last = p1.last().unwrap().key_id();
        let p2 = city.list(Kind::Citizen, Some(&a), &last, 10).await.unwrap();
        assert_eq!(p1.len() + p2.len(), 5, "{name}");
        assert!(p2.iter().all(|r| r.key_id() > last), "{name}");

        let first = change("00082", 1);
        let Op::Put(Record { body: crate::model::Body::Citizen(c), .. }) = &first.op else { unreachable!() };
        let folded_prefix: String =
            crate::model::fold(&c.full_name).split(' ').take(2).collect::<Vec<_>>().join(" ");
        assert!(
            city.search_name(&folded_prefix, None, b"", 100)
                .await
                .unwrap()
                .items
                .iter()
                .any(|r| r.key_id() == c.personal_id)
        );
        assert!(
            city.household(&c.household_id, b"", 100)
                .await
                .unwrap()
                .items
                .iter()
                .any(|r| r.key_id() == c.personal_id)
        );

        // The ward had seen its own create of the record (at clock 1).
        let del = stamped(
            Change { seq: 6, op: Op::Delete, fields: vec![], ..first.clone() },
            "00082",
            6,
            &[("00082", 1)],
        );
        city.apply_group(vec![batch(&a, vec![del])], 2, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(owned(&*city, &a).await, 4, "{name}");
        assert_eq!(city.list(Kind::Citizen, None, "", 10).await.unwrap().len(), 4, "{name}");
        assert!(
            !city
                .household(&c.household_id, b"", 100)
                .await
                .unwrap()
                .items
                .iter()
                .any(|r| r.key_id() == c.personal_id)
        );
        assert!(
            !city
                .search_name(&c.full_name, None, b"", 100)
                .await
                .unwrap()
                .items
                .iter()
                .any(|r| r.key_id() == c.personal_id)
        );
    }
}

#[tokio::test]
async fn an_acknowledged_loss_is_recorded_once_and_survives_a_restart() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let b1 = WardBatch { ward: a.clone(), changes: changes("00082", 1..=5), links: None };
        assert_eq!(city.apply_group(vec![b1], 1, ctx(), NO_SKEW_LIMIT).await.unwrap(), [Ok(5)], "{name}");
        assert_eq!(city.last_applied(&a), 5, "{name}: durable on return");
        // The ward was told 9 were applied: 6 to 9 were lost.
        assert_eq!(
            city.acknowledged_lost(&a, AckClaim { acked: 9, proven: 9, from: 1, link: None }, 77)
                .await
                .unwrap(),
            Some((6, 9)),
            "{name}"
        );
        assert_eq!(
            city.acknowledged_lost(&a, AckClaim { acked: 9, proven: 9, from: 1, link: None }, 78)
                .await
                .unwrap(),
            None,
            "{name}: found once"
        );
        drop(city);
        h.restart();
        let city = h.open(Policies::default()).await;
        assert_eq!(city.last_applied(&a), 9, "{name}");
        let lost = &city.wards()[0].1.lost;
        assert_eq!(*lost, Loss { changes: 4, last_range: (6, 9), found_at_ms: 77 }, "{name}");
        let b2 = WardBatch { ward: a.clone(), changes: changes("00082", 10..=11), links: None };
        assert_eq!(city.apply_group(vec![b2], 2, ctx(), NO_SKEW_LIMIT).await.unwrap(), [Ok(11)], "{name}");
        assert_eq!(owned(&*city, &a).await, 7, "{name}");
        // A claim beyond the city's receipt moves the numbering on (the
        // ward no longer holds those changes) and records, opening the
        // refill window, only what the receipt proves.
        assert_eq!(
            city.acknowledged_lost(&a, AckClaim { acked: 20, proven: 14, from: 1, link: None }, 79)
                .await
                .unwrap(),
            Some((12, 14)),
            "{name}"
        );
        let unproven = AckClaim { acked: 30, ..AckClaim::default() };
        assert_eq!(city.acknowledged_lost(&a, unproven, 80).await.unwrap(), None, "{name}: no receipt");
        assert_eq!(city.last_applied(&a), 30, "{name}");
        let lost = &city.wards()[0].1.lost;
        assert_eq!(*lost, Loss { changes: 7, last_range: (12, 14), found_at_ms: 79 }, "{name}");
        // Where the numbering moved on the ward's word is kept; a receipt
        // speaks only for sequences after it (those it names), and a loss
        // found in the same millisecond is still a later generation.
        drop(city);
        h.restart();
        let city = h.open(Policies::default()).await;
        assert_eq!(city.wards()[0].1.unproven_to, 30, "{name}");
        let after_jump = AckClaim { acked: 40, proven: 40, from: 36, link: None };
        assert_eq!(city.acknowledged_lost(&a, after_jump, 79).await.unwrap(), Some((36, 40)), "{name}");
        assert_eq!(city.wards()[0].1.lost.found_at_ms, 80, "{name}");
    }
}

#[tokio::test]
async fn a_wards_changes_to_other_wards_records_are_bounded_a_day_across_restarts() {
    use crate::store::city::budget::PER_DAY;
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let (a, b) = (ward("00082"), ward("00145"));
        let noon = 20_000 * crate::model::civil::DAY_MS + 43_200_000;
        let theirs = changes("00082", 1..=PER_DAY + 1);
        let created = WardBatch { ward: a.clone(), changes: theirs.clone(), links: None };
        city.apply_group(vec![created], noon, ctx(), NO_SKEW_LIMIT).await.unwrap();
        // 00145 "moves" 00082's records into itself (puts naming itself as
        // owner): judged (and refused, being no proper transfers) while its
        // budget for the day lasts.
        let moved = |seqs: std::ops::RangeInclusive<u64>| -> Arc<[Incoming]> {
            theirs[*seqs.start() as usize - 1..*seqs.end() as usize]
                .iter()
                .map(|i| {
                    let mut c = i.change().unwrap().clone();
                    if let Op::Put(r) = &mut c.op {
                        r.ward = ward("00145");
                    }
                    Incoming::Change(c)
                })
                .collect()
        };
        let first = WardBatch { ward: b.clone(), changes: moved(1..=PER_DAY), links: None };
        let applied = city.apply_group(vec![first], noon, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(applied, [Ok(PER_DAY)], "{name}");
        let past = format!("more than {PER_DAY} changes to other wards' records");
        let held = city.quarantine(Some(&b)).await.unwrap();
        assert_eq!(held.len() as u64, PER_DAY, "{name}");
        assert!(held.iter().all(|q| !q.reason.contains(&past)), "{name}: {held:?}");
        // The count survives a restart (and is the one every city process
        // reads). (The office makes room in the quarantine first.)
        drop(city);
        h.restart();
        let city = h.open(Policies::default()).await;
        for q in held {
            city.discard(&b, q.seq, "reviewed", "office", noon).await.unwrap().unwrap();
        }
        let next = WardBatch { ward: b.clone(), changes: moved(PER_DAY + 1..=PER_DAY + 1), links: None };
        city.apply_group(vec![next], noon + 1, ctx(), NO_SKEW_LIMIT).await.unwrap();
        // Past it, a delete of another ward's record too.
        let key = theirs[0].change().unwrap().key.clone();
        let delete = Change {
            seq: PER_DAY + 2,
            op: Op::Delete,
            fields: vec![],
            ..moved(1..=1)[0].change().unwrap().clone()
        };
        let next = WardBatch { ward: b.clone(), changes: vec![Incoming::Change(delete)].into(), links: None };
        city.apply_group(vec![next], noon + 2, ctx(), NO_SKEW_LIMIT).await.unwrap();
        let held = city.quarantine(Some(&b)).await.unwrap();
        assert_eq!(held.len(), 2, "{name}");
        assert!(held.iter().all(|q| q.reason.contains(&past)), "{name}: {held:?}");
        // And a write of its own offered in a repair into another ward's record.
        let mut offered = city.state(&key).await.unwrap().unwrap();
        let stamp = Stamp { hlc: Hlc { wall_ms: 50, logical: 0 }, writer: "00145".into() };
        let write =
            crate::model::FieldWrite { value: "\"0912345678\"".into(), stamp, context: offered.seen.clone() };
        offered.merge_write("phone", write);
        let out = city
            .repair(&b, &[(key.clone(), offered)], &Default::default(), noon + 3, &ctx(), NO_SKEW_LIMIT)
            .await
            .unwrap();
        assert_eq!(out.writes, 0, "{name}: {out:?}");
        assert!(out.refused.iter().any(|(_, why)| why.contains(&past)), "{name}: {out:?}");
        let spent = city.wards().into_iter().find(|(w, _)| *w == b).unwrap().1.budget.spent;
        assert_eq!(spent, PER_DAY, "{name}");
    }
}

#[tokio::test]
async fn history_as_of_and_the_audit_trail_replay_what_was_applied() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let create = change("00082", 1);
        let key = create.key.clone();
        let renamed = super::office::citizen_edited(&create, |c| c.phone = "0900000009".into());
        let phone = super::office::partial(
            &Change { op: Op::Put(renamed), ..create.clone() },
            2,
            &["phone"],
            2,
            &[("00082", 1)],
        );
        let delete = Change {
            op: Op::Delete,
            fields: vec![],
            ..super::office::partial(&create, 3, &[], 3, &[("00082", 2)])
        };
        for (at, c) in [(10, create.clone()), (20, phone), (30, delete)] {
            city.apply_group(vec![batch(&a, vec![c])], at, ctx(), NO_SKEW_LIMIT).await.unwrap();
        }
        let history = city.record_history(&key).await.unwrap();
        assert_eq!(history.iter().map(|e| e.logged.cursor).collect::<Vec<_>>(), [1, 2, 3], "{name}");
        let phone_field = history[1].fields.iter().find(|(f, ..)| f == "phone").unwrap();
        assert_eq!(phone_field.2.as_deref(), Some("\"0900000009\""), "{name}: {phone_field:?}");
        assert_ne!(phone_field.1, phone_field.2, "{name}: before and after");
        let phone_of = |r: Option<Record>| match r.map(|r| r.body) {
            Some(crate::model::Body::Citizen(c)) => Some(c.phone),
            _ => None,
        };
        let original = phone_of(city.as_of(&key, 15).await.unwrap());
        assert!(original.is_some() && original.as_deref() != Some("0900000009"), "{name}");
        assert_eq!(phone_of(city.as_of(&key, 25).await.unwrap()).as_deref(), Some("0900000009"), "{name}");
        assert!(city.as_of(&key, 35).await.unwrap().is_none(), "{name}: deleted then");
        assert!(city.as_of(&key, 5).await.unwrap().is_none(), "{name}: not yet created");
        assert!(city.get(&key).await.unwrap().is_none(), "{name}");
        // The audit trail: the three writes, in pages of two.
        let (first, next) = city.audit_trail(Some(&a), (0, 0), 2).await.unwrap();
        assert_eq!(first.iter().map(|e| e.at_ms).collect::<Vec<_>>(), [10, 20], "{name}");
        let (rest, end) = city.audit_trail(Some(&a), next.unwrap(), 2).await.unwrap();
        assert_eq!((rest.len(), rest[0].action.starts_with("delete"), end), (1, true, None), "{name}");
        assert!(city.audit_trail(Some(&ward("00145")), (0, 0), 10).await.unwrap().0.is_empty(), "{name}");
        // The change log, by kind and by ward.
        let filter = LogFilter { kind: Some(Kind::Citizen), ward: Some(a.clone()) };
        let (mine, last) = city.changes_matching(0, 10, &filter).await.unwrap();
        assert_eq!((mine.len(), last), (3, 3), "{name}");
        let other = LogFilter { kind: None, ward: Some(ward("00145")) };
        assert!(city.changes_matching(0, 10, &other).await.unwrap().0.is_empty(), "{name}");
        assert_eq!(city.durable_cursor(), 3, "{name}");
    }
}
