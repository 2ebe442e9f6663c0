//! The replicator: streams the ward's outbox to the city over
//! `CitySync.Replicate`, and reconnects with capped exponential backoff and
//! jitter whenever anything fails. Local writes never wait for it.
//!
//! Per connection: `Hello` → the city's `Welcome` names the last sequence it
//! durably applied → entries up to it are deleted and sending resumes right
//! after it → batches (bounded by count and bytes, at most `max_in_flight`
//! unacknowledged) → each `Ack` deletes what it covers. Only entries up to
//! the flushed watermark are sent, and entries are read from the store a
//! batch at a time, so memory stays bounded whatever the backlog.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::time::Duration;

use backoff::backoff::Backoff;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::chain::Chainer;
use crate::clock::now_ms;
use crate::config::ReplicationConfig;
use crate::model::signed;
use crate::model::{Policies, WardCode};
use crate::proto::pb::city_query_client::CityQueryClient;
use crate::proto::pb::{self, city_message, city_sync_client::CitySyncClient, ward_message};
use crate::proto::{PROTOCOL_VERSION, SCHEMA_VERSION, change_from_pb, key_from_pb, versioned_from_pb};
use crate::store::WardStore;

/// Opens a channel to the city. The seam for other transports: TCP by
/// default ([`tcp_connect`]), a simulated network in the simulation.
pub type Connect = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<Channel>> + Send + Sync>;

/// Connects over TCP to `endpoint` (which carries the TLS settings).
pub fn tcp_connect(endpoint: Endpoint) -> Connect {
    Arc::new(move || {
        let e = endpoint.clone();
        Box::pin(async move { Ok(e.connect().await?) })
    })
}

/// The state of the link to the city, for status reports.
#[derive(Debug)]
pub struct LinkState {
    /// True while a stream is open and the city has answered `Hello`.
    pub connected: AtomicBool,
    /// Connection attempts after the first.
    pub reconnects: Counter,
    /// Batches sent to the city.
    pub batches_sent: Counter,
    /// Time from sending a batch to its ack.
    pub ack_latency: Histogram,
    /// Changes the city acknowledged and later no longer held.
    pub city_lost_changes: Counter,
    /// Why the link went down last (empty while connected): shown by
    /// `wardsync status`, as a refusal the ward cannot see otherwise (a
    /// city serving another province) is only in the city's answer.
    pub down_because: std::sync::Mutex<String>,
}

impl Default for LinkState {
    fn default() -> Self {
        LinkState {
            connected: AtomicBool::new(false),
            reconnects: Counter::default(),
            batches_sent: Counter::default(),
            ack_latency: crate::metrics::latency_histogram(),
            city_lost_changes: Counter::default(),
            down_because: std::sync::Mutex::default(),
        }
    }
}

/// Streams the outbox to the city until cancelled.
pub struct Replicator {
    /// This ward.
    pub ward: WardCode,
    /// Identifies this node in `Hello`.
    pub node_id: String,
    /// The outbox.
    pub store: WardStore,
    /// The highest durable sequence number (see [`super::Writer`]).
    pub durable: watch::Receiver<u64>,
    /// How to reach the city.
    pub connect: Connect,
    /// Tuning.
    pub config: ReplicationConfig,
    /// Shared with the status API.
    pub link: Arc<LinkState>,
    /// The certificate and key batches are signed with, read afresh for
    /// each connection (as the TLS connection reads them); `None`:
    /// `insecure_dev`, unsigned.
    pub tls: Option<crate::auth::TlsFiles>,
    /// Entries up to here are durable whatever the writer last reported
    /// (set when queued entries are renumbered past the city's sequence).
    pub floor: u64,
    /// Brings this ward and the city level when either lost data.
    pub verifier: Arc<super::Verifier>,
}

enum SessionEnd {
    Cancelled,
    Failed(String),
}

impl Replicator {
    /// Runs until `cancel` fires. In-flight batches are given a moment to be
    /// acknowledged; any not acknowledged are simply sent again next time.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = backoff::ExponentialBackoff {
            initial_interval: Duration::from_millis(self.config.backoff_initial_ms),
            max_interval: Duration::from_millis(self.config.backoff_max_ms),
            multiplier: 2.0,
            // Jitter is added by `clock::jitter`, which a simulation can replay.
            randomization_factor: 0.0,
            max_elapsed_time: None,
            ..Default::default()
        };
        let mut first = true;
        loop {
            if !first {
                self.link.reconnects.inc();
            }
            first = false;
            // Whatever the transport, a connection or session that does not
            // come up in time is abandoned and retried.
            let setup = Duration::from_millis(self.config.ack_timeout_ms);
            let outcome = match tokio::time::timeout(setup, (self.connect)()).await {
                Ok(Ok(channel)) => self.session(channel, &cancel, &mut backoff).await,
                Ok(Err(e)) => SessionEnd::Failed(format!("cannot connect to the city: {e:#}")),
                Err(_) => {
                    SessionEnd::Failed(format!("no connection to the city within {} ms", setup.as_millis()))
                }
            };
            self.link.connected.store(false, Ordering::Relaxed);
            let reason = match outcome {
                SessionEnd::Cancelled => return,
                SessionEnd::Failed(reason) => reason,
            };
            *self.link.down_because.lock().expect("not poisoned") = reason.clone();
            let delay = crate::clock::jitter(backoff.next_backoff().unwrap_or(backoff.max_interval), 0.5);
            tracing::warn!(ward = %self.ward, %reason, retry_in_ms = delay.as_millis() as u64, backlog = self.store.backlog(), "replication interrupted");
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(
        &mut self,
        channel: Channel,
        cancel: &CancellationToken,
        backoff: &mut backoff::ExponentialBackoff,
    ) -> SessionEnd {
        let fail = |what: &str, e: &dyn std::fmt::Display| SessionEnd::Failed(format!("{what}: {e}"));
        let cfg = self.config.clone();
        let signer = match &self.tls {
            Some(files) => match crate::auth::Signer::load(files) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => return fail("cannot sign with this ward's certificate key", &format!("{e:#}")),
            },
            None => None,
        };
        let (tx, rx) = mpsc::channel(cfg.max_in_flight + 1);
        let (acked_receipt_seq, acked_receipt) = self.store.ack_receipt();
        let (anchor_seq, anchor_link) = self.store.chain_anchor();
        let acked_link = anchor_link.filter(|_| anchor_seq == self.store.acked_seq());
        let hello = pb::WardMessage {
            msg: Some(ward_message::Msg::Hello(pb::Hello {
                ward_code: self.ward.to_string(),
                node_id: self.node_id.clone(),
                protocol_version: PROTOCOL_VERSION,
                schema_version: SCHEMA_VERSION,
                downstream_cursor: self.store.downstream_cursor(),
                acked_seq: self.store.acked_seq(),
                downstream_check: self.store.downstream_check(),
                acked_receipt_seq,
                acked_receipt,
                downstream_receipt: self.store.downstream_receipt(),
                acked_link: acked_link.map(|l| l.to_vec()).unwrap_or_default(),
            })),
        };
        let _ = tx.send(hello).await;
        let mut query = CityQueryClient::new(channel.clone());
        let mut client = CitySyncClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let setup = Duration::from_millis(cfg.ack_timeout_ms);
        let opened = tokio::time::timeout(setup, client.replicate(ReceiverStream::new(rx))).await;
        let mut inbound = match opened {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) if s.code() == tonic::Code::PermissionDenied => {
                return SessionEnd::Failed(format!("refused by the city: {}", s.message()));
            }
            Ok(Err(s)) => return fail("the city refused the stream", &s.message()),
            Err(_) => return SessionEnd::Failed("the city did not answer the stream in time".into()),
        };
        let welcome = match tokio::time::timeout(setup, inbound.message()).await {
            Ok(m) => m,
            Err(_) => return SessionEnd::Failed("the city did not answer Hello in time".into()),
        };
        let welcome = match welcome {
            Ok(Some(pb::CityMessage { msg: Some(city_message::Msg::Welcome(w)) })) => {
                match serde_json::from_str::<Policies>(&w.policies_json) {
                    Ok(p) => {
                        if let Err(e) = self.store.set_policies(p) {
                            return fail("cannot store the city's merge policies", &e);
                        }
                    }
                    Err(e) => return fail("the city sent unreadable merge policies", &e),
                }
                if crate::mutation::active(crate::mutation::Mutation::ReplicatorPanics) {
                    panic!("deliberate bug (replicator-panics): the replicator panics after Welcome");
                }
                w
            }
            Ok(_) => {
                return SessionEnd::Failed("the city did not answer Hello with Welcome".into());
            }
            Err(s) => return fail("the city closed the stream", &s),
        };
        let applied = welcome.last_applied_seq;
        if let Err(e) = self.reconcile(&welcome).await {
            return SessionEnd::Failed(e);
        }
        if let Some(lost) = self.store.refill_due() {
            // Before anything more is sent: what is sent next may build on
            // writes the city lost.
            match self.verifier.refill(lost).await {
                Ok(_) => {
                    let done = self.store.set_refill_due(None);
                    if let Err(e) = done {
                        return fail("cannot store that the refill is done", &e);
                    }
                }
                Err(e) => return SessionEnd::Failed(format!("refilling after a loss of data: {e}")),
            }
        }
        let city_link = signed::hash_from(&welcome.link);
        if let Err(e) = self.store.ack(applied, &welcome.receipt, city_link) {
            return fail("cannot delete acknowledged entries", &e);
        }
        backoff.reset();
        self.link.down_because.lock().expect("not poisoned").clear();
        self.link.connected.store(true, Ordering::Relaxed);
        tracing::info!(ward = %self.ward, resume_after = applied, backlog = self.store.backlog(), "connected to the city");

        let mut sent = applied.max(self.store.acked_seq());
        let mut chain = {
            let key = signer.as_ref().map(|s| s.key_id()).unwrap_or_default();
            let ours = match self.store.link_at(sent, &key) {
                Ok(l) => l,
                Err(e) => return fail("cannot read the outbox", &e),
            };
            // (Neither side knows it, a store and city from before chains:
            // the city takes the chain as it comes.)
            let head = ours.or(city_link.filter(|_| sent == applied)).unwrap_or(signed::GENESIS);
            Chainer::new(self.ward.clone(), signer, (sent, head))
        };
        let mut in_flight: VecDeque<(u64, Instant, signed::Hash)> = VecDeque::new();
        let ack_timeout = Duration::from_millis(cfg.ack_timeout_ms);
        let mut ack_deadline = Instant::now() + ack_timeout;
        let mut heartbeat = tokio::time::interval(Duration::from_millis(cfg.heartbeat_ms.max(100)));
        loop {
            while in_flight.len() < cfg.max_in_flight {
                let durable = (*self.durable.borrow_and_update()).max(self.floor);
                let changes = match self.store.outbox_range(
                    sent,
                    durable,
                    cfg.batch_max_entries,
                    cfg.batch_max_bytes,
                ) {
                    Ok(c) => c,
                    Err(e) => return fail("cannot read the outbox", &e),
                };
                let Some(last) = changes.last().map(|c| c.seq) else {
                    break;
                };
                let first = changes[0].seq;
                let batch = pb::WardMessage { msg: Some(ward_message::Msg::Batch(chain.batch(&changes))) };
                if in_flight.is_empty() {
                    ack_deadline = Instant::now() + ack_timeout;
                }
                if tx.send(batch).await.is_err() {
                    return SessionEnd::Failed("the stream to the city closed".into());
                }
                tracing::debug!(ward = %self.ward, first, last, count = changes.len(), "batch sent");
                sent = last;
                in_flight.push_back((last, Instant::now(), chain.head().1));
                self.link.batches_sent.inc();
            }
            // Biased (in this order): a seeded simulation then replays exactly.
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return self.drain(&mut inbound, &mut in_flight).await,
                msg = inbound.message() => match msg {
                    Ok(Some(pb::CityMessage { msg: Some(city_message::Msg::Ack(a)) })) => {
                        let link = in_flight.iter().find(|(s, _, _)| *s == a.applied_seq).map(|(_, _, l)| *l);
                        if let Err(e) = self.store.ack(a.applied_seq, &a.receipt, link) {
                            return fail("cannot delete acknowledged entries", &e);
                        }
                        while let Some((_, sent, _)) = in_flight.front().filter(|(s, _, _)| *s <= a.applied_seq) {
                            self.link.ack_latency.observe(sent.elapsed().as_secs_f64());
                            in_flight.pop_front();
                        }
                        ack_deadline = Instant::now() + ack_timeout;
                    }
                    Ok(Some(pb::CityMessage { msg: Some(city_message::Msg::Downstream(d)) })) => {
                        if let Err(e) = self.merge_downstream(d, &mut query).await {
                            return SessionEnd::Failed(e);
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return SessionEnd::Failed("the city ended the stream".into()),
                    Err(s) => return fail("replication stream failed", &s),
                },
                changed = self.durable.changed(), if in_flight.len() < cfg.max_in_flight => {
                    if changed.is_err() {
                        // The writer has stopped: the node is shutting down.
                        return self.drain(&mut inbound, &mut in_flight).await;
                    }
                }
                _ = tokio::time::sleep_until(ack_deadline), if !in_flight.is_empty() => {
                    return SessionEnd::Failed(format!("no ack from the city for {} ms", cfg.ack_timeout_ms));
                }
                _ = heartbeat.tick() => {
                    let beat = match self.heartbeat() {
                        Ok(b) => b,
                        Err(e) => return fail("cannot read the outbox", &e),
                    };
                    if tx.send(beat).await.is_err() {
                        return SessionEnd::Failed("the stream to the city closed".into());
                    }
                }
            }
        }
    }

    /// What this ward has queued, for the city to compute its lag.
    fn heartbeat(&self) -> Result<pb::WardMessage, crate::store::StoreError> {
        let beat = pb::Heartbeat {
            last_seq: self.store.last_seq(),
            backlog: self.store.backlog(),
            backlog_bytes: self.store.backlog_bytes(),
            oldest_queued_ms: self.store.oldest_queued_ms()?.unwrap_or(0),
            sent_at_ms: now_ms(),
        };
        Ok(pb::WardMessage { msg: Some(ward_message::Msg::Heartbeat(beat)) })
    }

    /// Merges changes made elsewhere, with the same function as the city.
    /// Records the city names are fetched whole first, so that the changes,
    /// the states and the cursor are stored together or not at all.
    async fn merge_downstream(
        &self,
        d: pb::Downstream,
        query: &mut CityQueryClient<Channel>,
    ) -> Result<(), String> {
        // Each with what proves who made it, kept as the city sent it.
        let changes = d
            .changes
            .into_iter()
            .map(|mut c| {
                let evidence = std::mem::take(&mut c.authorship);
                change_from_pb(c).map(|c| (c, evidence))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the city sent a change this ward cannot read: {e}"))?;
        let mut whole = Vec::with_capacity(d.fetch_whole.len());
        for key in d.fetch_whole {
            let reply =
                query.get_state(pb::CityGetRequest { key: Some(key.clone()), ..Default::default() }).await;
            let reply = match reply {
                Ok(r) => r.into_inner(),
                // Deleted, and not this ward's to read: the changes merged
                // with it are all it gets (never a reason to stop).
                Err(s) if s.code() == tonic::Code::NotFound => {
                    tracing::debug!(ward = %self.ward, status = %s, "a record to fetch whole is not the city's to give");
                    continue;
                }
                Err(s) => return Err(format!("cannot fetch a record from the city: {}", s.message())),
            };
            let key = key_from_pb(Some(key)).map_err(|e| format!("the city named a bad record key: {e}"))?;
            whole.push((key, versioned_from_pb(reply.state.unwrap_or_default())));
        }
        let merged = self
            .store
            .merge_downstream(&changes, &whole, (d.cursor, d.cursor_check, &d.receipt), now_ms())
            .map_err(|e| format!("cannot store changes from the city: {e}"))?;
        tracing::info!(ward = %self.ward, cursor = d.cursor, records = merged.len(), fetched_whole = whole.len(), "merged changes made elsewhere");
        Ok(())
    }

    /// On shutdown: wait briefly for the acks of batches already sent.
    async fn drain(
        &self,
        inbound: &mut tonic::Streaming<pb::CityMessage>,
        in_flight: &mut VecDeque<(u64, Instant, signed::Hash)>,
    ) -> SessionEnd {
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Some(&(last, _, _)) = in_flight.back() {
            match tokio::time::timeout_at(deadline, inbound.message()).await {
                Ok(Ok(Some(pb::CityMessage { msg: Some(city_message::Msg::Ack(a)) }))) => {
                    let link = in_flight.iter().find(|(s, _, _)| *s == a.applied_seq).map(|(_, _, l)| *l);
                    let _ = self.store.ack(a.applied_seq, &a.receipt, link);
                    if a.applied_seq >= last {
                        break;
                    }
                }
                Ok(Ok(Some(_))) => {}
                _ => break,
            }
        }
        SessionEnd::Cancelled
    }
}
