//! What only the PostgreSQL store has to show: several processes on one
//! database, and the connection to it.

use super::*;

/// Two city processes' stores write to one PostgreSQL at once while a
/// reader follows the log: every read continues exactly where the last one
/// ended (cursors contiguous, none seen twice, none skipped and seen later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_reader_never_skips_a_cursor_while_two_processes_write() {
    let pg = pg::test_cluster::Postgres::start();
    let a = Arc::new(pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.unwrap());
    let b = Arc::new(pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.unwrap());
    let writers: Vec<_> = [(a, "00082"), (b, "00145")]
        .into_iter()
        .map(|(store, code)| {
            tokio::spawn(async move {
                for seq in 1..=60 {
                    let group =
                        vec![WardBatch { ward: ward(code), changes: changes(code, seq..=seq), links: None }];
                    store.apply_group(group, seq as i64, ctx(), NO_SKEW_LIMIT).await.unwrap();
                }
            })
        })
        .collect();
    let reader = pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.unwrap();
    let mut after = 0;
    while after < 120 {
        for logged in reader.changes_since(after, 7).await.unwrap() {
            assert_eq!(logged.cursor, after + 1, "read after {after}");
            after = logged.cursor;
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(reader.changes_since(120, 10).await.unwrap().is_empty());
}

/// Groups called one after another without waiting are each merged while
/// the one before writes, over what that one wrote; two processes doing so
/// on one database make groups find another's write in between, and merge
/// again. Group `s` of a ward creates its citizen `s` and deletes citizen
/// `s - 1`, which only the group before it wrote: a group merged without
/// what the one before wrote, or over a stale ward state, leaves the
/// counters unequal to the records (or the deleted citizen shown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_merged_while_the_one_before_writes_lose_nothing_of_it_or_of_another_process() {
    let pg = pg::test_cluster::Postgres::start();
    let a = Arc::new(pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.unwrap());
    let b = Arc::new(pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.unwrap());
    const GROUPS: u64 = 60;
    let writers: Vec<_> = [(a.clone(), "00082"), (b.clone(), "00145")]
        .into_iter()
        .map(|(store, code)| {
            let w = ward(code);
            let groups: Vec<_> = (1..=GROUPS)
                .map(|s| {
                    // The ward's changes 1, then 2 and 3, 4 and 5...
                    let seq = (2 * s).saturating_sub(2).max(1);
                    let mut group = vec![stamped(Change { seq, ..change(code, s) }, code, 10 * s, &[])];
                    if s > 1 {
                        let gone =
                            Change { seq: seq + 1, op: Op::Delete, fields: vec![], ..change(code, s - 1) };
                        group.push(stamped(gone, code, 10 * s + 1, &[(code, 10 * (s - 1))]));
                    }
                    store.apply_group(vec![batch(&w, group)], s as i64, ctx(), NO_SKEW_LIMIT)
                })
                .collect();
            tokio::spawn(futures::future::join_all(groups))
        })
        .collect();
    for w in writers {
        for (i, out) in w.await.unwrap().into_iter().enumerate() {
            // Each answer is the ward's last change applied.
            assert_eq!(out.unwrap(), [Ok(2 * i as u64 + 1)], "group {}", i + 1);
        }
    }
    // Each writer's own figures for its ward (kept from its writes), and a
    // new process's, read from the database, for both.
    let fresh = Arc::new(pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.unwrap());
    for (store, codes) in [(&a, &["00082"][..]), (&b, &["00145"]), (&fresh, &["00082", "00145"])] {
        for code in codes {
            assert_eq!(owned(&**store as &dyn CityDb, &ward(code)).await, 1, "ward {code}");
            let left = store.list(Kind::Citizen, Some(&ward(code)), "", 10).await.unwrap();
            assert_eq!(left.len(), 1, "ward {code}");
            assert_eq!(left[0].key_id(), citizen(code, GROUPS).key_id(), "ward {code}");
        }
    }
    let log = a.changes_since(0, 1000).await.unwrap();
    let cursors: Vec<u64> = log.iter().map(|l| l.cursor).collect();
    assert_eq!(cursors, (1..=4 * GROUPS - 2).collect::<Vec<_>>());
}

/// A group of one process merged ahead, while another process's group
/// takes the lock first and commits, finds the clock row moved on when it
/// gets the lock, and merges again: each change gets a cursor of its own.
/// The order is forced: the test holds the lock until both groups wait on
/// it, the other process's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_merged_ahead_merges_again_after_another_processs_write() {
    let pg = pg::test_cluster::Postgres::start();
    let a = Arc::new(pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.unwrap());
    let b = Arc::new(pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.unwrap());
    let (mut holder, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let lock = holder.transaction().await.unwrap();
    lock.execute("SELECT 1 FROM city_clock FOR UPDATE", &[]).await.unwrap();
    let mut groups = Vec::new();
    for (n, (store, code)) in [(b.clone(), "00145"), (a.clone(), "00082")].into_iter().enumerate() {
        let group = vec![batch(&ward(code), vec![change(code, 1)])];
        groups.push(tokio::spawn(store.apply_group(group, 1, ctx(), NO_SKEW_LIMIT)));
        wait_for_lock_waiters(&pg, n as i64 + 1).await;
    }
    lock.commit().await.unwrap();
    for g in groups {
        assert_eq!(g.await.unwrap().unwrap(), [Ok(1)]);
    }
    let log = a.changes_since(0, 10).await.unwrap();
    let written: Vec<(u64, &str)> = log.iter().map(|l| (l.cursor, l.change.key.id())).collect();
    assert_eq!(written.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [1, 2], "{written:?}");
    assert_eq!(written[0].1, change("00145", 1).key.id(), "the write that took the lock first");
}

/// Waits until `n` sessions of the test cluster wait for a lock.
async fn wait_for_lock_waiters(pg: &pg::test_cluster::Postgres, n: i64) {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let row = client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'", &[])
            .await
            .unwrap();
        if row.get::<_, i64>(0) >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{n} sessions never waited for the lock");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// What a PostgreSQL city process reports of a ward (its counters) never
/// goes back to an older figure when it re-reads the database (once a
/// second) while it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_city_never_reports_an_older_ward_state_than_it_wrote() {
    let pg = pg::test_cluster::Postgres::start();
    let city = pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.unwrap();
    let a = ward("00082");
    let until = std::time::Instant::now() + std::time::Duration::from_millis(2500);
    let mut seq = 0;
    while std::time::Instant::now() < until {
        seq += 1;
        let group = vec![WardBatch { ward: a.clone(), changes: changes("00082", seq..=seq), links: None }];
        city.apply_group(group, seq as i64, ctx(), NO_SKEW_LIMIT).await.unwrap();
        let state = city.wards().into_iter().find(|(w, _)| *w == a).unwrap().1;
        assert_eq!((state.last_applied_seq, state.records), (seq, seq), "after write {seq}");
    }
    assert!(seq > 10, "{seq} writes");
}

/// A city given the CA of the database server's certificate speaks TLS to
/// it, on every connection (the pool's and the one that listens for the
/// other processes' writes), and refuses a server that CA did not sign or
/// whose certificate names another host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_given_the_databases_ca_speaks_tls_on_every_connection_and_checks_the_server() {
    let certs = tempfile::tempdir().unwrap();
    crate::auth::DevCa::open_or_create(certs.path()).unwrap().issue("postgres", &["localhost"]).unwrap();
    let (cert, key) = (certs.path().join("postgres.pem"), certs.path().join("postgres.key"));
    let setup = pg::test_cluster::Setup { tls: Some((&cert, &key)), ..Default::default() };
    let pg = pg::test_cluster::Postgres::start_with(setup);
    let ca = certs.path().join("ca.pem");
    let by_name = pg.url().replace("127.0.0.1", "localhost");
    let open = async |url: &str, ca: Option<&std::path::Path>| {
        pg::PgCityStore::open(url, ca, Policies::default()).await.map_err(|e| e.to_string())
    };
    // The server refuses plain text: what works below works over TLS.
    let plain = open(&by_name, None).await.err().unwrap();
    assert!(plain.contains("no encryption"), "{plain}");
    // A CA that did not sign the server's certificate.
    let other = tempfile::tempdir().unwrap();
    crate::auth::DevCa::open_or_create(other.path()).unwrap();
    let forged = open(&by_name, Some(&other.path().join("ca.pem"))).await.err().unwrap();
    assert!(forged.contains("certificate is not accepted"), "{forged}");
    // The right CA, but the certificate names localhost, not 127.0.0.1.
    let misnamed = open(&pg.url(), Some(&ca)).await.err().unwrap();
    assert!(misnamed.contains("not valid for name \"127.0.0.1\""), "{misnamed}");
    // sslmode=require with nothing to verify the server against.
    let unverified = open(&format!("{by_name}?sslmode=require"), None).await.err().unwrap();
    assert!(unverified.contains("[database] ca"), "{unverified}");

    let a = open(&by_name, Some(&ca)).await.unwrap();
    let b = open(&by_name, Some(&ca)).await.unwrap();
    let w = ward("00082");
    let created = change("00082", 1);
    a.apply_group(
        vec![WardBatch {
            ward: w.clone(),
            changes: vec![Incoming::Change(created.clone())].into(),
            links: None,
        }],
        1,
        ctx(),
        NO_SKEW_LIMIT,
    )
    .await
    .unwrap();
    // An office edit through `a` leaves a note for the ward; `b` hears of
    // it on its own listening connection (there is no other way it would).
    let Op::Put(record) = &created.op else { unreachable!() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for n in 1.. {
        let asked = crate::model::office_request::Asked::Edit {
            record: Box::new(crate::generate::amend(record, n)),
            seen: VersionVector::default(),
        };
        let cursor =
            a.office(&SignedRequest::unsigned(asked, "office", 0), 2, &ctx()).await.unwrap().unwrap();
        let wait = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while !b.may_have_downstream(&w, cursor - 1) && std::time::Instant::now() < wait {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if b.may_have_downstream(&w, cursor - 1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the second process never heard of the first's writes");
    }
}

/// A server that would lose commits on a power cut whatever the city does
/// (`fsync = off`) is refused, saying what to change.
#[tokio::test]
async fn a_database_without_fsync_is_refused() {
    let setup = pg::test_cluster::Setup { settings: &["fsync=off"], ..Default::default() };
    let pg = pg::test_cluster::Postgres::start_with(setup);
    let e = pg::PgCityStore::open(&pg.url(), None, Policies::default()).await.err().unwrap().to_string();
    assert!(e.contains("fsync = off") && e.contains("set fsync = on"), "{e}");
}
