//! Applying one change at the city, shared by both stores: merge into the
//! record's state, refresh the view, track conflicts, log it, and note
//! which wards must hear of it. What is read and written goes through a
//! [`Target`]: the embedded store's engine, or a PostgreSQL transaction.

use std::collections::{BTreeSet, HashMap};

use super::conflicts::Conflict;
use super::evidence::Signed;
use super::{BatchRejected, Discarded, Incoming, MAX_QUARANTINED, Quarantined, WardBatch, WardState};
use crate::model::signed::{self, Hash, KeyId};
use crate::model::{
    CITY_WRITER, Change, Context, FieldConflict, Hlc, OWNER, Op, Policies, Record, RecordKey, Stamp,
    Standing, VersionVector, Versioned, WardCode, deleted, flatten, put_values, wrote_as_owner,
};
use crate::store::StoreError;

/// Where a city write reads the stored state and puts what it changes.
/// Writes are one atomic unit with the rest of the write (the caller
/// commits them together with the wards' states, cursor and clock).
pub(crate) trait Target {
    /// The record's stored state, if the city has heard of it.
    fn state(&mut self, key: &RecordKey) -> Result<Option<Versioned>, StoreError>;
    /// The record as stored for the office (under the policies it was shown under).
    fn view(&mut self, key: &RecordKey) -> Result<Option<Record>, StoreError>;
    /// The cursor of the last change applied to the record (0: none).
    fn version(&mut self, key: &RecordKey) -> Result<u64, StoreError>;
    /// The open conflict on a field.
    fn conflict(&mut self, key: &RecordKey, field: &str) -> Result<Option<Conflict>, StoreError>;
    /// What the city's log holds of `ward`'s part in `key` (only asked of
    /// a ward writing a record it does not own). On PostgreSQL read ahead
    /// for the pairs a write names; a pair not read ahead has none.
    fn ward_history(
        &mut self,
        key: &RecordKey,
        ward: &WardCode,
        since_ms: i64,
    ) -> Result<WardPart, StoreError>;
    /// Whether what a write reads of `key` was read (PostgreSQL reads
    /// ahead; the embedded store reads on demand).
    fn holds_read(&self, _key: &RecordKey) -> bool {
        true
    }
    /// A quarantined change.
    fn quarantined(&mut self, ward: &WardCode, seq: u64) -> Result<Option<Quarantined>, StoreError>;

    /// Stores the record's state, changed by the change at `cursor`, and the record it shows.
    fn put_state(&mut self, key: &RecordKey, state: &Versioned, shown: Option<&Record>, cursor: u64);
    /// Replaces the record shown (`old`) by `new` (`None`: deleted).
    fn put_view(
        &mut self,
        key: &RecordKey,
        old: Option<&Record>,
        new: Option<&Record>,
        cursor: u64,
        at_ms: i64,
    );
    /// Opens or updates a conflict.
    fn put_conflict(&mut self, conflict: &Conflict);
    /// Closes a conflict.
    fn remove_conflict(&mut self, key: &RecordKey, field: &str);
    /// Appends an applied change to the log (with the context it was sent
    /// with, if the city applied it cut down).
    fn log(&mut self, logged: &LoggedRef);
    /// Stores a batch as its ward signed it, and its key's certificate if
    /// new (see [`super::evidence`]).
    fn signed(&mut self, signed: &Signed);
    /// Stores an office request beside the changes it derived (see
    /// [`super::evidence`]).
    fn request(&mut self, request: &super::SignedRequest);
    /// Keeps the evidence (an encoded [`super::Authorship`]) a write by
    /// another, given back in a repair, was taken on, by the cursor of the
    /// change applied.
    fn relayed(&mut self, cursor: u64, evidence: &[u8]);
    /// Notes that the change at `cursor` concerns `ward` (`whole`: it must fetch the record).
    fn downstream(&mut self, ward: &WardCode, cursor: u64, whole: bool);
    /// Puts a change in quarantine.
    fn quarantine(&mut self, entry: &Quarantined);
    /// Takes a change out of quarantine: applied, or discarded (then kept as such).
    fn settle(&mut self, ward: &WardCode, seq: u64, discarded: Option<&Discarded>);
}

/// Whether a change is judged within a ward's refill window, and how it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refill {
    /// No loss of the city's is recorded for the ward within the window.
    No,
    /// Within the window: a change, as a batch or retry brings it.
    Change,
    /// Within the window: one of the ward's own writes, from its whole state.
    Repair,
}

impl Refill {
    /// Within the window (`refilling`), a change arriving as `how`.
    pub(crate) fn when(refilling: bool, how: Refill) -> Refill {
        if refilling { how } else { Refill::No }
    }
}

/// A ward's part in a record, as the city's log holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct WardPart {
    /// A logged change set the record's `ward` field to the ward (it
    /// owned the record at some time), or the stored state shows it owner.
    pub(crate) named_owner: bool,
    /// The ward's changes to the record applied since the time asked.
    pub(crate) writes_since: usize,
}

/// A [`super::LoggedChange`] as it is encoded, borrowing the change
/// instead of copying it (the same fields in the same order: the same bytes).
#[derive(serde::Serialize)]
pub(crate) struct LoggedRef<'a> {
    pub(crate) cursor: u64,
    pub(crate) writer: &'a str,
    pub(crate) by: &'a str,
    pub(crate) applied_at_ms: i64,
    pub(crate) change: &'a Change,
    /// The field values the change writes (as [`Change::values`] makes
    /// them), not encoded: made once for the merge and the log.
    #[serde(skip)]
    pub(crate) values: &'a std::collections::BTreeMap<String, String>,
    /// The context the change was sent with, where the city applied it
    /// with its claim cut down (stored beside the entry: what was signed).
    #[serde(skip)]
    pub(crate) sent_context: Option<&'a VersionVector>,
}

/// The log's running hash after `logged`, following `running`: what the
/// city derived of the change (cursor, writer, who submitted it, when) and
/// its content as applied, hashed with no signer's key id. Kept with the
/// cursor in every write; `wardsync audit verify` recomputes it, and the
/// city signs it in its receipts.
pub(crate) fn log_step(running: &Hash, logged: &LoggedRef) -> Hash {
    let content = signed::content_hash(logged.change, &KeyId::default());
    signed::log_link(running, logged.cursor, logged.writer, logged.by, logged.applied_at_ms, &content)
}

impl super::LoggedChange {
    /// The log's running hash after this entry, following `running` (see [`log_step`]).
    pub fn running_after(&self, running: &Hash) -> Hash {
        let content = signed::content_hash(&self.change, &KeyId::default());
        signed::log_link(running, self.cursor, &self.writer, &self.by, self.applied_at_ms, &content)
    }
}

/// One atomic write being assembled: sees its own earlier changes.
pub(crate) struct GroupWrite<'a, T: Target> {
    pub(crate) target: T,
    pub(crate) policies: &'a Policies,
    pub(crate) cursor: u64,
    /// The log's running hash at `cursor` ([`log_step`]).
    pub(crate) running: Hash,
    pub(crate) hlc: Hlc,
    pub(crate) now_ms: i64,
    /// Each record's state as of this write, and the record it shows.
    states: HashMap<RecordKey, (Versioned, Option<Record>)>,
    /// Records gained or lost per kind (in `Kind::ALL` order).
    pub(crate) kind_delta: [i64; 3],
    /// Changes applied by this write, per record and writer (not yet in
    /// the log [`Target::ward_history`] reads).
    applied: HashMap<(RecordKey, String), usize>,
    /// What the log holds of a ward's part in a record, read once a write.
    parts: HashMap<(RecordKey, WardCode), WardPart>,
}

fn kind_index(k: &RecordKey) -> usize {
    crate::model::Kind::ALL.iter().position(|x| *x == k.kind()).expect("every kind is listed")
}

/// The city's clock for a write at `now_ms`: `stored`, or the wall clock
/// if the stored one ran ahead of it beyond the limit (then said in the log).
pub(crate) fn city_clock_at(stored: Hlc, now_ms: i64) -> Hlc {
    let (hlc, reset) = stored.recover(now_ms.max(0) as u64, crate::model::CLOCK_AHEAD_LIMIT_MS);
    if reset {
        tracing::warn!(
            clock_ms = stored.wall_ms,
            now_ms,
            "the city's clock had run ahead of its wall clock (set from a wrong time, or by a peer before stamps were checked): stamping from the wall clock again"
        );
    }
    hlc
}

/// The spouse a change by `ward` to another ward's citizen names in the
/// last event it writes (what a registration is judged against besides
/// its own record), if any.
pub(crate) fn spouse_key(ward: &WardCode, change: &Change) -> Option<RecordKey> {
    let Op::Put(Record { ward: owner, body: crate::model::Body::Citizen(c) }) = &change.op else {
        return None;
    };
    let spouse = &c.events.last()?.spouse_id;
    (owner != ward && !spouse.is_empty()).then(|| RecordKey::new(crate::model::Kind::Citizen, spouse).ok())?
}

/// How a refusal begins when a change says its writer had seen a write the
/// city does not hold: after the city lost data, such a change may only
/// be waiting for another ward to refill that write (`city::waiting`).
pub const UNHELD: &str = "it says its writer had seen a write by ";

impl<'a, T: Target> GroupWrite<'a, T> {
    pub(crate) fn new(
        target: T,
        policies: &'a Policies,
        (cursor, running): (u64, Hash),
        hlc: Hlc,
        now_ms: i64,
    ) -> Self {
        GroupWrite {
            target,
            policies,
            cursor,
            running,
            hlc,
            now_ms,
            states: HashMap::new(),
            kind_delta: [0; 3],
            applied: HashMap::new(),
            parts: HashMap::new(),
        }
    }

    /// The record's state as of this write.
    pub(crate) fn current(&mut self, k: &RecordKey) -> Result<&Versioned, StoreError> {
        Ok(&self.current_shown(k)?.0)
    }

    /// The record's state as of this write, and the record it shows.
    pub(crate) fn current_shown(
        &mut self,
        k: &RecordKey,
    ) -> Result<&(Versioned, Option<Record>), StoreError> {
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
    fn stored(&mut self, k: &RecordKey) -> Result<(Versioned, Option<Record>), StoreError> {
        let s = self.target.state(k)?.unwrap_or_default();
        let shown = s.materialize(k, self.policies);
        Ok((s, shown))
    }

    /// Applies a write by the city to `key`: `op` setting `fields`, having
    /// seen `context` (none: everything the record holds).
    pub(crate) fn city_change(
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

    /// A new stamp for a write by the city, after everything in `state`.
    pub(crate) fn city_clock(&mut self, state: &Versioned) -> Hlc {
        for h in state.seen.0.values() {
            self.hlc = self.hlc.observe(*h, self.now_ms.max(0) as u64);
        }
        self.hlc = self.hlc.tick(self.now_ms.max(0) as u64);
        self.hlc
    }

    /// Merges an accepted change: state, view, indexes, per-ward record
    /// counts, conflicts, version, log and downstream notes.
    pub(crate) fn apply(
        &mut self,
        change: &Change,
        by: &str,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<(), StoreError> {
        self.apply_sent(change, None, by, wards)
    }

    /// [`Self::apply`] of a change the city cut down from one sent with
    /// the context `sent` (`None`: applied as sent).
    pub(crate) fn apply_sent(
        &mut self,
        change: &Change,
        sent: Option<&VersionVector>,
        by: &str,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<(), StoreError> {
        let key = &change.key;
        let (mut state, old) = self.take_shown(key)?;
        let old_conflicts = state.conflicts(key.kind(), self.policies);
        let raced = !change.context.covers(&state.seen);
        let (new, values) = match &change.op {
            Op::Put(r) => {
                let all = flatten(r);
                let values = put_values(&all, &change.fields);
                state.apply(&values, &change.stamp, &change.context);
                (state.materialize_put(key, self.policies, r, &all), values)
            }
            Op::Delete => {
                let values = deleted();
                state.apply(&values, &change.stamp, &change.context);
                (state.materialize(key, self.policies), values)
            }
        };
        self.hlc = self.hlc.observe(change.stamp.hlc, self.now_ms.max(0) as u64);
        self.cursor += 1;
        self.replace_view(key, old.as_ref(), new.as_ref(), wards);
        self.track_conflicts(key, &old_conflicts, &state, new.as_ref())?;
        self.target.put_state(key, &state, new.as_ref(), self.cursor);
        let logged = LoggedRef {
            cursor: self.cursor,
            writer: &change.stamp.writer,
            by,
            applied_at_ms: self.now_ms,
            change,
            values: &values,
            sent_context: sent,
        };
        self.target.log(&logged);
        self.running = log_step(&self.running, &logged);
        *self.applied.entry((key.clone(), change.stamp.writer.clone())).or_default() += 1;
        // Wards that owned the record before or after hear of changes made
        // elsewhere. Those that cannot rebuild it from the change alone are
        // told to fetch it whole: a ward it was just handed to, and a writer
        // whose change raced writes it had not seen (else it would keep its
        // own view of the record, not the merged one).
        let owners: BTreeSet<WardCode> = [&old, &new].into_iter().flatten().map(|r| r.ward.clone()).collect();
        for w in owners.iter().filter(|w| w.as_str() != change.stamp.writer) {
            let gained =
                new.as_ref().is_some_and(|n| &n.ward == w) && old.as_ref().is_none_or(|o| &o.ward != w);
            self.target.downstream(w, self.cursor, gained);
        }
        // (A ward that registered an event on another ward's citizen, a
        // record naming that ward, keeps no copy of it to bring up to date.)
        let names_another = matches!(&change.op, Op::Put(r) if r.ward.as_str() != change.stamp.writer);
        if raced
            && let Ok(writer) = WardCode::parse(&change.stamp.writer)
            && (owners.contains(&writer) || !names_another)
        {
            self.target.downstream(&writer, self.cursor, true);
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
        self.target.put_view(key, old, new, self.cursor, self.now_ms);
        if let Some(o) = old {
            let e = wards.entry(o.ward.clone()).or_default();
            e.records = e.records.saturating_sub(1);
            self.kind_delta[kind_index(key)] -= 1;
        }
        if let Some(n) = new {
            wards.entry(n.ward.clone()).or_default().records += 1;
            self.kind_delta[kind_index(key)] += 1;
        }
    }

    /// Shows the stored record `key` as the policies in force make it (they
    /// changed since it was written): its view, indexes, counts and
    /// conflicts. Nothing is logged: no write happened.
    pub(crate) fn refresh(
        &mut self,
        key: &RecordKey,
        stored_conflicts: &[String],
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<(), StoreError> {
        let (state, _) = self.take_shown(key)?;
        let old = self.target.view(key)?;
        let new = state.materialize(key, self.policies);
        self.replace_view(key, old.as_ref(), new.as_ref(), wards);
        // Every conflict written again (its policy and order may differ), the others closed.
        self.track_conflicts(key, &[], &state, new.as_ref())?;
        let open = state.conflicts(key.kind(), self.policies);
        for field in stored_conflicts.iter().filter(|f| !open.iter().any(|c| &c.field == *f)) {
            self.target.remove_conflict(key, field);
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
            let opened = self.target.conflict(key, &c.field)?.map_or(self.now_ms, |c| c.opened_at_ms);
            let owner = shown.map(|r| r.ward.to_string()).unwrap_or_default();
            let entry = Conflict::new(key, c, owner, opened, self.now_ms);
            tracing::info!(kind = %key.kind(), field = %c.field, contenders = c.contenders.len(), "conflict recorded");
            tracing::debug!(%key, "conflict on");
            self.target.put_conflict(&entry);
        }
        for c in old.iter().filter(|c| !new.iter().any(|n| n.field == c.field)) {
            tracing::info!(kind = %key.kind(), field = %c.field, "conflict settled");
            self.target.remove_conflict(key, &c.field);
        }
        Ok(())
    }

    /// Applies a group of ward batches (see [`crate::store::CityDb::apply_group`]):
    /// duplicates skipped, what the city will not apply quarantined, a
    /// batch with a gap or from a ward whose quarantine is full rejected.
    pub(crate) fn apply_batches(
        &mut self,
        group: &[WardBatch],
        ctx: &Context,
        max_skew_ms: u64,
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<Vec<Result<u64, BatchRejected>>, StoreError> {
        let mut outcomes = Vec::with_capacity(group.len());
        for wb in group {
            let mut state = wards.get(&wb.ward).cloned().unwrap_or_default();
            let mut fresh: Vec<&Incoming> =
                wb.changes.iter().filter(|c| c.seq() > state.last_applied_seq).collect();
            let contiguous = fresh
                .iter()
                .enumerate()
                .all(|(i, c)| c.seq() == state.last_applied_seq.saturating_add(1 + i as u64));
            if !contiguous {
                outcomes.push(Err(BatchRejected::Gap {
                    ward: wb.ward.clone(),
                    expected: state.last_applied_seq.saturating_add(1),
                    got: fresh[0].seq(),
                }));
                continue;
            }
            let ends = wb.changes.first().zip(wb.changes.last()).map(|(f, l)| (f.seq(), l.seq()));
            if let (Some(links), Some(ends)) = (&wb.links, ends)
                && let Err(refused) = super::chain::check(&wb.ward, &mut state, ends, links)
            {
                tracing::error!(ward = %wb.ward, error = %refused, "batch refused");
                wards.insert(wb.ward.clone(), state);
                outcomes.push(Err(refused));
                continue;
            }
            if !fresh.is_empty() && state.quarantined >= MAX_QUARANTINED {
                outcomes.push(Err(BatchRejected::QuarantineFull {
                    ward: wb.ward.clone(),
                    held: state.quarantined,
                }));
                continue;
            }
            if crate::mutation::active(crate::mutation::Mutation::ApplyDuplicates) {
                fresh = wb.changes.iter().collect();
            }
            let refilling = super::repair::refilling(Some(&state), self.now_ms);
            let took_any = !fresh.is_empty();
            for incoming in fresh {
                // After a loss of the city's, a put's claim of writes it lost
                // to a record it holds (see `repair`). Any other claim is
                // never cut: a delete, or a put of a record whose creation
                // the city lost, waits in the quarantine for the refill to
                // bring it back (`city::waiting`), then passes the same
                // checks as any change; a claim to writes to a record the
                // city never had makes no record of another ward's its
                // sender's.
                let cut = match incoming {
                    Incoming::Change(change)
                        if refilling
                            && matches!(change.op, Op::Put(_))
                            && self.current(&change.key)?.owner_value().is_some() =>
                    {
                        self.held_context(&change.key, &change.context)?
                            .map(|context| Change { context, ..change.clone() })
                    }
                    _ => None,
                };
                let incoming_cut = cut.map(Incoming::Change);
                let original = incoming;
                let incoming = incoming_cut.as_ref().unwrap_or(incoming);
                // Counted before it is judged: a hostile ward's refused
                // attempts spend its budget too.
                let spent = match incoming.change() {
                    Some(change) => self.spend(&wb.ward, change, &mut state)?,
                    None => None,
                };
                let refusal = match incoming {
                    _ if spent.is_some() => spent,
                    Incoming::Change(change) => self.refusal(
                        &wb.ward,
                        change,
                        Refill::when(refilling, Refill::Change),
                        ctx,
                        max_skew_ms,
                    )?,
                    Incoming::Malformed { reason, .. } => Some(reason.clone()),
                };
                match (refusal, incoming) {
                    (None, Incoming::Change(change)) => {
                        wards.insert(wb.ward.clone(), state.clone());
                        let sent = original.change().filter(|_| incoming_cut.is_some()).map(|c| &c.context);
                        self.apply_sent(change, sent, &format!("ward {}", wb.ward), wards)?;
                        state = wards[&wb.ward].clone();
                    }
                    (Some(reason), incoming) => {
                        tracing::warn!(ward = %wb.ward, seq = incoming.seq(), "change quarantined");
                        tracing::debug!(%reason, "quarantine reason");
                        let q = Quarantined::new(&wb.ward, incoming, reason, self.now_ms, self.cursor);
                        self.target.quarantine(&q);
                        state.quarantined += 1;
                    }
                    (None, Incoming::Malformed { .. }) => {
                        unreachable!("malformed changes are always refused")
                    }
                }
                state.last_applied_seq = state.last_applied_seq.max(incoming.seq());
            }
            if let Some(links) = &wb.links {
                let newest = wb.changes.iter().filter_map(|c| c.change()).map(|c| c.stamp.hlc).max();
                super::chain::advance(&mut state, links, newest.unwrap_or_default());
                if let Some(signed) = links.signed.as_deref().filter(|_| took_any) {
                    self.target.signed(signed);
                }
            }
            state.last_contact_ms = self.now_ms;
            outcomes.push(Ok(state.last_applied_seq));
            wards.insert(wb.ward.clone(), state);
        }
        Ok(outcomes)
    }

    /// True for a change by `ward` to another ward's record: a put naming
    /// another ward as owner, or a put or delete of a record the city holds
    /// as another ward's (a registration, a transfer into `ward`): what
    /// [`super::budget`] counts.
    pub(crate) fn others_record(&mut self, ward: &WardCode, change: &Change) -> Result<bool, StoreError> {
        let named_other = matches!(&change.op, Op::Put(r) if &r.ward != ward);
        Ok(named_other
            || self.current(&change.key)?.owner_value().is_some_and(|owner| owner != ward.as_str()))
    }

    /// Spends one of `ward`'s changes to other wards' records (`state` is
    /// its replication state) if `change` is one: the reason to keep it for
    /// the office if the day's budget is spent.
    pub(crate) fn spend(
        &mut self,
        ward: &WardCode,
        change: &Change,
        state: &mut WardState,
    ) -> Result<Option<String>, StoreError> {
        Ok((self.others_record(ward, change)? && !state.budget.spend(self.now_ms))
            .then(|| super::budget::spent(ward)))
    }

    /// Why `change` from `ward` cannot be applied now, if it cannot.
    /// `refill`: whether the city recorded a loss of its own data for
    /// `ward` within the refill window, and how the change came.
    pub(crate) fn refusal(
        &mut self,
        ward: &WardCode,
        change: &Change,
        refill: Refill,
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
        let part = self.ward_part(&change.key, ward)?;
        let spouse = self.spouse_named(ward, change)?;
        let spouse = spouse.as_ref();
        let state = self.current(&change.key)?;
        // A city that lost data may have lost the log entries that named
        // the ward owner too. Within the refill window, until signed changes
        // replace them with evidence, they stand for them: for a change sent
        // as such, a write of the ward's in the record that no registration
        // makes; for one of the ward's own writes refilled from its whole
        // state, that write itself, if it names the ward owner and the
        // write that moved the record had seen it (its creation, say, which
        // the city lost with the rest).
        let named_sender = part.named_owner
            || match refill {
                Refill::No => false,
                Refill::Change => wrote_as_owner(state, ward),
                Refill::Repair => {
                    let names_sender = change.fields.iter().any(|f| f == OWNER)
                        && matches!(&change.op, Op::Put(r) if &r.ward == ward);
                    names_sender && state.newest(OWNER).is_some_and(|w| w.context.has_seen(&change.stamp))
                }
            };
        let today_by_sender = part.writes_since;
        if crate::mutation::active(crate::mutation::Mutation::TrustClaims) {
            let mut believed = state.clone();
            believed.seen.merge(&change.context);
            let standing = Standing { state: Some(&believed), named_sender: true, today_by_sender, spouse };
            return Ok(change.refusal(ward, &standing, ctx));
        }
        // What the writer says it had seen of the record can only be writes
        // the city holds: more is a forgery, or depends on a change the city
        // has not applied (quarantined), and is held with it.
        for (writer, hlc) in &change.context.0 {
            if state.seen.0.get(writer).is_none_or(|known| hlc > known) {
                return Ok(Some(format!(
                    "{UNHELD}{writer} (clock {}.{}) that the city does not hold: \
                     it depends on a change the city has not applied, or its version vector is forged",
                    hlc.wall_ms, hlc.logical
                )));
            }
        }
        let standing = Standing { state: Some(state), named_sender, today_by_sender, spouse };
        Ok(change.refusal(ward, &standing, ctx))
    }

    /// For a change by `ward` to a citizen it does not own (a registration,
    /// if anything): the city's record of the spouse the event it adds
    /// names, as this write leaves it (the same registration may have just
    /// written it). `None` if there is none, or (PostgreSQL) it was not
    /// read ahead: [`spouse_key`] names what to read.
    fn spouse_named(
        &mut self,
        ward: &WardCode,
        change: &Change,
    ) -> Result<Option<crate::model::Citizen>, StoreError> {
        let Some(key) = spouse_key(ward, change) else { return Ok(None) };
        if !self.target.holds_read(&key) {
            return Ok(None);
        }
        Ok(match &self.current_shown(&key)?.1 {
            Some(Record { body: crate::model::Body::Citizen(c), .. }) => Some(c.clone()),
            _ => None,
        })
    }

    /// `ward`'s part in `key`, as the log and this write hold it: asked of
    /// the log only if the record is not the ward's now (the log of a
    /// record written by many is read only for those not its owner).
    fn ward_part(&mut self, key: &RecordKey, ward: &WardCode) -> Result<WardPart, StoreError> {
        if self.current(key)?.owner_value().as_deref() == Some(ward.as_str()) {
            return Ok(WardPart { named_owner: true, writes_since: 0 });
        }
        let since = self.now_ms.saturating_sub(crate::model::civil::DAY_MS);
        let pair = (key.clone(), ward.clone());
        let mut part = match self.parts.get(&pair) {
            Some(p) => *p,
            None => {
                let p = self.target.ward_history(key, ward, since)?;
                self.parts.insert(pair, p);
                p
            }
        };
        part.writes_since += self.applied.get(&(key.clone(), ward.to_string())).copied().unwrap_or(0);
        Ok(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Stamp, VersionVector};
    use crate::store::codec::encode;

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
        let borrowed = LoggedRef {
            cursor: 9,
            writer: "00082",
            by: "ward 00082",
            applied_at_ms: 5,
            change: &change,
            values: &change.values(),
            sent_context: Some(&change.context),
        };
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
