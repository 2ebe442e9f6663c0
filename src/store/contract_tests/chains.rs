//! Each ward's chain at the city, on every store: a batch must link onto
//! the city's link at the ward's last applied change; a fork (other
//! changes under applied numbers) is refused and recorded, never skipped
//! as a duplicate, and the chain survives a restart.

use super::*;
use crate::city::log_audit::Trust;
use crate::model::signed::{self, GENESIS, Hash, KeyId};
use crate::store::{Authorship, Evidence, EvidencePart, EvidenceRow, Signed, SignedBatch};

/// Ward 00082's changes `seqs`, stamped `logical` (another value: other
/// changes under the same numbers), chained after `previous`.
fn chained(seqs: std::ops::RangeInclusive<u64>, logical: u32, previous: Hash) -> WardBatch {
    let changes: Vec<Change> = seqs
        .map(|seq| {
            let mut c = change("00082", seq);
            c.stamp.hlc.logical = logical;
            c
        })
        .collect();
    chained_changes(changes, previous)
}

/// Ward 00082's `changes`, chained after `previous`, as a ward without a
/// certificate sends them.
fn chained_changes(changes: Vec<Change>, previous: Hash) -> WardBatch {
    let a = ward("00082");
    let hashes: Vec<Hash> = changes.iter().map(|c| signed::content_hash(c, &KeyId::default())).collect();
    let first = changes[0].seq;
    let links = signed::links(&a, first, &previous, &hashes);
    // As a ward without a certificate signs it (`insecure_dev`): nothing.
    let batch =
        SignedBatch { ward: a.clone(), first, previous, hashes, key: KeyId::default(), signature: vec![] };
    let signed =
        Some(std::sync::Arc::new(Signed { batch, cert: std::sync::Arc::from(&[][..]), authored: vec![] }));
    WardBatch {
        ward: a,
        changes: changes.into_iter().map(Incoming::Change).collect(),
        links: Some(Links { previous, links: links.into(), key: KeyId::default(), signed }),
    }
}

fn last_link(b: &WardBatch) -> Hash {
    *b.links.as_ref().unwrap().links.last().unwrap()
}

#[tokio::test]
async fn a_fork_is_refused_and_recorded_and_the_chain_survives_a_restart() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let apply = |b: WardBatch, at: i64| {
            let city = city.clone();
            async move { city.apply_group(vec![b], at, ctx(), NO_SKEW_LIMIT).await.unwrap().remove(0) }
        };
        let first = chained(1..=5, 0, GENESIS);
        assert_eq!(apply(first.clone(), 1).await, Ok(5), "{name}");
        let to2 = *first.links.as_ref().unwrap().links.get(1).unwrap();
        // The same changes again, past the head: duplicates, then new ones.
        let again = chained(3..=7, 0, to2);
        assert_eq!(apply(again.clone(), 2).await, Ok(7), "{name}");
        let at7 = last_link(&again);
        city.flush().await.unwrap();
        let (seq, chain) = city.resume_point(&a).await.unwrap();
        assert_eq!((seq, chain.link), (7, Some(at7)), "{name}: the link at the last applied change");
        assert_eq!(chain.newest, Hlc { wall_ms: 7, logical: 0 }, "{name}: the newest stamp applied");

        // Other changes under 6 and 7, chained on the same link at 5.
        let at5 = last_link(&first);
        let forked = chained(6..=8, 1, at5);
        assert_eq!(apply(forked, 3).await, Err(BatchRejected::Fork { ward: a.clone(), seq: 7 }), "{name}");
        // A batch reaching no further than the head cannot be checked.
        let behind = chained(1..=3, 0, GENESIS);
        assert_eq!(
            apply(behind, 4).await,
            Err(BatchRejected::Behind { ward: a.clone(), last: 3, applied: 7 })
        );
        // The same changes again, hashed with another key id (a renewed
        // certificate): not comparable, not a fork.
        let mut rekeyed = chained(6..=8, 0, at5);
        let links = rekeyed.links.as_mut().unwrap();
        links.key = KeyId([1; 32]);
        assert_eq!(apply(rekeyed, 4).await, Err(BatchRejected::Rekeyed { ward: a.clone(), applied: 7 }));
        // A new change chained on anything but the city's link.
        assert_eq!(
            apply(chained(8..=8, 0, GENESIS), 5).await,
            Err(BatchRejected::Fork { ward: a.clone(), seq: 7 })
        );
        city.flush().await.unwrap();
        assert_eq!(city.changes_since(0, 100).await.unwrap().len(), 7, "{name}: nothing of a fork applied");
        drop(city);

        h.restart();
        let city = h.open(Policies::default()).await;
        let state = city.wards().into_iter().find(|(w, _)| *w == a).unwrap().1;
        assert_eq!((state.chain.forks, state.chain.fork_seq), (2, 7), "{name}: forks are recorded durably");
        assert_eq!(city.resume_point(&a).await.unwrap().1.link, Some(at7), "{name}");
        let next = chained(8..=8, 0, at7);
        assert_eq!(city.apply_group(vec![next], 6, ctx(), NO_SKEW_LIMIT).await.unwrap(), [Ok(8)], "{name}");
    }
}

#[tokio::test]
async fn a_city_that_lost_what_it_acknowledged_resumes_the_chain_at_the_wards_link() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let first = chained(1..=3, 0, GENESIS);
        city.apply_group(vec![first], 1, ctx(), NO_SKEW_LIMIT).await.unwrap();
        // The ward says the city acknowledged up to 9, where its link is `at9`.
        let at9 = [9; 32];
        let claim = AckClaim { acked: 9, proven: 9, from: 1, link: Some(at9) };
        city.acknowledged_lost(&a, claim, 2).await.unwrap();
        let out =
            city.apply_group(vec![chained(10..=10, 0, GENESIS)], 3, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(out, [Err(BatchRejected::Fork { ward: a.clone(), seq: 9 })], "{name}");
        let out = city.apply_group(vec![chained(10..=10, 0, at9)], 4, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(out, [Ok(10)], "{name}");
        drop(city);
        h.restart();
    }
}

/// Every row of one part of the evidence, page by page.
async fn evidence(city: &mut dyn Evidence, part: EvidencePart) -> Vec<EvidenceRow> {
    let (mut rows, mut after) = (Vec::new(), Vec::new());
    loop {
        let page = city.page(part, &after, 2).await.unwrap();
        rows.extend(page.items);
        match page.next {
            Some(next) => after = next,
            None => return rows,
        }
    }
}

#[tokio::test]
async fn the_city_keeps_each_batch_as_signed_and_its_log_verifies() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let apply = |b: WardBatch| {
            let city = city.clone();
            async move { city.apply_group(vec![b], 1, ctx(), NO_SKEW_LIMIT).await.unwrap().remove(0) }
        };
        let first = chained(1..=5, 0, GENESIS);
        assert_eq!(apply(first.clone()).await, Ok(5), "{name}");
        let to2 = first.links.as_ref().unwrap().links[1];
        assert_eq!(apply(chained(3..=7, 0, to2)).await, Ok(7), "{name}");
        let forked = chained(8..=9, 1, GENESIS);
        assert!(apply(forked).await.is_err(), "{name}");
        // The office corrects one: its request is kept beside the change.
        let Op::Put(first_record) = &change("00082", 1).op else { unreachable!() };
        let edited = crate::generate::amend(first_record, 1);
        assert_eq!(city.office_put(edited, None, "office", 2, &ctx()).await.unwrap(), Ok(8), "{name}");
        city.flush().await.unwrap();
        let mut ev = h.evidence().await;
        let requests = evidence(ev.as_mut(), EvidencePart::Requests).await;
        assert!(
            matches!(&requests[..], [EvidenceRow::Request(r)] if r.cursors == [8] && r.by == "office"),
            "{name}: {requests:?}"
        );
        let batches: Vec<(u64, u64)> = evidence(ev.as_mut(), EvidencePart::Batches)
            .await
            .into_iter()
            .map(|r| match r {
                EvidenceRow::Batch(b) => (b.first, b.last()),
                other => panic!("{name}: {other:?}"),
            })
            .collect();
        assert_eq!(batches, [(1, 5), (3, 7)], "{name}: each applied batch as signed, none of a refused one");
        let log = evidence(ev.as_mut(), EvidencePart::Log).await;
        assert_eq!(log.len(), 8, "{name}");
        assert!(log.iter().all(|r| matches!(r, EvidenceRow::Logged(_, None))), "{name}: applied as sent");
        let records = evidence(ev.as_mut(), EvidencePart::Records).await;
        assert_eq!(records.len(), 7, "{name}");
        let histories: Vec<usize> = records
            .iter()
            .map(|r| match r {
                EvidenceRow::Record { history, .. } => history.len(),
                other => panic!("{name}: {other:?}"),
            })
            .collect();
        assert_eq!(histories.iter().sum::<usize>(), 8, "{name}: each record with its history");
        assert!(evidence(ev.as_mut(), EvidencePart::Typed).await.is_empty(), "{name}");
        let head = evidence(ev.as_mut(), EvidencePart::Head).await;
        assert!(matches!(head[..], [EvidenceRow::Head { cursor: 8, .. }]), "{name}: {head:?}");

        // (Batches and requests of a city without TLS: their chain and what
        // the requests derived checked, nothing signed.)
        let trust = Trust::Unsigned;
        let report = crate::city::log_audit::verify(ev.as_mut(), &trust, None, &[], &Default::default())
            .await
            .unwrap();
        assert_eq!(report.findings, [], "{name}");
        assert_eq!((report.signed_entries, report.unsigned_entries, report.records), (0, 8, 7), "{name}");
        assert_eq!(report.checkpoint.office_from, None, "{name}: signed requests have not begun");
        let again = crate::city::log_audit::verify(
            ev.as_mut(),
            &trust,
            Some(&report.checkpoint),
            &[],
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(again.findings, [], "{name}: resumed from its checkpoint");
        // A CA proves nothing of unsigned batches. (Unsigned requests before
        // any signed one are a city's history without TLS: counted.)
        let ca = Trust::Ca(std::sync::Arc::new(rustls::RootCertStore::empty()));
        let report =
            crate::city::log_audit::verify(ev.as_mut(), &ca, None, &[], &Default::default()).await.unwrap();
        let whys: Vec<&str> = report.findings.iter().map(|f| f.why.split(':').next().unwrap()).collect();
        assert_eq!(
            whys,
            [
                "not signed",
                "not signed",
                "its chain is known up to 7, and it has no signed batches (rows deleted)",
            ],
            "{name}"
        );
        drop(ev);
        drop(city);
        h.restart();
    }
}

#[tokio::test]
async fn a_store_from_before_the_running_hash_gets_it_from_its_log() {
    for (name, h) in harnesses() {
        let engine = h.engine();
        let city = CityStore::open(engine.clone(), Policies::default()).unwrap();
        let a = ward("00082");
        let changes = (1..=4).map(|seq| change("00082", seq)).collect();
        city.apply_group(&[batch(&a, changes)], 1, &ctx(), NO_SKEW_LIMIT).unwrap();
        city.flush().await.unwrap();
        let kept = CityDb::log_head(&city);
        assert_eq!(kept.0, 4, "{name}");
        drop(city);
        // As a store written before the running hash was kept.
        let mut batch = crate::store::Batch::default();
        batch.remove(b"m:running".to_vec());
        engine.apply(batch).unwrap();
        let city = CityStore::open(engine.clone(), Policies::default()).unwrap();
        assert_eq!(CityDb::log_head(&city), kept, "{name}: computed from its log, the same");
        let report = crate::city::log_audit::verify(
            &mut crate::store::KvEvidence::open(engine).unwrap(),
            &Trust::Unsigned,
            None,
            &[],
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(report.findings, [], "{name}");
    }
}

#[tokio::test]
async fn a_wards_signature_of_a_single_change_is_kept_with_its_batch() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let mut b = chained(1..=2, 0, GENESIS);
        let links = b.links.as_mut().unwrap();
        let signed = std::sync::Arc::make_mut(links.signed.as_mut().unwrap());
        signed.authored = vec![(2, vec![9; 64])];
        assert_eq!(city.apply_group(vec![b], 1, ctx(), NO_SKEW_LIMIT).await.unwrap(), [Ok(2)], "{name}");
        city.flush().await.unwrap();
        let mut ev = h.evidence().await;
        let rows = evidence(ev.as_mut(), EvidencePart::Authored).await;
        assert!(
            matches!(&rows[..], [EvidenceRow::Authored(w, 2, s)] if w.as_str() == "00082" && s == &vec![9; 64]),
            "{name}: {rows:?}"
        );
        // A city without TLS signs nothing: such a row is not its own.
        let report =
            crate::city::log_audit::verify(ev.as_mut(), &Trust::Unsigned, None, &[], &Default::default())
                .await
                .unwrap();
        let rows: Vec<&str> = report.findings.iter().map(|f| f.row.as_str()).collect();
        assert_eq!(rows, ["ward 00082's signature of its change 2"], "{name}");
        drop(ev);
        drop(city);
        h.restart();
    }
}

#[tokio::test]
async fn what_proves_who_made_a_write_by_another_is_read_back_with_it() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        // 00082's change to a record of 00145's (a registration), signed on its own.
        let mut registration = change("00082", 1);
        let Op::Put(r) = &mut registration.op else { unreachable!() };
        r.ward = ward("00145");
        let hash = signed::content_hash(&registration, &KeyId::default());
        let mut b = chained_changes(vec![registration.clone()], GENESIS);
        let links = b.links.as_mut().unwrap();
        let signed_batch = std::sync::Arc::make_mut(links.signed.as_mut().unwrap());
        signed_batch.cert = std::sync::Arc::from(&b"a certificate"[..]);
        signed_batch.authored = vec![(1, vec![9; 64])];
        city.apply_group(vec![b], 1, ctx(), NO_SKEW_LIMIT).await.unwrap();
        // The office corrects the record of 00082's.
        let Op::Put(created) = &change("00082", 2).op else { unreachable!() };
        city.apply_group(
            vec![chained(2..=2, 0, signed::links(&ward("00082"), 1, &GENESIS, &[hash])[0])],
            2,
            ctx(),
            NO_SKEW_LIMIT,
        )
        .await
        .unwrap();
        let edited = crate::generate::amend(created, 1);
        city.office_put(edited, None, "office", 3, &ctx()).await.unwrap().unwrap();
        city.flush().await.unwrap();
        let log = city.changes_since(0, 10).await.unwrap();
        assert_eq!(log.len(), 2, "{name}: {log:?}");
        // (The registration itself waits in the quarantine for the record it
        // registers, which the city does not hold: what it keeps of its
        // signature is read as for a logged one.)
        let logged = LoggedChange {
            cursor: 99,
            writer: "00082".into(),
            by: String::new(),
            applied_at_ms: 1,
            change: registration,
        };
        match city.authorship(&logged).await.unwrap() {
            Some(Authorship::Ward { hash: h, signature, cert, sent, .. }) => {
                assert_eq!(
                    (h, signature, cert, sent),
                    (hash, vec![9; 64], b"a certificate".to_vec(), None),
                    "{name}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(city.authorship(&log[0]).await.unwrap(), None, "{name}: its own record: nothing to prove");
        match city.authorship(&log[1]).await.unwrap() {
            Some(Authorship::Office { request: r, derived, .. }) => {
                assert_eq!((r.by.as_str(), r.cursors.as_slice()), ("office", &[2][..]), "{name}");
                assert_eq!(derived, signed::content_hash(&log[1].change, &KeyId::default()), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        drop(city);
        h.restart();
    }
}
