//! Synthetic wards: replication streams that speak `CitySync.Replicate` to
//! the city with their own ward certificates, as many as a benchmark needs
//! (170 ward agent processes would not fit on the benchmark machine). They
//! send generated records as new changes, numbered and stamped as an agent
//! does, and time each change from its writing to the city's ack (which
//! comes once the change is durable at the city).

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Endpoint;

use super::stats::Latencies;
use crate::auth::{TlsFiles, client_tls, ward_cert_name};
use crate::model::{Change, Hlc, Op, Record, Stamp, VersionVector, WardCode, flatten};
use crate::proto::pb::{self, city_message, city_sync_client::CitySyncClient, ward_message};
use crate::proto::{PROTOCOL_VERSION, SCHEMA_VERSION};
use crate::ward::chain::Chainer;

/// One synthetic ward's open replication stream.
pub struct Stream {
    out: Sender,
    inbound: Streaming<pb::CityMessage>,
}

/// The sending half of a stream: numbers and stamps changes as an agent does.
struct Sender {
    ward: WardCode,
    tx: mpsc::Sender<pb::WardMessage>,
    seq: u64,
    hlc: Hlc,
    /// Chains and signs each batch, as an agent does.
    chain: Chainer,
}

impl Stream {
    /// Opens the stream of `ward` to the city at `addr`, resuming after
    /// what the city already applied.
    pub async fn open(addr: std::net::SocketAddr, certs: &Path, ward: &WardCode) -> anyhow::Result<Stream> {
        let files = TlsFiles::in_dir(certs, &ward_cert_name(ward));
        let tls = client_tls(&files, "city")?;
        let signer = std::sync::Arc::new(crate::auth::Signer::load(&files)?);
        let channel = Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls)?.connect().await?;
        let (tx, rx) = mpsc::channel(64);
        let hello = pb::Hello {
            ward_code: ward.to_string(),
            node_id: format!("bench-{ward}"),
            protocol_version: PROTOCOL_VERSION,
            schema_version: SCHEMA_VERSION,
            downstream_cursor: 0,
            ..Default::default()
        };
        tx.send(pb::WardMessage { msg: Some(ward_message::Msg::Hello(hello)) }).await?;
        let mut inbound = CitySyncClient::new(channel)
            .max_encoding_message_size(64 << 20)
            .replicate(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let (seq, link) = match inbound.message().await?.and_then(|m| m.msg) {
            Some(city_message::Msg::Welcome(w)) => (
                w.last_applied_seq,
                crate::model::signed::hash_from(&w.link).unwrap_or(crate::model::signed::GENESIS),
            ),
            other => anyhow::bail!("the city answered Hello with {other:?}"),
        };
        let chain = Chainer::new(ward.clone(), Some(signer), (seq, link));
        Ok(Stream { out: Sender { ward: ward.clone(), tx, seq, hlc: Hlc::default(), chain }, inbound })
    }

    /// Sends `records` as one batch of new changes; returns the last sequence.
    pub async fn send(&mut self, records: &[Record]) -> anyhow::Result<u64> {
        self.out.send(records).await
    }

    /// The next ack: the last sequence the city has made durable.
    pub async fn ack(&mut self) -> anyhow::Result<u64> {
        next_ack(&mut self.inbound, &self.out.ward).await
    }
}

impl Sender {
    async fn send(&mut self, records: &[Record]) -> anyhow::Result<u64> {
        let now = crate::clock::now_ms();
        let changes = records
            .iter()
            .map(|r| {
                self.seq += 1;
                self.hlc = self.hlc.tick(now as u64);
                Change {
                    seq: self.seq,
                    written_at_ms: now,
                    key: r.key().expect("generated keys are valid"),
                    stamp: Stamp { hlc: self.hlc, writer: self.ward.to_string() },
                    context: VersionVector::default(),
                    fields: flatten(r).into_keys().collect(),
                    op: Op::Put(r.clone()),
                }
            })
            .collect::<Vec<_>>();
        let batch = pb::WardMessage { msg: Some(ward_message::Msg::Batch(self.chain.batch(&changes))) };
        self.tx.send(batch).await.map_err(|_| anyhow::anyhow!("the stream closed"))?;
        Ok(self.seq)
    }
}

async fn next_ack(inbound: &mut Streaming<pb::CityMessage>, ward: &WardCode) -> anyhow::Result<u64> {
    loop {
        match inbound.message().await?.and_then(|m| m.msg) {
            Some(city_message::Msg::Ack(a)) => return Ok(a.applied_seq),
            Some(_) => continue,
            None => anyhow::bail!("the city closed ward {ward}'s stream"),
        }
    }
}

/// Bulk-loads `records` through `stream`, `batch` per message, at most
/// `in_flight` unacknowledged.
pub async fn load(
    stream: &mut Stream,
    records: &[Record],
    batch: usize,
    in_flight: usize,
) -> anyhow::Result<()> {
    let mut pending: VecDeque<u64> = VecDeque::new();
    for chunk in records.chunks(batch.max(1)) {
        while pending.len() >= in_flight.max(1) {
            let acked = stream.ack().await?;
            pending.retain(|s| *s > acked);
        }
        pending.push_back(stream.send(chunk).await?);
    }
    while let Some(&last) = pending.back() {
        if stream.ack().await? >= last {
            break;
        }
    }
    Ok(())
}

/// Writes one change every `1 / rate` s through `stream` for `run`, and
/// records each change's latency from its writing to the city's ack,
/// after `warmup`.
pub async fn steady(
    stream: Stream,
    records: Vec<Record>,
    rate: f64,
    warmup: Duration,
    run: Duration,
) -> anyhow::Result<Latencies> {
    let mut lat = Latencies::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut records = records.into_iter();
    let Stream { mut out, mut inbound } = stream;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if started.elapsed() >= warmup + run {
                    break;
                }
                let Some(r) = records.next() else { break };
                let seq = out.send(std::slice::from_ref(&r)).await?;
                sent.push_back((seq, Instant::now()));
            }
            acked = next_ack(&mut inbound, &out.ward) => {
                let acked = acked?;
                while let Some(&(_, at)) = sent.front().filter(|(s, _)| *s <= acked) {
                    if at.duration_since(started) >= warmup {
                        lat.record(at.elapsed());
                    }
                    sent.pop_front();
                }
            }
        }
    }
    Ok(lat)
}
