//! A ward's replication streams at the city: one at a time. A new stream,
//! or a ward restoring itself, ends the ward's earlier streams and waits
//! until every batch they queued is applied (or failed): what the city
//! then says it applied of the ward is final, and the ward may number new
//! changes after it. Without this fence, a ward put back to an older copy
//! (or restored on a new disk) while its lost incarnation's batches were
//! still queued would reuse their sequence numbers, and the city would skip
//! its new changes as duplicates.

use tokio_util::sync::CancellationToken;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

use super::{Live, ingest::Db};
use crate::clock::now_ms;
use crate::model::WardCode;
use crate::proto::pb;

/// One open replication stream, as the live view keeps it.
#[derive(Debug, Clone)]
pub struct OpenStream {
    id: u64,
    /// Ends the stream.
    session: CancellationToken,
    /// Counts the stream's pump and each batch it queued, until applied.
    work: TaskTracker,
}

/// Numbers replication streams, to tell a ward's streams apart.
static STREAM_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Ends every stream `ward` has open now; the future resolves once each has
/// stopped reading and every batch queued by it, or by a stream of the
/// ward that ended before, is applied or failed.
pub(super) fn end_streams(live: &Live, ward: &WardCode) -> impl Future<Output = ()> + use<> {
    let mut all = live.lock().expect("poisoned");
    let w = all.entry(ward.clone()).or_default();
    ending(ward, w)
}

/// Cancels the streams of `w` and returns what awaits their end and
/// every batch of theirs or of the ward's ended streams.
fn ending(ward: &WardCode, w: &mut super::LiveWard) -> impl Future<Output = ()> + use<> {
    if !w.streams.is_empty() {
        tracing::warn!(%ward, streams = w.streams.len(), "ending the ward's earlier replication streams");
    }
    w.draining.retain(|work| !work.is_empty());
    let mut work = w.draining.clone();
    for s in &w.streams {
        s.session.cancel();
        work.push(s.work.clone());
    }
    async move {
        for w in work {
            w.wait().await;
        }
    }
}

/// One open replication stream of a ward, counted while it lives: its pump
/// holds it, and dropping it (the pump ended) ends the stream's own share
/// of its work.
pub(super) struct StreamSlot {
    live: Live,
    store: Db,
    ward: WardCode,
    id: u64,
    work: TaskTracker,
    _pump: TaskTrackerToken,
}

impl StreamSlot {
    /// Counts a new stream of `ward`, which `session` ends, in place of the
    /// ward's earlier ones (a ward reconnecting after its old connection
    /// died silently is never locked out). Returns the slot and what to
    /// await before reading where the ward stands: the earlier streams'
    /// end (`end_streams`).
    pub(super) fn take(
        live: &Live,
        store: &Db,
        ward: &WardCode,
        session: CancellationToken,
    ) -> (StreamSlot, impl Future<Output = ()> + use<>) {
        let work = TaskTracker::new();
        // Closed from the start: waiting ends once the pump and every batch
        // it queues have let go of their tokens.
        work.close();
        let pump = work.token();
        let id = STREAM_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let earlier = {
            let mut all = live.lock().expect("poisoned");
            let w = all.entry(ward.clone()).or_default();
            if w.streams.is_empty() {
                w.outages.reconnected(ward, now_ms());
            }
            let earlier = ending(ward, w);
            w.streams.push_back(OpenStream { id, session, work: work.clone() });
            w.last_seen_ms = now_ms();
            earlier
        };
        let slot = StreamSlot {
            live: live.clone(),
            store: store.clone(),
            ward: ward.clone(),
            id,
            work,
            _pump: pump,
        };
        (slot, earlier)
    }

    /// What a batch this stream queues holds until it is applied.
    pub(super) fn batch_token(&self) -> TaskTrackerToken {
        self.work.token()
    }

    pub(super) fn heartbeat(&self, h: pb::Heartbeat) {
        let now = now_ms();
        {
            let mut all = self.live.lock().expect("poisoned");
            let w = all.entry(self.ward.clone()).or_default();
            w.heartbeat = Some(h);
            w.heartbeat_at_ms = now;
            w.last_seen_ms = now;
        }
        self.progress();
    }

    /// Follows a catch-up after an outage: the ward's lag from its last
    /// report and what the city has applied since.
    pub(super) fn progress(&self) {
        let (now, applied) = (now_ms(), self.store.last_applied(&self.ward));
        let mut all = self.live.lock().expect("poisoned");
        let w = all.entry(self.ward.clone()).or_default();
        let lag = super::lag(w.heartbeat.as_ref(), applied, now);
        let reported_ms = w.heartbeat_at_ms;
        w.outages.reported(&self.ward, &lag, reported_ms, applied, now);
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some(w) = self.live.lock().expect("poisoned").get_mut(&self.ward) {
            w.streams.retain(|s| s.id != self.id);
            // Its batches still being applied are waited for by whatever
            // ends the ward's streams next (the pump's own token goes with
            // this slot).
            w.draining.retain(|work| !work.is_empty());
            w.draining.push(self.work.clone());
            if w.streams.is_empty() {
                w.outages.disconnected(&self.ward, now_ms(), self.store.last_applied(&self.ward));
            }
        }
    }
}
