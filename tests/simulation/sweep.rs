//! The checks this binary makes by default, each seed in a child process
//! (`--seed N`), as many at once as there are cores.

use std::process::Command;
use std::sync::Mutex;

use wardsync::mutation::Mutation;

/// What a child process reported for one seed.
struct Report {
    seed: u64,
    fingerprint: Vec<String>,
    problems: Vec<String>,
}

fn child(seed: u64, mutation: Option<&str>, restores: bool) -> Report {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.args(["--seed", &seed.to_string()]).env_remove("RUST_LOG");
    if restores {
        cmd.arg("--restores");
    }
    if let Some(m) = mutation {
        cmd.args(["--mutation", m]);
    }
    let out = cmd.output().expect("run a seed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = |prefix: &str| -> Vec<String> {
        stdout.lines().filter_map(|l| l.strip_prefix(prefix)).map(String::from).collect()
    };
    let mut problems = lines("problem ");
    if !out.status.success() && problems.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        problems.push(format!("the run crashed ({}): {}", out.status, stderr.trim_end()));
    }
    Report { seed, fingerprint: lines("fingerprint "), problems }
}

/// Runs `seeds` in child processes, in parallel; reports in seed order.
fn run(seeds: Vec<u64>, mutation: Option<&str>, restores: bool, stop_at_first_failure: bool) -> Vec<Report> {
    let queue = Mutex::new(seeds.into_iter());
    let reports = Mutex::new(Vec::new());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    if stop_at_first_failure && failed.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let Some(seed) = queue.lock().unwrap().next() else { return };
                    let report = child(seed, mutation, restores);
                    if !report.problems.is_empty() {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    reports.lock().unwrap().push(report);
                }
            });
        }
    });
    let mut reports = reports.into_inner().unwrap();
    reports.sort_by_key(|r| r.seed);
    reports
}

/// Seeds past the sweep's on which a soak (`scripts/soak.sh`, with
/// restores) once found a defect, kept in the restore sweep: each a
/// scenario no seed of the sweep reaches (a city put back while a ward's
/// change built on another ward's lost write is on its way; a residence
/// transfer the city lost; a claim cut down in a refill; a lost stream's
/// batch still being applied when the ward is restored).
const FOUND_BY_SOAK: [u64; 5] = [219, 241, 445, 579, 580];

/// The sweep, the replay check and the mutation check; true if all pass.
pub fn all(seeds: std::ops::Range<u64>) -> bool {
    let started = std::time::Instant::now();
    let mut ok = true;

    let with_found: Vec<u64> = seeds.clone().chain(FOUND_BY_SOAK.iter().copied()).collect();
    for (name, seeds, restores, flag) in [
        ("sweep", seeds.clone().collect::<Vec<u64>>(), false, ""),
        ("restore sweep", with_found, true, " --restores"),
    ] {
        let count = seeds.len() as u64;
        let failures: Vec<Report> = run(seeds.clone(), None, restores, false)
            .into_iter()
            .filter(|r| !r.problems.is_empty())
            .collect();
        for f in &failures {
            eprintln!(
                "seed {} broke an invariant:\n  {}\nreplay: cargo test --test simulation -- --seed {}{flag}",
                f.seed,
                f.problems.join("\n  "),
                f.seed
            );
        }
        println!("{name}: {} of {count} seeds kept every invariant", count - failures.len() as u64);
        ok &= failures.is_empty();
    }

    for seed in [3, 11] {
        let runs = run(vec![seed, seed], None, false, false);
        let (a, b) = (&runs[0].fingerprint, &runs[1].fingerprint);
        let difference = a.iter().zip(b.iter()).find(|(x, y)| x != y);
        if a.len() < 10 {
            eprintln!("replay: seed {seed} made too few changes to compare");
            ok = false;
        } else if a != b {
            eprintln!("replay: seed {seed} ran differently twice; first difference: {difference:?}");
            ok = false;
        } else {
            println!("replay: seed {seed} ran the same twice ({} changes, {})", a.len() - 1, a[0]);
        }
    }

    for m in Mutation::ALL.into_iter().filter(|m| m.breaks_invariants()) {
        let caught =
            run((0..40).collect(), Some(m.name()), false, true).into_iter().find(|r| !r.problems.is_empty());
        match caught {
            Some(r) => {
                let first: String = r.problems[0].chars().take(200).collect();
                println!("mutation {m:?}: caught by seed {}: {first}", r.seed);
            }
            None => {
                eprintln!("mutation {m:?}: went unnoticed by 40 seeds: the checks are too weak");
                ok = false;
            }
        }
    }
    println!("simulation: {} in {:.0?}", if ok { "ok" } else { "FAILED" }, started.elapsed());
    ok
}
