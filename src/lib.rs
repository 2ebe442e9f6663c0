//! wardsync: every ward's records, replicated into one city database.
//!
//! # Code map
//!
//! - [`model`]: record kinds, keys, the three record schemas and their
//!   validation, changes and the ownership rule, hybrid clocks and the
//!   field-level convergent merge with its policies, civil-status
//!   registration (a registrar's checks, what a marriage, divorce, death or
//!   correction changes, the identity of a person with registered events,
//!   the data-quality problems), the official reference data
//!   (embedded), diacritics folding, digests of a ward's records, the
//!   canonical form, hash and chain link of what a ward signs
//!   (`model::signed`), and of what the data office signs of a request
//!   (`model::office_request`), checked against golden vectors.
//!   Pure: no I/O, no prost, no sled.
//! - [`store`]: persistence. The ward's [`store::WardStore`] (records and
//!   outbox) over the [`store::Engine`] facade (sled on disk, synced so
//!   that a flush survives a power cut, or memory that models a flush that
//!   takes time), and group commit. The city database's contract is the
//!   city's own operations, [`store::CityDb`], kept by two stores:
//!   [`store::CityStore`], embedded over an engine (merged records, indexes
//!   by ward, household, owner and folded name, change log, ward state,
//!   quarantine), and [`store::pg::PgCityStore`] on PostgreSQL (typed
//!   tables for the data office, several city processes on one database,
//!   TLS verified against the CA the city is given).
//!   Both apply changes with one shared merge (`store::city::apply`,
//!   writing through a `Target`), each ward's batches checked first
//!   against its chain as applied (`store::city::chain`), and repairs from
//!   a ward's whole states with it (`store::city::repair`). Beside the log,
//!   both keep what proves it: each batch as its ward signed it, the
//!   certificates of the keys that signed, and a change's context as sent
//!   where the city cut it, and each office request as the office signed
//!   it beside the changes it derived (`store::city::evidence`), and the log's
//!   running hash with its cursor in every write; an audit reads them
//!   back, page by page, from one view of the database without writing
//!   ([`store::Evidence`]: `KvEvidence`, `pg::PgEvidence`). The ward's
//!   store keeps its chain's anchor at the last acknowledged change. Consistent copies of a running
//!   embedded store ([`store::backup`]). The only module that knows sled or SQL.
//! - [`proto`]: generated gRPC types, conversions to and from `model`, and
//!   the one mapping of every layer's error to a gRPC status.
//! - [`ward`]: the ward agent: local API, writer, replicator (each batch
//!   chained and signed: `ward::chain`; a store found forked from the
//!   city's chain renumbers its queue), and verification against the
//!   city's copy (anti-entropy, refill after a loss of data, restore of a
//!   new store).
//! - [`city`]: the city server: replication ingest (one stream per ward,
//!   fenced: `city::streams`; each batch's content hashes, chain and
//!   signature checked on arrival: `city::arrival`), receipts signed with
//!   its key, each with a checkpoint of its log (`city::receipts`), losses
//!   judged on them (`city::losses`), the office's requests taken only
//!   signed by the caller's key (`city::requests`), its side of
//!   verification, retries
//!   of changes that waited for a refill, the query API, and the
//!   verification of its log against the wards' signatures and the CA
//!   (`city::log_audit`, `wardsync audit verify`).
//! - [`auth`]: TLS configuration, identities from certificates, a node's
//!   checks of its own certificate (whose it is, days left), signing with
//!   a node's certificate key and checking against a certificate, dev CA.
//! - [`config`]: TOML configuration of each node.
//! - [`clock`]: the wall clock and the retry jitter, read in one place, so a
//!   deterministic simulation can replace both.
//! - [`mutation`]: deliberate bugs a test switches on to prove the
//!   simulation and the power-loss tests catch them (test build only).
//! - [`net`]: accepting connections: TCP (no Nagle delay), the city's TLS
//!   handshakes (each on its own, with the configuration of the moment, so
//!   a reload applies to the next), the ward's private Unix socket;
//!   deadlines.
//! - [`metrics`]: Prometheus metrics and their HTTP endpoint.
//! - [`generate`]: the seeded generator of realistic records.
//! - [`fuzzing`]: entry points of the fuzz targets (`fuzz/`) and their corpus replay.
//! - [`cli`]: the subcommands other than `ward` and `city` (certs, put, get,
//!   list, status, lookup, gen, import, export, query, quarantine, demo,
//!   bench, verify, backup), how a command connects and fails (one exit
//!   status table, messages that say what to check: `cli::connect`,
//!   `cli::failure`), the CSV and JSON Lines formats as people make them,
//!   the office's requests signed with its certificate key (`cli::office`),
//!   and the TCP relay the demo and the fault tests cut, drop and slow down.
//!
//! # Architecture invariants
//!
//! 1. A write acknowledged to a client is durable, against a power cut and
//!    not only a crash: its record and outbox entry are written in one
//!    atomic batch and flushed before the reply (`ward::Writer`), and a
//!    flush syncs what sled's own flush leaves in the page cache (its data
//!    file, new blob files, changed directories: `store::SledEngine`).
//!    Group commit writes the next group while one flushes, but answers
//!    each group only after a flush that began after it was written
//!    (`store::GroupCommit`); the same holds for the city's acks, office
//!    edits and quarantine decisions.
//! 2. Sequence numbers are assigned once, without gaps, and never reused:
//!    the counter is stored in the same batch as the entry it numbers (a
//!    number lost unflushed in a crash was never acknowledged nor sent),
//!    and a ward that finds the city has applied a number it never reached
//!    (it lost data) renumbers its queue past the city's before sending.
//!    The city says what it applied of a ward (`Welcome`, a restoring
//!    ward's `Digest`) only once the ward's earlier streams have ended and
//!    every batch they queued is applied or failed: a lost incarnation's
//!    batches still in flight can never take numbers the ward uses again.
//! 3. The ward sends only flushed entries, so the city never holds a change
//!    a ward crash could take back.
//! 4. The city applies each (ward, sequence) at most once and in order: the
//!    ward's last applied sequence, and its chain's link there, are stored
//!    in the same atomic batch (on PostgreSQL, the same transaction, which
//!    reads them) as the changes, gaps are rejected, and duplicates are
//!    decided by the chain, never by the number alone: a batch must link
//!    onto the city's link (its link before its first change, or its own
//!    link at the last applied sequence, equal to the city's); anything
//!    else is a fork, refused and recorded. Each batch's content hashes are
//!    recomputed and its last link's signature checked against the
//!    certificate the ward connected with before it is queued (and so is
//!    the ward's own signature of each change to another ward's record, a
//!    registration, made apart from the batch); the batch
//!    as signed is stored in the write that first applies any of it, so
//!    every logged ward change can be checked against its ward's signature
//!    (`wardsync audit verify`); likewise every change the city writes
//!    itself is derived from an office request signed with the caller's
//!    certificate key (checked against it, and fresh), stored in the write
//!    that applies it (`city::requests`, `model::office_request`). What the city reports as
//!    applied (acks, `Welcome`, its ward table) is only ever what is
//!    durable (flushed; on PostgreSQL, committed, with COMMIT waiting for
//!    the WAL on disk whatever `synchronous_commit` the server sets, and a
//!    server with `fsync = off` refused). On PostgreSQL every
//!    write holds the lock on the `city_clock` row until COMMIT, so log
//!    cursors become visible in their order, whichever city process wrote;
//!    a group merged ahead of the lock (over a snapshot and what the group
//!    before it wrote) is written only if the row is, under the lock, the
//!    one it merged from, else merged again.
//! 5. A ward writes only valid records it owns, with three exceptions, each
//!    judged at the city on the city's own copy and log, never on the
//!    sender's word: a residence transfer into the sender sets only the
//!    owning ward and the residence registration of a record the city
//!    holds; a civil-status registration (marriage, divorce, death) sets
//!    the events and marital status of another ward's citizen, judged by
//!    the registrar's rules on the city's copy (exactly the events the city
//!    holds kept, or a beginning of them for a concurrent one; one event
//!    added by the sender; the status it implies; four a day at most per
//!    ward and citizen), and is never kept in the registering ward's copy;
//!    a ward a logged change named owner may write concurrently with the
//!    record changing hands, without taking it back, nor changing who a
//!    person is or their events. Once a citizen's record holds a registered
//!    event, no write (a ward's, at the ward and at the city; the office's
//!    edit or settlement) changes the person's name, date of birth or sex
//!    to a value no version holds, whatever the writer says it had seen,
//!    unless it appends the sender's own registered correction of it (a
//!    put at the ward and the office's edit append no event); nor drops an
//!    event of a version it had seen. A record is kept by
//!    the ward it is in (a citizen's permanent residence, a parcel's
//!    commune), judged where a change names its owner. A change's form
//!    (writers, fields, text, sizes) is checked as it is decoded. The city
//!    re-validates every change and checks every claim it carries against
//!    what the city holds: identity from the certificate, ownership from the
//!    city's copy and log, a version vector no further than the writes the
//!    city holds, a clock within the skew limit (which no peer's stamp can
//!    move the city's clock past). What it will not apply
//!    (malformed, invalid, not the sender's, built on a refused change)
//!    goes to the quarantine, is never dropped, and still advances the
//!    ward's sequence so the stream never blocks; a retry never undoes a
//!    newer change the writer had not seen, and a discard sends the ward
//!    what the city holds. A change quarantined for building on a write the
//!    city does not hold is retried without anyone once a repair brings
//!    writes back (within a day: a city that lost data gets it refilled).
//! 6. What is durable never moves backwards, across crashes and power cuts
//!    too: the ward's sequence numbers and clock, the city's applied
//!    sequence per ward and its log cursor. A node restored from an older
//!    copy is the exception that cannot be prevented, and it is brought
//!    level without anyone intervening: a city found holding less than it
//!    acknowledged, or a log ending before what a ward merged, resumes
//!    after it (no ward is ever wedged), records the loss and reports it
//!    as far as the city's own receipt the ward gives back proves it
//!    (`city::receipts`: nothing on the ward's word), and
//!    each ward refills it before sending anything more; a ward behind
//!    what the city applied renumbers past it and gets its records back,
//!    and so does a ward whose own link at the city's last applied change
//!    is not the city's (put back to an older copy, it numbered other
//!    changes again: a fork, found by the chain whatever the copy's mark
//!    and with verification off), moving its clock past the newest stamp
//!    the city applied of its; a
//!    new, empty ward store is restored from the city (records, log
//!    cursor, a counter past the city's) before it takes a write. The
//!    refill due is stored (`m:refill`) until done. A ward's notes of what
//!    the city acknowledged and of what it merged from the city are not
//!    flushed on their own: after a crash they may fall back, and the next
//!    `Welcome` or downstream message moves them on (re-sent and re-merged
//!    changes are harmless).
//! 7. City and wards merge with the same pure function, whose result does
//!    not depend on the order or repetition of changes: once every change
//!    has reached both, a ward's records and the city's copy are identical.
//!    Concurrent disagreeing writes are recorded as conflicts, never lost.
//!    Where changes alone cannot bring a ward's copy up to date (it was just
//!    handed the record, or its write raced writes it had not seen), the
//!    city tells it to fetch the record's whole state. Outside the tests,
//!    ward and city prove it: they compare digests of the ward's records
//!    (`model::digest`) on a schedule and on demand, and merge what differs
//!    both ways. From a ward's whole state the city takes only writes it
//!    could have had as changes, checked as changes: the ward's own, and
//!    others' only on their author's signature, which the city sent with
//!    them (an office request with the city's own signed statement of the
//!    change it derived, a registration signed by its ward on its own and
//!    applied with the context it signed: `city::relay`), or, another
//!    ward's ordinary writes (not a registration's fields), within a day
//!    of a loss recorded for that ward; into that ward's own valid
//!    records. The office's writes are never taken on a ward's word. A write whose claim was cut down to what a
//!    city that lost data held is widened when it comes again with more of
//!    its claim held (the same stamp, a wider context: `Versioned::adds`).
//! 8. A full outbox or disk rejects new writes (`RESOURCE_EXHAUSTED`) and
//!    never drops queued ones.
//! 9. A ward is never locked out by its own dead connections: a ward has
//!    one replication stream, a new one ends the one before, and keep-alive
//!    pings close connections that stopped answering.
//! 10. Only `insecure_dev` trusts a peer without a certificate; otherwise a
//!     transport that carries no TLS identity is refused.
//! 11. Nothing unbounded is read or kept on a peer's or a file's say: records
//!     and messages have size limits, every list and search is paged with a
//!     bounded read per page, the quarantine and the audit trail are capped.
//! 12. A node never runs half-dead: a panic in any task stops the process
//!     (exit 70) for its supervisor to restart, which invariant 1 makes safe.
//!
//! Deliberately absent: multi-tree sled transactions (they deadlocked with
//! flushes in our measurements), holding the whole outbox in memory, and
//! plaintext without an explicit `--insecure-dev`.

#![warn(missing_docs)]

pub mod auth;
pub mod city;
pub mod cli;
pub mod clock;
pub mod config;
pub mod fuzzing;
pub mod generate;
pub mod metrics;
pub mod model;
pub mod mutation;
pub mod net;
pub mod proto;
pub mod store;
pub mod ward;
