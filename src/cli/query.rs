//! `wardsync query` (search the city) and `wardsync quarantine` (review
//! what the city would not apply).

use super::args::{QuarantineAction, QuarantineArgs, QueryArgs};
use super::client::{city_required, status_error};
use crate::proto::{pb, record_from_pb};

/// Runs `wardsync query`: prints matching records, one JSON record per line.
pub async fn run(a: QueryArgs) -> anyhow::Result<()> {
    let mut c = city_required(&a.target).await?;
    let records = match (a.name, a.household, a.owner) {
        (Some(text), _, _) => {
            let kind = a.kind.map_or(0, |k| pb::Kind::from(k) as i32);
            c.search(pb::SearchRequest { query: text, kind, limit: a.limit }).await
        }
        (_, Some(id), _) => c.household(pb::HouseholdRequest { household_id: id }).await,
        (_, _, Some(id)) => c.owned_by(pb::OwnedByRequest { owner_id: id }).await,
        _ => unreachable!("clap requires one of --name, --household, --owner"),
    }
    .map_err(status_error)?
    .into_inner()
    .records;
    for r in records {
        let record =
            record_from_pb(Some(r)).map_err(|e| anyhow::anyhow!("the city sent a bad record: {e}"))?;
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(())
}

/// Runs `wardsync quarantine`.
pub async fn quarantine(a: QuarantineArgs) -> anyhow::Result<()> {
    match a.action {
        QuarantineAction::List { ward, target } => {
            let mut c = city_required(&target).await?;
            let entries = c
                .list_quarantine(pb::QuarantineRequest { ward: ward.unwrap_or_default() })
                .await
                .map_err(status_error)?
                .into_inner()
                .entries;
            if entries.is_empty() {
                println!("the quarantine is empty");
            }
            for e in entries {
                let what = e
                    .change
                    .as_ref()
                    .and_then(|c| c.key.as_ref())
                    .map_or("(undecodable change)".to_string(), |k| k.id.clone());
                println!("ward {} change {}: {what}\n    {}", e.ward, e.seq, e.reason);
            }
        }
        QuarantineAction::Retry { ward, seq, target } => {
            let mut c = city_required(&target).await?;
            let cursor = c
                .retry_quarantined(pb::QuarantineEntry { ward: ward.clone(), seq })
                .await
                .map_err(status_error)?
                .into_inner()
                .cursor;
            println!("change {seq} of ward {ward} applied (log cursor {cursor})");
        }
        QuarantineAction::Discard { ward, seq, reason, target } => {
            let mut c = city_required(&target).await?;
            c.discard_quarantined(pb::DiscardRequest { ward: ward.clone(), seq, reason })
                .await
                .map_err(status_error)?;
            println!("change {seq} of ward {ward} discarded");
        }
    }
    Ok(())
}
