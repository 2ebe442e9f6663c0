//! The storage engine facade: one ordered key space with atomic batches and
//! an awaitable flush. Everything above it (ward and city stores) is written
//! once against this trait; [`super::SledEngine`] and [`super::MemEngine`]
//! implement it and pass the same contract tests.

use futures::future::BoxFuture;

/// Errors of the storage layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The disk is full, or a configured capacity is reached. Nothing queued is dropped.
    #[error("storage full: {0}")]
    Full(String),
    /// The underlying engine failed (I/O error, lock held by another process...).
    #[error("storage failure: {0}")]
    Io(String),
    /// The database refused what was written, for what it holds (a value
    /// it cannot store), not because it is down: writing it again fails
    /// again.
    #[error("refused by the database: {0}")]
    Refused(String),
    /// A read would take more than one call may (a record's history past
    /// [`crate::store::MAX_HISTORY_BYTES`]).
    #[error("too large to read in one call: {0}")]
    TooLarge(String),
    /// Bytes on disk could not be decoded.
    #[error("corrupt data under key {key}: {reason}")]
    Corrupt {
        /// The key whose value failed to decode, printable.
        key: String,
        /// What went wrong.
        reason: String,
    },
}

impl StoreError {
    /// Maps an `std::io::Error`, recognising a full disk.
    pub fn from_io(e: std::io::Error) -> StoreError {
        if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
            StoreError::Full(format!("disk full: {e}"))
        } else {
            StoreError::Io(e.to_string())
        }
    }
}

/// A set of inserts and removals applied atomically: after a crash either
/// all of it or none of it is present (once flushed, all of it).
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub(crate) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    /// True when the batch does nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key-value pair read from the engine.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One ordered key space, shared by every task of a node.
pub trait Engine: Send + Sync + 'static {
    /// The value under `key`, if any (including writes not yet flushed).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` entries with `start <= key < end`, in key order.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// How many keys satisfy `start <= key < end`.
    fn count(&self, start: &[u8], end: &[u8]) -> Result<u64, StoreError>;

    /// Applies `batch` atomically. Not durable until [`Engine::flush`] completes.
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;

    /// Makes every batch applied before the call durable.
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Bytes the engine occupies on disk (0 for memory).
    fn size_on_disk(&self) -> u64;
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}
