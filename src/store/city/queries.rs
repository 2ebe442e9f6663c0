//! Reads of the city store: records by key, lists by kind and ward, the
//! indexes (household, owner, name) and the change log.

use super::keys::{
    BY_HOUSEHOLD, BY_NAME, BY_OWNER, BY_WARD, RECORD, downstream_key, log_key, record_key, tail_after_nul,
};
use super::{CityStore, LoggedChange};
use crate::model::{Kind, Record, RecordKey, WardCode, fold};
use crate::store::StoreError;
use crate::store::codec::{decode, key};
use crate::store::engine::prefix_end;

/// Start key for a page of ids after `after` under `prefix`.
fn page_start(prefix: &[u8], after: &str) -> Vec<u8> {
    let mut start = key(prefix, &[after.as_bytes()]);
    if !after.is_empty() {
        start.push(0);
    }
    start
}

/// Most entries one page reads from an index, whatever its filter keeps
/// (a filter that keeps few returns a short page and a cursor).
pub const PAGE_SCAN: usize = if cfg!(test) { 8 } else { 10_000 };
/// Entries read from the engine at a time.
const PAGE_CHUNK: usize = if cfg!(test) { 3 } else { 256 };

/// One page of a list: its items, and the key to continue after (`None`
/// when the list is done).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in index order.
    pub items: Vec<T>,
    /// The cursor of the next page: the last key read.
    pub next: Option<Vec<u8>>,
}

/// Which change-log entries a reader wants.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only changes to records of this kind.
    pub kind: Option<Kind>,
    /// Only changes that concern this ward: written by it, or to a record
    /// it owned before or after the change.
    pub ward: Option<WardCode>,
}

impl LogFilter {
    /// The entries of `read` the filter keeps; `noted` holds the cursors of
    /// the changes made elsewhere that concern the filter's ward (those
    /// with a downstream note for it): a change concerns a ward that did
    /// not write it when it touched a record the ward owned before or after.
    pub(crate) fn keep(
        &self,
        read: Vec<LoggedChange>,
        noted: &std::collections::HashSet<u64>,
    ) -> Vec<LoggedChange> {
        read.into_iter()
            .filter(|l| self.kind.is_none_or(|k| l.change.key.kind() == k))
            .filter(|l| {
                self.ward.as_ref().is_none_or(|w| l.writer == w.as_str() || noted.contains(&l.cursor))
            })
            .collect()
    }
}

impl CityStore {
    /// The current record under `key`.
    pub fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        self.get_raw(&record_key(key))
    }

    pub(super) fn get_raw(&self, rk: &[u8]) -> Result<Option<Record>, StoreError> {
        self.engine.get(rk)?.map(|v| decode(rk, &v)).transpose()
    }

    /// Records named by index keys ending in `<tag><id>`.
    fn records_at(&self, index_tails: impl Iterator<Item = Vec<u8>>) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        for tail in index_tails {
            if let Some(r) = self.get_raw(&key(RECORD, &[&tail]))? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Up to `limit` records of `kind` (owned by `ward` if given) with ids
    /// after `after`, in id order.
    pub fn list(
        &self,
        kind: Kind,
        ward: Option<&WardCode>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let prefix = match ward {
            None => key(RECORD, &[&[kind.tag()]]),
            Some(w) => key(BY_WARD, &[w.as_str().as_bytes(), &[kind.tag()]]),
        };
        let rows = self.engine.scan(&page_start(&prefix, after), &prefix_end(&prefix), limit)?;
        match ward {
            None => rows.into_iter().map(|(k, v)| decode(&k, &v)).collect(),
            Some(_) => self.records_at(rows.into_iter().map(|(k, _)| k[prefix.len() - 1..].to_vec())),
        }
    }

    /// One page of an index: the entries under `prefix` after the key
    /// `after` (empty: from the start) that `keep` turns into items, at
    /// most `limit` of them, reading at most [`PAGE_SCAN`] entries whatever
    /// `keep` rejects. A cursor that is not a key under `prefix` (one from
    /// another list) gives an empty page.
    pub(super) fn page<T>(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
        mut keep: impl FnMut(&CityStore, &[u8], &[u8]) -> Result<Option<T>, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        if !after.is_empty() && !after.starts_with(prefix) {
            return Ok(Page { items: Vec::new(), next: None });
        }
        let end = prefix_end(prefix);
        let mut start = if after.is_empty() { prefix.to_vec() } else { key(after, &[b"\0"]) };
        let (mut items, mut read) = (Vec::new(), 0);
        loop {
            let rows = self.engine.scan(&start, &end, PAGE_CHUNK.min(PAGE_SCAN - read))?;
            let more = rows.len() == PAGE_CHUNK.min(PAGE_SCAN - read);
            for (k, v) in rows {
                read += 1;
                if let Some(item) = keep(self, &k, &v)? {
                    items.push(item);
                }
                if items.len() >= limit || read >= PAGE_SCAN {
                    return Ok(Page { items, next: Some(k) });
                }
                start = key(&k, &[b"\0"]);
            }
            if !more {
                return Ok(Page { items, next: None });
            }
        }
    }

    /// The record an index key ending in `<tag><id>` after a `\0` names.
    fn indexed(&self, index_key: &[u8], tag: Option<u8>) -> Result<Option<Record>, StoreError> {
        let tail = tail_after_nul(index_key);
        if tag.is_some_and(|t| tail.first() != Some(&t)) {
            return Ok(None);
        }
        self.get_raw(&key(RECORD, &[tail]))
    }

    /// Records whose name starts with `query`, ignoring case and diacritics
    /// ("nguyen van an" finds "Nguyễn Văn An"), in folded-name order, of
    /// `kind` if given: one page after the cursor `after`.
    pub fn search_name(
        &self,
        query: &str,
        kind: Option<Kind>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError> {
        let folded = fold(query);
        if folded.is_empty() {
            return Ok(Page { items: Vec::new(), next: None });
        }
        let tag = kind.map(Kind::tag);
        self.page(&key(BY_NAME, &[folded.as_bytes()]), after, limit, |s, k, _| s.indexed(k, tag))
    }

    /// The citizens of a household: one page after the cursor `after`.
    pub fn household(
        &self,
        household_id: &str,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError> {
        let prefix = key(BY_HOUSEHOLD, &[household_id.as_bytes(), b"\0"]);
        self.page(&prefix, after, limit, |s, k, _| {
            s.get_raw(&key(RECORD, &[&[Kind::Citizen.tag()], tail_after_nul(k)]))
        })
    }

    /// Businesses and land parcels that name `owner_id` as an owner: one
    /// page after the cursor `after`.
    pub fn owned_by(&self, owner_id: &str, after: &[u8], limit: usize) -> Result<Page<Record>, StoreError> {
        let prefix = key(BY_OWNER, &[owner_id.as_bytes(), b"\0"]);
        self.page(&prefix, after, limit, |s, k, _| s.indexed(k, None))
    }

    /// Up to `limit` durable log entries with cursor greater than `after`.
    pub fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
        let durable = *self.durable_cursor.borrow();
        if after >= durable {
            return Ok(Vec::new());
        }
        self.engine
            .scan(&log_key(after + 1), &log_key(durable + 1), limit)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// The durable log entries `filter` selects among the first `chunk`
    /// after `after`, and the cursor of the last entry read (`after` when
    /// there were none: the reader has seen the whole log).
    pub fn changes_matching(
        &self,
        after: u64,
        chunk: usize,
        filter: &LogFilter,
    ) -> Result<(Vec<LoggedChange>, u64), StoreError> {
        let read = self.changes_since(after, chunk)?;
        let (Some(first), Some(last)) = (read.first().map(|l| l.cursor), read.last().map(|l| l.cursor))
        else {
            return Ok((Vec::new(), after));
        };
        let noted: std::collections::HashSet<u64> = match &filter.ward {
            None => Default::default(),
            Some(w) => self
                .engine
                .scan(&downstream_key(w, first), &downstream_key(w, last + 1), usize::MAX)?
                .into_iter()
                .map(|(k, _)| u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8-byte cursor")))
                .collect(),
        };
        Ok((filter.keep(read, &noted), last))
    }

    /// The highest cursor whose entry is durable.
    pub fn durable_cursor(&self) -> u64 {
        *self.durable_cursor.borrow()
    }
}
