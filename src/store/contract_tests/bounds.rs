//! Memory and disk stay bounded whatever a peer sends or however long the
//! outbox grows.

use super::*;

#[test]
fn the_audit_trail_keeps_at_most_its_cap_of_denials_dropping_the_oldest() {
    for (name, mut h) in harnesses() {
        let city = CityStore::open(h.engine(), Policies::default()).unwrap();
        let extra = 5;
        for i in 0..MAX_DENIALS + extra {
            city.record_denial("stranger", "Get", "no role", i as i64).unwrap();
        }
        let kept = city.denials(0).unwrap();
        assert_eq!(kept.len() as u64, MAX_DENIALS, "{name}");
        assert_eq!(kept[0].at_ms, extra as i64, "{name}: the oldest made room");
        block(city.flush()).unwrap();
        drop(city);
        h.restart();
        let city = CityStore::open(h.engine(), Policies::default()).unwrap();
        city.record_denial("stranger", "Get", "no role", 1 << 40).unwrap();
        assert_eq!(city.denials(0).unwrap().len() as u64, MAX_DENIALS, "{name}: counted again on opening");
    }
}
