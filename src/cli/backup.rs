//! `wardsync backup`: a consistent copy of a running node's embedded store
//! (a ward agent's, into a new directory on its server; the city's, into
//! its backup directory). The city on PostgreSQL is backed up with pg_dump.

use super::args::BackupArgs;
use super::client::{city_for, ward_client};
use super::failure::answered;
use crate::proto::pb;

/// Runs `wardsync backup`.
pub async fn run(a: BackupArgs) -> anyhow::Result<()> {
    let req = pb::BackupRequest { to: a.to.clone().unwrap_or_default() };
    let reply = match city_for(&a.target).await? {
        Some(mut city) => city.backup(req).await.map_err(answered)?.into_inner(),
        None => {
            anyhow::ensure!(
                a.to.is_some(),
                "give --to DIR: the new directory on the ward's server to copy its store into"
            );
            ward_client(&a.target.ward_api).await?.backup(req).await.map_err(answered)?.into_inner()
        }
    };
    println!(
        "copied {} keys ({} bytes) to {}; writes paused {} ms. To restore: stop the node and use this directory as its data_dir.",
        reply.keys, reply.bytes, reply.path, reply.paused_ms
    );
    Ok(())
}
