//! The `engine` phase: what the storage engine alone does on this machine,
//! the ceiling under every other figure. It writes through [`SledEngine`]
//! (the engine the nodes use) in a directory of its own, with values of
//! 1 KB of random bytes (not compressible) under random keys. It also
//! reports how big records, states and outbox entries are as stored.

use std::time::Instant;

use rand::{Rng, SeedableRng};

use super::stats::Report;
use crate::store::codec::encode;
use crate::store::{Batch, Engine, SledEngine};

/// Records per atomic batch in the batched measurements.
const BATCH: usize = 1_000;
/// Small keys written beside each 1 KB value in the city-shaped measurement
/// (a new record at the city: its state, version, log entry and indexes).
const CITY_KEYS: usize = 7;

/// Adds the mean sizes, as stored, of a generated record, of its state
/// after one put, and of that put's outbox entry.
fn stored_sizes(report: &mut Report) {
    use crate::model::{Change, Hlc, Op, Stamp, VersionVector, Versioned, WardCode, flatten, put_values};
    let ward = WardCode::parse("00082").expect("a valid ward code");
    let stamp = Stamp { hlc: Hlc { wall_ms: 1_790_000_000_000, logical: 0 }, writer: ward.to_string() };
    let records = crate::generate::sample(&ward, 1_000, 3);
    let mut sizes = [0usize; 3];
    for (seq, r) in (1..).zip(&records) {
        let all = flatten(r);
        let fields: Vec<String> = all.keys().cloned().collect();
        let mut state = Versioned::default();
        state.apply(&put_values(&all, &fields), &stamp, &VersionVector::default());
        let key = r.key().expect("generated keys are valid");
        let change = Change {
            seq,
            written_at_ms: 0,
            key,
            stamp: stamp.clone(),
            context: VersionVector::default(),
            fields,
            op: Op::Put(r.clone()),
        };
        for (n, bytes) in sizes.iter_mut().zip([encode(r), encode(&state), encode(&change)]) {
            *n += bytes.len();
        }
    }
    for (what, n) in ["a record", "its state after a put", "the put's outbox entry"].iter().zip(sizes) {
        report.add("engine", &format!("stored size of {what}"), n as f64 / records.len() as f64, "bytes");
    }
}

/// Measures `records` inserts in batches of one key per record, then
/// with the city's shape, then `single` one-insert batches each flushed;
/// removes what it wrote.
pub async fn run(
    records: usize,
    single: usize,
    dir: &std::path::Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    stored_sizes(report);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut value = || {
        let mut v = vec![0u8; 1000];
        rng.fill(&mut v[..]);
        v
    };
    let path = dir.join("engine");
    let engine = SledEngine::open(&path, crate::config::CITY_CACHE_MB)?;
    let mut keys = rand::rngs::StdRng::seed_from_u64(12);
    for (extra, what) in
        [(0, "1 KB values, 1 key per record"), (CITY_KEYS, "1 KB value + 7 small keys per record")]
    {
        let started = Instant::now();
        for _ in 0..records.div_ceil(BATCH) {
            let mut batch = Batch::default();
            for _ in 0..BATCH {
                let id: u64 = keys.r#gen();
                batch.insert([b"r".as_slice(), &id.to_be_bytes()].concat(), value());
                for k in 0..extra {
                    batch.insert(
                        [&[b'a' + k as u8][..], &id.to_be_bytes()].concat(),
                        id.to_be_bytes().to_vec(),
                    );
                }
            }
            engine.apply(batch)?;
            engine.flush().await?;
        }
        let per_s = (records.div_ceil(BATCH) * BATCH) as f64 / started.elapsed().as_secs_f64();
        report.add("engine", &format!("{what}: records/s"), per_s, "rec/s");
    }
    let started = Instant::now();
    for _ in 0..single {
        let mut batch = Batch::default();
        let id: u64 = keys.r#gen();
        batch.insert([b"s".as_slice(), &id.to_be_bytes()].concat(), value());
        engine.apply(batch)?;
        engine.flush().await?;
    }
    report.add(
        "engine",
        "1 KB insert then flush, one at a time",
        single as f64 / started.elapsed().as_secs_f64(),
        "ops/s",
    );
    drop(engine);
    std::fs::remove_dir_all(&path)?;
    Ok(())
}
