//! How a ward's replication state reads, the same in `wardsync status` and
//! on the status page: human durations, the lag of a ward cut off as a lower
//! bound, its latest outage, and how bad it is.

use crate::proto::pb;

/// A ward whose lag is beyond this many seconds is in trouble (the lag alert's threshold).
pub const LAG_BAD_S: f64 = 300.0;
/// Beyond this many seconds, a ward is worth a look.
pub const LAG_WARN_S: f64 = 60.0;

/// How a ward stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Connected and caught up, or nearly.
    Ok,
    /// Behind, or with a backlog.
    Warn,
    /// Cut off, never seen, or far behind.
    Bad,
}

/// How `w` stands.
pub fn severity(w: &pb::WardState) -> Severity {
    if w.state != "connected" || w.lag_seconds > LAG_BAD_S {
        Severity::Bad
    } else if w.lag_seconds > LAG_WARN_S || w.backlog > 0 {
        Severity::Warn
    } else {
        Severity::Ok
    }
}

/// `s` seconds for a person: "47 s", "4 min 10 s", "2 h 05 min", "3 d 4 h".
pub fn duration(s: f64) -> String {
    let s = s.max(0.0);
    if s < 10.0 {
        return format!("{s:.1} s");
    }
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How long ago city time `ms` was at `now` ("never" for 0).
pub fn ago(ms: i64, now: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    format!("{} ago", duration((now - ms).max(0) as f64 / 1000.0))
}

/// A city time as UTC, "2026-11-30 10:14:03".
pub fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The lag: "0.0 s", or for a ward cut off "≥ 11 min 4 s" (it may have
/// written since it was last heard from).
pub fn lag(w: &pb::WardState) -> String {
    let d = duration(w.lag_seconds);
    if w.lag_is_lower_bound { format!("≥ {d}") } else { d }
}

/// The backlog: its count, and for a ward cut off the age of that figure.
pub fn backlog(w: &pb::WardState, now: i64) -> String {
    if w.lag_is_lower_bound && w.backlog_as_of_ms > 0 {
        format!("{} (as of {})", w.backlog, ago(w.backlog_as_of_ms, now))
    } else {
        w.backlog.to_string()
    }
}

/// The latest outage, if any (see [`outage`]).
pub fn last_outage(w: &pb::WardState, now: i64) -> Option<String> {
    w.outages.first().map(|o| outage(o, now))
}

/// An outage: "cut off for 11 min 4 s, since 10:03:12" or "11 min 4 s,
/// ended 10:14:16; caught up 3628 changes in 12 s, lag up to 11 min 16 s".
pub fn outage(o: &pb::Outage, now: i64) -> String {
    if o.end_ms == 0 {
        return format!(
            "cut off for {}, since {}",
            duration((now - o.start_ms).max(0) as f64 / 1000.0),
            clock(o.start_ms)
        );
    }
    let lasted = duration((o.end_ms - o.start_ms).max(0) as f64 / 1000.0);
    let mut text = format!("{lasted}, ended {}", clock(o.end_ms));
    if o.caught_up_ms > 0 {
        text += &format!(
            "; caught up {} changes in {}, lag up to {}",
            o.changes_caught_up,
            duration((o.caught_up_ms - o.end_ms).max(0) as f64 / 1000.0),
            duration(o.longest_lag_seconds)
        );
    } else {
        text += "; catching up";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(duration(0.04), "0.0 s");
        assert_eq!(duration(47.0), "47 s");
        assert_eq!(duration(250.0), "4 min 10 s");
        assert_eq!(duration(7_500.0), "2 h 05 min");
        assert_eq!(duration(273_600.0), "3 d 4 h");
        let cut = pb::WardState {
            state: "disconnected".into(),
            lag_seconds: 664.0,
            lag_is_lower_bound: true,
            backlog: 5,
            backlog_as_of_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(lag(&cut), "≥ 11 min 4 s");
        assert_eq!(backlog(&cut, 665_000), "5 (as of 11 min 4 s ago)");
        assert_eq!(severity(&cut), Severity::Bad);
    }
}
