//! What sled's flush leaves out, done after it, so that a flushed batch
//! survives a power cut and not only a process crash.
//!
//! Verified in sled 0.34.7's source (and by the power-loss test,
//! `tests/power_loss.rs`, which fails without this):
//! - `Db::flush` returns once its buffers are written with
//!   `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` (pagecache/iobuf.rs,
//!   `write_to_log`). That neither flushes the drive's cache nor commits the
//!   file's new length (sled issue 1452). The real `fsync` runs in sled's
//!   flusher thread every 500 ms (flusher.rs) and when a snapshot is taken.
//! - Values that make a tree node over a quarter of a segment (128 KiB)
//!   go to files under `blobs/`, written and never synced
//!   (pagecache/blob_io.rs, `write_blob`). A log entry whose blob is missing
//!   is skipped on recovery (pagecache/iterator.rs, `DanglingBlob`), so a
//!   blob synced before the acknowledgement that depends on it is enough.
//! - The `conf` file is written without a sync (config.rs, `write_config`);
//!   snapshots are synced, then renamed, and old ones removed, without a
//!   sync of the directory (pagecache/snapshot.rs).
//!
//! So after each sled flush: every blob file that appeared since the last
//! one is synced, then any directory whose names changed, then the data
//! file (`fdatasync`: its content and the length needed to read it back;
//! Linux syncs the inode whichever descriptor asks). On opening, every file
//! and directory sled created is synced once.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Makes sled's files durable; see the module documentation.
pub(super) struct DiskSync {
    /// sled's directory (`<data dir>/db`).
    dir: PathBuf,
    /// sled's data file, opened read-only: fsync acts on the file, not the descriptor.
    data: File,
    /// Names in sled's directory and in `blobs/` as last made durable.
    known: Mutex<Known>,
}

/// The names [`DiskSync`] last made durable.
#[derive(Default)]
struct Known {
    top: BTreeSet<OsString>,
    blobs: BTreeSet<OsString>,
}

fn names(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.file_name())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Syncs a file's data; one removed meanwhile (an old blob) needs nothing.
fn sync_file(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl DiskSync {
    /// Syncs what sled created in `dir` (its directory) and the directories
    /// above it up to the data directory's parent.
    pub(super) fn open(dir: &Path) -> io::Result<DiskSync> {
        let data = File::open(dir.join("db"))?;
        let sync = DiskSync { dir: dir.to_path_buf(), data, known: Mutex::default() };
        // Nothing is known yet: every blob and the directory are synced.
        sync_file(&dir.join("conf"))?;
        sync.sync()?;
        // The data directory, and its parent, may just have been created.
        for parent in dir.ancestors().skip(1).take(2) {
            // A relative path's last ancestor is "": the working directory.
            sync_dir(if parent.as_os_str().is_empty() { Path::new(".") } else { parent })?;
        }
        Ok(sync)
    }

    /// Makes everything sled has written so far durable: call after its flush.
    pub(super) fn sync(&self) -> io::Result<()> {
        let mut known = self.known.lock().expect("poisoned");
        let blobs_dir = self.dir.join("blobs");
        let blobs = names(&blobs_dir)?;
        if blobs != known.blobs {
            for new in blobs.difference(&known.blobs) {
                sync_file(&blobs_dir.join(new))?;
            }
            sync_dir(&blobs_dir)?;
            known.blobs = blobs;
        }
        let top = names(&self.dir)?;
        if top != known.top {
            sync_dir(&self.dir)?;
            known.top = top;
        }
        self.data.sync_data()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_in_a_directory_named_relative_to_the_working_directory_opens() {
        // One component: its parent is "" (the working directory).
        let name = format!(".wardsync-test-{}", std::process::id());
        let opened = crate::store::SledEngine::open(std::path::Path::new(&name), 1).map(drop);
        std::fs::remove_dir_all(&name).ok();
        assert!(opened.is_ok(), "{:?}", opened.err());
    }
}
