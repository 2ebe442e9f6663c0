//! How many changes to other wards' records a ward may send in a day. The
//! only such changes the city applies are civil-status registrations (a
//! residence transfer names the sender as owner), a few a day in the
//! largest ward; past the budget a
//! ward's further ones are kept in the quarantine for the data office
//! instead of being judged, so a hostile ward can touch only so many of the
//! city's citizens a day. Counted per city process, since it started (the
//! per-citizen bound, [`crate::model::civil::REGISTRATIONS_PER_DAY`], is
//! counted from the city's log).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::model::{Op, WardCode};
use crate::proto::pb;
use crate::store::Incoming;

/// Changes to other wards' records one ward may send in a day.
pub const PER_DAY: u32 = 2_000;

/// The budget of every ward.
#[derive(Clone)]
pub struct Budget(Arc<DefaultKeyedRateLimiter<WardCode>>);

impl Default for Budget {
    fn default() -> Self {
        let per_day = NonZeroU32::new(PER_DAY).expect("not 0");
        let quota =
            Quota::with_period(Duration::from_secs(86_400) / PER_DAY).expect("not 0").allow_burst(per_day);
        Budget(Arc::new(RateLimiter::keyed(quota)))
    }
}

impl Budget {
    /// `changes` from `ward` (whose changes up to `applied` the city
    /// already took), each change to another ward's record past the
    /// budget turned into one the city keeps raw, with the reason.
    pub fn spend(&self, ward: &WardCode, applied: u64, changes: Vec<Incoming>) -> Vec<Incoming> {
        changes
            .into_iter()
            .map(|incoming| match incoming {
                Incoming::Change(c)
                    if c.seq > applied
                        && matches!(&c.op, Op::Put(r) if &r.ward != ward)
                        && self.0.check_key(ward).is_err() =>
                {
                    tracing::warn!(%ward, seq = c.seq, "a ward's change to another ward's record is past its daily budget: quarantined");
                    Incoming::Malformed {
                        seq: c.seq,
                        reason: format!(
                            "ward {ward} sent more than {PER_DAY} registrations on other wards' citizens in a \
                             day: the data office reviews the rest, and retries those it finds sound"
                        ),
                        raw: prost::Message::encode_to_vec(&pb::Change::from(&c)),
                    }
                }
                other => other,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Change, Hlc, Stamp, VersionVector};

    fn put_of(owner: &str, seq: u64) -> Incoming {
        let r = crate::generate::sample(&WardCode::parse(owner).unwrap(), 1, 5).remove(0);
        Incoming::Change(Change {
            seq,
            written_at_ms: 0,
            key: r.key().unwrap(),
            stamp: Stamp { hlc: Hlc::default(), writer: "00145".into() },
            context: VersionVector::default(),
            fields: vec![],
            op: Op::Put(r),
        })
    }

    #[test]
    fn a_ward_changes_only_so_many_other_wards_records_a_day() {
        let (budget, ward) = (Budget::default(), WardCode::parse("00145").unwrap());
        let theirs: Vec<Incoming> = (1..=u64::from(PER_DAY) + 1).map(|seq| put_of("00082", seq)).collect();
        // Already applied (re-sent): not spent.
        let again = budget.spend(&ward, u64::from(PER_DAY) + 1, theirs.clone());
        assert!(again.iter().all(|c| matches!(c, Incoming::Change(_))));
        let out = budget.spend(&ward, 0, theirs);
        let kept = out.iter().filter(|c| matches!(c, Incoming::Malformed { .. })).count();
        assert_eq!(kept, 1, "the one past the budget");
        let Some(Incoming::Malformed { seq, reason, raw }) = out.last() else { panic!("{:?}", out.last()) };
        assert_eq!(*seq, u64::from(PER_DAY) + 1);
        assert!(reason.contains("more than 2000 registrations on other wards' citizens"), "{reason}");
        assert!(crate::proto::change_from_pb(prost::Message::decode(raw.as_slice()).unwrap()).is_ok());
        // Its own records: never spent.
        let own = budget.spend(&ward, 0, vec![put_of("00145", 1)]);
        assert!(matches!(own[0], Incoming::Change(_)));
        // Another ward's budget is its own.
        let other = budget.spend(&WardCode::parse("09784").unwrap(), 0, vec![put_of("00082", 1)]);
        assert!(matches!(other[0], Incoming::Change(_)));
    }
}
