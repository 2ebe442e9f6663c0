//! Table-driven validation tests: one valid record per kind, and for every
//! rule a mutation that breaks it, with the field path it must be reported at.

use super::*;

fn ctx() -> Context {
    Context { today: "2026-11-22".parse().unwrap(), province: Some("01".into()) }
}

fn ward(s: &str) -> WardCode {
    WardCode::parse(s).unwrap()
}

fn citizen() -> Citizen {
    Citizen {
        personal_id: "001185012345".into(),
        full_name: "Nguyễn Thị Lan".into(),
        date_of_birth: "1985-03-02".parse().unwrap(),
        sex: Sex::Female,
        ethnicity: "Kinh".into(),
        nationality: "VN".into(),
        household_id: "HK-00082-000123".into(),
        relationship_to_head: Relationship::Spouse,
        permanent_residence: Residence { address: "12 Hàng Bông".into(), commune_code: "00082".into() },
        temporary_residence: None,
        marital_status: MaritalStatus::Married,
        phone: "0912345678".into(),
        events: vec![CivilEvent {
            kind: EventKind::Marriage,
            date: "2010-05-20".parse().unwrap(),
            registered_by: "00082".into(),
            spouse_id: "001083000777".into(),
            reference: String::new(),
            field: String::new(),
            value: String::new(),
        }],
    }
}

fn business() -> Business {
    Business {
        enterprise_code: "0100109106".into(),
        form: BusinessForm::Enterprise,
        name: "Công ty TNHH Cửa Nam".into(),
        owner_personal_id: "001185012345".into(),
        address: "5 Tràng Thi".into(),
        sector_code: "4711".into(),
        status: BusinessStatus::Active,
        registration_date: "2015-01-10".parse().unwrap(),
    }
}

fn land() -> LandParcel {
    LandParcel {
        commune_code: "00082".into(),
        map_sheet: "12".into(),
        parcel_number: "345".into(),
        aliases: vec!["00076:7:345".into()],
        area_m2: 80.5,
        land_use_type: "ODT".into(),
        owners: vec!["001185012345".into(), "0100109106".into()],
        certificate_serial: "AB 123456".into(),
        address: "12 Hàng Bông".into(),
        registrations: vec![LandRegistration {
            kind: RegistrationKind::Mortgage,
            date: "2020-02-02".parse().unwrap(),
            party: "0100109106".into(),
            note: String::new(),
        }],
    }
}

fn rec(body: Body) -> Record {
    Record { ward: ward("00082"), body }
}

/// Asserts `r` fails with exactly these field paths, each reason containing its text.
fn fails(r: Record, want: &[(&str, &str)]) {
    let e = r.validate(&ctx()).expect_err("should be invalid");
    let got: Vec<(&str, &str)> = e.violations.iter().map(|v| (v.field.as_str(), v.reason.as_str())).collect();
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((gf, gr), (wf, wr)) in got.iter().zip(want) {
        assert_eq!(gf, wf, "{got:#?}");
        assert!(gr.contains(wr), "{gf}: {gr:?} should mention {wr:?}");
    }
}

#[test]
fn valid_records_pass_and_yield_their_key() {
    let cases = [
        (rec(Body::Citizen(citizen())), Kind::Citizen, "001185012345"),
        (rec(Body::Business(business())), Kind::Business, "0100109106"),
        (rec(Body::Land(land())), Kind::Land, "00082:12:345"),
    ];
    for (r, kind, id) in cases {
        let key = r.validate(&ctx()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((key.kind(), key.id()), (kind, id));
    }
    let branch =
        Business { enterprise_code: "0100109106-002".into(), form: BusinessForm::Branch, ..business() };
    assert!(rec(Body::Business(branch)).validate(&ctx()).is_ok());
}

#[test]
fn citizen_rules() {
    type Mutation = fn(&mut Citizen);
    let cases: &[(Mutation, &[(&str, &str)])] = &[
        (|c| c.personal_id = "003185012345".into(), &[("record.citizen.personal_id", "63 province codes")]),
        (|c| c.personal_id = "00118501234".into(), &[("record.citizen.personal_id", "12 digits")]),
        (|c| c.sex = Sex::Male, &[("record.citizen.personal_id", "digit 4")]),
        (
            |c| c.date_of_birth = "1986-03-02".parse().unwrap(),
            &[("record.citizen.personal_id", "digits 5-6")],
        ),
        (|c| c.full_name = "  ".into(), &[("record.citizen.full_name", "required")]),
        (|c| c.ethnicity.clear(), &[("record.citizen.ethnicity", "required")]),
        (|c| c.nationality = "vn".into(), &[("record.citizen.nationality", "two-letter")]),
        (
            |c| c.permanent_residence.commune_code = "99999".into(),
            &[("record.citizen.permanent_residence.commune_code", "not a commune")],
        ),
        (
            |c| c.permanent_residence.address.clear(),
            &[("record.citizen.permanent_residence.address", "required")],
        ),
        (
            |c| c.temporary_residence = Some(Residence { address: "x".into(), commune_code: "0008".into() }),
            &[("record.citizen.temporary_residence.commune_code", "not a commune")],
        ),
        (|c| c.phone = "call me".into(), &[("record.citizen.phone", "telephone")]),
        (
            |c| c.events[0].date = "2027-01-01".parse().unwrap(),
            &[("record.citizen.events[0].date", "future")],
        ),
        (
            |c| c.events[0].date = "1980-01-01".parse().unwrap(),
            &[("record.citizen.events[0].date", "before the date of birth")],
        ),
        (
            |c| c.events[0].registered_by = "12345".into(),
            &[("record.citizen.events[0].registered_by", "not a commune")],
        ),
        (|c| c.events[0].spouse_id = "1".into(), &[("record.citizen.events[0].spouse_id", "12 digits")]),
        (
            |c| {
                c.full_name.clear();
                c.nationality.clear();
            },
            &[("record.citizen.full_name", "required"), ("record.citizen.nationality", "two-letter")],
        ),
    ];
    for (mutate, want) in cases {
        let mut c = citizen();
        mutate(&mut c);
        fails(rec(Body::Citizen(c)), want);
    }
    // A future birth date is reported (the id check follows the date, so it agrees).
    let mut c = citizen();
    c.date_of_birth = "2030-01-01".parse().unwrap();
    c.personal_id = "001330012345".into();
    c.events.clear();
    fails(rec(Body::Citizen(c)), &[("record.citizen.date_of_birth", "future")]);
}

#[test]
fn business_rules() {
    type Mutation = fn(&mut Business);
    let cases: &[(Mutation, &[(&str, &str)])] = &[
        (|b| b.enterprise_code = "0100109107".into(), &[("record.business.enterprise_code", "check digit")]),
        (
            |b| b.enterprise_code = "0100109106-000".into(),
            &[
                ("record.business.enterprise_code", "branch suffix"),
                ("record.business.form", "does not match"),
            ],
        ),
        (|b| b.form = BusinessForm::Branch, &[("record.business.form", "does not match")]),
        (|b| b.name.clear(), &[("record.business.name", "required")]),
        (|b| b.owner_personal_id = "999".into(), &[("record.business.owner_personal_id", "12 digits")]),
        (|b| b.sector_code = "47A1".into(), &[("record.business.sector_code", "VSIC")]),
        (
            |b| b.registration_date = "2099-01-01".parse().unwrap(),
            &[("record.business.registration_date", "future")],
        ),
    ];
    for (mutate, want) in cases {
        let mut b = business();
        mutate(&mut b);
        fails(rec(Body::Business(b)), want);
    }
}

#[test]
fn land_rules() {
    type Mutation = fn(&mut LandParcel);
    let cases: &[(Mutation, &[(&str, &str)])] = &[
        (|l| l.area_m2 = 0.0, &[("record.land.area_m2", "0.1 to")]),
        (|l| l.area_m2 = f64::NAN, &[("record.land.area_m2", "0.1 to")]),
        (|l| l.land_use_type = "XYZ".into(), &[("record.land.land_use_type", "land-use type")]),
        (|l| l.owners.clear(), &[("record.land.owners", "at least one")]),
        (|l| l.owners[1] = "0100109107".into(), &[("record.land.owners[1]", "neither")]),
        (|l| l.aliases[0] = "76:7:345".into(), &[("record.land.aliases[0]", "5 digits")]),
        (|l| l.certificate_serial = "123456".into(), &[("record.land.certificate_serial", "serial")]),
        (|l| l.map_sheet = "12 b".into(), &[("record.land.map_sheet", "map sheet")]),
        (|l| l.commune_code = "99999".into(), &[("record.land.commune_code", "not a commune")]),
        (
            |l| l.registrations[0].date = "2030-01-01".parse().unwrap(),
            &[("record.land.registrations[0].date", "future")],
        ),
    ];
    for (mutate, want) in cases {
        let mut l = land();
        mutate(&mut l);
        fails(rec(Body::Land(l)), want);
    }
}

#[test]
fn a_record_is_kept_by_the_ward_it_is_in() {
    assert_eq!(rec(Body::Citizen(citizen())).kept_elsewhere(), None);
    let mut c = citizen();
    c.permanent_residence.commune_code = "00145".into();
    let (field, why) = rec(Body::Citizen(c)).kept_elsewhere().unwrap();
    assert_eq!(field, "record.citizen.permanent_residence.commune_code");
    assert!(why.contains("residence transfer"), "{why}");
    let l = LandParcel { commune_code: "00145".into(), ..land() };
    assert!(rec(Body::Land(l)).kept_elsewhere().unwrap().1.contains("is not ward 00082"));
    assert_eq!(rec(Body::Business(business())).kept_elsewhere(), None);
}

#[test]
fn the_owning_ward_must_be_a_unit_of_the_city() {
    let mut r = rec(Body::Business(business()));
    r.ward = ward("25747"); // Phường Thủ Dầu Một, Ho Chi Minh City
    fails(r.clone(), &[("record.ward", "not a unit of this city")]);
    let anywhere = Context { province: None, ..ctx() };
    assert!(r.validate(&anywhere).is_ok());
    r.ward = ward("99999");
    fails(r, &[("record.ward", "not a commune code")]);
}

#[test]
fn an_event_is_stored_as_events_were_before_corrections_and_a_correction_round_trips() {
    // The stored form of events written before corrections existed.
    #[derive(serde::Serialize)]
    struct Before<'a> {
        kind: EventKind,
        date: &'a str,
        registered_by: &'a str,
        spouse_id: &'a str,
        reference: &'a str,
    }
    let before = Before {
        kind: EventKind::Marriage,
        date: "2010-05-20",
        registered_by: "00082",
        spouse_id: "001083000777",
        reference: "12/2010",
    };
    let stored = postcard::to_stdvec(&before).unwrap();
    let read: CivilEvent = postcard::from_bytes(&stored).unwrap();
    assert_eq!(
        (read.kind, read.reference.as_str(), read.field.as_str()),
        (EventKind::Marriage, "12/2010", "")
    );
    assert_eq!(postcard::to_stdvec(&read).unwrap(), stored, "written as before");
    assert_eq!(serde_json::to_value(&read).unwrap().as_object().unwrap().len(), 5, "JSON as before");
    let correction = CivilEvent {
        kind: EventKind::Correction,
        field: "full_name".into(),
        value: "Nguyễn Văn Ân".into(),
        spouse_id: String::new(),
        ..read
    };
    let back: CivilEvent = postcard::from_bytes(&postcard::to_stdvec(&correction).unwrap()).unwrap();
    assert_eq!(back, correction);
    let json = serde_json::to_string(&correction).unwrap();
    assert!(json.contains(r#""field":"full_name""#), "{json}");
    assert_eq!(serde_json::from_str::<CivilEvent>(&json).unwrap(), correction);
}
