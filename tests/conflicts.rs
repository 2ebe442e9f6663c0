//! Conflicts end to end, with a real city, real wards and cut links: office
//! corrections against offline edits, a disputed land parcel resolved by the
//! office, a delete against a concurrent edit, and a residence transfer
//! followed by offline edits from both wards.

mod common;

use common::*;
use tonic::transport::Channel;
use wardsync::cli::client::{all_city_records, all_ward_records};
use wardsync::cli::relay::Relay;
use wardsync::cli::wait;
use wardsync::model::{Body, Kind, Record, RecordKey, WardCode};
use wardsync::proto::pb::{self, city_query_client::CityQueryClient, ward_api_client::WardApiClient};

type WardClient = WardApiClient<Channel>;
type CityClient = CityQueryClient<Channel>;

/// Runs the data office's command line against `city`; asserts it succeeds
/// and returns what it printed on stdout and stderr.
fn office_cli(env: &Env, city: &City, args: &[&str]) -> (String, String) {
    let certs = env.certs();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args(args)
        .args(["--city", &city.url(), "--tls-dir", certs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn first(code: &str, kind: Kind) -> Record {
    let code = WardCode::parse(code).unwrap();
    (0..).map(|i| rec(&code, i)).find(|r| r.kind() == kind).unwrap()
}

async fn put(c: &mut WardClient, r: &Record) {
    c.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap();
}

async fn city_get(q: &mut CityClient, key: &RecordKey) -> (Option<Record>, bool) {
    match q.get(pb::CityGetRequest { key: Some(key.into()), ..Default::default() }).await {
        Ok(r) => {
            let r = r.into_inner();
            (Some(wardsync::proto::record_from_pb(r.record).unwrap()), r.disputed)
        }
        Err(e) if e.code() == tonic::Code::NotFound => (None, false),
        Err(e) => panic!("{e}"),
    }
}

async fn office_edit(env: &Env, q: &mut CityClient, key: &RecordKey, edit: impl FnOnce(&mut Record)) {
    let mut r = city_get(q, key).await.0.expect("the record exists at the city");
    edit(&mut r);
    q.edit(env.office().edit(r.clone(), &Default::default())).await.unwrap();
}

async fn conflicts(q: &mut CityClient, key: &RecordKey) -> Vec<pb::ConflictInfo> {
    q.list_conflicts(pb::ConflictsRequest { key: Some(key.into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .conflicts
}

/// Waits until the ward's records and the city's copy of them are identical, and the backlog is empty.
async fn converged(w: &mut WardClient, q: &mut CityClient, code: &str) {
    wait::until(DEADLINE, "the ward and the city to converge", || {
        let (mut w, mut q) = (w.clone(), q.clone());
        async move {
            if status(&mut w).await?.backlog > 0 {
                return Ok(false);
            }
            for kind in Kind::ALL {
                if all_ward_records(&mut w, kind).await? != all_city_records(&mut q, kind, code).await? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    })
    .await
    .unwrap();
}

fn phone(r: &Record) -> String {
    match &r.body {
        Body::Citizen(c) => c.phone.clone(),
        _ => panic!("not a citizen"),
    }
}

fn set_phone(r: &mut Record, p: &str) {
    if let Body::Citizen(c) = &mut r.body {
        c.phone = p.into();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_office_correction_and_an_offline_edit_of_the_same_field_converge_with_the_conflict_recorded() {
    let env = Env::new();
    let city = City::start(&env);
    let relay = Relay::start(city.addr).await.unwrap();
    let ward = Ward::start(&env, "00082", relay.addr());
    let (mut w, mut q) = (ward.client().await, city.client().await);
    let mut r = first("00082", Kind::Citizen);
    let key = r.key().unwrap();
    put(&mut w, &r).await;
    drained(&mut w).await;

    relay.cut();
    set_phone(&mut r, "0911111111");
    put(&mut w, &r).await; // the ward's edit, queued
    office_edit(&env, &mut q, &key, |r| set_phone(r, "0922222222")).await; // later: the office's
    relay.heal();
    converged(&mut w, &mut q, "00082").await;

    let (at_city, disputed) = city_get(&mut q, &key).await;
    assert_eq!(phone(&at_city.unwrap()), "0922222222", "the later write wins (last-writer-wins)");
    assert!(!disputed, "phone numbers are not under the manual policy");
    let c = conflicts(&mut q, &key).await;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].field.as_str(), c[0].policy.as_str(), c[0].contenders.len()), ("phone", "lww", 2));
    let writers: Vec<&str> = c[0].contenders.iter().map(|x| x.writer.as_str()).collect();
    assert_eq!(writers, ["city", "00082"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disputed_land_parcel_is_resolved_by_the_office_and_the_resolution_reaches_the_ward() {
    let env = Env::new();
    let mut city = City::start(&env);
    let relay = Relay::start(city.addr).await.unwrap();
    let ward = Ward::start(&env, "00082", relay.addr());
    let (mut w, mut q) = (ward.client().await, city.client().await);
    let mut parcel = first("00082", Kind::Land);
    let key = parcel.key().unwrap();
    put(&mut w, &parcel).await;
    drained(&mut w).await;

    relay.cut();
    let set_owners = |r: &mut Record, owners: &[&str]| {
        if let Body::Land(l) = &mut r.body {
            l.owners = owners.iter().map(|s| s.to_string()).collect();
        }
    };
    set_owners(&mut parcel, &["001085012345"]);
    put(&mut w, &parcel).await;
    office_edit(&env, &mut q, &key, |r| set_owners(r, &["001185004001"])).await;
    relay.heal();
    converged(&mut w, &mut q, "00082").await;

    let (_, disputed) = city_get(&mut q, &key).await;
    assert!(disputed, "ownership is under the manual policy");
    let c = conflicts(&mut q, &key).await;
    assert_eq!((c[0].field.as_str(), c[0].policy.as_str(), c[0].contenders.len()), ("owners", "manual", 2));
    let ward_value = c[0].contenders.iter().position(|x| x.writer == "00082").unwrap() as u32 + 1;

    // The office keeps the ward's value; the resolution flows back to the ward.
    let e = q
        .resolve_conflict(pb::ResolveRequest {
            key: Some((&key).into()),
            field: "owners".into(),
            choose: 9,
            value: String::new(),
            signed: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // The same through the command line the data office uses.
    let cli = |args: &[&str]| office_cli(&env, &city, args).0;
    let shown = cli(&["conflicts", "show", "--kind", "land", "--key", key.id()]);
    assert!(shown.contains("disputed: awaiting resolution"), "{shown}");
    let v: serde_json::Value =
        serde_json::from_str(&cli(&["conflicts", "show", "--kind", "land", "--key", key.id(), "--json"]))
            .unwrap();
    assert_eq!(
        (v["disputed"].as_bool(), v["conflicts"][0]["field"].as_str()),
        (Some(true), Some("owners")),
        "{v}"
    );
    let contender = format!("{ward_value}. [\"001085012345\"] by 00082");
    assert!(shown.contains("field owners (manual") && shown.contains(&contender), "{shown}");
    let listed = cli(&["conflicts", "list", "--ward", "00082"]);
    assert!(listed.contains(&format!("land/{} field owners", key.id())), "with its kind: {listed}");
    let listed: serde_json::Value = serde_json::from_str(&cli(&["conflicts", "list", "--json"])).unwrap();
    assert_eq!(listed["record"], format!("land/{}", key.id()), "{listed}");
    assert_eq!(listed["field"], "owners", "{listed}");
    assert_eq!(listed["contenders"].as_array().unwrap().len(), 2, "{listed}");
    let choice = ward_value.to_string();
    let done = cli(&[
        "conflicts",
        "resolve",
        "--kind",
        "land",
        "--key",
        key.id(),
        "--field",
        "owners",
        "--choose",
        &choice,
    ]);
    assert!(done.contains("resolved"), "{done}");
    converged(&mut w, &mut q, "00082").await;
    let (at_city, disputed) = city_get(&mut q, &key).await;
    assert!(!disputed);
    assert!(conflicts(&mut q, &key).await.is_empty());
    let Body::Land(l) = at_city.unwrap().body else { unreachable!() };
    assert_eq!(l.owners, ["001085012345"]);
    let at_ward = w.get(pb::GetRequest { key: Some((&key).into()) }).await.unwrap().into_inner().record;
    assert_eq!(wardsync::proto::record_from_pb(at_ward).unwrap().body, Body::Land(l));

    // The office's correction and settlement are what it signed, derived again
    // from the log by the audit.
    assert!(city.node.stop(), "the city stops cleanly");
    let audit = env.audit_stopped_city();
    assert!(audit.status.success(), "{}{}", stdout(&audit), stderr(&audit));
    assert!(stderr(&audit).contains("by the office's 2 signed requests"), "{}", stderr(&audit));
}

/// A city, and ward 00082 (reached through a relay) with one business of
/// its own replicated: the city, the relay, the ward, their clients and the
/// business's key.
async fn a_replicated_business(env: &Env) -> (City, Relay, Ward, WardClient, CityClient, RecordKey) {
    let city = City::start(env);
    let relay = Relay::start(city.addr).await.unwrap();
    let ward = Ward::start(env, "00082", relay.addr());
    let (mut w, q) = (ward.client().await, city.client().await);
    let r = first("00082", Kind::Business);
    put(&mut w, &r).await;
    drained(&mut w).await;
    (city, relay, ward, w, q, r.key().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_against_a_concurrent_edit_is_a_recorded_conflict_and_both_sides_agree() {
    let env = Env::new();
    let (city, relay, _ward, mut w, mut q, key) = a_replicated_business(&env).await;

    relay.cut();
    w.delete(pb::DeleteRequest { key: Some((&key).into()) }).await.unwrap();
    // The office corrects the address from the command line.
    let mut corrected = city_get(&mut q, &key).await.0.unwrap();
    if let Body::Business(b) = &mut corrected.body {
        b.address = "1 Tràng Tiền".into();
    }
    let json = serde_json::to_string(&corrected).unwrap();
    office_cli(&env, &city, &["edit", "--record", &json, "--force"]);
    relay.heal();
    converged(&mut w, &mut q, "00082").await;

    let c = conflicts(&mut q, &key).await;
    assert!(c.iter().any(|c| c.field == "_exists"), "{c:?}");
    // The office's edit came later: the record lives, with the correction, on both sides.
    let (at_city, _) = city_get(&mut q, &key).await;
    let Body::Business(b) = at_city.expect("kept by the later edit").body else { unreachable!() };
    assert_eq!(b.address, "1 Tràng Tiền");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_after_a_concurrent_edit_deletes_the_record_on_both_sides_and_replication_goes_on() {
    let env = Env::new();
    let (_city, relay, _ward, mut w, mut q, key) = a_replicated_business(&env).await;

    // The office corrects the record while the ward is cut off; the ward,
    // not knowing, deletes it afterwards: the later delete wins, and the
    // ward is told to fetch the record whole (its write raced the edit).
    relay.cut();
    office_edit(&env, &mut q, &key, |r| {
        if let Body::Business(b) = &mut r.body {
            b.address = "1 Tràng Tiền".into();
        }
    })
    .await;
    w.delete(pb::DeleteRequest { key: Some((&key).into()) }).await.unwrap();
    relay.heal();
    converged(&mut w, &mut q, "00082").await;
    assert_eq!(city_get(&mut q, &key).await.0, None, "deleted at the city");
    assert!(conflicts(&mut q, &key).await.iter().any(|c| c.field == "_exists"));
    // The ward's downstream goes on: a later office correction of another
    // record of its reaches it.
    let other = first("00082", Kind::Citizen);
    put(&mut w, &other).await;
    drained(&mut w).await;
    office_edit(&env, &mut q, &other.key().unwrap(), |r| set_phone(r, "0912345678")).await;
    converged(&mut w, &mut q, "00082").await;
    let at_ward = w.get(pb::GetRequest { key: Some((&other.key().unwrap()).into()) }).await.unwrap();
    let at_ward = wardsync::proto::record_from_pb(at_ward.into_inner().record).unwrap();
    assert_eq!(phone(&at_ward), "0912345678", "the office's later correction reached the ward");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_residence_transfer_offline_edits_from_both_wards_become_conflicts_not_overwrites() {
    let env = Env::new();
    let city = City::start(&env);
    let (relay_a, relay_b) = (Relay::start(city.addr).await.unwrap(), Relay::start(city.addr).await.unwrap());
    let a = Ward::start(&env, "00082", relay_a.addr());
    let b = Ward::start(&env, "00145", relay_b.addr());
    let (mut ca, mut cb, mut q) = (a.client().await, b.client().await, city.client().await);
    let citizen = first("00082", Kind::Citizen);
    let key = citizen.key().unwrap();
    put(&mut ca, &citizen).await;
    drained(&mut ca).await;

    // Ward A goes offline; ward B registers the citizen's new permanent residence.
    relay_a.cut();
    let mut moved = citizen.clone();
    moved.ward = WardCode::parse("00145").unwrap();
    if let Body::Citizen(c) = &mut moved.body {
        c.permanent_residence.commune_code = "00145".into();
        c.permanent_residence.address = "5 Ngọc Lâm".into();
    }
    let reply = cb.transfer(pb::PutRequest { record: Some((&moved).into()) }).await.unwrap();
    assert!(reply.into_inner().seq > 0);
    drained(&mut cb).await;
    let (at_city, _) = city_get(&mut q, &key).await;
    assert_eq!(at_city.unwrap().ward.as_str(), "00145", "ownership moved to B");

    // Both wards now edit the phone while cut off.
    relay_b.cut();
    let mut a_edit = citizen.clone();
    set_phone(&mut a_edit, "0933333333");
    put(&mut ca, &a_edit).await;
    let mut b_edit = moved.clone();
    set_phone(&mut b_edit, "0944444444");
    put(&mut cb, &b_edit).await;
    relay_a.heal();
    relay_b.heal();
    converged(&mut ca, &mut q, "00082").await;
    converged(&mut cb, &mut q, "00145").await;

    let c = conflicts(&mut q, &key).await;
    let phone_conflict = c.iter().find(|c| c.field == "phone").expect("recorded, not silently overwritten");
    assert_eq!(phone_conflict.contenders.len(), 2);
    let (at_city, _) = city_get(&mut q, &key).await;
    let at_city = at_city.unwrap();
    assert_eq!(at_city.ward.as_str(), "00145", "A's offline edit does not take the citizen back");
    assert_eq!(phone(&at_city), "0944444444", "the later edit wins");
    assert!(
        all_ward_records(&mut ca, Kind::Citizen).await.unwrap().iter().all(|r| r.key().unwrap() != key),
        "A no longer lists it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_office_moves_to_another_ward_reaches_it_whole() {
    let env = Env::new();
    let city = City::start(&env);
    let a = Ward::start(&env, "00082", city.addr);
    let b = Ward::start(&env, "00145", city.addr);
    let (mut ca, mut cb, mut q) = (a.client().await, b.client().await, city.client().await);
    let citizen = first("00082", Kind::Citizen);
    let key = citizen.key().unwrap();
    put(&mut ca, &citizen).await;
    drained(&mut ca).await;

    office_edit(&env, &mut q, &key, |r| {
        r.ward = WardCode::parse("00145").unwrap();
        if let Body::Citizen(c) = &mut r.body {
            c.permanent_residence.commune_code = "00145".into();
        }
    })
    .await;
    converged(&mut cb, &mut q, "00145").await;
    converged(&mut ca, &mut q, "00082").await;
    let at_b = all_ward_records(&mut cb, Kind::Citizen).await.unwrap();
    assert_eq!(at_b.len(), 1, "B holds the whole record");
    assert_eq!(at_b[0].ward.as_str(), "00145");
    assert_eq!(phone(&at_b[0]), phone(&citizen), "fields the office did not change came along");
    assert!(all_ward_records(&mut ca, Kind::Citizen).await.unwrap().is_empty(), "A no longer lists it");
    // Knowing it has moved, A may no longer write it.
    let e = ca.put(pb::PutRequest { record: Some((&citizen).into()) }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("owned by ward 00145"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_from_a_stale_copy_races_the_wards_newer_write_instead_of_reverting_it() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let (mut w, mut q) = (ward.client().await, city.client().await);
    let r = first("00082", Kind::Business);
    let key = r.key().unwrap();
    put(&mut w, &r).await;
    drained(&mut w).await;
    let cli = |args: &[&str]| office_cli(&env, &city, args);
    // The office reads the record, and the version it read.
    let (json, said) = cli(&["get", "--kind", "business", "--key", key.id()]);
    let version =
        said.lines().find_map(|l| l.strip_prefix("version: ")).expect("get prints the version").to_string();
    // The ward moves the business meanwhile.
    let mut moved = r.clone();
    if let Body::Business(b) = &mut moved.body {
        b.address = "5 Lý Thái Tổ".into();
    }
    put(&mut w, &moved).await;
    drained(&mut w).await;
    // The office corrects the name on the copy it read (with the old address).
    let mut corrected: Record = serde_json::from_str(json.trim()).unwrap();
    if let Body::Business(b) = &mut corrected.body {
        b.name = "Công ty Sửa Tên".into();
    }
    let json = serde_json::to_string(&corrected).unwrap();
    cli(&["edit", "--record", &json, "--based-on", &version]);
    converged(&mut w, &mut q, "00082").await;
    let c = conflicts(&mut q, &key).await;
    assert!(
        c.iter().any(|c| c.field == "address"),
        "the old address and the ward's new one are a conflict: {c:?}"
    );
    let (at_city, _) = city_get(&mut q, &key).await;
    let Body::Business(b) = at_city.unwrap().body else { unreachable!() };
    assert_eq!(b.name, "Công ty Sửa Tên");
}

/// A ward whose write a delete raced is told to fetch the record whole:
/// it may read the state of a record it wrote to, deleted since under
/// another owner (else it would keep showing the record as it last
/// wrote it); a ward that never wrote to it may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_may_read_the_state_of_a_deleted_record_it_wrote_to_and_no_other() {
    let env = Env::new();
    wardsync::auth::DevCa::open_or_create(&env.certs())
        .unwrap()
        .issue_ward(&WardCode::parse("00004").unwrap())
        .unwrap();
    let city = City::start(&env);
    let a = Ward::start(&env, "00082", city.addr);
    let b = Ward::start(&env, "00145", city.addr);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let citizen = first("00082", Kind::Citizen);
    let key = citizen.key().unwrap();
    put(&mut ca, &citizen).await;
    drained(&mut ca).await;
    let mut moved = citizen.clone();
    moved.ward = WardCode::parse("00145").unwrap();
    if let Body::Citizen(c) = &mut moved.body {
        c.permanent_residence.commune_code = "00145".into();
    }
    cb.transfer(pb::PutRequest { record: Some((&moved).into()) }).await.unwrap();
    drained(&mut cb).await;
    wait::until(DEADLINE, "the transfer to reach ward 00145's copy", || {
        let mut cb = cb.clone();
        let key = key.clone();
        async move { Ok(cb.get(pb::GetRequest { key: Some((&key).into()) }).await.is_ok()) }
    })
    .await
    .unwrap();
    cb.delete(pb::DeleteRequest { key: Some((&key).into()) }).await.unwrap();
    drained(&mut cb).await;

    let ask = pb::CityGetRequest { key: Some((&key).into()), ..Default::default() };
    let state = city.client_as("ward-00082").await.get_state(ask.clone()).await.unwrap().into_inner();
    assert!(state.record.is_none() && state.state.is_some(), "its creator reads the deleted record's state");
    let never = city.client_as("ward-00004").await.get_state(ask).await.unwrap_err();
    assert_eq!(never.code(), tonic::Code::NotFound, "{never:?}");
}
