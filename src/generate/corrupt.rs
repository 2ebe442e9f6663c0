//! Changing generated records: `amend` makes a plausible correction (for
//! updates), `corrupt` breaks one validation rule (for testing rejects).

use chrono::Duration;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::names;
use crate::model::{Body, Record, Residence};

fn seeded(record: &Record, salt: u64) -> StdRng {
    let h = record
        .key_id()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    StdRng::seed_from_u64(h ^ salt)
}

/// A corrected version of `record` (same key and owner, other details
/// changed), deterministic in `version`.
pub fn amend(record: &Record, version: u32) -> Record {
    let mut rng = seeded(record, u64::from(version));
    let mut r = record.clone();
    match &mut r.body {
        Body::Citizen(c) => {
            c.phone = names::phone(&mut rng);
            c.temporary_residence = Some(Residence {
                address: names::address(&mut rng),
                commune_code: c.permanent_residence.commune_code.clone(),
            });
        }
        Body::Business(b) => b.address = names::address(&mut rng),
        Body::Land(l) => l.address = names::address(&mut rng),
    }
    r
}

/// A valid citizen `record` made inconsistent with the civil-status register
/// (for the data-quality report), and the problem's code; `None` if the
/// record has nothing to break. A married citizen gets a single status or
/// a spouse id that exists nowhere (which also leaves the spouse's record
/// not named back); a single household head gets a married status, or a
/// death registered twice (the second after the first).
pub fn plant_civil(rng: &mut StdRng, record: &Record) -> Option<(Record, &'static str)> {
    use crate::model::MaritalStatus;
    use crate::model::civil::current_spouse;
    let mut r = record.clone();
    let Body::Citizen(c) = &mut r.body else { return None };
    let what = if current_spouse(c).is_some() {
        if rng.gen_bool(0.5) {
            c.marital_status = MaritalStatus::Single;
            "marriage-without-status"
        } else {
            let e = c.events.iter_mut().rev().find(|e| e.kind == crate::model::EventKind::Marriage)?;
            let (head, serial) = e.spouse_id.split_at(6);
            let other = (serial.parse::<u32>().ok()? + 500_000) % 1_000_000;
            e.spouse_id = format!("{head}{other:06}");
            "spouse-unknown"
        }
    } else if c.marital_status == MaritalStatus::Single
        && c.relationship_to_head == crate::model::Relationship::Head
    {
        if rng.gen_bool(0.5) {
            c.marital_status = MaritalStatus::Married;
            "married-without-marriage"
        } else {
            // Registered dead twice: the second, later, follows the death.
            let today = crate::clock::today();
            let died = (today - Duration::days(400)).max(c.date_of_birth);
            for date in [died, died + Duration::days(100)] {
                c.events.push(crate::model::CivilEvent {
                    kind: crate::model::EventKind::Death,
                    date: date.min(today),
                    registered_by: c.permanent_residence.commune_code.clone(),
                    spouse_id: String::new(),
                    reference: String::new(),
                    field: String::new(),
                    value: String::new(),
                });
            }
            "event-after-death"
        }
    } else {
        return None;
    };
    Some((r, what))
}

/// `record` with one rule broken, and a word on which.
pub fn corrupt(rng: &mut StdRng, record: &Record) -> (Record, &'static str) {
    let mut r = record.clone();
    let what = match &mut r.body {
        Body::Citizen(c) => match rng.gen_range(0..4) {
            0 => {
                c.personal_id.replace_range(0..3, "003");
                "personal id with a province prefix that does not exist"
            }
            1 => {
                c.date_of_birth += Duration::days(366 * 2);
                "date of birth disagreeing with the personal id"
            }
            2 => {
                c.full_name.clear();
                "missing full name"
            }
            _ => {
                c.permanent_residence.commune_code = "99999".into();
                "unknown commune"
            }
        },
        Body::Business(b) => match rng.gen_range(0..3) {
            0 => {
                let last = b.enterprise_code.as_bytes()[9];
                let wrong = if last == b'9' { '0' } else { (last + 1) as char };
                b.enterprise_code.replace_range(9..10, &wrong.to_string());
                "enterprise code with a wrong check digit"
            }
            1 => {
                b.sector_code = "ABCD".into();
                "sector code that is not VSIC"
            }
            _ => {
                b.registration_date = chrono::Utc::now().date_naive() + Duration::days(400);
                "registration date in the future"
            }
        },
        Body::Land(l) => match rng.gen_range(0..3) {
            0 => {
                l.area_m2 = -l.area_m2;
                "negative area"
            }
            1 => {
                l.land_use_type = "XXX".into();
                "unknown land-use type"
            }
            _ => {
                l.owners.clear();
                "no owner"
            }
        },
    };
    (r, what)
}
