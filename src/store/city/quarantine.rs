//! The quarantine: changes the city would not apply, kept with the reason,
//! listed for the data office, retried once fixed or discarded with a
//! reason. Nothing a ward sent is ever dropped.

use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use super::apply::{GroupWrite, Target};
use super::keys::{DISCARDED, QUARANTINE, quarantine_key};
use super::{CityStore, Incoming, WardState};
use crate::model::office_request::OfficeRequest;
use crate::model::{Change, Context, WardCode};
use crate::store::StoreError;
use crate::store::codec::{decode, key};

/// How the log names who submitted a quarantined change applied on retry
/// (after the ward's later changes: it waited for what it built on).
pub const RETRIED: &str = "retried from quarantine";

/// A change waiting in quarantine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The ward that sent it.
    pub ward: WardCode,
    /// Its sequence number in that ward's order.
    pub seq: u64,
    /// Why it was not applied.
    pub reason: String,
    /// City time of quarantine, ms since the epoch.
    pub at_ms: i64,
    /// The change, if it could be decoded.
    pub change: Option<Change>,
    /// The change as received, if it could not be decoded.
    pub raw: Vec<u8>,
    /// The city's log cursor when it was quarantined: a retry is refused
    /// once its record has changed since.
    pub cursor_then: u64,
}

impl Quarantined {
    pub(crate) fn new(
        ward: &WardCode,
        incoming: &Incoming,
        reason: String,
        at_ms: i64,
        cursor_then: u64,
    ) -> Quarantined {
        let (change, raw) = match incoming {
            Incoming::Change(c) => (Some(c.clone()), Vec::new()),
            Incoming::Malformed { raw, .. } => (None, raw.clone()),
        };
        // A reason may quote what the sender wrote: kept printable (no
        // NUL, which PostgreSQL refuses in text, nor any control character).
        let reason =
            if reason.chars().any(char::is_control) { reason.escape_debug().to_string() } else { reason };
        Quarantined { ward: ward.clone(), seq: incoming.seq(), reason, at_ms, change, raw, cursor_then }
    }
}

/// Who retries a quarantined change.
#[derive(Debug, Clone, PartialEq)]
pub enum Retry {
    /// The data office; with the change decoded again from the raw bytes
    /// of a malformed entry, if that now succeeds. Refused if the record
    /// changed since in ways the change had not seen
    /// ([`RetryError::Superseded`]).
    Office(Option<Box<Change>>),
    /// The city, once a refill brought back writes the change built on: a
    /// ward's acknowledged change arriving late, merged as any late change
    /// is (the refill itself changed its record).
    Refilled,
}

impl Retry {
    /// The change decoded again, if any.
    pub fn decoded(&self) -> Option<&Change> {
        match self {
            Retry::Office(decoded) => decoded.as_deref(),
            Retry::Refilled => None,
        }
    }
}

/// A quarantined change an operator discarded, kept for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discarded {
    /// What was in quarantine.
    pub entry: Quarantined,
    /// Why it was discarded.
    pub reason: String,
    /// Who discarded it (certificate identity).
    pub by: String,
    /// City time, ms since the epoch.
    pub at_ms: i64,
}

/// Why a retry did not apply the change (it stays in quarantine).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetryError {
    /// No such entry.
    #[error("no quarantined change {seq} of ward {ward}")]
    NotFound {
        /// The ward.
        ward: WardCode,
        /// The sequence number.
        seq: u64,
    },
    /// The change is still not acceptable.
    #[error("still refused: {0}")]
    StillRefused(String),
    /// The record changed after the quarantine: applying would undo newer data.
    #[error("superseded: {0} was changed after this change was quarantined; discard it")]
    Superseded(String),
}

impl CityStore {
    /// Quarantined changes, of one ward or of all, in (ward, sequence) order.
    pub fn quarantine(&self, ward: Option<&WardCode>) -> Result<Vec<Quarantined>, StoreError> {
        self.scan_decoded(&key(QUARANTINE, &[ward.map_or(&b""[..], |w| w.as_str().as_bytes())]))
    }

    /// Quarantined changes, of one ward or of all: one page after the
    /// cursor `after`.
    pub fn quarantine_page(
        &self,
        ward: Option<&WardCode>,
        after: &[u8],
        limit: usize,
    ) -> Result<super::Page<Quarantined>, StoreError> {
        let prefix = key(QUARANTINE, &[ward.map_or(&b""[..], |w| w.as_str().as_bytes())]);
        self.page(&prefix, after, limit, |_, k, v| decode(k, v).map(Some))
    }

    /// Discarded changes, of one ward or of all.
    pub fn discarded(&self, ward: Option<&WardCode>) -> Result<Vec<Discarded>, StoreError> {
        self.scan_decoded(&key(DISCARDED, &[ward.map_or(&b""[..], |w| w.as_str().as_bytes())]))
    }

    /// One quarantined change.
    pub fn entry(&self, ward: &WardCode, seq: u64) -> Result<Option<Quarantined>, StoreError> {
        let k = quarantine_key(QUARANTINE, ward, seq);
        self.engine.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Applies a quarantined change if it is now acceptable (and, retried
    /// by the office, its record has not changed since: see [`Retry`]). On
    /// success the change enters the log with a new cursor, which is returned.
    pub fn retry(
        &self,
        ward: &WardCode,
        seq: u64,
        how: Retry,
        now_ms: i64,
        ctx: &Context,
        max_skew_ms: u64,
    ) -> Result<Result<u64, RetryError>, StoreError> {
        // Everything under the write lock: no group can slip in between the checks and the apply.
        self.write(now_ms, |w, wards| w.retry(ward, seq, how, ctx, max_skew_ms, wards))
    }
}

/// Settling the quarantine, the same on both stores.
impl<T: Target> GroupWrite<'_, T> {
    /// See [`CityStore::retry`].
    pub(crate) fn retry(
        &mut self,
        ward: &WardCode,
        seq: u64,
        how: Retry,
        ctx: &Context,
        max_skew_ms: u64,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<Result<u64, RetryError>, StoreError> {
        let Some(entry) = self.target.quarantined(ward, seq)? else {
            return Ok(Err(RetryError::NotFound { ward: ward.clone(), seq }));
        };
        let Some(change) = entry.change.clone().or_else(|| how.decoded().cloned()) else {
            return Ok(Err(RetryError::StillRefused(entry.reason)));
        };
        let version = self.target.version(&change.key)?;
        // Changed since: a retry must not undo what its writer never saw.
        // What it built on (it had seen every write the record holds,
        // such as the quarantined change it followed, retried first) is
        // no reason to refuse it.
        let office = matches!(how, Retry::Office(_));
        if office && version > entry.cursor_then && !change.context.covers(&self.current(&change.key)?.seen) {
            return Ok(Err(RetryError::Superseded(change.key.to_string())));
        }
        // Checked as on arrival, clock limit included: a change stamped
        // ahead is applied once the city's time has come near it, and
        // never moves the city's clock further.
        let refilling = super::repair::refilling(wards.get(ward), self.now_ms);
        let refill = super::apply::Refill::when(refilling, super::apply::Refill::Change);
        if let Some(reason) = self.refusal(ward, &change, refill, ctx, max_skew_ms)? {
            return Ok(Err(RetryError::StillRefused(reason)));
        }
        self.apply(&change, &format!("ward {ward} ({RETRIED})"), wards)?;
        let state = wards.entry(ward.clone()).or_default();
        state.quarantined = state.quarantined.saturating_sub(1);
        self.target.settle(ward, seq, None);
        Ok(Ok(self.cursor))
    }

    /// See [`CityStore::discard`].
    /// A discard asked by `request` of `identity`, its changes logged as
    /// submitted by `by`: after it, a city write restores at the ward what
    /// the city holds of what the change wrote ([`OfficeRequest::derive`]),
    /// so ward and city do not stay apart for good.
    pub(crate) fn discard(
        &mut self,
        request: &OfficeRequest,
        (ward, seq, reason): (&WardCode, u64, &str),
        (identity, by): (&str, &str),
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<Result<(), RetryError>, StoreError> {
        let Some(entry) = self.target.quarantined(ward, seq)? else {
            return Ok(Err(RetryError::NotFound { ward: ward.clone(), seq }));
        };
        if let Some(change) = &entry.change {
            let state = self.current(&change.key)?.clone();
            let writes = request.derive(&change.key, &state, self.policies, Some(change)).unwrap_or_default();
            if !writes.is_empty() {
                self.city_writes(&change.key, writes, by, wards)?;
                // The ward hears of it even when neither view names it (a create undone).
                self.target.downstream(ward, self.cursor, false);
            }
        }
        let d = Discarded { entry, reason: reason.to_string(), by: identity.to_string(), at_ms: self.now_ms };
        self.target.settle(ward, seq, Some(&d));
        let state = wards.entry(ward.clone()).or_default();
        state.quarantined = state.quarantined.saturating_sub(1);
        Ok(Ok(()))
    }
}
