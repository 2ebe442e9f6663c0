//! A person's identity (name, date of birth, sex) and the registered events
//! of their record change only by registration: once a citizen's record
//! holds a registered event, a write that changes who they are, or drops an
//! event, is refused unless it carries a registered correction of each
//! field it changes (Law on Civil Status, art. 7). An import with a reused
//! or mistyped personal id, or an edit made from a stale copy, would
//! otherwise turn one person into another, and erase their death.

use super::super::{Citizen, CivilEvent, EventKind, Sex, VersionVector, Versioned};

/// The fields that say who a person is: changed on a record with registered
/// events only by a registered correction.
pub const IDENTITY_FIELDS: [&str; 3] = ["full_name", "date_of_birth", "sex"];

/// `c`'s `field` (one of [`IDENTITY_FIELDS`]) as the text a correction
/// records; `None` for another field.
pub fn identity_text(c: &Citizen, field: &str) -> Option<String> {
    Some(match field {
        "full_name" => c.full_name.clone(),
        "date_of_birth" => c.date_of_birth.to_string(),
        "sex" => c.sex.to_string(),
        _ => return None,
    })
}

/// `c` with `field` set to `value`, or why `value` is not one: the text a
/// clerk types for a correction.
pub fn with_identity(c: &Citizen, field: &str, value: &str) -> Result<Citizen, String> {
    let mut c = c.clone();
    match field {
        "full_name" => c.full_name = crate::model::strict::nfc(value.trim()),
        "date_of_birth" => c.date_of_birth = crate::model::strict::date::parse(value)?,
        "sex" => c.sex = Sex::parse(value)?,
        other => return Err(not_corrected(other)),
    }
    Ok(c)
}

fn not_corrected(field: &str) -> String {
    format!("{field:?} is not corrected by registration: one of {}", IDENTITY_FIELDS.join(", "))
}

/// What is wrong with the form of event `e` as a correction, or as another
/// event that must not carry a correction's field and value: the field
/// named and why.
pub fn correction_form(e: &CivilEvent) -> Result<(), (&'static str, String)> {
    if e.kind != EventKind::Correction {
        if !e.field.is_empty() || !e.value.is_empty() {
            return Err(("field", format!("only a correction names a field and value, not a {}", e.kind)));
        }
        return Ok(());
    }
    if !IDENTITY_FIELDS.contains(&e.field.as_str()) {
        return Err(("field", not_corrected(&e.field)));
    }
    if e.value.trim().is_empty() {
        return Err(("value", "a correction gives the field's new value".into()));
    }
    if e.value.chars().count() > 100 {
        return Err(("value", "at most 100 characters".into()));
    }
    if e.reference.trim().is_empty() {
        return Err(("reference", "a correction names the decision it was registered on".into()));
    }
    Ok(())
}

/// What a write of a citizen's record is judged on.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// The person's id and name, for messages.
    pub who: (&'a str, &'a str),
    /// Whether any version of the record held has a registered event:
    /// then its identity changes only by a correction, whatever the
    /// writer says it had seen.
    pub registered: bool,
    /// The events of each version the write was built on: it keeps them.
    pub kept: &'a [Vec<CivilEvent>],
    /// `(field, text)` of every version held of the identity fields the
    /// write sets: a value none of them has is a change.
    pub identity: &'a [(&'a str, String)],
    /// The ward a correction the write appends must be registered by: the
    /// sender of a change the city judges, which may be a registration.
    /// `None` for a write that is not one (a put at the ward, the data
    /// office's edit): it appends no event.
    pub registrar: Option<&'a str>,
}

/// Why a write of citizen `new` setting `fields` rewrites the person
/// without registration, or `None`, judged on `held`. Once the record
/// holds a registered event: the write keeps every event of the versions
/// it was built on (when it writes `events`); each identity field it sets
/// to a value no version holds is the field and value of a correction it
/// appends; and each correction it appends writes its field, to its value,
/// registered by the writer. A record with no registered event is the
/// ward's to complete and correct.
pub fn rewrite_refusal(held: &Held, new: &Citizen, fields: &[String]) -> Option<String> {
    let (id, name) = held.who;
    if !held.registered {
        return None;
    }
    let writes = |f: &str| fields.iter().any(|x| x == f);
    // (A write that drops an event appends nothing; who it names is
    // judged first, as what most often tells a mistaken id.)
    let dropped = held.kept.iter().find(|old| writes("events") && !new.events.starts_with(old));
    let longest = held.kept.iter().map(Vec::len).max().unwrap_or(0);
    let appended: &[CivilEvent] = if writes("events") && dropped.is_none() {
        &new.events[longest.min(new.events.len())..]
    } else {
        &[]
    };
    if let (None, Some(e)) = (held.registrar, appended.first()) {
        return Some(format!(
            "this write adds a {} to the events of {id} ({name}): events are registered (wardsync register \
             {}), never written with a record",
            e.kind, e.kind
        ));
    }
    for e in appended.iter().filter(|e| e.kind == EventKind::Correction) {
        let now = identity_text(new, &e.field);
        if !writes(&e.field) || now.as_deref() != Some(e.value.as_str()) {
            return Some(format!(
                "the correction registers {} {:?}, but this write sets the record's {} to {:?}",
                e.field,
                e.value,
                e.field,
                now.filter(|_| writes(&e.field)).unwrap_or_else(|| "nothing".into())
            ));
        }
        if let Some(ward) = held.registrar.filter(|w| *w != e.registered_by) {
            return Some(format!(
                "the correction is registered by {:?}, but ward {ward} writes it: a ward registers its own corrections",
                e.registered_by
            ));
        }
    }
    for field in IDENTITY_FIELDS.iter().filter(|f| writes(f)) {
        let Some(now) = identity_text(new, field) else { continue };
        let mut olds = held.identity.iter().filter(|(f, _)| f == field).map(|(_, v)| v);
        let Some(old) = olds.clone().next() else { continue };
        let corrected =
            |e: &CivilEvent| e.kind == EventKind::Correction && e.field == *field && e.value == now;
        if !olds.any(|o| *o == now) && !appended.iter().any(corrected) {
            return Some(format!(
                "this write changes the {field} of {id} ({name}) from {old:?} to {now:?}, and the person has \
                 registered civil events: if this is the same person, register the correction \
                 (wardsync register correction --person {id} --field {field} --value '{now}' --reference \
                 DECISION); if it is another person, their personal id is wrong"
            ));
        }
    }
    dropped.map(|kept| {
        let gone = kept.iter().find(|e| !new.events.contains(e)).unwrap_or(&kept[0]);
        format!(
            "{id} ({name}) has registered civil events, and this write drops or changes the {} of {}: \
             registered events are kept as registered (a correction of the person is registered with \
             `wardsync register correction`; an event registered in error is for the data office)",
            gone.kind, gone.date
        )
    })
}

/// [`rewrite_refusal`] of a write of citizen `new` setting `fields`, as the
/// city judges a ward's change (`registrar` its sender) or the office's
/// edit: on every version of the record `state` holds for whether events
/// are registered and for the identity held, and on those `context` has
/// seen for the events it keeps.
pub fn rewrite_refusal_on(
    state: &Versioned,
    context: &VersionVector,
    fields: &[String],
    new: &Citizen,
    registrar: Option<&str>,
) -> Option<String> {
    let heads = |f: &str| state.fields.get(f).into_iter().flatten();
    // (Judged for every citizen change the city applies: a version with
    // no event is the text `[]` (`flatten`), and events are parsed only
    // for a change that writes them.)
    let registered = heads("events").any(|h| h.value != "[]");
    if !registered {
        return None;
    }
    let kept: Vec<Vec<CivilEvent>> = match fields.iter().any(|f| f == "events") {
        true => heads("events")
            .filter(|h| context.has_seen(&h.stamp))
            .filter_map(|h| serde_json::from_str(&h.value).ok())
            .collect(),
        false => Vec::new(),
    };
    let identity: Vec<(&str, String)> = IDENTITY_FIELDS
        .iter()
        .filter(|f| fields.iter().any(|x| x == *f))
        .flat_map(|f| heads(f).filter_map(|h| Some((*f, serde_json::from_str::<String>(&h.value).ok()?))))
        .collect();
    let name = identity.iter().find(|(f, _)| *f == "full_name").map_or(new.full_name.as_str(), |(_, n)| n);
    let held =
        Held { who: (&new.personal_id, name), registered, kept: &kept, identity: &identity, registrar };
    rewrite_refusal(&held, new, fields)
}

/// [`rewrite_refusal`] of a write of the whole record `new` over `old`, as
/// a ward judges a put on its own copy (`registrar` `None`: a put appends
/// no event) or, with `registrar`, as the city would a registration.
pub fn replacement_refusal(old: &Citizen, new: &Citizen, registrar: Option<&str>) -> Option<String> {
    let identity: Vec<(&str, String)> =
        IDENTITY_FIELDS.iter().filter_map(|f| Some((*f, identity_text(old, f)?))).collect();
    let kept = [old.events.clone()];
    let held = Held {
        who: (&old.personal_id, &old.full_name),
        registered: !old.events.is_empty(),
        kept: &kept,
        identity: &identity,
        registrar,
    };
    let fields: Vec<String> = IDENTITY_FIELDS.iter().chain(&["events"]).map(|f| f.to_string()).collect();
    rewrite_refusal(&held, new, &fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Body, Record, WardCode};

    fn citizen() -> Citizen {
        let ward = WardCode::parse("00082").unwrap();
        crate::generate::sample(&ward, 50, 1)
            .into_iter()
            .find_map(|r: Record| match r.body {
                Body::Citizen(c) if !c.events.is_empty() => Some(c),
                _ => None,
            })
            .unwrap()
    }

    fn correction(field: &str, value: &str) -> CivilEvent {
        CivilEvent {
            kind: EventKind::Correction,
            date: "2026-11-01".parse().unwrap(),
            registered_by: "00082".into(),
            spouse_id: String::new(),
            reference: "QĐ 12/2026".into(),
            field: field.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_person_with_registered_events_is_rewritten_only_by_a_correction() {
        let old = citizen();
        // Another person under the same id: refused, with what to do.
        let mut other = old.clone();
        other.full_name = "Huỳnh Xuân Quân".into();
        let why = replacement_refusal(&old, &other, Some("00082")).unwrap();
        assert!(why.contains("changes the full_name") && why.contains("register correction"), "{why}");
        // The same with the correction registered: accepted, as a
        // registration; never written with a put.
        other.events.push(correction("full_name", "Huỳnh Xuân Quân"));
        assert_eq!(replacement_refusal(&old, &other, Some("00082")), None);
        let why = replacement_refusal(&old, &other, None).unwrap();
        assert!(why.contains("events are registered (wardsync register correction)"), "{why}");
        // A correction of another value than the one written: refused.
        other.events.last_mut().unwrap().value = "Huỳnh Xuân Quang".into();
        assert!(
            replacement_refusal(&old, &other, Some("00082")).unwrap().contains("the correction registers")
        );
        // A registered event dropped: refused, whatever else.
        let mut dropped = old.clone();
        dropped.events.clear();
        assert!(replacement_refusal(&old, &dropped, None).unwrap().contains("drops or changes the birth"));
        // Other fields change freely; so does a person with no event yet.
        let mut moved = old.clone();
        moved.phone = "0987654321".into();
        assert_eq!(replacement_refusal(&old, &moved, None), None);
        let mut bare = old.clone();
        bare.events.clear();
        let mut renamed = bare.clone();
        renamed.full_name = "Huỳnh Xuân Quân".into();
        assert_eq!(replacement_refusal(&bare, &renamed, None), None);
    }

    #[test]
    fn a_correction_has_a_known_field_a_value_and_a_reference() {
        assert_eq!(correction_form(&correction("full_name", "An")), Ok(()));
        assert_eq!(correction_form(&correction("phone", "1")).unwrap_err().0, "field");
        assert_eq!(correction_form(&correction("sex", " ")).unwrap_err().0, "value");
        let mut e = correction("sex", "male");
        e.reference.clear();
        assert_eq!(correction_form(&e).unwrap_err().0, "reference");
        e.kind = EventKind::Birth;
        assert_eq!(correction_form(&e).unwrap_err().0, "field");
        let c = citizen();
        assert!(with_identity(&c, "date_of_birth", "31/12/1990").is_err());
        assert_eq!(with_identity(&c, "sex", "female").unwrap().sex, Sex::Female);
    }
}
