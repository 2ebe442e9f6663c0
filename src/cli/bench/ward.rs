//! Driving a ward agent: concurrent clients writing through its local API,
//! and waiting for its backlog to reach the city.

use std::time::{Duration, Instant};

use futures::future::try_join_all;
use prost::Message;
use tonic::transport::Channel;

use super::stats::Latencies;
use crate::cli::client::ward_client;
use crate::model::Record;
use crate::proto::pb::{self, ward_api_client::WardApiClient};

/// Writes `records` through `clients` clients, each on its own connection
/// and waiting for each write's answer (durable) before the next. Returns
/// the time it took and every write's latency.
pub async fn write(url: &str, records: &[Record], clients: usize) -> anyhow::Result<(Duration, Latencies)> {
    let clients = clients.max(1);
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(ward_client(url).await?);
    }
    let per = records.len().div_ceil(clients);
    let started = Instant::now();
    let tasks = connections.into_iter().zip(records.chunks(per.max(1))).map(|(mut c, chunk)| async move {
        let mut lat = Latencies::default();
        for r in chunk {
            let t = Instant::now();
            c.put(pb::PutRequest { record: Some(r.into()) }).await?;
            lat.record(t.elapsed());
        }
        anyhow::Ok(lat)
    });
    let all = try_join_all(tasks).await?;
    let elapsed = started.elapsed();
    let mut lat = Latencies::default();
    for l in &all {
        lat.add(l);
    }
    Ok((elapsed, lat))
}

/// Waits until the ward's backlog is empty (every change durable at the
/// city); returns how long that took from `since`.
pub async fn drained(
    client: &mut WardApiClient<Channel>,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    loop {
        let s = client.status(pb::StatusRequest {}).await?.into_inner();
        if s.backlog == 0 {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(
            since.elapsed() < timeout,
            "the backlog ({} changes) did not drain in {timeout:?}",
            s.backlog
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The size of `records` as sent over the wire.
pub fn wire_bytes(records: &[Record]) -> u64 {
    records.iter().map(|r| pb::Record::from(r).encoded_len() as u64).sum()
}
