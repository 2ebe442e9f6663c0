//! The merge policies the stored records are shown under. When the city's
//! configured policies change (as the wards adopt them on their next
//! `Welcome`), every stored record is shown again under the new ones: its
//! view, its index entries and its conflicts, so that `Get` and `GetState`
//! never disagree.

use super::CityStore;
use super::keys::{POLICIES, STATE, conflict_key};
use crate::model::{Kind, Policies, RecordKey};
use crate::store::StoreError;
use crate::store::codec::{decode, encode};
use crate::store::engine::{Batch, prefix_end};

/// Records shown again per atomic write.
const CHUNK: usize = if cfg!(test) { 50 } else { 5_000 };

impl CityStore {
    /// Shows every stored record under the policies in force if they differ
    /// from those it was shown under, a chunk of records per write; the
    /// policies are stored last, so a crash midway starts again on the next
    /// opening.
    pub(super) fn reapply_policies(&self, now_ms: i64) -> Result<(), StoreError> {
        let stored: Option<Policies> =
            self.engine.get(POLICIES)?.map(|v| decode(POLICIES, &v)).transpose()?;
        if stored.as_ref() == Some(&*self.policies) {
            return Ok(());
        }
        let (mut start, end) = (STATE.to_vec(), prefix_end(STATE));
        let mut shown = 0;
        loop {
            let rows = self.engine.scan(&start, &end, CHUNK)?;
            let keys: Vec<RecordKey> = rows
                .iter()
                .filter_map(|(k, _)| {
                    let kind = Kind::from_tag(*k.get(STATE.len())?)?;
                    RecordKey::new(kind, &String::from_utf8_lossy(&k[STATE.len() + 1..])).ok()
                })
                .collect();
            let mut fields = Vec::with_capacity(keys.len());
            for key in &keys {
                let prefix = conflict_key(key, "");
                let open = self.engine.scan(&prefix, &prefix_end(&prefix), usize::MAX)?;
                fields.push(
                    open.into_iter()
                        .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
                        .collect::<Vec<_>>(),
                );
            }
            self.write(now_ms, |w, wards| {
                for (key, open) in keys.iter().zip(&fields) {
                    w.refresh(key, open, wards)?;
                }
                Ok(())
            })?;
            shown += keys.len();
            match rows.last() {
                Some((k, _)) if rows.len() == CHUNK => start = [k.as_slice(), &[0]].concat(),
                _ => break,
            }
        }
        if shown > 0 {
            tracing::info!(
                records = shown,
                "merge policies changed: every record is shown under the new ones"
            );
        }
        let mut batch = Batch::default();
        batch.insert(POLICIES, encode(&*self.policies));
        self.engine.apply(batch)
    }
}
