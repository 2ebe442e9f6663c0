//! How many changes to other wards' records a ward may send in a day, in
//! batches or repairs: a put naming another ward as owner, or a put or
//! delete of a record the city holds as another ward's. The only such changes the city applies are civil-status
//! registrations and residence transfers into the sender, a few a day in
//! the largest ward; past the budget a ward's further ones are kept in the
//! quarantine for the data office instead of being judged, so a hostile
//! ward can touch only so many of the city's citizens a day. Counted in
//! the ward's replication state, in the same write as the changes it
//! counts: it survives restarts, and city processes sharing a database
//! share it. (The per-citizen bound,
//! [`crate::model::civil::REGISTRATIONS_PER_DAY`], is counted from the log.)

use serde::{Deserialize, Serialize};

use crate::model::WardCode;
use crate::model::civil::DAY_MS;

/// Changes to other wards' records one ward may send in a day (UTC).
pub const PER_DAY: u64 = if cfg!(test) { 10 } else { 2_000 };

/// A ward's changes to other wards' records on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// The day counted, in days since the epoch (UTC).
    pub day: i64,
    /// Changes to other wards' records taken on that day.
    pub spent: u64,
}

impl Budget {
    /// Spends one change at city time `now_ms`; false if the day's budget
    /// is spent (and nothing is counted).
    pub fn spend(&mut self, now_ms: i64) -> bool {
        // (Any other day starts afresh: the city's clock, not a ward's, so
        // no ward can move it; one that stepped forward and back again
        // locks no ward out until that day.)
        let day = now_ms.div_euclid(DAY_MS);
        if day != self.day {
            *self = Budget { day, spent: 0 };
        }
        if self.spent >= PER_DAY {
            return false;
        }
        self.spent += 1;
        true
    }
}

/// Why a change past `ward`'s budget is kept for the data office.
pub fn spent(ward: &WardCode) -> String {
    format!(
        "ward {ward} sent more than {PER_DAY} changes to other wards' records (registrations on their \
         citizens) in a day: the data office reviews the rest, and retries those it finds sound"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_holds_so_many_and_the_next_day_starts_afresh() {
        let mut b = Budget::default();
        let noon = 20_000 * DAY_MS + DAY_MS / 2;
        assert!((0..PER_DAY).all(|_| b.spend(noon)));
        assert!(!b.spend(noon + 1), "past the budget");
        assert!(!b.spend(noon + DAY_MS / 2 - 1), "the same day, to its last ms");
        assert_eq!(b, Budget { day: 20_000, spent: PER_DAY }, "a refusal spends nothing");
        assert!(b.spend(noon + DAY_MS / 2), "the next day");
        assert_eq!(b.spent, 1);
        // A day far ahead (the city's clock stepped forward), then back.
        assert!(b.spend(noon + 10_000 * DAY_MS));
        assert!((0..PER_DAY).all(|_| b.spend(noon)), "locked out until that day");
    }
}
