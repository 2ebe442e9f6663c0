//! A change: one write or delete of one record, as queued in a ward's outbox
//! and applied at the city.

use serde::{Deserialize, Serialize};

use super::{Context, Record, RecordKey, WardCode};

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

/// One change, numbered in its ward's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Per-ward sequence number, starting at 1, without gaps.
    pub seq: u64,
    /// Ward wall-clock time when the write was accepted, in ms since the epoch.
    pub written_at_ms: i64,
    /// The record changed.
    pub key: RecordKey,
    /// What was done.
    pub op: Op,
}

impl Change {
    /// Why a ward `sender` may not apply this change, or `None` if it may.
    ///
    /// `current_owner` is the ward owning the record where the change is
    /// applied (the city), if the record exists there. A ward writes only
    /// records it owns: the record must name the sender as its owner, and
    /// must not already belong to another ward. The record is re-validated
    /// in `ctx`: the city never trusts the sender's validation.
    pub fn refusal(
        &self,
        sender: &WardCode,
        current_owner: Option<&WardCode>,
        ctx: &Context,
    ) -> Option<String> {
        if let Some(owner) = current_owner.filter(|o| *o != sender) {
            return Some(format!("{} belongs to ward {owner}; ward {sender} may not change it", self.key));
        }
        match &self.op {
            Op::Delete => None,
            Op::Put(r) => {
                if &r.ward != sender {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Plan, WardGen};

    fn ward(s: &str) -> WardCode {
        WardCode::parse(s).unwrap()
    }

    fn ctx() -> Context {
        Context { today: "2026-11-22".parse().unwrap(), province: Some("01".into()) }
    }

    fn put(owner: &str) -> Change {
        let r = WardGen::new(&ward(owner), 1, ctx().today)
            .records(Plan { citizens: 1, ..Plan::default() })
            .next()
            .unwrap();
        Change {
            seq: 1,
            written_at_ms: 0,
            key: RecordKey::new(r.kind(), &r.key_id()).unwrap(),
            op: Op::Put(r),
        }
    }

    #[test]
    fn ownership_rules() {
        let (a, b, ctx) = (ward("00082"), ward("00145"), ctx());
        let ok = put("00082");
        assert_eq!(ok.refusal(&a, None, &ctx), None);
        assert_eq!(ok.refusal(&a, Some(&a), &ctx), None);
        assert!(ok.refusal(&b, None, &ctx).unwrap().contains("sent by ward 00145"));
        assert!(ok.refusal(&a, Some(&b), &ctx).unwrap().contains("belongs to ward 00145"));
        let del = Change { op: Op::Delete, ..ok.clone() };
        assert_eq!(del.refusal(&a, None, &ctx), None);
        assert!(del.refusal(&a, Some(&b), &ctx).is_some());
        let other = put("00145");
        let mismatched = Change { key: other.key.clone(), ..ok.clone() };
        assert!(mismatched.refusal(&a, None, &ctx).unwrap().contains("does not match"));
    }

    #[test]
    fn invalid_records_are_refused_with_the_reason() {
        let mut c = put("00082");
        if let Op::Put(Record { body: crate::model::Body::Citizen(x), .. }) = &mut c.op {
            x.full_name.clear();
        }
        let why = c.refusal(&ward("00082"), None, &ctx()).unwrap();
        assert!(why.contains("record.citizen.full_name: required"), "{why}");
    }
}
