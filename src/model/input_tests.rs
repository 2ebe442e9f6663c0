//! Records as they arrive from spreadsheets, legacy systems and hurried
//! typing: every rule of `strict` and the limits, each with the field it is
//! reported at.

use super::*;
use crate::generate::sample;

fn ctx() -> Context {
    Context { today: "2026-11-22".parse().unwrap(), province: Some("01".into()) }
}

fn a_citizen() -> Record {
    let ward = WardCode::parse("00082").unwrap();
    sample(&ward, 10, 1).into_iter().find(|r| matches!(r.body, Body::Citizen(_))).unwrap()
}

fn a_parcel() -> Record {
    let ward = WardCode::parse("00082").unwrap();
    sample(&ward, 30, 1).into_iter().find(|r| matches!(r.body, Body::Land(_))).unwrap()
}

fn citizen_with(f: impl FnOnce(&mut Citizen)) -> Record {
    let mut r = a_citizen();
    let Body::Citizen(c) = &mut r.body else { unreachable!() };
    f(c);
    r
}

fn land_with(f: impl FnOnce(&mut LandParcel)) -> Record {
    let mut r = a_parcel();
    let Body::Land(l) = &mut r.body else { unreachable!() };
    f(l);
    r
}

/// Why `r` is refused at `field` (every reason given there).
fn refused_at(r: &Record, field: &str) -> String {
    let e = r.validate(&ctx()).expect_err("refused");
    let why: Vec<&str> =
        e.violations.iter().filter(|v| v.field == field).map(|v| v.reason.as_str()).collect();
    assert!(!why.is_empty(), "no violation at {field}: {e}");
    why.join("; ")
}

#[test]
fn a_misspelled_field_is_an_error_naming_it_not_a_blanked_value() {
    let json = serde_json::to_string(&a_citizen()).unwrap().replace("\"phone\"", "\"phone_number\"");
    let e = serde_json::from_str::<Record>(&json).unwrap_err().to_string();
    assert!(e.contains("phone_number"), "{e}");
    let json = serde_json::to_string(&a_citizen()).unwrap().replace("\"events\"", "\"event\"");
    assert!(serde_json::from_str::<Record>(&json).unwrap_err().to_string().contains("event"));
}

#[test]
fn dates_are_read_in_one_strict_form_and_in_a_plausible_range() {
    let json = serde_json::to_string(&a_citizen()).unwrap();
    let Body::Citizen(c) = a_citizen().body else { unreachable!() };
    let written = c.date_of_birth.format("%Y-%m-%d").to_string();
    for bad in ["1985-3-2", "+1985-03-02", "1985/03/02", "02-03-1985"] {
        let e = serde_json::from_str::<Record>(&json.replace(&written, bad)).unwrap_err().to_string();
        assert!(e.contains("YYYY-MM-DD"), "{bad}: {e}");
    }
    let old = land_with(|l| {
        l.registrations = vec![LandRegistration {
            kind: RegistrationKind::Mortgage,
            date: "0001-01-01".parse().unwrap(),
            party: "001085012345".into(),
            note: String::new(),
        }]
    });
    assert!(refused_at(&old, "record.land.registrations[0].date").contains("before 1900"));
}

#[test]
fn control_and_invisible_characters_are_refused_wherever_they_are() {
    let cases: [(&str, Record, &str); 4] = [
        ("ESC", citizen_with(|c| c.ethnicity = "Kinh\u{1b}[31m".into()), "record.citizen.ethnicity"),
        ("NUL", citizen_with(|c| c.phone = "0912\u{0}345678".into()), "record.citizen.phone"),
        (
            "right-to-left override",
            citizen_with(|c| c.permanent_residence.address = "12 \u{202e}gnôB gnàH".into()),
            "record.citizen.permanent_residence.address",
        ),
        (
            "only zero-width spaces",
            citizen_with(|c| c.full_name = "\u{200b}\u{200b}".into()),
            "record.citizen.full_name",
        ),
    ];
    for (what, r, field) in cases {
        assert!(refused_at(&r, field).contains("U+"), "{what}");
    }
}

#[test]
fn text_in_nfd_is_normalised_at_entry_and_refused_unnormalised() {
    let nfd: String = unicode_normalization::UnicodeNormalization::nfd("Nguyễn Văn Đạt").collect();
    let r = citizen_with(|c| c.full_name = nfd.clone());
    assert!(refused_at(&r, "record.citizen.full_name").contains("NFC"));
    let n = r.normalized();
    assert!(n.validate(&ctx()).is_ok());
    let Body::Citizen(c) = &n.body else { unreachable!() };
    assert_eq!(c.full_name, "Nguyễn Văn Đạt");
    // The same name typed in NFC or NFD is one value.
    assert_eq!(citizen_with(|c| c.full_name = "Nguyễn Văn Đạt".into()), n);
}

#[test]
fn sizes_and_counts_are_bounded() {
    let long = citizen_with(|c| c.ethnicity = "K".repeat(strict::MAX_TEXT + 1));
    assert!(refused_at(&long, "record.citizen.ethnicity").contains("limit is 500"));
    let many = land_with(|l| l.aliases = vec!["00082:1:2".into(); 21]);
    assert!(refused_at(&many, "record.land.aliases").contains("limit is 20"));
    let notes = land_with(|l| {
        l.registrations = (0..60)
            .map(|_| LandRegistration {
                kind: RegistrationKind::Mortgage,
                date: "2020-01-01".parse().unwrap(),
                party: "001085012345".into(),
                note: "ghi chú ".repeat(50),
            })
            .collect()
    });
    assert!(refused_at(&notes, "record").contains("bytes as JSON"));
}

#[test]
fn implausible_land_values_are_refused() {
    for area in [5e-324, 1e308, 0.0] {
        assert!(
            refused_at(&land_with(|l| l.area_m2 = area), "record.land.area_m2").contains("0.1 to"),
            "{area}"
        );
    }
    let twice = land_with(|l| l.owners = vec!["001085012345".into(), "001085012345".into()]);
    assert!(refused_at(&twice, "record.land.owners[1]").contains("twice"));
    let serial = land_with(|l| l.certificate_serial = "ĐĂ 123456".into());
    assert!(refused_at(&serial, "record.land.certificate_serial").contains("A-Z"));
}

#[test]
fn the_field_names_policies_may_use_are_the_fields_records_have() {
    let ward = WardCode::parse("00082").unwrap();
    for r in sample(&ward, 40, 3) {
        let mut have: Vec<String> = flatten(&r).into_keys().filter(|f| f != OWNER && f != EXISTS).collect();
        have.sort();
        let mut listed: Vec<String> = field_names(r.kind()).iter().map(|f| f.to_string()).collect();
        listed.sort();
        assert_eq!(have, listed, "{}", r.kind());
    }
}
