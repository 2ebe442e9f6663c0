//! Identification numbers: the 12-digit personal identification number and
//! the enterprise code (tax code) with its check digit.

use chrono::{Datelike, NaiveDate};

use super::enums::Sex;
use super::reference::PERSONAL_ID_PREFIXES;

/// Checks a personal id's structure: 12 digits, its first three a pre-2025
/// province code.
pub fn check_personal_id(id: &str) -> Result<(), String> {
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{id:?} is not a personal identification number: expected 12 digits"));
    }
    if !PERSONAL_ID_PREFIXES.contains(&&id[..3]) {
        return Err(format!(
            "{id:?} starts with {}, which is not one of the 63 province codes of personal ids",
            &id[..3]
        ));
    }
    Ok(())
}

/// The fourth digit of a personal id: century of birth and sex
/// (Circular 07/2016: 0/1 for 1900-1999 male/female, 2/3 for the 2000s,
/// 4/5, 6/7, 8/9 for the 2100s, 2200s, 2300s).
pub fn century_sex_digit(year: i32, sex: Sex) -> Option<u8> {
    let century = match year {
        1900..=1999 => 0,
        2000..=2099 => 2,
        2100..=2199 => 4,
        2200..=2299 => 6,
        2300..=2399 => 8,
        _ => return None,
    };
    Some(century + u8::from(sex == Sex::Female))
}

/// Checks that a structurally valid personal id agrees with a date of birth
/// and sex: digit 4 gives century and sex, digits 5-6 the year.
pub fn check_personal_id_matches(id: &str, born: NaiveDate, sex: Sex) -> Result<(), String> {
    let b = id.as_bytes();
    let expected = century_sex_digit(born.year(), sex)
        .ok_or_else(|| format!("year of birth {} cannot be encoded in a personal id", born.year()))?;
    let digit = b[3] - b'0';
    if digit != expected {
        return Err(format!(
            "digit 4 of {id} is {digit}, but a {} born in {} has {expected}",
            sex.as_str(),
            born.year()
        ));
    }
    let yy = format!("{:02}", born.year().rem_euclid(100));
    if id[4..6] != yy {
        return Err(format!("digits 5-6 of {id} are {}, but the year of birth ends in {yy}", &id[4..6]));
    }
    Ok(())
}

const WEIGHTS: [u32; 9] = [31, 29, 23, 19, 17, 13, 7, 5, 3];

/// The check digit of a 10-digit enterprise code given its first nine
/// digits: 10 - (Σ wᵢdᵢ mod 11). `None` when the remainder is 0: such
/// prefixes are never issued.
pub fn enterprise_check_digit(first9: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first9.iter().zip(WEIGHTS).map(|(d, w)| u32::from(*d) * w).sum();
    match sum % 11 {
        0 => None,
        r => Some((10 - r) as u8),
    }
}

/// Checks an enterprise code: 10 digits with a valid check digit, or a
/// branch `NNNNNNNNNN-NNN` with suffix 001-999.
pub fn check_enterprise_code(code: &str) -> Result<(), String> {
    let (main, branch) = match code.split_once('-') {
        Some((m, b)) => (m, Some(b)),
        None => (code, None),
    };
    if main.len() != 10 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{code:?} is not an enterprise code: expected 10 digits, or NNNNNNNNNN-NNN for a branch"
        ));
    }
    let d: Vec<u8> = main.bytes().map(|b| b - b'0').collect();
    let first9: [u8; 9] = d[..9].try_into().expect("ten digits");
    match enterprise_check_digit(&first9) {
        None => {
            return Err(format!("{code:?} is not an enterprise code: no code starts with {}", &main[..9]));
        }
        Some(c) if c != d[9] => {
            return Err(format!("{code:?} has check digit {}, expected {c}", d[9]));
        }
        Some(_) => {}
    }
    if let Some(b) = branch
        && (b.len() != 3 || !b.bytes().all(|c| c.is_ascii_digit()) || b == "000")
    {
        return Err(format!("{code:?} has a bad branch suffix: expected 001 to 999"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn personal_ids() {
        let cases: &[(&str, Result<(), &str>)] = &[
            ("001085012345", Ok(())),
            ("079301000123", Ok(())),
            ("096200000001", Ok(())),
            ("003085012345", Err("not one of the 63")),
            ("097085012345", Err("not one of the 63")),
            ("101085012345", Err("not one of the 63")),
            ("00108501234", Err("expected 12 digits")),
            ("00108501234x", Err("expected 12 digits")),
        ];
        for (id, want) in cases {
            let got = check_personal_id(id);
            match want {
                Ok(()) => assert!(got.is_ok(), "{id}: {got:?}"),
                Err(part) => assert!(got.as_ref().unwrap_err().contains(part), "{id}: {got:?}"),
            }
        }
    }

    #[test]
    fn personal_id_agrees_with_birth_and_sex() {
        let cases: &[(&str, &str, Sex, bool)] = &[
            ("001085012345", "1985-03-02", Sex::Male, true),
            ("001185012345", "1985-03-02", Sex::Female, true),
            ("001085012345", "1985-03-02", Sex::Female, false),
            ("001085012345", "1986-03-02", Sex::Male, false),
            ("001085012345", "2085-03-02", Sex::Male, false),
            ("079303000123", "2003-11-30", Sex::Female, true),
            ("079303000123", "2003-11-30", Sex::Male, false),
            ("079203000123", "2003-11-30", Sex::Male, true),
            ("079299000123", "1999-11-30", Sex::Female, false),
            ("079099000123", "1999-11-30", Sex::Male, true),
        ];
        for (id, born, sex, ok) in cases {
            let got = check_personal_id_matches(id, date(born), *sex);
            assert_eq!(got.is_ok(), *ok, "{id} {born} {sex:?}: {got:?}");
        }
        assert_eq!(century_sex_digit(1899, Sex::Male), None);
        assert_eq!(century_sex_digit(2150, Sex::Female), Some(5));
    }

    #[test]
    fn enterprise_codes() {
        // 0100109106 is a real registered code (Viettel); the others vary it.
        let cases: &[(&str, bool)] = &[
            ("0100109106", true),
            ("0100109106-001", true),
            ("0100109106-999", true),
            ("0100109107", false),
            ("0100109106-000", false),
            ("0100109106-01", false),
            ("010010910", false),
            ("01001091060", false),
            ("0100109106-", false),
        ];
        for (code, ok) in cases {
            let got = check_enterprise_code(code);
            assert_eq!(got.is_ok(), *ok, "{code}: {got:?}");
        }
    }

    #[test]
    fn check_digit_formula() {
        // Σ = 0*31+1*29+0*23+0*19+1*17+0*13+9*7+1*5+0*3 = 114; 114 mod 11 = 4; 10-4 = 6.
        assert_eq!(enterprise_check_digit(&[0, 1, 0, 0, 1, 0, 9, 1, 0]), Some(6));
        // Some prefixes leave a remainder of zero: they have no check digit.
        let zero = (0..1_000_000_000u32)
            .step_by(7919)
            .map(|n| {
                let s = format!("{n:09}");
                let d: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
                <[u8; 9]>::try_from(d).unwrap()
            })
            .find(|d| enterprise_check_digit(d).is_none())
            .expect("some prefix has remainder 0");
        let sum: u32 = zero.iter().zip(WEIGHTS).map(|(d, w)| u32::from(*d) * w).sum();
        assert_eq!(sum % 11, 0);
    }
}
