//! The ownership rule and its exceptions, judged on the city's copy.

use super::*;
use crate::generate::sample;
use crate::model::{Hlc, Kind, Policies};

fn ward(s: &str) -> WardCode {
    WardCode::parse(s).unwrap()
}

fn ctx() -> Context {
    Context { today: "2026-11-22".parse().unwrap(), province: Some("01".into()) }
}

fn citizen(owner: &str) -> Record {
    sample(&ward(owner), 20, 1).into_iter().find(|r| matches!(r.body, Body::Citizen(_))).unwrap()
}

fn put(r: Record, writer: &str, ms: u64, context: VersionVector) -> Change {
    let fields = flatten(&r).into_keys().collect();
    let key = r.key().unwrap();
    let stamp = Stamp { hlc: Hlc { wall_ms: ms, logical: 0 }, writer: writer.into() };
    Change { seq: 1, written_at_ms: 0, key, stamp, context, fields, op: Op::Put(r) }
}

fn state_after(c: &Change) -> Versioned {
    let mut v = Versioned::default();
    v.apply(&c.values(), &c.stamp, &c.context);
    v
}

fn at<'a>(state: Option<&'a Versioned>, named_sender: bool) -> Standing<'a> {
    Standing { state, named_sender, today_by_sender: 0, spouse: None }
}

#[test]
fn ownership_rules() {
    let (a, b, ctx) = (ward("00082"), ward("00145"), ctx());
    let ok = put(citizen("00082"), "00082", 1, VersionVector::default());
    assert_eq!(ok.refusal(&a, &at(None, false), &ctx), None);
    let owned_by_a = state_after(&ok);
    assert_eq!(ok.refusal(&a, &at(Some(&owned_by_a), true), &ctx), None);
    assert!(ok.refusal(&b, &at(None, false), &ctx).unwrap().contains("sent by ward 00145"));

    // Ward b writes a's record, knowing it is a's: refused.
    let mut theirs = citizen("00082");
    theirs.ward = b.clone();
    if let Body::Citizen(c) = &mut theirs.body {
        c.permanent_residence.commune_code = "00145".into();
    }
    // (Its residence moved to b, as b keeps only its residents: judged
    // as the transfer it would be, which rewrites the person.)
    let knowing = put(theirs.clone(), "00145", 2, owned_by_a.seen.clone());
    let why = knowing.refusal(&b, &at(Some(&owned_by_a), false), &ctx).unwrap();
    assert!(why.contains("also sets"), "{why}");
    let mut plain = knowing.clone();
    plain.fields.retain(|f| f != OWNER);
    let why = plain.refusal(&b, &at(Some(&owned_by_a), false), &ctx).unwrap();
    assert!(why.contains("belongs to ward 00082"), "{why}");
    // Never having owned it: refused too, or any ward could take any
    // record, whatever it claims to have written before.
    let stranger = put(theirs.clone(), "00145", 2, VersionVector::default());
    assert!(stranger.refusal(&b, &at(Some(&owned_by_a), false), &ctx).is_some());
    let mut claimed = VersionVector::default();
    claimed.add(&Stamp { hlc: Hlc { wall_ms: 0, logical: 0 }, writer: "00145".into() });
    let mut claiming = put(theirs.clone(), "00145", 2, claimed);
    claiming.fields.retain(|f| f != OWNER);
    let why = claiming.refusal(&b, &at(Some(&owned_by_a), false), &ctx).unwrap();
    assert!(why.contains("belongs to ward 00082"), "{why}");
    // Having owned it (a write named b owner), not knowing it changed
    // hands: accepted, the merge settles it; but not if it sets the
    // owner, nor without the city's record of b's ownership.
    let b_first = put(theirs.clone(), "00145", 1, VersionVector::default());
    let mut passed_to_a = state_after(&b_first);
    let b_saw = passed_to_a.seen.clone();
    let to_a = put(citizen("00082"), "00082", 3, b_saw.clone());
    passed_to_a.apply(&to_a.values(), &to_a.stamp, &to_a.context);
    let mut concurrent = put(theirs.clone(), "00145", 2, b_saw);
    concurrent.fields = vec!["phone".into(), "permanent_residence".into()];
    assert_eq!(concurrent.refusal(&b, &at(Some(&passed_to_a), true), &ctx), None);
    assert!(concurrent.refusal(&b, &at(Some(&passed_to_a), false), &ctx).is_some());
    // Who the person is, or their events: not on its word that it had not seen the move.
    let mut same = concurrent.clone();
    same.fields.extend(["full_name".into(), "events".into()]);
    assert_eq!(same.refusal(&b, &at(Some(&passed_to_a), true), &ctx), None, "as the city holds them");
    for personal in ["full_name", "events"] {
        let mut rewrite = same.clone();
        let Op::Put(Record { body: Body::Citizen(c), .. }) = &mut rewrite.op else { unreachable!() };
        match personal {
            "full_name" => c.full_name = "Tên Khác".into(),
            _ => c.events.clear(),
        }
        let why = rewrite.refusal(&b, &at(Some(&passed_to_a), true), &ctx).unwrap();
        assert!(why.contains("only by registration"), "{personal}: {why}");
    }
    concurrent.fields.push(OWNER.into());
    assert!(concurrent.refusal(&b, &at(Some(&passed_to_a), true), &ctx).is_some(), "sets the owner");

    let del = Change {
        op: Op::Delete,
        fields: vec![],
        ..put(citizen("00082"), "00145", 4, owned_by_a.seen.clone())
    };
    assert!(del.refusal(&b, &at(Some(&owned_by_a), false), &ctx).is_some());
    // A delete of a record the city does not hold is not the sender's to make.
    let unknown = Change {
        op: Op::Delete,
        fields: vec![],
        ..put(citizen("00082"), "00082", 5, VersionVector::default())
    };
    let why = unknown.refusal(&a, &at(None, false), &ctx).unwrap();
    assert!(why.contains("not a record the city holds"), "{why}");
    let mismatched = Change { key: RecordKey::new(Kind::Citizen, "001085099999").unwrap(), ..ok.clone() };
    assert!(mismatched.refusal(&a, &at(None, false), &ctx).unwrap().contains("does not match"));
}

#[test]
fn wards_that_moved_a_record_in_concurrently_each_write_it_until_the_office_settles_it() {
    let (b, ctx) = (ward("00145"), ctx());
    let created = put(citizen("00082"), "00082", 1, VersionVector::default());
    let mut held = state_after(&created);
    let moved_into = |w: &str, ms: u64| {
        let mut moved = citizen("00082");
        moved.ward = ward(w);
        let Body::Citizen(p) = &mut moved.body else { unreachable!() };
        p.permanent_residence.commune_code = w.into();
        let mut t = put(moved, w, ms, created.context.clone());
        t.context.add(&created.stamp);
        t.fields = vec![OWNER.into(), "permanent_residence".into()];
        t
    };
    // b and another ward each move the citizen in, neither seeing the
    // other's move (the other's the newer): a conflict on the owner.
    let (to_b, to_other) = (moved_into("00145", 5), moved_into("00091", 6));
    for t in [&to_b, &to_other] {
        held.apply(&t.values(), &t.stamp, &t.context);
    }
    assert_eq!(held.fields[OWNER].len(), 2, "two heads: {held:?}");
    // b's next write, built on its own move: b's record until settled.
    let Op::Put(mut mine) = to_b.op.clone() else { unreachable!() };
    let Body::Citizen(p) = &mut mine.body else { unreachable!() };
    p.phone = "0912345678".into();
    let mut seen = to_b.context.clone();
    seen.add(&to_b.stamp);
    let mut next = put(mine.clone(), "00145", 7, seen.clone());
    next.fields.retain(|f| f != OWNER);
    assert_eq!(next.refusal(&b, &at(Some(&held), true), &ctx), None);
    // Not if it sets the owner (settling the conflict is the office's),
    // nor if it has seen the other's move too.
    let mut owner_too = next.clone();
    owner_too.fields.push(OWNER.into());
    assert!(owner_too.refusal(&b, &at(Some(&held), true), &ctx).is_some());
    let mut knowing = next.clone();
    knowing.context.add(&to_other.stamp);
    assert!(knowing.refusal(&b, &at(Some(&held), true), &ctx).is_some());
    // Not built on its move: judged as before (a move of the other's
    // record that rewrites the person).
    let blind = put(mine, "00145", 7, to_b.context.clone());
    let why = blind.refusal(&b, &at(Some(&held), true), &ctx).unwrap();
    assert!(why.contains("also sets"), "{why}");
}

/// A transfer of `base` (a's citizen, as the city holds it) into b,
/// setting `fields` of `moved`.
fn transfer(moved: &Record, base: &Versioned, fields: &[&str]) -> Change {
    let mut c = put(moved.clone(), "00145", 9, base.seen.clone());
    c.fields = fields.iter().map(|f| f.to_string()).collect();
    c
}

#[test]
fn a_transfer_moves_the_residence_and_nothing_else() {
    let (b, ctx) = (ward("00145"), ctx());
    let created = put(citizen("00082"), "00082", 1, VersionVector::default());
    let held = state_after(&created);
    let mut moved = citizen("00082");
    moved.ward = b.clone();
    let Body::Citizen(c) = &mut moved.body else { unreachable!() };
    c.permanent_residence.commune_code = "00145".into();
    c.household_id = "HK-00145-000009".into();
    let fine = transfer(&moved, &held, &[OWNER, "permanent_residence", "household_id"]);
    assert!(fine.is_transfer_into(&b));
    assert_eq!(fine.refusal(&b, &at(Some(&held), false), &ctx), None);
    // Claiming to have seen nothing of the record: refused.
    let blind = Change { context: VersionVector::default(), ..fine.clone() };
    let why = blind.refusal(&b, &at(Some(&held), false), &ctx).unwrap();
    assert!(why.contains("had not seen it"), "{why}");

    // Renamed, its events erased: refused, with what it also set.
    let Body::Citizen(c) = &mut moved.body else { unreachable!() };
    c.full_name = "Huỳnh Xuân Quân".into();
    c.events.clear();
    let rewrite = transfer(&moved, &held, &[OWNER, "permanent_residence", "full_name", "events"]);
    let why = rewrite.refusal(&b, &at(Some(&held), false), &ctx).unwrap();
    assert!(why.contains("also sets full_name, events"), "{why}");

    // A deleted record is not brought back by a transfer.
    let mut gone = held.clone();
    let del =
        Change { op: Op::Delete, fields: vec![], ..put(citizen("00082"), "00082", 2, held.seen.clone()) };
    gone.apply(&del.values(), &del.stamp, &del.context);
    let why =
        transfer(&moved, &gone, &[OWNER, "permanent_residence"]).refusal(&b, &at(Some(&gone), false), &ctx);
    assert!(why.unwrap().contains("deleted record cannot be transferred"));
}

#[test]
fn the_owner_rewrites_who_a_person_is_only_with_a_registered_correction() {
    use crate::model::civil::Registration;
    let (a, ctx) = (ward("00082"), ctx());
    let created = put(citizen("00082"), "00082", 1, VersionVector::default());
    let held = state_after(&created);
    let Op::Put(Record { body: Body::Citizen(person), .. }) = &created.op else { unreachable!() };
    let write = |c: crate::model::Citizen, fields: &[&str], context: VersionVector| {
        let mut change = put(Record { ward: a.clone(), body: Body::Citizen(c) }, "00082", 2, context);
        change.fields = fields.iter().map(|f| f.to_string()).collect();
        change.refusal(&a, &at(Some(&held), true), &ctx)
    };
    let mut other = person.clone();
    other.full_name = "Huỳnh Xuân Quân".into();
    let why = write(other.clone(), &["full_name"], held.seen.clone()).unwrap();
    assert!(why.contains("register correction"), "{why}");
    // Claiming not to have seen the record's name changes nothing: the
    // identity is judged on every version the city holds.
    let why = write(other, &["full_name"], VersionVector::default()).unwrap();
    assert!(why.contains("register correction"), "{why}");
    let mut erased = person.clone();
    erased.events.clear();
    assert!(write(erased, &["events"], held.seen.clone()).unwrap().contains("drops or changes"));
    let correction = Registration::Correction {
        person: person.personal_id.clone(),
        field: "full_name".into(),
        value: "Huỳnh Xuân Quân".into(),
        date: "2026-11-01".parse().unwrap(),
    };
    let corrected = correction.apply(std::slice::from_ref(person), &a, "QĐ 1/2026").remove(0);
    assert_eq!(write(corrected.clone(), &["full_name", "events"], held.seen.clone()), None);
    // A correction must be written with what it corrects, and be the sender's own.
    let why = write(corrected.clone(), &["events"], held.seen.clone()).unwrap();
    assert!(why.contains("this write sets the record's full_name to \"nothing\""), "{why}");
    let elsewhere = correction.apply(std::slice::from_ref(person), &ward("00145"), "QĐ 1/2026").remove(0);
    let why = write(elsewhere, &["full_name", "events"], held.seen.clone()).unwrap();
    assert!(why.contains("a ward registers its own corrections"), "{why}");
}

#[test]
fn a_registration_is_judged_on_the_citys_copy_and_opens_nothing_else() {
    use crate::model::civil::Registration;
    let (b, ctx) = (ward("00145"), ctx());
    let created = put(citizen("00082"), "00082", 1, VersionVector::default());
    let mut held = state_after(&created);
    let Body::Citizen(person) = &citizen("00082").body else { unreachable!() };
    let register = |held: &Versioned, r: &Registration, context: VersionVector, ms: u64| {
        let Record { body: Body::Citizen(c), .. } = held.view(&created.key, &Policies::default()).unwrap()
        else {
            unreachable!()
        };
        let after = r.apply(std::slice::from_ref(&c), &b, "").remove(0);
        let mut change =
            put(Record { ward: ward("00082"), body: Body::Citizen(after.clone()) }, "00145", ms, context);
        change.fields = vec!["events".into()];
        if after.marital_status != c.marital_status {
            change.fields.push("marital_status".into());
        }
        change
    };
    let died = Registration::Death { person: person.personal_id.clone(), date: ctx.today };
    let death = register(&held, &died, held.seen.clone(), 1_763_000_000_000);
    assert_eq!(death.refusal(&b, &at(Some(&held), false), &ctx), None);
    held.apply(&death.values(), &death.stamp, &death.context);

    // The registration is no key to the record: a plain put by b,
    // claiming nothing, is refused.
    let mut taken = citizen("00082");
    taken.ward = b.clone();
    let plain = put(taken, "00145", 1_763_000_000_001, VersionVector::default());
    assert!(plain.refusal(&b, &at(Some(&held), false), &ctx).unwrap().contains("belongs to ward 00082"));

    // A marriage after the death, claiming to have seen nothing: refused
    // as a registrar would (and not as "keeping every event").
    let wed = Registration::Marriage {
        spouses: [person.personal_id.clone(), "001190000001".into()],
        date: ctx.today,
    };
    let mut before_death = held.clone();
    before_death.fields.insert("events".into(), state_after(&created).fields["events"].clone());
    let blind = register(&before_death, &wed, VersionVector::default(), 1_765_000_000_000);
    let why = blind.refusal(&b, &at(Some(&held), false), &ctx).unwrap();
    assert!(why.contains("keeps every event"), "{why}");
    // Made concurrently with the death, on what the death was built on:
    // refused as a registrar would, on the city's copy.
    let concurrent = register(&before_death, &wed, state_after(&created).seen, 1_765_000_000_000);
    let why = concurrent.refusal(&b, &at(Some(&held), false), &ctx).unwrap();
    assert!(why.contains("registered as deceased"), "{why}");
    // Erasing the death to marry: refused.
    let erased = register(&before_death, &wed, held.seen.clone(), 1_765_000_000_000);
    let why = erased.refusal(&b, &at(Some(&held), false), &ctx).unwrap();
    assert!(why.contains("keeps every event"), "{why}");
}

#[test]
fn invalid_records_are_refused_with_the_reason() {
    let mut r = citizen("00082");
    if let Body::Citizen(x) = &mut r.body {
        x.full_name.clear();
    }
    let c = put(r, "00082", 1, VersionVector::default());
    let why = c.refusal(&ward("00082"), &at(None, false), &ctx()).unwrap();
    assert!(why.contains("record.citizen.full_name: required"), "{why}");
}

#[test]
fn the_form_of_a_change_is_checked_whoever_sent_it() {
    let w = ward("00082");
    for r in sample(&w, 60, 4) {
        let c = put(r, "00082", 1, VersionVector::default());
        assert_eq!(c.check_form(), Ok(()), "a generated change: {c:?}");
    }
    let ok = put(citizen("00082"), "00082", 1, VersionVector::default());
    let bad = |f: &dyn Fn(&mut Change)| {
        let mut c = ok.clone();
        f(&mut c);
        c.check_form().unwrap_err().to_string()
    };
    assert!(bad(&|c| c.fields.push("nickname".into())).contains("has no field"));
    assert!(bad(&|c| c.fields.push("nick\0name".into())).contains("\\0"), "quoted escaped");
    assert!(bad(&|c| c.fields.push("phone".into())).contains("phone is named twice"));
    assert!(bad(&|c| c.stamp.writer = "00082\0".into()).contains("change.writer"));
    assert!(
        bad(&|c| {
            c.context.add(&Stamp { hlc: Hlc::default(), writer: "x\0".into() });
        })
        .contains("change.context")
    );
    assert!(
        bad(&|c| {
            for i in 0..=MAX_CONTEXT {
                c.context.add(&Stamp { hlc: Hlc::default(), writer: format!("{:05}", i) });
            }
        })
        .contains("the limit is 256")
    );
    assert!(
        bad(&|c| {
            if let Op::Put(Record { body: Body::Citizen(x), .. }) = &mut c.op {
                x.full_name = "Nguyễn\0Văn An".into();
            }
        })
        .contains("U+0000")
    );
    assert!(bad(&|c| c.op = Op::Delete).contains("a delete sets no fields"));
}

#[test]
fn a_put_writes_its_listed_fields_and_existence() {
    let mut c = put(citizen("00082"), "00082", 1, VersionVector::default());
    c.fields = vec!["phone".into()];
    let v = c.values();
    assert_eq!(v.keys().collect::<Vec<_>>(), ["_exists", "phone"]);
    let d = Change { op: Op::Delete, fields: vec![], ..c };
    assert_eq!(d.values(), BTreeMap::from([(EXISTS.to_string(), "false".to_string())]));
}
