//! Consistent copies of an embedded store while its node runs
//! (`wardsync backup`). The node's writes pause while every key is copied
//! into a new database (a store's writes all take one lock, which the copy
//! holds); then the source is flushed, so nothing in the copy is a write a
//! crash could still take back; then the copy is flushed, and last its
//! manifest is written and synced. A directory without the manifest is an
//! unfinished copy: never restore from it.
//!
//! A copy is a data directory as it is, marked as a copy ([`COPY_MARK`]):
//! restore it by stopping the node and putting the copy in place of its
//! `data_dir`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::engine::{Batch, Engine, StoreError};
use super::sled_engine::SledEngine;

/// The file that marks a finished copy, and describes it.
pub const MANIFEST: &str = "backup.json";

/// The key that marks a store as a copy: a ward agent that opens one
/// brings it level with the city before it takes a write (the records it
/// lost since the copy, a counter past the city's), then removes it.
pub const COPY_MARK: &[u8] = b"m:copy";

/// Marks the store `engine` holds as a copy (see [`COPY_MARK`]).
pub fn mark_copy(engine: &dyn Engine) -> Result<(), StoreError> {
    let mut batch = Batch::default();
    batch.insert(COPY_MARK, crate::clock::now_ms().to_be_bytes().to_vec());
    engine.apply(batch)
}

/// Keys copied per batch.
const CHUNK: usize = 10_000;

/// What a finished copy holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The node copied: `ward 00082` or `city`.
    pub node: String,
    /// Keys copied.
    pub keys: u64,
    /// Bytes of keys and values copied.
    pub bytes: u64,
    /// When the copy was taken (ms since the epoch).
    pub taken_at_ms: i64,
    /// How long writes paused, in ms.
    pub paused_ms: u64,
    /// The wardsync version that took it.
    pub version: String,
}

/// A copy made and not yet finished (see [`finish`]).
pub struct Copy {
    dest: SledEngine,
    to: PathBuf,
    manifest: Manifest,
}

/// Why `to` cannot take a copy: it is a file, or a directory that already
/// holds something.
pub fn check_new(to: &Path) -> Result<(), String> {
    let used = to.is_file() || std::fs::read_dir(to).is_ok_and(|mut entries| entries.next().is_some());
    if used {
        return Err(format!("{} exists and is not empty: give a new directory for the copy", to.display()));
    }
    Ok(())
}

/// Why a copy of a store taking `size` bytes on disk cannot go to `to`:
/// the file system there has less room than that and a tenth more (a full
/// disk would stop the copy half-way, with every write waiting on it).
fn check_room(size: u64, to: &Path) -> Result<(), StoreError> {
    let Some(free) = to.ancestors().find(|d| d.exists()).and_then(available_bytes) else {
        return Ok(()); // (no figure to go on: the copy reports a full disk if it meets one)
    };
    let needed = size + size / 10;
    if free < needed {
        return Err(StoreError::Full(format!(
            "the copy needs about {} MiB and {} has {} MiB free: free space there, or copy elsewhere",
            needed >> 20,
            to.display(),
            free >> 20
        )));
    }
    Ok(())
}

/// Bytes an unprivileged writer may still use on the file system of `dir`.
fn available_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Copies every key of `from` into a new database in `to`. The caller
/// holds the lock that every write of the store takes.
pub(crate) fn copy(from: &dyn Engine, to: &Path, node: String) -> Result<Copy, StoreError> {
    check_new(to).map_err(StoreError::Io)?;
    check_room(from.size_on_disk(), to)?;
    let started = std::time::Instant::now();
    let dest = SledEngine::open(to, 64)?;
    // Above every key: each starts with an ASCII letter.
    let (mut start, end) = (Vec::new(), vec![0xff; 32]);
    let (mut keys, mut bytes) = (0, 0);
    loop {
        let rows = from.scan(&start, &end, CHUNK)?;
        let mut batch = Batch::default();
        for (k, v) in &rows {
            bytes += (k.len() + v.len()) as u64;
            batch.insert(k.clone(), v.clone());
        }
        keys += rows.len() as u64;
        dest.apply(batch)?;
        match rows.last() {
            Some((k, _)) if rows.len() == CHUNK => start = [k.as_slice(), &[0]].concat(),
            _ => break,
        }
    }
    mark_copy(&dest)?;
    let manifest = Manifest {
        node,
        keys,
        bytes,
        taken_at_ms: crate::clock::now_ms(),
        paused_ms: started.elapsed().as_millis() as u64,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok(Copy { dest, to: to.to_path_buf(), manifest })
}

/// Finishes a copy once the source has flushed everything it holds:
/// flushes the copy, then writes and syncs the manifest.
pub(crate) async fn finish(copy: Copy) -> Result<Manifest, StoreError> {
    copy.dest.flush().await?;
    drop(copy.dest);
    let path = copy.to.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&copy.manifest).expect("manifests serialize");
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::File::open(path.parent().expect("in the copy's directory"))?.sync_all()
    })
    .await
    .map_err(|e| StoreError::Io(e.to_string()))?
    .map_err(StoreError::from_io)?;
    Ok(copy.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_refused_where_the_disk_has_no_room_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).expect("a figure for a temporary directory");
        assert!(free > 0);
        let to = dir.path().join("copy");
        assert!(check_room(free / 2, &to).is_ok(), "room for half of what is free");
        let err = check_room(free, &to).unwrap_err();
        assert!(matches!(&err, StoreError::Full(why) if why.contains("free space there")), "{err}");
        // Nothing was made.
        assert!(!to.exists());
    }
}
