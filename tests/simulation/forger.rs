//! A hostile ward: ward [`FORGER`]'s real certificate on a raw replication
//! stream, sending changes to records the other wards own, each claiming
//! (in its version vector) that the forger wrote the record before and had
//! not seen it change hands: takeovers, deletes, residence transfers that
//! rewrite the person, registrations a registrar would refuse, oversized
//! and NUL-laden changes; some replaying a sequence number the city already
//! took, some after a `Hello` claiming the city lost what it sent down and
//! what it acknowledged (with the city's last receipt: a refill window
//! opens only if the city was really put back to a copy that lost what the
//! receipt shows). The city must refuse every
//! one: the ledger's checks see a record taken over or deleted by it, the
//! forger's refused changes are expected in the quarantine, each once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wardsync::auth::{Signer, TlsFiles, client_tls};
use wardsync::model::signed;
use wardsync::model::{
    Body, Change, CivilEvent, EventKind, Hlc, Op, Record, Stamp, VersionVector, WardCode, flatten,
};
use wardsync::proto::pb::{self, city_message, city_sync_client::CitySyncClient, ward_message};
use wardsync::ward::chain::Chainer;

use super::net::channel;
use super::nodes::CITY_PORT;
use super::workload::Shared;

/// The links of the forger's chain the city acknowledged, by sequence.
type Links = std::collections::BTreeMap<u64, signed::Hash>;

/// The hostile ward's commune code.
pub const FORGER: &str = "00091";

type Failure = Box<dyn std::error::Error>;

/// Sends a forged change every few hundred ms until every driver is done.
pub async fn forge(
    shared: Arc<Shared>,
    wards: usize,
    certs: std::path::PathBuf,
    seed: u64,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xf09e);
    // (Its own, so that the forgeries of a seed come when they always did.)
    let mut replays = StdRng::seed_from_u64(seed ^ 0x9e91a7);
    // Whether a replay sends its last change again, alike (a duplicate,
    // which the city must skip: applied twice, its quarantine would count
    // it twice), or another change under its number (a fork).
    let mut alike = StdRng::seed_from_u64(seed ^ 0xa11ce);
    let mut last_sent: Option<Change> = None;
    let mut kinds = StdRng::seed_from_u64(seed ^ 0x6b1d5);
    let files = TlsFiles::in_dir(&certs, &format!("ward-{FORGER}"));
    let tls = client_tls(&files, "city").unwrap();
    let signer = Arc::new(Signer::load(&files).unwrap());
    // The city's last receipt for an ack, and its sequence.
    let mut receipt = (0, Vec::new());
    // Its chain's links, by sequence, as the city acknowledged them.
    let mut links = std::collections::BTreeMap::from([(0, signed::GENESIS)]);
    while shared.done.load(Ordering::SeqCst) < wards {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..600))).await;
        let target = {
            let owned = shared.owned.lock().unwrap();
            let all: Vec<&Record> = owned.values().flatten().collect();
            (!all.is_empty()).then(|| all[rng.gen_range(0..all.len())].clone())
        };
        if let Some(r) = target {
            // The network may be faulty: a forgery that does not arrive is no loss.
            let forgery =
                if rng.gen_bool(0.7) { Forgery::ALL[kinds.gen_range(0..5)] } else { Forgery::Delete };
            let claim_loss = kinds.gen_bool(0.2);
            let replay = match (replays.gen_bool(0.3), alike.gen_bool(0.5)) {
                (false, _) => Replay::No,
                (true, true) if last_sent.is_some() => {
                    Replay::Alike(Box::new(last_sent.clone().expect("some")))
                }
                (true, _) => Replay::Fork,
            };
            let state = (&mut receipt, &mut links, &shared.ledger);
            if let Ok(Some(sent)) = send((&tls, &signer), r, forgery, replay, claim_loss, state).await {
                last_sent = Some(sent);
            }
        }
    }
    Ok(())
}

/// What a forged change does to another ward's record.
#[derive(Clone, Copy, Debug)]
enum Forgery {
    /// A put naming the forger as owner.
    Takeover,
    /// A residence transfer into the forger that renames the person and
    /// erases their events.
    Transfer,
    /// A "registration" of a death, registered in another ward's name,
    /// erasing the events before it.
    Registration,
    /// A put naming its field 50,000 times.
    Oversized,
    /// A put naming a field with a NUL in it.
    Nul,
    /// A delete.
    Delete,
}

impl Forgery {
    const ALL: [Forgery; 5] =
        [Forgery::Takeover, Forgery::Transfer, Forgery::Registration, Forgery::Oversized, Forgery::Nul];
}

/// A change sent again under a number the city applied.
enum Replay {
    /// None: the next number.
    No,
    /// Another change under the city's last number: a fork, which the
    /// city must refuse, never skip nor apply.
    Fork,
    /// This change, sent before, again under its number and chained alike:
    /// a duplicate, which the city must skip.
    Alike(Box<Change>),
}

/// One forged change to `r` (see [`Forgery`]); numbered after the last
/// sequence the city took from the forger, or replayed (see [`Replay`]);
/// `claim_loss`: after a `Hello` claiming the city lost what it sent down,
/// and what it acknowledged up to the city's last `receipt` (kept here as
/// acks bring new ones). Returns the change if the city took it as new.
async fn send(
    (tls, signer): (&tonic::transport::ClientTlsConfig, &Arc<Signer>),
    r: Record,
    forgery: Forgery,
    replay: Replay,
    claim_loss: bool,
    (receipt, links, ledger): (&mut (u64, Vec<u8>), &mut Links, &super::common::ledger::Ledger),
) -> Result<Option<Change>, Failure> {
    let ch = channel("city", CITY_PORT, Some(tls.clone())).await?;
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::Hello {
        ward_code: FORGER.into(),
        node_id: "forger".into(),
        protocol_version: wardsync::proto::PROTOCOL_VERSION,
        schema_version: wardsync::proto::SCHEMA_VERSION,
        downstream_cursor: if claim_loss { 1 << 40 } else { 0 },
        acked_seq: if claim_loss { receipt.0 } else { 0 },
        acked_receipt_seq: receipt.0,
        acked_receipt: receipt.1.clone(),
        ..Default::default()
    };
    tx.send(pb::WardMessage { msg: Some(ward_message::Msg::Hello(hello)) }).await?;
    let mut inbound = CitySyncClient::new(ch).replicate(ReceiverStream::new(rx)).await?.into_inner();
    let (last, link) = match inbound.message().await?.and_then(|m| m.msg) {
        Some(city_message::Msg::Welcome(w)) => (w.last_applied_seq, signed::hash_from(&w.link)),
        _ => return Err("no Welcome".into()),
    };
    if let Some(l) = link {
        links.insert(last, l);
    }
    // Signed with its own key and chained on the city's link: the forgery
    // is in what the changes say. A replay is chained on the link before
    // the number it takes again.
    let fork = matches!(replay, Replay::Fork) && last > 0 && links.contains_key(&(last - 1));
    let alike = match replay {
        Replay::Alike(c) if links.contains_key(&(c.seq - 1)) => Some(*c),
        _ => None,
    };
    let replayed = alike.is_some() || fork;
    let seq = match &alike {
        Some(c) => c.seq,
        None if replayed => last,
        None => last + 1,
    };
    let before = links.get(&(seq - 1)).copied().unwrap_or(signed::GENESIS);
    let mut chain = Chainer::new(WardCode::parse(FORGER)?, Some(signer.clone()), (seq - 1, before));
    let key = r.key()?;
    let claim = VersionVector([(FORGER.to_string(), Hlc::default())].into());
    let all = |r: &Record| flatten(r).into_keys().collect::<Vec<_>>();
    let (fields, op) = match forgery {
        Forgery::Delete => (Vec::new(), Op::Delete),
        Forgery::Takeover => {
            let mut mine = r;
            mine.ward = WardCode::parse(FORGER)?;
            (all(&mine), Op::Put(mine))
        }
        Forgery::Transfer => {
            let mut moved = r;
            moved.ward = WardCode::parse(FORGER)?;
            if let Body::Citizen(c) = &mut moved.body {
                c.permanent_residence.commune_code = FORGER.into();
                c.full_name = "Giả Danh".into();
                c.events.clear();
            }
            (all(&moved), Op::Put(moved))
        }
        Forgery::Registration => {
            let mut dead = r;
            if let Body::Citizen(c) = &mut dead.body {
                c.events = vec![CivilEvent {
                    kind: EventKind::Death,
                    date: c.date_of_birth,
                    registered_by: "00082".into(),
                    spouse_id: String::new(),
                    reference: String::new(),
                    field: String::new(),
                    value: String::new(),
                }];
            }
            (vec!["events".to_string()], Op::Put(dead))
        }
        Forgery::Oversized => (vec!["phone".to_string(); 50_000], Op::Put(r)),
        Forgery::Nul => {
            let mut named = all(&r);
            named.push("phone\0".into());
            (named, Op::Put(r))
        }
    };
    let now = wardsync::clock::now_ms();
    let change = Change {
        seq,
        written_at_ms: now,
        key,
        stamp: Stamp { hlc: Hlc { wall_ms: now as u64, logical: 0 }, writer: FORGER.into() },
        context: claim,
        fields,
        op,
    };
    let change = alike.unwrap_or(change);
    let batch = chain.batch(std::slice::from_ref(&change));
    tx.send(pb::WardMessage { msg: Some(ward_message::Msg::Batch(batch)) }).await?;
    loop {
        match inbound.message().await?.and_then(|m| m.msg) {
            Some(city_message::Msg::Ack(a)) => {
                if a.applied_seq > receipt.0 {
                    *receipt = (a.applied_seq, a.receipt);
                }
                if a.applied_seq < seq {
                    return Ok(None);
                }
                let hlc = change.stamp.hlc;
                ledger.hostile_acked(FORGER, seq, (hlc.wall_ms, hlc.logical));
                if replayed {
                    return Ok(None);
                }
                links.insert(seq, chain.head().1);
                return Ok(Some(change));
            }
            Some(_) => {}
            None => return Err("the city ended the stream".into()),
        }
    }
}
