//! Process-level chaos: the real binary as a city and three wards, a TCP
//! fault proxy between each ward and the city (cut, lost replies, delay),
//! and, under a steady load of writes and office edits, repeated SIGKILLs
//! of wards and of the city for a bounded time. Then every fault is healed
//! and the run is checked against what clients were told was accepted
//! (the same ledger and invariants as the simulation, `common/ledger.rs`).
//!
//! With the city database on PostgreSQL, two city processes share it,
//! wards are moved between them, and the database itself is crashed
//! (`pg_ctl stop -m immediate`) and restarted under the same load.
//!
//! `WARDSYNC_CHAOS_SECS` (default 20) and `WARDSYNC_CHAOS_SEED` (default 1)
//! set the length and the fault schedule.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::ledger::Ledger;
use common::load::writer;
use common::pg::Postgres;
use common::{City, Env, Ward};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use wardsync::auth::DevCa;
use wardsync::cli::relay::{LinkMode, Relay};
use wardsync::generate::{amend, sample};
use wardsync::model::WardCode;
use wardsync::proto::pb::{self, city_query_client::CityQueryClient, ward_api_client::WardApiClient};

const WARDS: [&str; 3] = ["00082", "00145", "00004"];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The office: edits records now and then, and watches the counters.
async fn office(
    ledger: Arc<Ledger>,
    (city, signer): (CityQueryClient<Channel>, wardsync::cli::office::OfficeSigner),
    wards: Vec<(String, WardApiClient<Channel>)>,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut city, mut wards) = (city, wards);
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        ledger.observe(&mut wards, &mut city).await;
        // Edit a record some ward listed a moment ago.
        let (_, w) = &mut wards[rng.gen_range(0..WARDS.len())];
        let listed =
            w.list(pb::ListRequest { kind: pb::Kind::Citizen as i32, after: String::new(), limit: 50 }).await;
        if let Ok(listed) = listed {
            let records = listed.into_inner().records;
            if !records.is_empty() {
                let r =
                    wardsync::proto::record_from_pb(Some(records[rng.gen_range(0..records.len())].clone()))
                        .unwrap();
                let edited = amend(&r, 100_000 + n);
                let attempt = ledger.attempt("office", &edited.key().unwrap(), Some(&edited));
                if city.edit(signer.edit(edited.clone(), &Default::default())).await.is_ok() {
                    ledger.acked(attempt, "city", 0);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_wards_and_the_city_under_load_loses_nothing_acknowledged() {
    chaos(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_wards_cities_and_their_postgresql_under_load_loses_nothing_acknowledged() {
    chaos(Some(Postgres::start())).await;
}

/// The chaos run, with the embedded city store or with two city processes
/// on the PostgreSQL `pg`.
async fn chaos(pg: Option<Postgres>) {
    let secs = env_u64("WARDSYNC_CHAOS_SECS", 20);
    let seed = env_u64("WARDSYNC_CHAOS_SEED", 1);
    eprintln!("chaos for {secs} s with seed {seed} (WARDSYNC_CHAOS_SECS, WARDSYNC_CHAOS_SEED)");
    let env = Env::new();
    DevCa::open_or_create(&env.certs()).unwrap().issue_ward(&WardCode::parse("00004").unwrap()).unwrap();
    let mut cities = match &pg {
        None => vec![City::start(&env)],
        Some(pg) => {
            let db = format!("[database]\nurl = \"{}\"\n", pg.url());
            vec![City::start_named(&env, "city-a", &db), City::start_named(&env, "city-b", &db)]
        }
    };
    let mut relays = Vec::new();
    let mut wards = Vec::new();
    for (i, code) in WARDS.iter().enumerate() {
        let relay = Relay::start(cities[i % cities.len()].addr).await.unwrap();
        wards.push(Ward::start(&env, code, relay.addr()));
        relays.push(relay);
    }
    let city_client = cities[0].client().await;
    let mut clients = Vec::new();
    for w in &wards {
        clients.push((w.code.clone(), w.client().await));
    }

    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, w) in wards.iter().enumerate() {
        let url = format!("http://{}", w.api);
        let s = seed * 7 + i as u64;
        let pool = sample(&WardCode::parse(WARDS[i]).unwrap(), 5000, s);
        tasks.push(tokio::spawn(writer(ledger.clone(), WARDS[i], url, pool, s, stop.clone())));
    }
    tasks.push(tokio::spawn(office(
        ledger.clone(),
        (city_client.clone(), env.office()),
        clients.clone(),
        seed,
        stop.clone(),
    )));

    // Faults, one every 300 to 800 ms.
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ward_kills, mut city_kills, mut db_crashes, mut moves) = (0, 0, 0, 0);
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut step = 0;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..800))).await;
        let i = rng.gen_range(0..WARDS.len());
        let roll = rng.gen_range(0..100);
        step += 1;
        // Whatever the seed, at least one ward and the city are killed (and
        // on PostgreSQL, the database crashes and a ward moves).
        let roll = match step {
            2 => 0,
            5 => 20,
            7 if pg.is_some() => 65,
            9 if pg.is_some() => 70,
            _ => roll,
        };
        match roll {
            0..20 => {
                wards[i].node.kill();
                wards[i].node.start();
                ward_kills += 1;
            }
            20..30 => {
                let n = rng.gen_range(0..cities.len());
                let city = &mut cities[n];
                city.node.kill();
                city.node.start();
                city_kills += 1;
            }
            30..45 => relays[i].cut(),
            45..55 => relays[i].set(LinkMode::DropReplies),
            55..65 => relays[i].set(LinkMode::Delay(rng.gen_range(50..400))),
            65..70 if pg.is_some() => {
                let pg = pg.as_ref().expect("on PostgreSQL");
                pg.crash();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await;
                pg.start_again();
                db_crashes += 1;
            }
            70..78 if pg.is_some() => {
                relays[i].retarget(cities[rng.gen_range(0..cities.len())].addr);
                moves += 1;
            }
            _ => relays[i].heal(),
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    for r in &relays {
        r.heal();
    }
    eprintln!(
        "{ward_kills} ward and {city_kills} city SIGKILLs, {db_crashes} database crashes, {moves} moves; {} changes acknowledged",
        ledger.acked_count()
    );
    assert!(ward_kills > 0 && city_kills > 0, "the schedule killed both kinds of node");
    assert!(pg.is_none() || (db_crashes > 0 && moves > 0), "the database crashed and a ward moved");
    assert!(ledger.acked_count() > 100, "the load was written");

    let mut city_client = cities[0].client().await;
    if let Err(e) = ledger.settle(&clients, &city_client, common::DEADLINE).await {
        panic!("{e}");
    }
    let problems = ledger.check(&mut city_client).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
