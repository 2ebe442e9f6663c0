//! The embedded store as a [`Target`] of city writes: reads from the
//! engine, writes into one atomic batch (layout in [`super::keys`]).

use super::apply::{LoggedRef, Target, WardPart};
use super::conflicts::Conflict;
use super::evidence::{Signed, WardKey};
use super::keys::{
    DISCARDED, QUARANTINE, WHOLE, authored_key, conflict_key, downstream_key, history_key, history_prefix,
    index_entries, key_key, log_key, quarantine_key, record_key, request_key, sent_key, signed_key,
    state_key, version_key,
};
use super::{Discarded, LoggedChange, MAX_HISTORY, Quarantined};
use crate::model::{OWNER, Op, Record, RecordKey, Versioned, WardCode};
use crate::store::StoreError;
use crate::store::codec::{be, decode, encode, read_be};
use crate::store::engine::{Batch, Engine, prefix_end};

/// Reads from `engine`; what is written goes into `batch`.
pub(super) struct KvTarget<'a> {
    pub(super) engine: &'a dyn Engine,
    pub(super) batch: Batch,
}

impl KvTarget<'_> {
    fn read<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StoreError> {
        self.engine.get(k)?.map(|v| decode(k, &v)).transpose()
    }
}

impl Target for KvTarget<'_> {
    fn state(&mut self, key: &RecordKey) -> Result<Option<Versioned>, StoreError> {
        self.read(&state_key(key))
    }

    fn view(&mut self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        self.read(&record_key(key))
    }

    fn version(&mut self, key: &RecordKey) -> Result<u64, StoreError> {
        let vk = version_key(key);
        Ok(self.engine.get(&vk)?.map(|v| read_be(&vk, &v)).transpose()?.unwrap_or(0))
    }

    fn conflict(&mut self, key: &RecordKey, field: &str) -> Result<Option<Conflict>, StoreError> {
        self.read(&conflict_key(key, field))
    }

    fn quarantined(&mut self, ward: &WardCode, seq: u64) -> Result<Option<Quarantined>, StoreError> {
        self.read(&quarantine_key(QUARANTINE, ward, seq))
    }

    fn ward_history(
        &mut self,
        key: &RecordKey,
        ward: &WardCode,
        since_ms: i64,
    ) -> Result<WardPart, StoreError> {
        let mut part = WardPart {
            named_owner: self.state(key)?.and_then(|s| s.owner_value()).as_deref() == Some(ward.as_str()),
            writes_since: 0,
        };
        // The record's log entries (read only for a ward writing a record
        // it does not own).
        let prefix = history_prefix(key);
        for (k, _) in self.engine.scan(&prefix, &prefix_end(&prefix), MAX_HISTORY)? {
            let lk = log_key(read_be(&k, &k[k.len() - 8..])?);
            let Some(logged) = self.read::<LoggedChange>(&lk)? else { continue };
            if logged.writer == ward.as_str() && logged.applied_at_ms >= since_ms {
                part.writes_since += 1;
            }
            if let Op::Put(r) = &logged.change.op
                && &r.ward == ward
                && logged.change.fields.iter().any(|f| f == OWNER)
            {
                part.named_owner = true;
            }
        }
        Ok(part)
    }

    fn put_state(&mut self, key: &RecordKey, state: &Versioned, _: Option<&Record>, cursor: u64) {
        self.batch.insert(state_key(key), encode(state));
        self.batch.insert(version_key(key), be(cursor).to_vec());
    }

    fn put_view(&mut self, key: &RecordKey, old: Option<&Record>, new: Option<&Record>, _: u64, _: i64) {
        let old_entries = old.map(|o| index_entries(key, o)).unwrap_or_default();
        let new_entries = new.map(|n| index_entries(key, n)).unwrap_or_default();
        for k in old_entries.iter().filter(|k| !new_entries.contains(k)) {
            self.batch.remove(k.clone());
        }
        for k in new_entries.iter().filter(|k| !old_entries.contains(k)) {
            self.batch.insert(k.clone(), Vec::new());
        }
        match new {
            Some(n) => self.batch.insert(record_key(key), encode(n)),
            None => self.batch.remove(record_key(key)),
        }
    }

    fn put_conflict(&mut self, conflict: &Conflict) {
        self.batch.insert(conflict_key(&conflict.key, &conflict.field), encode(conflict));
    }

    fn remove_conflict(&mut self, key: &RecordKey, field: &str) {
        self.batch.remove(conflict_key(key, field));
    }

    fn log(&mut self, logged: &LoggedRef) {
        self.batch.insert(log_key(logged.cursor), encode(logged));
        self.batch.insert(history_key(&logged.change.key, logged.cursor), Vec::new());
        if let Some(sent) = logged.sent_context {
            self.batch.insert(sent_key(logged.cursor), encode(sent));
        }
    }

    fn signed(&mut self, signed: &Signed) {
        let b = &signed.batch;
        self.batch.insert(signed_key(&b.ward, b.last()), encode(b));
        for (seq, signature) in &signed.authored {
            self.batch.insert(authored_key(&b.ward, *seq), signature.clone());
        }
        let k = key_key(&b.key);
        // (A read failing here only writes the certificate again.)
        if !signed.cert.is_empty() && !matches!(self.engine.get(&k), Ok(Some(_))) {
            let entry = WardKey { key: b.key, ward: b.ward.clone(), cert: signed.cert.to_vec() };
            self.batch.insert(k, encode(&entry));
        }
    }

    fn request(&mut self, request: &super::SignedRequest) {
        if let Some(first) = request.cursors.first() {
            self.batch.insert(request_key(*first), encode(request));
        }
    }

    fn relayed(&mut self, cursor: u64, evidence: &[u8]) {
        self.batch.insert(super::keys::relayed_key(cursor), evidence.to_vec());
    }

    fn downstream(&mut self, ward: &WardCode, cursor: u64, whole: bool) {
        self.batch.insert(downstream_key(ward, cursor), if whole { WHOLE.to_vec() } else { Vec::new() });
    }

    fn quarantine(&mut self, entry: &Quarantined) {
        self.batch.insert(quarantine_key(QUARANTINE, &entry.ward, entry.seq), encode(entry));
    }

    fn settle(&mut self, ward: &WardCode, seq: u64, discarded: Option<&Discarded>) {
        self.batch.remove(quarantine_key(QUARANTINE, ward, seq));
        if let Some(d) = discarded {
            self.batch.insert(quarantine_key(DISCARDED, ward, seq), encode(d));
        }
    }
}
