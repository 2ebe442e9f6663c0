//! The audit's check of what the city wrote itself: each change must come
//! from an office request kept beside it, signed with the key of a
//! certificate the CA issued to a client that is not a ward (the office),
//! by the identity the log names, and be what the city derives from that
//! request ([`crate::model::office_request::OfficeRequest::derives`]). A change the city wrote with no
//! request is a row inserted (or its request deleted), unless it is older
//! than the first request the database (or an earlier clean run) holds:
//! written before requests were signed.

use super::{Audit, Checkpoint, Trust};
use crate::auth::Identity;
use crate::model::Change;
use crate::model::office_request::Asked;
use crate::model::signed::hex;
use crate::store::SignedRequest;

impl Audit {
    /// Checks one office request: its signature, and the changes it derived.
    pub(super) fn request(&mut self, r: SignedRequest) {
        let first = r.cursors.first().copied().unwrap_or(0);
        let name = format!("office request at log entry {first}");
        self.first_request = Some(self.first_request.map_or(first, |f| f.min(first)));
        // (Its changes are judged here, proven or not: never again as unrequested.)
        let taken: Vec<(u64, Option<(String, Change)>)> =
            r.cursors.iter().map(|c| (*c, self.office_changes.remove(c))).collect();
        let expected = match &r.request.asked {
            Asked::Discard { ward, seq, .. } => format!("{} (discarding ward {ward}'s change {seq})", r.by),
            _ => r.by.clone(),
        };
        let mut derived: Vec<Change> = Vec::new();
        for (cursor, held) in taken {
            let Some((by, change)) = held else {
                let why =
                    format!("names log entry {cursor}, which is not a change the city wrote (rows edited)");
                return self.finding(name, why);
            };
            if by != expected {
                let why =
                    format!("it says {} asked for it, and the request is {}'s (a row edited)", by, r.by);
                return self.finding(format!("log entry {cursor}"), why);
            }
            derived.push(change);
        }
        if let Err(why) = self.signed_by_office(&r) {
            return self.finding(name, why);
        }
        let discarded = match &r.request.asked {
            Asked::Discard { ward, seq, .. } => self.discarded.get(&(ward.clone(), *seq)),
            _ => None,
        };
        let changes: Vec<&Change> = derived.iter().collect();
        if let Err(why) = r.request.derives(&changes, discarded) {
            let why = format!("is not what the office asked for: {why} (a row edited)");
            return self.finding(format!("log entries {:?}", r.cursors), why);
        }
        if !r.signature.is_empty() {
            self.report.office_requests += 1;
            self.report.office_entries += r.cursors.len() as u64;
        } else {
            self.report.unsigned_entries += r.cursors.len() as u64;
        }
    }

    /// Checks that `r` was signed by the office as the identity it names,
    /// with a key the CA certifies (under [`Trust::Unsigned`]: not signed).
    fn signed_by_office(&self, r: &SignedRequest) -> Result<(), String> {
        let roots = match &self.trust {
            Trust::Unsigned if r.signature.is_empty() => return Ok(()),
            Trust::Unsigned => return Err("signed, where a city without TLS signs nothing".into()),
            Trust::Ca(_) if r.signature.is_empty() => {
                return Err(
                    "not signed: only a city without TLS (insecure_dev) keeps unsigned requests".into()
                );
            }
            Trust::Ca(roots) => roots,
        };
        if crate::auth::key_id(&r.cert)? != r.key {
            return Err(format!("its certificate does not certify key {}", hex(&r.key.0)));
        }
        crate::auth::issued_by(roots, &r.cert)?;
        match Identity::from_der(&r.cert)? {
            Identity::Named(n) if n == r.by => {}
            other => return Err(format!("its certificate is {other}'s, and it names {}", r.by)),
        }
        crate::auth::verify(&r.cert, &r.request.message(&r.key), &r.signature)
            .map_err(|e| format!("its signature does not hold ({e}): a row edited"))
    }

    /// Every change the city wrote itself came with a request, from the
    /// first request on (or from where an earlier clean run found them).
    pub(super) fn check_unrequested(&mut self, since: &Checkpoint) {
        let from = match (since.office_from, self.first_request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (cursor, _) in std::mem::take(&mut self.office_changes) {
            if from.is_none_or(|f| cursor < f) {
                self.report.unsigned_entries += 1; // written before requests were signed
                continue;
            }
            self.finding(
                format!("log entry {cursor}"),
                "written by the city, and no office request asked for it (a row inserted, or its request deleted)",
            );
        }
    }
}
