//! The conflict log: fields whose concurrent writes disagree, with every
//! contender, for the data office to review.

use serde::{Deserialize, Serialize};

use super::CityStore;
use super::keys::{CONFLICT, conflict_key};
use crate::model::{FieldConflict, FieldWrite, Kind, Policy, RecordKey};
use crate::store::StoreError;
use crate::store::codec::{decode, key};

/// An open conflict on one field of one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The record.
    pub key: RecordKey,
    /// The field.
    pub field: String,
    /// The field's policy: `manual` conflicts keep the record disputed.
    pub policy: Policy,
    /// The ward owning the record (empty if it is deleted).
    pub owner: String,
    /// Every contending write; the first is the one shown.
    pub contenders: Vec<FieldWrite>,
    /// City time the conflict first appeared, ms since the epoch.
    pub opened_at_ms: i64,
    /// City time of the latest contender, ms since the epoch.
    pub updated_at_ms: i64,
}

impl Conflict {
    pub(super) fn new(key: &RecordKey, c: &FieldConflict, owner: String, opened: i64, now: i64) -> Conflict {
        Conflict {
            key: key.clone(),
            field: c.field.clone(),
            policy: c.policy,
            owner,
            contenders: c.contenders.clone(),
            opened_at_ms: opened,
            updated_at_ms: now,
        }
    }
}

/// Which conflicts to list.
#[derive(Debug, Clone, Default)]
pub struct ConflictFilter {
    /// Only records owned by this ward.
    pub ward: Option<String>,
    /// Only records of this kind.
    pub kind: Option<Kind>,
    /// Only conflicts opened at or before this time (ms since the epoch).
    pub opened_before_ms: Option<i64>,
}

impl CityStore {
    /// Open conflicts matching `filter`, by record key and field.
    pub fn conflicts(&self, filter: &ConflictFilter) -> Result<Vec<Conflict>, StoreError> {
        let tag = filter.kind.map(|k| vec![k.tag()]).unwrap_or_default();
        let prefix = key(CONFLICT, &[&tag]);
        let all: Vec<Conflict> = self.scan_decoded(&prefix)?;
        Ok(all
            .into_iter()
            .filter(|c| filter.ward.as_ref().is_none_or(|w| *w == c.owner))
            .filter(|c| filter.opened_before_ms.is_none_or(|t| c.opened_at_ms <= t))
            .collect())
    }

    /// Open conflicts matching `filter`: one page after the cursor `after`.
    pub fn conflicts_page(
        &self,
        filter: &ConflictFilter,
        after: &[u8],
        limit: usize,
    ) -> Result<super::Page<Conflict>, StoreError> {
        let tag = filter.kind.map(|k| vec![k.tag()]).unwrap_or_default();
        self.page(&key(CONFLICT, &[&tag]), after, limit, |_, k, v| {
            let c: Conflict = decode(k, v)?;
            let wanted = filter.ward.as_ref().is_none_or(|w| *w == c.owner)
                && filter.opened_before_ms.is_none_or(|t| c.opened_at_ms <= t);
            Ok(wanted.then_some(c))
        })
    }

    /// The open conflicts of one record.
    pub fn record_conflicts(&self, record: &RecordKey) -> Result<Vec<Conflict>, StoreError> {
        let prefix = key(&conflict_key(record, ""), &[]);
        self.scan_decoded(&prefix)
    }

    /// One open conflict.
    pub fn conflict(&self, record: &RecordKey, field: &str) -> Result<Option<Conflict>, StoreError> {
        let ck = conflict_key(record, field);
        self.engine.get(&ck)?.map(|v| decode(&ck, &v)).transpose()
    }
}
