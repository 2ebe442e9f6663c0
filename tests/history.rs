//! A record's history at the city: every change applied to it (who wrote
//! it, who sent it, when, each field before and after), and the record as
//! it stood at any past time, through the API and the command line.

mod common;

use common::*;
use wardsync::model::{Body, Record, WardCode};
use wardsync::proto::{pb, record_from_pb};

fn phone(r: &Record) -> String {
    match &r.body {
        Body::Citizen(c) => c.phone.clone(),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_of_a_record_and_the_record_as_it_stood() {
    let env = Env::new();
    let city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    let code = WardCode::parse("00082").unwrap();
    let v1 = (0..).map(|i| rec(&code, i)).find(|r| matches!(r.body, Body::Citizen(_))).unwrap();
    let key = Some((&v1.key().unwrap()).into());
    let before_all = chrono::Utc::now().timestamp_millis() - 1;
    c.put(pb::PutRequest { record: Some((&v1).into()) }).await.unwrap();
    drained(&mut c).await;
    let after_v1 = chrono::Utc::now().timestamp_millis();
    let v2 = wardsync::generate::amend(&v1, 1);
    c.put(pb::PutRequest { record: Some((&v2).into()) }).await.unwrap();
    drained(&mut c).await;
    let after_v2 = chrono::Utc::now().timestamp_millis();
    let mut q = city.client().await;
    let v3 = wardsync::generate::amend(&v1, 2);
    q.edit(env.office().edit(v3.clone(), &Default::default())).await.unwrap();
    c.delete(pb::DeleteRequest { key: key.clone() }).await.unwrap();
    drained(&mut c).await;

    let h =
        q.history(pb::CityGetRequest { key: key.clone(), ..Default::default() }).await.unwrap().into_inner();
    // (The office's change names the signed request it came from.)
    let who: Vec<(&str, &str, &str)> = h
        .entries
        .iter()
        .map(|e| (e.op.as_str(), e.writer.as_str(), e.identity.split(" [request ").next().unwrap()))
        .collect();
    assert!(h.entries[2].identity.starts_with("office [request "), "{}", h.entries[2].identity);
    assert_eq!(
        who,
        [
            ("put", "00082", "ward 00082"),
            ("put", "00082", "ward 00082"),
            ("put", "city", "office"),
            ("delete", "00082", "ward 00082")
        ]
    );
    let field = |i: usize, name: &str| h.entries[i].fields.iter().find(|f| f.field == name).cloned().unwrap();
    let p = field(1, "phone");
    assert_eq!((p.before, p.after), (format!("{:?}", phone(&v1)), format!("{:?}", phone(&v2))));
    assert_eq!(field(3, "_exists").after, "false");
    assert!(
        h.entries.windows(2).all(|w| w[0].cursor < w[1].cursor && w[0].applied_at_ms <= w[1].applied_at_ms)
    );

    // As it stood: before it existed, after each change, now (deleted).
    let as_of = |at: i64| {
        let (mut q, key) = (q.clone(), key.clone());
        async move { q.get(pb::CityGetRequest { key, as_of_ms: at }).await }
    };
    assert_eq!(as_of(before_all).await.unwrap_err().code(), tonic::Code::NotFound);
    let then = record_from_pb(as_of(after_v1).await.unwrap().into_inner().record).unwrap();
    assert_eq!(then, v1);
    let then = record_from_pb(as_of(after_v2).await.unwrap().into_inner().record).unwrap();
    assert_eq!(then, v2);
    let e = as_of(chrono::Utc::now().timestamp_millis()).await.unwrap_err();
    assert!(e.message().contains("did not exist"), "{e:?}");

    // The same from the command line.
    let certs = env.certs();
    let id = v1.key_id();
    let at = chrono::DateTime::from_timestamp_millis(after_v1).unwrap().to_rfc3339();
    let city_args = ["--city", &city.url(), "--tls-dir", certs.to_str().unwrap()];
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wardsync"))
            .args(args)
            .args(city_args)
            .output()
            .unwrap()
    };
    let out = run(&["get", "--kind", "citizen", "--key", &id, "--as-of", &at]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let then: Record = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(then, v1);
    let out = run(&["history", "--kind", "citizen", "--key", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("put by city (office [request ") && text.contains("delete by 00082 (ward 00082)"),
        "{text}"
    );
    assert!(text.contains(&format!("phone: {:?} -> {:?}", phone(&v1), phone(&v2))), "{text}");
    let out = run(&["history", "--kind", "citizen", "--key", &id, "--json"]);
    let changes: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(changes.len(), text.lines().filter(|l| !l.starts_with(' ')).count());
    assert!(changes.iter().all(|c| c["record"] == format!("citizen/{id}")), "{changes:?}");
    assert!(changes.iter().any(|c| c["op"] == "delete" && c["identity"] == "ward 00082"), "{changes:?}");
}
