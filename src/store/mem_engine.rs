//! An in-memory engine that models durability, for simulation and tests.
//!
//! It keeps two maps: what readers see, and what a crash would leave. A
//! batch reaches the durable map only through a completed [`Engine::flush`],
//! which covers the batches applied before it was called and, like a disk,
//! may take time ([`MemEngine::with_flush_time`]): a crash while it runs
//! keeps nothing of it. [`MemEngine::crash`] throws away everything not
//! durable, as a power cut would; [`MemEngine::restore`] puts back an older
//! [`MemEngine::snapshot`], as restoring a backup would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::engine::{Batch, Engine, Entry, StoreError};

#[derive(Default)]
struct State {
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Batches applied and not yet durable, numbered in order.
    unflushed: Vec<(u64, Batch)>,
    /// Batches applied so far.
    applied: u64,
    /// What the last completed flush covered (for the flush-not-durable mutation).
    last_covered: u64,
}

fn apply_to(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, batch: &Batch) {
    for (k, v) in &batch.ops {
        match v {
            Some(v) => map.insert(k.clone(), v.clone()),
            None => map.remove(k),
        };
    }
}

/// A shared in-memory key space; clones share the same data.
#[derive(Clone, Default)]
pub struct MemEngine {
    state: Arc<Mutex<State>>,
    flush_time: std::time::Duration,
}

impl MemEngine {
    /// An empty engine whose flush completes at once.
    pub fn new() -> MemEngine {
        MemEngine::default()
    }

    /// An empty engine whose flush takes `t` (on tokio's clock, so a
    /// simulation's clock drives it), as a disk's sync does.
    pub fn with_flush_time(t: std::time::Duration) -> MemEngine {
        MemEngine { flush_time: t, ..MemEngine::default() }
    }

    /// A copy of what is durable now, as a backup taken now would hold:
    /// an engine of its own (clones of it share its data, not this one's).
    pub fn snapshot(&self) -> MemEngine {
        let s = self.state.lock().expect("mem engine poisoned");
        let state = State { live: s.durable.clone(), durable: s.durable.clone(), ..State::default() };
        MemEngine { state: Arc::new(Mutex::new(state)), flush_time: self.flush_time }
    }

    /// Puts back what `snapshot` holds (all it holds, flushed or not: a
    /// backup is what it is), as restoring a backup onto this engine's disk
    /// would: everything written since is gone. Its node must be down meanwhile.
    pub fn restore(&self, snapshot: &MemEngine) {
        let held = snapshot.state.lock().expect("mem engine poisoned").live.clone();
        let mut s = self.state.lock().expect("mem engine poisoned");
        s.live = held.clone();
        s.durable = held;
        s.unflushed.clear();
    }

    /// Simulates a power cut: every batch not covered by a completed flush is lost.
    pub fn crash(&self) {
        let mut s = self.state.lock().expect("mem engine poisoned");
        s.live = s.durable.clone();
        s.unflushed.clear();
    }
}

impl Engine for MemEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.lock().expect("poisoned").live.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let s = self.state.lock().expect("poisoned");
        Ok(s.live
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn count(&self, start: &[u8], end: &[u8]) -> Result<u64, StoreError> {
        let s = self.state.lock().expect("poisoned");
        Ok(s.live.range(start.to_vec()..end.to_vec()).count() as u64)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut s = self.state.lock().expect("poisoned");
        apply_to(&mut s.live, &batch);
        s.applied += 1;
        let n = s.applied;
        s.unflushed.push((n, batch));
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let state = self.state.clone();
        // What this flush covers is fixed when it is called.
        let covers = state.lock().expect("poisoned").applied;
        let time = self.flush_time;
        Box::pin(async move {
            if !time.is_zero() {
                tokio::time::sleep(time).await;
            }
            let mut s = state.lock().expect("poisoned");
            // The old sled flush: it returns, and what it covered becomes
            // durable only with a later one.
            let upto = if crate::mutation::active(crate::mutation::Mutation::FlushNotDurable) {
                let before = s.last_covered;
                s.last_covered = before.max(covers);
                before
            } else {
                covers
            };
            let done = s.unflushed.iter().take_while(|(n, _)| *n <= upto).count();
            let durable: Vec<(u64, Batch)> = s.unflushed.drain(..done).collect();
            for (_, b) in &durable {
                apply_to(&mut s.durable, b);
            }
            Ok(())
        })
    }

    fn size_on_disk(&self) -> u64 {
        0
    }
}
