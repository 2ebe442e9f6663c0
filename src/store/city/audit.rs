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
pub const MAX_DENIALS: u64 = if cfg!(test) { 100 } else { 10_000 };

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

/// One line of the audit trail: an accepted write, a refused call, or a
/// change refused from a ward (quarantined, or discarded since).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// City time, ms since the epoch.
    pub at_ms: i64,
    /// The authenticated identity.
    pub identity: String,
    /// A refusal rather than an accepted write.
    pub denied: bool,
    /// What was done or attempted, e.g. "put citizen/001085012345".
    pub action: String,
    /// Change and log cursor, or why it was refused.
    pub detail: String,
}

/// Where a page of the audit trail resumes: the time of the last entry
/// given, and how many entries of that millisecond were given.
pub type AuditCursor = (i64, usize);

fn put_or_delete(op: &crate::model::Op) -> &'static str {
    if matches!(op, crate::model::Op::Delete) { "delete" } else { "put" }
}

impl CityStore {
    /// A page of the audit trail, oldest first: entries (concerning `ward`
    /// if given) from `from` (a time, and how many entries of that
    /// millisecond to pass over), at most `limit`; and where the next page
    /// resumes, if there is more.
    pub fn audit_trail(
        &self,
        ward: Option<&crate::model::WardCode>,
        from: AuditCursor,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<AuditCursor>), StoreError> {
        let (since_ms, skip) = from;
        let want = skip.saturating_add(limit).saturating_add(1);
        let concerns =
            |l: &LoggedChange| ward.is_none_or(|w| l.writer == w.as_str() || l.by.ends_with(w.as_str()));
        let sources = AuditSources {
            writes: self.history(since_ms, want, concerns)?,
            denials: self.denials(since_ms, want)?,
            quarantined: self.quarantine(ward)?,
            discarded: self.discarded(ward)?,
        };
        Ok(sources.page(ward, from, limit))
    }
}

/// What the audit trail is merged from, each in time order from the page's
/// start: at least `skip + limit + 1` accepted writes and denials (or all
/// there are), and the quarantine and discarded changes.
pub(crate) struct AuditSources {
    /// Accepted writes (concerning the ward, if one is asked for).
    pub(crate) writes: Vec<LoggedChange>,
    /// Denied calls.
    pub(crate) denials: Vec<Denial>,
    /// Changes in quarantine (of the ward).
    pub(crate) quarantined: Vec<super::Quarantined>,
    /// Discarded changes (of the ward).
    pub(crate) discarded: Vec<super::Discarded>,
}

impl AuditSources {
    /// One page of the merged trail from `from`, and where the next resumes.
    pub(crate) fn page(
        self,
        ward: Option<&crate::model::WardCode>,
        from: AuditCursor,
        limit: usize,
    ) -> (Vec<AuditEntry>, Option<AuditCursor>) {
        let (since_ms, skip) = from;
        // Each source is in time order: the first `skip + limit` of the
        // merge are among the first `skip + limit + 1` of each.
        let mut entries: Vec<AuditEntry> = self
            .writes
            .into_iter()
            .map(|l| AuditEntry {
                at_ms: l.applied_at_ms,
                identity: l.by.clone(),
                denied: false,
                action: format!("{} {}", put_or_delete(&l.change.op), l.change.key),
                detail: format!("change {} by writer {}, log cursor {}", l.change.seq, l.writer, l.cursor),
            })
            .collect();
        let concerns = |identity: &str| ward.is_none_or(|w| identity.ends_with(w.as_str()));
        entries.extend(self.denials.into_iter().filter(|d| concerns(&d.identity)).map(|d| AuditEntry {
            at_ms: d.at_ms,
            identity: d.identity,
            denied: true,
            action: d.rpc,
            detail: d.reason,
        }));
        // Changes refused from wards: in quarantine, or discarded since.
        let refused = |q: &super::Quarantined| AuditEntry {
            at_ms: q.at_ms,
            identity: format!("ward {}", q.ward),
            denied: true,
            action: match &q.change {
                Some(c) => format!("change {} ({} {})", q.seq, put_or_delete(&c.op), c.key),
                None => format!("change {} (undecodable)", q.seq),
            },
            detail: q.reason.clone(),
        };
        entries.extend(self.quarantined.iter().filter(|q| q.at_ms >= since_ms).map(refused));
        entries.extend(self.discarded.iter().filter(|d| d.entry.at_ms >= since_ms).map(|d| {
            let mut e = refused(&d.entry);
            e.detail = format!("{}; discarded by {}: {}", e.detail, d.by, d.reason);
            e
        }));
        entries.sort_by_key(|e| e.at_ms);
        let skipped = entries.iter().take(skip).take_while(|e| e.at_ms == since_ms).count();
        let mut entries = entries.split_off(skipped);
        let next = entries.get(limit).map(|_| {
            let last = entries[limit - 1].at_ms;
            let same = entries[..limit].iter().filter(|e| e.at_ms == last).count();
            (last, if last == since_ms { skipped + same } else { same })
        });
        entries.truncate(limit);
        (entries, next)
    }
}
