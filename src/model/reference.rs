//! Official reference data, shipped inside the binary so validation works
//! offline: the 34 provinces and 3,321 communes in force since 1 July 2025,
//! and the 63 pre-2025 province prefixes of personal identification numbers.

use std::collections::HashMap;
use std::sync::LazyLock;

const PROVINCES_CSV: &str = include_str!("../../data/provinces-2025.csv");
const COMMUNES_CSV: &str = include_str!("../../data/communes-2025.csv");

/// Prefixes of personal identification numbers: the 63 pre-2025 province
/// codes (Circular 07/2016/TT-BCA); ids are not reissued after the merger.
pub const PERSONAL_ID_PREFIXES: [&str; 63] = [
    "001", "002", "004", "006", "008", "010", "011", "012", "014", "015", "017", "019", "020", "022", "024",
    "025", "026", "027", "030", "031", "033", "034", "035", "036", "037", "038", "040", "042", "044", "045",
    "046", "048", "049", "051", "052", "054", "056", "058", "060", "062", "064", "066", "067", "068", "070",
    "072", "074", "075", "077", "079", "080", "082", "083", "084", "086", "087", "089", "091", "092", "093",
    "094", "095", "096",
];

/// A commune-level unit (commune, ward or special zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commune {
    /// 5-digit code.
    pub code: &'static str,
    /// Official name, e.g. "Phường Cửa Nam".
    pub name: &'static str,
    /// 2-digit code of its province.
    pub province: &'static str,
}

struct Tables {
    provinces: HashMap<&'static str, &'static str>,
    communes: HashMap<&'static str, Commune>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let rows = |csv: &'static str| csv.lines().skip(1).filter(|l| !l.trim().is_empty());
    let provinces =
        rows(PROVINCES_CSV).map(|l| l.split_once(',').expect("province row: code,name")).collect();
    let communes = rows(COMMUNES_CSV)
        .map(|l| {
            let f: Vec<&'static str> = l.split(',').collect();
            let c = Commune { code: f[0], name: f[1], province: f[2] };
            (c.code, c)
        })
        .collect();
    Tables { provinces, communes }
});

/// The commune with this code, if it exists.
pub fn commune(code: &str) -> Option<&'static Commune> {
    TABLES.communes.get(code)
}

/// The name of the province with this 2-digit code, if it exists.
pub fn province_name(code: &str) -> Option<&'static str> {
    TABLES.provinces.get(code).copied()
}

/// Every commune of a province, in code order.
pub fn communes_of(province: &str) -> Vec<&'static Commune> {
    let mut v: Vec<_> = TABLES.communes.values().filter(|c| c.province == province).collect();
    v.sort_by_key(|c| c.code);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_counts() {
        assert_eq!(TABLES.provinces.len(), 34);
        assert_eq!(TABLES.communes.len(), 3321);
        assert_eq!(communes_of("01").len(), 126);
        assert_eq!(communes_of("79").len(), 168);
        assert_eq!(communes_of("31").len(), 114);
        assert_eq!(communes_of("46").len(), 40);
        assert!(TABLES.communes.values().all(|c| province_name(c.province).is_some()));
    }

    #[test]
    fn lookups() {
        assert_eq!(commune("00082").unwrap().name, "Phường Cửa Nam");
        assert_eq!(commune("09784").unwrap().province, "01");
        assert!(commune("99999").is_none());
        assert_eq!(province_name("79"), Some("Thành phố Hồ Chí Minh"));
        assert_eq!(province_name("02"), None);
        let mut p = PERSONAL_ID_PREFIXES.to_vec();
        p.dedup();
        assert_eq!(p.len(), 63);
    }
}
