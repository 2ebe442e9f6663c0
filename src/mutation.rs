//! Deliberate bugs a test can switch on, to prove that the simulation's
//! invariant checks catch them (a harness that never fails proves nothing).
//! Off unless a test turns one on for its own thread with [`inject`].

use std::cell::Cell;

/// A bug that can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The city applies re-sent changes again instead of skipping them.
    ApplyDuplicates,
    /// The ward acknowledges writes without flushing them to disk.
    AckBeforeFlush,
}

thread_local! {
    static ACTIVE: Cell<Option<Mutation>> = const { Cell::new(None) };
}

/// True if `m` is switched on for this thread.
pub fn active(m: Mutation) -> bool {
    ACTIVE.with(|a| a.get() == Some(m))
}

/// Switches `m` on for this thread until the returned guard is dropped.
pub fn inject(m: Mutation) -> Injected {
    ACTIVE.with(|a| a.set(Some(m)));
    Injected(())
}

/// Switches the mutation off when dropped (see [`inject`]).
#[must_use = "the mutation is switched off when this guard is dropped"]
pub struct Injected(());

impl Drop for Injected {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(None));
    }
}
