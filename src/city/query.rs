//! `CityQuery`: what the data office reads from the merged city database.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::CityError;
use crate::model::{Kind, ValidationError, WardCode};
use crate::proto::pb::{self, city_query_server::CityQuery};
use crate::proto::{key_from_pb, kind_from_pb, next_after, page_size};
use crate::store::{CityStore, LoggedChange};

/// Log entries read from the store per step of `ChangesSince`.
const LOG_CHUNK: usize = 512;

/// The query service.
#[derive(Clone)]
pub struct QueryService {
    pub(super) store: CityStore,
}

fn ward_filter(s: &str, field: &str) -> Result<Option<WardCode>, CityError> {
    if s.is_empty() {
        return Ok(None);
    }
    WardCode::parse(s)
        .map(Some)
        .map_err(|e| ValidationError::single(field, e).into())
}

impl From<&LoggedChange> for pb::LoggedChange {
    fn from(l: &LoggedChange) -> Self {
        pb::LoggedChange {
            cursor: l.cursor,
            ward: l.ward.to_string(),
            applied_at_ms: l.applied_at_ms,
            change: Some((&l.change).into()),
        }
    }
}

#[tonic::async_trait]
impl CityQuery for QueryService {
    async fn get(
        &self,
        req: Request<pb::CityGetRequest>,
    ) -> Result<Response<pb::CityGetReply>, Status> {
        let key = key_from_pb(req.into_inner().key).map_err(CityError::from)?;
        let record = self.store.get(&key).map_err(CityError::from)?;
        match record {
            Some(r) => Ok(Response::new(pb::CityGetReply {
                record: Some((&r).into()),
            })),
            None => Err(Status::not_found(format!("{key} not found at the city"))),
        }
    }

    async fn list(
        &self,
        req: Request<pb::CityListRequest>,
    ) -> Result<Response<pb::CityListReply>, Status> {
        let req = req.into_inner();
        let kind: Kind = kind_from_pb(req.kind, "kind").map_err(CityError::from)?;
        let ward = ward_filter(&req.ward, "ward")?;
        let limit = page_size(req.limit);
        let records = self
            .store
            .list(kind, ward.as_ref(), &req.after, limit)
            .map_err(CityError::from)?;
        Ok(Response::new(pb::CityListReply {
            next_after: next_after(&records, limit),
            records: records.iter().map(Into::into).collect(),
        }))
    }

    type ChangesSinceStream = ReceiverStream<Result<pb::LoggedChange, Status>>;

    async fn changes_since(
        &self,
        req: Request<pb::ChangesSinceRequest>,
    ) -> Result<Response<Self::ChangesSinceStream>, Status> {
        let req = req.into_inner();
        let limit = if req.limit == 0 {
            u64::MAX
        } else {
            u64::from(req.limit)
        };
        let store = self.store.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let (mut after, mut sent) = (req.after, 0u64);
            while sent < limit {
                let want = LOG_CHUNK.min((limit - sent) as usize);
                let chunk = match store.changes_since(after, want) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(CityError::from(e).into())).await;
                        return;
                    }
                };
                let Some(last) = chunk.last() else { return };
                after = last.cursor;
                sent += chunk.len() as u64;
                for l in &chunk {
                    if tx.send(Ok(l.into())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn wards(
        &self,
        _req: Request<pb::WardsRequest>,
    ) -> Result<Response<pb::WardsReply>, Status> {
        let wards = self
            .store
            .wards()
            .into_iter()
            .map(|(code, state)| pb::WardState {
                ward: code.to_string(),
                last_applied_seq: state.last_applied_seq,
                last_contact_ms: state.last_contact_ms,
                records: state.records,
                refused: state.refused,
            })
            .collect();
        Ok(Response::new(pb::WardsReply { wards }))
    }

    async fn refused(
        &self,
        req: Request<pb::RefusedRequest>,
    ) -> Result<Response<pb::RefusedReply>, Status> {
        let ward = ward_filter(&req.into_inner().ward, "ward")?;
        let refused = self.store.refused(ward.as_ref()).map_err(CityError::from)?;
        Ok(Response::new(pb::RefusedReply {
            refused: refused
                .iter()
                .map(|r| pb::RefusedChange {
                    ward: r.ward.to_string(),
                    reason: r.reason.clone(),
                    refused_at_ms: r.refused_at_ms,
                    change: Some((&r.change).into()),
                })
                .collect(),
        }))
    }
}
