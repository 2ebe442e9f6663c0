//! What the data office signs of a request: a correction of a record, or
//! the settlement of a disputed field, in a canonical form of this
//! module's own (as [`super::signed`] is for a ward's changes).
//!
//! The office's client signs each request with its certificate key; the
//! city checks the signature against the certificate the caller connected
//! with, derives the changes (stamped by the city, as it always did) and
//! keeps the signed request beside them, so that `wardsync audit verify`
//! can tell a change the office asked for from one a database
//! administrator wrote in its name: both derive the changes with
//! [`OfficeRequest::derive`].
//!
//! The form: the tag [`REQUEST_TAG`] and [`REQUEST_FORMAT`], the signer's key
//! id, the request id (16 random bytes), the time it was signed (ms since
//! the epoch, 8 bytes), then what is asked, its tag first: `1`, a
//! correction: the record's kind and id, its values (their count, 4
//! bytes; each field and its JSON text, sorted by field) and the version
//! vector the editor had read (empty: the record as it stands); `2`, a
//! settlement: the record's kind and id, the field and the value (JSON)
//! that settles it; `3`, a discard: the ward, the sequence (8 bytes) and
//! the reason. Items and numbers as in [`super::signed`].

use serde::{Deserialize, Serialize};

use super::signed::{KeyId, item, vector};
use super::{
    Change, EXISTS, Op, Policies, Record, RecordKey, ValidationError, VersionVector, Versioned, WardCode,
    flatten, unflatten,
};

/// Starts the canonical form of an office request.
pub const REQUEST_TAG: &[u8] = b"wardsync/office-request";

/// The version of that form (its own: a ward's changes have theirs).
pub const REQUEST_FORMAT: u8 = 1;

/// The most changes one request derives (a settlement of a deleted
/// record: its value, then the delete again), logged at consecutive
/// cursors: the evidence of a change the city wrote is the request kept at
/// its cursor or one of the [`MAX_DERIVED`] - 1 before it.
pub const MAX_DERIVED: u64 = 2;

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
        buf.push(REQUEST_FORMAT);
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

    /// The writes the city derives from this request on the record `key`,
    /// whose state is `before` (shown under `policies`), in order; for a
    /// discard, `discarded` is the change discarded (`None`: kept raw). The
    /// city applies exactly these, and `wardsync audit verify` derives them
    /// again from the record's log to check what the log holds.
    ///
    /// A correction writes the fields whose values differ from the record
    /// shown (none: nothing), having seen what the editor read (or, given
    /// nothing, everything). A settlement writes its field with the value
    /// chosen, as the record then reads it back (of `_exists`: a delete, or
    /// a put of no field), having seen everything; a deleted record is
    /// deleted again by a write that has seen that put. A discard writes
    /// back, having seen the change, what the city shows of the fields it
    /// wrote (or deletes the record it would have created), if the record
    /// is its ward's.
    pub fn derive(
        &self,
        key: &RecordKey,
        before: &Versioned,
        policies: &Policies,
        discarded: Option<&Change>,
    ) -> Result<Vec<Derived>, Underivable> {
        let write =
            |fields: Vec<String>, op: Op, context: Option<VersionVector>| Derived { fields, op, context };
        match &self.asked {
            Asked::Edit { record, seen } => {
                let current = before.materialize(key, policies).ok_or(Underivable::NoRecord)?;
                let old = flatten(&current);
                let fields: Vec<String> = flatten(record)
                    .into_iter()
                    .filter(|(f, v)| old.get(f) != Some(v))
                    .map(|(f, _)| f)
                    .collect();
                if fields.is_empty() {
                    return Ok(Vec::new());
                }
                let context = (!seen.0.is_empty()).then(|| seen.clone());
                Ok(vec![write(fields, Op::Put((**record).clone()), context)])
            }
            Asked::Resolve { field, value, .. } => {
                if field == EXISTS && value == "false" {
                    return Ok(vec![write(Vec::new(), Op::Delete, None)]);
                }
                let view = before.view(key, policies).ok_or(Underivable::NoRecord)?;
                let mut values = flatten(&view);
                values.insert(field.clone(), value.clone());
                let record = unflatten(key.kind(), &values).ok_or_else(|| {
                    let why = format!("{value} is not a valid value for field {field}");
                    Underivable::Invalid(ValidationError::single("value", why))
                })?;
                if field == EXISTS {
                    return Ok(vec![write(Vec::new(), Op::Put(record), None)]);
                }
                let mut writes = vec![write(vec![field.clone()], Op::Put(record), None)];
                if !before.exists(key.kind(), policies) {
                    // A put also says the record exists: settling a field of
                    // a deleted record must not bring it back.
                    writes.push(write(Vec::new(), Op::Delete, None));
                    debug_assert!(writes.len() as u64 <= MAX_DERIVED);
                }
                Ok(writes)
            }
            Asked::Discard { ward, .. } => {
                let Some(change) = discarded else { return Ok(Vec::new()) };
                let mut seen = before.seen.clone();
                seen.add(&change.stamp);
                Ok(match (before.materialize(key, policies), &change.op) {
                    (Some(r), _) if &r.ward == ward => {
                        let all = flatten(&r);
                        let fields = change.fields.iter().filter(|f| all.contains_key(*f)).cloned().collect();
                        vec![write(fields, Op::Put(r), Some(seen))]
                    }
                    (None, Op::Put(r)) if &r.ward == ward => vec![write(Vec::new(), Op::Delete, Some(seen))],
                    _ => Vec::new(),
                })
            }
        }
    }
}

/// One write the city derives from an office request ([`OfficeRequest::derive`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// The fields it sets.
    pub fields: Vec<String>,
    /// What it writes.
    pub op: Op,
    /// What it had seen of the record (`None`: everything the record holds
    /// when it is written).
    pub context: Option<VersionVector>,
}

/// Why nothing can be derived from a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Underivable {
    /// The record does not exist (or, settled, was never complete).
    NoRecord,
    /// The value chosen does not make a record.
    Invalid(ValidationError),
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

    /// The state a put of `record` by ward 00082 makes.
    fn state_of(record: &Record) -> Versioned {
        let mut state = Versioned::default();
        let stamp = Stamp { hlc: Hlc { wall_ms: 1_795_305_600_000, logical: 2 }, writer: "00082".into() };
        state.apply(&flatten(record), &stamp, &VersionVector::default());
        state
    }

    #[test]
    fn a_correction_writes_the_fields_that_differ_having_seen_what_the_editor_read() {
        let (r, policies) = (record(), Policies::default());
        let key = r.key().unwrap();
        let before = state_of(&r);
        let mut renamed = r.clone();
        if let crate::model::Body::Citizen(c) = &mut renamed.body {
            c.full_name = "Trần Thị Bình".into();
        }
        let ask = |read: VersionVector| OfficeRequest {
            asked: Asked::Edit { record: Box::new(renamed.clone()), seen: read },
            ..edit(seen())
        };
        let w = ask(seen()).derive(&key, &before, &policies, None).unwrap();
        assert_eq!(
            w,
            [Derived {
                fields: vec!["full_name".into()],
                op: Op::Put(renamed.clone()),
                context: Some(seen())
            }]
        );
        let w = ask(VersionVector::default()).derive(&key, &before, &policies, None).unwrap();
        assert_eq!(w[0].context, None, "as it stands: having seen everything");
        assert_eq!(edit(seen()).derive(&key, &before, &policies, None), Ok(vec![]), "nothing differs");
        assert_eq!(
            edit(seen()).derive(&key, &Versioned::default(), &policies, None),
            Err(Underivable::NoRecord)
        );
    }

    #[test]
    fn a_settlement_writes_the_value_as_the_record_reads_it_back_and_keeps_a_deleted_record_deleted() {
        let code = WardCode::parse("00082").unwrap();
        let land = crate::generate::sample(&code, 300, 1)
            .into_iter()
            .find(|r| matches!(r.body, crate::model::Body::Land(_)))
            .unwrap();
        let (key, policies) = (land.key().unwrap(), Policies::default());
        let before = state_of(&land);
        let settle = |field: &str, value: &str| OfficeRequest {
            asked: Asked::Resolve { key: key.clone(), field: field.into(), value: value.into() },
            ..edit(seen())
        };
        let whole = settle("area_m2", "120").derive(&key, &before, &policies, None).unwrap();
        let float = settle("area_m2", "120.0").derive(&key, &before, &policies, None).unwrap();
        assert_eq!(whole, float, "the value as the record reads it back, however it was typed");
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].fields, ["area_m2"]);
        // A deleted record is deleted again, after the put.
        let mut deleted = before.clone();
        let stamp = Stamp { hlc: Hlc { wall_ms: 1_795_305_700_000, logical: 0 }, writer: "00082".into() };
        deleted.apply(&crate::model::deleted(), &stamp, &before.seen);
        let w = settle("area_m2", "120").derive(&key, &deleted, &policies, None).unwrap();
        assert_eq!(w.iter().map(|d| matches!(d.op, Op::Delete)).collect::<Vec<_>>(), [false, true]);
        assert!(matches!(
            settle(EXISTS, "false").derive(&key, &before, &policies, None).unwrap()[..],
            [Derived { op: Op::Delete, .. }]
        ));
        assert!(matches!(
            settle("area_m2", "\"many\"").derive(&key, &before, &policies, None),
            Err(Underivable::Invalid(_))
        ));
    }

    #[test]
    fn a_discard_writes_back_what_the_city_shows_of_the_fields_the_change_wrote() {
        let (r, policies) = (record(), Policies::default());
        let key = r.key().unwrap();
        let before = state_of(&r);
        let ward = WardCode::parse("00082").unwrap();
        let discard =
            OfficeRequest { asked: Asked::Discard { ward, seq: 9, reason: "x".into() }, ..edit(seen()) };
        let change = Change {
            seq: 9,
            written_at_ms: 0,
            key: key.clone(),
            stamp: Stamp { hlc: Hlc { wall_ms: 1_795_305_800_000, logical: 0 }, writer: "00082".into() },
            context: before.seen.clone(),
            fields: vec!["phone".into()],
            op: Op::Put(r.clone()),
        };
        let w = discard.derive(&key, &before, &policies, Some(&change)).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].fields.as_slice(), &w[0].op), (&["phone".to_string()][..], &Op::Put(r.clone())));
        assert!(w[0].context.as_ref().unwrap().has_seen(&change.stamp));
        assert_eq!(
            discard.derive(&key, &before, &policies, None),
            Ok(vec![]),
            "kept raw: nothing to write back"
        );
    }

    #[test]
    fn a_request_signed_beyond_the_skew_is_stale() {
        let r = OfficeRequest { signed_at_ms: 1_000_000, ..edit(seen()) };
        assert_eq!(r.fresh(1_030_000, 60_000), Ok(()));
        assert!(r.fresh(1_090_000, 60_000).unwrap_err().contains("90 s"));
        assert!(r.fresh(900_000, 60_000).is_err());
    }

    // Computed by a second implementation of the form documented above
    // (Python's struct and hashlib).
    const GOLDEN_EDIT: &str = "28dd3604355f8d6cca24899759b6c13433d51d6a0e8c8302fff36975a08762f0";
    const GOLDEN_RESOLVE: &str = "2579b5d75cd11f736487fac276aa652e2f8a17c24ae67e7579af6281213c441d";
    const GOLDEN_DISCARD: &str = "e45438a5c4f57c2371086347eb63ef4bb6283319ba48fe0edbaf9c7bb24ef626";
}
