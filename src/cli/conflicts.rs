//! `wardsync conflicts list|show|resolve` and `wardsync edit`: the data
//! office's side of conflicts and corrections.

use chrono::TimeZone;

use super::args::{AuditArgs, ConflictsAction, ConflictsArgs, EditArgs, KeyArgs};
use super::client::{city_required, pages, status_error};
use crate::model::{Record, RecordKey};
use crate::proto::{MAX_PAGE, pb, record_from_pb};

fn when(ms: i64) -> String {
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .map_or(ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn print_conflict(c: &pb::ConflictInfo) {
    let key = c.key.as_ref().map_or(String::new(), |k| k.id.clone());
    println!(
        "{key} field {} ({}, owner {}), open since {}",
        c.field,
        c.policy,
        c.owner,
        when(c.opened_at_ms)
    );
    for (i, x) in c.contenders.iter().enumerate() {
        let at = x.hlc.as_ref().map_or(0, |h| h.wall_ms as i64);
        let shown = if i == 0 { "  (shown)" } else { "" };
        println!("  {}. {} by {} at {}{shown}", i + 1, x.value, x.writer, when(at));
    }
}

/// Runs `wardsync conflicts`.
pub async fn run(a: ConflictsArgs) -> anyhow::Result<()> {
    match a.action {
        ConflictsAction::List { ward, kind, older_than, target } => {
            let req = pb::ConflictsRequest {
                ward: ward.unwrap_or_default(),
                kind: kind.map_or(0, |k| pb::Kind::from(k) as i32),
                older_than_s: older_than,
                limit: MAX_PAGE as u32,
                ..Default::default()
            };
            let c = city_required(&target).await?;
            let found = pages(usize::MAX, |after| {
                let (mut c, req) = (c.clone(), pb::ConflictsRequest { after, ..req.clone() });
                async move {
                    let r = c.list_conflicts(req).await?.into_inner();
                    Ok((r.conflicts, r.next_after))
                }
            })
            .await
            .map_err(status_error)?;
            if found.is_empty() {
                println!("no open conflicts");
            }
            for c in &found {
                print_conflict(c);
            }
        }
        ConflictsAction::Show { kind, key, target } => {
            let key = RecordKey::new(kind, &key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
            let mut c = city_required(&target).await?;
            let state = c
                .get_state(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() })
                .await
                .map_err(status_error)?
                .into_inner();
            match state.record {
                Some(r) => println!("{}", serde_json::to_string(&record_from_pb(Some(r))?)?),
                None => println!("{key} is deleted"),
            }
            println!("{}", if state.disputed { "disputed: awaiting resolution" } else { "not disputed" });
            let req = pb::ConflictsRequest { key: Some((&key).into()), ..Default::default() };
            for conflict in c.list_conflicts(req).await.map_err(status_error)?.into_inner().conflicts {
                print_conflict(&conflict);
            }
        }
        ConflictsAction::Resolve { kind, key, field, choose, value, target } => {
            let key = RecordKey::new(kind, &key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
            let req = pb::ResolveRequest {
                key: Some((&key).into()),
                field: field.clone(),
                choose: choose.unwrap_or(0),
                value: value.unwrap_or_default(),
            };
            let cursor = city_required(&target)
                .await?
                .resolve_conflict(req)
                .await
                .map_err(status_error)?
                .into_inner()
                .cursor;
            println!("{key} field {field} resolved (log cursor {cursor}); the owning ward receives it");
        }
    }
    Ok(())
}

/// Runs `wardsync edit`.
pub async fn edit(a: EditArgs) -> anyhow::Result<()> {
    let record: Record =
        serde_json::from_str(&a.json).map_err(|e| anyhow::anyhow!("--json: not a record: {e}"))?;
    let seen = match &a.based_on {
        Some(token) => {
            crate::model::VersionVector::from_token(token).map_err(|e| anyhow::anyhow!("--based-on: {e}"))?
        }
        None => Default::default(),
    };
    let req = pb::EditRequest { record: Some((&record).into()), seen: crate::proto::seen_pb(&seen) };
    let cursor = city_required(&a.target).await?.edit(req).await.map_err(status_error)?.into_inner().cursor;
    println!(
        "{}/{} corrected (log cursor {cursor}); the owning ward receives it",
        record.kind(),
        record.key_id()
    );
    Ok(())
}

/// Parses `--since`: a date (midnight UTC) or an RFC 3339 time.
fn since_ms(s: &str) -> anyhow::Result<i64> {
    time_ms("--since", s)
}

/// Parses the time flag `flag`: a date (midnight UTC) or an RFC 3339 time.
pub(super) fn time_ms(flag: &str, s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("{flag} {s:?}: expected YYYY-MM-DD or an RFC 3339 time"))?;
    Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
}

/// Runs `wardsync audit`.
pub async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let since = a.since.as_deref().map(since_ms).transpose()?.unwrap_or(0);
    let req = pb::AuditRequest {
        ward: a.ward.unwrap_or_default(),
        since_ms: since,
        limit: a.limit.min(MAX_PAGE as u32),
        after: String::new(),
    };
    let c = city_required(&a.target).await?;
    let entries = pages(a.limit as usize, |after| {
        let (mut c, req) = (c.clone(), pb::AuditRequest { after, ..req.clone() });
        async move {
            let r = c.audit(req).await?.into_inner();
            Ok((r.entries, r.next_after))
        }
    })
    .await
    .map_err(status_error)?;
    for e in entries {
        let what = if e.denied { "DENIED" } else { "write " };
        println!("{}  {what}  {:<22} {}  ({})", when(e.at_ms), e.identity, e.action, e.detail);
    }
    Ok(())
}

/// Runs `wardsync history`: one line per change, then its fields.
pub async fn history(a: KeyArgs) -> anyhow::Result<()> {
    let key = RecordKey::new(a.kind, &a.key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let req = pb::CityGetRequest { key: Some((&key).into()), ..Default::default() };
    let entries =
        city_required(&a.target).await?.history(req).await.map_err(status_error)?.into_inner().entries;
    for e in entries {
        println!(
            "{}  {} by {} ({}), log cursor {}",
            when(e.applied_at_ms),
            e.op,
            e.writer,
            e.identity,
            e.cursor
        );
        for f in e.fields {
            let before = if f.before.is_empty() { "(none)" } else { f.before.as_str() };
            println!("    {}: {before} -> {}", f.field, f.after);
        }
    }
    Ok(())
}
