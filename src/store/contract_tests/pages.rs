//! Every list and search comes in pages: at most the size asked, a cursor
//! that walks the whole list once, and a bounded read per page however
//! few entries a filter keeps.

use super::*;

/// Every item of a paged read, and how many pages it took; `read(after)`
/// gives one page.
async fn walk<T>(mut read: impl AsyncFnMut(Vec<u8>) -> Page<T>, limit: usize) -> (Vec<T>, usize) {
    let (mut all, mut pages, mut after) = (Vec::new(), 0, Vec::new());
    loop {
        let page = read(after.clone()).await;
        assert!(page.items.len() <= limit, "a page holds at most its size");
        pages += 1;
        all.extend(page.items);
        match page.next {
            Some(next) => after = next,
            None => return (all, pages),
        }
        assert!(pages < 1000, "the cursor moves on");
    }
}

#[tokio::test]
async fn searches_households_owners_quarantine_and_conflicts_come_in_pages() {
    for (name, mut h) in cities() {
        let city = h.open(Policies::default()).await;
        let a = ward("00082");
        // 25 citizens of one household, all named alike.
        let household = citizen("00082", 0).key_id();
        let people: Vec<Change> = (1..=25)
            .map(|seq| {
                let mut c = change("00082", seq);
                if let Op::Put(Record { body: crate::model::Body::Citizen(p), .. }) = &mut c.op {
                    p.household_id = format!("HK-00082-{household}");
                    p.full_name = "Nguyễn Văn An".into();
                }
                c
            })
            .collect();
        let mut ids: Vec<String> = people.iter().map(|c| c.key.id().to_string()).collect();
        ids.sort();
        assert_eq!(
            city.apply_group(vec![batch(&a, people)], 1, ctx(), NO_SKEW_LIMIT).await.unwrap(),
            [Ok(25)]
        );

        let (found, pages) =
            walk(async |after| city.search_name("nguyen van an", None, &after, 7).await.unwrap(), 7).await;
        let mut found: Vec<String> = found.iter().map(Record::key_id).collect();
        found.sort();
        assert_eq!((found, pages), (ids.clone(), 4), "{name}: 25 in pages of 7");
        let hk = format!("HK-00082-{household}");
        let (members, _) = walk(async |after| city.household(&hk, &after, 10).await.unwrap(), 10).await;
        assert_eq!(members.len(), 25, "{name}");
        // A kind filter that keeps nothing still reads a bounded page at a time.
        let (none, pages) =
            walk(async |after| city.search_name("nguyen", Some(Kind::Business), &after, 5).await.unwrap(), 5)
                .await;
        assert!(none.is_empty(), "{name}");
        // (PostgreSQL filters with its indexes: the work of a page is bounded there.)
        if name != "postgres" {
            assert_eq!(pages, 25 / PAGE_SCAN + 1, "{name}: {PAGE_SCAN} index entries read per page at most");
        }
        let (owned, _) = walk(async |after| city.owned_by("001085012345", &after, 5).await.unwrap(), 5).await;
        assert!(owned.is_empty(), "{name}");

        // The quarantine (as many as a test city keeps), two at a time.
        let strangers: Vec<Change> = (26..26 + MAX_QUARANTINED).map(|seq| change("00145", seq)).collect();
        city.apply_group(vec![batch(&a, strangers)], 2, ctx(), NO_SKEW_LIMIT).await.unwrap();
        let (q, pages) = walk(async |after| city.quarantine_page(None, &after, 2).await.unwrap(), 2).await;
        assert_eq!((q.len() as u64, pages), (MAX_QUARANTINED, 2), "{name}");
        let (theirs, _) =
            walk(async |after| city.quarantine_page(Some(&ward("00145")), &after, 2).await.unwrap(), 2).await;
        assert!(theirs.is_empty(), "{name}: listed under the ward that sent them");

        // A cursor from another list gives nothing.
        let foreign = city.search_name("nguyen van an", None, b"", 1).await.unwrap().next.unwrap();
        assert!(city.quarantine_page(None, &foreign, 5).await.unwrap().items.is_empty(), "{name}");
        let conflicts = city.conflicts_page(&ConflictFilter::default(), b"", 5).await.unwrap();
        assert_eq!((conflicts.items.len(), conflicts.next), (0, None), "{name}");
    }
}
