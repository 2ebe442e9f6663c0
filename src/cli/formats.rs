//! File formats for records: JSON Lines (one record per line, the model's
//! JSON) and CSV (one kind per file, flat columns; lists are `;`-separated,
//! structured lists are JSON inside the cell).

use std::io::{BufRead, Write};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::model::{
    Body, Business, BusinessForm, BusinessStatus, Citizen, CivilEvent, Kind, LandParcel, LandRegistration,
    MaritalStatus, Record, Relationship, Residence, Sex, WardCode,
};

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

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CitizenRow {
    ward: String,
    personal_id: String,
    full_name: String,
    #[serde(with = "crate::model::strict::date")]
    date_of_birth: NaiveDate,
    sex: Sex,
    ethnicity: String,
    nationality: String,
    household_id: String,
    relationship_to_head: Relationship,
    permanent_address: String,
    permanent_commune: String,
    temporary_address: String,
    temporary_commune: String,
    marital_status: MaritalStatus,
    phone: String,
    events: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BusinessRow {
    ward: String,
    enterprise_code: String,
    form: BusinessForm,
    name: String,
    owner_personal_id: String,
    address: String,
    sector_code: String,
    status: BusinessStatus,
    #[serde(with = "crate::model::strict::date")]
    registration_date: NaiveDate,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LandRow {
    ward: String,
    commune_code: String,
    map_sheet: String,
    parcel_number: String,
    aliases: String,
    area_m2: f64,
    land_use_type: String,
    owners: String,
    certificate_serial: String,
    address: String,
    registrations: String,
}

/// Characters that make a spreadsheet run a cell as a formula when they
/// begin it (`=HYPERLINK(...)`, `+`, `-`, `@`, and tab or carriage return
/// before them).
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell a spreadsheet would run as a formula, made inert with a leading
/// `'` (which spreadsheets hide); [`unneutralise`] takes it off on import,
/// so every value survives an export and a re-import unchanged.
fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_START) || (cell.starts_with('\'') && escaped(cell)) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// True if, past any leading `'`, the cell begins like a formula.
fn escaped(cell: &str) -> bool {
    cell.trim_start_matches('\'').starts_with(FORMULA_START)
}

/// The cell as it was before [`neutralise`].
fn unneutralise(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if escaped(cell) => rest,
        _ => cell,
    }
}

/// Writes one CSV row with every cell a spreadsheet would run made inert.
fn write_row<W: Write, R: Serialize>(w: &mut csv::Writer<W>, header: &mut bool, row: R) -> csv::Result<()> {
    let mut cells = csv::Writer::from_writer(Vec::new());
    cells.serialize(row)?;
    let bytes = cells.into_inner().map_err(|e| e.into_error())?;
    let mut rows = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes.as_slice());
    let mut records = rows.records();
    let names = records.next().expect("a serialized row has a header")?;
    if !*header {
        w.write_record(&names)?;
        *header = true;
    }
    for rec in records {
        w.write_record(rec?.iter().map(|c| neutralise(c).into_owned()))?;
    }
    Ok(())
}

fn split_list(s: &str) -> Vec<String> {
    s.split(';').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect()
}

fn json_list<T: serde::de::DeserializeOwned>(s: &str, column: &str) -> Result<Vec<T>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(s).map_err(|e| format!("column {column}: {e}"))
}

fn ward(s: &str) -> Result<WardCode, String> {
    WardCode::parse(s).map_err(|e| format!("column ward: {e}"))
}

/// Writes records of one kind to a stream.
pub struct RecordWriter<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Jsonl(W),
    /// The writer, and whether the header row is written.
    Csv(Box<csv::Writer<W>>, bool),
}

impl<W: Write> RecordWriter<W> {
    /// A writer in `format`.
    pub fn new(out: W, format: Format) -> RecordWriter<W> {
        let inner = match format {
            Format::Jsonl => Inner::Jsonl(out),
            Format::Csv => Inner::Csv(Box::new(csv::Writer::from_writer(out)), false),
        };
        RecordWriter { inner }
    }

    /// Writes one record. CSV files hold one kind: the caller keeps to it.
    pub fn write(&mut self, r: &Record) -> anyhow::Result<()> {
        match &mut self.inner {
            Inner::Jsonl(w) => {
                serde_json::to_writer(&mut *w, r)?;
                w.write_all(b"\n")?;
            }
            Inner::Csv(w, header) => match &r.body {
                Body::Citizen(c) => write_row(
                    w,
                    header,
                    CitizenRow {
                        ward: r.ward.to_string(),
                        personal_id: c.personal_id.clone(),
                        full_name: c.full_name.clone(),
                        date_of_birth: c.date_of_birth,
                        sex: c.sex,
                        ethnicity: c.ethnicity.clone(),
                        nationality: c.nationality.clone(),
                        household_id: c.household_id.clone(),
                        relationship_to_head: c.relationship_to_head,
                        permanent_address: c.permanent_residence.address.clone(),
                        permanent_commune: c.permanent_residence.commune_code.clone(),
                        temporary_address: c
                            .temporary_residence
                            .as_ref()
                            .map_or(String::new(), |t| t.address.clone()),
                        temporary_commune: c
                            .temporary_residence
                            .as_ref()
                            .map_or(String::new(), |t| t.commune_code.clone()),
                        marital_status: c.marital_status,
                        phone: c.phone.clone(),
                        events: if c.events.is_empty() {
                            String::new()
                        } else {
                            serde_json::to_string(&c.events)?
                        },
                    },
                )?,
                Body::Business(b) => write_row(
                    w,
                    header,
                    BusinessRow {
                        ward: r.ward.to_string(),
                        enterprise_code: b.enterprise_code.clone(),
                        form: b.form,
                        name: b.name.clone(),
                        owner_personal_id: b.owner_personal_id.clone(),
                        address: b.address.clone(),
                        sector_code: b.sector_code.clone(),
                        status: b.status,
                        registration_date: b.registration_date,
                    },
                )?,
                Body::Land(l) => write_row(
                    w,
                    header,
                    LandRow {
                        ward: r.ward.to_string(),
                        commune_code: l.commune_code.clone(),
                        map_sheet: l.map_sheet.clone(),
                        parcel_number: l.parcel_number.clone(),
                        aliases: l.aliases.join(";"),
                        area_m2: l.area_m2,
                        land_use_type: l.land_use_type.clone(),
                        owners: l.owners.join(";"),
                        certificate_serial: l.certificate_serial.clone(),
                        address: l.address.clone(),
                        registrations: if l.registrations.is_empty() {
                            String::new()
                        } else {
                            serde_json::to_string(&l.registrations)?
                        },
                    },
                )?,
            },
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
/// record or why it could not be read.
pub type Row = (u64, u64, Result<Record, String>);

/// Reads records of `kind` from `input`, one [`Row`] per data line.
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
                let parsed = serde_json::from_str::<Record>(&line)
                    .map_err(|e| format!("not a record in JSON: {e}"))
                    .and_then(|r| match r.kind() {
                        k if k == kind => Ok(r),
                        other => Err(format!("a {other} record in a {kind} import")),
                    });
                Some((line_no, bytes, parsed))
            }))
        }
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
            let headers = reader.headers().cloned().unwrap_or_default();
            Box::new(reader.into_records().map(move |row| match row {
                Err(e) => {
                    let (line, bytes) = e.position().map_or((0, 0), |p| (p.line(), p.byte()));
                    (line, bytes, Err(format!("bad CSV: {e}")))
                }
                Ok(rec) => {
                    let (line, bytes) = rec.position().map_or((0, 0), |p| (p.line(), p.byte()));
                    let bytes = bytes + rec.as_slice().len() as u64 + rec.len() as u64;
                    let rec: csv::StringRecord = rec.iter().map(unneutralise).collect();
                    (line, bytes, csv_record(&rec, &headers, kind))
                }
            }))
        }
    }
}

fn csv_record(row: &csv::StringRecord, headers: &csv::StringRecord, kind: Kind) -> Result<Record, String> {
    let bad = |e: csv::Error| format!("bad {kind} row: {e}");
    Ok(match kind {
        Kind::Citizen => {
            let r: CitizenRow = row.deserialize(Some(headers)).map_err(bad)?;
            let temporary = (!r.temporary_address.is_empty() || !r.temporary_commune.is_empty())
                .then_some(Residence { address: r.temporary_address, commune_code: r.temporary_commune });
            Record {
                ward: ward(&r.ward)?,
                body: Body::Citizen(Citizen {
                    personal_id: r.personal_id,
                    full_name: r.full_name,
                    date_of_birth: r.date_of_birth,
                    sex: r.sex,
                    ethnicity: r.ethnicity,
                    nationality: r.nationality,
                    household_id: r.household_id,
                    relationship_to_head: r.relationship_to_head,
                    permanent_residence: Residence {
                        address: r.permanent_address,
                        commune_code: r.permanent_commune,
                    },
                    temporary_residence: temporary,
                    marital_status: r.marital_status,
                    phone: r.phone,
                    events: json_list::<CivilEvent>(&r.events, "events")?,
                }),
            }
        }
        Kind::Business => {
            let r: BusinessRow = row.deserialize(Some(headers)).map_err(bad)?;
            Record {
                ward: ward(&r.ward)?,
                body: Body::Business(Business {
                    enterprise_code: r.enterprise_code,
                    form: r.form,
                    name: r.name,
                    owner_personal_id: r.owner_personal_id,
                    address: r.address,
                    sector_code: r.sector_code,
                    status: r.status,
                    registration_date: r.registration_date,
                }),
            }
        }
        Kind::Land => {
            let r: LandRow = row.deserialize(Some(headers)).map_err(bad)?;
            Record {
                ward: ward(&r.ward)?,
                body: Body::Land(LandParcel {
                    commune_code: r.commune_code,
                    map_sheet: r.map_sheet,
                    parcel_number: r.parcel_number,
                    aliases: split_list(&r.aliases),
                    area_m2: r.area_m2,
                    land_use_type: r.land_use_type,
                    owners: split_list(&r.owners),
                    certificate_serial: r.certificate_serial,
                    address: r.address,
                    registrations: json_list::<LandRegistration>(&r.registrations, "registrations")?,
                }),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Plan, WardGen};

    fn round_trip(format: Format, kind: Kind, records: &[Record]) {
        let mut buf = Vec::new();
        let mut w = RecordWriter::new(&mut buf, format);
        for r in records.iter().filter(|r| r.kind() == kind) {
            w.write(r).unwrap();
        }
        w.finish().unwrap();
        let back: Vec<Record> = read_records(std::io::Cursor::new(buf), format, kind)
            .map(|(line, _, r)| r.unwrap_or_else(|e| panic!("line {line}: {e}")))
            .collect();
        let want: Vec<&Record> = records.iter().filter(|r| r.kind() == kind).collect();
        assert_eq!(back.iter().collect::<Vec<_>>(), want, "{format:?} {kind}");
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
        let mut w = RecordWriter::new(&mut out, Format::Csv);
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
        let back: Vec<Record> = read_records(std::io::Cursor::new(out), Format::Csv, Kind::Citizen)
            .map(|(_, _, r)| r.unwrap())
            .collect();
        assert_eq!(back, records);
    }

    #[test]
    fn an_unknown_column_is_an_error_naming_it() {
        let csv = "ward,enterprise_code,form,name,owner_personal_id,address,sector_code,status,registration_date,fax\n";
        let row = "00082,0100000035,enterprise,X,001085012345,1 Hàng Bông,4711,active,2020-01-02,0243\n";
        let rows: Vec<Row> =
            read_records(std::io::Cursor::new(format!("{csv}{row}")), Format::Csv, Kind::Business).collect();
        let e = rows[0].2.clone().unwrap_err();
        assert!(e.contains("fax"), "{e}");
    }

    #[test]
    fn bad_lines_name_the_line_and_the_problem() {
        let input = "{\"ward\":\"00082\"}\n\nnot json\n";
        let rows: Vec<Row> =
            read_records(std::io::Cursor::new(input), Format::Jsonl, Kind::Citizen).collect();
        assert_eq!(rows.len(), 2, "blank lines are skipped");
        assert_eq!(rows[0].0, 1);
        assert!(rows[0].2.as_ref().unwrap_err().contains("not a record"));
        assert_eq!(rows[1].0, 3);
        let csv = "ward,enterprise_code\n00082,0100109106\n";
        let rows: Vec<Row> = read_records(std::io::Cursor::new(csv), Format::Csv, Kind::Business).collect();
        assert!(rows[0].2.as_ref().unwrap_err().contains("bad business row"), "{:?}", rows[0].2);
        assert_eq!(rows[0].0, 2);
    }
}
