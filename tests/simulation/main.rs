//! Deterministic simulation: the real city and ward code, over the real
//! tonic and rustls stack, on turmoil's simulated network. Three wards with
//! skewed clocks and the city data office write, amend, delete, transfer
//! and edit records while a seeded schedule partitions links (both ways or
//! one way, so acks are lost), holds messages, and crashes and restarts
//! wards and the city (keeping only what they flushed); with `--restores`,
//! it also copies a node's store and later puts the node back to that copy
//! (a backup restored). Then every fault is healed and the run is checked
//! against the ledger (`common/ledger.rs`).
//!
//! The wall clock and the retry jitter come from the seed too
//! (`wardsync::clock::simulate`), and each seed runs in a process of its own
//! (tokio numbers tasks process-wide, and the order in which a crashed
//! host's tasks are dropped follows those numbers), so a seed replays the
//! same run: `cargo test --test simulation -- --seed N` (with
//! `RUST_LOG=wardsync=debug` for its logs).
//!
//! Without `--seed`, this binary (its own harness) checks, each seed in a
//! child process, several at once:
//! - the sweep: seeds `--from F` (0) to F + `--seeds N` (200, or
//!   `WARDSYNC_SIM_SEEDS`) keep every invariant;
//! - the restore sweep: the same seeds, with `--restores`, keep every
//!   invariant too (the ledger is told which node was put back
//!   to which copy: what it alone acknowledged since may be lost);
//! - replay: two seeds run twice give the same run (the city's whole log
//!   with stamps and times, and the simulated time it ended at);
//! - the harness bites: with each bug of `wardsync::mutation` injected
//!   (`--mutation ack-before-flush`, `apply-duplicates`,
//!   `welcome-before-flush`, `flush-not-durable`), some seed of the first
//!   40 fails.
//!
//! `scripts/soak.sh` runs thousands of seeds.

#[path = "../common/mod.rs"]
mod common;
mod forger;
mod net;
mod nodes;
mod scenario;
mod sweep;
mod workload;

use wardsync::mutation::{Mutation, inject};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test -- --list`: no named tests here
    }
    let mutation =
        value("--mutation").map(|m| Mutation::parse(&m).unwrap_or_else(|e| panic!("--mutation: {e}")));
    let number =
        |name: &str| value(name).map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("{name} {v:?}")));
    let restores = args.iter().any(|a| a == "--restores");
    match number("--seed") {
        Some(seed) => std::process::exit(one_seed(seed, mutation, restores)),
        None => {
            let count = number("--seeds")
                .or_else(|| std::env::var("WARDSYNC_SIM_SEEDS").ok().and_then(|v| v.parse().ok()))
                .unwrap_or(200);
            let from = number("--from").unwrap_or(0);
            let ok = sweep::all(from..from + count);
            std::process::exit(if ok { 0 } else { 1 });
        }
    }
}

/// Runs one seed in this process; prints its fingerprint and problems.
fn one_seed(seed: u64, mutation: Option<Mutation>, restores: bool) -> i32 {
    if std::env::var_os("RUST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let certs = scenario::certificates();
    let _bug = mutation.map(inject);
    let outcome = scenario::run_seed(seed, certs.path(), restores);
    for line in outcome.fingerprint.lines() {
        println!("fingerprint {line}");
    }
    for p in &outcome.problems {
        println!("problem {p}");
    }
    i32::from(!outcome.problems.is_empty())
}
