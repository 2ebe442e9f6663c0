//! Times and log positions as the commands read and show them: one parser
//! for every `--since` and `--as-of`, so each flag means the same thing in
//! every command that has it.

use chrono::TimeZone;

/// The forms of a time every command takes, for messages and help.
pub const TIME_FORMS: &str =
    "YYYY-MM-DD (midnight UTC), today, yesterday, or an RFC 3339 time such as 2026-11-22T08:00:00+07:00";

/// A time in ms since the epoch as the commands show it.
pub fn when(ms: i64) -> String {
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map_or(ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// Parses the time given with `flag` (see [`TIME_FORMS`]), in ms since the epoch.
pub fn time_ms(flag: &str, s: &str) -> anyhow::Result<i64> {
    let midnight =
        |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis();
    let today = chrono::Utc::now().date_naive();
    match s.trim() {
        "today" => return Ok(midnight(today)),
        "yesterday" => return Ok(midnight(today - chrono::Duration::days(1))),
        _ => {}
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.timestamp_millis());
    }
    let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("{flag} {s:?}: give {TIME_FORMS}"))?;
    Ok(midnight(d))
}

/// A `--since`: a position in the city's change log (as an export prints
/// it for next time), or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// After this log cursor.
    Cursor(u64),
    /// From this time on, ms since the epoch.
    Time(i64),
}

impl Since {
    /// Parses `--since`: digits are a log cursor, anything else a time.
    pub fn parse(s: &str) -> anyhow::Result<Since> {
        match s.trim().parse::<u64>() {
            Ok(cursor) => Ok(Since::Cursor(cursor)),
            Err(_) => time_ms("--since", s).map(Since::Time).map_err(|_| {
                anyhow::anyhow!("--since {s:?}: give a log cursor (as an export prints it) or {TIME_FORMS}")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_cursor_or_a_time_in_every_form() {
        assert_eq!(Since::parse("42").unwrap(), Since::Cursor(42));
        assert_eq!(Since::parse("2026-11-22").unwrap(), Since::Time(1_795_305_600_000));
        assert_eq!(Since::parse("2026-11-22T08:00:00+07:00").unwrap(), Since::Time(1_795_309_200_000));
        let Since::Time(y) = Since::parse("yesterday").unwrap() else { panic!() };
        let Since::Time(t) = Since::parse("today").unwrap() else { panic!() };
        assert_eq!(t - y, 24 * 3600 * 1000);
        let e = Since::parse("last week").unwrap_err().to_string();
        assert!(e.contains("give a log cursor") && e.contains("yesterday"), "{e}");
    }
}
