//! [`PgCityStore`] under the city database's contract ([`CityDb`]).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;

use super::read::{cursor_of, cursor_parts, nothing, page};
use super::rows::{ms, ts};
use super::write::ReadAhead;
use super::{PgCityStore, pg_err};
use crate::model::office_request::Asked;
use crate::model::{Context, Kind, Policies, Record, RecordKey, Versioned, WardCode};
use crate::store::city::audit::AuditSources;
use crate::store::city::history::{replay_as_of, replay_history};
use crate::store::city::{record_log_loss, record_loss};
use crate::store::codec::decode;
use crate::store::{AckClaim, Chain};
use crate::store::{
    AuditCursor, AuditEntry, Authorship, CitizenProblems, CityDb, Conflict, ConflictFilter, Denial,
    Discarded, GroupOutcome, HistoryEntry, LogFilter, LoggedChange, MAX_DENIALS, OfficeError, Page,
    Quarantined, RepairOutcome, Retry, RetryError, SignedRequest, StoreError, WardBatch, WardState,
};

impl PgCityStore {
    async fn quarantined_entries(
        &self,
        ward: Option<&WardCode>,
        discarded: bool,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let w = ward.map(WardCode::as_str);
        self.rows(
            "SELECT entry, discarded_reason, discarded_by, discarded_at FROM quarantine
             WHERE ($1::text IS NULL OR ward = $1) AND (discarded_by IS NOT NULL) = $2 ORDER BY ward, seq",
            &[&w, &discarded],
        )
        .await
    }
}

#[async_trait::async_trait]
impl CityDb for PgCityStore {
    fn last_applied(&self, ward: &WardCode) -> u64 {
        self.cache.lock().expect("poisoned").wards.get(ward).map_or(0, |s| s.last_applied_seq)
    }

    async fn resume_point(&self, ward: &WardCode) -> Result<(u64, Chain), StoreError> {
        let rows = self
            .rows(
                "SELECT last_applied_seq, lost_found_at,
                        chain_link, chain_key, newest_wall, newest_logical, forks, fork_seq
                 FROM ward_state WHERE ward = $1",
                &[&ward.as_str()],
            )
            .await?;
        let seq = rows.first().map_or(0, |r| r.get::<_, i64>(0) as u64);
        let found_at =
            rows.first().and_then(|r| r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(1)).map_or(0, ms);
        let chain = rows.first().map(|r| super::rows::chain_of(r, 2)).unwrap_or_default();
        let mut cache = self.cache.lock().expect("poisoned");
        let known = cache.wards.entry(ward.clone()).or_default();
        // (A loss another city process recorded: the ward's receipts name it.)
        known.lost.found_at_ms = known.lost.found_at_ms.max(found_at);
        if seq >= known.last_applied_seq {
            // (The row is what every process commits under the write lock.)
            known.last_applied_seq = seq;
            known.chain = chain;
        }
        Ok((known.last_applied_seq, known.chain))
    }

    fn apply_group(
        &self,
        group: Vec<WardBatch>,
        now_ms: i64,
        ctx: Context,
        max_skew_ms: u64,
    ) -> BoxFuture<'static, GroupOutcome> {
        self.apply_group_in_order(group, now_ms, ctx, max_skew_ms)
    }

    async fn acknowledged_lost(
        &self,
        ward: &WardCode,
        claim: AckClaim,
        now_ms: i64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        self.write(now_ms, ReadAhead::default(), |_, wards| Ok(record_loss(wards, ward, claim, now_ms))).await
    }

    async fn ward_states(
        &self,
        ward: &WardCode,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, Versioned)>, StoreError> {
        let mut kinds: Vec<Kind> = Kind::ALL.into();
        kinds.sort_by_key(|k| k.tag());
        let mut out = Vec::new();
        for kind in kinds {
            let after_id = match after {
                Some(a) if a.kind().tag() > kind.tag() => continue,
                Some(a) if a.kind() == kind => a.id(),
                _ => "",
            };
            let left = (limit - out.len()).min(i64::MAX as usize) as i64;
            let rows = self
                .rows(
                    "SELECT id, state FROM record_states WHERE kind = $1 AND ward = $2 AND shown IS NOT NULL
                     AND id > $3 ORDER BY id LIMIT $4",
                    &[&kind.as_str(), &ward.as_str(), &after_id, &left],
                )
                .await?;
            for r in rows {
                let id: &str = r.get(0);
                let key = RecordKey::new(kind, id).map_err(|e| StoreError::Corrupt {
                    key: format!("record_states {kind} {id}"),
                    reason: e.to_string(),
                })?;
                out.push((key, decode(b"record_states.state", r.get(1))?));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn repair(
        &self,
        ward: &WardCode,
        states: &[(RecordKey, Versioned)],
        vouched: &crate::store::Vouchers,
        now_ms: i64,
        ctx: &Context,
        max_skew_ms: u64,
    ) -> Result<RepairOutcome, StoreError> {
        let ahead = ReadAhead {
            keys: states.iter().map(|(k, _)| k.clone()).collect(),
            senders: states.iter().map(|(k, _)| (k.clone(), ward.clone())).collect(),
            quarantined: None,
        };
        self.write(now_ms, ahead, |w, wards| w.repair(ward, states, vouched, (ctx, max_skew_ms), wards)).await
    }

    async fn backup(
        &self,
        _to: std::path::PathBuf,
    ) -> Result<Option<crate::store::backup::Manifest>, StoreError> {
        Ok(None)
    }

    async fn log_lost(&self, ward: &WardCode, now_ms: i64) -> Result<(), StoreError> {
        self.write(now_ms, ReadAhead::default(), |_, wards| {
            record_log_loss(wards, ward, now_ms);
            Ok(())
        })
        .await
    }

    async fn log_end(&self) -> Result<u64, StoreError> {
        let rows = self.rows("SELECT cursor FROM city_clock WHERE id = 1", &[]).await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every write has committed before it returned.
        Ok(())
    }

    fn durable_cursor(&self) -> u64 {
        *self.durable.borrow()
    }

    fn city_id(&self) -> [u8; 16] {
        self.cache.lock().expect("poisoned").city_id
    }

    fn log_head(&self) -> (u64, crate::model::signed::Hash) {
        self.cache.lock().expect("poisoned").head
    }

    fn watch_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable.subscribe()
    }

    async fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
        let changes = self
            .logged(
                "SELECT entry FROM change_log WHERE cursor > $1 ORDER BY cursor LIMIT $2",
                &[&(after as i64), &(limit.min(i64::MAX as usize) as i64)],
            )
            .await?;
        if let Some(last) = changes.last() {
            super::write::publish(&self.durable, last.cursor);
        }
        Ok(changes)
    }

    async fn changes_matching(
        &self,
        after: u64,
        chunk: usize,
        filter: &LogFilter,
    ) -> Result<(Vec<LoggedChange>, u64), StoreError> {
        let read = self.changes_since(after, chunk).await?;
        let (Some(first), Some(last)) = (read.first().map(|l| l.cursor), read.last().map(|l| l.cursor))
        else {
            return Ok((Vec::new(), after));
        };
        let noted: HashSet<u64> = match &filter.ward {
            None => HashSet::new(),
            Some(w) => self
                .rows(
                    "SELECT cursor FROM downstream WHERE ward = $1 AND cursor BETWEEN $2 AND $3",
                    &[&w.as_str(), &(first as i64), &(last as i64)],
                )
                .await?
                .iter()
                .map(|r| r.get::<_, i64>(0) as u64)
                .collect(),
        };
        Ok((filter.keep(read, &noted), last))
    }

    async fn downstream(
        &self,
        ward: &WardCode,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(LoggedChange, bool)>, StoreError> {
        self.rows(
            "SELECT l.entry, d.whole FROM downstream d JOIN change_log l ON l.cursor = d.cursor
             WHERE d.ward = $1 AND d.cursor > $2 ORDER BY d.cursor LIMIT $3",
            &[&ward.as_str(), &(after as i64), &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| Ok((decode(b"change_log.entry", r.get(0))?, r.get(1))))
        .collect()
    }

    fn may_have_downstream(&self, ward: &WardCode, after: u64) -> bool {
        self.notes.lock().expect("poisoned").get(ward).is_some_and(|c| *c > after)
    }

    fn wards(&self) -> Vec<(WardCode, WardState)> {
        let mut v: Vec<_> = self.cache.lock().expect("poisoned").wards.clone().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn records_by_kind(&self) -> Vec<(Kind, u64)> {
        Kind::ALL.into_iter().zip(self.cache.lock().expect("poisoned").kinds).collect()
    }

    async fn conflicts_by_ward(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows =
            self.rows("SELECT owner, count(*) FROM conflicts GROUP BY owner ORDER BY owner", &[]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
    }

    fn policies(&self) -> &Policies {
        &self.policies
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let sql = "SELECT shown FROM record_states WHERE kind = $1 AND id = $2 AND shown IS NOT NULL";
        Ok(self.records(sql, &[&key.kind().as_str(), &key.id()]).await?.pop())
    }

    async fn as_of(&self, key: &RecordKey, at_ms: i64) -> Result<Option<Record>, StoreError> {
        Ok(replay_as_of(self.changes_of(key).await?, key, at_ms, &self.policies))
    }

    async fn state(&self, key: &RecordKey) -> Result<Option<Versioned>, StoreError> {
        let rows = self
            .rows(
                "SELECT state FROM record_states WHERE kind = $1 AND id = $2",
                &[&key.kind().as_str(), &key.id()],
            )
            .await?;
        rows.first().map(|r| decode(b"record_states.state", r.get(0))).transpose()
    }

    async fn list(
        &self,
        kind: Kind,
        ward: Option<&WardCode>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        match ward {
            None => {
                self.records(
                    "SELECT shown FROM record_states WHERE kind = $1 AND shown IS NOT NULL AND id > $2
                     ORDER BY id LIMIT $3",
                    &[&kind.as_str(), &after, &limit],
                )
                .await
            }
            Some(w) => {
                self.records(
                    "SELECT shown FROM record_states WHERE kind = $1 AND ward = $2 AND shown IS NOT NULL
                     AND id > $3 ORDER BY id LIMIT $4",
                    &[&kind.as_str(), &w.as_str(), &after, &limit],
                )
                .await
            }
        }
    }

    async fn search_name(
        &self,
        query: &str,
        kind: Option<Kind>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError> {
        self.name_page(query, kind, after, limit).await
    }

    async fn household(
        &self,
        household_id: &str,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError> {
        self.household_page(household_id, after, limit).await
    }

    async fn owned_by(&self, owner_id: &str, after: &[u8], limit: usize) -> Result<Page<Record>, StoreError> {
        self.owned_page(owner_id, after, limit).await
    }

    async fn record_history(&self, key: &RecordKey) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(replay_history(self.changes_of(key).await?, key, &self.policies))
    }

    async fn civil_report(
        &self,
        ward: Option<&WardCode>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<CitizenProblems>, StoreError> {
        self.civil_page(ward, after, limit).await
    }

    async fn conflicts(&self, filter: &ConflictFilter) -> Result<Vec<Conflict>, StoreError> {
        Ok(self.conflicts_page(filter, &[], usize::MAX).await?.items)
    }

    async fn conflicts_page(
        &self,
        filter: &ConflictFilter,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Conflict>, StoreError> {
        let Some(from) = cursor_parts(after, "conflicts", 3).or(vec![String::new(); 3]) else {
            return Ok(nothing());
        };
        let kind = filter.kind.map(Kind::as_str);
        let before = filter.opened_before_ms.map(ts);
        let rows = self
            .rows(
                "SELECT entry FROM conflicts WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR owner = $2)
                 AND ($3::timestamptz IS NULL OR opened_at <= $3) AND (kind, id, field) > ($4, $5, $6)
                 ORDER BY kind, id, field LIMIT $7",
                &[&kind, &filter.ward, &before, &from[0], &from[1], &from[2], &(limit.min(i64::MAX as usize) as i64)],
            )
            .await?;
        let items: Vec<Conflict> =
            rows.iter().map(|r| decode(b"conflicts.entry", r.get(0))).collect::<Result<_, _>>()?;
        Ok(page(items, limit, |c| cursor_of("conflicts", &[c.key.kind().as_str(), c.key.id(), &c.field])))
    }

    async fn record_conflicts(&self, record: &RecordKey) -> Result<Vec<Conflict>, StoreError> {
        let rows = self
            .rows(
                "SELECT entry FROM conflicts WHERE kind = $1 AND id = $2 ORDER BY field",
                &[&record.kind().as_str(), &record.id()],
            )
            .await?;
        rows.iter().map(|r| decode(b"conflicts.entry", r.get(0))).collect()
    }

    async fn conflict(&self, record: &RecordKey, field: &str) -> Result<Option<Conflict>, StoreError> {
        Ok(self.record_conflicts(record).await?.into_iter().find(|c| c.field == field))
    }

    async fn authorship(&self, logged: &LoggedChange) -> Result<Option<Authorship>, StoreError> {
        super::evidence::authorship(self, logged).await
    }

    async fn office(
        &self,
        request: &SignedRequest,
        now_ms: i64,
        ctx: &Context,
    ) -> Result<Result<u64, OfficeError>, StoreError> {
        let ahead = match &request.request.asked {
            Asked::Edit { record, .. } => match record.key() {
                Ok(k) => ReadAhead { keys: vec![k], ..Default::default() },
                Err(e) => return Ok(Err(e.into())),
            },
            Asked::Resolve { key, .. } => ReadAhead { keys: vec![key.clone()], ..Default::default() },
            // (The record of the change discarded is read with it.)
            Asked::Discard { ward, seq, .. } => {
                ReadAhead { quarantined: Some((ward.clone(), *seq)), ..Default::default() }
            }
        };
        self.write(now_ms, ahead, |w, wards| w.office(request, ctx, wards)).await
    }

    async fn quarantine(&self, ward: Option<&WardCode>) -> Result<Vec<Quarantined>, StoreError> {
        self.quarantined_entries(ward, false)
            .await?
            .iter()
            .map(|r| decode(b"quarantine.entry", r.get(0)))
            .collect()
    }

    async fn quarantine_page(
        &self,
        ward: Option<&WardCode>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Quarantined>, StoreError> {
        let from = cursor_parts(after, "quarantine", 2).or(vec![String::new(), "0".into()]);
        let Some((from, Ok(seq))) = from.map(|f| (f[0].clone(), f[1].parse::<i64>())) else {
            return Ok(nothing());
        };
        let w = ward.map(WardCode::as_str);
        let rows = self
            .rows(
                "SELECT entry FROM quarantine WHERE discarded_by IS NULL AND ($1::text IS NULL OR ward = $1)
                 AND (ward, seq) > ($2, $3) ORDER BY ward, seq LIMIT $4",
                &[&w, &from, &seq, &(limit as i64)],
            )
            .await?;
        let items: Vec<Quarantined> =
            rows.iter().map(|r| decode(b"quarantine.entry", r.get(0))).collect::<Result<_, _>>()?;
        Ok(page(items, limit, |q| cursor_of("quarantine", &[q.ward.as_str(), &q.seq.to_string()])))
    }

    async fn discarded(&self, ward: Option<&WardCode>) -> Result<Vec<Discarded>, StoreError> {
        self.quarantined_entries(ward, true)
            .await?
            .iter()
            .map(|r| {
                Ok(Discarded {
                    entry: decode(b"quarantine.entry", r.get(0))?,
                    reason: r.get(1),
                    by: r.get(2),
                    at_ms: ms(r.get(3)),
                })
            })
            .collect()
    }

    async fn entry(&self, ward: &WardCode, seq: u64) -> Result<Option<Quarantined>, StoreError> {
        let rows = self
            .rows(
                "SELECT entry FROM quarantine WHERE ward = $1 AND seq = $2 AND discarded_by IS NULL",
                &[&ward.as_str(), &(seq as i64)],
            )
            .await?;
        rows.first().map(|r| decode(b"quarantine.entry", r.get(0))).transpose()
    }

    async fn retry(
        &self,
        ward: &WardCode,
        seq: u64,
        how: Retry,
        now_ms: i64,
        ctx: &Context,
        max_skew_ms: u64,
    ) -> Result<Result<u64, RetryError>, StoreError> {
        let ahead = ReadAhead {
            keys: how
                .decoded()
                .into_iter()
                .flat_map(|c| [Some(c.key.clone()), crate::store::city::apply::spouse_key(ward, c)])
                .flatten()
                .collect(),
            senders: how.decoded().map(|c| (c.key.clone(), ward.clone())).into_iter().collect(),
            quarantined: Some((ward.clone(), seq)),
        };
        self.write(now_ms, ahead, |w, wards| w.retry(ward, seq, how, ctx, max_skew_ms, wards)).await
    }

    async fn record_denial(
        &self,
        identity: &str,
        rpc: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.denials.fetch_add(1, Ordering::Relaxed);
        let client = self.client().await?;
        client
            .execute(
                "WITH added AS (INSERT INTO denied_calls (at, identity, rpc, reason) VALUES ($1, $2, $3, $4))
                 DELETE FROM denied_calls WHERE (at, n) IN (
                     SELECT at, n FROM denied_calls ORDER BY at, n
                     LIMIT greatest(0, (SELECT count(*) FROM denied_calls) + 1 - $5))",
                &[&ts(now_ms), &identity, &rpc, &reason, &(MAX_DENIALS as i64)],
            )
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    fn count_denial(&self) {
        self.denials.fetch_add(1, Ordering::Relaxed);
    }

    fn denied_calls(&self) -> u64 {
        self.denials.load(Ordering::Relaxed)
    }

    async fn denials(&self, since_ms: i64, limit: usize) -> Result<Vec<Denial>, StoreError> {
        let rows = self
            .rows(
                "SELECT at, identity, rpc, reason FROM denied_calls WHERE at >= $1 ORDER BY at, n LIMIT $2",
                &[&ts(since_ms.max(0)), &(limit.min(i64::MAX as usize) as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Denial { at_ms: ms(r.get(0)), identity: r.get(1), rpc: r.get(2), reason: r.get(3) })
            .collect())
    }

    async fn audit_trail(
        &self,
        ward: Option<&WardCode>,
        from: AuditCursor,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<AuditCursor>), StoreError> {
        let want = from.1.saturating_add(limit).saturating_add(1).min(i64::MAX as usize) as i64;
        let w = ward.map(WardCode::as_str);
        let writes = self
            .logged(
                "SELECT entry FROM change_log WHERE applied_at >= $1
                 AND ($2::text IS NULL OR ward = $2 OR identity LIKE '%' || $2) ORDER BY cursor LIMIT $3",
                &[&ts(from.0.max(0)), &w, &want],
            )
            .await?;
        let sources = AuditSources {
            writes,
            denials: self.denials(from.0, want as usize).await?,
            quarantined: self.quarantine(ward).await?,
            discarded: self.discarded(ward).await?,
        };
        Ok(sources.page(ward, from, limit))
    }
}
