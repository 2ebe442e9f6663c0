//! A record's history, for records that are legal documents: every change
//! the city applied to it (who, when, which fields, their values before
//! and after), and the record as it stood at any past time, rebuilt by
//! replaying its changes with the same merge.

use super::keys::{history_prefix, log_key};
use super::{CityStore, LoggedChange};
use crate::model::{EXISTS, Op, Record, RecordKey, Versioned};
use crate::store::StoreError;
use crate::store::codec::decode;
use crate::store::engine::prefix_end;

/// Most changes of one record that history reads.
pub const MAX_HISTORY: usize = 10_000;
/// Most bytes of logged changes one history or as-of read replays: past
/// it the read is refused, never truncated (an as-of answer from part of a
/// history would be wrong). (Unit tests reach a smaller cap.)
pub const MAX_HISTORY_BYTES: usize = if cfg!(test) { 64 << 10 } else { 64 << 20 };

/// The refusal of a read of `key`'s history past [`MAX_HISTORY_BYTES`].
pub(crate) fn history_too_large(key: &RecordKey) -> StoreError {
    StoreError::TooLarge(format!(
        "the history of {key} is more than {} KiB of changes; read it with wardsync export \
         (the change log, by cursor) instead",
        MAX_HISTORY_BYTES >> 10
    ))
}

/// One applied change of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The change as logged (cursor, writer, identity, time, change).
    pub logged: LoggedChange,
    /// Each field it wrote: the value shown before it (`None`: none) and after it.
    pub fields: Vec<(String, Option<String>, Option<String>)>,
}

impl CityStore {
    /// The changes applied to `key`, oldest first (at most [`MAX_HISTORY`]).
    fn changes_of(&self, key_: &RecordKey) -> Result<Vec<LoggedChange>, StoreError> {
        let prefix = history_prefix(key_);
        let (mut out, mut bytes) = (Vec::new(), 0);
        for (k, _) in self.engine.scan(&prefix, &prefix_end(&prefix), MAX_HISTORY)? {
            let cursor = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8-byte cursor"));
            let lk = log_key(cursor);
            if let Some(v) = self.engine.get(&lk)? {
                bytes += v.len();
                if bytes > MAX_HISTORY_BYTES {
                    return Err(history_too_large(key_));
                }
                out.push(decode(&lk, &v)?);
            }
        }
        Ok(out)
    }

    /// Every change applied to `key`, oldest first, with the values shown
    /// before and after it for each field it wrote.
    pub fn record_history(&self, key: &RecordKey) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(replay_history(self.changes_of(key)?, key, self.policies()))
    }

    /// The record `key` as it stood at city time `at_ms` (after every change
    /// applied until then), or `None` if it did not exist then.
    pub fn as_of(&self, key: &RecordKey, at_ms: i64) -> Result<Option<Record>, StoreError> {
        Ok(replay_as_of(self.changes_of(key)?, key, at_ms, self.policies()))
    }
}

/// The history of `key` from its changes, oldest first: each with the
/// values shown before and after it for each field it wrote.
pub(crate) fn replay_history(
    changes: Vec<LoggedChange>,
    key: &RecordKey,
    policies: &crate::model::Policies,
) -> Vec<HistoryEntry> {
    let mut state = Versioned::default();
    let mut out = Vec::new();
    for logged in changes {
        let before = state.shown(key.kind(), policies);
        let values = logged.change.values();
        state.apply(&values, &logged.change.stamp, &logged.change.context);
        let after = state.shown(key.kind(), policies);
        let mut written: Vec<&String> = values.keys().filter(|f| f.as_str() != EXISTS).collect();
        if matches!(logged.change.op, Op::Delete) || before.get(EXISTS) != after.get(EXISTS) {
            written.push(values.keys().find(|f| f.as_str() == EXISTS).expect("every change writes _exists"));
        }
        let fields =
            written.into_iter().map(|f| (f.clone(), before.get(f).cloned(), after.get(f).cloned())).collect();
        out.push(HistoryEntry { logged, fields });
    }
    out
}

/// The record `key` as it stood at city time `at_ms`, replayed from its changes.
pub(crate) fn replay_as_of(
    changes: Vec<LoggedChange>,
    key: &RecordKey,
    at_ms: i64,
    policies: &crate::model::Policies,
) -> Option<Record> {
    replay_state(changes.iter().take_while(|l| l.applied_at_ms <= at_ms)).materialize(key, policies)
}

/// A record's state as its changes make it, applied in order.
pub(crate) fn replay_state<'a>(changes: impl IntoIterator<Item = &'a LoggedChange>) -> Versioned {
    let mut state = Versioned::default();
    for logged in changes {
        state.apply(&logged.change.values(), &logged.change.stamp, &logged.change.context);
    }
    state
}
