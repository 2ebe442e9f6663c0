//! The node's two sources of nondeterminism, read in one place: the wall
//! clock and the random jitter of retry delays. A deterministic simulation
//! replaces both for the thread that runs it ([`simulate`]), so that a seed
//! replays the same run.

use std::cell::RefCell;
use std::rc::Rc;

/// A replacement wall clock: milliseconds since the Unix epoch.
pub type ClockFn = Rc<dyn Fn() -> i64>;
/// A replacement random source: a number uniform in `[0, 1)`.
pub type RandomFn = Rc<dyn Fn() -> f64>;

thread_local! {
    static SIMULATED: RefCell<Option<(ClockFn, RandomFn)>> = const { RefCell::new(None) };
}

/// Milliseconds since the Unix epoch, by the wall clock (or the simulation's).
pub fn now_ms() -> i64 {
    if let Some(ms) = SIMULATED.with(|s| s.borrow().as_ref().map(|(clock, _)| clock())) {
        return ms;
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Today's date in Vietnam (UTC+7), against which "not in the future" is judged.
pub fn today() -> chrono::NaiveDate {
    date_at(now_ms())
}

/// The date in Vietnam (UTC+7) at `ms` since the epoch.
pub fn date_at(ms: i64) -> chrono::NaiveDate {
    let utc = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    (utc + chrono::Duration::hours(7)).date_naive()
}

/// The latest date a ward's change may carry as "today": the date as far
/// ahead as the clock skew the city accepts, so a ward a few minutes ahead
/// around midnight does not see its records of today refused as dated in
/// the future.
pub fn ward_today(max_skew_ms: u64) -> chrono::NaiveDate {
    date_at(now_ms().saturating_add(i64::try_from(max_skew_ms).unwrap_or(i64::MAX)))
}

/// `delay` spread at random over ±`spread` of itself (0 ≤ spread ≤ 1), so
/// that many nodes retrying after the same outage do not retry together.
pub fn jitter(delay: std::time::Duration, spread: f64) -> std::time::Duration {
    let unit =
        SIMULATED.with(|s| s.borrow().as_ref().map(|(_, random)| random())).unwrap_or_else(rand::random);
    delay.mul_f64(1.0 + spread.clamp(0.0, 1.0) * (2.0 * unit - 1.0))
}

/// Replaces the wall clock and the random source on this thread until the
/// returned guard is dropped. For deterministic simulation, which runs every
/// node on one thread; nothing else should call it.
pub fn simulate(clock: ClockFn, random: RandomFn) -> Simulated {
    SIMULATED.with(|s| *s.borrow_mut() = Some((clock, random)));
    Simulated(())
}

/// Restores the real clock when dropped (see [`simulate`]).
#[must_use = "the simulated clock is removed when this guard is dropped"]
pub struct Simulated(());

impl Drop for Simulated {
    fn drop(&mut self) {
        SIMULATED.with(|s| *s.borrow_mut() = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_simulation_replaces_the_clock_and_the_jitter_until_dropped() {
        let real = now_ms();
        {
            let _sim = simulate(Rc::new(|| 86_400_000 * 365), Rc::new(|| 0.75));
            assert_eq!(now_ms(), 86_400_000 * 365);
            assert_eq!(today(), chrono::NaiveDate::from_ymd_opt(1971, 1, 1).unwrap());
            assert_eq!(jitter(Duration::from_millis(1000), 0.5), Duration::from_millis(1250));
        }
        assert!(now_ms() >= real);
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000), 0.5);
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1500), "{d:?}");
        }
    }

    #[test]
    fn a_ward_minutes_ahead_at_midnight_may_write_tomorrows_date() {
        // 23:58 in Vietnam (16:58 UTC) on 2026-11-30.
        let ms = chrono::NaiveDate::from_ymd_opt(2026, 11, 30)
            .unwrap()
            .and_hms_opt(16, 58, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let _sim = simulate(Rc::new(move || ms), Rc::new(|| 0.5));
        assert_eq!(today().to_string(), "2026-11-30");
        assert_eq!(ward_today(5 * 60 * 1000).to_string(), "2026-12-01", "dates the skew limit allows");
        assert_eq!(ward_today(60 * 1000).to_string(), "2026-11-30");
    }
}
