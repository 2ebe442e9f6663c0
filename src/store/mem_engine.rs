//! An in-memory engine that models durability, for simulation and tests.
//!
//! It keeps two maps: what readers see, and what a crash would leave. A
//! batch reaches the durable map only through [`Engine::flush`];
//! [`MemEngine::crash`] throws away everything not flushed, as a power cut
//! would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::engine::{Batch, Engine, Entry, StoreError};

#[derive(Default)]
struct State {
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    unflushed: Vec<Batch>,
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
}

impl MemEngine {
    /// An empty engine.
    pub fn new() -> MemEngine {
        MemEngine::default()
    }

    /// Simulates a crash: every batch not flushed is lost.
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
        s.unflushed.push(batch);
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let state = self.state.clone();
        Box::pin(async move {
            let mut s = state.lock().expect("poisoned");
            let pending = std::mem::take(&mut s.unflushed);
            for b in &pending {
                apply_to(&mut s.durable, b);
            }
            Ok(())
        })
    }

    fn size_on_disk(&self) -> u64 {
        0
    }
}
