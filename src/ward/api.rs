//! The ward agent's local gRPC API (`WardApi`), used by the ward's one-stop
//! software. Converts wire types at the boundary, enforces ownership, and
//! hands writes to the [`Writer`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::{Request, Response, Status};

use super::replicator::{Connect, LinkState};
use super::{WardError, Writer};
use crate::clock::today;
use crate::model::civil::replacement_refusal;
use crate::model::{
    Body, Context, Kind, Record, RecordKey, ValidationError, WardCode, beyond_transfer, transfer_overreach,
};
use crate::proto::pb::{self, city_query_client::CityQueryClient, ward_api_server::WardApi};
use crate::proto::{
    key_from_pb, kind_from_pb, next_after, page_size, record_from_pb, valid_record_from_pb, versioned_from_pb,
};
use crate::store::{NewChange, WardStore};

/// How long a look-up at the city may take.
pub(super) const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// State shared by the local API handlers.
#[derive(Clone)]
pub struct LocalApi {
    pub(super) ward: WardCode,
    pub(super) store: WardStore,
    pub(super) writer: Writer,
    pub(super) link: Arc<LinkState>,
    /// Province of this ward: its records must be owned by this ward anyway.
    pub(super) province: String,
    /// How to reach the city for look-ups.
    pub(super) connect: Connect,
    /// Compares this ward's records with the city's copy.
    pub(super) verifier: Arc<super::Verifier>,
}

impl LocalApi {
    /// A query client to the city, or why it cannot be reached.
    pub(super) async fn city(&self) -> Result<CityQueryClient<tonic::transport::Channel>, WardError> {
        let channel = tokio::time::timeout(LOOKUP_TIMEOUT, (self.connect)())
            .await
            .map_err(|_| WardError::CityUnreachable("no connection within 5 s".into()))?
            .map_err(|e| WardError::CityUnreachable(format!("{e:#}")))?;
        Ok(CityQueryClient::new(channel))
    }

    pub(super) fn context(&self) -> Context {
        Context { today: today(), province: Some(self.province.clone()) }
    }

    fn check_owner(&self, key: &RecordKey, owner: &WardCode) -> Result<(), WardError> {
        if owner == &self.ward {
            Ok(())
        } else {
            Err(WardError::NotOwned { key: key.clone(), owner: owner.clone(), this: self.ward.clone() })
        }
    }
}

#[tonic::async_trait]
impl WardApi for LocalApi {
    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::WriteReply>, Status> {
        let (record, key) =
            valid_record_from_pb(req.into_inner().record, &self.context()).map_err(WardError::from)?;
        self.check_owner(&key, &record.ward)?;
        if let Some((field, why)) = record.kept_elsewhere() {
            return Err(WardError::Invalid(ValidationError::single(field, why)).into());
        }
        // The record as this ward knows it, even if it has passed to another
        // ward or was deleted there (only then is its state read): a put
        // never takes another ward's record (a person moving in is a transfer).
        // (`last_held` is the record as last held here, deleted or not: a
        // delete and a re-create must not turn the dead into another.)
        let (existing, last_held) = match self.store.get(&key).map_err(WardError::from)? {
            Some(shown) => (Some(shown.clone()), Some(shown)),
            None => match self.store.state(&key).map_err(WardError::from)? {
                Some(state) => {
                    if let Some(owner) = state.owner_value().and_then(|o| WardCode::parse(&o).ok()) {
                        self.check_owner(&key, &owner)?;
                    }
                    let policies = self.store.policies();
                    (state.materialize(&key, &policies), state.view(&key, &policies))
                }
                None => (None, None),
            },
        };
        let created = existing.is_none();
        if let Some(existing) = existing {
            self.check_owner(&key, &existing.ward)?;
            if existing == record {
                // Writing what is already stored changes nothing: no outbox entry.
                return Ok(Response::new(pb::WriteReply { seq: 0, unchanged: true, created: false }));
            }
        }
        // Who a person is, and what was registered, change only by registration.
        if let (Some(Record { body: Body::Citizen(old), .. }), Body::Citizen(new)) =
            (&last_held, &record.body)
            && let Some(why) = replacement_refusal(old, new, None)
        {
            return Err(WardError::Invalid(ValidationError::single("record.citizen", why)).into());
        }
        let seq = self.writer.write(NewChange::put(key, record)).await?;
        Ok(Response::new(pb::WriteReply { seq, unchanged: false, created }))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::WriteReply>, Status> {
        let key = key_from_pb(req.into_inner().key).map_err(WardError::from)?;
        let existing =
            self.store.get(&key).map_err(WardError::from)?.ok_or_else(|| WardError::NotFound(key.clone()))?;
        self.check_owner(&key, &existing.ward)?;
        let seq = self.writer.write(NewChange::delete(key)).await?;
        Ok(Response::new(pb::WriteReply { seq, unchanged: false, created: false }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetReply>, Status> {
        let key = key_from_pb(req.into_inner().key).map_err(WardError::from)?;
        let record = self.store.get(&key).map_err(WardError::from)?.ok_or(WardError::NotFound(key))?;
        Ok(Response::new(pb::GetReply { record: Some((&record).into()) }))
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::ListReply>, Status> {
        let req = req.into_inner();
        let kind: Kind = kind_from_pb(req.kind, "kind").map_err(WardError::from)?;
        let limit = page_size(req.limit);
        let records = self.store.list(kind, &req.after, limit).map_err(WardError::from)?;
        Ok(Response::new(pb::ListReply {
            next_after: next_after(&records, limit),
            records: records.iter().map(Into::into).collect(),
        }))
    }

    async fn lookup(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetReply>, Status> {
        let key = key_from_pb(req.into_inner().key).map_err(WardError::from)?;
        if let Some(record) = self.store.get(&key).map_err(WardError::from)? {
            return Ok(Response::new(pb::GetReply { record: Some((&record).into()) }));
        }
        let mut city = self.city().await?;
        let mut request = Request::new(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() });
        request.set_timeout(LOOKUP_TIMEOUT);
        match city.get(request).await {
            Ok(reply) => Ok(Response::new(pb::GetReply { record: reply.into_inner().record })),
            Err(s) if s.code() == tonic::Code::NotFound => Err(WardError::NotFoundInCity(key).into()),
            Err(s) => Err(WardError::CityUnreachable(s.message().to_string()).into()),
        }
    }

    async fn transfer(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::WriteReply>, Status> {
        let (record, key) =
            valid_record_from_pb(req.into_inner().record, &self.context()).map_err(WardError::from)?;
        let moving_in = matches!(&record.body, Body::Citizen(c) if c.permanent_residence.commune_code == self.ward.as_str());
        if record.ward != self.ward || !moving_in {
            return Err(WardError::Invalid(ValidationError::single(
                "record",
                format!(
                    "a transfer into ward {} is a citizen owned by it whose permanent residence is here",
                    self.ward
                ),
            ))
            .into());
        }
        let mut city = self.city().await?;
        let mut request = Request::new(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() });
        request.set_timeout(LOOKUP_TIMEOUT);
        let (state, held) = match city.get_state(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                (reply.state.unwrap_or_default(), reply.record)
            }
            Err(s) if s.code() == tonic::Code::NotFound => return Err(WardError::NotFoundInCity(key).into()),
            Err(s) => return Err(WardError::CityUnreachable(s.message().to_string()).into()),
        };
        let held = record_from_pb(held).map_err(|_| WardError::NotFoundInCity(key.clone()))?;
        // A transfer moves the person, nothing else about them: what the
        // city would refuse is refused here, with what differs named.
        if let Some(why) = transfer_overreach(&beyond_transfer(&held, &record)) {
            return Err(WardError::Invalid(ValidationError::single(
                "record",
                format!(
                    "{why}, which differ from the city's record: transfer the person as the city holds \
                     them, then write any other change as their new ward"
                ),
            ))
            .into());
        }
        self.store.adopt_state(&key, &versioned_from_pb(state)).map_err(WardError::from)?;
        let seq = self.writer.write(NewChange::transfer(key, record)).await?;
        Ok(Response::new(pb::WriteReply { seq, unchanged: false, created: false }))
    }

    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        Ok(Response::new(self.register_civil(req.into_inner()).await?))
    }

    async fn confirm_marital_status(
        &self,
        req: Request<pb::CivilStatusRequest>,
    ) -> Result<Response<pb::CivilStatusReply>, Status> {
        let mut city = self.city().await?;
        let mut request = Request::new(req.into_inner());
        request.set_timeout(LOOKUP_TIMEOUT);
        match city.civil_status(request).await {
            Ok(reply) => Ok(reply),
            Err(s) if s.code() == tonic::Code::NotFound || s.code() == tonic::Code::InvalidArgument => Err(s),
            Err(s) => Err(WardError::CityUnreachable(s.message().to_string()).into()),
        }
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::WardStatus>, Status> {
        let records = Kind::ALL.iter().map(|k| self.store.count(*k)).sum();
        Ok(Response::new(pb::WardStatus {
            ward: self.ward.to_string(),
            last_seq: self.store.last_seq(),
            acked_seq: self.store.acked_seq(),
            backlog: self.store.backlog(),
            connected: self.link.connected.load(Ordering::Relaxed),
            reconnects: self.link.reconnects.get(),
            records,
            // (Counted in the store: a restart does not forget them.)
            forks: self.store.renumberings().0,
            sequence_jumps: self.store.renumberings().1,
            city_lost_changes: self.link.city_lost_changes.get(),
            downstream_cursor: self.store.downstream_cursor(),
            refill_due: self.store.refill_due().is_some(),
            link_down_because: self.link.down_because.lock().expect("not poisoned").clone(),
            ack_receipt: self.store.ack_receipt().1,
            downstream_receipt: self.store.downstream_receipt(),
            ..self.verify_status()
        }))
    }

    async fn backup(&self, req: Request<pb::BackupRequest>) -> Result<Response<pb::BackupReply>, Status> {
        Ok(Response::new(self.backup_to(&req.into_inner().to).await?))
    }

    async fn verify(&self, _req: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyReply>, Status> {
        // Its own task: a caller that gives up does not cut a run short.
        let verifier = self.verifier.clone();
        let r = tokio::spawn(async move { verifier.run("on demand").await })
            .await
            .map_err(|e| WardError::VerifyFailed(e.to_string()))?
            .map_err(WardError::VerifyFailed)?;
        Ok(Response::new(pb::VerifyReply {
            records: r.records,
            differing: r.differing,
            fetched: r.fetched,
            sent: r.sent,
            repaired_at_city: r.repaired_at_city,
            writes_at_city: r.writes_at_city,
            others_not_taken: r.others_not_taken,
            others_taken: r.others_taken,
            refused: r.refused,
            in_sync: r.in_sync,
            took_ms: r.took_ms,
            deferred: r.deferred,
        }))
    }
}

impl LocalApi {
    /// Takes a copy of the store into `to`, a new directory.
    async fn backup_to(&self, to: &str) -> Result<pb::BackupReply, WardError> {
        let path = std::path::PathBuf::from(to);
        let bad = |why: String| WardError::Invalid(ValidationError::single("to", why));
        if !path.is_absolute() {
            return Err(bad(format!("{to:?} is not an absolute path")));
        }
        crate::store::backup::check_new(&path).map_err(bad)?;
        let m = self.store.backup(path.clone()).await?;
        tracing::info!(path = %path.display(), keys = m.keys, paused_ms = m.paused_ms, "backup taken");
        Ok(crate::proto::backup_to_pb(&path, &m))
    }

    /// The verification fields of the status.
    fn verify_status(&self) -> pb::WardStatus {
        let state = &self.verifier.state;
        let mut s = pb::WardStatus {
            verifying: state.running.load(Ordering::Relaxed),
            in_sync_at_ms: (state.in_sync_at.get() * 1000.0) as i64,
            ..Default::default()
        };
        match &*state.last.lock().expect("poisoned") {
            Some(Ok(r)) => {
                s.verified_at_ms = r.finished_ms;
                s.verify_differing = r.differing;
                s.verify_in_sync = r.in_sync;
            }
            Some(Err(e)) => s.verify_error = e.clone(),
            None => {}
        }
        s
    }
}
