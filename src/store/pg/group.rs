//! Groups of ward batches, written in the order of the calls, each one's
//! reading and merging overlapped with the writing of the one before it.
//!
//! A group reads what it needs without the lock, in a read-only snapshot,
//! as soon as the group before it holds the lock; it lays over that
//! snapshot what the group before wrote (handed over in memory) and merges
//! while that group writes and commits. Then it takes the lock and checks
//! the clock row: the group before committed, and the row is the one its
//! merge started from (`writes` counts every write of every city process,
//! so a write in between shows). If not, it reads again under the lock and
//! merges again. The merge is a function of what it reads, so either way
//! the result is the one a group reading under the lock gets; cursors are
//! still assigned under the lock, in commit order.

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio_postgres::IsolationLevel;

use super::target::{Overlay, PgTarget};
use super::write::{Clock, ReadAhead, begin, read, read_clock};
use super::{PgCityStore, pg_err, pool_err};
use crate::model::{RecordKey, WardCode};
use crate::store::city::apply::{GroupWrite, spouse_key};
use crate::store::{GroupOutcome, Incoming, StoreError, WardBatch, WardState};

/// The end of the chain of groups: what the last group called hands to the
/// next one.
pub(super) struct Link {
    /// What it wrote, once it holds the lock (dropped if it never will).
    handoff: oneshot::Receiver<Handoff>,
    /// Whether it committed, once it and every group before it are done.
    finished: oneshot::Receiver<bool>,
}

/// What a group that holds the lock hands to the next: what it writes.
struct Handoff {
    /// The clock row as it leaves it.
    clock: Clock,
    wards: HashMap<WardCode, WardState>,
    overlay: Overlay,
}

impl PgCityStore {
    /// See [`crate::store::CityDb::apply_group`].
    pub(super) fn apply_group_in_order(
        &self,
        group: Vec<WardBatch>,
        now_ms: i64,
        ctx: crate::model::Context,
        max_skew_ms: u64,
    ) -> BoxFuture<'static, GroupOutcome> {
        let (hand, handoff) = oneshot::channel();
        let (done, finished) = oneshot::channel();
        let before = self.tail.lock().expect("poisoned").replace(Link { handoff, finished });
        let store = self.clone();
        async move {
            // Who writes which record, and the spouses registrations name
            // (judged with them).
            let (mut senders, mut spouses) = (Vec::new(), Vec::new());
            for b in &group {
                for c in b.changes.iter().filter_map(Incoming::change) {
                    senders.push((c.key.clone(), b.ward.clone()));
                    spouses.extend(spouse_key(&b.ward, c));
                }
            }
            let (handoff, mut finished) = match before {
                Some(l) => (Some(l.handoff), Some(l.finished)),
                None => (None, None),
            };
            let work = |w: &mut GroupWrite<PgTarget>, wards: &mut HashMap<WardCode, WardState>| {
                w.apply_batches(&group, &ctx, max_skew_ms, wards)
            };
            let out =
                store.write_in_turn(handoff, &mut finished, hand, now_ms, (senders, spouses), work).await;
            // A turn ends only after the turns before it.
            if let Some(f) = finished {
                let _ = f.await;
            }
            let _ = done.send(out.is_ok());
            out
        }
        .boxed()
    }

    /// Writes one group: `handoff` and `finished` are the previous group's.
    async fn write_in_turn<T: Send>(
        &self,
        handoff: Option<oneshot::Receiver<Handoff>>,
        finished: &mut Option<oneshot::Receiver<bool>>,
        hand: oneshot::Sender<Handoff>,
        now_ms: i64,
        (senders, spouses): (Vec<(RecordKey, WardCode)>, Vec<RecordKey>),
        work: impl Fn(&mut GroupWrite<PgTarget>, &mut HashMap<WardCode, WardState>) -> Result<T, StoreError>
        + Send,
    ) -> Result<T, StoreError> {
        let before = match handoff {
            Some(h) => h.await.ok(),
            None => None,
        };
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let keys: Vec<RecordKey> =
            senders.iter().map(|(k, _)| k.clone()).chain(spouses.iter().cloned()).collect();
        let ahead = || ReadAhead { keys: keys.clone(), quarantined: None, senders: senders.clone() };
        let snapshot = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_err)?;
        let mut seen = read(&snapshot, false, ahead(), now_ms).await?;
        snapshot.commit().await.map_err(pg_err)?;
        // The snapshot, as the group before leaves it: taken before or
        // after that group committed, or else too old to merge over.
        let current = match &before {
            Some(h) if [h.clock.writes - 1, h.clock.writes].contains(&seen.clock.writes) => {
                if seen.clock.writes < h.clock.writes {
                    // (Taken before it committed: its log rows are not in it.)
                    seen.target.lay_writes(&h.overlay);
                }
                seen.clock = h.clock;
                seen.wards = h.wards.clone();
                seen.target.lay(&h.overlay);
                true
            }
            Some(_) => false,
            None => true,
        };
        let early = if current { self.merge(seen, now_ms, &work).ok() } else { None };
        // The group before is done (and every one before it) before the lock.
        let committed = match finished.take() {
            Some(f) => f.await.unwrap_or(false),
            None => true,
        };
        let tx = begin(&mut client).await?;
        let clock = read_clock(&tx, true).await?;
        // (A group that handed nothing over wrote nothing: it hands over
        // before it writes; so only a hand-over needs its commit.)
        let merged = match early {
            Some(m) if m.from == clock && (committed || before.is_none()) => m,
            _ => self.merge(read(&tx, true, ahead(), now_ms).await?, now_ms, &work)?,
        };
        let _ = hand.send(Handoff {
            clock: merged.to,
            wards: merged.wards.clone(),
            overlay: merged.target.overlay(),
        });
        self.finish(tx, merged).await
    }
}
