//! The check at the top of every city RPC: the caller's certificate must not
//! be revoked and must carry a role that allows the call. Denials are
//! logged, counted and written to the audit trail.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use tokio::sync::watch;
use tonic::{Request, Status};

use crate::auth::{Access, Peer, Role};
use crate::clock::now_ms;
use crate::config::Limits;
use crate::store::CityStore;

/// Admits or refuses callers against the access rules in force.
#[derive(Clone)]
pub struct Guard {
    access: watch::Receiver<Arc<Access>>,
    store: CityStore,
    rate: Arc<DefaultKeyedRateLimiter<String>>,
}

impl Guard {
    /// A guard over `access`, which the configuration reload replaces,
    /// allowing each identity `limits.requests_per_second` on average.
    pub fn new(access: watch::Receiver<Arc<Access>>, store: CityStore, limits: &Limits) -> Guard {
        let per_second = NonZeroU32::new(limits.requests_per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(limits.request_burst.max(1)).expect("at least 1");
        let rate = Arc::new(RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)));
        Guard { access, store, rate }
    }

    /// The peer of `req` if it may call `rpc` (one of `any_of`) and is
    /// within its request rate; else `PERMISSION_DENIED` or `RESOURCE_EXHAUSTED`.
    pub fn admit<T>(&self, req: &Request<T>, any_of: &[Role], rpc: &str) -> Result<Peer, Status> {
        let peer = Peer::of(req)?;
        self.recheck(&peer, any_of, rpc)?;
        if self.rate.check_key(&peer.identity.to_string()).is_err() {
            tracing::warn!(identity = %peer.identity, rpc, "request rate exceeded");
            return Err(Status::resource_exhausted(format!(
                "too many requests from {}: slow down and retry",
                peer.identity
            )));
        }
        Ok(peer)
    }

    /// Checks `peer` again (for a long-lived stream, after a reload).
    pub fn recheck(&self, peer: &Peer, any_of: &[Role], rpc: &str) -> Result<(), Status> {
        let access = self.access.borrow().clone();
        access.check(peer, any_of, rpc).map_err(|e| {
            tracing::warn!(identity = %peer.identity, serial = %peer.serial, rpc, "denied: {e}");
            if let Err(err) =
                self.store.record_denial(&peer.identity.to_string(), rpc, &e.to_string(), now_ms())
            {
                tracing::error!(error = %err, "cannot write the denial to the audit trail");
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
