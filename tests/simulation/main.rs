//! Deterministic simulation: the real city and ward code, over the real
//! tonic and rustls stack, on turmoil's simulated network. Three wards with
//! skewed clocks and the city data office write, amend, delete, transfer
//! and edit records while a seeded schedule partitions links (both ways or
//! one way, so acks are lost), holds messages, and crashes and restarts
//! wards and the city (keeping only what they flushed). Then every fault is
//! healed and the run is checked against the ledger (`common/ledger.rs`).
//!
//! The wall clock and the retry jitter come from the seed too
//! (`wardsync::clock::simulate`), so a seed replays the same run:
//! `WARDSYNC_SIM_FROM=SEED WARDSYNC_SIM_SEEDS=1 cargo test --test simulation sweep`.
//! `WARDSYNC_SIM_SEEDS=N` sets the sweep's size (200 by default);
//! `scripts/soak.sh` runs thousands.

#[path = "../common/mod.rs"]
mod common;
mod net;
mod nodes;
mod workload;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wardsync::auth::DevCa;
use wardsync::model::WardCode;
use wardsync::mutation::{Mutation, inject};
use wardsync::store::MemEngine;

use common::ledger::key_of;
use workload::Shared;

/// The wards: (code, host).
const WARDS: [(&str, &str); 3] = [("00082", "w00082"), ("00145", "w00145"), ("00004", "w00004")];
/// Operations each ward's driver makes.
const OPS: usize = 40;
/// The simulated wall clock starts at 2026-06-01 00:00 UTC.
const EPOCH_S: u64 = 1_780_272_000;

/// What a run found: the violations, and a fingerprint of the run.
struct Outcome {
    problems: Vec<String>,
    fingerprint: String,
}

fn certificates() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    let ca = DevCa::open_or_create(certs.path()).unwrap();
    ca.issue_city().unwrap();
    ca.issue("office", &["office"]).unwrap();
    for (code, _) in WARDS {
        ca.issue_ward(&WardCode::parse(code).unwrap()).unwrap();
    }
    certs
}

/// Each ward's clock skew, keyed by when its host was registered (the
/// only thing that tells hosts apart from inside the clock).
fn clock(seed: u64) -> (Rc<dyn Fn() -> i64>, Vec<i64>) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c10c);
    let skews: Vec<i64> = WARDS.iter().map(|_| rng.gen_range(-90_000..=90_000)).collect();
    let by_offset: BTreeMap<u128, i64> = skews.iter().enumerate().map(|(i, s)| (i as u128 + 1, *s)).collect();
    let clock = move || match (turmoil::since_epoch(), turmoil::sim_elapsed()) {
        (Some(now), Some(sim)) => {
            let registered_at = (sim - turmoil::elapsed()).as_millis();
            now.as_millis() as i64 + by_offset.get(&registered_at).copied().unwrap_or(0)
        }
        _ => EPOCH_S as i64 * 1000,
    };
    (Rc::new(clock), skews)
}

fn run_seed(seed: u64, certs: &Path) -> Outcome {
    let (clock, _skews) = clock(seed);
    let jitter = Rc::new(RefCell::new(StdRng::seed_from_u64(seed ^ 0x717e)));
    let _simulated = wardsync::clock::simulate(clock, Rc::new(move || jitter.borrow_mut().r#gen::<f64>()));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_S))
        .simulation_duration(Duration::from_secs(900))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .build();
    // Hosts are registered one tick apart so the clock can tell them apart.
    let city_engine = MemEngine::new();
    nodes::city(&mut sim, &city_engine, certs);
    for (code, host) in WARDS {
        sim.step().unwrap();
        nodes::ward(&mut sim, host, code, &MemEngine::new(), certs);
    }
    sim.step().unwrap();
    let shared = Arc::new(Shared::new(&WARDS));
    let mut taken = std::collections::BTreeSet::new();
    for (i, (code, host)) in WARDS.into_iter().enumerate() {
        let ward_seed = seed * 31 + i as u64;
        // Records another ward's pool already holds would be that ward's.
        let pool: Vec<_> = wardsync::generate::sample(&WardCode::parse(code).unwrap(), OPS, ward_seed)
            .into_iter()
            .filter(|r| taken.insert(key_of(r)))
            .collect();
        sim.client(
            format!("driver-{code}"),
            workload::drive(shared.clone(), (code, host), pool, OPS, ward_seed),
        );
    }
    sim.client("office", workload::office(shared.clone(), WARDS.to_vec(), certs.to_path_buf(), seed));

    let mut faults = Faults::new(seed);
    let mut ticks = 0u64;
    loop {
        if !shared.healed.load(Ordering::SeqCst) {
            if shared.done.load(Ordering::SeqCst) == WARDS.len() {
                faults.heal_all(&mut sim);
                shared.healed.store(true, Ordering::SeqCst);
            } else if ticks % 100 == 0 {
                faults.maybe_inject(&mut sim);
            }
        }
        ticks += 1;
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                return Outcome {
                    problems: vec![format!("simulation failed: {e}")],
                    fingerprint: String::new(),
                };
            }
        }
    }
    match shared.outcome.lock().unwrap().take() {
        Some((problems, fingerprint)) => Outcome { problems, fingerprint },
        None => Outcome { problems: vec!["the office did not finish".into()], fingerprint: String::new() },
    }
}

/// The seeded fault schedule.
struct Faults {
    rng: StdRng,
    crashes: usize,
}

impl Faults {
    fn new(seed: u64) -> Faults {
        Faults { rng: StdRng::seed_from_u64(seed ^ 0xfa17), crashes: 0 }
    }

    /// Every 100 ms of simulated time: perhaps one fault, or one repair.
    fn maybe_inject(&mut self, sim: &mut turmoil::Sim<'_>) {
        let (_, host) = WARDS[self.rng.gen_range(0..WARDS.len())];
        match self.rng.gen_range(0..100) {
            0..6 => sim.partition(host, "city"),
            6..10 => sim.partition_oneway("city", host),
            10..12 => sim.partition_oneway(host, "city"),
            12..16 => sim.hold(host, "city"),
            16..18 => sim.set_link_max_message_latency(host, "city", Duration::from_millis(400)),
            18..20 => sim.set_link_fail_rate(host, "city", 0.001),
            20..34 => Self::heal(sim, host),
            34..37 if self.crashes < 4 => {
                self.crashes += 1;
                sim.bounce(host);
            }
            37..38 if self.crashes < 4 => {
                self.crashes += 1;
                sim.bounce("city");
            }
            _ => {}
        }
    }

    fn heal(sim: &mut turmoil::Sim<'_>, host: &str) {
        sim.repair(host, "city");
        sim.release(host, "city");
        sim.set_link_max_message_latency(host, "city", Duration::from_millis(20));
        sim.set_link_fail_rate(host, "city", 0.0);
    }

    fn heal_all(&mut self, sim: &mut turmoil::Sim<'_>) {
        for (_, host) in WARDS {
            Self::heal(sim, host);
        }
    }
}

/// Seeds `from..from + count`, from `WARDSYNC_SIM_FROM` and `WARDSYNC_SIM_SEEDS`.
fn seeds(default_count: u64) -> std::ops::Range<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let from = var("WARDSYNC_SIM_FROM").unwrap_or(0);
    from..from + var("WARDSYNC_SIM_SEEDS").unwrap_or(default_count)
}

fn replay(seed: u64) -> String {
    format!(
        "replay: WARDSYNC_SIM_FROM={seed} WARDSYNC_SIM_SEEDS=1 cargo test --test simulation sweep -- --nocapture"
    )
}

/// Logs to stderr when `RUST_LOG` is set (e.g. `RUST_LOG=wardsync=debug` when replaying).
fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
}

#[test]
fn sweep() {
    logs();
    let certs = certificates();
    let mut failures = Vec::new();
    for seed in seeds(200) {
        let outcome = run_seed(seed, certs.path());
        if !outcome.problems.is_empty() {
            eprintln!("seed {seed} failed:\n  {}\n{}", outcome.problems.join("\n  "), replay(seed));
            failures.push(seed);
        }
    }
    assert!(failures.is_empty(), "seeds that broke an invariant: {failures:?}");
}

#[test]
fn a_seed_replays_the_same_run() {
    let certs = certificates();
    for seed in [3, 11] {
        let (a, b) = (run_seed(seed, certs.path()), run_seed(seed, certs.path()));
        assert!(a.fingerprint.lines().count() > 10, "seed {seed} made too few changes to compare");
        assert_eq!(a.fingerprint, b.fingerprint, "seed {seed} ran differently twice");
    }
}

/// The harness bites: each injected bug makes some seed of a short sweep fail.
#[test]
fn injected_bugs_are_caught() {
    let certs = certificates();
    for m in [Mutation::AckBeforeFlush, Mutation::ApplyDuplicates] {
        let _bug = inject(m);
        let caught = (0..40).find(|seed| !run_seed(*seed, certs.path()).problems.is_empty());
        assert!(caught.is_some(), "{m:?} went unnoticed by 40 seeds");
    }
}
