//! Vietnamese names and places for generated records, with realistic
//! frequencies for family names.

use rand::Rng;
use rand::rngs::StdRng;

use crate::model::Sex;

/// Family names with their approximate share of the population (per mille).
const FAMILY: &[(&str, u32)] = &[
    ("Nguyễn", 380),
    ("Trần", 110),
    ("Lê", 95),
    ("Phạm", 70),
    ("Hoàng", 31),
    ("Huỳnh", 20),
    ("Phan", 45),
    ("Vũ", 22),
    ("Võ", 17),
    ("Đặng", 21),
    ("Bùi", 20),
    ("Đỗ", 14),
    ("Hồ", 13),
    ("Ngô", 13),
    ("Dương", 10),
    ("Lý", 5),
    ("Đinh", 8),
    ("Trịnh", 6),
    ("Mai", 5),
    ("Tạ", 3),
];
const MIDDLE_MALE: &[&str] = &["Văn", "Hữu", "Đức", "Minh", "Quang", "Thành", "Công", "Ngọc", "Xuân", "Đình"];
const MIDDLE_FEMALE: &[&str] = &["Thị", "Ngọc", "Thu", "Thanh", "Minh", "Hồng", "Kim", "Phương", "Bảo"];
const GIVEN_MALE: &[&str] = &[
    "An", "Bình", "Cường", "Dũng", "Hải", "Hiếu", "Hùng", "Huy", "Khánh", "Long", "Minh", "Nam", "Phúc",
    "Quân", "Sơn", "Thắng", "Tuấn", "Việt", "Vinh", "Đạt", "Đức", "Trung", "Kiên",
];
const GIVEN_FEMALE: &[&str] = &[
    "Anh", "Chi", "Dung", "Giang", "Hà", "Hằng", "Hoa", "Hương", "Lan", "Linh", "Mai", "Nga", "Ngọc",
    "Nhung", "Phương", "Thảo", "Trang", "Tuyết", "Vy", "Yến", "Loan", "Quỳnh",
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
    "Tràng Thi",
    "Lý Thường Kiệt",
    "Hai Bà Trưng",
    "Lê Duẩn",
    "Trần Phú",
    "Quang Trung",
];
const ETHNIC: &[(&str, u32)] = &[
    ("Kinh", 855),
    ("Tày", 19),
    ("Thái", 18),
    ("Mường", 15),
    ("Hoa", 8),
    ("Khmer", 13),
    ("Nùng", 11),
    ("H'Mông", 13),
];
const TRADES: &[(&str, &str)] = &[
    ("4711", "Tạp hoá"),
    ("5610", "Quán ăn"),
    ("4771", "Cửa hàng thời trang"),
    ("9602", "Cắt tóc"),
    ("4520", "Sửa chữa xe máy"),
    ("4722", "Cửa hàng thực phẩm"),
    ("5510", "Nhà nghỉ"),
    ("6201", "Phần mềm"),
    ("4663", "Vật liệu xây dựng"),
    ("8559", "Trung tâm ngoại ngữ"),
];

fn weighted<'a>(rng: &mut StdRng, table: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total);
    for (v, w) in table {
        if x < *w {
            return v;
        }
        x -= w;
    }
    table[0].0
}

/// Picks one of `from`.
pub fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.gen_range(0..from.len())]
}

/// A family name, by frequency.
pub fn family(rng: &mut StdRng) -> &'static str {
    weighted(rng, FAMILY)
}

/// Middle and given name for `sex`, after `family`.
pub fn full_name(rng: &mut StdRng, family: &str, sex: Sex) -> String {
    let (middle, given) = match sex {
        Sex::Male => (MIDDLE_MALE, GIVEN_MALE),
        Sex::Female => (MIDDLE_FEMALE, GIVEN_FEMALE),
    };
    format!("{family} {} {}", pick(rng, middle), pick(rng, given))
}

/// An ethnic group, by frequency.
pub fn ethnicity(rng: &mut StdRng) -> &'static str {
    weighted(rng, ETHNIC)
}

/// A street address.
pub fn address(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.7) {
        format!("{} {}", rng.gen_range(1..300), pick(rng, STREETS))
    } else {
        format!("Ngõ {}, {} {}", rng.gen_range(1..200), rng.gen_range(1..90), pick(rng, STREETS))
    }
}

/// A trade: VSIC code and the word a shop sign would use.
pub fn trade(rng: &mut StdRng) -> (&'static str, &'static str) {
    TRADES[rng.gen_range(0..TRADES.len())]
}

/// A mobile number.
pub fn phone(rng: &mut StdRng) -> String {
    format!("09{:08}", rng.gen_range(0..100_000_000u32))
}
