//! The three record kinds and the record envelope that names its owning ward.

use serde::{Deserialize, Serialize};

use super::key::{check_cadastral_part, check_personal_id};
use super::{Kind, RecordKey, ValidationError, WardCode};

/// A resident of a ward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Citizen {
    /// 12-digit personal identification number: the key.
    pub personal_id: String,
    /// Full name with diacritics, e.g. "Nguyễn Văn An".
    pub full_name: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Permanent residence address.
    pub permanent_address: String,
}

/// An enterprise, a branch or a household business.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Business {
    /// Enterprise code (10 digits, or `NNNNNNNNNN-NNN` for a branch): the key.
    pub enterprise_code: String,
    /// Registered name.
    pub name: String,
    /// Personal id of the owner or legal representative; may be empty.
    pub owner_personal_id: String,
    /// Head-office address.
    pub address: String,
}

/// A land parcel as kept by the cadastral office.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LandParcel {
    /// Commune code the parcel was registered under.
    pub commune_code: String,
    /// Map sheet number (text in cadastral systems).
    pub map_sheet: String,
    /// Parcel number on the sheet (text).
    pub parcel_number: String,
    /// Area in square metres.
    pub area_m2: f64,
    /// Land-use type code, e.g. ODT, ONT, LUC, CLN.
    pub land_use_type: String,
    /// Personal ids or enterprise codes of the owners.
    pub owner_ids: Vec<String>,
}

/// The body of a record: one of the three kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// A citizen record.
    Citizen(Citizen),
    /// A business record.
    Business(Business),
    /// A land parcel record.
    Land(LandParcel),
}

/// A record with the ward that owns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The owning ward.
    pub ward: WardCode,
    /// What the record says.
    pub body: Body,
}

impl Record {
    /// The kind of the record's body.
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Citizen(_) => Kind::Citizen,
            Body::Business(_) => Kind::Business,
            Body::Land(_) => Kind::Land,
        }
    }

    /// The key text the body carries (not validated).
    pub fn key_id(&self) -> String {
        match &self.body {
            Body::Citizen(c) => c.personal_id.clone(),
            Body::Business(b) => b.enterprise_code.clone(),
            Body::Land(l) => RecordKey::land_id(&l.commune_code, &l.map_sheet, &l.parcel_number),
        }
    }

    /// Validates the record and returns its key. Every violation is reported,
    /// each with its field path.
    pub fn validate(&self) -> Result<RecordKey, ValidationError> {
        let mut err = ValidationError::default();
        match &self.body {
            Body::Citizen(c) => {
                if let Err(r) = check_personal_id(&c.personal_id) {
                    err.add("record.citizen.personal_id", r);
                }
                if c.full_name.trim().is_empty() {
                    err.add("record.citizen.full_name", "required");
                }
            }
            Body::Business(b) => {
                if let Err(e) = RecordKey::new(Kind::Business, &b.enterprise_code) {
                    err.add(
                        "record.business.enterprise_code",
                        e.violations[0].reason.clone(),
                    );
                }
                if b.name.trim().is_empty() {
                    err.add("record.business.name", "required");
                }
                if !b.owner_personal_id.is_empty() {
                    if let Err(r) = check_personal_id(&b.owner_personal_id) {
                        err.add("record.business.owner_personal_id", r);
                    }
                }
            }
            Body::Land(l) => {
                if let Err(r) = WardCode::parse(&l.commune_code) {
                    err.add("record.land.commune_code", r);
                }
                if let Err(r) = check_cadastral_part("map sheet", &l.map_sheet) {
                    err.add("record.land.map_sheet", r);
                }
                if let Err(r) = check_cadastral_part("parcel number", &l.parcel_number) {
                    err.add("record.land.parcel_number", r);
                }
                if !(l.area_m2.is_finite() && l.area_m2 > 0.0) {
                    err.add(
                        "record.land.area_m2",
                        format!("{} is not a positive area", l.area_m2),
                    );
                }
            }
        }
        err.into_result()?;
        RecordKey::new(self.kind(), &self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ward() -> WardCode {
        WardCode::parse("00082").unwrap()
    }

    #[test]
    fn valid_records_yield_their_key() {
        let r = Record {
            ward: ward(),
            body: Body::Land(LandParcel {
                commune_code: "00082".into(),
                map_sheet: "12".into(),
                parcel_number: "345".into(),
                area_m2: 80.5,
                land_use_type: "ODT".into(),
                owner_ids: vec![],
            }),
        };
        let key = r.validate().unwrap();
        assert_eq!(key.kind(), Kind::Land);
        assert_eq!(key.id(), "00082:12:345");
    }

    #[test]
    fn every_violation_is_reported() {
        let r = Record {
            ward: ward(),
            body: Body::Business(Business {
                enterprise_code: "12345".into(),
                name: " ".into(),
                owner_personal_id: "12".into(),
                address: String::new(),
            }),
        };
        let e = r.validate().unwrap_err();
        let fields: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "record.business.enterprise_code",
                "record.business.name",
                "record.business.owner_personal_id"
            ]
        );
    }

    #[test]
    fn land_area_must_be_positive() {
        let r = Record {
            ward: ward(),
            body: Body::Land(LandParcel {
                commune_code: "00082".into(),
                map_sheet: "1".into(),
                parcel_number: "2".into(),
                area_m2: 0.0,
                ..Default::default()
            }),
        };
        let e = r.validate().unwrap_err();
        assert_eq!(e.violations[0].field, "record.land.area_m2");
    }
}
