//! Record kinds, keys and ward codes, with their structural validation.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::ValidationError;
use super::ids::{check_enterprise_code, check_personal_id};

/// The three kinds of record a ward keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A resident, keyed by the 12-digit personal identification number.
    Citizen,
    /// An enterprise, branch or household business, keyed by its code.
    Business,
    /// A land parcel, keyed by commune code, map sheet and parcel number.
    Land,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 3] = [Kind::Citizen, Kind::Business, Kind::Land];

    /// The lower-case name used on the command line and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Citizen => "citizen",
            Kind::Business => "business",
            Kind::Land => "land",
        }
    }

    /// One byte that identifies the kind in storage keys.
    pub fn tag(self) -> u8 {
        match self {
            Kind::Citizen => b'c',
            Kind::Business => b'b',
            Kind::Land => b'l',
        }
    }

    /// The inverse of [`Kind::tag`].
    pub fn from_tag(tag: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.tag() == tag)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "citizen" => Ok(Kind::Citizen),
            "business" => Ok(Kind::Business),
            "land" => Ok(Kind::Land),
            other => Err(format!("unknown kind {other:?}: expected citizen, business or land")),
        }
    }
}

/// A 5-digit commune code (a ward, commune or special zone since July 2025).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WardCode(String);

impl WardCode {
    /// Parses a commune code: exactly five ASCII digits.
    pub fn parse(s: &str) -> Result<WardCode, String> {
        if s.len() == 5 && all_digits(s) {
            Ok(WardCode(s.to_string()))
        } else {
            Err(format!("{s:?} is not a commune code: expected 5 digits"))
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WardCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one record: its kind and its key in canonical text form.
///
/// Invariant: a `RecordKey` built through [`RecordKey::new`] is well formed
/// for its kind, so storage and replication never see a malformed key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    kind: Kind,
    id: String,
}

impl RecordKey {
    /// Validates `id` for `kind` and builds the key.
    ///
    /// - citizen: a personal identification number (12 digits, province prefix);
    /// - business: an enterprise code (10 digits with check digit), or
    ///   `NNNNNNNNNN-NNN` for a branch (suffix 001-999);
    /// - land: `COMMUNE:SHEET:PARCEL`, commune 5 digits, sheet and parcel
    ///   1-16 characters of letters, digits, `.`, `/` or `-`.
    pub fn new(kind: Kind, id: &str) -> Result<RecordKey, ValidationError> {
        check_id(kind, id).map_err(|reason| ValidationError::single("key.id", reason))?;
        Ok(RecordKey { kind, id: id.to_string() })
    }

    /// The kind of record.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The key in canonical text form.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The land key built from its parts (not validated).
    pub fn land_id(commune: &str, sheet: &str, parcel: &str) -> String {
        format!("{commune}:{sheet}:{parcel}")
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.id)
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks the text of a cadastral map sheet or parcel number.
pub(crate) fn check_cadastral_part(what: &str, s: &str) -> Result<(), String> {
    let ok = (1..=16).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-'));
    if ok { Ok(()) } else { Err(format!("{what} {s:?} must be 1-16 letters, digits, '.', '/' or '-'")) }
}

fn check_id(kind: Kind, id: &str) -> Result<(), String> {
    match kind {
        Kind::Citizen => check_personal_id(id),
        Kind::Business => check_enterprise_code(id),
        Kind::Land => {
            let parts: Vec<&str> = id.split(':').collect();
            let [commune, sheet, parcel] = parts[..] else {
                return Err(format!("{id:?} is not a land parcel key: expected COMMUNE:SHEET:PARCEL"));
            };
            WardCode::parse(commune)
                .and_then(|_| check_cadastral_part("map sheet", sheet))
                .and_then(|_| check_cadastral_part("parcel number", parcel))
                .map_err(|e| format!("land parcel key {id:?}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_table() {
        let cases: &[(Kind, &str, bool)] = &[
            (Kind::Citizen, "001085012345", true),
            (Kind::Citizen, "079301000123", true),
            (Kind::Citizen, "003085012345", false),
            (Kind::Citizen, "00108501234", false),
            (Kind::Citizen, "0010850123456", false),
            (Kind::Citizen, "00108501234a", false),
            (Kind::Citizen, "", false),
            (Kind::Business, "0100109106", true),
            (Kind::Business, "0100109106-001", true),
            (Kind::Business, "0100109106-999", true),
            (Kind::Business, "0100109105", false),
            (Kind::Business, "0100109106-000", false),
            (Kind::Business, "0100109106-01", false),
            (Kind::Business, "010123456", false),
            (Kind::Business, "01012345678", false),
            (Kind::Business, "0100109106-", false),
            (Kind::Land, "00082:12:345", true),
            (Kind::Land, "00082:12a:45/2", true),
            (Kind::Land, "00082:12", false),
            (Kind::Land, "0082:12:345", false),
            (Kind::Land, "00082::345", false),
            (Kind::Land, "00082:12:3 45", false),
            (Kind::Land, "00082:12:345:1", false),
        ];
        for (kind, id, ok) in cases {
            let got = RecordKey::new(*kind, id);
            assert_eq!(got.is_ok(), *ok, "{kind} {id:?}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.violations[0].field, "key.id");
                assert!(e.violations[0].reason.contains(id), "{e}");
            }
        }
    }

    #[test]
    fn ward_codes() {
        assert!(WardCode::parse("00082").is_ok());
        assert!(WardCode::parse("0082").is_err());
        assert!(WardCode::parse("000820").is_err());
        assert!(WardCode::parse("0008a").is_err());
    }

    #[test]
    fn kind_tags_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_tag(k.tag()), Some(k));
            assert_eq!(k.as_str().parse::<Kind>(), Ok(k));
        }
        assert!("house".parse::<Kind>().is_err());
    }
}
