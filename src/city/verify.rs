//! The city's side of anti-entropy: the digest of its copy of a ward's
//! records, the records of the buckets that differ, and the repair from
//! the ward's whole states (`store::city::repair`). The ward drives it
//! (`ward::verify`); each call is about the caller's own records only.

use std::collections::HashSet;

use prost::Message;
use tonic::{Request, Response, Status};

use super::error::CityError;
use super::guard::Cost;
use super::ingest::{Db, SyncService};
use crate::auth::Role;
use crate::clock::{now_ms, ward_today};
use crate::model::digest::{BUCKETS, Digest, bucket, record_hash};
use crate::model::{Context, RecordKey, ValidationError, WardCode};
use crate::proto::pb;
use crate::proto::{key_from_pb, versioned_from_pb};
use crate::store::{MAX_REPAIR_RECORDS, StoreError};

/// Records read from the store at a time.
const PAGE: usize = 1000;
/// Most records one `DigestKeys` call reads, whatever it returns.
const KEYS_SCAN: usize = 100_000;
/// Most records one `DigestKeys` reply carries, and most bytes of them.
const KEYS_REPLY: usize = 2000;
const KEYS_REPLY_BYTES: usize = 4 << 20;

/// The digest of the city's copy of `ward`'s records, read a page at a time.
async fn city_digest(store: &Db, ward: &WardCode) -> Result<Digest, StoreError> {
    let mut digest = Digest::default();
    let mut after: Option<RecordKey> = None;
    loop {
        let page = store.ward_states(ward, after.as_ref(), PAGE).await?;
        for (k, s) in &page {
            digest.add(k, &record_hash(k, s));
        }
        match page.last() {
            Some((k, _)) if page.len() == PAGE => after = Some(k.clone()),
            _ => return Ok(digest),
        }
    }
}

impl SyncService {
    /// The ward the caller may ask about: the one its certificate names,
    /// which `claimed` must be.
    /// What it costs against the caller's request rate: `cost`.
    fn asking<T>(&self, req: &Request<T>, claimed: &str, rpc: &str, cost: Cost) -> Result<WardCode, Status> {
        let peer = self.guard.admit_costing(req, &[Role::Ward], rpc, cost)?;
        Ok(Self::ward_of(&peer.identity, claimed)?)
    }

    pub(super) async fn digest_reply(
        &self,
        req: Request<pb::DigestRequest>,
    ) -> Result<Response<pb::DigestReply>, Status> {
        let ward = self.asking(&req, &req.get_ref().ward_code, "Digest", Cost::Scan)?;
        if req.get_ref().end_streams {
            super::streams::end_streams(&self.live, &ward).await;
        }
        let cursor = self.store.durable_cursor();
        let (last_applied_seq, chain) = self.store.resume_point(&ward).await.map_err(CityError::from)?;
        let digest = city_digest(&self.store, &ward).await.map_err(CityError::from)?;
        Ok(Response::new(pb::DigestReply {
            leaves: digest.leaves.iter().map(|l| l.hash.to_vec()).collect(),
            counts: digest.leaves.iter().map(|l| l.count).collect(),
            cursor,
            last_applied_seq,
            // (A ward restoring itself keeps it: its numbering starts there.)
            receipt: self.ward_receipts(&ward).ack(last_applied_seq, chain.link, self.store.log_head()),
            link: chain.link.map(|l| l.to_vec()).unwrap_or_default(),
            link_key: chain.key.0.to_vec(),
        }))
    }

    pub(super) async fn digest_keys_reply(
        &self,
        req: Request<pb::DigestKeysRequest>,
    ) -> Result<Response<pb::DigestKeysReply>, Status> {
        let ward = self.asking(&req, &req.get_ref().ward_code, "DigestKeys", Cost::Flush)?;
        let req = req.into_inner();
        let mut buckets = HashSet::with_capacity(req.buckets.len());
        for b in req.buckets {
            if b as usize >= BUCKETS {
                let why = format!("bucket {b} does not exist (there are {BUCKETS})");
                return Err(CityError::Invalid(ValidationError::single("buckets", why)).into());
            }
            buckets.insert(b as u16);
        }
        let mut after = match req.after {
            Some(k) => Some(key_from_pb(Some(k)).map_err(CityError::from)?),
            None => None,
        };
        let (mut records, mut bytes, mut scanned) = (Vec::new(), 0, 0);
        let next_after = 'scan: loop {
            let page = self.store.ward_states(&ward, after.as_ref(), PAGE).await.map_err(CityError::from)?;
            for (k, s) in &page {
                scanned += 1;
                if buckets.is_empty() || buckets.contains(&bucket(k)) {
                    let entry = pb::KeyedState {
                        key: Some(k.into()),
                        hash: record_hash(k, s).to_vec(),
                        state: Some(s.into()),
                        authorship: Vec::new(),
                    };
                    bytes += entry.encoded_len();
                    records.push(entry);
                }
                if records.len() >= KEYS_REPLY || bytes >= KEYS_REPLY_BYTES || scanned >= KEYS_SCAN {
                    break 'scan Some(k.into());
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == PAGE => after = Some(k.clone()),
                _ => break None,
            }
        };
        // The ward merges these states and builds on them: only once all
        // of them are durable, so a city crash cannot take back what it saw.
        self.store.flush().await.map_err(CityError::from)?;
        Ok(Response::new(pb::DigestKeysReply { records, next_after }))
    }

    pub(super) async fn repair_reply(
        &self,
        req: Request<pb::RepairRequest>,
    ) -> Result<Response<pb::RepairReply>, Status> {
        let ward = self.asking(&req, &req.get_ref().ward_code, "Repair", Cost::Flush)?;
        let req = req.into_inner();
        if req.records.len() > MAX_REPAIR_RECORDS {
            let why =
                format!("{} records exceed the limit of {MAX_REPAIR_RECORDS} per call", req.records.len());
            return Err(CityError::Invalid(ValidationError::single("records", why)).into());
        }
        let mut states = Vec::with_capacity(req.records.len());
        let (mut vouched, access) = (crate::store::Vouchers::new(), self.guard.access());
        for r in req.records {
            let key = key_from_pb(r.key).map_err(CityError::from)?;
            if !r.authorship.is_empty() {
                let checks = (&*access, &self.receipts);
                let (proofs, refused) = super::relay::vouched(&r.authorship, self.roots.as_ref(), checks);
                if refused > 0 {
                    tracing::warn!(%ward, %key, refused, "evidence of writes by others refused");
                }
                vouched.insert(key.clone(), proofs);
            }
            states.push((key, versioned_from_pb(r.state.unwrap_or_default())));
        }
        let ctx = Context { today: ward_today(self.max_skew_ms), province: self.province.clone() };
        let out = self
            .store
            .repair(&ward, &states, &vouched, now_ms(), &ctx, self.max_skew_ms)
            .await
            .map_err(CityError::from)?;
        if out.repaired > 0 || !out.refused.is_empty() || out.others_not_taken > 0 {
            tracing::warn!(%ward, records = states.len(), repaired = out.repaired, writes = out.writes,
                refused = out.refused.len(), others_taken = out.others_taken, others_not_taken = out.others_not_taken,
                "repaired the city's copy of a ward's records from the ward's");
        }
        if out.writes > 0 {
            self.waiting.wake(&out.gained);
        }
        for (key, why) in &out.refused {
            tracing::warn!(%ward, %key, reason = %why, "a ward's write offered in a repair was refused");
        }
        Ok(Response::new(pb::RepairReply {
            repaired: out.repaired,
            writes: out.writes,
            unchanged: out.unchanged,
            others_not_taken: out.others_not_taken,
            others_taken: out.others_taken,
            refused: out.refused.iter().map(|(k, why)| format!("{k}: {why}")).collect(),
            states: out
                .states
                .iter()
                .map(|(k, s)| pb::KeyedState {
                    key: Some(k.into()),
                    hash: record_hash(k, s).to_vec(),
                    state: Some(s.into()),
                    authorship: Vec::new(),
                })
                .collect(),
        }))
    }
}
