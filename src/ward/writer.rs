//! The ward's write path: validated changes are numbered, stored with their
//! outbox entries in one atomic batch per group, flushed once per group, and
//! only then acknowledged (the next group is written while one flushes). The flushed watermark is published for the
//! replicator, which never sends past it.

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::WardError;
use crate::clock::now_ms;
use crate::store::{GroupCommit, NewChange, StoreError, WardStore};

/// Submits durable writes to the ward's store. A write is one or more
/// changes, stored in the same atomic batch (a registration that concerns
/// two citizens is both or neither).
#[derive(Clone)]
pub struct Writer {
    commit: GroupCommit<Vec<NewChange>, Result<Vec<u64>, StoreError>>,
}

impl Writer {
    /// Starts the commit task. Returns the writer, a receiver of the highest
    /// durable sequence number, and the task (it ends once every writer is dropped).
    pub fn spawn(store: WardStore, max_group: usize) -> (Writer, watch::Receiver<u64>, JoinHandle<()>) {
        let (durable_tx, durable_rx) = watch::channel(store.last_seq());
        let (commit, task) = GroupCommit::spawn(max_group, move |writes: Vec<Vec<NewChange>>| {
            let n = writes.len();
            let sizes: Vec<usize> = writes.iter().map(Vec::len).collect();
            let group: Vec<NewChange> = writes.into_iter().flatten().collect();
            // Written now, in group order; made durable by the future.
            let appended = store.append(&group, now_ms());
            let (store, durable_tx) = (store.clone(), durable_tx.clone());
            async move {
                let result = match appended {
                    Ok(seqs) if crate::mutation::active(crate::mutation::Mutation::AckBeforeFlush) => {
                        durable_tx.send_replace(store.last_seq());
                        Ok(seqs)
                    }
                    Ok(seqs) => store.flush().await.map(|upto| {
                        durable_tx.send_if_modified(|d| {
                            let newer = upto > *d;
                            *d = (*d).max(upto);
                            newer
                        });
                        seqs
                    }),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(seqs) => {
                        let mut seqs = seqs.into_iter();
                        sizes.iter().map(|k| Ok(seqs.by_ref().take(*k).collect())).collect()
                    }
                    Err(e) => {
                        tracing::error!(error = %e, writes = n, "write group failed");
                        vec![Err(e); n]
                    }
                }
            }
        });
        (Writer { commit }, durable_rx, task)
    }

    /// Stores one change durably and returns its sequence number.
    pub async fn write(&self, change: NewChange) -> Result<u64, WardError> {
        let seqs = self.write_all(vec![change]).await?;
        Ok(seqs[0])
    }

    /// Stores `changes` durably, all in one atomic batch; their sequence numbers.
    pub async fn write_all(&self, changes: Vec<NewChange>) -> Result<Vec<u64>, WardError> {
        match self.commit.submit(changes).await {
            Err(_) => Err(WardError::ShuttingDown),
            Ok(r) => Ok(r?),
        }
    }
}
