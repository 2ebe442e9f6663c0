//! Reading a record file as people make them: the format told by
//! `--format` or else by the content (JSON starts with `{`), a CSV file's
//! delimiter told by `--delimiter` or else by its header line (comma,
//! semicolon as Excel saves in a Vietnamese locale, or tab), its header
//! checked once, line numbers right for Windows (CRLF) files, and JSON
//! records either one per line or pretty-printed.

use std::io::BufRead;

use super::{Entry, Format, GoneLine, Row, csv_rows};
use crate::model::{Kind, Record};

/// What the command line said about a file; what it did not say is found
/// in the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// `--format`.
    pub format: Option<Format>,
    /// `--kind`: the records' kind; JSON may mix kinds without it, CSV
    /// needs it.
    pub kind: Option<Kind>,
    /// `--delimiter`, for CSV.
    pub delimiter: Option<u8>,
}

/// An open record file: its format, and its rows.
pub struct Records {
    /// The format read.
    pub format: Format,
    /// A CSV file's header line, as written.
    pub header: Option<String>,
    /// A CSV file's delimiter.
    pub delimiter: Option<u8>,
    /// Each data line.
    pub rows: Box<dyn Iterator<Item = Row>>,
}

/// Opens `input` for reading records as `how` says, or says what makes
/// the whole file unreadable (a CSV header that is not the kind's, a JSON
/// array): one error, not one per row.
pub fn open_records<R: BufRead + 'static>(mut input: R, how: Reading) -> Result<Records, String> {
    let head = input.fill_buf().map_err(|e| format!("cannot read: {e}"))?.to_vec();
    // (Past the notes of a reject file, and a byte-order mark.)
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(l))
        .filter(|l| !l.trim_ascii().is_empty() && !l.starts_with(b"# line "));
    let data = lines.next().unwrap_or_default();
    let next = lines.next();
    let first = data.trim_ascii_start().first().copied();
    if first.is_none() {
        // Nothing but blank lines (and notes): nothing to read, whatever the format.
        let format = how.format.unwrap_or(Format::Jsonl);
        return Ok(Records { format, header: None, delimiter: None, rows: Box::new(std::iter::empty()) });
    }
    let format =
        how.format.unwrap_or(if matches!(first, Some(b'{' | b'[')) { Format::Jsonl } else { Format::Csv });
    match format {
        Format::Jsonl => {
            if first == Some(b'[') {
                return Err(
                    "line 1: the file is one JSON array; records are read one per line (JSON Lines): \
                            convert it with  jq -c '.[]' FILE > FILE.jsonl"
                        .into(),
                );
            }
            // (A record over several lines, pretty-printed or typed so,
            // has neither of its first two lines whole; a first line that
            // is not JSON before one that is, is a bad row of JSON Lines,
            // rejected alone.)
            let whole = |l: &[u8]| serde_json::from_slice::<serde_json::Value>(l).is_ok();
            let one_per_line = whole(data) || next.is_none_or(whole);
            let rows = if one_per_line { json_lines(input, how.kind) } else { pretty_json(input, how.kind)? };
            Ok(Records { format, header: None, delimiter: None, rows })
        }
        Format::Csv => {
            let Some(kind) = how.kind else {
                return Err("a CSV file holds one kind of record: give --kind".into());
            };
            let header = head.split(|b| *b == b'\n').find(|l| !l.starts_with(b"#")).unwrap_or_default();
            let delimiter = how.delimiter.unwrap_or_else(|| sniff_delimiter(header));
            header_problem(header, delimiter, kind, how.format.is_none())?;
            let header = String::from_utf8_lossy(header).trim_end().to_string();
            let rows = csv_rows_of(input, kind, delimiter);
            Ok(Records { format, header: Some(header), delimiter: Some(delimiter), rows })
        }
    }
}

/// Reads entries of `kind` from `input` in `format` (CSV comma-separated),
/// one [`Row`] per data line, without looking at the file as a whole.
pub fn read_records<R: BufRead + 'static>(
    input: R,
    format: Format,
    kind: Kind,
) -> Box<dyn Iterator<Item = Row>> {
    match format {
        Format::Jsonl => json_lines(input, Some(kind)),
        Format::Csv => csv_rows_of(input, kind, b','),
    }
}

/// The delimiter the header line uses most: comma, semicolon or tab.
fn sniff_delimiter(header: &[u8]) -> u8 {
    let count = |d: u8| header.iter().filter(|b| **b == d).count();
    [b',', b';', b'\t'].into_iter().max_by_key(|d| (count(*d), *d == b',')).unwrap_or(b',')
}

/// Why `header` is not that of a CSV file of `kind` (with or without the
/// `gone` column of an incremental export), naming the columns unknown
/// and missing, and what the file looks like instead.
fn header_problem(header: &[u8], delimiter: u8, kind: Kind, sniffed: bool) -> Result<(), String> {
    let text = String::from_utf8_lossy(header);
    let text = text.trim_start_matches('\u{feff}').trim_end_matches(['\r', '\n']);
    let given: Vec<&str> = text.split(delimiter as char).map(|c| c.trim().trim_matches('"')).collect();
    let expected = csv_rows::header(kind, false);
    let unknown: Vec<&str> =
        given.iter().copied().filter(|c| *c != csv_rows::GONE && !expected.iter().any(|e| e == c)).collect();
    let missing: Vec<&str> = expected.iter().map(String::as_str).filter(|e| !given.contains(e)).collect();
    if unknown.is_empty() && missing.is_empty() {
        return Ok(());
    }
    let looks = if text.trim_start().starts_with('{') {
        " (it looks like JSON: give --format jsonl, or name the file .jsonl)".to_string()
    } else if given.len() == 1 && sniffed {
        " (one column: is it separated by something other than comma, semicolon or tab? give --delimiter)"
            .into()
    } else {
        String::new()
    };
    let shown = |c: &str| match c.char_indices().nth(40) {
        Some((at, _)) => format!("{:?}...", &c[..at]),
        None => format!("{c:?}"),
    };
    let list = |v: &[&str]| v.iter().map(|c| shown(c)).collect::<Vec<_>>().join(", ");
    let mut why = format!("line 1: the header is not that of a {kind} CSV file{looks}:");
    if !unknown.is_empty() {
        why.push_str(&format!(" unknown column(s) {};", list(&unknown)));
    }
    if !missing.is_empty() {
        why.push_str(&format!(" missing column(s) {};", list(&missing)));
    }
    why.push_str(&format!(" a {kind} file has the columns {}", expected.join(",")));
    Err(why)
}

/// A JSON line: a record (of `kind`, if given), or a gone line.
fn json_entry(line: &str, kind: Option<Kind>) -> Result<Entry, String> {
    match serde_json::from_str::<Record>(line) {
        Ok(r) if kind.is_none_or(|k| k == r.kind()) => Ok(Entry::Record(r)),
        Ok(r) => Err(format!("a {} record in a {} import", r.kind(), kind.map_or("", |k| k.as_str()))),
        Err(e) => match serde_json::from_str::<GoneLine>(line) {
            Ok(g) => match kind {
                Some(kind) => g.gone.entry(kind),
                None => Err("a gone line is read by `wardsync import --kind KIND`".into()),
            },
            Err(_) => Err(format!("not a record in JSON: {e}")),
        },
    }
}

fn json_lines<R: BufRead + 'static>(input: R, kind: Option<Kind>) -> Box<dyn Iterator<Item = Row>> {
    let mut bytes = 0u64;
    Box::new(input.lines().enumerate().filter_map(move |(i, line)| {
        let line_no = i as u64 + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                return Some(Row {
                    line: line_no,
                    bytes,
                    entry: Err(format!("cannot read: {e}")),
                    text: String::new(),
                });
            }
        };
        bytes += line.len() as u64 + 1;
        // (Blank lines, and the notes of a reject file, are passed over.)
        if line.trim().is_empty() || line.starts_with("# line ") {
            return None;
        }
        Some(Row { line: line_no, bytes, entry: json_entry(&line, kind), text: line })
    }))
}

/// Pretty-printed JSON records, one after another: read whole (such files
/// are written by hand, and small), each numbered by the line it starts on.
fn pretty_json<R: BufRead>(
    mut input: R,
    kind: Option<Kind>,
) -> Result<Box<dyn Iterator<Item = Row>>, String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut input, &mut text).map_err(|e| format!("cannot read: {e}"))?;
    let mut rows = Vec::new();
    let mut values = serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>();
    // (Lines are counted as the reading goes: once over the file.)
    let (mut start, mut line) = (0, 1u64);
    loop {
        let skipped = text[start..].len() - text[start..].trim_start().len();
        line += text[start..start + skipped].bytes().filter(|b| *b == b'\n').count() as u64;
        let begins = line;
        match values.next() {
            None => break,
            Some(Ok(v)) => {
                let end = values.byte_offset();
                line += text[start + skipped..end].bytes().filter(|b| *b == b'\n').count() as u64;
                let text = v.to_string();
                rows.push(Row { line: begins, bytes: end as u64, entry: json_entry(&text, kind), text });
                start = end;
            }
            Some(Err(e)) => {
                let entry = Err(format!("not a record in JSON ({e}); the rest of the file is not read"));
                let rest = text[start..].trim().to_string();
                rows.push(Row { line: begins, bytes: text.len() as u64, entry, text: rest });
                break;
            }
        }
    }
    Ok(Box::new(rows.into_iter()))
}

fn csv_rows_of<R: BufRead + 'static>(
    mut input: R,
    kind: Kind,
    delimiter: u8,
) -> Box<dyn Iterator<Item = Row>> {
    // The csv crate places a record of a Windows (CRLF) file on the line
    // before it (its position is taken between the `\r` and the `\n` that
    // end the line before): told by the header's end.
    let crlf = input
        .fill_buf()
        .is_ok_and(|b| b.iter().position(|c| *c == b'\n').is_some_and(|i| i > 0 && b[i - 1] == b'\r'));
    let shift = u64::from(crlf);
    // (The notes of a reject file, `#` lines, are passed over.)
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).delimiter(delimiter).comment(Some(b'#')).from_reader(input);
    let headers = reader.headers().cloned().unwrap_or_default();
    // (A rejected row is handed back as a spreadsheet opens it safely: its
    // cells made inert as an export's are, which a re-import undoes.)
    let text = move |rec: &csv::StringRecord| {
        let mut w = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
        let _ =
            w.write_record(rec.iter().map(|c| csv_rows::neutralise(csv_rows::unneutralise(c)).into_owned()));
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8_lossy(&bytes).trim_end().to_string()
    };
    Box::new(reader.into_records().map(move |row| match row {
        Err(e) => {
            let (line, bytes) = e.position().map_or((0, 0), |p| (p.line() + shift, p.byte()));
            Row { line, bytes, entry: Err(format!("bad CSV: {e}")), text: String::new() }
        }
        Ok(rec) => {
            let (line, bytes) = rec.position().map_or((0, 0), |p| (p.line() + shift, p.byte()));
            let bytes = bytes + rec.as_slice().len() as u64 + rec.len() as u64;
            let text = text(&rec);
            if rec.len() != headers.len() {
                let why = format!("bad CSV: {} fields, where the header has {}", rec.len(), headers.len());
                return Row { line, bytes, entry: Err(why), text };
            }
            let rec: csv::StringRecord = rec.iter().map(csv_rows::unneutralise).collect();
            Row { line, bytes, entry: csv_rows::read_row(&rec, &headers, kind), text }
        }
    }))
}
