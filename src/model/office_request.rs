//! What the data office signs of a request: a correction of a record, or
//! the settlement of a disputed field, in a canonical form of this
//! module's own (as [`super::signed`] is for a ward's changes).
//!
//! The office's client signs each request with its certificate key; the
//! city checks the signature against the certificate the caller connected
//! with, derives the changes (stamped by the city, as it always did) and
//! keeps the signed request beside them, so that `wardsync audit verify`
//! can tell a change the office asked for from one a database
//! administrator wrote in its name ([`OfficeRequest::derives`]).
//!
//! The form: the tag [`REQUEST_TAG`] and format version, the signer's key
//! id, the request id (16 random bytes), the time it was signed (ms since
//! the epoch, 8 bytes), the record's kind and id, then what is asked: `1`,
//! the record's values (each field's JSON text, sorted by field) and the
//! version vector the editor had read (empty: the record as it stands);
//! or `2`, the field and the value (JSON) that settles it. Items and
//! numbers as in [`super::signed`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::signed::{FORMAT, KeyId, item, vector};
use super::{Change, EXISTS, Op, Record, RecordKey, VersionVector, WardCode, flatten};

/// Starts the canonical form of an office request.
pub const REQUEST_TAG: &[u8] = b"wardsync/office-request";

/// An office request, as signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfficeRequest {
    /// Random, made by the client: two requests alike are still two.
    pub id: [u8; 16],
    /// When the client signed it (its clock, ms since the epoch).
    pub signed_at_ms: i64,
    /// What is asked.
    pub asked: Asked,
}

/// What the office asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Asked {
    /// Correct a record to `record`, the editor having read `seen` of it
    /// (empty: the record as it stands).
    Edit {
        /// The record as corrected.
        record: Box<Record>,
        /// The version vector the editor had read.
        seen: VersionVector,
    },
    /// Settle the conflict on `field` of `key` with `value` (JSON).
    Resolve {
        /// The record.
        key: RecordKey,
        /// The disputed field.
        field: String,
        /// The value chosen (JSON).
        value: String,
    },
    /// Discard `ward`'s quarantined change `seq`, for `reason`.
    Discard {
        /// The ward whose change it is.
        ward: WardCode,
        /// Its sequence.
        seq: u64,
        /// Why.
        reason: String,
    },
}

impl OfficeRequest {
    /// The canonical form of the request as `signer` signs it.
    pub fn message(&self, signer: &KeyId) -> Vec<u8> {
        let mut buf = Vec::with_capacity(512);
        item(&mut buf, REQUEST_TAG);
        buf.push(FORMAT);
        buf.extend_from_slice(&signer.0);
        buf.extend_from_slice(&self.id);
        buf.extend_from_slice(&self.signed_at_ms.to_be_bytes());
        let key = |buf: &mut Vec<u8>, key: &RecordKey| {
            item(buf, key.kind().as_str().as_bytes());
            item(buf, key.id().as_bytes());
        };
        match &self.asked {
            Asked::Edit { record, seen } => {
                buf.push(1);
                item(&mut buf, record.kind().as_str().as_bytes());
                item(&mut buf, record.key_id().as_bytes());
                let values = flatten(record);
                buf.extend_from_slice(&(values.len() as u32).to_be_bytes());
                for (field, value) in &values {
                    item(&mut buf, field.as_bytes());
                    item(&mut buf, value.as_bytes());
                }
                vector(&mut buf, seen);
            }
            Asked::Resolve { key: k, field, value } => {
                buf.push(2);
                key(&mut buf, k);
                item(&mut buf, field.as_bytes());
                item(&mut buf, value.as_bytes());
            }
            Asked::Discard { ward, seq, reason } => {
                buf.push(3);
                item(&mut buf, ward.as_str().as_bytes());
                buf.extend_from_slice(&seq.to_be_bytes());
                item(&mut buf, reason.as_bytes());
            }
        }
        buf
    }

    /// Refuses a request signed further than `skew_ms` from `now_ms` (a
    /// stale one replayed, or a client whose clock is wrong).
    pub fn fresh(&self, now_ms: i64, skew_ms: u64) -> Result<(), String> {
        let off = now_ms.abs_diff(self.signed_at_ms);
        if off > skew_ms {
            return Err(format!(
                "the request was signed {} s from the city's time (the limit is {} s): check the client's clock",
                off / 1000,
                skew_ms / 1000
            ));
        }
        Ok(())
    }

    /// Checks that `changes` (in log order) are what the city derives from
    /// this request, `key` being the record of the change a discard names
    /// (as the city holds it): the record asked, the values asked for the
    /// fields they set (by meaning: JSON text may be re-spaced), the
    /// version vector read where the editor gave one. A correction is one
    /// put; a settlement one write of its field (of `_exists`: a delete, or
    /// a put of no field), possibly followed by a delete that keeps a
    /// deleted record deleted; a discard at most one write, of the record
    /// whose change it discards (what the city holds of it, sent back to
    /// its ward).
    pub fn derives(&self, changes: &[&Change], discarded: Option<&RecordKey>) -> Result<(), String> {
        let key = match &self.asked {
            Asked::Edit { record, .. } => record.key().map_err(|e| e.to_string())?,
            Asked::Resolve { key, .. } => key.clone(),
            Asked::Discard { ward, seq, .. } => match (discarded, changes.is_empty()) {
                (_, true) => return Ok(()),
                (Some(k), false) => k.clone(),
                (None, false) => {
                    return Err(format!("ward {ward}'s change {seq} is not among those discarded"));
                }
            },
        };
        if let Some(c) = changes.iter().find(|c| c.key != key) {
            return Err(format!("a change it derived is of {}, not of {key}", c.key));
        }
        let Some(first) = changes.first() else { return Err("it derived no change".into()) };
        let values = |c: &Change| match &c.op {
            Op::Put(r) => flatten(r),
            Op::Delete => BTreeMap::new(),
        };
        match &self.asked {
            Asked::Edit { record, seen } => {
                if changes.len() != 1 || !matches!(first.op, Op::Put(_)) || first.fields.is_empty() {
                    return Err("a correction derives one put".into());
                }
                let asked = flatten(record);
                let made = values(first);
                if let Some(f) = first.fields.iter().find(|f| made.get(*f) != asked.get(*f)) {
                    return Err(format!("field {f} is not the value the office asked for"));
                }
                if !seen.0.is_empty() && &first.context != seen {
                    return Err("its version vector is not the one the editor read".into());
                }
            }
            Asked::Resolve { field, value, .. } => {
                let json = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
                let settles = match (&first.op, field.as_str()) {
                    (Op::Delete, EXISTS) => value == "false" && first.fields.is_empty(),
                    (Op::Put(_), EXISTS) => value != "false" && first.fields.is_empty(),
                    (Op::Delete, _) => false,
                    (Op::Put(_), f) => {
                        first.fields == [f.to_string()]
                            && values(first)
                                .get(f)
                                .and_then(|v| json(v))
                                .is_some_and(|v| Some(v) == json(value))
                    }
                };
                let then = &changes[1..];
                let rest_ok = then.is_empty()
                    || (then.len() == 1
                        && field != EXISTS
                        && matches!(then[0].op, Op::Delete)
                        && then[0].fields.is_empty());
                if !settles || !rest_ok {
                    return Err(format!("it does not settle field {field} with the value the office chose"));
                }
            }
            Asked::Discard { .. } if changes.len() > 1 => {
                return Err("a discard derives one write at most".into());
            }
            Asked::Discard { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, Stamp, signed::hex, signed::sha256};

    fn record() -> Record {
        serde_json::from_str(
            r#"{"ward":"00082","body":{"citizen":{
              "personal_id":"001085012345","full_name":"Nguyễn Văn An","date_of_birth":"1985-03-02",
              "sex":"male","ethnicity":"Kinh","nationality":"VN","household_id":"HK-00082-000001",
              "relationship_to_head":"head","marital_status":"single",
              "permanent_residence":{"address":"12 Hàng Bông","commune_code":"00082"}}}}"#,
        )
        .unwrap()
    }

    fn seen() -> VersionVector {
        let mut v = VersionVector::default();
        v.add(&Stamp { hlc: Hlc { wall_ms: 1_795_305_600_000, logical: 2 }, writer: "00082".into() });
        v
    }

    fn edit(seen: VersionVector) -> OfficeRequest {
        OfficeRequest {
            id: [5; 16],
            signed_at_ms: 1_795_305_650_000,
            asked: Asked::Edit { record: Box::new(record()), seen },
        }
    }

    fn resolve(field: &str, value: &str) -> OfficeRequest {
        let key = record().key().unwrap();
        OfficeRequest {
            asked: Asked::Resolve { key, field: field.into(), value: value.into() },
            ..edit(seen())
        }
    }

    fn put(record: Record, fields: &[&str], context: VersionVector) -> Change {
        Change {
            seq: 0,
            written_at_ms: 0,
            key: record.key().unwrap(),
            stamp: Stamp { hlc: Hlc { wall_ms: 1_795_305_700_000, logical: 0 }, writer: "city".into() },
            context,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            op: Op::Put(record),
        }
    }

    #[test]
    fn the_golden_requests_hash_as_recorded_and_every_part_is_signed() {
        let (r, key) = (edit(seen()), KeyId([7; 32]));
        let m = r.message(&key);
        assert_eq!(
            hex(&sha256(&m)),
            GOLDEN_EDIT,
            "the canonical form changed: a new FORMAT, not a silent change"
        );
        assert_eq!(hex(&sha256(&resolve("phone", "\"0912\"").message(&key))), GOLDEN_RESOLVE);
        let discard = OfficeRequest {
            asked: Asked::Discard {
                ward: WardCode::parse("00082").unwrap(),
                seq: 41,
                reason: "typed twice".into(),
            },
            ..r.clone()
        };
        assert_eq!(hex(&sha256(&discard.message(&key))), GOLDEN_DISCARD);
        let mut other = r.clone();
        other.id[0] ^= 1;
        assert_ne!(other.message(&key), m);
        assert_ne!(OfficeRequest { signed_at_ms: 1, ..r.clone() }.message(&key), m);
        assert_ne!(edit(VersionVector::default()).message(&key), m);
        assert_ne!(r.message(&KeyId([8; 32])), m, "the signer's key is signed");
    }

    #[test]
    fn a_change_is_derived_only_with_the_values_and_vector_asked() {
        let r = edit(seen());
        let good = put(record(), &["full_name"], seen());
        assert_eq!(r.derives(&[&good], None), Ok(()));
        let mut other = record();
        if let crate::model::Body::Citizen(c) = &mut other.body {
            c.full_name = "Trần Thị Bình".into();
        }
        let e = r.derives(&[&put(other, &["full_name"], seen())], None).unwrap_err();
        assert!(e.contains("full_name"), "{e}");
        assert!(r.derives(&[&put(record(), &["full_name"], VersionVector::default())], None).is_err());
        assert!(r.derives(&[&good, &good], None).is_err(), "one put");
        assert!(r.derives(&[], None).is_err());
        let settle = resolve("full_name", "\"Nguyễn Văn An\"");
        assert_eq!(settle.derives(&[&good], None), Ok(()));
        let delete = Change { op: Op::Delete, fields: vec![], ..good.clone() };
        assert_eq!(settle.derives(&[&good, &delete], None), Ok(()), "a deleted record stays deleted");
        assert!(settle.derives(&[&delete], None).is_err());
        assert!(resolve("full_name", "\"Trần Thị Bình\"").derives(&[&good], None).is_err());
        let gone = resolve(EXISTS, "false");
        assert_eq!(gone.derives(&[&delete], None), Ok(()));
        assert!(gone.derives(&[&good], None).is_err());
        let ward = WardCode::parse("00082").unwrap();
        let discard =
            OfficeRequest { asked: Asked::Discard { ward, seq: 41, reason: "x".into() }, ..r.clone() };
        assert_eq!(discard.derives(&[], None), Ok(()), "a discard may write nothing");
        assert_eq!(discard.derives(&[&good], Some(&good.key)), Ok(()));
        assert!(discard.derives(&[&good], None).is_err(), "of a change the city discarded");
        let elsewhere = crate::model::RecordKey::new(crate::model::Kind::Citizen, "001085099999").unwrap();
        assert!(discard.derives(&[&good], Some(&elsewhere)).is_err());
    }

    #[test]
    fn a_request_signed_beyond_the_skew_is_stale() {
        let r = OfficeRequest { signed_at_ms: 1_000_000, ..edit(seen()) };
        assert_eq!(r.fresh(1_030_000, 60_000), Ok(()));
        assert!(r.fresh(1_090_000, 60_000).unwrap_err().contains("90 s"));
        assert!(r.fresh(900_000, 60_000).is_err());
    }

    // Computed by a second implementation of the form above, written from
    // this module's documentation alone (Python's struct and hashlib).
    const GOLDEN_EDIT: &str = "28dd3604355f8d6cca24899759b6c13433d51d6a0e8c8302fff36975a08762f0";
    const GOLDEN_RESOLVE: &str = "2579b5d75cd11f736487fac276aa652e2f8a17c24ae67e7579af6281213c441d";
    const GOLDEN_DISCARD: &str = "e45438a5c4f57c2371086347eb63ef4bb6283319ba48fe0edbaf9c7bb24ef626";
}
