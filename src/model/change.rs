//! A change: one write or delete of one record, as queued in a ward's outbox
//! and applied at the city.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::{
    Body, Context, EXISTS, OWNER, Record, RecordKey, Stamp, ValidationError, VersionVector, Versioned,
    WardCode, flatten,
};

/// What a change does to its record.
// Puts far outnumber deletes, so boxing the record would cost more than the padding.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Create or replace the record.
    Put(Record),
    /// Remove the record.
    Delete,
}

/// One change, numbered in its writer's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Per-ward sequence number, starting at 1, without gaps (0 for city writes).
    pub seq: u64,
    /// Writer wall-clock time when the write was accepted, in ms since the epoch.
    pub written_at_ms: i64,
    /// The record changed.
    pub key: RecordKey,
    /// The writer's hybrid clock and id.
    pub stamp: Stamp,
    /// What the writer had seen of the record when it wrote.
    pub context: VersionVector,
    /// The fields a put sets (those that differ from what the writer had);
    /// empty for a delete.
    pub fields: Vec<String>,
    /// What was done.
    pub op: Op,
}

/// The values a delete writes: `_exists` false.
pub fn deleted() -> BTreeMap<String, String> {
    BTreeMap::from([(EXISTS.to_string(), "false".to_string())])
}

/// The values a put writes: `fields` of the record's flattened values
/// `all`, and `_exists` true.
pub fn put_values(all: &BTreeMap<String, String>, fields: &[String]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> =
        fields.iter().filter_map(|f| all.get(f).map(|v| (f.clone(), v.clone()))).collect();
    out.insert(EXISTS.to_string(), "true".to_string());
    out
}

/// The fields a residence transfer sets: the owning ward and the
/// residence registration (permanent and temporary residence, household
/// and relationship to its head). Everything else about the person stays
/// as the city holds it.
pub const TRANSFER_FIELDS: [&str; 5] =
    [OWNER, "permanent_residence", "temporary_residence", "household_id", "relationship_to_head"];

/// Why a residence transfer that also sets `others` (fields besides
/// [`TRANSFER_FIELDS`]) is refused; `None` if it sets none.
pub fn transfer_overreach<S: AsRef<str>>(others: &[S]) -> Option<String> {
    (!others.is_empty()).then(|| {
        format!(
            "a residence transfer sets only the owning ward and the residence registration ({}); \
             this one also sets {}",
            TRANSFER_FIELDS.join(", "),
            others.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The fields besides [`TRANSFER_FIELDS`] in which `moved`, a record a
/// ward would transfer in, differs from `held`, the city's.
pub fn beyond_transfer(held: &Record, moved: &Record) -> Vec<String> {
    let (theirs, ours) = (flatten(held), flatten(moved));
    ours.into_iter()
        .filter(|(f, v)| !TRANSFER_FIELDS.contains(&f.as_str()) && theirs.get(f) != Some(v))
        .map(|(f, _)| f)
        .collect()
}

/// What the city knows of a change's record when it judges the change.
#[derive(Debug, Clone, Copy)]
pub struct Standing<'a> {
    /// The record's state at the city (`None`: never heard of).
    pub state: Option<&'a Versioned>,
    /// Whether a write the city applied to the record named the sender as
    /// its owner (it created the record, or had it moved in, at some time).
    pub named_sender: bool,
    /// How many of the sender's changes to the record the city applied in
    /// the last day (counted only where the sender is not its owner).
    pub today_by_sender: usize,
    /// For a registration on another ward's citizen: the city's record of
    /// the spouse its event names, if the city holds one.
    pub spouse: Option<&'a super::Citizen>,
}

/// The most writers a change's version vector may name (a record is
/// written by its owners, the city and the wards that registered events
/// on it: far fewer).
pub const MAX_CONTEXT: usize = 256;

/// True for a writer id: the city's, or a ward's commune code.
pub fn is_writer(id: &str) -> bool {
    id == super::CITY_WRITER || WardCode::parse(id).is_ok()
}

impl Change {
    /// What the change's form alone says is wrong with it, whoever sent it:
    /// a writer (its own, or one its version vector names) that is neither
    /// the city nor a ward, more than [`MAX_CONTEXT`] writers seen, a field
    /// its record kind does not have or named twice, fields on a delete,
    /// a record text with a control character (NUL among them), not NFC or
    /// too long. Checked as it is decoded, so nothing of such a change
    /// reaches a store but its raw bytes, kept in quarantine.
    pub fn check_form(&self) -> Result<(), ValidationError> {
        let mut err = ValidationError::default();
        if !is_writer(&self.stamp.writer) {
            err.add("change.writer", "is neither \"city\" nor a 5-digit commune code");
        }
        if self.context.0.len() > MAX_CONTEXT {
            err.add(
                "change.context",
                format!("names {} writers; the limit is {MAX_CONTEXT}", self.context.0.len()),
            );
        } else if self.context.0.keys().any(|w| !is_writer(w)) {
            err.add("change.context", "names a writer that is neither \"city\" nor a 5-digit commune code");
        }
        let known = super::field_names(self.key.kind());
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.fields {
            if !known.contains(&f.as_str()) && f != OWNER && f != EXISTS {
                err.add(
                    "change.fields",
                    format!("a {} has no field {:?}", self.key.kind(), f.escape_debug().to_string()),
                );
                break;
            }
            if !seen.insert(f.as_str()) {
                err.add("change.fields", format!("{f} is named twice"));
                break;
            }
        }
        match &self.op {
            Op::Delete if !self.fields.is_empty() => err.add("change.fields", "a delete sets no fields"),
            Op::Delete => {}
            Op::Put(r) => r.check_form(&mut err),
        }
        err.into_result()
    }

    /// The field values this change writes: the listed fields of a put's
    /// record (and `_exists` true), or `_exists` false for a delete.
    pub fn values(&self) -> BTreeMap<String, String> {
        match &self.op {
            Op::Delete => deleted(),
            Op::Put(r) => put_values(&flatten(r), &self.fields),
        }
    }

    /// Why a ward `sender` may not apply this change, or `None` if it may,
    /// judged on what the city knows of the record (`standing`), never on
    /// the sender's word.
    ///
    /// A ward writes only records it owns: a put must name the sender as
    /// owner, and the record must not belong to another ward. Three
    /// exceptions, each as narrow as the rule: a residence transfer into the
    /// sender sets only the owning ward and the residence registration
    /// ([`TRANSFER_FIELDS`]) of a citizen the city holds; a civil-status
    /// registration ([`super::civil::registration_refusal`]); and a write by
    /// a ward an earlier write of the record named as owner, that had not
    /// seen the record change hands (concurrent writes, which the merge
    /// settles by policy), and that does not itself set the owner. The record
    /// is re-validated in `ctx`: the city never trusts the sender's validation.
    pub fn refusal(&self, sender: &WardCode, standing: &Standing, ctx: &Context) -> Option<String> {
        let current = standing.state.filter(|v| !v.fields.is_empty());
        let registered = match self.registration_check(sender, current, standing, ctx) {
            Some(Err(why)) => return Some(format!("{}: {why}", self.key)),
            Some(Ok(())) => true,
            None => false,
        };
        let owner_write = current.and_then(|v| v.newest(OWNER));
        // (Two wards that moved the record in concurrently each own it
        // until the office settles the conflict on the owner: a write that
        // builds on a head naming its sender, has seen none naming another
        // ward and sets no owner writes the sender's record; the merge
        // records where it disagrees with the other's writes.)
        let a_head_names_sender = !self.fields.iter().any(|f| f == OWNER)
            && current.is_some_and(|v| {
                let heads = || v.fields.get(OWNER).into_iter().flatten();
                let names = |h: &super::FieldWrite, w: &str| {
                    serde_json::from_str::<String>(&h.value).is_ok_and(|o| o == w)
                };
                let seen = |h: &&super::FieldWrite| self.context.has_seen(&h.stamp);
                heads().filter(seen).any(|h| names(h, sender.as_str()))
                    && !heads().filter(seen).any(|h| !names(h, sender.as_str()))
            });
        if let Some(w) = owner_write.filter(|_| !a_head_names_sender) {
            let owner: String = serde_json::from_str(&w.value).unwrap_or_default();
            // (Setting the owner too only if the move had seen it: an
            // older write, superseded there, takes nothing back.)
            let concurrent = standing.named_sender
                && !self.context.has_seen(&w.stamp)
                && (!self.fields.iter().any(|f| f == OWNER) || w.context.has_seen(&self.stamp));
            // (A write older than the move, re-sent, is judged as the
            // concurrent write it is, not as a transfer.)
            let transfer = owner != sender.as_str() && !concurrent && self.is_transfer_into(sender);
            if transfer && let Some(why) = self.transfer_refusal(current) {
                return Some(format!("{}: {why}", self.key));
            }
            if owner != sender.as_str() && !concurrent && !transfer && !registered {
                return Some(format!(
                    "{} belongs to ward {owner}; ward {sender} may not change it",
                    self.key
                ));
            }
            // (Who a person is and what was registered are not for a
            // former owner's concurrent write to change: its word that it
            // had not seen the move is all the exception rests on. It may
            // write them as a version the city holds has them.)
            let personal = |f: &str| f == "events" || super::civil::IDENTITY_FIELDS.contains(&f);
            let held = |f: &str, v: &String| {
                current.and_then(|c| c.fields.get(f)).is_some_and(|hs| hs.iter().any(|h| &h.value == v))
            };
            let rewrites = || self.values().iter().any(|(f, v)| personal(f) && !held(f, v));
            if owner != sender.as_str() && concurrent && !registered && rewrites() {
                return Some(format!(
                    "{} belongs to ward {owner}: ward {sender}, which no longer owns it, changes who the person \
                     is or their events only by registration",
                    self.key
                ));
            }
        }
        match &self.op {
            Op::Delete if owner_write.is_none() => {
                Some(format!("{} is not a record the city holds; ward {sender} may not delete it", self.key))
            }
            Op::Delete => None,
            Op::Put(r) => {
                if &r.ward != sender && !registered {
                    return Some(format!(
                        "{} names ward {} as owner but was sent by ward {sender}",
                        self.key, r.ward
                    ));
                }
                if let Some(why) = self.rewrite_refusal(current, sender) {
                    return Some(format!("{}: {why}", self.key));
                }
                if self.fields.iter().any(|f| f == OWNER)
                    && let Some((field, why)) = r.kept_elsewhere()
                {
                    return Some(format!("{}: {field}: {why}", self.key));
                }
                // (Its form was checked as it was decoded: `check_form`.)
                match r.validate_content(ctx) {
                    Err(e) => Some(e.to_string()),
                    Ok(k) if k != self.key => {
                        Some(format!("change key {} does not match the record's key {k}", self.key))
                    }
                    Ok(_) => None,
                }
            }
        }
    }

    /// Why this put by `sender` rewrites a citizen the city holds with
    /// registered events without registration, judged on the record's
    /// state `current` ([`super::civil::rewrite_refusal_on`]).
    fn rewrite_refusal(&self, current: Option<&Versioned>, sender: &WardCode) -> Option<String> {
        let (Op::Put(Record { body: Body::Citizen(new), .. }), Some(state)) = (&self.op, current) else {
            return None;
        };
        super::civil::rewrite_refusal_on(state, &self.context, &self.fields, new, Some(sender.as_str()))
    }

    /// Why this change, a residence transfer, may not move the record whose
    /// state at the city is `current`: it sets fields besides
    /// [`TRANSFER_FIELDS`], it had not seen who owns the record, or the
    /// record is deleted, as it knew.
    fn transfer_refusal(&self, current: Option<&Versioned>) -> Option<String> {
        let others: Vec<&str> = self
            .fields
            .iter()
            .map(String::as_str)
            .filter(|f| !TRANSFER_FIELDS.contains(f) && *f != EXISTS)
            .collect();
        if let Some(why) = transfer_overreach(&others) {
            return Some(why);
        }
        // Built on the ownership it moves: a transfer is made from the
        // city's copy, which names the owner it takes the person from (or,
        // made concurrently with another move, on what that one was).
        let owner = current.and_then(|v| v.newest(OWNER));
        let built_on = |w: &super::FieldWrite| {
            self.context.has_seen(&w.stamp) || (!w.context.0.is_empty() && self.context.covers(&w.context))
        };
        if owner.is_some_and(|w| !built_on(w)) {
            return Some(
                "a residence transfer is built on the city's copy of the record, naming its owner: \
                 this one had not seen it"
                    .into(),
            );
        }
        // (A delete it had not seen is a concurrent write: the merge settles
        // the two, and the office sees the conflict. Its own delete it may
        // undo, as it may re-create a record of its own.)
        let deleted = current.and_then(|v| v.newest(EXISTS)).is_none_or(|w| {
            w.value != "true" && self.context.has_seen(&w.stamp) && w.stamp.writer != self.stamp.writer
        });
        deleted.then(|| "a deleted record cannot be transferred".to_string())
    }

    /// For a put by `sender` that sets only the fields a civil-status
    /// registration sets, on a citizen the city holds under another ward:
    /// whether it is one (see [`super::civil::registration_refusal`]),
    /// judged on the city's state `current` and what `standing` knows (the
    /// sender's changes to the record in the last day, the spouse's
    /// record). `None` for any other change.
    fn registration_check(
        &self,
        sender: &WardCode,
        current: Option<&Versioned>,
        standing: &Standing,
        ctx: &Context,
    ) -> Option<Result<(), String>> {
        use super::civil::{EventsHead, Judged, REGISTRATION_FIELDS, registration_refusal};
        let Op::Put(Record { ward: owner, body: Body::Citizen(c) }) = &self.op else { return None };
        let attempt =
            !self.fields.is_empty() && self.fields.iter().all(|f| REGISTRATION_FIELDS.contains(&f.as_str()));
        let state = current?;
        if owner == sender || !attempt || state.owner_value()? != owner.as_str() {
            return None;
        }
        if state.newest(EXISTS).is_none_or(|w| w.value != "true") {
            return Some(Err("the city holds this citizen as deleted: no event is registered on it".into()));
        }
        let newest_values: BTreeMap<String, String> =
            state.fields.keys().filter_map(|f| Some((f.clone(), state.newest(f)?.value.clone()))).collect();
        let Some(Record { body: Body::Citizen(held), .. }) =
            super::unflatten(self.key.kind(), &newest_values)
        else {
            return Some(Err(
                "the city's copy of the citizen is incomplete: the data office checks it".into()
            ));
        };
        let heads: Vec<EventsHead> = state
            .fields
            .get("events")
            .map_or(&[][..], |h| h.as_slice())
            .iter()
            .filter_map(|h| {
                Some(EventsHead {
                    events: serde_json::from_str(&h.value).ok()?,
                    seen: self.context.has_seen(&h.stamp),
                    built_alike: self.context.covers(&h.context),
                })
            })
            .collect();
        let facts = Judged {
            heads: &heads,
            current: &held,
            spouse: standing.spouse,
            today_by_sender: standing.today_by_sender,
        };
        Some(match registration_refusal(sender, &self.fields, c, &facts, ctx.today) {
            None => Ok(()),
            Some(why) => Err(why),
        })
    }

    /// True for a residence transfer into `ward`: a citizen put that makes
    /// `ward` the owner and moves the permanent residence there.
    pub fn is_transfer_into(&self, ward: &WardCode) -> bool {
        match &self.op {
            Op::Put(Record { ward: w, body: Body::Citizen(c) }) => {
                w == ward
                    && c.permanent_residence.commune_code == ward.as_str()
                    && self.fields.iter().any(|f| f == OWNER)
            }
            _ => false,
        }
    }
}

/// True if `state` holds a write by `ward` of a field no registration
/// writes (every put writes `_exists`): one it made as the record's owner
/// (or moving it in), which a registration, the only write a ward makes to
/// another's record, is not.
pub fn wrote_as_owner(state: &Versioned, ward: &WardCode) -> bool {
    use super::civil::REGISTRATION_FIELDS;
    state.fields.iter().any(|(f, heads)| {
        !REGISTRATION_FIELDS.contains(&f.as_str())
            && f != EXISTS
            && heads.iter().any(|h| h.stamp.writer == ward.as_str())
    })
}

#[cfg(test)]
#[path = "change_tests.rs"]
mod tests;
