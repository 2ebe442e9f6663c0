//! Civil-status registration as a registrar performs it (Law on Civil
//! Status): a marriage, a divorce (as recorded from a court decision) or a
//! death; what must hold before it is accepted, and what it changes in the
//! records of the persons it concerns. Pure: the caller finds the records.

use chrono::{Datelike, NaiveDate};

use super::{Citizen, CivilEvent, EventKind, MaritalStatus, Sex, WardCode};

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
/// marriage not followed by a divorce from that spouse.
pub fn current_spouse(c: &Citizen) -> Option<&str> {
    let mut spouse = None;
    for e in &c.events {
        match e.kind {
            EventKind::Marriage => spouse = Some(e.spouse_id.as_str()),
            EventKind::Divorce if spouse == Some(e.spouse_id.as_str()) => spouse = None,
            _ => {}
        }
    }
    spouse
}

/// True if `c`'s record registers a death.
pub fn is_dead(c: &Citizen) -> bool {
    c.events.iter().any(|e| e.kind == EventKind::Death)
}

impl Registration {
    /// What is registered.
    pub fn kind(&self) -> EventKind {
        match self {
            Registration::Marriage { .. } => EventKind::Marriage,
            Registration::Divorce { .. } => EventKind::Divorce,
            Registration::Death { .. } => EventKind::Death,
        }
    }

    /// The personal ids of the persons it concerns, in order.
    pub fn persons(&self) -> Vec<&str> {
        match self {
            Registration::Marriage { spouses, .. } | Registration::Divorce { spouses, .. } => {
                vec![spouses[0].as_str(), spouses[1].as_str()]
            }
            Registration::Death { person, .. } => vec![person.as_str()],
        }
    }

    fn date(&self) -> NaiveDate {
        match self {
            Registration::Marriage { date, .. }
            | Registration::Divorce { date, .. }
            | Registration::Death { date, .. } => *date,
        }
    }

    /// Why a registrar would refuse it on `today`, given the current records
    /// of the persons it concerns (in [`Registration::persons`] order), or
    /// `None` if it may be registered.
    pub fn refusal(&self, records: &[&Citizen], today: NaiveDate) -> Option<String> {
        let date = self.date();
        if date > today {
            return Some(format!("the date {date} is in the future"));
        }
        if records.len() != self.persons().len() {
            return Some("every person concerned must have a record".into());
        }
        for c in records {
            if date < c.date_of_birth {
                return Some(format!("{} was born on {}, after {date}", c.personal_id, c.date_of_birth));
            }
            if is_dead(c) {
                return Some(format!(
                    "{} ({}) is registered as deceased (if that is wrong, the data office corrects the record)",
                    c.personal_id, c.full_name
                ));
            }
        }
        match self {
            Registration::Marriage { .. } => {
                let (a, b) = (records[0], records[1]);
                if a.personal_id == b.personal_id {
                    return Some("a person cannot marry themselves".into());
                }
                for c in [a, b] {
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
                }
                None
            }
            Registration::Divorce { .. } => {
                let (a, b) = (records[0], records[1]);
                if current_spouse(a) != Some(b.personal_id.as_str())
                    || current_spouse(b) != Some(a.personal_id.as_str())
                {
                    return Some(format!(
                        "{} and {} are not married to each other in their records",
                        a.personal_id, b.personal_id
                    ));
                }
                None
            }
            Registration::Death { .. } => None,
        }
    }

    /// The records of the persons concerned (in [`Registration::persons`]
    /// order) once `ward` registers it with `reference` (the certificate
    /// number, court decision or place of death): each with the event, and
    /// the marital status it implies.
    pub fn apply(&self, records: &[Citizen], ward: &WardCode, reference: &str) -> Vec<Citizen> {
        let persons = self.persons();
        records
            .iter()
            .map(|c| {
                let mut c = c.clone();
                let spouse_id = match persons.as_slice() {
                    [a, b] if *a == c.personal_id => b.to_string(),
                    [a, _] => a.to_string(),
                    _ => String::new(),
                };
                c.events.push(CivilEvent {
                    kind: self.kind(),
                    date: self.date(),
                    registered_by: ward.to_string(),
                    spouse_id,
                    reference: reference.to_string(),
                });
                match self {
                    Registration::Marriage { .. } => c.marital_status = MaritalStatus::Married,
                    Registration::Divorce { .. } => c.marital_status = MaritalStatus::Divorced,
                    Registration::Death { .. } => {}
                }
                c
            })
            .collect()
    }
}

/// Why a change by ward `sender` to another ward's citizen is not a
/// registration, or `None` if it is one: it sets only
/// [`REGISTRATION_FIELDS`], appends exactly one marriage, divorce or death
/// registered by `sender` to the events it had seen (`seen_events`: every
/// value of the events field the writer had seen, which its list must keep
/// whole), and sets the marital status that event implies (a death sets
/// none). Concurrent registrations both pass, and the merge makes them a
/// conflict for the data office.
pub fn registration_refusal(
    sender: &WardCode,
    fields: &[String],
    new: &Citizen,
    seen_events: &[Vec<CivilEvent>],
    latest_events: Option<&[CivilEvent]>,
) -> Option<String> {
    if fields.is_empty() || !fields.iter().all(|f| REGISTRATION_FIELDS.contains(&f.as_str())) {
        return Some(format!(
            "a ward changes another ward's citizen only by registering a marriage, divorce or death \
             (fields events and marital_status); this change sets {}",
            fields.join(", ")
        ));
    }
    let Some((last, before)) = new.events.split_last() else {
        return Some("a registration appends an event".into());
    };
    if last.registered_by != sender.as_str() || last.kind == EventKind::Birth {
        return Some(format!(
            "the event a ward registers must be a marriage, divorce or death registered by it (ward {sender})"
        ));
    }
    // Built on what it had seen: every event kept, in order.
    let kept = match seen_events {
        [] => latest_events.is_none_or(|latest| latest.starts_with(before)),
        seen => seen.iter().all(|s| s.as_slice() == before),
    };
    if !kept {
        return Some("a registration keeps every event already registered, and adds one".into());
    }
    let implied = match last.kind {
        EventKind::Marriage => Some(MaritalStatus::Married),
        EventKind::Divorce => Some(MaritalStatus::Divorced),
        _ => None,
    };
    let sets_status = fields.iter().any(|f| f == "marital_status");
    match implied {
        Some(s) if sets_status && new.marital_status != s => {
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
    if let Some(death) = c.events.iter().position(|e| e.kind == EventKind::Death) {
        let died = c.events[death].date;
        for e in c.events.iter().enumerate().filter(|(i, e)| *i > death || e.date > died).map(|(_, e)| e) {
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
