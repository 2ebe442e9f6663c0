//! The `recovery` phase: how long the recovery paths take for the ward
//! phases' records (README, "Recovery"): one comparison of the ward's
//! records with the city's copy that finds them equal; the ward's disk
//! replaced (until its agent answers, every record back); and, on the
//! embedded store, the city put back to a copy taken before the load
//! (until the ward has refilled it and the two are found equal).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::DRAIN_TIMEOUT;
use super::nodes::{Lab, Node};
use super::stats::Report;
use crate::cli::client::ward_client;
use crate::cli::wait;
use crate::model::WardCode;
use crate::proto::pb;

/// Runs the phase; returns the ward's agent and the city, both running.
pub async fn run(
    lab: &Lab,
    code: &WardCode,
    (ward, url): (Node, String),
    city: Node,
    early_copy: Option<PathBuf>,
    report: &mut Report,
) -> anyhow::Result<((Node, String), Node)> {
    let mut client = ward_client(&url).await?;
    let records = client.status(pb::StatusRequest {}).await?.into_inner().records;
    let started = Instant::now();
    let v = client.verify(pb::VerifyRequest {}).await?.into_inner();
    let took = started.elapsed();
    anyhow::ensure!(v.in_sync && v.differing == 0, "the ward and the city differ before recovery: {v:?}");
    report.add("recovery", &format!("compare {records} records, found equal"), took.as_secs_f64(), "s");

    // The ward's disk replaced: it restores itself before answering.
    let data = ward.data.clone();
    ward.stop()?;
    std::fs::remove_dir_all(&data)?;
    let started = Instant::now();
    let (ward, url) = lab.ward(code).await?;
    let took = started.elapsed();
    let mut client = ward_client(&url).await?;
    let back = client.status(pb::StatusRequest {}).await?.into_inner().records;
    anyhow::ensure!(back == records, "the ward restored {back} of its {records} records");
    report.add(
        "recovery",
        &format!("ward on a new disk: {records} records restored"),
        took.as_secs_f64(),
        "s",
    );

    let Some(copy) = early_copy else {
        return Ok(((ward, url), city));
    };
    // The city put back to its copy from before the load: it lost every
    // record of this ward, which the ward refills.
    let city_data = city.data.clone();
    city.stop()?;
    std::fs::remove_dir_all(&city_data)?;
    std::fs::rename(&copy, &city_data)?;
    let since = crate::clock::now_ms();
    let started = Instant::now();
    let city = lab.city().await?;
    wait::until(DRAIN_TIMEOUT, "the ward to refill the city", || {
        let mut c = client.clone();
        async move {
            let s = c.status(pb::StatusRequest {}).await?.into_inner();
            Ok(s.verify_in_sync && s.verified_at_ms >= since && !s.verifying)
        }
    })
    .await?;
    let took = started.elapsed().max(Duration::from_millis(1));
    report.add(
        "recovery",
        &format!("city refilled with the ward's {records} records"),
        took.as_secs_f64(),
        "s",
    );
    report.add("recovery", "city refill: records/s", records as f64 / took.as_secs_f64(), "records/s");
    Ok(((ward, url), city))
}
