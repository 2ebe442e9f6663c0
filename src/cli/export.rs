//! `wardsync export`: streams records of one kind from the city to a CSV or
//! JSON Lines file, with progress on a terminal. With `--since CURSOR` (or
//! a time), only what changed after that point of the change log: each record changed as
//! it stands now, and a `gone` line for each deleted (or, with `--ward`,
//! taken by another ward); the cursor to give next time is printed at the
//! end. Every change after the cursor is in the file at least once.

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use super::args::ExportArgs;
use super::client::Source;
use super::failure::unless_interrupted;
use super::formats::{Format, RecordWriter};
use super::when::Since;
use crate::model::WardCode;
use crate::proto::{change_from_pb, pb};

/// A temporary file in the directory of `path` (so that renaming it there is atomic).
fn temp_beside(path: &std::path::Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    tempfile::Builder::new()
        .prefix(".wardsync-export-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))
}

/// The format to export in: `--format`, else what `--out`'s name says,
/// else JSON Lines; a file is never named for another format than it holds.
fn format_of(a: &ExportArgs) -> anyhow::Result<Format> {
    let named = a.out.as_deref().and_then(Format::from_path);
    match (a.format, named) {
        (Some(f), Some(n)) if f != n => anyhow::bail!(
            "--out {} names a {} file, and --format says {}: give a name ending .{} (or drop --format)",
            a.out.as_deref().unwrap_or(std::path::Path::new("")).display(),
            n.extension(),
            f.extension(),
            f.extension()
        ),
        (Some(f), _) | (None, Some(f)) => Ok(f),
        (None, None) => Ok(Format::Jsonl),
    }
}

/// Runs `wardsync export`; Ctrl-C leaves nothing behind (the file is only
/// renamed into place once complete).
pub async fn run(a: ExportArgs) -> anyhow::Result<()> {
    let format = format_of(&a)?;
    unless_interrupted(export(a, format), "nothing was written").await
}

async fn export(a: ExportArgs, format: Format) -> anyhow::Result<()> {
    let ward =
        a.ward.as_deref().map(WardCode::parse).transpose().map_err(|e| anyhow::anyhow!("--ward: {e}"))?;
    let mut city = super::client::city_of(&a.target).await?;
    // A file is written beside its final name and takes it only once
    // complete: a failed export never replaces the previous one.
    let temp = a.out.as_deref().map(temp_beside).transpose()?;
    let out: Box<dyn Write> = match &temp {
        Some(t) => Box::new(t.reopen().context("cannot write the export")?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = RecordWriter::new(BufWriter::new(out), format, a.kind, a.since.is_some())?;
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {pos} records {per_sec} {msg}").expect("valid template"),
    );
    let mut count = 0u64;
    let cursor = match a.since.as_deref().map(Since::parse).transpose()? {
        None => {
            let before = city.wards(pb::WardsRequest {}).await?.into_inner().log_cursor;
            let ward_filter = ward.as_ref().map_or(String::new(), |w| w.to_string());
            let mut source = Source::City(city.clone(), ward_filter);
            source
                .for_each(a.kind, String::new(), 0, |r| {
                    count += 1;
                    bar.inc(1);
                    writer.write(&r)
                })
                .await?;
            before
        }
        Some(since) => {
            // The keys whose records changed for the selection since the
            // cursor (or the time), then how each stands now.
            let (after, from_ms) = match since {
                Since::Cursor(c) => (c, i64::MIN),
                Since::Time(t) => (0, t),
            };
            let before = city.wards(pb::WardsRequest {}).await?.into_inner().log_cursor;
            let mut keys = BTreeSet::new();
            let mut last = after;
            let req = pb::ChangesSinceRequest {
                after,
                limit: 0,
                kind: pb::Kind::from(a.kind).into(),
                ward: ward.as_ref().map_or(String::new(), ToString::to_string),
            };
            let mut stream = city.changes_since(req).await?.into_inner();
            while let Some(l) = stream.message().await? {
                last = l.cursor;
                let Some(c) = l.change.filter(|_| l.applied_at_ms >= from_ms) else { continue };
                let change =
                    change_from_pb(c).map_err(|e| anyhow::anyhow!("the city sent a bad change: {e}"))?;
                keys.insert(change.key);
            }
            for key in keys {
                match city.get(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() }).await {
                    Ok(r) => {
                        let record = crate::proto::record_from_pb(r.into_inner().record)
                            .map_err(|e| anyhow::anyhow!("the city sent a bad record: {e}"))?;
                        match &ward {
                            Some(w) if &record.ward != w => writer.gone(&key, Some(w), Some(&record.ward))?,
                            _ => writer.write(&record)?,
                        }
                    }
                    Err(s) if s.code() == tonic::Code::NotFound => writer.gone(&key, ward.as_ref(), None)?,
                    Err(s) => anyhow::bail!("{}", s.message()),
                }
                count += 1;
                bar.inc(1);
            }
            // Every entry up to the later of the two was read or passed over.
            last.max(before)
        }
    };
    writer.finish()?;
    if let (Some(t), Some(path)) = (temp, &a.out) {
        t.as_file().sync_all().context("cannot write the export")?;
        t.persist(path).with_context(|| format!("cannot rename the export to {}", path.display()))?;
    }
    bar.finish_and_clear();
    eprintln!("exported {count} {} records; next time use --since {cursor}", a.kind);
    Ok(())
}
