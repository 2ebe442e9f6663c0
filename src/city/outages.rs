//! The outage history of each ward, as the city saw it: when its link went
//! down and came back, how far behind the ward fell, and when and with how
//! many changes it caught up. Kept in memory since the city started (the
//! last [`KEPT`] per ward), shown by `status`, the status page and the
//! metrics; each step is logged at info level.

use std::collections::VecDeque;

use super::Lag;
use crate::model::WardCode;
use crate::proto::pb;

/// Outages kept per ward.
pub const KEPT: usize = 20;

/// One period a ward was cut off, and its catch-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// City time the ward's last stream closed.
    pub start_ms: i64,
    /// City time a stream opened again; `None` while cut off.
    pub end_ms: Option<i64>,
    /// The ward's last applied sequence when it was cut off.
    pub applied_at_start: u64,
    /// The longest lag seen, in seconds (while cut off: its lower bound).
    pub longest_lag_s: f64,
    /// City time its backlog was reported empty after the outage.
    pub caught_up_ms: Option<i64>,
    /// Changes applied from the start of the outage to the catch-up.
    pub changes_caught_up: u64,
}

/// A ward's outages, most recent first, and how many since the city started.
#[derive(Debug, Clone, Default)]
pub struct Outages {
    recent: VecDeque<Outage>,
    total: u64,
}

impl Outages {
    /// The ward's last stream closed at `now_ms`, with `applied` applied.
    pub fn disconnected(&mut self, ward: &WardCode, now_ms: i64, applied: u64) {
        tracing::info!(%ward, last_applied = applied, "ward disconnected");
        self.recent.push_front(Outage {
            start_ms: now_ms,
            end_ms: None,
            applied_at_start: applied,
            longest_lag_s: 0.0,
            caught_up_ms: None,
            changes_caught_up: 0,
        });
        self.recent.truncate(KEPT);
        self.total += 1;
    }

    /// A stream of the ward opened at `now_ms`: the outage, if any, ends.
    pub fn reconnected(&mut self, ward: &WardCode, now_ms: i64) {
        if let Some(o) = self.recent.front_mut().filter(|o| o.end_ms.is_none()) {
            o.end_ms = Some(now_ms);
            let cut_off_s = (now_ms - o.start_ms).max(0) as f64 / 1000.0;
            o.longest_lag_s = o.longest_lag_s.max(cut_off_s);
            tracing::info!(%ward, cut_off_s, "ward reconnected");
        }
    }

    /// The ward's lag, from its backlog as it reported it at `reported_ms`:
    /// `lag` with `applied` applied, at `now_ms`. After an outage, this
    /// follows its catch-up to the end (from a report made after it).
    pub fn reported(&mut self, ward: &WardCode, lag: &Lag, reported_ms: i64, applied: u64, now_ms: i64) {
        let Some(o) = self.recent.front_mut().filter(|o| o.end_ms.is_some() && o.caught_up_ms.is_none())
        else {
            return;
        };
        if o.end_ms.is_some_and(|end| reported_ms < end) {
            return; // a report from before the outage ended says nothing of the catch-up
        }
        o.longest_lag_s = o.longest_lag_s.max(lag.seconds);
        if lag.backlog == 0 {
            o.caught_up_ms = Some(now_ms);
            o.changes_caught_up = applied.saturating_sub(o.applied_at_start);
            let took_s = (now_ms - o.end_ms.unwrap_or(now_ms)).max(0) as f64 / 1000.0;
            tracing::info!(
                %ward,
                changes = o.changes_caught_up,
                took_s,
                longest_lag_s = o.longest_lag_s,
                "ward caught up after an outage"
            );
        }
    }

    /// Outages since the city started.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The outages kept, most recent first, as of `now_ms` (an outage still
    /// going on has lasted until now).
    pub fn to_pb(&self, now_ms: i64) -> Vec<pb::Outage> {
        self.recent
            .iter()
            .map(|o| {
                let ongoing =
                    if o.end_ms.is_none() { (now_ms - o.start_ms).max(0) as f64 / 1000.0 } else { 0.0 };
                pb::Outage {
                    start_ms: o.start_ms,
                    end_ms: o.end_ms.unwrap_or(0),
                    longest_lag_seconds: o.longest_lag_s.max(ongoing),
                    caught_up_ms: o.caught_up_ms.unwrap_or(0),
                    changes_caught_up: o.changes_caught_up,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_runs_from_the_last_stream_closing_to_the_catch_up() {
        let ward = WardCode::parse("00082").unwrap();
        let mut o = Outages::default();
        o.reconnected(&ward, 500);
        assert_eq!(o.total(), 0, "a first connection is no outage");
        o.disconnected(&ward, 1_000, 40);
        assert_eq!(o.to_pb(61_000)[0].longest_lag_seconds, 60.0, "while cut off: the time since");
        o.reconnected(&ward, 301_000);
        let caught_up = Lag { backlog: 0, seconds: 0.0, oldest_queued_ms: 0 };
        o.reported(&ward, &caught_up, 900, 40, 301_500);
        assert_eq!(o.to_pb(400_000)[0].caught_up_ms, 0, "a report from before the reconnection");
        let behind = Lag { backlog: 500, seconds: 320.0, oldest_queued_ms: 0 };
        o.reported(&ward, &behind, 302_000, 100, 302_000);
        o.reported(&ward, &caught_up, 302_000, 540, 310_000);
        let got = o.to_pb(400_000);
        assert_eq!(
            got,
            [pb::Outage {
                start_ms: 1_000,
                end_ms: 301_000,
                longest_lag_seconds: 320.0,
                caught_up_ms: 310_000,
                changes_caught_up: 500
            }]
        );
        for i in 0..30 {
            o.disconnected(&ward, 500_000 + i, 540);
        }
        assert_eq!((o.to_pb(600_000).len(), o.total()), (KEPT, 31));
    }
}
