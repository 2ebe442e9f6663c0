//! Civil-status reads of the city store: the data-quality report (the
//! inconsistencies of [`crate::model::civil::problems`], citizen by
//! citizen, with the spouses' records looked up city-wide).

use super::keys::{BY_WARD, RECORD};
use super::{CityStore, Page};
use crate::model::civil::{Problem, problems};
use crate::model::{Body, Citizen, Kind, Record, RecordKey, WardCode};
use crate::store::StoreError;
use crate::store::codec::{decode, key};

/// The problems found in one citizen's record.
#[derive(Debug, Clone, PartialEq)]
pub struct CitizenProblems {
    /// The owning ward.
    pub ward: WardCode,
    /// The citizen.
    pub personal_id: String,
    /// What is wrong.
    pub problems: Vec<Problem>,
}

impl CityStore {
    /// The citizen `id`, if the city holds one.
    fn citizen(&self, id: &str) -> Option<Citizen> {
        let key = RecordKey::new(Kind::Citizen, id).ok()?;
        match self.get(&key).ok().flatten()?.body {
            Body::Citizen(c) => Some(c),
            _ => None,
        }
    }

    /// The civil-status problems of the citizens (of `ward`, if given):
    /// one page after the cursor `after`, of at most `limit` citizens with
    /// problems.
    pub fn civil_report(
        &self,
        ward: Option<&WardCode>,
        after: &[u8],
        limit: usize,
    ) -> Result<Page<CitizenProblems>, StoreError> {
        let prefix = match ward {
            None => key(RECORD, &[&[Kind::Citizen.tag()]]),
            Some(w) => key(BY_WARD, &[w.as_str().as_bytes(), &[Kind::Citizen.tag()]]),
        };
        let by_index = ward.is_some().then_some(prefix.len());
        self.page(&prefix, after, limit, move |s, k, v| {
            // The ward index names `<tag><id>` after the ward; the records are the values.
            let record: Option<Record> = match by_index {
                Some(n) => s.get_raw(&key(RECORD, &[&k[n - 1..]]))?,
                None => Some(decode(k, v)?),
            };
            let Some(Record { ward, body: Body::Citizen(c) }) = record else { return Ok(None) };
            let found = problems(&c, |id| s.citizen(id));
            Ok((!found.is_empty()).then_some(CitizenProblems {
                ward,
                personal_id: c.personal_id,
                problems: found,
            }))
        })
    }
}
