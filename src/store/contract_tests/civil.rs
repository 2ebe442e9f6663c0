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
