//! Civil-status registration as a registrar performs it (Law on Civil
//! Status): a marriage, a divorce (as recorded from a court decision) or a
//! death, or a correction of a person's identity; what must hold before it is accepted, and what it changes in the
//! records of the persons it concerns. Pure: the caller finds the records.

use chrono::{Datelike, NaiveDate};

use super::{Citizen, CivilEvent, EventKind, MaritalStatus, Sex, WardCode};

mod correction;
pub use correction::{
    Held, IDENTITY_FIELDS, correction_form, identity_text, replacement_refusal, rewrite_refusal,
    rewrite_refusal_on, with_identity,
};

/// The fields a registration changes in a citizen's record; a ward may
/// change them in another ward's citizen only through a registration.
pub const REGISTRATION_FIELDS: [&str; 2] = ["events", "marital_status"];

/// Minimum age at marriage: men 20, women 18 (Law on Marriage and Family, art. 8).
pub fn marriage_age(sex: Sex) -> u32 {
    match sex {
        Sex::Male => 20,
        Sex::Female => 18,
    }
}

/// A civil-status registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A marriage of two persons.
    Marriage {
        /// Their personal ids.
        spouses: [String; 2],
        /// The date of registration.
        date: NaiveDate,
    },
    /// A divorce of two spouses, as decided by a court.
    Divorce {
        /// Their personal ids.
        spouses: [String; 2],
        /// The date the decision took effect.
        date: NaiveDate,
    },
    /// A death.
    Death {
        /// The deceased's personal id.
        person: String,
        /// The date of death.
        date: NaiveDate,
    },
    /// A correction of a person's name, date of birth or sex.
    Correction {
        /// The person's personal id.
        person: String,
        /// The field corrected, one of [`IDENTITY_FIELDS`].
        field: String,
        /// Its value from then on, as text.
        value: String,
        /// The date of registration.
        date: NaiveDate,
    },
}

/// The age in whole years on `at` of someone born on `born`.
fn age(born: NaiveDate, at: NaiveDate) -> i32 {
    let mut years = at.year() - born.year();
    if (at.month(), at.day()) < (born.month(), born.day()) {
        years -= 1;
    }
    years
}

/// The spouse `c`'s events say `c` is married to now, if any: the last
/// marriage not ended since by a divorce from that spouse or that spouse's
/// death (a death event naming the spouse, registered on the survivor's
/// record with the death itself).
pub fn current_spouse(c: &Citizen) -> Option<&str> {
    let mut spouse = None;
    for e in &c.events {
        match e.kind {
            EventKind::Marriage => spouse = Some(e.spouse_id.as_str()),
            EventKind::Divorce | EventKind::Death if spouse == Some(e.spouse_id.as_str()) => spouse = None,
            _ => {}
        }
    }
    spouse
}

/// True for the event of `c`'s own death (a death event naming a spouse
/// records the spouse's death on the survivor's record).
fn own_death(e: &CivilEvent) -> bool {
    e.kind == EventKind::Death && e.spouse_id.is_empty()
}

/// True if `c`'s record registers their death.
pub fn is_dead(c: &Citizen) -> bool {
    c.events.iter().any(own_death)
}

/// The most registrations one ward may add to one citizen of another ward
/// in a day (more is left to the data office): a registrar's rules alone
/// would let a ward marry and divorce someone fifty times in an hour.
pub const REGISTRATIONS_PER_DAY: usize = 4;

/// One day, in ms.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Registration {
    /// What is registered.
    pub fn kind(&self) -> EventKind {
        match self {
            Registration::Marriage { .. } => EventKind::Marriage,
            Registration::Divorce { .. } => EventKind::Divorce,
            Registration::Death { .. } => EventKind::Death,
            Registration::Correction { .. } => EventKind::Correction,
        }
    }

    /// The personal ids of the persons it concerns, in order.
    pub fn persons(&self) -> Vec<&str> {
        match self {
            Registration::Marriage { spouses, .. } | Registration::Divorce { spouses, .. } => {
                vec![spouses[0].as_str(), spouses[1].as_str()]
            }
            Registration::Death { person, .. } | Registration::Correction { person, .. } => {
                vec![person.as_str()]
            }
        }
    }

    fn date(&self) -> NaiveDate {
        match self {
            Registration::Marriage { date, .. }
            | Registration::Divorce { date, .. }
            | Registration::Death { date, .. }
            | Registration::Correction { date, .. } => *date,
        }
    }

    /// The event it adds to the record of `person` (one of
    /// [`Registration::persons`]) when `ward` registers it with `reference`.
    pub fn event_for(&self, person: &str, ward: &str, reference: &str) -> CivilEvent {
        let spouse_id = match self.persons().as_slice() {
            [a, b] if *a == person => b.to_string(),
            [a, _] => a.to_string(),
            _ => String::new(),
        };
        let (field, value) = match self {
            Registration::Correction { field, value, .. } => (field.clone(), value.clone()),
            _ => Default::default(),
        };
        CivilEvent {
            kind: self.kind(),
            date: self.date(),
            registered_by: ward.to_string(),
            spouse_id,
            reference: reference.to_string(),
            field,
            value,
        }
    }

    /// Why a registrar would refuse it on `today`, given the current records
    /// of the persons it concerns (in [`Registration::persons`] order), or
    /// `None` if it may be registered. Each record is judged by
    /// [`event_refusal`], as the city judges each change it makes.
    pub fn refusal(&self, records: &[&Citizen], today: NaiveDate) -> Option<String> {
        let persons = self.persons();
        if records.len() != persons.len() {
            return Some("every person concerned must have a record".into());
        }
        if let [a, b] = persons.as_slice()
            && a == b
        {
            return Some(match self {
                Registration::Marriage { .. } => "a person cannot marry themselves".into(),
                _ => format!("a {} names two different persons", self.kind()),
            });
        }
        persons.iter().zip(records).find_map(|(p, c)| event_refusal(c, &self.event_for(p, "", ""), today))
    }

    /// The records of the persons concerned (in [`Registration::persons`]
    /// order) once `ward` registers it with `reference` (the certificate
    /// number, court decision or place of death): each with the event, and
    /// the marital status it implies.
    pub fn apply(&self, records: &[Citizen], ward: &WardCode, reference: &str) -> Vec<Citizen> {
        records
            .iter()
            .map(|c| with_event(c, self.event_for(&c.personal_id, ward.as_str(), reference)))
            .collect()
    }

    /// For a death: the record of the deceased's spouse `survivor` once
    /// `ward` registers it, the marriage ended (a death event naming the
    /// deceased, and the status widowed); `None` for anything else, or a
    /// `survivor` the deceased's record does not name as spouse.
    pub fn widowed(
        &self,
        deceased: &Citizen,
        survivor: &Citizen,
        ward: &WardCode,
        reference: &str,
    ) -> Option<Citizen> {
        if !matches!(self, Registration::Death { .. })
            || current_spouse(deceased) != Some(survivor.personal_id.as_str())
            || current_spouse(survivor) != Some(deceased.personal_id.as_str())
        {
            return None;
        }
        let spouse_id = deceased.personal_id.clone();
        let event =
            CivilEvent { spouse_id, ..self.event_for(&deceased.personal_id, ward.as_str(), reference) };
        Some(with_event(survivor, event))
    }
}

/// `c` with `event` added, and the marital status it implies (or, for a
/// correction, the field it corrects set to its value).
fn with_event(c: &Citizen, event: CivilEvent) -> Citizen {
    let mut c = with_identity(c, &event.field, &event.value).unwrap_or_else(|_| c.clone());
    if let Some(status) = implied_status(&event) {
        c.marital_status = status;
    }
    c.events.push(event);
    c
}

/// The marital status `event` sets on the record it is added to, if any:
/// married, divorced, widowed (the spouse's death); none for one's own death.
pub fn implied_status(event: &CivilEvent) -> Option<MaritalStatus> {
    match event.kind {
        EventKind::Marriage => Some(MaritalStatus::Married),
        EventKind::Divorce => Some(MaritalStatus::Divorced),
        EventKind::Death if !own_death(event) => Some(MaritalStatus::Widowed),
        EventKind::Death | EventKind::Birth | EventKind::Correction => None,
    }
}

/// Why a registrar would refuse to add `event` to `c`'s record as it now
/// stands, on `today`: the registrar's rules for one person, the same at the
/// registering ward and at the city (which judges each record a
/// registration changes on its own copy of it).
pub fn event_refusal(c: &Citizen, event: &CivilEvent, today: NaiveDate) -> Option<String> {
    let date = event.date;
    let spouse = event.spouse_id.as_str();
    if date > today {
        return Some(format!("the date {date} is in the future"));
    }
    if event.kind == EventKind::Correction {
        // A correction may concern a deceased person too, and its date of birth.
        if let Err((_, why)) = correction_form(&CivilEvent { reference: "-".into(), ..event.clone() }) {
            return Some(why);
        }
        return match with_identity(c, &event.field, &event.value) {
            Err(why) => Some(why),
            Ok(corrected) if corrected == *c => Some(format!(
                "{} ({}) already has the {} {:?}: nothing to correct",
                c.personal_id, c.full_name, event.field, event.value
            )),
            Ok(_) => None,
        };
    }
    if date < c.date_of_birth {
        return Some(format!("{} was born on {}, after {date}", c.personal_id, c.date_of_birth));
    }
    if is_dead(c) {
        return Some(format!(
            "{} ({}) is registered as deceased (if that is wrong, the data office corrects the record)",
            c.personal_id, c.full_name
        ));
    }
    let married_to_spouse = || {
        (current_spouse(c) != Some(spouse))
            .then(|| format!("{} and {spouse} are not married to each other in their records", c.personal_id))
    };
    match event.kind {
        EventKind::Birth => {
            Some("a birth is recorded when the record is created, not registered on it".into())
        }
        EventKind::Marriage => {
            if spouse == c.personal_id {
                return Some("a person cannot marry themselves".into());
            }
            if spouse.is_empty() {
                return Some("a marriage names the spouse".into());
            }
            let min = marriage_age(c.sex);
            if age(c.date_of_birth, date) < min as i32 {
                return Some(format!(
                    "{} ({}) is under the legal age of marriage ({min} for a {}) on {date}",
                    c.personal_id, c.full_name, c.sex
                ));
            }
            if let Some(s) = current_spouse(c) {
                return Some(format!(
                    "{} ({}) is married (to {s}): a divorce or the spouse's death must be registered first",
                    c.personal_id, c.full_name
                ));
            }
            if c.marital_status == MaritalStatus::Married {
                return Some(format!(
                    "{} ({}) is recorded as married, with no marriage registered: the data office \
                     corrects the status (see wardsync civil-report) before a new marriage",
                    c.personal_id, c.full_name
                ));
            }
            None
        }
        EventKind::Divorce => married_to_spouse(),
        // The spouse's death, on the survivor's record.
        EventKind::Death if !spouse.is_empty() => married_to_spouse(),
        EventKind::Death | EventKind::Correction => None,
    }
}

/// What the city holds that a registration on a citizen is judged on.
#[derive(Debug, Clone, Copy)]
pub struct Judged<'a> {
    /// Every unsuperseded write of the citizen's events.
    pub heads: &'a [EventsHead],
    /// The citizen as the city holds them.
    pub current: &'a Citizen,
    /// The city's record of the spouse the registered event names, if any.
    pub spouse: Option<&'a Citizen>,
    /// The registering ward's changes to the citizen applied in the last day.
    pub today_by_sender: usize,
}

/// Why the other person a registered `event` on `c` names would make a
/// registrar refuse it, judged on the city's record of them, `spouse`:
/// unknown to the city; for a marriage, not free to marry `c` (the same
/// rules, mirrored); for a divorce, not married to `c`; for the spouse's
/// death, not dead. Their own change, if the same registration writes one,
/// may already be applied: it is no reason to refuse.
pub fn spouse_refusal(
    c: &Citizen,
    event: &CivilEvent,
    spouse: Option<&Citizen>,
    today: NaiveDate,
) -> Option<String> {
    if event.spouse_id.is_empty() {
        return None;
    }
    let Some(s) = spouse else {
        return Some(format!("the spouse {} has no record at the city", event.spouse_id));
    };
    let ours = c.personal_id.as_str();
    match event.kind {
        EventKind::Marriage if current_spouse(s) == Some(ours) => None,
        EventKind::Marriage => {
            let mirrored = CivilEvent { spouse_id: c.personal_id.clone(), ..event.clone() };
            event_refusal(s, &mirrored, today)
        }
        EventKind::Divorce => {
            let last_with_us = s.events.iter().rev().find(|e| e.spouse_id == ours).map(|e| e.kind);
            match (current_spouse(s), last_with_us) {
                (Some(x), _) if x == ours => None,
                (_, Some(EventKind::Divorce)) => None,
                _ => Some(format!(
                    "{} and {ours} are not married to each other in their records",
                    s.personal_id
                )),
            }
        }
        EventKind::Death if is_dead(s) => None,
        EventKind::Death => {
            Some(format!("{} ({}) is not registered as deceased", s.personal_id, s.full_name))
        }
        EventKind::Birth | EventKind::Correction => None,
    }
}

/// One write of a citizen's events the city holds, as a registration is
/// judged against it: its events, and whether the registering writer had
/// seen it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsHead {
    /// The events it wrote.
    pub events: Vec<CivilEvent>,
    /// Whether the registration's writer had seen it.
    pub seen: bool,
    /// Whether the registration's writer had seen everything its writer
    /// had (then, not having seen it, it was made concurrently on the same
    /// record, not on an older one it pretends is current).
    pub built_alike: bool,
}

/// Why a change by ward `sender` to another ward's citizen is not a
/// registration the city accepts, or `None` if it is one, judged on the
/// city's state of the citizen: `heads` (every unsuperseded write of its
/// events) and `current` (the record as it stands). It sets only
/// [`REGISTRATION_FIELDS`], appends exactly one marriage, divorce or death
/// registered by `sender` to events the city can show the writer had: every
/// write of them it had seen, exactly; every write it had not seen, made
/// concurrently on what the writer had seen too, a continuation of them.
/// A registrar would accept the event on `current` ([`event_refusal`]) and
/// on the spouse it names ([`spouse_refusal`]), it sets the marital status
/// the event implies, and the ward's changes to the citizen the city
/// applied in the last day are fewer than [`REGISTRATIONS_PER_DAY`].
/// Concurrent registrations both pass, and the merge makes them a conflict
/// for the data office.
pub fn registration_refusal(
    sender: &WardCode,
    fields: &[String],
    new: &Citizen,
    facts: &Judged,
    today: NaiveDate,
) -> Option<String> {
    let Judged { heads, current, spouse, today_by_sender } = *facts;
    if !fields.iter().any(|f| f == "events")
        || !fields.iter().all(|f| REGISTRATION_FIELDS.contains(&f.as_str()))
    {
        return Some(format!(
            "a ward changes another ward's citizen only by registering a marriage, divorce or death \
             (fields events and marital_status); this change sets {}",
            fields.join(", ")
        ));
    }
    let Some((last, before)) = new.events.split_last() else {
        return Some("a registration appends an event".into());
    };
    if last.registered_by != sender.as_str() || matches!(last.kind, EventKind::Birth | EventKind::Correction)
    {
        return Some(format!(
            "the event a ward registers must be a marriage, divorce or death registered by it (ward {sender})"
        ));
    }
    let kept = match heads {
        [] => before.is_empty(),
        heads => heads
            .iter()
            .all(|h| if h.seen { h.events == before } else { h.built_alike && h.events.starts_with(before) }),
    };
    if !kept {
        return Some(
            "a registration keeps every event already registered, as the city holds them, and adds one"
                .into(),
        );
    }
    if today_by_sender >= REGISTRATIONS_PER_DAY {
        return Some(format!(
            "ward {sender} already registered {today_by_sender} events on {} in the last day, the most \
             a ward may: the data office enters anything more",
            current.personal_id
        ));
    }
    if let Some(why) =
        event_refusal(current, last, today).or_else(|| spouse_refusal(current, last, spouse, today))
    {
        return Some(why);
    }
    let sets_status = fields.iter().any(|f| f == "marital_status");
    match implied_status(last) {
        Some(s) if (if sets_status { new.marital_status } else { current.marital_status }) != s => {
            Some(format!("a {} implies the marital status {s}", last.kind))
        }
        None if sets_status => Some(format!("a {} does not change the marital status", last.kind)),
        _ => None,
    }
}

/// A civil-status inconsistency in a citizen's record that the data office
/// should fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Recorded as married, with no marriage in the events.
    MarriedWithoutMarriage,
    /// Married in the events, but another marital status recorded.
    MarriageWithoutStatus(MaritalStatus),
    /// The spouse the events name has no record anywhere in the city.
    SpouseUnknown(String),
    /// The spouse's record does not name this citizen back.
    SpouseNotReciprocal(String),
    /// An event registered after the death.
    EventAfterDeath(EventKind),
}

impl Problem {
    /// A short name, for metrics and reports.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::MarriedWithoutMarriage => "married-without-marriage",
            Problem::MarriageWithoutStatus(_) => "marriage-without-status",
            Problem::SpouseUnknown(_) => "spouse-unknown",
            Problem::SpouseNotReciprocal(_) => "spouse-not-reciprocal",
            Problem::EventAfterDeath(_) => "event-after-death",
        }
    }

    /// Every code, in a fixed order.
    pub const CODES: [&'static str; 5] = [
        "married-without-marriage",
        "marriage-without-status",
        "spouse-unknown",
        "spouse-not-reciprocal",
        "event-after-death",
    ];
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::MarriedWithoutMarriage => {
                f.write_str("recorded as married, but no marriage is registered")
            }
            Problem::MarriageWithoutStatus(s) => {
                write!(f, "a marriage is registered, but the marital status is {s}")
            }
            Problem::SpouseUnknown(id) => write!(f, "the spouse {id} has no record anywhere in the city"),
            Problem::SpouseNotReciprocal(id) => {
                write!(f, "the spouse {id}'s record does not name this citizen")
            }
            Problem::EventAfterDeath(k) => write!(f, "a {k} is registered after the death"),
        }
    }
}

/// The civil-status problems of `c`; `spouse(id)` is the record of a
/// spouse `c`'s events name, if the city holds one.
pub fn problems(c: &Citizen, spouse: impl Fn(&str) -> Option<Citizen>) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(death) = c.events.iter().position(own_death) {
        let died = c.events[death].date;
        let after =
            |(i, e): &(usize, &CivilEvent)| (*i > death || e.date > died) && e.kind != EventKind::Correction;
        for e in c.events.iter().enumerate().filter(after).map(|(_, e)| e) {
            out.push(Problem::EventAfterDeath(e.kind));
        }
    }
    match current_spouse(c) {
        None if c.marital_status == MaritalStatus::Married => out.push(Problem::MarriedWithoutMarriage),
        None => {}
        Some(s) => {
            if c.marital_status != MaritalStatus::Married && !is_dead(c) {
                out.push(Problem::MarriageWithoutStatus(c.marital_status));
            }
            match spouse(s) {
                None => out.push(Problem::SpouseUnknown(s.to_string())),
                Some(other) if current_spouse(&other) != Some(c.personal_id.as_str()) => {
                    out.push(Problem::SpouseNotReciprocal(s.to_string()))
                }
                Some(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
