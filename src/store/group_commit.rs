//! Group commit: many concurrent writers share one atomic batch and one flush.
//!
//! Writers submit requests over a channel; one task takes everything queued
//! (up to a bound) and hands the group to a commit function, which writes it
//! at once and returns a future that makes it durable and yields one answer
//! per writer. Groups are pipelined: while one group is flushing, the next
//! one is gathered and written, and answers go out in group order, each only
//! once its own flush is done. So throughput grows with concurrency while
//! each writer still waits for its own data to be durable.

use std::future::Future;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

type Job<Req, Resp> = (Req, oneshot::Sender<Resp>);

/// Groups written and not yet durable at any time: one flushing while the
/// next is written. More would only queue flushes behind each other.
const IN_FLIGHT: usize = 2;

/// Handle for submitting requests to a group-commit task. Cloneable; the
/// task ends, after finishing the groups it holds, once every handle is gone.
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
    /// Starts the commit task. `commit` receives each group, writes it
    /// before returning (groups are written in order, one at a time), and
    /// returns a future that makes the group durable and yields one
    /// response per request, in order. A group's future may assume that
    /// every earlier group's future has completed or is running.
    pub fn spawn<F, Fut>(max_group: usize, mut commit: F) -> (Self, JoinHandle<()>)
    where
        F: FnMut(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Resp>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Job<Req, Resp>>(max_group.max(1) * 2);
        let task = tokio::spawn(async move {
            let mut flushing = FuturesOrdered::new();
            let mut open = true;
            let mut jobs = Vec::with_capacity(max_group);
            while open || !flushing.is_empty() {
                tokio::select! {
                    biased;
                    Some((resps, waiters)) = flushing.next(), if !flushing.is_empty() => {
                        answer(resps, waiters);
                    }
                    n = rx.recv_many(&mut jobs, max_group.max(1)), if open && flushing.len() < IN_FLIGHT => {
                        if n == 0 {
                            open = false;
                            continue;
                        }
                        let (reqs, waiters): (Vec<Req>, Vec<oneshot::Sender<Resp>>) = jobs.drain(..).unzip();
                        let durable = commit(reqs);
                        flushing.push_back(async move { (durable.await, waiters) });
                    }
                }
            }
        });
        (GroupCommit { tx }, task)
    }

    /// Submits one request and waits for its response.
    pub async fn submit(&self, req: Req) -> Result<Resp, Closed> {
        self.queue(req).await?.await.map_err(|_| Closed)
    }

    /// Queues one request: it is written after every request queued before
    /// it returned, and its response comes on the receiver.
    pub async fn queue(&self, req: Req) -> Result<oneshot::Receiver<Resp>, Closed> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((req, tx)).await.map_err(|_| Closed)?;
        Ok(rx)
    }
}

/// Sends each writer its response.
fn answer<Resp>(resps: Vec<Resp>, waiters: Vec<oneshot::Sender<Resp>>) {
    debug_assert_eq!(resps.len(), waiters.len());
    for (w, r) in waiters.into_iter().zip(resps) {
        // A writer that gave up waiting is not an error: its data is stored.
        let _ = w.send(r);
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

    #[tokio::test]
    async fn the_next_group_is_written_while_one_flushes_and_answers_keep_group_order() {
        // The first group's flush holds until a later group has been written.
        let (release, held) = oneshot::channel::<()>();
        let mut held = Some(held);
        let mut release = Some(release);
        let (written_tx, mut written) = mpsc::unbounded_channel();
        let (gc, task) = GroupCommit::spawn(1, move |reqs: Vec<u32>| {
            written_tx.send(reqs.clone()).unwrap();
            let wait = held.take();
            if reqs == [2] {
                let _ = release.take().unwrap().send(());
            }
            async move {
                if let Some(wait) = wait {
                    wait.await.unwrap();
                }
                reqs
            }
        });
        let submit = |n: u32| {
            let gc = gc.clone();
            tokio::spawn(async move { gc.submit(n).await.unwrap() })
        };
        let first = submit(1);
        assert_eq!(written.recv().await, Some(vec![1]));
        let second = submit(2);
        // Without pipelining the first flush would wait forever.
        let answers = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            (first.await.unwrap(), second.await.unwrap())
        });
        assert_eq!(answers.await.expect("group 2 is written while group 1 flushes"), (1, 2));
        assert_eq!(written.recv().await, Some(vec![2]));
        drop(gc);
        task.await.unwrap();
    }
}
