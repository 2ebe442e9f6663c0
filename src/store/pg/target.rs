//! A PostgreSQL transaction as a [`Target`] of city writes. The shared
//! merge is synchronous, so what it may read is read ahead (the states,
//! conflicts and quarantine entries of the records the write names), and
//! what it writes is gathered and written after it, one statement per
//! table, in the same transaction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::rows::{Shown, ts, write_typed};
use super::{pg_err, sql};
use crate::model::{Kind, Policies, Record, RecordKey, Versioned, WardCode};
use crate::store::city::apply::{LoggedRef, Target, WardPart};
use crate::store::codec::{decode, encode};
use crate::store::{Conflict, Discarded, Quarantined, Signed, StoreError};

/// A record as read ahead, or as a write leaves it: its state, the record
/// it shows, its version (last cursor). Shared, not copied, with the
/// overlay handed to the next write.
#[derive(Clone)]
struct Stored {
    state: Arc<Versioned>,
    shown: Option<Arc<Record>>,
    version: u64,
}

/// The records and conflicts a write left, as [`PgTarget::overlay`] takes them.
pub(super) struct Overlay {
    records: HashMap<RecordKey, Stored>,
    conflicts: HashMap<(RecordKey, String), Option<Conflict>>,
    /// The changes it logged, per record and writer.
    writes: HashMap<(RecordKey, String), usize>,
}

/// The reads of one write, done ahead, and its writes, gathered.
#[derive(Default)]
pub(super) struct PgTarget {
    read: HashMap<RecordKey, Option<Stored>>,
    conflicts: HashMap<(RecordKey, String), Conflict>,
    quarantined: HashMap<(WardCode, u64), Quarantined>,
    /// (record, ward) pairs read ahead: the ward's part in the record.
    parts: HashMap<(RecordKey, WardCode), WardPart>,
    /// Records whose state changed: as the write leaves them (version: cursor).
    states: HashMap<RecordKey, Stored>,
    views: HashMap<RecordKey, (Option<Arc<Record>>, u64, i64)>,
    conflict_writes: HashMap<(RecordKey, String), Option<Conflict>>,
    log: Vec<LogRow>,
    downstream: BTreeMap<(WardCode, u64), bool>,
    quarantine: Vec<Quarantined>,
    settled: Vec<(WardCode, u64, Option<Discarded>)>,
    /// Batches as signed, by ward and last sequence (a batch applied in
    /// parts is stored once).
    signed: BTreeMap<(WardCode, u64), Signed>,
    /// Office requests, by the cursor of their first change.
    requests: Vec<(i64, Vec<u8>)>,
    /// The evidence relayed writes were taken on, by cursor.
    relayed: Vec<(i64, Vec<u8>)>,
}

/// One change-log row.
struct LogRow {
    cursor: i64,
    ward: String,
    identity: String,
    at_ms: i64,
    key: RecordKey,
    seq: i64,
    fields: Vec<String>,
    /// The written values as a JSON object's text.
    values: String,
    deleted: bool,
    entry: Vec<u8>,
    /// The context as sent, encoded, where the city cut it.
    sent: Option<Vec<u8>>,
}

fn not_read(what: &str) -> StoreError {
    StoreError::Io(format!("internal error: {what} was not read ahead of the write"))
}

impl PgTarget {
    /// Reads ahead the records `keys` and their open conflicts.
    pub(super) async fn read_ahead(
        &mut self,
        client: &impl GenericClient,
        keys: &[RecordKey],
    ) -> Result<(), StoreError> {
        let keys: Vec<&RecordKey> =
            keys.iter().collect::<HashSet<_>>().into_iter().filter(|k| !self.read.contains_key(*k)).collect();
        if keys.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&str> = keys.iter().map(|k| k.kind().as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.id()).collect();
        let params: [&(dyn ToSql + Sync); 2] = [&kinds, &ids];
        for k in &keys {
            self.read.insert((*k).clone(), None);
        }
        // Both at once: statements on one connection are pipelined.
        let (states, conflicts) = futures::try_join!(
            sql::query(
                client,
                "SELECT s.kind, s.id, s.state, s.shown, s.last_cursor
                 FROM unnest($1::text[], $2::text[]) AS k(kind, id)
                 JOIN record_states s ON s.kind = k.kind AND s.id = k.id",
                &params,
            ),
            sql::query(
                client,
                "SELECT c.entry FROM unnest($1::text[], $2::text[]) AS k(kind, id)
                 JOIN conflicts c ON c.kind = k.kind AND c.id = k.id",
                &params,
            ),
        )
        .map_err(pg_err)?;
        for row in states {
            let key = row_key(&row, 0, 1)?;
            let state: Versioned = decode(b"record_states.state", row.get(2))?;
            let shown: Option<Record> =
                row.get::<_, Option<&[u8]>>(3).map(|b| decode(b"record_states.shown", b)).transpose()?;
            let version = row.get::<_, i64>(4) as u64;
            self.read
                .insert(key, Some(Stored { state: Arc::new(state), shown: shown.map(Arc::new), version }));
        }
        for row in conflicts {
            let c: Conflict = decode(b"conflicts.entry", row.get(0))?;
            self.conflicts.insert((c.key.clone(), c.field.clone()), c);
        }
        Ok(())
    }

    /// Reads ahead, of each (record, ward) pair in `senders` whose record
    /// was read ahead under another owner, the ward's part in it since
    /// `since_ms` (see [`Target::ward_history`]). Only pairs of a ward
    /// writing a record it does not own are looked up: rare, and each
    /// through the log's index by record.
    pub(super) async fn read_parts(
        &mut self,
        client: &impl GenericClient,
        senders: &[(RecordKey, WardCode)],
        since_ms: i64,
    ) -> Result<(), StoreError> {
        let pairs: Vec<&(RecordKey, WardCode)> = senders
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .filter(|(k, w)| {
                self.read.get(k).is_some_and(|s| {
                    s.as_ref().is_some_and(|s| s.state.owner_value().as_deref() != Some(w.as_str()))
                })
            })
            .collect();
        if pairs.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&str> = pairs.iter().map(|(k, _)| k.kind().as_str()).collect();
        let ids: Vec<&str> = pairs.iter().map(|(k, _)| k.id()).collect();
        let wards: Vec<&str> = pairs.iter().map(|(_, w)| w.as_str()).collect();
        let since = ts(since_ms);
        let rows = sql::query(
            client,
            "SELECT k.kind, k.id, k.ward,
                    bool_or('ward' = ANY(l.fields) AND l.field_values->>'ward' = k.ward),
                    count(*) FILTER (WHERE l.ward = k.ward AND l.applied_at >= $4)
             FROM unnest($1::text[], $2::text[], $3::text[]) AS k(kind, id, ward)
             JOIN change_log l ON l.kind = k.kind AND l.id = k.id
             GROUP BY k.kind, k.id, k.ward",
            &[&kinds, &ids, &wards, &since],
        )
        .await
        .map_err(pg_err)?;
        for row in rows {
            let ward = WardCode::parse(row.get::<_, &str>(2))
                .map_err(|e| StoreError::Corrupt { key: "change_log.ward".into(), reason: e.to_string() })?;
            let part = WardPart {
                named_owner: row.get::<_, Option<bool>>(3).unwrap_or(false),
                writes_since: row.get::<_, i64>(4) as usize,
            };
            self.parts.insert((row_key(&row, 0, 1)?, ward), part);
        }
        Ok(())
    }

    /// The wards this write leaves downstream notes for.
    pub(super) fn noted(&self) -> std::collections::BTreeSet<WardCode> {
        self.downstream.keys().map(|(w, _)| w.clone()).collect()
    }

    /// Reads ahead a quarantined change; returns it.
    pub(super) async fn read_quarantined(
        &mut self,
        client: &impl GenericClient,
        ward: &WardCode,
        seq: u64,
    ) -> Result<Option<Quarantined>, StoreError> {
        let row = sql::query_opt(
            client,
            "SELECT entry FROM quarantine WHERE ward = $1 AND seq = $2 AND discarded_by IS NULL",
            &[&ward.as_str(), &(seq as i64)],
        )
        .await
        .map_err(pg_err)?;
        let q: Option<Quarantined> = row.map(|r| decode(b"quarantine.entry", r.get(0))).transpose()?;
        if let Some(q) = &q {
            self.quarantined.insert((ward.clone(), seq), q.clone());
        }
        Ok(q)
    }

    /// Writes everything gathered, every table's statement at once (they
    /// are pipelined on the connection: one round trip, not one a table).
    pub(super) async fn write(
        &self,
        client: &impl GenericClient,
        policies: &Policies,
    ) -> Result<(), StoreError> {
        futures::try_join!(
            self.write_states(client, policies),
            self.write_conflicts(client),
            self.write_log(client),
            self.write_downstream(client),
            self.write_quarantine(client),
            self.write_signed(client),
            by_cursor(client, "office_requests (cursor, entry)", &self.requests),
            by_cursor(client, "relayed_writes (cursor, evidence)", &self.relayed),
        )?;
        Ok(())
    }

    async fn write_signed(&self, client: &impl GenericClient) -> Result<(), StoreError> {
        if self.signed.is_empty() {
            return Ok(());
        }
        let b: Vec<&crate::store::SignedBatch> = self.signed.values().map(|s| &s.batch).collect();
        let wards: Vec<&str> = b.iter().map(|b| b.ward.as_str()).collect();
        let lasts: Vec<i64> = b.iter().map(|b| b.last() as i64).collect();
        let firsts: Vec<i64> = b.iter().map(|b| b.first as i64).collect();
        let previous: Vec<&[u8]> = b.iter().map(|b| &b.previous[..]).collect();
        let hashes: Vec<Vec<u8>> = b.iter().map(|b| b.hashes.concat()).collect();
        let keys: Vec<&[u8]> = b.iter().map(|b| &b.key.0[..]).collect();
        let signatures: Vec<&[u8]> = b.iter().map(|b| b.signature.as_slice()).collect();
        // A certificate once per key (under insecure_dev, none).
        let mut certs: BTreeMap<&[u8], (&str, &[u8])> = BTreeMap::new();
        for s in self.signed.values().filter(|s| !s.cert.is_empty()) {
            certs.insert(&s.batch.key.0[..], (s.batch.ward.as_str(), &s.cert[..]));
        }
        let mut authored = (Vec::new(), Vec::new(), Vec::new());
        for s in self.signed.values() {
            for (seq, signature) in &s.authored {
                authored.0.push(s.batch.ward.as_str());
                authored.1.push(*seq as i64);
                authored.2.push(signature.as_slice());
            }
        }
        let cert_keys: Vec<&[u8]> = certs.keys().copied().collect();
        let cert_wards: Vec<&str> = certs.values().map(|c| c.0).collect();
        let cert_ders: Vec<&[u8]> = certs.values().map(|c| c.1).collect();
        let (batch_params, key_params): ([&(dyn ToSql + Sync); 7], [&(dyn ToSql + Sync); 3]) = (
            [&wards, &lasts, &firsts, &previous, &hashes, &keys, &signatures],
            [&cert_keys, &cert_wards, &cert_ders],
        );
        let authored_params: [&(dyn ToSql + Sync); 3] = [&authored.0, &authored.1, &authored.2];
        futures::try_join!(
            sql::execute(
                client,
                "INSERT INTO signed_batches (ward, last_seq, first_seq, previous, hashes, key_id, signature)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[],
                                      $6::bytea[], $7::bytea[])
                 ON CONFLICT (ward, last_seq) DO NOTHING",
                &batch_params,
            ),
            sql::execute(
                client,
                "INSERT INTO ward_keys (key_id, ward, cert)
                 SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[])
                 ON CONFLICT (key_id) DO NOTHING",
                &key_params,
            ),
            sql::execute(
                client,
                "INSERT INTO authored_changes (ward, seq, signature)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])
                 ON CONFLICT (ward, seq) DO NOTHING",
                &authored_params,
            ),
        )
        .map_err(pg_err)?;
        Ok(())
    }

    async fn write_downstream(&self, client: &impl GenericClient) -> Result<(), StoreError> {
        if !self.downstream.is_empty() {
            let wards: Vec<&str> = self.downstream.keys().map(|(w, _)| w.as_str()).collect();
            let cursors: Vec<i64> = self.downstream.keys().map(|(_, c)| *c as i64).collect();
            let whole: Vec<bool> = self.downstream.values().copied().collect();
            sql::execute(
                client,
                "INSERT INTO downstream (ward, cursor, whole)
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bool[])
                     ON CONFLICT (ward, cursor) DO UPDATE SET whole = EXCLUDED.whole",
                &[&wards, &cursors, &whole],
            )
            .await
            .map_err(pg_err)?;
        }
        Ok(())
    }

    async fn write_quarantine(&self, client: &impl GenericClient) -> Result<(), StoreError> {
        for q in &self.quarantine {
            sql::execute(
                client,
                "INSERT INTO quarantine (ward, seq, reason, at, entry) VALUES ($1, $2, $3, $4, $5)",
                &[&q.ward.as_str(), &(q.seq as i64), &q.reason, &ts(q.at_ms), &encode(q)],
            )
            .await
            .map_err(pg_err)?;
        }
        for (ward, seq, discarded) in &self.settled {
            let (ward, seq) = (ward.as_str(), *seq as i64);
            match discarded {
                None => {
                    sql::execute(
                        client,
                        "DELETE FROM quarantine WHERE ward = $1 AND seq = $2",
                        &[&ward, &seq],
                    )
                    .await
                }
                Some(d) => {
                    let at = ts(d.at_ms);
                    sql::execute(
                        client,
                        "UPDATE quarantine SET discarded_by = $3, discarded_reason = $4, discarded_at = $5
                             WHERE ward = $1 AND seq = $2",
                        &[&ward, &seq, &d.by, &d.reason, &at],
                    )
                    .await
                }
            }
            .map_err(pg_err)?;
        }
        Ok(())
    }

    /// Every record whose state or view this write changed, as it stands
    /// after it: state, shown record, version (last cursor), at-time.
    fn last(&self) -> BTreeMap<&RecordKey, (Stored, i64)> {
        let mut last = BTreeMap::new();
        for (key, stored) in &self.states {
            last.insert(key, (stored.clone(), 0));
        }
        for (key, (shown, cursor, at_ms)) in &self.views {
            let e = last.entry(key).or_insert_with(|| {
                let s = self.read.get(key).cloned().flatten();
                let state = s.as_ref().map_or_else(Arc::default, |s| s.state.clone());
                (Stored { state, shown: None, version: s.map_or(*cursor, |s| s.version) }, *at_ms)
            });
            e.0.shown = shown.clone();
            e.1 = *at_ms;
        }
        last
    }

    /// What this write leaves in the records and conflicts it wrote, for a
    /// write merged over a snapshot taken before this one committed.
    pub(super) fn overlay(&self) -> Overlay {
        let records = self.last().into_iter().map(|(k, (stored, _))| (k.clone(), stored)).collect();
        let mut writes = HashMap::new();
        for row in &self.log {
            *writes.entry((row.key.clone(), row.ward.clone())).or_default() += 1;
        }
        Overlay { records, conflicts: self.conflict_writes.clone(), writes }
    }

    /// Counts the changes `overlay` logged in the wards' parts read ahead
    /// (a snapshot taken before that write committed lacks them: without
    /// them, two groups in flight would each allow a ward its day's
    /// registrations on a citizen).
    pub(super) fn lay_writes(&mut self, overlay: &Overlay) {
        for (pair, part) in &mut self.parts {
            part.writes_since +=
                overlay.writes.get(&(pair.0.clone(), pair.1.to_string())).copied().unwrap_or(0);
        }
    }

    /// Lays `overlay` over what was read: the records and conflicts as an
    /// earlier write left them.
    pub(super) fn lay(&mut self, overlay: &Overlay) {
        for (key, stored) in &overlay.records {
            if let Some(read) = self.read.get_mut(key) {
                *read = Some(stored.clone());
            }
        }
        for ((key, field), c) in &overlay.conflicts {
            if !self.read.contains_key(key) {
                continue;
            }
            let at = (key.clone(), field.clone());
            match c {
                Some(c) => self.conflicts.insert(at, c.clone()),
                None => self.conflicts.remove(&at),
            };
        }
    }

    /// The records' states, what they show, and the office's typed rows.
    async fn write_states(&self, client: &impl GenericClient, policies: &Policies) -> Result<(), StoreError> {
        let last = self.last();
        if last.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&str> = last.keys().map(|k| k.kind().as_str()).collect();
        let ids: Vec<&str> = last.keys().map(|k| k.id()).collect();
        let states: Vec<Vec<u8>> = last.values().map(|(s, _)| encode(&*s.state)).collect();
        let shown: Vec<Option<Vec<u8>>> =
            last.values().map(|(s, _)| s.shown.as_deref().map(encode)).collect();
        let wards: Vec<Option<&str>> =
            last.values().map(|(s, _)| s.shown.as_ref().map(|r| r.ward.as_str())).collect();
        let cursors: Vec<i64> = last.values().map(|(s, _)| s.version as i64).collect();
        let states_written = async {
            sql::execute(
                client,
                "INSERT INTO record_states (kind, id, state, shown, ward, last_cursor)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], $6::bigint[])
                 ON CONFLICT (kind, id) DO UPDATE SET state = EXCLUDED.state, shown = EXCLUDED.shown,
                     ward = EXCLUDED.ward, last_cursor = EXCLUDED.last_cursor",
                &[&kinds, &ids, &states, &shown, &wards, &cursors],
            )
            .await
            .map_err(pg_err)
        };
        // The at-time of a state change is that of its log entry.
        let at_of: HashMap<&RecordKey, i64> = self.log.iter().map(|l| (&l.key, l.at_ms)).collect();
        let mut typed: Vec<(Kind, Vec<&str>, Vec<Shown>)> = Vec::new();
        for kind in Kind::ALL {
            let mut deleted = Vec::new();
            let mut rows = Vec::new();
            for (key, (stored, at_ms)) in last.iter().filter(|(k, _)| k.kind() == kind) {
                match &stored.shown {
                    None => deleted.push(key.id()),
                    Some(record) => rows.push(Shown {
                        key,
                        record,
                        disputed: stored.state.disputed(kind, policies),
                        cursor: stored.version,
                        at_ms: at_of.get(key).copied().unwrap_or(*at_ms),
                    }),
                }
            }
            typed.push((kind, deleted, rows));
        }
        let typed_written = futures::future::try_join_all(
            typed.iter().map(|(kind, deleted, rows)| write_typed(client, *kind, deleted, rows)),
        );
        futures::try_join!(states_written, typed_written)?;
        Ok(())
    }

    async fn write_conflicts(&self, client: &impl GenericClient) -> Result<(), StoreError> {
        let (gone, open): (Vec<_>, Vec<_>) = self.conflict_writes.iter().partition(|(_, c)| c.is_none());
        if !gone.is_empty() {
            let kinds: Vec<&str> = gone.iter().map(|((k, _), _)| k.kind().as_str()).collect();
            let ids: Vec<&str> = gone.iter().map(|((k, _), _)| k.id()).collect();
            let fields: Vec<&str> = gone.iter().map(|((_, f), _)| f.as_str()).collect();
            sql::execute(
                client,
                "DELETE FROM conflicts c USING unnest($1::text[], $2::text[], $3::text[]) AS g(kind, id, field)
                 WHERE c.kind = g.kind AND c.id = g.id AND c.field = g.field",
                &[&kinds, &ids, &fields],
            )
            .await
            .map_err(pg_err)?;
        }
        let open: Vec<&Conflict> = open.into_iter().filter_map(|(_, c)| c.as_ref()).collect();
        if open.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&str> = open.iter().map(|c| c.key.kind().as_str()).collect();
        let ids: Vec<&str> = open.iter().map(|c| c.key.id()).collect();
        let fields: Vec<&str> = open.iter().map(|c| c.field.as_str()).collect();
        let owners: Vec<&str> = open.iter().map(|c| c.owner.as_str()).collect();
        let policies: Vec<String> = open.iter().map(|c| format!("{:?}", c.policy).to_lowercase()).collect();
        let contenders: Vec<serde_json::Value> =
            open.iter().map(|c| serde_json::to_value(&c.contenders).expect("contenders serialize")).collect();
        let opened: Vec<_> = open.iter().map(|c| ts(c.opened_at_ms)).collect();
        let updated: Vec<_> = open.iter().map(|c| ts(c.updated_at_ms)).collect();
        let entries: Vec<Vec<u8>> = open.iter().map(|c| encode(*c)).collect();
        sql::execute(
            client,
            "INSERT INTO conflicts (kind, id, field, owner, policy, contenders, opened_at, updated_at, entry)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
                                      $7::timestamptz[], $8::timestamptz[], $9::bytea[])
                 ON CONFLICT (kind, id, field) DO UPDATE SET owner = EXCLUDED.owner, policy = EXCLUDED.policy,
                     contenders = EXCLUDED.contenders, opened_at = EXCLUDED.opened_at,
                     updated_at = EXCLUDED.updated_at, entry = EXCLUDED.entry",
            &[&kinds, &ids, &fields, &owners, &policies, &contenders, &opened, &updated, &entries],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn write_log(&self, client: &impl GenericClient) -> Result<(), StoreError> {
        if self.log.is_empty() {
            return Ok(());
        }
        let l = &self.log;
        let cursors: Vec<i64> = l.iter().map(|r| r.cursor).collect();
        let wards: Vec<&str> = l.iter().map(|r| r.ward.as_str()).collect();
        let identities: Vec<&str> = l.iter().map(|r| r.identity.as_str()).collect();
        let at: Vec<_> = l.iter().map(|r| ts(r.at_ms)).collect();
        let kinds: Vec<&str> = l.iter().map(|r| r.key.kind().as_str()).collect();
        let ids: Vec<&str> = l.iter().map(|r| r.key.id()).collect();
        let seqs: Vec<i64> = l.iter().map(|r| r.seq).collect();
        let fields: Vec<String> = l.iter().map(|r| super::rows::joined(&r.fields)).collect();
        let values: Vec<&str> = l.iter().map(|r| r.values.as_str()).collect();
        let deleted: Vec<bool> = l.iter().map(|r| r.deleted).collect();
        let entries: Vec<&[u8]> = l.iter().map(|r| r.entry.as_slice()).collect();
        let sent: Vec<Option<&[u8]>> = l.iter().map(|r| r.sent.as_deref()).collect();
        let sql = format!(
            "INSERT INTO change_log (cursor, ward, identity, applied_at, kind, id, seq, fields,
                                     field_values, deleted, entry, sent_context)
             SELECT c, w, i, a, k, d, s, {split_f}, v::jsonb, x, e, sc
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                         $7::bigint[], $8::text[], $9::text[], $10::bool[], $11::bytea[], $12::bytea[])
                  AS t(c, w, i, a, k, d, s, f, v, x, e, sc)",
            split_f = super::rows::split("f")
        );
        sql::execute(
            client,
            &sql,
            &[
                &cursors,
                &wards,
                &identities,
                &at,
                &kinds,
                &ids,
                &seqs,
                &fields,
                &values,
                &deleted,
                &entries,
                &sent,
            ],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }
}

/// Field values (each JSON text, as [`crate::model::flatten`] makes them)
/// as the text of one JSON object, without parsing them into values and
/// writing them out again; a value that is not JSON is kept as a string.
pub(super) fn json_object(values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(values.iter().map(|(f, v)| f.len() + v.len() + 4).sum::<usize>() + 2);
    out.push('{');
    for (i, (field, value)) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(field).expect("strings serialize"));
        out.push(':');
        if serde_json::from_str::<serde::de::IgnoredAny>(value).is_ok() {
            out.push_str(value);
        } else {
            out.push_str(&serde_json::to_string(value).expect("strings serialize"));
        }
    }
    out.push('}');
    out
}

/// The record key in columns `kind` and `id` of a row.
pub(super) fn row_key(row: &tokio_postgres::Row, kind: usize, id: usize) -> Result<RecordKey, StoreError> {
    let (k, i): (&str, &str) = (row.get(kind), row.get(id));
    let corrupt = |reason: String| StoreError::Corrupt { key: format!("{k}/{i}"), reason };
    RecordKey::new(k.parse::<Kind>().map_err(corrupt)?, i).map_err(|e| corrupt(e.to_string()))
}

/// Inserts `rows` (a log cursor, encoded evidence) into `table` (its name
/// and those two columns): office requests, relayed writes' evidence.
async fn by_cursor(
    client: &impl GenericClient,
    table: &str,
    rows: &[(i64, Vec<u8>)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let cursors: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let entries: Vec<&[u8]> = rows.iter().map(|r| r.1.as_slice()).collect();
    let statement = format!("INSERT INTO {table} SELECT * FROM unnest($1::bigint[], $2::bytea[])");
    sql::execute(client, &statement, &[&cursors, &entries]).await.map_err(pg_err)?;
    Ok(())
}

impl Target for PgTarget {
    fn state(&mut self, key: &RecordKey) -> Result<Option<Versioned>, StoreError> {
        match self.read.get(key) {
            Some(s) => Ok(s.as_ref().map(|s| (*s.state).clone())),
            None => Err(not_read(&format!("the state of {key}"))),
        }
    }

    fn view(&mut self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        match self.read.get(key) {
            Some(s) => Ok(s.as_ref().and_then(|s| s.shown.as_deref().cloned())),
            None => Err(not_read(&format!("the record {key}"))),
        }
    }

    fn version(&mut self, key: &RecordKey) -> Result<u64, StoreError> {
        match self.read.get(key) {
            Some(s) => Ok(s.as_ref().map_or(0, |s| s.version)),
            None => Err(not_read(&format!("the version of {key}"))),
        }
    }

    fn conflict(&mut self, key: &RecordKey, field: &str) -> Result<Option<Conflict>, StoreError> {
        if !self.read.contains_key(key) {
            return Err(not_read(&format!("the conflicts of {key}")));
        }
        Ok(self.conflicts.get(&(key.clone(), field.to_string())).cloned())
    }

    fn quarantined(&mut self, ward: &WardCode, seq: u64) -> Result<Option<Quarantined>, StoreError> {
        Ok(self.quarantined.get(&(ward.clone(), seq)).cloned())
    }

    fn holds_read(&self, key: &RecordKey) -> bool {
        self.read.contains_key(key)
    }

    fn ward_history(&mut self, key: &RecordKey, ward: &WardCode, _: i64) -> Result<WardPart, StoreError> {
        let stored = self.read.get(key).and_then(|s| s.as_ref()).and_then(|s| s.state.owner_value());
        let mut part = self.parts.get(&(key.clone(), ward.clone())).copied().unwrap_or_default();
        part.named_owner |= stored.as_deref() == Some(ward.as_str());
        Ok(part)
    }

    fn put_state(&mut self, key: &RecordKey, state: &Versioned, shown: Option<&Record>, cursor: u64) {
        let stored =
            Stored { state: Arc::new(state.clone()), shown: shown.cloned().map(Arc::new), version: cursor };
        self.states.insert(key.clone(), stored);
        self.views.remove(key);
    }

    fn put_view(
        &mut self,
        key: &RecordKey,
        _: Option<&Record>,
        new: Option<&Record>,
        cursor: u64,
        at_ms: i64,
    ) {
        match self.states.get_mut(key) {
            Some(s) => s.shown = new.cloned().map(Arc::new),
            None => {
                self.views.insert(key.clone(), (new.cloned().map(Arc::new), cursor, at_ms));
            }
        }
    }

    fn put_conflict(&mut self, conflict: &Conflict) {
        self.conflict_writes.insert((conflict.key.clone(), conflict.field.clone()), Some(conflict.clone()));
    }

    fn remove_conflict(&mut self, key: &RecordKey, field: &str) {
        self.conflict_writes.insert((key.clone(), field.to_string()), None);
    }

    fn log(&mut self, logged: &LoggedRef) {
        let change = logged.change;
        self.log.push(LogRow {
            cursor: logged.cursor as i64,
            ward: logged.writer.to_string(),
            identity: logged.by.to_string(),
            at_ms: logged.applied_at_ms,
            key: change.key.clone(),
            seq: change.seq as i64,
            fields: change.fields.clone(),
            values: json_object(logged.values),
            deleted: matches!(change.op, crate::model::Op::Delete),
            entry: encode(logged),
            sent: logged.sent_context.map(encode),
        });
    }

    fn signed(&mut self, signed: &Signed) {
        let b = &signed.batch;
        self.signed.entry((b.ward.clone(), b.last())).or_insert_with(|| signed.clone());
    }

    fn request(&mut self, request: &crate::store::SignedRequest) {
        if let Some(first) = request.cursors.first() {
            self.requests.push((*first as i64, encode(request)));
        }
    }

    fn relayed(&mut self, cursor: u64, evidence: &[u8]) {
        self.relayed.push((cursor as i64, evidence.to_vec()));
    }

    fn downstream(&mut self, ward: &WardCode, cursor: u64, whole: bool) {
        self.downstream.insert((ward.clone(), cursor), whole);
    }

    fn quarantine(&mut self, entry: &Quarantined) {
        self.quarantine.push(entry.clone());
    }

    fn settle(&mut self, ward: &WardCode, seq: u64, discarded: Option<&Discarded>) {
        self.settled.push((ward.clone(), seq, discarded.cloned()));
    }
}
