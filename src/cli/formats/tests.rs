//! Round trips and refusals of the record file formats.

use proptest::prelude::*;

use super::csv_rows::FORMULA_START;
use super::*;
use crate::generate::{Plan, WardGen};
use crate::model::Body;

/// Writes `entries` (of `kind`) in `format` and reads them back.
fn through_a_file(format: Format, kind: Kind, incremental: bool, entries: &[Entry]) -> Vec<Entry> {
    let mut buf = Vec::new();
    let mut w = RecordWriter::new(&mut buf, format, kind, incremental).unwrap();
    for e in entries {
        match e {
            Entry::Record(r) => w.write(r).unwrap(),
            Entry::Gone { key, ward, moved_to } => w.gone(key, ward.as_ref(), moved_to.as_ref()).unwrap(),
        }
    }
    w.finish().unwrap();
    read_records(std::io::Cursor::new(buf), format, kind)
        .map(|row| row.entry.unwrap_or_else(|e| panic!("line {}: {e}", row.line)))
        .collect()
}

fn records_of(kind: Kind, records: &[Record]) -> Vec<Entry> {
    records.iter().filter(|r| r.kind() == kind).cloned().map(Entry::Record).collect()
}

/// Also proves that [`csv_rows::header`] names each row type's fields in
/// order: the header is written from it and read back by name.
fn round_trip(format: Format, kind: Kind, records: &[Record]) {
    let want = records_of(kind, records);
    assert_eq!(through_a_file(format, kind, false, &want), want, "{format:?} {kind}");
}

#[test]
fn every_kind_round_trips_in_both_formats() {
    let today = "2026-11-22".parse().unwrap();
    let plan = Plan { citizens: 150, businesses: 30, parcels: 30 };
    let records: Vec<Record> =
        WardGen::new(&WardCode::parse("00082").unwrap(), 4, today).records(plan).collect();
    for format in [Format::Jsonl, Format::Csv] {
        for kind in Kind::ALL {
            round_trip(format, kind, &records);
        }
    }
}

#[test]
fn cells_a_spreadsheet_would_run_are_made_inert_and_come_back_unchanged() {
    let plan = Plan { citizens: 6, ..Plan::default() };
    let mut records: Vec<Record> = WardGen::new(
        &WardCode::parse("00082").unwrap(),
        5,
        chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
    )
    .records(plan)
    .collect();
    let names = ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-2", "@SUM(A1)", "'=quoted", "''+twice"];
    for (r, name) in records.iter_mut().zip(names) {
        if let Body::Citizen(c) = &mut r.body {
            c.full_name = name.into();
            c.phone = "+84912345678".into();
        }
    }
    let mut out = Vec::new();
    let mut w = RecordWriter::new(&mut out, Format::Csv, Kind::Citizen, false).unwrap();
    for r in &records {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    for row in csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes()).records() {
        for cell in row.unwrap().iter() {
            assert!(!cell.starts_with(FORMULA_START), "a spreadsheet would run {cell:?}");
        }
    }
    let back: Vec<Entry> = read_records(std::io::Cursor::new(out), Format::Csv, Kind::Citizen)
        .map(|row| row.entry.unwrap())
        .collect();
    assert_eq!(back, records_of(Kind::Citizen, &records));
}

#[test]
fn an_unknown_column_is_an_error_naming_it() {
    let csv =
        "ward,enterprise_code,form,name,owner_personal_id,address,sector_code,status,registration_date,fax\n";
    let row = "00082,0100000035,enterprise,X,001085012345,1 Hàng Bông,4711,active,2020-01-02,0243\n";
    let rows: Vec<Row> =
        read_records(std::io::Cursor::new(format!("{csv}{row}")), Format::Csv, Kind::Business).collect();
    let e = rows[0].entry.clone().unwrap_err();
    assert!(e.contains("fax"), "{e}");
}

#[test]
fn bad_lines_name_the_line_and_the_problem() {
    let input = "{\"ward\":\"00082\"}\n\nnot json\n";
    let rows: Vec<Row> = read_records(std::io::Cursor::new(input), Format::Jsonl, Kind::Citizen).collect();
    assert_eq!(rows.len(), 2, "blank lines are skipped");
    assert_eq!(rows[0].line, 1);
    assert!(rows[0].entry.as_ref().unwrap_err().contains("not a record"));
    assert_eq!(rows[1].line, 3);
    let csv = "ward,enterprise_code\n00082,0100109106\n";
    let rows: Vec<Row> = read_records(std::io::Cursor::new(csv), Format::Csv, Kind::Business).collect();
    assert!(rows[0].entry.as_ref().unwrap_err().contains("bad business row"), "{:?}", rows[0].entry);
    assert_eq!(rows[0].line, 2);
}

#[test]
fn gone_records_round_trip_in_both_formats_among_records() {
    let today = "2026-11-22".parse().unwrap();
    let plan = Plan { citizens: 20, businesses: 5, parcels: 5 };
    let records: Vec<Record> =
        WardGen::new(&WardCode::parse("00082").unwrap(), 2, today).records(plan).collect();
    let (ward, other) = (WardCode::parse("00082").unwrap(), WardCode::parse("00145").unwrap());
    for kind in Kind::ALL {
        let mut entries = records_of(kind, &records);
        let key = |e: &Entry| match e {
            Entry::Record(r) => r.key().unwrap(),
            Entry::Gone { key, .. } => key.clone(),
        };
        let (a, b, c) = (key(&entries[0]), key(&entries[1]), key(&entries[2]));
        entries.insert(0, Entry::Gone { key: a, ward: Some(ward.clone()), moved_to: None });
        entries.push(Entry::Gone { key: b, ward: Some(ward.clone()), moved_to: Some(other.clone()) });
        entries.insert(3, Entry::Gone { key: c, ward: None, moved_to: None });
        for format in [Format::Jsonl, Format::Csv] {
            assert_eq!(through_a_file(format, kind, true, &entries), entries, "{format:?} {kind}");
        }
    }
    // Only an incremental CSV file has the column that says so.
    let mut w = RecordWriter::new(Vec::new(), Format::Csv, Kind::Citizen, false).unwrap();
    let key = records[0].key().unwrap();
    assert!(w.gone(&key, None, None).unwrap_err().to_string().contains("gone"));
}

/// `r` with every text in canonical decomposition (NFD), as some legacy
/// systems and keyboards produce it.
fn decomposed(r: &Record) -> Record {
    use unicode_normalization::UnicodeNormalization;
    fn nfd(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = s.nfd().collect(),
            serde_json::Value::Array(a) => a.iter_mut().for_each(nfd),
            serde_json::Value::Object(o) => o.values_mut().for_each(nfd),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(r).unwrap();
    nfd(&mut v);
    serde_json::from_value(v).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any generated record, given a name or address a spreadsheet would
    /// run and typed in NFD, comes back from a file exactly as written, and
    /// as the record itself once normalised (as every entry point does).
    #[test]
    fn any_record_survives_a_file_and_normalises_to_itself(
        seed in any::<u64>(),
        pick in 0usize..1000,
        prefix in prop::sample::select(vec!["", "=", "+", "-", "@", "'", "'=", "''+", "\t", "\r"]),
        nfd in any::<bool>(),
        csv in any::<bool>(),
        incremental in any::<bool>(),
    ) {
        let today = "2026-11-22".parse().unwrap();
        let plan = Plan { citizens: 8, businesses: 4, parcels: 4 };
        let records: Vec<Record> =
            WardGen::new(&WardCode::parse("00082").unwrap(), seed, today).records(plan).collect();
        let mut original = records[pick % records.len()].clone();
        match &mut original.body {
            Body::Citizen(c) => c.full_name = format!("{prefix}{}", c.full_name),
            Body::Business(b) => b.name = format!("{prefix}{}", b.name),
            Body::Land(l) => l.address = format!("{prefix}{}", l.address),
        }
        let input = if nfd { decomposed(&original) } else { original.clone() };
        let format = if csv { Format::Csv } else { Format::Jsonl };
        let back = through_a_file(format, original.kind(), incremental, &[Entry::Record(input.clone())]);
        prop_assert_eq!(&back, &vec![Entry::Record(input)]);
        let Entry::Record(read) = back.into_iter().next().unwrap() else { unreachable!() };
        prop_assert_eq!(read.normalized(), original);
    }
}

#[test]
fn a_windows_file_names_the_same_lines_as_a_unix_one() {
    let csv = "ward,enterprise_code\n00082,0100109106\n00082,0100109107\n00082,0100109108\n";
    for (name, text) in [("LF", csv.to_string()), ("CRLF", csv.replace('\n', "\r\n"))] {
        let rows: Vec<Row> = read_records(std::io::Cursor::new(text), Format::Csv, Kind::Business).collect();
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4], "{name}");
    }
    // A row the CSV reader cannot take (a field too many) too.
    let bad = "ward,enterprise_code\r\n00082,0100109106\r\n00082,0100109107,extra\r\n";
    let rows: Vec<Row> = read_records(std::io::Cursor::new(bad), Format::Csv, Kind::Business).collect();
    assert!(rows[1].entry.as_ref().unwrap_err().contains("bad CSV"), "{:?}", rows[1]);
    assert_eq!(rows[1].line, 3);
    let json = "{\"ward\":\"00082\"}\n\nnot json\n";
    for (name, text) in [("LF", json.to_string()), ("CRLF", json.replace('\n', "\r\n"))] {
        let rows: Vec<Row> = read_records(std::io::Cursor::new(text), Format::Jsonl, Kind::Citizen).collect();
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3], "{name}");
    }
}

#[test]
fn an_empty_file_has_nothing_to_read_and_a_header_problem_is_said_once() {
    let how = Reading { kind: Some(Kind::Business), ..Reading::default() };
    for empty in ["", "\n\n", "# line 3: a note of a reject file\n"] {
        let r = open_records(std::io::Cursor::new(empty.to_string()), how).unwrap();
        assert_eq!(r.rows.count(), 0, "{empty:?}");
    }
    let e =
        open_records(std::io::Cursor::new("ward;enterprise_code\n00082;1\n".to_string()), how).err().unwrap();
    assert!(e.contains("missing column(s)") && !e.contains("unknown column"), "sniffed ';': {e}");
    let e = open_records(std::io::Cursor::new("[{}]".to_string()), how).err().unwrap();
    assert!(e.contains("jq -c"), "{e}");
}

#[test]
fn a_bad_first_line_of_json_lines_is_rejected_alone_and_only_notes_are_passed_over() {
    let good = serde_json::to_string(
        &WardGen::new(&WardCode::parse("00082").unwrap(), 1, "2026-11-22".parse().unwrap())
            .records(Plan { citizens: 1, ..Plan::default() })
            .next()
            .unwrap(),
    )
    .unwrap();
    let text =
        format!("{{\"ward\":\"00082\",\"body\":{{\"citizen\"\n{good}\n#{good}\n# line 9: a note\n{good}\n");
    let how = Reading { kind: Some(Kind::Citizen), ..Reading::default() };
    let rows: Vec<Row> = open_records(std::io::Cursor::new(text), how).unwrap().rows.collect();
    let seen: Vec<(u64, bool)> = rows.iter().map(|r| (r.line, r.entry.is_ok())).collect();
    assert_eq!(seen, [(1, false), (2, true), (3, false), (5, true)]);
    // A record typed over several lines (as README's put is) is one record.
    let typed = good.replacen(",", ",\n  ", 3);
    let rows: Vec<Row> = open_records(std::io::Cursor::new(typed), how).unwrap().rows.collect();
    assert_eq!(rows.iter().map(|r| (r.line, r.entry.is_ok())).collect::<Vec<_>>(), [(1, true)]);
}
