//! `wardsync conflicts list|show|resolve` and `wardsync edit`: the data
//! office's side of conflicts and corrections.

use super::args::{AuditArgs, CityTarget, ConflictsAction, ConflictsArgs, EditArgs, HistoryArgs};
use super::client::{city_of, more, pages, shown_key};
use super::failure::answered;
use super::formats::Entry;
use super::when::{Since, when};
use crate::model::{Record, RecordKey};
use crate::proto::{MAX_PAGE, pb, record_from_pb};

/// One conflict as a JSON object (`--json`).
fn conflict_json(c: &pb::ConflictInfo) -> serde_json::Value {
    let contenders: Vec<serde_json::Value> = c
        .contenders
        .iter()
        .map(|x| {
            let at = x.hlc.as_ref().map_or(0, |h| h.wall_ms as i64);
            serde_json::json!({"value": x.value, "writer": x.writer, "at_ms": at})
        })
        .collect();
    serde_json::json!({"record": c.key.as_ref().map(shown_key), "field": c.field, "policy": c.policy,
        "owner": c.owner, "opened_at_ms": c.opened_at_ms, "contenders": contenders})
}

fn print_conflict(c: &pb::ConflictInfo) {
    let key = c.key.as_ref().map_or(String::new(), shown_key);
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
        ConflictsAction::List { ward, kind, older_than, json, target } => {
            let req = pb::ConflictsRequest {
                ward: ward.unwrap_or_default(),
                kind: kind.map_or(0, |k| pb::Kind::from(k) as i32),
                older_than_s: older_than,
                limit: MAX_PAGE as u32,
                ..Default::default()
            };
            let c = city_of(&target).await?;
            let (found, _) = pages(usize::MAX, |after| {
                let (mut c, req) = (c.clone(), pb::ConflictsRequest { after, ..req.clone() });
                async move {
                    let r = c.list_conflicts(req).await?.into_inner();
                    Ok((r.conflicts, r.next_after))
                }
            })
            .await
            .map_err(answered)?;
            if found.is_empty() && !json {
                println!("no open conflicts");
            }
            for c in &found {
                if json {
                    println!("{}", conflict_json(c));
                } else {
                    print_conflict(c);
                }
            }
        }
        ConflictsAction::Show { kind, key, json, target } => {
            let key = RecordKey::new(kind, &key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
            let mut c = city_of(&target).await?;
            let state = c
                .get_state(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() })
                .await
                .map_err(answered)?
                .into_inner();
            let record = state.record.map(|r| record_from_pb(Some(r))).transpose()?;
            let req = pb::ConflictsRequest { key: Some((&key).into()), ..Default::default() };
            let conflicts = c.list_conflicts(req).await.map_err(answered)?.into_inner().conflicts;
            if json {
                let v = serde_json::json!({"record": record, "key": key.to_string(), "deleted": record.is_none(),
                    "disputed": state.disputed, "conflicts": conflicts.iter().map(conflict_json).collect::<Vec<_>>()});
                println!("{v}");
                return Ok(());
            }
            match record {
                Some(r) => println!("{}", serde_json::to_string(&r)?),
                None => println!("{key} is deleted"),
            }
            println!("{}", if state.disputed { "disputed: awaiting resolution" } else { "not disputed" });
            for conflict in &conflicts {
                print_conflict(conflict);
            }
        }
        ConflictsAction::Resolve { kind, key, field, choose, value, target } => {
            let key = RecordKey::new(kind, &key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
            let signer = target.tls.office_signer()?;
            let mut c = city_of(&target).await?;
            // What is signed is the value chosen: contender N as the city lists it now.
            let value = match (choose, value) {
                (Some(n), _) => {
                    let req = pb::ConflictsRequest { key: Some((&key).into()), ..Default::default() };
                    let conflicts = c.list_conflicts(req).await.map_err(answered)?.into_inner().conflicts;
                    let Some(conflict) = conflicts.iter().find(|c| c.field == field) else {
                        anyhow::bail!(
                            "{key} has no open conflict on field {field:?}: see wardsync conflicts show"
                        );
                    };
                    let count = conflict.contenders.len();
                    match conflict.contenders.get((n as usize).wrapping_sub(1)) {
                        Some(x) => x.value.clone(),
                        None => {
                            anyhow::bail!("--choose {n}: there are {count} contenders; choose 1 to {count}")
                        }
                    }
                }
                (None, v) => v.unwrap_or_default(),
            };
            if serde_json::from_str::<serde_json::Value>(&value).is_err() {
                anyhow::bail!("--value {value:?} is not JSON (a text value needs quotes: '\"...\"')");
            }
            let req = signer.resolve(&key, &field, &value);
            let cursor = c.resolve_conflict(req).await.map_err(answered)?.into_inner().cursor;
            println!("{key} field {field} resolved (log cursor {cursor}); the owning ward receives it");
        }
    }
    Ok(())
}

/// Runs `wardsync edit`.
pub async fn edit(a: EditArgs) -> anyhow::Result<()> {
    let mut given = super::client::records_given(&a.record)?;
    let record: Record = match (given.next().map(|row| row.entry), given.next()) {
        (Some(Ok(Entry::Record(r))), None) => r,
        (Some(Err(why)), None) => anyhow::bail!("--record: {why}"),
        _ => anyhow::bail!("--record: give exactly one record to correct"),
    };
    // (Without --based-on, only --force corrects the record as it stands.)
    let seen = match &a.based_on {
        Some(token) => {
            crate::model::VersionVector::from_token(token).map_err(|e| anyhow::anyhow!("--based-on: {e}"))?
        }
        None => Default::default(),
    };
    let req = a.target.tls.office_signer()?.edit(record.clone(), &seen);
    let cursor = city_of(&a.target).await?.edit(req).await.map_err(answered)?.into_inner().cursor;
    println!(
        "{}/{} corrected (log cursor {cursor}); the owning ward receives it",
        record.kind(),
        record.key_id()
    );
    Ok(())
}

/// Runs `wardsync audit`.
pub async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let since = match a.since.as_deref().map(Since::parse).transpose()? {
        None => 0,
        Some(Since::Time(ms)) => ms,
        Some(Since::Cursor(_)) => anyhow::bail!(
            "audit --since takes a time ({}); a log cursor is what export --since also takes",
            super::when::TIME_FORMS
        ),
    };
    let req = pb::AuditRequest {
        ward: a.ward.unwrap_or_default(),
        since_ms: since,
        limit: a.limit.min(MAX_PAGE as u32),
        after: String::new(),
    };
    // (Required by the flags, unless `audit verify`, which reads the database.)
    let city = a.city.ok_or_else(|| anyhow::anyhow!("audit lists the trail the city keeps: give --city"))?;
    let c = city_of(&CityTarget { city, tls: a.tls }).await?;
    let (entries, rest) = pages(a.limit as usize, |after| {
        let (mut c, req) = (c.clone(), pb::AuditRequest { after, ..req.clone() });
        async move {
            let r = c.audit(req).await?.into_inner();
            Ok((r.entries, r.next_after))
        }
    })
    .await
    .map_err(answered)?;
    for e in &entries {
        if a.json {
            let v = serde_json::json!({"at_ms": e.at_ms, "identity": e.identity, "denied": e.denied,
                "action": e.action, "detail": e.detail});
            println!("{v}");
            continue;
        }
        let what = if e.denied { "DENIED" } else { "write " };
        println!("{}  {what}  {:<22} {}  ({})", when(e.at_ms), e.identity, e.action, e.detail);
    }
    if rest {
        let last = entries.last().map_or(String::new(), |e| when(e.at_ms));
        more("entries", &format!("raise --limit (now {}), or give --since after {last}", a.limit));
    }
    Ok(())
}

/// Runs `wardsync history`: one line per change, then its fields.
pub async fn history(h: HistoryArgs) -> anyhow::Result<()> {
    let a = &h;
    let key = RecordKey::new(a.kind, &a.key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let req = pb::CityGetRequest { key: Some((&key).into()), ..Default::default() };
    let entries = city_of(&a.target).await?.history(req).await.map_err(answered)?.into_inner().entries;
    for e in entries {
        if h.json {
            let fields: Vec<serde_json::Value> = e
                .fields
                .iter()
                .map(|f| serde_json::json!({"field": f.field, "before": f.before, "after": f.after}))
                .collect();
            let v = serde_json::json!({"record": key.to_string(), "cursor": e.cursor,
                "applied_at_ms": e.applied_at_ms, "writer": e.writer, "identity": e.identity, "op": e.op,
                "fields": fields});
            println!("{v}");
            continue;
        }
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
