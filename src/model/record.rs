//! The three record kinds, the record envelope that names its owning ward,
//! and their validation.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::enums::{
    BusinessForm, BusinessStatus, EventKind, MaritalStatus, RegistrationKind, Relationship, Sex,
    check_land_use,
};
use super::ids::{check_enterprise_code, check_personal_id, check_personal_id_matches};
use super::key::check_cadastral_part;
use super::reference::commune;
use super::{Kind, RecordKey, ValidationError, WardCode};

/// What validation needs to know about the world: today's date and which
/// province's communes may own records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Dates after this day are in the future.
    pub today: NaiveDate,
    /// If set, the 2-digit province code every owning ward must belong to.
    pub province: Option<String>,
}

/// An address with the commune it lies in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Residence {
    /// Street address, e.g. "12 Hàng Bông".
    pub address: String,
    /// 5-digit code of the commune.
    pub commune_code: String,
}

/// A civil-status event (birth, marriage, divorce, death, or a correction
/// of the person's identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CivilEvent {
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub date: NaiveDate,
    /// Commune code of the ward that registered it.
    pub registered_by: String,
    /// Personal id of the spouse, for marriages and divorces; may be empty.
    pub spouse_id: String,
    /// What the register records with it: the marriage certificate number,
    /// the court decision of a divorce, the place of death; may be empty.
    pub reference: String,
    /// A correction: the field it corrects (`full_name`, `date_of_birth`
    /// or `sex`); empty for other events.
    pub field: String,
    /// A correction: the field's value from then on, as text; empty for
    /// other events.
    pub value: String,
}

/// A resident of a ward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Citizen {
    /// 12-digit personal identification number: the key.
    pub personal_id: String,
    /// Full name with diacritics, e.g. "Nguyễn Văn An".
    pub full_name: String,
    /// Date of birth.
    #[serde(with = "super::strict::date")]
    pub date_of_birth: NaiveDate,
    /// Sex.
    pub sex: Sex,
    /// Ethnic group, e.g. "Kinh".
    pub ethnicity: String,
    /// Nationality, ISO 3166 two-letter code, e.g. "VN".
    pub nationality: String,
    /// Household book identifier; empty if not registered in a household.
    #[serde(default)]
    pub household_id: String,
    /// Relationship to the head of the household.
    pub relationship_to_head: Relationship,
    /// Permanent residence.
    pub permanent_residence: Residence,
    /// Temporary residence, if registered.
    #[serde(default)]
    pub temporary_residence: Option<Residence>,
    /// Marital status.
    pub marital_status: MaritalStatus,
    /// Contact telephone; may be empty.
    #[serde(default)]
    pub phone: String,
    /// Civil-status events, oldest first.
    #[serde(default)]
    pub events: Vec<CivilEvent>,
}

/// An enterprise, a branch or a household business.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Business {
    /// Enterprise code (10 digits with check digit, or `NNNNNNNNNN-NNN` for a
    /// branch); for a household business, its registration (tax) number: the key.
    pub enterprise_code: String,
    /// Legal form.
    pub form: BusinessForm,
    /// Registered name.
    pub name: String,
    /// Personal id of the owner or legal representative.
    pub owner_personal_id: String,
    /// Head-office address.
    pub address: String,
    /// Main business line, VSIC code of 4 or 5 digits.
    pub sector_code: String,
    /// Registration status.
    pub status: BusinessStatus,
    /// Date of first registration.
    #[serde(with = "super::strict::date")]
    pub registration_date: NaiveDate,
}

/// A registration recorded against a land parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandRegistration {
    /// What was registered.
    pub kind: RegistrationKind,
    /// When.
    #[serde(with = "super::strict::date")]
    pub date: NaiveDate,
    /// The other party (bank, buyer, heir): personal id or enterprise code.
    pub party: String,
    /// Free text.
    #[serde(default)]
    pub note: String,
}

/// A land parcel as kept by the land registration office.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandParcel {
    /// Commune code the parcel is registered under.
    pub commune_code: String,
    /// Map sheet number (text in cadastral systems).
    pub map_sheet: String,
    /// Parcel number on the sheet (text).
    pub parcel_number: String,
    /// Keys the parcel had before the 2025 merger (`COMMUNE:SHEET:PARCEL`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Area in square metres.
    pub area_m2: f64,
    /// Land-use type code, e.g. ODT, ONT, LUC, CLN.
    pub land_use_type: String,
    /// Personal ids or enterprise codes of the owners.
    pub owners: Vec<String>,
    /// Serial of the land-use certificate, e.g. "AB 123456"; empty if none issued.
    #[serde(default)]
    pub certificate_serial: String,
    /// Address of the parcel.
    #[serde(default)]
    pub address: String,
    /// Mortgages, transfers and other registrations, oldest first.
    #[serde(default)]
    pub registrations: Vec<LandRegistration>,
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
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The owning ward.
    pub ward: WardCode,
    /// What the record says.
    pub body: Body,
}

/// Collects violations under a field path prefix.
struct Check<'a> {
    err: &'a mut ValidationError,
    ctx: &'a Context,
    path: &'static str,
}

impl Check<'_> {
    fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.err.add(format!("{}.{field}", self.path), reason);
    }
    fn result(&mut self, field: &str, r: Result<(), String>) {
        if let Err(reason) = r {
            self.fail(field, reason);
        }
    }
    fn required(&mut self, field: &str, v: &str) {
        if v.trim().is_empty() {
            self.fail(field, "required");
        }
    }
    fn max_len(&mut self, field: &str, v: &str, max: usize) {
        if v.chars().count() > max {
            self.fail(field, format!("longer than {max} characters"));
        }
    }
    fn past(&mut self, field: &str, d: NaiveDate) {
        if d > self.ctx.today {
            self.fail(field, format!("{d} is in the future"));
        } else if d < super::strict::earliest_date() {
            self.fail(field, format!("{d} is before {}", super::strict::earliest_date()));
        }
    }
    fn at_most(&mut self, field: &str, n: usize, max: usize) {
        if n > max {
            self.fail(field, format!("{n} entries; the limit is {max}"));
        }
    }
    fn commune(&mut self, field: &str, code: &str) {
        if commune(code).is_none() {
            self.fail(field, format!("{code:?} is not a commune code in force since 1 July 2025"));
        }
    }
    fn party(&mut self, field: &str, id: &str) {
        if check_personal_id(id).is_err() && check_enterprise_code(id).is_err() {
            self.fail(field, format!("{id:?} is neither a personal id nor an enterprise code"));
        }
    }
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

    /// The record's key, if the id its body carries is well formed.
    pub fn key(&self) -> Result<RecordKey, ValidationError> {
        RecordKey::new(self.kind(), &self.key_id())
    }

    /// The name a record is searched by: a citizen's full name, a
    /// business's name; land parcels have none.
    pub fn name(&self) -> Option<&str> {
        match &self.body {
            Body::Citizen(c) => Some(&c.full_name),
            Body::Business(b) => Some(&b.name),
            Body::Land(_) => None,
        }
    }

    /// Personal ids or enterprise codes this record names as owners.
    pub fn owner_ids(&self) -> Vec<&str> {
        match &self.body {
            Body::Citizen(_) => Vec::new(),
            Body::Business(b) => vec![b.owner_personal_id.as_str()],
            Body::Land(l) => l.owners.iter().map(String::as_str).collect(),
        }
    }

    /// Validates the record and returns its key. Every violation is
    /// reported, each with its field path (`record.citizen.sex`...).
    pub fn validate(&self, ctx: &Context) -> Result<RecordKey, ValidationError> {
        let mut err = ValidationError::default();
        self.check_form(&mut err);
        self.check_content(ctx, err)
    }

    /// [`Record::validate`] of a record whose form was checked already
    /// (a change's, as the city decoded it: [`super::Change::check_form`]),
    /// so that its text is not serialized and scanned twice.
    pub fn validate_content(&self, ctx: &Context) -> Result<RecordKey, ValidationError> {
        self.check_content(ctx, ValidationError::default())
    }

    /// Everything [`Record::validate`] checks besides the form, added to `err`.
    fn check_content(&self, ctx: &Context, mut err: ValidationError) -> Result<RecordKey, ValidationError> {
        match commune(self.ward.as_str()) {
            None => err.add(
                "record.ward",
                format!("{} is not a commune code in force since 1 July 2025", self.ward),
            ),
            Some(c) => {
                if let Some(p) = ctx.province.as_deref().filter(|p| *p != c.province) {
                    err.add(
                        "record.ward",
                        format!("{} ({}) is not a unit of this city (province {p})", self.ward, c.name),
                    );
                }
            }
        }
        match &self.body {
            Body::Citizen(c) => {
                validate_citizen(c, &mut Check { err: &mut err, ctx, path: "record.citizen" })
            }
            Body::Business(b) => {
                validate_business(b, &mut Check { err: &mut err, ctx, path: "record.business" })
            }
            Body::Land(l) => validate_land(l, &mut Check { err: &mut err, ctx, path: "record.land" }),
        }
        err.into_result()?;
        self.key()
    }

    /// Why the record is plainly not kept by the ward it names, if it is
    /// not: who keeps a record follows from the record (a citizen, the ward
    /// of their permanent residence, so a move is a residence transfer; a
    /// parcel, the ward it lies in). Checked where a record is given its
    /// owner (a ward's put of its own record, a change that writes the
    /// owner), so no ward creates under its own name a record plainly
    /// another's: the field at fault, and why.
    pub fn kept_elsewhere(&self) -> Option<(&'static str, String)> {
        let (field, commune) = match &self.body {
            Body::Citizen(c) => {
                ("record.citizen.permanent_residence.commune_code", &c.permanent_residence.commune_code)
            }
            Body::Land(l) => ("record.land.commune_code", &l.commune_code),
            Body::Business(_) => return None,
        };
        (commune != self.ward.as_str()).then(|| {
            (
                field,
                format!(
                    "{commune} is not ward {}: a record is kept by the ward it is in (a person who moved is \
                     taken over with a residence transfer)",
                    self.ward
                ),
            )
        })
    }

    /// What the record's form alone says is wrong with it, added to `err`:
    /// a text with a control or invisible character, not NFC, or too long;
    /// the whole too large. Checked as a change is decoded, before anything
    /// of it reaches a store, and again by [`Record::validate`].
    pub fn check_form(&self, err: &mut ValidationError) {
        check_text(&serde_json::to_value(&self.body).expect("records serialize"), "record", err);
        let size = json_len(self);
        if size > super::strict::MAX_RECORD_BYTES {
            err.add(
                "record",
                format!("is {size} bytes as JSON; the limit is {}", super::strict::MAX_RECORD_BYTES),
            );
        }
    }

    /// The record with every text in Unicode NFC, as every entry point
    /// stores it (the same name typed in NFC or NFD is one value).
    pub fn normalized(self) -> Record {
        fn nfc(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::String(s) => *s = super::strict::nfc(s),
                serde_json::Value::Array(a) => a.iter_mut().for_each(nfc),
                serde_json::Value::Object(o) => o.values_mut().for_each(nfc),
                _ => {}
            }
        }
        let mut v = serde_json::to_value(&self).expect("records serialize");
        nfc(&mut v);
        serde_json::from_value(v).unwrap_or(self)
    }
}

/// The length of `value` as JSON, counted as it is written, not kept.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    serde_json::to_writer(&mut n, value).expect("records serialize");
    n.0
}

/// Every text of a record (a JSON value, at `path`): no control or
/// invisible characters, NFC, at most [`super::strict::MAX_TEXT`] characters.
fn check_text(v: &serde_json::Value, path: &str, err: &mut ValidationError) {
    match v {
        serde_json::Value::String(s) => {
            if let Some(why) = super::strict::text_problem(s, super::strict::MAX_TEXT) {
                err.add(path.to_string(), why);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_text(x, &format!("{path}[{i}]"), err);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                check_text(x, &format!("{path}.{k}"), err);
            }
        }
        _ => {}
    }
}

fn validate_residence(r: &Residence, field: &str, v: &mut Check) {
    v.required(&format!("{field}.address"), &r.address);
    v.max_len(&format!("{field}.address"), &r.address, 200);
    v.commune(&format!("{field}.commune_code"), &r.commune_code);
}

fn validate_citizen(c: &Citizen, v: &mut Check) {
    match check_personal_id(&c.personal_id) {
        Err(e) => v.fail("personal_id", e),
        Ok(()) => v.result("personal_id", check_personal_id_matches(&c.personal_id, c.date_of_birth, c.sex)),
    }
    v.required("full_name", &c.full_name);
    v.max_len("full_name", &c.full_name, 100);
    v.past("date_of_birth", c.date_of_birth);
    v.required("ethnicity", &c.ethnicity);
    if c.nationality.len() != 2 || !c.nationality.bytes().all(|b| b.is_ascii_uppercase()) {
        v.fail("nationality", format!("{:?} is not a two-letter country code such as VN", c.nationality));
    }
    v.max_len("household_id", &c.household_id, 32);
    validate_residence(&c.permanent_residence, "permanent_residence", v);
    if let Some(t) = &c.temporary_residence {
        validate_residence(t, "temporary_residence", v);
    }
    let phone_ok =
        |p: &str| (9..=15).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit() || b == b'+');
    if !c.phone.is_empty() && !phone_ok(&c.phone) {
        v.fail("phone", format!("{:?} is not a telephone number", c.phone));
    }
    v.at_most("events", c.events.len(), 50);
    for (i, e) in c.events.iter().enumerate() {
        let f = |name: &str| format!("events[{i}].{name}");
        v.past(&f("date"), e.date);
        if e.date < c.date_of_birth {
            v.fail(&f("date"), format!("{} is before the date of birth", e.date));
        }
        v.commune(&f("registered_by"), &e.registered_by);
        if !e.spouse_id.is_empty() {
            v.result(&f("spouse_id"), check_personal_id(&e.spouse_id));
        }
        v.max_len(&f("reference"), &e.reference, 200);
        if let Err((name, why)) = super::civil::correction_form(e) {
            v.fail(&f(name), why);
        }
    }
}

fn validate_business(b: &Business, v: &mut Check) {
    v.result("enterprise_code", check_enterprise_code(&b.enterprise_code));
    let is_branch = b.enterprise_code.contains('-');
    if is_branch != (b.form == BusinessForm::Branch) {
        v.fail(
            "form",
            format!(
                "{} does not match code {:?}: only branch codes have a -NNN suffix",
                b.form, b.enterprise_code
            ),
        );
    }
    v.required("name", &b.name);
    v.max_len("name", &b.name, 200);
    v.result("owner_personal_id", check_personal_id(&b.owner_personal_id));
    v.required("address", &b.address);
    if !(4..=5).contains(&b.sector_code.len()) || !b.sector_code.bytes().all(|c| c.is_ascii_digit()) {
        v.fail("sector_code", format!("{:?} is not a VSIC code of 4 or 5 digits", b.sector_code));
    }
    v.past("registration_date", b.registration_date);
}

fn validate_land(l: &LandParcel, v: &mut Check) {
    v.commune("commune_code", &l.commune_code);
    v.result("map_sheet", check_cadastral_part("map sheet", &l.map_sheet));
    v.result("parcel_number", check_cadastral_part("parcel number", &l.parcel_number));
    v.at_most("aliases", l.aliases.len(), 20);
    v.at_most("owners", l.owners.len(), 20);
    v.at_most("registrations", l.registrations.len(), 100);
    for (i, a) in l.aliases.iter().enumerate() {
        if let Err(e) = RecordKey::new(Kind::Land, a) {
            v.fail(&format!("aliases[{i}]"), e.violations[0].reason.clone());
        }
    }
    // From a tenth of a square metre to 1,000 km² (a parcel larger than a commune is a typo).
    if !(l.area_m2.is_finite() && (0.1..=1e9).contains(&l.area_m2)) {
        v.fail("area_m2", format!("{} is not an area from 0.1 to 1,000,000,000 m²", l.area_m2));
    }
    v.result("land_use_type", check_land_use(&l.land_use_type));
    if l.owners.is_empty() {
        v.fail("owners", "at least one owner is required");
    }
    for (i, o) in l.owners.iter().enumerate() {
        v.party(&format!("owners[{i}]"), o);
        if l.owners[..i].contains(o) {
            v.fail(&format!("owners[{i}]"), format!("{o:?} is listed twice"));
        }
    }
    let s = &l.certificate_serial;
    let serial_ok = s.is_empty() || {
        let (letters, digits) = s.split_at(s.char_indices().nth(2).map_or(s.len(), |(i, _)| i));
        letters.chars().all(|c| c.is_ascii_uppercase())
            && letters.chars().count() == 2
            && (6..=8).contains(&digits.trim_start().len())
            && digits.trim_start().bytes().all(|b| b.is_ascii_digit())
    };
    if !serial_ok {
        v.fail(
            "certificate_serial",
            format!("{s:?} is not a certificate serial such as \"AB 123456\" (two letters A-Z, then 6 to 8 digits)"),
        );
    }
    for (i, r) in l.registrations.iter().enumerate() {
        v.past(&format!("registrations[{i}].date"), r.date);
        v.party(&format!("registrations[{i}].party"), &r.party);
    }
}
