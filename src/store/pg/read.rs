//! Reads on PostgreSQL: what the city's operations read, each one
//! statement; page cursors are the ordering columns of the last row,
//! joined by `\0`.

use tokio_postgres::types::ToSql;

use super::{PgCityStore, pg_err, pool_err};
use crate::model::{Record, RecordKey};
use crate::store::codec::decode;
use crate::store::{LoggedChange, StoreError};

/// Parameters of a statement.
pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Where a page starts.
pub(super) enum From {
    /// At the start of the list.
    Start,
    /// After the row with these ordering columns.
    After(Vec<String>),
    /// The cursor is another list's (or garbled): the page is empty.
    Elsewhere,
}

impl From {
    /// The ordering columns to continue after, `start` for the first page.
    pub(super) fn or(self, start: Vec<String>) -> Option<Vec<String>> {
        match self {
            From::Start => Some(start),
            From::After(parts) => Some(parts),
            From::Elsewhere => None,
        }
    }
}

/// Where a page of `list` starts, from its cursor `after` (`n` ordering columns).
pub(super) fn cursor_parts(after: &[u8], list: &str, n: usize) -> From {
    if after.is_empty() {
        return From::Start;
    }
    let mut parts = String::from_utf8_lossy(after).split('\0').map(str::to_string).collect::<Vec<_>>();
    if parts.len() != n + 1 || parts.remove(0) != list {
        return From::Elsewhere;
    }
    From::After(parts)
}

/// A page cursor of `list` after the row with ordering columns `parts`.
pub(super) fn cursor_of(list: &str, parts: &[&str]) -> Vec<u8> {
    [&[list][..], parts].concat().join("\0").into_bytes()
}

/// `items` as a page of at most `limit`, continuing after the last one's cursor.
pub(super) fn page<T>(items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> Vec<u8>) -> crate::store::Page<T> {
    let next = (items.len() >= limit && limit > 0).then(|| items.last().map(&cursor)).flatten();
    crate::store::Page { items, next }
}

/// An empty last page.
pub(super) fn nothing<T>() -> crate::store::Page<T> {
    crate::store::Page { items: Vec::new(), next: None }
}

impl PgCityStore {
    /// A connection from the pool.
    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// The rows of a query.
    pub(super) async fn rows(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_err)?;
        client.query(&statement, params).await.map_err(pg_err)
    }

    /// Records from a query whose first column is an encoded record.
    pub(super) async fn records(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Record>, StoreError> {
        self.rows(sql, params).await?.iter().map(|r| decode(b"record_states.shown", r.get(0))).collect()
    }

    /// Log entries from a query whose first column is an encoded entry.
    pub(super) async fn logged(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<LoggedChange>, StoreError> {
        self.rows(sql, params).await?.iter().map(|r| decode(b"change_log.entry", r.get(0))).collect()
    }

    /// Every change applied to `key`, oldest first (at most [`crate::store::MAX_HISTORY`]).
    pub(super) async fn changes_of(&self, key: &RecordKey) -> Result<Vec<LoggedChange>, StoreError> {
        let limit = crate::store::MAX_HISTORY as i64;
        self.logged(
            "SELECT entry FROM change_log WHERE kind = $1 AND id = $2 ORDER BY cursor LIMIT $3",
            &[&key.kind().as_str(), &key.id(), &limit],
        )
        .await
    }
}
