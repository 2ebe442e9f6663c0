//! A hostile ward: ward 00145's real certificate on a raw `Replicate`
//! stream, against a real city holding ward 00082's records (written by
//! 00082's real agent). Every forged claim a change can carry (version
//! vector, owner, clock, counter) is refused or neutralised: nothing of
//! 00082's records changes, the city's clock does not move, the attempt is
//! kept in the quarantine with its reason, and the city goes on serving
//! 00082.

mod common;

use common::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use wardsync::auth::{Signer, TlsFiles, client_tls};
use wardsync::model::civil::{self, Registration};
use wardsync::model::signed;
use wardsync::model::{
    Body, Change, Citizen, EventKind, FieldWrite, Hlc, MaritalStatus, Op, Record, RecordKey, Stamp,
    VersionVector, WardCode, flatten,
};
use wardsync::proto::pb::{
    self, city_message, city_query_client::CityQueryClient, city_sync_client::CitySyncClient, ward_message,
};
use wardsync::ward::chain::Chainer;

/// A raw replication stream with a ward's certificate.
struct Forger {
    tx: mpsc::Sender<pb::WardMessage>,
    inbound: tonic::Streaming<pb::CityMessage>,
    seq: u64,
    /// The city's receipt for the last ack.
    receipt: Vec<u8>,
    /// Chains and signs its batches with its own certificate's key, as an
    /// agent does: what it forges is in the changes, not the chain.
    chain: Chainer,
}

impl Forger {
    async fn open(city: &City, env: &Env, code: &str) -> Forger {
        let files = TlsFiles::in_dir(&env.certs(), &format!("ward-{code}"));
        let tls = client_tls(&files, "city").unwrap();
        let signer = std::sync::Arc::new(Signer::load(&files).unwrap());
        let channel =
            Endpoint::from_shared(city.url()).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
        let (tx, rx) = mpsc::channel(8);
        tx.send(hello(code)).await.unwrap();
        let mut inbound =
            CitySyncClient::new(channel).replicate(ReceiverStream::new(rx)).await.unwrap().into_inner();
        let (seq, receipt, link) = match inbound.message().await.unwrap().and_then(|m| m.msg) {
            Some(city_message::Msg::Welcome(w)) => {
                (w.last_applied_seq, w.receipt, signed::hash_from(&w.link).unwrap_or(signed::GENESIS))
            }
            other => panic!("expected Welcome, got {other:?}"),
        };
        let chain = Chainer::new(WardCode::parse(code).unwrap(), Some(signer), (seq, link));
        Forger { tx, inbound, seq, receipt, chain }
    }

    /// The next downstream message the city sends.
    async fn downstream(&mut self) -> pb::Downstream {
        loop {
            match self.inbound.message().await.unwrap().and_then(|m| m.msg) {
                Some(city_message::Msg::Downstream(d)) => break d,
                Some(_) => {}
                None => panic!("the city ended the stream"),
            }
        }
    }

    /// Sends one change as 00145 setting every field, stamped now (or
    /// `hlc`), and waits for its ack.
    async fn send(&mut self, key: &RecordKey, op: Op, context: VersionVector, hlc: Option<Hlc>) {
        let fields = match &op {
            Op::Put(r) => flatten(r).into_keys().collect(),
            Op::Delete => Vec::new(),
        };
        self.send_fields(key, op, context, hlc, fields).await
    }

    /// Sends one change as 00145 setting `fields`, and waits for its ack.
    async fn send_fields(
        &mut self,
        key: &RecordKey,
        op: Op,
        context: VersionVector,
        hlc: Option<Hlc>,
        fields: Vec<String>,
    ) {
        self.seq += 1;
        let now = wardsync::clock::now_ms() as u64;
        let change = Change {
            seq: self.seq,
            written_at_ms: now as i64,
            key: key.clone(),
            stamp: Stamp { hlc: hlc.unwrap_or(Hlc { wall_ms: now, logical: 0 }), writer: "00145".into() },
            context,
            fields,
            op,
        };
        let batch = self.chain.batch(&[change]);
        self.tx.send(pb::WardMessage { msg: Some(ward_message::Msg::Batch(batch)) }).await.unwrap();
        loop {
            match self.inbound.message().await.unwrap().and_then(|m| m.msg) {
                Some(city_message::Msg::Ack(a)) => {
                    assert_eq!(a.applied_seq, self.seq);
                    self.receipt = a.receipt;
                    break;
                }
                Some(city_message::Msg::Downstream(_)) => {}
                other => panic!("expected Ack, got {other:?}"),
            }
        }
    }
}

fn vv(entries: &[(&str, Hlc)]) -> VersionVector {
    VersionVector(entries.iter().map(|(w, h)| (w.to_string(), *h)).collect())
}

async fn city_record(q: &mut CityQueryClient<Channel>, key: &RecordKey) -> Option<Record> {
    match q.get(pb::CityGetRequest { key: Some(key.into()), ..Default::default() }).await {
        Ok(r) => Some(wardsync::proto::record_from_pb(r.into_inner().record).unwrap()),
        Err(s) if s.code() == tonic::Code::NotFound => None,
        Err(s) => panic!("{s}"),
    }
}

/// The first generated records of ward `code` of each kind.
fn samples(code: &str) -> (Record, Record, Record) {
    let ward = WardCode::parse(code).unwrap();
    let all: Vec<Record> = (0..200).map(|i| rec(&ward, i)).collect();
    let of = |pick: fn(&Body) -> bool| all.iter().find(|r| pick(&r.body)).unwrap().clone();
    (
        of(|b| matches!(b, Body::Citizen(_))),
        of(|b| matches!(b, Body::Business(_))),
        of(|b| matches!(b, Body::Land(_))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_metadata_from_a_ward_is_refused_or_neutralised() {
    let env = Env::new();
    let city = City::start(&env);
    let owner = Ward::start(&env, "00082", city.addr);
    let mut w = owner.client().await;
    let (_, business, parcel) = samples("00082");
    for r in [&business, &parcel] {
        w.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap();
    }
    drained(&mut w).await;
    let mut q = city.client().await;
    let (bkey, pkey) = (business.key().unwrap(), parcel.key().unwrap());
    let mut forger = Forger::open(&city, &env, "00145").await;
    let own_empty = vv(&[("00145", Hlc::default())]);

    // 1. Take over 00082's parcel and business, claiming a concurrent write.
    let mut taken = parcel.clone();
    taken.ward = WardCode::parse("00145").unwrap();
    if let Body::Land(l) = &mut taken.body {
        l.owners = vec!["001085012345".into()];
        l.address = "stolen".into();
    }
    forger.send(&pkey, Op::Put(taken), own_empty.clone(), None).await;
    let mut taken = business.clone();
    taken.ward = WardCode::parse("00145").unwrap();
    if let Body::Business(b) = &mut taken.body {
        b.name = "Stolen Ltd".into();
    }
    forger.send(&bkey, Op::Put(taken), own_empty.clone(), None).await;
    // 2. Delete 00082's parcel.
    forger.send(&pkey, Op::Delete, own_empty.clone(), None).await;
    assert_eq!(city_record(&mut q, &pkey).await.as_ref(), Some(&parcel), "the parcel is 00082's, unchanged");
    assert_eq!(city_record(&mut q, &bkey).await.as_ref(), Some(&business), "the business too");

    // 3. A delete of a key the city never saw, stamped two minutes ahead,
    // must not hide the parcel 00082 creates afterwards.
    let later = {
        let ward = WardCode::parse("00082").unwrap();
        (200..400).map(|i| rec(&ward, i)).find(|r| matches!(r.body, Body::Land(_))).unwrap()
    };
    let lkey = later.key().unwrap();
    let ahead = Hlc { wall_ms: wardsync::clock::now_ms() as u64 + 120_000, logical: 0 };
    forger.send(&lkey, Op::Delete, VersionVector::default(), Some(ahead)).await;
    w.put(pb::PutRequest { record: Some((&later).into()) }).await.unwrap();
    drained(&mut w).await;
    assert_eq!(city_record(&mut q, &lkey).await.as_ref(), Some(&later), "00082's new parcel is visible");

    // 4. Contexts that claim writes the city never had, and clocks at their limits,
    // on 00145's own record: the office's next edit still shows.
    let (mine, _, _) = samples("00145");
    let mkey = mine.key().unwrap();
    forger.send(&mkey, Op::Put(mine.clone()), VersionVector::default(), None).await;
    let far = Hlc { wall_ms: u64::MAX, logical: u32::MAX };
    forger.send(&mkey, Op::Put(mine.clone()), vv(&[("00082", far), ("city", far)]), None).await;
    let now = wardsync::clock::now_ms() as u64;
    forger
        .send(
            &mkey,
            Op::Put(mine.clone()),
            VersionVector::default(),
            Some(Hlc { wall_ms: now, logical: u32::MAX }),
        )
        .await;
    forger
        .send(
            &mkey,
            Op::Put(mine.clone()),
            VersionVector::default(),
            Some(Hlc { wall_ms: 1 << 63, logical: 0 }),
        )
        .await;
    let edited = wardsync::generate::amend(&mine, 1);
    q.edit(env.office().edit(edited.clone(), &Default::default())).await.unwrap();
    assert_eq!(city_record(&mut q, &mkey).await.as_ref(), Some(&edited), "the office's edit shows");
    let state = q
        .get_state(pb::CityGetRequest { key: Some((&mkey).into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let state = wardsync::proto::versioned_from_pb(state.state.unwrap());
    let limit = wardsync::clock::now_ms() as u64 + 10 * 60 * 1000;
    assert!(
        state.seen.0.values().all(|h| h.wall_ms < limit),
        "no clock from the future in the record's state: {:?}",
        state.seen
    );

    // The attempts are kept, with their reasons; 00082 is still served.
    let entries = held_of_00145(&mut q).await;
    let refused: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    for seq in [1, 2, 3, 4, 6, 8] {
        assert!(refused.contains(&seq), "forged change {seq} is in the quarantine: {entries:#?}");
    }
    let audit =
        q.audit(pb::AuditRequest { ward: "00145".into(), ..Default::default() }).await.unwrap().into_inner();
    let attempts = audit.entries.iter().filter(|e| e.denied && e.identity == "ward 00145").count();
    assert!(attempts >= 6, "the audit trail records the attempts: {:#?}", audit.entries);
    let (citizen, _, _) = samples("00082");
    w.put(pb::PutRequest { record: Some((&citizen).into()) }).await.unwrap();
    drained(&mut w).await;
    assert_eq!(city_record(&mut q, &citizen.key().unwrap()).await.as_ref(), Some(&citizen));
    assert_same_records(&mut w, &mut q, "00082").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_claims_at_their_limits_are_refused_and_the_city_keeps_serving() {
    let env = Env::new();
    let city = City::start(&env);
    let owner = Ward::start(&env, "00082", city.addr);
    let mut w = owner.client().await;
    let mut q = city.client().await;
    // A Hello claiming the city acknowledged the largest sequences there are.
    for claim in [u64::MAX, 1 << 62] {
        let mut client = sync_client(&city, &env, "ward-00145").await;
        let (tx, rx) = mpsc::channel(2);
        let mut hello = hello("00145");
        if let Some(ward_message::Msg::Hello(h)) = &mut hello.msg {
            h.acked_seq = claim;
        }
        tx.send(hello).await.unwrap();
        let refused = match client.replicate(ReceiverStream::new(rx)).await {
            Err(s) => s,
            Ok(mut s) => s.get_mut().message().await.expect_err("a claim this large is refused"),
        };
        assert!(refused.message().contains("acked_seq"), "{refused}");
    }
    // Ward 00145's next, honest stream starts where it should, and 00082 is served throughout.
    let forger = Forger::open(&city, &env, "00145").await;
    assert_eq!(forger.seq, 0);
    let (citizen, _, _) = samples("00082");
    w.put(pb::PutRequest { record: Some((&citizen).into()) }).await.unwrap();
    drained(&mut w).await;
    assert_eq!(city_record(&mut q, &citizen.key().unwrap()).await.as_ref(), Some(&citizen));
}

/// Ward 00145 offers `state` of `key` in a repair; the city's answer.
async fn offer(
    hostile: &mut CitySyncClient<Channel>,
    key: &RecordKey,
    state: &wardsync::model::Versioned,
) -> pb::RepairReply {
    offer_with(hostile, key, state, vec![]).await
}

/// Ward 00145 offers `state` of `key` in a repair, with `authorship` as
/// evidence of writes by others; the city's answer.
async fn offer_with(
    hostile: &mut CitySyncClient<Channel>,
    key: &RecordKey,
    state: &wardsync::model::Versioned,
    authorship: Vec<Vec<u8>>,
) -> pb::RepairReply {
    let record =
        pb::KeyedState { key: Some(key.into()), hash: vec![], state: Some(state.into()), authorship };
    let request = pb::RepairRequest { ward_code: "00145".into(), records: vec![record] };
    hostile.repair(request).await.unwrap().into_inner()
}

/// A `CitySync` client with certificate `name`.
async fn sync_client(city: &City, env: &Env, name: &str) -> CitySyncClient<Channel> {
    let tls = client_tls(&TlsFiles::in_dir(&env.certs(), name), "city").unwrap();
    CitySyncClient::new(
        Endpoint::from_shared(city.url()).unwrap().tls_config(tls).unwrap().connect().await.unwrap(),
    )
}

/// What the city keeps in quarantine of ward 00145's.
async fn held_of_00145(q: &mut CityQueryClient<Channel>) -> Vec<pb::QuarantinedChange> {
    let all = pb::QuarantineRequest { ward: "00145".into(), ..Default::default() };
    q.list_quarantine(all).await.unwrap().into_inner().entries
}

/// Opens a replication stream as 00145 with a `Hello` as `claim` makes it,
/// and returns the city's `Welcome` (the stream then closes).
async fn hello_as_00145(city: &City, env: &Env, claim: impl FnOnce(&mut pb::Hello)) -> pb::Welcome {
    let mut message = hello("00145");
    if let Some(ward_message::Msg::Hello(h)) = &mut message.msg {
        claim(h);
    }
    let (tx, rx) = mpsc::channel(2);
    tx.send(message).await.unwrap();
    let mut client = sync_client(city, env, "ward-00145").await;
    let mut stream = client.replicate(ReceiverStream::new(rx)).await.unwrap().into_inner();
    match stream.message().await.unwrap().and_then(|m| m.msg) {
        Some(city_message::Msg::Welcome(w)) => w,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

/// 00145's loss as the city records it: changes, and when found (0: never).
async fn loss_of_00145(q: &mut CityQueryClient<Channel>) -> (u64, i64) {
    let wards = city_wards(q).await.unwrap();
    wards.iter().find(|w| w.ward == "00145").map_or((0, 0), |w| (w.lost_changes, w.lost_found_at_ms))
}

/// Claims, as 00145, that the city lost what it sent down (a cursor past
/// its log's end), with no receipt: no refill window opens.
async fn claim_a_loss(city: &City, env: &Env) {
    let welcome = hello_as_00145(city, env, |h| h.downstream_cursor = 1 << 40).await;
    assert!(welcome.log_lost, "the ward is told to follow the log from its end: {welcome:?}");
    let (_, found_at) = loss_of_00145(&mut city.client().await).await;
    assert_eq!(found_at, 0, "a loss recorded on 00145's word");
}

/// Takes a copy of the city's data, as `name` (the city stopped meanwhile,
/// and serving again on return).
async fn copy_city(city: &mut City, env: &Env, name: &str) -> std::path::PathBuf {
    let copy = env.path().join(name);
    assert!(city.node.stop());
    copy_dir(&env.path().join("city"), &copy);
    city.node.start();
    city.client().await;
    copy
}

/// Puts the city back to `copy` (stopped meanwhile, and serving again on
/// return).
async fn put_city_back(city: &mut City, env: &Env, copy: &std::path::Path) {
    assert!(city.node.stop());
    restore_dir(copy, &env.path().join("city"));
    city.node.start();
    city.client().await;
}

/// 00145 writes a record of its own it never wrote before (one per
/// sequence number): its key, sequence and the city's receipt.
async fn own_write(city: &City, env: &Env) -> (RecordKey, u64, Vec<u8>) {
    let mut forger = Forger::open(city, env, "00145").await;
    let own = rec(&WardCode::parse("00145").unwrap(), 500 + forger.seq as u32 % 3000);
    let key = own.key().unwrap();
    forger.send(&key, Op::Put(own), VersionVector::default(), None).await;
    (key, forger.seq, forger.receipt.clone())
}

/// 00145 says the city acknowledged up to `seq`, giving back `receipt`.
async fn claim_acked(city: &City, env: &Env, seq: u64, receipt: Vec<u8>) -> pb::Welcome {
    hello_as_00145(city, env, |h| (h.acked_seq, h.acked_receipt_seq, h.acked_receipt) = (seq, seq, receipt))
        .await
}

/// Makes the city really lose a change of 00145's that it acknowledged
/// (put back to a copy of its data taken just before the change), and has
/// 00145 give back the city's receipt for it: 00145's refill window opens
/// on the city's own evidence, as after any restore of the city's
/// database. Returns 00145's last sequence number.
async fn a_real_loss_for_00145(city: &mut City, env: &Env) -> u64 {
    let copy = copy_city(city, env, &format!("city-copy-{}", wardsync::clock::now_ms())).await;
    let (key, seq, receipt) = own_write(city, env).await;
    assert!(city_record(&mut city.client().await, &key).await.is_some());
    put_city_back(city, env, &copy).await;
    let mut q = city.client().await;
    assert_eq!(city_record(&mut q, &key).await, None, "the copy predates the change");
    let welcome = claim_acked(city, env, seq, receipt).await;
    assert_eq!(welcome.lost_changes, 1, "{welcome:?}");
    assert!(loss_of_00145(&mut q).await.1 > 0, "the loss the receipt proves is recorded");
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_is_recorded_only_on_the_citys_own_receipt() {
    let env = Env::new();
    let mut city = City::start(&env);
    let owner = Ward::start(&env, "00082", city.addr);
    let (mut w, mut q) = (owner.client().await, city.client().await);
    let (citizen, _, _) = samples("00082");
    w.put(pb::PutRequest { record: Some((&citizen).into()) }).await.unwrap();
    drained(&mut w).await;
    // 00145 writes a change of its own, and keeps the city's receipt for it.
    let mut forger = Forger::open(&city, &env, "00145").await;
    let (own, _, _) = samples("00145");
    forger.send(&own.key().unwrap(), Op::Put(own), VersionVector::default(), None).await;
    let receipt = forger.receipt.clone();
    // An ack carries the city's receipt: signed with the city's key, over
    // what it applied and its log's checkpoint, checkable by anyone.
    let (read, signature) = wardsync::city::receipts::Receipt::parse(&receipt).expect("a receipt");
    assert!(matches!(read.said, wardsync::city::receipts::Said::Ack { seq: 1, .. }), "{read:?}");
    let pem = std::fs::read(env.certs().join("city.pem")).unwrap();
    let der = x509_parser::pem::parse_x509_pem(&pem).unwrap().1.contents;
    assert_eq!(wardsync::auth::verify(&der, &read.signed_message(), signature), Ok(()));
    assert!(read.head.0 >= 2, "the checkpoint covers the log so far: {read:?}");
    drop(forger);

    // Claims of a loss without the city's evidence: each is followed where
    // that costs no one else (00145's numbering resumes after what it says
    // was acknowledged; its downstream restarts at the log's end), and none
    // is recorded, so none opens a refill window.
    let welcome = hello_as_00145(&city, &env, |h| h.acked_seq = 10).await;
    assert_eq!((welcome.last_applied_seq, welcome.lost_changes), (10, 9), "{welcome:?}");
    assert_eq!(loss_of_00145(&mut q).await, (0, 0), "a loss recorded on no receipt");
    // (The receipt is for sequence 1.)
    for (acked, named, what) in
        [(20, 20, "on a receipt for another sequence"), (30, 1, "beyond what it proves")]
    {
        let r = receipt.clone();
        let welcome = hello_as_00145(&city, &env, |h| {
            (h.acked_seq, h.acked_receipt_seq, h.acked_receipt) = (acked, named, r);
        })
        .await;
        assert_eq!(welcome.lost_changes, 10, "{welcome:?}");
        assert_eq!(loss_of_00145(&mut q).await, (0, 0), "a loss recorded {what}");
    }
    let welcome = hello_as_00145(&city, &env, |h| h.downstream_cursor = 1 << 40).await;
    assert!(welcome.log_lost && welcome.log_cursor < 1 << 40, "{welcome:?}");
    assert_eq!(loss_of_00145(&mut q).await, (0, 0), "a log loss recorded on no receipt");
    // Each claim is shown to ops, who are alerted on them.
    let wards = city_wards(&mut q).await.unwrap();
    let claims = wards.iter().find(|w| w.ward == "00145").map(|w| w.unproven_claims);
    assert_eq!(claims, Some(4), "three claims of acknowledged changes, one of a log");
    let out =
        stdout(&wardsync(&["status", "--city", &city.url(), "--tls-dir", env.certs().to_str().unwrap()]));
    assert!(out.contains("ward 00145: claimed 4 time(s) that the city lost its data"), "{out}");
    let r = receipt.clone();
    let welcome = hello_as_00145(&city, &env, |h| {
        (h.downstream_cursor, h.downstream_check, h.downstream_receipt) = (1, 12_345, r);
    })
    .await;
    assert!(welcome.log_lost, "{welcome:?}");
    assert_eq!(loss_of_00145(&mut q).await, (0, 0), "a log loss recorded on an ack's receipt");

    // A loss the city's own receipt proves is recorded, and only it.
    let seq = a_real_loss_for_00145(&mut city, &env).await;
    assert_eq!(seq, 31);
    let mut q = city.client().await;
    assert_eq!(loss_of_00145(&mut q).await.0, 1, "only the change the receipt proves lost");

    // A logged change the city sent 00145 and then lost (the office's
    // edit of a record of 00145's, before the city was put back to a copy
    // from before it) is recorded lost once: the receipt that proved it
    // proves nothing more, so the refill window cannot be kept open by
    // giving it back again.
    let before_log_loss = copy_city(&mut city, &env, "city-copy-2").await;
    let mut q = city.client().await;
    let mut forger = Forger::open(&city, &env, "00145").await;
    let (mut edited, _, _) = samples("00145");
    edited.body = match edited.body {
        Body::Citizen(c) => Body::Citizen(Citizen { phone: "0912345678".into(), ..c }),
        other => other,
    };
    q.edit(env.office().edit(edited.clone(), &Default::default())).await.unwrap();
    let down = forger.downstream().await;
    let (read, _) = wardsync::city::receipts::Receipt::parse(&down.receipt).expect("a receipt");
    let said = wardsync::city::receipts::Said::Downstream { cursor: down.cursor, check: down.cursor_check };
    assert_eq!(read.said, said, "a downstream message carries the city's receipt for it");
    drop(forger);
    put_city_back(&mut city, &env, &before_log_loss).await;
    let mut q = city.client().await;
    let claim = |h: &mut pb::Hello| {
        (h.downstream_cursor, h.downstream_check, h.downstream_receipt) =
            (down.cursor, down.cursor_check, down.receipt.clone())
    };
    let welcome = hello_as_00145(&city, &env, claim).await;
    assert!(welcome.log_lost, "{welcome:?}");
    let (_, found_at) = loss_of_00145(&mut q).await;
    assert!(found_at > 0 && found_at == welcome.lost_found_at_ms, "the loss the receipt proves: {welcome:?}");
    // (A replay a millisecond later at least, so that a window opened
    // again would show.)
    while wardsync::clock::now_ms() <= found_at {
        std::hint::spin_loop();
    }
    let again = hello_as_00145(&city, &env, claim).await;
    assert!(again.log_lost, "{again:?}");
    assert_eq!(loss_of_00145(&mut q).await.1, found_at, "the window opened again on a receipt given back");

    // The city put back again to the same copy, from before that loss: the
    // receipts made since it was recorded still prove what it lost.
    let (lost, _) = loss_of_00145(&mut q).await;
    let (_, seq, receipt) = own_write(&city, &env).await;
    put_city_back(&mut city, &env, &before_log_loss).await;
    let welcome = claim_acked(&city, &env, seq, receipt).await;
    assert_eq!((seq, welcome.lost_changes), (32, 1), "{welcome:?}");
    let mut q = city.client().await;
    let (now_lost, now_found) = loss_of_00145(&mut q).await;
    assert!(
        now_lost > lost && now_found > found_at,
        "a receipt made after a loss the copy predates: {welcome:?}"
    );

    // A receipt never speaks for sequences 00145's numbering moved past on
    // its word: after a jump, a write, and the city put back to before the
    // jump, only the write is recorded lost.
    let before_jump = copy_city(&mut city, &env, "city-copy-3").await;
    let welcome = hello_as_00145(&city, &env, |h| h.acked_seq = seq + 100).await;
    assert_eq!(welcome.last_applied_seq, seq + 100);
    let (_, after_jump, receipt) = own_write(&city, &env).await;
    assert_eq!(after_jump, seq + 101);
    put_city_back(&mut city, &env, &before_jump).await;
    let mut q = city.client().await;
    let (lost, _) = loss_of_00145(&mut q).await;
    let welcome = claim_acked(&city, &env, after_jump, receipt).await;
    assert_eq!(welcome.lost_changes, 101, "the ward resumes after all it says was acknowledged");
    assert_eq!(loss_of_00145(&mut q).await.0, lost + 1, "only the write the receipt speaks for is recorded");
    assert_same_records(&mut w, &mut q, "00082").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_serves_a_ward_only_its_own_records_and_takes_nothing_for_another_wards() {
    let env = Env::new();
    let mut city = City::start(&env);
    let owner = Ward::start(&env, "00082", city.addr);
    let mut w = owner.client().await;
    let mut q = city.client().await;
    let (citizen, _, _) = samples("00082");
    let key = citizen.key().unwrap();
    w.put(pb::PutRequest { record: Some((&citizen).into()) }).await.unwrap();
    drained(&mut w).await;

    // Another ward, or the office, may not read 00082's copy.
    // Nor end its replication stream (as a ward restoring itself does).
    let reconnects = status(&mut w).await.unwrap().reconnects;
    let mut hostile = sync_client(&city, &env, "ward-00145").await;
    let fence = pb::DigestRequest { ward_code: "00082".into(), end_streams: true };
    let denied = hostile.digest(fence).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied}");
    let keys = pb::DigestKeysRequest { ward_code: "00082".into(), ..Default::default() };
    assert_eq!(hostile.digest_keys(keys).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    let mut office = sync_client(&city, &env, "office").await;
    let fence = pb::DigestRequest { ward_code: "00082".into(), end_streams: true };
    let denied = office.digest(fence).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied}");
    // Its own digest is empty; bounds are checked.
    let own = hostile
        .digest(pb::DigestRequest { ward_code: "00145".into(), end_streams: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.counts.iter().sum::<u32>(), 0);
    let bad = pb::DigestKeysRequest { ward_code: "00145".into(), buckets: vec![4096], after: None };
    assert_eq!(hostile.digest_keys(bad).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    let many = pb::RepairRequest { ward_code: "00145".into(), records: vec![pb::KeyedState::default(); 501] };
    assert_eq!(hostile.repair(many).await.unwrap_err().code(), tonic::Code::InvalidArgument);

    // 00145 offers 00082's record with a write of its own, and one forged
    // as 00082's and one as the office's: nothing is taken.
    let state = q
        .get_state(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    let held = wardsync::proto::versioned_from_pb(state);
    let now = wardsync::clock::now_ms() as u64;
    let forge = |writers: &[&str]| {
        let mut forged = held.clone();
        for (i, writer) in writers.iter().enumerate() {
            let stamp =
                Stamp { hlc: Hlc { wall_ms: now + i as u64, logical: 0 }, writer: writer.to_string() };
            let context = forged.seen.clone();
            forged.merge_write(
                "phone",
                wardsync::model::FieldWrite { value: format!("\"09{i}0000000\""), stamp, context },
            );
        }
        forged
    };
    let reply = offer(&mut hostile, &key, &forge(&["00145", "00082", "city"])).await;
    assert_eq!(reply.repaired, 0, "{reply:?}");
    assert_eq!(reply.others_not_taken, 2, "the forged writes of others: {reply:?}");
    assert!(reply.refused[0].contains("belongs to ward 00082"), "{reply:?}");
    assert_eq!(city_record(&mut q, &key).await.as_ref(), Some(&citizen));
    // Claiming the city lost what it sent down opens no refill window: the
    // writes of others 00145 offers are not taken.
    claim_a_loss(&city, &env).await;
    let reply = offer(&mut hostile, &key, &forge(&["00082", "city"])).await;
    assert_eq!((reply.repaired, reply.others_taken, reply.others_not_taken), (0, 0, 2), "{reply:?}");
    assert_eq!(city_record(&mut q, &key).await.as_ref(), Some(&citizen));
    // And 00082's own comparison finds its copy and the city's equal.
    let v = w.verify(pb::VerifyRequest {}).await.unwrap().into_inner();
    assert!(v.in_sync && v.differing == 0, "{v:?}");
    // Its replication stream was never ended: the one it had carries a
    // new write.
    let (_, business, _) = samples("00082");
    w.put(pb::PutRequest { record: Some((&business).into()) }).await.unwrap();
    drained(&mut w).await;
    assert_eq!(status(&mut w).await.unwrap().reconnects, reconnects, "00082 was made to reconnect");

    // Nor after a loss the city's receipt proves: the office's write is
    // taken only on its signed request; another ward's, only into a record
    // of 00145's own.
    a_real_loss_for_00145(&mut city, &env).await;
    let (mut hostile, mut q) = (sync_client(&city, &env, "ward-00145").await, city.client().await);
    let reply = offer(&mut hostile, &key, &forge(&["00082", "city"])).await;
    assert_eq!((reply.repaired, reply.others_taken, reply.others_not_taken), (0, 0, 1), "{reply:?}");
    assert!(reply.refused[0].contains("ward 00145 may not refill it"), "{reply:?}");
    assert_eq!(city_record(&mut q, &key).await.as_ref(), Some(&citizen));
}

/// The city lost the office's correction of a record of 00145's (put back
/// to a copy from before it); 00145 holds it, with the evidence the city
/// sent with it. Given back with that evidence, it is taken; altered, with
/// none, with the evidence re-signed by 00145's own key, or the evidence
/// replayed for another record, it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_another_is_taken_back_only_on_its_authors_signature() {
    use wardsync::store::Authorship;
    let env = Env::new();
    let mut city = City::start(&env);
    city.client().await;
    let mut forger = Forger::open(&city, &env, "00145").await;
    let code = WardCode::parse("00145").unwrap();
    let mut citizens = (0..200).map(|i| rec(&code, i)).filter(|r| matches!(r.body, Body::Citizen(_)));
    let (own, other) = (citizens.next().unwrap(), citizens.next().unwrap());
    let key = own.key().unwrap();
    forger.send(&key, Op::Put(own.clone()), VersionVector::default(), None).await;
    forger.send(&other.key().unwrap(), Op::Put(other.clone()), VersionVector::default(), None).await;
    let copy = copy_city(&mut city, &env, "before-the-correction").await;
    let mut forger = Forger::open(&city, &env, "00145").await;
    let mut q = city.client().await;
    let edited = match own.body.clone() {
        Body::Citizen(c) => {
            Record { body: Body::Citizen(Citizen { phone: "0912345678".into(), ..c }), ..own.clone() }
        }
        _ => unreachable!("samples give a citizen first"),
    };
    q.edit(env.office().edit(edited.clone(), &Default::default())).await.unwrap();
    let down = forger.downstream().await;
    let evidence = down.changes[0].authorship.clone();
    assert!(
        matches!(Authorship::decode(&evidence), Ok(Authorship::Office { .. })),
        "the office's change comes with its signed request"
    );
    let (held, _) = city_state(&mut q, &key).await;
    drop(forger);
    put_city_back(&mut city, &env, &copy).await;
    let (mut hostile, mut q) = (sync_client(&city, &env, "ward-00145").await, city.client().await);
    assert_eq!(city_record(&mut q, &key).await.as_ref(), Some(&own), "the correction is lost");

    // Without evidence: counted, not taken.
    let reply = offer(&mut hostile, &key, &held).await;
    assert_eq!((reply.others_taken, reply.others_not_taken), (0, 1), "{reply:?}");
    // Altered (another phone under the office's stamp), with the evidence.
    let mut altered = held.clone();
    for w in altered.fields.get_mut("phone").unwrap() {
        w.value = "\"0999999999\"".into();
    }
    let reply = offer_with(&mut hostile, &key, &altered, vec![evidence.clone()]).await;
    assert_eq!((reply.others_taken, reply.others_not_taken), (0, 1), "{reply:?}");
    // The request replayed for another record of 00145's.
    let okey = other.key().unwrap();
    let (mut other_held, _) = city_state(&mut q, &okey).await;
    let office_write = held.fields["phone"].iter().find(|w| w.stamp.writer == "city").unwrap().clone();
    other_held.merge_write("phone", office_write.clone());
    let reply = offer_with(&mut hostile, &okey, &other_held, vec![evidence.clone()]).await;
    assert_eq!((reply.others_taken, reply.others_not_taken), (0, 1), "{reply:?}");
    // Evidence 00145 makes itself: its own key's signature over the write
    // as the office's (a ward's signature vouches only for its own writes).
    let signer = Signer::load(&TlsFiles::in_dir(&env.certs(), "ward-00145")).unwrap();
    let pem = std::fs::read(env.certs().join("ward-00145.pem")).unwrap();
    let cert = x509_parser::pem::parse_x509_pem(&pem).unwrap().1.contents;
    let change = Change {
        seq: 0,
        written_at_ms: 0,
        key: key.clone(),
        stamp: office_write.stamp.clone(),
        context: office_write.context.clone(),
        fields: vec!["phone".into()],
        op: Op::Put(edited.clone()),
    };
    let hash = wardsync::model::signed::content_hash(&change, &signer.key_id());
    let resigned = Authorship::Ward {
        hash,
        key: signer.key_id(),
        cert,
        signature: signer.sign(&wardsync::model::signed::authored_message(&hash)),
        sent: None,
    };
    let reply = offer_with(&mut hostile, &key, &held, vec![resigned.encode()]).await;
    assert_eq!((reply.others_taken, reply.others_not_taken), (0, 1), "{reply:?}");
    // The office's request replayed for a write it did not make: its very
    // values, under another stamp, having seen everything.
    let mut replayed = held.clone();
    for w in replayed.fields.values_mut().flatten().filter(|w| w.stamp.writer == "city") {
        w.stamp.hlc.logical += 1;
        w.context = held.seen.clone();
    }
    let reply = offer_with(&mut hostile, &key, &replayed, vec![evidence.clone()]).await;
    assert_eq!((reply.others_taken, reply.others_not_taken), (0, 1), "{reply:?}");
    assert_eq!(city_record(&mut q, &key).await.as_ref(), Some(&own), "nothing taken");

    // As the office signed it: taken back, and kept with its request.
    let reply = offer_with(&mut hostile, &key, &held, vec![evidence]).await;
    assert_eq!((reply.others_taken, reply.others_not_taken), (1, 0), "{reply:?}");
    assert_eq!(city_record(&mut q, &key).await.as_ref(), Some(&edited));
    let history = q.history(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() }).await;
    let last = history.unwrap().into_inner().entries.pop().unwrap();
    assert!(
        last.identity.starts_with("office [request ") && last.identity.ends_with("(relayed by ward 00145)"),
        "{last:?}"
    );

    // The city keeps the evidence it took the write on, and the audit
    // checks it again: the city's statement of what it derived, altered
    // in the stopped store, is named.
    drop((hostile, q));
    assert!(city.node.stop(), "the city stops cleanly");
    let clean = env.audit_stopped_city();
    assert!(clean.status.success(), "{}{}", stdout(&clean), stderr(&clean));
    env.alter_stopped_city(b'R', -1).await; // in the city's signature
    let found = env.audit_stopped_city();
    assert_eq!(found.status.code(), Some(2), "{}{}", stdout(&found), stderr(&found));
    assert!(stdout(&found).contains("the city's statement kept with log entry"), "{}", stdout(&found));
}

/// The city's state of `key`, and the record it shows.
async fn city_state(
    q: &mut CityQueryClient<Channel>,
    key: &RecordKey,
) -> (wardsync::model::Versioned, Record) {
    let reply = q
        .get_state(pb::CityGetRequest { key: Some(key.into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    (
        wardsync::proto::versioned_from_pb(reply.state.unwrap()),
        wardsync::proto::record_from_pb(reply.record).unwrap(),
    )
}

fn person(r: &Record) -> Citizen {
    match &r.body {
        Body::Citizen(c) => c.clone(),
        _ => panic!("not a citizen: {r:?}"),
    }
}

fn fields(names: &[&str]) -> Vec<String> {
    names.iter().map(|f| f.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exceptions_to_ownership_take_nothing_on_the_senders_word() {
    let env = Env::new();
    let mut city = City::start(&env);
    let owner = Ward::start(&env, "00082", city.addr);
    // A third ward's real agent, for the local API (00145's certificate is the forger's).
    let third = WardCode::parse("09784").unwrap();
    wardsync::auth::DevCa::open_or_create(&env.certs()).unwrap().issue_ward(&third).unwrap();
    let other = Ward::start(&env, third.as_str(), city.addr);
    let (mut w, mut local, mut q) = (owner.client().await, other.client().await, city.client().await);
    let (_, _, parcel) = samples("00082");
    // An adult: a registrar would marry them, were they alive.
    let ward = WardCode::parse("00082").unwrap();
    let mut citizen = (0..400)
        .map(|i| rec(&ward, i))
        .find(|r| matches!(&r.body, Body::Citizen(c) if c.date_of_birth.to_string().as_str() < "1990"))
        .unwrap();
    if let Body::Citizen(c) = &mut citizen.body {
        c.marital_status = MaritalStatus::Single;
        c.events.retain(|e| e.kind == EventKind::Birth);
    }
    let key = citizen.key().unwrap();
    w.put(pb::PutRequest { record: Some((&citizen).into()) }).await.unwrap();
    drained(&mut w).await;
    let mut forger = Forger::open(&city, &env, "00145").await;
    let b = WardCode::parse("00145").unwrap();

    // 1. A "transfer" that renames the citizen and erases their events,
    // built on everything the city holds: refused. Through 00145's own
    // agent too, with the fields that differ named.
    let (held, _) = city_state(&mut q, &key).await;
    let mut moved = citizen.clone();
    moved.ward = b.clone();
    if let Body::Citizen(c) = &mut moved.body {
        c.permanent_residence.commune_code = "00145".into();
        c.full_name = "Huỳnh Xuân Quân".into();
        c.events.clear();
    }
    let sets = fields(&["ward", "permanent_residence", "full_name", "events"]);
    forger.send_fields(&key, Op::Put(moved.clone()), held.seen.clone(), None, sets).await;
    assert_eq!(city_record(&mut q, &key).await.as_ref(), Some(&citizen), "the transfer rewrote the citizen");
    moved.ward = third.clone();
    if let Body::Citizen(c) = &mut moved.body {
        c.permanent_residence.commune_code = third.to_string();
    }
    let refused = local.transfer(pb::PutRequest { record: Some((&moved).into()) }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("also sets events, full_name, which differ"), "{refused:?}");
    assert_eq!(city_record(&mut q, &key).await.as_ref(), Some(&citizen));

    // 2. A death registered properly by 00145 is accepted; it is no key to
    // the record: a plain put by 00145 afterwards is refused.
    let today = wardsync::clock::today();
    let died = Registration::Death { person: key.id().to_string(), date: today };
    let (held, shown) = city_state(&mut q, &key).await;
    let dead = Record {
        ward: shown.ward.clone(),
        body: Body::Citizen(died.apply(&[person(&shown)], &b, "GT-1").remove(0)),
    };
    forger.send_fields(&key, Op::Put(dead), held.seen.clone(), None, fields(&["events"])).await;
    let after_death = city_record(&mut q, &key).await.unwrap();
    assert!(civil::is_dead(&person(&after_death)), "the registration is applied: {after_death:?}");
    let mut taken = citizen.clone();
    taken.ward = b.clone();
    forger.send(&key, Op::Put(taken), VersionVector::default(), None).await;
    assert_eq!(
        city_record(&mut q, &key).await.as_ref(),
        Some(&after_death),
        "taken with a registration's key"
    );

    // 3. A marriage after the death, claiming to have seen nothing (the
    // events as they were before the death): refused as a registrar would.
    let wed = Registration::Marriage { spouses: [key.id().to_string(), "001090000123".into()], date: today };
    let married = Record {
        ward: citizen.ward.clone(),
        body: Body::Citizen(wed.apply(&[person(&citizen)], &b, "").remove(0)),
    };
    let sets = fields(&["events", "marital_status"]);
    forger.send_fields(&key, Op::Put(married), VersionVector::default(), None, sets).await;
    assert_eq!(city_record(&mut q, &key).await.as_ref(), Some(&after_death), "alive and married again");

    // 4. A loss claimed, and a loss the city's receipt proves (each
    // opening a refill window before), then deletes of a parcel the city
    // has never seen, ten years ahead and a minute ahead: the parcel 00082
    // creates afterwards is visible, at the city and at 00082.
    claim_a_loss(&city, &env).await;
    a_real_loss_for_00145(&mut city, &env).await;
    let mut q = city.client().await;
    let mut forger = Forger::open(&city, &env, "00145").await;
    let pkey = parcel.key().unwrap();
    let now = wardsync::clock::now_ms() as u64;
    for ahead in [10 * 365 * 86_400_000, 60_000] {
        let hlc = Hlc { wall_ms: now + ahead, logical: 0 };
        forger.send(&pkey, Op::Delete, VersionVector::default(), Some(hlc)).await;
    }
    w.put(pb::PutRequest { record: Some((&parcel).into()) }).await.unwrap();
    drained(&mut w).await;
    assert_eq!(city_record(&mut q, &pkey).await.as_ref(), Some(&parcel), "00082's new parcel is hidden");

    // Every attempt is in the quarantine; 00082's copy and the city's agree.
    let entries = held_of_00145(&mut q).await;
    let refused: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    // (5 was 00145's own write, which the city lost.)
    assert_eq!(refused, [1, 3, 4, 6, 7], "{entries:#?}");
    assert_same_records(&mut w, &mut q, "00082").await;
}

/// Oversized and NUL-laden changes from 00145, on a city with `config`:
/// each kept raw in the quarantine with a printable reason, while ward
/// 00082 writes on, hears of the office's edit, and the office's change
/// feed reads to its end.
async fn malformed_changes_stall_no_one(config: &str) {
    let env = Env::new();
    let city = City::start_configured(&env, config);
    let owner = Ward::start(&env, "00082", city.addr);
    let (mut w, mut q) = (owner.client().await, city.client().await);
    let (citizen, business, _) = samples("00082");
    let key = citizen.key().unwrap();
    w.put(pb::PutRequest { record: Some((&citizen).into()) }).await.unwrap();
    drained(&mut w).await;
    let mut forger = Forger::open(&city, &env, "00145").await;
    let (held, shown) = city_state(&mut q, &key).await;

    // A "registration" naming its field 400,000 times (some 3 MB).
    let mut many = vec!["events".to_string(); 400_000];
    many.push("marital_status".into());
    forger.send_fields(&key, Op::Put(shown.clone()), held.seen.clone(), None, many).await;
    // NUL in a field name, in a writer its context names, in a text.
    let (mine, _, _) = samples("00145");
    let mkey = mine.key().unwrap();
    let mut named = fields(&["phone"]);
    named.push("phone\0".into());
    forger.send_fields(&mkey, Op::Put(mine.clone()), VersionVector::default(), None, named).await;
    forger.send(&mkey, Op::Put(mine.clone()), vv(&[("00082\0", Hlc::default())]), None).await;
    let mut nul = mine.clone();
    if let Body::Citizen(c) = &mut nul.body {
        c.full_name = "Nguyễn\0Văn".into();
    }
    forger.send(&mkey, Op::Put(nul), VersionVector::default(), None).await;
    // A claim of a write the city does not hold, by a writer of its own
    // making: its reason quotes the writer.
    forger.send(&mkey, Op::Put(mine.clone()), vv(&[("00091", Hlc { wall_ms: 9, logical: 0 })]), None).await;

    // 00082 writes on; the office's edit reaches its agent.
    w.put(pb::PutRequest { record: Some((&business).into()) }).await.unwrap();
    drained(&mut w).await;
    let edited = wardsync::generate::amend(&citizen, 3);
    q.edit(env.office().edit(edited.clone(), &Default::default())).await.unwrap();
    wardsync::cli::wait::until(DEADLINE, "the office's edit at 00082's agent", || {
        let (mut w, key, want) = (w.clone(), key.clone(), edited.clone());
        async move {
            let got = w.get(pb::GetRequest { key: Some((&key).into()) }).await?.into_inner();
            Ok(wardsync::proto::record_from_pb(got.record)? == want)
        }
    })
    .await
    .unwrap();
    let log = common::ledger::read_log(&mut q).await.unwrap();
    assert!(log.iter().all(|l| l.ward != "00145"), "nothing of 00145's was applied");
    let entries = held_of_00145(&mut q).await;
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5], "{entries:#?}");
    for e in &entries {
        assert!(!e.reason.chars().any(char::is_control), "a printable reason: {:?}", e.reason);
    }
    assert!(entries[0].reason.contains("events is named twice"), "{}", entries[0].reason);
    assert!(entries[3].reason.contains("U+0000"), "{}", entries[3].reason);
    assert_same_records(&mut w, &mut q, "00082").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_changes_stall_no_one_on_the_embedded_store() {
    malformed_changes_stall_no_one("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_changes_stall_no_one_on_postgresql() {
    let pg = common::pg::Postgres::start();
    malformed_changes_stall_no_one(&format!("[database]\nurl = \"{}\"\n", pg.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_reads_only_what_it_needs_and_pays_for_what_costs_the_city() {
    let env = Env::new();
    let city = City::start(&env);
    let owner = Ward::start(&env, "00082", city.addr);
    let (mut w, mut office) = (owner.client().await, city.client().await);
    let (citizen, business, _) = samples("00082");
    let (key, bkey) = (citizen.key().unwrap(), business.key().unwrap());
    for r in [&citizen, &business] {
        w.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap();
    }
    w.delete(pb::DeleteRequest { key: Some((&bkey).into()) }).await.unwrap();
    drained(&mut w).await;
    let mut hostile = city.client_as("ward-00145").await;

    // Past values are the office's: a ward may not read a record as it was,
    // nor the values of a deleted one.
    let as_of = pb::CityGetRequest { key: Some((&key).into()), as_of_ms: wardsync::clock::now_ms() };
    let denied = hostile.get(as_of.clone()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(office.get(as_of).await.is_ok(), "the office reads it");
    let deleted = pb::CityGetRequest { key: Some((&bkey).into()), ..Default::default() };
    let hidden = hostile.get_state(deleted.clone()).await.unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound, "{hidden:?}");
    let state = office.get_state(deleted).await.unwrap().into_inner();
    assert!(state.record.is_none() && state.state.is_some(), "the office sees the deleted record's state");
    let live = pb::CityGetRequest { key: Some((&key).into()), ..Default::default() };
    assert!(hostile.get_state(live).await.is_ok(), "a live record's state, to build a registration on");

    // A digest of all of a ward's records costs a hundred requests: a
    // ward asking for one again and again is slowed down long before the
    // plain request rate would.
    let mut sync = sync_client(&city, &env, "ward-00145").await;
    let mut slowed = None;
    for n in 0..120 {
        let ask = pb::DigestRequest { ward_code: "00145".into(), end_streams: false };
        if let Err(s) = sync.digest(ask).await {
            slowed = Some((n, s));
            break;
        }
    }
    let (n, status) = slowed.expect("120 digests in a row are slowed down");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(n >= 40, "the burst allows some ({n})");
}

/// With the form check switched off (a deliberate bug), a change whose
/// `fields` carry a NUL reaches PostgreSQL, which refuses the whole group
/// it is in: the group is split, the other wards' batches and the ward's
/// own good changes commit, and the refused change is quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_database_refuses_fails_no_one_else() {
    let pg = common::pg::Postgres::start();
    let mut env = Env::new();
    env.node_env.push(("WARDSYNC_MUTATION".into(), "skip-form-check".into()));
    let city = City::start_configured(&env, &format!("[database]\nurl = \"{}\"\n", pg.url()));
    let owner = Ward::start(&env, "00082", city.addr);
    let (mut w, mut q) = (owner.client().await, city.client().await);
    let code = WardCode::parse("00082").unwrap();
    let writing = {
        let mut w = w.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                w.put(pb::PutRequest { record: Some((&rec(&code, i)).into()) }).await.unwrap();
            }
        })
    };
    let mut forger = Forger::open(&city, &env, "00145").await;
    let ward = WardCode::parse("00145").unwrap();
    let now = wardsync::clock::now_ms();
    let change = |seq: u64, r: Record, fields: Vec<String>| Change {
        seq,
        written_at_ms: now,
        key: r.key().unwrap(),
        stamp: Stamp { hlc: Hlc { wall_ms: now as u64, logical: seq as u32 }, writer: "00145".into() },
        context: VersionVector::default(),
        fields,
        op: Op::Put(r),
    };
    let (a, b) = (rec(&ward, 0), rec(&ward, 1));
    let mut poisoned = flatten(&b).into_keys().collect::<Vec<_>>();
    poisoned.push("phone\0".into());
    let batch = [
        change(1, a.clone(), flatten(&a).into_keys().collect()),
        change(2, b.clone(), poisoned),
        change(3, rec(&ward, 2), flatten(&rec(&ward, 2)).into_keys().collect()),
    ];
    let batch = forger.chain.batch(&batch);
    forger.tx.send(pb::WardMessage { msg: Some(ward_message::Msg::Batch(batch)) }).await.unwrap();
    let acked = loop {
        match forger.inbound.message().await.unwrap().and_then(|m| m.msg) {
            Some(city_message::Msg::Ack(a)) => break a.applied_seq,
            Some(city_message::Msg::Downstream(_)) => {}
            other => panic!("expected Ack, got {other:?}"),
        }
    };
    assert_eq!(acked, 3, "the batch is answered, not retried forever");
    writing.await.unwrap();
    drained(&mut w).await;
    assert_same_records(&mut w, &mut q, "00082").await;
    let log = common::ledger::read_log(&mut q).await.unwrap();
    let theirs: Vec<u64> =
        log.iter().filter(|l| l.ward == "00145").map(|l| l.change.as_ref().unwrap().seq).collect();
    assert_eq!(theirs, [1, 3], "the ward's good changes are applied");
    let held = held_of_00145(&mut q).await;
    assert_eq!(held.iter().map(|e| e.seq).collect::<Vec<_>>(), [2], "{held:#?}");
    assert!(held[0].reason.contains("database refused"), "{}", held[0].reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_and_a_loss_together_open_nothing() {
    let env = Env::new();
    let mut city = City::start(&env);
    let owner = Ward::start(&env, "00082", city.addr);
    let (mut w, mut q) = (owner.client().await, city.client().await);
    let ward = WardCode::parse("00082").unwrap();
    let adults: Vec<Record> = (0..400)
        .map(|i| rec(&ward, i))
        .filter(|r| matches!(&r.body, Body::Citizen(c) if c.date_of_birth.to_string().as_str() < "1990"))
        .take(3)
        .collect();
    let (x, y, z) = (adults[0].clone(), adults[1].clone(), adults[2].clone());
    let (xkey, ykey, zkey) = (x.key().unwrap(), y.key().unwrap(), z.key().unwrap());
    for r in [&x, &y, &z] {
        w.put(pb::PutRequest { record: Some(r.into()) }).await.unwrap();
    }
    for k in [&ykey, &zkey] {
        w.delete(pb::DeleteRequest { key: Some(k.into()) }).await.unwrap();
    }
    drained(&mut w).await;
    let b = WardCode::parse("00145").unwrap();

    // 00145 registers a death on X, properly: accepted.
    let mut forger = Forger::open(&city, &env, "00145").await;
    let (held, shown) = city_state(&mut q, &xkey).await;
    let died = Registration::Death { person: xkey.id().to_string(), date: wardsync::clock::today() };
    let dead =
        Record { ward: ward.clone(), body: Body::Citizen(died.apply(&[person(&shown)], &b, "").remove(0)) };
    forger.send_fields(&xkey, Op::Put(dead), held.seen.clone(), None, fields(&["events"])).await;
    let after_death = city_record(&mut q, &xkey).await.unwrap();
    assert!(civil::is_dead(&person(&after_death)));

    // Then the city loses a write of 00145's (a refill window on the
    // city's own evidence), and 00145 writes X as a concurrent "former
    // owner", deletes it, registers on the deleted Y, and asks for X's
    // state in a repair.
    a_real_loss_for_00145(&mut city, &env).await;
    let mut q = city.client().await;
    let mut sync = sync_client(&city, &env, "ward-00145").await;
    let mut forger = Forger::open(&city, &env, "00145").await;
    let (held, _) = city_state(&mut q, &xkey).await;
    let own_claim = vv(&[("00145", held.seen.0["00145"])]);
    let mut rewritten = x.clone();
    if let Body::Citizen(c) = &mut rewritten.body {
        c.full_name = "Giả Danh".into();
        c.phone = "0900000000".into();
    }
    let mut sets = flatten(&rewritten).into_keys().collect::<Vec<_>>();
    sets.retain(|f| f != "ward");
    forger.send_fields(&xkey, Op::Put(rewritten), own_claim.clone(), None, sets).await;
    forger.send(&xkey, Op::Delete, own_claim, None).await;
    let yheld = q.get_state(pb::CityGetRequest { key: Some((&ykey).into()), ..Default::default() }).await;
    let yheld = wardsync::proto::versioned_from_pb(yheld.unwrap().into_inner().state.unwrap());
    let mut revived = y.clone();
    if let Body::Citizen(c) = &mut revived.body {
        c.events.push(
            civil::Registration::Death { person: ykey.id().into(), date: wardsync::clock::today() }
                .event_for(ykey.id(), "00145", ""),
        );
    }
    forger.send_fields(&ykey, Op::Put(revived), yheld.seen.clone(), None, fields(&["events"])).await;
    assert_eq!(city_record(&mut q, &xkey).await.as_ref(), Some(&after_death), "X taken over or deleted");
    assert_eq!(city_record(&mut q, &ykey).await, None, "the deleted Y brought back");
    // Nor does a repair take, as 00145's own, a write of X's phone it says
    // it made concurrently with X's owner.
    let (held, _) = city_state(&mut q, &xkey).await;
    let mut forged = held.clone();
    let stamp =
        Stamp { hlc: Hlc { wall_ms: wardsync::clock::now_ms() as u64, logical: 0 }, writer: "00145".into() };
    let context = vv(&[("00145", held.seen.0["00145"])]);
    forged.merge_write("phone", FieldWrite { value: "\"0900000000\"".into(), stamp, context });
    let reply = offer(&mut sync, &xkey, &forged).await;
    assert_eq!(reply.repaired, 0, "{reply:?}");
    assert_eq!(city_record(&mut q, &xkey).await.as_ref(), Some(&after_death), "X's phone taken");
    // Nor does a repair serve it the state of a deleted record of another's.
    let offer = pb::RepairRequest {
        ward_code: "00145".into(),
        records: vec![pb::KeyedState {
            key: Some((&zkey).into()),
            hash: vec![],
            state: Some(pb::RecordState::default()),
            authorship: vec![],
        }],
    };
    let reply = sync.repair(offer).await.unwrap().into_inner();
    let leaked = reply.states.iter().flat_map(|s| s.state.iter()).any(|s| !s.writes.is_empty());
    assert!(!leaked, "a repair serves another ward's deleted record: {reply:?}");
    assert_same_records(&mut w, &mut q, "00082").await;
}
