//! `wardsync status`: replication state at a glance. Against the city: every
//! ward, worst first (state, lag, backlog, last contact, conflicts,
//! quarantine). Against a ward agent: its own backlog and link.

use std::time::Duration;

use console::style;

use super::args::StatusArgs;
use super::client::{city_for, status_error, ward_client};
use crate::clock::now_ms;
use crate::proto::pb;

fn age(ms: i64, now: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let s = (now - ms).max(0) / 1000;
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

fn json(w: &pb::WardState) -> serde_json::Value {
    serde_json::json!({
        "ward": w.ward, "state": w.state, "lag_seconds": w.lag_seconds, "backlog": w.backlog,
        "backlog_bytes": w.backlog_bytes, "oldest_queued_ms": w.oldest_queued_ms,
        "last_contact_ms": w.last_contact_ms, "last_applied_seq": w.last_applied_seq,
        "records": w.records, "open_conflicts": w.open_conflicts, "quarantined": w.quarantined,
        "lost_changes": w.lost_changes, "lost_found_at_ms": w.lost_found_at_ms,
    })
}

fn table(wards: &[pb::WardState]) {
    let now = now_ms();
    println!(
        "{:<7} {:<13} {:>9} {:>9} {:>11} {:>12} {:>12} {:>10} {:>9} {:>11}",
        "ward",
        "state",
        "lag",
        "backlog",
        "bytes",
        "oldest queued",
        "last contact",
        "records",
        "conflicts",
        "quarantined"
    );
    for w in wards {
        let line = format!(
            "{:<7} {:<13} {:>8.1}s {:>9} {:>11} {:>12} {:>12} {:>10} {:>9} {:>11}",
            w.ward,
            w.state,
            w.lag_seconds,
            w.backlog,
            w.backlog_bytes,
            if w.oldest_queued_ms > 0 { age(w.oldest_queued_ms, now) } else { "-".into() },
            age(w.last_contact_ms, now),
            w.records,
            w.open_conflicts,
            w.quarantined
        );
        let styled = if w.state != "connected" || w.lag_seconds > 300.0 {
            style(line).red()
        } else if w.lag_seconds > 60.0 || w.backlog > 0 {
            style(line).yellow()
        } else {
            style(line).green()
        };
        println!("{styled}");
    }
    for w in wards.iter().filter(|w| w.lost_changes > 0) {
        let line = format!(
            "ward {}: the city lost {} changes it had acknowledged (last found {}); replication resumed after them",
            w.ward,
            w.lost_changes,
            age(w.lost_found_at_ms, now)
        );
        println!("{}", style(line).red());
    }
}

/// Runs `wardsync status`.
pub async fn run(a: StatusArgs) -> anyhow::Result<()> {
    loop {
        match city_for(&a.target).await? {
            Some(mut city) => {
                let mut wards =
                    city.wards(pb::WardsRequest {}).await.map_err(status_error)?.into_inner().wards;
                crate::city::worst_first(&mut wards);
                if a.json {
                    println!("{}", serde_json::Value::Array(wards.iter().map(json).collect()));
                } else {
                    if a.watch.is_some() {
                        print!("\x1b[2J\x1b[H");
                    }
                    table(&wards);
                }
            }
            None => {
                let s = ward_client(&a.target.ward_api)
                    .await?
                    .status(pb::StatusRequest {})
                    .await
                    .map_err(status_error)?
                    .into_inner();
                if a.json {
                    let v = serde_json::json!({
                        "ward": s.ward, "records": s.records, "last_seq": s.last_seq, "acked_seq": s.acked_seq,
                        "backlog": s.backlog, "connected": s.connected, "reconnects": s.reconnects,
                        "sequence_jumps": s.sequence_jumps, "city_lost_changes": s.city_lost_changes,
                    });
                    println!("{v}");
                } else {
                    println!(
                        "ward {}: {} records, last change {}, city applied {}, backlog {}, {} ({} reconnects)",
                        s.ward,
                        s.records,
                        s.last_seq,
                        s.acked_seq,
                        s.backlog,
                        if s.connected { "connected" } else { "disconnected" },
                        s.reconnects
                    );
                    if s.sequence_jumps > 0 {
                        let line = format!(
                            "this ward lost data: {} time(s) the city had applied more changes than it had numbered; its numbering moved past the city's (see its log)",
                            s.sequence_jumps
                        );
                        println!("{}", style(line).red());
                    }
                    if s.city_lost_changes > 0 {
                        let line = format!(
                            "the city lost {} changes it had acknowledged to this ward (restored from an older backup?); replication resumed after them",
                            s.city_lost_changes
                        );
                        println!("{}", style(line).red());
                    }
                }
            }
        }
        match a.watch {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs.max(1))).await,
            None => return Ok(()),
        }
    }
}
