use proptest::prelude::*;

use super::*;
use crate::model::hlc::{CITY_WRITER, Hlc};

fn policies(p: Policy) -> Policies {
    Policies { default: p, fields: BTreeMap::new() }
}

/// A change as replicated: the fields it sets, its stamp and context.
#[derive(Debug, Clone)]
struct Change {
    values: BTreeMap<String, String>,
    stamp: Stamp,
    context: VersionVector,
}

const WRITERS: [&str; 3] = ["00082", "00145", CITY_WRITER];
const FIELDS: [&str; 4] = ["phone", "full_name", OWNER, EXISTS];

/// Simulates three replicas writing and exchanging changes; returns every
/// change made, in a causally plausible history.
fn history(ops: &[(u8, u8, u8, u8)]) -> Vec<Change> {
    let mut replicas: Vec<(Versioned, Hlc)> = vec![(Versioned::default(), Hlc::default()); 3];
    let mut changes: Vec<Change> = Vec::new();
    for (i, (who, what, field, value)) in ops.iter().enumerate() {
        let w = *who as usize % 3;
        if what % 3 == 0 && !changes.is_empty() {
            // Deliver an earlier change to this replica.
            let c = changes[*value as usize % changes.len()].clone();
            let (state, clock) = &mut replicas[w];
            state.apply(&c.values, &c.stamp, &c.context);
            *clock = clock.observe(c.stamp.hlc, i as u64);
            continue;
        }
        let (state, clock) = &mut replicas[w];
        *clock = clock.tick(i as u64 / 2);
        let stamp = Stamp { hlc: *clock, writer: WRITERS[w].to_string() };
        let f = FIELDS[*field as usize % FIELDS.len()];
        let v = match f {
            EXISTS => {
                if value % 2 == 0 {
                    "true".to_string()
                } else {
                    "false".to_string()
                }
            }
            OWNER => format!("\"{}\"", ["00082", "00145"][*value as usize % 2]),
            _ => format!("\"v{}\"", value % 4),
        };
        let values = BTreeMap::from([(f.to_string(), v)]);
        let c = Change { values, stamp, context: state.seen.clone() };
        state.apply(&c.values, &c.stamp, &c.context);
        changes.push(c);
    }
    changes
}

fn replay(changes: &[Change], order: &[usize]) -> Versioned {
    let mut s = Versioned::default();
    for i in order {
        let c = &changes[*i];
        s.apply(&c.values, &c.stamp, &c.context);
    }
    s
}

fn winners(s: &Versioned, p: &Policies) -> Vec<Option<FieldWrite>> {
    FIELDS.iter().map(|f| s.winner(Kind::Citizen, f, p).cloned()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any order, with any duplication, gives the same state and the same
    /// shown values under every policy.
    #[test]
    fn any_order_and_duplication_converge(
        ops in prop::collection::vec((0u8..3, 0u8..6, 0u8..4, 0u8..8), 1..40),
        shuffle in prop::collection::vec(any::<prop::sample::Index>(), 0..60),
    ) {
        let changes = history(&ops);
        let forward: Vec<usize> = (0..changes.len()).collect();
        let mut scrambled = forward.clone();
        for (i, ix) in shuffle.iter().enumerate() {
            if scrambled.is_empty() { break; }
            let j = ix.index(scrambled.len());
            if i % 3 == 0 { scrambled.push(scrambled[j]); } else { let k = i % scrambled.len(); scrambled.swap(j, k); }
        }
        let a = replay(&changes, &forward);
        let b = replay(&changes, &scrambled);
        prop_assert_eq!(&a, &b);
        for p in [Policy::Lww, Policy::OwnerWins, Policy::Manual] {
            prop_assert_eq!(winners(&a, &policies(p)), winners(&b, &policies(p)));
            prop_assert_eq!(a.conflicts(Kind::Citizen, &policies(p)), b.conflicts(Kind::Citizen, &policies(p)));
        }
    }

    /// Merging states is idempotent, commutative and associative.
    #[test]
    fn state_merge_is_a_join(
        ops in prop::collection::vec((0u8..3, 0u8..6, 0u8..4, 0u8..8), 1..30),
        cut1 in any::<prop::sample::Index>(),
        cut2 in any::<prop::sample::Index>(),
    ) {
        let changes = history(&ops);
        let n = changes.len();
        let (i, j) = (cut1.index(n + 1), cut2.index(n + 1));
        let (lo, hi) = (i.min(j), i.max(j));
        let x = replay(&changes, &(0..lo).collect::<Vec<_>>());
        let y = replay(&changes, &(lo..hi).collect::<Vec<_>>());
        let z = replay(&changes, &(hi..n).collect::<Vec<_>>());
        let join = |a: &Versioned, b: &Versioned| { let mut m = a.clone(); m.merge(b); m };
        prop_assert_eq!(join(&x, &x), x.clone());
        prop_assert_eq!(join(&x, &y), join(&y, &x));
        prop_assert_eq!(join(&join(&x, &y), &z), join(&x, &join(&y, &z)));
        prop_assert_eq!(join(&join(&x, &y), &z), replay(&changes, &(0..n).collect::<Vec<_>>()));
    }
}

fn stamp(ms: u64, writer: &str) -> Stamp {
    Stamp { hlc: Hlc { wall_ms: ms, logical: 0 }, writer: writer.into() }
}

fn write(value: &str, s: Stamp, ctx: &VersionVector) -> FieldWrite {
    FieldWrite { value: value.into(), stamp: s, context: ctx.clone() }
}

#[test]
fn policies_pick_winners_as_documented() {
    let none = VersionVector::default();
    let mut s = Versioned::default();
    s.merge_write(OWNER, write("\"00082\"", stamp(1, "00082"), &none));
    let mut seen_owner = VersionVector::default();
    seen_owner.add(&stamp(1, "00082"));
    // Concurrent: the owner at time 5, another ward at time 9.
    s.merge_write("phone", write("\"owner\"", stamp(5, "00082"), &seen_owner));
    s.merge_write("phone", write("\"other\"", stamp(9, "00145"), &seen_owner));
    let shown = |p| s.winner(Kind::Citizen, "phone", &policies(p)).unwrap().value.clone();
    assert_eq!(shown(Policy::Lww), "\"other\"");
    assert_eq!(shown(Policy::OwnerWins), "\"owner\"");
    assert_eq!(shown(Policy::Manual), "\"other\"");
    assert!(s.disputed(Kind::Citizen, &policies(Policy::Manual)));
    assert!(!s.disputed(Kind::Citizen, &policies(Policy::Lww)));
    let c = &s.conflicts(Kind::Citizen, &policies(Policy::OwnerWins))[0];
    assert_eq!(
        (c.field.as_str(), c.contenders.len(), c.contenders[0].value.as_str()),
        ("phone", 2, "\"owner\"")
    );

    // A write that has seen both contenders settles the field.
    let mut both = s.seen.clone();
    both.add(&stamp(5, "00082"));
    both.add(&stamp(9, "00145"));
    s.merge_write("phone", write("\"settled\"", stamp(10, CITY_WRITER), &both));
    assert_eq!(s.fields["phone"].len(), 1);
    assert!(!s.disputed(Kind::Citizen, &policies(Policy::Manual)));
    // An old write arriving late changes nothing.
    assert!(!s.merge_write("phone", write("\"late\"", stamp(5, "00082"), &seen_owner)));
}

#[test]
fn records_round_trip_through_fields_and_deletes_win_only_by_order() {
    let ward = crate::model::WardCode::parse("00082").unwrap();
    let r = crate::generate::sample(&ward, 3, 1).remove(0);
    let key =
        r.validate(&crate::model::Context { today: "2026-11-22".parse().unwrap(), province: None }).unwrap();
    let p = Policies::default();
    let mut s = Versioned::default();
    let created = stamp(1, "00082");
    s.apply(&flatten(&r), &created, &VersionVector::default());
    assert_eq!(s.materialize(&key, &p).as_ref(), Some(&r));
    // A delete that saw the creation removes it; a put that did not see the delete is concurrent.
    let mut ctx = VersionVector::default();
    ctx.add(&created);
    s.apply(&BTreeMap::from([(EXISTS.to_string(), "false".to_string())]), &stamp(3, "00082"), &ctx);
    assert_eq!(s.materialize(&key, &p), None);
    s.apply(&BTreeMap::from([(EXISTS.to_string(), "true".to_string())]), &stamp(2, CITY_WRITER), &ctx);
    assert_eq!(s.materialize(&key, &p), None, "the later delete wins");
    assert_eq!(s.conflicts(key.kind(), &p)[0].field, EXISTS);
}

#[test]
fn a_replica_that_lost_a_writers_earlier_write_does_not_hold_it_though_it_saw_a_later_one() {
    let none = VersionVector::default();
    let (early, late) = (write("\"1\"", stamp(1, "00082"), &none), write("\"2\"", stamp(2, "00082"), &none));
    let mut lost_early = Versioned::default();
    lost_early.merge_write("full_name", late.clone());
    lost_early.seen.add(&late.stamp);
    assert!(lost_early.seen.has_seen(&early.stamp), "the writer's later write is seen");
    assert!(!lost_early.holds("phone", &early), "its earlier write to another field is not held");
    assert!(lost_early.holds("full_name", &late));
    let mut superseding = VersionVector::default();
    superseding.add(&early.stamp);
    lost_early.merge_write("phone", write("\"3\"", stamp(3, CITY_WRITER), &superseding));
    assert!(lost_early.holds("phone", &early), "superseded by a write here that saw it");
}

#[test]
fn a_claim_cut_down_is_widened_when_the_same_write_comes_with_its_whole_context() {
    // 00145 created a record; 00082 deleted it having seen the creation. A
    // city that lost the creation took the delete with its claim cut down,
    // then got the creation back: there the two are concurrent (the record
    // in conflict, shown), at 00082 the delete superseded the creation.
    let none = VersionVector::default();
    let created = write("true", stamp(5, "00145"), &none);
    let mut saw_it = VersionVector::default();
    saw_it.add(&created.stamp);
    let whole = write("false", stamp(9, "00082"), &saw_it);
    let cut = write("false", stamp(9, "00082"), &none);
    let mut city = Versioned::default();
    city.merge_write(EXISTS, cut.clone());
    city.merge_write(EXISTS, created.clone());
    assert_eq!(city.fields[EXISTS].len(), 2);
    assert!(city.holds(EXISTS, &whole), "the same write is held...");
    assert!(city.adds(EXISTS, &whole), "...with less of its claim");
    assert!(!city.adds(EXISTS, &cut));
    // The whole delete widens the one held and supersedes the creation.
    assert!(city.merge_write(EXISTS, whole.clone()));
    assert_eq!(city.fields[EXISTS], vec![whole.clone()]);
    assert!(!city.adds(EXISTS, &whole) && !city.merge_write(EXISTS, whole.clone()));
    assert!(!city.merge_write(EXISTS, cut), "a narrower copy of it changes nothing");
    assert!(!city.adds(EXISTS, &created), "the creation stays superseded");
}
