//! The audit's check of writes by others that a ward gave back in a repair
//! (the city having lost them): each must be kept with the evidence the
//! city took it on, and that evidence must still prove it. A ward's change
//! to another ward's record: its author's own signature over the content
//! hash of this very change (with the context it signed), by a key of a
//! certificate the CA issued to that ward. An office write: the city's own
//! statement, signed with a key of a city certificate given to the audit,
//! that it derived this very change (its content hash as logged) from the
//! request kept beside it, whose signature the office pass checks.

use super::{Audit, Trust};
use crate::auth::Identity;
use crate::model::Change;
use crate::model::signed::{Hash, authored_message, content_hash};
use crate::store::{Authorship, LoggedChange, RELAYING_MARK};

/// True if a log entry's `by` names a ward's signed change relayed by another.
pub(super) fn names_relay(by: &str) -> bool {
    by.contains(&format!("({RELAYING_MARK}"))
}

/// The city's statement kept with a relayed office write.
pub(super) struct Stated {
    request: [u8; 16],
    derived: Hash,
    city: Vec<u8>,
}

impl Audit {
    /// One piece of kept evidence, by the cursor of the write it was taken
    /// for: a ward's, checked now against the relayed entry the log pass
    /// read; the office's, kept for the record pass.
    pub(super) fn relayed(&mut self, cursor: u64, evidence: Authorship) {
        let name = format!("evidence of the relayed write at log entry {cursor}");
        match evidence {
            Authorship::Office { request, derived, city } => {
                self.stated.insert(cursor, Stated { request: request.request.id, derived, city });
            }
            Authorship::Ward { hash, key, cert, signature, sent } => {
                let Some(change) = self.relayed_changes.remove(&cursor) else {
                    return self
                        .finding(name, "the log entry it names is no write relayed by a ward (rows edited)");
                };
                let as_signed = Change { context: sent.unwrap_or_else(|| change.context.clone()), ..change };
                let checked = match &self.trust {
                    _ if content_hash(&as_signed, &key) != hash => {
                        Err("is not of the change logged (a row edited)".to_string())
                    }
                    Trust::Unsigned => Ok(false),
                    Trust::Ca(roots) => crate::auth::issued_by(roots, &cert)
                        .and_then(|_| match Identity::from_der(&cert)? {
                            Identity::Ward(w) if w.as_str() == as_signed.stamp.writer => Ok(()),
                            other => Err(format!("is signed by {other}, not by its writer")),
                        })
                        .and_then(|_| match crate::auth::key_id(&cert)? == key {
                            true => Ok(()),
                            false => Err("its certificate does not certify the key it names".into()),
                        })
                        .and_then(|_| crate::auth::verify(&cert, &authored_message(&hash), &signature))
                        .map(|_| true),
                };
                match checked {
                    Ok(true) => {
                        self.report.signed_entries += 1;
                        self.report.authored_checked += 1;
                    }
                    Ok(false) => self.report.unsigned_entries += 1,
                    Err(why) => self.finding(name, why),
                }
            }
        }
    }

    /// After the relayed evidence: a relayed ward's write kept without it.
    pub(super) fn check_relays_kept(&mut self) {
        let left = std::mem::take(&mut self.relayed_changes).into_keys();
        let why = "another ward's write given back in a repair, and the evidence it was taken on is not kept \
                   (its row deleted)";
        self.at_cursors(left, "log entry", why);
    }

    /// In the record pass: whether the city's statement kept with the
    /// relayed office write `entry` of request `request` proves it.
    pub(super) fn stated_derived(&mut self, entry: &LoggedChange, request: &[u8; 16]) -> bool {
        let Some(s) = self.stated.remove(&entry.cursor) else {
            let why = "an office write given back in a repair, and the city's statement it was taken on is \
                       not kept (its row deleted)";
            self.finding(format!("log entry {}", entry.cursor), why);
            return false;
        };
        let logged = content_hash(&entry.change, &Default::default());
        if s.request != *request || s.derived != logged {
            return false;
        }
        let insecure = matches!(self.trust, Trust::Unsigned);
        match super::super::receipts::derived_checked(
            &s.city,
            (request, &logged),
            &self.office.city_keys,
            insecure,
        ) {
            Ok(()) => true,
            Err(why) => {
                self.finding(format!("the city's statement kept with log entry {}", entry.cursor), why);
                false
            }
        }
    }

    /// After the record pass: statements kept for no relayed office write.
    pub(super) fn check_stated_used(&mut self) {
        let left = std::mem::take(&mut self.stated).into_keys();
        let why = "the log entry it names is no office write given back in a repair (rows edited)";
        self.at_cursors(left, "evidence of the relayed write at log entry", why);
    }
}
