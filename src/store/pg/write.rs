//! Writes on PostgreSQL: one transaction per write, holding the lock on
//! `city_clock` from its first statement to COMMIT (see the module docs of
//! [`super`]); the shared merge runs in between over what was read ahead.

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::target::PgTarget;
use super::{PgCityStore, pg_err, pool_err, rows, sql};
use crate::model::{Hlc, RecordKey, WardCode};
use crate::store::city::apply::{GroupWrite, city_clock_at};
use crate::store::{GroupOutcome, Incoming, StoreError, WardBatch, WardState};

/// Publishes the log up to `cursor` (committed): readers waiting on it wake.
pub(super) fn publish(durable: &tokio::sync::watch::Sender<u64>, cursor: u64) {
    durable.send_if_modified(|c| {
        let newer = cursor > *c;
        *c = (*c).max(cursor);
        newer
    });
}

/// What a write reads ahead besides the ward states.
#[derive(Default)]
pub(super) struct ReadAhead {
    /// Records the write may read or change.
    pub(super) keys: Vec<RecordKey>,
    /// A quarantined change it settles (its record is read too).
    pub(super) quarantined: Option<(WardCode, u64)>,
}

impl PgCityStore {
    /// Runs `f` over one transaction and commits it; returns once committed.
    pub(super) async fn write<T: Send>(
        &self,
        now_ms: i64,
        mut ahead: ReadAhead,
        f: impl FnOnce(&mut GroupWrite<PgTarget>, &mut HashMap<WardCode, WardState>) -> Result<T, StoreError>
        + Send,
    ) -> Result<T, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(pg_err)?;
        if crate::mutation::active(crate::mutation::Mutation::PgAsyncCommit) {
            tx.batch_execute("SET LOCAL synchronous_commit = off").await.map_err(pg_err)?;
        }
        // The lock first, and only then what it guards is read.
        let lock = "SELECT cursor, hlc_wall_ms, hlc_logical, writes FROM city_clock WHERE id = 1 FOR UPDATE";
        let clock = sql::query_one(&tx, lock, &[]).await.map_err(pg_err)?;
        let cursor = clock.get::<_, i64>(0) as u64;
        let stored = Hlc { wall_ms: clock.get::<_, i64>(1) as u64, logical: clock.get::<_, i64>(2) as u32 };
        let writes = clock.get::<_, i64>(3) + 1;
        let mut target = PgTarget::default();
        if let Some((ward, seq)) = &ahead.quarantined
            && let Some(q) = target.read_quarantined(&tx, ward, *seq).await?
            && let Some(c) = &q.change
        {
            ahead.keys.push(c.key.clone());
        }
        let (before, ()) = futures::try_join!(rows::load_wards(&tx), target.read_ahead(&tx, &ahead.keys))?;
        let mut w = GroupWrite::new(target, &self.policies, cursor, city_clock_at(stored, now_ms), now_ms);
        let mut wards = before.clone();
        let out = f(&mut w, &mut wards)?;
        let counted = w.kind_delta.to_vec();
        let noted = w.target.noted();
        let (new_cursor, wall, logical) = (w.cursor as i64, w.hlc.wall_ms as i64, i64::from(w.hlc.logical));
        let clock_written = async {
            let records: Vec<i64> = sql::query_one(
                &tx,
                "UPDATE city_clock SET cursor = $1, hlc_wall_ms = $2, hlc_logical = $3, writes = writes + 1,
                         records = ARRAY[records[1] + ($4::bigint[])[1], records[2] + ($4::bigint[])[2],
                                        records[3] + ($4::bigint[])[3]]
                     WHERE id = 1 RETURNING records",
                &[&new_cursor, &wall, &logical, &counted],
            )
            .await
            .map_err(pg_err)?
            .get(0);
            if new_cursor as u64 > cursor {
                // Heard by every city process once committed: the wards
                // named are sent the new changes (a payload has room for
                // about 1,300 wards; beyond, the processes read the notes).
                let mut wards: Vec<&str> = noted.iter().map(|w| w.as_str()).collect();
                if wards.len() > 1000 {
                    wards = vec!["*"];
                }
                let payload = format!("{new_cursor} {}", wards.join(","));
                sql::execute(&tx, "SELECT pg_notify('wardsync_log', $1)", &[&payload])
                    .await
                    .map_err(pg_err)?;
            }
            Ok::<_, StoreError>(records)
        };
        // Every table's statement at once: pipelined, one round trip.
        let ((), (), records) = futures::try_join!(
            w.target.write(&tx, &self.policies),
            rows::save_wards(&tx, &before, &wards),
            clock_written
        )?;
        tx.commit().await.map_err(pg_err)?;
        super::note(&self.notes, noted, w.cursor);
        let mut cache = self.cache.lock().expect("poisoned");
        // A reload that read after this commit may have come first.
        if writes > cache.writes {
            cache.wards = wards;
            for (n, counted) in cache.kinds.iter_mut().zip(records) {
                *n = counted.max(0) as u64;
            }
            cache.writes = writes;
        }
        drop(cache);
        publish(&self.durable, w.cursor);
        Ok(out)
    }

    /// See [`crate::store::CityDb::apply_group`]: each group waits for the
    /// one before it, so groups are written in the order of the calls.
    pub(super) fn apply_group_in_order(
        &self,
        group: Vec<WardBatch>,
        now_ms: i64,
        ctx: crate::model::Context,
        max_skew_ms: u64,
    ) -> BoxFuture<'static, GroupOutcome> {
        let (done, next) = tokio::sync::oneshot::channel::<()>();
        let before = self.tail.lock().expect("poisoned").replace(next);
        let store = self.clone();
        async move {
            if let Some(before) = before {
                // Done, failed or dropped: either way its turn is over.
                let _ = before.await;
            }
            let keys = group
                .iter()
                .flat_map(|b| &b.changes)
                .filter_map(|c| match c {
                    Incoming::Change(c) => Some(c.key.clone()),
                    Incoming::Malformed { .. } => None,
                })
                .collect();
            let out = store
                .write(now_ms, ReadAhead { keys, quarantined: None }, |w, wards| {
                    w.apply_batches(&group, &ctx, max_skew_ms, wards)
                })
                .await;
            drop(done);
            out
        }
        .boxed()
    }
}
