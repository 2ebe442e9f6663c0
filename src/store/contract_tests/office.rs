//! The data office's writes: corrections and conflict resolutions.

use super::*;

/// Change `c` with only `fields` written, re-stamped by its owner at `ms` having seen `seen`.
fn partial(c: &Change, seq: u64, fields: &[&str], ms: u64, seen: &[(&str, u64)]) -> Change {
    let fields = fields.iter().map(|f| f.to_string()).collect();
    stamped(Change { seq, fields, ..c.clone() }, "00082", ms, seen)
}

#[test]
fn settling_a_conflict_on_a_deleted_record_does_not_bring_it_back() {
    for (name, h) in harnesses() {
        let city = CityStore::open(h.engine(), Policies::default()).unwrap();
        let a = ward("00082");
        let create = change("00082", 1);
        let key = create.key.clone();
        let Op::Put(record) = &create.op else { unreachable!() };
        let (mut x, mut y) = (record.clone(), record.clone());
        let crate::model::Body::Citizen(cx) = &mut x.body else { unreachable!() };
        cx.phone = "0900000001".into();
        let crate::model::Body::Citizen(cy) = &mut y.body else { unreachable!() };
        cy.phone = "0900000002".into();
        // Two writes of the phone, neither having seen the other, then a delete.
        let one = partial(&Change { op: Op::Put(x), ..create.clone() }, 2, &["phone"], 2, &[("00082", 1)]);
        let other = partial(&Change { op: Op::Put(y), ..create.clone() }, 3, &["phone"], 3, &[("00082", 1)]);
        let delete =
            Change { op: Op::Delete, fields: vec![], ..partial(&create, 4, &[], 4, &[("00082", 3)]) };
        let group = [batch(&a, vec![create.clone(), one, other, delete])];
        assert_eq!(city.apply_group(&group, 5, &ctx(), NO_SKEW_LIMIT).unwrap(), [Ok(4)], "{name}");
        assert!(city.get(&key).unwrap().is_none(), "{name}: deleted");
        assert!(city.conflict(&key, "phone").unwrap().is_some(), "{name}: the phone conflict is open");

        city.resolve(&key, "phone", "\"0900000002\"", "office", 6, &ctx()).unwrap().unwrap();
        assert!(city.get(&key).unwrap().is_none(), "{name}: still deleted");
        assert!(city.conflict(&key, "phone").unwrap().is_none(), "{name}: the conflict is settled");
        assert_eq!(owned(&city, &a), 0, "{name}");
    }
}
