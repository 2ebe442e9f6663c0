//! Conversions between generated protobuf types and model types. Input from
//! the wire is checked here, with field paths in every violation: format
//! problems (unparseable dates, unset enumerations, missing parts) first;
//! once the format is right, every rule of the model is checked together.

use chrono::NaiveDate;

use super::pb;
use crate::model::{
    Body, Business, BusinessForm, BusinessStatus, Change, Citizen, CivilEvent, Context, EventKind,
    FieldWrite, Hlc, Kind, LandParcel, LandRegistration, MaritalStatus, Op, Record, RecordKey,
    RegistrationKind, Relationship, Residence, Sex, Stamp, ValidationError, VersionVector, Versioned,
    WardCode,
};

/// Maps a model enumeration to its wire enumeration and back; the wire
/// variants carry the same names.
macro_rules! enum_map {
    ($model:ident, $fn:ident: $($v:ident),+) => {
        impl From<$model> for pb::$model {
            fn from(v: $model) -> Self {
                match v { $($model::$v => pb::$model::$v),+ }
            }
        }
        fn $fn(v: i32) -> Option<$model> {
            match pb::$model::try_from(v).ok()? {
                $(pb::$model::$v => Some($model::$v),)+
                _ => None,
            }
        }
    };
}

enum_map!(Kind, kind_of: Citizen, Business, Land);
enum_map!(Sex, sex_of: Male, Female);
enum_map!(MaritalStatus, marital_of: Single, Married, Divorced, Widowed);
enum_map!(Relationship, relationship_of: Head, Spouse, Child, Parent, Grandchild, Sibling, Other);
enum_map!(EventKind, event_of: Birth, Marriage, Divorce, Death, Correction);
enum_map!(BusinessForm, form_of: Enterprise, Branch, Household);
enum_map!(BusinessStatus, status_of: Active, Suspended, Dissolved);
enum_map!(RegistrationKind, registration_of: Mortgage, MortgageRelease, Transfer, Inheritance, Gift);

/// The model kind of a wire kind; `field` names it in the error.
pub fn kind_from_pb(k: i32, field: &str) -> Result<Kind, ValidationError> {
    kind_of(k).ok_or_else(|| {
        ValidationError::single(
            field,
            format!("{k} is not a record kind: expected citizen (1), business (2) or land (3)"),
        )
    })
}

impl From<&RecordKey> for pb::RecordKey {
    fn from(k: &RecordKey) -> Self {
        pb::RecordKey { kind: pb::Kind::from(k.kind()) as i32, id: k.id().to_string() }
    }
}

/// Validates a wire key.
pub fn key_from_pb(k: Option<pb::RecordKey>) -> Result<RecordKey, ValidationError> {
    let k = k.ok_or_else(|| ValidationError::single("key", "required"))?;
    let kind = kind_from_pb(k.kind, "key.kind")?;
    RecordKey::new(kind, &k.id)
}

fn date_pb(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn residence_pb(r: &Residence) -> pb::Residence {
    pb::Residence { address: r.address.clone(), commune_code: r.commune_code.clone() }
}

impl From<&Record> for pb::Record {
    fn from(r: &Record) -> Self {
        let body = match &r.body {
            Body::Citizen(c) => pb::record::Body::Citizen(pb::Citizen {
                personal_id: c.personal_id.clone(),
                full_name: c.full_name.clone(),
                date_of_birth: date_pb(c.date_of_birth),
                sex: pb::Sex::from(c.sex) as i32,
                ethnicity: c.ethnicity.clone(),
                nationality: c.nationality.clone(),
                household_id: c.household_id.clone(),
                relationship_to_head: pb::Relationship::from(c.relationship_to_head) as i32,
                permanent_residence: Some(residence_pb(&c.permanent_residence)),
                temporary_residence: c.temporary_residence.as_ref().map(residence_pb),
                marital_status: pb::MaritalStatus::from(c.marital_status) as i32,
                phone: c.phone.clone(),
                events: c
                    .events
                    .iter()
                    .map(|e| pb::CivilEvent {
                        kind: pb::EventKind::from(e.kind) as i32,
                        date: date_pb(e.date),
                        registered_by: e.registered_by.clone(),
                        spouse_id: e.spouse_id.clone(),
                        reference: e.reference.clone(),
                        field: e.field.clone(),
                        value: e.value.clone(),
                    })
                    .collect(),
            }),
            Body::Business(b) => pb::record::Body::Business(pb::Business {
                enterprise_code: b.enterprise_code.clone(),
                form: pb::BusinessForm::from(b.form) as i32,
                name: b.name.clone(),
                owner_personal_id: b.owner_personal_id.clone(),
                address: b.address.clone(),
                sector_code: b.sector_code.clone(),
                status: pb::BusinessStatus::from(b.status) as i32,
                registration_date: date_pb(b.registration_date),
            }),
            Body::Land(l) => pb::record::Body::Land(pb::LandParcel {
                commune_code: l.commune_code.clone(),
                map_sheet: l.map_sheet.clone(),
                parcel_number: l.parcel_number.clone(),
                aliases: l.aliases.clone(),
                area_m2: l.area_m2,
                land_use_type: l.land_use_type.clone(),
                owners: l.owners.clone(),
                certificate_serial: l.certificate_serial.clone(),
                address: l.address.clone(),
                registrations: l
                    .registrations
                    .iter()
                    .map(|g| pb::LandRegistration {
                        kind: pb::RegistrationKind::from(g.kind) as i32,
                        date: date_pb(g.date),
                        party: g.party.clone(),
                        note: g.note.clone(),
                    })
                    .collect(),
            }),
        };
        pb::Record { ward: r.ward.to_string(), body: Some(body) }
    }
}

/// Collects format violations while converting.
#[derive(Default)]
struct Conv {
    err: ValidationError,
}

impl Conv {
    fn date(&mut self, field: impl Into<String>, s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|_| {
            self.err.add(field, format!("{s:?} is not a date: expected YYYY-MM-DD"));
            NaiveDate::MIN
        })
    }

    fn enumeration<T: Copy>(
        &mut self,
        field: impl Into<String>,
        v: i32,
        of: fn(i32) -> Option<T>,
        fallback: T,
    ) -> T {
        of(v).unwrap_or_else(|| {
            self.err.add(
                field,
                if v == 0 { "required".to_string() } else { format!("{v} is not an accepted value") },
            );
            fallback
        })
    }

    fn residence(&mut self, field: &str, r: Option<pb::Residence>) -> Residence {
        match r {
            Some(r) => Residence { address: r.address, commune_code: r.commune_code },
            None => {
                self.err.add(field, "required");
                Residence::default()
            }
        }
    }

    fn citizen(&mut self, c: pb::Citizen) -> Citizen {
        let p = "record.citizen";
        Citizen {
            date_of_birth: self.date(format!("{p}.date_of_birth"), &c.date_of_birth),
            sex: self.enumeration(format!("{p}.sex"), c.sex, sex_of, Sex::Male),
            relationship_to_head: self.enumeration(
                format!("{p}.relationship_to_head"),
                c.relationship_to_head,
                relationship_of,
                Relationship::Other,
            ),
            permanent_residence: self.residence(&format!("{p}.permanent_residence"), c.permanent_residence),
            temporary_residence: c
                .temporary_residence
                .map(|r| Residence { address: r.address, commune_code: r.commune_code }),
            marital_status: self.enumeration(
                format!("{p}.marital_status"),
                c.marital_status,
                marital_of,
                MaritalStatus::Single,
            ),
            events: c
                .events
                .into_iter()
                .enumerate()
                .map(|(i, e)| CivilEvent {
                    kind: self.enumeration(
                        format!("{p}.events[{i}].kind"),
                        e.kind,
                        event_of,
                        EventKind::Birth,
                    ),
                    date: self.date(format!("{p}.events[{i}].date"), &e.date),
                    registered_by: e.registered_by,
                    spouse_id: e.spouse_id,
                    reference: e.reference,
                    field: e.field,
                    value: e.value,
                })
                .collect(),
            personal_id: c.personal_id,
            full_name: c.full_name,
            ethnicity: c.ethnicity,
            nationality: c.nationality,
            household_id: c.household_id,
            phone: c.phone,
        }
    }

    fn business(&mut self, b: pb::Business) -> Business {
        let p = "record.business";
        Business {
            form: self.enumeration(format!("{p}.form"), b.form, form_of, BusinessForm::Enterprise),
            status: self.enumeration(format!("{p}.status"), b.status, status_of, BusinessStatus::Active),
            registration_date: self.date(format!("{p}.registration_date"), &b.registration_date),
            enterprise_code: b.enterprise_code,
            name: b.name,
            owner_personal_id: b.owner_personal_id,
            address: b.address,
            sector_code: b.sector_code,
        }
    }

    fn land(&mut self, l: pb::LandParcel) -> LandParcel {
        let p = "record.land";
        LandParcel {
            registrations: l
                .registrations
                .into_iter()
                .enumerate()
                .map(|(i, g)| LandRegistration {
                    kind: self.enumeration(
                        format!("{p}.registrations[{i}].kind"),
                        g.kind,
                        registration_of,
                        RegistrationKind::Mortgage,
                    ),
                    date: self.date(format!("{p}.registrations[{i}].date"), &g.date),
                    party: g.party,
                    note: g.note,
                })
                .collect(),
            commune_code: l.commune_code,
            map_sheet: l.map_sheet,
            parcel_number: l.parcel_number,
            aliases: l.aliases,
            area_m2: l.area_m2,
            land_use_type: l.land_use_type,
            owners: l.owners,
            certificate_serial: l.certificate_serial,
            address: l.address,
        }
    }
}

/// Converts a wire record, checking only its format (see the module docs).
pub fn record_from_pb(r: Option<pb::Record>) -> Result<Record, ValidationError> {
    let r = r.ok_or_else(|| ValidationError::single("record", "required"))?;
    let mut conv = Conv::default();
    let ward = WardCode::parse(&r.ward).map_err(|e| conv.err.add("record.ward", e)).ok();
    let body = match r.body {
        Some(pb::record::Body::Citizen(c)) => Some(Body::Citizen(conv.citizen(c))),
        Some(pb::record::Body::Business(b)) => Some(Body::Business(conv.business(b))),
        Some(pb::record::Body::Land(l)) => Some(Body::Land(conv.land(l))),
        None => {
            conv.err.add("record.body", "required: one of citizen, business, land");
            None
        }
    };
    conv.err.into_result()?;
    match (ward, body) {
        (Some(ward), Some(body)) => Ok(Record { ward, body }),
        _ => unreachable!("a missing part is a recorded violation"),
    }
}

/// Converts and fully validates a wire record, returning it with its key.
pub fn valid_record_from_pb(
    r: Option<pb::Record>,
    ctx: &Context,
) -> Result<(Record, RecordKey), ValidationError> {
    // Every entry point stores text in NFC: the same name typed in NFC or
    // NFD is one value, and the "unchanged" check sees it so.
    let record = record_from_pb(r)?.normalized();
    let key = record.validate(ctx)?;
    Ok((record, key))
}

impl From<Hlc> for pb::Hlc {
    fn from(h: Hlc) -> Self {
        pb::Hlc { wall_ms: h.wall_ms, logical: h.logical }
    }
}

fn hlc_of(h: Option<pb::Hlc>) -> Hlc {
    h.map_or(Hlc::default(), |h| Hlc { wall_ms: h.wall_ms, logical: h.logical })
}

/// A version vector on the wire.
pub fn seen_pb(v: &VersionVector) -> Vec<pb::Seen> {
    v.0.iter().map(|(w, h)| pb::Seen { writer: w.clone(), hlc: Some((*h).into()) }).collect()
}

/// A version vector from the wire.
pub fn seen_from_pb(v: Vec<pb::Seen>) -> VersionVector {
    VersionVector(v.into_iter().map(|s| (s.writer, hlc_of(s.hlc))).collect())
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
            hlc: Some(c.stamp.hlc.into()),
            writer: c.stamp.writer.clone(),
            context: seen_pb(&c.context),
            fields: c.fields.clone(),
            signature: Vec::new(),
            authorship: Vec::new(),
        }
    }
}

/// Converts a wire change, checking its format only: the record of a put
/// is validated where the change is applied, so that the city can keep an
/// invalid one in quarantine rather than lose it.
pub fn change_from_pb(c: pb::Change) -> Result<Change, ValidationError> {
    let key = key_from_pb(c.key)?;
    let op = match c.op {
        Some(pb::change::Op::Delete(_)) => Op::Delete,
        Some(pb::change::Op::Put(r)) => Op::Put(record_from_pb(Some(r))?),
        None => return Err(ValidationError::single("change.op", "required: put or delete")),
    };
    if c.writer.is_empty() {
        return Err(ValidationError::single("change.writer", "required"));
    }
    if c.context.len() > crate::model::MAX_CONTEXT {
        let why = format!("names {} writers; the limit is {}", c.context.len(), crate::model::MAX_CONTEXT);
        return Err(ValidationError::single("change.context", why));
    }
    let change = Change {
        seq: c.seq,
        written_at_ms: c.written_at_ms,
        key,
        stamp: Stamp { hlc: hlc_of(c.hlc), writer: c.writer },
        context: seen_from_pb(c.context),
        fields: c.fields,
        op,
    };
    if !crate::mutation::active(crate::mutation::Mutation::SkipFormCheck) {
        change.check_form()?;
    }
    Ok(change)
}

impl From<&Versioned> for pb::RecordState {
    fn from(v: &Versioned) -> Self {
        let writes = v
            .fields
            .iter()
            .flat_map(|(f, heads)| {
                heads.iter().map(move |w| pb::FieldWrite {
                    field: f.clone(),
                    value: w.value.clone(),
                    hlc: Some(w.stamp.hlc.into()),
                    writer: w.stamp.writer.clone(),
                    context: seen_pb(&w.context),
                })
            })
            .collect();
        pb::RecordState { writes, seen: seen_pb(&v.seen) }
    }
}

/// A record's replicated state from the wire.
pub fn versioned_from_pb(s: pb::RecordState) -> Versioned {
    let mut v = Versioned::default();
    for w in s.writes {
        let write = FieldWrite {
            value: w.value,
            stamp: Stamp { hlc: hlc_of(w.hlc), writer: w.writer },
            context: seen_from_pb(w.context),
        };
        v.merge_write(&w.field, write);
    }
    v.seen.merge(&seen_from_pb(s.seen));
    v
}

/// A finished copy of a store, on the wire.
pub fn backup_to_pb(path: &std::path::Path, m: &crate::store::backup::Manifest) -> pb::BackupReply {
    pb::BackupReply {
        path: path.display().to_string(),
        keys: m.keys,
        bytes: m.bytes,
        paused_ms: m.paused_ms,
        taken_at_ms: m.taken_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Plan, WardGen};

    #[test]
    fn records_round_trip_through_the_wire() {
        let today: NaiveDate = "2026-11-22".parse().unwrap();
        let ward = WardCode::parse("00145").unwrap();
        let plan = Plan { citizens: 200, businesses: 40, parcels: 40 };
        for r in WardGen::new(&ward, 3, today).records(plan) {
            let back = record_from_pb(Some((&r).into())).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn format_problems_are_named() {
        let e = record_from_pb(Some(pb::Record { ward: "82".into(), body: None })).unwrap_err();
        let fields: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["record.ward", "record.body"]);
        let e = record_from_pb(Some(pb::Record {
            ward: "00082".into(),
            body: Some(pb::record::Body::Citizen(pb::Citizen {
                date_of_birth: "2/3/1985".into(),
                ..Default::default()
            })),
        }))
        .unwrap_err();
        let fields: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "record.citizen.date_of_birth",
                "record.citizen.sex",
                "record.citizen.relationship_to_head",
                "record.citizen.permanent_residence",
                "record.citizen.marital_status"
            ]
        );
        assert!(e.violations[0].reason.contains("YYYY-MM-DD"));
        assert_eq!(key_from_pb(None).unwrap_err().violations[0].field, "key");
        assert!(kind_from_pb(0, "key.kind").unwrap_err().violations[0].reason.contains("not a record kind"));
    }
}
