//! What a registrar refuses, what a registration changes, and which
//! cross-ward changes pass as registrations.

use super::*;
use crate::model::{Body, Record};

fn person(id_seed: usize, sex: Sex, born: &str) -> Citizen {
    let ward = WardCode::parse("00082").unwrap();
    let mut c = crate::generate::sample(&ward, 200, 3)
        .into_iter()
        .filter_map(|r: Record| match r.body {
            Body::Citizen(c) => Some(c),
            _ => None,
        })
        .nth(id_seed)
        .unwrap();
    c.sex = sex;
    c.date_of_birth = born.parse().unwrap();
    c.marital_status = MaritalStatus::Single;
    c.events.clear();
    c
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn ward(s: &str) -> WardCode {
    WardCode::parse(s).unwrap()
}

#[test]
fn a_registrar_checks_age_life_and_existing_marriages() {
    let today = day("2026-11-30");
    let man = person(0, Sex::Male, "2000-05-01");
    let woman = person(1, Sex::Female, "2008-11-30");
    let marriage = |a: &Citizen, b: &Citizen, date: &str| Registration::Marriage {
        spouses: [a.personal_id.clone(), b.personal_id.clone()],
        date: day(date),
    };
    assert_eq!(marriage(&man, &woman, "2026-11-30").refusal(&[&man, &woman], today), None, "18 today");
    let e = marriage(&man, &woman, "2026-11-29").refusal(&[&man, &woman], today).unwrap();
    assert!(e.contains("under the legal age of marriage (18 for a female)"), "{e}");
    let young = person(2, Sex::Male, "2007-01-01");
    let e = marriage(&young, &woman, "2026-11-30").refusal(&[&young, &woman], today).unwrap();
    assert!(e.contains("(20 for a male)"), "{e}");
    assert!(marriage(&man, &woman, "2026-12-01").refusal(&[&man, &woman], today).unwrap().contains("future"));
    assert!(marriage(&man, &man, "2026-11-30").refusal(&[&man, &man], today).unwrap().contains("themselves"));

    // Married: both records say so, and neither may marry again until divorced.
    let wed = marriage(&man, &woman, "2026-11-30");
    let [m, w]: [Citizen; 2] =
        wed.apply(&[man.clone(), woman.clone()], &ward("00082"), "12/2026").try_into().unwrap();
    assert_eq!(
        (m.marital_status, current_spouse(&m)),
        (MaritalStatus::Married, Some(woman.personal_id.as_str()))
    );
    assert_eq!(w.events.last().unwrap().spouse_id, man.personal_id);
    assert_eq!(w.events.last().unwrap().registered_by, "00082");
    assert_eq!(w.events.last().unwrap().reference, "12/2026");
    let other = person(3, Sex::Female, "1990-01-01");
    let e = marriage(&m, &other, "2026-11-30").refusal(&[&m, &other], today).unwrap();
    assert!(e.contains("is married (to"), "{e}");
    let divorce =
        Registration::Divorce { spouses: [m.personal_id.clone(), w.personal_id.clone()], date: today };
    assert_eq!(divorce.refusal(&[&m, &w], today), None);
    assert!(divorce.refusal(&[&m, &other], today).unwrap().contains("not married to each other"));
    let [m, _]: [Citizen; 2] = divorce.apply(&[m, w], &ward("00145"), "TAND 45/2026").try_into().unwrap();
    assert_eq!((m.marital_status, current_spouse(&m)), (MaritalStatus::Divorced, None));
    assert_eq!(
        marriage(&m, &other, "2026-11-30").refusal(&[&m, &other], today),
        None,
        "divorced: free to marry"
    );

    // A death: only of the living, never before birth.
    let death = Registration::Death { person: m.personal_id.clone(), date: today };
    assert_eq!(death.refusal(&[&m], today), None);
    let dead = death.apply(std::slice::from_ref(&m), &ward("00082"), "Bạch Mai").remove(0);
    assert!(is_dead(&dead));
    assert!(death.refusal(&[&dead], today).unwrap().contains("deceased"));
    assert!(
        marriage(&dead, &other, "2026-11-30").refusal(&[&dead, &other], today).unwrap().contains("deceased")
    );
    let early = Registration::Death { person: m.personal_id.clone(), date: day("1999-01-01") };
    assert!(early.refusal(&[&m], today).unwrap().contains("was born on"));
}

/// The day the registrations of these tests are judged on.
const TODAY: &str = "2026-11-30";

/// [`registration_refusal`] on [`TODAY`], with the spouse found among `people`.
fn judge(
    people: &[&Citizen],
    sender: &WardCode,
    fields: &[String],
    new: &Citizen,
    heads: &[EventsHead],
    current: &Citizen,
    today_by_sender: usize,
) -> Option<String> {
    let named = new.events.last().map(|e| e.spouse_id.as_str()).unwrap_or_default();
    let spouse = people.iter().copied().find(|p| p.personal_id == named);
    registration_refusal(sender, fields, new, &Judged { heads, current, spouse, today_by_sender }, day(TODAY))
}

fn head(events: &[CivilEvent], seen: bool) -> EventsHead {
    EventsHead { events: events.to_vec(), seen, built_alike: true }
}

#[test]
fn only_a_registration_passes_as_a_change_to_another_wards_citizen() {
    let (a, b) = (ward("00082"), ward("00145"));
    let theirs = person(0, Sex::Male, "1990-01-01");
    let wife = person(1, Sex::Female, "1992-01-01");
    let wed = Registration::Marriage {
        spouses: [theirs.personal_id.clone(), wife.personal_id.clone()],
        date: day("2026-11-30"),
    };
    let married = wed.apply(&[theirs.clone(), wife.clone()], &a, "").remove(0);
    let people = [&wife];
    let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let both = fields(&["events", "marital_status"]);
    let before = theirs.events.clone();
    let ok = judge(&people, &a, &both, &married, &[head(&before, true)], &theirs, 0);
    assert_eq!(ok, None);
    // Concurrent with another ward's registration it had not seen: it
    // passes if a registrar would accept it on the city's record (and the
    // merge makes the two a conflict)...
    let mut elsewhere = before.clone();
    elsewhere.push(CivilEvent {
        kind: EventKind::Divorce,
        date: day("2026-11-29"),
        registered_by: b.to_string(),
        spouse_id: "001190000001".into(),
        reference: String::new(),
        field: String::new(),
        value: String::new(),
    });
    let mut held = theirs.clone();
    held.events = elsewhere.clone();
    held.marital_status = MaritalStatus::Divorced;
    assert_eq!(judge(&people, &a, &both, &married, &[head(&elsewhere, false)], &held, 0), None);
    // ...but not after a death it had not seen.
    let mut dead = held.clone();
    dead.events.push(CivilEvent { kind: EventKind::Death, spouse_id: String::new(), ..elsewhere[0].clone() });
    let e = judge(&people, &a, &both, &married, &[head(&dead.events, false)], &dead, 0).unwrap();
    assert!(e.contains("registered as deceased"), "{e}");
    // Nor with no claim at all on a record with events: what it kept must be what the city holds.
    let mut other_before = before.clone();
    other_before.push(elsewhere[0].clone());
    other_before[0].reference = "forged".into();
    let mut on_forged = married.clone();
    on_forged.events = other_before.clone();
    on_forged.events.push(married.events.last().unwrap().clone());
    let e = judge(&people, &a, &both, &on_forged, &[head(&elsewhere, false)], &held, 0);
    assert!(e.unwrap().contains("keeps every event"));
    // The spouse as the city holds them: unknown, or married to another,
    // refuses the marriage.
    let e = judge(&[], &a, &both, &married, &[head(&before, true)], &theirs, 0);
    assert!(e.unwrap().contains("has no record at the city"));
    let mut taken = wife.clone();
    taken.events.push(CivilEvent {
        kind: EventKind::Marriage,
        date: day("2020-01-01"),
        registered_by: b.to_string(),
        spouse_id: "001190000001".into(),
        reference: String::new(),
        field: String::new(),
        value: String::new(),
    });
    taken.marital_status = MaritalStatus::Married;
    let e = judge(&[&taken], &a, &both, &married, &[head(&before, true)], &theirs, 0);
    assert!(e.unwrap().contains("is married (to 001190000001)"));
    // A few a day per ward and citizen.
    let e = judge(&people, &a, &both, &married, &[head(&before, true)], &theirs, 4).unwrap();
    assert!(e.contains("4 events on"), "{e}");
    // An unseen write the writer had not built alike on: it pretends an
    // older record is the current one.
    let stale = EventsHead { built_alike: false, ..head(&elsewhere, false) };
    let e = judge(&people, &a, &both, &married, &[stale], &held, 0);
    assert!(e.unwrap().contains("keeps every event"));
    // A status without its event: refused.
    let status = fields(&["marital_status"]);
    let e = judge(&people, &a, &status, &married, &[head(&before, true)], &theirs, 0);
    assert!(e.unwrap().contains("only by registering"));
    // Anything else is refused.
    let e = judge(&people, &a, &fields(&["events", "phone"]), &married, &[head(&before, true)], &theirs, 0)
        .unwrap();
    assert!(e.contains("only by registering"), "{e}");
    let e = judge(&people, &b, &both, &married, &[head(&before, true)], &theirs, 0);
    assert!(e.unwrap().contains("registered by it (ward 00145)"));
    let mut forged = married.clone();
    forged.marital_status = MaritalStatus::Widowed;
    let e = judge(&people, &a, &both, &forged, &[head(&before, true)], &theirs, 0);
    assert!(e.unwrap().contains("implies the marital status married"));
    // A marriage that leaves the status as it was: refused too.
    let e = judge(&people, &a, &fields(&["events"]), &married, &[head(&before, true)], &theirs, 0);
    assert!(e.unwrap().contains("implies the marital status married"));
    // Erasing an event it had seen, to replace it: refused.
    let e = judge(&people, &a, &fields(&["events"]), &married, &[head(&elsewhere, true)], &held, 0);
    assert!(e.unwrap().contains("keeps every event"));
    let mut erased = married.clone();
    erased.events.remove(0);
    let seen_one = vec![married.events[0].clone()];
    let e = judge(&people, &a, &fields(&["events"]), &erased, &[head(&seen_one, true)], &theirs, 0);
    assert!(e.is_some());
}

#[test]
fn a_death_ends_the_marriage_for_the_surviving_spouse() {
    let today = day(TODAY);
    let a = ward("00082");
    let man = person(0, Sex::Male, "1970-01-01");
    let woman = person(1, Sex::Female, "1972-01-01");
    let other = person(2, Sex::Male, "1968-01-01");
    let wed = Registration::Marriage {
        spouses: [man.personal_id.clone(), woman.personal_id.clone()],
        date: day("2000-01-01"),
    };
    let [m, w]: [Citizen; 2] = wed.apply(&[man.clone(), woman.clone()], &a, "").try_into().unwrap();
    let death = Registration::Death { person: m.personal_id.clone(), date: day("2026-11-01") };
    let dead = death.apply(std::slice::from_ref(&m), &a, "").remove(0);
    assert!(is_dead(&dead));
    let widow = death.widowed(&m, &w, &a, "").expect("she was his wife");
    assert!(!is_dead(&widow), "the spouse's death is not hers");
    assert_eq!((widow.marital_status, current_spouse(&widow)), (MaritalStatus::Widowed, None));
    assert!(death.widowed(&m, &other, &a, "").is_none(), "only the spouse is widowed");
    // She may marry again; no divorce from the deceased is needed, nor possible.
    let again = Registration::Marriage {
        spouses: [widow.personal_id.clone(), other.personal_id.clone()],
        date: today,
    };
    assert_eq!(again.refusal(&[&widow, &other], today), None);
    let divorce =
        Registration::Divorce { spouses: [widow.personal_id.clone(), m.personal_id.clone()], date: today };
    assert!(divorce.refusal(&[&widow, &dead], today).is_some());
    assert!(
        problems(&widow, |_| Some(dead.clone())).is_empty(),
        "{:?}",
        problems(&widow, |_| Some(dead.clone()))
    );
    // At the city, the widowing is judged like any registration: on a
    // citizen married to the deceased, and implying widowed.
    let fields = vec!["events".to_string(), "marital_status".to_string()];
    let people = [&dead];
    // Not before the death is registered on the deceased.
    let alive = [&m];
    let early = judge(&alive, &a, &fields, &widow, &[head(&w.events, true)], &w, 0);
    assert!(early.unwrap().contains("is not registered as deceased"));
    let heads = [head(&w.events, true)];
    assert_eq!(judge(&people, &a, &fields, &widow, &heads, &w, 0), None);
    let e = judge(&people, &a, &fields, &widow, &[head(&other.events, true)], &other, 0);
    assert!(e.is_some(), "not the deceased's spouse");
}

#[test]
fn the_report_finds_each_kind_of_inconsistency() {
    let a = ward("00082");
    let man = person(0, Sex::Male, "1990-01-01");
    let woman = person(1, Sex::Female, "1992-01-01");
    let wed = Registration::Marriage {
        spouses: [man.personal_id.clone(), woman.personal_id.clone()],
        date: day("2020-01-01"),
    };
    let [m, w]: [Citizen; 2] = wed.apply(&[man.clone(), woman.clone()], &a, "").try_into().unwrap();
    let both = |id: &str| [m.clone(), w.clone()].into_iter().find(|c| c.personal_id == id);
    assert!(problems(&m, both).is_empty() && problems(&w, both).is_empty(), "a consistent couple");
    // Married in the events, single in the status; married in the status only.
    let mut single = m.clone();
    single.marital_status = MaritalStatus::Single;
    assert_eq!(problems(&single, both), [Problem::MarriageWithoutStatus(MaritalStatus::Single)]);
    let mut claimed = man.clone();
    claimed.marital_status = MaritalStatus::Married;
    assert_eq!(problems(&claimed, both), [Problem::MarriedWithoutMarriage]);
    // A spouse who exists nowhere, or who does not name them back.
    assert_eq!(problems(&m, |_| None), [Problem::SpouseUnknown(woman.personal_id.clone())]);
    let other = person(2, Sex::Male, "1985-01-01");
    let with_other = |id: &str| {
        (id == w.personal_id).then(|| {
            let mut w2 = w.clone();
            w2.events.last_mut().unwrap().spouse_id = other.personal_id.clone();
            w2
        })
    };
    assert_eq!(problems(&m, with_other), [Problem::SpouseNotReciprocal(woman.personal_id.clone())]);
    // Something registered after a death.
    let mut dead = Registration::Death { person: man.personal_id.clone(), date: day("2021-01-01") }
        .apply(std::slice::from_ref(&man), &a, "")
        .remove(0);
    dead.events.push(CivilEvent {
        kind: EventKind::Marriage,
        date: day("2022-01-01"),
        registered_by: "00145".into(),
        spouse_id: w.personal_id.clone(),
        reference: String::new(),
        field: String::new(),
        value: String::new(),
    });
    dead.marital_status = MaritalStatus::Married;
    let found = problems(&dead, both);
    assert!(found.contains(&Problem::EventAfterDeath(EventKind::Marriage)), "{found:?}");
    for p in &found {
        assert!(Problem::CODES.contains(&p.code()));
    }
}
