//! A change of the city's merge policies reaches the records it stores.

use super::*;
use crate::model::Policy;

#[test]
fn a_policy_change_shows_stored_records_indexes_and_conflicts_under_the_new_policies() {
    for (name, mut h) in harnesses() {
        let (city, create, seen) = super::office::city_with_one_citizen(h.as_ref());
        let (a, key) = (ward("00082"), create.key.clone());
        // The ward renames its citizen; the office, not having seen that, too.
        let by_ward = super::office::citizen_edited(&create, |c| c.full_name = "Trần Thị Phường".into());
        let rename = super::office::partial(
            &Change { op: Op::Put(by_ward), ..create.clone() },
            2,
            &["full_name"],
            2,
            &[("00082", 1)],
        );
        city.apply_group(&[batch(&a, vec![rename])], 2, &ctx(), NO_SKEW_LIMIT).unwrap();
        let by_office = super::office::citizen_edited(&create, |c| c.full_name = "Lê Văn Thành Phố".into());
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
            city.search_name("le van thanh pho", None, b"", 10)
                .unwrap()
                .items
                .iter()
                .any(|r| r.key() == Ok(key.clone())),
            "{name}"
        );
        assert!(
            city.search_name("tran thi phuong", None, b"", 10).unwrap().items.is_empty(),
            "{name}: the old name's index entry is gone"
        );
        assert_eq!(city.conflict(&key, "full_name").unwrap().unwrap().policy, Policy::Lww, "{name}");
        assert_eq!(owned(&city, &a), 1, "{name}");
    }
}
