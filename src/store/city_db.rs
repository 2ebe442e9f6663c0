//! The city database's contract: the city's own operations, not a
//! key-value engine. Two stores keep it, and differ in how they keep
//! records: [`super::CityStore`] embedded in the city process (over an
//! [`super::Engine`]: sled on disk, or memory in the simulation), and
//! [`super::pg::PgCityStore`] on PostgreSQL, shared by several city
//! processes. One contract suite runs against every store.
//!
//! Every write returns once it is durable (the embedded store has flushed,
//! PostgreSQL has committed), so whatever a caller acknowledges on its
//! strength survives a crash. Reads see only durable changes of the log.

use futures::future::BoxFuture;

use super::{
    AckClaim, AuditCursor, AuditEntry, Authorship, BatchRejected, Chain, CitizenProblems, Conflict,
    ConflictFilter, Denial, Discarded, HistoryEntry, LogFilter, LoggedChange, OfficeError, Page, Quarantined,
    RepairOutcome, Retry, RetryError, SignedRequest, StoreError, Vouchers, WardBatch, WardState,
};
use crate::model::{Context, Kind, Policies, Record, RecordKey, Versioned, WardCode};

/// What applying one group of ward batches yields: per batch, the ward's
/// last applied sequence or why the batch was rejected.
pub type GroupOutcome = Result<Vec<Result<u64, BatchRejected>>, StoreError>;

/// The city database: replication, the data office's queries and writes,
/// quarantine and the audit trail.
#[async_trait::async_trait]
pub trait CityDb: Send + Sync + 'static {
    // ---- Replication ----

    /// The last sequence durably applied for `ward` (0 if never seen), as
    /// this process knows it: the only figure the city may report to the
    /// ward, which deletes what it covers.
    fn last_applied(&self, ward: &WardCode) -> u64;

    /// The last sequence durably applied for `ward`, read afresh (another
    /// city process sharing the database may have applied more), and the
    /// ward's chain there: what the city tells a ward that connects.
    async fn resume_point(&self, ward: &WardCode) -> Result<(u64, Chain), StoreError>;

    /// Applies a group of batches as one atomic write: duplicates skipped,
    /// what the city will not apply quarantined (still advancing the
    /// ward's sequence), a batch with a gap rejected whole. Groups are
    /// applied in the order of the calls, each seeing every earlier one;
    /// the future resolves once the group is durable, never before.
    /// Changes whose clock runs more than `max_skew_ms` ahead are quarantined.
    fn apply_group(
        &self,
        group: Vec<WardBatch>,
        now_ms: i64,
        ctx: Context,
        max_skew_ms: u64,
    ) -> BoxFuture<'static, GroupOutcome>;

    /// The ward says the city had acknowledged its changes up to
    /// `claim.acked`, beyond what the city holds, and the city's own receipt
    /// shows it did up to `claim.proven`, from `claim.from`: moves the
    /// ward's last applied sequence to `claim.acked` and records the loss of
    /// those the receipt proves (which opens the ward's refill window, see
    /// [`CityDb::repair`]). Returns the range recorded lost, if any.
    async fn acknowledged_lost(
        &self,
        ward: &WardCode,
        claim: AckClaim,
        now_ms: i64,
    ) -> Result<Option<(u64, u64)>, StoreError>;

    /// Up to `limit` records `ward` owns at the city, with their states,
    /// after `after` in the order of kind tag, then id: what the ward's
    /// copy is compared with, and restored from.
    async fn ward_states(
        &self,
        ward: &WardCode,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, Versioned)>, StoreError>;

    /// Merges the writes in `ward`'s whole `states` that the city lacks,
    /// each checked and applied as the change that made it: the ward's
    /// own, and others' only on their author's signature (`vouched`)
    /// (see `store::city::repair`); durable on return.
    async fn repair(
        &self,
        ward: &WardCode,
        states: &[(RecordKey, Versioned)],
        vouched: &Vouchers,
        now_ms: i64,
        ctx: &Context,
        max_skew_ms: u64,
    ) -> Result<RepairOutcome, StoreError>;

    /// A consistent copy of the embedded store in the new directory `to`,
    /// taken while the city runs (see [`crate::store::backup`]); `None` on
    /// PostgreSQL, which `pg_dump` backs up.
    async fn backup(
        &self,
        to: std::path::PathBuf,
    ) -> Result<Option<crate::store::backup::Manifest>, StoreError>;

    /// `ward` found the city's log ending before what it had merged from
    /// it (the city lost logged changes): records when, which opens the
    /// ward's refill window (see [`CityDb::repair`]).
    async fn log_lost(&self, ward: &WardCode, now_ms: i64) -> Result<(), StoreError>;

    /// The last cursor of the log, read afresh (another city process
    /// sharing the database may have written more).
    async fn log_end(&self) -> Result<u64, StoreError>;

    /// Makes every write made so far durable (they already are on return,
    /// but a caller stopping wants the certainty).
    async fn flush(&self) -> Result<(), StoreError>;

    /// This city database's id: 16 random bytes made when it was created,
    /// so differing per deployment, and kept by a backup and its restore.
    /// The city's receipts name it.
    fn city_id(&self) -> [u8; 16];

    /// The durable end of the log as this process knows it, and the log's
    /// running hash there: the checkpoint the city's receipts carry.
    fn log_head(&self) -> (u64, crate::model::signed::Hash);

    /// The highest durable log cursor; the log is served up to it.
    fn durable_cursor(&self) -> u64;

    /// Watches the durable cursor: it changes whenever new changes become durable.
    fn watch_durable(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Up to `limit` logged changes after cursor `after`, durable ones only.
    async fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<LoggedChange>, StoreError>;

    /// The changes `filter` keeps among the next `chunk` after `after`, and
    /// the last cursor read (to continue from).
    async fn changes_matching(
        &self,
        after: u64,
        chunk: usize,
        filter: &LogFilter,
    ) -> Result<(Vec<LoggedChange>, u64), StoreError>;

    /// Changes made elsewhere that concern `ward`, after cursor `after`,
    /// durable ones only, at most `limit`; each with whether the ward must
    /// fetch the record whole.
    async fn downstream(
        &self,
        ward: &WardCode,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(LoggedChange, bool)>, StoreError>;

    /// What proves who made the logged change `logged`, sent with it to the
    /// ward whose record it is: an office request, or a ward's own
    /// signature of a change to another ward's record (`None`: anything
    /// else, or nothing kept).
    async fn authorship(&self, logged: &LoggedChange) -> Result<Option<Authorship>, StoreError>;

    /// Whether changes may wait for `ward` after cursor `after`: a check in
    /// memory before [`CityDb::downstream`], which every new durable change
    /// would otherwise run for every connected ward. True when unsure.
    fn may_have_downstream(&self, _ward: &WardCode, _after: u64) -> bool {
        true
    }

    /// Every ward the city has heard from, with its state, in code order.
    fn wards(&self) -> Vec<(WardCode, WardState)>;

    /// How many records of each kind the city holds.
    fn records_by_kind(&self) -> Vec<(Kind, u64)>;

    /// Open conflicts per owning ward.
    async fn conflicts_by_ward(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// The merge policies in force.
    fn policies(&self) -> &Policies;

    // ---- Records ----

    /// The current record under `key`.
    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError>;

    /// The record as it stood at city time `at_ms`.
    async fn as_of(&self, key: &RecordKey, at_ms: i64) -> Result<Option<Record>, StoreError>;

    /// The replicated state of `key`, if the city has heard of it.
    async fn state(&self, key: &RecordKey) -> Result<Option<Versioned>, StoreError>;

    /// Records of `kind` (of `ward`, if given) with ids after `after`, at most `limit`.
    async fn list(
        &self,
        kind: Kind,
        ward: Option<&WardCode>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Records whose name starts with `query`, diacritics and case ignored.
    async fn search_name(
        &self,
        query: &str,
        kind: Option<Kind>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError>;

    /// The citizens of a household.
    async fn household(
        &self,
        household_id: &str,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Record>, StoreError>;

    /// The businesses and parcels of an owner.
    async fn owned_by(&self, owner_id: &str, after: &[u8], limit: usize) -> Result<Page<Record>, StoreError>;

    /// Every change applied to `key`, oldest first, with the values shown before and after.
    async fn record_history(&self, key: &RecordKey) -> Result<Vec<HistoryEntry>, StoreError>;

    /// The civil-status problems of the citizens (of `ward`, if given).
    async fn civil_report(
        &self,
        ward: Option<&WardCode>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<CitizenProblems>, StoreError>;

    // ---- Conflicts and the data office ----

    /// Open conflicts matching `filter`.
    async fn conflicts(&self, filter: &ConflictFilter) -> Result<Vec<Conflict>, StoreError>;

    /// One page of the open conflicts matching `filter`.
    async fn conflicts_page(
        &self,
        filter: &ConflictFilter,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Conflict>, StoreError>;

    /// The open conflicts of one record.
    async fn record_conflicts(&self, record: &RecordKey) -> Result<Vec<Conflict>, StoreError>;

    /// The open conflict on `field` of `record`.
    async fn conflict(&self, record: &RecordKey, field: &str) -> Result<Option<Conflict>, StoreError>;

    /// Carries out an office request, as its caller (a correction, a
    /// settlement, a discard: see [`super::CityStore::office`]), keeping
    /// the request beside the changes it derived; returns the log cursor
    /// of the last.
    async fn office(
        &self,
        request: &SignedRequest,
        now_ms: i64,
        ctx: &Context,
    ) -> Result<Result<u64, OfficeError>, StoreError>;

    // ---- Quarantine ----

    /// The changes in quarantine (of `ward`, if given).
    async fn quarantine(&self, ward: Option<&WardCode>) -> Result<Vec<Quarantined>, StoreError>;

    /// One page of the quarantine.
    async fn quarantine_page(
        &self,
        ward: Option<&WardCode>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<Quarantined>, StoreError>;

    /// The discarded changes (of `ward`, if given).
    async fn discarded(&self, ward: Option<&WardCode>) -> Result<Vec<Discarded>, StoreError>;

    /// One quarantined change.
    async fn entry(&self, ward: &WardCode, seq: u64) -> Result<Option<Quarantined>, StoreError>;

    /// Applies a quarantined change if it is now acceptable; returns its new cursor.
    async fn retry(
        &self,
        ward: &WardCode,
        seq: u64,
        how: Retry,
        now_ms: i64,
        ctx: &Context,
        max_skew_ms: u64,
    ) -> Result<Result<u64, RetryError>, StoreError>;

    // ---- Audit ----

    /// Records a denied call in the audit trail.
    async fn record_denial(
        &self,
        identity: &str,
        rpc: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Counts a denied call without writing it (the trail already shows the caller refused).
    fn count_denial(&self);

    /// Calls denied since the city started.
    fn denied_calls(&self) -> u64;

    /// Denied calls since `since_ms`, oldest first, at most `limit`.
    async fn denials(&self, since_ms: i64, limit: usize) -> Result<Vec<Denial>, StoreError>;

    /// The audit trail (accepted writes and denied calls, by time) from `from`.
    async fn audit_trail(
        &self,
        ward: Option<&WardCode>,
        from: AuditCursor,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<AuditCursor>), StoreError>;
}
