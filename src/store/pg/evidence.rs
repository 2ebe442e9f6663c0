//! The evidence of the log as PostgreSQL holds it, read for `wardsync
//! audit verify` (see [`crate::store::CityDb::evidence`]). Every row is
//! read as stored and checked against itself where it repeats itself: a
//! log row's columns against its encoded entry (by meaning: jsonb reorders
//! keys), a record state's ward against the record it shows, and each
//! typed table against the records the states show, rebuilt in temporary
//! tables by the very statement that writes them. What does not match is
//! a [`EvidenceRow::Tampered`] row naming the table and key.

use std::collections::BTreeMap;

use super::read::{From, cursor_of, cursor_parts};
use super::rows::{Shown, ms, table, write_typed};
use super::{PgCityStore, pg_err};
use crate::model::signed::{Hash, KeyId, hash_from};
use crate::model::{Kind, Op, Record, Versioned, WardCode};
use crate::store::codec::decode;
use crate::store::{
    EvidencePart, EvidenceRow, LoggedChange, Page, Quarantined, SignedBatch, StoreError, WardKey,
};

fn tampered(row: String, why: impl Into<String>) -> EvidenceRow {
    EvidenceRow::Tampered { row, why: why.into() }
}

fn hash_of(bytes: &[u8], what: &str) -> Result<Hash, String> {
    hash_from(bytes).ok_or_else(|| format!("{what} is {} bytes, not 32", bytes.len()))
}

impl PgCityStore {
    /// See [`crate::store::CityDb::evidence`].
    pub(super) async fn evidence_page(
        &self,
        part: EvidencePart,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<EvidenceRow>, StoreError> {
        let limit = limit.max(1) as i64;
        let list = format!("{part:?}");
        let columns = match part {
            EvidencePart::Keys | EvidencePart::Log | EvidencePart::Typed | EvidencePart::Head => 1,
            EvidencePart::Batches | EvidencePart::Held | EvidencePart::Records => 2,
        };
        let Some(from) = (match cursor_parts(after, &list, columns) {
            From::Start => Some(vec![String::new(); columns]),
            From::After(parts) => Some(parts),
            From::Elsewhere => None,
        }) else {
            return Ok(Page { items: Vec::new(), next: None });
        };
        let started = after.is_empty();
        let (rows, cursors): (Vec<EvidenceRow>, Vec<Vec<String>>) = match part {
            EvidencePart::Keys => {
                let after = hex_bytes(&from[0]);
                let rows = self
                    .rows(
                        "SELECT key_id, ward, cert FROM ward_keys WHERE key_id > $1 ORDER BY key_id LIMIT $2",
                        &[&after, &limit],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        let id: &[u8] = r.get(0);
                        let name = format!("ward_keys key_id {}", hex(id));
                        let row = match (hash_of(id, "key_id"), WardCode::parse(r.get(1))) {
                            (Ok(key), Ok(ward)) => {
                                EvidenceRow::Key(WardKey { key: KeyId(key), ward, cert: r.get(2) })
                            }
                            (Err(e), _) => tampered(name, e),
                            (_, Err(e)) => tampered(name, e.to_string()),
                        };
                        (row, vec![hex(id)])
                    })
                    .unzip()
            }
            EvidencePart::Batches => {
                let seq: i64 = from[1].parse().unwrap_or(0);
                let rows = self
                    .rows(
                        "SELECT ward, last_seq, first_seq, previous, hashes, key_id, signature FROM signed_batches
                         WHERE (ward, last_seq) > ($1, $2) ORDER BY ward, last_seq LIMIT $3",
                        &[&from[0], &seq, &limit],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        let (ward, last): (String, i64) = (r.get(0), r.get(1));
                        let name = format!("signed_batches ward {ward} last_seq {last}");
                        (signed_batch(r).unwrap_or_else(|e| tampered(name, e)), vec![ward, last.to_string()])
                    })
                    .unzip()
            }
            EvidencePart::Log => {
                let cursor: i64 = from[0].parse().unwrap_or(0);
                let rows = self
                    .rows(
                        "SELECT cursor, ward, identity, applied_at, kind, id, seq, fields, field_values, deleted,
                                entry, sent_context
                         FROM change_log WHERE cursor > $1 ORDER BY cursor LIMIT $2",
                        &[&cursor, &limit],
                    )
                    .await?;
                let mut out = (Vec::new(), Vec::new());
                for r in &rows {
                    for row in log_row(r) {
                        out.0.push(row);
                        out.1.push(vec![r.get::<_, i64>(0).to_string()]);
                    }
                }
                out
            }
            EvidencePart::Held => {
                let seq: i64 = from[1].parse().unwrap_or(0);
                let rows = self
                    .rows(
                        "SELECT ward, seq, entry FROM quarantine WHERE (ward, seq) > ($1, $2)
                         ORDER BY ward, seq LIMIT $3",
                        &[&from[0], &seq, &limit],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        let (ward, seq): (String, i64) = (r.get(0), r.get(1));
                        let name = format!("quarantine ward {ward} seq {seq}");
                        let row = match decode::<Quarantined>(b"quarantine.entry", r.get(2)) {
                            Ok(q) if q.ward.as_str() != ward || q.seq as i64 != seq => {
                                tampered(name, format!("its entry is ward {}'s change {}", q.ward, q.seq))
                            }
                            Ok(q) => EvidenceRow::Held(q.ward, q.seq, q.change.map(Box::new)),
                            Err(e) => tampered(name, e.to_string()),
                        };
                        (row, vec![ward, seq.to_string()])
                    })
                    .unzip()
            }
            EvidencePart::Records => {
                let rows = self
                    .rows(
                        "SELECT kind, id, state, shown, ward FROM record_states WHERE (kind, id) > ($1, $2)
                         ORDER BY kind, id LIMIT $3",
                        &[&from[0], &from[1], &limit],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        let (kind, id): (String, String) = (r.get(0), r.get(1));
                        (record_row(r), vec![kind, id])
                    })
                    .unzip()
            }
            EvidencePart::Typed if started => (self.typed_differences().await?, Vec::new()),
            EvidencePart::Head if started => {
                let row = self.rows("SELECT cursor, running FROM city_clock WHERE id = 1", &[]).await?;
                let head = match row.first().map(|r| (r.get::<_, i64>(0), r.get::<_, Option<&[u8]>>(1))) {
                    Some((cursor, Some(running))) => match hash_of(running, "running") {
                        Ok(running) => EvidenceRow::Head { cursor: cursor.max(0) as u64, running },
                        Err(e) => tampered("city_clock running".into(), e),
                    },
                    _ => tampered("city_clock".into(), "holds no running hash"),
                };
                (vec![head], Vec::new())
            }
            EvidencePart::Typed | EvidencePart::Head => (Vec::new(), Vec::new()),
        };
        let next = (cursors.len() as i64 >= limit).then(|| {
            let last: Vec<&str> = cursors.last().expect("a full page").iter().map(String::as_str).collect();
            cursor_of(&list, &last)
        });
        Ok(Page { items: rows, next })
    }

    /// The typed rows that are not what the records the states show make:
    /// each kind's table rebuilt in a temporary table of the same name
    /// (which PostgreSQL looks up first) by the statement that writes it,
    /// and compared row by row, by meaning.
    async fn typed_differences(&self) -> Result<Vec<EvidenceRow>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let (table, id) = table(kind);
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL) ON COMMIT DROP"
            ))
            .await
            .map_err(pg_err)?;
            let mut after = String::new();
            loop {
                let rows = tx
                    .query(
                        "SELECT id, shown FROM record_states WHERE kind = $1 AND id > $2 AND shown IS NOT NULL
                         ORDER BY id LIMIT 1000",
                        &[&kind.as_str(), &after],
                    )
                    .await
                    .map_err(pg_err)?;
                let Some(last) = rows.last() else { break };
                after = last.get(0);
                let mut records = Vec::with_capacity(rows.len());
                for r in &rows {
                    let id: &str = r.get(0);
                    match decode::<Record>(b"record_states.shown", r.get(1)) {
                        Ok(record) => match crate::model::RecordKey::new(kind, id) {
                            Ok(key) => records.push((key, record)),
                            Err(e) => out.push(tampered(format!("record_states {kind} {id}"), e.to_string())),
                        },
                        Err(e) => out.push(tampered(format!("record_states {kind} {id}"), e.to_string())),
                    }
                }
                let shown: Vec<Shown> = records
                    .iter()
                    .map(|(key, record)| Shown { key, record, disputed: false, cursor: 0, at_ms: 0 })
                    .collect();
                write_typed(&tx, kind, &[], &shown).await?;
            }
            let derived = "'disputed', 'last_cursor', 'last_changed_at', 'folded_name'";
            let rows = tx
                .query(
                    &format!(
                        "SELECT coalesce(a.{id}, e.{id}), a.{id} IS NULL, e.{id} IS NULL
                         FROM public.{table} a FULL JOIN pg_temp.{table} e ON a.{id} = e.{id}
                         WHERE a.{id} IS NULL OR e.{id} IS NULL
                            OR to_jsonb(a) - ARRAY[{derived}] <> to_jsonb(e) - ARRAY[{derived}]
                         ORDER BY 1"
                    ),
                    &[],
                )
                .await
                .map_err(pg_err)?;
            for r in rows {
                let key: String = r.get(0);
                let why = match (r.get::<_, bool>(1), r.get::<_, bool>(2)) {
                    (true, _) => "missing: the record exists at the city",
                    (_, true) => {
                        "no record of the city's shows it (a row inserted, or a deleted record's left)"
                    }
                    _ => "its columns are not the record the city shows (a row edited)",
                };
                out.push(tampered(format!("{table} {id} {key}"), why));
            }
        }
        tx.rollback().await.map_err(pg_err)?;
        Ok(out)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len() / 2).filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

fn signed_batch(r: &tokio_postgres::Row) -> Result<EvidenceRow, String> {
    let ward = WardCode::parse(r.get(0)).map_err(|e| e.to_string())?;
    let (last, first): (i64, i64) = (r.get(1), r.get(2));
    let hashes: &[u8] = r.get(4);
    if !hashes.len().is_multiple_of(32) {
        return Err(format!("hashes is {} bytes, not 32 each", hashes.len()));
    }
    let batch = SignedBatch {
        ward,
        first: first.max(0) as u64,
        previous: hash_of(r.get(3), "previous")?,
        hashes: hashes.chunks(32).map(|h| hash_of(h, "a hash")).collect::<Result<_, _>>()?,
        key: KeyId(hash_of(r.get(5), "key_id")?),
        signature: r.get(6),
    };
    if batch.hashes.is_empty() || first < 1 || batch.last() as i64 != last {
        return Err(format!(
            "first_seq {first} and {} hashes do not end at last_seq {last}",
            batch.hashes.len()
        ));
    }
    Ok(EvidenceRow::Batch(batch))
}

/// A log row, its columns checked against its entry: the entry, and a
/// [`EvidenceRow::Tampered`] row first if its columns say otherwise.
fn log_row(r: &tokio_postgres::Row) -> Vec<EvidenceRow> {
    let cursor: i64 = r.get(0);
    let name = format!("change_log cursor {cursor}");
    let logged: LoggedChange = match decode(b"change_log.entry", r.get(10)) {
        Ok(l) => l,
        Err(e) => return vec![tampered(name, e.to_string())],
    };
    let sent = match r.get::<_, Option<&[u8]>>(11).map(|b| decode(b"change_log.sent_context", b)).transpose()
    {
        Ok(s) => s,
        Err(e) => return vec![tampered(name, e.to_string())],
    };
    let c = &logged.change;
    let values: serde_json::Value = r.get(8);
    let written: serde_json::Value =
        serde_json::from_str(&super::target::json_object(&c.values())).unwrap_or_default();
    let fields: Vec<String> = r.get(7);
    let mismatches: BTreeMap<&str, bool> = BTreeMap::from([
        ("cursor", logged.cursor as i64 != cursor),
        ("ward", r.get::<_, &str>(1) != logged.writer),
        ("identity", r.get::<_, &str>(2) != logged.by),
        ("applied_at", ms(r.get(3)) != logged.applied_at_ms),
        ("kind", r.get::<_, &str>(4) != c.key.kind().as_str()),
        ("id", r.get::<_, &str>(5) != c.key.id()),
        ("seq", r.get::<_, i64>(6) != c.seq as i64),
        ("fields", fields != c.fields),
        ("field_values", values != written),
        ("deleted", r.get::<_, bool>(9) != matches!(c.op, Op::Delete)),
    ]);
    let differ: Vec<&str> = mismatches.into_iter().filter(|(_, d)| *d).map(|(c, _)| c).collect();
    let mut out = Vec::new();
    if !differ.is_empty() {
        out.push(tampered(name, format!("{} not what its entry says (a row edited)", differ.join(", "))));
    }
    out.push(EvidenceRow::Logged(Box::new(logged), sent));
    out
}

/// A record state row, its ward column checked against the record it shows.
fn record_row(r: &tokio_postgres::Row) -> EvidenceRow {
    let (kind, id): (&str, &str) = (r.get(0), r.get(1));
    let name = format!("record_states {kind} {id}");
    let key = match kind
        .parse::<Kind>()
        .map_err(|e| e.to_string())
        .and_then(|k| crate::model::RecordKey::new(k, id).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(e) => return tampered(name, e),
    };
    let state = decode::<Versioned>(b"record_states.state", r.get(2));
    let shown = r.get::<_, Option<&[u8]>>(3).map(|b| decode::<Record>(b"record_states.shown", b)).transpose();
    match (state, shown) {
        (Ok(state), Ok(shown)) => {
            let ward: Option<&str> = r.get(4);
            if ward != shown.as_ref().map(|s| s.ward.as_str()) {
                return tampered(name, "its ward is not the owner of the record it shows (a row edited)");
            }
            EvidenceRow::Record(key, Some(Box::new(state)), shown.map(Box::new))
        }
        (Err(e), _) | (_, Err(e)) => tampered(name, e.to_string()),
    }
}
