//! A hostile ward: ward [`FORGER`]'s real certificate on a raw replication
//! stream, sending changes to records the other wards own, each claiming
//! (in its version vector) that the forger wrote the record before and had
//! not seen it change hands, and some replaying a sequence number the city
//! already took. The city must refuse every one: the ledger's checks see a
//! record taken over or deleted by it, the forger's refused changes are
//! expected in the quarantine, each once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wardsync::auth::{TlsFiles, client_tls};
use wardsync::model::{Change, Hlc, Op, Record, Stamp, VersionVector, WardCode, flatten};
use wardsync::proto::pb::{self, city_message, city_sync_client::CitySyncClient, ward_message};

use super::net::channel;
use super::nodes::CITY_PORT;
use super::workload::Shared;

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
    let tls = client_tls(&TlsFiles::in_dir(&certs, &format!("ward-{FORGER}")), "city").unwrap();
    while shared.done.load(Ordering::SeqCst) < wards {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..600))).await;
        let target = {
            let owned = shared.owned.lock().unwrap();
            let all: Vec<&Record> = owned.values().flatten().collect();
            (!all.is_empty()).then(|| all[rng.gen_range(0..all.len())].clone())
        };
        if let Some(r) = target {
            // The network may be faulty: a forgery that does not arrive is no loss.
            let _ = send(&tls, r, rng.gen_bool(0.7), replays.gen_bool(0.3)).await;
        }
    }
    Ok(())
}

/// One forged change: `r` taken over by the forger (a put naming it as
/// owner), or deleted; numbered after the last sequence the city took from
/// the forger, or, `replayed`, with that sequence again (which the city must
/// skip: taken twice, the quarantine would count it twice).
async fn send(
    tls: &tonic::transport::ClientTlsConfig,
    r: Record,
    takeover: bool,
    replayed: bool,
) -> Result<(), Failure> {
    let ch = channel("city", CITY_PORT, Some(tls.clone())).await?;
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::Hello {
        ward_code: FORGER.into(),
        node_id: "forger".into(),
        protocol_version: wardsync::proto::PROTOCOL_VERSION,
        schema_version: wardsync::proto::SCHEMA_VERSION,
        downstream_cursor: 0,
        acked_seq: 0,
        downstream_check: 0,
    };
    tx.send(pb::WardMessage { msg: Some(ward_message::Msg::Hello(hello)) }).await?;
    let mut inbound = CitySyncClient::new(ch).replicate(ReceiverStream::new(rx)).await?.into_inner();
    let last = match inbound.message().await?.and_then(|m| m.msg) {
        Some(city_message::Msg::Welcome(w)) => w.last_applied_seq,
        _ => return Err("no Welcome".into()),
    };
    let key = r.key()?;
    let claim = VersionVector([(FORGER.to_string(), Hlc::default())].into());
    let (fields, op) = if takeover {
        let mut mine = r;
        mine.ward = WardCode::parse(FORGER)?;
        (flatten(&mine).into_keys().collect(), Op::Put(mine))
    } else {
        (Vec::new(), Op::Delete)
    };
    let now = wardsync::clock::now_ms();
    let change = Change {
        seq: if replayed && last > 0 { last } else { last + 1 },
        written_at_ms: now,
        key,
        stamp: Stamp { hlc: Hlc { wall_ms: now as u64, logical: 0 }, writer: FORGER.into() },
        context: claim,
        fields,
        op,
    };
    let batch = pb::Batch { changes: vec![(&change).into()] };
    tx.send(pb::WardMessage { msg: Some(ward_message::Msg::Batch(batch)) }).await?;
    loop {
        match inbound.message().await?.and_then(|m| m.msg) {
            Some(city_message::Msg::Ack(_)) => return Ok(()),
            Some(_) => {}
            None => return Err("the city ended the stream".into()),
        }
    }
}
