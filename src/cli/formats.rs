//! File formats for records: JSON Lines (one record per line, the model's
//! JSON, or pretty-printed records) and CSV (one kind per file, flat
//! columns; see `csv_rows`), read as people make them (`reading`).
//!
//! An incremental export (`export --since`) also says which records are no
//! longer the exported ward's: a JSON line `{"gone": {"kind": "citizen",
//! "id": "...", "ward": "00082"}}` (`ward` when the export is for one
//! ward; `"moved_to": "00145"` when another ward took the record), or in
//! CSV a last column `gone`.

mod csv_rows;
mod reading;
#[cfg(test)]
mod tests;

pub use reading::{Reading, Records, open_records, read_records};

use std::io::Write;

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
    /// The format a file name says: `.csv`, or `.jsonl`, `.ndjson` and
    /// `.json` (JSON Lines); `None` for any other name.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str())?.to_ascii_lowercase().as_str() {
            "csv" | "tsv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            _ => None,
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

/// One data line of an input file.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its line number (of its first line, for a record over several).
    pub line: u64,
    /// The bytes of the file read up to its end.
    pub bytes: u64,
    /// The entry, or why it could not be read.
    pub entry: Result<Entry, String>,
    /// The row as written in the file (a CSV row re-written with the
    /// file's delimiter), to hand back when it is rejected.
    pub text: String,
}
