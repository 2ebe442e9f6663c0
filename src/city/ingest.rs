//! `CitySync.Replicate`: authenticates the ward from its certificate, tells
//! it where to resume, and applies its batches through one group-commit
//! task shared by every ward (`city::applier`), acknowledging each batch
//! only once it is durable.

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::applier::{Applier, Queued};
use super::arrival::{self, Arrived};
use super::receipts::WardReceipts;
use super::streams::StreamSlot;
use super::{CityError, Live};
use crate::auth::{Identity, Role};
use crate::model::WardCode;
use crate::proto::pb::{self, city_message, city_sync_server::CitySync, ward_message};
use crate::proto::{PROTOCOL_VERSION, change_from_pb};
use crate::store::{CityDb, Incoming, WardBatch};

/// The city database, shared by every task.
pub type Db = std::sync::Arc<dyn CityDb>;

/// Batches of one ward being applied at once: the next is gathered and
/// queued while one commits, so a ward with a backlog keeps the city's
/// pipeline full (groups are applied in the order they are queued).
const IN_FLIGHT_PER_WARD: usize = 2;

/// Most changes in one downstream message.
const DOWNSTREAM_BATCH: usize = 256;
/// Most bytes of changes in one downstream message.
const DOWNSTREAM_BYTES: usize = 4 << 20;

/// The replication service.
#[derive(Clone)]
pub struct SyncService {
    pub(super) store: Db,
    pub(super) guard: super::Guard,
    pub(super) limits: crate::config::Limits,
    /// Streams and heartbeats of each ward.
    pub(super) live: Live,
    pub(super) applier: Applier,
    pub(super) cancel: CancellationToken,
    /// The city's province, if set: records of wards elsewhere are refused.
    pub(super) province: Option<String>,
    /// How far ahead of the city's clock a write's may be.
    pub(super) max_skew_ms: u64,
    /// Retries changes waiting for writes that repairs bring.
    pub(super) waiting: super::waiting::Waiting,
    /// The city's receipts for what it tells wards.
    pub(super) receipts: super::receipts::Receipts,
    /// The CA that issues certificates: what proves who made a write a
    /// ward relays is checked against it (`None` without TLS).
    pub(super) roots: Option<std::sync::Arc<rustls::RootCertStore>>,
}

type Outbound = Result<pb::CityMessage, Status>;

/// What the pump reads next: a message from the stream, or a checked batch
/// gathering held back (it did not follow on from the batch before it).
enum Held {
    Message(Result<Option<pb::WardMessage>, Status>),
    Batch(Arrived),
}

fn message(msg: city_message::Msg) -> Outbound {
    Ok(pb::CityMessage { msg: Some(msg) })
}

impl SyncService {
    /// Checks `Hello` against the caller's certificate and returns the ward.
    fn admit(identity: &Identity, hello: &pb::Hello) -> Result<WardCode, CityError> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(CityError::Protocol(format!(
                "protocol version {} not supported (this city speaks {PROTOCOL_VERSION})",
                hello.protocol_version
            )));
        }
        Self::ward_of(identity, &hello.ward_code)
    }

    /// The ward `claimed` if the caller's certificate is that ward's.
    pub(super) fn ward_of(identity: &Identity, claimed: &str) -> Result<WardCode, CityError> {
        let claimed = WardCode::parse(claimed).map_err(|e| CityError::Protocol(format!("ward_code: {e}")))?;
        match identity {
            Identity::Ward(w) if *w == claimed => Ok(claimed),
            Identity::Ward(w) => Err(CityError::PermissionDenied(format!(
                "certificate of ward {w} cannot act as ward {claimed}"
            ))),
            Identity::Named(n) => {
                Err(CityError::PermissionDenied(format!("certificate {n:?} is not a ward certificate")))
            }
            Identity::Insecure => {
                tracing::warn!(ward = %claimed, "insecure dev mode: trusting the ward code the caller gives");
                Ok(claimed)
            }
        }
    }

    /// Applies batches from `inbound` in order until it ends, fails or the
    /// server shuts down; every error ends the stream with its status.
    async fn pump(
        self,
        (ward, cert): (WardCode, std::sync::Arc<[u8]>),
        mut inbound: Streaming<pb::WardMessage>,
        (tx, receipts): (mpsc::Sender<Outbound>, WardReceipts),
        slot: StreamSlot,
        session: CancellationToken,
    ) {
        let key = match arrival::key_of(&cert) {
            Ok(k) => k,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        // A message read while gathering that could not join the batch.
        let mut held = None;
        // The ward's batches being applied, oldest first.
        let mut applying = FuturesOrdered::new();
        let result = 'pump: loop {
            // Biased (in this order): a seeded simulation then replays exactly.
            let msg = tokio::select! {
                biased;
                _ = session.cancelled() => break Err(if self.cancel.is_cancelled() {
                    CityError::ShuttingDown
                } else {
                    CityError::Replaced(ward.clone())
                }),
                Some(applied) = applying.next(), if !applying.is_empty() => {
                    match self.acked(&receipts, &slot, &tx, applied).await {
                        Ok(true) => continue,
                        Ok(false) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
                m = async { match held.take() { Some(m) => m, None => Held::Message(inbound.message().await) } },
                    if applying.len() < IN_FLIGHT_PER_WARD => m,
            };
            let msg = match msg {
                Held::Batch(arrived) => Ok(Some(Ok(arrived))),
                Held::Message(Ok(Some(pb::WardMessage { msg: Some(ward_message::Msg::Batch(b)) }))) => {
                    match arrival::check((&ward, &cert, key), b, self.limits.max_batch_changes) {
                        Ok(arrived) => Ok(Some(Ok(arrived))),
                        Err(e) => break Err(e),
                    }
                }
                Held::Message(Ok(Some(other))) => Ok(Some(Err(other))),
                Held::Message(Ok(None)) => Ok(None),
                Held::Message(Err(s)) => Err(s),
            };
            let batch = match msg {
                Ok(Some(Ok(arrived))) => arrived,
                Ok(Some(Err(pb::WardMessage { msg: Some(ward_message::Msg::Heartbeat(h)) }))) => {
                    slot.heartbeat(h);
                    continue;
                }
                Ok(Some(Err(_))) => break Err(CityError::Protocol("expected a Batch".into())),
                Ok(None) => break Ok(()),
                Err(s) => {
                    // A message too large or undecodable, or the ward went away:
                    // say why, in case it is still listening.
                    tracing::debug!(%ward, status = %s, "ward stream ended");
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            };
            let batch = match self.gather(batch, (&ward, &cert, key), &mut inbound, &slot, &mut held) {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            if batch.changes.is_empty() {
                // Answered with what is applied once the batches before it are.
                while let Some(applied) = applying.next().await {
                    match self.acked(&receipts, &slot, &tx, applied).await {
                        Ok(true) => {}
                        Ok(false) => break 'pump Ok(()),
                        Err(e) => break 'pump Err(e),
                    }
                }
            }
            match self.queue(&ward, &slot, batch).await {
                Ok(applied) => applying.push_back(applied),
                Err(e) => break Err(e),
            }
        };
        // A ward that ended its stream is still answered for what it sent.
        if result.is_ok() {
            while let Some(applied) = applying.next().await {
                if !matches!(self.acked(&receipts, &slot, &tx, applied).await, Ok(true)) {
                    break;
                }
            }
        }
        if let Err(e) = result {
            match e {
                CityError::ShuttingDown => {
                    tracing::info!(%ward, "closing replication stream: shutting down")
                }
                _ => tracing::warn!(%ward, error = %e, "closing replication stream"),
            }
            let _ = tx.send(Err(e.into())).await;
        }
    }

    /// `batch` and the batches that follow it already waiting in the stream,
    /// as one (up to the per-batch limit): a ward that sends faster than the
    /// city commits has them applied in one commit, in order, and never
    /// falls behind by one commit per message. Heartbeats among them are
    /// taken; any other message, or a batch that does not fit, is `held`
    /// for the next round.
    /// Each batch joined is checked as it arrives ([`arrival::check`]); one
    /// that fails ends the stream.
    fn gather(
        &self,
        mut batch: Arrived,
        (ward, cert, key): (&WardCode, &std::sync::Arc<[u8]>, crate::model::signed::KeyId),
        inbound: &mut Streaming<pb::WardMessage>,
        slot: &StreamSlot,
        held: &mut Option<Held>,
    ) -> Result<Arrived, CityError> {
        use futures::FutureExt;
        while batch.changes.len() < self.limits.max_batch_changes && !batch.changes.is_empty() {
            // Only what has already arrived: never waits.
            let Some(next) = inbound.message().now_or_never() else { break };
            match next {
                Ok(Some(pb::WardMessage { msg: Some(ward_message::Msg::Batch(b)) }))
                    if !b.changes.is_empty()
                        && batch.changes.len() + b.changes.len() <= self.limits.max_batch_changes =>
                {
                    // One that does not follow on is applied on its own (and
                    // refused there if it does not link on).
                    let next = arrival::check((ward, cert, key), b, self.limits.max_batch_changes)?;
                    if let Err(apart) = batch.join(next) {
                        *held = Some(Held::Batch(apart));
                        break;
                    }
                }
                Ok(Some(pb::WardMessage { msg: Some(ward_message::Msg::Heartbeat(h)) })) => slot.heartbeat(h),
                other => {
                    *held = Some(Held::Message(other));
                    break;
                }
            }
        }
        Ok(batch)
    }

    /// Sends the ward, in cursor order, the durable changes made elsewhere
    /// that concern it, starting after `cursor`, and new ones as they come.
    async fn push_downstream(
        self,
        ward: WardCode,
        mut cursor: u64,
        (tx, receipts): (mpsc::Sender<Outbound>, WardReceipts),
        session: CancellationToken,
    ) {
        let mut durable = self.store.watch_durable();
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) && !self.store.may_have_downstream(&ward, cursor) {
                tokio::select! {
                    biased;
                    changed = durable.changed() => if changed.is_err() { return },
                    _ = session.cancelled() => return,
                }
                continue;
            }
            let changes = match self.store.downstream(&ward, cursor, DOWNSTREAM_BATCH).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(%ward, error = %e, "cannot read changes for the ward");
                    return;
                }
            };
            // Capped by bytes too: however large its changes, a message
            // never reaches the limit a ward decodes (at least one change each).
            let (mut wire, mut bytes) = (Vec::with_capacity(changes.len()), 0);
            for (l, _) in &changes {
                let mut c: pb::Change = (&l.change).into();
                // A write by another goes with what proves who made it (the
                // city's own statement of what it derived from an office
                // request signed now). Without it, the write is still sent.
                match self.store.authorship(l).await {
                    Ok(Some(mut a)) => {
                        if let crate::store::Authorship::Office { request, derived, city } = &mut a {
                            *city = self.receipts.derived(&request.request.id, derived);
                        }
                        c.authorship = a.encode();
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(%ward, error = %e, "cannot read what proves who made a change"),
                }
                bytes += prost::Message::encoded_len(&c);
                if !wire.is_empty() && bytes > DOWNSTREAM_BYTES {
                    break;
                }
                wire.push(c);
            }
            let changes = &changes[..wire.len()];
            if let Some((last, _)) = changes.last() {
                let next = last.cursor;
                let whole: std::collections::BTreeSet<&crate::model::RecordKey> =
                    changes.iter().filter(|(_, whole)| *whole).map(|(l, _)| &l.change.key).collect();
                let msg = pb::Downstream {
                    cursor: next,
                    cursor_check: last.check(),
                    changes: wire,
                    fetch_whole: whole.into_iter().map(Into::into).collect(),
                    receipt: receipts.downstream(next, last.check(), self.store.log_head()),
                };
                tracing::debug!(%ward, after = cursor, upto = next, count = changes.len(), "downstream sent");
                if tx.send(message(city_message::Msg::Downstream(msg))).await.is_err() {
                    return;
                }
                cursor = next;
                continue;
            }
            tokio::select! {
                biased;
                changed = durable.changed() => if changed.is_err() { return },
                _ = session.cancelled() => return,
            }
        }
    }

    /// Checks `batch` and queues it to be applied after every batch queued
    /// before it; the future answers the ward's last applied change once
    /// the batch is applied and durable.
    async fn queue(
        &self,
        ward: &WardCode,
        slot: &StreamSlot,
        batch: Arrived,
    ) -> Result<BoxFuture<'static, Result<Applied, CityError>>, CityError> {
        let Arrived { changes, links } = batch;
        let (first, last) = match (changes.first(), changes.last()) {
            (Some(f), Some(l)) => (f.seq(), l.seq()),
            _ => return Ok(futures::future::ready(Ok((self.store.last_applied(ward), None))).boxed()),
        };
        // The link at the batch's last change: the ack's receipt names it.
        let link = links.links.last().copied();
        let span = tracing::info_span!("batch", %ward, first, last, count = changes.len(), duration_ms = tracing::field::Empty);
        let started = std::time::Instant::now();
        let queued = Queued {
            batch: WardBatch { ward: ward.clone(), changes: changes.into(), links: Some(links) },
            work: slot.batch_token(),
        };
        let answer =
            self.applier.queue(queued).instrument(span.clone()).await.map_err(|_| CityError::ShuttingDown)?;
        Ok(async move {
            let applied = answer.await.map_err(|_| CityError::ShuttingDown)???;
            span.record("duration_ms", started.elapsed().as_millis() as u64);
            tracing::debug!(parent: &span, applied, "batch applied");
            Ok((applied, link.filter(|_| applied == last)))
        }
        .boxed())
    }

    /// Acknowledges an applied batch; false if the ward no longer listens.
    async fn acked(
        &self,
        receipts: &WardReceipts,
        slot: &StreamSlot,
        tx: &mpsc::Sender<Outbound>,
        applied: Result<Applied, CityError>,
    ) -> Result<bool, CityError> {
        let (seq, link) = applied?;
        slot.progress();
        let ack = pb::Ack { applied_seq: seq, receipt: receipts.ack(seq, link, self.store.log_head()) };
        Ok(tx.send(message(city_message::Msg::Ack(ack))).await.is_ok())
    }
}

/// What a batch's application answers: the ward's last applied sequence,
/// and its link there if the batch ended there.
type Applied = (u64, Option<crate::model::signed::Hash>);

/// A wire change as the store takes it: decoded, or kept raw for quarantine.
pub fn incoming(c: pb::Change) -> Incoming {
    let seq = c.seq;
    let raw = prost::Message::encode_to_vec(&c);
    match change_from_pb(c) {
        Ok(change) => Incoming::Change(change),
        Err(e) => Incoming::Malformed { seq, reason: format!("malformed: {e}"), raw },
    }
}

#[tonic::async_trait]
impl CitySync for SyncService {
    type ReplicateStream = ReceiverStream<Outbound>;

    async fn digest(&self, req: Request<pb::DigestRequest>) -> Result<Response<pb::DigestReply>, Status> {
        self.digest_reply(req).await
    }

    async fn digest_keys(
        &self,
        req: Request<pb::DigestKeysRequest>,
    ) -> Result<Response<pb::DigestKeysReply>, Status> {
        self.digest_keys_reply(req).await
    }

    async fn repair(&self, req: Request<pb::RepairRequest>) -> Result<Response<pb::RepairReply>, Status> {
        self.repair_reply(req).await
    }

    async fn replicate(
        &self,
        req: Request<Streaming<pb::WardMessage>>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        let peer = self.guard.admit(&req, &[Role::Ward], "Replicate")?;
        let identity = peer.identity.clone();
        let mut inbound = req.into_inner();
        let hello = match inbound.message().await? {
            Some(pb::WardMessage { msg: Some(ward_message::Msg::Hello(h)) }) => h,
            _ => return Err(CityError::Protocol("the first message must be Hello".into()).into()),
        };
        let ward = Self::admit(&identity, &hello).inspect_err(|e| {
            tracing::warn!(%identity, claimed = %hello.ward_code, error = %e, "replication refused");
        })?;
        // Both halves stop when either does: the stream is one session.
        let session = self.cancel.child_token();
        let (slot, earlier_ended) = StreamSlot::take(&self.live, &self.store, &ward, session.clone());
        // Where the ward stands is read once its earlier streams can change
        // it no more.
        earlier_ended.await;
        let super::losses::Found { lost_changes, log_cursor, log_lost, receipts } =
            self.judge_losses(&ward, &hello).await?;
        let (last, chain) = self.store.resume_point(&ward).await.map_err(CityError::from)?;
        tracing::info!(%ward, node = %hello.node_id, last_applied = last, merged = hello.downstream_cursor, log_end = log_cursor, "ward connected");
        let (tx, rx) = mpsc::channel(8);
        let policies_json = serde_json::to_string(self.store.policies()).expect("policies serialize");
        let welcome = pb::Welcome {
            last_applied_seq: last,
            policies_json,
            lost_changes,
            log_cursor,
            log_lost,
            lost_found_at_ms: receipts.generation(),
            receipt: receipts.ack(last, chain.link, self.store.log_head()),
            link: chain.link.map(|l| l.to_vec()).unwrap_or_default(),
            link_key: chain.key.0.to_vec(),
            clock: Some(pb::Hlc { wall_ms: chain.newest.wall_ms, logical: chain.newest.logical }),
        };
        let _ = tx.send(message(city_message::Msg::Welcome(welcome))).await;
        tokio::spawn(self.clone().push_downstream(
            ward.clone(),
            if log_lost { log_cursor } else { hello.downstream_cursor },
            (tx.clone(), receipts.clone()),
            session.clone(),
        ));
        let (guard, denied_tx) = (self.guard.clone(), tx.clone());
        let pump =
            self.clone().pump((ward, peer.cert.clone()), inbound, (tx, receipts), slot, session.clone());
        tokio::spawn(async move {
            // Biased: a seeded simulation then replays exactly.
            tokio::select! {
                biased;
                _ = pump => {}
                // The rules were reloaded and deny this node: it is
                // disconnected, whatever the stream was waiting for.
                status = guard.until_denied(&peer, &[Role::Ward], "Replicate") => {
                    let _ = denied_tx.try_send(Err(status));
                }
            }
            session.cancel();
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
