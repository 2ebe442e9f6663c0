//! The clients: one driver per ward writing, amending, deleting and
//! transferring records through the ward's real local API, and the city
//! data office editing records, watching the counters for regressions and,
//! once the faults have healed, checking the run against the ledger.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use wardsync::auth::{TlsFiles, client_tls};
use wardsync::generate::amend;
use wardsync::model::{Body, Record, WardCode};
use wardsync::proto::pb::{self, city_query_client::CityQueryClient, ward_api_client::WardApiClient};

use super::common::ledger::Ledger;
use super::net::channel;
use super::nodes::{CITY_PORT, WARD_PORT};

/// What every client shares.
pub struct Shared {
    pub ledger: Ledger,
    /// Per ward, the records its driver believes it owns, as last written.
    pub owned: Mutex<BTreeMap<&'static str, Vec<Record>>>,
    /// Drivers that have finished.
    pub done: AtomicUsize,
    /// Set once every fault is healed.
    pub healed: AtomicBool,
    /// What the office found at the end.
    pub outcome: Mutex<Option<(Vec<String>, String)>>,
}

impl Shared {
    pub fn new(wards: &[(&'static str, &'static str)]) -> Shared {
        Shared {
            ledger: Ledger::default(),
            owned: Mutex::new(wards.iter().map(|(code, _)| (*code, Vec::new())).collect()),
            done: AtomicUsize::new(0),
            healed: AtomicBool::new(false),
            outcome: Mutex::default(),
        }
    }
}

async fn ward_client(host: &'static str) -> WardApiClient<Channel> {
    loop {
        if let Ok(ch) = channel(host, WARD_PORT, None).await {
            return WardApiClient::new(ch);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes `ops` operations to ward `code` on `host`, new records drawn from `pool`.
pub async fn drive(
    shared: Arc<Shared>,
    (code, host): (&'static str, &'static str),
    pool: Vec<Record>,
    ops: usize,
    seed: u64,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ward = ward_client(host).await;
    let mut pool = pool.into_iter();
    for n in 0..ops {
        let mine = shared.owned.lock().unwrap()[code].clone();
        let roll = rng.gen_range(0..100);
        if roll < 25 && !mine.is_empty() {
            let i = rng.gen_range(0..mine.len());
            let r = amend(&mine[i], n as u32);
            if shared.ledger.put(&mut ward, code, &r, false).await.is_some() {
                replace(&shared, code, r);
            }
        } else if roll < 35 && !mine.is_empty() {
            let r = &mine[rng.gen_range(0..mine.len())];
            if shared.ledger.delete(&mut ward, code, &r.key().unwrap()).await.is_some() {
                shared.owned.lock().unwrap().get_mut(code).unwrap().retain(|x| x.key_id() != r.key_id());
            }
        } else if roll < 45 {
            let Some((from, citizen)) = someone_elses_citizen(&shared, code, &mut rng) else { continue };
            let mut moved = citizen.clone();
            moved.ward = WardCode::parse(code).unwrap();
            if let Body::Citizen(c) = &mut moved.body {
                c.permanent_residence.commune_code = code.into();
            }
            if shared.ledger.put(&mut ward, code, &moved, true).await.is_some() {
                let mut owned = shared.owned.lock().unwrap();
                owned.get_mut(from).unwrap().retain(|x| x.key_id() != moved.key_id());
                owned.get_mut(code).unwrap().push(moved);
            }
        } else if let Some(r) = pool.next()
            && shared.ledger.put(&mut ward, code, &r, false).await.is_some()
        {
            shared.owned.lock().unwrap().get_mut(code).unwrap().push(r);
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
    }
    shared.done.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn replace(shared: &Shared, code: &str, r: Record) {
    if let Some(slot) =
        shared.owned.lock().unwrap().get_mut(code).unwrap().iter_mut().find(|x| x.key_id() == r.key_id())
    {
        *slot = r;
    }
}

fn someone_elses_citizen(shared: &Shared, code: &str, rng: &mut StdRng) -> Option<(&'static str, Record)> {
    let owned = shared.owned.lock().unwrap();
    let citizens: Vec<(&'static str, &Record)> = owned
        .iter()
        .filter(|(w, _)| **w != code)
        .flat_map(|(w, rs)| rs.iter().filter(|r| matches!(r.body, Body::Citizen(_))).map(|r| (*w, r)))
        .collect();
    (!citizens.is_empty()).then(|| {
        let (w, r) = citizens[rng.gen_range(0..citizens.len())];
        (w, r.clone())
    })
}

/// The city data office: edits records and watches counters while the
/// drivers run; once healed, waits for convergence and checks the ledger.
pub async fn office(
    shared: Arc<Shared>,
    wards: Vec<(&'static str, &'static str)>,
    certs: std::path::PathBuf,
    seed: u64,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(seed);
    let tls = client_tls(&TlsFiles::in_dir(&certs, "office"), "city").unwrap();
    let signer =
        wardsync::cli::office::OfficeSigner::load(Some(&TlsFiles::in_dir(&certs, "office"))).unwrap();
    let mut city = loop {
        if let Ok(ch) = channel("city", CITY_PORT, Some(tls.clone())).await {
            break CityQueryClient::new(ch);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut clients = Vec::new();
    for (code, host) in &wards {
        clients.push((code.to_string(), ward_client(host).await));
    }
    let mut n = 0;
    while !shared.healed.load(Ordering::SeqCst) {
        n += 1;
        // Watch: sequences and cursors never move backwards.
        shared.ledger.observe(&mut clients, &mut city).await;
        // Edit: a correction by the office to a record some ward holds.
        if rng.gen_bool(0.5) {
            let target = {
                let owned = shared.owned.lock().unwrap();
                let all: Vec<&Record> = owned.values().flatten().collect();
                (!all.is_empty()).then(|| all[rng.gen_range(0..all.len())].clone())
            };
            if let Some(r) = target {
                let key = r.key().unwrap();
                if let Ok(current) =
                    city.get(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() }).await
                {
                    let current = wardsync::proto::record_from_pb(current.into_inner().record).unwrap();
                    let edited = amend(&current, 10_000 + n);
                    let attempt = shared.ledger.attempt("office", &key, Some(&edited));
                    if city.edit(signer.edit(edited.clone(), &Default::default())).await.is_ok() {
                        shared.ledger.acked(attempt, "city", 0);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut problems = Vec::new();
    if let Err(e) = shared.ledger.settle(&clients, &city, Duration::from_secs(120)).await {
        problems.push(e);
    }
    problems.extend(shared.ledger.check(&mut city).await);
    let fingerprint = fingerprint(&mut city).await;
    *shared.outcome.lock().unwrap() = Some((problems, fingerprint));
    Ok(())
}

/// The city's whole log with its stamps and times: equal for equal runs.
async fn fingerprint(city: &mut CityQueryClient<Channel>) -> String {
    let log = super::common::ledger::read_log(city).await.unwrap_or_default();
    let lines: Vec<String> = log
        .iter()
        .map(|l| {
            let c = l.change.as_ref().unwrap();
            format!(
                "{} {} {} {} {} {:?} {:?}",
                l.cursor, l.ward, c.seq, l.applied_at_ms, c.written_at_ms, c.key, c.hlc
            )
        })
        .collect();
    format!("{} changes at {:?}\n{}", lines.len(), turmoil::sim_elapsed(), lines.join("\n"))
}
