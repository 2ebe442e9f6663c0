//! The check at the top of every city RPC: the caller's certificate must not
//! be revoked and must carry a role that allows the call. Denials are
//! logged, counted and written to the audit trail.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Status};

use crate::auth::{Access, Peer, Role};
use crate::clock::now_ms;
use crate::store::CityStore;

/// Admits or refuses callers against the access rules in force.
#[derive(Clone)]
pub struct Guard {
    access: watch::Receiver<Arc<Access>>,
    store: CityStore,
}

impl Guard {
    /// A guard over `access`, which the configuration reload replaces.
    pub fn new(access: watch::Receiver<Arc<Access>>, store: CityStore) -> Guard {
        Guard { access, store }
    }

    /// The peer of `req` if it may call `rpc` (one of `any_of`), else `PERMISSION_DENIED`.
    pub fn admit<T>(&self, req: &Request<T>, any_of: &[Role], rpc: &str) -> Result<Peer, Status> {
        let peer = Peer::of(req)?;
        self.recheck(&peer, any_of, rpc)?;
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

    /// Completes when the access rules are replaced (or the city stops).
    pub async fn changed(&mut self) {
        if self.access.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
