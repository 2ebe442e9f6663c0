//! Value encoding for stored model types (postcard, a compact serde format),
//! and the big-endian integers used in keys so that byte order is numeric order.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// Encodes a value for storage.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("model types always serialize")
}

/// Decodes a stored value; `key` names it in the error.
pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

/// A `u64` as 8 big-endian bytes.
pub fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads a `u64` stored with [`be`].
pub fn read_be(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// `prefix` followed by `parts`.
pub fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}
