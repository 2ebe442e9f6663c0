//! Civil-status queries of the city: marital-status confirmation (one
//! person, city-wide) and the data-quality report (inconsistencies the data
//! office should fix, by ward).

use tonic::Status;

use super::{CityError, QueryService};
use crate::model::civil::{current_spouse, is_dead};
use crate::model::{Body, Citizen, Kind, RecordKey, ValidationError, WardCode};
use crate::proto::{cursor_in, cursor_out, page_size, pb};
use crate::store::CitizenProblems;

/// What `CivilStatus` answers for `c`, owned by `ward`.
pub fn civil_status_reply(c: &Citizen, ward: &WardCode, disputed: bool) -> pb::CivilStatusReply {
    pb::CivilStatusReply {
        personal_id: c.personal_id.clone(),
        full_name: c.full_name.clone(),
        ward: ward.to_string(),
        marital_status: c.marital_status.to_string(),
        events: c
            .events
            .iter()
            .map(|e| pb::CivilEventInfo {
                kind: e.kind.to_string(),
                date: e.date.to_string(),
                registered_by: e.registered_by.clone(),
                spouse_id: e.spouse_id.clone(),
                reference: e.reference.clone(),
            })
            .collect(),
        disputed,
        deceased: is_dead(c),
        spouse_id: current_spouse(c).unwrap_or_default().to_string(),
    }
}

fn problems_pb(p: &CitizenProblems) -> impl Iterator<Item = pb::CivilProblem> + '_ {
    p.problems.iter().map(|x| pb::CivilProblem {
        ward: p.ward.to_string(),
        personal_id: p.personal_id.clone(),
        problem: x.code().to_string(),
        detail: x.to_string(),
    })
}

impl QueryService {
    /// The civil status of `personal_id`, city-wide.
    pub(super) async fn civil_status_of(&self, personal_id: &str) -> Result<pb::CivilStatusReply, Status> {
        let key = RecordKey::new(Kind::Citizen, personal_id).map_err(CityError::from)?;
        let record = self.store.get(&key).await.map_err(CityError::from)?;
        let Some(crate::model::Record { ward, body: Body::Citizen(c) }) = record else {
            return Err(Status::not_found(format!("no citizen {personal_id} anywhere in the city")));
        };
        let disputed = !self.store.record_conflicts(&key).await.map_err(CityError::from)?.is_empty();
        Ok(civil_status_reply(&c, &ward, disputed))
    }

    /// A page of the civil-status report.
    pub(super) async fn civil_report_page(
        &self,
        req: pb::CivilReportRequest,
    ) -> Result<pb::CivilReportReply, Status> {
        let ward = match req.ward.as_str() {
            "" => None,
            w => Some(WardCode::parse(w).map_err(|e| CityError::from(ValidationError::single("ward", e)))?),
        };
        let after = cursor_in(&req.after).map_err(CityError::from)?;
        let page = self
            .store
            .civil_report(ward.as_ref(), &after, page_size(req.limit))
            .await
            .map_err(CityError::from)?;
        Ok(pb::CivilReportReply {
            problems: page.items.iter().flat_map(problems_pb).collect(),
            next_after: cursor_out(page.next),
        })
    }
}

/// Counts of civil-status problems by ward and kind, for the metrics:
/// computed in the background (a full pass over the citizens), at most once
/// a minute, when a scrape finds them older than that.
#[derive(Clone, Default)]
pub struct ProblemCounts(std::sync::Arc<std::sync::Mutex<Counts>>);

#[derive(Default)]
struct Counts {
    by: std::collections::BTreeMap<(String, &'static str), u64>,
    computed: Option<std::time::Instant>,
    running: bool,
}

impl ProblemCounts {
    /// The counts as last computed; starts a new pass if they are over a
    /// minute old (or none yet) and none is running.
    pub fn current(
        &self,
        store: &super::ingest::Db,
    ) -> std::collections::BTreeMap<(String, &'static str), u64> {
        let mut c = self.0.lock().expect("poisoned");
        let stale = c.computed.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(60));
        if stale
            && !c.running
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            c.running = true;
            let (store, shared) = (store.clone(), self.0.clone());
            rt.spawn(async move {
                let counted = count(&*store).await;
                let mut c = shared.lock().expect("poisoned");
                c.running = false;
                if let Some(by) = counted {
                    c.by = by;
                    c.computed = Some(std::time::Instant::now());
                }
            });
        }
        c.by.clone()
    }
}

/// Every problem of every citizen, counted by ward and kind.
async fn count(
    store: &dyn crate::store::CityDb,
) -> Option<std::collections::BTreeMap<(String, &'static str), u64>> {
    let mut by = std::collections::BTreeMap::new();
    let mut after = Vec::new();
    loop {
        let page = store.civil_report(None, &after, crate::proto::MAX_PAGE).await.ok()?;
        for p in &page.items {
            for x in &p.problems {
                *by.entry((p.ward.to_string(), x.code())).or_insert(0) += 1;
            }
        }
        match page.next {
            Some(next) => after = next,
            None => return Some(by),
        }
    }
}
