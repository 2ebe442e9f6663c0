//! `CityQuery`: what the data office reads from the merged city database.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::CityError;
use super::guard::Cost;
use prost::Message;

use super::requests::signed_request;
use crate::auth::{Identity, Role};
use crate::clock::{now_ms, today};
use crate::model::office_request::Asked;
use crate::model::{Context, Kind, Record, RecordKey, ValidationError, WardCode};
use crate::proto::pb::{self, city_query_server::CityQuery};
use crate::proto::{
    MAX_PAGE, change_from_pb, cursor_in, cursor_out, key_from_pb, kind_from_pb, next_after, page_size,
    record_from_pb, seen_from_pb,
};
use crate::store::{Conflict, ConflictFilter, LogFilter, LoggedChange, OfficeError, Page, Retry};

/// Log entries read from the store per step of `ChangesSince`.
const LOG_CHUNK: usize = 512;

/// The query service.
#[derive(Clone)]
pub struct QueryService {
    pub(super) store: super::ingest::Db,
    pub(super) guard: super::Guard,
    pub(super) province: Option<String>,
    /// Changes stamped further ahead of the city's clock are refused, on retry too.
    pub(super) max_skew_ms: u64,
    pub(super) live: super::Live,
    /// Wards the configuration expects to hear from.
    pub(super) expected: Vec<WardCode>,
    /// Where copies of the embedded store go.
    pub(super) backup_dir: std::path::PathBuf,
    /// When the last copy began: one at a time, one per [`super::backup::BACKUP_INTERVAL`].
    pub(super) last_backup: std::sync::Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
}

fn ward_filter(s: &str, field: &str) -> Result<Option<WardCode>, CityError> {
    if s.is_empty() {
        return Ok(None);
    }
    WardCode::parse(s).map(Some).map_err(|e| ValidationError::single(field, e).into())
}

impl From<&LoggedChange> for pb::LoggedChange {
    fn from(l: &LoggedChange) -> Self {
        pb::LoggedChange {
            cursor: l.cursor,
            ward: l.writer.clone(),
            applied_at_ms: l.applied_at_ms,
            change: Some((&l.change).into()),
            by: l.by.clone(),
        }
    }
}

#[tonic::async_trait]
impl CityQuery for QueryService {
    async fn get(&self, req: Request<pb::CityGetRequest>) -> Result<Response<pb::CityGetReply>, Status> {
        // A record as it was is the data office's to read, not a ward's.
        match req.get_ref().as_of_ms {
            0 => self.guard.admit(&req, &[Role::Ward, Role::OfficeReader], "Get")?,
            _ => self.guard.admit(&req, &[Role::OfficeReader], "Get as of a time")?,
        };
        let req = req.into_inner();
        let key = key_from_pb(req.key).map_err(CityError::from)?;
        let record = match req.as_of_ms {
            0 => self.store.get(&key).await,
            at => self.store.as_of(&key, at).await,
        }
        .map_err(CityError::from)?;
        match record {
            Some(r) => Ok(Response::new(pb::CityGetReply {
                record: Some((&r).into()),
                disputed: self.disputed(&key).await?,
            })),
            None if req.as_of_ms > 0 => Err(Status::not_found(format!(
                "{key} did not exist at the city at {}",
                super::report::clock(req.as_of_ms)
            ))),
            None => Err(Status::not_found(format!("{key} not found at the city"))),
        }
    }

    async fn list(&self, req: Request<pb::CityListRequest>) -> Result<Response<pb::CityListReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeReader], "List")?;
        let req = req.into_inner();
        let kind: Kind = kind_from_pb(req.kind, "kind").map_err(CityError::from)?;
        let ward = ward_filter(&req.ward, "ward")?;
        let limit = page_size(req.limit);
        let records =
            self.store.list(kind, ward.as_ref(), &req.after, limit).await.map_err(CityError::from)?;
        Ok(Response::new(pb::CityListReply {
            next_after: next_after(&records, limit),
            records: records.iter().map(Into::into).collect(),
        }))
    }

    type ChangesSinceStream = ReceiverStream<Result<pb::LoggedChange, Status>>;

    async fn changes_since(
        &self,
        req: Request<pb::ChangesSinceRequest>,
    ) -> Result<Response<Self::ChangesSinceStream>, Status> {
        let peer = self.guard.admit(&req, &[Role::OfficeReader], "ChangesSince")?;
        let req = req.into_inner();
        let filter = LogFilter {
            kind: if req.kind == 0 {
                None
            } else {
                Some(kind_from_pb(req.kind, "kind").map_err(CityError::from)?)
            },
            ward: ward_filter(&req.ward, "ward")?,
        };
        let limit = if req.limit == 0 { u64::MAX } else { u64::from(req.limit) };
        let store = self.store.clone();
        let (tx, rx) = mpsc::channel(64);
        let (guard, denied_tx) = (self.guard.clone(), tx.clone());
        let feed = async move {
            let (mut after, mut sent) = (req.after, 0u64);
            while sent < limit {
                let (chunk, last) = match store.changes_matching(after, LOG_CHUNK, &filter).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(CityError::from(e).into())).await;
                        return;
                    }
                };
                if last == after {
                    return;
                }
                after = last;
                for l in chunk.iter().take((limit - sent) as usize) {
                    sent += 1;
                    if tx.send(Ok(l.into())).await.is_err() {
                        return;
                    }
                }
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = feed => {}
                status = guard.until_denied(&peer, &[Role::OfficeReader], "ChangesSince") => {
                    // The reader may not be reading: never wait to tell it.
                    let _ = denied_tx.try_send(Err(status));
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn wards(&self, _req: Request<pb::WardsRequest>) -> Result<Response<pb::WardsReply>, Status> {
        self.guard.admit(&_req, &[Role::Ops, Role::OfficeReader], "Wards")?;
        let wards = super::ward_states(&*self.store, &self.live, &self.expected, now_ms()).await?;
        Ok(Response::new(pb::WardsReply {
            wards,
            log_cursor: self.store.durable_cursor(),
            denied_calls: self.store.denied_calls(),
        }))
    }

    async fn search(&self, req: Request<pb::SearchRequest>) -> Result<Response<pb::RecordsReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeReader], "Search")?;
        let req = req.into_inner();
        if req.query.trim().is_empty() {
            return Err(CityError::from(ValidationError::single("query", "required")).into());
        }
        let kind =
            if req.kind == 0 { None } else { Some(kind_from_pb(req.kind, "kind").map_err(CityError::from)?) };
        let after = cursor_in(&req.after).map_err(CityError::from)?;
        let found = self
            .store
            .search_name(&req.query, kind, &after, page_size(req.limit))
            .await
            .map_err(CityError::from)?;
        Ok(records_reply(found))
    }

    async fn household(
        &self,
        req: Request<pb::HouseholdRequest>,
    ) -> Result<Response<pb::RecordsReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeReader], "Household")?;
        let req = req.into_inner();
        let after = cursor_in(&req.after).map_err(CityError::from)?;
        let found = self
            .store
            .household(&req.household_id, &after, page_size(req.limit))
            .await
            .map_err(CityError::from)?;
        Ok(records_reply(found))
    }

    async fn owned_by(&self, req: Request<pb::OwnedByRequest>) -> Result<Response<pb::RecordsReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeReader], "OwnedBy")?;
        let req = req.into_inner();
        let after = cursor_in(&req.after).map_err(CityError::from)?;
        let found = self
            .store
            .owned_by(&req.owner_id, &after, page_size(req.limit))
            .await
            .map_err(CityError::from)?;
        Ok(records_reply(found))
    }

    async fn list_quarantine(
        &self,
        req: Request<pb::QuarantineRequest>,
    ) -> Result<Response<pb::QuarantineReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeReader], "ListQuarantine")?;
        let req = req.into_inner();
        let ward = ward_filter(&req.ward, "ward")?;
        let after = cursor_in(&req.after).map_err(CityError::from)?;
        let page = self
            .store
            .quarantine_page(ward.as_ref(), &after, page_size(req.limit))
            .await
            .map_err(CityError::from)?;
        Ok(Response::new(pb::QuarantineReply {
            next_after: cursor_out(page.next),
            entries: page
                .items
                .iter()
                .map(|q| pb::QuarantinedChange {
                    ward: q.ward.to_string(),
                    seq: q.seq,
                    reason: q.reason.clone(),
                    at_ms: q.at_ms,
                    change: q.change.as_ref().map(Into::into),
                    raw: q.raw.clone(),
                })
                .collect(),
        }))
    }

    async fn retry_quarantined(
        &self,
        req: Request<pb::QuarantineEntry>,
    ) -> Result<Response<pb::RetryReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeEditor], "RetryQuarantined")?;
        let req = req.into_inner();
        let ward = entry_ward(&req.ward)?;
        // A change that could not be decoded is decoded again: the reason may have been fixed.
        let decoded = match self.store.entry(&ward, req.seq).await.map_err(CityError::from)? {
            Some(q) if q.change.is_none() => {
                pb::Change::decode(q.raw.as_slice()).ok().and_then(|c| change_from_pb(c).ok())
            }
            _ => None,
        };
        let ctx =
            Context { today: crate::clock::ward_today(self.max_skew_ms), province: self.province.clone() };
        let cursor = self
            .store
            .retry(&ward, req.seq, Retry::Office(decoded.map(Box::new)), now_ms(), &ctx, self.max_skew_ms)
            .await
            .map_err(CityError::from)?
            .map_err(CityError::from)?;
        tracing::info!(%ward, seq = req.seq, cursor, "quarantined change applied on retry");
        Ok(Response::new(pb::RetryReply { cursor }))
    }

    async fn discard_quarantined(
        &self,
        req: Request<pb::DiscardRequest>,
    ) -> Result<Response<pb::DiscardReply>, Status> {
        let peer = self.guard.admit(&req, &[Role::OfficeEditor], "DiscardQuarantined")?;
        let by = peer.identity.to_string();
        let r = req.get_ref();
        let ward = entry_ward(&r.ward)?;
        if r.reason.trim().is_empty() {
            return Err(CityError::from(ValidationError::single(
                "reason",
                "required: say why the change is discarded",
            ))
            .into());
        }
        let asked = Asked::Discard { ward: ward.clone(), seq: r.seq, reason: r.reason.clone() };
        let request =
            signed_request(&req, &peer.identity, r.signed.clone(), asked, now_ms(), self.max_skew_ms)?;
        let ctx = Context { today: today(), province: self.province.clone() };
        let req = req.into_inner();
        self.store
            .office(&request, now_ms(), &ctx)
            .await
            .map_err(CityError::from)?
            .map_err(CityError::from)?;
        tracing::info!(%ward, seq = req.seq, %by, "quarantined change discarded");
        tracing::debug!(reason = %req.reason, "discard reason");
        Ok(Response::new(pb::DiscardReply {}))
    }

    async fn get_state(
        &self,
        req: Request<pb::CityGetRequest>,
    ) -> Result<Response<pb::RecordStateReply>, Status> {
        let peer =
            self.guard.admit_costing(&req, &[Role::Ward, Role::OfficeReader], "GetState", Cost::Flush)?;
        let key = key_from_pb(req.into_inner().key).map_err(CityError::from)?;
        let not_found = || Status::not_found(format!("{key} not found at the city"));
        let state = self.store.state(&key).await.map_err(CityError::from)?.ok_or_else(not_found)?;
        let record = state.materialize(&key, self.store.policies());
        // The values of a deleted record are the data office's to read, its
        // owner's, and those of a ward that wrote to it (in what the record
        // has seen: a version vector names only writes the city holds); each
        // is told to fetch it whole when its write raced the delete.
        let owner = matches!(&peer.identity, Identity::Ward(w)
            if state.owner_value().as_deref() == Some(w.as_str()) || state.seen.0.contains_key(w.as_str()));
        if record.is_none() && !owner && !self.guard.has_role(&peer, Role::OfficeReader) {
            return Err(not_found());
        }
        // A ward builds on this state (its next write says it has seen it):
        // answer only once everything in it is durable, so that a city crash
        // cannot take back a write the ward has seen.
        self.store.flush().await.map_err(CityError::from)?;
        Ok(Response::new(pb::RecordStateReply {
            record: record.as_ref().map(Into::into),
            state: Some((&state).into()),
            disputed: state.disputed(key.kind(), self.store.policies()),
        }))
    }

    async fn edit(&self, req: Request<pb::EditRequest>) -> Result<Response<pb::EditReply>, Status> {
        let peer = self.guard.admit(&req, &[Role::OfficeEditor], "Edit")?;
        let r = req.get_ref();
        let seen = seen_from_pb(r.seen.clone());
        let given = record_from_pb(r.record.clone()).map_err(CityError::from)?;
        let record = given.clone().normalized();
        if r.signed.is_some() && record != given {
            let why =
                "its text is not in Unicode NFC: normalize the record before signing it (wardsync edit does)";
            return Err(CityError::from(ValidationError::single("record", why)).into());
        }
        let ctx = Context { today: today(), province: self.province.clone() };
        let key = record.key_id();
        let asked = Asked::Edit { record: Box::new(record), seen };
        let request =
            signed_request(&req, &peer.identity, r.signed.clone(), asked, now_ms(), self.max_skew_ms)?;
        let cursor = self
            .store
            .office(&request, now_ms(), &ctx)
            .await
            .map_err(CityError::from)?
            .map_err(CityError::from)?;
        tracing::info!(by = %peer.identity, cursor, "office correction");
        tracing::debug!(%key, "office correction of");
        Ok(Response::new(pb::EditReply { cursor }))
    }

    async fn list_conflicts(
        &self,
        req: Request<pb::ConflictsRequest>,
    ) -> Result<Response<pb::ConflictsReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeReader], "ListConflicts")?;
        let req = req.into_inner();
        let after = cursor_in(&req.after).map_err(CityError::from)?;
        let page = match req.key {
            Some(k) => {
                let key = key_from_pb(Some(k)).map_err(CityError::from)?;
                // A record has a conflict per field at most: one page.
                self.store.record_conflicts(&key).await.map(|items| crate::store::Page { items, next: None })
            }
            None => {
                let filter = ConflictFilter {
                    ward: ward_filter(&req.ward, "ward")?.map(|w| w.to_string()),
                    kind: if req.kind == 0 {
                        None
                    } else {
                        Some(kind_from_pb(req.kind, "kind").map_err(CityError::from)?)
                    },
                    opened_before_ms: (req.older_than_s > 0)
                        .then(|| now_ms() - req.older_than_s as i64 * 1000),
                };
                self.store.conflicts_page(&filter, &after, page_size(req.limit)).await
            }
        }
        .map_err(CityError::from)?;
        Ok(Response::new(pb::ConflictsReply {
            conflicts: page.items.iter().map(conflict_pb).collect(),
            next_after: cursor_out(page.next),
        }))
    }

    async fn audit(&self, req: Request<pb::AuditRequest>) -> Result<Response<pb::AuditReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeReader], "Audit")?;
        let req = req.into_inner();
        let ward = ward_filter(&req.ward, "ward")?;
        let limit = match req.limit {
            0 => MAX_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let from = audit_cursor(&req.after, req.since_ms)?;
        let (entries, next) =
            self.store.audit_trail(ward.as_ref(), from, limit).await.map_err(CityError::from)?;
        let entries = entries
            .into_iter()
            .map(|e| pb::AuditEntry {
                at_ms: e.at_ms,
                identity: e.identity,
                denied: e.denied,
                action: e.action,
                detail: e.detail,
            })
            .collect();
        let next_after = next.map_or(String::new(), |(ms, n)| format!("{ms}.{n}"));
        Ok(Response::new(pb::AuditReply { entries, next_after }))
    }

    async fn civil_status(
        &self,
        req: Request<pb::CivilStatusRequest>,
    ) -> Result<Response<pb::CivilStatusReply>, Status> {
        self.guard.admit(&req, &[Role::Ward, Role::OfficeReader], "CivilStatus")?;
        Ok(Response::new(self.civil_status_of(&req.into_inner().personal_id).await?))
    }

    async fn civil_report(
        &self,
        req: Request<pb::CivilReportRequest>,
    ) -> Result<Response<pb::CivilReportReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeReader], "CivilReport")?;
        Ok(Response::new(self.civil_report_page(req.into_inner()).await?))
    }

    async fn backup(&self, req: Request<pb::BackupRequest>) -> Result<Response<pb::BackupReply>, Status> {
        self.backup_reply(req).await
    }

    async fn history(&self, req: Request<pb::CityGetRequest>) -> Result<Response<pb::HistoryReply>, Status> {
        self.guard.admit(&req, &[Role::OfficeReader], "History")?;
        let key = key_from_pb(req.into_inner().key).map_err(CityError::from)?;
        let entries = self.store.record_history(&key).await.map_err(CityError::from)?;
        if entries.is_empty() {
            return Err(Status::not_found(format!("{key}: the city has applied no change to it")));
        }
        Ok(Response::new(pb::HistoryReply {
            entries: entries
                .into_iter()
                .map(|e| pb::HistoryEntry {
                    cursor: e.logged.cursor,
                    applied_at_ms: e.logged.applied_at_ms,
                    writer: e.logged.writer.clone(),
                    identity: e.logged.by.clone(),
                    op: if matches!(e.logged.change.op, crate::model::Op::Delete) { "delete" } else { "put" }
                        .into(),
                    fields: e
                        .fields
                        .into_iter()
                        .map(|(field, before, after)| pb::FieldChange {
                            field,
                            before: before.unwrap_or_default(),
                            after: after.unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn resolve_conflict(
        &self,
        req: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::EditReply>, Status> {
        let peer = self.guard.admit(&req, &[Role::OfficeEditor], "ResolveConflict")?;
        let signed = req.get_ref().signed.clone();
        let key = key_from_pb(req.get_ref().key.clone()).map_err(CityError::from)?;
        if signed.is_some() && req.get_ref().choose != 0 {
            let why = "a signed request names the value it chooses: send it with choose 0 (wardsync conflicts resolve does)";
            return Err(CityError::from(ValidationError::single("choose", why)).into());
        }
        let wire = &req;
        let req = wire.get_ref().clone();
        let value = if req.choose == 0 {
            if serde_json::from_str::<serde_json::Value>(&req.value).is_err() {
                let why = format!("{:?} is not JSON (a text value needs quotes: \"...\")", req.value);
                return Err(CityError::from(ValidationError::single("value", why)).into());
            }
            req.value
        } else {
            let conflict =
                self.store.conflict(&key, &req.field).await.map_err(CityError::from)?.ok_or_else(|| {
                    CityError::Office(OfficeError::NoConflict(key.to_string(), req.field.clone()))
                })?;
            let n = conflict.contenders.len();
            match conflict.contenders.get(req.choose as usize - 1) {
                Some(c) => c.value.clone(),
                None => {
                    let why = format!("there are {n} contenders; choose 1 to {n}");
                    return Err(CityError::from(ValidationError::single("choose", why)).into());
                }
            }
        };
        let ctx = Context { today: today(), province: self.province.clone() };
        let asked = Asked::Resolve { key: key.clone(), field: req.field.clone(), value };
        let request = signed_request(wire, &peer.identity, signed, asked, now_ms(), self.max_skew_ms)?;
        let cursor = self
            .store
            .office(&request, now_ms(), &ctx)
            .await
            .map_err(CityError::from)?
            .map_err(CityError::from)?;
        tracing::info!(by = %peer.identity, kind = %key.kind(), field = %req.field, cursor, "conflict resolved");
        tracing::debug!(%key, "conflict resolved on");
        Ok(Response::new(pb::EditReply { cursor }))
    }
}

impl QueryService {
    async fn disputed(&self, key: &RecordKey) -> Result<bool, Status> {
        let state = self.store.state(key).await.map_err(CityError::from)?;
        Ok(state.is_some_and(|s| s.disputed(key.kind(), self.store.policies())))
    }
}

fn conflict_pb(c: &Conflict) -> pb::ConflictInfo {
    pb::ConflictInfo {
        key: Some((&c.key).into()),
        field: c.field.clone(),
        policy: serde_json::to_value(c.policy)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        owner: c.owner.clone(),
        opened_at_ms: c.opened_at_ms,
        contenders: c
            .contenders
            .iter()
            .map(|w| pb::Contender {
                value: w.value.clone(),
                writer: w.stamp.writer.clone(),
                hlc: Some(w.stamp.hlc.into()),
            })
            .collect(),
    }
}

fn records_reply(page: Page<Record>) -> Response<pb::RecordsReply> {
    Response::new(pb::RecordsReply {
        records: page.items.iter().map(Into::into).collect(),
        next_after: cursor_out(page.next),
    })
}

/// An `Audit` cursor, `MS.N` (see [`crate::store::AuditCursor`]); none:
/// from `since_ms`.
fn audit_cursor(after: &str, since_ms: i64) -> Result<crate::store::AuditCursor, CityError> {
    if after.is_empty() {
        return Ok((since_ms, 0));
    }
    let parsed = after.split_once('.').and_then(|(ms, n)| Some((ms.parse::<i64>().ok()?, n.parse().ok()?)));
    let (ms, n) = parsed.ok_or_else(|| {
        ValidationError::single("after", "not a cursor this service returned: send `next_after` unchanged")
    })?;
    Ok(if since_ms > ms { (since_ms, 0) } else { (ms, n) })
}

fn entry_ward(s: &str) -> Result<WardCode, CityError> {
    ward_filter(s, "ward")?.ok_or_else(|| ValidationError::single("ward", "required").into())
}
