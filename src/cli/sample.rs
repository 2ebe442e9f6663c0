//! Deterministic sample records for the demo and the tests: plausible
//! Vietnamese names and addresses, keys unique per (ward slot, index).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::model::{Body, Business, Citizen, LandParcel, Record, WardCode};

const FAMILY: &[&str] = &[
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
];
const MIDDLE: &[&str] = &["Văn", "Thị", "Hữu", "Đức", "Minh", "Thanh", "Ngọc", "Quang"];
const GIVEN: &[&str] = &[
    "An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hương", "Khánh", "Lan", "Long", "Mai",
    "Nam", "Phúc", "Quân", "Thảo", "Trang", "Tuấn", "Vy", "Yến",
];
const STREETS: &[&str] = &[
    "Hàng Bông",
    "Phố Huế",
    "Ngọc Lâm",
    "Nguyễn Văn Cừ",
    "Tây Sơn",
    "Láng Hạ",
    "Kim Mã",
    "Đội Cấn",
];
const LAND_USE: &[&str] = &["ODT", "ONT", "LUC", "CLN", "BHK", "TMD"];

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.gen_range(0..from.len())]
}

/// The `i`-th sample record of the ward in slot `slot` (0-99). Every third
/// record is a business, every fifth a land parcel, the rest citizens.
/// `version` varies the non-key fields, to make updates. Keys are unique
/// across slots for `i < 10_000`.
pub fn record(ward: &WardCode, slot: u32, i: u32, version: u32) -> Record {
    let mut rng = StdRng::seed_from_u64(((slot as u64) << 40) ^ ((i as u64) << 8) ^ version as u64);
    let name = format!(
        "{} {} {}",
        pick(&mut rng, FAMILY),
        pick(&mut rng, MIDDLE),
        pick(&mut rng, GIVEN)
    );
    let address = format!(
        "{} {}, {}",
        rng.gen_range(1..200),
        pick(&mut rng, STREETS),
        ward
    );
    let body = if i % 5 == 4 {
        Body::Land(LandParcel {
            commune_code: ward.to_string(),
            map_sheet: format!("{}", 1 + i / 500),
            parcel_number: format!("{}", i % 500),
            area_m2: f64::from(rng.gen_range(300..50_000u32)) / 10.0,
            land_use_type: pick(&mut rng, LAND_USE).to_string(),
            owner_ids: vec![personal_id(slot, i)],
        })
    } else if i % 3 == 2 {
        Body::Business(Business {
            enterprise_code: format!("01{:08}", slot * 1_000_000 + i),
            name: format!("Hộ kinh doanh {name}"),
            owner_personal_id: personal_id(slot, i),
            address,
        })
    } else {
        Body::Citizen(Citizen {
            personal_id: personal_id(slot, i),
            full_name: name,
            date_of_birth: format!(
                "{}-{:02}-{:02}",
                rng.gen_range(1940..2020),
                rng.gen_range(1..13),
                rng.gen_range(1..29)
            ),
            permanent_address: address,
        })
    };
    Record {
        ward: ward.clone(),
        body,
    }
}

/// A well-formed personal id (Hanoi prefix 001), unique per (slot, i) for
/// `slot < 100` and `i < 10_000`.
fn personal_id(slot: u32, i: u32) -> String {
    format!("0010{:02}{:06}", 50 + slot % 50, slot * 10_000 + i % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn samples_validate_and_keys_are_unique_across_wards() {
        let wards = ["00082", "00145", "09784"].map(|w| WardCode::parse(w).unwrap());
        let mut keys = HashSet::new();
        for (slot, w) in wards.iter().enumerate() {
            for i in 0..3000 {
                let r = record(w, slot as u32, i, 0);
                let key = r.validate().unwrap_or_else(|e| panic!("{r:?}: {e}"));
                assert!(keys.insert(key.clone()), "duplicate {key}");
                assert_eq!(record(w, slot as u32, i, 1).validate().unwrap(), key);
            }
        }
    }
}
