//! Deliberate bugs a test can switch on, to prove that its invariant checks
//! catch them (a harness that never fails proves nothing).
//!
//! The switches exist only with the `mutation` feature, which the test
//! build turns on (`wardsync` is its own dev-dependency with that feature);
//! in any other build [`active`] is a constant `false` and no bug can be
//! switched on. A mutation is process-wide: the simulation runs each seed in a
//! process of its own and calls `inject`; a `wardsync` process started
//! by a fault test reads it from the `WARDSYNC_MUTATION` environment
//! variable (`from_env`).

/// A bug that can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The city applies re-sent changes again instead of skipping them.
    ApplyDuplicates,
    /// The ward acknowledges writes without flushing them to disk.
    AckBeforeFlush,
    /// The city's `Welcome` reports a ward's changes as applied before
    /// they are durable.
    WelcomeBeforeFlush,
    /// A flush returns before its data is durable (the engine's old flush:
    /// sled's `sync_file_range` without an fsync); it becomes durable only
    /// with a later flush.
    FlushNotDurable,
    /// The city believes the version vector a ward sends: it neither checks
    /// it against the writes it holds nor judges ownership on its own state.
    TrustClaims,
    /// The ward's replication task panics once the city has welcomed it
    /// (a bug of any kind in a task of its own).
    ReplicatorPanics,
    /// The city on PostgreSQL commits with `synchronous_commit = off`: the
    /// database confirms a COMMIT before its WAL is on disk.
    PgAsyncCommit,
    /// The city takes a change's form on the sender's word: what is
    /// checked as a change is decoded (NUL in text, unknown fields...) is
    /// not, so only the database stands in the way.
    SkipFormCheck,
    /// The city decides that a re-sent change is a duplicate by its
    /// sequence number alone, without the chain: a ward put back to an
    /// older copy has its new changes skipped as if applied.
    DuplicatesBySequence,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 9] = [
        Mutation::ApplyDuplicates,
        Mutation::AckBeforeFlush,
        Mutation::WelcomeBeforeFlush,
        Mutation::FlushNotDurable,
        Mutation::TrustClaims,
        Mutation::ReplicatorPanics,
        Mutation::PgAsyncCommit,
        Mutation::SkipFormCheck,
        Mutation::DuplicatesBySequence,
    ];

    /// True for the bugs of the embedded stores that break the data's
    /// invariants (those the simulation must catch); the others are
    /// crashes, which the fault tests of the process itself catch, and bugs
    /// of the PostgreSQL store, which its crash test catches.
    pub fn breaks_invariants(self) -> bool {
        !matches!(self, Mutation::ReplicatorPanics | Mutation::PgAsyncCommit | Mutation::SkipFormCheck)
    }

    /// The mutation's name on command lines and in `WARDSYNC_MUTATION`.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::ApplyDuplicates => "apply-duplicates",
            Mutation::AckBeforeFlush => "ack-before-flush",
            Mutation::WelcomeBeforeFlush => "welcome-before-flush",
            Mutation::FlushNotDurable => "flush-not-durable",
            Mutation::TrustClaims => "trust-claims",
            Mutation::ReplicatorPanics => "replicator-panics",
            Mutation::PgAsyncCommit => "pg-async-commit",
            Mutation::SkipFormCheck => "skip-form-check",
            Mutation::DuplicatesBySequence => "duplicates-by-sequence",
        }
    }

    /// The mutation called `name`, or an error listing every name.
    pub fn parse(name: &str) -> Result<Mutation, String> {
        Mutation::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Mutation::ALL.iter().map(|m| m.name()).collect();
            format!("unknown mutation {name:?} (one of {})", names.join(", "))
        })
    }
}

#[cfg(feature = "mutation")]
static ACTIVE: std::sync::Mutex<Option<Mutation>> = std::sync::Mutex::new(None);

/// True if `m` is switched on in this process.
pub fn active(m: Mutation) -> bool {
    #[cfg(feature = "mutation")]
    {
        *ACTIVE.lock().expect("poisoned") == Some(m)
    }
    #[cfg(not(feature = "mutation"))]
    {
        let _ = m;
        false
    }
}

/// Switches `m` on until the returned guard is dropped.
#[cfg(feature = "mutation")]
pub fn inject(m: Mutation) -> Injected {
    *ACTIVE.lock().expect("poisoned") = Some(m);
    Injected(())
}

/// Switches on the mutation named by `WARDSYNC_MUTATION`, if set (for a
/// `wardsync` process a fault test starts); the guard lives as long as the
/// process.
#[cfg(feature = "mutation")]
pub fn from_env() -> Result<Option<Injected>, String> {
    match std::env::var("WARDSYNC_MUTATION") {
        Ok(name) if !name.is_empty() => {
            let m = Mutation::parse(&name)?;
            tracing::warn!(mutation = name, "a deliberate bug is switched on (test build)");
            Ok(Some(inject(m)))
        }
        _ => Ok(None),
    }
}

/// Switches the mutation off when dropped (see [`inject`]).
#[cfg(feature = "mutation")]
#[must_use = "the mutation is switched off when this guard is dropped"]
pub struct Injected(());

#[cfg(feature = "mutation")]
impl Drop for Injected {
    fn drop(&mut self) {
        *ACTIVE.lock().expect("poisoned") = None;
    }
}
