//! `wardsync query` (search the city) and `wardsync quarantine` (review
//! what the city would not apply).

use super::args::{QuarantineAction, QuarantineArgs, QueryArgs};
use super::client::{city_of, more, pages, shown_key};
use super::failure::answered;
use crate::proto::{MAX_PAGE, pb, record_from_pb};

/// Runs `wardsync query`: prints matching records, one JSON record per line.
pub async fn run(a: QueryArgs) -> anyhow::Result<()> {
    let c = city_of(&a.target).await?;
    let kind = a.kind.map_or(0, |k| pb::Kind::from(k) as i32);
    // A name search stops at --limit; a household or an owner's list is whole.
    let max = if a.name.is_some() { a.limit as usize } else { usize::MAX };
    let (records, rest) = pages(max, |after| {
        let (mut c, name, household, owner) =
            (c.clone(), a.name.clone(), a.household.clone(), a.owner.clone());
        async move {
            let reply = match (name, household, owner) {
                (Some(query), _, _) => {
                    c.search(pb::SearchRequest { query, kind, limit: MAX_PAGE as u32, after }).await
                }
                (_, Some(household_id), _) => {
                    c.household(pb::HouseholdRequest { household_id, after, limit: MAX_PAGE as u32 }).await
                }
                (_, _, Some(owner_id)) => {
                    c.owned_by(pb::OwnedByRequest { owner_id, after, limit: MAX_PAGE as u32 }).await
                }
                _ => unreachable!("clap requires one of --name, --household, --owner"),
            }?
            .into_inner();
            Ok((reply.records, reply.next_after))
        }
    })
    .await
    .map_err(answered)?;
    for r in records {
        let record =
            record_from_pb(Some(r)).map_err(|e| anyhow::anyhow!("the city sent a bad record: {e}"))?;
        println!("{}", serde_json::to_string(&record)?);
    }
    if rest {
        more("results", &format!("raise --limit (now {}) or narrow the search", a.limit));
    }
    Ok(())
}

/// Runs `wardsync quarantine`.
pub async fn quarantine(a: QuarantineArgs) -> anyhow::Result<()> {
    match a.action {
        QuarantineAction::List { ward, json, target } => {
            let c = city_of(&target).await?;
            let ward = ward.unwrap_or_default();
            let (entries, _) = pages(usize::MAX, |after| {
                let (mut c, ward) = (c.clone(), ward.clone());
                async move {
                    let r = c
                        .list_quarantine(pb::QuarantineRequest { ward, after, limit: MAX_PAGE as u32 })
                        .await?;
                    let r = r.into_inner();
                    Ok((r.entries, r.next_after))
                }
            })
            .await
            .map_err(answered)?;
            if entries.is_empty() && !json {
                println!("the quarantine is empty");
            }
            for e in entries {
                let what = e
                    .change
                    .as_ref()
                    .and_then(|c| c.key.as_ref())
                    .map_or("(undecodable change)".to_string(), shown_key);
                if json {
                    let v = serde_json::json!({"ward": e.ward, "seq": e.seq, "record": what,
                        "reason": e.reason, "at_ms": e.at_ms});
                    println!("{v}");
                } else {
                    println!("ward {} change {}: {what}\n    {}", e.ward, e.seq, e.reason);
                }
            }
        }
        QuarantineAction::Retry { ward, seq, target } => {
            let mut c = city_of(&target).await?;
            let cursor = c
                .retry_quarantined(pb::QuarantineEntry { ward: ward.clone(), seq })
                .await
                .map_err(answered)?
                .into_inner()
                .cursor;
            println!("change {seq} of ward {ward} applied (log cursor {cursor})");
        }
        QuarantineAction::Discard { ward, seq, reason, target } => {
            let code = crate::model::WardCode::parse(&ward).map_err(|e| anyhow::anyhow!("--ward: {e}"))?;
            let req = target.tls.office_signer()?.discard(&code, seq, &reason);
            let mut c = city_of(&target).await?;
            c.discard_quarantined(req).await.map_err(answered)?;
            println!("change {seq} of ward {ward} discarded");
        }
    }
    Ok(())
}
