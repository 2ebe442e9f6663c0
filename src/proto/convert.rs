//! Conversions between generated protobuf types and model types. Input from
//! the wire is validated here, with field paths in every violation.

use super::pb;
use crate::model::{
    Body, Business, Change, Citizen, Kind, LandParcel, Op, Record, RecordKey, ValidationError,
    WardCode,
};

impl From<Kind> for pb::Kind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Citizen => pb::Kind::Citizen,
            Kind::Business => pb::Kind::Business,
            Kind::Land => pb::Kind::Land,
        }
    }
}

/// The model kind of a wire kind; `field` names it in the error.
pub fn kind_from_pb(k: i32, field: &str) -> Result<Kind, ValidationError> {
    match pb::Kind::try_from(k) {
        Ok(pb::Kind::Citizen) => Ok(Kind::Citizen),
        Ok(pb::Kind::Business) => Ok(Kind::Business),
        Ok(pb::Kind::Land) => Ok(Kind::Land),
        _ => Err(ValidationError::single(
            field,
            format!("{k} is not a record kind: expected citizen (1), business (2) or land (3)"),
        )),
    }
}

impl From<&RecordKey> for pb::RecordKey {
    fn from(k: &RecordKey) -> Self {
        pb::RecordKey {
            kind: pb::Kind::from(k.kind()) as i32,
            id: k.id().to_string(),
        }
    }
}

/// Validates a wire key.
pub fn key_from_pb(k: Option<pb::RecordKey>) -> Result<RecordKey, ValidationError> {
    let k = k.ok_or_else(|| ValidationError::single("key", "required"))?;
    let kind = kind_from_pb(k.kind, "key.kind")?;
    RecordKey::new(kind, &k.id)
}

impl From<&Record> for pb::Record {
    fn from(r: &Record) -> Self {
        let body = match &r.body {
            Body::Citizen(c) => pb::record::Body::Citizen(pb::Citizen {
                personal_id: c.personal_id.clone(),
                full_name: c.full_name.clone(),
                date_of_birth: c.date_of_birth.clone(),
                permanent_address: c.permanent_address.clone(),
            }),
            Body::Business(b) => pb::record::Body::Business(pb::Business {
                enterprise_code: b.enterprise_code.clone(),
                name: b.name.clone(),
                owner_personal_id: b.owner_personal_id.clone(),
                address: b.address.clone(),
            }),
            Body::Land(l) => pb::record::Body::Land(pb::LandParcel {
                commune_code: l.commune_code.clone(),
                map_sheet: l.map_sheet.clone(),
                parcel_number: l.parcel_number.clone(),
                area_m2: l.area_m2,
                land_use_type: l.land_use_type.clone(),
                owner_ids: l.owner_ids.clone(),
            }),
        };
        pb::Record {
            ward: r.ward.to_string(),
            body: Some(body),
        }
    }
}

/// Converts and validates a wire record, returning it with its key.
pub fn record_from_pb(r: Option<pb::Record>) -> Result<(Record, RecordKey), ValidationError> {
    let r = r.ok_or_else(|| ValidationError::single("record", "required"))?;
    let record = record_envelope(r)?;
    let key = record.validate()?;
    Ok((record, key))
}

/// Converts a wire record checking only what the model type needs to hold
/// it (an owning ward and a body); the fields are not validated.
fn record_envelope(r: pb::Record) -> Result<Record, ValidationError> {
    let mut err = ValidationError::default();
    let ward = WardCode::parse(&r.ward)
        .map_err(|e| err.add("record.ward", e))
        .ok();
    let body = match r.body {
        Some(pb::record::Body::Citizen(c)) => Some(Body::Citizen(Citizen {
            personal_id: c.personal_id,
            full_name: c.full_name,
            date_of_birth: c.date_of_birth,
            permanent_address: c.permanent_address,
        })),
        Some(pb::record::Body::Business(b)) => Some(Body::Business(Business {
            enterprise_code: b.enterprise_code,
            name: b.name,
            owner_personal_id: b.owner_personal_id,
            address: b.address,
        })),
        Some(pb::record::Body::Land(l)) => Some(Body::Land(LandParcel {
            commune_code: l.commune_code,
            map_sheet: l.map_sheet,
            parcel_number: l.parcel_number,
            area_m2: l.area_m2,
            land_use_type: l.land_use_type,
            owner_ids: l.owner_ids,
        })),
        None => {
            err.add("record.body", "required: one of citizen, business, land");
            None
        }
    };
    match (ward, body) {
        (Some(ward), Some(body)) => Ok(Record { ward, body }),
        _ => Err(err),
    }
}

impl From<&Change> for pb::Change {
    fn from(c: &Change) -> Self {
        pb::Change {
            seq: c.seq,
            written_at_ms: c.written_at_ms,
            key: Some((&c.key).into()),
            op: Some(match &c.op {
                Op::Put(r) => pb::change::Op::Put(r.into()),
                Op::Delete => pb::change::Op::Delete(pb::Delete {}),
            }),
        }
    }
}

/// Converts a wire change. Only the key is validated here: the record of a
/// put is kept as sent, so that the city can refuse it visibly (and keep it)
/// rather than lose it.
pub fn change_from_pb(c: pb::Change) -> Result<Change, ValidationError> {
    let key = key_from_pb(c.key)?;
    let op = match c.op {
        Some(pb::change::Op::Delete(_)) => Op::Delete,
        Some(pb::change::Op::Put(r)) => Op::Put(record_envelope(r)?),
        None => {
            return Err(ValidationError::single(
                "change.op",
                "required: put or delete",
            ));
        }
    };
    Ok(Change {
        seq: c.seq,
        written_at_ms: c.written_at_ms,
        key,
        op,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let r = Record {
            ward: WardCode::parse("00145").unwrap(),
            body: Body::Business(Business {
                enterprise_code: "0101234567-001".into(),
                name: "Hộ kinh doanh Long Biên".into(),
                owner_personal_id: "001085012345".into(),
                address: "5 Ngọc Lâm".into(),
            }),
        };
        let (back, key) = record_from_pb(Some((&r).into())).unwrap();
        assert_eq!(back, r);
        assert_eq!(key.id(), "0101234567-001");
    }

    #[test]
    fn missing_parts_are_named() {
        let e = record_from_pb(Some(pb::Record {
            ward: "82".into(),
            body: None,
        }))
        .unwrap_err();
        let fields: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["record.ward", "record.body"]);
        assert_eq!(key_from_pb(None).unwrap_err().violations[0].field, "key");
        let e = kind_from_pb(0, "key.kind").unwrap_err();
        assert!(e.violations[0].reason.contains("not a record kind"));
    }
}
