//! Memory and disk stay bounded whatever a peer sends or however long the
//! outbox grows.

use super::*;

#[tokio::test]
async fn the_audit_trail_keeps_at_most_its_cap_of_denials_dropping_the_oldest() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let extra = 5;
        for i in 0..MAX_DENIALS + extra {
            city.record_denial("stranger", "Get", "no role", i as i64).await.unwrap();
        }
        let kept = city.denials(0, usize::MAX).await.unwrap();
        assert_eq!(kept.len() as u64, MAX_DENIALS, "{name}");
        assert_eq!(kept[0].at_ms, extra as i64, "{name}: the oldest made room");
        city.flush().await.unwrap();
        drop(city);
        h.restart();
        let city = h.open(Policies::default()).await;
        city.record_denial("stranger", "Get", "no role", 1 << 40).await.unwrap();
        assert_eq!(
            city.denials(0, usize::MAX).await.unwrap().len() as u64,
            MAX_DENIALS,
            "{name}: counted again on opening"
        );
    }
}

#[test]
fn a_long_outbox_is_counted_acknowledged_and_recomputed_a_chunk_at_a_time() {
    for (name, mut h) in harnesses() {
        let store = WardStore::open(h.engine(), ward("00082"), 100_000).unwrap();
        let puts: Vec<NewChange> = (1..=250).map(|n| put("00082", n)).collect();
        store.append(&puts, 1).unwrap();
        let bytes = store.backlog_bytes();
        let listed: u64 = store
            .outbox_range(0, 250, 1000, usize::MAX)
            .unwrap()
            .iter()
            .map(|c| crate::store::codec::encode(c).len() as u64)
            .sum();
        assert_eq!(bytes, listed, "{name}");
        // Policies changed: every view recomputed, in chunks.
        store.set_policies(Policies { default: crate::model::Policy::Manual, ..Default::default() }).unwrap();
        assert_eq!(store.count(Kind::Citizen), 250, "{name}");
        // The city acknowledges 230 of them: deleted in chunks.
        store.ack(230, &[], None).unwrap();
        assert_eq!((store.acked_seq(), store.backlog()), (230, 20), "{name}");
        let left = store.backlog_bytes();
        block(store.flush()).unwrap();
        drop(store);
        h.restart();
        let store = WardStore::open(h.engine(), ward("00082"), 100_000).unwrap();
        assert_eq!((store.acked_seq(), store.backlog_bytes()), (230, left), "{name}: kept, not recounted");
        assert_eq!(store.count(Kind::Citizen), 250, "{name}");
        // A store written before the count was kept: counted on opening, a chunk at a time.
        let mut b = Batch::default();
        b.remove(&b"m:bytes"[..]);
        h.engine().apply(b).unwrap();
        let store = WardStore::open(h.engine(), ward("00082"), 100_000).unwrap();
        assert_eq!(store.backlog_bytes(), left, "{name}");
    }
}

#[tokio::test]
async fn a_ward_with_a_full_quarantine_is_refused_until_the_office_settles_it() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        // Changes naming another ward as owner: each one refused.
        let refused: Vec<Change> = (1..=MAX_QUARANTINED).map(|n| change("00145", n)).collect();
        let out = city.apply_group(vec![batch(&a, refused)], 1, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(out, [Ok(MAX_QUARANTINED)], "{name}");
        let next = change("00082", MAX_QUARANTINED + 1);
        let out =
            city.apply_group(vec![batch(&a, vec![next.clone()])], 2, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert!(
            matches!(&out[0], Err(BatchRejected::QuarantineFull { held, .. }) if *held == MAX_QUARANTINED),
            "{name}: {out:?}"
        );
        assert_eq!(
            city.quarantine(None).await.unwrap().len() as u64,
            MAX_QUARANTINED,
            "{name}: nothing more kept"
        );
        city.discard(&a, 1, "taken over by mistake", "office", 3).await.unwrap().unwrap();
        let out = city.apply_group(vec![batch(&a, vec![next])], 4, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(out, [Ok(MAX_QUARANTINED + 1)], "{name}");
    }
}

#[test]
fn a_long_queue_is_renumbered_past_the_city_a_chunk_at_a_time_and_a_stop_midway_is_finished() {
    for (name, mut h) in harnesses() {
        let store = WardStore::open(h.engine(), ward("00082"), 100_000).unwrap();
        let puts: Vec<NewChange> = (1..=250).map(|n| put("00082", n)).collect();
        store.append(&puts, 1).unwrap();
        store.ack(20, &[], None).unwrap();
        // The city applied up to 260: the 230 queued entries move to 261..=490.
        // The ward stops after the first chunk.
        store.renumber_steps(260, (None, Renumbering::Behind), 1).unwrap();
        block(store.flush()).unwrap();
        drop(store);
        h.restart();
        let store = WardStore::open(h.engine(), ward("00082"), 100_000).unwrap();
        assert_eq!((store.last_seq(), store.acked_seq(), store.backlog()), (490, 260, 230), "{name}");
        let queued = store.outbox_range(260, 490, 1000, usize::MAX).unwrap();
        assert_eq!(
            queued.iter().map(|c| c.seq).collect::<Vec<_>>(),
            (261..=490).collect::<Vec<_>>(),
            "{name}"
        );
        let keys: Vec<&RecordKey> = queued.iter().map(|c| &c.key).collect();
        assert_eq!(keys, puts[20..].iter().map(|p| &p.key).collect::<Vec<_>>(), "{name}: in order");
        let listed: u64 = queued.iter().map(|c| crate::store::codec::encode(c).len() as u64).sum();
        assert_eq!(store.backlog_bytes(), listed, "{name}");
        assert_eq!(store.refill_due(), Some(Lost::Ward), "{name}: the refill due survives the stop");
        assert_eq!(store.renumberings(), (0, 1), "{name}: one jump past the city's numbering");
    }
}

/// A fork found (the city applied other changes under 21..=40) and its
/// renumbering stopped after one chunk: on opening, the renumbering is
/// finished, and neither the refill of what the lost copy wrote nor the
/// fork is forgotten; the chain resumes on the city's link.
#[test]
fn a_fork_renumbering_stopped_midway_keeps_its_refill_and_its_count() {
    for (name, mut h) in harnesses() {
        let store = WardStore::open(h.engine(), ward("00082"), 100_000).unwrap();
        let puts: Vec<NewChange> = (1..=250).map(|n| put("00082", n)).collect();
        store.append(&puts, 1).unwrap();
        store.ack(20, &[], None).unwrap();
        let theirs = [7; 32];
        store.renumber_steps(40, (Some(theirs), Renumbering::Fork), 1).unwrap();
        block(store.flush()).unwrap();
        drop(store);
        h.restart();
        let store = WardStore::open(h.engine(), ward("00082"), 100_000).unwrap();
        assert_eq!((store.last_seq(), store.acked_seq(), store.backlog()), (270, 40, 230), "{name}");
        assert_eq!(store.refill_due(), Some(Lost::Ward), "{name}");
        assert_eq!(store.renumberings(), (1, 0), "{name}: the fork is counted once");
        assert_eq!(store.chain_anchor(), (40, Some(theirs)), "{name}");
        let first = store.outbox_range(40, 41, 1, usize::MAX).unwrap();
        assert_eq!(first[0].key, puts[20].key, "{name}: the first queued change is now 41");
    }
}

#[tokio::test]
async fn a_history_too_long_to_replay_is_refused_never_cut_short() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let first = change("00082", 1);
        let key = first.key.clone();
        // Its owner rewrites the record, whole, until its log passes the cap.
        let mut sent = vec![first];
        let mut bytes = crate::store::codec::encode(&sent[0]).len();
        while bytes <= MAX_HISTORY_BYTES {
            let mut next = stamped(sent[0].clone(), "00082", 1 + sent.len() as u64, &[]);
            next.seq = 1 + sent.len() as u64;
            next.context = VersionVector([("00082".to_string(), sent.last().unwrap().stamp.hlc)].into());
            bytes += crate::store::codec::encode(&next).len();
            sent.push(next);
        }
        let n = sent.len() as u64;
        let out = city.apply_group(vec![batch(&a, sent)], 1, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(out, [Ok(n)], "{name}");
        for err in [city.record_history(&key).await.unwrap_err(), city.as_of(&key, 2).await.unwrap_err()] {
            assert!(
                matches!(&err, StoreError::TooLarge(why) if why.contains("wardsync export")),
                "{name}: {err}"
            );
        }
        // A record with a short history still reads.
        assert_eq!(city.record_history(&change("00082", 2).key).await.unwrap().len(), 0, "{name}");
    }
}
