//! A change of the city's merge policies reaches the records it stores.

use super::*;
use crate::model::Policy;

#[tokio::test]
async fn a_policy_change_shows_stored_records_indexes_and_conflicts_under_the_new_policies() {
    for (name, mut h) in cities() {
        // (A person with no registered event yet: names are written freely.)
        let create = super::office::unregistered(change("00082", 1));
        let (city, create, seen) = super::office::city_with(&mut h, create).await;
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
        city.apply_group(vec![batch(&a, vec![rename])], 2, ctx(), NO_SKEW_LIMIT).await.unwrap();
        let by_office = super::office::citizen_edited(&create, |c| c.full_name = "Lê Văn Thành Phố".into());
        city.office_put(by_office, Some(seen), "office", 3, &ctx()).await.unwrap().unwrap();
        let name_of = |record: Option<Record>| {
            let crate::model::Body::Citizen(c) = record.unwrap().body else { unreachable!() };
            c.full_name
        };
        // Names are owner-wins by default: the ward's shows.
        assert_eq!(name_of(city.get(&key).await.unwrap()), "Trần Thị Phường", "{name}");
        assert_eq!(
            city.conflict(&key, "full_name").await.unwrap().unwrap().policy,
            Policy::OwnerWins,
            "{name}"
        );
        // A person's name is settled by choosing a written one, never a new one.
        let e =
            city.resolve(&key, "full_name", "\"Tên Tùy Ý\"", "office", 4, &ctx()).await.unwrap().unwrap_err();
        assert!(e.to_string().contains("settled by choosing one of the values written"), "{name}: {e}");
        city.flush().await.unwrap();
        drop(city);

        // The city is configured with last-writer-wins names.
        h.restart();
        let mut lww = Policies::default();
        lww.fields.insert("citizen.full_name".into(), Policy::Lww);
        let city = h.open(lww.clone()).await;
        assert_eq!(
            name_of(city.get(&key).await.unwrap()),
            "Lê Văn Thành Phố",
            "{name}: the later write now shows"
        );
        let shown = city.state(&key).await.unwrap().unwrap().materialize(&key, &lww).unwrap();
        assert_eq!(city.get(&key).await.unwrap().unwrap(), shown, "{name}: Get and GetState agree");
        assert!(
            city.search_name("le van thanh pho", None, b"", 10)
                .await
                .unwrap()
                .items
                .iter()
                .any(|r| r.key() == Ok(key.clone())),
            "{name}"
        );
        assert!(
            city.search_name("tran thi phuong", None, b"", 10).await.unwrap().items.is_empty(),
            "{name}: the old name's index entry is gone"
        );
        assert_eq!(city.conflict(&key, "full_name").await.unwrap().unwrap().policy, Policy::Lww, "{name}");
        assert_eq!(owned(&*city, &a).await, 1, "{name}");
    }
}
