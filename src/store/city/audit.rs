//! The audit trail: every accepted write is in the change log with the
//! identity that submitted it; every denied call is recorded here.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::keys::AUDIT;
use super::{CityStore, LoggedChange};
use crate::store::StoreError;
use crate::store::codec::{be, encode, key};
use crate::store::engine::Batch;

/// Denied calls kept in the audit trail at the most.
pub const MAX_DENIALS: u64 = 10_000;

/// A call the city refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Denial {
    /// City time, ms since the epoch.
    pub at_ms: i64,
    /// The caller's certificate identity.
    pub identity: String,
    /// The RPC it called.
    pub rpc: String,
    /// Why it was refused.
    pub reason: String,
}

impl CityStore {
    /// Records a denied call (durable with the next flush). At most
    /// [`MAX_DENIALS`] are kept: beyond, the oldest makes room.
    pub fn record_denial(
        &self,
        identity: &str,
        rpc: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let n = self.denials.fetch_add(1, Ordering::Relaxed);
        let d = Denial {
            at_ms: now_ms,
            identity: identity.to_string(),
            rpc: rpc.to_string(),
            reason: reason.to_string(),
        };
        let mut stored = self.stored_denials.lock().expect("poisoned");
        let mut batch = Batch::default();
        if *stored >= MAX_DENIALS {
            for (oldest, _) in self.engine.scan(AUDIT, &crate::store::engine::prefix_end(AUDIT), 1)? {
                batch.remove(oldest);
                *stored -= 1;
            }
        }
        batch.insert(key(AUDIT, &[&be(now_ms.max(0) as u64), &be(n)]), encode(&d));
        self.engine.apply(batch)?;
        *stored += 1;
        Ok(())
    }

    /// Counts a denied call without writing it (see [`crate::city::Guard`]).
    pub fn count_denial(&self) {
        self.denials.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls refused since this store was opened.
    pub fn denied_calls(&self) -> u64 {
        self.denials.load(Ordering::Relaxed)
    }

    /// Denied calls since `since_ms`, oldest first, at most `limit`.
    pub fn denials(&self, since_ms: i64, limit: usize) -> Result<Vec<Denial>, StoreError> {
        let start = key(AUDIT, &[&be(since_ms.max(0) as u64)]);
        let end = crate::store::engine::prefix_end(AUDIT);
        self.engine
            .scan(&start, &end, limit)?
            .into_iter()
            .map(|(k, v)| crate::store::codec::decode(&k, &v))
            .collect()
    }

    /// Accepted writes since `since_ms` that `keep` selects, oldest first, at
    /// most `limit`. Log entries are appended in time order, so the first one
    /// is found by bisection rather than by reading the log from its start.
    pub fn history(
        &self,
        since_ms: i64,
        limit: usize,
        keep: impl Fn(&LoggedChange) -> bool,
    ) -> Result<Vec<LoggedChange>, StoreError> {
        let (mut lo, mut hi) = (1, self.durable_cursor() + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.changes_since(mid - 1, 1)?.first().map_or(i64::MAX, |l| l.applied_at_ms);
            if at < since_ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let (mut after, mut out) = (lo - 1, Vec::new());
        while out.len() < limit {
            let chunk = self.changes_since(after, 1024)?;
            let Some(last) = chunk.last() else { break };
            after = last.cursor;
            out.extend(chunk.into_iter().filter(&keep));
        }
        out.truncate(limit);
        Ok(out)
    }
}
