//! What the city knows of each ward right now (streams open, the last
//! heartbeat), and the replication lag computed from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::model::WardCode;
use crate::proto::pb;

/// The live view of one ward.
#[derive(Debug, Clone, Default)]
pub struct LiveWard {
    /// Replication streams open now.
    pub streams: usize,
    /// The latest heartbeat received.
    pub heartbeat: Option<pb::Heartbeat>,
    /// City time of the latest message from the ward, ms since the epoch.
    pub last_seen_ms: i64,
}

/// Live views of every ward, shared by the replication and query services.
pub type Live = Arc<Mutex<HashMap<WardCode, LiveWard>>>;

/// Replication lag of a ward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Changes the ward holds that the city has not applied.
    pub backlog: u64,
    /// Seconds since the ward wrote the oldest of them; 0 when caught up.
    pub seconds: f64,
    /// Ward time of the oldest of them (0 if none).
    pub oldest_queued_ms: i64,
}

/// The lag of a ward that reported `heartbeat`, when the city has applied
/// up to `applied`, at city time `now_ms`. While a ward is cut off, its lag
/// keeps growing from what it last reported; it never freezes.
pub fn lag(heartbeat: Option<&pb::Heartbeat>, applied: u64, now_ms: i64) -> Lag {
    match heartbeat {
        Some(h) if h.last_seq > applied && h.oldest_queued_ms > 0 => Lag {
            backlog: h.last_seq - applied,
            seconds: (now_ms - h.oldest_queued_ms).max(0) as f64 / 1000.0,
            oldest_queued_ms: h.oldest_queued_ms,
        },
        _ => Lag { backlog: 0, seconds: 0.0, oldest_queued_ms: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_grows_while_behind_and_is_zero_when_caught_up() {
        let hb = pb::Heartbeat {
            last_seq: 120,
            backlog: 20,
            backlog_bytes: 0,
            oldest_queued_ms: 10_000,
            sent_at_ms: 11_000,
        };
        assert_eq!(lag(Some(&hb), 100, 15_000), Lag { backlog: 20, seconds: 5.0, oldest_queued_ms: 10_000 });
        assert_eq!(lag(Some(&hb), 100, 75_000).seconds, 65.0, "no news: it keeps growing");
        assert_eq!(lag(Some(&hb), 120, 75_000).seconds, 0.0, "applied everything it reported");
        assert_eq!(lag(None, 0, 75_000).backlog, 0);
    }
}
