//! A change: one write or delete of one record, as queued in a ward's outbox
//! and applied at the city.

use serde::{Deserialize, Serialize};

use super::{Record, RecordKey, WardCode};

/// What a change does to its record.
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
    /// must not already belong to another ward. The record is re-validated:
    /// the city never trusts the sender's validation.
    pub fn refusal(&self, sender: &WardCode, current_owner: Option<&WardCode>) -> Option<String> {
        if let Some(owner) = current_owner.filter(|o| *o != sender) {
            return Some(format!(
                "{} belongs to ward {owner}; ward {sender} may not change it",
                self.key
            ));
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
                match r.validate() {
                    Err(e) => Some(e.to_string()),
                    Ok(k) if k != self.key => Some(format!(
                        "change key {} does not match the record's key {k}",
                        self.key
                    )),
                    Ok(_) => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Body, Citizen, Kind};

    fn ward(s: &str) -> WardCode {
        WardCode::parse(s).unwrap()
    }

    fn put(owner: &str, id: &str) -> Change {
        Change {
            seq: 1,
            written_at_ms: 0,
            key: RecordKey::new(Kind::Citizen, id).unwrap(),
            op: Op::Put(Record {
                ward: ward(owner),
                body: Body::Citizen(Citizen {
                    personal_id: "001085012345".into(),
                    full_name: "Nguyễn Văn An".into(),
                    ..Default::default()
                }),
            }),
        }
    }

    #[test]
    fn ownership_rules() {
        let a = ward("00082");
        let b = ward("00145");
        let ok = put("00082", "001085012345");
        assert_eq!(ok.refusal(&a, None), None);
        assert_eq!(ok.refusal(&a, Some(&a)), None);
        assert!(ok.refusal(&b, None).unwrap().contains("sent by ward 00145"));
        assert!(
            ok.refusal(&a, Some(&b))
                .unwrap()
                .contains("belongs to ward 00145")
        );
        let del = Change {
            op: Op::Delete,
            ..ok.clone()
        };
        assert_eq!(del.refusal(&a, None), None);
        assert!(del.refusal(&a, Some(&b)).is_some());
        let mismatched = put("00082", "001085099999");
        assert!(
            mismatched
                .refusal(&a, None)
                .unwrap()
                .contains("does not match")
        );
    }
}
