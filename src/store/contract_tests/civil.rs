//! The city accepts a change to another ward's citizen only as a
//! civil-status registration, and passes it on to the owning ward.

use super::*;
use crate::model::civil::Registration;
use crate::model::{Body, Citizen};

fn body(r: &Record) -> Citizen {
    match &r.body {
        Body::Citizen(c) => c.clone(),
        _ => unreachable!(),
    }
}

/// Ward 00145's first citizen, single (as a registrar requires of a
/// bride), at the city: the change that put her there.
async fn bride(city: &dyn CityDb) -> Change {
    let mut hers = change("00145", 1);
    if let Op::Put(Record { body: Body::Citizen(c), .. }) = &mut hers.op {
        c.marital_status = crate::model::MaritalStatus::Single;
        c.events.retain(|e| e.kind == crate::model::EventKind::Birth);
    }
    city.apply_group(vec![batch(&ward("00145"), vec![hers.clone()])], 1, ctx(), NO_SKEW_LIMIT).await.unwrap();
    hers
}

/// A single adult man of ward 09784, at the city: a spouse to register.
async fn groom(city: &dyn CityDb) -> String {
    let mut c = (1..100)
        .map(|n| change("09784", n))
        .find(|c| {
            matches!(&c.op, Op::Put(Record { body: Body::Citizen(x), .. })
                if x.sex == crate::model::Sex::Male && x.date_of_birth.to_string().as_str() < "1990")
        })
        .expect("a man among the first hundred");
    let Op::Put(Record { body: Body::Citizen(x), .. }) = &mut c.op else { unreachable!() };
    x.marital_status = crate::model::MaritalStatus::Single;
    x.events.retain(|e| e.kind == crate::model::EventKind::Birth);
    let id = x.personal_id.clone();
    let c = Change { seq: 1, ..c };
    let out = city.apply_group(vec![batch(&ward("09784"), vec![c])], 1, ctx(), NO_SKEW_LIMIT).await.unwrap();
    assert_eq!(out, [Ok(1)]);
    id
}

#[tokio::test]
async fn a_registration_of_another_wards_citizen_is_applied_and_anything_else_quarantined() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let (a, b) = (ward("00082"), ward("00145"));
        let hers = bride(&*city).await;
        let Op::Put(record) = &hers.op else { unreachable!() };
        let single = body(record);
        let marriage = Registration::Marriage {
            spouses: [single.personal_id.clone(), groom(&*city).await],
            date: "2026-11-01".parse().unwrap(),
        };
        let married = marriage.apply(std::slice::from_ref(&body(record)), &a, "7/2026").remove(0);
        let written = Record { ward: b.clone(), body: Body::Citizen(married) };
        let registration = |seq: u64, fields: &[&str], record: Record| Change {
            seq,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            op: Op::Put(record),
            ..stamped(hers.clone(), "00082", 10 + seq, &[("00145", 1)])
        };
        // Anything more than a registration: quarantined.
        let mut phone = written.clone();
        if let Body::Citizen(c) = &mut phone.body {
            c.phone = "0912345678".into();
        }
        let forged = registration(1, &["events", "marital_status", "phone"], phone);
        let proper = registration(2, &["events", "marital_status"], written.clone());
        let out =
            city.apply_group(vec![batch(&a, vec![forged, proper])], 2, ctx(), NO_SKEW_LIMIT).await.unwrap();
        assert_eq!(out, [Ok(2)], "{name}");
        let q = city.quarantine(Some(&a)).await.unwrap();
        assert_eq!(q.len(), 1, "{name}: {q:?}");
        assert!(q[0].reason.contains("belongs to ward 00145"), "{name}: {}", q[0].reason);
        let shown = city.get(&hers.key).await.unwrap().unwrap();
        assert_eq!(shown.ward, b, "{name}: still 00145's");
        assert_eq!(body(&shown).marital_status, crate::model::MaritalStatus::Married, "{name}");
        assert_eq!(body(&shown).events.last().unwrap().registered_by, "00082", "{name}");
        // The owning ward hears of it (once durable).
        city.flush().await.unwrap();
        let notes = city.downstream(&b, 0, 10).await.unwrap();
        assert!(notes.iter().any(|(l, _)| l.change.key == hers.key && l.writer == "00082"), "{name}");
    }
}

#[tokio::test]
async fn a_ward_registers_a_few_events_a_day_on_another_wards_citizen() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let (a, b) = (ward("00082"), ward("00145"));
        let hers = bride(&*city).await;
        let his_id = groom(&*city).await;
        let his_key = RecordKey::new(crate::model::Kind::Citizen, &his_id).unwrap();
        // Ward 00082 marries and divorces the two again and again, both
        // records each time, each change built on what the city holds:
        // five rounds, in two groups.
        let (mut seq, mut sent, mut groups) = (0, Vec::<Change>::new(), Vec::new());
        for rounds in [2, 3] {
            let first = sent.len();
            for _ in 0..rounds {
                let now = |key: &RecordKey, held: Citizen| {
                    // The city's copy, or the last change just sent to it.
                    sent.iter().rev().find(|c| &c.key == key).map_or(held, |c| match &c.op {
                        Op::Put(r) => body(r),
                        Op::Delete => unreachable!(),
                    })
                };
                let her = now(&hers.key, body(&city.get(&hers.key).await.unwrap().unwrap()));
                let him = now(&his_key, body(&city.get(&his_key).await.unwrap().unwrap()));
                let spouses = [her.personal_id.clone(), him.personal_id.clone()];
                let date = "2026-11-01".parse().unwrap();
                let r = match crate::model::civil::current_spouse(&her) {
                    None => Registration::Marriage { spouses, date },
                    Some(_) => Registration::Divorce { spouses, date },
                };
                let after = r.apply(&[her, him], &a, "");
                for (key, owner, person) in
                    [(&hers.key, &b, &after[0]), (&his_key, &ward("09784"), &after[1])]
                {
                    seq += 1;
                    let mut context = city.state(key).await.unwrap().unwrap().seen;
                    for c in sent.iter().filter(|c| &c.key == key) {
                        context.add(&c.stamp);
                    }
                    let stamp = Stamp { hlc: Hlc { wall_ms: 10 + seq, logical: 0 }, writer: "00082".into() };
                    sent.push(Change {
                        seq,
                        written_at_ms: 1,
                        key: key.clone(),
                        stamp,
                        context,
                        fields: vec!["events".into(), "marital_status".into()],
                        op: Op::Put(Record { ward: owner.clone(), body: Body::Citizen(person.clone()) }),
                    });
                }
            }
            groups.push(batch(&a, sent[first..].to_vec()));
        }
        // Both groups in flight at once: on PostgreSQL the second merges
        // while the first commits, and still counts its registrations.
        let (one, two) = futures::join!(
            city.apply_group(vec![groups[0].clone()], 2, ctx(), NO_SKEW_LIMIT),
            city.apply_group(vec![groups[1].clone()], 2, ctx(), NO_SKEW_LIMIT),
        );
        assert_eq!((one.unwrap(), two.unwrap()), (vec![Ok(4)], vec![Ok(10)]), "{name}");
        let q = city.quarantine(Some(&a)).await.unwrap();
        let held: Vec<u64> = q.iter().map(|e| e.seq).collect();
        assert_eq!(held, [9, 10], "{name}: {q:?}");
        assert!(q[0].reason.contains("already registered 4 events"), "{name}: {}", q[0].reason);
        let events = body(&city.get(&hers.key).await.unwrap().unwrap()).events;
        assert_eq!(events.len(), 5, "{name}: the birth and four registrations: {events:?}");
    }
}
