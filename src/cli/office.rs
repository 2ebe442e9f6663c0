//! The data office's side of signed requests: each correction, settlement
//! and discard is signed with the key of the certificate the office
//! connects with ([`crate::model::office_request`]), so that the city can
//! keep, beside the changes it derives, evidence no one else could make.

use crate::auth::{Signer, TlsFiles};
use crate::model::office_request::{Asked, OfficeRequest};
use crate::model::{Record, RecordKey, VersionVector, WardCode};
use crate::proto::pb;

/// Signs the office's requests (or, talking to a city without TLS, sends
/// them unsigned: such a city checks no one's identity).
#[derive(Debug)]
pub struct OfficeSigner {
    signer: Option<Signer>,
}

impl OfficeSigner {
    /// With the key and certificate of `files` (`None`: without TLS).
    pub fn load(files: Option<&TlsFiles>) -> anyhow::Result<OfficeSigner> {
        Ok(OfficeSigner { signer: files.map(Signer::load).transpose()? })
    }

    fn signed(&self, asked: Asked) -> Option<pb::OfficeSignature> {
        let signer = self.signer.as_ref()?;
        let request_id: [u8; 16] =
            ring::rand::generate(&ring::rand::SystemRandom::new()).expect("the system's randomness").expose();
        let request = OfficeRequest { id: request_id, signed_at_ms: crate::clock::now_ms(), asked };
        Some(pb::OfficeSignature {
            request_id: request_id.to_vec(),
            signed_at_ms: request.signed_at_ms,
            signature: signer.sign(&request.message(&signer.key_id())),
        })
    }

    /// A correction of a record to `record`, having read `seen` of it
    /// (empty: the record as it stands). The record is normalized first
    /// (as the city would): what is signed is what is written.
    pub fn edit(&self, record: Record, seen: &VersionVector) -> pb::EditRequest {
        let wire: pb::Record = (&record.normalized()).into();
        // Signed as the city reads it off the wire.
        let record = crate::proto::record_from_pb(Some(wire.clone())).expect("a record read back");
        pb::EditRequest {
            record: Some(wire),
            seen: crate::proto::seen_pb(seen),
            signed: self.signed(Asked::Edit { record: Box::new(record), seen: seen.clone() }),
        }
    }

    /// Settles the conflict on `field` of `key` with `value` (JSON).
    pub fn resolve(&self, key: &RecordKey, field: &str, value: &str) -> pb::ResolveRequest {
        pb::ResolveRequest {
            key: Some(key.into()),
            field: field.to_string(),
            choose: 0,
            value: value.to_string(),
            signed: self.signed(Asked::Resolve {
                key: key.clone(),
                field: field.to_string(),
                value: value.to_string(),
            }),
        }
    }

    /// Discards `ward`'s quarantined change `seq`, for `reason`.
    pub fn discard(&self, ward: &WardCode, seq: u64, reason: &str) -> pb::DiscardRequest {
        pb::DiscardRequest {
            ward: ward.to_string(),
            seq,
            reason: reason.to_string(),
            signed: self.signed(Asked::Discard { ward: ward.clone(), seq, reason: reason.to_string() }),
        }
    }
}
