//! A seeded generator of realistic ward records: households of citizens
//! with consistent ids, dates and civil-status events; businesses with valid
//! enterprise codes and branches; land parcels with owners, certificates and
//! registrations. The same seed always gives the same records. Used by
//! `wardsync gen`, the demo, the tests and the benchmarks.

mod corrupt;
mod names;

use std::collections::{HashMap, VecDeque};

use chrono::{Datelike, Duration, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use corrupt::{amend, corrupt, plant_civil};

use crate::model::reference::{PERSONAL_ID_PREFIXES, commune, communes_of};
use crate::model::{
    Body, Business, BusinessForm, BusinessStatus, Citizen, CivilEvent, EventKind, LandParcel,
    LandRegistration, MaritalStatus, Record, RegistrationKind, Relationship, Residence, Sex, WardCode,
    century_sex_digit, enterprise_check_digit,
};

/// How many records of each kind to generate for one ward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    /// Citizens (in whole households, so the count may exceed this by a few).
    pub citizens: u64,
    /// Businesses (branches count as businesses).
    pub businesses: u64,
    /// Land parcels.
    pub parcels: u64,
}

impl Plan {
    /// A ward of `people` residents with the usual numbers of businesses
    /// (one per 20 residents) and parcels (one per 4).
    pub fn for_population(people: u64) -> Plan {
        Plan { citizens: people, businesses: people / 20, parcels: people / 4 }
    }
}

/// Population of each commune of a province, long-tailed between 6,500 and
/// 215,000 as the 2025 units are, times `scale`; deterministic per seed.
pub fn city_populations(province: &str, seed: u64, scale: f64) -> Vec<(WardCode, u64)> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c17e);
    communes_of(province)
        .into_iter()
        .map(|c| {
            let u: f64 = rng.r#gen();
            let people = 6_500.0 * (215_000.0f64 / 6_500.0).powf(u * u * u);
            let code = WardCode::parse(c.code).expect("reference codes are valid");
            (code, ((people * scale).round() as u64).max(1))
        })
        .collect()
}

/// `count` records of a ward (citizens, businesses and parcels in the
/// usual proportions) in a shuffled order: a ready-made workload for demos
/// and tests.
pub fn sample(ward: &WardCode, count: usize, seed: u64) -> Vec<Record> {
    use rand::seq::SliceRandom;
    let c = count as u64;
    let plan = Plan { citizens: c * 7 / 10, businesses: c / 10 + 1, parcels: c / 5 + 1 };
    let mut records: Vec<Record> = WardGen::new(ward, seed, crate::clock::today()).records(plan).collect();
    records.truncate(count);
    records.shuffle(&mut StdRng::seed_from_u64(seed));
    records
}

/// Generates the records of one ward.
pub struct WardGen {
    ward: WardCode,
    province: &'static str,
    slot: u32,
    urban: bool,
    rng: StdRng,
    today: NaiveDate,
    id_buckets: HashMap<(usize, u8, u8), u32>,
    businesses: u32,
    parcels: u32,
    households: u32,
    adults: Vec<String>,
    firms: Vec<String>,
}

impl WardGen {
    /// A generator for `ward` (a commune in the official list), as of `today`.
    pub fn new(ward: &WardCode, seed: u64, today: NaiveDate) -> WardGen {
        let c = commune(ward.as_str()).unwrap_or_else(|| panic!("{ward} is not an official commune code"));
        let slot = communes_of(c.province).iter().position(|x| x.code == c.code).expect("listed") as u32;
        WardGen {
            ward: ward.clone(),
            province: c.province,
            slot,
            urban: c.name.starts_with("Phường"),
            rng: StdRng::seed_from_u64(seed ^ (u64::from(slot) << 32) ^ 0x77a2d),
            today,
            id_buckets: HashMap::new(),
            businesses: 0,
            parcels: 0,
            households: 0,
            adults: Vec::new(),
            firms: Vec::new(),
        }
    }

    /// The records of `plan`, generated lazily: citizens by household, then
    /// businesses, then land parcels.
    pub fn records(self, plan: Plan) -> impl Iterator<Item = Record> {
        let mut g = self;
        let mut pending = VecDeque::new();
        let (mut citizens, mut businesses, mut parcels) = (0u64, 0u64, 0u64);
        std::iter::from_fn(move || {
            loop {
                if let Some(r) = pending.pop_front() {
                    return Some(r);
                }
                if citizens < plan.citizens {
                    let h = g.household();
                    citizens += h.len() as u64;
                    pending.extend(h);
                } else if businesses < plan.businesses {
                    let b = g.business();
                    businesses += b.len() as u64;
                    pending.extend(b);
                } else if parcels < plan.parcels {
                    parcels += 1;
                    pending.push_back(g.parcel());
                } else {
                    return None;
                }
            }
        })
    }

    fn record(&self, body: Body) -> Record {
        Record { ward: self.ward.clone(), body }
    }

    fn date_of_birth(&mut self, age: i64) -> NaiveDate {
        let days = age * 365 + self.rng.gen_range(0..365);
        (self.today - Duration::days(days)).max(NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid"))
    }

    /// A personal id unique within the province: province prefix, century
    /// and sex, year, then a serial made of this ward's slot and a counter.
    fn personal_id(&mut self, born: NaiveDate, sex: Sex) -> String {
        let digit = century_sex_digit(born.year(), sex).expect("generated years are encodable");
        let yy = born.year().rem_euclid(100) as u8;
        let home = PERSONAL_ID_PREFIXES.iter().position(|p| p[1..] == *self.province);
        loop {
            let prefix = match home {
                Some(h) if self.rng.gen_bool(0.75) => h,
                _ => self.rng.gen_range(0..PERSONAL_ID_PREFIXES.len()),
            };
            let n = self.id_buckets.entry((prefix, digit, yy)).or_insert(0);
            if *n < 1000 {
                *n += 1;
                let serial = self.slot * 1000 + (*n - 1);
                return format!("{}{digit}{yy:02}{serial:06}", PERSONAL_ID_PREFIXES[prefix]);
            }
        }
    }

    fn other_commune(&mut self) -> String {
        let all = communes_of(self.province);
        all[self.rng.gen_range(0..all.len())].code.to_string()
    }

    fn person(&mut self, age: i64, sex: Sex, family: &str, household: &str, rel: Relationship) -> Citizen {
        let born = self.date_of_birth(age);
        let id = self.personal_id(born, sex);
        let registered_by = if self.rng.gen_bool(0.8) { self.ward.to_string() } else { self.other_commune() };
        let temporary = self.rng.gen_bool(0.1).then(|| Residence {
            address: names::address(&mut self.rng),
            commune_code: self.other_commune(),
        });
        let c = Citizen {
            personal_id: id,
            full_name: names::full_name(&mut self.rng, family, sex),
            date_of_birth: born,
            sex,
            ethnicity: names::ethnicity(&mut self.rng).to_string(),
            nationality: "VN".into(),
            household_id: household.to_string(),
            relationship_to_head: rel,
            permanent_residence: Residence { address: String::new(), commune_code: self.ward.to_string() },
            temporary_residence: temporary,
            marital_status: MaritalStatus::Single,
            phone: if age >= 16 && self.rng.gen_bool(0.8) {
                names::phone(&mut self.rng)
            } else {
                String::new()
            },
            events: vec![CivilEvent {
                kind: EventKind::Birth,
                date: born,
                registered_by,
                spouse_id: String::new(),
                reference: String::new(),
                field: String::new(),
                value: String::new(),
            }],
        };
        if age >= 18 && self.adults.len() < 20_000 {
            self.adults.push(c.personal_id.clone());
        }
        c
    }

    /// One household: a head, perhaps a spouse, children and a parent.
    pub fn household(&mut self) -> Vec<Record> {
        self.households += 1;
        let hh = format!("HK-{}-{:06}", self.ward, self.households);
        let address = names::address(&mut self.rng);
        let family = names::family(&mut self.rng);
        let head_age = self.rng.gen_range(22..86);
        let head_sex = if self.rng.gen_bool(0.7) { Sex::Male } else { Sex::Female };
        let mut members = vec![self.person(head_age, head_sex, family, &hh, Relationship::Head)];
        if head_age >= 24 && self.rng.gen_bool(0.78) {
            let sex = if head_sex == Sex::Male { Sex::Female } else { Sex::Male };
            let age = (head_age + self.rng.gen_range(-5..6)).max(20);
            let spouse_family = names::family(&mut self.rng);
            let mut spouse = self.person(age, sex, spouse_family, &hh, Relationship::Spouse);
            let younger = members[0].date_of_birth.max(spouse.date_of_birth);
            let wed = (younger + Duration::days(365 * self.rng.gen_range(20..30))).min(self.today);
            let event = |spouse_id: &str| CivilEvent {
                kind: EventKind::Marriage,
                date: wed,
                registered_by: self.ward.to_string(),
                spouse_id: spouse_id.to_string(),
                reference: String::new(),
                field: String::new(),
                value: String::new(),
            };
            let head = &mut members[0];
            head.marital_status = MaritalStatus::Married;
            spouse.marital_status = MaritalStatus::Married;
            head.events.push(event(&spouse.personal_id));
            spouse.events.push(event(&head.personal_id));
            members.push(spouse);
        } else if head_age > 65 && self.rng.gen_bool(0.6) {
            members[0].marital_status = MaritalStatus::Widowed;
        } else if head_age > 35 && self.rng.gen_bool(0.15) {
            members[0].marital_status = MaritalStatus::Divorced;
        }
        let children = if head_age < 24 { 0 } else { self.rng.gen_range(0..4) };
        for _ in 0..children {
            let age = self.rng.gen_range(0..=(head_age - 20).min(40));
            let sex = if self.rng.gen_bool(0.5) { Sex::Male } else { Sex::Female };
            members.push(self.person(age, sex, family, &hh, Relationship::Child));
        }
        if head_age < 50 && self.rng.gen_bool(0.15) {
            let age = (head_age + self.rng.gen_range(20..35)).min(100);
            let family = names::family(&mut self.rng);
            members.push(self.person(age, Sex::Female, family, &hh, Relationship::Parent));
        }
        members
            .into_iter()
            .map(|mut c| {
                c.permanent_residence.address = address.clone();
                self.record(Body::Citizen(c))
            })
            .collect()
    }

    fn owner(&mut self) -> String {
        if self.adults.is_empty() {
            let age = self.rng.gen_range(25..70);
            let born = self.date_of_birth(age);
            let sex = if self.rng.gen_bool(0.5) { Sex::Male } else { Sex::Female };
            return self.personal_id(born, sex);
        }
        self.adults[self.rng.gen_range(0..self.adults.len())].clone()
    }

    /// A new enterprise code: province, ward slot and counter, check digit.
    fn enterprise_code(&mut self) -> String {
        loop {
            self.businesses += 1;
            let n = self.businesses;
            let block = (self.province.parse::<u32>().unwrap_or(0) + 50 * (n / 10_000)) % 100;
            let first9 = format!("{block:02}{:03}{:04}", self.slot % 1000, n % 10_000);
            let digits: [u8; 9] =
                first9.bytes().map(|b| b - b'0').collect::<Vec<_>>().try_into().expect("9 digits");
            if let Some(check) = enterprise_check_digit(&digits) {
                return format!("{first9}{check}");
            }
        }
    }

    /// A business, with its branches if it has any.
    pub fn business(&mut self) -> Vec<Record> {
        let code = self.enterprise_code();
        let owner = self.owner();
        let (sector, trade) = names::trade(&mut self.rng);
        let household = self.rng.gen_bool(0.6);
        let form = if household { BusinessForm::Household } else { BusinessForm::Enterprise };
        let family = names::family(&mut self.rng);
        let sex = if self.rng.gen_bool(0.5) { Sex::Male } else { Sex::Female };
        let person = names::full_name(&mut self.rng, family, sex);
        let name = if household {
            format!("Hộ kinh doanh {trade} {person}")
        } else {
            format!("Công ty TNHH {trade} {family} {}", self.rng.gen_range(1..100))
        };
        let registered = self.today - Duration::days(self.rng.gen_range(30..8000));
        let status = match self.rng.gen_range(0..20) {
            0 => BusinessStatus::Dissolved,
            1 => BusinessStatus::Suspended,
            _ => BusinessStatus::Active,
        };
        let main = Business {
            enterprise_code: code.clone(),
            form,
            name,
            owner_personal_id: owner,
            address: names::address(&mut self.rng),
            sector_code: sector.to_string(),
            status,
            registration_date: registered,
        };
        if self.firms.len() < 5_000 {
            self.firms.push(code.clone());
        }
        let branches = if household || !self.rng.gen_bool(0.15) { 0 } else { self.rng.gen_range(1..3) };
        let mut out = vec![self.record(Body::Business(main.clone()))];
        for b in 1..=branches {
            let branch = Business {
                enterprise_code: format!("{code}-{b:03}"),
                form: BusinessForm::Branch,
                name: format!("{} - Chi nhánh {b}", main.name),
                address: names::address(&mut self.rng),
                registration_date: registered
                    + Duration::days(self.rng.gen_range(0..365)).min(self.today - registered),
                ..main.clone()
            };
            out.push(self.record(Body::Business(branch)));
        }
        out
    }

    /// A land parcel with owners, a certificate and perhaps registrations.
    pub fn parcel(&mut self) -> Record {
        self.parcels += 1;
        let n = self.parcels;
        let sheet = (n - 1) / 400 + 1;
        let parcel = (n - 1) % 400 + 1;
        let aliases = if self.rng.gen_bool(0.5) {
            vec![format!(
                "{:05}:{}:{}",
                self.rng.gen_range(1..32_000),
                self.rng.gen_range(1..80),
                self.rng.gen_range(1..900)
            )]
        } else {
            Vec::new()
        };
        let mut owners = vec![self.owner()];
        if self.rng.gen_bool(0.4) {
            owners.push(self.owner());
        }
        if !self.firms.is_empty() && self.rng.gen_bool(0.05) {
            owners = vec![self.firms[self.rng.gen_range(0..self.firms.len())].clone()];
        }
        owners.dedup();
        let (use_type, area) = match (self.urban, self.rng.gen_range(0..10)) {
            (true, 0..=7) => ("ODT", self.rng.gen_range(30.0..250.0)),
            (true, _) => ("TMD", self.rng.gen_range(80.0..1500.0)),
            (false, 0..=3) => ("ONT", self.rng.gen_range(100.0..600.0)),
            (false, 4..=7) => ("LUC", self.rng.gen_range(300.0..5000.0)),
            (false, _) => ("CLN", self.rng.gen_range(200.0..3000.0)),
        };
        let mut registrations = Vec::new();
        if self.rng.gen_bool(0.2) {
            let party = if self.firms.is_empty() {
                self.owner()
            } else {
                self.firms[self.rng.gen_range(0..self.firms.len())].clone()
            };
            registrations.push(LandRegistration {
                kind: RegistrationKind::Mortgage,
                date: self.today - Duration::days(self.rng.gen_range(1..3000)),
                party,
                note: String::new(),
            });
        }
        let letters = [b'A' + self.rng.gen_range(0..26), b'A' + self.rng.gen_range(0..26)];
        let certificate_serial =
            format!("{} {:06}", String::from_utf8_lossy(&letters), self.rng.gen_range(0..1_000_000));
        let address = names::address(&mut self.rng);
        self.record(Body::Land(LandParcel {
            commune_code: self.ward.to_string(),
            map_sheet: sheet.to_string(),
            parcel_number: parcel.to_string(),
            aliases,
            area_m2: (area * 10.0f64).round() / 10.0,
            land_use_type: use_type.to_string(),
            owners,
            certificate_serial,
            address,
            registrations,
        }))
    }
}

#[cfg(test)]
mod tests;
