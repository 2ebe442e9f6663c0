//! Changes waiting for a refill. After the city lost data (put back to an
//! older copy), a ward's change can arrive built on a write of another
//! ward's that the city no longer holds and that this other ward has not
//! refilled yet: it is quarantined, as depending on a write the city does
//! not hold. Each repair that brings writes wakes this task with the
//! records that gained them, and it retries such changes to those records
//! quarantined within the refill window, in (ward, sequence) order: those
//! whose writes have come back are applied, the rest (forged claims among
//! them) stay, untouched until their record gains writes again. Wakes
//! while it works make one more pass over the records they name, so a
//! refill of many calls costs a few passes, not one per call.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ingest::Db;
use crate::clock::{now_ms, ward_today};
use crate::model::{Context, RecordKey};
use crate::store::{REFILL_WINDOW_MS, Retry, StoreError, UNHELD};

/// Quarantined changes read at a time.
const PAGE: usize = 500;

/// Wakes the task that retries changes waiting for a refill.
#[derive(Clone)]
pub struct Waiting {
    wake: Arc<Notify>,
    /// Records that gained writes since the task last looked.
    gained: Arc<Mutex<HashSet<RecordKey>>>,
}

impl Waiting {
    /// Starts the task over `store`; it ends with `cancel`.
    pub fn spawn(
        store: Db,
        province: Option<String>,
        max_skew_ms: u64,
        cancel: CancellationToken,
    ) -> Waiting {
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        let gained: Arc<Mutex<HashSet<RecordKey>>> = Arc::default();
        let taken = gained.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = woken.notified() => {}
                }
                let ctx = Context { today: ward_today(max_skew_ms), province: province.clone() };
                let keys = std::mem::take(&mut *taken.lock().expect("poisoned"));
                if let Err(e) = retry_waiting(&store, &keys, &ctx, max_skew_ms).await {
                    tracing::warn!(error = %e, "cannot retry the changes waiting for a refill; retried after the next repair");
                }
            }
        });
        Waiting { wake, gained }
    }

    /// A repair brought writes to `keys`: what waited for them is retried.
    pub fn wake(&self, keys: &[RecordKey]) {
        self.gained.lock().expect("poisoned").extend(keys.iter().cloned());
        self.wake.notify_one();
    }
}

/// Retries every change to `keys` quarantined within the refill window for
/// building on a write the city did not hold.
async fn retry_waiting(
    store: &Db,
    keys: &HashSet<RecordKey>,
    ctx: &Context,
    max_skew_ms: u64,
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut after = Vec::new();
    loop {
        let page = store.quarantine_page(None, &after, PAGE).await?;
        for q in &page.items {
            let now = now_ms();
            let gained = q.change.as_ref().is_some_and(|c| keys.contains(&c.key));
            if !gained || !q.reason.starts_with(UNHELD) || now.saturating_sub(q.at_ms) >= REFILL_WINDOW_MS {
                continue;
            }
            match store.retry(&q.ward, q.seq, Retry::Refilled, now, ctx, max_skew_ms).await? {
                Ok(cursor) => tracing::warn!(ward = %q.ward, seq = q.seq, cursor,
                    "a change quarantined for building on a write the city did not hold is applied: the write was refilled"),
                Err(e) => {
                    tracing::debug!(ward = %q.ward, seq = q.seq, error = %e, "a quarantined change still waits")
                }
            }
        }
        match page.next {
            Some(next) => after = next,
            None => return Ok(()),
        }
    }
}
