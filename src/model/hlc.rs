//! Hybrid logical clocks and the stamps and version vectors built on them.
//!
//! An [`Hlc`] is a wall-clock time in milliseconds plus a logical counter:
//! it follows physical time but never goes backwards and always moves past
//! every clock it has observed, so causally later events get larger stamps
//! even across machines whose clocks disagree a little.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A node's stored clock further ahead of its wall clock than this (the
/// city's default skew limit) was set from a wrong time, since corrected
/// ([`Hlc::recover`]).
pub const CLOCK_AHEAD_LIMIT_MS: u64 = 5 * 60 * 1000;

/// A hybrid logical clock value. Ordered by wall time, then counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Orders events within one millisecond.
    pub logical: u32,
}

impl Hlc {
    /// The smallest clock value after `wall_ms`.`logical`: the counter
    /// moves on, or, at its largest, the next millisecond begins (it never
    /// wraps around, whatever a peer sent).
    fn after(wall_ms: u64, logical: u32) -> Hlc {
        match logical.checked_add(1) {
            Some(logical) => Hlc { wall_ms, logical },
            None if wall_ms == u64::MAX => Hlc { wall_ms, logical: u32::MAX },
            None => Hlc { wall_ms: wall_ms + 1, logical: 0 },
        }
    }

    /// The clock for a new local event at wall time `now_ms`.
    pub fn tick(self, now_ms: u64) -> Hlc {
        if now_ms > self.wall_ms {
            Hlc { wall_ms: now_ms, logical: 0 }
        } else {
            Hlc::after(self.wall_ms, self.logical)
        }
    }

    /// This node's clock, unless it is more than `limit_ms` ahead of the
    /// wall clock `now_ms` (it was set from a wrong time, since corrected):
    /// then the wall clock, so the node's new writes are not refused as
    /// "ahead" until real time catches up. True if it was reset. A
    /// writer's stamps on one record must still grow: callers stamp past
    /// what the record has seen of them.
    pub fn recover(self, now_ms: u64, limit_ms: u64) -> (Hlc, bool) {
        if self.wall_ms > now_ms.saturating_add(limit_ms) {
            (Hlc { wall_ms: now_ms, logical: 0 }, true)
        } else {
            (self, false)
        }
    }

    /// The clock after receiving `remote` at wall time `now_ms`: past both.
    pub fn observe(self, remote: Hlc, now_ms: u64) -> Hlc {
        let wall = self.wall_ms.max(remote.wall_ms).max(now_ms);
        match (wall == self.wall_ms, wall == remote.wall_ms) {
            (true, true) => Hlc::after(wall, self.logical.max(remote.logical)),
            (true, false) => Hlc::after(wall, self.logical),
            (false, true) => Hlc::after(wall, remote.logical),
            (false, false) => Hlc { wall_ms: wall, logical: 0 },
        }
    }
}

/// Who wrote a change: a ward's commune code, or `city` for the data office.
pub type WriterId = String;

/// The writer id of the city (data-office corrections and resolutions).
pub const CITY_WRITER: &str = "city";

/// When and by whom a value was written. Totally ordered: clock, then writer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// The writer's clock at the write.
    pub hlc: Hlc,
    /// The writer.
    pub writer: WriterId,
}

/// For each writer, the latest of its writes that a replica has seen.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VersionVector(pub BTreeMap<WriterId, Hlc>);

impl VersionVector {
    /// True if the write stamped `s` is included.
    pub fn has_seen(&self, s: &Stamp) -> bool {
        self.0.get(&s.writer).is_some_and(|h| *h >= s.hlc)
    }

    /// True if everything `other` includes is included here too.
    pub fn covers(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(w, h)| self.0.get(w).is_some_and(|mine| mine >= h))
    }

    /// Includes the write stamped `s`.
    pub fn add(&mut self, s: &Stamp) {
        let e = self.0.entry(s.writer.clone()).or_default();
        *e = (*e).max(s.hlc);
    }

    /// The vector as one line a person can copy: `writer@wall.logical`,
    /// comma-separated (`00082@1780000000000.0,city@1780000000500.2`).
    pub fn to_token(&self) -> String {
        let parts: Vec<String> =
            self.0.iter().map(|(w, h)| format!("{w}@{}.{}", h.wall_ms, h.logical)).collect();
        parts.join(",")
    }

    /// Reads a vector written by [`VersionVector::to_token`].
    pub fn from_token(token: &str) -> Result<VersionVector, String> {
        let bad = |part: &str| format!("{part:?} is not writer@wall.logical (as `wardsync get` prints it)");
        let mut v = VersionVector::default();
        for part in token.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (writer, clock) = part.split_once('@').ok_or_else(|| bad(part))?;
            let (wall, logical) = clock.split_once('.').ok_or_else(|| bad(part))?;
            let hlc = Hlc {
                wall_ms: wall.parse().map_err(|_| bad(part))?,
                logical: logical.parse().map_err(|_| bad(part))?,
            };
            v.0.insert(writer.to_string(), hlc);
        }
        Ok(v)
    }

    /// Includes everything `other` includes.
    pub fn merge(&mut self, other: &VersionVector) {
        for (w, h) in &other.0 {
            let e = self.0.entry(w.clone()).or_default();
            *e = (*e).max(*h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_wall_time_and_never_go_back() {
        let a = Hlc::default().tick(1000);
        assert_eq!(a, Hlc { wall_ms: 1000, logical: 0 });
        let b = a.tick(900); // wall clock stepped back
        assert!(b > a);
        assert_eq!(b, Hlc { wall_ms: 1000, logical: 1 });
        assert_eq!(b.tick(2000), Hlc { wall_ms: 2000, logical: 0 });
    }

    #[test]
    fn observing_moves_past_both_clocks() {
        let local = Hlc { wall_ms: 1000, logical: 3 };
        let ahead = Hlc { wall_ms: 5000, logical: 7 };
        let seen = local.observe(ahead, 1200);
        assert!(seen > ahead && seen > local);
        assert_eq!(seen, Hlc { wall_ms: 5000, logical: 8 });
        assert_eq!(local.observe(Hlc { wall_ms: 1000, logical: 9 }, 10), Hlc { wall_ms: 1000, logical: 10 });
        assert_eq!(local.observe(ahead, 9000), Hlc { wall_ms: 9000, logical: 0 });
    }

    #[test]
    fn a_counter_at_its_largest_moves_to_the_next_millisecond_instead_of_wrapping() {
        let full = Hlc { wall_ms: 1000, logical: u32::MAX };
        let next = full.tick(10);
        assert!(next > full, "{next:?}");
        assert_eq!(next, Hlc { wall_ms: 1001, logical: 0 });
        let seen = Hlc { wall_ms: 1000, logical: 3 }.observe(full, 10);
        assert!(seen > full, "{seen:?}");
        let both = full.observe(full, 1000);
        assert!(both > full);
        let top = Hlc { wall_ms: u64::MAX, logical: u32::MAX };
        assert_eq!(top.tick(0), top, "the very last value stays (saturates) rather than wrapping to 0");
    }

    #[test]
    fn a_version_vector_survives_its_printed_token() {
        let mut v = VersionVector::default();
        v.add(&Stamp { hlc: Hlc { wall_ms: 1_780_000_000_000, logical: 0 }, writer: "00082".into() });
        v.add(&Stamp { hlc: Hlc { wall_ms: 1_780_000_000_500, logical: 2 }, writer: CITY_WRITER.into() });
        assert_eq!(v.to_token(), "00082@1780000000000.0,city@1780000000500.2");
        assert_eq!(VersionVector::from_token(&v.to_token()), Ok(v));
        assert!(VersionVector::from_token("00082@soon").unwrap_err().contains("writer@wall.logical"));
    }

    #[test]
    fn version_vectors() {
        let s = Stamp { hlc: Hlc { wall_ms: 5, logical: 0 }, writer: "00082".into() };
        let mut v = VersionVector::default();
        assert!(!v.has_seen(&s));
        v.add(&s);
        assert!(v.has_seen(&s));
        assert!(!v.has_seen(&Stamp { hlc: Hlc { wall_ms: 6, logical: 0 }, ..s.clone() }));
        let mut w = VersionVector::default();
        w.add(&Stamp { hlc: Hlc { wall_ms: 9, logical: 0 }, writer: CITY_WRITER.into() });
        w.merge(&v);
        assert!(w.has_seen(&s));
    }
}
