//! One simulated run: the hosts, the clients and the seeded fault
//! schedule, on a simulated clock with seeded retry jitter.

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
use wardsync::store::MemEngine;

use super::nodes;
use super::workload::{self, Shared};

/// The wards: (code, host).
const WARDS: [(&str, &str); 3] = [("00082", "w00082"), ("00145", "w00145"), ("00004", "w00004")];
/// Operations each ward's driver makes.
const OPS: usize = 40;
/// The simulated wall clock starts at 2026-06-01 00:00 UTC.
const EPOCH_S: u64 = 1_780_272_000;

/// What a run found: the violations, and a fingerprint of the run.
pub struct Outcome {
    pub problems: Vec<String>,
    pub fingerprint: String,
}

pub fn certificates() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    let ca = DevCa::open_or_create(certs.path()).unwrap();
    ca.issue_city().unwrap();
    ca.issue("office", &["office"]).unwrap();
    for code in WARDS.iter().map(|(code, _)| *code).chain([super::forger::FORGER]) {
        ca.issue_ward(&WardCode::parse(code).unwrap()).unwrap();
    }
    certs
}

/// Each ward's clock skew, keyed by when its host was registered (the
/// only thing that tells hosts apart from inside the clock).
fn clock(seed: u64) -> Rc<dyn Fn() -> i64> {
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
    Rc::new(clock)
}

/// How long a flush takes on a ward's disk and on the city's (busier), as
/// a disk's sync does: a crash while it runs keeps nothing of it, and
/// whatever a node reports before it completes (the `welcome-before-flush`
/// mutation) can be lost.
const FLUSH_TIME: Duration = Duration::from_millis(4);
const CITY_FLUSH_TIME: Duration = Duration::from_millis(150);

pub fn run_seed(seed: u64, certs: &Path, restores: bool) -> Outcome {
    let clock = clock(seed);
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
    let city_engine = MemEngine::with_flush_time(CITY_FLUSH_TIME);
    nodes::city(&mut sim, &city_engine, certs);
    let mut stores = vec![("city", "city", city_engine)];
    for (code, host) in WARDS {
        sim.step().unwrap();
        let engine = MemEngine::with_flush_time(FLUSH_TIME);
        // With restores, no scheduled verification: a copy put back must
        // be brought level by the protocol alone (a fork found by the
        // chain), as where operators switch verification off.
        nodes::ward(&mut sim, (host, code), &engine, certs, if restores { 0 } else { 60_000 });
        stores.push((host, code, engine));
    }
    sim.step().unwrap();
    let shared = Arc::new(Shared::new(&WARDS));
    let mut taken = std::collections::BTreeSet::new();
    for (i, (code, host)) in WARDS.into_iter().enumerate() {
        let ward_seed = seed * 31 + i as u64;
        // Records another ward's pool already holds would be that ward's.
        let pool: Vec<_> = wardsync::generate::sample(&WardCode::parse(code).unwrap(), OPS, ward_seed)
            .into_iter()
            .filter(|r| taken.insert(r.key().unwrap()))
            .collect();
        sim.client(
            format!("driver-{code}"),
            workload::drive(shared.clone(), (code, host), pool, OPS, ward_seed),
        );
    }
    sim.client("office", workload::office(shared.clone(), WARDS.to_vec(), certs.to_path_buf(), seed));
    shared.ledger.expect_refused(super::forger::FORGER);
    sim.client("forger", super::forger::forge(shared.clone(), WARDS.len(), certs.to_path_buf(), seed));

    let mut faults = Faults::new(seed, stores, restores);
    let mut ticks = 0u64;
    loop {
        if !shared.healed.load(Ordering::SeqCst) {
            if shared.done.load(Ordering::SeqCst) == WARDS.len() {
                faults.heal_all(&mut sim);
                shared.healed.store(true, Ordering::SeqCst);
            } else if ticks.is_multiple_of(100) {
                faults.maybe_inject(&mut sim, ticks, &shared.ledger);
            }
            faults.due(&mut sim, ticks);
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

/// A node's store: (host, node: a ward code or "city", engine).
type Store = (&'static str, &'static str, MemEngine);

/// The seeded fault schedule.
struct Faults {
    rng: StdRng,
    crashes: usize,
    /// The tick at which the city crashes, if one is scheduled.
    city_crash_at: Option<u64>,
    stores: Vec<Store>,
    /// The copy of a store taken during the run (host, node, copy, the
    /// ledger's mark when it was taken): what that node is put back to.
    copy: Option<(&'static str, &'static str, MemEngine, u64, bool)>,
    /// Nodes put back to a copy so far.
    restores: usize,
    /// Whether copies are taken and put back at all.
    restoring: bool,
    /// Whether a copy is marked as one (its own, so that the schedule of
    /// faults stays what it was).
    marks: StdRng,
}

impl Faults {
    fn new(seed: u64, stores: Vec<Store>, restoring: bool) -> Faults {
        Faults {
            rng: StdRng::seed_from_u64(seed ^ 0xfa17),
            crashes: 0,
            city_crash_at: None,
            stores,
            copy: None,
            restores: 0,
            restoring,
            marks: StdRng::seed_from_u64(seed ^ 0x3a7c),
        }
    }

    /// Takes a copy of a node's store (a backup), or puts the node whose
    /// store was copied back to that copy (the backup restored onto a new
    /// disk): the node stops, its store is replaced, and it starts again.
    fn copy_or_restore(&mut self, sim: &mut turmoil::Sim<'_>, ledger: &super::common::ledger::Ledger) {
        match self.copy.take() {
            None => {
                // As `wardsync backup` takes it (marked as a copy), or as a
                // VM snapshot or a copied directory is (unmarked).
                let (host, node, engine) = &self.stores[self.rng.gen_range(0..self.stores.len())];
                let marked = self.marks.gen_bool(0.5);
                tracing::warn!(host, node, marked, "fault: a copy of the node's store is taken");
                let copy = engine.snapshot();
                if marked {
                    wardsync::store::backup::mark_copy(&copy).unwrap();
                }
                self.copy = Some((host, node, copy, ledger.mark(), marked));
            }
            Some((host, node, copy, mark, marked)) => {
                let engine = &self.stores.iter().find(|(h, _, _)| *h == host).expect("a store").2;
                tracing::warn!(host, node, "fault: the node is put back to a copy of its store");
                sim.crash(host);
                engine.restore(&copy);
                ledger.restored(node, mark, marked);
                sim.bounce(host);
                self.restores += 1;
            }
        }
    }

    /// Crashes the city if it is time to.
    fn due(&mut self, sim: &mut turmoil::Sim<'_>, tick: u64) {
        if self.city_crash_at.is_some_and(|at| at <= tick) {
            self.city_crash_at = None;
            sim.bounce("city");
        }
    }

    /// Every 100 ms of simulated time (`tick`, in ms): perhaps one fault, or one repair.
    fn maybe_inject(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        tick: u64,
        ledger: &super::common::ledger::Ledger,
    ) {
        let (_, host) = WARDS[self.rng.gen_range(0..WARDS.len())];
        match self.rng.gen_range(0..100) {
            0..6 => sim.partition(host, "city"),
            6..10 => sim.partition_oneway("city", host),
            10..12 => sim.partition_oneway(host, "city"),
            12..16 => sim.hold(host, "city"),
            16..18 => sim.set_link_max_message_latency(host, "city", Duration::from_millis(5000)),
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
            // A power cut of a ward, and of the city a moment later (while
            // the ward reconnects and what it sent last is being flushed).
            38..42 if self.crashes < 3 => {
                self.crashes += 2;
                sim.bounce(host);
                self.city_crash_at = Some(tick + self.rng.gen_range(20..400));
            }
            // A node's store copied, and later put back to that copy.
            42..44 if self.restoring && self.restores < 2 => self.copy_or_restore(sim, ledger),
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
