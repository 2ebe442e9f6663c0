//! The embedded store under the city database's contract ([`CityDb`]):
//! its operations are synchronous writes to the engine, made durable by a
//! flush before they return; a group's write happens at the call (so
//! groups are applied in call order) and its future is the flush.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{
    AuditCursor, AuditEntry, Chain, CitizenProblems, CityStore, Conflict, ConflictFilter, Denial, Discarded,
    HistoryEntry, LogFilter, LoggedChange, OfficeError, Page, Quarantined, RepairOutcome, Retry, RetryError,
    WardBatch, WardState,
};
use crate::model::{Context, Kind, Policies, Record, RecordKey, Versioned, WardCode};
use crate::store::city_db::{CityDb, GroupOutcome};
use crate::store::{AckClaim, Authorship, SignedRequest, StoreError};

/// `Ok(outcome)` once flushed, when the write succeeded.
async fn durable<T>(store: &CityStore, written: Result<T, StoreError>) -> Result<T, StoreError> {
    let out = written?;
    store.flush().await?;
    Ok(out)
}

#[async_trait::async_trait]
impl CityDb for CityStore {
    fn last_applied(&self, ward: &WardCode) -> u64 {
        CityStore::last_applied(self, ward)
    }

    async fn resume_point(&self, ward: &WardCode) -> Result<(u64, Chain), StoreError> {
        Ok(CityStore::resume(self, ward))
    }

    fn apply_group(
        &self,
        group: Vec<WardBatch>,
        now_ms: i64,
        ctx: Context,
        max_skew_ms: u64,
    ) -> BoxFuture<'static, GroupOutcome> {
        let applied = CityStore::apply_group(self, &group, now_ms, &ctx, max_skew_ms);
        let store = self.clone();
        async move { durable(&store, applied).await }.boxed()
    }

    async fn acknowledged_lost(
        &self,
        ward: &WardCode,
        claim: AckClaim,
        now_ms: i64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        durable(self, CityStore::acknowledged_lost(self, ward, claim, now_ms)).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        CityStore::flush(self).await
    }

    async fn log_lost(&self, ward: &WardCode, now_ms: i64) -> Result<(), StoreError> {
        durable(self, CityStore::log_lost(self, ward, now_ms)).await
    }

    async fn log_end(&self) -> Result<u64, StoreError> {
        Ok(self.durable_cursor())
    }

    async fn backup(
        &self,
        to: std::path::PathBuf,
    ) -> Result<Option<crate::store::backup::Manifest>, StoreError> {
        CityStore::backup(self, to).await.map(Some)
    }

    async fn ward_states(
        &self,
        ward: &WardCode,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, Versioned)>, StoreError> {
        CityStore::ward_states(self, ward, after, limit)
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
        durable(self, CityStore::repair(self, ward, (states, vouched), now_ms, ctx, max_skew_ms)).await
    }

    fn durable_cursor(&self) -> u64 {
        CityStore::durable_cursor(self)
    }

    fn city_id(&self) -> [u8; 16] {
        self.city_id
    }

    fn log_head(&self) -> (u64, crate::model::signed::Hash) {
        *self.durable_head.lock().expect("poisoned")
    }

    fn watch_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        CityStore::watch_durable(self)
    }

    async fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
        CityStore::changes_since(self, after, limit)
    }

    async fn changes_matching(
        &self,
        after: u64,
        chunk: usize,
        filter: &LogFilter,
    ) -> Result<(Vec<LoggedChange>, u64), StoreError> {
        CityStore::changes_matching(self, after, chunk, filter)
    }

    async fn downstream(
        &self,
        ward: &WardCode,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(LoggedChange, bool)>, StoreError> {
        CityStore::downstream(self, ward, after, limit)
    }

    fn wards(&self) -> Vec<(WardCode, WardState)> {
        CityStore::wards(self)
    }

    fn records_by_kind(&self) -> Vec<(Kind, u64)> {
        CityStore::records_by_kind(self)
    }

    async fn conflicts_by_ward(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut by = std::collections::BTreeMap::<String, u64>::new();
        for c in CityStore::conflicts(self, &ConflictFilter::default())? {
            *by.entry(c.owner).or_default() += 1;
        }
        Ok(by.into_iter().collect())
    }

    fn policies(&self) -> &Policies {
        CityStore::policies(self)
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        CityStore::get(self, key)
    }

    async fn as_of(&self, key: &RecordKey, at_ms: i64) -> Result<Option<Record>, StoreError> {
        CityStore::as_of(self, key, at_ms)
    }

    async fn state(&self, key: &RecordKey) -> Result<Option<Versioned>, StoreError> {
        CityStore::state(self, key)
    }

    async fn list(
        &self,
        kind: Kind,
        ward: Option<&WardCode>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        CityStore::list(self, kind, ward, after, limit)
    }

    async fn search_name(
        &self,
        query: &str,
        kind: Option<Kind>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError> {
        CityStore::search_name(self, query, kind, after, limit)
    }

    async fn household(
        &self,
        household_id: &str,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError> {
        CityStore::household(self, household_id, after, limit)
    }

    async fn owned_by(&self, owner_id: &str, after: &[u8], limit: usize) -> Result<Page<Record>, StoreError> {
        CityStore::owned_by(self, owner_id, after, limit)
    }

    async fn record_history(&self, key: &RecordKey) -> Result<Vec<HistoryEntry>, StoreError> {
        CityStore::record_history(self, key)
    }

    async fn civil_report(
        &self,
        ward: Option<&WardCode>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<CitizenProblems>, StoreError> {
        CityStore::civil_report(self, ward, after, limit)
    }

    async fn conflicts(&self, filter: &ConflictFilter) -> Result<Vec<Conflict>, StoreError> {
        CityStore::conflicts(self, filter)
    }

    async fn conflicts_page(
        &self,
        filter: &ConflictFilter,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Conflict>, StoreError> {
        CityStore::conflicts_page(self, filter, after, limit)
    }

    async fn record_conflicts(&self, record: &RecordKey) -> Result<Vec<Conflict>, StoreError> {
        CityStore::record_conflicts(self, record)
    }

    async fn conflict(&self, record: &RecordKey, field: &str) -> Result<Option<Conflict>, StoreError> {
        CityStore::conflict(self, record, field)
    }

    async fn authorship(&self, logged: &LoggedChange) -> Result<Option<Authorship>, StoreError> {
        CityStore::authorship(self, logged)
    }

    async fn office(
        &self,
        request: &SignedRequest,
        now_ms: i64,
        ctx: &Context,
    ) -> Result<Result<u64, OfficeError>, StoreError> {
        durable(self, CityStore::office(self, request, now_ms, ctx)).await
    }

    async fn quarantine(&self, ward: Option<&WardCode>) -> Result<Vec<Quarantined>, StoreError> {
        CityStore::quarantine(self, ward)
    }

    async fn quarantine_page(
        &self,
        ward: Option<&WardCode>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Quarantined>, StoreError> {
        CityStore::quarantine_page(self, ward, after, limit)
    }

    async fn discarded(&self, ward: Option<&WardCode>) -> Result<Vec<Discarded>, StoreError> {
        CityStore::discarded(self, ward)
    }

    async fn entry(&self, ward: &WardCode, seq: u64) -> Result<Option<Quarantined>, StoreError> {
        CityStore::entry(self, ward, seq)
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
        durable(self, CityStore::retry(self, ward, seq, how, now_ms, ctx, max_skew_ms)).await
    }

    async fn record_denial(
        &self,
        identity: &str,
        rpc: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        durable(self, CityStore::record_denial(self, identity, rpc, reason, now_ms)).await
    }

    fn count_denial(&self) {
        CityStore::count_denial(self)
    }

    fn denied_calls(&self) -> u64 {
        CityStore::denied_calls(self)
    }

    async fn denials(&self, since_ms: i64, limit: usize) -> Result<Vec<Denial>, StoreError> {
        CityStore::denials(self, since_ms, limit)
    }

    async fn audit_trail(
        &self,
        ward: Option<&WardCode>,
        from: AuditCursor,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<AuditCursor>), StoreError> {
        CityStore::audit_trail(self, ward, from, limit)
    }
}
