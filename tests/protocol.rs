//! The replication protocol and its security, spoken directly to a real city
//! process with real certificates: re-sends, foreign records, identities.

mod common;

use std::path::Path;

use common::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use wardsync::auth::{Signer, TlsFiles, client_tls};
use wardsync::model::signed::{self, GENESIS, Hash};
use wardsync::model::{Body, Change, Hlc, Op, Record, Stamp, WardCode, flatten};
use wardsync::proto::pb::{self, city_message, city_sync_client::CitySyncClient, ward_message};
use wardsync::ward::chain::Chainer;

struct Session {
    tx: mpsc::Sender<pb::WardMessage>,
    inbound: tonic::Streaming<pb::CityMessage>,
    /// Chains and signs as ward `code`'s agent does.
    code: String,
    signer: Option<Arc<Signer>>,
    /// Links the chain is known at: the city's, and those sent.
    links: BTreeMap<u64, Hash>,
}

async fn open(city: &City, tls: ClientTlsConfig, claim: &str) -> Result<(Session, u64), tonic::Status> {
    open_as(city, (tls, None), claim).await
}

/// A session chaining and signing with `signer` (else with the key of the
/// certificate of `claim` in the city's environment, if any).
async fn open_as(
    city: &City,
    (tls, signer): (ClientTlsConfig, Option<Arc<Signer>>),
    claim: &str,
) -> Result<(Session, u64), tonic::Status> {
    let channel = Endpoint::from_shared(city.url())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
    let (tx, rx) = mpsc::channel(8);
    tx.send(hello(claim)).await.unwrap();
    let mut inbound = CitySyncClient::new(channel).replicate(ReceiverStream::new(rx)).await?.into_inner();
    match inbound.message().await?.and_then(|m| m.msg) {
        Some(city_message::Msg::Welcome(w)) => {
            let mut links = BTreeMap::from([(0, GENESIS)]);
            if let Some(l) = signed::hash_from(&w.link) {
                links.insert(w.last_applied_seq, l);
            }
            let session = Session { tx, inbound, code: claim.into(), signer, links };
            Ok((session, w.last_applied_seq))
        }
        other => panic!("expected Welcome, got {other:?}"),
    }
}

fn ward_tls(certs: &Path, code: &str) -> ClientTlsConfig {
    client_tls(&TlsFiles::in_dir(certs, &format!("ward-{code}")), "city").unwrap()
}

/// A session of ward `code`'s, with its certificate and key.
async fn open_ward(city: &City, certs: &Path, code: &str) -> Result<(Session, u64), tonic::Status> {
    open_as(city, (ward_tls(certs, code), ward_signer(certs, code)), code).await
}

fn ward_signer(certs: &Path, code: &str) -> Option<Arc<Signer>> {
    Some(Arc::new(Signer::load(&TlsFiles::in_dir(certs, &format!("ward-{code}"))).unwrap()))
}

impl Session {
    /// `changes` as one replication message, chained on the link before
    /// the first (the genesis if not known) and signed.
    fn batch(&mut self, changes: &[Change]) -> pb::WardMessage {
        let first = changes.first().map_or(1, |c| c.seq);
        let before = self.links.get(&(first - 1)).copied().unwrap_or(GENESIS);
        let mut chain =
            Chainer::new(WardCode::parse(&self.code).unwrap(), self.signer.clone(), (first - 1, before));
        let batch = chain.batch(changes);
        self.links.insert(chain.head().0, chain.head().1);
        pb::WardMessage { msg: Some(ward_message::Msg::Batch(batch)) }
    }

    async fn send(&mut self, changes: &[Change]) -> Result<u64, tonic::Status> {
        let batch = self.batch(changes);
        self.tx.send(batch).await.unwrap();
        match self.inbound.message().await?.and_then(|m| m.msg) {
            Some(city_message::Msg::Ack(a)) => Ok(a.applied_seq),
            other => panic!("expected Ack, got {other:?}"),
        }
    }
}

/// Change `seq` puts sample record `i` of ward `owner` (slot `slot`).
fn change(seq: u64, owner: &str, slot: u32, i: u32) -> Change {
    let r = rec(&WardCode::parse(owner).unwrap(), slot * 1000 + i);
    // Sent by ward 00082 in these tests, stamped now.
    let stamp = Stamp {
        hlc: Hlc { wall_ms: wardsync::clock::now_ms() as u64, logical: seq as u32 },
        writer: "00082".into(),
    };
    let fields = flatten(&r).into_keys().collect();
    let key = r.key().unwrap();
    Change { seq, written_at_ms: 1, key, stamp, context: Default::default(), fields, op: Op::Put(r) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_applied_once() {
    let env = Env::new();
    let city = City::start(&env);
    let mut q = city.client().await;
    let (mut s, last) = open_ward(&city, &env.certs(), "00082").await.unwrap();
    assert_eq!(last, 0);
    let all: Vec<Change> = (1..=15).map(|n| change(n, "00082", 0, n as u32)).collect();
    assert_eq!(s.send(&all[..10]).await.unwrap(), 10);
    drop(s); // as if the ack had been lost with the connection

    let (mut s, last) = open_ward(&city, &env.certs(), "00082").await.unwrap();
    assert_eq!(last, 10, "Welcome names the last applied sequence");
    assert_eq!(s.send(&all).await.unwrap(), 15, "the same changes again, chained alike: duplicates");
    assert_each_seq_once(&city_log(&mut q).await, "00082", 15);
    // The change feed resumes from any cursor, a bounded number at a time.
    let page: Vec<u64> = {
        let mut s = q
            .changes_since(pb::ChangesSinceRequest { after: 5, limit: 3, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let mut v = Vec::new();
        while let Some(l) = s.message().await.unwrap() {
            v.push(l.cursor);
        }
        v
    };
    assert_eq!(page, [6, 7, 8]);

    // A batch that skips sequences is rejected, and nothing of it applied.
    let e = s.send(&[change(17, "00082", 0, 17)]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("expects 16"), "{}", e.message());
    assert_each_seq_once(&city_log(&mut q).await, "00082", 15);
}

/// A ward that sends faster than the city commits (one change a message,
/// without waiting for acks) has the messages waiting in its stream applied
/// together, in order: it keeps up, instead of queueing one commit per
/// message and falling further behind with every slow commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_in_a_wards_stream_are_applied_together_in_order() {
    const N: u64 = 400;
    let env = Env::new();
    let city = City::start(&env);
    let mut q = city.client().await;
    let (mut s, _) = open_ward(&city, &env.certs(), "00082").await.unwrap();
    let batches: Vec<_> = (1..=N).map(|n| s.batch(&[change(n, "00082", 0, n as u32)])).collect();
    let Session { tx, mut inbound, .. } = s;
    let sender = tokio::spawn(async move {
        for b in batches {
            tx.send(b).await.unwrap();
        }
        tx
    });
    let (mut acks, mut last) = (0, 0);
    while last < N {
        match inbound.message().await.unwrap().and_then(|m| m.msg) {
            Some(city_message::Msg::Ack(a)) => {
                assert!(a.applied_seq > last, "acks go forward: {} after {last}", a.applied_seq);
                (acks, last) = (acks + 1, a.applied_seq);
            }
            other => panic!("expected Ack, got {other:?}"),
        }
    }
    drop(sender.await.unwrap());
    eprintln!("{N} messages applied in {acks} commits");
    assert_each_seq_once(&city_log(&mut q).await, "00082", N);
    assert!(acks < N / 2, "{acks} acks for {N} messages: each message was committed on its own");
}

/// A ward that sends its last batches and ends its stream without waiting
/// for the acks still hears them: the city answers every batch it took,
/// including those still being applied when the stream ended, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_that_ends_its_stream_still_hears_every_ack() {
    let env = Env::new();
    let city = City::start(&env);
    let mut q = city.client().await;
    let (mut s, _) = open_ward(&city, &env.certs(), "00082").await.unwrap();
    let batches: Vec<_> = (1..=3).map(|n| s.batch(&[change(n, "00082", 0, n as u32)])).collect();
    let Session { tx, mut inbound, .. } = s;
    for b in batches {
        tx.send(b).await.unwrap();
    }
    drop(tx);
    let mut last = 0;
    while let Some(m) = inbound.message().await.unwrap() {
        match m.msg {
            Some(city_message::Msg::Ack(a)) => {
                assert!(a.applied_seq >= last, "ack {} after {last}", a.applied_seq);
                last = a.applied_seq;
            }
            other => panic!("expected Ack, got {other:?}"),
        }
    }
    assert_eq!(last, 3, "the last ack before the stream ended");
    assert_each_seq_once(&city_log(&mut q).await, "00082", 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_cannot_write_another_wards_records() {
    let env = Env::new();
    let city = City::start(&env);
    let mut q = city.client().await;

    // Claiming another ward's code in Hello is refused outright.
    let e = open(&city, ward_tls(&env.certs(), "00082"), "00145").await.err().expect("refused");
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    // So is a client certificate that is not a ward's.
    let office = client_tls(&TlsFiles::in_dir(&env.certs(), "office"), "city").unwrap();
    let e = open(&city, office, "00082").await.err().expect("refused");
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");

    // A record of ward 00145 inside ward 00082's stream is refused and kept
    // for the operator; the stream goes on.
    let (mut s, _) = open_ward(&city, &env.certs(), "00082").await.unwrap();
    let foreign = change(1, "00145", 1, 0);
    let own = change(2, "00082", 0, 0);
    assert_eq!(s.send(&[foreign.clone(), own.clone()]).await.unwrap(), 2);
    assert_eq!(s.send(&[change(3, "00082", 0, 1)]).await.unwrap(), 3);

    let refused = quarantine(&mut q).await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].ward, "00082");
    assert!(refused[0].reason.contains("00145"), "{}", refused[0].reason);
    assert_eq!(refused[0].change.as_ref().unwrap().seq, 1);
    let e = q
        .get(pb::CityGetRequest { key: Some((&foreign.key).into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(q.get(pb::CityGetRequest { key: Some((&own.key).into()), ..Default::default() }).await.is_ok());
    let wards = city_wards(&mut q).await.unwrap();
    assert_eq!((wards[0].last_applied_seq, wards[0].quarantined, wards[0].records), (3, 1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_certificate_of_the_city_ca_are_refused() {
    let env = Env::new();
    let city = City::start(&env);
    let mut q = city.client().await;
    let ca = Certificate::from_pem(std::fs::read(env.certs().join("ca.pem")).unwrap());

    let no_cert = ClientTlsConfig::new().ca_certificate(ca.clone()).domain_name("city");
    assert!(open(&city, no_cert, "00082").await.is_err(), "no client certificate");

    let foreign = env.path().join("foreign");
    let other_ca =
        ClientTlsConfig::new().ca_certificate(ca).domain_name("city").identity(Identity::from_pem(
            std::fs::read(foreign.join("ward-00082.pem")).unwrap(),
            std::fs::read(foreign.join("ward-00082.key")).unwrap(),
        ));
    assert!(open(&city, other_ca, "00082").await.is_err(), "certificate from another CA");

    let plaintext = match Endpoint::from_shared(format!("http://{}", city.addr)).unwrap().connect().await {
        Err(_) => true,
        Ok(ch) => pb::city_query_client::CityQueryClient::new(ch).wards(pb::WardsRequest {}).await.is_err(),
    };
    assert!(plaintext, "plaintext is refused");
    assert!(city_wards(&mut q).await.unwrap().is_empty());
}

async fn quarantine(
    q: &mut pb::city_query_client::CityQueryClient<tonic::transport::Channel>,
) -> Vec<pb::QuarantinedChange> {
    q.list_quarantine(pb::QuarantineRequest::default()).await.unwrap().into_inner().entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_bypassed_ward_validation_are_quarantined_never_dropped() {
    let env = Env::new();
    let city = City::start(&env);
    let mut q = city.client().await;
    let (mut s, _) = open_ward(&city, &env.certs(), "00082").await.unwrap();

    // An invalid record (no name), a change whose key cannot be decoded, then a good one.
    let mut invalid = change(1, "00082", 0, 0);
    if let Op::Put(Record { body: Body::Citizen(c), .. }) = &mut invalid.op {
        c.full_name.clear();
    }
    let mut malformed = pb::Change::from(&change(2, "00082", 0, 1));
    malformed.key = Some(pb::RecordKey { kind: 1, id: "not-an-id".into() });
    let good = change(3, "00082", 0, 2);
    // (Chained as the ward wrote them: the city cannot read the middle one,
    // and takes its content hash as the ward gave it.)
    let mut batch = s.batch(&[invalid.clone(), change(2, "00082", 0, 1), good.clone()]);
    if let Some(ward_message::Msg::Batch(b)) = &mut batch.msg {
        b.changes[1] = malformed;
    }
    s.tx.send(batch).await.unwrap();
    match s.inbound.message().await.unwrap().and_then(|m| m.msg) {
        Some(city_message::Msg::Ack(a)) => assert_eq!(a.applied_seq, 3, "the stream is not blocked"),
        other => panic!("expected Ack, got {other:?}"),
    }
    assert!(q.get(pb::CityGetRequest { key: Some((&good.key).into()), ..Default::default() }).await.is_ok());

    let entries = quarantine(&mut q).await;
    assert_eq!(entries.len(), 2);
    assert!(entries[0].reason.contains("record.citizen.full_name: required"), "{}", entries[0].reason);
    assert!(entries[0].change.is_some());
    assert!(entries[1].reason.contains("key.id"), "{}", entries[1].reason);
    assert!(entries[1].change.is_none() && !entries[1].raw.is_empty(), "kept as received");

    // Still invalid: a retry is refused and the entry stays.
    let e = q.retry_quarantined(pb::QuarantineEntry { ward: "00082".into(), seq: 1 }).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    // Discarding needs a reason, and keeps the count right.
    let e = q
        .discard_quarantined(pb::DiscardRequest {
            ward: "00082".into(),
            seq: 2,
            reason: " ".into(),
            signed: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // The data office works the quarantine from the command line too.
    let cli = |args: &[&str]| {
        let certs = env.certs();
        let target = ["--city", &city.url(), "--tls-dir", certs.to_str().unwrap()];
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wardsync"))
            .args(["quarantine"])
            .args(args)
            .args(target)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&["list"]);
    assert!(listed.contains("ward 00082 change 1") && listed.contains("full_name: required"), "{listed}");
    assert!(listed.contains("ward 00082 change 2: (undecodable change)"), "{listed}");
    assert!(listed.contains("ward 00082 change 1: citizen/"), "with its kind: {listed}");
    let listed: Vec<serde_json::Value> =
        cli(&["list", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed[0]["record"].as_str().unwrap().starts_with("citizen/"), "{listed:?}");
    assert!(listed[0]["reason"].as_str().unwrap().contains("full_name: required"), "{listed:?}");
    let done = cli(&["discard", "--ward", "00082", "--seq", "2", "--reason", "corrupt key"]);
    assert!(done.contains("discarded"), "{done}");
    let entries = quarantine(&mut q).await;
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    assert_eq!(city_wards(&mut q).await.unwrap()[0].quarantined, 1);
    let e = q.retry_quarantined(pb::QuarantineEntry { ward: "00082".into(), seq: 2 }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_stamped_too_far_ahead_of_the_city_clock_is_quarantined() {
    let env = Env::new();
    let city = City::start(&env);
    let mut q = city.client().await;
    let (mut s, _) = open_ward(&city, &env.certs(), "00082").await.unwrap();
    let mut ahead = change(1, "00082", 0, 0);
    ahead.stamp.hlc.wall_ms += 60 * 60 * 1000; // an hour fast
    let fine = change(2, "00082", 0, 1);
    assert_eq!(s.send(&[ahead.clone(), fine.clone()]).await.unwrap(), 2);
    let entries = quarantine(&mut q).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, 1);
    assert!(
        entries[0].reason.contains("clock is 3599 s ahead")
            || entries[0].reason.contains("clock is 3600 s ahead"),
        "{}",
        entries[0].reason
    );
    assert!(q.get(pb::CityGetRequest { key: Some((&fine.key).into()), ..Default::default() }).await.is_ok());
    let e =
        q.get(pb::CityGetRequest { key: Some((&ahead.key).into()), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offices_edits_retries_and_discards_survive_a_power_cut() {
    let env = Env::new();
    let disk = common::powercut::Disk::mount(&env.path().join("city")).unwrap();
    // A city that quarantines changes stamped more than 100 ms ahead of it.
    let mut city = City::start_configured(&env, "max_clock_skew_ms = 100");
    city.client().await;
    let (mut s, _) = open_ward(&city, &env.certs(), "00082").await.unwrap();
    let mut changes: Vec<Change> = (1..=4).map(|n| change(n, "00082", 0, n as u32)).collect();
    let ahead = wardsync::clock::now_ms() as u64 + 2000;
    for c in &mut changes[..3] {
        c.stamp.hlc.wall_ms = ahead;
    }
    assert_eq!(s.send(&changes).await.unwrap(), 4);
    drop(s);
    let mut q = city.client().await;
    assert_eq!(quarantine(&mut q).await.len(), 3);
    wardsync::cli::wait::until(DEADLINE, "the city's clock to pass the changes' stamps", || async {
        Ok(wardsync::clock::now_ms() as u64 > ahead + 100)
    })
    .await
    .unwrap();

    // Each answer comes once its effect is durable.
    let edited = match &changes[3].op {
        Op::Put(r) => wardsync::generate::amend(r, 1),
        Op::Delete => unreachable!(),
    };
    q.edit(env.office().edit(edited.clone(), &Default::default())).await.unwrap();
    q.retry_quarantined(pb::QuarantineEntry { ward: "00082".into(), seq: 1 }).await.unwrap();
    let discard = env.office().discard(&WardCode::parse("00082").unwrap(), 2, "a duplicate");
    q.discard_quarantined(discard).await.unwrap();

    city.node.kill();
    disk.cut();
    city.node.start();
    let mut q = city.client().await;
    let got = |r: pb::CityGetReply| wardsync::proto::record_from_pb(r.record).unwrap();
    let e = q
        .get(pb::CityGetRequest { key: Some((&edited.key().unwrap()).into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(got(e.into_inner()), edited, "the office's edit");
    let retried =
        q.get(pb::CityGetRequest { key: Some((&changes[0].key).into()), ..Default::default() }).await;
    assert!(retried.is_ok(), "the retried change is applied");
    let left: Vec<u64> = quarantine(&mut q).await.iter().map(|e| e.seq).collect();
    assert_eq!(left, [3], "retried and discarded entries have left the quarantine");
}

/// The chain on the city's side, as a ward that does not check its own
/// (an older build, a bug, a forger) would try it: other changes under
/// numbers the city applied are a fork, refused and recorded, never
/// skipped as duplicates; a batch signed by another ward's key, a change
/// signed on its own with one, or whose content hashes are not its
/// changes', is refused; nothing of any is
/// applied, and the ward's real chain goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_does_not_link_onto_the_citys_chain_is_refused_as_a_fork_and_recorded() {
    let env = Env::new();
    let city = City::start(&env);
    let mut q = city.client().await;
    let certs = env.certs();
    let (mut s, _) = open_ward(&city, &certs, "00082").await.unwrap();
    let first: Vec<Change> = (1..=5).map(|n| change(n, "00082", 0, n as u32)).collect();
    assert_eq!(s.send(&first).await.unwrap(), 5);

    // Changes 4-6 again, 4 and 5 other than those applied, chained on the
    // link before 4 as a store put back to an older copy would chain them.
    let (mut s, last) = open_ward(&city, &certs, "00082").await.unwrap();
    assert_eq!(last, 5);
    s.links.insert(3, link_after(&first[..3], &certs));
    let forked: Vec<Change> = (4..=6).map(|n| change(n, "00082", 1, n as u32)).collect();
    let e = s.send(&forked).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("differ from those the city applied"), "{}", e.message());
    let wards = city_wards(&mut q).await.unwrap();
    let w = wards.iter().find(|w| w.ward == "00082").unwrap();
    assert_eq!((w.forks, w.fork_seq, w.last_applied_seq), (1, 5, 5), "recorded, nothing applied");
    assert_each_seq_once(&city_log(&mut q).await, "00082", 5);

    // 00082's chain signed with another ward's key; hashes made with
    // another ward's key id; content hashes that are not the changes'.
    let next = [change(6, "00082", 0, 6)];
    let other = ward_signer(&certs, "00145").unwrap();
    let e = tampered(&city, &certs, &next, |b| {
        let last = signed::links(
            &WardCode::parse("00082").unwrap(),
            6,
            &b.previous[..].try_into().unwrap(),
            &[b.hashes[0][..].try_into().unwrap()],
        );
        b.signature = other.sign(&signed::batch_message(&last[0]));
    })
    .await;
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.message().contains("not ward 00082's certificate key's"), "{}", e.message());
    // A change signed on its own (as a registration is) with another ward's key.
    let e = tampered(&city, &certs, &next, |b| {
        b.changes[0].signature = other.sign(&signed::authored_message(&b.hashes[0][..].try_into().unwrap()));
    })
    .await;
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.message().contains("signature of change 6 is not ward 00082's"), "{}", e.message());
    let e = tampered(&city, &certs, &next, |b| b.hashes[0][0] ^= 1).await;
    assert!(e.message().contains("content hash of sequence 6 is not its content's"), "{}", e.message());
    let (mut s, _) = open_as(&city, (ward_tls(&certs, "00082"), Some(other.clone())), "00082").await.unwrap();
    let e = s.send(&next).await.unwrap_err();
    assert!(e.message().contains("content hash of sequence 6 is not its content's"), "{}", e.message());
    assert_each_seq_once(&city_log(&mut q).await, "00082", 5);

    // Sequences no ward numbers, where the sums on them would overflow.
    let e = tampered(&city, &certs, &next, |b| {
        b.changes[0].seq = u64::MAX;
    })
    .await;
    assert!(e.message().contains("is not one a ward numbers"), "{}", e.message());
    let e = tampered(&city, &certs, &[change(1, "00082", 0, 1), change(2, "00082", 0, 2)], |b| {
        (b.changes[0].seq, b.changes[1].seq) = (u64::MAX, 0);
    })
    .await;
    assert!(e.message().contains("is not one a ward numbers"), "{}", e.message());
    assert_each_seq_once(&city_log(&mut q).await, "00082", 5);

    // The ward's own chain goes on (the city still runs).
    let (mut s, _) = open_ward(&city, &certs, "00082").await.unwrap();
    assert_eq!(s.send(&next).await.unwrap(), 6);
    assert_each_seq_once(&city_log(&mut q).await, "00082", 6);
}

/// The error that ends ward 00082's stream after `changes`, chained and
/// signed, then changed by `tamper`.
async fn tampered(
    city: &City,
    certs: &Path,
    changes: &[Change],
    tamper: impl Fn(&mut pb::Batch),
) -> tonic::Status {
    let (mut s, _) = open_ward(city, certs, "00082").await.unwrap();
    let mut batch = s.batch(changes);
    if let Some(ward_message::Msg::Batch(b)) = &mut batch.msg {
        tamper(b);
    }
    s.tx.send(batch).await.unwrap();
    s.inbound.message().await.unwrap_err()
}

/// The link of the last of `changes` (numbered from 1) of ward 00082's.
fn link_after(changes: &[Change], certs: &Path) -> Hash {
    let key = ward_signer(certs, "00082").unwrap().key_id();
    let hashes: Vec<Hash> = changes.iter().map(|c| signed::content_hash(c, &key)).collect();
    *signed::links(&WardCode::parse("00082").unwrap(), 1, &GENESIS, &hashes).last().unwrap()
}
