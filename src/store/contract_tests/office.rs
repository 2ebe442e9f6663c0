//! The data office's writes: corrections and conflict resolutions.

use super::*;

/// Change `c` with only `fields` written, re-stamped by its owner at `ms` having seen `seen`.
pub(super) fn partial(c: &Change, seq: u64, fields: &[&str], ms: u64, seen: &[(&str, u64)]) -> Change {
    let fields = fields.iter().map(|f| f.to_string()).collect();
    stamped(Change { seq, fields, ..c.clone() }, "00082", ms, seen)
}

/// Ward 00082's citizen 1 as its create writes it, with `edit` made to it.
pub(super) fn citizen_edited(create: &Change, edit: impl FnOnce(&mut crate::model::Citizen)) -> Record {
    let Op::Put(mut r) = create.op.clone() else { unreachable!("a create is a put") };
    let crate::model::Body::Citizen(c) = &mut r.body else { unreachable!("citizen 1 is a citizen") };
    edit(c);
    r
}

/// A city holding ward 00082's citizen 1 (created at clock 1); its create,
/// and what the city has seen of the record then.
pub(super) async fn city_with_one_citizen(h: &mut City) -> (Arc<dyn CityDb>, Change, VersionVector) {
    city_with(h, change("00082", 1)).await
}

/// The same citizen before any event was registered on their record.
pub(super) fn unregistered(mut create: Change) -> Change {
    if let Op::Put(Record { body: crate::model::Body::Citizen(c), .. }) = &mut create.op {
        c.events.clear();
    }
    create
}

/// A city holding `create`; what the city has seen of its record then.
pub(super) async fn city_with(h: &mut City, create: Change) -> (Arc<dyn CityDb>, Change, VersionVector) {
    let city = h.open(Policies::default()).await;
    city.apply_group(vec![batch(&ward("00082"), vec![create.clone()])], 1, ctx(), NO_SKEW_LIMIT)
        .await
        .unwrap();
    let seen = city.state(&create.key).await.unwrap().unwrap().seen;
    (city, create, seen)
}

#[tokio::test]
async fn settling_a_conflict_on_a_deleted_record_does_not_bring_it_back() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        let create = change("00082", 1);
        let key = create.key.clone();
        let x = citizen_edited(&create, |c| c.phone = "0900000001".into());
        let y = citizen_edited(&create, |c| c.phone = "0900000002".into());
        // Two writes of the phone, neither having seen the other, then a delete.
        let one = partial(&Change { op: Op::Put(x), ..create.clone() }, 2, &["phone"], 2, &[("00082", 1)]);
        let other = partial(&Change { op: Op::Put(y), ..create.clone() }, 3, &["phone"], 3, &[("00082", 1)]);
        let delete =
            Change { op: Op::Delete, fields: vec![], ..partial(&create, 4, &[], 4, &[("00082", 3)]) };
        let group = [batch(&a, vec![create.clone(), one, other, delete])];
        assert_eq!(
            city.apply_group(group.to_vec(), 5, ctx(), NO_SKEW_LIMIT).await.unwrap(),
            [Ok(4)],
            "{name}"
        );
        assert!(city.get(&key).await.unwrap().is_none(), "{name}: deleted");
        assert!(city.conflict(&key, "phone").await.unwrap().is_some(), "{name}: the phone conflict is open");

        city.resolve(&key, "phone", "\"0900000002\"", "office", 6, &ctx()).await.unwrap().unwrap();
        assert!(city.get(&key).await.unwrap().is_none(), "{name}: still deleted");
        assert!(city.conflict(&key, "phone").await.unwrap().is_none(), "{name}: the conflict is settled");
        assert_eq!(owned(&*city, &a).await, 0, "{name}");
    }
}

#[tokio::test]
async fn an_edit_from_a_stale_copy_races_the_wards_newer_write_instead_of_reverting_it() {
    for (name, mut h) in cities() {
        // The editor reads the record and what the city has seen of it...
        let (city, create, seen) = city_with_one_citizen(&mut h).await;
        let (a, key) = (ward("00082"), create.key.clone());
        // ...the ward changes the phone meanwhile...
        let newer = citizen_edited(&create, |c| c.phone = "0911111111".into());
        let phone =
            partial(&Change { op: Op::Put(newer), ..create.clone() }, 2, &["phone"], 2, &[("00082", 1)]);
        city.apply_group(vec![batch(&a, vec![phone])], 2, ctx(), NO_SKEW_LIMIT).await.unwrap();
        // ...and the editor corrects the address on the copy it read (old phone).
        let edited = citizen_edited(&create, |c| c.permanent_residence.address = "9 Phố Sửa".into());
        city.office_put(edited, Some(seen), "office", 3, &ctx()).await.unwrap().unwrap();
        let conflict = city.conflict(&key, "phone").await.unwrap();
        assert!(
            conflict.is_some(),
            "{name}: the stale phone and the ward's newer one are a conflict, not a silent revert"
        );
        let shown = city.get(&key).await.unwrap().unwrap();
        let crate::model::Body::Citizen(c) = &shown.body else { unreachable!() };
        assert_eq!(c.permanent_residence.address, "9 Phố Sửa", "{name}");

        // Claiming to have seen more than the city holds is refused.
        let forged =
            crate::model::VersionVector([("00082".to_string(), Hlc { wall_ms: 99, logical: 0 })].into());
        let read = citizen_edited(&create, |_| {});
        let e = city.office_put(read, Some(forged), "office", 4, &ctx()).await.unwrap().unwrap_err();
        assert!(e.to_string().contains("does not hold"), "{name}: {e}");
    }
}

/// A correction of who a person is, as the city receives it.
pub(super) fn corrected(c: &mut crate::model::Citizen, field: &str, value: &str) {
    *c = crate::model::civil::with_identity(c, field, value).unwrap();
    c.events.push(crate::model::CivilEvent {
        kind: crate::model::EventKind::Correction,
        date: c.events[0].date,
        registered_by: "00082".into(),
        spouse_id: String::new(),
        reference: "QĐ 1/2026".into(),
        field: field.into(),
        value: value.into(),
    });
}

#[tokio::test]
async fn the_office_never_renames_a_person_with_registered_events() {
    for (name, mut h) in cities() {
        let (city, create, seen) = city_with_one_citizen(&mut h).await;
        let renamed = citizen_edited(&create, |c| c.full_name = "Huỳnh Xuân Quân".into());
        let e = city.office_put(renamed, Some(seen.clone()), "office", 2, &ctx()).await.unwrap().unwrap_err();
        assert!(e.to_string().contains("register correction"), "{name}: {e}");
        let dropped = citizen_edited(&create, |c| c.events.clear());
        let e = city.office_put(dropped, None, "office", 2, &ctx()).await.unwrap().unwrap_err();
        assert!(e.to_string().contains("drops or changes the birth"), "{name}: {e}");
        // Nor with a correction of its own: the office registers no event.
        let corrected = citizen_edited(&create, |c| corrected(c, "full_name", "Huỳnh Xuân Quân"));
        let e = city.office_put(corrected, Some(seen), "office", 3, &ctx()).await.unwrap().unwrap_err();
        assert!(e.to_string().contains("events are registered"), "{name}: {e}");
    }
}

/// What the ward shows after applying `changes` in order.
fn ward_view(changes: &[&Change]) -> Option<Record> {
    let mut state = crate::model::Versioned::default();
    for c in changes {
        state.apply(&c.values(), &c.stamp, &c.context);
    }
    state.materialize(&changes[0].key, &Policies::default())
}

#[tokio::test]
async fn discarding_a_wards_change_brings_the_ward_back_to_what_the_city_holds() {
    for (name, mut h) in cities() {
        let (city, create, _) = city_with_one_citizen(&mut h).await;
        let (a, key) = (ward("00082"), create.key.clone());
        // A phone change stamped an hour ahead: quarantined. The ward shows it.
        let newer = citizen_edited(&create, |c| c.phone = "0922222222".into());
        let ahead = partial(
            &Change { op: Op::Put(newer), ..create.clone() },
            2,
            &["phone"],
            3_600_000,
            &[("00082", 1)],
        );
        city.apply_group(vec![batch(&a, vec![ahead.clone()])], 2, ctx(), 60_000).await.unwrap();
        assert_eq!(city.quarantine(None).await.unwrap().len(), 1, "{name}");
        city.discard(&a, 2, "the ward's clock was wrong", "office", 3).await.unwrap().unwrap();
        city.flush().await.unwrap();
        // The city's answer reaches the ward, which then shows what the city holds.
        let log = city.changes_since(0, 100).await.unwrap();
        let overruled = &log.last().unwrap().change;
        assert_eq!(overruled.stamp.writer, crate::model::CITY_WRITER, "{name}");
        let view = ward_view(&[&create, &ahead, overruled]);
        assert_eq!(view, city.get(&key).await.unwrap(), "{name}: ward and city agree again");

        // A create the office discards: the ward no longer shows it either.
        let other = stamped(change("00082", 3), "00082", 3_600_000, &[]);
        city.apply_group(vec![batch(&a, vec![other.clone()])], 4, ctx(), 60_000).await.unwrap();
        city.discard(&a, 3, "not ours", "office", 5).await.unwrap().unwrap();
        city.flush().await.unwrap();
        let overruled = &city.changes_since(0, 100).await.unwrap().last().unwrap().change.clone();
        let view = ward_view(&[&other, overruled]);
        assert_eq!(view, None, "{name}");
        assert_eq!(city.get(&other.key).await.unwrap(), None, "{name}");
        let told: Vec<RecordKey> =
            city.downstream(&a, 0, 100).await.unwrap().into_iter().map(|(l, _)| l.change.key).collect();
        assert!(
            told.contains(&key) && told.contains(&other.key),
            "{name}: the ward is told of both: {told:?}"
        );
    }
}
