//! Security end to end against a real city process: every role against
//! every RPC, revocation live and after reconnecting, expired and foreign
//! certificates, oversized messages and batches, stream and rate limits,
//! and the audit trail.

mod common;

use std::path::Path;

use common::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use wardsync::auth::{DevCa, TlsFiles, client_tls};
use wardsync::cli::wait;
use wardsync::model::signed::GENESIS;
use wardsync::model::{Change, Hlc, Op, Stamp, WardCode, flatten};
use wardsync::proto::pb::{
    self, city_message, city_query_client::CityQueryClient, city_sync_client::CitySyncClient,
};

const ROLES: &str = r#"
[roles]
office = ["office-editor"]
reader = ["office-reader"]
ops = ["ops"]
backup = ["backup"]
"#;

fn issue_clients(env: &Env) {
    let ca = DevCa::open_or_create(&env.certs()).unwrap();
    for name in ["reader", "ops", "backup", "stranger"] {
        ca.issue(name, &[name]).unwrap();
    }
}

fn tls(certs: &Path, name: &str) -> ClientTlsConfig {
    client_tls(&TlsFiles::in_dir(certs, name), "city").unwrap()
}

async fn channel(city: &City, tls: ClientTlsConfig) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(city.url()).unwrap().tls_config(tls).unwrap().connect().await
}

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    r.map_or_else(|s| s.code(), |_| Code::Ok)
}

/// Calls one CityQuery RPC with a minimal request; returns its status code.
async fn call(c: &mut CityQueryClient<Channel>, rpc: &str) -> Code {
    let key = Some(pb::RecordKey { kind: 1, id: "001085012345".into() });
    match rpc {
        "Get" => code(c.get(pb::CityGetRequest { key, ..Default::default() }).await),
        "GetState" => code(c.get_state(pb::CityGetRequest { key, ..Default::default() }).await),
        "History" => code(
            c.history(pb::CityGetRequest {
                key: Some(pb::RecordKey { kind: 1, id: "001085012345".into() }),
                ..Default::default()
            })
            .await,
        ),
        "List" => code(c.list(pb::CityListRequest { kind: 1, ..Default::default() }).await),
        "ChangesSince" => {
            code(c.changes_since(pb::ChangesSinceRequest { after: 0, limit: 1, ..Default::default() }).await)
        }
        "Wards" => code(c.wards(pb::WardsRequest {}).await),
        "Search" => code(
            c.search(pb::SearchRequest { query: "an".into(), kind: 0, limit: 1, ..Default::default() }).await,
        ),
        "Household" => {
            code(c.household(pb::HouseholdRequest { household_id: "x".into(), ..Default::default() }).await)
        }
        "OwnedBy" => {
            code(c.owned_by(pb::OwnedByRequest { owner_id: "x".into(), ..Default::default() }).await)
        }
        "ListQuarantine" => code(c.list_quarantine(pb::QuarantineRequest::default()).await),
        "RetryQuarantined" => {
            code(c.retry_quarantined(pb::QuarantineEntry { ward: "00082".into(), seq: 1 }).await)
        }
        "DiscardQuarantined" => code(
            c.discard_quarantined(pb::DiscardRequest {
                ward: "00082".into(),
                seq: 1,
                reason: "x".into(),
                signed: None,
            })
            .await,
        ),
        "Edit" => code(c.edit(pb::EditRequest { record: None, seen: vec![], signed: None }).await),
        "ListConflicts" => code(c.list_conflicts(pb::ConflictsRequest::default()).await),
        "ResolveConflict" => code(
            c.resolve_conflict(pb::ResolveRequest {
                key,
                field: "phone".into(),
                choose: 1,
                value: String::new(),
                signed: None,
            })
            .await,
        ),
        "Audit" => code(c.audit(pb::AuditRequest::default()).await),
        "CivilStatus" => {
            code(c.civil_status(pb::CivilStatusRequest { personal_id: "001085012345".into() }).await)
        }
        "CivilReport" => code(c.civil_report(pb::CivilReportRequest::default()).await),
        "Backup" => code(c.backup(pb::BackupRequest { to: "by-role-table".into() }).await),
        other => panic!("unknown rpc {other}"),
    }
}

/// Opens a replication stream as `claim`; returns the status code of the answer.
async fn replicate(ch: Channel, claim: &str) -> Code {
    let (tx, rx) = mpsc::channel(4);
    tx.send(hello(claim)).await.unwrap();
    match CitySyncClient::new(ch).replicate(ReceiverStream::new(rx)).await {
        Ok(mut s) => match s.get_mut().message().await {
            Ok(Some(pb::CityMessage { msg: Some(city_message::Msg::Welcome(_)) })) => Code::Ok,
            Ok(_) => Code::Unknown,
            Err(s) => s.code(),
        },
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_rpc() {
    let env = Env::new();
    issue_clients(&env);
    let city = City::start_configured(&env, ROLES);
    city.client().await;
    let certs = env.certs();
    const READS: &[&str] = &[
        "Get",
        "GetState",
        "List",
        "ChangesSince",
        "Wards",
        "Search",
        "Household",
        "OwnedBy",
        "ListQuarantine",
        "ListConflicts",
        "Audit",
        "CivilStatus",
        "CivilReport",
        "History",
    ];
    const EDITS: &[&str] = &["RetryQuarantined", "DiscardQuarantined", "Edit", "ResolveConflict"];
    let office: Vec<&str> = READS.iter().chain(EDITS).copied().collect();
    let all: Vec<&str> = office.iter().copied().chain(["Backup"]).collect();
    // (certificate, RPCs it may call; Replicate separately)
    let table: &[(&str, Vec<&str>, bool)] = &[
        ("ward-00082", vec!["Get", "GetState", "CivilStatus"], true),
        ("reader", READS.to_vec(), false),
        ("office", office.clone(), false),
        ("ops", vec!["Wards"], false),
        ("backup", vec!["Backup"], false),
        ("stranger", vec![], false),
    ];
    for (cert, allowed, may_replicate) in table {
        let mut c = CityQueryClient::new(channel(&city, tls(&certs, cert)).await.unwrap());
        for rpc in &all {
            let got = call(&mut c, rpc).await;
            if allowed.contains(rpc) {
                assert_ne!(got, Code::PermissionDenied, "{cert} may call {rpc}");
            } else {
                assert_eq!(got, Code::PermissionDenied, "{cert} may not call {rpc}");
            }
        }
        let got = replicate(channel(&city, tls(&certs, cert)).await.unwrap(), "00082").await;
        assert_eq!(got == Code::Ok, *may_replicate, "{cert} replicating: {got:?}");
    }

    // Every refusal is counted and in the audit trail, with the identity.
    // (Denials reach the audit trail through a queue of their own.)
    let mut office = city.client().await;
    let expected =
        table.iter().map(|(_, allowed, rep)| all.len() - allowed.len() + usize::from(!rep)).sum::<usize>();
    wait::until(DEADLINE, "every denial in the audit trail", || {
        let mut office = office.clone();
        async move {
            let entries = office.audit(pb::AuditRequest::default()).await?.into_inner().entries;
            Ok(entries.iter().filter(|e| e.denied).count() >= expected)
        }
    })
    .await
    .unwrap();
    let counted = office.wards(pb::WardsRequest {}).await.unwrap().into_inner().denied_calls;
    let audit = office.audit(pb::AuditRequest::default()).await.unwrap().into_inner().entries;
    let denied: Vec<_> = audit.iter().filter(|e| e.denied).collect();
    assert_eq!(denied.len(), expected);
    assert_eq!(counted as usize, expected);
    assert!(denied.iter().any(|e| e.identity == "stranger" && e.action == "Edit"));
    // Paged, one or seven at a time (many fall in the same millisecond):
    // the same entries, each once, in the same order.
    for size in [1, 7] {
        let paged = wardsync::cli::client::pages(usize::MAX, |after| {
            let mut office = office.clone();
            async move {
                let r = office.audit(pb::AuditRequest { limit: size, after, ..Default::default() }).await?;
                let r = r.into_inner();
                assert!(r.entries.len() <= size as usize);
                Ok((r.entries, r.next_after))
            }
        })
        .await
        .unwrap();
        assert_eq!(paged, (audit.clone(), false), "pages of {size}");
    }
    let e = office.audit(pb::AuditRequest { after: "x".into(), ..Default::default() }).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().contains("next_after"), "{e:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wardsync"))
        .args(["audit", "--since", "2020-01-01", "--city", &city.url(), "--tls-dir", certs.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DENIED") && text.contains("stranger"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The certificate's serial as `openssl x509 -noout -serial` prints it.
fn serial_of(pem_path: &Path) -> String {
    let pem = std::fs::read(pem_path).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let hex = p.parse_x509().unwrap().serial.to_str_radix(16).to_uppercase();
    format!("serial={}{hex}", if hex.len() % 2 == 1 { "0" } else { "" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_ward_is_cut_off_live_and_after_reconnecting_and_an_unrevoked_one_catches_up() {
    let env = Env::new();
    let city = City::start_configured(&env, ROLES);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut w = ward.client().await;
    let code82 = WardCode::parse("00082").unwrap();
    w.put(pb::PutRequest { record: Some((&rec(&code82, 0)).into()) }).await.unwrap();
    drained(&mut w).await;

    let serial = serial_of(&env.certs().join("ward-00082.pem"));
    city.reconfigure(&env, &format!("revoked = [\"{serial}\"]\n{ROLES}"));
    wait::until(DEADLINE, "the revoked ward to be disconnected", || {
        let mut w = w.clone();
        async move { Ok(!status(&mut w).await?.connected) }
    })
    .await
    .unwrap();
    // It keeps accepting local writes; the city refuses it on every reconnect.
    for i in 1..4 {
        w.put(pb::PutRequest { record: Some((&rec(&code82, i)).into()) }).await.unwrap();
    }
    let mut q = city.client().await;
    wait::until(DEADLINE, "reconnects to be refused too", || {
        let mut q = q.clone();
        async move {
            let audit = q.audit(pb::AuditRequest::default()).await?.into_inner().entries;
            Ok(audit.iter().filter(|e| e.denied && e.detail.contains("revoked")).count() >= 2)
        }
    })
    .await
    .unwrap();
    assert_eq!(status(&mut w).await.unwrap().backlog, 3, "nothing was accepted from a revoked ward");

    city.reconfigure(&env, ROLES);
    drained(&mut w).await;
    assert_same_records(&mut w, &mut q, "00082").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_foreign_certificates_are_refused() {
    let env = Env::new();
    let city = City::start(&env);
    city.client().await;
    // An expired ward certificate from the right CA.
    let certs = env.certs();
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(certs.join("ca.key")).unwrap()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(certs.join("ca.pem")).unwrap(), ca_key)
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["ward-00082".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "ward-00082");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let expired = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(certs.join("ca.pem")).unwrap()))
        .identity(tonic::transport::Identity::from_pem(cert.pem(), key.serialize_pem()))
        .domain_name("city");
    let refused = match channel(&city, expired).await {
        Err(_) => true,
        Ok(ch) => replicate(ch, "00082").await != Code::Ok,
    };
    assert!(refused, "an expired certificate is refused");
    let foreign = tls(&env.path().join("foreign"), "ward-00082");
    let foreign = foreign.ca_certificate(tonic::transport::Certificate::from_pem(
        std::fs::read(certs.join("ca.pem")).unwrap(),
    ));
    let refused = match channel(&city, foreign).await {
        Err(_) => true,
        Ok(ch) => replicate(ch, "00082").await != Code::Ok,
    };
    assert!(refused, "a certificate from another CA is refused");
}

fn change(seq: u64, i: u32) -> Change {
    let r = rec(&WardCode::parse("00082").unwrap(), i);
    let stamp = Stamp {
        hlc: Hlc { wall_ms: wardsync::clock::now_ms() as u64, logical: seq as u32 },
        writer: "00082".into(),
    };
    let fields = flatten(&r).into_keys().collect();
    Change {
        seq,
        written_at_ms: 0,
        key: r.key().unwrap(),
        stamp,
        context: Default::default(),
        fields,
        op: Op::Put(r),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_batches_and_floods_are_refused_and_a_new_stream_replaces_the_oldest() {
    let env = Env::new();
    issue_clients(&env);
    let limits = "[limits]\nmax_message_bytes = 65536\nmax_batch_changes = 50\nrequests_per_second = 5\nrequest_burst = 5\n";
    let city = City::start_configured(&env, &format!("{ROLES}{limits}"));
    city.client().await;
    let certs = env.certs();
    let ward_tls = || tls(&certs, "ward-00082");

    // One stream per ward: a second takes the place of the first (a ward
    // whose old connection died silently is never locked out).
    let (old_tx, rx) = mpsc::channel(8);
    old_tx.send(hello("00082")).await.unwrap();
    let mut old = CitySyncClient::new(channel(&city, ward_tls()).await.unwrap())
        .replicate(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(old.message().await.unwrap().and_then(|m| m.msg), Some(city_message::Msg::Welcome(_))));
    let (tx, rx) = mpsc::channel(8);
    tx.send(hello("00082")).await.unwrap();
    let mut first = CitySyncClient::new(channel(&city, ward_tls()).await.unwrap())
        .replicate(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        first.message().await.unwrap().and_then(|m| m.msg),
        Some(city_message::Msg::Welcome(_))
    ));
    let e = old.message().await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert!(e.message().contains("replaced by a newer replication stream"), "{}", e.message());

    // A batch over the change limit, then one over the size limit.
    let batch = |changes: Vec<Change>| signed_batch(&certs, "00082", (0, GENESIS), &changes);
    tx.send(batch((1..=51).map(|s| change(s, s as u32)).collect())).await.unwrap();
    let e = first.message().await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("exceed the limit of 50"), "{}", e.message());
    let (tx, rx) = mpsc::channel(8);
    tx.send(hello("00082")).await.unwrap();
    let mut second = CitySyncClient::new(channel(&city, ward_tls()).await.unwrap())
        .max_encoding_message_size(1 << 24)
        .replicate(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    second.message().await.unwrap();
    let mut big = change(1, 0);
    if let Op::Put(r) = &mut big.op
        && let wardsync::model::Body::Citizen(c) = &mut r.body
    {
        c.full_name = "x".repeat(100_000);
    }
    tx.send(batch(vec![big])).await.unwrap();
    let e = second.message().await.unwrap_err();
    assert!(matches!(e.code(), Code::ResourceExhausted | Code::OutOfRange), "{e}");

    // One identity flooding queries is slowed down; another is served.
    let mut flood = CityQueryClient::new(channel(&city, tls(&certs, "reader")).await.unwrap());
    let mut exhausted = false;
    for _ in 0..50 {
        if call(&mut flood, "Wards").await == Code::ResourceExhausted {
            exhausted = true;
            break;
        }
    }
    assert!(exhausted, "a flood hits the rate limit");
    let mut other = CityQueryClient::new(channel(&city, tls(&certs, "office")).await.unwrap());
    assert_eq!(call(&mut other, "Wards").await, Code::Ok, "another identity is still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_api_can_listen_on_a_unix_socket_only_its_owner_and_group_may_use() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let city = City::start(&env);
    let socket = env.path().join("ward.sock");
    let _ward = Ward::start_with(&env, "00082", city.addr, &format!("socket = \"{}\"", socket.display()), "");
    let url = format!("unix:{}", socket.display());
    wait::until(DEADLINE, "the socket to accept connections", || {
        let url = url.clone();
        async move {
            Ok(wardsync::cli::client::ward_client(&url).await?.status(pb::StatusRequest {}).await.is_ok())
        }
    })
    .await
    .unwrap();
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o660);
    let mut w = wardsync::cli::client::ward_client(&url).await.unwrap();
    w.put(pb::PutRequest { record: Some((&rec(&WardCode::parse("00082").unwrap(), 0)).into()) })
        .await
        .unwrap();
    drained(&mut w).await;
    let mut q = city.client().await;
    assert_same_records(&mut w, &mut q, "00082").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_replaying_another_wards_changes_is_refused() {
    let env = Env::new();
    let city = City::start(&env);
    let mut q = city.client().await;
    let certs = env.certs();
    // Ward 00145 sends changes stamped and owned by ward 00082.
    let (tx, rx) = mpsc::channel(8);
    tx.send(hello("00145")).await.unwrap();
    let mut s = CitySyncClient::new(channel(&city, tls(&certs, "ward-00145")).await.unwrap())
        .replicate(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    s.message().await.unwrap();
    let replayed: Vec<Change> = (1..=3).map(|n| change(n, n as u32)).collect();
    tx.send(signed_batch(&certs, "00145", (0, GENESIS), &replayed)).await.unwrap();
    match s.message().await.unwrap().and_then(|m| m.msg) {
        Some(city_message::Msg::Ack(a)) => {
            assert_eq!(a.applied_seq, 3, "kept in quarantine, the stream goes on")
        }
        other => panic!("expected an ack, got {other:?}"),
    }
    let entries = q.list_quarantine(pb::QuarantineRequest::default()).await.unwrap().into_inner().entries;
    assert_eq!(entries.len(), 3);
    assert!(
        entries.iter().all(|e| e.ward == "00145" && e.reason.contains("sent by ward 00145")),
        "{entries:?}"
    );
    for c in &replayed {
        let e =
            q.get(pb::CityGetRequest { key: Some((&c.key).into()), ..Default::default() }).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
}

/// A city holding `writes` changes of ward 00082, and a change feed of the
/// reader's that took one entry and then stopped reading (small HTTP/2
/// windows: the city's sender blocks after some 64 KiB).
async fn stalled_feed(env: &Env, writes: u32) -> (City, Ward, tonic::Streaming<pb::LoggedChange>) {
    issue_clients(env);
    let city = City::start_configured(env, ROLES);
    let ward = Ward::start(env, "00082", city.addr);
    let mut w = ward.client().await;
    let code82 = WardCode::parse("00082").unwrap();
    for i in 0..writes {
        w.put(pb::PutRequest { record: Some((&rec(&code82, i)).into()) }).await.unwrap();
    }
    drained(&mut w).await;
    let small = Endpoint::from_shared(city.url())
        .unwrap()
        .tls_config(tls(&env.certs(), "reader"))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535);
    let mut reader = CityQueryClient::new(small.connect().await.unwrap());
    let mut feed = reader
        .changes_since(pb::ChangesSinceRequest { after: 0, limit: 0, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    feed.message().await.unwrap().unwrap();
    (city, ward, feed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_feed_whose_reader_is_revoked_ends_even_while_its_reader_is_not_reading() {
    let env = Env::new();
    const WRITES: u32 = 600;
    let (city, _ward, mut feed) = stalled_feed(&env, WRITES).await;
    let serial = serial_of(&env.certs().join("reader.pem"));
    city.reconfigure(&env, &format!("revoked = [\"{serial}\"]\n{ROLES}"));
    let q = city.client().await;
    wait::until(DEADLINE, "the city to deny the revoked reader's feed", || {
        let mut q = q.clone();
        async move {
            let audit = q.audit(pb::AuditRequest::default()).await?.into_inner().entries;
            Ok(audit.iter().any(|e| e.denied && e.action.contains("ChangesSince")))
        }
    })
    .await
    .unwrap();
    // What was already on its way arrives, then the feed ends.
    let mut received = 1;
    let ended = loop {
        match feed.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => break Code::Ok,
            Err(s) => break s.code(),
        }
    };
    assert!(received < WRITES, "the feed ended after {received} of {WRITES} entries ({ended:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_feed_reader_that_stopped_reading_does_not_hold_the_city_at_shutdown() {
    let env = Env::new();
    let (mut city, _ward, feed) = stalled_feed(&env, 300).await;
    // The reader reads no more; the city is told to stop, and does (exit 0).
    assert!(city.node.stop(), "the city exits cleanly");
    drop(feed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_office_request_is_taken_only_signed_fresh_with_the_callers_own_key() {
    use wardsync::auth::Signer;
    use wardsync::cli::office::OfficeSigner;
    use wardsync::model::office_request::{Asked, OfficeRequest};
    let env = Env::new();
    let city = City::start(&env);
    let w = Ward::start(&env, "00082", city.addr);
    let mut c = w.client().await;
    let code = WardCode::parse("00082").unwrap();
    put_range(&mut c, "00082", 0..1).await;
    drained(&mut c).await;
    let mut office = city.client().await;
    let edited = wardsync::generate::amend(&rec(&code, 0), 1);

    // Unsigned, from a caller with a certificate.
    let unsigned = pb::EditRequest { record: Some((&edited).into()), seen: vec![], signed: None };
    let e = office.edit(unsigned).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("not signed"), "{}", e.message());
    // Signed with another key (the ward's) than the certificate the caller connected with.
    let ward_key = OfficeSigner::load(Some(&TlsFiles::in_dir(&env.certs(), "ward-00082"))).unwrap();
    let e = office.edit(ward_key.edit(edited.clone(), &Default::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("signature"), "{}", e.message());
    // The office's own signature over other values than those sent.
    let mut altered = env.office().edit(edited.clone(), &Default::default());
    altered.record = Some((&wardsync::generate::amend(&rec(&code, 0), 2)).into());
    assert_eq!(office.edit(altered).await.unwrap_err().code(), Code::PermissionDenied);
    // Its own key, signed an hour ago: a stale request replayed.
    let signer = Signer::load(&TlsFiles::in_dir(&env.certs(), "office")).unwrap();
    let then = wardsync::clock::now_ms() - 3_600_000;
    let request = OfficeRequest {
        id: [1; 16],
        signed_at_ms: then,
        asked: Asked::Edit { record: Box::new(edited.clone()), seen: Default::default() },
    };
    let stale = pb::EditRequest {
        record: Some((&edited).into()),
        seen: vec![],
        signed: Some(pb::OfficeSignature {
            request_id: vec![1; 16],
            signed_at_ms: then,
            signature: signer.sign(&request.message(&signer.key_id())),
        }),
    };
    let e = office.edit(stale).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("check the client's clock"), "{}", e.message());
    // None of them wrote anything; the office's own, fresh, does.
    let key = edited.key().unwrap();
    let got =
        office.get(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() }).await.unwrap();
    assert_eq!(wardsync::proto::record_from_pb(got.into_inner().record).unwrap(), rec(&code, 0));
    office.edit(env.office().edit(edited.clone(), &Default::default())).await.unwrap();
    let got =
        office.get(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() }).await.unwrap();
    assert_eq!(wardsync::proto::record_from_pb(got.into_inner().record).unwrap(), edited);
}
