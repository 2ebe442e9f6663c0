//! Interconnected procedures across wards: ward 00082 registers the
//! marriage of its resident and a resident of ward 00145; both records show
//! it at the city and in 00145's agent, 00082 keeps no copy of the other
//! ward's citizen; a registrar's checks refuse what they must; a
//! registration that needs another ward's citizen needs the city; and
//! registrations made concurrently in two wards become a conflict.

mod common;

use common::*;
use tonic::Code;
use wardsync::cli::relay::Relay;
use wardsync::cli::wait;
use wardsync::model::{Body, Citizen, EventKind, MaritalStatus, Record, RecordKey, Sex, WardCode};
use wardsync::proto::pb;

/// The `n`-th generated citizen of `ward` of `sex` born in `years`, made
/// single with no events.
fn resident(ward: &str, n: usize, sex: Sex, years: std::ops::Range<i32>) -> Record {
    use chrono::Datelike;
    let code = WardCode::parse(ward).unwrap();
    let mut r = (0..4000)
        .map(|i| rec(&code, i))
        .filter(|r| matches!(&r.body, Body::Citizen(c) if c.sex == sex && years.contains(&c.date_of_birth.year())))
        .nth(n)
        .unwrap();
    if let Body::Citizen(c) = &mut r.body {
        c.marital_status = MaritalStatus::Single;
        c.events.clear();
    }
    r
}

/// Ward 00082's man and ward 00145's woman, adults, single, at the city:
/// a marriage across wards, its parties' ward agents running.
struct Couple {
    wards: (Ward, Ward),
    ca: pb::ward_api_client::WardApiClient<tonic::transport::Channel>,
    cb: pb::ward_api_client::WardApiClient<tonic::transport::Channel>,
    man: Record,
    woman: Record,
}

/// The `n`-th [`Couple`] of the generated residents.
async fn couple(env: &Env, city: &City, n: usize) -> Couple {
    let wards = (Ward::start(env, "00082", city.addr), Ward::start(env, "00145", city.addr));
    let (mut ca, mut cb) = (wards.0.client().await, wards.1.client().await);
    let adults = 1940..2000;
    let (man, woman) =
        (resident("00082", n, Sex::Male, adults.clone()), resident("00145", n, Sex::Female, adults));
    ca.put(pb::PutRequest { record: Some((&man).into()) }).await.unwrap();
    cb.put(pb::PutRequest { record: Some((&woman).into()) }).await.unwrap();
    drained(&mut ca).await;
    drained(&mut cb).await;
    Couple { wards, ca, cb, man, woman }
}

fn citizen(r: &Record) -> &Citizen {
    match &r.body {
        Body::Citizen(c) => c,
        _ => unreachable!(),
    }
}

fn register(kind: &str, persons: &[&Record], date: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        kind: kind.into(),
        persons: persons.iter().map(|r| citizen(r).personal_id.clone()).collect(),
        date: date.into(),
        reference: "123/2026".into(),
        ..Default::default()
    }
}

fn key(r: &Record) -> Option<pb::RecordKey> {
    Some((&r.key().unwrap()).into())
}

/// Waits until the city's copy of `r` satisfies `ok`.
async fn at_city(city: &City, r: &Record, what: &str, ok: impl Fn(&Citizen) -> bool) {
    let q = city.client().await;
    let k = key(r);
    wait::until(DEADLINE, what, || {
        let (mut q, k) = (q.clone(), k.clone());
        let ok = &ok;
        async move {
            let got = q.get(pb::CityGetRequest { key: k, ..Default::default() }).await?.into_inner().record;
            let got = wardsync::proto::record_from_pb(got)?;
            Ok(matches!(&got.body, Body::Citizen(c) if ok(c)))
        }
    })
    .await
    .unwrap();
}

/// Waits until ward agent `agent`'s own copy of `r` satisfies `ok`.
async fn at_ward(
    agent: &wardsync::proto::pb::ward_api_client::WardApiClient<tonic::transport::Channel>,
    r: &Record,
    what: &str,
    ok: impl Fn(&Citizen) -> bool,
) {
    let k = key(r);
    wait::until(DEADLINE, what, || {
        let (mut agent, k) = (agent.clone(), k.clone());
        let ok = &ok;
        async move {
            let got = agent.get(pb::GetRequest { key: k }).await?.into_inner().record;
            let got = wardsync::proto::record_from_pb(got)?;
            Ok(matches!(&got.body, Body::Citizen(c) if ok(c)))
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marriage_across_wards_reaches_both_records_and_the_other_wards_agent() {
    let env = Env::new();
    let city = City::start(&env);
    let relay_b = Relay::start(city.addr).await.unwrap();
    let a = Ward::start(&env, "00082", city.addr);
    let b = Ward::start(&env, "00145", relay_b.addr());
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let adults = 1940..2000;
    let (man, other_man) =
        (resident("00082", 0, Sex::Male, adults.clone()), resident("00082", 1, Sex::Male, adults.clone()));
    let (woman, minor) =
        (resident("00145", 0, Sex::Female, adults), resident("00145", 0, Sex::Female, 2012..2020));
    for r in [&man, &other_man] {
        ca.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap();
    }
    for r in [&woman, &minor] {
        cb.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap();
    }
    drained(&mut ca).await;
    drained(&mut cb).await;

    // Ward 00082 registers the marriage of its resident and 00145's.
    let reply = ca.register(register("marriage", &[&man, &woman], "2026-11-30")).await.unwrap().into_inner();
    assert_eq!(reply.seqs.len(), 2, "one change per spouse, written together");
    drained(&mut ca).await;
    let (man_id, woman_id) = (citizen(&man).personal_id.clone(), citizen(&woman).personal_id.clone());
    let married_to = |spouse: String| {
        move |c: &Citizen| {
            c.marital_status == MaritalStatus::Married
                && c.events.last().is_some_and(|e| {
                    e.kind == EventKind::Marriage
                        && e.registered_by == "00082"
                        && e.spouse_id == spouse
                        && e.reference == "123/2026"
                })
        }
    };
    at_city(
        &city,
        &woman,
        "the city's copy of 00145's resident to show the marriage",
        married_to(man_id.clone()),
    )
    .await;
    at_city(
        &city,
        &man,
        "the city's copy of 00082's resident to show the marriage",
        married_to(woman_id.clone()),
    )
    .await;
    // It reaches the owning ward's own copy; 00082 keeps none.
    at_ward(&cb, &woman, "ward 00145's copy to show the marriage", married_to(man_id.clone())).await;
    let e = ca.get(pb::GetRequest { key: key(&woman) }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "00082 keeps no copy of 00145's citizen");
    // The audit names the registering ward as the writer of 00145's record.
    let mut q = city.client().await;
    let audit = q.audit(pb::AuditRequest::default()).await.unwrap().into_inner().entries;
    let woman_key = RecordKey::new(wardsync::model::Kind::Citizen, &woman_id).unwrap().to_string();
    assert!(
        audit
            .iter()
            .any(|e| !e.denied && e.identity == "ward 00082" && e.action == format!("put {woman_key}")),
        "{audit:?}"
    );

    // A death likewise: registered by 00082 (where it occurred), for a
    // resident of 00145, it reaches 00145's copy.
    let third = resident("00145", 1, Sex::Female, 1940..2000);
    cb.put(pb::PutRequest { record: Some((&third).into()) }).await.unwrap();
    drained(&mut cb).await;
    ca.register(register("death", &[&third], "2026-11-29")).await.unwrap();
    drained(&mut ca).await;
    at_ward(&cb, &third, "ward 00145's copy to show the death", |c| {
        c.events.last().is_some_and(|e| e.kind == EventKind::Death && e.registered_by == "00082")
    })
    .await;
    let e = ca.register(register("death", &[&third], "2026-11-30")).await.unwrap_err();
    assert!(e.message().contains("deceased"), "{e:?}");

    // What a registrar refuses.
    let refused = |r: Result<tonic::Response<pb::RegisterReply>, tonic::Status>| r.unwrap_err();
    let e = refused(ca.register(register("marriage", &[&other_man, &woman], "2026-11-30")).await);
    assert!(e.code() == Code::FailedPrecondition && e.message().contains("is married"), "{e:?}");
    let e = refused(ca.register(register("marriage", &[&other_man, &minor], "2026-11-30")).await);
    assert!(e.message().contains("under the legal age of marriage"), "{e:?}");
    let e = refused(ca.register(register("marriage", &[&other_man, &woman], "2999-01-01")).await);
    assert!(e.message().contains("future"), "{e:?}");
    let e = refused(ca.register(register("wedding", &[&other_man, &woman], "2026-11-30")).await);
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Another ward's citizen needs the city: with it unreachable, nothing is
    // queued unchecked; this ward's own citizens can still be registered.
    relay_b.cut();
    let e = refused(cb.register(register("marriage", &[&minor, &other_man], "2026-11-30")).await);
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("needs the city-wide view"), "{e:?}");
    let ask = pb::CivilStatusRequest { personal_id: citizen(&man).personal_id.clone() };
    let e = cb.confirm_marital_status(ask).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "confirmation is answered by the city: {e:?}");

    // Concurrent: ward 00145, cut off, registers its resident's death while
    // ward 00082 registers her divorce at the city. Neither overwrites the
    // other: the data office gets a conflict.
    let reply = cb.register(register("death", &[&woman], "2026-11-30")).await.unwrap().into_inner();
    assert!(reply.notes.iter().any(|n| n.contains("not marked widowed")), "the clerk is told: {reply:?}");
    ca.register(register("divorce", &[&man, &woman], "2026-11-30")).await.unwrap();
    drained(&mut ca).await;
    relay_b.heal();
    drained(&mut cb).await;
    wait::until(DEADLINE, "a conflict on the woman's events", || {
        let (mut q, k) = (q.clone(), key(&woman));
        async move {
            let c =
                q.list_conflicts(pb::ConflictsRequest { key: k, ..Default::default() }).await?.into_inner();
            Ok(c.conflicts.iter().any(|c| c.field == "events" && c.contenders.len() == 2))
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_civil_status_report_finds_each_planted_error_and_confirmation_answers_from_any_ward() {
    let env = Env::new();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let city = City::start_configured(&env, &format!("metrics_listen = \"{metrics}\""));
    let a = Ward::start(&env, "00082", city.addr);
    let b = Ward::start(&env, "00145", city.addr);
    let mut ca = a.client().await;
    let file = env.path().join("citizens.jsonl");
    let out = wardsync(&["gen", "--ward", "00082", "--citizens", "1000", "--seed", "7", "--invalid", "0.1"]);
    assert!(out.status.success());
    std::fs::write(&file, &out.stdout).unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    let planted = |code: &str| -> u64 {
        said.split(&format!(" {code}"))
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (status_only, unknown, claimed, after_death) = (
        planted("marriage-without-status"),
        planted("spouse-unknown"),
        planted("married-without-marriage"),
        planted("event-after-death"),
    );
    assert!(status_only > 0 && unknown > 0 && claimed > 0 && after_death > 0, "each kind is planted: {said}");
    let api = format!("http://{}", a.api);
    let imported = wardsync(&["import", "--kind", "citizen", file.to_str().unwrap(), "--ward-api", &api]);
    // (Rows the ward's own checks refuse are rejected: exit 2, the rest written.)
    let rejected = String::from_utf8_lossy(&imported.stderr);
    assert_eq!(imported.status.code(), Some(2), "{rejected}");
    drained(&mut ca).await;

    let certs = env.certs();
    let report = wardsync(&["civil-report", "--city", &city.url(), "--tls-dir", certs.to_str().unwrap()]);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let text = String::from_utf8_lossy(&report.stdout).to_string();
    let found = |code: &str| text.lines().filter(|l| l.contains(&format!(" {code}: "))).count() as u64;
    assert_eq!(found("marriage-without-status"), status_only, "{text}");
    assert_eq!(found("married-without-marriage"), claimed, "{text}");
    assert_eq!(found("event-after-death"), after_death, "{text}");
    // A spouse id changed to one that exists nowhere: unknown on one side,
    // not named back on the other (unless the spouse's row was itself made invalid).
    assert!(found("spouse-unknown") >= unknown && found("spouse-not-reciprocal") >= 1, "{text}");
    assert!(text.contains("ward 00082: "), "{text}");
    let json =
        wardsync(&["civil-report", "--json", "--city", &city.url(), "--tls-dir", certs.to_str().unwrap()]);
    let problems: Vec<serde_json::Value> =
        stdout(&json).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let counted = problems.iter().filter(|p| p["problem"] == "married-without-marriage").count() as u64;
    assert_eq!(counted, claimed, "{problems:?}");
    // The same figures as metrics, by ward and kind.
    let want =
        r#"wardsync_civil_status_problems{ward="00082",problem="married-without-marriage"}"#.to_string();
    wait::until(DEADLINE, "the metrics to count the problems", || {
        let want = want.clone();
        async move { Ok(scrape(metrics).await.get(&want) == Some(&(claimed as f64))) }
    })
    .await
    .unwrap();

    // Marital-status confirmation of a 00082 citizen, from ward 00145's agent.
    let married: Record = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .find(|r| {
            matches!(&r.body, Body::Citizen(c) if c.marital_status == MaritalStatus::Married
                && wardsync::model::civil::current_spouse(c).is_some())
        })
        .unwrap();
    let id = citizen(&married).personal_id.clone();
    let confirm =
        wardsync(&["confirm-marital-status", &id, "--json", "--ward-api", &format!("http://{}", b.api)]);
    assert!(confirm.status.success(), "{}", String::from_utf8_lossy(&confirm.stderr));
    let v: serde_json::Value = serde_json::from_slice(&confirm.stdout).unwrap();
    assert_eq!(v["marital_status"], "married", "{v}");
    assert_eq!(v["ward"], "00082", "{v}");
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "marriage" && e["registered_by"] == "00082"),
        "{v}"
    );
    assert_eq!(v["disputed"], false);
    let nobody =
        wardsync(&["confirm-marital-status", "001099999999", "--ward-api", &format!("http://{}", b.api)]);
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("anywhere in the city"), "{nobody:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_death_widows_the_spouse_in_another_ward_who_may_marry_again() {
    let env = Env::new();
    let city = City::start(&env);
    let a = Ward::start(&env, "00082", city.addr);
    let b = Ward::start(&env, "00145", city.addr);
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let adults = 1940..1990;
    let (husband, suitor) =
        (resident("00082", 2, Sex::Male, adults.clone()), resident("00082", 3, Sex::Male, adults.clone()));
    let wife = resident("00145", 2, Sex::Female, adults);
    for r in [&husband, &suitor] {
        ca.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap();
    }
    cb.put(pb::PutRequest { record: Some((&wife).into()) }).await.unwrap();
    drained(&mut cb).await;
    ca.register(register("marriage", &[&husband, &wife], "2010-05-01")).await.unwrap();
    drained(&mut ca).await;
    at_city(&city, &wife, "the marriage at the city", |c| c.marital_status == MaritalStatus::Married).await;

    // Ward 00082 registers its resident's death: his wife, a citizen of
    // 00145, is widowed, at the city and at her own ward.
    ca.register(register("death", &[&husband], "2026-11-01")).await.unwrap();
    drained(&mut ca).await;
    let (husband_id, suitor_id) =
        (citizen(&husband).personal_id.clone(), citizen(&suitor).personal_id.clone());
    let widowed = |c: &Citizen| {
        c.marital_status == MaritalStatus::Widowed
            && wardsync::model::civil::current_spouse(c).is_none()
            && !wardsync::model::civil::is_dead(c)
    };
    at_city(&city, &wife, "the wife widowed at the city", widowed).await;
    at_ward(&cb, &wife, "the wife widowed at her ward", widowed).await;

    // She may marry again, registered at either ward.
    ca.register(register("marriage", &[&suitor, &wife], "2026-11-30")).await.unwrap();
    drained(&mut ca).await;
    at_city(&city, &wife, "her new marriage at the city", |c| {
        c.marital_status == MaritalStatus::Married
            && wardsync::model::civil::current_spouse(c) == Some(suitor_id.as_str())
    })
    .await;
    let mut q = city.client().await;
    let held = q.list_quarantine(pb::QuarantineRequest::default()).await.unwrap().into_inner().entries;
    assert!(held.is_empty(), "nothing quarantined: {held:#?}");
    let e = ca.register(register("divorce", &[&wife, &husband], "2026-11-30")).await.unwrap_err();
    assert!(e.message().contains("not married to each other"), "no divorce from the deceased: {e:?}");
    assert!(!husband_id.is_empty());
}

/// The citizens of a generated file, by personal id.
fn citizens_in(path: &std::path::Path) -> std::collections::BTreeMap<String, Citizen> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .filter_map(|r| match r.body {
            Body::Citizen(c) => Some((c.personal_id.clone(), c)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_never_turns_one_person_into_another_and_a_correction_is_registered() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let _ = ward.client().await; // (the commands below expect the agent up)
    let api = format!("http://{}", ward.api);
    let generated = |seed: &str, file: &str| {
        let path = env.path().join(file);
        let out = wardsync(&["gen", "--ward", "00082", "--citizens", "60", "--seed", seed]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::write(&path, &out.stdout).unwrap();
        path
    };
    let (first, second) = (generated("1", "first.jsonl"), generated("2", "second.jsonl"));
    let out = wardsync(&["import", "--kind", "citizen", first.to_str().unwrap(), "--ward-api", &api]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("new, 0 updated, 0 unchanged, 0 rejected"), "{}", stdout(&out));

    // Two files share personal ids for other people (as a legacy export
    // with reused ids would): one of them has died since the first import.
    let (was, now) = (citizens_in(&first), citizens_in(&second));
    let (id, dead) = was
        .iter()
        .find(|(id, c)| now.get(*id).is_some_and(|n| n.full_name != c.full_name) && c.events.len() == 1)
        .expect("the two seeds share personal ids of different people");
    let death = wardsync(&[
        "register",
        "death",
        "--person",
        id,
        "--date",
        "2026-01-05",
        "--place",
        "Bệnh viện Bạch Mai",
        "--ward-api",
        &api,
    ]);
    assert!(death.status.success(), "{}", stderr(&death));

    let out = wardsync(&["import", "--kind", "citizen", second.to_str().unwrap(), "--ward-api", &api]);
    assert_eq!(out.status.code(), Some(2), "rows were rejected: {}", stderr(&out));
    let shared =
        now.iter().filter(|(id, c)| was.get(*id).is_some_and(|w| w.full_name != c.full_name)).count();
    assert!(stdout(&out).contains(&format!("{shared} rejected")), "{}", stdout(&out));
    let rejects = std::fs::read_to_string(env.path().join("second.jsonl.rejects")).unwrap();
    assert!(rejects.contains(&format!("changes the full_name of {id} ({})", dead.full_name)), "{rejects}");
    assert!(rejects.contains("wardsync register correction"), "{rejects}");

    // The deceased is still who they were, and still deceased: a second
    // death is refused.
    let got = wardsync(&["get", "--kind", "citizen", "--key", id, "--ward-api", &api]);
    let shown: Record = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(citizen(&shown).full_name, dead.full_name);
    assert!(wardsync::model::civil::is_dead(citizen(&shown)));
    let again = wardsync(&[
        "register",
        "death",
        "--person",
        id,
        "--date",
        "2026-02-01",
        "--place",
        "Hà Nội",
        "--ward-api",
        &api,
    ]);
    assert!(
        !again.status.success() && stderr(&again).contains("registered as deceased"),
        "{}",
        stderr(&again)
    );

    // A correction typed into the record instead of registered: refused.
    let mut forged = dead.clone();
    forged.full_name = "Lê Văn Giả".into();
    forged.events = citizen(&shown).events.clone();
    forged.events.push(wardsync::model::CivilEvent {
        kind: EventKind::Correction,
        date: "2026-12-06".parse().unwrap(),
        registered_by: "00082".into(),
        spouse_id: String::new(),
        reference: "forged".into(),
        field: "full_name".into(),
        value: "Lê Văn Giả".into(),
    });
    let forged = Record { ward: WardCode::parse("00082").unwrap(), body: Body::Citizen(forged) };
    let out = wardsync(&["put", "--record", &serde_json::to_string(&forged).unwrap(), "--ward-api", &api]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("events are registered (wardsync register correction)"),
        "{}",
        stderr(&out)
    );

    // Deleted and written again as another: still refused, the death kept.
    let deleted = wardsync(&["delete", "--kind", "citizen", "--key", id, "--ward-api", &api]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let mut other = now[id].clone();
    other.events.clear();
    let other = Record { ward: WardCode::parse("00082").unwrap(), body: Body::Citizen(other) };
    let again = wardsync(&["put", "--record", &serde_json::to_string(&other).unwrap(), "--ward-api", &api]);
    assert_eq!(again.status.code(), Some(5), "{}", stderr(&again));
    assert!(stderr(&again).contains(&format!("changes the full_name of {id}")), "{}", stderr(&again));

    // A correction of the name is registered, and reaches the city with it.
    let (living, person) = was.iter().find(|(i, c)| *i != id && !c.events.is_empty()).unwrap();
    let correct = |field: &str, value: &str, reference: &str| {
        wardsync(&[
            "register",
            "correction",
            "--person",
            living,
            "--field",
            field,
            "--value",
            value,
            "--reference",
            reference,
            "--ward-api",
            &api,
        ])
    };
    let corrected = correct("full_name", "Nguyễn Thị Sửa Tên", "QĐ 15/2026/UBND");
    assert!(corrected.status.success(), "{}", stderr(&corrected));
    let record = Record { ward: WardCode::parse("00082").unwrap(), body: Body::Citizen(person.clone()) };
    at_city(&city, &record, "the correction at the city", |c| {
        c.full_name == "Nguyễn Thị Sửa Tên"
            && c.events
                .last()
                .is_some_and(|e| e.kind == EventKind::Correction && e.reference == "QĐ 15/2026/UBND")
    })
    .await;
    // A correction that corrects nothing, or a field that is not corrected so: refused, saying why.
    let same = correct("full_name", "Nguyễn Thị Sửa Tên", "QĐ 16/2026");
    assert!(stderr(&same).contains("nothing to correct"), "{}", stderr(&same));
    let phone = correct("phone", "1", "x");
    assert!(!phone.status.success() && stderr(&phone).contains("full_name"), "{}", stderr(&phone));
}

/// The evidence of a registration: the registering ward signs its change
/// to another ward's citizen on its own (apart from its batch), the city
/// keeps that signature, and `wardsync audit verify` checks it against the
/// ward's certificate: a signature edited in the stopped city's store is
/// named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_signed_by_its_ward_on_its_own_and_the_audit_checks_it() {
    let env = Env::new();
    let mut city = City::start(&env);
    let Couple { wards: _wards, mut ca, cb: _, man, woman } = couple(&env, &city, 0).await;
    ca.register(register("marriage", &[&man, &woman], "2026-11-30")).await.unwrap();
    drained(&mut ca).await;
    at_city(&city, &woman, "the marriage at the city", |c| !c.events.is_empty()).await;
    assert!(city.node.stop(), "the city stops cleanly");
    let clean = env.audit_stopped_city();
    assert!(clean.status.success(), "{}{}", stdout(&clean), stderr(&clean));
    assert!(stderr(&clean).contains("of batches, 1 of registrations"), "{}", stderr(&clean));

    // The signature kept (one change to another ward's citizen), altered: named.
    env.alter_stopped_city(b'G', 7).await;
    let found = env.audit_stopped_city();
    assert_eq!(found.status.code(), Some(2), "{}{}", stdout(&found), stderr(&found));
    assert!(
        stdout(&found).contains("ward 00082's signature of its change")
            && stdout(&found).contains("does not hold"),
        "{}",
        stdout(&found)
    );
}

/// A registration the city lost (its database put back to a copy from
/// before it) comes back from the copy the citizen's ward holds, on the
/// registering ward's own signature, which the city keeps beside the write
/// it takes back; `wardsync audit verify` checks it again, and names it
/// once altered in the stopped city's store. The registration lost is a
/// divorce, on a citizen whose marriage the city holds: a registered event
/// is added to one already registered, as only its registrar may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_the_city_lost_comes_back_on_its_wards_signature_and_the_audit_checks_it() {
    let env = Env::new();
    let mut city = City::start(&env);
    let Couple { wards: _wards, mut ca, cb, man, woman } = couple(&env, &city, 1).await;
    ca.register(register("marriage", &[&man, &woman], "2026-11-20")).await.unwrap();
    drained(&mut ca).await;
    at_ward(&cb, &woman, "the marriage at the woman's ward", |c| c.events.len() == 1).await;
    let data = env.path().join("city");
    let copy = env.path().join("before-the-divorce");
    assert!(city.node.stop(), "the city stops cleanly");
    copy_dir(&data, &copy);
    city.node.start();
    city.client().await;
    ca.register(register("divorce", &[&man, &woman], "2026-11-30")).await.unwrap();
    drained(&mut ca).await;
    at_ward(&cb, &woman, "the divorce at the woman's ward", |c| c.events.len() == 2).await;

    assert!(city.node.stop(), "the city stops cleanly");
    restore_dir(&copy, &data);
    city.node.start();
    city.client().await;
    at_city(&city, &woman, "the divorce back at the city", |c| c.events.len() == 2).await;
    let q = city.client().await;
    let history = q
        .clone()
        .history(pb::CityGetRequest { key: key(&woman), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(
        history.iter().any(|e| e.identity == "ward 00145 (relaying 00082's signed change)"),
        "taken back from 00145 on 00082's signature: {history:?}"
    );
    drop(q);

    assert!(city.node.stop(), "the city stops cleanly");
    let clean = env.audit_stopped_city();
    assert!(clean.status.success(), "{}{}", stdout(&clean), stderr(&clean));
    env.alter_stopped_city(b'R', 3).await; // in the content hash signed
    let found = env.audit_stopped_city();
    assert_eq!(found.status.code(), Some(2), "{}{}", stdout(&found), stderr(&found));
    assert!(stdout(&found).contains("evidence of the relayed write at log entry"), "{}", stdout(&found));
}
