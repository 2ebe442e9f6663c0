//! The text and stored forms of a civil event. In JSON an event other
//! than a correction has the five fields events always had; stored
//! (postcard, which has no field names) every event has them, so stores
//! written before corrections existed read the same.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{CivilEvent, EventKind};

/// Separates a correction's field and value from its reference in the
/// stored form of an event: a control character, which validated text
/// never holds.
const PACKED: char = '\u{1f}';

/// An event as JSON: `field` and `value` only for a correction.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventText {
    kind: EventKind,
    #[serde(with = "super::strict::date")]
    date: NaiveDate,
    registered_by: String,
    #[serde(default)]
    spouse_id: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: String,
}

/// An event as stored (postcard, which has no field names): the five
/// fields events had before corrections existed, so that stores written
/// before read the same; a correction's field and value follow its
/// reference, each after [`PACKED`].
#[derive(Deserialize)]
struct EventStored {
    kind: EventKind,
    #[serde(with = "super::strict::date")]
    date: NaiveDate,
    registered_by: String,
    spouse_id: String,
    reference: String,
}

impl<'de> Deserialize<'de> for CivilEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let e = EventText::deserialize(d)?;
            let (kind, date, registered_by, spouse_id) = (e.kind, e.date, e.registered_by, e.spouse_id);
            return Ok(CivilEvent {
                kind,
                date,
                registered_by,
                spouse_id,
                reference: e.reference,
                field: e.field,
                value: e.value,
            });
        }
        let e = EventStored::deserialize(d)?;
        let mut parts = e.reference.splitn(3, PACKED);
        let reference = parts.next().unwrap_or_default().to_string();
        let field = parts.next().unwrap_or_default().to_string();
        let value = parts.next().unwrap_or_default().to_string();
        Ok(CivilEvent {
            kind: e.kind,
            date: e.date,
            registered_by: e.registered_by,
            spouse_id: e.spouse_id,
            reference,
            field,
            value,
        })
    }
}

impl Serialize for CivilEvent {
    /// In JSON (records, CSV cells, the city's per-field states) an event
    /// other than a correction has no `field` and `value`, as before
    /// corrections existed: its text, and so what the city compares and
    /// hashes, is unchanged. Stored (postcard, which has no field names),
    /// every event has the five fields it always had ([`EventStored`]).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Date<'a>(&'a NaiveDate);
        impl Serialize for Date<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                super::strict::date::serialize(self.0, s)
            }
        }
        let plain = self.field.is_empty() && self.value.is_empty();
        let text = s.is_human_readable();
        let mut st = s.serialize_struct("CivilEvent", if text && !plain { 7 } else { 5 })?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("date", &Date(&self.date))?;
        st.serialize_field("registered_by", &self.registered_by)?;
        st.serialize_field("spouse_id", &self.spouse_id)?;
        if text || plain {
            st.serialize_field("reference", &self.reference)?;
        } else {
            st.serialize_field(
                "reference",
                &format!("{}{PACKED}{}{PACKED}{}", self.reference, self.field, self.value),
            )?;
        }
        if text && !plain {
            st.serialize_field("field", &self.field)?;
            st.serialize_field("value", &self.value)?;
        }
        st.end()
    }
}
