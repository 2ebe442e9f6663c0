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
                    let group = vec![WardBatch { ward: ward(code), changes: changes(code, seq..=seq) }];
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
        let group = vec![WardBatch { ward: a.clone(), changes: changes("00082", seq..=seq) }];
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
        vec![WardBatch { ward: w.clone(), changes: vec![Incoming::Change(created.clone())] }],
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
        let cursor = a
            .office_put(crate::generate::amend(record, n), None, "office", 2, &ctx())
            .await
            .unwrap()
            .unwrap();
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
