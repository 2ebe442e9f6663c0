//! A change: one write or delete of one record, as queued in a ward's outbox
//! and applied at the city.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::{
    Body, Context, EXISTS, OWNER, Record, RecordKey, Stamp, VersionVector, Versioned, WardCode, flatten,
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

impl Change {
    /// The field values this change writes: the listed fields of a put's
    /// record (and `_exists` true), or `_exists` false for a delete.
    pub fn values(&self) -> BTreeMap<String, String> {
        match &self.op {
            Op::Delete => deleted(),
            Op::Put(r) => put_values(&flatten(r), &self.fields),
        }
    }

    /// Why a ward `sender` may not apply this change, or `None` if it may.
    ///
    /// `current` is the record's state where the change is applied (the
    /// city). A ward writes only records it owns: the record must name the
    /// sender as its owner, and the record must not belong to another ward,
    /// unless the change is a residence transfer into the sender (a citizen
    /// whose permanent residence is now in the sender's commune) or the
    /// sender owned the record and had not yet seen it change hands
    /// (concurrent writes, which the merge settles by policy). The record is re-validated in `ctx`:
    /// the city never trusts the sender's validation.
    pub fn refusal(&self, sender: &WardCode, current: Option<&Versioned>, ctx: &Context) -> Option<String> {
        let registered = match self.registration_check(sender, current) {
            Some(Err(why)) => return Some(format!("{}: {why}", self.key)),
            Some(Ok(())) => true,
            None => false,
        };
        let owner_write = current
            .and_then(|v| v.fields.get(OWNER))
            .and_then(|heads| heads.iter().max_by(|a, b| a.stamp.cmp(&b.stamp)));
        if let Some(w) = owner_write {
            let owner: String = serde_json::from_str(&w.value).unwrap_or_default();
            // The sender wrote the record before (as its owner, or moving
            // it in), as the state here shows, and had not yet seen it
            // change hands: a concurrent write, merged by policy. Judged on
            // the state, never on the sender's own claims.
            let wrote_before = current.is_some_and(|v| v.seen.0.contains_key(sender.as_str()));
            let concurrent = !self.context.has_seen(&w.stamp) && wrote_before;
            if owner != sender.as_str() && !concurrent && !self.is_transfer_into(sender) && !registered {
                return Some(format!(
                    "{} belongs to ward {owner}; ward {sender} may not change it",
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
                match r.validate(ctx) {
                    Err(e) => Some(e.to_string()),
                    Ok(k) if k != self.key => {
                        Some(format!("change key {} does not match the record's key {k}", self.key))
                    }
                    Ok(_) => None,
                }
            }
        }
    }

    /// For a put by `sender` that sets only the fields a civil-status
    /// registration sets, on a citizen the city holds under another ward:
    /// whether it is one (see [`super::civil::registration_refusal`]),
    /// judged on the city's state `current`. `None` for any other change.
    fn registration_check(
        &self,
        sender: &WardCode,
        current: Option<&Versioned>,
    ) -> Option<Result<(), String>> {
        use super::civil::{REGISTRATION_FIELDS, registration_refusal};
        let Op::Put(Record { ward: owner, body: Body::Citizen(c) }) = &self.op else { return None };
        let attempt =
            !self.fields.is_empty() && self.fields.iter().all(|f| REGISTRATION_FIELDS.contains(&f.as_str()));
        let state = current.filter(|v| !v.fields.is_empty())?;
        let newest = |field: &str| {
            state.fields.get(field).and_then(|heads| heads.iter().max_by(|a, b| a.stamp.cmp(&b.stamp)))
        };
        if owner == sender || !attempt || state.owner_value()? != owner.as_str() {
            return None;
        }
        let events = |value: &str| serde_json::from_str::<Vec<super::CivilEvent>>(value).ok();
        let heads = state.fields.get("events").map_or(&[][..], |h| h.as_slice());
        let seen: Vec<Vec<super::CivilEvent>> = heads
            .iter()
            .filter(|h| self.context.has_seen(&h.stamp))
            .filter_map(|h| events(&h.value))
            .collect();
        let latest = newest("events").and_then(|w| events(&w.value));
        Some(match registration_refusal(sender, &self.fields, c, &seen, latest.as_deref()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::sample;
    use crate::model::{Hlc, Kind};

    fn ward(s: &str) -> WardCode {
        WardCode::parse(s).unwrap()
    }

    fn ctx() -> Context {
        Context { today: "2026-11-22".parse().unwrap(), province: Some("01".into()) }
    }

    fn citizen(owner: &str) -> Record {
        sample(&ward(owner), 20, 1).into_iter().find(|r| matches!(r.body, Body::Citizen(_))).unwrap()
    }

    fn put(r: Record, writer: &str, ms: u64, context: VersionVector) -> Change {
        let fields = flatten(&r).into_keys().collect();
        let key = r.key().unwrap();
        let stamp = Stamp { hlc: Hlc { wall_ms: ms, logical: 0 }, writer: writer.into() };
        Change { seq: 1, written_at_ms: 0, key, stamp, context, fields, op: Op::Put(r) }
    }

    fn state_after(c: &Change) -> Versioned {
        let mut v = Versioned::default();
        v.apply(&c.values(), &c.stamp, &c.context);
        v
    }

    #[test]
    fn ownership_rules() {
        let (a, b, ctx) = (ward("00082"), ward("00145"), ctx());
        let ok = put(citizen("00082"), "00082", 1, VersionVector::default());
        assert_eq!(ok.refusal(&a, None, &ctx), None);
        let owned_by_a = state_after(&ok);
        assert_eq!(ok.refusal(&a, Some(&owned_by_a), &ctx), None);
        assert!(ok.refusal(&b, None, &ctx).unwrap().contains("sent by ward 00145"));

        // Ward b writes a's record, knowing it is a's: refused.
        let mut theirs = citizen("00082");
        theirs.ward = b.clone();
        let knowing = put(theirs.clone(), "00145", 2, owned_by_a.seen.clone());
        assert!(knowing.refusal(&b, Some(&owned_by_a), &ctx).unwrap().contains("belongs to ward 00082"));
        // Never having written it: refused too, or any ward could take any
        // record, whatever it claims to have written before.
        let stranger = put(theirs.clone(), "00145", 2, VersionVector::default());
        assert!(stranger.refusal(&b, Some(&owned_by_a), &ctx).is_some());
        let mut claimed = VersionVector::default();
        claimed.add(&Stamp { hlc: Hlc { wall_ms: 0, logical: 0 }, writer: "00145".into() });
        let claiming = put(theirs.clone(), "00145", 2, claimed);
        assert!(claiming.refusal(&b, Some(&owned_by_a), &ctx).unwrap().contains("belongs to ward 00082"));
        // Having owned it (the state shows b's write before a's), not knowing
        // it changed hands: accepted, the merge settles it.
        let b_first = put(theirs.clone(), "00145", 1, VersionVector::default());
        let mut passed_to_a = state_after(&b_first);
        let b_saw = passed_to_a.seen.clone();
        let to_a = put(citizen("00082"), "00082", 3, b_saw.clone());
        passed_to_a.apply(&to_a.values(), &to_a.stamp, &to_a.context);
        let concurrent = put(theirs.clone(), "00145", 2, b_saw);
        assert_eq!(concurrent.refusal(&b, Some(&passed_to_a), &ctx), None);
        // A residence transfer into b: accepted although b knew.
        if let Body::Citizen(c) = &mut theirs.body {
            c.permanent_residence.commune_code = "00145".into();
        }
        let transfer = put(theirs, "00145", 3, owned_by_a.seen.clone());
        assert!(transfer.is_transfer_into(&b));
        assert_eq!(transfer.refusal(&b, Some(&owned_by_a), &ctx), None);

        let del = Change {
            op: Op::Delete,
            fields: vec![],
            ..put(citizen("00082"), "00145", 4, owned_by_a.seen.clone())
        };
        assert!(del.refusal(&b, Some(&owned_by_a), &ctx).is_some());
        // A delete of a record the city does not hold is not the sender's to make.
        let unknown = Change {
            op: Op::Delete,
            fields: vec![],
            ..put(citizen("00082"), "00082", 5, VersionVector::default())
        };
        assert!(unknown.refusal(&a, None, &ctx).unwrap().contains("not a record the city holds"));
        let mismatched = Change { key: RecordKey::new(Kind::Citizen, "001085099999").unwrap(), ..ok.clone() };
        assert!(mismatched.refusal(&a, None, &ctx).unwrap().contains("does not match"));
    }

    #[test]
    fn invalid_records_are_refused_with_the_reason() {
        let mut r = citizen("00082");
        if let Body::Citizen(x) = &mut r.body {
            x.full_name.clear();
        }
        let c = put(r, "00082", 1, VersionVector::default());
        let why = c.refusal(&ward("00082"), None, &ctx()).unwrap();
        assert!(why.contains("record.citizen.full_name: required"), "{why}");
    }

    #[test]
    fn a_put_writes_its_listed_fields_and_existence() {
        let mut c = put(citizen("00082"), "00082", 1, VersionVector::default());
        c.fields = vec!["phone".into()];
        let v = c.values();
        assert_eq!(v.keys().collect::<Vec<_>>(), ["_exists", "phone"]);
        let d = Change { op: Op::Delete, fields: vec![], ..c };
        assert_eq!(d.values(), BTreeMap::from([(EXISTS.to_string(), "false".to_string())]));
    }
}
