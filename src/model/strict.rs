//! What every record's text and dates must look like, at every entry point:
//! dates in one form (`YYYY-MM-DD`), text in Unicode NFC without control
//! or invisible formatting characters, and bounded sizes. Records typed in
//! a hurry or converted from legacy systems (TCVN, VNI, NFD exports) meet
//! these before they can be stored.

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serializer};
use unicode_normalization::UnicodeNormalization;

/// Longest text a field without a tighter limit may hold, in characters.
pub const MAX_TEXT: usize = 500;
/// Largest record, as JSON, in bytes: far below the storage engine's
/// per-node threshold for out-of-line values (128 KiB), with room for the
/// replicated state kept beside it.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
/// The earliest date a record may carry.
pub fn earliest_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).expect("a valid date")
}

/// `#[serde(with = "strict::date")]`: a date written exactly `YYYY-MM-DD`
/// (`1985-3-2` or `+1985-03-02` are refused, naming the value).
pub mod date {
    use super::*;

    /// Writes the date as `YYYY-MM-DD`: chrono's `Display` of a date,
    /// which writes what `%Y-%m-%d` does without parsing a format string
    /// for each date (a record holds several, and is written many times).
    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    /// Reads a date written exactly `YYYY-MM-DD`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// Parses `YYYY-MM-DD` and nothing else.
    pub fn parse(s: &str) -> Result<NaiveDate, String> {
        let b = s.as_bytes();
        let shaped = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        let bad = || format!("{s:?} is not a date written YYYY-MM-DD");
        if !shaped {
            return Err(bad());
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())
    }
}

/// True for characters no record text may hold: controls (Cc) and
/// invisible formatting characters (Cf: zero-width spaces and joiners,
/// bidirectional overrides, the byte-order mark, soft hyphens...).
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2 | 0x180E
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
            | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// Why `text` may not be stored as it is, if it may not.
pub fn text_problem(text: &str, max_chars: usize) -> Option<String> {
    if let Some(c) = text.chars().find(|c| is_forbidden(*c)) {
        return Some(format!("contains the control or invisible character U+{:04X}", c as u32));
    }
    if !unicode_normalization::is_nfc(text) {
        return Some("is not in Unicode NFC form (it must be normalised first)".into());
    }
    let n = text.chars().count();
    (n > max_chars).then(|| format!("is {n} characters long; the limit is {max_chars}"))
}

/// `text` in Unicode NFC.
pub fn nfc(text: &str) -> String {
    text.nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_yyyy_mm_dd() {
        for text in ["0001-01-01", "1987-03-09", "2026-11-30", "9999-12-31"] {
            let d = date::parse(text).unwrap();
            let written = serde_json::to_string(&Dated(d)).unwrap();
            assert_eq!(written, format!("\"{text}\""));
            assert_eq!(d.to_string(), d.format("%Y-%m-%d").to_string());
        }
    }

    #[derive(serde::Serialize)]
    struct Dated(#[serde(with = "date")] NaiveDate);
}
