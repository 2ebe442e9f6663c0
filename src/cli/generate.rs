//! `wardsync gen`: seeded synthetic records for one ward or a whole city.

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::args::GenArgs;
use super::formats::{Format, RecordWriter};
use crate::generate::{Plan, WardGen, city_populations, corrupt, plant_civil};
use crate::model::reference::{commune, province_name};
use crate::model::{Kind, Record, WardCode};

/// Runs `wardsync gen`.
pub fn run(a: GenArgs) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&a.invalid), "--invalid must be between 0 and 1, not {}", a.invalid);
    let wards: Vec<(WardCode, Plan)> = match (&a.ward, &a.city) {
        (Some(w), _) => {
            let code = WardCode::parse(w).map_err(|e| anyhow::anyhow!("--ward: {e}"))?;
            anyhow::ensure!(
                commune(w).is_some(),
                "--ward: {w} is not a commune code in force since 1 July 2025"
            );
            let plan = Plan { citizens: a.citizens, businesses: a.businesses, parcels: a.parcels };
            anyhow::ensure!(
                plan != Plan::default(),
                "nothing to generate: give --citizens, --businesses and/or --parcels"
            );
            vec![(code, plan)]
        }
        (None, Some(p)) => {
            anyhow::ensure!(province_name(p).is_some(), "--city: {p} is not one of the 34 province codes");
            anyhow::ensure!(a.scale > 0.0 && a.scale <= 1.0, "--scale must be in (0, 1], not {}", a.scale);
            city_populations(p, a.seed, a.scale)
                .into_iter()
                .map(|(w, n)| (w, Plan::for_population(n)))
                .collect()
        }
        (None, None) => unreachable!("clap requires --ward or --city"),
    };
    let kinds_wanted = |p: &Plan| [p.citizens, p.businesses, p.parcels].iter().filter(|n| **n > 0).count();
    if a.out_dir.is_none() {
        anyhow::ensure!(wards.len() == 1, "a whole city goes into files: give --out-dir DIR");
        anyhow::ensure!(
            a.format == Format::Jsonl || kinds_wanted(&wards[0].1) == 1,
            "a CSV file holds one kind: generate one kind, or give --out-dir DIR for one file per kind"
        );
    }
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let today = crate::clock::today();
    let mut rng = StdRng::seed_from_u64(a.seed ^ 0xbad);
    let (mut total, mut bad) = (0u64, 0u64);
    let mut inconsistent = std::collections::BTreeMap::new();
    let stdout = std::io::stdout();
    // Made for the first record (a CSV file's header is its kind's).
    let mut to_stdout = None;
    for (ward, plan) in wards {
        let mut files: Vec<(Kind, RecordWriter<BufWriter<File>>)> = Vec::new();
        for r in WardGen::new(&ward, a.seed, today).records(plan) {
            let r: Record = if a.invalid > 0.0 && rng.gen_bool(a.invalid) {
                bad += 1;
                corrupt(&mut rng, &r).0
            } else if a.invalid > 0.0 && rng.gen_bool(a.invalid) {
                match plant_civil(&mut rng, &r) {
                    Some((planted, what)) => {
                        *inconsistent.entry(what).or_insert(0u64) += 1;
                        planted
                    }
                    None => r,
                }
            } else {
                r
            };
            total += 1;
            match &a.out_dir {
                None => {
                    if to_stdout.is_none() {
                        let out = BufWriter::new(stdout.lock());
                        to_stdout = Some(RecordWriter::new(out, a.format, r.kind(), false)?);
                    }
                    to_stdout.as_mut().expect("just made").write(&r)?
                }
                Some(dir) => {
                    let kind = r.kind();
                    if !files.iter().any(|(k, _)| *k == kind) {
                        let path = dir.join(format!("{ward}-{kind}.{}", a.format.extension()));
                        let f = File::create(&path)
                            .with_context(|| format!("cannot create {}", path.display()))?;
                        files.push((kind, RecordWriter::new(BufWriter::new(f), a.format, kind, false)?));
                    }
                    let (_, w) = files.iter_mut().find(|(k, _)| *k == kind).expect("just added");
                    w.write(&r)?;
                }
            }
        }
        for (_, w) in files {
            w.finish()?;
        }
    }
    if let Some(w) = to_stdout {
        w.finish()?;
    }
    std::io::stdout().flush()?;
    let planted: Vec<String> = inconsistent.iter().map(|(what, n)| format!("{n} {what}")).collect();
    eprintln!(
        "generated {total} records ({bad} made invalid on purpose; civil-status inconsistencies planted in valid ones: {})",
        if planted.is_empty() { "none".to_string() } else { planted.join(", ") }
    );
    Ok(())
}
