//! The city database on PostgreSQL: the schema migrates a fresh database,
//! a second run changes nothing, and a database migrated by a newer
//! wardsync is refused with a message that says what to do. Names are
//! searchable without diacritics through the schema's own folding, and the
//! keys follow the rules a Citus cluster needs to shard the tables.

mod common;

use common::pg::Postgres;
use wardsync::store::pg::{LATEST, SchemaError, migrate};

async fn connect(pg: &Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_migrates_once_and_refuses_a_newer_one() {
    let pg = Postgres::start();
    let mut client = connect(&pg).await;
    assert_eq!(migrate(&mut client).await.unwrap(), LATEST);
    let tables: Vec<String> = client
        .query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in ["businesses", "change_log", "citizens", "conflicts", "land_parcels", "quarantine", "ward_state"]
    {
        assert!(tables.iter().any(|x| x == t), "{t} in {tables:?}");
    }
    // Twice, or from two processes at once: applied once.
    let mut other = connect(&pg).await;
    let (a, b) = tokio::join!(migrate(&mut client), migrate(&mut other));
    assert_eq!((a.unwrap(), b.unwrap()), (LATEST, LATEST));
    let n: i64 = client.query_one("SELECT count(*) FROM schema_version", &[]).await.unwrap().get(0);
    assert_eq!(n, i64::from(LATEST));
    // The office's name search: without diacritics, đ as d.
    let folded: String =
        client.query_one("SELECT wardsync_fold('ĐẶNG Văn Hải, Nguyễn Thị Ánh')", &[]).await.unwrap().get(0);
    assert_eq!(folded, "dang van hai, nguyen thi anh");
    assert_eq!(folded, wardsync::model::fold("ĐẶNG Văn Hải, Nguyễn Thị Ánh"));
    // Shardable by Citus as deploy/citus.sql distributes it: each
    // distributed table's primary key holds its distribution column, every
    // table is distributed or a reference table, and no foreign key crosses
    // tables.
    let ddl = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/citus.sql")).unwrap();
    let quoted = |call: &str| -> Vec<Vec<String>> {
        ddl.lines()
            .filter(|l| l.starts_with(&format!("SELECT {call}(")))
            .map(|l| l.split('\'').skip(1).step_by(2).map(String::from).collect())
            .collect()
    };
    let distribution: Vec<(String, String)> =
        quoted("create_distributed_table").into_iter().map(|q| (q[0].clone(), q[1].clone())).collect();
    let reference: Vec<String> = quoted("create_reference_table").into_iter().map(|q| q[0].clone()).collect();
    for t in &tables {
        assert!(
            distribution.iter().any(|(d, _)| d == t) || reference.contains(t),
            "deploy/citus.sql neither distributes {t} nor makes it a reference table"
        );
    }
    for (table, column) in &distribution {
        let pk: Vec<String> = client
            .query(
                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a
                   ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = $1::text::regclass AND i.indisprimary",
                &[table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(pk.iter().any(|c| c == column), "{table}: primary key {pk:?} lacks {column}");
    }
    let foreign: i64 =
        client.query_one("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", &[]).await.unwrap().get(0);
    assert_eq!(foreign, 0, "no foreign keys");
    // A newer wardsync migrated it: this one refuses, saying what to do.
    client
        .execute("INSERT INTO schema_version (version, what) VALUES (99, 'from the future')", &[])
        .await
        .unwrap();
    let e = migrate(&mut client).await.unwrap_err();
    assert!(matches!(e, SchemaError::Newer { found: 99 }), "{e}");
    assert!(e.to_string().contains("run the newer wardsync"), "{e}");
}
