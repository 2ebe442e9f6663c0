//! `wardsync import`: streams a CSV or JSON Lines file into a ward agent.
//!
//! Valid rows are written through the agent's API (several in flight);
//! rows that cannot be read or that the agent refuses go to a reject file
//! with their line number and reasons. Progress is saved beside the file
//! (`FILE.import-state`) as lines complete, so an interrupted import
//! resumes after the last line known done; a row written again is
//! recognised by the agent as unchanged, so nothing is duplicated, and a
//! second run over the same file changes nothing.

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
use super::formats::{Format, read_records};
use crate::proto::pb;

/// Progress of an import, saved as it goes.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    /// Size of the file when the import started: a different size starts over.
    file_len: u64,
    /// Every line up to this one is done.
    line: u64,
    written: u64,
    unchanged: u64,
    rejected: u64,
    /// Length of the reject file at `line`.
    rejects_len: u64,
}

enum Outcome {
    Written,
    Unchanged,
    Rejected(String),
    /// The agent cannot take writes now (down, full): stop, and resume later.
    Stop(String),
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn save(path: &Path, state: &State) -> anyhow::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    std::fs::write(&tmp, serde_json::to_vec(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Runs `wardsync import`; exits 1 if it had to stop before the end.
pub async fn run(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let format = a.format.unwrap_or_else(|| Format::from_path(&a.file));
    let file = File::open(&a.file).with_context(|| format!("cannot open {}", a.file.display()))?;
    let file_len = file.metadata()?.len();
    let state_path = with_suffix(&a.file, ".import-state");
    let rejects_path = a.rejects.clone().unwrap_or_else(|| with_suffix(&a.file, ".rejects"));

    let saved: Option<State> = match std::fs::read(&state_path) {
        Ok(bytes) if !a.restart => {
            serde_json::from_slice::<State>(&bytes).ok().filter(|s| s.file_len == file_len)
        }
        _ => None,
    };
    let mut state = saved.clone().unwrap_or(State { file_len, ..State::default() });
    if saved.is_some() {
        eprintln!("resuming {} after line {}", a.file.display(), state.line);
    }
    let rejects = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&rejects_path)
        .with_context(|| format!("cannot write {}", rejects_path.display()))?;
    rejects.set_len(state.rejects_len)?;
    let mut rejects = BufWriter::new(rejects);
    std::io::Seek::seek(rejects.get_mut(), std::io::SeekFrom::End(0))?;

    let client = ward_client(&a.ward_api).await?;
    let bar = ProgressBar::new(file_len).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}")
            .expect("valid template"),
    );
    let skip = state.line;
    let rows = read_records(BufReader::new(file), format, a.kind).filter(move |(line, _, _)| *line > skip);
    let mut outcomes = futures::stream::iter(rows)
        .map(|(line, bytes, parsed)| {
            let mut client = client.clone();
            async move {
                let outcome = match parsed {
                    Err(reason) => Outcome::Rejected(reason),
                    Ok(record) => match client.put(pb::PutRequest { record: Some((&record).into()) }).await {
                        Ok(r) if r.get_ref().unchanged => Outcome::Unchanged,
                        Ok(_) => Outcome::Written,
                        Err(s) if matches!(s.code(), Code::InvalidArgument | Code::PermissionDenied) => {
                            Outcome::Rejected(s.message().to_string())
                        }
                        Err(s) => Outcome::Stop(format!("{}: {}", s.code(), s.message())),
                    },
                };
                (line, bytes, outcome)
            }
        })
        .buffered(a.concurrency.max(1));

    let mut last_save = Instant::now();
    let mut stopped = None;
    while let Some((line, bytes, outcome)) = outcomes.next().await {
        match outcome {
            Outcome::Written => state.written += 1,
            Outcome::Unchanged => state.unchanged += 1,
            Outcome::Rejected(reason) => {
                state.rejected += 1;
                writeln!(rejects, "line {line}: {reason}")?;
            }
            Outcome::Stop(why) => {
                stopped = Some(format!("line {line}: {why}"));
                break;
            }
        }
        state.line = line;
        bar.set_position(bytes);
        bar.set_message(format!("{} written, {} rejected", state.written, state.rejected));
        if last_save.elapsed() > Duration::from_millis(500) {
            rejects.flush()?;
            state.rejects_len = rejects.get_ref().metadata()?.len();
            save(&state_path, &state)?;
            last_save = Instant::now();
        }
    }
    rejects.flush()?;
    state.rejects_len = rejects.get_ref().metadata()?.len();
    bar.finish_and_clear();
    let summary =
        format!("{} written, {} unchanged, {} rejected", state.written, state.unchanged, state.rejected);
    if let Some(why) = stopped {
        save(&state_path, &state)?;
        eprintln!(
            "import stopped at {why}\n{summary} so far; run the same command again to resume after line {}",
            state.line
        );
        return Ok(ExitCode::FAILURE);
    }
    let _ = std::fs::remove_file(&state_path);
    println!("imported {}: {summary}", a.file.display());
    if state.rejected > 0 {
        println!("rejected lines and reasons: {}", rejects_path.display());
    } else {
        drop(rejects);
        let _ = std::fs::remove_file(&rejects_path);
    }
    Ok(ExitCode::SUCCESS)
}
