//! Applying one change at the city: merge into the record's state, refresh
//! the view and its indexes, track conflicts, log it, and note which wards
//! must hear of it.

use std::collections::{BTreeSet, HashMap};

use super::WardState;
use super::conflicts::Conflict;
use super::keys::{
    WHOLE, conflict_key, downstream_key, history_key, index_entries, log_key, record_key, state_key,
    version_key,
};
use crate::model::{
    CITY_WRITER, Change, Context, FieldConflict, Hlc, Op, Policies, Record, RecordKey, Stamp, VersionVector,
    Versioned, WardCode, deleted, flatten, put_values,
};
use crate::store::StoreError;
use crate::store::codec::{be, decode, encode};
use crate::store::engine::{Batch, Engine};

/// A [`super::LoggedChange`] as it is encoded, borrowing the change
/// instead of copying it (the same fields in the same order: the same bytes).
#[derive(serde::Serialize)]
pub(super) struct LoggedRef<'a> {
    pub(super) cursor: u64,
    pub(super) writer: &'a str,
    pub(super) by: &'a str,
    pub(super) applied_at_ms: i64,
    pub(super) change: &'a Change,
}

/// One atomic write being assembled: sees its own earlier changes.
pub(super) struct GroupWrite<'a> {
    pub(super) engine: &'a dyn Engine,
    policies: &'a Policies,
    pub(super) batch: Batch,
    pub(super) cursor: u64,
    pub(super) hlc: Hlc,
    now_ms: i64,
    /// Each record's state as of this write, and the record it shows.
    states: HashMap<RecordKey, (Versioned, Option<Record>)>,
    /// Records gained or lost per kind (in `Kind::ALL` order).
    pub(super) kind_delta: [i64; 3],
}

fn kind_index(k: &RecordKey) -> usize {
    crate::model::Kind::ALL.iter().position(|x| *x == k.kind()).expect("every kind is listed")
}

impl<'a> GroupWrite<'a> {
    pub(super) fn new(
        engine: &'a dyn Engine,
        policies: &'a Policies,
        cursor: u64,
        hlc: Hlc,
        now_ms: i64,
    ) -> Self {
        GroupWrite {
            engine,
            policies,
            batch: Batch::default(),
            cursor,
            hlc,
            now_ms,
            states: HashMap::new(),
            kind_delta: [0; 3],
        }
    }

    /// The record's state as of this write.
    pub(super) fn current(&mut self, k: &RecordKey) -> Result<&Versioned, StoreError> {
        Ok(&self.current_shown(k)?.0)
    }

    /// The record's state as of this write, and the record it shows.
    fn current_shown(&mut self, k: &RecordKey) -> Result<&(Versioned, Option<Record>), StoreError> {
        if !self.states.contains_key(k) {
            let stored = self.stored(k)?;
            self.states.insert(k.clone(), stored);
        }
        Ok(&self.states[k])
    }

    /// Like [`GroupWrite::current_shown`], taken out to be changed and put back.
    fn take_shown(&mut self, k: &RecordKey) -> Result<(Versioned, Option<Record>), StoreError> {
        match self.states.remove(k) {
            Some(s) => Ok(s),
            None => self.stored(k),
        }
    }

    /// The record's state as stored, and the record it shows.
    fn stored(&self, k: &RecordKey) -> Result<(Versioned, Option<Record>), StoreError> {
        let sk = state_key(k);
        let s: Versioned = self.engine.get(&sk)?.map(|v| decode(&sk, &v)).transpose()?.unwrap_or_default();
        let shown = s.materialize(k, self.policies);
        Ok((s, shown))
    }

    /// Applies a write by the city to `key`: `op` setting `fields`, having
    /// seen `context` (none: everything the record holds).
    pub(super) fn city_change(
        &mut self,
        key: &RecordKey,
        fields: Vec<String>,
        op: Op,
        context: Option<VersionVector>,
        by: &str,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<(), StoreError> {
        let state = self.current(key)?.clone();
        let hlc = self.city_clock(&state);
        let change = Change {
            seq: 0,
            written_at_ms: self.now_ms,
            key: key.clone(),
            stamp: Stamp { hlc, writer: CITY_WRITER.to_string() },
            context: context.unwrap_or(state.seen),
            fields,
            op,
        };
        self.apply(&change, by, wards)
    }

    /// After the office discards `ward`'s quarantined `change` to its own
    /// record: a city write that has seen it and restores, at the ward, what
    /// the city holds (the fields it wrote; the record deleted if the city
    /// never had it), so ward and city do not stay apart for good. A change
    /// to a record that was not the ward's needs nothing: the ward does not
    /// show it.
    pub(super) fn overrule(
        &mut self,
        ward: &WardCode,
        change: &Change,
        by: &str,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<(), StoreError> {
        let key = &change.key;
        let shown = self.current_shown(key)?.clone();
        let (fields, op) = match (&shown.1, &change.op) {
            (Some(r), _) if &r.ward == ward => {
                let all = flatten(r);
                (change.fields.iter().filter(|f| all.contains_key(*f)).cloned().collect(), Op::Put(r.clone()))
            }
            (None, Op::Put(r)) if &r.ward == ward => (Vec::new(), Op::Delete),
            _ => return Ok(()),
        };
        let mut seen = shown.0.seen;
        seen.add(&change.stamp);
        self.city_change(key, fields, op, Some(seen), by, wards)?;
        // The ward hears of it even when neither view names it (a create undone).
        self.batch.insert(downstream_key(ward, self.cursor), Vec::new());
        Ok(())
    }

    /// A new stamp for a write by the city, after everything in `state`.
    pub(super) fn city_clock(&mut self, state: &Versioned) -> Hlc {
        for h in state.seen.0.values() {
            self.hlc = self.hlc.observe(*h, self.now_ms.max(0) as u64);
        }
        self.hlc = self.hlc.tick(self.now_ms.max(0) as u64);
        self.hlc
    }

    /// Merges an accepted change: state, view, indexes, per-ward record
    /// counts, conflicts, version, log and downstream notes.
    pub(super) fn apply(
        &mut self,
        change: &Change,
        by: &str,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<(), StoreError> {
        let key = &change.key;
        let (mut state, old) = self.take_shown(key)?;
        let old_conflicts = state.conflicts(key.kind(), self.policies);
        let raced = !change.context.covers(&state.seen);
        let new = match &change.op {
            Op::Put(r) => {
                let all = flatten(r);
                state.apply(&put_values(&all, &change.fields), &change.stamp, &change.context);
                state.materialize_put(key, self.policies, r, &all)
            }
            Op::Delete => {
                state.apply(&deleted(), &change.stamp, &change.context);
                state.materialize(key, self.policies)
            }
        };
        self.hlc = self.hlc.observe(change.stamp.hlc, self.now_ms.max(0) as u64);
        self.replace_view(key, old.as_ref(), new.as_ref(), wards);
        self.track_conflicts(key, &old_conflicts, &state, new.as_ref())?;
        self.batch.insert(state_key(key), encode(&state));

        self.cursor += 1;
        self.batch.insert(version_key(key), be(self.cursor).to_vec());
        let logged = LoggedRef {
            cursor: self.cursor,
            writer: &change.stamp.writer,
            by,
            applied_at_ms: self.now_ms,
            change,
        };
        self.batch.insert(log_key(self.cursor), encode(&logged));
        self.batch.insert(history_key(key, self.cursor), Vec::new());
        // Wards that owned the record before or after hear of changes made
        // elsewhere. Those that cannot rebuild it from the change alone are
        // told to fetch it whole: a ward it was just handed to, and a writer
        // whose change raced writes it had not seen (else it would keep its
        // own view of the record, not the merged one).
        let owners: BTreeSet<WardCode> = [&old, &new].into_iter().flatten().map(|r| r.ward.clone()).collect();
        for w in owners.iter().filter(|w| w.as_str() != change.stamp.writer) {
            let gained =
                new.as_ref().is_some_and(|n| &n.ward == w) && old.as_ref().is_none_or(|o| &o.ward != w);
            self.batch
                .insert(downstream_key(w, self.cursor), if gained { WHOLE.to_vec() } else { Vec::new() });
        }
        // (A ward that registered an event on another ward's citizen, a
        // record naming that ward, keeps no copy of it to bring up to date.)
        let names_another = matches!(&change.op, Op::Put(r) if r.ward.as_str() != change.stamp.writer);
        if raced
            && let Ok(writer) = WardCode::parse(&change.stamp.writer)
            && (owners.contains(&writer) || !names_another)
        {
            self.batch.insert(downstream_key(&writer, self.cursor), WHOLE.to_vec());
        }
        self.states.insert(key.clone(), (state, new));
        Ok(())
    }

    /// Replaces the record `key` shows, `old`, by `new`: the stored view,
    /// its index entries and the per-ward and per-kind record counts.
    fn replace_view(
        &mut self,
        key: &RecordKey,
        old: Option<&Record>,
        new: Option<&Record>,
        wards: &mut HashMap<WardCode, WardState>,
    ) {
        if old == new {
            return;
        }
        let old_entries = old.map(|o| index_entries(key, o)).unwrap_or_default();
        let new_entries = new.map(|n| index_entries(key, n)).unwrap_or_default();
        for k in old_entries.iter().filter(|k| !new_entries.contains(k)) {
            self.batch.remove(k.clone());
        }
        for k in new_entries.iter().filter(|k| !old_entries.contains(k)) {
            self.batch.insert(k.clone(), Vec::new());
        }
        if let Some(o) = old {
            let e = wards.entry(o.ward.clone()).or_default();
            e.records = e.records.saturating_sub(1);
            self.kind_delta[kind_index(key)] -= 1;
        }
        match new {
            Some(n) => {
                self.batch.insert(record_key(key), encode(n));
                wards.entry(n.ward.clone()).or_default().records += 1;
                self.kind_delta[kind_index(key)] += 1;
            }
            None => self.batch.remove(record_key(key)),
        }
    }

    /// Shows the stored record `key` as the policies in force make it (they
    /// changed since it was written): its view, indexes, counts and
    /// conflicts. Nothing is logged: no write happened.
    pub(super) fn refresh(
        &mut self,
        key: &RecordKey,
        stored_conflicts: &[String],
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<(), StoreError> {
        let (state, _) = self.take_shown(key)?;
        let rk = record_key(key);
        let old: Option<Record> = self.engine.get(&rk)?.map(|v| decode(&rk, &v)).transpose()?;
        let new = state.materialize(key, self.policies);
        self.replace_view(key, old.as_ref(), new.as_ref(), wards);
        // Every conflict written again (its policy and order may differ), the others closed.
        self.track_conflicts(key, &[], &state, new.as_ref())?;
        let open = state.conflicts(key.kind(), self.policies);
        for field in stored_conflicts.iter().filter(|f| !open.iter().any(|c| &c.field == *f)) {
            self.batch.remove(conflict_key(key, field));
        }
        self.states.insert(key.clone(), (state, new));
        Ok(())
    }

    /// Opens, updates or closes conflict entries as the state changes.
    fn track_conflicts(
        &mut self,
        key: &RecordKey,
        old: &[FieldConflict],
        after: &Versioned,
        shown: Option<&Record>,
    ) -> Result<(), StoreError> {
        let new = after.conflicts(key.kind(), self.policies);
        for c in &new {
            if old.contains(c) {
                continue;
            }
            let ck = conflict_key(key, &c.field);
            let opened = match self.engine.get(&ck)? {
                Some(v) => decode::<Conflict>(&ck, &v)?.opened_at_ms,
                None => self.now_ms,
            };
            let owner = shown.map(|r| r.ward.to_string()).unwrap_or_default();
            let entry = Conflict::new(key, c, owner, opened, self.now_ms);
            tracing::info!(kind = %key.kind(), field = %c.field, contenders = c.contenders.len(), "conflict recorded");
            tracing::debug!(%key, "conflict on");
            self.batch.insert(ck, encode(&entry));
        }
        for c in old.iter().filter(|c| !new.iter().any(|n| n.field == c.field)) {
            tracing::info!(kind = %key.kind(), field = %c.field, "conflict settled");
            self.batch.remove(conflict_key(key, &c.field));
        }
        Ok(())
    }

    /// Why `change` from `ward` cannot be applied now, if it cannot.
    pub(super) fn refusal(
        &mut self,
        ward: &WardCode,
        change: &Change,
        ctx: &Context,
        max_skew_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let now = self.now_ms.max(0) as u64;
        if change.stamp.hlc.wall_ms > now.saturating_add(max_skew_ms) {
            return Ok(Some(format!(
                "the writer's clock is {} s ahead of the city's (the limit is {} s): check its time",
                (change.stamp.hlc.wall_ms - now) / 1000,
                max_skew_ms / 1000
            )));
        }
        if change.stamp.writer != ward.as_str() {
            return Ok(Some(format!("stamped by writer {:?} but sent by ward {ward}", change.stamp.writer)));
        }
        let state = self.current(&change.key)?;
        if crate::mutation::active(crate::mutation::Mutation::TrustClaims) {
            let mut believed = state.clone();
            believed.seen.merge(&change.context);
            return Ok(change.refusal(ward, Some(&believed).filter(|s| !s.fields.is_empty()), ctx));
        }
        // What the writer says it had seen of the record can only be writes
        // the city holds: more is a forgery, or depends on a change the city
        // has not applied (quarantined), and is held with it.
        for (writer, hlc) in &change.context.0 {
            if state.seen.0.get(writer).is_none_or(|known| hlc > known) {
                return Ok(Some(format!(
                    "it says its writer had seen a write by {writer} (clock {}.{}) that the city does not hold: \
                     it depends on a change the city has not applied, or its version vector is forged",
                    hlc.wall_ms, hlc.logical
                )));
            }
        }
        Ok(change.refusal(ward, Some(state).filter(|s| !s.fields.is_empty()), ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Stamp, VersionVector};

    #[test]
    fn a_borrowed_log_entry_encodes_as_the_stored_one() {
        let ward = WardCode::parse("00082").unwrap();
        let record = crate::generate::sample(&ward, 1, 7).remove(0);
        let key = record.key().unwrap();
        let change = Change {
            seq: 3,
            written_at_ms: 1_700_000_000_000,
            key,
            stamp: Stamp { hlc: Hlc { wall_ms: 1_700_000_000_000, logical: 2 }, writer: "00082".into() },
            context: VersionVector::default(),
            fields: vec!["phone".into()],
            op: Op::Put(record),
        };
        let borrowed =
            LoggedRef { cursor: 9, writer: "00082", by: "ward 00082", applied_at_ms: 5, change: &change };
        let owned = super::super::LoggedChange {
            cursor: 9,
            writer: "00082".into(),
            by: "ward 00082".into(),
            applied_at_ms: 5,
            change: change.clone(),
        };
        assert_eq!(encode(&borrowed), encode(&owned));
    }
}
