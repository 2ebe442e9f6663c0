//! The CSV form of records: one flat row per record, lists `;`-separated,
//! structured lists as JSON inside the cell, every cell a spreadsheet would
//! run made inert. An incremental export adds a last column, `gone`, which
//! is empty for a record and says why for a record no longer the ward's
//! (`deleted`, or `moved to 00145`); such a row fills only `ward` and the
//! columns of the record's key.

use std::io::Write;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::Entry;
use crate::model::{
    Body, Business, BusinessForm, BusinessStatus, Citizen, CivilEvent, Kind, LandParcel, LandRegistration,
    MaritalStatus, Record, RecordKey, Relationship, Residence, Sex, WardCode, field_names,
};

/// The last column of an incremental export.
pub(super) const GONE: &str = "gone";

/// The columns that make a kind's key, in the order its id joins them.
fn key_columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Citizen => &["personal_id"],
        Kind::Business => &["enterprise_code"],
        Kind::Land => &["commune_code", "map_sheet", "parcel_number"],
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
pub(super) const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell a spreadsheet would run as a formula, made inert with a leading
/// `'` (which spreadsheets hide); [`unneutralise`] takes it off on import,
/// so every value survives an export and a re-import unchanged.
pub(super) fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
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
pub(super) fn unneutralise(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if escaped(cell) => rest,
        _ => cell,
    }
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

/// The header row: `ward`, then the kind's fields in model order (see
/// [`field_names`]) with each residence in two columns, address and commune
/// (the fields of the kind's row type); and `gone` in an incremental export.
pub(super) fn header(kind: Kind, incremental: bool) -> Vec<String> {
    let mut h = vec!["ward".to_string()];
    for f in field_names(kind) {
        match f.strip_suffix("_residence") {
            Some(which) => h.extend([format!("{which}_address"), format!("{which}_commune")]),
            None => h.push(f.to_string()),
        }
    }
    if incremental {
        h.push(GONE.to_string());
    }
    h
}

/// Writes one row, neutralised: a record's cells, then `extra` ones.
fn write_row<W: Write, R: Serialize>(w: &mut csv::Writer<W>, row: R, extra: &[&str]) -> anyhow::Result<()> {
    let mut cells = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    cells.serialize(row)?;
    let bytes = cells.into_inner().map_err(|e| e.into_error())?;
    let mut rows = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes.as_slice());
    let row = rows.records().next().expect("a serialized row")?;
    let cells: Vec<String> =
        row.iter().chain(extra.iter().copied()).map(|c| neutralise(c).into_owned()).collect();
    w.write_record(&cells)?;
    Ok(())
}

/// Writes `r` as a row of its kind; `extra` cells follow.
pub(super) fn write_record<W: Write>(
    w: &mut csv::Writer<W>,
    r: &Record,
    extra: &[&str],
) -> anyhow::Result<()> {
    match &r.body {
        Body::Citizen(c) => write_row(
            w,
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
                events: if c.events.is_empty() { String::new() } else { serde_json::to_string(&c.events)? },
            },
            extra,
        ),
        Body::Business(b) => write_row(
            w,
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
            extra,
        ),
        Body::Land(l) => write_row(
            w,
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
            extra,
        ),
    }
}

/// Writes a row saying that the record `key` is gone (see [`Entry::Gone`]).
pub(super) fn write_gone<W: Write>(
    w: &mut csv::Writer<W>,
    key: &RecordKey,
    ward: Option<&WardCode>,
    moved_to: Option<&WardCode>,
) -> anyhow::Result<()> {
    let mut parts = key.id().split(':');
    let cells: Vec<String> = header(key.kind(), true)
        .iter()
        .map(|c| match c.as_str() {
            "ward" => ward.map_or(String::new(), ToString::to_string),
            GONE => moved_to.map_or("deleted".into(), |m| format!("moved to {m}")),
            c if key_columns(key.kind()).contains(&c) => parts.next().unwrap_or_default().to_string(),
            _ => String::new(),
        })
        .collect();
    w.write_record(&cells)?;
    Ok(())
}

/// Reads one row (cells already unneutralised) under `headers`.
pub(super) fn read_row(
    row: &csv::StringRecord,
    headers: &csv::StringRecord,
    kind: Kind,
) -> Result<Entry, String> {
    if headers.iter().next_back() != Some(GONE) {
        return csv_record(row, headers, kind).map(Entry::Record);
    }
    let n = headers.len() - 1;
    let gone = row.get(n).unwrap_or_default();
    if gone.is_empty() {
        let fields: csv::StringRecord = row.iter().take(n).collect();
        let names: csv::StringRecord = headers.iter().take(n).collect();
        return csv_record(&fields, &names, kind).map(Entry::Record);
    }
    let cell =
        |name: &str| headers.iter().position(|h| h == name).and_then(|i| row.get(i)).unwrap_or_default();
    let moved_to = match gone {
        "deleted" => None,
        g => match g.strip_prefix("moved to ") {
            Some(w) => Some(WardCode::parse(w).map_err(|e| format!("column gone: {e}"))?),
            None => return Err(format!("column gone: {g:?} is neither `deleted` nor `moved to WARD`")),
        },
    };
    let id = key_columns(kind).iter().map(|c| cell(c)).collect::<Vec<_>>().join(":");
    let key = RecordKey::new(kind, &id).map_err(|e| format!("a gone row's key: {e}"))?;
    let ward = Some(cell("ward")).filter(|w| !w.is_empty()).map(ward).transpose()?;
    Ok(Entry::Gone { key, ward, moved_to })
}

/// The record a row of `kind` holds.
pub(super) fn csv_record(
    row: &csv::StringRecord,
    headers: &csv::StringRecord,
    kind: Kind,
) -> Result<Record, String> {
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
