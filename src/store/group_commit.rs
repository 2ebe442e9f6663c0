//! Group commit: many concurrent writers share one atomic batch and one flush.
//!
//! Writers submit requests over a channel; one task takes everything queued
//! (up to a bound), hands the group to a commit function that writes and
//! flushes it once, and answers every writer. While one group is flushing
//! the next one gathers, so throughput grows with concurrency while each
//! writer still waits for its own data to be durable.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

type Job<Req, Resp> = (Req, oneshot::Sender<Resp>);

/// Handle for submitting requests to a group-commit task. Cloneable; the
/// task ends, after finishing its current group, once every handle is gone.
pub struct GroupCommit<Req, Resp> {
    tx: mpsc::Sender<Job<Req, Resp>>,
}

impl<Req, Resp> Clone for GroupCommit<Req, Resp> {
    fn clone(&self) -> Self {
        GroupCommit { tx: self.tx.clone() }
    }
}

/// The commit task has stopped (the node is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the writer has shut down")]
pub struct Closed;

impl<Req: Send + 'static, Resp: Send + 'static> GroupCommit<Req, Resp> {
    /// Starts the commit task. `commit` receives each group and must return
    /// one response per request, in order.
    pub fn spawn<F, Fut>(max_group: usize, mut commit: F) -> (Self, JoinHandle<()>)
    where
        F: FnMut(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Resp>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<Job<Req, Resp>>(max_group.max(1) * 2);
        let task = tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(max_group);
            while rx.recv_many(&mut jobs, max_group.max(1)).await > 0 {
                let (reqs, waiters): (Vec<Req>, Vec<oneshot::Sender<Resp>>) = jobs.drain(..).unzip();
                let resps = commit(reqs).await;
                debug_assert_eq!(resps.len(), waiters.len());
                for (w, r) in waiters.into_iter().zip(resps) {
                    // A writer that gave up waiting is not an error: its data is stored.
                    let _ = w.send(r);
                }
            }
        });
        (GroupCommit { tx }, task)
    }

    /// Submits one request and waits for its response.
    pub async fn submit(&self, req: Req) -> Result<Resp, Closed> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((req, tx)).await.map_err(|_| Closed)?;
        rx.await.map_err(|_| Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_writers_share_groups_and_get_their_own_answer() {
        let groups = Arc::new(AtomicUsize::new(0));
        let g = groups.clone();
        let (gc, task) = GroupCommit::spawn(64, move |reqs: Vec<u32>| {
            g.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                reqs.into_iter().map(|r| r * 2).collect::<Vec<_>>()
            }
        });
        let mut handles = Vec::new();
        for i in 0..200u32 {
            let gc = gc.clone();
            handles.push(tokio::spawn(async move { (i, gc.submit(i).await.unwrap()) }));
        }
        for h in handles {
            let (i, r) = h.await.unwrap();
            assert_eq!(r, i * 2);
        }
        drop(gc);
        task.await.unwrap();
        let n = groups.load(Ordering::SeqCst);
        assert!((4..=200).contains(&n), "200 requests in groups of at most 64: {n}");
    }
}
