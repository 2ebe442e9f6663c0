//! Writes by the city itself: data-office corrections and conflict
//! resolutions. Both are ordinary changes stamped by the city, merged like
//! any other and sent down to the wards concerned. A resolution has seen
//! every contender, so it supersedes them all and settles the field.

use std::collections::HashMap;

use super::apply::{GroupWrite, Target};
use super::keys::{DOWNSTREAM, WHOLE, downstream_key, log_key, state_key};
use super::{CityStore, LoggedChange, RetryError, SignedRequest, WardState};
use crate::model::civil::rewrite_refusal_on;
use crate::model::office_request::{Asked, Derived, OfficeRequest, Underivable};
use crate::model::{
    Body, Context, Op, Record, RecordKey, ValidationError, VersionVector, Versioned, WardCode,
};
use crate::store::StoreError;
use crate::store::codec::{decode, key};
use crate::store::engine::prefix_end;

/// Why a city write was not made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OfficeError {
    /// The record would not be valid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No such record.
    #[error("{0} not found at the city")]
    NotFound(String),
    /// The field has no open conflict.
    #[error("{0} has no open conflict on field {1:?}")]
    NoConflict(String, String),
    /// A quarantined change could not be discarded.
    #[error(transparent)]
    Quarantine(#[from] RetryError),
}

impl CityStore {
    /// The replicated state of `key`, if the city has heard of it.
    pub fn state(&self, key: &RecordKey) -> Result<Option<Versioned>, StoreError> {
        let sk = state_key(key);
        self.engine.get(&sk)?.map(|v| decode(&sk, &v)).transpose()
    }

    /// Carries out an office request (see [`GroupWrite::office`]).
    pub fn office(
        &self,
        request: &SignedRequest,
        now_ms: i64,
        ctx: &Context,
    ) -> Result<Result<u64, OfficeError>, StoreError> {
        self.write(now_ms, |w, wards| w.office(request, ctx, wards))
    }

    /// Changes made elsewhere that concern `ward`, after cursor `after`,
    /// durable ones only, at most `limit`; each with whether the ward must
    /// fetch the record whole (the change alone cannot bring it up to date).
    pub fn downstream(
        &self,
        ward: &WardCode,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(LoggedChange, bool)>, StoreError> {
        let durable = self.durable_cursor();
        if after >= durable {
            return Ok(Vec::new());
        }
        let prefix = key(DOWNSTREAM, &[ward.as_str().as_bytes()]);
        let end = downstream_key(ward, durable + 1).min(prefix_end(&prefix));
        let mut out = Vec::new();
        for (k, note) in self.engine.scan(&downstream_key(ward, after + 1), &end, limit)? {
            let cursor = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8-byte cursor"));
            let lk = log_key(cursor);
            if let Some(v) = self.engine.get(&lk)? {
                out.push((decode(&lk, &v)?, note == WHOLE));
            }
        }
        Ok(out)
    }
}

/// The office's writes, the same on both stores.
impl<T: Target> GroupWrite<'_, T> {
    /// Carries out an office request: a correction, a settlement or a
    /// discard, as the caller it names, writing exactly what
    /// [`OfficeRequest::derive`] derives (what the audit derives again); the
    /// request is stored beside the changes, in the same write (none if it
    /// derived none), and each change's `by` names it
    /// ([`SignedRequest::logged_by`]).
    /// Returns the log cursor of its last change (the current cursor if it
    /// made none).
    pub(crate) fn office(
        &mut self,
        request: &SignedRequest,
        ctx: &Context,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<Result<u64, OfficeError>, StoreError> {
        let before = self.cursor;
        let by = request.logged_by();
        let done = match &request.request.asked {
            Asked::Edit { record, seen } => {
                self.office_put(&request.request, record, seen, &by, ctx, wards)?
            }
            Asked::Resolve { key, field, value } => {
                self.resolve(&request.request, (key, field, value), &by, ctx, wards)?
            }
            Asked::Discard { ward, seq, reason } => {
                let by = request.change_by();
                self.discard(&request.request, (ward, *seq, reason), (&request.by, &by), wards)?
                    .map(|()| self.cursor)
                    .map_err(OfficeError::from)
            }
        };
        if done.is_ok() && self.cursor > before {
            let cursors = (before + 1..=self.cursor).collect();
            self.target.request(&SignedRequest { cursors, ..request.clone() });
        }
        Ok(done)
    }

    /// Applies `writes`, derived from an office request, to `key` in one
    /// atomic write.
    pub(crate) fn city_writes(
        &mut self,
        key: &RecordKey,
        writes: Vec<Derived>,
        by: &str,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<u64, StoreError> {
        for w in writes {
            self.city_change(key, w.fields, w.op, w.context, by, wards)?;
        }
        Ok(self.cursor)
    }

    /// A data-office correction of an existing record: the fields that
    /// differ are written by the city. `seen` is what the editor had read of
    /// the record (its version vector): writes it had not seen are
    /// concurrent with the correction, never silently reverted by it; empty:
    /// the record as it stands.
    fn office_put(
        &mut self,
        request: &OfficeRequest,
        record: &Record,
        seen: &VersionVector,
        by: &str,
        ctx: &Context,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<Result<u64, OfficeError>, StoreError> {
        let key = match record.validate(ctx) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e.into())),
        };
        let state = self.current(&key)?.clone();
        let writes = match request.derive(&key, &state, self.policies, None) {
            Ok(w) if w.is_empty() => return Ok(Ok(self.cursor)),
            Ok(w) => w,
            Err(e) => return Ok(Err(underivable(&key, e))),
        };
        if let Some((writer, _)) = seen.0.iter().find(|(w, h)| state.seen.0.get(*w).is_none_or(|k| *h > k)) {
            let why = format!("says the editor had seen a write by {writer} that the city does not hold");
            return Ok(Err(ValidationError::single("seen", why).into()));
        }
        // Who a person is, and what was registered, change only by
        // registration: judged on what the editor had seen.
        let seen = if seen.0.is_empty() { &state.seen } else { seen };
        if let Body::Citizen(now) = &record.body
            && let Some(why) = rewrite_refusal_on(&state, seen, &writes[0].fields, now, None)
        {
            return Ok(Err(ValidationError::single("record.citizen", why).into()));
        }
        self.city_writes(&key, writes, by, wards).map(Ok)
    }

    /// Resolves the conflict on `field` of `key` with `value` (JSON): a city
    /// write that has seen every contender.
    fn resolve(
        &mut self,
        request: &OfficeRequest,
        (key, field, value): (&RecordKey, &str, &str),
        by: &str,
        ctx: &Context,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<Result<u64, OfficeError>, StoreError> {
        if self.target.conflict(key, field)?.is_none() {
            return Ok(Err(OfficeError::NoConflict(key.to_string(), field.to_string())));
        }
        let state = self.current(key)?.clone();
        // A person's identity and events are settled by choosing what was
        // written: a new value is a correction, the person's ward's to register.
        let personal = key.kind() == crate::model::Kind::Citizen
            && (crate::model::civil::IDENTITY_FIELDS.contains(&field) || field == "events");
        let parsed = |v: &str| serde_json::from_str::<serde_json::Value>(v).ok();
        if personal
            && !state.fields.get(field).into_iter().flatten().any(|h| parsed(&h.value) == parsed(value))
        {
            let why = format!(
                "the {field} of a person is settled by choosing one of the values written (--choose N); \
                 a new value is a correction the person's ward registers (wardsync register correction)"
            );
            return Ok(Err(ValidationError::single("value", why).into()));
        }
        let writes = match request.derive(key, &state, self.policies, None) {
            Ok(w) => w,
            Err(e) => return Ok(Err(underivable(key, e))),
        };
        for w in &writes {
            if let Op::Put(record) = &w.op
                && let Err(e) = record.validate(ctx)
            {
                return Ok(Err(e.into()));
            }
        }
        self.city_writes(key, writes, by, wards).map(Ok)
    }
}

fn underivable(key: &RecordKey, e: Underivable) -> OfficeError {
    match e {
        Underivable::NoRecord => OfficeError::NotFound(key.to_string()),
        Underivable::Invalid(v) => OfficeError::Invalid(v),
    }
}
