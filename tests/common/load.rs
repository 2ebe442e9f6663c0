//! A client of a ward agent under test: new records, amendments and
//! deletions, each noted in the ledger with what the client was told,
//! reconnecting whenever the agent is down (killed, cut off, restarting).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use wardsync::cli::client::ward_client;
use wardsync::generate::amend;
use wardsync::model::Record;
use wardsync::proto::pb::ward_api_client::WardApiClient;

use super::ledger::Ledger;

/// Writes `pool`'s records, amendments of them (25 %) and deletions (10 %)
/// through the agent at `url` until `stop` or the pool runs out.
pub async fn writer(
    ledger: Arc<Ledger>,
    code: &'static str,
    url: String,
    pool: Vec<Record>,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pool = pool.into_iter();
    let mut mine: Vec<Record> = Vec::new();
    let mut client: Option<WardApiClient<Channel>> = None;
    let mut n = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let Some(ward) = client.as_mut() else {
            client = ward_client(&url).await.ok();
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        n += 1;
        let roll = rng.gen_range(0..100);
        let ok = if roll < 25 && !mine.is_empty() {
            let i = rng.gen_range(0..mine.len());
            let r = amend(&mine[i], n);
            let done = ledger.put(ward, code, &r, false).await.is_some();
            if done {
                mine[i] = r;
            }
            done
        } else if roll < 35 && !mine.is_empty() {
            let r = mine.swap_remove(rng.gen_range(0..mine.len()));
            ledger.delete(ward, code, &r.key().unwrap()).await.is_some()
        } else {
            let Some(r) = pool.next() else { break };
            let done = ledger.put(ward, code, &r, false).await.is_some();
            if done {
                mine.push(r);
            }
            done
        };
        if !ok {
            // The agent may be down: reconnect after a moment.
            client = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
