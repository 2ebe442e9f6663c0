//! Each ward's chain as the city applied it: the link of its last applied
//! change ([`crate::model::signed`]), checked against every batch before
//! anything of it is applied.
//!
//! A batch links onto the city's chain when the link it gives before its
//! first change is the city's link at `first − 1`, or, for a batch that
//! repeats changes the city applied, when its own link at the city's last
//! applied sequence is the city's: a hash chain, so equal links there
//! prove every change before them equal too. Anything else is a **fork**
//! (the ward was put back to an older copy and numbered other changes
//! again, or a peer forged a chain): recorded in the ward's state and
//! refused, never skipped as a duplicate. Duplicates are decided by the
//! chain, not by the sequence number alone.

use serde::{Deserialize, Serialize};

use super::{BatchRejected, WardState};
use crate::model::signed::{GENESIS, Hash, KeyId};
use crate::model::{Hlc, WardCode};

/// A ward's chain as the city applied it (stored under `C<ward>`; on
/// PostgreSQL, columns of `ward_state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The link of the last applied change; `None`: not known (applied
    /// before chains existed, or moved past on a ward's word without one),
    /// and then the next batch's is taken as it comes.
    pub link: Option<Hash>,
    /// The key id the last batch's content hashes were made with.
    pub key: KeyId,
    /// The newest stamp of the ward's changes the city applied: a ward
    /// that forked moves its clock past it.
    pub newest: Hlc,
    /// Forks found: batches that did not link onto the city's chain.
    pub forks: u64,
    /// The sequence the last fork was found at.
    pub fork_seq: u64,
}

impl Chain {
    /// True if nothing is known of the chain (nothing to store).
    pub fn is_empty(&self) -> bool {
        *self == Chain::default()
    }
}

/// The chain of a batch as the city checked it on arrival: the link before
/// its first change, the link of each change (in the batch's order), and
/// the key id its content hashes were made with (the certificate's).
#[derive(Debug, Clone, PartialEq)]
pub struct Links {
    /// The link before the first change.
    pub previous: Hash,
    /// The link of each change.
    pub links: std::sync::Arc<[Hash]>,
    /// The key the content hashes name.
    pub key: KeyId,
    /// The batch as the ward signed it, which the write that first applies
    /// any of it stores (shared by its parts applied apart; `None` in tests
    /// of the chain alone).
    pub signed: Option<std::sync::Arc<super::evidence::Signed>>,
}

impl Links {
    /// The links of changes `from..to` of the batch (by index), as a batch of their own.
    pub fn slice(&self, from: usize, to: usize) -> Links {
        let previous = if from == 0 { self.previous } else { self.links[from - 1] };
        Links { previous, links: self.links[from..to].into(), key: self.key, signed: self.signed.clone() }
    }
}

/// The city's link at the ward's last applied sequence, if known.
fn held_link(state: &WardState) -> Option<Hash> {
    state.chain.link.or((state.last_applied_seq == 0).then_some(GENESIS))
}

/// Checks that a batch of `ward`'s whose first change is `first` (and
/// last `last`) links onto the city's chain in `state`; a fork is recorded
/// in `state` and refused.
pub(super) fn check(
    ward: &WardCode,
    state: &mut WardState,
    (first, last): (u64, u64),
    links: &Links,
) -> Result<(), BatchRejected> {
    let applied = state.last_applied_seq;
    if first > applied.saturating_add(1) {
        return Ok(()); // a gap, refused as such
    }
    if last < applied {
        // Only changes the city applied: nothing shows they are the ones
        // it applied under those numbers. The ward resumes from `Welcome`.
        return Err(BatchRejected::Behind { ward: ward.clone(), last, applied });
    }
    let theirs = if first == applied + 1 { links.previous } else { links.links[(applied - first) as usize] };
    let Some(ours) = held_link(state) else { return Ok(()) };
    if first <= applied && links.key != state.chain.key && state.chain.link.is_some() {
        // Changes the city applied, hashed with another key id than they
        // were (the ward's certificate renewed between sending them and
        // hearing they were applied): nothing to compare, nothing to count.
        return Err(BatchRejected::Rekeyed { ward: ward.clone(), applied });
    }
    if theirs == ours || crate::mutation::active(crate::mutation::Mutation::DuplicatesBySequence) {
        return Ok(());
    }
    state.chain.forks += 1;
    state.chain.fork_seq = applied;
    Err(BatchRejected::Fork { ward: ward.clone(), seq: applied })
}

/// Moves the chain in `state` to the last change of a batch applied with `links`.
pub(super) fn advance(state: &mut WardState, links: &Links, newest: Hlc) {
    if let Some(last) = links.links.last() {
        state.chain.link = Some(*last);
        state.chain.key = links.key;
    }
    state.chain.newest = state.chain.newest.max(newest);
}
