//! The evidence of the log as PostgreSQL holds it, read for `wardsync
//! audit verify` ([`crate::store::Evidence`]): over one connection, in one
//! repeatable-read transaction (one view of a database the city goes on
//! writing), never committed, and without migrating anything (a schema
//! other than this build's is refused). Every row is read as stored, each
//! column fallibly, and checked against itself where it repeats itself: a
//! log row's columns against its encoded entry (by meaning: jsonb reorders
//! keys), a record state's ward against the record it shows, and each
//! typed table against the records the states show, rebuilt in temporary
//! tables by the very statement that writes them. What does not match is
//! a [`EvidenceRow::Tampered`] row naming the table and key.

use std::collections::BTreeMap;
use std::path::Path;

use tokio_postgres::Row;

use super::connect::Connect;
use super::read::{From, cursor_of, cursor_parts};
use super::rows::{Shown, ms, table, write_typed};
use super::{LATEST, pg_err, pool_err};
use crate::model::signed::{Hash, KeyId, from_hex, hash_from, hex};
use crate::model::{Kind, Op, Policies, Record, RecordKey, Versioned, WardCode};
use crate::store::codec::decode;
use crate::store::{
    Evidence, EvidencePart, EvidenceRow, LoggedChange, Page, Quarantined, SignedBatch, SignedRequest,
    StoreError, WardKey,
};

/// The evidence of a city database on PostgreSQL (see the module docs).
pub struct PgEvidence {
    client: deadpool_postgres::Object,
    policies: Policies,
}

fn tampered(row: String, why: impl Into<String>) -> EvidenceRow {
    EvidenceRow::Tampered { row, why: why.into() }
}

fn hash_of(bytes: &[u8], what: &str) -> Result<Hash, String> {
    hash_from(bytes).ok_or_else(|| format!("{what} is {} bytes, not 32", bytes.len()))
}

/// Column `i` of `r`, or why it cannot be read as a `T`.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, String> {
    r.try_get(i).map_err(|e| format!("column {} cannot be read: {e}", r.columns()[i].name()))
}

impl PgEvidence {
    /// Opens the database at `url` (over TLS verified against `ca` if
    /// given) for an audit: this build's schema, one view of it.
    pub async fn open(url: &str, ca: Option<&Path>) -> Result<PgEvidence, StoreError> {
        let pool = Connect::new(url, ca)?.pool(1)?;
        let client = pool.get().await.map_err(pool_err)?;
        let version: Option<i32> = client
            .query_one("SELECT max(version) FROM schema_version", &[])
            .await
            .map_err(|e| StoreError::Io(format!("the database holds no wardsync schema ({e})")))?
            .get(0);
        if version != Some(LATEST) {
            return Err(StoreError::Io(format!(
                "the database's schema is version {}, and this wardsync reads version {LATEST}: \
                 audit with the wardsync the city runs",
                version.unwrap_or(0)
            )));
        }
        // A lock held by another session fails the audit instead of hanging it.
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL lock_timeout = '30s'")
            .await
            .map_err(pg_err)?;
        let row =
            client.query_one("SELECT policies FROM city_clock WHERE id = 1", &[]).await.map_err(pg_err)?;
        let policies = row
            .get::<_, Option<&[u8]>>(0)
            .map(|b| decode(b"city_clock.policies", b))
            .transpose()?
            .unwrap_or_default();
        Ok(PgEvidence { client, policies })
    }

    async fn rows(&self, sql: &str, params: &super::read::Params<'_>) -> Result<Vec<Row>, StoreError> {
        self.client.query(sql, params).await.map_err(pg_err)
    }
}

#[async_trait::async_trait]
impl Evidence for PgEvidence {
    async fn page(
        &mut self,
        part: EvidencePart,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<EvidenceRow>, StoreError> {
        let limit = limit.max(1) as i64;
        let list = format!("{part:?}");
        let columns = match part {
            EvidencePart::Batches | EvidencePart::Authored | EvidencePart::Held | EvidencePart::Records => 2,
            _ => 1,
        };
        let from = match cursor_parts(after, &list, columns) {
            From::Start => None,
            From::After(parts) => Some(parts),
            From::Elsewhere => return Ok(Page { items: Vec::new(), next: None }),
        };
        let first = from.is_none();
        // The first page starts before any row, whatever a DBA numbered it.
        let (text, number) = match &from {
            None => (String::new(), i64::MIN),
            Some(p) => (p[0].clone(), p.last().and_then(|n| n.parse().ok()).unwrap_or(i64::MIN)),
        };
        let (rows, cursors): (Vec<EvidenceRow>, Vec<Vec<String>>) = match part {
            EvidencePart::Keys => {
                let after = from_hex(&text).unwrap_or_default();
                let rows = self
                    .rows(
                        "SELECT key_id, ward, cert FROM ward_keys WHERE key_id > $1 ORDER BY key_id LIMIT $2",
                        &[&after, &limit],
                    )
                    .await?;
                rows.iter().map(|r| (key_row(r), vec![hex(r.get::<_, &[u8]>(0))])).unzip()
            }
            EvidencePart::Batches => {
                let rows = self
                    .rows(
                        "SELECT ward, last_seq, first_seq, previous, hashes, key_id, signature FROM signed_batches
                         WHERE (ward, last_seq) > ($1, $2) ORDER BY ward, last_seq LIMIT $3",
                        &[&text, &number, &limit],
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
            EvidencePart::Authored => {
                let rows = self
                    .rows(
                        "SELECT ward, seq, signature FROM authored_changes
                         WHERE (ward, seq) > ($1, $2) ORDER BY ward, seq LIMIT $3",
                        &[&text, &number, &limit],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        let (ward, seq): (String, i64) = (r.get(0), r.get(1));
                        let name = format!("authored_changes ward {ward} seq {seq}");
                        let row = match WardCode::parse(&ward) {
                            Ok(w) if seq > 0 => EvidenceRow::Authored(w, seq as u64, r.get(2)),
                            _ => tampered(name, "names no ward's change".to_string()),
                        };
                        (row, vec![ward, seq.to_string()])
                    })
                    .unzip()
            }
            EvidencePart::Wards if first => {
                let wards = super::rows::load_wards(&self.client).await?;
                (wards.into_iter().map(|(w, s)| EvidenceRow::Ward(w, Box::new(s))).collect(), Vec::new())
            }
            EvidencePart::Log => {
                let rows = self
                    .rows(
                        "SELECT cursor, ward, identity, applied_at, kind, id, seq, fields, field_values, deleted,
                                entry, sent_context
                         FROM change_log WHERE cursor > $1 ORDER BY cursor LIMIT $2",
                        &[&number, &limit],
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
                let rows = self
                    .rows(
                        "SELECT ward, seq, entry, discarded_by IS NOT NULL FROM quarantine
                         WHERE (ward, seq) > ($1, $2) ORDER BY ward, seq LIMIT $3",
                        &[&text, &number, &limit],
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
                            Ok(q) => crate::store::city::evidence::held(q, r.get(3)),
                            Err(e) => tampered(name, e.to_string()),
                        };
                        (row, vec![ward, seq.to_string()])
                    })
                    .unzip()
            }
            EvidencePart::Requests => {
                let rows = self
                    .rows(
                        "SELECT cursor, entry FROM office_requests WHERE cursor > $1 ORDER BY cursor LIMIT $2",
                        &[&number, &limit],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        let cursor: i64 = r.get(0);
                        let name = format!("office_requests cursor {cursor}");
                        let row = match decode::<SignedRequest>(b"office_requests.entry", r.get(1)) {
                            Ok(q) if q.cursors.first() != Some(&(cursor as u64)) => {
                                tampered(name, format!("its entry names cursors {:?}", q.cursors))
                            }
                            Ok(q) => EvidenceRow::Request(Box::new(q)),
                            Err(e) => tampered(name, e.to_string()),
                        };
                        (row, vec![cursor.to_string()])
                    })
                    .unzip()
            }
            EvidencePart::Relayed => {
                let rows = self
                    .rows(
                        "SELECT cursor, evidence FROM relayed_writes WHERE cursor > $1 ORDER BY cursor LIMIT $2",
                        &[&number, &limit],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        let cursor: i64 = r.get(0);
                        let row = match crate::store::Authorship::decode(r.get(1)) {
                            Ok(a) => EvidenceRow::Relayed(cursor as u64, Box::new(a)),
                            Err(e) => tampered(format!("relayed_writes cursor {cursor}"), e.to_string()),
                        };
                        (row, vec![cursor.to_string()])
                    })
                    .unzip()
            }
            EvidencePart::Records => {
                let rows = self
                    .rows(
                        "SELECT kind, id, state, shown, ward, last_cursor FROM record_states
                         WHERE (kind, id) > ($1, $2) ORDER BY kind, id LIMIT $3",
                        &[&text, &from.as_ref().map_or(String::new(), |p| p[1].clone()), &limit],
                    )
                    .await?;
                let (kinds, ids): (Vec<&str>, Vec<&str>) =
                    rows.iter().map(|r| (r.get::<_, &str>(0), r.get::<_, &str>(1))).unzip();
                let logged = self
                    .rows(
                        "SELECT c.kind, c.id, c.entry FROM change_log c
                         JOIN unnest($1::text[], $2::text[]) AS k(kind, id) ON c.kind = k.kind AND c.id = k.id
                         ORDER BY c.cursor",
                        &[&kinds, &ids],
                    )
                    .await?;
                let mut histories: BTreeMap<(String, String), Vec<LoggedChange>> = BTreeMap::new();
                for l in &logged {
                    // (An entry that cannot be read is named by the log's part.)
                    if let Ok(entry) = decode::<LoggedChange>(b"change_log.entry", l.get(2)) {
                        histories.entry((l.get(0), l.get(1))).or_default().push(entry);
                    }
                }
                rows.iter()
                    .map(|r| {
                        let (kind, id): (String, String) = (r.get(0), r.get(1));
                        let history = histories.remove(&(kind.clone(), id.clone())).unwrap_or_default();
                        (record_row(r, history), vec![kind, id])
                    })
                    .unzip()
            }
            EvidencePart::Typed if first => (self.typed_differences().await?, Vec::new()),
            EvidencePart::Head if first => {
                let row =
                    self.rows("SELECT cursor, running, city_id FROM city_clock WHERE id = 1", &[]).await?;
                let city = row
                    .first()
                    .and_then(|r| r.get::<_, Option<&[u8]>>(2))
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or_default();
                let head = match row.first().map(|r| (r.get::<_, i64>(0), r.get::<_, Option<&[u8]>>(1))) {
                    Some((cursor, Some(running))) => match hash_of(running, "running") {
                        Ok(running) => EvidenceRow::Head { cursor: cursor.max(0) as u64, running, city },
                        Err(e) => tampered("city_clock running".into(), e),
                    },
                    _ => tampered("city_clock".into(), "holds no running hash"),
                };
                (vec![head], Vec::new())
            }
            EvidencePart::Wards | EvidencePart::Typed | EvidencePart::Head => (Vec::new(), Vec::new()),
        };
        let next = (cursors.len() as i64 >= limit).then(|| {
            let last: Vec<&str> = cursors.last().expect("a full page").iter().map(String::as_str).collect();
            cursor_of(&list, &last)
        });
        Ok(Page { items: rows, next })
    }

    fn policies(&self) -> &Policies {
        &self.policies
    }
}

impl PgEvidence {
    /// The typed rows that are not what the records the states show make:
    /// each kind's table rebuilt in a temporary table of the same name
    /// (which PostgreSQL looks up first) by the statement that writes it,
    /// and compared row by row, by meaning (all but the time of the last
    /// change and the folded name).
    async fn typed_differences(&self) -> Result<Vec<EvidenceRow>, StoreError> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let (table, id) = table(kind);
            self.client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS pg_temp.{table}; CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL)"
                ))
                .await
                .map_err(pg_err)?;
            let mut after = String::new();
            loop {
                let rows = self
                    .rows(
                        "SELECT id, state, shown, last_cursor FROM record_states
                         WHERE kind = $1 AND id > $2 AND shown IS NOT NULL ORDER BY id LIMIT 1000",
                        &[&kind.as_str(), &after],
                    )
                    .await?;
                let Some(last) = rows.last() else { break };
                after = last.get(0);
                let mut records = Vec::with_capacity(rows.len());
                for r in &rows {
                    let id: &str = r.get(0);
                    let read = RecordKey::new(kind, id).map_err(|e| e.to_string()).and_then(|key| {
                        let state = decode::<Versioned>(b"record_states.state", r.get(1))
                            .map_err(|e| e.to_string())?;
                        let record =
                            decode::<Record>(b"record_states.shown", r.get(2)).map_err(|e| e.to_string())?;
                        let disputed = !state.conflicts(kind, &self.policies).is_empty();
                        Ok((key, record, disputed, r.get::<_, i64>(3).max(0) as u64))
                    });
                    match read {
                        Ok(record) => records.push(record),
                        Err(e) => out.push(tampered(format!("record_states {kind} {id}"), e)),
                    }
                }
                self.write_expected(kind, &records, &mut out).await?;
            }
            let ignored = "'last_changed_at', 'folded_name'";
            let rows = self
                .rows(
                    &format!(
                        "SELECT coalesce(a.{id}, e.{id}), a.{id} IS NULL, e.{id} IS NULL
                         FROM public.{table} a FULL JOIN pg_temp.{table} e ON a.{id} = e.{id}
                         WHERE a.{id} IS NULL OR e.{id} IS NULL
                            OR to_jsonb(a) - ARRAY[{ignored}] <> to_jsonb(e) - ARRAY[{ignored}]
                         ORDER BY 1"
                    ),
                    &[],
                )
                .await?;
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
        Ok(out)
    }

    /// Writes `records` into the temporary typed table of `kind`; one that
    /// cannot be written (text PostgreSQL refuses) is named, the others kept.
    async fn write_expected(
        &self,
        kind: Kind,
        records: &[(RecordKey, Record, bool, u64)],
        out: &mut Vec<EvidenceRow>,
    ) -> Result<(), StoreError> {
        self.client.batch_execute("SAVEPOINT chunk").await.map_err(pg_err)?;
        if write_typed(&self.client, kind, &[], &shown(records)).await.is_ok() {
            return Ok(());
        }
        self.client.batch_execute("ROLLBACK TO SAVEPOINT chunk").await.map_err(pg_err)?;
        for one in records.chunks(1) {
            self.client.batch_execute("SAVEPOINT one").await.map_err(pg_err)?;
            if let Err(e) = write_typed(&self.client, kind, &[], &shown(one)).await {
                self.client.batch_execute("ROLLBACK TO SAVEPOINT one").await.map_err(pg_err)?;
                out.push(tampered(
                    format!("record_states {kind} {}", one[0].0.id()),
                    format!("not a record: {e}"),
                ));
            }
        }
        Ok(())
    }
}

/// Records as their typed rows are written.
fn shown(r: &[(RecordKey, Record, bool, u64)]) -> Vec<Shown<'_>> {
    r.iter()
        .map(|(key, record, disputed, cursor)| Shown {
            key,
            record,
            disputed: *disputed,
            cursor: *cursor,
            at_ms: 0,
        })
        .collect()
}

fn key_row(r: &Row) -> EvidenceRow {
    let id: &[u8] = r.get(0);
    let name = format!("ward_keys key_id {}", hex(id));
    match (hash_of(id, "key_id"), WardCode::parse(r.get(1))) {
        (Ok(key), Ok(ward)) => EvidenceRow::Key(WardKey { key: KeyId(key), ward, cert: r.get(2) }),
        (Err(e), _) => tampered(name, e),
        (_, Err(e)) => tampered(name, e),
    }
}

fn signed_batch(r: &Row) -> Result<EvidenceRow, String> {
    let ward = WardCode::parse(r.get(0))?;
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
    let end = first.checked_add(batch.hashes.len() as i64 - 1);
    if batch.hashes.is_empty() || first < 1 || end != Some(last) {
        return Err(format!(
            "first_seq {first} and {} hashes do not end at last_seq {last}",
            batch.hashes.len()
        ));
    }
    Ok(EvidenceRow::Batch(batch))
}

/// A log row, its columns checked against its entry: the entry, and a
/// [`EvidenceRow::Tampered`] row first if its columns say otherwise.
fn log_row(r: &Row) -> Vec<EvidenceRow> {
    let cursor: i64 = r.get(0);
    let name = format!("change_log cursor {cursor}");
    match log_entry(r, cursor) {
        Ok((logged, sent, differ)) if differ.is_empty() => vec![EvidenceRow::Logged(Box::new(logged), sent)],
        Ok((logged, sent, differ)) => vec![
            tampered(name, format!("{} not what its entry says (a row edited)", differ.join(", "))),
            EvidenceRow::Logged(Box::new(logged), sent),
        ],
        Err(why) => vec![tampered(name, why)],
    }
}

type Entry = (LoggedChange, Option<crate::model::VersionVector>, Vec<&'static str>);

/// A log row's entry, the context it was sent with, and the columns that
/// do not say what the entry does.
fn log_entry(r: &Row, cursor: i64) -> Result<Entry, String> {
    let logged: LoggedChange =
        decode(b"change_log.entry", &col::<Vec<u8>>(r, 10)?).map_err(|e| e.to_string())?;
    let sent = col::<Option<Vec<u8>>>(r, 11)?
        .map(|b| decode(b"change_log.sent_context", &b))
        .transpose()
        .map_err(|e| e.to_string())?;
    let c = &logged.change;
    let values: serde_json::Value = col(r, 8)?;
    let written: serde_json::Value =
        serde_json::from_str(&super::target::json_object(&c.values())).unwrap_or_default();
    let differ = [
        ("cursor", logged.cursor as i64 != cursor),
        ("ward", col::<String>(r, 1)? != logged.writer),
        ("identity", col::<String>(r, 2)? != logged.by),
        ("applied_at", ms(col(r, 3)?) != logged.applied_at_ms),
        ("kind", col::<String>(r, 4)? != c.key.kind().as_str()),
        ("id", col::<String>(r, 5)? != c.key.id()),
        ("seq", col::<i64>(r, 6)? != c.seq as i64),
        ("fields", col::<Vec<String>>(r, 7)? != c.fields),
        ("field_values", values != written),
        ("deleted", col::<bool>(r, 9)? != matches!(c.op, Op::Delete)),
    ];
    Ok((logged, sent, differ.into_iter().filter(|(_, d)| *d).map(|(c, _)| c).collect()))
}

/// A record state row with its history, its columns checked against the
/// record it shows.
fn record_row(r: &Row, history: Vec<LoggedChange>) -> EvidenceRow {
    let (kind, id): (&str, &str) = (r.get(0), r.get(1));
    let name = format!("record_states {kind} {id}");
    let read = || -> Result<EvidenceRow, String> {
        let kind = kind.parse::<Kind>().map_err(|e| e.to_string())?;
        let key = RecordKey::new(kind, id).map_err(|e| e.to_string())?;
        let state = decode::<Versioned>(b"record_states.state", r.get(2)).map_err(|e| e.to_string())?;
        let shown = col::<Option<Vec<u8>>>(r, 3)?
            .map(|b| decode::<Record>(b"record_states.shown", &b))
            .transpose()
            .map_err(|e| e.to_string())?;
        if col::<Option<String>>(r, 4)?.as_deref() != shown.as_ref().map(|s| s.ward.as_str()) {
            return Err("its ward is not the owner of the record it shows (a row edited)".into());
        }
        let version = col::<i64>(r, 5)?.max(0) as u64;
        Ok(EvidenceRow::Record { key, state: Box::new(state), shown: shown.map(Box::new), version, history })
    };
    read().unwrap_or_else(|why| tampered(name, why))
}

/// What proves who made the logged change `logged` (see
/// [`crate::store::CityDb::authorship`]), from the tables that keep it.
pub(super) async fn authorship(
    store: &super::PgCityStore,
    logged: &LoggedChange,
) -> Result<Option<crate::store::Authorship>, StoreError> {
    use crate::store::Authorship;
    let change = &logged.change;
    let cursor = logged.cursor as i64;
    if change.stamp.writer == crate::model::CITY_WRITER {
        let rows = store
            .rows(
                "SELECT entry FROM office_requests WHERE cursor BETWEEN $2 AND $1 ORDER BY cursor DESC",
                &[&cursor, &(cursor + 1 - crate::model::office_request::MAX_DERIVED as i64)],
            )
            .await?;
        for r in &rows {
            let request: SignedRequest = decode(b"office_requests.entry", r.get(0))?;
            if request.cursors.contains(&logged.cursor) {
                let derived = crate::model::signed::content_hash(change, &KeyId::default());
                return Ok(Some(Authorship::Office {
                    request: Box::new(request),
                    derived,
                    city: Vec::new(),
                }));
            }
        }
        return Ok(None);
    }
    let Ok(ward) = WardCode::parse(&change.stamp.writer) else { return Ok(None) };
    if change.seq == 0 || !crate::model::signed::signs_apart(&ward, change) {
        return Ok(None);
    }
    let seq = change.seq as i64;
    let rows = store
        .rows(
            "SELECT a.signature, b.first_seq, b.hashes, b.key_id, k.cert, l.sent_context
             FROM authored_changes a
             JOIN signed_batches b ON b.ward = a.ward AND b.first_seq <= a.seq AND b.last_seq >= a.seq
             JOIN ward_keys k ON k.key_id = b.key_id
             LEFT JOIN change_log l ON l.ward = a.ward AND l.cursor = $3
             WHERE a.ward = $1 AND a.seq = $2
             LIMIT 1",
            &[&ward.as_str(), &seq, &cursor],
        )
        .await?;
    let Some(r) = rows.first() else { return Ok(None) };
    let first: i64 = r.get(1);
    let hashes: &[u8] = r.get(2);
    let at = (seq - first) as usize * 32;
    let (Some(hash), Some(key)) =
        (hashes.get(at..at + 32).and_then(hash_from), hash_from(r.get::<_, &[u8]>(3)))
    else {
        return Ok(None);
    };
    let sent = r.get::<_, Option<&[u8]>>(5).map(|s| decode(b"change_log.sent_context", s)).transpose()?;
    Ok(Some(Authorship::Ward { hash, key: KeyId(key), cert: r.get(4), signature: r.get(0), sent }))
}
