//! `wardsync status`: replication state at a glance. Against the city: every
//! ward, worst first (state, lag, backlog, last contact, conflicts,
//! quarantine, its latest outage). Against a ward agent: its own backlog
//! and link. The exit status says whether all is well, for scripts.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use console::style;

use super::args::StatusArgs;
use super::client::{city_for, ward_client};
use super::failure::answered;
use crate::city::report::{self, Severity};
use crate::clock::now_ms;
use crate::proto::pb;

/// Exit status: every ward connected and within `--max-lag`.
pub const EXIT_OK: u8 = super::failure::exit::OK;
/// Exit status: a ward is connected but behind beyond `--max-lag`.
pub const EXIT_BEHIND: u8 = super::failure::exit::PARTLY;
/// Exit status: a ward is cut off, or expected and never seen (against a
/// ward agent: its link to the city is down).
pub const EXIT_CUT_OFF: u8 = super::failure::exit::UNREACHABLE;

fn json(w: &pb::WardState) -> serde_json::Value {
    let outages: Vec<serde_json::Value> = w
        .outages
        .iter()
        .map(|o| {
            serde_json::json!({
                "start_ms": o.start_ms, "end_ms": o.end_ms, "longest_lag_seconds": o.longest_lag_seconds,
                "caught_up_ms": o.caught_up_ms, "changes_caught_up": o.changes_caught_up,
            })
        })
        .collect();
    serde_json::json!({
        "ward": w.ward, "name": w.name, "state": w.state, "lag_seconds": w.lag_seconds,
        "lag_is_lower_bound": w.lag_is_lower_bound, "backlog": w.backlog,
        "backlog_as_of_ms": w.backlog_as_of_ms, "backlog_bytes": w.backlog_bytes,
        "oldest_queued_ms": w.oldest_queued_ms, "last_contact_ms": w.last_contact_ms,
        "last_applied_seq": w.last_applied_seq, "records": w.records, "open_conflicts": w.open_conflicts,
        "quarantined": w.quarantined, "lost_changes": w.lost_changes, "lost_found_at_ms": w.lost_found_at_ms,
        "forks": w.forks, "fork_seq": w.fork_seq, "unproven_claims": w.unproven_claims,
        "outage_count": w.outage_count, "outages": outages,
    })
}

fn table(wards: &[pb::WardState], out: &mut String) {
    let now = now_ms();
    let _ = writeln!(out, "as of {} UTC", report::clock(now));
    let _ = writeln!(
        out,
        "{:<7} {:<22} {:<13} {:>14} {:>22} {:>16} {:>10} {:>9} {:>11}",
        "ward", "name", "state", "lag", "backlog", "last contact", "records", "conflicts", "quarantined"
    );
    for w in wards {
        let line = format!(
            "{:<7} {:<22} {:<13} {:>14} {:>22} {:>16} {:>10} {:>9} {:>11}",
            w.ward,
            w.name.chars().take(22).collect::<String>(),
            w.state,
            report::lag(w),
            report::backlog(w, now),
            report::ago(w.last_contact_ms, now),
            w.records,
            w.open_conflicts,
            w.quarantined
        );
        let styled = match report::severity(w) {
            Severity::Bad => style(line).red(),
            Severity::Warn => style(line).yellow(),
            Severity::Ok => style(line).green(),
        };
        let _ = writeln!(out, "{styled}");
    }
    for w in wards {
        if let Some(o) = report::last_outage(w, now) {
            let _ = writeln!(out, "ward {} last outage: {o}", w.ward);
        }
    }
    for w in wards.iter().filter(|w| w.forks > 0) {
        let line = format!(
            "ward {}: {} batch(es) refused that did not link onto its chain as the city applied it (the last at sequence {}): the same numbers with other changes, a store put back to an older copy or a forged chain; see the city's log",
            w.ward, w.forks, w.fork_seq
        );
        let _ = writeln!(out, "{}", style(line).red());
    }
    for w in wards.iter().filter(|w| w.unproven_claims > 0) {
        let line = format!(
            "ward {}: claimed {} time(s) that the city lost its data, with no receipt of the city's to prove it: followed, nothing taken on its word (a ward put back to a copy without its receipts, or one trying its luck; see the city's log)",
            w.ward, w.unproven_claims
        );
        let _ = writeln!(out, "{}", style(line).yellow());
    }
    for w in wards.iter().filter(|w| w.lost_changes > 0) {
        let line = format!(
            "ward {}: the city lost {} changes it had acknowledged (last found {}); replication resumed after them",
            w.ward,
            w.lost_changes,
            report::ago(w.lost_found_at_ms, now)
        );
        let _ = writeln!(out, "{}", style(line).red());
    }
}

/// The exit status for `wards` with lag threshold `max_lag_s`.
fn exit_status(wards: &[pb::WardState], max_lag_s: f64) -> u8 {
    if wards.iter().any(|w| w.state != "connected") {
        EXIT_CUT_OFF
    } else if wards.iter().any(|w| w.lag_seconds > max_lag_s) {
        EXIT_BEHIND
    } else {
        EXIT_OK
    }
}

/// The report of the node `a` names, and the exit status it calls for.
async fn report_once(a: &StatusArgs) -> anyhow::Result<(String, u8)> {
    let mut out = String::new();
    match city_for(&a.target).await? {
        Some(mut city) => {
            let mut wards = city.wards(pb::WardsRequest {}).await.map_err(answered)?.into_inner().wards;
            crate::city::worst_first(&mut wards);
            if a.json {
                let _ = writeln!(out, "{}", serde_json::Value::Array(wards.iter().map(json).collect()));
            } else {
                table(&wards, &mut out);
            }
            Ok((out, exit_status(&wards, a.max_lag)))
        }
        None => {
            let s = ward_client(&a.target.ward_api)
                .await?
                .status(pb::StatusRequest {})
                .await
                .map_err(answered)?
                .into_inner();
            if a.json {
                let receipts: Vec<String> = [&s.ack_receipt, &s.downstream_receipt]
                    .iter()
                    .filter(|r| !r.is_empty())
                    .map(|r| crate::model::signed::hex(r))
                    .collect();
                let v = serde_json::json!({
                    "ward": s.ward, "records": s.records, "last_seq": s.last_seq, "acked_seq": s.acked_seq,
                    "backlog": s.backlog, "connected": s.connected, "reconnects": s.reconnects,
                    "link_down_because": s.link_down_because,
                    "sequence_jumps": s.sequence_jumps, "city_lost_changes": s.city_lost_changes,
                    "forks": s.forks,
                    "verified_at_ms": s.verified_at_ms, "verify_differing": s.verify_differing,
                    "verify_in_sync": s.verify_in_sync, "verifying": s.verifying,
                    "verify_error": s.verify_error, "in_sync_at_ms": s.in_sync_at_ms,
                    "refill_due": s.refill_due, "downstream_cursor": s.downstream_cursor,
                    // The city's signed receipts it keeps: witnesses for `audit verify --witness`.
                    "receipts": receipts,
                });
                let _ = writeln!(out, "{v}");
            } else {
                let _ = writeln!(
                    out,
                    "ward {}: {} records, last change {}, city applied {}, backlog {}, {} ({} reconnects)",
                    s.ward,
                    s.records,
                    s.last_seq,
                    s.acked_seq,
                    s.backlog,
                    link_state(&s),
                    s.reconnects
                );
                let _ = writeln!(out, "{}", super::verify::status_line(&s, now_ms()));
                if s.sequence_jumps > 0 {
                    let line = format!(
                        "this ward lost data: {} time(s) the city had applied more changes than it had numbered; its numbering moved past the city's (see its log)",
                        s.sequence_jumps
                    );
                    let _ = writeln!(out, "{}", style(line).red());
                }
                if s.forks > 0 {
                    let line = format!(
                        "this ward's store forked: {} time(s) the city had applied other changes under numbers it used again (put back to an older copy?); its queued changes were renumbered after the city's and its records taken back from the city (see its log)",
                        s.forks
                    );
                    let _ = writeln!(out, "{}", style(line).red());
                }
                if s.city_lost_changes > 0 {
                    let line = format!(
                        "the city lost {} changes it had acknowledged to this ward (restored from an older backup?); replication resumed after them, and this ward's records refill it",
                        s.city_lost_changes
                    );
                    let _ = writeln!(out, "{}", style(line).red());
                }
            }
            Ok((out, if s.connected { EXIT_OK } else { EXIT_CUT_OFF }))
        }
    }
}

/// A ward agent's link as `status` shows it: connected; refused by the
/// city, and why (a refusal lasts until someone acts); or disconnected,
/// with the last failure.
fn link_state(s: &pb::WardStatus) -> String {
    match s.link_down_because.as_str() {
        _ if s.connected => "connected".into(),
        "" => "disconnected".into(),
        why if why.starts_with("refused") => why.to_string(),
        why => format!("disconnected ({why})"),
    }
}

/// Runs `wardsync status`: exits [`EXIT_OK`], [`EXIT_BEHIND`] or
/// [`EXIT_CUT_OFF`] (the last also if the node cannot be asked). A reader that closes
/// the pipe (`| head`) ends it quietly.
pub async fn run(a: StatusArgs) -> anyhow::Result<ExitCode> {
    loop {
        let (text, code) = report_once(&a).await?;
        let clear = if a.watch.is_some() && !a.json { "\x1b[2J\x1b[H" } else { "" };
        let mut stdout = std::io::stdout().lock();
        let written = write!(stdout, "{clear}{text}").and_then(|_| stdout.flush());
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::from(code)),
            Err(e) => return Err(e.into()),
            Ok(()) => {}
        }
        drop(stdout);
        match a.watch {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs.max(1))).await,
            None => return Ok(ExitCode::from(code)),
        }
    }
}
