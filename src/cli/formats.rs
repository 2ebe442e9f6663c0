//! File formats for records: JSON Lines (one record per line, the model's
//! JSON) and CSV (one kind per file, flat columns; see `csv_rows`).
//!
//! An incremental export (`export --since`) also says which records are no
//! longer the exported ward's: a JSON line `{"gone": {"kind": "citizen",
//! "id": "...", "ward": "00082"}}` (`ward` when the export is for one
//! ward; `"moved_to": "00145"` when another ward took the record), or in
//! CSV a last column `gone`.

mod csv_rows;
#[cfg(test)]
mod tests;

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::model::{Kind, Record, RecordKey, WardCode};

/// A record file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON record per line.
    Jsonl,
    /// Comma-separated values with a header row; one kind per file.
    Csv,
}

impl Format {
    /// The format a file name suggests (`.csv` or else JSON Lines).
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// One line of a record file.
// Gone lines are few; boxing every record would cost more.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A record as it stands.
    Record(Record),
    /// A record that is gone: deleted, or (in a file exported for one
    /// ward) now owned by another ward, `moved_to`.
    Gone {
        /// The record.
        key: RecordKey,
        /// The ward the file was exported for, if it was for one.
        ward: Option<WardCode>,
        /// The ward that owns the record now, if it was not deleted.
        moved_to: Option<WardCode>,
    },
}

impl Entry {
    /// The id of the record the line is about.
    pub fn key_id(&self) -> String {
        match self {
            Entry::Record(r) => r.key_id(),
            Entry::Gone { key, .. } => key.id().to_string(),
        }
    }
}

/// The JSON line of an [`Entry::Gone`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoneLine {
    gone: GoneJson,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoneJson {
    kind: String,
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ward: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    moved_to: Option<String>,
}

impl GoneJson {
    fn entry(self, kind: Kind) -> Result<Entry, String> {
        if self.kind != kind.as_str() {
            return Err(format!("a gone {} record in a {kind} import", self.kind));
        }
        let key = RecordKey::new(kind, &self.id).map_err(|e| format!("a gone record's key: {e}"))?;
        let ward =
            self.ward.as_deref().map(WardCode::parse).transpose().map_err(|e| format!("gone.ward: {e}"))?;
        let moved_to = self
            .moved_to
            .as_deref()
            .map(WardCode::parse)
            .transpose()
            .map_err(|e| format!("gone.moved_to: {e}"))?;
        Ok(Entry::Gone { key, ward, moved_to })
    }
}

/// Writes records to a stream.
pub struct RecordWriter<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Jsonl(W),
    /// The writer, and whether rows end with a `gone` cell.
    Csv(Box<csv::Writer<W>>, bool),
}

impl<W: Write> RecordWriter<W> {
    /// A writer of records of `kind` in `format`; CSV files hold one kind,
    /// JSON Lines files may mix them. With `incremental`, the file can also
    /// say which records are gone ([`RecordWriter::gone`]).
    pub fn new(out: W, format: Format, kind: Kind, incremental: bool) -> anyhow::Result<RecordWriter<W>> {
        let inner = match format {
            Format::Jsonl => Inner::Jsonl(out),
            Format::Csv => {
                let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(out);
                w.write_record(csv_rows::header(kind, incremental))?;
                Inner::Csv(Box::new(w), incremental)
            }
        };
        Ok(RecordWriter { inner })
    }

    /// Writes one record. In CSV the caller keeps to the file's kind.
    pub fn write(&mut self, r: &Record) -> anyhow::Result<()> {
        match &mut self.inner {
            Inner::Jsonl(w) => {
                serde_json::to_writer(&mut *w, r)?;
                w.write_all(b"\n")?;
            }
            Inner::Csv(w, incremental) => {
                csv_rows::write_record(w, r, if *incremental { &[""] } else { &[] })?
            }
        }
        Ok(())
    }

    /// Writes that the record `key` is gone: deleted, or (with `moved_to`)
    /// no longer `ward`'s but another's.
    pub fn gone(
        &mut self,
        key: &RecordKey,
        ward: Option<&WardCode>,
        moved_to: Option<&WardCode>,
    ) -> anyhow::Result<()> {
        match &mut self.inner {
            Inner::Jsonl(w) => {
                let gone = GoneJson {
                    kind: key.kind().to_string(),
                    id: key.id().to_string(),
                    ward: ward.map(ToString::to_string),
                    moved_to: moved_to.map(ToString::to_string),
                };
                serde_json::to_writer(&mut *w, &GoneLine { gone })?;
                w.write_all(b"\n")?;
            }
            Inner::Csv(w, true) => csv_rows::write_gone(w, key, ward, moved_to)?,
            Inner::Csv(_, false) => anyhow::bail!("only an incremental CSV export has a `gone` column"),
        }
        Ok(())
    }

    /// Flushes buffered output.
    pub fn finish(self) -> anyhow::Result<()> {
        match self.inner {
            Inner::Jsonl(mut w) => w.flush()?,
            Inner::Csv(mut w, _) => w.flush()?,
        }
        Ok(())
    }
}

/// One line of an input file: its number, the bytes read so far, and the
/// entry or why it could not be read.
pub type Row = (u64, u64, Result<Entry, String>);

/// A JSON line: a record of `kind`, or a gone line.
fn json_entry(line: &str, kind: Kind) -> Result<Entry, String> {
    match serde_json::from_str::<Record>(line) {
        Ok(r) if r.kind() == kind => Ok(Entry::Record(r)),
        Ok(r) => Err(format!("a {} record in a {kind} import", r.kind())),
        Err(e) => match serde_json::from_str::<GoneLine>(line) {
            Ok(g) => g.gone.entry(kind),
            Err(_) => Err(format!("not a record in JSON: {e}")),
        },
    }
}

/// Reads entries of `kind` from `input`, one [`Row`] per data line.
pub fn read_records<R: BufRead + 'static>(
    input: R,
    format: Format,
    kind: Kind,
) -> Box<dyn Iterator<Item = Row>> {
    match format {
        Format::Jsonl => {
            let mut bytes = 0u64;
            Box::new(input.lines().enumerate().filter_map(move |(i, line)| {
                let line_no = i as u64 + 1;
                let line = match line {
                    Ok(l) => l,
                    Err(e) => return Some((line_no, bytes, Err(format!("cannot read: {e}")))),
                };
                bytes += line.len() as u64 + 1;
                if line.trim().is_empty() {
                    return None;
                }
                Some((line_no, bytes, json_entry(&line, kind)))
            }))
        }
        Format::Csv => {
            // The csv crate places a record of a Windows (CRLF) file on the
            // line before it (its position is taken between the `\r` and
            // the `\n` that end the line before): told by the header's end.
            let mut input = input;
            let crlf = input.fill_buf().is_ok_and(|b| {
                b.iter().position(|c| *c == b'\n').is_some_and(|i| i > 0 && b[i - 1] == b'\r')
            });
            let shift = u64::from(crlf);
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
            let headers = reader.headers().cloned().unwrap_or_default();
            Box::new(reader.into_records().map(move |row| match row {
                Err(e) => {
                    let (line, bytes) = e.position().map_or((0, 0), |p| (p.line() + shift, p.byte()));
                    (line, bytes, Err(format!("bad CSV: {e}")))
                }
                Ok(rec) => {
                    let (line, bytes) = rec.position().map_or((0, 0), |p| (p.line() + shift, p.byte()));
                    let bytes = bytes + rec.as_slice().len() as u64 + rec.len() as u64;
                    let rec: csv::StringRecord = rec.iter().map(csv_rows::unneutralise).collect();
                    (line, bytes, csv_rows::read_row(&rec, &headers, kind))
                }
            }))
        }
    }
}
