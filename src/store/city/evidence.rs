//! What the city keeps to prove its log: each batch as its ward signed it
//! (the link before it, every change's content hash, the key id and the
//! signature of its last link), the certificate of every key that signed
//! one, and the context a change was sent with where the city applied it
//! cut down. The log holds what the city derived (the change as applied,
//! who submitted it, when); these hold what the ward signed, so that
//! `wardsync audit verify` recomputes every logged change's content hash
//! and checks it against a signature no one but the ward could make.
//!
//! Written in the same atomic write (on PostgreSQL, the same transaction)
//! as the first application of the changes they cover; a batch the city
//! refuses whole leaves none.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Discarded, LoggedChange, Page, Quarantined};
use crate::model::signed::{self, Hash, KeyId};
use crate::model::{Change, Kind, Record, RecordKey, VersionVector, Versioned, WardCode};
use crate::store::codec::decode;
use crate::store::{StoreError, prefix_end};

/// A batch as a ward signed it (joined batches: one run of its chain whose
/// last link the ward signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBatch {
    /// The ward whose chain it is.
    pub ward: WardCode,
    /// The sequence of its first change.
    pub first: u64,
    /// The link before it.
    pub previous: Hash,
    /// Each change's content hash, in sequence order.
    pub hashes: Vec<Hash>,
    /// The key id the hashes name (the signing certificate's).
    pub key: KeyId,
    /// The ward's signature of its last link (empty under `insecure_dev`).
    pub signature: Vec<u8>,
}

impl SignedBatch {
    /// The sequence of its last change.
    pub fn last(&self) -> u64 {
        self.first + (self.hashes.len() as u64).saturating_sub(1)
    }

    /// The link of each of its changes.
    pub fn links(&self) -> Vec<Hash> {
        signed::links(&self.ward, self.first, &self.previous, &self.hashes)
    }
}

/// A batch as it arrived, with the certificate it was signed with: what a
/// write stores of it (shared by the parts of a batch applied apart).
#[derive(Debug, Clone, PartialEq)]
pub struct Signed {
    /// The batch.
    pub batch: SignedBatch,
    /// The certificate of its key, DER (empty under `insecure_dev`).
    pub cert: Arc<[u8]>,
}

/// A key that signed batches, as the city stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WardKey {
    /// Its key id.
    pub key: KeyId,
    /// The ward whose certificate it was.
    pub ward: WardCode,
    /// The certificate, DER.
    pub cert: Vec<u8>,
}

/// One row of what an audit of the log reads (see
/// [`crate::store::CityDb::evidence`]), in the order of its part.
#[derive(Debug, Clone, PartialEq)]
pub enum EvidenceRow {
    /// A key that signed batches.
    Key(WardKey),
    /// A signed batch.
    Batch(SignedBatch),
    /// A log entry, with the context its change was sent with where the
    /// city applied it cut down.
    Logged(Box<LoggedChange>, Option<VersionVector>),
    /// A ward's change the city holds apart from the log: in quarantine,
    /// or discarded from it (`None`: kept raw, not decoded).
    Held(WardCode, u64, Option<Box<Change>>),
    /// A record: its replicated state and the record it shows.
    Record(RecordKey, Option<Box<Versioned>>, Option<Box<Record>>),
    /// Where the city says its log ends: the last cursor and the log's
    /// running hash there, as every write keeps them.
    Head {
        /// The last cursor.
        cursor: u64,
        /// The running hash there.
        running: Hash,
    },
    /// A row that is not what the city wrote: unreadable, or its columns
    /// not what its encoded entry says (named by table and key).
    Tampered {
        /// The row, e.g. `change_log cursor 42`.
        row: String,
        /// What is wrong with it.
        why: String,
    },
}

/// The parts of the evidence, read in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidencePart {
    /// The keys that signed batches ([`EvidenceRow::Key`]).
    Keys,
    /// Signed batches, by ward and last sequence.
    Batches,
    /// The log, by cursor.
    Log,
    /// Changes held in quarantine or discarded, by ward and sequence.
    Held,
    /// Records, by key.
    Records,
    /// On PostgreSQL, the typed tables compared with the records they
    /// show (only [`EvidenceRow::Tampered`] rows).
    Typed,
    /// Where the log ends ([`EvidenceRow::Head`]).
    Head,
}

impl EvidencePart {
    /// Every part, in reading order.
    pub const ALL: [EvidencePart; 7] = [
        EvidencePart::Keys,
        EvidencePart::Batches,
        EvidencePart::Log,
        EvidencePart::Held,
        EvidencePart::Records,
        EvidencePart::Typed,
        EvidencePart::Head,
    ];
}

impl super::CityStore {
    /// A page of one part of the evidence (see [`crate::store::CityDb::evidence`]):
    /// the page cursor is the last engine key read.
    pub fn evidence(
        &self,
        part: EvidencePart,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<EvidenceRow>, StoreError> {
        use super::keys::{DISCARDED, KEY, LOG, QUARANTINE, RECORD, SENT, SIGNED, STATE};
        if part == EvidencePart::Head {
            let cache = self.cache.lock().expect("poisoned");
            let head = EvidenceRow::Head { cursor: cache.cursor, running: cache.running };
            return Ok(Page { items: if after.is_empty() { vec![head] } else { vec![] }, next: None });
        }
        let prefixes: &[&[u8]] = match part {
            EvidencePart::Keys => &[KEY],
            EvidencePart::Batches => &[SIGNED],
            EvidencePart::Log => &[LOG],
            EvidencePart::Held => &[DISCARDED, QUARANTINE],
            EvidencePart::Records => &[STATE],
            EvidencePart::Typed | EvidencePart::Head => &[],
        };
        let limit = limit.max(1);
        let mut rows = Vec::new();
        let mut next = None;
        for prefix in prefixes {
            if !after.is_empty() && !after.starts_with(prefix) && after > *prefix {
                continue; // a part read before the page's start
            }
            let start = if after.starts_with(prefix) { [after, b"\0"].concat() } else { prefix.to_vec() };
            for (k, v) in self.engine.scan(&start, &prefix_end(prefix), limit - rows.len())? {
                let row = |why: StoreError| EvidenceRow::Tampered {
                    row: format!("key {}", String::from_utf8_lossy(&k)),
                    why: why.to_string(),
                };
                rows.push(match part {
                    EvidencePart::Keys => decode(&k, &v).map(EvidenceRow::Key).unwrap_or_else(row),
                    EvidencePart::Batches => decode(&k, &v).map(EvidenceRow::Batch).unwrap_or_else(row),
                    EvidencePart::Log => {
                        let sent_key = [SENT, &k[LOG.len()..]].concat();
                        let sent = self.engine.get(&sent_key)?.map(|s| decode(&sent_key, &s)).transpose();
                        match (decode::<LoggedChange>(&k, &v), sent) {
                            (Ok(l), Ok(s)) => EvidenceRow::Logged(Box::new(l), s),
                            (Err(e), _) | (_, Err(e)) => row(e),
                        }
                    }
                    EvidencePart::Held if k.starts_with(QUARANTINE) => decode::<Quarantined>(&k, &v)
                        .map(|q| EvidenceRow::Held(q.ward, q.seq, q.change.map(Box::new)))
                        .unwrap_or_else(row),
                    EvidencePart::Held => decode::<Discarded>(&k, &v)
                        .map(|d| EvidenceRow::Held(d.entry.ward, d.entry.seq, d.entry.change.map(Box::new)))
                        .unwrap_or_else(row),
                    EvidencePart::Records => {
                        let record_key = [RECORD, &k[STATE.len()..]].concat();
                        let key = key_of(&k[STATE.len()..]);
                        let shown = self
                            .engine
                            .get(&record_key)?
                            .map(|r| decode::<Record>(&record_key, &r))
                            .transpose();
                        match (key, decode::<Versioned>(&k, &v), shown) {
                            (Ok(key), Ok(state), Ok(shown)) => {
                                EvidenceRow::Record(key, Some(Box::new(state)), shown.map(Box::new))
                            }
                            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => row(e),
                        }
                    }
                    EvidencePart::Typed | EvidencePart::Head => unreachable!("no prefix"),
                });
                next = Some(k);
            }
            if rows.len() >= limit {
                break;
            }
        }
        let next = if rows.len() >= limit { next } else { None };
        Ok(Page { items: rows, next })
    }
}

/// The record a key's tail names: its kind's tag and id.
fn key_of(tail: &[u8]) -> Result<RecordKey, StoreError> {
    let bad = || StoreError::Corrupt {
        key: String::from_utf8_lossy(tail).into_owned(),
        reason: "names no record".into(),
    };
    let kind = tail.first().and_then(|t| Kind::from_tag(*t)).ok_or_else(bad)?;
    RecordKey::new(kind, &String::from_utf8_lossy(&tail[1..])).map_err(|_| bad())
}
