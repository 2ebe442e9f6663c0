//! What the city knows of each ward right now (streams open, the last
//! heartbeat), and the replication lag computed from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::CityError;
use crate::model::WardCode;
use crate::proto::pb;
use crate::store::CityDb;

/// The live view of one ward.
#[derive(Debug, Clone, Default)]
pub struct LiveWard {
    /// Replication streams open now, oldest first: the newest, and those
    /// it replaced until they have ended.
    pub streams: std::collections::VecDeque<super::streams::OpenStream>,
    /// Streams that ended while batches they queued were still being
    /// applied: what each still has to apply.
    pub draining: Vec<tokio_util::task::TaskTracker>,
    /// The latest heartbeat received.
    pub heartbeat: Option<pb::Heartbeat>,
    /// City time of the latest heartbeat.
    pub heartbeat_at_ms: i64,
    /// City time of the latest message from the ward, ms since the epoch.
    pub last_seen_ms: i64,
    /// Its outages since the city started.
    pub outages: super::Outages,
    /// Losses it claimed the city had made that no receipt of the city's
    /// proved (followed, never recorded), since the city started.
    pub unproven_claims: u64,
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

/// Every ward the city knows or expects, with its state, lag and backlog as
/// of `now_ms`: what `Wards`, `wardsync status` and the metrics show.
pub async fn ward_states(
    store: &dyn CityDb,
    live: &Live,
    expected: &[WardCode],
    now_ms: i64,
) -> Result<Vec<pb::WardState>, CityError> {
    let now = now_ms;
    let live = live.lock().expect("poisoned").clone();
    let mut known = store.wards();
    for w in expected {
        if !known.iter().any(|(k, _)| k == w) {
            known.push((w.clone(), Default::default()));
        }
    }
    let conflicts: HashMap<String, u64> = store.conflicts_by_ward().await?.into_iter().collect();
    Ok(known
        .into_iter()
        .map(|(code, state)| {
            let l = live.get(&code);
            let heartbeat = l.and_then(|l| l.heartbeat.as_ref());
            let lag = lag(heartbeat, state.last_applied_seq, now);
            let connected = l.is_some_and(|l| !l.streams.is_empty());
            let seen = state.last_contact_ms > 0 || l.is_some();
            let last_contact_ms = state.last_contact_ms.max(l.map_or(0, |l| l.last_seen_ms));
            // Cut off, the ward may have written since it was last heard
            // from: its lag is at least that long.
            let lower_bound = seen && !connected;
            let silent_s = if lower_bound { (now - last_contact_ms).max(0) as f64 / 1000.0 } else { 0.0 };
            pb::WardState {
                lag_is_lower_bound: lower_bound,
                backlog_as_of_ms: l.map_or(0, |l| l.heartbeat_at_ms),
                outages: l.map_or_else(Vec::new, |l| l.outages.to_pb(now)),
                outage_count: l.map_or(0, |l| l.outages.total()),
                unproven_claims: l.map_or(0, |l| l.unproven_claims),
                name: crate::model::reference::commune(code.as_str())
                    .map_or(String::new(), |c| c.name.to_string()),
                state: if connected {
                    "connected"
                } else if seen {
                    "disconnected"
                } else {
                    "never-seen"
                }
                .into(),
                lag_seconds: lag.seconds.max(silent_s),
                backlog: lag.backlog,
                backlog_bytes: if lag.backlog > 0 { heartbeat.map_or(0, |h| h.backlog_bytes) } else { 0 },
                oldest_queued_ms: lag.oldest_queued_ms,
                open_conflicts: conflicts.get(code.as_str()).copied().unwrap_or(0),
                last_contact_ms,
                ward: code.to_string(),
                last_applied_seq: state.last_applied_seq,
                records: state.records,
                quarantined: state.quarantined,
                lost_changes: state.lost.changes,
                lost_found_at_ms: state.lost.found_at_ms,
                forks: state.chain.forks,
                fork_seq: state.chain.fork_seq,
            }
        })
        .collect())
}

/// Sorts wards worst first: by how long they have been cut off or behind
/// (the lag, which for a ward cut off counts from its last contact), then
/// wards never seen, then by backlog.
pub fn worst_first(wards: &mut [pb::WardState]) {
    let severity = |w: &pb::WardState| {
        let never = u8::from(w.state == "never-seen");
        ((w.lag_seconds * 1000.0) as u64, never, w.backlog)
    };
    wards.sort_by_key(|w| std::cmp::Reverse(severity(w)));
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

    #[test]
    fn the_ward_cut_off_longest_comes_first() {
        let w = |ward: &str, state: &str, lag_seconds: f64| pb::WardState {
            ward: ward.into(),
            state: state.into(),
            lag_seconds,
            ..Default::default()
        };
        let mut wards = vec![
            w("00001", "connected", 0.0),
            w("00002", "disconnected", 47.0),
            w("00003", "never-seen", 0.0),
            w("00004", "disconnected", 240.0),
            w("00005", "connected", 90.0),
        ];
        worst_first(&mut wards);
        let order: Vec<&str> = wards.iter().map(|w| w.ward.as_str()).collect();
        assert_eq!(order, ["00004", "00005", "00002", "00003", "00001"]);
    }
}
