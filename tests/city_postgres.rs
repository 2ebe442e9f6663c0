//! The city database on PostgreSQL, with real processes: two city
//! processes share one database; a ward moves from one to the other while
//! it writes, and one of them is killed mid-stream. Each change is applied
//! exactly once, in order, whichever process a ward reaches; a change made
//! through one process reaches a ward connected to the other; and the
//! database crashing (`pg_ctl stop -m immediate`), or losing power with its
//! data directory on the power-cut file system (`common/powercut`), loses
//! nothing a ward was told was applied.

mod common;

use common::pg::{Postgres, Setup};
use common::powercut::Disk;
use common::*;
use wardsync::cli::relay::Relay;
use wardsync::generate::amend;
use wardsync::model::{Record, WardCode};
use wardsync::proto::pb;

async fn put(c: &mut pb::ward_api_client::WardApiClient<tonic::transport::Channel>, r: &Record) -> u64 {
    c.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap().into_inner().seq
}

fn database(pg: &Postgres) -> String {
    format!("[database]\nurl = \"{}\"\n", pg.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_city_processes_on_one_database_apply_each_change_once() {
    let pg = Postgres::start();
    let env = Env::new();
    let mut city_a = City::start_named(&env, "city-a", &database(&pg));
    let city_b = City::start_named(&env, "city-b", &database(&pg));
    // Ward 00082 reaches the city through a relay that can move it; 00145 talks to B.
    let relay = Relay::start(city_a.addr).await.unwrap();
    let moving = Ward::start(&env, "00082", relay.addr());
    let staying = Ward::start(&env, "00145", city_b.addr);
    let (mut m, mut s) = (moving.client().await, staying.client().await);
    let (code_m, code_s) = (WardCode::parse("00082").unwrap(), WardCode::parse("00145").unwrap());

    for i in 0..60 {
        put(&mut m, &rec(&code_m, i)).await;
    }
    drained(&mut m).await;
    // Moved to the other process mid-stream, still writing.
    relay.retarget(city_b.addr);
    for i in 60..120 {
        put(&mut m, &rec(&code_m, i)).await;
    }
    drained(&mut m).await;
    // Back to A, which is then killed while the ward writes: it goes on through B.
    relay.retarget(city_a.addr);
    for i in 120..150 {
        put(&mut m, &rec(&code_m, i)).await;
    }
    city_a.node.kill();
    relay.retarget(city_b.addr);
    for i in 150..200 {
        put(&mut m, &amend(&rec(&code_m, i - 100), 1)).await;
    }
    drained(&mut m).await;

    // A change made through B reaches the ward connected to A (restarted).
    for i in 0..20 {
        put(&mut s, &rec(&code_s, i)).await;
    }
    drained(&mut s).await;
    city_a.node.start();
    relay.retarget(city_a.addr);
    let mut office_b = city_b.client().await;
    let target = amend(&rec(&code_m, 7), 9);
    office_b.edit(env.office().edit(target.clone(), &Default::default())).await.unwrap();
    wardsync::cli::wait::until(
        DEADLINE,
        "the office's edit to reach the ward through the other process",
        || {
            let (mut m, key) = (m.clone(), target.key().unwrap());
            let want = target.clone();
            async move {
                let got = m.get(pb::GetRequest { key: Some((&key).into()) }).await?.into_inner();
                Ok(got.record.and_then(|r| wardsync::proto::record_from_pb(Some(r)).ok()) == Some(want))
            }
        },
    )
    .await
    .unwrap();

    // Every change once, in order; the city equals the wards; both processes agree.
    let mut office_a = city_a.client().await;
    for (ward, client) in [(&moving, &mut m), (&staying, &mut s)] {
        drained(client).await;
        let st = status(client).await.unwrap();
        for office in [&mut office_a, &mut office_b] {
            let log = city_log(office).await;
            assert_each_seq_once(&log, &ward.code, st.last_seq);
            assert_same_records(client, office, &ward.code).await;
        }
    }
    assert_eq!(city_log(&mut office_a).await, city_log(&mut office_b).await, "one log, read from either");
}

/// How the database goes down under load.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// `pg_ctl stop -m immediate`: the server's memory is lost, the
    /// machine's page cache is not.
    Crash,
    /// The same, on a data directory that then loses everything not synced
    /// (the power-cut file system of tests/power_loss.rs), with the server
    /// set as a DBA tuning it for speed might: `synchronous_commit = off`.
    PowerCut,
}

/// Ward 00082 writes 400 changes while its city's database goes down
/// (`fault`) `crashes` times mid-replication; returns what is wrong with
/// the city's log afterwards, if anything.
async fn crash_under_load(mutation: Option<&str>, crashes: usize, fault: Fault) -> Result<(), String> {
    let mut env = Env::new();
    let disk = (fault == Fault::PowerCut).then(|| Disk::mount(&env.path().join("db")).unwrap());
    let pg = match &disk {
        Some(disk) => Postgres::start_with(Setup {
            data: Some(disk.path().join("data")),
            settings: &["synchronous_commit=off"],
            ..Setup::default()
        }),
        None => Postgres::start(),
    };
    if let Some(m) = mutation {
        env.node_env.push(("WARDSYNC_MUTATION".into(), m.into()));
    }
    let city = City::start_named(&env, "city", &database(&pg));
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    let code = WardCode::parse("00082").unwrap();
    // The ward deletes what the city acknowledged: anything acknowledged
    // and not committed would be missing from the log for good.
    let writer = {
        let (mut c, code) = (c.clone(), code.clone());
        tokio::spawn(async move {
            for i in 0..400 {
                put(&mut c, &rec(&code, i)).await;
            }
        })
    };
    let mut dropped = 0;
    for n in 1..=crashes as u64 {
        wardsync::cli::wait::until(DEADLINE, "replication under way", || {
            let mut c = c.clone();
            async move { Ok(status(&mut c).await?.acked_seq > 100 * n) }
        })
        .await
        .map_err(|e| format!("replication stalled after {} of the faults: {e}", n - 1))?;
        pg.crash();
        if let Some(disk) = &disk {
            dropped += disk.cut().bytes;
        }
        pg.start_again();
    }
    assert!(disk.is_none() || dropped > 0, "the cuts found nothing unsynced to drop: they tested nothing");
    writer.await.unwrap();
    drained(&mut c).await;
    let mut office = city.client().await;
    let log = city_log(&mut office).await;
    let seqs: Vec<u64> =
        log.iter().filter(|l| l.ward == "00082").map(|l| l.change.as_ref().unwrap().seq).collect();
    if seqs != (1..=400).collect::<Vec<_>>() {
        let missing = (1..=400).filter(|s| !seqs.contains(s)).count();
        return Err(format!("{} entries in the log, {missing} acknowledged changes missing", seqs.len()));
    }
    assert_same_records(&mut c, &mut office, "00082").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_loses_nothing_a_ward_was_told_was_applied() {
    crash_under_load(None, 3, Fault::Crash).await.unwrap();
}

/// Power cuts of the database's machine, its server set to commit
/// asynchronously: the city commits its own writes synchronously anyway,
/// so nothing a ward was told was applied is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_of_the_database_loses_nothing_a_ward_was_told_was_applied() {
    crash_under_load(None, 3, Fault::PowerCut).await.unwrap();
    let caught = caught_within(3, Fault::PowerCut).await;
    assert!(caught.is_some(), "a city that commits asynchronously lost nothing: this test cannot see it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crash_test_catches_a_city_that_acknowledges_before_the_wal_is_on_disk() {
    let caught = caught_within(3, Fault::Crash).await;
    assert!(caught.is_some(), "with synchronous_commit off, a crash loses acknowledged changes");
}

/// What the crash test finds wrong with a city that commits asynchronously
/// (`pg-async-commit`), in the first of `runs` runs that finds anything. A
/// crash loses only the commits of the last moments that were not yet
/// written out, and a run whose crashes all fell between them loses
/// nothing: on a busy machine, one in a few.
async fn caught_within(runs: usize, fault: Fault) -> Option<String> {
    for run in 1..=runs {
        match crash_under_load(Some("pg-async-commit"), 3, fault).await {
            Err(caught) => {
                eprintln!("caught in run {run}: {caught}");
                return Some(caught);
            }
            Ok(()) => eprintln!("run {run}: the crashes fell where nothing was lost yet"),
        }
    }
    None
}

/// The ```sql blocks of the README's section on PostgreSQL, with each
/// psql variable (`\set name 'value'`, used as `:'name'`) replaced by the
/// value `values` gives for it.
fn readme_queries(values: &std::collections::HashMap<&str, String>) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("## The city database on PostgreSQL").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    let mut out = Vec::new();
    for block in section.split("```sql\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let mut sql = String::new();
        for line in block.lines() {
            if let Some(var) = line.strip_prefix("\\set ") {
                let name = var.split_whitespace().next().unwrap();
                assert!(values.contains_key(name), "a value for :'{name}'");
                continue;
            }
            sql.push_str(line);
            sql.push('\n');
        }
        for (name, value) in values {
            sql = sql.replace(&format!(":'{name}'"), &format!("'{}'", value.replace('\'', "''")));
        }
        out.push(sql);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_office_reads_the_city_in_sql_with_a_role_that_writes_nothing() {
    use wardsync::model::Body;
    let pg = Postgres::start();
    let env = Env::new();
    let city = City::start_named(&env, "city", &database(&pg));
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    let code = WardCode::parse("00082").unwrap();
    let records: Vec<Record> = (0..300).map(|i| rec(&code, i)).collect();
    for r in &records {
        put(&mut c, r).await;
    }
    let citizen = records.iter().find_map(|r| match &r.body {
        Body::Citizen(p) if !p.household_id.is_empty() => Some(p.clone()),
        _ => None,
    });
    let citizen = citizen.expect("a citizen in a household");
    let amended = records.iter().find(|r| r.key_id() == citizen.personal_id).unwrap();
    put(&mut c, &amend(amended, 1)).await;
    drained(&mut c).await;
    let owner = records
        .iter()
        .find_map(|r| match &r.body {
            Body::Land(l) => l.owners.first().cloned(),
            _ => None,
        })
        .expect("a parcel with an owner");

    let (admin, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    admin.batch_execute("CREATE ROLE lan LOGIN IN ROLE wardsync_office").await.unwrap();
    let url = pg.url().replace("postgres@", "lan@");
    let (office, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);

    let name: String =
        wardsync::model::fold(&citizen.full_name).split(' ').take(2).collect::<Vec<_>>().join(" ");
    let values = std::collections::HashMap::from([
        ("household", citizen.household_id.clone()),
        ("owner", owner.clone()),
        ("name", name.clone()),
        ("id", citizen.personal_id.clone()),
    ]);
    let queries = readme_queries(&values);
    assert_eq!(queries.len(), 5, "the README's five examples");
    let mut answers = Vec::new();
    for q in &queries {
        let rows = office.query(q.as_str(), &[]).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        assert!(!rows.is_empty(), "{q}: no rows");
        answers.push(rows);
    }
    let total: i64 = answers[0].iter().map(|r| r.get::<_, i64>(2)).sum();
    assert_eq!(total, 300, "every record counted once");
    assert!(answers[1].iter().any(|r| r.get::<_, &str>(0) == citizen.personal_id), "the household");
    assert!(answers[3].iter().all(|r| wardsync::model::fold(r.get::<_, &str>(1)).starts_with(&name)));
    assert_eq!(answers[4].len(), 2, "created, then amended");
    let fields: Vec<String> = answers[4][1].get(4);
    assert!(!fields.is_empty() && !fields.contains(&"personal_id".to_string()), "{fields:?}");
    // The values written, as JSON the office can query: each field's new value.
    let written: serde_json::Value = answers[4][1].get(5);
    let sent = wardsync::model::flatten(&amend(amended, 1));
    for f in &fields {
        let value: serde_json::Value = serde_json::from_str(&sent[f]).unwrap();
        assert_eq!(written[f], value, "{f} in {written}");
    }
    assert_eq!(written["_exists"], serde_json::json!(true), "{written}");
    assert_eq!(written.as_object().unwrap().len(), fields.len() + 1, "{written}");

    // Reading is all it may do.
    for denied in [
        "DELETE FROM citizens",
        "UPDATE land_parcels SET area_m2 = 0",
        "INSERT INTO ward_state (ward, last_applied_seq, records, quarantined) VALUES ('00001', 0, 0, 0)",
        "SELECT * FROM record_states",
    ] {
        let e = office.batch_execute(denied).await.unwrap_err();
        let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(message.contains("permission denied"), "{denied}: {e:?}");
    }
}
