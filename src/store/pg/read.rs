//! Reads on PostgreSQL: what the city's operations read, each one
//! statement; page cursors are the ordering columns of the last row,
//! joined by `\0`.

use tokio_postgres::types::ToSql;

use std::collections::{HashMap, HashSet};

use super::{PgCityStore, pg_err, pool_err};
use crate::model::civil::problems;
use crate::model::{Body, Citizen, Kind, Record, RecordKey, WardCode, fold};
use crate::store::codec::decode;
use crate::store::{CitizenProblems, LoggedChange, PAGE_SCAN, Page, StoreError};

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
pub(super) fn page<T>(items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> Vec<u8>) -> Page<T> {
    let next = (items.len() >= limit && limit > 0).then(|| items.last().map(&cursor)).flatten();
    Page { items, next }
}

/// An empty last page.
pub(super) fn nothing<T>() -> Page<T> {
    Page { items: Vec::new(), next: None }
}

/// The smallest string greater than every string starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    char::MAX.to_string()
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
    /// Refused past [`crate::store::MAX_HISTORY_BYTES`] (only the entries up
    /// to the first that crosses it are read).
    pub(super) async fn changes_of(&self, key: &RecordKey) -> Result<Vec<LoggedChange>, StoreError> {
        let limit = crate::store::MAX_HISTORY as i64;
        let cap = crate::store::MAX_HISTORY_BYTES as i64;
        let rows = self
            .rows(
                "SELECT entry, total FROM (
                   SELECT entry, cursor, sum(octet_length(entry)) OVER (ORDER BY cursor) AS total
                   FROM change_log WHERE kind = $1 AND id = $2 ORDER BY cursor LIMIT $3) t
                 WHERE total - octet_length(entry) <= $4 ORDER BY cursor",
                &[&key.kind().as_str(), &key.id(), &limit, &cap],
            )
            .await?;
        if rows.last().is_some_and(|r| r.get::<_, i64>(1) > cap) {
            return Err(crate::store::city::history_too_large(key));
        }
        rows.iter().map(|r| decode(b"change_log.entry", r.get(0))).collect()
    }

    /// See [`crate::store::CityDb::search_name`]: by folded name, then kind and id.
    pub(super) async fn name_page(
        &self,
        query: &str,
        kind: Option<Kind>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError> {
        let prefix = fold(query);
        let end = prefix_end(&prefix);
        let from = cursor_parts(after, "name", 3).or(vec![prefix.clone(), String::new(), String::new()]);
        let Some(from) = from else { return Ok(nothing()) };
        let kind = kind.map(Kind::as_str);
        let rows = self
            .rows(
                r#"SELECT r.shown, n.f, n.kind, n.id FROM (
                     SELECT folded_name AS f, 'citizen' AS kind, personal_id AS id FROM citizens
                     UNION ALL
                     SELECT folded_name, 'business', enterprise_code FROM businesses) n
                   JOIN record_states r ON r.kind = n.kind AND r.id = n.id
                   WHERE n.f >= $1 AND n.f < $2 AND (n.f, n.kind, n.id) > ($3 COLLATE "C", $4, $5)
                     AND ($6::text IS NULL OR n.kind = $6)
                   ORDER BY n.f, n.kind, n.id LIMIT $7"#,
                &[&prefix, &end, &from[0], &from[1], &from[2], &kind, &(limit as i64)],
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in &rows {
            items.push(decode(b"record_states.shown", r.get(0))?);
            last = Some(cursor_of("name", &[r.get(1), r.get(2), r.get(3)]));
        }
        Ok(Page { next: if items.len() >= limit { last } else { None }, items })
    }

    /// See [`crate::store::CityDb::household`]: by personal id.
    pub(super) async fn household_page(
        &self,
        household_id: &str,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError> {
        let Some(from) = cursor_parts(after, "household", 1).or(vec![String::new()]) else {
            return Ok(nothing());
        };
        let records = self
            .records(
                "SELECT r.shown FROM citizens c JOIN record_states r ON r.kind = 'citizen' AND r.id = c.personal_id
                 WHERE c.household_id = $1 AND c.personal_id > $2 ORDER BY c.personal_id LIMIT $3",
                &[&household_id, &from[0], &(limit as i64)],
            )
            .await?;
        Ok(page(records, limit, |r| cursor_of("household", &[&r.key_id()])))
    }

    /// See [`crate::store::CityDb::owned_by`]: businesses, then parcels, by id.
    pub(super) async fn owned_page(
        &self,
        owner_id: &str,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError> {
        let Some(from) = cursor_parts(after, "owned", 2).or(vec![String::new(), String::new()]) else {
            return Ok(nothing());
        };
        let rows = self
            .rows(
                "SELECT r.shown, o.kind, o.id FROM (
                     SELECT 'business' AS kind, enterprise_code AS id FROM businesses WHERE owner_personal_id = $1
                     UNION ALL
                     SELECT 'land', parcel_id FROM land_parcels WHERE owners @> ARRAY[$1]) o
                 JOIN record_states r ON r.kind = o.kind AND r.id = o.id
                 WHERE (o.kind, o.id) > ($2, $3) ORDER BY o.kind, o.id LIMIT $4",
                &[&owner_id, &from[0], &from[1], &(limit as i64)],
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for r in &rows {
            items.push(decode(b"record_states.shown", r.get(0))?);
            last = Some(cursor_of("owned", &[r.get(1), r.get(2)]));
        }
        Ok(Page { next: if items.len() >= limit { last } else { None }, items })
    }

    /// See [`crate::store::CityDb::civil_report`]: the citizens by personal id, at most
    /// [`PAGE_SCAN`] read a page; the spouses they name read at once.
    pub(super) async fn civil_page(
        &self,
        ward: Option<&WardCode>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<CitizenProblems>, StoreError> {
        let Some(from) = cursor_parts(after, "civil", 1).or(vec![String::new()]) else {
            return Ok(nothing());
        };
        let w = ward.map(WardCode::as_str);
        let read = self
            .records(
                "SELECT shown FROM record_states WHERE kind = 'citizen' AND shown IS NOT NULL AND id > $1
                 AND ($2::text IS NULL OR ward = $2) ORDER BY id LIMIT $3",
                &[&from[0], &w, &(PAGE_SCAN as i64)],
            )
            .await?;
        // The records the checks look up (spouses), asked for first, then read at once.
        let wanted = std::cell::RefCell::new(HashSet::new());
        for r in &read {
            if let Body::Citizen(c) = &r.body {
                problems(c, |id| {
                    wanted.borrow_mut().insert(id.to_string());
                    None
                });
            }
        }
        let found = self.citizens(&wanted.into_inner().into_iter().collect::<Vec<_>>()).await?;
        let mut items = Vec::new();
        let mut next = None;
        for (i, r) in read.iter().enumerate() {
            let Body::Citizen(c) = &r.body else { continue };
            let p = problems(c, |id| found.get(id).cloned());
            if !p.is_empty() {
                items.push(CitizenProblems {
                    ward: r.ward.clone(),
                    personal_id: c.personal_id.clone(),
                    problems: p,
                });
            }
            if items.len() >= limit || i + 1 == PAGE_SCAN {
                next = Some(cursor_of("civil", &[&c.personal_id]));
                break;
            }
        }
        Ok(Page { items, next })
    }

    /// The citizens `ids` the city holds.
    async fn citizens(&self, ids: &[String]) -> Result<HashMap<String, Citizen>, StoreError> {
        let records = self
            .records(
                "SELECT shown FROM record_states WHERE kind = 'citizen' AND id = ANY($1) AND shown IS NOT NULL",
                &[&ids],
            )
            .await?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r.body {
                Body::Citizen(c) => Some((c.personal_id.clone(), c)),
                _ => None,
            })
            .collect())
    }
}
