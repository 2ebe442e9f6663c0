//! `wardsync verify`: compare a ward agent's records with the city's copy
//! now, repair what differs, and say what was found; and the line `status`
//! prints about the last comparison.

use std::process::ExitCode;

use super::args::VerifyArgs;
use super::client::ward_client;
use super::failure::answered;
use crate::city::report::ago;
use crate::proto::pb;

/// Exit status: the copies differed and still do (see the agent's log).
pub const EXIT_DIFFERS: u8 = super::failure::exit::PARTLY;

/// What the last comparison found, in one line, as of `now` (ms).
pub fn status_line(s: &pb::WardStatus, now: i64) -> String {
    let last = if s.verified_at_ms > 0 {
        match (s.verify_in_sync, s.verify_differing) {
            (true, 0) => format!("in sync with the city, verified {}", ago(s.verified_at_ms, now)),
            (true, n) => format!(
                "in sync with the city, verified {}: {n} records differed and were repaired",
                ago(s.verified_at_ms, now)
            ),
            (false, n) => format!(
                "{n} records differ from the city's copy, repairing (last compared {})",
                ago(s.verified_at_ms, now)
            ),
        }
    } else {
        "not compared with the city's copy yet".to_string()
    };
    let mut line = last;
    if !s.verify_error.is_empty() {
        line = format!("the last comparison with the city failed ({}); {line}", s.verify_error);
    }
    if s.refill_due {
        line = format!(
            "refilling after a loss of data (this ward's or the city's): replication waits for it; {line}"
        );
    }
    if s.verifying {
        line.push_str("; comparing now");
    }
    line
}

/// Runs `wardsync verify`: exits 0 when the copies agree at the end,
/// [`EXIT_DIFFERS`] when they still differ, or as [`super::failure`] says
/// when it could not complete.
pub async fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut client = ward_client(&a.ward_api).await?;
    if let Some(expected) = &a.ward {
        let s = client.status(pb::StatusRequest {}).await.map_err(answered)?.into_inner();
        anyhow::ensure!(
            &s.ward == expected,
            "the agent at {} serves ward {}, not {expected}: give the --ward-api of ward {expected}",
            a.ward_api,
            s.ward
        );
    }
    let r = client.verify(pb::VerifyRequest {}).await.map_err(answered)?.into_inner();
    if a.json {
        let v = serde_json::json!({
            "records": r.records, "differing": r.differing, "fetched": r.fetched, "sent": r.sent,
            "repaired_at_city": r.repaired_at_city, "writes_at_city": r.writes_at_city,
            "others_taken": r.others_taken, "others_not_taken": r.others_not_taken, "refused": r.refused, "deferred": r.deferred,
            "in_sync": r.in_sync, "took_ms": r.took_ms,
        });
        println!("{v}");
    } else {
        println!(
            "{} records compared with the city's copy in {} ms: {} differed ({} merged here from the city, {} sent to the city, which took {} writes for {} records)",
            r.records, r.took_ms, r.differing, r.fetched, r.sent, r.writes_at_city, r.repaired_at_city
        );
        if r.others_taken > 0 {
            println!(
                "{} writes by others (office corrections, other wards' registrations) that the city had lost were taken back from here",
                r.others_taken
            );
        }
        if r.others_not_taken > 0 {
            println!(
                "{} writes by others (office corrections, other wards' registrations) are held only here, without what proves who made them (the city takes a write by another only on its author's signature): re-enter them at the city",
                r.others_not_taken
            );
        }
        if r.deferred > 0 {
            println!(
                "{} records wait for the queue to the city to drain; a later run sends them",
                r.deferred
            );
        }
        for why in &r.refused {
            println!("refused by the city: {why}");
        }
        println!("{}", if r.in_sync { "in sync" } else { "still differs: see the agent's log" });
    }
    Ok(ExitCode::from(if r.in_sync { 0 } else { EXIT_DIFFERS }))
}
