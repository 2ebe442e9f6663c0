//! The office's requests as the city takes them: each correction,
//! settlement and discard signed by the caller with the key of the
//! certificate it connected with ([`crate::model::office_request`]),
//! checked here, and kept by the store beside the changes it derives.
//! The identity comes from the certificate, never from the request; a
//! request signed long ago (beyond the clock skew limit) is stale. A city
//! without TLS (`insecure_dev`) has no certificate to check against and
//! keeps its requests unsigned.

use tonic::Request;

use super::CityError;
use crate::auth::Identity;
use crate::model::ValidationError;
use crate::model::office_request::{Asked, OfficeRequest};
use crate::proto::pb;
use crate::store::SignedRequest;

/// `asked` of `req`'s caller, `identity`, with its signature `signed`
/// checked against the caller's certificate, at city time `now_ms`.
pub(super) fn signed_request<T>(
    req: &Request<T>,
    identity: &Identity,
    signed: Option<pb::OfficeSignature>,
    asked: Asked,
    now_ms: i64,
    max_skew_ms: u64,
) -> Result<SignedRequest, CityError> {
    let invalid = |why: String| CityError::from(ValidationError::single("signed", why));
    let cert = req.peer_certs().and_then(|chain| chain.first().map(|c| c.as_ref().to_vec()));
    let (Some(cert), Some(s)) = (cert, signed.as_ref()) else {
        return match identity {
            Identity::Insecure => Ok(SignedRequest::unsigned(asked, &identity.to_string(), now_ms)),
            _ => Err(invalid(
                "the request is not signed: the data office signs each correction, settlement and \
                 discard with its certificate's key (wardsync edit, conflicts resolve and quarantine \
                 discard do: update the client)"
                    .into(),
            )),
        };
    };
    let id: [u8; 16] =
        s.request_id.as_slice().try_into().map_err(|_| invalid("request_id must be 16 bytes".into()))?;
    let request = OfficeRequest { id, signed_at_ms: s.signed_at_ms, asked };
    request.fresh(now_ms, max_skew_ms).map_err(invalid)?;
    let key = crate::auth::key_id(&cert).map_err(CityError::PermissionDenied)?;
    crate::auth::verify(&cert, &request.message(&key), &s.signature).map_err(|_| {
        CityError::PermissionDenied(
            "the request's signature is not the key of the certificate it came with (signed by another key, \
             or altered on the way)"
                .into(),
        )
    })?;
    Ok(SignedRequest {
        request,
        by: identity.to_string(),
        key,
        signature: s.signature.clone(),
        cert,
        cursors: Vec::new(),
        relayed_by: None,
    })
}
