//! A change of the city's merge policies reaches the records it stores.

use super::*;
use crate::model::Policy;

#[test]
fn a_policy_change_shows_stored_records_indexes_and_conflicts_under_the_new_policies() {
    for (name, mut h) in harnesses() {
        let city = CityStore::open(h.engine(), Policies::default()).unwrap();
        let a = ward("00082");
        let create = change("00082", 1);
        let key = create.key.clone();
        let Op::Put(read) = &create.op else { unreachable!() };
        city.apply_group(&[batch(&a, vec![create.clone()])], 1, &ctx(), NO_SKEW_LIMIT).unwrap();
        let seen = city.state(&key).unwrap().unwrap().seen;
        // The ward renames its citizen; the office, not having seen that, too.
        let mut by_ward = read.clone();
        let crate::model::Body::Citizen(c) = &mut by_ward.body else { unreachable!() };
        c.full_name = "Trần Thị Phường".into();
        let rename = stamped(
            Change { seq: 2, fields: vec!["full_name".into()], op: Op::Put(by_ward), ..create.clone() },
            "00082",
            2,
            &[("00082", 1)],
        );
        city.apply_group(&[batch(&a, vec![rename])], 2, &ctx(), NO_SKEW_LIMIT).unwrap();
        let mut by_office = read.clone();
        let crate::model::Body::Citizen(c) = &mut by_office.body else { unreachable!() };
        c.full_name = "Lê Văn Thành Phố".into();
        city.office_put(by_office, Some(seen), "office", 3, &ctx()).unwrap().unwrap();
        let name_of = |city: &CityStore| {
            let crate::model::Body::Citizen(c) = city.get(&key).unwrap().unwrap().body else {
                unreachable!()
            };
            c.full_name
        };
        // Names are owner-wins by default: the ward's shows.
        assert_eq!(name_of(&city), "Trần Thị Phường", "{name}");
        assert_eq!(city.conflict(&key, "full_name").unwrap().unwrap().policy, Policy::OwnerWins, "{name}");
        block(city.flush()).unwrap();
        drop(city);

        // The city is configured with last-writer-wins names.
        h.restart();
        let mut lww = Policies::default();
        lww.fields.insert("citizen.full_name".into(), Policy::Lww);
        let city = CityStore::open(h.engine(), lww.clone()).unwrap();
        assert_eq!(name_of(&city), "Lê Văn Thành Phố", "{name}: the later write now shows");
        let shown = city.state(&key).unwrap().unwrap().materialize(&key, &lww).unwrap();
        assert_eq!(city.get(&key).unwrap().unwrap(), shown, "{name}: Get and GetState agree");
        assert!(
            city.search_name("le van thanh pho", None, 10)
                .unwrap()
                .iter()
                .any(|r| r.key() == Ok(key.clone())),
            "{name}"
        );
        assert!(
            city.search_name("tran thi phuong", None, 10).unwrap().is_empty(),
            "{name}: the old name's index entry is gone"
        );
        assert_eq!(city.conflict(&key, "full_name").unwrap().unwrap().policy, Policy::Lww, "{name}");
        assert_eq!(owned(&city, &a), 1, "{name}");
    }
}
