//! Key layout of the city store (one sled tree):
//!
//! - `r<tag><id>`                 → current [`Record`];
//! - `v<tag><id>`                 → cursor of the last change applied to the key
//!   (kept after a delete, so an old quarantined change cannot resurrect it);
//! - `x<ward><tag><id>`           → index by owning ward;
//! - `h<household>\0<id>`          → index of citizens by household;
//! - `o<owner id>\0<tag><id>`      → index of businesses and parcels by owner;
//! - `n<folded name>\0<tag><id>`   → diacritics-insensitive name index;
//! - `l<cursor: u64 BE>`          → [`super::LoggedChange`]: the change log;
//! - `K<tag><id>\0<cursor: u64 BE>` → (empty) index of the log by record (history);
//! - `w<ward>`                    → [`super::WardState`];
//! - `L<ward>`                    → [`super::Loss`]: acknowledged changes the city lost;
//! - `B<ward>`                    → [`super::Budget`]: its changes to other wards' records today;
//! - `U<ward>`                    → (u64 BE) the last sequence its numbering moved past on its word;
//! - `C<ward>`                    → [`super::Chain`]: its chain as applied, and the forks found;
//! - `q<ward><seq: u64 BE>`       → [`super::Quarantined`];
//! - `d<ward><seq: u64 BE>`       → [`super::Discarded`];
//! - `s<tag><id>`                 → the record's replicated state (`Versioned`);
//! - `c<tag><id>\0<field>`         → an open [`super::Conflict`];
//! - `D<ward><cursor: u64 BE>`     → a change made elsewhere that concerns the ward (downstream);
//! - `A<ms: u64 BE><n: u64 BE>`   → a denied call ([`super::Denial`]);
//! - `E<ward><last seq: u64 BE>`  → a batch as its ward signed it ([`super::SignedBatch`]);
//! - `G<ward><seq: u64 BE>`      → the ward's own signature of its change `seq` to another ward's record;
//! - `k<key id: 32 bytes>`        → a key that signed batches, with its certificate ([`super::WardKey`]);
//! - `X<cursor: u64 BE>`          → the context the change logged at `cursor` was sent with, where cut;
//! - `O<cursor: u64 BE>`          → the office request whose first change is logged at `cursor` ([`super::SignedRequest`]);
//! - `m:cursor`                   → highest cursor assigned;
//! - `m:hlc`                      → the city's hybrid clock;
//! - `m:running`                  → the log's running hash at `m:cursor`;
//! - `m:city`                     → the database's id (16 random bytes, made once);
//! - `m:policies`                 → the merge policies the records are shown under.

use crate::model::{Body, Record, RecordKey, WardCode, fold};
use crate::store::codec::{be, key};

pub(super) const RECORD: &[u8] = b"r";
pub(super) const VERSION: &[u8] = b"v";
pub(super) const BY_WARD: &[u8] = b"x";
pub(super) const BY_HOUSEHOLD: &[u8] = b"h";
pub(super) const BY_OWNER: &[u8] = b"o";
pub(super) const BY_NAME: &[u8] = b"n";
pub(super) const LOG: &[u8] = b"l";
pub(super) const WARD: &[u8] = b"w";
pub(super) const LOSS: &[u8] = b"L";
pub(super) const BUDGET: &[u8] = b"B";
pub(super) const UNPROVEN: &[u8] = b"U";
pub(super) const CHAIN: &[u8] = b"C";
pub(super) const QUARANTINE: &[u8] = b"q";
pub(super) const DISCARDED: &[u8] = b"d";
pub(super) const CURSOR: &[u8] = b"m:cursor";
pub(super) const AUDIT: &[u8] = b"A";
pub(super) const HLC: &[u8] = b"m:hlc";
pub(super) const RUNNING: &[u8] = b"m:running";
pub(super) const CITY_ID: &[u8] = b"m:city";
pub(super) const POLICIES: &[u8] = b"m:policies";
pub(super) const STATE: &[u8] = b"s";
pub(super) const CONFLICT: &[u8] = b"c";
pub(super) const DOWNSTREAM: &[u8] = b"D";
pub(super) const HISTORY: &[u8] = b"K";
pub(super) const SIGNED: &[u8] = b"E";
pub(super) const KEY: &[u8] = b"k";
pub(super) const SENT: &[u8] = b"X";
pub(super) const REQUEST: &[u8] = b"O";
pub(super) const AUTHORED: &[u8] = b"G";
pub(super) const RELAYED: &[u8] = b"R";
/// The value of a downstream note telling the ward to fetch the record whole.
pub(super) const WHOLE: &[u8] = b"w";

pub(super) fn record_key(k: &RecordKey) -> Vec<u8> {
    key(RECORD, &[&[k.kind().tag()], k.id().as_bytes()])
}

pub(super) fn state_key(k: &RecordKey) -> Vec<u8> {
    key(STATE, &[&[k.kind().tag()], k.id().as_bytes()])
}

pub(super) fn conflict_key(k: &RecordKey, field: &str) -> Vec<u8> {
    key(CONFLICT, &[&[k.kind().tag()], k.id().as_bytes(), b"\0", field.as_bytes()])
}

/// The history index entry of the change at `cursor` to `k`.
pub(super) fn history_key(k: &RecordKey, cursor: u64) -> Vec<u8> {
    let mut out = history_prefix(k);
    out.extend_from_slice(&be(cursor));
    out
}

/// The prefix of every history index entry of `k`.
pub(super) fn history_prefix(k: &RecordKey) -> Vec<u8> {
    key(HISTORY, &[&[k.kind().tag()], k.id().as_bytes(), b"\0"])
}

/// Where a batch of `ward`'s ending at `last` is kept as signed.
pub(super) fn signed_key(ward: &WardCode, last: u64) -> Vec<u8> {
    key(SIGNED, &[ward.as_str().as_bytes(), &be(last)])
}

/// Where the key `id` is kept.
pub(super) fn key_key(id: &crate::model::signed::KeyId) -> Vec<u8> {
    key(KEY, &[&id.0])
}

/// Where the context of the change logged at `cursor` is kept as sent.
pub(super) fn sent_key(cursor: u64) -> Vec<u8> {
    key(SENT, &[&be(cursor)])
}

/// Where a ward's own signature of its change `seq` is kept.
pub(super) fn authored_key(ward: &WardCode, seq: u64) -> Vec<u8> {
    key(AUTHORED, &[ward.as_str().as_bytes(), &be(seq)])
}

/// The ward and sequence an [`authored_key`] names.
pub(super) fn authored_of(k: &[u8]) -> Option<(WardCode, u64)> {
    let tail = k.strip_prefix(AUTHORED)?;
    let (ward, seq) = tail.split_at_checked(tail.len().checked_sub(8)?)?;
    Some((WardCode::parse(std::str::from_utf8(ward).ok()?).ok()?, u64::from_be_bytes(seq.try_into().ok()?)))
}

/// Where the office request whose first change is logged at `cursor` is kept.
pub(super) fn request_key(cursor: u64) -> Vec<u8> {
    key(REQUEST, &[&be(cursor)])
}

/// Where the evidence a relayed write was taken on is kept, by its cursor.
pub(super) fn relayed_key(cursor: u64) -> Vec<u8> {
    key(RELAYED, &[&be(cursor)])
}

pub(super) fn downstream_key(ward: &WardCode, cursor: u64) -> Vec<u8> {
    key(DOWNSTREAM, &[ward.as_str().as_bytes(), &be(cursor)])
}

pub(super) fn version_key(k: &RecordKey) -> Vec<u8> {
    key(VERSION, &[&[k.kind().tag()], k.id().as_bytes()])
}

pub(super) fn ward_key(ward: &WardCode) -> Vec<u8> {
    key(WARD, &[ward.as_str().as_bytes()])
}

pub(super) fn log_key(cursor: u64) -> Vec<u8> {
    key(LOG, &[&be(cursor)])
}

pub(super) fn loss_key(ward: &WardCode) -> Vec<u8> {
    key(LOSS, &[ward.as_str().as_bytes()])
}

pub(super) fn budget_key(ward: &WardCode) -> Vec<u8> {
    key(BUDGET, &[ward.as_str().as_bytes()])
}

pub(super) fn unproven_key(ward: &WardCode) -> Vec<u8> {
    key(UNPROVEN, &[ward.as_str().as_bytes()])
}

pub(super) fn chain_key(ward: &WardCode) -> Vec<u8> {
    key(CHAIN, &[ward.as_str().as_bytes()])
}

pub(super) fn quarantine_key(prefix: &[u8], ward: &WardCode, seq: u64) -> Vec<u8> {
    key(prefix, &[ward.as_str().as_bytes(), &be(seq)])
}

/// The tag and id at the end of an index key whose variable part ends in `\0`.
pub(super) fn tail_after_nul(k: &[u8]) -> &[u8] {
    k.iter().rposition(|b| *b == 0).map_or(&[][..], |i| &k[i + 1..])
}

/// Every index entry `record` (stored under `k`) has.
pub(super) fn index_entries(k: &RecordKey, record: &Record) -> Vec<Vec<u8>> {
    let tag_id = key(&[k.kind().tag()], &[k.id().as_bytes()]);
    let mut out = vec![key(BY_WARD, &[record.ward.as_str().as_bytes(), &tag_id])];
    if let Body::Citizen(c) = &record.body
        && !c.household_id.is_empty()
    {
        out.push(key(BY_HOUSEHOLD, &[c.household_id.as_bytes(), b"\0", k.id().as_bytes()]));
    }
    for owner in record.owner_ids() {
        if !owner.is_empty() {
            out.push(key(BY_OWNER, &[owner.as_bytes(), b"\0", &tag_id]));
        }
    }
    if let Some(name) = record.name() {
        out.push(key(BY_NAME, &[fold(name).as_bytes(), b"\0", &tag_id]));
    }
    out
}
