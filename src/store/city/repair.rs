//! Repair from a ward's whole states (anti-entropy, and refilling a city
//! restored from an older backup), shared by both stores.
//!
//! A ward sends its state of records it holds; the city takes from each
//! only the ward's own writes that it does not hold, and applies each as
//! the change that made it (the same stamp, the same fields and values),
//! through the same checks and the same merge as a change in a batch: so a
//! repair can never lose a write nor let a ward do what a change could
//! not. Two things differ, both from what a whole state is:
//! - A write names what its writer had seen; of that the city keeps only
//!   what it holds itself (it lost the rest, or never had it), where a
//!   change saying more is refused as a forgery: a repaired write cannot
//!   supersede what the city never saw.
//! - Writes by others (the office's, another ward's) reach a ward only
//!   from the city, so a city that lost data may find some of them held
//!   only there. One is taken only on its author's signature, which the
//!   city sent with it and the ward gives back ([`Vouched`], checked by
//!   `city::relay`): an office correction or settlement by the office's
//!   signed request, a registration by its ward's own signature of it.
//!   Without one nothing proves who made it: it is counted, not taken;
//!   except, within [`REFILL_WINDOW_MS`] of a loss the city recorded for
//!   the ward, another ward's ordinary write (signed only in its batch,
//!   which the city may have lost with it: a record passed on from that
//!   ward holds its writes; never a registration's fields alone). A write taken passes the
//!   checks a change of the ward's would (the ward's own record, valid,
//!   not ahead of the city's clock; who a person is and their events as
//!   its author may change them: a registration as its registrar, an
//!   office write as the city derived it). Within
//!   [`REFILL_WINDOW_MS`] of a loss the city recorded for the ward (it
//!   proved, with the city's receipt, the city holding less than it had
//!   acknowledged or sent down), a change in a batch of that ward's that claims writes the
//!   city does not hold has its claim cut down the same way instead of
//!   being quarantined: the claim may be of writes the city lost that no
//!   copy holds any more (superseded everywhere), and it grants nothing a
//!   claim of the writes the city holds would not. And a delete of a
//!   record whose creation the city does not hold is applied (it lost
//!   it), where otherwise it is refused. A write held with its claim cut
//!   down is taken again when offered with more of its claim now held (the
//!   same stamp, a wider context: it widens the one held, and supersedes
//!   what it had seen), and a write by another that a ward may not refill
//!   yet does not stop the ward's own later writes to the record (one may
//!   move the record into the ward: the next repair takes the rest).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::WardState;
use super::apply::{GroupWrite, Refill, Target};
use super::keys::BY_WARD;
use crate::model::{
    Change, Context, EXISTS, FieldWrite, Kind, OWNER, Op, RecordKey, Stamp, VersionVector, Versioned,
    WardCode, flatten, put_values, unflatten,
};
use crate::store::StoreError;
use crate::store::codec::key;
use crate::store::engine::prefix_end;

/// Most records one repair request may carry.
pub const MAX_REPAIR_RECORDS: usize = 500;

/// How long after a loss recorded for a ward the city takes writes by
/// others from that ward's states: a day.
pub const REFILL_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// True for a put of a registration's fields alone: another ward's is
/// taken only on its ward's own signature. (Not one setting them with
/// other fields: a record passed on holds its creation so, its owner
/// superseded by the move, and nothing tells it from a registration
/// written with one more field but the relaying ward's word, on which the
/// refill window rests: the registrar's rules judge it.)
fn registration(change: &Change) -> bool {
    let registered = |f: &String| crate::model::civil::REGISTRATION_FIELDS.contains(&f.as_str());
    matches!(change.op, Op::Put(_)) && !change.fields.is_empty() && change.fields.iter().all(registered)
}

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepairOutcome {
    /// Records that gained writes.
    pub repaired: u64,
    /// Which: the changes waiting for a refill that may now apply are theirs.
    pub gained: Vec<RecordKey>,
    /// Writes applied, in all.
    pub writes: u64,
    /// Records the city already held every write of the ward's.
    pub unchanged: u64,
    /// Writes by others in the ward's states that the city did not hold
    /// and took (after a loss), and those it did not take.
    pub others_taken: u64,
    /// See [`RepairOutcome::others_taken`].
    pub others_not_taken: u64,
    /// Records refused, and why.
    pub refused: Vec<(RecordKey, String)>,
    /// The city's state of each record offered, after the repair.
    pub states: Vec<(RecordKey, Versioned)>,
}

/// A write by another that its author vouches for: its signature and
/// certificate checked by the city (`city::relay`), what it signed compared
/// here with the write a ward gives back.
#[derive(Debug, Clone, PartialEq)]
pub enum Vouched {
    /// A ward's change to another ward's record, whose content hash (with
    /// the context as it sent it) `writer` signed with the key `key`.
    Ward {
        /// The author.
        writer: WardCode,
        /// The content hash it signed.
        hash: crate::model::signed::Hash,
        /// The key id the hash names.
        key: crate::model::signed::KeyId,
        /// The context as sent, where the city had cut it.
        sent: Option<VersionVector>,
        /// The evidence as checked (an encoded [`super::Authorship`]),
        /// kept beside the write taken.
        evidence: Vec<u8>,
    },
    /// A change the city derived from an office request signed by an
    /// office editor: the content hash it logged it with, which the city
    /// signed.
    Office {
        /// The request.
        request: Box<super::SignedRequest>,
        /// The content hash of the change derived, as logged.
        derived: crate::model::signed::Hash,
        /// The evidence as checked (an encoded [`super::Authorship`]),
        /// kept beside the write taken.
        evidence: Vec<u8>,
    },
}

impl Vouched {
    /// True if it vouches for `change`, a write by another as a ward holds
    /// it (its context as the ward has it): exactly the change signed (a
    /// ward's, with the context it signed if the city cut it) or derived.
    pub fn vouches_for(&self, change: &Change) -> bool {
        use crate::model::signed::{KeyId, content_hash};
        match self {
            Vouched::Ward { writer, hash, key, sent, .. } => {
                let as_sent = Change {
                    context: sent.clone().unwrap_or_else(|| change.context.clone()),
                    ..change.clone()
                };
                writer.as_str() == change.stamp.writer && content_hash(&as_sent, key) == *hash
            }
            Vouched::Office { derived, .. } => content_hash(change, &KeyId::default()) == *derived,
        }
    }

    /// The evidence it was checked on, as kept beside the write taken.
    fn evidence(&self) -> &[u8] {
        match self {
            Vouched::Ward { evidence, .. } | Vouched::Office { evidence, .. } => evidence,
        }
    }

    /// The context the write was signed with, where the city had cut it:
    /// the most it may be applied with.
    fn signed_context(&self) -> Option<&VersionVector> {
        match self {
            Vouched::Ward { sent, .. } => sent.as_ref(),
            Vouched::Office { .. } => None,
        }
    }
}

/// The writes by others each record's authors vouch for.
pub type Vouchers = HashMap<RecordKey, Vec<Vouched>>;

/// One write to re-apply: its fields' values and context.
struct Unseen {
    values: BTreeMap<String, String>,
    context: VersionVector,
}

/// True within [`REFILL_WINDOW_MS`] of a loss the city recorded for a
/// ward (`state`) at city time `now_ms`.
pub(crate) fn refilling(state: Option<&WardState>, now_ms: i64) -> bool {
    state.is_some_and(|s| {
        s.lost.found_at_ms > 0 && now_ms.saturating_sub(s.lost.found_at_ms) < REFILL_WINDOW_MS
    })
}

impl<T: Target> GroupWrite<'_, T> {
    /// `context` cut down to the writes the city holds of `key` (none if
    /// it claims none beyond them): what a write's claim to have seen
    /// writes the city lost is worth.
    pub(crate) fn held_context(
        &mut self,
        key: &RecordKey,
        context: &VersionVector,
    ) -> Result<Option<VersionVector>, StoreError> {
        let held = &self.current(key)?.seen;
        if held.covers(context) {
            return Ok(None);
        }
        let cut =
            context.0.iter().filter_map(|(w, h)| held.0.get(w).map(|mine| (w.clone(), (*h).min(*mine))));
        Ok(Some(VersionVector(cut.collect())))
    }

    /// Merges the ward's writes in `states` that the city lacks (see the module docs).
    pub(crate) fn repair(
        &mut self,
        ward: &WardCode,
        states: &[(RecordKey, Versioned)],
        vouched: &Vouchers,
        (ctx, max_skew_ms): (&Context, u64),
        wards: &mut HashMap<WardCode, WardState>,
    ) -> Result<RepairOutcome, StoreError> {
        let mut out = RepairOutcome::default();
        let mut requests: BTreeMap<[u8; 16], super::SignedRequest> = BTreeMap::new();
        let refilling = refilling(wards.get(ward), self.now_ms);
        for (key, theirs) in states {
            let held = self.current(key)?.clone();
            let mut unseen: BTreeMap<Stamp, Unseen> = BTreeMap::new();
            let mut not_taken = BTreeSet::new();
            for (field, heads) in &theirs.fields {
                // (Also writes held here with their claim cut down: see below.)
                for h in heads.iter().filter(|h| held.adds(field, h)) {
                    let w = unseen
                        .entry(h.stamp.clone())
                        .or_insert_with(|| Unseen { values: BTreeMap::new(), context: h.context.clone() });
                    w.values.insert(field.clone(), h.value.clone());
                }
            }
            if unseen.is_empty() {
                out.unchanged += 1;
                continue;
            }
            let (mut applied, mut refused) = (0, false);
            let mut writes = unseen.into_iter();
            for (stamp, write) in writes.by_ref() {
                let own = stamp.writer == ward.as_str();
                let fields: Vec<String> = write.values.keys().cloned().collect();
                let context_held = write.context.clone();
                let change = match self.rebuilt(key, theirs, stamp, write)? {
                    Ok(c) => c,
                    Err(why) => {
                        out.refused.push((key.clone(), why));
                        refused = true;
                        break;
                    }
                };
                // A write held here with its claim cut down is widened
                // only by what the city holds now (the writes before it
                // just taken included).
                let now = self.current(key)?;
                let as_held = FieldWrite {
                    value: String::new(),
                    stamp: change.stamp.clone(),
                    context: change.context.clone(),
                };
                if !fields.iter().any(|f| now.adds(f, &as_held)) {
                    continue;
                }
                // A write by another, only on its author's signature.
                let vouch = match own {
                    true => None,
                    false => {
                        let held = Change { context: context_held.clone(), ..change.clone() };
                        match vouched.get(key).into_iter().flatten().find(|v| v.vouches_for(&held)) {
                            Some(v) => Some(v),
                            // Another ward's ordinary write (signed only in
                            // its batch, which the city may have lost too):
                            // within a day of a loss the city recorded for
                            // this ward, as a record passed on holds them.
                            None if refilling
                                && WardCode::parse(&change.stamp.writer).is_ok()
                                && !registration(&change) =>
                            {
                                None
                            }
                            None => {
                                not_taken.insert(change.stamp.clone());
                                continue;
                            }
                        }
                    }
                };
                // A ward's signed write is applied with the context it
                // signed (cut to what the city holds), never a wider one.
                let change = match vouch.and_then(Vouched::signed_context) {
                    Some(signed) => {
                        let context = self.held_context(key, signed)?.unwrap_or_else(|| signed.clone());
                        Change { context, ..change }
                    }
                    None => change,
                };
                let refusal = if own {
                    // (A write offered in a repair spends the ward's budget as
                    // one in a batch does.)
                    let mut state = wards.get(ward).cloned().unwrap_or_default();
                    let spent = self.spend(ward, &change, &mut state)?;
                    wards.insert(ward.clone(), state);
                    match spent {
                        Some(why) => Some(why),
                        None => self.refusal(
                            ward,
                            &change,
                            Refill::when(refilling, Refill::Repair),
                            ctx,
                            max_skew_ms,
                        )?,
                    }
                } else {
                    self.others_refusal(ward, &change, (theirs, vouch), ctx, max_skew_ms)?
                };
                if let Some(why) = refusal {
                    out.refused.push((key.clone(), why));
                    refused = true;
                    if own {
                        // Later writes build on this one: the record stops here.
                        break;
                    }
                    // A write by another into a record not yet this ward's
                    // here: a write of the ward's after it may move the
                    // record in (a residence transfer the city lost), and
                    // the next repair takes the others' writes then.
                    continue;
                }
                let relayed = match vouch {
                    Some(Vouched::Office { request: r, .. }) => Some(super::SignedRequest {
                        relayed_by: Some(ward.clone()),
                        cursors: vec![],
                        ..(**r).clone()
                    }),
                    _ => None,
                };
                let by = match (own, vouch, &relayed) {
                    (true, ..) => format!("ward {ward} (repair)"),
                    (false, _, Some(r)) => r.change_by(),
                    (false, Some(_), None) => super::evidence::relaying_by(ward, &change.stamp.writer),
                    (false, None, _) => format!("ward {ward} (refill after the city's loss)"),
                };
                out.others_taken += u64::from(!own);
                // (With the context as the ward holds it, where cut.)
                let sent = Some(&context_held).filter(|c| **c != change.context);
                self.apply_sent(&change, sent, &by, wards)?;
                if let Some(v) = vouch {
                    // Kept beside it: `wardsync audit verify` checks it again.
                    self.target.relayed(self.cursor, v.evidence());
                }
                if let Some(r) = relayed {
                    // Kept beside it again, as the office signed it: once,
                    // naming every change of its taken back.
                    requests.entry(r.request.id).or_insert(r).cursors.push(self.cursor);
                }
                applied += 1;
            }
            // (Writes by others after one that stopped the record: not taken either.)
            not_taken.extend(writes.filter(|(s, _)| s.writer != ward.as_str()).map(|(s, _)| s));
            out.others_not_taken += not_taken.len() as u64;
            if applied > 0 {
                out.repaired += 1;
                out.gained.push(key.clone());
                out.writes += applied;
            } else if !refused {
                out.unchanged += 1;
            }
        }
        for r in requests.values() {
            self.target.request(r);
        }
        // The city's state of each record offered, as `GetState` would
        // serve it to the ward: of a record that exists, or one the ward
        // wrote (to learn of a move, or a delete); never a deleted record
        // of another's.
        for (key, _) in states {
            let state = self.current(key)?.clone();
            let hidden = !state.fields.is_empty()
                && !state.exists(key.kind(), self.policies)
                && !state.seen.0.contains_key(ward.as_str());
            out.states.push((key.clone(), if hidden { Versioned::default() } else { state }));
        }
        Ok(out)
    }

    /// Why a write by another, offered by `ward` in a refill, cannot be
    /// applied: ahead of the city's clock, not into a record of `ward`'s
    /// (as the city holds it, or, if it holds nothing of it, as the ward
    /// does: `theirs`), making an invalid record, or changing who a person
    /// is or dropping a registered event, as its author may (`vouch`): a
    /// registration as its registrar, signed; an office write as the city
    /// derived it, its own judgement then. (The record the write
    /// made may name its writer's ward: it wrote it before passing it on.)
    fn others_refusal(
        &mut self,
        ward: &WardCode,
        change: &Change,
        (theirs, vouch): (&Versioned, Option<&Vouched>),
        ctx: &Context,
        max_skew_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        if change.stamp.hlc.wall_ms > (self.now_ms.max(0) as u64).saturating_add(max_skew_ms) {
            return Ok(Some(format!(
                "a write by {} is stamped ahead of the city's clock",
                change.stamp.writer
            )));
        }
        let owner = self.current(&change.key)?.owner_value().or_else(|| theirs.owner_value());
        if owner.as_deref() != Some(ward.as_str()) {
            let owner = owner.unwrap_or_else(|| "no ward".into());
            return Ok(Some(format!("{} belongs to {owner}; ward {ward} may not refill it", change.key)));
        }
        Ok(match &change.op {
            Op::Put(r) => match r.validate(ctx) {
                Err(e) => Some(e.to_string()),
                Ok(k) if k != change.key => Some(format!("{}: the write is of another record", change.key)),
                // Who a person is, and what was registered, as for any
                // write: judged on what the city holds and the write had seen.
                Ok(_) => match (&r.body, vouch) {
                    (_, Some(Vouched::Office { .. })) => None,
                    (crate::model::Body::Citizen(c), _) => {
                        let registrar = match vouch {
                            Some(Vouched::Ward { writer, .. }) => Some(writer.as_str()),
                            _ => None,
                        };
                        let state = self.current(&change.key)?;
                        crate::model::civil::rewrite_refusal_on(
                            state,
                            &change.context,
                            &change.fields,
                            c,
                            registrar,
                        )
                    }
                    _ => None,
                },
            },
            Op::Delete => None,
        })
    }

    /// The change that made `write` (stamped `stamp`) in the ward's state
    /// `theirs` of `key`, its context cut down to what the city holds.
    fn rebuilt(
        &mut self,
        key: &RecordKey,
        theirs: &Versioned,
        stamp: Stamp,
        write: Unseen,
    ) -> Result<Result<Change, String>, StoreError> {
        let context = self.held_context(key, &write.context)?.unwrap_or(write.context);
        let fields: Vec<String> = write.values.keys().filter(|f| *f != EXISTS).cloned().collect();
        let deletes = write.values.get(EXISTS).is_some_and(|v| v == "false");
        let op = if deletes && fields.is_empty() {
            Op::Delete
        } else {
            // The record as the ward shows it, with this write's values:
            // a change carries a whole record, of which it sets `fields`.
            let mut values = theirs.shown(key.kind(), self.policies);
            values.extend(write.values.iter().map(|(f, v)| (f.clone(), v.clone())));
            // A ward writes as the record's owner (a registration's record
            // is never in its copy): a write that does not set the owner
            // was made by its writer as owner, whoever the ward shows now.
            if !write.values.contains_key(OWNER) && WardCode::parse(&stamp.writer).is_ok() {
                values.insert(OWNER.to_string(), serde_json::to_string(&stamp.writer).expect("serializes"));
            }
            let Some(record) = unflatten(key.kind(), &values) else {
                return Ok(Err(format!("{key}: the ward's state does not make a record")));
            };
            let mut rebuilt = put_values(&flatten(&record), &fields);
            rebuilt.remove(EXISTS);
            let mut wanted = write.values.clone();
            wanted.remove(EXISTS);
            if rebuilt != wanted {
                return Ok(Err(format!("{key}: the ward's write cannot be rebuilt as a change")));
            }
            Op::Put(record)
        };
        let written_at_ms = stamp.hlc.wall_ms.min(i64::MAX as u64) as i64;
        let change = Change { seq: 0, written_at_ms, key: key.clone(), stamp, context, fields, op };
        // Held to the form a change is held to as it is decoded.
        Ok(change.check_form().map(|()| change).map_err(|e| format!("{key}: {e}")))
    }
}

impl super::CityStore {
    /// Up to `limit` records `ward` owns at the city, with their states,
    /// after `after` in the order of kind tag then id.
    pub fn ward_states(
        &self,
        ward: &WardCode,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, Versioned)>, StoreError> {
        let prefix = key(BY_WARD, &[ward.as_str().as_bytes()]);
        let start = match after {
            None => prefix.clone(),
            Some(k) => key(&prefix, &[&[k.kind().tag()], k.id().as_bytes(), b"\0"]),
        };
        let mut out = Vec::new();
        for (k, _) in self.engine.scan(&start, &prefix_end(&prefix), limit)? {
            let tail = &k[prefix.len()..];
            let bad = || StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: "the ward index names no record".into(),
            };
            let kind = tail.first().and_then(|t| Kind::from_tag(*t)).ok_or_else(bad)?;
            let rk = RecordKey::new(kind, &String::from_utf8_lossy(&tail[1..])).map_err(|_| bad())?;
            if let Some(state) = self.state(&rk)? {
                out.push((rk, state));
            }
        }
        Ok(out)
    }

    /// Merges the ward's writes in `states` that the city lacks (see the module docs).
    pub fn repair(
        &self,
        ward: &WardCode,
        (states, vouched): (&[(RecordKey, Versioned)], &Vouchers),
        now_ms: i64,
        ctx: &Context,
        max_skew_ms: u64,
    ) -> Result<RepairOutcome, StoreError> {
        self.write(now_ms, |w, wards| w.repair(ward, states, vouched, (ctx, max_skew_ms), wards))
    }
}
