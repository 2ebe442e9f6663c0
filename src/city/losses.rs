//! What a connecting ward's `Hello` says the city lost, judged on the
//! city's own evidence ([`super::receipts`]).
//!
//! A ward that says the city acknowledged more than it holds, or that the
//! change it merged at its cursor is no longer in the city's log, is
//! always followed where that costs no one else: its numbering resumes
//! after what it says was acknowledged (a city that lost data never wedges
//! a ward), its downstream restarts from the log's end. But a loss is
//! *recorded*, which opens the ward's refill window (the exception that
//! lets a repair carry others' writes and cut claims), only as far as the
//! city's own receipt proves: nothing is taken on the ward's word.

use super::CityError;
use super::ingest::SyncService;
use super::receipts::WardReceipts;
use crate::clock::now_ms;
use crate::model::WardCode;
use crate::proto::pb;
use crate::store::AckClaim;

// Sequence numbers at or above this are refused as claims, leaving room
// to number what follows.
use super::arrival::MAX_SEQ;

/// What the city found it lost, as it tells the ward in `Welcome`.
pub(super) struct Found {
    /// Acknowledged changes the city no longer holds (proven or not):
    /// the ward resumes after them and refills what it can.
    pub lost_changes: u64,
    /// The end of the city's log.
    pub log_cursor: u64,
    /// The ward's downstream cursor is past the log, or names another
    /// change: it restarts from the log's end.
    pub log_lost: bool,
    /// The ward's receipts from now on (its loss generation, and where its
    /// numbering last moved on its word, as they stand).
    pub receipts: WardReceipts,
}

impl SyncService {
    /// Judges what `hello` says the city lost (see the module docs).
    pub(super) async fn judge_losses(&self, ward: &WardCode, hello: &pb::Hello) -> Result<Found, CityError> {
        let (held, _) = self.store.resume_point(ward).await?;
        let before = self.ward_receipts(ward);
        let lost_changes = self.find_lost(ward, hello, held, &before).await?;
        let log_cursor = self.store.log_end().await?;
        let at = hello.downstream_cursor;
        let log_lost = at > log_cursor
            || (hello.downstream_check != 0 && self.logged_check(at).await? != Some(hello.downstream_check));
        if log_lost {
            let proven = hello.downstream_check != 0
                && before.proves_downstream(at, hello.downstream_check, &hello.downstream_receipt);
            if proven {
                self.store.log_lost(ward, now_ms()).await?;
                tracing::error!(%ward, merged = at, log_end = log_cursor,
                    "the ward merged a change the city's log no longer holds (its receipt shows the city logged it): the city lost logged changes (its database was restored from an older backup?); the ward refills it");
            } else {
                self.unproven_claim(ward);
                tracing::warn!(%ward, merged = at, log_end = log_cursor,
                    "the ward says it merged a change the city's log does not hold, and has no receipt of the city's for it (or one made with a key this city process does not have): no loss is recorded on its word; it follows the log from its end");
            }
        }
        Ok(Found { lost_changes, log_cursor, log_lost, receipts: self.ward_receipts(ward) })
    }

    /// `ward`'s receipts as its state stands: its loss generation (when the
    /// city last recorded a loss of its, 0: never), and the first sequence
    /// after the last its numbering moved past on its word.
    pub(super) fn ward_receipts(&self, ward: &WardCode) -> WardReceipts {
        let state =
            self.store.wards().into_iter().find(|(w, _)| w == ward).map(|(_, s)| s).unwrap_or_default();
        self.receipts.for_ward(ward, state.lost.found_at_ms, state.unproven_to + 1)
    }

    /// The ward says the city acknowledged its changes up to `acked`; if
    /// the city holds less (`held`), its numbering resumes after `acked`
    /// (the ward no longer holds those changes), and the loss is recorded
    /// as far as the ward's receipt proves. Returns how many the city does
    /// not hold.
    async fn find_lost(
        &self,
        ward: &WardCode,
        hello: &pb::Hello,
        held: u64,
        receipts: &WardReceipts,
    ) -> Result<u64, CityError> {
        let acked = hello.acked_seq;
        if acked <= held {
            return Ok(0);
        }
        // No ward numbers this many changes: a corrupt or forged claim, which
        // would leave no room to number the ward's next changes.
        if acked >= MAX_SEQ {
            return Err(CityError::Protocol(format!(
                "Hello.acked_seq {acked} is not a sequence number this city can have acknowledged"
            )));
        }
        let link = crate::model::signed::hash_from(&hello.acked_link);
        let claim = match receipts.proves_ack(hello.acked_receipt_seq, &hello.acked_receipt) {
            Some(from) => AckClaim { acked, proven: hello.acked_receipt_seq, from, link },
            None => AckClaim { acked, link, ..AckClaim::default() },
        };
        if let Some((first, last)) = self.store.acknowledged_lost(ward, claim, now_ms()).await? {
            tracing::error!(%ward, first, last, lost = last - first + 1,
                "the city no longer holds changes it acknowledged to this ward (its receipt shows it did; the database was restored from an older backup, or lost to a disk fault); replication resumes after them");
        }
        if acked > claim.proven.max(held) {
            self.unproven_claim(ward);
            tracing::warn!(%ward, acked, held, receipt_upto = claim.proven,
                "the ward says the city acknowledged changes it does not hold, and has no receipt of the city's for them (or one made with a key this city process does not have: processes sharing a database must share the city's key): no loss is recorded on its word; its numbering resumes after them");
        }
        Ok(acked - held)
    }

    /// Counts a loss `ward` claimed that no receipt proved (shown by
    /// `Wards`, `status`, the metrics and an alert: a ward that lost its
    /// receipts, or one trying its luck).
    fn unproven_claim(&self, ward: &WardCode) {
        self.live.lock().expect("poisoned").entry(ward.clone()).or_default().unproven_claims += 1;
    }

    /// The check of the change logged at `cursor`, if the log holds one there.
    async fn logged_check(&self, cursor: u64) -> Result<Option<u64>, CityError> {
        let at = self.store.changes_since(cursor.saturating_sub(1), 1).await?;
        Ok(at.first().filter(|l| l.cursor == cursor).map(|l| l.check()))
    }
}
