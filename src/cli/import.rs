//! `wardsync import`: streams a CSV or JSON Lines file into a ward agent.
//!
//! Valid rows are written through the agent's API (several in flight, but
//! the rows of one key one after another, in file order, so a later
//! correction always wins); rows that cannot be read or that the agent
//! refuses go to a reject file as written, each after a note of its line
//! and reason (a fixed reject file imports as any file), and the import
//! goes on; a new run keeps an earlier run's reject file aside. The file's
//! format and a CSV delimiter are told by its content (`formats::reading`);
//! a header that is not the kind's stops the import before any row. The `gone` lines of an incremental export are applied
//! too: a deleted record is deleted, one another ward took is left alone.
//! Progress is saved beside the file (`FILE.import-state`)
//! as lines complete, so an interrupted import resumes after the last line
//! known done, but only for the same file content (a hash of it), the same
//! ward agent and kind; anything else starts over. A lock
//! (`FILE.import-lock`) keeps a second import of the same file from running
//! at once; Ctrl-C saves the progress and says how to resume. A row
//! written again is recognised by the agent as unchanged, so nothing is
//! duplicated, and a second run over the same file changes nothing.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tonic::Code;

use super::args::ImportArgs;
use super::client::ward_client;
use super::failure::exit;
use super::formats::{Entry, Reading, Row, open_records};
use crate::proto::pb::{self, ward_api_client::WardApiClient};
use tonic::transport::Channel;

/// Progress of an import, saved as it goes.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    /// What is imported: the file's content (SHA-256), the agent and the kind.
    /// Anything different starts over.
    file_sha256: String,
    ward_api: String,
    kind: String,
    /// Every line up to this one is done.
    line: u64,
    /// Records new to the ward.
    #[serde(default)]
    created: u64,
    /// Records changed (or deleted).
    written: u64,
    unchanged: u64,
    rejected: u64,
    /// Length of the reject file at `line`.
    rejects_len: u64,
}

enum Outcome {
    Created,
    Written,
    Unchanged,
    Rejected(String),
    /// The agent cannot take writes now (down, full): stop, and resume
    /// later; the error, for the exit status.
    Stop(tonic::Status),
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// SHA-256 of the file at `path`, read a block at a time.
fn sha256(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// Holds `FILE.import-lock` (an advisory lock, which the system releases
/// if the import is killed) while an import of the file runs.
struct Lock(PathBuf, #[allow(dead_code)] File);

impl Lock {
    fn take(path: PathBuf) -> anyhow::Result<Lock> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        match f.try_lock() {
            Ok(()) => {
                f.set_len(0)?;
                writeln!(f, "{}", std::process::id())?;
                Ok(Lock(path, f))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                anyhow::bail!("another import of this file is running (process {})", pid.trim())
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn save(path: &Path, state: &State) -> anyhow::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    std::fs::write(&tmp, serde_json::to_vec(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes one entry through the agent: a record is put; a deleted one is
/// deleted (already gone: unchanged); one another ward took is left to it.
async fn apply(client: &mut WardApiClient<Channel>, entry: Entry) -> Outcome {
    let written = match entry {
        Entry::Record(record) => client.put(pb::PutRequest { record: Some((&record).into()) }).await,
        Entry::Gone { moved_to: Some(_), .. } => return Outcome::Unchanged,
        Entry::Gone { key, .. } => {
            match client.delete(pb::DeleteRequest { key: Some((&key).into()) }).await {
                Err(s) if s.code() == Code::NotFound => return Outcome::Unchanged,
                other => other,
            }
        }
    };
    match written {
        Ok(r) if r.get_ref().unchanged => Outcome::Unchanged,
        Ok(r) if r.get_ref().created => Outcome::Created,
        Ok(_) => Outcome::Written,
        // A row the agent refuses, or too large to send: rejected, and the import goes on.
        Err(s) if matches!(s.code(), Code::InvalidArgument | Code::PermissionDenied | Code::OutOfRange) => {
            Outcome::Rejected(s.message().to_string())
        }
        Err(s) => Outcome::Stop(s),
    }
}

/// Completion of a row's write, awaited by the next row of the same key.
type Done = futures::future::Shared<tokio::sync::oneshot::Receiver<()>>;

/// Most writes in flight at once, whatever `--concurrency` asks.
const CONCURRENCY_CAP: usize = 256;

/// Runs `wardsync import`: exits 0 when every row was taken,
/// [`exit::PARTLY`] when some were rejected, [`exit::INTERRUPTED`] on
/// Ctrl-C, and as the agent's error says when it stopped taking writes
/// (saying, for both, how to resume).
pub async fn run(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let _lock = Lock::take(with_suffix(&a.file, ".import-lock"))?;
    let file = File::open(&a.file).with_context(|| format!("cannot open {}", a.file.display()))?;
    let file_len = file.metadata()?.len();
    let how = Reading { format: a.format, kind: Some(a.kind), delimiter: a.delimiter.map(|d| d as u8) };
    let records = open_records(BufReader::new(file), how)
        .map_err(|why| anyhow::anyhow!("{}: {why}", a.file.display()))?;
    let state_path = with_suffix(&a.file, ".import-state");
    let rejects_path = a.rejects.clone().unwrap_or_else(|| with_suffix(&a.file, ".rejects"));

    let fresh = State {
        file_sha256: sha256(&a.file)?,
        ward_api: a.ward_api.clone(),
        kind: a.kind.to_string(),
        ..State::default()
    };
    let same = |s: &State| {
        (&s.file_sha256, &s.ward_api, &s.kind) == (&fresh.file_sha256, &fresh.ward_api, &fresh.kind)
    };
    let saved: Option<State> = match std::fs::read(&state_path) {
        Ok(bytes) if !a.restart => serde_json::from_slice::<State>(&bytes).ok().filter(same),
        _ => None,
    };
    let mut state = saved.clone().unwrap_or(fresh);
    if saved.is_some() {
        eprintln!("resuming {} after line {}", a.file.display(), state.line);
    } else {
        keep_aside(&rejects_path)?;
    }
    let mut rejects =
        Rejects::open(&rejects_path, state.rejects_len, records.header.as_deref(), records.delimiter)?;

    let client = ward_client(&a.ward_api).await?;
    let bar = ProgressBar::new(file_len).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}")
            .expect("valid template"),
    );
    let skip = state.line;
    let rows = records.rows.filter(move |row| row.line > skip);
    // The rows of one key go one after another: each waits for the last
    // one of its key started before it.
    let mut last_of_key: std::collections::HashMap<String, Done> = std::collections::HashMap::new();
    let mut outcomes = futures::stream::iter(rows)
        .map(|row| {
            let mut client = client.clone();
            let (done, finished) = tokio::sync::oneshot::channel::<()>();
            let finished: Done = futures::FutureExt::shared(finished);
            let before = match &row.entry {
                Ok(e) => last_of_key.insert(e.key_id(), finished),
                Err(_) => None,
            };
            if last_of_key.len() > 4 * CONCURRENCY_CAP {
                last_of_key.retain(|_, f| f.peek().is_none());
            }
            async move {
                if let Some(before) = before {
                    let _ = before.await;
                }
                let Row { line, bytes, entry, text } = row;
                let outcome = match entry {
                    Err(reason) => Outcome::Rejected(reason),
                    Ok(entry) => apply(&mut client, entry).await,
                };
                let _ = done.send(());
                (line, bytes, text, outcome)
            }
        })
        .buffered(a.concurrency.clamp(1, CONCURRENCY_CAP));

    let mut last_save = Instant::now();
    let mut stopped = None;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            next = outcomes.next() => next,
            _ = &mut interrupted => {
                stopped = Some((exit::INTERRUPTED, ": interrupted (Ctrl-C)".to_string()));
                break;
            }
        };
        let Some((line, bytes, text, outcome)) = next else { break };
        match outcome {
            Outcome::Created => state.created += 1,
            Outcome::Written => state.written += 1,
            Outcome::Unchanged => state.unchanged += 1,
            Outcome::Rejected(reason) => {
                state.rejected += 1;
                rejects.add(line, &reason, &text)?;
            }
            Outcome::Stop(s) => {
                let code = super::failure::exit_status(&super::failure::answered(s.clone()));
                stopped = Some((code, format!(" at line {line}: {}", s.message())));
                break;
            }
        }
        state.line = line;
        bar.set_position(bytes);
        bar.set_message(format!(
            "{} new, {} updated, {} rejected",
            state.created, state.written, state.rejected
        ));
        if last_save.elapsed() > Duration::from_millis(500) {
            state.rejects_len = rejects.flush()?;
            save(&state_path, &state)?;
            last_save = Instant::now();
        }
    }
    state.rejects_len = rejects.flush()?;
    bar.finish_and_clear();
    let summary = format!(
        "{} new, {} updated, {} unchanged, {} rejected",
        state.created, state.written, state.unchanged, state.rejected
    );
    if let Some((code, why)) = stopped {
        save(&state_path, &state)?;
        eprintln!(
            "import stopped{why}\n{summary} so far; every line up to {} is done: run the same command again \
             to resume after it",
            state.line
        );
        return Ok(ExitCode::from(code));
    }
    let _ = std::fs::remove_file(&state_path);
    println!("imported {}: {summary}", a.file.display());
    if state.rejected > 0 {
        // Scripts see it: not everything in the file was taken.
        eprintln!(
            "error: {} of the file's rows were rejected: they are in {}, each after a `# line N: reason` \
             note; fix them there and import that file (--kind {})",
            state.rejected,
            rejects_path.display(),
            a.kind
        );
        return Ok(ExitCode::from(exit::PARTLY));
    }
    drop(rejects);
    let _ = std::fs::remove_file(&rejects_path);
    Ok(ExitCode::SUCCESS)
}

/// Moves the reject file of an earlier run aside (`FILE.rejects.TIME`,
/// its time), so a new run never overwrites what it held.
fn keep_aside(path: &Path) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    if meta.len() == 0 {
        return Ok(());
    }
    let when: chrono::DateTime<chrono::Utc> =
        meta.modified().map(Into::into).unwrap_or_else(|_| chrono::Utc::now());
    let aside = with_suffix(path, &format!(".{}", when.format("%Y%m%dT%H%M%SZ")));
    std::fs::rename(path, &aside).with_context(|| format!("cannot move {} aside", path.display()))?;
    eprintln!("the rejects of the previous run are kept in {}", aside.display());
    Ok(())
}

/// The reject file: the rejected rows as written (after the header, for
/// CSV), each after a `# line N: reason` note that a re-import passes
/// over; in a CSV file, with the delimiter of its rows.
struct Rejects(BufWriter<File>, Option<u8>);

impl Rejects {
    /// Opens `path`, cut back to `len` (what the run being resumed had
    /// written), with `header` first in a new file.
    fn open(path: &Path, len: u64, header: Option<&str>, delimiter: Option<u8>) -> anyhow::Result<Rejects> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        // (Cut back only what this import wrote past its saved progress: a
        // reject file moved away or shortened since is never padded.)
        let had = file.metadata()?.len();
        if had < len {
            eprintln!(
                "{} is not the reject file this import was writing (moved or cut since): the rows rejected \
                 up to now are wherever it went; new ones follow here",
                path.display()
            );
        }
        let len = len.min(had);
        file.set_len(len)?;
        let mut w = BufWriter::new(file);
        std::io::Seek::seek(w.get_mut(), std::io::SeekFrom::End(0))?;
        if let (0, Some(header)) = (len, header) {
            writeln!(w, "{header}")?;
        }
        Ok(Rejects(w, delimiter))
    }

    fn add(&mut self, line: u64, reason: &str, text: &str) -> anyhow::Result<()> {
        // (In CSV the note stays one cell that starts with `#`: nothing in
        // it a spreadsheet would split on, or run.)
        let mut note = reason.replace(['\n', '\r'], " ");
        if let Some(d) = self.1 {
            let instead = if d == b';' { "," } else { ";" };
            note = note.replace(d as char, instead).replace('"', "'");
        }
        writeln!(self.0, "# line {line}: {note}")?;
        if !text.is_empty() {
            writeln!(self.0, "{text}")?;
        }
        Ok(())
    }

    /// Flushes, and returns the file's length.
    fn flush(&mut self) -> anyhow::Result<u64> {
        self.0.flush()?;
        Ok(self.0.get_ref().metadata()?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reject_file_moved_or_cut_since_is_never_padded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.rejects");
        std::fs::write(&path, "# line 1: x\n").unwrap();
        let mut r = Rejects::open(&path, 40_000, None, None).unwrap();
        r.add(7, "bad", "{}").unwrap();
        r.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "# line 1: x\n# line 7: bad\n{}\n");
        // Cut back to what the run saved, past which it had written more.
        let mut r = Rejects::open(&path, 12, None, None).unwrap();
        r.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# line 1: x\n");
        // A CSV note stays one cell.
        let mut r = Rejects::open(&path, 0, Some("a,b"), Some(b',')).unwrap();
        r.add(2, "\"x\", then y", "1,2").unwrap();
        r.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b\n# line 2: 'x'; then y\n1,2\n");
    }
}
