//! The `recovery` phase: how long the recovery paths take for the ward
//! phases' records (README, "Recovery"): one comparison of the ward's
//! records with the city's copy that finds them equal; the ward's disk
//! replaced (until its agent answers, every record back); and the city
//! put back to a copy taken before the load (until the ward has refilled
//! it and the two are found equal).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::DRAIN_TIMEOUT;
use super::nodes::{Lab, Node};
use super::stats::Report;
use crate::cli::client::ward_client;
use crate::cli::wait;
use crate::model::WardCode;
use crate::proto::pb;

/// How long a ward may take to find the city it connects to behind.
const LOSS_FOUND: Duration = Duration::from_secs(60);

/// The city's copy from before the load, to put it back to.
pub enum EarlyCopy {
    /// The embedded store's, taken with `wardsync backup` while it ran.
    Dir(PathBuf),
    /// On PostgreSQL, a database made from the city's as a template (with
    /// the city stopped: `CREATE DATABASE ... TEMPLATE` needs it unused).
    Database {
        /// The city's database.
        url: String,
        /// The copy's name, on the same server.
        copy: String,
    },
}

impl EarlyCopy {
    /// Copies the city's database; returns the copy and the city, running.
    pub async fn take(lab: &Lab, city: Node) -> anyhow::Result<(EarlyCopy, Node)> {
        let Some(url) = &lab.database_url else {
            let certs = Some(lab.certs());
            let city_url = format!("https://{}", lab.city_addr);
            let mut backup = crate::cli::client::city_client(&city_url, certs, "backup", "city").await?;
            let copy = backup.backup(pb::BackupRequest { to: "before-load".into() }).await?.into_inner();
            return Ok((EarlyCopy::Dir(PathBuf::from(copy.path)), city));
        };
        city.stop()?;
        let copy = format!("{}_before_load", database_name(url)?);
        let server = maintenance(url).await?;
        server.batch_execute(&format!("DROP DATABASE IF EXISTS \"{copy}\"")).await?;
        server
            .batch_execute(&format!("CREATE DATABASE \"{copy}\" TEMPLATE \"{}\"", database_name(url)?))
            .await?;
        Ok((EarlyCopy::Database { url: url.clone(), copy }, lab.city().await?))
    }

    /// Puts the stopped city (its data directory `data`) back to the copy.
    async fn put_back(self, data: &Path) -> anyhow::Result<()> {
        match self {
            EarlyCopy::Dir(copy) => {
                std::fs::remove_dir_all(data)?;
                std::fs::rename(&copy, data)?;
            }
            EarlyCopy::Database { url, copy } => {
                let name = database_name(&url)?;
                let server = maintenance(&url).await?;
                server.batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).await?;
                server.batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{copy}\"")).await?;
                server.batch_execute(&format!("DROP DATABASE \"{copy}\"")).await?;
            }
        }
        Ok(())
    }
}

/// The name of the database `url` names.
fn database_name(url: &str) -> anyhow::Result<String> {
    let config: tokio_postgres::Config = url.parse()?;
    config.get_dbname().map(str::to_string).ok_or_else(|| anyhow::anyhow!("{url:?} names no database"))
}

/// A connection to the maintenance database of the server `url` is on.
async fn maintenance(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Runs the phase; returns the ward's agent and the city, both running.
pub async fn run(
    lab: &Lab,
    code: &WardCode,
    (ward, url): (Node, String),
    city: Node,
    early_copy: Option<EarlyCopy>,
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
    copy.put_back(&city_data).await?;
    let since = crate::clock::now_ms();
    let started = Instant::now();
    let city = lab.city().await?;
    // The city really came back without them: the ward finds it behind.
    let office = lab.office().await?;
    wait::until(LOSS_FOUND, "the city put back to its copy to record the loss of the ward's data", || {
        let mut office = office.clone();
        async move {
            let wards = office.wards(pb::WardsRequest {}).await?.into_inner().wards;
            Ok(wards.iter().any(|w| w.ward == code.as_str() && w.lost_found_at_ms >= since))
        }
    })
    .await?;
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
