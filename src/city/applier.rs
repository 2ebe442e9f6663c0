//! The city's group-commit task: applies the queued batches of every ward,
//! many at once (one atomic write and one flush per group).
//!
//! One ward's bad batch never fails another's. A group the database
//! refuses is split: each batch is applied alone, in order. A batch the
//! database refuses alone, for what is in it (`StoreError::Refused`: not a
//! database that is down), is applied a change at a time, and a change it
//! refuses is quarantined instead, kept raw with the refusal, so that the
//! ward's stream moves on rather than retrying it forever.

use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Instrument;

use super::ingest::Db;
use crate::clock::{now_ms, ward_today};
use crate::model::Context;
use crate::proto::pb;
use crate::store::{BatchRejected, GroupCommit, Incoming, StoreError, WardBatch};

/// The outcome of applying one ward batch.
pub type ApplyResult = Result<Result<u64, BatchRejected>, StoreError>;

/// A ward batch queued to be applied, holding a token of the stream that
/// sent it until it is applied (or fails): see `streams`.
pub struct Queued {
    pub(super) batch: WardBatch,
    pub(super) work: TaskTrackerToken,
}

/// The city's group-commit task: applies queued ward batches.
pub type Applier = GroupCommit<Queued, ApplyResult>;

/// What every apply of the task shares.
#[derive(Clone)]
struct Apply {
    store: Db,
    province: Option<String>,
    max_skew_ms: u64,
}

/// Starts the city's group-commit task over `store`.
/// `province`, if set, is the city's: records of wards elsewhere are quarantined.
pub fn spawn_applier(
    store: Db,
    max_group: usize,
    province: Option<String>,
    max_skew_ms: u64,
    apply_latency: prometheus_client::metrics::histogram::Histogram,
) -> (Applier, tokio::task::JoinHandle<()>) {
    let apply = Apply { store, province, max_skew_ms };
    GroupCommit::spawn(max_group, move |queued: Vec<Queued>| {
        let n = queued.len();
        let (group, work): (Vec<WardBatch>, Vec<TaskTrackerToken>) =
            queued.into_iter().map(|q| (q.batch, q.work)).unzip();
        let span = tracing::debug_span!("apply_group", batches = n);
        let started = std::time::Instant::now();
        // Kept to split the group should the database refuse it (the
        // batches' changes are shared, not copied).
        let kept = group.clone();
        // Applied in group order; the future resolves once durable.
        let durable = span.in_scope(|| apply.group(group));
        let (apply, apply_latency) = (apply.clone(), apply_latency.clone());
        async move {
            let outcomes = match durable.await {
                Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                Err(e) if n > 1 || matches!(e, StoreError::Refused(_)) => {
                    tracing::error!(error = %e, batches = n, "the database refused a group of ward batches: applying each alone");
                    let mut out = Vec::with_capacity(n);
                    for batch in kept {
                        out.push(apply.alone(batch).await);
                    }
                    out
                }
                Err(e) => {
                    tracing::error!(error = %e, "applying ward batches failed");
                    vec![Err(e); n]
                }
            };
            drop(work);
            apply_latency.observe(started.elapsed().as_secs_f64());
            outcomes
        }
        .instrument(span)
    })
}

impl Apply {
    /// Applies `group`; resolves once durable.
    fn group(
        &self,
        group: Vec<WardBatch>,
    ) -> futures::future::BoxFuture<'static, crate::store::GroupOutcome> {
        let ctx = Context { today: ward_today(self.max_skew_ms), province: self.province.clone() };
        self.store.apply_group(group, now_ms(), ctx, self.max_skew_ms)
    }

    /// Applies one batch on its own.
    async fn one(&self, batch: WardBatch) -> ApplyResult {
        Ok(self.group(vec![batch]).await?.remove(0))
    }

    /// Applies `batch` on its own; if the database refuses it, a change at
    /// a time, quarantining each change it refuses.
    async fn alone(&self, batch: WardBatch) -> ApplyResult {
        match self.one(batch.clone()).await {
            Err(StoreError::Refused(_)) if batch.changes.len() > 1 => {}
            Err(StoreError::Refused(why)) => {
                return self.quarantine(&batch, 0, &why).await;
            }
            other => return other,
        }
        let mut last: ApplyResult = Ok(Ok(0));
        for (i, incoming) in batch.changes.iter().enumerate() {
            let single = WardBatch {
                ward: batch.ward.clone(),
                changes: [incoming.clone()].into(),
                links: batch.links.as_ref().map(|l| l.slice(i, i + 1)),
            };
            last = match self.one(single).await {
                Err(StoreError::Refused(why)) => self.quarantine(&batch, i, &why).await,
                other => other,
            };
            if !matches!(last, Ok(Ok(_))) {
                return last;
            }
        }
        last
    }

    /// Quarantines change `i` of `batch`, which the database refused with
    /// `why`: raw, so that nothing of it but its bytes is stored (its link
    /// still moves the ward's chain on).
    async fn quarantine(&self, batch: &WardBatch, i: usize, why: &str) -> ApplyResult {
        let (ward, incoming) = (&batch.ward, &batch.changes[i]);
        let seq = incoming.seq();
        tracing::error!(%ward, seq, "the city's database refused a ward's change: quarantined");
        tracing::debug!(%why, "refused by the database");
        let raw = match incoming {
            Incoming::Change(c) => prost::Message::encode_to_vec(&pb::Change::from(c)),
            Incoming::Malformed { raw, .. } => raw.clone(),
        };
        let reason = format!("the city's database refused it: {why}");
        let kept = Incoming::Malformed { seq, reason, raw };
        let links = batch.links.as_ref().map(|l| l.slice(i, i + 1));
        self.one(WardBatch { ward: ward.clone(), changes: [kept].into(), links }).await
    }
}
