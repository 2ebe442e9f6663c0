//! The check at the top of every city RPC: the caller's certificate must not
//! be revoked and must carry a role that allows the call. Denials are
//! counted, and logged and written to the audit trail at a bounded rate per
//! identity (a flood of refused calls, a revoked certificate's included,
//! cannot fill the city's disk).

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use tokio::sync::watch;
use tonic::{Request, Status};

use crate::auth::{Access, Peer, Role};
use crate::clock::now_ms;
use crate::config::Limits;
use crate::store::CityDb;

/// A denied call on its way to the audit trail: identity, RPC, reason, time.
type DenialNote = (String, String, String, i64);

/// Denials waiting to be written at the most; beyond, they are only counted.
const DENIALS_QUEUED: usize = 1024;

/// Admits or refuses callers against the access rules in force.
#[derive(Clone)]
pub struct Guard {
    access: watch::Receiver<Arc<Access>>,
    store: Arc<dyn CityDb>,
    /// To the task that writes denials to the audit trail.
    denials: tokio::sync::mpsc::Sender<DenialNote>,
    rate: Arc<DefaultKeyedRateLimiter<String>>,
    /// The rate's burst: the most one call can cost.
    burst: NonZeroU32,
    /// Denials written to the audit trail, per identity.
    audit_rate: Arc<DefaultKeyedRateLimiter<String>>,
}

/// What a call costs against its caller's request rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// An ordinary call: one request.
    One,
    /// A call that makes the store flush (and sync) before it answers.
    Flush,
    /// A call that reads every record of a ward.
    Scan,
}

impl Cost {
    /// How many requests of the rate it takes.
    pub fn requests(self) -> u32 {
        match self {
            Cost::One => 1,
            Cost::Flush => 10,
            Cost::Scan => 100,
        }
    }
}

/// Denials of one identity written to the audit trail: this many a second
/// on average, in bursts of [`DENIALS_BURST`]; the rest are only counted.
const DENIALS_PER_SECOND: u32 = 2;
const DENIALS_BURST: u32 = 20;

impl Guard {
    /// A guard over `access`, which the configuration reload replaces,
    /// allowing each identity `limits.requests_per_second` on average.
    /// Starts the task that writes denials to the audit trail: it ends
    /// with the last clone of the guard.
    pub fn new(access: watch::Receiver<Arc<Access>>, store: Arc<dyn CityDb>, limits: &Limits) -> Guard {
        let per_second = NonZeroU32::new(limits.requests_per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(limits.request_burst.max(1)).expect("at least 1");
        let rate = Arc::new(RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)));
        let audit = Quota::per_second(NonZeroU32::new(DENIALS_PER_SECOND).expect("not 0"))
            .allow_burst(NonZeroU32::new(DENIALS_BURST).expect("not 0"));
        let (denials, mut queued) = tokio::sync::mpsc::channel::<DenialNote>(DENIALS_QUEUED);
        let writer = store.clone();
        tokio::spawn(async move {
            while let Some((identity, rpc, reason, at_ms)) = queued.recv().await {
                if let Err(err) = writer.record_denial(&identity, &rpc, &reason, at_ms).await {
                    tracing::error!(error = %err, "cannot write the denial to the audit trail");
                }
            }
        });
        Guard { access, store, denials, rate, burst, audit_rate: Arc::new(RateLimiter::keyed(audit)) }
    }

    /// The peer of `req` if it may call `rpc` (one of `any_of`) and is
    /// within its request rate; else `PERMISSION_DENIED` or `RESOURCE_EXHAUSTED`.
    pub fn admit<T>(&self, req: &Request<T>, any_of: &[Role], rpc: &str) -> Result<Peer, Status> {
        self.admit_costing(req, any_of, rpc, Cost::One)
    }

    /// [`Guard::admit`] for a call that costs `cost` requests of the rate.
    pub fn admit_costing<T>(
        &self,
        req: &Request<T>,
        any_of: &[Role],
        rpc: &str,
        cost: Cost,
    ) -> Result<Peer, Status> {
        let peer = Peer::of(req)?;
        self.recheck(&peer, any_of, rpc)?;
        // (Never more than a whole burst, or the call could never pass.)
        let n = NonZeroU32::new(cost.requests().min(self.burst.get())).expect("at least 1");
        if !matches!(self.rate.check_key_n(&peer.identity.to_string(), n), Ok(Ok(()))) {
            tracing::warn!(identity = %peer.identity, rpc, "request rate exceeded");
            return Err(Status::resource_exhausted(format!(
                "too many requests from {}: slow down and retry",
                peer.identity
            )));
        }
        Ok(peer)
    }

    /// The access rules in force.
    pub fn access(&self) -> Arc<Access> {
        self.access.borrow().clone()
    }

    /// True if `peer` has `role` under the access rules in force (no
    /// denial is recorded: for answers that differ by role).
    pub fn has_role(&self, peer: &Peer, role: Role) -> bool {
        self.access.borrow().roles_of(&peer.identity).contains(&role)
    }

    /// Checks `peer` again (for a long-lived stream, after a reload).
    pub fn recheck(&self, peer: &Peer, any_of: &[Role], rpc: &str) -> Result<(), Status> {
        let access = self.access.borrow().clone();
        access.check(peer, any_of, rpc).map_err(|e| {
            let identity = peer.identity.to_string();
            if self.audit_rate.check_key(&identity).is_err() {
                // Counted, not written: the trail already shows this identity being refused.
                self.store.count_denial();
                return e.into();
            }
            tracing::warn!(%identity, serial = %peer.serial, rpc, "denied: {e}");
            let note = (identity, rpc.to_string(), e.to_string(), now_ms());
            if self.denials.try_send(note).is_err() {
                tracing::error!("the audit trail's writer is behind: a denial was counted, not written");
                self.store.count_denial();
            }
            e.into()
        })
    }

    /// Completes, with the status to end it with, once a reload of the
    /// access rules denies `peer` what a long-lived stream of `rpc` needs
    /// (its certificate revoked, or its role withdrawn). A stream runs
    /// under `select!` with it, so it ends whatever it is waiting for,
    /// sending included.
    pub async fn until_denied(&self, peer: &Peer, any_of: &[Role], rpc: &str) -> Status {
        let mut access = self.access.clone();
        loop {
            if access.changed().await.is_err() {
                // The city is stopping: the stream ends with it.
                std::future::pending::<()>().await;
            }
            if let Err(status) = self.recheck(peer, any_of, rpc) {
                return status;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;
    use crate::store::{CityStore, MemEngine};

    #[tokio::test]
    async fn a_flood_of_refused_calls_is_counted_but_written_at_a_bounded_rate() {
        let store: Arc<dyn CityDb> =
            Arc::new(CityStore::open(Arc::new(MemEngine::new()), Default::default()).unwrap());
        let access = Access { revoked: ["0a".into()].into(), ..Access::default() };
        let guard = Guard::new(watch::channel(Arc::new(access)).1, store.clone(), &Limits::default());
        let revoked = Peer {
            identity: Identity::Named("office".into()),
            serial: "0a".into(),
            fingerprint: "ff".into(),
            cert: Arc::new([]),
        };
        for _ in 0..1000 {
            assert!(guard.recheck(&revoked, &[Role::OfficeReader], "Get").is_err());
        }
        // Written by the guard's task: wait for it, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.denied_calls() < 1000 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(store.denied_calls(), 1000, "every refusal is counted");
        let written = store.denials(0, usize::MAX).await.unwrap().len() as u32;
        assert!((DENIALS_BURST..DENIALS_BURST + 10).contains(&written), "{written} written");
    }
}
