//! `wardsync bench`: measures the figures of DESIGN section 11 on this
//! machine with real processes, real TLS and on-disk databases, and prints
//! them as a table (and as JSON with `--json`). No figure is asserted:
//! `scripts/bench.sh` sets them beside PostgreSQL's.
//!
//! Phases, in order (each may be left out with `--phases`):
//! - `engine`: the storage engine alone (no node): `--engine-records`
//!   inserts of 1 KB values in batches, one key per record and then with
//!   the city's shape, and `--single` (at most 2,000) inserts each flushed
//!   alone: the ceiling under the other figures;
//! - `write`: one ward agent (the city not running): `--clients` concurrent
//!   clients, then a single client, writing generated records; durable
//!   writes/s and latency percentiles; the agent's memory idle and after;
//! - `load`: the city starts empty and the ward's queue (every record of
//!   `write`) drains into it, timed from the city answering: records/s and
//!   MB/s, durable at the city;
//! - `stream`: `--records` more records written while connected, until the
//!   city holds them all;
//! - `outage`: the city stopped, `--records` updates queued, the city
//!   restarted: time for the backlog to drain;
//! - `update`: `--records` updates streamed while connected;
//! - `recovery`: with every record of the ward phases at the city, one
//!   comparison of the two copies, the ward's disk replaced (until it has
//!   restored itself), and the city put back to a copy from before the
//!   load (until the ward has refilled it);
//! - `steady`: `--wards` synthetic wards, each writing `--rate` changes/s for
//!   `--seconds`: replication lag percentiles (write to durable at the city);
//! - `get`: `--get-records` records loaded into the city, then `--gets`
//!   gets by key one at a time: latency percentiles; the city's memory and
//!   disk use.

mod engine;
mod nodes;
mod recovery;
mod stats;
mod synthetic;
mod ward;

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::args::BenchArgs;
use crate::generate::{amend, sample};
use crate::model::{Record, RecordKey, WardCode};
use crate::proto::pb;
use nodes::Lab;
use stats::{Latencies, Report, mb_per_s};

/// The ward whose agent the ward phases run.
const WARD: &str = "00082";
/// How long a drain may take before the benchmark gives up.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs the phases `a` names and prints their figures.
pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(dir) = &a.export_rows {
        return export_rows(&a, dir);
    }
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let synthetic = synthetic_wards(a.wards.max(a.get_wards));
    let ward_code = WardCode::parse(WARD).expect("a valid ward code");
    let mut certified = synthetic.clone();
    certified.push(ward_code.clone());
    let lab = Lab::new(&dir, &certified, (a.city_cache_mb, a.ward_cache_mb), a.database_url.clone())?;
    let phase = |name: &str| a.phases.iter().any(|p| p == name);
    let mut report = Report::default();
    println!("wardsync bench: {} cores, data in {}", num_cpus(), dir.display());

    if phase("engine") {
        engine::run(a.engine_records, a.single.min(2_000), &dir, &mut report).await?;
    }
    let Workload { first, single, second } = Workload::new(&ward_code, &a);
    // For the recovery phase: the city's copy before the load, taken before
    // the ward starts (a ward running would reach the city before the copy).
    let early_copy = match phase("recovery") {
        true => {
            let (copy, city) = recovery::EarlyCopy::take(&lab, lab.city().await?).await?;
            city.stop()?;
            Some(copy)
        }
        false => None,
    };
    let (mut ward_node, ward_url) = lab.ward(&ward_code).await?;
    let mut ward_client = crate::cli::client::ward_client(&ward_url).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.add("write", "ward agent RSS, idle", mib(ward_node.memory().now), "MiB");

    if phase("write") || phase("load") {
        let cpu = (ward_node.cpu(), nodes::cpu_of("self"));
        let (t, lat) = ward::write(&ward_url, &first, a.clients).await?;
        let per_write = |d: Duration| d.as_secs_f64() * 1e6 / first.len() as f64;
        report.add(
            "write",
            "ward agent CPU per write",
            per_write(ward_node.cpu().saturating_sub(cpu.0)),
            "µs",
        );
        report.add(
            "write",
            "clients' CPU per write",
            per_write(nodes::cpu_of("self").saturating_sub(cpu.1)),
            "µs",
        );
        report.add(
            "write",
            &format!("{} clients: durable writes/s", a.clients),
            first.len() as f64 / t.as_secs_f64(),
            "writes/s",
        );
        report.percentiles("write", &format!("{} clients: latency", a.clients), &lat);
        let (t, lat) = ward::write(&ward_url, &single, 1).await?;
        report.add("write", "1 client: durable writes/s", single.len() as f64 / t.as_secs_f64(), "writes/s");
        report.percentiles("write", "1 client: latency", &lat);
    }
    let queued = first.len() + single.len();
    let queued_bytes = ward::wire_bytes(&first) + ward::wire_bytes(&single);

    let mut city = lab.city().await?;
    if phase("write") || phase("load") {
        let cpu = (city.cpu(), ward_node.cpu());
        let t = ward::drained(&mut ward_client, Instant::now(), DRAIN_TIMEOUT).await?;
        report.drained("load", "queued records into an empty city", queued, t);
        let per_record = |d: Duration| d.as_secs_f64() * 1e6 / queued as f64;
        report.add("load", "city CPU per record", per_record(city.cpu().saturating_sub(cpu.0)), "µs");
        report.add(
            "load",
            "ward agent CPU per record",
            per_record(ward_node.cpu().saturating_sub(cpu.1)),
            "µs",
        );
        report.add("load", "MB/s (changes as sent)", mb_per_s(queued_bytes, t), "MB/s");
    }
    if phase("stream") {
        let started = Instant::now();
        ward::write(&ward_url, &second, a.clients).await?;
        let t = ward::drained(&mut ward_client, started, DRAIN_TIMEOUT).await?;
        report.drained("stream", "records written and replicated", second.len(), t);
    }
    if phase("outage") {
        city.stop()?;
        let updates: Vec<Record> = first.iter().map(|r| amend(r, 1)).collect();
        ward::write(&ward_url, &updates, a.clients).await?;
        city = lab.city().await?;
        let t = ward::drained(&mut ward_client, Instant::now(), DRAIN_TIMEOUT).await?;
        report.drained("outage", "queued updates drained", updates.len(), t);
    }
    if phase("update") {
        let updates: Vec<Record> = first.iter().map(|r| amend(r, 2)).collect();
        let started = Instant::now();
        ward::write(&ward_url, &updates, a.clients).await?;
        let t = ward::drained(&mut ward_client, started, DRAIN_TIMEOUT).await?;
        report.drained("update", "updates written and replicated", updates.len(), t);
    }
    let m = ward_node.memory();
    report.add("memory", "ward agent RSS, peak", mib(m.peak), "MiB");
    report.add("disk", "ward agent data", mib(ward_node.disk()), "MiB");
    if phase("recovery") {
        let nodes = (ward_node, ward_url.clone());
        let (ward, restarted) = recovery::run(&lab, &ward_code, nodes, city, early_copy, &mut report).await?;
        (ward_node, city) = (ward.0, restarted);
    }
    drop(ward_node);

    if phase("steady") {
        steady(&a, &lab, &synthetic[..a.wards], &mut report).await?;
    }
    if phase("get") {
        get(&a, &lab, &synthetic[..a.get_wards], &mut report).await?;
    }
    let m = city.memory();
    report.add("memory", "city RSS, peak", mib(m.peak), "MiB");
    report.add("disk", "city data", mib(city.disk()), "MiB");
    if let Some(url) = &a.database_url {
        let (bytes, records) = nodes::database_size(url).await?;
        report.add("disk", "city database on PostgreSQL", mib(bytes), "MiB");
        report.add("disk", "bytes per record (PostgreSQL)", bytes as f64 / records.max(1) as f64, "B");
    }
    city.stop()?;
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.0)?)?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}

/// The ward phases' records: `first` (written by many clients, then
/// queued for the load, then updated), `single` (written by one client),
/// `second` (streamed).
struct Workload {
    first: Vec<Record>,
    single: Vec<Record>,
    second: Vec<Record>,
}

impl Workload {
    fn new(ward: &WardCode, a: &BenchArgs) -> Workload {
        let mut records = sample(ward, 2 * a.records + a.single, a.seed).into_iter();
        let first: Vec<Record> = records.by_ref().take(a.records).collect();
        let single: Vec<Record> = records.by_ref().take(a.single).collect();
        Workload { first, single, second: records.collect() }
    }
}

/// Writes the ward phases' rows for the PostgreSQL peer, as CSV (key,
/// ward, JSON body): `load.csv` (what the load phase drains), `stream.csv`,
/// `update1.csv` and `update2.csv` (the outage's and the update phase's).
fn export_rows(a: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let w = Workload::new(&WardCode::parse(WARD).expect("a valid ward code"), a);
    std::fs::create_dir_all(dir)?;
    let write = |name: &str, records: &mut dyn Iterator<Item = Record>| -> anyhow::Result<()> {
        let mut out = csv::Writer::from_path(dir.join(name))?;
        for r in records {
            out.write_record([
                format!("{}/{}", r.kind(), r.key_id()),
                r.ward.to_string(),
                serde_json::to_string(&r)?,
            ])?;
        }
        out.flush()?;
        Ok(())
    };
    write("load.csv", &mut w.first.iter().chain(&w.single).cloned())?;
    write("stream.csv", &mut w.second.iter().cloned())?;
    write("update1.csv", &mut w.first.iter().map(|r| amend(r, 1)))?;
    write("update2.csv", &mut w.first.iter().map(|r| amend(r, 2)))?;
    println!("rows written to {}", dir.display());
    Ok(())
}

/// `n` wards for the synthetic phases: Ho Chi Minh City's communes, then Hanoi's.
fn synthetic_wards(n: usize) -> Vec<WardCode> {
    let codes = crate::model::reference::communes_of("79")
        .into_iter()
        .chain(crate::model::reference::communes_of("01"));
    codes
        .filter(|c| c.code != WARD)
        .take(n)
        .map(|c| WardCode::parse(c.code).expect("reference codes are valid"))
        .collect()
}

async fn steady(a: &BenchArgs, lab: &Lab, wards: &[WardCode], report: &mut Report) -> anyhow::Result<()> {
    let warmup = Duration::from_secs(2);
    let per_ward = ((a.seconds as f64 + 3.0) * a.rate).ceil() as usize;
    let mut tasks = Vec::new();
    for (i, w) in wards.iter().enumerate() {
        let records = sample(w, per_ward, a.seed + 1 + i as u64);
        let stream = synthetic::Stream::open(lab.city_addr, lab.certs(), w).await?;
        tasks.push(tokio::spawn(synthetic::steady(
            stream,
            records,
            a.rate,
            warmup,
            Duration::from_secs(a.seconds),
        )));
    }
    let mut lat = Latencies::default();
    for t in tasks {
        lat.add(&t.await??);
    }
    let phase = format!("{} wards × {}/s", wards.len(), a.rate);
    report.add("steady", &format!("{phase}: changes measured"), lat.count() as f64, "changes");
    report.percentiles("steady", "replication lag", &lat);
    Ok(())
}

async fn get(a: &BenchArgs, lab: &Lab, wards: &[WardCode], report: &mut Report) -> anyhow::Result<()> {
    let per_ward = a.get_records.div_ceil(wards.len().max(1));
    let started = Instant::now();
    let mut keys: Vec<RecordKey> = Vec::with_capacity(a.get_records);
    let mut loaded = 0;
    for (i, w) in wards.iter().enumerate() {
        let records = sample(w, per_ward, a.seed + 1000 + i as u64);
        keys.extend(records.iter().map(|r| r.key().expect("valid")));
        let mut stream = synthetic::Stream::open(lab.city_addr, lab.certs(), w).await?;
        synthetic::load(&mut stream, &records, 1000, 4).await?;
        loaded += records.len();
    }
    let t = started.elapsed();
    report.add("get", &format!("{loaded} records generated and loaded"), t.as_secs_f64(), "s");
    let mut office = lab.office().await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    keys.shuffle(&mut rng);
    let mut lat = Latencies::default();
    for _ in 0..a.gets {
        let key = &keys[rng.gen_range(0..keys.len())];
        let t = Instant::now();
        office.get(pb::CityGetRequest { key: Some(key.into()), ..Default::default() }).await?;
        lat.record(t.elapsed());
    }
    report.percentiles("get", &format!("get by key ({} gets)", a.gets), &lat);
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
