//! Rows of the PostgreSQL schema: ward states, and the office's typed
//! record tables (`citizens`, `businesses`, `land_parcels`), written a
//! whole write's rows per statement (array parameters, unnested).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::{pg_err, sql};
use crate::model::Hlc;
use crate::model::signed::KeyId;
use crate::model::{Body, Kind, Record, RecordKey, WardCode};
use crate::store::city::{Budget, Chain};
use crate::store::{Loss, StoreError, WardState};

/// City time in ms as a timestamp.
pub(super) fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A timestamp as city time in ms.
pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Every ward's replication state.
pub(super) async fn load_wards(
    client: &impl GenericClient,
) -> Result<HashMap<WardCode, WardState>, StoreError> {
    let rows = sql::query(
        client,
        "SELECT ward, last_applied_seq, last_contact, records, quarantined,
                    lost_changes, lost_first_seq, lost_last_seq, lost_found_at,
                    budget_day, budget_spent, unproven_to,
                    chain_link, chain_key, newest_wall, newest_logical, forks, fork_seq
             FROM ward_state",
        &[],
    )
    .await
    .map_err(pg_err)?;
    let mut wards = HashMap::with_capacity(rows.len());
    for r in rows {
        let code: String = r.get(0);
        let ward = WardCode::parse(&code)
            .map_err(|reason| StoreError::Corrupt { key: format!("ward_state {code}"), reason })?;
        let state = WardState {
            last_applied_seq: r.get::<_, i64>(1) as u64,
            last_contact_ms: r.get::<_, Option<DateTime<Utc>>>(2).map_or(0, ms),
            records: r.get::<_, i64>(3) as u64,
            quarantined: r.get::<_, i64>(4) as u64,
            lost: Loss {
                changes: r.get::<_, i64>(5) as u64,
                last_range: (
                    r.get::<_, Option<i64>>(6).unwrap_or(0) as u64,
                    r.get::<_, Option<i64>>(7).unwrap_or(0) as u64,
                ),
                found_at_ms: r.get::<_, Option<DateTime<Utc>>>(8).map_or(0, ms),
            },
            budget: Budget { day: r.get(9), spent: r.get::<_, i64>(10) as u64 },
            unproven_to: r.get::<_, i64>(11) as u64,
            chain: chain_of(&r, 12),
        };
        wards.insert(ward, state);
    }
    Ok(wards)
}

/// The chain in the columns of `row` from `at` (`chain_link`, `chain_key`,
/// `newest_wall`, `newest_logical`, `forks`, `fork_seq`).
pub(super) fn chain_of(row: &tokio_postgres::Row, at: usize) -> Chain {
    let hash = |i: usize| row.get::<_, Option<Vec<u8>>>(i).and_then(|b| crate::model::signed::hash_from(&b));
    Chain {
        link: hash(at),
        key: KeyId(hash(at + 1).unwrap_or_default()),
        newest: Hlc { wall_ms: row.get::<_, i64>(at + 2) as u64, logical: row.get::<_, i64>(at + 3) as u32 },
        forks: row.get::<_, i64>(at + 4) as u64,
        fork_seq: row.get::<_, i64>(at + 5) as u64,
    }
}

/// Writes the ward states that differ from `before`.
pub(super) async fn save_wards(
    client: &impl GenericClient,
    before: &HashMap<WardCode, WardState>,
    after: &HashMap<WardCode, WardState>,
) -> Result<(), StoreError> {
    let changed: Vec<(&WardCode, &WardState)> =
        after.iter().filter(|(w, s)| before.get(*w) != Some(*s)).collect();
    if changed.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&WardState) -> i64| changed.iter().map(|(_, s)| f(s)).collect::<Vec<i64>>();
    let opt_ts = |f: fn(&WardState) -> i64| {
        changed.iter().map(|(_, s)| Some(f(s)).filter(|t| *t > 0).map(ts)).collect::<Vec<_>>()
    };
    let lost = |f: fn(&Loss) -> u64| {
        changed.iter().map(|(_, s)| (s.lost.changes > 0).then(|| f(&s.lost) as i64)).collect::<Vec<_>>()
    };
    let wards: Vec<&str> = changed.iter().map(|(w, _)| w.as_str()).collect();
    sql::execute(
        client,
        "INSERT INTO ward_state (ward, last_applied_seq, last_contact, records, quarantined,
                                     lost_changes, lost_first_seq, lost_last_seq, lost_found_at,
                                     budget_day, budget_spent, unproven_to,
                                     chain_link, chain_key, newest_wall, newest_logical, forks, fork_seq)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::bigint[], $5::bigint[],
                                  $6::bigint[], $7::bigint[], $8::bigint[], $9::timestamptz[],
                                  $10::bigint[], $11::bigint[], $12::bigint[],
                                  $13::bytea[], $14::bytea[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[])
             ON CONFLICT (ward) DO UPDATE SET
                 last_applied_seq = EXCLUDED.last_applied_seq, last_contact = EXCLUDED.last_contact,
                 records = EXCLUDED.records, quarantined = EXCLUDED.quarantined,
                 lost_changes = EXCLUDED.lost_changes, lost_first_seq = EXCLUDED.lost_first_seq,
                 lost_last_seq = EXCLUDED.lost_last_seq, lost_found_at = EXCLUDED.lost_found_at,
                 budget_day = EXCLUDED.budget_day, budget_spent = EXCLUDED.budget_spent,
                 unproven_to = EXCLUDED.unproven_to,
                 chain_link = EXCLUDED.chain_link, chain_key = EXCLUDED.chain_key,
                 newest_wall = EXCLUDED.newest_wall, newest_logical = EXCLUDED.newest_logical,
                 forks = EXCLUDED.forks, fork_seq = EXCLUDED.fork_seq",
        &[
            &wards,
            &col(|s| s.last_applied_seq as i64),
            &opt_ts(|s| s.last_contact_ms),
            &col(|s| s.records as i64),
            &col(|s| s.quarantined as i64),
            &col(|s| s.lost.changes as i64),
            &lost(|l| l.last_range.0),
            &lost(|l| l.last_range.1),
            &opt_ts(|s| s.lost.found_at_ms),
            &col(|s| s.budget.day),
            &col(|s| s.budget.spent as i64),
            &col(|s| s.unproven_to as i64),
            &changed.iter().map(|(_, s)| s.chain.link.map(|l| l.to_vec())).collect::<Vec<_>>(),
            &changed.iter().map(|(_, s)| Some(s.chain.key.0.to_vec())).collect::<Vec<_>>(),
            &col(|s| s.chain.newest.wall_ms as i64),
            &col(|s| i64::from(s.chain.newest.logical)),
            &col(|s| s.chain.forks as i64),
            &col(|s| s.chain.fork_seq as i64),
        ],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// Separates the items of a list sent as one text (arrays of arrays cannot
/// be unnested row by row): the ASCII unit separator, which no field name,
/// id or alias contains.
const SEPARATOR: char = '\u{1f}';

/// A list as one text, for [`split`] to take apart in SQL.
pub(super) fn joined(items: &[String]) -> String {
    items.join(&SEPARATOR.to_string())
}

/// The SQL that takes a [`joined`] list in `column` apart into a text array.
pub(super) fn split(column: &str) -> String {
    format!("string_to_array({column}, E'\\x1F')")
}

/// The typed table of a kind and its key column.
pub(super) fn table(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Citizen => ("citizens", "personal_id"),
        Kind::Business => ("businesses", "enterprise_code"),
        Kind::Land => ("land_parcels", "parcel_id"),
    }
}

/// One record as the office's table shows it, with whether it is disputed.
pub(super) struct Shown<'a> {
    pub(super) key: &'a RecordKey,
    pub(super) record: &'a Record,
    pub(super) disputed: bool,
    pub(super) cursor: u64,
    pub(super) at_ms: i64,
}

/// Replaces the typed rows of `kind`: `deleted` go, `shown` are upserted.
pub(super) async fn write_typed(
    client: &impl GenericClient,
    kind: Kind,
    deleted: &[&str],
    shown: &[Shown<'_>],
) -> Result<(), StoreError> {
    let (table, id) = table(kind);
    if !deleted.is_empty() {
        let sql = format!("DELETE FROM {table} WHERE {id} = ANY($1)");
        sql::execute(client, &sql, &[&deleted]).await.map_err(pg_err)?;
    }
    if shown.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = shown.iter().map(|s| s.key.id()).collect();
    let wards: Vec<&str> = shown.iter().map(|s| s.record.ward.as_str()).collect();
    let disputed: Vec<bool> = shown.iter().map(|s| s.disputed).collect();
    let cursors: Vec<i64> = shown.iter().map(|s| s.cursor as i64).collect();
    let at: Vec<DateTime<Utc>> = shown.iter().map(|s| ts(s.at_ms)).collect();
    let common = "ward = EXCLUDED.ward, disputed = EXCLUDED.disputed, \
                  last_cursor = EXCLUDED.last_cursor, last_changed_at = EXCLUDED.last_changed_at";
    match kind {
        Kind::Citizen => {
            let c: Vec<&crate::model::Citizen> = shown
                .iter()
                .filter_map(|s| match &s.record.body {
                    Body::Citizen(c) => Some(c),
                    _ => None,
                })
                .collect();
            let text = |f: fn(&crate::model::Citizen) -> &str| c.iter().map(|c| f(c)).collect::<Vec<&str>>();
            let temp = |f: fn(&crate::model::Residence) -> &str| {
                c.iter().map(|c| c.temporary_residence.as_ref().map(f)).collect::<Vec<Option<&str>>>()
            };
            let events: Vec<serde_json::Value> =
                c.iter().map(|c| serde_json::to_value(&c.events).expect("events serialize")).collect();
            let births: Vec<chrono::NaiveDate> = c.iter().map(|c| c.date_of_birth).collect();
            let sql = format!(
                "INSERT INTO citizens (personal_id, ward, full_name, date_of_birth, sex, ethnicity, nationality,
                     household_id, relationship_to_head, permanent_address, permanent_commune,
                     temporary_address, temporary_commune, marital_status, phone, events,
                     disputed, last_cursor, last_changed_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                     $14::text[], $15::text[], $16::jsonb[], $17::bool[], $18::bigint[], $19::timestamptz[])
                 ON CONFLICT (personal_id) DO UPDATE SET full_name = EXCLUDED.full_name,
                     date_of_birth = EXCLUDED.date_of_birth, sex = EXCLUDED.sex,
                     ethnicity = EXCLUDED.ethnicity, nationality = EXCLUDED.nationality,
                     household_id = EXCLUDED.household_id, relationship_to_head = EXCLUDED.relationship_to_head,
                     permanent_address = EXCLUDED.permanent_address, permanent_commune = EXCLUDED.permanent_commune,
                     temporary_address = EXCLUDED.temporary_address, temporary_commune = EXCLUDED.temporary_commune,
                     marital_status = EXCLUDED.marital_status, phone = EXCLUDED.phone, events = EXCLUDED.events,
                     {common}"
            );
            sql::execute(
                client,
                &sql,
                &[
                    &ids,
                    &wards,
                    &text(|c| &c.full_name),
                    &births,
                    &text(|c| c.sex.as_str()),
                    &text(|c| &c.ethnicity),
                    &text(|c| &c.nationality),
                    &text(|c| &c.household_id),
                    &text(|c| c.relationship_to_head.as_str()),
                    &text(|c| &c.permanent_residence.address),
                    &text(|c| &c.permanent_residence.commune_code),
                    &temp(|r| &r.address),
                    &temp(|r| &r.commune_code),
                    &text(|c| c.marital_status.as_str()),
                    &text(|c| &c.phone),
                    &events,
                    &disputed,
                    &cursors,
                    &at,
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        Kind::Business => {
            let b: Vec<&crate::model::Business> = shown
                .iter()
                .filter_map(|s| match &s.record.body {
                    Body::Business(b) => Some(b),
                    _ => None,
                })
                .collect();
            let text = |f: fn(&crate::model::Business) -> &str| b.iter().map(|b| f(b)).collect::<Vec<&str>>();
            let dates: Vec<chrono::NaiveDate> = b.iter().map(|b| b.registration_date).collect();
            let sql = format!(
                "INSERT INTO businesses (enterprise_code, ward, form, name, owner_personal_id, address,
                     sector_code, status, registration_date, disputed, last_cursor, last_changed_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::date[], $10::bool[], $11::bigint[], $12::timestamptz[])
                 ON CONFLICT (enterprise_code) DO UPDATE SET form = EXCLUDED.form, name = EXCLUDED.name,
                     owner_personal_id = EXCLUDED.owner_personal_id, address = EXCLUDED.address,
                     sector_code = EXCLUDED.sector_code, status = EXCLUDED.status,
                     registration_date = EXCLUDED.registration_date, {common}"
            );
            sql::execute(
                client,
                &sql,
                &[
                    &ids,
                    &wards,
                    &text(|b| b.form.as_str()),
                    &text(|b| &b.name),
                    &text(|b| &b.owner_personal_id),
                    &text(|b| &b.address),
                    &text(|b| &b.sector_code),
                    &text(|b| b.status.as_str()),
                    &dates,
                    &disputed,
                    &cursors,
                    &at,
                ],
            )
            .await
            .map_err(pg_err)?;
        }
        Kind::Land => {
            let l: Vec<&crate::model::LandParcel> = shown
                .iter()
                .filter_map(|s| match &s.record.body {
                    Body::Land(l) => Some(l),
                    _ => None,
                })
                .collect();
            let text =
                |f: fn(&crate::model::LandParcel) -> &str| l.iter().map(|l| f(l)).collect::<Vec<&str>>();
            let list = |f: fn(&crate::model::LandParcel) -> &Vec<String>| {
                l.iter().map(|l| joined(f(l))).collect::<Vec<String>>()
            };
            let areas: Vec<f64> = l.iter().map(|l| l.area_m2).collect();
            let registrations: Vec<serde_json::Value> = l
                .iter()
                .map(|l| serde_json::to_value(&l.registrations).expect("registrations serialize"))
                .collect();
            let sql = format!(
                "INSERT INTO land_parcels (parcel_id, ward, commune_code, map_sheet, parcel_number, aliases,
                     area_m2, land_use_type, owners, certificate_serial, address, registrations,
                     disputed, last_cursor, last_changed_at)
                 SELECT p, w, c, s, n, {split_a}, ar, u, {split_o}, cs, ad, r, d, lc, la
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::float8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::jsonb[],
                     $13::bool[], $14::bigint[], $15::timestamptz[])
                     AS t(p, w, c, s, n, a, ar, u, o, cs, ad, r, d, lc, la)
                 ON CONFLICT (parcel_id) DO UPDATE SET commune_code = EXCLUDED.commune_code,
                     map_sheet = EXCLUDED.map_sheet, parcel_number = EXCLUDED.parcel_number,
                     aliases = EXCLUDED.aliases, area_m2 = EXCLUDED.area_m2,
                     land_use_type = EXCLUDED.land_use_type, owners = EXCLUDED.owners,
                     certificate_serial = EXCLUDED.certificate_serial, address = EXCLUDED.address,
                     registrations = EXCLUDED.registrations, {common}",
                split_a = split("a"),
                split_o = split("o"),
            );
            sql::execute(
                client,
                &sql,
                &[
                    &ids,
                    &wards,
                    &text(|l| &l.commune_code),
                    &text(|l| &l.map_sheet),
                    &text(|l| &l.parcel_number),
                    &list(|l| &l.aliases),
                    &areas,
                    &text(|l| &l.land_use_type),
                    &list(|l| &l.owners),
                    &text(|l| &l.certificate_serial),
                    &text(|l| &l.address),
                    &registrations,
                    &disputed,
                    &cursors,
                    &at,
                ],
            )
            .await
            .map_err(pg_err)?;
        }
    }
    Ok(())
}
