use std::collections::HashSet;

use proptest::prelude::*;

use super::*;
use crate::model::{Context, Kind};

fn today() -> NaiveDate {
    "2026-11-22".parse().unwrap()
}

fn ctx() -> Context {
    Context { today: today(), province: Some("01".into()) }
}

fn ward(s: &str) -> WardCode {
    WardCode::parse(s).unwrap()
}

#[test]
fn a_ward_has_the_planned_mix_and_unique_keys() {
    let plan = Plan { citizens: 3000, businesses: 300, parcels: 600 };
    let recs: Vec<Record> = WardGen::new(&ward("00082"), 7, today()).records(plan).collect();
    let count = |k: Kind| recs.iter().filter(|r| r.kind() == k).count() as u64;
    assert!((3000..3010).contains(&count(Kind::Citizen)));
    assert!((300..302).contains(&count(Kind::Business)));
    assert_eq!(count(Kind::Land), 600);
    let keys: HashSet<_> = recs.iter().map(|r| (r.kind(), r.key_id())).collect();
    assert_eq!(keys.len(), recs.len(), "keys are unique");
    for r in &recs {
        r.validate(&ctx()).unwrap_or_else(|e| panic!("{r:?}: {e}"));
    }
    // Households hold several people; names carry diacritics.
    let households: HashSet<_> = recs
        .iter()
        .filter_map(|r| match &r.body {
            Body::Citizen(c) => Some(c.household_id.clone()),
            _ => None,
        })
        .collect();
    assert!(households.len() < 1500, "{} households for 3000 people", households.len());
    assert!(recs.iter().filter_map(Record::name).any(|n| n != crate::model::fold(n)));
}

#[test]
fn the_same_seed_gives_the_same_records() {
    let plan = Plan { citizens: 200, businesses: 20, parcels: 20 };
    let a: Vec<Record> = WardGen::new(&ward("00145"), 9, today()).records(plan).collect();
    let b: Vec<Record> = WardGen::new(&ward("00145"), 9, today()).records(plan).collect();
    let c: Vec<Record> = WardGen::new(&ward("00145"), 10, today()).records(plan).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn wards_of_one_city_never_share_a_key() {
    let plan = Plan { citizens: 2000, businesses: 200, parcels: 100 };
    let mut keys = HashSet::new();
    for code in ["00082", "00145", "09784", "00004"] {
        for r in WardGen::new(&ward(code), 1, today()).records(plan) {
            assert!(keys.insert((r.kind(), r.key_id())), "duplicate {}", r.key_id());
        }
    }
}

#[test]
fn city_populations_are_long_tailed_within_bounds() {
    let pops = city_populations("01", 3, 1.0);
    assert_eq!(pops.len(), 126);
    assert!(pops.iter().all(|(_, p)| (6_500..=215_000).contains(p)));
    let mut sizes: Vec<u64> = pops.iter().map(|(_, p)| *p).collect();
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2];
    let mean = sizes.iter().sum::<u64>() / sizes.len() as u64;
    assert!(mean > median, "long tail: mean {mean} above median {median}");
}

#[test]
fn corrupted_records_fail_and_amended_ones_pass() {
    let plan = Plan { citizens: 300, businesses: 60, parcels: 60 };
    let mut rng = StdRng::seed_from_u64(5);
    for r in WardGen::new(&ward("09784"), 2, today()).records(plan) {
        let (bad, what) = corrupt(&mut rng, &r);
        assert!(bad.validate(&ctx()).is_err(), "{what} should be invalid: {bad:?}");
        let amended = amend(&r, 1);
        assert_ne!(amended, r);
        assert_eq!(amended.validate(&ctx()).unwrap(), r.validate(&ctx()).unwrap());
    }
}

#[test]
fn a_put_shows_the_record_written_unless_the_merge_keeps_another_value() {
    use crate::model::{Hlc, Policies, Policy, Stamp, VersionVector, Versioned, flatten, put_values};
    // Latest write wins everywhere, so a later edit always shows.
    let policies = Policies { default: Policy::Lww, fields: Default::default() };
    let stamp = |ms, writer: &str| Stamp { hlc: Hlc { wall_ms: ms, logical: 0 }, writer: writer.into() };
    for r in sample(&ward("00082"), 30, 5) {
        let key = r.validate(&ctx()).unwrap();
        let all = flatten(&r);
        let fields: Vec<String> = all.keys().cloned().collect();
        let mut state = Versioned::default();
        state.apply(&put_values(&all, &fields), &stamp(1, "00082"), &VersionVector::default());
        assert_eq!(state.materialize_put(&key, &policies, &r, &all), Some(r.clone()));
        assert_eq!(state.materialize(&key, &policies), Some(r.clone()));
        // A later write the ward had not seen keeps its value: not the record written.
        let edited = amend(&r, 3);
        let theirs = flatten(&edited);
        let changed: Vec<String> =
            theirs.iter().filter(|(f, v)| all.get(*f) != Some(v)).map(|(f, _)| f.clone()).collect();
        let mut raced = Versioned::default();
        raced.apply(&put_values(&theirs, &changed), &stamp(9, "city"), &VersionVector::default());
        raced.apply(&put_values(&all, &fields), &stamp(1, "00082"), &VersionVector::default());
        let shown = raced.materialize_put(&key, &policies, &r, &all);
        assert_eq!(shown, raced.materialize(&key, &policies));
        assert_ne!(shown, Some(r.clone()), "{key}: the later write shows");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn generated_records_always_validate(seed in any::<u64>(), slot in 0usize..126) {
        let code = communes_of("01")[slot].code;
        let plan = Plan { citizens: 60, businesses: 15, parcels: 15 };
        for r in WardGen::new(&ward(code), seed, today()).records(plan) {
            prop_assert!(r.validate(&ctx()).is_ok(), "{:?}: {:?}", r, r.validate(&ctx()));
        }
    }

    /// Stores build a record's view from its flattened field values when
    /// those are exactly what a put wrote: the round trip must be exact.
    #[test]
    fn generated_records_survive_flatten_and_unflatten(seed in any::<u64>(), slot in 0usize..126) {
        let code = communes_of("01")[slot].code;
        let plan = Plan { citizens: 30, businesses: 10, parcels: 10 };
        for r in WardGen::new(&ward(code), seed, today()).records(plan).flat_map(|r| [amend(&r, seed as u32), r]) {
            let kind = r.validate(&ctx()).unwrap().kind();
            prop_assert_eq!(crate::model::unflatten(kind, &crate::model::flatten(&r)), Some(r));
        }
    }
}
