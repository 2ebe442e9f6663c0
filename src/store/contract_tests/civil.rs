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

#[tokio::test]
async fn a_registration_of_another_wards_citizen_is_applied_and_anything_else_quarantined() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let (a, b) = (ward("00082"), ward("00145"));
        let mut hers = change("00145", 1);
        // Single, as the registrar requires of a bride.
        if let Op::Put(Record { body: Body::Citizen(c), .. }) = &mut hers.op {
            c.marital_status = crate::model::MaritalStatus::Single;
            c.events.retain(|e| e.kind == crate::model::EventKind::Birth);
        }
        city.apply_group(vec![batch(&b, vec![hers.clone()])], 1, ctx(), NO_SKEW_LIMIT).await.unwrap();
        let Op::Put(record) = &hers.op else { unreachable!() };
        let single = body(record);
        let marriage = Registration::Marriage {
            spouses: [single.personal_id.clone(), "001090000123".into()],
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
        let mut hers = change("00145", 1);
        if let Op::Put(Record { body: Body::Citizen(c), .. }) = &mut hers.op {
            c.marital_status = crate::model::MaritalStatus::Single;
            c.events.retain(|e| e.kind == crate::model::EventKind::Birth);
        }
        city.apply_group(vec![batch(&b, vec![hers.clone()])], 1, ctx(), NO_SKEW_LIMIT).await.unwrap();
        // Ward 00082 marries and divorces her again and again, each built
        // on what the city holds: two groups of three registrations.
        let mut seq = 0;
        for group in 0..2 {
            let mut sent = Vec::new();
            for _ in 0..3 {
                seq += 1;
                let state = city.state(&hers.key).await.unwrap().unwrap();
                let mut now = body(&city.get(&hers.key).await.unwrap().unwrap());
                // Built on the city's state, and on the registrations just sent.
                for c in &sent {
                    let Change { op: Op::Put(r), .. } = c else { unreachable!() };
                    now = body(r);
                }
                let spouse = "001090000123".to_string();
                let r = match crate::model::civil::current_spouse(&now) {
                    None => Registration::Marriage {
                        spouses: [now.personal_id.clone(), spouse],
                        date: "2026-11-01".parse().unwrap(),
                    },
                    Some(_) => Registration::Divorce {
                        spouses: [now.personal_id.clone(), spouse],
                        date: "2026-11-01".parse().unwrap(),
                    },
                };
                let after = r.apply(std::slice::from_ref(&now), &a, "").remove(0);
                let mut context = state.seen.clone();
                for c in &sent {
                    let c: &Change = c;
                    context.add(&c.stamp);
                }
                let change = Change {
                    seq,
                    fields: vec!["events".into(), "marital_status".into()],
                    op: Op::Put(Record { ward: b.clone(), body: Body::Citizen(after) }),
                    context,
                    ..stamped(hers.clone(), "00082", 10 + seq, &[])
                };
                sent.push(change);
            }
            let at = 2 + group;
            city.apply_group(vec![batch(&a, sent)], at, ctx(), NO_SKEW_LIMIT).await.unwrap();
        }
        let q = city.quarantine(Some(&a)).await.unwrap();
        let held: Vec<u64> = q.iter().map(|e| e.seq).collect();
        assert_eq!(held, [5, 6], "{name}: {q:?}");
        assert!(q[0].reason.contains("already registered 4 events"), "{name}: {}", q[0].reason);
        let events = body(&city.get(&hers.key).await.unwrap().unwrap()).events;
        assert_eq!(events.len(), 5, "{name}: the birth and four registrations: {events:?}");
    }
}
