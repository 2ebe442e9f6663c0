//! `Backup`: a consistent copy of the city's embedded store while it runs,
//! into a name under the city's backup directory (the backup role). Every
//! write waits while the copy is made, so copies are taken one at a time,
//! at most one per [`BACKUP_INTERVAL`], and only where the disk has room.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::error::CityError;
use super::query::QueryService;
use crate::auth::Role;
use crate::model::ValidationError;
use crate::proto::pb;

/// The copy's directory name: `name` if it is a plain name, else why not;
/// the time (UTC) when empty.
pub fn backup_name(name: &str, now_ms: i64) -> Result<String, ValidationError> {
    if name.is_empty() {
        let at = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
        return Ok(format!("city-{}", at.format("%Y%m%d-%H%M%S")));
    }
    let plain = name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        Ok(name.to_string())
    } else {
        Err(ValidationError::single(
            "to",
            format!("{name:?} is not a plain name (letters, digits, '.', '_', '-'; at most 100)"),
        ))
    }
}

/// The least time between the starts of two copies.
pub const BACKUP_INTERVAL: Duration = Duration::from_secs(5 * 60);

impl QueryService {
    pub(super) async fn backup_reply(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupReply>, Status> {
        let peer = self.guard.admit(&req, &[Role::Backup], "Backup")?;
        let Ok(mut last) = self.last_backup.try_lock() else {
            return Err(Status::resource_exhausted("a copy is being taken: wait for it to finish"));
        };
        if let Some(at) = *last
            && at.elapsed() < BACKUP_INTERVAL
        {
            return Err(Status::resource_exhausted(format!(
                "the last copy began {} s ago; the next may begin in {} s (one every {} minutes: \
                 every write waits while a copy is made)",
                at.elapsed().as_secs(),
                (BACKUP_INTERVAL - at.elapsed()).as_secs() + 1,
                BACKUP_INTERVAL.as_secs() / 60
            )));
        }
        let name = backup_name(&req.into_inner().to, crate::clock::now_ms()).map_err(CityError::from)?;
        let path = self.backup_dir.join(&name);
        if path.exists() {
            let why = format!("{} exists already: give another name", path.display());
            return Err(CityError::Invalid(ValidationError::single("to", why)).into());
        }
        std::fs::create_dir_all(&self.backup_dir).map_err(|e| {
            Status::failed_precondition(format!("cannot create {}: {e}", self.backup_dir.display()))
        })?;
        let began = std::time::Instant::now();
        // (Only a copy made counts: one refused, for want of room say, may
        // be tried again at once.)
        let Some(m) = self.store.backup(path.clone()).await.map_err(CityError::from)? else {
            return Err(Status::failed_precondition(
                "this city keeps its records in PostgreSQL: back them up with pg_dump (README, \"Recovery\")",
            ));
        };
        *last = Some(began);
        tracing::info!(identity = %peer.identity, path = %path.display(), keys = m.keys, paused_ms = m.paused_ms, "backup taken");
        Ok(Response::new(crate::proto::backup_to_pb(&path, &m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_named_plainly_or_after_the_time() {
        assert_eq!(backup_name("", 1_796_000_000_000).unwrap(), "city-20261130-005320");
        assert_eq!(backup_name("before-upgrade.2", 0).unwrap(), "before-upgrade.2");
        for bad in ["../etc", "a/b", ".hidden", "tên", &"x".repeat(101)] {
            assert!(backup_name(bad, 0).is_err(), "{bad}");
        }
    }
}
