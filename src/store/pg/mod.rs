//! The city store on PostgreSQL ([`PgCityStore`]): a schema made for the
//! data office (one table per record kind with typed columns, the change
//! log, replication state, conflicts, quarantine, audit), its versioned
//! migrations, and the city's operations over it. Several city processes
//! may share one database.
//!
//! The client is tokio-postgres: asynchronous like the rest of the city,
//! no database needed to compile (sqlx's checked queries need one), and
//! array parameters for one statement per table and write. deadpool keeps
//! the connections and replaces broken ones (a restarted database).
//!
//! Every write is one transaction that first locks the single row of
//! `city_clock` and holds it until COMMIT: writes of every city process
//! are serialised there, so log cursors are assigned and become visible in
//! the same order, and a reader of the log (`cursor > n ORDER BY cursor`)
//! can never see a cursor before an earlier one. A group of ward batches
//! reads and merges ahead of the lock while the group before it writes
//! (see `group.rs`), and is written only if the row is, under the lock,
//! the one it merged from. A ward's last applied
//! sequence is read inside that transaction, so a ward that reconnects to
//! another city process, or re-sends after one was killed, has each change
//! applied once. Acknowledgements follow COMMIT.

mod connect;
mod db;
mod evidence;
pub use evidence::PgEvidence;
mod group;
mod policies;
mod read;
mod rows;
mod schema;
mod sql;
mod target;
#[cfg(test)]
pub(crate) mod test_cluster;
mod write;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use deadpool_postgres::Pool;

use connect::Connect;

pub use schema::{LATEST, SchemaError, migrate};

use super::{StoreError, WardState};
use crate::model::{Policies, WardCode};

/// Connections a city process keeps open to the database at the most.
const POOL_SIZE: usize = 8;

/// The city database on PostgreSQL.
#[derive(Clone)]
pub struct PgCityStore {
    pool: Pool,
    policies: Arc<Policies>,
    /// What this process last read or wrote: ward states and record counts.
    cache: Arc<Mutex<Cache>>,
    durable: Arc<tokio::sync::watch::Sender<u64>>,
    denials: Arc<AtomicU64>,
    /// The highest cursor of a downstream note for each ward, as far as
    /// this process knows (its own writes, the others' notifications).
    notes: Arc<Mutex<HashMap<WardCode, u64>>>,
    /// The end of the chain of groups waiting to be written, in call order.
    tail: Arc<Mutex<Option<group::Link>>>,
}

#[derive(Default)]
struct Cache {
    wards: HashMap<WardCode, WardState>,
    kinds: [u64; 3],
    /// The committed end of the log and its running hash there.
    head: (u64, crate::model::signed::Hash),
    /// The database's id (see [`crate::store::CityDb::city_id`]).
    city_id: [u8; 16],
    /// The number of the last write these figures include
    /// (`city_clock.writes`): older reads never replace them.
    writes: i64,
}

/// A PostgreSQL error as a storage error: a full disk says so.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::OUT_OF_MEMORY => {
            StoreError::Full(format!("PostgreSQL: {e}"))
        }
        // A data exception (class 22: a NUL in text, an invalid byte
        // sequence, a value out of range) or a program limit (54: an index
        // row too large): what was written, not the server, is at fault.
        Some(c) if c.code().starts_with("22") || c.code().starts_with("54") => StoreError::Refused(format!(
            "PostgreSQL: {}",
            e.as_db_error().map_or(e.to_string(), |d| d.to_string())
        )),
        _ => StoreError::Io(format!(
            "PostgreSQL: {}",
            e.as_db_error().map_or(e.to_string(), |d| d.to_string())
        )),
    }
}

pub(super) fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) if e.as_db_error().is_none() => {
            StoreError::Io(connect_err(&e))
        }
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        e => StoreError::Io(format!(
            "cannot reach the city database ({e}): check that PostgreSQL runs and that [database] url names it"
        )),
    }
}

/// Why a connection could not be made, with its causes, and what to check.
fn connect_err(e: &tokio_postgres::Error) -> String {
    let mut why = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        why = format!("{why}: {c}");
        cause = c.source();
    }
    if why.contains("TLS") {
        format!(
            "the city database's certificate is not accepted ({why}): check that [database] ca is the CA that signed it and that the host in [database] url is a name the certificate holds"
        )
    } else {
        format!(
            "cannot connect to the city database ({why}): check that PostgreSQL runs and that [database] url names it, with the right user and password"
        )
    }
}

impl PgCityStore {
    /// Connects to `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`),
    /// over TLS verified against the CA certificate file `ca` if one is
    /// given, brings its schema up to date (refusing a newer one) and loads
    /// the ward states. Records are shown under `policies` (shown again if
    /// they changed).
    pub async fn open(url: &str, ca: Option<&Path>, policies: Policies) -> Result<PgCityStore, StoreError> {
        let connect = Connect::new(url, ca)?;
        let pool = connect.pool(POOL_SIZE)?;
        let mut client = pool.get().await.map_err(pool_err)?;
        check_durable(&client).await?;
        migrate(&mut client).await.map_err(|e| match e {
            SchemaError::Postgres(e) => pg_err(e),
            e => StoreError::Io(e.to_string()),
        })?;
        drop(client);
        let store = PgCityStore {
            pool: pool.clone(),
            policies: Arc::new(policies),
            cache: Arc::default(),
            durable: Arc::new(tokio::sync::watch::channel(0).0),
            denials: Arc::default(),
            notes: Arc::default(),
            tail: Arc::default(),
        };
        store.reload().await?;
        store.reapply_policies().await?;
        let follower = Follower {
            pool,
            cache: Arc::downgrade(&store.cache),
            durable: Arc::downgrade(&store.durable),
            notes: Arc::downgrade(&store.notes),
        };
        tokio::spawn(follower.follow(connect));
        Ok(store)
    }

    /// Reads the ward states, record counts and log cursor again (other
    /// city processes write too).
    async fn reload(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        reload(&mut client, &self.cache, &self.durable).await
    }
}

/// Refuses a server that does not keep what it commits across a power cut
/// (`fsync = off`); warns of one that may tear pages (`full_page_writes =
/// off`, safe only where the file system writes a page at once).
/// `synchronous_commit` is the city's own choice (see `connect.rs`).
async fn check_durable(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    let row = client
        .query_one("SELECT current_setting('fsync'), current_setting('full_page_writes')", &[])
        .await
        .map_err(pg_err)?;
    let (fsync, full_pages): (String, String) = (row.get(0), row.get(1));
    if fsync != "on" {
        return Err(StoreError::Io(
            "the city database runs with fsync = off: a power cut would lose changes the wards were told were applied; set fsync = on in postgresql.conf and reload PostgreSQL".into(),
        ));
    }
    if full_pages != "on" {
        tracing::warn!(
            "the city database runs with full_page_writes = off: a power cut may tear its pages unless its file system writes each page at once (ZFS does; ext4 and XFS do not)"
        );
    }
    Ok(())
}

/// Reads the ward states, counts and log cursor, in one snapshot; they
/// replace what the cache holds unless a write of this process committed
/// after the snapshot was taken.
async fn reload(
    client: &mut deadpool_postgres::Object,
    cache: &Mutex<Cache>,
    durable: &tokio::sync::watch::Sender<u64>,
) -> Result<(), StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_err)?;
    let row = tx
        .query_one("SELECT writes, cursor, records, running, city_id FROM city_clock", &[])
        .await
        .map_err(pg_err)?;
    let wards = rows::load_wards(&tx).await?;
    tx.commit().await.map_err(pg_err)?;
    let (writes, counts): (i64, Vec<i64>) = (row.get(0), row.get(2));
    let running =
        row.get::<_, Option<&[u8]>>(3).and_then(crate::model::signed::hash_from).unwrap_or_default();
    let city_id = row.get::<_, Option<&[u8]>>(4).and_then(|b| b.try_into().ok()).unwrap_or_default();
    let mut c = cache.lock().expect("poisoned");
    c.city_id = city_id;
    if writes >= c.writes {
        c.head = (row.get::<_, i64>(1) as u64, running);
        c.wards = wards;
        for (n, counted) in c.kinds.iter_mut().zip(counts) {
            *n = counted.max(0) as u64;
        }
        c.writes = writes;
    }
    drop(c);
    write::publish(durable, row.get::<_, i64>(1) as u64);
    Ok(())
}

/// How often a city process reads the other processes' progress (ward
/// states, counts, the log cursor) even if no notification came.
/// (Often in the unit tests, so that a re-read races the writes.)
const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_millis(if cfg!(test) { 5 } else { 1000 });

/// What follows the other city processes' commits, holding the store's
/// shared state weakly: it ends once the store is dropped.
struct Follower {
    pool: Pool,
    cache: std::sync::Weak<Mutex<Cache>>,
    durable: std::sync::Weak<tokio::sync::watch::Sender<u64>>,
    notes: std::sync::Weak<Mutex<HashMap<WardCode, u64>>>,
}

impl Follower {
    /// Follows what the other city processes commit: each write notifies
    /// `wardsync_log` with its cursor and the wards it left notes for,
    /// which wakes those wards' downstream streams here at once; ward
    /// states and counts are read again every [`RELOAD_EVERY`]. Reconnects
    /// after the database restarts, and then reads the notes it may have
    /// missed.
    async fn follow(self, connect: Connect) {
        use futures::StreamExt;
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let Ok((client, mut connection)) = connect.connect().await else {
                tick.tick().await;
                if self.durable.strong_count() == 0 {
                    return;
                }
                continue;
            };
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let mut listening = std::pin::pin!(client.batch_execute("LISTEN wardsync_log"));
            let mut listened = false;
            loop {
                tokio::select! {
                    done = &mut listening, if !listened => {
                        listened = true;
                        // Notes left while nobody listened are read once.
                        if done.is_err() || self.catch_up().await.is_err() {
                            break;
                        }
                    }
                    message = messages.next() => match message {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                            // Too many wards to name: their notes are read.
                            if n.payload().ends_with(" *") && self.catch_up().await.is_err() {
                                break;
                            }
                            if !self.heard(n.payload()) {
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        // The connection is gone (the database restarted): connect again.
                        Some(Err(_)) | None => break,
                    },
                    _ = tick.tick() => {
                        let (Some(cache), Some(durable)) = (self.cache.upgrade(), self.durable.upgrade()) else {
                            return;
                        };
                        if let Ok(mut c) = self.pool.get().await
                            && let Err(e) = reload(&mut c, &cache, &durable).await
                        {
                            tracing::debug!(error = %e, "cannot read the other city processes' progress");
                        }
                    }
                }
            }
        }
    }

    /// A notification, `CURSOR WARD,WARD,...` (the wards given notes);
    /// false once the store is gone.
    fn heard(&self, payload: &str) -> bool {
        let (Some(durable), Some(notes)) = (self.durable.upgrade(), self.notes.upgrade()) else {
            return false;
        };
        let (cursor, wards) = payload.split_once(' ').unwrap_or((payload, ""));
        if let Ok(cursor) = cursor.parse() {
            note(&notes, wards.split(',').filter_map(|w| WardCode::parse(w).ok()), cursor);
            write::publish(&durable, cursor);
        }
        true
    }

    /// Reads the notes left since the last cursor this process knew.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let (Some(durable), Some(notes)) = (self.durable.upgrade(), self.notes.upgrade()) else {
            return Ok(());
        };
        let after = *durable.borrow() as i64;
        let client = self.pool.get().await.map_err(pool_err)?;
        let rows = client
            .query("SELECT ward, max(cursor) FROM downstream WHERE cursor > $1 GROUP BY ward", &[&after])
            .await
            .map_err(pg_err)?;
        for r in rows {
            if let Ok(ward) = WardCode::parse(r.get(0)) {
                note(&notes, [ward], r.get::<_, i64>(1) as u64);
            }
        }
        Ok(())
    }
}

/// Notes that `wards` have downstream changes up to `cursor`.
fn note(notes: &Mutex<HashMap<WardCode, u64>>, wards: impl IntoIterator<Item = WardCode>, cursor: u64) {
    let mut notes = notes.lock().expect("poisoned");
    for ward in wards {
        let c = notes.entry(ward).or_default();
        *c = (*c).max(cursor);
    }
}
