//! What the city keeps to prove its log: each batch as its ward signed it
//! (the link before it, every change's content hash, the key id and the
//! signature of its last link), the certificate of every key that signed
//! one, and the context a change was sent with where the city applied it
//! cut down. The log holds what the city derived (the change as applied,
//! who submitted it, when); these hold what the ward signed, so that
//! `wardsync audit verify` recomputes every logged change's content hash
//! and checks it against a signature no one but the ward could make.
//!
//! Beside the changes the city writes itself, it keeps the office request
//! each came from, as the office signed it ([`SignedRequest`]); beside a
//! write by another that a ward gave back in a repair, the evidence it was
//! taken on ([`Authorship`], [`EvidenceRow::Relayed`]).
//!
//! Written in the same atomic write (on PostgreSQL, the same transaction)
//! as the first application of the changes they cover; a batch the city
//! refuses whole leaves none.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Discarded, LoggedChange, Page, Quarantined};
use crate::model::office_request::OfficeRequest;
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
    /// The ward's own signature of each of its changes to another ward's
    /// record (by sequence), apart from the batch's
    /// ([`signed::authored_message`]).
    pub authored: Vec<(u64, Vec<u8>)>,
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

/// An office request as the city took it: signed with the key of the
/// certificate its caller connected with, kept beside the changes it
/// derived (see [`crate::model::office_request`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedRequest {
    /// The request as signed.
    pub request: OfficeRequest,
    /// Who asked: the identity of the caller's certificate.
    pub by: String,
    /// The key id of that certificate.
    pub key: KeyId,
    /// The signature of the request's canonical form (empty: unsigned,
    /// from a city without TLS).
    pub signature: Vec<u8>,
    /// The caller's certificate, DER (empty without TLS).
    pub cert: Vec<u8>,
    /// The log cursors of the changes the city derived from it, in order
    /// (set as it is stored).
    pub cursors: Vec<u64>,
    /// The ward that gave the write back in a repair, the city having lost
    /// it (`None`: the city derived it from the request).
    pub relayed_by: Option<WardCode>,
}

/// What proves who made a write by another, as the city sends it with
/// the change to the ward whose record it is (which keeps it, and gives it
/// back in a repair: [`crate::city`] checks it, and the city takes a write
/// by another from a ward only on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Authorship {
    /// A ward's change to another ward's record, signed on its own by its
    /// ward: the content hash it signed (with the context as it sent it,
    /// `sent`, where the city applied it cut down), the key and its
    /// certificate, and the signature ([`signed::authored_message`]).
    Ward {
        /// The content hash signed.
        hash: Hash,
        /// The key id the hash names.
        key: KeyId,
        /// The certificate of that key, DER.
        cert: Vec<u8>,
        /// The ward's signature.
        signature: Vec<u8>,
        /// The context as the ward sent it, where the city cut it.
        sent: Option<VersionVector>,
    },
    /// The office's signed request the change was derived from, and the
    /// city's own statement that it derived this very change (its content
    /// hash as logged: stamp, context and values) from it.
    Office {
        /// The request as the office signed it.
        request: Box<SignedRequest>,
        /// The content hash of the change as the city logged it.
        derived: Hash,
        /// The city's signature of that (filled in as it is sent: see
        /// `city::receipts`).
        city: Vec<u8>,
    },
}

impl Authorship {
    /// Its encoding on the wire (opaque to wards).
    pub fn encode(&self) -> Vec<u8> {
        crate::store::codec::encode(self)
    }

    /// Reads one back from bytes a ward gave.
    pub fn decode(bytes: &[u8]) -> Result<Authorship, StoreError> {
        crate::store::codec::decode(b"authorship", bytes)
    }
}

impl SignedRequest {
    /// `asked` by `by` at `now_ms`, unsigned: as a city without TLS
    /// (`insecure_dev`) takes a request.
    pub fn unsigned(asked: crate::model::office_request::Asked, by: &str, now_ms: i64) -> SignedRequest {
        SignedRequest {
            request: OfficeRequest { id: [0; 16], signed_at_ms: now_ms, asked },
            by: by.to_string(),
            key: Default::default(),
            signature: Vec::new(),
            cert: Vec::new(),
            cursors: Vec::new(),
            relayed_by: None,
        }
    }

    /// What a change derived from it is logged as submitted by: the
    /// caller, and, for a signed request, the first 8 bytes of its id in
    /// hex ("office [request 3f2a...]"), so that the log, whose running
    /// hash covers it, names the evidence kept beside it. (A discard adds
    /// what it discards.)
    pub fn logged_by(&self) -> String {
        let by = match self.signature.is_empty() {
            true => self.by.clone(),
            false => format!("{} [{REQUEST_MARK}{}]", self.by, signed::hex(&self.request.id[..8])),
        };
        match &self.relayed_by {
            Some(ward) => format!("{by} (relayed by ward {ward})"),
            None => by,
        }
    }

    /// What each change derived from it is logged as submitted by.
    pub fn change_by(&self) -> String {
        match &self.request.asked {
            crate::model::office_request::Asked::Discard { ward, seq, .. } => {
                format!("{} (discarding ward {ward}'s change {seq})", self.logged_by())
            }
            _ => self.logged_by(),
        }
    }
}

/// How [`SignedRequest::logged_by`] names the request a change came from.
pub const REQUEST_MARK: &str = "request ";

/// How the log's `by` names a ward's change to another ward's record,
/// signed on its own, that another ward gave back in a repair (its
/// evidence kept beside it: [`EvidenceRow::Relayed`]).
pub fn relaying_by(ward: &WardCode, writer: &str) -> String {
    format!("ward {ward} ({RELAYING_MARK}{writer}'s signed change)")
}

/// What [`relaying_by`] puts in the log's `by`.
pub const RELAYING_MARK: &str = "relaying ";

/// One row of what an audit of the log reads (see [`Evidence`]), in the
/// order of its part.
#[derive(Debug, Clone, PartialEq)]
pub enum EvidenceRow {
    /// A key that signed batches.
    Key(WardKey),
    /// A signed batch.
    Batch(SignedBatch),
    /// A ward's signature of one of its changes apart from its batch.
    Authored(WardCode, u64, Vec<u8>),
    /// A log entry, with the context its change was sent with where the
    /// city applied it cut down.
    Logged(Box<LoggedChange>, Option<VersionVector>),
    /// A ward's change the city holds apart from the log: in quarantine,
    /// or discarded from it (`true`), decoded or as received (raw bytes).
    Held(WardCode, u64, Result<Box<Change>, Vec<u8>>, bool),
    /// An office request and where the changes it derived are logged.
    Request(Box<SignedRequest>),
    /// What a write by another, given back in a repair, was taken on, by
    /// the cursor of the change applied.
    Relayed(u64, Box<Authorship>),
    /// A record: its replicated state, the record it shows, the cursor of
    /// the last change to it as stored, and every log entry of it, oldest
    /// first.
    Record {
        /// The record.
        key: RecordKey,
        /// Its stored state.
        state: Box<Versioned>,
        /// The record it shows (`None`: deleted).
        shown: Option<Box<Record>>,
        /// The cursor of its last change, as stored with it.
        version: u64,
        /// Its log entries.
        history: Vec<LoggedChange>,
    },
    /// A ward's replication state.
    Ward(WardCode, Box<super::WardState>),
    /// Where the city says its log ends: the last cursor and the log's
    /// running hash there, as every write keeps them.
    Head {
        /// The last cursor.
        cursor: u64,
        /// The running hash there.
        running: Hash,
        /// The database's id (the city's receipts name it).
        city: [u8; 16],
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
    /// The signatures wards made of single changes, by ward and sequence.
    Authored,
    /// Ward states.
    Wards,
    /// The log, by cursor.
    Log,
    /// Changes held in quarantine or discarded, by ward and sequence.
    Held,
    /// Office requests, by the cursor of their first change.
    Requests,
    /// The evidence writes by others given back in repairs were taken on,
    /// by cursor.
    Relayed,
    /// Records with their history, by key.
    Records,
    /// On PostgreSQL, the typed tables compared with the records they
    /// show (only [`EvidenceRow::Tampered`] rows).
    Typed,
    /// Where the log ends ([`EvidenceRow::Head`]).
    Head,
}

impl EvidencePart {
    /// Every part, in reading order.
    pub const ALL: [EvidencePart; 11] = [
        EvidencePart::Keys,
        EvidencePart::Batches,
        EvidencePart::Authored,
        EvidencePart::Wards,
        EvidencePart::Log,
        EvidencePart::Held,
        EvidencePart::Requests,
        EvidencePart::Relayed,
        EvidencePart::Records,
        EvidencePart::Typed,
        EvidencePart::Head,
    ];
}

/// What an audit reads of a city database: every row as stored, from one
/// consistent view of it, without writing anything. Rows are never
/// trusted: one that is not what the city wrote is an
/// [`EvidenceRow::Tampered`] row naming it.
#[async_trait::async_trait]
pub trait Evidence: Send {
    /// A page of at most about `limit` rows of `part`, from `after` (empty,
    /// or the last page's `next`).
    async fn page(
        &mut self,
        part: EvidencePart,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<EvidenceRow>, StoreError>;

    /// The merge policies the records are stored as shown under.
    fn policies(&self) -> &crate::model::Policies;
}

/// The evidence of an embedded store, read from its engine (a stopped
/// city's directory, or a copy made by `wardsync backup`), which nothing
/// else writes meanwhile.
pub struct KvEvidence {
    engine: std::sync::Arc<dyn crate::store::Engine>,
    policies: crate::model::Policies,
}

impl KvEvidence {
    /// The evidence in `engine`, shown under the policies stored with it.
    pub fn open(engine: std::sync::Arc<dyn crate::store::Engine>) -> Result<KvEvidence, StoreError> {
        let policies =
            engine.get(super::keys::POLICIES)?.map(|v| decode(super::keys::POLICIES, &v)).transpose()?;
        Ok(KvEvidence { engine, policies: policies.unwrap_or_default() })
    }

    fn head(&self) -> Result<EvidenceRow, StoreError> {
        use super::keys::{CITY_ID, CURSOR, RUNNING};
        let cursor =
            self.engine.get(CURSOR)?.map(|v| crate::store::codec::read_be(CURSOR, &v)).transpose()?;
        let city = self.engine.get(CITY_ID)?.and_then(|v| v.as_slice().try_into().ok()).unwrap_or_default();
        Ok(match self.engine.get(RUNNING)?.as_deref().map(signed::hash_from) {
            Some(Some(running)) => EvidenceRow::Head { cursor: cursor.unwrap_or(0), running, city },
            _ => EvidenceRow::Tampered { row: "m:running".into(), why: "holds no running hash".into() },
        })
    }

    /// The record whose state is stored under `k`, with its history.
    fn record(&self, k: &[u8], v: &[u8]) -> Result<EvidenceRow, StoreError> {
        use super::keys::{RECORD, STATE, history_prefix, log_key, version_key};
        let key = key_of(&k[STATE.len()..])?;
        let state: Versioned = decode(k, v)?;
        let record_key = [RECORD, &k[STATE.len()..]].concat();
        let shown = self.engine.get(&record_key)?.map(|r| decode::<Record>(&record_key, &r)).transpose()?;
        let vk = version_key(&key);
        let version = self.engine.get(&vk)?.map(|v| crate::store::codec::read_be(&vk, &v)).transpose()?;
        let prefix = history_prefix(&key);
        let mut history = Vec::new();
        for (h, _) in self.engine.scan(&prefix, &prefix_end(&prefix), usize::MAX)? {
            let cursor = crate::store::codec::read_be(&h, &h[h.len() - 8..])?;
            let lk = log_key(cursor);
            match self.engine.get(&lk)? {
                Some(l) => history.push(decode::<LoggedChange>(&lk, &l)?),
                None => {
                    let why = format!("its history names log entry {cursor}, which is not in the log");
                    return Ok(EvidenceRow::Tampered { row: format!("record {key}"), why });
                }
            }
        }
        Ok(EvidenceRow::Record {
            key,
            state: Box::new(state),
            shown: shown.map(Box::new),
            version: version.unwrap_or(0),
            history,
        })
    }
}

#[async_trait::async_trait]
impl Evidence for KvEvidence {
    async fn page(
        &mut self,
        part: EvidencePart,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<EvidenceRow>, StoreError> {
        use super::keys::{AUTHORED, DISCARDED, KEY, LOG, QUARANTINE, RELAYED, REQUEST, SENT, SIGNED, STATE};
        match part {
            EvidencePart::Head => {
                let items = if after.is_empty() { vec![self.head()?] } else { vec![] };
                return Ok(Page { items, next: None });
            }
            EvidencePart::Wards => {
                let items = if after.is_empty() {
                    let wards = super::load_wards(&*self.engine)?;
                    wards.into_iter().map(|(w, s)| EvidenceRow::Ward(w, Box::new(s))).collect()
                } else {
                    vec![]
                };
                return Ok(Page { items, next: None });
            }
            _ => {}
        }
        let prefixes: &[&[u8]] = match part {
            EvidencePart::Keys => &[KEY],
            EvidencePart::Batches => &[SIGNED],
            EvidencePart::Authored => &[AUTHORED],
            EvidencePart::Log => &[LOG],
            EvidencePart::Held => &[DISCARDED, QUARANTINE],
            EvidencePart::Requests => &[REQUEST],
            EvidencePart::Relayed => &[RELAYED],
            EvidencePart::Records => &[STATE],
            EvidencePart::Typed | EvidencePart::Head | EvidencePart::Wards => &[],
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
                    EvidencePart::Authored => match super::keys::authored_of(&k) {
                        Some((ward, seq)) => EvidenceRow::Authored(ward, seq, v.to_vec()),
                        None => row(StoreError::Corrupt {
                            key: String::from_utf8_lossy(&k).into_owned(),
                            reason: "names no ward's change".into(),
                        }),
                    },
                    EvidencePart::Log => {
                        let sent_key = [SENT, &k[LOG.len()..]].concat();
                        let sent = self.engine.get(&sent_key)?.map(|s| decode(&sent_key, &s)).transpose();
                        match (decode::<LoggedChange>(&k, &v), sent) {
                            (Ok(l), Ok(s)) => EvidenceRow::Logged(Box::new(l), s),
                            (Err(e), _) | (_, Err(e)) => row(e),
                        }
                    }
                    EvidencePart::Held => {
                        let q = if k.starts_with(QUARANTINE) {
                            decode::<Quarantined>(&k, &v).map(|q| (q, false))
                        } else {
                            decode::<Discarded>(&k, &v).map(|d| (d.entry, true))
                        };
                        q.map(|(q, discarded)| held(q, discarded)).unwrap_or_else(row)
                    }
                    EvidencePart::Requests => {
                        decode(&k, &v).map(|r| EvidenceRow::Request(Box::new(r))).unwrap_or_else(row)
                    }
                    EvidencePart::Relayed => match crate::store::codec::read_be(&k, &k[RELAYED.len()..]) {
                        Ok(cursor) => Authorship::decode(&v)
                            .map(|a| EvidenceRow::Relayed(cursor, Box::new(a)))
                            .unwrap_or_else(row),
                        Err(e) => row(e),
                    },
                    EvidencePart::Records => self.record(&k, &v).unwrap_or_else(row),
                    _ => unreachable!("no prefix"),
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

    fn policies(&self) -> &crate::model::Policies {
        &self.policies
    }
}

impl super::CityStore {
    /// What proves who made the logged change `logged`, if it is a write
    /// by another that a ward may need to prove (see [`Authorship`]).
    pub fn authorship(&self, logged: &LoggedChange) -> Result<Option<Authorship>, StoreError> {
        use super::keys::{authored_key, key_key, request_key, sent_key, signed_key};
        let change = &logged.change;
        if change.stamp.writer == crate::model::CITY_WRITER {
            let first = logged.cursor.saturating_sub(crate::model::office_request::MAX_DERIVED - 1);
            for at in (first..=logged.cursor).rev() {
                let k = request_key(at);
                if let Some(v) = self.engine.get(&k)? {
                    let r: SignedRequest = decode(&k, &v)?;
                    if r.cursors.contains(&logged.cursor) {
                        let derived = signed::content_hash(change, &KeyId::default());
                        return Ok(Some(Authorship::Office {
                            request: Box::new(r),
                            derived,
                            city: Vec::new(),
                        }));
                    }
                }
            }
            return Ok(None);
        }
        let Ok(ward) = WardCode::parse(&change.stamp.writer) else { return Ok(None) };
        if change.seq == 0 || !signed::signs_apart(&ward, change) {
            return Ok(None);
        }
        let Some(signature) = self.engine.get(&authored_key(&ward, change.seq))? else { return Ok(None) };
        let from = signed_key(&ward, change.seq);
        let end = prefix_end(&crate::store::codec::key(super::keys::SIGNED, &[ward.as_str().as_bytes()]));
        let Some((k, v)) = self.engine.scan(&from, &end, 1)?.into_iter().next() else { return Ok(None) };
        let batch: SignedBatch = decode(&k, &v)?;
        let Some(hash) = change.seq.checked_sub(batch.first).and_then(|i| batch.hashes.get(i as usize))
        else {
            return Ok(None);
        };
        let kk = key_key(&batch.key);
        let Some(key) = self.engine.get(&kk)?.map(|v| decode::<WardKey>(&kk, &v)).transpose()? else {
            return Ok(None);
        };
        let sk = sent_key(logged.cursor);
        let sent = self.engine.get(&sk)?.map(|v| decode(&sk, &v)).transpose()?;
        Ok(Some(Authorship::Ward { hash: *hash, key: batch.key, cert: key.cert, signature, sent }))
    }
}

/// A quarantined change as evidence: decoded, or its bytes as received.
pub(crate) fn held(q: Quarantined, discarded: bool) -> EvidenceRow {
    EvidenceRow::Held(q.ward, q.seq, q.change.map(Box::new).ok_or(q.raw), discarded)
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
