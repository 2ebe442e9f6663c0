//! The audit's check of what the city wrote itself. Each change must come
//! from an office request kept beside it, signed with the key of a
//! certificate the CA issued, valid when it signed, to a client the city's
//! configuration makes an office editor, whose identity the log names with
//! the request's id (so that deleting a request leaves a change naming
//! evidence that is gone); no two requests share an id; each was applied
//! within the clock skew of when it was signed; and its changes are
//! exactly what the city derives from it on the record as its log left it
//! just before ([`OfficeRequest::derive`], the function the city derived
//! them with), which the record pass replays. A change the city wrote with
//! no request, unless older than the first signed request this database
//! (or an earlier clean run) holds, is a row inserted or its request
//! deleted.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Audit, Checkpoint, Trust};
use crate::auth::{Identity, Peer, Role};
use crate::model::office_request::{Asked, Derived};
use crate::model::signed::hex;
use crate::model::{Change, RecordKey};
use crate::store::{LoggedChange, REQUEST_MARK, SignedRequest};

/// What the office's requests are judged by, from the city's configuration.
#[derive(Debug, Clone, Default)]
pub struct OfficeRules {
    /// Who may edit (`[roles]`); `None`: not checked (no configuration given).
    pub access: Option<crate::auth::Access>,
    /// The clock skew limit (`max_clock_skew_ms`).
    pub max_skew_ms: u64,
    /// The city's certificates (key id, DER), which its statements of what
    /// it derived from a request are checked against.
    pub city_keys: Vec<(crate::model::signed::KeyId, Vec<u8>)>,
}

/// A log entry a request derived, until the record pass replays it.
pub(super) struct Pending {
    request: Arc<SignedRequest>,
    /// Its place among the request's changes.
    index: usize,
    /// A write a ward gave back after the city lost it.
    relayed: bool,
}

/// What a change the city wrote says of where it came from.
fn names_request(by: &str) -> bool {
    by.contains(&format!("[{REQUEST_MARK}"))
}

impl Audit {
    /// Checks one office request: its signature and signer, its id, and
    /// that the changes it names are the city's, submitted as it; they are
    /// replayed in the record pass.
    pub(super) fn request(&mut self, r: SignedRequest) {
        let first = r.cursors.first().copied().unwrap_or(0);
        let name = format!("office request at log entry {first}");
        let taken: Vec<(u64, Option<(String, Change)>)> =
            r.cursors.iter().map(|c| (*c, self.office_changes.get(c).cloned())).collect();
        let expected = r.change_by();
        for (cursor, held) in &taken {
            let Some((by, _)) = held else {
                let why =
                    format!("names log entry {cursor}, which is not a change the city wrote (rows edited)");
                return self.finding(name, why);
            };
            if *by != expected {
                let why =
                    format!("it says {by:?} asked for it, and the request is {:?}'s (a row edited)", r.by);
                return self.finding(format!("log entry {cursor}"), why);
            }
        }
        // (Its changes, the city's, submitted as it, are judged here,
        // proven or not: never again as unrequested.)
        for c in &r.cursors {
            self.office_changes.remove(c);
        }
        if r.signature.is_empty() && matches!(self.trust, Trust::Ca(_)) {
            // Kept by a city without TLS: history, if all of it is older
            // than every signed one.
            let last = r.cursors.iter().copied().max().unwrap_or(0);
            self.unsigned_requests.push((last, r.cursors.len() as u64));
            return;
        }
        if let Err(why) = self.signed_by_office(&r) {
            return self.finding(name, why);
        }
        if !r.signature.is_empty() {
            self.first_request = Some(self.first_request.map_or(first, |f| f.min(first)));
            if !self.request_ids.insert(r.request.id) {
                let why = "its id is another request's: a request replayed (a row inserted)";
                return self.finding(name, why);
            }
        }
        let skew = self.office.max_skew_ms.saturating_mul(2);
        for (cursor, (_, change)) in taken.iter().filter_map(|(c, h)| Some((c, h.as_ref()?))) {
            let off = (change.stamp.hlc.wall_ms as i64).abs_diff(r.request.signed_at_ms);
            if !r.signature.is_empty() && off > skew {
                let why = format!(
                    "written {} s from when the office signed its request (a request replayed?)",
                    off / 1000
                );
                return self.finding(format!("log entry {cursor}"), why);
            }
        }
        if !r.signature.is_empty() {
            self.report.office_requests += 1;
        }
        let relayed = r.relayed_by.is_some();
        let request = Arc::new(r);
        for (index, (cursor, _)) in taken.into_iter().enumerate() {
            self.pending.insert(cursor, Pending { request: request.clone(), index, relayed });
        }
    }

    /// Checks that `r` was signed by an office editor as the identity it
    /// names, with a key the CA certifies, valid when it signed (under
    /// [`Trust::Unsigned`]: not signed).
    fn signed_by_office(&self, r: &SignedRequest) -> Result<(), String> {
        let roots = match &self.trust {
            Trust::Unsigned if r.signature.is_empty() => return Ok(()),
            Trust::Unsigned => return Err("signed, where a city without TLS signs nothing".into()),
            Trust::Ca(roots) => roots,
        };
        if crate::auth::key_id(&r.cert)? != r.key {
            return Err(format!("its certificate does not certify key {}", hex(&r.key.0)));
        }
        crate::auth::issued_by(roots, &r.cert)?;
        crate::auth::valid_at(&r.cert, r.request.signed_at_ms)?;
        let peer = Peer::from_der(&r.cert).map_err(|e| e.to_string())?;
        match &peer.identity {
            Identity::Named(n) if *n == r.by => {}
            other => return Err(format!("its certificate is {other}'s, and it names {}", r.by)),
        }
        if let Some(access) = &self.office.access
            && !access.roles_of(&peer.identity).contains(&Role::OfficeEditor)
        {
            return Err(format!("{} is not an office editor in the city's configuration ([roles])", r.by));
        }
        crate::auth::verify(&r.cert, &r.request.message(&r.key), &r.signature)
            .map_err(|e| format!("its signature does not hold ({e}): a row edited"))
    }

    /// Every change the city wrote itself came with a request: one naming
    /// a request must have it; from the first signed request on (or from
    /// where an earlier clean run found them), every one must (one a ward
    /// gave back after a loss of the city's is kept with its request too).
    pub(super) fn check_unrequested(&mut self, since: &Checkpoint) {
        let from = match (since.office_from, self.first_request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (last, count) in std::mem::take(&mut self.unsigned_requests) {
            if from.is_none_or(|f| last < f) {
                self.report.unsigned_entries += count;
            } else {
                self.finding(
                    format!("office request naming log entry {last}"),
                    "not signed: only a city without TLS (insecure_dev) keeps unsigned requests",
                );
            }
        }
        for (cursor, (by, _)) in std::mem::take(&mut self.office_changes) {
            let why = if names_request(&by) {
                "names an office request no longer kept (its row deleted)"
            } else if from.is_none_or(|f| cursor < f) {
                self.report.unsigned_entries += 1;
                continue;
            } else {
                "written by the city, and no office request asked for it (a row inserted, or its request deleted)"
            };
            self.finding(format!("log entry {cursor}"), why);
        }
    }

    /// In the record pass: each change of `key`'s `history` an office
    /// request derived is what the city derives from that request on the
    /// record as the log before it left it.
    pub(super) fn replay_requests(&mut self, key: &RecordKey, history: &[LoggedChange]) {
        let mut derived: HashMap<u64, Option<Derived>> = HashMap::new();
        for (i, entry) in history.iter().enumerate() {
            let Some(p) = self.pending.remove(&entry.cursor) else { continue };
            // A write a ward gave back, the city having lost what it was
            // derived on: the city took it on its own signed statement of
            // what it derived (`city::relay`), kept beside it and checked
            // again here; the office's signature is checked above.
            if p.relayed {
                let stated = self.stated_derived(entry, &p.request.request.id);
                self.request_replayed(entry.cursor, stated, &p.request);
                continue;
            }
            let before = crate::store::replay_state(&history[..i]);
            if p.index == 0 {
                let discarded = match &p.request.request.asked {
                    Asked::Discard { ward, seq, .. } => self.discarded.get(&(ward.clone(), *seq)),
                    _ => None,
                };
                let writes =
                    p.request.request.derive(key, &before, &self.policies, discarded).unwrap_or_default();
                let mut writes = writes.into_iter();
                for c in &p.request.cursors {
                    derived.insert(*c, writes.next());
                }
                if writes.next().is_some() {
                    let why = "the city derives more changes from it than it names (rows deleted)";
                    self.finding(format!("office request at log entry {}", entry.cursor), why);
                }
            }
            let matches = derived.remove(&entry.cursor).flatten().is_some_and(|d| {
                let made = &entry.change;
                let as_derived = Change { fields: d.fields.clone(), op: d.op.clone(), ..made.clone() };
                made.fields == d.fields
                    && std::mem::discriminant(&made.op) == std::mem::discriminant(&d.op)
                    && made.values() == as_derived.values()
                    && made.context == d.context.unwrap_or(before.seen)
            });
            self.request_replayed(entry.cursor, matches, &p.request);
        }
    }

    /// Counts the change at `cursor` of request `r`, or names it.
    fn request_replayed(&mut self, cursor: u64, matches: bool, r: &SignedRequest) {
        match (matches, r.signature.is_empty()) {
            (true, false) => self.report.office_entries += 1,
            (true, true) => self.report.unsigned_entries += 1,
            (false, _) => {
                let why = "is not what the city derives from the office's request on the record as it \
                           stood (a row edited)";
                self.finding(format!("log entry {cursor}"), why);
            }
        }
    }

    /// After the record pass: a request's change that no record's history holds.
    pub(super) fn check_unreplayed(&mut self) {
        let left = std::mem::take(&mut self.pending).into_keys();
        let why = "an office request derived it, and its record's history does not hold it (rows edited)";
        self.at_cursors(left, "log entry", why);
    }
}
