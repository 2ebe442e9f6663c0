//! The on-disk engine: one sled tree.
//!
//! Only single-tree atomic batches are used. Multi-tree sled transactions
//! combined with flushes deadlocked in our measurements (DESIGN.md section 5),
//! so this module deliberately offers no transactions.
//!
//! sled's own flush is not durable against a power cut: each flush is
//! followed by [`DiskSync`], which syncs what sled leaves unsynced.

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::disk_sync::DiskSync;
use super::engine::{Batch, Engine, Entry, StoreError};
use crate::mutation::{Mutation, active};

/// A sled database used as one ordered key space.
#[derive(Clone)]
pub struct SledEngine {
    db: sled::Db,
    disk: Arc<DiskSync>,
}

fn err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => StoreError::from_io(io),
        other => StoreError::Io(other.to_string()),
    }
}

impl SledEngine {
    /// Opens (or creates) the database in `dir`, with a page cache of about `cache_mb` MiB.
    pub fn open(dir: &Path, cache_mb: u64) -> Result<SledEngine, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("cannot create data directory {}: {e}", dir.display())))?;
        let path = dir.join("db");
        let db =
            sled::Config::new().path(&path).cache_capacity(cache_mb.max(1) << 20).open().map_err(|e| {
                StoreError::Io(format!(
                    "cannot open database in {} (is another wardsync using it?): {e}",
                    dir.display()
                ))
            })?;
        let disk = DiskSync::open(&path).map_err(|e| {
            StoreError::Io(format!("cannot sync the new database files in {}: {e}", path.display()))
        })?;
        Ok(SledEngine { db, disk: Arc::new(disk) })
    }
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.db
            .range(start..end)
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(err))
            .collect()
    }

    fn count(&self, start: &[u8], end: &[u8]) -> Result<u64, StoreError> {
        let mut n = 0;
        for k in self.db.range(start..end).keys() {
            k.map_err(err)?;
            n += 1;
        }
        Ok(n)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.db.apply_batch(b).map_err(err)
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let (db, disk) = (self.db.clone(), self.disk.clone());
        // sled's own flush_async hands the work to its thread pool and back;
        // a blocking thread that flushes and answers saves a hop.
        let durable = move || -> Result<(), StoreError> {
            db.flush().map_err(err)?;
            if active(Mutation::FlushNotDurable) {
                return Ok(());
            }
            disk.sync().map_err(|e| match StoreError::from_io(e) {
                StoreError::Io(m) => StoreError::Io(format!("cannot sync the database to disk: {m}")),
                other => other,
            })
        };
        Box::pin(async move {
            match tokio::task::spawn_blocking(durable).await {
                Ok(r) => r,
                Err(e) => Err(StoreError::Io(format!("flush task failed: {e}"))),
            }
        })
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
