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
                }
            }
        }
        match a.watch {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs.max(1))).await,
            None => return Ok(()),
        }
    }
}
