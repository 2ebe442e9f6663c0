//! Persistence behind a narrow API: the only module that knows sled.
//!
//! [`Engine`] is one ordered key space with atomic batches and an awaitable
//! flush. [`SledEngine`] keeps it on disk; [`MemEngine`] keeps it in memory
//! and models durability (a crash loses what was not flushed) for the
//! simulation. [`WardStore`] and [`CityStore`] are written once over the
//! trait and tested on both engines with one contract suite. [`pg`] is the
//! city store on PostgreSQL, being built: its schema and migrations.

pub mod backup;
mod city;
mod city_db;
pub(crate) mod codec;
mod disk_sync;
mod engine;
mod group_commit;
mod mem_engine;
pub mod pg;
mod sled_engine;
mod ward_store;

#[cfg(test)]
mod contract_tests;

pub(crate) use city::replay_state;
pub use city::{
    AckClaim, AuditCursor, AuditEntry, Authorship, BatchRejected, Chain, CitizenProblems, CityStore,
    Conflict, ConflictFilter, Denial, Discarded, Evidence, EvidencePart, EvidenceRow, HistoryEntry, Incoming,
    KvEvidence, Links, LogFilter, LoggedChange, Loss, MAX_DENIALS, MAX_HISTORY, MAX_HISTORY_BYTES,
    MAX_QUARANTINED, MAX_REPAIR_RECORDS, OfficeError, PAGE_SCAN, Page, Quarantined, REFILL_WINDOW_MS,
    RELAYING_MARK, REQUEST_MARK, RETRIED, RepairOutcome, Retry, RetryError, Signed, SignedBatch,
    SignedRequest, UNHELD, Vouched, Vouchers, WardBatch, WardKey, WardState,
};
pub use city_db::{CityDb, GroupOutcome};
pub use engine::{Batch, Engine, Entry, StoreError, prefix_end};
pub use group_commit::{Closed, GroupCommit};
pub use mem_engine::MemEngine;
pub use sled_engine::SledEngine;
pub use ward_store::{Lost, MAX_AUTHORSHIP_PER_RECORD, NewChange, Renumbering, WardStore};
