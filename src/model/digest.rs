//! Digests of a ward's records, for ward and city to prove their copies
//! agree without sending them (anti-entropy).
//!
//! Each record hashes to 16 bytes over its key and every unsuperseded
//! write (field, writer, clock, value): what the record says and who wrote
//! what when. The writes' version vectors are left out: a write is named by
//! its stamp, and the city may cut down, in a repair, what a write claims
//! to have seen (`store::city::repair`). A record falls in one of
//! [`BUCKETS`] buckets by a hash of its key alone; a bucket's digest is the
//! XOR of its records' hashes, so it is built in one pass in any order, and
//! the root is a hash of the buckets. Equal roots: the copies agree. Else
//! only the buckets that differ are walked, record by record.

use ring::digest::{SHA256, digest};

use super::{RecordKey, Versioned};

/// Buckets a ward's records fall into.
pub const BUCKETS: usize = 4096;

/// A record's or a bucket's hash.
pub type Hash = [u8; 16];

fn first16(bytes: &[u8]) -> Hash {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest(&SHA256, bytes).as_ref()[..16]);
    out
}

fn push_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The bucket of `key`: the first 12 bits of a hash of its kind and id.
pub fn bucket(key: &RecordKey) -> u16 {
    let mut buf = vec![key.kind().tag()];
    buf.extend_from_slice(key.id().as_bytes());
    let h = digest(&SHA256, &buf);
    (u16::from_be_bytes([h.as_ref()[0], h.as_ref()[1]]) as usize % BUCKETS) as u16
}

/// The hash of `key`'s record in `state`: its key and every unsuperseded
/// write, in field order and, within a field, in stamp order.
pub fn record_hash(key: &RecordKey, state: &Versioned) -> Hash {
    let mut buf = vec![key.kind().tag()];
    push_str(&mut buf, key.id());
    for (field, heads) in &state.fields {
        let mut heads: Vec<_> = heads.iter().collect();
        heads.sort_by(|a, b| a.stamp.cmp(&b.stamp));
        push_str(&mut buf, field);
        buf.extend_from_slice(&(heads.len() as u64).to_be_bytes());
        for h in heads {
            push_str(&mut buf, &h.stamp.writer);
            buf.extend_from_slice(&h.stamp.hlc.wall_ms.to_be_bytes());
            buf.extend_from_slice(&h.stamp.hlc.logical.to_be_bytes());
            push_str(&mut buf, &h.value);
        }
    }
    first16(&buf)
}

/// One bucket: the XOR of its records' hashes, and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leaf {
    /// XOR of the hashes.
    pub hash: Hash,
    /// Records in the bucket.
    pub count: u32,
}

/// The digest of one copy of a ward's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The buckets, [`BUCKETS`] of them, in bucket order.
    pub leaves: Vec<Leaf>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest { leaves: vec![Leaf::default(); BUCKETS] }
    }
}

impl Digest {
    /// Adds the record `key` whose hash is `hash`.
    pub fn add(&mut self, key: &RecordKey, hash: &Hash) {
        let leaf = &mut self.leaves[bucket(key) as usize];
        for (a, b) in leaf.hash.iter_mut().zip(hash) {
            *a ^= b;
        }
        leaf.count += 1;
    }

    /// Records counted.
    pub fn records(&self) -> u64 {
        self.leaves.iter().map(|l| u64::from(l.count)).sum()
    }

    /// The root: a hash of every bucket in order.
    pub fn root(&self) -> Hash {
        let mut buf = Vec::with_capacity(self.leaves.len() * 20);
        for l in &self.leaves {
            buf.extend_from_slice(&l.hash);
            buf.extend_from_slice(&l.count.to_be_bytes());
        }
        first16(&buf)
    }

    /// The buckets whose digests differ from `other`'s, in order.
    pub fn differing(&self, other: &Digest) -> Vec<u16> {
        (0..BUCKETS).filter(|&i| self.leaves.get(i) != other.leaves.get(i)).map(|i| i as u16).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, Kind, Stamp, VersionVector};
    use std::collections::BTreeMap;

    fn key(id: &str) -> RecordKey {
        RecordKey::new(Kind::Citizen, id).unwrap()
    }

    fn state(writes: &[(&str, &str, u64, &str)]) -> Versioned {
        let mut v = Versioned::default();
        for (field, writer, ms, value) in writes {
            let stamp = Stamp { hlc: Hlc { wall_ms: *ms, logical: 0 }, writer: writer.to_string() };
            let values = BTreeMap::from([(field.to_string(), value.to_string())]);
            v.apply(&values, &stamp, &VersionVector::default());
        }
        v
    }

    #[test]
    fn a_records_hash_names_its_writes_not_their_version_vectors_nor_their_order() {
        let k = key("001090000001");
        let a = state(&[("phone", "00082", 1, "\"1\""), ("phone", "city", 2, "\"2\"")]);
        let b = state(&[("phone", "city", 2, "\"2\""), ("phone", "00082", 1, "\"1\"")]);
        assert_eq!(record_hash(&k, &a), record_hash(&k, &b), "the same writes, merged in another order");
        let mut c = a.clone();
        c.seen = VersionVector::default();
        for heads in c.fields.values_mut() {
            for h in heads {
                h.context = VersionVector::default();
            }
        }
        assert_eq!(record_hash(&k, &a), record_hash(&k, &c), "version vectors are not hashed");
        let other_value = state(&[("phone", "00082", 1, "\"1\""), ("phone", "city", 2, "\"3\"")]);
        let other_stamp = state(&[("phone", "00082", 1, "\"1\""), ("phone", "city", 3, "\"2\"")]);
        let missing = state(&[("phone", "00082", 1, "\"1\"")]);
        for (what, s) in [("value", other_value), ("stamp", other_stamp), ("write", missing)] {
            assert_ne!(record_hash(&k, &a), record_hash(&k, &s), "a different {what}");
        }
        assert_ne!(record_hash(&k, &a), record_hash(&key("001090000002"), &a), "another key");
    }

    #[test]
    fn digests_differ_exactly_in_the_buckets_of_the_records_that_differ() {
        let s = state(&[("phone", "00082", 1, "\"1\"")]);
        let t = state(&[("phone", "00082", 2, "\"1\"")]);
        let keys: Vec<RecordKey> = (0..2000).map(|i| key(&format!("0010900{i:05}"))).collect();
        let (mut a, mut b) = (Digest::default(), Digest::default());
        for k in &keys {
            a.add(k, &record_hash(k, &s));
        }
        for k in keys.iter().rev() {
            let differs = k == &keys[7];
            b.add(k, &record_hash(k, if differs { &t } else { &s }));
        }
        assert_ne!(a.root(), b.root());
        assert_eq!(a.differing(&b), vec![bucket(&keys[7])]);
        assert_eq!(a.records(), 2000);
        // One record more on one side: its bucket differs by its count too.
        let mut c = a.clone();
        c.add(&key("001090099999"), &record_hash(&key("001090099999"), &s));
        assert_eq!(a.differing(&c), vec![bucket(&key("001090099999"))]);
        let mut d = Digest::default();
        for k in keys.iter().rev() {
            d.add(k, &record_hash(k, &s));
        }
        assert_eq!(a.root(), d.root(), "built in any order");
    }
}
