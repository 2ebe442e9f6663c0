//! Replication end to end: real city and ward processes over mutual TLS.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use tonic::Code;
use tonic_types::StatusExt;
use wardsync::cli::relay::{LinkMode, Relay};
use wardsync::cli::wait;
use wardsync::generate::amend;
use wardsync::model::{Body, Kind, Record, RecordKey, WardCode};
use wardsync::proto::pb;

fn ward_code(s: &str) -> WardCode {
    WardCode::parse(s).unwrap()
}

async fn put(c: &mut pb::ward_api_client::WardApiClient<tonic::transport::Channel>, r: &Record) -> u64 {
    c.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap().into_inner().seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_replicate_and_the_city_equals_the_wards() {
    let env = Env::new();
    let city = City::start(&env);
    let wards = [Ward::start(&env, "00082", city.addr), Ward::start(&env, "00145", city.addr)];
    let mut city_c = city.client().await;
    let mut expected_total = 0;
    for w in &wards {
        let mut c = w.client().await;
        let code = ward_code(&w.code);
        for i in 0..150 {
            put(&mut c, &rec(&code, i)).await;
        }
        // Updates and deletes replicate too.
        for i in (0..150).step_by(7) {
            put(&mut c, &amend(&rec(&code, i), 1)).await;
        }
        for i in (3..150).step_by(11) {
            let r = rec(&code, i);
            let key = r.key().unwrap();
            c.delete(pb::DeleteRequest { key: Some((&key).into()) }).await.unwrap();
        }
        drained(&mut c).await;
        let s = status(&mut c).await.unwrap();
        assert_eq!(s.acked_seq, s.last_seq);
        let n = assert_same_records(&mut c, &mut city_c, &w.code).await;
        assert_eq!(n as u64, s.records);
        expected_total += n;
        let log = city_log(&mut city_c).await;
        assert_each_seq_once(&log, &w.code, s.last_seq);
    }
    let states = city_wards(&mut city_c).await.unwrap();
    assert_eq!(states.iter().map(|s| s.records as usize).sum::<usize>(), expected_total);
    assert!(states.iter().all(|s| s.quarantined == 0));
    for mut w in wards {
        assert!(w.node.stop(), "ward {} exits 0 on SIGTERM", w.code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ward_keeps_writing_while_the_city_is_down_and_catches_up() {
    let env = Env::new();
    let mut city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let code = ward_code("00082");
    let mut c = ward.client().await;
    for i in 0..50 {
        put(&mut c, &rec(&code, i)).await;
    }
    drained(&mut c).await;

    assert!(city.node.stop(), "the city exits 0 on SIGTERM");
    for i in 50..250 {
        put(&mut c, &rec(&code, i)).await;
    }
    let s = status(&mut c).await.unwrap();
    assert_eq!(s.backlog, 200, "every write made during the outage is queued");
    assert_eq!(s.acked_seq, 50);

    city.node.start();
    let mut city_c = city.client().await;
    drained(&mut c).await;
    assert_eq!(assert_same_records(&mut c, &mut city_c, "00082").await, 250);
    assert_each_seq_once(&city_log(&mut city_c).await, "00082", 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_killed_mid_stream_loses_nothing_acknowledged_and_applies_nothing_twice() {
    let env = Env::new();
    let city = City::start(&env);
    let mut ward = Ward::start(&env, "00082", city.addr);
    let code = ward_code("00082");
    let c = ward.client().await;

    // Eight writers; every acknowledged write is remembered with its content
    // and the highest sequence number acknowledged.
    let acked: Arc<Mutex<BTreeMap<String, Record>>> = Arc::default();
    let top_seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..8u32 {
        let (mut c, acked, code, top_seq) = (c.clone(), acked.clone(), code.clone(), top_seq.clone());
        writers.push(tokio::spawn(async move {
            for i in (w..4000).step_by(8) {
                let r = rec(&code, i);
                match c.put(pb::PutRequest { record: Some((&r).into()) }).await {
                    Ok(reply) => {
                        top_seq.fetch_max(reply.into_inner().seq, std::sync::atomic::Ordering::SeqCst);
                        acked.lock().unwrap().insert(r.key_id(), r);
                    }
                    Err(_) => return, // the agent is gone
                }
            }
        }));
    }
    wait::until(DEADLINE, "a few hundred acknowledged writes", || {
        let acked = acked.clone();
        async move { Ok(acked.lock().unwrap().len() >= 600) }
    })
    .await
    .unwrap();
    ward.node.kill();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() < 4000, "the kill happened while writes were streaming");

    ward.node.start();
    let mut c = ward.client().await;
    drained(&mut c).await;
    let s = status(&mut c).await.unwrap();
    let top_seq = top_seq.load(std::sync::atomic::Ordering::SeqCst);
    assert!(s.last_seq >= top_seq, "acknowledged sequence numbers survive: {} < {top_seq}", s.last_seq);
    let mut city_c = city.client().await;
    for (id, record) in &acked {
        let key = RecordKey::new(record.kind(), id).unwrap();
        let got = city_c
            .get(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() })
            .await
            .unwrap_or_else(|e| panic!("acknowledged {key} missing at the city: {e}"))
            .into_inner()
            .record;
        assert_eq!(got, Some(record.into()), "{key}");
    }
    assert_same_records(&mut c, &mut city_c, "00082").await;
    assert_each_seq_once(&city_log(&mut city_c).await, "00082", s.last_seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_acks_cost_a_resend_never_a_duplicate() {
    let env = Env::new();
    let city = City::start(&env);
    let relay = Relay::start(city.addr).await.unwrap();
    let ward = Ward::start(&env, "00082", relay.addr());
    let code = ward_code("00082");
    let mut c = ward.client().await;
    let mut city_c = city.client().await;
    for i in 0..20 {
        put(&mut c, &rec(&code, i)).await;
    }
    drained(&mut c).await;

    // The city keeps receiving and applying, but its acks never arrive.
    relay.set(LinkMode::DropReplies);
    for i in 20..120 {
        put(&mut c, &rec(&code, i)).await;
    }
    wait::until(DEADLINE, "the city to apply batches whose acks are lost", || {
        let mut city_c = city_c.clone();
        async move {
            let wards = city_wards(&mut city_c).await?;
            Ok(wards.iter().any(|w| w.ward == "00082" && w.last_applied_seq > 20))
        }
    })
    .await
    .unwrap();
    let s = status(&mut c).await.unwrap();
    assert_eq!(s.acked_seq, 20, "the ward has seen none of the acks");
    assert_eq!(s.backlog, 100);

    relay.heal();
    drained(&mut c).await;
    assert_each_seq_once(&city_log(&mut city_c).await, "00082", 120);
    assert_same_records(&mut c, &mut city_c, "00082").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_every_field_named_and_nothing_stored() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    // A citizen with a foreign province prefix, no name and an unknown commune:
    // all three are reported at once, in the message and as BadRequest details.
    let mut bad = (0..).map(|i| rec(&ward_code("00082"), i)).find(|r| r.kind() == Kind::Citizen).unwrap();
    if let Body::Citizen(c) = &mut bad.body {
        c.personal_id.replace_range(0..3, "003");
        c.full_name.clear();
        c.permanent_residence.commune_code = "99999".into();
    }
    let e = c.put(pb::PutRequest { record: Some((&bad).into()) }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> = e
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        [
            "record.citizen.personal_id",
            "record.citizen.full_name",
            "record.citizen.permanent_residence.commune_code"
        ]
    );
    assert!(e.message().contains("not one of the 63 province codes"), "{}", e.message());

    // Format errors are named too.
    let unformatted = pb::Record {
        ward: "00082".into(),
        body: Some(pb::record::Body::Citizen(pb::Citizen {
            date_of_birth: "2/3/1985".into(),
            ..Default::default()
        })),
    };
    let e = c.put(pb::PutRequest { record: Some(unformatted) }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("record.citizen.date_of_birth: \"2/3/1985\" is not a date"),
        "{}",
        e.message()
    );

    let foreign = rec(&ward_code("00145"), 0);
    let e = c.put(pb::PutRequest { record: Some((&foreign).into()) }).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("00145"), "{}", e.message());

    let missing = RecordKey::new(Kind::Citizen, "001085099999").unwrap();
    let e = c.delete(pb::DeleteRequest { key: Some((&missing).into()) }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e =
        c.get(pb::GetRequest { key: Some(pb::RecordKey { kind: 1, id: "12".into() }) }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("key.id"), "{}", e.message());

    let s = status(&mut c).await.unwrap();
    assert_eq!((s.last_seq, s.records), (0, 0), "nothing of a refused request is stored");
}
