//! Cursor pagination, the same for every `List` RPC: a page holds at most
//! `limit` records in key order; the cursor of the next page is the last key
//! of a full page, and empty when there is nothing more.

use crate::model::{Record, ValidationError};

/// Page size when a request leaves `limit` at 0.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page a request may ask for.
pub const MAX_PAGE: usize = 1000;

/// The page size a request asks for, within bounds.
pub fn page_size(limit: u32) -> usize {
    match limit as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// The cursor to return with `records`, a page asked with size `limit`.
pub fn next_after(records: &[Record], limit: usize) -> String {
    match records.last() {
        Some(r) if records.len() == limit => r.key_id(),
        _ => String::new(),
    }
}

/// A store cursor as it travels: hex, empty at the end of a list.
pub fn cursor_out(next: Option<Vec<u8>>) -> String {
    next.map_or(String::new(), |k| k.iter().map(|b| format!("{b:02x}")).collect())
}

/// The store cursor a request's `after` carries (see [`cursor_out`]).
pub fn cursor_in(after: &str) -> Result<Vec<u8>, ValidationError> {
    let bad = || {
        ValidationError::single("after", "not a cursor this service returned: send `next_after` unchanged")
    };
    if after.len() % 2 == 1 || after.len() > 4096 {
        return Err(bad());
    }
    (0..after.len())
        .step_by(2)
        .map(|i| after.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(bad))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0), DEFAULT_PAGE);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(1_000_000), MAX_PAGE);
    }

    #[test]
    fn cursors_travel_as_hex_and_anything_else_is_refused() {
        let key = b"n\xc3\x90ang\0c001".to_vec();
        assert_eq!(cursor_in(&cursor_out(Some(key.clone()))).unwrap(), key);
        assert_eq!(cursor_out(None), "");
        assert!(cursor_in("").unwrap().is_empty());
        for bad in ["abc", "zz", "é1"] {
            assert!(cursor_in(bad).unwrap_err().to_string().contains("next_after"), "{bad}");
        }
    }
}
