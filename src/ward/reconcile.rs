//! What a `Welcome` tells the ward of where it stands against the city,
//! taken in before anything is sent: changes the city acknowledged and
//! lost (a refill of the city), a log that ends before what the ward
//! merged, a city ahead of anything this ward numbered (it lost data: its
//! queue moves past the city's), and a store forked from the city's chain
//! (put back to an older copy: its queue is renumbered after the city's,
//! and what its lost copy wrote taken back).

use super::replicator::Replicator;
use crate::model::{Hlc, signed};
use crate::proto::pb;
use crate::store::{Lost, Renumbering};

impl Replicator {
    /// Takes in what `Welcome` said: the city's last durably applied
    /// sequence, and how many acknowledged changes it found it had lost.
    /// A city ahead of anything this ward numbered means this ward lost
    /// data: its queue is renumbered past the city's (never reusing a
    /// number the city applied) and made durable before anything is sent.
    pub(super) async fn reconcile(&mut self, welcome: &pb::Welcome) -> Result<(), String> {
        let pb::Welcome {
            last_applied_seq: applied,
            lost_changes: lost,
            log_cursor,
            log_lost,
            lost_found_at_ms: lost_found_at,
            ..
        } = *welcome;
        let mut refill = false;
        if lost > 0 {
            self.link.city_lost_changes.inc_by(lost);
            tracing::error!(ward = %self.ward, lost, resumed_after = applied,
                "the city no longer holds changes it acknowledged to this ward (its database was restored from an older backup, or lost to a disk fault); replication resumes after them, and this ward's records refill the city");
            refill = true;
        }
        if applied < self.store.acked_seq() {
            tracing::error!(ward = %self.ward, city_applied = applied, acked = self.store.acked_seq(),
                "the city reports fewer applied changes than it acknowledged before; this ward's records refill the city");
            refill = true;
        }
        let merged = self.store.downstream_cursor();
        if log_lost || log_cursor < merged {
            tracing::error!(ward = %self.ward, log_end = log_cursor, merged,
                "the city's log ends before changes this ward merged from it: the city lost them (restored from an older backup?); this ward's records refill the city, and changes made elsewhere are followed from the city's log end");
            self.store
                .rewind_downstream(log_cursor)
                .map_err(|e| format!("cannot move the downstream cursor: {e}"))?;
            refill = true;
        }
        let seen = self.store.loss_seen().map_err(|e| format!("cannot read this ward's store: {e}"))?;
        if lost_found_at > seen {
            // A loss found when this ward connected before (and missed the
            // answer that said so), or just now: refilled once.
            tracing::warn!(ward = %self.ward, found_at_ms = lost_found_at,
                "the city lost data of this ward's that this ward has not refilled yet; it refills it now");
            self.store.see_loss(lost_found_at).map_err(|e| format!("cannot note the city's loss: {e}"))?;
            refill = true;
        }
        if refill {
            self.store
                .set_refill_due(Some(Lost::City))
                .map_err(|e| format!("cannot note the refill due: {e}"))?;
            self.store.flush().await.map_err(|e| format!("cannot note the refill due: {e}"))?;
        }
        if let Some(clock) = &welcome.clock {
            self.store.observe_clock(Hlc { wall_ms: clock.wall_ms, logical: clock.logical });
        }
        let city_link = signed::hash_from(&welcome.link);
        let last = self.store.last_seq();
        if applied <= last {
            return self.check_fork(applied, city_link, &welcome.link_key).await;
        }
        // The records it lost come back from the city's copy (the refill
        // due is stored with the new numbering).
        let moved = self
            .store
            .move_past(applied, city_link, Renumbering::Behind)
            .map_err(|e| format!("cannot move the numbering past the city's: {e}"))?;
        self.store.flush().await.map_err(|e| format!("cannot store the new numbering: {e}"))?;
        self.floor = self.store.last_seq();
        tracing::error!(ward = %self.ward, city_applied = applied, last_seq = last, renumbered = moved,
            "the city has applied changes up to a sequence this ward never reached: this ward lost data (a disk fault, or a restored backup); its numbering moves past the city's, its queued changes are renumbered after it, and its records are refilled from the city's copy");
        Ok(())
    }

    /// The city applied this ward's changes up to `applied`, whose link
    /// there is `theirs`: if this store's own link there differs, the city
    /// applied other changes under those numbers (this store was put back
    /// to an older copy and numbered new changes again). Then its queued
    /// changes are renumbered after the city's, chained on the city's
    /// link, and its records taken back from the city (the lost
    /// incarnation's writes), before anything is sent. Where either link
    /// is not known (a store or a city from before chains), queued changes
    /// the city says it applied are not taken for acknowledged on faith:
    /// they are renumbered and sent again (the same changes merge as
    /// nothing new).
    async fn check_fork(
        &mut self,
        applied: u64,
        theirs: Option<signed::Hash>,
        key: &[u8],
    ) -> Result<(), String> {
        let acked = self.store.acked_seq();
        if applied < acked {
            return Ok(()); // the city lost data: judged by the receipts
        }
        let key = signed::KeyId(signed::hash_from(key).unwrap_or_default());
        let ours = self.store.link_at(applied, &key).map_err(|e| format!("cannot read the outbox: {e}"))?;
        let why = match (ours, theirs) {
            (Some(o), Some(t)) if o == t => return Ok(()),
            (Some(_), Some(_)) => Renumbering::Fork,
            // Nothing queued the city's word would acknowledge.
            _ if applied == acked => return Ok(()),
            _ => Renumbering::Unverifiable,
        };
        let moved = self
            .store
            .renumber_after(applied, theirs, why)
            .map_err(|e| format!("cannot renumber the queued changes after the city's: {e}"))?;
        self.store.flush().await.map_err(|e| format!("cannot store the new numbering: {e}"))?;
        self.floor = self.store.last_seq();
        if why == Renumbering::Fork {
            tracing::error!(ward = %self.ward, city_applied = applied, renumbered = moved,
                "this ward's store forked: the city applied other changes under numbers up to {applied} than this store holds (it was put back to an older copy, a VM snapshot or a backup, and numbered new changes again); its queued changes are renumbered after the city's, and what the lost copy wrote is taken back from the city");
        } else {
            tracing::warn!(ward = %self.ward, city_applied = applied, renumbered = moved,
                "the city says it applied this ward's changes up to {applied}, and neither side's chain link there is known (a store or a city from before chains): the changes queued up to it are sent again after the city's numbering instead of being taken for acknowledged, and the records compared with the city's");
        }
        Ok(())
    }
}
