//! A node that comes back with less than it had: its data directory
//! replaced by an older copy (a restored backup, or what a power cut left
//! before flushes were durable). Neither may cost a write made afterwards,
//! and both must be visible at once:
//! - a ward behind the city never reuses a sequence number the city has
//!   applied (the city would skip the new write as a duplicate): it moves
//!   its numbering past the city's, renumbering what it queued meanwhile,
//!   and gets back from the city the records it lost;
//! - a ward put back to an older copy that writes past what its lost
//!   incarnation wrote is found forked by its chain, however long it stayed
//!   away and with verification off: the city's link at its last applied
//!   change is not the copy's, so the copy renumbers its queue after the
//!   city's and takes back what the lost incarnation wrote;
//! - a city behind what it acknowledged never wedges the ward (every
//!   reconnect used to fail with a gap): it records the loss, the ward and
//!   the city report it, new writes replicate, and the ward refills the
//!   city with what it lost, without anyone intervening.

mod common;

use common::*;
use wardsync::cli::relay::Relay;
use wardsync::proto::pb;
use wardsync::store::{Batch, Engine, SledEngine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_restored_from_an_older_copy_never_reuses_a_sequence_the_city_applied() {
    let env = Env::new();
    let city = City::start(&env);
    let relay = Relay::start(city.addr).await.unwrap();
    let mut ward = Ward::start(&env, "00082", relay.addr());
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 0..20).await;
    drained(&mut c).await;
    assert!(ward.node.stop());
    let data = env.path().join("ward-00082");
    let backup = env.path().join("backup");
    copy_dir(&data, &backup);

    ward.node.start();
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 20..40).await;
    drained(&mut c).await;
    assert!(ward.node.stop());

    // The older copy comes back while the city is out of reach, and takes
    // writes: it numbers them 21.., which the city has applied already.
    let since = wardsync::clock::now_ms();
    restore_dir(&backup, &data);
    relay.cut();
    ward.node.start();
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 40..50).await;
    assert_eq!(status(&mut c).await.unwrap().last_seq, 30, "numbered from the older copy's counter");
    relay.heal();
    drained(&mut c).await;

    let s = status(&mut c).await.unwrap();
    assert_eq!(s.sequence_jumps, 1, "the ward says it moved past the city's numbering");
    assert_eq!(s.last_seq, 50, "the ten queued writes were renumbered after the city's 40");
    let mut city_c = city.client().await;
    at_city(&mut city_c, "00082", 40..50).await;
    assert_each_seq_once(&city_log(&mut city_c).await, "00082", 50);
    // The records written after the copy come back from the city.
    in_sync_since(&mut c, since).await;
    assert_eq!(assert_same_records(&mut c, &mut city_c, "00082").await, 50);
}

/// Before chains, the copy's new writes took numbers the city had applied
/// from the lost incarnation, were skipped as duplicates, acknowledged and
/// deleted from the outbox: five records only at the ward, five of the
/// lost incarnation only at the city, and no warning anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_put_back_to_an_older_copy_that_writes_past_its_lost_incarnation_is_found_forked() {
    put_back_and_write_offline(Copy::Unmarked).await;
}

/// The same with a copy `wardsync backup` took, put back while the city
/// stays out of reach for longer than the restore wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_put_back_to_its_backup_while_the_city_is_away_is_found_forked() {
    put_back_and_write_offline(Copy::Backup).await;
}

/// The same with a copy from before chains (no link kept with its
/// acknowledged mark): what the city says it applied past that mark is not
/// taken for acknowledged on its word (it was the lost incarnation's), the
/// copy's changes are sent again after the city's numbering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_put_back_to_a_copy_from_before_chains_loses_nothing() {
    put_back_and_write_offline(Copy::BeforeChains).await;
}

/// How the copy put back was made.
#[derive(PartialEq)]
enum Copy {
    /// The data directory copied while the agent was stopped.
    Unmarked,
    /// `wardsync backup`, marked as a copy.
    Backup,
    /// Copied, by an agent that kept no chain link.
    BeforeChains,
}

/// A ward's `copy` is put back while the city is out of reach and takes
/// more writes than its lost incarnation made after the copy; verification
/// is off.
async fn put_back_and_write_offline(copied: Copy) {
    let env = Env::new();
    let city = City::start(&env);
    let relay = Relay::start(city.addr).await.unwrap();
    let replication = "verify_every_ms = 0\nrestore_wait_ms = 300";
    let mut ward = Ward::start_with(&env, "00082", relay.addr(), "", replication);
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 0..20).await;
    drained(&mut c).await;
    let data = env.path().join("ward-00082");
    let copy = env.path().join("copy");
    if copied == Copy::Backup {
        c.backup(pb::BackupRequest { to: copy.display().to_string() }).await.unwrap();
    }
    assert!(ward.node.stop());
    if copied != Copy::Backup {
        copy_dir(&data, &copy);
    }
    if copied == Copy::BeforeChains {
        let engine = SledEngine::open(&copy, 16).unwrap();
        let mut batch = Batch::default();
        batch.remove(b"m:chain".to_vec());
        engine.apply(batch).unwrap();
        engine.flush().await.unwrap();
    }

    // The lost incarnation: five more writes, applied at the city (21-25).
    ward.node.start();
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 20..25).await;
    drained(&mut c).await;
    assert!(ward.node.stop());

    // The copy comes back while the city is out of reach, and takes ten
    // writes, numbered 21-30.
    let since = wardsync::clock::now_ms();
    restore_dir(&copy, &data);
    relay.cut();
    ward.node.start();
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 25..35).await;
    assert_eq!(status(&mut c).await.unwrap().last_seq, 30, "numbered from the copy's counter");
    relay.heal();
    drained(&mut c).await;

    let s = status(&mut c).await.unwrap();
    let forks = if copied == Copy::BeforeChains { 0 } else { 1 };
    assert_eq!(s.forks, forks, "the ward says its store forked (when it can tell)");
    assert_eq!(s.sequence_jumps, 0, "not behind the city: forked from it");
    assert_eq!(s.last_seq, 35, "the ten writes were renumbered after the city's 25");
    let mut city_c = city.client().await;
    at_city(&mut city_c, "00082", 0..35).await;
    assert_each_seq_once(&city_log(&mut city_c).await, "00082", 35);
    // What the lost incarnation wrote comes back from the city.
    in_sync_since(&mut c, since).await;
    assert_eq!(assert_same_records(&mut c, &mut city_c, "00082").await, 35);
    let out = stdout(&wardsync(&["status", "--ward-api", &format!("http://{}", ward.api)]));
    assert_eq!(out.contains("this ward's store forked: 1 time(s)"), forks == 1, "{out}");
    // A restart does not forget it.
    assert!(ward.node.stop());
    ward.node.start();
    let mut c = ward.client().await;
    assert_eq!(status(&mut c).await.unwrap().forks, forks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_restored_from_an_older_copy_records_the_loss_and_is_refilled_from_the_ward() {
    let env = Env::new();
    let mut city = City::start(&env);
    let ward = Ward::start(&env, "00082", city.addr);
    let mut c = ward.client().await;
    put_range(&mut c, "00082", 0..20).await;
    drained(&mut c).await;
    assert!(city.node.stop());
    let data = env.path().join("city");
    let backup = env.path().join("backup");
    copy_dir(&data, &backup);

    city.node.start();
    put_range(&mut c, "00082", 20..40).await;
    drained(&mut c).await;
    assert!(city.node.stop());
    // The city comes back without the 20 changes it acknowledged since.
    let since = wardsync::clock::now_ms();
    restore_dir(&backup, &data);
    city.node.start();
    let mut city_c = city.client().await;

    // Nobody intervenes: the ward finds the city behind and refills it.
    in_sync_since(&mut c, since).await;
    let s = status(&mut c).await.unwrap();
    assert_eq!(s.verify_differing, 20, "the records whose changes the city lost, and only those");
    assert_eq!(s.city_lost_changes, 20, "the ward says the city lost what it had acknowledged");
    at_city(&mut city_c, "00082", 0..40).await;

    // And replication goes on after the loss.
    put_range(&mut c, "00082", 40..50).await;
    drained(&mut c).await;
    at_city(&mut city_c, "00082", 40..50).await;
    assert_eq!(assert_same_records(&mut c, &mut city_c, "00082").await, 50);
    let w = city_wards(&mut city_c).await.unwrap().into_iter().find(|w| w.ward == "00082").unwrap();
    assert_eq!(w.lost_changes, 20, "the city says so too");
    assert!(w.lost_found_at_ms > 0);
    assert_eq!(w.last_applied_seq, 50);
    let log = city_log(&mut city_c).await;
    let seqs: Vec<u64> = log
        .iter()
        .filter(|l| l.ward == "00082")
        .map(|l| l.change.as_ref().unwrap().seq)
        .filter(|s| *s > 0)
        .collect();
    assert_eq!(seqs, (1..=20).chain(41..=50).collect::<Vec<_>>(), "the sequenced changes the city holds");
    let refilled: Vec<&pb::LoggedChange> =
        log.iter().filter(|l| l.ward == "00082" && l.change.as_ref().unwrap().seq == 0).collect();
    assert_eq!(refilled.len(), 20, "each lost write applied again once, by the refill");
}
