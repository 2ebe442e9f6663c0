//! Cursor pagination, the same for every `List` RPC: a page holds at most
//! `limit` records in key order; the cursor of the next page is the last key
//! of a full page, and empty when there is nothing more.

use crate::model::Record;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0), DEFAULT_PAGE);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(1_000_000), MAX_PAGE);
    }
}
