//! Writes on PostgreSQL: one transaction per write, holding the lock on
//! `city_clock` from its first statement to COMMIT (see the module docs of
//! [`super`]); the shared merge runs in between over what was read ahead
//! (a group of ward batches may read and merge before the lock: see
//! `group.rs`). Each step is its own function, shared by both.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Transaction};

use super::target::PgTarget;
use super::{PgCityStore, pg_err, pool_err, rows, sql};
use crate::model::signed::Hash;
use crate::model::{Hlc, RecordKey, WardCode};
use crate::store::city::apply::{GroupWrite, city_clock_at};
use crate::store::{StoreError, WardState};

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
    /// The wards writing each record (a ward's part in a record it does
    /// not own is read too: [`PgTarget::read_parts`]).
    pub(super) senders: Vec<(RecordKey, WardCode)>,
}

/// The row of `city_clock`: where the log ends, the city's clock, and the
/// number of writes committed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Clock {
    pub(super) cursor: u64,
    /// The log's running hash at `cursor`.
    pub(super) running: Hash,
    pub(super) hlc: Hlc,
    pub(super) writes: i64,
}

/// What a write has read before it merges.
pub(super) struct Read {
    pub(super) clock: Clock,
    pub(super) wards: HashMap<WardCode, WardState>,
    pub(super) target: PgTarget,
}

/// A merged write, ready to be written.
pub(super) struct Merged<T> {
    out: T,
    pub(super) target: PgTarget,
    before: HashMap<WardCode, WardState>,
    pub(super) wards: HashMap<WardCode, WardState>,
    /// The clock row the merge started from.
    pub(super) from: Clock,
    /// The clock row as this write leaves it.
    pub(super) to: Clock,
    counted: Vec<i64>,
}

/// Begins a write transaction on `client`.
pub(super) async fn begin(client: &mut deadpool_postgres::Object) -> Result<Transaction<'_>, StoreError> {
    let tx = client.transaction().await.map_err(pg_err)?;
    if crate::mutation::active(crate::mutation::Mutation::PgAsyncCommit) {
        tx.batch_execute("SET LOCAL synchronous_commit = off").await.map_err(pg_err)?;
    }
    Ok(tx)
}

/// Reads the clock row, locked until COMMIT if `lock`.
pub(super) async fn read_clock(client: &impl GenericClient, lock: bool) -> Result<Clock, StoreError> {
    let sql = if lock {
        "SELECT cursor, hlc_wall_ms, hlc_logical, writes, running FROM city_clock WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT cursor, hlc_wall_ms, hlc_logical, writes, running FROM city_clock WHERE id = 1"
    };
    let row = sql::query_one(client, sql, &[]).await.map_err(pg_err)?;
    // (Set when the schema is migrated: see `schema`.)
    let running = row.get::<_, Option<&[u8]>>(4).and_then(crate::model::signed::hash_from);
    Ok(Clock {
        cursor: row.get::<_, i64>(0) as u64,
        running: running.ok_or_else(|| StoreError::Corrupt {
            key: "city_clock.running".into(),
            reason: "not a 32-byte hash".into(),
        })?,
        hlc: Hlc { wall_ms: row.get::<_, i64>(1) as u64, logical: row.get::<_, i64>(2) as u32 },
        writes: row.get(3),
    })
}

/// Reads what a write needs: the clock first (locked if `lock`: only then
/// is what it guards read), the ward states and what `ahead` names.
pub(super) async fn read(
    client: &impl GenericClient,
    lock: bool,
    mut ahead: ReadAhead,
    now_ms: i64,
) -> Result<Read, StoreError> {
    let clock = read_clock(client, lock).await?;
    let mut target = PgTarget::default();
    if let Some((ward, seq)) = &ahead.quarantined
        && let Some(q) = target.read_quarantined(client, ward, *seq).await?
        && let Some(c) = &q.change
    {
        ahead.keys.push(c.key.clone());
        ahead.keys.extend(crate::store::city::apply::spouse_key(ward, c));
        ahead.senders.push((c.key.clone(), ward.clone()));
    }
    let (wards, ()) = futures::try_join!(rows::load_wards(client), target.read_ahead(client, &ahead.keys))?;
    target.read_parts(client, &ahead.senders, now_ms.saturating_sub(crate::model::civil::DAY_MS)).await?;
    Ok(Read { clock, wards, target })
}

impl PgCityStore {
    /// Runs `f` over one transaction and commits it; returns once committed.
    pub(super) async fn write<T: Send>(
        &self,
        now_ms: i64,
        ahead: ReadAhead,
        f: impl FnOnce(&mut GroupWrite<PgTarget>, &mut HashMap<WardCode, WardState>) -> Result<T, StoreError>
        + Send,
    ) -> Result<T, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = begin(&mut client).await?;
        let read = read(&tx, true, ahead, now_ms).await?;
        let merged = self.merge(read, now_ms, f)?;
        self.finish(tx, merged).await
    }

    /// Runs `f` over what was read.
    pub(super) fn merge<T>(
        &self,
        read: Read,
        now_ms: i64,
        f: impl FnOnce(&mut GroupWrite<PgTarget>, &mut HashMap<WardCode, WardState>) -> Result<T, StoreError>,
    ) -> Result<Merged<T>, StoreError> {
        let from = read.clock;
        let mut w = GroupWrite::new(
            read.target,
            &self.policies,
            (from.cursor, from.running),
            city_clock_at(from.hlc, now_ms),
            now_ms,
        );
        let mut wards = read.wards.clone();
        let out = f(&mut w, &mut wards)?;
        let to = Clock { cursor: w.cursor, running: w.running, hlc: w.hlc, writes: from.writes + 1 };
        let counted = w.kind_delta.to_vec();
        Ok(Merged { out, target: w.target, before: read.wards, wards, from, to, counted })
    }

    /// Writes a merged write in `tx`, which holds the lock on the clock row
    /// as `m` read it, and commits it; returns once committed.
    pub(super) async fn finish<T>(&self, tx: Transaction<'_>, m: Merged<T>) -> Result<T, StoreError> {
        let noted = m.target.noted();
        let (cursor, wall, logical) =
            (m.to.cursor as i64, m.to.hlc.wall_ms as i64, i64::from(m.to.hlc.logical));
        let clock_written = async {
            let records: Vec<i64> = sql::query_one(
                &tx,
                "UPDATE city_clock SET cursor = $1, hlc_wall_ms = $2, hlc_logical = $3, writes = writes + 1,
                         records = ARRAY[records[1] + ($4::bigint[])[1], records[2] + ($4::bigint[])[2],
                                        records[3] + ($4::bigint[])[3]], running = $5
                     WHERE id = 1 RETURNING records",
                &[&cursor, &wall, &logical, &m.counted, &&m.to.running[..]],
            )
            .await
            .map_err(pg_err)?
            .get(0);
            if m.to.cursor > m.from.cursor {
                // Heard by every city process once committed: the wards
                // named are sent the new changes (a payload has room for
                // about 1,300 wards; beyond, the processes read the notes).
                let mut wards: Vec<&str> = noted.iter().map(|w| w.as_str()).collect();
                if wards.len() > 1000 {
                    wards = vec!["*"];
                }
                let payload = format!("{cursor} {}", wards.join(","));
                sql::execute(&tx, "SELECT pg_notify('wardsync_log', $1)", &[&payload])
                    .await
                    .map_err(pg_err)?;
            }
            Ok::<_, StoreError>(records)
        };
        // Every table's statement at once: pipelined, one round trip.
        let ((), (), records) = futures::try_join!(
            m.target.write(&tx, &self.policies),
            rows::save_wards(&tx, &m.before, &m.wards),
            clock_written
        )?;
        tx.commit().await.map_err(pg_err)?;
        super::note(&self.notes, noted, m.to.cursor);
        let mut cache = self.cache.lock().expect("poisoned");
        // A reload that read after this commit may have come first.
        if m.to.writes > cache.writes {
            cache.head = (m.to.cursor, m.to.running);
            cache.wards = m.wards;
            for (n, counted) in cache.kinds.iter_mut().zip(records) {
                *n = counted.max(0) as u64;
            }
            cache.writes = m.to.writes;
        }
        drop(cache);
        publish(&self.durable, m.to.cursor);
        Ok(m.out)
    }
}
