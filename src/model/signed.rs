//! What a ward signs of its changes: a canonical form of each change, its
//! hash, and the chain of links that ties a ward's changes together in
//! sequence order (issue 30's "what is signed").
//!
//! The form is this module's own, never re-encoded protobuf (a round trip
//! drops unknown fields and defaults, and the city cuts contexts): a domain
//! tag and format version, the signer's key id, the record key, the stamp,
//! the context as the writer sent it, the operation and the values it
//! writes, sorted by field (each the model's JSON text of the field, as
//! [`Change::values`] gives it). Not the sequence number, nor any time the
//! city adds: renumbering an outbox never changes a change's hash. Every
//! variable-length item is its length (4 bytes, big-endian) and its bytes;
//! numbers are big-endian. The link of sequence `seq` is
//! `SHA-256(LINK_TAG, ward, seq, previous link, content hash)`, computed
//! when the change is sent. A batch is signed once, over the link of its
//! last change ([`batch_message`]).

use ring::digest::{SHA256, digest};

use super::{Change, Op, WardCode};

/// Starts the canonical form of a change.
pub const CHANGE_TAG: &[u8] = b"wardsync/change";

/// Starts the input of a link.
pub const LINK_TAG: &[u8] = b"wardsync/link";

/// The version of the canonical form.
pub const FORMAT: u8 = 1;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The link before a ward's first change.
pub const GENESIS: Hash = [0; 32];

/// Identifies the key a change is signed with: the SHA-256 of its
/// certificate's public key (SubjectPublicKeyInfo, DER); all zero for a
/// node without a certificate (`insecure_dev`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyId(pub Hash);

/// Appends `bytes` as an item: its length (4 bytes, big-endian), then itself.
pub(crate) fn item(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

/// Appends a clock: its wall time (8 bytes) and logical count (4), big-endian.
pub(crate) fn clock(buf: &mut Vec<u8>, wall_ms: u64, logical: u32) {
    buf.extend_from_slice(&wall_ms.to_be_bytes());
    buf.extend_from_slice(&logical.to_be_bytes());
}

/// Appends a version vector: its count (4 bytes), then each writer and clock.
pub(crate) fn vector(buf: &mut Vec<u8>, v: &super::VersionVector) {
    buf.extend_from_slice(&(v.0.len() as u32).to_be_bytes());
    for (writer, hlc) in &v.0 {
        item(buf, writer.as_bytes());
        clock(buf, hlc.wall_ms, hlc.logical);
    }
}

/// The canonical form of `change` as `signer` signs it.
pub fn content(change: &Change, signer: &KeyId) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    item(&mut buf, CHANGE_TAG);
    buf.push(FORMAT);
    buf.extend_from_slice(&signer.0);
    item(&mut buf, change.key.kind().as_str().as_bytes());
    item(&mut buf, change.key.id().as_bytes());
    clock(&mut buf, change.stamp.hlc.wall_ms, change.stamp.hlc.logical);
    item(&mut buf, change.stamp.writer.as_bytes());
    vector(&mut buf, &change.context);
    buf.push(match change.op {
        Op::Put(_) => 1,
        Op::Delete => 2,
    });
    let values = change.values();
    buf.extend_from_slice(&(values.len() as u32).to_be_bytes());
    for (field, value) in &values {
        item(&mut buf, field.as_bytes());
        item(&mut buf, value.as_bytes());
    }
    buf
}

/// The hash of a change's canonical form.
pub fn content_hash(change: &Change, signer: &KeyId) -> Hash {
    sha256(&content(change, signer))
}

/// The link of `ward`'s change `seq` whose content hash is `content`,
/// after the link `previous` ([`GENESIS`] before the first).
pub fn link(ward: &WardCode, seq: u64, previous: &Hash, content: &Hash) -> Hash {
    let mut buf = Vec::with_capacity(LINK_TAG.len() + 4 + 5 + 4 + 8 + 64);
    item(&mut buf, LINK_TAG);
    item(&mut buf, ward.as_str().as_bytes());
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(previous);
    buf.extend_from_slice(content);
    sha256(&buf)
}

/// The links of a ward's changes numbered from `first_seq`, in order,
/// whose content hashes are `hashes`, after the link `previous`.
pub fn links(ward: &WardCode, first_seq: u64, previous: &Hash, hashes: &[Hash]) -> Vec<Hash> {
    let mut out: Vec<Hash> = Vec::with_capacity(hashes.len());
    for (i, h) in hashes.iter().enumerate() {
        let before = out.last().unwrap_or(previous);
        out.push(link(ward, first_seq + i as u64, before, h));
    }
    out
}

/// Starts what a ward signs for a batch.
pub const BATCH_TAG: &[u8] = b"wardsync/batch";

/// What a ward signs for a batch: the link of its last change (which
/// names the ward, the sequence, and through the links before it every
/// change of the chain), under its own tag.
pub fn batch_message(last_link: &Hash) -> Vec<u8> {
    let mut buf = Vec::with_capacity(BATCH_TAG.len() + 4 + 32);
    item(&mut buf, BATCH_TAG);
    buf.extend_from_slice(last_link);
    buf
}

/// Starts what a ward signs of one change of its own to another ward's
/// record (a registration), apart from its batch: so that whoever holds
/// the change (the record's ward) can prove who made it.
pub const AUTHORED_TAG: &[u8] = b"wardsync/authored";

/// What a ward signs of one change whose content hash is `content`.
pub fn authored_message(content: &Hash) -> Vec<u8> {
    let mut buf = Vec::with_capacity(AUTHORED_TAG.len() + 4 + 32);
    item(&mut buf, AUTHORED_TAG);
    buf.extend_from_slice(content);
    buf
}

/// True for a change a ward signs apart from its batch (see
/// [`authored_message`]): a put naming another ward as the record's owner.
pub fn signs_apart(ward: &WardCode, change: &Change) -> bool {
    matches!(&change.op, Op::Put(r) if &r.ward != ward)
}

/// Starts the input of the log's running hash.
pub const LOG_TAG: &[u8] = b"wardsync/log";

/// The city log's running hash after the entry at `cursor`, following
/// `previous` ([`GENESIS`] before the first): what the city derived of a
/// change (who wrote and submitted it, when it applied it) and the content
/// of the change as applied, hashed with no signer's key id.
pub fn log_link(
    previous: &Hash,
    cursor: u64,
    writer: &str,
    by: &str,
    applied_at_ms: i64,
    content: &Hash,
) -> Hash {
    let mut buf = Vec::with_capacity(LOG_TAG.len() + 96 + writer.len() + by.len());
    item(&mut buf, LOG_TAG);
    buf.extend_from_slice(previous);
    buf.extend_from_slice(&cursor.to_be_bytes());
    item(&mut buf, writer.as_bytes());
    item(&mut buf, by.as_bytes());
    buf.extend_from_slice(&applied_at_ms.to_be_bytes());
    buf.extend_from_slice(content);
    sha256(&buf)
}

/// A hash from bytes a peer sent: exactly 32 of them.
pub fn hash_from(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

/// Bytes as lower-case hexadecimal (how hashes, keys and receipts are shown).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes `text` spells in hexadecimal, if it is hexadecimal.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len() / 2).map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> Hash {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, Record, RecordKey, Stamp, VersionVector, flatten};

    /// A fixed change: the golden vectors below are its hashes.
    fn golden() -> (Change, KeyId) {
        let record: Record = serde_json::from_str(
            r#"{"ward":"00082","body":{"citizen":{
              "personal_id":"001085012345","full_name":"Nguyễn Văn An","date_of_birth":"1985-03-02",
              "sex":"male","ethnicity":"Kinh","nationality":"VN","household_id":"HK-00082-000001",
              "relationship_to_head":"head","marital_status":"single",
              "permanent_residence":{"address":"12 Hàng Bông","commune_code":"00082"}}}}"#,
        )
        .unwrap();
        let mut context = VersionVector::default();
        context.add(&Stamp { hlc: Hlc { wall_ms: 1_795_305_600_000, logical: 2 }, writer: "00082".into() });
        context.add(&Stamp { hlc: Hlc { wall_ms: 1_795_305_500_000, logical: 0 }, writer: "city".into() });
        let change = Change {
            seq: 7,
            written_at_ms: 1_795_305_700_000,
            key: RecordKey::new(crate::model::Kind::Citizen, "001085012345").unwrap(),
            stamp: Stamp { hlc: Hlc { wall_ms: 1_795_305_700_000, logical: 1 }, writer: "00082".into() },
            context,
            fields: flatten(&record).into_keys().filter(|f| f != "_exists").collect(),
            op: Op::Put(record),
        };
        (change, KeyId([7; 32]))
    }

    #[test]
    fn the_golden_change_hashes_and_links_as_recorded() {
        let (change, key) = golden();
        let h = content_hash(&change, &key);
        assert_eq!(hex(&h), GOLDEN_CONTENT, "the canonical form changed: a new FORMAT, not a silent change");
        let ward = WardCode::parse("00082").unwrap();
        assert_eq!(hex(&link(&ward, 7, &GENESIS, &h)), GOLDEN_LINK);
    }

    #[test]
    fn the_hash_excludes_what_the_city_adds_and_covers_what_the_writer_said() {
        let (change, key) = golden();
        let h = content_hash(&change, &key);
        let renumbered = Change { seq: 99, written_at_ms: 0, ..change.clone() };
        assert_eq!(content_hash(&renumbered, &key), h, "sequence and times are not signed");
        let mut cut = change.clone();
        cut.context.0.remove("city");
        assert_ne!(content_hash(&cut, &key), h, "the context as sent is");
        let mut other = change.clone();
        other.stamp.hlc.logical += 1;
        assert_ne!(content_hash(&other, &key), h);
        assert_ne!(content_hash(&change, &KeyId([8; 32])), h, "the signer's key is");
        let deleted = Change { op: Op::Delete, fields: vec![], ..change.clone() };
        assert_ne!(content_hash(&deleted, &key), h);
        // A link ties the sequence and what came before.
        let ward = WardCode::parse("00082").unwrap();
        let l7 = link(&ward, 7, &GENESIS, &h);
        assert_ne!(link(&ward, 8, &GENESIS, &h), l7);
        assert_ne!(link(&ward, 7, &l7, &h), l7);
        assert_ne!(link(&WardCode::parse("00145").unwrap(), 7, &GENESIS, &h), l7);
    }

    // Computed by a second implementation of the form above, written from
    // this module's documentation alone (Python's struct and hashlib), and
    // equal to this one's: what ward, city and both city stores check
    // their own against.
    const GOLDEN_CONTENT: &str = "541dc8acf755a1c678e7ff72d53b740e349e3ef97d846d6102765eb17feda41f";
    const GOLDEN_LINK: &str = "cd985f8b5474a9fd77cf2a11d134a53a18f5737644d04c7248288ac901c6b9b5";
}
