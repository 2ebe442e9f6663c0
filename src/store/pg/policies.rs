//! The merge policies the records are shown under, on PostgreSQL: as in
//! the embedded store, when the configured policies differ from the stored
//! ones, every record is shown again under the new ones (its view, its
//! typed row and its conflicts), a chunk of records per transaction, and
//! the policies are stored last, so a crash midway starts again.

use std::collections::HashMap;

use super::write::ReadAhead;
use super::{PgCityStore, pg_err, target::row_key};
use crate::model::{Policies, RecordKey};
use crate::store::StoreError;
use crate::store::codec::{decode, encode};

/// Records shown again per transaction.
const CHUNK: i64 = if cfg!(test) { 50 } else { 5_000 };

impl PgCityStore {
    /// Shows every stored record under the policies in force if they differ.
    pub(super) async fn reapply_policies(&self) -> Result<(), StoreError> {
        let row = self.rows("SELECT policies FROM city_clock", &[]).await?;
        let stored: Option<Policies> =
            row[0].get::<_, Option<&[u8]>>(0).map(|b| decode(b"city_clock.policies", b)).transpose()?;
        if stored.as_ref() == Some(&*self.policies) {
            return Ok(());
        }
        let (mut after, mut shown) = ((String::new(), String::new()), 0);
        loop {
            let rows = self
                .rows(
                    "SELECT kind, id FROM record_states WHERE (kind, id) > ($1, $2) ORDER BY kind, id LIMIT $3",
                    &[&after.0, &after.1, &CHUNK],
                )
                .await?;
            let keys: Vec<RecordKey> = rows.iter().map(|r| row_key(r, 0, 1)).collect::<Result<_, _>>()?;
            let Some(last) = keys.last() else { break };
            after = (last.kind().as_str().to_string(), last.id().to_string());
            let mut open: HashMap<RecordKey, Vec<String>> = HashMap::new();
            let (kinds, ids): (Vec<&str>, Vec<&str>) =
                keys.iter().map(|k| (k.kind().as_str(), k.id())).unzip();
            for r in self
                .rows(
                    "SELECT c.kind, c.id, c.field FROM unnest($1::text[], $2::text[]) AS k(kind, id)
                     JOIN conflicts c ON c.kind = k.kind AND c.id = k.id",
                    &[&kinds, &ids],
                )
                .await?
            {
                open.entry(row_key(&r, 0, 1)?).or_default().push(r.get(2));
            }
            let ahead = ReadAhead { keys: keys.clone(), ..Default::default() };
            self.write(crate::clock::now_ms(), ahead, |w, wards| {
                for key in &keys {
                    w.refresh(key, open.get(key).map_or(&[][..], Vec::as_slice), wards)?;
                }
                Ok(())
            })
            .await?;
            shown += keys.len();
        }
        if shown > 0 {
            tracing::info!(
                records = shown,
                "merge policies changed: every record is shown under the new ones"
            );
        }
        let client = self.client().await?;
        client
            .execute("UPDATE city_clock SET policies = $1", &[&encode(&*self.policies)])
            .await
            .map_err(pg_err)?;
        Ok(())
    }
}
