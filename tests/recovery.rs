//! Recovery with real processes, without manual steps: a ward whose disk
//! was replaced restores itself from the city before it takes writes; a
//! ward or a city put back to a copy taken while it ran (`wardsync
//! backup`, `pg_dump`) is brought level again from the other side; a
//! record lost on either side is found by comparing digests and repaired.
//! After each, the ward's records and the city's copy are the same and
//! every sequence number the city applied is used once.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use wardsync::cli::client::city_client;
use wardsync::cli::relay::Relay;
use wardsync::model::{Body, Record, RecordKey, WardCode};
use wardsync::proto::pb;
use wardsync::store::{Batch, Engine, SledEngine};

fn code() -> WardCode {
    WardCode::parse("00082").unwrap()
}

/// Record `i` of ward 00082 with another phone number.
fn rephoned(i: u32, phone: &str) -> Record {
    rephoned_as(&code(), i, phone)
}

/// Record `i` of ward `ward`, corrected by the office.
fn rephoned_of(ward: &str, i: u32) -> Record {
    rephoned_as(&WardCode::parse(ward).unwrap(), i, "0913000000")
}

fn rephoned_as(ward: &WardCode, i: u32, phone: &str) -> Record {
    let mut r = rec(ward, i);
    if let Body::Citizen(c) = &mut r.body {
        c.phone = phone.into();
    } else if let Body::Business(b) = &mut r.body {
        b.name = format!("{} {phone}", b.name);
    } else if let Body::Land(l) = &mut r.body {
        l.address = format!("{} {phone}", l.address);
    }
    r
}

async fn ward_get(
    c: &mut pb::ward_api_client::WardApiClient<tonic::transport::Channel>,
    r: &Record,
) -> Option<Record> {
    match c.get(pb::GetRequest { key: Some((&r.key().unwrap()).into()) }).await {
        Ok(g) => Some(wardsync::proto::record_from_pb(g.into_inner().record).unwrap()),
        Err(s) if s.code() == tonic::Code::NotFound => None,
        Err(s) => panic!("{s}"),
    }
}

/// The office corrects `edited` at the city; waits until the ward `c` has it.
async fn correct(
    env: &Env,
    office: &mut pb::city_query_client::CityQueryClient<tonic::transport::Channel>,
    c: &pb::ward_api_client::WardApiClient<tonic::transport::Channel>,
    edited: &Record,
) {
    office.edit(env.office().edit(edited.clone(), &Default::default())).await.unwrap();
    wardsync::cli::wait::until(DEADLINE, "the correction to reach the ward", || {
        let (mut c, edited) = (c.clone(), edited.clone());
        async move { Ok(ward_get(&mut c, &edited).await.as_ref() == Some(&edited)) }
    })
    .await
    .unwrap();
}

/// The sequence numbers of `ward`'s changes in the city's log, which must
/// each appear once, in order.
async fn applied_once(
    city: &mut pb::city_query_client::CityQueryClient<tonic::transport::Channel>,
    ward: &str,
) -> Vec<u64> {
    let seqs: Vec<u64> = city_log(city)
        .await
        .iter()
        .filter(|l| l.ward == ward)
        .map(|l| l.change.as_ref().unwrap().seq)
        .filter(|s| *s > 0)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "ward {ward}: each sequence once, in order: {seqs:?}");
    seqs
}

/// The engine key of `r`'s `prefix` entry (`s`: state, `r`: view), as both stores lay them out.
fn store_key(prefix: u8, r: &Record) -> Vec<u8> {
    let k: RecordKey = r.key().unwrap();
    [&[prefix, k.kind().tag()][..], k.id().as_bytes()].concat()
}

/// Opens the sled store in `dir` (its node stopped), once its lock is free.
fn open_store(dir: &Path) -> SledEngine {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        match SledEngine::open(dir, 16) {
            Ok(e) => return e,
            Err(e) if std::time::Instant::now() > deadline => panic!("cannot open {}: {e}", dir.display()),
            Err(_) => std::thread::yield_now(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_on_a_new_disk_gets_back_its_records_cursor_and_numbering_before_taking_writes() {
    let env = Env::new();
    let city = City::start(&env);
    let mut ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 0..30).await;
    drained(&mut c).await;
    // A data-office correction reaches the ward downstream.
    let mut office = city.client().await;
    let edited = rephoned(3, "0912000003");
    correct(&env, &mut office, &c, &edited).await;
    let before = status(&mut c).await.unwrap();
    assert!(before.downstream_cursor > 0);

    // The disk dies; the agent starts on a new, empty one.
    assert!(ward.node.stop());
    std::fs::remove_dir_all(env.path().join("ward-00082")).unwrap();
    ward.node.start();
    let mut c = ward.client().await;
    let s = status(&mut c).await.unwrap();
    assert_eq!(s.records, 30, "every record it owns, before the first write");
    assert_eq!(s.last_seq, 30, "numbering continues after the city's last applied change");
    assert!(s.downstream_cursor >= before.downstream_cursor, "the downstream cursor comes back too");
    assert_eq!(ward_get(&mut c, &edited).await.as_ref(), Some(&edited), "with the office's correction");
    assert!(ward.node.log().contains("restored this ward's records from the city"));

    let next = c.put(pb::PutRequest { record: Some((&rec(&code(), 30)).into()) }).await.unwrap().into_inner();
    assert_eq!(next.seq, 31);
    drained(&mut c).await;
    let mut q = city.client().await;
    assert_each_seq_once(&city_log(&mut q).await, "00082", 31);
    assert_eq!(assert_same_records(&mut c, &mut q, "00082").await, 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_city_waits_for_the_city_before_taking_writes() {
    let env = Env::new();
    let city = City::start(&env);
    let relay = Relay::start(city.addr).await.unwrap();
    let mut ward = Ward::start(&env, "00082", relay.addr());
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 0..10).await;
    drained(&mut c).await;
    assert!(ward.node.stop());
    std::fs::remove_dir_all(env.path().join("ward-00082")).unwrap();

    // On a new disk, told to restore, while the city is out of reach.
    relay.cut();
    let ward = Ward::start_flagged(&env, "00082", relay.addr(), "", "", &["--restore-from-city"]);
    wardsync::cli::wait::until(DEADLINE, "the agent to wait for the city", || async {
        Ok(ward.node.log().contains("waiting for the city to restore this ward's records"))
    })
    .await
    .unwrap();
    let url = format!("http://{}", ward.api);
    let early = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        wardsync::cli::client::ward_client(&url).await?.status(pb::StatusRequest {}).await?;
        anyhow::Ok(())
    })
    .await;
    assert!(!matches!(early, Ok(Ok(()))), "no local API before the records are back");
    relay.heal();
    let mut c = ward.client().await;
    let s = status(&mut c).await.unwrap();
    assert_eq!((s.records, s.last_seq), (10, 10));
    let mut q = city.client().await;
    assert_eq!(assert_same_records(&mut c, &mut q, "00082").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_put_back_to_a_copy_taken_while_it_ran_gets_back_what_it_wrote_since() {
    let env = Env::new();
    let city = City::start(&env);
    let mut ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 0..20).await;
    // The copy is taken while writes go on.
    let writing = {
        let mut c = c.clone();
        tokio::spawn(async move { put_range(&mut c, "00082", 20..40).await })
    };
    let copy = env.path().join("ward-copy");
    let taken = c.backup(pb::BackupRequest { to: copy.display().to_string() }).await.unwrap().into_inner();
    writing.await.unwrap();
    assert!(taken.keys > 0 && copy.join("backup.json").exists(), "{taken:?}");
    let again = c.backup(pb::BackupRequest { to: copy.display().to_string() }).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::InvalidArgument, "{again}");
    put_range(&mut c, "00082", 40..50).await;
    drained(&mut c).await;

    assert!(ward.node.stop());
    let since = wardsync::clock::now_ms();
    restore_dir(&copy, &env.path().join("ward-00082"));
    ward.node.start();
    let mut c = ward.client().await;
    in_sync_since(&mut c, since).await;
    let mut q = city.client().await;
    assert_eq!(assert_same_records(&mut c, &mut q, "00082").await, 50);
    let next = c.put(pb::PutRequest { record: Some((&rec(&code(), 50)).into()) }).await.unwrap().into_inner();
    drained(&mut c).await;
    let seqs = applied_once(&mut q, "00082").await;
    assert_eq!(seqs.last(), Some(&next.seq), "the new write is applied, after everything before it");
    assert_eq!(assert_same_records(&mut c, &mut q, "00082").await, 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_put_back_to_a_copy_taken_while_it_ran_is_refilled_by_its_wards() {
    let env = Env::new();
    let ca = wardsync::auth::DevCa::open_or_create(&env.certs()).unwrap();
    ca.issue("backup", &["backup"]).unwrap();
    let mut city = City::start(&env);
    let (busy, quiet) = (Ward::start(&env, "00082", city.addr), Ward::start(&env, "00145", city.addr));
    let (mut b, mut q) = (busy.client().await, quiet.client().await);
    put_range(&mut q, "00145", 0..20).await;
    drained(&mut q).await;
    // The backup identity's copy, taken while ward 00082 writes.
    let writing = {
        let mut b = b.clone();
        tokio::spawn(async move { put_range(&mut b, "00082", 0..60).await })
    };
    let mut backup = city_client(&city.url(), Some(&env.certs()), "backup", "city").await.unwrap();
    let taken = backup.backup(pb::BackupRequest { to: "mid-run".into() }).await.unwrap().into_inner();
    writing.await.unwrap();
    let mut office = city.client().await;
    let refused = office.backup(pb::BackupRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "the office may not take copies");
    // One copy per five minutes: every write waits while one is made.
    let again = backup.backup(pb::BackupRequest { to: "again".into() }).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::ResourceExhausted, "{again:?}");
    assert!(again.message().contains("one every 5 minutes"), "{again:?}");
    // After the copy: office corrections, on a record of each ward, which
    // reach the wards; ward 00145 writes nothing more.
    let edits = [(&mut b, rephoned_of("00082", 5)), (&mut q, rephoned_of("00145", 3))];
    for (c, edited) in edits {
        correct(&env, &mut office, c, &edited).await;
    }
    put_range(&mut b, "00082", 60..70).await;
    drained(&mut b).await;

    assert!(city.node.stop());
    let since = wardsync::clock::now_ms();
    restore_dir(Path::new(&taken.path), &env.path().join("city"));
    city.node.start();
    let mut office = city.client().await;
    for (code, c, n) in [("00082", &mut b, 70), ("00145", &mut q, 20)] {
        in_sync_since(c, since).await;
        assert_eq!(assert_same_records(c, &mut office, code).await, n, "ward {code}");
        applied_once(&mut office, code).await;
    }
    // The corrections the city lost came back from the wards that held them.
    for edited in [rephoned_of("00082", 5), rephoned_of("00145", 3)] {
        let got = office
            .get(pb::CityGetRequest { key: Some((&edited.key().unwrap()).into()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(wardsync::proto::record_from_pb(got.into_inner().record).unwrap(), edited);
    }
    let wards = city_wards(&mut office).await.unwrap();
    let lost = |code: &str| wards.iter().find(|w| w.ward == code).unwrap().lost_changes;
    assert!(lost("00082") >= 10, "the city reports what it lost: {}", lost("00082"));
    assert_eq!(lost("00145"), 0, "nothing 00145 sent was lost, only what it was sent");
    let log = city_log(&mut office).await;
    assert!(log.iter().any(|l| l.ward == "city"), "the office's corrections are the office's again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_on_postgresql_restored_from_pg_dump_is_refilled_by_its_ward() {
    let pg = common::pg::Postgres::start();
    let env = Env::new();
    let database = format!("[database]\nurl = \"{}\"\n", pg.url());
    let mut city = City::start_configured(&env, &database);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    let writing = {
        let mut c = c.clone();
        tokio::spawn(async move { put_range(&mut c, "00082", 0..40).await })
    };
    let dump = pg.dump("wardsync", "mid-run.dump");
    writing.await.unwrap();
    put_range(&mut c, "00082", 40..50).await;
    drained(&mut c).await;

    assert!(city.node.stop());
    let since = wardsync::clock::now_ms();
    pg.restore("wardsync", &dump);
    city.node.start();
    in_sync_since(&mut c, since).await;
    let mut q = city.client().await;
    assert_eq!(assert_same_records(&mut c, &mut q, "00082").await, 50);
    applied_once(&mut q, "00082").await;
    // The log of a city put back to an older copy, and refilled, verifies:
    // the changes it lost are the loss it recorded, not rows deleted.
    let audit = wardsync(&["audit", "verify", "--config", env.path().join("city.toml").to_str().unwrap()]);
    assert!(audit.status.success(), "{}{}", stdout(&audit), stderr(&audit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_lost_on_either_side_is_found_by_its_digest_and_repaired() {
    let env = Env::new();
    let mut city = City::start(&env);
    let mut ward = Ward::start_with(&env, "00082", city.addr, "", "verify_every_ms = 0");
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 0..20).await;
    drained(&mut c).await;
    let older = env.path().join("city-copy");
    assert!(city.node.stop());
    copy_dir(&env.path().join("city"), &older);
    city.node.start();
    let changed = rephoned(7, "0912000007");
    c.put(pb::PutRequest { record: Some((&changed).into()) }).await.unwrap();
    drained(&mut c).await;

    // The ward loses record 4 whole; the city loses the last write to record 7.
    assert!(ward.node.stop());
    let lost = rec(&code(), 4);
    let engine = open_store(&env.path().join("ward-00082"));
    let mut batch = Batch::default();
    batch.remove(store_key(b's', &lost));
    batch.remove(store_key(b'r', &lost));
    engine.apply(batch).unwrap();
    engine.flush().await.unwrap();
    drop(engine);
    assert!(city.node.stop());
    let old_state = open_store(&older).get(&store_key(b's', &changed)).unwrap().unwrap();
    let engine = open_store(&env.path().join("city"));
    let mut batch = Batch::default();
    batch.insert(store_key(b's', &changed), old_state);
    engine.apply(batch).unwrap();
    engine.flush().await.unwrap();
    drop(engine);
    city.node.start();
    ward.node.start();
    let mut c = ward.client().await;
    assert_eq!(ward_get(&mut c, &lost).await, None, "the ward lost it");

    // On demand, from the command line, as an operator would.
    let api = format!("http://{}", ward.api);
    let out = Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args(["verify", "--ward-api", &api, "--ward", "00082"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("2 differed") && text.contains("in sync"), "{text}");
    assert_eq!(ward_get(&mut c, &lost).await.as_ref(), Some(&lost), "back from the city's copy");
    let mut q = city.client().await;
    assert_eq!(assert_same_records(&mut c, &mut q, "00082").await, 20);
    let s = status(&mut c).await.unwrap();
    assert!(s.verify_in_sync && s.verify_differing == 2, "{s:?}");
    let shown = wardsync::cli::verify::status_line(&s, wardsync::clock::now_ms());
    assert!(shown.starts_with("in sync with the city, verified"), "{shown}");
    let v = c.verify(pb::VerifyRequest {}).await.unwrap().into_inner();
    assert!(v.in_sync && v.differing == 0, "nothing left to repair: {v:?}");

    // The wrong agent is refused, with what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args(["verify", "--ward-api", &api, "--ward", "00145"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("serves ward 00082"));
}

/// Upgrade: a ward holding the city's acknowledgement from before receipts
/// were signed (an HMAC tag its city can no longer check) gets a signed
/// receipt for the same sequence at its next connection, with nothing
/// written meanwhile: what it holds proves the acknowledgement again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_from_before_signed_receipts_is_replaced_at_the_next_connection() {
    use wardsync::store::{Batch, Engine, SledEngine};
    let env = Env::new();
    let city = City::start(&env);
    let mut ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 0..3).await;
    drained(&mut c).await;
    assert!(ward.node.stop(), "the ward stops cleanly");
    // Its store as an older build left it: the ack of change 3 with an HMAC tag.
    let data = env.path().join("ward-00082");
    let engine = SledEngine::open(&data, 8).unwrap();
    let mut batch = Batch::default();
    batch.insert(b"m:ack_receipt".to_vec(), [&3u64.to_be_bytes()[..], &[0xab; 32]].concat());
    engine.apply(batch).unwrap();
    engine.flush().await.unwrap();
    drop(engine);
    ward.node.start();
    let c = ward.client().await;
    wardsync::cli::wait::until(DEADLINE, "a signed receipt for the acknowledgement it holds", || {
        let mut c = c.clone();
        async move {
            let held = status(&mut c).await?.ack_receipt;
            let parsed = wardsync::city::receipts::Receipt::parse(&held);
            Ok(parsed
                .is_some_and(|(r, _)| matches!(r.said, wardsync::city::receipts::Said::Ack { seq: 3, .. })))
        }
    })
    .await
    .unwrap();
}
