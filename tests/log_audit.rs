//! `wardsync audit verify` against a real city, real wards and a real
//! PostgreSQL: a clean log verifies (and leaves a checkpoint); then a DBA
//! edits a log row's columns, rewrites a log entry with other values (its
//! columns made to match), edits a record's state and a typed row,
//! deletes a log row, rewrites an office correction and deletes the
//! office's signed request of another; the audit names each of them and
//! exits non-zero. On
//! the embedded store, a stopped city's store verifies, and not against another CA.

mod common;

use common::pg::Postgres;
use common::*;
use wardsync::generate::amend;
use wardsync::model::{Versioned, WardCode};
use wardsync::proto::pb;
use wardsync::store::LoggedChange;

fn audit(env: &Env, args: &[&str]) -> std::process::Output {
    let certs = env.certs();
    let mut all = vec!["audit", "verify", "--tls-dir", certs.to_str().unwrap()];
    all.extend_from_slice(args);
    wardsync(&all)
}

/// The `field_values` column of a log entry, as the city writes it.
fn column_values(entry: &LoggedChange) -> serde_json::Value {
    let values = serde_json::to_value(entry.change.values()).unwrap();
    values
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v.as_str().unwrap()).unwrap_or(v.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A city keeping its database on `pg`; who may edit: `editors`.
fn on_postgres(env: &Env, pg: &Postgres) -> City {
    City::start_configured(env, &pg_config(pg, "\"office\", \"ops\""))
}

/// The configuration of a city on `pg` whose office editors are `editors`.
fn pg_config(pg: &Postgres, editors: &str) -> String {
    let roles: Vec<String> =
        editors.split(", ").map(|name| format!("{name} = [\"office-editor\"]")).collect();
    format!("[database]\nurl = \"{}\"\n[roles]\n{}\n", pg.url(), roles.join("\n"))
}

/// Two wards write, one record twice, and the office edits one.
async fn write_some(city: &City, env: &Env) -> (Ward, Ward) {
    let (w1, w2) = (Ward::start(env, "00082", city.addr), Ward::start(env, "00145", city.addr));
    let (mut c1, mut c2) = (w1.client().await, w2.client().await);
    put_range(&mut c1, "00082", 0..12).await;
    put_range(&mut c2, "00145", 0..8).await;
    let code = WardCode::parse("00082").unwrap();
    c1.put(pb::PutRequest { record: Some((&amend(&rec(&code, 3), 1)).into()) }).await.unwrap();
    drained(&mut c1).await;
    drained(&mut c2).await;
    let mut office = city.client().await;
    let edited = amend(&rec(&WardCode::parse("00145").unwrap(), 5), 2);
    office.edit(env.office().edit(edited.clone(), &Default::default())).await.unwrap();
    (w1, w2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_names_every_row_a_dba_changed_on_postgresql() {
    let pg = Postgres::start();
    let env = Env::new();
    wardsync::auth::DevCa::open_or_create(&env.certs()).unwrap().issue("ops", &["ops"]).unwrap();
    let city = on_postgres(&env, &pg);
    let (_w1, _w2) = write_some(&city, &env).await;
    let config = env.path().join("city.toml");
    let checkpoint = env.path().join("audit.checkpoint");
    let (config, checkpoint) = (config.to_str().unwrap(), checkpoint.to_str().unwrap());

    let clean = audit(&env, &["--config", config, "--checkpoint", checkpoint]);
    assert!(clean.status.success(), "a clean log verifies: {}{}", stdout(&clean), stderr(&clean));
    assert!(
        stderr(&clean).contains("21 signed by their wards, 1 by the office's 1 signed requests, 0 unsigned"),
        "{}",
        stderr(&clean)
    );
    assert!(std::path::Path::new(checkpoint).exists(), "a clean run leaves its checkpoint");

    // The office corrects another record after the clean run.
    let mut office = city.client().await;
    let second = amend(&rec(&WardCode::parse("00145").unwrap(), 6), 3);
    let second_cursor =
        office.edit(env.office().edit(second, &Default::default())).await.unwrap().into_inner().cursor as i64;
    // And ops, an office editor only while the configuration said so.
    let ops_files = wardsync::auth::TlsFiles::in_dir(&env.certs(), "ops");
    let ops_signer = wardsync::cli::office::OfficeSigner::load(Some(&ops_files)).unwrap();
    let third = amend(&rec(&WardCode::parse("00145").unwrap(), 6), 4);
    let ops_cursor = city
        .client_as("ops")
        .await
        .edit(ops_signer.edit(third, &Default::default()))
        .await
        .unwrap()
        .into_inner()
        .cursor;
    city.rewrite_config(&env, &pg_config(&pg, "\"office\""));

    let (db, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let cursor = |ward: &'static str, seq: i64| {
        let db = &db;
        async move {
            db.query_one("SELECT cursor FROM change_log WHERE ward = $1 AND seq = $2", &[&ward, &seq])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    // 1. Who submitted a change, changed in its column only.
    let who = cursor("00082", 2).await;
    db.execute("UPDATE change_log SET identity = 'ward 00145' WHERE cursor = $1", &[&who]).await.unwrap();
    // 2. A logged change rewritten whole: another phone, its columns to match.
    let rewritten: i64 = db
        .query_one(
            "SELECT cursor FROM change_log WHERE ward = '00082' AND kind = 'citizen' AND seq > 2 ORDER BY seq LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let row = db.query_one("SELECT entry FROM change_log WHERE cursor = $1", &[&rewritten]).await.unwrap();
    let mut entry: LoggedChange = postcard::from_bytes(row.get(0)).unwrap();
    if let wardsync::model::Op::Put(r) = &mut entry.change.op
        && let wardsync::model::Body::Citizen(c) = &mut r.body
    {
        c.phone = "0900000000".into();
    }
    db.execute(
        "UPDATE change_log SET entry = $2, field_values = $3 WHERE cursor = $1",
        &[&rewritten, &postcard::to_stdvec(&entry).unwrap(), &column_values(&entry)],
    )
    .await
    .unwrap();
    // 3. A record's state: a write's value changed.
    let row = db
        .query_one(
            "SELECT id, state FROM record_states WHERE kind = 'citizen' AND ward = '00145' LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let key = wardsync::model::RecordKey::new(wardsync::model::Kind::Citizen, row.get(0)).unwrap();
    let row = db
        .query_one("SELECT state FROM record_states WHERE kind = 'citizen' AND id = $1", &[&key.id()])
        .await
        .unwrap();
    let mut state: Versioned = postcard::from_bytes(row.get(0)).unwrap();
    let head = state.fields.values_mut().find(|h| h[0].value.starts_with('"')).unwrap();
    head[0].value = "\"edited\"".into();
    db.execute(
        "UPDATE record_states SET state = $2 WHERE kind = 'citizen' AND id = $1",
        &[&key.id(), &postcard::to_stdvec(&state).unwrap()],
    )
    .await
    .unwrap();
    // 4. A typed row: the office's table says another name.
    let typed: String = db
        .query_one(
            "SELECT personal_id FROM citizens WHERE ward = '00145' AND personal_id <> $1 LIMIT 1",
            &[&key.id()],
        )
        .await
        .unwrap()
        .get(0);
    db.execute("UPDATE citizens SET full_name = 'Someone Else' WHERE personal_id = $1", &[&typed])
        .await
        .unwrap();
    // 5. A log row deleted.
    let deleted = cursor("00145", 7).await;
    db.execute("DELETE FROM change_log WHERE cursor = $1", &[&deleted]).await.unwrap();
    // 6. The office's correction made to say another name (its columns to match).
    let office_cursor: i64 =
        db.query_one("SELECT min(cursor) FROM change_log WHERE ward = 'city'", &[]).await.unwrap().get(0);
    let row =
        db.query_one("SELECT entry FROM change_log WHERE cursor = $1", &[&office_cursor]).await.unwrap();
    let mut entry: LoggedChange = postcard::from_bytes(row.get(0)).unwrap();
    if let wardsync::model::Op::Put(r) = &mut entry.change.op {
        match &mut r.body {
            wardsync::model::Body::Citizen(c) => c.phone = "0900000009".into(),
            wardsync::model::Body::Business(b) => b.address = "1 Phố Khác".into(),
            wardsync::model::Body::Land(l) => l.address = "1 Phố Khác".into(),
        }
    }
    db.execute(
        "UPDATE change_log SET entry = $2, field_values = $3 WHERE cursor = $1",
        &[&office_cursor, &postcard::to_stdvec(&entry).unwrap(), &column_values(&entry)],
    )
    .await
    .unwrap();
    // 7. The office's second request deleted: its change now stands on no one's word.
    db.execute("DELETE FROM office_requests WHERE cursor = $1", &[&second_cursor]).await.unwrap();
    // 8. An unsigned request inserted to cover it, as a city without TLS
    // would have kept one before the first signed request: named by its
    // first change, which is no change the city wrote.
    let asked = wardsync::model::office_request::Asked::Discard {
        ward: wardsync::model::WardCode::parse("00145").unwrap(),
        seq: 1,
        reason: "cover".into(),
    };
    let cover = wardsync::store::SignedRequest {
        cursors: vec![1, second_cursor as u64],
        ..wardsync::store::SignedRequest::unsigned(asked, "office", 0)
    };
    db.execute(
        "INSERT INTO office_requests (cursor, entry) VALUES (1, $1)",
        &[&postcard::to_stdvec(&cover).unwrap()],
    )
    .await
    .unwrap();

    let found = audit(&env, &["--config", config, "--checkpoint", checkpoint]);
    let out = stdout(&found);
    assert_eq!(found.status.code(), Some(2), "rows not as written: status 2\n{out}{}", stderr(&found));
    let expect = [
        format!("change_log cursor {who}: identity not what its entry says"),
        format!("log entry {rewritten}: not what ward 00082 signed as its change"),
        format!("record state {key}: its state is not what its log entries make"),
        format!("citizens personal_id {typed}: its columns are not the record the city shows"),
        format!("log before entry {}: cursors {deleted} to {deleted} are missing", deleted + 1),
        "ward 00145's change 7: signed and applied, but in neither the log nor the quarantine".to_string(),
        format!("log entry {office_cursor}: is not what the city derives from the office's request"),
        format!("log entry {second_cursor}: names an office request no longer kept"),
        "office request at log entry 1: names log entry 1, which is not a change the city wrote".to_string(),
        format!("office request at log entry {ops_cursor}: ops is not an office editor"),
        "is not the log verified before".to_string(),
        "its running hash is not the one the city kept as it wrote".to_string(),
    ];
    for e in &expect {
        assert!(out.contains(e.as_str()), "the audit names {e:?}:\n{out}");
    }
    assert!(stderr(&found).contains("rows are not what the city wrote"), "{}", stderr(&found));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_citys_embedded_store_verifies_and_a_foreign_ca_does_not() {
    let env = Env::new();
    let city = City::start(&env);
    let (_w1, _w2) = write_some(&city, &env).await;
    // (The embedded store opens in one process at a time: the city stopped.)
    let mut city = city;
    assert!(city.node.stop(), "the city stops cleanly");
    let copy = env.path().join("city");
    let clean = audit(&env, &["--data-dir", copy.to_str().unwrap()]);
    assert!(clean.status.success(), "{}{}", stdout(&clean), stderr(&clean));
    assert!(
        stderr(&clean).contains("21 signed by their wards, 1 by the office's 1 signed requests"),
        "{}",
        stderr(&clean)
    );

    // Keys the operator's CA did not issue prove nothing.
    let other = Env::new();
    let foreign = wardsync(&[
        "audit",
        "verify",
        "--data-dir",
        copy.to_str().unwrap(),
        "--ca",
        other.certs().join("ca.pem").to_str().unwrap(),
    ]);
    assert_eq!(foreign.status.code(), Some(2), "{}{}", stdout(&foreign), stderr(&foreign));
    assert!(stdout(&foreign).contains("not issued by the CA"), "{}", stdout(&foreign));
}

/// 00145's signed batches rewritten as a city without TLS would keep them
/// (all-zero key, no signature), their hashes and links made to match the
/// log as it now stands.
async fn unsign_00145(db: &tokio_postgres::Client) {
    use wardsync::model::signed::{self, GENESIS, KeyId};
    let rows = db
        .query("SELECT entry FROM change_log WHERE ward = '00145' AND seq > 0 ORDER BY seq", &[])
        .await
        .unwrap();
    let hashes: Vec<[u8; 32]> = rows
        .iter()
        .map(|r| {
            signed::content_hash(
                &postcard::from_bytes::<LoggedChange>(r.get(0)).unwrap().change,
                &KeyId::default(),
            )
        })
        .collect();
    let ward = WardCode::parse("00145").unwrap();
    let links = signed::links(&ward, 1, &GENESIS, &hashes);
    db.execute("DELETE FROM signed_batches WHERE ward = '00145'", &[]).await.unwrap();
    db.execute(
        "INSERT INTO signed_batches VALUES ('00145', $1, 1, $2, $3, $4, '')",
        &[&(hashes.len() as i64), &&GENESIS[..], &hashes.concat(), &&[0u8; 32][..]],
    )
    .await
    .unwrap();
    let last = links.last().unwrap();
    db.execute(
        "UPDATE ward_state SET chain_link = $1, chain_key = $2 WHERE ward = '00145'",
        &[&&last[..], &&[0u8; 32][..]],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_is_clean_while_the_city_writes_and_not_fooled_by_a_dba_who_covers_tracks() {
    let pg = Postgres::start();
    let env = Env::new();
    let city = on_postgres(&env, &pg);
    let (w1, _w2) = write_some(&city, &env).await;
    let config = env.path().join("city.toml");
    let config = config.to_str().unwrap();

    let (db, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let log_end =
        || async { db.query_one("SELECT cursor FROM city_clock", &[]).await.unwrap().get::<_, i64>(0) };

    // Audited while a ward goes on writing: one view of the database.
    let mut c1 = w1.client().await;
    let writer = tokio::spawn(async move {
        put_range(&mut c1, "00082", 100..400).await;
        c1
    });
    // Audits during which the log grew ran while the city wrote.
    let mut during_writes = 0;
    while !writer.is_finished() {
        let before = log_end().await;
        let during = audit(&env, &["--config", config]);
        assert!(
            during.status.success(),
            "clean while the city writes: {}{}",
            stdout(&during),
            stderr(&during)
        );
        during_writes += usize::from(log_end().await > before);
    }
    assert!(during_writes >= 1, "no audit ran while the city wrote");
    let mut c1 = writer.await.unwrap();
    drained(&mut c1).await;

    // 1. A record hidden: its state emptied, its typed row deleted (the
    // typed table then agrees with the state; the log does not).
    let hidden: String = db
        .query_one("SELECT personal_id FROM citizens WHERE ward = '00082' ORDER BY personal_id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    db.execute(
        "UPDATE record_states SET state = $2, shown = NULL, ward = NULL WHERE kind = 'citizen' AND id = $1",
        &[&hidden, &postcard::to_stdvec(&Versioned::default()).unwrap()],
    )
    .await
    .unwrap();
    db.execute("DELETE FROM citizens WHERE personal_id = $1", &[&hidden]).await.unwrap();
    // 2. A ward's batches made unsigned, consistently.
    unsign_00145(&db).await;
    // 3. A forged entry before the first cursor, and rows that cannot be read.
    db.execute("INSERT INTO change_log SELECT 0, ward, identity, applied_at, kind, id, 0, fields, field_values, deleted, entry, sent_context FROM change_log WHERE cursor = 1", &[])
        .await
        .unwrap();
    db.execute("UPDATE change_log SET fields = ARRAY[NULL]::text[] WHERE cursor = 5", &[]).await.unwrap();
    db.execute("UPDATE change_log SET applied_at = 'infinity' WHERE cursor = 6", &[]).await.unwrap();
    // 4. The running hash taken away (an audit never computes it again).
    db.execute("UPDATE city_clock SET running = NULL", &[]).await.unwrap();

    let found = audit(&env, &["--config", config]);
    let out = stdout(&found);
    assert_eq!(found.status.code(), Some(2), "named, not a crash: {out}{}", stderr(&found));
    for e in [
        format!("record state citizen/{hidden}: its state is not what its log entries make"),
        "signed batch of ward 00145 ending at 8: not signed".to_string(),
        "change_log cursor 0: cursor, seq not what its entry says".to_string(),
        "change_log cursor 5: column fields cannot be read".to_string(),
        "change_log cursor 6: column applied_at cannot be read".to_string(),
        "city_clock: holds no running hash".to_string(),
    ] {
        assert!(out.contains(e.as_str()), "the audit names {e:?}:\n{out}");
    }
    let running: Option<Vec<u8>> = db.query_one("SELECT running FROM city_clock", &[]).await.unwrap().get(0);
    assert_eq!(running, None, "the audit wrote nothing");

    // Every trace of a ward's evidence deleted: its changes are not taken
    // for changes from before signed chains.
    db.execute("DELETE FROM signed_batches WHERE ward = '00145'", &[]).await.unwrap();
    let out = stdout(&audit(&env, &["--config", config]));
    assert!(
        out.contains("ward_state of ward 00145: its chain is known up to 8, and it has no signed batches"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_deleted_with_every_trace_is_caught_by_the_receipts_a_ward_holds() {
    let pg = Postgres::start();
    let env = Env::new();
    let mut city = on_postgres(&env, &pg);
    let (mut w1, mut w2) = write_some(&city, &env).await;
    // 00082's last change: a new record, alone in its batch.
    let mut c1 = w1.client().await;
    drained(&mut c1).await;
    let code = WardCode::parse("00082").unwrap();
    let last = rec(&code, 50);
    let seq = c1.put(pb::PutRequest { record: Some((&last).into()) }).await.unwrap().into_inner().seq;
    drained(&mut c1).await;
    // What the ward holds, kept by ops away from the city's database.
    let witness = env.path().join("ward-00082.json");
    let held = wardsync(&["status", "--ward-api", &format!("http://{}", w1.api), "--json"]);
    assert!(held.status.success(), "{}", stderr(&held));
    std::fs::write(&witness, &held.stdout).unwrap();
    assert!(
        stdout(&held).contains("\"receipts\":[\""),
        "the ward keeps the city's receipts: {}",
        stdout(&held)
    );
    for node in [&mut w1.node, &mut w2.node, &mut city.node] {
        assert!(node.stop());
    }

    // A DBA deletes that change and every trace of it, consistently.
    let (db, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let tail: i64 = db.query_one("SELECT max(cursor) FROM change_log", &[]).await.unwrap().get(0);
    let row = db.query_one("SELECT kind, id, seq FROM change_log WHERE cursor = $1", &[&tail]).await.unwrap();
    let (kind, id, tail_seq): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (tail_seq as u64, id.as_str()),
        (seq, last.key_id().as_str()),
        "the last entry is 00082's new record"
    );
    let previous: Vec<u8> = db
        .query_one("SELECT previous FROM signed_batches WHERE ward = '00082' AND last_seq = $1", &[&tail_seq])
        .await
        .unwrap()
        .get(0);
    let table = match kind.as_str() {
        "citizen" => "citizens WHERE personal_id",
        "business" => "businesses WHERE enterprise_code",
        _ => "land_parcels WHERE parcel_id",
    };
    let mut running = wardsync::model::signed::GENESIS;
    for r in
        db.query("SELECT entry FROM change_log WHERE cursor < $1 ORDER BY cursor", &[&tail]).await.unwrap()
    {
        running = postcard::from_bytes::<LoggedChange>(r.get(0)).unwrap().running_after(&running);
    }
    db.batch_execute("BEGIN").await.unwrap();
    db.execute("DELETE FROM change_log WHERE cursor = $1", &[&tail]).await.unwrap();
    db.execute("DELETE FROM downstream WHERE cursor = $1", &[&tail]).await.unwrap();
    db.execute("DELETE FROM record_states WHERE kind = $1 AND id = $2", &[&kind, &id]).await.unwrap();
    db.execute(&format!("DELETE FROM {table} = $1"), &[&id]).await.unwrap();
    db.execute("DELETE FROM signed_batches WHERE ward = '00082' AND last_seq = $1", &[&tail_seq])
        .await
        .unwrap();
    db.execute(
        "UPDATE ward_state SET last_applied_seq = $1, chain_link = $2 WHERE ward = '00082'",
        &[&(tail_seq - 1), &previous],
    )
    .await
    .unwrap();
    db.execute("UPDATE city_clock SET cursor = $1, running = $2", &[&(tail - 1), &&running[..]])
        .await
        .unwrap();
    db.batch_execute("COMMIT").await.unwrap();

    // The database alone cannot tell (README, "A log that can be verified").
    let config = env.path().join("city.toml");
    let config = config.to_str().unwrap();
    let alone = audit(&env, &["--config", config]);
    assert!(alone.status.success(), "{}{}", stdout(&alone), stderr(&alone));
    // What the ward holds can.
    let found = audit(&env, &["--config", config, "--witness", witness.to_str().unwrap()]);
    let out = stdout(&found);
    assert_eq!(found.status.code(), Some(2), "{out}{}", stderr(&found));
    assert!(
        out.contains(&format!(
            "log end at cursor {}: the city signed to ward 00082 that its log reached cursor {tail}",
            tail - 1
        )),
        "{out}"
    );
    assert!(out.contains(&format!("the city acknowledged ward 00082's changes up to {seq}")), "{out}");
    // A witness altered by hand proves nothing, and says so.
    let mut status: serde_json::Value = serde_json::from_str(&stdout(&held)).unwrap();
    let receipt = status["receipts"][0].as_str().unwrap().to_string();
    let flipped = if &receipt[200..201] == "0" { "1" } else { "0" };
    status["receipts"] =
        serde_json::json!([format!("{}{flipped}{}", &receipt[..200], &receipt[201..]), "0a0b"]);
    std::fs::write(&witness, status.to_string()).unwrap();
    let out = stdout(&audit(&env, &["--config", config, "--witness", witness.to_str().unwrap()]));
    assert!(out.contains("its signature is not the city's (forged or altered)"), "{out}");
    assert!(out.contains("not a receipt of the city's"), "{out}");
}
